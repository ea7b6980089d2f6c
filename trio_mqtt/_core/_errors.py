"""The exception tree shared by the sans-IO core and the Trio layer.

Every error trio-mqtt raises on purpose derives from :class:`MqttError`. Protocol errors say who
broke the rules: :class:`RemoteProtocolError` when the broker (or whatever sits at the other end)
sent something the spec forbids, :class:`LocalProtocolError` when our own application asked for
something that cannot be sent. The sans-IO core raises these; the Trio layer adds the
connection-level errors and translates trio/ssl/OS errors at a single seam.
"""

from __future__ import annotations

from ._reason_codes import ReasonCode

__all__ = [
    "BeforeConnectError",
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
    "PublishDiscarded",
    "QueueFullError",
    "RemoteProtocolError",
    "RequestsDone",
    "SessionStoreError",
    "TransportError",
    "UnknownPacketIdError",
]


class MqttError(Exception):
    """Base class of every error trio-mqtt raises deliberately."""


class InvalidOptionError(MqttError, ValueError):
    """An option or argument has a value that can never work (raised at construction time)."""


class ProtocolError(MqttError):
    """The MQTT protocol was broken; :attr:`reason_code` is the MQTT 5 code that describes it."""

    #: Reason code a v5 DISCONNECT would carry for this error.
    reason_code: ReasonCode = ReasonCode.PROTOCOL_ERROR

    def __init__(self, message: str, *, reason_code: ReasonCode | None = None) -> None:
        super().__init__(message)
        if reason_code is not None:
            self.reason_code = reason_code


class RemoteProtocolError(ProtocolError):
    """The peer (normally the broker) sent something the MQTT spec forbids.

    The connection cannot continue; for MQTT 5 the client sends DISCONNECT with
    :attr:`reason_code` before closing.
    """


class MalformedPacketError(RemoteProtocolError):
    """Received bytes do not form a valid packet.

    Attributes:
        field: the packet field being decoded when the problem was found.
        offset: byte offset of the problem inside the packet (0 = fixed header), or -1.
    """

    reason_code = ReasonCode.MALFORMED_PACKET

    def __init__(
        self,
        message: str,
        *,
        field: str = "",
        offset: int = -1,
        reason_code: ReasonCode | None = None,
    ) -> None:
        where = []
        if field:
            where.append(f"field {field!r}")
        if offset >= 0:
            where.append(f"offset {offset}")
        full = f"{message} ({', '.join(where)})" if where else message
        super().__init__(full, reason_code=reason_code)
        self.field = field
        self.offset = offset


class LocalProtocolError(ProtocolError):
    """The application asked for something that breaks the protocol or a negotiated limit.

    Nothing was sent and the connection is unaffected.
    """


class InvalidTopicError(LocalProtocolError, ValueError):
    """A topic name or topic filter is not valid (MQTT-4.7)."""

    reason_code = ReasonCode.TOPIC_NAME_INVALID


class PacketTooLargeError(LocalProtocolError):
    """An outgoing packet would exceed the maximum packet size (ours or the broker's)."""

    reason_code = ReasonCode.PACKET_TOO_LARGE

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"packet of {size} bytes exceeds the maximum packet size of {limit} bytes "
            "(max_outgoing_packet_size raises ours; an MQTT 5 broker's Maximum Packet Size "
            "cannot be raised from here)"
        )
        self.size = size
        self.limit = limit


class UnknownPacketIdError(LocalProtocolError):
    """A manual ack named a packet id that is not awaiting an ack from the application."""


class ConnectionRefused(MqttError):
    """The broker answered CONNECT with a failure code.

    Attributes:
        reason_code: the v5 reason code, or the v3.1.1 return code (1-5) as an int.
        reason_string: the v5 Reason String property, if the broker sent one.
        server_reference: the v5 Server Reference property (with 0x9C "use another server"
            or 0x9D "server moved"), if the broker sent one.
    """

    def __init__(
        self,
        reason_code: int,
        reason_string: str | None = None,
        server_reference: str | None = None,
    ) -> None:
        try:
            name = ReasonCode(reason_code).name if reason_code >= 0x80 else None
        except ValueError:
            name = None
        label = name or _V311_RETURN_CODES.get(reason_code, "unknown reason")
        message = f"connection refused by the broker: {label} (0x{reason_code:02x})"
        if reason_string:
            message += f": {reason_string}"
        if server_reference:
            message += f" (server reference: {server_reference})"
        super().__init__(message)
        self.reason_code = reason_code
        self.reason_string = reason_string
        self.server_reference = server_reference


_V311_RETURN_CODES = {
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


class ConnectionLost(MqttError):
    """The network connection ended or failed; polling again reconnects."""


class TransportError(ConnectionLost):
    """Opening or using the transport failed (DNS, TCP, TLS, WebSocket, proxy)."""


class ConnectTimeout(ConnectionLost):
    """No CONNACK arrived within the connect timeout."""


class KeepAliveTimeout(ConnectionLost):
    """The broker did not answer a PINGREQ in time: the link is taken to be half-open."""


class DisconnectedByBroker(ConnectionLost):
    """The broker sent DISCONNECT (MQTT 5) with :attr:`reason_code`.

    Attributes:
        reason_code: the reason code.
        reason_string: the Reason String property, if the broker sent one.
        server_reference: the Server Reference property, if the broker sent one.
    """

    def __init__(
        self,
        reason_code: int,
        reason_string: str | None = None,
        server_reference: str | None = None,
    ) -> None:
        try:
            label = ReasonCode(reason_code).name
        except ValueError:
            label = "unknown reason"
        message = f"disconnected by the broker: {label} (0x{reason_code:02x})"
        if reason_string:
            message += f": {reason_string}"
        if server_reference:
            message += f" (server reference: {server_reference})"
        super().__init__(message)
        self.reason_code = reason_code
        self.reason_string = reason_string
        self.server_reference = server_reference


class BeforeConnectError(MqttError):
    """The ``before_connect`` hook raised, took too long, or returned unusable options.

    It counts as a failed connection attempt (a reconnect policy waits and tries again); the
    hook's own exception is the ``__cause__``.
    """


class ConnectionClosed(MqttError):
    """The connection was closed locally (DISCONNECT sent or the block left); no reconnect."""


class RequestsDone(MqttError):
    """Every client handle was closed, so the connection finished after a local close."""


class QueueFullError(MqttError):
    """A publish was refused because the queue of unsent publishes is full (``queue_full``
    policy ``"reject"``); nothing was admitted."""


class PublishDiscarded(MqttError):
    """An admitted publish was given up before it was sent: its MQTT 5 message expiry passed
    while it waited, or the ``"drop_oldest"`` policy made room for a newer one."""


class SessionStoreError(MqttError):
    """The session store failed (its exception is the ``__cause__``).

    Raised from ``publish()`` when the publish could not be committed to a durable store: it
    was not admitted, and nothing of it was sent. Also ends the network connection when a
    commit before sending fails.
    """
