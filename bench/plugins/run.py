"""Plugins' cost per request, against the bare route and nginx, in the same run.

The matrix APISIX and Kong publish: no plugins / key-auth / jwt-auth (a cache
hit) / key-auth + ip-restriction + cors + request-id / a custom Python
plugin's dispatch / prometheus / limit-count (per worker, through Redis synced every
0.1 s, and exact: a Redis round trip per request) / key-auth + limit-count (+ prometheus),
/ opentelemetry unsampled (ratio 0, a traceparent made for each request) and sampled
(ratio 1, every span exported to a local OTLP receiver) / the access log (stdout to a
file, to /dev/null), with 1 route and 1 consumer,
and with 100 routes and 100 consumers. GET 1 KB through one worker, 64 connections,
the upstream and wrk
on CPU 0, the proxy on CPU 1 (the setup of bench/load). Prints CPU µs per
request of the proxy, req/s, p99, and each plugin set's µs over the bare
route. Numbers, never asserts.

    .venv/bin/python bench/plugins/run.py [--seconds 6] [--scales 1,100]
        [--sets bare,key-auth,jwt-auth,edge,python,limit-count,otel-sampled,access-log,...]
        [--json out.json]

The Redis sets start Debian's redis-server on CPU 0 (installed when missing); the otel
sets a local OTLP receiver (otlp_sink.py) on CPU 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(HERE.parent / "load"), str(REPO)]

import configs  # noqa: E402
import procs  # noqa: E402
import wrkrun  # noqa: E402
from cases import SMALL  # noqa: E402

from runmcp_fast.plugins.registry import registry_for  # noqa: E402

UPSTREAM_PORT = 28181
NGINX_PORT = 28182
GATEWAY_PORT = 28189
REDIS_PORT = 28190
REDIS_URL = f"redis://127.0.0.1:{REDIS_PORT}/0"
# A limit no benchmark reaches: what is measured is counting, never refusing.
NEVER = {"count": 1_000_000_000, "window": 60}
SINK_PORT = 28191  # the OTLP receiver of the otel sets (bench/plugins/otlp_sink.py)
JWT_SECRET = "bench-secret-0123456789abcdef0123456789"

# Plugin sets: the plugins every route gets (global), by what they need installed.
SETS: dict[str, dict[str, Any]] = {
    "bare": {},
    "key-auth": {"key-auth": {}},
    "jwt-auth": {"jwt-auth": {"keys": [{"alg": "HS256", "secret": JWT_SECRET}]}},
    "edge": {
        "key-auth": {},
        "ip-restriction": {"allow": ["127.0.0.0/8"]},
        "cors": {"allow_origins": ["https://app.example.com"]},
        "request-id": {},
    },
    "python": {"py-noop": {}},
    "prometheus": {"prometheus": {}},
    "limit-count": {"limit-count": NEVER},
    "limit-count-redis": {
        "limit-count": {
            **NEVER,
            "policy": "redis",
            "redis": {"url": REDIS_URL},
            "sync_interval": 0.1,
        }
    },
    # sync_interval 0: every request waits for a round trip to Redis (exact).
    "limit-count-redis-exact": {
        "limit-count": {**NEVER, "policy": "redis", "redis": {"url": REDIS_URL}, "sync_interval": 0}
    },
    "key-auth+limit-count": {"key-auth": {}, "limit-count": {**NEVER, "key": "consumer"}},
    "key-auth+limit-count+prometheus": {
        "key-auth": {},
        "limit-count": {**NEVER, "key": "consumer"},
        "prometheus": {},
    },
    # wrk sends no traceparent: each request gets a new (unsampled) one upstream.
    "otel-unsampled": {
        "opentelemetry": {
            "sample_ratio": 0.0,
            "create_traceparent": True,
            "endpoint": f"http://127.0.0.1:{SINK_PORT}/v1/traces",
        }
    },
    # Every request a span, exported to the local receiver with the SDK's defaults
    # (a 2048-span queue, 512 a batch): past what the batch thread can encode, spans
    # are dropped, so the receiver's count is printed beside the requests.
    "otel-sampled": {
        "opentelemetry": {
            "sample_ratio": 1.0,
            "endpoint": f"http://127.0.0.1:{SINK_PORT}/v1/traces",
        }
    },
    # The access log (`access_log: true`: the access-log plugin on every route, to stdout),
    # stdout redirected to a file (the process's log in the scratch directory) ...
    "access-log": {},
    # ... and to /dev/null: what building and handing over the lines costs, without the disk.
    "access-log-null": {},
}
# Config keys a set adds besides its plugins, and where its stdout goes (default: the log).
SET_CONFIG: dict[str, dict[str, Any]] = {
    "access-log": {"access_log": True},
    "access-log-null": {"access_log": True},
}
SET_STDOUT: dict[str, str] = {"access-log-null": "/dev/null"}


def spec(routes: int) -> dict[str, Any]:
    """An OpenAPI document with `routes` paths, each one GET without parameters."""
    paths = {
        f"/r{i}/items": {
            "get": {"operationId": f"op{i}", "responses": {"200": {"description": "ok"}}}
        }
        for i in range(routes)
    }
    return {"openapi": "3.0.3", "info": {"title": "bench", "version": "1"}, "paths": paths}


def consumers(count: int, set_name: str) -> list[dict[str, Any]]:
    out = []
    for i in range(count):
        consumer: dict[str, Any] = {"name": f"c{i}", "key-auth": {"key": f"key-{i:04d}-0123456789"}}
        if set_name == "jwt-auth":
            consumer["jwt-auth"] = {"claim": "sub", "value": f"c{i}"}
        out.append(consumer)
    return out


def gateway_config(scale: int, set_name: str, upstream_port: int) -> dict[str, Any]:
    return {
        "listeners": [{"address": f"127.0.0.1:{GATEWAY_PORT}"}],
        "plugins": SETS[set_name],
        "consumers": consumers(scale, set_name),
        "custom_plugins": ["python_plugin:Noop"] if set_name == "python" else [],
        "services": [
            {
                "name": "bench",
                "upstream": f"http://127.0.0.1:{upstream_port}",
                "openapi": spec(scale),
                "validation": {"mode": "off"},
                "mcp": {"enabled": False},
            }
        ],
        "limits": {"max_connections": 20000},
        **SET_CONFIG.get(set_name, {}),
    }


def uses_redis(set_name: str) -> bool:
    return any(
        isinstance(settings, dict) and settings.get("policy") == "redis"
        for settings in SETS.get(set_name, {}).values()
    )


def hs256_token(subject: str) -> str:
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64(json.dumps({"sub": subject, "exp": int(time.time()) + 86400}).encode())
    signed = f"{header}.{claims}".encode()
    signature = b64(hmac.new(JWT_SECRET.encode(), signed, hashlib.sha256).digest())
    return f"{header}.{claims}.{signature}"


def request_script(scratch: Path, scale: int, set_name: str) -> Path:
    """The wrk script: the middle route, and the credential of the consumer of that index."""
    index = scale // 2
    headers = {"Origin": "https://app.example.com"} if set_name == "edge" else {}
    if set_name in ("key-auth", "edge") or set_name.startswith("key-auth+"):
        headers["apikey"] = f"key-{index:04d}-0123456789"
    elif set_name == "jwt-auth":
        headers["Authorization"] = f"Bearer {hs256_token(f'c{index}')}"
    script = scratch / f"{set_name}-{scale}.lua"
    lines = [f'wrk.path = "/r{index}/items"']
    lines += [f'wrk.headers["{name}"] = "{value}"' for name, value in headers.items()]
    script.write_text("\n".join(lines) + "\n")
    return script


def check(port: int, script: Path) -> str | None:
    """One request as wrk will send it; None when it is a 200 with the 1 KB body."""
    import http.client

    text = script.read_text()
    path = text.split('wrk.path = "', 1)[1].split('"', 1)[0]
    headers = dict(
        (line.split('"')[1], line.split('"')[3]) for line in text.splitlines() if "headers" in line
    )
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        answer = conn.getresponse()
        body = answer.read()
    except OSError as exc:
        return f"check failed: {exc}"
    finally:
        conn.close()
    if answer.status != 200 or len(body) != SMALL:
        return f"check got {answer.status} with {len(body)} bytes: {body[:200]!r}"
    return None


def measure(
    name: str, server: procs.Server, script: Path, args: argparse.Namespace
) -> dict[str, Any]:
    problem = check(server.port, script)
    if problem is not None:
        return {"system": name, "error": problem}
    url = f"http://127.0.0.1:{server.port}/"
    load = {"connections": 64, "script": script, "cpu": 0}
    warm = wrkrun.run(url, seconds=args.warmup, **load)
    procs.wait_quiet((0, 1), limit=0.10, timeout=10)
    before = procs.tree_cpu_seconds(server.pid)
    result = wrkrun.run(url, seconds=args.seconds, **load)
    cpu = procs.tree_cpu_seconds(server.pid) - before
    return {
        "system": name,
        "requests": result.requests,
        "sent": warm.requests + result.requests + 1,  # with the warm-up and the check
        "rps": result.rps,
        "p99_ms": result.p99_ms,
        "us_per_request": cpu / result.requests * 1e6 if result.requests else float("nan"),
        "non_2xx": result.non_2xx,
    }


def sink_count() -> dict[str, int]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", SINK_PORT, timeout=10)
    try:
        conn.request("GET", "/count")
        counts: dict[str, int] = json.loads(conn.getresponse().read())
        return counts
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--scales", default="1,100")
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # The gateway processes import the Python plugin from here.
    # (and this checkout first: the console script would otherwise import whichever
    # runmcp_fast the environment's editable install points at, another worktree's)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    procs.ensure_installed(["nginx", "taskset", "wrk"])
    if any(uses_redis(s) for s in args.sets.split(",")):
        procs.ensure_installed(["redis-server"])
    procs.raise_nofile_limit()
    installed = set(registry_for()[0].names()) | {"py-noop"}
    if importlib.util.find_spec("opentelemetry.exporter.otlp.proto.http") is None:
        installed.discard("opentelemetry")  # the plugin is there, the SDK it needs is not
    wanted = [s for s in args.sets.split(",") if s]
    runnable = [s for s in wanted if set(SETS[s]) <= installed]
    for skipped in set(wanted) - set(runnable):
        print(f"skipping {skipped}: {sorted(set(SETS[skipped]) - installed)} not installed")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-plugins-") as tmp, procs.running() as servers:
        scratch = Path(tmp)
        upstream = procs.start(
            "upstream", configs.upstream_nginx(scratch, UPSTREAM_PORT), UPSTREAM_PORT,
            cpu=0, log_dir=scratch,
        )  # fmt: skip
        servers.append(upstream)
        if any(uses_redis(s) for s in runnable):
            redis = procs.start(
                "redis",
                ["redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", str(scratch)],
                REDIS_PORT, cpu=0, log_dir=scratch,
            )  # fmt: skip
            servers.append(redis)
        if any(s.startswith("otel-") for s in runnable):
            sink = [sys.executable, str(HERE / "otlp_sink.py"), str(SINK_PORT)]
            servers.append(procs.start("otlp-sink", sink, SINK_PORT, cpu=0, log_dir=scratch))
        for scale in (int(s) for s in args.scales.split(",")):
            nginx = procs.start(
                "nginx", configs.nginx_proxy(scratch, NGINX_PORT, UPSTREAM_PORT), NGINX_PORT,
                cpu=1, log_dir=scratch,
            )  # fmt: skip
            script = request_script(scratch, scale, "bare")
            row = measure("nginx", nginx, script, args)
            procs.stop(nginx)
            rows.append({**row, "scale": scale, "set": "nginx"})
            for set_name in runnable:
                conf = scratch / f"gw-{set_name}-{scale}.json"
                conf.write_text(json.dumps(gateway_config(scale, set_name, UPSTREAM_PORT)))
                argv = [configs.runmcp_fast_binary(), "serve", "-c", str(conf)]
                if set_name in SET_STDOUT:
                    # exec: the pid procs.start holds (and pins, and measures) is the gateway's.
                    command = " ".join(shlex.quote(a) for a in argv)
                    argv = ["sh", "-c", f"exec {command} >{shlex.quote(SET_STDOUT[set_name])}"]
                gateway = procs.start(f"gw-{set_name}", argv, GATEWAY_PORT, cpu=1, log_dir=scratch)
                spans = sink_count()["spans"] if set_name.startswith("otel-") else 0
                row = measure(set_name, gateway, request_script(scratch, scale, set_name), args)
                procs.stop(gateway)  # (a stop exports what the gateway still queues)
                if set_name.startswith("otel-") and "error" not in row:
                    row["spans"] = sink_count()["spans"] - spans
                rows.append({**row, "scale": scale, "set": set_name})
                print(f"  {scale} routes, {set_name}: {row}", file=sys.stderr)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


def table(rows: list[dict[str, Any]]) -> str:
    out = []
    for scale in sorted({r["scale"] for r in rows}):
        group = [r for r in rows if r["scale"] == scale]
        bare = next((r for r in group if r["set"] == "bare" and "error" not in r), None)
        nginx = next((r for r in group if r["set"] == "nginx" and "error" not in r), None)
        out.append(f"\n### {scale} route(s), {scale} consumer(s); GET 1 KB, 64 connections\n")
        out.append("| system | req/s | p99 ms | CPU µs/req | over bare route | CPU eff x nginx |")
        out.append("| --- | ---: | ---: | ---: | ---: | ---: |")
        for r in group:
            if "error" in r:
                out.append(f"| {r['set']} | (!) {r['error'][:80]} | | | | |")
                continue
            over = (
                r["us_per_request"] - bare["us_per_request"]
                if bare and r["set"] != "nginx"
                else None
            )
            eff = nginx["us_per_request"] / r["us_per_request"] if nginx else None
            out.append(
                f"| {r['set']} | {r['rps']:,.0f} | {r['p99_ms']:.2f} | {r['us_per_request']:.1f}"
                f" | {'' if over is None else f'{over:+.2f}'} | {'' if eff is None else f'{eff:.2f}'} |"
            )
        out.extend(
            f"\n{r['set']}: {r['spans']:,} spans exported for {r['sent']:,} requests"
            f" ({r['spans'] / r['sent']:.0%})"
            for r in group
            if "spans" in r
        )
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
