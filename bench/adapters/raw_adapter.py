"""Raw-socket reference: MQTT 3.1.1 by hand, no library, as the ceiling for pure Python.

Theory of operation: every PUBLISH frame is encoded before the clock starts and every
acknowledgement (PUBACK, PUBREC, PUBREL, PUBCOMP) is looked up in a precomputed table, so
the timed loop only moves bytes and splits frames. Throughput uses a publisher socket and a
subscriber socket driven by one ``select`` loop in one thread (the libraries also run both
ends in one process); the publisher keeps at most :data:`WINDOW` QoS 1/2 messages
unacknowledged, because mosquitto slows down badly with thousands outstanding from one
client. Latency uses one socket that subscribes to the topic it publishes on.
"""

from __future__ import annotations

import select
import socket
import time
from typing import Any

from bench.common import TOPIC, Job, LatencyMeter, ThroughputMeter, payload

NAME = "raw-socket"
NOTE = "the ceiling: pre-encoded frames, one select loop, QoS 1/2 window of 300"
WINDOW = 300
_TOPIC = TOPIC.encode()
_PUBLISH, _PUBACK, _PUBREC, _PUBREL, _PUBCOMP = 3, 4, 5, 6, 7


def version() -> str:
    """The reference has no library; report the Python socket module."""
    return "socket"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        digit, n = n % 128, n // 128
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def _connect(job: Job, suffix: str) -> socket.socket:
    sock = socket.create_connection((job.host, job.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    body = _string(b"MQTT") + bytes([4, 0x02]) + (60).to_bytes(2, "big")
    body += _string(f"{job.client_id}-{suffix}".encode())
    sock.sendall(b"\x10" + _varint(len(body)) + body)
    connack = _recv_exact(sock, 4)
    if connack[0] != 0x20 or connack[3] != 0:
        raise RuntimeError(f"connection refused: {connack!r}")
    return sock


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise RuntimeError("broker closed the connection")
        data += chunk
    return data


def _subscribe(sock: socket.socket, qos: int) -> None:
    body = (1).to_bytes(2, "big") + _string(_TOPIC) + bytes([qos])
    sock.sendall(b"\x82" + _varint(len(body)) + body)
    suback = _recv_exact(sock, 5)
    if suback[0] != 0x90 or suback[4] != qos:
        raise RuntimeError(f"subscription refused: {suback!r}")


def _frames(job: Job, first: int, count: int) -> list[bytes]:
    """PUBLISH frames for sequence numbers first..first+count-1 (packet id = seq % 65535 + 1)."""
    qos = job.qos
    head = bytes([0x30 | qos << 1])
    length = _varint(2 + len(_TOPIC) + (2 if qos else 0) + job.size)
    topic = _string(_TOPIC)
    frames = []
    for seq in range(first, first + count):
        pid = (seq % 65535 + 1).to_bytes(2, "big") if qos else b""
        frames.append(head + length + topic + pid + payload(seq, job.size))
    return frames


def _ack_table(kind: int, flags: int, n: int) -> list[bytes]:
    first = bytes([kind << 4 | flags, 2])
    return [first + pid.to_bytes(2, "big") for pid in range(n + 1)]


class _Acks:
    def __init__(self, count: int) -> None:
        n = min(count, 65535)
        self.puback = _ack_table(_PUBACK, 0, n)
        self.pubrec = _ack_table(_PUBREC, 0, n)
        self.pubrel = _ack_table(_PUBREL, 2, n)
        self.pubcomp = _ack_table(_PUBCOMP, 0, n)


def _split(buf: bytearray) -> list[tuple[int, memoryview]]:
    """Remove every complete frame from ``buf``; return (first byte, body) pairs."""
    frames = []
    view = memoryview(bytes(buf))
    end = len(view)
    pos = 0
    while True:
        i = pos + 1
        length = shift = 0
        while i < end:
            digit = view[i]
            i += 1
            length |= (digit & 0x7F) << shift
            shift += 7
            if not digit & 0x80:
                break
        else:
            break  # the fixed header is not complete yet
        if i + length > end:
            break
        frames.append((view[pos], view[i : i + length]))
        pos = i + length
    del buf[:pos]
    return frames


def _publish_body(first: int, body: memoryview) -> tuple[int, memoryview]:
    """(packet id or 0, payload) of a PUBLISH body."""
    topic_len = int.from_bytes(body[:2], "big")
    at = 2 + topic_len
    if first & 0x06:
        return int.from_bytes(body[at : at + 2], "big"), body[at + 2 :]
    return 0, body[at:]


def run_throughput(job: Job) -> dict[str, Any]:
    """Publisher and subscriber sockets in one select loop."""
    meter = ThroughputMeter(job)
    acks = _Acks(job.count)
    sub = _connect(job, "sub")
    _subscribe(sub, job.qos)
    pub = _connect(job, "pub")
    frames = _frames(job, 0, job.count)
    for sock in (pub, sub):
        sock.setblocking(False)
    pub_in, sub_in = bytearray(), bytearray()
    pub_out, sub_out = bytearray(), bytearray()
    next_seq = inflight = 0
    window = job.count if job.qos == 0 else WINDOW
    meter.start()
    while not meter.complete and not meter.give_up():
        if next_seq < job.count and len(pub_out) < 1 << 16:
            n = min(job.count - next_seq, window - inflight, 256)
            if n > 0:
                pub_out += b"".join(frames[next_seq : next_seq + n])
                next_seq += n
                if job.qos:
                    inflight += n
                if next_seq == job.count:
                    meter.published_all()
        writers = [s for s, out in ((pub, pub_out), (sub, sub_out)) if out]
        readable, writable, _ = select.select([pub, sub], writers, [], 0.25)
        if pub in writable:
            del pub_out[: pub.send(pub_out)]
        if sub in writable:
            del sub_out[: sub.send(sub_out)]
        if sub in readable:
            data = sub.recv(1 << 18)
            if not data:
                raise RuntimeError("broker closed the subscriber")
            sub_in += data
            for first, body in _split(sub_in):
                kind = first >> 4
                if kind == _PUBLISH:
                    pid, data_ = _publish_body(first, body)
                    meter.on_payload(data_)
                    if pid:
                        table = acks.puback if first & 0x02 else acks.pubrec
                        sub_out += table[pid]
                elif kind == _PUBREL:
                    sub_out += acks.pubcomp[int.from_bytes(body[:2], "big")]
        if pub in readable:
            data = pub.recv(1 << 18)
            if not data:
                raise RuntimeError("broker closed the publisher")
            pub_in += data
            for first, body in _split(pub_in):
                kind = first >> 4
                if kind in (_PUBACK, _PUBCOMP):
                    inflight -= 1
                elif kind == _PUBREC:
                    pub_out += acks.pubrel[int.from_bytes(body[:2], "big")]
    result = meter.result()
    for sock in (pub, sub):
        sock.setblocking(True)
        sock.sendall(b"\xe0\x00")
        sock.close()
    return result


def run_latency(job: Job) -> dict[str, Any]:
    """One blocking socket: publish, read until our own message comes back, repeat."""
    meter = LatencyMeter(job)
    acks = _Acks(65535)
    sock = _connect(job, "rtt")
    _subscribe(sock, job.qos)
    sock.settimeout(max(job.idle, 1.0))
    inbox = bytearray()
    seq = 0
    meter.start()
    while meter.more():
        frame = _frames(job, seq, 1)[0]
        t0 = time.perf_counter()
        sock.sendall(frame)
        got = False
        while not got:
            data = sock.recv(1 << 18)
            if not data:
                raise RuntimeError("broker closed the connection")
            inbox += data
            out = bytearray()
            for first, body in _split(inbox):
                kind = first >> 4
                if kind == _PUBLISH:
                    pid, data_ = _publish_body(first, body)
                    got = got or int.from_bytes(data_[:8], "big") == seq
                    if pid:
                        out += (acks.puback if first & 0x02 else acks.pubrec)[pid]
                elif kind == _PUBREC:
                    out += acks.pubrel[int.from_bytes(body[:2], "big")]
                elif kind == _PUBREL:
                    out += acks.pubcomp[int.from_bytes(body[:2], "big")]
            if out:
                sock.sendall(out)
        meter.add(time.perf_counter() - t0)
        seq += 1
    result = meter.result()
    sock.sendall(b"\xe0\x00")
    sock.close()
    return result
