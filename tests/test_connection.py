"""The Trio connection against a real mosquitto: requests, events, routes, shutdown."""

from __future__ import annotations

import pytest
import trio
from broker_clients import options_for

from trio_mqtt import (
    ConnectionClosed,
    ConnectionRefused,
    Incoming,
    InvalidTopicError,
    MqttError,
    Outgoing,
    ProtocolVersion,
    Publish,
    QoS,
    RequestsDone,
    UnknownPacketIdError,
    open_mqtt_connection,
)
from trio_mqtt.sansio import ConnAck, PacketType
from trio_mqtt.testing import MosquittoBroker

VERSIONS = [ProtocolVersion.V311, ProtocolVersion.V5]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("qos", [QoS.AT_MOST_ONCE, QoS.AT_LEAST_ONCE, QoS.EXACTLY_ONCE])
async def test_publish_subscribe_round_trip(
    mosquitto: MosquittoBroker, version: ProtocolVersion, qos: QoS
) -> None:
    with trio.fail_after(10):
        options = options_for(mosquitto, f"rt-{version}-{qos}", protocol_version=version)
        async with open_mqtt_connection(options) as conn:
            result = await conn.client.subscribe("rt/+/x", qos)
            assert result.reason_codes == (qos,)
            for i in range(5):
                await conn.client.publish(f"rt/{i}/x", f"m{i}", qos=qos)
            received = []
            async for message in conn.messages():
                received.append(message)
                if len(received) == 5:
                    break
        assert [m.payload for m in received] == [f"m{i}".encode() for i in range(5)]
        assert [m.topic for m in received] == [f"rt/{i}/x" for i in range(5)]
        assert {m.qos for m in received} == {qos}


@pytest.mark.parametrize("version", VERSIONS)
async def test_events_report_incoming_and_outgoing(
    mosquitto: MosquittoBroker, version: ProtocolVersion
) -> None:
    with trio.fail_after(10):
        options = options_for(mosquitto, "events", protocol_version=version)
        async with open_mqtt_connection(options) as conn:
            await conn.client.subscribe("ev", QoS.AT_LEAST_ONCE)
            await conn.client.publish("ev", b"x", qos=QoS.AT_LEAST_ONCE)
            seen: list[object] = []
            async for event in conn:
                seen.append(event)
                if isinstance(event, Incoming) and isinstance(event.packet, Publish):
                    break
        kinds = [
            (type(e).__name__, e.type if isinstance(e, Outgoing) else type(e.packet).__name__)
            for e in seen
            if isinstance(e, Incoming | Outgoing)
        ]
        assert ("Outgoing", PacketType.CONNECT) in kinds
        assert ("Incoming", "ConnAck") in kinds
        assert ("Outgoing", PacketType.SUBSCRIBE) in kinds
        assert ("Outgoing", PacketType.PUBLISH) in kinds
        assert isinstance(seen[1], Incoming)
        assert isinstance(seen[1].packet, ConnAck)


@pytest.mark.parametrize("version", VERSIONS)
async def test_tracked_publish_reports_acknowledgement(
    mosquitto: MosquittoBroker, version: ProtocolVersion
) -> None:
    with trio.fail_after(10):
        options = options_for(mosquitto, "tracked", protocol_version=version)
        async with open_mqtt_connection(options) as conn:
            for qos in QoS:
                tracker = await conn.client.publish_tracked("tracked/t", b"x", qos=qos)
                result = await tracker.wait()
                assert result.is_success
                assert (result.packet_id == 0) == (qos == QoS.AT_MOST_ONCE)


async def test_requests_done_when_every_handle_is_closed(mosquitto: MosquittoBroker) -> None:
    with trio.fail_after(10):
        async with open_mqtt_connection(options_for(mosquitto, "done")) as conn:
            other = conn.client.clone()
            await conn.client.aclose()
            await other.publish("done/t", b"last", qos=QoS.AT_LEAST_ONCE)
            await other.aclose()
            events = [event async for event in conn]
            assert any(isinstance(e, Outgoing) and e.type is PacketType.PUBLISH for e in events)
            with pytest.raises(RequestsDone):
                await conn.poll()


async def test_user_exception_passes_through_unchanged(mosquitto: MosquittoBroker) -> None:
    class Boom(Exception):
        pass

    with trio.fail_after(10), pytest.raises(Boom):
        async with open_mqtt_connection(options_for(mosquitto, "boom")):
            raise Boom


async def test_cancelling_the_enclosing_scope_closes_quietly(mosquitto: MosquittoBroker) -> None:
    with trio.fail_after(10):
        with trio.CancelScope() as scope:
            async with open_mqtt_connection(options_for(mosquitto, "cancel")) as conn:
                await conn.client.subscribe("c", QoS.AT_LEAST_ONCE)
                scope.cancel()
                await trio.sleep_forever()
        assert scope.cancelled_caught
        assert not conn.connected
        leftover = [event async for event in conn]  # buffered events, then a clean end
        assert any(isinstance(e, Incoming) for e in leftover)
        with pytest.raises(ConnectionClosed):
            await conn.poll()


