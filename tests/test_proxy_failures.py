"""Upstream failures, end to end: what a client sees when the upstream misbehaves.

Before the response head the gateway answers itself, always with an
`application/problem+json` body (RFC 9457): 502 when the upstream can not be
reached or answers nonsense, 504 when it is too slow. Once the head has gone
out, a failure can only cut the client connection, so that a truncated body
never looks complete (RFC 9112 §8).
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from servers import (
    Harness,
    RawClient,
    RawRequest,
    free_port,
    http_response,
    refused_port,
    wait_event,
    wait_until,
)


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    yield harness
    harness.close()


def config(upstream: str, pool: dict[str, Any] | None = None, **service: Any) -> dict[str, Any]:
    return {
        "services": [{"name": "svc", "upstream": upstream, "prefix": "/", **service}],
        "pool": pool or {},
    }


def get(client: RawClient, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    client.send(f"{method} {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    return client.read_response(head_request=method == "HEAD")


def assert_problem(response: tuple[int, dict[str, str], bytes], status: int) -> dict[str, Any]:
    """A gateway-made error: the status, problem+json, and a body that says the same."""
    got, headers, body = response
    assert got == status, body
    assert headers["content-type"] == "application/problem+json"
    doc: dict[str, Any] = json.loads(body)
    assert doc["status"] == status
    assert isinstance(doc["title"], str) and doc["title"]
    assert isinstance(doc["detail"], str) and doc["detail"]
    assert doc.get("type", "about:blank") == "about:blank"
    return doc


def read_until_closed(client: RawClient) -> tuple[bytes, bool]:
    """Everything until the peer closes; (data, True when it was a reset)."""
    reset = False
    try:
        while client.recv_some():
            pass
    except ConnectionResetError:
        reset = True
    data, client.buffer = client.buffer, b""
    return data, reset


@pytest.fixture
def unaccepting_port() -> Iterator[int]:
    """A loopback port whose accept queue is full: a SYN to it is dropped, so
    connecting hangs until the connector gives up (a connect timeout on loopback)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers: list[socket.socket] = []
    try:
        for _ in range(16):
            sock = socket.socket()
            sock.settimeout(0.3)
            try:
                sock.connect(("127.0.0.1", port))
            except TimeoutError:
                sock.close()
                break
            fillers.append(sock)
        else:
            pytest.skip("the kernel accepts past a full backlog: no connect timeout on loopback")
        yield port
    finally:
        for sock in fillers:
            sock.close()
        listener.close()


# -- before the response head: the gateway answers ----------------------------------------


def test_an_upstream_that_is_the_gateway_itself_ends_in_a_508(h: Harness) -> None:
    """A misconfigured upstream URL naming the gateway's own listener: the request goes
    round until its Via names us 10 times, then 508 (it went round until its head
    outgrew 16 KB, ~100 hops and a connection each, and a 431 said nothing of why)."""
    port = free_port()
    gw = h.gateway(
        {
            "listeners": [{"address": f"127.0.0.1:{port}"}],
            "services": [{"name": "svc", "upstream": f"http://127.0.0.1:{port}", "prefix": "/"}],
        }
    )
    doc = json.loads(get(h.client(gw.port), "/x")[2])
    assert doc["status"] == 508 and "leads back to a gateway" in doc["detail"]


def test_connection_refused_is_502(h: Harness) -> None:
    gw = h.gateway(config(f"http://127.0.0.1:{refused_port()}"))
    client = h.client(gw.port)
    doc = assert_problem(get(client, "/x"), 502)
    assert "connect" in doc["detail"]
    # The connection stays usable, and a HEAD gets the same head without a body.
    status, headers, body = get(client, "/x", "HEAD")
    assert (status, body) == (502, b"")
    assert headers["content-type"] == "application/problem+json"
    assert_problem(get(client, "/y"), 502)


@pytest.mark.parametrize("where", ["pool", "service"])
def test_connect_timeout_is_504(h: Harness, unaccepting_port: int, where: str) -> None:
    url = f"http://127.0.0.1:{unaccepting_port}"
    if where == "pool":
        data = config(url, {"connect_timeout": 0.3})
    else:
        data = config(url, connect_timeout=0.3)
    gw = h.gateway(data)
    client = h.client(gw.port, timeout=5)
    doc = assert_problem(get(client, "/x"), 504)
    assert "timed out" in doc["detail"] or "connect" in doc["detail"]


@pytest.mark.parametrize("where", ["pool", "service"])
def test_read_timeout_before_the_head_is_504(h: Harness, where: str) -> None:
    never = threading.Event()

    async def handler(req: RawRequest) -> None:
        await wait_event(never, 5)

    upstream = h.raw(handler)
    if where == "pool":
        data = config(upstream.url, {"read_timeout": 0.3})
    else:
        data = config(upstream.url, read_timeout=0.3)
    gw = h.gateway(data)
    client = h.client(gw.port, timeout=5)
    assert_problem(get(client, "/slow"), 504)
    assert len(upstream.requests) == 1  # a timeout is not retried
    # The silent upstream connection is out of sync: it is dropped, not pooled.
    assert wait_until(lambda: not upstream.open)


