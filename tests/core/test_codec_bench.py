"""Smoke test of bench/codec.py, so that the codec benchmark cannot rot unnoticed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def test_codec_benchmark_runs() -> None:
    # A fresh interpreter, as a user would run it; --quick keeps it to a few seconds.
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "codec.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    rows = [line for line in lines if line.startswith(("PUBLISH", "CONNECT", "PUBACK", "stream"))]
    assert len(rows) == 6 * 2 * 2 + 2
    for row in rows:
        ours = row.split()[-4]
        assert ours.replace(",", "").isdigit(), row
