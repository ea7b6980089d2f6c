"""Security defaults: secrets never shown, validation before sending, every buffer bounded."""

from __future__ import annotations

import contextlib
import logging

import pytest
import trio
import trio.testing
from fake_broker import FakeBroker, ScriptedPeer  # tests/ is on sys.path under pytest

from trio_mqtt import (
    ConnectionRefused,
    HttpProxy,
    InvalidOptionError,
    InvalidTopicError,
    MqttError,
    MqttOptions,
    ProtocolVersion,
    QoS,
    open_mqtt_connection,
)
from trio_mqtt.sansio import (
    Connect,
    Outgoing,
    PingReq,
    Properties,
    Publish,
    SessionConfig,
)
from trio_mqtt.testing import MosquittoBroker

SECRET = "s3cr3t-pa55w0rd"
AUTH_DATA = b"auth-data-xyzzy"


def _assert_hidden(text: str) -> None:
    assert SECRET not in text
    assert SECRET.encode().hex() not in text
    assert "xyzzy" not in text


@pytest.mark.parametrize("password", [SECRET, SECRET.encode()])
def test_options_repr_and_str_hide_the_password(password: str | bytes) -> None:
    options = MqttOptions("c", username="user", password=password)
    _assert_hidden(repr(options))
    _assert_hidden(str(options))
    assert "<hidden>" in repr(options)
    _assert_hidden(repr(options.session_config()))
    from_url = MqttOptions.from_url(f"mqtt://user:{SECRET}@localhost:1883/?client_id=c")
    _assert_hidden(repr(from_url))
    assert from_url.password == SECRET.encode()


def test_bad_urls_never_echo_the_password() -> None:
    for url in (
        f"mqtt://user:{SECRET}@localhost:99999/",
        f"mqtt://user:{SECRET}@localhost/?client_id=c&nonsense=1",
        f"mqtt://user:{SECRET}@localhost/?keep_alive=often",
        f"bogus://user:{SECRET}@localhost/",
        f"mqtt://user:{SECRET}@/",
    ):
        with pytest.raises(InvalidOptionError) as info:
            MqttOptions.from_url(url)
        _assert_hidden(str(info.value))
        _assert_hidden(repr(info.value))


def test_packets_and_events_hide_password_and_auth_data() -> None:
    props = Properties(authentication_method="SCRAM", authentication_data=AUTH_DATA)
    connect = Connect("c", ProtocolVersion.V5, 60, True, "user", SECRET.encode(), properties=props)
    for text in (repr(connect), str(connect), repr(Outgoing(connect)), repr(props)):
        _assert_hidden(text)
    config = SessionConfig("c", username="u", password=SECRET.encode())
    _assert_hidden(repr(config))


def test_proxy_password_is_hidden() -> None:
    proxy = HttpProxy("proxy.example", 3128, username="u", password=SECRET)
    _assert_hidden(repr(proxy))
    _assert_hidden(repr(MqttOptions("c", transport=proxy)))


async def test_refused_login_and_a_debug_log_of_a_full_session_hide_the_password(
    mosquitto_factory: object, caplog: pytest.LogCaptureFixture
) -> None:
    broker: MosquittoBroker = mosquitto_factory(users={"alice": SECRET})  # type: ignore[operator]
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    with trio.fail_after(15):
        wrong = MqttOptions("sec", broker.host, broker.port, username="alice", password="nope")
        with pytest.raises(ConnectionRefused) as info:
            async with open_mqtt_connection(wrong):
                pass  # pragma: no cover
        seen += [str(info.value), repr(info.value)]
        for version in (ProtocolVersion.V311, ProtocolVersion.V5):
            options = MqttOptions(
                "sec",
                broker.host,
                broker.port,
                username="alice",
                password=SECRET,
                protocol_version=version,
            )
            async with open_mqtt_connection(options) as conn:
                await conn.client.subscribe("sec/#", QoS.EXACTLY_ONCE)
                await conn.client.publish("sec/t", b"hello", qos=QoS.EXACTLY_ONCE)
                async for event in conn:
                    seen.append(repr(event))
                    if "hello" in repr(event) and "Incoming" in repr(event):
                        break
            seen.append(repr(conn.statistics()))
    assert any("Connect(" in text for text in seen)  # the CONNECT event was looked at
    for text in [*seen, caplog.text]:
        _assert_hidden(text)


# ---------------------------------------------------------------- validation before sending


def _silent_broker(nursery: trio.Nursery) -> FakeBroker:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.accept()
        while True:
            await peer.receive()  # recorded in peer.received; never answered

    return FakeBroker(nursery, handler)


