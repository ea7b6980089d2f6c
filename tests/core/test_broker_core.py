"""The sans-IO broker (trio_mqtt._core._broker) packet by packet: no sockets, no clock."""

from __future__ import annotations

import pytest
from broker_peer import Peer

from trio_mqtt._core._broker import Broker, BrokerConfig
from trio_mqtt._core._packets import (
    ConnAck,
    Connect,
    Disconnect,
    PingReq,
    PingResp,
    Properties,
    ProtocolVersion,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    QoS,
    RetainHandling,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
)
from trio_mqtt._core._reason_codes import ReasonCode

VERSIONS = [4, 5]


def broker(**config: object) -> Broker:
    return Broker(BrokerConfig(**config))  # type: ignore[arg-type]


# ------------------------------------------------------------------ QoS both ways


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_publish_reaches_a_subscriber_at_the_lower_qos(version: int, qos: int) -> None:
    b = broker()
    sub = Peer(b, version)
    sub.connect("sub")
    assert sub.subscribe("a/+", qos=1).reason_codes == (1,)
    pub = Peer(b, version)
    pub.connect("pub")
    acks = pub.publish("a/b", b"hello", qos=qos, packet_id=9 if qos else 0)
    expected = {0: [], 1: [PubAck], 2: [PubRec, PubComp]}[qos]
    assert [type(p) for p in acks] == expected
    (message,) = sub.messages()
    assert (message.topic, message.payload, message.qos) == ("a/b", b"hello", min(qos, 1))
    assert sub.messages() == []


def test_qos2_retransmission_is_acknowledged_but_routed_once() -> None:
    b = broker()
    sub = Peer(b)
    sub.connect("sub")
    sub.subscribe("t", qos=2)
    pub = Peer(b)
    pub.connect("pub")
    pub.send(Publish("t", b"once", QoS.EXACTLY_ONCE, packet_id=4))
    pub.send(Publish("t", b"once", QoS.EXACTLY_ONCE, dup=True, packet_id=4))
    assert pub.expect(PubRec, PubRec)
    pub.send(PubRel(4))
    assert pub.expect(PubComp)
    assert [m.payload for m in sub.messages()] == [b"once"]
    # once released, the same packet id is a new message
    pub.publish("t", b"again", qos=2, packet_id=4)
    assert [m.payload for m in sub.messages()] == [b"again"]


def test_ack_goes_out_before_the_publishers_own_copy() -> None:
    b = broker()
    peer = Peer(b)
    peer.connect("self")
    peer.subscribe("me", qos=1)
    peer.send(Publish("me", b"x", QoS.AT_LEAST_ONCE, packet_id=1))
    assert [type(p) for p in peer.recv()] == [PubAck, Publish]


def test_outgoing_qos2_flow_completes_with_pubrel() -> None:
    b = broker()
    sub = Peer(b)
    sub.connect("sub")
    sub.subscribe("q2", qos=2)
    Peer(b).connect("pub")
    b.publish("q2", b"m", 2, now=0.0)
    (publish,) = sub.expect(Publish)
    assert isinstance(publish, Publish)
    sub.send(PubRec(publish.packet_id))
    assert sub.expect(PubRel)
    sub.send(PubComp(publish.packet_id))
    assert sub.recv() == []
    assert b.sessions["sub"].inflight == {}


# ------------------------------------------------------------------ retained, $ topics


@pytest.mark.parametrize("version", VERSIONS)
def test_retained_message_is_kept_replaced_and_cleared(version: int) -> None:
    b = broker()
    pub = Peer(b, version)
    pub.connect("pub")
    pub.publish("r/t", b"old", qos=1, retain=True)
    pub.publish("r/t", b"new", qos=1, retain=True, packet_id=2)
    late = Peer(b, version)
    late.connect("late")
    late.subscribe("r/#", qos=1)
    (message,) = late.messages()
    assert (message.payload, message.retain) == (b"new", True)
    pub.publish("r/t", b"", qos=0, retain=True)
    later = Peer(b, version)
    later.connect("later")
    later.subscribe("r/#", qos=1)
    assert later.messages() == []
    assert b.statistics().retained_messages == sum(
        1 for topic in b.router.retained if topic.startswith("$SYS")
    )


