"""Writing to the terminal: message lines, JSON records and the bench progress bar.

Payloads are bytes and are written to standard output as bytes, untouched, one message per line
(as mosquitto_sub does). Every line is flushed at once so that a pipe (``trio-mqtt sub ... |
while read line``) sees messages as they arrive. Errors and progress go to standard error.
"""

from __future__ import annotations

import base64
import dataclasses
import sys
from typing import IO, Any

from trio_mqtt import Properties, Publish

__all__ = ["Console", "ProgressBar", "message_record", "properties_record"]


class Console:
    """The streams a command writes to (the process's own, looked up when it is created)."""

    def __init__(self, stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> None:
        self.stdout = stdout if stdout is not None else sys.stdout
        self.stderr = stderr if stderr is not None else sys.stderr
        #: ``--quiet``: error and warning lines are not written.
        self.quiet = False

    def write_bytes(self, data: bytes) -> None:
        """Write raw bytes to standard output and flush."""
        buffer = getattr(self.stdout, "buffer", None)
        if buffer is not None:
            self.stdout.flush()
            buffer.write(data)
            buffer.flush()
        else:
            self.stdout.write(data.decode("utf-8", errors="replace"))
            self.stdout.flush()

    def out(self, text: str = "") -> None:
        """Write one line of text to standard output."""
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def err(self, text: str) -> None:
        """Write one line to standard error (nothing with ``--quiet``)."""
        if self.quiet:
            return
        self.stderr.write(text + "\n")
        self.stderr.flush()

    @property
    def err_is_tty(self) -> bool:
        """Whether standard error is a terminal (progress bars are drawn only then)."""
        isatty = getattr(self.stderr, "isatty", None)
        try:
            return bool(isatty and isatty())
        except ValueError:  # a closed stream
            return False


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, tuple):
        return [_json_value(item) for item in value]
    return value


def properties_record(properties: Properties) -> dict[str, Any]:
    """The properties that are set, as a JSON-ready dict (bytes as base64, pairs as lists)."""
    record: dict[str, Any] = {}
    for field in dataclasses.fields(properties):
        value = getattr(properties, field.name)
        if value is None or value == ():
            continue
        record[field.name] = _json_value(value)
    return record


def message_record(message: Publish) -> dict[str, Any]:
    """One received message as the JSON object ``sub --json`` prints.

    Keys: ``topic``, ``payload`` (the text when the payload is valid UTF-8, else base64),
    ``encoding`` (``"utf-8"`` or ``"base64"``), ``qos``, ``retain`` and ``properties`` (the MQTT
    5 properties that are set; always ``{}`` with MQTT 3.1.1).
    """
    try:
        payload = message.payload.decode("utf-8")
        encoding = "utf-8"
    except UnicodeDecodeError:
        payload = base64.b64encode(message.payload).decode("ascii")
        encoding = "base64"
    return {
        "topic": message.topic,
        "payload": payload,
        "encoding": encoding,
        "qos": int(message.qos),
        "retain": message.retain,
        "properties": properties_record(message.properties),
    }


def message_json(message: Publish) -> str:
    """:func:`message_record` as one line of JSON."""
    import json  # only ``sub --json`` needs it: pub starts without it

    return json.dumps(message_record(message), ensure_ascii=False, separators=(",", ":"))


class ProgressBar:
    """Progress of a long run on standard error.

    On a terminal it redraws one line in place; otherwise (a pipe, a CI log) it writes a plain
    line at most every ``plain_interval`` seconds, so logs stay readable.
    """

    WIDTH = 30

    def __init__(self, console: Console, total: int | None, *, plain_interval: float = 1.0) -> None:
        self._console = console
        self._total = max(total, 1) if total is not None else None
        self._tty = console.err_is_tty
        self._plain_interval = plain_interval
        self._last_plain = -1.0
        self._drawn = False

    @property
    def is_tty(self) -> bool:
        """Whether the bar is drawn in place (standard error is a terminal)."""
        return self._tty

    def update(
        self, done: int, elapsed: float, label: str = "received", *, final: bool = False
    ) -> None:
        """Show ``done`` of the total after ``elapsed`` seconds.

        Plain lines are rate-limited, except the ``final`` one, which is always written.
        """
        rate = done / elapsed if elapsed > 0 else 0.0
        if self._total is None:  # an open-ended run: a count and a rate
            if self._tty:
                self._console.stderr.write(f"\r{done:,} {label}  {rate:,.0f} msg/s\x1b[K")
                self._console.stderr.flush()
                self._drawn = True
            return
        fraction = min(done / self._total, 1.0)
        if self._tty:
            filled = int(fraction * self.WIDTH)
            bar = "#" * filled + "." * (self.WIDTH - filled)
            text = f"\r[{bar}] {fraction:4.0%} {done}/{self._total} {label}  {rate:,.0f} msg/s"
            self._console.stderr.write(text + "\x1b[K")
            self._console.stderr.flush()
            self._drawn = True
        elif final or self._last_plain < 0 or elapsed - self._last_plain >= self._plain_interval:
            self._last_plain = elapsed
            self._console.err(
                f"progress: {done}/{self._total} {label} ({fraction:.0%}) {rate:,.0f} msg/s"
            )

    def finish(self) -> None:
        """End the bar's line (on a terminal) so later output starts on a fresh line."""
        if self._tty and self._drawn:
            self._console.stderr.write("\n")
            self._console.stderr.flush()
            self._drawn = False
