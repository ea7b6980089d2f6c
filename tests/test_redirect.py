"""MQTT 5 server redirects (CONNACK or DISCONNECT 0x9C/0x9D with a Server Reference).

No real broker redirects, so a scripted peer on a TCP port of its own plays the redirecting
broker; the target is a real mosquitto. Redirects are opt-in, and credentials are not sent to
another host unless the application says so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio

from trio_mqtt import (
    ConnectionRefused,
    InvalidOptionError,
    MqttOptions,
    ProtocolVersion,
    QoS,
    open_mqtt_connection,
)
from trio_mqtt._attempts import MAX_REDIRECTS, parse_server_reference
from trio_mqtt.sansio import ConnAck, Connect, Disconnect, PacketDecoder, Properties, encode
from trio_mqtt.testing import MosquittoBroker

V5 = ProtocolVersion.V5


@asynccontextmanager
async def redirecting_peer(
    reference: str, code: int = 0x9D, *, after_connack: bool = False
) -> AsyncIterator[tuple[int, list[Connect], dict[str, str]]]:
    """A peer on 127.0.0.1 that redirects every client to ``reference``: in its CONNACK, or
    (``after_connack``) in a DISCONNECT right after accepting it."""
    connects: list[Connect] = []
    where = {"reference": reference}  # a test may point it elsewhere once the port is known

    async def handle(stream: trio.SocketStream) -> None:
        decoder = PacketDecoder(V5)
        packet = None
        while packet is None:
            data = await stream.receive_some(65536)
            if not data:
                return
            decoder.feed(data)
            packet = decoder.next_packet()
        assert isinstance(packet, Connect)
        connects.append(packet)
        props = Properties(server_reference=where["reference"])
        if after_connack:
            reply = encode(ConnAck(), V5) + encode(Disconnect(code, props), V5)
        else:
            reply = encode(ConnAck(reason_code=code, properties=props), V5)
        await stream.send_all(reply)
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
        yield listeners[0].socket.getsockname()[1], connects, where
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("after_connack", [False, True])
async def test_a_redirect_is_followed_without_the_credentials(
    mosquitto: MosquittoBroker, after_connack: bool
) -> None:
    target = f"localhost:{mosquitto.port}"  # another host name than the peer's 127.0.0.1
    with trio.fail_after(15):
        async with redirecting_peer(target, after_connack=after_connack) as (port, connects, _):
            options = MqttOptions(
                "redirected",
                "127.0.0.1",
                port,
                protocol_version=V5,
                username="secret-user",
                password="secret",
                follow_redirects=True,
            )
            async with open_mqtt_connection(options) as conn:
                if after_connack:
                    while conn.options.host != "localhost" or not conn.connected:
                        await conn.poll()
                assert (conn.options.host, conn.options.port) == ("localhost", mosquitto.port)
                assert (conn.options.username, conn.options.password) == (None, None)
                await conn.client.subscribe("redirect/t", QoS.AT_LEAST_ONCE)
                await conn.client.publish("redirect/t", b"there", qos=QoS.AT_LEAST_ONCE)
                async for message in conn.messages():
                    assert message.payload == b"there"
                    break
    assert [(c.username, c.password) for c in connects] == [("secret-user", b"secret")]


async def test_credentials_follow_when_the_application_says_so(mosquitto_factory: Any) -> None:
    broker: MosquittoBroker = mosquitto_factory(users={"u": "p"})
    with trio.fail_after(15):
        async with redirecting_peer(f"localhost:{broker.port}") as (port, _, _):
            base = MqttOptions(
                "redirected-auth",
                "127.0.0.1",
                port,
                protocol_version=V5,
                username="u",
                password="p",
                follow_redirects=True,
            )
            with pytest.raises(ConnectionRefused) as refused:  # dropped: the target refuses
                async with open_mqtt_connection(base):
                    pass
            assert refused.value.reason_code == 0x87  # not authorized, anonymous
            async with open_mqtt_connection(base.replace(redirect_credentials=True)) as conn:
                assert conn.connected
                assert conn.options.username == "u"

            async def per_host(options: MqttOptions) -> MqttOptions:
                if options.host == "localhost":  # the application's own credentials there
                    return options.replace(username="u", password="p")
                return options

            async with open_mqtt_connection(base.replace(before_connect=per_host)) as conn:
                assert conn.connected


async def test_without_follow_redirects_the_refusal_names_the_server() -> None:
    with trio.fail_after(10):
        async with redirecting_peer("other.example:1883", 0x9C) as (port, connects, _):
            options = MqttOptions("not-redirected", "127.0.0.1", port, protocol_version=V5)
            with pytest.raises(ConnectionRefused) as info:
                async with open_mqtt_connection(options):
                    pass
    assert info.value.reason_code == 0x9C
    assert info.value.server_reference == "other.example:1883"
    assert "other.example:1883" in str(info.value)
    assert len(connects) == 1


async def test_a_redirect_loop_is_not_followed_forever() -> None:
    with trio.fail_after(10):
        async with (
            redirecting_peer("") as (port_a, connects_a, where_a),
            redirecting_peer(f"127.0.0.1:{port_a}") as (port_b, connects_b, _),
        ):
            where_a["reference"] = f"127.0.0.1:{port_b}"  # a and b send clients to each other
            options = MqttOptions(
                "loop", "127.0.0.1", port_a, protocol_version=V5, follow_redirects=True
            )
            with pytest.raises(ConnectionRefused) as info:
                async with open_mqtt_connection(options):
                    pass
    assert info.value.reason_code == 0x9D
    assert len(connects_a) + len(connects_b) == MAX_REDIRECTS + 1


def test_follow_redirects_needs_mqtt5() -> None:
    with pytest.raises(InvalidOptionError, match="follow_redirects"):
        MqttOptions("x", follow_redirects=True)


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("broker.example", ("broker.example", None)),
        ("broker.example:8883", ("broker.example", 8883)),
        ("a:1 b:2", ("a", 1)),
        ("[::1]:1884", ("::1", 1884)),
        ("[::1]", ("::1", None)),
        ("::1", ("::1", None)),
        ("", None),
        ("host:0", None),
        ("host:99999", None),
        ("host:x", None),
        ("[::1", None),
        (":1883", None),
    ],
)
def test_server_references_are_parsed(reference: str, expected: object) -> None:
    assert parse_server_reference(reference) == expected
