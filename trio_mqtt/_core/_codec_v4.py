"""MQTT 3.1.1 packet bodies: encoders and decoders.

Theory of operation: :mod:`._codec` splits the byte stream into packets and checks the fixed
header flags; this module turns one packet into a model object and back. Each decoder has the
signature ``decode(buf, flags, pos)``, where ``buf`` is the whole packet as bytes and ``pos``
the offset just after the fixed header; the decoders are listed in :data:`DECODERS`, indexed by
packet type. Encoders take the packet and return its complete bytes; :data:`ENCODERS` maps the
model class to its encoder.

Properties and other MQTT 5 fields are ignored on encoding unless dropping them would change the
meaning (a failing reason code on an ack, a DISCONNECT reason, MQTT 5 subscription options, the
AUTH packet); then :class:`LocalProtocolError` is raised.

PUBLISH is the hot path, so its encoder and decoder are written out long-hand, and received
packets are built without the frozen dataclass ``__init__`` (see
:func:`._primitives.fast_builder`), which is four times faster.
"""

from __future__ import annotations

from collections.abc import Callable
from struct import Struct, error as struct_error
from typing import Any, NoReturn, TypeVar

from ._errors import InvalidTopicError, LocalProtocolError
from ._packets import (
    NO_PROPERTIES,
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PacketType,
    PingReq,
    PingResp,
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
    UnsubAck,
    Unsubscribe,
    Will,
)
from ._primitives import (
    ACK_FIELDS,
    BYTES1,
    PUBLISH_FIELDS,
    U16,
    Buf,
    fail,
    fast_builder,
    fixed_header,
    pack_binary,
    pack_str,
    read_binary,
    read_str,
    read_u16,
    utf8,
    vbi_size,
)
from ._reason_codes import ReasonCode

__all__ = [
    "DECODERS",
    "ENCODERS",
    "EXPECTED_FLAGS",
    "QOS_VALUES",
    "SIZES",
    "decode_connect_body",
    "publish_size",
]

_T = TypeVar("_T")
_pack_u16 = U16.pack
_HEAD_TOPIC = Struct("!BBH").pack  # first byte, one byte remaining length, topic length
_HEAD2_TOPIC = Struct("!BBBH").pack  # first byte, two byte remaining length, topic length
_ACK = Struct("!BBH").pack  # first byte, remaining length 2, packet id

#: QoS members by wire value (indexing a tuple is much cheaper than calling the enum).
QOS_VALUES: tuple[QoS, ...] = (QoS.AT_MOST_ONCE, QoS.AT_LEAST_ONCE, QoS.EXACTLY_ONCE)

#: Fixed header flags each packet type must carry (MQTT-2.1.3-1); -1 = PUBLISH, checked later.
#: -2 = no such packet type in MQTT 3.1.1 (0 is reserved, 15 is AUTH, which MQTT 5 added).
EXPECTED_FLAGS: tuple[int, ...] = (-2, 0, 0, -1, 0, 0, 2, 0, 2, 0, 2, 0, 0, 0, 0, -2)


#: Positional constructors for decoded PUBLISH and acks (see :func:`fast_builder`).
new_publish = fast_builder(Publish, PUBLISH_FIELDS)
new_puback = fast_builder(PubAck, ACK_FIELDS)
new_pubrec = fast_builder(PubRec, ACK_FIELDS)
new_pubrel = fast_builder(PubRel, ACK_FIELDS)
new_pubcomp = fast_builder(PubComp, ACK_FIELDS)
#: Ack constructor per packet type.
ACK_BUILDERS: dict[int, Callable[[int, int, Any], Packet]] = {
    PacketType.PUBACK: new_puback,
    PacketType.PUBREC: new_pubrec,
    PacketType.PUBREL: new_pubrel,
    PacketType.PUBCOMP: new_pubcomp,
}

# ------------------------------------------------------------------------- shared checks


def check_packet_id(packet_id: int, kind: str) -> bytes:
    """Encode a packet identifier that must be non-zero (MQTT-2.3.1-1)."""
    if not (isinstance(packet_id, int) and 0 < packet_id <= 0xFFFF):
        raise LocalProtocolError(f"{kind} packet_id must be in 1..65535, got {packet_id!r}")
    return _pack_u16(packet_id)


