"""Side by side: the same command line through mosquitto_sub/pub and through trio-mqtt.

Each case runs one command line twice against the same private broker, once as
``mosquitto_sub``/``mosquitto_pub`` and once as ``python -m trio_mqtt sub``/``pub``, and checks
that both print the same bytes and exit with the same status.

To make ``sub`` deterministic without timing, the messages are waiting before either
subscriber starts: retained messages, and QoS 1/2 messages queued in a persistent session that
each side resumes with ``-c -i ID`` (one session per side, created the same way). Output that
holds the time (``%I``, ``%U``, ``@`` codes, the ``tst`` of ``%j``) is compared with its digits
masked. For ``pub``, a recorder with a persistent session collects what each side published,
up to a marker message, and the two records are compared.

Every subprocess runs with a timeout; the tests need the mosquitto-clients package (installed
by .ci/run and by ``nox -s tests``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

from trio_mqtt import MqttOptions, Properties, ProtocolVersion, QoS, open_mqtt_connection
from trio_mqtt.testing import MosquittoBroker

pytestmark = pytest.mark.skipif(
    shutil.which("mosquitto_sub") is None or shutil.which("mosquitto_pub") is None,
    reason="mosquitto-clients is not installed (apt-get install mosquitto-clients)",
)

TIMEOUT = 20
ENV = {**os.environ, "TZ": "UTC", "PYTHONDONTWRITEBYTECODE": "1"}


@dataclass
class Result:
    code: int
    out: bytes
    err: bytes


def run(argv: Sequence[str], stdin: bytes | None = None, timeout: float = TIMEOUT) -> Result:
    done = subprocess.run(
        list(argv),
        input=stdin if stdin is not None else b"",
        capture_output=True,
        timeout=timeout,
        env=ENV,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def both(tool: str, args: Sequence[str], stdin: bytes | None = None) -> tuple[Result, Result]:
    """Run ``args`` through mosquitto_TOOL, then through trio-mqtt TOOL."""
    theirs = run([f"mosquitto_{tool}", *args], stdin)
    ours = run([sys.executable, "-m", "trio_mqtt", tool, *args], stdin)
    return theirs, ours


def mask_digits(data: bytes) -> bytes:
    return re.sub(rb"[0-9]", b"9", data)


# ------------------------------------------------------------------ broker fixtures


@dataclass
class Message:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False
    properties: Properties | None = None


RETAINED = [
    Message("s/a", b"hello", 1, True),
    Message("s/b/c", b'a b"\\ \x01\ttab', 2, True),
    Message("s/json", b'{"x": 1.5, "y": [1, 2], "z": {}, "s": "\xc3\xa9"}', 0, True),
    Message("s/bin", bytes([0, 1, 2, 250, 255]), 1, True),
    Message("s/d/e", b"deep", 1, True),
]
# QoS 1 only: libmosquitto hands a QoS 2 message to mosquitto_sub when PUBREL arrives, trio-mqtt
# when the PUBLISH does (both allowed), so QoS 2 would make the order of the lines differ.
QUEUED = [
    Message("s/q/1", b"first", 1),
    Message("s/q/2", b"", 1),
    Message("s/q/3", b"third", 1),
    Message("s/a", b"fresh", 1),
]
QUEUED_RETAINED = [Message("s/a", b"hello", 1, True), Message("s/b/c", b"b\tc", 1, True)]
PROPS = Properties(
    content_type="text/plain",
    response_topic="s/reply",
    correlation_data=b"corr-1",
    payload_format_indicator=1,
    message_expiry_interval=3600,
    user_properties=(("k1", "v1"), ("k2", "v2")),
)
V5_RETAINED = [
    Message("s/p", b"with properties", 1, True, PROPS),
    Message("s/plain", b"none", 1, True),
]
SIDES = ("mosq", "trio")


async def _seed(
    broker: MosquittoBroker,
    retained: Sequence[Message],
    queued: Sequence[Message],
    version: ProtocolVersion,
    session_filter: str | None,
) -> None:
    v5 = version is ProtocolVersion.V5
    with trio.fail_after(15):
        if session_filter is not None:
            for side in SIDES:
                options = MqttOptions(
                    side,
                    broker.host,
                    broker.port,
                    clean_start=False,
                    protocol_version=version,
                    session_expiry_interval=0xFFFFFFFF if v5 else None,
                )
                async with open_mqtt_connection(options) as conn:
                    await conn.client.subscribe(session_filter, QoS.EXACTLY_ONCE)
        options = MqttOptions("seeder", broker.host, broker.port, protocol_version=version)
        async with open_mqtt_connection(options) as conn:
            for message in (*retained, *queued):
                tracker = await conn.client.publish_tracked(
                    message.topic,
                    message.payload,
                    message.qos,
                    message.retain,
                    properties=message.properties,
                )
                await tracker.wait()


def seed(
    broker: MosquittoBroker,
    retained: Sequence[Message] = RETAINED,
    queued: Sequence[Message] = (),
    *,
    version: ProtocolVersion = ProtocolVersion.V311,
    session_filter: str | None = None,
) -> None:
    trio.run(_seed, broker, retained, queued, version, session_filter)


def hp(broker: MosquittoBroker) -> list[str]:
    return ["-h", broker.host, "-p", str(broker.port)]


def assert_same(theirs: Result, ours: Result, *, masked: bool = False) -> None:
    out_theirs, out_ours = theirs.out, ours.out
    if masked:
        out_theirs, out_ours = mask_digits(out_theirs), mask_digits(out_ours)
    assert (ours.code, out_ours) == (theirs.code, out_theirs), (theirs.err, ours.err)


# ------------------------------------------------------------------ sub: retained messages

RETAINED_CASES: list[tuple[str, list[str], bool]] = [
    ("payload only", ["-t", "s/#", "-C", "5"], False),
    ("-v", ["-t", "s/#", "-C", "5", "-v"], False),
    ("-N", ["-t", "s/a", "-C", "1", "-N"], False),
    ("-v -N", ["-t", "s/#", "-C", "5", "-v", "-N"], False),
    ("two filters, qos 2", ["-t", "s/a", "-t", "s/b/+", "-q", "2", "-C", "2", "-v"], False),
    ("-F parameters", ["-t", "s/#", "-C", "5", "-F", "%t|%p|%q|%r|%l|%m|%%|@@"], False),
    ("-F hex", ["-t", "s/#", "-C", "5", "-F", "%t %x %X"], False),
    (
        "-F widths",
        ["-t", "s/#", "-C", "5", "-F", "[%10t][%-10t][%.3t][%5.2t][%05l][%-5l][%8l]"],
        False,
    ),
    (
        "-F payload widths",
        ["-t", "s/a", "-C", "1", "-F", "[%3p][%-9p][%9p][%4x][%-12X][%2.1p]"],
        False,
    ),
    ("-F escapes", ["-t", "s/a", "-C", "1", "-F", "\\t%t\\\\\\e[0m\\a\\v\\r\\0|"], False),
    ("-F newline escape", ["-t", "s/#", "-C", "5", "-F", "%t\\n[%l]\\n"], False),
    ("-F -N", ["-t", "s/#", "-C", "5", "-F", "%t:%p;", "-N"], False),
    ("-F overrides -v", ["-t", "s/a", "-C", "1", "-v", "-F", "[%p]"], False),
    ("-F %j", ["-t", "s/#", "-C", "5", "-F", "%j"], True),
    ("-F %J", ["-t", "s/json", "-C", "1", "-F", "%J"], True),
    ("-F %J not JSON", ["-t", "s/a", "-C", "1", "-F", "[%J]"], True),
    ("-F %j --pretty", ["-t", "s/#", "-C", "5", "-F", "%j", "--pretty"], True),
    ("-F %J --pretty", ["-t", "s/json", "-C", "1", "-F", "%J", "--pretty"], True),
    ("-F times", ["-t", "s/a", "-C", "1", "-F", "%I %U @Y-@m-@d @H:@M:@S @N @%"], True),
    (
        "-F missing v5 properties",
        ["-t", "s/a", "-C", "1", "-F", "|%A|%5A|%05E|%-3F|%C|%5C|%R|%S|%P|%D|"],
        False,
    ),
    ("-T", ["-t", "s/#", "-T", "s/b/#", "-T", "s/bin", "-C", "3", "-v"], False),
    ("-R", ["-t", "s/#", "-R", "-W", "1"], False),
    ("--retained-only -C", ["-t", "s/#", "--retained-only", "-C", "2"], False),
    ("-E", ["-t", "s/#", "-E"], False),
    ("-E -U", ["-t", "s/#", "-U", "s/#", "-E"], False),
    ("-W", ["-t", "nothing/here", "-W", "1"], False),
    ("-I", ["-I", "side-by-side-", "-t", "s/a", "-C", "1"], False),
    (
        "-M -A --nodelay -k",
        ["-M", "5", "-A", "127.0.0.1", "--nodelay", "-k", "30", "-t", "s/a", "-C", "1"],
        False,
    ),
    (
        "-D connect and subscribe",
        [
            "-D",
            "connect",
            "user-property",
            "who",
            "me",
            "-D",
            "CONNECT",
            "receive-maximum",
            "5",
            "-D",
            "subscribe",
            "user-property",
            "k",
            "-v",
            "-t",
            "s/a",
            "-C",
            "1",
        ],
        False,
    ),
    (
        "-D connect, will",
        [
            "-D",
            "connect",
            "session-expiry-interval",
            "0",
            "-D",
            "connect",
            "maximum-packet-size",
            "100000",
            "-D",
            "connect",
            "topic-alias-maximum",
            "3",
            "-D",
            "connect",
            "request-problem-information",
            "0",
            "--will-topic",
            "w",
            "-D",
            "will",
            "content-type",
            "t",
            "-D",
            "disconnect",
            "session-expiry-interval",
            "0",
            "-t",
            "s/a",
            "-C",
            "1",
        ],
        False,
    ),
    ("-x with -V 5", ["-V", "5", "-x", "60", "-i", "x-user", "-t", "s/a", "-C", "1", "-v"], False),
    ("--quiet", ["--quiet", "-t", "s/a", "-C", "1"], False),
]


@pytest.mark.parametrize(
    ("args", "masked"),
    [(args, masked) for _, args, masked in RETAINED_CASES],
    ids=[name for name, _, _ in RETAINED_CASES],
)
def test_sub_retained(mosquitto: MosquittoBroker, args: list[str], masked: bool) -> None:
    seed(mosquitto)
    theirs, ours = both("sub", [*hp(mosquitto), *args])
    assert_same(theirs, ours, masked=masked)
    assert theirs.code in (0, 27), theirs.err
    if theirs.code == 27:
        assert ours.err.strip().endswith(b"Timed out")


def test_sub_url_with_topic(mosquitto: MosquittoBroker) -> None:
    seed(mosquitto)
    url = f"mqtt://{mosquitto.host}:{mosquitto.port}/s/b/+"
    theirs, ours = both("sub", ["-L", url, "-C", "1", "-v"])
    assert_same(theirs, ours)
    assert theirs.out == b's/b/c a b"\\ \x01\ttab\n'


def test_sub_v5_properties(mosquitto: MosquittoBroker) -> None:
    seed(mosquitto, V5_RETAINED, version=ProtocolVersion.V5)
    for args, masked in [
        (["-F", "%A|%C|%D|%E|%F|%P|%R|%S|%t"], True),  # %E counts down
        (["-F", "[%10C][%-6R][%.2C][%5E]"], True),
        (["-F", "%j"], True),
        (["-F", "%j", "--pretty"], True),
        (["-D", "subscribe", "subscription-identifier", "7", "-F", "%S %j"], True),
    ]:
        theirs, ours = both("sub", [*hp(mosquitto), "-V", "5", "-t", "s/#", "-C", "2", *args])
        assert_same(theirs, ours, masked=masked)
        assert theirs.code == 0


# ------------------------------------------------------------------ sub: queued messages

# The session holds six messages (the two retained ones, published after the session
# subscribed, and QUEUED); subscribing again adds the two retained ones, with the retain flag.
# (mosquitto_sub 2.0.11 hangs when -C is reached while a --remove-retained clear is unacked,
# so that case stops with -W, exit status 27, instead.)
QUEUED_CASES: list[tuple[str, list[str], int | None, bool]] = [
    ("queued, payload only", [], 8, False),
    ("queued -v (empty payload is (null))", ["-v"], 8, False),
    ("queued -F %m and qos", ["-F", "%m %q %r %t %l"], 8, False),
    ("queued -R", ["-R", "-v"], 6, False),
    ("queued --retained-only", ["--retained-only", "-v"], 8, False),
    ("queued -F %j", ["-F", "%j"], 8, True),
    ("queued --remove-retained -T", ["--remove-retained", "-T", "s/a", "-v"], None, False),
]


@pytest.mark.parametrize(
    ("args", "count", "masked"),
    [(args, count, masked) for _, args, count, masked in QUEUED_CASES],
    ids=[name for name, _, _, _ in QUEUED_CASES],
)
@pytest.mark.parametrize("version", ["311", "5"])
def test_sub_queued_session(
    mosquitto_factory, args: list[str], count: int | None, masked: bool, version: str
) -> None:
    """``-c -i ID`` resumes a session holding queued QoS 1 messages, then -t re-subscribes.

    Each side gets a broker of its own, seeded the same way, since --remove-retained changes
    what the broker holds.
    """
    protocol = ProtocolVersion.V5 if version == "5" else ProtocolVersion.V311
    stop = ["-C", str(count)] if count is not None else ["-W", "2"]
    results = []
    for command in (["mosquitto_sub"], [sys.executable, "-m", "trio_mqtt", "sub"]):
        broker = mosquitto_factory()
        seed(broker, QUEUED_RETAINED, QUEUED, version=protocol, session_filter="s/#")
        common = [*hp(broker), "-V", version, "-c", "-q", "1", "-t", "s/#", *stop]
        side = "mosq" if command == ["mosquitto_sub"] else "trio"
        results.append(run([*command, *common, "-i", side, *args]))
        if "--remove-retained" in args:
            left = run([*command, *hp(broker), "-t", "s/#", "-v", "-W", "1"])
            assert left.out == b"s/a hello\n"  # s/b/c was cleared, s/a kept by -T
    theirs, ours = results
    assert_same(theirs, ours, masked=masked)
    assert theirs.code == (0 if count is not None else 27), theirs.err


def test_sub_unix_socket(mosquitto_factory) -> None:
    broker = mosquitto_factory(unix_socket=True)
    seed(broker)
    theirs, ours = both("sub", ["--unix", str(broker.unix_path), "-t", "s/a", "-C", "1", "-v"])
    assert_same(theirs, ours)
    assert theirs.out == b"s/a hello\n"


def test_sub_tls_flags(mosquitto_factory, tmp_path: Path) -> None:
    broker = mosquitto_factory(tls=True)
    seed(broker)
    capath = tmp_path / "cas"
    capath.mkdir()
    shutil.copy(broker.ca_pem_path, capath / "ca.pem")
    subprocess.run(["openssl", "rehash", str(capath)], check=True, timeout=TIMEOUT)
    tls = ["-h", "localhost", "-p", str(broker.tls_port), "-t", "s/a", "-C", "1", "-v"]
    for extra in (
        ["--cafile", str(broker.ca_pem_path)],
        ["--capath", str(capath)],
        ["--cafile", str(broker.ca_pem_path), "--tls-use-os-certs"],
        ["--cafile", str(broker.ca_pem_path), "--tls-version", "tlsv1.2"],
        ["--cafile", str(broker.ca_pem_path), "--tls-version", "tlsv1.3"],
        ["--cafile", str(broker.ca_pem_path), "--tls-alpn", "mqtt"],
    ):
        theirs, ours = both("sub", [*tls, *extra])
        assert_same(theirs, ours)
        assert theirs.out == b"s/a hello\n", extra


def test_sub_quiet_hides_errors(mosquitto: MosquittoBroker) -> None:
    port = str(mosquitto.port)
    mosquitto.stop()
    theirs, ours = both("sub", ["-p", port, "--quiet", "-t", "x", "-W", "2"])
    assert (theirs.out, theirs.err) == (b"", b"")
    assert (ours.out, ours.err) == (b"", b"")
    assert theirs.code != 0
    assert ours.code != 0


# ------------------------------------------------------------------ pub


@dataclass
class Recorder:
    """A persistent session per side that collects what the side's publisher sent."""

    broker: MosquittoBroker
    version: ProtocolVersion = ProtocolVersion.V5
    records: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)

    def options(self, name: str) -> MqttOptions:
        return MqttOptions(
            f"recorder-{name}",
            self.broker.host,
            self.broker.port,
            clean_start=False,
            protocol_version=self.version,
            session_expiry_interval=0xFFFFFFFF,
            max_incoming_packet_size=4 * 1024 * 1024,
        )

    def start(self, name: str) -> None:
        async def subscribe() -> None:
            with trio.fail_after(10):
                async with open_mqtt_connection(self.options(name)) as conn:
                    await conn.client.subscribe("pub/#", QoS.EXACTLY_ONCE)

        trio.run(subscribe)

    def collect(self, name: str) -> list[tuple[Any, ...]]:
        async def read() -> list[tuple[Any, ...]]:
            got: list[tuple[Any, ...]] = []
            with trio.fail_after(15):
                async with open_mqtt_connection(self.options(name)) as conn:
                    await conn.client.publish("pub/end", b"", QoS.AT_LEAST_ONCE)
                    async for message in conn.messages():
                        if message.topic == "pub/end":
                            break
                        props = message.properties
                        got.append(
                            (
                                message.topic,
                                message.payload,
                                int(message.qos),
                                message.retain,
                                props.content_type,
                                props.response_topic,
                                props.correlation_data,
                                props.payload_format_indicator,
                                props.user_properties,
                                props.message_expiry_interval is not None,
                            )
                        )
            return got

        return trio.run(read)


