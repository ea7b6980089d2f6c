"""What the codec refuses: malformed input on decoding, unencodable packets on encoding."""

from __future__ import annotations

from typing import Any

import pytest

from trio_mqtt._core._codec import PacketDecoder, decode_packet, encode, encoded_size
from trio_mqtt._core._errors import InvalidTopicError, LocalProtocolError, MalformedPacketError
from trio_mqtt._core._packets import (
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    Properties,
    ProtocolVersion,
    PubAck,
    PubComp,
    Publish,
    PubRel,
    QoS,
    RetainHandling,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
)
from trio_mqtt._core._primitives import pack_vbi, read_vbi
from trio_mqtt._core._reason_codes import ReasonCode

V4 = ProtocolVersion.V311
V5 = ProtocolVersion.V5
MQTT = "00 04 4d 51 54 54"
MALFORMED = ReasonCode.MALFORMED_PACKET
PROTOCOL = ReasonCode.PROTOCOL_ERROR
SO = "subscription options"
RS = "properties.reason_string"
LPE = LocalProtocolError
ITE = InvalidTopicError


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# (id, version, bytes, field named in the error, reason code)
MALFORMED_CASES: list[tuple[str, ProtocolVersion, str, str, ReasonCode]] = [
    ("reserved-type-0", V4, "00 00", "packet type", MALFORMED),
    ("auth-in-v311", V4, "f0 00", "packet type", MALFORMED),
    ("pubrel-flags-0", V4, "60 02 0001", "flags", MALFORMED),  # MQTT-3.6.1-1
    ("subscribe-flags-0", V4, "80 06 0001 0001 61 00", "flags", MALFORMED),
    ("unsubscribe-flags-0", V5, "a0 06 0001 00 0001 61", "flags", MALFORMED),
    ("puback-flags-set", V5, "41 02 0001", "flags", MALFORMED),
    ("pingreq-flags", V4, "c1 00", "flags", MALFORMED),
    ("publish-qos3", V4, "36 05 0001 74 0001", "qos", MALFORMED),  # MQTT-3.3.1-4
    ("publish-dup-qos0", V4, "38 03 0001 74", "dup", MALFORMED),  # MQTT-3.3.1-2
    ("publish-dup-qos0-v5", V5, "38 04 0001 74 00", "dup", MALFORMED),
    ("publish-packet-id-0", V4, "32 05 0001 74 0000", "packet_id", MALFORMED),
    ("publish-wildcard-hash", V4, "30 03 0001 23", "topic", ReasonCode.TOPIC_NAME_INVALID),
    ("publish-wildcard-plus", V5, "30 06 0003 612f2b 00", "topic", ReasonCode.TOPIC_NAME_INVALID),
    ("publish-topic-nul", V4, "30 03 0001 00", "topic", MALFORMED),
    ("publish-topic-bad-utf8", V4, "30 03 0001 ff", "topic", MALFORMED),
    ("publish-topic-surrogate", V5, "30 06 0003 eda080 00", "topic", MALFORMED),
    ("publish-topic-overlong", V4, "30 04 0002 c0af", "topic", MALFORMED),
    ("publish-empty-topic-v311", V4, "30 02 0000", "topic", MALFORMED),  # MQTT-4.7.3-1
    ("publish-empty-topic-no-alias", V5, "30 03 0000 00", "topic", PROTOCOL),
    ("publish-topic-past-end", V4, "30 03 0005 61", "topic", MALFORMED),
    ("publish-no-property-length", V5, "30 03 0001 74", "property length", MALFORMED),
    ("puback-id-0", V4, "40 02 0000", "packet_id", MALFORMED),  # MQTT-2.3.1-1
    ("puback-too-long-v311", V4, "40 03 0001 00", "remaining length", MALFORMED),
    ("puback-too-short", V5, "40 01 00", "remaining length", MALFORMED),
    ("puback-bad-reason", V5, "40 03 0001 04", "reason_code", PROTOCOL),
    ("pubrel-bad-reason", V5, "62 03 0001 10", "reason_code", PROTOCOL),
    (
        "puback-property-not-allowed",
        V5,
        "40 07 0001 00 03 23 0001",
        "properties",
        MALFORMED,
    ),
    ("puback-unknown-property", V5, "40 06 0001 00 02 7f 00", "properties", MALFORMED),
    (
        "publish-duplicate-alias",
        V5,
        "30 0a 0001 74 06 23 0001 23 0002",
        "properties.topic_alias",
        PROTOCOL,
    ),
    (
        "publish-alias-0",
        V5,
        "30 07 0001 74 03 23 0000",
        "properties.topic_alias",
        ReasonCode.TOPIC_ALIAS_INVALID,
    ),
    (
        "publish-payload-format-2",
        V5,
        "30 06 0001 74 02 01 02",
        "properties.payload_format_indicator",
        PROTOCOL,
    ),
    ("properties-past-end", V5, "40 05 0001 00 09 1f", "property length", MALFORMED),
    (
        "property-value-truncated",
        V5,
        "40 06 0001 00 02 1f 00",
        RS,
        MALFORMED,
    ),
    (
        "connack-receive-maximum-0",
        V5,
        "20 06 00 00 03 21 0000",
        "properties.receive_maximum",
        PROTOCOL,
    ),
    (
        "subscribe-two-subscription-ids",
        V5,
        "82 0b 0001 04 0b 01 0b 02 0001 61 00",
        "properties.subscription_identifiers",
        PROTOCOL,
    ),
    ("subscribe-no-filters", V4, "82 02 0001", "subscriptions", PROTOCOL),  # MQTT-3.8.3-3
    ("subscribe-no-filters-v5", V5, "82 03 0001 00", "subscriptions", PROTOCOL),
    ("unsubscribe-no-filters", V4, "a2 02 0001", "topic_filters", PROTOCOL),  # MQTT-3.10.3-2
    (
        "subscribe-reserved-bits-v311",
        V4,
        "82 06 0001 0001 61 04",
        SO,
        MALFORMED,
    ),
    ("subscribe-qos3-v311", V4, "82 06 0001 0001 61 03", SO, MALFORMED),
    (
        "subscribe-reserved-bits-v5",
        V5,
        "82 07 0001 00 0001 61 40",
        SO,
        MALFORMED,
    ),
    (
        "subscribe-retain-handling-3",
        V5,
        "82 07 0001 00 0001 61 30",
        SO,
        PROTOCOL,
    ),
    ("subscribe-qos3-v5", V5, "82 07 0001 00 0001 61 03", SO, MALFORMED),
    (
        "subscribe-shared-no-local",
        V5,
        "82 10 0001 00 000a 2473686172652f672f61 04",
        SO,
        PROTOCOL,
    ),
    ("subscribe-empty-filter", V4, "82 05 0001 0000 00", "topic filter", MALFORMED),
    ("subscribe-missing-options", V4, "82 05 0001 0001 61", SO, MALFORMED),
    ("suback-no-codes", V4, "90 02 0001", "reason_codes", MALFORMED),
    ("suback-bad-code-v311", V4, "90 03 0001 03", "reason_codes", MALFORMED),
    ("suback-bad-code-v5", V5, "90 04 0001 00 10", "reason_code", PROTOCOL),
    ("unsuback-codes-in-v311", V4, "b0 03 0002 00", "remaining length", MALFORMED),
    ("connack-reserved-flags", V4, "20 02 02 00", "session_present", MALFORMED),
    ("connack-unknown-code-v311", V4, "20 02 00 06", "reason_code", MALFORMED),
    ("connack-session-on-refusal", V4, "20 02 01 05", "session_present", MALFORMED),
    ("connack-session-on-refusal-v5", V5, "20 03 01 87 00", "session_present", MALFORMED),
    ("connack-short-v5", V5, "20 02 00 00", "remaining length", MALFORMED),
    ("pingreq-with-body", V4, "c0 01 00", "remaining length", MALFORMED),
    ("disconnect-with-body-v311", V4, "e0 01 00", "remaining length", MALFORMED),
    ("disconnect-bad-reason", V5, "e0 01 05", "reason_code", PROTOCOL),
    ("disconnect-trailing", V5, "e0 03 00 00 00", "remaining length", MALFORMED),
    ("auth-bad-reason", V5, "f0 02 87 00", "reason_code", PROTOCOL),
    (
        "connect-reserved-flag",  # MQTT-3.1.2-3
        V4,
        f"10 0c {MQTT} 04 03 003c 0000",
        "connect flags",
        MALFORMED,
    ),
    (
        "connect-will-qos-without-will",  # MQTT-3.1.2-13
        V4,
        f"10 0c {MQTT} 04 0a 003c 0000",
        "connect flags",
        MALFORMED,
    ),
    (
        "connect-will-retain-without-will",  # MQTT-3.1.2-15
        V5,
        f"10 0d {MQTT} 05 22 003c 00 0000",
        "connect flags",
        MALFORMED,
    ),
    (
        "connect-will-qos-3",  # MQTT-3.1.2-14
        V4,
        f"10 12 {MQTT} 04 1e 003c 0000 0001 74 0001 78",
        "connect flags",
        MALFORMED,
    ),
    (
        "connect-password-without-username",  # MQTT-3.1.2-22
        V4,
        f"10 10 {MQTT} 04 42 003c 0000 0002 7077",
        "connect flags",
        MALFORMED,
    ),
    (
        "connect-will-topic-wildcard",
        V4,
        f"10 12 {MQTT} 04 06 003c 0000 0001 23 0001 78",
        "will topic",
        MALFORMED,
    ),
    (
        "connect-level-3",
        V4,
        f"10 0c {MQTT} 03 02 003c 0000",
        "protocol level",
        ReasonCode.UNSUPPORTED_PROTOCOL_VERSION,
    ),
    (
        "connect-level-6",
        V5,
        f"10 0d {MQTT} 06 02 003c 00 0000",
        "protocol level",
        ReasonCode.UNSUPPORTED_PROTOCOL_VERSION,
    ),
    (
        "connect-mqisdp",
        V4,
        "10 0e 0006 4d5149736470 03 02 003c 0000",
        "protocol name",
        ReasonCode.UNSUPPORTED_PROTOCOL_VERSION,
    ),
    ("connect-truncated", V4, f"10 0a {MQTT} 04 02 003c", "client_id", MALFORMED),
    ("connect-trailing", V4, f"10 0d {MQTT} 04 02 003c 0000 00", "remaining length", MALFORMED),
    (
        "connect-will-property-in-connect",
        V5,
        f"10 12 {MQTT} 05 02 003c 05 18 00000001 0000",
        "properties",
        MALFORMED,
    ),
    (
        "connect-auth-data-without-method",
        V5,
        f"10 11 {MQTT} 05 02 003c 04 16 0001 78 0000",
        "properties.authentication_data",
        PROTOCOL,
    ),
    (
        "response-topic-wildcard",
        V5,
        "30 09 0001 74 05 08 0002 612b",
        "properties.response_topic",
        PROTOCOL,
    ),
    ("length-5-bytes", V4, "30 ff ff ff ff 7f", "remaining length", MALFORMED),
    ("length-not-minimal", V4, "c0 80 00", "remaining length", MALFORMED),  # MQTT-1.5.5-1
    ("trailing-bytes", V4, "c0 00 00", "remaining length", MALFORMED),
    ("incomplete-body", V4, "30 05 00", "remaining length", MALFORMED),
    ("incomplete-header", V4, "30", "fixed header", MALFORMED),
    ("incomplete-length", V4, "30 80", "remaining length", MALFORMED),
]


