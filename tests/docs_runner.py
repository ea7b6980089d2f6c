"""Run the Python code blocks of one documentation page, in order, in one namespace.

Usage: ``python docs_runner.py JOB.json RESULT.json``. ``tests/test_docs_code.py`` writes the
job and reads the result; nothing else is meant to call this script.

Theory of operation
-------------------
The blocks of a page build on each other (a later block uses the ``options`` an earlier one
made), so they run one after the other in a single module namespace, as a reader pasting them
into one file would. A block with a top-level ``await``, ``async with`` or ``async for`` (a
fragment of an async function) is compiled with ``PyCF_ALLOW_TOP_LEVEL_AWAIT`` and awaited in a
``trio.run`` of its own, under ``trio.fail_after`` (or, for another library's code shown for
comparison, in an ``asyncio.run`` under ``asyncio.wait_for``); any other block is executed as it
is (and may call ``trio.run`` itself).

The docs talk to a broker at ``localhost:1883`` (and ``localhost:8883`` for TLS, and so on), as
a reader's would be. Here those addresses resolve to the test's private brokers: the job maps
``host:port`` to ``127.0.0.1:port``, and :func:`socket.getaddrinfo` (which every transport's
name resolution goes through, including trio's and the sync API's) answers from that map. That
is the only patch; the code of a block runs exactly as printed.

A block that runs forever by design (a loop printing every message) names the line after which
the test has seen enough (``stop_at``, a regular expression): writing that line to stdout
raises :class:`BlockStopped` inside the block, which leaves it the way an exception from the
reader's own code would. Optional ``given`` code (placeholders such as a ``handle()`` function
that stands for the reader's code) runs before a block, and ``check`` code (assertions on what
the block made) after it, with the same stdout; a stop in either ends the block too.
"""

from __future__ import annotations

import ast
import asyncio
import faulthandler
import inspect
import io
import json
import re
import socket
import sys
import traceback
from pathlib import Path
from typing import Any

import trio

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

_real_getaddrinfo = socket.getaddrinfo


class BlockStopped(Exception):
    """Raised from ``print`` once a never-ending block has printed its ``stop_at`` line."""


class _Capture(io.TextIOBase):
    """stdout for one block: keeps its lines, and stops the block at the ``stop_at`` line."""

    def __init__(self, stop_at: str | None) -> None:
        self.lines: list[str] = []
        self._partial = ""
        self._stop_at = re.compile(stop_at) if stop_at else None
        self.stopped = False

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._partial += text
        *complete, self._partial = self._partial.split("\n")
        for line in complete:
            self.lines.append(line)
            if self._stop_at is not None and not self.stopped and self._stop_at.fullmatch(line):
                self.stopped = True
                raise BlockStopped(line)
        return len(text)

    def finish(self) -> None:
        if self._partial:
            self.lines.append(self._partial)
            self._partial = ""


def _install_address_map(addresses: dict[str, list[Any]]) -> None:
    targets = {key: (host, int(port)) for key, (host, port) in addresses.items()}

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        target = targets.get(f"{name}:{port}")
        if target is None:
            return _real_getaddrinfo(host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", target)]

    socket.getaddrinfo = getaddrinfo


def _only_stops(exc: BaseException) -> bool:
    """Whether ``exc`` is a BlockStopped, or a group of nothing else (from a nursery)."""
    if isinstance(exc, BlockStopped):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_stops(inner) for inner in exc.exceptions)
    return False


def _run_code(
    source: str, filename: str, namespace: dict[str, Any], timeout: float, event_loop: str
) -> None:
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    code = compile(source, filename, "exec", flags=flags, dont_inherit=True)
    if not code.co_flags & inspect.CO_COROUTINE:
        exec(code, namespace)
        return
    if event_loop == "asyncio":
        asyncio.run(asyncio.wait_for(eval(code, namespace), timeout))
        return
    assert event_loop == "trio", event_loop

    async def run_async() -> None:
        with trio.fail_after(timeout):
            await eval(code, namespace)

    trio.run(run_async)


def _run_block(block: dict[str, Any], namespace: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run a block's ``given`` code, the block and its ``check`` code, capturing stdout."""
    name = block["name"]
    capture = _Capture(block.get("stop_at"))
    steps = [
        (block.get("given") or "", f"<given for {name}>"),
        (block["code"], name),
        (block.get("check") or "", f"<check for {name}>"),
    ]
    error = None
    grouped = False
    real_stdout = sys.stdout
    sys.stdout = capture
    try:
        for source, filename in steps:
            if source:
                _run_code(source, filename, namespace, timeout, block.get("event_loop", "trio"))
    except BaseException as exc:  # reported to the test, whatever it is
        if not (capture.stopped and _only_stops(exc)):
            error = "".join(traceback.format_exception(exc))
        grouped = isinstance(exc, BaseExceptionGroup)
    finally:
        sys.stdout = real_stdout
        capture.finish()
    return {
        "name": name,
        "error": error,
        "lines": capture.lines,
        "stopped": capture.stopped,
        "grouped": grouped,  # the stop came out wrapped in an exception group
    }


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    # A block that hangs outside Trio (the sync API) is not under fail_after: say where it is.
    faulthandler.dump_traceback_later(job["page_timeout"], exit=True)
    _install_address_map(job["addresses"])
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
    results = []
    failed = False
    for block in job["blocks"]:
        outcome = _run_block(block, namespace, job["block_timeout"])
        results.append(outcome)
        Path(argv[2]).write_text(json.dumps(results), encoding="utf-8")
        if outcome["error"] is not None:
            failed = True
            break  # later blocks build on this one
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
