"""``sub -F``: mosquitto_sub's output format strings.

A format is compiled once (:func:`compile_format`, which rejects what mosquitto_sub 2.0.11
rejects, with its wording) into a list of pieces; :meth:`Format.render` turns one message into
the bytes to print. Three characters start a sequence:

- ``%``: a message parameter, with optional flags (``-`` left-aligns, ``0`` pads with zeros),
  field width and ``.precision``: ``%t`` topic, ``%p`` payload, ``%x``/``%X`` payload in hex,
  ``%q`` QoS, ``%r`` retain flag, ``%l`` payload length, ``%m`` packet id, ``%I`` ISO 8601
  local time, ``%U`` Unix time with nanoseconds, ``%j``/``%J`` JSON (payload quoted / payload
  as JSON), the MQTT 5 properties ``%A %C %D %E %F %P %R %S`` and ``%%``;
- ``@``: the next character is handed to ``strftime`` (``@Y`` is ``%Y``), ``@N`` is the
  nanoseconds of the current second and ``@@`` a literal ``@``;
- ``\\``: an escape: ``\\\\ \\0 \\a \\e \\n \\r \\t \\v``.

The byte-level quirks are mosquitto's: widths count bytes, ``%5p`` prints at most five bytes of
the payload and ``%8x`` at most four, a missing property prints padding only, JSON strings are
escaped the way cJSON escapes them, and ``%J`` re-prints the payload as cJSON would.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from trio_mqtt import Publish

__all__ = ["Format", "FormatError", "compile_format", "json_record"]

_PARAMETERS = frozenset("%ACDEFIlmPpqRSrtjJUxX")
_ESCAPES = {
    "\\": b"\\",
    "0": b"\x00",
    "a": b"\x07",
    "e": b"\x1b",
    "n": b"\n",
    "r": b"\r",
    "t": b"\t",
    "v": b"\x0b",
}


class FormatError(ValueError):
    """The format string is not one mosquitto_sub accepts (the message is its wording)."""


# ------------------------------------------------------------------ numbers and padding


def _pad(text: bytes, align: str, width: int) -> bytes:
    return text.ljust(width) if align == "-" else text.rjust(width)


def _integer(value: int, align: str, pad: str, width: int) -> bytes:
    text = str(value).encode()
    if align == "-":
        return text.ljust(width)
    if pad == "0":
        return text.rjust(width, b"0") if value >= 0 else b"-" + text[1:].rjust(width - 1, b"0")
    return text.rjust(width)


def _string(value: bytes, align: str, width: int, precision: int) -> bytes:
    if precision >= 0:
        value = value[:precision]
    return _pad(value, align, width)


def _payload(payload: bytes, hex_case: str, align: str, pad: str, width: int) -> bytes:
    """mosquitto's write_payload: a width also caps the bytes shown (half of them in hex)."""
    length = len(payload)
    if width > 0:
        length = min(length, width)
        if hex_case:
            length //= 2
            padding = width - 2 * length
        else:
            padding = width - length
    else:
        padding = 0
    shown = payload[:length]
    if hex_case == "x":
        body = shown.hex().encode()
    elif hex_case == "X":
        body = shown.hex().upper().encode()
    else:
        body = shown
    if align == "-":
        return body + b" " * max(padding, 0)
    return pad.encode() * max(padding, 0) + body


# ------------------------------------------------------------------ cJSON-compatible JSON


def _json_string(value: bytes) -> bytes:
    """A JSON string literal escaped as cJSON does (other bytes, UTF-8 or not, are kept)."""
    out = bytearray(b'"')
    for byte in value:
        if byte == 0x22:
            out += b'\\"'
        elif byte == 0x5C:
            out += b"\\\\"
        elif byte < 0x20:
            short = {0x08: b"\\b", 0x0C: b"\\f", 0x0A: b"\\n", 0x0D: b"\\r", 0x09: b"\\t"}
            out += short.get(byte) or b"\\u%04x" % byte
        else:
            out.append(byte)
    out += b'"'
    return bytes(out)


