"""A coarse clock and one periodic sweep in place of a timer per request.

PERF: `loop.call_later` per request costs a heap push, a handle and a cancel;
instead every connection stores plain deadlines (floats) against `Clock.now`,
and one tick every `interval` seconds advances `now` and calls the sweepers,
which close what has expired. Deadlines are late by at most one interval.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Clock:
    __slots__ = ("_handle", "_loop", "_sweepers", "interval", "now")

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self._loop = loop
        self.interval = interval
        self.now = loop.time()
        self._sweepers: list[Callable[[float], None]] = []
        self._handle: asyncio.TimerHandle | None = None

    def add_sweeper(self, sweep: Callable[[float], None]) -> None:
        self._sweepers.append(sweep)

    def remove_sweeper(self, sweep: Callable[[float], None]) -> None:
        if sweep in self._sweepers:
            self._sweepers.remove(sweep)

    def start(self) -> None:
        if self._handle is None:
            self._handle = self._loop.call_later(self.interval, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        self.now = now = self._loop.time()
        for sweep in tuple(self._sweepers):
            try:
                sweep(now)
            except Exception:  # a bug in one sweeper must not stop every timeout
                self._loop.call_exception_handler(
                    {"message": "timeout sweep failed", "exception": _current_exception()}
                )
        self._handle = self._loop.call_later(self.interval, self._tick)


def _current_exception() -> BaseException | None:
    import sys

    return sys.exc_info()[1]


def sweep_interval(*timeouts: float) -> float:
    """A tick fine enough for the shortest timeout: a quarter of it, within 10 ms..1 s."""
    shortest = min((t for t in timeouts if t > 0), default=1.0)
    return min(1.0, max(0.01, shortest / 4))
