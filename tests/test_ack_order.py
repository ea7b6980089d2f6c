"""Manual acks reach the wire in the order the messages arrived (MQTT-4.6.0-2), against mosquitto.

The application acks in reverse order; the acks it gives ahead of earlier messages are held
(``statistics().held_acks``) and go out, in arrival order, once the first message is acked.
"""

from __future__ import annotations

import pytest
import trio

from trio_mqtt import (
    Incoming,
    MqttOptions,
    Outgoing,
    ProtocolVersion,
    Publish,
    QoS,
    open_mqtt_connection,
)
from trio_mqtt.sansio import PubAck, PubRec
from trio_mqtt.testing import MosquittoBroker

COUNT = 5


@pytest.mark.parametrize("qos", [QoS.AT_LEAST_ONCE, QoS.EXACTLY_ONCE])
@pytest.mark.parametrize("version", [ProtocolVersion.V311, ProtocolVersion.V5])
async def test_reverse_order_acks_go_out_in_arrival_order(
    mosquitto: MosquittoBroker, qos: QoS, version: ProtocolVersion
) -> None:
    options = MqttOptions(
        "ack-order", mosquitto.host, mosquitto.port, manual_acks=True, protocol_version=version
    )
    pub_options = MqttOptions("ack-order-pub", mosquitto.host, mosquitto.port)
    arrived: list[Publish] = []
    acks: list[int] = []
    with trio.fail_after(15):
        async with open_mqtt_connection(options) as conn, open_mqtt_connection(pub_options) as pub:
            await conn.client.subscribe("ack-order/#", qos)
            for n in range(COUNT):
                await pub.client.publish("ack-order/n", str(n).encode(), qos=qos)
            async for event in conn:
                if isinstance(event, Incoming) and isinstance(event.packet, Publish):
                    arrived.append(event.packet)
                    if len(arrived) == COUNT:
                        break
            for held, message in enumerate(reversed(arrived[1:]), start=1):
                await conn.client.ack(message)
                assert conn.statistics().held_acks == held
            await conn.client.ack(arrived[0])
            assert conn.statistics().held_acks == 0
            async for event in conn:
                if isinstance(event, Outgoing) and isinstance(event.packet, PubAck | PubRec):
                    acks.append(event.packet.packet_id)
                    if len(acks) == COUNT:
                        break
            # the broker took the acks: nothing is delivered again on this connection
            assert conn.statistics().duplicates_suppressed == 0
    assert [m.payload for m in arrived] == [str(n).encode() for n in range(COUNT)]
    assert acks == [m.packet_id for m in arrived]
