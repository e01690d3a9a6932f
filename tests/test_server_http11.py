"""HTTP/1.1 done right on the client side of the data plane (RFC 9110, RFC 9112).

A real gateway (`GatewayThread`) in front of real upstreams on loopback: the
aiohttp echo app (`echo_app`: it answers what it received as JSON), a raw
upstream whose responses are byte-exact (`RawUpstream`), and a stream server
that switches protocols and echoes (`_TunnelUpstream`). Clients are blocking
sockets, so every byte sent is the test's choice.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from servers import (
    ECHO_COUNT,
    GatewayThread,
    Harness,
    LoopThread,
    RawClient,
    RawRequest,
    RawUpstream,
    echo_app,
    http_response,
    wait_until,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
HOST = "gw.test:8080"
ABS_HOST = "api.example.test"
LIMIT = 1024 * 1024  # limits.max_body_bytes of this gateway


# -- upstreams ---------------------------------------------------------------------------


async def _raw_handler(req: RawRequest) -> None:
    """Byte-exact answers, chosen by path."""
    path = req.path.split("?", 1)[0]
    if path == "/raw/early-hints":
        req.write(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
        await asyncio.sleep(0.02)
        req.write(http_response(b"final", headers=(("X-Final", "yes"),)))
    elif path == "/raw/two-interim":
        req.write(
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.js>; rel=preload\r\n\r\n"
        )
        req.write(http_response(b"after two"))
    elif path == "/raw/hop":
        req.write(
            b"HTTP/1.1 200 OK\r\n"
            b"Connection: X-Hop-Secret, keep-alive\r\n"
            b"X-Hop-Secret: 1\r\n"
            b"Keep-Alive: timeout=5\r\n"
            b"Proxy-Connection: keep-alive\r\n"
            b"Trailer: X-Checksum\r\n"
            b"Upgrade: h2c\r\n"
            b"X-End-To-End: kept\r\n"
            b"Transfer-Encoding: chunked\r\n"
            b"\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: 1\r\n\r\n"
        )
    elif path == "/raw/close-delimited":
        req.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
        req.write(b"read until ")
        await asyncio.sleep(0.02)
        req.write(b"the end")
        req.close()
    elif path == "/raw/head":
        req.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nContent-Type: text/plain\r\n\r\n")
        if req.method != "HEAD":
            req.write(b"y" * 1234)
    else:
        req.write(http_response(b"raw " + path.encode(), status=200))


class _TunnelUpstream:
    """Answers `/tunnel/echo` with 101 and then echoes every byte; anything else 200.

    `heads` keeps (method, target, lower-case headers) of each request head.
    """

    def __init__(self, loop_thread: LoopThread) -> None:
        self.loop_thread = loop_thread
        self.heads: list[tuple[str, str, dict[str, str]]] = []
        self.writers: set[asyncio.StreamWriter] = set()
        self.finished = 0  # tunnels that saw the client's end of stream
        self.release = threading.Event()  # lets the half-closed tunnels' sockets go

        async def start() -> asyncio.Server:
            return await asyncio.start_server(self._serve, "127.0.0.1", 0)

        self.server = loop_thread.run(start())
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            while True:
                try:
                    raw = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = raw.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                self.heads.append((method, target, headers))
                if target.startswith("/tunnel/once"):
                    writer.write(
                        b"HTTP/1.1 101 Switching Protocols\r\n"
                        b"Upgrade: echo\r\nConnection: Upgrade\r\n\r\n"
                    )
                    writer.write(b"bye:" + await reader.read(65536))
                    await writer.drain()
                    return
                if target.startswith("/tunnel/half-close"):
                    # Half-closes and keeps its socket: the gateway must end the tunnel
                    # once both ends have sent their end of stream. `server-first`:
                    # its end of stream comes before the client's.
                    writer.write(
                        b"HTTP/1.1 101 Switching Protocols\r\n"
                        b"Upgrade: echo\r\nConnection: Upgrade\r\n\r\n"
                    )
                    if target.endswith("server-first"):
                        writer.write(b"bye")
                        writer.write_eof()
                        while await reader.read(65536):
                            pass
                    else:
                        while data := await reader.read(65536):
                            writer.write(data)
                        writer.write_eof()
                    for _ in range(600):  # bounded: 30 s at most
                        if self.release.is_set():
                            break
                        await asyncio.sleep(0.05)
                    return
                if target.startswith("/tunnel/echo"):
                    writer.write(
                        b"HTTP/1.1 101 Switching Protocols\r\n"
                        b"Upgrade: echo\r\nConnection: Upgrade\r\n\r\n"
                    )
                    while data := await reader.read(65536):
                        writer.write(data)
                        await writer.drain()
                    self.finished += 1
                    return
                writer.write(http_response(b"no upgrade here"))
        except ConnectionError:
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    def close(self) -> None:
        self.release.set()

        async def stop() -> None:
            self.server.close()
            for writer in tuple(self.writers):
                writer.close()
            await asyncio.sleep(0.01)

        self.loop_thread.run(stop())


@dataclass
class Env:
    port: int
    echo_count: list[int]
    echo_url: str
    raw: RawUpstream
    tunnel: _TunnelUpstream
    gateway: GatewayThread

    def echoed(self) -> int:
        return self.echo_count[0]


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    harness = Harness()
    tunnel: _TunnelUpstream | None = None
    try:
        app = echo_app()
        echo = harness.aiohttp(app)
        raw = harness.raw(_raw_handler)
        tunnel = _TunnelUpstream(harness.upstream_loop)
        gateway = harness.gateway(
            {
                "services": [
                    {"name": "pets", "upstream": echo.url, "openapi": "petstore.yaml"},
                    {"name": "echo", "upstream": echo.url, "prefix": "/echo"},
                    {
                        "name": "rewrite",
                        "upstream": echo.url + "/base",
                        "prefix": "/up",
                        "strip_prefix": "/up",
                        "host_header": "upstream",
                    },
                    {"name": "raw", "upstream": raw.url, "prefix": "/raw"},
                    {"name": "tunnel", "upstream": tunnel.url, "prefix": "/tunnel"},
                    {"name": "abs", "upstream": echo.url, "prefix": "/abs", "host": ABS_HOST},
                ],
                "limits": {
                    "max_body_bytes": LIMIT,
                    "header_timeout": 5.0,
                    "body_timeout": 5.0,
                    "keepalive_timeout": 10.0,
                },
            },
            base_dir=str(EXAMPLES),
        )
        yield Env(gateway.port, app[ECHO_COUNT], echo.url, raw, tunnel, gateway)
    finally:
        if tunnel is not None:
            tunnel.close()
        harness.close()


# -- helpers -------------------------------------------------------------------------------


def http(
    method: str,
    target: str,
    *headers: str,
    body: bytes = b"",
    version: str = "HTTP/1.1",
    host: str | None = HOST,
    length: bool = True,
) -> bytes:
    """A request's bytes: Host first (unless None), then `headers` ("Name: value")."""
    lines = [f"{method} {target} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += headers
    if body and length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(*pieces: bytes, trailer: bytes = b"") -> bytes:
    return b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in pieces) + b"0\r\n" + trailer + b"\r\n"


