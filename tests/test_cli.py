"""The trio-mqtt command line against real mosquitto brokers.

Most tests call ``main(argv)`` in-process (it runs its own ``trio.run``) and read what it wrote
with ``capsys``. Tests that need a live subscriber next to the command run ``main`` in a worker
thread from a Trio test; one test runs ``python -m trio_mqtt`` as a real subprocess.
"""

from __future__ import annotations

import base64
import io
import json
import os
import selectors
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from trio_mqtt import MqttOptions, Properties, QoS, open_mqtt_connection
from trio_mqtt.__main__ import main
from trio_mqtt._cli import _demo
from trio_mqtt.testing import MosquittoBroker

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def broker_args(broker: MosquittoBroker) -> list[str]:
    return ["-h", broker.host, "-p", str(broker.port)]


def assert_one_line_error(err: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err


# ------------------------------------------------------------------ sub / pub round trips


def test_pub_retained_then_sub_with_count(mosquitto: MosquittoBroker, capsys) -> None:
    for i in range(3):
        argv = ["pub", *broker_args(mosquitto), "-t", f"rt/{i}", "-m", f"m{i}", "-r", "-q", "1"]
        assert main(argv) == 0
    assert main(["sub", *broker_args(mosquitto), "-t", "rt/#", "-C", "3", "-W", "10"]) == 0
    out = capsys.readouterr().out
    assert sorted(out.splitlines()) == ["m0", "m1", "m2"]
    assert main(["sub", *broker_args(mosquitto), "-t", "rt/1", "-C", "1", "-v", "-W", "10"]) == 0
    assert capsys.readouterr().out == "rt/1 m1\n"


def test_sub_json_shape(mosquitto: MosquittoBroker, capsys) -> None:
    binary = bytes(range(250, 256)) + b"\x00"

    async def publish_retained() -> None:
        options = MqttOptions("json-pub", mosquitto.host, mosquitto.port, protocol_version=5)
        with trio.fail_after(10):
            async with open_mqtt_connection(options) as conn:
                props = Properties(content_type="text/plain", user_properties=(("k", "v"),))
                await conn.client.publish("js/text", "héllo", 1, True, properties=props)
                tracker = await conn.client.publish_tracked("js/bin", binary, 1, True)
                await tracker.wait()

    trio.run(publish_retained)
    argv = ["sub", *broker_args(mosquitto), "-V", "5", "-t", "js/#", "-q", "1", "-C", "2"]
    assert main([*argv, "--json", "-W", "10"]) == 0
    records = {r["topic"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert set(records) == {"js/text", "js/bin"}
    text = records["js/text"]
    assert set(text) == {"topic", "payload", "encoding", "qos", "retain", "properties"}
    assert (text["payload"], text["encoding"], text["qos"], text["retain"]) == (
        "héllo",
        "utf-8",
        1,
        True,
    )
    assert text["properties"]["content_type"] == "text/plain"
    assert text["properties"]["user_properties"] == [["k", "v"]]
    raw = records["js/bin"]
    assert raw["encoding"] == "base64"
    assert base64.b64decode(raw["payload"]) == binary
    assert raw["properties"] == {}


def test_pub_v5_properties_reach_sub_json(mosquitto: MosquittoBroker, capsys) -> None:
    argv = ["pub", *broker_args(mosquitto), "-V", "5", "-t", "p5", "-m", '{"on": true}', "-r"]
    argv += ["--user-property", "site", "lab", "--user-property", "site", "annex"]
    argv += ["--content-type", "application/json", "--message-expiry", "3600"]
    argv += ["--response-topic", "p5/reply", "--correlation-data", "req-1", "--utf8-payload"]
    assert main(argv) == 0
    assert main(["sub", *broker_args(mosquitto), "-V", "5", "-t", "p5", "-C", "1", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["payload"] == '{"on": true}'
    props = record["properties"]
    assert props["user_properties"] == [["site", "lab"], ["site", "annex"]]
    assert props["content_type"] == "application/json"
    assert 3590 <= props["message_expiry_interval"] <= 3600  # the broker counts down
    assert props["response_topic"] == "p5/reply"
    assert base64.b64decode(props["correlation_data"]) == b"req-1"
    assert props["payload_format_indicator"] == 1


async def collect(broker: MosquittoBroker, topic: str, argv: list[str], count: int) -> list[bytes]:
    """Subscribe with the library, run the CLI in a thread, return the payloads received."""
    received: list[bytes] = []
    with trio.fail_after(15):
        options = MqttOptions("collector", broker.host, broker.port)
        async with open_mqtt_connection(options) as conn:
            await conn.client.subscribe(topic, QoS.AT_LEAST_ONCE)
            code = await trio.to_thread.run_sync(main, argv)
            assert code == 0
            async for message in conn.messages():
                received.append(message.payload)
                if len(received) == count:
                    break
    return received


async def test_pub_with_several_urls_fails_over(mosquitto: MosquittoBroker) -> None:
    dead = f"mqtt://127.0.0.1:{free_port()}/"  # nothing listens there
    argv = ["pub", "-L", dead, "-L", f"{mosquitto.url}/", "-t", "fail/over", "-m", "hi", "-q", "1"]
    assert await collect(mosquitto, "fail/over", argv, 1) == [b"hi"]


async def test_pub_lines_from_stdin(mosquitto: MosquittoBroker, monkeypatch) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(b"first\r\nsecond\n\nlast without newline"))
    monkeypatch.setattr(sys, "stdin", stdin)
    argv = ["pub", *broker_args(mosquitto), "-t", "lines", "-l", "-q", "1"]
    received = await collect(mosquitto, "lines", argv, 4)
    assert received == [b"first\r", b"second", b"", b"last without newline"]  # as mosquitto_pub


async def test_pub_repeat_with_interval(mosquitto: MosquittoBroker) -> None:
    argv = ["pub", *broker_args(mosquitto), "-t", "rep", "-m", "again"]
    argv += ["--repeat", "3", "--interval", "0.01", "-q", "2"]
    received = await collect(mosquitto, "rep", argv, 3)
    assert received == [b"again"] * 3


async def test_pub_file_and_null_message(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    payload = bytes(range(256)) * 4
    path = tmp_path / "payload.bin"
    path.write_bytes(payload)
    argv = ["pub", *broker_args(mosquitto), "-t", "file", "-f", str(path), "-q", "1"]
    assert await collect(mosquitto, "file", argv, 1) == [payload]
    argv = ["pub", *broker_args(mosquitto), "-t", "file", "-n"]
    assert await collect(mosquitto, "file", argv, 1) == [b""]


def test_sub_timeout_exits_27(mosquitto: MosquittoBroker, capsys) -> None:
    argv = ["sub", *broker_args(mosquitto), "-t", "silence", "-W", "0.3"]
    assert main(argv) == 27  # as mosquitto_sub
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Timed out" in captured.err
    assert_one_line_error(captured.err)


# ------------------------------------------------------------------ every transport URL


@pytest.fixture
def all_listeners(mosquitto_factory) -> MosquittoBroker:
    broker: MosquittoBroker = mosquitto_factory(
        tls=True, websockets=True, websockets_tls=True, unix_socket=True
    )
    return broker


@pytest.mark.parametrize("scheme", ["mqtt", "mqtts", "ws", "wss", "unix"])
def test_url_accepts_every_transport(all_listeners: MosquittoBroker, scheme: str, capsys) -> None:
    broker = all_listeners
    url = {
        "mqtt": broker.url,
        "mqtts": broker.tls_url,
        "ws": broker.ws_url,
        "wss": broker.wss_url,
        "unix": broker.unix_url,
    }[scheme]
    tls = ["--cafile", str(broker.ca_pem_path)] if scheme in ("mqtts", "wss") else []
    topic = f"url/{scheme}"
    assert main(["pub", "--url", url, *tls, "-t", topic, "-m", scheme, "-r", "-q", "1"]) == 0
    assert main(["sub", "--url", url, *tls, "-t", topic, "-C", "1", "-W", "10"]) == 0
    assert capsys.readouterr().out == f"{scheme}\n"


def test_tls_without_the_ca_cannot_connect(all_listeners: MosquittoBroker, capsys) -> None:
    assert main(["pub", "--url", all_listeners.tls_url, "-t", "x", "-m", "x"]) == 4
    err = capsys.readouterr().err
    assert "certificate" in err
    assert_one_line_error(err)


def test_tls_with_host_and_cafile(all_listeners: MosquittoBroker, capsys) -> None:
    broker = all_listeners
    argv = ["pub", "-h", "localhost", "-p", str(broker.tls_port)]
    argv += ["--cafile", str(broker.ca_pem_path), "-t", "hp", "-m", "tls via -h", "-r"]
    assert main(argv) == 0
    assert main(["sub", "--url", broker.url, "-t", "hp", "-C", "1", "-W", "10"]) == 0
    assert capsys.readouterr().out == "tls via -h\n"


# ------------------------------------------------------------------ exit codes


def test_refused_login_exits_3(mosquitto_factory, capsys) -> None:
    broker: MosquittoBroker = mosquitto_factory(users={"alice": "secret"})
    argv = ["pub", *broker_args(broker), "-u", "alice", "-P", "wrong", "-t", "x", "-m", "x"]
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert "refused" in err
    assert "0x0" in err or "0x8" in err  # the broker's reason code is printed
    assert_one_line_error(err)
    good = ["pub", *broker_args(broker), "-u", "alice", "-P", "secret", "-t", "x", "-m", "x"]
    assert main(good) == 0


def test_refused_login_v5_names_the_reason(mosquitto_factory, capsys) -> None:
    broker: MosquittoBroker = mosquitto_factory(users={"alice": "secret"})
    argv = ["sub", *broker_args(broker), "-V", "5", "-u", "bob", "-P", "x", "-t", "x"]
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert "BAD_USER_NAME_OR_PASSWORD" in err or "NOT_AUTHORIZED" in err
    assert_one_line_error(err)


def test_publish_rejected_by_the_broker_exits_1(mosquitto_factory, tmp_path: Path, capsys):
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite open/#\n")
    broker: MosquittoBroker = mosquitto_factory(extra_config=[f"acl_file {acl}"])
    argv = ["pub", *broker_args(broker), "-V", "5", "-q", "1", "-m", "x"]
    assert main([*argv, "-t", "open/x"]) == 0
    assert main([*argv, "-t", "closed/x", "--repeat", "2"]) == 1
    err = capsys.readouterr().err
    assert "rejected 2 of 2" in err
    assert "0x87 NOT_AUTHORIZED" in err
    assert_one_line_error(err)


def test_packet_size_limits_are_flags_and_errors_name_them(
    mosquitto_factory, tmp_path: Path, capsys
) -> None:
    """A 2 MiB ``pub -f`` goes out (no outgoing limit below the protocol's by default); the
    incoming bound (1 MiB by default) refuses it on receipt, and both errors name the flag
    that raises the limit. (The broker is told to take 4 MiB: the embedded one takes 1 MiB.)"""
    mosquitto: MosquittoBroker = mosquitto_factory(max_packet_size=4 * 1024 * 1024)
    big = tmp_path / "big.txt"
    big.write_bytes(b"x" * (2 * 1024 * 1024))
    where = broker_args(mosquitto)
    assert main(["pub", *where, "-t", "big/x", "-f", str(big), "-r", "-q", "1"]) == 0
    sub = ["sub", *where, "-t", "big/x", "-C", "1", "-W", "10", "-F", "%l"]
    assert main(sub) == 5
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "exceeds the maximum packet size of 1048576 bytes" in captured.err
    assert "(--max-incoming-packet-size raises it)" in captured.err
    assert_one_line_error(captured.err)
    assert main([*sub, "--max-incoming-packet-size", "3M"]) == 0
    assert capsys.readouterr().out == "2097152\n"
    pub = ["pub", *where, "-t", "big/y", "-m", "y" * 2000, "--max-outgoing-packet-size", "1k"]
    assert main(pub) == 5
    err = capsys.readouterr().err
    assert "exceeds the maximum packet size of 1024 bytes" in err
    assert "--max-outgoing-packet-size raises ours" in err
    assert_one_line_error(err)
    assert main([*pub[:-2], "--max-outgoing-packet-size", "4k"]) == 0


@pytest.mark.parametrize("command", [["pub", "-t", "x", "-m", "x"], ["sub", "-t", "x"]])
def test_unreachable_port_exits_4(command: list[str], capsys) -> None:
    port = free_port()  # nothing listens there once the probe socket is closed
    assert main([*command, "-h", "127.0.0.1", "-p", str(port)]) == 4
    err = capsys.readouterr().err
    assert str(port) in err
    assert_one_line_error(err)


BAD_ARGUMENTS = [
    [],
    ["nonsense"],
    ["pub", "-t", "x"],
    ["pub", "-t", "x", "-m", "a", "-n"],
    ["sub"],
    ["sub", "-t", "x", "-q", "3"],
    ["sub", "-t", "x", "-C", "0"],
    ["sub", "-t", "x", "-p", "70000"],
    ["sub", "-t", "x", "-V", "4.0"],
    ["sub", "-t", "a/#/b"],
    ["pub", "-t", "a/+", "-m", "x"],
    ["pub", "-t", "x", "-m", "x", "--url", "mqtt://127.0.0.1:1", "-h", "localhost"],
    ["pub", "-t", "x", "-m", "x", "--url", "gopher://127.0.0.1"],
    ["pub", "-t", "x", "-m", "x", "--url", "mqtt://127.0.0.1:1", "--cafile", "ca.pem"],
    ["pub", "-t", "x", "-f", "/nonexistent/payload"],
    ["pub", "-t", "x", "-l", "--repeat", "2"],
    ["pub", "-t", "x", "-m", "x", "--will-payload", "bye"],
    ["pub", "-t", "x", "-m", "x", "-P", "secret"],
    ["pub", "-t", "x", "-m", "x", "--key", "key.pem"],
    ["pub", "-t", "x", "-m", "x", "--content-type", "text/plain"],
    ["pub", "-t", "x", "-m", "x", "-V", "5", "--response-topic", "a/#"],
    ["pub", "-t", "x", "-m", "x", "--message-expiry", "-1"],
    ["bench", "--size", "8"],
    ["bench", "--qos", "5"],
]


@pytest.mark.parametrize("argv", BAD_ARGUMENTS, ids=" ".join)
def test_bad_arguments_exit_2(argv: list[str], capsys) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("trio-mqtt")
    assert_one_line_error(captured.err)


def test_help_lists_exit_codes_and_h_is_the_host(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("sub", "pub", "bench", "demo"):
        assert command in out
    assert "exit codes" in out
    assert "refused the connection" in out
    assert main(["sub", "--help"]) == 0
    sub_help = capsys.readouterr().out
    assert "-h HOST" in sub_help
    assert "--will-topic" in sub_help
    assert "exit codes" in sub_help


# ------------------------------------------------------------------ bench and demo


def test_bench_small_count_prints_rate_and_percentiles(mosquitto: MosquittoBroker, capsys) -> None:
    argv = ["bench", *broker_args(mosquitto), "--count", "300", "--connections", "2"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "msg/s" in captured.out
    for label in ("p50", "p90", "p99", "max"):
        assert label in captured.out
    assert "lost 0" in captured.out
    assert "progress:" in captured.err  # stderr is not a terminal: plain progress lines
    assert captured.err.splitlines()[-1].startswith("progress: 300/300 received (100%)")
    assert "\r" not in captured.err


def test_bench_json_at_qos_2(mosquitto: MosquittoBroker, capsys) -> None:
    argv = ["bench", "--url", mosquitto.url, "-V", "5", "--qos", "2", "--count", "200"]
    assert main([*argv, "--json", "--size", "100"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["count"], record["received"], record["lost"], record["qos"]) == (200, 200, 0, 2)
    assert record["size"] == 100
    assert record["receive_rate"] > 0
    assert 0 <= record["latency_p50"] <= record["latency_p90"] <= record["latency_p99"]
    assert record["latency_p99"] <= record["latency_max"]


def test_bench_reports_loss_when_nothing_arrives(mosquitto_factory, tmp_path: Path, capsys):
    acl = tmp_path / "acl"
    acl.write_text("topic write trio-mqtt/bench/#\n")  # publishing allowed, reading denied
    broker: MosquittoBroker = mosquitto_factory(extra_config=[f"acl_file {acl}"])
    argv = ["bench", *broker_args(broker), "--count", "50", "--stall-timeout", "0.3"]
    assert main(argv) == 4
    captured = capsys.readouterr()
    assert "published 50 messages" in captured.out
    assert "received  0 messages" in captured.out
    assert "(lost 50)" in captured.out
    assert "50 of 50 messages did not arrive" in captured.err


def test_demo_against_a_given_broker(mosquitto: MosquittoBroker, capsys) -> None:
    assert main(["demo", "--url", mosquitto.url, "--bench-count", "200"]) == 0
    out = capsys.readouterr().out
    for qos in range(3):
        assert f"received  'hello at QoS {qos}'" in out
    assert "round trip complete" in out
    assert "msg/s" in out
    assert "started the embedded broker" not in out


def test_demo_starts_its_own_broker(monkeypatch, capsys) -> None:
    monkeypatch.setattr(_demo, "LOCAL_PORT", free_port())
    assert main(["demo", "--bench-count", "200"]) == 0
    out = capsys.readouterr().out
    assert "nothing answers" in out
    assert "started the embedded broker" in out
    assert "round trip complete" in out
    assert "demo finished" in out


def test_demo_uses_a_broker_that_answers_locally(mosquitto: MosquittoBroker, monkeypatch, capsys):
    monkeypatch.setattr(_demo, "LOCAL_PORT", mosquitto.port)
    assert main(["demo", "--bench-count", "100"]) == 0
    out = capsys.readouterr().out
    assert f"using the broker that answers on 127.0.0.1:{mosquitto.port}" in out
    assert "round trip complete" in out


def test_demo_runs_with_mosquitto_hidden_from_path(tmp_path: Path) -> None:
    """The README's main job on a machine without mosquitto: a process whose PATH holds only
    the Python interpreter (no mosquitto in any sbin folder either) and whose port 1883 is
    replaced by a free one, so the embedded broker must be the one that answers."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    script = (
        "import sys\n"
        "from trio_mqtt._cli import _demo\n"
        "from trio_mqtt.__main__ import main\n"
        f"_demo.LOCAL_PORT = {free_port()}\n"
        "sys.exit(main(['demo', '--bench-count', '200']))\n"
    )
    env = {
        "PATH": str(bin_dir),
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "HOME": str(tmp_path),
    }
    result = subprocess.run(
        [str(bin_dir / "python"), "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "started the embedded broker" in result.stdout
    assert "round trip complete: 3 messages out, 3 back" in result.stdout
    assert "demo finished: everything worked" in result.stdout


# ------------------------------------------------------------------ as a real process


def test_python_m_trio_mqtt_subprocess_round_trip(mosquitto: MosquittoBroker) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    argv = [sys.executable, "-m", "trio_mqtt", "sub", *broker_args(mosquitto)]
    argv += ["-t", "proc/#", "-C", "2", "-v", "-q", "1", "-d", "-W", "20"]
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO
    ) as process:
        try:
            assert process.stderr is not None
            for line in process.stderr:  # ends at EOF if the process dies first
                if line.startswith(b"subscribed to"):
                    break
            pub = ["pub", *broker_args(mosquitto), "-t", "proc/a", "-m", "via process", "-q", "1"]
            assert main([*pub, "--repeat", "2"]) == 0
            out, err = process.communicate(timeout=20)
        finally:
            process.kill()
    assert process.returncode == 0, err
    assert out == b"proc/a via process\nproc/a via process\n"


def test_demo_explains_a_local_port_that_is_not_a_broker(monkeypatch, capsys) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:  # accepts, never answers
        monkeypatch.setattr(_demo, "LOCAL_PORT", listener.getsockname()[1])
        assert main(["demo", "--connect-timeout", "0.3"]) == 4
    err = capsys.readouterr().err
    assert "--private-broker" in err
    assert_one_line_error(err)


async def test_pub_whole_stdin_as_one_message(mosquitto: MosquittoBroker, monkeypatch) -> None:
    data = b"line one\nline two\n\x00\xff"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    argv = ["pub", *broker_args(mosquitto), "-t", "whole", "-s", "-q", "1"]
    assert await collect(mosquitto, "whole", argv, 1) == [data]


# ------------------------------------------------------------------ client certificates, will


def test_client_certificate_flags(mosquitto_factory, capsys) -> None:
    broker: MosquittoBroker = mosquitto_factory(tls=True, require_certificate=True)
    where = ["-h", "localhost", "-p", str(broker.tls_port), "--cafile", str(broker.ca_pem_path)]
    cert = ["--cert", str(broker.client_cert_path), "--key", str(broker.client_key_path)]
    assert main(["pub", *where, *cert, "-t", "mtls", "-m", "with cert", "-r", "-q", "1"]) == 0
    assert main(["sub", *where, *cert, "-t", "mtls", "-C", "1", "-W", "10"]) == 0
    assert capsys.readouterr().out == "with cert\n"
    # without the certificate the broker refuses the TLS session
    assert main(["pub", *where, "-t", "mtls", "-m", "no cert"]) == 4
    assert_one_line_error(capsys.readouterr().err)


def test_will_flags_publish_the_will_when_the_process_dies(
    mosquitto: MosquittoBroker, capsys
) -> None:
    will = ["--will-topic", "cli/will", "--will-payload", "gone", "--will-qos", "1"]
    argv = ["sub", *broker_args(mosquitto), "-t", "idle", *will, "--will-retain", "-d"]
    child = subprocess.Popen(
        [sys.executable, "-m", "trio_mqtt", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert child.stderr is not None
        # wait (bounded) for "connected to ...", printed once CONNACK arrived (-d also
        # prints a line per packet, as mosquitto_sub -d does)
        # read the raw descriptor: a buffered readline() may pull several lines into
        # Python's buffer, and select() would then wait for bytes that already arrived
        with selectors.DefaultSelector() as selector:
            selector.register(child.stderr, selectors.EVENT_READ)
            seen = b""
            while b"\ntrio_mqtt: connected" not in b"\n" + seen:
                assert selector.select(timeout=10), f"the sub command did not connect: {seen!r}"
                chunk = os.read(child.stderr.fileno(), 4096)
                assert chunk, f"the sub command exited: {seen!r}"
                seen += chunk
    finally:
        child.kill()  # no DISCONNECT: the broker publishes the will
        child.wait(timeout=10)
        if child.stderr is not None:
            child.stderr.close()
    assert main(["sub", *broker_args(mosquitto), "-t", "cli/will", "-C", "1", "-W", "10"]) == 0
    assert capsys.readouterr().out == "gone\n"


class _Terminal(io.StringIO):
    """A standard error that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_pub_shows_progress_on_a_terminal(mosquitto: MosquittoBroker, monkeypatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    argv = ["pub", *broker_args(mosquitto), "-t", "progress", "-m", "x", "--repeat", "3000"]
    assert main([*argv, "-q", "1"]) == 0
    shown = terminal.getvalue()
    assert shown.startswith("\r["), shown
    assert shown.endswith("\n"), shown
    assert "3000/3000 published" in shown


def test_pub_lines_show_a_count_on_a_terminal(mosquitto: MosquittoBroker, monkeypatch) -> None:
    """``pub -l`` has no total: its progress line is a count and a rate."""
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    lines = b"".join(b"line %d\n" % i for i in range(2500))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(lines)))
    assert main(["pub", *broker_args(mosquitto), "-t", "progress", "-l", "-q", "1"]) == 0
    shown = terminal.getvalue()
    assert shown.startswith("\r2,500 published  "), shown
    assert shown.endswith(" msg/s\x1b[K\n"), shown


def test_pub_shows_no_progress_in_a_pipe(mosquitto: MosquittoBroker, capsys) -> None:
    argv = ["pub", *broker_args(mosquitto), "-t", "progress", "-m", "x", "--repeat", "3000"]
    assert main(argv) == 0
    assert capsys.readouterr().err == ""
