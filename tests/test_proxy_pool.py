"""The upstream keep-alive pool, end to end over real loopback sockets.

Each test runs an upstream (aiohttp, or a raw asyncio server that writes every
byte itself) and a `Gateway` on their own event-loop threads, and talks to the
gateway with blocking sockets. Connections are counted on the upstream's side
of the wire, so a pool that only *thinks* it reuses a socket still fails.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from servers import (
    GatewayThread,
    Harness,
    RawClient,
    RawRequest,
    RawUpstream,
    http_response,
    wait_event,
    wait_until,
)


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    yield harness
    harness.close()


def config(upstream: str, **pool: Any) -> dict[str, Any]:
    return {
        "services": [{"name": "svc", "upstream": upstream, "prefix": "/"}],
        "pool": pool,
    }


def send_get(client: RawClient, path: str) -> None:
    client.send(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())


def get(client: RawClient, path: str) -> tuple[int, dict[str, str], bytes]:
    send_get(client, path)
    return client.read_response()


def before_sentinel(gw: GatewayThread, upstream: RawUpstream) -> list[tuple[int, int, str]]:
    """A barrier: `GET /sentinel` on a fresh client connection, answered (any status);
    the (connection, number, path) of what the upstream read before it, after
    checking it read nothing but sentinels since. Anything the gateway would still
    send for an earlier request it sends before it forwards the sentinel."""
    with RawClient(gw.port) as client:
        get(client, "/sentinel")
    assert wait_until(lambda: any(r.path == "/sentinel" for r in upstream.requests))
    seen = [(r.connection, r.number, r.path) for r in upstream.requests]
    cut = next(i for i, (_, _, path) in enumerate(seen) if path == "/sentinel")
    assert all(path == "/sentinel" for _, _, path in seen[cut:]), seen
    return seen[:cut]


def pool_stats(gw: GatewayThread) -> tuple[int, int, int]:
    """(open, idle, waiting) of the gateway's only pool, read on its loop."""

    def read() -> tuple[int, int, int]:
        (pool,) = gw.gateway.pools.all()
        return pool.open_count, pool.idle_count, pool.waiting_count

    return gw.loop_thread.call(read)


def assert_problem(response: tuple[int, dict[str, str], bytes], status: int) -> dict[str, Any]:
    got, headers, body = response
    assert got == status, body
    assert headers["content-type"] == "application/problem+json"
    doc: dict[str, Any] = json.loads(body)
    assert doc["status"] == status
    assert doc["title"] and doc["detail"]
    return doc


async def echo_path(req: RawRequest) -> None:
    req.write(http_response(req.path.encode()))


# -- reuse -----------------------------------------------------------------------------


def test_sequential_requests_reuse_one_upstream_connection(h: Harness) -> None:
    peers: list[object] = []

    async def handler(request: web.Request) -> web.Response:
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername"))
        return web.Response(text=request.path)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    upstream = h.aiohttp(app)
    gw = h.gateway(config(upstream.url))

    client = h.client(gw.port)
    for i in range(20):
        status, _, body = get(client, f"/same/{i}")
        assert (status, body) == (200, f"/same/{i}".encode())
    assert len(peers) == 20
    # New client connections each time: the upstream connection is still the one.
    for i in range(5):
        other = RawClient(gw.port)
        try:
            status, _, body = get(other, f"/other/{i}")
        finally:
            other.close()
        assert (status, body) == (200, f"/other/{i}".encode())
    assert len(peers) == 25
    assert len(set(peers)) == 1, f"{len(set(peers))} upstream connections for 25 requests"
    assert pool_stats(gw) == (1, 1, 0)


def test_upstream_connection_close_is_honoured_and_not_forwarded(h: Harness) -> None:
    # The upstream says `Connection: close` but leaves its socket open: the
    # gateway must not send another request on it (RFC 9112 §9.6), and the
    # header is hop-by-hop, so the client's own connection stays alive.
    async def handler(req: RawRequest) -> None:
        req.write(http_response(req.path.encode(), headers=(("Connection", "close"),)))

    upstream = h.raw(handler)
    gw = h.gateway(config(upstream.url))
    client = h.client(gw.port)
    for i in range(3):
        status, headers, body = get(client, f"/c/{i}")
        assert (status, body) == (200, f"/c/{i}".encode())
        assert headers.get("connection", "keep-alive").lower() != "close"
    assert [(r.connection, r.number) for r in upstream.requests] == [(1, 1), (2, 1), (3, 1)]
    assert wait_until(lambda: not upstream.open)


# -- limits: max_connections, FIFO waiters, wait_timeout --------------------------------


