"""The incoming half of the session: publishes from the broker, their acks, topic aliases.

Incoming QoS 1/2 publishes that still need something from us live in ``_incoming`` (keyed by the
broker's packet ids): QoS 1 awaiting a manual ack, QoS 2 awaiting a manual ack, or QoS 2
acknowledged with PUBREC and awaiting PUBREL. A QoS 2 PUBLISH for an id held there is a
retransmission: it is answered (PUBREC again once acked) but not delivered twice (MQTT 5
MQTT-4.3.3-10; MQTT 3.1.1 section 4.3.3 "method B"). With manual acks nothing is acknowledged
until the application calls :meth:`ack`; the held entries count against our Receive Maximum.

Manual acks leave in the order the publishes arrived (MQTT-4.6.0-2), whatever the order of the
application's calls: ``_ack_order`` lists the delivered ids not yet acknowledged on the wire, and
an ack for an id behind the head waits in ``_early_acks`` until every earlier one is acked.
"""

from __future__ import annotations

from dataclasses import replace

from ._codec_v4 import new_puback, new_pubcomp, new_pubrec
from ._errors import LocalProtocolError, UnknownPacketIdError
from ._events import Incoming
from ._packets import NO_PROPERTIES, Properties, PubAck, PubComp, Publish, PubRec, PubRel
from ._reason_codes import ReasonCode
from ._session import (
    IN_QOS1_UNACKED,
    IN_QOS2_RECEIVED,
    IN_QOS2_UNACKED,
    ConnectionState,
    _SessionBase,
)


