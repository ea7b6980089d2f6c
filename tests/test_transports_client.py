"""The real client over every transport: a QoS 0/1/2 round trip through mosquitto.

Where test_transports.py drives the transports with hand-made bytes, this runs
``open_mqtt_connection`` itself on each one (and on URLs), for MQTT 3.1.1 and 5.0, so the event
loop is proven not to care which stream it got.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import trio
import trustme
from test_transport_proxy import FakeProxy, start_proxy
from test_transport_websocket import idle, run_fake
from test_transports import LOCALHOST, TIMEOUT

from trio_mqtt import (
    ConnectionLost,
    InvalidOptionError,
    MqttOptions,
    ProtocolVersion,
    QoS,
    open_mqtt_connection,
)
from trio_mqtt._transports import (
    CertificateVerificationError,
    HttpProxy,
    ProxyError,
    TcpTransport,
    TlsTransport,
    Transport,
    UnixSocketTransport,
    WebSocketError,
    WebSocketTransport,
)
from trio_mqtt.testing import MosquittoBroker


@pytest.fixture(scope="module")
def broker() -> Iterator[MosquittoBroker]:
    with MosquittoBroker(
        tls=True,
        websockets=True,
        websockets_tls=True,
        unix_socket=True,
        max_inflight_messages=0,
        log_types=("error", "warning"),
    ) as running:
        yield running


@pytest.fixture
async def proxy_port() -> AsyncIterator[int]:
    async with trio.open_nursery() as nursery:
        yield await start_proxy(nursery, FakeProxy())
        nursery.cancel_scope.cancel()


def transports(broker: MosquittoBroker, proxy_port: int) -> dict[str, tuple[Transport, int]]:
    tls = TlsTransport(ca_file=broker.ca_pem_path)
    return {
        "tcp": (TcpTransport(), broker.port),
        "tls": (tls, broker.tls_port),
        "ws": (WebSocketTransport(path="/mqtt"), broker.ws_port),
        "wss": (WebSocketTransport(tls=tls), broker.wss_port),
        "unix": (UnixSocketTransport(broker.unix_path), 0),
        "proxy-tls": (HttpProxy(LOCALHOST, proxy_port, inner=tls), broker.tls_port),
        "proxy-wss": (
            HttpProxy(LOCALHOST, proxy_port, inner=WebSocketTransport(tls=tls)),
            broker.wss_port,
        ),
    }


async def round_trip(options: MqttOptions | str, topic: str) -> None:
    """Subscribe at QoS 2, publish at QoS 0, 1 and 2, and receive all three intact."""
    with trio.fail_after(TIMEOUT):
        async with (
            open_mqtt_connection(options) as conn,
            conn.route(topic, qos=QoS.EXACTLY_ONCE) as messages,
        ):
            for qos in QoS:
                tracker = await conn.client.publish_tracked(topic, b"x%d" % qos * 500, qos=qos)
                result = await tracker.wait()
                assert result.is_success
                message = await messages.receive()
                assert message.topic == topic
                assert message.qos == qos
                assert message.payload == b"x%d" % qos * 500


@pytest.mark.parametrize("version", [ProtocolVersion.V311, ProtocolVersion.V5])
@pytest.mark.parametrize("name", ["tcp", "tls", "ws", "wss", "unix", "proxy-tls", "proxy-wss"])
async def test_client_round_trip_over_every_transport(
    broker: MosquittoBroker, proxy_port: int, name: str, version: ProtocolVersion
) -> None:
    transport, port = transports(broker, proxy_port)[name]
    options = MqttOptions(
        f"client-{name}-{version}",
        LOCALHOST,
        port,
        transport=transport,
        protocol_version=version,
    )
    await round_trip(options, f"transports/{name}/{int(version)}")


@pytest.mark.parametrize("kind", ["mqtt", "mqtts", "ws", "wss", "unix"])
async def test_client_round_trip_from_a_url(broker: MosquittoBroker, kind: str) -> None:
    ca = f"ca_file={broker.ca_pem_path}"
    url = {
        "mqtt": f"mqtt://{LOCALHOST}:{broker.port}?client_id=url-mqtt",
        "mqtts": f"mqtts://{LOCALHOST}:{broker.tls_port}/?client_id=url-mqtts&{ca}",
        "ws": f"ws://{LOCALHOST}:{broker.ws_port}/mqtt?client_id=url-ws&protocol_version=5",
        "wss": f"wss://{LOCALHOST}:{broker.wss_port}/mqtt?client_id=url-wss&{ca}",
        "unix": f"unix://{broker.unix_path}?client_id=url-unix&keep_alive_secs=5",
    }[kind]
    await round_trip(url, f"transports/url/{kind}")


async def test_transport_errors_reach_the_user_typed(broker: MosquittoBroker) -> None:
    untrusted = TlsTransport(ca_data=trustme.CA().cert_pem.bytes().decode())
    options = MqttOptions("typed-errors", LOCALHOST, broker.tls_port, transport=untrusted)
    with trio.fail_after(TIMEOUT), pytest.raises(CertificateVerificationError):
        async with open_mqtt_connection(options):
            pass  # pragma: no cover - the connection must fail

    async with trio.open_nursery() as nursery:
        port = await start_proxy(nursery, FakeProxy(credentials=("u", "p")))
        proxied = options.replace(transport=HttpProxy(LOCALHOST, port), port=broker.port)
        with trio.fail_after(TIMEOUT), pytest.raises(ProxyError, match="407"):
            async with open_mqtt_connection(proxied):
                pass  # pragma: no cover

        _server, ws_port = await run_fake(nursery, idle, reject_status=403)
        refused = options.replace(transport=WebSocketTransport(), port=ws_port)
        with trio.fail_after(TIMEOUT), pytest.raises(WebSocketError, match="403"):
            async with open_mqtt_connection(refused):
                pass  # pragma: no cover
        nursery.cancel_scope.cancel()

    with pytest.raises(InvalidOptionError, match="'bogus'"):
        async with open_mqtt_connection(f"mqtt://{LOCALHOST}:{broker.port}?bogus=1"):
            pass  # pragma: no cover


async def test_mutual_tls_through_the_client() -> None:
    with MosquittoBroker(tls=True, require_certificate=True, log_types=("error",)) as mtls:
        with_cert = TlsTransport(
            ca_file=mtls.ca_pem_path,
            cert_file=mtls.client_cert_path,
            key_file=mtls.client_key_path,
        )
        options = MqttOptions("mtls", LOCALHOST, mtls.tls_port, transport=with_cert)
        await round_trip(options, "transports/mtls")
        # Without the certificate the broker drops us after the TLS 1.3 handshake.
        without = options.replace(transport=TlsTransport(ca_file=mtls.ca_pem_path))
        with trio.fail_after(TIMEOUT), pytest.raises(ConnectionLost):
            async with open_mqtt_connection(without):
                pass  # pragma: no cover
