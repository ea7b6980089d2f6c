"""Connection URLs: ``mqtts://user:pass@host:8883/?client_id=x&keep_alive_secs=5``.

Theory of operation: the scheme picks the transport and the default port, the userinfo gives the
credentials, the path is kept for WebSocket (it is the HTTP request target) and is the socket path
for ``unix``, and each query key sets one option. Query keys use rumqttc's names where rumqttc has
one, so a URL written for a Rust service works here too. Everything is checked: an unknown
scheme or key, a repeated key, a value that does not parse, or a key that makes no sense for the
scheme raises :class:`~trio_mqtt.InvalidOptionError` naming it (never echoing the password).

Percent-decoding: userinfo, query keys and values and the ``unix`` path are percent-decoded as
UTF-8; a ``+`` stays a plus sign (it is not form encoding, so ``client_id=a+b`` means ``a+b``).
A WebSocket path is sent as written, still encoded, since it goes on the wire as a request target.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

from ._core._errors import InvalidOptionError
from ._core._packets import ProtocolVersion
from ._transports import (
    HttpProxy,
    Socks5Proxy,
    StreamLayer,
    TcpTransport,
    TlsTransport,
    Transport,
    UnixSocketTransport,
    WebSocketTransport,
)

__all__ = ["QUERY_KEYS", "explain_option_error", "proxy_from_url", "server_fields", "url_fields"]

#: What a server URL of ``MqttOptions(servers=...)`` may set: where and how to connect.
_SERVER_FIELDS = frozenset({"host", "port", "transport", "username", "password"})

_SCHEMES: dict[str, tuple[str, int]] = {
    "mqtt": ("tcp", 1883),
    "tcp": ("tcp", 1883),
    "mqtts": ("tls", 8883),
    "ssl": ("tls", 8883),
    "ws": ("ws", 80),
    "wss": ("wss", 443),
    "unix": ("unix", 0),
}

_INT = re.compile(r"[0-9]{1,10}")
_NUMBER = re.compile(r"[0-9]{1,10}(\.[0-9]{1,9})?")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _as_int(key: str, value: str) -> int:
    if not _INT.fullmatch(value):
        raise InvalidOptionError(f"query key {key!r}: expected a whole number, got {value!r}")
    return int(value)


def _as_seconds(key: str, value: str) -> float:
    if not _NUMBER.fullmatch(value):
        raise InvalidOptionError(f"query key {key!r}: expected a number of seconds, got {value!r}")
    return float(value)


def _as_bool(key: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise InvalidOptionError(f"query key {key!r}: expected true or false, got {value!r}")


def _as_version(key: str, value: str) -> ProtocolVersion:
    versions = {
        "3.1.1": ProtocolVersion.V311,
        "4": ProtocolVersion.V311,
        "5": ProtocolVersion.V5,
        "5.0": ProtocolVersion.V5,
    }
    try:
        return versions[value]
    except KeyError:
        raise InvalidOptionError(f"query key {key!r}: expected 3.1.1 or 5, got {value!r}") from None


def _as_text(key: str, value: str) -> str:
    return value


@dataclass(frozen=True)
class _Key:
    option: str
    parse: Callable[[str, str], Any]
    tls_only: bool = False


#: Query keys understood in a URL, and the :class:`MqttOptions` field (or TLS option) each sets.
QUERY_KEYS: dict[str, _Key] = {
    "client_id": _Key("client_id", _as_text),
    "keep_alive_secs": _Key("keep_alive", _as_int),
    "clean_session": _Key("clean_start", _as_bool),
    "clean_start": _Key("clean_start", _as_bool),
    "inflight_num": _Key("inflight", _as_int),
    "max_incoming_packet_size_bytes": _Key("max_incoming_packet_size", _as_int),
    "max_outgoing_packet_size_bytes": _Key("max_outgoing_packet_size", _as_int),
    "conn_timeout_secs": _Key("connect_timeout", _as_seconds),
    "request_channel_capacity_num": _Key("request_capacity", _as_int),
    "protocol_version": _Key("protocol_version", _as_version),
    "ping_timeout_secs": _Key("ping_timeout", _as_seconds),
    "manual_acks": _Key("manual_acks", _as_bool),
    "session_expiry_interval_secs": _Key("session_expiry_interval", _as_int),
    "receive_maximum": _Key("receive_maximum", _as_int),
    "topic_alias_maximum": _Key("topic_alias_maximum", _as_int),
    "ca_file": _Key("ca_file", _as_text, tls_only=True),
    "cert_file": _Key("cert_file", _as_text, tls_only=True),
    "key_file": _Key("key_file", _as_text, tls_only=True),
    "alpn": _Key("alpn_protocols", lambda key, value: tuple(value.split(",")), tls_only=True),
    "server_name": _Key("server_hostname", _as_text, tls_only=True),
    "proxy": _Key("proxy", _as_text),  # not an MqttOptions field: it wraps the transport
}

#: Proxy URL schemes and their default ports.
_PROXY_SCHEMES = {"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080}


def _decode(what: str, text: str) -> str:
    try:
        return unquote(text, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise InvalidOptionError(f"{what} is not valid percent-encoded UTF-8") from None


def _parse_query(query: str, secure: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (MqttOptions fields, TLS options) set by the query string."""
    options: dict[str, Any] = {}
    tls: dict[str, Any] = {}
    seen: dict[str, str] = {}
    for part in query.split("&"):
        if not part:
            continue
        raw_key, sep, raw_value = part.partition("=")
        key = _decode("a query key", raw_key)
        if not sep:
            raise InvalidOptionError(f"query key {key!r} has no value")
        value = _decode(f"the value of query key {key!r}", raw_value)
        spec = QUERY_KEYS.get(key)
        if spec is None:
            raise InvalidOptionError(
                f"unknown query key {key!r}; known keys: {', '.join(sorted(QUERY_KEYS))}"
            )
        if spec.option in seen:
            raise InvalidOptionError(
                f"query key {key!r} repeats {seen[spec.option]!r}; give it once"
            )
        seen[spec.option] = key
        if spec.tls_only and not secure:
            raise InvalidOptionError(f"query key {key!r} needs a TLS scheme (mqtts, ssl or wss)")
        (tls if spec.tls_only else options)[spec.option] = spec.parse(key, value)
    return options, tls


