"""Topic validation and matching against the examples of section 4.7 of MQTT 3.1.1 and 5.0."""

from __future__ import annotations

import pytest

from trio_mqtt import InvalidTopicError
from trio_mqtt._core._topics import (
    FilterTree,
    has_wildcards,
    matches,
    parse_shared,
    valid_filter,
    valid_topic,
    validate_filter,
    validate_topic,
)

# (topic, filter, expected) straight from the spec's non-normative examples, plus edges.
MATCH_CASES = [
    # 4.7.1.2 multi-level wildcard
    ("sport/tennis/player1", "sport/tennis/player1/#", True),
    ("sport/tennis/player1/ranking", "sport/tennis/player1/#", True),
    ("sport/tennis/player1/score/wimbledon", "sport/tennis/player1/#", True),
    ("sport", "sport/#", True),
    ("sport/", "sport/#", True),
    ("sports", "sport/#", False),
    ("anything/at/all", "#", True),
    ("/", "#", True),
    # 4.7.1.3 single-level wildcard
    ("sport/tennis/player1", "sport/tennis/+", True),
    ("sport/tennis/player2", "sport/tennis/+", True),
    ("sport/tennis/player1/ranking", "sport/tennis/+", False),
    ("sport", "sport/+", False),
    ("sport/", "sport/+", True),
    ("/finance", "+/+", True),
    ("/finance", "/+", True),
    ("/finance", "+", False),
    ("sport/tennis/player1", "sport/+/player1", True),
    ("sport/golf/player1", "sport/+/player1", True),
    ("sport/golf/player2", "sport/+/player1", False),
    ("a/b/c", "+/+/#", True),
    ("a", "+/#", True),
    ("a/b", "+/+/+", False),
    # 4.7.2 topics beginning with $ (MQTT-4.7.2-1)
    ("$SYS/monitor/Clients", "#", False),
    ("$SYS/monitor/Clients", "+/monitor/Clients", False),
    ("$SYS/monitor/Clients", "$SYS/#", True),
    ("$SYS/monitor/Clients", "$SYS/monitor/+", True),
    ("$SYS", "+", False),
    ("$SYS", "$SYS", True),
    ("a/$SYS", "+/+", True),
    ("a/$SYS", "a/#", True),
    # 4.7.3 semantics: case-sensitive, spaces allowed, a leading '/' makes a distinct level
    ("ACCOUNTS", "Accounts", False),
    ("Accounts payable", "Accounts payable", True),
    ("/finance", "finance", False),
    ("finance", "/finance", False),
    ("a//b", "a/+/b", True),
    ("a//b", "a/b", False),
    # shared subscriptions match as their inner filter (MQTT 5, 4.8.2)
    ("sport/tennis/x", "$share/consumer1/sport/tennis/+", True),
    ("sport/golf/x", "$share/consumer1/sport/tennis/+", False),
    ("/finance", "$share/g//finance", True),
    ("$SYS/x", "$share/g/#", False),
    ("exact", "$share/g/exact", True),
]


@pytest.mark.parametrize(("topic", "topic_filter", "expected"), MATCH_CASES)
def test_matches_spec_examples(topic: str, topic_filter: str, expected: bool) -> None:
    assert matches(topic, topic_filter) is expected


@pytest.mark.parametrize(("topic", "topic_filter", "expected"), MATCH_CASES)
def test_filter_tree_agrees_on_spec_examples(topic: str, topic_filter: str, expected: bool) -> None:
    tree: FilterTree[str] = FilterTree()
    tree.add(topic_filter, "route")
    assert tree.match(topic) == (["route"] if expected else [])


VALID_FILTERS = [
    "#",
    "sport/tennis/#",
    "+",
    "+/tennis/#",
    "sport/+/player1",
    "/",
    "//",
    "+/+",
    "$SYS/#",
    "$share",
    "$share/group/#",
    "$share/group/a/+/b",
    "$share/g//finance",
    "é/ü/漢字",
]
INVALID_FILTERS = [
    "",
    "sport/tennis#",
    "sport/tennis/#/ranking",
    "sport+",
    "sport/+tennis",
    "##",
    "a/#/",
    "nul\x00here",
    "$share/",
    "$share/group",
    "$share/group/",
    "$share//a",
    "$share/gr+oup/a",
    "$share/gr#oup/a",
    "$share/group/a#",
    "\ud800",
    "a" * 65536,
    "é" * 32768,
]


@pytest.mark.parametrize("topic_filter", VALID_FILTERS)
def test_valid_filters(topic_filter: str) -> None:
    assert valid_filter(topic_filter)
    validate_filter(topic_filter)


@pytest.mark.parametrize("topic_filter", INVALID_FILTERS)
def test_invalid_filters(topic_filter: str) -> None:
    assert not valid_filter(topic_filter)
    with pytest.raises(InvalidTopicError):
        validate_filter(topic_filter)