def test_live_copies_lose_the_retain_flag_unless_retain_as_published() -> None:
    b = broker()
    plain = Peer(b, 5)
    plain.connect("plain")
    plain.subscribe("k")
    kept = Peer(b, 5)
    kept.connect("kept")
    kept.subscribe(Subscription("k", retain_as_published=True))
    pub = Peer(b, 5)
    pub.connect("pub")
    pub.publish("k", b"v", retain=True)
    assert [m.retain for m in plain.messages()] == [False]
    assert [m.retain for m in kept.messages()] == [True]


def test_dollar_topics_do_not_match_first_level_wildcards() -> None:
    b = broker()
    wild = Peer(b)
    wild.connect("wild")
    wild.subscribe("#", "+/x")
    named = Peer(b)
    named.connect("named")
    named.subscribe("$app/#")
    b.publish("$app/x", b"d", now=0.0)
    b.publish("app/x", b"p", now=0.0)
    assert [m.topic for m in wild.messages()] == ["app/x"]
    assert [m.topic for m in named.messages()] == ["$app/x"]


def test_sys_topics_are_published_retained_when_started() -> None:
    b = broker(sys_interval=5)
    b.start(100.0)
    peer = Peer(b, now=103.0)
    peer.connect("sys")
    peer.subscribe("$SYS/broker/uptime")
    assert [m.payload for m in peer.messages()] == [b"0 seconds"]
    assert b.next_deadline() == 105.0
    b.tick(105.0)
    assert [m.payload for m in peer.messages()] == [b"5 seconds"]


# ------------------------------------------------------------------ sessions, queueing


@pytest.mark.parametrize("version", VERSIONS)
def test_persistent_session_queues_qos1_but_not_qos0_while_offline(version: int) -> None:
    b = broker()
    persistent = {"clean_start": False}
    if version == 5:
        persistent["properties"] = Properties(session_expiry_interval=60)  # type: ignore[assignment]
    sub = Peer(b, version)
    assert not sub.connect("sleeper", **persistent).session_present
    sub.subscribe("s", qos=1)
    sub.send(Disconnect())
    assert sub.conn.closed
    b.publish("s", b"q0", 0, now=1.0)
    b.publish("s", b"q1", 1, now=1.0)
    back = Peer(b, version, now=2.0)
    assert back.connect("sleeper", **persistent).session_present
    assert [(m.payload, m.qos) for m in back.messages()] == [(b"q1", QoS.AT_LEAST_ONCE)]


def test_clean_session_forgets_everything() -> None:
    b = broker()
    sub = Peer(b)
    sub.connect("c", clean_start=False)
    sub.subscribe("s", qos=1)
    sub.conn.connection_lost(0.0)
    again = Peer(b)
    assert not again.connect("c", clean_start=True).session_present
    b.publish("s", b"x", 1, now=0.0)
    assert again.messages() == []
    assert b.statistics().subscriptions == 0


def test_unacknowledged_messages_are_resent_with_dup_and_pubrel_after_pubrec() -> None:
    b = broker()
    sub = Peer(b)
    sub.connect("r", clean_start=False)
    sub.subscribe("one", qos=1)
    sub.subscribe("two", qos=2, packet_id=2)
    b.publish("one", b"1", 1, now=0.0)
    b.publish("two", b"2", 2, now=0.0)
    b.publish("two", b"3", 2, now=0.0)
    _first, _second, third = sub.recv()
    assert isinstance(third, Publish)
    sub.send(PubRec(third.packet_id))
    assert sub.expect(PubRel)
    sub.conn.connection_lost(1.0)
    back = Peer(b)
    back.connect("r", clean_start=False)
    again = back.inbox
    assert [type(p) for p in again] == [Publish, Publish, PubRel]
    assert [(p.payload, p.dup) for p in again[:2]] == [(b"1", True), (b"2", True)]  # type: ignore[union-attr]
    assert again[2].packet_id == third.packet_id  # type: ignore[union-attr]


