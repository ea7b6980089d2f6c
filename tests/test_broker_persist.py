"""The broker's SQLite persistence: a saved and reloaded broker is the same broker, and a
restarted ``open_mqtt_broker(persistence=...)`` resumes QoS 1/2 flows where they stood."""

from __future__ import annotations

import sys
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).parent / "core"))

from broker_peer import Peer

from trio_mqtt import MqttOptions, QoS, open_mqtt_connection
from trio_mqtt.broker import Broker, BrokerStore, open_mqtt_broker
from trio_mqtt.sansio import (
    Connect,
    PacketDecoder,
    Properties,
    ProtocolVersion,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    Subscribe,
    Subscription,
    Will,
    encode,
)

V5 = ProtocolVersion.V5
KEEP = Properties(session_expiry_interval=3600)


def test_save_and_load_round_trip_every_kind_of_state(tmp_path: Path) -> None:
    broker = Broker()
    sub = Peer(broker, 5)
    sub.connect("sub", clean_start=False, properties=KEEP)
    sub.subscribe(
        Subscription("q/#", QoS.EXACTLY_ONCE, retain_as_published=True),
        properties=Properties(subscription_identifiers=(4,)),
    )
    for number in range(3):
        broker.publish(f"q/{number}", str(number).encode(), 2, now=0.0)
    first, second, _third = sub.recv()
    assert isinstance(first, Publish)
    assert isinstance(second, Publish)
    sub.send(PubRec(first.packet_id))  # first: PUBREL sent, PUBCOMP awaited; others: PUBREC
    sub.recv()
    pub = Peer(broker, 5)
    pub.connect("pub", clean_start=False, properties=KEEP)
    pub.send(Publish("q/in", b"held", QoS.EXACTLY_ONCE, packet_id=9))  # PUBREL not yet sent
    broker.publish("kept", b"retained", 1, True, now=0.0)
    sub.conn.connection_lost(1.0)
    for number in range(2):
        broker.publish("q/later", str(number).encode(), 1, now=1.0)  # queued
    will = Will(
        "wills/w", b"late", QoS.AT_LEAST_ONCE, properties=Properties(will_delay_interval=60)
    )
    gone = Peer(broker, 5)
    gone.connect("gone", clean_start=False, will=will, properties=KEEP)
    gone.conn.connection_lost(1.0)

    store = BrokerStore(tmp_path / "broker.db")
    store.save(broker, 2.0)
    store.close()
    loaded = BrokerStore(tmp_path / "broker.db").load(None, 100.0)

    assert set(loaded.sessions) == {"sub", "pub", "gone"}
    session = loaded.sessions["sub"]
    assert [d.message.payload for d in session.inflight.values()] == [b"0", b"1", b"2", b"held"]
    assert [d.phase.name for d in session.inflight.values()] == [
        "PUBCOMP",
        "PUBREC",
        "PUBREC",
        "PUBREC",
    ]
    assert [d.message.payload for d in session.queue] == [b"0", b"1"]
    assert session.subscriptions["q/#"].options.retain_as_published
    assert loaded.router.retained["kept"].payload == b"retained"
    assert loaded.sessions["pub"].incoming_qos2 == {9}
    assert loaded.sessions["gone"].will is not None
    assert loaded.sessions["gone"].will_at is not None
    # the resumed subscriber gets PUBREL for the first message, the PUBLISHes again for the rest
    back = Peer(loaded, 5, now=100.0)
    assert back.connect("sub", clean_start=False, properties=KEEP).session_present
    kinds = [type(p).__name__ for p in back.inbox]
    assert kinds == ["PubRel", "Publish", "Publish", "Publish", "Publish", "Publish"]
    republished = [p for p in back.inbox if isinstance(p, Publish)]
    assert all(p.properties.subscription_identifiers == (4,) for p in republished)
    # the publisher's PUBREL is still answered, and its message is not routed twice
    again = Peer(loaded, 5, now=100.0)
    again.connect("pub", clean_start=False, properties=KEEP)
    again.send(PubRel(9))
    assert again.recv() == [PubComp(9)]


async def test_restarted_broker_resumes_a_qos2_flow_with_pubrel(tmp_path: Path) -> None:
    path = tmp_path / "broker.db"
    version = V5

    async def connect(port: int) -> tuple[trio.SocketStream, PacketDecoder]:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(
            encode(Connect("durable", version, 60, False, properties=KEEP), version)
        )
        decoder = PacketDecoder(version)
        await receive(stream, decoder)
        return stream, decoder

    async def receive(stream: trio.SocketStream, decoder: PacketDecoder) -> object:
        while (packet := decoder.next_packet()) is None:
            data = await stream.receive_some(65536)
            assert data, "the broker closed the connection"
            decoder.feed(data)
        return packet

    with trio.fail_after(15):
        async with open_mqtt_broker(persistence=path) as broker:
            port = broker.port
            stream, decoder = await connect(port)
            subscribe = Subscribe(1, (Subscription("d/#", QoS.EXACTLY_ONCE),))
            await stream.send_all(encode(subscribe, version))
            await receive(stream, decoder)  # SUBACK
            options = MqttOptions("sender", broker.host, broker.port)
            async with open_mqtt_connection(options) as conn:
                await conn.client.publish("d/one", b"once", qos=QoS.EXACTLY_ONCE)
                await conn.client.publish("d/retained", b"kept", qos=QoS.AT_LEAST_ONCE, retain=True)
            message = await receive(stream, decoder)
            assert isinstance(message, Publish)
            await stream.send_all(encode(PubRec(message.packet_id), version))
            got = [await receive(stream, decoder), await receive(stream, decoder)]
            assert PubRel(message.packet_id) in got  # and the retained message, unacknowledged
            await stream.aclose()  # before PUBCOMP
        async with open_mqtt_broker(port=port, persistence=path) as broker:
            stream, decoder = await connect(port)
            assert await receive(stream, decoder) == PubRel(message.packet_id)
            again = await receive(stream, decoder)  # the unacknowledged retained copy, DUP
            assert isinstance(again, Publish)
            assert (again.payload, again.dup) == (b"kept", True)
            await stream.aclose()
            late = MqttOptions("late", broker.host, broker.port)
            async with open_mqtt_connection(late) as conn:
                await conn.client.subscribe("d/retained", QoS.AT_LEAST_ONCE)
                kept = await conn.messages().__anext__()
                assert (kept.payload, kept.retain) == (b"kept", True)
