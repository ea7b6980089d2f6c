"""Shared pieces of the benchmark workers: the job description and the meters.

Theory of operation: every measurement runs in its own worker process (``bench.worker``)
against its own broker. The worker builds a :class:`Job`, hands it to one adapter, and the
adapter drives its library while feeding a :class:`ThroughputMeter` or :class:`LatencyMeter`.
The meters own the clock, the CPU counters and the loss/duplicate accounting, so every
adapter is measured by the same code: an adapter only calls ``start()`` before its first
publish, ``on_payload()`` for each delivered message (or ``add()`` for each round trip), and
returns ``meter.result()``.

Payloads carry an 8-byte big-endian sequence number followed by filler bytes, so the
subscriber can tell lost and duplicated messages apart.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import resource
import statistics
import sys
import time
from typing import Any

TOPIC = "bench/t"
SEQ_BYTES = 8
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Unavailable(Exception):
    """The client cannot be measured here (not installed, API missing, ...)."""


@dataclasses.dataclass
class Job:
    """One measurement, as the runner describes it to a worker.

    Attributes:
        client: Report name of the client (a key of ``bench.adapters.ADAPTERS``).
        mode: ``"throughput"`` or ``"latency"``.
        host: Broker address.
        port: Broker port.
        qos: Quality of service for the subscription and every publish (0, 1 or 2).
        count: Messages to move (throughput) or the most round trips to time (latency).
        size: Payload size in bytes (at least :data:`SEQ_BYTES`).
        timeout: Hard limit in seconds on the message phase.
        idle: Give up when no new message has arrived for this many seconds.
        budget: Latency only: stop taking samples after this many seconds.
        broker_pid: Process id of the broker, to read its CPU counters.
        client_id: Prefix for MQTT client identifiers.
    """

    client: str
    mode: str
    host: str
    port: int
    qos: int
    count: int
    size: int
    timeout: float = 120.0
    idle: float = 5.0
    budget: float = 5.0
    broker_pid: int | None = None
    client_id: str = "bench"


def payload(seq: int, size: int) -> bytes:
    """Build the payload of message ``seq``: sequence number, then filler up to ``size``."""
    return seq.to_bytes(SEQ_BYTES, "big") + b"x" * (size - SEQ_BYTES)


def seq_of(data: bytes | bytearray | memoryview) -> int:
    """Return the sequence number carried by a payload."""
    return int.from_bytes(data[:SEQ_BYTES], "big")


def broker_cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds the broker has used so far (0.0 when unknown)."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command name: state is field 0, utime field 11, stime field 12.
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def peak_rss_kib() -> int:
    """Peak resident set size of this process in KiB.

    Reads ``VmHWM`` from ``/proc/self/status``, which starts afresh when a program is
    executed. ``getrusage().ru_maxrss`` does not: a child keeps the peak of the parent it
    was forked from, so every worker would report at least the runner's size.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


class _CpuWindow:
    """CPU seconds of this process and of the broker between ``open()`` and ``close()``."""

    def __init__(self, broker_pid: int | None) -> None:
        self._pid = broker_pid
        self._client0 = self._broker0 = 0.0
        self.client = self.broker = 0.0
        self.closed = False

    def open(self) -> None:
        self._client0 = time.process_time()
        self._broker0 = broker_cpu_seconds(self._pid)

    def close(self) -> None:
        if not self.closed:
            self.client = time.process_time() - self._client0
            self.broker = broker_cpu_seconds(self._pid) - self._broker0
            self.closed = True


