"""gmqtt (asyncio, callback API). ``publish()`` is synchronous and never waits for acks.

A publisher that never awaits would starve the event loop, so the loop yields every
:data:`YIELD_EVERY` messages (the same rule as the other non-awaiting publishers).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.common import TOPIC, Job, LatencyMeter, ThroughputMeter, payload, seq_of, wait_asyncio

NAME = "gmqtt"
NOTE = "publish() does not wait; yields every 256 messages"
YIELD_EVERY = 256


def version() -> str:
    """Installed gmqtt version."""
    import gmqtt

    return str(gmqtt.__version__)


async def _client(job: Job, suffix: str, on_payload: Any = None) -> Any:
    from gmqtt import Client
    from gmqtt.mqtt.constants import MQTTv311

    client = Client(f"{job.client_id}-{suffix}")
    subscribed = asyncio.Event()
    if on_payload is not None:

        def on_message(_client: Any, _topic: str, data: bytes, _qos: int, _props: Any) -> int:
            on_payload(data)
            return 0

        client.on_message = on_message
        client.on_subscribe = lambda *_args: subscribed.set()
    await client.connect(job.host, job.port, version=MQTTv311, keepalive=60)
    if on_payload is not None:
        client.subscribe(TOPIC, qos=job.qos)
        await asyncio.wait_for(subscribed.wait(), 10)
    return client


async def _throughput(job: Job) -> dict[str, Any]:
    meter = ThroughputMeter(job)
    done = asyncio.Event()

    def on_payload(data: bytes) -> None:
        if meter.on_payload(data):
            done.set()

    sub = await _client(job, "sub", on_payload)
    pub = await _client(job, "pub")
    meter.start()
    for seq in range(job.count):
        pub.publish(TOPIC, payload(seq, job.size), qos=job.qos)
        if seq % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)
    meter.published_all()
    await wait_asyncio(meter, done)
    result = meter.result()
    await pub.disconnect()
    await sub.disconnect()
    return result


async def _latency(job: Job) -> dict[str, Any]:
    meter = LatencyMeter(job)
    arrived = asyncio.Event()
    expected = [0]

    def on_payload(data: bytes) -> None:
        if seq_of(data) == expected[0]:
            arrived.set()

    client = await _client(job, "rtt", on_payload)
    meter.start()
    while meter.more():
        arrived.clear()
        t0 = time.perf_counter()
        client.publish(TOPIC, payload(expected[0], job.size), qos=job.qos)
        try:
            await asyncio.wait_for(arrived.wait(), job.idle)
        except asyncio.TimeoutError:
            meter.error = f"message {expected[0]} did not come back"
            break
        meter.add(time.perf_counter() - t0)
        expected[0] += 1
    result = meter.result()
    await client.disconnect()
    return result


def run_throughput(job: Job) -> dict[str, Any]:
    """Publisher and subscriber clients on one asyncio loop."""
    return asyncio.run(_throughput(job))


def run_latency(job: Job) -> dict[str, Any]:
    """One client publishes and waits for its own message each time."""
    return asyncio.run(_latency(job))
