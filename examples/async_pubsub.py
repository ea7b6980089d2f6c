"""Subscribe, publish from a second task, and print the messages as they arrive.

Usage::

    python examples/async_pubsub.py [mqtt://HOST:PORT]     # or set MQTT_URL

The publisher task gets its own client handle (``client.clone()``) and publishes one message
at each QoS level. The main task reads incoming messages until it has them all, then leaves
the ``async with`` block, which waits for unfinished QoS 1/2 flows and sends DISCONNECT.
"""

from __future__ import annotations

import os
import sys

import trio

from trio_mqtt import Client, MqttOptions, QoS, open_mqtt_connection

TOPIC = "trio-mqtt/examples/async-pubsub"
LEVELS = (QoS.AT_MOST_ONCE, QoS.AT_LEAST_ONCE, QoS.EXACTLY_ONCE)


def broker_url() -> str:
    """The broker URL: the first argument, else $MQTT_URL, else a broker on this machine."""
    if len(sys.argv) > 1:
        return sys.argv[1]
    return os.environ.get("MQTT_URL", "mqtt://localhost:1883")


async def publish_all(client: Client) -> None:
    """Publish one message per QoS level, then release this task's handle."""
    async with client:  # closes the handle on the way out
        for qos in LEVELS:
            # publish() returns as soon as the event loop has the message; the QoS 1/2
            # handshakes with the broker go on in the background.
            await client.publish(f"{TOPIC}/qos{qos.value}", f"hello at QoS {qos.value}", qos=qos)
            print(f"published at QoS {qos.value}")


async def main() -> None:
    options = MqttOptions.from_url(broker_url(), client_id="trio-mqtt-async-pubsub")
    async with open_mqtt_connection(options) as conn:
        # subscribe() waits for the SUBACK, so nothing published below can be missed.
        result = await conn.client.subscribe(f"{TOPIC}/#", QoS.EXACTLY_ONCE)
        print(f"subscribed to {TOPIC}/# (granted QoS {result.reason_codes[0]})")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(publish_all, conn.client.clone())
            received = 0
            with trio.fail_after(10):  # an example must never hang
                async for message in conn.messages():
                    print(
                        f"received {message.topic} (QoS {message.qos.value}): "
                        f"{message.payload.decode()}"
                    )
                    received += 1
                    if received == len(LEVELS):
                        break
    # Leaving the block disconnected gracefully.
    print(f"disconnected after {received} messages")


if __name__ == "__main__":
    trio.run(main)
