"""What the event loop needs from a transport: something that opens a ``trio.abc.Stream``."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import trio

__all__ = ["Transport"]


@runtime_checkable
class Transport(Protocol):
    """A way of reaching the broker.

    The event loop calls :meth:`open_stream` once per network connection and then only reads and
    writes bytes, so it never knows whether it talks TCP, TLS, WebSocket or a Unix socket.
    Implementations translate their own failures (OS, TLS, HTTP) into
    :class:`~trio_mqtt.TransportError`.
    """

    async def open_stream(self, host: str, port: int, *, max_packet_size: int) -> trio.abc.Stream:
        """Connect to ``host``:``port`` and return a byte stream to the broker."""
        ...
