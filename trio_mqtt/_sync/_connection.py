"""The blocking event stream of :mod:`trio_mqtt.sync`, and ``connect()``."""

from __future__ import annotations

import math
import time
import weakref
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType

import trio

from .._connection import ConnectionStatistics, MqttConnection
from .._core._errors import ConnectionClosed, MqttError, RequestsDone
from .._core._events import ConnectionEvent, Incoming
from .._core._packets import Publish
from .._options import MqttOptions
from ._client import Client
from ._loop import _Loop

__all__ = ["Connection", "connect"]

PREFETCH = 64
"""Events one read may move from the Trio thread to the caller's side at most."""


class Connection:
    """The event stream of a connection, read from any thread. Get one from :func:`connect`.

    Events are those of :meth:`trio_mqtt.MqttConnection.poll`: ``Incoming(packet)``,
    ``Outgoing(packet)``, :class:`~trio_mqtt.Disconnected`, :class:`~trio_mqtt.Reconnecting`,
    :class:`~trio_mqtt.SessionLost` and :class:`~trio_mqtt.PublishDropped`. As in rumqttc,
    reading on after a connection error reconnects.

    The session ends when every :class:`Client` handle is closed
    (:class:`~trio_mqtt.RequestsDone`), after :meth:`Client.disconnect`, or on :meth:`close`;
    reaching that end stops the background thread. ``with connection:`` closes on exit.
    """

    def __init__(self, loop: _Loop) -> None:
        self._loop = loop
        self._end: MqttError | None = None
        self._prefetched: deque[_Fetched] = deque()
        self._finalizer = weakref.finalize(self, loop.request_stop, graceful=True)

    # ------------------------------------------------------------------ reading
    def recv(self) -> ConnectionEvent:
        """Block until the next event and return it.

        Raises:
            ~trio_mqtt.ConnectionLost: (and its subclasses) the connection failed; the next
                read reconnects (unless a reconnect policy does it by itself).
            ~trio_mqtt.ConnectionRefused: a reconnect was refused; the next read tries again.
            ~trio_mqtt.RequestsDone: every client handle was closed (the session is over).
            ~trio_mqtt.ConnectionClosed: the connection was closed (the session is over).
        """
        event = self._read(True, None)
        assert event is not None  # a waiting read returns an event or raises
        return event

    def recv_timeout(self, seconds: float) -> ConnectionEvent:
        """Like :meth:`recv`, but raise :class:`TimeoutError` after ``seconds`` without events.

        A timeout loses nothing: an event that arrives later is returned by the next read.
        """
        if not seconds >= 0:
            raise ValueError(f"timeout must be a number of seconds >= 0, got {seconds!r}")
        event = self._read(True, seconds)
        assert event is not None  # a waiting read returns an event or raises
        return event

    def try_recv(self) -> ConnectionEvent | None:
        """Return the next event if one is already buffered, else ``None``; never blocks.

        Raises a buffered connection error or the end of the session like :meth:`recv`. After a
        connection error it starts the reconnect and returns ``None`` until events arrive.
        """
        return self._read(False, None)

    def iter(self) -> Iterator[ConnectionEvent | MqttError]:
        """Yield events until the session ends; connection errors are yielded too.

        Like rumqttc's iterator of ``Result`` items, a connection error is yielded as its
        :class:`~trio_mqtt.MqttError` instance (not raised), and going on iterating reconnects.
        Iteration ends cleanly when every client handle was closed, after
        :meth:`Client.disconnect` or :meth:`close`; the background thread is then stopped.
        """
        while True:
            try:
                yield self.recv()
            except (RequestsDone, ConnectionClosed):
                return
            except MqttError as exc:
                yield exc

    def __iter__(self) -> Iterator[ConnectionEvent | MqttError]:
        return self.iter()

    def messages(self) -> Iterator[Publish]:
        """Yield incoming publishes only (other events are read and skipped).

        Connection errors are raised (reading on reconnects); iteration ends with the session.
        """
        while True:
            try:
                event = self.recv()
            except (RequestsDone, ConnectionClosed):
                return
            if type(event) is Incoming and type(event.packet) is Publish:
                yield event.packet

    def _read(self, wait: bool, timeout: float | None) -> ConnectionEvent | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        prefetched = self._prefetched
        while True:
            try:
                item = prefetched.popleft()
            except IndexError:
                pass
            else:
                if isinstance(item, _Raise):
                    if isinstance(item.error, RequestsDone | ConnectionClosed):
                        self._finish(item.error)
                    raise item.error
                return item
            if self._end is not None:
                raise self._end
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                self._loop.run(_fetch, self._loop, prefetched, wait, remaining)
            except (RequestsDone, ConnectionClosed) as exc:  # the loop is gone
                self._finish(exc)
                raise
            if not wait and not prefetched:
                return None

    def _finish(self, end: MqttError) -> None:
        """The session is over: remember how it ended and stop the background thread."""
        if self._end is None:
            self._end = end
        self._loop.stop(graceful=True)

    # ------------------------------------------------------------------ state
    @property
    def connected(self) -> bool:
        """True while a network connection is up and CONNACK was received."""
        connection = self._loop.connection
        return self._loop.alive and connection is not None and connection.connected

    @property
    def running(self) -> bool:
        """True while the background thread runs (until the session ended or :meth:`close`)."""
        return self._loop.alive

    def statistics(self) -> ConnectionStatistics:
        """Counters for monitoring (see :meth:`trio_mqtt.MqttConnection.statistics`)."""
        connection = self._loop.connection
        assert connection is not None
        return self._loop.run_sync(connection.statistics)

    def reconnect(self) -> None:
        """Start reconnecting after a connection error without reading the next event."""
        connection = self._loop.connection
        assert connection is not None
        self._loop.run_sync(connection.reconnect)

    # ------------------------------------------------------------------ closing
    def close(self) -> None:
        """Disconnect gracefully and stop the background thread; blocks until it has ended.

        Inflight QoS 1/2 flows get up to ``disconnect_timeout`` seconds (see :func:`connect`)
        to finish before DISCONNECT is sent. Idempotent. Afterwards every blocking call raises
        :class:`~trio_mqtt.ConnectionClosed`.
        """
        self._finalizer.detach()
        self._loop.stop(graceful=True)
        if self._end is None:
            self._end = ConnectionClosed("the connection was closed by the client")

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class _Raise:
    """A prefetched error: the read that reaches it raises it."""

    error: MqttError