def topic_bytes(topic: str, field: str = "topic", allow_empty: bool = False) -> bytes:
    """Encode a topic name, refusing wildcards (MQTT-3.3.2-2) and empty names (MQTT-4.7.3-1)."""
    try:
        raw = topic.encode()
    except (UnicodeEncodeError, AttributeError):
        raise InvalidTopicError(f"{field} must be a str without surrogates: {topic!r}") from None
    if "+" in topic or "#" in topic:
        raise InvalidTopicError(f"{field} must not contain wildcards: {topic!r}")
    if "\x00" in topic:
        raise InvalidTopicError(f"{field} must not contain U+0000: {topic!r}")
    if not raw and not allow_empty:
        raise InvalidTopicError(f"{field} must not be empty")
    if len(raw) > 0xFFFF:
        raise InvalidTopicError(f"{field} is longer than 65535 bytes")
    return raw


def filter_bytes(topic_filter: str) -> bytes:
    """Encode a topic filter (non-empty, MQTT-4.7.3-1); its syntax is checked elsewhere."""
    if isinstance(topic_filter, str) and not topic_filter:
        raise InvalidTopicError("a topic filter must not be empty")
    try:
        return _pack_u16(len(raw := utf8(topic_filter, "topic filter"))) + raw
    except LocalProtocolError as exc:
        raise InvalidTopicError(str(exc)) from None


def publish_first_byte(packet: Publish) -> int:
    """The PUBLISH type-and-flags byte, checking QoS, packet id and DUP (MQTT-3.3.1-2)."""
    qos = packet.qos
    if qos == 0:
        if packet.dup:
            raise LocalProtocolError("DUP must be 0 for a QoS 0 PUBLISH (MQTT-3.3.1-2)")
        if packet.packet_id:
            raise LocalProtocolError("a QoS 0 PUBLISH has no packet_id (it must be 0)")
        return 0x31 if packet.retain else 0x30
    if qos != 1 and qos != 2:
        raise LocalProtocolError(f"PUBLISH qos must be 0, 1 or 2, got {qos!r}")
    pid = packet.packet_id
    if not (isinstance(pid, int) and 0 < pid <= 0xFFFF):
        raise LocalProtocolError(f"PUBLISH packet_id must be in 1..65535, got {pid!r}")
    return 0x30 | (qos << 1) | (1 if packet.retain else 0) | (8 if packet.dup else 0)


def check_publish_topic(topic: str, pos: int, allow_empty: bool) -> None:
    """Check a received topic name (MQTT-3.3.2-2, MQTT-1.5.4-2, MQTT-4.7.3-1)."""
    if "+" in topic or "#" in topic:
        raise fail(
            "PUBLISH topic contains a wildcard (MQTT-3.3.2-2)",
            "topic",
            pos,
            ReasonCode.TOPIC_NAME_INVALID,
        )
    if "\x00" in topic:
        raise fail("string contains U+0000", "topic", pos)
    if not topic and not allow_empty:
        raise fail("PUBLISH topic is empty (MQTT-4.7.3-1)", "topic", pos)


def expect_end(buf: Buf, pos: int, kind: str) -> None:
    """Refuse bytes left over after the last field of a packet."""
    if pos != len(buf):
        raise fail(
            f"{len(buf) - pos} unexpected trailing byte(s) in {kind}", "remaining length", pos
        )


def read_packet_id(buf: Buf, pos: int) -> tuple[int, int]:
    """Read a packet identifier that must not be zero (MQTT-2.3.1-1)."""
    if pos + 2 > len(buf):
        raise fail("packet ends inside the packet identifier", "packet_id", pos)
    pid = (buf[pos] << 8) | buf[pos + 1]
    if not pid:
        raise fail("packet identifier is 0 (MQTT-2.3.1-1)", "packet_id", pos)
    return pid, pos + 2


# ------------------------------------------------------------------------------- PUBLISH


