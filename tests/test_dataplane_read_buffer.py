"""Plain upstream connections read into one reused buffer per loop (upstream.pxi).

Response bodies go on to the client as Spans of that buffer; the next read (of any
upstream connection on the loop) overwrites it. So whatever a client's socket did
not take must have been copied before then, and a head that spans reads kept.
These make that happen on purpose: a client that reads late while another client's
responses stream through the same buffer; heads cut across reads; a tunnel's bytes
to a slow reader. Bodies are random bytes, each its own, so a byte read from a
reused buffer can not pass for the right one. On uvloop and on asyncio's loop.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import ssl
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from servers import (
    AsyncioLoopThread,
    GatewayThread,
    Harness,
    LoopThread,
    RawRequest,
)
from test_dataplane_send import BIG, app, chunked_body, random_body, slow_client
from test_serve_process import make_certificate

GatewayFactory = Callable[[dict[str, Any]], GatewayThread]


@pytest.fixture(params=["uvloop", "asyncio"])
def setup(request: pytest.FixtureRequest) -> Iterator[tuple[Harness, GatewayFactory]]:
    harness = Harness()
    loop_thread: LoopThread | None = AsyncioLoopThread() if request.param == "asyncio" else None
    gateways: list[GatewayThread] = []

    def gateway(config: dict[str, Any]) -> GatewayThread:
        if loop_thread is None:
            return harness.gateway(config)
        gw = GatewayThread(config, loop_thread)
        gateways.append(gw)
        return gw

    yield harness, gateway
    for gw in gateways:
        gw.stop()
    if loop_thread is not None:
        loop_thread.close()
    harness.close()


def service(url: str) -> dict[str, Any]:
    return {"services": [{"name": "svc", "upstream": url, "prefix": "/"}]}


@pytest.mark.parametrize("kind", ["fixed", "chunked"])
def test_a_late_reader_gets_its_bytes_while_other_responses_reuse_the_buffer(
    setup: tuple[Harness, GatewayFactory], kind: str
) -> None:
    harness, make_gateway = setup
    gw = make_gateway(service(harness.aiohttp(app()).url))
    late = slow_client(gw.port)
    busy = harness.client(gw.port)
    try:
        target = f"/fixed?seed=1&size={BIG}" if kind == "fixed" else "/chunked?seed=1"
        expected = random_body(1, BIG) if kind == "fixed" else chunked_body(1)
        late.send(f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        # Its head came: its body is on the way, most of it waiting in the gateway
        # (the client reads nothing more yet) while other reads fill the buffer.
        late.read_until(b"\r\n\r\n")
        for seed in range(2, 14):
            size = 200_000 + seed * 7_919
            busy.send(f"GET /fixed?seed={seed}&size={size} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            status, _, body = busy.read_response()
            assert status == 200
            assert body == random_body(seed, size), seed
        if kind == "fixed":
            body = late.read_exactly(BIG)
        else:
            body = b""
            while True:
                size = int(late.read_until(b"\r\n")[:-2].split(b";")[0], 16)
                if size == 0:
                    assert late.read_until(b"\r\n") == b"\r\n"
                    break
                body += late.read_exactly(size)
                assert late.read_exactly(2) == b"\r\n"
        assert len(body) == len(expected)
        assert body == expected
        # And the connection goes on, in step.
        late.send(b"GET /fixed?seed=99&size=3000 HTTP/1.1\r\nHost: t\r\n\r\n")
        status, _, body = late.read_response()
        assert (status, body) == (200, random_body(99, 3000))
    finally:
        late.close()


def test_heads_cut_across_reads_survive_the_buffers_reuse(
    setup: tuple[Harness, GatewayFactory],
) -> None:
    # The upstream writes each response in pieces, paused between them, so that
    # the gateway reads them one by one into the same buffer: an interim 103 (with
    # the final head's start, or alone), a head cut in two, the body. (Coalesced
    # pieces are right too: the bytes are checked.)
    body = random_body(7, 300_000)
    early = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
    cuts = [
        [
            early + b"HTTP/1.1 200 OK\r\nX-Fir",
            b"st: one\r\nContent-Length: %d\r\nX-Sec" % len(body),
        ],
        [early, b"HTTP/1.1 200 OK\r\nX-First: one\r\nContent-Length: %d\r\nX-Sec" % len(body)],
    ]

    async def handler(req: RawRequest) -> None:
        pieces = [*cuts[len(upstream.requests) % 2], b"ond: two\r\n\r\n" + body[:1000], body[1000:]]
        for piece in pieces:
            req.write(piece)
            await asyncio.sleep(0.02)

    harness, make_gateway = setup
    upstream = harness.raw(handler)
    gw = make_gateway(service(upstream.url))
    with slow_client(gw.port) as client:
        for _ in range(4):
            client.send(b"GET /cut HTTP/1.1\r\nHost: t\r\n\r\n")
            status, headers, got = client.read_response()
            if status == 103:
                status, headers, got = client.read_response()
            assert status == 200
            assert (headers["x-first"], headers["x-second"]) == ("one", "two")
            assert got == body
    assert not upstream.errors


def test_tunnel_bytes_reach_a_late_reader_whole(setup: tuple[Harness, GatewayFactory]) -> None:
    blob = random_body(11, BIG)
    harness, make_gateway = setup

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: blob\r\nConnection: Upgrade\r\n\r\n"
        )
        writer.write(blob[:100_000])  # (some of it right behind the 101 head)
        await writer.drain()
        writer.write(blob[100_000:])
        await writer.drain()
        writer.close()  # the tunnel ends once the client has it all

    async def start() -> asyncio.Server:
        return await asyncio.start_server(serve, "127.0.0.1", 0)

    server = harness.upstream_loop.run(start())
    try:
        port = server.sockets[0].getsockname()[1]
        gw = make_gateway(service(f"http://127.0.0.1:{port}"))
        with slow_client(gw.port) as client:
            client.send(
                b"GET /t HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: blob\r\n\r\n"
            )
            head = client.read_until(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101 ")
            assert client.read_exactly(len(blob)) == blob
            # Ended with a reset: how a tunnel closes is not what this checks (one
            # whose two ends each sent a FIN is left open on the gateway until it stops).
            client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:

        async def stop() -> None:
            server.close()

        harness.upstream_loop.run(stop())


def test_plain_upstreams_share_one_read_buffer_per_loop(
    setup: tuple[Harness, GatewayFactory],
) -> None:
    # The design this file checks: a plain upstream's connection reads into the
    # loop's buffer (asyncio.BufferedProtocol), not a bytes of its own per read.
    from runmcp_fast._dataplane import BufferedUpstreamConnection, UpstreamConnection

    harness, make_gateway = setup
    gw = make_gateway(service(harness.aiohttp(app()).url))
    with harness.client(gw.port) as client:
        client.send(b"GET /fixed?seed=3&size=10 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert client.read_response()[2] == random_body(3, 10)

    def kinds() -> list[bool]:
        pools = set(gw.gateway.pools.all())
        return [
            isinstance(o, BufferedUpstreamConnection) and isinstance(o, asyncio.BufferedProtocol)
            for o in gc.get_objects()
            if isinstance(o, UpstreamConnection) and o.pool in pools and not o.closed
        ]

    assert gw.loop_thread.call(kinds) == [True]


def test_a_tls_upstream_keeps_bytes_per_read_and_streams_whole(
    setup: tuple[Harness, GatewayFactory], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # TLS upstreams read through data_received (each read its own bytes): the same
    # parser and Spans, another owner. The pool's default context trusts SSL_CERT_FILE.
    from runmcp_fast._dataplane import BufferedUpstreamConnection, UpstreamConnection

    harness, make_gateway = setup
    cert, key = make_certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(str(cert), str(key))
    runner = web.AppRunner(app(), access_log=None)

    async def start() -> int:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context)
        await site.start()
        return int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    port = harness.upstream_loop.run(start())
    try:
        gw = make_gateway(service(f"https://localhost:{port}"))
        with slow_client(gw.port) as client:
            client.send(f"GET /fixed?seed=5&size={BIG} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            status, _, body = client.read_response()
            assert (status, len(body)) == (200, BIG)
            assert body == random_body(5, BIG)
            client.send(b"GET /chunked?seed=6 HTTP/1.1\r\nHost: t\r\n\r\n")
            status, headers, body = client.read_response()
            assert (status, headers.get("transfer-encoding")) == (200, "chunked")
            assert body == chunked_body(6)

        def kinds() -> list[bool]:
            pools = set(gw.gateway.pools.all())
            return [
                isinstance(o, BufferedUpstreamConnection)
                for o in gc.get_objects()
                if isinstance(o, UpstreamConnection) and o.pool in pools and not o.closed
            ]

        assert gw.loop_thread.call(kinds) == [False]
    finally:
        harness.upstream_loop.run(runner.cleanup())
