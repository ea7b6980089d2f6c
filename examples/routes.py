"""Per-topic dispatch: each kind of message goes to the task that handles it.

Usage::

    python examples/routes.py [mqtt://HOST:PORT]     # or set MQTT_URL

One subscription (``sensors/#``) brings every sensor reading in; two routes split them:
temperatures go to one child task and humidity readings to another. A message that matches no
route (a pressure reading here) stays on the connection's own event stream, where
``conn.messages()`` finds it.
"""

from __future__ import annotations

import os
import sys

import trio

from trio_mqtt import MqttConnection, MqttOptions, QoS, open_mqtt_connection

PREFIX = "trio-mqtt/examples/routes/sensors"
READINGS = [
    ("kitchen/temp", "21.5"),
    ("kitchen/humidity", "40"),
    ("cellar/temp", "12.0"),
    ("cellar/humidity", "75"),
    ("cellar/pressure", "1013"),  # matches no route
]


def broker_url() -> str:
    """The broker URL: the first argument, else $MQTT_URL, else a broker on this machine."""
    if len(sys.argv) > 1:
        return sys.argv[1]
    return os.environ.get("MQTT_URL", "mqtt://localhost:1883")


async def handle(
    conn: MqttConnection,
    name: str,
    topic_filter: str,
    count: int,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Read ``count`` messages matching ``topic_filter`` from a route of our own."""
    # Without ``qos=`` the route only dispatches; with it, the route would also subscribe on
    # entry and unsubscribe on exit. Here the main task subscribed once for all sensors.
    async with conn.route(topic_filter, capacity=10) as stream:
        task_status.started()  # the route is in place: the publisher may start
        async for message in stream:
            room = message.topic.split("/")[-2]
            print(f"{name} task: {room} {message.payload.decode()}")
            count -= 1
            if count == 0:
                break


async def main() -> None:
    options = MqttOptions.from_url(broker_url(), client_id="trio-mqtt-routes")
    async with open_mqtt_connection(options) as conn:
        client = conn.client
        await client.subscribe(f"{PREFIX}/#", QoS.AT_LEAST_ONCE)
        with trio.fail_after(10):  # an example must never hang
            async with trio.open_nursery() as nursery:
                # nursery.start() returns once the handler's route exists.
                await nursery.start(handle, conn, "temperature", f"{PREFIX}/+/temp", 2)
                await nursery.start(handle, conn, "humidity", f"{PREFIX}/+/humidity", 2)
                for topic, value in READINGS:
                    await client.publish(f"{PREFIX}/{topic}", value, qos=QoS.AT_LEAST_ONCE)
                # Unrouted messages arrive here, on the connection's event stream.
                async for message in conn.messages():
                    print(f"unrouted: {message.topic.removeprefix(PREFIX + '/')}")
                    break
            # Both handler tasks have returned: their routes are closed again.
    print("done")


if __name__ == "__main__":
    trio.run(main)
