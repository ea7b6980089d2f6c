"""A scripted MQTT peer for timing and failure behaviour that a real broker will not produce.

The transport hands the client one end of an in-memory stream pair and runs a test-supplied
handler on the other end, so tests can use Trio's ``autojump_clock``: no real sockets, no real
waiting. Integration tests use a real mosquitto instead; this is only for silent servers,
missing PINGRESPs, slow consumers and scripted session resumption.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio
import trio.testing

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

from trio_mqtt.sansio import (
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PacketDecoder,
    PingReq,
    PingResp,
    Properties,
    ProtocolVersion,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
    encode,
)


class ScriptedPeer:
    """The broker side of one connection: receive and send whole packets."""

    def __init__(self, stream: trio.abc.Stream, index: int) -> None:
        self.stream = stream
        self.index = index
        self.decoder = PacketDecoder(ProtocolVersion.V311)
        self.version = ProtocolVersion.V311
        self.received: list[tuple[float, Packet]] = []

    async def receive(self) -> Packet:
        """The next packet from the client (raises EOFError when the client closed)."""
        while True:
            packet = self.decoder.next_packet()
            if packet is not None:
                if isinstance(packet, Connect):
                    self.version = packet.protocol_version
                    self.decoder.version = packet.protocol_version
                self.received.append((trio.current_time(), packet))
                return packet
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError("client closed the connection")
            self.decoder.feed(data)

    async def send(self, *packets: Packet) -> None:
        """Send packets to the client."""
        await self.stream.send_all(b"".join(encode(p, self.version) for p in packets))

    async def accept(self, session_present: bool = False) -> Connect:
        """Read CONNECT and answer with a successful CONNACK."""
        connect = await self.receive()
        assert isinstance(connect, Connect)
        await self.send(ConnAck(session_present=session_present))
        return connect

    async def close(self) -> None:
        """Close the connection abruptly."""
        await self.stream.aclose()

    async def answer_all(self, received: set[bytes] | None = None) -> None:
        """Answer like a broker that never routes: ack every publish (adding its payload to
        ``received``), complete QoS 2, grant subscriptions, answer pings, accept every
        re-authentication; return on DISCONNECT."""
        while True:
            packet = await self.receive()
            if isinstance(packet, Publish):
                if received is not None:
                    received.add(packet.payload)
                if packet.qos == 1:
                    await self.send(PubAck(packet.packet_id))
                elif packet.qos == 2:
                    await self.send(PubRec(packet.packet_id))
            elif isinstance(packet, PubRel):
                await self.send(PubComp(packet.packet_id))
            elif isinstance(packet, Subscribe):
                codes = tuple(int(s.qos) for s in packet.subscriptions)
                await self.send(SubAck(packet.packet_id, codes))
            elif isinstance(packet, Unsubscribe):
                await self.send(UnsubAck(packet.packet_id))
            elif isinstance(packet, PingReq):
                await self.send(PingResp())
            elif isinstance(packet, Auth):  # re-authentication: accepted (0x00)
                method = packet.properties.authentication_method
                await self.send(Auth(properties=Properties(authentication_method=method)))
            elif isinstance(packet, Disconnect):
                return


Handler = Callable[[ScriptedPeer], Awaitable[None]]


@dataclass
class FakeBroker:
    """A transport whose every connection is served by ``handler`` (one call per connection).

    Attributes:
        peers: one ScriptedPeer per connection made, in order.
    """

    nursery: trio.Nursery
    handler: Handler
    peers: list[ScriptedPeer] = field(default_factory=list)

    async def open_stream(self, host: str, port: int, *, max_packet_size: int) -> trio.abc.Stream:
        client_end, broker_end = trio.testing.memory_stream_pair()
        peer = ScriptedPeer(broker_end, len(self.peers))
        self.peers.append(peer)
        self.nursery.start_soon(self._serve, peer)
        await trio.lowlevel.checkpoint()
        return client_end

    async def _serve(self, peer: ScriptedPeer) -> None:
        try:
            await self.handler(peer)
        except _CLOSED:
            pass
        except BaseExceptionGroup as group:  # the handler's own nursery wrapped it
            rest = group.split(_CLOSED)[1]
            if rest is not None:
                raise rest from None


_CLOSED = (EOFError, trio.BrokenResourceError, trio.ClosedResourceError)
