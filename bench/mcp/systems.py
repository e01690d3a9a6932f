"""The upstreams and the systems under test: installs, command lines, setup after start.

Peer venvs live in .cache/bench-venvs/<name> and the npm reference server in
.cache/npm (both git-ignored), made on first use from PyPI and npm.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from client import Target

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CACHE = REPO / ".cache"
VENVS = CACHE / "bench-venvs"
NPM_PREFIX = CACHE / "npm"

EVERYTHING_PACKAGE = "@modelcontextprotocol/server-everything"
EVERYTHING_VERSION = "2026.8.31"

# What each peer venv gets. fastmcp pins its own `mcp` (1.x), hence a venv of its own;
# uvloop + httptools make its uvicorn run the fast loop and parser, as ContextForge's
# dependencies already do for it.
VENV_REQUIREMENTS = {
    "fastmcp": ["fastmcp>=3,<4", "uvloop", "httptools"],
    "contextforge": ["mcp-contextforge-gateway==1.0.7"],
}

DIRECT = "direct"
GATEWAY = "runmcp_fast"


# --- installs -------------------------------------------------------------------


def ensure_venv(name: str) -> Path:
    """The python of .cache/bench-venvs/<name>, created and pip-installed on first use."""
    venv = VENVS / name
    python = venv / "bin" / "python"
    wanted = "\n".join(VENV_REQUIREMENTS[name])
    stamp = venv / ".bench-requirements"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print(
        f"creating {venv} ({', '.join(VENV_REQUIREMENTS[name])}): a minute or two", file=sys.stderr
    )
    VENVS.mkdir(parents=True, exist_ok=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            *VENV_REQUIREMENTS[name],
        ],
        check=True,
        timeout=1200,
        stdout=sys.stderr,
    )
    stamp.write_text(wanted)
    return python


def ensure_everything() -> Path:
    """dist/index.js of the reference server, npm-installed into .cache/npm on first use."""
    package = NPM_PREFIX / "node_modules" / EVERYTHING_PACKAGE
    index = package / "dist" / "index.js"
    try:
        installed = json.loads((package / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        installed = None
    if installed != EVERYTHING_VERSION or not index.exists():
        if shutil.which("npm") is None:
            raise SystemExit("npm is needed for the `everything` upstream (Debian: nodejs, npm)")
        print(
            f"installing {EVERYTHING_PACKAGE}@{EVERYTHING_VERSION} into {NPM_PREFIX}",
            file=sys.stderr,
        )
        NPM_PREFIX.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "npm",
                "install",
                "--prefix",
                str(NPM_PREFIX),
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                f"{EVERYTHING_PACKAGE}@{EVERYTHING_VERSION}",
            ],
            check=True,
            timeout=600,
            stdout=sys.stderr,
        )
    return index


def _env(**extra: str) -> list[str]:
    """`env K=V ...`: extra environment for a child started through procs.start."""
    return ["env", *(f"{k}={v}" for k, v in extra.items())]


# --- upstreams ------------------------------------------------------------------


@dataclass
class Upstream:
    name: str
    title: str
    argv: Callable[[int], list[str]]
    # What a tools/call of echo with `message` answers (its text content).
    echoes: Callable[[str], str] = lambda message: message
    install: Callable[[], Any] = lambda: None


def _everything(port: int) -> list[str]:
    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is needed for the `everything` upstream")
    return [*_env(PORT=str(port)), node, str(ensure_everything()), "streamableHttp"]


def _sdk(json_mode: bool) -> Callable[[int], list[str]]:
    def argv(port: int) -> list[str]:
        extra = ["--json"] if json_mode else []
        return [sys.executable, str(HERE / "echo_server.py"), "--port", str(port), *extra]

    return argv


def raw_sse_argv(port: int, keepalive: float) -> list[str]:
    return [
        sys.executable,
        str(HERE / "sse_upstream.py"),
        "--port",
        str(port),
        "--keepalive",
        str(keepalive),
    ]


UPSTREAMS = {
    "everything": Upstream(
        "everything",
        f"{EVERYTHING_PACKAGE} {EVERYTHING_VERSION}, streamableHttp (node; SSE answers)",
        _everything,
        echoes=lambda message: f"Echo: {message}",
        install=ensure_everything,
    ),
    "sdk": Upstream(
        "sdk", "mcp SDK server, one echo tool, stateful, SSE answers", _sdk(json_mode=False)
    ),
    "sdk-json": Upstream(
        "sdk-json", "mcp SDK server, one echo tool, stateful, JSON answers", _sdk(json_mode=True)
    ),
}


# --- systems under test -----------------------------------------------------------


@dataclass
class Peer:
    name: str
    title: str
    argv: Callable[[Path, int, str], list[str]]  # (scratch, port, upstream URL)
    # After the port accepts: finish the setup, return where sessions go.
    setup: Callable[[Path, int, str], Target]
    ready_timeout: float = 60.0
    venv: str | None = None
    notes: list[str] = field(default_factory=list)


def _plain_target(name: str) -> Callable[[Path, int, str], Target]:
    return lambda _scratch, port, _url: Target(name, port)


# --gateway-binary: another build of the console script (default: the venv's).
GATEWAY_BINARY: str | None = None


def runmcp_fast_binary() -> str:
    if GATEWAY_BINARY:
        return GATEWAY_BINARY
    beside = Path(sys.executable).with_name("runmcp-fast")
    return str(beside) if beside.exists() else (shutil.which("runmcp-fast") or "runmcp-fast")


def _serve_help() -> str:
    try:
        done = subprocess.run(
            [runmcp_fast_binary(), "serve", "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout if done.returncode == 0 else ""


def gateway_missing() -> str | None:
    """None if `runmcp-fast serve --mcp-upstream` exists, else why runmcp_fast is skipped."""
    text = _serve_help()
    if not text:
        return "`runmcp-fast serve --help` fails: is the package installed in this venv?"
    if "--mcp-upstream" not in text:
        return "`runmcp-fast serve` has no --mcp-upstream yet (the MCP proxy is not there)"
    return None


def _runmcp_fast(_scratch: Path, port: int, url: str) -> list[str]:
    argv = [runmcp_fast_binary(), "serve", "--listen", f"127.0.0.1:{port}", "--mcp-upstream", url]
    if "--workers" in _serve_help():
        argv += ["--workers", "1"]
    return argv


_GATEWAY_STREAMS = """\
# `runmcp-fast serve --mcp-upstream URL` as a config file, with the two caps an idle
# stream counts against lifted: it holds a client connection (limits.max_connections,
# 10,000 by default) and an upstream one (pool.max_connections, 1,024 by default).
listeners:
  - address: 127.0.0.1:{port}
