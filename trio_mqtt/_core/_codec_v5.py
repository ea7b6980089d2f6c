"""MQTT 5.0 packet bodies: encoders and decoders.

Theory of operation: the same shape as :mod:`._codec_v4` (decoders indexed by packet type,
encoders keyed by model class), plus properties (:mod:`._properties`) and reason codes. Each
packet's reason code is checked against the table of codes the spec allows for that packet type.

Short forms (sections 3.4.2.1, 3.14.2.1, 3.15.2.1): the encoder leaves out what the spec lets it
leave out. An ack (PUBACK, PUBREC, PUBREL, PUBCOMP) with reason code 0 and no properties is just
the packet id; with another code and no properties it stops after the code. DISCONNECT and AUTH
with code 0 and no properties have remaining length 0; DISCONNECT with another code and no
properties stops after the code. The decoder accepts both the short and the full forms.
"""

from __future__ import annotations

from collections.abc import Callable
from struct import Struct
from typing import Any

from . import _codec_v4 as v4
from ._codec_v4 import (
    ACK_BUILDERS,
    QOS_VALUES,
    check_packet_id,
    encode_pingreq,
    encode_pingresp,
    encode_will_flags,
    expect_end,
    filter_bytes,
    new_publish,
    publish_size,
    read_connect_flags,
    read_filter,
    read_packet_id,
    read_will_topic,
    topic_bytes,
)
from ._errors import LocalProtocolError
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
    Properties,
    ProtocolVersion,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    RetainHandling,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
)
from ._primitives import (
    BYTES1,
    U16,
    Buf,
    fail,
    fixed_header,
    pack_binary,
    pack_str,
    read_binary,
    read_str,
    read_u16,
)
from ._properties import WILL, decode_properties, encode_properties
from ._reason_codes import ReasonCode

__all__ = ["DECODERS", "ENCODERS", "EXPECTED_FLAGS", "REASON_CODES", "SIZES", "decode_connect_body"]

_pack_u16 = U16.pack
_HEAD_TOPIC = Struct("!BBH").pack
_HEAD2_TOPIC = Struct("!BBBH").pack
_ACK = Struct("!BBH").pack
_ACK3 = Struct("!BBHB").pack
_RETAIN_HANDLING = tuple(RetainHandling)
_P = PacketType

#: Fixed header flags per packet type (MQTT-2.1.3-1); AUTH exists in MQTT 5.
EXPECTED_FLAGS: tuple[int, ...] = (*v4.EXPECTED_FLAGS[:15], 0)


def _codes(*codes: int) -> frozenset[int]:
    return frozenset(codes)


_ACK_CODES = _codes(0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99)
_REL_CODES = _codes(0x00, 0x92)

#: Reason codes each packet type may carry (the per-packet tables of chapter 3).
REASON_CODES: dict[int, frozenset[int]] = {
    _P.CONNACK: _codes(0x00, *range(0x80, 0x8B), 0x8C, 0x90, 0x95, 0x97, *range(0x99, 0x9E), 0x9F),
    _P.PUBACK: _ACK_CODES,
    _P.PUBREC: _ACK_CODES,
    _P.PUBREL: _REL_CODES,
    _P.PUBCOMP: _REL_CODES,
    _P.SUBACK: _codes(0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2),
    _P.UNSUBACK: _codes(0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91),
    _P.DISCONNECT: _codes(
        0x00, 0x04, *range(0x80, 0x84), 0x87, 0x89, 0x8B, *range(0x8D, 0x91), *range(0x93, 0xA3)
    ),
    _P.AUTH: _codes(0x00, 0x18, 0x19),
}


def _check_code(code: int, ptype: int) -> int:
    if code not in REASON_CODES[ptype]:
        raise LocalProtocolError(f"reason code {code!r} is not allowed in {_P(ptype).name}")
    return code


