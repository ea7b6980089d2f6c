"""Hypothesis stateful test of the sans-IO broker: clients come and go, publish, acknowledge late
or never, crash and resume their sessions, while the clock runs.

Three clients with persistent sessions subscribe to ``t/#`` at QoS 2 and publish numbered
messages at every QoS. The machine interleaves publishes (with retransmissions), acknowledgements
in any order, lost connections, reconnections and clock ticks. After every step it checks that
the broker never hit an internal error, that every byte it wrote decodes, that no session holds
more than its bounds, and that no subscriber ever sees the same QoS 2 message as new twice
(exactly once). At teardown every client reconnects and acknowledges everything; then every QoS
1/2 message that was accepted must have reached every subscriber that was subscribed when it was
routed (nothing lost below the queue bound).
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from trio_mqtt._core._broker import Broker, BrokerConfig, BrokerConnection
from trio_mqtt._core._codec import PacketDecoder, encode
from trio_mqtt._core._packets import (
    ConnAck,
    Connect,
    Packet,
    Properties,
    ProtocolVersion,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    QoS,
    Subscribe,
    Subscription,
)

NAMES = ("a", "b", "c")
KEEP = Properties(session_expiry_interval=3600)
QUEUE_BOUND = 50
WINDOW = 4


class Client:
    """One scripted client: its connection, what it has received, what it must still ack."""

    def __init__(self, name: str, version: ProtocolVersion) -> None:
        self.name = name
        self.version = version
        self.conn: BrokerConnection | None = None
        self.decoder = PacketDecoder(version)
        self.unacked: dict[int, Publish] = {}  # packet id -> QoS 1/2 PUBLISH not yet acked
        self.releases: set[int] = set()  # PUBREL received, PUBCOMP not yet sent
        self.seen_new: dict[bytes, int] = {}  # payload -> deliveries without DUP (QoS 2)
        self.got: set[bytes] = set()
        self.next_pid = 0
        self.open_qos2: set[int] = set()  # our QoS 2 publishes awaiting PUBREC/PUBCOMP


class BrokerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        config = BrokerConfig(
            max_queued_messages=QUEUE_BOUND, max_inflight=WINDOW, max_output_bytes=4096
        )
        self.broker = Broker(config)
        self.now = 0.0
        self.clients = {
            name: Client(name, ProtocolVersion.V5 if name != "c" else ProtocolVersion.V311)
            for name in NAMES
        }
        self.counter = 0
        #: payloads of accepted QoS 1/2 messages -> subscribers that must get them
        self.owed: dict[bytes, set[str]] = {}
        self.subscribed: set[str] = set()
        for client in self.clients.values():
            self._connect(client)
            self._send(client, Subscribe(1, (Subscription("t/#", QoS.EXACTLY_ONCE),)))
            self.subscribed.add(client.name)
        self._drain_all()

    # -- plumbing
    def _connect(self, client: Client) -> None:
        client.conn = self.broker.new_connection(self.now)
        client.decoder = PacketDecoder(client.version)
        props = KEEP if client.version is ProtocolVersion.V5 else Properties()
        packet = Connect(client.name, client.version, 0, False, properties=props)
        client.conn.receive_data(encode(packet, client.version), self.now)
        # a resumed session re-sends its flows: forget what we had not acknowledged
        client.unacked.clear()
        client.releases.clear()

    def _send(self, client: Client, packet: Packet) -> None:
        assert client.conn is not None
        client.conn.receive_data(encode(packet, client.version), self.now)

    def _drain(self, client: Client) -> None:
        if client.conn is None:
            return
        data = client.conn.data_to_send()
        if not data:
            return
        for packet in client.decoder.decode(data):
            self._received(client, packet)

    def _drain_all(self) -> None:
        for _ in range(3):
            for client in self.clients.values():
                self._drain(client)

    def _received(self, client: Client, packet: Packet) -> None:
        if isinstance(packet, Publish):
            client.got.add(packet.payload)
            if packet.qos == QoS.EXACTLY_ONCE and not packet.dup:
                client.seen_new[packet.payload] = client.seen_new.get(packet.payload, 0) + 1
            if packet.qos:
                client.unacked[packet.packet_id] = packet
        elif isinstance(packet, PubRel):
            client.releases.add(packet.packet_id)
        elif isinstance(packet, PubRec):
            if packet.packet_id in client.open_qos2:
                self._send(client, PubRel(packet.packet_id))
        elif isinstance(packet, PubComp):
            client.open_qos2.discard(packet.packet_id)
        else:
            assert isinstance(packet, (ConnAck, PubAck)) or type(packet).__name__ in (
                "SubAck",
                "Disconnect",
                "PingResp",
            ), packet

    def _online(self, name: str) -> bool:
        conn = self.clients[name].conn
        return conn is not None and not conn.closed

    # -- rules
    @rule(name=st.sampled_from(NAMES), qos=st.sampled_from([0, 1, 2]))
    def publish(self, name: str, qos: int) -> None:
        client = self.clients[name]
        if not self._online(name):
            return
        self.counter += 1
        payload = f"m{self.counter}".encode()
        pid = 0
        if qos:
            client.next_pid = client.next_pid % 60000 + 1
            pid = client.next_pid
        if qos == 2:
            client.open_qos2.add(pid)
        if qos:
            # every subscriber's session exists (persistent), so each is owed a copy
            self.owed[payload] = set(self.subscribed)
        self._send(client, Publish("t/x", payload, QoS(qos), packet_id=pid))
        if qos == 2:
            # a retransmission before PUBREL must not be routed again
            self._send(client, Publish("t/x", payload, QoS(qos), dup=True, packet_id=pid))

    @rule(name=st.sampled_from(NAMES), count=st.integers(1, 5))
    def acknowledge(self, name: str, count: int) -> None:
        client = self.clients[name]
        if not self._online(name):
            return
        self._drain(client)
        for pid in list(client.unacked)[:count]:
            publish = client.unacked.pop(pid)
            self._send(client, PubAck(pid) if publish.qos == 1 else PubRec(pid))
        for pid in list(client.releases)[:count]:
            client.releases.discard(pid)
            self._send(client, PubComp(pid))

    @rule(name=st.sampled_from(NAMES))
    def read(self, name: str) -> None:
        self._drain(self.clients[name])

    @rule(name=st.sampled_from(NAMES))
    def crash(self, name: str) -> None:
        client = self.clients[name]
        if client.conn is not None:
            client.conn.connection_lost(self.now)
            client.conn = None

    @precondition(lambda self: any(c.conn is None for c in self.clients.values()))
    @rule(name=st.sampled_from(NAMES))
    def reconnect(self, name: str) -> None:
        client = self.clients[name]
        if client.conn is None or client.conn.closed:
            self._connect(client)
            self._drain(client)

    @rule(seconds=st.floats(0.1, 30))
    def tick(self, seconds: float) -> None:
        self.now += seconds
        self.broker.tick(self.now)

    # -- invariants
    @invariant()
    def nothing_broke(self) -> None:
        stats = self.broker.statistics()
        assert stats.internal_errors == 0
        assert stats.protocol_errors == 0
        for session in self.broker.sessions.values():
            assert len(session.queue) <= QUEUE_BOUND
            assert len(session.inflight) <= WINDOW

    @invariant()
    def exactly_once(self) -> None:
        for client in self.clients.values():
            assert all(count == 1 for count in client.seen_new.values()), client.seen_new

    def teardown(self) -> None:
        for client in self.clients.values():
            if client.conn is None or client.conn.closed:
                self._connect(client)
        for _ in range(200):
            busy = False
            for client in self.clients.values():
                self._drain(client)
                if client.unacked or client.releases:
                    busy = True
                    self.acknowledge(client.name, 1000)
            if not busy and not any(s.queue or s.inflight for s in self.broker.sessions.values()):
                break
        dropped = self.broker.statistics().dropped_queue_full
        if dropped == 0:
            for payload, owed in self.owed.items():
                for name in owed:
                    assert payload in self.clients[name].got, (payload, name)


BrokerMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_broker_state_machine = BrokerMachine.TestCase