def encode_publish(packet: Publish, prop_bytes: bytes = b"", allow_empty: bool = False) -> bytes:
    """Encode PUBLISH (MQTT 3.1.1, section 3.3). Properties are ignored.

    The MQTT 5 encoder calls this too, with the encoded property section and whether an empty
    topic is allowed (it is when a Topic Alias is present). The common case runs with a minimum
    of checks; anything unusual goes to :func:`_publish_error`, which finds the precise problem.
    """
    topic = packet.topic
    qos = packet.qos
    try:
        raw = topic.encode()
        if qos == 0:
            if packet.dup or packet.packet_id:
                _publish_error(packet, allow_empty)
            first = 0x31 if packet.retain else 0x30
            pid = b""
        elif (qos == 1 or qos == 2) and packet.packet_id:
            first = 0x30 | (qos << 1) | (1 if packet.retain else 0) | (8 if packet.dup else 0)
            pid = _pack_u16(packet.packet_id)
        else:
            _publish_error(packet, allow_empty)
        if "+" in topic or "#" in topic or "\x00" in topic or not raw:
            topic_bytes(topic, allow_empty=allow_empty)
        payload = packet.payload
        tlen = len(raw)
        remaining = 2 + tlen + len(pid) + len(prop_bytes) + len(payload)
        if remaining < 128:
            head = _HEAD_TOPIC(first, remaining, tlen)
        elif remaining < 16_384:
            head = _HEAD2_TOPIC(first, (remaining & 0x7F) | 0x80, remaining >> 7, tlen)
        else:
            head = fixed_header(first, remaining) + _pack_u16(tlen)
        return b"".join((head, raw, pid, prop_bytes, payload))
    except (UnicodeEncodeError, AttributeError, TypeError, struct_error):
        _publish_error(packet, allow_empty)
        raise  # pragma: no cover - _publish_error always raises here


def _publish_error(packet: Publish, allow_empty: bool) -> NoReturn:
    """Raise the precise LocalProtocolError for a PUBLISH the fast path refused."""
    publish_first_byte(packet)
    raw = topic_bytes(packet.topic, allow_empty=allow_empty)
    payload = packet.payload
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise LocalProtocolError(f"PUBLISH payload must be bytes, got {type(payload).__name__}")
    if len(raw) > 0xFFFF:  # pragma: no cover - topic_bytes checks this
        raise InvalidTopicError("topic is longer than 65535 bytes")
    raise LocalProtocolError(f"cannot encode {packet!r}")


def publish_size(packet: Publish, properties_size: int = 0) -> int:
    """Encoded size of a PUBLISH, ``properties_size`` being the v5 property section's size."""
    topic = packet.topic
    tlen = len(topic) if topic.isascii() else len(topic.encode("utf-8", "surrogatepass"))
    remaining = 2 + tlen + (2 if packet.qos else 0) + properties_size + len(packet.payload)
    return 1 + vbi_size(remaining) + remaining


def read_publish_head(buf: Buf, flags: int, pos: int, v5: bool) -> tuple[int, str, int, int]:
    """Read what both versions' PUBLISH share: flags, topic and packet id.

    Returns ``(qos, topic, packet_id, offset after the packet id)``. An empty topic is allowed
    in MQTT 5 only (a topic alias stands in for it; the caller checks that).
    """
    qos = (flags >> 1) & 3
    if qos == 3:
        raise fail("PUBLISH QoS is 3 (MQTT-3.3.1-4)", "qos", 0)
    if flags & 8 and not qos:
        raise fail("DUP set on a QoS 0 PUBLISH (MQTT-3.3.1-2)", "dup", 0)
    end = len(buf)
    if pos + 2 > end:
        raise fail("packet ends inside the topic length", "topic", pos)
    stop = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
    if stop > end:
        raise fail("topic runs past the end of the packet", "topic", pos)
    try:
        topic = buf[pos + 2 : stop].decode()
    except UnicodeDecodeError as exc:
        raise fail(f"topic is not valid UTF-8 ({exc.reason})", "topic", pos + 2) from None
    if "+" in topic or "#" in topic or "\x00" in topic or not (topic or v5):
        check_publish_topic(topic, pos, v5)
    if qos:
        if stop + 2 > end:
            raise fail("packet ends inside the packet identifier", "packet_id", stop)
        pid = (buf[stop] << 8) | buf[stop + 1]
        if not pid:
            raise fail("packet identifier is 0 (MQTT-2.3.1-1)", "packet_id", stop)
        return qos, topic, pid, stop + 2
    return qos, topic, 0, stop


def decode_publish(buf: Buf, flags: int, pos: int) -> Publish:
    """Decode PUBLISH (MQTT 3.1.1)."""
    qos, topic, pid, stop = read_publish_head(buf, flags, pos, False)
    return new_publish(
        topic,
        buf[stop:],
        QOS_VALUES[qos],
        (flags & 1) != 0,
        (flags & 8) != 0,
        pid,
        NO_PROPERTIES,
    )


