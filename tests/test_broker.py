"""The embedded broker's Trio layer end to end: listeners, limits, hostile peers, shutdown, and
the mosquitto command-line clients against it."""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing
import trustme

from trio_mqtt import (
    ConnectionRefused,
    DisconnectedByBroker,
    MqttOptions,
    ProtocolVersion,
    QoS,
    ReasonCode,
    TlsTransport,
    WebSocketTransport,
    open_mqtt_connection,
)
from trio_mqtt.broker import BrokerConfig, Listener, MqttBroker, open_mqtt_broker
from trio_mqtt.broker._server import WRITER_IDLE
from trio_mqtt.testing import EmbeddedBroker

V5 = ProtocolVersion.V5


async def round_trip(options: MqttOptions, topic: str = "rt/x") -> bytes:
    async with open_mqtt_connection(options) as conn:
        await conn.client.subscribe(topic, QoS.AT_LEAST_ONCE)
        await conn.client.publish(topic, b"through", qos=QoS.AT_LEAST_ONCE)
        async for message in conn.messages():
            return message.payload
    raise AssertionError("no message")  # pragma: no cover


async def test_broker_serves_and_counts() -> None:
    with trio.fail_after(10):
        async with open_mqtt_broker() as broker:
            assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
            options = MqttOptions("counted", broker.host, broker.port, protocol_version=V5)
            assert await round_trip(options) == b"through"
            stats = broker.statistics()
            assert stats.messages_received == 1
            assert stats.messages_sent == 1
            assert broker.publish("rt/none", "from the broker") == 0


async def test_leaving_the_block_disconnects_v5_clients_with_server_shutting_down() -> None:
    stop = trio.Event()

    async def run_broker(task_status: trio.TaskStatus[MqttBroker]) -> None:
        async with open_mqtt_broker() as broker:
            task_status.started(broker)
            await stop.wait()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            broker = await nursery.start(run_broker)
            options = MqttOptions("bye", broker.host, broker.port, protocol_version=V5)
            async with open_mqtt_connection(options) as conn:
                stop.set()
                with pytest.raises(DisconnectedByBroker) as info:
                    while True:
                        await conn.poll()
                assert info.value.reason_code == ReasonCode.SERVER_SHUTTING_DOWN


async def test_connection_limit_refuses_with_server_busy() -> None:
    with trio.fail_after(10):
        config = BrokerConfig(max_connections=1)
        async with open_mqtt_broker(config=config) as broker:
            first = MqttOptions("first", broker.host, broker.port, protocol_version=V5)
            second = MqttOptions("second", broker.host, broker.port, protocol_version=V5)
            async with open_mqtt_connection(first):
                with pytest.raises(ConnectionRefused) as info:
                    async with open_mqtt_connection(second):
                        pass  # pragma: no cover
                assert info.value.reason_code == ReasonCode.SERVER_BUSY


async def test_garbage_closes_that_connection_only() -> None:
    with trio.fail_after(10):
        async with open_mqtt_broker() as broker:
            for garbage in (b"\x00" * 10, b"\x10\xff\xff\xff\xff\x7f", b"GET / HTTP/1.1\r\n\r\n"):
                stream = await trio.open_tcp_stream(broker.host, broker.port)
                await stream.send_all(garbage)
                assert await stream.receive_some(100) == b""  # closed by the broker
                await stream.aclose()
            # an oversized packet announced by a connected v5 client: DISCONNECT 0x95
            stream = await trio.open_tcp_stream(broker.host, broker.port)
            await stream.send_all(b"\x10\x0d\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x00")
            assert (await stream.receive_some(100))[:1] == b"\x20"  # CONNACK
            await stream.send_all(b"\x30\xff\xff\xff\x7f")
            assert await stream.receive_some(100) == b"\xe0\x01\x95"  # no properties
            await stream.aclose()
            options = MqttOptions("after", broker.host, broker.port)
            assert await round_trip(options) == b"through"
            assert broker.statistics().internal_errors == 0