class _IncomingMixin(_SessionBase):
    """Publishes and PUBREL from the broker, and manual acks."""

    __slots__ = ()

    def _on_publish(self, packet: Publish) -> None:
        stats = self.statistics
        stats.packets_received += 1
        stats.publishes_received += 1
        if self.state is ConnectionState.CONNECTING:
            self._events.append(Incoming(packet))
            self._fail("PUBLISH received before CONNACK (MQTT-3.2.0-1)", ReasonCode.PROTOCOL_ERROR)
        props = packet.properties
        if props is not NO_PROPERTIES and props.topic_alias is not None:
            packet = self._resolve_alias(packet, props.topic_alias)
        qos = packet.qos
        if qos == 0:
            self._events.append(Incoming(packet))
            return
        pid = packet.packet_id
        incoming = self._incoming
        if qos == 1:
            if not self.config.manual_acks:
                self._events.append(Incoming(packet))
                self._send(new_puback(pid, 0, NO_PROPERTIES))
                return
            if pid not in incoming:
                self._check_receive_maximum()
                incoming[pid] = IN_QOS1_UNACKED
                self._ack_order.append(pid)
            self._events.append(Incoming(packet))
            return
        held = incoming.get(pid)
        if held is not None:
            # A retransmission of a message we already have: never deliver it twice.
            stats.duplicates_suppressed += 1
            if held == IN_QOS2_RECEIVED:
                self._send(new_pubrec(pid, 0, NO_PROPERTIES))
            elif held == IN_QOS1_UNACKED:
                self._fail(
                    f"QoS 2 PUBLISH reuses packet id {pid} of an unacknowledged QoS 1 PUBLISH",
                    ReasonCode.PROTOCOL_ERROR,
                )
            return
        self._check_receive_maximum()
        self._events.append(Incoming(packet))
        if self.config.manual_acks:
            incoming[pid] = IN_QOS2_UNACKED
            self._ack_order.append(pid)
        else:
            incoming[pid] = IN_QOS2_RECEIVED
            self._send(new_pubrec(pid, 0, NO_PROPERTIES))

    def _check_receive_maximum(self) -> None:
        if self._v5 and len(self._incoming) >= self.config.receive_maximum:
            self._fail(
                "the broker exceeded our Receive Maximum of "
                f"{self.config.receive_maximum} unacknowledged publishes",
                ReasonCode.RECEIVE_MAXIMUM_EXCEEDED,
            )

    def _resolve_alias(self, packet: Publish, alias: int) -> Publish:
        if alias == 0 or alias > self.config.topic_alias_maximum:
            self._events.append(Incoming(packet))
            self._fail(
                f"topic alias {alias} outside 1..{self.config.topic_alias_maximum} (MQTT-3.3.2-10)",
                ReasonCode.TOPIC_ALIAS_INVALID,
            )
        if packet.topic:
            self._in_aliases[alias] = packet.topic
            return packet
        topic = self._in_aliases.get(alias)
        if topic is None:
            self._events.append(Incoming(packet))
            self._fail(f"topic alias {alias} was never defined", ReasonCode.PROTOCOL_ERROR)
        return replace(packet, topic=topic)

    def _on_pubrel(self, packet: PubRel) -> None:
        self._incoming_control(packet)
        pid = packet.packet_id
        held = self._incoming.get(pid)
        if held == IN_QOS2_RECEIVED:
            del self._incoming[pid]
            self._send(new_pubcomp(pid, 0, NO_PROPERTIES))
        elif held is None:
            # Already completed (e.g. our PUBCOMP was lost): answer anyway (MQTT-4.3.3).
            code = ReasonCode.PACKET_IDENTIFIER_NOT_FOUND if self._v5 else 0
            self._send(PubComp(pid, int(code)))
        else:
            self._fail(f"PUBREL for packet id {pid} before our PUBREC", ReasonCode.PROTOCOL_ERROR)

    def check_ack(self, packet_id: int, reason_code: int = 0) -> None:
        """Raise if :meth:`ack` would refuse this acknowledgement now; change nothing.

        An id whose ack is held (see :meth:`ack`) may be acked again: the later ack replaces
        the held one.

        Raises:
            UnknownPacketIdError: no delivered publish awaits an ack under ``packet_id``.
            LocalProtocolError: a reason code with MQTT 3.1.1.
        """
        held = self._incoming.get(packet_id)
        if held is None or held == IN_QOS2_RECEIVED:
            raise UnknownPacketIdError(f"no incoming publish awaits an ack with id {packet_id}")
        if reason_code and not self._v5:
            raise LocalProtocolError("MQTT 3.1.1 acks carry no reason code")

    def ack(
        self,
        packet_id: int,
        reason_code: int = 0,
        properties: Properties = NO_PROPERTIES,
        *,
        now: float,
    ) -> None:
        """Acknowledge an incoming QoS 1 (PUBACK) or QoS 2 (PUBREC) publish in manual-ack mode.

        Acks go out in the order the publishes arrived (MQTT-4.6.0-2), whatever the order of
        the calls: an ack for a publish that arrived after one still unacknowledged is held
        (:attr:`held_ack_count`) and sent as soon as every earlier publish is acked. While
        disconnected the ack cannot be sent: a QoS 2 message is then answered when the broker
        re-sends it, a QoS 1 message is delivered again.

        Args:
            packet_id: the broker's packet id of the delivered publish.
            reason_code: MQTT 5 reason code (0x80 and above refuse the message).
            properties: MQTT 5 properties of the ack.
            now: the current time.

        Raises:
            UnknownPacketIdError: no delivered publish awaits an ack under ``packet_id``.
            LocalProtocolError: a failing reason code or properties with MQTT 3.1.1.
        """
        self._now = now
        self.check_ack(packet_id, reason_code)
        if not self._v5:
            properties = NO_PROPERTIES
        order = self._ack_order
        early = self._early_acks
        early[packet_id] = (reason_code, properties)
        while order and order[0] in early:
            pid = order.popleft()
            code, props = early.pop(pid)
            self._send_ack(pid, code, props)

    def _send_ack(self, packet_id: int, reason_code: int, properties: Properties) -> None:
        held = self._incoming[packet_id]
        if held == IN_QOS1_UNACKED:
            del self._incoming[packet_id]
            self._send(PubAck(packet_id, reason_code, properties))
            return
        if reason_code >= 0x80:
            del self._incoming[packet_id]
        else:
            self._incoming[packet_id] = IN_QOS2_RECEIVED
        self._send(PubRec(packet_id, reason_code, properties))
