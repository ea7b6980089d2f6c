"""Cross-checks against independent MQTT implementations, in both directions.

* mosquitto (a real broker, spoken to over a raw socket): it decodes what we encode and we
  decode what it encodes, for MQTT 3.1.1 and MQTT 5.
* paho-mqtt 2.2 (the client library): it connects to a plain listening socket of ours, so we
  decode its CONNECT, SUBSCRIBE, PUBLISH, ... and it decodes our CONNACK, SUBACK, PUBLISH, ...

Every socket has a timeout, so a misunderstanding shows up as a failure, never as a hang.
"""

from __future__ import annotations

import select
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties as PahoProperties
from paho.mqtt.subscribeoptions import SubscribeOptions

from trio_mqtt._core._codec import PacketDecoder, encode
from trio_mqtt._core._packets import (
    ConnAck,
    Connect,
    Disconnect,
    Packet,
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
from trio_mqtt.testing import MosquittoBroker

V4 = ProtocolVersion.V311
V5 = ProtocolVersion.V5
TIMEOUT = 5.0


class Peer:
    """One end of a TCP connection that speaks MQTT through our codec."""

    def __init__(self, sock: socket.socket, version: ProtocolVersion) -> None:
        sock.settimeout(TIMEOUT)
        self.sock = sock
        self.version = version
        self.decoder = PacketDecoder(version)
        self.pending: deque[Packet] = deque()

    def send(self, packet: Packet) -> None:
        self.sock.sendall(encode(packet, self.version))

    def receive(self) -> Packet:
        while not self.pending:
            data = self.sock.recv(65_536)
            assert data, "connection closed while a packet was expected"
            self.pending.extend(self.decoder.decode(data))
        return self.pending.popleft()

    def receive_many(self, count: int) -> list[Packet]:
        return [self.receive() for _ in range(count)]

    def closed(self) -> bool:
        """True once the other side closes (after anything still queued)."""
        return not self.pending and self.sock.recv(1) == b""


# ----------------------------------------------------------------------------- mosquitto


@pytest.fixture
def mosquitto_peer(mosquitto: MosquittoBroker) -> Iterator[Callable[[ProtocolVersion], Peer]]:
    socks: list[socket.socket] = []

    def connect(version: ProtocolVersion) -> Peer:
        sock = socket.create_connection((mosquitto.host, mosquitto.port), timeout=TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks.append(sock)
        return Peer(sock, version)

    yield connect
    for sock in socks:
        sock.close()


def _sorted_by_type(packets: list[Packet]) -> dict[type, Packet]:
    by_type = {type(packet): packet for packet in packets}
    assert len(by_type) == len(packets), packets
    return by_type


@pytest.mark.parametrize("version", [V4, V5])
def test_mosquitto_session(
    mosquitto_peer: Callable[[ProtocolVersion], Peer], version: ProtocolVersion
) -> None:
    v5 = version == V5
    peer = mosquitto_peer(version)
    connect_props = (
        Properties(session_expiry_interval=0, receive_maximum=50, user_properties=(("a", "b"),))
        if v5
        else Properties()
    )
    peer.send(
        Connect(
            f"codec-{int(version)}",
            version,
            keep_alive=30,
            will=Will("will/t", b"bye", QoS.AT_LEAST_ONCE),
            properties=connect_props,
        )
    )
    connack = peer.receive()
    assert isinstance(connack, ConnAck)
    assert (connack.session_present, connack.reason_code) == (False, 0)

    peer.send(
        Subscribe(
            1,
            (Subscription("codec/+", QoS.EXACTLY_ONCE), Subscription("other/#", QoS.AT_LEAST_ONCE)),
            Properties(subscription_identifiers=(42,)) if v5 else Properties(),
        )
    )
    assert peer.receive() == SubAck(1, (2, 1))

    # QoS 0 out, QoS 0 back.
    peer.send(Publish("codec/zero", b"zero"))
    message = peer.receive()
    assert isinstance(message, Publish)
    assert (message.topic, message.payload, message.qos) == ("codec/zero", b"zero", QoS(0))
    if v5:
        assert message.properties.subscription_identifiers == (42,)

    # QoS 1 with MQTT 5 message properties, which mosquitto forwards unchanged.
    message_props = (
        Properties(
            payload_format_indicator=1,
            message_expiry_interval=300,
            content_type="text/plain",
            response_topic="codec/reply",
            correlation_data=b"\x00\x01",
            user_properties=(("k", "v"), ("k", "w")),
        )
        if v5
        else Properties()
    )
    payload = "héllo wörld ".encode() * 80
    peer.send(
        Publish("codec/one", payload, QoS.AT_LEAST_ONCE, packet_id=2, properties=message_props)
    )
    got = _sorted_by_type(peer.receive_many(2))
    assert got[PubAck] == PubAck(2)
    delivered = got[Publish]
    assert isinstance(delivered, Publish)
    assert (delivered.topic, delivered.payload, delivered.qos) == ("codec/one", payload, QoS(1))
    if v5:
        props = delivered.properties
        assert props.content_type == "text/plain"
        assert props.response_topic == "codec/reply"
        assert props.correlation_data == b"\x00\x01"
        assert props.user_properties == (("k", "v"), ("k", "w"))
        assert props.payload_format_indicator == 1
        assert props.message_expiry_interval is not None
        assert 0 < props.message_expiry_interval <= 300
    peer.send(PubAck(delivered.packet_id))

    # QoS 2 with a large payload (three byte remaining length), delivered at QoS 1.
    big = bytes(range(256)) * 80
    peer.send(Publish("other/x/y", big, QoS.EXACTLY_ONCE, retain=True, packet_id=3))
    assert peer.receive() == PubRec(3)
    peer.send(PubRel(3))
    got = _sorted_by_type(peer.receive_many(2))
    assert got[PubComp] == PubComp(3)
    delivered = got[Publish]
    assert isinstance(delivered, Publish)
    assert (delivered.topic, delivered.payload, delivered.qos) == ("other/x/y", big, QoS(1))
    peer.send(PubAck(delivered.packet_id))

    peer.send(Unsubscribe(4, ("codec/+", "never/subscribed")))
    unsuback = peer.receive()
    assert unsuback == (UnsubAck(4, (0, 0x11)) if v5 else UnsubAck(4))

    peer.send(PingReq())
    assert peer.receive() == PingResp()

    # A second connection receives the retained message with the retain flag set.
    other = mosquitto_peer(version)
    other.send(Connect(f"codec-b-{int(version)}", version))
    assert isinstance(other.receive(), ConnAck)
    other.send(Subscribe(9, (Subscription("other/#", QoS.EXACTLY_ONCE),)))
    assert other.receive() == SubAck(9, (2,))
    retained = other.receive()
    assert isinstance(retained, Publish)
    assert (retained.retain, retained.qos, retained.payload) == (True, QoS(2), big)
    other.send(PubRec(retained.packet_id))
    assert other.receive() == PubRel(retained.packet_id)
    other.send(PubComp(retained.packet_id))

    peer.send(Disconnect())
    assert peer.closed()


def test_mosquitto_v5_server_disconnect(
    mosquitto_peer: Callable[[ProtocolVersion], Peer],
) -> None:
    """mosquitto's DISCONNECT with a failure reason code decodes."""
    peer = mosquitto_peer(V5)
    # A PUBLISH using an alias above the broker's Topic Alias Maximum is a protocol error.
    peer.send(Connect("codec-refusals", V5))
    connack = peer.receive()
    assert isinstance(connack, ConnAck)
    assert connack.reason_code == 0
    limit = connack.properties.topic_alias_maximum or 0
    peer.send(Publish("t", b"", properties=Properties(topic_alias=limit + 1)))
    disconnect = peer.receive()
    assert isinstance(disconnect, Disconnect)
    assert disconnect.reason_code >= 0x80


# --------------------------------------------------------------------------------- paho


class PahoHarness:
    """A paho client connected to a listening socket of ours, driven by hand."""

    def __init__(self, version: ProtocolVersion) -> None:
        self.version = version
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(TIMEOUT)
        protocol = paho.MQTTv5 if version == V5 else paho.MQTTv311
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id="paho-codec", protocol=protocol
        )
        self.messages: list[Any] = []
        self.suback_codes: list[Any] = []
        self.published: list[int] = []
        self.client.on_message = lambda client, userdata, message: self.messages.append(message)
        self.client.on_subscribe = lambda c, u, mid, codes, props: self.suback_codes.extend(codes)
        self.client.on_publish = lambda c, u, mid, code, props: self.published.append(mid)
        self.peer: Peer | None = None

    def accept(self) -> Peer:
        sock, _ = self.server.accept()
        self.peer = Peer(sock, self.version)
        return self.peer

    def pump(self, until: Callable[[], bool]) -> None:
        """Let paho read from its socket until ``until()`` holds."""
        deadline = time.monotonic() + TIMEOUT
        while not until():
            assert time.monotonic() < deadline, "paho did not react in time"
            sock = self.client.socket()
            assert sock is not None
            readable, _, _ = select.select([sock], [], [], 0.1)
            if readable:
                self.client.loop_read()

    def close(self) -> None:
        if self.client.socket() is not None:
            self.client.socket().close()  # type: ignore[union-attr]
        if self.peer is not None:
            self.peer.sock.close()
        self.server.close()


@pytest.fixture
def paho_harness() -> Iterator[Callable[[ProtocolVersion], PahoHarness]]:
    made: list[PahoHarness] = []

    def make(version: ProtocolVersion) -> PahoHarness:
        harness = PahoHarness(version)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.close()


def _paho_props(packet_type: int, **values: Any) -> PahoProperties:
    props = PahoProperties(packet_type)  # type: ignore[no-untyped-call]
    for name, value in values.items():
        setattr(props, name, value)
    return props


@pytest.mark.parametrize("version", [V4, V5])
def test_paho_client_session(
    paho_harness: Callable[[ProtocolVersion], PahoHarness], version: ProtocolVersion
) -> None:
    v5 = version == V5
    harness = paho_harness(version)
    client = harness.client
    client.username_pw_set("user", "pw")
    client.will_set(
        "will/topic",
        b"gone",
        1,
        True,
        properties=_paho_props(PacketTypes.WILLMESSAGE, WillDelayInterval=7) if v5 else None,
    )
    port = harness.server.getsockname()[1]
    if v5:
        props = _paho_props(PacketTypes.CONNECT, SessionExpiryInterval=60, ReceiveMaximum=7)
        client.connect("127.0.0.1", port, keepalive=30, clean_start=True, properties=props)
    else:
        client.connect("127.0.0.1", port, keepalive=30)
    peer = harness.accept()

    # paho's CONNECT, decoded by us.
    connect = peer.receive()
    assert isinstance(connect, Connect)
    assert connect.protocol_version == version
    assert (connect.client_id, connect.keep_alive, connect.clean_start) == ("paho-codec", 30, True)
    assert (connect.username, connect.password) == ("user", b"pw")
    assert connect.will is not None
    assert (connect.will.topic, connect.will.payload) == ("will/topic", b"gone")
    assert (connect.will.qos, connect.will.retain) == (QoS.AT_LEAST_ONCE, True)
    if v5:
        assert connect.properties.session_expiry_interval == 60
        assert connect.properties.receive_maximum == 7
        assert connect.will.properties.will_delay_interval == 7

    # Our CONNACK, decoded by paho.
    peer.send(ConnAck(False, 0, Properties(topic_alias_maximum=3) if v5 else Properties()))
    harness.pump(client.is_connected)

    # SUBSCRIBE both ways.
    if v5:
        options = SubscribeOptions(qos=1, noLocal=True, retainAsPublished=True, retainHandling=2)
        _, mid = client.subscribe([("a/+", options), ("b/#", SubscribeOptions(qos=2))])
        expected_subs = (
            Subscription("a/+", QoS(1), True, True, RetainHandling.DO_NOT_SEND),
            Subscription("b/#", QoS(2)),
        )
    else:
        _, mid = client.subscribe([("a/+", 1), ("b/#", 2)])
        expected_subs = (Subscription("a/+", QoS(1)), Subscription("b/#", QoS(2)))
    assert mid is not None
    subscribe = peer.receive()
    assert isinstance(subscribe, Subscribe)
    assert (subscribe.packet_id, subscribe.subscriptions) == (mid, expected_subs)
    peer.send(SubAck(mid, (1, 0x80)))
    harness.pump(lambda: len(harness.suback_codes) == 2)
    granted = [int(getattr(code, "value", code)) for code in harness.suback_codes]
    assert granted == [1, 0x80]

    # paho publishes at QoS 1 and 2; we ack.
    pub_props = (
        _paho_props(PacketTypes.PUBLISH, UserProperty=[("k", "v")], ContentType="text/plain")
        if v5
        else None
    )
    info1 = client.publish("a/b", b"one", qos=1, retain=True, properties=pub_props)
    publish = peer.receive()
    assert isinstance(publish, Publish)
    assert (publish.topic, publish.payload, publish.qos, publish.retain) == (
        "a/b",
        b"one",
        QoS(1),
        True,
    )
    assert publish.packet_id == info1.mid
    if v5:
        assert publish.properties.user_properties == (("k", "v"),)
        assert publish.properties.content_type == "text/plain"
    peer.send(PubAck(info1.mid))
    harness.pump(lambda: info1.mid in harness.published)

    info2 = client.publish("b/c", bytes(range(256)) * 100, qos=2)
    publish = peer.receive()
    assert isinstance(publish, Publish)
    assert (publish.qos, publish.payload) == (QoS(2), bytes(range(256)) * 100)
    peer.send(PubRec(info2.mid))
    harness.pump(lambda: bool(peer.sock in select.select([peer.sock], [], [], 0)[0]))
    assert peer.receive() == PubRel(info2.mid)
    peer.send(PubComp(info2.mid))
    harness.pump(lambda: info2.mid in harness.published)

    # We publish to paho at QoS 1 and 2; paho acks.
    message_props = (
        Properties(user_properties=(("x", "y"),), subscription_identifiers=(5,))
        if v5
        else Properties()
    )
    peer.send(
        Publish("a/in", b"\x00\xffdata", QoS.AT_LEAST_ONCE, packet_id=10, properties=message_props)
    )
    harness.pump(lambda: len(harness.messages) == 1)
    assert peer.receive() == PubAck(10)
    peer.send(Publish("b/in", b"two" * 10_000, QoS.EXACTLY_ONCE, dup=True, packet_id=11))
    harness.pump(lambda: bool(peer.sock in select.select([peer.sock], [], [], 0)[0]))
    assert peer.receive() == PubRec(11)
    peer.send(PubRel(11))
    harness.pump(lambda: len(harness.messages) == 2)
    assert peer.receive() == PubComp(11)
    first, second = harness.messages
    assert (first.topic, first.payload, first.qos) == ("a/in", b"\x00\xffdata", 1)
    assert (second.topic, second.payload, second.qos) == ("b/in", b"two" * 10_000, 2)
    if v5:
        assert first.properties.UserProperty == [("x", "y")]
        assert first.properties.SubscriptionIdentifier == [5]

    # UNSUBSCRIBE and DISCONNECT.
    _, mid = client.unsubscribe(["a/+", "b/#"])
    assert mid is not None
    assert peer.receive() == Unsubscribe(mid, ("a/+", "b/#"))
    peer.send(UnsubAck(mid, (0, 0x11)) if v5 else UnsubAck(mid))
    client.disconnect()
    assert peer.receive() == Disconnect()
