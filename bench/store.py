"""What a durable session store costs: ``python bench/store.py`` (or ``bench/run.py --store``).

Theory of operation: for each store configuration and QoS 1/2, a fresh mosquitto (the
benchmark broker configuration of ``bench/run.py``) and a fresh process; one publisher with
the store (``clean_start=False``, default window 100) sends ``--count`` messages of 64 bytes
in a loop, and the time runs until the last one is acknowledged. Two ways of calling
(``--calls``): ``nowait`` uses ``publish_nowait()`` (awaiting ``publish()`` when the queue is
full), so a durable store commits the outbox in groups; ``await`` awaits each ``publish()``,
which with a durable store returns only once that message is committed (one commit per
message for a lone publisher). No subscriber: the figure is the publisher's own cost. Repeats
alternate the order of the configurations; the table gives medians. The figures in
docs/reconnects.rst ("Costs and limits") and docs/durable.rst ("Costs") come from this script.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CONFIGS = ("none", "memory", "sqlite", "sqlite-in-loop", "sqlite-full")


def _store(config: str, folder: str) -> Any:
    import trio_mqtt

    if config == "none":
        return None
    if config == "memory":
        return trio_mqtt.MemorySessionStore()
    if config == "sqlite":
        return trio_mqtt.SqliteSessionStore(folder)
    if config == "sqlite-in-loop":
        return trio_mqtt.SqliteSessionStore(folder, in_thread=False)
    return trio_mqtt.SqliteSessionStore(folder, synchronous="FULL")


CALLS = ("nowait", "await")


async def _publish(
    port: int, config: str, qos: int, count: int, folder: str, call: str = "nowait"
) -> float:
    import trio

    import trio_mqtt

    options = trio_mqtt.MqttOptions(
        f"store-bench-{config}",
        "127.0.0.1",
        port,
        clean_start=False,
        session_store=_store(config, folder),
    )
    payload = b"x" * 64
    async with trio_mqtt.open_mqtt_connection(options) as conn:
        client = conn.client
        start = time.perf_counter()
        last = None
        for _ in range(count - 1):
            if call == "await":
                await client.publish("bench/store", payload, qos=qos)
                continue
            try:
                client.publish_nowait("bench/store", payload, qos=qos)
            except trio.WouldBlock:
                await client.publish("bench/store", payload, qos=qos)
        last = await client.publish_tracked("bench/store", payload, qos=qos)
        await last.wait()
        # earlier messages are acknowledged before the last one (in order, one window)
        while conn.statistics().inflight or conn.statistics().waiting_publishes:  # noqa: ASYNC110
            await trio.sleep(0.001)
        return count / (time.perf_counter() - start)


def measure(config: str, qos: int, count: int, call: str = "nowait") -> float:
    """One measurement in this process: msg/s."""
    import trio

    from bench.run import BROKER_OPTIONS
    from trio_mqtt.testing import MosquittoBroker

    with tempfile.TemporaryDirectory() as folder, MosquittoBroker(**BROKER_OPTIONS) as broker:
        rate: float = trio.run(_publish, broker.port, config, qos, count, folder, call)
        return rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--calls", default=",".join(CALLS))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # worker mode: config,qos,call
    args = parser.parse_args(argv)
    if args.one:
        config, qos, call = args.one.split(",")
        print(json.dumps(measure(config, int(qos), args.count, call)))
        return 0
    configs = args.configs.split(",")
    calls = args.calls.split(",")
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        parser.error(f"unknown configurations {sorted(unknown)}; known: {', '.join(CONFIGS)}")
    if set(calls) - set(CALLS):
        parser.error(f"--calls takes {', '.join(CALLS)}")
    rates: dict[tuple[str, int, str], list[float]] = {}
    for repeat in range(args.repeats):
        order = configs if repeat % 2 == 0 else configs[::-1]
        for qos in (1, 2):
            for call in calls:
                for config in order:
                    rate = _run_one(config, qos, call, args.count)
                    rates.setdefault((config, qos, call), []).append(rate)
                    print(
                        f"[{repeat}] {config:15} QoS {qos} {call:6}: {rate:,.0f} msg/s",
                        file=sys.stderr,
                    )
    print(f"\n{args.count:,} x 64 B, one publisher, median of {args.repeats} (msg/s)\n")
    print("| QoS | calls | " + " | ".join(configs) + " |")
    print("| --- | --- |" + " --- |" * len(configs))
    for qos in (1, 2):
        for call in calls:
            cells = [f"{statistics.median(rates[(c, qos, call)]):,.0f}" for c in configs]
            print(f"| {qos} | {call} | " + " | ".join(cells) + " |")
    return 0


def _run_one(config: str, qos: int, call: str, count: int) -> float:
    """One measurement in a fresh process (so that runs do not share a warmed-up heap)."""
    result = subprocess.run(
        [sys.executable, __file__, "--one", f"{config},{qos},{call}", "--count", str(count)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return float(result.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    sys.exit(main())
