"""Connection options shared by every command, spelled the way mosquitto_pub/sub users expect.

Theory of operation: argparse collects the flags into a namespace; :func:`options_from_args`
turns them into one validated :class:`~trio_mqtt.MqttOptions`. Two ways to name the broker
exist and cannot be mixed: ``--url`` (any scheme :meth:`MqttOptions.from_url` knows: mqtt,
mqtts, ws, wss, unix) or ``-h``/``-p`` (plain TCP, or TLS as soon as a TLS flag is given, as
mosquitto does with ``--cafile``). The other flags (credentials, client id, keep alive,
protocol version, will, TLS files) apply on top of either. Every mistake is raised as
:class:`~trio_mqtt.InvalidOptionError`, which the command line maps to exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import ssl
from typing import cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from trio_mqtt import (
    HttpProxy,
    InvalidOptionError,
    MqttOptions,
    ProtocolVersion,
    QoS,
    Socks5Proxy,
    StreamLayer,
    TcpTransport,
    TlsTransport,
    Transport,
    UnixSocketTransport,
    WebSocketTransport,
    Will,
    proxy_from_url,
)

from ._properties import PropertySet, property_argument

__all__ = ["add_connection_arguments", "default_client_id", "options_from_args", "url_topic"]

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883
DEFAULT_KEEP_ALIVE = 60
#: mosquitto's word for a session that never expires (``-x -1``, ``-x ∞``, or ``-c`` with v5).
NEVER_EXPIRES = 0xFFFFFFFF

_TLS_VERSIONS = {
    "tlsv1.3": ssl.TLSVersion.TLSv1_3,
    "tlsv1.2": ssl.TLSVersion.TLSv1_2,
    "tlsv1.1": ssl.TLSVersion.TLSv1_1,
}

_VERSIONS = {
    "311": ProtocolVersion.V311,
    "mqttv311": ProtocolVersion.V311,
    "3.1.1": ProtocolVersion.V311,
    "4": ProtocolVersion.V311,
    "5": ProtocolVersion.V5,
    "mqttv5": ProtocolVersion.V5,
    "5.0": ProtocolVersion.V5,
}


def _protocol_version(text: str) -> ProtocolVersion:
    try:
        return _VERSIONS[text.lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"expected 311 or 5, got {text!r}") from None


def qos_value(text: str) -> QoS:
    """argparse type for a QoS level (0, 1 or 2)."""
    if text not in ("0", "1", "2"):
        raise argparse.ArgumentTypeError(f"QoS must be 0, 1 or 2, got {text!r}")
    return QoS(int(text))


def port_value(text: str) -> int:
    """argparse type for a TCP port."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"port must be a number from 1 to 65535, got {text!r}")
    return port


def positive_float(text: str) -> float:
    """argparse type for a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type for a number of seconds that may be zero."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type for a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def keep_alive_value(text: str) -> int:
    """argparse type for a keep alive in seconds (0 disables it)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"keep alive must be 0 to 65535 seconds, got {text!r}")
    return value


def session_expiry_value(text: str) -> int:
    """argparse type for ``-x``: 0 to 4294967294 seconds, or -1/4294967295/∞ for never."""
    if text == "∞":
        return NEVER_EXPIRES
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"session expiry must be a number, got {text!r}") from None
    if value == -1:
        return NEVER_EXPIRES
    if not 0 <= value <= NEVER_EXPIRES:
        raise argparse.ArgumentTypeError(f"session expiry out of range: {text!r}")
    return value


def packet_size_value(text: str) -> int:
    """argparse type for a packet size limit in bytes (a ``k`` or ``M`` suffix is allowed)."""
    units = {"k": 1024, "K": 1024, "m": 1024 * 1024, "M": 1024 * 1024}
    scale = units.get(text[-1:], 1)
    digits = text[:-1] if scale != 1 else text
    try:
        value = int(digits) * scale
    except ValueError:
        value = 0
    if not 16 <= value <= 268_435_460:
        raise argparse.ArgumentTypeError(
            f"expected a packet size from 16 bytes to 256M, got {text!r}"
        )
    return value


