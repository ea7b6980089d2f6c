"""Track publishes until the broker has them, and read its MQTT 5 reason codes.

Usage::

    python examples/tracked_publish.py [mqtt://HOST:PORT]     # or set MQTT_URL

``client.publish()`` returns once the message is queued. ``client.publish_tracked()`` returns a
tracker instead, whose ``wait()`` gives the broker's answer: when a QoS 0 message was written,
on PUBACK for QoS 1, on PUBCOMP for QoS 2. With MQTT 5 the answer carries a reason code: below
0x80 the broker took the message (``NO_MATCHING_SUBSCRIBERS`` is a success that says nobody
listens), from 0x80 on it refused it (e.g. ``NOT_AUTHORIZED`` when an ACL forbids the topic).
"""

from __future__ import annotations

import os
import sys

import trio

from trio_mqtt import (
    MqttOptions,
    ProtocolVersion,
    PublishResult,
    QoS,
    ReasonCode,
    Tracker,
    open_mqtt_connection,
)

TOPIC = "trio-mqtt/examples/tracked"
#: a topic outside TOPIC/#; a broker whose ACL only allows TOPIC/# refuses it
RESTRICTED = "trio-mqtt/examples/restricted"


def broker_url() -> str:
    """The broker URL: the first argument, else $MQTT_URL, else a broker on this machine."""
    if len(sys.argv) > 1:
        return sys.argv[1]
    return os.environ.get("MQTT_URL", "mqtt://localhost:1883")


def describe(result: PublishResult) -> str:
    """Say what the broker answered, e.g. ``packet 3: SUCCESS (0x00), accepted``."""
    verdict = "accepted" if result.is_success else "refused"
    name = ReasonCode(result.reason_code).name
    return f"packet {result.packet_id}: {name} (0x{result.reason_code:02x}), {verdict}"


async def main() -> None:
    # Reason codes in acknowledgements are an MQTT 5 feature (MQTT 3.1.1 brokers always
    # answer with a bare PUBACK, reported as code 0).
    options = MqttOptions.from_url(
        broker_url(), client_id="trio-mqtt-tracked", protocol_version=ProtocolVersion.V5
    )
    async with open_mqtt_connection(options) as conn:
        client = conn.client
        with trio.fail_after(10):  # an example must never hang
            # Nobody subscribes yet: the broker says so, but still takes the message.
            tracker = await client.publish_tracked(f"{TOPIC}/lonely", "anyone?", qos=1)
            print(f"before subscribing, QoS 1: {describe(await tracker.wait())}")

            await client.subscribe(f"{TOPIC}/#", QoS.EXACTLY_ONCE)
            for qos in (QoS.AT_MOST_ONCE, QoS.AT_LEAST_ONCE, QoS.EXACTLY_ONCE):
                tracker = await client.publish_tracked(f"{TOPIC}/q{qos.value}", "hi", qos=qos)
                print(f"subscribed, QoS {qos.value}: {describe(await tracker.wait())}")

            tracker = await client.publish_tracked(RESTRICTED, "let me in", qos=1)
            print(f"restricted topic, QoS 1: {describe(await tracker.wait())}")

            # Trackers need not be awaited one by one: queue a batch, then collect them all.
            trackers: list[Tracker[PublishResult]] = [
                await client.publish_tracked(f"{TOPIC}/batch", str(n), qos=QoS.AT_LEAST_ONCE)
                for n in range(10)
            ]
            results = [await tracker.wait() for tracker in trackers]
            accepted = sum(result.is_success for result in results)
            print(f"batch of {len(results)} QoS 1 publishes: {accepted} accepted")
    print("done")


if __name__ == "__main__":
    trio.run(main)
