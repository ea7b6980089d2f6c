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

Redirects (MQTT 5, ``follow_redirects``): a CONNACK or DISCONNECT with 0x9C (use another
server) or 0x9D (server moved) and a Server Reference makes :meth:`AttemptPlanner.redirect`
aim the next attempt at the referenced host and port, at once and before the hook runs.
Credentials go to another host only with ``redirect_credentials``; otherwise they are dropped
and the hook may supply the ones meant for that host. At most :data:`MAX_REDIRECTS` redirects
in a row are followed, so two brokers pointing at each other cannot keep us spinning.
"""

from __future__ import annotations

import trio

from ._core._errors import (
    BeforeConnectError,
    ConnectionRefused,
    DisconnectedByBroker,
    MqttError,
)
from ._core._reason_codes import ReasonCode
from ._core._state import ClientState
from ._options import MqttOptions

__all__ = ["MAX_REDIRECTS", "AttemptPlanner", "parse_server_reference"]

#: Redirects followed in a row without a successful connection.
MAX_REDIRECTS = 5
_REDIRECT_CODES = (ReasonCode.USE_ANOTHER_SERVER, ReasonCode.SERVER_MOVED)


class AttemptPlanner:
    """Chooses the options of each connection attempt (see the module doc)."""

    def __init__(self, options: MqttOptions) -> None:
        self._count = len(options.servers)
        self._index = 0
        self._tried = 0
        self._redirect: tuple[str, int | None] | None = None
        self._redirects = 0

    async def prepare(self, options: MqttOptions, state: ClientState) -> MqttOptions:
        """The options of the coming attempt, already applied to ``state``.

        Raises:
            BeforeConnectError: the hook raised, outlasted ``connect_timeout`` or returned
                options that cannot be used in this session (the cause says why).
        """
        hook = options.before_connect
        if hook is None and not self._count and self._redirect is None:
            return options
        planned = options.server_options(self._index) if self._count else options
        if self._redirect is not None:
            planned = _redirected(planned, *self._redirect)
            self._redirect = None
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
        self._redirects = 0

    def redirect(self, error: MqttError, options: MqttOptions) -> bool:
        """Follow the broker's 0x9C/0x9D Server Reference, if any and allowed.

        Returns True when the next attempt goes to the referenced server (and should be made
        at once).
        """
        if not options.follow_redirects or self._redirects >= MAX_REDIRECTS:
            return False
        if not isinstance(error, ConnectionRefused | DisconnectedByBroker):
            return False
        if error.reason_code not in _REDIRECT_CODES or not error.server_reference:
            return False
        target = parse_server_reference(error.server_reference)
        if target is None:
            return False
        self._redirect = target
        self._redirects += 1
        return True


def parse_server_reference(reference: str) -> tuple[str, int | None] | None:
    """``host``, ``host:port`` or ``[v6]:port`` of the first server a Server Reference names.

    MQTT 5 leaves the format open; a space-separated list and these forms are what brokers
    send. Anything else gives None (the redirect is not followed).
    """
    words = reference.split()
    if not words:
        return None
    first = words[0]
    if first.startswith("["):
        host, sep, rest = first[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:] if rest else ""
    elif first.count(":") == 1:
        host, _, port_text = first.partition(":")
    elif ":" in first:
        host, port_text = first, ""  # a bare IPv6 address
    else:
        host, port_text = first, ""
    if not host:
        return None
    if not port_text:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) <= 65535:
        return None
    return host, int(port_text)


def _redirected(options: MqttOptions, host: str, port: int | None) -> MqttOptions:
    """``options`` aimed at the redirect target; credentials stay only on the same host or
    with ``redirect_credentials``."""
    changes: dict[str, object] = {"host": host, "port": port or options.port}
    if host != options.host and not options.redirect_credentials:
        changes.update(username=None, password=None)
    return options.replace(**changes)


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