def _split(url: str, what: str, schemes: dict[str, Any]) -> tuple[SplitResult, str]:
    """``url`` split, and its scheme in lower case, which must be one of ``schemes``."""
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:
        raise InvalidOptionError(f"unparsable {what}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        known = ", ".join(schemes)
        raise InvalidOptionError(f"unknown {what} scheme {parts.scheme!r}; expected one of {known}")
    return parts, scheme


def _host_and_port(parts: SplitResult, scheme: str, default_port: int) -> tuple[str, int]:
    try:
        port = parts.port
    except ValueError:
        raise InvalidOptionError(f"invalid port in {scheme}:// URL") from None
    host = parts.hostname
    if not host:
        raise InvalidOptionError(f"a {scheme}:// URL needs a host")
    return _decode("the host", host), default_port if port is None else port


def _transport(kind: str, parts: SplitResult, tls: dict[str, Any]) -> Transport:
    if kind == "tcp":
        return TcpTransport()
    if kind == "tls":
        return TlsTransport(**tls)
    if kind in ("ws", "wss"):
        path = parts.path or "/"
        return WebSocketTransport(path=path, tls=TlsTransport(**tls) if kind == "wss" else None)
    return UnixSocketTransport(_decode("the socket path", parts.path))


def proxy_from_url(url: str, inner: StreamLayer | None = None) -> HttpProxy | Socks5Proxy:
    """The proxy transport a proxy URL describes, running ``inner`` through its tunnel.

    ``inner`` is what runs through the tunnel: plain MQTT (:class:`TcpTransport`, the default),
    :class:`TlsTransport` or :class:`WebSocketTransport`. Example::

        transport = proxy_from_url("socks5h://127.0.0.1:1080", TlsTransport())

    Schemes, as curl reads them: ``http://`` (an HTTP ``CONNECT`` proxy, port 80 by default),
    ``https://`` (the same over TLS to the proxy, checked against the system's CAs, port 443),
    ``socks5://`` (SOCKS5, the broker's name resolved here, port 1080) and ``socks5h://``
    (SOCKS5, the name resolved by the proxy). ``user:password@`` gives the proxy credentials.

    Raises:
        InvalidOptionError: unknown scheme, a path or query, or a bad host or port.
    """
    parts, scheme = _split(url, "proxy URL", _PROXY_SCHEMES)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidOptionError("a proxy URL is scheme://[user:password@]host[:port] only")
    host, port = _host_and_port(parts, scheme, _PROXY_SCHEMES[scheme])
    username = _decode("the proxy user name", parts.username) if parts.username else None
    password = None if parts.password is None else _decode("the proxy password", parts.password)
    if inner is None:
        inner = TcpTransport()
    if scheme.startswith("socks5"):
        return Socks5Proxy(
            host,
            port,
            inner=inner,
            username=username,
            password=password,
            remote_dns=scheme == "socks5h",
        )
    tls = TlsTransport() if scheme == "https" else None
    return HttpProxy(host, port, inner=inner, username=username, password=password, tls=tls)


def url_fields(url: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The ``MqttOptions`` fields a connection URL sets (``MqttOptions.from_url`` builds them).

    Schemes and default ports: ``mqtt``/``tcp`` (1883), ``mqtts``/``ssl`` (TLS, 8883), ``ws``
    (80) and ``wss`` (443) whose path becomes the WebSocket path, and ``unix`` whose path is the
    socket (``unix:///run/mosquitto/mqtt.sock``). ``user:password@`` gives the credentials.

    Query keys (the table ``QUERY_KEYS``): ``client_id``, ``keep_alive_secs``, ``clean_session``
    or ``clean_start``, ``inflight_num``, ``max_incoming_packet_size_bytes``,
    ``max_outgoing_packet_size_bytes``, ``conn_timeout_secs``, ``request_channel_capacity_num``,
    ``protocol_version`` (``3.1.1`` or ``5``), ``ping_timeout_secs``, ``manual_acks``,
    ``session_expiry_interval_secs``, ``receive_maximum``, ``topic_alias_maximum``, ``proxy``
    (a proxy URL for :func:`proxy_from_url`, percent-encoded where it holds ``&`` or ``#``);
    with a TLS scheme also ``ca_file``, ``cert_file``, ``key_file``, ``alpn``
    (comma-separated) and ``server_name``. Without ``client_id`` the broker assigns one.

    Args:
        url: the connection URL.
        **overrides: ``MqttOptions`` fields that take precedence over the URL (for example
            ``transport=`` to use a custom TLS context, or ``will=``).

    Returns:
        The keyword arguments for ``MqttOptions``, overrides applied.

    Raises:
        InvalidOptionError: unknown scheme or query key, repeated key or bad value; the
            message names the culprit.
    """
    if not isinstance(url, str):
        raise InvalidOptionError("the URL must be a string")
    parts, scheme = _split(url, "URL", _SCHEMES)
    if parts.fragment:
        raise InvalidOptionError("a connection URL cannot have a #fragment")
    kind, default_port = _SCHEMES[scheme]
    options, tls = _parse_query(parts.query, secure=kind in ("tls", "wss"))
    if kind == "unix":
        if parts.hostname not in (None, "", "localhost") or parts.port is not None:
            raise InvalidOptionError("a unix:// URL takes a path only: unix:///path/to/socket")
        if not parts.path:
            raise InvalidOptionError("a unix:// URL needs the socket path")
        host, port = "localhost", 0
    else:
        if kind in ("tcp", "tls") and parts.path not in ("", "/"):
            raise InvalidOptionError(f"a {scheme}:// URL has no path, got {parts.path!r}")
        host, port = _host_and_port(parts, scheme, default_port)
    if parts.username:  # "mqtt://:secret@host" sends a password alone (MQTT 5 allows it)
        options["username"] = _decode("the user name", parts.username)
    if parts.password is not None:
        options["password"] = _decode("the password", parts.password)
    options.setdefault("client_id", "")
    options.update(host=host, port=port)
    proxy = options.pop("proxy", None)
    if "transport" not in overrides:
        transport = _transport(kind, parts, tls)
        if proxy is not None:
            if not isinstance(transport, StreamLayer):
                raise InvalidOptionError(f"a {scheme}:// connection cannot go through a proxy")
            transport = proxy_from_url(proxy, transport)
        options["transport"] = transport
    elif tls or proxy is not None:
        ignored = ", ".join(sorted([*tls, *(["proxy"] if proxy is not None else [])]))
        raise InvalidOptionError(
            f"the URL's transport settings ({ignored}) would be ignored because transport= is "
            "given; put them in the transport instead"
        )
    options.update(overrides)
    return options


def server_fields(url: str) -> dict[str, Any]:
    """The ``MqttOptions`` fields one entry of ``servers=`` sets: host, port and transport.

    The URL's scheme, host, port, WebSocket path, TLS query keys and proxy choose the
    transport; ``user:password@`` sets the credentials for that server. Query keys that
    describe the session (client id, keep alive, ...) belong to the options, not to one
    server, and are refused.

    Raises:
        InvalidOptionError: a bad URL, or one that sets more than where to connect.
    """
    fields = url_fields(url, {})
    extra = sorted(name for name in fields if name not in _SERVER_FIELDS)
    if fields.get("client_id") == "":
        extra.remove("client_id")
        del fields["client_id"]
    if extra:
        raise InvalidOptionError(
            f"server URL {url!r} sets {', '.join(extra)}: a server URL says only where to "
            "connect (scheme, credentials, host, port, path, TLS keys, proxy); give session "
            "settings as options"
        )
    return fields


def explain_option_error(
    error: InvalidOptionError, url: str, overrides: dict[str, Any]
) -> InvalidOptionError | None:
    """``error`` (raised by ``MqttOptions`` for a field) naming the query key that set the
    field, or None when no query key did."""
    query = urlsplit(url).query
    keys = [
        f"{key!r}"
        for key, spec in QUERY_KEYS.items()
        if spec.option in str(error) and f"{key}=" in query and spec.option not in overrides
    ]
    if not keys:
        return None
    label = "query key" if len(keys) == 1 else "query keys"
    return InvalidOptionError(f"{error} (from {label} {', '.join(keys)})")
