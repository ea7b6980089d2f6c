"""Hypothesis properties of topic matching and of FilterTree."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from trio_mqtt._core._topics import FilterTree, matches, valid_filter, valid_topic

# Few distinct levels, so that generated topics and filters match each other often.
LEVEL = st.sampled_from(["", "a", "b", "ab", "$", "$a"])
LEVELS = st.lists(LEVEL, min_size=1, max_size=5)
TOPIC = LEVELS.map("/".join).filter(bool)

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)
TREE_SETTINGS = settings(max_examples=120, deadline=None)


def _make_filter(levels: list[str], multi: bool, shared: bool) -> str:
    topic_filter = "/".join([*levels, "#"] if multi else levels) or "+"
    return "$share/grp/" + topic_filter if shared else topic_filter


# A valid filter: levels (some of them '+'), maybe a trailing '#', sometimes shared.
FILTER = st.builds(
    _make_filter,
    st.lists(st.sampled_from(["", "a", "b", "$", "+", "+"]), min_size=1, max_size=5),
    st.booleans(),
    st.sampled_from([False, False, False, True]),
)


def brute_force_match(topic: str, topic_filter: str) -> bool:
    """An independent, recursive reading of the rules, to check matches() against."""
    inner = topic_filter
    if inner.startswith("$share/"):
        inner = inner.split("/", 2)[2]
    if topic.startswith("$") and inner[0] in "+#":
        return False

    def walk(topic_levels: list[str], filter_levels: list[str]) -> bool:
        if not filter_levels:
            return not topic_levels
        head, rest = filter_levels[0], filter_levels[1:]
        if head == "#":
            return True
        if not topic_levels:
            return False
        return (head in ("+", topic_levels[0])) and walk(topic_levels[1:], rest)

    return walk(topic.split("/"), inner.split("/"))


@PROPERTY_SETTINGS
@given(TOPIC)
def test_every_topic_matches_hash_unless_it_starts_with_dollar(topic: str) -> None:
    assert valid_topic(topic)
    assert matches(topic, "#") is (not topic.startswith("$"))


@PROPERTY_SETTINGS
@given(TOPIC)
def test_a_topic_matches_itself(topic: str) -> None:
    assert matches(topic, topic)
    assert matches(topic, "$share/g/" + topic)


@PROPERTY_SETTINGS
@given(LEVELS.filter(lambda levels: "/".join(levels) != ""), st.data())
def test_plus_matches_exactly_one_level(levels: list[str], data: st.DataObject) -> None:
    topic = "/".join(levels)
    index = data.draw(st.integers(0, len(levels) - 1))
    replaced = [*levels[:index], "+", *levels[index + 1 :]]
    guarded = index == 0 and topic.startswith("$")
    assert matches(topic, "/".join(replaced)) is (not guarded)
    # '+' never stands for zero levels or for two levels.
    dropped = levels[:index] + levels[index + 1 :]
    if dropped:
        assert not matches("/".join(dropped), "/".join(replaced))
    doubled = [*levels[:index], "x", "y", *levels[index + 1 :]]
    assert not matches("/".join(doubled), "/".join(replaced))
    if levels[0]:
        assert matches(levels[0], "+") is (not levels[0].startswith("$"))


@PROPERTY_SETTINGS
@given(TOPIC, FILTER)
def test_matches_agrees_with_a_recursive_reading(topic: str, topic_filter: str) -> None:
    assert valid_filter(topic_filter)
    assert matches(topic, topic_filter) is brute_force_match(topic, topic_filter)


@TREE_SETTINGS
@given(st.lists(FILTER, max_size=12), st.lists(TOPIC, min_size=1, max_size=8))
def test_filter_tree_agrees_with_matches(topic_filters: list[str], topics: list[str]) -> None:
    tree: FilterTree[int] = FilterTree()
    for index, topic_filter in enumerate(topic_filters):
        tree.add(topic_filter, index)
    assert len(tree) == len(topic_filters)
    for topic in topics:
        expected = [i for i, f in enumerate(topic_filters) if matches(topic, f)]
        assert tree.match(topic) == expected
    for index, topic_filter in enumerate(topic_filters):
        tree.remove(topic_filter, index)
    assert len(tree) == 0
    assert tree._root.empty()


@TREE_SETTINGS
@given(st.lists(FILTER, min_size=1, max_size=6), TOPIC)
def test_filter_tree_shared_value_reported_once(topic_filters: list[str], topic: str) -> None:
    tree: FilterTree[str] = FilterTree()
    for topic_filter in topic_filters:
        tree.add(topic_filter, "route")
    hit = any(matches(topic, f) for f in topic_filters)
    assert tree.match(topic) == (["route"] if hit else [])