def test_offline_queue_bound_drops_the_newest_and_counts_it() -> None:
    b = broker(max_queued_messages=3)
    sub = Peer(b)
    sub.connect("bounded", clean_start=False)
    sub.subscribe("b", qos=1)
    sub.conn.connection_lost(0.0)
    for number in range(5):
        b.publish("b", str(number).encode(), 1, now=0.0)
    stats = b.statistics()
    assert (stats.messages_dropped, stats.dropped_queue_full) == (2, 2)
    back = Peer(b)
    back.connect("bounded", clean_start=False)
    assert [m.payload for m in back.messages()] == [b"0", b"1", b"2"]


def test_slow_subscriber_has_bounded_output_window_and_queue() -> None:
    b = broker(max_output_bytes=1000, max_inflight=5, max_queued_messages=10)
    slow = Peer(b)
    slow.connect("slow")
    slow.subscribe("f", qos=1)
    slow.subscribe("z", qos=0, packet_id=2)
    slow.recv()
    for _ in range(100):
        b.publish("f", b"x" * 100, 1, now=0.0)
        b.publish("z", b"x" * 100, 0, now=0.0)
    session = b.sessions["slow"]
    assert len(session.inflight) <= 5
    assert len(session.queue) == 10
    stats = b.statistics()
    assert stats.dropped_queue_full > 0
    assert stats.dropped_congested > 0
    # it catches up once it reads and acknowledges
    received = slow.messages()
    assert received
    assert all(len(m.payload) == 100 for m in received)


@pytest.mark.parametrize("version", VERSIONS)
def test_session_takeover_closes_the_old_connection(version: int) -> None:
    b = broker()
    old = Peer(b, version)
    old.connect("same")
    new = Peer(b, version)
    new.connect("same")
    assert old.conn.closed
    packets = old.recv()
    if version == 5:
        assert packets == [Disconnect(ReasonCode.SESSION_TAKEN_OVER)]
    else:
        assert packets == []
    assert b.statistics().connections == 1
    assert not new.conn.closed


def test_v5_session_expiry_forgets_the_session_after_the_interval() -> None:
    b = broker()
    peer = Peer(b, 5)
    peer.connect("exp", clean_start=False, properties=Properties(session_expiry_interval=10))
    peer.subscribe("e", qos=1)
    peer.conn.connection_lost(100.0)
    assert b.next_deadline() == 110.0
    b.tick(109.0)
    assert "exp" in b.sessions
    b.tick(110.0)
    assert "exp" not in b.sessions
    assert b.statistics().subscriptions == 0


def test_session_expiry_on_disconnect_after_zero_is_a_protocol_error() -> None:
    b = broker()
    peer = Peer(b, 5)
    peer.connect("z")
    peer.send(Disconnect(properties=Properties(session_expiry_interval=30)))
    assert peer.recv() == [Disconnect(ReasonCode.PROTOCOL_ERROR)]


# ------------------------------------------------------------------ wills


@pytest.mark.parametrize("version", VERSIONS)
def test_will_is_sent_on_a_lost_connection_but_not_after_disconnect(version: int) -> None:
    b = broker()
    watcher = Peer(b, version)
    watcher.connect("watcher")
    watcher.subscribe("will/#", qos=1)
    will = Will("will/a", b"gone", QoS.AT_LEAST_ONCE)
    polite = Peer(b, version)
    polite.connect("a", will=will)
    polite.send(Disconnect())
    assert watcher.messages() == []
    rude = Peer(b, version)
    rude.connect("a", will=will)
    rude.conn.connection_lost(0.0)
    assert [m.payload for m in watcher.messages()] == [b"gone"]


def test_v5_disconnect_with_will_message_sends_the_will() -> None:
    b = broker()
    watcher = Peer(b, 5)
    watcher.connect("w")
    watcher.subscribe("will")
    peer = Peer(b, 5)
    peer.connect("p", will=Will("will", b"bye"))
    peer.send(Disconnect(ReasonCode.DISCONNECT_WITH_WILL_MESSAGE))
    assert [m.payload for m in watcher.messages()] == [b"bye"]


