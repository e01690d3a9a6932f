"""Build cost of a snapshot for N services, and what a swap costs the event loop.

Run by run.py in a fresh process per size (so each size starts from a clean heap
and an empty cache), and prints one JSON object:

    .venv/bin/python bench/reload/build.py --services 1000 [--runs 3] [--swaps 5]
    .venv/bin/python bench/reload/build.py --services 1000 --profile   # cProfile, top 10

What it times (perf_counter, in this process):

- config: `config_from_data` on the whole config (every swap checks the merged config).
- cold build: `build_snapshot` with an empty `SpecCache` (every spec loaded).
- warm build: `build_snapshot` after one service changed its spec file, with the
  cache filled by the previous build and the heap frozen as the gateway keeps it
  (`gc.freeze()` at start and after each swap). Also the time to free the
  snapshot it replaces (the gateway frees it on the event loop, at the swap).
- compile: `compile_config(base, overlay)`, the merge + check the control plane
  does on its build thread before `build_snapshot`.
- through a running `Gateway` (uvloop, in this process): `update_service` of one
  service, end to end; the part on the build thread; `ControlPlane.swap` on the
  loop; and, with a probe task that runs whenever the loop lets it, the longest
  time the loop could not run Python code during a swap (GIL held by the build
  thread, the swap itself, freeing the old snapshot).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import os
import pstats
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import workload

from runmcp_fast.config import GatewayConfig, config_from_data
from runmcp_fast.control import Overlay, compile_config
from runmcp_fast.router import Router
from runmcp_fast.snapshot import Snapshot, SpecCache, build_snapshot, config_version

SOURCE = "<bench>"


def no_pool(_upstream: object) -> None:
    return None


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def with_spec(data: dict[str, Any], spec: Path) -> dict[str, Any]:
    """`data` with the swapped service's spec replaced by `spec`."""
    services = [
        {**s, "openapi": str(spec)} if s["name"] == workload.SWAPPED else s
        for s in data["services"]
    ]
    return {**data, "services": services}


class Workload:
    def __init__(self, count: int, directory: Path) -> None:
        self.count = count
        self.directory = directory
        github = workload.github_spec()
        specs = workload.write_specs(directory / "specs", count)
        self.versions = workload.write_swap_versions(directory)
        self.data = workload.config_data(count, specs, github)

    def config(self, data: dict[str, Any] | None = None) -> GatewayConfig:
        return config_from_data(data or self.data, source=SOURCE, base_dir=str(self.directory))

    def spec_services(self, config: GatewayConfig) -> int:
        return sum(1 for s in config.services if s.openapi is not None)


def measure_builds(work: Workload, runs: int) -> dict[str, Any]:
    config_times = []
    for _ in range(runs):
        seconds, config = timed(work.config)
        config_times.append(seconds)

    cold = []
    snapshot: Snapshot | None = None
    for _ in range(runs):
        snapshot = None
        gc.collect()
        cache = SpecCache()
        seconds, snapshot = timed(lambda c=cache: build_snapshot(config, no_pool, SOURCE, c))  # type: ignore[misc]
        cold.append(seconds)
    assert snapshot is not None
    routes = snapshot.route_count
    # Router.compile() alone (Cython: it holds the GIL from start to end).
    compile_router = []
    for _ in range(runs):
        router = Router()
        for route in snapshot.router.routes():
            router.add(route.method, route.template, route.target, route.host)
        seconds, _ = timed(router.compile)
        compile_router.append(seconds)
    version_times = []
    for _ in range(runs):
        seconds, _ = timed(lambda: config_version(config))
        version_times.append(seconds)

    # Warm: start from a build with version 1 of the swapped service, as the
    # gateway does: collect, freeze, then one-service changes back and forth.
    one, two = (with_spec(work.data, v) for v in work.versions)
    configs = (work.config(two), work.config(one))
    cache = SpecCache()
    snapshot = build_snapshot(work.config(one), no_pool, SOURCE, cache)
    gc.collect()
    gc.freeze()
    warm, free = [], []
    for index in range(max(runs, 3) * 2):
        seconds, new = timed(lambda i=index: build_snapshot(configs[i % 2], no_pool, SOURCE, cache))  # type: ignore[misc]
        warm.append(seconds)
        start = time.perf_counter()
        snapshot = new  # the old one is freed here, as at the gateway's swap
        free.append(time.perf_counter() - start)
        gc.freeze()
    gc.unfreeze()

    base = work.config()
    overlay = Overlay(
        services={
            workload.SWAPPED: {
                "upstream": "http://127.0.0.1:9",
                "openapi": str(work.versions[0]),
                "base_path": f"/{workload.SWAPPED}",
            }
        }
    )
    compile_times = []
    for _ in range(runs):
        seconds, _merged = timed(lambda: compile_config(base, overlay, SOURCE, running=base))
        compile_times.append(seconds)
    return {
        "services": work.count,
        "spec_services": work.spec_services(config),
        "github_services": sum(1 for i in range(work.count) if i % workload.GITHUB_EVERY == 0),
        "routes": routes,
        "config_s": statistics.median(config_times),
        "cold_build_s": statistics.median(cold),
        "cold_build_all_s": cold,
        "warm_build_s": statistics.median(warm),
        "warm_build_all_s": warm,
        "free_old_snapshot_s": statistics.median(free),
        "free_old_snapshot_max_s": max(free),
        "compile_s": statistics.median(compile_times),
        "router_compile_s": statistics.median(compile_router),
        "config_version_s": statistics.median(version_times),
    }


