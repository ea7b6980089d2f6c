"""The broker row: the same clients against mosquitto, amqtt's broker and the embedded broker.

Usage::

    python bench/brokers.py [--count N] [--connections N] [--brokers mosquitto,embedded,amqtt]

Theory of operation: every broker runs as a process of its own on a free 127.0.0.1 port, so its
CPU (utime + stime from ``/proc/PID/stat``) and memory (``VmRSS``) are its own: mosquitto from
:class:`trio_mqtt.testing.MosquittoBroker` (the settings of ``bench/run.py``: unlimited inflight
and queues), amqtt with ``amqtt -c`` (anonymous access, no logging or ``$SYS`` plugins), and
trio-mqtt's with ``python -m trio_mqtt broker -c`` (windows and queues opened wide, as for
mosquitto). A fresh broker serves each measurement. The clients are the bench workers of
``bench/run.py`` (``raw-socket``: pre-encoded frames, so the broker is what is measured), run in
their own process:

* throughput at QoS 0, 1 and 2 (64-byte payloads, one publisher and one subscriber);
* round-trip latency p50/p99 (one connection publishing to itself, QoS 0);
* broker CPU per message, from the throughput runs;
* broker memory per idle connection: ``VmRSS`` after opening ``--connections`` idle
  connections (from one raw-socket process) minus ``VmRSS`` before, divided by the count.

Results are printed as Markdown and written to ``bench/results/brokers.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import BROKER_OPTIONS, raise_fd_limit, spawn  # noqa: E402

BROKERS = ("mosquitto", "embedded", "amqtt")
EMBEDDED_CONFIG = """
[limits]
max_connections = 20000
max_inflight = 65535
receive_maximum = 65535
max_queued_messages = 1000000
max_output_bytes = 67108864
sys_interval = 0
"""
AMQTT_CONFIG = """
listeners:
  default:
    type: tcp
    bind: 127.0.0.1:{port}
    max_connections: 20000
plugins:
  amqtt.plugins.authentication.AnonymousAuthPlugin:
    allow_anonymous: true
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"broker exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)  # bounded poll while the process starts
    raise RuntimeError("broker did not start listening")


class Running:
    """A broker process: where it listens and its pid."""

    def __init__(self, name: str, port: int, pid: int) -> None:
        self.name, self.host, self.port, self.pid = name, "127.0.0.1", port, pid


@contextlib.contextmanager
def start(name: str) -> Iterator[Running]:
    """A fresh broker process called ``name`` for the duration of the block."""
    if name == "mosquitto":
        from trio_mqtt.testing import MosquittoBroker

        with MosquittoBroker(**BROKER_OPTIONS) as broker:
            assert broker.pid is not None
            yield Running(name, broker.port, broker.pid)
        return
    folder = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    port = free_port()
    if name == "embedded":
        config = folder / "broker.ini"
        config.write_text(EMBEDDED_CONFIG, encoding="utf-8")
        argv = [sys.executable, "-m", "trio_mqtt", "broker", "-p", str(port), "-c", str(config)]
    elif name == "amqtt":
        executable = shutil.which("amqtt") or str(Path(sys.executable).parent / "amqtt")
        config = folder / "broker.yaml"
        config.write_text(AMQTT_CONFIG.format(port=port), encoding="utf-8")
        argv = [executable, "-c", str(config)]
    else:
        raise ValueError(f"unknown broker {name!r}")
    process = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder
    )
    try:
        wait_listening(port, process)
        yield Running(name, port, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)


def rss_kib(pid: int) -> int:
    """The process's resident set, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def idle_connections(broker: Running, count: int) -> float:
    """Open ``count`` MQTT 3.1.1 connections (CONNECT, wait for every CONNACK), read the
    broker's RSS, close them; returns KiB per connection."""
    before = rss_kib(broker.pid)
    socks: list[socket.socket] = []
    try:
        for number in range(count):
            sock = socket.create_connection((broker.host, broker.port), timeout=30)
            client_id = f"idle-{number}".encode()
            body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(client_id).to_bytes(2, "big") + client_id
            sock.sendall(bytes([0x10, len(body)]) + body)
            socks.append(sock)
        pending = set(socks)
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            ready, _, _ = select.select(list(pending)[:1000], [], [], 1.0)
            for sock in ready:
                if sock.recv(4)[:1] == b"\x20":
                    pending.discard(sock)
        if pending:
            raise RuntimeError(f"{len(pending)} connections got no CONNACK")
        time.sleep(1.0)  # let the broker settle before sampling its memory
        after = rss_kib(broker.pid)
    finally:
        for sock in socks:
            sock.close()
    return (after - before) / count


