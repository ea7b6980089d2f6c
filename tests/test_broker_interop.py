"""Interoperability scenarios with paho-mqtt as the client, against mosquitto and the embedded
broker alike: the behaviours the Eclipse Paho interoperability suite exercises (retained
messages, offline queueing, wills, empty client ids, ``$`` topics, overlapping subscriptions,
redelivery, unsubscribe, access refused, and for MQTT 5 subscription options, identifiers, topic
aliases both ways, flow control (Receive Maximum), Maximum Packet Size, Server Keep Alive,
request/response, shared subscriptions, message and session expiry, will delay). Written here
from the specification."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties as PahoProperties
from paho.mqtt.subscribeoptions import SubscribeOptions

from trio_mqtt.testing import EmbeddedBroker, MosquittoBroker

WAIT = 5.0


@pytest.fixture(params=["mosquitto", "embedded"])
def broker_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """Start brokers of the parametrised kind with MosquittoBroker options (closed after)."""
    made: list[Any] = []

    def make(**options: Any) -> Any:
        kind = MosquittoBroker if request.param == "mosquitto" else EmbeddedBroker
        started = kind(**options)
        made.append(started)
        started.start()
        return started

    yield make
    for started in made:
        started.close()


@pytest.fixture
def broker(broker_factory: Callable[..., Any]) -> Any:
    return broker_factory()


class Paho:
    """One paho-mqtt client on its own network thread, with a queue of received messages."""

    def __init__(self, broker: Any, client_id: str, version: int = 4) -> None:
        self.broker = broker
        self.version = version
        self.client_id = client_id
        self.messages: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self.connack: queue.Queue[tuple[Any, Any, Any]] = queue.Queue()
        self.acks: queue.Queue[Any] = queue.Queue()
        self.unsubacks: queue.Queue[Any] = queue.Queue()
        self.disconnected = threading.Event()
        self.will: tuple[Any, ...] | None = None
        self.client = self._make(clean=True)

    def _make(self, clean: bool) -> paho.Client:
        if self.version == 5:
            client = paho.Client(
                CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=paho.MQTTv5
            )
        else:
            client = paho.Client(
                CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=clean
            )
        client.on_message = lambda c, u, m: self.messages.put(m)
        client.on_connect = lambda c, u, f, rc, p: self.connack.put((f, rc, p))
        client.on_subscribe = lambda c, u, mid, codes, p: self.acks.put(codes)
        client.on_unsubscribe = lambda c, u, mid, codes, p: self.unsubacks.put(codes)
        client.on_disconnect = lambda c, u, f, rc, p: self.disconnected.set()
        return client

    def set_will(self, topic: str, payload: bytes, qos: int, **kwargs: Any) -> None:
        self.client.will_set(topic, payload, qos, **kwargs)
        self.will = (topic, payload, qos, kwargs)

    def connect(
        self, clean: bool = True, keepalive: int = 60, properties: PahoProperties | None = None
    ) -> tuple[Any, Any, Any]:
        if self.version == 5:
            self.client.connect(
                self.broker.host,
                self.broker.port,
                keepalive,
                clean_start=clean,
                properties=properties,
            )
        else:
            self.client = self._make(clean)
            if self.will is not None:
                topic, payload, qos, kwargs = self.will
                self.client.will_set(topic, payload, qos, **kwargs)
            self.client.connect(self.broker.host, self.broker.port, keepalive)
        self.client.loop_start()
        return self.connack.get(timeout=WAIT)

    def subscribe(self, topic: Any, qos: int = 0, **kwargs: Any) -> Any:
        if isinstance(topic, list):
            self.client.subscribe(topic, **kwargs)
        else:
            self.client.subscribe(topic, qos, **kwargs)
        return self.acks.get(timeout=WAIT)

    def unsubscribe(self, topic: str) -> Any:
        self.client.unsubscribe(topic)
        return self.unsubacks.get(timeout=WAIT)

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        properties: PahoProperties | None = None,
    ) -> None:
        info = self.client.publish(topic, payload, qos, retain, properties=properties)
        info.wait_for_publish(WAIT)
        assert info.is_published()

    def take(self, count: int, within: float = WAIT) -> list[paho.MQTTMessage]:
        return [self.messages.get(timeout=within) for _ in range(count)]

    def nothing(self, within: float = 0.3) -> None:
        try:
            message = self.messages.get(timeout=within)
        except queue.Empty:
            return
        pytest.fail(f"unexpected message on {message.topic}")

    def close(self) -> None:
        """Stop the network thread and close paho's sockets now (its wake-up socket pair too:
        left to the garbage collector it would warn about unclosed sockets)."""
        close_paho(self.client)

    def disconnect(self, properties: PahoProperties | None = None) -> None:
        self.client.disconnect(properties=properties)
        self.disconnected.wait(WAIT)
        self.client.loop_stop()

    def crash(self) -> None:
        """Close the socket without DISCONNECT (the will is published). The network thread is
        stopped first, or paho would reconnect by itself."""
        self.client.loop_stop()
        sock = self.client.socket()
        assert sock is not None
        sock.close()


@pytest.fixture
def clients(broker: Any) -> Iterator[Callable[..., Paho]]:
    made: list[Paho] = []

    def make(client_id: str, version: int = 4) -> Paho:
        client = Paho(broker, client_id, version)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def close_paho(client: paho.Client) -> None:
    """Disconnect (if connected), stop the network thread, and close every socket paho holds
    (``reinitialise`` is paho's public way to drop them)."""
    with contextlib.suppress(Exception):
        client.disconnect()
    client.loop_stop()
    client.reinitialise()


def props(packet: int, **values: Any) -> PahoProperties:
    properties = PahoProperties(packet)
    for name, value in values.items():
        setattr(properties, name, value)
    return properties


# ------------------------------------------------------------------ MQTT 3.1.1


@pytest.mark.parametrize("version", [4, 5])
def test_basic_round_trip_at_each_qos(clients: Callable[..., Paho], version: int) -> None:
    c = clients("basic", version)
    c.connect()
    c.subscribe("interop/basic", 2)
    for qos in (0, 1, 2):
        c.publish("interop/basic", f"qos {qos}".encode(), qos)
    got = c.take(3)
    assert sorted(m.payload for m in got) == [b"qos 0", b"qos 1", b"qos 2"]
    c.disconnect()


def test_retained_messages_and_clearing(clients: Callable[..., Paho]) -> None:
    c = clients("retainer")
    c.connect()
    for qos, topic in enumerate(("ret/a", "ret/b/c", "ret/d")):
        c.publish(topic, b"kept", qos, retain=True)
    c.subscribe("ret/#", 2)
    got = c.take(3)
    assert {m.topic for m in got} == {"ret/a", "ret/b/c", "ret/d"}
    assert all(m.retain for m in got)
    for topic in ("ret/a", "ret/b/c", "ret/d"):
        c.publish(topic, b"", 1, retain=True)
    c.take(3)  # the clearing messages themselves reach the live subscription
    c.disconnect()
    late = clients("late")
    late.connect()
    late.subscribe("ret/#", 2)
    late.nothing()
    late.disconnect()


def test_offline_messages_are_queued_for_a_persistent_session(
    clients: Callable[..., Paho],
) -> None:
    sleeper = clients("sleeper")
    sleeper.connect(clean=False)
    sleeper.subscribe("offline/#", 2)
    sleeper.disconnect()
    sender = clients("sender")
    sender.connect()
    for qos in (0, 1, 2):
        sender.publish(f"offline/{qos}", b"while away", qos)
    sender.disconnect()
    back = clients("sleeper")
    flags, _, _ = back.connect(clean=False)
    assert flags.session_present
    got = back.take(2)  # QoS 0 is not kept for an offline session by either broker
    assert sorted(m.topic for m in got) == ["offline/1", "offline/2"]
    back.nothing()
    back.disconnect()
    clean = clients("sleeper")
    clean.connect(clean=True)
    clean.disconnect()


def test_will_message_on_abrupt_close(clients: Callable[..., Paho]) -> None:
    watcher = clients("watcher")
    watcher.connect()
    watcher.subscribe("will/topic", 2)
    doomed = clients("doomed")
    doomed.set_will("will/topic", b"client died", 1)
    doomed.connect(keepalive=2)
    doomed.crash()
    (message,) = watcher.take(1)
    assert message.payload == b"client died"
    watcher.disconnect()


@pytest.mark.parametrize("version", [4, 5])
def test_unsubscribe_stops_only_that_subscription(
    clients: Callable[..., Paho], version: int
) -> None:
    c = clients("unsub", version)
    c.connect()
    c.subscribe([("unsub/a", 1), ("unsub/b", 1), ("unsub/c", 1)])
    c.unsubscribe("unsub/b")
    for topic in ("unsub/a", "unsub/b", "unsub/c"):
        c.publish(topic, topic.encode(), 1)
    got = c.take(2)
    assert sorted(m.topic for m in got) == ["unsub/a", "unsub/c"]
    c.nothing()
    c.disconnect()


@pytest.mark.parametrize("version", [4, 5])
def test_acl_keeps_what_a_client_may_not_read_or_write(
    broker_factory: Callable[..., Any], tmp_path: Path, version: int
) -> None:
    """mosquitto's acl_file semantics, which the embedded broker follows: SUBSCRIBE is granted,
    but only readable topics are delivered, and a publish to a topic the client may not write
    reaches no one."""
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite allowed/#\ntopic read readonly/#\n", encoding="utf-8")
    broker = broker_factory(extra_config=[f"acl_file {acl}"])
    c = Paho(broker, "acl-client", version)
    try:
        c.connect()
        c.subscribe([("allowed/#", 1), ("hidden/#", 1), ("readonly/#", 1)])
        c.publish("hidden/x", b"not readable", 1)
        c.publish("readonly/x", b"not writable", 1)
        c.publish("allowed/x", b"fine", 1)
        (message,) = c.take(1)
        assert (message.topic, message.payload) == ("allowed/x", b"fine")
        c.nothing()
    finally:
        c.close()


def test_zero_length_client_id(broker: Any) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
    done: queue.Queue[Any] = queue.Queue()
    client.on_connect = lambda c, u, f, rc, p: done.put(rc)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        assert done.get(timeout=WAIT) == 0
    finally:
        close_paho(client)


def test_dollar_topics_are_not_matched_by_wildcards(clients: Callable[..., Paho]) -> None:
    c = clients("dollar")
    c.connect()
    c.subscribe("+/x", 1)
    c.publish("$dollar/x", b"hidden", 1)
    c.nothing()
    c.subscribe("$dollar/x", 1)
    c.publish("$dollar/x", b"named", 1)
    (message,) = c.take(1)
    assert message.payload == b"named"
    c.disconnect()


def test_overlapping_subscriptions_deliver_the_message(
    clients: Callable[..., Paho],
) -> None:
    c = clients("overlap")
    c.connect()
    c.subscribe([("ov/#", 2), ("ov/+", 1)])
    c.publish("ov/x", b"both", 2)
    first = c.take(1)[0]
    assert first.payload == b"both"
    assert first.qos in (1, 2)  # mosquitto 2.0 sends one copy at QoS 1 here, we send QoS 2
    extra = []
    with contextlib.suppress(queue.Empty):
        extra.append(c.messages.get(timeout=0.3))
    assert len(extra) <= 1  # at most one copy per matching subscription
    c.disconnect()


def test_keepalive_expiry_sends_the_will(clients: Callable[..., Paho]) -> None:
    watcher = clients("ka-watcher")
    watcher.connect()
    watcher.subscribe("ka/will", 1)
    silent = clients("ka-silent")
    silent.set_will("ka/will", b"timed out", 1)
    silent.connect(keepalive=1)
    silent.client.loop_stop()  # no more PINGREQ: the broker must give up after 1.5 s or so
    start = time.monotonic()
    # the embedded broker closes at 1.5 times the keep alive (checked every 0.25 s, so 3 s
    # leaves room for a loaded machine); mosquitto 2.0 checks keepalives only now and then and
    # took up to about 4.5 s here, more on a loaded machine
    limit = 3.0 if isinstance(watcher.broker, EmbeddedBroker) else 12.0
    (message,) = watcher.take(1, within=limit)
    assert message.payload == b"timed out"
    assert time.monotonic() - start < limit
    watcher.disconnect()


def test_unacknowledged_qos1_is_redelivered_on_reconnect(broker: Any) -> None:
    """A raw subscriber that never acknowledges gets the message again, flagged DUP."""
    import socket

    from trio_mqtt._core._codec import PacketDecoder, encode
    from trio_mqtt._core._packets import (
        ConnAck,
        Connect,
        ProtocolVersion,
        Publish,
        QoS,
        SubAck,
        Subscribe,
        Subscription,
    )

    version = ProtocolVersion.V311

    def session() -> tuple[socket.socket, PacketDecoder, ConnAck]:
        sock = socket.create_connection((broker.host, broker.port), timeout=WAIT)
        sock.sendall(encode(Connect("redeliver", version, 60, False), version))
        decoder = PacketDecoder(version)
        return sock, decoder, receive(sock, decoder)  # type: ignore[return-value]

    def receive(sock: socket.socket, decoder: PacketDecoder) -> Any:
        while (packet := decoder.next_packet()) is None:
            data = sock.recv(65536)
            assert data, "the broker closed the connection"
            decoder.feed(data)
        return packet

    sock, decoder, _ = session()
    with sock:
        sock.sendall(encode(Subscribe(1, (Subscription("redo", QoS.AT_LEAST_ONCE),)), version))
        assert isinstance(receive(sock, decoder), SubAck)
        sender = paho.Client(CallbackAPIVersion.VERSION2, client_id="redo-sender")
        sender.connect(broker.host, broker.port)
        sender.loop_start()
        sender.publish("redo", b"again", 1).wait_for_publish(WAIT)
        close_paho(sender)
        first = receive(sock, decoder)
        assert isinstance(first, Publish)
        assert not first.dup
    sock, decoder, ack = session()
    with sock:
        assert ack.session_present
        again = receive(sock, decoder)
        assert isinstance(again, Publish)
        assert (again.payload, again.dup, again.packet_id) == (b"again", True, first.packet_id)


# ------------------------------------------------------------------ MQTT 5


def test_v5_subscription_options(clients: Callable[..., Paho]) -> None:
    c = clients("options5", 5)
    c.connect()
    c.publish("opt/retained", b"r", 1, retain=True)
    c.subscribe("opt/retained", options=SubscribeOptions(qos=1, retainHandling=2))
    c.nothing()  # retain handling 2: no retained message
    c.subscribe("opt/local", options=SubscribeOptions(qos=1, noLocal=True))
    c.publish("opt/local", b"mine", 1)
    c.nothing()  # no local
    c.subscribe("opt/rap", options=SubscribeOptions(qos=1, retainAsPublished=True))
    c.publish("opt/rap", b"kept flag", 1, retain=True)
    (message,) = c.take(1)
    assert message.retain
    c.publish("opt/rap", b"", 1, retain=True)
    c.take(1)
    c.publish("opt/retained", b"", 1, retain=True)
    c.take(1)
    c.disconnect()


def test_v5_subscription_identifiers(clients: Callable[..., Paho]) -> None:
    c = clients("subid5", 5)
    c.connect()
    c.subscribe("sid/#", 1, properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=3))
    c.publish("sid/x", b"m", 1)
    (message,) = c.take(1)
    assert message.properties.SubscriptionIdentifier == [3]
    c.disconnect()


