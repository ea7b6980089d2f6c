"""``trio-mqtt pub``: publish messages, like mosquitto_pub.

The payload comes from exactly one of ``-m`` (the text), ``-f`` (a file's bytes), ``-s`` (all of
standard input), ``-l`` (one message per line of standard input) or ``-n`` (empty). Every
message is published with a tracker, and a checker task waits for the trackers in order, so
many messages are in flight at once (pipelined) while the exit code still says whether the
broker took every one of them: QoS 0 counts once written, QoS 1 on PUBACK, QoS 2 on PUBCOMP.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator, Callable
from typing import IO

import trio

from trio_mqtt import (
    InvalidOptionError,
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
from ._output import Console
from ._properties import PropertySet

__all__ = ["add_pub_parser", "run_pub"]

#: Trackers the checker may lag behind the publisher before publishing waits.
PIPELINE_DEPTH = 1000
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


async def _stdin_lines() -> AsyncIterator[bytes]:
    """Lines of standard input without their ``\\n``, read in a worker thread.

    As in mosquitto_pub, only the ``\\n`` goes: a ``\\r`` before it stays in the message.

    Input is read in chunks of up to 64 KiB (``read1`` returns whatever is available, so a
    line typed on a terminal is sent at once), then split; a last line without a newline
    counts too.
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
        for line in lines:
            yield line
    if pending:
        yield pending


class _Checker:
    """Waits for publish trackers in order and remembers the first rejection."""

    def __init__(self, console: Console, debug: bool) -> None:
        self.send, self._receive = trio.open_memory_channel[tuple[int, Tracker[PublishResult]]](
            PIPELINE_DEPTH
        )
        self._console = console
        self._debug = debug
        self.published = 0
        self.rejected = 0
        self.first_rejection = ""

    async def run(self) -> None:
        async with self._receive:
            async for number, tracker in self._receive:
                result = await tracker.wait()
                self.published += 1
                if not result.is_success:
                    self.rejected += 1
                    description = _describe_rejection(number, result)
                    if not self.first_rejection:
                        self.first_rejection = description
                    if self._debug:
                        self._console.err(description)
                elif self._debug:
                    self._console.err(
                        f"message {number} acknowledged (packet id {result.packet_id})"
                    )


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
    checker = _Checker(console, args.debug)
    async with open_mqtt_connection(options) as conn, trio.open_nursery() as nursery:
        client = conn.client
        nursery.start_soon(checker.run)
        async with checker.send:
            number = 0
            if payload is None:
                async for line in _stdin_lines():
                    number += 1
                    tracker = await client.publish_tracked(
                        args.topic, line, args.qos, args.retain, properties=properties
                    )
                    await checker.send.send((number, tracker))
            else:
                for number in range(1, args.repeat + 1):
                    if number > 1 and args.interval:
                        await trio.sleep(args.interval)
                    tracker = await client.publish_tracked(
                        args.topic, payload, args.qos, args.retain, properties=properties
                    )
                    await checker.send.send((number, tracker))
        disconnect = PropertySet(args.properties).get("disconnect")
        if disconnect:
            await client.disconnect(properties=disconnect)
    if args.debug:
        console.err(f"published {checker.published} message(s)")
    if checker.rejected:
        raise CliError(
            ExitCode.REJECTED,
            f"the broker rejected {checker.rejected} of {checker.published} message(s) "
            f"(first: {checker.first_rejection})",
        )
    return ExitCode.OK
