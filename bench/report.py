"""Turn the raw measurements into medians, ratios and Markdown tables.

Every run is one record (a dict) with ``client``, ``mode``, ``qos``, ``size``, ``repeat``,
``status`` and, when ``status == "ok"``, the worker's figures. :func:`summarise` groups the
records by (client, mode, qos, size) and keeps the median, min and max of each figure across
repeats; :func:`markdown` renders the tables that ``bench/README.md`` explains.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import Any

Key = tuple[str, str, int, int]
_FIGURES = (
    "rate_msg_s",
    "mb_s",
    "lost",
    "duplicates",
    "p50_us",
    "p99_us",
    "rss_peak_kib",
    "client_cpu_us_per_msg",
    "broker_cpu_us_per_msg",
    "samples",
)


def summarise(records: Iterable[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    """Group records by (client, mode, qos, size): median/min/max per figure, plus status."""
    groups: dict[Key, list[dict[str, Any]]] = {}
    for rec in records:
        key = (rec["client"], rec["mode"], rec["qos"], rec["size"])
        groups.setdefault(key, []).append(rec)
    out: dict[Key, dict[str, Any]] = {}
    for key, recs in groups.items():
        ok = [r for r in recs if r["status"] == "ok"]
        bad = [r for r in recs if r["status"] != "ok"]
        entry: dict[str, Any] = {"runs": len(recs), "ok": len(ok)}
        if bad:
            entry["status"] = bad[0]["status"]
            entry["reason"] = bad[0].get("reason", "")
        incomplete = [r for r in ok if r.get("complete") is False]
        if incomplete:
            entry["incomplete"] = len(incomplete)
        for name in _FIGURES:
            values = [r[name] for r in ok if r.get(name) is not None]
            if values:
                entry[name] = {
                    "median": statistics.median(values),
                    "min": min(values),
                    "max": max(values),
                }
        out[key] = entry
    return out


def _si(value: float) -> str:
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    if value >= 1000:
        return f"{value / 1000:.1f}k"
    return f"{value:.0f}"


def _cell(entry: dict[str, Any] | None, name: str, fmt: Any = _si, spread: bool = True) -> str:
    if entry is None:
        return "-"
    fig = entry.get(name)
    if fig is None:
        return _failure(entry)
    text = fmt(fig["median"])
    if spread and fig["min"] != fig["max"]:
        text += f" ({fmt(fig['min'])}-{fmt(fig['max'])})"
    if entry.get("status") and entry["ok"]:
        text += f" [{entry['runs'] - entry['ok']} failed]"
    if entry.get("incomplete"):
        text += " [incomplete]"
    return text


def _failure(entry: dict[str, Any]) -> str:
    status = entry.get("status", "no data")
    reason = str(entry.get("reason", ""))
    return "unavailable" if status == "unavailable" else f"{status}: {reason[:60]}"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = [_row(header), _row(["---"] * len(header))]
    lines.extend(_row(r) for r in rows)
    return [*lines, ""]


def _median(summary: dict[Key, dict[str, Any]], key: Key, name: str) -> float | None:
    entry = summary.get(key)
    if entry is None or name not in entry:
        return None
    return float(entry[name]["median"])


def ratios(
    summary: dict[Key, dict[str, Any]],
    clients: Sequence[str],
    peers: Sequence[str],
    cases: Sequence[tuple[int, int]],
) -> dict[str, dict[str, dict[str, float | None]]]:
    """Throughput of each client divided by the best peer's and by the raw socket's."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for qos, size in cases:
        case = f"qos{qos}-{size}B"
        rates = {c: _median(summary, (c, "throughput", qos, size), "rate_msg_s") for c in clients}
        peer_rates = [r for c, r in rates.items() if c in peers and r]
        best = max(peer_rates, default=None)
        raw = rates.get("raw-socket")
        for client, rate in rates.items():
            out.setdefault(client, {})[case] = {
                "vs_best_peer": rate / best if rate and best else None,
                "vs_raw": rate / raw if rate and raw else None,
            }
    return out


def markdown(
    meta: dict[str, Any],
    summary: dict[Key, dict[str, Any]],
    clients: Sequence[str],
    peers: Sequence[str],
    qos_levels: Sequence[int],
    sizes: Sequence[int],
    info: dict[str, dict[str, str]],
    scale: list[dict[str, Any]] | None = None,
) -> str:
    """The whole report as Markdown."""
    lines = [
        "# trio-mqtt benchmark",
        "",
        f"{meta['date']} · Python {meta['python']} · {meta['cpus']} CPUs · "
        f"mosquitto {meta['mosquitto']}",
        "",
    ]
    if clients:
        lines[-2] += (
            f" · {meta['repeats']} repeats, medians with (min-max) · "
            f"throughput N = {meta['count']} x 64 B and {meta['big_count']} x 16 KiB · "
            f"latency up to {meta['latency_samples']} round trips or {meta['latency_budget']} s"
        )
        lines += client_markdown(summary, clients, peers, qos_levels, sizes, info)
    if scale:
        lines += scale_markdown(scale)
    return "\n".join(lines)