def _read_code(buf: Buf, pos: int, ptype: int) -> int:
    code: int = buf[pos]
    if code not in REASON_CODES[ptype]:
        raise fail(
            f"reason code 0x{code:02x} is not allowed in {_P(ptype).name}",
            "reason_code",
            pos,
            ReasonCode.PROTOCOL_ERROR,
        )
    return code


def _properties(props: Properties, ptype: int) -> bytes:
    return b"\x00" if props is NO_PROPERTIES else encode_properties(props, ptype)


# ------------------------------------------------------------------------------- PUBLISH


def encode_publish(packet: Publish) -> bytes:
    """Encode PUBLISH (MQTT 5, section 3.3). An empty topic needs a Topic Alias."""
    props = packet.properties
    if props is NO_PROPERTIES:
        return v4.encode_publish(packet, b"\x00")
    prop_bytes = encode_properties(props, _P.PUBLISH)
    return v4.encode_publish(packet, prop_bytes, props.topic_alias is not None)


def _publish_size(packet: Publish) -> int:
    props = packet.properties
    if props is NO_PROPERTIES:
        return publish_size(packet, 1)
    return publish_size(packet, len(encode_properties(props, _P.PUBLISH)))


def decode_publish(buf: Buf, flags: int, pos: int) -> Publish:
    """Decode PUBLISH (MQTT 5)."""
    qos, topic, pid, stop = v4.read_publish_head(buf, flags, pos, True)
    end = len(buf)
    if stop >= end:
        raise fail("packet ends before the property length", "property length", stop)
    if buf[stop] == 0:
        props = NO_PROPERTIES
        stop += 1
    else:
        props, stop = decode_properties(buf, stop, end, _P.PUBLISH)
    if not topic and props.topic_alias is None:
        raise fail(
            "PUBLISH has neither a topic name nor a topic alias",
            "topic",
            pos,
            ReasonCode.PROTOCOL_ERROR,
        )
    return new_publish(
        topic,
        buf[stop:],
        QOS_VALUES[qos],
        (flags & 1) != 0,
        (flags & 8) != 0,
        pid,
        props,
    )


# ------------------------------------------------------------------------------ acks


def _ack_encoder(ptype: PacketType, first: int) -> Callable[[Any], bytes]:
    kind = ptype.name
    allowed = REASON_CODES[ptype]

    def encode_ack(packet: PubAck | PubRec | PubRel | PubComp) -> bytes:
        pid = packet.packet_id
        if not (isinstance(pid, int) and 0 < pid <= 0xFFFF):
            raise LocalProtocolError(f"{kind} packet_id must be in 1..65535, got {pid!r}")
        code = packet.reason_code
        props = packet.properties
        if props is NO_PROPERTIES:
            if code == 0:
                return _ACK(first, 2, pid)
            if code in allowed:
                return _ACK3(first, 3, pid, code)
        if code not in allowed:
            _check_code(code, ptype)
        body = _pack_u16(pid) + BYTES1[code] + encode_properties(props, ptype)
        if len(body) == 4:  # empty properties: use the short form
            body = body[:3] if code else body[:2]
        return fixed_header(first, len(body)) + body

    encode_ack.__name__ = f"encode_{kind.lower()}"
    encode_ack.__doc__ = f"Encode {kind} (MQTT 5), in the shortest form allowed."
    return encode_ack


def _ack_size(packet: PubAck | PubRec | PubRel | PubComp) -> int:
    if packet.properties is NO_PROPERTIES:
        return 5 if packet.reason_code else 4
    return len(ENCODERS[type(packet)](packet))


