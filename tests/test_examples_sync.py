"""The sync API examples run against a private mosquitto and print what they promise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import trio_mqtt
from trio_mqtt.testing import MosquittoBroker

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
PACKAGE_ROOT = str(Path(trio_mqtt.__file__).resolve().parent.parent)


def run_example(name: str, *args: str, env: dict[str, str] | None = None) -> list[str]:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "PYTHONPATH": PACKAGE_ROOT, **(env or {})},
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout.splitlines()


def test_sync_pubsub(mosquitto: MosquittoBroker) -> None:
    lines = run_example("sync_pubsub.py", mosquitto.url)
    assert lines == [
        *(f"received trio-mqtt/examples/sync-pubsub/{n}: message {n}" for n in range(5)),
        "done: 5 messages",
    ]


def test_sync_recv_takes_the_url_from_the_environment(mosquitto: MosquittoBroker) -> None:
    lines = run_example("sync_recv.py", env={"MQTT_URL": mosquitto.url})
    assert lines == [
        "recv: Outgoing CONNECT",
        "try_recv: Incoming ConnAck",
        "try_recv: nothing buffered",
        "recv_timeout: no event within 0.5 s",
        "recv_timeout: message on trio-mqtt/examples/sync-recv: b'hello'",
    ]
