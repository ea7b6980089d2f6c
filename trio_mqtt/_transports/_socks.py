"""SOCKS5 proxy (RFC 1928, with RFC 1929 user/password authentication) in front of any
TCP-based transport.

Theory of operation: connect to the proxy, offer "no authentication" (and "user/password" when
credentials are set), authenticate if the proxy chose that, then ask for a ``CONNECT`` to the
broker. By default the broker's host name goes to the proxy as a name, so the proxy resolves it
(what curl calls ``socks5h``); with ``remote_dns=False`` it is resolved here and the proxy gets an
address. After a successful reply the connection is a raw tunnel, and the inner transport's
:meth:`~trio_mqtt.StreamLayer.wrap_stream` runs plain MQTT, TLS or WebSocket through it. Every
read asks for exactly the bytes the protocol says come next, so nothing the broker sends later
is read here by mistake.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field

import trio

from .._core._errors import InvalidOptionError, TransportError
from ._base import StreamLayer
from ._errors import ProxyError
from ._proxy import check_tunnel_options, proxy_stream_error
from ._tcp import TcpTransport

__all__ = ["Socks5Proxy"]

_VERSION = 5
_NO_AUTHENTICATION = 0x00
_USER_PASSWORD = 0x02
_NO_ACCEPTABLE_METHOD = 0xFF
_CONNECT = 0x01
_IPV4 = 0x01
_DOMAIN = 0x03
_IPV6 = 0x04

#: RFC 1928 section 6 reply codes.
SOCKS5_REPLIES = {
    0x01: "general SOCKS server failure",
    0x02: "connection not allowed by ruleset",
    0x03: "network unreachable",
    0x04: "host unreachable",
    0x05: "connection refused",
    0x06: "TTL expired",
    0x07: "command not supported",
    0x08: "address type not supported",
}


def _credential(what: str, value: str) -> bytes:
    data = value.encode()
    if not 1 <= len(data) <= 255:
        raise InvalidOptionError(f"a SOCKS5 {what} must be 1 to 255 bytes of UTF-8 (RFC 1929)")
    return data


def _address(host: str) -> bytes:
    """The ATYP byte and address of ``host`` as a SOCKS5 request carries them."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        name = host.encode("idna")
        if not 1 <= len(name) <= 255:
            raise InvalidOptionError(f"host name {host!r} is too long for SOCKS5") from None
        return bytes((_DOMAIN, len(name))) + name
    return bytes((_IPV4 if ip.version == 4 else _IPV6,)) + ip.packed


