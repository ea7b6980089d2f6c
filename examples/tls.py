"""Connect over TLS, trusting a private certificate authority.

Usage::

    python examples/tls.py [mqtts://HOST:8883] [--cafile ca.pem]     # or set MQTT_URL

``TlsTransport(ca_file=...)`` verifies the broker's certificate against the given CA instead of
the system's trust store, as you need for a broker with a self-made certificate. Without
``--cafile`` the system store is used, which is right for brokers with public certificates.
The same could be written as a URL: ``mqtts://HOST:8883/?ca_file=/path/to/ca.pem``.
"""

from __future__ import annotations

import argparse
import os

import trio

from trio_mqtt import (
    CertificateVerificationError,
    MqttOptions,
    QoS,
    TlsTransport,
    open_mqtt_connection,
)

TOPIC = "trio-mqtt/examples/tls"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Connect to an MQTT broker over TLS.")
    parser.add_argument(
        "url",
        nargs="?",
        default=os.environ.get("MQTT_URL", "mqtts://localhost:8883"),
        help="broker URL (default: $MQTT_URL or mqtts://localhost:8883)",
    )
    parser.add_argument("--cafile", help="PEM file of the CA that signed the broker's certificate")
    return parser.parse_args()


async def main() -> None:
    args = parse_args()
    # The URL gives host and port; the transport given here replaces the one the URL implies.
    transport = TlsTransport(ca_file=args.cafile)
    options = MqttOptions.from_url(args.url, client_id="trio-mqtt-tls", transport=transport)
    try:
        async with open_mqtt_connection(options) as conn:
            print(f"connected to {options.host}:{options.port} over TLS")
            with trio.fail_after(10):  # an example must never hang
                await conn.client.subscribe(TOPIC, QoS.AT_LEAST_ONCE)
                await conn.client.publish(TOPIC, "sent encrypted", qos=QoS.AT_LEAST_ONCE)
                async for message in conn.messages():
                    print(f"received {message.topic}: {message.payload.decode()}")
                    break
    except CertificateVerificationError as exc:
        # The broker's certificate was not signed by a CA we trust (or names another host).
        raise SystemExit(f"certificate verification failed: {exc}") from None
    print("done")


if __name__ == "__main__":
    trio.run(main)