def _json_number(value: float) -> bytes:
    if value != value or value in (float("inf"), float("-inf")):
        return b"null"
    as_int = max(min(value, 2**31 - 1), -(2**31))
    if value == int(as_int):
        return b"%d" % int(as_int)
    text = b"%1.15g" % value
    if float(text) != value:
        text = b"%1.17g" % value
    return text


class _Raw(bytes):
    """Already encoded JSON (the payload of ``%J``)."""


def _json(value: Any, pretty: bool, depth: int) -> bytes:
    """Print like cJSON_PrintUnformatted, or cJSON_Print with ``pretty``."""
    if isinstance(value, _Raw):
        return bytes(value)
    if value is None:
        return b"null"
    if value is True:
        return b"true"
    if value is False:
        return b"false"
    if isinstance(value, int | float):
        return _json_number(float(value))
    if isinstance(value, bytes):
        return _json_string(value)
    if isinstance(value, str):
        return _json_string(value.encode("utf-8", "surrogateescape"))
    if isinstance(value, list):
        separator = b", " if pretty else b","
        return b"[" + separator.join(_json(item, pretty, depth) for item in value) + b"]"
    # an object: (key, value) pairs, so that duplicate keys survive as in cJSON
    pairs: list[tuple[Any, Any]] = value.pairs
    if not pretty:
        items = (_json(k, False, 0) + b":" + _json(v, False, 0) for k, v in pairs)
        return b"{" + b",".join(items) + b"}"
    indent = b"\t" * (depth + 1)
    items = (indent + _json(k, True, 0) + b":\t" + _json(v, True, depth + 1) for k, v in pairs)
    return b"{\n" + b",\n".join(items) + (b"\n" if pairs else b"") + b"\t" * depth + b"}"


class _Object:
    """A JSON object kept as ordered pairs (json.loads' ``object_pairs_hook``)."""

    __slots__ = ("pairs",)

    def __init__(self, pairs: list[tuple[Any, Any]]) -> None:
        self.pairs = pairs


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_json_payload(payload: bytes) -> Any:
    """The payload as cJSON would parse it (numbers are doubles), or raise ValueError."""
    if b"\x00" in payload:
        raise ValueError("NUL byte")
    text = payload.decode("utf-8", "surrogateescape")
    return json.loads(
        text,
        object_pairs_hook=_Object,
        parse_int=float,
        parse_constant=_no_constant,
        strict=False,
    )


def _timestamp(seconds: int, nanoseconds: int) -> str:
    local = time.localtime(seconds)
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S.", local)
        + f"{nanoseconds // 1000:06d}Z"
        + (time.strftime("%z", local))
    )


_PROPERTY_ORDER = (
    # the order mosquitto's broker forwards them in when trio-mqtt published them: the
    # subscription identifier first, the message expiry (which it rewrites) last
    ("subscription-identifier", "subscription_identifiers"),
    ("payload-format-indicator", "payload_format_indicator"),
    ("content-type", "content_type"),
    ("response-topic", "response_topic"),
    ("correlation-data", "correlation_data"),
    ("topic-alias", "topic_alias"),
    ("user-properties", "user_properties"),
    ("message-expiry-interval", "message_expiry_interval"),
)


def _properties_json(message: Publish) -> list[tuple[str, Any]] | None:
    props = message.properties
    if not props:
        return None
    pairs: list[tuple[str, Any]] = []
    for key, name in _PROPERTY_ORDER:
        value = getattr(props, name)
        if value is None or value == ():
            continue
        if name == "subscription_identifiers":
            value = value[0]
        elif name == "user_properties":
            value = _Object(list(value))
        elif name == "correlation_data":
            value = value.split(b"\x00", 1)[0]
        pairs.append((key, value))
    return pairs