def exchange(port: int, data: bytes, head: bool = False) -> tuple[int, dict[str, str], bytes]:
    with RawClient(port) as client:
        client.send(data)
        return client.read_response(head_request=head)


def upstream_headers(echo: dict[str, Any]) -> dict[str, list[str]]:
    """The echo's header list as lower-case name -> every value."""
    found: dict[str, list[str]] = {}
    for name, value in echo["headers"]:
        found.setdefault(name.lower(), []).append(value)
    return found


def assert_problem(status: int, headers: dict[str, str], body: bytes, expected: int) -> None:
    assert status == expected, body
    assert headers["content-type"] == "application/problem+json"
    document = json.loads(body)
    assert document["status"] == expected
    assert isinstance(document["type"], str) and document["type"]
    assert isinstance(document["title"], str) and document["title"]
    assert isinstance(document["detail"], str) and document["detail"]


def is_keep_alive(client: RawClient, port: int) -> bool:
    """The connection still answers a request (nothing left over from the last one)."""
    client.send(http("GET", "/echo/still-alive"))
    status, _, body = client.read_response()
    return status == 200 and json.loads(body)["path"] == "/echo/still-alive"


# -- keep-alive and Connection: close ----------------------------------------------------------


def test_keep_alive_serves_several_requests_on_one_connection(env: Env) -> None:
    with RawClient(env.port) as client:
        for i in range(5):
            client.send(http("GET", f"/echo/ka/{i}"))
            status, headers, body = client.read_response()
            assert status == 200
            assert "close" not in headers.get("connection", "").lower()
            assert json.loads(body)["path"] == f"/echo/ka/{i}"
        assert is_keep_alive(client, env.port)  # still open: it answers one more


def test_connection_close_is_answered_then_closed(env: Env) -> None:
    with RawClient(env.port) as client:
        client.send(http("GET", "/echo/bye", "Connection: close"))
        status, headers, body = client.read_response()
        assert status == 200
        assert json.loads(body)["path"] == "/echo/bye"
        assert headers["connection"].lower() == "close"
        assert client.is_closed()


def test_no_request_is_processed_after_connection_close(env: Env) -> None:
    before = env.echoed()
    with RawClient(env.port) as client:
        client.send(
            http("GET", "/echo/one")
            + http("GET", "/echo/two", "Connection: close")
            + http("GET", "/echo/three")
        )
        assert json.loads(client.read_response()[2])["path"] == "/echo/one"
        _status, headers, body = client.read_response()
        assert json.loads(body)["path"] == "/echo/two"
        assert headers["connection"].lower() == "close"
        assert client.read_to_close() == b""
    assert env.echoed() - before == 2


def test_upstream_closing_does_not_close_the_client_connection(env: Env) -> None:
    with RawClient(env.port) as client:
        client.send(http("GET", "/raw/close-delimited"))
        status, _headers, body = client.read_response()
        assert status == 200
        assert body == b"read until the end"
        assert is_keep_alive(client, env.port)


# -- HTTP/1.0 clients ------------------------------------------------------------------------


