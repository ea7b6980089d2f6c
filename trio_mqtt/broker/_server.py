"""The Trio layer of the embedded broker: listeners, a reader per connection, writers on demand.

Theory of operation
-------------------
All protocol state lives in the sans-IO :class:`~trio_mqtt._core._broker.Broker`; this module
only moves bytes. Per accepted stream there is a reader task, which feeds
:meth:`BrokerConnection.receive_data` and then wakes every connection that
:meth:`Broker.take_ready` names. Waking a connection starts its writer task if it has none (or
sets the event an idle writer waits on); the writer writes whatever
:meth:`BrokerConnection.data_to_send` returns and ends after :data:`WRITER_IDLE` seconds with
nothing to write, so an idle connection holds one task, not two (that halves the memory of an
idle connection; a busy one keeps its writer). A writer blocked on a slow client never blocks
anyone else: the sans-IO core bounds what waits for it (see the core's notes), and while that
bound is full the reader stops reading the client (:attr:`BrokerConnection.wants_data`). When
the core closes a connection (protocol error, takeover, keepalive) the writer flushes the last
bytes (at most :data:`FLUSH_TIMEOUT` seconds) and cancels the reader, which closes the stream.

One ticker task calls :meth:`Broker.tick` at the core's next deadline (at least every
:data:`TICK` seconds), so keepalives (1.5 times the keep alive), connect timeouts, delayed wills
and session expiry are enforced without a timer per connection. Time is ``trio.current_time()``,
so tests can use Trio's mock clock.

Streams beyond ``max_connections`` plus a small allowance for handshakes in progress are closed as
soon as they are accepted, before any byte is read.
"""

from __future__ import annotations

import contextlib
import math
import os
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from .._core._broker import Broker, BrokerConfig, BrokerConnection, BrokerStatistics
from .._core._packets import NO_PROPERTIES, Properties
from .._core._reason_codes import ReasonCode

__all__ = ["FLUSH_TIMEOUT", "TICK", "WRITER_IDLE", "Listener", "MqttBroker", "open_mqtt_broker"]

#: Longest wait between two ticks, in seconds.
TICK = 0.25
#: How long a closing connection may take to flush its last bytes, in seconds.
FLUSH_TIMEOUT = 2.0
#: Seconds a connection's writer task waits for bytes before it ends (the next bytes start
#: another), so that idle connections hold one task, not two. Short, because Python's
#: allocator keeps the memory of the busiest moment: a connection storm with writers that
#: linger costs as much as writers that never end. Traffic with gaps shorter than this keeps
#: its writer; longer gaps cost one task start (some microseconds) per burst.
WRITER_IDLE = 0.05
#: Streams accepted beyond max_connections while their CONNECT is awaited.
HANDSHAKE_ALLOWANCE = 64
_RECEIVE_SIZE = 65536
_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


@dataclass(frozen=True)
class Listener:
    """One listening endpoint of the broker.

    Attributes:
        kind: ``"tcp"``, ``"tls"``, ``"ws"`` (MQTT over WebSocket), ``"wss"`` (over secure
            WebSocket) or ``"unix"`` (a Unix domain socket at ``path``).
        host: address to bind (TCP based kinds).
        port: port to bind; 0 picks a free one (see :attr:`MqttBroker.listeners`).
        path: the socket path for ``"unix"``.
        ssl_context: the server-side TLS context for ``"tls"`` and ``"wss"``.
        ws_path: unused by the broker (any path is accepted), kept for URLs.
    """

    kind: str = "tcp"
    host: str = "127.0.0.1"
    port: int = 0
    path: str | None = None
    ssl_context: ssl.SSLContext | None = None
    ws_path: str = "/mqtt"

    def __post_init__(self) -> None:
        if self.kind not in ("tcp", "tls", "ws", "wss", "unix"):
            raise ValueError(f"unknown listener kind {self.kind!r}")
        if self.kind in ("tls", "wss") and self.ssl_context is None:
            raise ValueError(f"a {self.kind} listener needs an ssl_context")
        if self.kind == "unix" and not self.path:
            raise ValueError("a unix listener needs a path")


@dataclass(frozen=True)
class BoundListener:
    """A listener once bound: its real port (0 replaced) and the URL clients use."""

    listener: Listener
    host: str
    port: int
    url: str


