"""The packet model: one frozen, slotted dataclass per MQTT control packet type.

One model serves MQTT 3.1.1 and MQTT 5.0. Fields that exist only in MQTT 5 (properties, most
reason codes) have defaults, and the v3.1.1 encoder ignores them where the old protocol has no
place for them (it refuses a non-default value only where dropping it would change meaning, such
as a failing reason code on an ack). The codec modules turn these objects into bytes and back; the
state machine builds and consumes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import TypeAlias

from ._topics import topic_matches as _topic_matches

__all__ = [
    "NO_PROPERTIES",
    "Auth",
    "ConnAck",
    "Connect",
    "Disconnect",
    "Packet",
    "PacketType",
    "PingReq",
    "PingResp",
    "Properties",
    "ProtocolVersion",
    "PubAck",
    "PubComp",
    "PubRec",
    "PubRel",
    "Publish",
    "QoS",
    "RetainHandling",
    "SubAck",
    "Subscribe",
    "Subscription",
    "UnsubAck",
    "Unsubscribe",
    "Will",
]


class PacketType(IntEnum):
    """The control packet type, the high nibble of the first byte."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15


class ProtocolVersion(IntEnum):
    """The protocol level byte of CONNECT."""

    V311 = 4
    V5 = 5


class QoS(IntEnum):
    """Quality of service of a publication or subscription."""

    AT_MOST_ONCE = 0
    AT_LEAST_ONCE = 1
    EXACTLY_ONCE = 2


class RetainHandling(IntEnum):
    """MQTT 5 subscription option: when the broker sends retained messages."""

    SEND_ON_SUBSCRIBE = 0
    SEND_IF_NEW_SUBSCRIPTION = 1
    DO_NOT_SEND = 2


@dataclass(frozen=True, slots=True, repr=False)
class Properties:
    """MQTT 5 properties (section 2.2.2). ``None`` or an empty tuple means "absent".

    One class covers every packet type; the codec refuses a property the packet type does not
    allow. Byte-valued flags (``retain_available`` and friends) keep their wire value (0 or 1).
    """

    payload_format_indicator: int | None = None
    message_expiry_interval: int | None = None
    content_type: str | None = None
    response_topic: str | None = None
    correlation_data: bytes | None = None
    subscription_identifiers: tuple[int, ...] = ()
    session_expiry_interval: int | None = None
    assigned_client_identifier: str | None = None
    server_keep_alive: int | None = None
    authentication_method: str | None = None
    authentication_data: bytes | None = None
    request_problem_information: int | None = None
    will_delay_interval: int | None = None
    request_response_information: int | None = None
    response_information: str | None = None
    server_reference: str | None = None
    reason_string: str | None = None
    receive_maximum: int | None = None
    topic_alias_maximum: int | None = None
    topic_alias: int | None = None
    maximum_qos: int | None = None
    retain_available: int | None = None
    user_properties: tuple[tuple[str, str], ...] = ()
    maximum_packet_size: int | None = None
    wildcard_subscription_available: int | None = None
    subscription_identifier_available: int | None = None
    shared_subscription_available: int | None = None

    def __bool__(self) -> bool:
        # identity first: comparing all fields is slow and NO_PROPERTIES is the common case
        return self is not NO_PROPERTIES and self != NO_PROPERTIES

    def __repr__(self) -> str:
        # Only the properties that are present: a full listing of 27 fields hides the few
        # that matter. Authentication data is never shown.
        shown = []
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if value is None or value == ():
                continue
            if name == "authentication_data":
                value = "<hidden>"
            shown.append(
                f"{name}={value!r}" if name != "authentication_data" else f"{name}={value}"
            )
        return f"Properties({', '.join(shown)})"


#: The shared "no properties" value; packets default to it and the decoder returns it.
NO_PROPERTIES = Properties()


@dataclass(frozen=True, slots=True)
class Will:
    """The last will message carried by CONNECT."""

    topic: str
    payload: bytes = b""
    qos: QoS = QoS.AT_MOST_ONCE
    retain: bool = False
    properties: Properties = NO_PROPERTIES


@dataclass(frozen=True, slots=True, repr=False)
class Connect:
    """CONNECT. The password is never shown by ``repr``."""

    client_id: str
    protocol_version: ProtocolVersion = ProtocolVersion.V311
    keep_alive: int = 60
    clean_start: bool = True
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    properties: Properties = NO_PROPERTIES

    def __repr__(self) -> str:
        password = None if self.password is None else "<hidden>"
        props = self.properties
        return (
            f"Connect(client_id={self.client_id!r}, protocol_version={self.protocol_version!r}, "
            f"keep_alive={self.keep_alive!r}, clean_start={self.clean_start!r}, "
            f"username={self.username!r}, password={password}, will={self.will!r}, "
            f"properties={props!r})"
        )