# ------------------------------------------------------------------------------ acks


def _ack_encoder(first: int, kind: str) -> Callable[[Any], bytes]:
    def encode_ack(packet: PubAck | PubRec | PubRel | PubComp) -> bytes:
        pid = packet.packet_id
        if not (isinstance(pid, int) and 0 < pid <= 0xFFFF):
            raise LocalProtocolError(f"{kind} packet_id must be in 1..65535, got {pid!r}")
        if packet.reason_code >= 0x80:
            raise LocalProtocolError(
                f"MQTT 3.1.1 cannot express the failing {kind} reason code "
                f"0x{packet.reason_code:02x}"
            )
        return _ACK(first, 2, pid)

    encode_ack.__name__ = f"encode_{kind.lower()}"
    encode_ack.__doc__ = f"Encode {kind} (MQTT 3.1.1): fixed header and packet id."
    return encode_ack


def _ack_decoder(ptype: PacketType) -> Callable[[Buf, int, int], Packet]:
    build = ACK_BUILDERS[ptype]
    kind = ptype.name

    def decode_ack(buf: Buf, flags: int, pos: int) -> Packet:
        if len(buf) - pos != 2:
            raise fail(f"{kind} remaining length must be 2", "remaining length", 1)
        pid = (buf[pos] << 8) | buf[pos + 1]
        if not pid:
            raise fail("packet identifier is 0 (MQTT-2.3.1-1)", "packet_id", pos)
        return build(pid, 0, NO_PROPERTIES)

    decode_ack.__name__ = f"decode_{kind.lower()}"
    decode_ack.__doc__ = f"Decode {kind} (MQTT 3.1.1)."
    return decode_ack


# --------------------------------------------------------------------------- CONNECT


def encode_will_flags(will: Will | None) -> int:
    """Connect flags for the will: will flag, QoS and retain (MQTT-3.1.2-9 .. -15)."""
    if will is None:
        return 0
    if will.qos not in (0, 1, 2):
        raise LocalProtocolError(f"will qos must be 0, 1 or 2, got {will.qos!r}")
    return 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)


def encode_connect(packet: Connect) -> bytes:
    """Encode CONNECT (MQTT 3.1.1, section 3.1). Properties are ignored."""
    if packet.protocol_version != ProtocolVersion.V311:
        raise LocalProtocolError("CONNECT protocol_version does not match the codec version")
    if packet.password is not None and packet.username is None:
        raise LocalProtocolError("MQTT 3.1.1 needs a username to send a password (MQTT-3.1.2-22)")
    flags = encode_will_flags(packet.will) | (0x02 if packet.clean_start else 0)
    parts = [b"\x00\x04MQTT\x04", b"", _keep_alive(packet.keep_alive)]
    parts.append(pack_str(packet.client_id, "client_id"))
    if packet.will is not None:
        parts.append(_pack_topic(packet.will.topic, "will topic"))
        parts.append(pack_binary(packet.will.payload, "will payload"))
    if packet.username is not None:
        flags |= 0x80
        parts.append(pack_str(packet.username, "username"))
    if packet.password is not None:
        flags |= 0x40
        parts.append(pack_binary(packet.password, "password"))
    parts[1] = BYTES1[flags]
    body = b"".join(parts)
    return fixed_header(0x10, len(body)) + body


def _keep_alive(value: int) -> bytes:
    if not (isinstance(value, int) and 0 <= value <= 0xFFFF):
        raise LocalProtocolError(f"keep_alive must be in 0..65535, got {value!r}")
    return _pack_u16(value)


def _pack_topic(topic: str, field: str) -> bytes:
    raw = topic_bytes(topic, field)
    return _pack_u16(len(raw)) + raw


def read_connect_flags(buf: Buf, pos: int, version: int) -> int:
    """Read and check the CONNECT flags byte (MQTT-3.1.2-3, -11, -13, -14, -15, -22)."""
    if pos >= len(buf):
        raise fail("packet ends before the connect flags", "connect flags", pos)
    flags: int = buf[pos]
    if flags & 0x01:
        raise fail("reserved connect flag is set (MQTT-3.1.2-3)", "connect flags", pos)
    if flags & 0x04:
        if flags & 0x18 == 0x18:
            raise fail("will QoS is 3 (MQTT-3.1.2-14)", "connect flags", pos)
    elif flags & 0x38:
        raise fail(
            "will QoS or retain set without a will (MQTT-3.1.2-11, -13, -15)",
            "connect flags",
            pos,
        )
    if version == 4 and flags & 0x40 and not flags & 0x80:
        raise fail("password flag set without username (MQTT-3.1.2-22)", "connect flags", pos)
    return flags


