"""Idle SSE streams: K sessions each holding its standalone GET stream open.

Each stream is a real session: initialize, notifications/initialized, then
`GET /mcp` with `Accept: text/event-stream` on the same connection, which the stream
then keeps. The memory of the system under test (VmRSS of its process tree) is read
before (after a warm-up of 256 streams, closed again) and after all K are open; the
growth over K is its memory per idle stream. Then every stream must see a keep-alive
comment (or any event) within the upstream's keep-alive interval plus a margin.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from client import McpError, Session, Target

# Handshakes (two POSTs each) in flight at once; the GETs then wait on their own.
OPENING = 256
WARMUP_STREAMS = 256


@dataclass
class Streams:
    target: str
    requested: int
    opened: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    open_seconds: float = 0.0
    rss_before_kb: int = 0
    rss_after_kb: int = 0
    fds_before: int = 0
    fds_after: int = 0
    upstream_rss_before_kb: int = 0
    upstream_rss_after_kb: int = 0
    keepalive_ok: int | None = None
    keepalive_wait: float = 0.0

    @property
    def per_stream_kb(self) -> float:
        if not self.opened:
            return float("nan")
        return (self.rss_after_kb - self.rss_before_kb) / self.opened

    @property
    def upstream_per_stream_kb(self) -> float:
        if not self.opened or not self.upstream_rss_after_kb:
            return float("nan")
        return (self.upstream_rss_after_kb - self.upstream_rss_before_kb) / self.opened


async def _open_many(
    target: Target, count: int, header_wait: float, result: Streams | None, budget: float
) -> list[Session]:
    sem = asyncio.Semaphore(OPENING)
    sessions: list[Session] = []

    async def one() -> None:
        session = Session(target)
        try:
            async with sem:
                await session.open()
            status = await asyncio.wait_for(session.open_stream(), header_wait)
        except (McpError, OSError, TimeoutError) as exc:
            session.close()
            if result is not None:
                reason = "no headers in time" if isinstance(exc, TimeoutError) else str(exc)
                result.failures[reason[:120]] += 1
            return
        except asyncio.CancelledError:  # out of budget
            session.close()
            raise
        if status != 200:
            session.close()
            if result is not None:
                result.failures[f"GET answered {status}"] += 1
            return
        sessions.append(session)

    tasks = [asyncio.create_task(one()) for _ in range(count)]
    _, late = await asyncio.wait(tasks, timeout=budget)
    for task in late:
        task.cancel()
    if late:
        await asyncio.wait(late)
        if result is not None:
            result.failures[f"not open after {budget:g} s"] += len(late)
    return sessions


async def hold(
    target: Target,
    count: int,
    *,
    rss: Callable[[], int],
    fds: Callable[[], int],
    upstream_rss: Callable[[], int] | None,
    keepalive_wait: float,
    header_wait: float,
    budget: float,
) -> Streams:
    result = Streams(target.name, count)
    # Warm-up: the first streams grow pools and buffers that later ones reuse.
    for session in await _open_many(target, WARMUP_STREAMS, header_wait, None, budget):
        session.close()
    await asyncio.sleep(1.0)
    result.rss_before_kb, result.fds_before = rss(), fds()
    result.upstream_rss_before_kb = upstream_rss() if upstream_rss else 0
    start = time.monotonic()
    sessions = await _open_many(target, count, header_wait, result, budget)
    result.open_seconds = time.monotonic() - start
    result.opened = len(sessions)
    try:
        await asyncio.sleep(2.0)  # let the last ones settle (buffers, lazy allocations)
        result.rss_after_kb, result.fds_after = rss(), fds()
        result.upstream_rss_after_kb = upstream_rss() if upstream_rss else 0
        if keepalive_wait > 0 and sessions:
            mark = time.monotonic()
            result.keepalive_wait = keepalive_wait
            await asyncio.sleep(result.keepalive_wait)
            result.keepalive_ok = sum(
                1
                for s in sessions
                if s.conn is not None and not s.conn.lost and s.conn.stream_last > mark
            )
    finally:
        for session in sessions:
            session.close()
    return result