@pytest.mark.parametrize(
    ("name", "version", "wire", "field", "reason"),
    MALFORMED_CASES,
    ids=[case[0] for case in MALFORMED_CASES],
)
def test_decode_refuses(
    name: str, version: ProtocolVersion, wire: str, field: str, reason: ReasonCode
) -> None:
    data = h(wire)
    with pytest.raises(MalformedPacketError) as info:
        decode_packet(data, version)
    assert info.value.field == field
    assert info.value.reason_code == reason
    assert info.value.offset >= 0
    assert f"offset {info.value.offset}" in str(info.value)
    # The incremental decoder refuses it as well, unless it is merely incomplete or followed
    # by the start of another packet, which a stream allows.
    if "incomplete" not in str(info.value) and name != "trailing-bytes":
        decoder = PacketDecoder(version)
        with pytest.raises(MalformedPacketError):
            decoder.decode(data)


def test_error_offsets_point_at_the_field() -> None:
    with pytest.raises(MalformedPacketError) as info:
        decode_packet(h("32 05 0001 74 0000"), V4)
    assert info.value.offset == 5  # packet id after 2 header + 3 topic bytes
    with pytest.raises(MalformedPacketError) as info:
        decode_packet(h("30 0a 0001 74 06 23 0001 23 0002"), V5)
    assert info.value.offset == 9  # the second Topic Alias identifier


