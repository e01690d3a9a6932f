"""Live reload benchmark: what a snapshot build costs, and what a swap does to live traffic.

1. Build cost for 10, 100 and 1,000 services (build.py, a fresh process per size,
   pinned to one CPU like a gateway worker): cold and warm builds, the config
   check, and swaps through a running in-process Gateway with a probe that
   measures how long the event loop could not run.
2. Live traffic during swaps: nginx upstream and this process's load generator on
   one CPU, a gateway with 1,000 services (+ `/fixed`) on the other; a fixed rate
   of requests to `/fixed` for `--seconds` with no changes, then again while a
   client PUTs one service (alternating two spec files) through the admin API
   every `--interval`. Optionally the same with wrk (closed loop) for comparison.

Prints markdown tables; `--output` writes everything as JSON. See README.md.

    .venv/bin/python bench/reload/run.py [--sizes 10,100,1000] [--skip-latency]
        [--skip-builds] [--seconds 10] [--rate 2000] [--no-wrk] [--profile]
        [--output results.json]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import loadgen
import workload

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "load"))
import configs  # noqa: E402 - bench/load's helpers: nginx config, process control
import procs  # noqa: E402
import wrkrun  # noqa: E402

TARGET_MS = 5.0
NOISY = 0.15
UPSTREAM_OFFSET, GATEWAY_OFFSET, ADMIN_OFFSET = 0, 1, 2


# --- 1. build cost ------------------------------------------------------------------


def run_builds(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    for size in args.sizes:
        print(f"  build cost: {size} services ...", file=sys.stderr, flush=True)
        command = [
            sys.executable,
            str(HERE / "build.py"),
            "--services",
            str(size),
            "--runs",
            str(args.runs),
            "--swaps",
            str(args.swaps),
        ]
        if args.proxy_cpu >= 0:
            command += ["--cpu", str(args.proxy_cpu)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            raise SystemExit(f"build.py --services {size} failed:\n{done.stderr}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return results


def run_profile(args: argparse.Namespace) -> str:
    size = max(args.sizes)
    print(f"  cProfile: {size} services ...", file=sys.stderr, flush=True)
    done = subprocess.run(
        [sys.executable, str(HERE / "build.py"), "--services", str(size), "--profile"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"build.py --profile failed:\n{done.stderr}")
    return done.stdout


def ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    value = seconds * 1e3
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}" if value >= 1 else f"{value:.2f}"


def build_tables(results: list[dict[str, Any]]) -> str:
    lines = [
        "### Build cost (ms, medians)\n",
        "| services | GitHub specs | routes | config check | cold build | warm build"
        " | compile_config | Router.compile | config_version | free old snapshot |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines.extend(
        f"| {r['services']:,} | {r['github_services']} | {r['routes']:,} | {ms(r['config_s'])}"
        f" | {ms(r['cold_build_s'])} | {ms(r['warm_build_s'])} | {ms(r['compile_s'])}"
        f" | {ms(r['router_compile_s'])} | {ms(r['config_version_s'])}"
        f" | {ms(r['free_old_snapshot_s'])} |"
        for r in results
    )
    if any("swap_wall_s" in r for r in results):
        lines += [
            "",
            "### One-service change through a running Gateway (ms; uvloop, one CPU)\n",
            "| services | change, end to end | on the build thread | on the loop: swap()"
            " | on the loop: free old snapshot | longest loop gap | loop waiting per change"
            " | longest GC pass (gen 2) | GIL hand-off floor | frozen objects + per change |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in results:
            if "swap_wall_s" not in r:
                continue
            lines.append(
                f"| {r['services']:,} | {ms(r['swap_wall_s'])} | {ms(r['swap_build_thread_s'])}"
                f" | {ms(r['swap_on_loop_s'])} | {ms(r['swap_free_old_s'])}"
                f" (max {ms(r['swap_free_old_max_s'])}) | **{ms(r['loop_max_gap_s'])}**"
                f" | {ms(r['loop_blocked_per_swap_s'])} | {ms(r['gc_gen2_max_s'])}"
                f" | {ms(r['handoff_floor_s'])} | {r['frozen_objects_per_swap']:,.0f} |"
            )
    return "\n".join(lines)


BUILD_LEGEND = """\
- config check: `config_from_data` on the whole config. compile_config: the merge of
  the base config and the admin overlay + that check, as every change does it.
