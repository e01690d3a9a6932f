"""End-to-end load benchmark: runmcp_fast against nginx, haproxy and an aiohttp proxy.

The setup of /work/shared/BENCHMARKS.md ("The end-to-end proxy setup"): one
upstream nginx answering `return 200`, wrk and the upstream pinned to one CPU,
the proxy under test to the other, every peer measured in the same run on the
same upstream. Prints req/s, p50, p99 and each proxy's CPU time per request,
with the ratios to nginx. See bench/load/README.md.

    .venv/bin/python bench/load/run.py [--seconds 6] [--cases get-1k,post-1k]
        [--peers nginx,runmcp_fast] [--connections 64,512] [--json out.json]
        [--workers 1,2] [--tls] [--rounds 5]

`--rounds N` measures each peer N times, the peers taking turns (the order reversed
every other round); each table shows a peer's median round, and the validation table
also the on / off ratio of each round's pair: single runs move ±15 % here.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import configs
import procs
import tls
import wrkrun
from cases import CASES, Case
from tables import (
    DIRECT,
    GATEWAY,
    GATEWAY_NOVALIDATION,
    GATEWAY_STEP,
    LEGEND,
    NOISY,
    TITLES,
    Row,
    Target,
    case_table,
    median_row,
    scaling_table,
    targets_table,
    tls_table,
    validation_table,
)

# Peers in the order they run (and appear) within a case; direct first, so the
# upstream's own ceiling is measured before anything is put in front of it.
# GATEWAY_STEP (the chain's cost: one no-op step on every route) and
# GATEWAY_NOVALIDATION (the contract's cost: validation off) are opt-in.
PEERS = (DIRECT, "nginx", "haproxy", "aiohttp", GATEWAY)
# The peers that take --workers N and --tls (the others run as before, or are skipped).
SCALABLE = ("nginx", GATEWAY)
KNOWN_PEERS = (*PEERS, GATEWAY_STEP, GATEWAY_NOVALIDATION)
GATEWAYS = {GATEWAY, GATEWAY_STEP, GATEWAY_NOVALIDATION}
UPSTREAM_OFFSET = 0
PORT_OFFSETS = {
    "nginx": 1,
    "haproxy": 2,
    "aiohttp": 3,
    GATEWAY: 9,
    GATEWAY_STEP: 10,
    GATEWAY_NOVALIDATION: 11,
}

Launcher = Callable[[Path, int, int], list[str]]


def launchers(
    spec: Path | None, workers: int = 1, tls_files: configs.Tls | None = None
) -> dict[str, Launcher]:
    found: dict[str, Launcher] = {
        "nginx": lambda scratch, port, up: configs.nginx_proxy(
            scratch, port, up, workers=workers, tls=tls_files
        ),
        "haproxy": lambda scratch, port, up: configs.haproxy(scratch, port, up),
        "aiohttp": lambda _scratch, port, up: configs.aiohttp_proxy(port, up),
    }
    if spec is not None:
        found[GATEWAY] = lambda scratch, port, up: configs.runmcp_fast(
            scratch, port, up, spec, workers=workers, tls=tls_files
        )
        found[GATEWAY_STEP] = lambda scratch, port, up: configs.runmcp_fast_steps(
            scratch, port, up, spec
        )
        found[GATEWAY_NOVALIDATION] = lambda scratch, port, up: configs.runmcp_fast(
            scratch / "novalidation", port, up, spec, validation=False
        )
    return found


def precheck(port: int, case: Case, secure: bool = False) -> str | None:
    """One request before the load: None if the answer is a 200 with the expected body."""
    conn: http.client.HTTPConnection = (
        http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=tls.client_context())
        if secure
        else http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    )
    headers = {"Content-Type": "application/json"} if case.body else {}
    try:
        conn.request(case.method, case.path, body=case.body or None, headers=headers)
        answer = conn.getresponse()
        body = answer.read()
    except (OSError, ssl.SSLError) as exc:
        return f"check request failed: {exc}"
    finally:
        conn.close()
    if answer.status != 200 or len(body) != case.response_size:
        return (
            f"check request got {answer.status} with {len(body)} bytes "
            f"(expected 200 with {case.response_size}): {body[:120]!r}"
        )
    return None


class Bench:
    """The running servers and what is needed to measure one (peer, case, connections)."""

    def __init__(
        self, args: argparse.Namespace, upstream: procs.Server, scratch: Path, workers: int = 1
    ) -> None:
        self.args = args
        self.upstream = upstream
        self.scratch = scratch
        self.workers = workers
        self.proxies: dict[str, procs.Server] = {}
        self.negotiated: dict[str, str] = {}  # --tls: the protocol and suite each agreed on

    def secure(self, peer: str) -> bool:
        """Whether `peer` is reached over TLS (--tls: the proxies; the upstream stays plain)."""
        return bool(self.args.tls) and peer != DIRECT

    def port(self, peer: str) -> int:
        return self.upstream.port if peer == DIRECT else self.proxies[peer].port

    def measure(self, peer: str, case: Case, connections: int) -> Row:
        """Check one answer, warm up, measure."""
        problem = precheck(self.port(peer), case, self.secure(peer))
        if problem is not None:
            return Row(peer, case.name, connections, None, None, flags=[problem])
        scheme = "https" if self.secure(peer) else "http"
        url = f"{scheme}://127.0.0.1:{self.port(peer)}{case.path}"
        script = wrkrun.post_script(case, self.scratch) if case.body else None
        load = {"connections": connections, "script": script, "cpu": self.args.client_cpu}
        try:
            if self.args.warmup > 0:
                # Opens the proxy's upstream pool and warms its caches; not counted.
                wrkrun.run(url, seconds=self.args.warmup, **load)
            return self.quietest(peer, case, url, load)
        except RuntimeError as exc:  # wrk could not run: the proxy died, or refused
            return Row(peer, case.name, connections, None, None, flags=[str(exc)[:300]])

    def quietest(self, peer: str, case: Case, url: str, load: dict[str, Any]) -> Row:
        """Measure; again (up to --retries times) while a neighbour was busy on our CPUs."""
        self.wait_quiet()
        best = self.measure_once(peer, case, url, load)
        for _ in range(self.args.retries):
            if best.noise <= NOISY:
                break
            print(f"    noisy ({best.noise:.0%} of a CPU elsewhere): again", file=sys.stderr)
            self.wait_quiet()
            row = self.measure_once(peer, case, url, load)
            if row.noise < best.noise:
                best = row
        return best

    def wait_quiet(self) -> None:
        if self.args.quiet_wait <= 0:
            return
        cpus = (self.args.client_cpu, self.args.proxy_cpu)
        share = procs.wait_quiet(cpus, limit=NOISY, timeout=self.args.quiet_wait)
        if share >= NOISY:
            print(f"    CPUs still {share:.0%} busy before the run", file=sys.stderr)

    def measure_once(self, peer: str, case: Case, url: str, load: dict[str, Any]) -> Row:
        """One wrk run, with the CPU time of the proxy, the upstream and each CPU around it."""
        proxy = self.proxies.get(peer)
        cpus = (self.args.client_cpu, self.args.proxy_cpu)
        busy_before = procs.cpu_busy_seconds(cpus)
        proxy_before = procs.tree_cpu_split(proxy.pid) if proxy else (0.0, 0.0)
        upstream_before = procs.tree_cpu_seconds(self.upstream.pid)
        workers = procs.worker_pids(proxy.pid) if proxy else []
        workers_before = [procs.cpu_seconds(pid) for pid in workers]
        # Which worker holds how many client connections, read halfway through the run
        # (wrk keeps its connections open for the whole run).
        held: dict[int, int] = {}
        sampler = threading.Timer(
            self.args.seconds / 2,
            lambda: held.update(procs.connections_per_worker(proxy.pid, proxy.port)),
        )
        if proxy:
            sampler.start()
        try:
            result = wrkrun.run(url, seconds=self.args.seconds, **load)
        finally:
            sampler.cancel()
        proxy_after = procs.tree_cpu_split(proxy.pid) if proxy else (0.0, 0.0)
        proxy_cpu = sum(proxy_after) - sum(proxy_before) if proxy else None
        upstream_cpu = procs.tree_cpu_seconds(self.upstream.pid) - upstream_before
        busy_after = procs.cpu_busy_seconds(cpus)
        row = Row(peer, case.name, load["connections"], result, proxy_cpu, upstream_cpu)
        if proxy:
            row.proxy_user = proxy_after[0] - proxy_before[0]
        row.workers = self.workers if proxy else 1
        row.spread = [
            (held.get(pid, 0), procs.cpu_seconds(pid) - before)
            for pid, before in zip(workers, workers_before, strict=True)
        ]
        row.flags = flags(result, case)
        # What the two CPUs did beyond the processes we account for: other
        # programs (a noisy neighbour) and interrupt work charged to no process.
        ours = {cpus[0]: upstream_cpu + result.cpu_seconds, cpus[1]: proxy_cpu or 0.0}
        if self.workers > 1:  # the proxy's workers run on both CPUs: charge it to both
            ours = {cpus[0]: ours[cpus[0]] + ours[cpus[1]], cpus[1]: 0.0}
        row.others = {
            cpu: (busy_after[cpu] - busy_before[cpu] - ours[cpu]) / result.seconds
            for cpu in cpus
            if result.seconds
        }
        return row


def flags(result: wrkrun.WrkResult, case: Case) -> list[str]:
    """What makes a row's numbers suspect: errors, non-2xx, answers shorter than the body."""
    found = []
    if result.non_2xx:
        found.append(f"{result.non_2xx:,} non-2xx/3xx answers")
    errors = {kind: n for kind, n in result.errors.items() if n}
    if errors:
        found.append("socket errors: " + ", ".join(f"{k} {n:,}" for k, n in errors.items()))
    if result.requests == 0:
        found.append("no request completed")
    elif result.max_bytes_per_request < case.response_size:
        # Answers shorter than the body: a proxy answering errors or truncating.
        found.append(
            f"at most {result.max_bytes_per_request:,.0f} bytes read per answer, "
            f"the body alone is {case.response_size:,}"
        )
    return found


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=6, help="wrk run per measurement")
    parser.add_argument("--warmup", type=int, default=1, help="wrk run before each, not counted")
    parser.add_argument("--cases", default=",".join(CASES), help=f"of {','.join(CASES)}")
    parser.add_argument("--peers", default=",".join(PEERS), help=f"of {','.join(KNOWN_PEERS)}")
    parser.add_argument("--connections", default="64,512", help="wrk connections, comma-separated")
    parser.add_argument("--base-port", type=int, default=28081, help="upstream; peers above it")
    parser.add_argument("--client-cpu", type=int, default=0, help="CPU for wrk and the upstream")
    parser.add_argument("--proxy-cpu", type=int, default=1, help="CPU for the proxy under test")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=10.0,
        help="before each run, wait up to this many seconds for both CPUs to be idle",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=1,
        help="measure again when others kept a CPU more than 10 %% busy during the run",
    )
    parser.add_argument(
        "--workers",
        default="1",
        help="worker counts for nginx and runmcp_fast, comma-separated (1,2: the scaling "
        "table); above 1 their workers may use both CPUs, wrk and the upstream stay on "
        "--client-cpu",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help=f"nginx and runmcp_fast serve TLS 1.3 ({tls.SUITE}, one self-signed ECDSA "
        "certificate); the upstream stays plain HTTP",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure every peer this many times, taking turns; the tables show each "
        "peer's median round (by req/s), and the validation table the on / off ratio "
        "round by round (paired: the noise of this machine moves single runs ±15 %%)",
    )
    parser.add_argument("--json", type=Path, help="also write every row here")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds: 1 or more")
    args.cases = _choices(parser, "--cases", args.cases, CASES)
    args.peers = _choices(parser, "--peers", args.peers, KNOWN_PEERS)
    args.connections = [int(c) for c in args.connections.split(",")]
    args.workers = sorted({int(w) for w in args.workers.split(",")})
    if args.workers[0] < 1:
        parser.error("--workers: counts of 1 or more")
    if args.tls or args.workers != [1]:
        # The other peers have no TLS or workers set up here: they would not compare.
        dropped = [p for p in args.peers if p not in (DIRECT, *SCALABLE)]
        if dropped:
            print(f"--tls/--workers: leaving out {', '.join(dropped)}", file=sys.stderr)
        args.peers = [p for p in args.peers if p in (DIRECT, *SCALABLE)]
    return args