def test_v5_request_response_and_user_properties_pass_through(
    clients: Callable[..., Paho],
) -> None:
    c = clients("reqresp5", 5)
    c.connect()
    c.subscribe("rr/request", 1)
    sent = props(
        PacketTypes.PUBLISH,
        ResponseTopic="rr/response",
        CorrelationData=b"id-1",
        UserProperty=[("a", "1"), ("b", "2")],
        ContentType="text/plain",
        PayloadFormatIndicator=1,
    )
    c.publish("rr/request", b"question", 1, properties=sent)
    (message,) = c.take(1)
    got = message.properties
    assert got.ResponseTopic == "rr/response"
    assert got.CorrelationData == b"id-1"
    assert got.UserProperty == [("a", "1"), ("b", "2")]
    assert (got.ContentType, got.PayloadFormatIndicator) == ("text/plain", 1)
    c.disconnect()


def test_v5_shared_subscription_splits_the_messages(clients: Callable[..., Paho]) -> None:
    workers = [clients(f"worker{n}", 5) for n in (1, 2)]
    for worker in workers:
        worker.connect()
        worker.subscribe("$share/grp/jobs/+", 1)
    boss = clients("boss", 5)
    boss.connect()
    for number in range(10):
        boss.publish(f"jobs/{number}", str(number).encode(), 1)
    deadline = time.monotonic() + WAIT
    while sum(w.messages.qsize() for w in workers) < 10 and time.monotonic() < deadline:
        time.sleep(0.01)  # bounded poll until all ten have arrived somewhere
    counts = [worker.messages.qsize() for worker in workers]
    assert sum(counts) == 10
    assert all(counts)


