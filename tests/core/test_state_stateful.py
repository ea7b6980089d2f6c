"""Hypothesis stateful test: ClientState against a modelled broker, with faults.

The machine interleaves publishes at every QoS, broker acks in any order (and acks lost along
with the connection), lost connections, reconnects with and without session present, and
incoming QoS 1/2 publishes with duplicates. After every step it checks that no packet id is
used twice, that the window is respected, that no publish completes twice and that incoming
QoS 2 messages reach the application at most once; at teardown it settles the session and
checks that every admitted publish completed (or was reported dropped) exactly once and that
the broker got every QoS 1/2 message.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from trio_mqtt._core._codec import PacketDecoder, encode
from trio_mqtt._core._config import SessionConfig
from trio_mqtt._core._events import Incoming, PublishDone, PublishDropped, SubscribeDone
from trio_mqtt._core._packets import (
    NO_PROPERTIES,
    ConnAck,
    Connect,
    Packet,
    PingReq,
    Properties,
    ProtocolVersion,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    QoS,
    SubAck,
    Subscribe,
    Subscription,
)
from trio_mqtt._core._state import ClientState, ConnectionState

# Broker-side states of the client's publishes (keyed by the client's packet ids).
OWE_PUBACK = "owe-puback"  # QoS 1 received, PUBACK not yet sent
OWE_PUBREC = "owe-pubrec"  # QoS 2 received, PUBREC not yet sent
AWAIT_PUBREL = "await-pubrel"  # PUBREC sent
OWE_PUBCOMP = "owe-pubcomp"  # PUBREL received, PUBCOMP not yet sent
# Broker-side states of its own publishes to the client (keyed by the broker's ids).
AWAIT_ACK = "await-ack"  # PUBLISH sent, PUBACK / PUBREC expected
OWE_PUBREL = "owe-pubrel"  # PUBREC received, PUBREL not yet sent
AWAIT_PUBCOMP = "await-pubcomp"  # PUBREL sent


class SessionMachine(RuleBasedStateMachine):
    version = ProtocolVersion.V311
    manual_acks = False
    resend_on_session_loss = True
    connack_properties = NO_PROPERTIES

    def __init__(self) -> None:
        super().__init__()
        config = SessionConfig(
            "m",
            protocol_version=self.version,
            clean_start=False,
            inflight=3,
            manual_acks=self.manual_acks,
            resend_on_session_loss=self.resend_on_session_loss,
            outgoing_topic_aliases=self.version == ProtocolVersion.V5,
        )
        self.client = ClientState(config)
        self.decoder = PacketDecoder(self.version)
        self.now = 0.0
        self.counter = 0
        self.admitted: dict[int, int] = {}  # tag -> qos
        self.finished: dict[int, str] = {}  # tag -> "done" / "dropped"
        self.broker_got: set[bytes] = set()
        self.srv_in: dict[int, tuple[str, bytes]] = {}
        self.srv_out: dict[int, tuple[str, Publish]] = {}
        self.srv_next_id = 0
        self.delivered_qos2: dict[bytes, int] = {}
        self.srv_subs: dict[int, Subscribe] = {}
        self.subscribe_tags: set[int] = set()
        self.subscribe_done: set[int] = set()
        self.client.connect(self.now)
        self._connack(session_present=False)

    # ------------------------------------------------------------ plumbing

    def _connack(self, *, session_present: bool, receive_maximum: int = 2) -> None:
        packets = self.decoder.decode(self.client.data_to_send())
        assert [type(p) for p in packets] == [Connect]
        if not session_present:
            self.srv_in.clear()
            self.srv_out.clear()
            self.srv_subs.clear()
        props = self.connack_properties
        if props.receive_maximum is not None:
            props = Properties(receive_maximum=receive_maximum, topic_alias_maximum=2)
        self.limit = props.receive_maximum or 3
        # ids of QoS 1/2 PUBLISH packets received on this connection and not yet answered
        # with PUBACK / PUBCOMP: the client's send quota in use (MQTT-3.3.4-7)
        self.quota_used: set[int] = set()
        self._send(ConnAck(session_present, 0, props))
        if session_present:
            # MQTT-4.4.0-1 applies to the broker too: resend its unacknowledged flows.
            for pid, (state, publish) in list(self.srv_out.items()):
                if state == AWAIT_ACK:
                    self._send(Publish(**{**_fields(publish), "dup": True}))
                elif state in (OWE_PUBREL, AWAIT_PUBCOMP):
                    self.srv_out[pid] = (AWAIT_PUBCOMP, publish)
                    self._send(PubRel(pid))

    def _send(self, packet: Packet, *, deliver_answer: bool = True) -> None:
        self.client.receive_data(encode(packet, self.version), self.now)
        if not deliver_answer:
            # The connection dies before the client's answer leaves: the answer is lost.
            self.client.connection_lost(self.now)
        self._pump()

    def _pump(self) -> None:
        for event in self.client.take_events():
            if isinstance(event, SubscribeDone):
                assert event.tag not in self.subscribe_done, "subscribe finished twice"
                self.subscribe_done.add(event.tag)  # type: ignore[arg-type]
            if isinstance(event, (PublishDone, PublishDropped)) and event.tag is not None:
                assert event.tag not in self.finished, f"publish {event.tag} finished twice"
                self.finished[event.tag] = "done" if isinstance(event, PublishDone) else "dropped"
            elif (
                isinstance(event, Incoming)
                and isinstance(event.packet, Publish)
                and event.packet.qos == 2
            ):
                payload = event.packet.payload
                self.delivered_qos2[payload] = self.delivered_qos2.get(payload, 0) + 1
        data = self.client.data_to_send()
        for packet in self.decoder.decode(data):
            self._absorb(packet)

    def _absorb(self, packet: Packet) -> None:
        if isinstance(packet, Publish):
            if packet.qos:
                held = self.srv_in.get(packet.packet_id)
                if not packet.dup:
                    # MQTT-2.2.1-3: a new message never reuses an id still in use.
                    assert held is None, f"packet id {packet.packet_id} reused while held"
                    assert packet.packet_id not in self.srv_subs
                self.quota_used.add(packet.packet_id)
                assert len(self.quota_used) <= self.limit, "Receive Maximum exceeded"
                if packet.qos == 1:
                    self.srv_in[packet.packet_id] = (OWE_PUBACK, packet.payload)
                elif held is None or held[0] != OWE_PUBCOMP:
                    self.srv_in[packet.packet_id] = (OWE_PUBREC, packet.payload)
            self.broker_got.add(packet.payload)
        elif isinstance(packet, PubRel):
            held = self.srv_in.get(packet.packet_id)
            payload = held[1] if held else b""
            self.srv_in[packet.packet_id] = (OWE_PUBCOMP, payload)
        elif isinstance(packet, PubAck):
            state, _ = self.srv_out.pop(packet.packet_id)
            assert state == AWAIT_ACK
        elif isinstance(packet, PubRec):
            state, publish = self.srv_out[packet.packet_id]
            assert state in (AWAIT_ACK, OWE_PUBREL)
            self.srv_out[packet.packet_id] = (OWE_PUBREL, publish)
        elif isinstance(packet, PubComp):
            entry = self.srv_out.pop(packet.packet_id, None)
            assert entry is None or entry[0] == AWAIT_PUBCOMP
        elif isinstance(packet, Subscribe):
            pending = self.srv_subs.get(packet.packet_id)
            if pending is None:
                assert packet.packet_id not in self.srv_in, "SUBSCRIBE reused a held id"
            else:
                assert pending == packet, "a different SUBSCRIBE reused a held id"
            self.srv_subs[packet.packet_id] = packet
        else:
            assert isinstance(packet, PingReq), packet

    def _broker_answer(self, pid: int, *, lose: bool) -> None:
        state, payload = self.srv_in[pid]
        if state == OWE_PUBACK:
            del self.srv_in[pid]
            answer: Packet = PubAck(pid)
        elif state == OWE_PUBREC:
            self.srv_in[pid] = (AWAIT_PUBREL, payload)
            answer = PubRec(pid)
        else:
            del self.srv_in[pid]
            answer = PubComp(pid)
        if isinstance(answer, (PubAck, PubComp)):
            self.quota_used.discard(pid)
        if lose:
            self.client.connection_lost(self.now)
        else:
            self._send(answer)

    @property
    def connected(self) -> bool:
        return self.client.state is ConnectionState.CONNECTED

    def _owed(self) -> list[int]:
        return sorted(pid for pid, (state, _) in self.srv_in.items() if state != AWAIT_PUBREL)

    # ------------------------------------------------------------ rules

    @rule(qos=st.sampled_from([0, 1, 2]))
    def publish(self, qos: int) -> None:
        self.counter += 1
        tag = self.counter
        self.admitted[tag] = qos
        topic = f"t/{tag % 4}"
        self.client.publish(topic, str(tag).encode(), QoS(qos), tag=tag, now=self.now)
        self._pump()

    @precondition(lambda self: self.connected and self._owed())
    @rule(data=st.data(), lose=st.booleans())
    def broker_acks_one(self, data: st.DataObject, lose: bool) -> None:
        pid = data.draw(st.sampled_from(self._owed()))
        self._broker_answer(pid, lose=lose)

    @precondition(lambda self: self.connected)
    @rule()
    def lose_connection(self) -> None:
        self.client.connection_lost(self.now)

    @precondition(lambda self: not self.connected)
    @rule(session_present=st.booleans(), receive_maximum=st.sampled_from([1, 2, 3]))
    def reconnect(self, session_present: bool, receive_maximum: int = 2) -> None:
        self.now += 1
        self.client.connect(self.now)
        self._connack(session_present=session_present, receive_maximum=receive_maximum)

    @precondition(lambda self: self.connected)
    @rule(qos=st.sampled_from([1, 2]), answer_lost=st.booleans())
    def broker_publishes(self, qos: int, answer_lost: bool) -> None:
        self.srv_next_id = self.srv_next_id % 65535 + 1
        while self.srv_next_id in self.srv_out:
            self.srv_next_id = self.srv_next_id % 65535 + 1
        self.counter += 1
        publish = Publish("in", f"in-{self.counter}".encode(), QoS(qos), packet_id=self.srv_next_id)
        self.srv_out[publish.packet_id] = (AWAIT_ACK, publish)
        self._send(publish, deliver_answer=not answer_lost)

    @precondition(lambda self: self.connected and self.srv_out)
    @rule(data=st.data())
    def broker_resends_or_releases(self, data: st.DataObject) -> None:
        pid = data.draw(st.sampled_from(sorted(self.srv_out)))
        state, publish = self.srv_out[pid]
        if state == AWAIT_ACK:
            self._send(Publish(**{**_fields(publish), "dup": True}))
        else:
            self.srv_out[pid] = (AWAIT_PUBCOMP, publish)
            self._send(PubRel(pid))

    @rule()
    def subscribe(self) -> None:
        self.counter += 1
        self.subscribe_tags.add(self.counter)
        topic_filter = f"s/{self.counter % 3}"
        self.client.subscribe([Subscription(topic_filter)], tag=self.counter, now=self.now)
        self._pump()

    @precondition(lambda self: self.connected and self.srv_subs)
    @rule(data=st.data())
    def broker_answers_subscribe(self, data: st.DataObject) -> None:
        pid = data.draw(st.sampled_from(sorted(self.srv_subs)))
        request = self.srv_subs.pop(pid)
        self._send(SubAck(pid, (0,) * len(request.subscriptions)))

    @precondition(lambda self: self.manual_acks and self._unacked_incoming())
    @rule(data=st.data())
    def application_acks(self, data: st.DataObject) -> None:
        pid = data.draw(st.sampled_from(self._unacked_incoming()))
        self.client.ack(pid, now=self.now)
        self._pump()

    def _unacked_incoming(self) -> list[int]:
        return sorted(pid for pid, state in self.client._incoming.items() if state != 3)

    @rule(seconds=st.sampled_from([1.0, 30.0, 61.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds
        if self.connected:
            self.client.handle_timeout(self.now)
            self._pump()
            if self.client._ping_outstanding:
                from trio_mqtt._core._packets import PingResp

                self._send(PingResp())

    # ------------------------------------------------------------ invariants

    @invariant()
    def window_respected(self) -> None:
        # The window as the broker sees it (QoS 1/2 PUBLISH packets received on this
        # connection and not yet answered) is checked in _absorb against Receive Maximum.
        client = self.client
        assert client.window == self.limit or not self.connected
        publish_flows = sum(
            1 for flow in client._flows.values() if isinstance(flow.packet, Publish)
        )
        assert publish_flows == client.inflight_count

    @invariant()
    def qos2_delivered_at_most_once(self) -> None:
        assert all(count == 1 for count in self.delivered_qos2.values())

    @invariant()
    def finished_only_admitted(self) -> None:
        assert set(self.finished) <= set(self.admitted)

    def teardown(self) -> None:
        for _ in range(200):
            if not self.connected:
                self.reconnect(session_present=True)
            for pid in self._owed():
                self._broker_answer(pid, lose=False)
            for pid in self._unacked_incoming():
                if pid in self._unacked_incoming():  # an earlier ack may have released it
                    self.client.ack(pid, now=self.now)
                    self._pump()
            for pid in sorted(self.srv_subs):
                if self.connected:
                    request = self.srv_subs.pop(pid)
                    self._send(SubAck(pid, (0,) * len(request.subscriptions)))
            for pid, (state, _) in list(self.srv_out.items()):
                if state == OWE_PUBREL:
                    self.srv_out[pid] = (AWAIT_PUBCOMP, self.srv_out[pid][1])
                    self._send(PubRel(pid))
            if self.client.is_idle() and not self._owed() and not self.srv_subs:
                break
        assert self.client.is_idle()
        assert set(self.finished) == set(self.admitted), "some publish never completed"
        assert self.subscribe_done == self.subscribe_tags, "some subscribe never completed"
        for tag, qos in self.admitted.items():
            if qos and self.finished[tag] == "done":
                assert str(tag).encode() in self.broker_got


def _fields(publish: Publish) -> dict[str, object]:
    return {name: getattr(publish, name) for name in Publish.__dataclass_fields__}


class SessionMachineV5(SessionMachine):
    """MQTT 5 with a broker Receive Maximum below our window and outgoing topic aliases."""

    version = ProtocolVersion.V5
    connack_properties = Properties(receive_maximum=2, topic_alias_maximum=2)  # varied


class SessionMachineManualAcks(SessionMachine):
    """Manual acks, and publishes dropped (and reported) when the broker lost the session."""

    manual_acks = True
    resend_on_session_loss = False


_settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSessionV311 = SessionMachine.TestCase
TestSessionV311.settings = _settings
TestSessionV5 = SessionMachineV5.TestCase
TestSessionV5.settings = _settings
TestSessionManualAcks = SessionMachineManualAcks.TestCase
TestSessionManualAcks.settings = _settings
