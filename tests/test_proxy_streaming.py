"""Bodies stream through the gateway: nothing is buffered whole, nothing waits.

The big-body tests run the gateway as a process (`runmcp-fast serve -c`) and
bound the growth of its peak resident memory (VmHWM in /proc/PID/status): a
100 MB body through a gateway that buffered it would add 100 MB. They are
memory bounds, not timings. The latency tests (SSE, chunked) run the gateway
in-process and prove each piece reaches the client while the upstream is
still blocked on an event the test controls.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from servers import (
    AiohttpUpstream,
    GatewayProcess,
    Harness,
    LoopThread,
    RawClient,
    RawRequest,
    wait_event,
    wait_until,
)

from runmcp_fast._dataplane import PyStep, Step
from runmcp_fast.snapshot import RouteInfo

MB = 1024 * 1024
BLOCK = bytes(range(256)) * 4096  # 1 MB, not all one byte
# A gateway that held a whole 100 MB (or 50 MB) body would grow by about that.
GROWTH_LIMIT = 50 * MB


def crc_of_blocks(size: int) -> int:
    crc = 0
    full, rest = divmod(size, len(BLOCK))
    for _ in range(full):
        crc = zlib.crc32(BLOCK, crc)
    return zlib.crc32(BLOCK[:rest], crc)


class Stats:
    """What the upstream app saw, shared with the test thread."""

    def __init__(self) -> None:
        self.written = 0  # download bytes handed to the upstream's socket
        self.received = 0  # upload bytes read by the upstream
        self.stall = threading.Event()  # set: the upload handler may read on
        self.sse_next = threading.Event()


def streaming_app(stats: Stats) -> web.Application:
    async def upload(request: web.Request) -> web.Response:
        crc = 0
        size = 0
        stalled = "stall" in request.query
        async for data in request.content.iter_any():
            size += len(data)
            stats.received = size
            crc = zlib.crc32(data, crc)
            if stalled and size >= 64 * 1024:
                stalled = False
                await wait_event(stats.stall, 20)  # a slow upstream: stops reading
        return web.json_response({"bytes": size, "crc": crc})

    async def download(request: web.Request) -> web.StreamResponse:
        size = int(request.query["size"])
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = size
        await response.prepare(request)
        sent = 0
        while sent < size:
            piece = BLOCK[: min(len(BLOCK), size - sent)]
            await response.write(piece)  # waits while the socket is full
            sent += len(piece)
            stats.written = sent
        await response.write_eof()
        return response

    async def sse(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        await response.write(b"data: 1\n\n")
        await wait_event(stats.sse_next, 10)
        await response.write(b"data: 2\n\n")
        await response.write_eof()
        return response

    app = web.Application(client_max_size=1024 * MB)
    app.router.add_post("/upload", upload)
    app.router.add_get("/download", download)
    app.router.add_get("/sse", sse)
    return app


def config(upstream: str) -> dict[str, Any]:
    return {
        "services": [{"name": "stream", "upstream": upstream, "prefix": "/"}],
        "limits": {"max_body_bytes": 1024 * MB},
    }


class ProcessEnv:
    def __init__(self, tmp_path: Path) -> None:
        self.stats = Stats()
        self.loop = LoopThread()
        self.upstream: AiohttpUpstream | None = None
        self.gateway: GatewayProcess | None = None
        self.socks: list[socket.socket] = []
        try:
            self.upstream = AiohttpUpstream(streaming_app(self.stats), self.loop)
            self.gateway = GatewayProcess.from_config(config(self.upstream.url), tmp_path)
        except BaseException:
            self.close()
            raise
        # Warm up (imports, first buffers, the upstream connection) before measuring.
        client = self.connect()
        client.send(b"GET /download?size=1000000 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert client.read_response()[0] == 200
        client.close()
        self.baseline = self.gateway.peak_rss

    @property
    def growth(self) -> int:
        assert self.gateway is not None
        return self.gateway.peak_rss - self.baseline

    def connect(self, rcvbuf: int = 0) -> RawClient:
        sock = socket.socket()
        self.socks.append(sock)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(30)
        assert self.gateway is not None
        sock.connect(("127.0.0.1", self.gateway.port))
        return RawClient.from_socket(sock)

    def close(self) -> None:
        for sock in self.socks:
            sock.close()
        self.stats.stall.set()
        try:
            if self.gateway is not None:
                assert self.gateway.stop() == 0
        finally:
            if self.upstream is not None:
                self.upstream.close()
            self.loop.close()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[ProcessEnv]:
    process_env = ProcessEnv(tmp_path)
    yield process_env
    process_env.close()


def read_head(client: RawClient) -> tuple[int, dict[str, str]]:
    head = client.read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
    headers = {}
    for line in head[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return int(head[0].split()[1]), headers


def drain_body(client: RawClient, size: int) -> tuple[int, int]:
    """Read `size` body bytes without keeping them: (count, crc32)."""
    crc = zlib.crc32(client.buffer)
    got = len(client.buffer)
    client.buffer = b""
    buffer = bytearray(MB)
    view = memoryview(buffer)
    while got < size:
        n = client.sock.recv_into(view, min(len(buffer), size - got))
        if not n:
            break
        crc = zlib.crc32(view[:n], crc)
        got += n
    return got, crc


def send_upload(client: RawClient, size: int, chunked: bool) -> None:
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    client.send(f"POST /upload HTTP/1.1\r\nHost: t\r\n{framing}\r\n\r\n".encode())
    sent = 0
    while sent < size:
        piece = BLOCK[: min(len(BLOCK), size - sent)]
        if chunked:
            client.send(b"%x\r\n" % len(piece))
        client.send(piece)
        if chunked:
            client.send(b"\r\n")
        sent += len(piece)
    if chunked:
        client.send(b"0\r\n\r\n")


# -- big bodies, bounded memory -------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_100mb_upload_streams_through(env: ProcessEnv, chunked: bool) -> None:
    size = 100 * MB
    client = env.connect()
    send_upload(client, size, chunked)
    status, _, body = client.read_response()
    assert status == 200, body
    assert json.loads(body) == {"bytes": size, "crc": crc_of_blocks(size)}
    assert env.growth < GROWTH_LIMIT, f"the gateway grew by {env.growth / MB:.1f} MB"


def test_100mb_download_streams_through(env: ProcessEnv) -> None:
    size = 100 * MB
    client = env.connect()
    client.send(f"GET /download?size={size} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    status, headers = read_head(client)
    assert status == 200
    assert headers["content-length"] == str(size)  # passed on, not re-chunked
    assert drain_body(client, size) == (size, crc_of_blocks(size))
    assert env.growth < GROWTH_LIMIT, f"the gateway grew by {env.growth / MB:.1f} MB"


def test_slow_client_holds_back_the_upstream(env: ProcessEnv) -> None:
    size = 50 * MB
    client = env.connect(rcvbuf=64 * 1024)
    client.send(f"GET /download?size={size} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    assert read_head(client)[0] == 200
    got = len(client.buffer)
    client.buffer = b""
    # Read slowly: 4 KB every 20 ms, for a bounded 1.5 s.
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        got += len(client.sock.recv(4096))
        time.sleep(0.02)
    growth = env.growth
    written = env.stats.written
    assert growth < 25 * MB, f"the gateway buffered for a slow client: +{growth / MB:.1f} MB"
    # Kernel buffers hold some; the upstream must not have been let run far ahead.
    assert written < size, "the upstream wrote the whole body to a client that read ~300 KB"
    count, _ = drain_body(client, size - got)
    assert got + count == size


def test_slow_upstream_holds_back_the_client(env: ProcessEnv) -> None:
    size = 50 * MB
    client = env.connect()
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    sent = [0]
    errors: list[BaseException] = []

    def upload() -> None:
        try:
            client.send(
                f"POST /upload?stall=1 HTTP/1.1\r\nHost: t\r\nContent-Length: {size}\r\n\r\n".encode()
            )
            while sent[0] < size:
                piece = BLOCK[: min(256 * 1024, size - sent[0])]
                client.send(piece)
                sent[0] += len(piece)
        except BaseException as exc:
            errors.append(exc)

    sender = threading.Thread(target=upload, daemon=True)
    sender.start()
    try:
        assert wait_until(lambda: env.stats.received >= 64 * 1024, 10)
        time.sleep(1.5)  # the upstream reads nothing meanwhile
        growth = env.growth
        assert growth < 25 * MB, f"the gateway buffered for a slow upstream: +{growth / MB:.1f} MB"
        assert sent[0] < size, "the client sent all 50 MB to an upstream that read 64 KB"
    finally:
        env.stats.stall.set()
        sender.join(30)
    assert not errors
    status, _, body = client.read_response()
    assert status == 200, body
    assert json.loads(body) == {"bytes": size, "crc": crc_of_blocks(size)}


# -- no buffering: each piece arrives while the upstream still holds the next ----------------


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    yield harness
    harness.close()


def test_sse_events_arrive_one_by_one(h: Harness) -> None:
    stats = Stats()
    upstream = h.aiohttp(streaming_app(stats))
    gw = h.gateway(config(upstream.url))
    client = h.client(gw.port, timeout=5)
    client.send(b"GET /sse HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n")
    status, headers = read_head(client)
    assert status == 200
    assert headers["content-type"] == "text/event-stream"
    # A TimeoutError here: the gateway held event 1 back.
    client.read_until(b"data: 1\n\n")
    assert not stats.sse_next.is_set()  # the upstream has not written event 2
    stats.sse_next.set()
    client.read_until(b"data: 2\n\n")
    if headers.get("transfer-encoding") == "chunked":
        client.read_until(b"0\r\n\r\n")


def test_chunked_response_is_forwarded_chunk_by_chunk(h: Harness) -> None:
    next_chunk = threading.Event()

    async def handler(req: RawRequest) -> None:
        req.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await wait_event(next_chunk, 10)
        req.write(b"6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")

    upstream = h.raw(handler)
    gw = h.gateway(config(upstream.url))
    client = h.client(gw.port, timeout=5)
    client.send(b"GET /chunks HTTP/1.1\r\nHost: t\r\n\r\n")
    status, headers = read_head(client)
    assert status == 200
    assert headers["transfer-encoding"] == "chunked"
    assert "content-length" not in headers
    client.read_until(b"hello")  # before the upstream sent the rest
    assert not next_chunk.is_set()
    next_chunk.set()
    client.read_until(b" world")
    client.read_until(b"0\r\n\r\n")
    assert client.buffer == b""
    # The connection is reusable: the next response is framed right.
    client.send(b"GET /again HTTP/1.1\r\nHost: t\r\n\r\n")
    assert client.read_response()[2] == b"hello world"


def test_response_pieces_reach_the_client_before_the_body_ends(h: Harness) -> None:
    # Content-Length framing too: bytes are passed on as they come.
    more = threading.Event()

    async def handler(req: RawRequest) -> None:
        req.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nfirst")
        await wait_event(more, 10)
        req.write(b"-last")

    upstream = h.raw(handler)
    gw = h.gateway(config(upstream.url))
    client = h.client(gw.port, timeout=5)
    client.send(b"GET /cl HTTP/1.1\r\nHost: t\r\n\r\n")
    status, headers = read_head(client)
    assert (status, headers["content-length"]) == (200, "10")
    client.read_until(b"first")
    assert not more.is_set()
    more.set()
    assert client.read_exactly(5) == b"-last"


class PeekAtLog:
    """A log step that looks, as the exchange is logged, at what the client's socket holds.

    It peeks (MSG_PEEK: the test still reads it all) up to `wait` seconds for the
    response's end; a gateway that logged before it wrote the response's last bytes
    is blocked in here meanwhile, so the peek sees none of them.
    """

    name = "peek-at-log"
    phase = "log"

    def __init__(self, end: bytes, wait: float = 5.0) -> None:
        self.end = end
        self.wait = wait
        self.sock: socket.socket | None = None
        self.seen: bytes | None = None
        self.logged = threading.Event()

    def log(self, view: Any, status: int) -> None:
        assert self.sock is not None
        deadline = time.monotonic() + self.wait
        seen = b""
        while not seen.endswith(self.end) and (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self.sock], [], [], left)
            if not readable:
                break
            peeked = self.sock.recv(65536, socket.MSG_PEEK)
            if not peeked or peeked == seen:
                break  # closed, or nothing new (the rest is not coming while we block)
            seen = peeked
        self.seen = seen
        self.logged.set()


def test_an_event_streams_last_event_reaches_the_client_before_the_exchange_is_logged(
    h: Harness,
) -> None:
    # As an MCP server answers a tools/call (the Node reference server): the SSE head in
    # one write, then the one event and the stream's end in another. The client waits
    # for that event; the exchange's bookkeeping (log steps, stats) must not come first.
    event = b'event: message\ndata: {"jsonrpc":"2.0","id":1,"result":{}}\n\n'
    go_on = threading.Event()

    async def handler(req: RawRequest) -> None:
        req.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        await wait_event(go_on, 10)
        req.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(event), event))

    peek = PeekAtLog(b"0\r\n\r\n")

    def steps(info: RouteInfo) -> Sequence[Step]:
        return [PyStep(peek)]

    upstream = h.raw(handler)
    gw = h.gateway(config(upstream.url), steps=steps)
    client = h.client(gw.port, timeout=10)
    peek.sock = client.sock
    client.send(b"POST /mcp HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}")
    status, headers = read_head(client)
    assert status == 200 and headers["transfer-encoding"] == "chunked"
    assert client.buffer == b""  # (the peek sees all that follows)
    go_on.set()
    assert peek.logged.wait(15)
    assert peek.seen == b"%x\r\n%s\r\n0\r\n\r\n" % (len(event), event)
    client.read_until(b"0\r\n\r\n")
    assert client.buffer == b""
    # The connection goes on: the next exchange (head and event now come at once, maybe
    # in one read) is answered whole before it is logged too.
    peek.logged.clear()
    client.send(b"POST /mcp HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}")
    assert peek.logged.wait(15)
    seen = peek.seen
    assert seen is not None and seen.startswith(b"HTTP/1.1 200")
    assert seen.endswith(event + b"\r\n0\r\n\r\n")
    client.read_until(b"0\r\n\r\n")


def test_close_delimited_response_is_rechunked_and_completed(h: Harness) -> None:
    async def handler(req: RawRequest) -> None:
        req.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ")
        req.write(b"the end")
        req.close()

    upstream = h.raw(handler)
    gw = h.gateway(config(upstream.url))
    client = h.client(gw.port)
    client.send(b"GET /eof HTTP/1.1\r\nHost: t\r\n\r\n")
    status, headers, body = client.read_response()
    assert (status, body) == (200, b"until the end")
    assert headers["transfer-encoding"] == "chunked"
    # Framed, so the client connection stays open for the next request.
    client.send(b"GET /eof HTTP/1.1\r\nHost: t\r\n\r\n")
    assert client.read_response()[2] == b"until the end"


def test_http10_client_gets_no_chunked_encoding(h: Harness) -> None:
    # RFC 9112 §6.1: chunked must not be sent to an HTTP/1.0 recipient; the
    # body is delimited by closing the connection instead.
    async def handler(req: RawRequest) -> None:
        req.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")

    upstream = h.raw(handler)
    gw = h.gateway(config(upstream.url))
    client = h.client(gw.port)
    client.send(b"GET /old HTTP/1.0\r\nHost: t\r\n\r\n")
    status, headers = read_head(client)
    assert status == 200
    assert "chunked" not in headers.get("transfer-encoding", "")
    assert client.read_to_close() == b"hello"
    assert wait_until(lambda: len(upstream.open) == 1)  # the upstream connection was kept
