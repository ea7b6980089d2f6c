"""Exit codes and the translation of exceptions into them.

A shell script can rely on these numbers; ``docs/cli.rst`` and ``trio-mqtt --help`` list them.
:func:`classify` looks at the exception (inside an exception group, at the first leaf that is
not a cancellation) and returns the exit code and a one-line message; the order of the checks
matters because the error classes overlap (an invalid topic is both a ValueError and a local
protocol error, a TLS set-up error is a connection error).
"""

from __future__ import annotations

import enum
import sys

import trio

from trio_mqtt import (
    ConnectionClosed,
    ConnectionLost,
    ConnectionRefused,
    InvalidOptionError,
    InvalidTopicError,
    MqttError,
    ProtocolError,
    RequestsDone,
    SubscriptionRefused,
    TlsConfigurationError,
)

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

__all__ = ["EXIT_CODES_HELP", "CliError", "ExitCode", "classify"]


class ExitCode(enum.IntEnum):
    """The process exit status of ``trio-mqtt``."""

    OK = 0
    #: The broker refused a subscription or rejected a published message (reason code >= 0x80).
    REJECTED = 1
    #: Bad command-line arguments (also unreadable input files and bad TLS files).
    USAGE = 2
    #: The broker refused the connection (CONNACK with a failure code), e.g. a bad password.
    REFUSED = 3
    #: The broker could not be reached, the connection was lost, or a timeout (-W) expired.
    UNREACHABLE = 4
    #: The MQTT protocol was broken (by the broker, or a limit it set was exceeded).
    PROTOCOL = 5
    #: ``sub -W``: the time ran out (27, as mosquitto_sub: libmosquitto's MOSQ_ERR_TIMEOUT).
    TIMEOUT = 27
    #: Interrupted by Ctrl-C (SIGINT).
    INTERRUPTED = 130
    #: Stopped by SIGTERM (after closing connections and any broker the demo started).
    TERMINATED = 143


EXIT_CODES_HELP = """\
exit codes:
  0    success
  1    the broker refused a subscription or rejected a message (or another failure)
  2    bad arguments (including unreadable input or TLS files)
  3    the broker refused the connection (the reason is printed, e.g. bad user name or password)
  4    cannot connect, connection lost, or timeout (bench stall)
  5    MQTT protocol error
  27   sub -W: the time ran out (as mosquitto_sub)
  130  interrupted (Ctrl-C)
  143  terminated (SIGTERM), after a clean shutdown"""


class CliError(Exception):
    """An error a command reports with a chosen exit code and message."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _leaf(exc: BaseException) -> BaseException:
    """The exception that matters inside (possibly nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup):
        leaves = [e for e in exc.exceptions if not isinstance(e, trio.Cancelled)]
        exc = (leaves or list(exc.exceptions))[0]
    return exc


#: Library option names in error messages, as the command line spells them.
_FLAGS = {
    "max_outgoing_packet_size": "--max-outgoing-packet-size",
    "max_incoming_packet_size": "--max-incoming-packet-size",
}


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    for option, flag in _FLAGS.items():
        text = text.replace(option, flag)
    return text


def _is_broker_error(exc: BaseException) -> bool:
    """A private broker (``demo``) failed to start; imported only when the demo ran."""
    testing = sys.modules.get("trio_mqtt.testing")
    return testing is not None and isinstance(exc, testing.MosquittoError)


def classify(exc: BaseException) -> tuple[ExitCode, str] | None:
    """The exit code and one-line message for an exception, or None if it is unexpected."""
    exc = _leaf(exc)
    code: ExitCode
    if isinstance(exc, CliError):
        return exc.code, _one_line(exc.message)
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERRUPTED, "interrupted"
    if isinstance(exc, InvalidOptionError | InvalidTopicError | TlsConfigurationError):
        code = ExitCode.USAGE
    elif isinstance(exc, ConnectionRefused):
        code = ExitCode.REFUSED
    elif isinstance(exc, SubscriptionRefused):
        code = ExitCode.REJECTED
    elif isinstance(exc, ConnectionLost | ConnectionClosed | RequestsDone) or _is_broker_error(exc):
        code = ExitCode.UNREACHABLE
    elif isinstance(exc, trio.TooSlowError):
        return ExitCode.UNREACHABLE, "timed out"
    elif isinstance(exc, ProtocolError):
        code = ExitCode.PROTOCOL
    elif isinstance(exc, MqttError):
        code = ExitCode.REJECTED
    else:
        return None
    return code, _one_line(str(exc) or type(exc).__name__)
