"""trio-mqtt: a Trio-native MQTT 3.1.1 and 5.0 client with a sans-IO protocol core.

The public API is re-exported here; the sans-IO core is in :mod:`trio_mqtt.sansio`, the
synchronous API in :mod:`trio_mqtt.sync` and the test fixtures in :mod:`trio_mqtt.testing`.
"""

from __future__ import annotations

from ._client import Client as Client, SubscriptionRefused as SubscriptionRefused
from ._connection import (
    MqttConnection as MqttConnection,
    open_mqtt_connection as open_mqtt_connection,
)
from ._core._config import QueueFullPolicy as QueueFullPolicy
from ._core._errors import (
    BeforeConnectError as BeforeConnectError,
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
    PublishDiscarded as PublishDiscarded,
    QueueFullError as QueueFullError,
    RemoteProtocolError as RemoteProtocolError,
    RequestsDone as RequestsDone,
    SessionStoreError as SessionStoreError,
    TransportError as TransportError,
    UnknownPacketIdError as UnknownPacketIdError,
)
from ._core._events import (
    ConnectionEvent as ConnectionEvent,
    Disconnected as Disconnected,
    Incoming as Incoming,
    Outgoing as Outgoing,
    PublishDropped as PublishDropped,
    Reconnecting as Reconnecting,
    SessionLost as SessionLost,
)
from ._core._packets import (
    ConnAck as ConnAck,
    Properties as Properties,
    ProtocolVersion as ProtocolVersion,
    Publish as Publish,
    QoS as QoS,
    RetainHandling as RetainHandling,
    Subscription as Subscription,
    Will as Will,
)
from ._core._reason_codes import (
    ConnectReturnCode as ConnectReturnCode,
    ReasonCode as ReasonCode,
)
from ._core._throttle import Throttle as Throttle
from ._core._topics import topic_matches as topic_matches
from ._dispatch import MessageStream as MessageStream
from ._options import MqttOptions as MqttOptions, ReconnectPolicy as ReconnectPolicy
from ._requests import (
    PublishResult as PublishResult,
    SubscribeResult as SubscribeResult,
    Tracker as Tracker,
    UnsubscribeResult as UnsubscribeResult,
)
from ._statistics import ConnectionStatistics as ConnectionStatistics
from ._store import (
    MemorySessionStore as MemorySessionStore,
    SessionStore as SessionStore,
    SqliteSessionStore as SqliteSessionStore,
)
from ._transports import (
    CertificateVerificationError as CertificateVerificationError,
    HttpProxy as HttpProxy,
    ProxyError as ProxyError,
    Socks5Proxy as Socks5Proxy,
    StreamLayer as StreamLayer,
    TcpTransport as TcpTransport,
    TlsConfigurationError as TlsConfigurationError,
    TlsError as TlsError,
    TlsTransport as TlsTransport,
    Transport as Transport,
    UnixSocketTransport as UnixSocketTransport,
    WebSocketError as WebSocketError,
    WebSocketRequest as WebSocketRequest,
    WebSocketTransport as WebSocketTransport,
)
from ._url import proxy_from_url as proxy_from_url

__version__ = "0.1.0"

__all__ = [
    "BeforeConnectError",
    "CertificateVerificationError",
    "Client",
    "ConnAck",
    "ConnectReturnCode",
    "ConnectTimeout",
    "ConnectionClosed",
    "ConnectionEvent",
    "ConnectionLost",
    "ConnectionRefused",
    "ConnectionStatistics",
    "Disconnected",
    "DisconnectedByBroker",
    "HttpProxy",
    "Incoming",
    "InvalidOptionError",
    "InvalidTopicError",
    "KeepAliveTimeout",
    "LocalProtocolError",
    "MalformedPacketError",
    "MemorySessionStore",
    "MessageStream",
    "MqttConnection",
    "MqttError",
    "MqttOptions",
    "Outgoing",
    "PacketTooLargeError",
    "Properties",
    "ProtocolError",
    "ProtocolVersion",
    "ProxyError",
    "Publish",
    "PublishDiscarded",
    "PublishDropped",
    "PublishResult",
    "QoS",
    "QueueFullError",
    "QueueFullPolicy",
    "ReasonCode",
    "ReconnectPolicy",
    "Reconnecting",
    "RemoteProtocolError",
    "RequestsDone",
    "RetainHandling",
    "SessionLost",
    "SessionStore",
    "SessionStoreError",
    "Socks5Proxy",
    "SqliteSessionStore",
    "StreamLayer",
    "SubscribeResult",
    "Subscription",
    "SubscriptionRefused",
    "TcpTransport",
    "Throttle",
    "TlsConfigurationError",
    "TlsError",
    "TlsTransport",
    "Tracker",
    "Transport",
    "UnixSocketTransport",
    "UnknownPacketIdError",
    "UnsubscribeResult",
    "WebSocketError",
    "WebSocketRequest",
    "WebSocketTransport",
    "Will",
    "open_mqtt_connection",
    "proxy_from_url",
    "topic_matches",
]
