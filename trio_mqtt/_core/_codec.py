"""The MQTT packet codec: framing, version dispatch and the incremental decoder.

Theory of operation: a packet is a fixed header (type-and-flags byte, then the remaining length
as a variable byte integer of one to four bytes) followed by that many bytes. The framer reads the
fixed header, refuses bad flags (MQTT-2.1.3-1) and a packet larger than ``max_packet_size`` as soon
as the header is complete, before any of the body is buffered, and only then waits for the body.
Each complete packet is copied once into a ``bytes`` object and handed to the version's decoder
(``_codec_v4.DECODERS`` / ``_codec_v5.DECODERS``, indexed by packet type). CONNECT is special: it
is decoded according to its own protocol level byte, whatever the decoder's version.

:class:`PacketDecoder` keeps unconsumed bytes in a ``bytearray`` with a read offset; consumed
bytes are dropped only when the buffer is empty or the offset has grown past half the buffer,
so chunked input never costs quadratic copying. :meth:`PacketDecoder.decode` has a fast path:
it moves into the buffer only the bytes that complete a packet begun earlier, frames the rest
straight out of the caller's bytes, and buffers only an incomplete tail. Any error poisons the
decoder: once a byte stream has gone wrong there is no way to find the next packet boundary, so
every later call raises the same error again.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from . import _codec_v4 as v4, _codec_v5 as v5
from ._errors import LocalProtocolError, MalformedPacketError
from ._packets import Packet, PacketType, ProtocolVersion
from ._primitives import MAX_PACKET_SIZE, Buf, fail, read_str
from ._reason_codes import ReasonCode

__all__ = ["PacketDecoder", "decode_packet", "encode", "encoded_size"]

_Decoder = Callable[[Buf, int, int], Packet]


def _decode_connect(buf: Buf, flags: int, pos: int) -> Packet:
    """Decode CONNECT by its own protocol name and level (MQTT-3.1.2-1, MQTT-3.1.2-2)."""
    name, pos = read_str(buf, pos, len(buf), "protocol name")
    if pos >= len(buf):
        raise fail("packet ends before the protocol level", "protocol level", pos)
    level = buf[pos]
    if name != "MQTT":
        raise fail(
            f"unsupported protocol name {name!r}",
            "protocol name",
            2,
            ReasonCode.UNSUPPORTED_PROTOCOL_VERSION,
        )
    if level == 4:
        return v4.decode_connect_body(buf, pos + 1)
    if level == 5:
        return v5.decode_connect_body(buf, pos + 1)
    raise fail(
        f"unsupported protocol level {level}",
        "protocol level",
        pos,
        ReasonCode.UNSUPPORTED_PROTOCOL_VERSION,
    )


def _table(decoders: tuple[_Decoder, ...]) -> tuple[_Decoder, ...]:
    return (decoders[0], _decode_connect, *decoders[2:])


_DECODERS: dict[int, tuple[_Decoder, ...]] = {4: _table(v4.DECODERS), 5: _table(v5.DECODERS)}
_FLAGS: dict[int, tuple[int, ...]] = {4: v4.EXPECTED_FLAGS, 5: v5.EXPECTED_FLAGS}
_ENCODERS: dict[int, dict[type, Callable[[Any], bytes]]] = {4: v4.ENCODERS, 5: v5.ENCODERS}
_TABLES = {level: (_DECODERS[level], _FLAGS[level]) for level in (4, 5)}
_SIZES: dict[int, dict[type, Callable[[Any], int]]] = {4: v4.SIZES, 5: v5.SIZES}
#: Exceptions an encoder meets when a field has the wrong type.
_MISTYPED = (TypeError, AttributeError, ValueError, IndexError, OverflowError, struct.error)
#: Exceptions a decoder bug could let through; they are reported as malformed packets.
_UNEXPECTED = (IndexError, struct.error, UnicodeDecodeError, ValueError, TypeError, KeyError)


def _check_version(version: int) -> int:
    if version != 4 and version != 5:
        raise ValueError(f"unsupported protocol version {version!r}")
    return int(version)


def encode(packet: Packet, version: ProtocolVersion) -> bytes:
    """Encode one packet into its complete wire form.

    Args:
        packet: the packet.
        version: protocol version of the connection. A CONNECT must carry the same
            ``protocol_version``.

    Raises:
        LocalProtocolError: the packet breaks a rule the encoder checks (strings, ranges, packet
            ids, flags), uses something ``version`` cannot express, or has a field of the wrong
            type.
        InvalidTopicError: a topic name or filter cannot be encoded.
    """
    try:
        encoder = _ENCODERS[version][packet.__class__]
    except KeyError:
        _check_version(version)
        raise LocalProtocolError(f"not an MQTT packet: {packet!r}") from None
    try:
        return encoder(packet)
    except LocalProtocolError:
        raise
    except _MISTYPED as exc:
        # A field of the wrong type (the model is not checked at run time): say so plainly.
        raise LocalProtocolError(f"cannot encode {packet!r}: {exc}") from exc


def encoded_size(packet: Packet, version: ProtocolVersion) -> int:
    """Size in bytes of ``encode(packet, version)``, computed cheaply for the common packets.

    PUBLISH, the acks, PINGREQ/PINGRESP and property-less DISCONNECT are sized without encoding
    them; the other types are encoded and measured. The result is only meaningful for packets
    that :func:`encode` accepts.
    """
    try:
        sizer = _SIZES[version][packet.__class__]
    except KeyError:
        return len(encode(packet, version))
    try:
        return sizer(packet)
    except LocalProtocolError:
        raise
    except _MISTYPED as exc:
        raise LocalProtocolError(f"cannot encode {packet!r}: {exc}") from exc


def _header_length(buf: Buf | bytearray, pos: int, end: int) -> tuple[int, int] | None:
    """Decode the remaining length at ``pos`` (just after the first byte).

    Returns:
        ``(remaining_length, header_length)``, or None if more bytes are needed.
    """
    value = 0
    shift = 0
    index = pos
    while index < end:
        byte = buf[index]
        value |= (byte & 0x7F) << shift
        index += 1
        if byte < 128:
            if byte == 0 and index - pos > 1:
                raise fail("remaining length not minimally encoded", "remaining length", 1)
            return value, index - pos + 1
        shift += 7
        if shift == 28:
            raise fail("remaining length longer than four bytes", "remaining length", 1)
    return None


def _check_first(first: int, flags_table: tuple[int, ...], version: int) -> None:
    """Raise for a first byte with a reserved packet type or wrong flags (MQTT-2.1.3-1)."""
    expected = flags_table[first >> 4]
    if expected == -1 or expected == first & 15:
        return
    ptype = first >> 4
    if ptype == 0:
        raise fail("packet type 0 is reserved", "packet type", 0)
    if expected == -2:
        name = "3.1.1" if version == 4 else "5"
        raise fail(f"{PacketType(ptype).name} is not an MQTT {name} packet", "packet type", 0)
    raise fail(
        f"{PacketType(ptype).name} fixed header flags are 0x{first & 15:x}, "
        f"must be 0x{expected:x} (MQTT-2.1.3-1)",
        "flags",
        0,
    )


def _too_large(total: int, limit: int) -> MalformedPacketError:
    return fail(
        f"packet of {total} bytes exceeds the maximum packet size of {limit} bytes "
        "(max_incoming_packet_size raises it)",
        "remaining length",
        1,
        ReasonCode.PACKET_TOO_LARGE,
    )


def _wrap(exc: Exception) -> MalformedPacketError:
    err = MalformedPacketError(f"undecodable packet ({type(exc).__name__}: {exc})")
    err.__cause__ = exc
    return err


def decode_packet(
    data: bytes, version: ProtocolVersion, max_packet_size: int = MAX_PACKET_SIZE
) -> Packet:
    """Decode exactly one whole packet.

    Args:
        data: the packet's bytes, fixed header included, and nothing else.
        version: protocol version of the connection (CONNECT uses its own level byte).
        max_packet_size: largest packet accepted, fixed header included.

    Raises:
        MalformedPacketError: the bytes are not exactly one valid packet (incomplete, trailing
            bytes, too large, or breaking a rule of the protocol).
    """
    try:
        decoders, flags_table = _TABLES[version]
    except KeyError:
        raise ValueError(f"unsupported protocol version {version!r}") from None
    if type(data) is not bytes:
        data = bytes(data)
    end = len(data)
    if end < 2:
        raise fail("incomplete packet", "fixed header", end)
    first = data[0]
    expected = flags_table[first >> 4]
    if expected != first & 15 and expected != -1:
        _check_first(first, flags_table, version)
    remaining = data[1]
    if remaining < 128:
        hlen = 2
    else:
        header = _header_length(data, 1, end)
        if header is None:
            raise fail("incomplete packet", "remaining length", end)
        remaining, hlen = header
    total = hlen + remaining
    if total != end or total > max_packet_size:
        if total > max_packet_size:
            raise _too_large(total, max_packet_size)
        what = "incomplete packet" if total > end else f"{end - total} trailing byte(s)"
        raise fail(what, "remaining length", 1)
    try:
        return decoders[first >> 4](data, first & 15, hlen)
    except _UNEXPECTED as exc:
        raise _wrap(exc) from exc


class PacketDecoder:
    """Incremental decoder: bytes in, packets out, for one network connection.

    Attributes:
        version: protocol version used for every packet except CONNECT; a broker-side decoder
            sets it after decoding CONNECT.
        max_packet_size: largest packet accepted, fixed header included; a larger one raises
            :class:`~trio_mqtt.MalformedPacketError` with reason code PACKET_TOO_LARGE as soon
            as its fixed header is seen, before its body is buffered.
    """

    __slots__ = ("_buf", "_decoders", "_error", "_flags", "_pos", "_version", "max_packet_size")

    def __init__(self, version: ProtocolVersion, max_packet_size: int = MAX_PACKET_SIZE) -> None:
        self._version = ProtocolVersion(_check_version(version))
        self._decoders = _DECODERS[self._version]
        self._flags = _FLAGS[self._version]
        self.max_packet_size = max_packet_size
        self._buf = bytearray()
        self._pos = 0
        self._error: MalformedPacketError | None = None

    @property
    def version(self) -> ProtocolVersion:
        """Protocol version for packets other than CONNECT."""
        return self._version

    @version.setter
    def version(self, version: ProtocolVersion) -> None:
        self._version = ProtocolVersion(_check_version(version))
        self._decoders = _DECODERS[self._version]
        self._flags = _FLAGS[self._version]

    @property
    def buffered(self) -> int:
        """Number of bytes held while waiting for the rest of a packet."""
        return len(self._buf) - self._pos

    def _failed(self, exc: Exception) -> MalformedPacketError:
        if not isinstance(exc, MalformedPacketError):
            exc = _wrap(exc)
        self._error = exc
        return exc

    def _raise_again(self) -> None:
        error = self._error
        assert error is not None
        again = MalformedPacketError(
            f"the decoder failed earlier: {error}", reason_code=error.reason_code
        )
        again.field = error.field
        again.offset = error.offset
        raise again from error

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes; call :meth:`next_packet` to take packets out."""
        if self._error is not None:
            self._raise_again()
        self._buf += data

    def next_packet(self) -> Packet | None:
        """Return the next complete packet, or None if more bytes are needed.

        Raises:
            MalformedPacketError: the stream is invalid (also on every call after that).
        """
        if self._error is not None:
            self._raise_again()
        buf = self._buf
        pos = self._pos
        end = len(buf)
        if end - pos < 2:
            return None
        try:
            first = buf[pos]
            if self._flags[first >> 4] != first & 15 and self._flags[first >> 4] != -1:
                _check_first(first, self._flags, self._version)
            header = _header_length(buf, pos + 1, end)
            if header is None:
                return None
            remaining, hlen = header
            total = hlen + remaining
            if total > self.max_packet_size:
                raise _too_large(total, self.max_packet_size)
            stop = pos + total
            if stop > end:
                return None
            if pos == 0 and stop == end:
                data = bytes(buf)
            else:
                with memoryview(buf) as view:
                    data = view[pos:stop].tobytes()
            packet = self._decoders[first >> 4](data, first & 15, hlen)
        except (MalformedPacketError, *_UNEXPECTED) as exc:
            raise self._failed(exc) from None
        if stop == end:
            buf.clear()
            self._pos = 0
        elif stop > 65_536 and stop * 2 > end:
            del buf[:stop]
            self._pos = 0
        else:
            self._pos = stop
        return packet

    def _wanted(self) -> int:
        """Bytes the buffered, incomplete packet still needs.

        Until its fixed header is complete this is a guess: enough for the longest header.
        """
        buf = self._buf
        pos = self._pos
        have = len(buf) - pos
        if have >= 2:
            try:
                header = _header_length(buf, pos + 1, len(buf))
            except MalformedPacketError as exc:
                raise self._failed(exc) from None
            if header is not None:
                return header[0] + header[1] - have
        return max(1, 5 - have)

    def decode(self, data: bytes | bytearray | memoryview) -> list[Packet]:
        """Feed ``data`` and return every packet now complete (possibly none).

        Raises:
            MalformedPacketError: the stream is invalid (also on every call after that). Packets
                completed earlier in the same ``data`` are lost with the connection.
        """
        if self._error is not None:
            self._raise_again()
        if type(data) is not bytes:
            data = bytes(data)
        out: list[Packet] = []
        pos = 0
        end = len(data)
        # Finish a packet begun in an earlier call by moving only its missing bytes into the
        # buffer; the rest of ``data`` is then framed in place below.
        while self._pos != len(self._buf) and pos < end:
            take = self._wanted()
            self._buf += data[pos : pos + take]
            pos += take
            while (packet := self.next_packet()) is not None:
                out.append(packet)
        if pos >= end:
            return out
        flags_table = self._flags
        decoders = self._decoders
        limit = self.max_packet_size
        try:
            while end - pos >= 2:
                first = data[pos]
                if flags_table[first >> 4] != first & 15 and flags_table[first >> 4] != -1:
                    _check_first(first, flags_table, self._version)
                remaining = data[pos + 1]
                if remaining < 128:
                    hlen = 2
                else:
                    header = _header_length(data, pos + 1, end)
                    if header is None:
                        break
                    remaining, hlen = header
                total = hlen + remaining
                if total > limit:
                    raise _too_large(total, limit)
                stop = pos + total
                if stop > end:
                    break
                packet_bytes = data if total == end else data[pos:stop]  # total == end: pos 0
                out.append(decoders[first >> 4](packet_bytes, first & 15, hlen))
                pos = stop
        except (MalformedPacketError, *_UNEXPECTED) as exc:
            raise self._failed(exc) from None
        if pos < end:
            self._buf += data[pos:] if pos else data
        return out
