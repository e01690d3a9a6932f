"""Soak: a gateway process under a mixed load and live config changes for a long while.

For `--duration` seconds (600) at `--connections` (512) connections: GET and POST
with JSON bodies (wrk with mix.lua, or Python clients with `--load python`), whole
SSE streams, and MCP sessions (initialize, tools/call, DELETE) through the MCP proxy
and through an OpenAPI service's generated MCP endpoint, while the admin API adds,
replaces and deletes a service and changes a plugin's config every
`--change-interval` seconds. Prints the gateway's RSS (per process) and descriptors
before, during and after, every failure by kind, what was done by kind, the changes
applied and the issue's targets (met / NOT met, never asserted). The last line is
`SOAK-RESULT {json}`; `--json FILE` writes the same. See README.md.

    .venv/bin/python bench/soak/run.py                          # 10 min, 512 connections
    .venv/bin/python bench/soak/run.py --duration 60 --connections 128
    .venv/bin/python bench/soak/run.py --duration 3 --connections 12 --load python
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import clients
import stack
import watch
from changes import Changer

sys.path.insert(0, str(stack.HERE.parent / "load"))
import procs
import wrkrun

RSS_TARGET = 5.0  # % growth under load, first sample to last


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds measured")
    parser.add_argument("--connections", type=int, default=512, help="all clients together")
    parser.add_argument("--sse", type=int, default=16, help="of them: SSE clients")
    parser.add_argument("--mcp", type=int, default=16, help="of them: MCP clients (half each)")
    parser.add_argument("--mcp-calls", type=int, default=4, help="tools/call per MCP session")
    parser.add_argument("--events", type=int, default=5, help="events per SSE stream")
    parser.add_argument(
        "--load", choices=("auto", "wrk", "python"), default="auto", help="GET/POST generator"
    )
    parser.add_argument("--warmup", type=float, help="seconds of load before the baseline")
    parser.add_argument(
        "--change-interval", type=float, default=3.0, help="s between changes (0: none)"
    )
    parser.add_argument("--sample-interval", type=float, help="s between RSS samples")
    parser.add_argument("--settle", type=float, default=30.0, help="max s for fds to come back")
    parser.add_argument(
        "--pool-idle", type=float, default=2.0, help="the gateway's pool idle_timeout (s)"
    )
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the result here too")
    parser.add_argument("--logs", type=Path, help="keep configs and server logs here")
    args = parser.parse_args(argv)
    if args.warmup is None:
        args.warmup = min(30.0, max(1.0, args.duration / 10))
    if args.sample_interval is None:
        args.sample_interval = min(30.0, max(0.5, args.duration / 10))
    if args.load == "auto":
        args.load = "wrk" if shutil.which("wrk") and shutil.which("nginx") else "python"
    args.http = args.connections - args.sse - args.mcp
    if args.http < 1 or args.mcp < 0 or args.sse < 0:
        parser.error("--connections must leave >= 1 for GET/POST after --sse and --mcp")
    return args


class Soak:
    def __init__(self, args: argparse.Namespace, scratch: Path) -> None:
        self.args = args
        self.scratch = scratch
        self.ports = stack.pick_ports(args.load == "wrk")
        self.token = stack.new_token()
        self.base = f"http://127.0.0.1:{self.ports.gateway}"
        self.watch_ports = watch.Ports(
            own=frozenset({self.ports.gateway, self.ports.admin}),
            upstream=frozenset(p for p in (self.ports.aiohttp, self.ports.nginx) if p),
        )
        self.gateway: procs.Server | None = None
        self.tally = clients.Tally()
        self.wrk: dict[str, Any] = {}
        self.samples: list[watch.Sample] = []
        self.churn = 0  # churn-K services used so far (each phase starts past them)

    # --- servers -----------------------------------------------------------------

    def start(self, servers: list[procs.Server]) -> None:
        """The upstreams and the gateway, started side by side (each waited for until
        its port accepts)."""
        args, ports = self.args, self.ports
        config = stack.gateway_config(self.scratch, ports, self.token, args.pool_idle)
        wanted = [
            ("upstream", stack.aiohttp_command(ports.aiohttp, args.events), ports.aiohttp),
            ("gateway", stack.gateway_command(config, args.workers), ports.gateway),
        ]
        if ports.nginx is not None:
            wanted.append(("nginx", stack.nginx_command(self.scratch, ports.nginx), ports.nginx))
        with ThreadPoolExecutor(len(wanted)) as pool:
            futures = [
                pool.submit(procs.start, name, argv, port, cpu=None, log_dir=self.scratch)
                for name, argv, port in wanted
            ]
            failure: BaseException | None = None
            for future in futures:
                try:
                    servers.append(future.result())
                except BaseException as exc:  # the others are stopped on the way out
                    failure = failure or exc
            if failure is not None:
                raise failure
        self.gateway = next(s for s in servers if s.name == "gateway")

    def pids(self) -> list[int]:
        """The gateway's processes; with --workers > 1 the parent and its workers."""
        assert self.gateway is not None
        return procs.tree_pids(self.gateway.pid)

    def sample(self, at: float) -> watch.Sample:
        return watch.sample(self.pids(), self.watch_ports, at)

    # --- load ----------------------------------------------------------------------

    async def phase(self, seconds: float, *, measure: bool) -> None:
        """All the load for `seconds`; then every client finishes what it began."""
        args = self.args
        stop = asyncio.Event()
        python_clients = args.sse + args.mcp + (args.http if args.load == "python" else 0)
        connector = aiohttp.TCPConnector(limit=python_clients + 4, force_close=False)
        async with aiohttp.ClientSession(connector=connector, timeout=clients.TIMEOUT) as session:
            tally = self.tally if measure else clients.Tally()
            tasks = [
                asyncio.create_task(
                    clients.sse_client(session, self.base, args.events, tally, stop)
                )
                for _ in range(args.sse)
            ]
            tasks += [
                asyncio.create_task(
                    clients.mcp_client(
                        session,
                        self.base,
                        "proxy" if n % 2 else "endpoint",
                        args.mcp_calls,
                        tally,
                        stop,
                    )
                )
                for n in range(args.mcp)
            ]
            if args.load == "python":
                tasks += [
                    asyncio.create_task(clients.http_client(session, self.base, tally, stop))
                    for _ in range(args.http)
                ]
            async with aiohttp.ClientSession(timeout=clients.TIMEOUT) as admin_session:
                changer = Changer(
                    admin_session,
                    f"http://127.0.0.1:{self.ports.admin}",
                    self.token,
                    self.base,
                    self.ports.api_upstream,
                    tally,
                )
                if args.change_interval > 0:
                    tasks.append(
                        asyncio.create_task(
                            changer.run(args.change_interval, stop, first=self.churn)
                        )
                    )
                wrk = (
                    asyncio.create_task(self.run_wrk(seconds, args.http))
                    if args.load == "wrk"
                    else None
                )
                sampler = asyncio.create_task(self.sampler(seconds)) if measure else None
                await asyncio.sleep(seconds)
                if sampler is not None:
                    await sampler
                stop.set()
                if wrk is not None:
                    result = await wrk
                    if measure:
                        self.wrk = result
                        for key, count in result["answers"].items():
                            kind, status = key.split()
                            if status.startswith("2") and kind != "?":
                                tally.done[kind] += count
                            else:
                                tally.failed[f"{kind} (wrk): status {status}"] += count
                        for error, count in result["socket_errors"].items():
                            if count:
                                tally.failed[f"GET/POST (wrk): socket {error}"] += count
                await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
                self.churn += changer_count(seconds, args.change_interval) + 1

    async def sampler(self, seconds: float) -> None:
        """RSS and descriptors at the start of the run, every --sample-interval, at its end."""
        start = time.monotonic()
        await asyncio.sleep(min(2.0, seconds / 10))
        while True:
            at = time.monotonic() - start
            self.samples.append(self.sample(at))
            print(f"  {_sample_line(self.samples[-1])}", file=sys.stderr, flush=True)
            left = seconds - (time.monotonic() - start)
            if left <= 0.5:
                return
            await asyncio.sleep(min(self.args.sample_interval, left - 0.3))

    async def run_wrk(self, seconds: float, connections: int) -> dict[str, Any]:
        command = [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "--timeout",
            wrkrun.WRK_TIMEOUT,
            "-s",
            str(stack.HERE / "mix.lua"),
            self.base,
        ]
        proc = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=seconds + 120)
        if proc.returncode != 0:
            raise RuntimeError(f"wrk failed ({proc.returncode}): {err.decode()}")
        return parse_wrk(out.decode())

    async def settle(self, baseline: watch.Sample | None) -> tuple[watch.Sample, float]:
        """Wait (up to --settle s) until the gateway holds no client connection, no idle
        upstream connection (the pool's idle_timeout) and, given a baseline, no more
        descriptors than it; the last sample and how long it took."""
        start = time.monotonic()
        while True:
            now = self.sample(0.0)
            kinds = now.fds_by_kind()
            waited = time.monotonic() - start
            quiet = kinds["client"] == 0 and kinds["upstream"] == 0
            if baseline is not None:
                quiet = quiet and now.total_fds <= baseline.total_fds
            if quiet or waited >= self.args.settle:
                now.at = waited
                return now, waited
            await asyncio.sleep(0.25)


