"""The counters a connection reports (:meth:`~trio_mqtt.MqttConnection.statistics`)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ConnectionStatistics"]


@dataclass(frozen=True, slots=True)
class ConnectionStatistics:
    """A snapshot of a connection's counters (see :meth:`MqttConnection.statistics`).

    Attributes:
        connected: a network connection is up and CONNACK was received.
        window: the outgoing window now (``inflight``, lowered by the broker's Receive
            Maximum).
        inflight: QoS 1/2 publishes sent and not yet acknowledged.
        waiting_publishes: publishes admitted but not sent (window full, or disconnected).
        queued_requests: requests not yet taken: control requests in the client channel and
            publishers waiting for admission.
        buffered_events: events waiting for ``poll()``.
        dropped_events: events dropped from the event buffer (see :doc:`/backpressure`).
        connects: successful connections so far (1 + reconnects).
        packets_sent, packets_received: MQTT packets each way.
        publishes_sent, publishes_received: PUBLISH packets among them (resends included).
        retransmissions: PUBLISH and PUBREL packets sent again after a session resumed.
        duplicates_suppressed: QoS 2 messages the broker sent again, answered but not
            delivered twice.
        pings_sent: PINGREQ packets sent.
        sessions_lost: reconnects where the broker had lost the session.
        stray_acks: PUBACK, PUBREC and PUBCOMP packets for packet ids no flow held (ignored
            and logged).
        bytes_sent, bytes_received: bytes each way on the transport.
        held_acks: manual acks given out of order and held until the messages that arrived
            before them are acked (MQTT-4.6.0-2; see :doc:`/events`).
        throttled_time: seconds publishes waited for the ``throttle`` rate limit so far (see
            :doc:`/backpressure`).
        publishes_expired: waiting publishes dropped, not sent, because their MQTT 5 message
            expiry interval passed (see :doc:`/durable`).
        publishes_dropped_oldest: waiting publishes dropped by ``queue_full="drop_oldest"`` to
            admit newer ones (see :doc:`/durable`).
    """

    connected: bool
    window: int
    inflight: int
    waiting_publishes: int
    queued_requests: int
    buffered_events: int
    dropped_events: int
    connects: int
    packets_sent: int
    packets_received: int
    publishes_sent: int
    publishes_received: int
    retransmissions: int
    duplicates_suppressed: int
    pings_sent: int
    sessions_lost: int
    stray_acks: int
    bytes_sent: int
    bytes_received: int
    held_acks: int = 0
    throttled_time: float = 0.0
    publishes_expired: int = 0
    publishes_dropped_oldest: int = 0

    @property
    def reconnects(self) -> int:
        """Successful connections after the first one."""
        return max(0, self.connects - 1)
