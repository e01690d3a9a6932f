"""The gateway under test in the latency run: runmcp_fast's `Gateway` on uvloop.

What `runmcp-fast serve` runs (one process, one event loop, admin listener on),
plus timing hooks that do not change what the gateway does:

- each config change: when the build thread started and ended, and how long
  `ControlPlane.swap` and freeing the replaced snapshot took on the loop;
- each cycle-GC pass of generation 1 or 2, with its thread (the build thread's
  passes hold the GIL: the loop waits for them);
- loop stalls: a timer due every millisecond that fires more than 2 ms late.

All times are `time.perf_counter()` (CLOCK_MONOTONIC, the same clock in every
process), so run.py can line them up with its requests. On SIGTERM the numbers
are written to `--stats` as JSON and the gateway stops.

    python bench/reload/gateway_proc.py --config gateway.json --stats stats.json
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import uvloop

from runmcp_fast.config import config_from_data
from runmcp_fast.gateway import Gateway

STALL = 0.002  # a 1 ms timer this much late is a stall (uvloop's timers tick in ms)


class Recorder:
    def __init__(self) -> None:
        self.swaps: list[dict[str, float]] = []
        self.builds: list[tuple[float, float]] = []
        self.gcs: list[tuple[float, float, int, bool]] = []  # start, end, generation, on loop
        self.stalls: list[tuple[float, float]] = []  # when, how late
        self.ticks = 0
        self._gc_start = 0.0
        self._loop_thread = threading.get_ident()

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if info["generation"] == 0:
            return
        now = time.perf_counter()
        if phase == "start":
            self._gc_start = now
        else:
            on_loop = threading.get_ident() == self._loop_thread
            self.gcs.append((self._gc_start, now, info["generation"], on_loop))

    def hook(self, gateway: Gateway) -> None:
        control = gateway.control
        build = control._build
        swap = control.swap

        def timed_build(base: Any, overlay: Any) -> Any:
            start = time.perf_counter()
            try:
                return build(base, overlay)
            finally:
                self.builds.append((start, time.perf_counter()))

        def timed_swap(snapshot: Any) -> None:
            old = control.snapshot
            start = time.perf_counter()
            swap(snapshot)
            middle = time.perf_counter()
            del old  # the last reference: freed here, on the loop
            end = time.perf_counter()
            self.swaps.append(
                {
                    "start": start,
                    "swapped": middle,
                    "freed": end,
                    "generation": snapshot.generation,
                    "routes": snapshot.route_count,
                }
            )

        control._build = timed_build  # type: ignore[method-assign]
        control.swap = timed_swap  # type: ignore[method-assign]
        gc.callbacks.append(self.on_gc)

    async def watch_loop(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            late = time.perf_counter() - before - 0.001
            self.ticks += 1
            if late > STALL:
                self.stalls.append((before, late))

    def as_dict(self) -> dict[str, Any]:
        return {
            "swaps": self.swaps,
            "builds": self.builds,
            "gcs": self.gcs,
            "stalls": self.stalls,
            "ticks": self.ticks,
        }


async def serve(config_path: Path, stats_path: Path) -> None:
    data = json.loads(config_path.read_text())
    config = config_from_data(data, source=str(config_path), base_dir=str(config_path.parent))
    gateway = Gateway(config, source=str(config_path))
    started = time.perf_counter()
    await gateway.start()
    startup = time.perf_counter() - started
    print(gateway.startup_line()[:300], file=sys.stderr, flush=True)
    print(f"started in {startup:.2f} s", file=sys.stderr, flush=True)
    # Counting walks the whole permanent generation (~10 ms for 600,000 objects): only
    # here and at the end, never during a measurement.
    frozen_at_start = gc.get_freeze_count()
    recorder = Recorder()
    recorder.hook(gateway)
    loop = asyncio.get_running_loop()
    watcher = loop.create_task(recorder.watch_loop())
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    watcher.cancel()
    stats = {
        **recorder.as_dict(),
        "startup_s": startup,
        "rss_kb": _rss_kb(),
        "frozen_at_start": frozen_at_start,
        "frozen_at_end": gc.get_freeze_count(),
    }
    stats_path.write_text(json.dumps(stats))
    await gateway.stop(drain_timeout=2.0)


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="config data as JSON")
    parser.add_argument("--stats", type=Path, required=True, help="written at SIGTERM")
    args = parser.parse_args()
    uvloop.run(serve(args.config, args.stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
