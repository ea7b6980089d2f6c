"""The outgoing rate limit against mosquitto: the rate on the wire, measured over seconds, stays
within the limit (with a tolerance for scheduling); acks and PINGREQ are never held behind it;
publishers feel it as backpressure; statistics() shows the time spent throttled. The back-off on
a PUBREC 0x97 (quota exceeded) uses a scripted broker: mosquitto never sends one.
"""

from __future__ import annotations

import itertools

import pytest
import trio
import trio.testing
from fake_broker import FakeBroker, ScriptedPeer  # tests/ is on sys.path under pytest

from trio_mqtt import (
    Incoming,
    MqttOptions,
    Outgoing,
    Publish,
    QoS,
    ReconnectPolicy,
    Throttle,
    open_mqtt_connection,
)
from trio_mqtt.sansio import PingReq, PubAck, PubComp, PubRec, PubRel
from trio_mqtt.testing import MosquittoBroker, open_fault_proxy

RATE = 40.0  # messages per second
COUNT = 100  # about 2.4 s at that rate


async def _receive_times(conn: object, count: int) -> list[float]:
    times: list[float] = []
    async for _ in conn.messages():  # type: ignore[attr-defined]
        times.append(trio.current_time())
        if len(times) == count:
            return times
    return times


async def test_the_message_rate_on_the_wire_stays_within_the_limit(
    mosquitto: MosquittoBroker,
) -> None:
    throttle = Throttle(messages_per_second=RATE, burst=0.1)  # 4 at once
    options = MqttOptions("throttled", mosquitto.host, mosquitto.port, throttle=throttle)
    sub_options = MqttOptions("throttled-sub", mosquitto.host, mosquitto.port)
    with trio.fail_after(30):
        async with (
            open_mqtt_connection(sub_options) as sub,
            open_mqtt_connection(options) as conn,
        ):
            await sub.client.subscribe("throttle/#", QoS.AT_LEAST_ONCE)
            waiting: list[int] = []
            async with trio.open_nursery() as nursery:
                got: list[float] = []

                async def receive() -> None:
                    got.extend(await _receive_times(sub, COUNT))

                nursery.start_soon(receive)
                started = trio.current_time()
                for n in range(COUNT):
                    await conn.client.publish("throttle/n", str(n).encode(), qos=QoS.AT_LEAST_ONCE)
                    waiting.append(conn.statistics().waiting_publishes)
            stats = conn.statistics()
    elapsed = got[-1] - started
    ideal = (COUNT - RATE * 0.1) / RATE  # the burst goes at once, the rest at the rate
    assert elapsed >= ideal * 0.95  # never faster than the limit
    assert elapsed <= ideal * 2.5  # and not much slower (a loaded machine gets slack)
    assert max(waiting) <= options.inflight  # publishers waited: backpressure, not a queue
    assert stats.throttled_time > ideal * 0.5


async def test_the_byte_rate_on_the_wire_stays_within_the_limit(
    mosquitto: MosquittoBroker,
) -> None:
    payload = b"x" * 1000
    throttle = Throttle(bytes_per_second=40_000, burst=0.05)
    options = MqttOptions("throttled-bytes", mosquitto.host, mosquitto.port, throttle=throttle)
    sub_options = MqttOptions("throttled-bytes-sub", mosquitto.host, mosquitto.port)
    count = 80  # about 80 kB: 2 s
    with trio.fail_after(30):
        async with (
            open_mqtt_connection(sub_options) as sub,
            open_mqtt_connection(options) as conn,
        ):
            await sub.client.subscribe("throttle-bytes/#", QoS.AT_MOST_ONCE)
            started = trio.current_time()
            for _ in range(count):
                await conn.client.publish("throttle-bytes/n", payload)
            times = await _receive_times(sub, count)
    elapsed = times[-1] - started
    size = len(payload) + len("throttle-bytes/n") + 4  # each PUBLISH on the wire
    ideal = (count * size - 2000) / 40_000
    assert ideal * 0.9 <= elapsed <= ideal * 2.5


