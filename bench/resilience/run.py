"""p99 latency and throughput through runmcp_fast with one failing replica of three.

The last piece of the upstream-resilience benchmark (docs/resilience.md): one service
with 3 replicas (the defaults: least-request balancing, outlier ejection after 5
failures in a row for 30 s, 2 retries within a 20 % budget) and `timeouts.first_byte: 1`,
in four scenarios:

  healthy    all three replicas answer the 1 KB body (nginx, three ports);
  500        the third always answers 500 (an nginx `return 500;`);
  refused    the third is a port nothing listens on (connections refused);
  blackhole  the third accepts and never answers (blackhole.py): each request sent
             there waits the 1 s first-byte timeout, then is retried on another replica.

GET 1 KB through one gateway worker, wrk with 64 connections; nginx, the blackhole
and wrk on CPU 0, the gateway on CPU 1 (the setup of bench/load). Each scenario
starts a fresh gateway, so the measured window includes finding the failing
replica and ejecting it (`--warmup N` runs wrk N s first, and then measures the
state after the ejection instead). Prints req/s, p50, p99, p99.9, max, wrk's
non-2xx count and socket errors, CPU µs per request of the gateway, and p99 and
req/s over the healthy run's; then, from GET /admin/upstreams, the retries by reason,
the retries the budget refused, and each replica's state. Numbers, never asserts.

wrk corrects its latencies for coordinated omission (stats_correct): a request that
took 1 s adds samples as if the requests it held up had waited too, so a few dozen
requests stuck at the 1 s timeout put the p99 near 1 s. The requests that really
waited it are the timeout retries plus the 504s (non-2xx) of the blackhole run.

    .venv/bin/python bench/resilience/run.py [--seconds 5] [--warmup 0]
        [--scenarios healthy,500,refused,blackhole] [--json out.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(HERE.parent / "load"), str(REPO)]

import configs  # noqa: E402
import procs  # noqa: E402
import wrkrun  # noqa: E402
from cases import SMALL, SMALL_RESPONSE  # noqa: E402

# 28300-28309: no other bench uses them.
GATEWAY_PORT = 28300
HEALTHY_PORTS = (28301, 28302, 28303)
FAILING_500_PORT = 28304
REFUSED_PORT = 28305  # nothing ever listens here
BLACKHOLE_PORT = 28306
ADMIN_PORT = 28307  # loopback, no token: GET /admin/upstreams after each run
FIRST_BYTE_TIMEOUT = 1  # s

# The third replica of each scenario; the first two are always healthy.
SCENARIOS = {
    "healthy": HEALTHY_PORTS[2],
    "500": FAILING_500_PORT,
    "refused": REFUSED_PORT,
    "blackhole": BLACKHOLE_PORT,
}

_HEALTHY_SERVER = """\
    server {{
        listen 127.0.0.1:{port} backlog={backlog};
        location / {{ return 200 '{small}'; }}
    }}"""
_FAILING_SERVER = """\
    server {{
        listen 127.0.0.1:{port} backlog={backlog};
        location / {{ return 500 '{{"error": "always failing"}}'; }}
    }}"""

# wrk prints p50..p99 with --latency; the p99.9 and the max come from this hook.
_DONE_SCRIPT = """\
done = function(summary, latency, requests)
  io.write(string.format("p99.9_us %d\\nmax_us %d\\n", latency:percentile(99.9), latency.max))
end
"""


def upstreams(scratch: Path) -> list[str]:
    """One nginx: three ports answering the 1 KB body, a fourth always answering 500."""
    assert "'" not in SMALL_RESPONSE.decode()
    servers = [
        _HEALTHY_SERVER.format(port=p, backlog=configs.BACKLOG, small=SMALL_RESPONSE.decode())
        for p in HEALTHY_PORTS
    ]
    servers.append(_FAILING_SERVER.format(port=FAILING_500_PORT, backlog=configs.BACKLOG))
    return configs._nginx(scratch / "upstream-nginx", "\n".join(servers))


def gateway_config(third_port: int) -> dict[str, Any]:
    ports = [*HEALTHY_PORTS[:2], third_port]
    spec = {
        "openapi": "3.0.3",
        "info": {"title": "bench", "version": "1"},
        "paths": {
            "/items": {"get": {"operationId": "items", "responses": {"200": {"description": "ok"}}}}
        },
    }
    return {
        "listeners": [{"address": f"127.0.0.1:{GATEWAY_PORT}"}],
        "services": [
            {
                "name": "bench",
                "upstream": [f"http://127.0.0.1:{p}" for p in ports],
                # balancer, outlier and retries: the defaults.
                "timeouts": {"first_byte": FIRST_BYTE_TIMEOUT},
                "openapi": spec,
                "validation": {"mode": "off"},
                "mcp": {"enabled": False},
            }
        ],
        "limits": {"max_connections": 20000},
        "admin": {"address": f"127.0.0.1:{ADMIN_PORT}"},
    }


def check(port: int) -> str | None:
    """One request; None when the gateway answers (any status: a failing replica may)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/items")
        answer = conn.getresponse()
        body = answer.read()
    except OSError as exc:
        return f"check failed: {exc}"
    finally:
        conn.close()
    if answer.status == 200 and len(body) != SMALL:
        return f"check got {len(body)} bytes: {body[:200]!r}"
    return None