def _tls_version(text: str) -> ssl.TLSVersion:
    try:
        return _TLS_VERSIONS[text.lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"expected tlsv1.3, tlsv1.2 or tlsv1.1, got {text!r}"
        ) from None


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the broker, login, TLS and will flags to a sub-command's parser."""
    broker = parser.add_argument_group("broker")
    broker.add_argument(
        "-h", "--host", help=f"broker host (default {DEFAULT_HOST}; -h is not help: use --help)"
    )
    broker.add_argument(
        "-p",
        "--port",
        type=port_value,
        help=f"broker port (default {DEFAULT_PORT}, or {DEFAULT_TLS_PORT} with TLS)",
    )
    broker.add_argument(
        "-L",
        "--url",
        action=_UrlAction,
        help="broker URL instead of -h/-p: mqtt://, mqtts://, ws://, wss:// or unix:///path, "
        "with user:password@ and query keys such as ?client_id=x&keep_alive_secs=5; as in "
        "mosquitto, the path of an mqtt:// or mqtts:// URL is the topic (mqtt://host/a/b). "
        "Repeat it to give further servers, tried in order when one fails",
    )
    broker.add_argument(
        "--unix",
        metavar="PATH",
        help="connect through the broker's Unix domain socket at PATH instead of TCP",
    )
    broker.add_argument(
        "-A",
        dest="bind_address",
        metavar="ADDRESS",
        help="bind the outgoing socket to this local address (choose the interface)",
    )
    broker.add_argument(
        "--nodelay",
        action="store_true",
        help="disable Nagle's algorithm (trio-mqtt always does: accepted for mosquitto users)",
    )
    broker.add_argument(
        "--proxy",
        metavar="URL",
        help="reach the broker through a proxy: http://, https://, socks5:// (name resolved "
        "here) or socks5h:// (name resolved by the proxy), with user:password@ if needed",
    )
    broker.add_argument("-u", "--username", help="user name")
    broker.add_argument("-P", "--pw", "--password", dest="password", help="password")
    client_id = broker.add_mutually_exclusive_group()
    client_id.add_argument("-i", "--id", dest="client_id", help="client id (default: generated)")
    client_id.add_argument(
        "-I",
        "--id-prefix",
        metavar="PREFIX",
        help="client id: PREFIX followed by the process id (for brokers with clientid_prefixes)",
    )
    broker.add_argument(
        "-c",
        "--disable-clean-session",
        dest="clean_session",
        action="store_false",
        help="keep the session when disconnected (needs -i; with MQTT 5 the session then never "
        "expires unless -x says otherwise)",
    )
    broker.add_argument(
        "-x",
        "--session-expiry",
        type=session_expiry_value,
        metavar="SECONDS",
        help="MQTT 5 session expiry interval (-1 or ∞: never expires)",
    )
    broker.add_argument(
        "-M",
        "--max-inflight",
        type=positive_int,
        metavar="N",
        help="QoS 1/2 messages in flight at once (default 100)",
    )
    broker.add_argument(
        "--max-outgoing-packet-size",
        type=packet_size_value,
        metavar="BYTES",
        help="refuse to send larger packets (default: the protocol's maximum, 256 MiB, or "
        "what an MQTT 5 broker announces)",
    )
    broker.add_argument(
        "--max-incoming-packet-size",
        type=packet_size_value,
        metavar="BYTES",
        help="accept packets up to this size from the broker (default 1M)",
    )
    broker.add_argument(
        "-D",
        "--property",
        dest="properties",
        action="append",
        default=[],
        type=property_argument,
        metavar="COMMAND NAME VALUE",
        help="an MQTT 5 property, as in mosquitto: -D connect receive-maximum 10, "
        "-D publish user-property NAME VALUE (implies -V 5; repeat for more)",
    )
    broker.add_argument(
        "--quiet", action="store_true", help="do not print error messages (the exit code stays)"
    )
    broker.add_argument(
        "-k",
        "--keepalive",
        type=keep_alive_value,
        help=f"keep alive in seconds (default {DEFAULT_KEEP_ALIVE}, 0 = off)",
    )
    broker.add_argument(
        "-V",
        "--protocol-version",
        type=_protocol_version,
        metavar="{311,5}",
        help="MQTT protocol version (default 311)",
    )
    broker.add_argument(
        "--connect-timeout",
        type=positive_float,
        default=5.0,
        metavar="SECONDS",
        help="time allowed to connect and receive CONNACK (default 5)",
    )
    tls = parser.add_argument_group("TLS")
    tls.add_argument("--tls", action="store_true", help="use TLS with the system's trusted CAs")
    tls.add_argument("--cafile", help="PEM file of the CAs that sign the broker (implies TLS)")
    tls.add_argument(
        "--capath", help="directory of CA certificates (hashed names, as OpenSSL; implies TLS)"
    )
    tls.add_argument(
        "--tls-use-os-certs",
        action="store_true",
        help="trust the system's CAs too (implies TLS; they are used anyway without --cafile)",
    )
    tls.add_argument(
        "--tls-version",
        type=_tls_version,
        metavar="{tlsv1.3,tlsv1.2,tlsv1.1}",
        help="the oldest TLS version accepted (implies TLS)",
    )
    tls.add_argument(
        "--tls-alpn", metavar="PROTOCOL", help="offer this ALPN protocol (implies TLS)"
    )
    tls.add_argument("--cert", help="client certificate PEM file (implies TLS)")
    tls.add_argument("--key", help="client private key PEM file (with --cert)")
    tls.add_argument(
        "--insecure",
        action="store_true",
        help="do not check that the certificate matches the host name (the chain is still "
        "verified)",
    )
    will = parser.add_argument_group("last will")
    will.add_argument("--will-topic", help="topic of the last will message")
    will.add_argument("--will-payload", default="", help="payload of the last will message")
    will.add_argument("--will-qos", type=qos_value, default=QoS.AT_MOST_ONCE, metavar="{0,1,2}")
    will.add_argument("--will-retain", action="store_true", help="retain the last will message")


