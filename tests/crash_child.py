"""The child processes of the SIGKILL tests: run one, read what it prints line by line, and
let the test react to each line (answer on its stdin, or have it killed)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

import trio_mqtt

__all__ = ["run_child"]

#: sees each printed line and the process; returns True to have it SIGKILLed
OnLine = Callable[[str, trio.Process], Awaitable[bool]]


async def run_child(argv: list[str], errors: Path, on_line: OnLine) -> tuple[int, list[str]]:
    """Run ``argv`` with this checkout of trio_mqtt importable; return its status and lines."""
    env = dict(os.environ)
    root = str(Path(trio_mqtt.__file__).parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    lines: list[str] = []
    with errors.open("wb") as stderr:
        process = await trio.lowlevel.open_process(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env
        )
        assert process.stdout is not None
        pending = b""
        try:
            async for chunk in process.stdout:
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for raw in complete:
                    lines.append(raw.decode())
                    if await on_line(lines[-1], process):
                        process.send_signal(signal.SIGKILL)
            return await process.wait(), lines
        finally:
            if process.returncode is None:  # pragma: no cover - only when the test fails
                process.kill()
                with trio.CancelScope(shield=True):
                    await process.wait()
