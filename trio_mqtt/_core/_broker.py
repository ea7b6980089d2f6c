"""The sans-IO MQTT broker: one :class:`Broker`, one :class:`BrokerConnection` per client.

Theory of operation
-------------------
This is the mirror of :class:`~trio_mqtt._core._state.ClientState`: bytes in, bytes out, the
time passed in as ``now``, no sockets, no clock, no trio. The Trio layer
(:mod:`trio_mqtt.broker`) only moves bytes:

* it makes a :class:`BrokerConnection` per accepted socket with :meth:`Broker.new_connection`;
* it feeds what the socket gives to :meth:`BrokerConnection.receive_data`, and writes what
  :meth:`BrokerConnection.data_to_send` returns;
* after each call it asks :meth:`Broker.take_ready` which connections have new bytes to write
  (a PUBLISH from one client usually fills other clients' buffers) and wakes their writers;
* it calls :meth:`Broker.tick` by :meth:`Broker.next_deadline` (keepalive, connect timeout,
  delayed wills, session expiry), and :meth:`BrokerConnection.connection_lost` when a socket
  dies. A connection whose :attr:`~BrokerConnection.closed` is true has nothing more to say
  once its buffer is written: the socket is closed then.

A :class:`Session` outlives its connection when the client asked for it (MQTT 3.1.1 clean
session 0; MQTT 5 session expiry interval > 0): it keeps the subscriptions, the QoS 1/2 flows in
flight in both directions, and a bounded queue of messages waiting for the client. The
:class:`~trio_mqtt._core._router.Router` holds subscriptions, shared groups and retained messages.

Exactly once: an incoming QoS 2 PUBLISH is routed when it first arrives and its packet id kept
until PUBREL, so a retransmission (DUP) is acknowledged again but never routed twice
(MQTT 4.3.3, method B of the spec's non-normative flow). Outgoing QoS 1/2 messages stay in
:attr:`Session.inflight` until acknowledged and are sent again, with DUP, on the next connection
of the session (MQTT-4.4.0-1).

Bounded memory: each connection has at most :attr:`BrokerConfig.max_output_bytes` of encoded
bytes waiting for the writer (past that, QoS 0 messages for it are dropped and QoS 1/2 ones are
queued), at most ``min(receive maximum, max_inflight)`` QoS 1/2 messages in flight, and a queue
of at most :attr:`BrokerConfig.max_queued_messages`. A message arriving at a full queue is
dropped (the newest is the one lost, as mosquitto does) and counted in
:attr:`BrokerStatistics.messages_dropped`. QoS 0 messages are never queued for an offline
session. Incoming packets are bounded by :attr:`BrokerConfig.max_packet_size` before their body
is buffered.

Every malformed packet or protocol violation closes that connection only: with a DISCONNECT
carrying the reason code for MQTT 5, silently for MQTT 3.1.1 (which has no server DISCONNECT).
An unexpected exception while handling a packet is caught at the same seam, counted in
:attr:`BrokerStatistics.internal_errors` and closes the connection with reason code 0x83, so no
input can take the broker down.
"""

from __future__ import annotations

import hmac
import itertools
import math
import os
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum

from ._broker_aliases import OutgoingAliases
from ._codec import PacketDecoder, encode, encoded_size
from ._errors import MalformedPacketError
from ._packets import (
    NO_PROPERTIES,
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    Properties,
    ProtocolVersion,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    QoS,
    RetainHandling,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
)
from ._reason_codes import ReasonCode
from ._router import Message, Route, Router
from ._topics import parse_shared, valid_filter, valid_topic

__all__ = [
    "Broker",
    "BrokerConfig",
    "BrokerConnection",
    "BrokerStatistics",
    "Delivery",
    "DeliveryPhase",
    "Session",
]

#: Session expiry interval that means "never expires" (MQTT 5, 3.1.2.11.2).
NEVER = 0xFFFFFFFF
_MAX_PACKET_ID = 0xFFFF
_V311_REFUSED_VERSION = b"\x20\x02\x00\x01"
#: bytes kept from the start of a connection: enough for CONNECT's fixed header and level
_HEAD_SIZE = 12
_V5 = ProtocolVersion.V5
_V311 = ProtocolVersion.V311
_QOS = (QoS.AT_MOST_ONCE, QoS.AT_LEAST_ONCE, QoS.EXACTLY_ONCE)

