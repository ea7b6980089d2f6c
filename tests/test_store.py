"""Session stores: the in-memory and SQLite stores, and how the event loop drives them."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio
import trio.testing
from fake_broker import FakeBroker, ScriptedPeer  # tests/ is on sys.path under pytest

from trio_mqtt import (
    Incoming,
    InvalidOptionError,
    InvalidTopicError,
    MemorySessionStore,
    MqttOptions,
    ProtocolVersion,
    PublishDropped,
    ReconnectPolicy,
    SessionStore,
    SessionStoreError,
    SqliteSessionStore,
    open_mqtt_connection,
)
from trio_mqtt._store import StoreBinding
from trio_mqtt._store._sqlite import session_file_name
from trio_mqtt.sansio import (
    ChangeKind,
    ClientState,
    ConnAck,
    Disconnect,
    Properties,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    QoS,
    SessionChange,
    SessionConfig,
    SessionSnapshot,
)

SENT, RELEASED, DONE = ChangeKind.SENT, ChangeKind.RELEASED, ChangeKind.DONE
HOLD, UNHOLD, CLEARED = ChangeKind.HOLD_INCOMING, ChangeKind.RELEASE_INCOMING, ChangeKind.CLEARED
QUEUED, UNQUEUED = ChangeKind.QUEUED, ChangeKind.UNQUEUED


def pub(pid: int, qos: int = 1, topic: str = "t", payload: bytes = b"x") -> Publish:
    return Publish(topic, payload, QoS(qos), packet_id=pid)


# ====================================================================== memory store
async def test_memory_store_keeps_the_last_saved_session_per_client_id() -> None:
    store = MemorySessionStore()
    assert isinstance(store, SessionStore)
    assert await store.open("a") == SessionSnapshot()
    snapshot = SessionSnapshot((pub(1), PubRel(2)), (7,))
    await store.save(snapshot)
    await store.close()
    assert await store.open("b") == SessionSnapshot()
    await store.close()
    assert await store.open("a") == snapshot
    await store.save(SessionSnapshot())  # an empty session is forgotten
    await store.close()
    assert store.snapshot("a") == SessionSnapshot()


async def test_a_store_serves_one_connection_at_a_time() -> None:
    store = MemorySessionStore()
    await store.open("a")
    with pytest.raises(InvalidOptionError, match="one connection at a time"):
        await store.open("b")


# ====================================================================== SQLite store
async def test_sqlite_store_applies_changes_in_order_and_survives_reopening(
    tmp_path: Path,
) -> None:
    store = SqliteSessionStore(tmp_path / "sessions")
    assert await store.open("c1") == SessionSnapshot()
    await store.apply(
        [
            SessionChange(SENT, 5, pub(5, 1, "a")),
            SessionChange(SENT, 2, pub(2, 2, "b")),
            SessionChange(SENT, 9, pub(9, 2, "c")),
            SessionChange(HOLD, 40),
            SessionChange(HOLD, 41),
        ]
    )
    await store.apply(
        [
            SessionChange(RELEASED, 2),  # QoS 2 id 2 now awaits PUBCOMP
            SessionChange(SENT, 5, Publish("a", b"x", QoS(1), dup=True, packet_id=5)),  # re-send
            SessionChange(DONE, 9, None, 3),  # wrong stage: ignored
            SessionChange(UNHOLD, 40),
        ]
    )
    await store.close()
    reopened = SqliteSessionStore(tmp_path / "sessions")
    snapshot = await reopened.open("c1")
    await reopened.close()
    assert [(type(p).__name__, p.packet_id) for p in snapshot.outgoing] == [
        ("Publish", 5),  # a re-send keeps its place
        ("PubRel", 2),
        ("Publish", 9),
    ]
    first = snapshot.outgoing[0]
    assert isinstance(first, Publish)
    assert (first.topic, first.qos, first.dup) == ("a", 1, True)
    assert snapshot.incoming == (41,)
    assert reopened.read("c1") == snapshot


async def test_sqlite_done_removes_only_the_matching_stage_and_cleared_empties(
    tmp_path: Path,
) -> None:
    store = SqliteSessionStore(tmp_path)
    await store.open("c")
    await store.apply([SessionChange(SENT, 1, pub(1, 1)), SessionChange(SENT, 2, pub(2, 2))])
    await store.apply([SessionChange(DONE, 1, None, 1), SessionChange(DONE, 2, None, 1)])
    await store.close()
    assert [p.packet_id for p in store.read("c").outgoing] == [2]
    await store.open("c")
    await store.apply([SessionChange(DONE, 2, None, 2), SessionChange(SENT, 1, pub(1))])
    await store.apply([SessionChange(HOLD, 3), SessionChange(CLEARED, 0)])
    await store.close()
    assert store.read("c") == SessionSnapshot()


async def test_sqlite_batches_with_repeated_rows_clears_and_many_rows(tmp_path: Path) -> None:
    store = SqliteSessionStore(tmp_path)
    await store.open("c")
    many = [SessionChange(SENT, pid, pub(pid)) for pid in range(1, 601)]  # several statements
    again = pub(1, 2, "again")
    await store.apply(
        [
            *many,
            SessionChange(DONE, 1, None, 1),
            SessionChange(SENT, 1, again),  # the id comes back: a new row, at the end
            SessionChange(HOLD, 1),
            SessionChange(UNHOLD, 1),
            SessionChange(HOLD, 1),
        ]
    )
    await store.close()
    snapshot = store.read("c")
    assert [p.packet_id for p in snapshot.outgoing] == [*range(2, 601), 1]
    assert snapshot.outgoing[-1] == again
    assert snapshot.incoming == (1,)
    await store.open("c")
    await store.apply(
        [
            SessionChange(SENT, 5, pub(5)),
            SessionChange(CLEARED, 0),
            SessionChange(SENT, 7, pub(7)),
            SessionChange(RELEASED, 8),  # a PUBREL-stage row keeps its place among new rows
            SessionChange(SENT, 9, pub(9)),
        ]
    )
    await store.close()
    assert [(type(p).__name__, p.packet_id) for p in store.read("c").outgoing] == [
        ("Publish", 7),
        ("PubRel", 8),
        ("Publish", 9),
    ]


async def test_sqlite_round_trips_v5_properties_and_big_payloads(tmp_path: Path) -> None:
    props = Properties(
        message_expiry_interval=60,
        content_type="text/plain",
        user_properties=(("k", "v"),),
        correlation_data=b"\x00\x01",
    )
    big = Publish("x/y", bytes(range(256)) * 4000, QoS(2), True, False, 65535, props)
    store = SqliteSessionStore(tmp_path)
    await store.open("c")
    await store.save(SessionSnapshot((big, PubRel(3)), (1, 65535)))
    await store.close()
    assert store.read("c") == SessionSnapshot((big, PubRel(3)), (1, 65535))


async def test_sqlite_file_is_wal_one_per_client_id_and_locked_while_open(
    tmp_path: Path,
) -> None:
    store = SqliteSessionStore(tmp_path)
    odd_id = "a/b c?é"
    await store.open(odd_id)
    path = store.path_for(odd_id)
    assert path.parent == tmp_path
    assert path.name == session_file_name(odd_id)
    assert "/" not in path.name
    # another store object (a second process would be the same) cannot take the same id
    other = SqliteSessionStore(tmp_path)
    with pytest.raises(InvalidOptionError, match="in use"):
        await other.open(odd_id)
    await store.close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()
    long_id = "x" * 1000
    assert len(session_file_name(long_id)) < 200
    assert session_file_name(long_id) != session_file_name("x" * 999)


async def test_sqlite_refuses_a_file_of_another_client_id(tmp_path: Path) -> None:
    store = SqliteSessionStore(tmp_path)
    await store.open("one")
    await store.close()
    store.path_for("one").rename(store.path_for("two"))
    with pytest.raises(InvalidOptionError, match="belongs to client 'one'"):
        await store.open("two")
    await store.open("one")  # the failed open left the store usable
    await store.close()


async def test_sqlite_outbox_keeps_queued_publishes_in_order_through_a_lost_session(
    tmp_path: Path,
) -> None:
    store = SqliteSessionStore(tmp_path)
    await store.open("c")
    admitted = time.time() - 5.0
    await store.apply(
        [
            SessionChange(QUEUED, 1, pub(1, 2, "q", b"one"), 0, admitted),
            SessionChange(QUEUED, 2, pub(1, 1, "q", b"two"), 0, admitted),
            SessionChange(QUEUED, 3, pub(1, 2, "q", b"three"), 0, admitted),
        ]
    )
    # number 1 is sent (moved to the flows), then the broker loses the session
    await store.apply([SessionChange(UNQUEUED, 1), SessionChange(SENT, 7, pub(7, 2, "q", b"one"))])
    await store.apply(
        [SessionChange(CLEARED, 0), SessionChange(QUEUED, -1, pub(1, 2, "q", b"one"), 0, admitted)]
    )
    await store.close()
    snapshot = store.read("c")
    assert snapshot.outgoing == ()
    assert [(q.number, q.publish.payload) for q in snapshot.queued] == [
        (-1, b"one"),
        (2, b"two"),
        (3, b"three"),
    ]
    assert all(4.0 < q.waited < 60.0 for q in snapshot.queued)  # admitted 5 s ago
    await store.open("c")
    await store.save(SessionSnapshot(queued=snapshot.queued[1:]))  # a save replaces the queue
    await store.close()
    assert [q.number for q in store.read("c").queued] == [2, 3]


async def test_sqlite_opens_and_upgrades_a_schema_1_file(tmp_path: Path) -> None:
    path = SqliteSessionStore(tmp_path).path_for("old")
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('schema', '1'), ('client_id', 'old');"
        "CREATE TABLE outgoing (seq INTEGER PRIMARY KEY, packet_id INTEGER NOT NULL UNIQUE,"
        " stage INTEGER NOT NULL, packet BLOB);"
        "CREATE TABLE incoming (packet_id INTEGER PRIMARY KEY);"
        "INSERT INTO incoming VALUES (9);"
    )
    db.commit()
    db.close()
    assert SqliteSessionStore(tmp_path).read("old") == SessionSnapshot((), (9,))
    store = SqliteSessionStore(tmp_path)
    assert await store.open("old") == SessionSnapshot((), (9,))
    await store.apply([SessionChange(QUEUED, 1, pub(1), 0, time.time())])
    await store.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("2",)
    db.close()
    assert len(store.read("old").queued) == 1


async def test_sqlite_failed_batch_commits_nothing(tmp_path: Path) -> None:
    store = SqliteSessionStore(tmp_path)
    await store.open("c")
    bad = Publish("bad/#", b"", QoS(1), packet_id=2)  # a wildcard topic cannot be encoded
    with pytest.raises(InvalidTopicError):
        await store.apply([SessionChange(SENT, 1, pub(1)), SessionChange(SENT, 2, bad)])
    await store.apply([SessionChange(SENT, 3, pub(3))])
    await store.close()
    assert [p.packet_id for p in store.read("c").outgoing] == [3]


async def test_sqlite_runs_in_a_worker_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[int] = []
    original = trio.to_thread.run_sync

    async def spy(fn, *args):  # type: ignore[no-untyped-def]
        threads.append(1)
        return await original(fn, *args)

    monkeypatch.setattr(trio.to_thread, "run_sync", spy)
    store = SqliteSessionStore(tmp_path)
    await store.open("c")
    await store.apply([SessionChange(SENT, 1, pub(1))])
    await store.save(SessionSnapshot())
    await store.close()
    assert len(threads) == 4
    assert threading.current_thread() is threading.main_thread()
    # in_thread=False: batches are committed on the event loop's thread, the rest is not
    inline = SqliteSessionStore(tmp_path, in_thread=False)
    await inline.open("c")
    await inline.apply([SessionChange(SENT, 2, pub(2))])
    await inline.close()
    assert len(threads) == 6
    assert [p.packet_id for p in inline.read("c").outgoing] == [2]


def test_store_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(InvalidOptionError, match="synchronous"):
        SqliteSessionStore(tmp_path, synchronous="sometimes")
    with pytest.raises(InvalidOptionError, match="non-empty client_id"):
        MqttOptions("", clean_start=True, session_store=MemorySessionStore())
    with pytest.raises(InvalidOptionError, match="SessionStore"):
        MqttOptions("c", session_store=object())  # type: ignore[arg-type]
    assert SqliteSessionStore(tmp_path, synchronous="full").synchronous == "FULL"


# ====================================================================== event -> change
def test_binding_turns_core_events_into_changes() -> None:
    state = ClientState(
        SessionConfig(
            client_id="c",
            protocol_version=ProtocolVersion.V5,
            clean_start=False,
            outgoing_topic_aliases=True,
        )
    )
    binding = StoreBinding(SqliteSessionStore("unused"), "c", clean_start=False)
    binding._state = state  # what start() sets once the store is open
    state.connect(0.0)
    state.receive_packet(ConnAck(False, 0, Properties(topic_alias_maximum=4)), 0.0)
    # like the event loop: the events of each call are recorded right after it
    for payload in (b"1", b"2"):  # the second goes out with an empty topic and an alias
        state.publish("long/topic", payload, QoS.EXACTLY_ONCE, now=0.0)
        binding.record(state.take_events())
    state.publish("q0", b"", QoS.AT_MOST_ONCE, now=0.0)
    for packet in (
        PubRec(1),
        Publish("in", b"", QoS(2), packet_id=30),
        PubRel(30),
        PubComp(1),
        PubRec(2, 0x80),
    ):
        state.receive_packet(packet, 0.0)
        binding.record(state.take_events())
    assert binding.pending
    changes = binding._changes
    assert [(c.kind, c.packet_id, c.stage) for c in changes] == [
        (SENT, 1, 0),
        (SENT, 2, 0),
        (RELEASED, 1, 0),
        (HOLD, 30, 0),
        (UNHOLD, 30, 0),
        (DONE, 1, 3),
        (DONE, 2, 2),
    ]
    assert [c.publish.topic for c in changes[:2]] == ["long/topic"] * 2  # type: ignore[union-attr]
    assert changes[1].publish.properties.topic_alias is None  # type: ignore[union-attr]


def test_binding_clears_on_session_loss_and_ignores_non_durable_stores() -> None:
    state = ClientState(SessionConfig(client_id="c", clean_start=False))
    binding = StoreBinding(SqliteSessionStore("unused"), "c", clean_start=False)
    binding._state = state
    state.connect(0.0)
    state.receive_packet(ConnAck(False, 0), 0.0)
    state.publish("t", b"", QoS.AT_LEAST_ONCE, now=0.0)
    state.connection_lost(0.0)
    state.connect(0.0)
    state.receive_packet(ConnAck(False, 0), 0.0)  # the broker lost the session
    binding.record(state.take_events())
    assert [(c.kind, c.packet_id) for c in binding._changes] == [(CLEARED, 0), (SENT, 2)]
    memory = StoreBinding(MemorySessionStore(), "c", clean_start=False)
    memory.record([Incoming(PubAck(1))])
    assert not memory.pending


class GatedStore(MemorySessionStore):
    """A durable store whose commits finish when the test says so."""

    durable = True

    def __init__(self) -> None:
        super().__init__()
        self.gate = trio.Event()

    async def apply(self, changes: Sequence[SessionChange]) -> None:
        await self.gate.wait()


async def test_binding_holds_back_incoming_qos2_until_its_id_is_durable() -> None:
    store = GatedStore()
    state = ClientState(SessionConfig(client_id="c", clean_start=False))
    binding = StoreBinding(store, "c", clean_start=False)
    await binding.start(state)
    state.connect(0.0)
    state.receive_packet(ConnAck(False, 0), 0.0)
    assert binding.record(state.take_events()) != []  # nothing to hold: routed at once
    state.receive_packet(Publish("q1", b"", QoS(1), packet_id=1), 0.0)
    state.receive_packet(Publish("q2", b"", QoS(2), packet_id=2), 0.0)
    assert binding.record(state.take_events()) == []  # PUBREC 2 pending: all held
    state.receive_packet(Publish("q0", b""), 0.0)
    assert binding.record(state.take_events()) == []  # later events wait too (order)
    released: list[object] = []
    async with trio.open_nursery() as nursery:

        async def flush() -> None:
            released.extend(await binding.flush())

        nursery.start_soon(flush)
        await trio.testing.wait_all_tasks_blocked()
        # while the commit runs: a QoS 0 message (nothing to wait for but its turn), then a
        # QoS 2 message whose id this commit does not cover
        state.receive_packet(Publish("mid", b""), 0.0)
        assert binding.record(state.take_events()) == []
        state.receive_packet(Publish("late", b"", QoS(2), packet_id=3), 0.0)
        assert binding.record(state.take_events()) == []
        store.gate.set()
    topics = [e.packet.topic for e in released if isinstance(e, Incoming)]  # type: ignore[union-attr]
    assert topics == ["q1", "q2", "q0", "mid"]
    late = await binding.flush()
    assert [e.packet.topic for e in late if isinstance(e, Incoming)] == ["late"]  # type: ignore[union-attr]
    assert binding.release_all() == []
    state.receive_packet(Publish("again", b"", QoS(2), packet_id=4), 0.0)
    assert binding.record(state.take_events()) == []
    assert len(binding.release_all()) == 2  # the connection is gone: hand them over
    await binding.finish()


# ====================================================================== with the event loop
class LoggingStore(SqliteSessionStore):
    """Records, in a list shared with the broker script, each change once it is durable."""

    def __init__(self, directory: Path, log: list[tuple[str, int, int]]) -> None:
        super().__init__(directory)
        self.log = log

    async def apply(self, changes: Sequence[SessionChange]) -> None:
        await super().apply(changes)
        self.log.extend(("durable", c.kind, c.packet_id) for c in changes)


async def until_disconnect(peer: ScriptedPeer) -> list[object]:
    """Read until the client's DISCONNECT, then close; returns what was read."""
    received: list[object] = []
    while True:
        packet = await peer.receive()
        received.append(packet)
        if isinstance(packet, Disconnect):
            break
    await peer.close()
    return received


