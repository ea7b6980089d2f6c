"""The three ways to read events with the blocking API: recv, recv_timeout and try_recv.

Usage::

    python examples/sync_recv.py [mqtt://HOST:PORT]     # or set MQTT_URL
"""

from __future__ import annotations

import os
import sys

from trio_mqtt import Incoming, Outgoing, Publish, QoS
from trio_mqtt.sync import connect

TOPIC = "trio-mqtt/examples/sync-recv"


def describe(event: object) -> str:
    """A short name for an event: ``Outgoing CONNECT``, ``Incoming ConnAck``, ..."""
    if isinstance(event, Outgoing):
        return f"Outgoing {event.type.name}"
    if isinstance(event, Incoming):
        return f"Incoming {type(event.packet).__name__}"
    return type(event).__name__


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("MQTT_URL", "mqtt://127.0.0.1")
    client, connection = connect(url)
    with connection, client:
        # recv() blocks until the next event: here the CONNECT we sent
        print("recv:", describe(connection.recv()))

        # try_recv() never blocks: it returns what is buffered, then None
        while (event := connection.try_recv()) is not None:
            print("try_recv:", describe(event))
        print("try_recv: nothing buffered")

        # recv_timeout() gives up with TimeoutError; nothing is lost by timing out
        try:
            connection.recv_timeout(0.5)
        except TimeoutError:
            print("recv_timeout: no event within 0.5 s")

        client.subscribe(TOPIC, QoS.AT_LEAST_ONCE)
        client.publish(TOPIC, b"hello", qos=QoS.AT_LEAST_ONCE)
        while True:
            event = connection.recv_timeout(5)
            if isinstance(event, Incoming) and isinstance(event.packet, Publish):
                print(f"recv_timeout: message on {event.packet.topic}: {event.packet.payload!r}")
                break


if __name__ == "__main__":
    main()
