"""ClientState basics, ported from the behaviours rumqttc's state.rs tests check.

Packet id allocation and wraparound, the QoS queues, incoming and outgoing acks, manual acks,
ping handling and replay order after a reconnect.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings, strategies as st
from sansio_broker import SansioBroker, make_client

from trio_mqtt._core._errors import (
    KeepAliveTimeout,
    LocalProtocolError,
    RemoteProtocolError,
    UnknownPacketIdError,
)
from trio_mqtt._core._events import Incoming, Outgoing, PublishDone, StrayAck
from trio_mqtt._core._packets import (
    ConnAck,
    Connect,
    PingReq,
    PingResp,
    ProtocolVersion,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    QoS,
)
from trio_mqtt._core._state import ConnectionState


def connected(**options: object) -> SansioBroker:
    broker = SansioBroker(make_client(**options))
    broker.connect()
    broker.events()
    return broker


# ---------------------------------------------------------------- connect


def test_connect_queues_connect_and_connack_connects() -> None:
    client = make_client(keep_alive=30)
    broker = SansioBroker(client)
    assert client.state is ConnectionState.DISCONNECTED
    client.connect(0.0)
    assert client.state is ConnectionState.CONNECTING
    (connect,) = broker.expect(Connect)
    assert isinstance(connect, Connect)
    assert connect.client_id == "c"
    assert connect.keep_alive == 30
    broker.send(ConnAck())
    assert client.state is ConnectionState.CONNECTED
    assert client.connack == ConnAck()
    events = client.take_events()
    assert [type(e) for e in events] == [Outgoing, Incoming]
    assert client.take_events() == []
    assert client.data_to_send() == b""


def test_publish_before_connack_waits() -> None:
    client = make_client()
    broker = SansioBroker(client)
    client.connect(0.0)
    broker.expect(Connect)
    client.publish("t", b"a", QoS.AT_LEAST_ONCE, now=0.0)
    client.publish("t", b"b", QoS.AT_MOST_ONCE, now=0.0)
    assert broker.pump() == []
    assert client.waiting_count == 2
    broker.send(ConnAck())
    first, second = broker.expect(Publish, Publish)
    assert isinstance(first, Publish)
    assert isinstance(second, Publish)
    assert (first.payload, first.packet_id) == (b"a", 1)
    assert (second.payload, second.packet_id) == (b"b", 0)


# ---------------------------------------------------------------- packet ids


def test_packet_ids_increment_and_wrap_around() -> None:
    broker = connected(inflight=10)
    client = broker.client
    client._last_id = 65533
    for _ in range(4):
        client.publish("t", b"", QoS.AT_LEAST_ONCE, now=0.0)
    ids = [p.packet_id for p in broker.pump() if isinstance(p, Publish)]
    assert ids == [65534, 65535, 1, 2]


def test_packet_id_allocation_skips_held_ids() -> None:
    broker = connected(inflight=10)
    client = broker.client
    for _ in range(3):
        client.publish("t", b"", QoS.AT_LEAST_ONCE, now=0.0)
    broker.pump()
    broker.send(PubAck(2))
    client._last_id = 65535  # next candidates: 1 (held), 2 (free again), 3 (held)
    client.publish("t", b"", QoS.AT_LEAST_ONCE, now=0.0)
    client.publish("t", b"", QoS.AT_LEAST_ONCE, now=0.0)
    ids = [p.packet_id for p in broker.pump() if isinstance(p, Publish)]
    assert ids == [2, 4]
    assert client.held_packet_ids() == {1, 2, 3, 4}


def test_qos0_publish_takes_no_id_and_no_slot() -> None:
    broker = connected()
    client = broker.client
    client.publish("t", b"", QoS.AT_MOST_ONCE, tag="q0", now=0.0)
    (packet,) = broker.expect(Publish)
    assert isinstance(packet, Publish)
    assert packet.packet_id == 0
    assert client.inflight_count == 0
    assert PublishDone("q0", 0) in client.take_events()


# ---------------------------------------------------------------- QoS queues / outgoing acks


def test_qos1_and_qos2_publishes_hold_slots_until_acked() -> None:
    broker = connected()
    client = broker.client
    client.publish("t", b"", QoS.AT_LEAST_ONCE, tag=1, now=0.0)
    client.publish("t", b"", QoS.EXACTLY_ONCE, tag=2, now=0.0)
    broker.expect(Publish, Publish)
    assert client.inflight_count == 2
    broker.send(PubAck(1))
    assert client.inflight_count == 1
    broker.send(PubRec(2))
    (pubrel,) = broker.expect(PubRel)
    assert pubrel == PubRel(2)
    assert client.inflight_count == 1  # QoS 2 holds its slot until PUBCOMP
    broker.send(PubComp(2))
    assert client.inflight_count == 0
    assert client.is_idle()
    done = [e for e in client.take_events() if isinstance(e, PublishDone)]
    assert done == [PublishDone(1, 1), PublishDone(2, 2)]


def test_failing_pubrec_ends_qos2_flow_without_pubrel() -> None:
    broker = connected(protocol_version=5)
    client = broker.client
    client.publish("t", b"", QoS.EXACTLY_ONCE, tag="x", now=0.0)
    broker.pump()
    broker.send(PubRec(1, 0x87))
    assert broker.pump() == []
    assert client.inflight_count == 0
    assert PublishDone("x", 1, 0x87) in client.take_events()


@pytest.mark.parametrize(
    "packet",
    [PubAck(7), PubRec(7), PubComp(7)],
    ids=["puback", "pubrec", "pubcomp"],
)
@pytest.mark.parametrize("version", [ProtocolVersion.V311, ProtocolVersion.V5])
def test_ack_for_unknown_packet_id_is_ignored_and_counted(
    packet: PubAck | PubRec | PubComp, version: ProtocolVersion
) -> None:
    # mosquitto's client tests (03-publish-b2c-qos1-unexpected-puback, -qos2-unexpected-pubcomp)
    # and paho-mqtt carry on after such an ack; a PUBREC is answered so the broker can finish.
    broker = connected(protocol_version=version)
    broker.client.publish("t", b"x", QoS.AT_LEAST_ONCE, tag="kept", now=0.0)
    broker.pump()
    broker.send(packet)
    assert broker.client.state is ConnectionState.CONNECTED
    assert broker.client.statistics.stray_acks == 1
    assert StrayAck(packet) in broker.client.take_events()
    answer = broker.pump()
    if isinstance(packet, PubRec):
        code = 0x92 if version == ProtocolVersion.V5 else 0
        assert answer == [PubRel(7, code)]
    else:
        assert answer == []
    # the real flow is untouched and still completes
    broker.send(PubAck(1))
    assert PublishDone("kept", 1) in broker.client.take_events()


def test_puback_for_qos2_flow_is_a_protocol_error() -> None:
    broker = connected()
    broker.client.publish("t", b"", QoS.EXACTLY_ONCE, now=0.0)
    broker.pump()
    with pytest.raises(RemoteProtocolError):
        broker.send(PubAck(1))


def test_pubcomp_before_pubrec_is_a_protocol_error() -> None:
    broker = connected()
    broker.client.publish("t", b"", QoS.EXACTLY_ONCE, now=0.0)
    broker.pump()
    with pytest.raises(RemoteProtocolError):
        broker.send(PubComp(1))


def test_full_window_queues_publishes_in_order() -> None:
    broker = connected(inflight=2)
    client = broker.client
    for i in range(4):
        client.publish("t", bytes([i]), QoS.AT_LEAST_ONCE, now=0.0)
    client.publish("t", b"q0", QoS.AT_MOST_ONCE, now=0.0)
    sent = broker.expect(Publish, Publish)
    assert [p.payload for p in sent] == [b"\x00", b"\x01"]  # type: ignore[union-attr]
    assert client.waiting_count == 3
    assert not client.can_publish()
    broker.send(PubAck(2))
    (third,) = broker.expect(Publish)
    assert third.payload == b"\x02"  # type: ignore[union-attr]
    broker.send(PubAck(1))
    # the QoS 0 publish queued behind a QoS 1 one waits for it, then follows it at once
    fourth, q0 = broker.expect(Publish, Publish)
    assert fourth.payload == b"\x03"  # type: ignore[union-attr]
    assert q0.payload == b"q0"  # type: ignore[union-attr]
    assert client.waiting_count == 0


# ---------------------------------------------------------------- incoming publishes


def test_incoming_publishes_are_delivered_and_acked() -> None:
    broker = connected()
    p0 = broker.publish("a", qos=0)
    p1 = broker.publish("a", qos=1, packet_id=2)
    p2 = broker.publish("a", qos=2, packet_id=3)
    events = broker.events()
    assert events == [
        Incoming(p0),
        Incoming(p1),
        Outgoing(PubAck(2)),
        Incoming(p2),
        Outgoing(PubRec(3)),
    ]
    assert broker.pump() == [PubAck(2), PubRec(3)]
    broker.send(PubRel(3))
    assert broker.pump() == [PubComp(3)]
    assert broker.client.is_idle()


def test_incoming_qos2_duplicate_is_answered_not_delivered_again() -> None:
    broker = connected()
    first = broker.publish("a", b"once", qos=2, packet_id=9)
    broker.publish("a", b"once", qos=2, packet_id=9, dup=True)
    delivered = [e for e in broker.events() if isinstance(e, Incoming)]
    assert delivered == [Incoming(first)]
    assert broker.pump() == [PubRec(9), PubRec(9)]
    assert broker.client.statistics.duplicates_suppressed == 1
    broker.send(PubRel(9))
    assert broker.pump() == [PubComp(9)]
    # after PUBCOMP the id is free: a new message with id 9 is delivered
    again = broker.publish("a", b"new", qos=2, packet_id=9)
    assert Incoming(again) in broker.events()


def test_pubrel_for_unknown_id_gets_pubcomp() -> None:
    broker = connected()
    broker.send(PubRel(4))
    assert broker.pump() == [PubComp(4)]


def test_pubrel_for_unknown_id_gets_pubcomp_0x92_in_v5() -> None:
    broker = connected(protocol_version=5)
    broker.send(PubRel(4))
    assert broker.pump() == [PubComp(4, 0x92)]


# ---------------------------------------------------------------- manual acks


def test_manual_acks_hold_acks_until_ack() -> None:
    broker = connected(manual_acks=True)
    client = broker.client
    broker.publish("a", qos=0)
    broker.publish("a", qos=1, packet_id=2)
    broker.publish("a", qos=2, packet_id=3)
    assert broker.pump() == []
    assert not client.is_idle()
    client.ack(3, now=0.0)  # held: id 2 arrived first (MQTT-4.6.0-2)
    assert broker.pump() == []
    client.ack(2, now=0.0)
    assert broker.pump() == [PubAck(2), PubRec(3)]
    with pytest.raises(UnknownPacketIdError):
        client.ack(2, now=0.0)
    with pytest.raises(UnknownPacketIdError):
        client.ack(3, now=0.0)  # PUBREC already sent
    with pytest.raises(UnknownPacketIdError):
        client.ack(99, now=0.0)
    assert broker.pump() == []
    broker.send(PubRel(3))
    assert broker.pump() == [PubComp(3)]
    assert client.is_idle()


def test_manual_ack_qos2_duplicate_before_ack_is_silent() -> None:
    broker = connected(manual_acks=True)
    broker.publish("a", qos=2, packet_id=3)
    broker.publish("a", qos=2, packet_id=3, dup=True)
    assert sum(isinstance(e, Incoming) for e in broker.events()) == 1
    assert broker.pump() == []
    broker.client.ack(3, now=0.0)
    broker.publish("a", qos=2, packet_id=3, dup=True)
    assert broker.pump() == [PubRec(3), PubRec(3)]


def test_manual_ack_rejects_reason_code_in_v311() -> None:
    broker = connected(manual_acks=True)
    broker.publish("a", qos=1, packet_id=2)
    with pytest.raises(LocalProtocolError):
        broker.client.ack(2, 0x80, now=0.0)
    broker.client.ack(2, now=0.0)
    assert broker.pump() == [PubAck(2)]


# ---------------------------------------------------------------- pings


def test_ping_after_keep_alive_of_outbound_silence() -> None:
    broker = connected(keep_alive=10, ping_timeout=3)
    client = broker.client
    assert client.next_deadline() == 10.0
    client.handle_timeout(9.9)
    assert broker.pump() == []
    client.handle_timeout(10.0)
    assert broker.pump() == [PingReq()]
    assert client.next_deadline() == 13.0
    broker.now = 11.0
    broker.send(PingResp())
    assert client.next_deadline() == 20.0


def test_no_ping_while_traffic_flows_both_ways() -> None:
    broker = connected(keep_alive=10)
    client = broker.client
    for t in range(5, 100, 5):
        client.publish("t", b"", QoS.AT_LEAST_ONCE, now=float(t))
        (publish,) = broker.pump()
        assert isinstance(publish, Publish)
        broker.now = float(t)
        broker.send(PubAck(publish.packet_id))
        client.handle_timeout(float(t))
        assert client.next_deadline() == t + 10.0
    assert broker.pump() == []
    assert client.statistics.pings_sent == 0


def test_outbound_only_traffic_is_probed_with_pings() -> None:
    # QoS 0 publishes get no answer: inbound silence alone makes a PINGREQ due, so that a
    # half-open link is noticed although the client keeps sending
    broker = connected(keep_alive=10)
    client = broker.client
    pings = []
    for t in range(1, 40):
        client.publish("t", b"", QoS.AT_MOST_ONCE, now=float(t))
        client.handle_timeout(float(t))
        for packet in broker.pump():
            if isinstance(packet, PingReq):
                pings.append(t)
                broker.now = float(t)
                broker.send(PingResp())
    assert pings == [10, 20, 30]


def test_missing_pingresp_raises_keepalive_timeout() -> None:
    broker = connected(keep_alive=10, ping_timeout=3)
    client = broker.client
    client.handle_timeout(10.0)
    assert broker.pump() == [PingReq()]
    # other traffic does not count as an answer, and no second PINGREQ is sent
    client.publish("t", b"", QoS.AT_LEAST_ONCE, now=11.0)
    broker.now = 12.0
    broker.send(PubAck(1))
    client.handle_timeout(12.9)
    assert broker.pump() == [Publish("t", b"", QoS.AT_LEAST_ONCE, packet_id=1)]
    with pytest.raises(KeepAliveTimeout):
        client.handle_timeout(13.0)


def test_ping_succeeds_again_after_pingresp() -> None:
    broker = connected(keep_alive=5)
    client = broker.client
    client.handle_timeout(5.0)
    broker.send(PingResp())
    client.handle_timeout(10.0)
    assert broker.pump() == [PingReq(), PingReq()]


def test_paused_reader_suspends_pingresp_timeout() -> None:
    broker = connected(keep_alive=10, ping_timeout=3)
    client = broker.client
    client.handle_timeout(10.0)
    client.set_reader_paused(True, 11.0)
    # no PINGRESP timeout while paused, but a PINGREQ each keep alive of outbound silence
    # (MQTT-3.1.2-23: a broker enforcing 1.5 times the keep alive must not drop a slow reader)
    assert client.next_deadline() == 20.0
    broker.pump()
    client.handle_timeout(20.0)
    assert [type(p) for p in broker.pump()] == [PingReq]
    assert client.next_deadline() == 30.0
    client.handle_timeout(100.0)  # no timeout while paused
    client.set_reader_paused(False, 100.0)
    assert client.next_deadline() == 103.0
    with pytest.raises(KeepAliveTimeout):
        client.handle_timeout(103.0)


def test_keep_alive_zero_disables_pings() -> None:
    broker = connected(keep_alive=0)
    assert broker.client.next_deadline() is None
    broker.client.handle_timeout(1e9)
    assert broker.pump() == []


# ---------------------------------------------------------------- replay order


def test_replay_after_reconnect_keeps_order_ids_and_sets_dup() -> None:
    broker = connected(clean_start=False, inflight=10)
    client = broker.client
    for i in range(1, 7):
        client.publish("t", bytes([i]), QoS.AT_LEAST_ONCE if i % 2 else QoS.EXACTLY_ONCE, now=0.0)
    broker.pump()
    broker.send(PubAck(1), PubRec(2), PubAck(3), PubRec(4))
    broker.pump()
    broker.drop()
    assert client.state is ConnectionState.DISCONNECTED
    client.publish("t", b"later", QoS.AT_LEAST_ONCE, now=0.0)
    broker.client.connect(0.0)
    broker.expect(Connect)
    broker.send(ConnAck(session_present=True))
    replay = broker.pump()
    assert replay == [
        PubRel(2),
        PubRel(4),
        Publish("t", b"\x05", QoS.AT_LEAST_ONCE, dup=True, packet_id=5),
        Publish("t", b"\x06", QoS.EXACTLY_ONCE, dup=True, packet_id=6),
        Publish("t", b"later", QoS.AT_LEAST_ONCE, packet_id=7),
    ]
    assert client.statistics.retransmissions == 4


def test_half_open_noticed_within_keep_alive_plus_ping_timeout_of_quiet_link() -> None:
    broker = connected(keep_alive=10, ping_timeout=4)
    client = broker.client
    client.publish("t", b"", QoS.AT_MOST_ONCE, now=3.0)  # the last packet we send
    broker.pump()
    # the link went quiet inbound at 0 (CONNACK): PINGREQ at 10, dead at 14
    deadline = client.next_deadline()
    assert deadline == 10.0
    client.handle_timeout(deadline)
    assert broker.pump() == [PingReq()]
    deadline = client.next_deadline()
    assert deadline == 14.0  # = 0 + keep_alive + ping_timeout
    with pytest.raises(KeepAliveTimeout):
        client.handle_timeout(deadline)
    assert client.state is ConnectionState.DISCONNECTED


# ---------------------------------------------------------------- introspection


def test_can_publish_and_counts_follow_the_window() -> None:
    client = make_client(inflight=1)
    broker = SansioBroker(client)
    assert not client.can_publish()  # not connected
    broker.connect()
    assert client.can_publish()
    client.publish("t", b"", QoS.AT_LEAST_ONCE, now=0.0)
    assert not client.can_publish()
    assert (client.inflight_count, client.waiting_count, client.window) == (1, 0, 1)
    client.publish("t", b"", QoS.AT_LEAST_ONCE, now=0.0)
    assert (client.inflight_count, client.waiting_count) == (1, 1)
    broker.pump()
    broker.send(PubAck(1))
    assert (client.inflight_count, client.waiting_count) == (1, 0)
    broker.pump()
    broker.send(PubAck(2))
    assert client.can_publish()
    assert client.is_idle()


def test_is_idle_counts_unacked_incoming_publishes() -> None:
    broker = connected(manual_acks=True)
    client = broker.client
    broker.publish("a", qos=1, packet_id=4)
    assert not client.is_idle()
    client.ack(4, now=0.0)
    assert client.is_idle()


def test_statistics_count_packets_and_bytes() -> None:
    broker = connected()
    client = broker.client
    client.publish("t", b"12345", QoS.AT_LEAST_ONCE, now=0.0)
    sent = broker.client.statistics.bytes_sent
    broker.pump()
    broker.send(PubAck(1))
    broker.publish("in", qos=0)
    stats = client.statistics
    assert stats.packets_sent == 2  # CONNECT, PUBLISH
    assert stats.publishes_sent == 1
    assert stats.packets_received == 3  # CONNACK, PUBACK, PUBLISH
    assert stats.publishes_received == 1
    # CONNECT: 2 fixed + 10 variable header + 3 client id; PUBLISH: 2 + 3 topic + 2 id + 5 payload
    assert sent == 15 + 12
    assert stats.bytes_received == 4 + 4 + 7  # CONNACK, PUBACK, PUBLISH "in" b"x"


def test_connection_lost_discards_unsent_bytes() -> None:
    broker = connected()
    client = broker.client
    client.publish("t", b"", QoS.AT_LEAST_ONCE, now=0.0)
    client.connection_lost(1.0)
    assert client.data_to_send() == b""
    assert client.state is ConnectionState.DISCONNECTED
    assert client.inflight_count == 1  # the session keeps it for the replay
    assert client.next_deadline() is None


def test_failing_puback_completes_with_its_reason_code() -> None:
    broker = connected(protocol_version=5)
    broker.client.publish("t", b"", QoS.AT_LEAST_ONCE, tag="t", now=0.0)
    broker.pump()
    broker.send(PubAck(1, 0x87))
    assert PublishDone("t", 1, 0x87) in broker.client.take_events()
    assert broker.client.is_idle()


def test_payload_buffers_are_accepted_as_bytes() -> None:
    broker = connected()
    broker.client.publish("t", bytearray(b"ab"), QoS.AT_MOST_ONCE, now=0.0)
    broker.client.publish("t", memoryview(b"cd"), QoS.AT_MOST_ONCE, now=0.0)
    assert [p.payload for p in broker.pump()] == [b"ab", b"cd"]  # type: ignore[union-attr]


def test_manual_ack_qos1_duplicate_is_delivered_again_but_acked_once() -> None:
    broker = connected(manual_acks=True)
    first = broker.publish("a", b"m", qos=1, packet_id=8)
    second = broker.publish("a", b"m", qos=1, packet_id=8, dup=True)
    delivered = [e for e in broker.events() if isinstance(e, Incoming)]
    assert delivered == [Incoming(first), Incoming(second)]
    broker.client.ack(8, now=0.0)
    assert broker.pump() == [PubAck(8)]
    with pytest.raises(UnknownPacketIdError):
        broker.client.ack(8, now=0.0)


def test_receive_data_before_connect_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        make_client().receive_data(b"\x20\x02\x00\x00", 0.0)


@pytest.mark.parametrize("version", [4, 5])
def test_waiting_publishes_go_out_byte_exact(version: int) -> None:
    from trio_mqtt._core._codec import encode

    broker = connected(protocol_version=version, inflight=1)
    client = broker.client
    client._last_id = 300
    for payload in (b"first", b"", "x\u00e9\U0001f600".encode()):
        client.publish("t/\u00e9", payload, QoS.EXACTLY_ONCE, now=0.0)
    client.data_to_send()
    for pid in (301, 302):
        broker.send(PubRec(pid), PubComp(pid))
        data = client.data_to_send()
        expected = encode(PubRel(pid), broker.version) + encode(
            Publish(
                "t/\u00e9",
                b"" if pid == 301 else "x\u00e9\U0001f600".encode(),
                QoS.EXACTLY_ONCE,
                packet_id=pid + 1,
            ),
            broker.version,
        )
        assert data == expected


@settings(max_examples=50, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=30))
def test_any_chunking_of_received_bytes_gives_the_same_events(cuts: list[int]) -> None:
    from trio_mqtt._core._codec import encode

    stream = b"".join(
        encode(p, 4)  # type: ignore[arg-type]
        for p in [
            ConnAck(),
            Publish("a/b", b"zero"),
            Publish("a/c", b"one" * 20, QoS.AT_LEAST_ONCE, packet_id=7),
            Publish("a/d", b"two", QoS.EXACTLY_ONCE, packet_id=8),
            PubRel(8),
            PingResp(),
        ]
    )

    def run(chunks: list[bytes]) -> tuple[list[object], bytes]:
        client = make_client()
        client.connect(0.0)
        client.data_to_send()
        client.take_events()
        for chunk in chunks:
            client.receive_data(chunk, 0.0)
        return list(client.take_events()), client.data_to_send()

    bounds = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    chunks = [stream[a:b] for a, b in itertools.pairwise(bounds)]
    assert run(chunks) == run([stream])