Authenticator = Callable[[str, "str | None", "bytes | None"], bool]
"""``authenticate(client_id, username, password)``: whether the client may connect."""
Authorizer = Callable[[str, "str | None", str, str], bool]
"""``authorize(client_id, username, action, topic)``: ``action`` is ``"publish"``,
``"subscribe"`` (``topic`` is then the filter, ``$share/...`` included) or ``"receive"``."""


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """Limits and policies of a :class:`Broker`; every field has a safe default.

    Attributes:
        max_connections: connected clients at most; CONNECT beyond it is refused with
            Server busy (0x89) / Server unavailable (3 in MQTT 3.1.1).
        max_packet_size: largest packet accepted from a client, fixed header included; a larger
            one closes the connection with Packet too large (0x95) before its body is read.
            Advertised to MQTT 5 clients in CONNACK.
        max_inflight: outgoing QoS 1/2 messages in flight per connection at most (further capped
            by the client's Receive Maximum).
        receive_maximum: incoming QoS 2 flows awaiting PUBREL per client at most (advertised to
            MQTT 5 clients; exceeding it is Receive maximum exceeded, 0x93).
        max_queued_messages: QoS 1/2 messages queued per session beyond those in flight (offline,
            or a slow subscriber); past it new messages for that session are dropped.
        max_output_bytes: encoded bytes waiting for a connection's writer at most; past it QoS 0
            messages for that connection are dropped and QoS 1/2 ones are queued.
        topic_alias_maximum: topic aliases an MQTT 5 client may use towards the broker.
        max_retained: retained messages at most; a new retained topic past it is not stored.
        max_subscriptions: subscriptions per session at most; a new filter past it is refused
            in SUBACK with Quota exceeded (0x97; 0x80 in MQTT 3.1.1).
        max_sessions: sessions kept at most (connected or not); a CONNECT that would make a
            new one past it is refused with Quota exceeded (0x97; 3 in MQTT 3.1.1).
        max_session_expiry: largest session expiry interval granted, in seconds.
        server_keep_alive: if set, MQTT 5 clients are told to use this keep alive (seconds)
            instead of their own (Server Keep Alive); MQTT 3.1.1 clients keep theirs.
        connect_timeout: seconds a new connection has to send CONNECT.
        sys_interval: seconds between updates of the retained ``$SYS/broker/...`` topics
            (uptime, clients, messages); 0 publishes none.
        maximum_qos: highest QoS accepted (0, 1 or 2); subscriptions are granted at most this.
        retain_available: whether retained messages are supported.
        allow_anonymous: whether clients without a user name may connect (default: when neither
            ``users`` nor ``authenticate`` is given).
        users: user name to password, checked on CONNECT.
        authenticate: ``authenticate(client_id, username, password) -> bool``, used instead
            of ``users``.
        authorize: ``authorize(client_id, username, action, topic) -> bool`` for every PUBLISH
            (``"publish"``), every filter of a SUBSCRIBE (``"subscribe"``) and every message
            about to be delivered to a session (``"receive"``, with the message's topic).
    """

    max_connections: int = 10_000
    max_packet_size: int = 1024 * 1024
    max_inflight: int = 64
    receive_maximum: int = 64
    max_queued_messages: int = 10_000
    max_output_bytes: int = 1024 * 1024
    topic_alias_maximum: int = 32
    max_retained: int = 100_000
    max_subscriptions: int = 1000
    max_sessions: int = 100_000
    max_session_expiry: int = NEVER
    server_keep_alive: int | None = None
    connect_timeout: float = 10.0
    sys_interval: float = 10.0
    maximum_qos: int = 2
    retain_available: bool = True
    allow_anonymous: bool | None = None
    users: Mapping[str, str] | None = None
    authenticate: Authenticator | None = None
    authorize: Authorizer | None = None

    def __post_init__(self) -> None:
        for name in (
            "max_connections",
            "max_inflight",
            "receive_maximum",
            "max_output_bytes",
            "max_subscriptions",
            "max_sessions",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"BrokerConfig.{name} must be at least 1")
        if self.max_packet_size < 64:
            raise ValueError("BrokerConfig.max_packet_size must be at least 64 bytes")
        if self.receive_maximum > 65535 or self.max_inflight > 65535:
            raise ValueError("receive_maximum and max_inflight must be at most 65535")
        if self.max_queued_messages < 0 or self.max_retained < 0:
            raise ValueError("max_queued_messages and max_retained must not be negative")
        if not 0 <= self.topic_alias_maximum <= 65535:
            raise ValueError("BrokerConfig.topic_alias_maximum must be in 0..65535")
        if self.maximum_qos not in (0, 1, 2):
            raise ValueError("BrokerConfig.maximum_qos must be 0, 1 or 2")
        if self.server_keep_alive is not None and not 0 <= self.server_keep_alive <= 65535:
            raise ValueError("BrokerConfig.server_keep_alive must be in 0..65535")


@dataclass(slots=True)
class BrokerStatistics:
    """Counters of a :class:`Broker` (a snapshot: :meth:`Broker.statistics` makes a new one)."""

    #: clients connected now (CONNECT accepted, not yet gone)
    connections: int = 0
    #: sessions kept, connected or not
    sessions: int = 0
    subscriptions: int = 0
    retained_messages: int = 0
    #: PUBLISH packets received from clients (retransmissions included)
    messages_received: int = 0
    #: PUBLISH packets sent to clients (retransmissions included)
    messages_sent: int = 0
    #: messages not delivered to some session, by reason (a copy per session)
    messages_dropped: int = 0
    dropped_queue_full: int = 0
    dropped_congested: int = 0
    dropped_too_large: int = 0
    dropped_expired: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0
    connections_refused: int = 0
    #: connections closed for a malformed packet or a protocol violation
    protocol_errors: int = 0
    #: unexpected exceptions caught while handling a packet (each closed its connection)
    internal_errors: int = 0


class DeliveryPhase(Enum):
    """Where one outgoing QoS 1/2 delivery stands."""

    QUEUED = 0
    PUBACK = 1  # QoS 1 sent, PUBACK awaited
    PUBREC = 2  # QoS 2 sent, PUBREC awaited
    PUBCOMP = 3  # PUBREL sent, PUBCOMP awaited


@dataclass(slots=True, eq=False)
class Delivery:
    """One QoS 1/2 copy of a message on its way to one session (queued or in flight)."""

    message: Message
    qos: int
    retain: bool
    subscription_ids: tuple[int, ...] = ()
    phase: DeliveryPhase = DeliveryPhase.QUEUED
    packet_id: int = 0


@dataclass(slots=True, eq=False)
class Session:
    """The broker's state for one client identifier; it may outlive its connections.

    Attributes:
        client_id: the client identifier.
        expiry_interval: seconds the session is kept after its connection ends (0: ended with
            it; ``0xFFFFFFFF``: kept for ever).
        subscriptions: topic filter (as subscribed) to route.
        inflight: outgoing QoS 1/2 flows by packet id, in the order they started.
        queue: QoS 1/2 deliveries waiting for the client, oldest first.
        incoming_qos2: packet ids of incoming QoS 2 messages routed but not yet released.
        connection: the connection using the session now, or None.
        expires_at: broker time at which an unused session is forgotten, or None.
        will: a will waiting for its delay (MQTT 5 Will Delay Interval), and ``will_at`` when.
    """

    client_id: str
    expiry_interval: int = 0
    username: str | None = None
    subscriptions: dict[str, Route[Session]] = field(default_factory=dict)
    inflight: dict[int, Delivery] = field(default_factory=dict)
    # The next two start as empty immutable values and become a deque and a set on first use
    # (:meth:`enqueue`, :meth:`hold_incoming`): an empty deque alone is 760 bytes, and most
    # sessions never queue a message or receive QoS 2.
    queue: deque[Delivery] | tuple[Delivery, ...] = ()
    incoming_qos2: set[int] | frozenset[int] = frozenset()
    connection: BrokerConnection | None = None
    expires_at: float | None = None
    will: Message | None = None
    will_at: float | None = None
    next_packet_id: int = 0

    @property
    def online(self) -> bool:
        """True while a connection uses the session."""
        return self.connection is not None

    def enqueue(self, delivery: Delivery) -> None:
        """Append ``delivery`` to :attr:`queue` (the caller checks the bound)."""
        queue = self.queue
        if isinstance(queue, deque):
            queue.append(delivery)
        else:
            self.queue = deque((delivery,))

    def take_queued(self) -> Delivery:
        """Remove and return the oldest queued delivery (the queue must not be empty)."""
        queue = self.queue
        assert isinstance(queue, deque)
        return queue.popleft()

    def clear_queue(self) -> None:
        """Forget every queued delivery."""
        self.queue = ()

    def hold_incoming(self, packet_id: int) -> None:
        """Note an incoming QoS 2 packet id as routed and awaiting PUBREL."""
        held = self.incoming_qos2
        if isinstance(held, set):
            held.add(packet_id)
        else:
            self.incoming_qos2 = {packet_id}

    def release_incoming(self, packet_id: int) -> bool:
        """Forget an incoming QoS 2 packet id on PUBREL; False if it was not held."""
        held = self.incoming_qos2
        if packet_id in held:
            assert isinstance(held, set)
            held.discard(packet_id)
            return True
        return False

    def allocate_packet_id(self) -> int:
        """A packet id not used by a flow in flight (the window keeps one free)."""
        pid = self.next_packet_id
        inflight = self.inflight
        for _ in range(_MAX_PACKET_ID):
            pid = pid % _MAX_PACKET_ID + 1
            if pid not in inflight:
                self.next_packet_id = pid
                return pid
        raise RuntimeError("no free packet identifier")  # the window is at most 65535