PUB_CASES: list[tuple[str, list[str], bytes | None]] = [
    ("-m", ["-t", "pub/m", "-m", "hello"], None),
    ("-m -q 1 -r", ["-t", "pub/r", "-m", "kept", "-q", "1", "-r"], None),
    ("-n -q 2", ["-t", "pub/n", "-n", "-q", "2"], None),
    ("-s", ["-t", "pub/s", "-s", "-q", "1"], b"all\nof\x00stdin"),
    ("-l", ["-t", "pub/l", "-l", "-q", "1"], b"one\ntwo\r\n\nlast"),
    (
        "--repeat --repeat-delay",
        ["-t", "pub/rep", "-m", "x", "--repeat", "3", "--repeat-delay", "0.01", "-q", "1"],
        None,
    ),
    (
        "-D publish",
        [
            "-t",
            "pub/d",
            "-m",
            "p",
            "-q",
            "1",
            "-D",
            "publish",
            "content-type",
            "text/x",
            "-D",
            "publish",
            "user-property",
            "a",
            "b",
            "-D",
            "publish",
            "correlation-data",
            "cd",
            "-D",
            "publish",
            "response-topic",
            "pub/reply",
            "-D",
            "publish",
            "payload-format-indicator",
            "1",
            "-D",
            "publish",
            "message-expiry-interval",
            "50",
            "-D",
            "publish",
            "user-property",
            "c",
            "d",
        ],
        None,
    ),
    (
        "-c -x -i -M -k -A",
        [
            "-V",
            "5",
            "-c",
            "-x",
            "10",
            "-i",
            "pub-client",
            "-M",
            "3",
            "-k",
            "20",
            "-A",
            "127.0.0.1",
            "--nodelay",
            "-t",
            "pub/c",
            "-m",
            "c",
            "-q",
            "1",
        ],
        None,
    ),
    ("-I --quiet", ["-I", "prefix-", "--quiet", "-t", "pub/i", "-m", "i"], None),
    (
        "-D connect/will/disconnect",
        [
            "-D",
            "connect",
            "user-property",
            "k",
            "v",
            "--will-topic",
            "pub/will",
            "-D",
            "will",
            "content-type",
            "w",
            "-D",
            "disconnect",
            "session-expiry-interval",
            "0",
            "-t",
            "pub/w",
            "-m",
            "w",
            "-q",
            "2",
        ],
        None,
    ),
]