def test_upstream_reset_before_the_response_is_502(h: Harness) -> None:
    async def handler(req: RawRequest) -> None:
        req.reset()

    upstream = h.raw(handler)
    gw = h.gateway(config(upstream.url))
    client = h.client(gw.port)
    assert_problem(get(client, "/x"), 502)
    # A fresh connection failing is not the stale keep-alive race: no retry.
    assert len(upstream.requests) == 1


def test_upstream_closing_without_a_response_is_502(h: Harness) -> None:
    async def handler(req: RawRequest) -> None:
        req.close()

    upstream = h.raw(handler)
    gw = h.gateway(config(upstream.url))
    client = h.client(gw.port)
    doc = assert_problem(get(client, "/x"), 502)
    assert "closed" in doc["detail"]


INVALID_RESPONSES = {
    "garbage": b"garbage\r\n\r\n",
    "status-not-a-number": b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n",
    "status-four-digits": b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
    # RFC 9112 §6.3 (5): a proxy MUST answer 502 to conflicting lengths.
    "content-length-twice": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "content-length-list": b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!",
    "content-length-not-a-number": b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
    "content-length-negative": b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    "header-without-colon": b"HTTP/1.1 200 OK\r\nNo colon here\r\nContent-Length: 0\r\n\r\n",
    "nul-in-header": b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n",
    "space-before-colon": b"HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n",
    "length-and-chunked": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"
    ),
    "chunked-twice": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n"
    ),
    "bare-lf": b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
    "obs-fold": b"HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\nContent-Length: 0\r\n\r\n",
    "ctl-in-reason": b"HTTP/1.1 200 O\x01K\r\nContent-Length: 0\r\n\r\n",
    "http-2": b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
}


@pytest.mark.parametrize("raw", INVALID_RESPONSES.values(), ids=INVALID_RESPONSES.keys())
def test_invalid_response_is_502(h: Harness, raw: bytes) -> None:
    async def handler(req: RawRequest) -> None:
        req.write(raw)

    upstream = h.raw(handler)
    gw = h.gateway(config(upstream.url))
    client = h.client(gw.port)
    doc = assert_problem(get(client, "/x"), 502)
    assert "invalid" in doc["detail"] or "response" in doc["detail"]
    assert wait_until(lambda: not upstream.open)  # never pooled


