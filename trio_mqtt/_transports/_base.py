"""What the event loop needs from a transport: something that opens a ``trio.abc.Stream``.

Transports compose. :class:`Transport` opens a connection from nothing; :class:`StreamLayer`
runs its protocol over a stream somebody else opened. TLS and WebSocket are both, so an HTTP
proxy can open the tunnel and hand it to them, and WebSocket can sit on TLS (WSS).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import trio

__all__ = ["StreamLayer", "Transport"]


@runtime_checkable
class Transport(Protocol):
    """A way of reaching the broker.

    The event loop calls :meth:`open_stream` once per network connection and then only reads and
    writes bytes, so it never knows whether it talks TCP, TLS, WebSocket or a Unix socket.
    Implementations translate their own failures (OS, TLS, HTTP) into
    :class:`~trio_mqtt.TransportError`.
    """

    async def open_stream(self, host: str, port: int, *, max_packet_size: int) -> trio.abc.Stream:
        """Connect to ``host``:``port`` and return a byte stream to the broker.

        Args:
            host: the broker's host name or address.
            port: the broker's port.
            max_packet_size: the largest MQTT packet either side may send; framing layers
                (WebSocket) size their limits from it.
        """
        ...


@runtime_checkable
class StreamLayer(Protocol):
    """A protocol that can run over an already open stream (TLS, WebSocket, plain TCP).

    :class:`~trio_mqtt.HttpProxy` opens a tunnel to the broker and hands it to the layer.
    """

    async def wrap_stream(
        self, stream: trio.abc.Stream, host: str, port: int, *, max_packet_size: int
    ) -> trio.abc.Stream:
        """Run this layer over ``stream``, which already reaches ``host``:``port``.

        On failure the implementation closes ``stream`` before raising
        :class:`~trio_mqtt.TransportError`.
        """
        ...
