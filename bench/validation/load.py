"""End to end: POST ~1 KB JSON orders through the gateway with contract validation on vs off.

The setup of bench/load (and /work/shared/BENCHMARKS.md): one upstream nginx answering
`return 200` with a fixed 1 KB body, wrk (1 thread) and the upstream pinned to CPU 0,
the proxy under test to CPU 1. Two runmcp_fast gateways, one worker each, serve the
same OpenAPI 3.1 spec (`POST /orders`, createOrder, body: the `Order` schema of
bench/validation/workload.py); their configs differ only in `validation.mode`: "on"
(each body is buffered, decoded and checked before it goes upstream) and "off" (the
body streams through unchecked). An nginx proxy runs beside them for reference.

Before the load, curl checks that the validating gateway answers a valid body with the
upstream's 200 and an invalid one with 400 (never reaching the upstream), and that the
gateway with validation off passes the invalid one through.

    .venv/bin/python bench/validation/load.py [--seconds 6] [--connections 64]
        [--repeats 2] [--no-nginx] [--json out.json]

Runs are alternated (off, on, on, off, ...) so a drift in the machine's load does not
favour one mode; each row is one run, the summary compares the medians of each mode's
quiet runs (no `busy elsewhere` note; all runs when none is quiet, and it says so).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
# bench/load's modules import each other by their bare names; put them first
# (its run.py, not this directory's, is the `run` imported here).
sys.path.insert(0, str(HERE.parent / "load"))
sys.path.insert(1, str(REPO))

import configs  # noqa: E402
import procs  # noqa: E402
import run as load_run  # noqa: E402
from cases import SMALL, Case  # noqa: E402
from tables import LEGEND, NOISY, TITLES, Row, case_table  # noqa: E402

from bench.validation.workload import SIZES, openapi_spec  # noqa: E402

ON, OFF = "validation-on", "validation-off"
TITLES.update(
    {
        ON: "runmcp_fast, validation on",
        OFF: "runmcp_fast, validation off",
    }
)
PORT_OFFSETS = {"nginx": 1, OFF: 10, ON: 11}
TARGET = 0.85  # req/s with validation on / off, printed, never asserted

ORDER = SIZES["1k"]
CASE = Case("post-order-1k", "POST", "/orders", ORDER.body, SMALL)


def gateway(scratch: Path, port: int, upstream_port: int, spec: Path, mode: str) -> list[str]:
    """`runmcp-fast serve` with one service: the orders spec, validation `mode`."""
    config = {
        "listeners": [{"address": f"127.0.0.1:{port}"}],
        "services": [
            {
                "name": "orders",
                "upstream": f"http://127.0.0.1:{upstream_port}",
                "openapi": str(spec),
                "base_path": "/",
                "validation": {"mode": mode},
            }
        ],
        "limits": {"max_connections": configs.MAX_CONNECTIONS},
    }
    # JSON, not YAML: YAML 1.1 reads a bare `on`/`off` as a boolean.
    path = scratch / f"gateway-{mode}.json"
    path.write_text(json.dumps(config, indent=1))
    return [configs.runmcp_fast_binary(), "serve", "-c", str(path)]


def curl(port: int, body: bytes) -> tuple[int, bytes]:
    """POST `body` with curl; the status and the answer's body."""
    done = subprocess.run(
        [
            "curl",
            "-sS",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            "@-",
            f"http://127.0.0.1:{port}{CASE.path}",
        ],
        input=body,
        capture_output=True,
        timeout=30,
        check=True,
    )
    answer, _, status = done.stdout.rpartition(b"\n")
    return int(status), answer


def checks(ports: dict[str, int]) -> list[str]:
    """The curl checks; a list of problems (empty when all passed), each check printed."""
    problems = []
    expect = [
        (ON, ORDER.body, 200, "valid order"),
        (ON, ORDER.invalid, 400, f"invalid order ({ORDER.why_invalid})"),
        (OFF, ORDER.body, 200, "valid order"),
        (OFF, ORDER.invalid, 200, "invalid order, not checked"),
    ]
    for peer, body, want, what in expect:
        if peer not in ports:
            continue
        status, answer = curl(ports[peer], body)
        line = f"curl POST {CASE.path} to {peer}: {what} -> {status}"
        if status == 200:
            line += f" ({len(answer):,} B from the upstream)"
        else:
            line += f": {answer[:160].decode(errors='replace')}"
        print(line)
        if status != want:
            problems.append(f"{line} (expected {want})")
    return problems


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=6, help="wrk run per measurement")
    parser.add_argument("--warmup", type=int, default=1, help="wrk run before each, not counted")
    parser.add_argument("--connections", default="64", help="wrk connections, comma-separated")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each mode, alternated")
    parser.add_argument("--no-nginx", action="store_true", help="skip the nginx proxy")
    parser.add_argument("--base-port", type=int, default=28181, help="upstream; peers above it")
    parser.add_argument("--client-cpu", type=int, default=0, help="CPU for wrk and the upstream")
    parser.add_argument("--proxy-cpu", type=int, default=1, help="CPU for the proxy under test")
    parser.add_argument("--quiet-wait", type=float, default=10.0)
    parser.add_argument(
        "--retries", type=int, default=2, help="measure again while a neighbour was busy"
    )
    parser.add_argument("--json", type=Path, help="also write every row here")
    args = parser.parse_args(argv)
    args.connections = [int(c) for c in args.connections.split(",")]
    args.peers = ([] if args.no_nginx else ["nginx"]) + [OFF, ON]
    return args


