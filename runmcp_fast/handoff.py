"""Letting the event loop's thread run while a build works on another thread.

The GIL's switch interval (0.1 ms on the build thread, see control.py) hands the
GIL over once the loop's thread asks for it; but to ask, that thread must first
be running. When both share one CPU (a worker pinned to a core, a busy machine),
the loop's thread woken by a request waits for the scheduler to preempt the
build thread: up to a time slice, several ms, with every request in flight
waiting too (bench/reload: the worst added latency during a change). `pause()`
gives up the CPU (and the GIL, as any blocking call does) every 1 ms of
build work, so a woken loop thread runs within about that (a thread spinning
in Python beside a 1 ms timer on one CPU: timer late by p99 0.7-0.9 ms with
the offers, 6-13 ms without).

Only threads inside `building()` (the build thread's work, the config agent's
checks) yield: the same code run on the event loop's thread (the admin API
checking a body) does not give the CPU away. Cheap: a clock read per call, a
`sched_yield` system call (~1 us) per 1 ms. On a CPU shared with other busy
processes an offer may hand them the CPU for a while (0.5 ms on average, seen
on the shared bench machine): the build's share of the CPU stays the
scheduler's fair one, it is only cut in finer pieces. Long Python loops of a
build call it (per service, per 32 routes); one long C call (`Router.compile`)
still runs to its end.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

_T = TypeVar("_T")

EVERY = 0.001
"""Seconds of work between two offers of the CPU."""

_clock = time.perf_counter
_ident = threading.get_ident
_yield: Callable[[], None] = getattr(os, "sched_yield", None) or (lambda: time.sleep(0))
_builders: set[int] = set()  # the threads inside building()
_last = 0.0


def pause() -> None:
    """On a thread inside `building()`: offer the CPU to any other runnable thread
    if `EVERY` passed since the last offer."""
    global _last
    if _clock() - _last >= EVERY and _ident() in _builders:
        _yield()
        _last = _clock()


@contextlib.contextmanager
def building() -> Iterator[None]:
    """`pause()` yields on this thread meanwhile."""
    ident = _ident()
    nested = ident in _builders
    _builders.add(ident)
    try:
        yield
    finally:
        if not nested:
            _builders.discard(ident)


def run(fn: Callable[..., _T], *args: Any) -> _T:
    """`fn(*args)` inside `building()` (for `run_in_executor`)."""
    with building():
        return fn(*args)
