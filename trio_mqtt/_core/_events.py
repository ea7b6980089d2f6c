"""Events the session state machine reports to the layer above.

Every packet received becomes :class:`Incoming` (a QoS 2 PUBLISH the broker re-sends for a
packet id we still hold is the one exception: it is answered but not delivered twice). Every
packet sent becomes :class:`Outgoing`. Requests that were given a ``tag`` report their outcome
once with a ``*Done`` event carrying that tag, which is how the Trio layer wakes a caller that
awaits the broker's answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from ._errors import MqttError
from ._packets import (
    NO_PROPERTIES,
    Packet,
    PacketType,
    Properties,
    PubAck,
    PubComp,
    Publish,
    PubRec,
)

__all__ = [
    "ConnectionEvent",
    "Disconnected",
    "Event",
    "Incoming",
    "Outgoing",
    "PublishDone",
    "PublishDropped",
    "ReauthDone",
    "Reconnecting",
    "SessionLost",
    "StrayAck",
    "SubscribeDone",
    "UnsubscribeDone",
]


# Incoming and Outgoing are built for every packet, so they are plain slotted dataclasses:
# a frozen dataclass's __init__ costs several times more. Treat them as read-only.
@dataclass(slots=True)
class Incoming:
    """A packet arrived from the broker (aliased topics already resolved)."""

    packet: Packet


@dataclass(slots=True)
class Outgoing:
    """A packet was handed to the transport."""

    packet: Packet

    @property
    def type(self) -> PacketType:
        """The packet's control packet type."""
        from ._packets import PACKET_TYPES

        return PACKET_TYPES[type(self.packet)]

    @property
    def packet_id(self) -> int:
        """The packet identifier, or 0 for packets without one."""
        return getattr(self.packet, "packet_id", 0)


@dataclass(frozen=True, slots=True)
class PublishDone:
    """A tagged publish finished: QoS 0 written, QoS 1 PUBACK, QoS 2 PUBCOMP or failing PUBREC.

    ``reason_code`` is the broker's (always 0 for MQTT 3.1.1 and QoS 0); codes of 0x80 and
    above mean the broker refused the message.
    """

    tag: object
    packet_id: int
    reason_code: int = 0
    properties: Properties = NO_PROPERTIES


#: :attr:`PublishDropped.reason` values.
DROPPED_SESSION_LOST = "session lost"
DROPPED_EXPIRED = "expired"
DROPPED_QUEUE_FULL = "queue full"
DROPPED_STORE_FAILED = "store failed"


@dataclass(frozen=True, slots=True)
class PublishDropped:
    """A publish was given up before the broker had it, for ``reason``:

    * ``"session lost"``: a QoS 1/2 publish in flight when the broker lost the session
      (``resend_on_session_loss=False``);
    * ``"expired"``: its MQTT 5 message expiry interval passed while it waited to be sent;
    * ``"queue full"``: the oldest waiting publish, dropped by the ``"drop_oldest"`` policy
      to admit a new one;
    * ``"store failed"``: a QoS 1/2 publish whose commit to the durable session store failed
      (it was never sent).
    """

    tag: object
    publish: Publish
    reason: str = DROPPED_SESSION_LOST


@dataclass(frozen=True, slots=True)
class SubscribeDone:
    """A tagged SUBSCRIBE was answered; one reason code (granted QoS or failure) per filter."""

    tag: object
    packet_id: int
    reason_codes: tuple[int, ...]
    properties: Properties = NO_PROPERTIES


@dataclass(frozen=True, slots=True)
class UnsubscribeDone:
    """A tagged UNSUBSCRIBE was answered (MQTT 3.1.1 brokers give no reason codes)."""

    tag: object
    packet_id: int
    reason_codes: tuple[int, ...]
    properties: Properties = NO_PROPERTIES


@dataclass(frozen=True, slots=True)
class SessionLost:
    """The broker answered a reconnect with session present = 0 while we held session state.

    Attributes:
        resent: QoS 1/2 publishes sent again as new messages (new packet ids).
        dropped: publishes given up (``resend_on_session_loss=False``); each also got a
            :class:`PublishDropped`.
        completed: QoS 2 publishes already acknowledged by PUBREC, taken as delivered.
        resubscribed: topic filters subscribed again (``restore_subscriptions=True``).
    """

    resent: int
    dropped: int
    completed: int
    resubscribed: int


@dataclass(frozen=True, slots=True)
class ReauthDone:
    """A tagged MQTT 5 re-authentication ended with the broker's AUTH success."""

    tag: object


@dataclass(frozen=True, slots=True)
class StrayAck:
    """The broker acknowledged a packet id no flow held; the ack was ignored.

    Reported next to the ack's :class:`~trio_mqtt.Incoming` event, for the layer above to log;
    :attr:`SessionStatistics.stray_acks` counts them.
    """

    packet: PubAck | PubRec | PubComp


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection was lost; a reconnect policy will try again.

    Only reported when a :class:`~trio_mqtt.ReconnectPolicy` is set; without one the error is
    raised from :meth:`~trio_mqtt.MqttConnection.poll` instead.
    """

    error: MqttError


@dataclass(frozen=True, slots=True)
class Reconnecting:
    """The reconnect policy is about to try again after ``delay`` seconds (attempt 1, 2, ...).

    ``error`` is what ended the connection or failed the previous attempt.
    """

    attempt: int
    delay: float
    error: MqttError | None = None


#: What the state machine reports to the Trio layer.
Event: TypeAlias = (
    Incoming
    | Outgoing
    | PublishDone
    | PublishDropped
    | SubscribeDone
    | UnsubscribeDone
    | SessionLost
    | ReauthDone
    | StrayAck
)

#: What :meth:`~trio_mqtt.MqttConnection.poll` returns: every event an application sees.
ConnectionEvent: TypeAlias = (
    Incoming | Outgoing | Disconnected | Reconnecting | SessionLost | PublishDropped
)
