"""Codec micro-benchmark: trio-mqtt's codec next to moat-lib-mqtt and the Rust-backed mqtt5.

Run ``python bench/codec.py`` (``--quick`` for a fast smoke run). Every row times encoding a
prebuilt packet object into bytes, or decoding one packet's bytes into an object, and reports
the median over several repeats in nanoseconds per operation. All decoders read the same bytes
(produced by our encoder). moat-lib-mqtt and mqtt5 only speak MQTT 5, so their MQTT 3.1.1
cells read "n/a", as does any library that is not installed.

The goal this tracks: trio-mqtt at least 2x faster than moat-lib-mqtt (pure Python) for
PUBLISH encode and decode. mqtt5 is compiled Rust and serves as a ceiling.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trio_mqtt._core._codec import PacketDecoder, decode_packet, encode
from trio_mqtt._core._packets import (
    Connect,
    ProtocolVersion,
    PubAck,
    Publish,
    QoS,
)


def _optional(name: str) -> Any:
    """Import an optional peer library, or return None when it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


moat = _optional("moat.lib.mqtt._types")  # moat-lib-mqtt: pure Python, MQTT 5 only
mqtt5 = _optional("mqtt5")  # mqtt5: Rust extension, MQTT 5 only

TOPIC = "bench/sensors/temperature"
V4 = ProtocolVersion.V311
V5 = ProtocolVersion.V5


class Case:
    """One benchmark row: how each library builds the packet, and our packet for bytes."""

    def __init__(
        self,
        name: str,
        ours: Callable[[ProtocolVersion], Any],
        moat_make: Callable[[], Any] | None,
        mqtt5_make: Callable[[], Any] | None,
    ) -> None:
        self.name = name
        self.ours = ours
        self.moat_make = moat_make
        self.mqtt5_make = mqtt5_make