def test_max_connections_caps_concurrent_upstream_connections(h: Harness) -> None:
    release = threading.Event()
    active = [0, 0]  # now, most at once

    async def handler(req: RawRequest) -> None:
        active[0] += 1
        active[1] = max(active)
        await wait_event(release)
        active[0] -= 1
        req.write(http_response(req.path.encode()))

    upstream = h.raw(handler)
    gw = h.gateway(config(upstream.url, max_connections=2, wait_timeout=20))
    clients = [h.client(gw.port) for _ in range(6)]
    for i, client in enumerate(clients):
        send_get(client, f"/n/{i}")
    assert wait_until(lambda: len(upstream.requests) == 2 and pool_stats(gw)[2] == 4)
    assert upstream.connections == 2
    release.set()
    for i, client in enumerate(clients):
        status, _, body = client.read_response()
        assert (status, body) == (200, f"/n/{i}".encode())
    assert active[1] == 2
    assert upstream.connections == 2, "a waiter opened a connection past max_connections"
    assert len(upstream.requests) == 6


def test_waiters_are_served_first_in_first_out(h: Harness) -> None:
    release = threading.Event()

    async def handler(req: RawRequest) -> None:
        if req.path == "/hold":
            await wait_event(release)
        req.write(http_response(req.path.encode()))

    upstream = h.raw(handler)
    gw = h.gateway(config(upstream.url, max_connections=1, wait_timeout=20))
    first = h.client(gw.port)
    send_get(first, "/hold")
    assert wait_until(lambda: len(upstream.requests) == 1)
    waiters = []
    for i, name in enumerate("bcdef", start=1):
        client = h.client(gw.port)
        send_get(client, f"/{name}")
        # Each joins the queue before the next one is sent.
        assert wait_until(lambda i=i: pool_stats(gw)[2] == i)  # type: ignore[misc]
        waiters.append(client)
    release.set()
    assert first.read_response()[0] == 200
    for client, name in zip(waiters, "bcdef", strict=True):
        status, _, body = client.read_response()
        assert (status, body) == (200, f"/{name}".encode())
    assert [r.path for r in upstream.requests] == ["/hold", "/b", "/c", "/d", "/e", "/f"]
    assert upstream.connections == 1


def test_wait_timeout_answers_503_problem_when_the_pool_stays_full(h: Harness) -> None:
    release = threading.Event()

    async def handler(req: RawRequest) -> None:
        if req.path == "/slow":
            await wait_event(release)
        req.write(http_response(req.path.encode()))

    upstream = h.raw(handler)
    gw = h.gateway(config(upstream.url, max_connections=1, wait_timeout=0.3))
    slow = h.client(gw.port)
    send_get(slow, "/slow")
    assert wait_until(lambda: len(upstream.requests) == 1)
    waiting = h.client(gw.port, timeout=5)
    doc = assert_problem(get(waiting, "/fast"), 503)
    assert "pool" in doc["detail"] or "free" in doc["detail"]
    assert [r.path for r in upstream.requests] == ["/slow"]
    release.set()
    assert slow.read_response()[0] == 200
    # The 503 kept the client connection; now the pool has room again.
    status, _, body = get(waiting, "/fast")
    assert (status, body) == (200, b"/fast")
    assert upstream.connections == 1


# -- idle connections: max_idle, idle_timeout, max_requests ------------------------------


def test_max_idle_closes_connections_past_it(h: Harness) -> None:
    arrived = [0]

    async def handler(req: RawRequest) -> None:
        arrived[0] += 1
        # Hold every response until all three are in: three connections at once.
        await wait_event(_Countdown(arrived, 3))
        req.write(http_response(b"ok"))

    upstream = h.raw(handler)
    gw = h.gateway(config(upstream.url, max_connections=10, max_idle=1))
    clients = [h.client(gw.port) for _ in range(3)]
    for client in clients:
        send_get(client, "/x")
    for client in clients:
        assert client.read_response()[0] == 200
    assert upstream.connections == 3
    assert wait_until(lambda: len(upstream.open) == 1), f"{len(upstream.open)} left open"
    assert pool_stats(gw) == (1, 1, 0)
    # The one kept is reused.
    assert get(clients[0], "/again")[0] == 200
    assert upstream.connections == 3


def test_max_idle_zero_keeps_no_connection(h: Harness) -> None:
    upstream = h.raw(echo_path)
    gw = h.gateway(config(upstream.url, max_idle=0))
    client = h.client(gw.port)
    for i in range(3):
        assert get(client, f"/{i}")[0] == 200
        assert wait_until(lambda: not upstream.open)
    assert upstream.connections == 3
    assert pool_stats(gw) == (0, 0, 0)


