"""`runmcp-fast serve` as a process, its listeners, and its graceful shutdown.

The process tests start the real command (`.venv/bin/runmcp-fast serve`) and
read its startup line for the bound address; the listener tests run the
`Gateway` in-process on IPv6, a Unix socket and TLS.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from isolation import package_env
from servers import (
    AiohttpUpstream,
    GatewayProcess,
    Harness,
    LoopThread,
    RawClient,
    RawRequest,
    free_port,
    http_response,
    serve_command,
    wait_event,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[1]
PETSTORE = str(ROOT / "examples" / "petstore.yaml")


def get(client: RawClient, path: str) -> tuple[int, dict[str, str], bytes]:
    client.send(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    return client.read_response()


def refuses_connections(port: int) -> bool:
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=0.5)
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    sock.close()
    return False


class Upstream:
    """An aiohttp upstream on its own loop thread: /slow waits for `release`."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.loop = LoopThread()

        async def slow(request: web.Request) -> web.Response:
            self.arrived.set()
            await wait_event(self.release, 10)
            return web.Response(text="slow done")

        async def pets(request: web.Request) -> web.Response:
            return web.json_response([{"id": 1, "name": "Rex", "path": request.path}])

        async def anything(request: web.Request) -> web.Response:
            return web.Response(text=f"{request.method} {request.path_qs}")

        app = web.Application()
        app.router.add_get("/slow", slow)
        app.router.add_get("/v1/pets", pets)
        app.router.add_route("*", "/{tail:.*}", anything)
        try:
            self.server = AiohttpUpstream(app, self.loop)
        except BaseException:
            self.loop.close()
            raise
        self.url = self.server.url

    def close(self) -> None:
        self.release.set()
        try:
            self.server.close()
        finally:
            self.loop.close()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    up = Upstream()
    yield up
    up.close()


def prefix_config(url: str, **limits: Any) -> dict[str, Any]:
    return {"services": [{"name": "api", "upstream": url, "prefix": "/"}], "limits": limits}


# -- graceful shutdown ------------------------------------------------------------------------