async def first_connection(
    peer: ScriptedPeer, log: list[tuple[str, int, int]], held: trio.Event
) -> None:
    """Take three publishes, move id 2 to PUBREL, hand the client a QoS 2 message (id 9)."""
    await peer.accept()
    for _ in range(3):
        packet = await peer.receive()
        assert isinstance(packet, Publish)
        log.append(("wire", SENT, packet.packet_id))
    await peer.send(PubRec(2))
    assert await peer.receive() == PubRel(2)
    log.append(("wire", RELEASED, 2))
    await peer.send(Publish("in", b"once", QoS(2), packet_id=9))
    assert await peer.receive() == PubRec(9)
    log.append(("wire", HOLD, 9))
    held.set()
    await until_disconnect(peer)


async def resumed_connection(peer: ScriptedPeer, seen: list[object], done: trio.Event) -> None:
    """Resume the session, check the replay, re-send message 9, then finish every flow."""
    await peer.accept(session_present=True)
    for _ in range(3):
        seen.append(await peer.receive())
    await peer.send(Publish("in", b"once", QoS(2), dup=True, packet_id=9))
    assert await peer.receive() == PubRec(9)
    await peer.send(PubRel(9))
    assert await peer.receive() == PubComp(9)
    await peer.send(PubAck(1), PubComp(2), PubRec(3))
    assert await peer.receive() == PubRel(3)
    await peer.send(PubComp(3))
    done.set()
    await until_disconnect(peer)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_session_carries_over_to_the_next_connection(kind: str, tmp_path: Path) -> None:
    log: list[tuple[str, int, int]] = []
    store: SessionStore = MemorySessionStore() if kind == "memory" else LoggingStore(tmp_path, log)
    seen: list[object] = []
    delivered: list[bytes] = []
    held, done = trio.Event(), trio.Event()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:

            async def script(peer: ScriptedPeer) -> None:
                if peer.index == 0:
                    await first_connection(peer, log, held)
                else:
                    await resumed_connection(peer, seen, done)

            broker = FakeBroker(nursery, script)
            options = MqttOptions(
                "c", clean_start=False, transport=broker, session_store=store, keep_alive=0
            )
            async with open_mqtt_connection(options) as conn:
                await conn.client.publish("a", b"1", qos=1)
                await conn.client.publish("b", b"2", qos=2)
                await conn.client.publish("c", b"3", qos=2)
                async for message in conn.messages():
                    delivered.append(message.payload)
                    if kind == "sqlite":  # shown only once its id was durable
                        assert ("durable", HOLD, 9) in log
                    break
                await held.wait()
                await conn.client.disconnect(grace_period=0)
            if kind == "sqlite":
                # A second store object on the same directory: what a restarted process sees.
                store = LoggingStore(tmp_path, log)
                assert isinstance(store, SqliteSessionStore)
                saved = store.read("c")
                assert [p.packet_id for p in saved.outgoing] == [1, 2, 3]
                assert saved.incoming == (9,)
            async with (
                open_mqtt_connection(options.replace(session_store=store)) as conn,
                conn.route("in") as stream,
            ):
                await done.wait()
                with pytest.raises(trio.WouldBlock):
                    delivered.append(stream.receive_nowait().payload)
            nursery.cancel_scope.cancel()
    # MQTT-4.4.0-1: replayed with the original ids and order, PUBLISH with DUP set.
    assert [(type(p).__name__, p.packet_id) for p in seen] == [  # type: ignore[attr-defined]
        ("Publish", 1),
        ("PubRel", 2),
        ("Publish", 3),
    ]
    assert all(p.dup for p in seen if isinstance(p, Publish))
    assert delivered == [b"once"]  # the re-sent QoS 2 message was not delivered again
    if kind == "sqlite":
        # every change reached the disk before the packet it describes reached the broker
        for entry in (e for e in log if e[0] == "wire"):
            durable = ("durable", entry[1], entry[2])
            assert durable in log[: log.index(entry)], entry
        assert SqliteSessionStore(tmp_path).read("c") == SessionSnapshot()
    else:
        assert isinstance(store, MemorySessionStore)
        assert store.snapshot("c") == SessionSnapshot()