def client_markdown(
    summary: dict[Key, dict[str, Any]],
    clients: Sequence[str],
    peers: Sequence[str],
    qos_levels: Sequence[int],
    sizes: Sequence[int],
    info: dict[str, dict[str, str]],
) -> list[str]:
    """The per-client tables: clients, throughput, ratios, latency, resources."""
    lines = ["## Clients", ""]
    lines += _table(
        ["client", "version", "status", "how it is driven"],
        (
            [c, info[c].get("version", "?"), info[c].get("status", "?"), info[c].get("note", "")]
            for c in clients
        ),
    )
    for size in sizes:
        label = "64 B" if size == 64 else f"{size // 1024} KiB" if size % 1024 == 0 else f"{size} B"
        lines += [f"## Throughput, {label} payloads (msg/s)", ""]
        header = ["client", *(f"QoS {q}" for q in qos_levels)]
        if size >= 1024:
            header += [f"MB/s QoS {q}" for q in qos_levels]
        header.append("lost/dup per QoS (worst repeat)")
        rows = []
        for c in clients:
            entries = [summary.get((c, "throughput", q, size)) for q in qos_levels]
            row = [c, *(_cell(e, "rate_msg_s") for e in entries)]
            if size >= 1024:
                row += [_cell(e, "mb_s", lambda v: f"{v:.0f}", spread=False) for e in entries]
            losses = [
                f"{e['lost']['max']:.0f}/{e['duplicates']['max']:.0f}"
                for e in entries
                if e and "lost" in e
            ]
            row.append(" ".join(losses) if losses else "-")
            rows.append(row)
        lines += _table(header, rows)
    cases = [(q, s) for s in sizes for q in qos_levels]
    rat = ratios(summary, clients, peers, cases)
    lines += ["## Throughput ratios: x best peer / x raw socket", ""]

    def ratio_cell(r: dict[str, float | None]) -> str:
        parts = [f"{v:.2f}" if v is not None else "-" for v in (r["vs_best_peer"], r["vs_raw"])]
        return " / ".join(parts)

    lines += _table(
        ["client", *(f"QoS {q}, {s} B" for q, s in cases)],
        ([c, *(ratio_cell(rat[c][f"qos{q}-{s}B"]) for q, s in cases)] for c in clients),
    )
    lines += ["## Round-trip latency, 64 B, one message at a time (µs, p50 / p99)", ""]

    def lat(e: dict[str, Any] | None) -> str:
        if e is None:
            return "-"
        if "p50_us" not in e:
            return _failure(e)
        return f"{e['p50_us']['median']:.0f} / {e['p99_us']['median']:.0f}"

    lines += _table(
        ["client", *(f"QoS {q}" for q in qos_levels)],
        ([c, *(lat(summary.get((c, "latency", q, 64))) for q in qos_levels)] for c in clients),
    )
    lines += ["## Resources, 64 B throughput runs", ""]

    def us(v: float) -> str:
        return f"{v:.1f}" if v < 100 else f"{v:.0f}"

    header = ["client", "peak RSS MiB"]
    header += [f"client µs/msg QoS {q}" for q in qos_levels]
    header += [f"broker µs/msg QoS {q}" for q in qos_levels]
    rows = []
    for c in clients:
        entries = [summary.get((c, "throughput", q, 64)) for q in qos_levels]
        rss = [e["rss_peak_kib"]["max"] for e in entries if e and "rss_peak_kib" in e]
        row = [c, f"{max(rss) / 1024:.1f}" if rss else "-"]
        row += [_cell(e, "client_cpu_us_per_msg", us, spread=False) for e in entries]
        row += [_cell(e, "broker_cpu_us_per_msg", us, spread=False) for e in entries]
        rows.append(row)
    lines += _table(header, rows)
    return lines


def scale_markdown(scale: list[dict[str, Any]]) -> list[str]:
    """Tables for the ``--scale`` runs (idle connections and fan-in)."""
    lines = ["## Scale: idle connections", ""]
    idle = [r for r in scale if r.get("mode") == "idle"]
    rows = []
    for r in idle:
        if r["status"] != "ok":
            rows.append([r["client"], str(r.get("connections", "")), _failure(r), "", "", ""])
            continue
        rows.append(
            [
                r["client"],
                str(r["connections"]),
                f"{r['connect_s']:.2f}",
                f"{r['rss_per_conn_kib']:.1f}",
                f"{r['idle_client_cpu_s']:.2f} / {r['idle_s']:.0f} s",
                f"{r['idle_broker_cpu_s']:.2f}",
            ]
        )
    lines += _table(
        ["client", "connections", "connect all (s)", "RSS KiB/conn", "client CPU idle", "broker"],
        rows,
    )
    lines += ["## Scale: fan-in (many publishers, one subscriber)", ""]
    rows = []
    for r in (r for r in scale if r.get("mode") == "fanin"):
        if r["status"] != "ok":
            rows.append([r["client"], str(r.get("qos", "")), "", _failure(r), ""])
            continue
        rows.append(
            [
                r["client"],
                str(r["qos"]),
                str(r["publishers"]),
                f"{r['rate_msg_s']:.0f}",
                f"{r['lost']}/{r['duplicates']}",
            ]
        )
    lines += _table(["client", "QoS", "publishers", "msg/s", "lost/dup"], rows)
    return lines
