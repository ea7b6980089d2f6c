"""The queue of unsent publishes (``_core/_queue.py``) against a model, with Hypothesis.

Random runs of publishes (QoS 0-2, with and without an MQTT 5 expiry), clock ticks, commits
and failed commits of the durable queue, and the link going up and down, for each policy at
the bound. A model predicts what waits, what is sent (in admission order, never expired, with
the rest of its expiry interval), what expires and what the policy drops or refuses; a mirror
of the store, fed only with the core's queue log, must hold exactly the waiting QoS 1/2
publishes after every commit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings, strategies as st
from sansio_broker import SansioBroker, make_client

from trio_mqtt._core._config import QueueFullPolicy
from trio_mqtt._core._errors import QueueFullError
from trio_mqtt._core._packets import Properties, PubAck, PubComp, Publish, PubRec, QoS
from trio_mqtt._core._queue import QUEUED

MAX_QUEUED = 4

operations = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.sampled_from([0, 1, 2]), st.sampled_from([None, 1, 3])),
        st.tuples(st.just("tick"), st.sampled_from([0.4, 1.0, 2.5])),
        st.tuples(st.just("commit")),
        st.tuples(st.just("abort")),
        st.tuples(st.just("up")),
        st.tuples(st.just("down")),
    ),
    max_size=40,
)


@dataclass
class Entry:
    seq: int
    qos: int
    admitted: float
    expiry: int | None
    number: int

    def expired(self, now: float) -> bool:
        return self.expiry is not None and now >= self.admitted + self.expiry


@dataclass
class Model:
    policy: QueueFullPolicy
    now: float = 0.0
    connected: bool = False
    released: int = 0
    next_number: int = 1
    next_seq: int = 0
    waiting: list[Entry] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)
    expired: list[int] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)

    def drain(self) -> None:
        while self.connected and self.waiting:
            entry = self.waiting[0]
            if entry.number > self.released:
                return
            self.waiting.pop(0)
            (self.expired if entry.expired(self.now) else self.sent).append(entry.seq)


class Run:
    """The client under test, its broker, and the mirror of the store."""

    def __init__(self, policy: QueueFullPolicy) -> None:
        client = make_client(
            protocol_version=5,
            clean_start=False,
            max_queued=MAX_QUEUED,
            queue_full=policy,
            inflight=100,
        )
        client.set_durable_queue(True)
        self.broker = SansioBroker(client)
        self.client = client
        self.mirror: dict[int, int] = {}  # queue number -> seq, as the store would hold
        self.pending: list[tuple[int, int, Publish | None, float]] = []
        self.wire: list[tuple[int, int | None]] = []  # (seq, expiry interval sent)

    def settle(self) -> None:
        """Take the client's output; acknowledge every flow at once."""
        while True:
            packets = self.broker.pump()
            if not packets:
                return
            for packet in packets:
                if isinstance(packet, Publish):
                    self.wire.append(
                        (int(packet.payload), packet.properties.message_expiry_interval)
                    )
                    if packet.qos == 1:
                        self.broker.send(PubAck(packet.packet_id))
                    elif packet.qos == 2:
                        self.broker.send(PubRec(packet.packet_id))
                elif type(packet).__name__ == "PubRel":
                    self.broker.send(PubComp(packet.packet_id))  # type: ignore[attr-defined]

    def take_log(self) -> None:
        self.pending += self.client.take_queue_changes()


