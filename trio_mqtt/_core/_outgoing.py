"""The outgoing half of the session: publishes, subscriptions, packet ids, window, aliases.

Outgoing flows live in one insertion-ordered dict ``_flows`` keyed by packet id; it holds every
QoS 1/2 PUBLISH awaiting its acknowledgement and every SUBSCRIBE/UNSUBSCRIBE awaiting its answer,
so "is this id free" is one dict lookup and an id is never reused while any flow holds it
(MQTT-2.2.1-3). Insertion order is send order, which is the order of replay after a reconnect.
Publishes that cannot go out yet (window full, not connected, or queued behind such a publish)
wait without a packet id in the ``_waiting`` deque and get their id when they enter the window,
so a full window never pins ids. The window counts QoS 1/2 publishes only: QoS 1 holds its slot
until PUBACK, QoS 2 until PUBCOMP or a PUBREC with a failure code; acks, PUBREL, SUBSCRIBE,
UNSUBSCRIBE, PINGREQ and DISCONNECT never wait for it.

Topic aliases (MQTT 5) come in two kinds that do not mix. With ``outgoing_topic_aliases`` the
session assigns them itself (least recently used first). Otherwise the application may set one
on a publish (``Properties(topic_alias=n)``, within the broker's Topic Alias Maximum) and later
publish with an empty topic and that alias. Every publish is kept with its full topic, whatever
the application wrote, so that flows, replays and the session store never depend on an alias;
on the wire an alias the broker already knows from this connection goes alone, any other one
with its topic. Aliases end with the network connection (section 3.3.2.3.4): after a reconnect
the first publish with an alias carries its topic again, and replayed publishes carry the full
topic and no alias.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import NoReturn

from ._codec import encode, encoded_size
from ._codec_v4 import new_publish, new_pubrel
from ._errors import LocalProtocolError, PacketTooLargeError
from ._events import DROPPED_EXPIRED, PublishDone, StrayAck, SubscribeDone, UnsubscribeDone
from ._packets import (
    NO_PROPERTIES,
    Packet,
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
from ._queue import _QueueMixin
from ._reason_codes import ReasonCode
from ._session import (
    AWAIT_PUBACK,
    AWAIT_PUBCOMP,
    AWAIT_PUBREC,
    AWAIT_SUBACK,
    AWAIT_UNSUBACK,
    QOS_BY_VALUE,
    ConnectionState,
    Flow,
)
from ._topics import parse_shared, validate_filter, validate_topic

_TOPIC_CACHE_SIZE = 1024


class _OutgoingMixin(_QueueMixin):
    """Requests from the application and the broker's answers to them."""

    __slots__ = ()

    def check_publish(
        self,
        topic: str,
        payload: bytes,
        qos: QoS | int,
        retain: bool = False,
        properties: Properties = NO_PROPERTIES,
    ) -> None:
        """Raise if :meth:`publish` would refuse this message now; change nothing.

        The one place where a publish is validated: the Trio layer calls it in the caller's
        task (so a bad request raises at its call site, before anything is queued) and
        :meth:`publish` calls it again, since the broker's limits can change in between.

        Raises:
            TypeError: ``topic`` is not a ``str`` or ``payload`` not bytes-like.
            InvalidTopicError: ``topic`` is not a valid topic name.
            PacketTooLargeError: the packet exceeds the maximum packet size (ours, or the
                broker's Maximum Packet Size, MQTT-3.2.2-15).
            LocalProtocolError: bad QoS, a QoS or retain flag the broker does not support
                (MQTT-3.2.2-11, MQTT-3.2.2-14), a property a client must not set (subscription
                identifier, MQTT-3.3.4-6), or a topic alias that cannot be used: 0 or above
                the broker's Topic Alias Maximum (MQTT-3.3.2-9), set while
                ``outgoing_topic_aliases`` assigns them, or an empty topic with an alias that
                was never set.
        """
        level = QOS_BY_VALUE.get(qos)
        if level is None:
            raise LocalProtocolError(f"invalid QoS {qos!r}")
        if topic not in self._valid_topics:
            if type(topic) is not str:
                raise TypeError(f"topic must be a str, not {type(topic).__name__}")
            if topic or properties is NO_PROPERTIES or properties.topic_alias is None:
                validate_topic(topic)
                if len(self._valid_topics) >= _TOPIC_CACHE_SIZE:
                    self._valid_topics.clear()
                self._valid_topics.add(topic)
        if type(payload) is not bytes and not isinstance(payload, (bytes, bytearray, memoryview)):
            raise TypeError(f"payload must be bytes, not {type(payload).__name__}")
        if self._v5 and properties is not NO_PROPERTIES:
            topic = self._check_publish_properties(topic, properties)
        elif not topic:
            validate_topic(topic)  # an empty topic without an alias
        if level > self._max_qos:
            raise LocalProtocolError(
                f"the broker supports QoS up to {self._max_qos} (MQTT-3.2.2-11)",
                reason_code=ReasonCode.QOS_NOT_SUPPORTED,
            )
        if retain and not self._retain_available:
            raise LocalProtocolError(
                "the broker does not support retained messages (MQTT-3.2.2-14)",
                reason_code=ReasonCode.RETAIN_NOT_SUPPORTED,
            )
        limit = self._max_out
        # Only a message near the limit is worth sizing exactly: a topic costs at most four
        # bytes per character in UTF-8, and the fixed header, id and lengths stay below 16.
        if len(payload) + 4 * len(topic) + 16 >= limit or (
            self._v5 and properties is not NO_PROPERTIES
        ):
            props = properties if self._v5 else NO_PROPERTIES
            size = encoded_size(
                new_publish(topic, bytes(payload), level, retain, False, 1 if level else 0, props),
                self._version,
            )
            if size > limit:
                raise PacketTooLargeError(size, limit)

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: QoS | int,
        retain: bool = False,
        properties: Properties = NO_PROPERTIES,
        *,
        tag: object = None,
        now: float,
        checked: bool = False,
    ) -> None:
        """Admit a publish: send it now if possible, otherwise queue it (FIFO).

        A publish waits when not connected, when the window is full (QoS 1/2) or when earlier
        publishes wait (any QoS, to keep the order). :meth:`check_publish` validates it first,
        unless the caller has just done so with nothing in between (``checked``).

        Args:
            topic: the topic name (no wildcards).
            payload: the message (``bytearray`` and ``memoryview`` are copied to bytes).
            qos: 0, 1 or 2.
            retain: the RETAIN flag.
            properties: MQTT 5 properties (ignored for MQTT 3.1.1).
            tag: anything; when not None, a :class:`PublishDone` (or
                :class:`~trio_mqtt.PublishDropped`) event carries it back once the publish
                completes.
            now: the current time.
            checked: :meth:`check_publish` accepted these arguments in this same step.

        Raises:
            Everything :meth:`check_publish` raises, before a packet id or a window slot is
            taken.
        """
        self._now = now
        if not checked:
            self.check_publish(topic, payload, qos, retain, properties)
        level = QOS_BY_VALUE[qos]
        if type(payload) is not bytes:
            payload = bytes(payload)
        if not self._v5:
            properties = NO_PROPERTIES
        elif properties is not NO_PROPERTIES and properties.topic_alias is not None:
            # kept with its full topic (see the module doc)
            if topic:
                self._app_aliases[properties.topic_alias] = topic
            else:
                topic = self._app_aliases[properties.topic_alias]
        if (
            self.state is ConnectionState.CONNECTED
            and not self._waiting
            and (not level or (self._inflight < self.window and not self._queue_durable))
        ):
            pid = self._allocate_id() if level else 0
            if pid or not level:
                packet = new_publish(topic, payload, level, retain, False, pid, properties)
                data = encode(packet, self._version)
                limiter = self._limiter
                if limiter is None or limiter.take(len(data), now):
                    self._commit_publish(packet, tag, data)
                    return
                # held by the rate limit: it waits like any other (the id stays free)
        # A waiting QoS 1/2 publish is encoded now with the placeholder id 1 (giving its exact
        # size); the real id is patched in when it enters the window.
        packet = new_publish(topic, payload, level, retain, False, 1 if level else 0, properties)
        self._enqueue(packet, tag, encode(packet, self._version))

    def _check_publish_properties(self, topic: str, props: Properties) -> str:
        """Check the v5 properties of a publish; return its full topic (an alias resolved)."""
        if props.subscription_identifiers:
            raise LocalProtocolError(
                "a client must not send a subscription identifier in PUBLISH (MQTT-3.3.4-6)"
            )
        alias = props.topic_alias
        if alias is None:
            return topic
        if self.config.outgoing_topic_aliases:
            raise LocalProtocolError(
                "topic aliases are assigned by the session (outgoing_topic_aliases): do not "
                "set one yourself",
                reason_code=ReasonCode.TOPIC_ALIAS_INVALID,
            )
        limit = self._broker_alias_max
        if not 0 < alias <= limit:
            allowed = f"1..{limit}" if limit else "none: it announced no Topic Alias Maximum"
            raise LocalProtocolError(
                f"topic alias {alias} is outside what the broker accepts ({allowed}; MQTT-3.3.2-9)",
                reason_code=ReasonCode.TOPIC_ALIAS_INVALID,
            )
        if topic:
            return topic
        known = self._app_aliases.get(alias)
        if known is None:
            raise LocalProtocolError(
                f"an empty topic needs a topic alias set before; alias {alias} was never set",
                reason_code=ReasonCode.TOPIC_ALIAS_INVALID,
            )
        return known

    def _commit_publish(self, packet: Publish, tag: object, data: bytes) -> None:
        """Send an admitted publish that has its packet id (if any); record its flow.

        ``data`` is the encoding of ``packet`` itself (full topic, no alias), already checked
        against the size limit, so nothing below can fail halfway.
        """
        qos = packet.qos
        wire = packet
        props = packet.properties
        if props is not NO_PROPERTIES and props.topic_alias is not None:
            packet = replace(packet, properties=replace(props, topic_alias=None))
            wire, data = self._explicit_alias(packet, props.topic_alias)
        elif self._out_alias_max:
            aliased = self._aliased(packet)
            if aliased is not None:
                wire, data = aliased
        if qos:
            kind = AWAIT_PUBACK if qos == 1 else AWAIT_PUBREC
            self._flows[packet.packet_id] = Flow(kind, packet, tag)
            self._inflight += 1
        self.statistics.publishes_sent += 1
        self._send(wire, data)
        if not qos and tag is not None:
            self._events.append(PublishDone(tag, 0))

    def _aliased(self, packet: Publish) -> tuple[Publish, bytes] | None:
        """``packet`` with a topic alias and its encoding, or None to send it as it is.

        The least recently used alias is reassigned when all are taken (MQTT-3.3.2-9: aliases
        stay within the broker's Topic Alias Maximum). The alias table changes only once the
        aliased packet is known to fit the size limit, so the broker's table and ours never
        disagree.
        """
        aliases = self._out_aliases
        topic = packet.topic
        props = packet.properties
        alias = aliases.get(topic)
        evicted: str | None = None
        if alias is not None:
            wire = replace(packet, topic="", properties=replace(props, topic_alias=alias))
        else:
            if len(aliases) < self._out_alias_max:
                alias = len(aliases) + 1
            else:
                evicted = next(iter(aliases))
                alias = aliases[evicted]
            wire = replace(packet, properties=replace(props, topic_alias=alias))
        data = encode(wire, self._version)
        if len(data) > self._max_out:
            return None
        if evicted is not None:
            del aliases[evicted]
        aliases.pop(topic, None)  # re-inserted last: the most recently used
        aliases[topic] = alias
        return wire, data

    def _explicit_alias(self, packet: Publish, alias: int) -> tuple[Publish, bytes]:
        """What to send for ``packet`` (full topic, no alias) with the application's ``alias``.

        An alias the broker knows for this topic on this connection goes alone; otherwise the
        topic goes with it and the broker learns the mapping. An alias above the Topic Alias
        Maximum of this connection (a broker that lowered it after a reconnect) is left out.
        """
        if alias > self._broker_alias_max:
            return packet, encode(packet, self._version)
        topic = packet.topic
        props = replace(packet.properties, topic_alias=alias)
        if self._wire_aliases.get(alias) == topic:
            wire = replace(packet, topic="", properties=props)
        else:
            self._wire_aliases[alias] = topic
            wire = replace(packet, properties=props)
        return wire, encode(wire, self._version)

    def _forget_deferred(self, flow: Flow) -> None:
        """The broker answered a held-back replay before we re-sent it: do not send it."""
        if flow in self._deferred:
            self._deferred.remove(flow)

    def _resend_publish(self, flow: Flow) -> None:
        """Send an unacknowledged PUBLISH again: same id, DUP=1 (MQTT-3.3.1-1), full topic."""
        packet = flow.packet
        assert isinstance(packet, Publish)
        if not packet.dup:
            packet = replace(packet, dup=True)
            flow.packet = packet
        stats = self.statistics
        stats.retransmissions += 1
        stats.publishes_sent += 1
        self._send(packet)

    def _drain(self) -> None:
        """Send waiting publishes while the window (and the connection) allows, in order."""
        deferred = self._deferred
        while (
            deferred
            and self.state is ConnectionState.CONNECTED
            and self._inflight - len(deferred) < self.window
        ):
            flow = deferred[0]
            # Skip a flow the broker answered meanwhile (never resend PUBLISH after PUBREL).
            if self._flows.get(flow.packet.packet_id) is flow and flow.kind in (
                AWAIT_PUBACK,
                AWAIT_PUBREC,
            ):
                packet = flow.packet
                assert isinstance(packet, Publish)
                if self._limiter is not None and not self._limiter.take(
                    encoded_size(packet, self._version), self._now
                ):
                    return
                deferred.popleft()
                self._resend_publish(flow)
            else:
                deferred.popleft()
        waiting = self._waiting
        while waiting and self.state is ConnectionState.CONNECTED:
            packet, tag, data, number, queued_at = waiting[0]
            if number > self._queue_released:
                return  # not committed to the durable store yet
            qos = packet.qos
            if qos and self._inflight >= self.window:
                return
            props = packet.properties
            if props is not NO_PROPERTIES and props.message_expiry_interval is not None:
                aged = self._aged(packet, data, queued_at)
                if aged is None:
                    waiting.popleft()
                    self.statistics.publishes_expired += 1
                    self._unqueued(packet, tag, number, DROPPED_EXPIRED)
                    continue
                packet, data = aged
            code = self._send_time_problem(packet, data) if self._limits_learned else 0
            limiter = self._limiter
            if not code and limiter is not None and not limiter.take(len(data), self._now):
                return
            if code:
                waiting.popleft()
                self._unqueued(packet, tag, number, None)
                self.statistics.publishes_discarded += 1
                if tag is not None:
                    self._events.append(PublishDone(tag, 0, code))
                continue
            if qos:
                pid = self._allocate_id()
                if not pid:
                    return
                props = packet.properties
                packet = new_publish(
                    packet.topic, packet.payload, qos, packet.retain, False, pid, props
                )
                if props is NO_PROPERTIES:
                    # The id sits right before the payload (and, in v5, the empty property
                    # length byte): patch it instead of encoding the whole packet again.
                    at = len(data) - len(packet.payload) - self._id_tail
                    data = data[:at] + pid.to_bytes(2, "big") + data[at + 2 :]
                else:
                    data = encode(packet, self._version)
            waiting.popleft()
            if number:
                self._unqueued(packet, tag, number, None)
            self._commit_publish(packet, tag, data)

    def release_queued(self, number: int, now: float) -> None:
        """The durable store has every queued publish up to ``number``: let them out."""
        self._now = now
        if number > self._queue_released:
            self._queue_released = number
            self._drain()

    def _send_time_problem(self, packet: Publish, data: bytes) -> int:
        """Reason code for a waiting publish a limit announced since its admission forbids."""
        if packet.qos > self._max_qos:
            return int(ReasonCode.QOS_NOT_SUPPORTED)
        if packet.retain and not self._retain_available:
            return int(ReasonCode.RETAIN_NOT_SUPPORTED)
        if len(data) > self._max_out:
            # Discard it as if it had been sent, as MQTT-3.1.2-25 asks of a server.
            return int(ReasonCode.PACKET_TOO_LARGE)
        return 0

    def _allocate_id(self) -> int:
        """A packet id no flow holds (MQTT-2.2.1-3), or 0 when all 65535 are taken."""
        flows = self._flows
        pid = self._last_id
        for _ in range(65535):
            pid = pid + 1 if pid < 65535 else 1
            if pid not in flows:
                self._last_id = pid
                return pid
        return 0

    def subscribe(
        self,
        subscriptions: Sequence[Subscription],
        properties: Properties = NO_PROPERTIES,
        *,
        tag: object = None,
        now: float,
    ) -> None:
        """Send SUBSCRIBE (now if connected, otherwise after the next CONNACK).

        Filters the broker grants are remembered for ``restore_subscriptions``.

        Args:
            subscriptions: the filters and their options (MQTT 5 options are dropped for
                MQTT 3.1.1).
            properties: MQTT 5 properties (subscription identifier, user properties).
            tag: when not None, a :class:`SubscribeDone` event carries it back with the
                broker's reason codes.
            now: the current time.

        Raises:
            InvalidTopicError: a filter is invalid.
            LocalProtocolError: no filters (section 3.8.3), bad QoS, No Local on a shared
                subscription (MQTT-3.8.3-4), no free packet id.
            PacketTooLargeError: the packet exceeds the maximum packet size.
        """
        self._now = now
        subs = tuple(subscriptions)
        if not subs:
            raise LocalProtocolError("SUBSCRIBE needs at least one topic filter (section 3.8.3)")
        for sub in subs:
            validate_filter(sub.topic_filter)
            if sub.qos not in QOS_BY_VALUE:
                raise LocalProtocolError(f"invalid QoS {sub.qos!r}")
            if self._v5 and sub.no_local and parse_shared(sub.topic_filter) is not None:
                raise LocalProtocolError(
                    "No Local cannot be set on a shared subscription (MQTT-3.8.3-4)"
                )
        if not self._v5:
            subs = tuple(Subscription(s.topic_filter, QOS_BY_VALUE[s.qos]) for s in subs)
            properties = NO_PROPERTIES
        self._start_request(Subscribe(1, subs, properties), AWAIT_SUBACK, tag)

    def unsubscribe(
        self,
        topic_filters: Sequence[str],
        properties: Properties = NO_PROPERTIES,
        *,
        tag: object = None,
        now: float,
    ) -> None:
        """Send UNSUBSCRIBE (now if connected, otherwise after the next CONNACK).

        The filters are forgotten at once for ``restore_subscriptions``.

        Args:
            topic_filters: the filters to remove (a single string is accepted too).
            properties: MQTT 5 properties.
            tag: when not None, an :class:`UnsubscribeDone` event carries it back.
            now: the current time.

        Raises:
            InvalidTopicError: a filter is invalid.
            LocalProtocolError: no filters (section 3.10.3), no free packet id.
            PacketTooLargeError: the packet exceeds the maximum packet size.
        """
        self._now = now
        if isinstance(topic_filters, str):
            topic_filters = (topic_filters,)
        filters = tuple(topic_filters)
        if not filters:
            raise LocalProtocolError("UNSUBSCRIBE needs at least one topic filter (section 3.10.3)")
        for topic_filter in filters:
            validate_filter(topic_filter)
        if not self._v5:
            properties = NO_PROPERTIES
        self._start_request(Unsubscribe(1, filters, properties), AWAIT_UNSUBACK, tag)
        for topic_filter in filters:
            self._subscriptions.pop(topic_filter, None)

    def _start_request(self, packet: Subscribe | Unsubscribe, kind: int, tag: object) -> None:
        size = encoded_size(packet, self._version)
        if size > self._max_out:
            raise PacketTooLargeError(size, self._max_out)
        pid = self._allocate_id()
        if not pid:
            raise LocalProtocolError("all 65535 packet identifiers are in use")
        packet = replace(packet, packet_id=pid)
        self._flows[pid] = Flow(kind, packet, tag)
        if self.state is ConnectionState.CONNECTED:
            self._send(packet)

    def _finish_publish(self, pid: int, flow: Flow, ack: PubAck | PubRec | PubComp) -> None:
        """End an outgoing publish flow: free its id and window slot, report, send the next."""
        del self._flows[pid]
        self._inflight -= 1
        if ack.reason_code == ReasonCode.QUOTA_EXCEEDED and self._limiter is not None:
            self._limiter.back_off(self._now)  # PUBACK or PUBREC 0x97: we send too much
        if flow.tag is not None:
            self._events.append(PublishDone(flow.tag, pid, ack.reason_code, ack.properties))
        if self._waiting or self._deferred:
            self._drain()

    def _on_puback(self, packet: PubAck) -> None:
        self._incoming_control(packet)
        pid = packet.packet_id
        flow = self._flows.get(pid)
        if flow is None:
            self._stray_ack(packet)
            return
        if flow.kind != AWAIT_PUBACK:
            self._unexpected_ack(packet, flow)
        if self._deferred:
            self._forget_deferred(flow)
        self._finish_publish(pid, flow, packet)

    def _on_pubrec(self, packet: PubRec) -> None:
        self._incoming_control(packet)
        pid = packet.packet_id
        flow = self._flows.get(pid)
        if flow is None:
            # Answer so that the broker can end its side of the exchange (section 4.3.3).
            self._stray_ack(packet)
            code = ReasonCode.PACKET_IDENTIFIER_NOT_FOUND if self._v5 else 0
            self._send(PubRel(pid, int(code)))
            return
        if flow.kind != AWAIT_PUBREC and flow.kind != AWAIT_PUBCOMP:
            self._unexpected_ack(packet, flow)
        if self._deferred:
            self._forget_deferred(flow)
        if packet.reason_code >= 0x80:
            # A failing PUBREC ends the flow without PUBREL (MQTT-4.3.3).
            self._finish_publish(pid, flow, packet)
            return
        flow.kind = AWAIT_PUBCOMP
        self._send(new_pubrel(pid, 0, NO_PROPERTIES))

    def _on_pubcomp(self, packet: PubComp) -> None:
        self._incoming_control(packet)
        pid = packet.packet_id
        flow = self._flows.get(pid)
        if flow is None:
            self._stray_ack(packet)
            return
        if flow.kind != AWAIT_PUBCOMP:
            self._unexpected_ack(packet, flow)
        if self._deferred:
            self._forget_deferred(flow)
        self._finish_publish(pid, flow, packet)

    def _stray_ack(self, packet: PubAck | PubRec | PubComp) -> None:
        """An ack for a packet id no flow holds: ignore it and count it.

        A broker may repeat an ack after a resumed session, and mosquitto's and paho's own
        client tests expect a client to carry on; closing the connection would only start a
        reconnect loop. The Trio layer logs the count.
        """
        self.statistics.stray_acks += 1
        self._events.append(StrayAck(packet))

    def _unexpected_ack(self, packet: Packet, flow: Flow | None) -> NoReturn:
        name = type(packet).__name__
        pid = getattr(packet, "packet_id", 0)
        if flow is None:
            message = f"{name} for packet id {pid}, which no flow holds"
        else:
            message = f"{name} for packet id {pid}, which awaits a different packet"
        self._fail(message, ReasonCode.PROTOCOL_ERROR)

    def abandon_requests(self) -> list[object]:
        """Forget every unanswered SUBSCRIBE and UNSUBSCRIBE; return their tags.

        For a connection that failed with nobody to reconnect it: the callers are told the
        error, so the requests must not be sent again behind their backs on a later
        reconnect. Outgoing publishes stay (they are the session).
        """
        tags: list[object] = []
        for pid, flow in list(self._flows.items()):
            if flow.kind == AWAIT_SUBACK or flow.kind == AWAIT_UNSUBACK:
                del self._flows[pid]
                if flow.tag is not None:
                    tags.append(flow.tag)
        return tags

    def _on_suback(self, packet: SubAck) -> None:
        self._incoming_control(packet)
        pid = packet.packet_id
        flow = self._flows.get(pid)
        request = flow.packet if flow is not None else None
        if not isinstance(request, Subscribe):
            self._unexpected_ack(packet, flow)
        assert flow is not None
        if len(packet.reason_codes) != len(request.subscriptions):
            self._fail(
                f"SUBACK carries {len(packet.reason_codes)} codes for "
                f"{len(request.subscriptions)} filters (section 3.9.3)",
                ReasonCode.PROTOCOL_ERROR,
            )
        del self._flows[pid]
        remembered = self._subscriptions
        for sub, code in zip(request.subscriptions, packet.reason_codes, strict=True):
            if code < 0x80:
                remembered[sub.topic_filter] = (sub, request.properties)
        if flow.tag is not None:
            self._events.append(
                SubscribeDone(flow.tag, pid, packet.reason_codes, packet.properties)
            )

    def _on_unsuback(self, packet: UnsubAck) -> None:
        self._incoming_control(packet)
        pid = packet.packet_id
        flow = self._flows.get(pid)
        request = flow.packet if flow is not None else None
        if not isinstance(request, Unsubscribe):
            self._unexpected_ack(packet, flow)
        assert flow is not None
        expected = len(request.topic_filters) if self._v5 else 0
        if len(packet.reason_codes) != expected:
            self._fail(
                f"UNSUBACK carries {len(packet.reason_codes)} codes for "
                f"{len(request.topic_filters)} filters (section 3.11.3)",
                ReasonCode.PROTOCOL_ERROR,
            )
        del self._flows[pid]
        for topic_filter in request.topic_filters:
            self._subscriptions.pop(topic_filter, None)
        if flow.tag is not None:
            self._events.append(
                UnsubscribeDone(flow.tag, pid, packet.reason_codes, packet.properties)
            )
