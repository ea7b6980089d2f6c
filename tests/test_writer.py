"""The writer's send policy: a lone packet goes out at once, a stream of packets is coalesced.

Counted in scheduling steps and ``send_all`` calls over an in-memory stream (tests/fake_broker.py),
so the result does not depend on the machine's speed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio
import trio.testing
from fake_broker import FakeBroker, ScriptedPeer

from trio_mqtt import MqttConnection, MqttOptions, QoS, open_mqtt_connection
from trio_mqtt.sansio import ProtocolVersion, PubAck, Publish, encode


class WriterSteps(trio.abc.Instrument):
    """Counts the scheduling steps of the event loop's writer task."""

    def __init__(self) -> None:
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name.endswith("._write"):
            self.steps += 1


@dataclass
class RecordingTransport:
    """A FakeBroker transport whose client end records every ``send_all``."""

    broker: FakeBroker
    instrument: WriterSteps
    sends: list[tuple[int, bytes]] = field(default_factory=list)

    async def open_stream(self, host: str, port: int, *, max_packet_size: int) -> trio.abc.Stream:
        inner = await self.broker.open_stream(host, port, max_packet_size=max_packet_size)
        return _Recording(inner, self)


class _Recording(trio.abc.Stream):
    def __init__(self, inner: trio.abc.Stream, owner: RecordingTransport) -> None:
        self._inner = inner
        self._owner = owner

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self._owner.sends.append((self._owner.instrument.steps, bytes(data)))
        await self._inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self._inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def swallow(peer: ScriptedPeer) -> None:
    await peer.accept()
    while True:
        await peer.receive()


@asynccontextmanager
async def counted_connection(
    nursery: trio.Nursery, script: Callable[[ScriptedPeer], Awaitable[None]], client_id: str
) -> AsyncIterator[tuple[MqttConnection, WriterSteps, RecordingTransport]]:
    """A connection to a scripted peer, its writer's steps counted and its sends recorded."""
    instrument = WriterSteps()
    transport = RecordingTransport(FakeBroker(nursery, script), instrument)
    trio.lowlevel.add_instrument(instrument)
    try:
        with trio.fail_after(10):
            options = MqttOptions(client_id, "fake", 1883, transport=transport)  # type: ignore[arg-type]
            async with open_mqtt_connection(options) as conn:
                yield conn, instrument, transport
    finally:
        trio.lowlevel.remove_instrument(instrument)


async def test_a_lone_publish_is_sent_on_the_writers_first_step(nursery: trio.Nursery) -> None:
    async with counted_connection(nursery, swallow, "lone") as (conn, instrument, transport):
        for round_trip in range(3):
            await trio.testing.wait_all_tasks_blocked()  # the writer went idle
            before_steps, before_sends = instrument.steps, len(transport.sends)
            await conn.client.publish("lone", b"%d" % round_trip)
            while len(transport.sends) == before_sends:
                await trio.lowlevel.checkpoint()
            steps, data = transport.sends[before_sends]
            # woken by the publish, the writer sends in that very step
            # one step finishes the PUBACK's send_all (a checkpoint), the next sends
            # the publish; held back as a "stream" it would take two rounds more
            assert steps - before_steps <= 2
            assert data == encode(Publish("lone", b"%d" % round_trip), ProtocolVersion.V311)


async def test_a_stream_of_publishes_is_coalesced(nursery: trio.Nursery) -> None:
    instrument = WriterSteps()
    transport = RecordingTransport(FakeBroker(nursery, swallow), instrument)
    with trio.fail_after(10):
        options = MqttOptions("stream", "fake", 1883, transport=transport)  # type: ignore[arg-type]
        async with open_mqtt_connection(options) as conn:
            await trio.testing.wait_all_tasks_blocked()
            before = len(transport.sends)
            for n in range(300):  # one publish per scheduling round
                await conn.client.publish("stream", b"%d" % n, qos=QoS.AT_MOST_ONCE)
            await trio.testing.wait_all_tasks_blocked()
            sends = transport.sends[before:]
    sent = b"".join(data for _, data in sends)
    assert sent == b"".join(
        encode(Publish("stream", b"%d" % n), ProtocolVersion.V311) for n in range(300)
    )
    # the first goes out alone (the writer was idle); the rest share a few sends
    assert len(sends) <= 300 // 4


async def test_a_publish_right_after_an_ack_is_not_held_back(nursery: trio.Nursery) -> None:
    # the round trip of a request/response program: a QoS 1 message arrives, its PUBACK goes
    # out, and the application publishes at once. Only publishes following publishes count
    # as a stream; this one must go out on the writer's first step, not wait for more.
    async def deliver_then_swallow(peer: ScriptedPeer) -> None:
        await peer.accept()
        for packet_id in (1, 2, 3):
            await peer.send(Publish("in", b"q", qos=QoS.AT_LEAST_ONCE, packet_id=packet_id))
            while not isinstance(await peer.receive(), Publish):
                pass  # the PUBACK, then the client's own publish

    script = deliver_then_swallow
    async with counted_connection(nursery, script, "after-ack") as (conn, instrument, transport):
        messages = conn.messages()
        for round_trip in range(3):
            await anext(messages)
            puback = encode(PubAck(round_trip + 1), ProtocolVersion.V311)
            while not any(puback in data for _, data in transport.sends):
                await trio.lowlevel.checkpoint()  # the PUBACK just went out
            before_steps, before_sends = instrument.steps, len(transport.sends)
            await conn.client.publish("out", b"%d" % round_trip)
            expected = encode(Publish("out", b"%d" % round_trip), ProtocolVersion.V311)
            while not any(expected in data for _, data in transport.sends[before_sends:]):
                await trio.lowlevel.checkpoint()
            steps = next(s for s, data in transport.sends[before_sends:] if expected in data)
            # one step finishes the PUBACK's send_all (a checkpoint), the next sends
            # the publish; held back as a "stream" it would take two rounds more
            assert steps - before_steps <= 2
