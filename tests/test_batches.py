"""Batch reads against mosquitto: ``message_batches()`` and ``MessageStream.receive_batch()``."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from broker_clients import options_for, wait_received

from trio_mqtt import (
    ConnectionLost,
    InvalidOptionError,
    MqttOptions,
    QoS,
    open_mqtt_connection,
)
from trio_mqtt.testing import MosquittoBroker, open_fault_proxy


async def test_batches_hold_every_buffered_message_in_order(mosquitto: MosquittoBroker) -> None:
    with trio.fail_after(10):
        async with open_mqtt_connection(options_for(mosquitto, "batches")) as conn:
            await conn.client.subscribe("batch/#", QoS.AT_LEAST_ONCE)
            for i in range(30):
                await conn.client.publish(f"batch/{i}", str(i), qos=QoS.AT_LEAST_ONCE)
            await wait_received(conn, 30)
            # the buffer also holds Outgoing events (PUBLISH, PUBACK): they are skipped
            assert conn.statistics().buffered_events > 30
            batches = conn.message_batches(max_batch=12)
            sizes = []
            payloads = []
            async for batch in batches:
                sizes.append(len(batch))
                payloads += [message.payload for message in batch]
                if len(payloads) == 30:
                    break
            assert sizes == [12, 12, 6]
            assert payloads == [str(i).encode() for i in range(30)]
            assert conn.statistics().buffered_events == 0


async def test_batch_waits_for_the_first_message(mosquitto: MosquittoBroker) -> None:
    with trio.fail_after(10):
        async with open_mqtt_connection(options_for(mosquitto, "batch-wait")) as conn:
            await conn.client.subscribe("later", QoS.AT_MOST_ONCE)
            batches = conn.message_batches()
            async with trio.open_nursery() as nursery:
                got: list[list[bytes]] = []

                async def consume() -> None:
                    got.append([message.payload for message in await anext(batches)])

                nursery.start_soon(consume)
                await trio.testing.wait_all_tasks_blocked()
                assert got == []  # nothing published yet: the step waits
                await conn.client.publish("later", b"now")
            assert got == [[b"now"]]


class _StepCounter(trio.abc.Instrument):
    """Counts the scheduling steps of tasks whose name ends with ``suffix``."""

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix
        self.count = 0

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name.endswith(self.suffix):
            self.count += 1


async def test_a_waiting_messages_iterator_skips_other_events_without_waking(
    mosquitto: MosquittoBroker,
) -> None:
    # publishes to a topic nobody subscribed make Outgoing/ack events only: the waiting
    # messages() task consumes them where they arrive, so it is not scheduled for them and
    # they never fill the buffer
    with trio.fail_after(10):
        async with open_mqtt_connection(options_for(mosquitto, "skip-events")) as conn:
            await conn.client.subscribe("wanted", QoS.AT_LEAST_ONCE)
            got: list[bytes] = []

            async def consume() -> None:
                async for message in conn.messages():
                    got.append(message.payload)
                    return

            steps = _StepCounter("consume")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(consume)
                await trio.testing.wait_all_tasks_blocked()
                trio.lowlevel.add_instrument(steps)
                for i in range(200):
                    await conn.client.publish("unwanted", str(i), qos=QoS.AT_LEAST_ONCE)
                tracker = await conn.client.publish_tracked("unwanted", b"last", qos=1)
                await tracker.wait()
                trio.lowlevel.remove_instrument(steps)
                assert got == []
                assert steps.count == 0  # 400+ events, and the consumer never ran
                stats = conn.statistics()
                assert stats.buffered_events == 0
                assert stats.dropped_events == 0
                await conn.client.publish("wanted", b"yes", qos=QoS.AT_LEAST_ONCE)
            assert got == [b"yes"]


async def test_poll_beside_a_waiting_messages_iterator_still_sees_events(
    mosquitto: MosquittoBroker,
) -> None:
    with trio.fail_after(10):
        async with (
            open_mqtt_connection(options_for(mosquitto, "poll-beside")) as conn,
            trio.open_nursery() as nursery,
        ):

            async def wait_for_a_message() -> None:
                async for _message in conn.messages():
                    return

            nursery.start_soon(wait_for_a_message)
            await trio.testing.wait_all_tasks_blocked()
            with trio.fail_after(5):
                async with trio.open_nursery() as polling:
                    seen: list[object] = []

                    async def poll_one() -> None:
                        seen.append(await conn.poll())

                    polling.start_soon(poll_one)
                    await trio.testing.wait_all_tasks_blocked()
                    await conn.client.publish("beside", b"x")
            assert [type(event).__name__ for event in seen] == ["Outgoing"]
            nursery.cancel_scope.cancel()


async def test_error_after_a_batch_comes_on_the_next_step(mosquitto: MosquittoBroker) -> None:
    with trio.fail_after(10):
        async with open_fault_proxy(mosquitto.host, mosquitto.port) as proxy:
            options = MqttOptions("batch-error", proxy.host, proxy.port)
            async with open_mqtt_connection(options) as conn:
                await conn.client.subscribe("cut/#", QoS.AT_LEAST_ONCE)
                for i in range(5):
                    await conn.client.publish(f"cut/{i}", str(i), qos=QoS.AT_LEAST_ONCE)
                await wait_received(conn, 5)
                proxy.cut()
                while conn.statistics().connected:  # noqa: ASYNC110 - a flag, no event
                    await trio.sleep(0.005)
                batches = conn.message_batches()
                batch = await anext(batches)
                assert [message.payload for message in batch] == [b"0", b"1", b"2", b"3", b"4"]
                with pytest.raises(ConnectionLost):
                    await anext(batches)


async def test_route_receive_batch(mosquitto: MosquittoBroker) -> None:
    with trio.fail_after(10):
        async with (
            open_mqtt_connection(options_for(mosquitto, "route-batch")) as conn,
            conn.route("rb/#", qos=QoS.AT_LEAST_ONCE, capacity=50) as stream,
        ):
            for i in range(20):
                await conn.client.publish(f"rb/{i}", str(i), qos=QoS.AT_LEAST_ONCE)
            await wait_received(conn, 20)
            first = await stream.receive_batch(max_batch=15)
            second = await stream.receive_batch()
            assert [m.payload for m in first + second] == [str(i).encode() for i in range(20)]
            assert (len(first), len(second)) == (15, 5)


async def test_route_read_with_receive_nowait_resumes_a_paused_reader(
    mosquitto: MosquittoBroker,
) -> None:
    # a full overflow="wait" route pauses the reader; taking messages with receive_nowait()
    # alone must make room again, or the remaining messages would never be read
    with trio.fail_after(10):
        async with (
            open_mqtt_connection(options_for(mosquitto, "route-nowait")) as conn,
            conn.route("rn/#", qos=QoS.AT_LEAST_ONCE, capacity=2) as stream,
        ):
            for i in range(8):
                await conn.client.publish(f"rn/{i}", str(i), qos=QoS.AT_LEAST_ONCE)
            received: list[bytes] = []
            while len(received) < 8:
                try:
                    received.append(stream.receive_nowait().payload)
                except trio.WouldBlock:
                    await trio.sleep(0.005)
            assert received == [str(i).encode() for i in range(8)]


async def test_max_batch_must_be_positive(mosquitto: MosquittoBroker) -> None:
    with trio.fail_after(10):
        async with (
            open_mqtt_connection(options_for(mosquitto, "batch-limit")) as conn,
            conn.route("x") as stream,
        ):
            with pytest.raises(InvalidOptionError):
                conn.message_batches(max_batch=0)
            with pytest.raises(InvalidOptionError):
                await stream.receive_batch(max_batch=0)


async def test_outgoing_events_of_fast_publishes_come_in_order(mosquitto: MosquittoBroker) -> None:
    # an untracked publish leaves its Outgoing event for the writer to collect with the
    # bytes; the stream still shows every one, in admission order, before their echoes
    with trio.fail_after(10):
        async with open_mqtt_connection(options_for(mosquitto, "fast-outgoing")) as conn:
            await conn.client.subscribe("fast/out", QoS.AT_MOST_ONCE)
            while True:  # skip the SUBSCRIBE/SUBACK events
                try:
                    conn.poll_nowait()
                except trio.WouldBlock:
                    break
            for i in range(5):
                conn.client.publish_nowait("fast/out", str(i))
            await wait_received(conn, 5)
            seen: list[tuple[str, bytes]] = []
            while len(seen) < 10:
                event = conn.poll_nowait()
                seen.append((type(event).__name__, event.packet.payload))  # type: ignore[union-attr]
    sent = [payload for kind, payload in seen if kind == "Outgoing"]
    assert sent == [str(i).encode() for i in range(5)]
    assert [kind for kind, _ in seen][:5] == ["Outgoing"] * 5
