"""Benchmark runner: ``python bench/run.py [--quick | --full] [--scale] [--codec] [--store] ...``.

Theory of operation: for every repeat, client and case the runner starts a fresh mosquitto
on a free 127.0.0.1 port, then a fresh worker process (``python -m bench.worker``) that
measures one thing with one client and prints its figures as JSON. Clients run in the
ADAPTERS order on even repeats and in reverse order on odd ones, so slow drift of the
machine does not always favour the same library. Results go to stdout and to
``bench/results/latest.md`` (tables) and ``bench/results/latest.json`` (every run).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import inspect
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import report  # noqa: E402
from bench.adapters import ADAPTERS, EXTRAS, PEERS  # noqa: E402
from bench.worker import MARKER  # noqa: E402

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "count": 1000,
        "big_count": 100,
        "repeats": 3,
        "latency_samples": 200,
        "latency_budget": 0.5,
    },
    "default": {
        "count": 20_000,
        "big_count": 5000,
        "repeats": 3,
        "latency_samples": 1000,
        "latency_budget": 2.0,
    },
    "full": {
        "count": 50_000,
        "big_count": 10_000,
        "repeats": 5,
        "latency_samples": 5000,
        "latency_budget": 5.0,
    },
}
BIG = 16 * 1024
#: Every benchmark broker: no persistence (MosquittoBroker's default), anonymous, unlimited
#: inflight and queued messages (0), TCP_NODELAY, and only error/information logging (logging
#: every packet would slow the broker down).
BROKER_OPTIONS: dict[str, Any] = {
    "max_inflight_messages": 0,
    "max_queued_messages": 0,
    "allow_anonymous": True,
    "extra_config": ["set_tcp_nodelay true"],
    "log_types": ("error",),
}


@contextlib.contextmanager
def running_broker() -> Iterator[Any]:
    """A fresh mosquitto on a free 127.0.0.1 port for the duration of the block."""
    from trio_mqtt.testing import MosquittoBroker

    with MosquittoBroker(**BROKER_OPTIONS) as broker:
        yield broker


def broker_version() -> str:
    """mosquitto's version string, e.g. ``2.0.11``."""
    from trio_mqtt.testing import find_mosquitto

    executable = find_mosquitto()
    if executable is None:
        raise SystemExit("mosquitto is not installed (apt-get install mosquitto)")
    out = subprocess.run(
        [executable, "-h"], capture_output=True, text=True, timeout=10, check=False
    ).stdout
    first = out.splitlines()[0] if out else ""
    return first.rsplit(" ", 1)[-1] if first else "unknown"