async def test_clean_start_discards_the_stored_session(tmp_path: Path) -> None:
    store = SqliteSessionStore(tmp_path)
    await store.open("c")
    await store.save(SessionSnapshot((pub(1), PubRel(2)), (5,)))
    await store.close()
    received: list[object] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:

            async def script(peer: ScriptedPeer) -> None:
                await peer.accept()
                received.extend(await until_disconnect(peer))

            options = MqttOptions(
                "c", clean_start=True, transport=FakeBroker(nursery, script), session_store=store
            )
            async with open_mqtt_connection(options):
                assert store.path_for("c").exists()
            nursery.cancel_scope.cancel()
    assert received == [Disconnect()]
    assert store.read("c") == SessionSnapshot()


async def test_a_store_in_use_refuses_a_second_connection(tmp_path: Path) -> None:
    store = MemorySessionStore()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:

            async def script(peer: ScriptedPeer) -> None:
                await peer.accept()
                await until_disconnect(peer)

            options = MqttOptions("c", transport=FakeBroker(nursery, script), session_store=store)
            async with open_mqtt_connection(options):
                with pytest.raises(InvalidOptionError, match="one connection at a time"):
                    async with open_mqtt_connection(options.replace(client_id="d")):
                        pass  # pragma: no cover
            nursery.cancel_scope.cancel()


