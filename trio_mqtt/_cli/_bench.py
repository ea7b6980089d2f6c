"""``trio-mqtt bench``: throughput and latency through a broker, to size a deployment.

Theory of operation: one subscriber connection subscribes to a private topic tree
(``trio-mqtt/bench/<random>/#``) and ``--connections`` publisher connections share ``--count``
messages between them, each publishing to its own topic as fast as the window allows (or at
``--rate`` messages per second in total). Every payload starts with the Trio clock reading
taken just before its ``publish()`` call plus the publisher and sequence numbers, padded to
``--size`` bytes, so the subscriber measures the end-to-end latency of each message (which
includes queueing on our side under full load; use ``--rate`` for latency below saturation).

The run ends when every message has arrived, or when nothing was published or received for
``--stall-timeout`` seconds (a broker can drop or hold back messages), which is reported as loss
and gives exit code 4.
"""

from __future__ import annotations

import argparse
import json
import math
import secrets
import struct
from dataclasses import asdict, dataclass

import trio

from trio_mqtt import MqttOptions, QoS, open_mqtt_connection

from ._connect import (
    describe_broker,
    options_from_args,
    positive_float,
    positive_int,
    qos_value,
)
from ._exit import CliError, ExitCode
from ._output import Console, ProgressBar

__all__ = ["BenchResult", "add_bench_parser", "percentile", "run_bench", "run_benchmark"]

_HEADER = struct.Struct("!dII")  # send time, publisher index, sequence number
MIN_SIZE = _HEADER.size
PROGRESS_INTERVAL = 0.1
DEFAULT_WINDOW = 500
QOS2_HINT = (
    "; note: mosquitto 2.0.x with its default max_inflight_messages 20 can leave QoS 2 "
    "messages undelivered (set max_inflight_messages 0, or use -V 5)"
)


def non_negative_int(text: str) -> int:
    """argparse type for a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def add_bench_parser(parser: argparse.ArgumentParser) -> None:
    """The ``bench`` command's own flags."""
    parser.add_argument(
        "--qos", type=qos_value, default=QoS.AT_LEAST_ONCE, metavar="{0,1,2}", help="QoS (1)"
    )
    parser.add_argument(
        "--count", type=positive_int, default=10_000, help="messages in total (10000)"
    )
    parser.add_argument(
        "--size",
        type=positive_int,
        default=64,
        metavar="BYTES",
        help=f"payload size in bytes, at least {MIN_SIZE} (64)",
    )
    parser.add_argument(
        "--connections",
        type=positive_int,
        default=1,
        metavar="N",
        help="publisher connections sharing the messages (1)",
    )
    parser.add_argument(
        "--rate",
        type=positive_float,
        metavar="MSG/S",
        help="publish at this total rate instead of as fast as possible",
    )
    parser.add_argument(
        "--window",
        type=non_negative_int,
        default=DEFAULT_WINDOW,
        metavar="N",
        help=f"publishers wait while N messages are published but not yet received, so a "
        f"broker's per-client queue (mosquitto: max_queued_messages 1000) does not overflow; "
        f"0 = no limit ({DEFAULT_WINDOW})",
    )
    parser.add_argument(
        "--stall-timeout",
        type=positive_float,
        default=10.0,
        metavar="SECONDS",
        help="stop when no message arrived for this long (10)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument(
        "-d", "--debug", action="store_true", help="show the library's log on stderr"
    )


@dataclass(frozen=True, slots=True)
class BenchResult:
    """What one benchmark run measured.

    Attributes:
        qos: the QoS used.
        count: messages the run was asked to publish.
        published: messages actually published (fewer than ``count`` if the run stalled).
        size: payload bytes per message.
        connections: publisher connections.
        received: messages the subscriber got.
        publish_seconds: from the first publish call until every publisher was done (QoS 1/2:
            acknowledged).
        receive_seconds: from the first publish call until the last message arrived.
        publish_rate: ``published / publish_seconds`` in messages per second.
        receive_rate: ``received / receive_seconds`` in messages per second.
        latency_p50 / latency_p90 / latency_p99 / latency_max: end-to-end latency, seconds.
    """

    qos: int
    count: int
    published: int
    size: int
    connections: int
    received: int
    publish_seconds: float
    receive_seconds: float
    publish_rate: float
    receive_rate: float
    latency_p50: float
    latency_p90: float
    latency_p99: float
    latency_max: float

    @property
    def lost(self) -> int:
        """Messages that were to be published but were not received."""
        return self.count - self.received


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list (``nan`` when it is empty)."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _shares(count: int, connections: int) -> list[int]:
    base, extra = divmod(count, connections)
    return [base + (1 if index < extra else 0) for index in range(connections)]