services:
  - name: mcp
    kind: mcp
    upstream: [{url}]
    mcp: {{path: /mcp}}
limits: {{max_connections: {connections}}}
pool: {{max_connections: {connections}}}
watch: false
"""


def runmcp_fast_streams(scratch: Path, port: int, url: str) -> list[str]:
    """runmcp_fast for the idle-stream run: the flags' service, the caps lifted."""
    conf = scratch / "gateway-streams.yaml"
    conf.write_text(_GATEWAY_STREAMS.format(port=port, url=url, connections=20_000))
    return [runmcp_fast_binary(), "serve", "-c", str(conf)]


_NGINX_MCP = """\
    upstream mcp {{
        server 127.0.0.1:{upstream_port};
        keepalive 128;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://mcp;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # The client's Host, as a transparent proxy passes it: the SDK's DNS-rebinding
            # check refuses nginx's default (the upstream block's name).
            proxy_set_header Host $http_host;
{forwarded}            # SSE answers pass through as they come, as every MCP-behind-nginx guide
            # configures it; the request body is streamed too.
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 300s;
        }}
    }}"""


# What runmcp_fast adds to every proxied request (docs/proxy.md), as the usual
# reverse-proxy recipe spells it for nginx. The upstream reads each header it gets:
# the SDK's server (Python) spends ~10-20 us a call on these four, which the plain
# peer does not make it pay. `nginx-fwd` sends them, so the two proxies hand the
# upstream the same work.
_NGINX_FORWARDED = """\
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_set_header Via "1.1 nginx";
"""


