"""Topic aliases the application sets itself (MQTT 5), without ``outgoing_topic_aliases``.

A publish may carry ``Properties(topic_alias=n)`` within the broker's Topic Alias Maximum, and
later ones an empty topic with that alias. On the wire an alias the broker knows from this
connection goes alone; after a reconnect (aliases end with the connection) the first use sends
the topic again, and replayed or re-sent publishes carry the full topic without an alias.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st
from sansio_broker import SansioBroker, make_client

from trio_mqtt._core._errors import InvalidTopicError, LocalProtocolError
from trio_mqtt._core._packets import (
    NO_PROPERTIES,
    Packet,
    Properties,
    ProtocolVersion,
    PubAck,
    Publish,
    QoS,
)

LIMIT = Properties(topic_alias_maximum=3)


def v5(connack: Properties = LIMIT, **options: object) -> SansioBroker:
    broker = SansioBroker(make_client(protocol_version=5, **options))
    broker.connect(properties=connack)
    broker.events()
    return broker


def alias(n: int) -> Properties:
    return Properties(topic_alias=n)


def wire(packets: list[Packet]) -> list[tuple[str, int | None, bytes]]:
    return [
        (p.topic, p.properties.topic_alias, p.payload) for p in packets if isinstance(p, Publish)
    ]


def test_an_alias_is_set_then_used_alone() -> None:
    broker = v5()
    client = broker.client
    client.publish("sensors/kitchen/temp", b"1", 0, properties=alias(2), now=0.0)
    client.publish("", b"2", 0, properties=alias(2), now=0.0)
    client.publish("sensors/kitchen/temp", b"3", 0, properties=alias(2), now=0.0)
    assert wire(broker.pump()) == [
        ("sensors/kitchen/temp", 2, b"1"),
        ("", 2, b"2"),
        ("", 2, b"3"),  # the broker knows it: the topic need not go again
    ]


def test_an_alias_can_be_pointed_at_another_topic() -> None:
    broker = v5()
    client = broker.client
    client.publish("a", b"1", 0, properties=alias(1), now=0.0)
    client.publish("b", b"2", 0, properties=alias(1), now=0.0)
    client.publish("", b"3", 0, properties=alias(1), now=0.0)
    assert wire(broker.pump()) == [("a", 1, b"1"), ("b", 1, b"2"), ("", 1, b"3")]


@pytest.mark.parametrize(
    ("connack", "topic", "number", "match"),
    [
        (LIMIT, "t", 0, "outside"),
        (LIMIT, "t", 4, "1..3"),
        (NO_PROPERTIES, "t", 1, "no Topic Alias Maximum"),
        (LIMIT, "", 1, "never set"),
    ],
)
def test_unusable_aliases_are_refused_before_anything_is_queued(
    connack: Properties, topic: str, number: int, match: str
) -> None:
    broker = v5(connack)
    with pytest.raises(LocalProtocolError, match=match):
        broker.client.check_publish(topic, b"", 1, properties=alias(number))
    with pytest.raises(LocalProtocolError, match=match):
        broker.client.publish(topic, b"", 1, properties=alias(number), now=0.0)
    assert broker.pump() == []
    assert broker.client.inflight_count == 0


def test_an_empty_topic_without_alias_stays_invalid() -> None:
    broker = v5()
    with pytest.raises(InvalidTopicError):
        broker.client.publish("", b"", 0, now=0.0)
    v311 = SansioBroker(make_client(protocol_version=ProtocolVersion.V311))
    v311.connect()
    with pytest.raises(InvalidTopicError):
        v311.client.publish("", b"", 0, properties=alias(1), now=0.0)


def test_after_a_reconnect_replays_carry_the_full_topic_and_queued_ones_set_the_alias() -> None:
    broker = v5(clean_start=False, inflight=2)
    client = broker.client
    client.publish("long/topic", b"1", QoS.AT_LEAST_ONCE, properties=alias(1), now=0.0)
    client.publish("", b"2", QoS.AT_LEAST_ONCE, properties=alias(1), now=0.0)
    client.publish("", b"3", QoS.AT_LEAST_ONCE, properties=alias(1), now=0.0)  # waits: window 2
    assert wire(broker.pump()) == [("long/topic", 1, b"1"), ("", 1, b"2")]
    broker.drop()
    client.publish("", b"4", QoS.AT_LEAST_ONCE, properties=alias(1), now=1.0)  # while down
    broker.connect(session_present=True, properties=LIMIT)
    assert wire(broker.pump()) == [("long/topic", None, b"1"), ("long/topic", None, b"2")]
    broker.send(PubAck(1), PubAck(2))
    assert wire(broker.pump()) == [("long/topic", 1, b"3"), ("", 1, b"4")]


def test_a_lost_session_resends_alias_only_publishes_with_their_topic() -> None:
    broker = v5(inflight=5)
    client = broker.client
    client.publish("x/y", b"1", QoS.AT_LEAST_ONCE, properties=alias(3), now=0.0)
    client.publish("", b"2", QoS.EXACTLY_ONCE, properties=alias(3), now=0.0)
    broker.pump()
    snapshot = client.export_session()
    assert [p.topic for p in snapshot.outgoing] == ["x/y", "x/y"]  # type: ignore[union-attr]
    assert all(p.properties.topic_alias is None for p in snapshot.outgoing)  # type: ignore[union-attr]
    broker.drop()
    broker.connect(session_present=False, properties=LIMIT)
    assert wire(broker.pump()) == [("x/y", None, b"1"), ("x/y", None, b"2")]


def test_a_lowered_maximum_after_reconnect_sends_the_topic_without_alias() -> None:
    broker = v5()
    client = broker.client
    client.publish("t", b"1", 0, properties=alias(3), now=0.0)
    broker.pump()
    broker.drop()
    client.publish("", b"2", 0, properties=alias(3), now=0.0)  # checked against the old limit
    broker.connect(properties=Properties(topic_alias_maximum=1))
    assert wire(broker.pump()) == [("t", None, b"2")]


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("set"), st.integers(1, 3), st.sampled_from(["a", "b/c", "d"])),
            st.tuples(st.just("use"), st.integers(1, 3), st.just("")),
            st.tuples(st.just("plain"), st.just(0), st.sampled_from(["a", "z"])),
            st.tuples(st.just("reconnect"), st.just(0), st.just("")),
        ),
        max_size=25,
    ),
    qos=st.sampled_from([0, 1]),
)
def test_the_broker_always_resolves_the_topic_the_application_meant(
    steps: list[tuple[str, int, str]], qos: int
) -> None:
    """A model broker resolves aliases per connection, as a real one must; every publish it
    receives must resolve to the topic the application meant, and none is lost."""
    broker = v5(clean_start=False, inflight=100)
    client = broker.client
    meant: list[tuple[str, bytes]] = []
    app: dict[int, str] = {}
    table: dict[int, str] = {}
    got: list[tuple[str, bytes]] = []

    def absorb() -> None:
        for packet in broker.pump():
            if not isinstance(packet, Publish):
                continue
            number = packet.properties.topic_alias
            if number is not None:
                assert 0 < number <= 3
                if packet.topic:
                    table[number] = packet.topic
            topic = packet.topic or table[number]  # type: ignore[index]
            if (topic, packet.payload) not in got:  # a replay is a duplicate, not a new one
                got.append((topic, packet.payload))
            if packet.qos:
                broker.send(PubAck(packet.packet_id))

    for n, (kind, number, topic) in enumerate(steps):
        payload = str(n).encode()
        if kind == "reconnect":
            broker.drop()
            table.clear()  # the broker forgets aliases with the connection
            broker.connect(session_present=True, properties=LIMIT)
            absorb()
            continue
        if kind == "use" and number not in app:
            with pytest.raises(LocalProtocolError):
                client.publish("", payload, qos, properties=alias(number), now=0.0)
            continue
        props = alias(number) if kind != "plain" else NO_PROPERTIES
        client.publish(topic, payload, qos, properties=props, now=0.0)
        if kind == "set":
            app[number] = topic
        meant.append((topic or app[number], payload))
        absorb()
    assert got == meant
