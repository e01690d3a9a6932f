"""Letting the event loop's thread run while a build works on another thread.

The GIL's switch interval (0.1 ms on the build thread, see control.py) hands the
GIL over once the loop's thread asks for it; but to ask, that thread must first
be running. When both share one CPU (a worker pinned to a core, a busy machine),
the loop's thread woken by a request waits for the scheduler to preempt the
build thread: up to a time slice, ~4-10 ms, with every request in flight
waiting too (bench/reload: the worst added latency during a change). `pause()`
gives up the CPU (and the GIL, as any blocking call does) every 0.5 ms of
build work, so a woken loop thread runs within about that.

Cheap when nobody waits: a clock read per call, a `sched_yield` system call (~1 us)
per 0.5 ms. Long Python loops of a build call it (per service, per few dozen
routes); one long C call (`Router.compile`) still runs to its end.
"""

from __future__ import annotations

import os
import time

EVERY = 0.0005
"""Seconds of work between two offers of the CPU."""

_clock = time.perf_counter
_yield = getattr(os, "sched_yield", None) or (lambda: time.sleep(0))
_last = 0.0


def pause() -> None:
    """Offer the CPU to any other runnable thread if this one has run `EVERY` since the last offer."""
    global _last
    now = _clock()
    if now - _last >= EVERY:
        _yield()
        _last = _clock()