def _nginx_with(forwarded: bool) -> Callable[[Path, int, str], list[str]]:
    def argv(scratch: Path, port: int, url: str) -> list[str]:
        """nginx as a plain reverse proxy (no MCP awareness): the floor an MCP proxy is
        held to; with `forwarded`, sending the forwarding headers runmcp_fast sends."""
        import configs  # bench/load's nginx runner (run.py puts bench/load on sys.path)

        upstream_port = int(url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
        http = _NGINX_MCP.format(
            port=port,
            upstream_port=upstream_port,
            forwarded=_NGINX_FORWARDED if forwarded else "",
        )
        return configs._nginx(scratch / ("nginx-fwd" if forwarded else "nginx-mcp"), http)

    return argv


_nginx = _nginx_with(forwarded=False)
_nginx_fwd = _nginx_with(forwarded=True)


def _fastmcp(shared: bool) -> Callable[[Path, int, str], list[str]]:
    def argv(_scratch: Path, port: int, url: str) -> list[str]:
        python = VENVS / "fastmcp" / "bin" / "python"
        extra = ["--shared"] if shared else []
        return [
            str(python),
            str(HERE / "fastmcp_proxy.py"),
            "--port",
            str(port),
            "--upstream",
            url,
            *extra,
        ]

    return argv


# ContextForge: the secrets it refuses to start without; loopback upstreams allowed;
# no rate limiting (its default limits would refuse a load test).
CF_ENV = {
    "JWT_SECRET_KEY": "bench-jwt-secret-3b1f0c2e9d8a47c5b6e1f0a9d8c7b6a5",
    "AUTH_ENCRYPTION_SECRET": "bench-encryption-secret-7e6d5c4b3a2918f7e6d5c4b3a29",
    "SSRF_ALLOW_LOCALHOST": "true",
    "RATE_LIMITING_ENABLED": "false",
}
CF_ADMIN = "admin@example.com"  # its bootstrap platform admin (PLATFORM_ADMIN_EMAIL's default)


def _cf_env(stateful: bool, scratch: Path) -> dict[str, str]:
    env = {**CF_ENV, "DATABASE_URL": f"sqlite:///{scratch}/mcp.db"}
    if stateful:
        env["USE_STATEFUL_SESSIONS"] = "true"
    return env


def _cf_dir(scratch: Path, stateful: bool) -> Path:
    path = scratch / ("contextforge" if stateful else "contextforge-default")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _contextforge(stateful: bool) -> Callable[[Path, int, str], list[str]]:
    def argv(scratch: Path, port: int, _url: str) -> list[str]:
        home = _cf_dir(scratch, stateful)
        binary = VENVS / "contextforge" / "bin" / "mcpgateway"
        # env -C: its working directory is a scratch one, so it reads no stray .env and
        # writes nothing into the repo. One uvicorn worker (the CLI's default).
        return [
            "env",
            "-C",
            str(home),
            *_env(**_cf_env(stateful, home))[1:],
            str(binary),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
        ]

    return argv


def _cf_request(port: int, method: str, path: str, token: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as exc:
        raise RuntimeError(
            f"contextforge {method} {path}: {exc.code} {exc.read()[:500]!r}"
        ) from exc


def _contextforge_setup(stateful: bool) -> Callable[[Path, int, str], Target]:
    def setup(scratch: Path, port: int, url: str) -> Target:
        home = _cf_dir(scratch, stateful)
        deadline = time.monotonic() + 60
        while True:  # the port accepts before its startup tasks are all done
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("contextforge: /health not 200 after 60 s")
            time.sleep(0.5)
        python = VENVS / "contextforge" / "bin" / "python"
        minted = subprocess.run(
            [
                str(python),
                "-m",
                "mcpgateway.utils.create_jwt_token",
                "--username",
                CF_ADMIN,
                "--exp",
                "10080",
                "--secret",
                CF_ENV["JWT_SECRET_KEY"],
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
            cwd=home,
            env={**os.environ, **_cf_env(stateful, home), "LOG_LEVEL": "ERROR"},
        )
        token = minted.stdout.strip().splitlines()[-1].strip()
        gateway = _cf_request(
            port,
            "POST",
            "/gateways",
            token,
            {"name": "up", "url": url, "transport": "STREAMABLEHTTP"},
        )
        tools = _cf_request(port, "GET", "/tools", token)
        if isinstance(tools, dict):
            tools = tools.get("items") or tools.get("data") or []
        ours = [
            t for t in tools if t.get("gatewayId") == gateway["id"] or t.get("gatewaySlug") == "up"
        ]
        echo = [
            t
            for t in ours
            if t.get("originalName") == "echo" or t.get("name", "").endswith("-echo")
        ]
        if not echo:
            raise RuntimeError(
                f"contextforge lists no echo tool for the upstream: {[t.get('name') for t in tools]}"
            )
        server = _cf_request(
            port,
            "POST",
            "/servers",
            token,
            {"server": {"name": "bench", "associated_tools": [echo[0]["id"]]}},
        )
        return Target(
            "contextforge" if stateful else "contextforge-default",
            port,
            path=f"/servers/{server['id']}/mcp",
            headers={"Authorization": f"Bearer {token}"},
        )

    return setup


PEERS = {
    GATEWAY: Peer(
        GATEWAY,
        "runmcp_fast, 1 worker",
        _runmcp_fast,
        _plain_target(GATEWAY),
    ),
    "nginx": Peer(
        "nginx",
        "nginx, a plain reverse proxy (HTTP/1.1 keep-alive upstream, proxy_buffering off)",
        _nginx,
        _plain_target("nginx"),
    ),
    "nginx-fwd": Peer(
        "nginx-fwd",
        "nginx as above, sending runmcp_fast's forwarding headers (X-Forwarded-*, Via)",
        _nginx_fwd,
        _plain_target("nginx-fwd"),
    ),
    "fastmcp": Peer(
        "fastmcp",
        "FastMCP.as_proxy(url) (fastmcp 3.x): a fresh upstream session per request",
        _fastmcp(shared=False),
        _plain_target("fastmcp"),
        venv="fastmcp",
    ),
    "fastmcp-shared": Peer(
        "fastmcp-shared",
        "FastMCP.as_proxy(connected Client): one upstream session for all",
        _fastmcp(shared=True),
        _plain_target("fastmcp-shared"),
        venv="fastmcp",
    ),
    "contextforge": Peer(
        "contextforge",
        "ContextForge 1.0.7, USE_STATEFUL_SESSIONS=true (its best case)",
        _contextforge(stateful=True),
        _contextforge_setup(stateful=True),
        ready_timeout=120.0,
        venv="contextforge",
    ),
    "contextforge-default": Peer(
        "contextforge-default",
        "ContextForge 1.0.7, default sessions (stateless)",
        _contextforge(stateful=False),
        _contextforge_setup(stateful=False),
        ready_timeout=120.0,
        venv="contextforge",
    ),
}