@dataclass(eq=False, slots=True)
class _Link:
    """The Trio side of one connection: its stream, its reader's scope, its writer if any."""

    conn: BrokerConnection
    stream: trio.abc.Stream
    #: the reader's scope: cancelled once the writer has flushed a closed connection
    reading: trio.CancelScope = field(default_factory=trio.CancelScope)
    #: the scope of the writer task while one runs (None: no writer now)
    writer: trio.CancelScope | None = None
    #: made by an idle writer, set when the core has bytes for it
    event: trio.Event | None = None
    #: the scope of the send in progress, so that closing can bound it
    sending: trio.CancelScope | None = None
    #: made by a reader waiting on a full output, set by the writer when it takes the bytes
    taken: trio.Event | None = None
    #: the reader has ended: no writer starts any more
    over: bool = False


class MqttBroker:
    """A running embedded broker (made by :func:`open_mqtt_broker`).

    Attributes:
        core: the sans-IO broker (sessions, router, counters).
        listeners: every bound listener, in the order given.
    """

    def __init__(self, core: Broker) -> None:
        self.core = core
        self.listeners: list[BoundListener] = []
        self._links: dict[BrokerConnection, _Link] = {}
        self._streams = 0
        self._idle = trio.Event()
        self._idle.set()
        self._tick_wakeup = trio.Event()
        self._aborted = False
        #: where writer tasks run (set once the broker is serving)
        self._writers: trio.Nursery | None = None

    # -- what users read
    @property
    def host(self) -> str:
        """Host of the first TCP listener."""
        return self._first("tcp").host

    @property
    def port(self) -> int:
        """Port of the first TCP listener."""
        return self._first("tcp").port

    @property
    def url(self) -> str:
        """``mqtt://host:port`` of the first TCP listener."""
        return self._first("tcp").url

    def url_for(self, kind: str) -> str:
        """The URL of the first listener of ``kind`` (``"tls"``, ``"ws"``, ...)."""
        return self._first(kind).url

    def _first(self, kind: str) -> BoundListener:
        for bound in self.listeners:
            if bound.listener.kind == kind:
                return bound
        raise LookupError(f"the broker has no {kind} listener")

    def statistics(self) -> BrokerStatistics:
        """A snapshot of the broker's counters (connections, messages, drops, errors...)."""
        return self.core.statistics()

    def publish(
        self,
        topic: str,
        payload: bytes | str = b"",
        qos: int = 0,
        retain: bool = False,
        properties: Properties = NO_PROPERTIES,
    ) -> int:
        """Publish from the broker itself (no client needed); returns the sessions reached."""
        data = payload.encode() if isinstance(payload, str) else payload
        reached = self.core.publish(topic, data, qos, retain, properties, now=trio.current_time())
        self._wake()
        return reached

    # -- the byte movers
    def _wake(self) -> None:
        links = self._links
        for conn in self.core.take_ready():
            link = links.get(conn)
            if link is not None:
                if link.writer is None:
                    self._start_writer(link)
                elif link.event is not None:
                    link.event.set()
                if conn.closed and link.sending is not None:
                    # closed while a send to a client that does not read is stuck: the last
                    # bytes get FLUSH_TIMEOUT, not for ever (session takeover, shutdown)
                    limit = trio.current_time() + FLUSH_TIMEOUT
                    link.sending.deadline = min(link.sending.deadline, limit)

    async def _ticker(self) -> None:
        core = self.core
        while True:
            now = trio.current_time()
            deadline = core.next_deadline()
            wake_at = now + TICK if deadline is None else min(deadline, now + TICK)
            with trio.move_on_at(wake_at):
                await self._tick_wakeup.wait()
                self._tick_wakeup = trio.Event()
            core.tick(trio.current_time())
            self._wake()

    async def _serve(
        self,
        listener: trio.abc.Listener[Any],
        wrap: _Wrapper | None,
        nursery: trio.Nursery,
    ) -> None:
        limit = self.core.config.max_connections + HANDSHAKE_ALLOWANCE
        while True:
            try:
                stream = await listener.accept()
            except trio.ClosedResourceError:
                return
            except (trio.BrokenResourceError, OSError):
                # EMFILE and friends: wait a little instead of spinning
                await trio.sleep(0.05)
                continue
            if self._streams >= limit:
                self.core.count_refused_stream()
                await trio.aclose_forcefully(stream)
                continue
            self._streams += 1
            if self._idle.is_set():
                self._idle = trio.Event()
            nursery.start_soon(self._handle, stream, wrap)

    async def _handle(self, stream: trio.abc.Stream, wrap: _Wrapper | None) -> None:
        try:
            if wrap is not None:
                try:
                    with trio.fail_after(self.core.config.connect_timeout):
                        stream = await wrap(stream)
                except (trio.TooSlowError, *_STREAM_ERRORS, ValueError, RuntimeError):
                    await trio.aclose_forcefully(stream)
                    return
                except Exception:
                    await trio.aclose_forcefully(stream)
                    return
            await self._run_connection(stream)
        finally:
            self._streams -= 1
            if self._streams == 0:
                self._idle.set()

    async def _run_connection(self, stream: trio.abc.Stream) -> None:
        conn = self.core.new_connection(trio.current_time())
        link = _Link(conn, stream)
        self._links[conn] = link
        self._tick_wakeup.set()  # a new connect timeout deadline
        try:
            with link.reading:
                await self._reader(link)
        finally:
            # The peer is gone, or the writer flushed a closed connection: stop writing.
            link.over = True
            if link.writer is not None:
                link.writer.cancel()
            conn.connection_lost(trio.current_time())
            self._links.pop(conn, None)
            self._wake()
            await trio.aclose_forcefully(stream)

    async def _reader(self, link: _Link) -> None:
        conn = link.conn
        stream = link.stream
        while True:
            while not conn.wants_data and not conn.closed:
                # the client is not reading what we owe it: stop reading it too (TCP pushes
                # back on it) until the writer has taken the bytes
                link.taken = taken = trio.Event()
                await taken.wait()
            try:
                data = await stream.receive_some(_RECEIVE_SIZE)
            except _STREAM_ERRORS:
                return
            except Exception:
                return
            if not data:
                return
            if not conn.closed:
                conn.receive_data(data, trio.current_time())
                self._wake()

    def _start_writer(self, link: _Link) -> None:
        if link.over or self._writers is None:
            return
        link.writer = trio.CancelScope()
        self._writers.start_soon(self._writer, link)

    async def _writer(self, link: _Link) -> None:
        """Write what the core has for one connection. A writer with nothing to write for
        :data:`WRITER_IDLE` seconds ends (an idle connection then costs no task); the next
        bytes start another. Once a closed connection is flushed, it ends the reader."""
        scope = link.writer
        assert scope is not None
        finished = True  # unless _write says it went idle
        with scope:
            finished = await self._write(link)
        link.writer = None
        if finished:
            link.reading.cancel()

    async def _write(self, link: _Link) -> bool:
        """Returns True when the connection is over, False when the writer went idle."""
        conn = link.conn
        stream = link.stream
        try:
            while True:
                data = conn.data_to_send()
                if data:
                    if link.taken is not None:
                        link.taken.set()
                        link.taken = None
                    deadline = trio.current_time() + FLUSH_TIMEOUT if conn.closed else math.inf
                    with trio.CancelScope(deadline=deadline) as sending:
                        link.sending = sending
                        await stream.send_all(data)
                    link.sending = None
                    if sending.cancelled_caught:
                        return True  # the client would not take the last bytes in time
                    continue
                if conn.closed:
                    return True
                link.event = event = trio.Event()
                with trio.move_on_after(WRITER_IDLE):
                    await event.wait()
                link.event = None
                if not event.is_set():
                    return False  # nothing new since the wait began (no checkpoint after it)
        except _STREAM_ERRORS:
            return True
        except Exception:
            return True

    def abort(self) -> None:
        """Make leaving the block close every socket at once, with no DISCONNECT (as if the
        broker crashed; wills are still published)."""
        self._aborted = True

    async def _drain(self, grace: float) -> None:
        """Close every connection (MQTT 5 clients get DISCONNECT 0x8B) and wait briefly."""
        self.core.close_all(trio.current_time(), ReasonCode.SERVER_SHUTTING_DOWN)
        self._wake()
        with trio.move_on_after(grace):
            await self._idle.wait()