#: what a fetch moves to the caller's side: an event, or the error the read raises
_Fetched = ConnectionEvent | _Raise


async def _fetch(loop: _Loop, out: deque[_Fetched], wait: bool, seconds: float | None) -> None:
    """In the Trio thread: move the next events from the connection to ``out``.

    Takes every event that is already buffered (at most ``PREFETCH``), so one thread crossing
    serves many reads; when none is and ``wait`` is true, waits up to ``seconds`` for one
    (raising :class:`TimeoutError`). A connection error or the end of the session is put in
    ``out`` as a :class:`_Raise` and ends the batch, so that the error is raised in order and
    the reconnect that ``poll()`` starts after an error waits for the next read. Readers take
    turns by ``loop.recv_lock``; events are appended here, in the Trio thread, so they stay in
    order whichever thread reads them.
    """
    connection, lock = loop.connection, loop.recv_lock
    assert connection is not None
    assert lock is not None
    deadline = math.inf if seconds is None else trio.current_time() + seconds
    try:
        lock.acquire_nowait()
    except trio.WouldBlock:
        if not wait:
            return  # another thread is waiting for an event: nothing is buffered
        with trio.move_on_at(deadline) as scope:
            await lock.acquire()
        if scope.cancelled_caught:
            raise TimeoutError(f"no event within {seconds:g} s") from None
    try:
        if out:
            return  # another reader fetched while this one waited for the lock
        if not _take_nowait(connection, out):
            if not wait:
                return
            with trio.move_on_at(deadline):
                await _take(connection, out)
            if not out:
                raise TimeoutError(f"no event within {seconds:g} s")
        for _ in range(PREFETCH):
            if isinstance(out[-1], _Raise) or not _take_nowait(connection, out):
                break
    finally:
        lock.release()


async def _take(connection: MqttConnection, out: deque[_Fetched]) -> None:
    """Move the next event (or the error ``poll()`` raises) to ``out``; cancel-safe."""
    try:
        out.append(await connection.poll())
    except MqttError as exc:
        out.append(_Raise(exc))


def _take_nowait(connection: MqttConnection, out: deque[_Fetched]) -> bool:
    """Move a buffered event (or error) to ``out``; False when nothing is buffered.

    Like ``poll()``, this also starts the reconnect that follows a reported connection error.
    """
    try:
        out.append(connection.poll_nowait())
    except trio.WouldBlock:
        return False
    except MqttError as exc:
        out.append(_Raise(exc))
    return True


def connect(
    options: MqttOptions | str,
    *,
    event_capacity: int = 1000,
    disconnect_timeout: float = 5.0,
    drop_unread: bool = True,
) -> tuple[Client, Connection]:
    """Connect to a broker and return a client handle and the connection's event stream.

    Starts the background thread that runs the connection and blocks until the first
    connection attempt is over (with a :class:`~trio_mqtt.ReconnectPolicy`, until it connected
    or used up its attempts). Ctrl-C while waiting stops the thread and is re-raised.

    Args:
        options: an :class:`~trio_mqtt.MqttOptions`, or a URL for
            :meth:`~trio_mqtt.MqttOptions.from_url`.
        event_capacity: events buffered for :meth:`Connection.recv`.
        drop_unread: until the program reads its first event, keep only the newest
            ``event_capacity`` incoming messages (the oldest are dropped, counted in
            ``statistics().dropped_events`` and logged) instead of pausing the connection, so
            a program that never reads events never stalls. Once it reads, no message is
            dropped: a full buffer pauses reading from the network (backpressure).
        disconnect_timeout: seconds that :meth:`Connection.close` may spend letting inflight
            QoS 1/2 flows finish and sending DISCONNECT.

    Returns:
        ``(client, connection)``, like rumqttc's ``Client::new``.

    Raises:
        ~trio_mqtt.ConnectionRefused: the broker refused the connection.
        ~trio_mqtt.ConnectionLost: the broker could not be reached (or a transport error).
        ~trio_mqtt.ConnectTimeout: no CONNACK within the connect timeout.
        ~trio_mqtt.InvalidOptionError: the options or URL are not valid.

    Example::

        client, connection = trio_mqtt.sync.connect("mqtt://localhost/?client_id=demo")
        with connection, client:
            client.subscribe("hello/#", qos=1)
            client.publish("hello/world", b"hi", qos=1)
            for message in connection.messages():
                print(message.topic, message.payload)
                break
    """
    if isinstance(options, str):
        options = MqttOptions.from_url(options)
    loop = _Loop(options, event_capacity, disconnect_timeout, drop_unread)
    loop.start()
    connection = Connection(loop)
    assert loop.connection is not None
    return Client(loop, loop.connection.client), connection
