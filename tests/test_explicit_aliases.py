"""Topic aliases the application sets itself (MQTT 5), against mosquitto.

The subscriber must see every message under its full topic: after an alias is set, after the
alias is used alone, and after the broker restarted in between (aliases end with the
connection, so the client sends the topic again).
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
from trio_mqtt.testing import MosquittoBroker

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
