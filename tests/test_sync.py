"""The synchronous API (``trio_mqtt.sync``) against a real mosquitto.

These tests are plain (non-async) functions: the API under test runs its own Trio loop in a
background thread. Blocking calls are bounded by ``recv_timeout`` where the API allows it and,
for the rest, by a per-test watchdog that dumps every thread's stack and exits on a hang.
"""

from __future__ import annotations

import gc
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import trio
from broker_clients import options_for

from trio_mqtt import (
    ConnectionClosed,
    ConnectionLost,
    ConnectionRefused,
    Disconnected,
    Incoming,
    InvalidTopicError,
    MqttError,
    MqttOptions,
    Outgoing,
    ProtocolVersion,
    Publish,
    QoS,
    QueueFullError,
    Reconnecting,
    ReconnectPolicy,
    RequestsDone,
    SessionStoreError,
    SqliteSessionStore,
    SubscriptionRefused,
)
from trio_mqtt.sansio import ChangeKind, ConnAck, PacketType, SessionChange
from trio_mqtt.sync import Client, Connection, connect
from trio_mqtt.testing import MosquittoBroker

VERSIONS = [ProtocolVersion.V311, ProtocolVersion.V5]
pytestmark = pytest.mark.usefixtures("sync_watchdog")


def loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("trio-mqtt")]


@pytest.fixture(autouse=True)
def no_thread_left() -> Iterator[None]:
    """Every test must leave no background thread behind."""
    assert loop_threads() == []
    yield
    assert loop_threads() == []


def recv_until(
    connection: Connection, predicate: Callable[[object], bool], timeout: float = 5.0
) -> list[object]:
    """Read events until one matches; return all read. Fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    seen: list[object] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no matching event within {timeout} s; saw {seen!r}")
        event = connection.recv_timeout(remaining)
        seen.append(event)
        if predicate(event):
            return seen


def is_publish(event: object) -> bool:
    return isinstance(event, Incoming) and isinstance(event.packet, Publish)


def is_connack(event: object) -> bool:
    return isinstance(event, Incoming) and isinstance(event.packet, ConnAck)


def receive_messages(connection: Connection, count: int, timeout: float = 5.0) -> list[Publish]:
    messages: list[Publish] = []
    while len(messages) < count:
        event = recv_until(connection, is_publish, timeout)[-1]
        assert isinstance(event, Incoming)
        assert isinstance(event.packet, Publish)
        messages.append(event.packet)
    return messages


def drain(connection: Connection) -> list[object]:
    """Take every event that is already buffered."""
    events: list[object] = []
    while (event := connection.try_recv()) is not None:
        events.append(event)
    return events


# ---------------------------------------------------------------------- round trips
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("qos", [QoS.AT_MOST_ONCE, QoS.AT_LEAST_ONCE, QoS.EXACTLY_ONCE])
def test_publish_subscribe_round_trip(
    mosquitto: MosquittoBroker, version: ProtocolVersion, qos: QoS
) -> None:
    client, connection = connect(
        options_for(mosquitto, f"s-rt-{version}-{qos}", protocol_version=version)
    )
    with connection, client:
        result = client.subscribe("rt/+/x", qos)
        assert result.reason_codes == (qos,)
        for i in range(5):
            client.publish(f"rt/{i}/x", f"m{i}", qos=qos)
        received = receive_messages(connection, 5)
    assert [m.payload for m in received] == [f"m{i}".encode() for i in range(5)]
    assert [m.topic for m in received] == [f"rt/{i}/x" for i in range(5)]
    assert {m.qos for m in received} == {qos}


def test_connect_takes_a_url_and_reports_the_handshake(mosquitto: MosquittoBroker) -> None:
    client, connection = connect(f"{mosquitto.url}/?client_id=s-url")
    with connection, client:
        assert connection.connected
        assert connection.running
        first = connection.recv_timeout(5)
        second = connection.recv_timeout(5)
        assert isinstance(first, Outgoing)
        assert first.type is PacketType.CONNECT
        assert is_connack(second)
        assert connection.statistics().connects == 1


def test_tracked_publish_and_nowait_twins(mosquitto: MosquittoBroker) -> None:
    client, connection = connect(options_for(mosquitto, "s-tracked", protocol_version=5))
    with connection, client:
        subscribed = client.subscribe_nowait("tr/#", QoS.AT_LEAST_ONCE).wait(5)
        assert subscribed.reason_codes == (QoS.AT_LEAST_ONCE,)
        for qos in QoS:
            tracker = client.publish_tracked("tr/t", b"x", qos=qos)
            result = tracker.wait(5)
            assert tracker.done
            assert result.is_success
            assert (result.packet_id == 0) == (qos == QoS.AT_MOST_ONCE)
        client.publish_nowait("tr/n", b"nowait", qos=QoS.AT_LEAST_ONCE)
        assert client.publish_tracked_nowait("tr/n", b"again", qos=QoS.EXACTLY_ONCE).wait(5)
        messages = receive_messages(connection, 5)
        assert [m.payload for m in messages] == [b"x", b"x", b"x", b"nowait", b"again"]
        unsubscribed = client.unsubscribe_nowait("tr/#").wait(5)
        assert unsubscribed.packet_id > 0
        many = client.subscribe_many([("tr/a", 1), "tr/b"])
        assert many.reason_codes == (1, 0)
        assert client.subscribe_many_nowait(["tr/c"]).wait(5).reason_codes == (0,)
        client.unsubscribe("tr/a")
        client.unsubscribe_many_nowait(["tr/b", "tr/c"]).wait(5)


def test_errors_raise_in_the_calling_thread(mosquitto: MosquittoBroker) -> None:
    client, connection = connect(options_for(mosquitto, "s-errors"))
    with connection, client:
        with pytest.raises(InvalidTopicError):
            client.publish("a/+/b", b"x")
        with pytest.raises(InvalidTopicError):
            client.subscribe("a/#/b")
        assert connection.connected


class CountingStore(SqliteSessionStore):
    """Counts the queued publishes each commit made durable."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.queued = 0

    async def apply(self, changes: Sequence[SessionChange]) -> None:
        await super().apply(changes)
        self.queued += sum(1 for c in changes if c.kind == ChangeKind.QUEUED)


