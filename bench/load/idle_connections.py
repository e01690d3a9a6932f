"""Memory per idle keep-alive client connection (target for runmcp_fast: at most 4 KB).

Starts the upstream nginx and the server under test, opens N connections from
127.0.0.1 (default 10,000), does one keep-alive request on each and keeps them
all open, then reads the server's VmRSS (its whole process tree) from /proc
before and after: (after - before) / N is the memory each idle client costs
in the server's user space. Kernel socket buffers are not in RSS and not counted.

    .venv/bin/python bench/load/idle_connections.py [--connections 10000]
        [--targets runmcp_fast,nginx,haproxy,aiohttp]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import configs
import procs
import uvloop
from cases import CASES

TARGETS = ("runmcp_fast", "nginx", "haproxy", "aiohttp")
TARGET_KB = 4.0
CASE = CASES["get-1k"]
REQUEST = f"GET {CASE.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
# Bounds every step of the client: a server that stops answering fails the run.
STEP_TIMEOUT = 30.0


async def request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
    """One keep-alive request on an open connection; the answer's status."""
    writer.write(REQUEST)
    async with asyncio.timeout(STEP_TIMEOUT):
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
    return status


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def open_one(port: int, gate: asyncio.Semaphore, statuses: list[int]) -> Conn | None:
    """A connection after one request on it; None (status -1) if either failed."""
    async with gate:
        try:
            async with asyncio.timeout(STEP_TIMEOUT):
                conn = await asyncio.open_connection("127.0.0.1", port)
            statuses.append(await request(*conn))
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
            statuses.append(-1)
            return None
        return conn


async def open_many(port: int, count: int, concurrency: int) -> tuple[list[Conn], list[int]]:
    """`count` connections, each after one request; at most `concurrency` in progress."""
    gate = asyncio.Semaphore(concurrency)
    statuses: list[int] = []
    conns = await asyncio.gather(*(open_one(port, gate, statuses) for _ in range(count)))
    return [c for c in conns if c is not None], statuses


async def close_all(conns: list[Conn]) -> None:
    for _, writer in conns:
        writer.close()
    await asyncio.sleep(0.5)  # let the server see the FINs before the next reading


@dataclass
class Reading:
    target: str
    connections: int  # those open at the second reading
    rss_before_kb: int
    rss_after_kb: int
    fds_before: int
    fds_after: int
    statuses: dict[int, int]
    alive: dict[int, int]

    @property
    def per_connection_kb(self) -> float:
        return (self.rss_after_kb - self.rss_before_kb) / self.connections


async def measure(server: procs.Server, args: argparse.Namespace) -> Reading:
    # Warm-up: first requests open the upstream pool and fill caches; they belong
    # to the baseline, not to the per-connection cost.
    warm, _ = await open_many(server.port, args.warmup, args.concurrency)
    await close_all(warm)
    await asyncio.sleep(1.0)
    rss_before, fds_before = procs.tree_rss_kb(server.pid), procs.open_fds(server.pid)
    conns, statuses = await open_many(server.port, args.connections, args.concurrency)
    await asyncio.sleep(args.settle)
    rss_after, fds_after = procs.tree_rss_kb(server.pid), procs.open_fds(server.pid)
    if not conns:
        raise RuntimeError(f"{server.name}: no connection could be opened: {_count(statuses)}")
    # The connections must still be usable, or we measured a server that dropped them.
    sample = random.Random(1).sample(conns, min(100, len(conns)))
    alive = await asyncio.gather(*(request(*c) for c in sample), return_exceptions=True)
    await close_all(conns)
    return Reading(
        server.name,
        len(conns),
        rss_before,
        rss_after,
        fds_before,
        fds_after,
        _count(statuses),
        _count([a if isinstance(a, int) else -1 for a in alive]),
    )


