"""Where the state machine's events go: trackers, per-topic routes and the event buffer.

Theory of operation. Whichever task called into the state machine hands the events it produced
to :meth:`EventRouter.deliver`, synchronously and without blocking:

* ``*Done`` events resolve the :class:`~trio_mqtt.Tracker` they carry as their tag (the caller
  that awaits the broker's answer wakes up); ``PublishDropped`` fails its tracker;
* an incoming PUBLISH goes to every route whose filter matches its topic, or, when none does,
  to the event buffer as an ``Incoming`` event;
* everything else the application may see goes to the event buffer; a stray ack is logged.

The router also owns the registry of trackers still waiting, so that whatever ends a session
or fails a connection can answer every one of them (:meth:`fail_trackers`): no caller waits for
an answer that cannot come. Buffers and their bounds are in ``_dispatch.py``.
"""

from __future__ import annotations

import logging
from typing import Any

from ._core._errors import ConnectionClosed, MqttError
from ._core._events import (
    Event,
    Incoming,
    Outgoing,
    PublishDone,
    ReauthDone,
    SessionLost,
    StrayAck,
    SubscribeDone,
    UnsubscribeDone,
)
from ._core._packets import Publish
from ._core._topics import FilterTree, parse_shared
from ._dispatch import EventBuffer, Overflow, Route, Signal
from ._requests import (
    PublishResult,
    SubscribeResult,
    Tracker,
    UnsubscribeResult,
    dropped_error,
    fail_tracker,
    resolve_tracker,
)

__all__ = ["EventRouter"]

logger = logging.getLogger("trio_mqtt")


class EventRouter:
    """Delivers events to trackers, routes and the event buffer (see the module doc)."""

    def __init__(self, event_capacity: int, *, drop_unread: bool = False) -> None:
        #: set whenever a consumer makes room in a buffer the reader may be waiting on
        self.space = Signal()
        self.events = EventBuffer(event_capacity, self.space, drop_unread=drop_unread)
        self._routes: FilterTree[Route] = FilterTree()
        self._route_list: list[Route] = []
        self._trackers: set[Tracker[Any]] = set()

    # ------------------------------------------------------------------ trackers
    def track(self, tracker: Tracker[Any]) -> None:
        """Remember a tracker until its request is answered or failed."""
        self._trackers.add(tracker)

    def untrack(self, tracker: Tracker[Any]) -> None:
        """Forget a tracker whose request was refused before it was taken."""
        self._trackers.discard(tracker)

    def fail(self, tracker: Tracker[Any], error: BaseException) -> None:
        """Fail one tracker (a request refused after it was taken)."""
        self._trackers.discard(tracker)
        fail_tracker(tracker, error)

    def fail_trackers(self, error: MqttError) -> int:
        """Fail every tracker still waiting with ``error``; return how many there were."""
        trackers = list(self._trackers)
        self._trackers.clear()
        for tracker in trackers:
            fail_tracker(tracker, error)
        return len(trackers)

    @property
    def waiting_trackers(self) -> int:
        """Requests whose callers wait for the broker's answer."""
        return len(self._trackers)

    # ------------------------------------------------------------------ routes
    def open_route(
        self, topic_filter: str, capacity: int, overflow: Overflow, end: MqttError | None
    ) -> Route:
        """A new route for ``topic_filter``; closed at once with ``end`` if the session ended."""
        route = Route(topic_filter, capacity, overflow, self.space)
        if end is not None:
            route.close(end)
        shared = parse_shared(topic_filter)
        self._routes.add(shared[1] if shared else topic_filter, route)
        self._route_list.append(route)
        return route

    def close_route(self, route: Route) -> bool:
        """Remove a route; return True when another open route still uses its filter."""
        topic_filter = route.topic_filter
        shared = parse_shared(topic_filter)
        self._routes.remove(shared[1] if shared else topic_filter, route)
        self._route_list.remove(route)
        route.close(ConnectionClosed("route closed"))
        self.space.set()
        return any(other.topic_filter == topic_filter for other in self._route_list)

    # ------------------------------------------------------------------ delivery
    def deliver(self, events: list[Event]) -> None:
        """Hand each event to its tracker, route or the event buffer."""
        buffer = self.events
        for event in events:
            kind = type(event)
            if kind is Outgoing:
                buffer.put(event)
            elif kind is Incoming:
                packet = event.packet  # type: ignore[union-attr]
                if type(packet) is Publish and self._route_list:
                    routes = self._routes.match(packet.topic)
                    if routes:
                        for route in routes:
                            route.put(packet)
                        continue
                buffer.put(event, data=type(packet) is Publish)
            elif kind is PublishDone:
                self._resolve(
                    event.tag,  # type: ignore[union-attr]
                    PublishResult(event.packet_id, event.reason_code, event.properties),  # type: ignore[union-attr]
                )
            elif kind is SubscribeDone or kind is UnsubscribeDone:
                result_type = SubscribeResult if kind is SubscribeDone else UnsubscribeResult
                self._resolve(
                    event.tag,  # type: ignore[union-attr]
                    result_type(event.packet_id, event.reason_codes, event.properties),  # type: ignore[union-attr]
                )
            elif kind is ReauthDone:
                self._resolve(event.tag, None)  # type: ignore[union-attr]
            elif kind is StrayAck:
                assert isinstance(event, StrayAck)
                ack = event.packet
                logger.warning(
                    "ignored %s for packet id %d, which no flow holds",
                    type(ack).__name__,
                    ack.packet_id,
                )
            else:
                if kind is SessionLost:
                    logger.info("the broker had lost the session: %s", event)
                dropped_tag = getattr(event, "tag", None)
                if isinstance(dropped_tag, Tracker):
                    self.fail(dropped_tag, dropped_error(event))  # type: ignore[arg-type]
                buffer.put(event)

    def _resolve(self, tag: object, result: object) -> None:
        if isinstance(tag, Tracker):
            self._trackers.discard(tag)
            resolve_tracker(tag, result)

    # ------------------------------------------------------------------ the reader's view
    def needs_pause(self) -> bool:
        """True when a buffer that wants backpressure is full: the reader should wait."""
        return self.events.full or any(route.full for route in self._route_list)

    def pause_reason(self) -> str:
        """Which buffer holds the reader back (for the slow-consumer warning)."""
        if self.events.full:
            return (
                f"{self.events.unread_messages} unread messages wait on the event stream: read "
                "them (poll(), messages(), message_batches()) or open a route for their topics"
            )
        full = [route.topic_filter for route in self._route_list if route.full]
        return f"the route(s) {', '.join(map(repr, full))} are full: their consumers lag behind"

    def report_failure(self, error: MqttError) -> None:
        """A connection error the application must see: queue it for ``poll()`` and routes."""
        self.events.put_failure(error)
        for route in self._route_list:
            route.put_failure(error)

    def close(self, end: MqttError) -> None:
        """The session ended: close every buffer and fail every waiting tracker."""
        self.events.close(end)
        for route in self._route_list:
            route.close(end)
        self.fail_trackers(end)