def _choices(
    parser: argparse.ArgumentParser, option: str, value: str, known: Collection[str]
) -> list[str]:
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in known]
    if unknown:
        parser.error(f"{option}: unknown {', '.join(unknown)}")
    return chosen


def check_machine(args: argparse.Namespace) -> None:
    cpus = os.sched_getaffinity(0)
    if not {args.client_cpu, args.proxy_cpu} <= cpus or args.client_cpu == args.proxy_cpu:
        raise SystemExit(
            f"need two distinct CPUs {args.client_cpu} and {args.proxy_cpu}; "
            f"this process may use {sorted(cpus)}"
        )
    ports = [args.base_port + UPSTREAM_OFFSET] + [
        args.base_port + PORT_OFFSETS[p] for p in args.peers if p != DIRECT
    ]
    busy = [p for p in ports if not procs.port_is_free(p)]
    if busy:
        raise SystemExit(f"ports in use: {busy}; pick another --base-port")


def start_all(
    args: argparse.Namespace, scratch: Path, servers: list[procs.Server], workers: int = 1
) -> Bench:
    up_port = args.base_port + UPSTREAM_OFFSET
    upstream = procs.start(
        "upstream-nginx",
        configs.upstream_nginx(scratch, up_port),
        up_port,
        cpu=args.client_cpu,
        log_dir=scratch,
    )
    servers.append(upstream)
    bench = Bench(args, upstream, scratch, workers)
    spec = configs.github_spec() if GATEWAYS & set(args.peers) else None
    tls_files = None
    if args.tls:
        cert, key = tls.make_cert(scratch / "tls")
        tls_files = configs.Tls(cert, key, tls.SUITE)
    # Several workers may use both CPUs (the machine has two; wrk keeps CPU 0 busy too).
    proxy_cpu: int | str = args.proxy_cpu if workers == 1 else f"{args.client_cpu},{args.proxy_cpu}"
    for peer, launch in launchers(spec, workers, tls_files).items():
        if peer not in args.peers:
            continue
        port = args.base_port + PORT_OFFSETS[peer]
        argv = launch(scratch / f"w{workers}", port, up_port)
        server = procs.start(peer, argv, port, cpu=proxy_cpu, log_dir=scratch)
        servers.append(server)
        bench.proxies[peer] = server
        said = f" ({tls.negotiated(port)})" if tls_files else ""
        print(
            f"started {peer}, {workers} worker(s), on :{port} (pid {server.pid}){said}",
            file=sys.stderr,
        )
        if tls_files:
            bench.negotiated[peer] = tls.negotiated(port)
    return bench