@dataclass(frozen=True, slots=True)
class ConnAck:
    """CONNACK. ``reason_code`` is the v5 reason code or the v3.1.1 return code (0-5)."""

    session_present: bool = False
    reason_code: int = 0
    properties: Properties = NO_PROPERTIES


@dataclass(frozen=True, slots=True)
class Publish:
    """PUBLISH. ``packet_id`` is 0 for QoS 0 (no identifier on the wire)."""

    topic: str
    payload: bytes = b""
    qos: QoS = QoS.AT_MOST_ONCE
    retain: bool = False
    dup: bool = False
    packet_id: int = 0
    properties: Properties = NO_PROPERTIES

    def matches(self, topic_filter: str) -> bool:
        """Whether this message's topic matches ``topic_filter`` (see ``topic_matches``).

        Raises:
            InvalidTopicError: ``topic_filter`` is not a valid topic filter.
        """
        return _topic_matches(self.topic, topic_filter)


@dataclass(frozen=True, slots=True)
class PubAck:
    """PUBACK (QoS 1 acknowledgement)."""

    packet_id: int
    reason_code: int = 0
    properties: Properties = NO_PROPERTIES


@dataclass(frozen=True, slots=True)
class PubRec:
    """PUBREC (QoS 2, part 1)."""

    packet_id: int
    reason_code: int = 0
    properties: Properties = NO_PROPERTIES


@dataclass(frozen=True, slots=True)
class PubRel:
    """PUBREL (QoS 2, part 2)."""

    packet_id: int
    reason_code: int = 0
    properties: Properties = NO_PROPERTIES


@dataclass(frozen=True, slots=True)
class PubComp:
    """PUBCOMP (QoS 2, part 3)."""

    packet_id: int
    reason_code: int = 0
    properties: Properties = NO_PROPERTIES


@dataclass(frozen=True, slots=True)
class Subscription:
    """One topic filter of a SUBSCRIBE with its options (MQTT 5 options default to off)."""

    topic_filter: str
    qos: QoS = QoS.AT_MOST_ONCE
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: RetainHandling = RetainHandling.SEND_ON_SUBSCRIBE


@dataclass(frozen=True, slots=True)
class Subscribe:
    """SUBSCRIBE."""

    packet_id: int
    subscriptions: tuple[Subscription, ...]
    properties: Properties = NO_PROPERTIES


@dataclass(frozen=True, slots=True)
class SubAck:
    """SUBACK: one reason code (granted QoS or failure) per requested filter."""

    packet_id: int
    reason_codes: tuple[int, ...]
    properties: Properties = NO_PROPERTIES


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """UNSUBSCRIBE."""

    packet_id: int
    topic_filters: tuple[str, ...]
    properties: Properties = NO_PROPERTIES


@dataclass(frozen=True, slots=True)
class UnsubAck:
    """UNSUBACK. MQTT 3.1.1 has no reason codes, so ``reason_codes`` is empty there."""

    packet_id: int
    reason_codes: tuple[int, ...] = ()
    properties: Properties = NO_PROPERTIES


@dataclass(frozen=True, slots=True)
class PingReq:
    """PINGREQ."""


@dataclass(frozen=True, slots=True)
class PingResp:
    """PINGRESP."""


@dataclass(frozen=True, slots=True)
class Disconnect:
    """DISCONNECT (sent by either side in MQTT 5; client only in 3.1.1)."""

    reason_code: int = 0
    properties: Properties = NO_PROPERTIES


@dataclass(frozen=True, slots=True)
class Auth:
    """AUTH (MQTT 5 only): enhanced authentication exchange."""

    reason_code: int = 0
    properties: Properties = NO_PROPERTIES


Packet: TypeAlias = (
    Connect
    | ConnAck
    | Publish
    | PubAck
    | PubRec
    | PubRel
    | PubComp
    | Subscribe
    | SubAck
    | Unsubscribe
    | UnsubAck
    | PingReq
    | PingResp
    | Disconnect
    | Auth
)

#: Packet class for each packet type, and back.
PACKET_CLASSES: dict[PacketType, type[Packet]] = {
    PacketType.CONNECT: Connect,
    PacketType.CONNACK: ConnAck,
    PacketType.PUBLISH: Publish,
    PacketType.PUBACK: PubAck,
    PacketType.PUBREC: PubRec,
    PacketType.PUBREL: PubRel,
    PacketType.PUBCOMP: PubComp,
    PacketType.SUBSCRIBE: Subscribe,
    PacketType.SUBACK: SubAck,
    PacketType.UNSUBSCRIBE: Unsubscribe,
    PacketType.UNSUBACK: UnsubAck,
    PacketType.PINGREQ: PingReq,
    PacketType.PINGRESP: PingResp,
    PacketType.DISCONNECT: Disconnect,
    PacketType.AUTH: Auth,
}
PACKET_TYPES: dict[type[Packet], PacketType] = {cls: t for t, cls in PACKET_CLASSES.items()}
