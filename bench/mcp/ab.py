"""Paired MCP latency of two builds of runmcp_fast in front of one upstream: did a change
move the added latency? (`run.py` compares systems; its run-to-run noise on a shared
machine is larger than most changes.)

Each build is a source tree (a checkout or `git worktree add /tmp/base REV`, built in
place): its gateway runs with PYTHONPATH set to it. Both gateways are pinned to CPU 1,
the upstream and this client to CPU 0; the calls alternate, A then B then B then A,
with a quiet gap before each, so drift hits both alike. Prints each build's median and
p90, and the median of the per-pair differences (B - A). Measures, never asserts.

    git worktree add /tmp/base REV
    (cd /tmp/base && $OLDPWD/.venv/bin/python setup.py -q build_ext --inplace)
    .venv/bin/python bench/mcp/ab.py --a /tmp/base --b . [--upstream sdk] [--pairs 1500]

`--a . --b .` gives the floor: the same build twice (within 25 µs over 100 to 300 pairs).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE.parent / "load"))  # procs: ports, pinned servers

import procs  # noqa: E402
import systems  # noqa: E402
from client import Session, Target  # noqa: E402


def _gateway(label: str, tree: Path, port: int, url: str, scratch: Path) -> procs.Server:
    """The build in `tree` (PYTHONPATH) serving on `port`, pinned to CPU 1."""
    argv = [systems.runmcp_fast_binary(), "serve", "--listen", f"127.0.0.1:{port}",
            "--mcp-upstream", url]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    return procs.start(f"runmcp_fast-{label}", argv, port, cpu=1, log_dir=scratch, env=env)


def _ms(ns: float) -> str:
    return f"{ns / 1e6:.3f} ms"


async def _pairs(ports: tuple[int, int], pairs: int, warmup: int, gap: float) -> None:
    a, b = Session(Target("a", ports[0])), Session(Target("b", ports[1]))
    await a.open()
    await b.open()
    for _ in range(warmup):
        await a.call()
        await b.call()
    got: dict[str, list[int]] = {"a": [], "b": []}
    for i in range(pairs):
        order = (("a", a), ("b", b)) if i % 2 == 0 else (("b", b), ("a", a))
        for name, session in order:
            await asyncio.sleep(gap)
            got[name].append(await session.call())
    diffs = [y - x for x, y in zip(got["a"], got["b"], strict=True)]
    for name in ("a", "b"):
        ordered = sorted(got[name])
        print(f"{name}: median {_ms(statistics.median(ordered))}, "
              f"p90 {_ms(ordered[int(0.9 * len(ordered))])}")  # fmt: skip
    print(f"b - a, median of {pairs} pairs: {statistics.median(diffs) / 1e3:+.1f} µs")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", type=Path, required=True, help="the first build's tree")
    parser.add_argument("--b", type=Path, required=True, help="the second build's tree")
    parser.add_argument("--upstream", default="sdk", help="sdk, sdk-json or everything")
    parser.add_argument("--pairs", type=int, default=1500)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--gap-ms", type=float, default=2.0, help="quiet before each call")
    parser.add_argument("--base-port", type=int, default=28400)
    args = parser.parse_args()
    chosen = systems.UPSTREAMS[args.upstream]
    chosen.install()
    with (
        tempfile.TemporaryDirectory(prefix="runmcp-ab-", ignore_cleanup_errors=True) as tmp,
        procs.running() as servers,
    ):
        scratch = Path(tmp)
        up_port = procs.first_free_port(args.base_port)
        servers.append(
            procs.start("upstream", chosen.argv(up_port), up_port, cpu=0, log_dir=scratch)
        )
        url = f"http://127.0.0.1:{up_port}/mcp"
        port_a = procs.first_free_port(up_port + 1)
        servers.append(_gateway("a", args.a, port_a, url, scratch))
        port_b = procs.first_free_port(port_a + 1)
        servers.append(_gateway("b", args.b, port_b, url, scratch))
        os.sched_setaffinity(0, {0})
        print(f"a: {args.a}  b: {args.b}  upstream: {args.upstream}, {args.pairs} pairs")
        asyncio.run(_pairs((port_a, port_b), args.pairs, args.warmup, args.gap_ms / 1e3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
