"""The reliability list of DESIGN.md section 3 (rumqttc defects we do not copy), sans-IO.

Each test drives a ClientState through the scripted broker of ``sansio_broker.py``, so every
packet crosses the real codec in both directions.
"""

from __future__ import annotations

from sansio_broker import SansioBroker, make_client

from trio_mqtt._core._events import (
    Incoming,
    PublishDone,
    PublishDropped,
    SessionLost,
    SubscribeDone,
    UnsubscribeDone,
)
from trio_mqtt._core._packets import (
    ConnAck,
    Connect,
    Disconnect,
    PingReq,
    PingResp,
    Properties,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    QoS,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
)
from trio_mqtt._core._state import ConnectionState


def connected(**options: object) -> SansioBroker:
    broker = SansioBroker(make_client(**options))
    broker.connect()
    broker.events()
    return broker


def reconnect(broker: SansioBroker, *, session_present: bool) -> list[object]:
    """Drop the connection, connect again and return what the client sent after CONNACK."""
    broker.drop()
    broker.connect(session_present=session_present)
    return list(broker.pump())


def test_dup_set_on_retransmission_only() -> None:
    # MQTT-3.3.1-1: DUP=1 when re-delivering; the first delivery has DUP=0.
    broker = connected(clean_start=False)
    broker.client.publish("t", b"x", QoS.AT_LEAST_ONCE, now=0.0)
    (first,) = broker.expect(Publish)
    assert isinstance(first, Publish)
    assert not first.dup
    (again,) = reconnect(broker, session_present=True)
    assert again == Publish("t", b"x", QoS.AT_LEAST_ONCE, dup=True, packet_id=first.packet_id)


def test_acks_subscribes_and_pings_not_stuck_behind_full_window() -> None:
    broker = connected(inflight=1, keep_alive=10)
    client = broker.client
    client.publish("t", b"1", QoS.EXACTLY_ONCE, now=0.0)
    client.publish("t", b"2", QoS.AT_LEAST_ONCE, now=0.0)
    broker.expect(Publish)
    assert client.waiting_count == 1
    broker.publish("in", qos=1, packet_id=5)
    broker.publish("in", qos=2, packet_id=6)
    broker.send(PubRel(6))
    client.subscribe([Subscription("a/#", QoS.AT_LEAST_ONCE)], now=0.0)
    client.unsubscribe(["b"], now=0.0)
    broker.send(PubRec(1))
    client.handle_timeout(10.0)
    sent = broker.pump()
    assert [type(p) for p in sent] == [
        PubAck,
        PubRec,
        PubComp,
        Subscribe,
        Unsubscribe,
        PubRel,
        PingReq,
    ]
    assert client.waiting_count == 1  # the waiting publish still waits for PUBCOMP
    broker.send(PubComp(1))
    assert [type(p) for p in broker.pump()] == [Publish]


def test_subscribe_ids_never_reused_while_in_flight() -> None:
    broker = connected(inflight=5)
    client = broker.client
    client.subscribe([Subscription("a")], now=0.0)
    client.unsubscribe(["b"], now=0.0)
    sub, unsub = broker.expect(Subscribe, Unsubscribe)
    assert (sub.packet_id, unsub.packet_id) == (1, 2)  # type: ignore[union-attr]
    client._last_id = 65530  # publishes wrap around past the held ids 1 and 2
    seen = []
    for _ in range(10):
        client.publish("t", b"", QoS.AT_LEAST_ONCE, now=0.0)
        for packet in broker.pump():
            assert isinstance(packet, Publish)
            seen.append(packet.packet_id)
            broker.send(PubAck(packet.packet_id))
    assert seen == [65531, 65532, 65533, 65534, 65535, 3, 4, 5, 6, 7]
    broker.send(SubAck(1, (1,)), UnsubAck(2))
    client._last_id = 65535
    client.publish("t", b"", QoS.AT_LEAST_ONCE, now=0.0)
    (packet,) = broker.pump()
    assert packet.packet_id == 1  # type: ignore[union-attr]


def test_no_stuck_collision_when_next_id_is_held() -> None:
    broker = connected(inflight=3)
    client = broker.client
    for _ in range(3):
        client.publish("t", b"", QoS.AT_LEAST_ONCE, now=0.0)
    broker.pump()
    broker.send(PubAck(3))
    client._last_id = 0  # next candidate 1 is held: the allocator moves on
    client.publish("t", b"", QoS.AT_LEAST_ONCE, now=0.0)
    (packet,) = broker.expect(Publish)
    assert isinstance(packet, Publish)
    assert packet.packet_id == 3