def test_v5_message_expiry_drops_a_stale_queued_message(clients: Callable[..., Paho]) -> None:
    session = props(PacketTypes.CONNECT, SessionExpiryInterval=60)
    sleeper = clients("expiry5", 5)
    sleeper.connect(clean=True, properties=session)
    sleeper.subscribe("exp/t", 1)
    sleeper.disconnect()
    sender = clients("exp-sender", 5)
    sender.connect()
    sender.publish(
        "exp/t", b"short", 1, properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=1)
    )
    sender.publish(
        "exp/t", b"long", 1, properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=60)
    )
    time.sleep(2.1)  # the expiry interval itself is what is being tested
    back = clients("expiry5", 5)
    back.connect(clean=False, properties=session)
    (message,) = back.take(1)
    assert message.payload == b"long"
    assert 0 < message.properties.MessageExpiryInterval <= 60
    back.nothing()


def test_v5_topic_alias_from_the_client(clients: Callable[..., Paho]) -> None:
    c = clients("alias5", 5)
    _, _, connack = c.connect()
    assert connack.TopicAliasMaximum >= 1
    c.subscribe("alias/topic", 1)
    c.publish("alias/topic", b"1", 1, properties=props(PacketTypes.PUBLISH, TopicAlias=1))
    c.publish("", b"2", 1, properties=props(PacketTypes.PUBLISH, TopicAlias=1))
    got = c.take(2)
    assert [(m.topic, m.payload) for m in got] == [("alias/topic", b"1"), ("alias/topic", b"2")]