def test_publish_returns_once_durable_and_the_queue_policy_raises_here(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    store = CountingStore(tmp_path)
    options = options_for(
        mosquitto,
        "s-outbox",
        clean_start=False,
        session_store=store,
        max_queued=3,
        queue_full="reject",
        reconnect=ReconnectPolicy(initial_delay=0.05, max_delay=0.2),
    )
    client, connection = connect(options)
    with connection, client:
        mosquitto.stop()
        deadline = time.monotonic() + 10
        while connection.statistics().connected and time.monotonic() < deadline:
            time.sleep(0.01)
        for seq in range(3):
            client.publish("ob/t", b"%d" % seq, qos=QoS.EXACTLY_ONCE)
            assert store.queued == seq + 1  # on disk when the call returned
        with pytest.raises(QueueFullError):
            client.publish("ob/t", b"3", qos=QoS.EXACTLY_ONCE)
        assert connection.statistics().waiting_publishes == 3
    kept = store.read("s-outbox").queued
    assert [q.publish.payload for q in kept] == [b"0", b"1", b"2"]


class FullDisk(SqliteSessionStore):
    """A durable store that cannot commit anything."""

    async def apply(self, changes: Sequence[SessionChange]) -> None:
        raise OSError(28, "No space left on device")


def test_a_failed_commit_raises_in_the_calling_thread(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    options = options_for(mosquitto, "s-full-disk", session_store=FullDisk(tmp_path))
    client, connection = connect(options)
    with connection, client:
        with pytest.raises(SessionStoreError) as caught:
            client.publish("ob/t", b"x", qos=QoS.AT_LEAST_ONCE)
        assert isinstance(caught.value.__cause__, OSError)
        client.publish("ob/t", b"QoS 0 is not stored", qos=QoS.AT_MOST_ONCE)
        assert connection.statistics().waiting_publishes == 0


# ---------------------------------------------------------------------- threads
def test_threads_publish_concurrently_through_clones(mosquitto: MosquittoBroker) -> None:
    threads_count, per_thread = 4, 100
    client, connection = connect(options_for(mosquitto, "s-threads"))
    with connection:
        client.subscribe("th/#", QoS.AT_LEAST_ONCE)
        clones = [client.clone() for _ in range(threads_count)]
        errors: list[BaseException] = []

        def publisher(index: int, handle: Client) -> None:
            try:
                with handle:
                    for n in range(per_thread):
                        handle.publish(f"th/{index}", str(n), qos=QoS.AT_LEAST_ONCE)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        workers = [
            threading.Thread(target=publisher, args=(i, handle)) for i, handle in enumerate(clones)
        ]
        for worker in workers:
            worker.start()
        messages = receive_messages(connection, threads_count * per_thread)
        for worker in workers:
            worker.join(5)
        assert errors == []
        assert all(handle.closed for handle in clones)
        for index in range(threads_count):
            payloads = [m.payload for m in messages if m.topic == f"th/{index}"]
            assert payloads == [str(n).encode() for n in range(per_thread)]
        client.close()
        # the last handle is closed: the session ends and iteration stops cleanly
        rest = list(connection.iter())
        assert not any(isinstance(e, MqttError) for e in rest)
        assert not connection.running


def test_several_threads_read_one_connection(mosquitto: MosquittoBroker) -> None:
    count = 200
    client, connection = connect(options_for(mosquitto, "s-readers"))
    with connection, client:
        client.subscribe("rd", QoS.AT_MOST_ONCE)
        drain(connection)
        got: list[list[bytes]] = [[], [], []]
        done = threading.Event()

        def reader(into: list[bytes]) -> None:
            while not done.is_set():
                try:
                    event = connection.recv_timeout(0.05)
                except TimeoutError:
                    continue
                if is_publish(event):
                    assert isinstance(event, Incoming)
                    assert isinstance(event.packet, Publish)
                    into.append(event.packet.payload)

        readers = [threading.Thread(target=reader, args=(into,)) for into in got]
        for thread in readers:
            thread.start()
        for n in range(count):
            client.publish("rd", str(n))
        deadline = time.monotonic() + 10
        while sum(map(len, got)) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        done.set()
        for thread in readers:
            thread.join(5)
        assert sorted(int(p) for into in got for p in into) == list(range(count))


# ---------------------------------------------------------------------- reading
def test_recv_timeout_times_out_and_loses_nothing(mosquitto: MosquittoBroker) -> None:
    client, connection = connect(options_for(mosquitto, "s-timeout"))
    with connection, client:
        client.subscribe("to", QoS.AT_LEAST_ONCE)
        recv_until(connection, lambda e: isinstance(e, Incoming) and not is_connack(e))
        drain(connection)
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            connection.recv_timeout(0.2)
        elapsed = time.monotonic() - start
        assert 0.2 <= elapsed < 2.0
        with pytest.raises(TimeoutError):
            connection.recv_timeout(0)
        client.publish("to", b"later", qos=QoS.AT_LEAST_ONCE)
        assert receive_messages(connection, 1)[0].payload == b"later"
        with pytest.raises(ValueError, match="timeout"):
            connection.recv_timeout(-1)


def test_try_recv_returns_none_when_nothing_is_buffered(mosquitto: MosquittoBroker) -> None:
    client, connection = connect(options_for(mosquitto, "s-try"))
    with connection, client:
        assert drain(connection)  # CONNECT and CONNACK were buffered
        assert connection.try_recv() is None
        # a tracked QoS 0 publish is done once written: its Outgoing event is buffered by then
        client.publish_tracked("try/t", b"x").wait(5)
        event = connection.try_recv()
        assert isinstance(event, Outgoing)
        assert event.type is PacketType.PUBLISH
        assert connection.try_recv() is None
        # recv_timeout(0) is try_recv that raises: it still returns a buffered event
        client.publish_tracked("try/t", b"y").wait(5)
        event = connection.recv_timeout(0)
        assert isinstance(event, Outgoing)
        assert event.type is PacketType.PUBLISH


def test_closing_every_handle_ends_iteration(mosquitto: MosquittoBroker) -> None:
    client, connection = connect(options_for(mosquitto, "s-done"))
    other = client.clone()
    client.close()
    client.close()  # idempotent
    other.publish("done/t", b"last", qos=QoS.AT_LEAST_ONCE)
    other.close()
    events = list(connection)
    assert any(isinstance(e, Outgoing) and e.type is PacketType.PUBLISH for e in events)
    assert not any(isinstance(e, MqttError) for e in events)
    assert not connection.running
    with pytest.raises(RequestsDone):
        connection.recv()
    with pytest.raises(RequestsDone):
        connection.try_recv()
    assert list(connection.iter()) == []
    with pytest.raises(ConnectionClosed):
        other.clone()
    connection.close()


def test_disconnect_ends_iteration(mosquitto: MosquittoBroker) -> None:
    client, connection = connect(options_for(mosquitto, "s-disc"))
    with client:
        client.publish("d", b"x", qos=QoS.EXACTLY_ONCE)
        client.disconnect(grace_period=5)
        events = list(connection.iter())
        assert any(isinstance(e, Outgoing) and e.type is PacketType.DISCONNECT for e in events)
        assert not connection.running
        with pytest.raises(ConnectionClosed):
            client.publish("d", b"after")


def test_iter_yields_errors_and_reconnects_after_restart(
    mosquitto_factory: Callable[..., MosquittoBroker],
) -> None:
    broker = mosquitto_factory()
    client, connection = connect(options_for(broker, "s-restart", keep_alive=5))
    with connection, client:
        client.subscribe("rs", QoS.AT_LEAST_ONCE)
        recv_until(connection, lambda e: isinstance(e, Incoming) and not is_connack(e))
        broker.stop()
        errors: list[MqttError] = []
        connacks = 0
        for event in connection.iter():
            if isinstance(event, MqttError):
                errors.append(event)
                if len(errors) == 1:
                    assert not connection.connected
                    broker.start()  # same port; iterating on reconnects
            elif is_connack(event):
                connacks += 1
                break
        assert connacks == 1
        assert isinstance(errors[0], ConnectionLost)
        assert connection.connected
        client.subscribe("rs", QoS.AT_LEAST_ONCE)
        client.publish("rs", b"back", qos=QoS.AT_LEAST_ONCE)
        assert receive_messages(connection, 1)[0].payload == b"back"
        assert connection.statistics().connects == 2


def test_recv_raises_the_error_and_the_next_recv_reconnects(
    mosquitto_factory: Callable[..., MosquittoBroker],
) -> None:
    broker = mosquitto_factory()
    client, connection = connect(options_for(broker, "s-recv-error"))
    with connection, client:
        drain(connection)
        broker.kill()
        with pytest.raises(ConnectionLost):
            recv_until(connection, lambda e: False)
        broker.start()
        recv_until(connection, is_connack)
        assert connection.connected


# ---------------------------------------------------------------------- lifecycle
def test_close_leaves_no_thread(mosquitto: MosquittoBroker) -> None:
    before = set(threading.enumerate())
    client, connection = connect(options_for(mosquitto, "s-close"))
    assert len(loop_threads()) == 1
    clone = client.clone()
    connection.close()
    connection.close()  # idempotent
    assert set(threading.enumerate()) == before
    assert not connection.running
    with pytest.raises(ConnectionClosed):
        connection.recv()
    with pytest.raises(ConnectionClosed):
        clone.publish("x", b"y")
    client.close()  # closing handles after the end is harmless
    clone.close()


def test_close_unblocks_a_reader_in_another_thread(mosquitto: MosquittoBroker) -> None:
    client, connection = connect(options_for(mosquitto, "s-unblock"))
    drain(connection)
    outcome: list[object] = []

    def reader() -> None:
        outcome.extend(connection.iter())
        outcome.append("ended")

    thread = threading.Thread(target=reader)
    thread.start()
    client.publish("nobody/listens", b"x")
    connection.close()
    thread.join(5)
    assert not thread.is_alive()
    assert outcome[-1] == "ended"
    client.close()


def test_failed_connect_raises_in_the_caller(
    mosquitto_factory: Callable[..., MosquittoBroker],
) -> None:
    broker = mosquitto_factory(users={"alice": "secret"})
    options = options_for(broker, "s-login", username="alice", password="wrong")
    with pytest.raises(ConnectionRefused) as info:
        connect(options)
    assert info.value.reason_code in (4, 5)  # mosquitto: 5, embedded: 4
    assert loop_threads() == []
    client, connection = connect(options.replace(password="secret"))
    with connection, client:
        assert connection.connected


def test_unreachable_broker_raises_connection_lost() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionLost):
        connect(MqttOptions("s-unreachable", "127.0.0.1", port))


class SilentBroker:
    """Answers CONNECT with CONNACK and SUBSCRIBE with a refusal; never answers anything else.

    A minimal scripted MQTT 3.1.1 peer on a plain socket, for states mosquitto will not produce
    (a broker that never acknowledges, a refused subscription).
    """

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._thread = threading.Thread(target=self._serve)
        self._thread.start()

    def _serve(self) -> None:
        with self._server:
            conn, _ = self._server.accept()
        with conn:
            conn.recv(65536)  # CONNECT (small enough for one read on loopback)
            conn.sendall(b"\x20\x02\x00\x00")  # CONNACK, accepted (MQTT 3.1.1)
            while data := conn.recv(65536):
                if data[0] == 0x82 and len(data) >= 4:  # SUBSCRIBE, short remaining length
                    conn.sendall(b"\x90\x03" + data[2:4] + b"\x80")  # SUBACK: failure

    def join(self) -> None:
        self._thread.join(5)
        assert not self._thread.is_alive()


def test_nowait_raises_would_block_when_the_queue_is_full() -> None:
    broker = SilentBroker()
    options = MqttOptions("s-full", "127.0.0.1", broker.port, inflight=2, request_capacity=2)
    client, connection = connect(options, disconnect_timeout=0.2)
    with connection, client:
        with pytest.raises(trio.WouldBlock):
            for n in range(50):
                client.publish_nowait("full", str(n), qos=QoS.AT_LEAST_ONCE)
        stats = connection.statistics()
        assert stats.inflight == 2
        # control requests still get through; an unanswered one times out without harm
        tracker = client.unsubscribe_nowait("never/answered")
        with pytest.raises(TimeoutError):
            tracker.wait(0.1)
        assert not tracker.done
    broker.join()


def test_refused_subscription_raises() -> None:
    broker = SilentBroker()
    client, connection = connect(MqttOptions("s-refused", "127.0.0.1", broker.port))
    with connection, client:
        with pytest.raises(SubscriptionRefused) as info:
            client.subscribe("forbidden", QoS.AT_LEAST_ONCE)
        assert info.value.result.reason_codes == (0x80,)
        assert client.subscribe_many(["a"]).reason_codes == (0x80,)
    broker.join()


def test_recv_timeout_times_out_while_another_thread_waits_in_recv(
    mosquitto: MosquittoBroker,
) -> None:
    client, connection = connect(options_for(mosquitto, "s-two-waiters"))
    with connection, client:
        client.subscribe("tw", QoS.AT_MOST_ONCE)
        recv_until(connection, lambda e: isinstance(e, Incoming) and not is_connack(e))
        drain(connection)
        got: list[object] = []
        waiter = threading.Thread(target=lambda: got.append(connection.recv()))
        waiter.start()
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            connection.recv_timeout(0.2)
        assert 0.2 <= time.monotonic() - start < 2.0
        assert got == []
        client.publish("tw", b"x")
        waiter.join(5)
        assert len(got) == 1
        assert isinstance(got[0], Outgoing)


def test_tracker_wait_raises_when_the_session_ends() -> None:
    broker = SilentBroker()
    client, connection = connect(MqttOptions("s-tracker-end", "127.0.0.1", broker.port))
    with client:
        tracker = client.unsubscribe_nowait("never/answered")
        connection.close()
        assert tracker.done
        with pytest.raises(ConnectionClosed):
            tracker.wait(5)
    broker.join()


def test_statistics_and_reconnect(mosquitto_factory: Callable[..., MosquittoBroker]) -> None:
    broker = mosquitto_factory()
    client, connection = connect(options_for(broker, "s-stats"))
    with connection, client:
        client.publish_tracked("st", b"x", qos=QoS.AT_LEAST_ONCE).wait(5)
        stats = connection.statistics()
        assert stats.connected
        assert stats.packets_sent >= 2  # CONNECT and PUBLISH
        broker.kill()
        with pytest.raises(ConnectionLost):
            recv_until(connection, lambda e: False)
        broker.start()
        connection.reconnect()  # without reading: the next event is the new CONNECT
        recv_until(connection, is_connack)
        assert connection.statistics().connects == 2


def test_a_forgotten_connection_stops_its_thread(mosquitto: MosquittoBroker) -> None:
    client, connection = connect(options_for(mosquitto, "s-forgotten"))
    (thread,) = loop_threads()
    del connection
    gc.collect()
    thread.join(5)
    assert not thread.is_alive()
    with pytest.raises(ConnectionClosed):
        client.publish("f", b"x")
    client.close()


def test_a_dropped_client_handle_is_released(mosquitto: MosquittoBroker) -> None:
    client, connection = connect(options_for(mosquitto, "s-dropped"))
    with connection:
        clone = client.clone()
        clone.publish("dropped", b"x")
        del clone
        gc.collect()
        client.close()
        # without the dropped clone's release the session would never end
        events = list(connection.iter())
        assert any(isinstance(e, Outgoing) and e.type is PacketType.PUBLISH for e in events)
        with pytest.raises(RequestsDone):
            connection.recv()


def test_reconnect_policy_reconnects_while_iterating(
    mosquitto_factory: Callable[..., MosquittoBroker],
) -> None:
    broker = mosquitto_factory()
    policy = ReconnectPolicy(initial_delay=0.05, max_delay=0.2)
    client, connection = connect(options_for(broker, "s-policy", reconnect=policy))
    with connection, client:
        drain(connection)
        broker.kill()
        seen: list[object] = []
        for event in connection.iter():
            seen.append(event)
            if isinstance(event, Disconnected):
                broker.start()
            if is_connack(event):
                break
        assert isinstance(seen[0], Disconnected)
        assert isinstance(seen[0].error, ConnectionLost)
        assert any(isinstance(e, Reconnecting) for e in seen)
        assert not any(isinstance(e, MqttError) for e in seen)  # nothing raised or yielded
        assert connection.connected


def test_close_unblocks_a_publisher_waiting_for_room() -> None:
    broker = SilentBroker()
    options = MqttOptions("s-blocked-pub", "127.0.0.1", broker.port, inflight=2, request_capacity=2)
    client, connection = connect(options, disconnect_timeout=0.1)
    outcome: list[BaseException] = []

    def publisher() -> None:
        try:
            for n in range(100):
                client.publish("blocked", str(n), qos=QoS.AT_LEAST_ONCE)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=publisher)
    thread.start()
    deadline = time.monotonic() + 5
    while connection.statistics().inflight < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert connection.statistics().inflight == 2
    connection.close()
    thread.join(5)
    assert not thread.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], ConnectionClosed)
    client.close()
    broker.join()


def test_tracker_keeps_its_result_after_close(mosquitto: MosquittoBroker) -> None:
    client, connection = connect(options_for(mosquitto, "s-tracker-kept"))
    with client:
        tracker = client.publish_tracked("kept", b"x", qos=QoS.EXACTLY_ONCE)
        connection.close()  # graceful: the QoS 2 flow completes first
        assert tracker.done
        result = tracker.wait()
        assert result.is_success
        assert result.packet_id > 0