def test_v5_will_delay_waits_and_a_reconnection_cancels_it() -> None:
    b = broker()
    watcher = Peer(b, 5)
    watcher.connect("w")
    watcher.subscribe("will")
    will = Will("will", b"late", properties=Properties(will_delay_interval=5))
    session = Properties(session_expiry_interval=100)
    peer = Peer(b, 5)
    peer.connect("p", clean_start=False, will=will, properties=session)
    peer.conn.connection_lost(10.0)
    b.tick(14.0)
    assert watcher.messages() == []
    b.tick(15.0)
    assert [m.payload for m in watcher.messages()] == [b"late"]
    # second time: the client comes back within the delay
    peer = Peer(b, 5, now=20.0)
    peer.connect("p", clean_start=False, will=will, properties=session)
    peer.conn.connection_lost(20.0)
    again = Peer(b, 5, now=22.0)
    again.connect("p", clean_start=False, properties=session)
    b.tick(30.0)
    assert watcher.messages() == []


# ------------------------------------------------------------------ keepalive, auth, limits


@pytest.mark.parametrize("version", VERSIONS)
def test_keepalive_is_enforced_at_one_and_a_half_times(version: int) -> None:
    b = broker()
    peer = Peer(b, version)
    peer.connect("ka", keep_alive=10)
    peer.now = 14.0
    peer.send(PingReq())
    assert peer.expect(PingResp)
    assert b.next_deadline() == 29.0
    b.tick(28.9)
    assert not peer.conn.closed
    b.tick(29.0)
    assert peer.conn.closed
    expected = [Disconnect(ReasonCode.KEEP_ALIVE_TIMEOUT)] if version == 5 else []
    assert peer.recv() == expected


def test_connect_must_come_within_the_connect_timeout() -> None:
    b = broker(connect_timeout=3)
    peer = Peer(b)
    b.tick(3.0)
    assert peer.conn.closed


def test_v5_server_keep_alive_overrides_the_clients() -> None:
    b = broker(server_keep_alive=20)
    peer = Peer(b, 5)
    ack = peer.connect("ska", keep_alive=600)
    assert ack.properties.server_keep_alive == 20
    assert peer.conn.keep_alive == 20


@pytest.mark.parametrize("version", VERSIONS)
def test_user_name_and_password_are_checked(version: int) -> None:
    b = broker(users={"alice": "secret"})
    bad = {4: 4, 5: ReasonCode.BAD_USER_NAME_OR_PASSWORD}[version]
    for username, password in ((None, None), ("alice", b"wrong"), ("bob", b"secret")):
        peer = Peer(b, version)
        ack = peer.connect("x", username=username, password=password)
        assert ack.reason_code == bad
        assert peer.conn.closed
    good = Peer(b, version)
    assert good.connect("x", username="alice", password=b"secret").reason_code == 0
    assert b.statistics().connections_refused == 3


def test_authorize_hook_refuses_publish_and_subscribe() -> None:
    def authorize(client_id: str, username: str | None, action: str, topic: str) -> bool:
        return not topic.startswith("secret")

    b = broker(authorize=authorize)
    peer = Peer(b, 5)
    peer.connect("acl")
    assert peer.subscribe("secret/#", "open/#", qos=1).reason_codes == (
        ReasonCode.NOT_AUTHORIZED,
        1,
    )
    (ack,) = peer.publish("secret/x", qos=1)
    assert ack == PubAck(1, ReasonCode.NOT_AUTHORIZED)


@pytest.mark.parametrize("version", VERSIONS)
def test_connection_limit_refuses_with_server_busy(version: int) -> None:
    b = broker(max_connections=1)
    Peer(b, version).connect("one")
    refused = Peer(b, version)
    code = {4: 3, 5: ReasonCode.SERVER_BUSY}[version]
    assert refused.connect("two").reason_code == code
    # the same client id taking its session over is not a new connection
    assert Peer(b, version).connect("one").reason_code == 0


def test_v311_empty_client_id_needs_a_clean_session() -> None:
    b = broker()
    assert Peer(b).connect("", clean_start=False).reason_code == 2
    assert Peer(b).connect("", clean_start=True).reason_code == 0


# ------------------------------------------------------------------ MQTT 5 features


def test_v5_assigned_client_identifier() -> None:
    b = broker()
    ack = Peer(b, 5).connect("")
    assigned = ack.properties.assigned_client_identifier
    assert assigned
    assert assigned in b.sessions


def test_v5_no_local_skips_the_publishers_own_messages() -> None:
    b = broker()
    peer = Peer(b, 5)
    peer.connect("nl")
    peer.subscribe(Subscription("nl", no_local=True))
    peer.publish("nl", b"mine")
    assert peer.messages() == []
    other = Peer(b, 5)
    other.connect("other")
    other.publish("nl", b"theirs")
    assert [m.payload for m in peer.messages()] == [b"theirs"]