def test_http10_closes_after_the_response_by_default(env: Env) -> None:
    with RawClient(env.port) as client:
        client.send(http("GET", "/echo/old", version="HTTP/1.0"))
        status, headers, body = client.read_response()
        assert status == 200
        assert json.loads(body)["path"] == "/echo/old"
        assert "keep-alive" not in headers.get("connection", "").lower()
        assert client.is_closed()


def test_http10_without_host_is_served(env: Env) -> None:
    status, _, body = exchange(env.port, http("GET", "/echo/nohost", version="HTTP/1.0", host=None))
    assert status == 200
    assert json.loads(body)["path"] == "/echo/nohost"


def test_http10_keep_alive_is_honoured(env: Env) -> None:
    with RawClient(env.port) as client:
        for i in range(3):
            client.send(http("GET", f"/echo/old/{i}", "Connection: keep-alive", version="HTTP/1.0"))
            status, headers, body = client.read_response()
            assert status == 200
            assert json.loads(body)["path"] == f"/echo/old/{i}"
            assert headers["connection"].lower() == "keep-alive"
        assert is_keep_alive(client, env.port)  # still open: it answers one more


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/echo/x?respond=chunked", b"part0,part1,part2,part3,part4,"),
        ("/raw/close-delimited", b"read until the end"),
    ],
    ids=["upstream-chunked", "upstream-close-delimited"],
)
@pytest.mark.parametrize("keep_alive", [False, True], ids=["plain", "asks-keep-alive"])
def test_http10_gets_unknown_length_body_read_to_close(
    env: Env, target: str, expected: bytes, keep_alive: bool
) -> None:
    extra = ("Connection: keep-alive",) if keep_alive else ()
    with RawClient(env.port) as client:
        client.send(http("GET", target, *extra, version="HTTP/1.0"))
        head = client.read_until(b"\r\n\r\n").lower()
        assert head.startswith(b"http/1.1 200 ") or head.startswith(b"http/1.0 200 ")
        assert b"transfer-encoding" not in head  # HTTP/1.0 has no chunked coding
        assert b"content-length" not in head or expected.__len__() == int(
            head.split(b"content-length:")[1].split(b"\r\n")[0]
        )
        assert b"connection: keep-alive" not in head
        assert client.read_to_close() == expected


# -- pipelining -------------------------------------------------------------------------------


def test_pipelined_requests_are_answered_in_order(env: Env) -> None:
    batch = (
        http("GET", "/echo/p1")
        + http("POST", "/echo/p2", body=b"hello")
        + http("GET", "/nope/p3")
        + http("POST", "/nope/p3b", body=b"discarded body")
        + http(
            "POST",
            "/echo/p4",
            "Transfer-Encoding: chunked",
            body=chunked(b"wor", b"ld!"),
            length=False,
        )
        + http("DELETE", "/v1/pets", body=b"abc")
        + http("PUT", "/echo/p6", body=b"x" * 3000)
        + http("GET", "/echo/p7")
    )
    with RawClient(env.port) as client:
        client.send(batch)
        seen = [client.read_response() for _ in range(8)]
        assert [s for s, _, _ in seen] == [200, 200, 404, 404, 200, 405, 200, 200]
        echoed = {i: json.loads(seen[i][2]) for i in (0, 1, 4, 6, 7)}
        assert echoed[0]["path"] == "/echo/p1"
        assert (echoed[1]["path"], echoed[1]["body"]) == ("/echo/p2", "hello")
        assert (echoed[4]["path"], echoed[4]["body"]) == ("/echo/p4", "world!")
        assert (echoed[6]["path"], echoed[6]["body_len"]) == ("/echo/p6", 3000)
        assert echoed[7]["path"] == "/echo/p7"
        assert is_keep_alive(client, env.port)  # still open: it answers one more


def test_many_pipelined_requests_in_one_send(env: Env) -> None:
    count = 60
    batch = b"".join(
        http("GET", f"/echo/many/{i}") if i % 7 else http("GET", f"/nope/{i}") for i in range(count)
    )
    with RawClient(env.port) as client:
        client.send(batch)
        for i in range(count):
            status, _, body = client.read_response()
            if i % 7:
                assert (status, json.loads(body)["path"]) == (200, f"/echo/many/{i}")
            else:
                assert status == 404


def test_pipelined_requests_split_across_sends(env: Env) -> None:
    batch = http("POST", "/echo/s1", body=b"first") + http("POST", "/echo/s2", body=b"second")
    with RawClient(env.port) as client:
        for i in range(0, len(batch), 7):
            client.send(batch[i : i + 7])
            time.sleep(0.001)
        first = json.loads(client.read_response()[2])
        second = json.loads(client.read_response()[2])
    assert (first["path"], first["body"]) == ("/echo/s1", "first")
    assert (second["path"], second["body"]) == ("/echo/s2", "second")


# -- chunked request bodies -----------------------------------------------------------------


BIG = bytes(range(256)) * 800  # 200 KiB, every byte value


