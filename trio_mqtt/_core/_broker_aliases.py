"""Topic aliases the broker assigns on its way to one MQTT 5 client.

Theory of operation
-------------------
A client that sends Topic Alias Maximum N in CONNECT lets the broker number up to N topics per
connection (MQTT 3.3.2.3.4): the first PUBLISH of a topic carries the name and the alias, later
ones an empty name and the alias alone. When all N are taken and a new topic comes, the alias of
the topic used least recently is given to the new one: a PUBLISH with a name and an alias
already in use replaces that mapping on the client's side (MQTT-3.3.2-12 allows the sender to
change it at any time). A working set that fits in N topics thus travels without its names, and
one that does not costs three bytes (the property) per message more than no alias at all.

Choosing and recording are two steps, because a PUBLISH can still be dropped after its alias is
chosen (too large for the client): :meth:`OutgoingAliases.choose` changes nothing, and
:meth:`OutgoingAliases.commit` records the mapping once the packet really goes out.
"""

from __future__ import annotations

__all__ = ["OutgoingAliases"]


class OutgoingAliases:
    """The topic-to-alias table of one connection, at most ``maximum`` entries, least recently
    used first.

    Args:
        maximum: the client's Topic Alias Maximum (0: no aliases).
    """

    __slots__ = ("_by_topic", "maximum")

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        #: insertion order is use order: the first key is the least recently used topic
        self._by_topic: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._by_topic)

    def choose(self, topic: str) -> tuple[int, bool]:
        """The alias for a PUBLISH on ``topic`` (0 if there are no aliases), and whether the
        client already knows it (then the PUBLISH carries an empty topic name)."""
        by_topic = self._by_topic
        alias = by_topic.get(topic)
        if alias is not None:
            return alias, True
        if len(by_topic) < self.maximum:
            return len(by_topic) + 1, False
        if not by_topic:
            return 0, False
        return by_topic[next(iter(by_topic))], False

    def commit(self, topic: str, alias: int) -> None:
        """Record that a PUBLISH on ``topic`` with ``alias`` (from :meth:`choose`) was sent."""
        by_topic = self._by_topic
        if by_topic.pop(topic, None) is None and len(by_topic) >= self.maximum:
            del by_topic[next(iter(by_topic))]  # the topic whose alias ``choose`` handed on
        by_topic[topic] = alias