def test_v5_retain_handling_options() -> None:
    b = broker()
    b.publish("rh", b"kept", 0, True, now=0.0)
    peer = Peer(b, 5)
    peer.connect("rh")
    always = Subscription("rh", retain_handling=RetainHandling.SEND_ON_SUBSCRIBE)
    if_new = Subscription("rh", retain_handling=RetainHandling.SEND_IF_NEW_SUBSCRIPTION)
    never = Subscription("rh", retain_handling=RetainHandling.DO_NOT_SEND)
    peer.subscribe(if_new)
    assert len(peer.messages()) == 1
    peer.subscribe(if_new)
    assert peer.messages() == []
    peer.subscribe(always)
    assert len(peer.messages()) == 1
    peer.subscribe(never)
    assert peer.messages() == []


def test_v5_subscription_identifiers_are_attached_per_matching_subscription() -> None:
    b = broker()
    peer = Peer(b, 5)
    peer.connect("ids")
    peer.subscribe("i/#", properties=Properties(subscription_identifiers=(7,)))
    peer.subscribe("i/+", packet_id=2, properties=Properties(subscription_identifiers=(9,)))
    b.publish("i/x", b"m", now=0.0)
    (message,) = peer.messages()
    assert sorted(message.properties.subscription_identifiers) == [7, 9]


def test_v5_properties_pass_through_and_expiry_counts_down() -> None:
    b = broker()
    sub = Peer(b, 5)
    sub.connect("s", clean_start=False, properties=Properties(session_expiry_interval=60))
    sub.subscribe("rr", qos=1)
    sub.conn.connection_lost(0.0)
    props = Properties(
        response_topic="reply/to",
        correlation_data=b"\x01",
        user_properties=(("k", "v"),),
        content_type="text/plain",
        payload_format_indicator=1,
        message_expiry_interval=30,
    )
    pub = Peer(b, 5, now=0.0)
    pub.connect("p")
    pub.publish("rr", b"req", qos=1, properties=props)
    back = Peer(b, 5, now=10.0)
    back.connect("s", clean_start=False, properties=Properties(session_expiry_interval=60))
    (message,) = back.messages()
    got = message.properties
    assert (got.response_topic, got.correlation_data, got.user_properties) == (
        "reply/to",
        b"\x01",
        (("k", "v"),),
    )
    assert (got.content_type, got.payload_format_indicator) == ("text/plain", 1)
    assert got.message_expiry_interval == 20


def test_v5_expired_queued_message_is_dropped() -> None:
    b = broker()
    sub = Peer(b, 5)
    sub.connect("s", clean_start=False, properties=Properties(session_expiry_interval=60))
    sub.subscribe("x", qos=1)
    sub.conn.connection_lost(0.0)
    b.publish("x", b"old", 1, properties=Properties(message_expiry_interval=5), now=0.0)
    back = Peer(b, 5, now=6.0)
    back.connect("s", clean_start=False, properties=Properties(session_expiry_interval=60))
    assert back.messages() == []
    assert b.statistics().dropped_expired == 1


def test_v5_incoming_topic_aliases() -> None:
    b = broker(topic_alias_maximum=2)
    sub = Peer(b, 5)
    sub.connect("s")
    sub.subscribe("long/topic")
    pub = Peer(b, 5)
    assert pub.connect("p").properties.topic_alias_maximum == 2
    pub.publish("long/topic", b"1", properties=Properties(topic_alias=1))
    pub.publish("", b"2", properties=Properties(topic_alias=1))
    assert [(m.topic, m.payload) for m in sub.messages()] == [
        ("long/topic", b"1"),
        ("long/topic", b"2"),
    ]
    pub.publish("", b"3", properties=Properties(topic_alias=2))  # never set
    assert pub.conn.closed
    assert pub.inbox[-1] == Disconnect(ReasonCode.PROTOCOL_ERROR)
    wrong = Peer(b, 5)
    wrong.connect("w")
    wrong.publish("t", properties=Properties(topic_alias=3))
    assert wrong.inbox[-1] == Disconnect(ReasonCode.TOPIC_ALIAS_INVALID)


