"""The validation benchmark's tables: µs per body for each system, the ratios, the target.

Shared by the pytest-benchmark suite (its terminal summary) and `run.py`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bench.validation.peers import GATEWAY, SYSTEMS
from bench.validation.workload import SIZES

# The target: runmcp_fast at least this many times faster than the fastest peer,
# on every size. Printed beside the numbers, never asserted.
TARGET_RATIO = 3.0


@dataclass
class Row:
    size: str
    system: str
    seconds: list[float]  # per body, one entry per round

    @property
    def median_us(self) -> float:
        return statistics.median(self.seconds) * 1e6

    @property
    def min_us(self) -> float:
        return min(self.seconds) * 1e6

    @property
    def max_us(self) -> float:
        return max(self.seconds) * 1e6

    @property
    def mb_s(self) -> float:
        return len(SIZES[self.size].body) / (self.median_us * 1e-6) / 1e6


def _ordered(rows: Iterable[Row]) -> list[Row]:
    sizes, systems = list(SIZES), list(SYSTEMS)
    return sorted(rows, key=lambda r: (sizes.index(r.size), systems.index(r.system)))


def _fmt(us: float) -> str:
    return f"{us:,.2f}" if us < 100 else f"{us:,.0f}"


def table(rows: Sequence[Row]) -> list[str]:
    """One row per (size, system): median µs per body, spread, throughput, x runmcp_fast."""
    by = {(r.size, r.system): r for r in rows}
    out = [
        "Decode + validate one body: median µs per call (a round times a batch of calls on the"
        " same bytes; round time / calls).",
        "`x runmcp_fast` = the system's median / runmcp_fast's median (above 1: slower than"
        " runmcp_fast).",
        "",
        "| size | bytes | system | median µs | min-max µs | rounds | MB/s | x runmcp_fast |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in _ordered(rows):
        base = by.get((r.size, GATEWAY))
        ratio = f"{r.median_us / base.median_us:,.2f}x" if base else "-"
        out.append(
            f"| {r.size} | {len(SIZES[r.size].body):,} | {r.system} | {_fmt(r.median_us)}"
            f" | {_fmt(r.min_us)}-{_fmt(r.max_us)} | {len(r.seconds)} | {r.mb_s:,.0f} | {ratio} |"
        )
    return out


def targets(rows: Sequence[Row]) -> list[str]:
    """Per size: the fastest peer, fastest peer / runmcp_fast, met or NOT met."""
    by = {(r.size, r.system): r for r in rows}
    out = [
        f"Target: runmcp_fast >= {TARGET_RATIO:.0f}x faster than the fastest peer on every size"
        " (reported, never asserted):",
        "",
        "| size | runmcp_fast µs | fastest peer | its µs | fastest peer / runmcp_fast | target |",
        "| --- | ---: | --- | ---: | ---: | --- |",
    ]
    verdicts = []
    for size in SIZES:
        base = by.get((size, GATEWAY))
        peers = [r for (s, name), r in by.items() if s == size and name != GATEWAY]
        if base is None or not peers:
            continue
        best = min(peers, key=lambda r: r.median_us)
        ratio = best.median_us / base.median_us
        ok = ratio >= TARGET_RATIO
        verdicts.append(ok)
        # Rounded down, so that 2.997 never prints as "3.00x NOT met".
        shown = math.floor(ratio * 100) / 100
        out.append(
            f"| {size} | {_fmt(base.median_us)} | {best.system} | {_fmt(best.median_us)}"
            f" | {shown:.2f}x | {'met' if ok else 'NOT met'} |"
        )
    if not verdicts:
        return []
    out += ["", f"Overall: {'met' if all(verdicts) else 'NOT met'}"]
    return out


def lines(rows: Sequence[Row]) -> list[str]:
    if not rows:
        return []
    out = table(rows)
    extra = targets(rows)
    if extra:
        out += ["", *extra]
    return out
