"""``trio-mqtt pub``: publish messages, like mosquitto_pub.

The payload comes from exactly one of ``-m`` (the text), ``-f`` (a file's bytes), ``-s`` (all of
standard input), ``-l`` (one message per line of standard input) or ``-n`` (empty). Messages
take the client's fast path (``publish_tracked_nowait``, awaiting only when the queue is full),
so many are in flight at once while the exit code still says whether the broker took every one
of them: QoS 0 counts once written, QoS 1 on PUBACK, QoS 2 on PUBCOMP (see :class:`_Publisher`).
A long run on a terminal shows its progress on standard error.
"""

from __future__ import annotations

import argparse
import sys
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import IO

import trio

from trio_mqtt import (
    InvalidOptionError,
    MqttConnection,
    Properties,
    ProtocolVersion,
    PublishResult,
    QoS,
    ReasonCode,
    Tracker,
    open_mqtt_connection,
)
from trio_mqtt.sansio import validate_topic

from ._connect import non_negative_float, options_from_args, positive_int, qos_value, url_topic
from ._exit import CliError, ExitCode
from ._output import Console, ProgressBar
from ._properties import PropertySet

__all__ = ["add_pub_parser", "run_pub"]

#: MQTT 5: trackers that may be pending before publishing waits for the oldest.
PIPELINE_DEPTH = 1000
#: Seconds before a long run starts drawing its progress line (on a terminal only).
PROGRESS_AFTER = 1.0
STDIN_CHUNK = 65536


