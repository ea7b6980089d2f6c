"""Reconnect automatically with a ``ReconnectPolicy``, and watch it happen.

Usage::

    python examples/reconnect.py [mqtt://HOST:PORT] [--seconds 5]     # or set MQTT_URL

A heartbeat task publishes a QoS 1 message every half second while the main task prints the
events that tell the story of the connection. Restart the broker while it runs: the policy
reports ``Disconnected``, then ``Reconnecting`` before each attempt (exponential backoff with
jitter), a new CONNACK once it is back, and ``SessionLost`` if the broker forgot the session,
after which the client subscribes again by itself (``restore_subscriptions``). Heartbeats
published during the outage wait in the client and go out after the reconnect.
The example stops after ``--seconds`` seconds.
"""

from __future__ import annotations

import argparse
import os

import trio

from trio_mqtt import (
    Client,
    Disconnected,
    Incoming,
    MqttOptions,
    Publish,
    QoS,
    Reconnecting,
    ReconnectPolicy,
    SessionLost,
    open_mqtt_connection,
)
from trio_mqtt.sansio import ConnAck

TOPIC = "trio-mqtt/examples/reconnect/heartbeat"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Reconnect automatically and report it.")
    parser.add_argument(
        "url",
        nargs="?",
        default=os.environ.get("MQTT_URL", "mqtt://localhost:1883"),
        help="broker URL (default: $MQTT_URL or mqtt://localhost:1883)",
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="how long to run")
    return parser.parse_args()


async def heartbeat(client: Client) -> None:
    """Publish a numbered heartbeat every 0.5 s until cancelled."""
    async with client:
        beat = 0
        while True:
            beat += 1
            await client.publish(TOPIC, f"beat {beat}", qos=QoS.AT_LEAST_ONCE)
            await trio.sleep(0.5)


def report(event: object) -> None:
    """Print the events that matter for following the connection's life."""
    if isinstance(event, Incoming) and isinstance(event.packet, ConnAck):
        print(f"connected (session present: {event.packet.session_present})")
    elif isinstance(event, Incoming) and isinstance(event.packet, Publish):
        print(f"received {event.packet.payload.decode()}")
    elif isinstance(event, Disconnected):
        print(f"disconnected: {type(event.error).__name__}")
    elif isinstance(event, Reconnecting):
        print(f"reconnecting: attempt {event.attempt} in {event.delay:.2f} s")
    elif isinstance(event, SessionLost):
        print(f"session lost: subscribed again to {event.resubscribed} filter(s)")


async def main() -> None:
    args = parse_args()
    policy = ReconnectPolicy(initial_delay=0.1, max_delay=2.0)
    options = MqttOptions.from_url(
        args.url, client_id="trio-mqtt-reconnect", keep_alive=5, reconnect=policy
    )
    async with open_mqtt_connection(options) as conn:
        await conn.client.subscribe(TOPIC, QoS.AT_LEAST_ONCE)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(heartbeat, conn.client.clone())
            with trio.move_on_after(args.seconds):
                async for event in conn:
                    report(event)
            nursery.cancel_scope.cancel()  # stop the heartbeat
        stats = conn.statistics()
    print(f"done after {stats.connects} connection(s)")


if __name__ == "__main__":
    trio.run(main)
