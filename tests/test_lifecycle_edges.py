"""The edges of a connection's life, one test per case of issue 11.

Each of these hung, lost a request or leaked an internal error before the event loop got one
owner for every request's lifecycle. Real brokers where they can produce the situation; the
scripted peer only for a broker that closes after SUBSCRIBE or sends a malformed SUBACK.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import pytest
import trio
import trio.testing
from broker_clients import options_for
from fake_broker import FakeBroker, ScriptedPeer

from trio_mqtt import (
    ConnectionClosed,
    ConnectionLost,
    LocalProtocolError,
    MqttOptions,
    Properties,
    ProtocolVersion,
    QoS,
    RemoteProtocolError,
    open_mqtt_connection,
)
from trio_mqtt.sansio import Publish, SubAck, Subscribe
from trio_mqtt.testing import MosquittoBroker

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup


async def every_request_is_refused(client: Any, error: type[BaseException]) -> None:
    """Each request method of ``client`` raises ``error`` at once (bounded by the caller)."""
    calls = [
        lambda: client.publish("edge/a", b"x"),
        lambda: client.publish("edge/a", b"x", qos=QoS.AT_LEAST_ONCE),
        lambda: client.publish_tracked("edge/a", b"x", qos=QoS.EXACTLY_ONCE),
        lambda: client.subscribe("edge/#", QoS.AT_LEAST_ONCE),
        lambda: client.subscribe_many(["edge/a", "edge/b"]),
        lambda: client.unsubscribe("edge/#"),
        lambda: client.unsubscribe_many(["edge/a"]),
    ]
    for make_call in calls:
        with pytest.raises(error):
            await make_call()
    nowait_calls = [
        lambda: client.publish_nowait("edge/a", b"x"),
        lambda: client.publish_tracked_nowait("edge/a", b"x", qos=QoS.AT_LEAST_ONCE),
        lambda: client.subscribe_nowait("edge/#"),
        lambda: client.subscribe_many_nowait(["edge/#"]),
        lambda: client.unsubscribe_nowait("edge/#"),
        lambda: client.unsubscribe_many_nowait(["edge/#"]),
    ]
    for make_call in nowait_calls:
        with pytest.raises(error):
            make_call()


# ---------------------------------------------------------------- 1. after the end


async def test_a_saved_client_raises_after_the_block(mosquitto: MosquittoBroker) -> None:
    with trio.fail_after(10):
        async with open_mqtt_connection(options_for(mosquitto, "after-block")) as conn:
            client = conn.client
            tracker = await client.publish_tracked("edge/t", b"x", qos=QoS.AT_LEAST_ONCE)
            assert (await tracker.wait()).reason_code == 0
        # request_capacity used to swallow the first calls silently, then block forever
        for _ in range(2 * conn.options.request_capacity):
            with pytest.raises(ConnectionClosed):
                await client.publish("edge/t", b"lost?")
        await every_request_is_refused(client, ConnectionClosed)
        await client.disconnect()  # nothing to do: the session has ended
        with pytest.raises(ConnectionClosed):
            while True:  # the events buffered before the end come first
                await conn.poll()


async def test_requests_raise_after_disconnect_inside_the_block(
    mosquitto: MosquittoBroker,
) -> None:
    with trio.fail_after(10):
        async with open_mqtt_connection(options_for(mosquitto, "after-disconnect")) as conn:
            await conn.client.disconnect()
            assert not conn.connected
            await every_request_is_refused(conn.client, ConnectionClosed)
            clone_error = None
            try:
                conn.client.clone().publish_nowait("edge/t", b"x")
            except ConnectionClosed as exc:
                clone_error = exc
            assert clone_error is not None


async def test_trackers_waiting_when_the_block_ends_are_answered(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def never_answers(peer: ScriptedPeer) -> None:
        await peer.accept()
        while True:
            await peer.receive()

    outcomes: list[BaseException] = []

    async def wait_for(tracker: Any) -> None:
        try:
            await tracker.wait()
        except ConnectionClosed as exc:
            outcomes.append(exc)

    broker = FakeBroker(nursery, never_answers)
    with trio.fail_after(30):
        options = MqttOptions("edge", "fake", 1883, transport=broker)  # type: ignore[arg-type]
        async with (
            trio.open_nursery() as waiters,
            open_mqtt_connection(options, disconnect_timeout=1) as conn,
        ):
            waiters.start_soon(wait_for, conn.client.subscribe_nowait("edge/#"))
            waiters.start_soon(wait_for, conn.client.unsubscribe_nowait("edge/#"))
            tracker = await conn.client.publish_tracked("edge/a", b"x", qos=QoS.AT_LEAST_ONCE)
            waiters.start_soon(wait_for, tracker)
    assert len(outcomes) == 3


# ---------------------------------------------------------------- 2. failing, nobody polls


async def test_pending_subscribe_fails_when_the_broker_closes(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def close_after_subscribe(peer: ScriptedPeer) -> None:
        await peer.accept()
        while True:
            if isinstance(await peer.receive(), Subscribe):
                await peer.close()
                return

    broker = FakeBroker(nursery, close_after_subscribe)
    with trio.fail_after(30):
        options = MqttOptions("edge", "fake", 1883, transport=broker)  # type: ignore[arg-type]
        async with open_mqtt_connection(options) as conn:
            # nobody calls poll(): the tutorial's "subscribe, then read" order
            with pytest.raises(ConnectionLost):
                await conn.client.subscribe("edge/#", QoS.AT_LEAST_ONCE)
            # the failed connection refuses what only a connection could answer...
            with pytest.raises(ConnectionLost):
                await conn.client.subscribe("edge/#")
            # ...keeps a plain publish for after the reconnect, and reports the error once
            await conn.client.publish("edge/a", b"kept", qos=QoS.AT_LEAST_ONCE)
            with pytest.raises(ConnectionLost):
                while True:  # after the events buffered before the failure
                    await conn.poll()
            assert conn.statistics().waiting_publishes == 1


async def test_malformed_suback_fails_the_pending_subscribe(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def two_codes(peer: ScriptedPeer) -> None:
        await peer.accept()
        while True:
            packet = await peer.receive()
            if isinstance(packet, Subscribe):
                await peer.send(SubAck(packet.packet_id, (0, 0)))  # one filter, two codes

    broker = FakeBroker(nursery, two_codes)
    with trio.fail_after(30):
        options = MqttOptions("edge", "fake", 1883, transport=broker)  # type: ignore[arg-type]
        async with open_mqtt_connection(options) as conn:
            with pytest.raises(RemoteProtocolError):
                await conn.client.subscribe("edge/#")
            with pytest.raises(RemoteProtocolError):
                while True:  # after the events buffered before the failure
                    await conn.poll()


# ---------------------------------------------------------------- 3. refused in the caller


async def test_disconnect_with_a_forbidden_session_expiry_raises_in_the_caller(
    mosquitto: MosquittoBroker,
) -> None:
    errors: list[BaseException] = []

    async def other_task(client: Any) -> None:
        try:
            await client.disconnect(properties=Properties(session_expiry_interval=5))
        except LocalProtocolError as exc:
            errors.append(exc)

    with trio.fail_after(10):
        options = options_for(mosquitto, "expiry", protocol_version=ProtocolVersion.V5)
        async with open_mqtt_connection(options) as conn:
            with pytest.raises(LocalProtocolError, match="session expiry"):
                await conn.client.disconnect(properties=Properties(session_expiry_interval=5))
            with pytest.raises(LocalProtocolError):
                conn.client.disconnect_nowait(properties=Properties(session_expiry_interval=5))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(other_task, conn.client.clone())
            assert len(errors) == 1
            # the connection is left as it was
            assert conn.connected
            await conn.client.subscribe("expiry/#", QoS.AT_LEAST_ONCE)
            await conn.client.publish("expiry/a", b"still here", qos=QoS.AT_LEAST_ONCE)
            async for message in conn.messages():
                assert message.payload == b"still here"
                break


# ---------------------------------------------------------------- 4. stray acks


async def test_a_stray_puback_is_counted_and_the_session_goes_on(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from trio_mqtt.sansio import PubAck, PubComp

    async def stray_then_serve(peer: ScriptedPeer) -> None:
        await peer.accept()
        await peer.send(PubAck(500), PubComp(501))
        while True:
            packet = await peer.receive()
            if isinstance(packet, Publish) and packet.qos == 1:
                await peer.send(PubAck(packet.packet_id))

    broker = FakeBroker(nursery, stray_then_serve)
    with trio.fail_after(30), caplog.at_level(logging.WARNING, logger="trio_mqtt"):
        options = MqttOptions("edge", "fake", 1883, transport=broker)  # type: ignore[arg-type]
        async with open_mqtt_connection(options) as conn:
            tracker = await conn.client.publish_tracked("edge/a", b"x", qos=QoS.AT_LEAST_ONCE)
            assert (await tracker.wait()).packet_id == 1
            stats = conn.statistics()
            assert stats.stray_acks == 2
            assert stats.connects == 1
    assert caplog.text.count("which no flow holds") == 2


# ---------------------------------------------------------------- 5. unread messages


class _Watch(logging.Handler):
    """Sets a Trio event when a record containing ``text`` is logged (in the Trio thread)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = trio.Event()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.messages.append(message)
        if self.text in message:
            self.seen.set()