- cold build: `build_snapshot` with an empty SpecCache (every spec read and loaded).
  warm build: one service changed its spec file, the rest from the SpecCache, with
  the heap frozen as the gateway keeps it (`gc.freeze()` after each swap).
- Router.compile: the Cython compile step alone; config_version: the digest every
  Snapshot computes; both inside the build, holding the GIL from start to end.
- free old snapshot: dropping the last reference to the replaced snapshot; the gateway
  does it on the event loop, inside `ControlPlane.swap`.
- change, end to end: `await gateway.update_service(...)` (merge, build on the worker
  thread, swap). On the loop: `ControlPlane.swap` and freeing the old snapshot.
- longest loop gap: a task that yields (`await asyncio.sleep(0)`) in a loop measures
  the gaps between its turns during a change; the longest over all changes is the
  longest time the event loop could not run any Python code (build thread holding
  the GIL, a GC pass, the swap itself). "loop waiting per change": the sum of the gaps
  above 0.2 ms during one change (median). The probe competes with the build for the
  GIL, as a loaded gateway's loop does.
- longest GC pass: the longest generation-2 cycle-GC pass during those changes (on the
  build thread: the loop waits for it, a GC pass never lets go of the GIL).
- GIL hand-off floor: the same probe while a plain Python thread spins with the build's
  0.5 ms switch interval: what any other thread costs the loop on this machine, however
  often it offers the GIL back (on one CPU: the OS scheduler's time slice).
- frozen objects + per change: growth of `gc.get_freeze_count()` per change. Objects
  frozen by `ControlPlane.swap`'s `gc.freeze()` are never collected: a steady growth
  is memory that stays (garbage frozen before the cycle GC saw it)."""


# --- 2. live traffic -------------------------------------------------------------------


class Live:
    """The servers of the latency run, and what is needed to drive them."""

    def __init__(self, args: argparse.Namespace, scratch: Path) -> None:
        self.args = args
        self.scratch = scratch
        base = args.base_port
        self.up_port = base + UPSTREAM_OFFSET
        self.port = base + GATEWAY_OFFSET
        self.admin_port = base + ADMIN_OFFSET
        self.token = secrets.token_hex(16)
        self.upstream = f"http://127.0.0.1:{self.up_port}"
        self.versions = workload.write_swap_versions(scratch)
        self.stats_path = scratch / "gateway-stats.json"
        self.gateway: procs.Server | None = None

    def write_config(self) -> Path:
        count = self.args.latency_services
        github = workload.github_spec()
        specs = workload.write_specs(self.scratch / "specs", count)
        data = workload.config_data(
            count,
            specs,
            github,
            upstream=self.upstream,
            listen=f"127.0.0.1:{self.port}",
            admin={
                "address": f"127.0.0.1:{self.admin_port}",
                "token": self.token,
                "state_file": "state.json",
            },
        )
        path = self.scratch / "gateway.json"
        path.write_text(json.dumps(data))
        return path

    def start(self, servers: list[procs.Server]) -> None:
        args = self.args
        upstream = procs.start(
            "upstream-nginx",
            configs.upstream_nginx(self.scratch, self.up_port),
            self.up_port,
            cpu=args.client_cpu,
            log_dir=self.scratch,
        )
        servers.append(upstream)
        config = self.write_config()
        argv = [
            sys.executable,
            str(HERE / "gateway_proc.py"),
            "--config",
            str(config),
            "--stats",
            str(self.stats_path),
        ]
        started = time.perf_counter()
        self.gateway = procs.start(
            "gateway", argv, self.port, cpu=args.proxy_cpu, log_dir=self.scratch, ready_timeout=300
        )
        servers.append(self.gateway)
        print(
            f"  gateway with {args.latency_services:,} services up in "
            f"{time.perf_counter() - started:.1f} s (pid {self.gateway.pid})",
            file=sys.stderr,
            flush=True,
        )

    def swapper(self, seconds: float) -> subprocess.Popen[str]:
        command = [
            sys.executable,
            str(HERE / "swapper.py"),
            "--admin",
            f"127.0.0.1:{self.admin_port}",
            "--token",
            self.token,
            "--name",
            workload.SWAPPED,
            "--upstream",
            self.upstream,
            "--seconds",
            f"{seconds}",
            "--interval",
            f"{self.args.interval}",
            "--delay",
            "0.3",
        ]
        for spec in self.versions:
            command += ["--spec", str(spec)]
        if self.args.client_cpu >= 0:
            command = ["taskset", "-c", str(self.args.client_cpu), *command]
        return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)

    def wait_quiet(self) -> float:
        if self.args.quiet_wait <= 0:
            return 0.0
        cpus = (self.args.client_cpu, self.args.proxy_cpu)
        share: float = procs.wait_quiet(cpus, limit=NOISY, timeout=self.args.quiet_wait)
        return share

    def rss_kb(self) -> int:
        assert self.gateway is not None
        kb: int = procs.rss_kb(self.gateway.pid)
        return kb

    def cpu_sample(self) -> tuple[float, dict[int, float], float]:
        assert self.gateway is not None
        cpus = (self.args.client_cpu, self.args.proxy_cpu)
        return (
            time.perf_counter(),
            procs.cpu_busy_seconds(cpus),
            procs.tree_cpu_seconds(self.gateway.pid),
        )

    def cpu_use(self, before: tuple[float, dict[int, float], float]) -> dict[str, float]:
        after = self.cpu_sample()
        wall = after[0] - before[0]
        out = {f"cpu{c}_busy": (after[1][c] - before[1][c]) / wall for c in before[1]}
        out["gateway_cpu"] = (after[2] - before[2]) / wall
        return out


def phase_summary(result: loadgen.Result) -> dict[str, Any]:
    lat = sorted(result.latencies())
    late = sorted(result.late)
    return {
        "requests": len(lat),
        "failed": result.failed,
        "unanswered": result.unanswered,
        "lost_connections": result.lost_connections,
        "statuses": result.statuses,
        "p50_ms": loadgen.percentile(lat, 50) * 1e3,
        "p99_ms": loadgen.percentile(lat, 99) * 1e3,
        "p999_ms": loadgen.percentile(lat, 99.9) * 1e3,
        "max_ms": (lat[-1] if lat else float("nan")) * 1e3,
        "generator_late_p99_ms": loadgen.percentile(late, 99) * 1e3,
        "generator_late_max_ms": (late[-1] if late else float("nan")) * 1e3,
    }


async def fixed_rate_phases(live: Live, swap_seconds: float) -> dict[str, Any]:
    args = live.args
    gen = loadgen.Generator("127.0.0.1", live.port, "/fixed/ping", args.connections)
    await gen.connect()
    try:
        await gen.run(args.rate, args.warmup, record=False)
        phases: dict[str, Any] = {}
        for name in ("quiet", "swapping"):
            share = await asyncio.to_thread(live.wait_quiet)
            print(f"  fixed rate, {name} ...", file=sys.stderr, flush=True)
            swapper = live.swapper(swap_seconds) if name == "swapping" else None
            before = live.cpu_sample()
            result = await gen.run(args.rate, args.seconds)
            cpu = live.cpu_use(before)
            changes = None
            if swapper is not None:
                out, _ = await asyncio.to_thread(swapper.communicate, timeout=120)
                changes = json.loads(out)["changes"]
            phases[name] = {
                "result": result,
                "changes": changes,
                "cpu": cpu,
                "busy_before": share,
                "window": (before[0], time.perf_counter()),
                "rss_kb": live.rss_kb(),
            }
        return phases
    finally:
        gen.close()


WRK_SCRIPT = """\
-- Paced closed loop: each connection waits `delay` ms after each answer.
function delay()
   return {delay}
end
function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'JSON {{"requests":%d,"p50":%d,"p99":%d,"p999":%d,"max":%d,"errors":%d,"status":%d}}\\n',
      summary.requests, latency:percentile(50), latency:percentile(99),
      latency:percentile(99.9), latency.max, e.connect + e.read + e.write + e.timeout,
      e.status))