def _ack_decoder(ptype: PacketType) -> Callable[[Buf, int, int], Packet]:
    build = ACK_BUILDERS[ptype]
    kind = ptype.name

    def decode_ack(buf: Buf, flags: int, pos: int) -> Packet:
        end = len(buf)
        if end - pos < 2:
            raise fail(f"{kind} remaining length is below 2", "remaining length", 1)
        pid = (buf[pos] << 8) | buf[pos + 1]
        if not pid:
            raise fail("packet identifier is 0 (MQTT-2.3.1-1)", "packet_id", pos)
        if end - pos == 2:
            return build(pid, 0, NO_PROPERTIES)
        code = _read_code(buf, pos + 2, ptype)
        if end - pos == 3:
            return build(pid, code, NO_PROPERTIES)
        props, pos = decode_properties(buf, pos + 3, end, ptype)
        expect_end(buf, pos, kind)
        return build(pid, code, props)

    decode_ack.__name__ = f"decode_{kind.lower()}"
    decode_ack.__doc__ = f"Decode {kind} (MQTT 5), short or full form."
    return decode_ack


# --------------------------------------------------------------------------- CONNECT


def encode_connect(packet: Connect) -> bytes:
    """Encode CONNECT (MQTT 5, section 3.1)."""
    if packet.protocol_version != ProtocolVersion.V5:
        raise LocalProtocolError("CONNECT protocol_version does not match the codec version")
    flags = encode_will_flags(packet.will) | (0x02 if packet.clean_start else 0)
    if not (isinstance(packet.keep_alive, int) and 0 <= packet.keep_alive <= 0xFFFF):
        raise LocalProtocolError(f"keep_alive must be in 0..65535, got {packet.keep_alive!r}")
    props = packet.properties
    if props.authentication_data is not None and props.authentication_method is None:
        raise LocalProtocolError("authentication_data needs an authentication_method")
    parts = [b"\x00\x04MQTT\x05", b"", _pack_u16(packet.keep_alive)]
    parts.append(_properties(packet.properties, _P.CONNECT))
    parts.append(pack_str(packet.client_id, "client_id"))
    will = packet.will
    if will is not None:
        parts.append(_properties(will.properties, WILL))
        raw = topic_bytes(will.topic, "will topic")
        parts.append(_pack_u16(len(raw)) + raw)
        parts.append(pack_binary(will.payload, "will payload"))
    if packet.username is not None:
        flags |= 0x80
        parts.append(pack_str(packet.username, "username"))
    if packet.password is not None:
        flags |= 0x40
        parts.append(pack_binary(packet.password, "password"))
    parts[1] = BYTES1[flags]
    body = b"".join(parts)
    return fixed_header(0x10, len(body)) + body


def decode_connect_body(buf: Buf, pos: int) -> Connect:
    """Decode CONNECT (MQTT 5) from the connect flags on; ``pos`` is their offset."""
    end = len(buf)
    flags = read_connect_flags(buf, pos, 5)
    keep_alive, pos = read_u16(buf, pos + 1, end, "keep_alive")
    start = pos
    props, pos = decode_properties(buf, pos, end, _P.CONNECT)
    if props.authentication_data is not None and props.authentication_method is None:
        raise fail(
            "Authentication Data without Authentication Method (section 3.1.2.11.10)",
            "properties.authentication_data",
            start,
            ReasonCode.PROTOCOL_ERROR,
        )
    client_id, pos = read_str(buf, pos, end, "client_id")
    will = None
    if flags & 0x04:
        will_props, pos = decode_properties(buf, pos, end, WILL)
        will_topic, pos = read_will_topic(buf, pos)
        will_payload, pos = read_binary(buf, pos, end, "will payload")
        will = Will(
            will_topic,
            will_payload,
            QOS_VALUES[(flags >> 3) & 3],
            bool(flags & 0x20),
            will_props,
        )
    username = password = None
    if flags & 0x80:
        username, pos = read_str(buf, pos, end, "username")
    if flags & 0x40:
        password, pos = read_binary(buf, pos, end, "password")
    expect_end(buf, pos, "CONNECT")
    return Connect(
        client_id,
        ProtocolVersion.V5,
        keep_alive,
        bool(flags & 0x02),
        username,
        password,
        will,
        props,
    )


# --------------------------------------------------------------------------- CONNACK