class FailingStore(MemorySessionStore):
    """A durable store whose disk is full."""

    durable = True

    async def apply(self, changes: Sequence[SessionChange]) -> None:
        raise OSError(28, "No space left on device")


async def test_a_failing_store_refuses_the_publish_at_the_call() -> None:
    received: list[object] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:

            async def script(peer: ScriptedPeer) -> None:
                await peer.accept()
                received.extend(await until_disconnect(peer))

            options = MqttOptions(
                "c", transport=FakeBroker(nursery, script), session_store=FailingStore()
            )
            async with open_mqtt_connection(options) as conn:
                with pytest.raises(SessionStoreError, match="session store failed") as caught:
                    await conn.client.publish("t", b"must not leave unstored", qos=1)
                assert isinstance(caught.value.__cause__, OSError)
                # publish_nowait cannot wait for the commit: its tracker and an event tell
                tracker = conn.client.publish_tracked_nowait("t", b"neither", qos=2)
                with pytest.raises(SessionStoreError):
                    await tracker.wait()
                dropped: list[PublishDropped] = []
                while len(dropped) < 2:  # both are reported
                    event = await conn.poll()
                    if isinstance(event, PublishDropped):
                        dropped.append(event)
                assert [(e.reason, e.publish.payload) for e in dropped] == [
                    ("store failed", b"must not leave unstored"),
                    ("store failed", b"neither"),
                ]
                stats = conn.statistics()
                assert (stats.inflight, stats.waiting_publishes) == (0, 0)  # not admitted
                assert stats.connected  # a refused commit sends nothing, the link stays up
                await conn.client.publish("t", b"qos 0 is not stored", qos=0)
                await conn.client.disconnect(grace_period=0)
            nursery.cancel_scope.cancel()
    assert [p.payload for p in received if isinstance(p, Publish)] == [b"qos 0 is not stored"]


