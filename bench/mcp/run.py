"""MCP proxy benchmark: runmcp_fast against FastMCP's proxy and ContextForge, same run.

tools/call through each system and straight to the same upstream MCP server: paired
added latency (one direct call, one through the system, alternating), sequential
calls/s, and calls/s with C concurrent sessions; then the memory per idle SSE stream
held through runmcp_fast. The upstream and this client run on one CPU, the system
under test on the other (taskset), one worker each. Prints tables with the ratios and
the issue's targets, never asserts them. See bench/mcp/README.md.

    .venv/bin/python bench/mcp/run.py [--peers direct,runmcp_fast,fastmcp,contextforge]
        [--upstream everything,sdk] [--pairs N] [--seconds T] [--streams K] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Coroutine
from pathlib import Path
from typing import Any, TypeVar

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE.parent / "load"))  # procs: start pinned, stop, /proc readings

import measure  # noqa: E402
import procs  # noqa: E402
import report  # noqa: E402
import streams  # noqa: E402
import systems  # noqa: E402
from client import McpError, Session, Target, discover_tool  # noqa: E402
from systems import DIRECT, GATEWAY, PEERS, UPSTREAMS  # noqa: E402

# In the order they are measured: direct first, so the upstream's own numbers come
# before anything is put in front of it.
ALL_PEERS = (
    DIRECT,
    GATEWAY,
    "nginx",
    "nginx-fwd",
    "fastmcp",
    "fastmcp-shared",
    "contextforge",
    "contextforge-default",
)
STREAM_TARGETS = (GATEWAY, *(p for p in ALL_PEERS if p != GATEWAY))

T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


class Ports:
    """Ports handed out upward from --base-port, skipping any that is taken."""

    def __init__(self, base: int) -> None:
        self.next = base

    def take(self) -> int:
        for port in range(self.next, self.next + 1000):
            if procs.port_is_free(port):
                self.next = port + 1
                return port
        raise SystemExit(f"no free port above {self.next}")


# --- one upstream: start it and every peer, check, measure --------------------------


def start_peer(
    peer: str,
    url: str,
    scratch: Path,
    ports: Ports,
    args: argparse.Namespace,
    servers: list[procs.Server],
    argv_of: Callable[[Path, int, str], list[str]] | None = None,
) -> tuple[procs.Server, Target]:
    spec = PEERS[peer]
    port = ports.take()
    argv = (argv_of or spec.argv)(scratch, port, url)
    if peer == GATEWAY:
        argv += args.gateway_args
    server = procs.start(
        peer, argv, port, cpu=args.proxy_cpu, log_dir=scratch, ready_timeout=spec.ready_timeout
    )
    servers.append(server)
    print(f"  started {peer} on :{port} (pid {server.pid})", file=sys.stderr)
    try:
        target = spec.setup(scratch, port, url)
    except Exception as exc:
        raise RuntimeError(f"{exc}\n{server.log_tail()}") from exc
    return server, target


async def prepare(target: Target, expect: Callable[[str], str]) -> str | None:
    """Find the echo tool's name on `target`, call it once; None when it echoes."""
    try:
        session = Session(target)
        await session.open()
        try:
            target.tool = await discover_tool(session)
        finally:
            session.close()
    except (McpError, OSError) as exc:
        return f"setup failed: {exc}"
    return await measure.check(target, expect)


class CpuWatch:
    """CPU seconds of the watched process trees, of this client, and of both CPUs."""

    def __init__(
        self, args: argparse.Namespace, upstream: procs.Server, system: procs.Server | None
    ):
        self.cpus = (args.client_cpu, args.proxy_cpu)
        self.upstream = upstream
        self.system = system

    def __call__(self) -> dict[str, float]:
        busy = procs.cpu_busy_seconds(self.cpus)
        user, kernel = procs.tree_cpu_split(self.system.pid) if self.system else (0.0, 0.0)
        return {
            "upstream": procs.tree_cpu_seconds(self.upstream.pid),
            "system": user + kernel,
            # Its own code's part: the rest is the kernel's, for its system calls.
            "system:user": user,
            "client": time.process_time(),
            "busy:0": busy[self.cpus[0]],
            "busy:1": busy[self.cpus[1]],
        }

    @staticmethod
    def elsewhere(spent: dict[str, float]) -> None:
        """What the two CPUs did beyond our processes (a neighbour's load), added in place."""
        spent["elsewhere:CPU0"] = max(0.0, spent["busy:0"] - spent["upstream"] - spent["client"])
        spent["elsewhere:CPU1"] = max(0.0, spent["busy:1"] - spent["system"])