def encode_connack(packet: ConnAck) -> bytes:
    """Encode CONNACK (MQTT 5, section 3.2)."""
    code = _check_code(packet.reason_code, _P.CONNACK)
    if code >= 0x80 and packet.session_present:
        raise LocalProtocolError("session_present must be 0 when refusing (MQTT-3.2.2-6)")
    body = bytes((1 if packet.session_present else 0, code)) + _properties(
        packet.properties, _P.CONNACK
    )
    return fixed_header(0x20, len(body)) + body


def decode_connack(buf: Buf, flags: int, pos: int) -> ConnAck:
    """Decode CONNACK (MQTT 5)."""
    end = len(buf)
    if end - pos < 3:
        raise fail("CONNACK is too short", "remaining length", 1)
    ack_flags = buf[pos]
    if ack_flags & 0xFE:
        raise fail("reserved CONNACK flag bits are set (MQTT-3.2.2-1)", "session_present", pos)
    code = _read_code(buf, pos + 1, _P.CONNACK)
    if code >= 0x80 and ack_flags:
        raise fail("session present on a refused connection (MQTT-3.2.2-6)", "session_present", pos)
    props, pos = decode_properties(buf, pos + 2, end, _P.CONNACK)
    expect_end(buf, pos, "CONNACK")
    return ConnAck(bool(ack_flags), code, props)


# ------------------------------------------------------------------ SUBSCRIBE and co.


def encode_subscribe(packet: Subscribe) -> bytes:
    """Encode SUBSCRIBE (MQTT 5, section 3.8) with the subscription options byte."""
    parts = [check_packet_id(packet.packet_id, "SUBSCRIBE")]
    parts.append(_properties(packet.properties, _P.SUBSCRIBE))
    if not packet.subscriptions:
        raise LocalProtocolError("SUBSCRIBE needs at least one topic filter (MQTT-3.8.3-2)")
    for sub in packet.subscriptions:
        if sub.qos not in (0, 1, 2):
            raise LocalProtocolError(f"subscription qos must be 0, 1 or 2, got {sub.qos!r}")
        if sub.retain_handling not in (0, 1, 2):
            raise LocalProtocolError(f"retain_handling must be 0, 1 or 2: {sub.retain_handling!r}")
        if sub.no_local and sub.topic_filter.startswith("$share/"):
            raise LocalProtocolError(
                "no_local is not allowed on a shared subscription (MQTT-3.8.3-4)"
            )
        parts.append(filter_bytes(sub.topic_filter))
        options = (
            sub.qos
            | (0x04 if sub.no_local else 0)
            | (0x08 if sub.retain_as_published else 0)
            | (sub.retain_handling << 4)
        )
        parts.append(BYTES1[options])
    body = b"".join(parts)
    return fixed_header(0x82, len(body)) + body


def decode_subscribe(buf: Buf, flags: int, pos: int) -> Subscribe:
    """Decode SUBSCRIBE (MQTT 5)."""
    pid, pos = read_packet_id(buf, pos)
    end = len(buf)
    props, pos = decode_properties(buf, pos, end, _P.SUBSCRIBE)
    subs = []
    while pos < end:
        start = pos
        topic_filter, pos = read_filter(buf, pos)
        if pos >= end:
            raise fail("packet ends before the subscription options", "subscription options", pos)
        options = buf[pos]
        if options & 0xC0:
            raise fail(
                "reserved subscription option bits are set (MQTT-3.8.3-5)",
                "subscription options",
                pos,
            )
        if options & 3 == 3:
            raise fail("subscription QoS is 3", "subscription options", pos)
        if options & 0x30 == 0x30:
            raise fail(
                "retain handling is 3",
                "subscription options",
                pos,
                ReasonCode.PROTOCOL_ERROR,
            )
        no_local = bool(options & 0x04)
        if no_local and topic_filter.startswith("$share/"):
            raise fail(
                "no_local on a shared subscription (MQTT-3.8.3-4)",
                "subscription options",
                start,
                ReasonCode.PROTOCOL_ERROR,
            )
        subs.append(
            Subscription(
                topic_filter,
                QOS_VALUES[options & 3],
                no_local,
                bool(options & 0x08),
                _RETAIN_HANDLING[(options >> 4) & 3],
            )
        )
        pos += 1
    if not subs:
        raise fail(
            "SUBSCRIBE without topic filters (MQTT-3.8.3-2)",
            "subscriptions",
            pos,
            ReasonCode.PROTOCOL_ERROR,
        )
    return Subscribe(pid, tuple(subs), props)


