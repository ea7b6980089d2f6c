"""Plain TCP transport."""

from __future__ import annotations

import socket
from dataclasses import dataclass

import trio

from .._core._errors import TransportError

__all__ = ["TcpTransport"]


@dataclass(frozen=True, slots=True)
class TcpTransport:
    """TCP with happy eyeballs (``trio.open_tcp_stream``) and TCP_NODELAY on by default.

    Attributes:
        nodelay: disable Nagle's algorithm, so small packets such as acks leave at once.
    """

    nodelay: bool = True

    async def open_stream(self, host: str, port: int, *, max_packet_size: int) -> trio.abc.Stream:
        """Open a TCP connection to the broker."""
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            raise TransportError(f"cannot connect to {host}:{port}: {exc}") from exc
        if self.nodelay:
            stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return stream