class Probe:
    """A task that runs whenever the loop lets it: the gaps between its turns are
    the times the loop's thread could not run Python (another thread held the GIL,
    or the loop ran something long). Gaps above 0.2 ms are kept."""

    def __init__(self) -> None:
        self.gaps: list[tuple[float, float]] = []  # (end time, gap seconds)
        self.running = True

    async def run(self) -> None:
        last = time.perf_counter()
        while self.running:
            await asyncio.sleep(0)
            now = time.perf_counter()
            if now - last > 0.0002:
                self.gaps.append((now, now - last))
            last = now

    def between(self, start: float, end: float) -> list[float]:
        return [gap for t, gap in self.gaps if start <= t <= end + 0.001]


async def handoff_floor(seconds: float = 0.5) -> float:
    """The longest loop gap while a plain Python thread spins (switch interval 0.5 ms,
    as the build thread sets it): what any work on another thread costs the loop here,
    however often it offers the GIL back. On one CPU, the OS scheduler's time slice."""
    stop = threading.Event()

    def spin() -> None:
        previous = sys.getswitchinterval()
        sys.setswitchinterval(0.0005)
        try:
            count = 0
            while not stop.is_set():
                count += 1
        finally:
            sys.setswitchinterval(previous)

    thread = threading.Thread(target=spin)
    probe = Probe()
    task = asyncio.get_running_loop().create_task(probe.run())
    await asyncio.sleep(0.05)
    probe.gaps.clear()
    thread.start()
    await asyncio.sleep(seconds)
    stop.set()
    probe.running = False
    await task
    thread.join()
    return max((gap for _, gap in probe.gaps), default=0.0)