def test_sigterm_drains_in_flight_requests_and_exits_0(upstream: Upstream, tmp_path: Path) -> None:
    with GatewayProcess.from_config(prefix_config(upstream.url, drain_timeout=5), tmp_path) as gw:
        idle = RawClient(gw.port)
        busy = RawClient(gw.port)
        try:
            assert get(idle, "/warm")[0] == 200  # now an idle keep-alive connection
            busy.send(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
            assert upstream.arrived.wait(5)
            gw.proc.send_signal(signal.SIGTERM)
            # Stops accepting ...
            assert wait_until(lambda: refuses_connections(gw.port), 5), "still accepting"
            # ... closes idle keep-alive connections at once ...
            assert idle.is_closed(wait=3), "the idle keep-alive connection was left open"
            # ... and waits for the request in flight.
            assert gw.proc.poll() is None, "exited with a request in flight"
            upstream.release.set()
            status, headers, body = busy.read_response()
            assert (status, body) == (200, b"slow done")
            assert headers.get("connection", "").lower() == "close"
            assert busy.is_closed(wait=3)
            assert gw.wait(timeout=5) == 0
        finally:
            idle.close()
            busy.close()
    assert any("draining" in line for line in gw.stderr_lines)


def test_sigterm_gives_up_after_the_drain_timeout(upstream: Upstream, tmp_path: Path) -> None:
    with GatewayProcess.from_config(prefix_config(upstream.url, drain_timeout=1), tmp_path) as gw:
        busy = RawClient(gw.port)
        try:
            busy.send(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
            assert upstream.arrived.wait(5)
            started = time.monotonic()
            gw.proc.send_signal(signal.SIGTERM)
            assert gw.wait(timeout=8) == 0
            assert time.monotonic() - started < 6, "the drain timeout was not honoured"
            # The request never completed: the client saw no response (or a cut one).
            try:
                data = busy.read_to_close()
            except ConnectionResetError:
                data = b""
            assert b"slow done" not in data
        finally:
            busy.close()


# -- the serve command ------------------------------------------------------------------------


def test_serve_from_flags_proxies_the_spec_routes(upstream: Upstream) -> None:
    port = free_port()
    args = ["--listen", f"127.0.0.1:{port}", "--upstream", upstream.url, "--openapi", PETSTORE]
    with GatewayProcess(args) as gw:
        line = gw.startup_line
        assert f"127.0.0.1:{port}" in line
        assert "1 service(s)" in line
        assert upstream.url in line
        assert "12 routes" in line  # the spec's 9, and its MCP endpoint's 3 at /mcp
        client = RawClient(port)
        try:
            status, headers, body = get(client, "/v1/pets")
            assert status == 200
            assert json.loads(body) == [{"id": 1, "name": "Rex", "path": "/v1/pets"}]
            # Not in the spec: the gateway answers.
            status, headers, body = get(client, "/v1/unknown")
            assert status == 404
            assert headers["content-type"] == "application/problem+json"
        finally:
            client.close()
        assert gw.stop() == 0


BAD_CONFIGS = {
    "bad-upstream": (
        {
            "listeners": [{"address": "127.0.0.1:0"}],
            "services": [{"name": "api", "upstream": "ftp://example.com", "prefix": "/"}],
        },
        "#/services/0/upstream",
    ),
    "unknown-key": (
        {"listeners": [{"address": "127.0.0.1:0"}], "pool": {"max_conections": 3}},
        "#/pool/max_conections",
    ),
    "missing-tls-key": (
        {
            "listeners": [{"address": "127.0.0.1:0", "tls": {"cert": "c.pem", "key": "k.pem"}}],
            "services": [{"name": "api", "upstream": "http://127.0.0.1:9", "prefix": "/"}],
        },
        "#/listeners/0/tls/cert",
    ),
    "missing-spec": (
        {
            "listeners": [{"address": "127.0.0.1:0"}],
            "services": [{"name": "api", "upstream": "http://127.0.0.1:9", "openapi": "no.yaml"}],
        },
        "#/services/0/openapi",
    ),
}


def test_serve_on_a_port_in_use_exits_2_naming_the_listener(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*serve_command(), "--listen", f"127.0.0.1:{port}", "--upstream", "http://127.0.0.1:9"],
            capture_output=True,
            text=True,
            timeout=30,
            env=package_env(),
        )
    assert result.returncode == 2, result.stderr
    assert "#/listeners/0/address" in result.stderr
    assert "in use" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("data", "pointer"), BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_serve_with_a_bad_config_exits_2_naming_file_and_pointer(
    tmp_path: Path, data: dict[str, Any], pointer: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(data), encoding="utf-8")
    result = subprocess.run(
        [*serve_command(), "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        env=package_env(),
    )
    assert result.returncode == 2, result.stderr
    assert f"{path}{pointer}" in result.stderr
    assert "Traceback" not in result.stderr
    assert "listening on" not in result.stderr


def test_access_log_prints_one_json_line_per_request(upstream: Upstream) -> None:
    args = ["--listen", "127.0.0.1:0", "--upstream", upstream.url, "--access-log"]
    with GatewayProcess(args) as gw:
        client = RawClient(gw.port)
        try:
            assert get(client, "/one")[0] == 200
            assert get(client, "/two?x=1")[0] == 200
            client.send(b"DELETE /three HTTP/1.1\r\nHost: test\r\n\r\n")
            assert client.read_response()[0] == 200
        finally:
            client.close()
        # A sentinel request on another connection: its line comes after any line
        # the three could still produce, so once it is out the count is final.
        with RawClient(gw.port) as sentinel:
            assert get(sentinel, "/sentinel")[0] == 200
        assert wait_until(lambda: any("/sentinel" in line for line in gw.stdout_lines), 10)
        records = [json.loads(line) for line in gw.stdout_lines]
        # The path without its query (since the access-log plugin: a query may carry
        # a secret; `query: true` logs it).
        assert [(r["method"], r["path"], r["status"]) for r in records] == [
            ("GET", "/one", 200),
            ("GET", "/two", 200),
            ("DELETE", "/three", 200),
            ("GET", "/sentinel", 200),
        ]
        assert all(r["client"] == "127.0.0.1" and r["service"] == "default" for r in records)
        assert all(isinstance(r["duration_ms"], int | float) for r in records)
        assert gw.stop() == 0


# -- listeners ---------------------------------------------------------------------------------


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    yield harness
    harness.close()


async def echo_headers(req: RawRequest) -> None:
    body = json.dumps({"path": req.path, "headers": req.headers}).encode()
    req.write(http_response(body))


def ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_ipv6_listener(h: Harness) -> None:
    if not ipv6_loopback():
        pytest.skip("no IPv6 on loopback")
    upstream = h.raw(echo_headers)
    gw = h.gateway({**prefix_config(upstream.url), "listeners": [{"address": "[::1]:0"}]})
    assert gw.addresses[0].startswith("[::1]:")
    client = h.adopt(RawClient.from_socket(socket.create_connection(("::1", gw.port), 10)))
    status, _, body = get(client, "/v6")
    assert status == 200
    seen = json.loads(body)
    assert seen["path"] == "/v6"
    assert seen["headers"]["x-forwarded-for"] == "::1"


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # A Unix socket path is at most 107 bytes: not under pytest's long tmp_path.
    path = Path(tempfile.mkdtemp(prefix="rmf-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_unix_socket_listener(h: Harness, short_dir: Path) -> None:
    upstream = h.raw(echo_headers)
    sock_path = short_dir / "gw.sock"
    gw = h.gateway({**prefix_config(upstream.url), "listeners": [{"address": f"unix:{sock_path}"}]})
    assert gw.addresses == [f"unix:{sock_path}"]
    for i in range(2):  # one connection each, both served
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(10)
        client = h.adopt(RawClient.from_socket(sock))
        sock.connect(str(sock_path))
        status, _, body = get(client, f"/unix/{i}")
        assert status == 200
        assert json.loads(body)["path"] == f"/unix/{i}"


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1 (openssl CLI)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("neither the cryptography package nor the openssl command is available")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


def test_tls_listener(h: Harness, tmp_path: Path) -> None:
    cert, _key = make_certificate(tmp_path)
    upstream = h.raw(echo_headers)
    data = {
        **prefix_config(upstream.url),
        # Relative paths resolve against the config's directory.
        "listeners": [{"address": "127.0.0.1:0", "tls": {"cert": "cert.pem", "key": "key.pem"}}],
    }
    gw = h.gateway(data, base_dir=str(tmp_path))
    context = ssl.create_default_context(cafile=str(cert))
    context.set_alpn_protocols(["http/1.1"])
    raw = socket.create_connection(("127.0.0.1", gw.port), 10)
    try:
        tls = context.wrap_socket(raw, server_hostname="localhost")
    except BaseException:
        raw.close()
        raise
    client = h.adopt(RawClient.from_socket(tls))
    assert tls.selected_alpn_protocol() == "http/1.1"
    for i in range(2):  # keep-alive over TLS
        status, _, body = get(client, f"/tls/{i}")
        assert status == 200
        seen = json.loads(body)
        assert seen["path"] == f"/tls/{i}"
        assert seen["headers"]["x-forwarded-proto"] == "https"
    # Plain HTTP on the TLS port is not served as HTTP.
    plain = h.client(gw.port, timeout=5)
    plain.send(b"GET /tls HTTP/1.1\r\nHost: test\r\n\r\n")
    try:
        data_back = plain.read_to_close()
    except ConnectionResetError:
        data_back = b""
    assert b"HTTP/1.1 200" not in data_back


# -- worker processes ---------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def test_workers_share_the_listeners_are_replaced_and_drain(
    upstream: Upstream, tmp_path: Path
) -> None:
    with GatewayProcess.from_config(
        prefix_config(upstream.url), tmp_path, extra=("--workers", "2")
    ) as gw:
        assert wait_until(lambda: sum("listening on" in x for x in gw.stderr_lines) == 2, 10)
        workers = _children(gw.pid)
        assert len(workers) == 2
        for i in range(20):
            with RawClient(gw.port) as client:
                status, _, body = get(client, f"/n/{i}")
                assert (status, body) == (200, f"GET /n/{i}".encode())
        # A worker that dies is replaced; the listener keeps serving meanwhile.
        os.kill(workers[0], signal.SIGKILL)
        assert wait_until(lambda: len(set(_children(gw.pid)) - {workers[0]}) == 2, 10)
        for i in range(10):
            with RawClient(gw.port) as client:
                assert get(client, f"/m/{i}")[0] == 200
        survivors = _children(gw.pid)
        gw.proc.send_signal(signal.SIGTERM)
        assert gw.wait(timeout=10) == 0
    assert all(not Path(f"/proc/{pid}").exists() for pid in survivors)
    assert any("exited with" in line for line in gw.stderr_lines)