def upstream_states() -> dict[str, Any]:
    """Retries by reason, and each replica's state, ejections and last error
    (GET /admin/upstreams, after the run)."""
    conn = http.client.HTTPConnection("127.0.0.1", ADMIN_PORT, timeout=10)
    try:
        conn.request("GET", "/admin/upstreams")
        data = json.loads(conn.getresponse().read())
        service = data["services"][0]
    except (OSError, ValueError, KeyError, IndexError) as exc:
        return {"error": repr(exc)}
    finally:
        conn.close()
    keys = ("url", "state", "ejections", "last_error")
    return {
        "retries": service["retries"],
        "budget_exhausted": service["retry_budget"]["exhausted"],
        "replicas": [{k: r.get(k) for k in keys} for r in service["replicas"]],
    }


def wrk_extra(output: str) -> dict[str, float]:
    found = {}
    for line in output.splitlines():
        name, _, value = line.partition(" ")
        if name in ("p99.9_us", "max_us"):
            found[name[:-3] + "_ms"] = int(value) / 1e3
    return found


def measure(
    name: str, gateway: procs.Server, script: Path, args: argparse.Namespace
) -> dict[str, Any]:
    problem = check(gateway.port)
    if problem is not None:
        return {"scenario": name, "error": problem}
    url = f"http://127.0.0.1:{gateway.port}/items"
    load = {"connections": 64, "script": script, "cpu": 0}
    if args.warmup:
        wrkrun.run(url, seconds=args.warmup, **load)
    procs.wait_quiet((0, 1), limit=0.10, timeout=10)
    before = procs.tree_cpu_seconds(gateway.pid)
    result = wrkrun.run(url, seconds=args.seconds, **load)
    cpu = procs.tree_cpu_seconds(gateway.pid) - before
    return {
        "scenario": name,
        "requests": result.requests,
        "rps": result.rps,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        **wrk_extra(result.output),
        "non_2xx": result.non_2xx,
        "socket_errors": sum(result.errors.values()),
        "us_per_request": cpu / result.requests * 1e6 if result.requests else float("nan"),
        "upstreams": upstream_states(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # The gateway processes import this checkout's runmcp_fast, not whichever one the
    # environment's editable install points at.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    procs.ensure_installed(["nginx", "taskset", "wrk"])
    procs.raise_nofile_limit()
    if not procs.port_is_free(REFUSED_PORT):
        raise SystemExit(f"port {REFUSED_PORT} must have nothing listening on it")
    wanted = [s for s in args.scenarios.split(",") if s]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-resilience-") as tmp, procs.running() as servers:
        scratch = Path(tmp)
        script = scratch / "done.lua"
        script.write_text(_DONE_SCRIPT)
        servers.append(
            procs.start("upstreams", upstreams(scratch), HEALTHY_PORTS[0], cpu=0, log_dir=scratch)
        )
        if "blackhole" in wanted:
            hole = [sys.executable, str(HERE / "blackhole.py"), str(BLACKHOLE_PORT)]
            servers.append(procs.start("blackhole", hole, BLACKHOLE_PORT, cpu=0, log_dir=scratch))
        for name in wanted:
            conf = scratch / f"gw-{name}.json"
            conf.write_text(json.dumps(gateway_config(SCENARIOS[name])))
            argv = [configs.runmcp_fast_binary(), "serve", "-c", str(conf)]
            gateway = procs.start(f"gw-{name}", argv, GATEWAY_PORT, cpu=1, log_dir=scratch)
            try:
                row = measure(name, gateway, script, args)
            finally:
                procs.stop(gateway)
            rows.append(row)
            print(f"  {name}: {row}", file=sys.stderr)
    print(table(rows, args))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


def table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    healthy = next((r for r in rows if r["scenario"] == "healthy" and "error" not in r), None)
    out = [
        f"\n### 3 replicas, one failing; GET 1 KB, 1 worker, 64 connections,"
        f" {args.seconds} s (warm-up {args.warmup} s)\n",
        "| third replica | req/s | p50 ms | p99 ms | p99.9 ms | max ms | non-2xx"
        " | socket errors | CPU µs/req | p99 x healthy | req/s x healthy |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['scenario']} | (!) {r['error'][:80]} |" + " |" * 9)
            continue
        p99x = f"{r['p99_ms'] / healthy['p99_ms']:.2f}" if healthy else ""
        rpsx = f"{r['rps'] / healthy['rps']:.2f}" if healthy else ""
        out.append(
            f"| {r['scenario']} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f}"
            f" | {r.get('p99.9_ms', float('nan')):.2f} | {r.get('max_ms', float('nan')):.1f}"
            f" | {r['non_2xx']:,} | {r['socket_errors']:,} | {r['us_per_request']:.1f}"
            f" | {p99x} | {rpsx} |"
        )
    out.append("")
    for r in rows:
        state = r.get("upstreams", {})
        if "error" in state:
            out.append(f"{r['scenario']}: /admin/upstreams: {state['error']}")
            continue
        if state:
            out.append(
                f"{r['scenario']}: retries {state['retries']},"
                f" budget exhausted {state['budget_exhausted']}"
            )
        out.extend(
            f"  {replica['url']} {replica['state']}, ejections {replica['ejections']},"
            f" last error {replica['last_error']}"
            for replica in state.get("replicas", [])
        )
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
