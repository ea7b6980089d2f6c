"""CLI timings against mosquitto_pub: ``python bench/cli.py [--lines N] [--repeats R]``.

Theory of operation: one private mosquitto on a free loopback port; each case runs the same
command line through ``mosquitto_pub`` and through ``python -m trio_mqtt pub`` (and the
start-up alone, ``--help``), alternating the order between repeats, and reports the median
wall-clock time of each and their ratio. QoS 0 and 1 publishes of ``--lines`` messages cover
``-l`` (lines from standard input) and ``--repeat``. Nothing here is a test: run it by hand
and quote the figures of one run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from trio_mqtt.testing import MosquittoBroker  # noqa: E402


def timed(argv: list[str], stdin: bytes) -> float:
    start = time.perf_counter()
    subprocess.run(argv, input=stdin, check=True, capture_output=True, timeout=300)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=50_000, help="messages per run (50000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each command (3)")
    args = parser.parse_args()
    ours = [sys.executable, "-m", "trio_mqtt", "pub"]
    lines = b"".join(b"line %d\n" % i for i in range(args.lines))
    with MosquittoBroker(log_types=("error",)) as broker:
        where = ["-h", broker.host, "-p", str(broker.port), "-t", "bench/cli"]
        cases = [
            ("start-up (--help)", ["--help"], b"", False),
            ("one message", [*where, "-m", "x"], b"", True),
            (f"-l, {args.lines} lines, QoS 0", [*where, "-l"], lines, True),
            (f"-l, {args.lines} lines, QoS 1", [*where, "-l", "-q", "1"], lines, True),
            (
                f"--repeat {args.lines}, QoS 0",
                [*where, "-m", "x", "--repeat", str(args.lines)],
                b"",
                True,
            ),
            (
                f"--repeat {args.lines}, QoS 1",
                [*where, "-m", "x", "--repeat", str(args.lines), "-q", "1"],
                b"",
                True,
            ),
        ]
        print(f"{'case':32} {'mosquitto_pub':>14} {'trio-mqtt':>10} {'ratio':>6}")
        for name, case_args, stdin, with_mosquitto in cases:
            theirs: list[float] = []
            mine: list[float] = []
            for repeat in range(args.repeats):
                runs = [(mine, ours)]
                if with_mosquitto:
                    runs.append((theirs, ["mosquitto_pub"]))
                for bucket, command in runs if repeat % 2 else reversed(runs):
                    bucket.append(timed([*command, *case_args], stdin))
            ours_median = statistics.median(mine)
            if theirs:
                theirs_median = statistics.median(theirs)
                ratio = f"{ours_median / theirs_median:5.1f}x"
                shown = f"{theirs_median:13.2f}s"
            else:
                ratio, shown = "", f"{'-':>14}"
            print(f"{name:32} {shown} {ours_median:9.2f}s {ratio:>6}")


if __name__ == "__main__":
    main()
