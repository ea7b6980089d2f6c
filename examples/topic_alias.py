"""MQTT 5 topic aliases: send a long topic name once, then a two-byte number instead.

Usage::

    python examples/topic_alias.py [mqtt://HOST:PORT]     # or set MQTT_URL

With ``outgoing_topic_aliases=True`` the session assigns aliases by itself, up to the Topic
Alias Maximum the broker announced in its CONNACK (none if it announced none): the first
PUBLISH to a topic carries the name and an alias number, later ones an empty name and the
number. ``topic_alias_maximum`` is the other direction, how many aliases we let the broker use;
messages arrive with their topic names resolved either way.
"""

from __future__ import annotations

import os
import sys

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
from trio_mqtt.sansio import encoded_size

TOPIC = "trio-mqtt/examples/topic-alias/building-7/floor-3/room-12/sensor-4/temperature"
COUNT = 3


def broker_url() -> str:
    """The broker URL: the first argument, else $MQTT_URL, else a broker on this machine."""
    if len(sys.argv) > 1:
        return sys.argv[1]
    return os.environ.get("MQTT_URL", "mqtt://localhost:1883")


async def main() -> None:
    options = MqttOptions.from_url(
        broker_url(),
        client_id="trio-mqtt-topic-alias",
        protocol_version=ProtocolVersion.V5,
        outgoing_topic_aliases=True,  # alias our publishes' topics
        topic_alias_maximum=10,  # accept up to 10 aliases from the broker
    )
    async with open_mqtt_connection(options) as conn:
        assert conn.connack is not None
        limit = conn.connack.properties.topic_alias_maximum or 0
        print(f"the broker accepts {limit} topic aliases from us")
        await conn.client.subscribe(TOPIC, QoS.AT_LEAST_ONCE)
        for n in range(COUNT):
            await conn.client.publish(TOPIC, f"{20 + n}.5", qos=QoS.AT_LEAST_ONCE)

        # Watch the event stream: Outgoing shows each PUBLISH as it went on the wire.
        received = 0
        with trio.fail_after(10):  # an example must never hang
            async for event in conn:
                if isinstance(event, Outgoing) and isinstance(event.packet, Publish):
                    packet = event.packet
                    size = encoded_size(packet, ProtocolVersion.V5)
                    shown = f"topic {len(packet.topic)} chars" if packet.topic else "empty topic"
                    alias = packet.properties.topic_alias
                    aliased = f"alias {alias}" if alias else "no alias"
                    print(f"sent PUBLISH: {shown}, {aliased}, {size} bytes")
                elif isinstance(event, Incoming) and isinstance(event.packet, Publish):
                    message = event.packet
                    print(f"received {message.payload.decode()} on {message.topic}")
                    received += 1
                    if received == COUNT:
                        break
    print("done")


if __name__ == "__main__":
    trio.run(main)
