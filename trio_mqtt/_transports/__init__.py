"""Transports: each opens a ``trio.abc.Stream`` to the broker."""

from __future__ import annotations

from ._base import StreamLayer as StreamLayer, Transport as Transport
from ._errors import (
    CertificateVerificationError as CertificateVerificationError,
    ProxyError as ProxyError,
    TlsConfigurationError as TlsConfigurationError,
    TlsError as TlsError,
    WebSocketError as WebSocketError,
    translate_stream_error as translate_stream_error,
)
from ._proxy import HttpProxy as HttpProxy
from ._socks import Socks5Proxy as Socks5Proxy
from ._tcp import TcpTransport as TcpTransport
from ._tls import TlsTransport as TlsTransport
from ._unix import UnixSocketTransport as UnixSocketTransport
from ._websocket import WebSocketTransport as WebSocketTransport
from ._websocket_request import WebSocketRequest as WebSocketRequest

__all__ = [
    "CertificateVerificationError",
    "HttpProxy",
    "ProxyError",
    "Socks5Proxy",
    "StreamLayer",
    "TcpTransport",
    "TlsConfigurationError",
    "TlsError",
    "TlsTransport",
    "Transport",
    "UnixSocketTransport",
    "WebSocketError",
    "WebSocketRequest",
    "WebSocketTransport",
    "translate_stream_error",
]
