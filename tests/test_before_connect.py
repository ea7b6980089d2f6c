"""The ``before_connect`` hook and the server list, against real mosquitto brokers.

A password that changes between connections (the hook supplies the new one, nothing queued is
lost), a hook that moves the session from TCP to a WebSocket with fresh upgrade headers,
failover from a killed broker to a second one with QoS 1/2 publishes in flight, a hook that
raises or returns unusable options (a failed attempt, reported with the error, on the first
connection and on reconnects), and a slow hook (other connections keep their keepalive; closing
or cancelling ends it at once).
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from trio_mqtt import (
    BeforeConnectError,
    ConnectionRefused,
    Disconnected,
    InvalidOptionError,
    MqttOptions,
    Outgoing,
    QoS,
    Reconnecting,
    ReconnectPolicy,
    SessionLost,
    WebSocketRequest,
    WebSocketTransport,
    open_mqtt_connection,
)
from trio_mqtt.sansio import PingReq
from trio_mqtt.testing import MosquittoBroker, open_fault_proxy

FAST = ReconnectPolicy(initial_delay=0.05, max_delay=0.2)


async def _collect(messages: Any, count: int, got: list[bytes]) -> None:
    """Distinct payloads until ``count`` (QoS 1 may deliver one twice across a restart)."""
    async for message in messages:
        if message.payload not in got:
            got.append(message.payload)
        if len(got) == count:
            return


async def test_hook_supplies_a_changed_password_and_nothing_queued_is_lost(
    mosquitto_factory: Any,
) -> None:
    broker: MosquittoBroker = mosquitto_factory(
        users={"pub": "old", "sub": "fixed"}, persistence=True
    )
    current = {"password": "old"}
    seen: list[bytes | None] = []

    async def refresh(options: MqttOptions) -> MqttOptions:
        await trio.lowlevel.checkpoint()  # a real hook would fetch a token here
        seen.append(options.password if isinstance(options.password, bytes) else None)
        return options.replace(password=current["password"])

    sub_options = MqttOptions(
        "rotate-sub",
        broker.host,
        broker.port,
        username="sub",
        password="fixed",
        clean_start=False,
        reconnect=FAST,
    )
    pub_options = MqttOptions(
        "rotate-pub",
        broker.host,
        broker.port,
        username="pub",
        password="wrong at first: the hook fills it in",
        clean_start=False,
        reconnect=FAST,
        before_connect=refresh,
    )
    got: list[bytes] = []
    with trio.fail_after(30):
        async with open_mqtt_connection(sub_options) as sub:
            await sub.client.subscribe("rotate/#", QoS.AT_LEAST_ONCE)
            async with open_mqtt_connection(pub_options) as pub:
                assert pub.options.password == b"old"
                await pub.client.publish("rotate/n", b"0", qos=QoS.AT_LEAST_ONCE)
                await trio.to_thread.run_sync(broker.stop)
                for n in range(1, 21):  # queued while the broker is down
                    await pub.client.publish("rotate/n", str(n).encode(), qos=QoS.AT_LEAST_ONCE)
                await trio.to_thread.run_sync(broker.set_users, {"pub": "new", "sub": "fixed"})
                current["password"] = "new"
                await trio.to_thread.run_sync(broker.start)
                await _collect(sub.messages(), 21, got)
                assert pub.options.password == b"new"
                assert pub.statistics().connects >= 2
    assert sorted(got, key=int) == [str(n).encode() for n in range(21)]
    assert seen[0] == b"wrong at first: the hook fills it in"
    assert b"old" in seen  # later attempts start from the options the last one used
    # the old password really is refused now: the hook was needed
    stale = MqttOptions("rotate-stale", broker.host, broker.port, username="pub", password="old")
    with trio.fail_after(10), pytest.raises(ConnectionRefused):
        async with open_mqtt_connection(stale):
            pass


async def test_a_hook_moves_the_session_to_a_websocket_with_fresh_headers(
    mosquitto_factory: Any,
) -> None:
    broker: MosquittoBroker = mosquitto_factory(websockets=True)
    requests: list[WebSocketRequest] = []
    calls = 0

    async def record(request: WebSocketRequest) -> WebSocketRequest:
        requests.append(request)
        return request

    async def to_websocket(options: MqttOptions) -> MqttOptions | None:
        nonlocal calls
        calls += 1
        if calls == 1:
            return None  # the first connection: plain TCP through the proxy
        transport = WebSocketTransport(
            path="/", headers={"Authorization": f"Bearer token-{calls}"}, request_modifier=record
        )
        return options.replace(port=broker.ws_port, transport=transport)

    got: list[bytes] = []
    with trio.fail_after(20):
        async with (
            open_fault_proxy(broker.host, broker.port) as proxy,
            open_mqtt_connection(MqttOptions("to-ws-sub", broker.host, broker.port)) as sub,
        ):
            await sub.client.subscribe("to-ws/#", QoS.AT_LEAST_ONCE)
            options = MqttOptions(
                "to-ws",
                proxy.host,
                proxy.port,
                clean_start=False,
                reconnect=FAST,
                before_connect=to_websocket,
            )
            async with open_mqtt_connection(options) as conn:
                assert not isinstance(conn.options.transport, WebSocketTransport)
                await conn.client.publish("to-ws/n", b"0", qos=QoS.AT_LEAST_ONCE)
                proxy.cut()
                for n in range(1, 6):  # queued while the connection is down
                    await conn.client.publish("to-ws/n", str(n).encode(), qos=QoS.AT_LEAST_ONCE)
                await _collect(sub.messages(), 6, got)
                assert isinstance(conn.options.transport, WebSocketTransport)
                assert conn.options.port == broker.ws_port
                stats = conn.statistics()
    assert sorted(got, key=int) == [str(n).encode() for n in range(6)]
    assert (stats.connects, stats.sessions_lost) == (2, 0)  # the same session, over WebSocket
    assert calls == 2
    assert [r.headers for r in requests] == [(("Authorization", "Bearer token-2"),)]
    assert requests[0].port == broker.ws_port


@pytest.mark.parametrize("qos", [QoS.AT_LEAST_ONCE, QoS.EXACTLY_ONCE])
async def test_failover_to_the_second_server_resends_what_was_in_flight(
    mosquitto_factory: Any, qos: QoS
) -> None:
    first: MosquittoBroker = mosquitto_factory()
    second: MosquittoBroker = mosquitto_factory()
    events: list[object] = []
    got: list[bytes] = []
    with trio.fail_after(30):
        async with open_fault_proxy(first.host, first.port) as proxy:
            options = MqttOptions(
                "failover",
                servers=[f"mqtt://{proxy.host}:{proxy.port}", second.url],
                reconnect=FAST,
            )
            sub_options = MqttOptions("failover-sub", second.host, second.port)
            async with (
                open_mqtt_connection(sub_options) as sub,
                open_mqtt_connection(options) as conn,
            ):
                await sub.client.subscribe("failover/#", QoS.EXACTLY_ONCE)
                assert conn.options.port == proxy.port
                proxy.blackhole(up=False)  # the acks of the first broker never arrive
                for n in range(10):
                    await conn.client.publish("failover/n", str(n).encode(), qos=qos)
                while conn.statistics().inflight < 10:
                    events.append(await conn.poll())
                await trio.to_thread.run_sync(first.kill)
                proxy.cut()
                while not any(isinstance(e, SessionLost) for e in events):
                    events.append(await conn.poll())
                assert conn.options.port == second.port
                await _collect(sub.messages(), 10, got)
                stats = conn.statistics()
    assert sorted(got, key=int) == [str(n).encode() for n in range(10)]
    lost = [e for e in events if isinstance(e, SessionLost)]
    assert lost == [SessionLost(resent=10, dropped=0, completed=0, resubscribed=0)]
    assert stats.sessions_lost == 1
    assert stats.connects == 2


async def test_the_list_is_tried_in_order_and_the_working_server_is_kept(
    mosquitto_factory: Any,
) -> None:
    broker: MosquittoBroker = mosquitto_factory()
    dead = MosquittoBroker()  # ports chosen, never started: nothing listens
    try:
        options = MqttOptions("order", servers=[dead.url, broker.url], reconnect=FAST)
        with trio.fail_after(20):
            async with open_mqtt_connection(options) as conn:
                assert conn.options.port == broker.port
                await trio.to_thread.run_sync(broker.restart)
                while conn.statistics().connects < 2:
                    await conn.poll()
                assert conn.options.port == broker.port  # sticks to it
        # without a reconnect policy every server is still tried once before giving up
        with trio.fail_after(20):
            async with open_mqtt_connection(
                MqttOptions("order", servers=[dead.url, broker.url])
            ) as conn:
                assert conn.options.port == broker.port
    finally:
        dead.close()


async def test_a_hook_that_raises_is_a_failed_attempt_with_backoff(
    mosquitto: MosquittoBroker,
) -> None:
    calls = 0

    async def flaky(options: MqttOptions) -> None:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise RuntimeError(f"token service down ({calls})")

    options = MqttOptions("flaky", mosquitto.host, mosquitto.port, before_connect=flaky)
    with trio.fail_after(10), pytest.raises(BeforeConnectError) as info:
        async with open_mqtt_connection(options):
            pass
    assert isinstance(info.value.__cause__, RuntimeError)
    assert "token service down (1)" in str(info.value)

    calls = 0
    with trio.fail_after(10):
        async with open_mqtt_connection(options.replace(reconnect=FAST)) as conn:
            assert calls == 3
            assert conn.connected
            events = []
            while len(events) < 2:
                events.append(await conn.poll())
    reconnecting = [e for e in events if isinstance(e, Reconnecting)]
    assert [e.attempt for e in reconnecting] == [1, 2]
    for event in reconnecting:
        assert isinstance(event.error, BeforeConnectError)
        assert isinstance(event.error.__cause__, RuntimeError)


async def test_a_hook_that_raises_on_a_reconnect_is_reported_and_then_raised(
    mosquitto: MosquittoBroker,
) -> None:
    calls = 0

    async def down_after_first(options: MqttOptions) -> None:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise RuntimeError(f"token service down ({calls})")

    events: list[object] = []
    with trio.fail_after(10):
        async with open_fault_proxy(mosquitto.host, mosquitto.port) as proxy:
            options = MqttOptions(
                "flaky-later",
                proxy.host,
                proxy.port,
                reconnect=ReconnectPolicy(initial_delay=0.05, max_delay=0.2, max_attempts=3),
                before_connect=down_after_first,
            )
            async with open_mqtt_connection(options) as conn:
                proxy.cut()
                with pytest.raises(BeforeConnectError) as info:
                    while True:
                        events.append(await conn.poll())
    assert isinstance(info.value.__cause__, RuntimeError)  # the policy gave up: raised
    assert "token service down (4)" in str(info.value)
    lost = [e for e in events if isinstance(e, Disconnected)]
    assert len(lost) == 1
    assert not isinstance(lost[0].error, BeforeConnectError)  # the cut ended the connection
    reconnecting = [e for e in events if isinstance(e, Reconnecting)]
    assert [e.attempt for e in reconnecting] == [1, 2, 3]
    assert not isinstance(reconnecting[0].error, BeforeConnectError)
    for n, event in enumerate(reconnecting[1:], start=2):
        assert isinstance(event.error, BeforeConnectError)
        assert f"token service down ({n})" in str(event.error)
    assert calls == 4


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"client_id": "someone-else"}, "client_id"),
        ({"inflight": 3}, "inflight"),
        ({"request_capacity": 3}, "request_capacity"),
    ],
)
async def test_a_hook_may_not_change_the_session(
    mosquitto: MosquittoBroker, change: dict[str, Any], message: str
) -> None:
    async def bad(options: MqttOptions) -> MqttOptions:
        return options.replace(**change)

    options = MqttOptions("fixed-id", mosquitto.host, mosquitto.port, before_connect=bad)
    with trio.fail_after(10), pytest.raises(BeforeConnectError, match=message) as info:
        async with open_mqtt_connection(options):
            pass
    assert isinstance(info.value.__cause__, InvalidOptionError)


async def test_a_hook_must_return_options_or_none(mosquitto: MosquittoBroker) -> None:
    async def wrong(options: MqttOptions) -> object:
        return {"password": "x"}

    options = MqttOptions("wrong", mosquitto.host, mosquitto.port, before_connect=wrong)  # type: ignore[arg-type]
    with trio.fail_after(10), pytest.raises(BeforeConnectError, match="dict"):
        async with open_mqtt_connection(options):
            pass


async def test_a_slow_hook_holds_up_nothing_else_and_can_be_cancelled(
    mosquitto: MosquittoBroker,
) -> None:
    release = trio.Event()  # never set: the hook waits until it is cancelled
    entered = trio.Event()
    calls = 0

    async def slow(options: MqttOptions) -> None:
        nonlocal calls
        calls += 1
        if calls > 1:  # the first attempt goes through; every reconnect hangs
            entered.set()
            await release.wait()

    with trio.fail_after(20):
        async with open_fault_proxy(mosquitto.host, mosquitto.port) as proxy:
            hanging = MqttOptions(
                "slow-hook",
                proxy.host,
                proxy.port,
                reconnect=FAST,
                connect_timeout=60,
                before_connect=slow,
            )
            lively = MqttOptions("lively", mosquitto.host, mosquitto.port, keep_alive=1)
            async with (
                open_mqtt_connection(lively) as other,
                open_mqtt_connection(hanging) as conn,
            ):
                proxy.cut()
                await entered.wait()
                # the other connection keeps pinging while the hook hangs
                pings = 0
                while pings < 2:
                    event = await other.poll()
                    if isinstance(event, Outgoing) and isinstance(event.packet, PingReq):
                        pings += 1
                assert other.connected
                assert not conn.connected
            # leaving the block cancelled the hook (else fail_after would fire)

    # cancelling from outside while the first attempt's hook hangs
    calls = 1
    with trio.move_on_after(0.5) as scope:
        async with open_mqtt_connection(hanging.replace(host=mosquitto.host, port=mosquitto.port)):
            pytest.fail("the hook never returns: the connection cannot open")
    assert scope.cancelled_caught


async def test_a_hook_that_outlasts_connect_timeout_is_a_failed_attempt(
    mosquitto: MosquittoBroker,
) -> None:
    async def never(options: MqttOptions) -> None:
        await trio.sleep_forever()

    options = MqttOptions(
        "never", mosquitto.host, mosquitto.port, connect_timeout=0.2, before_connect=never
    )
    with trio.fail_after(10), pytest.raises(BeforeConnectError, match="connect_timeout"):
        async with open_mqtt_connection(options):
            pass


def test_server_urls_are_checked_when_the_options_are_made() -> None:
    with pytest.raises(InvalidOptionError, match="keep_alive"):
        MqttOptions("x", servers=["mqtt://a:1883?keep_alive_secs=5"])
    with pytest.raises(InvalidOptionError, match="not one string"):
        MqttOptions("x", servers="mqtt://a")
    with pytest.raises(InvalidOptionError, match="scheme"):
        MqttOptions("x", servers=["http://a"])
    with pytest.raises(InvalidOptionError, match="before_connect"):
        MqttOptions("x", before_connect="not callable")  # type: ignore[arg-type]
    options = MqttOptions("x", servers=["mqtt://a:1", "mqtts://u:p@b"])
    assert options.servers == ("mqtt://a:1", "mqtts://u:p@b")
    second = options.server_options(1)
    assert (second.host, second.port, second.username, second.password) == ("b", 8883, "u", b"p")