async def test_acks_and_pings_are_not_held_behind_the_limit(mosquitto: MosquittoBroker) -> None:
    # one publish every 4 s: the link is quiet for longer than the keep alive in between
    throttle = Throttle(messages_per_second=0.25, burst=4)
    options = MqttOptions(
        "throttled-acks", mosquitto.host, mosquitto.port, keep_alive=1, throttle=throttle
    )
    pub_options = MqttOptions("throttled-acks-pub", mosquitto.host, mosquitto.port)
    delays: list[float] = []
    written: list[float] = []
    pings = 0
    with trio.fail_after(20):
        async with (
            open_mqtt_connection(options) as conn,
            open_mqtt_connection(pub_options) as pub,
        ):
            await conn.client.subscribe("acks/in", QoS.AT_LEAST_ONCE)
            for n in range(30):
                conn.client.publish_nowait("acks/out", str(n), qos=QoS.AT_LEAST_ONCE)
            arrived: dict[int, float] = {}
            for n in range(3):
                await pub.client.publish("acks/in", str(n), qos=QoS.AT_LEAST_ONCE)
            while len(delays) < 3 or pings < 2:
                event = await conn.poll()
                packet = getattr(event, "packet", None)
                if isinstance(event, Outgoing):
                    written.append(trio.current_time())
                if isinstance(event, Incoming) and isinstance(packet, Publish):
                    arrived[packet.packet_id] = trio.current_time()
                elif isinstance(event, Outgoing) and isinstance(packet, PubAck):
                    delays.append(trio.current_time() - arrived[packet.packet_id])
                elif isinstance(event, Outgoing) and isinstance(packet, PingReq):
                    pings += 1
            stats = conn.statistics()
            assert stats.waiting_publishes > 0  # the limit still holds publishes back
    assert max(delays) < 1.0  # the acks did not wait behind seconds of throttled publishes
    assert pings >= 2
    # the link never went quiet for much longer than the keep alive: each PINGREQ went out on
    # time, while the next throttled publish was up to 4 s away
    assert max(b - a for a, b in itertools.pairwise(written)) < 1.6


async def test_replays_after_a_reconnect_go_at_the_limit(mosquitto: MosquittoBroker) -> None:
    # The broker gets every publish but its PUBACKs are held back; the link is cut, and the
    # resumed session sends all of them again (DUP): at the limit, not in one burst.
    count = 30
    throttle = Throttle(messages_per_second=RATE, burst=0.1)
    replayed: list[float] = []
    acked: list[float] = []
    with trio.fail_after(30):
        async with open_fault_proxy(mosquitto.host, mosquitto.port) as proxy:
            options = MqttOptions(
                "throttled-replay",
                proxy.host,
                proxy.port,
                clean_start=False,
                reconnect=ReconnectPolicy(initial_delay=0.05, max_delay=0.2),
                throttle=throttle,
            )
            async with open_mqtt_connection(options) as conn:
                proxy.blackhole(up=False)  # the broker's answers stay in the proxy
                for n in range(count):
                    await conn.client.publish("throttle-replay/n", str(n), qos=QoS.AT_LEAST_ONCE)
                sent = 0
                while sent < count:
                    event = await conn.poll()
                    if isinstance(event, Outgoing) and isinstance(event.packet, Publish):
                        sent += 1
                assert conn.statistics().inflight == count
                proxy.cut()
                proxy.restore()
                while len(acked) < count:
                    event = await conn.poll()
                    packet = getattr(event, "packet", None)
                    if isinstance(event, Outgoing) and isinstance(packet, Publish):
                        assert packet.dup
                        replayed.append(trio.current_time())
                    elif isinstance(event, Incoming) and isinstance(packet, PubAck):
                        acked.append(trio.current_time())
                stats = conn.statistics()
    assert len(replayed) == count
    assert stats.connects == 2
    assert stats.inflight == 0
    ideal = (count - RATE * 0.1) / RATE  # the burst at once, the rest at the rate
    for times in (replayed, acked):  # what we wrote, and what the broker answered
        elapsed = times[-1] - times[0]
        assert ideal * 0.9 <= elapsed <= ideal * 2.5


@pytest.mark.parametrize("first_code", [0x97, 0x00])
async def test_a_quota_exceeded_pubrec_slows_the_wire_rate(
    autojump_clock: trio.testing.MockClock, first_code: int
) -> None:
    # mosquitto never answers PUBREC 0x97, so a scripted MQTT 5 broker does: the first QoS 2
    # publish gets ``first_code``, every later one goes through
    async def answer(peer: ScriptedPeer) -> None:
        await peer.accept()
        code = first_code
        while True:
            packet = await peer.receive()
            if isinstance(packet, Publish):
                await peer.send(PubRec(packet.packet_id, code))
                code = 0
            elif isinstance(packet, PubRel):
                await peer.send(PubComp(packet.packet_id))

    throttle = Throttle(messages_per_second=10, burst=0.1)  # one at a time, every 0.1 s
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            broker = FakeBroker(nursery, answer)
            options = MqttOptions(
                "quota", transport=broker, protocol_version=5, keep_alive=0, throttle=throttle
            )
            async with open_mqtt_connection(options) as conn:
                tracker = await conn.client.publish_tracked("q", b"0", qos=QoS.EXACTLY_ONCE)
                assert (await tracker.wait()).reason_code == first_code
                for n in range(1, 6):
                    tracker = await conn.client.publish_tracked(
                        "q", str(n).encode(), qos=QoS.EXACTLY_ONCE
                    )
                await tracker.wait()  # the last one: every publish went out before it
            nursery.cancel_scope.cancel()
    (peer,) = broker.peers
    times = [t for t, p in peer.received if isinstance(p, Publish)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) == 5
    if first_code == 0x97:
        # halved to 5 messages/s, then recovering by a quarter a second: 0.19 s down to 0.17 s
        assert min(gaps) > 0.16
        assert gaps == sorted(gaps, reverse=True)
    else:
        assert max(gaps) < 0.11  # the configured 10 messages/s
