"""Hypothesis properties of the codec: round trips, chunking, fuzzing, size limits."""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from trio_mqtt._core._codec import PacketDecoder, decode_packet, encode, encoded_size
from trio_mqtt._core._codec_v5 import REASON_CODES
from trio_mqtt._core._errors import MalformedPacketError
from trio_mqtt._core._packets import (
    NO_PROPERTIES,
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PacketType,
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
from trio_mqtt._core._primitives import VBI_MAX, pack_vbi
from trio_mqtt._core._properties import PROPERTY_TABLE, WILL, WireType
from trio_mqtt._core._reason_codes import ReasonCode

V4 = ProtocolVersion.V311
V5 = ProtocolVersion.V5
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ----------------------------------------------------------------------------- strategies

# Valid MQTT strings: no surrogates (they cannot be encoded) and no U+0000.
text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12)
topics = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00+#"),
    min_size=1,
    max_size=12,
)
filters = text.filter(bool).filter(lambda f: not f.startswith("$share/"))
binary = st.binary(max_size=24)
packet_ids = st.integers(1, 65_535)
qos_values = st.sampled_from(list(QoS))


def _property_value(info: Any, ptype: int) -> st.SearchStrategy[Any]:
    wire = info.wire_type
    if info.name == "subscription_identifiers":
        ints = st.integers(1, VBI_MAX)
        if ptype == PacketType.PUBLISH:
            return st.lists(ints, min_size=1, max_size=3).map(tuple)
        return ints.map(lambda value: (value,))
    if info.name == "response_topic":
        return topics  # a topic name (MQTT-3.3.2-14)
    if info.name == "user_properties":
        return st.lists(st.tuples(text, text), min_size=1, max_size=3).map(tuple)
    if wire == WireType.STRING:
        return text
    if wire == WireType.BINARY:
        return binary
    return st.integers(info.minimum, info.maximum)


def _make_properties(values: dict[str, Any]) -> Properties:
    return Properties(**values) if values else NO_PROPERTIES


_PROPERTY_STRATEGIES: dict[int, st.SearchStrategy[Properties]] = {}


def properties(ptype: int) -> st.SearchStrategy[Properties]:
    """Properties allowed in ``ptype`` (or the will), each present or not."""
    if ptype not in _PROPERTY_STRATEGIES:
        optional = {
            info.name: _property_value(info, ptype)
            for info in PROPERTY_TABLE
            if info.allowed & (1 << ptype)
        }
        _PROPERTY_STRATEGIES[ptype] = st.fixed_dictionaries({}, optional=optional).map(
            _make_properties
        )
    return _PROPERTY_STRATEGIES[ptype]


def codes(ptype: PacketType) -> st.SearchStrategy[int]:
    return st.sampled_from(sorted(REASON_CODES[ptype]))


@st.composite
def publishes(draw: st.DrawFn, version: ProtocolVersion) -> Publish:
    qos = draw(qos_values)
    props = draw(properties(PacketType.PUBLISH)) if version == V5 else NO_PROPERTIES
    topic = draw(topics)
    if props.topic_alias is not None and draw(st.booleans()):
        topic = ""
    return Publish(
        topic,
        draw(st.binary(max_size=300)),
        qos,
        draw(st.booleans()),
        draw(st.booleans()) if qos else False,
        draw(packet_ids) if qos else 0,
        props,
    )


@st.composite
def connects(draw: st.DrawFn, version: ProtocolVersion) -> Connect:
    v5 = version == V5
    will = None
    if draw(st.booleans()):
        will = Will(
            draw(topics),
            draw(binary),
            draw(qos_values),
            draw(st.booleans()),
            draw(properties(WILL)) if v5 else NO_PROPERTIES,
        )
    username = draw(st.none() | text)
    password = draw(st.none() | binary)
    if not v5 and username is None:
        password = None  # MQTT-3.1.2-22
    props = draw(properties(PacketType.CONNECT)) if v5 else NO_PROPERTIES
    if props.authentication_data is not None and props.authentication_method is None:
        props = replace(props, authentication_method="method")  # section 3.1.2.11.10
    return Connect(
        draw(text),
        version,
        draw(st.integers(0, 65_535)),
        draw(st.booleans()),
        username,
        password,
        will,
        props,
    )


