"""Arbitrary bytes after CONNACK, through the whole Trio stack, and memory under hostile input."""

from __future__ import annotations

import gc
import tracemalloc

import trio
import trio.testing
from hostile_peer import Outcome, run_against, send_raw  # tests/ is on sys.path
from hypothesis import HealthCheck, given, settings, strategies as st

from trio_mqtt import MqttError, ProtocolVersion, RemoteProtocolError
from trio_mqtt.sansio import (
    ConnAck,
    Disconnect,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    QoS,
    SubAck,
    encode,
)

VERSIONS = st.sampled_from([ProtocolVersion.V311, ProtocolVersion.V5])
PACKET_IDS = st.integers(1, 5)


def _packets(version: ProtocolVersion) -> st.SearchStrategy[bytes]:
    """Valid packets a broker may send (right or wrong for the moment), encoded."""
    topics = st.text(alphabet="ab/", min_size=1, max_size=5)
    publish = st.builds(
        lambda topic, payload, qos, pid: Publish(
            topic, payload, QoS(qos), False, False, pid if qos else 0
        ),
        topics,
        st.binary(max_size=20),
        st.integers(0, 2),
        PACKET_IDS,
    )
    others = st.one_of(
        st.builds(PubAck, PACKET_IDS),
        st.builds(PubRec, PACKET_IDS),
        st.builds(PubRel, PACKET_IDS),
        st.builds(PubComp, PACKET_IDS),
        st.builds(lambda pid: SubAck(pid, (0,)), PACKET_IDS),
        st.just(PingResp()),
        st.just(ConnAck(False, 0)),
    )
    return st.one_of(publish, others).map(lambda packet: encode(packet, version))


@st.composite
def _streams(draw: st.DrawFn) -> tuple[bytes, ProtocolVersion]:
    """Valid packets and garbage, mixed, so inputs get past the first packet."""
    version = draw(VERSIONS)
    chunks = draw(st.lists(st.one_of(_packets(version), st.binary(max_size=8)), max_size=8))
    return b"".join(chunks), version


def _run(data: bytes, version: ProtocolVersion) -> Outcome:
    async def script(peer):  # type: ignore[no-untyped-def]
        await send_raw(peer, data)
        await peer.close()  # then end of file, so valid input ends too

    async def main() -> Outcome:
        with trio.fail_after(120):
            return await run_against(
                script, version=version, keep_alive=5, max_incoming_packet_size=4096
            )

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=300), version=VERSIONS)
def test_arbitrary_bytes_after_connack_end_in_a_typed_error(
    data: bytes, version: ProtocolVersion
) -> None:
    _check(data, version)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=_streams())
def test_packets_mixed_with_garbage_end_in_a_typed_error(
    stream: tuple[bytes, ProtocolVersion],
) -> None:
    _check(*stream)


def _check(data: bytes, version: ProtocolVersion) -> None:
    outcome = _run(data, version)
    assert isinstance(outcome.error, MqttError), repr(outcome.error)
    assert type(outcome.error).__name__ != "ExceptionGroup"
    disconnects = [p for p in outcome.received if isinstance(p, Disconnect)]
    if isinstance(outcome.error, RemoteProtocolError) and version == ProtocolVersion.V5:
        # Either the reason went out first, or the broker had already closed the link.
        assert all(d.reason_code == outcome.error.reason_code for d in disconnects)
    assert len(disconnects) <= 1


def test_hostile_sessions_do_not_grow_memory() -> None:
    """Repeat malformed sessions; memory after many rounds matches memory after a few."""
    cases = [
        b"\x30\xff\xff\xff\xff\x7f",
        b"\x30\xa0\x8d\x06" + b"x" * 3000,
        b"\x00\x00",
        b"\x41\x02\x00\x01",
        b"\x30\x06\x00\x03a\x00bx",
        b"\x20\x03\x00\x00\x00",  # a second CONNACK
        b"\x40\x02\x00\x07",  # PUBACK for an unknown id
        b"\x50\x02\x00\x07",  # PUBREC for an unknown id
        b"\x70\x02\x00\x07",  # PUBCOMP for an unknown id
        b"\x90\x04\x00\x07\x00\x00",  # SUBACK for an unknown id
        b"\x30\x07\x00\x00\x03\x23\x00\x05x",  # topic alias 5, never defined
    ]

    def rounds(count: int) -> None:
        for _ in range(count):
            for data in cases:
                assert isinstance(_run(data, ProtocolVersion.V5).error, MqttError)

    rounds(3)
    gc.collect()
    tracemalloc.start()
    try:
        rounds(2)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        rounds(10)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert after - before < 64 * 1024, f"grew by {after - before} bytes over 110 sessions"
