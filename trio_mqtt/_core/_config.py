"""Settings of one client session, as the sans-IO state machine needs them.

The Trio layer's :class:`~trio_mqtt.MqttOptions` validates user input and builds one of these;
the state machine trusts it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from ._packets import NO_PROPERTIES, Properties, ProtocolVersion, Will
from ._throttle import Throttle

__all__ = ["Authenticator", "QueueFullPolicy", "SessionConfig"]


class Authenticator(Protocol):
    """MQTT 5 enhanced authentication (AUTH packets), e.g. SCRAM or Kerberos.

    The state machine puts :attr:`method` and :meth:`initial_data` into CONNECT (and into AUTH
    0x19 for re-authentication), calls :meth:`challenge` for every AUTH 0x18 from the broker and
    sends back what it returns, and calls :meth:`complete` with the broker's final data when the
    exchange succeeds (CONNACK 0x00 or AUTH 0x00).
    """

    method: str

    def initial_data(self) -> bytes | None:
        """Authentication data for CONNECT or for a re-authentication AUTH."""
        ...

    def challenge(self, data: bytes | None) -> bytes | None:
        """Answer one challenge from the broker."""
        ...

    def complete(self, data: bytes | None) -> None:
        """The broker accepted the exchange; ``data`` is its final authentication data."""
        ...


class QueueFullPolicy(str, enum.Enum):
    """What a publish gets when ``max_queued`` publishes already wait to be sent."""

    #: wait (cancellably, in FIFO order) until one is sent, as for a full window
    BLOCK = "block"
    #: raise :class:`~trio_mqtt.QueueFullError` at the call; nothing is admitted
    REJECT = "reject"
    #: give up the oldest waiting publish (counted, reported and logged) and admit the new one
    DROP_OLDEST = "drop_oldest"


@dataclass(frozen=True, slots=True, repr=False)
class SessionConfig:
    """What the state machine needs to know about the session it runs.

    Attributes:
        client_id: client identifier ("" lets a v5 broker assign one, which is then adopted).
        protocol_version: 3.1.1 or 5.0.
        keep_alive: seconds of silence (either direction) before a PINGREQ; 0 disables it.
        ping_timeout: seconds to wait for PINGRESP before the link counts as dead.
        clean_start: clean session (3.1.1) / clean start (5.0) flag sent on every CONNECT.
        username, password, will: CONNECT fields.
        connect_properties: v5 CONNECT properties set by the user (session expiry, user
            properties, request/response information...). Receive Maximum, Maximum Packet Size
            and Topic Alias Maximum are filled in from the fields below.
        inflight: our outgoing window: QoS 1/2 publishes awaiting acknowledgement at once;
            the broker's Receive Maximum can lower it.
        receive_maximum: incoming window we advertise (v5) and enforce.
        max_incoming_packet_size: largest packet we accept (advertised in v5 CONNECT).
        max_outgoing_packet_size: largest packet we send; the broker's limit can lower it.
        topic_alias_maximum: incoming topic aliases we accept (v5; 0 = none).
        outgoing_topic_aliases: assign topic aliases to outgoing publishes automatically (v5).
        manual_acks: the application acknowledges incoming QoS 1/2 publishes itself.
        resend_on_session_loss: after the broker lost the session, send unacknowledged QoS 1/2
            publishes again as new messages (True) or drop and report them (False).
        restore_subscriptions: after the broker lost the session, subscribe again to every
            filter this session subscribed to.
        authenticator: v5 enhanced authentication, or None.
        throttle: a rate limit for outgoing publishes (replays included), or None.
        max_queued: publishes (any QoS) that may wait to be sent: window full, not
            connected, or not yet committed to a durable store.
        queue_full: what a publish gets when ``max_queued`` already wait.
    """

    client_id: str
    protocol_version: ProtocolVersion = ProtocolVersion.V311
    keep_alive: int = 60
    ping_timeout: float = 10.0
    clean_start: bool = True
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    connect_properties: Properties = NO_PROPERTIES
    inflight: int = 100
    receive_maximum: int = 65535
    max_incoming_packet_size: int = 1024 * 1024
    max_outgoing_packet_size: int = 268_435_460  # the protocol's maximum
    topic_alias_maximum: int = 0
    outgoing_topic_aliases: bool = False
    manual_acks: bool = False
    resend_on_session_loss: bool = True
    restore_subscriptions: bool = True
    authenticator: Authenticator | None = None
    throttle: Throttle | None = None
    max_queued: int = 100
    queue_full: QueueFullPolicy = QueueFullPolicy.BLOCK

    def __repr__(self) -> str:
        return (
            f"SessionConfig(client_id={self.client_id!r}, "
            f"protocol_version={self.protocol_version!r}, keep_alive={self.keep_alive!r}, "
            f"clean_start={self.clean_start!r}, username={self.username!r}, "
            f"password={'<hidden>' if self.password is not None else None}, ...)"
        )
