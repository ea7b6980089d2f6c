"""Pieces of the command line that need no broker, and exits a broker cannot provoke.

Exit code 5 needs a broker that breaks the protocol, so a tiny scripted TCP server answers
CONNECT with bytes that are not MQTT; Ctrl-C needs a real process to receive SIGINT.
"""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from trio_mqtt import (
    ConnectionLost,
    ConnectionRefused,
    ConnectTimeout,
    InvalidOptionError,
    InvalidTopicError,
    LocalProtocolError,
    MalformedPacketError,
    MqttError,
    Publish,
    QoS,
    RemoteProtocolError,
    SubscribeResult,
    SubscriptionRefused,
    TlsConfigurationError,
)
from trio_mqtt.__main__ import main
from trio_mqtt._cli import ExitCode, build_parser
from trio_mqtt._cli._bench import percentile
from trio_mqtt._cli._connect import options_from_args
from trio_mqtt._cli._exit import classify
from trio_mqtt._cli._output import Console, ProgressBar, message_record
from trio_mqtt.sansio import Properties

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidOptionError("bad"), ExitCode.USAGE),
        (InvalidTopicError("bad topic"), ExitCode.USAGE),
        (TlsConfigurationError("CA file 'x' not found"), ExitCode.USAGE),
        (ConnectionRefused(5), ExitCode.REFUSED),
        (ConnectionRefused(0x86, "go away"), ExitCode.REFUSED),
        (ConnectionLost("gone"), ExitCode.UNREACHABLE),
        (ConnectTimeout("slow"), ExitCode.UNREACHABLE),
        (trio.TooSlowError(), ExitCode.UNREACHABLE),
        (RemoteProtocolError("nonsense"), ExitCode.PROTOCOL),
        (MalformedPacketError("bad", field="x", offset=1), ExitCode.PROTOCOL),
        (LocalProtocolError("too big"), ExitCode.PROTOCOL),
        (SubscriptionRefused(SubscribeResult(1, (0x80,))), ExitCode.REJECTED),
        (MqttError("other"), ExitCode.REJECTED),
        (KeyboardInterrupt(), ExitCode.INTERRUPTED),
    ],
)
def test_classify_maps_errors_to_exit_codes(error: BaseException, code: ExitCode) -> None:
    classified = classify(error)
    assert classified is not None
    assert classified[0] == code
    assert "\n" not in classified[1]


def test_classify_looks_inside_exception_groups() -> None:
    group = BaseExceptionGroup("x", [trio.Cancelled._create(), ConnectionRefused(4)])
    nested = BaseExceptionGroup("outer", [group])
    classified = classify(nested)
    assert classified is not None
    assert classified[0] == ExitCode.REFUSED
    assert "bad user name or password" in classified[1]
    assert classify(ValueError("a bug")) is None


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.9) == 90.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([3.0], 0.99) == 3.0
    assert percentile([], 0.5) != percentile([], 0.5)  # nan


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_redraws_in_place_on_a_terminal() -> None:
    stderr = FakeTerminal()
    bar = ProgressBar(Console(io.StringIO(), stderr), 200)
    assert bar.is_tty
    bar.update(50, 0.5)
    bar.update(200, 1.0)
    bar.finish()
    text = stderr.getvalue()
    assert text.count("\r[") == 2
    assert "25%" in text
    assert "100%" in text
    assert "200 msg/s" in text
    assert text.endswith("\n")
    assert text.count("\n") == 1


def test_progress_bar_writes_plain_lines_elsewhere() -> None:
    stderr = io.StringIO()
    bar = ProgressBar(Console(io.StringIO(), stderr), 100, plain_interval=1.0)
    assert not bar.is_tty
    for tenth in range(1, 21):
        bar.update(tenth * 5, tenth / 10)
    bar.finish()
    lines = stderr.getvalue().splitlines()
    assert 2 <= len(lines) <= 3  # at most one line per second of a two-second run
    assert all(line.startswith("progress: ") for line in lines)
    assert "\r" not in stderr.getvalue()


