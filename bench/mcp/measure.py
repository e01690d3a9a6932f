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


async def paired(
    direct: Target, system: Target, pairs: int, budget: float, warmup: int, gap: float = 0.0
) -> Paired:
    """`pairs` rounds of one direct call and one through `system`, the order alternating
    (so neither side always runs right after the other's wake-ups), `gap` s of quiet
    before each measured call (see CALL_GAP); stops at `budget` s."""
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
                first, second = (s, d) if i & 1 else (d, s)
                if gap:
                    await asyncio.sleep(gap)
                t_first = await first.call()
                if gap:
                    await asyncio.sleep(gap)
                t_second = await second.call()
                ts, td = (t_first, t_second) if i & 1 else (t_second, t_first)
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


# Quiet before each measured call of the paired runs, in seconds. A call started right
# as the last one's answer arrived shares the client's CPU with the upstream still
# ending that answer (the SDK's server writes its last chunk and frees the stream after
# the event the client waits for): how much of that lands on a call depended on which
# call came before it, not on the system it went through. Back to back, nginx-fwd over
# nginx (the same proxy, plus four headers the upstream reads) measured 1.0x to 1.8x
# from run to run; with 2 ms between calls, 1.05x to 1.22x (tools/call, SDK and
# everything upstreams, this 2-CPU machine). An agent's tool calls are not back to
# back either.
CALL_GAP = 0.002


def balanced_orders(n: int) -> list[list[int]]:
    """Orders of 0..n-1, one per round, in which each item comes right after each other
    item equally often (a Williams design: n rows, 2n when n is odd).

    A call right after another one meets what that one left behind: the upstream still
    ending the stream it just answered (the SDK's server writes its last chunk and frees
    the stream after the answer), on the CPU the client shares with it. Rotating one
    order ([d, A, B, C], [A, B, C, d], ...) put A right after the direct call in 3 rounds
    of 4 and B and C after a proxied one: A's added latency came out highest whichever
    system A was (runmcp_fast first: +146 us, nginx +69; nginx first: nginx +131,
    runmcp_fast +114; tools/call on the SDK upstream).
    """
    first = [0]
    low, high = 1, n - 1
    while len(first) < n:
        if len(first) % 2:
            first.append(low)
            low += 1
        else:
            first.append(high)
            high -= 1
    rows = [[(x + r) % n for x in first] for r in range(n)]
    if n % 2:
        rows += [row[::-1] for row in rows]
    return rows


async def interleaved(
    direct: Target,
    systems: dict[str, Target],
    rounds: int,
    budget: float,
    warmup: int,
    gap: float = 0.0,
) -> dict[str, Paired]:
    """`rounds` rounds of one direct call and one call through each of `systems`, in
    `balanced_orders` (each comes after each other one, the direct call too, equally
    often). Every system is paired with the direct call of its own round, and all
    systems meet the same moments of a noisy machine: measured one after another, each
    in its own window (`paired`), their ratios moved with whatever ran beside each
    window. `gap` s of quiet before each measured call (see CALL_GAP). Stops at
    `budget` s."""
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
        orders = [[order[j] for j in row] for row in balanced_orders(len(order))]
        deadline = time.monotonic() + budget
        for i in range(rounds):
            direct_ns: float | None = None
            through: dict[str, float] = {}
            for who in orders[i % len(orders)]:
                if gap:
                    await asyncio.sleep(gap)
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
