"""MQTTium (asyncio). ``publish()`` returns a receipt once the message is admitted; the
benchmark does not wait for receipts, so QoS 1/2 publishes are pipelined within the
library's own limits."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.common import TOPIC, Job, LatencyMeter, ThroughputMeter, payload, until_seq, wait_asyncio

NAME = "mqttium"
NOTE = "publish() returns a receipt; receipts not awaited"


def version() -> str:
    """Installed mqttium version."""
    import mqttium

    return str(mqttium.__version__)


async def _client(job: Job, suffix: str, subscribe: bool) -> Any:
    from mqttium.api import AsyncClient

    client = AsyncClient(f"{job.client_id}-{suffix}", keepalive=60)
    await client.connect(job.host, job.port)
    if subscribe:
        await client.subscribe(TOPIC, qos=job.qos)
    return client


async def _throughput(job: Job) -> dict[str, Any]:
    meter = ThroughputMeter(job)
    done = asyncio.Event()
    sub = await _client(job, "sub", True)
    pub = await _client(job, "pub", False)

    async def consume() -> None:
        async for message in sub.messages():
            if meter.on_payload(message.payload):
                done.set()
                return

    consumer = asyncio.create_task(consume())
    meter.start()
    for seq in range(job.count):
        await pub.publish(TOPIC, payload(seq, job.size), qos=job.qos)
    meter.published_all()
    await wait_asyncio(meter, done)
    result = meter.result()
    consumer.cancel()
    await pub.disconnect()
    await sub.disconnect()
    return result


async def _latency(job: Job) -> dict[str, Any]:
    meter = LatencyMeter(job)
    client = await _client(job, "rtt", True)
    messages = aiter(client.messages())
    seq = 0
    meter.start()
    while meter.more():
        t0 = time.perf_counter()
        await client.publish(TOPIC, payload(seq, job.size), qos=job.qos)
        if not await until_seq(messages.__anext__, lambda m: m.payload, seq, job.idle):
            meter.error = f"message {seq} did not come back"
            break
        meter.add(time.perf_counter() - t0)
        seq += 1
    result = meter.result()
    await client.disconnect()
    return result


def run_throughput(job: Job) -> dict[str, Any]:
    """Publisher and subscriber clients on one asyncio loop."""
    return asyncio.run(_throughput(job))


def run_latency(job: Job) -> dict[str, Any]:
    """One client publishes and waits for its own message each time."""
    return asyncio.run(_latency(job))