def test_bench_draws_a_bar_when_stderr_is_a_terminal(
    mosquitto, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    argv = ["bench", "-h", mosquitto.host, "-p", str(mosquitto.port), "--count", "200"]
    assert main(argv) == 0
    assert "\r[" in terminal.getvalue()
    assert "progress:" not in terminal.getvalue()
    assert "msg/s" in capsys.readouterr().out


def test_message_record_without_properties() -> None:
    record = message_record(Publish("a/b", b"\xff", QoS.EXACTLY_ONCE, False, False, 7))
    assert record == {
        "topic": "a/b",
        "payload": "/w==",
        "encoding": "base64",
        "qos": 2,
        "retain": False,
        "properties": {},
    }
    props = Properties(correlation_data=b"\x01", message_expiry_interval=5)
    record = message_record(Publish("a", b"x", properties=props))
    assert record["properties"] == {"correlation_data": "AQ==", "message_expiry_interval": 5}


def parse(*argv: str):
    return build_parser().parse_args(list(argv))


def test_connection_flags_become_options() -> None:
    args = parse(
        "sub", "-t", "x", "-h", "broker", "-p", "1999", "-u", "u", "-P", "p", "-i", "me",
        "-k", "7", "-V", "5", "--will-topic", "w", "--will-payload", "bye", "--will-qos", "1",
        "--will-retain",
    )  # fmt: skip
    options = options_from_args(args, "sub")
    assert (options.host, options.port, options.client_id) == ("broker", 1999, "me")
    assert (options.username, options.password, options.keep_alive) == ("u", b"p", 7)
    assert options.protocol_version == 5
    assert options.will is not None
    assert (options.will.topic, options.will.payload, options.will.qos) == ("w", b"bye", 1)
    assert options.will.retain


def test_repeated_url_gives_a_server_list() -> None:
    args = parse(
        "pub", "-t", "x", "-n",
        "-L", "mqtts://u:p@a/?client_id=me&keep_alive_secs=9&ca_file=ca.pem",
        "-L", "mqtt://b:1884/topic/ignored",
    )  # fmt: skip
    options = options_from_args(args, "pub")
    assert (options.client_id, options.keep_alive) == ("me", 9)
    assert options.servers == ("mqtts://u:p@a/?ca_file=ca.pem", "mqtt://b:1884/")
    assert options.server_options(1).port == 1884
    args = parse("pub", "-t", "x", "-n", "-L", "mqtt://a", "-L", "mqtt://b", "--cafile", "c")
    with pytest.raises(InvalidOptionError, match="several -L"):
        options_from_args(args, "pub")
    args = parse("pub", "-t", "x", "-n", "-L", "mqtt://a", "-L", "mqtt://b/?keep_alive_secs=1")
    with pytest.raises(InvalidOptionError, match="keep_alive"):
        options_from_args(args, "pub")


def test_url_options_and_overrides() -> None:
    args = parse("pub", "-t", "x", "-n", "--url", "mqtts://a:b@host/?keep_alive_secs=9")
    options = options_from_args(args, "pub")
    assert (options.host, options.port, options.username, options.keep_alive) == (
        "host",
        8883,
        "a",
        9,
    )
    assert options.client_id.startswith("trio-mqtt-pub-")
    args = parse("pub", "-t", "x", "-n", "--url", "mqtt://h/?client_id=given", "-k", "3")
    options = options_from_args(args, "pub")
    assert (options.client_id, options.keep_alive) == ("given", 3)
    args = parse("pub", "-t", "x", "-n", "--url", "wss://h/mqtt", "--cafile", "ca.pem")
    options = options_from_args(args, "pub")
    tls = getattr(options.transport, "tls", None)
    assert tls is not None
    assert tls.ca_file == "ca.pem"
    args = parse("pub", "-t", "x", "-n", "--cafile", "ca.pem", "--insecure")
    options = options_from_args(args, "pub")
    assert options.port == 8883
    assert getattr(options.transport, "dangerously_skip_hostname_check", False)


# ------------------------------------------------------------------ exit 5 and Ctrl-C


@pytest.fixture
def garbage_server() -> Iterator[int]:
    """A TCP server on a free port that answers every CONNECT with a reserved packet type."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    port: int = listener.getsockname()[1]

    def serve() -> None:
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        with connection:
            connection.settimeout(10)
            try:
                connection.recv(1024)
                connection.sendall(b"\x00\x00\x00\x00")  # packet type 0 is reserved
                connection.recv(1024)  # wait until the client hangs up
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        listener.close()
        thread.join(15)


def test_protocol_error_exits_5(garbage_server: int, capsys) -> None:
    argv = ["pub", "-h", "127.0.0.1", "-p", str(garbage_server), "-t", "x", "-m", "x"]
    assert main(argv) == 5
    err = capsys.readouterr().err
    assert err.startswith("trio-mqtt: error:")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("signal_number", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_exit_cleanly(mosquitto, signal_number: int, code: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    argv = [sys.executable, "-m", "trio_mqtt", "sub", "-h", mosquitto.host]
    argv += ["-p", str(mosquitto.port), "-t", "quiet", "-d"]
    with subprocess.Popen(argv, stderr=subprocess.PIPE, env=env, cwd=REPO) as process:
        try:
            assert process.stderr is not None
            for line in process.stderr:
                if line.startswith(b"subscribed to"):
                    break
            process.send_signal(signal_number)
            _, err = process.communicate(timeout=20)
        finally:
            process.kill()
    assert process.returncode == code
    assert b"Traceback" not in err


def test_broker_going_away_exits_4(mosquitto) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    argv = [sys.executable, "-m", "trio_mqtt", "sub", "-h", mosquitto.host]
    argv += ["-p", str(mosquitto.port), "-t", "quiet", "-d"]
    with subprocess.Popen(argv, stderr=subprocess.PIPE, env=env, cwd=REPO) as process:
        try:
            assert process.stderr is not None
            for line in process.stderr:
                if line.startswith(b"subscribed to"):
                    break
            mosquitto.kill()
            _, err = process.communicate(timeout=20)
        finally:
            process.kill()
    assert process.returncode == 4
    last = err.decode().strip().splitlines()[-1]
    assert last.startswith("trio-mqtt: error:")
    assert b"Traceback" not in err


def test_sub_reconnect_survives_a_broker_restart(mosquitto) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    broker = ["-h", mosquitto.host, "-p", str(mosquitto.port)]
    argv = [sys.executable, "-m", "trio_mqtt", "sub", *broker]
    argv += ["-t", "rc/#", "-C", "2", "-v", "-q", "1", "-d", "--reconnect", "-W", "30"]
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO
    ) as process:
        try:
            assert process.stdout is not None
            assert process.stderr is not None
            for line in process.stderr:
                if line.startswith(b"subscribed to"):
                    break
            assert main(["pub", *broker, "-t", "rc/1", "-m", "before", "-q", "1"]) == 0
            assert process.stdout.readline() == b"rc/1 before\n"
            mosquitto.restart()
            # retained, so it reaches the subscriber whenever its re-subscription lands
            assert main(["pub", *broker, "-t", "rc/2", "-m", "after", "-q", "1", "-r"]) == 0
            out, err = process.communicate(timeout=30)
        finally:
            process.kill()
    assert process.returncode == 0, err
    assert out == b"rc/2 after\n"
    assert b"reconnecting" in err


def test_the_cli_uses_only_the_public_api() -> None:
    import ast

    allowed = {"trio_mqtt", "trio_mqtt.sansio", "trio_mqtt.testing", "trio_mqtt.broker"}
    for path in sorted((REPO / "trio_mqtt" / "_cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:  # relative: only siblings inside trio_mqtt._cli
                    assert node.level == 1, f"{path.name}: from {'.' * node.level}{node.module}"
                elif node.module and node.module.startswith("trio_mqtt"):
                    assert node.module in allowed, f"{path.name}: from {node.module}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("trio_mqtt"), f"{path.name}: {alias.name}"


# ------------------------------------------------------------------ mosquitto compatibility


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        ("%", "Incomplete format specifier."),
        ("a%-", "Incomplete format specifier."),
        ("%5.", "Incomplete format specifier."),
        ("%i", "Invalid format specifier 'i'."),
        ("%z", "Invalid format specifier 'z'."),
        ("@", "Incomplete format specifier."),
        ("x\\", "Incomplete escape specifier."),
        ("\\q", "Invalid escape specifier 'q'."),
    ],
)
def test_format_errors_use_mosquittos_wording(fmt: str, message: str) -> None:
    from trio_mqtt._cli._format import FormatError, compile_format

    with pytest.raises(FormatError, match=re.escape(message)):
        compile_format(fmt)


def test_format_renders_without_a_broker() -> None:
    from trio_mqtt import Properties, Publish
    from trio_mqtt._cli._format import compile_format

    message = Publish(
        "a/b", b"hi\x00there", 1, True, packet_id=7, properties=Properties(content_type="t")
    )
    text, error = compile_format("%t|%p|%l|%m|%r|%q|%C|%x|%j").render(message)
    assert error is None
    head, _, record = text.partition(b"|{")
    assert head == b"a/b|hi\x00there|8|7|1|1|t|6869007468657265"
    assert record.endswith(b'"mid":7,"properties":{"content-type":"t"},"payload":"hi"}')
    text, error = compile_format("[%J]").render(message)
    assert (text, error) == (b"[]", "Error: Message payload is not valid JSON on topic a/b.")


def test_random_filter_prints_about_the_given_share(monkeypatch) -> None:
    import random

    from trio_mqtt import Publish
    from trio_mqtt._cli import _sub

    written: list[bytes] = []
    console = _sub.Console()
    monkeypatch.setattr(console, "write_bytes", written.append)
    args = build_parser().parse_args(["sub", "-t", "x", "--random-filter", "25"])
    printer = _sub._Printer(args, console)
    random.seed(1)
    for _ in range(4000):
        printer.print(Publish("x", b"m"))
    assert 800 < len(written) < 1200


def test_property_arguments_are_joined_even_when_a_value_starts_with_a_dash() -> None:
    from trio_mqtt._cli._properties import join_property_arguments

    argv = ["-m-D", "-D", "publish", "user-property", "k", "-v", "-t", "x", "--", "-D"]
    joined = join_property_arguments(argv)
    assert joined == [
        "-m-D",
        "--property=publish\x00user-property\x00k\x00-v",
        "-t",
        "x",
        "--",
        "-D",
    ]


@pytest.mark.parametrize(
    ("argv", "wording"),
    [
        (["-D", "connect", "content-type", "x"], "not allowed for connect"),
        (["-D", "puback", "user-property", "a", "b"], "not supported for puback"),
        (["-D", "bogus", "user-property", "k", "v"], "invalid command"),
        (["-D", "connect", "bogus", "1"], "invalid property name"),
        (["-D", "connect", "receive-maximum", "70000"], "out of range"),
        (["-D", "subscribe", "user-property", "a"], "takes a name and a value"),
        (["-V", "311", "-D", "connect", "receive-maximum", "5"], "cannot be used with -V 311"),
        (["-c"], "-c (keep the session) needs a client id"),
        (["-V", "5", "-c"], "never expires"),
        (["-x", "5"], "-x (session expiry) needs MQTT 5"),
        (["-i", "a", "-I", "b"], "not allowed with argument"),
    ],
)
def test_mosquitto_option_mistakes_exit_2(capsys, argv: list[str], wording: str) -> None:
    from trio_mqtt._cli import main

    assert main(["sub", "-p", "1", "-t", "x", *argv]) == 2
    assert wording in capsys.readouterr().err


def test_url_topic_split() -> None:
    from trio_mqtt._cli._connect import url_topic

    assert url_topic("mqtt://h:1/a/#") == ("mqtt://h:1/", "a/#")
    assert url_topic("mqtts://u:p@h/a/b?client_id=x") == ("mqtts://u:p@h/?client_id=x", "a/b")
    assert url_topic("mqtt://h:1/") == ("mqtt://h:1/", None)
    assert url_topic("ws://h/mqtt") == ("ws://h/mqtt", None)


def test_url_with_a_wildcard_topic_keeps_its_query_keys() -> None:
    from trio_mqtt._cli._connect import options_from_args

    args = build_parser("sub").parse_args(
        ["sub", "-L", "mqtt://h:1884/a/#?client_id=kept&keep_alive_secs=7"]
    )
    options = options_from_args(args, "sub")
    assert (options.client_id, options.keep_alive, options.port) == ("kept", 7, 1884)


#: What ``pub`` and ``sub`` must not import: the other commands and the optional extras.
NOT_AT_START_UP = (
    "json",
    "sqlite3",
    "wsproto",
    "hypothesis",
    "opentelemetry",
    "trio_mqtt.broker",
    "trio_mqtt.otel",
    "trio_mqtt.sync",
    "trio_mqtt.testing",
    "trio_mqtt._cli._bench",
    "trio_mqtt._cli._demo",
    "trio_mqtt._cli._broker",
    "trio_mqtt._cli._format",
)


@pytest.mark.parametrize(
    ("argv", "needed", "not_needed"),
    [
        (["pub", "--help"], "trio_mqtt._cli._pub", "trio_mqtt._cli._sub"),
        (["pub", "-p", "PORT", "-t", "x", "-m", "x"], "trio_mqtt._cli._pub", "trio_mqtt._cli._sub"),
        (["sub", "-p", "PORT", "-t", "x", "-W", "1"], "trio_mqtt._cli._sub", "trio_mqtt._cli._pub"),
    ],
)
def test_a_command_imports_only_what_it_needs(
    argv: list[str], needed: str, not_needed: str
) -> None:
    """Start-up time: a command imports neither the other commands nor the optional extras."""
    with socket.socket() as probe:  # a port nothing listens on: the command fails at once
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    argv = [port if word == "PORT" else word for word in argv]
    code = (
        "import sys\n"
        "from trio_mqtt._cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    modules = set(done.stdout.split())
    assert needed in modules
    assert "trio" in modules
    unwanted = {
        m
        for m in modules
        for prefix in (*NOT_AT_START_UP, not_needed)
        if m == prefix or m.startswith(prefix + ".")
    }
    assert not unwanted
