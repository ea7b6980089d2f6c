"""paho-mqtt 2.x with its network thread (``loop_start``), used as documented.

paho never sets TCP_NODELAY, so a QoS 1/2 round trip can wait for a delayed TCP ACK
(about 40 ms on Linux); we measure it as it is. Its default window of 20 unacknowledged
outgoing messages is kept too.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from bench.common import TOPIC, Job, LatencyMeter, ThroughputMeter, payload, seq_of, wait_threads

NAME = "paho-mqtt"
NOTE = "network thread; no TCP_NODELAY; default window of 20"


def version() -> str:
    """Installed paho-mqtt version."""
    import paho.mqtt

    return str(paho.mqtt.__version__)


def _client(job: Job, suffix: str, on_message: Any = None) -> Any:
    import paho.mqtt.client as mqtt

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"{job.client_id}-{suffix}",
        protocol=mqtt.MQTTv311,
    )
    ready = threading.Event()
    client.on_connect = lambda *_args: ready.set()
    client.on_subscribe = lambda *_args: ready.set()
    if on_message is not None:
        client.on_message = on_message
    client.connect(job.host, job.port, keepalive=60)
    client.loop_start()
    if not ready.wait(10):
        raise RuntimeError("no CONNACK")
    if on_message is not None:
        ready.clear()
        client.subscribe(TOPIC, job.qos)
        if not ready.wait(10):
            raise RuntimeError("no SUBACK")
    return client


def _close(*clients: Any) -> None:
    for client in clients:
        client.disconnect()
        client.loop_stop()


def run_throughput(job: Job) -> dict[str, Any]:
    """Publisher and subscriber clients, each with its own network thread."""
    meter = ThroughputMeter(job)
    done = threading.Event()

    def on_message(_client: Any, _userdata: Any, message: Any) -> None:
        if meter.on_payload(message.payload):
            done.set()

    sub = _client(job, "sub", on_message)
    pub = _client(job, "pub")
    meter.start()
    for seq in range(job.count):
        pub.publish(TOPIC, payload(seq, job.size), job.qos)
    meter.published_all()
    wait_threads(meter, done)
    result = meter.result()
    _close(pub, sub)
    return result


def run_latency(job: Job) -> dict[str, Any]:
    """One client publishes and waits for its own message each time."""
    meter = LatencyMeter(job)
    arrived = threading.Event()
    expected = [0]

    def on_message(_client: Any, _userdata: Any, message: Any) -> None:
        if seq_of(message.payload) == expected[0]:
            arrived.set()

    client = _client(job, "rtt", on_message)
    meter.start()
    while meter.more():
        arrived.clear()
        t0 = time.perf_counter()
        client.publish(TOPIC, payload(expected[0], job.size), job.qos)
        if not arrived.wait(job.idle):
            meter.error = f"message {expected[0]} did not come back"
            break
        meter.add(time.perf_counter() - t0)
        expected[0] += 1
    result = meter.result()
    _close(client)
    return result
