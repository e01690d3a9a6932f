"""The measurements: paired latency, sequential calls, concurrent throughput.

All run in the benchmark's own event loop (the client), pinned to the upstream's CPU.
Every loop is bounded by a count and a time budget.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from client import McpError, Session, Target

# A measurement gives up after this many failed calls (and says so).
MAX_ERRORS = 20


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Sequential:
    """One session, one call after another: the direct baseline."""

    calls: int
    seconds: float
    median_ms: float
    p90_ms: float
    errors: list[str] = field(default_factory=list)

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0


@dataclass
class Paired:
    """Alternating direct / through-the-system calls on two sessions."""

    pairs: int
    direct_ms: list[float]
    system_ms: list[float]
    errors: list[str] = field(default_factory=list)
    budget_hit: bool = False

    @property
    def diffs(self) -> list[float]:
        return [s - d for s, d in zip(self.system_ms, self.direct_ms, strict=True)]

    @property
    def added_median_ms(self) -> float:
        return statistics.median(self.diffs) if self.pairs else float("nan")

    @property
    def added_p90_ms(self) -> float:
        return quantile(self.diffs, 0.9)

    @property
    def system_median_ms(self) -> float:
        return statistics.median(self.system_ms) if self.pairs else float("nan")

    @property
    def direct_median_ms(self) -> float:
        return statistics.median(self.direct_ms) if self.pairs else float("nan")

    @property
    def calls_per_s(self) -> float:
        """Sequential calls/s through the system: 1 / its mean latency."""
        total = sum(self.system_ms)
        return 1000.0 * self.pairs / total if total else 0.0

    @property
    def direct_calls_per_s(self) -> float:
        total = sum(self.direct_ms)
        return 1000.0 * self.pairs / total if total else 0.0


@dataclass
class Concurrent:
    sessions: int
    calls: int
    seconds: float
    p50_ms: float
    p99_ms: float
    cpu_seconds: dict[str, float]  # per watched process tree, over the window
    errors: list[str] = field(default_factory=list)
    reconnects: int = 0
    abandoned: int = 0

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0


async def open_session(target: Target) -> Session:
    session = Session(target)
    await session.open()
    return session


async def check(target: Target, expect: Callable[[str], str]) -> str | None:
    """One session: find the echo tool, call it once; None if it echoes, else what went wrong."""
    try:
        session = await open_session(target)
        try:
            session.set_tool(target.tool)
            text = await session.echo_text("check-42")
        finally:
            session.close()
    except (McpError, OSError) as exc:
        return f"check failed: {exc}"
    if expect("check-42") not in text:
        return f"check: echo answered {text!r}, expected {expect('check-42')!r}"
    return None


async def sequential(target: Target, calls: int, budget: float, warmup: int) -> Sequential:
    session = await open_session(target)
    errors: list[str] = []
    latencies: list[float] = []
    try:
        for _ in range(warmup):
            await session.call()
        deadline = time.monotonic() + budget
        start = time.perf_counter()
        for _ in range(calls):
            try:
                latencies.append((await session.call()) / 1e6)
            except McpError as exc:
                errors.append(str(exc))
                if len(errors) >= MAX_ERRORS:
                    break
            if time.monotonic() > deadline:
                break
        elapsed = time.perf_counter() - start
    finally:
        session.close()
    return Sequential(
        len(latencies),
        elapsed,
        statistics.median(latencies) if latencies else float("nan"),
        quantile(latencies, 0.9),
        errors,
    )


async def paired(direct: Target, system: Target, pairs: int, budget: float, warmup: int) -> Paired:
    """`pairs` rounds of one direct call and one through `system`, the order alternating
    (so neither side always runs right after the other's wake-ups); stops at `budget` s."""
    d = await open_session(direct)
    s = await open_session(system)
    result = Paired(0, [], [])
    try:
        for _ in range(warmup):
            await d.call()
            await s.call()
        deadline = time.monotonic() + budget
        for i in range(pairs):
            try:
                if i & 1:
                    ts = await s.call()
                    td = await d.call()
                else:
                    td = await d.call()
                    ts = await s.call()
            except McpError as exc:
                result.errors.append(str(exc))
                if len(result.errors) >= MAX_ERRORS:
                    break
                continue
            result.direct_ms.append(td / 1e6)
            result.system_ms.append(ts / 1e6)
            result.pairs += 1
            if time.monotonic() > deadline:
                result.budget_hit = result.pairs < pairs
                break
    finally:
        d.close()
        s.close()
    return result


async def interleaved(
    direct: Target, systems: dict[str, Target], rounds: int, budget: float, warmup: int
) -> dict[str, Paired]:
    """`rounds` rounds of one direct call and one call through each of `systems`, the
    order rotating each round. Every system is paired with the direct call of its own
    round, and all systems meet the same moments of a noisy machine: measured one after
    another, each in its own window (`paired`), their ratios moved with whatever ran
    beside each window. Stops at `budget` s."""
    d = await open_session(direct)
    sessions: dict[str, Session] = {}
    results = {name: Paired(0, [], []) for name in systems}
    try:
        for name, target in systems.items():
            sessions[name] = await open_session(target)
        order: list[str | None] = [None, *systems]  # None: direct

        def session_of(who: str | None) -> Session:
            return d if who is None else sessions[who]

        for _ in range(warmup):
            for who in order:
                await session_of(who).call()
        deadline = time.monotonic() + budget
        for i in range(rounds):
            k = i % len(order)
            direct_ns: float | None = None
            through: dict[str, float] = {}
            for who in order[k:] + order[:k]:
                try:
                    elapsed = await session_of(who).call()
                except McpError as exc:
                    for name in systems if who is None else (who,):
                        results[name].errors.append(str(exc))
                    continue
                if who is None:
                    direct_ns = elapsed
                else:
                    through[who] = elapsed
            if direct_ns is not None:
                for name, elapsed in through.items():
                    result = results[name]
                    result.direct_ms.append(direct_ns / 1e6)
                    result.system_ms.append(elapsed / 1e6)
                    result.pairs += 1
            if any(len(r.errors) >= MAX_ERRORS for r in results.values()):
                break
            if time.monotonic() > deadline:
                for result in results.values():
                    result.budget_hit = result.pairs < rounds
                break
    finally:
        d.close()
        for session in sessions.values():
            session.close()
    return results


async def concurrent(
    target: Target,
    sessions: int,
    seconds: float,
    warmup: float,
    cpu_of: Callable[[], dict[str, float]],
) -> Concurrent:
    """`sessions` sessions calling in a loop; calls completed within the window counted.

    `cpu_of()` reads the CPU seconds of the watched processes; it is called at the
    window's start and end.
    """
    opened = await asyncio.gather(
        *(open_session(target) for _ in range(sessions)), return_exceptions=True
    )
    errors = [f"open: {o}" for o in opened if isinstance(o, BaseException)]
    live = [o for o in opened if isinstance(o, Session)]
    state: dict[str, Any] = {"measuring": False, "stop": False}
    latencies: list[float] = []

    async def worker(session: Session) -> None:
        failures = 0
        while not state["stop"]:
            try:
                elapsed = await session.call()
            except (McpError, OSError) as exc:
                errors.append(str(exc))
                failures += 1
                if failures >= MAX_ERRORS:
                    return
                continue
            if state["measuring"]:
                latencies.append(elapsed / 1e6)

    tasks = [asyncio.create_task(worker(s)) for s in live]
    try:
        await asyncio.sleep(warmup)
        cpu_before = cpu_of()
        state["measuring"] = True
        start = time.perf_counter()
        await asyncio.sleep(seconds)
        state["measuring"] = False
        elapsed = time.perf_counter() - start
        cpu_after = cpu_of()
        state["stop"] = True
        await asyncio.wait(tasks, timeout=35)
    finally:
        state["stop"] = True
        for task in tasks:
            task.cancel()
        for session in live:
            session.close()
    return Concurrent(
        sessions=len(live),
        calls=len(latencies),
        seconds=elapsed,
        p50_ms=quantile(latencies, 0.5),
        p99_ms=quantile(latencies, 0.99),
        cpu_seconds={k: cpu_after[k] - cpu_before.get(k, 0.0) for k in cpu_after},
        errors=errors,
        reconnects=sum(s.reconnects for s in live),
        abandoned=sum(s.abandoned for s in live),
    )
