"""Publish from a worker thread and read messages in the main thread, with the blocking API.

Usage::

    python examples/sync_pubsub.py [mqtt://HOST:PORT]     # or set MQTT_URL

The worker gets its own client handle (``client.clone()``) and closes it when done; once the
main thread has every message it closes the last handle, and the event iteration ends.
"""

from __future__ import annotations

import os
import sys
import threading

from trio_mqtt import QoS
from trio_mqtt.sync import Client, connect

TOPIC = "trio-mqtt/examples/sync-pubsub"
COUNT = 5


def publish_all(client: Client) -> None:
    """Runs in a worker thread: publish COUNT messages, then release the handle."""
    with client:
        for n in range(COUNT):
            client.publish(f"{TOPIC}/{n}", f"message {n}", qos=QoS.AT_LEAST_ONCE)


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("MQTT_URL", "mqtt://127.0.0.1")
    client, connection = connect(url)
    with connection:
        client.subscribe(f"{TOPIC}/#", QoS.AT_LEAST_ONCE)
        worker = threading.Thread(target=publish_all, args=(client.clone(),))
        worker.start()
        received = 0
        for message in connection.messages():
            print(f"received {message.topic}: {message.payload.decode()}")
            received += 1
            if received == COUNT:
                client.close()  # the last open handle: the session ends cleanly
        worker.join()
    print(f"done: {received} messages")


if __name__ == "__main__":
    main()