@pytest.mark.parametrize(
    ("pieces", "trailer", "split"),
    [
        ((b"hello world",), b"", 0),
        ((b"a", b"bc", b"def" * 100), b"", 0),
        ((b"with", b" trailer"), b"X-Checksum: 42\r\n", 0),
        ((b"dripping", b" in", b" small", b" sends"), b"", 3),
        (tuple(BIG[i : i + 4096] for i in range(0, len(BIG), 4096)), b"", 0),
        (tuple(BIG[i : i + 4096] for i in range(0, len(BIG), 4096)), b"", 10000),
    ],
    ids=["one-chunk", "several", "trailer", "byte-drip", "200k", "200k-split"],
)
def test_chunked_request_body_is_forwarded_intact(
    env: Env, pieces: tuple[bytes, ...], trailer: bytes, split: int
) -> None:
    expected = b"".join(pieces)
    data = http("POST", "/echo/chunked", "Transfer-Encoding: chunked") + chunked(
        *pieces, trailer=trailer
    )
    with RawClient(env.port) as client:
        if split:
            for i in range(0, len(data), split):
                client.send(data[i : i + split])
        else:
            client.send(data)
        status, _, body = client.read_response()
        assert status == 200
        echo = json.loads(body)
        assert echo["body_len"] == len(expected)
        assert echo["body"].encode("latin-1") == expected
        assert is_keep_alive(client, env.port)


def test_chunk_extensions_are_accepted(env: Env) -> None:
    data = http("POST", "/echo/ext", "Transfer-Encoding: chunked") + (
        b"5;name=value\r\nhello\r\n1;x\r\n!\r\n0\r\n\r\n"
    )
    status, _, body = exchange(env.port, data)
    assert status == 200
    assert json.loads(body)["body"] == "hello!"


def test_content_length_body_split_across_sends(env: Env) -> None:
    payload = bytes(range(256)) * 40
    with RawClient(env.port) as client:
        client.send(http("POST", "/echo/cl", f"Content-Length: {len(payload)}"))
        for i in range(0, len(payload), 1000):
            time.sleep(0.002)
            client.send(payload[i : i + 1000])
        status, _, body = client.read_response()
    assert status == 200
    assert json.loads(body)["body"].encode("latin-1") == payload


def test_a_head_split_in_any_place_is_read_the_same(env: Env) -> None:
    # The parser keeps the URL and each header's name and value across reads (its
    # C buffer): a head sent a few bytes at a time must come out as if sent whole.
    data = http(
        "POST",
        "/echo/drip?a=1&b=two",
        "X-Custom:   spaced value  ",
        "X-Empty:",
        "Connection: X-Hop, keep-alive",
        "X-Hop: dropped",
        "X-Forwarded-For: 203.0.113.9",
        body=b"the body",
    )
    for step in (1, 2, 5):
        with RawClient(env.port) as client:
            for i in range(0, len(data), step):
                client.send(data[i : i + step])
            status, _, body = client.read_response()
            assert status == 200
            echo = json.loads(body)
            assert echo["path"] == "/echo/drip?a=1&b=two"
            assert echo["body"] == "the body"
            seen = upstream_headers(echo)
            assert seen["x-custom"] == ["spaced value"]  # (aiohttp strips the trailing OWS)
            assert seen["x-empty"] == [""]
            assert "x-hop" not in seen
            assert seen["x-forwarded-for"] == ["203.0.113.9, 127.0.0.1"]
            assert seen["content-length"] == ["8"]
            assert is_keep_alive(client, env.port)


# -- Expect: 100-continue ---------------------------------------------------------------------


def test_expect_100_continue_gets_100_then_the_response(env: Env) -> None:
    with RawClient(env.port) as client:
        client.send(http("POST", "/echo/expect", "Expect: 100-continue", "Content-Length: 5"))
        interim = client.read_until(b"\r\n\r\n")
        assert interim.startswith(b"HTTP/1.1 100 ")
        client.send(b"hello")
        status, _, body = client.read_response()
        assert status == 200
        echo = json.loads(body)
        assert echo["body"] == "hello"
        assert "expect" not in upstream_headers(echo)  # the gateway answered it itself
        assert is_keep_alive(client, env.port)


def test_expect_100_continue_with_too_large_body_gets_413_without_100(env: Env) -> None:
    before = env.echoed()
    with RawClient(env.port) as client:
        client.send(
            http("POST", "/echo/big", "Expect: 100-continue", f"Content-Length: {LIMIT + 1}")
        )
        status, headers, body = client.read_response()
        assert_problem(status, headers, body, 413)
        assert headers["connection"].lower() == "close"
        assert client.is_closed()
    assert env.echoed() == before


def test_expect_100_continue_on_a_miss_gets_404_without_100(env: Env) -> None:
    with RawClient(env.port) as client:
        client.send(http("POST", "/nope/expect", "Expect: 100-continue", "Content-Length: 5"))
        status, headers, body = client.read_response()
        assert_problem(status, headers, body, 404)


def test_expect_100_continue_is_ignored_for_http10(env: Env) -> None:
    # RFC 9110 §10.1.1: a 100-continue expectation in an HTTP/1.0 request MUST be
    # ignored, and §15.2: no 1xx response is ever sent to an HTTP/1.0 client.
    before = env.echoed()
    with RawClient(env.port) as client:
        client.send(
            http(
                "POST",
                "/echo/old-expect",
                "Expect: 100-continue",
                "Content-Length: 5",
                version="HTTP/1.0",
            )
        )
        # The upstream has the head: the gateway is past the point where it would
        # answer the expectation, and the body has not been sent yet.
        assert wait_until(lambda: env.echoed() == before + 1)
        client.send(b"hello")
        status, _, body = client.read_response()
        assert status == 200
        assert json.loads(body)["body"] == "hello"