def run_all(args: argparse.Namespace, bench: Bench) -> list[Target]:
    groups = []
    workers = bench.workers
    for name in args.cases:
        case = CASES[name]
        for connections in args.connections:
            peers = [p for p in args.peers if not (p == DIRECT and workers > 1)]
            # (the upstream does not change with the proxies' workers)
            rounds: dict[str, list[Row]] = {peer: [] for peer in peers}
            for r in range(args.rounds):
                # The peers take turns, the order reversed every other round: a drift
                # of the machine (a neighbour, the heat) falls on each alike.
                for peer in peers if r % 2 == 0 else reversed(peers):
                    said = f" round {r + 1}/{args.rounds}" if args.rounds > 1 else ""
                    print(
                        f"  {case.name} c={connections} w={workers} {peer}{said} ...",
                        file=sys.stderr,
                    )
                    rounds[peer].append(bench.measure(peer, case, connections))
            rows = {peer: median_row(found) for peer, found in rounds.items()}
            groups.append(Target(case.name, connections, rows, workers, rounds))
            more = f", {workers} workers" if args.workers != [1] else ""
            more += ", TLS 1.3 " + tls.SUITE if args.tls else ""
            print(f"\n### {case.label}, {connections} connections{more}, {args.seconds:g} s\n")
            print(case_table(list(rows.values())), flush=True)
    return groups


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_machine(args)
    # A SIGTERM unwinds like Ctrl-C does, through the finally that stops the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    needed = ["nginx", "taskset", "wrk"]
    if "haproxy" in args.peers:
        needed.append("haproxy")
    procs.ensure_installed(needed)
    procs.raise_nofile_limit()
    if GATEWAYS & set(args.peers):
        missing = configs.gateway_available()
        if missing:
            print(f"skipping runmcp_fast: {missing}", file=sys.stderr)
            args.peers = [p for p in args.peers if p not in GATEWAYS]
    print(describe(args))
    groups: list[Target] = []
    negotiated: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        if args.tls:
            # Read by wrk and the gateway (children inherit it); nginx is told in its config.
            os.environ["OPENSSL_CONF"] = str(tls.openssl_conf(Path(tmp)))
        for workers in args.workers:
            with procs.running() as servers:
                bench = start_all(args, Path(tmp), servers, workers)
                time.sleep(0.5)  # let the idle servers settle before the first load
                groups += run_all(args, bench)
                negotiated.update(bench.negotiated)
    print("\n" + LEGEND)
    if len(args.workers) > 1 or args.workers != [1]:
        print("\n### Workers: scaling and spread (printed, never asserted)\n")
        print(scaling_table(groups))
    if args.tls:
        print("\n### TLS: CPU per request, runmcp_fast against nginx (target ≥ 0.9x)\n")
        print(tls_table(groups, negotiated))
    if GATEWAY in args.peers and args.workers == [1] and not args.tls:
        print("\n### Targets for runmcp_fast (printed, never asserted)\n")
        print(targets_table(groups))
    if {GATEWAY, GATEWAY_NOVALIDATION} <= set(args.peers) and not args.tls:
        print("\n### Contract validation on / off (printed, never asserted)\n")
        print(validation_table(groups))
    if args.json:
        rows = [
            {**row.as_dict(), "round": i + 1}
            for g in groups
            for found in (g.rounds or {p: [r] for p, r in g.rows.items()}).values()
            for i, row in enumerate(found)
        ]
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


def describe(args: argparse.Namespace) -> str:
    peers = ", ".join(TITLES[p] for p in args.peers)
    return (
        f"# Load benchmark: {args.seconds:g} s per run after {args.warmup:g} s of warm-up; "
        f"wrk -t1 and the upstream nginx on CPU {args.client_cpu}, the proxy on CPU "
        f"{args.proxy_cpu}\n# peers: {peers}"
    )


if __name__ == "__main__":
    sys.exit(main())
