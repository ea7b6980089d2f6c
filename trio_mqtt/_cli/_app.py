"""The ``trio-mqtt`` program: argument parsing, dispatch to a command, exit codes.

Each command is an async function ``run_X(args, console) -> int`` run under ``trio.run``.
Whatever escapes it is turned into an exit code and a single line on standard error by
:func:`trio_mqtt._cli._exit.classify`; argparse's own errors are made one line too (with a
pointer to ``--help``) and give exit code 2. ``-h`` means the broker host, as in the mosquitto
tools, so help is only ``--help``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

import trio

from ._connect import add_connection_arguments
from ._exit import EXIT_CODES_HELP, CliError, ExitCode, _leaf, classify
from ._output import Console
from ._properties import join_property_arguments

__all__ = ["build_parser", "main"]

Command = Callable[[argparse.Namespace, Console], Awaitable[int]]

DESCRIPTION = "A command-line MQTT client built on trio-mqtt (MQTT 3.1.1 and 5.0)."


def _lazy(module: str, name: str) -> Callable[..., Any]:
    """``module.name``, imported on first call: a command starts without the others' imports."""

    def call(*args: Any) -> Any:
        return getattr(importlib.import_module(module, __package__), name)(*args)

    return call


_COMMANDS: list[tuple[str, str, Callable[[argparse.ArgumentParser], None], Command]] = [
    (
        "sub",
        "subscribe and print messages",
        _lazy("._sub", "add_sub_parser"),
        _lazy("._sub", "run_sub"),
    ),
    ("pub", "publish messages", _lazy("._pub", "add_pub_parser"), _lazy("._pub", "run_pub")),
    (
        "bench",
        "measure throughput and latency through a broker",
        _lazy("._bench", "add_bench_parser"),
        _lazy("._bench", "run_bench"),
    ),
    (
        "demo",
        "a publish/subscribe round trip (starts a broker if needed)",
        _lazy("._demo", "add_demo_parser"),
        _lazy("._demo", "run_demo"),
    ),
]


#: Commands that are not MQTT clients, so they get none of the connection flags.
_SERVER_COMMANDS: list[tuple[str, str, Callable[[argparse.ArgumentParser], None], Command]] = [
    (
        "broker",
        "run the embedded MQTT broker until interrupted",
        _lazy("._broker", "add_broker_parser"),
        _lazy("._broker", "run_broker"),
    ),
]


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and raise instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise CliError(ExitCode.USAGE, f"{self.prog}: {message} (see {self.prog} --help)")


def _add_help(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--help", action="help", help="show this help and exit")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of the whole program (sub-commands sub, pub, bench, demo and broker).

    Args:
        command: build the options of this sub-command only (the one being run; the others
            keep their name and summary for ``--help``), so that starting ``pub`` does not
            import what ``bench`` needs. ``None`` builds all of them.
    """
    from trio_mqtt import __version__

    formatter = argparse.RawDescriptionHelpFormatter
    parser = _Parser(
        prog="trio-mqtt",
        description=DESCRIPTION,
        epilog=EXIT_CODES_HELP,
        formatter_class=formatter,
        add_help=False,
    )
    _add_help(parser)
    parser.add_argument("--version", action="version", version=f"trio-mqtt {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    commands.required = True
    every = [(entry, True) for entry in _COMMANDS]
    every += [(entry, False) for entry in _SERVER_COMMANDS]
    for (name, summary, add_arguments, handler), is_client in every:
        sub = commands.add_parser(
            name,
            help=summary,
            description=f"trio-mqtt {name}: {summary}.",
            epilog=EXIT_CODES_HELP,
            formatter_class=formatter,
            add_help=False,
        )
        _add_help(sub)
        if command is None or command == name:
            add_arguments(sub)
            if is_client:
                add_connection_arguments(sub)
        sub.set_defaults(handler=handler)
    return parser


@contextmanager
def _library_logging(debug: bool, console: Console) -> Iterator[None]:
    """Show the library's log on stderr with ``-d``; keep it quiet otherwise."""
    logger = logging.getLogger("trio_mqtt")
    handler: logging.Handler
    if debug:
        handler = logging.StreamHandler(console.stderr)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    else:
        handler = logging.NullHandler()
    old_level = logger.level
    logger.addHandler(handler)
    if debug:
        logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


class _Terminated(Exception):
    """SIGTERM arrived: the command was cancelled and cleaned up."""


async def _run_command(handler: Command, args: argparse.Namespace, console: Console) -> int:
    """Run the command; on SIGTERM cancel it (so brokers and connections are cleaned up).

    Signal handlers can only be installed from the main thread; elsewhere (tests that run
    ``main`` in a worker thread) the command simply runs.
    """
    if threading.current_thread() is not threading.main_thread():
        return await handler(args, console)
    result: list[int] = []
    terminated = False

    async def body(scope: trio.CancelScope) -> None:
        result.append(await handler(args, console))
        scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(body, nursery.cancel_scope)
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                terminated = True
                nursery.cancel_scope.cancel()
                break
    if terminated:
        raise _Terminated
    return result[0]


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the final flush cannot fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``trio-mqtt`` program and return its exit code.

    Args:
        argv: the arguments without the program name; ``sys.argv[1:]`` when None.

    Returns:
        The exit code (see :class:`~trio_mqtt._cli._exit.ExitCode`): 0 success, 1 rejected by
        the broker, 2 bad arguments, 3 connection refused, 4 cannot connect or timeout,
        5 protocol error, 130 interrupted (SIGINT), 143 terminated (SIGTERM).
    """
    console = Console()
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(arguments[0] if arguments else None)
    if arguments and ("-D" in arguments or "--property" in arguments):
        arguments = join_property_arguments(arguments)
    try:
        args = parser.parse_args(arguments)
    except CliError as exc:
        if "--quiet" not in arguments:
            console.err(f"{exc.message}")
        return exc.code
    except SystemExit as exc:  # --help and --version
        return int(exc.code) if isinstance(exc.code, int) else int(ExitCode.USAGE)
    debug = bool(getattr(args, "debug", False))
    if getattr(args, "quiet", False):
        console.quiet = True
    handler: Command = args.handler
    try:
        with _library_logging(debug, console):
            result: Any = trio.run(_run_command, handler, args, console)
        return int(result)
    except BaseException as exc:
        leaf = _leaf(exc)
        if isinstance(leaf, BrokenPipeError):
            _silence_stdout()
            return ExitCode.OK
        if isinstance(leaf, KeyboardInterrupt):
            return ExitCode.INTERRUPTED
        if isinstance(leaf, _Terminated):
            return ExitCode.TERMINATED
        classified = classify(exc)
        if classified is None:
            if isinstance(exc, SystemExit | GeneratorExit):
                raise
            if debug:
                traceback.print_exception(exc, file=console.stderr)
            hint = "" if debug else "; run with -d for a traceback"
            console.err(f"trio-mqtt: internal error: {leaf!r} (please report it{hint})")
            return ExitCode.REJECTED
        exit_code, message = classified
        console.err(f"trio-mqtt: error: {message}")
        return exit_code
