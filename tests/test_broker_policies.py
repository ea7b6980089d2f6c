"""What a real mosquitto refuses or drops, and how the client ends sessions, for both versions.

Refused logins with their reason codes, a route that drops the newest messages, a graceful
disconnect that lets inflight flows finish, and RequestsDone closing without DISCONNECT (so the
broker publishes the will). A refused subscription cannot be had from mosquitto 2.0: it grants
subscriptions its ACL forbids and filters on delivery instead (checked with 3.1.1 and 5), so
SUBACK failure codes are tested against the scripted broker (tests/test_eventloop_timing.py).
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from broker_clients import options_for
from test_batches import wait_received

from trio_mqtt import (
    ConnectionRefused,
    ProtocolVersion,
    QoS,
    RequestsDone,
    Will,
    open_mqtt_connection,
)
from trio_mqtt.testing import MosquittoBroker

VERSIONS = [ProtocolVersion.V311, ProtocolVersion.V5]


@pytest.mark.parametrize("version", VERSIONS)
async def test_refused_login_carries_the_reason_code(
    mosquitto_factory: Any, version: ProtocolVersion
) -> None:
    broker: MosquittoBroker = mosquitto_factory(users={"alice": "secret"})
    # 3.1.1: 5 not authorised; MQTT 5: mosquitto 2.0 answers 0x87 not authorized (rather than
    # 0x86 bad user name or password) for an unknown user and a wrong password alike; the
    # embedded broker answers 4 / 0x86, bad user name or password.
    expected = (0x86, 0x87) if version is ProtocolVersion.V5 else (4, 5)
    with trio.fail_after(10):
        for username, password in (("alice", "wrong"), ("mallory", "secret")):
            options = options_for(
                broker, "login", username=username, password=password, protocol_version=version
            )
            with pytest.raises(ConnectionRefused) as info:
                async with open_mqtt_connection(options):
                    pass  # pragma: no cover
            assert info.value.reason_code in expected
            assert "wrong" not in str(info.value)
        options = options_for(
            broker, "login", username="alice", password="secret", protocol_version=version
        )
        async with open_mqtt_connection(options) as conn:
            assert conn.connected


async def test_route_with_drop_newest_keeps_the_oldest(mosquitto: MosquittoBroker) -> None:
    with trio.fail_after(10):
        async with (
            open_mqtt_connection(options_for(mosquitto, "drop-newest")) as conn,
            conn.route("dn/#", qos=QoS.AT_LEAST_ONCE, capacity=2, overflow="drop_newest") as stream,
        ):
            for i in range(5):
                await conn.client.publish(f"dn/{i}", str(i), qos=QoS.AT_LEAST_ONCE)
            await wait_received(conn, 5)
            assert stream.dropped == 3
            assert [m.payload for m in await stream.receive_batch()] == [b"0", b"1"]
            with pytest.raises(trio.WouldBlock):
                stream.receive_nowait()


@pytest.mark.parametrize("version", VERSIONS)
async def test_graceful_disconnect_lets_inflight_flows_finish(
    mosquitto_factory: Any, version: ProtocolVersion
) -> None:
    # max_inflight_messages 0: mosquitto 2.0.11's quota for messages it sends to a subscriber
    # (default 20) sometimes strands queued QoS 2 messages; paho-mqtt as the subscriber lost
    # one in eight runs here too (mosquitto fixed inflight quota bugs in 2.0.13)
    mosquitto: MosquittoBroker = mosquitto_factory(max_inflight_messages=0)
    with trio.fail_after(15):
        sub_options = options_for(mosquitto, f"gd-sub-{version}", protocol_version=version)
        async with open_mqtt_connection(sub_options) as sub:
            await sub.client.subscribe("gd/#", QoS.EXACTLY_ONCE)
            pub_options = options_for(mosquitto, f"gd-pub-{version}", protocol_version=version)
            async with open_mqtt_connection(pub_options) as pub:
                for i in range(200):
                    qos = QoS.AT_LEAST_ONCE if i % 2 else QoS.EXACTLY_ONCE
                    await pub.client.publish("gd/t", b"%d" % i, qos=qos)
                assert pub.statistics().inflight + pub.statistics().waiting_publishes > 0
                await pub.client.disconnect(grace_period=10)
                stats = pub.statistics()
                assert (stats.inflight, stats.waiting_publishes) == (0, 0)
            received = []
            async for message in sub.messages():
                received.append(message.payload)
                if len(received) == 200:
                    break
        numbers = [int(payload) for payload in received]
        assert sorted(numbers) == list(range(200))
        # MQTT keeps the order per QoS level, not across them
        assert [n for n in numbers if n % 2] == list(range(1, 200, 2))
        assert [n for n in numbers if not n % 2] == list(range(0, 200, 2))


@pytest.mark.parametrize("version", VERSIONS)
async def test_requests_done_closes_without_disconnect(
    mosquitto: MosquittoBroker, version: ProtocolVersion
) -> None:
    # no DISCONNECT is sent when every handle is closed, so the broker publishes the will
    with trio.fail_after(15):
        watcher_options = options_for(mosquitto, f"rd-watch-{version}", protocol_version=version)
        async with open_mqtt_connection(watcher_options) as watcher:
            await watcher.client.subscribe("rd/will", QoS.AT_LEAST_ONCE)
            will = Will("rd/will", b"no goodbye", QoS.AT_LEAST_ONCE)
            options = options_for(mosquitto, f"rd-{version}", will=will, protocol_version=version)
            async with open_mqtt_connection(options) as conn:
                await conn.client.aclose()
                with pytest.raises(RequestsDone):
                    while True:
                        await conn.poll()
            async for message in watcher.messages():
                assert (message.topic, message.payload) == ("rd/will", b"no goodbye")
                break