def test_idle_timeout_closes_idle_upstream_connections(h: Harness) -> None:
    upstream = h.raw(echo_path)
    gw = h.gateway(config(upstream.url, idle_timeout=0.3))
    client = h.client(gw.port)
    assert get(client, "/a")[0] == 200
    assert len(upstream.open) == 1
    assert wait_until(lambda: not upstream.open, 5), "the idle connection was never closed"
    assert wait_until(lambda: pool_stats(gw) == (0, 0, 0))
    status, _, body = get(client, "/b")
    assert (status, body) == (200, b"/b")
    assert upstream.connections == 2


def test_max_requests_retires_a_connection(h: Harness) -> None:
    upstream = h.raw(echo_path)
    gw = h.gateway(config(upstream.url, max_requests=3))
    client = h.client(gw.port)
    for i in range(7):
        status, _, body = get(client, f"/{i}")
        assert (status, body) == (200, f"/{i}".encode())
    assert [r.connection for r in upstream.requests] == [1, 1, 1, 2, 2, 2, 3]
    assert wait_until(lambda: upstream.closed_connections == 2)


# -- dead connections and retries ---------------------------------------------------------


async def close_after_response(req: RawRequest) -> None:
    # Closes after every response without saying `Connection: close`: the
    # gateway's idle socket is dead, and it may not have noticed yet.
    req.write(http_response(req.path.encode()))
    req.close()


def test_dead_idle_connection_is_detected_and_replaced(h: Harness) -> None:
    upstream = h.raw(close_after_response)
    gw = h.gateway(config(upstream.url))
    client = h.client(gw.port)
    for i in range(5):
        status, _, body = get(client, f"/seq/{i}")
        assert (status, body) == (200, f"/seq/{i}".encode())
        assert wait_until(lambda: not upstream.open)
    assert upstream.connections == 5
    assert all(r.number == 1 for r in upstream.requests)
    assert wait_until(lambda: pool_stats(gw)[0] == 0)


def test_get_succeeds_when_the_upstream_closes_after_every_response(h: Harness) -> None:
    # Back to back and pipelined: the next request often leaves before the
    # upstream's FIN is read, onto a dead socket; an idempotent one is retried.
    upstream = h.raw(close_after_response)
    gw = h.gateway(config(upstream.url))
    client = h.client(gw.port)
    for i in range(10):
        status, _, body = get(client, f"/b2b/{i}")
        assert (status, body) == (200, f"/b2b/{i}".encode())
    client.send(b"".join(f"GET /pipe/{i} HTTP/1.1\r\nHost: t\r\n\r\n".encode() for i in range(20)))
    for i in range(20):
        status, _, body = client.read_response()
        assert (status, body) == (200, f"/pipe/{i}".encode())
    # Every request the upstream read was the first on its connection.
    assert all(r.number == 1 for r in upstream.requests)


async def drop_reused(req: RawRequest) -> None:
    """Answer the first request on a connection; close on any later one, unanswered."""
    if req.number > 1:
        req.close()
        return
    req.write(http_response(req.method.encode() + b" " + req.path.encode() + b" " + req.body))


def test_get_is_retried_once_on_a_fresh_connection(h: Harness) -> None:
    upstream = h.raw(drop_reused)
    gw = h.gateway(config(upstream.url))
    client = h.client(gw.port)
    assert get(client, "/first")[0] == 200
    status, _, body = get(client, "/second")
    assert (status, body) == (200, b"GET /second ")
    seen = [(r.connection, r.number, r.path) for r in upstream.requests]
    assert seen == [(1, 1, "/first"), (1, 2, "/second"), (2, 1, "/second")]


def test_put_is_retried_with_its_body(h: Harness) -> None:
    upstream = h.raw(drop_reused)
    gw = h.gateway(config(upstream.url))
    client = h.client(gw.port)
    assert get(client, "/first")[0] == 200
    client.send(b"PUT /doc HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world")
    status, _, body = client.read_response()
    assert (status, body) == (200, b"PUT /doc hello world")
    puts = [(r.connection, r.number, r.body) for r in upstream.requests if r.method == "PUT"]
    assert puts == [(1, 2, b"hello world"), (2, 1, b"hello world")]


