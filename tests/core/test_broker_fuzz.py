"""Hypothesis against the sans-IO broker: nothing a client sends may crash it, and the packet
rules it promises hold for arbitrary traffic."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings, strategies as st
from test_codec_properties import packets, publishes, topics

from trio_mqtt._core._broker import Broker, BrokerConfig
from trio_mqtt._core._codec import PacketDecoder, encode
from trio_mqtt._core._packets import (
    NO_PROPERTIES,
    Connect,
    Disconnect,
    Packet,
    Properties,
    ProtocolVersion,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    QoS,
    Subscribe,
    Subscription,
)

VERSIONS = st.sampled_from([ProtocolVersion.V311, ProtocolVersion.V5])
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decode_all(version: ProtocolVersion, data: bytes) -> list[Packet]:
    """What a client would decode from the broker's bytes (must never fail)."""
    decoder = PacketDecoder(version)
    return decoder.decode(data) if data else []


def connected(broker: Broker, version: ProtocolVersion, client_id: str) -> object:
    conn = broker.new_connection(0.0)
    conn.receive_data(encode(Connect(client_id, version), version), 0.0)
    conn.data_to_send()
    return conn


@SETTINGS
@given(version=VERSIONS, chunks=st.lists(st.binary(max_size=64), max_size=8))
def test_random_bytes_after_connect_never_crash(
    version: ProtocolVersion, chunks: list[bytes]
) -> None:
    broker = Broker(BrokerConfig(max_packet_size=4096))
    watcher = connected(broker, version, "watcher")
    watcher.receive_data(  # type: ignore[attr-defined]
        encode(Subscribe(1, (Subscription("#", QoS.EXACTLY_ONCE),)), version), 0.0
    )
    conn = connected(broker, version, "fuzz")
    out = b""
    for number, chunk in enumerate(chunks):
        conn.receive_data(chunk, float(number))  # type: ignore[attr-defined]
        out += conn.data_to_send()  # type: ignore[attr-defined]
        broker.tick(float(number))
    replies = decode_all(version, out)
    if conn.closed and version is ProtocolVersion.V5 and replies:  # type: ignore[attr-defined]
        assert isinstance(replies[-1], Disconnect)
    decode_all(version, watcher.data_to_send())  # type: ignore[attr-defined]
    assert broker.statistics().internal_errors == 0


@SETTINGS
@given(data=st.binary(max_size=200))
def test_random_bytes_before_connect_never_crash(data: bytes) -> None:
    broker = Broker()
    conn = broker.new_connection(0.0)
    conn.receive_data(data, 0.0)
    conn.data_to_send()
    conn.connection_lost(1.0)
    assert broker.statistics().internal_errors == 0
    assert broker.statistics().connections == 0


@SETTINGS
@given(
    version=VERSIONS,
    sequence=st.data(),
)
def test_arbitrary_valid_packets_never_crash(
    version: ProtocolVersion, sequence: st.DataObject
) -> None:
    broker = Broker(BrokerConfig(max_queued_messages=5, max_output_bytes=2000))
    others = [connected(broker, version, name) for name in ("a", "b")]
    for other in others:
        other.receive_data(  # type: ignore[attr-defined]
            encode(Subscribe(1, (Subscription("#", QoS.EXACTLY_ONCE),)), version), 0.0
        )
    conn = connected(broker, version, "c")
    drawn = sequence.draw(st.lists(packets(version), max_size=12))
    for number, packet in enumerate(drawn):
        conn.receive_data(encode(packet, version), float(number))  # type: ignore[attr-defined]
        decode_all(version, conn.data_to_send())  # type: ignore[attr-defined]
        for other in others:
            decode_all(version, other.data_to_send())  # type: ignore[attr-defined]
        broker.tick(float(number))
    conn.connection_lost(100.0)  # type: ignore[attr-defined]
    broker.tick(1e6)
    assert broker.statistics().internal_errors == 0


@SETTINGS
@given(
    version=VERSIONS,
    steps=st.lists(
        st.tuples(st.integers(1, 4), st.sampled_from(["publish", "again", "release"])),
        max_size=30,
    ),
)
def test_qos2_delivers_each_released_message_exactly_once(
    version: ProtocolVersion, steps: list[tuple[int, str]]
) -> None:
    broker = Broker()
    sub = connected(broker, version, "sub")
    sub.receive_data(  # type: ignore[attr-defined]
        encode(Subscribe(1, (Subscription("q", QoS.EXACTLY_ONCE),)), version), 0.0
    )
    pub = connected(broker, version, "pub")
    open_ids: set[int] = set()
    sent = 0
    for pid, action in steps:
        if action == "release":
            pub.receive_data(encode(PubRel(pid), version), 0.0)  # type: ignore[attr-defined]
            open_ids.discard(pid)
            continue
        dup = action == "again"
        if dup and pid not in open_ids:
            continue
        pub.receive_data(  # type: ignore[attr-defined]
            encode(Publish("q", b"m", QoS.EXACTLY_ONCE, dup=dup, packet_id=pid), version), 0.0
        )
        if pid not in open_ids:
            open_ids.add(pid)
            sent += 1
    replies = decode_all(version, pub.data_to_send())  # type: ignore[attr-defined]
    assert all(isinstance(p, (PubRec, PubComp)) for p in replies)
    delivered = [
        p
        for p in decode_all(version, sub.data_to_send())
        if isinstance(p, Publish)  # type: ignore[attr-defined]
    ]
    assert len(delivered) == sent