def read_will_topic(buf: Buf, pos: int) -> tuple[str, int]:
    """Read the will topic, which is a topic name (no wildcards, not empty)."""
    topic, end = read_str(buf, pos, len(buf), "will topic")
    if not topic or "+" in topic or "#" in topic:
        raise fail("will topic is not a valid topic name", "will topic", pos)
    return topic, end


def decode_connect_body(buf: Buf, pos: int) -> Connect:
    """Decode CONNECT (MQTT 3.1.1) from the connect flags on; ``pos`` is their offset."""
    end = len(buf)
    flags = read_connect_flags(buf, pos, 4)
    keep_alive, pos = read_u16(buf, pos + 1, end, "keep_alive")
    client_id, pos = read_str(buf, pos, end, "client_id")
    will = None
    if flags & 0x04:
        will_topic, pos = read_will_topic(buf, pos)
        will_payload, pos = read_binary(buf, pos, end, "will payload")
        will = Will(will_topic, will_payload, QOS_VALUES[(flags >> 3) & 3], bool(flags & 0x20))
    username = password = None
    if flags & 0x80:
        username, pos = read_str(buf, pos, end, "username")
    if flags & 0x40:
        password, pos = read_binary(buf, pos, end, "password")
    expect_end(buf, pos, "CONNECT")
    return Connect(
        client_id,
        ProtocolVersion.V311,
        keep_alive,
        bool(flags & 0x02),
        username,
        password,
        will,
    )


# --------------------------------------------------------------------------- CONNACK


def encode_connack(packet: ConnAck) -> bytes:
    """Encode CONNACK (MQTT 3.1.1): the return code must be 0..5 (section 3.2.2.3)."""
    code = packet.reason_code
    if not (isinstance(code, int) and 0 <= code <= 5):
        raise LocalProtocolError(f"MQTT 3.1.1 CONNACK return code must be 0..5, got {code!r}")
    if code and packet.session_present:
        raise LocalProtocolError("session_present must be 0 when refusing (MQTT-3.2.2-4)")
    return bytes((0x20, 2, 1 if packet.session_present else 0, code))


def decode_connack(buf: Buf, flags: int, pos: int) -> ConnAck:
    """Decode CONNACK (MQTT 3.1.1)."""
    if len(buf) - pos != 2:
        raise fail("CONNACK remaining length must be 2", "remaining length", 1)
    ack_flags = buf[pos]
    code = buf[pos + 1]
    if ack_flags & 0xFE:
        raise fail("reserved CONNACK flag bits are set", "session_present", pos)
    if code > 5:
        raise fail(f"unknown CONNACK return code {code}", "reason_code", pos + 1)
    if code and ack_flags:
        raise fail("session present on a refused connection (MQTT-3.2.2-4)", "session_present", pos)
    return ConnAck(bool(ack_flags), code)


# ------------------------------------------------------------------ SUBSCRIBE and co.


def encode_subscribe(packet: Subscribe) -> bytes:
    """Encode SUBSCRIBE (MQTT 3.1.1); MQTT 5 subscription options cannot be expressed."""
    parts = [check_packet_id(packet.packet_id, "SUBSCRIBE")]
    if not packet.subscriptions:
        raise LocalProtocolError("SUBSCRIBE needs at least one topic filter (MQTT-3.8.3-3)")
    for sub in packet.subscriptions:
        if sub.no_local or sub.retain_as_published or sub.retain_handling:
            raise LocalProtocolError("MQTT 3.1.1 has no no_local/retain_* subscription options")
        if sub.qos not in (0, 1, 2):
            raise LocalProtocolError(f"subscription qos must be 0, 1 or 2, got {sub.qos!r}")
        parts.append(filter_bytes(sub.topic_filter))
        parts.append(BYTES1[sub.qos])
    body = b"".join(parts)
    return fixed_header(0x82, len(body)) + body


