"""Request bodies and tunnel bytes that outlive the read they came in: plain and TLS
listeners, on uvloop and on asyncio's loop.

A client connection gets each read as a bytes of its own (client.pxi: data_received;
reading into the loop's reused buffer instead was measured and not taken, see there).
What of a read is kept past it (a body piece waiting in the queue, for a step, for a
connection, to be checked whole; what an upstream's socket did not take; the bytes
behind an Upgrade head) must come out intact while other reads happen, on this
connection and on others. Each test makes such bytes wait so, and says which copy a
reused read buffer would need there (with one, these fail without it: under TLS on
asyncio's loop they caught a get_buffer that returned the bytearray itself). Bodies
are random bytes, compared by hash.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from servers import AsyncioLoopThread, GatewayThread, Harness, LoopThread, RawClient, wait_until
from test_dataplane_send import random_body
from test_serve_process import make_certificate

from runmcp_fast._dataplane import PyStep, Step
from runmcp_fast.snapshot import RouteInfo


class Rig:
    """Upstreams (`harness`), gateways on the loop under test, clients to them: plain
    TCP, or TLS (`tls`) with a self-signed certificate."""

    def __init__(self, loop: str, listener: str, tmp_path: Path) -> None:
        self.harness = Harness()
        self.loop_thread: LoopThread = (
            AsyncioLoopThread() if loop == "asyncio" else self.harness.gateway_loop
        )
        self.tls = listener.startswith("tls")
        # "tls": runmcp_fast._tls (OpenSSL directly) when built; "tls-loop": the event
        # loop's TLS transport, as with RUNMCP_TLS=python.
        self.loop_tls = listener == "tls-loop"
        self.cert, self.key = make_certificate(tmp_path) if self.tls else (tmp_path, tmp_path)
        self.gateways: list[GatewayThread] = []
        self.clients: list[RawClient] = []

    def gateway(self, config: dict[str, Any], steps: Any = None) -> GatewayThread:
        if self.tls:
            tls = {"cert": str(self.cert), "key": str(self.key)}
            config = {"listeners": [{"address": "127.0.0.1:0", "tls": tls}], **config}
        saved = os.environ.pop("RUNMCP_TLS", None)
        if self.loop_tls:
            os.environ["RUNMCP_TLS"] = "python"
        try:
            gw = GatewayThread(config, self.loop_thread, steps=steps)
        finally:
            os.environ.pop("RUNMCP_TLS", None)
            if saved is not None:
                os.environ["RUNMCP_TLS"] = saved
        self.gateways.append(gw)
        return gw

    def client(self, gw: GatewayThread) -> RawClient:
        sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
        if self.tls:
            context = ssl.create_default_context(cafile=str(self.cert))
            sock = context.wrap_socket(sock, server_hostname="localhost")
        client = RawClient.from_socket(sock)
        self.clients.append(client)
        return client

    def open_connections(self, gw: GatewayThread) -> int:
        return self.loop_thread.call(lambda: len(gw.gateway._ctx.connections))

    def close(self) -> None:
        try:
            # Clients first, while the gateways' loop runs: asyncio's SSL transport,
            # closed by a gateway's stop instead, waits for a close_notify and is left
            # open (a ResourceWarning) once the loop is closed.
            for client in self.clients:
                client.close()
            for gw in self.gateways:
                assert wait_until(lambda gw=gw: not self.open_connections(gw))
                gw.stop(drain_timeout=2.0)
        finally:
            if self.loop_thread is not self.harness.gateway_loop:
                self.loop_thread.close()
            self.harness.close()


@pytest.fixture(params=["uvloop", "asyncio"])
def loop(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["plain", "tls", "tls-loop"])
def rig(request: pytest.FixtureRequest, loop: str, tmp_path: Path) -> Iterator[Rig]:
    made = Rig(loop, str(request.param), tmp_path)
    yield made
    made.close()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest_app(release: threading.Event | None = None) -> web.Application:
    """Any request: its path, its body's length and sha256 as JSON. `?hold=1` waits for
    `release` first; `?slow=1` reads the body 32 KB at a time, slowly (the gateway's
    upstream socket fills)."""

    async def handle(request: web.Request) -> web.Response:
        if request.query.get("hold") and release is not None:
            await asyncio.get_running_loop().run_in_executor(None, release.wait, 10)
        hasher = hashlib.sha256()
        size = 0
        while True:
            piece = await request.content.read(32 * 1024)
            if not piece:
                break
            hasher.update(piece)
            size += len(piece)
            if request.query.get("slow"):
                await asyncio.sleep(0.001)
        return web.json_response(
            {"path": request.path_qs, "len": size, "sha256": hasher.hexdigest()}
        )

    application = web.Application(client_max_size=64 * 1024 * 1024)
    application.router.add_route("*", "/{tail:.*}", handle)
    return application


def service(url: str, **extra: Any) -> dict[str, Any]:
    return {"services": [{"name": "svc", "upstream": url, "prefix": "/", **extra}]}


def post(path: str, body: bytes, chunked: bool = False) -> bytes:
    if not chunked:
        return (
            f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
    framed = b"".join(
        b"%x\r\n%b\r\n" % (len(body[at : at + 70_001]), body[at : at + 70_001])
        for at in range(0, len(body), 70_001)
    )
    return f"POST {path} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".encode() + (
        framed + b"0\r\n\r\n"
    )


def send_in_pieces(client: RawClient, data: bytes, cuts: Sequence[int]) -> None:
    """`data` cut at `cuts`, each piece its own send, a moment apart: the gateway reads
    them one by one (were some coalesced, the bytes checked are still the same)."""
    at = 0
    for cut in (*cuts, len(data)):
        if cut > at:
            client.send(data[at:cut])
            time.sleep(0.005)
            at = cut


def check(response: tuple[int, dict[str, str], bytes], path: str, body: bytes) -> None:
    status, _, raw = response
    assert status == 200, raw[:300]
    got = json.loads(raw)
    assert (got["path"], got["len"]) == (path, len(body))
    assert got["sha256"] == digest(body)


@pytest.mark.parametrize("chunked", [False, True])
def test_pipelined_bodies_cut_at_odd_places_wait_their_turn_whole(rig: Rig, chunked: bool) -> None:
    # The requests behind the first wait in the queue with their bodies (req.body)
    # while further reads, and the first one's response (read into the upstreams'
    # shared buffer), come: a reused client buffer needs _body's copy of each piece
    # (`at[:n]`, `_chunk_frame`). Under TLS on asyncio's loop, a get_buffer that is
    # a memoryview: a read of several records is decrypted into `buffer[offset:]`.
    release = threading.Event()
    gw = rig.gateway(service(rig.harness.aiohttp(digest_app(release)).url))
    sizes = (700, 70_000, 1, 0, 123_457, 5_000)
    bodies = [random_body(30 + i, size) for i, size in enumerate(sizes)]
    paths = [f"/p{i}?hold=1" if i == 0 else f"/p{i}" for i in range(len(sizes))]
    wire = b"".join(post(p, b, chunked) for p, b in zip(paths, bodies, strict=True))
    client = rig.client(gw)
    send_in_pieces(client, wire, (1, 37, 800, 801, 5_000, 70_913, 71_000, 150_001, 190_000))
    release.set()
    for path, body in zip(paths, bodies, strict=True):
        check(client.read_response(), path, body)


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_larger_than_the_socket_buffers_reaches_a_slow_upstream_whole(
    rig: Rig, chunked: bool
) -> None:
    # With the upstream reading slowly, body pieces wait in its transport's buffer while
    # the client's next reads come (under TLS, reads of many records): send_out's copy
    # (_joined) of what the upstream's socket did not take, were they Spans of a read.
    gw = rig.gateway(service(rig.harness.aiohttp(digest_app()).url))
    body = random_body(41, 6 * 1024 * 1024 + 5)
    client = rig.client(gw)
    client.send(post("/big?slow=1", body, chunked))
    check(client.read_response(), "/big?slow=1", body)
    # And the connection goes on, in step.
    client.send(post("/after", body[:999]))
    check(client.read_response(), "/after", body[:999])


class Gate:
    """An async step holding requests to /held until the test opens it."""

    name = "gate"
    phase = "access"

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened: asyncio.Event | None = None

    async def request(self, view: Any) -> None:
        if not view.path.startswith("/held"):
            return
        if self.opened is None:
            self.opened = asyncio.Event()
        self.entered.set()
        await self.opened.wait()

    def open(self, loop_thread: LoopThread) -> None:
        assert self.entered.wait(10)

        def set_it() -> None:
            assert self.opened is not None
            self.opened.set()

        loop_thread.call(set_it)


def tunnel_upstream(harness: Harness, size: int) -> tuple[asyncio.AbstractServer, int]:
    """Answers an Upgrade with 101, reads `size` bytes through the tunnel (slowly:
    the gateway's socket to it fills), answers their sha256 (hex) and closes."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: blob\r\nConnection: Upgrade\r\n\r\n"
        )
        await writer.drain()
        hasher = hashlib.sha256()
        left = size
        while left:
            piece = await reader.read(min(left, 32 * 1024))
            if not piece:
                break
            hasher.update(piece)
            left -= len(piece)
            await asyncio.sleep(0.001)
        writer.write(hasher.hexdigest().encode())
        await writer.drain()
        writer.close()

    async def start() -> asyncio.AbstractServer:
        return await asyncio.start_server(serve, "127.0.0.1", 0, limit=64 * 1024)

    server = harness.upstream_loop.run(start())
    return server, server.sockets[0].getsockname()[1]


