"""What the next connection attempt uses: the server list and the ``before_connect`` hook.

Theory of operation. Before every attempt the event loop asks :meth:`AttemptPlanner.prepare`
for the options to connect with. With ``servers=`` the options are first aimed at the current
server; then the application's ``before_connect`` hook may change them (a fresh token, another
host). The result is checked (:meth:`MqttOptions.check_session_change` for the options outside
the session config, :meth:`ClientState.reconfigure` for the rest) and the state machine takes
the new CONNECT settings; its session (flows, queued publishes, subscriptions) is untouched.

Server list: a working server is kept (a lost connection tries it again first). When an
attempt fails, :meth:`AttemptPlanner.attempt_failed` moves on to the next server and says
whether this round still has an untried one; the event loop tries that one at once and applies
the reconnect policy's backoff only after a whole round failed. A failing hook does not move
on: it is not the server's fault.
"""

from __future__ import annotations

import trio

from ._core._errors import BeforeConnectError, MqttError
from ._core._state import ClientState
from ._options import MqttOptions

__all__ = ["AttemptPlanner"]


class AttemptPlanner:
    """Chooses the options of each connection attempt (see the module doc)."""

    def __init__(self, options: MqttOptions) -> None:
        self._count = len(options.servers)
        self._index = 0
        self._tried = 0

    async def prepare(self, options: MqttOptions, state: ClientState) -> MqttOptions:
        """The options of the coming attempt, already applied to ``state``.

        Raises:
            BeforeConnectError: the hook raised, outlasted ``connect_timeout`` or returned
                options that cannot be used in this session (the cause says why).
        """
        hook = options.before_connect
        if hook is None and not self._count:
            return options
        planned = options.server_options(self._index) if self._count else options
        if hook is not None:
            planned = await _run_hook(hook, planned)
        try:
            options.check_session_change(planned)
            state.reconfigure(planned.session_config())
        except MqttError as exc:
            raise BeforeConnectError(f"before_connect returned unusable options: {exc}") from exc
        return planned

    def attempt_failed(self) -> bool:
        """Move to the next server; True when this round has one not yet tried."""
        if self._count < 2:
            return False
        self._index = (self._index + 1) % self._count
        self._tried += 1
        if self._tried < self._count:
            return True
        self._tried = 0
        return False

    def connected(self) -> None:
        """The current server works: keep it and start a new round from it."""
        self._tried = 0


async def _run_hook(hook: object, options: MqttOptions) -> MqttOptions:
    """Call the hook within ``connect_timeout``; its exception becomes the cause."""
    assert callable(hook)
    result: object = None
    with trio.move_on_after(options.connect_timeout) as scope:
        try:
            result = await hook(options)
        except Exception as exc:
            raise BeforeConnectError(f"before_connect raised {type(exc).__name__}: {exc}") from exc
    if scope.cancelled_caught:
        raise BeforeConnectError(
            f"before_connect did not return within connect_timeout ({options.connect_timeout:g} s)"
        )
    if result is None:
        return options
    if not isinstance(result, MqttOptions):
        raise BeforeConnectError(
            f"before_connect must return MqttOptions or None, got {type(result).__name__}"
        )
    return result