def test_v5_assigned_client_identifier(broker: Any) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="", protocol=paho.MQTTv5)
    done: queue.Queue[Any] = queue.Queue()
    client.on_connect = lambda c, u, f, rc, p: done.put(p)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        properties = done.get(timeout=WAIT)
        assert properties.AssignedClientIdentifier
    finally:
        close_paho(client)


def test_v5_will_delay_is_cancelled_by_a_quick_reconnection(clients: Callable[..., Paho]) -> None:
    watcher = clients("wd-watcher", 5)
    watcher.connect()
    watcher.subscribe("wd/will", 1)
    session = props(PacketTypes.CONNECT, SessionExpiryInterval=30)
    doomed = clients("wd-client", 5)
    doomed.set_will(
        "wd/will", b"late", 1, properties=props(PacketTypes.WILLMESSAGE, WillDelayInterval=2)
    )
    doomed.connect(clean=True, properties=session)
    doomed.crash()
    back = clients("wd-client", 5)
    back.connect(clean=False, properties=session)
    watcher.nothing(within=2.5)
    back.disconnect(props(PacketTypes.DISCONNECT, SessionExpiryInterval=0))


def test_v5_server_disconnects_a_second_connection_with_the_same_id(
    clients: Callable[..., Paho],
) -> None:
    first = clients("twin", 5)
    first.connect()
    second = clients("twin", 5)
    second.connect()
    assert first.disconnected.wait(WAIT)
    second.disconnect()


