"""aiomqtt 2.x (asyncio wrapper around paho-mqtt), used as documented.

``await client.publish()`` returns at once for QoS 0 and waits for the PUBACK/PUBCOMP for
QoS 1/2, so the publisher awaits each message in turn. Like paho underneath, it never sets
TCP_NODELAY; we measure it as it is.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.common import TOPIC, Job, LatencyMeter, ThroughputMeter, payload, until_seq, wait_asyncio

NAME = "aiomqtt"
NOTE = "paho underneath, no TCP_NODELAY; publish() waits for QoS 1/2 acks"


def version() -> str:
    """Installed aiomqtt version."""
    from importlib.metadata import version as dist_version

    import aiomqtt  # noqa: F401  (fails here when it is not installed)

    return dist_version("aiomqtt")


def _client(job: Job, suffix: str) -> Any:
    import aiomqtt

    return aiomqtt.Client(
        job.host,
        job.port,
        identifier=f"{job.client_id}-{suffix}",
        protocol=aiomqtt.ProtocolVersion.V311,
        keepalive=60,
    )


async def _throughput(job: Job) -> dict[str, Any]:
    meter = ThroughputMeter(job)
    done = asyncio.Event()
    async with _client(job, "sub") as sub, _client(job, "pub") as pub:
        await sub.subscribe(TOPIC, job.qos)

        async def consume() -> None:
            async for message in sub.messages:
                if meter.on_payload(message.payload):
                    done.set()
                    return

        consumer = asyncio.create_task(consume())
        meter.start()
        for seq in range(job.count):
            await pub.publish(TOPIC, payload(seq, job.size), job.qos)
        meter.published_all()
        await wait_asyncio(meter, done)
        consumer.cancel()
        return meter.result()


async def _latency(job: Job) -> dict[str, Any]:
    meter = LatencyMeter(job)
    async with _client(job, "rtt") as client:
        await client.subscribe(TOPIC, job.qos)
        messages = aiter(client.messages)
        seq = 0
        meter.start()
        while meter.more():
            t0 = time.perf_counter()
            await client.publish(TOPIC, payload(seq, job.size), job.qos)
            if not await until_seq(messages.__anext__, lambda m: m.payload, seq, job.idle):
                meter.error = f"message {seq} did not come back"
                break
            meter.add(time.perf_counter() - t0)
            seq += 1
        return meter.result()


def run_throughput(job: Job) -> dict[str, Any]:
    """Publisher and subscriber clients on one asyncio loop."""
    return asyncio.run(_throughput(job))


def run_latency(job: Job) -> dict[str, Any]:
    """One client publishes and waits for its own message each time."""
    return asyncio.run(_latency(job))