def test_v5_outgoing_topic_aliases_up_to_the_clients_maximum() -> None:
    b = broker()
    sub = Peer(b, 5)
    sub.connect("s", properties=Properties(topic_alias_maximum=1))
    sub.subscribe("#")
    for topic in ("a/b", "a/b", "c/d", "a/b"):
        b.publish(topic, b"m", now=0.0)
    first, second, third, fourth = sub.messages()
    assert (first.topic, first.properties.topic_alias) == ("a/b", 1)
    assert (second.topic, second.properties.topic_alias) == ("", 1)
    # the only alias the client allows is handed on, each time with the topic name
    assert (third.topic, third.properties.topic_alias) == ("c/d", 1)
    assert (fourth.topic, fourth.properties.topic_alias) == ("a/b", 1)


def test_v5_outgoing_alias_of_the_least_recently_used_topic_is_reassigned() -> None:
    b = broker()
    sub = Peer(b, 5)
    sub.connect("lru", properties=Properties(topic_alias_maximum=2))
    sub.subscribe("#")
    for topic in ("a", "b", "a", "c", "b", "c"):
        b.publish(topic, b"m", now=0.0)
    got = [(p.topic, p.properties.topic_alias) for p in sub.messages()]
    # c takes b's alias (a was used since), then b takes a's
    assert got == [("a", 1), ("b", 2), ("", 1), ("c", 2), ("b", 1), ("", 2)]


def test_v5_message_dropped_as_too_large_does_not_take_an_alias() -> None:
    b = broker()
    sub = Peer(b, 5)
    sub.connect("small", properties=Properties(topic_alias_maximum=2, maximum_packet_size=64))
    sub.subscribe("#")
    b.publish("t", b"x" * 100, now=0.0)  # dropped for this client (MQTT-3.1.2-25)
    b.publish("t", b"small", now=0.0)
    (only,) = sub.messages()
    assert (only.topic, only.payload, only.properties.topic_alias) == ("t", b"small", 1)
    assert b.statistics().dropped_too_large == 1


def test_v5_client_receive_maximum_limits_messages_in_flight() -> None:
    b = broker()
    sub = Peer(b, 5)
    sub.connect("rm", properties=Properties(receive_maximum=2))
    sub.subscribe("w", qos=1)
    for number in range(5):
        b.publish("w", str(number).encode(), 1, now=0.0)
    first = sub.recv()
    assert len(first) == 2
    for publish in first:
        sub.send(PubAck(publish.packet_id))  # type: ignore[union-attr]
    assert len(sub.recv()) == 2


def test_v5_receive_maximum_exceeded_by_the_client() -> None:
    b = broker(receive_maximum=2)
    pub = Peer(b, 5)
    assert pub.connect("p").properties.receive_maximum == 2
    for pid in (1, 2, 3):
        pub.send(Publish("t", b"", QoS.EXACTLY_ONCE, packet_id=pid))
    assert pub.recv()[-1] == Disconnect(ReasonCode.RECEIVE_MAXIMUM_EXCEEDED)


def test_v5_client_maximum_packet_size_drops_larger_messages() -> None:
    b = broker()
    sub = Peer(b, 5)
    sub.connect("small", properties=Properties(maximum_packet_size=100))
    sub.subscribe("m", qos=1)
    b.publish("m", b"x" * 200, 1, now=0.0)
    b.publish("m", b"ok", 1, now=0.0)
    assert [m.payload for m in sub.messages()] == [b"ok"]
    assert b.statistics().dropped_too_large == 1


def test_v5_shared_subscription_round_robin() -> None:
    b = broker()
    workers = []
    for name in ("w1", "w2"):
        worker = Peer(b, 5)
        worker.connect(name)
        worker.subscribe("$share/g/jobs/#", qos=1)
        workers.append(worker)
    plain = Peer(b, 5)
    plain.connect("all")
    plain.subscribe("jobs/#")
    for number in range(6):
        b.publish(f"jobs/{number}", b"j", 1, now=0.0)
    counts = [len(worker.messages()) for worker in workers]
    assert counts == [3, 3]
    assert len(plain.messages()) == 6
    workers[0].send(Unsubscribe(5, ("$share/g/jobs/#",)))
    assert workers[0].recv() == [UnsubAck(5, (0,))]
    b.publish("jobs/x", b"j", 1, now=0.0)
    assert len(workers[1].messages()) == 1