def wait_quiet(args: argparse.Namespace) -> None:
    if args.quiet_wait > 0:
        share = procs.wait_quiet(
            (args.client_cpu, args.proxy_cpu), limit=report.NOISY, timeout=args.quiet_wait
        )
        if share >= report.NOISY:
            print(f"    CPUs still {share:.0%} busy before the run", file=sys.stderr)


def run_upstream(
    name: str, args: argparse.Namespace, scratch: Path, ports: Ports
) -> list[report.Row]:
    upstream = UPSTREAMS[name]
    scratch = scratch / name
    scratch.mkdir()
    rows: dict[str, report.Row] = {}
    with procs.running() as servers:
        up_port = ports.take()
        up = procs.start(
            f"upstream-{name}",
            upstream.argv(up_port),
            up_port,
            cpu=args.client_cpu,
            log_dir=scratch,
            ready_timeout=60,
        )
        servers.append(up)
        url = f"http://127.0.0.1:{up_port}/mcp"
        print(f"upstream {name} on :{up_port} (pid {up.pid}): {upstream.title}", file=sys.stderr)
        targets: dict[str, Target] = {DIRECT: Target(DIRECT, up_port)}
        running: dict[str, procs.Server] = {}
        for peer in args.peers:
            title = "straight to the upstream" if peer == DIRECT else PEERS[peer].title
            rows[peer] = report.Row(peer, title)
            if peer == DIRECT:
                continue
            try:
                running[peer], targets[peer] = start_peer(peer, url, scratch, ports, args, servers)
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                rows[peer].notes.append(f"(!) did not start: {_one_line(exc)}")
                print(f"  {peer} did not start: {exc}", file=sys.stderr)
        time.sleep(0.5)
        for peer, target in list(targets.items()):
            problem = run_async(prepare(target, upstream.echoes))
            if problem is not None:
                rows[peer].notes.append(f"(!) {_one_line(problem)}")
                print(f"  {peer}: {problem}", file=sys.stderr)
                del targets[peer]
            elif target.tool != "echo":
                rows[peer].notes.append(f"tool `{target.tool}`")
        direct = targets.get(DIRECT)
        if direct is None:
            raise SystemExit(f"the {name} upstream does not answer tools/call: see above")
        # Warm the upstream up first (node's JIT, the SDK's lazy imports), so that the
        # direct row, measured first, is not its slowest.
        run_async(measure.concurrent(direct, args.sessions, args.upstream_warmup, 0.0, lambda: {}))
        through = {p: t for p, t in targets.items() if p != DIRECT}
        interleaved: dict[str, measure.Paired] = {}
        if args.interleave and through:
            print(f"  {name}: {', '.join(through)} interleaved with direct ...", file=sys.stderr)
            wait_quiet(args)
            interleaved = run_async(
                measure.interleaved(
                    direct, through, args.pairs, args.pair_budget * len(through),
                    args.warmup_calls, args.call_gap / 1000,
                )
            )  # fmt: skip
        for peer in args.peers:
            if peer not in targets:
                continue
            row = rows[peer]
            print(f"  {name}: {peer} ...", file=sys.stderr)
            if peer == DIRECT:
                wait_quiet(args)
                row.sequential = run_async(
                    measure.sequential(direct, args.pairs, args.pair_budget, args.warmup_calls)
                )
            elif peer in interleaved:
                row.paired = interleaved[peer]
            else:
                wait_quiet(args)
                row.paired = run_async(
                    measure.paired(
                        direct,
                        targets[peer],
                        args.pairs,
                        args.pair_budget,
                        args.warmup_calls,
                        args.call_gap / 1000,
                    )
                )
            row.concurrent = quietest_concurrent(args, targets[peer], up, running.get(peer))
            report.row_notes(row)
    return list(rows.values())


