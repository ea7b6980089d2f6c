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

import trio

from trio_mqtt import ConnectionLost, Publish, QoS, ReconnectPolicy, open_mqtt_connection
from trio_mqtt.sansio import validate_filter

from ._connect import describe_broker, options_from_args, positive_float, positive_int, qos_value
from ._exit import CliError, ExitCode
from ._output import Console, message_json

__all__ = ["add_sub_parser", "run_sub"]

#: Backoff between reconnection attempts with ``--reconnect``.
RECONNECT_POLICY = ReconnectPolicy(initial_delay=0.2, max_delay=30.0)


def add_sub_parser(parser: argparse.ArgumentParser) -> None:
    """The ``sub`` command's own flags."""
    parser.add_argument(
        "-t",
        "--topic",
        action="append",
        required=True,
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
        "-W",
        "--timeout",
        type=positive_float,
        metavar="SECONDS",
        help="give up after this many seconds (exit code 4)",
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


def format_message(message: Publish, args: argparse.Namespace) -> bytes:
    """The output line (with its newline) for one message."""
    if args.json:
        return (message_json(message) + "\n").encode("utf-8")
    if args.verbose:
        return message.topic.encode("utf-8") + b" " + message.payload + b"\n"
    return message.payload + b"\n"


async def _subscribe_and_print(args: argparse.Namespace, console: Console) -> int:
    options = options_from_args(args, "sub")
    received = 0
    async with open_mqtt_connection(options) as conn:
        if args.debug:
            console.err(f"connected to {describe_broker(options)} as {options.client_id!r}")
        result = await conn.client.subscribe_many([(topic, args.qos) for topic in args.topic])
        for topic, code in zip(args.topic, result.reason_codes, strict=False):
            if code >= 0x80:
                console.err(f"trio-mqtt: warning: subscription to {topic!r} refused (0x{code:02x})")
            elif args.debug:
                console.err(f"subscribed to {topic!r} (granted QoS {code})")
        if not any(code < 0x80 for code in result.reason_codes):
            raise CliError(ExitCode.REJECTED, "the broker refused every subscription")
        attempt = 0
        while True:
            try:
                async for message in conn.messages():
                    attempt = 0
                    console.write_bytes(format_message(message, args))
                    received += 1
                    if args.count is not None and received >= args.count:
                        return received
                return received
            except ConnectionLost as exc:
                if not args.reconnect:
                    raise
                delay = RECONNECT_POLICY.delay(attempt)
                attempt += 1
                console.err(f"trio-mqtt: warning: {exc}; reconnecting in {delay:.1f} s")
                await trio.sleep(delay)
                # the next poll() (inside messages()) reconnects; the session's
                # subscriptions are restored if the broker lost them


async def run_sub(args: argparse.Namespace, console: Console) -> int:
    """Run ``trio-mqtt sub``; returns the exit code."""
    for topic in args.topic:
        validate_filter(topic)
    if args.timeout is None:
        await _subscribe_and_print(args, console)
        return ExitCode.OK
    with trio.move_on_after(args.timeout) as scope:
        await _subscribe_and_print(args, console)
    if scope.cancelled_caught:
        raise CliError(ExitCode.UNREACHABLE, f"timed out after {args.timeout:g} s (-W)")
    return ExitCode.OK
