"""Shared plumbing of the client session: connection states, counters, flows, the wire queue.

:class:`_SessionBase` holds every attribute of the session and the few helpers all parts use
(queueing a packet for the wire, failing the connection on a broker's protocol error). The
outgoing and incoming halves of the protocol live in ``_outgoing.py`` and ``_incoming.py`` as
mixins over it; ``_state.py`` assembles them into :class:`~trio_mqtt._core._state.ClientState`.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple, NoReturn

from ._codec import PacketDecoder, encode
from ._config import SessionConfig
from ._errors import RemoteProtocolError
from ._events import Event, Incoming, Outgoing
from ._packets import (
    ConnAck,
    Disconnect,
    Packet,
    Properties,
    ProtocolVersion,
    Publish,
    PubRel,
    QoS,
    Subscribe,
    Subscription,
    Unsubscribe,
)
from ._reason_codes import ReasonCode
from ._throttle import RateLimiter

__all__ = ["ConnectionState", "QueuedPublish", "SessionSnapshot", "SessionStatistics"]

#: Largest packet MQTT can express (fixed header included); "no limit" in MQTT 5 negotiation.
MQTT_MAX_PACKET = 268_435_460
QOS_BY_VALUE = {0: QoS.AT_MOST_ONCE, 1: QoS.AT_LEAST_ONCE, 2: QoS.EXACTLY_ONCE}

# Outgoing flow kinds (values of _Flow.kind).
AWAIT_PUBACK = 1
AWAIT_PUBREC = 2
AWAIT_PUBCOMP = 3
AWAIT_SUBACK = 4
AWAIT_UNSUBACK = 5

# Incoming publish states (values of ``_incoming``).
IN_QOS1_UNACKED = 1
IN_QOS2_UNACKED = 2
IN_QOS2_RECEIVED = 3


class ConnectionState(enum.Enum):
    """Where the current network connection stands."""

    #: No transport (initial state, or after :meth:`ClientState.connection_lost`).
    DISCONNECTED = "disconnected"
    #: CONNECT queued, CONNACK not yet received.
    CONNECTING = "connecting"
    #: The broker accepted the connection (CONNACK); requests flow.
    CONNECTED = "connected"
    #: DISCONNECT queued by :meth:`ClientState.disconnect`; nothing more is sent.
    CLOSED = "closed"


@dataclass(slots=True)
class SessionStatistics:
    """Counters of one :class:`ClientState` (they survive reconnects).

    Attributes:
        packets_sent, packets_received: control packets queued to / decoded from the wire.
        bytes_sent, bytes_received: bytes queued to / fed from the wire.
        publishes_sent, publishes_received: PUBLISH packets among those (replays included).
        retransmissions: PUBLISH and PUBREL packets re-sent after a session resumed.
        duplicates_suppressed: incoming QoS 2 retransmissions answered but not delivered again.
        pings_sent: PINGREQ packets sent.
        publishes_discarded: admitted publishes refused at send time because a limit the broker
            announced later (packet size, maximum QoS, retain) forbids them; each completes
            with a failing reason code.
        sessions_lost: reconnects where the broker had lost our session state.
        stray_acks: PUBACK, PUBREC and PUBCOMP packets for packet ids that no flow held;
            ignored (a PUBREC is answered with PUBREL).
        publishes_expired: waiting publishes dropped because their MQTT 5 message expiry
            interval passed before they could be sent.
        publishes_dropped_oldest: waiting publishes dropped by the ``"drop_oldest"`` queue
            policy to admit newer ones.
    """

    packets_sent: int = 0
    packets_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    publishes_sent: int = 0
    publishes_received: int = 0
    retransmissions: int = 0
    duplicates_suppressed: int = 0
    pings_sent: int = 0
    publishes_discarded: int = 0
    sessions_lost: int = 0
    stray_acks: int = 0
    publishes_expired: int = 0
    publishes_dropped_oldest: int = 0


class QueuedPublish(NamedTuple):
    """A QoS 1/2 publish that was admitted and not yet sent, as a session snapshot keeps it.

    Attributes:
        number: its place in the queue (increasing in admission order; a durable store keys
            its row by it). 0 when the session does not number its queue.
        publish: the message (its packet id is a placeholder: it gets one when sent).
        waited: seconds it had waited when the snapshot was taken (MQTT 5 message expiry
            counts from admission).
    """

    number: int
    publish: Publish
    waited: float = 0.0


@dataclass(frozen=True, slots=True)
class SessionSnapshot:
    """The part of a client session that must outlive the process (see ``export_session``).

    Attributes:
        outgoing: the unfinished outgoing QoS 1/2 flows in send order: a
            :class:`~trio_mqtt.Publish` (with its packet id) awaits PUBACK or PUBREC, a
            ``PubRel`` awaits PUBCOMP.
        incoming: packet ids of incoming QoS 2 messages we answered with PUBREC and whose
            PUBREL has not arrived yet (delivering them again would duplicate them).
        queued: QoS 1/2 publishes admitted but not yet sent, in queue order (QoS 0 ones are
            not kept).
    """

    outgoing: tuple[Publish | PubRel, ...] = ()
    incoming: tuple[int, ...] = ()
    queued: tuple[QueuedPublish, ...] = ()


class Flow:
    """One outgoing exchange holding a packet id."""

    __slots__ = ("kind", "packet", "tag")

    def __init__(self, kind: int, packet: Publish | Subscribe | Unsubscribe, tag: object) -> None:
        self.kind = kind
        self.packet = packet
        self.tag = tag


#: Shared stand-ins for deques most sessions never fill (an empty deque costs 760 bytes).
#: ``maxlen=0`` makes any append a no-op, so one instance can never leak into another;
#: the code that may add to them first swaps in a deque of its own.
NO_FLOWS: deque[Flow] = deque(maxlen=0)
NO_ACK_ORDER: deque[int] = deque(maxlen=0)


class _SessionBase:
    """Attributes and wire helpers shared by the outgoing and incoming mixins."""

    # A ClientState has about fifty attributes: past thirty, an instance dict stops sharing
    # its keys and costs about 1.6 KiB per connection; slots cost a few bytes each.
    __slots__ = (
        "_ack_order",
        "_app_aliases",
        "_broker_alias_max",
        "_decoder",
        "_deferred",
        "_early_acks",
        "_events",
        "_flows",
        "_id_tail",
        "_in_aliases",
        "_incoming",
        "_inflight",
        "_keep_alive",
        "_last_id",
        "_last_received",
        "_last_sent",
        "_limiter",
        "_limits_learned",
        "_max_out",
        "_max_qos",
        "_now",
        "_out",
        "_out_alias_max",
        "_out_aliases",
        "_ping_outstanding",
        "_ping_wait_start",
        "_queue_durable",
        "_queue_expiring",
        "_queue_front",
        "_queue_log",
        "_queue_next",
        "_queue_released",
        "_reader_paused",
        "_reauth_pending",
        "_reauth_tag",
        "_retain_available",
        "_session_expiry",
        "_subscriptions",
        "_v5",
        "_valid_topics",
        "_version",
        "_waiting",
        "_wire_aliases",
        "_wire_open",
        "client_id",
        "config",
        "connack",
        "state",
        "statistics",
        "window",
    )

    def __init__(self, config: SessionConfig) -> None:
        self.config = config
        self._version = config.protocol_version
        self._v5 = config.protocol_version == ProtocolVersion.V5
        #: Current connection state.
        self.state = ConnectionState.DISCONNECTED
        #: The CONNACK of the current connection (None before it arrives).
        self.connack: ConnAck | None = None
        #: Counters; see :class:`SessionStatistics`.
        self.statistics = SessionStatistics()
        #: Client identifier used on CONNECT (a broker-assigned one is adopted).
        self.client_id = config.client_id
        #: The outgoing window now, min(config.inflight, the broker's Receive Maximum).
        self.window = config.inflight
        self._decoder: PacketDecoder | None = None
        self._out: list[bytes] = []
        self._events: list[Event] = []
        self._wire_open = False
        # Outgoing session state.
        self._flows: dict[int, Flow] = {}
        self._inflight = 0
        # (publish with placeholder id, tag, its encoding, queue number, admission time) for
        # each admitted, unsent publish (see _queue.py)
        self._waiting: deque[tuple[Publish, object, bytes, int, float]] = deque()
        # Durable queue (see _queue.py): numbering on, next number at each end, highest
        # number allowed out, and the changes not yet taken by the store.
        self._queue_durable = False
        self._queue_next = 1
        self._queue_front = 0
        self._queue_released = 0
        self._queue_log: list[tuple[int, int, Publish | None, float]] = []
        # at least the number of waiting publishes with a Message Expiry Interval (0: none
        # can expire, so the queue need not be scanned)
        self._queue_expiring = 0
        # bytes after the packet id of a PUBLISH without properties, payload excluded
        self._id_tail = 2 + (1 if self._v5 else 0)
        self._last_id = 0
        # replayed PUBLISH flows held back by a Receive Maximum that shrank across a reconnect
        # (rare: the shared empty NO_FLOWS until the replay that needs a deque of its own)
        self._deferred: deque[Flow] = NO_FLOWS
        self._subscriptions: dict[str, tuple[Subscription, Properties]] = {}
        # Incoming session state.
        self._incoming: dict[int, int] = {}
        # Manual acks (MQTT-4.6.0-2): ids delivered and not yet acknowledged on the wire, in
        # the order they arrived, and the acks the application gave ahead of an earlier one.
        # Without manual acks nothing is ever added: a shared empty deque stands in.
        self._ack_order: deque[int] = deque() if config.manual_acks else NO_ACK_ORDER
        self._early_acks: dict[int, tuple[int, Properties]] = {}
        # Per-connection state.
        self._max_out = config.max_outgoing_packet_size
        self._max_qos = 2
        self._retain_available = True
        # True when the broker announced a QoS, retain or size limit below our defaults.
        self._limits_learned = False
        self._keep_alive = config.keep_alive
        self._session_expiry = config.connect_properties.session_expiry_interval or 0
        self._in_aliases: dict[int, str] = {}
        # topic -> alias, least recently used first (a plain dict keeps insertion order)
        self._out_aliases: dict[str, int] = {}
        self._out_alias_max = 0
        # The outgoing rate limit (None: publishes go as fast as the window allows).
        self._limiter = None if config.throttle is None else RateLimiter(config.throttle, 0.0)
        # The broker's Topic Alias Maximum (last CONNACK), for aliases the application sets.
        self._broker_alias_max = 0
        # Explicit aliases: alias -> topic as the application defined them (the whole session),
        # and alias -> topic as the broker knows them on this connection.
        self._app_aliases: dict[int, str] = {}
        self._wire_aliases: dict[int, str] = {}
        self._reauth_pending = False
        self._reauth_tag: object = None
        self._now = 0.0
        self._last_sent = 0.0
        self._last_received = 0.0
        self._ping_outstanding = False
        self._ping_wait_start = 0.0
        self._reader_paused = False
        self._valid_topics: set[str] = set()

    @property
    def session_expiry_interval(self) -> int:
        """Seconds the broker keeps the session after a disconnection (MQTT 5).

        The value sent in CONNECT, replaced by the broker's when its CONNACK carries one.
        """
        return self._session_expiry

    @property
    def inflight_count(self) -> int:
        """Outgoing QoS 1/2 publishes holding a window slot."""
        return self._inflight

    @property
    def throttled_time(self) -> float:
        """Seconds publishes waited for the rate limit so far (0 without a throttle)."""
        return 0.0 if self._limiter is None else self._limiter.throttled_time

    @property
    def held_ack_count(self) -> int:
        """Manual acks given by the application but held until earlier messages are acked."""
        return len(self._early_acks)

    @property
    def waiting_count(self) -> int:
        """Publishes admitted but not yet sent (window full or not connected)."""
        return len(self._waiting)

    def can_publish(self) -> bool:
        """True when a new QoS 1/2 publish would be sent at once."""
        return (
            self.state is ConnectionState.CONNECTED
            and not self._waiting
            and self._inflight < self.window
            and not self._queue_durable
        )

    def is_idle(self) -> bool:
        """True when nothing is in flight or waiting, in either direction."""
        return not self._flows and not self._waiting and not self._incoming

    def held_packet_ids(self) -> frozenset[int]:
        """Packet ids currently held by outgoing flows (for tests and debugging)."""
        return frozenset(self._flows)

    def outgoing_publish(self, packet_id: int) -> Publish | None:
        """The full (unaliased) PUBLISH an outgoing flow holds under ``packet_id``, if any."""
        flow = self._flows.get(packet_id)
        if flow is None or flow.kind == AWAIT_PUBCOMP:
            return None
        packet = flow.packet
        return packet if isinstance(packet, Publish) else None

    def has_data_to_send(self) -> bool:
        """True when :meth:`data_to_send` would return bytes."""
        return bool(self._out)

    def data_to_send(self) -> bytes:
        """Return every byte queued for the wire since the last call (``b""`` if none)."""
        out = self._out
        if not out:
            return b""
        self._out = []
        return out[0] if len(out) == 1 else b"".join(out)

    def has_events(self) -> bool:
        """True when :meth:`take_events` would return events."""
        return bool(self._events)

    def take_events(self) -> list[Event]:
        """Return the events produced since the last call, oldest first."""
        events = self._events
        self._events = []
        return events

    def _send(self, packet: Packet, data: bytes | None = None) -> None:
        if not self._wire_open:
            return
        if data is None:
            data = encode(packet, self._version)
        self._out.append(data)
        self._events.append(Outgoing(packet))
        stats = self.statistics
        stats.packets_sent += 1
        stats.bytes_sent += len(data)
        self._last_sent = self._now

    def _fail(self, message: str, code: ReasonCode) -> NoReturn:
        self._fail_with(RemoteProtocolError(message, reason_code=code))

    def _fail_with(self, exc: RemoteProtocolError) -> NoReturn:
        # A v5 client tells the broker why it closes (section 4.13); 3.1.1 just closes.
        if self._v5 and self._wire_open:
            self._send(Disconnect(int(exc.reason_code)))
        self._wire_open = False
        self.state = ConnectionState.DISCONNECTED
        raise exc

    def _incoming_control(self, packet: Packet) -> None:
        self.statistics.packets_received += 1
        self._events.append(Incoming(packet))
        if self.state is ConnectionState.CONNECTING:
            self._fail(
                f"{type(packet).__name__} received before CONNACK (MQTT-3.2.0-1)",
                ReasonCode.PROTOCOL_ERROR,
            )