# -- HEAD ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target", ["/echo/h?respond=fixed", "/raw/head"], ids=["aiohttp", "raw-upstream"]
)
def test_head_has_no_body_and_keeps_the_get_content_length(env: Env, target: str) -> None:
    with RawClient(env.port) as client:
        client.send(http("GET", target))
        status, get_headers, get_body = client.read_response()
        assert status == 200
        client.send(http("HEAD", target))
        status, headers, _body = client.read_response(head_request=True)
        assert status == 200
        assert headers["content-length"] == get_headers["content-length"] == str(len(get_body))
        assert "transfer-encoding" not in headers
        # A body byte after the HEAD response would corrupt the next response.
        assert is_keep_alive(client, env.port)
        assert client.buffer == b""


def test_head_on_a_miss_has_no_body(env: Env) -> None:
    with RawClient(env.port) as client:
        client.send(http("HEAD", "/nope/head"))
        status, headers, _ = client.read_response(head_request=True)
        assert status == 404
        assert int(headers["content-length"]) > 0
        assert is_keep_alive(client, env.port)


# -- response framing ------------------------------------------------------------------------


def test_chunked_upstream_response_is_chunked_to_the_client(env: Env) -> None:
    with RawClient(env.port) as client:
        client.send(http("GET", "/echo/c?respond=chunked"))
        status, headers, body = client.read_response()
        assert status == 200
        assert headers["transfer-encoding"].lower() == "chunked"
        assert "content-length" not in headers
        assert body == b"part0,part1,part2,part3,part4,"
        assert is_keep_alive(client, env.port)


def test_close_delimited_upstream_response_is_chunked_to_an_http11_client(env: Env) -> None:
    with RawClient(env.port) as client:
        client.send(http("GET", "/raw/close-delimited"))
        status, headers, body = client.read_response()
        assert status == 200
        assert headers.get("transfer-encoding", "").lower() == "chunked"
        assert body == b"read until the end"


@pytest.mark.parametrize("code", [204, 304])
def test_bodyless_statuses_have_no_body(env: Env, code: int) -> None:
    with RawClient(env.port) as client:
        client.send(http("GET", f"/echo/s?respond=status&code={code}"))
        status, headers, _ = client.read_response()
        assert status == code
        assert headers["x-status"] == str(code)
        assert "transfer-encoding" not in headers
        if code == 204:
            assert "content-length" not in headers  # RFC 9110 §8.6: MUST NOT for 204
        else:
            assert headers["etag"] == '"v1"'
        assert is_keep_alive(client, env.port)
        assert client.buffer == b""


# -- 1xx interim responses from the upstream ---------------------------------------------------


@pytest.mark.parametrize(
    ("target", "body"),
    [("/raw/early-hints", b"final"), ("/raw/two-interim", b"after two")],
    ids=["103", "100+103"],
)
def test_interim_responses_do_not_replace_the_final_one(env: Env, target: str, body: bytes) -> None:
    with RawClient(env.port) as client:
        client.send(http("GET", target))
        status, _, got = client.read_response()
        # Forwarding a 103 to an HTTP/1.1 client is allowed; it must be whole.
        while 100 <= status < 200:
            assert status != 101
            status, _headers, got = client.read_response()
        assert status == 200
        assert got == body
        assert is_keep_alive(client, env.port)


def test_no_interim_response_reaches_an_http10_client(env: Env) -> None:
    with RawClient(env.port) as client:
        client.send(http("GET", "/raw/early-hints", version="HTTP/1.0"))
        status, _headers, body = client.read_response()
        assert status == 200
        assert body == b"final"


# -- Upgrade ------------------------------------------------------------------------------------


def _open_tunnel(client: RawClient, target: str, early: bytes = b"") -> None:
    client.send(http("GET", target, "Connection: Upgrade", "Upgrade: echo") + early)
    head = client.read_until(b"\r\n\r\n").decode("latin-1").lower()
    assert head.startswith("http/1.1 101 ")
    assert "upgrade: echo" in head
    assert "connection: upgrade" in head


def test_upgrade_tunnels_bytes_both_ways(env: Env) -> None:
    heads_before = len(env.tunnel.heads)
    finished = env.tunnel.finished
    with RawClient(env.port) as client:
        _open_tunnel(client, "/tunnel/echo", early=b"early bytes")
        assert client.read_exactly(len(b"early bytes")) == b"early bytes"
        client.send(b"ping")
        assert client.read_exactly(4) == b"ping"
        blob = bytes(range(256)) * 512  # 128 KiB each way: flow control on both sockets
        client.send(blob)
        assert client.read_exactly(len(blob)) == blob
    # The client's close reaches the upstream.
    assert wait_until(lambda: env.tunnel.finished == finished + 1)
    method, target, headers = env.tunnel.heads[heads_before]
    assert (method, target) == ("GET", "/tunnel/echo")
    assert headers["upgrade"] == "echo"
    assert "upgrade" in headers["connection"].lower()


