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

import socket
from collections.abc import Iterator

import pytest
from aiohttp import web
from servers import AsyncioLoopThread, GatewayThread, Harness, LoopThread, RawClient

PATTERN = bytes(range(256)) * 64  # 16 KB, not all one byte
BIG = 6 * 1024 * 1024 + 17  # more than the socket buffers hold (tcp_wmem max: 4 MB)


def body_of(size: int) -> bytes:
    whole, rest = divmod(size, len(PATTERN))
    return PATTERN * whole + PATTERN[:rest]


def app() -> web.Application:
    async def fixed(request: web.Request) -> web.Response:
        return web.Response(body=body_of(int(request.query["size"])))

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        # Small (copied) and large (Span) pieces, each its own chunk upstream.
        for size in (10, 300, 70_000, 1, 255, 256, 5_000):
            await response.write(body_of(size))
        await response.write_eof()
        return response

    application = web.Application()
    application.router.add_get("/fixed", fixed)
    application.router.add_get("/chunked", chunked)
    return application


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


def slow_client(port: int) -> RawClient:
    client = RawClient(port)
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    return client


def test_a_response_larger_than_the_socket_buffers_arrives_whole_then_the_next(
    gateway: GatewayThread,
) -> None:
    with slow_client(gateway.port) as client:
        for size in (BIG, 1000, BIG, 300):
            client.send(f"GET /fixed?size={size} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            status, headers, body = client.read_response()
            assert status == 200
            assert headers["content-length"] == str(size)
            assert body == body_of(size)


def test_pipelined_responses_keep_their_order_through_a_full_socket(
    gateway: GatewayThread,
) -> None:
    sizes = (BIG, 700, 10, BIG // 3, 5000)
    with slow_client(gateway.port) as client:
        client.send(
            b"".join(f"GET /fixed?size={s} HTTP/1.1\r\nHost: t\r\n\r\n".encode() for s in sizes)
        )
        for size in sizes:
            status, _, body = client.read_response()
            assert status == 200
            assert body == body_of(size)


def test_a_chunked_body_is_reframed_around_spans_byte_for_byte(gateway: GatewayThread) -> None:
    expected = b"".join(body_of(size) for size in (10, 300, 70_000, 1, 255, 256, 5_000))
    with slow_client(gateway.port) as client:
        for _ in range(2):
            client.send(b"GET /chunked HTTP/1.1\r\nHost: t\r\n\r\n")
            status, headers, body = client.read_response()
            assert status == 200
            assert headers.get("transfer-encoding") == "chunked"
            assert body == expected
