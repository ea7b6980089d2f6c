"""The queue of admitted, unsent publishes: its bound, the policy at the bound, expiry, numbering.

Theory of operation
-------------------
A publish that cannot go out at once (not connected, window full, rate limit, or behind an
earlier waiting one) waits in ``_waiting`` in admission order. This module owns the rules of
that queue; ``_outgoing.py`` takes entries off its front when the window has room.

*Bound and policy.* At most ``config.max_queued`` publishes wait. :meth:`make_room` is asked
before each admission: expired entries go first, then the ``queue_full`` policy decides
(``BLOCK``: the caller waits; ``REJECT``: :class:`QueueFullError`; ``DROP_OLDEST``: the front
entry is dropped, counted and reported as :class:`PublishDropped`).

*Expiry (MQTT 5).* A publish with a Message Expiry Interval counts it from its admission. One
whose interval passed while it waited is dropped, counted in ``publishes_expired`` and reported
instead of being sent; one that is sent carries what is left of its interval (rounded up),
so waiting here never lengthens its life at the broker.

*Durable numbering.* With :meth:`set_durable_queue` (a durable session store), every waiting
QoS 1/2 publish gets a number, increasing in admission order (publishes re-queued at the front
after a lost session get decreasing ones), and the queue logs ``(QUEUED, number, publish,
admitted at)`` and ``(UNQUEUED, number, None, 0)`` as entries come and go, for the store to
mirror. New QoS 1/2 publishes then always wait, and stay behind ``_queue_released`` until the
layer above has committed them (:meth:`release_queued`); if that commit fails,
:meth:`abort_queued` takes them out again, so a publish is either durable or not admitted.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Collection, Sequence
from dataclasses import replace

from ._codec import encode
from ._codec_v4 import new_publish
from ._config import QueueFullPolicy
from ._errors import LocalProtocolError, QueueFullError
from ._events import DROPPED_EXPIRED, DROPPED_QUEUE_FULL, DROPPED_STORE_FAILED, PublishDropped
from ._packets import NO_PROPERTIES, Publish, QoS
from ._session import QueuedPublish, _SessionBase

__all__ = ["QUEUED", "UNQUEUED"]

#: Kinds of queue log entries (see the module doc).
QUEUED = 1
UNQUEUED = 2

_Entry = tuple[Publish, object, bytes, int, float]


class _QueueMixin(_SessionBase):
    """The waiting queue's rules (see the module doc)."""

    __slots__ = ()

    def set_durable_queue(self, enabled: bool) -> None:
        """Number waiting QoS 1/2 publishes and hold new ones until :meth:`release_queued`."""
        self._queue_durable = enabled

    def queue_full(self) -> bool:
        """True when ``max_queued`` publishes wait (a new one needs :meth:`make_room`)."""
        return len(self._waiting) >= self.config.max_queued

    def make_room(self, now: float) -> bool:
        """Make room for one more waiting publish as the ``queue_full`` policy says.

        Returns True when a publish may be admitted now, False when the caller must wait
        (policy ``BLOCK``).

        Raises:
            QueueFullError: policy ``REJECT`` and the queue is full.
        """
        self._now = now
        limit = self.config.max_queued
        if len(self._waiting) < limit:
            return True
        self._expire_waiting()
        if len(self._waiting) < limit:
            return True
        policy = self.config.queue_full
        if policy is QueueFullPolicy.BLOCK:
            return False
        if policy is QueueFullPolicy.REJECT:
            raise QueueFullError(
                f"{len(self._waiting)} publishes already wait to be sent (max_queued)"
            )
        packet, tag, _, number, _ = self._waiting.popleft()
        self.statistics.publishes_dropped_oldest += 1
        self._unqueued(packet, tag, number, DROPPED_QUEUE_FULL)
        return True

    def take_queue_changes(self) -> list[tuple[int, int, Publish | None, float]]:
        """The queue log since the last call (durable numbering only), oldest first."""
        log = self._queue_log
        self._queue_log = []
        return log

    def abort_queued(self, numbers: Collection[int]) -> set[int]:
        """Take out the unreleased publishes numbered ``numbers`` (their commit failed).

        Each is reported as :class:`~trio_mqtt.PublishDropped` (``"store failed"``); nothing
        is logged for the store, which never had them. Returns the numbers taken out.
        """
        released = self._queue_released
        aborted: set[int] = set()
        kept: deque[_Entry] = deque()
        for entry in self._waiting:
            packet, tag, _, number, _ = entry
            if number > released and number in numbers:
                aborted.add(number)
                self._events.append(PublishDropped(tag, packet, DROPPED_STORE_FAILED))
            else:
                kept.append(entry)
        self._waiting = kept
        return aborted

    # ------------------------------------------------------------------ for the siblings
    def _enqueue(self, packet: Publish, tag: object, data: bytes) -> None:
        """Append an admitted publish (placeholder id) to the queue."""
        number = 0
        if self._queue_durable and packet.qos:
            number = self._queue_next
            self._queue_next = number + 1
            self._queue_log.append((QUEUED, number, packet, self._now))
        if _expires(packet):
            self._queue_expiring += 1
        self._waiting.append((packet, tag, data, number, self._now))

    def _requeue_front(self, entries: Sequence[tuple[Publish, object, bytes]]) -> None:
        """Put publishes back at the front, in the given order (after a lost session)."""
        durable = self._queue_durable
        now = self._now
        for packet, tag, data in reversed(entries):
            number = 0
            if durable:
                self._queue_front -= 1
                number = self._queue_front
                self._queue_log.append((QUEUED, number, packet, now))
            if _expires(packet):
                self._queue_expiring += 1
            self._waiting.appendleft((packet, tag, data, number, now))

    def _unqueued(self, packet: Publish, tag: object, number: int, reason: str | None) -> None:
        """An entry left the queue: log it, and report it when it was dropped (``reason``)."""
        if number:
            self._queue_log.append((UNQUEUED, number, None, 0.0))
        if reason is not None:
            self._events.append(PublishDropped(tag, packet, reason))

    def _aged(self, packet: Publish, data: bytes, queued_at: float) -> tuple[Publish, bytes] | None:
        """``packet`` as it may leave the queue now: None when expired, else with what is left
        of its Message Expiry Interval (and its encoding)."""
        props = packet.properties
        interval = props.message_expiry_interval if props is not NO_PROPERTIES else None
        if interval is None:
            return packet, data
        left = queued_at + interval - self._now
        if left <= 0:
            return None
        remaining = math.ceil(left)
        if remaining >= interval:
            return packet, data
        packet = replace(packet, properties=replace(props, message_expiry_interval=remaining))
        return packet, encode(packet, self._version)

    def _expire_waiting(self) -> None:
        """Drop every waiting publish whose expiry passed, wherever it is in the queue."""
        if not self._queue_expiring:
            return  # no waiting publish has an expiry: nothing to scan
        kept: deque[_Entry] = deque()
        expiring = 0
        for entry in self._waiting:
            packet, tag, data, number, queued_at = entry
            if self._aged(packet, data, queued_at) is None:
                self.statistics.publishes_expired += 1
                self._unqueued(packet, tag, number, DROPPED_EXPIRED)
            else:
                kept.append(entry)
                if _expires(packet):
                    expiring += 1
        self._waiting = kept
        self._queue_expiring = expiring

    def _export_queue(self, now: float) -> tuple[QueuedPublish, ...]:
        return tuple(
            QueuedPublish(number, packet, max(0.0, now - queued_at))
            for packet, _, _, number, queued_at in self._waiting
            if packet.qos
        )

    def _restore_queue(self, queued: Sequence[QueuedPublish], now: float | None) -> None:
        if not queued:
            return
        if now is None:
            raise LocalProtocolError("restoring queued publishes needs the current time (now)")
        seen: set[int] = set()
        entries: list[_Entry] = []
        for number, publish, waited in queued:
            if publish.qos not in (1, 2):
                raise LocalProtocolError("snapshot: a QoS 0 publish is never queued")
            if number and number in seen:
                raise LocalProtocolError(f"snapshot: queue number {number} used twice")
            seen.add(number)
            props = publish.properties if self._v5 else NO_PROPERTIES
            packet = new_publish(
                publish.topic, publish.payload, QoS(publish.qos), publish.retain, False, 1, props
            )
            data = encode(packet, self._version)
            entries.append((packet, None, data, number, now - waited))
        self._waiting.extend(entries)  # only once all are valid
        self._queue_expiring += sum(1 for entry in entries if _expires(entry[0]))
        if seen:
            # restored entries are durable already: all of them may leave
            self._queue_next = max(self._queue_next, max(seen) + 1)
            self._queue_front = min(self._queue_front, min(seen))
            self._queue_released = max(self._queue_released, max(seen))


def _expires(packet: Publish) -> bool:
    """True when ``packet`` carries a Message Expiry Interval (only MQTT 5 ones can)."""
    props = packet.properties
    return props is not NO_PROPERTIES and props.message_expiry_interval is not None
