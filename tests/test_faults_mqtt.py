"""Network faults between trio-mqtt and a real mosquitto: half-open links, slow consumers,
and a broker restart that loses the session. Real time, small keep alive values."""

from __future__ import annotations

import pytest
import trio

from trio_mqtt import (
    ConnectionLost,
    Disconnected,
    KeepAliveTimeout,
    MqttOptions,
    ProtocolVersion,
    PublishDropped,
    QoS,
    ReconnectPolicy,
    SessionLost,
    open_mqtt_connection,
)
from trio_mqtt.testing import FaultProxy, MosquittoBroker, open_fault_proxy

FAST_RECONNECT = ReconnectPolicy(initial_delay=0.05, max_delay=0.2)


@pytest.mark.parametrize("version", [ProtocolVersion.V311, ProtocolVersion.V5])
async def test_half_open_link_is_noticed_within_the_bound(
    mosquitto: MosquittoBroker, version: ProtocolVersion
) -> None:
    keep_alive, ping_timeout = 1, 1.0
    with trio.fail_after(20):
        async with open_fault_proxy(mosquitto.host, mosquitto.port) as proxy:
            options = MqttOptions(
                f"half-open-{version}",
                proxy.host,
                proxy.port,
                protocol_version=version,
                keep_alive=keep_alive,
                ping_timeout=ping_timeout,
                reconnect=FAST_RECONNECT,
            )
            async with open_mqtt_connection(options) as conn:
                await conn.client.subscribe("ho", QoS.AT_LEAST_ONCE)  # last packet we send
                last_sent = trio.current_time()
                proxy.blackhole()
                while not isinstance(event := await conn.poll(), Disconnected):
                    pass
                noticed = trio.current_time() - last_sent
                assert isinstance(event.error, KeepAliveTimeout), (event, noticed)
                proxy.restore()
                # It reconnects by itself and works again.
                await conn.client.publish("ho", b"after", qos=QoS.AT_LEAST_ONCE)
                async for message in conn.messages():
                    assert message.payload == b"after"
                    break
                assert conn.statistics().connects == 2
                assert conn.statistics().reconnects == 1
    # MqttOptions.ping_timeout: at most keep_alive + ping_timeout after the last packet sent
    # (plus scheduling slack), and not before a PINGREQ could have gone unanswered.
    assert ping_timeout <= noticed <= keep_alive + ping_timeout + 0.5, noticed


async def test_slow_consumer_is_not_taken_for_a_dead_link(mosquitto: MosquittoBroker) -> None:
    with trio.fail_after(20):
        options = MqttOptions(
            "slow-consumer", mosquitto.host, mosquitto.port, keep_alive=1, ping_timeout=1.0
        )
        sender_options = MqttOptions("slow-sender", mosquitto.host, mosquitto.port)
        async with (
            open_mqtt_connection(options, event_capacity=5) as conn,
            open_mqtt_connection(sender_options) as sender,
        ):
            await conn.client.subscribe("slow", QoS.AT_LEAST_ONCE)
            await conn.poll()  # start consuming, so a full buffer pauses the reader
            for number in range(50):
                await sender.client.publish("slow", str(number), qos=QoS.AT_LEAST_ONCE)
            await trio.sleep(3.5)  # the application is busy for 3.5 keep alive periods
            payloads = []
            async for message in conn.messages():
                payloads.append(int(message.payload))
                if len(payloads) == 50:
                    break
            assert payloads == list(range(50))
            assert conn.connected
            assert conn.statistics().connects == 1
            assert conn.statistics().reconnects == 0


async def _lose_session(
    mosquitto: MosquittoBroker, resend: bool
) -> tuple[list[object], list[bytes], list[object]]:
    """Publish 10 QoS 1 messages into a blackholed link, restart a broker without persistence,
    let the client reconnect; return its events, what a subscriber got, and the tracker results."""
    events: list[object] = []
    got: list[bytes] = []
    outcomes: list[object] = []
    async with open_fault_proxy(mosquitto.host, mosquitto.port) as proxy:
        options = MqttOptions(
            "session-loss",
            proxy.host,
            proxy.port,
            protocol_version=ProtocolVersion.V5,
            clean_start=False,
            session_expiry_interval=600,
            reconnect=FAST_RECONNECT,
            resend_on_session_loss=resend,
        )
        async with open_mqtt_connection(options) as conn:
            proxy.blackhole()
            trackers = [
                await conn.client.publish_tracked("lost", str(n), qos=QoS.AT_LEAST_ONCE)
                for n in range(10)
            ]
            while conn.statistics().inflight < 10:
                await conn.poll()  # the publishes go out into the blackhole
            await trio.to_thread.run_sync(mosquitto.restart)  # persistence off: session gone
            sub_options = MqttOptions("session-loss-sub", mosquitto.host, mosquitto.port)
            async with open_mqtt_connection(sub_options) as sub:
                await sub.client.subscribe("lost", QoS.AT_LEAST_ONCE)
                proxy.cut()
                proxy.restore()
                while not any(isinstance(e, SessionLost) for e in events):
                    events.append(await conn.poll())
                with trio.move_on_after(5):  # a publish silently dropped would hang here
                    for tracker in trackers:
                        try:
                            outcomes.append(await tracker.wait())
                        except Exception as exc:
                            outcomes.append(exc)
                if resend:
                    with trio.move_on_after(5):
                        async for message in sub.messages():
                            got.append(message.payload)
                            if len(got) == 10:
                                break
    return events, got, outcomes