def test_an_upgrade_with_bytes_behind_its_head_tunnels_them_whole(rig: Rig) -> None:
    # The bytes behind the Upgrade head (in the same read) wait in the request (a step
    # holds it) while another connection's reads come: a reused buffer needs
    # _parse_failed's copy of them. Then the tunnel's own bytes, to an upstream that
    # reads slowly: send_out's copy of what its socket did not take, were they Spans.
    blob = random_body(51, 4 * 1024 * 1024 + 3)
    server, port = tunnel_upstream(rig.harness, len(blob))
    gate = Gate()

    def steps(info: RouteInfo) -> Sequence[Step]:
        return [PyStep(gate)]

    try:
        gw = rig.gateway(service(f"http://127.0.0.1:{port}"), steps=steps)
        # Another gateway on the same loop (it would share a per-loop buffer).
        other_gw = rig.gateway(service(rig.harness.aiohttp(digest_app()).url))
        client = rig.client(gw)
        other = rig.client(other_gw)
        client.send(
            b"GET /held HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: blob\r\n\r\n"
            + blob[:30_000]
        )
        assert gate.entered.wait(10)
        noise = random_body(52, 300_000)
        other.send(post("/noise", noise))
        check(other.read_response(), "/noise", noise)
        gate.open(rig.loop_thread)
        head = client.read_until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        client.send(blob[30_000:])
        assert client.read_exactly(64).decode() == digest(blob)
        assert client.is_closed()  # the upstream closed: the tunnel ends
    finally:

        async def stop() -> None:
            server.close()

        rig.harness.upstream_loop.run(stop())