VALID_TOPICS = ["a", "/", "a/b", "$SYS/x", "a b", "a" * 65535, "é" * 32767, "$share/g/t"]
INVALID_TOPICS = ["", "a/+", "#", "a/#", "a+b", "nul\x00", "\udfff", "a" * 65536, "€" * 21846]


@pytest.mark.parametrize("topic", VALID_TOPICS)
def test_valid_topics(topic: str) -> None:
    assert valid_topic(topic)
    validate_topic(topic)


@pytest.mark.parametrize("topic", INVALID_TOPICS)
def test_invalid_topics(topic: str) -> None:
    assert not valid_topic(topic)
    with pytest.raises(InvalidTopicError):
        validate_topic(topic)


def test_error_messages_name_the_problem() -> None:
    with pytest.raises(InvalidTopicError, match="wildcards"):
        validate_topic("a/+")
    with pytest.raises(InvalidTopicError, match="empty"):
        validate_topic("")
    with pytest.raises(InvalidTopicError, match="U\\+0000"):
        validate_topic("a\x00")
    with pytest.raises(InvalidTopicError, match="65535 bytes"):
        validate_topic("€" * 21846)
    with pytest.raises(InvalidTopicError, match="'#' must be the last level"):
        validate_filter("a/#/b")
    with pytest.raises(InvalidTopicError, match="'\\+' must occupy a whole level"):
        validate_filter("a/b+")
    with pytest.raises(InvalidTopicError, match="group name"):
        validate_filter("$share//a")
    with pytest.raises(InvalidTopicError, match="after the group"):
        validate_filter("$share/g")


def test_invalid_topic_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="wildcards"):
        validate_topic("#")


def test_has_wildcards() -> None:
    assert has_wildcards("a/+")
    assert has_wildcards("#")
    assert not has_wildcards("a/b")
    assert not has_wildcards("$share/g/a")


def test_parse_shared() -> None:
    assert parse_shared("$share/group/a/b") == ("group", "a/b")
    assert parse_shared("$share/g//x") == ("g", "/x")
    assert parse_shared("$share/g/#") == ("g", "#")
    assert parse_shared("$share/g") is None
    assert parse_shared("$share") is None
    assert parse_shared("share/g/a") is None
    assert parse_shared("a/b") is None


def test_filter_tree_several_values_and_order() -> None:
    tree: FilterTree[str] = FilterTree()
    tree.add("a/+", "first")
    tree.add("#", "second")
    tree.add("a/b", "third")
    tree.add("a/b", "fourth")
    tree.add("x/y", "unrelated")
    assert len(tree) == 5
    assert tree.match("a/b") == ["first", "second", "third", "fourth"]
    assert tree.match("a/c") == ["first", "second"]
    assert tree.match("$SYS/a") == []


def test_filter_tree_reports_a_value_once() -> None:
    tree: FilterTree[object] = FilterTree()
    route = object()
    tree.add("a/#", route)
    tree.add("a/+", route)
    tree.add("a/b", route)
    tree.add("a/b", route)
    assert tree.match("a/b") == [route]
    assert len(tree) == 4


def test_filter_tree_accepts_unhashable_values() -> None:
    tree: FilterTree[list[int]] = FilterTree()
    value = [1, 2]
    tree.add("t", value)
    assert tree.match("t") == [value]
    tree.remove("t", value)
    assert tree.match("t") == []


def test_filter_tree_remove() -> None:
    tree: FilterTree[str] = FilterTree()
    tree.add("a/b/#", "x")
    tree.add("a/b/#", "x")
    tree.add("a/+/c", "y")
    tree.add("$share/g/a/b/c", "z")
    assert tree.match("a/b/c") == ["x", "y", "z"]
    tree.remove("a/b/#", "x")
    assert tree.match("a/b/c") == ["x", "y", "z"]  # the second copy is still there
    tree.remove("a/b/#", "x")
    tree.remove("$share/g/a/b/c", "z")
    assert tree.match("a/b/c") == ["y"]
    assert len(tree) == 1
    with pytest.raises(ValueError, match="not stored"):
        tree.remove("a/b/#", "x")
    with pytest.raises(ValueError, match="not stored"):
        tree.remove("no/such/branch", "y")
    with pytest.raises(ValueError, match="not stored"):
        tree.remove("a/+/c", "other")
    tree.remove("a/+/c", "y")
    assert len(tree) == 0
    assert tree._root.empty()  # every branch was pruned


def test_filter_tree_rejects_invalid_filters() -> None:
    tree: FilterTree[int] = FilterTree()
    with pytest.raises(InvalidTopicError):
        tree.add("a/#/b", 1)
    assert len(tree) == 0
