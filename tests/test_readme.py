"""The README's example runs against a real broker, so it cannot rot."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from trio_mqtt.testing import MosquittoBroker

README = Path(__file__).parent.parent / "README.md"


def test_readme_example_runs(mosquitto: MosquittoBroker) -> None:
    match = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert match is not None
    code = match.group(1)
    assert '"localhost", 1883' in code
    code = code.replace('"localhost", 1883', f'"{mosquitto.host}", {mosquitto.port}')
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hello/trio b'hi'"