@dataclass(slots=True)
class _Target:
    """One session's copy of a message matched by several of its subscriptions (MQTT-3.3.4-2:
    the highest QoS, every subscription identifier)."""

    session: Session
    qos: int
    retain: bool
    ids: list[int] = field(default_factory=list)


def _announces_v5(head: bytes) -> bool:
    """Whether ``head``, the first bytes of a connection, start a CONNECT of protocol level 5
    (fixed header, remaining length, protocol name ``MQTT``, level byte)."""
    if not head or head[0] != 0x10:
        return False
    index = 1
    while index < len(head) and index <= 4 and head[index] & 0x80:
        index += 1
    start = index + 1
    return head[start : start + 7] == b"\x00\x04MQTT\x05"


class _Violation(Exception):
    """A protocol violation by the client: close with ``code``."""

    def __init__(self, code: ReasonCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def _strip(props: Properties) -> Properties:
    """The properties of an incoming PUBLISH (or will) that are passed on to subscribers."""
    if props is NO_PROPERTIES:
        return props
    kept = replace(
        props,
        topic_alias=None,
        message_expiry_interval=None,
        subscription_identifiers=(),
        will_delay_interval=None,
    )
    return NO_PROPERTIES if kept == NO_PROPERTIES else kept


class Broker:
    """The state of one broker: sessions, router, connections and counters.

    Args:
        config: limits and policies; the defaults are safe for a test or a small deployment.
    """

    def __init__(self, config: BrokerConfig | None = None) -> None:
        self.config = config = config or BrokerConfig()
        self.router: Router[Session] = Router(config.max_retained)
        self.sessions: dict[str, Session] = {}
        self.connections: set[BrokerConnection] = set()
        self._connected = 0
        self._ready: dict[BrokerConnection, None] = {}
        self._stats = BrokerStatistics()
        #: the latest ``now`` any entry point was given (for work done in data_to_send)
        self._now = 0.0
        self._started: float | None = None
        self._sys_due: float | None = None
        self._id_prefix = f"auto-{os.urandom(4).hex()}-"
        self._id_counter = itertools.count(1)
        if config.allow_anonymous is None:
            self.allow_anonymous = config.users is None and config.authenticate is None
        else:
            self.allow_anonymous = config.allow_anonymous

    # -- for the I/O layer
    def new_connection(self, now: float) -> BrokerConnection:
        """A connection for a socket accepted at ``now``, waiting for CONNECT."""
        conn = BrokerConnection(self, now)
        self.connections.add(conn)
        return conn

    def take_ready(self) -> list[BrokerConnection]:
        """Connections with bytes to write or newly closed since the last call."""
        if not self._ready:
            return []
        ready = list(self._ready)
        self._ready.clear()
        return ready

    def start(self, now: float) -> None:
        """Note the start time (for ``$SYS/broker/uptime``) and publish the ``$SYS`` topics.

        Calling it is optional: without it no ``$SYS`` topic is published.
        """
        self._started = now
        self._now = now
        if self.config.sys_interval:
            self._publish_sys(now)

    def _publish_sys(self, now: float) -> None:
        assert self._started is not None
        self._sys_due = now + self.config.sys_interval
        stats = self.statistics()
        values = {
            "version": "trio-mqtt embedded broker",
            "uptime": f"{int(now - self._started)} seconds",
            "clients/connected": str(stats.connections),
            "clients/total": str(stats.sessions),
            "messages/received": str(stats.messages_received),
            "messages/sent": str(stats.messages_sent),
            "messages/dropped": str(stats.messages_dropped),
            "subscriptions/count": str(stats.subscriptions),
            "retained messages/count": str(stats.retained_messages),
        }
        for name, value in values.items():
            self.publish(f"$SYS/broker/{name}", value.encode(), 0, True, now=now)

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`tick` has something to do, or None."""
        best: float | None = self._sys_due
        for conn in self.connections:
            deadline = conn.deadline
            if deadline is not None and (best is None or deadline < best):
                best = deadline
        for session in self.sessions.values():
            for deadline in (session.will_at, session.expires_at):
                if deadline is not None and (best is None or deadline < best):
                    best = deadline
        return best

    def tick(self, now: float) -> None:
        """Enforce keepalives and connect timeouts, publish delayed wills, expire sessions."""
        self._now = now
        if self._sys_due is not None and self._sys_due <= now:
            self._publish_sys(now)
        for conn in list(self.connections):
            deadline = conn.deadline
            if deadline is not None and deadline <= now:
                conn._timed_out(now)
        for session in list(self.sessions.values()):
            if session.will_at is not None and session.will_at <= now:
                self._fire_will(session, now)
            if session.expires_at is not None and session.expires_at <= now:
                self._end_session(session, now)

    def statistics(self) -> BrokerStatistics:
        """A snapshot of the counters."""
        stats = replace(self._stats)
        stats.connections = self._connected
        stats.sessions = len(self.sessions)
        stats.subscriptions = self.router.subscription_count
        stats.retained_messages = len(self.router.retained)
        return stats

    def publish(
        self,
        topic: str,
        payload: bytes = b"",
        qos: int = 0,
        retain: bool = False,
        properties: Properties = NO_PROPERTIES,
        *,
        now: float,
    ) -> int:
        """Publish a message from the broker itself; returns the number of sessions reached.

        Raises:
            ValueError: ``topic`` is not a valid topic name, or ``qos`` is not 0, 1 or 2.
        """
        if not valid_topic(topic):
            raise ValueError(f"invalid topic name {topic!r}")
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, not {qos!r}")
        expiry = properties.message_expiry_interval
        message = Message(
            topic,
            bytes(payload),
            qos,
            retain,
            _strip(properties),
            None if expiry is None else now + expiry,
        )
        if retain and self.config.retain_available:
            self.router.retain(message)
        return self._route(message, now)

    def count_refused_stream(self) -> None:
        """Count a connection the I/O layer closed unread (over the connection limit)."""
        self._stats.connections_refused += 1

    def close_all(self, now: float, reason: ReasonCode = ReasonCode.SERVER_SHUTTING_DOWN) -> None:
        """Close every connection (MQTT 5 clients get DISCONNECT ``reason``); wills are sent."""
        for conn in list(self.connections):
            conn.close(now, reason)

    # -- internals
    def _mark_ready(self, conn: BrokerConnection) -> None:
        self._ready[conn] = None

    def _assign_client_id(self) -> str:
        while True:
            candidate = f"{self._id_prefix}{next(self._id_counter)}"
            if candidate not in self.sessions:
                return candidate

    def _route(
        self, message: Message, now: float, routes: list[Route[Session]] | None = None
    ) -> int:
        """Hand ``message`` to every matching subscription (or to ``routes``, found earlier by
        :meth:`Router.route`); returns the sessions reached."""
        if routes is None:
            routes = self.router.route(message.topic)
        if not routes:
            return 0
        sender = message.sender
        msg_qos = message.qos
        if len(routes) == 1:
            route = routes[0]
            options = route.options
            if options.no_local and route.group is None and route.session.client_id == sender:
                return 0
            self._deliver(
                route.session,
                message,
                min(msg_qos, options.qos),
                message.retain and options.retain_as_published,
                () if route.identifier is None else (route.identifier,),
                now,
            )
            return 1
        targets: dict[int, _Target] = {}
        for route in routes:
            options = route.options
            session = route.session
            if options.no_local and route.group is None and session.client_id == sender:
                continue
            qos = min(msg_qos, options.qos)
            retain = message.retain and options.retain_as_published
            target = targets.get(id(session))
            if target is None:
                target = targets[id(session)] = _Target(session, qos, retain)
            else:
                target.qos = max(target.qos, qos)
                target.retain = target.retain or retain
            if route.identifier is not None:
                target.ids.append(route.identifier)
        for target in targets.values():
            self._deliver(
                target.session, message, target.qos, target.retain, tuple(target.ids), now
            )
        return len(targets)

    def _deliver(
        self,
        session: Session,
        message: Message,
        qos: int,
        retain: bool,
        ids: tuple[int, ...],
        now: float,
    ) -> None:
        authorize = self.config.authorize
        if authorize is not None and not authorize(
            session.client_id, session.username, "receive", message.topic
        ):
            return
        conn = session.connection
        stats = self._stats
        if qos == 0:
            if conn is None or not conn.accepting:
                return  # QoS 0 is never queued for an offline session
            if conn._out_size >= self.config.max_output_bytes:
                stats.messages_dropped += 1
                stats.dropped_congested += 1
                return
            conn._send_publish(message, 0, retain, ids, 0, False, now)
            return
        delivery = Delivery(message, qos, retain, ids)
        if conn is not None and conn.accepting and not session.queue and conn._has_window():
            conn._start_flow(delivery, now)
        elif len(session.queue) < self.config.max_queued_messages:
            session.enqueue(delivery)
        else:
            stats.messages_dropped += 1
            stats.dropped_queue_full += 1

    def _fire_will(self, session: Session, now: float) -> None:
        will = session.will
        session.will = None
        session.will_at = None
        if will is not None:
            self._publish_will(will, now)

    def _publish_will(self, will: Message, now: float) -> None:
        if will.retain and self.config.retain_available:
            self.router.retain(will)
        self._route(will, now)

    def _end_session(self, session: Session, now: float) -> None:
        """Forget a session (its connection, if any, is already detached)."""
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]
        for route in session.subscriptions.values():
            self.router.remove(route)
        session.subscriptions.clear()
        session.clear_queue()
        session.inflight.clear()
        session.expires_at = None
        self._fire_will(session, now)


class _State(Enum):
    AWAIT_CONNECT = 0
    CONNECTED = 1
    CLOSED = 2


class BrokerConnection:
    """The broker side of one network connection.

    Attributes:
        client_id: the client identifier once CONNECT was accepted, else None.
        username: the user name of CONNECT, or None.
        version: the protocol version of CONNECT (MQTT 3.1.1 until then).
        keep_alive: the keep alive in force (the client's, or the Server Keep Alive).
    """

    __slots__ = (
        "_alias_max",
        "_client_max_packet",
        "_config",
        "_created",
        "_decoder",
        "_head",
        "_in_aliases",
        "_last_received",
        "_out",
        "_out_aliases",
        "_out_size",
        "_state",
        "_will",
        "_will_delay",
        "_window",
        "broker",
        "client_id",
        "close_reason",
        "keep_alive",
        "session",
        "username",
        "version",
    )

    def __init__(self, broker: Broker, now: float) -> None:
        self.broker = broker
        self._config = broker.config
        self._state = _State.AWAIT_CONNECT
        self._decoder = PacketDecoder(_V311, broker.config.max_packet_size)
        self._out: list[bytes] = []
        self._out_size = 0
        self._created = now
        self._last_received = now
        self.client_id: str | None = None
        self.username: str | None = None
        self.version = _V311
        self.keep_alive = 0
        self.session: Session | None = None
        self._will: Message | None = None
        self._will_delay = 0
        self._window = broker.config.max_inflight
        self._client_max_packet: int | None = None
        self._alias_max = 0
        self._out_aliases = OutgoingAliases(0)
        self._in_aliases: dict[int, str] = {}
        #: the first bytes received, to tell the protocol level of a CONNECT that fails to decode
        self._head = b""
        #: why the connection was closed (a reason code), once it is
        self.close_reason: int | None = None

    def __repr__(self) -> str:
        return f"<BrokerConnection client_id={self.client_id!r} state={self._state.name}>"

    # -- public
    @property
    def closed(self) -> bool:
        """True once the connection is over; write what :meth:`data_to_send` still has, then
        close the socket."""
        return self._state is _State.CLOSED

    @property
    def accepting(self) -> bool:
        """True while CONNECT is accepted and the connection is open."""
        return self._state is _State.CONNECTED

    @property
    def deadline(self) -> float | None:
        """When :meth:`Broker.tick` must look at this connection (keepalive or connect
        timeout), or None."""
        state = self._state
        if state is _State.CONNECTED:
            if self.keep_alive:
                return self._last_received + 1.5 * self.keep_alive
            return None
        if state is _State.AWAIT_CONNECT:
            return self._created + self._config.connect_timeout
        return None

    @property
    def wants_data(self) -> bool:
        """False while :attr:`BrokerConfig.max_output_bytes` or more wait for the writer: the
        I/O layer stops reading from this client until :meth:`data_to_send` takes them, so a
        client that keeps sending but never reads its acknowledgements (or PINGRESPs) cannot
        make them pile up in the broker."""
        return self._out_size < self._config.max_output_bytes

    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """Process bytes received from the client."""
        if self._state is _State.CLOSED or not data:
            return
        if self._state is _State.AWAIT_CONNECT and len(self._head) < _HEAD_SIZE:
            self._head += bytes(data[: _HEAD_SIZE - len(self._head)])
        broker = self.broker
        broker._stats.bytes_received += len(data)
        broker._now = now
        self._last_received = now
        if self._state is _State.AWAIT_CONNECT:
            self._receive_one_by_one(data, now)
            return
        try:
            packets = self._decoder.decode(data)
        except MalformedPacketError as exc:
            self._protocol_failure(exc.reason_code, now)
            return
        except Exception:
            broker._stats.internal_errors += 1
            self._protocol_failure(ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR, now)
            return
        for packet in packets:
            if self.closed:
                return
            self._handle_guarded(packet, now)

    def _receive_one_by_one(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """Until CONNECT is handled the decoder does not know the protocol version, so packets
        are taken out one at a time: those that follow CONNECT in the same bytes (a client
        need not wait for CONNACK) are then decoded in the version it announced."""
        decoder = self._decoder
        while not self.closed:
            try:
                if data:
                    decoder.feed(data)
                    data = b""
                packet = decoder.next_packet()
            except MalformedPacketError as exc:
                self._protocol_failure(exc.reason_code, now)
                return
            except Exception:
                self.broker._stats.internal_errors += 1
                self._protocol_failure(ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR, now)
                return
            if packet is None:
                return
            self._handle_guarded(packet, now)

    def _handle_guarded(self, packet: Packet, now: float) -> None:
        """Handle one packet; a violation or an unexpected error closes this connection only."""
        try:
            self._handle(packet, now)
        except _Violation as exc:
            self._protocol_failure(exc.code, now)
        except Exception:
            self.broker._stats.internal_errors += 1
            self._protocol_failure(ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR, now)

    def data_to_send(self) -> bytes:
        """The bytes to write now (possibly empty); queued messages are moved in as the window
        and the output bound allow."""
        if self._state is _State.CONNECTED and self.session is not None and self.session.queue:
            self._pump(self.broker._now)
        if not self._out:
            return b""
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        self._out_size = 0
        self.broker._stats.bytes_sent += len(data)
        return data

    def connection_lost(self, now: float) -> None:
        """The socket ended (or failed) without the connection being closed first."""
        self.broker._now = now
        if self._state is not _State.CLOSED:
            self._close(None, now, publish_will=True)
        self._out.clear()
        self._out_size = 0
        self.broker.connections.discard(self)

    def close(self, now: float, reason: ReasonCode = ReasonCode.SERVER_SHUTTING_DOWN) -> None:
        """Close from the broker side (MQTT 5 clients get DISCONNECT ``reason``); the will is
        published."""
        if self._state is not _State.CLOSED:
            self._close(reason, now, publish_will=True)

    # -- output
    def _send(self, packet: Packet) -> None:
        data = encode(packet, self.version)
        if not self._out:
            self.broker._mark_ready(self)
        self._out.append(data)
        self._out_size += len(data)

    def _send_raw(self, data: bytes) -> None:
        if not self._out:
            self.broker._mark_ready(self)
        self._out.append(data)
        self._out_size += len(data)

    def _has_window(self) -> bool:
        session = self.session
        assert session is not None
        return (
            len(session.inflight) < self._window and self._out_size < self._config.max_output_bytes
        )

    def _send_publish(
        self,
        message: Message,
        qos: int,
        retain: bool,
        ids: tuple[int, ...],
        packet_id: int,
        dup: bool,
        now: float,
    ) -> bool:
        """Encode and queue one PUBLISH; False if it was dropped (expired or too large)."""
        stats = self.broker._stats
        topic = message.topic
        if message.expires_at is not None:
            remaining = math.ceil(message.expires_at - now)
            if remaining <= 0:
                stats.messages_dropped += 1
                stats.dropped_expired += 1
                return False
        else:
            remaining = 0
        props = message.properties
        alias = 0
        known = False
        if self.version is _V5:
            if remaining or ids or self._alias_max:
                changes: dict[str, object] = {}
                if remaining:
                    changes["message_expiry_interval"] = remaining
                if ids:
                    changes["subscription_identifiers"] = ids
                if self._alias_max:
                    alias, known = self._out_aliases.choose(topic)
                    changes["topic_alias"] = alias
                props = replace(props, **changes)  # type: ignore[arg-type]
        else:
            props = NO_PROPERTIES
        packet = Publish(
            "" if known else topic, message.payload, _QOS[qos], retain, dup, packet_id, props
        )
        limit = self._client_max_packet
        if limit is not None and encoded_size(packet, self.version) > limit:
            stats.messages_dropped += 1
            stats.dropped_too_large += 1  # MQTT-3.1.2-25: discarded as if sent
            return False  # the alias table is left as it was: the client never saw this one
        if alias:
            self._out_aliases.commit(topic, alias)
        self._send(packet)
        stats.messages_sent += 1
        return True

    def _start_flow(self, delivery: Delivery, now: float) -> None:
        session = self.session
        assert session is not None
        pid = session.allocate_packet_id()
        delivery.packet_id = pid
        delivery.phase = DeliveryPhase.PUBACK if delivery.qos == 1 else DeliveryPhase.PUBREC
        session.inflight[pid] = delivery
        if not self._send_publish(
            delivery.message,
            delivery.qos,
            delivery.retain,
            delivery.subscription_ids,
            pid,
            False,
            now,
        ):
            del session.inflight[pid]

    def _pump(self, now: float) -> None:
        """Start queued flows while the window and the output bound allow."""
        session = self.session
        assert session is not None
        while session.queue and self._has_window():
            self._start_flow(session.take_queued(), now)

    # -- closing
    def _protocol_failure(self, code: int, now: float) -> None:
        self.broker._stats.protocol_errors += 1
        if self._state is _State.AWAIT_CONNECT:
            if code == ReasonCode.UNSUPPORTED_PROTOCOL_VERSION:
                self._send_raw(_V311_REFUSED_VERSION)
            elif _announces_v5(self._head):
                # MQTT 5 lets the server say why a CONNECT it could not accept is refused
                # (3.1.4, 4.13.1): a CONNACK with the reason code, then the close
                self._send_raw(encode(ConnAck(False, code), _V5))
            self._close(None, now, publish_will=False, reason=code)
            return
        self._close(code, now, publish_will=True)

    def _timed_out(self, now: float) -> None:
        if self._state is _State.AWAIT_CONNECT:
            self._close(None, now, publish_will=False)
        elif self._state is _State.CONNECTED:
            self._close(ReasonCode.KEEP_ALIVE_TIMEOUT, now, publish_will=True)

    def _close(
        self, code: int | None, now: float, *, publish_will: bool, reason: int | None = None
    ) -> None:
        """End the connection: a v5 DISCONNECT with ``code`` if given, then detach."""
        if self._state is _State.CLOSED:
            return
        if code is not None and self._state is _State.CONNECTED and self.version is _V5:
            self._send(Disconnect(code))
        self.close_reason = code if code is not None else reason
        was_connected = self._state is _State.CONNECTED
        self._state = _State.CLOSED
        self.broker._mark_ready(self)
        if was_connected:
            self._detach(now, publish_will)

    def _detach(self, now: float, publish_will: bool) -> None:
        broker = self.broker
        broker._connected -= 1
        session = self.session
        will, self._will = self._will, None
        if session is None or session.connection is not self:
            return
        session.connection = None
        if publish_will and will is not None:
            if self._will_delay and session.expiry_interval:
                session.will = will
                session.will_at = now + min(self._will_delay, session.expiry_interval)
            else:
                broker._publish_will(will, now)
        if session.expiry_interval == 0:
            broker._end_session(session, now)
        elif session.expiry_interval != NEVER:
            session.expires_at = now + session.expiry_interval

    # -- incoming packets
    def _handle(self, packet: Packet, now: float) -> None:
        cls = packet.__class__
        if self._state is _State.AWAIT_CONNECT:
            if cls is not Connect:
                raise _Violation(ReasonCode.PROTOCOL_ERROR, "first packet is not CONNECT")
            self._on_connect(packet, now)  # type: ignore[arg-type]
            return
        if cls is Publish:
            self._on_publish(packet, now)  # type: ignore[arg-type]
        elif cls is PubAck:
            self._on_puback(packet, now)  # type: ignore[arg-type]
        elif cls is PubRec:
            self._on_pubrec(packet, now)  # type: ignore[arg-type]
        elif cls is PubRel:
            self._on_pubrel(packet)  # type: ignore[arg-type]
        elif cls is PubComp:
            self._on_pubcomp(packet, now)  # type: ignore[arg-type]
        elif cls is Subscribe:
            self._on_subscribe(packet, now)  # type: ignore[arg-type]
        elif cls is Unsubscribe:
            self._on_unsubscribe(packet)  # type: ignore[arg-type]
        elif cls is PingReq:
            self._send(PingResp())
        elif cls is Disconnect:
            self._on_disconnect(packet, now)  # type: ignore[arg-type]
        elif cls is Auth:
            raise _Violation(ReasonCode.PROTOCOL_ERROR, "AUTH without an authentication method")
        else:
            raise _Violation(ReasonCode.PROTOCOL_ERROR, f"{cls.__name__} from a client")

    def _refuse(self, code: ReasonCode, v311_code: int, now: float) -> None:
        self.broker._stats.connections_refused += 1
        if self.version is _V5:
            self._send(ConnAck(False, code))
        else:
            self._send(ConnAck(False, v311_code))
        self._close(None, now, publish_will=False, reason=code)

    def _authenticated(self, packet: Connect) -> bool:
        broker = self.broker
        config = self._config
        if packet.username is None:
            return broker.allow_anonymous
        if config.authenticate is not None:
            return bool(config.authenticate(packet.client_id, packet.username, packet.password))
        if config.users is not None:
            expected = config.users.get(packet.username)
            return (
                packet.password is not None
                and expected is not None
                and (hmac.compare_digest(packet.password, expected.encode()))
            )
        return True

    def _on_connect(self, packet: Connect, now: float) -> None:
        broker = self.broker
        config = self._config
        version = packet.protocol_version
        self.version = version
        self._head = b""  # CONNECT decoded: its version is known
        self._decoder.version = version
        props = packet.properties
        v5 = version is _V5
        if v5 and props.authentication_method is not None:
            self._refuse(ReasonCode.BAD_AUTHENTICATION_METHOD, 5, now)
            return
        client_id = packet.client_id
        assigned = False
        if not client_id:
            if not v5 and not packet.clean_start:
                self._refuse(ReasonCode.CLIENT_IDENTIFIER_NOT_VALID, 2, now)
                return
            client_id = broker._assign_client_id()
            assigned = True
        if not self._authenticated(packet):
            self._refuse(ReasonCode.BAD_USER_NAME_OR_PASSWORD, 4, now)
            return
        will = packet.will
        if will is not None:
            if not valid_topic(will.topic):
                self._refuse(ReasonCode.TOPIC_NAME_INVALID, 2, now)
                return
            if will.qos > config.maximum_qos:
                self._refuse(ReasonCode.QOS_NOT_SUPPORTED, 3, now)
                return
            if will.retain and not config.retain_available:
                self._refuse(ReasonCode.RETAIN_NOT_SUPPORTED, 3, now)
                return
            if not self._allowed_for(client_id, packet.username, "publish", will.topic):
                self._refuse(ReasonCode.NOT_AUTHORIZED, 5, now)
                return
        existing = broker.sessions.get(client_id)
        taking_over = existing is not None and existing.connection is not None
        if broker._connected >= config.max_connections and not taking_over:
            self._refuse(ReasonCode.SERVER_BUSY, 3, now)
            return
        if existing is None and len(broker.sessions) >= config.max_sessions:
            self._refuse(ReasonCode.QUOTA_EXCEEDED, 3, now)
            return
        # Accepted.
        self.client_id = client_id
        self.username = packet.username
        if existing is not None and existing.connection is not None:
            existing.connection.close(now, ReasonCode.SESSION_TAKEN_OVER)  # MQTT-3.1.4-3
        existing = broker.sessions.get(client_id)
        expiry = props.session_expiry_interval or 0 if v5 else 0 if packet.clean_start else NEVER
        granted_expiry = min(expiry, config.max_session_expiry)
        session_present = False
        if existing is not None and packet.clean_start:
            broker._end_session(existing, now)
            existing = None
        if existing is None:
            session = Session(client_id)
            broker.sessions[client_id] = session
        else:
            session = existing
            session_present = True
            session.will = None  # a delayed will is cancelled by the reconnection
            session.will_at = None
        session.expiry_interval = granted_expiry
        session.username = packet.username
        session.expires_at = None
        session.connection = self
        self.session = session
        broker._connected += 1
        self._state = _State.CONNECTED
        if will is not None:
            self._will = self._will_message(will, client_id, now)
            self._will_delay = will.properties.will_delay_interval or 0
        self.keep_alive = packet.keep_alive
        ack_props: dict[str, object] = {}
        if v5:
            self._window = min(props.receive_maximum or 65535, config.max_inflight)
            self._client_max_packet = props.maximum_packet_size
            self._alias_max = props.topic_alias_maximum or 0
            self._out_aliases = OutgoingAliases(self._alias_max)
            server_ka = config.server_keep_alive
            if server_ka is not None and server_ka != packet.keep_alive:
                self.keep_alive = server_ka
                ack_props["server_keep_alive"] = server_ka
            if assigned:
                ack_props["assigned_client_identifier"] = client_id
            if granted_expiry != expiry:
                ack_props["session_expiry_interval"] = granted_expiry
            if config.receive_maximum != 65535:
                ack_props["receive_maximum"] = config.receive_maximum
            if config.topic_alias_maximum:
                ack_props["topic_alias_maximum"] = config.topic_alias_maximum
            ack_props["maximum_packet_size"] = config.max_packet_size
            if config.maximum_qos < 2:
                ack_props["maximum_qos"] = config.maximum_qos
            if not config.retain_available:
                ack_props["retain_available"] = 0
        self._send(ConnAck(session_present, 0, Properties(**ack_props)))  # type: ignore[arg-type]
        if session_present:
            self._resend(now)
        self._pump(now)

    def _will_message(self, will: Will, client_id: str, now: float) -> Message:
        expiry = will.properties.message_expiry_interval
        return Message(
            will.topic,
            will.payload,
            int(will.qos),
            will.retain,
            _strip(will.properties),
            None if expiry is None else now + expiry,
            client_id,
        )

    def _resend(self, now: float) -> None:
        """Send again every flow in flight of a resumed session (MQTT-4.4.0-1)."""
        session = self.session
        assert session is not None
        for pid, delivery in list(session.inflight.items()):
            if delivery.phase is DeliveryPhase.PUBCOMP:
                self._send(PubRel(pid))
            elif not self._send_publish(
                delivery.message,
                delivery.qos,
                delivery.retain,
                delivery.subscription_ids,
                pid,
                True,
                now,
            ):
                del session.inflight[pid]

    def _allowed_for(self, client_id: str, username: str | None, action: str, topic: str) -> bool:
        authorize = self._config.authorize
        return authorize is None or bool(authorize(client_id, username, action, topic))

    def _allowed(self, action: str, topic: str) -> bool:
        authorize = self._config.authorize
        if authorize is None:
            return True
        assert self.client_id is not None
        return bool(authorize(self.client_id, self.username, action, topic))

    def _on_publish(self, packet: Publish, now: float) -> None:
        broker = self.broker
        config = self._config
        broker._stats.messages_received += 1
        qos = packet.qos
        props = packet.properties
        topic = packet.topic
        v5 = self.version is _V5
        if props is not NO_PROPERTIES:
            alias = props.topic_alias
            if alias is not None:
                if alias == 0 or alias > config.topic_alias_maximum:
                    raise _Violation(ReasonCode.TOPIC_ALIAS_INVALID, f"topic alias {alias}")
                if topic:
                    self._in_aliases[alias] = topic
                else:
                    found = self._in_aliases.get(alias)
                    if found is None:
                        raise _Violation(ReasonCode.PROTOCOL_ERROR, f"unknown topic alias {alias}")
                    topic = found
            if props.subscription_identifiers:
                raise _Violation(
                    ReasonCode.PROTOCOL_ERROR, "PUBLISH from a client with a subscription id"
                )
        if qos > config.maximum_qos:
            raise _Violation(ReasonCode.QOS_NOT_SUPPORTED, f"QoS {qos} is not supported")
        if packet.retain and not config.retain_available:
            raise _Violation(ReasonCode.RETAIN_NOT_SUPPORTED, "retain is not supported")
        session = self.session
        assert session is not None
        if qos == 2 and packet.packet_id in session.incoming_qos2:
            self._send(PubRec(packet.packet_id))  # a retransmission: routed already
            return
        if qos == 2 and len(session.incoming_qos2) >= config.receive_maximum:
            raise _Violation(ReasonCode.RECEIVE_MAXIMUM_EXCEEDED, "too many QoS 2 flows")
        if not self._allowed("publish", topic):
            if qos == 1:
                self._send(PubAck(packet.packet_id, ReasonCode.NOT_AUTHORIZED if v5 else 0))
            elif qos == 2:
                if v5:
                    self._send(PubRec(packet.packet_id, ReasonCode.NOT_AUTHORIZED))
                else:
                    session.hold_incoming(packet.packet_id)
                    self._send(PubRec(packet.packet_id))
            return
        expiry = props.message_expiry_interval if props is not NO_PROPERTIES else None
        message = Message(
            topic,
            packet.payload,
            int(qos),
            packet.retain,
            _strip(props),
            None if expiry is None else now + expiry,
            self.client_id,
        )
        if packet.retain and config.retain_available:
            broker.router.retain(message)
        # The acknowledgement goes out before any copy (ours included, when we subscribed).
        routes = broker.router.route(topic)
        code = ReasonCode.NO_MATCHING_SUBSCRIBERS if v5 and not routes else 0
        if qos == 1:
            self._send(PubAck(packet.packet_id, code))
        elif qos == 2:
            session.hold_incoming(packet.packet_id)
            self._send(PubRec(packet.packet_id, code))
        if routes:
            broker._route(message, now, routes)

    def _on_puback(self, packet: PubAck, now: float) -> None:
        session = self.session
        assert session is not None
        delivery = session.inflight.get(packet.packet_id)
        if delivery is not None and delivery.phase is DeliveryPhase.PUBACK:
            del session.inflight[packet.packet_id]
            self._pump(now)

    def _on_pubrec(self, packet: PubRec, now: float) -> None:
        session = self.session
        assert session is not None
        pid = packet.packet_id
        delivery = session.inflight.get(pid)
        if delivery is None or delivery.phase is DeliveryPhase.PUBACK:
            if self.version is _V5:
                self._send(PubRel(pid, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND))
            else:
                self._send(PubRel(pid))
            return
        if packet.reason_code >= 0x80:
            del session.inflight[pid]  # the client refused it: the flow ends here
            self._pump(now)
            return
        delivery.phase = DeliveryPhase.PUBCOMP
        self._send(PubRel(pid))

    def _on_pubrel(self, packet: PubRel) -> None:
        session = self.session
        assert session is not None
        pid = packet.packet_id
        if session.release_incoming(pid):
            self._send(PubComp(pid))
        elif self.version is _V5:
            self._send(PubComp(pid, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND))
        else:
            self._send(PubComp(pid))

    def _on_pubcomp(self, packet: PubComp, now: float) -> None:
        session = self.session
        assert session is not None
        delivery = session.inflight.get(packet.packet_id)
        if delivery is not None and delivery.phase is DeliveryPhase.PUBCOMP:
            del session.inflight[packet.packet_id]
            self._pump(now)

    def _on_subscribe(self, packet: Subscribe, now: float) -> None:
        broker = self.broker
        config = self._config
        session = self.session
        assert session is not None
        ids = packet.properties.subscription_identifiers
        identifier = ids[0] if ids else None
        v5 = self.version is _V5
        codes: list[int] = []
        retained: list[tuple[Message, int, int | None]] = []
        for requested in packet.subscriptions:
            topic_filter = requested.topic_filter
            if not valid_filter(topic_filter):
                codes.append(ReasonCode.TOPIC_FILTER_INVALID)
                continue
            shared = parse_shared(topic_filter)
            if shared is not None and requested.no_local:
                raise _Violation(ReasonCode.PROTOCOL_ERROR, "No Local on a shared subscription")
            if not self._allowed("subscribe", topic_filter):
                codes.append(ReasonCode.NOT_AUTHORIZED)
                continue
            granted = min(int(requested.qos), config.maximum_qos)
            options = requested
            if granted != requested.qos or not v5:
                options = Subscription(
                    topic_filter,
                    _QOS[granted],
                    requested.no_local and v5,
                    requested.retain_as_published and v5,
                    requested.retain_handling if v5 else RetainHandling.SEND_ON_SUBSCRIBE,
                )
            if (
                topic_filter not in session.subscriptions
                and len(session.subscriptions) >= config.max_subscriptions
            ):
                codes.append(ReasonCode.QUOTA_EXCEEDED)
                continue
            old = session.subscriptions.pop(topic_filter, None)
            if old is not None:
                broker.router.remove(old)
            route = Route(session, topic_filter, options, identifier if v5 else None)
            broker.router.add(route)
            session.subscriptions[topic_filter] = route
            codes.append(granted)
            handling = options.retain_handling
            if shared is None and (
                handling is RetainHandling.SEND_ON_SUBSCRIBE
                or (handling is RetainHandling.SEND_IF_NEW_SUBSCRIPTION and old is None)
            ):
                for message in broker.router.retained_for(topic_filter, now):
                    retained.append((message, min(message.qos, granted), route.identifier))
        self._send(SubAck(packet.packet_id, tuple(codes)))
        for message, qos, sub_id in retained:
            broker._deliver(session, message, qos, True, () if sub_id is None else (sub_id,), now)

    def _on_unsubscribe(self, packet: Unsubscribe) -> None:
        session = self.session
        assert session is not None
        codes: list[int] = []
        for topic_filter in packet.topic_filters:
            route = session.subscriptions.pop(topic_filter, None)
            if route is None:
                codes.append(ReasonCode.NO_SUBSCRIPTION_EXISTED)
            else:
                self.broker.router.remove(route)
                codes.append(ReasonCode.SUCCESS)
        self._send(UnsubAck(packet.packet_id, tuple(codes) if self.version is _V5 else ()))

    def _on_disconnect(self, packet: Disconnect, now: float) -> None:
        session = self.session
        assert session is not None
        expiry = packet.properties.session_expiry_interval
        if expiry is not None:
            if session.expiry_interval == 0 and expiry != 0:
                raise _Violation(
                    ReasonCode.PROTOCOL_ERROR, "session expiry set on DISCONNECT after 0"
                )
            session.expiry_interval = min(expiry, self._config.max_session_expiry)
        with_will = packet.reason_code == ReasonCode.DISCONNECT_WITH_WILL_MESSAGE
        self._close(None, now, publish_will=with_will, reason=packet.reason_code)
