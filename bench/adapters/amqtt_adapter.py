"""amqtt's client (asyncio, MQTT 3.1.1). ``publish()`` waits for the acks of QoS 1/2."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.common import TOPIC, Job, LatencyMeter, ThroughputMeter, payload, until_seq, wait_asyncio

NAME = "amqtt"
NOTE = "publish() waits for QoS 1/2 acks"


def version() -> str:
    """Installed amqtt version."""
    from importlib.metadata import version as dist_version

    import amqtt.client  # noqa: F401  (fails here when it is not installed)

    return dist_version("amqtt")


async def _client(job: Job, suffix: str, subscribe: bool) -> Any:
    from amqtt.client import MQTTClient

    client = MQTTClient(
        client_id=f"{job.client_id}-{suffix}",
        config={"keep_alive": 60, "auto_reconnect": False},
    )
    await client.connect(f"mqtt://{job.host}:{job.port}/")
    if subscribe:
        await client.subscribe([(TOPIC, job.qos)])
    return client


def _data(message: Any) -> bytes:
    return bytes(message.publish_packet.payload.data)


async def _throughput(job: Job) -> dict[str, Any]:
    meter = ThroughputMeter(job)
    done = asyncio.Event()
    sub = await _client(job, "sub", True)
    pub = await _client(job, "pub", False)

    async def consume() -> None:
        while True:
            message = await sub.deliver_message()
            if message is not None and meter.on_payload(_data(message)):
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
    seq = 0
    meter.start()
    while meter.more():
        t0 = time.perf_counter()
        await client.publish(TOPIC, payload(seq, job.size), qos=job.qos)
        if not await until_seq(client.deliver_message, _data, seq, job.idle):
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
