"""A fault-injecting TCP proxy for tests: put it between a client and a broker and break things.

Theory of operation
-------------------
:func:`open_fault_proxy` listens on a free port of 127.0.0.1. Every accepted client connection
gets its own upstream connection to the broker; the pair is a :class:`Link`, served by two
*pump* tasks (client to broker, broker to client) inside the link's own cancel scope. A pump
reads a chunk, consults the proxy's current fault settings, and forwards the chunk (possibly
late, slowly, in single bytes, or only partly) to the other side.

Faults, all applied to live links at once (and to links accepted later, where that makes sense):

* ``cut()`` closes both sockets of every link now; ``cut_after()``
  lets a given number of bytes through first, so the cut lands in the middle of a packet.
* ``reset()`` does the same with TCP RST instead of FIN (``SO_LINGER`` 0).
* ``blackhole()`` stops forwarding (both directions, or one) while keeping the
  sockets open: pumps stop reading, so bytes pile up in kernel buffers as in a network partition and
  neither end sees an error; ``restore()`` lets them flow again.
* :attr:`FaultProxy.delay` adds latency to every chunk, :attr:`FaultProxy.throttle` caps the
  rate in bytes per second, and :attr:`FaultProxy.split_writes` forwards one byte per
  ``send_all`` (which exercises every "need more bytes" path of a decoder).

The proxy uses real sockets and real time (it is meant for tests against a real broker); for
timing logic use an in-memory fake broker with Trio's ``autojump_clock`` instead.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

__all__ = ["FaultProxy", "Link", "ProxyStatistics", "open_fault_proxy"]

_CHUNK = 65536
_UP = 0  # client -> broker
_DOWN = 1  # broker -> client


@dataclass(frozen=True, slots=True)
class ProxyStatistics:
    """Counters of a :class:`FaultProxy` (see :meth:`~trio_mqtt.testing.FaultProxy.statistics`).

    Attributes:
        accepted: client connections accepted so far.
        active: links currently open.
        cuts: links ended by :meth:`~trio_mqtt.testing.FaultProxy.cut`,
            :meth:`~trio_mqtt.testing.FaultProxy.cut_after` or
            :meth:`~trio_mqtt.testing.FaultProxy.reset`.
        bytes_up: bytes forwarded from clients to the broker.
        bytes_down: bytes forwarded from the broker to clients.
    """

    accepted: int
    active: int
    cuts: int
    bytes_up: int
    bytes_down: int


class Link:
    """One proxied connection: a client socket and its upstream socket.

    Attributes:
        index: 0 for the first connection the proxy accepted, then 1, 2, ...
        closed: True once both sockets are closed.
    """

    def __init__(self, index: int, client: trio.SocketStream, upstream: trio.SocketStream) -> None:
        self.index = index
        self.closed = False
        self._client = client
        self._upstream = upstream
        self._scope = trio.CancelScope()
        # Bytes each direction may still forward before the link is cut (None = no limit).
        self._budget: list[int | None] = [None, None]
        self._rst = False
        self._faulted = False

    def cut(self, *, rst: bool = False) -> None:
        """Close both sockets of this link now (with TCP RST when ``rst`` is true)."""
        if rst:
            self._rst = True
        self._faulted = True
        self._scope.cancel()

    def cut_after(self, up: int | None = None, down: int | None = None) -> None:
        """Cut this link once ``up`` more bytes went to the broker or ``down`` more to the client.

        ``0`` cuts at the next chunk in that direction; ``None`` leaves the direction alone.
        """
        self._budget = [up, down]


class FaultProxy:
    """A TCP proxy with switchable faults; create it with :func:`open_fault_proxy`.

    Attributes:
        host: the address the proxy listens on (127.0.0.1).
        port: the port the proxy listens on; point the client here.
        upstream: ``(host, port)`` of the broker.
        delay: seconds added before each chunk is forwarded (0 = none).
        throttle: maximum forwarding rate in bytes per second per direction and link
            (None = unlimited).
        split_writes: forward every chunk one byte per write.
        links: every link accepted so far, in order (closed ones included).
    """

    host = "127.0.0.1"

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.delay = 0.0
        self.throttle: float | None = None
        self.split_writes = False
        self.links: list[Link] = []
        # One event per direction; a pump waits on its direction's event before moving data.
        self._flowing = [trio.Event(), trio.Event()]
        for event in self._flowing:
            event.set()
        self._changed = trio.lowlevel.ParkingLot()
        self._accepted = 0
        self._cuts = 0
        self._bytes = [0, 0]
        self._pending_cut: tuple[int | None, int | None] | None = None

    # ----------------------------------------------------------------- faults

    def cut(self, *, rst: bool = False) -> int:
        """Close every open link at once (both directions); return how many were cut.

        The proxy keeps listening, so a client that reconnects gets a fresh link.
        """
        count = 0
        for link in self.links:
            if not link.closed:
                link.cut(rst=rst)
                count += 1
        return count

    def reset(self) -> int:
        """Abort every open link with TCP RST (the peers see "connection reset")."""
        return self.cut(rst=True)

    def cut_after(self, up: int | None = None, down: int | None = None) -> None:
        """Cut every open link after ``up`` more bytes upstream or ``down`` more downstream.

        With a count that ends inside a packet, the receiving side gets half a packet and then
        end of file. Applies to the next link accepted too if no link is open.
        """
        open_links = [link for link in self.links if not link.closed]
        if not open_links:
            self._pending_cut = (up, down)
        for link in open_links:
            link.cut_after(up, down)

    def blackhole(self, *, up: bool = True, down: bool = True) -> None:
        """Stop forwarding, keeping every socket open (half-open links).

        Args:
            up: stop the client-to-broker direction.
            down: stop the broker-to-client direction.
        """
        for direction, stop in ((_UP, up), (_DOWN, down)):
            if stop and self._flowing[direction].is_set():
                self._flowing[direction] = trio.Event()

    def restore(self) -> None:
        """Undo :meth:`blackhole` in both directions: held bytes flow again."""
        for event in self._flowing:
            event.set()

    @property
    def blackholed(self) -> bool:
        """Whether forwarding is stopped in at least one direction."""
        return not all(event.is_set() for event in self._flowing)

    # ----------------------------------------------------------------- observation

    def statistics(self) -> ProxyStatistics:
        """A snapshot of the proxy's counters."""
        return ProxyStatistics(
            accepted=self._accepted,
            active=sum(1 for link in self.links if not link.closed),
            cuts=self._cuts,
            bytes_up=self._bytes[_UP],
            bytes_down=self._bytes[_DOWN],
        )

    async def wait_accepted(self, count: int) -> None:
        """Wait until the proxy has accepted at least ``count`` connections in total."""
        while self._accepted < count:
            await self._changed.park()

    async def wait_idle(self) -> None:
        """Wait until no link is open."""
        while any(not link.closed for link in self.links):
            await self._changed.park()

    # ----------------------------------------------------------------- serving

    async def _serve(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        listeners = await trio.open_tcp_listeners(0, host=self.host)
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            task_status.started()
            await trio.serve_listeners(self._handle, listeners, handler_nursery=nursery)

    async def _handle(self, client: trio.SocketStream) -> None:
        try:
            upstream = await trio.open_tcp_stream(*self.upstream)
        except OSError:
            await trio.aclose_forcefully(client)
            return
        for stream in (client, upstream):
            stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = Link(len(self.links), client, upstream)
        if self._pending_cut is not None:
            link.cut_after(*self._pending_cut)
            self._pending_cut = None
        self.links.append(link)
        self._accepted += 1
        self._changed.unpark_all()
        try:
            with link._scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, link, client, upstream, _UP)
                    nursery.start_soon(self._pump, link, upstream, client, _DOWN)
        finally:
            if link._faulted:
                self._cuts += 1
            if link._rst:
                for stream in (client, upstream):
                    stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(client)
                await trio.aclose_forcefully(upstream)
            link.closed = True
            self._changed.unpark_all()

    async def _pump(
        self, link: Link, source: trio.SocketStream, sink: trio.SocketStream, direction: int
    ) -> None:
        """Forward one direction of a link until end of file, an error or a cut."""
        while True:
            await self._flowing[direction].wait()
            try:
                data = await source.receive_some(_CHUNK)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                # One side went away: end the whole link, as a TCP proxy would; but a blackholed
                # direction holds the end of file like any other bytes, or a partition would
                # leak a close (a broker enforcing its keepalive) to the other end.
                await self._flowing[direction].wait()
                link._scope.cancel()
                return
            await self._flowing[direction].wait()
            budget = link._budget[direction]
            if budget is not None:
                data = data[:budget]
                link._budget[direction] = budget - len(data)
            if data:
                try:
                    await self._forward(data, sink, direction)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    link._scope.cancel()
                    return
            if budget is not None and link._budget[direction] == 0:
                link.cut()
                return

    async def _forward(self, data: bytes, sink: trio.SocketStream, direction: int) -> None:
        if self.delay:
            await trio.sleep(self.delay)
        if self.split_writes:
            pieces = [data[i : i + 1] for i in range(len(data))]
        elif self.throttle is not None:
            step = max(1, int(self.throttle / 100))
            pieces = [data[i : i + step] for i in range(0, len(data), step)]
        else:
            pieces = [data]
        for piece in pieces:
            await sink.send_all(piece)
            self._bytes[direction] += len(piece)
            if self.throttle is not None:
                await trio.sleep(len(piece) / self.throttle)


@asynccontextmanager
async def open_fault_proxy(upstream_host: str, upstream_port: int) -> AsyncIterator[FaultProxy]:
    """Run a :class:`FaultProxy` to ``upstream_host:upstream_port`` for the block's duration.

    Example::

        async with open_fault_proxy(broker.host, broker.port) as proxy:
            options = MqttOptions("c", proxy.host, proxy.port)
            ...
            proxy.cut()          # the client sees its connection drop

    Leaving the block closes every link and the listener.
    """
    proxy = FaultProxy(upstream_host, upstream_port)
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy._serve)
        try:
            yield proxy
        finally:
            nursery.cancel_scope.cancel()