class _Run:
    """The shared state of one benchmark run."""

    def __init__(self, options: MqttOptions, qos: QoS, count: int, size: int, window: int) -> None:
        self.options = options
        self.window = window
        self.waiting_for_room = trio.lowlevel.ParkingLot()
        self.qos = qos
        self.count = count
        self.padding = b"\x00" * (size - MIN_SIZE)
        self.prefix = f"trio-mqtt/bench/{secrets.token_hex(6)}"
        self.latencies: list[float] = []
        self.start = 0.0
        self.last_receive = 0.0
        self.published = 0
        self.publishers_left = 0
        self.publish_end = 0.0
        self.publishing_done = trio.Event()
        self.go = trio.Event()
        self.stalled = False

    async def publisher(
        self, index: int, share: int, rate: float | None, task_status: trio.TaskStatus[None]
    ) -> None:
        options = self.options.replace(client_id=f"{self.options.client_id}-p{index}")
        topic = f"{self.prefix}/{index}"
        async with open_mqtt_connection(options) as conn:
            client = conn.client
            task_status.started()
            await self.go.wait()
            last = None
            for sequence in range(share):
                if rate is not None:
                    await trio.sleep_until(self.start + sequence / rate)
                while self.window and self.published - len(self.latencies) >= self.window:
                    await self.waiting_for_room.park()
                header = _HEADER.pack(trio.current_time(), index, sequence)
                if sequence == share - 1:
                    last = await client.publish_tracked(topic, header + self.padding, self.qos)
                else:
                    await client.publish(topic, header + self.padding, self.qos)
                self.published += 1
            if last is not None:
                await last.wait()
        self.publishers_left -= 1
        if self.publishers_left == 0:
            self.publish_end = trio.current_time()
            self.publishing_done.set()


async def _watch_stall(run: _Run, scope: trio.CancelScope, stall_timeout: float) -> None:
    """Cancel the run when nothing was published or received for ``stall_timeout`` seconds."""
    while True:
        seen = (len(run.latencies), run.published)
        await trio.sleep(stall_timeout)
        if (len(run.latencies), run.published) == seen:
            run.stalled = True
            if not run.publish_end:
                run.publish_end = trio.current_time()
            scope.cancel()
            return


async def _show_progress(run: _Run, bar: ProgressBar) -> None:
    while True:
        await trio.sleep(PROGRESS_INTERVAL)
        bar.update(len(run.latencies), trio.current_time() - run.start)


