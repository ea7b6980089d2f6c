"""Exporting and restoring a session in the sans-IO core (what a session store persists)."""

from __future__ import annotations

import pytest
from sansio_broker import SansioBroker, make_client

from trio_mqtt._core._errors import LocalProtocolError
from trio_mqtt._core._events import Incoming, SessionLost
from trio_mqtt._core._packets import (
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    QoS,
)
from trio_mqtt._core._session import SessionSnapshot


def busy_session() -> tuple[SansioBroker, SessionSnapshot]:
    """A session with one flow at every stage; returns the broker and the exported snapshot."""
    broker = SansioBroker(make_client(clean_start=False))
    broker.connect()
    client = broker.client
    client.publish("a", b"one", QoS.AT_LEAST_ONCE, now=0.0)  # id 1, awaits PUBACK
    client.publish("b", b"two", QoS.EXACTLY_ONCE, now=0.0)  # id 2, will await PUBCOMP
    client.publish("c", b"three", QoS.EXACTLY_ONCE, now=0.0)  # id 3, awaits PUBREC
    client.publish("d", b"four", QoS.AT_LEAST_ONCE, now=0.0)  # id 4, acked: gone
    broker.expect(Publish, Publish, Publish, Publish)
    broker.send(PubRec(2), PubAck(4))
    broker.expect(PubRel)
    broker.publish("in", b"q2", qos=2, packet_id=7)  # answered with PUBREC, awaits PUBREL
    broker.expect(PubRec)
    broker.events()
    return broker, client.export_session()


def test_export_lists_unfinished_flows_in_order() -> None:
    _, snapshot = busy_session()
    kinds = [(type(p).__name__, p.packet_id) for p in snapshot.outgoing]
    assert kinds == [("Publish", 1), ("PubRel", 2), ("Publish", 3)]
    first = snapshot.outgoing[0]
    assert isinstance(first, Publish)
    assert (first.topic, first.payload, first.qos) == ("a", b"one", 1)
    assert snapshot.incoming == (7,)


def test_restore_then_session_present_replays_with_original_ids() -> None:
    _, snapshot = busy_session()
    broker = SansioBroker(make_client(clean_start=False))
    broker.client.restore_session(snapshot)
    assert broker.client.inflight_count == 3
    broker.connect(session_present=True)
    sent = broker.pump()
    # MQTT-4.4.0-1: same ids, original order, PUBLISH with DUP=1 (MQTT-3.3.1-1).
    assert [(type(p).__name__, p.packet_id) for p in sent] == [  # type: ignore[attr-defined]
        ("Publish", 1),
        ("PubRel", 2),
        ("Publish", 3),
    ]
    assert all(p.dup for p in sent if isinstance(p, Publish))
    broker.events()
    # The broker re-sends the QoS 2 message we had already taken: answered, not delivered.
    broker.publish("in", b"q2", qos=2, packet_id=7, dup=True)
    broker.expect(PubRec)
    assert not [e for e in broker.events() if isinstance(e, Incoming) and e.packet.qos == 2]  # type: ignore[union-attr]
    broker.send(PubRel(7))
    broker.expect(PubComp)
    # New publishes take ids nobody holds, and acks finish the restored flows.
    broker.client.publish("e", b"five", QoS.AT_LEAST_ONCE, now=0.0)
    (fresh,) = broker.expect(Publish)
    assert fresh.packet_id not in (1, 2, 3)  # type: ignore[attr-defined]
    broker.send(PubAck(1), PubComp(2), PubRec(3))
    broker.expect(PubRel)
    broker.send(PubComp(3), PubAck(fresh.packet_id))  # type: ignore[attr-defined]
    assert broker.client.is_idle()
    assert broker.client.export_session() == SessionSnapshot()


def test_restore_then_session_lost_applies_the_loss_rules() -> None:
    _, snapshot = busy_session()
    broker = SansioBroker(make_client(clean_start=False))
    broker.client.restore_session(snapshot)
    broker.connect(session_present=False)
    lost = [e for e in broker.events() if isinstance(e, SessionLost)]
    # Both publishes go out again as new messages; the PUBREL-stage one counts as delivered.
    assert lost == [SessionLost(resent=2, dropped=0, completed=1, resubscribed=0)]
    again = broker.pump()
    assert [(p.topic, p.dup) for p in again if isinstance(p, Publish)] == [
        ("a", False),
        ("c", False),
    ]
    assert broker.client.export_session().incoming == ()


def test_restore_is_refused_after_connecting_or_into_a_busy_session() -> None:
    _, snapshot = busy_session()
    broker = SansioBroker(make_client(clean_start=False))
    broker.connect()
    with pytest.raises(LocalProtocolError):
        broker.client.restore_session(snapshot)
    fresh = make_client(clean_start=False)
    fresh.restore_session(snapshot)
    with pytest.raises(LocalProtocolError):
        fresh.restore_session(snapshot)


@pytest.mark.parametrize(
    "outgoing",
    [
        (Publish("a", b"", QoS.AT_MOST_ONCE),),
        (PubRel(5), PubRel(5)),
        (PubRel(0),),
    ],
)
def test_inconsistent_snapshots_are_refused(outgoing: tuple[Publish | PubRel, ...]) -> None:
    client = make_client(clean_start=False)
    with pytest.raises(LocalProtocolError):
        client.restore_session(SessionSnapshot(outgoing))
    assert client.is_idle()
