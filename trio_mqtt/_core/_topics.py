"""Topic names, topic filters, and matching one against the other (MQTT section 4.7).

Theory of operation
-------------------
A *topic name* is what a PUBLISH carries; a *topic filter* is what a SUBSCRIBE asks for and may
contain the wildcards ``+`` (exactly one level) and ``#`` (any number of trailing levels,
including none, so ``a/#`` also matches ``a``). Both are split into levels at ``/``; empty levels
are legal. MQTT 5 adds shared subscriptions, ``$share/GROUP/FILTER``, which match like ``FILTER``.

Validation is separate from matching: :func:`validate_topic` and :func:`validate_filter` are called
once, when a request enters the library, and raise :class:`~trio_mqtt.InvalidTopicError` naming
the problem. :func:`matches` runs once per message per route, so it trusts its arguments. It
compiles each filter once (an LRU cache keyed by the filter string) into the cheapest test that
decides it: string equality for a filter without wildcards, a prefix test for ``prefix/#``, and a
level-by-level tuple comparison (``+`` levels overwritten before comparing) for the rest.
:class:`FilterTree` is a trie keyed by filter levels for dispatching one topic to many
filters without trying each of them.

The one rule that is easy to miss (MQTT-4.7.2-1): a topic that starts with ``$`` (``$SYS/...``)
never matches a filter whose first level is a wildcard; it has to be named explicitly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Generic, TypeVar

from ._errors import InvalidTopicError

__all__ = [
    "FilterTree",
    "has_wildcards",
    "matches",
    "parse_shared",
    "topic_matches",
    "valid_filter",
    "valid_topic",
    "validate_filter",
    "validate_topic",
]

V = TypeVar("V")

#: Topic names and filters are UTF-8 strings with a two-byte length prefix (MQTT-4.7.3-3).
MAX_TOPIC_BYTES = 65535

_SHARE_PREFIX = "$share/"


def _string_problem(text: str, what: str) -> str | None:
    """What makes ``text`` unusable as an MQTT UTF-8 string, or None (MQTT-1.5.4-1/-2)."""
    if not text:
        return f"a {what} must not be empty (MQTT-4.7.3-1)"
    if len(text) > MAX_TOPIC_BYTES:
        return f"a {what} must be at most {MAX_TOPIC_BYTES} bytes of UTF-8"
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return f"a {what} must be well-formed UTF-8 (no surrogate code points, MQTT-1.5.4-1)"
    if size > MAX_TOPIC_BYTES:
        return f"a {what} must be at most {MAX_TOPIC_BYTES} bytes of UTF-8, not {size}"
    if "\x00" in text:
        return f"a {what} must not contain U+0000 (MQTT-4.7.3-2)"
    return None


def _topic_problem(topic: str) -> str | None:
    problem = _string_problem(topic, "topic name")
    if problem is None and ("+" in topic or "#" in topic):
        problem = f"topic name {topic!r} must not contain the wildcards '+' or '#' (MQTT-4.7.0-1)"
    return problem


def _plain_filter_problem(topic_filter: str) -> str | None:
    """Problems of the wildcard layout of a filter that is not (or no longer) shared."""
    if not topic_filter:
        return "a topic filter must not be empty (MQTT-4.7.3-1)"
    if "+" not in topic_filter and "#" not in topic_filter:
        return None
    levels = topic_filter.split("/")
    last = len(levels) - 1
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != last):
            return (
                f"in topic filter {topic_filter!r}, '#' must be the last level and alone in it"
                " (MQTT-4.7.1-1)"
            )
        if "+" in level and level != "+":
            return f"in topic filter {topic_filter!r}, '+' must occupy a whole level (MQTT-4.7.1-2)"
    return None


def _filter_problem(topic_filter: str) -> str | None:
    problem = _string_problem(topic_filter, "topic filter")
    if problem is not None:
        return problem
    if not topic_filter.startswith(_SHARE_PREFIX):
        return _plain_filter_problem(topic_filter)
    group, sep, inner = topic_filter[len(_SHARE_PREFIX) :].partition("/")
    if not group or any(char in group for char in "+#"):
        return (
            f"shared subscription {topic_filter!r} needs a non-empty group name without"
            " '+', '#' or '/' (MQTT-4.8.2-1, MQTT-4.8.2-2)"
        )
    if not sep or not inner:
        return f"shared subscription {topic_filter!r} needs a topic filter after the group"
    return _plain_filter_problem(inner)


def valid_topic(topic: str) -> bool:
    """Whether ``topic`` is a valid topic name, the kind a PUBLISH carries.

    A topic name is non-empty, at most 65535 bytes of well-formed UTF-8, free of U+0000 and free
    of the wildcard characters ``+`` and ``#``.
    """
    return _topic_problem(topic) is None


def valid_filter(topic_filter: str) -> bool:
    """Whether ``topic_filter`` is a valid topic filter, the kind a SUBSCRIBE carries.

    Besides the rules for topic names (wildcards aside), ``#`` may only be the whole last level
    and ``+`` only a whole level. A shared subscription ``$share/GROUP/FILTER`` is valid when
    GROUP is non-empty and free of ``+``, ``#`` and ``/``, and FILTER is a valid filter.
    """
    return _filter_problem(topic_filter) is None


def validate_topic(topic: str) -> None:
    """Check a topic name.

    Raises:
        InvalidTopicError: if :func:`valid_topic` is false; the message names the problem.
    """
    problem = _topic_problem(topic)
    if problem is not None:
        raise InvalidTopicError(problem)


def validate_filter(topic_filter: str) -> None:
    """Check a topic filter.

    Raises:
        InvalidTopicError: if :func:`valid_filter` is false; the message names the problem.
    """
    problem = _filter_problem(topic_filter)
    if problem is not None:
        raise InvalidTopicError(problem)


def has_wildcards(topic: str) -> bool:
    """Whether ``topic`` contains ``+`` or ``#`` anywhere."""
    return "+" in topic or "#" in topic