@st.composite
def subscriptions(draw: st.DrawFn, version: ProtocolVersion) -> Subscription:
    if version == V4:
        return Subscription(draw(filters), draw(qos_values))
    return Subscription(
        draw(filters),
        draw(qos_values),
        draw(st.booleans()),
        draw(st.booleans()),
        draw(st.sampled_from(list(RetainHandling))),
    )


def packets(version: ProtocolVersion) -> st.SearchStrategy[Packet]:
    """Every packet type valid for ``version``."""
    return st.one_of(packet_strategies(version))


def packet_strategies(version: ProtocolVersion) -> list[st.SearchStrategy[Packet]]:
    """One strategy per packet type valid for ``version`` (AUTH only in MQTT 5)."""
    v5 = version == V5

    def props(ptype: PacketType) -> st.SearchStrategy[Properties]:
        return properties(ptype) if v5 else st.just(NO_PROPERTIES)

    def ack(cls: Any, ptype: PacketType) -> st.SearchStrategy[Packet]:
        code = codes(ptype) if v5 else st.just(0)
        return st.builds(cls, packet_ids, code, props(ptype))

    connack_v4 = st.one_of(
        st.builds(ConnAck, st.booleans(), st.just(0)),
        st.builds(ConnAck, st.just(False), st.integers(1, 5)),
    )
    connack_v5 = st.one_of(
        st.builds(ConnAck, st.booleans(), st.just(0), props(PacketType.CONNACK)),
        st.builds(
            ConnAck,
            st.just(False),
            codes(PacketType.CONNACK),
            props(PacketType.CONNACK),
        ),
    )
    suback_codes = codes(PacketType.SUBACK) if v5 else st.sampled_from([0, 1, 2, 0x80])
    strategies: list[st.SearchStrategy[Packet]] = [
        connects(version),
        connack_v5 if v5 else connack_v4,
        publishes(version),
        ack(PubAck, PacketType.PUBACK),
        ack(PubRec, PacketType.PUBREC),
        ack(PubRel, PacketType.PUBREL),
        ack(PubComp, PacketType.PUBCOMP),
        st.builds(
            Subscribe,
            packet_ids,
            st.lists(subscriptions(version), min_size=1, max_size=4).map(tuple),
            props(PacketType.SUBSCRIBE),
        ),
        st.builds(
            SubAck,
            packet_ids,
            st.lists(suback_codes, min_size=1, max_size=4).map(tuple),
            props(PacketType.SUBACK),
        ),
        st.builds(
            Unsubscribe,
            packet_ids,
            st.lists(filters, min_size=1, max_size=4).map(tuple),
            props(PacketType.UNSUBSCRIBE),
        ),
        st.builds(
            UnsubAck,
            packet_ids,
            st.lists(codes(PacketType.UNSUBACK), min_size=1, max_size=4).map(tuple)
            if v5
            else st.just(()),
            props(PacketType.UNSUBACK),
        ),
        st.just(PingReq()),
        st.just(PingResp()),
        st.builds(Disconnect, codes(PacketType.DISCONNECT), props(PacketType.DISCONNECT))
        if v5
        else st.just(Disconnect()),
    ]
    if v5:
        strategies.append(st.builds(Auth, codes(PacketType.AUTH), props(PacketType.AUTH)))
    return strategies


versions = st.sampled_from([V4, V5])


@st.composite
def versioned_packets(draw: st.DrawFn) -> tuple[ProtocolVersion, Packet]:
    version = draw(versions)
    return version, draw(packets(version))


@st.composite
def streams(draw: st.DrawFn) -> tuple[ProtocolVersion, list[Packet], bytes, list[int]]:
    """A version, packets (no CONNECT, whose level may differ), their bytes and cut points."""
    version = draw(versions)
    items = draw(
        st.lists(
            packets(version).filter(lambda p: not isinstance(p, Connect)), min_size=1, max_size=5
        )
    )
    data = b"".join(encode(p, version) for p in items)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    return version, items, data, cuts


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


# ------------------------------------------------------------------------------ properties


