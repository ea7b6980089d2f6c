"""Transports against a real mosquitto (TCP, TLS, WS, WSS, Unix socket) and small Trio servers.

Every exchange is hand-encoded MQTT 3.1.1 (see ``RawMqtt``), so these tests depend only on the
transport layer: a CONNECT/CONNACK handshake and a full QoS 0/1/2 publish/subscribe round trip
through the broker over each transport, plus the failure modes (certificates, WebSocket framing,
proxy authentication) that each transport must report with a typed error.
"""

from __future__ import annotations

import ssl
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from trio_mqtt import InvalidOptionError, TransportError
from trio_mqtt._transports import (
    CertificateVerificationError,
    HttpProxy,
    StreamLayer,
    TcpTransport,
    TlsError,
    TlsTransport,
    Transport,
    UnixSocketTransport,
    WebSocketError,
    WebSocketTransport,
    translate_stream_error,
)
from trio_mqtt._transports._websocket_stream import WebSocketStream
from trio_mqtt.testing import MosquittoBroker

TIMEOUT = 10
MAX_PACKET = 1024 * 1024
LOCALHOST = "127.0.0.1"

# --------------------------------------------------------------------------- hand-made MQTT


def _remaining_length(size: int) -> bytes:
    out = bytearray()
    while True:
        size, digit = divmod(size, 128)
        out.append(digit | (0x80 if size else 0))
        if not size:
            return bytes(out)


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _remaining_length(len(body)) + body


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def connect_packet(client_id: str, keep_alive: int = 60) -> bytes:
    """MQTT 3.1.1 CONNECT with clean session."""
    return _packet(
        0x10,
        _string("MQTT") + bytes([4, 0x02]) + struct.pack("!H", keep_alive) + _string(client_id),
    )


def publish_packet(topic: str, payload: bytes, qos: int, pid: int = 0) -> bytes:
    body = _string(topic) + (struct.pack("!H", pid) if qos else b"") + payload
    return _packet(0x30 | qos << 1, body)


def ack_packet(kind: int, pid: int) -> bytes:
    """PUBACK (4), PUBREC (5), PUBREL (6, flags 0b0010) or PUBCOMP (7)."""
    return _packet(kind << 4 | (0x02 if kind == 6 else 0), struct.pack("!H", pid))


def subscribe_packet(pid: int, topic: str, qos: int) -> bytes:
    return _packet(0x82, struct.pack("!H", pid) + _string(topic) + bytes([qos]))


def test_hand_encoded_connect_matches_the_reference_bytes() -> None:
    # The brief's reference CONNECT (empty client id, keep alive 60, clean session).
    assert connect_packet("") == b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00"
    assert _remaining_length(321) == b"\xc1\x02"