def json_record(
    message: Publish, seconds: int, nanoseconds: int, *, raw_payload: bool, pretty: bool
) -> bytes:
    """``%j`` (payload as a string) or ``%J`` (payload parsed as JSON) for one message.

    Raises:
        ValueError: ``%J`` and the payload is not valid JSON.
    """
    pairs: list[tuple[str, Any]] = [
        ("tst", _timestamp(seconds, nanoseconds)),
        ("topic", message.topic),
        ("qos", int(message.qos)),
        ("retain", int(message.retain)),
        ("payloadlen", len(message.payload)),
    ]
    if message.qos:
        pairs.append(("mid", message.packet_id))
    properties = _properties_json(message)
    if properties is not None:
        pairs.append(("properties", _Object(properties)))
    payload: Any
    if raw_payload:
        payload = _parse_json_payload(message.payload) if message.payload else None
    else:
        # mosquitto hands cJSON the payload as a C string: it ends at the first NUL byte
        payload = message.payload.split(b"\x00", 1)[0] if message.payload else None
    pairs.append(("payload", payload))
    return _json(_Object(pairs), pretty, 0)


# ------------------------------------------------------------------ the format itself

_Piece = Callable[[Publish, int, int], bytes]


def _literal(data: bytes) -> _Piece:
    return lambda message, seconds, ns: data


def _parameter(
    letter: str, align: str, pad: str, width: int, precision: int, pretty: bool
) -> _Piece:
    def prop(name: str) -> Callable[[Publish], Any]:
        return lambda message: getattr(message.properties, name)

    def number_or_blank(get: Callable[[Publish], int | None]) -> _Piece:
        def piece(message: Publish, seconds: int, ns: int) -> bytes:
            value = get(message)
            if value is None:
                return pad.encode() * width
            return _integer(value, align, pad, width)

        return piece

    if letter == "%":
        return _literal(b"%")
    if letter == "A":
        return number_or_blank(prop("topic_alias"))
    if letter == "E":
        return number_or_blank(prop("message_expiry_interval"))
    if letter == "F":
        return number_or_blank(prop("payload_format_indicator"))
    if letter == "S":
        return number_or_blank(
            lambda m: (
                m.properties.subscription_identifiers[0]
                if m.properties.subscription_identifiers
                else None
            )
        )
    if letter in "CR":
        name = "content_type" if letter == "C" else "response_topic"

        def text_property(message: Publish, seconds: int, ns: int) -> bytes:
            value = getattr(message.properties, name)
            if value is None:
                return b" " * width if letter == "C" else b""
            return _string(value.encode(), align, width, precision)

        return text_property
    if letter == "D":
        return lambda m, s, ns: m.properties.correlation_data or b""
    if letter == "P":
        return lambda m, s, ns: b" ".join(
            f"{k}:{v}".encode() for k, v in m.properties.user_properties
        )
    if letter == "I":

        def iso(message: Publish, seconds: int, ns: int) -> bytes:
            text = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(seconds)).encode()
            return _string(text, align, width, precision)

        return iso
    if letter == "U":
        return lambda m, seconds, ns: b"%d.%09d" % (seconds, ns)
    if letter in "jJ":
        raw = letter == "J"

        def as_json(message: Publish, seconds: int, ns: int) -> bytes:
            try:
                return json_record(message, seconds, ns, raw_payload=raw, pretty=pretty)
            except ValueError:
                raise _InvalidJson(message.topic) from None

        return as_json
    if letter == "l":
        return lambda m, s, ns: _integer(len(m.payload), align, pad, width)
    if letter == "m":
        return lambda m, s, ns: _integer(m.packet_id, align, pad, width)
    if letter == "p":
        return lambda m, s, ns: _payload(m.payload, "", align, pad, width)
    if letter in "xX":
        return lambda m, s, ns: _payload(m.payload, letter, align, pad, width)
    if letter == "q":
        return lambda m, s, ns: b"%d" % m.qos
    if letter == "r":
        return lambda m, s, ns: b"1" if m.retain else b"0"
    assert letter == "t"
    return lambda m, s, ns: _string(m.topic.encode(), align, width, precision)


class _InvalidJson(Exception):
    """``%J`` met a payload that is not JSON (mosquitto prints an error and goes on)."""

    def __init__(self, topic: str) -> None:
        super().__init__(f"Error: Message payload is not valid JSON on topic {topic}.")