@pytest.fixture
def queueing_broker(mosquitto_factory) -> MosquittoBroker:
    """A broker that keeps QoS 0 messages for offline sessions too (for the recorder)."""
    broker: MosquittoBroker = mosquitto_factory(extra_config=["queue_qos0_messages true"])
    return broker


@pytest.mark.parametrize(
    ("args", "stdin"),
    [(args, stdin) for _, args, stdin in PUB_CASES],
    ids=[name for name, _, _ in PUB_CASES],
)
def test_pub(queueing_broker: MosquittoBroker, args: list[str], stdin: bytes | None) -> None:
    mosquitto = queueing_broker
    recorder = Recorder(mosquitto)
    recorder.start("mosq")
    theirs = run(["mosquitto_pub", *hp(mosquitto), *args], stdin)
    got_theirs = recorder.collect("mosq")
    recorder.start("trio")
    ours = run([sys.executable, "-m", "trio_mqtt", "pub", *hp(mosquitto), *args], stdin)
    got_ours = recorder.collect("trio")
    assert (ours.code, ours.out) == (theirs.code, theirs.out), (theirs.err, ours.err)
    assert theirs.code == 0, theirs.err
    assert got_ours == got_theirs
    assert got_theirs


def test_pub_url_with_topic_and_big_file(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    """``-L mqtt://host:port/topic`` and a 2 MiB ``-f`` file, which mosquitto_pub sends."""
    path = tmp_path / "big.bin"
    path.write_bytes(bytes(range(256)) * (8 * 1024))  # 2 MiB
    recorder = Recorder(mosquitto)
    url = f"mqtt://{mosquitto.host}:{mosquitto.port}/pub/big"
    results = {}
    for side, command in (
        ("mosq", ["mosquitto_pub"]),
        ("trio", [sys.executable, "-m", "trio_mqtt", "pub"]),
    ):
        recorder.start(side)
        result = run([*command, "-L", url, "-f", str(path), "-q", "1"])
        assert result.code == 0, result.err
        results[side] = recorder.collect(side)
    assert results["trio"] == results["mosq"]
    assert results["mosq"][0][1] == path.read_bytes()


def test_pub_unix_socket(mosquitto_factory) -> None:
    broker = mosquitto_factory(unix_socket=True)
    recorder = Recorder(broker)
    records = {}
    for side, command in (
        ("mosq", ["mosquitto_pub"]),
        ("trio", [sys.executable, "-m", "trio_mqtt", "pub"]),
    ):
        recorder.start(side)
        result = run(
            [*command, "--unix", str(broker.unix_path), "-t", "pub/u", "-m", "u", "-q", "1"]
        )
        assert (result.code, result.out) == (0, b""), result.err
        records[side] = recorder.collect(side)
    assert records["trio"] == records["mosq"]
    assert [record[:3] for record in records["mosq"]] == [("pub/u", b"u", 1)]


def test_pub_tls_flags(mosquitto_factory, tmp_path: Path) -> None:
    broker = mosquitto_factory(tls=True)
    capath = tmp_path / "cas"
    capath.mkdir()
    shutil.copy(broker.ca_pem_path, capath / "ca.pem")
    subprocess.run(["openssl", "rehash", str(capath)], check=True, timeout=TIMEOUT)
    ca = ["--cafile", str(broker.ca_pem_path)]
    recorder = Recorder(broker)
    for number, extra in enumerate(
        (
            ca,
            ["--capath", str(capath)],
            [*ca, "--tls-use-os-certs"],
            [*ca, "--tls-version", "tlsv1.2"],
            [*ca, "--tls-version", "tlsv1.3"],
            [*ca, "--tls-alpn", "mqtt"],
        )
    ):
        args = ["-h", "localhost", "-p", str(broker.tls_port), "-t", "pub/tls", "-q", "1", *extra]
        records = {}
        for side, command in (
            ("mosq", ["mosquitto_pub"]),
            ("trio", [sys.executable, "-m", "trio_mqtt", "pub"]),
        ):
            recorder.start(f"{side}-{number}")
            result = run([*command, *args, "-m", f"tls {number}"])
            assert (result.code, result.out) == (0, b""), (extra, result.err)
            records[side] = recorder.collect(f"{side}-{number}")
        assert records["trio"] == records["mosq"], extra
        assert [record[1] for record in records["mosq"]] == [b"tls %d" % number], extra


def test_pub_quiet_hides_errors(mosquitto: MosquittoBroker) -> None:
    port = str(mosquitto.port)
    mosquitto.stop()
    theirs, ours = both("pub", ["-p", port, "--quiet", "-t", "x", "-m", "x"])
    assert (theirs.out, theirs.err) == (b"", b"")
    assert (ours.out, ours.err) == (b"", b"")
    assert theirs.code != 0
    assert ours.code != 0


@pytest.mark.parametrize("format_", ["%i", "%", "%5", "%-0", "\\q", "\\", "@"])
def test_sub_bad_format_is_refused_before_connecting(
    mosquitto: MosquittoBroker, format_: str
) -> None:
    """Both refuse the format with the same words, before connecting (the port is closed).

    The exit status differs on purpose: 1 for mosquitto_sub, 2 (bad arguments) for trio-mqtt.
    """
    port = str(mosquitto.port)
    mosquitto.stop()
    theirs, ours = both("sub", ["-p", port, "-F", format_, "-t", "x"])
    assert (theirs.code, ours.code) == (1, 2)
    assert theirs.out == ours.out == b""
    wording = theirs.err.splitlines()[0].removeprefix(b"Error: ")
    assert wording.endswith(b"specifier.") or b"specifier '" in wording
    assert ours.err == b"trio-mqtt: error: -F: " + wording + b"\n"


def test_sub_random_filter(mosquitto: MosquittoBroker) -> None:
    """``--random-filter 100`` prints every message, as mosquitto_sub's --help says.

    mosquitto_sub 2.0.11 scales the percentage by ten where it means a hundred and so prints
    about one message in ten: its output is some of trio-mqtt's lines, in the same order.
    """
    seed(mosquitto)
    args = [*hp(mosquitto), "-t", "s/#", "-v", "-W", "1"]
    everything = run(["mosquitto_sub", *args])
    theirs, ours = both("sub", [*args, "--random-filter", "100"])
    assert (theirs.code, ours.code) == (27, 27)
    assert ours.out == everything.out
    assert len(everything.out.splitlines()) == len(RETAINED)
    lines = iter(ours.out.splitlines())
    assert all(line in lines for line in theirs.out.splitlines())  # an ordered subset
    theirs, ours = both("sub", [*args, "--random-filter", "0"])  # out of range for both
    assert (theirs.code, ours.code) == (1, 2)
    assert theirs.out == ours.out == b""
    assert b"--random-filter" in theirs.err
    assert b"--random-filter" in ours.err