def changer_count(seconds: float, interval: float) -> int:
    return int(seconds / interval) // 4 + 1 if interval > 0 else 0


def parse_wrk(output: str) -> dict[str, Any]:
    parsed = wrkrun.parse(output)
    answers: Counter[str] = Counter()
    sent: Counter[str] = Counter()
    for line in output.splitlines():
        parts = line.split()
        if parts[:1] == ["SOAK"] and len(parts) == 4:
            answers[f"{parts[1]} {parts[2]}"] += int(parts[3])
        elif parts[:1] == ["SOAK-SENT"] and len(parts) == 3:
            sent[parts[1]] += int(parts[2])
    return {
        "requests": parsed.requests,
        "seconds": parsed.seconds,
        "rps": parsed.rps,
        "p50_ms": parsed.p50_ms,
        "p99_ms": parsed.p99_ms,
        "non_2xx": parsed.non_2xx,
        "socket_errors": parsed.errors,
        "answers": dict(answers),
        "sent": dict(sent),
    }


def _sample_line(s: watch.Sample) -> str:
    per = ", ".join(f"{pid}: {kb / 1024:.1f}" for pid, kb in s.rss_kb.items())
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(s.fds_by_kind().items()))
    return (
        f"t={s.at:6.1f}s  RSS {s.total_rss_kb / 1024:7.1f} MB ({per})  fds {s.total_fds} ({kinds})"
    )