async def test_a_subscriber_that_never_reads_does_not_hold_up_others() -> None:
    with trio.fail_after(20):
        config = BrokerConfig(max_output_bytes=64 * 1024, max_queued_messages=500)
        async with open_mqtt_broker(config=config) as broker:
            stuck = trio.socket.socket()
            stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            await stuck.connect((broker.host, broker.port))
            with stuck:
                await stuck.send(b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02st")
                await stuck.send(b"\x82\x08\x00\x01\x00\x03big\x01")  # SUBSCRIBE big, QoS 1
                acks = b""
                while len(acks) < 9:  # CONNACK (4 bytes) and SUBACK (5 bytes); then never again
                    acks += await stuck.recv(9 - len(acks))
                fast = MqttOptions("fast", broker.host, broker.port)
                async with open_mqtt_connection(fast) as conn:
                    await conn.client.subscribe("big", QoS.AT_LEAST_ONCE)
                    payload = b"x" * 1024

                    async def publish_all() -> None:
                        for _ in range(2000):
                            await conn.client.publish("big", payload, qos=QoS.AT_LEAST_ONCE)

                    received = 0
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(publish_all)
                        async for _message in conn.messages():
                            received += 1
                            if received == 2000:
                                break
                stats = broker.statistics()
                assert stats.dropped_queue_full > 0  # the stuck one lost messages: bounded
                assert len(broker.core.sessions["st"].queue) == 500


async def test_a_client_that_sends_but_never_reads_is_not_read_either() -> None:
    """PINGREQs from a client that never reads its PINGRESPs: the broker stops reading that
    client once its output bound is full (TCP pushes back on the sender), instead of keeping
    every answer in memory; other clients are served meanwhile."""
    with trio.fail_after(20):
        config = BrokerConfig(max_output_bytes=16 * 1024)
        async with open_mqtt_broker(config=config) as broker:
            flooder = trio.socket.socket()
            flooder.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            await flooder.connect((broker.host, broker.port))
            with flooder:
                await flooder.send(b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02fl")
                assert await flooder.recv(4) == b"\x20\x02\x00\x00"
                chunk = b"\xc0\x00" * 32768  # 64 KiB of PINGREQ
                sent = 0
                limit = 8 * 1024 * 1024  # the broker would read all of it without the bound
                while sent < limit:
                    with trio.move_on_after(1.0):
                        sent += await flooder.send(chunk)
                        continue
                    break  # one second without the broker taking a byte: it pushed back
                assert sent < limit
                received = broker.statistics().bytes_received
                options = MqttOptions("other", broker.host, broker.port)
                assert await round_trip(options) == b"through"
                await trio.sleep(0.2)
                # it still reads nothing more from the flooder
                assert broker.statistics().bytes_received - received < 1024


def writer_tasks() -> int:
    """Tasks running the broker's per-connection writer, anywhere in this Trio run."""
    found = 0
    pending = [trio.lowlevel.current_root_task()]
    while pending:
        task = pending.pop()
        found += task.name.endswith("MqttBroker._writer")
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return found


async def test_an_idle_connection_keeps_no_writer_task_and_still_gets_messages() -> None:
    with trio.fail_after(10):
        async with open_mqtt_broker() as broker:
            options = MqttOptions("idle", broker.host, broker.port, protocol_version=V5)
            async with open_mqtt_connection(options) as conn:
                await conn.client.subscribe("idle/t", QoS.AT_LEAST_ONCE)
                for _ in range(100):  # the writer ends once idle for WRITER_IDLE
                    if not writer_tasks():
                        break
                    await trio.sleep(WRITER_IDLE)
                assert writer_tasks() == 0
                assert broker.publish("idle/t", b"later", qos=1) == 1
                async for message in conn.messages():
                    assert message.payload == b"later"
                    break
                assert writer_tasks() <= 1


async def test_tls_websocket_and_unix_listeners(tmp_path: Path) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    listeners = [
        Listener("tls", "127.0.0.1", 0, ssl_context=server_context),
        Listener("ws", "127.0.0.1", 0),
        Listener("wss", "127.0.0.1", 0, ssl_context=server_context),
        Listener("unix", path=str(tmp_path / "mqtt.sock")),
    ]
    with trio.fail_after(20):
        async with open_mqtt_broker(listeners=listeners) as broker:
            for kind in ("tls", "ws", "wss", "unix"):
                url = broker.url_for(kind)
                options = MqttOptions.from_url(url, client_id=f"via-{kind}")
                if kind == "tls":
                    options = options.replace(transport=TlsTransport(ssl_context=client_context))
                elif kind == "wss":
                    options = options.replace(
                        transport=WebSocketTransport(path="/mqtt", tls=client_context)
                    )
                assert await round_trip(options, f"via/{kind}") == b"through", kind


def test_embedded_broker_tls_and_websockets_like_mosquitto() -> None:
    with EmbeddedBroker(tls=True, websockets=True, unix_socket=True) as broker:

        async def main() -> None:
            with trio.fail_after(10):
                tls = MqttOptions.from_url(broker.tls_url, client_id="e-tls").replace(
                    transport=TlsTransport(ssl_context=broker.client_ssl_context())
                )
                assert await round_trip(tls) == b"through"
                for url in (broker.ws_url, broker.unix_url):
                    options = MqttOptions.from_url(url, client_id="e-other")
                    assert await round_trip(options) == b"through"

        trio.run(main)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``condition`` (bounded, 5 ms apart) until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def _command(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is missing: apt-get install -y mosquitto-clients (noxfile does it)"
    return found


@pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])
def test_mosquitto_command_line_clients_work_against_it(version: str) -> None:
    sub_cmd, pub_cmd = _command("mosquitto_sub"), _command("mosquitto_pub")
    with EmbeddedBroker() as broker:
        where = ["-h", broker.host, "-p", str(broker.port), "-V", version]
        with subprocess.Popen(
            [sub_cmd, *where, "-t", "cli/#", "-q", "2", "-C", "3", "-v", "-W", "10"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        ) as sub:
            try:
                wait_until(lambda: broker.statistics().subscriptions >= 1)
                for qos in (0, 1, 2):
                    subprocess.run(
                        [pub_cmd, *where, "-t", f"cli/{qos}", "-m", f"qos {qos}", "-q", str(qos)],
                        check=True,
                        timeout=10,
                    )
                out, err = sub.communicate(timeout=15)
            finally:
                sub.kill()
        assert sub.returncode == 0, err
        assert sorted(out.decode().splitlines()) == ["cli/0 qos 0", "cli/1 qos 1", "cli/2 qos 2"]


async def test_failed_handshakes_close_only_that_connection() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    listeners = [
        Listener("tls", "127.0.0.1", 0, ssl_context=server_context),
        Listener("ws", "127.0.0.1", 0),
    ]
    with trio.fail_after(20):
        async with open_mqtt_broker(listeners=listeners) as broker:
            tls_port = broker.listeners[1].port
            ws_port = broker.listeners[2].port
            # plain MQTT to the TLS port: the handshake fails, the socket is closed
            stream = await trio.open_tcp_stream("127.0.0.1", tls_port)
            await stream.send_all(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")
            with contextlib.suppress(trio.BrokenResourceError):  # a reset ends it too
                while await stream.receive_some(100):  # the broker's TLS alert, then EOF
                    pass
            await stream.aclose()
            # not an HTTP upgrade on the WebSocket port: 400, then closed
            stream = await trio.open_tcp_stream("127.0.0.1", ws_port)
            await stream.send_all(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00\r\n\r\n")
            answer = b""
            while chunk := await stream.receive_some(1000):
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 400")
            await stream.aclose()
            options = MqttOptions("still-fine", broker.host, broker.port)
            assert await round_trip(options) == b"through"


def test_embedded_broker_fixture_gives_a_running_broker(embedded_broker: EmbeddedBroker) -> None:
    assert embedded_broker.running
    with socket.create_connection((embedded_broker.host, embedded_broker.port), timeout=5) as s:
        s.sendall(b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02fx")
        assert s.recv(4) == b"\x20\x02\x00\x00"


async def test_a_taken_over_connection_that_never_reads_is_closed_anyway() -> None:
    with trio.fail_after(20):
        config = BrokerConfig(max_output_bytes=1024 * 1024)
        async with open_mqtt_broker(config=config) as broker:
            stuck = trio.socket.socket()
            stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            await stuck.connect((broker.host, broker.port))
            with stuck:
                await stuck.send(b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02tk")
                await stuck.send(b"\x82\x08\x00\x01\x00\x03big\x00")  # SUBSCRIBE big, QoS 0
                acks = b""
                while len(acks) < 9:
                    acks += await stuck.recv(9 - len(acks))
                for _ in range(300):  # far more than the socket buffers hold
                    broker.publish("big", b"x" * 4096)
                await trio.testing.wait_all_tasks_blocked()  # the writer: stuck on a full socket
                start = trio.current_time()
                # the same client id connects again: the stuck connection must go
                options = MqttOptions("tk", broker.host, broker.port)
                async with open_mqtt_connection(options):
                    # polls broker state (the stuck connection is still there), bounded above
                    while len(broker.core.connections) > 1:  # noqa: ASYNC110
                        await trio.sleep(0.05)
                assert trio.current_time() - start < 5
