"""A scripted client for sans-IO tests of the broker: packets in, packets out, no sockets."""

from __future__ import annotations

from trio_mqtt._core._broker import Broker, BrokerConnection
from trio_mqtt._core._codec import PacketDecoder, encode
from trio_mqtt._core._packets import (
    ConnAck,
    Connect,
    Packet,
    ProtocolVersion,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    QoS,
    SubAck,
    Subscribe,
    Subscription,
)

__all__ = ["Peer"]


class Peer:
    """One client connection to a sans-IO :class:`Broker`, driven packet by packet.

    ``now`` is shared through the broker-wide clock attribute of the test (``peer.now``).
    """

    def __init__(self, broker: Broker, version: int = 4, now: float = 0.0) -> None:
        self.broker = broker
        self.version = ProtocolVersion(version)
        self.now = now
        self.conn: BrokerConnection = broker.new_connection(now)
        self.decoder = PacketDecoder(self.version)
        self.inbox: list[Packet] = []

    def send(self, *packets: Packet) -> None:
        data = b"".join(encode(p, self.version) for p in packets)
        self.conn.receive_data(data, self.now)

    def send_bytes(self, data: bytes) -> None:
        self.conn.receive_data(data, self.now)

    def recv(self) -> list[Packet]:
        """Everything the broker has written to this client since the last call."""
        data = self.conn.data_to_send()
        packets = self.decoder.decode(data) if data else []
        self.inbox.extend(packets)
        return packets

    def expect(self, *types: type[Packet]) -> list[Packet]:
        packets = self.recv()
        assert [type(p) for p in packets] == list(types), packets
        return packets

    def connect(self, client_id: str = "c", **kwargs: object) -> ConnAck:
        kwargs.setdefault("protocol_version", self.version)
        self.send(Connect(client_id, **kwargs))  # type: ignore[arg-type]
        packets = self.recv()
        assert packets, packets
        assert isinstance(packets[0], ConnAck), packets
        self.inbox = packets[1:]
        return packets[0]

    def subscribe(
        self, *filters: str | Subscription, qos: int = 0, packet_id: int = 1, **kwargs: object
    ) -> SubAck:
        subs = tuple(
            f if isinstance(f, Subscription) else Subscription(f, QoS(qos)) for f in filters
        )
        self.send(Subscribe(packet_id, subs, **kwargs))  # type: ignore[arg-type]
        packets = self.recv()
        assert packets, packets
        assert isinstance(packets[0], SubAck), packets
        self.inbox = packets[1:]
        return packets[0]

    def publish(
        self, topic: str, payload: bytes = b"x", qos: int = 0, packet_id: int = 0, **kwargs: object
    ) -> list[Packet]:
        if qos and not packet_id:
            packet_id = 1
        self.send(Publish(topic, payload, QoS(qos), packet_id=packet_id, **kwargs))  # type: ignore[arg-type]
        packets = self.recv()
        if qos == 2:
            # complete the flow
            recs = [p for p in packets if isinstance(p, PubRec)]
            if recs and recs[0].reason_code < 0x80:
                self.send(PubRel(packet_id))
                packets += self.recv()
        return packets

    def messages(self) -> list[Publish]:
        """Publishes received so far (acknowledging QoS 1/2 ones), and forget them."""
        self.recv()
        found = [p for p in self.inbox if isinstance(p, Publish)]
        self.inbox = []
        for p in found:
            if p.qos == 1:
                self.send(PubAck(p.packet_id))
            elif p.qos == 2:
                self.send(PubRec(p.packet_id))
                for q in self.recv():
                    if isinstance(q, PubRel):
                        self.send(PubComp(q.packet_id))
                    else:
                        self.inbox.append(q)
        return found
