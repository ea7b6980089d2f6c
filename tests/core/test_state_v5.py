"""ClientState: MQTT 5 negotiation, broker protocol errors, request validation, AUTH."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from sansio_broker import SansioBroker, make_client

from trio_mqtt._core._config import Authenticator
from trio_mqtt._core._errors import (
    ConnectionRefused,
    DisconnectedByBroker,
    InvalidTopicError,
    LocalProtocolError,
    MalformedPacketError,
    PacketTooLargeError,
    RemoteProtocolError,
)
from trio_mqtt._core._events import Incoming, PublishDone
from trio_mqtt._core._packets import (
    NO_PROPERTIES,
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    Properties,
    ProtocolVersion,
    PubAck,
    Publish,
    QoS,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
)
from trio_mqtt._core._state import ConnectionState


def connected_v5(connack: Properties = NO_PROPERTIES, **options: object) -> SansioBroker:
    broker = SansioBroker(make_client(protocol_version=5, **options))
    broker.connect(properties=connack)
    broker.events()
    return broker


# ---------------------------------------------------------------- CONNECT / CONNACK


def test_connect_advertises_our_limits() -> None:
    broker = SansioBroker(
        make_client(
            protocol_version=5,
            receive_maximum=20,
            max_incoming_packet_size=4096,
            topic_alias_maximum=8,
            connect_properties=Properties(session_expiry_interval=60),
        )
    )
    connect = broker.connect()
    assert connect.properties.receive_maximum == 20
    assert connect.properties.maximum_packet_size == 4096
    assert connect.properties.topic_alias_maximum == 8
    assert connect.properties.session_expiry_interval == 60
    assert broker.client.session_expiry_interval == 60
    broker.drop()
    broker.connect(properties=Properties(session_expiry_interval=30))
    assert broker.client.session_expiry_interval == 30


def test_connack_failure_raises_connection_refused() -> None:
    client = make_client(protocol_version=5)
    broker = SansioBroker(client)
    client.connect(0.0)
    broker.pump()
    with pytest.raises(ConnectionRefused) as info:
        broker.send(ConnAck(False, 0x86, Properties(reason_string="nope")))
    assert info.value.reason_code == 0x86
    assert info.value.reason_string == "nope"
    assert client.state is ConnectionState.DISCONNECTED
    assert any(isinstance(e, Incoming) for e in client.take_events())


def test_v311_connack_return_code_raises() -> None:
    client = make_client()
    broker = SansioBroker(client)
    client.connect(0.0)
    broker.pump()
    with pytest.raises(ConnectionRefused) as info:
        broker.send(ConnAck(False, 5))
    assert info.value.reason_code == 5


def test_assigned_client_identifier_is_adopted() -> None:
    broker = connected_v5(Properties(assigned_client_identifier="auto-1"), client_id="")
    assert broker.client.client_id == "auto-1"
    broker.drop()
    assert broker.connect(properties=Properties()).client_id == "auto-1"


def test_server_keep_alive_overrides_ours() -> None:
    broker = connected_v5(Properties(server_keep_alive=7), keep_alive=60)
    assert broker.client.next_deadline() == 7.0
    broker.drop()
    broker.connect(properties=Properties(server_keep_alive=0))
    assert broker.client.next_deadline() is None


def test_broker_receive_maximum_limits_the_window() -> None:
    broker = connected_v5(Properties(receive_maximum=2), inflight=10)
    client = broker.client
    assert client.window == 2
    for _ in range(3):
        client.publish("t", b"", QoS.AT_LEAST_ONCE, now=0.0)
    assert len(broker.pump()) == 2
    assert client.inflight_count == 2
    assert client.waiting_count == 1


def test_our_receive_maximum_is_enforced() -> None:
    broker = connected_v5(receive_maximum=2, manual_acks=True)
    broker.publish("a", qos=1)
    broker.publish("a", qos=2)
    with pytest.raises(RemoteProtocolError) as info:
        broker.publish("a", qos=1)
    assert info.value.reason_code == 0x93
    assert broker.pump() == [Disconnect(0x93)]


def test_publish_too_large_raises_before_taking_an_id_or_slot() -> None:
    broker = connected_v5(Properties(maximum_packet_size=100))
    client = broker.client
    with pytest.raises(PacketTooLargeError) as info:
        client.publish("t", b"x" * 200, QoS.AT_LEAST_ONCE, now=0.0)
    assert info.value.limit == 100
    assert client.inflight_count == 0
    assert client.held_packet_ids() == frozenset()
    assert broker.pump() == []
    client.publish("t", b"x" * 10, QoS.AT_LEAST_ONCE, now=0.0)
    (packet,) = broker.expect(Publish)
    assert isinstance(packet, Publish)
    assert packet.packet_id == 1


def test_too_large_incoming_packet_is_refused() -> None:
    from trio_mqtt._core._codec import encode

    broker = connected_v5(max_incoming_packet_size=64)
    data = encode(Publish("t", b"x" * 100), broker.version)
    with pytest.raises(MalformedPacketError) as info:
        broker.send_bytes(data)
    assert info.value.reason_code == 0x95
    assert broker.pump() == [Disconnect(0x95)]


def test_maximum_qos_and_retain_available_are_honoured_locally() -> None:
    broker = connected_v5(Properties(maximum_qos=1, retain_available=0))
    client = broker.client
    with pytest.raises(LocalProtocolError) as info:
        client.publish("t", b"", QoS.EXACTLY_ONCE, now=0.0)
    assert info.value.reason_code == 0x9B
    with pytest.raises(LocalProtocolError) as info:
        client.publish("t", b"", QoS.AT_MOST_ONCE, retain=True, now=0.0)
    assert info.value.reason_code == 0x9A
    assert broker.pump() == []
    assert client.held_packet_ids() == frozenset()


def test_waiting_publish_refused_by_limits_learned_later_completes_with_a_code() -> None:
    client = make_client(protocol_version=5)
    broker = SansioBroker(client)
    client.publish("t", b"", QoS.EXACTLY_ONCE, tag="q2", now=0.0)
    client.publish("t", b"ok", QoS.AT_LEAST_ONCE, tag="q1", now=0.0)
    broker.connect(properties=Properties(maximum_qos=1))
    (sent,) = broker.expect(Publish)
    assert sent.payload == b"ok"  # type: ignore[union-attr]
    assert PublishDone("q2", 0, 0x9B) in client.take_events()
    assert client.statistics.publishes_discarded == 1


# ---------------------------------------------------------------- topic aliases


def test_incoming_alias_above_maximum_is_0x94() -> None:
    broker = connected_v5(topic_alias_maximum=4)
    with pytest.raises(RemoteProtocolError) as info:
        broker.send(Publish("t", properties=Properties(topic_alias=5)))
    assert info.value.reason_code == 0x94
    assert broker.pump() == [Disconnect(0x94)]


def test_incoming_alias_zero_is_refused() -> None:
    broker = connected_v5(topic_alias_maximum=4)
    # PUBLISH "t", properties: Topic Alias (0x23) = 0, payload "x"
    with pytest.raises(RemoteProtocolError) as info:
        broker.send_bytes(bytes([0x30, 8, 0, 1, ord("t"), 3, 0x23, 0, 0, ord("x")]))
    (disconnect,) = broker.pump()
    assert disconnect == Disconnect(info.value.reason_code)


def test_incoming_alias_never_defined_is_0x82() -> None:
    broker = connected_v5(topic_alias_maximum=4)
    with pytest.raises(RemoteProtocolError) as info:
        broker.send(Publish("", properties=Properties(topic_alias=1)))
    assert info.value.reason_code == 0x82


def test_incoming_aliases_reset_on_new_connection() -> None:
    broker = connected_v5(topic_alias_maximum=4)
    broker.send(Publish("t", properties=Properties(topic_alias=1)))
    broker.drop()
    broker.connect()
    with pytest.raises(RemoteProtocolError):
        broker.send(Publish("", properties=Properties(topic_alias=1)))


def test_outgoing_aliases_lru_within_broker_maximum() -> None:
    broker = connected_v5(
        Properties(topic_alias_maximum=2), outgoing_topic_aliases=True, clean_start=False
    )
    client = broker.client
    for topic in ["a", "b", "a", "c", "a", "b"]:
        client.publish(topic, b"", QoS.AT_LEAST_ONCE, now=0.0)
    wire = [(p.topic, p.properties.topic_alias) for p in broker.pump()]  # type: ignore[union-attr]
    assert wire == [
        ("a", 1),
        ("b", 2),
        ("", 1),
        ("c", 2),  # "b" was least recently used: its alias is reassigned
        ("", 1),
        ("b", 2),  # "c" was the least recently used now
    ]
    # replays after a reconnect carry the full topic and no alias
    broker.drop()
    broker.connect(session_present=True, properties=Properties(topic_alias_maximum=2))
    replays = broker.pump()
    assert [(p.topic, p.properties.topic_alias) for p in replays] == [  # type: ignore[union-attr]
        ("a", None),
        ("b", None),
        ("a", None),
        ("c", None),
        ("a", None),
        ("b", None),
    ]
    client.publish("c", b"", QoS.AT_MOST_ONCE, now=0.0)
    (fresh,) = broker.pump()
    assert (fresh.topic, fresh.properties.topic_alias) == ("c", 1)  # type: ignore[union-attr]


def test_no_outgoing_aliases_without_broker_maximum() -> None:
    broker = connected_v5(outgoing_topic_aliases=True)
    broker.client.publish("a", b"", QoS.AT_MOST_ONCE, now=0.0)
    (packet,) = broker.pump()
    assert packet.properties.topic_alias is None  # type: ignore[union-attr]


def test_user_topic_alias_is_refused_while_the_session_assigns_them() -> None:
    broker = connected_v5(Properties(topic_alias_maximum=5), outgoing_topic_aliases=True)
    with pytest.raises(LocalProtocolError, match="outgoing_topic_aliases"):
        broker.client.publish("a", b"", 0, properties=Properties(topic_alias=1), now=0.0)


# ---------------------------------------------------------------- broker protocol errors


@pytest.mark.parametrize(
    "packet",
    [
        Connect("x", ProtocolVersion.V5),
        Subscribe(1, (Subscription("a"),)),
        Unsubscribe(1, ("a",)),
        PingReq(),
        ConnAck(),
    ],
    ids=["connect", "subscribe", "unsubscribe", "pingreq", "second-connack"],
)
def test_forbidden_packets_from_broker(packet: Packet) -> None:
    broker = connected_v5()
    with pytest.raises(RemoteProtocolError) as info:
        broker.send(packet)
    assert info.value.reason_code == 0x82
    assert broker.pump() == [Disconnect(0x82)]
    assert broker.client.state is ConnectionState.DISCONNECTED


@pytest.mark.parametrize(
    "packet",
    [PingResp(), Publish("t"), PubAck(1), SubAck(1, (0,))],
    ids=["pingresp", "publish", "puback", "suback"],
)
def test_packets_before_connack_are_protocol_errors(packet: Packet) -> None:
    client = make_client(protocol_version=5)
    broker = SansioBroker(client)
    client.connect(0.0)
    broker.pump()
    with pytest.raises(RemoteProtocolError):
        broker.send(packet)
    assert broker.pump() == [Disconnect(0x82)]


def test_suback_with_wrong_number_of_codes_or_unknown_id() -> None:
    broker = connected_v5()
    broker.client.subscribe([Subscription("a"), Subscription("b")], now=0.0)
    (sub,) = broker.pump()
    with pytest.raises(RemoteProtocolError):
        broker.send(SubAck(sub.packet_id, (0,)))  # type: ignore[union-attr]
    broker = connected_v5()
    with pytest.raises(RemoteProtocolError):
        broker.send(SubAck(9, (0,)))
    broker = connected_v5()
    broker.client.unsubscribe(["a", "b"], now=0.0)
    (unsub,) = broker.pump()
    with pytest.raises(RemoteProtocolError):
        broker.send(UnsubAck(unsub.packet_id, (0,)))  # type: ignore[union-attr]


def test_v311_disconnect_from_broker_is_a_protocol_error() -> None:
    broker = SansioBroker(make_client())
    broker.connect()
    from trio_mqtt._core._codec import encode

    with pytest.raises(RemoteProtocolError):
        broker.send_bytes(encode(Disconnect(), 4))  # type: ignore[arg-type]
    assert broker.pump() == []  # 3.1.1 has no DISCONNECT from the client with a reason


def test_v5_disconnect_from_broker() -> None:
    broker = connected_v5()
    with pytest.raises(DisconnectedByBroker) as info:
        broker.send(Disconnect(0x8B, Properties(reason_string="bye")))
    assert info.value.reason_code == 0x8B
    assert info.value.reason_string == "bye"
    assert Incoming(Disconnect(0x8B, Properties(reason_string="bye"))) in broker.events()
    assert broker.pump() == []


def test_malformed_bytes_queue_disconnect_0x81() -> None:
    broker = connected_v5()
    with pytest.raises(MalformedPacketError):
        broker.send_bytes(b"\x00\x00")  # packet type 0 is reserved
    assert broker.pump() == [Disconnect(0x81)]


def test_events_before_an_error_are_kept() -> None:
    broker = connected_v5()
    from trio_mqtt._core._codec import encode

    # a second CONNACK on one connection is a protocol error
    data = encode(Publish("ok", b"1"), 5) + encode(ConnAck(), 5)  # type: ignore[arg-type]
    with pytest.raises(RemoteProtocolError):
        broker.send_bytes(data)
    incoming = [e.packet for e in broker.events() if isinstance(e, Incoming)]
    assert incoming[0] == Publish("ok", b"1")


# ---------------------------------------------------------------- request validation


def test_invalid_requests_raise_and_leave_state_untouched() -> None:
    broker = connected_v5()
    client = broker.client
    with pytest.raises(InvalidTopicError):
        client.publish("a/+", b"", QoS.AT_MOST_ONCE, now=0.0)
    with pytest.raises(InvalidTopicError):
        client.publish("", b"", QoS.AT_MOST_ONCE, now=0.0)
    with pytest.raises(LocalProtocolError):
        client.publish("a", b"", 3, now=0.0)
    with pytest.raises(TypeError):
        client.publish("a", "text", 0, now=0.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        client.publish(b"a", b"", 0, now=0.0)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        client.subscribe([], now=0.0)
    with pytest.raises(InvalidTopicError):
        client.subscribe([Subscription("a/#/b")], now=0.0)
    with pytest.raises(LocalProtocolError):
        client.subscribe([Subscription("$share/g/a", no_local=True)], now=0.0)
    with pytest.raises(LocalProtocolError):
        client.unsubscribe([], now=0.0)
    with pytest.raises(LocalProtocolError):
        client.publish("a", b"", 0, properties=Properties(subscription_identifiers=(1,)), now=0.0)
    assert broker.pump() == []
    assert client.is_idle()
    assert client.held_packet_ids() == frozenset()


def test_disconnect_session_expiry_rules() -> None:
    broker = connected_v5()
    with pytest.raises(LocalProtocolError):
        broker.client.disconnect(0.0, properties=Properties(session_expiry_interval=10))
    broker.client.disconnect(0.0, 0x04)
    assert broker.pump() == [Disconnect(0x04)]
    assert broker.client.state is ConnectionState.CLOSED


# ---------------------------------------------------------------- AUTH


def scram(data: bytes) -> Properties:
    return Properties(authentication_method="SCRAM-TEST", authentication_data=data)


@dataclass
class ScriptedAuth:
    method: str = "SCRAM-TEST"
    challenges: list[bytes | None] = field(default_factory=list)
    completed: list[bytes | None] = field(default_factory=list)

    def initial_data(self) -> bytes | None:
        return b"client-first"

    def challenge(self, data: bytes | None) -> bytes | None:
        self.challenges.append(data)
        return b"answer:" + (data or b"")

    def complete(self, data: bytes | None) -> None:
        self.completed.append(data)


def test_enhanced_authentication_exchange_and_reauth() -> None:
    auth = ScriptedAuth()
    authenticator: Authenticator = auth  # the scripted class has the protocol's shape
    client = make_client(protocol_version=5, authenticator=authenticator)
    broker = SansioBroker(client)
    client.connect(0.0)
    (connect,) = broker.pump()
    assert connect.properties.authentication_method == "SCRAM-TEST"  # type: ignore[union-attr]
    assert connect.properties.authentication_data == b"client-first"  # type: ignore[union-attr]
    broker.send(Auth(0x18, scram(b"c1")))
    (reply,) = broker.pump()
    assert reply == Auth(0x18, scram(b"answer:c1"))
    broker.send(ConnAck(properties=scram(b"ok")))
    assert auth.completed == [b"ok"]
    assert client.state is ConnectionState.CONNECTED
    client.reauthenticate(1.0)
    (reauth,) = broker.pump()
    assert reauth == Auth(0x19, scram(b"client-first"))
    broker.send(Auth(0x18, scram(b"c2")))
    broker.send(Auth(0x00, scram(b"f")))
    assert auth.challenges == [b"c1", b"c2"]
    assert auth.completed == [b"ok", b"f"]


def test_auth_without_authenticator_is_a_protocol_error() -> None:
    broker = connected_v5()
    with pytest.raises(RemoteProtocolError):
        broker.send(Auth(0x18, Properties(authentication_method="X")))
    with pytest.raises(LocalProtocolError):
        connected_v5().client.reauthenticate(0.0)


def test_invalid_publish_properties_raise_at_admission_and_change_nothing() -> None:
    bad = Properties(message_expiry_interval=-1)
    broker = connected_v5(
        Properties(topic_alias_maximum=2), inflight=1, outgoing_topic_aliases=True
    )
    client = broker.client
    with pytest.raises(LocalProtocolError):
        client.publish("a", b"", QoS.AT_LEAST_ONCE, properties=bad, now=0.0)  # would go now
    client.publish("b", b"", QoS.AT_LEAST_ONCE, now=0.0)
    with pytest.raises(LocalProtocolError):
        client.publish("a", b"", QoS.AT_LEAST_ONCE, properties=bad, now=0.0)  # would wait
    assert (client.inflight_count, client.waiting_count) == (1, 0)
    (sent,) = broker.pump()
    assert sent.properties.topic_alias == 1  # type: ignore[union-attr]  # "a" took no alias


def test_alias_skipped_when_it_would_not_fit_the_size_limit() -> None:
    broker = connected_v5(
        Properties(topic_alias_maximum=1, maximum_packet_size=100), outgoing_topic_aliases=True
    )
    client = broker.client
    client.publish("abc", b"x" * 92, QoS.AT_MOST_ONCE, now=0.0)  # exactly 100 bytes unaliased
    client.publish("abc", b"y", QoS.AT_MOST_ONCE, now=0.0)
    client.publish("abc", b"z", QoS.AT_MOST_ONCE, now=0.0)
    wire = [(p.topic, p.properties.topic_alias) for p in broker.pump()]  # type: ignore[union-attr]
    assert wire == [("abc", None), ("abc", 1), ("", 1)]


def test_replay_respects_a_receive_maximum_that_shrank() -> None:
    broker = connected_v5(Properties(receive_maximum=4), clean_start=False, inflight=10)
    client = broker.client
    for i in range(5):
        client.publish("t", bytes([i]), QoS.AT_LEAST_ONCE, now=0.0)
    assert len(broker.pump()) == 4  # the fifth waits for the window
    broker.drop()
    broker.connect(session_present=True, properties=Properties(receive_maximum=2))
    replayed = broker.pump()
    assert [(p.packet_id, p.dup) for p in replayed] == [(1, True), (2, True)]  # type: ignore[union-attr]
    assert client.inflight_count == 4
    broker.send(PubAck(2))
    (third,) = broker.pump()
    assert (third.packet_id, third.dup) == (3, True)  # type: ignore[union-attr]
    broker.send(PubAck(1), PubAck(3))
    assert [(p.packet_id, p.dup) for p in broker.pump()] == [(4, True), (5, False)]  # type: ignore[union-attr]


def test_held_back_replays_belong_to_their_own_session() -> None:
    # sessions share one empty stand-in until a replay holds flows back: the first session's
    # held-back flows must never show up in another session
    bystander = connected_v5(Properties(receive_maximum=4), clean_start=False, inflight=10)
    broker = connected_v5(Properties(receive_maximum=4), clean_start=False, inflight=10)
    for i in range(4):
        broker.client.publish("t", bytes([i]), QoS.AT_LEAST_ONCE, now=0.0)
    broker.pump()
    broker.drop()
    broker.connect(session_present=True, properties=Properties(receive_maximum=1))
    assert len(broker.pump()) == 1  # three flows held back
    bystander.drop()
    bystander.connect(session_present=True, properties=Properties(receive_maximum=4))
    assert bystander.pump() == []  # nothing of the other session is replayed here
    broker.send(PubAck(1))
    assert [p.packet_id for p in broker.pump()] == [2]  # type: ignore[union-attr]
