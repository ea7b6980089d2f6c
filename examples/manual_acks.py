"""Manual acknowledgements with a persistent session: unacked messages come back.

Usage::

    python examples/manual_acks.py [mqtt://HOST:PORT]     # or set MQTT_URL

With ``manual_acks=True`` the client does not acknowledge incoming QoS 1/2 messages by itself;
the application calls ``client.ack(message)`` once it has really dealt with one. A message never
acknowledged stays with the broker, which sends it again (with the DUP flag set) when the same
session reconnects. The session survives disconnects because of ``clean_start=False`` and, in
MQTT 5, a session expiry interval (in MQTT 3.1.1 ``clean_start=False`` alone keeps it).

The example runs three connections with the same client id:

1. a fresh session: subscribe, publish three messages, receive them, do *not* ack, leave;
2. resume the session: the broker resends the three (DUP); ack them this time;
3. resume again: nothing comes back, because everything was acknowledged.
"""

from __future__ import annotations

import os
import sys

import trio

from trio_mqtt import MqttConnection, MqttOptions, ProtocolVersion, QoS, open_mqtt_connection

TOPIC = "trio-mqtt/examples/manual-acks"
COUNT = 3


def broker_url() -> str:
    """The broker URL: the first argument, else $MQTT_URL, else a broker on this machine."""
    if len(sys.argv) > 1:
        return sys.argv[1]
    return os.environ.get("MQTT_URL", "mqtt://localhost:1883")


def session_info(conn: MqttConnection) -> str:
    assert conn.connack is not None  # set once open_mqtt_connection() has connected
    return "resumed" if conn.connack.session_present else "new"


async def main() -> None:
    options = MqttOptions.from_url(
        broker_url(),
        client_id="trio-mqtt-manual-acks",
        protocol_version=ProtocolVersion.V5,
        session_expiry_interval=60,  # the broker keeps the session 60 s after we leave
        manual_acks=True,
    )
    with trio.fail_after(15):  # an example must never hang
        # 1. Start from a clean slate (clean_start=True drops whatever an earlier run left).
        async with open_mqtt_connection(options.replace(clean_start=True)) as conn:
            print(f"connection 1: {session_info(conn)} session")
            await conn.client.subscribe(TOPIC, QoS.AT_LEAST_ONCE)
            for n in range(COUNT):
                await conn.client.publish(TOPIC, f"job {n}", qos=QoS.AT_LEAST_ONCE)
            received = 0
            async for message in conn.messages():
                print(f"  received {message.payload.decode()} (dup={message.dup}), not acking")
                received += 1
                if received == COUNT:
                    break
        # Leaving sent DISCONNECT; the broker still holds the three unacknowledged messages.

        # 2. Resume the session: the broker sends the unacknowledged messages again.
        async with open_mqtt_connection(options.replace(clean_start=False)) as conn:
            print(f"connection 2: {session_info(conn)} session")
            received = 0
            async for message in conn.messages():
                await conn.client.ack(message)  # PUBACK now: the broker may forget it
                print(f"  redelivered {message.payload.decode()} (dup={message.dup}), acked")
                received += 1
                if received == COUNT:
                    break
            # An ack gets no answer, and a broker may drop packets it has not read yet when a
            # new connection takes the session over (as step 3 does at once). A tracked QoS 1
            # publish is a round trip the broker answers only after reading our acks.
            tracker = await conn.client.publish_tracked(f"{TOPIC}/done", "", qos=1)
            await tracker.wait()

        # 3. Resume once more: there is nothing left to redeliver.
        async with open_mqtt_connection(options.replace(clean_start=False)) as conn:
            print(f"connection 3: {session_info(conn)} session")
            with trio.move_on_after(0.5):
                async for message in conn.messages():
                    print(f"  unexpected: {message.payload.decode()}")
            print("  nothing redelivered within 0.5 s")


if __name__ == "__main__":
    trio.run(main)
