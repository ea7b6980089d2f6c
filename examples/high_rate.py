"""Publish and consume at a high rate: synchronous publishes, batched reads.

Usage::

    python examples/high_rate.py [mqtt://HOST:PORT] [COUNT]     # or set MQTT_URL

Every ``await`` in Trio is a pass through the scheduler. A producer that publishes as fast as it
can uses ``client.publish_nowait()``, which queues without awaiting, and awaits
``client.publish()`` only when the queue is full (that is the backpressure). A consumer that
keeps up with a fast stream reads with ``conn.message_batches()``: each step waits for one
message and hands over every message already buffered with it, for one checkpoint. Nothing
else changes: the same window, the same QoS guarantees, the same ordering.
"""

from __future__ import annotations

import os
import sys

import trio

from trio_mqtt import MqttOptions, QoS, open_mqtt_connection

TOPIC = "trio-mqtt/examples/high-rate"


def broker_url() -> str:
    """The broker URL: the first argument, else $MQTT_URL, else a broker on this machine."""
    if len(sys.argv) > 1:
        return sys.argv[1]
    return os.environ.get("MQTT_URL", "mqtt://localhost:1883")


async def main() -> None:
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    url = broker_url()
    async with (
        open_mqtt_connection(MqttOptions.from_url(url, client_id="high-rate-sub")) as sub,
        open_mqtt_connection(MqttOptions.from_url(url, client_id="high-rate-pub")) as pub,
    ):
        await sub.client.subscribe(TOPIC, QoS.AT_LEAST_ONCE)
        with trio.fail_after(60):  # an example must never hang
            start = trio.current_time()
            async with trio.open_nursery() as nursery:

                async def produce() -> None:
                    client = pub.client
                    for n in range(count):
                        payload = n.to_bytes(4, "big")
                        try:
                            client.publish_nowait(TOPIC, payload, qos=QoS.AT_LEAST_ONCE)
                        except trio.WouldBlock:  # queue full: wait for room
                            await client.publish(TOPIC, payload, qos=QoS.AT_LEAST_ONCE)

                nursery.start_soon(produce)
                received = batches = 0
                in_order = True
                async for batch in sub.message_batches():
                    batches += 1
                    for message in batch:
                        in_order &= int.from_bytes(message.payload, "big") == received
                        received += 1
                    if received >= count:
                        break
            seconds = trio.current_time() - start
    print(f"received {received} of {count} messages, in order: {in_order}")
    print(f"{batches} batches, {received / batches:.0f} messages per batch on average")
    print(f"{received / seconds:,.0f} messages per second (QoS 1, one process for both ends)")


if __name__ == "__main__":
    trio.run(main)
