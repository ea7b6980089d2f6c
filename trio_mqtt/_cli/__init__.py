"""The ``trio-mqtt`` command-line tool (``python -m trio_mqtt``), built on the public API.

Commands: ``sub`` and ``pub`` (mosquitto_sub/mosquitto_pub workalikes), ``bench`` (throughput
and latency through a broker) and ``demo`` (a round trip that starts a broker if needed). See
``docs/cli.rst`` for the options and the exit codes.
"""

from __future__ import annotations

from ._app import build_parser as build_parser, main as main
from ._exit import ExitCode as ExitCode

__all__ = ["ExitCode", "build_parser", "main"]
