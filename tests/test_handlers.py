"""Ordered concurrent handlers (``MessageStream.handle``) against mosquitto, and the pool's rules
as a property test over random arrivals and handler durations.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict

import pytest
import trio
import trio.testing
from broker_clients import options_for, wait_received
from hypothesis import given, settings, strategies as st

from trio_mqtt import (
    ConnectionClosed,
    InvalidOptionError,
    ProtocolVersion,
    Publish,
    QoS,
    open_mqtt_connection,
)
from trio_mqtt._handlers import run_ordered
from trio_mqtt.testing import MosquittoBroker


async def test_order_per_key_is_kept_with_random_handler_delays(
    mosquitto: MosquittoBroker,
) -> None:
    rng = random.Random(16)
    topics = [f"ord/{name}" for name in "abcde"]
    total = 200
    seen: dict[str, list[int]] = defaultdict(list)
    running = 0
    most_running = 0
    everything = trio.Event()

    async def handler(message: Publish) -> None:
        nonlocal running, most_running
        running += 1
        most_running = max(most_running, running)
        await trio.sleep(rng.random() * 0.004)  # a handler's work, of random length
        seen[message.topic].append(int(message.payload))
        running -= 1
        if sum(map(len, seen.values())) == total:
            everything.set()

    options = options_for(mosquitto, "handlers-order", manual_acks=True)
    with trio.fail_after(20):
        async with (
            open_mqtt_connection(options) as conn,
            conn.route("ord/#", qos=QoS.AT_LEAST_ONCE) as stream,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(lambda: stream.handle(handler, workers=4))
            sent: dict[str, list[int]] = defaultdict(list)
            for n in range(total):
                topic = rng.choice(topics)
                sent[topic].append(n)
                await conn.client.publish(topic, str(n), qos=QoS.AT_LEAST_ONCE)
            await everything.wait()
            nursery.cancel_scope.cancel()
    assert seen == sent
    assert 1 < most_running <= 4


async def test_key_function_orders_across_topics(mosquitto: MosquittoBroker) -> None:
    # the key is the device named in the payload: one device's readings stay in order even
    # though they arrive on several topics
    seen: dict[str, list[int]] = defaultdict(list)
    done = trio.Event()
    rng = random.Random(3)

    async def handler(message: Publish) -> None:
        device, n = message.payload.decode().split(":")
        await trio.sleep(rng.random() * 0.003)
        seen[device].append(int(n))
        if sum(map(len, seen.values())) == 60:
            done.set()

    def device(message: Publish) -> str:
        return message.payload.decode().split(":")[0]

    with trio.fail_after(20):
        async with (
            open_mqtt_connection(options_for(mosquitto, "handlers-key")) as conn,
            conn.route("key/#", qos=QoS.AT_LEAST_ONCE) as stream,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(lambda: stream.handle(handler, workers=3, key=device))
            for n in range(60):
                await conn.client.publish(f"key/{n % 7}", f"dev{n % 3}:{n}", qos=1)
            await done.wait()
            nursery.cancel_scope.cancel()
    assert seen == {f"dev{d}": list(range(d, 60, 3)) for d in range(3)}


async def test_parallelism_is_used_and_bounded(mosquitto: MosquittoBroker) -> None:
    running = 0
    started: list[str] = []
    all_busy = trio.Event()
    release = trio.Event()
    finished: list[str] = []

    async def handler(message: Publish) -> None:
        nonlocal running
        running += 1
        started.append(message.topic)
        if running == 3:
            all_busy.set()
        await release.wait()  # held until the test has looked
        running -= 1
        finished.append(message.topic)

    with trio.fail_after(10):
        async with (
            open_mqtt_connection(options_for(mosquitto, "handlers-parallel")) as conn,
            conn.route("par/#", qos=QoS.AT_LEAST_ONCE) as stream,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(lambda: stream.handle(handler, workers=3))
            for n in range(5):
                await conn.client.publish(f"par/{n}", b"", qos=QoS.AT_LEAST_ONCE)
            # three handlers run at once (a serial pool would never get here: fail_after)
            await all_busy.wait()
            await wait_received(conn, 5)
            await trio.testing.wait_all_tasks_blocked(0.05)
            assert running == 3  # and no more: the other two keys wait for a worker
            assert sorted(started) == ["par/0", "par/1", "par/2"]  # the oldest keys first
            release.set()
            while len(finished) < 5:  # noqa: ASYNC110 - a counter, no event
                await trio.sleep(0.005)
            nursery.cancel_scope.cancel()
    assert sorted(finished) == [f"par/{n}" for n in range(5)]


async def test_at_the_bound_the_route_fills_and_the_reader_pauses(
    mosquitto: MosquittoBroker,
) -> None:
    # Messages larger than the reader's 256 KiB read size: each read completes at most one,
    # so the count of messages received shows exactly where the reader stopped.
    payload = b"x" * 300_000
    release = trio.Event()
    handled: list[int] = []

    async def handler(message: Publish) -> None:
        await release.wait()
        handled.append(int(message.payload[:2]))

    options = options_for(mosquitto, "handlers-bound", manual_acks=True)
    with trio.fail_after(20):
        async with (
            open_mqtt_connection(options_for(mosquitto, "handlers-bound-pub")) as publisher,
            open_mqtt_connection(options) as conn,
            conn.route("bound/#", qos=QoS.AT_LEAST_ONCE, capacity=2) as stream,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(lambda: stream.handle(handler, workers=1, max_pending=2))
            for n in range(8):
                await publisher.client.publish("bound/t", b"%02d" % n + payload, qos=1)
            await wait_received(conn, 4)
            await trio.testing.wait_all_tasks_blocked(0.1)
            # two taken by the pool (one in the handler, one waiting), two in the full route,
            # and nothing more read from the broker
            assert stream.buffered == 2
            assert conn.statistics().publishes_received == 4
            assert handled == []
            release.set()
            while len(handled) < 8:  # noqa: ASYNC110 - a counter, no event
                await trio.sleep(0.005)
            nursery.cancel_scope.cancel()
    assert handled == list(range(8))


@pytest.mark.parametrize("version", [ProtocolVersion.V311, ProtocolVersion.V5])
async def test_unfinished_messages_come_again_after_a_restart(
    mosquitto: MosquittoBroker, version: ProtocolVersion
) -> None:
    # Message 2's handler never returns. Acks go out in arrival order, so 0 and 1 are acked;
    # 3-5 finished but wait behind 2. The connection is killed (cancelled, no DISCONNECT
    # wait): the resumed session gets 2-5 again, and never 0 or 1.
    options = options_for(
        mosquitto,
        f"handlers-redeliver-{version}",
        protocol_version=version,
        manual_acks=True,
        clean_start=False,
        session_expiry_interval=60 if version == ProtocolVersion.V5 else None,
    )
    done: set[int] = set()
    stuck = trio.Event()

    async def handler(message: Publish) -> None:
        n = int(message.payload)
        if n == 2:
            stuck.set()
            await trio.sleep_forever()
        done.add(n)

    with trio.fail_after(20):
        async with open_mqtt_connection(options.replace(clean_start=True)):
            pass  # start from an empty session
        with trio.CancelScope() as kill:
            async with (
                open_mqtt_connection(options) as conn,
                conn.route("redo/#") as stream,  # no qos: leaving must not unsubscribe
                trio.open_nursery() as nursery,
            ):
                await conn.client.subscribe("redo/#", QoS.AT_LEAST_ONCE)
                nursery.start_soon(lambda: stream.handle(handler, workers=2))
                for n in range(6):
                    await conn.client.publish(f"redo/{n}", str(n), qos=QoS.AT_LEAST_ONCE)
                await stuck.wait()
                while done != {0, 1, 3, 4, 5}:  # noqa: ASYNC110 - a set, no event
                    await trio.sleep(0.005)
                await trio.testing.wait_all_tasks_blocked()  # the acker handed its acks over
                # a round trip the broker answers only after reading the acks before it
                await (await conn.client.publish_tracked("redo-done", "", qos=1)).wait()
                kill.cancel()
        again: list[tuple[int, bool]] = []
        async with open_mqtt_connection(options) as conn:
            assert conn.connack is not None
            assert conn.connack.session_present
            async for message in conn.messages():
                again.append((int(message.payload), message.dup))
                await conn.client.ack(message)
                if len(again) == 4:
                    break
            # nothing else comes: a tracked round trip after the redeliveries shows the end
            await (await conn.client.publish_tracked("redo-done", "", qos=1)).wait()
            assert conn.statistics().publishes_received == 4
    assert again == [(2, True), (3, True), (4, True), (5, True)]


async def test_raise_policy_cancels_the_route_and_raises_the_error(
    mosquitto: MosquittoBroker,
) -> None:
    handled: list[int] = []
    cancelled: list[int] = []

    async def handler(message: Publish) -> None:
        n = int(message.payload)
        if n == 3:
            raise ValueError("bad message 3")
        if n == 1:
            try:
                await trio.sleep_forever()  # still running when 3 fails
            except trio.Cancelled:
                cancelled.append(n)
                raise
        handled.append(n)

    with trio.fail_after(10):
        async with open_mqtt_connection(options_for(mosquitto, "handlers-raise")) as conn:
            with pytest.raises(ValueError, match="bad message 3"):
                async with conn.route("raise/#", qos=QoS.AT_LEAST_ONCE) as stream:
                    for n in range(5):
                        await conn.client.publish(f"raise/{n}", str(n), qos=1)
                    await stream.handle(handler, workers=2)
    assert cancelled == [1]
    assert 3 not in handled


async def test_log_policy_reports_and_goes_on(
    mosquitto: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    handled: list[int] = []

    async def handler(message: Publish) -> None:
        n = int(message.payload)
        if n % 2:
            raise ValueError(f"odd {n}")
        handled.append(n)

    with trio.fail_after(10), caplog.at_level(logging.ERROR, logger="trio_mqtt"):
        async with (
            open_mqtt_connection(options_for(mosquitto, "handlers-log", manual_acks=True)) as conn,
            conn.route("log/#", qos=QoS.AT_LEAST_ONCE) as stream,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(lambda: stream.handle(handler, workers=2, on_error="log"))
            for n in range(6):
                await conn.client.publish("log/t", str(n), qos=QoS.AT_LEAST_ONCE)
            while len(handled) < 3:  # noqa: ASYNC110 - a counter, no event
                await trio.sleep(0.005)
            nursery.cancel_scope.cancel()
    assert handled == [0, 2, 4]
    failures = [r for r in caplog.records if r.exc_info and r.exc_info[0] is ValueError]
    assert [str(r.exc_info[1]) for r in failures if r.exc_info] == ["odd 1", "odd 3", "odd 5"]


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_error_callback_reports_and_goes_on(
    mosquitto: MosquittoBroker, asynchronous: bool
) -> None:
    reports: list[tuple[int, str]] = []
    handled: list[int] = []

    async def handler(message: Publish) -> None:
        n = int(message.payload)
        if n == 1:
            raise KeyError("one")
        handled.append(n)

    def report(message: Publish, exc: Exception) -> None:
        reports.append((int(message.payload), type(exc).__name__))

    async def report_async(message: Publish, exc: Exception) -> None:
        await trio.lowlevel.checkpoint()
        report(message, exc)

    on_error = report_async if asynchronous else report
    with trio.fail_after(10):
        async with (
            open_mqtt_connection(options_for(mosquitto, f"handlers-cb-{asynchronous}")) as conn,
            conn.route("cb/#", qos=QoS.AT_LEAST_ONCE) as stream,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(lambda: stream.handle(handler, on_error=on_error))
            for n in range(3):
                await conn.client.publish("cb/t", str(n), qos=QoS.AT_LEAST_ONCE)
            while len(handled) < 2:  # noqa: ASYNC110 - a counter, no event
                await trio.sleep(0.005)
            nursery.cancel_scope.cancel()
    assert reports == [(1, "KeyError")]
    assert handled == [0, 2]


async def test_handle_returns_when_the_connection_closes(mosquitto: MosquittoBroker) -> None:
    handled: list[int] = []

    async def handler(message: Publish) -> None:
        await trio.sleep(0.01)
        handled.append(int(message.payload))

    with trio.fail_after(10):
        async with open_mqtt_connection(options_for(mosquitto, "handlers-end")) as conn:
            async with conn.route("end/#", qos=QoS.AT_LEAST_ONCE) as stream:
                for n in range(4):
                    await conn.client.publish("end/t", str(n), qos=QoS.AT_LEAST_ONCE)
                await wait_received(conn, 4)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(lambda: stream.handle(handler, workers=2))
                    await trio.testing.wait_all_tasks_blocked()
                    await conn.client.disconnect()
            # every message taken was handled before handle() returned
            assert handled == [0, 1, 2, 3]


async def test_bad_arguments_raise_at_the_call(mosquitto: MosquittoBroker) -> None:
    async def handler(message: Publish) -> None:
        raise AssertionError("never called")

    with trio.fail_after(10):
        async with (
            open_mqtt_connection(options_for(mosquitto, "handlers-args")) as conn,
            conn.route("args") as stream,
        ):
            with pytest.raises(InvalidOptionError, match="workers"):
                await stream.handle(handler, workers=0)
            with pytest.raises(InvalidOptionError, match="max_pending"):
                await stream.handle(handler, max_pending=0)
            with pytest.raises(InvalidOptionError, match="on_error"):
                await stream.handle(handler, on_error="ignore")  # type: ignore[arg-type]


# ---------------------------------------------------------------- the pool's rules, in general


class ListSource:
    """Messages arriving in batches (as a route hands them out), then the end of the stream."""

    def __init__(self, batches: list[list[Publish]]) -> None:
        self._batches = batches
        self.taken = 0

    async def receive_batch(self, max_batch: int = 1000) -> list[Publish]:
        await trio.lowlevel.checkpoint()
        while self._batches and not self._batches[0]:
            self._batches.pop(0)
        if not self._batches:
            raise ConnectionClosed("end of the test stream")
        first = self._batches[0]
        batch, self._batches[0] = first[:max_batch], first[max_batch:]
        self.taken += len(batch)
        return batch


arrivals = st.lists(
    st.tuples(st.integers(0, 4), st.integers(0, 5)),  # (key, handler duration in ms)
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(
    arrivals=arrivals,
    workers=st.integers(1, 5),
    max_pending=st.integers(1, 8),
    batch_size=st.integers(1, 6),
    acking=st.booleans(),
)
def test_pool_keeps_key_order_ack_order_and_its_bounds(
    arrivals: list[tuple[int, int]], workers: int, max_pending: int, batch_size: int, acking: bool
) -> None:
    messages = [
        Publish(f"k/{key}", str(duration).encode(), QoS.AT_LEAST_ONCE, packet_id=n + 1)
        for n, (key, duration) in enumerate(arrivals)
    ]
    batches = [messages[i : i + batch_size] for i in range(0, len(messages), batch_size)]
    source = ListSource(batches)
    finished: list[int] = []
    acked: list[int] = []
    running = 0
    most_running = 0
    most_pending = 0

    async def handler(message: Publish) -> None:
        nonlocal running, most_running, most_pending
        running += 1
        most_running = max(most_running, running)
        most_pending = max(most_pending, source.taken - len(acked if acking else released))
        await trio.sleep(int(message.payload) / 1000)
        running -= 1
        finished.append(message.packet_id)
        released[:] = released_prefix()

    async def acknowledge(message: Publish) -> None:
        assert message.packet_id in finished  # only after its handler returned
        acked.append(message.packet_id)

    def released_prefix() -> list[int]:
        # without acks, a message stops being pending once it and all before it finished
        done = set(finished)
        prefix = []
        for m in messages:
            if m.packet_id not in done:
                break
            prefix.append(m.packet_id)
        return prefix

    released: list[int] = []

    async def main() -> None:
        with trio.fail_after(60):
            await run_ordered(
                source,
                handler,
                acknowledge=acknowledge if acking else None,
                workers=workers,
                key=None,
                max_pending=max_pending,
                on_error="raise",
            )

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    if acking:
        assert acked == [m.packet_id for m in messages]  # every one, in arrival order
    else:
        assert acked == []
        assert sorted(finished) == [m.packet_id for m in messages]
    for key in range(5):
        of_key = [m.packet_id for m in messages if m.topic == f"k/{key}"]
        assert [pid for pid in finished if pid in of_key] == of_key
    assert most_running <= workers
    assert most_pending <= max_pending