async def test_session_lost_resends_unacknowledged_publishes(mosquitto: MosquittoBroker) -> None:
    with trio.fail_after(20):
        events, got, outcomes = await _lose_session(mosquitto, resend=True)
    lost = [e for e in events if isinstance(e, SessionLost)]
    assert lost == [SessionLost(resent=10, dropped=0, completed=0, resubscribed=0)]
    assert sorted(got) == sorted(str(n).encode() for n in range(10))
    assert len(outcomes) == 10
    assert all(getattr(result, "is_success", False) for result in outcomes)


async def test_session_lost_reports_dropped_publishes(mosquitto: MosquittoBroker) -> None:
    with trio.fail_after(20):
        events, _, outcomes = await _lose_session(mosquitto, resend=False)
    dropped = [e for e in events if isinstance(e, PublishDropped)]
    assert sorted(e.publish.payload for e in dropped) == sorted(str(n).encode() for n in range(10))
    assert [e for e in events if isinstance(e, SessionLost)] == [
        SessionLost(resent=0, dropped=10, completed=0, resubscribed=0)
    ]
    assert len(outcomes) == 10
    assert all(isinstance(result, Exception) for result in outcomes)  # never silent


async def _round_trip_through(
    mosquitto: MosquittoBroker, proxy: FaultProxy, client_id: str, count: int
) -> list[bytes]:
    """Subscribe and publish ``count`` QoS 2 messages through ``proxy``; return what arrived."""
    options = MqttOptions(
        client_id,
        proxy.host,
        proxy.port,
        clean_start=False,
        protocol_version=ProtocolVersion.V5,
        session_expiry_interval=60,
        reconnect=FAST_RECONNECT,
    )
    got: list[bytes] = []
    async with open_mqtt_connection(options) as conn:
        await conn.client.subscribe(f"{client_id}/t", QoS.EXACTLY_ONCE)
        trackers = [
            await conn.client.publish_tracked(f"{client_id}/t", str(n), qos=QoS.EXACTLY_ONCE)
            for n in range(count)
        ]
        async for message in conn.messages():
            got.append(message.payload)
            if len(got) == count:
                break
        for tracker in trackers:
            assert (await tracker.wait()).is_success
    return got


async def test_single_byte_writes_and_latency(mosquitto: MosquittoBroker) -> None:
    with trio.fail_after(30):
        async with open_fault_proxy(mosquitto.host, mosquitto.port) as proxy:
            proxy.split_writes = True
            proxy.delay = 0.001
            got = await _round_trip_through(mosquitto, proxy, "split", 30)
    assert got == [str(n).encode() for n in range(30)]
    assert proxy.statistics().cuts == 0


@pytest.mark.parametrize("down", [1, 2, 5, 9])
async def test_cut_mid_packet_then_exactly_once(mosquitto: MosquittoBroker, down: int) -> None:
    # The link to the client dies a few bytes into the broker's traffic (inside SUBACK or a
    # PUBLISH); the session resumes and every QoS 2 message still arrives exactly once.
    with trio.fail_after(30):
        async with open_fault_proxy(mosquitto.host, mosquitto.port) as proxy:
            proxy.cut_after(down=4 + down)  # CONNACK (4-5 bytes) then part of the next packet
            got = await _round_trip_through(mosquitto, proxy, f"midcut{down}", 20)
            assert proxy.statistics().cuts >= 1
    assert got == [str(n).encode() for n in range(20)]


async def test_connection_reset_is_a_connection_loss_and_recovers(
    mosquitto: MosquittoBroker,
) -> None:
    with trio.fail_after(20):
        async with open_fault_proxy(mosquitto.host, mosquitto.port) as proxy:
            options = MqttOptions("rst", proxy.host, proxy.port, reconnect=FAST_RECONNECT)
            async with open_mqtt_connection(options) as conn:
                await conn.client.subscribe("rst", QoS.AT_LEAST_ONCE)
                proxy.reset()
                while not isinstance(event := await conn.poll(), Disconnected):
                    pass
                assert isinstance(event.error, ConnectionLost)
                await conn.client.publish("rst", b"again", qos=QoS.AT_LEAST_ONCE)
                async for message in conn.messages():
                    assert message.payload == b"again"
                    break