def test_v5_unsubscribe_reason_codes() -> None:
    b = broker()
    peer = Peer(b, 5)
    peer.connect("u")
    peer.subscribe("a")
    peer.send(Unsubscribe(3, ("a", "b")))
    assert peer.recv() == [UnsubAck(3, (0, ReasonCode.NO_SUBSCRIPTION_EXISTED))]


def test_invalid_filter_is_refused_in_suback() -> None:
    b = broker()
    peer = Peer(b, 5)
    peer.connect("f")
    assert peer.subscribe("ok", "$share/g", qos=1).reason_codes == (
        1,
        ReasonCode.TOPIC_FILTER_INVALID,
    )


# ------------------------------------------------------------------ hostile input


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\x30\x02\x00\x05", ReasonCode.MALFORMED_PACKET),  # topic longer than the packet
        (b"\x36\x05\x00\x01a\x00\x01", ReasonCode.MALFORMED_PACKET),  # QoS 3
        (b"\xd0\x00", ReasonCode.PROTOCOL_ERROR),  # PINGRESP from a client
        (b"\x30\x05\x00\x03a/+", ReasonCode.TOPIC_NAME_INVALID),  # wildcard topic
    ],
)
def test_malformed_packets_close_with_the_reason_code(data: bytes, code: int) -> None:
    b = broker()
    peer = Peer(b, 5)
    peer.connect("m")
    peer.send_bytes(data)
    assert peer.conn.closed
    assert peer.recv()[-1] == Disconnect(code)
    assert b.statistics().internal_errors == 0


def _connect_bytes(version: int, flags: int, properties: bytes = b"\x00") -> bytes:
    body = b"\x00\x04MQTT" + bytes([version, flags]) + b"\x00\x3c"
    body += (properties if version == 5 else b"") + b"\x00\x01c"
    return bytes([0x10, len(body)]) + body


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (_connect_bytes(5, 0x03), ReasonCode.MALFORMED_PACKET),  # reserved flag set
        (_connect_bytes(5, 0x1A), ReasonCode.MALFORMED_PACKET),  # will QoS 3 without a will
        (_connect_bytes(5, 0x02, b"\x03\x21\x00\x00"), ReasonCode.PROTOCOL_ERROR),  # RM 0
    ],
)
def test_v5_connect_that_cannot_be_accepted_gets_connack_with_the_reason(
    data: bytes, code: int
) -> None:
    b = broker(max_packet_size=1024)
    peer = Peer(b, 5)
    for byte in range(len(data)):  # one byte at a time: the level is read across chunks
        peer.send_bytes(data[byte : byte + 1])
    assert peer.conn.closed
    assert peer.recv() == [ConnAck(False, code)]
    assert b.statistics().protocol_errors == 1


def test_v5_connect_too_large_gets_connack_packet_too_large() -> None:
    b = broker(max_packet_size=1024)
    peer = Peer(b, 5)
    peer.send_bytes(b"\x10\xff\xff\x7f\x00\x04MQTT\x05\x02")  # announces 2 MiB
    assert peer.conn.closed
    assert peer.recv() == [ConnAck(False, ReasonCode.PACKET_TOO_LARGE)]


def test_v311_connect_that_cannot_be_accepted_is_closed_silently() -> None:
    b = broker()
    peer = Peer(b, 4)
    peer.send_bytes(_connect_bytes(4, 0x03))
    assert peer.conn.closed
    assert peer.conn.data_to_send() == b""  # 3.1.1 has no return code for a malformed CONNECT


def test_a_client_that_does_not_read_stops_being_read() -> None:
    b = broker(max_output_bytes=100)
    peer = Peer(b, 4)
    peer.connect("flood")
    assert peer.conn.wants_data
    peer.send(*[PingReq()] * 60)  # 120 bytes of PINGRESP owed
    assert not peer.conn.wants_data
    assert peer.recv() == [PingResp()] * 60
    assert peer.conn.wants_data