def test_decoder_refuses_oversize_before_buffering() -> None:
    decoder = PacketDecoder(V4, max_packet_size=100)
    # A PUBLISH announcing 1,000,000 bytes: refused from the first four bytes alone.
    with pytest.raises(MalformedPacketError) as info:
        decoder.decode(h("30") + pack_vbi(1_000_000)[:3])
    assert info.value.reason_code == ReasonCode.PACKET_TOO_LARGE
    assert decoder.buffered == 0
    decoder = PacketDecoder(V4, max_packet_size=100)
    decoder.feed(h("30"))
    decoder.feed(pack_vbi(99))  # 1 + 1 + 99 = 101 > 100
    with pytest.raises(MalformedPacketError) as info:
        decoder.next_packet()
    assert info.value.reason_code == ReasonCode.PACKET_TOO_LARGE
    # Exactly at the limit is fine.
    decoder = PacketDecoder(V4, max_packet_size=100)
    packet = Publish("t", b"x" * 95)  # 2 + 3 + 95 = 100
    assert decoder.decode(encode(packet, V4)) == [packet]
    with pytest.raises(MalformedPacketError):
        decode_packet(encode(packet, V4), V4, max_packet_size=99)


def test_decoder_is_unusable_after_an_error() -> None:
    decoder = PacketDecoder(V4)
    with pytest.raises(MalformedPacketError):
        decoder.decode(h("60 02 0001"))
    for call in (
        lambda: decoder.decode(h("c0 00")),
        lambda: decoder.feed(h("c0 00")),
        decoder.next_packet,
    ):
        with pytest.raises(MalformedPacketError, match="failed earlier") as info:
            call()
        assert info.value.field == "flags"
        assert str(info.value).count("offset") == 1


