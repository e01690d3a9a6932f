"""A server counted by callgrind, for the instructions-per-request scripts.

`bench/load/instructions.py` (HTTP cases) and `bench/mcp/instructions.py` (tools/call)
both start a server under `valgrind --tool=callgrind` with collection off, wait for its
port, switch collection on around the requests they count, dump, stop it and add up
the dumps: that part is here.

`footprint=True` (the scripts' `--footprint`) also counts the cache lines a request
fetches into a first-level cache of 16 lines for code and 16 for data (1 KB each, two
ways): nearly every line it touches misses, and so does a line it comes back to after
other work, so the count grows with how much code and data it touches and how scattered
they are. A proxy woken for a request finds its first-level caches cold (the kernel's
network stack ran there in between), and each line costs it a trip to L2 or beyond:
what instruction counts do not show (an MCP call through runmcp_fast executes 1.05x
nginx's instructions and fetches 1.4x its lines; with 32 KB caches that keep everything
between requests, 1.7x its code misses). A model, not a measurement of the machine:
compare builds and peers with it. `RUNMCP_CALLGRIND_ARGS` in the environment adds
other valgrind options.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path


def ready(port: int) -> bool:
    """Whether 127.0.0.1:port accepts a connection."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def control(pid: int, *args: str) -> None:
    """`callgrind_control ARGS pid` (--instr=on, --instr=off, --dump)."""
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


# The footprint's cache model (see above); the last level as large as L2 here.
FOOTPRINT = "lines fetched (16-line caches)"
FOOTPRINT_ARGS = ("--cache-sim=yes", "--I1=1024,2,64", "--D1=1024,2,64", "--LL=2097152,16,64")


class Counted:
    """A server under callgrind: `on()` and `off()` around what is counted, `ir` (and,
    counting the footprint, `lines`) after."""

    def __init__(self, pid: int, out: Path) -> None:
        self.pid = pid
        self.out = out
        self.ir = 0  # instructions counted, once the server is stopped
        self.lines = 0  # with footprint=True: lines fetched (code, data read, data written)

    def on(self) -> None:
        control(self.pid, "--instr=on")

    def off(self) -> None:
        control(self.pid, "--instr=off")
        control(self.pid, "--dump")


@contextlib.contextmanager
def counted(
    name: str,
    argv: list[str],
    port: int,
    out: Path,
    keep: str | None = None,
    *,
    footprint: bool = False,
) -> Iterator[Counted]:
    """Run `argv` under callgrind (collection off) until it accepts on `port`; on exit
    kill it and total its dumps into `.ir` (and `.lines`), copied to `keep` + their
    suffix if given."""
    extra = [
        *(FOOTPRINT_ARGS if footprint else ()),
        *shlex.split(os.environ.get("RUNMCP_CALLGRIND_ARGS", "")),
    ]
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
         *extra, *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    run = Counted(server.pid, out)
    try:
        deadline = time.monotonic() + 300
        while not ready(port):
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{name} under valgrind did not start")
            time.sleep(0.5)
        yield run
    finally:
        # The counts are dumped already (off()): no need to wait for a graceful exit.
        server.kill()
        server.wait(60)
    dumps = sorted(out.parent.glob(f"{out.name}*"), key=lambda p: p.stat().st_mtime)
    totals = [_totals(d) for d in dumps]
    run.ir = sum(t.get("Ir", 0) for t in totals)
    run.lines = sum(t.get("I1mr", 0) + t.get("D1mr", 0) + t.get("D1mw", 0) for t in totals)
    if keep:
        for dump in dumps:
            shutil.copy(dump, f"{keep}{dump.name.removeprefix(out.name)}")


def _totals(dump: Path) -> dict[str, int]:
    """A dump's total of each event (`events:` names them, `totals:` or `summary:`
    counts them; a dump may have both, with the same counts)."""
    names: list[str] = []
    totals: dict[str, int] = {}
    for line in dump.read_text(errors="replace").splitlines():
        if line.startswith("events:"):
            names = line.split()[1:]
        elif line.startswith(("summary:", "totals:")):
            for name, count in zip(names, line.split()[1:], strict=False):
                totals[name] = max(int(count), totals.get(name, 0))
    return totals


def versus_nginx(counts: dict[str, int]) -> str:
    """`nginx 19,297, runmcp_fast 19,539 | x nginx: runmcp_fast 1.01` for per-peer counts."""
    line = ", ".join(f"{peer} {ir:,}" for peer, ir in counts.items())
    if "nginx" in counts and len(counts) > 1:
        line += " | x nginx: " + ", ".join(
            f"{peer} {ir / counts['nginx']:.2f}" for peer, ir in counts.items() if peer != "nginx"
        )
    return line
