"""Instructions per MCP `tools/call`, counted by callgrind: the proxy's CPU per call, noise-proof.

The latency tables of run.py move with whatever else the machine runs; the number of
instructions the proxy executes per call does not. This starts the upstream (`--upstream`:
`sdk` by default, the mcp SDK's server with one echo tool and SSE answers; `sdk-json`;
`everything`, the reference server on node), then the proxy under `valgrind
--tool=callgrind` with collection off, opens one session, warms it, switches
collection on for `--calls` sequential calls of the echo tool, switches it off and
prints Ir (instructions) per call for each peer, with the ratio to nginx as a plain
reverse proxy (`master_process off`: one process, counted the same way) in the same
run. `--out` keeps the profiles for `callgrind_annotate`. `--footprint` also counts the
cache lines each call fetches into a 16-line cache (see bench/load/callgrind.py).

    .venv/bin/python bench/mcp/instructions.py [--peers nginx,runmcp_fast] [--calls 500]
    .venv/bin/python bench/mcp/instructions.py --peers runmcp_fast --out /tmp/mcp-cg

User-space instructions only (a system call counts once). Needs valgrind and nginx.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE.parent / "load"))

import callgrind  # noqa: E402
import procs  # noqa: E402
import systems  # noqa: E402
from client import Session, Target  # noqa: E402


def _argv(peer: str, scratch: Path, port: int, url: str) -> list[str]:
    if peer in ("nginx", "nginx-fwd"):
        argv = (systems._nginx if peer == "nginx" else systems._nginx_fwd)(scratch, port, url)
        return [*argv[:-1], "daemon off; master_process off;"]
    if peer == "runmcp_fast":
        return [systems.runmcp_fast_binary(), "serve", "--listen", f"127.0.0.1:{port}",
                "--mcp-upstream", url]  # fmt: skip
    raise SystemExit(f"unknown peer {peer!r} (nginx, nginx-fwd, runmcp_fast)")


async def _calls(port: int, warmup: int, calls: int, run: callgrind.Counted) -> None:
    session = Session(Target("proxy", port))
    await session.open()
    for _ in range(warmup):
        await session.call()
    run.on()
    for _ in range(calls):
        await session.call()
    run.off()


def measure(peer: str, args: argparse.Namespace, scratch: Path, url: str) -> tuple[int, int]:
    """Instructions per call, and lines fetched per call with --footprint (else 0)."""
    port = procs.first_free_port(args.base_port + 1)
    argv = _argv(peer, scratch / peer, port, url)
    keep = f"{args.out}.{peer}" if args.out else None
    out = scratch / f"callgrind.{peer}"
    with callgrind.counted(peer, argv, port, out, keep, footprint=args.footprint) as run:
        asyncio.run(_calls(port, args.warmup, args.calls, run))
    return run.ir // args.calls, run.lines // args.calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", default="nginx,runmcp_fast")
    parser.add_argument("--upstream", default="sdk", help="sdk, sdk-json or everything (node)")
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--base-port", type=int, default=29481)
    parser.add_argument("--out", help="keep the callgrind profiles as OUT.<peer>")
    parser.add_argument(
        "--footprint",
        action="store_true",
        help="also count the cache lines a call fetches (bench/load/callgrind.py; ~2x slower)",
    )
    args = parser.parse_args()
    procs.ensure_installed(["nginx"])
    if shutil.which("valgrind") is None:
        raise SystemExit("needs valgrind: apt-get install valgrind")
    upstream_port = procs.first_free_port(args.base_port)
    args.base_port = upstream_port
    with tempfile.TemporaryDirectory(prefix="runmcp-mcp-ir-", ignore_cleanup_errors=True) as tmp:
        scratch = Path(tmp)
        chosen = systems.UPSTREAMS[args.upstream]
        chosen.install()
        upstream = subprocess.Popen(
            chosen.argv(upstream_port),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 60
            while not callgrind.ready(upstream_port):
                if upstream.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the {args.upstream} upstream did not start")
                time.sleep(0.2)
            url = f"http://127.0.0.1:{upstream_port}/mcp"
            counts = {peer: measure(peer, args, scratch, url) for peer in args.peers.split(",")}
        finally:
            upstream.kill()
            upstream.wait(30)
    line = callgrind.versus_nginx({peer: ir for peer, (ir, _) in counts.items()})
    print(f"tools/call ({args.upstream} upstream): Ir per call: {line}", flush=True)
    if args.footprint:
        lines = callgrind.versus_nginx({peer: n for peer, (_, n) in counts.items()})
        print(f"tools/call ({args.upstream} upstream): {callgrind.FOOTPRINT} per call: {lines}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