def parse_shared(topic_filter: str) -> tuple[str, str] | None:
    """Split a shared subscription into its group and its inner filter.

    Returns:
        ``(group, filter)`` for ``$share/group/filter``; None when ``topic_filter`` does not
        have that shape (no ``$share/`` prefix, or no ``/`` after the group). The parts are not
        validated: use :func:`validate_filter` for that.
    """
    if not topic_filter.startswith(_SHARE_PREFIX):
        return None
    group, sep, inner = topic_filter[len(_SHARE_PREFIX) :].partition("/")
    if not sep:
        return None
    return group, inner


def _inner_filter(topic_filter: str) -> str:
    shared = parse_shared(topic_filter)
    return topic_filter if shared is None else shared[1]


def _match_all_but_dollar(topic: str) -> bool:
    return not topic.startswith("$")


def _matcher(inner: str) -> Callable[[str], bool]:
    """Build the fastest test we have for one (non-shared) filter.

    * no wildcards: string equality (a bound ``str.__eq__``);
    * ``#`` alone: everything but ``$`` topics;
    * ``prefix/#`` with no ``+``: the prefix itself, or anything below it;
    * otherwise: compare level by level, ``+`` matching any one level.
    """
    if "+" not in inner and "#" not in inner:
        return inner.__eq__
    if inner == "#":
        return _match_all_but_dollar
    levels = inner.split("/")
    multi = levels[-1] == "#"
    if multi:
        levels.pop()
    if multi and "+" not in levels:
        prefix = "/".join(levels)
        below = prefix + "/"
        return lambda topic: topic == prefix or topic.startswith(below)
    wanted = tuple(levels)
    count = len(wanted)
    guard_dollar = wanted[0] == "+"  # MQTT-4.7.2-1; '#' alone was handled above
    plus_at = tuple(i for i, level in enumerate(wanted) if level == "+")

    def match_levels(topic: str) -> bool:
        if guard_dollar and topic.startswith("$"):
            return False
        parts = topic.split("/")
        if len(parts) != count and not (multi and len(parts) > count):
            return False
        if multi:
            parts = parts[:count]
        for index in plus_at:
            parts[index] = "+"
        return tuple(parts) == wanted

    return match_levels


@lru_cache(maxsize=4096)
def _compile(topic_filter: str) -> Callable[[str], bool]:
    return _matcher(_inner_filter(topic_filter))


def matches(topic: str, topic_filter: str) -> bool:
    """Whether the topic name ``topic`` matches ``topic_filter``.

    Both arguments are assumed valid (see :func:`validate_topic` and :func:`validate_filter`);
    nothing is checked here because this runs for every message and every route. Each filter is
    compiled once into a small matching function (kept in an LRU cache of 4096 filters).

    * ``+`` matches exactly one level, which may be empty: ``a/+`` matches ``a/`` but not ``a``.
    * ``#`` matches the parent level and any number of levels below it: ``a/#`` matches ``a``,
      ``a/b`` and ``a/b/c``; ``#`` alone matches every topic.
    * A topic starting with ``$`` never matches a filter whose first level is ``+`` or ``#``
      (MQTT-4.7.2-1).
    * A shared filter ``$share/group/f`` matches exactly what ``f`` matches.
    """
    return _compile(topic_filter)(topic)