def default_client_id(command: str) -> str:
    """A client id unlikely to collide with another run: ``trio-mqtt-sub-1234-9f2c``."""
    return f"trio-mqtt-{command}-{os.getpid()}-{secrets.token_hex(2)}"


_TLS_FLAGS = "--tls, --cafile, --capath, --cert, --key, --insecure, --tls-use-os-certs, "
_TLS_FLAGS += "--tls-version and --tls-alpn"


def _tls_requested(args: argparse.Namespace) -> bool:
    return bool(
        args.tls
        or args.cafile
        or args.capath
        or args.cert
        or args.key
        or args.insecure
        or args.tls_use_os_certs
        or args.tls_version
        or args.tls_alpn
    )


def _tls_transport(args: argparse.Namespace, base: TlsTransport | None = None) -> TlsTransport:
    if args.key and not args.cert:
        raise InvalidOptionError("--key needs --cert")
    settings = {
        "ca_file": args.cafile,
        "ca_path": args.capath,
        "cert_file": args.cert,
        "key_file": args.key,
        "minimum_version": args.tls_version,
        "alpn_protocols": (args.tls_alpn,) if args.tls_alpn else None,
    }
    changes: dict[str, object] = {k: v for k, v in settings.items() if v is not None}
    if args.insecure:
        changes["dangerously_skip_hostname_check"] = True
    if args.tls_use_os_certs:
        changes["system_cas"] = True
    if args.bind_address is not None:
        base_tcp = base.tcp if base is not None else TcpTransport()
        changes["tcp"] = dataclasses.replace(base_tcp, local_address=args.bind_address)
    if base is None:
        return TlsTransport(**changes)  # type: ignore[arg-type]
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _with_tls(args: argparse.Namespace, transport: Transport) -> Transport:
    """Apply the TLS flags to the transport a URL chose (it must be mqtts or wss)."""
    if isinstance(transport, HttpProxy | Socks5Proxy):
        inner = _with_tls(args, cast(Transport, transport.inner))
        return dataclasses.replace(transport, inner=cast(StreamLayer, inner))
    if isinstance(transport, TlsTransport):
        return _tls_transport(args, transport)
    if isinstance(transport, WebSocketTransport) and isinstance(transport.tls, TlsTransport):
        return dataclasses.replace(transport, tls=_tls_transport(args, transport.tls))
    raise InvalidOptionError(f"{_TLS_FLAGS} need a TLS URL (mqtts:// or wss://)")


def _with_bind_address(args: argparse.Namespace, transport: Transport) -> Transport:
    """Apply ``-A`` to the TCP layer of a plain transport (TLS ones get it with the TLS flags)."""
    if args.bind_address is None:
        return transport
    if isinstance(transport, TcpTransport):
        return dataclasses.replace(transport, local_address=args.bind_address)
    if isinstance(transport, WebSocketTransport) and transport.tls is None:
        tcp = dataclasses.replace(transport.tcp, local_address=args.bind_address)
        return dataclasses.replace(transport, tcp=tcp)
    if isinstance(transport, TlsTransport):
        tcp = dataclasses.replace(transport.tcp, local_address=args.bind_address)
        return dataclasses.replace(transport, tcp=tcp)
    raise InvalidOptionError("-A (bind address) needs a TCP connection")


