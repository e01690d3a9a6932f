"""Writes on the socket itself, the transport's buffer when the socket is full (send.pxi).

The data plane writes a response with one writev() on the client's socket while
the transport holds nothing, and gives what the socket does not take to the
transport, which then owns the order until its buffer is empty again. These run
a response larger than the socket buffers to a client that does not read at
first, so that the socket fills mid-response, then a second one on the same
connection, byte for byte; on uvloop (production) and on asyncio's own loop
(the other transport written to directly). Body pieces go out as Spans of the
upstream's reads; chunked bodies are re-framed around them.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from functools import cache

import pytest
from aiohttp import web
from servers import AsyncioLoopThread, GatewayThread, Harness, LoopThread, RawClient

from runmcp_fast._dataplane import _chunk_size_line

BIG = 6 * 1024 * 1024 + 17  # more than the socket buffers hold (tcp_wmem max: 4 MB)
# Small (copied) and large (Span) pieces, each its own chunk upstream.
CHUNKS = (10, 300, 70_000, 1, 255, 256, 5_000, 300_000, 1_000_000)


@cache
def random_body(seed: int, size: int) -> bytes:
    """Random bytes, different for each seed: a byte sent from the wrong place (an
    overwritten buffer, a repeated piece) can not pass for the right one."""
    return random.Random(seed).randbytes(size)


def chunked_body(seed: int) -> bytes:
    return b"".join(random_body(seed * 100 + i, size) for i, size in enumerate(CHUNKS))


def app() -> web.Application:
    """/fixed?seed=S&size=N: random_body(S, N); /chunked?seed=S: chunked_body(S)."""

    async def fixed(request: web.Request) -> web.Response:
        return web.Response(
            body=random_body(int(request.query["seed"]), int(request.query["size"]))
        )

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        seed = int(request.query["seed"])
        for i, size in enumerate(CHUNKS):
            await response.write(random_body(seed * 100 + i, size))
        await response.write_eof()
        return response

    application = web.Application()
    application.router.add_get("/fixed", fixed)
    application.router.add_get("/chunked", chunked)
    return application


def slow_client(port: int) -> RawClient:
    client = RawClient(port)
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    return client


@pytest.fixture(params=["uvloop", "asyncio"])
def gateway(request: pytest.FixtureRequest) -> Iterator[GatewayThread]:
    harness = Harness()
    upstream = harness.aiohttp(app())
    loop_thread: LoopThread | None = None
    if request.param == "asyncio":
        loop_thread = AsyncioLoopThread()
        gw = GatewayThread(
            {"services": [{"name": "svc", "upstream": upstream.url, "prefix": "/"}]}, loop_thread
        )
    else:
        gw = harness.gateway(
            {"services": [{"name": "svc", "upstream": upstream.url, "prefix": "/"}]}
        )
    yield gw
    if loop_thread is not None:
        gw.stop()
        loop_thread.close()
    harness.close()


def test_a_response_larger_than_the_socket_buffers_arrives_whole_then_the_next(
    gateway: GatewayThread,
) -> None:
    with slow_client(gateway.port) as client:
        for seed, size in enumerate((BIG, 1000, BIG, 300)):
            client.send(f"GET /fixed?seed={seed}&size={size} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            status, headers, body = client.read_response()
            assert status == 200
            assert headers["content-length"] == str(size)
            assert body == random_body(seed, size)


def test_pipelined_responses_keep_their_order_through_a_full_socket(
    gateway: GatewayThread,
) -> None:
    sizes = (BIG, 700, 10, BIG // 3, 5000)
    with slow_client(gateway.port) as client:
        client.send(
            b"".join(
                f"GET /fixed?seed={i}&size={s} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
                for i, s in enumerate(sizes)
            )
        )
        for seed, size in enumerate(sizes):
            status, _, body = client.read_response()
            assert status == 200
            assert body == random_body(seed, size)


def test_a_chunked_body_is_reframed_around_spans_byte_for_byte(gateway: GatewayThread) -> None:
    with slow_client(gateway.port) as client:
        for seed in range(2):
            client.send(f"GET /chunked?seed={seed} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            status, headers, body = client.read_response()
            assert status == 200
            assert headers.get("transfer-encoding") == "chunked"
            assert body == chunked_body(seed)


@pytest.mark.parametrize(
    "size", [1, 9, 10, 15, 16, 255, 256, 4095, 65536, 262144, 2**31 - 1, 2**40 + 7, 2**63 - 1]
)
def test_a_chunk_size_line_is_the_size_in_hex(size: int) -> None:
    # What the client reads to frame the re-chunked body: one digit wrong loses the stream.
    assert _chunk_size_line(size) == b"%x\r\n" % size