async def run_benchmark(
    options: MqttOptions,
    *,
    qos: QoS = QoS.AT_LEAST_ONCE,
    count: int = 10_000,
    size: int = 64,
    connections: int = 1,
    rate: float | None = None,
    window: int = DEFAULT_WINDOW,
    stall_timeout: float = 10.0,
    progress: ProgressBar | None = None,
) -> BenchResult:
    """Publish ``count`` messages through the broker and measure them on a subscriber.

    Args:
        options: how to connect; each connection gets its own client id derived from it.
        qos: QoS of the publishes and of the subscription.
        count: messages in total.
        size: payload size (at least 16 bytes: the timestamp and numbering it carries).
        connections: publisher connections that share the messages.
        rate: total messages per second, or None for as fast as possible.
        window: publishers wait while this many messages are published and not yet received
            (0 = no limit).
        stall_timeout: give up when nothing was published or received for this long.
        progress: a progress bar to update while receiving.
    """
    if size < MIN_SIZE:
        raise CliError(ExitCode.USAGE, f"--size must be at least {MIN_SIZE} bytes")
    run = _Run(options, qos, count, size, window)
    shares = [share for share in _shares(count, connections) if share]
    run.publishers_left = len(shares)
    per_connection_rate = rate / len(shares) if rate is not None else None
    subscriber = options.replace(client_id=f"{options.client_id}-s")
    async with open_mqtt_connection(subscriber) as conn:
        await conn.client.subscribe(f"{run.prefix}/#", qos)
        async with trio.open_nursery() as nursery:
            for index, share in enumerate(shares):
                await nursery.start(run.publisher, index, share, per_connection_rate)
            nursery.start_soon(_watch_stall, run, nursery.cancel_scope, stall_timeout)
            if progress is not None:
                nursery.start_soon(_show_progress, run, progress)
            run.start = trio.current_time()
            run.go.set()
            latencies = run.latencies
            async for batch in conn.message_batches():
                now = trio.current_time()
                for message in batch:
                    sent, _, _ = _HEADER.unpack_from(message.payload)
                    latencies.append(now - sent)
                run.last_receive = now
                if run.waiting_for_room and run.published - len(latencies) <= run.window // 2:
                    run.waiting_for_room.unpark_all()
                if len(latencies) >= count:
                    break
            await run.publishing_done.wait()
            nursery.cancel_scope.cancel()
        if progress is not None:
            progress.update(len(run.latencies), trio.current_time() - run.start, final=True)
            progress.finish()
    ordered = sorted(run.latencies)
    publish_seconds = max(run.publish_end - run.start, 1e-9)
    receive_seconds = max(run.last_receive - run.start, 1e-9)
    return BenchResult(
        qos=int(qos),
        count=count,
        published=run.published,
        size=size,
        connections=len(shares),
        received=len(ordered),
        publish_seconds=publish_seconds,
        receive_seconds=receive_seconds,
        publish_rate=run.published / publish_seconds,
        receive_rate=len(ordered) / receive_seconds if ordered else 0.0,
        latency_p50=percentile(ordered, 0.50),
        latency_p90=percentile(ordered, 0.90),
        latency_p99=percentile(ordered, 0.99),
        latency_max=ordered[-1] if ordered else math.nan,
    )


def _ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.2f} ms"


def report_lines(result: BenchResult) -> list[str]:
    """The human-readable report of a run."""
    return [
        f"published {result.published} messages in {result.publish_seconds:.3f} s: "
        f"{result.publish_rate:,.0f} msg/s",
        f"received  {result.received} messages in {result.receive_seconds:.3f} s: "
        f"{result.receive_rate:,.0f} msg/s (lost {result.lost})",
        f"latency   p50 {_ms(result.latency_p50)}  p90 {_ms(result.latency_p90)}  "
        f"p99 {_ms(result.latency_p99)}  max {_ms(result.latency_max)}",
    ]


async def run_bench(args: argparse.Namespace, console: Console) -> int:
    """Run ``trio-mqtt bench``; returns the exit code."""
    if args.size < MIN_SIZE:
        raise CliError(ExitCode.USAGE, f"--size must be at least {MIN_SIZE} bytes")
    options = options_from_args(args, "bench")
    if not args.json:
        console.out(
            f"bench: {args.count} messages of {args.size} bytes at QoS {int(args.qos)}, "
            f"{args.connections} publisher connection(s), broker {describe_broker(options)}"
        )
    bar = ProgressBar(console, args.count)
    result = await run_benchmark(
        options,
        qos=args.qos,
        count=args.count,
        size=args.size,
        connections=args.connections,
        rate=args.rate,
        window=args.window,
        stall_timeout=args.stall_timeout,
        progress=bar,
    )
    if args.json:
        record = asdict(result)
        record["lost"] = result.lost
        console.out(json.dumps({k: (None if v != v else v) for k, v in record.items()}))
    else:
        for line in report_lines(result):
            console.out(line)
    if result.lost:
        hint = QOS2_HINT if result.qos == 2 else ""
        raise CliError(
            ExitCode.UNREACHABLE,
            f"{result.lost} of {result.count} messages did not arrive (nothing moved for "
            f"{args.stall_timeout:g} s){hint}",
        )
    return ExitCode.OK
