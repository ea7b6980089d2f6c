"""A hostile broker, one misbehaviour per test, against the full Trio stack.

Every case must end in the documented typed error, with (for MQTT 5) a DISCONNECT carrying the
matching reason code sent to the broker first, the connection closed by the client, and nothing
hung (each test is bounded by ``trio.fail_after`` on the autojump clock).
"""

from __future__ import annotations

import pytest
import trio
import trio.testing
from hostile_peer import Outcome, run_against, send_raw, trickle  # tests/ is on sys.path

from trio_mqtt import (
    ConnectTimeout,
    KeepAliveTimeout,
    MalformedPacketError,
    ProtocolVersion,
    QoS,
    RemoteProtocolError,
)
from trio_mqtt.sansio import (
    ConnAck,
    PingReq,
    Properties,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    encode,
)

V311, V5 = ProtocolVersion.V311, ProtocolVersion.V5
VERSIONS = [V311, V5]
MALFORMED = 0x81
PROTOCOL_ERROR = 0x82
RECEIVE_MAXIMUM_EXCEEDED = 0x93
TOPIC_ALIAS_INVALID = 0x94
PACKET_TOO_LARGE = 0x95
PACKET_ID_NOT_FOUND = 0x92


def _publish_bytes(topic: bytes, version: ProtocolVersion, payload: bytes = b"x") -> bytes:
    """A QoS 0 PUBLISH with raw topic bytes (so that invalid topics can be sent)."""
    body = len(topic).to_bytes(2, "big") + topic + (b"\x00" if version == V5 else b"") + payload
    assert len(body) < 128
    return bytes([0x30, len(body)]) + body


def _check_failure(outcome: Outcome, error: type[Exception], version: ProtocolVersion, code: int):
    """The typed error, the v5 DISCONNECT reason, and the connection closed."""
    assert isinstance(outcome.error, error), outcome.error
    assert outcome.closed
    if isinstance(outcome.error, RemoteProtocolError):
        assert outcome.error.reason_code == code
    if version == V5:
        disconnect = outcome.disconnect
        assert disconnect is not None
        assert disconnect.reason_code == code
    else:
        assert outcome.disconnect is None  # a 3.1.1 client just closes


def raw(data: bytes):  # type: ignore[no-untyped-def]
    async def script(peer):  # type: ignore[no-untyped-def]
        await send_raw(peer, data)

    return script


def packets(*items):  # type: ignore[no-untyped-def]
    async def script(peer):  # type: ignore[no-untyped-def]
        await peer.send(*items)

    return script


@pytest.mark.parametrize("version", VERSIONS)
async def test_remaining_length_over_maximum_is_refused_before_buffering(
    version: ProtocolVersion, autojump_clock: trio.testing.MockClock
) -> None:
    # Header announces 100,000 bytes; only 10 follow. The client must refuse at the header.
    data = b"\x30" + bytes([0xA0, 0x8D, 0x06]) + b"\x00\x01a" + b"x" * 7
    with trio.fail_after(30):
        outcome = await run_against(raw(data), version=version, max_incoming_packet_size=1024)
    _check_failure(outcome, MalformedPacketError, version, PACKET_TOO_LARGE)


