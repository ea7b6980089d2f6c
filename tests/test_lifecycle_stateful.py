"""Random interleavings of requests, link drops, refusals, reconnects and exits (hypothesis).

Each example runs one connection against a scripted broker under an autojump clock and asserts
the lifecycle contract end to end:

* no call hangs (each is bounded) and none raises anything but a typed error;
* no ``ExceptionGroup`` leaves ``open_mqtt_connection``;
* every tracker is answered by the time the block has ended;
* nothing admitted is lost silently: every QoS 1/2 publish that was admitted either reached
  the broker or is counted in the warning the ending session logs;
* after ``disconnect()`` every request raises :class:`~trio_mqtt.ConnectionClosed`.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from dataclasses import dataclass, field
from typing import Any

import trio
import trio.testing
from fake_broker import FakeBroker, ScriptedPeer
from hypothesis import HealthCheck, given, settings, strategies as st

from trio_mqtt import (
    ConnectionClosed,
    MqttConnection,
    MqttError,
    MqttOptions,
    QoS,
    ReconnectPolicy,
    open_mqtt_connection,
)
from trio_mqtt.sansio import ConnAck, Connect

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

ACTIONS = [
    "publish0",
    "publish1",
    "publish2",
    "publish_nowait1",
    "tracked1",
    "tracked2",
    "subscribe",
    "subscribe_nowait",
    "unsubscribe",
    "drop",
    "refuse_next",
    "poll",
    "reconnect",
    "sleep",
    "disconnect",
]


@dataclass
class Broker:
    """The scripted broker's side: what arrived, and the switches the actions flip."""

    received: set[bytes] = field(default_factory=set)
    refusals: int = 0
    drop: trio.Event = field(default_factory=trio.Event)

    async def serve(self, peer: ScriptedPeer) -> None:
        connect = await peer.receive()
        assert isinstance(connect, Connect)
        if self.refusals:
            self.refusals -= 1
            await peer.send(ConnAck(reason_code=5))
            await peer.close()
            return
        await peer.send(ConnAck(session_present=not connect.clean_start))
        drop = self.drop = trio.Event()
        async with trio.open_nursery() as nursery:

            async def answer() -> None:
                await peer.answer_all(self.received)
                nursery.cancel_scope.cancel()  # the client said DISCONNECT

            nursery.start_soon(answer)
            await drop.wait()
            nursery.cancel_scope.cancel()
        await peer.close()


class _Counter(logging.Handler):
    """Adds up the publishes the ending session reports as unsent or unacknowledged."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reported = 0

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("the session ended with"):
            match = re.search(r"with (\d+)", message)
            assert match is not None
            self.reported += int(match.group(1))


class Run:
    """One example: the connection, the broker, and what was admitted."""

    def __init__(self, conn: MqttConnection, broker: Broker, waiters: trio.Nursery) -> None:
        self.conn = conn
        self.broker = broker
        self.waiters = waiters
        self.admitted: set[bytes] = set()
        self.trackers_open = 0
        self.closed = False

    async def _await_tracker(self, tracker: Any) -> None:
        self.trackers_open += 1
        with contextlib.suppress(MqttError):
            await tracker.wait()
        self.trackers_open -= 1

    async def act(self, number: int, action: str) -> None:
        """Carry out one action; only typed errors may come out of it."""
        client, payload = self.conn.client, b"%d" % number
        if action.startswith("publish"):
            qos = int(action[-1])
            if "nowait" in action:
                client.publish_nowait("f/a", payload, qos=qos)
            else:
                await client.publish("f/a", payload, qos=qos)
            if qos:
                self.admitted.add(payload)
        elif action.startswith("tracked"):
            tracker = await client.publish_tracked("f/a", payload, qos=int(action[-1]))
            self.admitted.add(payload)
            self.waiters.start_soon(self._await_tracker, tracker)
        elif action == "subscribe":
            await client.subscribe("f/#", QoS.AT_LEAST_ONCE)
        elif action == "subscribe_nowait":
            self.waiters.start_soon(self._await_tracker, client.subscribe_nowait("f/b"))
        elif action == "unsubscribe":
            await client.unsubscribe("f/#")
        elif action == "drop":
            self.broker.drop.set()
            await trio.sleep(0.1)
        elif action == "refuse_next":
            self.broker.refusals += 1
        elif action == "poll":
            with trio.move_on_after(1):  # poll waits for events by design
                await self.conn.poll()
        elif action == "reconnect":
            self.conn.reconnect()
        elif action == "sleep":
            await trio.sleep(1)
        elif action == "disconnect":
            await client.disconnect(grace_period=1)
            self.closed = True

    async def step(self, number: int, action: str) -> None:
        """One bounded action, checked against the contract."""
        was_closed = self.closed
        outcome: MqttError | None = None
        with trio.fail_after(30):
            try:
                await self.act(number, action)
            except trio.WouldBlock:
                return
            except MqttError as exc:
                outcome = exc
        if was_closed and action in ("publish1", "tracked1", "subscribe", "unsubscribe"):
            # after disconnect() every request raises ConnectionClosed (poll() first
            # delivers what happened before the close, so it is not checked here)
            assert isinstance(outcome, ConnectionClosed), (action, outcome)


async def scenario(actions: list[str], with_policy: bool) -> None:
    broker = Broker()
    counter = _Counter()
    logging.getLogger("trio_mqtt").addHandler(counter)
    policy = ReconnectPolicy(initial_delay=0.5, jitter=0.0) if with_policy else None
    try:
        async with trio.open_nursery() as outer:
            fake = FakeBroker(outer, broker.serve)
            options = MqttOptions(
                "fuzz",
                "fake",
                1883,
                transport=fake,  # type: ignore[arg-type]
                keep_alive=5,
                inflight=4,
                clean_start=False,
                reconnect=policy,
            )
            async with (
                trio.open_nursery() as waiters,
                open_mqtt_connection(options, disconnect_timeout=2) as conn,
            ):
                run = Run(conn, broker, waiters)
                for number, action in enumerate(actions):
                    await run.step(number, action)
        # the block has ended: every tracker has its answer
        assert run.trackers_open == 0
    except BaseExceptionGroup as group:  # pragma: no cover - what the test forbids
        raise AssertionError(f"an ExceptionGroup escaped: {group!r}") from None
    finally:
        logging.getLogger("trio_mqtt").removeHandler(counter)
    missing = run.admitted - broker.received
    assert len(missing) <= counter.reported, (sorted(missing), counter.reported)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(st.sampled_from(ACTIONS), max_size=30), st.booleans())
def test_random_interleavings_keep_the_contract(actions: list[str], with_policy: bool) -> None:
    trio.run(scenario, actions, with_policy, clock=trio.testing.MockClock(autojump_threshold=0))
