"""trio-mqtt itself, through its public API (``open_mqtt_connection``).

Client ``trio-mqtt`` speaks MQTT 3.1.1 like most peers and publishes and receives the way a
throughput-minded program does: ``client.publish_nowait()`` (synchronous, like gmqtt's and
paho's ``publish``), falling back to ``await client.publish()`` when the queue is full, and
``conn.message_batches()`` (everything buffered for one checkpoint, as a gmqtt or paho
callback sees every message of a read). ``trio-mqtt-await`` awaits ``client.publish()`` for
every message and reads with ``conn.messages()``, which costs one Trio scheduling pass per
message each way. Two clients are measured only when named with ``--clients``:
``trio-mqtt-v5`` speaks MQTT 5 (to compare with moat-lib-mqtt), and ``trio-mqtt-w1000`` is
``trio-mqtt`` with an outgoing window (``inflight``) of 1,000 instead of the default 100.
QoS 1/2 publishes are pipelined within the window.
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import (
    TOPIC,
    Job,
    LatencyMeter,
    ThroughputMeter,
    Unavailable,
    payload,
    seq_of,
    wait_trio,
)

NAME = "trio-mqtt"
NOTE = (
    "publish_nowait() with await publish() when full, message_batches() "
    "(-await: await every publish, messages()); "
    "window 100; -v5: MQTT 5"
)


def _api() -> Any:
    try:
        import trio_mqtt
    except ImportError as exc:
        raise Unavailable(f"not yet available (import trio_mqtt failed: {exc})") from exc

    if not hasattr(trio_mqtt, "open_mqtt_connection"):
        raise Unavailable("not yet available (open_mqtt_connection is not exported yet)")
    return trio_mqtt


def version() -> str:
    """Installed trio-mqtt version."""
    return str(_api().__version__)


def _options(job: Job, suffix: str) -> Any:
    api = _api()
    version = api.ProtocolVersion.V5 if job.client.endswith("-v5") else api.ProtocolVersion.V311
    inflight = 1000 if job.client.endswith("-w1000") else 100  # 100: the default
    return api.MqttOptions(
        f"{job.client_id}-{suffix}",
        job.host,
        job.port,
        keep_alive=60,
        protocol_version=version,
        inflight=inflight,
    )


async def _throughput(job: Job) -> dict[str, Any]:
    import trio

    api = _api()
    qos = api.QoS(job.qos)
    meter = ThroughputMeter(job)
    done = trio.Event()
    async with (
        api.open_mqtt_connection(_options(job, "sub")) as sub,
        api.open_mqtt_connection(_options(job, "pub")) as pub,
        trio.open_nursery() as nursery,
    ):
        await sub.client.subscribe(TOPIC, qos)

        async def consume() -> None:
            if job.client == "trio-mqtt-await":
                async for message in sub.messages():
                    if meter.on_payload(message.payload):
                        done.set()
                        return
            else:
                async for batch in sub.message_batches():
                    for message in batch:
                        if meter.on_payload(message.payload):
                            done.set()
                            return

        nursery.start_soon(consume)
        meter.start()
        client = pub.client
        if job.client == "trio-mqtt-await":
            for seq in range(job.count):
                await client.publish(TOPIC, payload(seq, job.size), qos=qos)
        else:
            for seq in range(job.count):
                data = payload(seq, job.size)
                try:
                    client.publish_nowait(TOPIC, data, qos=qos)
                except trio.WouldBlock:
                    await client.publish(TOPIC, data, qos=qos)
        meter.published_all()
        await wait_trio(meter, done)
        nursery.cancel_scope.cancel()
        return meter.result()


async def _latency(job: Job) -> dict[str, Any]:
    import trio

    api = _api()
    qos = api.QoS(job.qos)
    meter = LatencyMeter(job)
    async with api.open_mqtt_connection(_options(job, "rtt")) as conn:
        await conn.client.subscribe(TOPIC, qos)
        messages = aiter(conn.messages())
        seq = 0
        meter.start()
        while meter.more():
            t0 = time.perf_counter()
            await conn.client.publish(TOPIC, payload(seq, job.size), qos=qos)
            with trio.move_on_after(job.idle) as scope:
                while seq_of((await anext(messages)).payload) != seq:
                    pass
            if scope.cancelled_caught:
                meter.error = f"message {seq} did not come back"
                break
            meter.add(time.perf_counter() - t0)
            seq += 1
        return meter.result()


def run_throughput(job: Job) -> dict[str, Any]:
    """Publisher and subscriber connections in one Trio run."""
    import trio

    _api()
    result: dict[str, Any] = trio.run(_throughput, job)
    return result


def run_latency(job: Job) -> dict[str, Any]:
    """One connection publishes and waits for its own message each time."""
    import trio

    _api()
    result: dict[str, Any] = trio.run(_latency, job)
    return result