TYPE_CASES = [
    (version, index) for version in (V4, V5) for index in range(len(packet_strategies(version)))
]


@pytest.mark.parametrize(
    ("version", "index"),
    TYPE_CASES,
    ids=[f"v{int(v)}-{PacketType(i + 1).name}" for v, i in TYPE_CASES],
)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip(version: ProtocolVersion, index: int, data: st.DataObject) -> None:
    """Every packet type, both versions: decode(encode(p)) == p and the size is exact."""
    packet = data.draw(packet_strategies(version)[index])
    assert type(packet).__name__.upper() == PacketType(index + 1).name.replace("_", "")
    wire = encode(packet, version)
    assert encoded_size(packet, version) == len(wire)
    assert decode_packet(wire, version) == packet
    assert PacketDecoder(version).decode(wire) == [packet]


@settings(max_examples=60, deadline=None)
@given(streams(), st.booleans())
def test_chunking_does_not_matter(
    case: tuple[ProtocolVersion, list[Packet], bytes, list[int]], use_next_packet: bool
) -> None:
    version, items, data, cuts = case
    decoder = PacketDecoder(version)
    out: list[Packet] = []
    for chunk in _chunks(data, cuts):
        if use_next_packet:
            decoder.feed(memoryview(chunk))
            while (packet := decoder.next_packet()) is not None:
                out.append(packet)
        else:
            out.extend(decoder.decode(bytearray(chunk)))
    assert out == items
    assert decoder.buffered == 0


@settings(max_examples=50, deadline=None)
@given(versioned_packets())
def test_byte_at_a_time(case: tuple[ProtocolVersion, Packet]) -> None:
    version, packet = case
    data = encode(packet, version)
    decoder = PacketDecoder(version)
    out: list[Packet] = []
    for index in range(len(data)):
        out.extend(decoder.decode(data[index : index + 1]))
        assert decoder.buffered == (0 if out else index + 1)
    assert out == [packet]


def _feed_all(version: ProtocolVersion, chunks: list[bytes]) -> None:
    decoder = PacketDecoder(version, max_packet_size=4096)
    try:
        for chunk in chunks:
            decoder.decode(chunk)
    except MalformedPacketError:
        pass


@settings(max_examples=300, deadline=None)
@given(versions, st.lists(st.binary(max_size=40), max_size=6))
def test_arbitrary_bytes_never_raise_anything_else(
    version: ProtocolVersion, chunks: list[bytes]
) -> None:
    _feed_all(version, chunks)
    with contextlib.suppress(MalformedPacketError):
        decode_packet(b"".join(chunks), version)


@settings(max_examples=100, deadline=None)
@given(
    versioned_packets(),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=3),
    st.integers(0, 10_000),
)
def test_mutated_packets_never_raise_anything_else(
    case: tuple[ProtocolVersion, Packet], edits: list[tuple[int, int]], cut: int
) -> None:
    """Valid packets with a few bytes changed reach deep into every decoder."""
    version, packet = case
    data = bytearray(encode(packet, version))
    for where, value in edits:
        data[where % len(data)] = value
    truncated = bytes(data[: max(2, cut % (len(data) + 1))])
    for candidate in (bytes(data), truncated):
        with contextlib.suppress(MalformedPacketError):
            decode_packet(candidate, version)
        _feed_all(version, [candidate[:3], candidate[3:]])


@SETTINGS
@given(versions, st.integers(0, 15), st.integers(1, VBI_MAX), st.integers(2, 100_000))
def test_oversize_refused_from_the_header(
    version: ProtocolVersion, flags_and_type: int, remaining: int, limit: int
) -> None:
    """A fixed header announcing too much is refused before the body arrives."""
    header = bytes((0x30 | (flags_and_type & 1),)) + pack_vbi(remaining)
    decoder = PacketDecoder(version, max_packet_size=limit)
    too_large = len(header) + remaining > limit
    if too_large:
        with pytest.raises(MalformedPacketError) as info:
            decoder.decode(header)
        assert info.value.reason_code == ReasonCode.PACKET_TOO_LARGE
    else:
        assert decoder.decode(header) == []
    assert decoder.buffered <= len(header)
