"""Edge cases of upstream resilience and live configuration, found by probing.

Real upstreams and a real gateway on loopback (servers.Harness); each test
synchronises on events (a request seen by an upstream, a counter on the
gateway's loop), never on sleeps.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from servers import (
    GatewayThread,
    Harness,
    LoopThread,
    RawClient,
    RawRequest,
    http_response,
    wait_event,
    wait_until,
)


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    yield harness
    harness.close()


def send_get(client: RawClient, path: str) -> None:
    client.send(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())


def get(client: RawClient, path: str) -> tuple[int, dict[str, str], bytes]:
    send_get(client, path)
    return client.read_response()


def waiting(gw: GatewayThread) -> dict[str, int]:
    """Requests waiting for a connection, per pool, read on the gateway's loop."""
    return gw.loop_thread.call(lambda: {p.name: p.waiting_count for p in gw.gateway.pools.all()})


def holding_upstream(h: Harness, name: str) -> tuple[Any, threading.Event]:
    """An upstream answering its name and path; `/hold` paths wait for the event."""
    release = threading.Event()

    async def handler(req: RawRequest) -> None:
        if "/hold" in req.path:
            await wait_event(release, 30)
        req.write(http_response(f"{name} {req.path}".encode()))

    return h.raw(handler), release


# -- a request that gave up waiting leaves nothing behind for the next one ---------------


def test_a_request_timed_out_while_waiting_never_lends_its_place_to_the_next(h: Harness) -> None:
    # Request 1 on a keep-alive connection waits for a connection to A (pool full) and
    # ends at its total timeout; request 2 on the same client connection waits for B.
    # When A's connection frees, it must go to nobody (request 1 is answered), never
    # to request 2: that would send a request for B to A.
    a, release_a = holding_upstream(h, "A")
    b, release_b = holding_upstream(h, "B")
    gw = h.gateway(
        {
            "pool": {"max_connections": 1, "wait_timeout": 30},
            "services": [
                {"name": "hold-a", "upstream": a.url, "prefix": "/hold-a"},
                {"name": "a", "upstream": a.url, "prefix": "/a", "timeouts": {"total": 0.3}},
                {"name": "b", "upstream": b.url, "prefix": "/b"},
            ],
        }
    )
    holder_a = h.client(gw.port)
    send_get(holder_a, "/hold-a/hold")
    holder_b = h.client(gw.port)
    send_get(holder_b, "/b/hold")
    assert wait_until(lambda: len(a.requests) == 1 and len(b.requests) == 1)
    client = h.client(gw.port)
    # Pipelined: request 2 starts waiting as request 1 is answered (a sweep of the
    # pool in between would drop the stale place; this must not depend on one).
    client.send(b"GET /a/1 HTTP/1.1\r\nHost: test\r\n\r\nGET /b/2 HTTP/1.1\r\nHost: test\r\n\r\n")
    status, _, body = client.read_response()
    assert status == 504, body
    assert wait_until(lambda: waiting(gw).get(f"http://127.0.0.1:{b.port}") == 1)
    release_a.set()
    assert holder_a.read_response()[0] == 200
    release_b.set()
    assert holder_b.read_response()[0] == 200
    status, _, body = client.read_response()
    assert (status, body) == (200, b"B /b/2"), "a request for B was sent to A"
    assert [r.path for r in a.requests] == ["/hold-a/hold"]


