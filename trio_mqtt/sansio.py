"""The sans-IO protocol core: packets, codec, topics and the session state machine.

Nothing here performs I/O, reads a clock or imports trio, so it can drive MQTT over any I/O
framework, or be tested without sockets. The Trio layer (:func:`trio_mqtt.open_mqtt_connection`)
is built on exactly these pieces.
"""

from __future__ import annotations

from ._core._codec import (
    PacketDecoder as PacketDecoder,
    decode_packet as decode_packet,
    encode as encode,
    encoded_size as encoded_size,
)
from ._core._config import Authenticator as Authenticator, SessionConfig as SessionConfig
from ._core._events import (
    Event as Event,
    Incoming as Incoming,
    Outgoing as Outgoing,
    PublishDone as PublishDone,
    PublishDropped as PublishDropped,
    SessionLost as SessionLost,
    SubscribeDone as SubscribeDone,
    UnsubscribeDone as UnsubscribeDone,
)
from ._core._packets import (
    NO_PROPERTIES as NO_PROPERTIES,
    Auth as Auth,
    ConnAck as ConnAck,
    Connect as Connect,
    Disconnect as Disconnect,
    Packet as Packet,
    PacketType as PacketType,
    PingReq as PingReq,
    PingResp as PingResp,
    Properties as Properties,
    ProtocolVersion as ProtocolVersion,
    PubAck as PubAck,
    PubComp as PubComp,
    Publish as Publish,
    PubRec as PubRec,
    PubRel as PubRel,
    QoS as QoS,
    RetainHandling as RetainHandling,
    SubAck as SubAck,
    Subscribe as Subscribe,
    Subscription as Subscription,
    UnsubAck as UnsubAck,
    Unsubscribe as Unsubscribe,
    Will as Will,
)
from ._core._state import (
    ClientState as ClientState,
    ConnectionState as ConnectionState,
    SessionSnapshot as SessionSnapshot,
    SessionStatistics as SessionStatistics,
)
from ._core._topics import (
    FilterTree as FilterTree,
    has_wildcards as has_wildcards,
    matches as matches,
    parse_shared as parse_shared,
    valid_filter as valid_filter,
    valid_topic as valid_topic,
    validate_filter as validate_filter,
    validate_topic as validate_topic,
)
from ._store._base import ChangeKind as ChangeKind, SessionChange as SessionChange

__all__ = [
    "NO_PROPERTIES",
    "Auth",
    "Authenticator",
    "ChangeKind",
    "ClientState",
    "ConnAck",
    "Connect",
    "ConnectionState",
    "Disconnect",
    "Event",
    "FilterTree",
    "Incoming",
    "Outgoing",
    "Packet",
    "PacketDecoder",
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
    "PublishDone",
    "PublishDropped",
    "QoS",
    "RetainHandling",
    "SessionChange",
    "SessionConfig",
    "SessionLost",
    "SessionSnapshot",
    "SessionStatistics",
    "SubAck",
    "Subscribe",
    "SubscribeDone",
    "Subscription",
    "UnsubAck",
    "Unsubscribe",
    "UnsubscribeDone",
    "Will",
    "decode_packet",
    "encode",
    "encoded_size",
    "has_wildcards",
    "matches",
    "parse_shared",
    "valid_filter",
    "valid_topic",
    "validate_filter",
    "validate_topic",
]