def test_an_upstream_half_close_goes_on_or_ends_a_tls_tunnel(rig: Rig) -> None:
    # The upstream says "bye" and sends its end of stream, still reading. On plain TCP
    # the gateway passes the half-close on and the client may still send; a TLS
    # connection can not be half-closed (the SSL transports' write_eof raises), so
    # there the tunnel ends once "bye" is out: before, write_eof's error reached the
    # loop's exception handler and tore the client's connection down instead.
    errors: list[dict[str, Any]] = []
    received: list[bytes] = []
    done = threading.Event()

    def record() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n"
        )
        writer.write(b"bye")
        writer.write_eof()
        received.append(await reader.read())  # to the client's end (or the gateway's close)
        done.set()
        writer.close()

    async def start() -> asyncio.AbstractServer:
        return await asyncio.start_server(serve, "127.0.0.1", 0)

    server = rig.harness.upstream_loop.run(start())
    rig.loop_thread.call(record)
    try:
        gw = rig.gateway(service(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"))
        client = rig.client(gw)
        client.send(b"GET /t HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n")
        assert client.read_until(b"\r\n\r\n").startswith(b"HTTP/1.1 101 ")
        assert client.read_to_close() == b"bye"
        if not rig.tls:
            client.send(b"after")
            client.sock.shutdown(socket.SHUT_WR)
        assert done.wait(10)
        assert received == [b"" if rig.tls else b"after"]
        assert errors == []
    finally:
        rig.loop_thread.call(lambda: asyncio.get_running_loop().set_exception_handler(None))

        async def stop() -> None:
            server.close()

        rig.harness.upstream_loop.run(stop())


SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "docs", "version": "1"},
    "paths": {
        "/docs": {
            "post": {
                "operationId": "createDoc",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["data"],
                                "properties": {"data": {"type": "string"}},
                            }
                        }
                    },
                },
                "responses": {"200": {"description": "ok"}},
            }
        }
    },
}