def _count(values: list[int]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return counts


def report(r: Reading) -> str:
    ok = r.statuses.keys() == {200} and r.alive.keys() == {200}
    verdict = "met" if r.per_connection_kb <= TARGET_KB and ok else "NOT met"
    if not ok:
        verdict += " (flagged: not every answer was a 200)"
    statuses = ", ".join(f"{n:,} x {_status(s)}" for s, n in sorted(r.statuses.items()))
    alive = ", ".join(f"{n} x {_status(s)}" for s, n in sorted(r.alive.items()))
    return (
        f"| {r.target} | {r.connections:,} | {r.rss_before_kb:,} | {r.rss_after_kb:,} | "
        f"{r.per_connection_kb:.2f} | {r.fds_before:,} → {r.fds_after:,} | {statuses} | "
        f"{alive} | {verdict if r.target == 'runmcp_fast' else ''} |"
    )


def _status(status: int) -> str:
    return str(status) if status >= 0 else "failed"


HEADER = (
    "| server | connections | RSS before (KB) | RSS after (KB) | KB per connection |"
    " descriptors | first answers | second answer (100 of them) | target ≤ 4 KB |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


def start_target(target: str, scratch: Path, up_port: int, args: argparse.Namespace) -> list[str]:
    port = args.base_port + 1
    if target == "runmcp_fast":
        return configs.runmcp_fast(scratch, port, up_port, configs.github_spec())
    if target == "nginx":
        return configs.nginx_proxy(scratch, port, up_port)
    if target == "haproxy":
        return configs.haproxy(scratch, port, up_port)
    return configs.aiohttp_proxy(port, up_port)


def measure_target(target: str, args: argparse.Namespace) -> Reading:
    """A fresh upstream and a fresh server for each target: no memory carried over."""
    up_port, port = args.base_port, args.base_port + 1
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp, procs.running() as servers:
        scratch = Path(tmp)
        argv = configs.upstream_nginx(scratch, up_port)
        servers.append(procs.start("upstream-nginx", argv, up_port, cpu=0, log_dir=scratch))
        argv = start_target(target, scratch, up_port, args)
        server = procs.start(target, argv, port, cpu=args.proxy_cpu, log_dir=scratch)
        servers.append(server)
        return uvloop.run(measure(server, args))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--targets", default="runmcp_fast", help=f"of {','.join(TARGETS)}")
    parser.add_argument("--concurrency", type=int, default=256, help="connects in flight")
    parser.add_argument("--warmup", type=int, default=256, help="connections before the baseline")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds before reading RSS")
    parser.add_argument("--base-port", type=int, default=28181, help="upstream; server on +1")
    parser.add_argument("--proxy-cpu", type=int, default=1, help="CPU for the server")
    args = parser.parse_args()
    args.targets = [t for t in args.targets.split(",") if t]
    unknown = set(args.targets) - set(TARGETS)
    if unknown:
        parser.error(f"--targets: unknown {', '.join(sorted(unknown))}")
    return args


def main() -> int:
    args = parse_args()
    needed = ["nginx", "taskset"] + (["haproxy"] if "haproxy" in args.targets else [])
    procs.ensure_installed(needed)
    limit = procs.raise_nofile_limit()
    if args.connections + 100 > limit:
        raise SystemExit(f"RLIMIT_NOFILE is {limit}: too low for {args.connections} connections")
    if "runmcp_fast" in args.targets and (missing := configs.gateway_available()):
        print(f"skipping runmcp_fast: {missing}", file=sys.stderr)
        args.targets.remove("runmcp_fast")
    print(f"# {args.connections:,} idle keep-alive connections, one `GET {CASE.path}` each\n")
    print(HEADER, flush=True)
    for target in args.targets:
        started = time.monotonic()
        print(report(measure_target(target, args)), flush=True)
        print(f"  {target}: {time.monotonic() - started:.1f} s", file=sys.stderr)
    print(
        "\nKB per connection: (VmRSS after - VmRSS before) / connections, VmRSS summed over the"
        " server's process tree; kernel socket memory is not included."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