def test_decoder_needs_more_bytes() -> None:
    decoder = PacketDecoder(V5)
    assert decoder.decode(b"") == []
    assert decoder.next_packet() is None
    assert decoder.decode(h("30")) == []
    assert decoder.decode(h("8001")) == []  # header complete, body of 128 bytes pending
    assert decoder.buffered == 3
    assert decoder.decode(h("0001 74 00") + b"x" * 124) == [Publish("t", b"x" * 124)]
    assert decoder.buffered == 0


def test_decoder_rejects_bad_version() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        PacketDecoder(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unsupported"):
        decode_packet(h("c0 00"), 3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "value", "size"),
    [("00", 0, 1), ("7f", 127, 1), ("8001", 128, 2), ("ff7f", 16383, 2), ("808001", 16384, 3),
     ("ffff7f", 2_097_151, 3), ("80808001", 2_097_152, 4), ("ffffff7f", 268_435_455, 4)],
)  # fmt: skip
def test_variable_byte_integer(data: str, value: int, size: int) -> None:
    """The boundary values of MQTT 5 section 1.5.5."""
    assert pack_vbi(value) == h(data)
    assert read_vbi(h(data), 0, size, "x") == (value, size)


def test_variable_byte_integer_limits() -> None:
    with pytest.raises(LocalProtocolError):
        pack_vbi(268_435_456)
    with pytest.raises(LocalProtocolError):
        pack_vbi(-1)
    with pytest.raises(MalformedPacketError, match="four bytes"):
        read_vbi(h("ffffffff01"), 0, 5, "x")
    with pytest.raises(MalformedPacketError, match="minimally"):
        read_vbi(h("8000"), 0, 2, "x")
    with pytest.raises(MalformedPacketError, match="ends inside"):
        read_vbi(h("80"), 0, 1, "x")