def test_qos2_duplicate_after_resumed_session_is_not_delivered_again() -> None:
    broker = connected(clean_start=False)
    first = broker.publish("a", b"only once", qos=2, packet_id=11)
    assert broker.pump() == [PubRec(11)]
    assert Incoming(first) in broker.events()
    assert reconnect(broker, session_present=True) == []
    broker.publish("a", b"only once", qos=2, packet_id=11, dup=True)
    incoming = [e for e in broker.events() if isinstance(e, Incoming)]
    assert Incoming(first) not in incoming
    assert not any(isinstance(e.packet, Publish) for e in incoming)
    assert broker.pump() == [PubRec(11)]
    broker.send(PubRel(11))
    assert broker.pump() == [PubComp(11)]


def test_aliased_publishes_are_delivered_with_the_real_topic() -> None:
    broker = connected(protocol_version=5, topic_alias_maximum=4)
    broker.send(Publish("real/topic", b"1", properties=Properties(topic_alias=2)))
    broker.send(Publish("", b"2", properties=Properties(topic_alias=2)))
    delivered = [e.packet for e in broker.events() if isinstance(e, Incoming)]
    assert [(p.topic, p.payload) for p in delivered] == [  # type: ignore[union-attr]
        ("real/topic", b"1"),
        ("real/topic", b"2"),
    ]


def test_subscriptions_restored_after_clean_session_reconnect() -> None:
    broker = connected(clean_start=False)
    client = broker.client
    client.subscribe([Subscription("a/+", QoS.AT_LEAST_ONCE), Subscription("b")], now=0.0)
    client.subscribe([Subscription("c")], now=0.0)
    s1, s2 = broker.expect(Subscribe, Subscribe)
    broker.send(SubAck(s1.packet_id, (1, 0x80)), SubAck(s2.packet_id, (0,)))  # type: ignore[union-attr]
    client.unsubscribe(["c"], now=0.0)
    (unsub,) = broker.expect(Unsubscribe)
    broker.send(UnsubAck(unsub.packet_id))  # type: ignore[union-attr]
    broker.events()
    (resub,) = reconnect(broker, session_present=False)
    assert isinstance(resub, Subscribe)
    # "b" was refused by the broker and "c" was unsubscribed: only "a/+" comes back
    assert resub.subscriptions == (Subscription("a/+", QoS.AT_LEAST_ONCE),)
    assert SessionLost(0, 0, 0, 1) in broker.events()
    # with a resumed session the broker still has them: nothing is re-sent
    broker.send(SubAck(resub.packet_id, (1,)))
    assert reconnect(broker, session_present=True) == []


def test_restore_subscriptions_can_be_disabled() -> None:
    broker = connected(restore_subscriptions=False)
    broker.client.subscribe([Subscription("a")], now=0.0)
    (sub,) = broker.expect(Subscribe)
    broker.send(SubAck(sub.packet_id, (0,)))  # type: ignore[union-attr]
    assert reconnect(broker, session_present=False) == []


def test_disconnect_keeps_inflight_messages_for_the_next_connection() -> None:
    broker = connected(clean_start=False)
    client = broker.client
    client.publish("t", b"keep", QoS.AT_LEAST_ONCE, tag="k", now=0.0)
    broker.pump()
    client.disconnect(0.0)
    assert client.state is ConnectionState.CLOSED
    assert broker.pump() == [Disconnect()]
    assert client.inflight_count == 1
    assert not client.is_idle()
    client.publish("t", b"nothing sent while closed", QoS.AT_MOST_ONCE, now=0.0)
    assert broker.pump() == []
    (replayed, later) = reconnect(broker, session_present=True)
    assert replayed == Publish("t", b"keep", QoS.AT_LEAST_ONCE, dup=True, packet_id=1)
    assert isinstance(later, Publish)
    broker.send(PubAck(1))
    assert PublishDone("k", 1) in broker.events()