end
"""


def wrk_phases(live: Live, swap_seconds: float) -> dict[str, Any]:
    args = live.args
    connections = args.wrk_connections
    delay = max(1, round(connections / args.rate * 1e3))
    script = live.scratch / "paced.lua"
    script.write_text(WRK_SCRIPT.format(delay=delay))
    url = f"http://127.0.0.1:{live.port}/fixed/ping"
    phases: dict[str, Any] = {}
    for name in ("quiet", "swapping"):
        live.wait_quiet()
        print(f"  wrk, {name} ...", file=sys.stderr, flush=True)
        swapper = live.swapper(swap_seconds) if name == "swapping" else None
        result = wrkrun.run(
            url,
            connections=connections,
            seconds=int(args.seconds),
            script=script,
            cpu=args.client_cpu,
        )
        changes = None
        if swapper is not None:
            out, _ = swapper.communicate(timeout=120)
            changes = json.loads(out)["changes"]
        line = next(x for x in result.output.splitlines() if x.startswith("JSON "))
        data = json.loads(line[5:])
        phases[name] = {
            "requests": data["requests"],
            "failed": data["errors"] + data["status"],
            "p50_ms": data["p50"] / 1e3,
            "p99_ms": data["p99"] / 1e3,
            "p999_ms": data["p999"] / 1e3,
            "max_ms": data["max"] / 1e3,
            "rps": result.rps,
            "delay_ms": delay,
            "connections": connections,
            "changes": changes,
        }
    return phases


def run_latency(args: argparse.Namespace) -> dict[str, Any]:
    procs.ensure_installed(["nginx", "taskset", "wrk"])
    procs.raise_nofile_limit()
    busy = [
        p
        for p in (args.base_port + o for o in (UPSTREAM_OFFSET, GATEWAY_OFFSET, ADMIN_OFFSET))
        if not procs.port_is_free(p)
    ]
    if busy:
        raise SystemExit(f"ports in use: {busy}; pick another --base-port")
    import uvloop

    swap_seconds = max(1.0, args.seconds - 1.0)
    affinity = os.sched_getaffinity(0)
    with (
        tempfile.TemporaryDirectory(prefix="bench-reload-") as tmp,
        procs.running() as servers,
    ):
        live = Live(args, Path(tmp))
        live.start(servers)
        assert live.gateway is not None
        check = _check(live.port)
        if check is not None:
            raise SystemExit(f"the gateway does not answer /fixed: {check}")
        if args.client_cpu >= 0:
            os.sched_setaffinity(0, {args.client_cpu})
        try:
            rss = {"start": live.rss_kb()}
            fixed = uvloop.run(fixed_rate_phases(live, swap_seconds))
            rss["after no changes"] = fixed["quiet"]["rss_kb"]
            rss["after changes"] = fixed["swapping"]["rss_kb"]
            wrk = wrk_phases(live, swap_seconds) if args.wrk else None
            if wrk is not None:
                rss["after wrk"] = live.rss_kb()
        finally:
            os.sched_setaffinity(0, affinity)
            procs.stop(live.gateway)
            servers.remove(live.gateway)
        stats = json.loads(live.stats_path.read_text())
    return analyse(args, fixed, wrk, stats, rss)


def _check(port: int) -> str | None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/fixed/ping")
        answer = conn.getresponse()
        body = answer.read()
    except OSError as exc:
        return str(exc)
    finally:
        conn.close()
    return None if answer.status == 200 else f"{answer.status}: {body[:200]!r}"


def _overlaps(
    windows: list[tuple[float, float]], starts: list[float], start: float, end: float
) -> bool:
    """Whether [start, end] overlaps any of `windows` (sorted by start; `starts` their starts)."""
    index = bisect.bisect_right(starts, end)
    return any(w_end >= start for _, w_end in windows[max(0, index - 3) : index])


def analyse(
    args: argparse.Namespace,
    fixed: dict[str, Any],
    wrk: dict[str, Any] | None,
    stats: dict[str, Any],
    rss: dict[str, int],
) -> dict[str, Any]:
    quiet = fixed["quiet"]["result"]
    swapping = fixed["swapping"]["result"]
    summary = {name: phase_summary(fixed[name]["result"]) for name in ("quiet", "swapping")}
    baseline = summary["quiet"]["p50_ms"]
    threshold = (baseline + TARGET_MS) / 1e3
    all_swaps = len(stats["swaps"])
    frozen_growth = (stats["frozen_at_end"] - stats["frozen_at_start"]) / max(1, all_swaps)
    # The changes made during the fixed-rate phase with changes (wrk's come later).
    w_start, w_end = fixed["swapping"]["window"]
    stats = {
        **stats,
        "builds": [b for b in stats["builds"] if w_start <= b[0] <= w_end],
        "swaps": [s for s in stats["swaps"] if w_start <= s["start"] <= w_end + 5],
        "stalls": [s for s in stats["stalls"] if w_start <= s[0] <= w_end],
        "gcs": [g for g in stats["gcs"] if w_start <= g[0] <= w_end],
    }
    builds = sorted((b[0], b[1]) for b in stats["builds"])
    build_starts = [b[0] for b in builds]
    loop_windows = sorted((s["start"], s["freed"]) for s in stats["swaps"])
    loop_starts = [w[0] for w in loop_windows]
    gen2 = sorted((g[0], g[1]) for g in stats["gcs"] if g[2] == 2)
    gen2_starts = [g[0] for g in gen2]

    def slow(result: loadgen.Result) -> dict[str, Any]:
        found = {"count": 0, "during_build": 0, "during_loop_swap": 0, "during_gen2_gc": 0}
        for issued, done in zip(result.issued, result.done, strict=True):
            if done - issued <= threshold:
                continue
            found["count"] += 1
            found["during_build"] += _overlaps(builds, build_starts, issued, done)
            found["during_loop_swap"] += _overlaps(loop_windows, loop_starts, issued, done)
            found["during_gen2_gc"] += _overlaps(gen2, gen2_starts, issued, done)
        return found

    # Per change: the slowest request that was in flight while it was built or swapped.
    per_change = []
    lat_done = list(swapping.done)
    lat_issued = list(swapping.issued)
    order = sorted(range(len(lat_issued)), key=lambda i: lat_issued[i])
    issued_sorted = [lat_issued[i] for i in order]
    swaps = sorted(stats["swaps"], key=lambda s: s["start"])
    # A build that was refused has no swap: pair each swap with the build that ended before it.
    for swap in swaps:
        b_start, b_end = max((b for b in builds if b[1] <= swap["start"]), default=(0.0, 0.0))
        end = max(b_end, swap["freed"])
        lo = bisect.bisect_left(issued_sorted, b_start - 1.0)
        hi = bisect.bisect_right(issued_sorted, end)
        worst = max(
            (
                lat_done[order[k]] - lat_issued[order[k]]
                for k in range(lo, hi)
                if lat_done[order[k]] >= b_start
            ),
            default=float("nan"),
        )
        per_change.append(
            {
                "build_ms": (b_end - b_start) * 1e3,
                "swap_on_loop_ms": (swap["swapped"] - swap["start"]) * 1e3,
                "free_old_ms": (swap["freed"] - swap["swapped"]) * 1e3,
                "worst_request_ms": worst * 1e3,
                "routes": swap["routes"],
            }
        )
    changes = fixed["swapping"]["changes"] or []
    ok = [c for c in changes if c["status"] in (200, 201)]
    added = summary["swapping"]["max_ms"] - baseline
    return {
        "services": args.latency_services,
        "rate": args.rate,
        "connections": args.connections,
        "seconds": args.seconds,
        "interval_s": args.interval,
        "fixed_rate": summary,
        "cpu": {name: fixed[name]["cpu"] for name in ("quiet", "swapping")},
        "changes": {
            "done": len(ok),
            "refused": len(changes) - len(ok),
            "refusals": [c for c in changes if c["status"] not in (200, 201)][:3],
            "median_ms": statistics.median([(c["end"] - c["start"]) * 1e3 for c in ok])
            if ok
            else None,
            "gateway_swaps": len(stats["swaps"]),
            "rss_growth_kb_per_change": (rss["after changes"] - rss["after no changes"])
            / max(1, len(ok)),
        },
        "per_change": per_change,
        "slow": {
            "threshold_ms": threshold * 1e3,
            "quiet": slow(quiet),
            "swapping": slow(swapping),
        },
        "gateway": {
            "startup_s": stats["startup_s"],
            "loop_stalls_over_2ms": len(stats["stalls"]),
            "longest_loop_stall_ms": max((s[1] + 0.001 for s in stats["stalls"]), default=0) * 1e3,
            "gen2_gc_passes": len(gen2),
            "longest_gen2_gc_ms": max((e - s for s, e in gen2), default=0) * 1e3,
            "gen2_gc_on_loop": sum(1 for g in stats["gcs"] if g[2] == 2 and g[3]),
            "rss_kb": rss,
            "changes_total": all_swaps,
            "frozen_objects_per_change": frozen_growth,
        },
        "target": {
            "ms": TARGET_MS,
            "added_ms": added,
            "met": added <= TARGET_MS
            and summary["swapping"]["failed"] == 0
            and summary["swapping"]["unanswered"] == 0,
        },
        "wrk": wrk,
    }


def latency_tables(r: dict[str, Any]) -> str:
    fixed = r["fixed_rate"]
    q, s = fixed["quiet"], fixed["swapping"]
    changes = r["changes"]
    lines = [
        f"### Live traffic: {r['services']:,} services + `/fixed`, {r['rate']:,.0f} req/s"
        f" fixed rate over {r['connections']} connections, {r['seconds']:g} s per phase\n",
        "| phase | requests | failed | p50 ms | p99 ms | p99.9 ms | max ms | changes | gateway CPU |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row, done in (("no changes", q, "0"), ("changes", s, f"{changes['done']}")):
        key = "quiet" if name == "no changes" else "swapping"
        lines.append(
            f"| {name} | {row['requests']:,} | {row['failed'] + row['unanswered']}"
            f" | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['p999_ms']:.2f}"
            f" | {row['max_ms']:.2f} | {done} | {r['cpu'][key]['gateway_cpu']:.0%} |"
        )
    lines.append(
        f"| difference | | | {s['p50_ms'] - q['p50_ms']:+.2f} | {s['p99_ms'] - q['p99_ms']:+.2f}"
        f" | {s['p999_ms'] - q['p999_ms']:+.2f} | {s['max_ms'] - q['max_ms']:+.2f} | | |"
    )
    wrk = r.get("wrk")
    if wrk:
        lines += [
            "",
            f"wrk, closed loop for comparison ({wrk['quiet']['connections']} connections,"
            f" each pausing {wrk['quiet']['delay_ms']} ms after an answer):\n",
            "| phase | requests | failed | p50 ms | p99 ms | p99.9 ms | max ms | changes |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, key in (("no changes", "quiet"), ("changes", "swapping")):
            row = wrk[key]
            applied = sum(1 for c in row["changes"] or [] if c["status"] in (200, 201))
            lines.append(
                f"| {name} | {row['requests']:,} | {row['failed']} | {row['p50_ms']:.2f}"
                f" | {row['p99_ms']:.2f} | {row['p999_ms']:.2f} | {row['max_ms']:.2f}"
                f" | {applied} |"
            )
    slow = r["slow"]
    gw = r["gateway"]

    def busy(phase: str) -> str:
        return ", ".join(
            f"{value:.0%}" for key, value in r["cpu"][phase].items() if key != "gateway_cpu"
        )

    med = changes["median_ms"]
    lines += [
        "",
        f"- changes: {changes['done']} applied, {changes['refused']} refused; a PUT took"
        f" {med:,.0f} ms (median) from request to answer (answered after the swap)"
        + (
            f", longer than the {r['interval_s'] * 1e3:.0f} ms interval: they ran back to back"
            if med > r["interval_s"] * 1e3
            else f", one every {r['interval_s'] * 1e3:.0f} ms"
        )
        if med is not None
        else "- no change was applied",
        f"- requests slower than p50(no changes) + {TARGET_MS:g} ms ="
        f" {slow['threshold_ms']:.2f} ms: {slow['quiet']['count']} with no changes,"
        f" {slow['swapping']['count']} with changes; of those, in flight during a build:"
        f" {slow['swapping']['during_build']}, during a swap/free on the loop:"
        f" {slow['swapping']['during_loop_swap']}, during a generation-2 GC pass:"
        f" {slow['swapping']['during_gen2_gc']}",
        f"- the gateway's own loop watch (a 1 ms timer): {gw['loop_stalls_over_2ms']} stalls"
        f" over 2 ms, the longest {gw['longest_loop_stall_ms']:.1f} ms; generation-2 GC"
        f" passes: {gw['gen2_gc_passes']} (longest {gw['longest_gen2_gc_ms']:.1f} ms,"
        f" {gw['gen2_gc_on_loop']} on the loop's thread) during the phase with changes",
        "- gateway RSS: "
        + ", ".join(f"{k} {v / 1024:,.0f} MB" for k, v in gw["rss_kb"].items())
        + f" ({changes['rss_growth_kb_per_change'] / 1024:+.1f} MB per change in the phase"
        f" with changes); objects frozen for good: {gw['frozen_objects_per_change']:+,.0f} per"
        f" change over all {gw['changes_total']} changes",
        "- CPUs busy (every process; upstream + generator, gateway), no changes:"
        f" {busy('quiet')}; changes: {busy('swapping')}",
        f"- generator: p99 lateness {q['generator_late_p99_ms']:.2f} / {s['generator_late_p99_ms']:.2f}"
        " ms (not counted in the latencies)",
    ]
    if r["per_change"]:
        lines += [
            "",
            "Each change (gateway's clock): build on the worker thread, swap and free on the"
            " loop, and the slowest request in flight meanwhile:\n",
            "| # | build ms | swap() ms | free old ms | slowest request ms |",
            "| ---: | ---: | ---: | ---: | ---: |",
        ]
        for index, c in enumerate(r["per_change"], 1):
            lines.append(
                f"| {index} | {c['build_ms']:,.0f} | {c['swap_on_loop_ms']:.2f}"
                f" | {c['free_old_ms']:.1f} | {c['worst_request_ms']:.2f} |"
            )
    t = r["target"]
    verdict = "met" if t["met"] else "NOT met"
    lines += [
        "",
        f"**Target: a swap of a {r['services']:,}-service table adds at most {t['ms']:g} ms to"
        f" any request's latency** (max with changes - p50 without, failures 0):"
        f" {t['added_ms']:+.2f} ms → **{verdict}**",
    ]
    return "\n".join(lines)


# --- main ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000", help="services per build measured")
    parser.add_argument("--runs", type=int, default=3, help="builds per median")
    parser.add_argument("--swaps", type=int, default=5, help="changes through a Gateway per size")
    parser.add_argument("--skip-builds", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--profile", action="store_true", help="cProfile of the largest size")
    parser.add_argument("--latency-services", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0, help="per latency phase")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rate", type=float, default=2000.0, help="requests per second")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--interval", type=float, default=0.2, help="between changes, s")
    parser.add_argument("--wrk", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--wrk-connections", type=int, default=16)
    parser.add_argument("--base-port", type=int, default=28181)
    parser.add_argument("--client-cpu", type=int, default=0, help="upstream + load generator")
    parser.add_argument("--proxy-cpu", type=int, default=1, help="the gateway (-1: unpinned)")
    parser.add_argument("--quiet-wait", type=float, default=5.0)
    parser.add_argument("--output", type=Path, help="write the results here as JSON")
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if any(s < 2 for s in args.sizes) or args.latency_services < 2:
        parser.error("at least 2 services (service 1 is the one changed)")
    if not args.skip_latency:
        cpus = os.sched_getaffinity(0)
        if not {args.client_cpu, args.proxy_cpu} <= cpus or args.client_cpu == args.proxy_cpu:
            parser.error(f"need two distinct CPUs; this process may use {sorted(cpus)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    began = time.perf_counter()
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    print(
        f"# Reload benchmark: every {workload.GITHUB_EVERY}th service serves GitHub's spec"
        " (845 operations), the others 5-20 generated operations\n"
    )
    if not args.skip_builds:
        builds = run_builds(args)
        results["builds"] = builds
        print(build_tables(builds) + "\n\n" + BUILD_LEGEND + "\n", flush=True)
    if args.profile:
        text = run_profile(args)
        results["profile"] = text
        print(f"### cProfile, {max(args.sizes):,} services\n\n```{text}```\n", flush=True)
    if not args.skip_latency:
        latency = run_latency(args)
        results["latency"] = latency
        print(latency_tables(latency), flush=True)
    results["seconds"] = time.perf_counter() - began
    print(f"\n(total {results['seconds']:.0f} s)", file=sys.stderr)
    if args.output:
        args.output.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
