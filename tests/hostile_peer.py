"""Scripted hostile brokers: run a client against a peer that breaks the protocol on purpose.

:func:`run_against` starts a :class:`~tests.fake_broker.FakeBroker` whose first connection is
served by a script (CONNACK, then whatever the test wants to send), connects a real
:func:`~trio_mqtt.open_mqtt_connection` to it and polls events until the connection fails. It
returns what happened on both sides: the error the application saw, every packet the broker
received and whether the client closed the connection. It is meant for ``autojump_clock``
tests: no real sockets, no real waiting.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio
from fake_broker import FakeBroker, ScriptedPeer  # tests/ is on sys.path under pytest

from trio_mqtt import MqttOptions, ProtocolVersion, open_mqtt_connection
from trio_mqtt.sansio import ConnAck, Connect, Disconnect, Packet, Properties

Script = Callable[[ScriptedPeer], Awaitable[None]]


@dataclass
class Outcome:
    """What a hostile session produced.

    Attributes:
        error: the exception ``poll()`` (or entering the connection) raised.
        connect: the CONNECT the broker received.
        received: packets the broker received after CONNECT, in order.
        closed: the client closed the connection (the broker saw end of file).
        elapsed: seconds from CONNACK until the error reached the application.
        events: the events ``poll()`` returned before the error.
    """

    error: BaseException | None = None
    connect: Connect | None = None
    received: list[Packet] = field(default_factory=list)
    closed: bool = False
    elapsed: float = 0.0
    events: list[object] = field(default_factory=list)

    @property
    def disconnect(self) -> Disconnect | None:
        """The DISCONNECT the client sent, if any."""
        for packet in self.received:
            if isinstance(packet, Disconnect):
                return packet
        return None


def connack(peer: ScriptedPeer, properties: Properties | None = None) -> bytes:
    """Encoded successful CONNACK for ``peer``'s protocol version."""
    from trio_mqtt.sansio import encode

    packet = ConnAck(False, 0, properties or Properties())
    return encode(packet, peer.version)


async def run_against(
    script: Script,
    *,
    version: ProtocolVersion = ProtocolVersion.V311,
    connack_properties: Properties | None = None,
    send_connack: bool = True,
    during: Callable[[object], Awaitable[None]] | None = None,
    **options: object,
) -> Outcome:
    """Connect to a broker running ``script`` after CONNECT (and CONNACK); poll until failure.

    Args:
        script: what the broker does once the client is connected.
        version: protocol version of the client.
        connack_properties: v5 properties of the CONNACK.
        send_connack: send the CONNACK before running the script.
        during: run in a task alongside the polling (gets the connection), e.g. to subscribe.
        options: more :class:`~trio_mqtt.MqttOptions` arguments.
    """
    outcome = Outcome()
    peer_done = trio.Event()
    connected_at = [0.0]

    async def handler(peer: ScriptedPeer) -> None:
        try:
            connect = await peer.receive()
            assert isinstance(connect, Connect)
            outcome.connect = connect
            if send_connack:
                await peer.stream.send_all(connack(peer, connack_properties))
            connected_at[0] = trio.current_time()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_quietly, script, peer)
                await _drain(peer, outcome)
                nursery.cancel_scope.cancel()
        finally:
            peer_done.set()

    async with trio.open_nursery() as nursery:
        broker = FakeBroker(nursery, handler)
        settings = MqttOptions(
            "hostile",
            transport=broker,
            protocol_version=version,
            reconnect=None,
            **options,  # type: ignore[arg-type]
        )
        try:
            async with open_mqtt_connection(settings) as conn, trio.open_nursery() as inner:
                if during is not None:
                    inner.start_soon(during, conn)
                try:
                    while True:
                        outcome.events.append(await conn.poll())
                except Exception as exc:
                    outcome.error = exc
                    outcome.elapsed = trio.current_time() - connected_at[0]
                inner.cancel_scope.cancel()
        except Exception as exc:
            if outcome.error is None:
                outcome.error = exc
                outcome.elapsed = trio.current_time() - connected_at[0]
        await peer_done.wait()
        nursery.cancel_scope.cancel()
    return outcome


async def _drain(peer: ScriptedPeer, outcome: Outcome) -> None:
    """Record every packet the client sends until it closes the connection."""
    try:
        while True:
            outcome.received.append(await peer.receive())
    except (EOFError, trio.BrokenResourceError, trio.ClosedResourceError):
        outcome.closed = True


async def _quietly(script: Script, peer: ScriptedPeer) -> None:
    """Run the broker's script; the client closing under it is expected."""
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await script(peer)


async def send_raw(peer: ScriptedPeer, data: bytes) -> None:
    """Send raw bytes to the client."""
    await peer.stream.send_all(data)


async def trickle(peer: ScriptedPeer, data: bytes, interval: float = 1.0) -> None:
    """Send ``data`` one byte every ``interval`` seconds."""
    for index in range(len(data)):
        await peer.stream.send_all(data[index : index + 1])
        await trio.sleep(interval)
