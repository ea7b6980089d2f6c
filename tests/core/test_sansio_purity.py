"""The sans-IO core must import without trio, sockets, ssl or a clock: the client state machine
and the broker (session per connection, router) alike."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import trio_mqtt

PACKAGE_DIR = Path(trio_mqtt.__file__).parent

# Runs in a fresh interpreter: trio, socket and ssl are made unimportable, and the parent
# package is replaced by a bare namespace so that only trio_mqtt._core's own imports run.
SCRIPT = f"""
import sys, types
for name in ("trio", "socket", "ssl", "trio_websocket", "time"):
    sys.modules[name] = None
parent = types.ModuleType("trio_mqtt")
parent.__path__ = [{str(PACKAGE_DIR)!r}]
sys.modules["trio_mqtt"] = parent
import pkgutil, importlib
import trio_mqtt._core as core
for info in pkgutil.iter_modules(core.__path__):
    importlib.import_module("trio_mqtt._core." + info.name)
loaded = sorted(m for m in sys.modules if m.startswith("trio_mqtt._core"))
print(" ".join(loaded))
"""


def test_core_imports_without_io_modules() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    loaded = result.stdout.split()
    assert len(loaded) >= 5
    for module in ("_state", "_broker", "_router", "_codec", "_topics"):
        assert f"trio_mqtt._core.{module}" in loaded