# ------------------------------------------------------------------------------ encoding

LONG = "x" * 65_536

ENCODE_ERRORS: list[tuple[str, ProtocolVersion, Any, type[Exception]]] = [
    ("publish-qos1-id-0", V4, Publish("t", b"", QoS.AT_LEAST_ONCE), LPE),
    ("publish-id-too-big", V5, Publish("t", b"", QoS.AT_LEAST_ONCE, packet_id=65_536), LPE),
    ("publish-qos0-dup", V4, Publish("t", b"", dup=True), LPE),
    ("publish-qos0-id", V4, Publish("t", b"", packet_id=3), LPE),
    ("publish-qos3", V4, Publish("t", b"", 3, packet_id=1), LPE),  # type: ignore[arg-type]
    ("publish-wildcard", V4, Publish("a/+", b""), ITE),
    ("publish-hash", V5, Publish("#", b""), ITE),
    ("publish-empty-v311", V4, Publish("", b""), ITE),
    ("publish-empty-no-alias", V5, Publish("", b""), ITE),
    ("publish-nul", V4, Publish("a\x00b", b""), ITE),
    ("publish-surrogate", V4, Publish("a\ud800", b""), ITE),
    ("publish-long-topic", V4, Publish(LONG, b""), ITE),
    ("publish-str-payload", V4, Publish("t", "text"), LPE),  # type: ignore[arg-type]
    ("publish-not-allowed-property", V5,
     Publish("t", properties=Properties(receive_maximum=1)), LPE),
    ("publish-alias-0", V5, Publish("t", properties=Properties(topic_alias=0)), LPE),
    ("puback-id-0", V4, PubAck(0), LPE),
    ("puback-failure-v311", V4, PubAck(1, 0x80), LPE),
    ("pubrel-failure-v311", V4, PubRel(1, 0x92), LPE),
    ("puback-code-not-allowed", V5, PubAck(1, 0x04), LPE),
    ("pubcomp-code-not-allowed", V5, PubComp(1, 0x10), LPE),
    ("puback-property-not-allowed", V5, PubAck(1, 0, Properties(topic_alias=1)), LPE),
    ("auth-v311", V4, Auth(), LPE),
    ("disconnect-reason-v311", V4, Disconnect(0x04), LPE),
    ("disconnect-code-not-allowed", V5, Disconnect(0x05), LPE),
    ("connack-v5-code-v311", V4, ConnAck(False, 0x80), LPE),
    ("connack-session-refused", V4, ConnAck(True, 4), LPE),
    ("connack-code-not-allowed", V5, ConnAck(False, 0x10), LPE),
    ("subscribe-empty", V4, Subscribe(1, ()), LPE),
    ("subscribe-id-0", V5, Subscribe(0, (Subscription("a"),)), LPE),
    ("subscribe-no-local-v311", V4, Subscribe(1, (Subscription("a", no_local=True),)), LPE),
    ("subscribe-retain-handling-v311", V4,
     Subscribe(1, (Subscription("a", retain_handling=RetainHandling.DO_NOT_SEND),)), LPE),
    ("subscribe-empty-filter", V5, Subscribe(1, (Subscription(""),)), ITE),
    ("subscribe-shared-no-local", V5,
     Subscribe(1, (Subscription("$share/g/a", no_local=True),)), LPE),
    ("subscribe-two-ids", V5,
     Subscribe(1, (Subscription("a"),), Properties(subscription_identifiers=(1, 2))), LPE),
    ("unsubscribe-empty", V5, Unsubscribe(1, ()), LPE),
    ("unsubscribe-nul", V4, Unsubscribe(1, ("a\x00",)), ITE),
    ("suback-empty", V5, SubAck(1, ()), LPE),
    ("suback-bad-code-v311", V4, SubAck(1, (3,)), LPE),
    ("unsuback-empty-v5", V5, UnsubAck(1, ()), LPE),
    ("unsuback-failure-v311", V4, UnsubAck(1, (0x80,)), LPE),
    ("connect-password-no-user-v311", V4, Connect("c", password=b"x"), LPE),
    ("connect-version-mismatch", V5, Connect("c"), LPE),
    ("connect-keep-alive", V4, Connect("c", keep_alive=65_536), LPE),
    ("connect-long-client-id", V4, Connect(LONG), LPE),
    ("connect-will-wildcard", V4, Connect("c", will=Will("a/#")), ITE),
    ("connect-receive-maximum-0", V5,
     Connect("c", V5, properties=Properties(receive_maximum=0)), LPE),
    ("connect-will-property-in-connect", V5,
     Connect("c", V5, properties=Properties(will_delay_interval=1)), LPE),
    ("connect-session-expiry-range", V5,
     Connect("c", V5, properties=Properties(session_expiry_interval=2**32)), LPE),
    ("connect-auth-data-without-method", V5,
     Connect("c", V5, properties=Properties(authentication_data=b"x")), LPE),
    ("response-topic-wildcard", V5,
     Publish("t", properties=Properties(response_topic="a/#")), ITE),
    ("user-property-not-pair", V5,
     PubAck(1, 0, Properties(user_properties=(("a",),))), LPE),  # type: ignore[arg-type]
]  # fmt: skip