class SilentServer:
    """A TCP server that accepts and never writes (a TLS upstream whose handshake
    hangs); `drop()` closes what it accepted; `accepted` and `lost` count connections."""

    def __init__(self, loop_thread: LoopThread) -> None:
        self.loop_thread = loop_thread
        self.accepted = 0
        self.lost = 0
        self.transports: list[asyncio.BaseTransport] = []
        outer = self

        class Conn(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                outer.accepted += 1
                outer.transports.append(transport)

            def connection_lost(self, exc: Exception | None) -> None:
                outer.lost += 1

        async def start() -> asyncio.Server:
            return await asyncio.get_running_loop().create_server(Conn, "127.0.0.1", 0)

        self.server = loop_thread.run(start())
        self.port = int(self.server.sockets[0].getsockname()[1])  # type: ignore[index]

    def drop(self) -> None:
        def close_all() -> None:
            for transport in self.transports:
                transport.close()

        self.loop_thread.call(close_all)

    def close(self) -> None:
        self.drop()
        self.loop_thread.call(self.server.close)


def silent(h: Harness) -> SilentServer:
    server = SilentServer(h.upstream_loop)
    h._upstreams.append(server)  # type: ignore[arg-type]  # anything with close()
    return server


def test_a_connect_still_under_way_for_an_answered_request_never_serves_the_next(
    h: Harness,
) -> None:
    # Request 1 waits for a TLS connection to A (its handshake hangs) and ends at its
    # total timeout; request 2 on the same client connection waits for B. When A's
    # connect then fails, that is request 1's business, over: request 2 must not be
    # answered "can not connect to A".
    a = silent(h)
    b, release_b = holding_upstream(h, "B")
    gw = h.gateway(
        {
            "pool": {"max_connections": 1, "wait_timeout": 30, "connect_timeout": 30},
            "services": [
                {
                    "name": "a",
                    "upstream": f"https://127.0.0.1:{a.port}",
                    "prefix": "/a",
                    "timeouts": {"total": 0.3},
                },
                {"name": "b", "upstream": b.url, "prefix": "/b"},
            ],
        }
    )
    holder_b = h.client(gw.port)
    send_get(holder_b, "/b/hold")
    assert wait_until(lambda: len(b.requests) == 1)
    client = h.client(gw.port)
    client.send(b"GET /a/1 HTTP/1.1\r\nHost: test\r\n\r\nGET /b/2 HTTP/1.1\r\nHost: test\r\n\r\n")
    status, _, body = client.read_response()
    assert status == 504, body
    assert wait_until(lambda: waiting(gw).get(f"http://127.0.0.1:{b.port}") == 1)
    assert a.accepted == 1
    a.drop()  # A's handshake fails now
    assert wait_until(lambda: a.lost == 1)
    release_b.set()
    assert holder_b.read_response()[0] == 200
    status, _, body = client.read_response()
    assert (status, body) == (200, b"B /b/2"), body


# -- a retry is held to the circuit breaker too -------------------------------------------


def test_a_retry_never_takes_a_replica_past_its_max_requests(h: Harness) -> None:
    # B has as many requests in flight as its circuit breaker allows (1). A GET that
    # A answers 502 may be retried, but not on B: that would take B past the limit
    # that is there to protect it. The client gets A's answer.
    async def bad(req: RawRequest) -> None:
        req.write(http_response(b"A", status=502, reason="Bad Gateway"))

    a = h.raw(bad)
    b, release_b = holding_upstream(h, "B")
    gw = h.gateway(
        {
            "services": [
                {
                    "name": "svc",
                    "upstream": [a.url, b.url],
                    "prefix": "/",
                    "circuit_breaker": {"max_requests": 1},
                    "retries": {"attempts": 1, "budget_min": 10},
                }
            ]
        }
    )
    holder = h.client(gw.port)
    send_get(holder, "/hold")  # on B (directly, or retried there after A's 502)
    assert wait_until(lambda: len(b.requests) == 1)
    client = h.client(gw.port)
    status, _, body = get(client, "/x")
    release_b.set()
    assert holder.read_response()[0] == 200
    assert [r.path for r in b.requests] == ["/hold"], "B was sent a request past its limit"
    assert (status, body) == (502, b"A")


# -- a pool no service uses any more still keeps its promises -----------------------------


def test_a_request_waiting_on_a_removed_service_still_gets_its_wait_timeout(h: Harness) -> None:
    # A request waits for a connection to A (pool full: a long request holds it) when
    # A's service is deleted. It was routed before the change and goes on, but its
    # wait is still bounded by pool.wait_timeout: a 503, not a wait as long as the
    # holder's (here: until the test ends it).
    a, release_a = holding_upstream(h, "A")
    b, _ = holding_upstream(h, "B")
    gw = h.gateway(
        {
            "pool": {"max_connections": 1, "wait_timeout": 0.3},
            "services": [
                {"name": "a", "upstream": a.url, "prefix": "/a"},
                {"name": "b", "upstream": b.url, "prefix": "/b"},
            ],
        }
    )
    holder = h.client(gw.port)
    send_get(holder, "/a/hold")
    assert wait_until(lambda: len(a.requests) == 1)
    client = h.client(gw.port)
    send_get(client, "/a/waits")
    assert wait_until(lambda: waiting(gw).get(f"http://127.0.0.1:{a.port}") == 1)
    gw.loop_thread.run(gw.gateway.control.delete_service("", "a"))
    assert f"http://127.0.0.1:{a.port}" not in waiting(gw)  # retired
    try:
        status, _, body = client.read_response()
        assert status == 503, body
        assert b"came free in time" in body
    finally:
        release_a.set()
    assert holder.read_response()[0] == 200
    assert [r.path for r in a.requests] == ["/a/hold"]


# -- the first-byte timeout counts from the request written, not from its head ------------


def test_a_slow_upload_is_not_cut_by_the_first_byte_timeout(h: Harness) -> None:
    # timeouts.first_byte is "from the request written to the response head": an
    # upload that takes longer than it (the client sends its body slowly, within the
    # listener's body timeout) is not a silent upstream. The upstream answers once it
    # has the whole body.
    async def echo_length(req: RawRequest) -> None:
        req.write(http_response(str(len(req.body)).encode()))

    upstream = h.raw(echo_length)
    gw = h.gateway(
        {
            "services": [
                {
                    "name": "svc",
                    "upstream": upstream.url,
                    "prefix": "/",
                    "timeouts": {"first_byte": 0.2},
                }
            ]
        }
    )
    client = h.client(gw.port)
    client.send(b"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 6\r\n\r\nabc")
    assert wait_until(lambda: upstream.connections == 1)
    # Time goes by past first_byte (and the sweeps that check it) mid-upload: nothing
    # but the passing of time can show a deadline that should not be running.
    time.sleep(1.0)
    client.send(b"def")
    status, _, body = client.read_response()
    assert (status, body) == (200, b"6"), body


# -- the keep-alive race's reconnect is under the circuit breaker ------------------------


def test_the_keep_alive_race_reconnect_stays_under_the_breakers_connections(h: Harness) -> None:
    # Two services share the upstream's pool; "limited" allows one connection to it.
    # /free/hold holds one; /free/warm leaves a second idle. /limited/race takes that
    # idle one (reuse is not capped), which the upstream closes unanswered: the
    # keep-alive race, sent again on a fresh connection. That reconnect was capped
    # by the pool's max_connections (1024), not the breaker's 1: a second
    # connection while one is held. It must wait for the held one, as any request
    # of that service would.
    release = threading.Event()
    raced: list[int] = []

    async def handler(req: RawRequest) -> None:
        if req.path == "/free/hold":
            await wait_event(release, 30)
        elif req.path == "/limited/race" and not raced:
            raced.append(req.connection)
            req.close()  # on a kept-alive connection, before any byte of an answer
            return
        req.write(http_response(f"{req.path} on {req.connection}".encode()))

    upstream = h.raw(handler)
    gw = h.gateway(
        {
            "pool": {"wait_timeout": 30},
            "services": [
                {"name": "free", "upstream": upstream.url, "prefix": "/free"},
                {
                    "name": "limited",
                    "upstream": upstream.url,
                    "prefix": "/limited",
                    "circuit_breaker": {"max_connections": 1},
                },
            ],
        }
    )
    holder = h.client(gw.port)
    send_get(holder, "/free/hold")
    assert wait_until(lambda: len(upstream.requests) == 1)
    assert get(h.client(gw.port), "/free/warm")[:1] == (200,)
    client = h.client(gw.port)
    send_get(client, "/limited/race")
    pool = f"http://127.0.0.1:{upstream.port}"
    assert wait_until(lambda: len(upstream.requests) > 3 or waiting(gw).get(pool) == 1)
    assert [r.path for r in upstream.requests] == ["/free/hold", "/free/warm", "/limited/race"], (
        "the retry went out on a second connection while the breaker allows one"
    )
    assert raced == [2]
    release.set()
    assert holder.read_response()[0] == 200
    status, _, body = client.read_response()
    assert (status, body) == (200, b"/limited/race on 1")  # the held one, once it came free
