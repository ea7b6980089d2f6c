"""What a publish gets at ``max_queued``: each ``queue_full`` policy, through the Trio client.

A scripted broker accepts the connection and never acknowledges anything, so with a window of
one every further publish waits in the queue; the queue's own rules are property-tested in
``tests/core/test_state_queue.py``.
"""

from __future__ import annotations

import logging

import pytest
import trio
from fake_broker import FakeBroker, ScriptedPeer  # tests/ is on sys.path under pytest

from trio_mqtt import (
    MemorySessionStore,
    MqttOptions,
    PublishDiscarded,
    PublishDropped,
    QueueFullError,
    QueueFullPolicy,
    open_mqtt_connection,
)


async def silent(peer: ScriptedPeer) -> None:
    """Accept, then read everything and answer nothing."""
    await peer.accept()
    try:
        while True:
            await peer.receive()
    except EOFError:
        pass


def options_for(broker: FakeBroker, policy: str) -> MqttOptions:
    return MqttOptions(
        "c", transport=broker, inflight=1, max_queued=2, queue_full=policy, keep_alive=0
    )


async def test_block_waits_cancellably_and_admits_nothing_when_cancelled() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            options = options_for(FakeBroker(nursery, silent), "block")
            async with open_mqtt_connection(options) as conn:
                for seq in range(3):  # one in flight, two waiting
                    await conn.client.publish("t", b"%d" % seq, qos=1)
                with pytest.raises(trio.WouldBlock):
                    conn.client.publish_nowait("t", b"3", qos=1)
                with trio.move_on_after(0.2) as scope:
                    await conn.client.publish("t", b"3", qos=1)
                assert scope.cancelled_caught
                stats = conn.statistics()
                assert (stats.inflight, stats.waiting_publishes) == (1, 2)
                await conn.client.disconnect(grace_period=0)
            nursery.cancel_scope.cancel()


async def test_reject_raises_at_the_call_and_the_twin_too() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            options = options_for(FakeBroker(nursery, silent), "reject")
            async with open_mqtt_connection(options) as conn:
                for seq in range(3):
                    await conn.client.publish("t", b"%d" % seq, qos=2)
                with pytest.raises(QueueFullError, match="max_queued"):
                    await conn.client.publish("t", b"3", qos=2)
                with pytest.raises(QueueFullError):
                    conn.client.publish_tracked_nowait("t", b"4", qos=0)
                assert conn.statistics().waiting_publishes == 2
                await conn.client.disconnect(grace_period=0)
            nursery.cancel_scope.cancel()


async def test_drop_oldest_drops_counts_reports_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            options = options_for(FakeBroker(nursery, silent), "drop_oldest")
            assert options.queue_full is QueueFullPolicy.DROP_OLDEST
            async with open_mqtt_connection(options) as conn:
                await conn.client.publish("t", b"0", qos=1)  # in flight
                oldest = await conn.client.publish_tracked("t", b"1", qos=1)
                await conn.client.publish("t", b"2", qos=1)
                with caplog.at_level(logging.WARNING, logger="trio_mqtt"):
                    await conn.client.publish("t", b"3", qos=1)  # drops b"1"
                    await conn.client.publish("t", b"4", qos=1)  # drops b"2"
                with pytest.raises(PublishDiscarded, match="drop_oldest"):
                    await oldest.wait()
                stats = conn.statistics()
                assert (stats.waiting_publishes, stats.publishes_dropped_oldest) == (2, 2)
                dropped: list[PublishDropped] = []
                while len(dropped) < 2:
                    event = await conn.poll()
                    if isinstance(event, PublishDropped):
                        dropped.append(event)
                assert [(e.reason, e.publish.payload) for e in dropped] == [
                    ("queue full", b"1"),
                    ("queue full", b"2"),
                ]
                warnings = [r for r in caplog.records if "drop_oldest" in r.getMessage()]
                assert len(warnings) == 1  # logged, and not once per drop
                await conn.client.disconnect(grace_period=0)
            nursery.cancel_scope.cancel()


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="queue_full must be one of 'block', 'reject'"):
        MqttOptions("c", queue_full="drop_newest")
    with pytest.raises(ValueError, match="max_queued"):
        MqttOptions("c", max_queued=0)


async def test_a_memory_store_carries_the_queue_to_the_next_block() -> None:
    store = MemorySessionStore()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            options = options_for(FakeBroker(nursery, silent), "block").replace(
                clean_start=False, session_store=store, max_queued=3
            )
            async with open_mqtt_connection(options) as conn:
                for seq in range(3):
                    await conn.client.publish("t", b"%d" % seq, qos=1)
                await conn.client.publish("t", b"qos 0", qos=0)  # waits too, is not kept
                await conn.client.disconnect(grace_period=0)
            nursery.cancel_scope.cancel()
    kept = store.snapshot("c")
    assert [p.payload for p in kept.outgoing] == [b"0"]  # type: ignore[union-attr]
    assert [q.publish.payload for q in kept.queued] == [b"1", b"2"]