def start(args: argparse.Namespace, scratch: Path, servers: list[procs.Server]) -> load_run.Bench:
    up_port = args.base_port
    upstream = procs.start(
        "upstream-nginx",
        configs.upstream_nginx(scratch, up_port),
        up_port,
        cpu=args.client_cpu,
        log_dir=scratch,
    )
    servers.append(upstream)
    bench = load_run.Bench(args, upstream, scratch)
    spec = scratch / "orders.json"
    spec.write_text(json.dumps(openapi_spec(), indent=1))
    for peer in args.peers:
        port = args.base_port + PORT_OFFSETS[peer]
        if peer == "nginx":
            argv = configs.nginx_proxy(scratch, port, up_port)
        else:
            argv = gateway(scratch, port, up_port, spec, "on" if peer == ON else "off")
        server = procs.start(peer, argv, port, cpu=args.proxy_cpu, log_dir=scratch)
        servers.append(server)
        bench.proxies[peer] = server
        print(f"started {peer} on :{port} (pid {server.pid})", file=sys.stderr)
    return bench


def order(peers: list[str], repeat: int) -> list[str]:
    """nginx first, then off/on alternated: off, on in even repeats, on, off in odd ones."""
    modes = [OFF, ON] if repeat % 2 == 0 else [ON, OFF]
    return [p for p in peers if p not in modes] + modes


def summary(rows: list[Row], connections: int) -> str:
    """One line: the medians per mode, over its quiet runs when it has any."""

    def kept(peer: str) -> tuple[list[Row], bool]:
        mine = [r for r in rows if r.peer == peer and r.wrk and not r.flags]
        quiet = [r for r in mine if r.noise <= NOISY]
        return (quiet, True) if quiet else (mine, False)

    (on, on_quiet), (off, off_quiet) = kept(ON), kept(OFF)
    if not on or not off:
        return f"| {connections} | - | - | not measured | - | - | - | - |"
    on_rps, off_rps = (statistics.median(r.rps for r in x) for x in (on, off))
    on_cpu, off_cpu = (statistics.median(r.cpu_us for r in x) for x in (on, off))
    ratio = on_rps / off_rps
    verdict = "met" if ratio >= TARGET else "NOT met"
    basis = f"off {len(off)}, on {len(on)}"
    if not (on_quiet and off_quiet):
        basis += "; NOISY: no quiet run of " + " or ".join(
            m for m, q in (("off", off_quiet), ("on", on_quiet)) if not q
        )
    return (
        f"| {connections} | {off_rps:,.0f} | {on_rps:,.0f} | {ratio:.2f} {verdict} "
        f"| {off_cpu:.1f} | {on_cpu:.1f} | {on_cpu - off_cpu:+.1f} | {basis} |"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cpus = os.sched_getaffinity(0)
    if not {args.client_cpu, args.proxy_cpu} <= cpus or args.client_cpu == args.proxy_cpu:
        raise SystemExit(f"need two distinct CPUs {args.client_cpu}, {args.proxy_cpu}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    procs.ensure_installed(["nginx", "taskset", "wrk"])
    if shutil.which("curl") is None:
        raise SystemExit("curl is needed for the checks before the load (apt-get install curl)")
    procs.raise_nofile_limit()
    missing = configs.gateway_available()
    if missing:
        raise SystemExit(f"runmcp_fast can not run: {missing}")
    busy = [
        p
        for p in [args.base_port, *(args.base_port + PORT_OFFSETS[x] for x in args.peers)]
        if not procs.port_is_free(p)
    ]
    if busy:
        raise SystemExit(f"ports in use: {busy}; pick another --base-port")
    print(
        f"# Validation load benchmark: POST {CASE.path}, {len(CASE.body):,} B JSON body"
        f" ({ORDER.definition}), {args.seconds} s per run after {args.warmup} s of warm-up,"
        f" {args.repeats} runs per mode; wrk -t1 and the upstream on CPU {args.client_cpu},"
        f" the proxy on CPU {args.proxy_cpu}"
    )
    all_rows: list[Row] = []
    lines = [
        f"| conns | req/s off | req/s on | on / off (target >= {TARGET}) | CPU µs/req off"
        " | CPU µs/req on | validation's CPU µs/req | runs (quiet ones only, if any) |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | --- |",
    ]
    with tempfile.TemporaryDirectory(prefix="bench-validation-") as tmp, procs.running() as servers:
        bench = start(args, Path(tmp), servers)
        problems = checks({p: bench.port(p) for p in args.peers})
        if problems:
            for problem in problems:
                print(f"FAILED: {problem}", file=sys.stderr)
            return 1
        time.sleep(0.5)
        for connections in args.connections:
            rows: list[Row] = []
            for repeat in range(args.repeats):
                for peer in order(args.peers, repeat):
                    if peer == "nginx" and repeat:
                        continue  # the reference, measured once
                    print(f"  c={connections} {peer} run {repeat + 1} ...", file=sys.stderr)
                    rows.append(bench.measure(peer, CASE, connections))
            print(f"\n### {CASE.label} ({len(CASE.body):,} B), {connections} connections\n")
            print(case_table(rows), flush=True)
            lines.append(summary(rows, connections))
            all_rows += rows
    print("\n" + LEGEND)
    print(
        "\n### Validation on vs off (medians over each mode's runs without a `busy elsewhere`"
        " note, or over all when none is quiet; printed, never asserted)\n"
    )
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps([r.as_dict() for r in all_rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