def raise_fd_limit() -> int:
    """Raise the soft open-files limit to the hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return int(target)
    return int(soft)


def spawn(module: str, job: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run ``python -m module '<job>'`` and return the JSON it reports."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", module, json.dumps(job)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"status": "error", "reason": f"worker timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARKER):
            result: dict[str, Any] = json.loads(line[len(MARKER) :])
            return result
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"status": "error", "reason": f"worker exited {proc.returncode}: {tail[:300]}"}


def measure(job: dict[str, Any]) -> dict[str, Any]:
    """One job against its own broker."""
    with running_broker() as broker:
        job = {**job, "host": broker.host, "port": broker.port, "broker_pid": broker.pid}
        return spawn("bench.worker", job, job.get("timeout", 120.0) + 60)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options (see bench/README.md)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small N: a minute or two")
    size.add_argument("--full", action="store_true", help="large N, 5 repeats, and --scale")
    p.add_argument("--scale", action="store_true", help="also run the scale measurements")
    p.add_argument("--scale-only", action="store_true", help="run only the scale measurements")
    p.add_argument(
        "--codec", action="store_true", help="run bench/codec.py's main() with the other args"
    )
    p.add_argument(
        "--store", action="store_true", help="run bench/store.py (session store costs) instead"
    )
    p.add_argument("--clients", help="comma-separated subset of: " + ", ".join(ADAPTERS))
    p.add_argument("--qos", default="0,1,2", help="QoS levels (default 0,1,2)")
    p.add_argument("--sizes", help="payload sizes in bytes (default 64,16384)")
    p.add_argument("--count", type=int, help="messages per 64 B throughput run")
    p.add_argument("--big-count", type=int, help="messages per 16 KiB throughput run")
    p.add_argument("--repeats", type=int, help="repeats of every measurement (>= 1)")
    p.add_argument("--latency-samples", type=int, help="most round trips per latency run")
    p.add_argument("--latency-budget", type=float, help="seconds per latency run")
    p.add_argument("--no-latency", action="store_true", help="skip the latency runs")
    p.add_argument("--timeout", type=float, default=120.0, help="limit per run (s)")
    p.add_argument("--connections", type=int, default=1000, help="--scale idle connections")
    p.add_argument("--out", default=str(ROOT / "bench" / "results"), help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args, rest = p.parse_known_args(argv)
    args.rest = rest
    return args


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """Resolve the preset and the explicit overrides into one settings dict."""
    preset = dict(PRESETS["quick" if args.quick else "full" if args.full else "default"])
    for name in ("count", "big_count", "repeats", "latency_samples", "latency_budget"):
        if getattr(args, name) is not None:
            preset[name] = getattr(args, name)
    default = [c for c in ADAPTERS if c not in EXTRAS]
    preset["clients"] = args.clients.split(",") if args.clients else default
    unknown = [c for c in preset["clients"] if c not in ADAPTERS]
    if unknown:
        raise SystemExit(f"unknown clients: {', '.join(unknown)}")
    preset["qos"] = [int(q) for q in args.qos.split(",")]
    preset["sizes"] = [int(s) for s in args.sizes.split(",")] if args.sizes else [64, BIG]
    preset["repeats"] = max(1, preset["repeats"])
    return preset


def client_info(clients: list[str]) -> dict[str, dict[str, str]]:
    """Version probes are in the results; the static notes come from the adapters."""
    info = {}
    for c in clients:
        module = importlib.import_module(ADAPTERS[c])
        info[c] = {"note": str(getattr(module, "NOTE", ""))}
    return info


def run_clients(cfg: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every throughput and latency run, repeats alternating the client order."""
    records: list[dict[str, Any]] = []
    cases: list[tuple[str, int, int, int]] = [
        ("throughput", q, s, cfg["count"] if s <= 1024 else cfg["big_count"])
        for s in cfg["sizes"]
        for q in cfg["qos"]
    ]
    if not args.no_latency:
        cases += [("latency", q, 64, cfg["latency_samples"]) for q in cfg["qos"]]
    skip: dict[str, dict[str, Any]] = {}
    for rep in range(cfg["repeats"]):
        order = cfg["clients"] if rep % 2 == 0 else cfg["clients"][::-1]
        for client in order:
            for mode, qos, size, count in cases:
                base = {"client": client, "mode": mode, "qos": qos, "size": size, "repeat": rep}
                if client in skip:  # not installed / not available: one probe is enough
                    records.append({**base, **skip[client]})
                    continue
                job = {
                    "client": client,
                    "mode": mode,
                    "qos": qos,
                    "count": count,
                    "size": size,
                    "timeout": args.timeout,
                    "budget": cfg["latency_budget"],
                    "client_id": f"bench-{os.getpid()}-{rep}",
                }
                started = time.perf_counter()
                outcome = measure(job)
                took = time.perf_counter() - started
                records.append({**base, **outcome, "wall_s": round(took, 3)})
                if outcome["status"] == "unavailable":
                    skip[client] = outcome
                if not args.quiet:
                    print(progress(base, outcome, took), file=sys.stderr)
    return records


