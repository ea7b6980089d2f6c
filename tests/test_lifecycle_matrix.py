"""Every public call in every state of a connection: it completes or raises a typed error.

The contract (docs/events.rst, "Requests in every state"): a call of :class:`~trio_mqtt.Client`,
:class:`~trio_mqtt.MqttConnection`, :class:`~trio_mqtt.MessageStream` or
:class:`~trio_mqtt.Tracker` either completes or raises an :class:`~trio_mqtt.MqttError`
subclass (``trio.ClosedResourceError`` for a closed handle, ``trio.WouldBlock`` for a
``*_nowait`` call that would wait) promptly once its outcome is known, and never leaks an
``ExceptionGroup``. The states are made with a scripted broker under ``autojump_clock``, so
"promptly" is checked in virtual seconds; each cell is bounded by ``trio.fail_after``.

Not a state here: "before the first CONNACK". ``open_mqtt_connection`` hands out the
connection, and with it the first client handle, only after the first CONNACK.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import trio
import trio.testing
from fake_broker import FakeBroker, ScriptedPeer

from trio_mqtt import (
    ConnectionClosed,
    ConnectionLost,
    ConnectionRefused,
    MqttConnection,
    MqttError,
    MqttOptions,
    QoS,
    ReconnectPolicy,
    UnknownPacketIdError,
    open_mqtt_connection,
)
from trio_mqtt.sansio import ConnAck

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup


async def serve(peer: ScriptedPeer, drop: trio.Event | None = None) -> None:
    """Answer everything like a broker; close the link when ``drop`` is set."""
    await peer.accept()
    if drop is None:
        await peer.answer_all()
        return
    async with trio.open_nursery() as nursery:
        nursery.start_soon(peer.answer_all)
        await drop.wait()
        nursery.cancel_scope.cancel()
    await peer.close()


@dataclass
class Situation:
    """A connection brought into one state, and what a waiting call there should raise."""

    conn: MqttConnection
    #: the error type of calls that wait for the broker, or None when they complete
    refusal: type[BaseException] | None
    #: the error type of plain publishes and acks of unknown ids (None: they complete)
    publish_refusal: type[BaseException] | None


Opener = Callable[[trio.Nursery], "AsyncIteratorCM"]
AsyncIteratorCM = Any


def options(broker: FakeBroker, **kwargs: Any) -> MqttOptions:
    return MqttOptions("matrix", "fake", 1883, transport=broker, keep_alive=10, **kwargs)


@asynccontextmanager
async def connected(nursery: trio.Nursery) -> AsyncIterator[Situation]:
    broker = FakeBroker(nursery, serve)
    async with open_mqtt_connection(options(broker)) as conn:
        yield Situation(conn, None, None)


@asynccontextmanager
async def reconnecting(nursery: trio.Nursery) -> AsyncIterator[Situation]:
    drop = trio.Event()

    async def script(peer: ScriptedPeer) -> None:
        if peer.index == 0:
            await serve(peer, drop)
        elif peer.index == 1:
            await peer.close()  # the first retry fails
        else:
            await serve(peer)

    broker = FakeBroker(nursery, script)
    policy = ReconnectPolicy(initial_delay=2.0, jitter=0.0)
    async with open_mqtt_connection(options(broker, reconnect=policy)) as conn:
        drop.set()
        await trio.sleep(0.5)  # lost, waiting out the first backoff
        assert not conn.connected
        yield Situation(conn, None, None)


@asynccontextmanager
async def failed(nursery: trio.Nursery) -> AsyncIterator[Situation]:
    drop = trio.Event()
    broker = FakeBroker(nursery, lambda peer: serve(peer, drop))
    async with open_mqtt_connection(options(broker)) as conn:
        drop.set()
        await trio.sleep(1)  # lost; nobody polls
        assert not conn.connected
        yield Situation(conn, ConnectionLost, None)


@asynccontextmanager
async def refused(nursery: trio.Nursery) -> AsyncIterator[Situation]:
    drop = trio.Event()

    async def script(peer: ScriptedPeer) -> None:
        if peer.index == 0:
            await serve(peer, drop)
        else:
            await peer.receive()
            await peer.send(ConnAck(reason_code=5))  # not authorized
            await peer.close()

    broker = FakeBroker(nursery, script)
    async with open_mqtt_connection(options(broker)) as conn:
        drop.set()
        await trio.sleep(1)
        conn.reconnect()
        await trio.sleep(1)  # the reconnect was refused; nobody polls
        yield Situation(conn, ConnectionRefused, None)


@asynccontextmanager
async def disconnected(nursery: trio.Nursery) -> AsyncIterator[Situation]:
    broker = FakeBroker(nursery, serve)
    async with open_mqtt_connection(options(broker)) as conn:
        await conn.client.disconnect()
        yield Situation(conn, ConnectionClosed, ConnectionClosed)


@asynccontextmanager
async def after_block(nursery: trio.Nursery) -> AsyncIterator[Situation]:
    broker = FakeBroker(nursery, serve)
    async with open_mqtt_connection(options(broker)) as conn:
        pass
    yield Situation(conn, ConnectionClosed, ConnectionClosed)


STATES = {
    "connected": connected,
    "reconnecting": reconnecting,
    "failed": failed,
    "refused": refused,
    "disconnected": disconnected,
    "after_block": after_block,
}

Call = Callable[[MqttConnection], Awaitable[object]]


async def _value(result: object) -> object:
    if isinstance(result, Awaitable):
        return await result
    return result


async def _tracked_wait(conn: MqttConnection) -> object:
    tracker = await conn.client.publish_tracked("m/t", b"x", qos=QoS.EXACTLY_ONCE)
    return await tracker.wait()


async def _nowait_tracker(conn: MqttConnection) -> object:
    return await conn.client.subscribe_nowait("m/#", QoS.AT_LEAST_ONCE).wait()


async def _route(conn: MqttConnection) -> object:
    # entering subscribes (waits for the SUBACK), leaving unsubscribes
    async with conn.route("m/r", qos=QoS.AT_LEAST_ONCE) as stream:
        return stream.topic_filter


async def _message(conn: MqttConnection) -> object:
    await conn.client.subscribe("m/msg", QoS.AT_LEAST_ONCE)
    return None  # reading it back needs a real broker; the subscribe is the call here


async def _poll_past_the_buffered_events(conn: MqttConnection) -> list[object]:
    # buffered events come first; in a failed state the error follows them
    return [await conn.poll() for _ in range(100)]


#: (name, call, kind): kind "request" waits for the broker, "publish" needs only admission,
#: "ack" needs a held message id (none here: UnknownPacketIdError), "local" is the
#: connection's own business.
CALLS: list[tuple[str, Call, str]] = [
    ("publish_q0", lambda c: c.client.publish("m/a", b"x"), "publish"),
    ("publish_q1", lambda c: c.client.publish("m/a", b"x", qos=QoS.AT_LEAST_ONCE), "publish"),
    ("publish_nowait", lambda c: _value(c.client.publish_nowait("m/a", b"x")), "publish"),
    ("publish_tracked_wait", _tracked_wait, "request"),
    (
        "publish_tracked_nowait",
        lambda c: c.client.publish_tracked_nowait("m/a", b"x", qos=1).wait(),
        "request",
    ),
    ("subscribe", lambda c: c.client.subscribe("m/#", QoS.AT_LEAST_ONCE), "request"),
    ("subscribe_nowait", _nowait_tracker, "request"),
    ("subscribe_many", lambda c: c.client.subscribe_many(["m/a", ("m/b", 1)]), "request"),
    (
        "subscribe_many_nowait",
        lambda c: c.client.subscribe_many_nowait(["m/a"]).wait(),
        "request",
    ),
    ("unsubscribe", lambda c: c.client.unsubscribe("m/#"), "request"),
    ("unsubscribe_nowait", lambda c: c.client.unsubscribe_nowait("m/#").wait(), "request"),
    ("unsubscribe_many", lambda c: c.client.unsubscribe_many(["m/a"]), "request"),
    (
        "unsubscribe_many_nowait",
        lambda c: c.client.unsubscribe_many_nowait(["m/a"]).wait(),
        "request",
    ),
    ("ack", lambda c: c.client.ack(7), "ack"),
    ("ack_nowait", lambda c: _value(c.client.ack_nowait(7)), "ack"),
    ("route", _route, "request"),
    ("subscribe_then_messages", _message, "request"),
    ("statistics", lambda c: _value(c.statistics()), "local"),
    ("reconnect", lambda c: _value(c.reconnect()), "local"),
    ("clone_and_close", lambda c: _value(c.client.clone().close()), "local"),
    ("disconnect", lambda c: c.client.disconnect(), "local"),
    ("disconnect_nowait", lambda c: _value(c.client.disconnect_nowait(0)), "local"),
]


def _expected(situation: Situation, kind: str) -> type[BaseException] | None:
    if kind == "request":
        return situation.refusal
    if kind == "publish":
        return situation.publish_refusal
    if kind == "ack":
        return situation.publish_refusal or UnknownPacketIdError
    return None


@pytest.mark.parametrize("state", list(STATES))
@pytest.mark.parametrize(("name", "call", "kind"), CALLS, ids=[c[0] for c in CALLS])
async def test_every_call_in_every_state_completes_or_raises_typed(
    state: str,
    name: str,
    call: Call,
    kind: str,
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
) -> None:
    outcome: BaseException | None = None
    try:
        with trio.fail_after(60):
            async with STATES[state](nursery) as situation:
                with trio.fail_after(20):  # "promptly": the outcome is known by then
                    try:
                        await call(situation.conn)
                    except (MqttError, trio.ClosedResourceError, trio.WouldBlock) as exc:
                        outcome = exc
    except BaseExceptionGroup as group:  # pragma: no cover - what this test forbids
        pytest.fail(f"an ExceptionGroup escaped: {group!r}")
    expected = _expected(situation, kind)
    if expected is None:
        assert outcome is None, f"{name} in {state} raised {outcome!r}"
    else:
        assert isinstance(outcome, expected), f"{name} in {state}: {outcome!r}, not {expected}"


@pytest.mark.parametrize("state", ["connected", "reconnecting", "failed"])
async def test_a_cancelled_call_admits_nothing(
    state: str, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(60):
        async with STATES[state](nursery) as situation:
            conn = situation.conn
            before = conn.statistics()
            with trio.CancelScope() as scope:
                scope.cancel()
                await conn.client.publish("m/c", b"x", qos=QoS.AT_LEAST_ONCE)
            assert scope.cancelled_caught
            with trio.CancelScope() as scope:
                scope.cancel()
                await conn.client.subscribe("m/c")
            assert scope.cancelled_caught
            after = conn.statistics()
            assert after.waiting_publishes == before.waiting_publishes
            assert after.publishes_sent == before.publishes_sent
            assert after.queued_requests == 0


async def test_poll_in_a_failed_state_raises_after_the_buffered_events(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(60):
        async with failed(nursery) as situation:
            with pytest.raises(ConnectionLost):
                await _poll_past_the_buffered_events(situation.conn)
