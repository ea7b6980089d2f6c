"""What the library logs: a DEBUG line per packet (never a payload or a secret), INFO for the
connection's life, WARNING when a consumer or the outgoing window holds things up."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing
from fake_broker import FakeBroker, ScriptedPeer

from trio_mqtt import (
    MqttOptions,
    ProtocolVersion,
    QoS,
    ReconnectPolicy,
    SessionLost,
    Will,
    open_mqtt_connection,
)
from trio_mqtt.sansio import PubAck, Publish, SubAck, Subscribe
from trio_mqtt.testing import MosquittoBroker


@pytest.mark.parametrize("version", [ProtocolVersion.V311, ProtocolVersion.V5])
async def test_every_packet_is_logged_without_payloads_or_secrets(
    version: ProtocolVersion, caplog: pytest.LogCaptureFixture
) -> None:
    broker = MosquittoBroker(users={"alice": "s3cret-pw"})
    with broker, trio.fail_after(10), caplog.at_level(logging.DEBUG, logger="trio_mqtt"):
        options = MqttOptions(
            "logged",
            broker.host,
            broker.port,
            username="alice",
            password="s3cret-pw",
            protocol_version=version,
            will=Will("log/will", b"WILL-PAYLOAD"),
        )
        async with open_mqtt_connection(options) as conn:
            await conn.client.subscribe("log/#", QoS.AT_LEAST_ONCE)
            await conn.client.publish("log/a", b"TOP-SECRET-PAYLOAD", qos=QoS.EXACTLY_ONCE)
            async for message in conn.messages():
                assert message.payload == b"TOP-SECRET-PAYLOAD"
                break
    packets = [r.getMessage() for r in caplog.records if r.name == "trio_mqtt.packets"]
    text = "\n".join(packets)
    assert any(m.startswith("sending CONNECT client_id='logged'") for m in packets)
    assert "username=set password=set will=set" in text
    assert "received CONNACK session_present=0 code=0x00" in text
    assert "sending SUBSCRIBE id=1 'log/#'@1" in text
    assert "received SUBACK id=1 codes=0x01" in text
    assert "sending PUBLISH id=2 topic='log/a' qos=2 retain=0 dup=0 payload=18 B" in text
    for step in ("received PUBREC id=2", "sending PUBREL id=2", "received PUBCOMP id=2"):
        assert step in text
    everything = caplog.text
    for secret in ("TOP-SECRET-PAYLOAD", "s3cret-pw", "WILL-PAYLOAD", "alice"):
        assert secret not in everything
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any(m.startswith("connected to 127.0.0.1") for m in info)


async def test_a_publisher_held_back_by_a_full_window_is_warned_about(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def slow_acks(peer: ScriptedPeer) -> None:
        await peer.accept()
        while True:
            packet = await peer.receive()
            if isinstance(packet, Publish):
                await trio.sleep(3)
                await peer.send(PubAck(packet.packet_id))

    broker = FakeBroker(nursery, slow_acks)
    options = MqttOptions("w", "fake", 1883, transport=broker, inflight=1)  # type: ignore[arg-type]
    with trio.fail_after(60), caplog.at_level(logging.WARNING, logger="trio_mqtt"):
        async with open_mqtt_connection(options) as conn:
            for i in range(4):  # one in flight, one waiting, then publishers wait
                await conn.client.publish("w", b"%d" % i, qos=QoS.AT_LEAST_ONCE)
    warnings = [r.getMessage() for r in caplog.records if "waited" in r.getMessage()]
    assert len(warnings) == 1  # at most one every 10 s
    assert "outgoing window" in warnings[0]


async def test_a_lost_connection_a_reconnect_and_a_lost_session_are_logged_at_info(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def forgetful(peer: ScriptedPeer) -> None:
        if peer.index == 0:  # grant the subscription, then drop the connection
            await peer.accept()
            subscribe = await peer.receive()
            assert isinstance(subscribe, Subscribe)
            await peer.send(SubAck(subscribe.packet_id, (1,)))
            await peer.close()
            return
        await peer.accept(session_present=False)  # the session is gone
        await peer.answer_all()

    broker = FakeBroker(nursery, forgetful)
    options = MqttOptions(
        "i",
        "fake",
        1883,
        transport=broker,  # type: ignore[arg-type]
        clean_start=False,
        reconnect=ReconnectPolicy(initial_delay=0.5, jitter=0.0),
    )
    with trio.fail_after(30), caplog.at_level(logging.INFO, logger="trio_mqtt"):
        async with open_mqtt_connection(options) as conn:
            await conn.client.subscribe("i/#", QoS.AT_LEAST_ONCE)
            while not isinstance(await conn.poll(), SessionLost):
                pass
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len([m for m in info if m.startswith("connected to fake:1883")]) == 2, info
    assert any(m.startswith("connection lost: ") for m in info), info
    assert any(m.startswith("reconnecting in 0.50 s (attempt 1) after: ") for m in info), info
    lost = [m for m in info if m.startswith("the broker had lost the session: ")]
    assert len(lost) == 1
    assert "resubscribed=1" in lost[0]
