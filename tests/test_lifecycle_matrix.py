"""Every public call in every state of a connection: it completes or raises a typed error.

The contract (docs/events.rst, "Requests in every state"): a call of :class:`~trio_mqtt.Client`,
:class:`~trio_mqtt.MqttConnection`, :class:`~trio_mqtt.MessageStream` or
:class:`~trio_mqtt.Tracker` either completes or raises an :class:`~trio_mqtt.MqttError`
subclass (``trio.ClosedResourceError`` for a closed handle, ``trio.WouldBlock`` for a
``*_nowait`` call that would wait) promptly once its outcome is known, and never leaks an
``ExceptionGroup``. The states are made with a scripted broker under ``autojump_clock``, so
"promptly" is checked in virtual seconds; each cell is bounded by ``trio.fail_after``.

Every public method and property of those four classes has a cell (a test checks the list
against the classes, so a new method needs one); calls that wait for incoming data (``poll``,
``messages()``, a route's ``receive``) must still be waiting in the live states and must raise
(or end) in the ended ones. The sync API's matrix is tests/test_sync_lifecycle.py.

Not a state here: "before the first CONNACK". ``open_mqtt_connection`` hands out the
connection, and with it the first client handle, only after the first CONNACK.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
import trio.testing
from fake_broker import FakeBroker, ScriptedPeer

from trio_mqtt import (
    ConnectionClosed,
    ConnectionLost,
    ConnectionRefused,
    LocalProtocolError,
    MessageStream,
    MqttConnection,
    MqttError,
    MqttOptions,
    ProtocolVersion,
    Publish,
    QoS,
    ReconnectPolicy,
    Tracker,
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


class Reauth:
    """An MQTT 5 authenticator whose exchange has no challenges."""

    method = "matrix"

    def initial_data(self) -> bytes | None:
        return b"token"

    def challenge(self, data: bytes | None) -> bytes | None:
        return None

    def complete(self, data: bytes | None) -> None:
        return None


#: what a cell opens while the connection is up, before its state is made
Prepare = Callable[[MqttConnection, AsyncExitStack], Awaitable[object]]


@dataclass
class Setup:
    """What a cell needs besides its state: extra options, and something made beforehand."""

    options: dict[str, Any] = field(default_factory=dict)
    prepare: Prepare | None = None
    stack: AsyncExitStack = field(default_factory=AsyncExitStack)

    async def run(self, conn: MqttConnection) -> object:
        return None if self.prepare is None else await self.prepare(conn, self.stack)


@dataclass
class Situation:
    """A connection brought into one state, and what a waiting call there should raise."""

    conn: MqttConnection
    #: the error type of calls that wait for the broker, or None when they complete
    refusal: type[BaseException] | None
    #: the error type of plain publishes and acks of unknown ids (None: they complete)
    publish_refusal: type[BaseException] | None
    #: what the cell's Setup.prepare made while connected
    prepared: object = None
    #: lost, and a reconnect policy is at work
    reconnecting: bool = False

    @property
    def live(self) -> bool:
        """True in the states that may still deliver something (connected, reconnecting)."""
        return self.refusal is None


def options(broker: FakeBroker, setup: Setup, **kwargs: Any) -> MqttOptions:
    return MqttOptions(
        "matrix", "fake", 1883, transport=broker, keep_alive=10, **kwargs, **setup.options
    )


@asynccontextmanager
async def connected(nursery: trio.Nursery, setup: Setup) -> AsyncIterator[Situation]:
    broker = FakeBroker(nursery, serve)
    async with open_mqtt_connection(options(broker, setup)) as conn:
        yield Situation(conn, None, None, await setup.run(conn))


@asynccontextmanager
async def reconnecting(nursery: trio.Nursery, setup: Setup) -> AsyncIterator[Situation]:
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
    async with open_mqtt_connection(options(broker, setup, reconnect=policy)) as conn:
        prepared = await setup.run(conn)
        drop.set()
        await trio.sleep(0.5)  # lost, waiting out the first backoff
        assert not conn.connected
        yield Situation(conn, None, None, prepared, reconnecting=True)


@asynccontextmanager
async def failed(nursery: trio.Nursery, setup: Setup) -> AsyncIterator[Situation]:
    drop = trio.Event()
    broker = FakeBroker(nursery, lambda peer: serve(peer, drop))
    async with open_mqtt_connection(options(broker, setup)) as conn:
        prepared = await setup.run(conn)
        drop.set()
        await trio.sleep(1)  # lost; nobody polls
        assert not conn.connected
        yield Situation(conn, ConnectionLost, None, prepared)


@asynccontextmanager
async def refused(nursery: trio.Nursery, setup: Setup) -> AsyncIterator[Situation]:
    drop = trio.Event()

    async def script(peer: ScriptedPeer) -> None:
        if peer.index == 0:
            await serve(peer, drop)
        else:
            await peer.receive()
            # not authorized (3.1.1: 5; MQTT 5: 0x87)
            code = 0x87 if peer.version is ProtocolVersion.V5 else 5
            await peer.send(ConnAck(reason_code=code))
            await peer.close()

    broker = FakeBroker(nursery, script)
    async with open_mqtt_connection(options(broker, setup)) as conn:
        prepared = await setup.run(conn)
        drop.set()
        await trio.sleep(1)
        conn.reconnect()
        await trio.sleep(1)  # the reconnect was refused; nobody polls
        yield Situation(conn, ConnectionRefused, None, prepared)


@asynccontextmanager
async def disconnected(nursery: trio.Nursery, setup: Setup) -> AsyncIterator[Situation]:
    broker = FakeBroker(nursery, serve)
    async with open_mqtt_connection(options(broker, setup)) as conn:
        prepared = await setup.run(conn)
        await conn.client.disconnect()
        yield Situation(conn, ConnectionClosed, ConnectionClosed, prepared)


@asynccontextmanager
async def after_block(nursery: trio.Nursery, setup: Setup) -> AsyncIterator[Situation]:
    broker = FakeBroker(nursery, serve)
    async with open_mqtt_connection(options(broker, setup)) as conn:
        prepared = await setup.run(conn)
    yield Situation(conn, ConnectionClosed, ConnectionClosed, prepared)


STATES = {
    "connected": connected,
    "reconnecting": reconnecting,
    "failed": failed,
    "refused": refused,
    "disconnected": disconnected,
    "after_block": after_block,
}

Call = Callable[[Situation], Awaitable[object]]

#: the outcome of a call still waiting when the cell's time is up (and then cancelled)
WAITING = "still waiting"
#: the outcome of an async iterator that ended (StopAsyncIteration)
ENDED = "ended"


async def _value(result: object) -> object:
    if isinstance(result, Awaitable):
        return await result
    return result


async def _tracked_wait(s: Situation) -> object:
    tracker = await s.conn.client.publish_tracked("m/t", b"x", qos=QoS.EXACTLY_ONCE)
    return await tracker.wait()


async def _nowait_tracker(s: Situation) -> object:
    return await s.conn.client.subscribe_nowait("m/#", QoS.AT_LEAST_ONCE).wait()


async def _route(s: Situation) -> object:
    # entering subscribes (waits for the SUBACK), leaving unsubscribes
    async with s.conn.route("m/r", qos=QoS.AT_LEAST_ONCE) as stream:
        return stream.topic_filter


async def _message(s: Situation) -> object:
    await s.conn.client.subscribe("m/msg", QoS.AT_LEAST_ONCE)
    return None  # reading it back needs a real broker; the subscribe is the call here


async def _poll_past_the_buffered_events(conn: MqttConnection) -> list[object]:
    # buffered events come first; in a failed state the error follows them
    return [await conn.poll() for _ in range(100)]


async def _poll_nowait_past_the_buffered_events(s: Situation) -> object:
    for _ in range(100):
        s.conn.poll_nowait()  # raises WouldBlock once the buffer is empty, or the error
    raise AssertionError("more than 100 buffered events")


async def _anext(iterator: Any) -> object:
    try:
        return await iterator.__anext__()
    except StopAsyncIteration:
        return ENDED


async def _clone_and_aclose(s: Situation) -> object:
    await s.conn.client.clone().aclose()
    return None


async def _open_stream(conn: MqttConnection, stack: AsyncExitStack) -> MessageStream:
    """A route opened while connected (no SUBSCRIBE: the state must not depend on a SUBACK)."""
    return await stack.enter_async_context(conn.route("m/s"))


async def _tracker_made_while_connected(
    conn: MqttConnection, stack: AsyncExitStack
) -> Tracker[Any]:
    tracker = await conn.client.publish_tracked("m/t", b"x", qos=QoS.AT_LEAST_ONCE)
    await tracker.wait()
    return tracker


def _stream(s: Situation) -> MessageStream:
    assert isinstance(s.prepared, MessageStream)
    return s.prepared


def _tracker(s: Situation) -> Tracker[Any]:
    assert isinstance(s.prepared, Tracker)
    return s.prepared


async def _ignore(message: Publish) -> None:
    return None


STREAM = {"prepare": _open_stream}
TRACKER = {"prepare": _tracker_made_while_connected}
V5_REAUTH = {"options": {"protocol_version": ProtocolVersion.V5, "authenticator": Reauth()}}

#: (name, call, kind, setup): kind "request" waits for the broker, "publish" needs only
#: admission, "ack" needs a held message id (none here: UnknownPacketIdError), "local" is the
#: connection's own business; "read" waits for incoming data (still waiting in a live state,
#: the error in a failed one, ConnectionClosed once the session is over), "read_nowait" is its
#: twin (WouldBlock when live); "iterate" is an async iterator (it ends with the session) and
#: "handle" a handler loop (it returns with the session); "reauth" is MQTT 5 re-authentication
#: (refused while reconnecting: there is no connection to re-authenticate).
CALLS: list[tuple[str, Call, str, dict[str, Any]]] = [
    # Client
    ("publish_q0", lambda s: s.conn.client.publish("m/a", b"x"), "publish", {}),
    (
        "publish_q1",
        lambda s: s.conn.client.publish("m/a", b"x", qos=QoS.AT_LEAST_ONCE),
        "publish",
        {},
    ),
    ("publish_nowait", lambda s: _value(s.conn.client.publish_nowait("m/a", b"x")), "publish", {}),
    ("publish_tracked_wait", _tracked_wait, "request", {}),
    (
        "publish_tracked_nowait",
        lambda s: s.conn.client.publish_tracked_nowait("m/a", b"x", qos=1).wait(),
        "request",
        {},
    ),
    ("subscribe", lambda s: s.conn.client.subscribe("m/#", QoS.AT_LEAST_ONCE), "request", {}),
    ("subscribe_nowait", _nowait_tracker, "request", {}),
    (
        "subscribe_many",
        lambda s: s.conn.client.subscribe_many(["m/a", ("m/b", 1)]),
        "request",
        {},
    ),
    (
        "subscribe_many_nowait",
        lambda s: s.conn.client.subscribe_many_nowait(["m/a"]).wait(),
        "request",
        {},
    ),
    ("unsubscribe", lambda s: s.conn.client.unsubscribe("m/#"), "request", {}),
    (
        "unsubscribe_nowait",
        lambda s: s.conn.client.unsubscribe_nowait("m/#").wait(),
        "request",
        {},
    ),
    ("unsubscribe_many", lambda s: s.conn.client.unsubscribe_many(["m/a"]), "request", {}),
    (
        "unsubscribe_many_nowait",
        lambda s: s.conn.client.unsubscribe_many_nowait(["m/a"]).wait(),
        "request",
        {},
    ),
    ("reauthenticate", lambda s: s.conn.client.reauthenticate(), "reauth", V5_REAUTH),
    (
        "reauthenticate_nowait",
        lambda s: s.conn.client.reauthenticate_nowait().wait(),
        "reauth",
        V5_REAUTH,
    ),
    ("ack", lambda s: s.conn.client.ack(7), "ack", {}),
    ("ack_nowait", lambda s: _value(s.conn.client.ack_nowait(7)), "ack", {}),
    ("clone_and_close", lambda s: _value(s.conn.client.clone().close()), "local", {}),
    ("clone_and_aclose", _clone_and_aclose, "local", {}),
    ("disconnect", lambda s: s.conn.client.disconnect(), "local", {}),
    ("disconnect_nowait", lambda s: _value(s.conn.client.disconnect_nowait(0)), "local", {}),
    # MqttConnection
    ("route", _route, "request", {}),
    ("subscribe_then_messages", _message, "request", {}),
    ("statistics", lambda s: _value(s.conn.statistics()), "local", {}),
    ("reconnect", lambda s: _value(s.conn.reconnect()), "local", {}),
    ("client", lambda s: _value(s.conn.client), "local", {}),
    ("connack", lambda s: _value(s.conn.connack), "local", {}),
    ("connected", lambda s: _value(s.conn.connected), "local", {}),
    ("options", lambda s: _value(s.conn.options), "local", {}),
    ("poll", lambda s: _poll_past_the_buffered_events(s.conn), "read", {}),
    ("poll_nowait", _poll_nowait_past_the_buffered_events, "read_nowait", {}),
    ("messages", lambda s: _anext(s.conn.messages()), "iterate", {}),
    ("message_batches", lambda s: _anext(s.conn.message_batches()), "iterate", {}),
    # MessageStream (a route opened while connected)
    ("stream_receive", lambda s: _stream(s).receive(), "read", STREAM),
    ("stream_receive_nowait", lambda s: _value(_stream(s).receive_nowait()), "read_nowait", STREAM),
    ("stream_receive_batch", lambda s: _stream(s).receive_batch(), "read", STREAM),
    ("stream_handle", lambda s: _stream(s).handle(_ignore), "handle", STREAM),
    ("stream_buffered", lambda s: _value(_stream(s).buffered), "local", STREAM),
    ("stream_dropped", lambda s: _value(_stream(s).dropped), "local", STREAM),
    ("stream_topic_filter", lambda s: _value(_stream(s).topic_filter), "local", STREAM),
    # Tracker (made and answered while connected)
    ("tracker_wait", lambda s: _tracker(s).wait(), "local", TRACKER),
    ("tracker_done", lambda s: _value(_tracker(s).done), "local", TRACKER),
]

#: public members of the four classes whose cell has another name
COVERED_ELSEWHERE = {
    "Client.clone": "clone_and_close",
    "Client.close": "clone_and_close",
    "Client.aclose": "clone_and_aclose",
}


def _expected(situation: Situation, kind: str) -> object:
    if kind == "request":
        return situation.refusal
    if kind == "publish":
        return situation.publish_refusal
    if kind == "ack":
        return situation.publish_refusal or UnknownPacketIdError
    if kind == "reauth" and situation.reconnecting:
        # nothing to re-authenticate: the next connection authenticates afresh in CONNECT
        return LocalProtocolError
    if kind == "reauth":
        return situation.refusal
    if kind in ("read", "iterate", "handle"):
        if situation.live:
            return WAITING
        if situation.refusal is ConnectionClosed:  # the session is over
            return {"read": ConnectionClosed, "iterate": ENDED, "handle": None}[kind]
        # a failure, reported to whoever reads, in order: in the refused state the loss that
        # came before the refused reconnect is read first
        return ConnectionLost if situation.refusal is ConnectionRefused else situation.refusal
    if kind == "read_nowait":
        if situation.live:
            return trio.WouldBlock
        return ConnectionLost if situation.refusal is ConnectionRefused else situation.refusal
    return None


def _outcome_matches(outcome: object, expected: object) -> bool:
    if expected is None or isinstance(expected, str):
        return outcome == expected
    assert isinstance(expected, type)
    return isinstance(outcome, expected)


@pytest.mark.parametrize("state", list(STATES))
@pytest.mark.parametrize(("name", "call", "kind", "setup"), CALLS, ids=[c[0] for c in CALLS])
async def test_every_call_in_every_state_completes_or_raises_typed(
    state: str,
    name: str,
    call: Call,
    kind: str,
    setup: dict[str, Any],
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
) -> None:
    outcome: object = None
    cell = Setup(**setup)
    try:
        with trio.fail_after(60):
            async with cell.stack, STATES[state](nursery, cell) as situation:
                waiting_allowed = kind in ("read", "iterate", "handle")
                with trio.move_on_after(20) as waited:  # "promptly": the outcome is known
                    try:
                        result = await call(situation)
                    except (MqttError, trio.ClosedResourceError, trio.WouldBlock) as exc:
                        outcome = exc
                    else:
                        if result == ENDED:
                            outcome = ENDED
                if waited.cancelled_caught:
                    assert waiting_allowed, f"{name} in {state} hung"
                    outcome = WAITING
    except BaseExceptionGroup as group:  # pragma: no cover - what this test forbids
        pytest.fail(f"an ExceptionGroup escaped: {group!r}")
    expected = _expected(situation, kind)
    assert _outcome_matches(outcome, expected), f"{name} in {state}: {outcome!r}, not {expected}"


def _public_members(cls: type) -> set[str]:
    return {f"{cls.__name__}.{name}" for name in dir(cls) if not name.startswith("_")}


def test_the_matrix_has_a_cell_for_every_public_member() -> None:
    from trio_mqtt import Client

    names = {name for name, *_ in CALLS}
    wanted = set()
    for cls in (Client, MqttConnection, MessageStream, Tracker):
        wanted |= _public_members(cls)
    missing = []
    for member in sorted(wanted):
        cls_name, attr = member.split(".")
        prefixed = {
            "Client": attr,
            "MqttConnection": attr,
            "MessageStream": f"stream_{attr}",
            "Tracker": f"tracker_{attr}",
        }[cls_name]
        if member in COVERED_ELSEWHERE:
            assert COVERED_ELSEWHERE[member] in names, member
        elif not ({prefixed, f"{attr}_q0", f"{attr}_wait"} & names):
            missing.append(member)
    assert not missing, f"no matrix cell for {missing}"


@pytest.mark.parametrize("state", ["connected", "reconnecting", "failed"])
async def test_a_cancelled_call_admits_nothing(
    state: str, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(60):
        async with STATES[state](nursery, Setup()) as situation:
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
        async with failed(nursery, Setup()) as situation:
            with pytest.raises(ConnectionLost):
                await _poll_past_the_buffered_events(situation.conn)


async def test_poll_in_a_refused_state_reports_the_loss_then_the_refusal(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(60):
        async with refused(nursery, Setup()) as situation:
            errors: list[type[MqttError]] = []
            while len(errors) < 2:
                try:
                    await situation.conn.poll()
                except MqttError as exc:
                    errors.append(type(exc))
            assert errors == [ConnectionLost, ConnectionRefused]