def test_upgrade_pipelined_behind_another_request_tunnels_in_turn(env: Env) -> None:
    # The upgrade is the request queued behind the first, not the one being
    # answered: it was refused with a 400 never sent, went on to its 101 anyway,
    # and the bytes after it were lost.
    finished = env.tunnel.finished
    with RawClient(env.port) as client:
        client.send(
            http("GET", "/echo/before-upgrade")
            + http("GET", "/tunnel/echo", "Connection: Upgrade", "Upgrade: echo")
            + b"early bytes"
        )
        status, _, body = client.read_response()
        assert (status, json.loads(body)["path"]) == (200, "/echo/before-upgrade")
        head = client.read_until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head
        assert client.read_exactly(len(b"early bytes")) == b"early bytes"
        client.send(b"ping")
        assert client.read_exactly(4) == b"ping"
    assert wait_until(lambda: env.tunnel.finished == finished + 1)  # (no tunnel left over)


def test_upgrade_tunnel_passes_the_clients_half_close_on(env: Env) -> None:
    # A tunnel is a pair of byte streams: the client's end of stream (FIN) goes
    # on to the upstream, whose answer and close come back.
    finished = env.tunnel.finished
    with RawClient(env.port) as client:
        _open_tunnel(client, "/tunnel/echo")
        client.send(b"last words")
        client.sock.shutdown(socket.SHUT_WR)
        assert client.read_exactly(10) == b"last words"
        assert wait_until(lambda: env.tunnel.finished == finished + 1, 3.0)
        assert client.is_closed(3.0)


@pytest.mark.parametrize("first", ["client-first", "server-first"])
def test_upgrade_tunnel_ends_once_both_ends_have_half_closed(env: Env, first: str) -> None:
    # Neither end closes its socket, each only sends its end of stream: the gateway
    # passes each on, then ends the tunnel itself (as nginx does), or it would hold
    # both sockets until it stops. (Its set of client connections says which.)
    connections = env.gateway.gateway._ctx.connections  # type: ignore[union-attr]
    others = set(connections)
    with RawClient(env.port) as client:
        _open_tunnel(client, f"/tunnel/half-close/{first}")
        (ours,) = set(connections) - others
        if first == "client-first":
            client.send(b"last words")
            client.sock.shutdown(socket.SHUT_WR)
            assert client.read_to_close() == b"last words"
        else:
            assert client.read_to_close() == b"bye"
            client.sock.shutdown(socket.SHUT_WR)
        assert wait_until(lambda: ours not in connections, 5.0)


def test_upgrade_tunnel_closes_when_the_upstream_closes(env: Env) -> None:
    with RawClient(env.port) as client:
        _open_tunnel(client, "/tunnel/once")
        client.send(b"hi")
        assert client.read_to_close() == b"bye:hi"


def test_upgrade_answered_without_101_is_a_normal_response_then_close(env: Env) -> None:
    with RawClient(env.port) as client:
        client.send(http("GET", "/tunnel/refuse", "Connection: Upgrade", "Upgrade: echo"))
        status, _headers, body = client.read_response()
        assert status == 200
        assert body == b"no upgrade here"
        assert client.is_closed()


def test_upgrade_header_without_connection_upgrade_is_not_an_upgrade(env: Env) -> None:
    with RawClient(env.port) as client:
        client.send(http("GET", "/echo/no-upgrade", "Upgrade: websocket"))
        status, _, body = client.read_response()
        assert status == 200
        assert "upgrade" not in upstream_headers(json.loads(body))
        assert is_keep_alive(client, env.port)


# -- headers on the way up and down --------------------------------------------------------------


def test_hop_by_hop_request_headers_are_not_forwarded(env: Env) -> None:
    status, _, body = exchange(
        env.port,
        http(
            "GET",
            "/echo/hop",
            "Connection: keep-alive, X-Drop-Me, x-drop-too",
            "X-Drop-Me: 1",
            "X-Drop-Too: 2",
            "Keep-Alive: timeout=300",
            "TE: trailers",
            "Trailer: X-Checksum",
            "Upgrade: h2c",
            "Proxy-Authorization: Basic Zm9vOmJhcg==",
            "Proxy-Connection: keep-alive",
            "Proxy-Whatever: 1",
            "X-Keep: yes",
        ),
    )
    assert status == 200
    seen = upstream_headers(json.loads(body))
    for name in (
        "x-drop-me",
        "x-drop-too",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
        "proxy-whatever",
    ):
        assert name not in seen, name
    assert "x-drop-me" not in ",".join(seen.get("connection", [])).lower()
    assert seen["x-keep"] == ["yes"]


def test_hop_by_hop_response_headers_are_not_forwarded(env: Env) -> None:
    with RawClient(env.port) as client:
        client.send(http("GET", "/raw/hop"))
        status, headers, body = client.read_response()
        assert status == 200
        assert body == b"hello world"
        assert headers["x-end-to-end"] == "kept"
        for name in ("x-hop-secret", "keep-alive", "proxy-connection", "trailer", "upgrade"):
            assert name not in headers, name
        assert "x-hop-secret" not in headers.get("connection", "").lower()
        assert is_keep_alive(client, env.port)


