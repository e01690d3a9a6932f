"""TLS to upstreams (https:// upstream URLs): on OpenSSL directly (runmcp_fast._tls) and
through the event loop's TLS (RUNMCP_TLS=python), on uvloop and asyncio's loop. The
upstream's certificate must be trusted (the system's CAs; SSL_CERT_FILE here) and name
the host of the URL; keep-alive connections are reused."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from servers import AsyncioLoopThread, GatewayThread, Harness, LoopThread
from test_serve_process import make_certificate

from runmcp_fast.listeners import own_tls


class TlsRig:
    def __init__(self, loop: str, tls: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        if tls == "own" and not own_tls():
            pytest.skip("runmcp_fast._tls is not built")
        self.harness = Harness()
        self.loop_thread: LoopThread = (
            AsyncioLoopThread() if loop == "asyncio" else self.harness.gateway_loop
        )
        if tls == "python":
            monkeypatch.setenv("RUNMCP_TLS", "python")
        else:
            monkeypatch.delenv("RUNMCP_TLS", raising=False)
        self.cert, self.key = make_certificate(tmp_path)  # localhost and 127.0.0.1
        monkeypatch.setenv("SSL_CERT_FILE", str(self.cert))
        self.runners: list[web.AppRunner] = []
        self.gateways: list[GatewayThread] = []
        self.peers: list[tuple[str, int]] = []

    def upstream(self, cert: Path | None = None, key: Path | None = None) -> int:
        """An aiohttp app over TLS: any request answers its path, and the client port
        it came from (one port per upstream connection)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(cert or self.cert), str(key or self.key))

        async def handle(request: web.Request) -> web.Response:
            peer = request.transport.get_extra_info("peername") if request.transport else None
            body = await request.read()
            return web.json_response(
                {"path": request.path_qs, "port": peer[1] if peer else 0, "len": len(body)}
            )

        application = web.Application()
        application.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(application, access_log=None)
        self.runners.append(runner)

        async def start() -> int:
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
            await site.start()
            return int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

        return self.harness.upstream_loop.run(start())

    def gateway(self, url: str) -> GatewayThread:
        config = {"services": [{"name": "svc", "upstream": url, "prefix": "/"}]}
        gw = GatewayThread(config, self.loop_thread)
        self.gateways.append(gw)
        return gw

    def close(self) -> None:
        try:
            for gw in self.gateways:
                gw.stop(drain_timeout=2.0)
            for runner in self.runners:
                self.harness.upstream_loop.run(runner.cleanup())
        finally:
            if self.loop_thread is not self.harness.gateway_loop:
                self.loop_thread.close()
            self.harness.close()


@pytest.fixture(params=["own", "python"])
def tls(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["uvloop", "asyncio"])
def rig(
    request: pytest.FixtureRequest, tls: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TlsRig]:
    made = TlsRig(str(request.param), tls, tmp_path, monkeypatch)
    yield made
    made.close()


def ask(rig: TlsRig, gw: GatewayThread, requests: list[bytes]) -> list[tuple[int, Any]]:
    client = rig.harness.client(gw.port)
    try:
        out = []
        for request in requests:
            client.send(request)
            status, _, body = client.read_response()
            out.append((status, json.loads(body) if body.startswith(b"{") else body))
        return out
    finally:
        client.close()


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_a_trusted_upstream_serves_over_one_reused_connection(rig: TlsRig, host: str) -> None:
    port = rig.upstream()
    gw = rig.gateway(f"https://{host}:{port}")
    body = b"x" * 100_000  # several records up
    answers = ask(
        rig,
        gw,
        [
            b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n",
            b"POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body),
            b"GET /c?q=1 HTTP/1.1\r\nHost: t\r\n\r\n",
        ],
    )
    assert [a[0] for a in answers] == [200, 200, 200]
    assert [a[1]["path"] for a in answers] == ["/a", "/b", "/c?q=1"]
    assert answers[1][1]["len"] == len(body)
    assert len({a[1]["port"] for a in answers}) == 1  # keep-alive: one connection


def test_an_upstream_certificate_not_trusted_is_a_502_naming_why(
    rig: TlsRig, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    cert, key = make_certificate(other)  # valid for localhost, but no CA trusts it
    port = rig.upstream(cert, key)
    gw = rig.gateway(f"https://localhost:{port}")
    [(status, body)] = ask(rig, gw, [b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n"])
    assert status == 502
    assert "certificate verify failed" in body["detail"]


def test_an_upstream_certificate_for_another_name_is_a_502(
    rig: TlsRig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Trusted, but for other.test only: neither localhost nor 127.0.0.1 may use it.
    cert, key = tmp_path / "other.pem", tmp_path / "other-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=other.test", "-addext",
         "subjectAltName=DNS:other.test", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(rig.cert.read_bytes() + cert.read_bytes())
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    port = rig.upstream(cert, key)
    for host in ("localhost", "127.0.0.1"):
        gw = rig.gateway(f"https://{host}:{port}")
        [(status, body)] = ask(rig, gw, [b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n"])
        assert status == 502
        assert "certificate verify failed" in body["detail"]


def test_an_upstream_that_does_not_speak_tls_is_a_502(rig: TlsRig) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        writer.close()

    async def start() -> asyncio.AbstractServer:
        return await asyncio.start_server(serve, "127.0.0.1", 0)

    server = rig.harness.upstream_loop.run(start())
    try:
        port = server.sockets[0].getsockname()[1]
        gw = rig.gateway(f"https://localhost:{port}")
        [(status, _)] = ask(rig, gw, [b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n"])
        assert status == 502
    finally:

        async def stop() -> None:
            server.close()
            await server.wait_closed()

        rig.harness.upstream_loop.run(stop())


def test_a_new_connection_resumes_the_last_session(rig: TlsRig, tls: str) -> None:
    # Each answer closes its connection: each request opens one. With _tls the second
    # and later resume the session the first got (as nginx's proxy_ssl_session_reuse).
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(rig.cert), str(rig.key))

    async def handle(request: web.Request) -> web.Response:
        return web.Response(text=request.path, headers={"Connection": "close"})

    application = web.Application()
    application.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(application, access_log=None)
    rig.runners.append(runner)

    async def start() -> int:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        return int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    port = rig.harness.upstream_loop.run(start())
    gw = rig.gateway(f"https://localhost:{port}")
    answers = ask(rig, gw, [b"GET /r%d HTTP/1.1\r\nHost: t\r\n\r\n" % i for i in range(4)])
    assert [a for a in answers] == [(200, b"/r%d" % i) for i in range(4)]
    if tls == "own":

        def resumed() -> int:
            [pool] = [p for p in gw.gateway.pools.all() if p._own_tls is not None]
            return int(pool._own_tls.sessions_resumed())

        assert gw.loop_thread.call(resumed) >= 2
