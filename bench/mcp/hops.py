"""Where a proxied MCP `tools/call` spends its time, hop by hop, from a loopback capture.

`run.py` gives each proxy's added latency as one number; this splits it. The upstream
(`--upstream`, `sdk` by default) and this client share CPU 0, the proxy under test has
CPU 1 (`taskset`), one session makes `--calls` sequential calls of the echo tool through
each peer in turn (`--rounds` times, alternating, so drift hits all alike), and tcpdump
records every packet with a payload on the two loopback connections. Per call:

- request: the client's last request packet to the proxy's first packet to the upstream
  (the proxy's wake-up, read, parse, checks and write);
- upstream: the proxy's last request packet to the upstream's first answer packet;
- head: the upstream's first answer packet to the proxy's first packet to the client;
- end: the upstream's last answer packet to the proxy's last packet to the client;
- total: the client's first packet to the proxy's last.

On loopback a packet is time-stamped when it is sent, in the sender's system call, so
`request`, `head` and `end` are the proxy's own turnarounds: its CPU's wake-up plus its
work. Medians (and p90) over the calls; each peer's ratio to nginx's. Prints, never
asserts. Needs tcpdump (installed with apt-get when missing) and the right to capture on
`lo` (root, or CAP_NET_RAW).

    .venv/bin/python bench/mcp/hops.py [--peers runmcp_fast,nginx,nginx-fwd] [--calls 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE.parent / "load"))  # procs: ports, pinned servers

import procs  # noqa: E402
import systems  # noqa: E402
from client import Session, discover_tool  # noqa: E402
from measure import quantile  # noqa: E402

HOPS = ("request", "upstream", "head", "end", "total")
# Only packets that carry bytes: the TCP payload is the IP length less both headers.
PAYLOAD = "(ip[2:2] - ((ip[0] & 0xf) << 2) - ((tcp[12] & 0xf0) >> 2)) > 0"
LINE = re.compile(r"^(\d+\.\d+) IP 127\.0\.0\.1\.(\d+) > 127\.0\.0\.1\.(\d+): tcp (\d+)")


@dataclass
class Hops:
    """Each hop's times (µs), one entry a call, over every round of one peer."""

    times: dict[str, list[float]] = field(default_factory=lambda: {h: [] for h in HOPS})
    pieces: list[int] = field(default_factory=list)  # answer packets the upstream sent

    def median(self, hop: str) -> float:
        return quantile(self.times[hop], 0.5)


def split_calls(packets: list[tuple[float, str]]) -> list[list[tuple[float, str]]]:
    """Packets (time, direction) cut into calls: a call starts with the client's first
    packet after the proxy answered the previous one (the client waits for each answer).
    Directions: "cp" client to proxy, "pu" proxy to upstream, "up" back, "pc" back."""
    calls: list[list[tuple[float, str]]] = []
    current: list[tuple[float, str]] = []
    for packet in packets:
        if packet[1] == "cp" and any(d == "pc" for _, d in current):
            calls.append(current)
            current = []
        current.append(packet)
    if current:
        calls.append(current)
    return calls


def call_hops(call: list[tuple[float, str]]) -> dict[str, float] | None:
    """One call's hops in µs, or None when its packets are not a whole call (the
    capture's first and last, or a call the proxy did not forward)."""
    first_pu = next((i for i, (_, d) in enumerate(call) if d == "pu"), None)
    if first_pu is None or call[0][1] != "cp":
        return None
    last_cp = max(i for i, (_, d) in enumerate(call[:first_pu]) if d == "cp")
    ups = [i for i, (_, d) in enumerate(call) if d == "up"]
    pcs = [i for i, (_, d) in enumerate(call) if d == "pc"]
    if not ups or not pcs or pcs[-1] < ups[-1]:
        return None
    last_pu = max(i for i, (_, d) in enumerate(call[: ups[0]]) if d == "pu")
    first_pc = next((i for i in pcs if i > ups[0]), None)
    if first_pc is None:
        return None
    t = [time for time, _ in call]
    return {
        "request": (t[first_pu] - t[last_cp]) * 1e6,
        "upstream": (t[ups[0]] - t[last_pu]) * 1e6,
        "head": (t[first_pc] - t[ups[0]]) * 1e6,
        "end": (t[pcs[-1]] - t[ups[-1]]) * 1e6,
        "total": (t[pcs[-1]] - t[0]) * 1e6,
        "pieces": float(len(ups)),
    }


