"""Manual acks leave in the order the publishes arrived (MQTT-4.6.0-2), whatever the order of
the application's calls: later acks are held until every earlier message is acked.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st
from sansio_broker import SansioBroker, make_client

from trio_mqtt._core._errors import UnknownPacketIdError
from trio_mqtt._core._packets import ProtocolVersion, PubAck, PubComp, PubRec, PubRel


def manual(**options: object) -> SansioBroker:
    broker = SansioBroker(make_client(manual_acks=True, **options))
    broker.connect()
    broker.events()
    return broker


def test_out_of_order_acks_are_held_and_released_in_arrival_order() -> None:
    broker = manual()
    client = broker.client
    for pid in (5, 6, 7):
        broker.publish("a", qos=1, packet_id=pid)
    client.ack(7, now=0.0)
    client.ack(6, now=0.0)
    assert broker.pump() == []
    assert client.held_ack_count == 2
    client.ack(5, now=0.0)
    assert broker.pump() == [PubAck(5), PubAck(6), PubAck(7)]
    assert client.held_ack_count == 0
    assert client.is_idle()


def test_a_held_ack_can_be_replaced_and_keeps_its_reason_code() -> None:
    broker = manual(protocol_version=ProtocolVersion.V5)
    client = broker.client
    broker.publish("a", qos=1, packet_id=1)
    broker.publish("a", qos=2, packet_id=2)
    client.ack(2, 0x80, now=0.0)  # refuse it, but only once 1 is acked
    client.ack(2, 0x83, now=0.0)  # changed its mind: the later ack replaces the held one
    assert client.held_ack_count == 1
    client.ack(1, now=0.0)
    assert broker.pump() == [PubAck(1), PubRec(2, 0x83)]
    with pytest.raises(UnknownPacketIdError):
        client.ack(2, now=0.0)  # refused with PUBREC 0x83: the flow is over


def test_qos2_flow_continues_after_a_released_pubrec() -> None:
    broker = manual()
    client = broker.client
    broker.publish("a", qos=2, packet_id=1)
    broker.publish("a", qos=2, packet_id=2)
    client.ack(2, now=0.0)
    assert broker.pump() == []
    client.ack(1, now=0.0)
    assert broker.pump() == [PubRec(1), PubRec(2)]
    broker.send(PubRel(2), PubRel(1))
    assert broker.pump() == [PubComp(2), PubComp(1)]
    assert client.is_idle()


def test_held_acks_survive_a_reconnect_with_the_session() -> None:
    broker = manual(clean_start=False)
    client = broker.client
    broker.publish("a", qos=1, packet_id=1)
    broker.publish("a", qos=1, packet_id=2)
    client.ack(2, now=0.0)
    broker.drop()
    broker.connect(session_present=True)
    broker.publish("a", qos=1, packet_id=1, dup=True)  # the broker sends 1 again
    broker.publish("a", qos=1, packet_id=2, dup=True)
    assert broker.pump() == []
    client.ack(1, now=0.0)
    assert broker.pump() == [PubAck(1), PubAck(2)]


def test_a_lost_session_forgets_held_acks() -> None:
    broker = manual()
    client = broker.client
    broker.publish("a", qos=1, packet_id=1)
    broker.publish("a", qos=1, packet_id=2)
    client.ack(2, now=0.0)
    broker.drop()
    broker.connect(session_present=False)
    assert client.held_ack_count == 0
    with pytest.raises(UnknownPacketIdError):
        client.ack(1, now=0.0)
    broker.publish("a", qos=1, packet_id=1)  # a new message may take the id again
    client.ack(1, now=0.0)
    assert broker.pump() == [PubAck(1)]


@settings(max_examples=200, deadline=None)
@given(
    qos=st.lists(st.sampled_from([1, 2]), min_size=1, max_size=12),
    data=st.data(),
)
def test_acks_on_the_wire_follow_arrival_order(qos: list[int], data: st.DataObject) -> None:
    broker = manual()
    client = broker.client
    ids = [10 + n for n in range(len(qos))]
    for pid, level in zip(ids, qos, strict=True):
        broker.publish("t", qos=level, packet_id=pid)
    order = data.draw(st.permutations(ids))
    acked: set[int] = set()
    wire: list[int] = []
    for pid in order:
        client.ack(pid, now=0.0)
        acked.add(pid)
        wire += [p.packet_id for p in broker.pump() if isinstance(p, PubAck | PubRec)]
        # what went out is exactly the longest prefix of arrivals that is all acked
        prefix = 0
        while prefix < len(ids) and ids[prefix] in acked:
            prefix += 1
        assert wire == ids[:prefix]
        assert client.held_ack_count == len(acked) - prefix
    assert wire == ids