def test_requests_made_while_disconnected_go_out_after_reconnect() -> None:
    broker = connected()
    client = broker.client
    broker.drop()
    client.publish("t", b"a", QoS.AT_LEAST_ONCE, now=0.0)
    client.subscribe([Subscription("s")], now=0.0)
    client.publish("t", b"b", QoS.AT_MOST_ONCE, now=0.0)
    assert broker.pump() == []
    sent = reconnect(broker, session_present=False)
    assert [type(p) for p in sent] == [Subscribe, Publish, Publish]
    assert [p.payload for p in sent[1:]] == [b"a", b"b"]  # type: ignore[attr-defined]


def test_session_loss_resends_unacked_publishes_as_new_messages() -> None:
    broker = connected(inflight=10)
    client = broker.client
    client.publish("t", b"q1", QoS.AT_LEAST_ONCE, tag=1, now=0.0)
    client.publish("t", b"q2-recd", QoS.EXACTLY_ONCE, tag=2, now=0.0)
    client.publish("t", b"q2", QoS.EXACTLY_ONCE, tag=3, now=0.0)
    broker.pump()
    broker.send(PubRec(2))
    broker.pump()
    client._last_id = 100
    broker.events()
    sent = reconnect(broker, session_present=False)
    assert sent == [
        Publish("t", b"q1", QoS.AT_LEAST_ONCE, packet_id=101),
        Publish("t", b"q2", QoS.EXACTLY_ONCE, packet_id=102),
    ]
    events = broker.app_events()
    assert PublishDone(2, 2) in events  # PUBREC received: taken as delivered
    assert SessionLost(resent=2, dropped=0, completed=1, resubscribed=0) in events
    broker.send(PubAck(101), PubRec(102))
    broker.send(PubComp(102))
    done = [e for e in broker.events() if isinstance(e, PublishDone)]
    assert done == [PublishDone(1, 101), PublishDone(3, 102)]


def test_session_loss_can_drop_and_report_each_publish() -> None:
    broker = connected(resend_on_session_loss=False)
    client = broker.client
    client.publish("t", b"q1", QoS.AT_LEAST_ONCE, tag="a", now=0.0)
    client.publish("t", b"q2", QoS.EXACTLY_ONCE, now=0.0)
    broker.pump()
    broker.events()
    assert reconnect(broker, session_present=False) == []
    events = broker.app_events()
    dropped = [e for e in events if isinstance(e, PublishDropped)]
    assert [(d.tag, d.publish.payload) for d in dropped] == [("a", b"q1"), (None, b"q2")]
    assert SessionLost(resent=0, dropped=2, completed=0, resubscribed=0) in events
    assert client.is_idle()


def test_session_loss_forgets_incoming_qos2_ids() -> None:
    broker = connected()
    broker.publish("a", qos=2, packet_id=3)
    broker.pump()
    reconnect(broker, session_present=False)
    again = broker.publish("a", b"new message", qos=2, packet_id=3)
    assert Incoming(again) in broker.events()


def test_unanswered_subscribe_and_unsubscribe_are_sent_again() -> None:
    broker = connected(clean_start=False)
    client = broker.client
    client.subscribe([Subscription("a")], tag="s", now=0.0)
    client.unsubscribe(["b"], tag="u", now=0.0)
    sub, unsub = broker.expect(Subscribe, Unsubscribe)
    assert reconnect(broker, session_present=True) == [sub, unsub]
    broker.send(SubAck(sub.packet_id, (0,)), UnsubAck(unsub.packet_id))  # type: ignore[union-attr]
    events = broker.app_events()
    assert SubscribeDone("s", sub.packet_id, (0,)) in events  # type: ignore[union-attr]
    assert UnsubscribeDone("u", unsub.packet_id, ()) in events  # type: ignore[union-attr]


def test_slow_consumer_is_not_taken_for_a_half_open_connection() -> None:
    broker = connected(keep_alive=5, ping_timeout=2)
    client = broker.client
    client.handle_timeout(5.0)
    client.set_reader_paused(True, 5.5)
    client.handle_timeout(60.0)
    client.set_reader_paused(False, 60.0)
    broker.now = 60.1
    broker.send(PingResp())
    client.handle_timeout(61.0)
    assert client.state is ConnectionState.CONNECTED


def test_connect_packet_is_first_and_connack_is_required() -> None:
    client = make_client()
    broker = SansioBroker(client)
    client.publish("t", b"", QoS.AT_LEAST_ONCE, now=0.0)
    client.connect(0.0)
    assert [type(p) for p in broker.pump()] == [Connect]
    broker.send(ConnAck())
    assert [type(p) for p in broker.pump()] == [Publish]
