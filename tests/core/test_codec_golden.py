"""Golden byte vectors for every packet type, MQTT 3.1.1 and MQTT 5.0.

Each vector was worked out by hand from the specifications (fixed header, variable header,
payload); comments show the arithmetic for the remaining length where it is not obvious.
"""

from __future__ import annotations

import pytest

from trio_mqtt._core._codec import PacketDecoder, decode_packet, encode, encoded_size
from trio_mqtt._core._packets import (
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    Properties,
    ProtocolVersion,
    PubAck,
    PubComp,
    Publish,
    PubRec,
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

V4 = ProtocolVersion.V311
V5 = ProtocolVersion.V5
MQTT = "00 04 4d 51 54 54"  # protocol name "MQTT"


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


V4_VECTORS: list[tuple[str, Packet, str]] = [
    # rl = 6 (name) + 1 (level) + 1 (flags) + 2 (keep alive) + 5 (client id) = 15
    ("connect-minimal", Connect("abc", keep_alive=60), f"10 0f {MQTT} 04 02 00 3c 00 03 616263"),
    (
        "connect-full",
        Connect(
            "id",
            keep_alive=10,
            clean_start=False,
            username="u",
            password=b"pw",
            will=Will("w", b"x", QoS.EXACTLY_ONCE, retain=True),
        ),
        # flags: user 80 | password 40 | will retain 20 | will QoS 2 10 | will 04 = f4
        # rl = 10 + 4 (id) + 3 (will topic) + 3 (will payload) + 3 (user) + 4 (password) = 27
        f"10 1b {MQTT} 04 f4 00 0a 0002 6964 0001 77 0001 78 0001 75 0002 7077",
    ),
    ("connack-session", ConnAck(True, 0), "20 02 01 00"),
    ("connack-refused", ConnAck(False, 5), "20 02 00 05"),
    ("publish-qos0", Publish("a/b", b"hi"), "30 07 0003 612f62 6869"),
    (
        "publish-qos1-retain-dup",
        Publish("a", b"", QoS.AT_LEAST_ONCE, retain=True, dup=True, packet_id=10),
        "3b 05 0001 61 000a",
    ),
    (
        "publish-qos2",
        Publish("t", b"\x00\xff", QoS.EXACTLY_ONCE, packet_id=0x1234),
        "34 07 0001 74 1234 00ff",
    ),
    # rl = 3 + 200 = 203 = 0b1_1001011 -> cb 01
    ("publish-2-byte-length", Publish("t", b"x" * 200), "30 cb01 0001 74" + "78" * 200),
    # rl = 3 + 16381 = 16384 = 2**14 -> 80 80 01
    ("publish-3-byte-length", Publish("t", b"y" * 16381), "30 808001 0001 74" + "79" * 16381),
    ("puback", PubAck(1), "40 02 0001"),
    ("pubrec", PubRec(0x0203), "50 02 0203"),
    ("pubrel", PubRel(65535), "62 02 ffff"),
    ("pubcomp", PubComp(7), "70 02 0007"),
    (
        "subscribe",
        Subscribe(1, (Subscription("a/+", QoS.AT_LEAST_ONCE), Subscription("#", QoS.EXACTLY_ONCE))),
        # rl = 2 + (2 + 3 + 1) + (2 + 1 + 1) = 12
        "82 0c 0001 0003 612f2b 01 0001 23 02",
    ),
    ("suback", SubAck(1, (1, 0x80)), "90 04 0001 01 80"),
    ("unsubscribe", Unsubscribe(2, ("a/+", "#")), "a2 0a 0002 0003 612f2b 0001 23"),
    ("unsuback", UnsubAck(2), "b0 02 0002"),
    ("pingreq", PingReq(), "c0 00"),
    ("pingresp", PingResp(), "d0 00"),
    ("disconnect", Disconnect(), "e0 00"),
]

V5_VECTORS: list[tuple[str, Packet, str]] = [
    # rl = 6 + 1 + 1 + 2 + 1 (property length 0) + 5 = 16
    ("connect-minimal", Connect("abc", V5, 60), f"10 10 {MQTT} 05 02 003c 00 0003 616263"),
    (
        "connect-full",
        Connect(
            "id",
            V5,
            keep_alive=10,
            clean_start=False,
            username="u",
            password=b"pw",
            will=Will("w", b"x", QoS.AT_LEAST_ONCE, False, Properties(will_delay_interval=5)),
            properties=Properties(session_expiry_interval=0x78, receive_maximum=20),
        ),
        # flags: 80 | 40 | will QoS 1 08 | will 04 = cc
        # properties: 11 00000078 (session expiry), 21 0014 (receive maximum): length 8
        # will properties: 18 00000005 (will delay): length 5
        # rl = 10 + 9 + 4 + 6 + 3 + 3 + 3 + 4 = 42
        f"10 2a {MQTT} 05 cc 000a 08 11 00000078 21 0014 0002 6964 "
        "05 18 00000005 0001 77 0001 78 0001 75 0002 7077",
    ),
    ("connack", ConnAck(False, 0), "20 03 00 00 00"),
    (
        "connack-properties",
        ConnAck(True, 0, Properties(receive_maximum=10, topic_alias_maximum=5)),
        "20 09 01 00 06 21 000a 22 0005",
    ),
    ("connack-refused", ConnAck(False, 0x87), "20 03 00 87 00"),
    ("publish-qos0", Publish("a/b", b"hi"), "30 08 0003 612f62 00 6869"),
    (
        "publish-alias-properties",
        Publish(
            "",
            b"x",
            QoS.AT_LEAST_ONCE,
            packet_id=1,
            properties=Properties(
                payload_format_indicator=1, topic_alias=2, user_properties=(("k", "v"),)
            ),
        ),
        # properties: 01 01, 23 0002, 26 0001 6b 0001 76: length 12; rl = 2 + 2 + 1 + 12 + 1
        "32 12 0000 0001 0c 01 01 23 0002 26 0001 6b 0001 76 78",
    ),
    (
        "publish-subscription-ids",
        Publish(
            "t",
            b"",
            properties=Properties(message_expiry_interval=60, subscription_identifiers=(1, 300)),
        ),
        # 300 = 0b10_0101100 -> ac 02; properties length 5 + 2 + 3 = 10; rl = 3 + 1 + 10
        "30 0e 0001 74 0a 02 0000003c 0b 01 0b ac02",
    ),
    ("puback", PubAck(1), "40 02 0001"),
    ("puback-code", PubAck(1, 0x10), "40 03 0001 10"),
    (
        "puback-reason-string",
        PubAck(1, 0x80, Properties(reason_string="no")),
        "40 09 0001 80 05 1f 0002 6e6f",
    ),
    ("pubrec", PubRec(2, 0x91), "50 03 0002 91"),
    ("pubrel", PubRel(3, 0x92), "62 03 0003 92"),
    ("pubcomp", PubComp(4), "70 02 0004"),
    (
        "subscribe",
        Subscribe(
            1,
            (
                Subscription(
                    "a/+",
                    QoS.AT_LEAST_ONCE,
                    no_local=True,
                    retain_as_published=True,
                    retain_handling=RetainHandling.DO_NOT_SEND,
                ),
            ),
            Properties(subscription_identifiers=(7,)),
        ),
        # options: QoS 1 | no local 04 | retain as published 08 | retain handling 2 << 4 = 2d
        "82 0b 0001 02 0b 07 0003 612f2b 2d",
    ),
    ("suback", SubAck(1, (1, 0x87)), "90 05 0001 00 01 87"),
    ("unsubscribe", Unsubscribe(2, ("a/+",)), "a2 08 0002 00 0003 612f2b"),
    ("unsuback", UnsubAck(2, (0, 0x11)), "b0 05 0002 00 00 11"),
    ("pingreq", PingReq(), "c0 00"),
    ("pingresp", PingResp(), "d0 00"),
    ("disconnect", Disconnect(), "e0 00"),
    ("disconnect-code", Disconnect(0x04), "e0 01 04"),
    (
        "disconnect-properties",
        Disconnect(0x8E, Properties(reason_string="x")),
        "e0 06 8e 04 1f 0001 78",
    ),
    (
        "disconnect-session-expiry",
        Disconnect(0, Properties(session_expiry_interval=0)),
        "e0 07 00 05 11 00000000",
    ),
    ("auth", Auth(), "f0 00"),
    (
        "auth-continue",
        Auth(0x18, Properties(authentication_method="M", authentication_data=b"d")),
        "f0 0a 18 08 15 0001 4d 16 0001 64",
    ),
]


def _ids(vectors: list[tuple[str, Packet, str]]) -> list[str]:
    return [name for name, _, _ in vectors]


@pytest.mark.parametrize(("name", "packet", "wire"), V4_VECTORS, ids=_ids(V4_VECTORS))
def test_v311_golden(name: str, packet: Packet, wire: str) -> None:
    data = h(wire)
    assert encode(packet, V4) == data
    assert encoded_size(packet, V4) == len(data)
    assert decode_packet(data, V4) == packet


@pytest.mark.parametrize(("name", "packet", "wire"), V5_VECTORS, ids=_ids(V5_VECTORS))
def test_v5_golden(name: str, packet: Packet, wire: str) -> None:
    data = h(wire)
    assert encode(packet, V5) == data
    assert encoded_size(packet, V5) == len(data)
    assert decode_packet(data, V5) == packet


@pytest.mark.parametrize(
    ("wire", "packet"),
    [
        ("40 03 0001 00", PubAck(1)),  # reason code present, no property length
        ("40 04 0001 00 00", PubAck(1)),  # full form with empty properties
        ("50 04 0001 10 00", PubRec(1, 0x10)),
        ("62 03 0001 00", PubRel(1)),
        ("70 04 0001 92 00", PubComp(1, 0x92)),
        ("e0 01 00", Disconnect()),
        ("e0 02 00 00", Disconnect()),
        ("e0 02 04 00", Disconnect(4)),
        ("f0 01 00", Auth()),
        ("f0 02 00 00", Auth()),
    ],
)
def test_v5_long_forms_decode(wire: str, packet: Packet) -> None:
    """The encoder uses the shortest form; the decoder also takes the longer ones."""
    assert decode_packet(h(wire), V5) == packet
    assert len(encode(packet, V5)) < len(h(wire))


def test_connect_uses_its_own_protocol_level() -> None:
    """CONNECT decodes by its level byte, whichever version the decoder was made for."""
    v5_connect = Connect("abc", V5, 60)
    v4_connect = Connect("abc", keep_alive=60)
    assert decode_packet(encode(v5_connect, V5), V4) == v5_connect
    assert decode_packet(encode(v4_connect, V4), V5) == v4_connect
    decoder = PacketDecoder(V4)
    assert decoder.decode(encode(v5_connect, V5)) == [v5_connect]
    decoder.version = V5
    assert decoder.version is V5
    assert decoder.decode(h("40 03 0001 10")) == [PubAck(1, 0x10)]


def test_decoded_packets_are_real_instances() -> None:
    """The fast builders produce ordinary, frozen, hashable model objects."""
    packet = decode_packet(h("3b 05 0001 61 000a"), V4)
    assert type(packet) is Publish
    assert packet == Publish("a", b"", QoS.AT_LEAST_ONCE, True, True, 10)
    assert hash(packet) == hash(Publish("a", b"", QoS.AT_LEAST_ONCE, True, True, 10))
    assert packet.qos is QoS.AT_LEAST_ONCE
    with pytest.raises(AttributeError):
        packet.topic = "b"  # type: ignore[misc]
    ack = decode_packet(h("40 02 0001"), V4)
    assert type(ack) is PubAck
    assert ack == PubAck(1)
    props = decode_packet(h("e0 06 8e 04 1f 0001 78"), V5).properties  # type: ignore[union-attr]
    assert type(props) is Properties
    assert props == Properties(reason_string="x")
    assert hash(props) == hash(Properties(reason_string="x"))
    assert props.user_properties == ()
    assert bool(props)
    with pytest.raises(AttributeError):
        props.reason_string = "y"  # type: ignore[misc]