def test_v5_session_expiry_keeps_and_then_forgets_the_session(
    clients: Callable[..., Paho],
) -> None:
    short = props(PacketTypes.CONNECT, SessionExpiryInterval=1)
    c = clients("expiring5", 5)
    c.connect(clean=True, properties=short)
    c.subscribe("se/t", 1)
    c.disconnect()
    again = clients("expiring5", 5)
    flags, _, _ = again.connect(clean=False, properties=short)
    assert flags.session_present  # reconnected within the interval
    again.disconnect()
    time.sleep(2.5)  # the expiry interval itself is what is being tested
    late = clients("expiring5", 5)
    flags, _, _ = late.connect(clean=False, properties=short)
    assert not flags.session_present
    late.disconnect(props(PacketTypes.DISCONNECT, SessionExpiryInterval=0))


def test_v5_message_larger_than_the_clients_maximum_packet_size_is_not_sent(
    clients: Callable[..., Paho],
) -> None:
    c = clients("maxpacket5", 5)
    c.connect(properties=props(PacketTypes.CONNECT, MaximumPacketSize=64))
    c.subscribe("mp/t", 1)
    sender = clients("mp-sender", 5)
    sender.connect()
    sender.publish("mp/t", b"x" * 200, 1)
    sender.publish("mp/t", b"small", 1)
    (message,) = c.take(1)
    assert message.payload == b"small"
    c.nothing()
    c.disconnect()
    sender.disconnect()