@SETTINGS
@given(version=VERSIONS, publish=publishes(ProtocolVersion.V5), topic=topics)
def test_any_valid_publish_is_acknowledged_or_refused_cleanly(
    version: ProtocolVersion, publish: Publish, topic: str
) -> None:
    broker = Broker()
    conn = connected(broker, version, "p")
    if version is ProtocolVersion.V311:
        publish = Publish(
            publish.topic or topic,
            publish.payload,
            publish.qos,
            publish.retain,
            publish.dup,
            publish.packet_id,
            NO_PROPERTIES,
        )
    conn.receive_data(encode(publish, version), 0.0)  # type: ignore[attr-defined]
    replies = decode_all(version, conn.data_to_send())  # type: ignore[attr-defined]
    assert broker.statistics().internal_errors == 0
    if not conn.closed:  # type: ignore[attr-defined]
        assert len(replies) == (1 if publish.qos else 0)


LEVELS = st.sampled_from(["a", "b", "", "$x"])
FILTER_LEVELS = st.sampled_from(["a", "b", "", "+", "$x"])


@st.composite
def topic_filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(FILTER_LEVELS, min_size=1, max_size=3))
    if draw(st.booleans()):
        levels.append("#")
    text = "/".join(levels)
    if draw(st.booleans()):
        text = f"$share/{draw(st.sampled_from(['g1', 'g2']))}/{text}"
    return text


class _Owner:
    def __init__(self, name: str, online: bool) -> None:
        self.name = name
        self.online = online


@SETTINGS
@given(
    entries=st.lists(st.tuples(topic_filters(), st.integers(0, 3), st.booleans()), max_size=12),
    topic_levels=st.lists(LEVELS, min_size=1, max_size=4),
)
def test_router_matches_every_filter_and_one_member_per_shared_group(
    entries: list[tuple[str, int, bool]], topic_levels: list[str]
) -> None:
    from trio_mqtt._core._router import Route, Router
    from trio_mqtt._core._topics import matches, parse_shared, valid_filter

    topic = "/".join(topic_levels)
    router: Router[_Owner] = Router()
    owners = {n: _Owner(f"s{n}", online) for _, n, online in entries}
    routes = []
    seen: set[tuple[str, int]] = set()
    for topic_filter, number, _ in entries:
        if (topic_filter, number) in seen or not valid_filter(topic_filter):
            continue
        seen.add((topic_filter, number))
        route = Route(owners[number], topic_filter, Subscription(topic_filter))
        router.add(route)
        routes.append(route)
    got = router.route(topic)
    plain = [
        r for r in routes if parse_shared(r.topic_filter) is None and matches(topic, r.topic_filter)
    ]
    assert [r for r in got if r.group is None] == plain
    groups: dict[tuple[str, str], list[Route[_Owner]]] = {}
    for r in routes:
        shared = parse_shared(r.topic_filter)
        if shared is not None and matches(topic, shared[1]):
            groups.setdefault(shared, []).append(r)
    picked = [r for r in got if r.group is not None]
    assert len(picked) == len(groups)
    for members in groups.values():
        (chosen,) = [r for r in picked if r in members]
        if any(m.session.online for m in members):
            assert chosen.session.online
    for route in routes:
        router.remove(route)
    assert router.route(topic) == []
    assert router.subscription_count == 0


@SETTINGS
@given(
    maximum=st.integers(1, 4),
    sends=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c/d", "e", "$x", "f/g/h"]), st.booleans()),
        max_size=40,
    ),
)
def test_outgoing_topic_aliases_always_resolve_to_the_published_topic(
    maximum: int, sends: list[tuple[str, bool]]
) -> None:
    """A client that keeps the alias table as MQTT 5 says (a name with an alias sets it, an
    empty name uses it) reads back every topic it was sent, whatever the order of topics and
    whichever messages are dropped as too large for it; no alias exceeds its maximum."""
    v5 = ProtocolVersion.V5
    broker = Broker(BrokerConfig())
    conn = broker.new_connection(0.0)
    limits = Properties(topic_alias_maximum=maximum, maximum_packet_size=100)
    conn.receive_data(encode(Connect("alias", v5, properties=limits), v5), 0.0)
    conn.receive_data(encode(Subscribe(1, (Subscription("#"), Subscription("$x"))), v5), 0.0)
    decoder = PacketDecoder(v5)
    decoder.decode(conn.data_to_send())  # CONNACK, SUBACK
    table: dict[int, str] = {}
    received: list[str] = []
    for topic, too_large in sends:
        broker.publish(topic, b"x" * (200 if too_large else 4), now=0.0)
        for packet in decoder.decode(conn.data_to_send()):
            assert isinstance(packet, Publish)
            alias = packet.properties.topic_alias
            assert alias is not None
            assert 1 <= alias <= maximum
            if packet.topic:
                table[alias] = packet.topic
            received.append(packet.topic or table[alias])
    assert received == [topic for topic, too_large in sends if not too_large]
