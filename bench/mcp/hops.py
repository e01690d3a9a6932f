"""Where a proxied MCP `tools/call` spends its time, hop by hop, from a loopback capture.

`run.py` gives each proxy's added latency as one number; this splits it. The upstream
(`--upstream`, `sdk` by default) and this client share CPU 0, the proxies under test
CPU 1 (`taskset`), and `--calls` sequential calls of the echo tool go through
each peer (all running at once, each with its own session; the calls interleaved in
balanced orders, so drift hits all alike), and tcpdump records every packet with a
payload to and from the proxies and the upstream (a run with packets dropped stops
with an error). Per call:

- request: the client's last request packet to the proxy's first packet to the upstream
  (the proxy's wake-up, read, parse, checks and write);
- upstream: the proxy's last request packet to the upstream's first answer packet;
- head: the upstream's first answer packet to the proxy's first packet to the client;
- end: the upstream's last answer packet to the proxy's last packet to the client;
- total: the client's first packet to the proxy's last.

On loopback a packet is time-stamped when the kernel queues it for its receiver, still
in the sender's system call, so `request`, `head` and `end` are the proxy's turnarounds:
the kernel's delivery to it and its wake-up (the same for every peer), then its own
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
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE.parent / "load"))  # procs: ports, pinned servers

import procs  # noqa: E402
import systems  # noqa: E402
from client import Session, Target, discover_tool  # noqa: E402
from measure import balanced_orders, quantile  # noqa: E402

HOPS = ("request", "upstream", "head", "end", "total")
# One upstream exchange a call, each: what the hops assume.
PEERS = (systems.GATEWAY, "nginx", "nginx-fwd")
# Only packets that carry bytes: the TCP payload is the IP length less both headers.
PAYLOAD = "(ip[2:2] - ((ip[0] & 0xf) << 2) - ((tcp[12] & 0xf0) >> 2)) > 0"
LINE = re.compile(r"^(\d+\.\d+) IP 127\.0\.0\.1\.(\d+) > 127\.0\.0\.1\.(\d+): tcp (\d+)")


@dataclass(frozen=True)
class Packet:
    time: float  # seconds, as tcpdump stamped it
    direction: str  # cp, pu, up, pc (see split_calls)
    peer: str | None = None  # the proxy, on its client side


@dataclass
class Hops:
    """One peer's hops: each one's times (µs), an entry a call."""

    times: dict[str, list[float]] = field(default_factory=lambda: {h: [] for h in HOPS})
    pieces: list[int] = field(default_factory=list)  # answer packets the upstream sent

    def median(self, hop: str) -> float:
        return quantile(self.times[hop], 0.5)


def split_calls(packets: list[Packet]) -> list[list[Packet]]:
    """One proxy's packets cut into calls: a call starts with the client's first packet
    after the previous call's answer (the client waits for each). Directions: "cp"
    client to proxy, "pu" proxy to upstream, "up" back, "pc" back."""
    calls: list[list[Packet]] = []
    current: list[Packet] = []
    for packet in packets:
        if packet.direction == "cp" and any(p.direction == "pc" for p in current):
            calls.append(current)
            current = []
        current.append(packet)
    if current:
        calls.append(current)
    return calls


def call_hops(call: list[Packet]) -> dict[str, float] | None:
    """One call's hops in µs, or None when its packets are not a whole call (the
    capture's first and last, or a call the proxy did not forward)."""
    kinds = [p.direction for p in call]
    if not call or kinds[0] != "cp" or "pu" not in kinds:
        return None
    first_pu = kinds.index("pu")
    last_cp = max(i for i in range(first_pu) if kinds[i] == "cp")
    # (an upstream packet before the request went on is the previous call's tail)
    ups = [i for i, d in enumerate(kinds) if d == "up" and i > first_pu]
    pcs = [i for i, d in enumerate(kinds) if d == "pc"]
    if not ups or not pcs or pcs[-1] < ups[-1]:
        return None
    last_pu = max(i for i in range(first_pu, ups[0]) if kinds[i] == "pu")
    first_pc = next((i for i in pcs if i > ups[0]), None)
    if first_pc is None:
        return None
    t = [p.time for p in call]
    return {
        "request": (t[first_pu] - t[last_cp]) * 1e6,
        "upstream": (t[ups[0]] - t[last_pu]) * 1e6,
        "head": (t[first_pc] - t[ups[0]]) * 1e6,
        "end": (t[pcs[-1]] - t[ups[-1]]) * 1e6,
        "total": (t[pcs[-1]] - t[0]) * 1e6,
        "pieces": float(len(ups)),
    }


