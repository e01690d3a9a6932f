"""Memory and time of one snapshot build with big specs, in this process.

The specs are parsed first (as `serve --workers N`'s parent does before it
forks), then one `build_snapshot`: its wall and CPU time, the RSS it added, and (with
--trace) tracemalloc's net and peak over the build and the top allocation sites.

    PYTHONPATH=. .venv/bin/python bench/cluster/snapshot_memory.py --specs graph [--trace 25]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import tracemalloc
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "tests"))

from public_specs import spec_path  # noqa: E402

from runmcp_fast.config import config_from_data  # noqa: E402
from runmcp_fast.snapshot import SpecCache, build_snapshot, iter_services  # noqa: E402

MiB = 1024 * 1024


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def uss() -> int:
    total = 0
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1]) * 1024
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--specs", default="graph")
    parser.add_argument("--trace", type=int, default=0, help="top N allocation sites")
    parser.add_argument("--trim", action="store_true", help="malloc_trim(0) after, and again")
    parser.add_argument("--group", default="lineno", help="lineno, filename or traceback")
    options = parser.parse_args()
    names = options.specs.split(",")
    data = {
        "listeners": [{"address": "127.0.0.1:0"}],
        "services": [
            {"name": n, "upstream": "http://127.0.0.1:9", "openapi": str(spec_path(n))}
            for n in names
        ],
    }
    config = config_from_data(data)
    cache = SpecCache()
    started = time.perf_counter()
    for _, _, service in iter_services(config):
        cache.load(service, config.base_dir)
    parsed = time.perf_counter() - started
    gc.collect()
    base_rss = rss()
    if options.trace:
        tracemalloc.start(25 if options.group == "traceback" else 1)
    started, cpu = time.perf_counter(), time.process_time()
    snapshot = build_snapshot(config, lambda _u: None, "<bench>", cache)
    took, cpu = time.perf_counter() - started, time.process_time() - cpu
    gc.collect()
    print(f"specs: {', '.join(names)}; pid {os.getpid()}")
    print(f"parse {parsed:.2f} s; rss after parse {base_rss / MiB:.0f} MiB")
    print(
        f"build {took:.2f} s ({cpu:.2f} s CPU); rss after build {rss() / MiB:.0f} MiB"
        f" (+{(rss() - base_rss) / MiB:.0f} MiB); uss {uss() / MiB:.0f} MiB"
    )
    if options.trace:
        current, peak = tracemalloc.get_traced_memory()
        print(f"tracemalloc: net {current / MiB:.0f} MiB, peak {peak / MiB:.0f} MiB")
        stats = tracemalloc.take_snapshot().statistics(options.group)
        for stat in stats[: options.trace]:
            print(f"  {stat.size / MiB:7.1f} MiB {stat.count:9d}  {stat.traceback}")
            if options.group == "traceback":
                for line in stat.traceback.format()[-16:]:
                    print("      ", line)
    if options.trim:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
        print(f"after malloc_trim: rss {rss() / MiB:.0f} MiB; uss {uss() / MiB:.0f} MiB")
    del snapshot


if __name__ == "__main__":
    main()
