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
from typing import cast
from urllib.parse import parse_qsl, urlsplit

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
    WebSocketTransport,
    Will,
    proxy_from_url,
)

__all__ = ["add_connection_arguments", "default_client_id", "options_from_args"]

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883
DEFAULT_KEEP_ALIVE = 60

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
        help="broker URL instead of -h/-p: mqtt://, mqtts://, ws://, wss:// or unix:///path, "
        "with user:password@ and query keys such as ?client_id=x&keep_alive_secs=5",
    )
    broker.add_argument(
        "--proxy",
        metavar="URL",
        help="reach the broker through a proxy: http://, https://, socks5:// (name resolved "
        "here) or socks5h:// (name resolved by the proxy), with user:password@ if needed",
    )
    broker.add_argument("-u", "--username", help="user name")
    broker.add_argument("-P", "--pw", "--password", dest="password", help="password")
    broker.add_argument("-i", "--id", dest="client_id", help="client id (default: generated)")
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


def _tls_requested(args: argparse.Namespace) -> bool:
    return bool(args.tls or args.cafile or args.cert or args.key or args.insecure)


def _tls_transport(args: argparse.Namespace, base: TlsTransport | None = None) -> TlsTransport:
    if args.key and not args.cert:
        raise InvalidOptionError("--key needs --cert")
    settings = {
        "ca_file": args.cafile,
        "cert_file": args.cert,
        "key_file": args.key,
    }
    changes: dict[str, object] = {k: v for k, v in settings.items() if v is not None}
    if args.insecure:
        changes["dangerously_skip_hostname_check"] = True
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
    raise InvalidOptionError(
        "--tls, --cafile, --cert, --key and --insecure need a TLS URL (mqtts:// or wss://)"
    )


def _will(args: argparse.Namespace) -> Will | None:
    if args.will_topic is None:
        if args.will_payload or args.will_retain or args.will_qos:
            raise InvalidOptionError(
                "--will-payload, --will-qos and --will-retain need --will-topic"
            )
        return None
    return Will(
        args.will_topic, args.will_payload.encode("utf-8"), QoS(args.will_qos), args.will_retain
    )


def _url_has_client_id(url: str) -> bool:
    try:
        query = urlsplit(url.strip()).query
    except ValueError:
        return False
    return any(key == "client_id" for key, _ in parse_qsl(query, keep_blank_values=True))


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
    overrides: dict[str, object] = {"connect_timeout": args.connect_timeout}
    if args.username is not None:
        overrides["username"] = args.username
    if args.password is not None:
        overrides["password"] = args.password
    if args.keepalive is not None:
        overrides["keep_alive"] = args.keepalive
    if args.protocol_version is not None:
        overrides["protocol_version"] = args.protocol_version
    will = _will(args)
    if will is not None:
        overrides["will"] = will
    generated = client_id or default_client_id(command)
    if args.url is not None:
        if args.host is not None or args.port is not None:
            raise InvalidOptionError("give the broker either as --url or as -h/-p, not both")
        if args.client_id is not None:
            overrides["client_id"] = args.client_id
        elif not _url_has_client_id(args.url):
            overrides["client_id"] = generated
        options = MqttOptions.from_url(args.url, **overrides)
        if _tls_requested(args):
            options = options.replace(transport=_with_tls(args, options.transport))
        return _with_proxy(args, options)
    tls = _tls_requested(args)
    transport: Transport = _tls_transport(args) if tls else TcpTransport()
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
