"""Collects what the benchmarks measured and prints the summary tables at the end."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.workload import CASE_TITLES, SPECS

# The targets. Printed beside the numbers, never asserted.
TARGET_NS_GITHUB = 150.0
TARGET_GRAPH_VS_GITHUB = 1.5
TARGET_BUILD_S = 2.0


@dataclass
class MatchRow:
    spec: str
    case: str
    system: str
    on: str  # whose request list: the system's own, or a peer's for a runmcp_fast rerun
    requests: int
    rounds: int
    median_ns: float
    min_ns: float
    max_ns: float


@dataclass
class Report:
    match: dict[tuple[str, str, str, str], MatchRow] = field(default_factory=dict)
    compile: dict[tuple[str, str], tuple[float, float, float, int]] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)  # spec -> lines
    loop_overhead_ns: float | None = None

    def add_match(self, row: MatchRow) -> None:
        self.match[row.spec, row.case, row.system, row.on] = row

    def add_compile(self, spec: str, phase: str, seconds: list[float]) -> None:
        self.compile[spec, phase] = (
            statistics.median(seconds),
            min(seconds),
            max(seconds),
            len(seconds),
        )

    def note(self, spec: str, line: str) -> None:
        lines = self.notes.setdefault(spec, [])
        if line not in lines:
            lines.append(line)

    # -- output -----------------------------------------------------------

    def lines(self) -> list[str]:
        out: list[str] = []
        if self.match:
            out += self._match_table()
        if self.compile:
            out += ["", *self._compile_table()]
        targets = self._targets()
        if targets:
            out += ["", *targets]
        for spec, notes in self.notes.items():
            out += ["", f"{spec}:", *(f"  - {n}" for n in notes)]
        return out

    def _base(self, spec: str, case: str, on: str) -> MatchRow | None:
        return self.match.get((spec, case, "runmcp_fast", on))

    def _match_table(self) -> list[str]:
        out = [
            "Router match: median ns per match call (one round = one pass over the request"
            " list; round time / requests).",
            "`x runmcp_fast` = the system's median / runmcp_fast's median on the very same"
            " requests (runmcp_fast keeps every route).",
            "",
            "| spec | case | system | requests | median ns | min-max ns | runmcp_fast ns,"
            " same requests | x runmcp_fast |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        order = {
            s: i
            for i, s in enumerate(("runmcp_fast", "github-size", "falcon", "starlette", "werkzeug"))
        }
        rows = sorted(
            (r for r in self.match.values() if r.system == r.on or r.on == "github-size"),
            key=lambda r: (
                list(SPECS).index(r.spec),
                list(CASE_TITLES).index(r.case),
                order[r.on],
            ),
        )
        for r in rows:
            base = self._base(r.spec, r.case, r.on)
            same = f"{base.median_ns:,.0f}" if base else "-"
            ratio = f"{r.median_ns / base.median_ns:,.1f}x" if base else "-"
            system = r.system
            if r.on == "github-size":
                system, same, ratio = "runmcp_fast, first requests (GitHub's count)", "", ""
            elif r.system == "runmcp_fast":
                same, ratio = "", "1.0x"
            out.append(
                f"| {r.spec} | {CASE_TITLES[r.case]} | {system} | {r.requests:,} "
                f"| {r.median_ns:,.0f} | {r.min_ns:,.0f}-{r.max_ns:,.0f} | {same} | {ratio} |"
            )
        if self.loop_overhead_ns is not None:
            out.append(
                f"(included in every number: the bare loop, `for host, method, path in requests:"
                f" pass`, costs {self.loop_overhead_ns:,.0f} ns per request)"
            )
        return out

    def _compile_table(self) -> list[str]:
        out = [
            "Spec load and router build: median seconds (min-max, rounds).",
            "",
            "| spec | phase | median s | min-max s | rounds |",
            "| --- | --- | ---: | ---: | ---: |",
        ]
        for (spec, phase), (med, lo, hi, n) in sorted(
            self.compile.items(), key=lambda kv: list(SPECS).index(kv[0][0])
        ):
            out.append(f"| {spec} | {phase} | {med:.3f} | {lo:.3f}-{hi:.3f} | {n} |")
        return out

    def _targets(self) -> list[str]:
        out = ["Targets from the issue (reported, never asserted):", ""]
        verdict: Callable[[bool], str] = lambda ok: "met" if ok else "NOT met"  # noqa: E731
        gh = self._base("github", "hits", "runmcp_fast")
        if gh:
            out.append(
                f"- median <= {TARGET_NS_GITHUB:.0f} ns per match on GitHub's spec: hits"
                f" {gh.median_ns:,.0f} ns -> {verdict(gh.median_ns <= TARGET_NS_GITHUB)}"
            )
            others = [
                f"{CASE_TITLES[c]} {row.median_ns:,.0f} ns"
                for c in ("param3", "misses")
                if (row := self._base("github", c, "runmcp_fast"))
            ]
            if others:
                out.append("  (other GitHub cases: " + "; ".join(others) + ")")
        for on, how in (
            ("github-size", "on as many requests as GitHub's lists"),
            ("runmcp_fast", "on the full lists (11k requests vs 845: cache misses count)"),
        ):
            ratios = []
            for case in CASE_TITLES:
                g = self._base("github", case, "runmcp_fast")
                m = self._base("graph", case, on)
                if g and m:
                    ratios.append((case, m.median_ns / g.median_ns))
            if ratios:
                worst = max(r for _, r in ratios)
                detail = ", ".join(f"{CASE_TITLES[c]} {r:.2f}x" for c, r in ratios)
                out.append(
                    f"- Graph v1.0 within {TARGET_GRAPH_VS_GITHUB}x of GitHub's time, {how}:"
                    f" {detail} -> {verdict(worst <= TARGET_GRAPH_VS_GITHUB)}"
                )
        build = self.compile.get(("graph-beta", "router build"))
        if build:
            loads = [
                f"{phase.removeprefix('spec load: ')} {v[0]:.2f} s"
                for (spec, phase), v in self.compile.items()
                if spec == "graph-beta" and phase.startswith("spec load")
            ]
            extra = f" (spec load, not counted: {', '.join(loads)})" if loads else ""
            out.append(
                f"- graph-beta router build < {TARGET_BUILD_S:.0f} s: {build[0]:.3f} s{extra}"
                f" -> {verdict(build[0] < TARGET_BUILD_S)}"
            )
        return out if len(out) > 2 else []
