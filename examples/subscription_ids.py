"""MQTT 5 subscription identifiers: learn which subscription a message arrived for.

Usage::

    python examples/subscription_ids.py [mqtt://HOST:PORT]     # or set MQTT_URL

Each SUBSCRIBE can carry a number (``Properties(subscription_identifiers=(n,))``); the broker
puts the numbers of every matching subscription into the messages it forwards. That makes
dispatch a dictionary lookup instead of matching topic filters again. With overlapping filters a
broker either sends one copy listing several identifiers or one copy per subscription (mosquitto
does the latter); dispatching on every listed identifier handles both.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import trio

from trio_mqtt import (
    MqttOptions,
    Properties,
    ProtocolVersion,
    Publish,
    QoS,
    open_mqtt_connection,
)

PREFIX = "trio-mqtt/examples/subscription-ids"


def broker_url() -> str:
    """The broker URL: the first argument, else $MQTT_URL, else a broker on this machine."""
    if len(sys.argv) > 1:
        return sys.argv[1]
    return os.environ.get("MQTT_URL", "mqtt://localhost:1883")


def log_everything(message: Publish) -> None:
    """Handler of subscription 1: every reading."""
    name = message.topic.removeprefix(PREFIX + "/")
    print(f"[1 all readings] {name} = {message.payload.decode()}")


def check_temperature(message: Publish) -> None:
    """Handler of subscription 2: temperatures only."""
    name = message.topic.removeprefix(PREFIX + "/")
    state = "too warm" if float(message.payload) > 25 else "fine"
    print(f"[2 temperatures] {name}: {state}")


#: subscription identifier -> (topic filter, handler)
HANDLERS: dict[int, tuple[str, Callable[[Publish], None]]] = {
    1: (f"{PREFIX}/#", log_everything),
    2: (f"{PREFIX}/+/temp", check_temperature),
}


async def main() -> None:
    options = MqttOptions.from_url(
        broker_url(), client_id="trio-mqtt-subscription-ids", protocol_version=ProtocolVersion.V5
    )
    async with open_mqtt_connection(options) as conn:
        assert conn.connack is not None
        if conn.connack.properties.subscription_identifier_available == 0:
            raise SystemExit("this broker does not support subscription identifiers")
        client = conn.client
        # One SUBSCRIBE per identifier: an identifier applies to every filter of its packet.
        for identifier, (topic_filter, _handler) in HANDLERS.items():
            await client.subscribe(
                topic_filter,
                QoS.AT_LEAST_ONCE,
                properties=Properties(subscription_identifiers=(identifier,)),
            )
        await client.publish(f"{PREFIX}/kitchen/temp", "27.0", qos=QoS.AT_LEAST_ONCE)
        await client.publish(f"{PREFIX}/kitchen/humidity", "45", qos=QoS.AT_LEAST_ONCE)

        expected = 3  # temp matches both subscriptions, humidity only the first
        with trio.fail_after(10):  # an example must never hang
            async for message in conn.messages():
                for identifier in message.properties.subscription_identifiers:
                    _filter, handler = HANDLERS[identifier]
                    handler(message)
                    expected -= 1
                if expected <= 0:
                    break
    print("done")


if __name__ == "__main__":
    trio.run(main)
