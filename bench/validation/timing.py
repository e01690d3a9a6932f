"""Timing: a round is a batch of calls on the same bytes; results are seconds per call.

One call on a 150-byte body takes about a microsecond, far below the timer's
resolution and the loop's noise, so each round times a batch sized to about
`BATCH_SECONDS` and divides. The batch is a plain `for` loop (its own cost, ~15 ns
per call, is in every system's number alike).
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable
from typing import Any

BATCH_SECONDS = 0.0005


def batch_size(call: Callable[[bytes], Any], data: bytes) -> tuple[int, float]:
    """Calls per round so that a round lasts about BATCH_SECONDS (at least one call), and
    the seconds one call took while calibrating."""
    call(data)  # warm: lazily built state (regex caches, jsonschema's validators)
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            call(data)
        took = max(time.perf_counter() - t0, 1e-9)
        if took >= BATCH_SECONDS / 4 or n >= 1 << 20:
            return max(1, math.ceil(n * BATCH_SECONDS / took)), took / n
        n *= 4


def batch(call: Callable[[bytes], Any], data: bytes, per: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(per):
            call(data)

    return run


def rounds_for(per: int, each: float, seconds: float) -> int:
    """Rounds for about `seconds` of timed work: at least 5, at most 10,000."""
    return min(max(math.ceil(seconds / (per * each)), 5), 10_000)


def time_benchmark(
    benchmark: Any, call: Callable[[bytes], Any], data: bytes, seconds: float
) -> list[float]:
    """pytest-benchmark, pedantic mode; its rounds are rescaled in place to seconds per call."""
    per, each = batch_size(call, data)
    run = batch(call, data, per)
    rounds = rounds_for(per, each, seconds)
    benchmark.extra_info.update(calls_per_round=per, rounds=rounds, unit="per body")
    gc.collect()
    benchmark.pedantic(run, rounds=rounds, warmup_rounds=1, iterations=1)
    if not benchmark.stats:  # --benchmark-disable
        return []
    data_ = benchmark.stats.stats.data
    # Stats computes median/min/max lazily when it reports: rescaled here, its tables
    # read per body too.
    data_[:] = [d / per for d in data_]
    return list(data_)


def interleaved(
    calls: dict[str, Callable[[bytes], Any]], data: bytes, seconds: float
) -> dict[str, list[float]]:
    """Time every system on `data`, round-robin, about `seconds` each; seconds per call.

    Interleaving spreads a neighbour's burst of load over all systems instead of
    landing on one of them, so the ratios of one size hold up on a shared machine.
    """
    runs = {}
    rounds = {}
    for name, call in calls.items():
        per, each = batch_size(call, data)
        runs[name] = (batch(call, data, per), per)
        rounds[name] = rounds_for(per, each, seconds)
    out: dict[str, list[float]] = {name: [] for name in calls}
    gc.collect()
    for i in range(max(rounds.values())):
        for name, (run, per) in runs.items():
            if i >= rounds[name]:
                continue
            t0 = time.perf_counter()
            run()
            out[name].append((time.perf_counter() - t0) / per)
    return out