def read_filter(buf: Buf, pos: int) -> tuple[str, int]:
    """Read a topic filter, which must not be empty (MQTT-4.7.3-1)."""
    topic_filter, end = read_str(buf, pos, len(buf), "topic filter")
    if not topic_filter:
        raise fail("empty topic filter (MQTT-4.7.3-1)", "topic filter", pos)
    return topic_filter, end


def decode_subscribe(buf: Buf, flags: int, pos: int) -> Subscribe:
    """Decode SUBSCRIBE (MQTT 3.1.1)."""
    pid, pos = read_packet_id(buf, pos)
    end = len(buf)
    subs = []
    while pos < end:
        topic_filter, pos = read_filter(buf, pos)
        if pos >= end:
            raise fail("packet ends before the requested QoS", "subscription options", pos)
        options = buf[pos]
        if options & 0xFC or options == 3:
            raise fail(
                "reserved bits set or QoS 3 in requested QoS (MQTT-3.8.3-4)",
                "subscription options",
                pos,
            )
        subs.append(Subscription(topic_filter, QOS_VALUES[options]))
        pos += 1
    if not subs:
        raise fail(
            "SUBSCRIBE without topic filters (MQTT-3.8.3-3)",
            "subscriptions",
            pos,
            ReasonCode.PROTOCOL_ERROR,
        )
    return Subscribe(pid, tuple(subs))


def encode_suback(packet: SubAck) -> bytes:
    """Encode SUBACK (MQTT 3.1.1). MQTT 5 failure codes (0x80 and above) become 0x80."""
    parts = [check_packet_id(packet.packet_id, "SUBACK")]
    if not packet.reason_codes:
        raise LocalProtocolError("SUBACK needs one return code per topic filter")
    for code in packet.reason_codes:
        if code >= 0x80:
            code = 0x80
        elif code not in (0, 1, 2):
            raise LocalProtocolError(f"MQTT 3.1.1 SUBACK return code {code!r} is not allowed")
        parts.append(BYTES1[code])
    body = b"".join(parts)
    return fixed_header(0x90, len(body)) + body


def decode_suback(buf: Buf, flags: int, pos: int) -> SubAck:
    """Decode SUBACK (MQTT 3.1.1)."""
    pid, pos = read_packet_id(buf, pos)
    codes = tuple(buf[pos:])
    if not codes:
        raise fail("SUBACK without return codes", "reason_codes", pos)
    for index, code in enumerate(codes):
        if code not in (0, 1, 2, 0x80):
            raise fail(f"invalid SUBACK return code 0x{code:02x}", "reason_codes", pos + index)
    return SubAck(pid, codes)


def encode_unsubscribe(packet: Unsubscribe) -> bytes:
    """Encode UNSUBSCRIBE (MQTT 3.1.1)."""
    parts = [check_packet_id(packet.packet_id, "UNSUBSCRIBE")]
    if not packet.topic_filters:
        raise LocalProtocolError("UNSUBSCRIBE needs at least one topic filter (MQTT-3.10.3-2)")
    parts.extend(filter_bytes(topic_filter) for topic_filter in packet.topic_filters)
    body = b"".join(parts)
    return fixed_header(0xA2, len(body)) + body


def decode_unsubscribe(buf: Buf, flags: int, pos: int) -> Unsubscribe:
    """Decode UNSUBSCRIBE (MQTT 3.1.1)."""
    pid, pos = read_packet_id(buf, pos)
    filters = []
    while pos < len(buf):
        topic_filter, pos = read_filter(buf, pos)
        filters.append(topic_filter)
    if not filters:
        raise fail(
            "UNSUBSCRIBE without topic filters (MQTT-3.10.3-2)",
            "topic_filters",
            pos,
            ReasonCode.PROTOCOL_ERROR,
        )
    return Unsubscribe(pid, tuple(filters))


def encode_unsuback(packet: UnsubAck) -> bytes:
    """Encode UNSUBACK (MQTT 3.1.1 has no reason codes; failing ones cannot be expressed)."""
    if any(code >= 0x80 for code in packet.reason_codes):
        raise LocalProtocolError("MQTT 3.1.1 UNSUBACK cannot express failing reason codes")
    return b"\xb0\x02" + check_packet_id(packet.packet_id, "UNSUBACK")


def decode_unsuback(buf: Buf, flags: int, pos: int) -> UnsubAck:
    """Decode UNSUBACK (MQTT 3.1.1)."""
    if len(buf) - pos != 2:
        raise fail("UNSUBACK remaining length must be 2", "remaining length", 1)
    pid, pos = read_packet_id(buf, pos)
    return UnsubAck(pid)


