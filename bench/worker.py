"""One measurement in a fresh process: ``python -m bench.worker '<job as JSON>'``.

The worker imports a single adapter, runs the job and prints one line starting with
:data:`MARKER` followed by a JSON object: ``{"status": "ok", ...figures}``,
``{"status": "unavailable", "reason": ...}`` or ``{"status": "error", "reason": ...}``.
Anything else a library prints is ignored by the runner.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
import traceback
import warnings
from typing import Any

from bench.adapters import ADAPTERS
from bench.common import Job, Unavailable, peak_rss_kib

MARKER = "BENCH-RESULT "


def run_job(job: Job) -> dict[str, Any]:
    """Run ``job`` with its adapter and return the status and figures."""
    try:
        module = importlib.import_module(ADAPTERS[job.client])
        lib_version = module.version()
    except Unavailable as exc:
        return {"status": "unavailable", "reason": str(exc)}
    except ImportError as exc:
        return {"status": "unavailable", "reason": f"not installed ({exc.name or exc})"}
    try:
        runner = module.run_throughput if job.mode == "throughput" else module.run_latency
        figures = runner(job)
    except Unavailable as exc:
        return {"status": "unavailable", "reason": str(exc), "version": lib_version}
    except Exception as exc:
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return {
            "status": "error",
            "reason": detail.splitlines()[-1][:300],
            "version": lib_version,
            "traceback": traceback.format_exc()[-4000:],
        }
    return {"status": "ok", "version": lib_version, "rss_peak_kib": peak_rss_kib(), **figures}


def main(argv: list[str] | None = None) -> int:
    """Entry point: the only argument is the job as a JSON object."""
    args = sys.argv[1:] if argv is None else argv
    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)
    job = Job(**json.loads(args[0]))
    outcome = run_job(job)
    sys.stdout.write(MARKER + json.dumps(outcome) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