def _strftime(letter: str) -> _Piece:
    if letter == "@":
        return _literal(b"@")
    if letter == "N":
        return lambda m, seconds, ns: b"%09d" % ns
    code = "%" + letter
    return lambda m, seconds, ns: time.strftime(code, time.localtime(seconds)).encode(
        "utf-8", "surrogateescape"
    )


def _check(text: str) -> None:
    """Reject what mosquitto_sub's check_format rejects, with its messages."""
    i, end = 0, len(text)
    incomplete = "Incomplete format specifier."
    while i < end:
        char = text[i]
        if char == "%":
            if i == end - 1:
                raise FormatError(incomplete)
            if text[i + 1] in "0-":
                i += 1
                if i == end - 1:
                    raise FormatError(incomplete)
            while text[i + 1].isdigit() and text[i + 1].isascii():
                i += 1
                if i == end - 1:
                    raise FormatError(incomplete)
            if text[i + 1] == ".":
                i += 1
                if i == end - 1:
                    raise FormatError(incomplete)
                while text[i + 1].isdigit() and text[i + 1].isascii():
                    i += 1
                    if i == end - 1:
                        raise FormatError(incomplete)
            if text[i + 1] not in _PARAMETERS:
                raise FormatError(f"Invalid format specifier '{text[i + 1]}'.")
            i += 1
        elif char == "@":
            if i == end - 1:
                raise FormatError(incomplete)
            i += 1
        elif char == "\\":
            if i == end - 1:
                raise FormatError("Incomplete escape specifier.")
            if text[i + 1] not in _ESCAPES:
                raise FormatError(f"Invalid escape specifier '{text[i + 1]}'.")
            i += 1
        i += 1


class Format:
    """A compiled ``-F`` format."""

    def __init__(self, pieces: list[_Piece], uses_time: bool) -> None:
        self._pieces = pieces
        self._uses_time = uses_time

    def render(self, message: Publish) -> tuple[bytes, str | None]:
        """The bytes for one message (without the end of line) and an error for stderr.

        The error is mosquitto's ``%J`` complaint about a payload that is not JSON: that
        sequence prints nothing, the rest of the format is printed as usual.
        """
        seconds = ns = 0
        if self._uses_time:
            seconds, ns = divmod(time.time_ns(), 1_000_000_000)
        out = []
        error = None
        for piece in self._pieces:
            try:
                out.append(piece(message, seconds, ns))
            except _InvalidJson as exc:
                error = str(exc)
        return b"".join(out), error


def compile_format(text: str, *, pretty: bool = False) -> Format:
    """Compile a ``-F`` format (``pretty``: ``--pretty``, for ``%j`` and ``%J``).

    Raises:
        FormatError: the format is incomplete or names an unknown sequence.
    """
    _check(text)
    pieces: list[_Piece] = []
    literal = bytearray()
    uses_time = False
    i, end = 0, len(text)
    while i < end:
        char = text[i]
        if char not in "%@\\":
            literal += char.encode("utf-8", "surrogateescape")
            i += 1
            continue
        if literal:
            pieces.append(_literal(bytes(literal)))
            literal = bytearray()
        if char == "\\":
            pieces.append(_literal(_ESCAPES[text[i + 1]]))
            i += 2
        elif char == "@":
            pieces.append(_strftime(text[i + 1]))
            uses_time = uses_time or text[i + 1] != "@"
            i += 2
        else:
            i += 1
            align = pad = ""
            if text[i] == "-":
                align = "-"
                i += 1
            if text[i] == "0":
                pad = "0"
                i += 1
            width = 0
            while text[i].isascii() and text[i].isdigit():
                width = width * 10 + int(text[i])
                i += 1
            precision = -1
            if text[i] == ".":
                i += 1
                precision = 0
                while text[i].isascii() and text[i].isdigit():
                    precision = precision * 10 + int(text[i])
                    i += 1
            letter = text[i]
            uses_time = uses_time or letter in "IUjJ"
            pieces.append(_parameter(letter, align, pad or " ", width, precision, pretty))
            i += 1
    if literal:
        pieces.append(_literal(bytes(literal)))
    return Format(pieces, uses_time)