def progress(base: dict[str, Any], outcome: dict[str, Any], took: float) -> str:
    """One progress line for stderr."""
    what = f"[{base['repeat']}] {base['client']:>14} {base['mode']:<10} QoS {base['qos']}"
    what += f" {base['size']:>5} B"
    if outcome["status"] != "ok":
        return f"{what}: {outcome['status']}: {outcome.get('reason', '')}"
    if base["mode"] == "throughput":
        figure = (
            f"{outcome['rate_msg_s']:9.0f} msg/s lost {outcome['lost']} dup {outcome['duplicates']}"
        )
    else:
        figure = f"p50 {outcome['p50_us']:8.0f} µs p99 {outcome['p99_us']:8.0f} µs"
    return f"{what}: {figure} ({took:.1f} s)"


def run_codec(rest: list[str]) -> int:
    """Delegate to bench/codec.py (written by the codec engineer)."""
    try:
        codec = importlib.import_module("bench.codec")
    except ImportError as exc:
        print(f"bench/codec.py is not available yet ({exc})", file=sys.stderr)
        return 1
    main = codec.main
    takes_args = bool(inspect.signature(main).parameters)
    result = main(rest) if takes_args else main()
    return int(result or 0)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the report."""
    argv = sys.argv[1:] if argv is None else argv
    if "--codec" in argv:  # everything else is for bench/codec.py (e.g. --quick)
        return run_codec([a for a in argv if a != "--codec"])
    if "--brokers" in argv:  # the broker row: everything else is for bench/brokers.py
        from bench import brokers

        return brokers.main([a for a in argv if a != "--brokers"])
    if "--store" in argv:  # everything else is for bench/store.py (e.g. --count)
        from bench import store

        return store.main([a for a in argv if a != "--store"])
    args = parse_args(argv)
    if args.rest:
        raise SystemExit(f"unknown arguments: {' '.join(args.rest)}")
    cfg = settings(args)
    fd_limit = raise_fd_limit()
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "mosquitto": broker_version(),
        "fd_limit": fd_limit,
        **cfg,
    }
    started = time.perf_counter()
    records = [] if args.scale_only else run_clients(cfg, args)
    scale_records = None
    if args.scale or args.full or args.scale_only:
        from bench import scale

        scale_records = scale.run_all(args, measure_scale, quiet=args.quiet)
    meta["wall_s"] = round(time.perf_counter() - started, 1)
    summary = report.summarise(records)
    if args.scale_only:
        cfg["clients"] = []
    info = client_info(cfg["clients"])
    for c in cfg["clients"]:
        mine = [r for r in records if r["client"] == c]
        info[c]["version"] = next((r["version"] for r in mine if r.get("version")), "-")
        info[c]["status"] = status_of(mine)
    text = report.markdown(
        meta, summary, cfg["clients"], PEERS, cfg["qos"], cfg["sizes"], info, scale_records
    )
    text += f"\nWall time: {meta['wall_s']} s.\n"
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.md").write_text(text)
    cases = [(q, s) for s in cfg["sizes"] for q in cfg["qos"]]
    payload = {
        "meta": meta,
        "clients": info,
        "summary": [
            {"client": k[0], "mode": k[1], "qos": k[2], "size": k[3], **v}
            for k, v in summary.items()
        ],
        "ratios": report.ratios(summary, cfg["clients"], PEERS, cases),
        "runs": records,
        "scale": scale_records,
    }
    (out / "latest.json").write_text(json.dumps(payload, indent=1))
    return 0


def status_of(records: list[dict[str, Any]]) -> str:
    """One word (or reason) per client for the Clients table."""
    if not records:
        return "not run"
    bad = [r for r in records if r["status"] != "ok"]
    if not bad:
        return "ok"
    if len(bad) == len(records):
        return f"{bad[0]['status']}: {bad[0].get('reason', '')}"
    return f"{len(bad)} of {len(records)} runs failed: {bad[0].get('reason', '')}"


def measure_scale(job: dict[str, Any], timeout: float) -> dict[str, Any]:
    """One scale job (``bench.scale`` worker) against its own broker."""
    with running_broker() as broker:
        job = {**job, "host": broker.host, "port": broker.port, "broker_pid": broker.pid}
        return spawn("bench.scale", job, timeout)


if __name__ == "__main__":
    sys.exit(main())
