"""MQTT over WebSocket (``ws``) and WebSocket over TLS (``wss``).

Theory of operation: MQTT over WebSocket (MQTT 5.0 section 6) carries the MQTT byte stream in
binary messages; a packet may span several messages and a message may hold several packets
(MQTT-6.0.0-2), so the adapter here is a plain ``trio.abc.Stream`` of bytes and the MQTT decoder
above it does the framing. It drives wsproto, the sans-IO WebSocket engine that trio-websocket is
built on, directly on the transport stream: trio-websocket's connection object needs a nursery
owned by the caller for its reader task, which a factory returning a stream cannot provide, and a
byte stream has no use for its message queue. Every ``send_all`` becomes one binary message;
``receive_some`` returns message payloads as they arrive, answering pings on the way. A text
message is a protocol error (MQTT-6.0.0-1). A message longer than the maximum packet size is
refused with close code 1009 before it is buffered. That engine lives in
:mod:`._websocket_stream`, imported on the first WebSocket connection, so a program that never
uses WebSocket does not load wsproto.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import trio

from .._core._errors import InvalidOptionError
from ._tcp import TcpTransport
from ._tls import TlsTransport
from ._websocket_request import WebSocketRequest

__all__ = ["WebSocketRequest", "WebSocketTransport"]


RequestModifier = Callable[[WebSocketRequest], Awaitable[WebSocketRequest]]


def _check_headers(
    headers: Sequence[tuple[str, str]] | Mapping[str, str],
) -> tuple[tuple[str, str], ...]:
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    checked = []
    for name, value in pairs:
        if not name or any(c in name for c in " :\r\n\t") or any(c in value for c in "\r\n\0"):
            raise InvalidOptionError(f"invalid WebSocket header {name!r}: {value!r}")
        checked.append((name, value))
    return tuple(checked)


@dataclass(frozen=True, slots=True)
class WebSocketTransport:
    """MQTT over WebSocket, or over secure WebSocket when ``tls`` is set.

    Attributes:
        path: the HTTP path (and query) of the upgrade request; brokers commonly use
            ``"/mqtt"``.
        tls: TLS options for WSS (a :class:`TlsTransport` or a ready ``ssl.SSLContext``);
            ``None`` for plain WS. With TLS, the TLS transport's ``tcp`` options apply.
        headers: extra headers sent with the upgrade request, e.g. ``Authorization``, as
            ``(name, value)`` pairs or a mapping.
        request_modifier: an async function that receives the :class:`WebSocketRequest` just
            before it is sent and returns the one to send; use it to sign the URL or fetch a
            fresh token on every (re)connection.
        subprotocol: the WebSocket subprotocol to ask for; MQTT 3.1.1 and 5.0 both use
            ``"mqtt"`` (MQTT-6.0.0-3).
        tcp: TCP options for plain WS.
    """

    path: str = "/mqtt"
    tls: TlsTransport | ssl.SSLContext | None = field(default=None, compare=False)
    headers: Sequence[tuple[str, str]] | Mapping[str, str] = ()
    request_modifier: RequestModifier | None = None
    subprotocol: str = "mqtt"
    tcp: TcpTransport = field(default_factory=TcpTransport)

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise InvalidOptionError(f"WebSocket path must start with '/', got {self.path!r}")
        if any(c in self.path for c in " \r\n\0"):
            raise InvalidOptionError(f"invalid WebSocket path {self.path!r}")
        object.__setattr__(self, "headers", _check_headers(self.headers))
        if isinstance(self.tls, ssl.SSLContext):
            object.__setattr__(self, "tls", TlsTransport(ssl_context=self.tls))
        elif self.tls is not None and not isinstance(self.tls, TlsTransport):
            raise InvalidOptionError("tls must be a TlsTransport, an ssl.SSLContext or None")

    @property
    def secure(self) -> bool:
        """Whether this is WSS."""
        return self.tls is not None

    async def open_stream(
        self, host: str, port: int, *, max_packet_size: int = 0
    ) -> trio.abc.Stream:
        """Connect (over TLS for WSS) and perform the WebSocket upgrade.

        Raises:
            WebSocketError: the server refused the upgrade or broke the WebSocket protocol.
            TlsError: for WSS, see :meth:`TlsTransport.open_stream`.
            TransportError: the connection failed.
        """
        tls = self.tls
        if isinstance(tls, TlsTransport):
            stream = await tls.open_stream(host, port, max_packet_size=max_packet_size)
        else:
            stream = await self.tcp.open_stream(host, port, max_packet_size=max_packet_size)
        return await self._upgrade(stream, host, port, max_packet_size)

    async def wrap_stream(
        self, stream: trio.abc.Stream, host: str, port: int, *, max_packet_size: int
    ) -> trio.abc.Stream:
        """Run WebSocket (with TLS first for WSS) over an already open stream."""
        tls = self.tls
        if isinstance(tls, TlsTransport):
            stream = await tls.wrap_stream(stream, host, port, max_packet_size=max_packet_size)
        return await self._upgrade(stream, host, port, max_packet_size)

    async def _upgrade(
        self, stream: trio.abc.Stream, host: str, port: int, max_packet_size: int
    ) -> trio.abc.Stream:
        from ._websocket_stream import handshake  # wsproto only when WebSocket is used

        try:
            request = WebSocketRequest(
                host, port, self.secure, self.path, _check_headers(self.headers)
            )
            if self.request_modifier is not None:
                request = await self.request_modifier(request)
                if not isinstance(request, WebSocketRequest):
                    raise InvalidOptionError("request_modifier must return a WebSocketRequest")
                request = replace(request, headers=_check_headers(request.headers))
            return await handshake(stream, request, self.subprotocol, max_packet_size)
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
