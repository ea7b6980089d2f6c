"""The outgoing rate limit in the sans-IO core: the token buckets, and the state machine
holding publishes (never control packets) until the buckets allow them, replays included."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st
from sansio_broker import SansioBroker, make_client

from trio_mqtt._core._config import Authenticator
from trio_mqtt._core._errors import DisconnectedByBroker, InvalidOptionError
from trio_mqtt._core._packets import (
    Auth,
    ConnAck,
    Disconnect,
    PingReq,
    Properties,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    QoS,
    Subscribe,
    Subscription,
    Unsubscribe,
)
from trio_mqtt._core._throttle import MIN_FACTOR, RateLimiter, Throttle


def throttled(throttle: Throttle, **options: object) -> SansioBroker:
    broker = SansioBroker(make_client(throttle=throttle, **options))
    broker.connect()
    broker.events()
    return broker


def publishes(packets: list[object]) -> list[bytes]:
    return [p.payload for p in packets if isinstance(p, Publish)]


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"messages_per_second": 0}, {"bytes_per_second": -1}, {"messages_per_second": True},
     {"messages_per_second": 1, "burst": 0}],
)  # fmt: skip
def test_bad_throttles_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidOptionError):
        Throttle(**kwargs)  # type: ignore[arg-type]


def test_publishes_wait_for_tokens_and_go_in_order() -> None:
    broker = throttled(Throttle(messages_per_second=10, burst=0.2))  # 2 at once, then 1/0.1 s
    client = broker.client
    for n in range(5):
        client.publish("t", bytes([n]), QoS.AT_LEAST_ONCE, now=0.0)
    assert publishes(broker.pump()) == [b"\x00", b"\x01"]
    assert client.throttle_deadline() == pytest.approx(0.1)
    client.release_throttled(0.05)
    assert publishes(broker.pump()) == []
    client.release_throttled(0.1)
    assert publishes(broker.pump()) == [b"\x02"]
    client.release_throttled(0.3)
    assert publishes(broker.pump()) == [b"\x03", b"\x04"]
    assert client.throttle_deadline() is None
    assert client.throttled_time == pytest.approx(0.3)


def test_control_packets_are_never_held() -> None:
    broker = throttled(Throttle(messages_per_second=1, burst=1), keep_alive=10)
    client = broker.client
    client.publish("t", b"a", 0, now=0.0)
    client.publish("t", b"b", 0, now=0.0)  # held: the bucket is empty
    broker.publish("in", qos=2, packet_id=7)
    client.subscribe([Subscription("s")], now=0.0)
    client.handle_timeout(10.0)  # keep alive: a PINGREQ is due (the held publish does not count)
    sent = broker.pump()
    assert publishes(sent) == [b"a"]
    kinds = {type(p) for p in sent}
    assert {PubRec, Subscribe, PingReq} <= kinds


class _Auth:
    method = "T"

    def initial_data(self) -> bytes | None:
        return None

    def challenge(self, data: bytes | None) -> bytes | None:
        return None

    def complete(self, data: bytes | None) -> None:
        pass


def test_manual_acks_qos2_answers_unsubscribe_auth_and_disconnect_pass_held_publishes() -> None:
    authenticator: Authenticator = _Auth()
    client = make_client(
        throttle=Throttle(messages_per_second=1, burst=1),
        protocol_version=5,
        manual_acks=True,
        authenticator=authenticator,
    )
    broker = SansioBroker(client)
    client.connect(0.0)
    broker.pump()
    broker.send(ConnAck(properties=Properties(authentication_method="T")))
    client.publish("t", b"a", 0, now=0.0)
    client.publish("t", b"b", 0, now=0.0)  # held: the bucket is empty for a second
    assert publishes(broker.pump()) == [b"a"]
    one = broker.publish("in", qos=1)
    two = broker.publish("in", qos=2)
    client.ack(one.packet_id, now=0.1)
    client.ack(two.packet_id, now=0.1)
    assert broker.pump() == [PubAck(one.packet_id), PubRec(two.packet_id)]
    broker.send(PubRel(two.packet_id))
    client.unsubscribe(["s"], now=0.2)
    client.reauthenticate(0.3)
    sent = broker.pump()
    assert [type(p) for p in sent] == [PubComp, Unsubscribe, Auth]
    assert client.throttle_deadline() == pytest.approx(1.0)  # "b" still waits for its token
    client.disconnect(0.4)
    assert broker.pump() == [Disconnect()]


def test_bytes_limit_lets_a_large_publish_go_and_then_pays_its_debt() -> None:
    broker = throttled(Throttle(bytes_per_second=1000, burst=0.1))  # 100 bytes at once
    client = broker.client
    client.publish("t", b"x" * 500, 0, now=0.0)
    client.publish("t", b"y", 0, now=0.0)
    assert publishes(broker.pump()) == [b"x" * 500]
    deadline = client.throttle_deadline()
    assert deadline is not None
    assert 0.3 < deadline < 0.6  # about 400 bytes of debt at 1000 bytes/s
    client.release_throttled(deadline)
    assert publishes(broker.pump()) == [b"y"]


def test_replay_after_a_reconnect_is_throttled() -> None:
    broker = throttled(Throttle(messages_per_second=10, burst=0.1), clean_start=False)
    client = broker.client
    for n in range(3):
        client.publish("t", bytes([n]), QoS.AT_LEAST_ONCE, now=float(n))
        broker.pump()
    broker.drop()
    broker.now = 5.0
    client.connect(5.0)
    broker.pump()
    broker.send(_connack_present())
    assert publishes(broker.pump()) == [b"\x00"]
    client.release_throttled(5.1)
    client.release_throttled(5.2)
    assert publishes(broker.pump()) == [b"\x01", b"\x02"]


def _connack_present() -> object:
    from trio_mqtt._core._packets import ConnAck

    return ConnAck(session_present=True)


def test_quota_exceeded_and_rate_too_high_make_it_back_off() -> None:
    broker = throttled(Throttle(messages_per_second=100), protocol_version=5)
    client = broker.client
    client.publish("t", b"1", QoS.AT_LEAST_ONCE, now=0.0)
    (publish,) = broker.pump()
    assert isinstance(publish, Publish)
    broker.send(PubAck(publish.packet_id, 0x97))
    limiter = client._limiter
    assert limiter is not None
    assert limiter.factor == 0.5
    with pytest.raises(DisconnectedByBroker):
        broker.send(Disconnect(0x96))
    assert limiter.factor == 0.25


def test_a_pubrec_with_quota_exceeded_backs_off_and_ends_the_flow() -> None:
    broker = throttled(Throttle(messages_per_second=100), protocol_version=5)
    client = broker.client
    limiter = client._limiter
    assert limiter is not None
    client.publish("t", b"2", QoS.EXACTLY_ONCE, now=0.0)
    (publish,) = broker.pump()
    assert isinstance(publish, Publish)
    broker.send(PubRec(publish.packet_id, 0x10))  # a success code (no matching subscribers)
    assert limiter.factor == 1.0
    assert any(isinstance(p, PubRel) for p in broker.pump())
    client.publish("t", b"3", QoS.EXACTLY_ONCE, now=0.0)
    (publish,) = broker.pump()
    assert isinstance(publish, Publish)
    broker.send(PubRec(publish.packet_id, 0x97))
    assert limiter.factor == 0.5
    assert broker.pump() == []  # a failing PUBREC ends the flow: no PUBREL (MQTT-4.3.3)
    assert client.inflight_count == 1  # only the first flow, waiting for its PUBCOMP


def test_quota_exceeded_without_a_throttle_only_ends_the_flow() -> None:
    broker = SansioBroker(make_client(protocol_version=5))
    broker.connect()
    broker.events()
    client = broker.client
    client.publish("t", b"1", QoS.EXACTLY_ONCE, now=0.0)
    (publish,) = broker.pump()
    assert isinstance(publish, Publish)
    broker.send(PubRec(publish.packet_id, 0x97))
    assert client.throttled_time == 0.0
    assert client.inflight_count == 0


def test_back_off_recovers_and_has_a_floor() -> None:
    limiter = RateLimiter(Throttle(messages_per_second=10), 0.0)
    for _ in range(20):
        limiter.back_off(0.0)
    assert limiter.factor == MIN_FACTOR
    limiter.take(1, 60.0)
    assert limiter.factor == 1.0


@settings(max_examples=100, deadline=None)
@given(
    rate=st.floats(1, 1000),
    burst=st.floats(0.01, 2),
    times=st.lists(st.floats(0, 10), min_size=1, max_size=50),
)
def test_never_more_than_the_rate_plus_the_burst(
    rate: float, burst: float, times: list[float]
) -> None:
    limiter = RateLimiter(Throttle(messages_per_second=rate, burst=burst), 0.0)
    sent = 0
    for now in sorted(times):
        while limiter.take(10, now):
            sent += 1
    end = max(times)
    assert sent <= max(1.0, rate * burst) + rate * end + 1e-6
    assert limiter.ready_at() >= limiter._updated


@settings(max_examples=100, deadline=None)
@given(
    answers=st.lists(
        st.tuples(st.sampled_from([1, 2]), st.sampled_from([0x00, 0x10, 0x80, 0x97])),
        min_size=1,
        max_size=12,
    )
)
def test_every_quota_exceeded_answer_halves_the_rate_and_nothing_else_does(
    answers: list[tuple[int, int]],
) -> None:
    broker = throttled(Throttle(messages_per_second=1000, burst=1), protocol_version=5)
    client = broker.client
    limiter = client._limiter
    assert limiter is not None
    for qos, code in answers:  # all at one instant: no recovery in between
        client.publish("t", b"x", qos, now=0.0)
        (publish,) = broker.pump()
        assert isinstance(publish, Publish)
        broker.send((PubAck if qos == 1 else PubRec)(publish.packet_id, code))
        if qos == 2 and code < 0x80:
            assert broker.pump() == [PubRel(publish.packet_id)]
            broker.send(PubComp(publish.packet_id))
        assert broker.pump() == []
    refusals = sum(1 for _, code in answers if code == 0x97)
    assert limiter.factor == max(MIN_FACTOR, 0.5**refusals)
    assert client.inflight_count == 0