class ThroughputMeter:
    """Counts deliveries by sequence number and times first publish to last new message."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.count = job.count
        self.seen = bytearray(job.count)
        self.received = 0
        self.distinct = 0
        self.t_start = 0.0
        self.t_last = 0.0
        self.t_published = 0.0
        self.complete = False
        self._cpu = _CpuWindow(job.broker_pid)

    def start(self) -> None:
        """Call right before the first publish."""
        self._cpu.open()
        self.t_start = self.t_last = time.perf_counter()

    def published_all(self) -> None:
        """Call when the publisher has handed its last message to the library."""
        self.t_published = time.perf_counter()

    def on_payload(self, data: bytes | bytearray | memoryview) -> bool:
        """Record one delivered payload; returns True once, when every message has arrived."""
        self.received += 1
        seq = int.from_bytes(data[:SEQ_BYTES], "big")
        if seq >= self.count or self.seen[seq]:
            return False
        self.seen[seq] = 1
        self.distinct += 1
        self.t_last = time.perf_counter()
        if self.distinct == self.count:
            self._cpu.close()
            self.complete = True
            return True
        return False

    def give_up(self) -> bool:
        """True when the run exceeded its time limit or stalled for ``job.idle`` seconds."""
        now = time.perf_counter()
        return now - self.t_start > self.job.timeout or now - self.t_last > self.job.idle

    def result(self) -> dict[str, Any]:
        """The figures of this run (call after the message phase)."""
        self._cpu.close()
        elapsed = max(self.t_last - self.t_start, 1e-9)
        moved = max(self.distinct, 1)
        return {
            "complete": self.complete,
            "elapsed_s": elapsed,
            "rate_msg_s": self.distinct / elapsed,
            "mb_s": self.distinct * self.job.size / elapsed / 1e6,
            "publish_s": (self.t_published - self.t_start) if self.t_published else None,
            "received": self.received,
            "distinct": self.distinct,
            "lost": self.count - self.distinct,
            "duplicates": self.received - self.distinct,
            "client_cpu_s": self._cpu.client,
            "broker_cpu_s": self._cpu.broker,
            "client_cpu_us_per_msg": self._cpu.client / moved * 1e6,
            "broker_cpu_us_per_msg": self._cpu.broker / moved * 1e6,
        }


class LatencyMeter:
    """Collects round-trip times until ``job.count`` samples or ``job.budget`` seconds."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.samples: list[float] = []
        self.t_start = 0.0
        self._cpu = _CpuWindow(job.broker_pid)
        self.error: str | None = None

    def start(self) -> None:
        """Call right before the first timed publish."""
        self._cpu.open()
        self.t_start = time.perf_counter()

    def more(self) -> bool:
        """True while another sample should be taken."""
        return (
            len(self.samples) < self.job.count
            and time.perf_counter() - self.t_start < self.job.budget
        )

    def add(self, seconds: float) -> None:
        """Record one round trip."""
        self.samples.append(seconds)

    def result(self) -> dict[str, Any]:
        """The figures of this run (percentiles in microseconds)."""
        self._cpu.close()
        if not self.samples:
            raise RuntimeError(self.error or "no round trip completed")
        ordered = sorted(self.samples)
        n = len(ordered)

        def pct(p: float) -> float:
            return ordered[min(n - 1, round(p / 100 * (n - 1)))] * 1e6

        return {
            "samples": n,
            "p50_us": pct(50),
            "p99_us": pct(99),
            "min_us": ordered[0] * 1e6,
            "max_us": ordered[-1] * 1e6,
            "mean_us": statistics.fmean(ordered) * 1e6,
            "client_cpu_us_per_msg": self._cpu.client / n * 1e6,
            "broker_cpu_us_per_msg": self._cpu.broker / n * 1e6,
        }


async def wait_asyncio(meter: ThroughputMeter, done: Any) -> None:
    """Wait (asyncio) for ``done`` (an ``asyncio.Event``) or until the meter gives up."""
    import asyncio

    while not done.is_set() and not meter.give_up():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(done.wait(), 0.25)


async def wait_trio(meter: ThroughputMeter, done: Any) -> None:
    """Wait (Trio, or AnyIO on Trio) for ``done`` (an event) or until the meter gives up."""
    import trio

    while not done.is_set() and not meter.give_up():
        with trio.move_on_after(0.25):
            await done.wait()


async def until_seq(receive: Any, extract: Any, seq: int, timeout: float) -> bool:
    """Await ``receive()`` until ``extract(item)`` is the payload of message ``seq``.

    Returns False when ``timeout`` seconds pass first (asyncio).
    """
    import asyncio

    async def loop() -> None:
        while seq_of(extract(await receive())) != seq:
            pass

    try:
        if sys.version_info >= (3, 11):  # no extra task per call, unlike wait_for
            async with asyncio.timeout(timeout):
                await loop()
        else:
            await asyncio.wait_for(loop(), timeout)
    except asyncio.TimeoutError:
        return False
    return True


def wait_threads(meter: ThroughputMeter, done: Any) -> None:
    """Wait (threads) for ``done`` (a ``threading.Event``) or until the meter gives up."""
    while not done.is_set() and not meter.give_up():
        done.wait(0.25)