class RawMqtt:
    """Reads whole MQTT packets from a stream: (type, flags, body)."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    def _parse(self) -> tuple[int, int, bytes] | None:
        size = 0
        for index in range(1, min(len(self.buffer), 5)):
            byte = self.buffer[index]
            size |= (byte & 0x7F) << 7 * (index - 1)
            if not byte & 0x80:
                end = index + 1 + size
                if len(self.buffer) < end:
                    return None
                first = self.buffer[0]
                body = bytes(self.buffer[index + 1 : end])
                del self.buffer[:end]
                return first >> 4, first & 0x0F, body
        return None

    async def packet(self) -> tuple[int, int, bytes]:
        while (parsed := self._parse()) is None:
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError("stream closed")
            self.buffer += data
        return parsed

    async def connect(self, client_id: str) -> None:
        await self.stream.send_all(connect_packet(client_id))
        assert await self.packet() == (2, 0, b"\x00\x00")


async def connack_over(stream: trio.abc.Stream, client_id: str = "t") -> None:
    """CONNECT/CONNACK, then DISCONNECT and close."""
    raw = RawMqtt(stream)
    await raw.connect(client_id)
    await stream.send_all(b"\xe0\x00")
    await stream.aclose()


async def qos_round_trip(stream: trio.abc.Stream, client_id: str, payload_size: int = 100) -> None:
    """Subscribe at QoS 2 and publish to ourselves at QoS 0, 1 and 2, completing every flow.

    Each payload is checked byte for byte when it comes back; ack orders are not assumed,
    since the broker may interleave its PUBLISH with its acks.
    """
    raw = RawMqtt(stream)
    await raw.connect(client_id)
    topic = f"trio-mqtt/transport/{client_id}"
    await stream.send_all(subscribe_packet(1, topic, 2))
    assert await raw.packet() == (9, 0, b"\x00\x01\x02")
    for qos in (0, 1, 2):
        payload = bytes([qos + 65]) * payload_size
        pid = 10 + qos
        await stream.send_all(publish_packet(topic, payload, qos, pid))
        delivered = False  # the copy the broker sends us has completed its flow
        sent = qos == 0  # our publish has completed its flow
        their_pid = -1
        while not (delivered and sent):
            kind, flags, body = await raw.packet()
            if kind == 3:  # PUBLISH: the copy of our message
                assert flags >> 1 & 3 == qos
                (length,) = struct.unpack_from("!H", body)
                assert body[2 : 2 + length].decode() == topic
                offset = 2 + length
                if qos:
                    (their_pid,) = struct.unpack_from("!H", body, offset)
                    offset += 2
                    await stream.send_all(ack_packet(4 if qos == 1 else 5, their_pid))
                assert body[offset:] == payload
                delivered = qos < 2
            elif kind == 6:  # PUBREL for the copy
                assert body == struct.pack("!H", their_pid)
                await stream.send_all(ack_packet(7, their_pid))
                delivered = True
            elif kind == 5:  # PUBREC for ours
                assert body == struct.pack("!H", pid)
                await stream.send_all(ack_packet(6, pid))
            elif kind in (4, 7):  # PUBACK / PUBCOMP for ours
                assert (kind, body) == (4 if qos == 1 else 7, struct.pack("!H", pid))
                sent = True
            else:
                raise AssertionError(f"unexpected packet type {kind}")
    await stream.send_all(b"\xe0\x00")
    await stream.aclose()


# --------------------------------------------------------------------------- brokers


@pytest.fixture(scope="module")
def broker() -> Iterator[MosquittoBroker]:
    """One broker with every listener: TCP, TLS, WS, WSS and a Unix socket."""
    with MosquittoBroker(
        tls=True,
        websockets=True,
        websockets_tls=True,
        unix_socket=True,
        max_inflight_messages=0,
        log_types=("error", "warning"),
    ) as running:
        yield running


@pytest.fixture(scope="module")
def mtls_broker() -> Iterator[MosquittoBroker]:
    """A broker whose TLS listener demands a client certificate (mutual TLS)."""
    with MosquittoBroker(tls=True, require_certificate=True, log_types=("error",)) as running:
        yield running


def tls_for(broker: MosquittoBroker, **options: Any) -> TlsTransport:
    return TlsTransport(ca_file=broker.ca_pem_path, **options)


def every_transport(broker: MosquittoBroker) -> dict[str, tuple[Transport, int]]:
    return {
        "tcp": (TcpTransport(), broker.port),
        "tls": (tls_for(broker), broker.tls_port),
        "ws": (WebSocketTransport(path="/mqtt"), broker.ws_port),
        "wss": (WebSocketTransport(tls=tls_for(broker)), broker.wss_port),
        "unix": (UnixSocketTransport(broker.unix_path), 0),
    }


# --------------------------------------------------------------------------- all transports


@pytest.mark.parametrize("name", ["tcp", "tls", "ws", "wss", "unix"])
async def test_qos_round_trip_over_each_transport(broker: MosquittoBroker, name: str) -> None:
    transport, port = every_transport(broker)[name]
    assert isinstance(transport, Transport)
    with trio.fail_after(TIMEOUT):
        stream = await transport.open_stream(LOCALHOST, port, max_packet_size=MAX_PACKET)
        await qos_round_trip(stream, f"round-trip-{name}")


@pytest.mark.parametrize("name", ["ws", "wss"])
async def test_packets_larger_than_one_websocket_frame(broker: MosquittoBroker, name: str) -> None:
    # 12 KB publishes: more than the 4 KB libwebsockets buffer, so mosquitto sends each in
    # several writes. (mosquitto 2.0.11 sends large WebSocket messages at about 40 KB/s, as
    # paho-mqtt measures too, so bigger payloads live in the fake-server tests below.)
    transport, port = every_transport(broker)[name]
    with trio.fail_after(TIMEOUT):
        stream = await transport.open_stream(LOCALHOST, port, max_packet_size=MAX_PACKET)
        assert isinstance(stream, WebSocketStream)
        await qos_round_trip(stream, f"big-{name}", payload_size=12_000)


async def test_tcp_sets_nodelay_and_buffer_sizes(broker: MosquittoBroker) -> None:
    import socket

    transport = TcpTransport(send_buffer_size=65536, receive_buffer_size=65536)
    with trio.fail_after(TIMEOUT):
        stream = await transport.open_socket_stream(LOCALHOST, broker.port)
        assert stream.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        # Linux doubles the value it is given for bookkeeping; any OS reports at least it.
        assert stream.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= 65536
        await connack_over(stream)
        plain = await TcpTransport(nodelay=False).open_socket_stream(LOCALHOST, broker.port)
        assert not plain.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        await plain.aclose()


async def test_tcp_local_address_is_bound(broker: MosquittoBroker) -> None:
    with trio.fail_after(TIMEOUT):
        stream = await TcpTransport(local_address=LOCALHOST).open_socket_stream(
            LOCALHOST, broker.port
        )
        assert stream.socket.getsockname()[0] == LOCALHOST
        await connack_over(stream)


async def test_tcp_refused_is_a_transport_error() -> None:
    with trio.socket.socket() as sock:  # bound, never listening: connections are refused
        await sock.bind((LOCALHOST, 0))
        port = sock.getsockname()[1]
        with trio.fail_after(TIMEOUT), pytest.raises(TransportError, match=f"{port}"):
            await TcpTransport().open_stream(LOCALHOST, port)


async def test_unix_socket_missing_path_is_a_transport_error(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.sock"
    with trio.fail_after(TIMEOUT), pytest.raises(TransportError, match=r"nothing\.sock"):
        await UnixSocketTransport(missing).open_stream("", 0, max_packet_size=MAX_PACKET)


def test_transport_options_are_validated() -> None:
    with pytest.raises(InvalidOptionError, match="send_buffer_size"):
        TcpTransport(send_buffer_size=0)
    with pytest.raises(InvalidOptionError, match="path"):
        UnixSocketTransport("")
    with pytest.raises(InvalidOptionError, match="ssl_context excludes ca_file"):
        TlsTransport(ssl_context=ssl.create_default_context(), ca_file="x.pem")
    with pytest.raises(InvalidOptionError, match="key_file needs cert_file"):
        TlsTransport(key_file="k.pem")
    with pytest.raises(InvalidOptionError, match="ALPN"):
        TlsTransport(alpn_protocols=("",))
    with pytest.raises(InvalidOptionError, match="sequence of names"):
        TlsTransport(alpn_protocols="mqtt")
    assert WebSocketTransport(headers={"A": "1"}).headers == (("A", "1"),)
    with pytest.raises(InvalidOptionError, match="must start with '/'"):
        WebSocketTransport(path="mqtt")
    with pytest.raises(InvalidOptionError, match="header"):
        WebSocketTransport(headers=[("X-Evil", "a\r\nInjected: 1")])
    with pytest.raises(InvalidOptionError, match="inner"):
        HttpProxy("proxy", 3128, inner=UnixSocketTransport("/x"))  # type: ignore[arg-type]
    with pytest.raises(InvalidOptionError, match="password needs a username"):
        HttpProxy("proxy", 3128, password="x")
    # Layers that can run through a tunnel say so.
    for layer in (TcpTransport(), TlsTransport(), WebSocketTransport()):
        assert isinstance(layer, StreamLayer)
    assert not isinstance(UnixSocketTransport("/x"), StreamLayer)
    assert "secret" not in repr(TlsTransport(cert_file="c.pem", key_password="secret"))
    assert "secret" not in repr(HttpProxy("p", 1, username="u", password="secret"))


def test_translate_stream_error_keeps_the_cause_typed() -> None:
    verify = ssl.SSLCertVerificationError(1, "certificate verify failed")
    verify.verify_code = 10
    verify.verify_message = "certificate has expired"
    broken = trio.BrokenResourceError()
    broken.__cause__ = verify
    error = translate_stream_error(broken, "TLS handshake with b:8883")
    assert isinstance(error, CertificateVerificationError)
    assert (error.verify_code, error.verify_message) == (10, "certificate has expired")
    assert str(error) == (
        "TLS handshake with b:8883: server certificate rejected: certificate has expired"
    )

    alert = ssl.SSLError(1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert")
    alert.reason = "TLSV13_ALERT_CERTIFICATE_REQUIRED"
    wrapped = trio.BrokenResourceError()
    wrapped.__cause__ = alert
    tls_error = translate_stream_error(wrapped, "receiving")
    assert type(tls_error) is TlsError
    assert "tlsv13 alert certificate required" in str(tls_error)

    reset = trio.BrokenResourceError()
    reset.__cause__ = ConnectionResetError(104, "Connection reset by peer")
    plain = translate_stream_error(reset, "receiving")
    assert type(plain) is TransportError
    assert "Connection reset by peer" in str(plain)
    assert "closed" in str(translate_stream_error(trio.ClosedResourceError(), "sending"))
    already = TransportError("x")
    assert translate_stream_error(already, "y") is already


async def test_speaking_the_wrong_protocol_to_a_listener_fails_cleanly(
    broker: MosquittoBroker,
) -> None:
    # WebSocket to a plain MQTT listener: mosquitto takes "GET ..." for a bad packet and hangs
    # up (a reset or an end of stream, depending on timing).
    with trio.fail_after(TIMEOUT), pytest.raises(WebSocketError, match="WebSocket upgrade at"):
        await WebSocketTransport().open_stream(LOCALHOST, broker.port, max_packet_size=MAX_PACKET)
    # TLS to a plain MQTT listener: the handshake fails, reported as a transport error.
    with trio.fail_after(TIMEOUT), pytest.raises(TransportError, match="TLS handshake"):
        await tls_for(broker).open_stream(LOCALHOST, broker.port)
