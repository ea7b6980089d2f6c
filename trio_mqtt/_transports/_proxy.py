"""HTTP ``CONNECT`` proxy in front of any TCP-based transport.

Theory of operation: connect to the proxy (over TLS when asked), send
``CONNECT broker:port HTTP/1.1`` with optional basic credentials, and read the answer with h11.
A 2xx answer turns the connection into a raw tunnel to the broker; the inner transport's
:meth:`~trio_mqtt.StreamLayer.wrap_stream` then runs plain MQTT, TLS or WebSocket through it,
exactly as it would over its own TCP connection. Bytes the proxy sent after its answer (none,
normally, since the broker speaks only after the client) are handed on, not lost.
"""

from __future__ import annotations

import base64
import ssl
from dataclasses import dataclass, field

import trio

from .._core._errors import InvalidOptionError, TransportError
from ._base import StreamLayer
from ._errors import ProxyError, translate_stream_error
from ._tcp import TcpTransport
from ._tls import TlsTransport

__all__ = ["HttpProxy"]

_RECEIVE_SIZE = 16384
_MAX_RESPONSE_HEAD = 16384


class _PrefixedStream(trio.abc.Stream):
    """A stream that first returns some bytes already read from ``inner``."""

    def __init__(self, inner: trio.abc.Stream, prefix: bytes) -> None:
        self.inner = inner
        self._prefix = prefix

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._prefix:
            await trio.lowlevel.checkpoint()
            size = len(self._prefix) if max_bytes is None else max_bytes
            chunk, self._prefix = self._prefix[:size], self._prefix[size:]
            return chunk
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


def check_tunnel_options(host: str, port: int, inner: object) -> None:
    """The checks every proxy transport makes of its own address and its ``inner`` layer."""
    if not host:
        raise InvalidOptionError("the proxy host must not be empty")
    if not 0 < port < 65536:
        raise InvalidOptionError(f"invalid proxy port {port!r}")
    if not isinstance(inner, StreamLayer):
        raise InvalidOptionError(
            "inner must be a transport that can run over a tunnel (TcpTransport, "
            "TlsTransport or WebSocketTransport)"
        )


def proxy_stream_error(exc: BaseException, where: str) -> TransportError:
    """The typed error for a stream failure while talking to a proxy: a plain transport
    failure becomes a :class:`ProxyError`; TLS errors keep their own type."""
    error = translate_stream_error(exc, where)
    return ProxyError(str(error)) if type(error) is TransportError else error


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class HttpProxy:
    """Reach the broker through an HTTP proxy's ``CONNECT`` tunnel.

    Example: ``HttpProxy("proxy.corp", 3128, inner=TlsTransport(), username="me",
    password="secret")`` runs MQTT over TLS through the proxy; the TLS session is end to end
    with the broker, the proxy sees only ciphertext.

    Attributes:
        host: the proxy's host name or address.
        port: the proxy's port.
        inner: what runs through the tunnel: :class:`TcpTransport` (plain MQTT, the default),
            :class:`TlsTransport` or :class:`WebSocketTransport` (WS or WSS).
        username: user name for the proxy (HTTP basic authentication).
        password: password for the proxy.
        tls: TLS to the proxy itself (an HTTPS proxy), independent of TLS to the broker.
        headers: extra headers for the ``CONNECT`` request.
        tcp: TCP options of the connection to the proxy.
    """

    host: str
    port: int
    inner: StreamLayer = field(default_factory=TcpTransport)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: TlsTransport | ssl.SSLContext | None = field(default=None, compare=False)
    headers: tuple[tuple[str, str], ...] = ()
    tcp: TcpTransport = field(default_factory=TcpTransport)

    def __post_init__(self) -> None:
        check_tunnel_options(self.host, self.port, self.inner)
        if self.password is not None and self.username is None:
            raise InvalidOptionError("a proxy password needs a username")
        if self.username is not None and ":" in self.username:
            raise InvalidOptionError("a proxy username cannot contain ':' (basic authentication)")
        object.__setattr__(self, "headers", tuple(self.headers))
        if isinstance(self.tls, ssl.SSLContext):
            object.__setattr__(self, "tls", TlsTransport(ssl_context=self.tls, tcp=self.tcp))
        elif self.tls is not None and not isinstance(self.tls, TlsTransport):
            raise InvalidOptionError("tls must be a TlsTransport, an ssl.SSLContext or None")

    async def open_stream(
        self, host: str, port: int, *, max_packet_size: int = 0
    ) -> trio.abc.Stream:
        """Open a tunnel to ``host``:``port`` through the proxy and start ``inner`` in it.

        Raises:
            ProxyError: the proxy is unreachable, refused the tunnel (see
                :attr:`ProxyError.status_code`; 407 = authentication) or answered nonsense.
            TlsError: TLS to the proxy or to the broker failed.
            TransportError: the inner transport failed in another way.
        """
        tunnel = await self._open_tunnel(host, port)
        return await self.inner.wrap_stream(tunnel, host, port, max_packet_size=max_packet_size)

    def _request_headers(self, target: str) -> list[tuple[str, str]]:
        headers = [("Host", target)]
        if self.username is not None:
            secret = f"{self.username}:{self.password or ''}".encode()
            headers.append(("Proxy-Authorization", "Basic " + base64.b64encode(secret).decode()))
        headers.extend(self.headers)
        return headers

    async def _open_tunnel(self, host: str, port: int) -> trio.abc.Stream:
        proxy = _authority(self.host, self.port)
        tls = self.tls
        try:
            if isinstance(tls, TlsTransport):
                stream: trio.abc.Stream = await tls.open_stream(self.host, self.port)
            else:
                stream = await self.tcp.open_stream(self.host, self.port)
        except TransportError as exc:
            if type(exc) is TransportError:
                raise ProxyError(f"proxy {proxy} unreachable: {exc}") from exc
            raise
        try:
            return await self._connect(stream, _authority(host, port), proxy)
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise

    async def _connect(self, stream: trio.abc.Stream, target: str, proxy: str) -> trio.abc.Stream:
        import h11  # only when an HTTP proxy is used

        where = f"proxy {proxy} tunnel to {target}"
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_RESPONSE_HEAD)
        try:
            request = h11.Request(
                method="CONNECT", target=target, headers=self._request_headers(target)
            )
        except h11.LocalProtocolError as exc:
            raise InvalidOptionError(f"invalid proxy request header: {exc}") from exc
        try:
            head = (conn.send(request) or b"") + (conn.send(h11.EndOfMessage()) or b"")
            await stream.send_all(head)
            response: h11.Response | None = None
            while response is None:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(bytes(await stream.receive_some(_RECEIVE_SIZE)))
                    continue
                if isinstance(event, h11.InformationalResponse):
                    continue
                if isinstance(event, h11.Response):
                    response = event
                    continue
                raise ProxyError(f"{where}: the proxy closed the connection without answering")
        except h11.RemoteProtocolError as exc:
            raise ProxyError(f"{where}: invalid answer from the proxy: {exc}") from exc
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise proxy_stream_error(exc, where) from exc
        if not 200 <= response.status_code < 300:
            reason = response.reason.decode("latin-1")
            hint = (
                " (proxy authentication required or wrong)" if response.status_code == 407 else ""
            )
            raise ProxyError(
                f"{where}: refused with HTTP {response.status_code} {reason}{hint}",
                status_code=response.status_code,
            )
        leftover, _closed = conn.trailing_data
        return _PrefixedStream(stream, bytes(leftover)) if leftover else stream
