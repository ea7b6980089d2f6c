"""Start a private mosquitto for one measurement.

Uses ``trio_mqtt.testing.MosquittoBroker`` when the package provides it; until then a small
launcher of our own with the same shape (``start()``, ``stop()``, ``host``, ``port``,
``pid``). Every benchmark broker is anonymous, keeps nothing on disk, has no limit on
inflight or queued messages (0 = unlimited) and sets TCP_NODELAY on its sockets.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

BENCH_CONFIG = [
    "persistence false",
    "max_inflight_messages 0",
    "max_queued_messages 0",
    "set_tcp_nodelay true",
]


def find_mosquitto() -> str:
    """Path of the mosquitto binary (PATH first, then the usual sbin folders)."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for folder in ("/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin"):
        candidate = os.path.join(folder, "mosquitto")
        if os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Broker:
    """A mosquitto child process on a free 127.0.0.1 port."""

    def __init__(self, extra_config: list[str]) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self._extra = extra_config
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        for _ in range(5):
            self.port = _free_port()
            self._dir = tempfile.TemporaryDirectory(prefix="bench-mosquitto-")
            conf = os.path.join(self._dir.name, "mosquitto.conf")
            lines = [f"listener {self.port} {self.host}", "allow_anonymous true", *self._extra]
            with open(conf, "w") as f:
                f.write("\n".join(lines) + "\n")
            self._proc = subprocess.Popen(
                [find_mosquitto(), "-c", conf],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if self._wait_ready():
                return
            self.stop()
        raise RuntimeError("mosquitto did not start")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                return False
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), 1):
                return True
            time.sleep(0.01)
        return False

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


def broker_version() -> str:
    """mosquitto's version string, e.g. ``2.0.11``."""
    out = subprocess.run(
        [find_mosquitto(), "-h"], capture_output=True, text=True, timeout=10, check=False
    ).stdout
    first = out.splitlines()[0] if out else ""
    return first.rsplit(" ", 1)[-1] if first else "unknown"


@contextlib.contextmanager
def running_broker() -> Iterator[Any]:
    """Run one benchmark broker for the duration of the block."""
    broker = _Broker(BENCH_CONFIG)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
