"""Smoke test of the benchmark harness (bench/run.py), so that it cannot rot unnoticed.

Runs the real runner for a tiny N with the raw-socket reference and one peer (paho-mqtt,
which the test extra installs), against private mosquitto brokers, and checks the report.
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