def growth(first: int, last: int) -> float:
    return (last - first) / first * 100 if first else 0.0


async def soak(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    run = Soak(args, scratch)
    with procs.running() as servers:
        run.start(servers)
        print(
            f"soak: {args.duration:.0f} s at {args.connections} connections"
            f" ({args.http} GET/POST by {args.load}, {args.sse} SSE, {args.mcp} MCP),"
            f" a change every {args.change_interval} s, {args.workers} worker(s);"
            f" warm-up {args.warmup:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        await run.phase(args.warmup, measure=False)
        # The baseline: once the warm-up's connections are closed, the client's and
        # the pool's idle ones to the upstreams.
        baseline, _ = await run.settle(None)
        print(f"  baseline  {_sample_line(baseline)}", file=sys.stderr, flush=True)
        began = time.monotonic()
        await run.phase(args.duration, measure=True)
        wall = time.monotonic() - began
        after, waited = await run.settle(baseline)
        print(f"  after     {_sample_line(after)} (waited {waited:.1f} s)", file=sys.stderr)
        gateway_log = run.gateway.log_tail(30) if run.gateway is not None else ""
        alive = run.gateway is not None and run.gateway.proc.poll() is None
    return report(args, run, baseline, after, waited, wall, alive, gateway_log)


def report(
    args: argparse.Namespace,
    run: Soak,
    baseline: watch.Sample,
    after: watch.Sample,
    waited: float,
    wall: float,
    alive: bool,
    gateway_log: str,
) -> dict[str, Any]:
    samples = run.samples
    first, last = samples[0], samples[-1]
    per_pid = {
        str(pid): {
            "first_kb": first.rss_kb.get(pid, 0),
            "last_kb": last.rss_kb.get(pid, 0),
            "growth_pct": round(growth(first.rss_kb.get(pid, 0), last.rss_kb.get(pid, 0)), 2),
        }
        for pid in first.rss_kb
    }
    rss_growth = growth(first.total_rss_kb, last.total_rss_kb)
    failed = sum(run.tally.failed.values())
    changes = {k[len("change ") :]: v for k, v in run.tally.done.items() if k.startswith("change ")}
    fds_back = after.total_fds <= baseline.total_fds
    result = {
        "duration_s": args.duration,
        "wall_s": round(wall, 1),
        "connections": args.connections,
        "load": args.load,
        "workers": args.workers,
        "gateway_alive": alive,
        "rss": {
            "baseline_kb": baseline.total_rss_kb,
            "first_kb": first.total_rss_kb,
            "last_kb": last.total_rss_kb,
            "after_kb": after.total_rss_kb,
            "growth_pct": round(rss_growth, 2),
            "growth_idle_pct": round(growth(baseline.total_rss_kb, after.total_rss_kb), 2),
            "per_pid": per_pid,
        },
        "fds": {
            "baseline": baseline.total_fds,
            "after": after.total_fds,
            "baseline_by_kind": dict(baseline.fds_by_kind()),
            "after_by_kind": dict(after.fds_by_kind()),
            "settle_s": round(waited, 2),
        },
        "samples": [s.as_dict() for s in samples],
        "done": dict(sorted(run.tally.done.items())),
        "failed": dict(sorted(run.tally.failed.items())),
        "failed_total": failed,
        "failure_examples": run.tally.examples,
        "changes_applied": changes,
        "changes_total": sum(changes.values()),
        "wrk": run.wrk,
        "targets": {
            "rss_growth_lt_5pct": rss_growth < RSS_TARGET,
            "zero_failures": failed == 0 and alive,
            "fds_back_to_baseline": fds_back,
        },
    }
    if not alive:
        result["gateway_log_tail"] = gateway_log
    return result


def print_report(result: dict[str, Any]) -> None:
    out = sys.stdout
    rss = result["rss"]
    fds = result["fds"]
    mb = lambda kb: f"{kb / 1024:.1f} MB"  # noqa: E731
    print(
        f"\n## Soak: {result['duration_s']:.0f} s, {result['connections']} connections,"
        f" GET/POST by {result['load']}, {result['workers']} worker(s)\n",
        file=out,
    )
    print("| t (s) | RSS | fds |\n| ---: | ---: | ---: |", file=out)
    for s in result["samples"]:
        print(f"| {s['at']:.1f} | {mb(s['rss_kb'])} | {s['fds']} |", file=out)
    print(
        f"\nRSS: baseline (idle, after warm-up) {mb(rss['baseline_kb'])}, first under load"
        f" {mb(rss['first_kb'])}, last under load {mb(rss['last_kb'])}, after (idle)"
        f" {mb(rss['after_kb'])}; growth under load {rss['growth_pct']:+.2f} %,"
        f" idle to idle {rss['growth_idle_pct']:+.2f} %",
        file=out,
    )
    if len(rss["per_pid"]) > 1:
        for pid, p in rss["per_pid"].items():
            print(
                f"  pid {pid}: {mb(p['first_kb'])} -> {mb(p['last_kb'])} ({p['growth_pct']:+.2f} %)",
                file=out,
            )
    print(
        f"fds: baseline {fds['baseline']} {fds['baseline_by_kind']}, after {fds['after']}"
        f" {fds['after_by_kind']} ({fds['settle_s']:.1f} s after the load)",
        file=out,
    )
    print("\n| done | count |\n| --- | ---: |", file=out)
    for kind, count in result["done"].items():
        print(f"| {kind} | {count:,} |", file=out)
    print(f"\nfailed: {result['failed_total']}", file=out)
    for kind, count in result["failed"].items():
        example = result["failure_examples"].get(kind, "")
        print(f"  {kind}: {count}  {example[:160]}", file=out)
    if result["wrk"]:
        w = result["wrk"]
        print(
            f"wrk: {w['requests']:,} requests in {w['seconds']:.1f} s ({w['rps']:,.0f}/s),"
            f" p50 {w['p50_ms']:.2f} ms, p99 {w['p99_ms']:.2f} ms, non-2xx {w['non_2xx']},"
            f" socket errors {w['socket_errors']}",
            file=out,
        )
    print(f"changes applied: {result['changes_total']} {result['changes_applied']}", file=out)
    if not result["gateway_alive"]:
        print(f"the gateway died:\n{result.get('gateway_log_tail', '')}", file=out)
    t = result["targets"]
    verdict = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    print(
        f"\nTargets: RSS growth < 5 %: {verdict(t['rss_growth_lt_5pct'])}"
        f" ({rss['growth_pct']:+.2f} %); 0 failed requests: {verdict(t['zero_failures'])}"
        f" ({result['failed_total']}); fds back to baseline: {verdict(t['fds_back_to_baseline'])}"
        f" ({fds['baseline']} -> {fds['after']})",
        file=out,
    )
    print("SOAK-RESULT " + json.dumps(result, separators=(",", ":")), file=out, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    procs.raise_nofile_limit()
    if args.load == "wrk":
        procs.ensure_installed(["wrk", "nginx"])
    # The gateway must run this checkout's runmcp_fast, not the venv's editable install.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(stack.REPO), os.environ.get("PYTHONPATH", "")) if p
    )
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        scratch = Path(tmp)
        try:
            result = runner(soak(args, scratch))
        finally:
            if args.logs is not None:
                shutil.copytree(scratch, args.logs, dirs_exist_ok=True)
    print_report(result)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