@pytest.mark.parametrize("version", VERSIONS)
async def test_packet_over_our_advertised_maximum_packet_size(
    version: ProtocolVersion, autojump_clock: trio.testing.MockClock
) -> None:
    big = Publish("t", b"x" * 2000, QoS.AT_MOST_ONCE, False, False, 0)
    with trio.fail_after(30):
        outcome = await run_against(packets(big), version=version, max_incoming_packet_size=1024)
    assert outcome.connect is not None
    if version == V5:  # MQTT-3.1.2-24: the limit was announced in CONNECT
        assert outcome.connect.properties.maximum_packet_size == 1024
    _check_failure(outcome, MalformedPacketError, version, PACKET_TOO_LARGE)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\x30\xff\xff\xff\xff\x7f", id="five-byte-varint"),
        pytest.param(b"\x00\x00", id="reserved-type-0"),
        pytest.param(b"\x60\x02\x00\x01", id="pubrel-flags-0"),
        pytest.param(b"\x41\x02\x00\x01", id="puback-flags-1"),
        pytest.param(b"\x38\x04\x00\x01a\x00", id="publish-qos-3"),
    ],
)
async def test_malformed_bytes(
    version: ProtocolVersion, data: bytes, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(30):
        outcome = await run_against(raw(data), version=version)
    _check_failure(outcome, MalformedPacketError, version, MALFORMED)


async def test_auth_packet_type_is_unknown_in_311(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(30):
        outcome = await run_against(raw(b"\xf0\x00"), version=V311)
    _check_failure(outcome, MalformedPacketError, V311, MALFORMED)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("topic", [b"\xff\xfe", b"a\x00b", b"\xed\xa0\x80"], ids=str)
async def test_invalid_topic_strings(
    version: ProtocolVersion, topic: bytes, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(30):
        outcome = await run_against(raw(_publish_bytes(topic, version)), version=version)
    _check_failure(outcome, MalformedPacketError, version, MALFORMED)
    assert outcome.error.field == "topic"  # type: ignore[union-attr]


@pytest.mark.parametrize("version", VERSIONS)
async def test_second_connack(
    version: ProtocolVersion, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(30):
        outcome = await run_against(packets(ConnAck(False, 0)), version=version)
    _check_failure(outcome, RemoteProtocolError, version, PROTOCOL_ERROR)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    "ack", [PubAck(99), PubRec(99), PubComp(99)], ids=lambda p: type(p).__name__
)
async def test_ack_for_unknown_packet_id_is_ignored(
    version: ProtocolVersion,
    ack: object,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # As mosquitto's own client tests (03-publish-b2c-qos1-unexpected-puback,
    # -qos2-unexpected-pubcomp) and paho-mqtt expect: ignored, counted, logged; the connection
    # carries on until the broker closes it. A PUBREC is answered so the broker can finish.
    async def script(peer):  # type: ignore[no-untyped-def]
        await peer.send(ack)
        await trio.sleep(1)
        await peer.close()

    with trio.fail_after(30):
        outcome = await run_against(script, version=version)
    assert type(outcome.error).__name__ == "ConnectionLost"  # only the broker's close ends it
    assert outcome.disconnect is None
    assert "which no flow holds" in caplog.text
    rels = [p for p in outcome.received if isinstance(p, PubRel)]
    if isinstance(ack, PubRec):
        assert [r.packet_id for r in rels] == [99]
        assert rels[0].reason_code == (PACKET_ID_NOT_FOUND if version == V5 else 0)
    else:
        assert rels == []


@pytest.mark.parametrize("version", VERSIONS)
async def test_pubrel_for_unknown_id_is_answered_not_fatal(
    version: ProtocolVersion, autojump_clock: trio.testing.MockClock
) -> None:
    # MQTT-4.3.3: PUBREL may be re-sent after our PUBCOMP got lost, so it is answered.
    async def script(peer):  # type: ignore[no-untyped-def]
        await peer.send(PubRel(99))
        await trio.sleep(1)
        await peer.close()

    with trio.fail_after(30):
        outcome = await run_against(script, version=version)
    comps = [p for p in outcome.received if isinstance(p, PubComp)]
    assert len(comps) == 1
    assert comps[0].packet_id == 99
    assert comps[0].reason_code == (PACKET_ID_NOT_FOUND if version == V5 else 0)
    assert type(outcome.error).__name__ == "ConnectionLost"  # only the broker's close ends it


@pytest.mark.parametrize("version", VERSIONS)
async def test_suback_with_wrong_number_of_codes(
    version: ProtocolVersion, autojump_clock: trio.testing.MockClock
) -> None:
    async def script(peer):  # type: ignore[no-untyped-def]
        # The client's packets are read by the harness; look at what it recorded.
        while not any(isinstance(p, Subscribe) for _, p in peer.received):  # noqa: ASYNC110
            await trio.sleep(0.1)  # free on the autojump clock
        request = next(p for _, p in peer.received if isinstance(p, Subscribe))
        await peer.send(SubAck(request.packet_id, (0, 1)))

    async def subscriber(conn):  # type: ignore[no-untyped-def]
        await conn.client.subscribe("one/filter", QoS.AT_LEAST_ONCE)

    with trio.fail_after(30):
        outcome = await run_against(script, version=version, during=subscriber)
    _check_failure(outcome, RemoteProtocolError, version, PROTOCOL_ERROR)
    assert "SUBACK" in str(outcome.error)


async def test_topic_alias_never_defined(autojump_clock: trio.testing.MockClock) -> None:
    aliased = Publish("", b"x", QoS.AT_MOST_ONCE, False, False, 0, Properties(topic_alias=3))
    with trio.fail_after(30):
        outcome = await run_against(packets(aliased), version=V5, topic_alias_maximum=5)
    _check_failure(outcome, RemoteProtocolError, V5, PROTOCOL_ERROR)


async def test_topic_alias_above_our_maximum(autojump_clock: trio.testing.MockClock) -> None:
    aliased = Publish("t", b"x", QoS.AT_MOST_ONCE, False, False, 0, Properties(topic_alias=9))
    with trio.fail_after(30):
        outcome = await run_against(packets(aliased), version=V5, topic_alias_maximum=5)
    _check_failure(outcome, RemoteProtocolError, V5, TOPIC_ALIAS_INVALID)


async def test_more_unacknowledged_publishes_than_our_receive_maximum(
    autojump_clock: trio.testing.MockClock,
) -> None:
    flood = [Publish("t", b"x", QoS.EXACTLY_ONCE, False, False, pid) for pid in (1, 2, 3)]
    with trio.fail_after(30):
        outcome = await run_against(packets(*flood), version=V5, receive_maximum=2)
    assert outcome.connect is not None
    assert outcome.connect.properties.receive_maximum == 2
    _check_failure(outcome, RemoteProtocolError, V5, RECEIVE_MAXIMUM_EXCEEDED)
    delivered = [e for e in outcome.events if type(e).__name__ == "Incoming"]
    assert sum(isinstance(e.packet, Publish) for e in delivered) >= 2  # type: ignore[attr-defined]


@pytest.mark.parametrize("version", VERSIONS)
async def test_pingresp_never_sent(
    version: ProtocolVersion, autojump_clock: trio.testing.MockClock
) -> None:
    async def silent(peer):  # type: ignore[no-untyped-def]
        await trio.sleep_forever()

    with trio.fail_after(60):
        outcome = await run_against(silent, version=version, keep_alive=5, ping_timeout=3)
    assert isinstance(outcome.error, KeepAliveTimeout)
    assert outcome.closed
    assert any(isinstance(p, PingReq) for p in outcome.received)
    # The documented bound: keep_alive + ping_timeout after the last packet we sent (CONNECT).
    assert 8 - 0.01 <= outcome.elapsed <= 8 + 0.01


@pytest.mark.parametrize("version", VERSIONS)
async def test_trickling_connack_hits_the_connect_timeout(
    version: ProtocolVersion, autojump_clock: trio.testing.MockClock
) -> None:
    async def slow_connack(peer):  # type: ignore[no-untyped-def]
        await trickle(peer, encode(ConnAck(False, 0), peer.version) * 3)

    with trio.fail_after(60):
        outcome = await run_against(
            slow_connack, version=version, send_connack=False, connect_timeout=2
        )
    assert isinstance(outcome.error, ConnectTimeout)
    assert outcome.closed
    assert 2 - 0.01 <= outcome.elapsed <= 2 + 0.01


@pytest.mark.parametrize("version", VERSIONS)
async def test_trickling_broker_is_dropped_by_keepalive(
    version: ProtocolVersion, autojump_clock: trio.testing.MockClock
) -> None:
    # One byte per second of a big PUBLISH: bytes keep arriving, but no PINGRESP ever does.
    async def slow(peer):  # type: ignore[no-untyped-def]
        await trickle(peer, encode(Publish("t", b"x" * 200, 0, False, False, 0), peer.version))

    with trio.fail_after(60):
        outcome = await run_against(slow, version=version, keep_alive=5, ping_timeout=3)
    assert isinstance(outcome.error, KeepAliveTimeout)
    assert outcome.closed
    assert 8 - 0.01 <= outcome.elapsed <= 8 + 0.01
