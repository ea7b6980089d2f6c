"""The server side of the MQTT-over-WebSocket opening handshake (wsproto, as the client uses).

After the handshake the connection is a :class:`~trio_mqtt._transports._websocket_stream.
WebSocketStream`, the same byte stream the client transport uses: binary messages in and out,
text messages refused (MQTT-6.0.0-1), pings answered.
"""

from __future__ import annotations

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, Request

from .._transports._websocket_stream import WebSocketStream

__all__ = ["accept_websocket"]

_SUBPROTOCOLS = ("mqtt", "mqttv3.1")
_MAX_HANDSHAKE = 16384


async def accept_websocket(stream: trio.abc.Stream, max_packet_size: int) -> WebSocketStream:
    """Answer the HTTP upgrade request on ``stream`` and return the WebSocket byte stream.

    Any path is accepted; the ``mqtt`` subprotocol is chosen when offered.

    Raises:
        ValueError: the request is not a WebSocket upgrade (answered with HTTP 400), or the
            peer closed first.
    """
    ws = WSConnection(ConnectionType.SERVER)
    seen = 0
    while True:
        data = await stream.receive_some(4096)
        if not data:
            raise ValueError("connection closed during the WebSocket handshake")
        seen += len(data)
        if seen > _MAX_HANDSHAKE:
            raise ValueError("WebSocket handshake too long")
        try:
            ws.receive_data(bytes(data))
            events = list(ws.events())
        except Exception as exc:
            await stream.send_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            raise ValueError(f"not a WebSocket upgrade: {exc}") from exc
        for event in events:
            if isinstance(event, Request):
                chosen = next((p for p in event.subprotocols if p in _SUBPROTOCOLS), None)
                await stream.send_all(ws.send(AcceptConnection(subprotocol=chosen)))
                return WebSocketStream(stream, ws, max_message_size=max_packet_size)
            if isinstance(event, RejectConnection):  # pragma: no cover - client-only event
                raise ValueError("WebSocket handshake rejected")
