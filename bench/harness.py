"""What the benchmarks share: specs and routers built once, the guard, the timing loop."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from functools import cache
from typing import Any

from bench.peers import SYSTEMS, Peer
from bench.report import Report
from bench.workload import SPECS, LoadedSpec, Workload, load_spec_for_matching


class Env:
    """Specs and routers, each built once per session, on first use."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.spec = cache(self._spec)
        self.system = cache(self._system)
        self._guarded: dict[tuple[str, str, str, str], list[str]] = {}

    def _spec(self, key: str) -> LoadedSpec:
        loaded = load_spec_for_matching(SPECS[key])
        templates = len({t for _, t in loaded.ops})
        self.report.note(
            key,
            f"{templates:,} templates, {len(loaded.ops):,} operations, Host"
            f" {loaded.info.host}, paths include the server's base path",
        )
        lengths = ", ".join(
            f"{case} {sum(len(r[2]) for r in w.requests) / len(w.requests):.0f}"
            for case, w in loaded.workloads.items()
        )
        self.report.note(key, f"mean path length in characters: {lengths}")
        for case, w in loaded.workloads.items():
            if w.dropped and case != "misses":
                self.report.note(
                    key,
                    f"{case}: {w.dropped} generated paths left out: another template matches"
                    " them too (e.g. `f(a={a})` vs `f(a={a},b={b})`), peers differ there",
                )
        return loaded

    def _system(self, spec: str, name: str) -> Peer:
        loaded = self.spec(spec)
        peer = SYSTEMS[name](loaded.ops)
        refused = sum(len(ts) for ts in peer.rejected.values())
        line = f"{name}: given {peer.given}; accepts {peer.templates - refused:,}/{peer.templates:,} templates"
        if refused:
            line += (
                " (refused: "
                + "; ".join(f"{len(ts)} {why}" for why, ts in peer.rejected.items())
                + ")"
            )
        if peer.leaves_out:
            line += f"; not timed on {peer.leaves_out}"
        self.report.note(spec, line)
        return peer

    def workload(self, spec: str, case: str, on: str) -> Workload:
        """The requests timed for `on`: those it can route, sampled for Starlette.

        `on="github-size"`: the first requests of the list, as many as GitHub's has; the
        time per match grows with the list (the requests stop fitting in the CPU caches),
        so comparing two specs is only fair at one length.
        """
        full = self.spec(spec).workloads[case]
        if on == "runmcp_fast":
            return full
        if on == "github-size":  # as many requests as GitHub's list of the same case
            return full.subset(lambda r, e: True, len(self.spec("github").workloads[case].requests))
        limit = SPECS[spec].starlette_sample if on == "starlette" else None
        return full.subset(self.system(spec, on).accepts, limit)

    def guard(self, spec: str, case: str, system: str, on: str) -> list[str]:
        """Disagreements between `system` and the reference on the timed requests."""
        key = (spec, case, system, on)
        if key not in self._guarded:
            w = self.workload(spec, case, on)
            peer = self.system(spec, system)
            bad = []
            for (host, method, path), want in zip(w.requests, w.expected, strict=True):
                got = peer.resolve(host, method, path)
                if got != want:
                    bad.append(f"{method} {path}: got {got!r}, want {want!r}")
            self._guarded[key] = bad
        return self._guarded[key]


def time_loop(benchmark: Any, run: Callable[[], None], per: int, seconds: float) -> list[float]:
    """Time `run` (one pass over `per` requests) in pedantic mode; return per-item seconds.

    pytest-benchmark's rounds are rescaled in place, so its own table also reads per match.
    """
    run()  # warm caches (falcon, werkzeug and re compile lazily)
    t0 = time.perf_counter()
    run()
    once = max(time.perf_counter() - t0, 1e-9)
    rounds = min(max(math.ceil(seconds / once), 5), 10_000)
    benchmark.extra_info.update(requests=per, rounds=rounds, unit="per request")
    benchmark.pedantic(run, rounds=rounds, warmup_rounds=1, iterations=1)
    if not benchmark.stats:  # --benchmark-disable: ran once, measured nothing
        return []
    data = benchmark.stats.stats.data
    # NOTE: Stats computes median/min/max lazily (cached_property) when it reports, so
    # rescaling the raw rounds here makes every later number per request.
    data[:] = [d / per for d in data]
    return list(data)