def test_v5_server_keep_alive_is_announced(broker_factory: Callable[..., Any]) -> None:
    broker = broker_factory(max_keepalive=10)
    c = Paho(broker, "ska5", 5)
    try:
        _, _, connack = c.connect(keepalive=60)
        assert connack.ServerKeepAlive == 10
    finally:
        c.close()


def test_v5_server_topic_aliases_resolve_to_the_published_topics(
    clients: Callable[..., Paho],
) -> None:
    """The client allows two aliases. mosquitto 2.0 sends none; the embedded broker numbers the
    topics (reassigning the least recently used one): either way, a client that keeps the alias
    table reads back every topic, and no alias exceeds two."""
    c = clients("sta5", 5)
    c.connect(properties=props(PacketTypes.CONNECT, TopicAliasMaximum=2))
    c.subscribe("sta/#", 1)
    topics = ["sta/a", "sta/b", "sta/a", "sta/c", "sta/a", "sta/b"]
    for topic in topics:
        c.publish(topic, b"m", 1)
    table: dict[int, str] = {}
    resolved = []
    aliased = 0
    for message in c.take(len(topics)):
        alias = getattr(message.properties, "TopicAlias", None)
        if alias is not None:
            aliased += 1
            assert 1 <= alias <= 2
            if message.topic:
                table[alias] = message.topic
        resolved.append(message.topic or table[alias])
    assert resolved == topics
    if isinstance(c.broker, EmbeddedBroker):
        assert aliased == len(topics)
    c.disconnect()


def test_v5_client_receive_maximum_bounds_what_is_in_flight(broker: Any) -> None:
    """A raw MQTT 5 subscriber with Receive Maximum 2 that does not acknowledge gets two QoS 1
    messages, and one more for each PUBACK it sends (flow control, MQTT-3.3.4-9)."""
    import socket

    from trio_mqtt._core._codec import PacketDecoder, encode
    from trio_mqtt._core._packets import (
        ConnAck,
        Connect,
        Properties,
        ProtocolVersion,
        PubAck,
        QoS,
        SubAck,
        Subscribe,
        Subscription,
    )

    version = ProtocolVersion.V5
    decoder = PacketDecoder(version)

    def receive(sock: socket.socket) -> list[Any]:
        """Packets that arrive within 0.5 s."""
        sock.settimeout(0.5)
        packets: list[Any] = []
        with contextlib.suppress(TimeoutError):
            while True:
                data = sock.recv(65536)
                assert data, "the broker closed the connection"
                packets += decoder.decode(data)
        return packets

    with socket.create_connection((broker.host, broker.port), timeout=WAIT) as sock:
        limits = Properties(receive_maximum=2)
        sock.sendall(encode(Connect("flow5", version, 60, True, properties=limits), version))
        sock.sendall(encode(Subscribe(1, (Subscription("flow", QoS.AT_LEAST_ONCE),)), version))
        acks = receive(sock)
        assert [type(p) for p in acks] == [ConnAck, SubAck]
        sender = Paho(broker, "flow-sender", 5)
        try:
            sender.connect()
            for number in range(5):
                sender.publish("flow", str(number).encode(), 1)
        finally:
            sender.close()
        first = receive(sock)
        assert [p.payload for p in first] == [b"0", b"1"]
        sock.sendall(encode(PubAck(first[0].packet_id), version))
        more = [p.payload for p in receive(sock)]
        if isinstance(broker, EmbeddedBroker):
            assert more == [b"2"]
        else:
            # mosquitto 2.0.11 refills its quota by two here (three in flight): one of the
            # inflight-quota defects later releases fix; the order still holds
            assert more[:1] == [b"2"]


def test_v5_will_delay_publishes_the_will_after_the_delay(clients: Callable[..., Paho]) -> None:
    watcher = clients("wdd-watcher", 5)
    watcher.connect()
    watcher.subscribe("wdd/will", 1)
    doomed = clients("wdd-client", 5)
    doomed.set_will(
        "wdd/will", b"delayed", 1, properties=props(PacketTypes.WILLMESSAGE, WillDelayInterval=1)
    )
    doomed.connect(clean=True, properties=props(PacketTypes.CONNECT, SessionExpiryInterval=30))
    doomed.crash()
    start = time.monotonic()
    (message,) = watcher.take(1, within=WAIT + 5)
    assert message.payload == b"delayed"
    assert time.monotonic() - start >= 0.9  # not before the delay
    watcher.disconnect()
