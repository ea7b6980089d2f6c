"""``trio-mqtt broker``: run the embedded broker (trio_mqtt.broker) until interrupted.

Theory of operation: ``--host``/``--port`` give one plain TCP listener (default
127.0.0.1:1883); ``-c FILE`` reads listeners, users, ACL and limits from an INI file (see
:mod:`trio_mqtt.broker`'s configuration page); both may be combined, the command-line listener
then comes first. Each listener's URL is printed once it listens. Ctrl-C or SIGTERM closes every
connection (MQTT 5 clients get DISCONNECT 0x8B) and exits.
"""

from __future__ import annotations

import argparse

import trio

from trio_mqtt.broker import (
    BrokerConfig,
    BrokerSettings,
    ConfigError,
    load_config,
    open_mqtt_broker,
)

from ._exit import CliError, ExitCode
from ._output import Console

__all__ = ["add_broker_parser", "run_broker"]

DEFAULT_PORT = 1883


def add_broker_parser(parser: argparse.ArgumentParser) -> None:
    """The ``broker`` command's flags (it has none of the client's connection flags)."""
    parser.add_argument(
        "-h", "--host", help="address of the TCP listener (127.0.0.1; -h is not help)"
    )
    parser.add_argument(
        "-p", "--port", type=int, help=f"port of the TCP listener ({DEFAULT_PORT}; 0 = any free)"
    )
    parser.add_argument(
        "-c", "--config", metavar="FILE", help="INI file: listeners, [auth], [limits]"
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        metavar="S",
        help="stop by itself after S seconds (for scripts and tests)",
    )
    parser.add_argument(
        "-d", "--debug", action="store_true", help="show the library's log on stderr"
    )


async def run_broker(args: argparse.Namespace, console: Console) -> int:
    """Run ``trio-mqtt broker``; returns the exit code once stopped."""
    settings = BrokerSettings(BrokerConfig(), [])
    if args.config is not None:
        try:
            settings = load_config(args.config)
        except ConfigError as exc:
            raise CliError(ExitCode.USAGE, str(exc)) from None
    listeners = settings.listeners
    port: int | None = args.port
    host = args.host or "127.0.0.1"
    if port is None and (args.host is not None or not listeners):
        port = DEFAULT_PORT
    if port is not None and not 0 <= port <= 65535:
        raise CliError(ExitCode.USAGE, f"--port {port} is not a port number")
    try:
        async with open_mqtt_broker(
            host,
            port,
            config=settings.config,
            listeners=listeners,
            persistence=settings.persistence,
            autosave_interval=settings.autosave_interval,
        ) as broker:
            for bound in broker.listeners:
                console.out(f"listening on {bound.url}")
            with trio.move_on_after(args.max_seconds if args.max_seconds else float("inf")):
                await trio.sleep_forever()
            stats = broker.statistics()
    except OSError as exc:
        raise CliError(ExitCode.UNREACHABLE, f"cannot listen: {exc}") from None
    console.out(
        f"stopped: {stats.messages_received} messages in, {stats.messages_sent} out, "
        f"{stats.messages_dropped} dropped"
    )
    return ExitCode.OK