def read_capture(pcap: Path, proxy_port: int, upstream_port: int) -> list[tuple[float, str]]:
    text = subprocess.run(
        ["tcpdump", "-r", str(pcap), "-tt", "-nn", "-q"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    packets = []
    for line in text.splitlines():
        match = LINE.match(line)
        if match is None:
            continue
        source, destination = int(match[2]), int(match[3])
        if destination == proxy_port:
            direction = "cp"
        elif source == proxy_port:
            direction = "pc"
        elif destination == upstream_port:
            direction = "pu"
        elif source == upstream_port:
            direction = "up"
        else:
            continue
        packets.append((float(match[1]), direction))
    return packets


class Capture:
    """tcpdump on `lo` for the two ports, pinned beside the client; ready once it says
    it listens (its first line on stderr), flushed and stopped by SIGINT."""

    def __init__(self, pcap: Path, ports: tuple[int, int], cpu: int) -> None:
        expression = f"tcp and (port {ports[0]} or port {ports[1]}) and {PAYLOAD}"
        self.proc = subprocess.Popen(
            ["taskset", "-c", str(cpu), "tcpdump", "-i", "lo", "-nn", "-U", "-B", "16384",
             "-w", str(pcap), expression],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()  # "listening on lo, ..." or why not
        if "listening on" not in line:
            self.proc.kill()
            raise SystemExit(f"tcpdump could not capture on lo: {line.strip()}")

    def stop(self) -> None:
        self.proc.send_signal(2)
        self.proc.wait(30)


async def _calls(session: Session, count: int) -> None:
    for _ in range(count):
        await session.call()


def measure_peer(
    peer: str, args: argparse.Namespace, scratch: Path, url: str, upstream_port: int
) -> dict[str, list[float]]:
    spec = systems.PEERS[peer]
    port = procs.first_free_port(upstream_port + 1)
    server = procs.start(
        peer, spec.argv(scratch, port, url), port, cpu=args.proxy_cpu, log_dir=scratch
    )
    try:
        target = spec.setup(scratch, port, url)
        session = Session(target)

        async def run() -> None:
            await session.open()
            try:
                target.tool = await discover_tool(session)
                await _calls(session, args.warmup)
                capture = Capture(scratch / f"{peer}.pcap", (port, upstream_port), args.client_cpu)
                try:
                    await _calls(session, args.calls)
                finally:
                    capture.stop()
            finally:
                session.close()

        asyncio.run(run())
    finally:
        procs.stop(server)
    hops: dict[str, list[float]] = {h: [] for h in (*HOPS, "pieces")}
    for call in split_calls(read_capture(scratch / f"{peer}.pcap", port, upstream_port)):
        one = call_hops(call)
        if one is not None:
            for hop, value in one.items():
                hops[hop].append(value)
    return hops


def report(results: dict[str, Hops], calls: int) -> None:
    print(
        "\n| peer | calls seen | "
        + " | ".join(f"{h} µs (p90)" for h in HOPS)
        + " | answer packets |"
    )
    print("| --- | ---: | " + " | ".join("---:" for _ in HOPS) + " | ---: |")
    for peer, hops in results.items():
        cells = [f"{hops.median(h):.1f} ({quantile(hops.times[h], 0.9):.0f})" for h in HOPS]
        seen = len(hops.times["total"])
        packets = sum(hops.pieces) / max(1, len(hops.pieces))
        print(f"| {peer} | {seen} of {calls} | " + " | ".join(cells) + f" | {packets:.1f} |")
    if "nginx" in results:
        base = results["nginx"]
        print("\nmedian / nginx's median:")
        for peer, hops in results.items():
            if peer != "nginx":
                ratios = ", ".join(f"{h} {hops.median(h) / base.median(h):.2f}x" for h in HOPS)
                own = sum(hops.median(h) - base.median(h) for h in ("request", "head", "end"))
                print(f"  {peer}: {ratios}; its own turnarounds (request + head + end) "
                      f"{own:+.1f} µs against nginx's")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", default="runmcp_fast,nginx,nginx-fwd")
    parser.add_argument("--upstream", default="sdk", help="sdk, sdk-json or everything")
    parser.add_argument("--calls", type=int, default=1000, help="counted calls a round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--base-port", type=int, default=27781)
    parser.add_argument("--client-cpu", type=int, default=0)
    parser.add_argument("--proxy-cpu", type=int, default=1)
    args = parser.parse_args()
    peers = args.peers.split(",")
    unknown = [p for p in peers if p not in systems.PEERS]
    if unknown:
        raise SystemExit(f"unknown peers {unknown}: choose from {sorted(systems.PEERS)}")
    procs.ensure_installed(["tcpdump", *(["nginx"] if any("nginx" in p for p in peers) else [])])
    os.sched_setaffinity(0, {args.client_cpu})
    chosen = systems.UPSTREAMS[args.upstream]
    chosen.install()
    results = {peer: Hops() for peer in peers}
    with tempfile.TemporaryDirectory(prefix="runmcp-hops-", ignore_cleanup_errors=True) as tmp:
        scratch = Path(tmp)
        up_port = procs.first_free_port(args.base_port)
        upstream = procs.start(
            "upstream", chosen.argv(up_port), up_port, cpu=args.client_cpu, log_dir=scratch
        )
        try:
            url = f"http://127.0.0.1:{up_port}/mcp"
            for round_ in range(args.rounds):
                for peer in peers if round_ % 2 == 0 else peers[::-1]:
                    hops = measure_peer(peer, args, scratch, url, up_port)
                    for hop in HOPS:
                        results[peer].times[hop] += hops[hop]
                    results[peer].pieces += [int(p) for p in hops["pieces"]]
                    print(
                        f"  round {round_ + 1}: {peer}: {len(hops['total'])} calls, "
                        f"total median {quantile(hops['total'], 0.5):.0f} µs",
                        file=sys.stderr,
                    )
        finally:
            procs.stop(upstream)
    print(f"# tools/call through each peer, {args.upstream} upstream, {args.rounds} rounds of "
          f"{args.calls} sequential calls; the proxy on CPU {args.proxy_cpu}, the client, "
          f"the upstream and tcpdump on CPU {args.client_cpu}")  # fmt: skip
    report(results, args.calls * args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
