"""The client session state machine (sans-IO): what to send, what to expect, what to report.

Theory of operation
-------------------
:class:`ClientState` owns every piece of MQTT session state and no I/O. The Trio layer hands it
received bytes (:meth:`~ClientState.receive_data`) and application requests
(:meth:`~ClientState.publish`, :meth:`~ClientState.subscribe`, ...); it answers with bytes to
write (:meth:`~ClientState.data_to_send`) and events (:meth:`~ClientState.take_events`). Time is
passed in as ``now``; :meth:`~ClientState.next_deadline` says when to call
:meth:`~ClientState.handle_timeout` next.

The work is split over four modules: ``_session.py`` (shared attributes, the wire queue,
failing the connection), ``_outgoing.py`` (requests, packet ids, the window, topic aliases and
the broker's acks), ``_incoming.py`` (publishes from the broker, duplicate suppression, manual
acks) and this one (connection lifecycle, CONNACK, replay, keepalive, AUTH).

Keepalive: a PINGREQ goes out after ``keep_alive`` seconds without sending anything
(MQTT-3.1.2-23) or without receiving anything (a probe: a QoS 0 publisher hears nothing back);
the PINGRESP must then arrive within ``ping_timeout`` seconds or
:class:`~trio_mqtt._core._errors.KeepAliveTimeout` is raised. A half-open connection is therefore
noticed at most ``keep_alive + ping_timeout`` seconds after the link went quiet. While the
reader is paused (slow application) only outbound silence counts and the PINGRESP timer is
suspended: the answer may be sitting unread in the socket.

After a reconnect, CONNACK decides: with session present, unacknowledged PUBLISH (DUP=1,
MQTT-3.3.1-1) and PUBREL are re-sent before anything new, in their original order and with their
original ids (MQTT-4.4.0-1, MQTT-4.6.0-1), together with unanswered SUBSCRIBE/UNSUBSCRIBE; without
session, unacknowledged QoS 1/2 publishes are sent again as new
messages (or dropped and reported, per ``resend_on_session_loss``), QoS 2 publishes that already
got PUBREC count as delivered (the broker had taken ownership of the message), incoming QoS 2
ids are forgotten and, with ``restore_subscriptions``, the remembered filters are subscribed
again. One :class:`~trio_mqtt._core._events.SessionLost` event reports the counts.

Normative statements enforced here and in the sibling modules (MQTT 5 numbering unless noted):
MQTT-2.2.1-3 (fresh packet ids), MQTT-3.1.2-23 (3.1.1; keep alive), MQTT-3.2.0-1 (nothing but
AUTH before CONNACK), MQTT-3.2.2-4 (session present without session), MQTT-3.2.2-11 (Maximum
QoS), MQTT-3.2.2-14 (Retain Available), MQTT-3.2.2-15 (Maximum Packet Size), MQTT-3.2.2-21
(Server Keep Alive), MQTT-3.3.1-1 (DUP on re-delivery), MQTT-3.3.2-9 and MQTT-3.3.2-10 (topic
alias ranges), MQTT-3.3.4-6 (no subscription identifier from a client), MQTT-3.3.4-7 (Receive
Maximum), MQTT-3.8.3-4 (No Local on shared subscriptions), MQTT-4.3.3-10 (QoS 2 duplicates),
MQTT-4.4.0-1 and MQTT-4.6.0-1 (replay with original ids, in order).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import replace

from ._codec import PacketDecoder, encode
from ._config import SessionConfig
from ._errors import (
    ConnectionRefused,
    DisconnectedByBroker,
    InvalidOptionError,
    KeepAliveTimeout,
    LocalProtocolError,
    MalformedPacketError,
)
from ._events import Incoming, PublishDone, PublishDropped, ReauthDone, SessionLost
from ._incoming import _IncomingMixin
from ._outgoing import _OutgoingMixin
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
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    QoS,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
)
from ._reason_codes import ReasonCode
from ._session import (
    AWAIT_PUBACK,
    AWAIT_PUBCOMP,
    AWAIT_PUBREC,
    AWAIT_SUBACK,
    IN_QOS2_RECEIVED,
    MQTT_MAX_PACKET,
    NO_FLOWS,
    ConnectionState,
    Flow,
    SessionSnapshot,
    SessionStatistics,
)

__all__ = ["ClientState", "ConnectionState", "SessionSnapshot", "SessionStatistics"]

#: :class:`SessionConfig` fields that :meth:`ClientState.reconfigure` refuses to change.
SESSION_FIELDS = (
    "client_id",
    "protocol_version",
    "inflight",
    "receive_maximum",
    "max_incoming_packet_size",
    "max_outgoing_packet_size",
    "topic_alias_maximum",
    "outgoing_topic_aliases",
    "manual_acks",
    "resend_on_session_loss",
    "restore_subscriptions",
    "throttle",
)


class ClientState(_OutgoingMixin, _IncomingMixin):
    """The sans-IO MQTT client session.

    Every method is synchronous and either completes or raises without corrupting the state.
    Requests raise :class:`~trio_mqtt._core._errors.LocalProtocolError` subclasses for invalid
    input, before anything is queued.

    Args:
        config: the session settings.
    """

    __slots__ = ()

    def export_session(self, now: float | None = None) -> SessionSnapshot:
        """The session state a restarted process needs to resume without loss or duplicates.

        Unfinished outgoing QoS 1/2 flows in send order, incoming QoS 2 packet ids awaiting
        PUBREL, and QoS 1/2 publishes admitted but not sent yet, in queue order (with the
        time they waited until ``now``; the last time given to any call by default). Waiting
        QoS 0 publishes, pending SUBSCRIBE/UNSUBSCRIBE requests and incoming messages not yet
        acked by the application (manual acks; the broker sends those again) are not part of
        it.
        """
        outgoing: list[Publish | PubRel] = []
        for pid, flow in self._flows.items():
            kind = flow.kind
            if kind == AWAIT_PUBCOMP:
                outgoing.append(PubRel(pid))
            elif kind in (AWAIT_PUBACK, AWAIT_PUBREC):
                assert isinstance(flow.packet, Publish)
                outgoing.append(flow.packet)
        incoming = tuple(pid for pid, held in self._incoming.items() if held == IN_QOS2_RECEIVED)
        queued = self._export_queue(self._now if now is None else now)
        return SessionSnapshot(tuple(outgoing), incoming, queued)

    def restore_session(self, snapshot: SessionSnapshot, *, now: float | None = None) -> None:
        """Load a session saved by :meth:`export_session` (before the first :meth:`connect`).

        The restored flows behave as if this object had sent them: a CONNACK with session
        present replays them (PUBLISH with DUP=1, PUBREL) with their packet ids; without it
        the session-loss rules apply. Restored flows carry no tag, so they report no
        :class:`PublishDone`. Restored queued publishes wait as if admitted ``waited`` seconds
        before ``now`` (needed when there are any), already released to be sent.

        Raises:
            LocalProtocolError: the session already holds state or has connected, or the
                snapshot is inconsistent (QoS 0 publish, packet id 0 or used twice, queue
                number used twice), or queued publishes come without ``now``.
        """
        if self.state is not ConnectionState.DISCONNECTED or self._decoder is not None:
            raise LocalProtocolError("a session can only be restored before the first connect")
        if self._flows or self._waiting or self._incoming:
            raise LocalProtocolError("cannot restore into a session that holds state")
        flows: dict[int, Flow] = {}
        for packet in snapshot.outgoing:
            pid = packet.packet_id
            if not 0 < pid <= 65535 or pid in flows:
                raise LocalProtocolError(f"snapshot: bad or repeated packet id {pid}")
            if isinstance(packet, PubRel):
                # The message itself is the broker's now; only its id matters.
                held = Publish("", b"", QoS.EXACTLY_ONCE, False, False, pid)
                flows[pid] = Flow(AWAIT_PUBCOMP, held, None)
            elif packet.qos == 1 or packet.qos == 2:
                kind = AWAIT_PUBACK if packet.qos == 1 else AWAIT_PUBREC
                flows[pid] = Flow(kind, replace(packet, qos=QoS(packet.qos)), None)
            else:
                raise LocalProtocolError("snapshot: a QoS 0 publish has no session state")
        self._restore_queue(snapshot.queued, now)
        self._flows = flows
        self._inflight = len(flows)
        if flows:
            self._last_id = next(reversed(flows))
        self._incoming = dict.fromkeys(snapshot.incoming, IN_QOS2_RECEIVED)

    def reconfigure(self, config: SessionConfig) -> None:
        """Use ``config`` from the next :meth:`connect` on, keeping the session.

        Only what a CONNECT carries may change between connections: credentials, the will,
        keep alive and PINGRESP timeout, clean start, the v5 CONNECT properties and the
        authenticator. Everything the session itself depends on (client id, protocol
        version, windows, packet size and alias limits, acknowledgement mode, the
        session-loss rules) must stay as it is: flows, queued publishes and subscriptions
        carry over untouched.

        Raises:
            LocalProtocolError: a connection is open (call it while disconnected).
            InvalidOptionError: a session-level setting differs; the message names it.
        """
        if self.state is not ConnectionState.DISCONNECTED:
            raise LocalProtocolError("the configuration can only change between connections")
        old = self.config
        changed = [name for name in SESSION_FIELDS if getattr(config, name) != getattr(old, name)]
        if changed:
            raise InvalidOptionError(
                f"{', '.join(changed)} cannot change during a session (only what CONNECT "
                "carries can: credentials, will, keep alive, clean start, CONNECT properties, "
                "authenticator)"
            )
        self.config = config
        self._session_expiry = config.connect_properties.session_expiry_interval or 0

    def connect(self, now: float) -> None:
        """Start a new network connection: reset per-connection state and queue CONNECT."""
        config = self.config
        self._now = now
        self._decoder = PacketDecoder(self._version, config.max_incoming_packet_size)
        self._out = []
        self._wire_open = True
        self.state = ConnectionState.CONNECTING
        self.connack = None
        self.window = config.inflight
        self._max_out = config.max_outgoing_packet_size
        self._max_qos = 2
        self._retain_available = True
        self._limits_learned = False
        self._keep_alive = config.keep_alive
        self._in_aliases = {}
        self._out_aliases = {}
        self._out_alias_max = 0
        self._wire_aliases = {}
        self._reauth_pending = False
        self._reauth_tag = None
        self._ping_outstanding = False
        self._reader_paused = False
        self._deferred.clear()
        self._send(self._build_connect())

    def _build_connect(self) -> Connect:
        config = self.config
        props = NO_PROPERTIES
        if self._v5:
            props = config.connect_properties
            changes: dict[str, object] = {}
            if config.receive_maximum < 65535:
                changes["receive_maximum"] = config.receive_maximum
            if config.max_incoming_packet_size < MQTT_MAX_PACKET:
                changes["maximum_packet_size"] = config.max_incoming_packet_size
            if config.topic_alias_maximum > 0:
                changes["topic_alias_maximum"] = config.topic_alias_maximum
            auth = config.authenticator
            if auth is not None:
                changes["authentication_method"] = auth.method
                changes["authentication_data"] = auth.initial_data()
            if changes:
                props = replace(props, **changes)  # type: ignore[arg-type]
        return Connect(
            client_id=self.client_id,
            protocol_version=self._version,
            keep_alive=config.keep_alive,
            clean_start=config.clean_start,
            username=config.username,
            password=config.password,
            will=config.will,
            properties=props,
        )

    def connection_lost(self, now: float) -> None:
        """The transport is gone: keep the session, forget the connection."""
        self._now = now
        if self._limiter is not None:
            self._limiter.not_holding(now)
        self._wire_open = False
        self._out = []
        self._ping_outstanding = False
        self._reauth_pending = False
        self._reauth_tag = None
        self._deferred.clear()
        self.state = ConnectionState.DISCONNECTED

    def check_disconnect(
        self, reason_code: int = 0, properties: Properties = NO_PROPERTIES
    ) -> None:
        """Raise if :meth:`disconnect` would refuse these arguments; change nothing.

        Raises:
            LocalProtocolError: a v5 Session Expiry Interval is set although CONNECT carried
                zero (section 3.14.2.2.2), or a reason code or properties with MQTT 3.1.1.
            InvalidOptionError: ``reason_code`` is not a byte.
        """
        if not 0 <= reason_code <= 255:
            raise InvalidOptionError(f"reason_code must be 0-255, got {reason_code!r}")
        if not self._v5:
            if reason_code or properties is not NO_PROPERTIES:
                raise LocalProtocolError("an MQTT 3.1.1 DISCONNECT carries no reason code")
            return
        expiry = properties.session_expiry_interval
        if expiry and not self.config.connect_properties.session_expiry_interval:
            raise LocalProtocolError(
                "cannot set a session expiry interval on DISCONNECT when CONNECT had none"
                " (section 3.14.2.2.2)"
            )

    def disconnect(
        self, now: float, reason_code: int = 0, properties: Properties = NO_PROPERTIES
    ) -> None:
        """Queue DISCONNECT; afterwards nothing else is sent (state CLOSED).

        The session (unacknowledged publishes included) is kept: a later :meth:`connect`
        resumes it.

        Raises:
            LocalProtocolError: as :meth:`check_disconnect`, before anything changes.
        """
        self._now = now
        self.check_disconnect(reason_code, properties)
        packet = Disconnect(reason_code, properties) if self._v5 else Disconnect()
        if self.state in (ConnectionState.CONNECTING, ConnectionState.CONNECTED):
            self._send(packet)
        self._wire_open = False
        self.state = ConnectionState.CLOSED

    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """Decode every complete packet in ``data`` (plus earlier leftovers) and process it.

        Raises:
            ConnectionRefused: CONNACK with a failure code.
            RemoteProtocolError: the broker broke the protocol (for v5 a DISCONNECT with the
                error's reason code is queued first).
            MalformedPacketError: undecodable bytes (same DISCONNECT rule).
            DisconnectedByBroker: the broker sent a v5 DISCONNECT.
        """
        decoder = self._decoder
        if decoder is None:
            raise LocalProtocolError("receive_data() called before connect()")
        self._now = now
        self._last_received = now
        self.statistics.bytes_received += len(data)
        # decode() is much faster than a next_packet() loop. When it raises, the valid packets
        # of the same chunk are not processed either; the connection is lost anyway and the
        # session replay covers whatever they carried.
        try:
            packets = decoder.decode(data)
        except MalformedPacketError as exc:
            self._fail_with(exc)
        handlers = _HANDLERS
        for packet in packets:
            handlers[type(packet)](self, packet)

    def receive_packet(self, packet: Packet, now: float) -> None:
        """Process one already-decoded packet (same rules as :meth:`receive_data`)."""
        self._now = now
        self._last_received = now
        _HANDLERS[type(packet)](self, packet)

    def _on_forbidden(self, packet: Packet) -> None:
        self.statistics.packets_received += 1
        self._events.append(Incoming(packet))
        self._fail(f"a server must not send {type(packet).__name__}", ReasonCode.PROTOCOL_ERROR)

    def _on_connack(self, packet: ConnAck) -> None:
        self.statistics.packets_received += 1
        self._events.append(Incoming(packet))
        if self.state is not ConnectionState.CONNECTING:
            self._fail("unexpected CONNACK (only one per connection)", ReasonCode.PROTOCOL_ERROR)
        self.connack = packet
        if packet.reason_code != 0:
            self._wire_open = False
            self.state = ConnectionState.DISCONNECTED
            props = packet.properties
            raise ConnectionRefused(packet.reason_code, props.reason_string, props.server_reference)
        if packet.session_present and self.config.clean_start:
            # MQTT-3.2.2-4: a client without session state must close on session present = 1.
            self._fail(
                "CONNACK says session present although we asked for a clean start",
                ReasonCode.PROTOCOL_ERROR,
            )
        if self._v5:
            self._apply_connack_properties(packet.properties)
        self.state = ConnectionState.CONNECTED
        if packet.session_present:
            self._replay()
        else:
            self._session_lost()
        self._drain()

    def _apply_connack_properties(self, props: Properties) -> None:
        config = self.config
        if props.receive_maximum is not None:
            # MQTT-3.3.4-7: never more unacknowledged QoS>0 publishes than Receive Maximum.
            self.window = max(1, min(config.inflight, props.receive_maximum))
        if props.maximum_packet_size is not None:
            # MQTT-3.2.2-15: never send a packet larger than the broker's Maximum Packet Size.
            self._max_out = min(config.max_outgoing_packet_size, props.maximum_packet_size)
        self._broker_alias_max = props.topic_alias_maximum or 0
        if props.topic_alias_maximum and config.outgoing_topic_aliases:
            self._out_alias_max = props.topic_alias_maximum
        if props.maximum_qos is not None:
            self._max_qos = props.maximum_qos
        if props.retain_available is not None:
            self._retain_available = bool(props.retain_available)
        if props.server_keep_alive is not None:
            # MQTT-3.2.2-21: the broker's keep alive replaces ours.
            self._keep_alive = props.server_keep_alive
        self._limits_learned = (
            self._max_qos < 2
            or not self._retain_available
            or self._max_out < config.max_outgoing_packet_size
        )
        if props.assigned_client_identifier is not None:
            self.client_id = props.assigned_client_identifier
        if props.session_expiry_interval is not None:
            self._session_expiry = props.session_expiry_interval
        auth = config.authenticator
        if auth is not None:
            auth.complete(props.authentication_data)

    def _replay(self) -> None:
        # MQTT-4.4.0-1: resend unacknowledged PUBLISH (DUP=1, MQTT-3.3.1-1) and PUBREL with
        # their original packet ids, in their original order (MQTT-4.6.0-1). If the broker's
        # Receive Maximum shrank since they were sent, the PUBLISH packets beyond the new
        # window wait in ``_deferred`` and go out, still before any new publish, as acks
        # free the window (MQTT-3.3.4-7).
        stats = self.statistics
        deferred = self._deferred
        if deferred is NO_FLOWS:  # made on first use (see _session.py)
            deferred = self._deferred = deque()
        resent = 0
        throttled = self._limiter is not None  # replays wait for the rate limit too
        for pid, flow in self._flows.items():
            kind = flow.kind
            if kind in (AWAIT_PUBACK, AWAIT_PUBREC):
                if throttled or resent >= self.window:
                    deferred.append(flow)
                else:
                    resent += 1
                    self._resend_publish(flow)
            elif kind == AWAIT_PUBCOMP:
                stats.retransmissions += 1
                self._send(PubRel(pid))
            else:
                self._send(flow.packet)

    def _session_lost(self) -> None:
        config = self.config
        old = list(self._flows.values())
        forgotten_incoming = len(self._incoming)
        self._flows = {}
        self._inflight = 0
        self._incoming = {}
        self._ack_order.clear()  # the broker forgot these messages: nothing left to ack
        self._early_acks.clear()
        resent = dropped = completed = 0
        requeue: list[tuple[Publish, object, bytes]] = []
        requests: list[Flow] = []
        for flow in old:
            packet = flow.packet
            if flow.kind in (AWAIT_PUBACK, AWAIT_PUBREC):
                assert isinstance(packet, Publish)
                fresh = replace(packet, dup=False, packet_id=1)  # id 1: waiting placeholder
                if config.resend_on_session_loss:
                    requeue.append((fresh, flow.tag, encode(fresh, self._version)))
                    resent += 1
                else:
                    self._events.append(PublishDropped(flow.tag, packet))
                    dropped += 1
            elif flow.kind == AWAIT_PUBCOMP:
                # PUBREC means the broker owns the message: count it as delivered.
                completed += 1
                if flow.tag is not None:
                    self._events.append(PublishDone(flow.tag, packet.packet_id))
            else:
                requests.append(flow)
        self._requeue_front(requeue)
        # Unanswered SUBSCRIBE/UNSUBSCRIBE keep their ids; register them before restoring
        # subscriptions so that the new SUBSCRIBE packets cannot take the same ids.
        for flow in requests:
            self._flows[flow.packet.packet_id] = flow
        resubscribed = 0
        if config.restore_subscriptions and self._subscriptions:
            resubscribed = self._restore_subscriptions(requests)
        for flow in requests:
            self._send(flow.packet)
        if resent or dropped or completed or resubscribed or forgotten_incoming:
            self.statistics.sessions_lost += 1
            self._events.append(SessionLost(resent, dropped, completed, resubscribed))

    def _restore_subscriptions(self, pending: list[Flow]) -> int:
        already: set[str] = set()
        for flow in pending:
            if isinstance(flow.packet, Subscribe):
                already.update(s.topic_filter for s in flow.packet.subscriptions)
        groups: dict[Properties, list[Subscription]] = {}
        for topic_filter, (sub, props) in self._subscriptions.items():
            if topic_filter not in already:
                groups.setdefault(props, []).append(sub)
        count = 0
        for props, subs in groups.items():
            pid = self._allocate_id()
            if not pid:
                break
            packet = Subscribe(pid, tuple(subs), props)
            self._flows[pid] = Flow(AWAIT_SUBACK, packet, None)
            self._send(packet)
            count += len(subs)
        return count

    def _on_pingresp(self, packet: PingResp) -> None:
        self._incoming_control(packet)
        self._ping_outstanding = False

    def _on_disconnect(self, packet: Disconnect) -> None:
        self.statistics.packets_received += 1
        self._events.append(Incoming(packet))
        if not self._v5:
            self._fail("a 3.1.1 server must not send DISCONNECT", ReasonCode.PROTOCOL_ERROR)
        self._wire_open = False
        self.state = ConnectionState.DISCONNECTED
        if packet.reason_code == ReasonCode.MESSAGE_RATE_TOO_HIGH and self._limiter is not None:
            self._limiter.back_off(self._now)
        props = packet.properties
        raise DisconnectedByBroker(packet.reason_code, props.reason_string, props.server_reference)

    def _on_auth(self, packet: Auth) -> None:
        self.statistics.packets_received += 1
        self._events.append(Incoming(packet))
        auth = self.config.authenticator
        if auth is None or not self._v5:
            self._fail("AUTH received but no authentication is in use", ReasonCode.PROTOCOL_ERROR)
        props = packet.properties
        if props.authentication_method != auth.method:
            # Section 4.12: the method must stay the same.
            self._fail("AUTH with a different authentication method", ReasonCode.PROTOCOL_ERROR)
        code = packet.reason_code
        if code == ReasonCode.CONTINUE_AUTHENTICATION:
            if self.state is ConnectionState.CONNECTED and not self._reauth_pending:
                self._fail("unsolicited AUTH challenge", ReasonCode.PROTOCOL_ERROR)
            data = auth.challenge(props.authentication_data)
            reply = Properties(authentication_method=auth.method, authentication_data=data)
            self._send(Auth(int(ReasonCode.CONTINUE_AUTHENTICATION), reply))
        elif code == ReasonCode.SUCCESS and self._reauth_pending:
            self._reauth_pending = False
            auth.complete(props.authentication_data)
            if self._reauth_tag is not None:
                self._events.append(ReauthDone(self._reauth_tag))
                self._reauth_tag = None
        else:
            self._fail(f"unexpected AUTH reason code 0x{code:02x}", ReasonCode.PROTOCOL_ERROR)

    def check_reauthenticate(self) -> None:
        """Raise if :meth:`reauthenticate` would refuse to start now; change nothing.

        Raises:
            LocalProtocolError: not MQTT 5, no authenticator, not connected, or a
                re-authentication is already under way.
        """
        if not self._v5 or self.config.authenticator is None:
            raise LocalProtocolError("re-authentication needs MQTT 5 and an authenticator")
        if self.state is not ConnectionState.CONNECTED:
            raise LocalProtocolError("re-authentication needs an established connection")
        if self._reauth_pending:
            raise LocalProtocolError("a re-authentication is already under way")

    def reauthenticate(self, now: float, *, tag: object = None) -> None:
        """Start MQTT 5 re-authentication: AUTH 0x19 with the authenticator's initial data.

        With a ``tag``, a :class:`ReauthDone` event carries it back once the broker answers
        with AUTH success. A re-authentication the broker refuses ends the connection (it
        sends DISCONNECT), and a lost connection abandons it; the layer above reports those.

        Raises:
            LocalProtocolError: as :meth:`check_reauthenticate`.
        """
        self._now = now
        self.check_reauthenticate()
        auth = self.config.authenticator
        assert auth is not None
        self._reauth_tag = tag
        props = Properties(
            authentication_method=auth.method, authentication_data=auth.initial_data()
        )
        self._reauth_pending = True
        self._send(Auth(int(ReasonCode.RE_AUTHENTICATE), props))

    def throttle_deadline(self) -> float | None:
        """When :meth:`release_throttled` should run next: publishes wait for the rate limit."""
        limiter = self._limiter
        if limiter is None or not limiter.holding or self.state is not ConnectionState.CONNECTED:
            return None
        return limiter.ready_at()

    def release_throttled(self, now: float) -> None:
        """Send the publishes the rate limit allows by ``now`` (see :meth:`throttle_deadline`)."""
        self._now = now
        self._drain()

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timeout` must next be called, or None (nothing to time)."""
        if self.state is not ConnectionState.CONNECTED or not self._keep_alive:
            return None
        if self._ping_outstanding:
            if self._reader_paused:
                return self._last_sent + self._keep_alive
            return self._ping_wait_start + self.config.ping_timeout
        return self._quiet_since() + self._keep_alive

    def _quiet_since(self) -> float:
        """Since when one direction of the link has been silent.

        Outbound silence makes a PINGREQ necessary (MQTT-3.1.2-23). Inbound silence makes one
        useful: a client that only publishes QoS 0 hears nothing back, and without a probe it
        would never notice a half-open link. While the reader is paused the broker is not
        silent, we are not listening, so only outbound silence counts then.
        """
        if self._reader_paused:
            return self._last_sent
        return min(self._last_sent, self._last_received)

    def handle_timeout(self, now: float) -> None:
        """Queue PINGREQ when either direction has been quiet for the keep alive; raise when
        PINGRESP is overdue.

        Raises:
            KeepAliveTimeout: no PINGRESP within ``ping_timeout`` seconds of the PINGREQ
                (reader not paused).
        """
        self._now = now
        if self.state is not ConnectionState.CONNECTED or not self._keep_alive:
            return
        if self._ping_outstanding:
            if not self._reader_paused and now >= self._ping_wait_start + self.config.ping_timeout:
                self._wire_open = False
                self.state = ConnectionState.DISCONNECTED
                raise KeepAliveTimeout(
                    f"no PINGRESP within {self.config.ping_timeout} s of PINGREQ"
                )
            if self._reader_paused and now >= self._last_sent + self._keep_alive:
                # Not listening, but still bound by MQTT-3.1.2-23: a broker that enforces 1.5
                # times the keep alive would otherwise close a link that is merely slow.
                self.statistics.pings_sent += 1
                self._send(PingReq())
        elif now >= self._quiet_since() + self._keep_alive:
            self._ping_outstanding = True
            self._ping_wait_start = now
            self.statistics.pings_sent += 1
            self._send(PingReq())

    def set_reader_paused(self, paused: bool, now: float) -> None:
        """Tell the core whether the reader stopped reading (slow application)."""
        self._now = now
        if self._reader_paused and not paused:
            self._ping_wait_start = now
        self._reader_paused = paused


#: What each packet type from the broker is handed to: one table for every session (a dict of
#: bound methods per session would cost about 1.2 KiB of every idle connection).
_HANDLERS: dict[type[Packet], Callable[[ClientState, Packet], None]] = {
    Publish: ClientState._on_publish,  # type: ignore[dict-item]
    PubAck: ClientState._on_puback,  # type: ignore[dict-item]
    PubRec: ClientState._on_pubrec,  # type: ignore[dict-item]
    PubRel: ClientState._on_pubrel,  # type: ignore[dict-item]
    PubComp: ClientState._on_pubcomp,  # type: ignore[dict-item]
    SubAck: ClientState._on_suback,  # type: ignore[dict-item]
    UnsubAck: ClientState._on_unsuback,  # type: ignore[dict-item]
    PingResp: ClientState._on_pingresp,  # type: ignore[dict-item]
    ConnAck: ClientState._on_connack,  # type: ignore[dict-item]
    Disconnect: ClientState._on_disconnect,  # type: ignore[dict-item]
    Auth: ClientState._on_auth,  # type: ignore[dict-item]
    Connect: ClientState._on_forbidden,
    Subscribe: ClientState._on_forbidden,
    Unsubscribe: ClientState._on_forbidden,
    PingReq: ClientState._on_forbidden,
}
