"""MQTT over WebSocket, for brokers reachable only through HTTP(S) ports and proxies.

Usage::

    python examples/websocket.py [ws://HOST:PORT/PATH]     # or set MQTT_URL

A ``ws://`` URL selects ``WebSocketTransport`` with the URL's path as the
upgrade request's target (``wss://`` adds TLS). Many brokers serve MQTT on ``/mqtt``; mosquitto
accepts any path. Everything above the transport (sessions, QoS, routes) works as over TCP.
"""

from __future__ import annotations

import os
import sys

import trio

from trio_mqtt import MqttOptions, QoS, WebSocketTransport, open_mqtt_connection

TOPIC = "trio-mqtt/examples/websocket"


def broker_url() -> str:
    """The broker URL: the first argument, else $MQTT_URL, else a broker on this machine."""
    if len(sys.argv) > 1:
        return sys.argv[1]
    return os.environ.get("MQTT_URL", "ws://localhost:8080/mqtt")


async def main() -> None:
    options = MqttOptions.from_url(broker_url(), client_id="trio-mqtt-websocket")
    transport = options.transport
    if not isinstance(transport, WebSocketTransport):
        raise SystemExit("this example needs a ws:// or wss:// URL")
    # The transport could also be built by hand, e.g. to send extra headers:
    #   WebSocketTransport(path="/mqtt", headers={"Authorization": "Bearer ..."})
    kind = "secure WebSocket" if transport.secure else "WebSocket"
    print(f"connecting over {kind}, path {transport.path}")
    async with open_mqtt_connection(options) as conn:
        with trio.fail_after(10):  # an example must never hang
            await conn.client.subscribe(TOPIC, QoS.AT_LEAST_ONCE)
            for n in range(3):
                await conn.client.publish(TOPIC, f"frame {n}", qos=QoS.AT_LEAST_ONCE)
            received = 0
            async for message in conn.messages():
                print(f"received {message.topic}: {message.payload.decode()}")
                received += 1
                if received == 3:
                    break
        stats = conn.statistics()
        print(f"{stats.packets_sent} packets sent, {stats.packets_received} received")
    print("done")


if __name__ == "__main__":
    trio.run(main)
