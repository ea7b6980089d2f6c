"""trio-mqtt: a Trio-native MQTT 3.1.1 and 5.0 client with a sans-IO protocol core."""

from __future__ import annotations

from ._core._errors import (
    ConnectionClosed as ConnectionClosed,
    ConnectionLost as ConnectionLost,
    ConnectionRefused as ConnectionRefused,
    ConnectTimeout as ConnectTimeout,
    DisconnectedByBroker as DisconnectedByBroker,
    InvalidOptionError as InvalidOptionError,
    InvalidTopicError as InvalidTopicError,
    KeepAliveTimeout as KeepAliveTimeout,
    LocalProtocolError as LocalProtocolError,
    MalformedPacketError as MalformedPacketError,
    MqttError as MqttError,
    PacketTooLargeError as PacketTooLargeError,
    ProtocolError as ProtocolError,
    RemoteProtocolError as RemoteProtocolError,
    RequestsDone as RequestsDone,
    TransportError as TransportError,
    UnknownPacketIdError as UnknownPacketIdError,
)
from ._core._packets import (
    ProtocolVersion as ProtocolVersion,
    QoS as QoS,
    RetainHandling as RetainHandling,
)
from ._core._reason_codes import (
    ConnectReturnCode as ConnectReturnCode,
    ReasonCode as ReasonCode,
)

__version__ = "0.1.0"

__all__ = [
    "ConnectReturnCode",
    "ConnectTimeout",
    "ConnectionClosed",
    "ConnectionLost",
    "ConnectionRefused",
    "DisconnectedByBroker",
    "InvalidOptionError",
    "InvalidTopicError",
    "KeepAliveTimeout",
    "LocalProtocolError",
    "MalformedPacketError",
    "MqttError",
    "PacketTooLargeError",
    "ProtocolError",
    "ProtocolVersion",
    "QoS",
    "ReasonCode",
    "RemoteProtocolError",
    "RequestsDone",
    "RetainHandling",
    "TransportError",
    "UnknownPacketIdError",
]
