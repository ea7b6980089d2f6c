"""moat-lib-mqtt (AnyIO, MQTT 5 only), run on the Trio backend.

``publish()`` runs the whole QoS 1/2 exchange before it returns, so the publisher awaits
each message in turn.
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import TOPIC, Job, LatencyMeter, ThroughputMeter, payload, seq_of, wait_trio

NAME = "moat-lib-mqtt"
NOTE = "MQTT 5 only; AnyIO on Trio; publish() waits for QoS 1/2 acks"


def version() -> str:
    """Installed moat-lib-mqtt version."""
    from importlib.metadata import version as dist_version

    import moat.lib.mqtt  # noqa: F401  (fails here when it is not installed)

    return dist_version("moat-lib-mqtt")


def _client(job: Job, suffix: str) -> Any:
    from moat.lib.mqtt.async_client import AsyncMQTTClient

    return AsyncMQTTClient(job.host, job.port, client_id=f"{job.client_id}-{suffix}", keep_alive=60)


async def _throughput(job: Job) -> dict[str, Any]:
    import anyio
    from moat.lib.mqtt import QoS

    meter = ThroughputMeter(job)
    done = anyio.Event()
    async with (
        _client(job, "sub") as sub,
        _client(job, "pub") as pub,
        sub.subscribe(TOPIC, qos=QoS(job.qos)) as messages,
        anyio.create_task_group() as tg,
    ):

        async def consume() -> None:
            async for message in messages:
                if meter.on_payload(message.payload):
                    done.set()
                    return

        tg.start_soon(consume)
        meter.start()
        for seq in range(job.count):
            await pub.publish(TOPIC, payload(seq, job.size), qos=QoS(job.qos))
        meter.published_all()
        await wait_trio(meter, done)
        tg.cancel_scope.cancel()
        return meter.result()


async def _latency(job: Job) -> dict[str, Any]:
    import anyio
    from moat.lib.mqtt import QoS

    meter = LatencyMeter(job)
    async with _client(job, "rtt") as client, client.subscribe(TOPIC, qos=QoS(job.qos)) as sub:
        messages = aiter(sub)
        seq = 0
        meter.start()
        while meter.more():
            t0 = time.perf_counter()
            await client.publish(TOPIC, payload(seq, job.size), qos=QoS(job.qos))
            with anyio.move_on_after(job.idle) as scope:
                while seq_of((await anext(messages)).payload) != seq:
                    pass
            if scope.cancelled_caught:
                meter.error = f"message {seq} did not come back"
                break
            meter.add(time.perf_counter() - t0)
            seq += 1
        return meter.result()


def run_throughput(job: Job) -> dict[str, Any]:
    """Publisher and subscriber clients on one Trio loop (through AnyIO)."""
    import anyio

    result: dict[str, Any] = anyio.run(_throughput, job, backend="trio")
    return result


def run_latency(job: Job) -> dict[str, Any]:
    """One client publishes and waits for its own message each time."""
    import anyio

    result: dict[str, Any] = anyio.run(_latency, job, backend="trio")
    return result