def _encode_code_list(
    first: int, ptype: int, packet_id: int, codes: tuple[int, ...], props: Properties
) -> bytes:
    kind = _P(ptype).name
    if not codes:
        raise LocalProtocolError(f"{kind} needs one reason code per topic filter")
    parts = [check_packet_id(packet_id, kind), _properties(props, ptype)]
    allowed = REASON_CODES[ptype]
    for code in codes:
        if code not in allowed:
            _check_code(code, ptype)
        parts.append(BYTES1[code])
    body = b"".join(parts)
    return fixed_header(first, len(body)) + body


def _decode_code_list(buf: Buf, pos: int, ptype: int) -> tuple[int, Properties, tuple[int, ...]]:
    pid, pos = read_packet_id(buf, pos)
    props, pos = decode_properties(buf, pos, len(buf), ptype)
    if pos >= len(buf):
        raise fail(f"{_P(ptype).name} without reason codes", "reason_codes", pos)
    codes = tuple(_read_code(buf, index, ptype) for index in range(pos, len(buf)))
    return pid, props, codes


def encode_suback(packet: SubAck) -> bytes:
    """Encode SUBACK (MQTT 5)."""
    return _encode_code_list(
        0x90, _P.SUBACK, packet.packet_id, packet.reason_codes, packet.properties
    )


def decode_suback(buf: Buf, flags: int, pos: int) -> SubAck:
    """Decode SUBACK (MQTT 5)."""
    pid, props, codes = _decode_code_list(buf, pos, _P.SUBACK)
    return SubAck(pid, codes, props)


def encode_unsubscribe(packet: Unsubscribe) -> bytes:
    """Encode UNSUBSCRIBE (MQTT 5)."""
    parts = [check_packet_id(packet.packet_id, "UNSUBSCRIBE")]
    parts.append(_properties(packet.properties, _P.UNSUBSCRIBE))
    if not packet.topic_filters:
        raise LocalProtocolError("UNSUBSCRIBE needs at least one topic filter (MQTT-3.10.3-2)")
    parts.extend(filter_bytes(topic_filter) for topic_filter in packet.topic_filters)
    body = b"".join(parts)
    return fixed_header(0xA2, len(body)) + body


def decode_unsubscribe(buf: Buf, flags: int, pos: int) -> Unsubscribe:
    """Decode UNSUBSCRIBE (MQTT 5)."""
    pid, pos = read_packet_id(buf, pos)
    props, pos = decode_properties(buf, pos, len(buf), _P.UNSUBSCRIBE)
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
    return Unsubscribe(pid, tuple(filters), props)


def encode_unsuback(packet: UnsubAck) -> bytes:
    """Encode UNSUBACK (MQTT 5)."""
    return _encode_code_list(
        0xB0, _P.UNSUBACK, packet.packet_id, packet.reason_codes, packet.properties
    )


def decode_unsuback(buf: Buf, flags: int, pos: int) -> UnsubAck:
    """Decode UNSUBACK (MQTT 5)."""
    pid, props, codes = _decode_code_list(buf, pos, _P.UNSUBACK)
    return UnsubAck(pid, codes, props)


# ------------------------------------------------------------ DISCONNECT and AUTH


