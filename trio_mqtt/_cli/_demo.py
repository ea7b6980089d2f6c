"""``trio-mqtt demo``: a real publish/subscribe round trip, with a broker found or started.

Theory of operation: the broker is the one named by ``--url`` or ``-h``/``-p`` if given;
otherwise whatever answers on localhost:1883; otherwise the embedded broker
(:func:`trio_mqtt.broker.open_mqtt_broker`) started in this process on a free loopback port and
stopped at the end, so nothing needs to be installed.

The demo then subscribes to a private topic tree at QoS 2, publishes one message at each QoS
with a tracker (so it can show the broker's acknowledgement), waits for the three messages to
come back, and finishes with a short benchmark figure.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import socket

import trio

from trio_mqtt import MqttError, MqttOptions, QoS, open_mqtt_connection
from trio_mqtt.broker import open_mqtt_broker

from ._bench import run_benchmark
from ._connect import describe_broker, options_from_args, positive_int
from ._exit import CliError, ExitCode, classify
from ._output import Console

__all__ = ["add_demo_parser", "run_demo"]

#: Where the demo looks for a broker that is already running.
LOCAL_HOST = "127.0.0.1"
LOCAL_PORT = 1883
PROBE_TIMEOUT = 0.5
RECEIVE_TIMEOUT = 10.0

_ACK_NAMES = {0: "written to the socket", 1: "PUBACK received", 2: "PUBREC/PUBREL/PUBCOMP done"}


def add_demo_parser(parser: argparse.ArgumentParser) -> None:
    """The ``demo`` command's own flags."""
    parser.add_argument(
        "--private-broker",
        action="store_true",
        help="always start the embedded broker instead of using one on localhost:1883",
    )
    parser.add_argument(
        "--bench-count",
        type=positive_int,
        default=2000,
        metavar="N",
        help="messages in the closing benchmark (2000)",
    )
    parser.add_argument(
        "-d", "--debug", action="store_true", help="show the library's log on stderr"
    )


def something_listens(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether a TCP connection to ``host:port`` succeeds (blocking; run it in a thread)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _broker_given(args: argparse.Namespace) -> bool:
    return args.url is not None or args.host is not None or args.port is not None


async def _choose_broker(
    args: argparse.Namespace, console: Console, stack: contextlib.AsyncExitStack
) -> MqttOptions:
    """Options for the broker to use, starting a private one if needed (closed by ``stack``)."""
    if _broker_given(args):
        return options_from_args(args, "demo")
    if not args.private_broker:
        if await trio.to_thread.run_sync(something_listens, LOCAL_HOST, LOCAL_PORT):
            console.out(f"using the broker that answers on {LOCAL_HOST}:{LOCAL_PORT}")
            args.host, args.port = LOCAL_HOST, LOCAL_PORT
            return options_from_args(args, "demo")
        console.out(f"nothing answers on {LOCAL_HOST}:{LOCAL_PORT}")
    broker = await stack.enter_async_context(open_mqtt_broker("127.0.0.1", 0))
    console.out(f"started the embedded broker (trio_mqtt.broker) on {broker.host}:{broker.port}")
    args.host, args.port = broker.host, broker.port
    return options_from_args(args, "demo")


async def _round_trip(options: MqttOptions, console: Console) -> None:
    prefix = f"trio-mqtt/demo/{secrets.token_hex(4)}"
    async with open_mqtt_connection(options) as conn:
        client = conn.client
        version = "5.0" if options.protocol_version == 5 else "3.1.1"
        console.out(f"connected to {describe_broker(options)} with MQTT {version}")
        result = await client.subscribe(f"{prefix}/#", QoS.EXACTLY_ONCE)
        console.out(f"subscribed to {prefix}/# (granted QoS {result.reason_codes[0]})")
        for qos in QoS:
            payload = f"hello at QoS {int(qos)}"
            tracker = await client.publish_tracked(f"{prefix}/qos{int(qos)}", payload, qos)
            answer = await tracker.wait()
            if not answer.is_success:
                raise CliError(
                    ExitCode.REJECTED,
                    f"the broker rejected the QoS {int(qos)} message (0x{answer.reason_code:02x})",
                )
            console.out(f"published {payload!r} to {prefix}/qos{int(qos)}: {_ACK_NAMES[qos]}")
        received = 0
        with trio.move_on_after(RECEIVE_TIMEOUT) as scope:
            async for message in conn.messages():
                console.out(
                    f"received  {message.payload.decode(errors='replace')!r} on {message.topic} "
                    f"(QoS {int(message.qos)})"
                )
                received += 1
                if received == len(QoS):
                    break
        if scope.cancelled_caught:
            raise CliError(
                ExitCode.UNREACHABLE,
                f"only {received} of {len(QoS)} messages came back within {RECEIVE_TIMEOUT:g} s",
            )
    console.out("round trip complete: 3 messages out, 3 back")


async def run_demo(args: argparse.Namespace, console: Console) -> int:
    """Run ``trio-mqtt demo``; returns the exit code."""
    async with contextlib.AsyncExitStack() as stack:
        probed = not _broker_given(args) and not args.private_broker
        options = await _choose_broker(args, console, stack)
        probed = probed and options.port == LOCAL_PORT
        try:
            await _round_trip(options, console)
        except MqttError as exc:
            classified = classify(exc)
            if not probed or classified is None:
                raise
            raise CliError(
                classified[0],
                f"{classified[1]} (the demo used whatever answers on {LOCAL_HOST}:{LOCAL_PORT}; "
                f"run `trio-mqtt demo --private-broker` to use the embedded broker)",
            ) from exc
        result = await run_benchmark(
            options, qos=QoS.AT_LEAST_ONCE, count=args.bench_count, size=64, stall_timeout=10.0
        )
        if result.lost:
            raise CliError(
                ExitCode.UNREACHABLE,
                f"benchmark: {result.lost} of {result.count} messages did not arrive",
            )
        console.out(
            f"bench: {result.count} QoS 1 messages of 64 bytes: "
            f"{result.receive_rate:,.0f} msg/s, latency p50 {result.latency_p50 * 1000:.2f} ms, "
            f"p99 {result.latency_p99 * 1000:.2f} ms"
        )
        console.out("demo finished: everything worked")
    return ExitCode.OK