def _publish_case(size: int, qos: int) -> Case:
    payload = bytes(range(256)) * (size // 256) if size >= 256 else b"x" * size
    pid = 1 if qos else 0
    label = f"PUBLISH {size if size < 1024 else f'{size // 1024} KiB'}{' B' if size < 1024 else ''}"

    def ours(version: ProtocolVersion) -> Publish:
        return Publish(TOPIC, payload, QoS(qos), packet_id=pid)

    def moat_make() -> Any:
        return moat.MQTTPublishPacket(
            topic=TOPIC, payload=payload, qos=moat.QoS(qos), packet_id=pid or None
        )

    def mqtt5_make() -> Any:
        return mqtt5.PublishPacket(TOPIC, payload, qos=mqtt5.QoS(qos), packet_id=pid or None)

    return Case(f"{label} QoS {qos}", ours, moat_make, mqtt5_make)


def _connect_case() -> Case:
    def ours(version: ProtocolVersion) -> Connect:
        return Connect("bench-client", version, keep_alive=60, username="user", password=b"secret")

    def moat_make() -> Any:
        return moat.MQTTConnectPacket(
            client_id="bench-client",
            username="user",
            password="secret",
            keep_alive=60,
            clean_start=True,
        )

    def mqtt5_make() -> Any:
        return mqtt5.ConnectPacket(
            "bench-client", username="user", password=b"secret", keep_alive=60, clean_start=True
        )

    return Case("CONNECT", ours, moat_make, mqtt5_make)


def _puback_case() -> Case:
    return Case(
        "PUBACK",
        lambda version: PubAck(42),
        lambda: moat.MQTTPublishAckPacket(packet_id=42, reason_code=moat.ReasonCode.SUCCESS),
        lambda: mqtt5.PubAckPacket(42),
    )


CASES = [
    _publish_case(64, 0),
    _publish_case(64, 1),
    _publish_case(16 * 1024, 0),
    _publish_case(16 * 1024, 1),
    _connect_case(),
    _puback_case(),
]


def _calibrate(func: Callable[[], object], budget: float) -> int:
    """Number of calls that take about ``budget`` seconds."""
    timer = timeit.Timer(func)
    number = 1
    while True:
        elapsed = timer.timeit(number)
        if elapsed >= budget / 5 or number >= 1 << 22:
            break
        number *= 4
    return max(1, int(number * (budget / max(elapsed, 1e-9))))


def _time_interleaved(
    funcs: dict[str, Callable[[], object]], repeat: int, budget: float
) -> dict[str, float]:
    """Median ns per call for each function, repeats interleaved across the functions.

    Interleaving spreads any background load evenly over the libraries being compared, so
    the ratios stay meaningful on a busy machine even when the absolute numbers do not.
    """
    numbers = {name: _calibrate(func, budget) for name, func in funcs.items()}
    timers = {name: timeit.Timer(func) for name, func in funcs.items()}
    runs: dict[str, list[float]] = {name: [] for name in funcs}
    for _ in range(repeat):
        for name, timer in timers.items():
            runs[name].append(timer.timeit(numbers[name]) / numbers[name] * 1e9)
    return {name: statistics.median(values) for name, values in runs.items()}


def _functions(case: Case, version: ProtocolVersion) -> dict[str, dict[str, Callable[[], Any]]]:
    """Encode/decode callables per library for one case (missing = n/a)."""
    packet = case.ours(version)
    data = encode(packet, version)
    out: dict[str, dict[str, Callable[[], Any]]] = {
        "encode": {"ours": lambda: encode(packet, version)},
        "decode": {"ours": lambda: decode_packet(data, version)},
    }
    assert decode_packet(data, version) == packet
    if version == V5 and moat is not None and case.moat_make is not None:
        moat_packet = case.moat_make()
        view = memoryview(data)

        def moat_encode() -> bytearray:
            buffer = bytearray()
            moat_packet.encode(buffer)
            return buffer

        out["encode"]["moat"] = moat_encode
        out["decode"]["moat"] = lambda: moat.decode_packet(view)
        assert type(moat.decode_packet(view)[1]) is type(moat_packet)
    if version == V5 and mqtt5 is not None and case.mqtt5_make is not None:
        rust_packet = case.mqtt5_make()
        view = memoryview(data)
        out["encode"]["mqtt5"] = rust_packet.write
        out["decode"]["mqtt5"] = lambda: mqtt5.read(view)
        assert mqtt5.read(view)[1] == len(data)
    return out


def _stream_row(version: ProtocolVersion, repeat: int, budget: float) -> float:
    """ns per packet for PacketDecoder.decode on a chunk of 100 PUBLISH 64 B QoS 1."""
    packet = Publish(TOPIC, b"x" * 64, QoS.AT_LEAST_ONCE, packet_id=1)
    chunk = encode(packet, version) * 100
    decoder = PacketDecoder(version)
    assert len(decoder.decode(chunk)) == 100
    return _time_interleaved({"ours": lambda: decoder.decode(chunk)}, repeat, budget)["ours"] / 100


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def run(repeat: int = 15, budget: float = 0.02) -> list[dict[str, Any]]:
    """Time every row; return them as dicts (case, version, op, ours, moat, mqtt5 in ns/op)."""
    rows = []
    for case in CASES:
        for version in (V4, V5):
            funcs = _functions(case, version)
            for op in ("encode", "decode"):
                row: dict[str, Any] = {"case": case.name, "version": int(version), "op": op}
                times = _time_interleaved(funcs[op], repeat, budget)
                for lib in ("ours", "moat", "mqtt5"):
                    row[lib] = times.get(lib)
                rows.append(row)
    for version in (V4, V5):
        rows.append(
            {
                "case": "stream of 100 PUBLISH 64 B QoS 1",
                "version": int(version),
                "op": "decode",
                "ours": _stream_row(version, repeat, budget),
                "moat": None,
                "mqtt5": None,
            }
        )
    return rows


def report(rows: list[dict[str, Any]]) -> str:
    """Format rows as a fixed-width table with the ratio ours/moat."""
    lines = [
        f"{'packet':<34}{'ver':>4} {'op':<7}{'ours ns':>10}{'moat ns':>10}{'mqtt5 ns':>10}"
        f"{'ours/moat':>11}",
        "-" * 86,
    ]
    for row in rows:
        ratio = "n/a" if row["moat"] is None else f"{row['ours'] / row['moat']:.2f}"
        version = "3.1.1" if row["version"] == 4 else "5"
        lines.append(
            f"{row['case']:<34}{version:>5} {row['op']:<7}{_cell(row['ours']):>10}"
            f"{_cell(row['moat']):>10}{_cell(row['mqtt5']):>10}{ratio:>11}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few, short repeats (smoke test)")
    args = parser.parse_args(argv)
    repeat, budget = (3, 0.005) if args.quick else (15, 0.02)
    print(f"Python {sys.version.split()[0]}; median of {repeat} repeats, ns per packet")
    print(
        f"moat-lib-mqtt: {'installed' if moat else 'not installed'}; "
        f"mqtt5: {'installed' if mqtt5 else 'not installed'}"
    )
    print(report(run(repeat, budget)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
