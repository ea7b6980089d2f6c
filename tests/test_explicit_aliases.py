"""Topic aliases the application sets itself (MQTT 5), against mosquitto.

The subscriber must see every message under its full topic: after an alias is set, after the
alias is used alone, and after the broker restarted in between (aliases end with the
connection, so the client sends the topic again), and after a resumed session replays ones that
were in flight.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from trio_mqtt import (
    LocalProtocolError,
    MqttOptions,
    Outgoing,
    Properties,
    ProtocolVersion,
    Publish,
    QoS,
    ReconnectPolicy,
    open_mqtt_connection,
)
from trio_mqtt.testing import MosquittoBroker, open_fault_proxy

V5 = ProtocolVersion.V5
TOPIC = "explicit/alias/a/rather/long/topic/name"


async def test_alias_only_publishes_survive_a_broker_restart(mosquitto_factory: Any) -> None:
    broker: MosquittoBroker = mosquitto_factory(extra_config=["max_topic_alias 4"])
    options = MqttOptions(
        "explicit-alias",
        broker.host,
        broker.port,
        protocol_version=V5,
        reconnect=ReconnectPolicy(initial_delay=0.05, max_delay=0.2),
    )
    one = Properties(topic_alias=1)
    got: list[tuple[str, bytes]] = []
    sent: list[tuple[str, int | None]] = []
    with trio.fail_after(20):
        async with open_mqtt_connection(options) as conn:
            await conn.client.subscribe("explicit/alias/#", QoS.AT_LEAST_ONCE)
            await conn.client.publish(TOPIC, b"0", qos=QoS.AT_LEAST_ONCE, properties=one)
            await conn.client.publish("", b"1", qos=QoS.AT_LEAST_ONCE, properties=one)
            while len(got) < 2:
                event = await conn.poll()
                _record(event, got, sent)
            await trio.to_thread.run_sync(broker.restart)
            # published while the broker is away: queued alias-only, sent with its topic
            await conn.client.publish("", b"2", qos=QoS.AT_LEAST_ONCE, properties=one)
            await conn.client.publish("", b"3", qos=QoS.AT_LEAST_ONCE, properties=one)
            while len(got) < 4:
                event = await conn.poll()
                _record(event, got, sent)
    assert got == [(TOPIC, str(n).encode()) for n in range(4)]
    assert sent[:2] == [(TOPIC, 1), ("", 1)]
    assert sent[-2:] == [(TOPIC, 1), ("", 1)]  # the new connection learns the alias again


def _record(
    event: object, got: list[tuple[str, bytes]], sent: list[tuple[str, int | None]]
) -> None:
    packet = getattr(event, "packet", None)
    if not isinstance(packet, Publish):
        return
    if isinstance(event, Outgoing):
        sent.append((packet.topic, packet.properties.topic_alias))
    else:
        got.append((packet.topic, packet.payload))


async def test_an_alias_above_the_broker_maximum_is_refused_at_the_call(
    mosquitto_factory: Any,
) -> None:
    broker: MosquittoBroker = mosquitto_factory(extra_config=["max_topic_alias 2"])
    options = MqttOptions("explicit-alias-max", broker.host, broker.port, protocol_version=V5)
    with trio.fail_after(10):
        async with open_mqtt_connection(options) as conn:
            with pytest.raises(LocalProtocolError, match=r"1\.\.2"):
                await conn.client.publish(TOPIC, b"x", properties=Properties(topic_alias=3))
            with pytest.raises(LocalProtocolError, match="never set"):
                conn.client.publish_nowait("", b"x", properties=Properties(topic_alias=2))
            assert conn.connected


async def test_alias_only_publishes_in_flight_are_replayed_with_their_topic(
    mosquitto: MosquittoBroker,
) -> None:
    # Two alias-only publishes are written but never reach the broker; the link is cut and
    # the resumed session sends them again (DUP) on a connection that knows no alias yet.
    options_sub = MqttOptions("explicit-replay-sub", mosquitto.host, mosquitto.port)
    one = Properties(topic_alias=1)
    sent: list[tuple[str, int | None]] = []
    got: list[tuple[str, bytes]] = []
    with trio.fail_after(20):
        async with (
            open_fault_proxy(mosquitto.host, mosquitto.port) as proxy,
            open_mqtt_connection(options_sub) as sub,
        ):
            await sub.client.subscribe("explicit/alias/#", QoS.AT_LEAST_ONCE)
            options = MqttOptions(
                "explicit-replay",
                proxy.host,
                proxy.port,
                protocol_version=V5,
                clean_start=False,
                session_expiry_interval=60,
                reconnect=ReconnectPolicy(initial_delay=0.05, max_delay=0.2),
            )
            async with open_mqtt_connection(options) as conn:
                await (await conn.client.publish_tracked(TOPIC, b"0", qos=1, properties=one)).wait()
                proxy.blackhole(down=False)  # what we write from now on stays in the proxy
                await conn.client.publish("", b"1", qos=QoS.AT_LEAST_ONCE, properties=one)
                await conn.client.publish("", b"2", qos=QoS.AT_LEAST_ONCE, properties=one)
                while len(sent) < 3:
                    _record(await conn.poll(), [], sent)
                proxy.cut()
                proxy.restore()
                while len(sent) < 5:
                    event = await conn.poll()
                    if isinstance(event, Outgoing) and isinstance(event.packet, Publish):
                        assert event.packet.dup
                    _record(event, [], sent)
                async for message in sub.messages():
                    got.append((message.topic, message.payload))
                    if len(got) == 3:
                        break
                assert conn.statistics().connects == 2
                assert conn.statistics().sessions_lost == 0
    assert sent == [(TOPIC, 1), ("", 1), ("", 1), (TOPIC, None), (TOPIC, None)]
    assert got == [(TOPIC, b"0"), (TOPIC, b"1"), (TOPIC, b"2")]