def test_bytes_after_a_complete_response_are_never_served(h: Harness) -> None:
    # An upstream that answers one request with two responses is out of sync;
    # the second must not become the answer to the client's next request.
    async def handler(req: RawRequest) -> None:
        if req.path == "/split":
            req.write(http_response(b"one") + http_response(b"SMUGGLED"))
        else:
            req.write(http_response(req.path.encode()))

    upstream = h.raw(handler)
    gw = h.gateway(config(upstream.url))
    client = h.client(gw.port)
    assert get(client, "/split")[2] == b"one"
    # That connection is dropped, and the pool holds no socket twice.
    assert wait_until(lambda: all(c.index != 1 for c in upstream.open)), (
        "the out-of-sync socket was kept"
    )

    def pool_counts() -> tuple[int, int]:
        (pool,) = gw.gateway.pools.all()
        return pool.open_count, pool.idle_count

    open_count, idle_count = gw.loop_thread.call(pool_counts)
    assert idle_count <= open_count, f"{idle_count} idle entries for {open_count} connections"
    for i in range(3):
        status, _, body = get(client, f"/next/{i}")
        assert (status, body) == (200, f"/next/{i}".encode())
    # Two at once: each gets its own answer (no socket shared by two exchanges).
    others = [h.client(gw.port) for _ in range(2)]
    for i, other in enumerate(others):
        other.send(f"GET /both/{i} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    for i, other in enumerate(others):
        status, _, body = other.read_response()
        assert (status, body) == (200, f"/both/{i}".encode())


# -- after the response head: the client connection is cut ----------------------------------


def test_upstream_dying_mid_body_with_content_length_aborts_the_client(h: Harness) -> None:
    async def handler(req: RawRequest) -> None:
        if req.path == "/ok":
            req.write(http_response(b"fine"))
            return
        req.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"a" * 50_000)
        req.close()

    upstream = h.raw(handler)
    gw = h.gateway(config(upstream.url))
    client = h.client(gw.port)
    client.send(b"GET /half HTTP/1.1\r\nHost: test\r\n\r\n")
    head = client.read_until(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"content-length: 100000" in head.lower()
    body, _ = read_until_closed(client)
    assert len(body) < 100_000, "a truncated body was completed (padded or re-framed)"
    assert body == b"a" * len(body)
    # The gateway itself is fine.
    other = h.client(gw.port)
    assert get(other, "/ok")[2] == b"fine"


def test_upstream_dying_mid_chunked_body_never_sends_the_last_chunk(h: Harness) -> None:
    async def handler(req: RawRequest) -> None:
        req.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        req.write(b"6\r\n world\r\n")
        req.close()  # no 0-size chunk

    upstream = h.raw(handler)
    gw = h.gateway(config(upstream.url))
    client = h.client(gw.port)
    client.send(b"GET /chunks HTTP/1.1\r\nHost: test\r\n\r\n")
    head = client.read_until(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"transfer-encoding: chunked" in head.lower()
    rest, _ = read_until_closed(client)
    chunks, complete = decode_chunks(rest)
    assert not complete, f"the client got a terminating chunk: {rest!r}"
    assert b"".join(chunks) in (b"", b"hello", b"hello world")


def test_invalid_chunk_mid_body_aborts_the_client(h: Harness) -> None:
    head_seen = threading.Event()

    async def handler(req: RawRequest) -> None:
        req.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await wait_event(head_seen, 5)
        req.write(b"zz\r\nnot a chunk\r\n0\r\n\r\n")

    upstream = h.raw(handler)
    gw = h.gateway(config(upstream.url))
    client = h.client(gw.port)
    client.send(b"GET /bad-chunk HTTP/1.1\r\nHost: test\r\n\r\n")
    head = client.read_until(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    client.read_until(b"hello\r\n")
    head_seen.set()
    rest, _ = read_until_closed(client)
    _, complete = decode_chunks(rest)
    assert not complete, rest
    assert b"not a chunk" not in rest
    assert wait_until(lambda: not upstream.open)


def test_invalid_body_arriving_with_the_head_is_502(h: Harness) -> None:
    # Head and broken body in one read: nothing has reached the client yet, so
    # the gateway can still answer 502 instead of cutting a silent connection.
    async def handler(req: RawRequest) -> None:
        req.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\nzz\r\nnot a chunk\r\n0\r\n\r\n"
        )

    upstream = h.raw(handler)
    gw = h.gateway(config(upstream.url))
    client = h.client(gw.port)
    client.send(b"GET /bad-chunk HTTP/1.1\r\nHost: test\r\n\r\n")
    try:
        response = client.read_response()
    except ConnectionError as exc:
        pytest.fail(f"the client got no response at all, only a closed connection: {exc}")
    assert_problem(response, 502)


def test_read_timeout_mid_body_aborts_the_client(h: Harness) -> None:
    never = threading.Event()

    async def handler(req: RawRequest) -> None:
        req.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"b" * 10)
        await wait_event(never, 5)

    upstream = h.raw(handler)
    gw = h.gateway(config(upstream.url, {"read_timeout": 0.3}))
    client = h.client(gw.port, timeout=5)
    client.send(b"GET /stall HTTP/1.1\r\nHost: test\r\n\r\n")
    head = client.read_until(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    body, _ = read_until_closed(client)  # a TimeoutError here: the gateway never gave up
    assert len(body) < 1000
    assert wait_until(lambda: not upstream.open)


def decode_chunks(data: bytes) -> tuple[list[bytes], bool]:
    """The chunks in `data` and whether the terminating 0-size chunk was among them."""
    chunks: list[bytes] = []
    while True:
        line, sep, rest = data.partition(b"\r\n")
        if not sep:
            return chunks, False
        try:
            size = int(line.split(b";")[0], 16)
        except ValueError:
            return chunks, False
        if size == 0:
            return chunks, True
        if len(rest) < size + 2:
            return chunks, False
        chunks.append(rest[:size])
        data = rest[size + 2 :]


CODED_RESPONSES = {
    # Close-delimited: the final coding is not chunked.
    "gzip": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nGZIP-BYTES",
    # Chunked framing with a gzip coding under it.
    "gzip-chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    b"a\r\nGZIP-BYTES\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("raw", CODED_RESPONSES.values(), ids=CODED_RESPONSES.keys())
def test_a_transfer_coding_other_than_chunked_is_not_dropped(h: Harness, raw: bytes) -> None:
    # RFC 9112 §6.3 (4): a response whose Transfer-Encoding does not end in
    # chunked is delimited by the close of the connection; and any coding is
    # part of the message (RFC 9112 §6.1): dropping `gzip` hands the client
    # bytes it can not read. A gateway may refuse such a response (502, as
    # nginx does) or forward it with the coding kept; it may not strip the
    # coding, nor cut a complete message.
    async def handler(req: RawRequest) -> None:
        req.write(raw)
        req.close()

    upstream = h.raw(handler)
    gw = h.gateway(config(upstream.url))
    client = h.client(gw.port)
    client.send(b"GET /coded HTTP/1.1\r\nHost: test\r\n\r\n")
    try:
        head = client.read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in head[1:] if line)
        }
        if status == 502:
            body = client.read_exactly(int(headers["content-length"]))
            assert_problem((status, headers, body), 502)
            return
        assert status == 200
        coding = headers.get("transfer-encoding", "").replace(" ", "").lower()
        assert "gzip" in coding, f"the gzip coding was dropped: {headers}"
        if coding.endswith(",chunked"):
            chunks, complete = decode_chunks(client.read_until(b"0\r\n\r\n"))
            assert complete
            body = b"".join(chunks)
        else:
            body = client.read_to_close()
    except ConnectionError as exc:
        pytest.fail(f"a complete response was cut: {exc}")
    assert body == b"GZIP-BYTES"