@pytest.mark.parametrize("policy", list(QueueFullPolicy))
@settings(max_examples=150, deadline=None)
@given(ops=operations)
def test_the_queue_follows_its_model(
    policy: QueueFullPolicy, ops: list[tuple[object, ...]]
) -> None:
    run = Run(policy)
    model = Model(policy)
    client = run.client
    for op in ops:
        kind = op[0]
        run.broker.now = model.now
        if kind == "publish":
            qos, expiry = op[1], op[2]
            assert isinstance(qos, int)
            assert expiry is None or isinstance(expiry, int)
            seq = model.next_seq
            model.next_seq += 1
            full = len(model.waiting) >= MAX_QUEUED
            if full:
                for entry in [e for e in model.waiting if e.expired(model.now)]:
                    model.waiting.remove(entry)
                    model.expired.append(entry.seq)
                full = len(model.waiting) >= MAX_QUEUED
            if full and policy is QueueFullPolicy.REJECT:
                with pytest.raises(QueueFullError):
                    client.make_room(model.now)
                model.refused.append(seq)
                continue
            room = client.make_room(model.now)
            assert room == (not full or policy is QueueFullPolicy.DROP_OLDEST)
            if not room:
                model.refused.append(seq)
                continue
            if full:
                model.dropped.append(model.waiting.pop(0).seq)
            props = Properties(message_expiry_interval=expiry)
            client.publish("q", b"%d" % seq, QoS(qos), properties=props, now=model.now)
            if qos == 0 and model.connected and not model.waiting:
                model.sent.append(seq)
            else:
                number = 0
                if qos:
                    number = model.next_number
                    model.next_number += 1
                model.waiting.append(Entry(seq, qos, model.now, expiry, number))
        elif kind == "tick":
            assert isinstance(op[1], float)
            model.now += op[1]
        elif kind == "commit":
            run.take_log()
            numbers = [number for k, number, _, _ in run.pending if k == QUEUED]
            for k, number, publish, _ in run.pending:
                if k == QUEUED:
                    assert publish is not None
                    run.mirror[number] = int(publish.payload)
                else:
                    del run.mirror[number]
            run.pending = []
            if numbers:
                model.released = max(model.released, max(numbers))
                client.release_queued(max(numbers), model.now)
                model.drain()
        elif kind == "abort":
            run.take_log()
            numbers = {number for k, number, _, _ in run.pending if k == QUEUED}
            aborted = client.abort_queued(numbers)
            expected = {e.number for e in model.waiting if e.number in numbers}
            assert aborted == expected
            for entry in [e for e in model.waiting if e.number in aborted]:
                model.waiting.remove(entry)
                model.refused.append(entry.seq)
            run.pending = [c for c in run.pending if not (c[0] == QUEUED and c[1] in aborted)]
        elif kind == "up" and not model.connected:
            run.broker.connect(session_present=True)
            model.connected = True
            model.drain()
        elif kind == "down" and model.connected:
            run.settle()
            run.broker.drop()
            model.connected = False
        if model.connected:
            run.settle()
        # invariants after every step
        assert client.waiting_count == len(model.waiting) <= MAX_QUEUED
        assert [seq for seq, _ in run.wire] == model.sent
        stats = client.statistics
        assert stats.publishes_expired == len(model.expired)
        assert stats.publishes_dropped_oldest == len(model.dropped)
        if kind == "commit":
            # what the commit let out is logged as UNQUEUED, for the next commit
            run.take_log()
            leaving = {number for k, number, _, _ in run.pending if k != QUEUED}
            stored = {n: seq for n, seq in run.mirror.items() if n not in leaving}
            assert stored == {e.number: e.seq for e in model.waiting if e.number}
    # every publish is accounted for exactly once
    everything = model.sent + model.expired + model.dropped + model.refused
    everything += [e.seq for e in model.waiting]
    assert sorted(everything) == list(range(model.next_seq))
    # sent in admission order, never expired, with what was left of the interval
    assert model.sent == sorted(model.sent)
    for _seq, interval in run.wire:
        assert interval is None or interval >= 1
    # what the session would keep: exactly the waiting QoS 1/2 publishes, in order
    kept = client.export_session(model.now).queued
    assert [int(q.publish.payload) for q in kept] == [e.seq for e in model.waiting if e.qos]
    for item, entry in zip(kept, [e for e in model.waiting if e.qos], strict=True):
        assert item.waited == pytest.approx(model.now - entry.admitted)
        assert item.number == entry.number


def test_a_sent_publish_carries_what_is_left_of_its_expiry() -> None:
    client = make_client(protocol_version=5)
    broker = SansioBroker(client)
    client.publish("q", b"0", QoS(1), properties=Properties(message_expiry_interval=10), now=0.0)
    broker.now = 6.5
    broker.connect()
    (sent,) = broker.pump()
    assert isinstance(sent, Publish)
    assert sent.properties.message_expiry_interval == math.ceil(10 - 6.5)


def test_an_expired_publish_is_dropped_and_counted_not_sent() -> None:
    client = make_client(protocol_version=5)
    broker = SansioBroker(client)
    client.publish("q", b"0", QoS(2), properties=Properties(message_expiry_interval=2), now=0.0)
    client.publish("q", b"1", QoS(2), now=0.0)
    broker.now = 2.0
    broker.connect()
    assert [p.payload for p in broker.pump() if isinstance(p, Publish)] == [b"1"]
    assert client.statistics.publishes_expired == 1
    dropped = [e for e in broker.events() if type(e).__name__ == "PublishDropped"]
    assert [(e.reason, e.publish.payload) for e in dropped] == [("expired", b"0")]  # type: ignore[attr-defined]
