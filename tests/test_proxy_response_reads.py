"""An upstream's response read however it is cut into reads (upstream.pxi, _respscan.h).

The gateway reads a response's head and frames its body itself (not with llhttp):
these send each response through a fault proxy that drips it a few bytes at a time,
so that a head, a chunk size, a chunk's CRLF or a trailer ends up split across reads,
and check that the client gets the same answer as from the undivided bytes, and
that the connection is reused after (the framing ended where it should).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from faults import FaultProxy
from servers import Harness, RawClient, RawRequest, http_response

CHUNKED = (
    b"HTTP/1.1 100 Continue\r\n\r\n"
    b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Obs: caf\xe9\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
    b"5;name=value\r\nhello\r\n"
    b"1A\r\n" + b"z" * 26 + b"\r\n"
    b"0\r\nX-Trailer: dropped\r\n\r\n"
)
LENGTH = http_response(b"x" * 300, headers=(("X-A", "b"),))
HEAD_ONLY = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n"  # (to a HEAD)
NO_CONTENT = b"HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n"


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    yield harness
    harness.close()


def _gateway(h: Harness, step: int) -> tuple[RawClient, list[int]]:
    """A client of a gateway whose upstream answers /chunked, /length, HEAD and
    /empty as above, through a proxy that drips `step` bytes at a time; and the
    list of the upstream connections the requests came on."""
    connections: list[int] = []

    async def handler(req: RawRequest) -> None:
        connections.append(req.connection)
        if req.method == "HEAD":
            req.write(HEAD_ONLY)
        elif req.path == "/chunked":
            req.write(CHUNKED)
        elif req.path == "/empty":
            req.write(NO_CONTENT)
        else:
            req.write(LENGTH)

    upstream = h.raw(handler)
    drip = FaultProxy(upstream.port, h.upstream_loop)
    h._upstreams.append(drip)  # type: ignore[arg-type]  # closed with h
    drip.set("drip", n=step, seconds=0.001)
    gw = h.gateway({"services": [{"name": "svc", "upstream": drip.url, "prefix": "/"}]})
    return h.client(gw.port), connections


def _ask(client: RawClient, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    client.send(f"{method} {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    return client.read_response(head_request=method == "HEAD")


@pytest.mark.parametrize("step", [1, 2, 3, 7])
def test_a_response_in_small_reads_comes_whole_and_the_connection_is_reused(
    h: Harness, step: int
) -> None:
    client, connections = _gateway(h, step)
    status, headers, body = _ask(client, "/chunked")
    assert (status, body) == (200, b"hello" + b"z" * 26)
    assert headers["x-obs"] == "caf\xe9"
    assert "x-trailer" not in headers
    status, headers, body = _ask(client, "/length")
    assert (status, headers["x-a"], body) == (200, "b", b"x" * 300)
    status, headers, body = _ask(client, "/head", "HEAD")
    assert (status, headers["content-length"], body) == (200, "12", b"")
    status, headers, body = _ask(client, "/empty")
    assert (status, headers["x-a"], body) == (204, "b", b"")
    status, _, body = _ask(client, "/chunked")
    assert (status, body) == (200, b"hello" + b"z" * 26)
    # Every response ended where its framing said: one upstream connection served all.
    assert connections == [connections[0]] * 5


def _split_upstream(h: Harness, first: bytes, rest: bytes) -> RawClient:
    """A gateway in front of an upstream that writes `first`, pauses, then `rest`: two
    reads for the gateway (were they one, these tests would check less, never fail)."""

    async def handler(req: RawRequest) -> None:
        req.write(first)
        await asyncio.sleep(0.05)  # (shapes the traffic; nothing waits on it)
        req.write(rest)

    upstream = h.raw(handler)
    gw = h.gateway({"services": [{"name": "svc", "upstream": upstream.url, "prefix": "/"}]})
    return h.client(gw.port)


def test_a_head_in_two_reads_then_a_large_body_is_not_taken_for_a_large_head(
    h: Harness,
) -> None:
    # The 64 KiB limit is the head's: the body that follows it in the same read is not.
    body = bytes(range(256)) * 800  # 200 KiB
    client = _split_upstream(
        h,
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-A: " % len(body),
        b"b\r\n\r\n" + body,
    )
    status, headers, got = _ask(client, "/big")
    assert (status, headers["x-a"], got) == (200, "b", body)


@pytest.mark.parametrize(
    ("first", "rest"),
    [
        (b"HTTP/1.1 200", b" OK\nContent-Length: 0\n\n"),
        (b"HTTP/1.1 200 OK\r\nX-A: b\r\n\r", b"X-B: c\r\n\r\n"),
        (b"HTTP/1.1 200 OK\r\nX-A: b\r\n", b"X-\x00B: c\r\nContent-Length: 0\r\n\r\n"),
    ],
    ids=["bare-lf", "cr-then-no-lf", "nul-in-name"],
)
def test_a_head_in_two_reads_is_refused_as_its_bytes_come(
    h: Harness, first: bytes, rest: bytes
) -> None:
    # At once, with 502: not a wait for a head's end that never comes (a 504).
    client = _split_upstream(h, first, rest)
    status, headers, body = _ask(client, "/x")
    assert status == 502, body
    assert headers["content-type"] == "application/problem+json"
    assert b"invalid response" in body


def test_a_head_cut_by_many_hop_by_hop_lines_comes_whole_and_in_order(h: Harness) -> None:
    # Each hop-by-hop line amid the head cuts what is forwarded: 20 cuts, more than the
    # pieces one joined bytes is made of (they are joined a batch at a time).
    lines = "".join(f"X-H{i}: v{i}\r\nKeep-Alive: timeout={i}\r\n" for i in range(20))
    raw = f"HTTP/1.1 200 OK\r\n{lines}Content-Length: 2\r\n\r\nok".encode()

    async def handler(req: RawRequest) -> None:
        req.write(raw)

    upstream = h.raw(handler)
    gw = h.gateway({"services": [{"name": "svc", "upstream": upstream.url, "prefix": "/"}]})
    status, headers, body = _ask(h.client(gw.port), "/many")
    assert (status, body) == (200, b"ok")
    assert [name for name in headers if name.startswith("x-h")] == [f"x-h{i}" for i in range(20)]
    assert [headers[f"x-h{i}"] for i in range(20)] == [f"v{i}" for i in range(20)]
    assert "keep-alive" not in headers
