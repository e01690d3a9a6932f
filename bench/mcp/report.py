"""The Markdown tables: one per upstream, the ratios to runmcp_fast, the targets."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from measure import Concurrent, Paired, Sequential
from streams import Streams
from systems import DIRECT, GATEWAY

# Targets from the issue (printed as met / NOT met, never asserted).
ADDED_MS_TARGET = 0.3
PEER_RATIO_TARGET = 20.0
STREAM_KB_TARGET = 16.0
# Issue #18: what runmcp_fast adds at most, over what nginx as a plain reverse proxy adds.
NGINX_ADDED_RATIO_TARGET = 1.2
# A measurement during which others kept a CPU busier than this is flagged.
NOISY = 0.10


@dataclass
class Row:
    system: str
    title: str
    sequential: Sequential | None = None  # direct only
    paired: Paired | None = None  # systems under test only
    concurrent: Concurrent | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def seq_calls_per_s(self) -> float:
        if self.sequential is not None:
            return self.sequential.calls_per_s
        if self.paired is not None and self.paired.pairs:
            return self.paired.calls_per_s
        return float("nan")

    @property
    def conc_calls_per_s(self) -> float:
        return (
            self.concurrent.calls_per_s
            if self.concurrent and self.concurrent.calls
            else float("nan")
        )

    @property
    def added_ms(self) -> float:
        return self.paired.added_median_ms if self.paired and self.paired.pairs else float("nan")

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"system": self.system, "title": self.title, "notes": self.notes}
        if self.sequential:
            out["sequential"] = _pick(
                self.sequential, "calls", "seconds", "calls_per_s", "median_ms", "p90_ms"
            )
        if self.paired:
            out["paired"] = _pick(
                self.paired,
                "pairs",
                "added_median_ms",
                "added_p90_ms",
                "system_median_ms",
                "direct_median_ms",
                "calls_per_s",
                "direct_calls_per_s",
                "budget_hit",
            )
        if self.concurrent:
            out["concurrent"] = _pick(
                self.concurrent,
                "sessions",
                "calls",
                "seconds",
                "calls_per_s",
                "p50_ms",
                "p99_ms",
                "cpu_seconds",
                "reconnects",
                "abandoned",
            )
        return out


def _pick(measured: Any, *names: str) -> dict[str, Any]:
    """These fields and properties of a measurement, with its first errors."""
    return {**{name: getattr(measured, name) for name in names}, "errors": measured.errors[:5]}


def _f(value: float, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _ratio(a: float, b: float) -> float:
    if any(math.isnan(x) for x in (a, b)) or b == 0:
        return float("nan")
    return a / b


def upstream_table(rows: list[Row], sessions: int) -> str:
    head = (
        f"| system | seq calls/s | median ms | added median ms | added p90 ms | pairs "
        f"| calls/s, {sessions} sessions | p50 / p99 ms | CPU ms/call: system · upstream "
        "| notes |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    )
    lines = [head]
    for row in rows:
        c = row.concurrent
        if row.sequential is not None:
            s = row.sequential
            median, added, p90, pairs = s.median_ms, "—", "—", str(s.calls)
        elif row.paired is not None and row.paired.pairs:
            p = row.paired
            median, added, p90 = p.system_median_ms, _f(p.added_median_ms), _f(p.added_p90_ms)
            pairs = f"{p.pairs}" + (" (budget)" if p.budget_hit else "")
        else:
            median, added, p90, pairs = float("nan"), "—", "—", "0"
        # CPU per call over the concurrent run: the system's own process tree, and
        # the upstream's (a proxy that opens a session per call makes it work harder).
        if c is not None and c.calls:
            mine = "—"
            if row.system != DIRECT:
                mine = _f(1000.0 * c.cpu_seconds["system"] / c.calls, 3)
                user = c.cpu_seconds.get("system:user")
                if user is not None:
                    mine += f" (user {_f(1000.0 * user / c.calls, 3)})"
            cpu = f"{mine} · {_f(1000.0 * c.cpu_seconds['upstream'] / c.calls, 3)}"
            lat = f"{_f(c.p50_ms)} / {_f(c.p99_ms)}"
        else:
            cpu = lat = "—"
        notes = "; ".join(row.notes)
        lines.append(
            f"| {row.system} | {_f(row.seq_calls_per_s, 1)} | {_f(median)} | {added} | {p90} "
            f"| {pairs} | {_f(row.conc_calls_per_s, 1)} | {lat} | {cpu} | {notes} |"
        )
    return "\n".join(lines)


def row_notes(row: Row) -> None:
    """Errors, churn and noise worth knowing next to a row's numbers."""
    for part in (row.sequential, row.paired, row.concurrent):
        if part is not None and part.errors:
            n = len(part.errors)
            row.notes.append(f"(!) {n} error{'s' * (n > 1)}, first: {part.errors[0][:160]}")
    c = row.concurrent
    if c is not None:
        if c.reconnects:
            row.notes.append(f"{c.reconnects} reconnects")
        if c.abandoned:
            row.notes.append(f"{c.abandoned} SSE answers not ended by the server")
        busy = {k: v for k, v in c.cpu_seconds.items() if k.startswith("elsewhere")}
        loud = [
            f"{k.split(':')[1]} {v / c.seconds:.0%}"
            for k, v in busy.items()
            if c.seconds and v / c.seconds > NOISY
        ]
        if loud:
            row.notes.append("busy elsewhere: " + ", ".join(loud))