_Wrapper = Callable[[trio.abc.Stream], Any]


async def _autosave(store: Any, core: Broker, interval: float) -> None:
    while True:
        await trio.sleep(interval)
        store.save(core, trio.current_time())


def _tls_wrapper(context: ssl.SSLContext) -> _Wrapper:
    async def wrap(stream: trio.abc.Stream) -> trio.abc.Stream:
        tls = trio.SSLStream(stream, context, server_side=True)
        await tls.do_handshake()
        return tls

    return wrap


def _ws_wrapper(inner: _Wrapper | None, max_packet_size: int) -> _Wrapper:
    async def wrap(stream: trio.abc.Stream) -> trio.abc.Stream:
        if inner is not None:
            stream = await inner(stream)
        from ._websocket import accept_websocket

        return await accept_websocket(stream, max_packet_size)

    return wrap


async def _open_listeners(listener: Listener) -> tuple[list[trio.abc.Listener[Any]], BoundListener]:
    if listener.kind == "unix":
        assert listener.path is not None
        path = listener.path
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        await sock.bind(path)
        sock.listen(128)
        unix: trio.abc.Listener[Any] = trio.SocketListener(sock)
        return [unix], BoundListener(listener, "", 0, f"unix://{path}")
    sockets = await trio.open_tcp_listeners(listener.port, host=listener.host)
    port = sockets[0].socket.getsockname()[1]
    scheme = {"tcp": "mqtt", "tls": "mqtts", "ws": "ws", "wss": "wss"}[listener.kind]
    host = listener.host
    shown = f"[{host}]" if ":" in host else host
    suffix = listener.ws_path if listener.kind in ("ws", "wss") else ""
    return list(sockets), BoundListener(listener, host, port, f"{scheme}://{shown}:{port}{suffix}")