def test_post_whose_body_was_sent_is_not_retried(h: Harness) -> None:
    upstream = h.raw(drop_reused)
    gw = h.gateway(config(upstream.url))
    client = h.client(gw.port)
    assert get(client, "/first")[0] == 200
    body = b"x" * 1000
    client.send(b"POST /order HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n" + body)
    assert_problem(client.read_response(), 502)
    # Never sent twice: a non-idempotent request may have had its effect.
    assert before_sentinel(gw, upstream) == [(1, 1, "/first"), (1, 2, "/order")]
    posts = [(r.connection, r.number, r.body) for r in upstream.requests if r.method == "POST"]
    assert posts == [(1, 2, body)]


def test_retry_happens_at_most_once(h: Harness) -> None:
    async def handler(req: RawRequest) -> None:
        if (req.connection, req.number) == (1, 1):
            req.write(http_response(b"first"))
        else:
            req.close()  # every later request, on any connection, dies unanswered

    upstream = h.raw(handler)
    gw = h.gateway(config(upstream.url))
    client = h.client(gw.port)
    assert get(client, "/first")[0] == 200
    assert_problem(get(client, "/again"), 502)
    assert before_sentinel(gw, upstream) == [
        (1, 1, "/first"),
        (1, 2, "/again"),
        (2, 1, "/again"),
    ]


class _Countdown:
    """Looks like a threading.Event to `wait_event`: set once `counter[0] >= n`."""

    def __init__(self, counter: list[int], n: int) -> None:
        self.counter = counter
        self.n = n

    def is_set(self) -> bool:
        return self.counter[0] >= self.n


# -- clients that leave -------------------------------------------------------------------


def reset(client: RawClient) -> None:
    """Leave with a TCP RST: unlike a FIN (which may be a half-close of a client
    still reading, RFC 9112 §9.6), this says the client is gone."""
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


def test_a_waiter_that_disconnects_is_skipped(h: Harness) -> None:
    release = threading.Event()

    async def handler(req: RawRequest) -> None:
        if req.path == "/hold":
            await wait_event(release)
        req.write(http_response(req.path.encode()))

    upstream = h.raw(handler)
    gw = h.gateway(config(upstream.url, max_connections=1, wait_timeout=20))
    holder = h.client(gw.port)
    send_get(holder, "/hold")
    assert wait_until(lambda: len(upstream.requests) == 1)
    leaver = RawClient(gw.port)
    send_get(leaver, "/left")
    assert wait_until(lambda: pool_stats(gw)[2] == 1)
    reset(leaver)
    # On a loaded machine the reset can reach the gateway late: wait until it
    # has seen the leaver go (only the holder is left), as the test means.
    assert wait_until(lambda: gw.loop_thread.call(lambda: len(gw.gateway._ctx.connections)) == 1)
    stayer = h.client(gw.port)
    send_get(stayer, "/stayed")
    release.set()
    assert holder.read_response()[0] == 200
    status, _, body = stayer.read_response()
    assert (status, body) == (200, b"/stayed")
    assert [r.path for r in upstream.requests] == ["/hold", "/stayed"]
    assert wait_until(lambda: pool_stats(gw) == (1, 1, 0))


def test_a_client_leaving_mid_exchange_never_gets_its_connection_reused(h: Harness) -> None:
    # The upstream still owes that response: the socket is out of sync, and
    # pooling it would hand the late answer to the next client.
    release = threading.Event()

    async def handler(req: RawRequest) -> None:
        if req.path == "/late":
            await wait_event(release)
        req.write(http_response(req.path.encode()))

    upstream = h.raw(handler)
    gw = h.gateway(config(upstream.url))
    leaver = RawClient(gw.port)
    send_get(leaver, "/late")
    assert wait_until(lambda: len(upstream.requests) == 1)
    reset(leaver)
    assert wait_until(lambda: not upstream.open), "the abandoned upstream connection stayed open"
    release.set()
    client = h.client(gw.port)
    for i in range(3):
        status, _, body = get(client, f"/next/{i}")
        assert (status, body) == (200, f"/next/{i}".encode())
    assert upstream.connections == 2


def test_a_client_leaving_mid_body_closes_the_upstream_connection(h: Harness) -> None:
    async def handler(req: RawRequest) -> None:
        if req.path == "/big":
            req.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n" + b"z" * 100_000)
            return  # the rest never comes: only the client leaving ends this
        req.write(http_response(req.path.encode()))

    upstream = h.raw(handler)
    gw = h.gateway(config(upstream.url))
    leaver = RawClient(gw.port)
    send_get(leaver, "/big")
    leaver.read_until(b"\r\n\r\n")
    leaver.close()
    assert wait_until(lambda: not upstream.open)
    client = h.client(gw.port)
    status, _, body = get(client, "/after")
    assert (status, body) == (200, b"/after")
