"""Smoke test of the benchmark harness (bench/run.py), so that it cannot rot unnoticed.

Runs the real runner for a tiny N with the raw-socket reference and one peer (paho-mqtt,
which the test extra installs), against private mosquitto brokers, and checks the report;
and checks the shared meter and the raw-socket frame splitter directly.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_runs_raw_socket_and_one_peer(tmp_path: Path) -> None:
    command = [
        sys.executable,
        str(ROOT / "bench" / "run.py"),
        "--clients=raw-socket,paho-mqtt",
        "--qos=1",
        "--sizes=64",
        "--count=300",
        "--repeats=1",
        "--latency-samples=20",
        "--latency-budget=0.5",
        "--timeout=10",
        "--quiet",
        f"--out={tmp_path}",
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]

    data = json.loads((tmp_path / "latest.json").read_text())
    runs = {(r["client"], r["mode"]): r for r in data["runs"]}
    assert set(runs) == {
        ("raw-socket", "throughput"),
        ("raw-socket", "latency"),
        ("paho-mqtt", "throughput"),
        ("paho-mqtt", "latency"),
    }
    for (client, mode), run in runs.items():
        assert run["status"] == "ok", (client, mode, run.get("reason"))
        if mode == "throughput":
            assert run["distinct"] == 300
            assert run["lost"] == 0
            assert run["rate_msg_s"] > 0
        else:
            assert run["samples"] >= 1
            assert 0 < run["p50_us"] <= run["p99_us"]
        assert run["rss_peak_kib"] > 0
    assert data["ratios"]["raw-socket"]["qos1-64B"]["vs_raw"] == 1.0

    markdown = (tmp_path / "latest.md").read_text()
    assert "## Throughput, 64 B payloads (msg/s)" in markdown
    assert "| paho-mqtt |" in markdown
    assert markdown.strip() in proc.stdout


def test_bench_meter_and_raw_frame_splitter() -> None:
    if str(ROOT) not in sys.path:  # bench/ is not installed; import it from the checkout
        sys.path.append(str(ROOT))
    from bench.adapters.raw_adapter import _frames, _split
    from bench.common import Job, ThroughputMeter, payload

    job = Job("raw-socket", "throughput", "127.0.0.1", 1, qos=1, count=3, size=16, idle=60.0)
    meter = ThroughputMeter(job)
    meter.start()
    # out of order, one duplicate, then the last one: complete exactly once
    assert [meter.on_payload(payload(s, 16)) for s in (2, 0, 2, 1)] == [False, False, False, True]
    result = meter.result()
    assert (result["distinct"], result["duplicates"], result["lost"]) == (3, 1, 0)

    # frames cut at every possible point come out whole, in order, with their bodies
    stream = b"".join(_frames(job, 0, 3))
    for cut in range(len(stream) + 1):
        buf = bytearray(stream[:cut])
        got = _split(buf)
        buf += stream[cut:]
        got += _split(buf)
        assert not buf
        assert [first for first, _ in got] == [0x32] * 3
        assert [bytes(body[-16:]) for _, body in got] == [payload(s, 16) for s in range(3)]


def test_broker_row_runs_against_mosquitto_and_the_embedded_broker(tmp_path: Path) -> None:
    command = [
        sys.executable,
        str(ROOT / "bench" / "run.py"),
        "--brokers",
        "--brokers=mosquitto,embedded",  # amqtt is a bench requirement, not a test one
        "--count=300",
        "--connections=20",
        "--latency-samples=20",
        "--latency-budget=0.5",
        "--timeout=10",
        f"--out={tmp_path}",
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = json.loads((tmp_path / "brokers.json").read_text())
    assert [r["broker"] for r in records] == ["mosquitto", "embedded"]
    for record in records:
        for qos in (0, 1, 2):
            outcome = record[f"qos{qos}"]
            assert outcome["status"] == "ok", outcome
            assert (outcome["lost"], outcome["duplicates"]) == (0, 0)
        assert record["latency"]["status"] == "ok"
        assert record["kib_per_idle_conn"] is not None
    assert "| embedded |" in proc.stdout
