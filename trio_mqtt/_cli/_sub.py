"""``trio-mqtt sub``: subscribe and print messages, like mosquitto_sub.

The command subscribes to every ``-t`` filter in one SUBSCRIBE, then prints each message as it
arrives: the payload alone, ``topic payload`` with ``-v``, or one JSON object per line with
``--json``. ``-C`` stops after that many messages (exit 0), ``-W`` stops after that many seconds
(exit 4, like a timeout, so that a script can tell "got them all" from "gave up"). A lost
connection ends the command with exit code 4, unless ``--reconnect`` asks to carry on: then the
connection error is reported, and after a backoff delay the next read reconnects (the library's
``poll()`` semantics), restoring the subscriptions if the broker lost them.
"""

from __future__ import annotations

import argparse
import math
import random
from typing import TYPE_CHECKING

import trio

from trio_mqtt import (
    ConnectionLost,
    MqttConnection,
    Publish,
    QoS,
    ReconnectPolicy,
    RetainHandling,
    Subscription,
    open_mqtt_connection,
    topic_matches,
)
from trio_mqtt.sansio import validate_filter

from ._connect import (
    describe_broker,
    options_from_args,
    positive_float,
    positive_int,
    qos_value,
    url_topic,
)
from ._exit import CliError, ExitCode
from ._output import Console, message_json
from ._properties import PropertySet

if TYPE_CHECKING:
    from ._format import Format

__all__ = ["add_sub_parser", "run_sub"]

#: Backoff between reconnection attempts with ``--reconnect``.
RECONNECT_POLICY = ReconnectPolicy(initial_delay=0.2, max_delay=30.0)


def add_sub_parser(parser: argparse.ArgumentParser) -> None:
    """The ``sub`` command's own flags."""
    parser.add_argument(
        "-t",
        "--topic",
        action="append",
        default=[],
        metavar="FILTER",
        help="topic filter to subscribe to (repeat for more)",
    )
    parser.add_argument(
        "-q",
        "--qos",
        type=qos_value,
        default=QoS.AT_MOST_ONCE,
        metavar="{0,1,2}",
        help="subscription QoS (default 0)",
    )
    parser.add_argument(
        "-C", "--count", type=positive_int, help="exit after receiving this many messages"
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument("-v", "--verbose", action="store_true", help="print 'topic payload'")
    output.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per message: topic, payload (UTF-8 text or base64), "
        "encoding, qos, retain, properties",
    )
    parser.add_argument(
        "-F",
        dest="format",
        metavar="FORMAT",
        help="print each message with mosquitto_sub's format string: %%t topic, %%p payload, "
        "%%q qos, %%r retain, %%l length, %%m packet id, %%x/%%X hex, %%I/%%U time, "
        "%%j/%%J JSON, @-codes for strftime, \\n-style escapes (see docs/cli.rst); "
        "it wins over -v and --json, as in mosquitto_sub",
    )
    parser.add_argument(
        "-N", dest="eol", action="store_false", help="do not print a newline after each message"
    )
    parser.add_argument("--pretty", action="store_true", help="indent the JSON of -F %%j and %%J")
    retained = parser.add_mutually_exclusive_group()
    retained.add_argument(
        "-R",
        dest="no_retained",
        action="store_true",
        help="do not print stale (retained) messages",
    )
    retained.add_argument(
        "--retained-only",
        action="store_true",
        help="print only retained messages; exit at the first one that is not",
    )
    parser.add_argument(
        "--remove-retained",
        action="store_true",
        help="clear each retained message received (not those filtered out by -T)",
    )
    parser.add_argument(
        "-T",
        "--filter-out",
        action="append",
        default=[],
        metavar="FILTER",
        help="do not print messages whose topic matches FILTER (repeat for more)",
    )
    parser.add_argument(
        "-U",
        "--unsubscribe",
        action="append",
        default=[],
        metavar="FILTER",
        help="unsubscribe from FILTER after subscribing (with -c, to edit a kept session)",
    )
    parser.add_argument(
        "-E",
        dest="exit_after_subscribe",
        action="store_true",
        help="exit once the broker has acknowledged the subscriptions",
    )
    parser.add_argument(
        "--random-filter",
        type=_chance,
        metavar="PERCENT",
        help="print only this percentage of the messages, chosen at random (0.1 to 100)",
    )
    parser.add_argument(
        "-W",
        "--timeout",
        type=positive_float,
        metavar="SECONDS",
        help="stop after this many seconds from connecting (exit code 27, as mosquitto_sub)",
    )
    parser.add_argument(
        "--reconnect",
        action="store_true",
        help="when the connection is lost, reconnect (with backoff) and subscribe again "
        "instead of exiting with code 4",
    )
    parser.add_argument(
        "-d",
        "--debug",
        action="store_true",
        help="report the subscription and connection events on stderr",
    )


def _chance(text: str) -> int:
    """``--random-filter``: a percentage (0.1 to 100), kept in hundredths of a percent.

    mosquitto_sub documents the same meaning; 2.0.11 multiplies by 10 where it means 100 and
    so prints about a tenth of the share asked for.
    """
    try:
        value = round(100.0 * float(text))
    except (ValueError, OverflowError):
        value = 0
    if not 10 <= value <= 10000:
        raise argparse.ArgumentTypeError(f"the chance must be from 0.1 to 100.0, got {text!r}")
    return value