def test_oversized_packet_is_refused_before_its_body() -> None:
    b = broker(max_packet_size=1000)
    peer = Peer(b, 5)
    assert peer.connect("big").properties.maximum_packet_size == 1000
    peer.send_bytes(b"\x30\xff\xff\x03")  # announces 65 KB
    assert peer.recv() == [Disconnect(ReasonCode.PACKET_TOO_LARGE)]


def test_first_packet_must_be_connect() -> None:
    b = broker()
    peer = Peer(b)
    peer.send(PingReq())
    assert peer.conn.closed
    assert peer.recv() == []


def test_unsupported_protocol_level_gets_connack_1() -> None:
    b = broker()
    peer = Peer(b)
    peer.send_bytes(b"\x10\x0c\x00\x04MQTT\x03\x02\x00\x3c\x00\x00")
    assert peer.conn.closed
    assert peer.conn.data_to_send() == b"\x20\x02\x00\x01"


@pytest.mark.parametrize("version", VERSIONS)
def test_packets_sent_with_connect_in_one_chunk_are_decoded_in_its_version(version: int) -> None:
    """A client need not wait for CONNACK: a SUBSCRIBE and a PUBLISH in the same bytes as an
    MQTT 5 CONNECT have MQTT 5 properties, which a 3.1.1 decoder would take as malformed."""
    b = broker()
    peer = Peer(b, version)
    protocol = ProtocolVersion(version)
    packets = (
        Connect("eager", protocol),
        Subscribe(1, (Subscription("eager/t", QoS.AT_LEAST_ONCE),)),
        Publish("eager/t", b"early", QoS.AT_LEAST_ONCE, packet_id=2),
    )
    peer.send(*packets)
    got = peer.recv()
    assert [type(p) for p in got] == [ConnAck, SubAck, PubAck, Publish]
    assert got[0].reason_code == 0  # type: ignore[union-attr]
    assert got[3].payload == b"early"  # type: ignore[union-attr]
    assert not peer.conn.closed


def test_second_connect_is_a_protocol_error() -> None:
    b = broker()
    peer = Peer(b, 5)
    peer.connect("twice")
    peer.send_bytes(b"\x10\x0d\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x00")
    assert peer.recv() == [Disconnect(ReasonCode.PROTOCOL_ERROR)]


def test_broker_close_all_sends_server_shutting_down() -> None:
    b = broker()
    v5 = Peer(b, 5)
    v5.connect("five")
    v4 = Peer(b)
    v4.connect("four")
    b.close_all(0.0)
    assert v5.recv() == [Disconnect(ReasonCode.SERVER_SHUTTING_DOWN)]
    assert v4.recv() == []
    assert v4.conn.closed
    assert v5.conn.closed


def test_pingreq_and_suback_on_unknown_pubrel() -> None:
    b = broker()
    peer = Peer(b, 5)
    peer.connect("p")
    peer.send(PingReq(), PubRel(77))
    assert peer.recv() == [PingResp(), PubComp(77, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND)]


def test_connack_and_suback_shapes() -> None:
    b = broker()
    peer = Peer(b)
    ack = peer.connect("shape")
    assert ack == ConnAck(False, 0)
    assert peer.subscribe("a", qos=2) == SubAck(1, (2,))


@pytest.mark.parametrize("version", VERSIONS)
def test_session_and_subscription_quotas_bound_what_a_client_can_make(version: int) -> None:
    b = broker(max_sessions=2, max_subscriptions=2)
    for name in ("one", "two"):
        peer = Peer(b, version)
        peer.connect(name, clean_start=False, properties=Properties(session_expiry_interval=60))
        peer.conn.connection_lost(0.0)
    third = Peer(b, version)
    code = {4: 3, 5: ReasonCode.QUOTA_EXCEEDED}[version]
    assert third.connect("three").reason_code == code
    back = Peer(b, version)  # an existing session is not a new one
    ack = back.connect("one", clean_start=False, properties=Properties(session_expiry_interval=60))
    assert ack.reason_code == 0
    refused = {4: 0x80, 5: ReasonCode.QUOTA_EXCEEDED}[version]
    assert back.subscribe("a", "b", "c", qos=1).reason_codes == (1, 1, refused)
    assert back.subscribe("a", qos=0, packet_id=2).reason_codes == (0,)  # a replacement