async def test_invalid_topics_and_filters_are_refused_before_anything_is_sent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            broker = _silent_broker(nursery)
            options = MqttOptions("v", transport=broker, keep_alive=0)
            async with open_mqtt_connection(options) as conn:
                client = conn.client
                bad_topics = ["a/+", "a/#", "", "a\x00b", "x" * 70000, "\ud800"]
                for topic in bad_topics:
                    with pytest.raises(InvalidTopicError):
                        await client.publish(topic, b"x", qos=1)
                    with pytest.raises(InvalidTopicError):
                        client.publish_nowait(topic, b"x")
                for topic_filter in ["a/#/b", "a+/b", "", "#/x", "a\x00"]:
                    with pytest.raises(InvalidTopicError):
                        await client.subscribe(topic_filter)
                    with pytest.raises(InvalidTopicError):
                        await client.unsubscribe(topic_filter)
                with pytest.raises(MqttError):
                    await client.publish("ok", b"x", qos=3)
                await trio.sleep(1)
                assert conn.connected
            nursery.cancel_scope.cancel()
    sent = [type(p).__name__ for _, p in broker.peers[0].received]
    assert sent[0] == "Connect"
    assert set(sent[1:]) <= {"Disconnect"}  # nothing but the final DISCONNECT


# ---------------------------------------------------------------- bounded buffers


async def test_unread_events_stay_bounded(autojump_clock: trio.testing.MockClock) -> None:
    async def flood(peer: ScriptedPeer) -> None:
        await peer.accept()
        for _ in range(10):
            await peer.send(
                *(Publish("f", b"x", QoS.AT_MOST_ONCE, False, False, 0) for _n in range(500))
            )
        await trio.sleep_forever()

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            options = MqttOptions("b", transport=FakeBroker(nursery, flood), keep_alive=0)
            async with open_mqtt_connection(options, event_capacity=50) as conn:
                await trio.sleep(5)  # nobody reads events: the reader pauses
                stats = conn.statistics()
                # at most the capacity, plus the messages of the one read that filled it
                one_read = 65536 // len(b"\x30\x04\x00\x01fx")
                assert 50 <= stats.buffered_events <= 50 + one_read
                received = stats.packets_received
                await trio.sleep(5)
                assert conn.statistics().packets_received == received  # still paused
                # Reading late loses nothing: every message arrives, in order.
                count = 0
                async for message in conn.messages():
                    assert message.payload == b"x"
                    count += 1
                    if count == 5000:
                        break
                assert conn.statistics().buffered_events <= 50 + one_read
            nursery.cancel_scope.cancel()


async def test_route_with_drop_policy_stays_bounded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def flood(peer: ScriptedPeer) -> None:
        await peer.accept()
        await peer.send(
            *(Publish("r/x", b"%d" % n, QoS.AT_MOST_ONCE, False, False, 0) for n in range(1000))
        )
        await trio.sleep_forever()

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            options = MqttOptions("r", transport=FakeBroker(nursery, flood), keep_alive=0)
            async with (
                open_mqtt_connection(options) as conn,
                conn.route("r/#", capacity=10, overflow="drop_oldest") as stream,
            ):
                await trio.sleep(5)
                assert stream.dropped == 990
                kept = [stream.receive_nowait().payload for _ in range(10)]
                assert kept == [b"%d" % n for n in range(990, 1000)]
            nursery.cancel_scope.cancel()


async def test_requests_are_bounded_by_window_and_request_capacity(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            broker = _silent_broker(nursery)  # never acknowledges anything
            options = MqttOptions(
                "q", transport=broker, keep_alive=0, inflight=3, request_capacity=4
            )
            async with open_mqtt_connection(options) as conn:
                accepted = 0
                with pytest.raises(trio.WouldBlock):
                    for _ in range(100):
                        conn.client.publish_nowait("q", b"x", qos=1)
                        accepted += 1
                        await trio.sleep(0.1)
                stats = conn.statistics()
                assert stats.inflight <= 3
                assert stats.waiting_publishes <= 3 + 1  # see the next test for the + 1
                assert stats.queued_requests <= 4
                assert accepted <= 3 + 3 + 1 + 4
                publishes = [p for _, p in broker.peers[0].received if isinstance(p, Publish)]
                assert len(publishes) == 3  # the window
                assert not any(isinstance(p, PingReq) for _, p in broker.peers[0].received)
                conn.client.disconnect_nowait(0)
            nursery.cancel_scope.cancel()


async def test_waiting_queue_is_bounded_by_inflight(autojump_clock: trio.testing.MockClock) -> None:
    """BUG (trio_mqtt/_eventloop.py, _publish_intake): the intake task checks the waiting queue,
    then parks in ``receive()``; meanwhile the publisher fast path (``_publish_directly``) fills
    the queue to ``inflight``, and the request the intake then receives is applied without a
    second check, so ``inflight + 1`` publishes wait."""
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            broker = _silent_broker(nursery)  # never acknowledges anything
            options = MqttOptions("w", transport=broker, keep_alive=0, inflight=3)
            async with open_mqtt_connection(options) as conn:
                for _ in range(10):
                    with contextlib.suppress(trio.WouldBlock):
                        conn.client.publish_nowait("w", b"x", qos=1)
                    await trio.sleep(0.1)
                    assert conn.statistics().waiting_publishes <= 3
                conn.client.disconnect_nowait(0)
            nursery.cancel_scope.cancel()
