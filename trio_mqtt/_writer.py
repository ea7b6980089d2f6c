"""The writer: sends whatever the state machine queued, coalescing packets under load.

Theory of operation. The writer is either *streaming* or *idle*. After each send it watches
``IDLE_ROUNDS`` scheduling rounds: if more packets arrive (a publisher in a loop, acks for a
flow of messages) it is streaming, and then lets rounds pass while packets keep coming, up to
``COALESCE_BYTES`` or ``COALESCE_ROUNDS``, before the next send. This cuts system calls (and the
broker's wakeups) by an order of magnitude under load. If nothing arrives it is idle, and the
next packet goes out at once: a lone request or reply never waits for packets that are not
coming.

It also ends a connection in order: after a local close it flushes DISCONNECT and lingers until
the broker closes its side; after a broker's protocol error it flushes the DISCONNECT the state
machine queued and then raises that error.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import trio

from ._core._errors import MqttError
from ._core._events import Event
from ._core._state import ClientState, ConnectionState
from ._dispatch import Signal
from ._store import StoreBinding
from ._transports import translate_stream_error

__all__ = ["MAX_UNFLUSHED", "Writer", "translate_io_errors"]

COALESCE_BYTES = 65536
COALESCE_ROUNDS = 32
#: quiet scheduling rounds after which the writer counts as idle and sends at once
IDLE_ROUNDS = 2
#: publishes that may wait for the writer before publishers are held back
MAX_UNFLUSHED = 256
#: longest wait for the broker to close its side after our DISCONNECT
DISCONNECT_LINGER = 1.0


@contextmanager
def translate_io_errors(what: str) -> Any:
    """The one seam where trio, OS and TLS errors of an open stream become trio-mqtt errors.

    The result is a :class:`~trio_mqtt.TransportError` (a :class:`~trio_mqtt.ConnectionLost`),
    as specific as the cause allows: a TLS 1.3 broker refusing our certificate says so only on
    the first read, and that becomes a :class:`~trio_mqtt.TlsError`.
    """
    try:
        yield
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
        raise translate_stream_error(exc, what) from exc


class Writer:
    """Sends the state machine's output on the current stream (see the module doc).

    Args:
        state: the session state machine.
        deliver: where events go (the store releases held-back events on a flush).
        store: the session store's hooks, or None.
        on_flushed: called after queued publishes were taken for sending (room for more).
        collect: routes the state machine's pending events; called with every batch of bytes
            taken, since an admitted publish leaves its Outgoing event for the writer.
    """

    def __init__(
        self,
        state: ClientState,
        deliver: Callable[[list[Event]], None],
        store: StoreBinding | None,
        on_flushed: Callable[[], None],
        collect: Callable[[], None],
    ) -> None:
        self._state = state
        self._collect = collect
        self._deliver = deliver
        self._store = store
        self._on_flushed = on_flushed
        self._wakeup = Signal()
        #: publishes handed to the state machine since the writer last took its output
        self.unflushed = 0
        self.bytes_sent = 0
        self._closing = False
        self._fatal: MqttError | None = None

    def wake(self) -> None:
        """New output may be queued: make the writer look."""
        self._wakeup.set()

    def admitted(self) -> None:
        """A publish entered the state machine: count it until written, and look."""
        self.unflushed += 1
        self._wakeup.set()

    @property
    def has_room(self) -> bool:
        """False when so many publishes wait to be written that publishers should wait."""
        return self.unflushed < MAX_UNFLUSHED

    def close_after_flush(self) -> None:
        """The session ends locally: send what is queued (DISCONNECT included), then stop."""
        self._closing = True
        self._wakeup.set()

    def fail_after_flush(self, error: MqttError) -> None:
        """The broker broke the protocol: send what is queued, then raise ``error``."""
        self._fatal = error
        self._wakeup.set()

    async def send(self, stream: trio.abc.Stream, data: bytes) -> None:
        """Send ``data`` now (while connecting, before the writer task runs)."""
        if data:
            await self._send_blob(stream, data)

    async def _send_blob(self, stream: trio.abc.Stream, blob: bytes) -> None:
        store = self._store
        if store is not None and store.pending:
            # what these bytes describe is durable before the broker can see it
            self._deliver(await store.flush())
        with translate_io_errors("sending failed"):
            await stream.send_all(blob)
        self.bytes_sent += len(blob)

    async def run(self, stream: trio.abc.Stream) -> None:
        """Write until the session closes (returns) or a fatal error is flushed (raises)."""
        self._fatal = None
        state = self._state
        pending: list[bytes] = []
        size = 0
        rounds = 0
        last_data_round = 0
        streaming = False
        # whether the pending (or last sent) bytes carry newly admitted publishes: only a
        # publisher keeping up a stream is worth coalescing for; acks and replies go at once
        publishing = False
        wakeup = self._wakeup
        while True:
            wakeup.clear()  # everything set so far is looked at below
            data = state.data_to_send()
            if data:
                self._collect()  # the Outgoing events of what these bytes carry
                pending.append(data)
                size += len(data)
                if self.unflushed:
                    self.unflushed = 0
                    self._on_flushed()
                    if publishing and rounds - last_data_round <= IDLE_ROUNDS:
                        streaming = True
                    publishing = True
                last_data_round = rounds
            if (
                pending
                and streaming
                and size < COALESCE_BYTES
                and rounds < COALESCE_ROUNDS
                and rounds - last_data_round < IDLE_ROUNDS
            ):
                rounds += 1
                await trio.lowlevel.checkpoint()
                continue
            if pending:
                blob = pending[0] if len(pending) == 1 else b"".join(pending)
                pending.clear()
                size = 0
                await self._send_blob(stream, blob)
                # after publishes, watch the next rounds: do more keep coming?
                rounds = last_data_round = 0
                if not publishing:
                    rounds = IDLE_ROUNDS  # nothing to watch for: wait for the next wakeup
                streaming = False
                continue
            if self._fatal is not None:
                raise self._fatal
            if self._closing:
                if state.state is ConnectionState.CLOSED:
                    # DISCONNECT is written; give the broker a moment to read it (and our last
                    # acks) before the socket goes. Closing at once can let a reconnect with
                    # the same client id take the session over first, and then the broker
                    # publishes the will although we said goodbye. The reader ends this wait
                    # as soon as the broker closes its side.
                    await trio.sleep(DISCONNECT_LINGER)
                return
            if rounds - last_data_round < IDLE_ROUNDS:
                rounds += 1
                await trio.lowlevel.checkpoint()
                continue
            await wakeup.wait()
            rounds = IDLE_ROUNDS + 1  # woken after a quiet spell: not streaming
            last_data_round = 0
            publishing = False
