"""zmqtt (asyncio). ``publish()`` completes the QoS 1/2 handshake before returning, so the
publisher awaits each message in turn; the subscription keeps its default bounded queue."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.common import TOPIC, Job, LatencyMeter, ThroughputMeter, payload, until_seq, wait_asyncio

NAME = "zmqtt"
NOTE = "publish() waits for QoS 1/2 acks; bounded subscription queue (1000)"


def version() -> str:
    """Installed zmqtt version."""
    from importlib.metadata import version as dist_version

    import zmqtt  # noqa: F401  (fails here when it is not installed)

    return dist_version("zmqtt")


def _client(job: Job, suffix: str) -> Any:
    import zmqtt

    return zmqtt.create_client(
        job.host, job.port, client_id=f"{job.client_id}-{suffix}", keepalive=60, reconnect=None
    )


async def _throughput(job: Job) -> dict[str, Any]:
    import zmqtt

    meter = ThroughputMeter(job)
    done = asyncio.Event()
    async with (
        _client(job, "sub") as sub,
        _client(job, "pub") as pub,
        sub.subscribe(TOPIC, qos=zmqtt.QoS(job.qos)) as messages,
    ):

        async def consume() -> None:
            async for message in messages:
                if meter.on_payload(message.payload):
                    done.set()
                    return

        consumer = asyncio.create_task(consume())
        meter.start()
        for seq in range(job.count):
            await pub.publish(TOPIC, payload(seq, job.size), qos=zmqtt.QoS(job.qos))
        meter.published_all()
        await wait_asyncio(meter, done)
        consumer.cancel()
        return meter.result()


async def _latency(job: Job) -> dict[str, Any]:
    import zmqtt

    meter = LatencyMeter(job)
    async with (
        _client(job, "rtt") as client,
        client.subscribe(TOPIC, qos=zmqtt.QoS(job.qos)) as messages,
    ):
        seq = 0
        meter.start()
        while meter.more():
            t0 = time.perf_counter()
            await client.publish(TOPIC, payload(seq, job.size), qos=zmqtt.QoS(job.qos))
            if not await until_seq(messages.get_message, lambda m: m.payload, seq, job.idle):
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
