"""An application that runs its own MQTT broker and talks to it: no broker to install.

Usage::

    python examples/embedded_broker.py [PORT]      # default: a free port

A gateway or a test rig often wants a broker of its own. This program starts the embedded
broker (``trio_mqtt.broker``) on 127.0.0.1 with two users and an ACL, then connects a sensor
that may only write ``sensors/...`` and a dashboard that may only read it. The dashboard's
publish to ``sensors/...`` is refused (MQTT 5 reason code 0x87), the sensor's readings arrive,
and the broker's counters are printed at the end.
"""

from __future__ import annotations

import sys

import trio

from trio_mqtt import MqttOptions, ProtocolVersion, QoS, open_mqtt_connection
from trio_mqtt.broker import AccessControl, BrokerConfig, open_mqtt_broker

RULES = [
    "user sensor",
    "topic write sensors/#",
    "user dashboard",
    "topic read sensors/#",
]
USERS = {"sensor": "s3nsor", "dashboard": "d4sh"}


def options(port: int, user: str) -> MqttOptions:
    """A client of the embedded broker, logged in as ``user`` (MQTT 5, for reason codes)."""
    return MqttOptions(
        user,
        "127.0.0.1",
        port,
        username=user,
        password=USERS[user],
        protocol_version=ProtocolVersion.V5,
    )


async def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    config = BrokerConfig(users=USERS, authorize=AccessControl.parse(RULES).authorize)
    with trio.fail_after(30):  # an example must never hang
        async with open_mqtt_broker(port=port, config=config) as broker:
            print(f"broker listening on {broker.url}")
            async with (
                open_mqtt_connection(options(broker.port, "dashboard")) as dashboard,
                open_mqtt_connection(options(broker.port, "sensor")) as sensor,
            ):
                await dashboard.client.subscribe("sensors/#", QoS.AT_LEAST_ONCE)
                refused = await dashboard.client.publish_tracked(
                    "sensors/fake", b"0", QoS.AT_LEAST_ONCE
                )
                result = await refused.wait()
                print(f"dashboard may not write: reason code 0x{result.reason_code:02x}")
                for reading in (b"21.5", b"21.7"):
                    await sensor.client.publish("sensors/kitchen", reading, qos=QoS.AT_LEAST_ONCE)
                received = 0
                async for message in dashboard.messages():
                    print(f"dashboard got {message.topic} = {message.payload.decode()}")
                    received += 1
                    if received == 2:
                        break
            stats = broker.statistics()
            print(f"broker: {stats.messages_received} messages in, {stats.messages_sent} out")


if __name__ == "__main__":
    trio.run(main)