@pytest.mark.parametrize(
    ("version", "packet", "error"),
    [case[1:] for case in ENCODE_ERRORS],
    ids=[case[0] for case in ENCODE_ERRORS],
)
def test_encode_refuses(version: ProtocolVersion, packet: Packet, error: type[Exception]) -> None:
    with pytest.raises(error):
        encode(packet, version)


def test_v311_ignores_what_it_cannot_express_harmlessly() -> None:
    """Success codes and properties are dropped in MQTT 3.1.1; failing SUBACK codes become 0x80."""
    props = Properties(reason_string="ok", user_properties=(("a", "b"),))
    assert encode(PubAck(1, 0x10, props), V4) == h("40 02 0001")
    assert encode(UnsubAck(1, (0x11,)), V4) == h("b0 02 0001")
    assert encode(SubAck(1, (0x87, 1)), V4) == h("90 04 0001 80 01")
    assert encode(Publish("t", b"", properties=Properties(message_expiry_interval=5)), V4) == h(
        "30 03 0001 74"
    )


def test_encode_rejects_non_packets() -> None:
    with pytest.raises(LocalProtocolError):
        encode("not a packet", V4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unsupported"):
        encode(Disconnect(), 6)  # type: ignore[arg-type]


def test_encoded_size_of_every_shape() -> None:
    """encoded_size agrees with len(encode()) for the types sized without encoding."""
    packets: list[Packet] = [
        Publish("t/ä", b"x" * 20_000, QoS.AT_LEAST_ONCE, packet_id=1),
        Publish("t", b"", properties=Properties(topic_alias=1)),
        PubAck(1, 0x10),
        PubAck(1, 0x80, Properties(reason_string="r")),
        Disconnect(0x04),
        Disconnect(0, Properties(reason_string="r")),
    ]
    for packet in packets:
        assert encoded_size(packet, V5) == len(encode(packet, V5))
    assert encoded_size(packets[0], V4) == len(encode(packets[0], V4))
    assert encoded_size(Subscribe(1, (Subscription("a"),)), V4) == 8


def test_utf8_rules_that_are_not_errors() -> None:
    """A BOM stays a character (MQTT-1.5.4-3); "SHOULD NOT" code points are accepted."""
    for topic in ("\ufeffa", "a\uffffb", "tab\there", "\U0001f600/x"):
        packet = Publish(topic, b"")
        assert decode_packet(encode(packet, V5), V5) == packet
    assert decode_packet(h("30 06 0003 efbbbf 00"), V5) == Publish("\ufeff")


def test_string_length_boundary() -> None:
    """65,535 encoded bytes is the longest string (section 1.5.4)."""
    longest = "x" * 65_535
    packet = Publish(longest, b"")
    assert decode_packet(encode(packet, V4), V4) == packet
    with pytest.raises(LocalProtocolError):
        encode(Connect("c", username="é" * 32_768), V4)  # 65,536 bytes in UTF-8


MISTYPED: list[Packet] = [
    Publish("t", None),  # type: ignore[arg-type]
    Publish(None),  # type: ignore[arg-type]
    PubAck(1, None),  # type: ignore[arg-type]
    Disconnect("x"),  # type: ignore[arg-type]
    Subscribe(1, (Subscription("a", "x"),)),  # type: ignore[arg-type]
]
MISTYPED_V5: list[Packet] = [
    Disconnect(0, None),  # type: ignore[arg-type]
    PubAck(1, 0, Properties(user_properties=5)),  # type: ignore[arg-type]
    Connect("c", V5, properties=b"x"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(
    ("packet", "version"),
    [(p, V4) for p in MISTYPED] + [(p, V5) for p in MISTYPED + MISTYPED_V5],
)
def test_mistyped_fields_are_local_protocol_errors(
    packet: Packet, version: ProtocolVersion
) -> None:
    """The model is not type-checked at run time; the encoder still fails cleanly.

    (MQTT 3.1.1 ignores properties, so a mistyped ``properties`` only matters in MQTT 5.)
    """
    with pytest.raises(LocalProtocolError):
        encode(packet, version)


def test_error_in_a_packet_split_across_calls() -> None:
    """A bad packet that completes in a later chunk poisons the decoder just the same."""
    good = encode(PubAck(1), V4)
    decoder = PacketDecoder(V4)
    assert decoder.decode(good + h("62 02 00")) == [PubAck(1)]  # PUBREL, flags checked later
    assert decoder.buffered == 3
    with pytest.raises(MalformedPacketError) as info:
        decoder.decode(h("00"))  # packet id 0
    assert info.value.field == "packet_id"
    with pytest.raises(MalformedPacketError, match="failed earlier"):
        decoder.decode(good)
    # Bad flags are refused from the first two bytes, before any body arrives.
    decoder = PacketDecoder(V4)
    with pytest.raises(MalformedPacketError) as info:
        decoder.decode(h("60 02"))
    assert info.value.field == "flags"


def test_decoder_version_and_limit_are_settable() -> None:
    decoder = PacketDecoder(V4, max_packet_size=10)
    decoder.version = V5
    decoder.max_packet_size = 5
    assert decoder.decode(h("40 03 0001 10")) == [PubAck(1, 0x10)]
    with pytest.raises(MalformedPacketError) as info:
        decoder.decode(h("40 04 0001 10 00"))
    assert info.value.reason_code == ReasonCode.PACKET_TOO_LARGE
    with pytest.raises(ValueError, match="unsupported"):
        decoder.version = 3  # type: ignore[assignment]
