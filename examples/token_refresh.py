"""Present a fresh token on every connection, and fail over along a list of servers.

Usage::

    python examples/token_refresh.py [URL ...] [--connections 2]     # or set MQTT_URL

Cloud brokers authenticate with short-lived tokens: the password of the next connection is not
the one of the last. ``before_connect`` runs before every connection attempt and returns the
options with a new token (here a counter stands in for the token service). The URLs form the
``servers`` list: an unreachable one is skipped, and the client sticks to the one that works.

The example publishes a reading on each connection and prints it back; restart the broker to
see the next connection present the next token. It stops after ``--connections`` connections.
"""

from __future__ import annotations

import argparse
import os
from itertools import count

import trio

from trio_mqtt import MqttOptions, Publish, QoS, ReconnectPolicy, open_mqtt_connection
from trio_mqtt.sansio import ConnAck, Incoming

TOPIC = "trio-mqtt/examples/token-refresh"
tokens = count(1)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="A new token per connection, several servers.")
    parser.add_argument(
        "urls",
        nargs="*",
        default=[os.environ.get("MQTT_URL", "mqtt://localhost:1883")],
        help="broker URLs, tried in order (default: $MQTT_URL or mqtt://localhost:1883)",
    )
    parser.add_argument("--connections", type=int, default=2, help="connections to make")
    return parser.parse_args()


async def fetch_token() -> str:
    """Stands in for a request to an OAuth or JWT token service."""
    await trio.lowlevel.checkpoint()
    return f"token-{next(tokens)}"


async def refresh_token(options: MqttOptions) -> MqttOptions:
    token = await fetch_token()
    print(f"trying {options.host}:{options.port} with {token}")
    return options.replace(username="device-7", password=token)


async def main() -> None:
    args = parse_args()
    options = MqttOptions(
        "token-refresh-example",
        servers=args.urls,
        reconnect=ReconnectPolicy(initial_delay=0.1, max_delay=1.0),
        before_connect=refresh_token,
    )
    async with open_mqtt_connection(options) as conn:
        await conn.client.subscribe(TOPIC, QoS.AT_LEAST_ONCE)
        reading = 0
        async for event in conn:
            if not isinstance(event, Incoming):
                continue
            packet = event.packet
            if isinstance(packet, ConnAck):  # a new connection, with the hook's token
                reading += 1
                await conn.client.publish(TOPIC, f"reading {reading}", qos=QoS.AT_LEAST_ONCE)
            elif isinstance(packet, Publish):
                password = (conn.options.password or b"").decode()
                print(f"received {packet.payload.decode()} (connected with {password})")
                if reading >= args.connections:
                    break


if __name__ == "__main__":
    trio.run(main)