@contextlib.asynccontextmanager
async def open_mqtt_broker(
    host: str = "127.0.0.1",
    port: int | None = 0,
    *,
    config: BrokerConfig | None = None,
    listeners: Sequence[Listener] = (),
    core: Broker | None = None,
    shutdown_timeout: float = 2.0,
    persistence: str | os.PathLike[str] | None = None,
    autosave_interval: float = 5.0,
) -> AsyncIterator[MqttBroker]:
    """Run an MQTT 3.1.1/5.0 broker inside this Trio program for the duration of the block.

    Args:
        host: address of the plain TCP listener (``127.0.0.1``: reachable from this machine
            only).
        port: its port; 0 (the default) picks a free one, read it back from
            :attr:`MqttBroker.port`. None: no plain TCP listener (give ``listeners``).
        config: limits and policies (:class:`~trio_mqtt.broker.BrokerConfig`).
        listeners: more listeners: TLS, WebSocket, secure WebSocket, Unix sockets.
        core: a sans-IO broker to serve (for example one restored from a persistence store);
            default: a new one made from ``config``.
        shutdown_timeout: on exit, how long connections get to receive their DISCONNECT.
        persistence: an SQLite file for sessions and retained messages: loaded on start, saved
            every ``autosave_interval`` seconds and on exit (see :class:`BrokerStore`).
        autosave_interval: seconds between two saves with ``persistence``.

    Yields:
        The running :class:`MqttBroker`. Leaving the block closes every connection (MQTT 5
        clients get DISCONNECT with Server shutting down, 0x8B) and every listener.
    """
    store = None
    if persistence is not None:
        if core is not None:
            raise ValueError("give either core or persistence, not both")
        from ._persist import BrokerStore

        store = BrokerStore(persistence)
        core = store.load(config, trio.current_time())
    elif core is None:
        core = Broker(config)
    elif config is not None:
        raise ValueError("give either config or core, not both")
    broker = MqttBroker(core)
    every = ([Listener("tcp", host, port)] if port is not None else []) + list(listeners)
    if not every:
        raise ValueError("the broker needs at least one listener")
    opened: list[tuple[list[trio.abc.Listener[Any]], _Wrapper | None]] = []
    try:
        for listener in every:
            sockets, bound = await _open_listeners(listener)
            broker.listeners.append(bound)
            wrap: _Wrapper | None = None
            if listener.ssl_context is not None:
                wrap = _tls_wrapper(listener.ssl_context)
            if listener.kind in ("ws", "wss"):
                wrap = _ws_wrapper(wrap, core.config.max_packet_size)
            opened.append((sockets, wrap))
        async with trio.open_nursery() as nursery:
            broker._writers = nursery
            core.start(trio.current_time())
            nursery.start_soon(broker._ticker)
            if store is not None:
                nursery.start_soon(_autosave, store, core, autosave_interval)
            serving = trio.CancelScope()

            async def serve_all() -> None:
                with serving:
                    async with trio.open_nursery() as inner:
                        for sockets, wrap in opened:
                            for sock in sockets:
                                inner.start_soon(broker._serve, sock, wrap, nursery)

            nursery.start_soon(serve_all)
            try:
                yield broker
            finally:
                serving.cancel()
                if not broker._aborted:
                    with trio.CancelScope(shield=True):
                        await broker._drain(shutdown_timeout)
                nursery.cancel_scope.cancel()
    finally:
        if store is not None:
            store.save(core, trio.current_time())
            store.close()
        for sockets, _ in opened:
            for sock in sockets:
                with contextlib.suppress(Exception):
                    await trio.aclose_forcefully(sock)
        for listener in every:
            if listener.kind == "unix" and listener.path:
                with contextlib.suppress(OSError):
                    os.unlink(listener.path)
