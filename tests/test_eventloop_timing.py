"""Event-loop behaviour in time, against a scripted in-memory broker and Trio's autojump clock.

These are rumqttc's reliability scenarios (silent server, pings when idle or one-way busy,
half-open links, reconnect after a refusal, resumption order) plus backpressure cases. A real
broker cannot be made to misbehave on cue, so these use tests/fake_broker.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing
from fake_broker import FakeBroker, ScriptedPeer  # tests/ is on sys.path under pytest

from trio_mqtt import (
    ConnectionLost,
    ConnectionRefused,
    ConnectTimeout,
    Incoming,
    KeepAliveTimeout,
    MqttOptions,
    Publish,
    QoS,
    Reconnecting,
    ReconnectPolicy,
    SubscriptionRefused,
    open_mqtt_connection,
)
from trio_mqtt.sansio import ConnAck, PingReq, PingResp, PubAck, SubAck, Subscribe

Handler = Callable[[ScriptedPeer], Awaitable[None]]


def fake_options(broker: FakeBroker, **kwargs: object) -> MqttOptions:
    return MqttOptions("fake", "fake-host", 1883, transport=broker, **kwargs)  # type: ignore[arg-type]


async def answer_pings(peer: ScriptedPeer) -> None:
    """Serve one connection: CONNACK, then answer every PINGREQ until the client leaves."""
    await peer.accept()
    while True:
        packet = await peer.receive()
        if isinstance(packet, PingReq):
            await peer.send(PingResp())


def ping_times(peer: ScriptedPeer) -> list[float]:
    return [t for t, p in peer.received if isinstance(p, PingReq)]


async def test_silent_server_times_out(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def silent(peer: ScriptedPeer) -> None:
        await trio.sleep_forever()

    broker = FakeBroker(nursery, silent)
    start = trio.current_time()
    with trio.fail_after(60), pytest.raises(ConnectTimeout):
        async with open_mqtt_connection(fake_options(broker, connect_timeout=3)):
            pass  # pragma: no cover
    assert trio.current_time() - start == pytest.approx(3, abs=0.01)


async def test_pings_on_time_when_idle(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    broker = FakeBroker(nursery, answer_pings)
    with trio.fail_after(100):
        async with open_mqtt_connection(fake_options(broker, keep_alive=10)):
            start = trio.current_time()
            await trio.sleep(35)
    times = [t - start for t in ping_times(broker.peers[0])]
    assert times == pytest.approx([10, 20, 30], abs=0.01)


async def test_pings_when_only_incoming_traffic_flows(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def chatty(peer: ScriptedPeer) -> None:
        await peer.accept()

        async def publish_every_second() -> None:
            for i in range(25):
                await peer.send(Publish("chat", str(i).encode()))
                await trio.sleep(1)

        async with trio.open_nursery() as inner:
            inner.start_soon(publish_every_second)
            while True:
                if isinstance(await peer.receive(), PingReq):
                    await peer.send(PingResp())

    broker = FakeBroker(nursery, chatty)
    with trio.fail_after(100):
        async with open_mqtt_connection(fake_options(broker, keep_alive=10)) as conn:
            start = trio.current_time()
            received = 0
            async for _message in conn.messages():
                received += 1
                if received == 25:
                    break
    assert [t - start for t in ping_times(broker.peers[0])] == pytest.approx([10, 20], abs=0.01)


async def test_pings_on_time_when_only_outgoing_traffic_flows(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    # rumqttc's "some outgoing and no incoming packets should trigger pings on time": QoS 0
    # publishes get no answer, so the keep alive probes the link although we keep sending
    broker = FakeBroker(nursery, answer_pings)
    with trio.fail_after(100):
        async with open_mqtt_connection(fake_options(broker, keep_alive=10)) as conn:
            start = trio.current_time()
            for i in range(35):
                await conn.client.publish("out", str(i))
                await trio.sleep(1)
    peer = broker.peers[0]
    assert [t - start for t in ping_times(peer)] == pytest.approx([10, 20, 30], abs=0.01)
    assert sum(isinstance(p, Publish) for _, p in peer.received) == 35


async def test_half_open_noticed_while_publishing_qos0(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def black_hole(peer: ScriptedPeer) -> None:
        await peer.accept()
        while True:
            await peer.receive()  # reads everything, answers nothing

    broker = FakeBroker(nursery, black_hole)
    with trio.fail_after(100):
        options = fake_options(broker, keep_alive=10, ping_timeout=4)
        async with open_mqtt_connection(options) as conn:
            start = trio.current_time()

            async def publish_forever() -> None:
                while True:
                    await conn.client.publish("out", b"x")
                    await trio.sleep(1)

            async with trio.open_nursery() as publishers:
                publishers.start_soon(publish_forever)
                with pytest.raises(KeepAliveTimeout):
                    while True:
                        await conn.poll()
                publishers.cancel_scope.cancel()
            # keep_alive + ping_timeout after the broker went silent (its CONNACK)
            assert trio.current_time() - start == pytest.approx(14, abs=0.01)


async def test_missing_pingresp_is_a_dead_link(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def never_pong(peer: ScriptedPeer) -> None:
        await peer.accept()
        while True:
            await peer.receive()

    broker = FakeBroker(nursery, never_pong)
    with trio.fail_after(100):
        options = fake_options(broker, keep_alive=10, ping_timeout=4)
        async with open_mqtt_connection(options) as conn:
            start = trio.current_time()
            with pytest.raises(KeepAliveTimeout):
                while True:
                    await conn.poll()
            # noticed within keep_alive + ping_timeout of the last packet we sent
            assert trio.current_time() - start == pytest.approx(14, abs=0.01)
            assert not conn.connected


async def test_next_poll_after_refused_reconnect_tries_again(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def script(peer: ScriptedPeer) -> None:
        if peer.index == 0:
            await peer.accept()
            await peer.close()  # drop the first connection
        elif peer.index == 1:
            await peer.receive()
            await peer.send(ConnAck(reason_code=3))  # server unavailable
        else:
            await answer_pings(peer)

    broker = FakeBroker(nursery, script)
    with trio.fail_after(30):
        async with open_mqtt_connection(fake_options(broker)) as conn:
            with pytest.raises(ConnectionLost):
                while True:
                    await conn.poll()
            with pytest.raises(ConnectionRefused) as info:
                while True:
                    await conn.poll()
            assert info.value.reason_code == 3
            while not (
                isinstance(event := await conn.poll(), Incoming)
                and isinstance(event.packet, ConnAck)
            ):
                pass
            assert conn.connected
    assert len(broker.peers) == 3


async def test_reconnect_policy_backs_off_and_reports_attempts(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def script(peer: ScriptedPeer) -> None:
        if peer.index == 0:
            await peer.accept()
            await peer.close()
        elif peer.index in (1, 2):
            await peer.receive()
            await peer.send(ConnAck(reason_code=3))
        else:
            await answer_pings(peer)

    broker = FakeBroker(nursery, script)
    policy = ReconnectPolicy(initial_delay=1, max_delay=10, multiplier=2, jitter=0)
    with trio.fail_after(60):
        async with open_mqtt_connection(fake_options(broker, reconnect=policy)) as conn:
            delays = []
            connacks = 0
            async for event in conn:
                if isinstance(event, Reconnecting):
                    delays.append(event.delay)
                if (
                    isinstance(event, Incoming)
                    and isinstance(event.packet, ConnAck)
                    and event.packet.reason_code == 0
                ):
                    connacks += 1
                    if connacks == 2:
                        break
    assert delays == [1, 2, 4]
    assert len(broker.peers) == 4


async def test_first_connection_retries_back_off_from_the_initial_delay(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def script(peer: ScriptedPeer) -> None:
        if peer.index < 3:
            await peer.receive()
            await peer.send(ConnAck(reason_code=3))
        else:
            await answer_pings(peer)

    broker = FakeBroker(nursery, script)
    policy = ReconnectPolicy(initial_delay=1, max_delay=10, multiplier=2, jitter=0)
    start = trio.current_time()
    with trio.fail_after(60):
        async with open_mqtt_connection(fake_options(broker, reconnect=policy)) as conn:
            connected_after = trio.current_time() - start
            reports = []
            while True:
                event = conn.poll_nowait()
                if isinstance(event, Reconnecting):
                    reports.append((event.attempt, event.delay))
                if (
                    isinstance(event, Incoming)
                    and isinstance(event.packet, ConnAck)
                    and event.packet.reason_code == 0
                ):
                    break
    # three refusals, then retries after 1, 2 and 4 s, numbered 1, 2, 3
    assert reports == [(1, 1), (2, 2), (3, 4)]
    assert connected_after == pytest.approx(7, abs=0.01)
    assert len(broker.peers) == 4


@pytest.mark.parametrize("lost_first", [False, True])
async def test_max_attempts_gives_up_with_the_last_error(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, lost_first: bool
) -> None:
    async def script(peer: ScriptedPeer) -> None:
        if lost_first and peer.index == 0:
            await peer.accept()
            await peer.close()
            return
        await peer.receive()
        await peer.send(ConnAck(reason_code=3))

    broker = FakeBroker(nursery, script)
    policy = ReconnectPolicy(initial_delay=1, multiplier=2, jitter=0, max_attempts=3)
    options = fake_options(broker, reconnect=policy)
    with trio.fail_after(60), pytest.raises(ConnectionRefused) as info:
        async with open_mqtt_connection(options) as conn:
            while True:
                await conn.poll()
    assert info.value.reason_code == 3
    # three consecutive failed attempts, then the error (after the first connection: three
    # reconnect attempts after it was lost)
    assert len(broker.peers) == (4 if lost_first else 3)


async def test_unacknowledged_publishes_are_resent_first_with_dup(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    resumed: list[Publish] = []
    done = trio.Event()

    async def script(peer: ScriptedPeer) -> None:
        if peer.index == 0:
            await peer.accept()
            for _ in range(3):
                await peer.receive()  # three QoS 1 publishes, never acked
            await peer.close()
            return
        await peer.accept(session_present=True)
        while True:
            packet = await peer.receive()
            if isinstance(packet, Publish):
                resumed.append(packet)
                await peer.send(PubAck(packet.packet_id))
                if len(resumed) == 4:
                    done.set()

    broker = FakeBroker(nursery, script)
    with trio.fail_after(30):
        options = fake_options(broker, clean_start=False)
        async with open_mqtt_connection(options) as conn:
            for i in range(3):
                await conn.client.publish("resume", f"old{i}", qos=QoS.AT_LEAST_ONCE)
            with pytest.raises(ConnectionLost):
                while True:
                    await conn.poll()
            await conn.client.publish("resume", b"new", qos=QoS.AT_LEAST_ONCE)
            conn.reconnect()
            await done.wait()
    assert [p.payload for p in resumed] == [b"old0", b"old1", b"old2", b"new"]
    assert [p.dup for p in resumed] == [True, True, True, False]
    assert len({p.packet_id for p in resumed}) == 4


async def test_refused_subscription_raises_typed_error(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def refuse(peer: ScriptedPeer) -> None:
        await peer.accept()
        while True:
            packet = await peer.receive()
            if isinstance(packet, Subscribe):
                await peer.send(SubAck(packet.packet_id, (0x80,)))

    broker = FakeBroker(nursery, refuse)
    with trio.fail_after(10):
        async with open_mqtt_connection(fake_options(broker)) as conn:
            with pytest.raises(SubscriptionRefused) as info:
                await conn.client.subscribe("nope/#", QoS.AT_LEAST_ONCE)
            assert info.value.result.reason_codes == (0x80,)
            assert conn.connected


async def test_full_window_blocks_publishers_until_acks_arrive(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    release = trio.Event()

    async def slow_acks(peer: ScriptedPeer) -> None:
        await peer.accept()
        held: list[int] = []
        held_changed = trio.Event()

        async def ack_after_release() -> None:
            nonlocal held_changed
            await release.wait()
            while True:
                for packet_id in held:
                    await peer.send(PubAck(packet_id))
                held.clear()
                await held_changed.wait()
                held_changed = trio.Event()

        async with trio.open_nursery() as inner:
            inner.start_soon(ack_after_release)
            while True:
                packet = await peer.receive()
                if isinstance(packet, Publish):
                    held.append(packet.packet_id)
                    held_changed.set()
                elif isinstance(packet, Subscribe):
                    await peer.send(SubAck(packet.packet_id, (0,)))

    broker = FakeBroker(nursery, slow_acks)
    with trio.fail_after(60):
        options = fake_options(broker, inflight=2, request_capacity=1)
        async with open_mqtt_connection(options) as conn:
            sent = 0
            with trio.move_on_after(5):
                while True:
                    await conn.client.publish("w", str(sent), qos=QoS.AT_LEAST_ONCE)
                    sent += 1
            assert conn.statistics().inflight == 2
            # window (2) + the state machine's waiting queue (2); the next publisher parks
            assert sent == 4
            assert conn.statistics().queued_requests == 0  # the parked one was cancelled
            assert conn.statistics().waiting_publishes == 2
            # a subscribe is not held back by the full publish window
            result = await conn.client.subscribe_many(["x"])
            assert result.reason_codes == (0,)
            assert conn.statistics().inflight == 2
            release.set()
            for i in range(5):
                await conn.client.publish("w", f"more{i}", qos=QoS.AT_LEAST_ONCE)
    assert sum(isinstance(p, Publish) for _, p in broker.peers[0].received) == sent + 5


async def test_slow_consumer_is_not_a_dead_link(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def flood(peer: ScriptedPeer) -> None:
        await peer.accept()

        async def publish_many() -> None:
            for i in range(200):
                await peer.send(Publish("flood", str(i).encode()))

        async with trio.open_nursery() as inner:
            inner.start_soon(publish_many)
            while True:
                if isinstance(await peer.receive(), PingReq):
                    await peer.send(PingResp())

    broker = FakeBroker(nursery, flood)
    with trio.fail_after(200):
        options = fake_options(broker, keep_alive=5, ping_timeout=2)
        async with open_mqtt_connection(options, event_capacity=10) as conn:
            received = 0
            await conn.poll()  # start consuming, then stall far longer than the keep alive
            await trio.sleep(60)
            async for _message in conn.messages():
                received += 1
                if received == 200:
                    break
            assert conn.connected
            assert conn.statistics().connects == 1