async def measure_gateway(work: Workload, swaps: int) -> dict[str, Any]:
    import uvloop  # noqa: F401 - the loop is uvloop's (see main)

    from runmcp_fast.gateway import Gateway

    gc.collect()
    gateway = Gateway(work.config(), source=SOURCE)
    begin = time.perf_counter()
    await gateway.start()
    start_s = time.perf_counter() - begin
    control = gateway.control
    on_thread: list[float] = []
    on_loop: list[float] = []
    freeing: list[float] = []
    build = control._build
    swap = control.swap

    def timed_build(base: Any, overlay: Any) -> Snapshot:
        begin = time.perf_counter()
        try:
            return build(base, overlay)
        finally:
            on_thread.append(time.perf_counter() - begin)

    def timed_swap(snapshot: Snapshot) -> None:
        old = control.snapshot
        begin = time.perf_counter()
        swap(snapshot)
        middle = time.perf_counter()
        del old  # the last reference: the old snapshot is freed here
        end = time.perf_counter()
        on_loop.append(middle - begin)
        freeing.append(end - middle)

    control._build = timed_build  # type: ignore[method-assign]
    control.swap = timed_swap  # type: ignore[method-assign]
    versions = work.versions
    wall = []
    frozen_before = gc.get_freeze_count()
    try:
        floor = await handoff_floor()
        for index in range(swaps):
            begin = time.perf_counter()
            await gateway.update_service(workload.SWAPPED, openapi=str(versions[index % 2]))
            wall.append(time.perf_counter() - begin)
        plain_thread = list(on_thread)
        # Again with the probe: the longest time the loop could not run a task.
        passes: list[tuple[float, int]] = []
        gc_start = [0.0]

        def on_gc(phase: str, info: dict[str, Any]) -> None:
            if phase == "start":
                gc_start[0] = time.perf_counter()
            elif info["generation"] > 0:
                passes.append((time.perf_counter() - gc_start[0], info["generation"]))

        gc.callbacks.append(on_gc)
        probe = Probe()
        task = asyncio.get_running_loop().create_task(probe.run())
        await asyncio.sleep(0.2)
        quiet = list(probe.gaps)
        probe.gaps.clear()
        worst, blocked, probed_wall = [], [], []
        for index in range(swaps):
            begin = time.perf_counter()
            await gateway.update_service(workload.SWAPPED, openapi=str(versions[index % 2]))
            end = time.perf_counter()
            probed_wall.append(end - begin)
            gaps = probe.between(begin, end)
            worst.append(max(gaps, default=0.0))
            blocked.append(sum(gaps))
        probe.running = False
        await task
        gc.callbacks.remove(on_gc)
        frozen_growth = (gc.get_freeze_count() - frozen_before) / (2 * swaps)
        routes = gateway.snapshot.route_count
    finally:
        await gateway.stop()
    return {
        "gateway_start_s": start_s,
        "swap_wall_s": statistics.median(wall),
        "swap_wall_all_s": wall,
        "swap_build_thread_s": statistics.median(plain_thread),
        "swap_on_loop_s": statistics.median(on_loop),
        "swap_on_loop_max_s": max(on_loop),
        "swap_free_old_s": statistics.median(freeing),
        "swap_free_old_max_s": max(freeing),
        "loop_quiet_max_gap_s": max((g for _, g in quiet), default=0.0),
        "loop_max_gap_s": max(worst),
        "loop_max_gap_all_s": worst,
        "loop_blocked_per_swap_s": statistics.median(blocked),
        "probed_swap_wall_s": statistics.median(probed_wall),
        "gateway_routes": routes,
        "gc_gen1_max_s": max((d for d, g in passes if g == 1), default=0.0),
        "gc_gen2_max_s": max((d for d, g in passes if g == 2), default=0.0),
        "gc_gen2_per_swap": sum(1 for _, g in passes if g == 2) / swaps,
        "frozen_objects_per_swap": frozen_growth,
        "handoff_floor_s": floor,
    }


def profile(work: Workload, top: int) -> str:
    """cProfile of a cold build, a warm one-service build and the config compile."""
    out = io.StringIO()
    config = work.config()
    base = config

    def show(title: str, fn: Callable[[], Any]) -> None:
        profiler = cProfile.Profile()
        begin = time.perf_counter()
        profiler.enable()
        fn()
        profiler.disable()
        seconds = time.perf_counter() - begin
        out.write(f"\n#### {title}: {seconds:.3f} s under cProfile, top {top} by own time\n\n")
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(top)

    cache = SpecCache()
    gc.collect()
    show("cold build", lambda: build_snapshot(config, no_pool, SOURCE, cache))
    changed = work.config(with_spec(work.data, work.versions[0]))
    gc.collect()
    gc.freeze()
    show(
        "warm build (one service changed, heap frozen)",
        lambda: build_snapshot(changed, no_pool, SOURCE, cache),
    )
    gc.unfreeze()
    overlay = Overlay(
        services={
            workload.SWAPPED: {
                "upstream": "http://127.0.0.1:9",
                "openapi": str(work.versions[1]),
                "base_path": f"/{workload.SWAPPED}",
            }
        }
    )
    show(
        "compile_config (merge + check)",
        lambda: compile_config(base, overlay, SOURCE, running=base),
    )
    # Shorten the paths: the interesting part is the module and function.
    return out.getvalue().replace(str(Path(sys.prefix).parent) + "/", "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, required=True)
    parser.add_argument("--runs", type=int, default=3, help="builds timed (medians)")
    parser.add_argument("--swaps", type=int, default=5, help="swaps through a gateway, twice")
    parser.add_argument("--skip-gateway", action="store_true", help="builds only")
    parser.add_argument("--profile", action="store_true", help="print cProfile tables instead")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--cpu", type=int, help="run on this CPU only (as a gateway worker)")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    if args.services < 2:
        parser.error("--services: at least 2 (service 1 is the one changed)")
    with tempfile.TemporaryDirectory(prefix="bench-reload-") as tmp:
        work = Workload(args.services, Path(tmp))
        if args.profile:
            print(profile(work, args.top))
            return 0
        result = measure_builds(work, args.runs)
        if not args.skip_gateway:
            import uvloop

            result.update(uvloop.run(measure_gateway(work, args.swaps)))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