def ratios_table(results: dict[str, list[Row]]) -> str:
    """runmcp_fast against each peer, per upstream; and what direct allows at most."""
    lines = [
        "| upstream | peer | added median: peer / runmcp_fast | seq calls/s: runmcp_fast / peer "
        "| concurrent calls/s: runmcp_fast / peer | ceiling: direct / peer, seq · concurrent |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for upstream, rows in results.items():
        by = {r.system: r for r in rows}
        gw, direct = by.get(GATEWAY), by.get(DIRECT)
        for row in rows:
            if row.system in (DIRECT, GATEWAY):
                continue
            ceiling = (
                f"{_f(_ratio(direct.seq_calls_per_s, row.seq_calls_per_s), 1)} · "
                f"{_f(_ratio(direct.conc_calls_per_s, row.conc_calls_per_s), 1)}"
                if direct
                else "—"
            )
            if gw is None:
                a = s = c = "—"
            else:
                a = _f(_ratio(row.added_ms, gw.added_ms), 1)
                s = _f(_ratio(gw.seq_calls_per_s, row.seq_calls_per_s), 1)
                c = _f(_ratio(gw.conc_calls_per_s, row.conc_calls_per_s), 1)
            lines.append(f"| {upstream} | {row.system} | {a} | {s} | {c} | {ceiling} |")
    return "\n".join(lines)


def targets_table(results: dict[str, list[Row]], streams: list[Streams]) -> str:
    lines = ["| target | upstream | value | |", "| --- | --- | ---: | --- |"]

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    for upstream, rows in results.items():
        by = {r.system: r for r in rows}
        gw, direct = by.get(GATEWAY), by.get(DIRECT)
        if gw is None:
            continue
        direct_seq = direct.seq_calls_per_s if direct else float("nan")
        direct_conc = direct.conc_calls_per_s if direct else float("nan")
        added = gw.added_ms
        lines.append(
            f"| runmcp_fast adds ≤ {ADDED_MS_TARGET} ms (median) | {upstream} | {_f(added, 3)} ms "
            f"| {verdict(not math.isnan(added) and added <= ADDED_MS_TARGET)} |"
        )
        for name in ("nginx", "nginx-fwd"):
            nginx = by.get(name)
            if nginx is None:
                continue
            r = _ratio(added, nginx.added_ms)
            lines.append(
                f"| runmcp_fast adds ≤ {NGINX_ADDED_RATIO_TARGET:g}x {name}'s added median "
                f"| {upstream} | {_f(r, 2)}x ({_f(added, 3)} / {_f(nginx.added_ms, 3)} ms) "
                f"| {verdict(not math.isnan(r) and r <= NGINX_ADDED_RATIO_TARGET)} |"
            )
        for row in rows:
            if row.system in (DIRECT, GATEWAY, "nginx", "nginx-fwd"):
                continue
            for kind, mine, theirs, ceiling in (
                ("sequential", gw.seq_calls_per_s, row.seq_calls_per_s, direct_seq),
                ("concurrent", gw.conc_calls_per_s, row.conc_calls_per_s, direct_conc),
            ):
                r = _ratio(mine, theirs)
                # What a proxy that costs nothing would reach: direct over the peer.
                most = _ratio(ceiling, theirs)
                lines.append(
                    f"| ≥ {PEER_RATIO_TARGET:g}x {row.system}'s {kind} calls/s | {upstream} "
                    f"| {_f(r, 1)}x (direct: {_f(most, 1)}x) "
                    f"| {verdict(not math.isnan(r) and r >= PEER_RATIO_TARGET)} |"
                )
    for s in streams:
        if s.target != GATEWAY:
            continue
        kb = s.per_stream_kb
        lines.append(
            f"| ≤ {STREAM_KB_TARGET:g} KB RSS per idle SSE stream | raw-sse | {_f(kb)} KB "
            f"({s.opened:,} streams) | {verdict(not math.isnan(kb) and kb <= STREAM_KB_TARGET)} |"
        )
    return "\n".join(lines) if len(lines) > 2 else ""


def streams_table(results: list[Streams]) -> str:
    lines = [
        "| system | streams open / asked | opened in s | RSS before → after (MB) | KB per stream "
        "| fds after | upstream KB per stream | keep-alive seen | failures |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for s in results:
        keep = (
            "—"
            if s.keepalive_ok is None
            else f"{s.keepalive_ok:,} / {s.opened:,} in {s.keepalive_wait:g} s"
        )
        fails = ", ".join(f"{k[:90]}: {v:,}" for k, v in s.failures.most_common(3)) or "none"
        lines.append(
            f"| {s.target} | {s.opened:,} / {s.requested:,} | {s.open_seconds:.1f} "
            f"| {s.rss_before_kb / 1024:.1f} → {s.rss_after_kb / 1024:.1f} | {_f(s.per_stream_kb)} "
            f"| {s.fds_after:,} | {_f(s.upstream_per_stream_kb)} | {keep} | {fails} |"
        )
    return "\n".join(lines)


def streams_dict(s: Streams) -> dict[str, Any]:
    return {
        "target": s.target,
        "requested": s.requested,
        "opened": s.opened,
        "failures": dict(s.failures),
        "open_seconds": s.open_seconds,
        "rss_before_kb": s.rss_before_kb,
        "rss_after_kb": s.rss_after_kb,
        "per_stream_kb": s.per_stream_kb,
        "fds_before": s.fds_before,
        "fds_after": s.fds_after,
        "upstream_per_stream_kb": s.upstream_per_stream_kb,
        "keepalive_ok": s.keepalive_ok,
    }