# ----------------------------------------------------------------- PING, DISCONNECT


#: Shared instances of the packets that carry nothing (v3.1.1 DISCONNECT included).
PINGREQ = PingReq()
PINGRESP = PingResp()
DISCONNECT = Disconnect()


def encode_pingreq(packet: PingReq) -> bytes:
    """Encode PINGREQ."""
    return b"\xc0\x00"


def encode_pingresp(packet: PingResp) -> bytes:
    """Encode PINGRESP."""
    return b"\xd0\x00"


def _empty_decoder(kind: str, value: _T) -> Callable[[Buf, int, int], _T]:
    def decode_empty(buf: Buf, flags: int, pos: int) -> _T:
        if pos != len(buf):
            raise fail(f"{kind} remaining length must be 0", "remaining length", 1)
        return value

    decode_empty.__name__ = f"decode_{kind.lower()}"
    decode_empty.__doc__ = f"Decode {kind} (no variable header, no payload)."
    return decode_empty


decode_pingreq = _empty_decoder("PINGREQ", PINGREQ)
decode_pingresp = _empty_decoder("PINGRESP", PINGRESP)
decode_disconnect = _empty_decoder("DISCONNECT", DISCONNECT)


def encode_disconnect(packet: Disconnect) -> bytes:
    """Encode DISCONNECT (MQTT 3.1.1): only a normal disconnection can be expressed."""
    if packet.reason_code:
        raise LocalProtocolError(
            f"MQTT 3.1.1 DISCONNECT cannot carry reason code 0x{packet.reason_code:02x}"
        )
    return b"\xe0\x00"


def encode_auth(packet: Auth) -> bytes:
    """AUTH does not exist in MQTT 3.1.1."""
    raise LocalProtocolError("AUTH is an MQTT 5 packet")


def _no_connect(buf: Buf, flags: int, pos: int) -> Packet:
    raise AssertionError("CONNECT is dispatched on its protocol level by _codec")


def _reserved(buf: Buf, flags: int, pos: int) -> Packet:
    raise fail("packet type 0 is reserved", "packet type", 0)


def _auth_v4(buf: Buf, flags: int, pos: int) -> Packet:
    raise fail("AUTH is not an MQTT 3.1.1 packet", "packet type", 0)


#: Decoder for each packet type (index = the high nibble of the first byte).
DECODERS: tuple[Callable[[Buf, int, int], Packet], ...] = (
    _reserved,
    _no_connect,
    decode_connack,
    decode_publish,
    _ack_decoder(PacketType.PUBACK),
    _ack_decoder(PacketType.PUBREC),
    _ack_decoder(PacketType.PUBREL),
    _ack_decoder(PacketType.PUBCOMP),
    decode_subscribe,
    decode_suback,
    decode_unsubscribe,
    decode_unsuback,
    decode_pingreq,
    decode_pingresp,
    decode_disconnect,
    _auth_v4,
)

#: Encoder for each packet class.
ENCODERS: dict[type, Callable[[Any], bytes]] = {
    Connect: encode_connect,
    ConnAck: encode_connack,
    Publish: encode_publish,
    PubAck: _ack_encoder(0x40, "PUBACK"),
    PubRec: _ack_encoder(0x50, "PUBREC"),
    PubRel: _ack_encoder(0x62, "PUBREL"),
    PubComp: _ack_encoder(0x70, "PUBCOMP"),
    Subscribe: encode_subscribe,
    SubAck: encode_suback,
    Unsubscribe: encode_unsubscribe,
    UnsubAck: encode_unsuback,
    PingReq: encode_pingreq,
    PingResp: encode_pingresp,
    Disconnect: encode_disconnect,
    Auth: encode_auth,
}


def _fixed(size: int) -> Callable[[Any], int]:
    def sizer(packet: Any) -> int:
        return size

    return sizer


#: Cheap encoded-size functions for the packets sized without encoding them.
SIZES: dict[type, Callable[[Any], int]] = {
    Publish: publish_size,
    PubAck: _fixed(4),
    PubRec: _fixed(4),
    PubRel: _fixed(4),
    PubComp: _fixed(4),
    PingReq: _fixed(2),
    PingResp: _fixed(2),
    Disconnect: _fixed(2),
}