def read_capture(pcap: Path, proxies: dict[int, str], upstream_port: int) -> list[Packet]:
    text = subprocess.run(
        ["tcpdump", "-r", str(pcap), "-tt", "-nn", "-q"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return parse_capture(text, proxies, upstream_port)


def parse_capture(text: str, proxies: dict[int, str], upstream_port: int) -> list[Packet]:
    """tcpdump's text, as packets with their direction and their proxy (`proxies`:
    port -> peer). An upstream connection is a proxy's whose request came right after
    that proxy's client spoke: its first packet in the capture follows one of the calls
    through it (the client waits for each answer, and the proxies were warmed up)."""
    owner: dict[int, str] = {}  # a proxy's local port towards the upstream -> the proxy
    last_client: str | None = None
    packets = []
    for line in text.splitlines():
        match = LINE.match(line)
        if match is None:
            continue
        time, source, destination = float(match[1]), int(match[2]), int(match[3])
        if destination in proxies:
            last_client = proxies[destination]
            packets.append(Packet(time, "cp", last_client))
        elif source in proxies:
            packets.append(Packet(time, "pc", proxies[source]))
        elif destination == upstream_port:
            if source not in owner and last_client is not None:
                owner[source] = last_client
            packets.append(Packet(time, "pu", owner.get(source)))
        elif source == upstream_port:
            packets.append(Packet(time, "up", owner.get(destination)))
    return packets


def per_peer(packets: list[Packet]) -> dict[str, list[Packet]]:
    """Each proxy's packets alone: an answer's last bytes may go out after the client
    started its next call, through another proxy (the SDK's server ends a stream after
    its event)."""
    out: dict[str, list[Packet]] = {}
    for packet in packets:
        if packet.peer is not None:
            out.setdefault(packet.peer, []).append(packet)
    return out


class Capture:
    """tcpdump on `lo` for `ports`, pinned beside the client; ready once it says it
    listens (its first line on stderr); stopped by SIGINT, which writes out every
    packet (immediate mode: none is left in a half-filled ring block)."""

    def __init__(self, pcap: Path, ports: list[int], cpu: int) -> None:
        either = " or ".join(f"port {port}" for port in ports)
        expression = f"tcp and ({either}) and {PAYLOAD}"
        # -s 128: a slot of the capture's ring is as large as a packet may be (64 KB on
        # lo) unless the snapshot is short; the headers are all this needs, and
        # without it a burst filled the ring and packets were dropped.
        self.proc = subprocess.Popen(
            ["taskset", "-c", str(cpu), "tcpdump", "-i", "lo", "-nn", "-U", "--immediate-mode",
             "-s", "128", "-B", "16384", "-w", str(pcap), expression],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert self.proc.stderr is not None
        said = []
        for line in self.proc.stderr:  # its warnings, then "listening on lo, ..."
            said.append(line.strip())
            if "listening on" in line:
                return
        self.proc.kill()
        self.proc.wait()
        raise SystemExit(f"tcpdump could not capture on lo: {' '.join(said)}")

    def stop(self) -> int:
        """Stop it; the number of packets the kernel dropped (its last words)."""
        self.proc.send_signal(signal.SIGINT)
        try:
            _, said = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, said = self.proc.communicate()
        dropped = re.search(r"(\d+) packets? dropped by kernel", said or "")
        return int(dropped[1]) if dropped else 0


async def interleaved(sessions: list[Session], rounds: int) -> None:
    """`rounds` calls through each session, in balanced orders (each one right after
    each other one equally often: what a call meets of the one before is shared)."""
    orders = balanced_orders(len(sessions)) if len(sessions) > 1 else [[0]]
    for round_ in range(rounds):
        for index in orders[round_ % len(orders)]:
            await sessions[index].call()


def measure(
    peers: list[str], args: argparse.Namespace, scratch: Path, url: str, upstream_port: int
) -> dict[str, Hops]:
    """Every peer started at once in front of the upstream, one session each; the
    counted calls interleaved under one capture."""
    servers: list[procs.Server] = []
    ports: dict[int, str] = {}
    try:
        targets: list[Target] = []
        for peer in peers:
            spec = systems.PEERS[peer]
            port = procs.first_free_port(max([upstream_port, *ports]) + 1)
            servers.append(
                procs.start(
                    peer, spec.argv(scratch, port, url), port, cpu=args.proxy_cpu, log_dir=scratch
                )
            )
            ports[port] = peer
            targets.append(spec.setup(scratch, port, url))
        pcap = scratch / "hops.pcap"

        async def run() -> None:
            sessions = [Session(target) for target in targets]
            try:
                for session, target in zip(sessions, targets, strict=True):
                    await session.open()
                    target.tool = await discover_tool(session)
                await interleaved(sessions, args.warmup)
                capture = Capture(pcap, [*ports, upstream_port], args.client_cpu)
                try:
                    await interleaved(sessions, args.calls)
                finally:
                    dropped = capture.stop()
                if dropped:
                    raise SystemExit(
                        f"tcpdump dropped {dropped} packets: calls would be cut wrong"
                        " (a quieter machine, or fewer --calls)"
                    )
            finally:
                for session in sessions:
                    session.close()

        asyncio.run(run())
    finally:
        for server in servers:
            procs.stop(server)
    results = {peer: Hops() for peer in peers}
    for peer, packets in per_peer(read_capture(pcap, ports, upstream_port)).items():
        for call in split_calls(packets):
            one = call_hops(call)
            if one is not None:
                for hop in HOPS:
                    results[peer].times[hop].append(one[hop])
                results[peer].pieces.append(int(one["pieces"]))
    return results


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
                print(f"  {peer}: {ratios}; its turnarounds (request + head + end) "
                      f"{own:+.1f} µs against nginx's")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", default="runmcp_fast,nginx,nginx-fwd")
    parser.add_argument("--upstream", default="sdk", help="sdk, sdk-json or everything")
    parser.add_argument("--calls", type=int, default=1000, help="counted calls through each peer")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--base-port", type=int, default=27781)
    parser.add_argument("--client-cpu", type=int, default=0)
    parser.add_argument("--proxy-cpu", type=int, default=1)
    args = parser.parse_args()
    peers = args.peers.split(",")
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        # (the others make more than one upstream exchange a call, or need their venvs:
        # run.py measures them)
        raise SystemExit(f"unknown peers {unknown}: choose from {', '.join(PEERS)}")
    if systems.GATEWAY in peers and systems.gateway_missing():
        raise SystemExit(systems.gateway_missing())
    procs.ensure_installed(["tcpdump", *(["nginx"] if any("nginx" in p for p in peers) else [])])
    os.sched_setaffinity(0, {args.client_cpu})
    chosen = systems.UPSTREAMS[args.upstream]
    chosen.install()
    with tempfile.TemporaryDirectory(prefix="runmcp-hops-", ignore_cleanup_errors=True) as tmp:
        scratch = Path(tmp)
        up_port = procs.first_free_port(args.base_port)
        upstream = procs.start(
            "upstream", chosen.argv(up_port), up_port, cpu=args.client_cpu, log_dir=scratch
        )
        try:
            results = measure(peers, args, scratch, f"http://127.0.0.1:{up_port}/mcp", up_port)
        finally:
            procs.stop(upstream)
    print(f"# tools/call, {args.upstream} upstream: {args.calls} sequential calls through each "
          f"peer, interleaved; the proxies on CPU {args.proxy_cpu}, the client, the upstream and "
          f"tcpdump on CPU {args.client_cpu}")  # fmt: skip
    report(results, args.calls)
    return 0


if __name__ == "__main__":
    sys.exit(main())