def _will(args: argparse.Namespace, properties: PropertySet) -> Will | None:
    will_properties = properties.get("will")
    if args.will_topic is None:
        if args.will_payload or args.will_retain or args.will_qos or will_properties:
            raise InvalidOptionError(
                "--will-payload, --will-qos, --will-retain and -D will need --will-topic"
            )
        return None
    return Will(
        args.will_topic,
        args.will_payload.encode("utf-8"),
        QoS(args.will_qos),
        args.will_retain,
        will_properties,
    )


class _UrlAction(argparse.Action):
    """``-L``/``--url``, repeatable: the first URL names the broker (and the topic, its query
    keys the session settings); all of them, in order, form the server list."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        assert isinstance(values, str)
        urls = [*getattr(namespace, "urls", ()), values]
        namespace.urls = urls
        if namespace.url is None:
            namespace.url = values


#: Query keys a server of the list keeps from the first URL: they choose its transport.
_TRANSPORT_QUERY_KEYS = frozenset(
    {"ca_file", "cert_file", "key_file", "alpn", "server_name", "proxy"}
)


def _server_list(args: argparse.Namespace) -> list[str]:
    """The ``servers=`` list of a repeated ``-L``: each URL without its topic; the first also
    without the session query keys it applies to the whole session."""
    urls: list[str] = list(getattr(args, "urls", ()))
    if len(urls) < 2:
        return []
    if _tls_requested(args) or args.proxy is not None or args.bind_address is not None:
        raise InvalidOptionError(
            "with several -L URLs, give TLS settings and proxies in each URL's query "
            "(ca_file=, proxy=, ...) instead of --cafile/--proxy/-A"
        )
    first = urlsplit(url_topic(urls[0])[0].strip())
    query = [
        (key, value)
        for key, value in parse_qsl(first.query, keep_blank_values=True)
        if key in _TRANSPORT_QUERY_KEYS
    ]
    servers = [urlunsplit(first._replace(query=urlencode(query)))]
    return servers + [url_topic(url)[0] for url in urls[1:]]


def _url_has_client_id(url: str) -> bool:
    try:
        query = urlsplit(url.strip()).query
    except ValueError:
        return False
    return any(key == "client_id" for key, _ in parse_qsl(query, keep_blank_values=True))


def url_topic(url: str) -> tuple[str, str | None]:
    """Split mosquitto's ``mqtt://host:port/topic`` into the broker URL and the topic.

    Only ``mqtt://`` and ``mqtts://`` URLs carry a topic (the WebSocket schemes have a path of
    their own). As in mosquitto, the topic is everything after the first ``/``, taken as
    written (``#`` and ``+`` included, nothing percent-decoded), up to a ``?`` that starts
    trio-mqtt's query keys.
    """
    text = url.strip()
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in ("mqtt", "mqtts"):
        return url, None
    authority, slash, path = rest.partition("/")
    if not slash:
        return url, None
    topic, question, query = path.partition("?")
    base = f"{scheme}://{authority}/" + (question + query if question else "")
    return base, (topic or None)


def _session_settings(
    args: argparse.Namespace, version: ProtocolVersion, explicit_id: bool
) -> dict[str, object]:
    """``-c`` and ``-x`` with mosquitto's rules."""
    settings: dict[str, object] = {"clean_start": args.clean_session}
    expiry = args.session_expiry
    if version is ProtocolVersion.V5:
        if not args.clean_session and expiry is None:
            expiry = NEVER_EXPIRES
        if expiry == NEVER_EXPIRES and not explicit_id:
            raise InvalidOptionError(
                "a session that never expires (-c, or -x -1) needs a client id: give -i"
            )
        if expiry:
            settings["session_expiry_interval"] = expiry
    else:
        if expiry is not None:
            raise InvalidOptionError("-x (session expiry) needs MQTT 5: add -V 5")
        if not args.clean_session and not explicit_id:
            raise InvalidOptionError("-c (keep the session) needs a client id: give -i")
    return settings


def options_from_args(
    args: argparse.Namespace, command: str, *, client_id: str | None = None
) -> MqttOptions:
    """Build the connection options the flags describe.

    Args:
        args: the parsed command line (see :func:`add_connection_arguments`).
        command: the sub-command name, used in the generated client id.
        client_id: a client id to use when neither ``-i`` nor the URL gives one.

    Raises:
        InvalidOptionError: contradictory or invalid flags.
    """
    properties = PropertySet(args.properties)
    version = args.protocol_version
    if properties and version is None:
        version = ProtocolVersion.V5  # as mosquitto: -D makes it an MQTT 5 client
    if properties and version is not ProtocolVersion.V5:
        raise InvalidOptionError("-D (MQTT 5 properties) cannot be used with -V 311")
    overrides: dict[str, object] = {"connect_timeout": args.connect_timeout}
    if args.username is not None:
        overrides["username"] = args.username
    if args.password is not None:
        overrides["password"] = args.password
    if args.keepalive is not None:
        overrides["keep_alive"] = args.keepalive
    if version is not None:
        overrides["protocol_version"] = version
    if args.max_inflight is not None:
        overrides["inflight"] = min(args.max_inflight, 65000)
    if args.max_outgoing_packet_size is not None:
        overrides["max_outgoing_packet_size"] = args.max_outgoing_packet_size
    if args.max_incoming_packet_size is not None:
        overrides["max_incoming_packet_size"] = args.max_incoming_packet_size
    overrides.update(properties.connect_options())
    will = _will(args, properties)
    if will is not None:
        overrides["will"] = will
    url = url_topic(args.url)[0] if args.url is not None else None
    url_gives_id = url is not None and _url_has_client_id(url)
    explicit_id = args.client_id is not None or url_gives_id
    overrides.update(_session_settings(args, version or ProtocolVersion.V311, explicit_id))
    if args.id_prefix is not None:
        generated = f"{args.id_prefix}{os.getpid()}"
    else:
        generated = client_id or default_client_id(command)
    if url is not None:
        if args.host is not None or args.port is not None or args.unix is not None:
            raise InvalidOptionError("give the broker either as --url or as -h/-p/--unix")
        if args.client_id is not None:
            overrides["client_id"] = args.client_id
        elif not url_gives_id:
            overrides["client_id"] = generated
        options = MqttOptions.from_url(url, **overrides)
        servers = _server_list(args)
        if servers:
            return options.replace(servers=servers)
        if _tls_requested(args):
            options = options.replace(transport=_with_tls(args, options.transport))
        else:
            options = options.replace(transport=_with_bind_address(args, options.transport))
        return _with_proxy(args, options)
    tls = _tls_requested(args)
    transport: Transport
    if args.unix is not None:
        if tls or args.bind_address is not None:
            raise InvalidOptionError("--unix cannot be combined with TLS flags or -A")
        transport = UnixSocketTransport(args.unix)
    elif tls:
        transport = _tls_transport(args)
    else:
        transport = _with_bind_address(args, TcpTransport())
    overrides.setdefault("keep_alive", DEFAULT_KEEP_ALIVE)
    options = MqttOptions(
        args.client_id if args.client_id is not None else generated,
        host=args.host or DEFAULT_HOST,
        port=args.port or (DEFAULT_TLS_PORT if tls else DEFAULT_PORT),
        transport=transport,
        **overrides,  # type: ignore[arg-type]
    )
    return _with_proxy(args, options)


def _with_proxy(args: argparse.Namespace, options: MqttOptions) -> MqttOptions:
    """Apply ``--proxy`` to the transport the other flags chose."""
    if args.proxy is None:
        return options
    transport = options.transport
    if isinstance(transport, HttpProxy | Socks5Proxy):
        raise InvalidOptionError("give the proxy either as --proxy or in the URL, not both")
    if not isinstance(transport, StreamLayer):
        raise InvalidOptionError("a unix:// connection cannot go through a proxy")
    return options.replace(transport=proxy_from_url(args.proxy, transport))


def describe_broker(options: MqttOptions) -> str:
    """A short human description of where the options connect: ``mqtt://localhost:1883``."""
    transport = options.transport
    if isinstance(transport, HttpProxy | Socks5Proxy):
        kind = "SOCKS5" if isinstance(transport, Socks5Proxy) else "HTTP"
        inner = options.replace(transport=cast(Transport, transport.inner))
        return f"{describe_broker(inner)} via {kind} proxy {transport.host}:{transport.port}"
    if isinstance(transport, TlsTransport):
        scheme = "mqtts"
    elif isinstance(transport, WebSocketTransport):
        scheme = "wss" if transport.secure else "ws"
        return f"{scheme}://{options.host}:{options.port}{transport.path}"
    elif isinstance(transport, TcpTransport):
        scheme = "mqtt"
    else:
        path = getattr(transport, "path", None)
        if path is not None:
            return f"unix://{os.fspath(path)}"
        return f"{type(transport).__name__} {options.host}:{options.port}"
    return f"{scheme}://{options.host}:{options.port}"
