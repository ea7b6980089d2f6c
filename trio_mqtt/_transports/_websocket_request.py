"""The opening HTTP request of a WebSocket connection: what a request modifier sees and returns.

Its own module because both the transport's options (``_websocket.py``) and the engine that
performs the handshake (``_websocket_stream.py``) use it, and the engine must stay an import
of the first WebSocket connection only (it loads wsproto).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["WebSocketRequest"]


@dataclass(frozen=True, slots=True)
class WebSocketRequest:
    """The opening HTTP request of a WebSocket connection, as a request modifier sees it.

    Attributes:
        host: the broker host we connect to.
        port: the broker port.
        secure: ``True`` for WSS.
        path: the request target (path and optional query), e.g. ``"/mqtt?token=..."``.
        headers: extra request headers as ``(name, value)`` pairs.
    """

    host: str
    port: int
    secure: bool
    path: str
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def host_header(self) -> str:
        """The ``Host`` header value: the host, plus the port when it is not the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.secure else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The full ``ws://`` or ``wss://`` URL of the request (handy for URL signing)."""
        return f"{'wss' if self.secure else 'ws'}://{self.host_header}{self.path}"