def measure(broker_name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Every figure for one broker, each against a fresh broker process."""
    record: dict[str, Any] = {"broker": broker_name}
    for qos in (0, 1, 2):
        with start(broker_name) as broker:
            job = {
                "client": args.client,
                "mode": "throughput",
                "host": broker.host,
                "port": broker.port,
                "qos": qos,
                "count": args.count,
                "size": 64,
                "timeout": args.timeout,
                "broker_pid": broker.pid,
            }
            outcome = spawn("bench.worker", job, args.timeout + 60)
        record[f"qos{qos}"] = outcome
        print(f"[brokers] {broker_name} QoS {qos}: {_short(outcome)}", file=sys.stderr)
    with start(broker_name) as broker:
        job = {
            "client": args.client,
            "mode": "latency",
            "host": broker.host,
            "port": broker.port,
            "qos": 0,
            "count": args.latency_samples,
            "size": 64,
            "budget": args.latency_budget,
            "timeout": args.timeout,
            "broker_pid": broker.pid,
        }
        record["latency"] = spawn("bench.worker", job, args.timeout + 60)
    print(f"[brokers] {broker_name} latency: {_short(record['latency'])}", file=sys.stderr)
    with start(broker_name) as broker:
        try:
            record["kib_per_idle_conn"] = idle_connections(broker, args.connections)
        except (OSError, RuntimeError) as exc:
            record["kib_per_idle_conn"] = None
            record["idle_error"] = str(exc)
    print(f"[brokers] {broker_name} idle: {record.get('kib_per_idle_conn')}", file=sys.stderr)
    return record


def _short(outcome: dict[str, Any]) -> str:
    if outcome.get("status") != "ok":
        return f"{outcome.get('status')}: {outcome.get('reason', '')}"
    if "rate_msg_s" in outcome:
        return f"{outcome['rate_msg_s']:,.0f} msg/s, lost {outcome['lost']}"
    return f"p50 {outcome.get('p50_us', 0):.0f} us"


def _cell(outcome: dict[str, Any], key: str, fmt: str) -> str:
    if outcome.get("status") != "ok" or outcome.get(key) is None:
        return str(outcome.get("status", "-"))
    return format(outcome[key], fmt)


def table(records: list[dict[str, Any]]) -> str:
    """The Markdown table, with the ratio of each figure to mosquitto's."""
    base = next((r for r in records if r["broker"] == "mosquitto"), None)
    lines = [
        "| broker | QoS 0 msg/s | QoS 1 msg/s | QoS 2 msg/s | RTT p50 / p99 (µs) "
        "| broker CPU µs/msg (QoS 0/1/2) | KiB per idle connection |",
        "|---|---|---|---|---|---|---|",
    ]
    for record in records:
        rates = []
        for qos in (0, 1, 2):
            outcome = record[f"qos{qos}"]
            cell = _cell(outcome, "rate_msg_s", ",.0f")
            if base is not None and record is not base and outcome.get("status") == "ok":
                reference = base[f"qos{qos}"].get("rate_msg_s")
                if reference:
                    cell += f" ({outcome['rate_msg_s'] / reference:.2f}x)"
            rates.append(cell)
        latency = record["latency"]
        rtt = f"{_cell(latency, 'p50_us', '.0f')} / {_cell(latency, 'p99_us', '.0f')}"
        cpu = " / ".join(
            _cell(record[f"qos{q}"], "broker_cpu_us_per_msg", ".1f") for q in (0, 1, 2)
        )
        idle = record.get("kib_per_idle_conn")
        lines.append(
            f"| {record['broker']} | {' | '.join(rates)} | {rtt} | {cpu} | "
            f"{'-' if idle is None else format(idle, '.1f')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--brokers", default=",".join(BROKERS))
    parser.add_argument("--client", default="raw-socket", help="bench worker client")
    parser.add_argument("--count", type=int, default=20_000, help="messages per throughput run")
    parser.add_argument("--connections", type=int, default=1000, help="idle connections")
    parser.add_argument("--latency-samples", type=int, default=2000)
    parser.add_argument("--latency-budget", type=float, default=3.0)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args(argv)
    raise_fd_limit()
    records = [measure(name, args) for name in args.brokers.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "brokers.json").write_text(json.dumps(records, indent=2), encoding="utf-8")
    print(table(records))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