def add_pub_parser(parser: argparse.ArgumentParser) -> None:
    """The ``pub`` command's own flags."""
    parser.add_argument("-t", "--topic", help="topic to publish to (or the path of -L)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("-m", "--message", help="the payload, as text (UTF-8)")
    source.add_argument("-f", "--file", help="send the bytes of this file as one message")
    source.add_argument(
        "-s", "--stdin-file", action="store_true", help="send all of standard input as one message"
    )
    source.add_argument(
        "-l",
        "--stdin-line",
        action="store_true",
        help="send each line of standard input as a message (without its newline)",
    )
    source.add_argument(
        "-n", "--null-message", action="store_true", help="send an empty (zero-length) message"
    )
    parser.add_argument(
        "-q",
        "--qos",
        type=qos_value,
        default=QoS.AT_MOST_ONCE,
        metavar="{0,1,2}",
        help="QoS (default 0)",
    )
    parser.add_argument("-r", "--retain", action="store_true", help="retain the message")
    parser.add_argument(
        "--repeat", type=positive_int, default=1, metavar="N", help="publish the message N times"
    )
    parser.add_argument(
        "--repeat-delay",
        "--interval",
        dest="interval",
        type=non_negative_float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long between repeats (default 0; --interval is the old name)",
    )
    parser.add_argument(
        "-d", "--debug", action="store_true", help="report each acknowledgement on stderr"
    )
    v5 = parser.add_argument_group("MQTT 5 message properties (need -V 5)")
    v5.add_argument(
        "--user-property",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="add a user property (repeat for more)",
    )
    v5.add_argument("--content-type", help="content type, e.g. application/json")
    v5.add_argument(
        "--message-expiry",
        type=non_negative_int,
        metavar="SECONDS",
        help="the broker discards the message if undelivered after this long",
    )
    v5.add_argument("--response-topic", help="topic a responder should answer on")
    v5.add_argument("--correlation-data", help="correlation data (UTF-8 text)")
    v5.add_argument(
        "--utf8-payload",
        action="store_true",
        help="mark the payload as UTF-8 text (payload format indicator 1)",
    )


def non_negative_int(text: str) -> int:
    """argparse type for a whole number from 0 to 2**32 - 1."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected a whole number of seconds, got {text!r}")
    return value


def message_properties(args: argparse.Namespace, version: ProtocolVersion) -> Properties | None:
    """The MQTT 5 properties the flags (and ``-D publish ...``) ask for (None when none).

    Raises:
        InvalidOptionError: properties were asked for with MQTT 3.1.1, which cannot carry them.
    """
    given: dict[str, object] = {}
    from_d = PropertySet(args.properties).get("publish")
    for name in from_d.__dataclass_fields__:
        value = getattr(from_d, name)
        if value is not None and value != ():
            given[name] = value
    if args.user_property:
        given["user_properties"] = (
            *from_d.user_properties,
            *((name, value) for name, value in args.user_property),
        )
    if args.content_type is not None:
        given["content_type"] = args.content_type
    if args.message_expiry is not None:
        given["message_expiry_interval"] = args.message_expiry
    if args.response_topic is not None:
        validate_topic(args.response_topic)
        given["response_topic"] = args.response_topic
    if args.correlation_data is not None:
        given["correlation_data"] = args.correlation_data.encode("utf-8")
    if args.utf8_payload:
        given["payload_format_indicator"] = 1
    if not given:
        return None
    if version is not ProtocolVersion.V5:
        raise InvalidOptionError("message properties need MQTT 5: add -V 5")
    return Properties(**given)  # type: ignore[arg-type]


def _stdin_binary() -> IO[bytes]:
    stdin = sys.stdin
    buffer = getattr(stdin, "buffer", None)
    if buffer is None:
        raise CliError(ExitCode.USAGE, "standard input is not available")
    return buffer  # type: ignore[no-any-return]


def _fixed_payload(args: argparse.Namespace) -> bytes | None:
    """The one payload of -m/-f/-s/-n, read before connecting; None for -l."""
    if args.message is not None:
        return bytes(args.message.encode("utf-8", errors="surrogateescape"))
    if args.file is not None:
        try:
            with open(args.file, "rb") as handle:
                return handle.read()
        except OSError as exc:
            raise CliError(ExitCode.USAGE, f"cannot read {args.file!r}: {exc.strerror}") from exc
    if args.stdin_file:
        return _stdin_binary().read()
    if args.null_message:
        return b""
    return None


async def _stdin_lines() -> AsyncIterator[list[bytes]]:
    """Lines of standard input without their ``\\n``, read in a worker thread, in batches.

    As in mosquitto_pub, only the ``\\n`` goes: a ``\\r`` before it stays in the message.

    Input is read in chunks of up to 64 KiB (``read1`` returns whatever is available, so a
    line typed on a terminal is sent at once); each batch holds the complete lines of one
    read (none is held back waiting for more input); a last line without a newline counts too.
    """
    stdin = _stdin_binary()
    read: Callable[[int], bytes] = getattr(stdin, "read1", stdin.read)
    pending = b""
    while True:
        chunk = await trio.to_thread.run_sync(read, STDIN_CHUNK, abandon_on_cancel=True)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        if lines:
            yield lines
    if pending:
        yield [pending]


class _Publisher:
    """Publishes through the fast path and checks what the broker said.

    Each message goes out with ``publish_tracked_nowait`` (no scheduling pass), and only when
    the queue is full with the awaited ``publish_tracked`` (the backpressure). With MQTT 3.1.1
    nothing can be refused, and acknowledgements come back in the order of the messages
    (MQTT-4.6.0-2), so only the newest tracker is kept: when it is done, so are all before it.
    With MQTT 5 the broker may refuse any message, so every tracker is kept and read in order,
    at most PIPELINE_DEPTH of them pending at once.
    """

    def __init__(
        self,
        conn: MqttConnection,
        args: argparse.Namespace,
        properties: Properties | None,
        console: Console,
        total: int | None,
        version: ProtocolVersion,
    ) -> None:
        self._client = conn.client
        self._topic = args.topic
        self._qos = args.qos
        self._retain = args.retain
        self._properties = properties
        self._console = console
        self._debug = args.debug
        self._keep_all = version is ProtocolVersion.V5 or args.debug
        self._pending: deque[tuple[int, Tracker[PublishResult]]] = deque()
        self._last: tuple[int, Tracker[PublishResult]] | None = None
        self.published = 0
        self.rejected = 0
        self.first_rejection = ""
        self._progress = ProgressBar(console, total) if console.err_is_tty else None
        self._start = trio.current_time()
        self._next_draw = self._start + PROGRESS_AFTER

    async def publish(self, payload: bytes, *, track: bool) -> None:
        """Hand one message to the session (waiting only while the queue is full).

        ``track``: the last message of a batch, whose tracker vouches for those before it.
        """
        client = self._client
        if not (track or self._keep_all):
            try:
                client.publish_nowait(
                    self._topic, payload, self._qos, self._retain, properties=self._properties
                )
            except trio.WouldBlock:
                await client.publish(
                    self._topic, payload, self._qos, self._retain, properties=self._properties
                )
            self.published += 1
            self._show_progress()
            return
        try:
            tracker = client.publish_tracked_nowait(
                self._topic, payload, self._qos, self._retain, properties=self._properties
            )
        except trio.WouldBlock:
            tracker = await client.publish_tracked(
                self._topic, payload, self._qos, self._retain, properties=self._properties
            )
        self.published += 1
        entry = (self.published, tracker)
        if self._keep_all:
            self._pending.append(entry)
            if len(self._pending) >= PIPELINE_DEPTH:
                await self._settle(*self._pending.popleft())
        else:
            self._last = entry
        self._show_progress()

    def _show_progress(self) -> None:
        if self._progress is not None and not self.published % 1000:
            now = trio.current_time()
            if now >= self._next_draw:
                self._next_draw = now + 0.2
                self._progress.update(self.published, now - self._start, "published")

    async def finish(self) -> None:
        """Wait until the broker has every message; report on the progress line."""
        while self._pending:
            await self._settle(*self._pending.popleft())
        if self._last is not None:
            await self._settle(*self._last)
        if self._progress is not None and self.published >= 1000:
            elapsed = trio.current_time() - self._start
            self._progress.update(self.published, elapsed, "published", final=True)
            self._progress.finish()

    async def _settle(self, number: int, tracker: Tracker[PublishResult]) -> None:
        result = await tracker.wait()
        if not result.is_success:
            self.rejected += 1
            description = _describe_rejection(number, result)
            if not self.first_rejection:
                self.first_rejection = description
            if self._debug:
                self._console.err(description)
        elif self._debug:
            self._console.err(f"message {number} acknowledged (packet id {result.packet_id})")


def _describe_rejection(number: int, result: PublishResult) -> str:
    try:
        name = f" {ReasonCode(result.reason_code).name}"
    except ValueError:
        name = ""
    reason = result.properties.reason_string
    detail = f": {reason}" if reason else ""
    return f"message {number} rejected with 0x{result.reason_code:02x}{name}{detail}"


async def run_pub(args: argparse.Namespace, console: Console) -> int:
    """Run ``trio-mqtt pub``; returns the exit code."""
    if args.url is not None:
        _, topic = url_topic(args.url)
        if topic is not None and args.topic is None:
            args.topic = topic
    if args.topic is None:
        raise CliError(ExitCode.USAGE, "give the topic to publish to: -t TOPIC (or -L URL/topic)")
    validate_topic(args.topic)
    if args.stdin_line and args.repeat != 1:
        raise CliError(ExitCode.USAGE, "--repeat cannot be combined with -l")
    payload = _fixed_payload(args)
    options = options_from_args(args, "pub")
    properties = message_properties(args, options.protocol_version)
    total = None if payload is None else args.repeat
    async with open_mqtt_connection(options) as conn:
        publisher = _Publisher(conn, args, properties, console, total, options.protocol_version)
        if payload is None:
            async for lines in _stdin_lines():
                for line in lines[:-1]:
                    await publisher.publish(line, track=False)
                await publisher.publish(lines[-1], track=True)
        else:
            last = args.repeat - 1
            for number in range(args.repeat):
                if number and args.interval:
                    await trio.sleep(args.interval)
                await publisher.publish(payload, track=number == last or bool(args.interval))
        await publisher.finish()
        disconnect = PropertySet(args.properties).get("disconnect")
        if disconnect:
            await conn.client.disconnect(properties=disconnect)
    if args.debug:
        console.err(f"published {publisher.published} message(s)")
    if publisher.rejected:
        raise CliError(
            ExitCode.REJECTED,
            f"the broker rejected {publisher.rejected} of {publisher.published} message(s) "
            f"(first: {publisher.first_rejection})",
        )
    return ExitCode.OK