async def test_a_reader_held_back_over_a_second_logs_what_to_do(
    mosquitto: MosquittoBroker,
) -> None:
    watch = _Watch("paused for over")
    logger = logging.getLogger("trio_mqtt")
    logger.addHandler(watch)
    try:
        await _hold_the_reader_back(mosquitto, watch)
    finally:
        logger.removeHandler(watch)


async def _hold_the_reader_back(mosquitto: MosquittoBroker, watch: _Watch) -> None:
    with trio.fail_after(20):
        async with open_mqtt_connection(
            options_for(mosquitto, "held-back"), event_capacity=5
        ) as conn:
            await conn.client.subscribe("held/#", QoS.AT_LEAST_ONCE)
            for i in range(20):
                await conn.client.publish("held/a", b"%d" % i, qos=QoS.AT_MOST_ONCE)
            await watch.seen.wait()
            assert any("unread messages" in m for m in watch.messages)
            received = []
            async for message in conn.messages():
                received.append(int(message.payload))
                if len(received) == 20:
                    break
            assert received == list(range(20))


def test_sync_publisher_that_never_reads_does_not_freeze(
    mosquitto: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    from trio_mqtt import sync

    caplog.set_level(logging.WARNING, logger="trio_mqtt")
    client, connection = sync.connect(options_for(mosquitto, "never-reads"))
    with connection, client:
        client.subscribe("own/#", QoS.AT_LEAST_ONCE)
        for i in range(5000):  # froze at about message 1,200 before
            client.publish("own/a", b"%d" % i, qos=QoS.AT_LEAST_ONCE)
        tracker = client.publish_tracked("own/a", b"last", qos=QoS.AT_LEAST_ONCE)
        assert tracker.wait(timeout=10).reason_code == 0
        stats = connection.statistics()
        assert stats.dropped_events >= 5000 - 1000 - 300
    assert "incoming messages dropped" in caplog.text


def test_no_internal_exception_group_escapes_a_failed_disconnect(
    mosquitto: MosquittoBroker,
) -> None:
    # the disconnect error used to leave the async with block as an internal task's error
    async def main() -> None:
        options = options_for(mosquitto, "no-group", protocol_version=ProtocolVersion.V5)
        async with open_mqtt_connection(options) as conn:
            with pytest.raises(LocalProtocolError):
                await conn.client.disconnect(properties=Properties(session_expiry_interval=9))

    try:
        trio.run(main)
    except BaseExceptionGroup:  # pragma: no cover - the failure this test is about
        pytest.fail("an ExceptionGroup left open_mqtt_connection")


# ---------------------------------------------------------------- wrong use, said at the call


def test_a_client_built_by_hand_says_where_handles_come_from() -> None:
    from trio_mqtt import Client

    with pytest.raises(TypeError, match="open_mqtt_connection"):
        Client()
    with pytest.raises(TypeError, match=r"conn\.client"):
        Client(object(), object())  # type: ignore[arg-type]


async def test_bytes_topics_and_filters_are_type_errors(mosquitto: MosquittoBroker) -> None:
    with trio.fail_after(10):
        async with open_mqtt_connection(options_for(mosquitto, "bytes-topic")) as conn:
            with pytest.raises(TypeError, match="topic must be a str"):
                await conn.client.publish(b"a/b", b"x")  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="topic must be a str"):
                conn.client.publish_nowait(b"a/b", b"x")  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="must be a str"):
                await conn.client.subscribe(b"a/#")  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="must be a str"):
                await conn.client.unsubscribe(b"a/#")  # type: ignore[arg-type]
            assert conn.connected  # nothing was sent, the connection is untouched
            assert conn.statistics().publishes_sent == 0
