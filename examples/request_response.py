"""MQTT 5 request/response: a response topic and correlation data between two connections.

Usage::

    python examples/request_response.py [mqtt://HOST:PORT]     # or set MQTT_URL

A *responder* connection serves an "add two numbers" service on one topic. A *requester*
connection sends requests whose properties say where to answer (``response_topic``) and carry
an opaque ``correlation_data`` value, which the responder copies into its answer; that is how
the requester matches each answer to its request, even when answers come back in any order.
"""

from __future__ import annotations

import os
import sys

import trio

from trio_mqtt import MqttOptions, Properties, ProtocolVersion, QoS, open_mqtt_connection

SERVICE = "trio-mqtt/examples/request-response/add"
REPLIES = "trio-mqtt/examples/request-response/replies/requester-1"
REQUESTS = {b"req-1": "2 3", b"req-2": "40 2", b"req-3": "-1 1"}


def broker_url() -> str:
    """The broker URL: the first argument, else $MQTT_URL, else a broker on this machine."""
    if len(sys.argv) > 1:
        return sys.argv[1]
    return os.environ.get("MQTT_URL", "mqtt://localhost:1883")


def options(client_id: str) -> MqttOptions:
    """MQTT 5 options (response topics and correlation data are MQTT 5 properties)."""
    return MqttOptions.from_url(
        broker_url(), client_id=client_id, protocol_version=ProtocolVersion.V5
    )


async def responder(
    count: int, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Answer ``count`` requests, then leave."""
    async with open_mqtt_connection(options("trio-mqtt-responder")) as conn:
        await conn.client.subscribe(SERVICE, QoS.AT_LEAST_ONCE)
        task_status.started()  # subscribed: requests can no longer be missed
        async for request in conn.messages():
            props = request.properties
            if props.response_topic is None:
                continue  # nowhere to answer
            a, b = (int(word) for word in request.payload.split())
            print(f"responder: {a} + {b} for {props.correlation_data!r}")
            await conn.client.publish(
                props.response_topic,
                str(a + b),
                qos=QoS.AT_LEAST_ONCE,
                # Copy the correlation data back unchanged (MQTT 5 section 4.10).
                properties=Properties(correlation_data=props.correlation_data),
            )
            count -= 1
            if count == 0:
                break


async def main() -> None:
    with trio.fail_after(10):  # an example must never hang
        async with (
            trio.open_nursery() as nursery,
            open_mqtt_connection(options("trio-mqtt-requester")) as conn,
        ):
            await nursery.start(responder, len(REQUESTS))
            await conn.client.subscribe(REPLIES, QoS.AT_LEAST_ONCE)
            for correlation, numbers in REQUESTS.items():
                props = Properties(response_topic=REPLIES, correlation_data=correlation)
                await conn.client.publish(SERVICE, numbers, qos=QoS.AT_LEAST_ONCE, properties=props)
            pending = dict(REQUESTS)
            async for reply in conn.messages():
                question = pending.pop(reply.properties.correlation_data or b"", None)
                if question is None:
                    continue  # not an answer to one of our requests
                print(f"requester: {question} -> {reply.payload.decode()}")
                if not pending:
                    break
    print("done")


if __name__ == "__main__":
    trio.run(main)
