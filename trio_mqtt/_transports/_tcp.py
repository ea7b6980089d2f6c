"""Plain TCP transport."""

from __future__ import annotations

import socket
from dataclasses import dataclass

import trio

from .._core._errors import InvalidOptionError, TransportError
from ._errors import connect_failure

__all__ = ["TcpTransport"]


@dataclass(frozen=True, slots=True)
class TcpTransport:
    """TCP with happy eyeballs (``trio.open_tcp_stream``) and TCP_NODELAY on by default.

    Attributes:
        nodelay: disable Nagle's algorithm, so small packets such as acks leave at once
            (leaving it on costs about 40 ms per QoS 1/2 round trip).
        send_buffer_size: ``SO_SNDBUF`` in bytes, or ``None`` for the system default.
        receive_buffer_size: ``SO_RCVBUF`` in bytes, or ``None`` for the system default.
        local_address: local IP address to bind before connecting (choose the interface).
        happy_eyeballs_delay: seconds before trying the next address of the host in parallel.
    """

    nodelay: bool = True
    send_buffer_size: int | None = None
    receive_buffer_size: int | None = None
    local_address: str | None = None
    happy_eyeballs_delay: float = 0.25

    def __post_init__(self) -> None:
        for name in ("send_buffer_size", "receive_buffer_size"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise InvalidOptionError(f"{name} must be a positive number of bytes")
        if self.happy_eyeballs_delay < 0:
            raise InvalidOptionError("happy_eyeballs_delay must not be negative")

    async def open_stream(
        self, host: str, port: int, *, max_packet_size: int = 0
    ) -> trio.abc.Stream:
        """Open a TCP connection to the broker (a ``trio.SocketStream``).

        Raises:
            TransportError: name resolution or every connection attempt failed.
        """
        return await self.open_socket_stream(host, port)

    async def open_socket_stream(self, host: str, port: int) -> trio.SocketStream:
        """Like :meth:`open_stream`, typed as the ``trio.SocketStream`` it returns."""
        try:
            stream = await trio.open_tcp_stream(
                host,
                port,
                happy_eyeballs_delay=self.happy_eyeballs_delay,
                local_address=self.local_address,
            )
        except OSError as exc:
            raise connect_failure(exc, host, port) from exc
        try:
            self.configure(stream)
        except OSError as exc:
            stream.socket.close()
            raise TransportError(f"cannot set socket options for {host}:{port}: {exc}") from exc
        return stream

    async def wrap_stream(
        self, stream: trio.abc.Stream, host: str, port: int, *, max_packet_size: int
    ) -> trio.abc.Stream:
        """Plain MQTT needs nothing on top of a tunnel: return ``stream`` itself."""
        await trio.lowlevel.checkpoint()
        return stream

    def configure(self, stream: trio.SocketStream) -> None:
        """Apply the socket options to a connected socket stream."""
        # Trio turns Nagle off by itself; set the option both ways so that it says what we mean.
        stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1 if self.nodelay else 0)
        if self.send_buffer_size is not None:
            stream.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer_size)
        if self.receive_buffer_size is not None:
            stream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer_size)