def topic_matches(topic: str, topic_filter: str) -> bool:
    """Whether the topic name ``topic`` matches the topic filter ``topic_filter``.

    The public matcher (``trio_mqtt.topic_matches``): the rules of ``sansio.matches`` (``+`` one
    level, ``#`` the rest including the parent, no wildcard match for ``$`` topics, shared
    filters match like their inner filter), after checking both arguments.

    Raises:
        InvalidTopicError: ``topic`` is not a valid topic name (it has a wildcard, say) or
            ``topic_filter`` not a valid filter (``a/#/b``, ``a+``).
        TypeError: an argument is not a ``str``.
    """
    if not isinstance(topic, str) or not isinstance(topic_filter, str):
        raise TypeError(
            f"topic_matches() takes two str, got {type(topic).__name__} and "
            f"{type(topic_filter).__name__}"
        )
    validate_topic(topic)
    validate_filter(topic_filter)
    return _compile(topic_filter)(topic)


@dataclass(slots=True)
class _Node(Generic[V]):
    """One level of the trie; ``+`` is stored as an ordinary child key."""

    children: dict[str, _Node[V]] = field(default_factory=dict)
    #: entries of filters that end exactly here
    exact: list[tuple[int, V]] = field(default_factory=list)
    #: entries of filters that end with ``#`` directly below here
    multi: list[tuple[int, V]] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.children or self.exact or self.multi)


class FilterTree(Generic[V]):
    """A set of (topic filter, value) pairs that finds every value whose filter matches a topic.

    The filters are stored in a trie keyed by level, so :meth:`match` visits only the branches
    that can match (the literal level and ``+`` at each step, ``#`` lists on the way) instead of
    trying every filter. It gives the same answers as :func:`matches` tried on each filter, and is
    what the connection uses to hand an incoming PUBLISH to its routes.

    A filter may carry several values, and a value may sit under several filters. Shared
    filters are stored under their inner filter. Values need not be hashable.

    The tree is not thread-safe; the Trio layer uses it from one task at a time.
    """

    def __init__(self) -> None:
        self._root: _Node[V] = _Node()
        self._count = 0
        self._sequence = 0

    def __len__(self) -> int:
        """The number of (filter, value) pairs stored."""
        return self._count

    def add(self, topic_filter: str, value: V) -> None:
        """Store ``value`` under ``topic_filter``.

        Adding the same pair twice stores it twice (and :meth:`remove` then removes one), but
        :meth:`match` still reports the value once.

        Raises:
            InvalidTopicError: if ``topic_filter`` is not a valid filter.
        """
        validate_filter(topic_filter)
        levels = _inner_filter(topic_filter).split("/")
        node = self._root
        multi = levels[-1] == "#"
        if multi:
            levels.pop()
        for level in levels:
            child = node.children.get(level)
            if child is None:
                child = node.children[level] = _Node()
            node = child
        self._sequence += 1
        (node.multi if multi else node.exact).append((self._sequence, value))
        self._count += 1

    def remove(self, topic_filter: str, value: V) -> None:
        """Remove one (filter, value) pair, compared by identity or equality like ``list.remove``.

        Raises:
            ValueError: if the pair is not stored (like ``list.remove``).
        """
        levels = _inner_filter(topic_filter).split("/")
        multi = levels[-1] == "#"
        if multi:
            levels.pop()
        path: list[tuple[_Node[V], str]] = []
        node = self._root
        for level in levels:
            child = node.children.get(level)
            if child is None:
                raise ValueError(f"{value!r} is not stored under {topic_filter!r}")
            path.append((node, level))
            node = child
        entries = node.multi if multi else node.exact
        for index, (_, stored) in enumerate(entries):
            if stored is value or stored == value:
                del entries[index]
                break
        else:
            raise ValueError(f"{value!r} is not stored under {topic_filter!r}")
        self._count -= 1
        # Prune the branch back up to the first node still in use.
        while path and node.empty():
            parent, level = path.pop()
            del parent.children[level]
            node = parent

    def match(self, topic: str) -> list[V]:
        """Every value whose filter matches the topic name ``topic``.

        Each value (compared by identity) appears once even when several of its filters match.
        Values come in the order their matching pairs were added, so routes registered first are
        served first. ``topic`` is assumed to be a valid topic name.
        """
        root = self._root
        found: list[tuple[int, V]] = []
        nodes = [root]
        dollar = topic.startswith("$")
        for level in topic.split("/"):
            following: list[_Node[V]] = []
            for node in nodes:
                guarded = dollar and node is root
                if node.multi and not guarded:
                    found.extend(node.multi)
                children = node.children
                if not children:
                    continue
                child = children.get(level)
                if child is not None:
                    following.append(child)
                if not guarded and level != "+":
                    plus = children.get("+")
                    if plus is not None:
                        following.append(plus)
            nodes = following
            if not nodes:
                break
        else:
            for node in nodes:
                found.extend(node.exact)
                found.extend(node.multi)  # 'a/#' also matches 'a'
        if len(found) <= 1:
            return [value for _, value in found]
        found.sort(key=_entry_order)
        seen: set[int] = set()
        result: list[V] = []
        for _, value in found:
            key = id(value)
            if key not in seen:
                seen.add(key)
                result.append(value)
        return result


def _entry_order(entry: tuple[int, object]) -> int:
    return entry[0]
