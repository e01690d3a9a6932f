"""HTTP/1.1 edge cases an edge proxy must get right, probed on real sockets.

Each test here once failed (or pins down a case no other test covers): a real
gateway (`GatewayThread`) in front of real upstreams on loopback, clients as
blocking sockets so every byte on the wire is the test's choice.

`_PlainUpstream` is a minimal HTTP/1.1 server that, like nginx or any server
without WebSocket support, ignores `Upgrade` (RFC 9110 §7.8: a server MAY) and
reads whatever follows a request head as the next request: the server a
smuggled request would reach.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from servers import GatewayThread, Harness, LoopThread, RawClient, RawRequest, http_response

HOST = "gw.test"


BIG_HEADER = 2 * 1024 * 1024  # a response header value far past any head limit


async def _raw_handler(req: RawRequest) -> None:
    """Byte-exact answers, chosen by path."""
    path = req.path.split("?", 1)[0]
    if path == "/raw/204-with-length":
        req.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\nX-A: 1\r\n\r\n")
    elif path == "/raw/101-unasked":
        req.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\nRAW"
        )
    elif path == "/raw/status-042":
        req.write(b"HTTP/1.1 042 Odd\r\nContent-Length: 2\r\n\r\nok")
    elif path == "/raw/150-with-body":
        # An interim response never has a body (RFC 9110 §15.2), whatever it says.
        req.write(b"HTTP/1.1 150 Odd\r\nContent-Length: 2\r\n\r\n")
        req.write(http_response(b"final"))
    elif path in ("/raw/huge-head", "/raw/large-head"):
        # The head in pieces, each its own write (and so its own read, mostly).
        size = BIG_HEADER if path == "/raw/huge-head" else 40 * 1024
        req.write(b"HTTP/1.1 200 OK\r\nX-Big: ")
        for _ in range(size // 8192):
            req.write(b"a" * 8192)
            await asyncio.sleep(0)
        req.write(b"\r\nContent-Length: 2\r\n\r\nok")
    else:
        req.write(http_response(b"raw " + path.encode()))


class _PlainUpstream:
    """Reads requests one after the other on each connection and answers each 200 with
    `{"path", "body"}` (a chunked body is read to its end but not kept: "body" is "");
    `requests` lists (path, body) in the order read. Upgrade and Connection are ignored."""

    def __init__(self, loop_thread: LoopThread) -> None:
        self.loop_thread = loop_thread
        self.requests: list[tuple[str, bytes]] = []
        self.writers: set[asyncio.StreamWriter] = set()

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
                _method, target, _ = lines[0].split(" ", 2)
                length = 0
                chunked = False
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                    if name.strip().lower() == "transfer-encoding":
                        chunked = "chunked" in value.lower()
                try:
                    if chunked:
                        # Read to the last chunk before answering (an answer before the
                        # body ends would race what the gateway does with its end).
                        # The framing is the gateway's; the tests send no trailers.
                        await reader.readuntil(b"0\r\n\r\n")
                        body = b""
                    else:
                        body = await reader.readexactly(length) if length else b""
                except asyncio.IncompleteReadError:
                    return
                self.requests.append((target, body))
                answer = json.dumps({"path": target, "body": body.decode("latin-1")}).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%b" % (len(answer), answer)
                )
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            for writer in tuple(self.writers):
                writer.close()
            await asyncio.sleep(0.01)

        self.loop_thread.run(stop())


@dataclass
class Env:
    port: int
    plain: _PlainUpstream
    gateway: GatewayThread


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    harness = Harness()
    plain: _PlainUpstream | None = None
    try:
        plain = _PlainUpstream(harness.upstream_loop)
        raw = harness.raw(_raw_handler)
        gateway = harness.gateway(
            {
                "services": [
                    {"name": "plain", "upstream": plain.url, "prefix": "/plain"},
                    {"name": "raw", "upstream": raw.url, "prefix": "/raw"},
                ],
                "limits": {"header_timeout": 5.0, "body_timeout": 5.0},
            }
        )
        yield Env(gateway.port, plain, gateway)
    finally:
        if plain is not None:
            plain.close()
        harness.close()


def http(method: str, target: str, *headers: str, body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {HOST}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def barrier(env: Env, path: str) -> None:
    """A request on a fresh connection, answered: the gateway wrote everything it would
    write upstream for what came before (one event loop), and the upstream read it."""
    with RawClient(env.port) as client:
        client.send(http("GET", path))
        status, _, body = client.read_response()
    assert status == 200, body
    assert json.loads(body)["path"] == path


# -- Connection naming the framing header ---------------------------------------------------


def test_connection_naming_content_length_does_not_unframe_the_body(env: Env) -> None:
    smuggled = http("GET", "/plain/smuggled")
    env.plain.requests.clear()
    with RawClient(env.port) as client:
        client.send(
            http(
                "POST",
                "/plain/cl",
                "Connection: Content-Length",
                f"Content-Length: {len(smuggled)}",
                body=smuggled,
            )
        )
        status, _, body = client.read_response()
        assert status == 200, body
        assert json.loads(body) == {"path": "/plain/cl", "body": smuggled.decode()}
    barrier(env, "/plain/barrier-cl")
    assert [path for path, _ in env.plain.requests] == ["/plain/cl", "/plain/barrier-cl"]


# -- Upgrade to a server that does not upgrade ----------------------------------------------


@pytest.mark.parametrize("body", [b"", b"the body"], ids=["no-body", "content-length"])
def test_bytes_after_an_upgrade_request_wait_for_the_101(env: Env, body: bytes) -> None:
    # What follows an Upgrade request is the new protocol's only once the upstream
    # says 101; a server that ignores Upgrade reads it as its next request (on a
    # connection the gateway then pools: its answer would reach another client).
    smuggled = http("GET", "/plain/smuggled-upgrade")
    length = (f"Content-Length: {len(body)}",) if body else ()
    env.plain.requests.clear()
    with RawClient(env.port) as client:
        client.send(
            http("POST", "/plain/up", "Connection: Upgrade", "Upgrade: websocket", *length)
            + body
            + smuggled
        )
        status, _, got = client.read_response()
        assert status == 200, got
        assert json.loads(got) == {"path": "/plain/up", "body": body.decode()}
        assert client.is_closed()
    barrier(env, "/plain/barrier-up")
    assert env.plain.requests == [("/plain/up", body), ("/plain/barrier-up", b"")]


# -- Expect ---------------------------------------------------------------------------------


def test_expect_100_continue_with_trailing_whitespace_is_honoured(env: Env) -> None:
    # RFC 9110 §5.5: trailing OWS is not part of a field value (nginx strips it too).
    with RawClient(env.port) as client:
        client.send(http("POST", "/plain/expect", "Expect: 100-continue \t", "Content-Length: 5"))
        assert client.read_until(b"\r\n\r\n").startswith(b"HTTP/1.1 100 ")
        client.send(b"hello")
        status, _, body = client.read_response()
        assert status == 200, body
        assert json.loads(body) == {"path": "/plain/expect", "body": "hello"}


# -- what the upstream answers --------------------------------------------------------------


def test_content_length_of_a_204_is_not_passed_on(env: Env) -> None:
    with RawClient(env.port) as client:
        client.send(http("GET", "/raw/204-with-length"))
        status, headers, _ = client.read_response()
        assert status == 204
        assert headers["x-a"] == "1"
        assert "content-length" not in headers  # RFC 9110 §8.6: MUST NOT in a 204
        client.send(http("GET", "/raw/after"))
        assert client.read_response()[2] == b"raw /raw/after"


def test_a_101_the_request_did_not_ask_for_is_a_502(env: Env) -> None:
    # Passed on, the 101 made the client's connection a tunnel to that upstream: the
    # client's next request went there as raw bytes, past routing and steps.
    with RawClient(env.port) as client:
        client.send(http("GET", "/raw/101-unasked"))
        status, headers, body = client.read_response()
        assert status == 502, body
        assert headers["content-type"] == "application/problem+json"
        client.send(http("GET", "/plain/after-101"))
        status, _, body = client.read_response()
        assert status == 200
        assert json.loads(body)["path"] == "/plain/after-101"


def test_a_response_head_past_the_limit_is_a_502(env: Env) -> None:
    with RawClient(env.port) as client:
        client.send(http("GET", "/raw/huge-head"))
        status, headers, body = client.read_response()
        assert status == 502, (status, len(body))
        assert headers["content-type"] == "application/problem+json"
        assert "response head larger than" in json.loads(body)["detail"]


def test_a_large_response_head_in_pieces_under_the_limit_is_served(env: Env) -> None:
    with RawClient(env.port) as client:
        client.send(http("GET", "/raw/large-head"))
        status, headers, body = client.read_response()
        assert status == 200
        assert headers["x-big"] == "a" * 40 * 1024
        assert body == b"ok"


def test_a_status_below_100_is_a_502(env: Env) -> None:
    with RawClient(env.port) as client:
        client.send(http("GET", "/raw/status-042"))
        status, headers, body = client.read_response()
        assert status == 502, body
        assert headers["content-type"] == "application/problem+json"
        client.send(http("GET", "/raw/after-042"))
        assert client.read_response()[2] == b"raw /raw/after-042"


def test_an_interim_response_has_no_body_whatever_its_length_says(env: Env) -> None:
    with RawClient(env.port) as client:
        client.send(http("GET", "/raw/150-with-body"))
        status, _, body = client.read_response()
        while 100 <= status < 200:  # (forwarding the 150 would be allowed: whole)
            status, _, body = client.read_response()
        assert (status, body) == (200, b"final")
        client.send(http("GET", "/raw/after-150"))
        assert client.read_response()[2] == b"raw /raw/after-150"


# -- the request target -----------------------------------------------------------------------


def test_a_fragment_in_the_request_target_is_not_forwarded(env: Env) -> None:
    # The router ignores a fragment: the upstream must see the path that was routed,
    # not one a server taking '#' literally resolves to /admin.
    env.plain.requests.clear()
    with RawClient(env.port) as client:
        client.send(http("GET", "/plain/x?a=1#/../../admin"))
        status, _, body = client.read_response()
        assert status == 200, body
        assert json.loads(body)["path"] == "/plain/x?a=1"


@pytest.mark.parametrize(
    ("version", "expected"),
    [("HTTP/2.0", 505), ("HTTP/0.9", 505), ("HTTP/3.0", 400)],  # 3.0: llhttp refuses it
)
def test_a_request_line_of_another_http_version_is_505(
    env: Env, version: str, expected: int
) -> None:
    # llhttp reads 2.0 and 0.9; served, they got HTTP/1.0's rules. nginx answers 505.
    env.plain.requests.clear()
    with RawClient(env.port) as client:
        client.send(f"GET /plain/v {version}\r\nHost: gw.test\r\n\r\n".encode())
        status, _, body = client.read_response()
        assert status == expected, body
    assert env.plain.requests == []


# -- the client ending its stream mid-request ---------------------------------------------------


@pytest.mark.parametrize(
    "cut",
    [
        http("POST", "/plain/cut", "Content-Length: 10", body=b"hello"),
        http("POST", "/plain/cut", "Transfer-Encoding: chunked", body=b"5\r\nhello\r\n"),
    ],
    ids=["content-length", "chunked"],
)
def test_a_body_cut_short_by_the_clients_end_of_stream_is_400_at_once(env: Env, cut: bytes) -> None:
    # It can never end: it used to wait out body_timeout (5 s here), holding the
    # upstream connection its partial body went to, then answer 408.
    with RawClient(env.port) as client:
        client.send(cut)
        client.sock.shutdown(socket.SHUT_WR)
        status, headers, body = client.read_response()
        assert status == 400, body
        assert headers["connection"].lower() == "close"
        assert client.is_closed()


def test_a_head_cut_short_by_the_clients_end_of_stream_is_closed_unanswered(env: Env) -> None:
    with RawClient(env.port) as client:
        client.send(b"GET /plain/cut HTTP/1.1\r\nHost: gw.test\r\nX-Unfini")
        client.sock.shutdown(socket.SHUT_WR)
        assert client.read_to_close() == b""  # (not a 408 after header_timeout)


def test_a_request_before_one_cut_short_is_still_answered(env: Env) -> None:
    with RawClient(env.port) as client:
        client.send(
            http("GET", "/plain/first")
            + http("POST", "/plain/cut", "Content-Length: 10", body=b"hello")
        )
        client.sock.shutdown(socket.SHUT_WR)
        status, _, body = client.read_response()
        assert (status, json.loads(body)["path"]) == (200, "/plain/first")
        status, _, body = client.read_response()
        assert status == 400, body
        assert client.is_closed()


# -- the Host header ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/1.0"])
@pytest.mark.parametrize("host", ["", " ", ":80"])
def test_an_empty_host_is_400(env: Env, version: str, host: str) -> None:
    # Served on any route that takes any Host, the upstream then got `Host: ` (or
    # X-Forwarded-Host empty). nginx: 400 "client sent invalid host header", whatever
    # the version; the empty name before a port is as empty.
    env.plain.requests.clear()
    with RawClient(env.port) as client:
        client.send(f"GET /plain/h {version}\r\nHost:{host}\r\n\r\n".encode())
        status, headers, body = client.read_response()
        assert status == 400, body
        assert headers["content-type"] == "application/problem+json"
        assert json.loads(body)["detail"] == "the Host header is not a valid host"
    assert env.plain.requests == []


def test_an_http_1_0_request_without_host_is_still_served(env: Env) -> None:
    with RawClient(env.port) as client:
        client.send(b"GET /plain/no-host HTTP/1.0\r\n\r\n")
        status, _, body = client.read_response()
        assert (status, json.loads(body)["path"]) == (200, "/plain/no-host")
