"""A small scripted broker side for sans-IO tests of :class:`ClientState`.

It is not a broker: it decodes whatever the client queued for the wire with the real codec and
lets the test answer with packets, which it encodes with the same codec and feeds to the client.
Time is a plain attribute the test advances.
"""

from __future__ import annotations

from trio_mqtt._core._codec import PacketDecoder, encode
from trio_mqtt._core._config import SessionConfig
from trio_mqtt._core._events import Event, Outgoing
from trio_mqtt._core._packets import (
    NO_PROPERTIES,
    ConnAck,
    Connect,
    Packet,
    Properties,
    ProtocolVersion,
    Publish,
    QoS,
)
from trio_mqtt._core._state import ClientState

__all__ = ["SansioBroker", "make_client"]


def make_client(**options: object) -> ClientState:
    """A ClientState with test-friendly defaults (client id "c", MQTT 3.1.1)."""
    options.setdefault("client_id", "c")
    options["protocol_version"] = ProtocolVersion(options.get("protocol_version", 4))
    return ClientState(SessionConfig(**options))  # type: ignore[arg-type]


class SansioBroker:
    """The broker end of a client/broker pair of sans-IO endpoints.

    Attributes:
        client: the client state under test.
        now: the clock passed to the client.
        received: every packet decoded from the client so far, in order.
    """

    def __init__(self, client: ClientState) -> None:
        self.client = client
        self.version = client.config.protocol_version
        self.now = 0.0
        self.received: list[Packet] = []
        self._decoder = PacketDecoder(self.version)
        self._next_id = 0

    # -- client -> broker
    def pump(self) -> list[Packet]:
        """Decode everything the client queued since the last call; return the new packets."""
        data = self.client.data_to_send()
        packets = self._decoder.decode(data)
        self.received.extend(packets)
        return packets

    def expect(self, *types: type[Packet]) -> list[Packet]:
        """Pump and assert that exactly packets of ``types`` (in order) were sent."""
        packets = self.pump()
        assert [type(p) for p in packets] == list(types), packets
        return packets

    # -- broker -> client
    def send(self, *packets: Packet) -> None:
        """Encode ``packets`` and feed them to the client in one chunk."""
        data = b"".join(encode(p, self.version) for p in packets)
        self.client.receive_data(data, self.now)

    def send_bytes(self, data: bytes) -> None:
        """Feed raw bytes to the client."""
        self.client.receive_data(data, self.now)

    def next_packet_id(self) -> int:
        """A fresh broker-side packet id for publishes sent to the client."""
        self._next_id = self._next_id % 65535 + 1
        return self._next_id

    def publish(
        self,
        topic: str,
        payload: bytes = b"x",
        qos: int = 0,
        *,
        packet_id: int = 0,
        dup: bool = False,
    ) -> Publish:
        """Send a PUBLISH to the client (a fresh packet id for QoS > 0 unless given)."""
        if qos and not packet_id:
            packet_id = self.next_packet_id()
        packet = Publish(topic, payload, QoS(qos), packet_id=packet_id, dup=dup)
        self.send(packet)
        return packet

    # -- lifecycle
    def connect(
        self, session_present: bool = False, properties: Properties = NO_PROPERTIES
    ) -> Connect:
        """Let the client connect and accept it; returns the CONNECT it sent."""
        self._decoder = PacketDecoder(self.version)
        self.client.connect(self.now)
        packets = self.pump()
        (connect,) = packets
        assert isinstance(connect, Connect), packets
        self.send(ConnAck(session_present, 0, properties))
        return connect

    def drop(self) -> None:
        """The network connection dies (unsent client bytes are lost)."""
        self.client.connection_lost(self.now)

    def events(self) -> list[Event]:
        """The client's events since the last call."""
        return self.client.take_events()

    def app_events(self) -> list[Event]:
        """The client's events since the last call, without Outgoing ones."""
        return [e for e in self.client.take_events() if not isinstance(e, Outgoing)]
