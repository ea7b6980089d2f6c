"""Scale measurements (``bench/run.py --scale``): many idle connections, and fan-in.

Theory of operation: like ``bench.worker``, each measurement runs in a fresh process
(``python -m bench.scale '<job as JSON>'``) against a fresh broker and prints one line
starting with ``bench.worker.MARKER``.

* ``idle``: open ``connections`` connections with keep alive ``keep_alive`` seconds in one
  process (at most 100 handshakes at a time), report the time to connect them all, the
  growth of the resident set per connection, then the CPU used by the client process and by
  the broker while every connection sits idle for ``idle_s`` seconds (keep-alive pings only).
* ``fanin``: ``publishers`` publisher connections and one subscriber in one process; the
  publishers share ``count`` messages between them (publisher k sends sequence numbers
  k, k + publishers, ...) and the subscriber counts them like the throughput runs do.

trio-mqtt is measured with its public API; gmqtt is the asyncio comparison. In the fan-in
both drive their publishers the same way: a synchronous publish (``publish_nowait()``, which
waits only when the request queue is full, and gmqtt's ``publish()``) with a yield to the
event loop every 16 messages; trio-mqtt reads with ``message_batches()``, gmqtt with its
``on_message`` callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.common import TOPIC, Job, ThroughputMeter, Unavailable, broker_cpu_seconds, payload
from bench.worker import MARKER

CLIENTS = ("trio-mqtt", "gmqtt")
CONNECT_AT_ONCE = 100


@dataclasses.dataclass
class ScaleJob:
    """One scale measurement.

    Attributes:
        client: ``"trio-mqtt"`` or ``"gmqtt"``.
        mode: ``"idle"`` or ``"fanin"``.
        host: Broker address.
        port: Broker port.
        broker_pid: Broker process id (for its CPU counters).
        connections: Idle connections to open.
        keep_alive: Keep alive of every connection, in seconds.
        idle_s: How long the idle connections are watched.
        publishers: Fan-in publisher connections.
        count: Fan-in messages in total.
        qos: Fan-in quality of service.
        size: Fan-in payload size.
        timeout: Limit on the fan-in message phase.
    """

    client: str
    mode: str
    host: str = "127.0.0.1"
    port: int = 1883
    broker_pid: int | None = None
    connections: int = 1000
    keep_alive: int = 5
    idle_s: float = 10.0
    publishers: int = 100
    count: int = 10_000
    qos: int = 0
    size: int = 64
    timeout: float = 120.0


def rss_kib() -> int:
    """Current resident set size of this process in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def raise_fd_limit() -> None:
    """Raise the soft open-files limit to the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


class _Idle:
    """Bookkeeping shared by both idle implementations."""

    def __init__(self, job: ScaleJob) -> None:
        self.job = job
        self.rss0 = rss_kib()
        self.t0 = time.perf_counter()
        self.connect_s = 0.0
        self.rss1 = 0
        self.cpu0 = self.broker0 = 0.0

    def connected(self) -> None:
        self.connect_s = time.perf_counter() - self.t0
        self.rss1 = rss_kib()
        self.cpu0 = time.process_time()
        self.broker0 = broker_cpu_seconds(self.job.broker_pid)

    def result(self) -> dict[str, Any]:
        n = self.job.connections
        return {
            "connections": n,
            "keep_alive": self.job.keep_alive,
            "connect_s": self.connect_s,
            "connect_per_s": n / max(self.connect_s, 1e-9),
            "rss_before_kib": self.rss0,
            "rss_after_kib": self.rss1,
            "rss_per_conn_kib": (self.rss1 - self.rss0) / n,
            "idle_s": self.job.idle_s,
            "idle_client_cpu_s": time.process_time() - self.cpu0,
            "idle_broker_cpu_s": broker_cpu_seconds(self.job.broker_pid) - self.broker0,
        }


def _meter(job: ScaleJob) -> ThroughputMeter:
    return ThroughputMeter(
        Job(
            client=job.client,
            mode="throughput",
            host=job.host,
            port=job.port,
            qos=job.qos,
            count=job.count,
            size=job.size,
            timeout=job.timeout,
            broker_pid=job.broker_pid,
        )
    )


def _fanin_result(job: ScaleJob, meter: ThroughputMeter) -> dict[str, Any]:
    return {"publishers": job.publishers, **meter.result()}


# ------------------------------------------------------------------------------ trio-mqtt


def _trio_api() -> Any:
    from bench.adapters.trio_mqtt_adapter import _api

    return _api()


async def _trio_idle(job: ScaleJob) -> dict[str, Any]:
    import trio

    api = _trio_api()
    state = _Idle(job)
    limiter = trio.CapacityLimiter(CONNECT_AT_ONCE)
    all_connected = trio.Event()
    release = trio.Event()
    connected = 0

    async def one(i: int) -> None:
        nonlocal connected
        options = api.MqttOptions(f"idle-{i}", job.host, job.port, keep_alive=job.keep_alive)
        async with contextlib.AsyncExitStack() as stack:
            async with limiter:
                await stack.enter_async_context(api.open_mqtt_connection(options))
            connected += 1
            if connected == job.connections:
                all_connected.set()
            await release.wait()

    async with trio.open_nursery() as nursery:
        for i in range(job.connections):
            nursery.start_soon(one, i)
        await all_connected.wait()
        state.connected()
        await trio.sleep(job.idle_s)
        result = state.result()
        release.set()
    return result


async def _trio_fanin(job: ScaleJob) -> dict[str, Any]:
    import trio

    api = _trio_api()
    qos = api.QoS(job.qos)
    meter = _meter(job)
    done = trio.Event()
    async with contextlib.AsyncExitStack() as stack:
        sub = await stack.enter_async_context(
            api.open_mqtt_connection(api.MqttOptions("fanin-sub", job.host, job.port))
        )
        await sub.client.subscribe(TOPIC, qos)
        pubs = [
            await stack.enter_async_context(
                api.open_mqtt_connection(api.MqttOptions(f"fanin-{k}", job.host, job.port))
            )
            for k in range(job.publishers)
        ]
        async with trio.open_nursery() as nursery:

            async def consume() -> None:
                async for batch in sub.message_batches():
                    for message in batch:
                        if meter.on_payload(message.payload):
                            done.set()
                            return

            async def publish(k: int) -> None:
                client = pubs[k].client
                for n, seq in enumerate(range(k, job.count, job.publishers)):
                    data = payload(seq, job.size)
                    try:
                        client.publish_nowait(TOPIC, data, qos=qos)
                    except trio.WouldBlock:
                        await client.publish(TOPIC, data, qos=qos)
                    if n % 16 == 15:
                        await trio.lowlevel.checkpoint()

            nursery.start_soon(consume)
            meter.start()
            async with trio.open_nursery() as publishers:
                for k in range(job.publishers):
                    publishers.start_soon(publish, k)
            meter.published_all()
            with trio.move_on_after(job.timeout):
                while not done.is_set() and not meter.give_up():
                    with trio.move_on_after(0.25):
                        await done.wait()
            nursery.cancel_scope.cancel()
    return _fanin_result(job, meter)


# ---------------------------------------------------------------------------------- gmqtt


async def _gmqtt_connect(job: ScaleJob, client_id: str, keep_alive: int = 60) -> Any:
    from gmqtt import Client
    from gmqtt.mqtt.constants import MQTTv311

    client = Client(client_id)
    await client.connect(job.host, job.port, version=MQTTv311, keepalive=keep_alive)
    return client


async def _gmqtt_idle(job: ScaleJob) -> dict[str, Any]:
    state = _Idle(job)
    limiter = asyncio.Semaphore(CONNECT_AT_ONCE)

    async def one(i: int) -> Any:
        async with limiter:
            return await _gmqtt_connect(job, f"idle-{i}", job.keep_alive)

    clients = await asyncio.gather(*(one(i) for i in range(job.connections)))
    state.connected()
    await asyncio.sleep(job.idle_s)
    result = state.result()
    await asyncio.gather(*(c.disconnect() for c in clients))
    return result


async def _gmqtt_fanin(job: ScaleJob) -> dict[str, Any]:
    meter = _meter(job)
    done = asyncio.Event()
    subscribed = asyncio.Event()
    sub = await _gmqtt_connect(job, "fanin-sub")

    def on_message(_c: Any, _t: str, data: bytes, _q: int, _p: Any) -> int:
        if meter.on_payload(data):
            done.set()
        return 0

    sub.on_message = on_message
    sub.on_subscribe = lambda *_args: subscribed.set()
    sub.subscribe(TOPIC, qos=job.qos)
    await asyncio.wait_for(subscribed.wait(), 10)
    pubs = [await _gmqtt_connect(job, f"fanin-{k}") for k in range(job.publishers)]

    async def publish(k: int) -> None:
        for n, seq in enumerate(range(k, job.count, job.publishers)):
            pubs[k].publish(TOPIC, payload(seq, job.size), qos=job.qos)
            if n % 16 == 15:
                await asyncio.sleep(0)

    meter.start()
    await asyncio.gather(*(publish(k) for k in range(job.publishers)))
    meter.published_all()
    while not done.is_set() and not meter.give_up():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(done.wait(), 0.25)
    result = _fanin_result(job, meter)
    await asyncio.gather(*(c.disconnect() for c in [sub, *pubs]))
    return result


# ------------------------------------------------------------------------------- dispatch


def run(job: ScaleJob) -> dict[str, Any]:
    """Run one scale job in this process and return its figures."""
    raise_fd_limit()
    if job.client == "trio-mqtt":
        import trio

        _trio_api()
        func = _trio_idle if job.mode == "idle" else _trio_fanin
        result: dict[str, Any] = trio.run(func, job)
        return result
    if job.client == "gmqtt":
        func2 = _gmqtt_idle if job.mode == "idle" else _gmqtt_fanin
        return asyncio.run(func2(job))
    raise Unavailable(f"no scale implementation for {job.client}")


def run_all(
    args: Any, measure: Callable[[dict[str, Any], float], dict[str, Any]], quiet: bool = False
) -> list[dict[str, Any]]:
    """Every scale job, each through ``measure(job, timeout)`` (a fresh broker and process)."""
    records = []
    jobs: list[dict[str, Any]] = []
    for client in CLIENTS:
        jobs.append({"client": client, "mode": "idle", "connections": args.connections})
        jobs += [{"client": client, "mode": "fanin", "qos": q} for q in (0, 1)]
    for job in jobs:
        outcome = measure(job, 300.0)
        record = {**job, **outcome}
        records.append(record)
        if not quiet:
            figure = (
                outcome.get("reason", "")
                if outcome["status"] != "ok"
                else f"{outcome.get('connect_s', 0):.2f} s to connect, "
                f"{outcome.get('rss_per_conn_kib', 0):.1f} KiB/conn"
                if job["mode"] == "idle"
                else f"{outcome['rate_msg_s']:.0f} msg/s"
            )
            print(f"[scale] {job['client']} {job['mode']}: {figure}", file=sys.stderr)
    return records


def main(argv: list[str] | None = None) -> int:
    """Entry point: the only argument is the job as a JSON object."""
    args = sys.argv[1:] if argv is None else argv
    job = ScaleJob(**json.loads(args[0]))
    try:
        outcome = {"status": "ok", **run(job)}
    except Unavailable as exc:
        outcome = {"status": "unavailable", "reason": str(exc)}
    except Exception as exc:
        outcome = {"status": "error", "reason": f"{type(exc).__name__}: {exc}"[:300]}
    sys.stdout.write(MARKER + json.dumps(outcome) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