class FlakyStore(SqliteSessionStore):
    """Fails its first batch with a sent publish, then works; records what became durable."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.failures = 1
        self.durable_ids: list[int] = []

    async def apply(self, changes: Sequence[SessionChange]) -> None:
        # the commit the writer makes before sending (the publish itself was queued fine)
        if self.failures and any(c.kind == SENT for c in changes):
            self.failures -= 1
            raise sqlite3.OperationalError("disk I/O error")
        await super().apply(changes)
        self.durable_ids += [c.packet_id for c in changes if c.kind == SENT]


async def test_a_failed_batch_is_retried_after_the_reconnect(tmp_path: Path) -> None:
    store = FlakyStore(tmp_path)
    arrived: list[tuple[int, list[int]]] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:

            async def script(peer: ScriptedPeer) -> None:
                await peer.accept(session_present=peer.index > 0)
                if peer.index == 0:
                    await until_disconnect(peer)  # the client gives up before sending
                    return
                publish = await peer.receive()
                assert isinstance(publish, Publish)
                arrived.append((publish.packet_id, list(store.durable_ids)))
                await peer.send(PubAck(publish.packet_id))
                await until_disconnect(peer)

            options = MqttOptions(
                "c",
                clean_start=False,
                transport=FakeBroker(nursery, script),
                session_store=store,
                reconnect=ReconnectPolicy(initial_delay=0.01, max_delay=0.01),
            )
            async with open_mqtt_connection(options) as conn:
                tracker = await conn.client.publish_tracked("t", b"x", qos=1)
                assert (await tracker.wait()).packet_id == 1
            nursery.cancel_scope.cancel()
    # the PUBLISH reached the broker only once its (retried) batch was on disk
    assert arrived == [(1, [1, 1])]
    assert store.read("c") == SessionSnapshot()


class SlowStore(SqliteSessionStore):
    """Takes its time over every commit (a slow disk)."""

    async def apply(self, changes: Sequence[SessionChange]) -> None:
        await trio.sleep(0.3)
        await super().apply(changes)


async def test_a_publish_admitted_is_not_cancelled_while_its_commit_runs(
    tmp_path: Path,
) -> None:
    store = SlowStore(tmp_path)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:

            async def script(peer: ScriptedPeer) -> None:
                await peer.accept()
                await until_disconnect(peer)

            options = MqttOptions(
                "c", transport=FakeBroker(nursery, script), session_store=store, keep_alive=0
            )
            async with open_mqtt_connection(options) as conn:
                with trio.move_on_after(0.05) as scope:
                    await conn.client.publish("t", b"kept", qos=1)
                # the deadline passed while the commit ran: the call still completed
                assert not scope.cancelled_caught
                assert trio.current_time() - scope.deadline > 0.1
                await conn.client.disconnect(grace_period=0)
            nursery.cancel_scope.cancel()
    # sent and never acknowledged by the script: kept as a flow
    assert [p.payload for p in store.read("c").outgoing] == [b"kept"]  # type: ignore[union-attr]
