"""trio_mqtt.testing: the private mosquitto broker and its pytest fixtures.

Apart from the documented example, which uses the trio-mqtt client, the broker is checked with
hand-built MQTT packets over plain sockets, so these tests depend on nothing but mosquitto
itself (and trio-websocket for the WebSocket listeners).
"""

from __future__ import annotations

import gc
import os
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import trio
from trio_websocket import open_websocket_url

import trio_mqtt
from trio_mqtt import QoS, open_mqtt_connection
from trio_mqtt.testing import MosquittoBroker, MosquittoError, find_mosquitto
from trio_mqtt.testing._plugin import BrokerFactory

TIMEOUT = 5.0

# ---------------------------------------------------------------------------------------------
# Just enough MQTT to talk to a broker by hand.


def _string(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def _remaining_length(size: int) -> bytes:
    out = bytearray()
    while True:
        size, digit = divmod(size, 128)
        out.append(digit | (0x80 if size else 0))
        if not size:
            return bytes(out)


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + _remaining_length(len(body)) + body


def connect_packet(
    client_id: str = "fixture-test",
    username: str | None = None,
    password: str | None = None,
    *,
    version: int = 4,
    keep_alive: int = 60,
) -> bytes:
    """CONNECT with a clean session, for MQTT 3.1.1 (version 4) or 5.0 (version 5)."""
    flags = 0x02 | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    body = _string("MQTT") + bytes([version, flags]) + keep_alive.to_bytes(2, "big")
    if version == 5:
        body += b"\x00"  # no properties
    body += _string(client_id)
    if username is not None:
        body += _string(username)
    if password is not None:
        body += _string(password)
    return _packet(0x10, body)


def recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError("the broker closed the connection")
        data += chunk
    return data


def recv_packet(sock: socket.socket) -> tuple[int, bytes]:
    """(first byte, body) of the next packet."""
    first = recv_exact(sock, 1)[0]
    size, shift = 0, 0
    while True:
        digit = recv_exact(sock, 1)[0]
        size |= (digit & 0x7F) << shift
        shift += 7
        if not digit & 0x80:
            break
    return first, recv_exact(sock, size)


def connack_code(sock: socket.socket, packet: bytes) -> int:
    """Send CONNECT, return the CONNACK return code (3.1.1) or reason code (5.0)."""
    sock.sendall(packet)
    first, body = recv_packet(sock)
    assert first == 0x20, f"expected CONNACK, got first byte {first:#x}"
    return body[1]


def tcp_connection(broker: MosquittoBroker) -> socket.socket:
    return socket.create_connection((broker.host, broker.port), timeout=TIMEOUT)


def publish_retained_qos1(sock: socket.socket, topic: str, payload: bytes) -> None:
    sock.sendall(_packet(0x33, _string(topic) + b"\x00\x01" + payload))
    assert recv_packet(sock) == (0x40, b"\x00\x01")  # PUBACK: the broker has it


def subscribe_then_ping(sock: socket.socket, topic_filter: str) -> list[tuple[int, bytes]]:
    """SUBSCRIBE, then PINGREQ; every packet up to PINGRESP (retained messages come first)."""
    sock.sendall(_packet(0x82, b"\x00\x02" + _string(topic_filter) + b"\x00"))
    sock.sendall(b"\xc0\x00")
    packets = []
    while (packet := recv_packet(sock)) != (0xD0, b""):
        packets.append(packet)
    return packets


def process_exists(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until_gone(pid: int, timeout: float = TIMEOUT) -> bool:
    """Poll (bounded) for a process that something else is killing asynchronously."""
    deadline = time.monotonic() + timeout
    while process_exists(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def checkout_environment() -> dict[str, str]:
    """Environment for a child Python that must import this checkout's trio_mqtt."""
    checkout = str(Path(trio_mqtt.__file__).parent.parent)
    paths = [checkout, os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}


# ---------------------------------------------------------------------------------------------
# The documented example (docs/testing.rst includes the lines between the markers), and the
# same login without the client.


# [docs-example-start]
async def test_publish_and_receive(mosquitto_factory):
    broker = mosquitto_factory(users={"alice": "secret"})
    url = f"mqtt://alice:secret@{broker.host}:{broker.port}/"
    with trio.fail_after(5):
        async with open_mqtt_connection(url) as conn:
            await conn.client.subscribe("greetings/#", QoS.AT_LEAST_ONCE)
            await conn.client.publish("greetings/world", b"hello", qos=QoS.AT_LEAST_ONCE)
            async for message in conn.messages():
                assert message.topic == "greetings/world"
                assert message.payload == b"hello"
                break
    # [docs-example-end]


# An MQTT 3.1.1 CONNECT as user "alice" with password "secret", spelled out byte by byte.
CONNECT_AS_ALICE = (
    b"\x10\x1f"  # CONNECT; 31 bytes follow
    b"\x00\x04MQTT\x04\xc2\x00\x3c"  # MQTT 3.1.1; user name, password, clean session; 60 s
    b"\x00\x04test"  # client identifier
    b"\x00\x05alice\x00\x06secret"  # user name, password
)


async def test_alice_can_log_in(mosquitto_factory):
    broker = mosquitto_factory(users={"alice": "secret"})
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream(broker.host, broker.port)
        async with stream:
            await stream.send_all(CONNECT_AS_ALICE)
            connack = await stream.receive_some(4)
    assert connack == b"\x20\x02\x00\x00"  # CONNACK, return code 0: accepted


def test_documented_connect_packet_is_well_formed() -> None:
    assert connect_packet("test", "alice", "secret") == CONNECT_AS_ALICE


# ---------------------------------------------------------------------------------------------
# Lifecycle


def test_start_stop_and_no_process_left() -> None:
    broker = MosquittoBroker()
    try:
        assert not broker.running
        assert broker.pid is None
        broker.start()
        pid = broker.pid
        assert pid is not None
        assert broker.running
        assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
        assert broker.port != 1883
        with tcp_connection(broker) as sock:
            assert connack_code(sock, connect_packet()) == 0
        broker.stop()
        assert not broker.running
        assert not process_exists(pid)
        with pytest.raises(ConnectionRefusedError):
            tcp_connection(broker).close()
        assert "mosquitto version" in broker.log
        assert "terminating" in broker.log
        broker.stop()  # stopping twice is harmless
    finally:
        broker.close()
    assert not broker.directory.exists()
    with pytest.raises(MosquittoError, match="closed"):
        broker.start()


def test_context_manager_cleans_up() -> None:
    with MosquittoBroker() as broker:
        pid = broker.pid
        assert pid is not None
        folder = broker.directory
        assert (folder / "mosquitto.conf").exists()
        assert "running" in repr(broker)
    assert not process_exists(pid)
    assert not folder.exists()
    assert "closed" in repr(broker)


def test_start_twice_is_an_error() -> None:
    with MosquittoBroker() as broker, pytest.raises(MosquittoError, match="already running"):
        broker.start()


def test_every_listener_binds_loopback_only() -> None:
    with MosquittoBroker(tls=True, websockets=True, websockets_tls=True) as broker:
        config = broker.config_text()
        listeners = [line for line in config.splitlines() if line.startswith("listener ")]
        assert len(listeners) == 4
        assert all(line.endswith(" 127.0.0.1") for line in listeners)
        assert config.count("socket_domain ipv4") == 2
        assert "1883" not in config
        ports = {broker.port, broker.tls_port, broker.ws_port, broker.wss_port}
        assert len(ports) == 4


def test_restart_keeps_ports() -> None:
    with MosquittoBroker(websockets=True) as broker:
        ports = (broker.port, broker.ws_port)
        old_pid = broker.pid
        broker.restart()
        assert (broker.port, broker.ws_port) == ports
        assert broker.pid != old_pid
        with tcp_connection(broker) as sock:
            assert connack_code(sock, connect_packet()) == 0


def test_kill_then_restart() -> None:
    with MosquittoBroker() as broker:
        pid = broker.pid
        assert pid is not None
        with tcp_connection(broker) as sock:
            assert connack_code(sock, connect_packet()) == 0
            broker.kill()
            assert not process_exists(pid)
            with pytest.raises((EOFError, ConnectionResetError)):
                recv_packet(sock)
        assert not broker.running
        port = broker.port
        broker.restart()
        assert broker.port == port
        with tcp_connection(broker) as sock:
            assert connack_code(sock, connect_packet()) == 0


@pytest.mark.parametrize("persistence", [True, False])
def test_persistence_survives_restart(persistence: bool) -> None:
    with MosquittoBroker(persistence=persistence) as broker:
        with tcp_connection(broker) as sock:
            assert connack_code(sock, connect_packet("publisher")) == 0
            publish_retained_qos1(sock, "kept/topic", b"still here")
        broker.restart()
        with tcp_connection(broker) as sock:
            assert connack_code(sock, connect_packet("subscriber")) == 0
            packets = subscribe_then_ping(sock, "kept/#")
    assert packets[0] == (0x90, b"\x00\x02\x00")  # SUBACK, granted QoS 0
    retained = [body for first, body in packets[1:] if first == 0x31]  # PUBLISH, retain flag
    if persistence:
        assert retained == [_string("kept/topic") + b"still here"]
    else:
        assert retained == []


def test_start_retries_when_a_port_is_taken() -> None:
    broker = MosquittoBroker()
    try:
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", broker.port))
            squatter.listen()
            taken = broker.port
            broker.start()
            assert broker.port != taken
            assert "Address already in use" in broker.log
            assert "retrying start" in broker.log
            with tcp_connection(broker) as sock:
                assert connack_code(sock, connect_packet()) == 0
    finally:
        broker.close()


def test_restart_keeps_its_port_even_when_taken() -> None:
    with MosquittoBroker() as broker:
        broker.stop()
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", broker.port))
            squatter.listen()
            with pytest.raises(MosquittoError, match="Address already in use"):
                broker.start()
        assert not broker.running
        broker.start()  # the port is free again
        assert broker.running


def test_early_exit_raises_with_the_log() -> None:
    broker = MosquittoBroker(extra_config=["no_such_option true"])
    try:
        with pytest.raises(MosquittoError, match="exited with status") as info:
            broker.start()
        assert "no_such_option" in str(info.value)
        assert not broker.running
    finally:
        broker.close()


def test_quiet_log_still_reports_readiness() -> None:
    with MosquittoBroker(log_types=["error"], extra_config=["max_keepalive 90"]) as broker:
        config = broker.config_text()
        assert "log_type error\nlog_type information\n" in config
        assert config.endswith("\nmax_keepalive 90\n")
        with tcp_connection(broker) as sock:
            assert connack_code(sock, connect_packet()) == 0
        assert "running" in broker.log
        assert "Sending CONNACK" not in broker.log  # debug lines are off


def test_default_log_shows_packets(mosquitto: MosquittoBroker) -> None:
    with tcp_connection(mosquitto) as sock:
        assert connack_code(sock, connect_packet("logged-client")) == 0
    assert "Sending CONNACK to logged-client" in mosquitto.log


def test_broker_dies_with_a_killed_interpreter() -> None:
    # SIGKILL skips every finalizer; the watchdog shell must still take the broker down.
    script = (
        "import time\n"
        "from trio_mqtt.testing import MosquittoBroker\n"
        "broker = MosquittoBroker(unix_socket=True)\n"
        "broker.start()\n"
        "print(broker.pid, broker.directory, flush=True)\n"
        "time.sleep(60)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        env=checkout_environment(),
    ) as child:
        assert child.stdout is not None
        pid_text, folder = child.stdout.readline().split()
        pid = int(pid_text)
        assert process_exists(pid)
        child.kill()
        child.wait(TIMEOUT)
    assert wait_until_gone(pid)
    deadline = time.monotonic() + TIMEOUT
    while Path(folder).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not Path(folder).exists()


def test_missing_binary_explains_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("trio_mqtt.testing._broker.find_mosquitto", lambda: None)
    with pytest.raises(MosquittoError, match="apt-get install mosquitto"):
        MosquittoBroker()


def test_find_mosquitto_looks_in_sbin(monkeypatch: pytest.MonkeyPatch) -> None:
    found = find_mosquitto()
    assert found is not None
    assert os.access(found, os.X_OK)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert find_mosquitto() in {
        os.path.join(folder, "mosquitto") for folder in ("/usr/sbin", "/usr/local/sbin")
    }


def test_option_errors() -> None:
    with pytest.raises(ValueError, match="require_certificate"):
        MosquittoBroker(require_certificate=True)
    with pytest.raises(TypeError, match="sequence of lines"):
        MosquittoBroker(extra_config="max_keepalive 5")


def test_missing_listeners_are_reported() -> None:
    broker = MosquittoBroker()
    try:
        for name in ("tls_port", "tls_url", "ws_url", "wss_url", "unix_url", "ca", "client_cert"):
            with pytest.raises(MosquittoError, match="pass"):
                getattr(broker, name)
    finally:
        broker.close()


def test_forgotten_broker_is_killed_by_the_finalizer() -> None:
    broker = MosquittoBroker()
    broker.start()
    pid = broker.pid
    folder = broker.directory
    assert pid is not None
    del broker
    gc.collect()
    assert not process_exists(pid)
    assert not folder.exists()


# ---------------------------------------------------------------------------------------------
# Authentication and limits


def test_users_and_passwords() -> None:
    with MosquittoBroker(users={"alice": "secret", "bob": "hunter2"}) as broker:
        cases: list[tuple[str | None, str | None, int]] = [
            ("alice", "secret", 0),
            ("bob", "hunter2", 0),
            ("alice", "hunter2", 5),  # 3.1.1 "not authorized"
            ("mallory", "secret", 5),
            (None, None, 5),  # anonymous refused once users exist
        ]
        for username, password, expected in cases:
            with tcp_connection(broker) as sock:
                packet = connect_packet(username=username, password=password)
                assert connack_code(sock, packet) == expected, (username, password)
        assert "$7$101$" in (broker.directory / "passwords").read_text()


def test_users_with_anonymous_allowed() -> None:
    with MosquittoBroker(users={"alice": "secret"}, allow_anonymous=True) as broker:
        with tcp_connection(broker) as sock:
            assert connack_code(sock, connect_packet()) == 0
        with tcp_connection(broker) as sock:
            assert connack_code(sock, connect_packet(username="alice", password="nope")) == 5


def test_anonymous_can_be_refused_without_users() -> None:
    with MosquittoBroker(allow_anonymous=False) as broker, tcp_connection(broker) as sock:
        assert connack_code(sock, connect_packet(version=5)) == 0x87  # v5 Not authorized


def test_limits_reach_the_broker() -> None:
    options: dict[str, Any] = {
        "max_keepalive": 30,
        "max_packet_size": 4000,
        "max_inflight_messages": 7,
        "max_queued_messages": 50,
    }
    with MosquittoBroker(**options) as broker, tcp_connection(broker) as sock:
        sock.sendall(connect_packet(version=5, keep_alive=600))
        first, body = recv_packet(sock)
        config = broker.config_text()
    assert first == 0x20
    assert body[1] == 0  # success
    properties = body[3:]
    assert b"\x13" + (30).to_bytes(2, "big") in properties  # Server Keep Alive
    assert b"\x27" + (4000).to_bytes(4, "big") in properties  # Maximum Packet Size
    assert b"\x21" + (7).to_bytes(2, "big") in properties  # Receive Maximum
    for name, value in options.items():
        assert f"\n{name} {value}\n" in config


# ---------------------------------------------------------------------------------------------
# Other listeners


def tls_connack(broker: MosquittoBroker, context: ssl.SSLContext) -> int:
    with (
        socket.create_connection((broker.host, broker.tls_port), timeout=TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return connack_code(tls, connect_packet())


def test_tls_listener() -> None:
    with MosquittoBroker(tls=True) as broker:
        assert broker.tls_url == f"mqtts://127.0.0.1:{broker.tls_port}"
        assert broker.ca_pem_path.read_bytes() == broker.ca.cert_pem.bytes()
        assert tls_connack(broker, broker.client_ssl_context()) == 0
        with pytest.raises(ssl.SSLCertVerificationError):
            tls_connack(broker, ssl.create_default_context())
        # The plain listener is still there.
        with tcp_connection(broker) as sock:
            assert connack_code(sock, connect_packet()) == 0


def test_tls_listener_requiring_client_certificates() -> None:
    with MosquittoBroker(tls=True, require_certificate=True) as broker:
        assert tls_connack(broker, broker.client_ssl_context()) == 0
        assert broker.client_cert_path.exists()
        assert broker.client_key_path.exists()
        assert broker.client_cert is not None
        without = broker.client_ssl_context(client_certificate=False)
        with pytest.raises((ssl.SSLError, EOFError, ConnectionResetError)):
            tls_connack(broker, without)


def test_unix_socket_listener() -> None:
    with MosquittoBroker(unix_socket=True) as broker:
        assert broker.unix_url == f"unix://{broker.unix_path}"
        assert Path(broker.unix_path).is_socket()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(TIMEOUT)
            sock.connect(str(broker.unix_path))
            assert connack_code(sock, connect_packet()) == 0


async def websocket_connack(url: str, ssl_context: ssl.SSLContext | None = None) -> bytes:
    with trio.fail_after(TIMEOUT):
        async with open_websocket_url(url, ssl_context=ssl_context, subprotocols=["mqtt"]) as ws:
            assert ws.subprotocol == "mqtt"
            await ws.send_message(connect_packet())
            message = await ws.get_message()
    assert isinstance(message, bytes)
    return message


async def test_websocket_listeners(mosquitto_factory: BrokerFactory) -> None:
    broker = mosquitto_factory(websockets=True, websockets_tls=True)
    assert broker.ws_url == f"ws://127.0.0.1:{broker.ws_port}/"
    assert broker.wss_url == f"wss://127.0.0.1:{broker.wss_port}/"
    assert await websocket_connack(broker.ws_url) == b"\x20\x02\x00\x00"
    context = broker.client_ssl_context()
    assert await websocket_connack(broker.wss_url, context) == b"\x20\x02\x00\x00"


async def test_restart_from_a_thread(mosquitto: MosquittoBroker) -> None:
    port = mosquitto.port
    with trio.fail_after(TIMEOUT):
        await trio.to_thread.run_sync(mosquitto.restart)
        stream = await trio.open_tcp_stream(mosquitto.host, port)
        async with stream:
            await stream.send_all(connect_packet())
            assert await stream.receive_some(4) == b"\x20\x02\x00\x00"


# ---------------------------------------------------------------------------------------------
# The pytest fixtures


def test_mosquitto_fixture_is_anonymous_and_running(mosquitto: MosquittoBroker) -> None:
    assert mosquitto.running
    assert "allow_anonymous true" in mosquitto.config_text()
    with tcp_connection(mosquitto) as sock:
        assert connack_code(sock, connect_packet()) == 0


def test_factory_makes_independent_brokers(mosquitto_factory: BrokerFactory) -> None:
    first = mosquitto_factory()
    second = mosquitto_factory(users={"u": "p"})
    assert first.port != second.port
    with tcp_connection(second) as sock:
        assert connack_code(sock, connect_packet(username="u", password="p")) == 0


def plugin_arguments() -> list[str]:
    """Load our plugin in a child pytest unless its entry point is installed."""
    from importlib.metadata import entry_points

    installed = any(
        entry.value == "trio_mqtt.testing._plugin" for entry in entry_points(group="pytest11")
    )
    return [] if installed else ["-p", "trio_mqtt.testing._plugin"]


def test_fixtures_stop_every_broker_at_teardown(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The child pytest must import this checkout's trio_mqtt even when it is not installed.
    monkeypatch.setenv("PYTHONPATH", checkout_environment()["PYTHONPATH"])
    pid_file = pytester.path / "pids.txt"
    pytester.makepyfile(
        textwrap.dedent(
            f"""
            def test_uses_brokers(mosquitto, mosquitto_factory):
                brokers = [mosquitto, mosquitto_factory(), mosquitto_factory(unix_socket=True)]
                with open({str(pid_file)!r}, "w") as file:
                    for broker in brokers:
                        assert broker.running
                        file.write(f"{{broker.pid}} {{broker.directory}}\\n")
            """
        )
    )
    result = pytester.runpytest_subprocess(*plugin_arguments(), timeout=60)
    result.assert_outcomes(passed=1)
    lines = pid_file.read_text().split()
    pids, folders = [int(pid) for pid in lines[::2]], lines[1::2]
    assert len(pids) == 3
    assert not any(process_exists(pid) for pid in pids)
    assert not any(Path(folder).exists() for folder in folders)