async def test_refused_login_raises_connection_refused(
    mosquitto_factory: object,
) -> None:
    broker = mosquitto_factory(users={"alice": "secret"})  # type: ignore[operator]
    with trio.fail_after(10):
        options = options_for(broker, "login", username="alice", password="wrong")
        with pytest.raises(ConnectionRefused) as info:
            async with open_mqtt_connection(options):
                pass  # pragma: no cover
        # mosquitto answers 5 (not authorized), the embedded broker 4 (bad user name or
        # password): MQTT 3.1.1 allows either for a wrong password.
        assert info.value.reason_code in (4, 5)
        good = options.replace(password="secret")
        async with open_mqtt_connection(good) as conn:
            assert conn.connected


async def test_invalid_topic_raises_at_the_call_site(mosquitto: MosquittoBroker) -> None:
    with trio.fail_after(10):
        async with open_mqtt_connection(options_for(mosquitto, "invalid")) as conn:
            with pytest.raises(InvalidTopicError):
                await conn.client.publish("a/+/b", b"x")
            with pytest.raises(InvalidTopicError):
                await conn.client.subscribe("a/#/b")
            assert conn.connected


async def test_routes_dispatch_to_child_tasks(mosquitto: MosquittoBroker) -> None:
    with trio.fail_after(10):
        async with open_mqtt_connection(options_for(mosquitto, "routes")) as conn:
            temps: list[str] = []
            everything: list[str] = []
            async with (
                conn.route("sensors/+/temp", qos=QoS.AT_LEAST_ONCE) as temp_messages,
                conn.route("sensors/#", qos=QoS.AT_LEAST_ONCE) as all_messages,
                trio.open_nursery() as nursery,
            ):

                async def collect(stream: object, into: list[str], count: int) -> None:
                    async for message in stream:  # type: ignore[attr-defined]
                        into.append(message.topic)
                        if len(into) == count:
                            return

                nursery.start_soon(collect, temp_messages, temps, 2)
                nursery.start_soon(collect, all_messages, everything, 3)
                await conn.client.publish("sensors/a/temp", b"1", qos=QoS.AT_LEAST_ONCE)
                await conn.client.publish("sensors/a/humidity", b"2", qos=QoS.AT_LEAST_ONCE)
                await conn.client.publish("sensors/b/temp", b"3", qos=QoS.AT_LEAST_ONCE)
                await conn.client.publish("other", b"4", qos=QoS.AT_LEAST_ONCE)
            assert temps == ["sensors/a/temp", "sensors/b/temp"]
            assert everything == ["sensors/a/temp", "sensors/a/humidity", "sensors/b/temp"]


async def test_no_exception_group_escapes_internal_failure(mosquitto: MosquittoBroker) -> None:
    with trio.fail_after(10):
        async with open_mqtt_connection(options_for(mosquitto, "stopper")) as conn:
            await conn.client.subscribe("s", QoS.AT_LEAST_ONCE)
            await trio.to_thread.run_sync(mosquitto.stop)
            error: BaseException | None = None
            try:
                while True:
                    await conn.poll()
            except BaseException as exc:
                error = exc
            assert isinstance(error, MqttError)
            assert type(error).__name__ != "ExceptionGroup"


async def test_poll_nowait_returns_buffered_events_only(mosquitto: MosquittoBroker) -> None:
    with trio.fail_after(10):
        async with open_mqtt_connection(options_for(mosquitto, "nowait")) as conn:
            first = conn.poll_nowait()  # CONNECT went out before the block was entered
            assert isinstance(first, Outgoing)
            while True:
                try:
                    conn.poll_nowait()
                except trio.WouldBlock:
                    break
            await conn.client.publish("nowait/t", b"x")
            assert isinstance(conn.poll_nowait(), Outgoing)


async def test_an_event_read_sees_a_publish_made_in_the_same_step(
    mosquitto: MosquittoBroker,
) -> None:
    # an untracked publish leaves its Outgoing event for the writer; a read that comes before
    # the writer's step must still see it (no checkpoint between the two calls here)
    with trio.fail_after(10):
        async with open_mqtt_connection(options_for(mosquitto, "same-step")) as conn:
            while True:
                try:
                    conn.poll_nowait()
                except trio.WouldBlock:
                    break
            conn.client.publish_nowait("same/step", b"x")
            event = conn.poll_nowait()
            assert isinstance(event, Outgoing)
            assert isinstance(event.packet, Publish)
            assert event.packet.topic == "same/step"