@dataclass(frozen=True, slots=True)
class Socks5Proxy:
    """Reach the broker through a SOCKS5 proxy (an SSH ``-D`` tunnel, Tor, a corporate gateway).

    Example: ``Socks5Proxy("127.0.0.1", 1080, inner=TlsTransport())`` runs MQTT over TLS through
    the proxy; TLS is end to end with the broker.

    Attributes:
        host: the proxy's host name or address.
        port: the proxy's port (1080 by default).
        inner: what runs through the tunnel: :class:`TcpTransport` (plain MQTT, the default),
            :class:`TlsTransport` or :class:`WebSocketTransport` (WS or WSS).
        username: user name for the proxy (RFC 1929); then a password is required too.
        password: password for the proxy.
        remote_dns: send the broker's host name to the proxy, which resolves it (the default,
            needed when only the proxy can resolve it); ``False`` resolves it here.
        tcp: TCP options of the connection to the proxy.
    """

    host: str
    port: int = 1080
    inner: StreamLayer = field(default_factory=TcpTransport)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    remote_dns: bool = True
    tcp: TcpTransport = field(default_factory=TcpTransport)

    def __post_init__(self) -> None:
        check_tunnel_options(self.host, self.port, self.inner)
        if (self.username is None) != (self.password is None):
            raise InvalidOptionError("SOCKS5 authentication needs both a username and a password")
        if self.username is not None and self.password is not None:
            _credential("username", self.username)
            _credential("password", self.password)

    async def open_stream(
        self, host: str, port: int, *, max_packet_size: int = 0
    ) -> trio.abc.Stream:
        """Open a tunnel to ``host``:``port`` through the proxy and start ``inner`` in it.

        Raises:
            ProxyError: the proxy is unreachable, refused the credentials or the connection
                (see :attr:`ProxyError.socks_reply`), or does not speak SOCKS5.
            TlsError: TLS to the broker failed.
            TransportError: the inner transport failed in another way.
        """
        tunnel = await self._open_tunnel(host, port)
        return await self.inner.wrap_stream(tunnel, host, port, max_packet_size=max_packet_size)

    async def _open_tunnel(self, host: str, port: int) -> trio.abc.Stream:
        where = f"SOCKS5 proxy {self.host}:{self.port}"
        target = await self._target(host, port, where)
        try:
            stream = await self.tcp.open_stream(self.host, self.port)
        except TransportError as exc:
            if type(exc) is TransportError:
                raise ProxyError(f"{where} unreachable: {exc}") from exc
            raise
        try:
            await self._handshake(stream, target, f"{where} tunnel to {host}:{port}")
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return stream

    async def _target(self, host: str, port: int, where: str) -> bytes:
        if not self.remote_dns:
            try:
                infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise ProxyError(f"{where}: cannot resolve {host!r}: {exc}") from exc
            host = str(infos[0][4][0])
        return _address(host) + port.to_bytes(2, "big")

    async def _handshake(self, stream: trio.abc.Stream, target: bytes, where: str) -> None:
        reader = _ExactReader(stream, where)
        try:
            methods = [_NO_AUTHENTICATION]
            if self.username is not None:
                methods.append(_USER_PASSWORD)
            await stream.send_all(bytes((_VERSION, len(methods), *methods)))
            choice = "its choice of method"
            if self.username is None:
                choice += " (does it require a username/password?)"
            version, method = await reader.read(2, choice)
            if version != _VERSION:
                raise ProxyError(f"{where}: the proxy does not speak SOCKS5 (version {version})")
            username, password = self.username, self.password
            if method == _USER_PASSWORD and username is not None and password is not None:
                await self._authenticate(stream, reader, where, username, password)
            elif method == _NO_ACCEPTABLE_METHOD:
                hint = "" if self.username is not None else " (it may want a username/password)"
                raise ProxyError(f"{where}: the proxy accepts none of our methods{hint}")
            elif method != _NO_AUTHENTICATION:
                raise ProxyError(f"{where}: the proxy chose a method we did not offer ({method})")
            await stream.send_all(bytes((_VERSION, _CONNECT, 0)) + target)
            version, reply, _reserved, address_type = await reader.read(
                4, "an answer to the CONNECT request"
            )
            if version != _VERSION:
                raise ProxyError(f"{where}: invalid reply (version {version})")
            if reply:
                reason = SOCKS5_REPLIES.get(reply, "unknown error")
                raise ProxyError(
                    f"{where}: refused with SOCKS5 reply {reply} ({reason})", socks_reply=reply
                )
            # the bound address the proxy used: read and ignore it, whatever its type
            if address_type == _IPV4:
                await reader.read(4 + 2)
            elif address_type == _IPV6:
                await reader.read(16 + 2)
            elif address_type == _DOMAIN:
                (length,) = await reader.read(1)
                await reader.read(length + 2)
            else:
                raise ProxyError(f"{where}: invalid reply (address type {address_type})")
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise proxy_stream_error(exc, where) from exc

    @staticmethod
    async def _authenticate(
        stream: trio.abc.Stream, reader: _ExactReader, where: str, username: str, password: str
    ) -> None:
        user = _credential("username", username)
        secret = _credential("password", password)
        await stream.send_all(bytes((1, len(user))) + user + bytes((len(secret),)) + secret)
        _version, status = await reader.read(
            2, "an answer to the username/password (were they refused?)"
        )
        if status:
            raise ProxyError(f"{where}: the proxy refused the username/password ({status})")


class _ExactReader:
    """Reads exactly the requested number of bytes, or raises :class:`ProxyError`."""

    def __init__(self, stream: trio.abc.Stream, where: str) -> None:
        self._stream = stream
        self._where = where

    async def read(self, count: int, waiting_for: str = "the rest of its reply") -> bytes:
        data = b""
        while len(data) < count:
            chunk = await self._stream.receive_some(count - len(data))
            if not chunk:
                raise ProxyError(
                    f"{self._where}: the proxy closed the connection instead of sending "
                    f"{waiting_for}"
                )
            data += chunk
        return data