class _Printer:
    """Turns messages into output the way mosquitto_sub does."""

    def __init__(self, args: argparse.Namespace, console: Console) -> None:
        self.console = console
        self._eol = b"\n" if args.eol else b""
        self._json = args.json
        self._verbose = args.verbose
        self._format: Format | None = None
        if args.format is not None:
            from ._format import FormatError, compile_format  # only -F needs it

            try:
                self._format = compile_format(args.format, pretty=args.pretty)
            except FormatError as exc:
                raise CliError(ExitCode.USAGE, f"-F: {exc}") from None
        self._chance = args.random_filter

    def print(self, message: Publish) -> None:
        if self._chance is not None and random.randrange(10000) >= self._chance:
            return
        self.console.write_bytes(self.render(message))

    def render(self, message: Publish) -> bytes:
        """The bytes printed for one message (empty: nothing is printed)."""
        if self._format is not None:
            text, error = self._format.render(message)
            if error is not None:
                self.console.err(error)
            return text + self._eol
        if self._json:
            return (message_json(message) + "\n").encode("utf-8")
        if self._verbose:
            if message.payload:
                return message.topic.encode("utf-8") + b" " + message.payload + self._eol
            # mosquitto_sub's wording for an empty message
            return message.topic.encode("utf-8") + b" (null)\n" if self._eol else b""
        return message.payload + self._eol if message.payload else b""


async def _subscribe(args: argparse.Namespace, conn: MqttConnection, console: Console) -> None:
    properties = PropertySet(args.properties)
    retain_handling = (
        RetainHandling.DO_NOT_SEND if args.no_retained else RetainHandling.SEND_ON_SUBSCRIBE
    )
    subscriptions = [
        Subscription(topic, QoS(args.qos), retain_handling=retain_handling) for topic in args.topic
    ]
    result = await conn.client.subscribe_many(
        subscriptions, properties=properties.get("subscribe") or None
    )
    for topic, code in zip(args.topic, result.reason_codes, strict=False):
        if code >= 0x80:
            console.err(f"trio-mqtt: warning: subscription to {topic!r} refused (0x{code:02x})")
        elif args.debug:
            console.err(f"subscribed to {topic!r} (granted QoS {code})")
    if not any(code < 0x80 for code in result.reason_codes):
        raise CliError(ExitCode.REJECTED, "the broker refused every subscription")
    if args.unsubscribe:
        await conn.client.unsubscribe_many(
            args.unsubscribe, properties=properties.get("unsubscribe") or None
        )
        if args.debug:
            console.err(f"unsubscribed from {', '.join(map(repr, args.unsubscribe))}")


async def _print_messages(
    args: argparse.Namespace, conn: MqttConnection, printer: _Printer
) -> None:
    console = printer.console
    received = 0
    attempt = 0
    client = conn.client
    while True:
        try:
            async for message in conn.messages():
                attempt = 0
                if args.retained_only and not message.retain:
                    return
                if message.retain and args.no_retained:
                    continue
                if any(topic_matches(message.topic, f) for f in args.filter_out):
                    continue
                if args.remove_retained and message.retain:
                    await client.publish(message.topic, b"", QoS.AT_LEAST_ONCE, retain=True)
                printer.print(message)
                received += 1
                if args.count is not None and received >= args.count:
                    return
            return
        except ConnectionLost as exc:
            if not args.reconnect:
                raise
            delay = RECONNECT_POLICY.delay(attempt)
            attempt += 1
            console.err(f"trio-mqtt: warning: {exc}; reconnecting in {delay:.1f} s")
            await trio.sleep(delay)
            # the next poll() (inside messages()) reconnects; the session's
            # subscriptions are restored if the broker lost them


async def _run(args: argparse.Namespace, printer: _Printer) -> bool:
    """Connect, subscribe and print; False when -W ran out."""
    console = printer.console
    options = options_from_args(args, "sub")
    properties = PropertySet(args.properties)
    async with open_mqtt_connection(options) as conn:
        if args.debug:
            console.err(f"connected to {describe_broker(options)} as {options.client_id!r}")
        # as mosquitto_sub, -W counts from the moment the connection is up
        with trio.move_on_after(args.timeout if args.timeout is not None else math.inf) as scope:
            await _subscribe(args, conn, console)
            if not args.exit_after_subscribe:
                await _print_messages(args, conn, printer)
        disconnect = properties.get("disconnect")
        if disconnect:
            await conn.client.disconnect(properties=disconnect)
    return not scope.cancelled_caught


async def run_sub(args: argparse.Namespace, console: Console) -> int:
    """Run ``trio-mqtt sub``; returns the exit code."""
    if args.url is not None:
        _, topic = url_topic(args.url)
        if topic is not None:
            args.topic.append(topic)
    if not args.topic:
        raise CliError(ExitCode.USAGE, "give a topic to subscribe to: -t FILTER (or -L URL/topic)")
    for topic in (*args.topic, *args.filter_out, *args.unsubscribe):
        validate_filter(topic)
    printer = _Printer(args, console)  # a bad -F is refused before connecting, as mosquitto_sub
    if not await _run(args, printer):
        raise CliError(ExitCode.TIMEOUT, "Timed out")
    return ExitCode.OK
