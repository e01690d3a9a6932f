"""cProfile of one-service changes through a running Gateway: everything the build
thread runs for a change (`ControlPlane._build`, then taking the old snapshot apart
and dropping the counters of routes gone), and the time of each part.

    .venv/bin/python bench/reload/profile_change.py --services 1000 [--changes 6] [--top 25]
    .venv/bin/python bench/reload/profile_change.py --services 1000 --no-profile  # times only
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import workload

import build
from runmcp_fast import control as control_module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=6)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument(
        "--timer",
        action="store_true",
        help="no profile; a 1 ms timer on the loop: how late it fires during the changes",
    )
    parser.add_argument("--cpu", type=int, help="run on this CPU only (as a pinned worker)")
    parser.add_argument(
        "--prefix-only",
        action="store_true",
        help="services with one prefix route each (the cluster test's shape), not specs",
    )
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    profiler = None if args.no_profile or args.timer else cProfile.Profile()
    lateness: list[float] = []
    times: dict[str, list[float]] = {}

    def wrap(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*a: Any) -> Any:
            begin = time.perf_counter()
            if profiler is not None:
                profiler.enable()
            try:
                return fn(*a)
            finally:
                if profiler is not None:
                    profiler.disable()
                times.setdefault(name, []).append(time.perf_counter() - begin)

        return timed

    async def run(work: build.Workload) -> None:
        from runmcp_fast.gateway import Gateway

        data = work.data
        if args.prefix_only:
            services = [
                {"name": s["name"], "upstream": s["upstream"], "prefix": f"/{s['name']}"}
                for s in data["services"]
            ]
            data = {**data, "services": services}
        gateway = Gateway(work.config(data), source=build.SOURCE)
        await gateway.start()
        control = gateway.control
        control._build = wrap("build", control._build)  # type: ignore[method-assign]
        control_module._dispose = wrap("dispose", control_module._dispose)  # type: ignore[attr-defined]
        control_module._retain_stats = wrap("retain", control_module._retain_stats)  # type: ignore[attr-defined]
        # One change first (another upstream), left out of the numbers.
        await gateway.update_service(workload.SWAPPED, url="http://127.0.0.1:10")
        await control.settled()
        times.clear()
        if profiler is not None:
            profiler.clear()
        walls = []
        ticking = [True]

        async def ticker() -> None:
            while ticking[0]:
                began = time.perf_counter()
                await asyncio.sleep(0.001)
                lateness.append(time.perf_counter() - began - 0.001)

        tick = asyncio.get_running_loop().create_task(ticker()) if args.timer else None
        try:
            for index in range(args.changes):
                begin = time.perf_counter()
                if args.prefix_only:
                    change: dict[str, Any] = {"prefix": f"/changed{index % 2}"}
                else:
                    change = {"openapi": str(work.versions[index % 2])}
                await gateway.update_service(workload.SWAPPED, **change)
                await control.settled()
                walls.append(time.perf_counter() - begin)
        finally:
            ticking[0] = False
            if tick is not None:
                await tick
            await gateway.stop()
        times["change, end to end"] = walls

    import uvloop

    with tempfile.TemporaryDirectory(prefix="bench-reload-") as tmp:
        work = build.Workload(args.services, Path(tmp))
        uvloop.run(run(work))
    for name, values in times.items():
        print(
            f"{name:>20}: median {statistics.median(values) * 1000:7.1f} ms, "
            f"min {min(values) * 1000:7.1f}, max {max(values) * 1000:7.1f} (n={len(values)})"
        )
    if lateness:
        lateness.sort()
        print(
            f"1 ms timer during the changes, fired late by: p50"
            f" {lateness[len(lateness) // 2] * 1000:.2f} ms, p99"
            f" {lateness[int(len(lateness) * 0.99)] * 1000:.2f} ms, max {lateness[-1] * 1000:.2f} ms"
            f" ({len(lateness)} ticks)"
        )
    if profiler is not None:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats(args.sort).print_stats(args.top)
        print(out.getvalue().replace(str(Path(sys.prefix).parent) + "/", ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