def _encode_code_props(first: int, ptype: int, code: int, props: Properties) -> bytes:
    _check_code(code, ptype)
    prop_bytes = _properties(props, ptype)
    if prop_bytes == b"\x00":
        if code == 0:
            return bytes((first, 0))
        if ptype == _P.DISCONNECT:
            return bytes((first, 1, code))
    return fixed_header(first, 1 + len(prop_bytes)) + BYTES1[code] + prop_bytes


def _decode_code_props(buf: Buf, pos: int, ptype: int) -> tuple[int, Properties]:
    end = len(buf)
    if pos == end:
        return 0, NO_PROPERTIES
    code = _read_code(buf, pos, ptype)
    if pos + 1 == end:
        return code, NO_PROPERTIES
    props, pos = decode_properties(buf, pos + 1, end, ptype)
    expect_end(buf, pos, _P(ptype).name)
    return code, props


def encode_disconnect(packet: Disconnect) -> bytes:
    """Encode DISCONNECT (MQTT 5, section 3.14), in the shortest form allowed."""
    return _encode_code_props(0xE0, _P.DISCONNECT, packet.reason_code, packet.properties)


_DISCONNECT = Disconnect()


def decode_disconnect(buf: Buf, flags: int, pos: int) -> Disconnect:
    """Decode DISCONNECT (MQTT 5)."""
    if pos == len(buf):
        return _DISCONNECT
    code, props = _decode_code_props(buf, pos, _P.DISCONNECT)
    return Disconnect(code, props)


def _disconnect_size(packet: Disconnect) -> int:
    if packet.properties is NO_PROPERTIES:
        return 3 if packet.reason_code else 2
    return len(encode_disconnect(packet))


def encode_auth(packet: Auth) -> bytes:
    """Encode AUTH (MQTT 5, section 3.15)."""
    return _encode_code_props(0xF0, _P.AUTH, packet.reason_code, packet.properties)


def decode_auth(buf: Buf, flags: int, pos: int) -> Auth:
    """Decode AUTH (MQTT 5)."""
    code, props = _decode_code_props(buf, pos, _P.AUTH)
    return Auth(code, props)


#: Decoder for each packet type (index = the high nibble of the first byte).
DECODERS: tuple[Callable[[Buf, int, int], Packet], ...] = (
    v4.DECODERS[0],
    v4.DECODERS[1],
    decode_connack,
    decode_publish,
    _ack_decoder(_P.PUBACK),
    _ack_decoder(_P.PUBREC),
    _ack_decoder(_P.PUBREL),
    _ack_decoder(_P.PUBCOMP),
    decode_subscribe,
    decode_suback,
    decode_unsubscribe,
    decode_unsuback,
    v4.decode_pingreq,
    v4.decode_pingresp,
    decode_disconnect,
    decode_auth,
)

#: Encoder for each packet class.
ENCODERS: dict[type, Callable[[Any], bytes]] = {
    Connect: encode_connect,
    ConnAck: encode_connack,
    Publish: encode_publish,
    PubAck: _ack_encoder(_P.PUBACK, 0x40),
    PubRec: _ack_encoder(_P.PUBREC, 0x50),
    PubRel: _ack_encoder(_P.PUBREL, 0x62),
    PubComp: _ack_encoder(_P.PUBCOMP, 0x70),
    Subscribe: encode_subscribe,
    SubAck: encode_suback,
    Unsubscribe: encode_unsubscribe,
    UnsubAck: encode_unsuback,
    PingReq: encode_pingreq,
    PingResp: encode_pingresp,
    Disconnect: encode_disconnect,
    Auth: encode_auth,
}

#: Cheap encoded-size functions.
SIZES: dict[type, Callable[[Any], int]] = {
    Publish: _publish_size,
    PubAck: _ack_size,
    PubRec: _ack_size,
    PubRel: _ack_size,
    PubComp: _ack_size,
    PingReq: v4.SIZES[PingReq],
    PingResp: v4.SIZES[PingResp],
    Disconnect: _disconnect_size,
}
