"""MQTT 5 properties (MQTT 5.0 section 2.2.2), driven by one table.

Theory of operation: :data:`PROPERTY_TABLE` lists, for every property identifier, the attribute
of :class:`~trio_mqtt._core._packets.Properties` that holds it, its wire type and a bit mask of
the packet types that may carry it (bit ``n`` for packet type ``n``; bit 0 stands for the will
properties inside CONNECT). The decoder walks the property bytes once, refusing unknown
identifiers and identifiers the packet type does not allow (a Malformed Packet, section
2.2.2.2), duplicates of single-valued properties (a Protocol Error) and out-of-range values (a
Protocol Error), then builds one ``Properties``. The encoder walks the same table in identifier
order. Only User Property may repeat everywhere; Subscription Identifier may repeat in PUBLISH
(one per matching subscription) but not in SUBSCRIBE.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, field, fields, make_dataclass
from operator import attrgetter
from typing import Any, NamedTuple, TypeAlias

from ._errors import InvalidTopicError, LocalProtocolError
from ._packets import NO_PROPERTIES, PacketType, Properties
from ._primitives import (
    BYTES1,
    VBI_MAX,
    Buf,
    fail,
    pack_binary,
    pack_str,
    pack_u16,
    pack_u32,
    pack_vbi,
    read_binary,
    read_str,
    read_u8,
    read_u16,
    read_u32,
    read_vbi,
)
from ._reason_codes import ReasonCode

__all__ = [
    "PROPERTY_TABLE",
    "WILL",
    "PropertyInfo",
    "WireType",
    "decode_properties",
    "encode_properties",
]

#: Pseudo packet type for the will properties of CONNECT.
WILL = 0


class WireType:
    """Data representation of a property value (section 1.5)."""

    BYTE = 0
    TWO_BYTE = 1
    FOUR_BYTE = 2
    VARIABLE = 3
    STRING = 4
    BINARY = 5
    STRING_PAIR = 6


class PropertyInfo(NamedTuple):
    """One row of the property table."""

    identifier: int
    name: str
    wire_type: int
    allowed: int  # bit mask: 1 << packet type, 1 << WILL for the will properties
    repeatable: int  # bit mask of packet types where the property may appear more than once
    minimum: int  # smallest allowed value for integer properties
    maximum: int  # largest allowed value for integer properties


def _mask(*types: int) -> int:
    out = 0
    for t in types:
        out |= 1 << t
    return out


_P = PacketType
_ALL_WITH_PROPERTIES = _mask(WILL, *(t for t in PacketType if t not in (_P.PINGREQ, _P.PINGRESP)))
_ACKS = _mask(_P.PUBACK, _P.PUBREC, _P.PUBREL, _P.PUBCOMP)
_MESSAGE = _mask(_P.PUBLISH, WILL)
_PUB = _mask(_P.PUBLISH)
_SUB_ID_IN = _mask(_P.PUBLISH, _P.SUBSCRIBE)
_REASON_STRING_IN = _ACKS | _mask(_P.CONNACK, _P.SUBACK, _P.UNSUBACK, _P.DISCONNECT, _P.AUTH)
_B, _H, _I, _V, _S, _D, _SP = range(7)


def _row(
    identifier: int,
    name: str,
    wire_type: int,
    allowed: int,
    repeatable: int = 0,
    minimum: int = 0,
    maximum: int = -1,
) -> PropertyInfo:
    if maximum < 0:
        maximum = {_B: 0xFF, _H: 0xFFFF, _I: 0xFFFFFFFF, _V: VBI_MAX}.get(wire_type, 0)
    return PropertyInfo(identifier, name, wire_type, allowed, repeatable, minimum, maximum)


#: Every MQTT 5 property, in identifier order (table in section 2.2.2.2).
PROPERTY_TABLE: tuple[PropertyInfo, ...] = (
    _row(0x01, "payload_format_indicator", _B, _MESSAGE, maximum=1),
    _row(0x02, "message_expiry_interval", _I, _MESSAGE),
    _row(0x03, "content_type", _S, _MESSAGE),
    _row(0x08, "response_topic", _S, _MESSAGE),
    _row(0x09, "correlation_data", _D, _MESSAGE),
    # 1..268,435,455 (section 3.8.2.1.2); it repeats only in PUBLISH.
    _row(0x0B, "subscription_identifiers", _V, _SUB_ID_IN, repeatable=_PUB, minimum=1),
    _row(0x11, "session_expiry_interval", _I, _mask(_P.CONNECT, _P.CONNACK, _P.DISCONNECT)),
    _row(0x12, "assigned_client_identifier", _S, _mask(_P.CONNACK)),
    _row(0x13, "server_keep_alive", _H, _mask(_P.CONNACK)),
    _row(0x15, "authentication_method", _S, _mask(_P.CONNECT, _P.CONNACK, _P.AUTH)),
    _row(0x16, "authentication_data", _D, _mask(_P.CONNECT, _P.CONNACK, _P.AUTH)),
    _row(0x17, "request_problem_information", _B, _mask(_P.CONNECT), maximum=1),
    _row(0x18, "will_delay_interval", _I, _mask(WILL)),
    _row(0x19, "request_response_information", _B, _mask(_P.CONNECT), maximum=1),
    _row(0x1A, "response_information", _S, _mask(_P.CONNACK)),
    _row(0x1C, "server_reference", _S, _mask(_P.CONNACK, _P.DISCONNECT)),
    _row(0x1F, "reason_string", _S, _REASON_STRING_IN),
    _row(0x21, "receive_maximum", _H, _mask(_P.CONNECT, _P.CONNACK), minimum=1),
    _row(0x22, "topic_alias_maximum", _H, _mask(_P.CONNECT, _P.CONNACK)),
    _row(0x23, "topic_alias", _H, _mask(_P.PUBLISH), minimum=1),  # MQTT-3.3.2-8
    _row(0x24, "maximum_qos", _B, _mask(_P.CONNACK), maximum=1),
    _row(0x25, "retain_available", _B, _mask(_P.CONNACK), maximum=1),
    _row(0x26, "user_properties", _SP, _ALL_WITH_PROPERTIES, repeatable=_ALL_WITH_PROPERTIES),
    _row(0x27, "maximum_packet_size", _I, _mask(_P.CONNECT, _P.CONNACK), minimum=1),
    _row(0x28, "wildcard_subscription_available", _B, _mask(_P.CONNACK), maximum=1),
    _row(0x29, "subscription_identifier_available", _B, _mask(_P.CONNACK), maximum=1),
    _row(0x2A, "shared_subscription_available", _B, _mask(_P.CONNACK), maximum=1),
)

#: Row for each identifier byte (None = no such property).
_BY_ID: list[PropertyInfo | None] = [None] * 256
for _info in PROPERTY_TABLE:
    _BY_ID[_info.identifier] = _info
del _info


def _fast_properties() -> Callable[..., Properties]:
    """A keyword constructor for :class:`Properties` about five times faster than its own.

    The frozen ``__init__`` stores 27 fields through ``object.__setattr__``. This builds a
    non-frozen twin dataclass with the same fields and slots, whose ``__init__`` uses plain
    attribute stores, then switches the new object's ``__class__`` to ``Properties`` (allowed
    because the memory layouts are identical). If that ever stops working, the real class is
    used instead.
    """
    try:
        spec: list[tuple[str, Any, Any]] = []
        for item in fields(Properties):
            if item.default is not MISSING:
                spec.append((item.name, item.type, field(default=item.default)))
            else:
                spec.append((item.name, item.type, field(default_factory=item.default_factory)))
        twin = make_dataclass("_PropertiesTwin", spec, slots=True, eq=False, repr=False)
        probe = twin()
        probe.__class__ = Properties
        if probe != NO_PROPERTIES or hasattr(Properties, "__post_init__"):
            return Properties
    except TypeError:  # pragma: no cover - layout no longer compatible
        return Properties

    def build(**values: Any) -> Properties:
        obj = twin(**values)
        obj.__class__ = Properties
        return obj  # type: ignore[no-any-return]

    return build


_new_properties = _fast_properties()

_TYPE_NAMES = {WILL: "will", **{int(t): t.name for t in PacketType}}

_Reader: TypeAlias = Callable[[Buf, int, int, str], tuple[Any, int]]
_DecodeRow: TypeAlias = tuple[str, str, int, int, int, int, int, _Reader]

_READERS: dict[int, _Reader] = {
    _B: read_u8,
    _H: read_u16,
    _I: read_u32,
    _V: read_vbi,
    _S: read_str,
    _D: read_binary,
}


#: Per identifier byte, everything the decoder needs as one plain tuple (None = unknown).
_DECODE_ROWS: list[_DecodeRow | None] = [
    None
    if info is None
    else (
        info.name,
        "properties." + info.name,
        info.wire_type,
        info.allowed,
        info.repeatable,
        info.minimum,
        info.maximum,
        _READERS.get(info.wire_type, read_str),
    )
    for info in _BY_ID
]


def decode_properties(buf: Buf, pos: int, end: int, ptype: int) -> tuple[Properties, int]:
    """Read a property length and the properties after it.

    Args:
        buf: the whole packet.
        pos: offset of the property length.
        end: end of the region the properties must fit in.
        ptype: packet type (or :data:`WILL`), for the allowed-property check.

    Returns:
        The properties (the shared :data:`NO_PROPERTIES` when there are none) and the offset
        just after them.

    Raises:
        MalformedPacketError: bad lengths, unknown or disallowed identifiers, duplicates,
            values out of range.
    """
    if pos < end and buf[pos] == 0:
        return NO_PROPERTIES, pos + 1
    length, pos = read_vbi(buf, pos, end, "property length")
    stop = pos + length
    if stop > end:
        raise fail("properties run past the end of the packet", "property length", pos)
    bit = 1 << ptype
    values: dict[str, Any] = {}
    lists = False
    while pos < stop:
        ident = buf[pos]
        row = _DECODE_ROWS[ident]
        if row is None:
            raise fail(f"unknown property identifier 0x{ident:02x}", "properties", pos)
        name, field_name, wire, allowed, repeatable, low, high, reader = row
        if not allowed & bit:
            raise fail(f"property {name} is not allowed in {_TYPE_NAMES[ptype]}", "properties", pos)
        start = pos
        value: Any
        if wire == _SP:
            key, pos = read_str(buf, pos + 1, stop, field_name)
            val, pos = read_str(buf, pos, stop, field_name)
            value = (key, val)
        else:
            value, pos = reader(buf, pos + 1, stop, field_name)
            if wire <= _V and not low <= value <= high:
                raise fail(
                    f"property {name} has the invalid value {value}",
                    field_name,
                    start,
                    # a Topic Alias of 0 is "Topic Alias invalid" (MQTT-3.3.2-8)
                    ReasonCode.TOPIC_ALIAS_INVALID if ident == 0x23 else ReasonCode.PROTOCOL_ERROR,
                )
            if ident == 0x08 and ("+" in value or "#" in value or not value):
                raise fail(
                    "Response Topic is not a valid topic name (MQTT-3.3.2-14)",
                    field_name,
                    start,
                    ReasonCode.PROTOCOL_ERROR,
                )
        if repeatable & bit:
            seen = values.get(name)
            if seen is None:
                values[name] = [value]
                lists = True
            else:
                seen.append(value)
        elif name in values:
            raise fail(
                f"property {name} appears more than once",
                field_name,
                start,
                ReasonCode.PROTOCOL_ERROR,
            )
        else:
            # Subscription Identifier is held as a tuple even where it may not repeat.
            values[name] = (value,) if name == "subscription_identifiers" else value
    if lists:
        for name, value in values.items():
            if isinstance(value, list):
                values[name] = tuple(value)
    return _new_properties(**values), stop


def _encode_value(info: PropertyInfo, value: Any) -> bytes:
    field = "properties." + info.name
    wire = info.wire_type
    if wire == _S:
        if info.identifier == 0x08 and ("+" in value or "#" in value or not value):
            raise InvalidTopicError(f"response_topic is not a valid topic name: {value!r}")
        return pack_str(value, field)
    if wire == _D:
        return pack_binary(value, field)
    if not isinstance(value, int) or not info.minimum <= value <= info.maximum:
        raise LocalProtocolError(
            f"{field} must be an int in {info.minimum}..{info.maximum}, got {value!r}"
        )
    if wire == _B:
        return bytes((value,))
    if wire == _H:
        return pack_u16(value, field)
    if wire == _I:
        return pack_u32(value, field)
    return pack_vbi(value, field)


def _getter(names: list[str]) -> Callable[[Properties], tuple[Any, ...]]:
    """A function returning the named attributes as a tuple (attrgetter, always a tuple)."""
    if len(names) > 1:
        return attrgetter(*names)
    if names:
        name = names[0]
        return lambda props: (getattr(props, name),)
    return lambda props: ()


class _TypePlan(NamedTuple):
    allowed: tuple[PropertyInfo, ...]
    get_allowed: Callable[[Properties], tuple[Any, ...]]
    get_others: Callable[[Properties], tuple[Any, ...]]
    others_unset: tuple[Any, ...]


def _plan(ptype: int) -> _TypePlan:
    allowed = tuple(info for info in PROPERTY_TABLE if info.allowed & (1 << ptype))
    others = [info for info in PROPERTY_TABLE if not info.allowed & (1 << ptype)]
    unset = tuple(getattr(NO_PROPERTIES, info.name) for info in others)
    return _TypePlan(
        allowed, _getter([i.name for i in allowed]), _getter([i.name for i in others]), unset
    )


#: Per packet type (and the will): which properties to look at when encoding. Checking that
#: all the others are unset is one tuple comparison, so only the allowed ones are walked.
_PLANS = {ptype: _plan(ptype) for ptype in (WILL, *PacketType)}


def encode_properties(props: Properties, ptype: int) -> bytes:
    """Encode properties with their length prefix (a single zero byte when there are none).

    Args:
        props: the properties.
        ptype: packet type (or :data:`WILL`) the properties go into.

    Raises:
        LocalProtocolError: a property the packet type does not allow, or a value out of range.
    """
    if props is NO_PROPERTIES:
        return b"\x00"
    bit = 1 << ptype
    plan = _PLANS[ptype]
    if plan.get_others(props) != plan.others_unset:
        for info in PROPERTY_TABLE:
            if not info.allowed & bit and getattr(props, info.name) not in (None, ()):
                raise LocalProtocolError(
                    f"property {info.name} is not allowed in {_TYPE_NAMES[ptype]}"
                )
    parts: list[bytes] = []
    for info, value in zip(plan.allowed, plan.get_allowed(props), strict=True):
        if value is None or value == ():
            continue
        ident = BYTES1[info.identifier]
        if info.wire_type == _SP:
            for pair in value:
                if not (isinstance(pair, tuple) and len(pair) == 2):
                    raise LocalProtocolError("user_properties must hold (name, value) pairs")
                parts.append(ident)
                parts.append(pack_str(pair[0], "properties.user_properties"))
                parts.append(pack_str(pair[1], "properties.user_properties"))
        elif info.name == "subscription_identifiers":
            if not isinstance(value, tuple):
                raise LocalProtocolError("subscription_identifiers must be a tuple of ints")
            if len(value) > 1 and not info.repeatable & bit:
                raise LocalProtocolError(
                    f"only one subscription identifier is allowed in {_TYPE_NAMES[ptype]}"
                )
            for item in value:
                parts.append(ident)
                parts.append(_encode_value(info, item))
        else:
            parts.append(ident)
            parts.append(_encode_value(info, value))
    body = b"".join(parts)
    return pack_vbi(len(body), "property length") + body