@pytest.mark.parametrize("version", VERSIONS)
async def test_manual_acks_control_redelivery(
    mosquitto: MosquittoBroker, version: ProtocolVersion
) -> None:
    with trio.fail_after(15):
        session = {"clean_start": False, "protocol_version": version}
        if version is ProtocolVersion.V5:
            session["session_expiry_interval"] = 60
        sub_options = options_for(mosquitto, "manual", manual_acks=True, **session)
        async with open_mqtt_connection(sub_options) as conn:
            await conn.client.subscribe("manual/t", QoS.AT_LEAST_ONCE)
        async with open_mqtt_connection(options_for(mosquitto, "manual-pub")) as pub:
            await pub.client.publish("manual/t", b"one", qos=QoS.AT_LEAST_ONCE)
        # receive without acking, then leave: the broker keeps the message unacknowledged
        async with open_mqtt_connection(sub_options) as conn:
            first = await conn.messages().__anext__()
            assert first.payload == b"one"
            assert not first.dup
            with pytest.raises(UnknownPacketIdError):
                await conn.client.ack(first.packet_id % 65535 + 1)
        async with open_mqtt_connection(sub_options) as conn:
            again = await conn.messages().__anext__()
            assert again.payload == b"one"
            assert again.dup
            await conn.client.ack(again)
            with pytest.raises(UnknownPacketIdError):
                await conn.client.ack(again)
        async with open_mqtt_connection(sub_options) as conn:
            with trio.move_on_after(0.5):
                message = await conn.messages().__anext__()
                pytest.fail(f"acked message was delivered again: {message}")


async def test_statistics_count_traffic(mosquitto: MosquittoBroker) -> None:
    with trio.fail_after(10):
        async with open_mqtt_connection(options_for(mosquitto, "stats")) as conn:
            await conn.client.subscribe("stats/t", QoS.AT_LEAST_ONCE)
            for _ in range(3):
                await conn.client.publish("stats/t", b"x", qos=QoS.AT_LEAST_ONCE)
            messages = conn.messages()
            for _ in range(3):
                await messages.__anext__()
            stats = conn.statistics()
    assert stats.connects == 1
    assert stats.publishes_sent == 3
    assert stats.publishes_received == 3
    # CONNECT, SUBSCRIBE, 3 PUBLISH, and a PUBACK for each received message
    assert stats.packets_sent >= 8
    assert stats.bytes_sent > 0
    assert stats.bytes_received > 0
    assert stats.retransmissions == stats.duplicates_suppressed == stats.sessions_lost == 0


async def test_cancelled_publishers_leave_a_consistent_session(mosquitto: MosquittoBroker) -> None:
    """Publishers cancelled at random points: every admitted publish completes, none is lost
    or doubled, and the window and packet ids are free again afterwards."""
    import random

    rng = random.Random(7)
    admitted: list[int] = []
    with trio.fail_after(20):
        options = options_for(mosquitto, "cancel-pub", inflight=5, request_capacity=2)
        async with open_mqtt_connection(options) as conn:
            await conn.client.subscribe("cancel/t", QoS.AT_LEAST_ONCE)

            async def publisher(base: int) -> None:
                client = conn.client.clone()
                for i in range(200):
                    with trio.move_on_after(rng.choice([0, 0.0001, 0.001, 1])):
                        await client.publish("cancel/t", str(base + i), qos=rng.choice([1, 2]))
                        admitted.append(base + i)
                client.close()

            async with trio.open_nursery() as nursery:
                for base in range(0, 4000, 1000):
                    nursery.start_soon(publisher, base)
            received: list[int] = []
            messages = conn.messages()
            with trio.move_on_after(3):
                while len(received) < len(admitted):
                    received.append(int((await messages.__anext__()).payload))
            # the session still works
            await conn.client.publish("cancel/t", b"after", qos=QoS.EXACTLY_ONCE)
            assert (await messages.__anext__()).payload == b"after"
            # a graceful disconnect waits for the last acks (a broker may deliver a message
            # to the subscriber before it acknowledges it to the publisher): then every flow
            # is finished and the window is free
            await conn.client.disconnect(grace_period=5)
            stats = conn.statistics()
            assert stats.inflight == 0
            assert stats.waiting_publishes == 0
    assert sorted(received) == sorted(admitted)
    assert 0 < len(admitted) < 800


async def test_subscribe_many_and_nowait_take_a_lone_filter(mosquitto: MosquittoBroker) -> None:
    # a bare string or (filter, qos) pair is one subscription, not a sequence to iterate
    with trio.fail_after(10):
        async with open_mqtt_connection(options_for(mosquitto, "lone-filter")) as conn:
            result = await conn.client.subscribe_many("lone/a")  # type: ignore[arg-type]
            assert result.reason_codes == (0,)
            tracker = conn.client.subscribe_many_nowait(("lone/b", 1))  # type: ignore[arg-type]
            assert (await tracker.wait()).reason_codes == (1,)
            await conn.client.publish("lone/b", b"x", qos=QoS.AT_LEAST_ONCE)
            async for message in conn.messages():
                assert (message.topic, message.qos) == ("lone/b", 1)
                break