def test_forwarding_headers_are_appended_and_set(env: Env) -> None:
    status, _, body = exchange(
        env.port,
        http(
            "GET",
            "/echo/fwd",
            "X-Forwarded-For: 203.0.113.9",
            "X-Forwarded-For: 198.51.100.7",
            "X-Forwarded-Proto: https",
            "X-Forwarded-Host: evil.test",
            "Via: 1.0 fred",
        ),
    )
    assert status == 200
    seen = upstream_headers(json.loads(body))
    assert seen["x-forwarded-for"] == ["203.0.113.9, 198.51.100.7, 127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["http"]
    assert seen["x-forwarded-host"] == [HOST]
    via = ", ".join(seen["via"]).split(", ")
    assert via[0] == "1.0 fred"
    assert len(via) == 2 and via[1].startswith("1.1 ") and len(via[1]) > 4


def test_a_request_that_came_round_through_us_ten_times_is_a_loop(env: Env) -> None:
    """Via naming runmcp-fast 10 times: 508 here, the upstream never asked. Nine (a long
    chain of gateways, or a loop not yet detected) go on, our own entry appended."""
    nine = ", ".join(["1.1 runmcp-fast"] * 9)
    status, _, body = exchange(env.port, http("GET", "/echo/via9", f"Via: 1.0 cdn, {nine}"))
    assert status == 200
    seen = ", ".join(upstream_headers(json.loads(body))["via"]).split(", ")
    assert seen[0] == "1.0 cdn" and seen.count("1.1 runmcp-fast") == 10
    before = env.echoed()
    with RawClient(env.port) as client:
        client.send(http("GET", "/echo/via10", f"Via: {nine}", "Via: 1.1 runmcp-fast"))
        status, headers, body = client.read_response()
        assert status == 508 and headers["content-type"] == "application/problem+json"
        assert "10 times" in json.loads(body)["detail"]
        assert env.echoed() == before
        assert is_keep_alive(client, env.port)


def test_forwarding_headers_without_client_values(env: Env) -> None:
    status, _, body = exchange(env.port, http("GET", "/echo/fwd2"))
    assert status == 200
    seen = upstream_headers(json.loads(body))
    assert seen["x-forwarded-for"] == ["127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["http"]
    assert seen["x-forwarded-host"] == [HOST]
    assert len(seen["via"]) == 1 and seen["via"][0].startswith("1.1 ")


def test_host_is_passed_through(env: Env) -> None:
    status, _, body = exchange(env.port, http("GET", "/echo/host", host="Client.Example:8443"))
    assert status == 200
    assert upstream_headers(json.loads(body))["host"] == ["Client.Example:8443"]


def test_header_lines_that_look_alike_reach_the_upstream_as_each_request_sent_them(
    env: Env,
) -> None:
    """The header lines, Host and target of each request are shared with earlier
    requests that sent the same bytes (headers.pxi, rmf_piece): lines alike in length
    and in their first and last 8 bytes (one slot of that table), or differing only in
    the case of a name, are each forwarded as sent, on one connection and across."""
    middle = "0123456789abcdef0123"
    variants = [
        (f"X-Token: aaaaaaaa{middle[:i]}Z{middle[i + 1 :]}bbbbbbbb", "x-token")
        for i in range(0, len(middle), 5)
    ]
    variants += [("x-token: the same value", "x-token"), ("X-TOKEN: the same value", "x-token")]
    with RawClient(env.port) as client, RawClient(env.port) as other:
        for round_ in range(2):
            for i, (line, lower) in enumerate(variants):
                path = f"/echo/alike/{round_}/{i % 2}"
                host = f"h{i % 3}.example"
                for conn in (client, other):
                    conn.send(http("GET", path, line, "Accept: */*", host=host))
                    status, _, body = conn.read_response()
                    assert status == 200
                    echo = json.loads(body)
                    assert echo["path"] == path
                    sent = [(n, v) for n, v in echo["headers"] if n.lower() == lower]
                    name, _, value = line.partition(": ")
                    assert sent == [(name, value)]
                    assert upstream_headers(echo)["host"] == [host]


def test_many_header_lines_reach_the_upstream_in_order(env: Env) -> None:
    """Past 16 kept lines (the connection's array, headers.pxi _keep_pair) the rest
    follow one by one: every line arrives, in the order sent, request after request."""
    with RawClient(env.port) as client:
        for count in (15, 16, 17, 40, 3):
            lines = [f"X-Line-{i}: value {i} of {count}" for i in range(count)]
            client.send(http("GET", f"/echo/many/{count}", *lines))
            status, _, body = client.read_response()
            assert status == 200
            sent = [(n, v) for n, v in json.loads(body)["headers"] if n.startswith("X-Line-")]
            assert sent == [tuple(line.split(": ", 1)) for line in lines]


def test_trailing_whitespace_in_host_is_not_part_of_it(env: Env) -> None:
    # RFC 9110 §5.5: leading and trailing OWS (SP, HTAB) is not part of a field value.
    status, _, body = exchange(env.port, http("GET", "/echo/ows", host=HOST + " \t "))
    assert status == 200, body
    assert upstream_headers(json.loads(body))["host"] == [HOST]


def test_host_header_upstream_sends_the_upstreams_authority(env: Env) -> None:
    status, _, body = exchange(env.port, http("GET", "/up/host"))
    assert status == 200
    seen = upstream_headers(json.loads(body))
    assert seen["host"] == [env.echo_url.removeprefix("http://")]
    assert seen["x-forwarded-host"] == [HOST]


@pytest.mark.parametrize(
    ("sent", "upstream"),
    [
        ("/up/x", "/base/x"),
        ("/up/x/y?q=1&r=%20", "/base/x/y?q=1&r=%20"),
        ("/up/", "/base/"),
        ("/up/a%2Fb/c", "/base/a%2Fb/c"),
        ("/echo/a%2Fb?x=%41", "/echo/a%2Fb?x=%41"),
        ("/echo/plain", "/echo/plain"),
    ],
    ids=["strip", "query", "root", "escaped-slash", "no-rewrite-escapes", "no-rewrite"],
)
def test_path_rewrite(env: Env, sent: str, upstream: str) -> None:
    status, _, body = exchange(env.port, http("GET", sent))
    assert status == 200
    assert json.loads(body)["path"] == upstream


# -- errors the gateway answers itself -----------------------------------------------------------


def test_404_is_problem_json_and_keeps_the_connection(env: Env) -> None:
    with RawClient(env.port) as client:
        client.send(http("GET", "/nowhere"))
        status, headers, body = client.read_response()
        assert_problem(status, headers, body, 404)
        assert is_keep_alive(client, env.port)


@pytest.mark.parametrize(
    ("method", "target", "allowed"),
    [
        ("DELETE", "/v1/pets", {"GET", "POST"}),
        ("PATCH", "/v1/pets/7", {"GET", "PUT", "DELETE"}),
    ],
    ids=["collection", "item"],
)
def test_405_is_problem_json_with_allow(
    env: Env, method: str, target: str, allowed: set[str]
) -> None:
    with RawClient(env.port) as client:
        client.send(http(method, target))
        status, headers, body = client.read_response()
        assert_problem(status, headers, body, 405)
        listed = {m.strip() for m in headers["allow"].split(",")}
        assert allowed <= listed
        assert method not in listed
        assert is_keep_alive(client, env.port)


@pytest.mark.parametrize(
    "target",
    [
        "/echo/../x",
        "/echo/x/..",
        "/echo/./x",
        "/echo/%2e%2e/x",
        "/echo/%2E%2E/x",
        "/echo/.%2e/x",
        "/echo/%2e/x",
        "/v1/pets/../owners",
        "/nope/../echo/x",
        "/echo/%zz",
        "/echo/x%4",
        "/echo/%",
        "/v1/pets/%g0",
    ],
)
def test_bad_paths_get_400(env: Env, target: str) -> None:
    before = env.echoed()
    status, headers, body = exchange(env.port, http("GET", target))
    assert_problem(status, headers, body, 400)
    assert env.echoed() == before


@pytest.mark.parametrize(
    "request_bytes",
    [
        http("GET", "/echo/h", host="gw\xe4.test"),
        http("GET", "/echo/h", host="gw.test\xff"),
        http("GET", "/echo/h", host="gw test"),
        http("GET", "/echo/h", host="user@gw.test"),
        http("GET", "/echo/h", host=None),
        http("GET", "/echo/h", "Host: gw.test"),
        http("GET", "/echo/h", "Host: other.test"),
        http("GET", "http://gw.test/echo/h", host=None),
    ],
    ids=[
        "non-ascii-host",
        "host-0xff",
        "host-space",
        "host-userinfo",
        "missing-host",
        "two-hosts-same",
        "two-hosts-different",
        "absolute-form-without-host",
    ],
)
def test_bad_host_gets_400_and_close(env: Env, request_bytes: bytes) -> None:
    before = env.echoed()
    with RawClient(env.port) as client:
        client.send(request_bytes)
        status, headers, body = client.read_response()
        assert_problem(status, headers, body, 400)
        assert client.is_closed()
    assert env.echoed() == before


# -- absolute-form request targets -----------------------------------------------------------


@pytest.mark.parametrize("host", [ABS_HOST, "elsewhere.test"], ids=["same-host", "other-host"])
def test_absolute_form_is_routed_by_its_authority(env: Env, host: str) -> None:
    status, _, body = exchange(env.port, http("GET", f"http://{ABS_HOST}/abs/x?q=1", host=host))
    assert status == 200
    echo = json.loads(body)
    assert echo["path"] == "/abs/x?q=1"  # origin-form upstream
    # RFC 9112 §3.2.2: the Host sent on is the target's authority, not the received one.
    assert upstream_headers(echo)["host"] == [ABS_HOST]


def test_host_specific_service_needs_its_host(env: Env) -> None:
    status, headers, body = exchange(env.port, http("GET", "/abs/x", host="elsewhere.test"))
    assert_problem(status, headers, body, 404)
    status, _, body = exchange(env.port, http("GET", "/abs/x", host=ABS_HOST))
    assert status == 200
    assert json.loads(body)["path"] == "/abs/x"
