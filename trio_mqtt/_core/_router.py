"""The broker's router: who is subscribed to what, the retained store and shared groups.

Theory of operation
-------------------
The router is pure data: it never sends anything. :class:`~trio_mqtt._core._broker.Broker`
asks it, for each PUBLISH, which subscriptions should get a copy (:meth:`Router.route`) and, for
each new subscription, which retained messages match (:meth:`Router.retained_for`).

Subscriptions sit in a :class:`~trio_mqtt._core._topics.FilterTree` keyed by their inner filter,
so one topic is matched against every filter without trying each of them, and ``$`` topics never
match a first-level wildcard (MQTT-4.7.2-1) because the tree already enforces it. A shared
subscription ``$share/GROUP/FILTER`` does not go into the tree itself: the tree holds one
:class:`SharedGroup` per (group, filter), and routing picks one member of each matching group,
round robin, preferring members whose session is connected right now (MQTT-4.8.2).

Retained messages are a dict from topic to message; an empty payload removes the entry
(MQTT-3.3.1-10/-11). Matching them on subscribe tries every retained topic against the new
filter, which is linear in the store's size: the store is bounded by
:attr:`BrokerConfig.max_retained <trio_mqtt._core._broker.BrokerConfig>`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from ._packets import NO_PROPERTIES, Properties, Subscription
from ._topics import FilterTree, matches, parse_shared

__all__ = ["Message", "Route", "Router", "SharedGroup", "Subscriber"]


class Subscriber(Protocol):
    """What the router needs to know of a session: whether a client is connected to it."""

    @property
    def online(self) -> bool:
        """True while a connection uses the session."""
        ...


S = TypeVar("S", bound=Subscriber)


@dataclass(slots=True)
class Message:
    """One application message as the broker keeps it, independent of any connection.

    Attributes:
        topic: the topic name (topic aliases already resolved).
        payload: the payload bytes, shared by every copy that is delivered.
        qos: the QoS it was published with.
        retain: the RETAIN flag it was published with.
        properties: the MQTT 5 properties passed through to subscribers (no topic alias, no
            subscription identifiers, no message expiry: that is kept as ``expires_at``).
        expires_at: broker clock time after which it is no longer delivered, or None.
        sender: client identifier of the publisher (for the No Local option), or None.
    """

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: Properties = NO_PROPERTIES
    expires_at: float | None = None
    sender: str | None = None


@dataclass(slots=True, eq=False)
class Route(Generic[S]):
    """One subscription of one session: a filter with its options.

    Attributes:
        session: the session it belongs to.
        topic_filter: the filter as subscribed (``$share/...`` included).
        options: the requested options (QoS already capped to what was granted).
        identifier: the MQTT 5 subscription identifier, or None.
        group: the shared group name for ``$share/GROUP/...``, or None.
    """

    session: S
    topic_filter: str
    options: Subscription
    identifier: int | None = None
    group: str | None = None


@dataclass(slots=True, eq=False)
class SharedGroup(Generic[S]):
    """The members of one shared subscription ``$share/name/topic_filter``."""

    name: str
    topic_filter: str
    members: list[Route[S]] = field(default_factory=list)
    turn: int = 0

    def pick(self) -> Route[S] | None:
        """The next member, round robin, skipping members whose session is offline if any
        member is online."""
        members = self.members
        count = len(members)
        if not count:
            return None
        for step in range(count):
            candidate = members[(self.turn + step) % count]
            if candidate.session.online:
                self.turn = (self.turn + step + 1) % count
                return candidate
        candidate = members[self.turn % count]
        self.turn = (self.turn + 1) % count
        return candidate


class Router(Generic[S]):
    """Subscriptions, shared groups and retained messages of one broker."""

    def __init__(self, max_retained: int = 100_000) -> None:
        self._tree: FilterTree[Route[S] | SharedGroup[S]] = FilterTree()
        self._groups: dict[tuple[str, str], SharedGroup[S]] = {}
        self.retained: dict[str, Message] = {}
        self.max_retained = max_retained
        #: retained messages refused because the store was full
        self.retained_refused = 0

    @property
    def subscription_count(self) -> int:
        """Number of subscriptions (each member of a shared group counts once)."""
        return (
            len(self._tree)
            - len(self._groups)
            + sum(len(group.members) for group in self._groups.values())
        )

    def add(self, route: Route[S]) -> None:
        """Store a route; the caller has removed any earlier route of the same session and
        filter. The filter must be valid."""
        shared = parse_shared(route.topic_filter)
        if shared is None:
            self._tree.add(route.topic_filter, route)
            return
        name, inner = shared
        route.group = name
        group = self._groups.get((name, inner))
        if group is None:
            group = self._groups[(name, inner)] = SharedGroup[S](name, inner)
            self._tree.add(inner, group)
        group.members.append(route)

    def remove(self, route: Route[S]) -> None:
        """Remove a stored route (a no-op for a route that is not stored)."""
        shared = parse_shared(route.topic_filter)
        if shared is None:
            with contextlib.suppress(ValueError):
                self._tree.remove(route.topic_filter, route)
            return
        key = shared
        group = self._groups.get(key)
        if group is None:
            return
        for index, member in enumerate(group.members):
            if member is route:
                del group.members[index]
                break
        if not group.members:
            del self._groups[key]
            self._tree.remove(key[1], group)

    def route(self, topic: str) -> list[Route[S]]:
        """The routes that get a copy of a message on ``topic``: every plain subscription whose
        filter matches, and one member of each matching shared group."""
        entries = self._tree.match(topic)
        routes: list[Route[S]] = []
        for entry in entries:
            if isinstance(entry, Route):
                routes.append(entry)
            else:
                member = entry.pick()
                if member is not None:
                    routes.append(member)
        return routes

    def retain(self, message: Message) -> None:
        """Store or clear (empty payload) the retained message of ``message.topic``."""
        if not message.payload:
            self.retained.pop(message.topic, None)
            return
        if message.topic not in self.retained and len(self.retained) >= self.max_retained:
            self.retained_refused += 1
            return
        self.retained[message.topic] = message

    def retained_for(self, topic_filter: str, now: float) -> list[Message]:
        """Retained messages that match a (non-shared) filter and have not expired; expired ones
        are dropped from the store on the way."""
        found: list[Message] = []
        expired: list[str] = []
        for topic, message in self.retained.items():
            if matches(topic, topic_filter):
                if message.expires_at is not None and message.expires_at <= now:
                    expired.append(topic)
                else:
                    found.append(message)
        for topic in expired:
            del self.retained[topic]
        return found