def quietest_concurrent(
    args: argparse.Namespace, target: Target, up: procs.Server, system: procs.Server | None
) -> measure.Concurrent:
    """The concurrent run; again (up to --retries times) while a neighbour kept a CPU busy."""
    watch = CpuWatch(args, up, system)
    best: measure.Concurrent | None = None
    for attempt in range(1 + args.retries):
        if attempt:
            print(f"    noisy ({noise(best):.0%} of a CPU elsewhere): again", file=sys.stderr)
        wait_quiet(args)
        result = run_async(
            measure.concurrent(target, args.sessions, args.seconds, args.warmup, watch)
        )
        CpuWatch.elsewhere(result.cpu_seconds)
        if best is None or noise(result) < noise(best):
            best = result
        if noise(best) <= report.NOISY:
            break
    assert best is not None
    return best


def noise(result: measure.Concurrent | None) -> float:
    """The larger share of a CPU that others used during the run."""
    if result is None or not result.seconds:
        return 0.0
    spent = result.cpu_seconds
    return max(spent["elsewhere:CPU0"], spent["elsewhere:CPU1"]) / result.seconds


def _one_line(exc: object) -> str:
    return " ".join(str(exc).split())[:300]


# --- idle SSE streams -----------------------------------------------------------------


def stream_cap() -> int:
    """The gateway holds two descriptors per stream (client side, upstream side), plus
    its idle pool and listeners: ~1,000 kept spare."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return (hard - 1000) // 2


def run_streams(args: argparse.Namespace, scratch: Path, ports: Ports) -> list[streams.Streams]:
    results = []
    count = min(args.streams, stream_cap())
    if count < args.streams:
        print(
            f"streams: {args.streams:,} asked, {count:,} opened: RLIMIT_NOFILE's hard limit is "
            f"{resource.getrlimit(resource.RLIMIT_NOFILE)[1]:,} and the gateway holds two "
            "descriptors per stream",
            file=sys.stderr,
        )
    for name in args.stream_targets:
        work = scratch / f"streams-{name}"
        work.mkdir()
        with procs.running() as servers:
            up_port = ports.take()
            up = procs.start(
                "upstream-raw-sse",
                systems.raw_sse_argv(up_port, args.keepalive),
                up_port,
                cpu=args.client_cpu,
                log_dir=work,
            )
            servers.append(up)
            url = f"http://127.0.0.1:{up_port}/mcp"
            if name == DIRECT:
                system, target = up, Target(DIRECT, up_port)
            else:
                argv_of = (
                    systems.runmcp_fast_streams
                    if name == GATEWAY and args.stream_config == "lifted"
                    else None
                )
                try:
                    system, target = start_peer(name, url, work, ports, args, servers, argv_of)
                except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                    print(f"streams: {name} did not start: {exc}", file=sys.stderr)
                    continue
            print(f"streams: {count:,} through {name} ...", file=sys.stderr)
            # The upstream's own growth is shown beside, unless it is the one measured.
            upstream_rss = None if system is up else functools.partial(procs.tree_rss_kb, up.pid)
            result = run_async(
                streams.hold(
                    target,
                    count,
                    rss=functools.partial(procs.tree_rss_kb, system.pid),
                    fds=functools.partial(procs.open_fds, system.pid),
                    upstream_rss=upstream_rss,
                    keepalive_wait=args.keepalive_wait,
                    header_wait=args.header_wait,
                    budget=args.stream_budget,
                )
            )
            result.requested = args.streams
            results.append(result)
    return results


# --- the command line -----------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", help=f"of {','.join(ALL_PEERS)} (default: all)")
    parser.add_argument(
        "--upstream", help=f"of {','.join(UPSTREAMS)} (default: all; `none`: idle streams only)"
    )
    parser.add_argument("--pairs", type=int, help="paired calls per system (2000)")
    parser.add_argument("--pair-budget", type=float, help="seconds at most per paired run (30)")
    parser.add_argument("--warmup-calls", type=int, help="calls (pairs) before measuring (20)")
    parser.add_argument("--seconds", type=float, help="concurrent run per system (5)")
    parser.add_argument("--warmup", type=float, help="concurrent load before counting (1)")
    parser.add_argument("--sessions", type=int, default=16, help="concurrent sessions (16)")
    parser.add_argument(
        "--upstream-warmup", type=float, help="s of load straight to each upstream first (3)"
    )
    parser.add_argument("--streams", type=int, help="idle SSE streams, 0 to skip (10000)")
    parser.add_argument(
        "--stream-targets",
        help=f"of {','.join(STREAM_TARGETS)} (default runmcp_fast; direct measures the raw upstream)",
    )
    parser.add_argument(
        "--keepalive", type=float, default=5.0, help="raw upstream's comment interval"
    )
    parser.add_argument(
        "--header-wait", type=float, default=30.0, help="per GET stream, for its headers"
    )
    parser.add_argument(
        "--stream-config",
        choices=("lifted", "flags"),
        default="lifted",
        help="runmcp_fast for the streams: a config with the connection caps lifted "
        "(default), or the plain --mcp-upstream flags (at most 1,024 upstream connections)",
    )
    parser.add_argument(
        "--stream-budget", type=float, default=180.0, help="seconds at most to open the streams"
    )
    parser.add_argument(
        "--keepalive-wait",
        type=float,
        default=18.0,
        help="then every stream must see a comment or event within this (SDK servers ping every 15 s)",
    )
    parser.add_argument(
        "--call-gap",
        type=float,
        default=measure.CALL_GAP * 1000,
        help="ms of quiet before each call of the paired runs (2; 0: back to back)",
    )
    parser.add_argument("--quick", action="store_true", help="a short run: ~1-2 minutes")
    parser.add_argument(
        "--separate-windows",
        dest="interleave",
        action="store_false",
        help="pair each system with direct in a window of its own, one system after"
        " another (before: every system in each round, in balanced orders)",
    )
    parser.add_argument(
        "--base-port", type=int, default=28381, help="ports are taken upward from here"
    )
    parser.add_argument("--client-cpu", type=int, default=0, help="CPU of the client and upstream")
    parser.add_argument("--proxy-cpu", type=int, default=1, help="CPU of the system under test")
    parser.add_argument(
        "--quiet-wait", type=float, default=5.0, help="wait up to N s for idle CPUs"
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=1,
        help="repeat a concurrent run during which others kept a CPU >10%% busy",
    )
    parser.add_argument(
        "--gateway-args", default="", help="more arguments for `runmcp-fast serve` (shell words)"
    )
    parser.add_argument(
        "--gateway-binary", help="the `runmcp-fast` to run (default: the one beside this python)"
    )
    parser.add_argument("--json", type=Path, help="also write every number here")
    parser.add_argument(
        "--logs", type=Path, help="keep the servers' logs and configs here (default: a temp dir)"
    )
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {
        "pairs": 200 if quick else 2000,
        "pair_budget": 8.0 if quick else 30.0,
        "warmup_calls": 5 if quick else 20,
        "seconds": 2.0 if quick else 5.0,
        "warmup": 0.5 if quick else 1.0,
        "streams": 1000 if quick else 10_000,
        "upstream_warmup": 2.0 if quick else 3.0,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.peers = _choices(parser, "--peers", args.peers or ",".join(ALL_PEERS), ALL_PEERS)
    upstreams = args.upstream or ("sdk" if quick else ",".join(UPSTREAMS))
    args.upstream = (
        [] if upstreams == "none" else _choices(parser, "--upstream", upstreams, UPSTREAMS)
    )
    args.stream_targets = _choices(
        parser, "--stream-targets", args.stream_targets or GATEWAY, STREAM_TARGETS
    )
    args.gateway_args = shlex.split(args.gateway_args)
    systems.GATEWAY_BINARY = args.gateway_binary
    return args


def _choices(
    parser: argparse.ArgumentParser, option: str, value: str, known: Collection[str]
) -> list[str]:
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in known]
    if unknown:
        parser.error(f"{option}: unknown {', '.join(unknown)}")
    return list(dict.fromkeys(chosen))


def install(args: argparse.Namespace) -> None:
    """Everything the chosen systems need, before any CPU is pinned or measured."""
    nginx = any(p.startswith("nginx") for p in args.peers)
    procs.ensure_installed(["taskset", *(["nginx"] if nginx else [])])
    if GATEWAY in args.peers or GATEWAY in args.stream_targets:
        missing = systems.gateway_missing()
        if missing:
            print(f"skipping runmcp_fast: {missing}", file=sys.stderr)
            args.peers = [p for p in args.peers if p != GATEWAY]
            args.stream_targets = [t for t in args.stream_targets if t != GATEWAY]
            args.gateway_skipped = missing
    used = set(args.peers) | (set(args.stream_targets) if args.streams else set())
    for venv in sorted({PEERS[p].venv for p in used if p in PEERS and PEERS[p].venv}):
        systems.ensure_venv(venv)
    for name in args.upstream:
        UPSTREAMS[name].install()


def check_machine(args: argparse.Namespace) -> None:
    cpus = os.sched_getaffinity(0)
    if not {args.client_cpu, args.proxy_cpu} <= cpus or args.client_cpu == args.proxy_cpu:
        raise SystemExit(
            f"need two distinct CPUs {args.client_cpu} and {args.proxy_cpu}; "
            f"this process may use {sorted(cpus)}"
        )


def describe(args: argparse.Namespace) -> str:
    return (
        f"# MCP proxy benchmark: tools/call of `echo`; paired latency over up to "
        f"{args.pairs:,} pairs ({args.pair_budget:g} s at most per system"
        f"{'; every system in each round, in balanced orders' if args.interleave else ''}"
        f"; {args.call_gap:g} ms of quiet before each call), "
        f"{args.sessions} concurrent sessions for {args.seconds:g} s after {args.warmup:g} s\n"
        f"# this client and the upstream on CPU {args.client_cpu}, the system under test on "
        f"CPU {args.proxy_cpu} (taskset), one worker each\n"
        f"# systems: {', '.join(args.peers)}; upstreams: {', '.join(args.upstream)}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.gateway_skipped = None
    check_machine(args)
    # A SIGTERM unwinds like Ctrl-C does, through the finally blocks that stop the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # Ctrl-C raises KeyboardInterrupt even when we were started with SIGINT ignored
    # (from a script's background job, nohup).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    install(args)
    procs.raise_nofile_limit()
    os.sched_setaffinity(0, {args.client_cpu})  # the client shares the upstream's CPU
    print(describe(args), flush=True)
    ports = Ports(args.base_port)
    results: dict[str, list[report.Row]] = {}
    stream_results: list[streams.Streams] = []
    with tempfile.TemporaryDirectory(prefix="bench-mcp-") as tmp:
        scratch = Path(tmp)
        if args.logs is not None:
            scratch = args.logs.resolve()
            scratch.mkdir(parents=True, exist_ok=True)
            if any(scratch.iterdir()):
                raise SystemExit(f"--logs {scratch} is not empty")
        for name in args.upstream:
            rows = run_upstream(name, args, scratch, ports)
            results[name] = rows
            print(f"\n### Upstream `{name}`: {UPSTREAMS[name].title}\n")
            print(report.upstream_table(rows, args.sessions), flush=True)
        if args.streams > 0 and args.stream_targets:
            stream_results = run_streams(args, scratch, ports)
    print_summary(args, results, stream_results)
    if args.json:
        payload = {
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "upstreams": {u: [r.as_dict() for r in rows] for u, rows in results.items()},
            "streams": [report.streams_dict(s) for s in stream_results],
        }
        args.json.write_text(json.dumps(payload, indent=1, default=str))
    return 0


def print_summary(
    args: argparse.Namespace,
    results: dict[str, list[report.Row]],
    stream_results: list[streams.Streams],
) -> None:
    print(
        "\nseq calls/s: one session, one call at a time (1 / mean latency over the pairs); "
        "added: median and p90 of (through the system - direct) over the pairs, each system"
        " paired with the direct call of its own round (--separate-windows: of its own window); "
        "CPU ms/call: the system's own process tree (the upstream's on the direct row) "
        "over the concurrent run; (user: its utime, its own code; the rest is the kernel's "
        "work for its system calls)."
    )
    if len(results) and any(len(rows) > 1 for rows in results.values()):
        print("\n### runmcp_fast against each peer\n")
        print(report.ratios_table(results))
    if stream_results:
        print(
            f"\n### Idle SSE streams (raw aiohttp upstream `sse_upstream.py`, one comment every "
            f"{args.keepalive:g} s)\n"
        )
        print(report.streams_table(stream_results))
        if args.streams > stream_cap():
            print(
                f"\n{args.streams:,} streams asked, {stream_cap():,} opened: RLIMIT_NOFILE's hard "
                f"limit is {resource.getrlimit(resource.RLIMIT_NOFILE)[1]:,} and a gateway holds "
                "two descriptors per stream (client side and upstream side), with room for its idle pool."
            )
    targets = report.targets_table(results, stream_results)
    if targets:
        print("\n### Targets for runmcp_fast (printed, never asserted)\n")
        print(targets)
    if args.gateway_skipped:
        print(
            f"\nrunmcp_fast was skipped: {args.gateway_skipped}; its rows, ratios and targets "
            "appear once `runmcp-fast serve --mcp-upstream URL` runs."
        )


if __name__ == "__main__":
    sys.exit(main())