def test_a_body_held_for_the_contract_goes_on_as_it_came(rig: Rig) -> None:
    # A body read whole to be checked (req.body, joined once complete) comes in separate
    # reads: a reused buffer needs _body's copy of each piece.
    upstream = rig.harness.aiohttp(digest_app())
    gw = rig.gateway({"services": [{"name": "docs", "upstream": upstream.url, "openapi": SPEC}]})
    body = json.dumps({"data": random_body(61, 450_000).hex()}).encode()
    head = (
        f"POST /docs HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    client = rig.client(gw)
    send_in_pieces(client, head + body, (len(head) + 3, 70_000, 300_001, 600_000))
    check(client.read_response(), "/docs", body)
    # A body the contract refuses is still refused (it was read, not garbled).
    bad = b'{"data": 5}'
    client.send(head.replace(str(len(body)).encode(), str(len(bad)).encode()) + bad)
    assert client.read_response()[0] == 400


def test_contract_checked_bodies_whole_in_a_read_or_cut_go_on_in_turn(rig: Rig) -> None:
    # A body that comes whole in one read and that the contract passes goes on as it
    # arrives (Step.body_passes); one cut across reads, one behind a request still
    # being answered, or one refused waits for its message's end, as before. Each
    # answer comes in turn, with the body the client sent.
    release = threading.Event()
    upstream = rig.harness.aiohttp(digest_app(release))
    gw = rig.gateway({"services": [{"name": "docs", "upstream": upstream.url, "openapi": SPEC}]})

    def doc(path: str, body: bytes) -> bytes:
        return (
            f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    valid = [
        json.dumps({"data": random_body(70 + i, size).hex()}).encode()
        for i, size in enumerate((10, 3_000, 200))
    ]
    bad = b'{"data": 5}'
    client = rig.client(gw)
    # Alone and whole in one read: on at once.
    client.send(doc("/docs", valid[0]))
    check(client.read_response(), "/docs", valid[0])
    # The first held by the upstream; a refused one and a valid one queued behind it.
    client.send(doc("/docs?hold=1", valid[1]) + doc("/docs", bad) + doc("/docs", valid[2]))
    release.set()
    check(client.read_response(), "/docs?hold=1", valid[1])
    assert client.read_response()[0] == 400
    check(client.read_response(), "/docs", valid[2])
    # Cut inside its body, then whole again: the connection is in step.
    wire = doc("/docs", valid[1])
    send_in_pieces(client, wire, (len(wire) - 500,))
    check(client.read_response(), "/docs", valid[1])
    client.send(doc("/docs", bad))
    status, _, raw = client.read_response()
    assert status == 400, raw[:300]
    client.send(doc("/docs", valid[0]))
    check(client.read_response(), "/docs", valid[0])
