"""Property tests of the data plane: any bytes, cut anywhere, never break the gateway.

Hypothesis builds streams of valid and broken requests (and, upstream, valid
and broken responses), cuts them into arbitrary reads, and sends them through
a real gateway on loopback. Whatever comes in:
- the gateway's event loop never reports an exception (a callback that
  raised is a bug, even if the connection is closed safely afterwards);
- every answer the client reads is a well-formed HTTP/1.1 response;
- the valid requests before the first broken one are all answered, in order;
- the gateway still serves a fresh connection afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from servers import GatewayThread, Harness, RawClient, RawRequest, http_response, wait_until

# -- the gateway under test ----------------------------------------------------------------


@dataclass
class Env:
    harness: Harness
    gateway: GatewayThread
    port: int
    raw_port: int
    errors: list[dict[str, Any]]
    responses: list[bytes]  # what the raw upstream answers next (a test sets it)


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response({"path": request.path_qs, "len": len(body)})


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    harness = Harness()
    errors: list[dict[str, Any]] = []
    responses: list[bytes] = []
    try:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", _echo)
        echo = harness.aiohttp(app)

        async def raw_handler(req: RawRequest) -> None:
            req.write(responses[0] if responses else http_response(b"default"))
            req.close()

        raw = harness.raw(raw_handler)
        gateway = harness.gateway(
            {
                "services": [
                    {"name": "echo", "upstream": echo.url, "prefix": "/e"},
                    {"name": "raw", "upstream": raw.url, "prefix": "/raw"},
                ],
                "limits": {
                    "max_body_bytes": 4096,
                    "max_url_bytes": 512,
                    "max_header_bytes": 2048,
                    "max_headers": 20,
                    "header_timeout": 2.0,
                    "body_timeout": 2.0,
                },
                "pool": {"read_timeout": 1.0},
            }
        )
        harness.gateway_loop.loop.set_exception_handler(
            lambda _loop, context: errors.append(context)
        )
        yield Env(harness, gateway, gateway.port, raw.port, errors, responses)
    finally:
        harness.close()


# -- requests --------------------------------------------------------------------------------

_TOKENS = st.sampled_from(["GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH"])
_PATHS = st.sampled_from(["/e/a", "/e/b?q=1", "/e/", "/nowhere", "/e/%41", "/e/a/b/c"])


@st.composite
def valid_request(draw: st.DrawFn) -> tuple[bytes, bool]:
    """A well-framed HTTP/1.1 request, and whether it is a HEAD."""
    method = draw(_TOKENS)
    path = draw(_PATHS)
    body = draw(st.binary(max_size=300))
    lines = [f"{method} {path} HTTP/1.1", "Host: fuzz.test"]
    extra = draw(
        st.lists(
            st.sampled_from(
                ["X-A: 1", "Accept: */*", "Connection: keep-alive", "Via: 1.0 x", "TE: trailers"]
            ),
            max_size=3,
        )
    )
    lines += extra
    if body and draw(st.booleans()):
        lines.append("Transfer-Encoding: chunked")
        cut = draw(st.integers(0, len(body)))
        chunks = [c for c in (body[:cut], body[cut:]) if c]
        payload = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    elif body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
        payload = body
    else:
        payload = b""
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload, method == "HEAD"


_BROKEN = st.sampled_from(
    [
        b"GET /e/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET /e/a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"POST /e/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST /e/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /e/a HTTP/1.1\nHost: x\n\n",
        b"GET /e/a HTTP/1.1\r\nHo st: x\r\n\r\n",
        b"GET /e/a HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
        b"\x00\x01\x02garbage\r\n\r\n",
        b"GET /" + b"a" * 600 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /e/../a HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /e/a HTTP/1.1\r\nHost: x\xff\r\n\r\n",
        b"POST /e/a HTTP/1.1\r\nHost: x\r\nContent-Length: 99999\r\n\r\n",
        b"GET /e/a HTTP/1.1\r\nHost: x\r\nExpect: magic\r\n\r\n",
        b"CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
)


def _cuts(draw: st.DrawFn, data: bytes) -> list[bytes]:
    points = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=8))))
    pieces, last = [], 0
    for point in [*points, len(data)]:
        if point > last:
            pieces.append(data[last:point])
            last = point
    return pieces


def _read_responses(client: RawClient, expected: int, heads: list[bool]) -> list[int]:
    statuses = []
    for i in range(expected):
        try:
            status, headers, _ = client.read_response(
                head_request=heads[i] if i < len(heads) else False
            )
        except (ConnectionError, TimeoutError, OSError):
            break
        assert 100 <= status <= 599
        statuses.append(status)
        if headers.get("connection", "").lower() == "close":
            break
    return statuses


def _still_serves(env: Env) -> None:
    with RawClient(env.port, timeout=5) as client:
        client.send(b"GET /e/alive HTTP/1.1\r\nHost: fuzz.test\r\n\r\n")
        status, _, body = client.read_response()
        assert status == 200
        assert json.loads(body)["path"] == "/e/alive"


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_any_request_stream_cut_anywhere(env: Env, data: st.DataObject) -> None:
    valid = data.draw(st.lists(valid_request(), min_size=1, max_size=5))
    broken = data.draw(st.one_of(st.none(), _BROKEN))
    stream = b"".join(request for request, _ in valid) + (broken or b"")
    cut = _cuts(data.draw, stream)
    with RawClient(env.port, timeout=5) as client:
        for piece in cut:
            try:
                client.send(piece)
            except (BrokenPipeError, ConnectionResetError):
                # The gateway rejected the broken request from its first bytes
                # and closed (correctly) before the rest was sent.
                assert broken is not None
                break
        if broken is None:
            client.sock.shutdown(socket.SHUT_WR)
        statuses = _read_responses(client, len(valid) + 1, [head for _, head in valid])
    # Every valid request before the broken one is answered, in order (a 404 of
    # routing is an answer too); the broken one, if any, gets its 4xx after them.
    assert len(statuses) >= len(valid), statuses
    if broken is not None and len(statuses) > len(valid):
        assert 400 <= statuses[len(valid)] < 600
    assert not env.errors, env.errors
    _still_serves(env)


@st.composite
def mutated_stream(draw: st.DrawFn) -> bytes:
    """Valid requests with bytes flipped, inserted or deleted: anything may happen."""
    stream = bytearray(
        b"".join(r for r, _ in draw(st.lists(valid_request(), min_size=1, max_size=3)))
    )
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(stream) - 1))
        kind = draw(st.sampled_from(["flip", "insert", "delete"]))
        if kind == "flip":
            stream[i] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            stream[i:i] = draw(st.binary(min_size=1, max_size=4))
        elif len(stream) > 1:
            del stream[i]
    return bytes(stream)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_mutated_requests_get_answers_or_a_close(env: Env, data: st.DataObject) -> None:
    stream = data.draw(mutated_stream())
    with RawClient(env.port, timeout=5) as client:
        # The gateway may refuse and close before all is sent: that is an answer too.
        with contextlib.suppress(OSError):
            for piece in _cuts(data.draw, stream):
                client.send(piece)
            client.sock.shutdown(socket.SHUT_WR)
        # Whatever was answered must be well formed (a HEAD's answer may read as
        # a body-less one: only the status lines are checked here).
        try:
            head = client.read_to_close()
        except OSError:
            head = client.buffer  # what came before a reset
    for line in head.split(b"\r\n"):
        if line.startswith(b"HTTP/"):
            assert line[:9] == b"HTTP/1.1 " and line[9:12].isdigit(), line
    assert not env.errors, env.errors
    _still_serves(env)


# -- responses --------------------------------------------------------------------------------


@st.composite
def upstream_response(draw: st.DrawFn) -> bytes:
    body = draw(st.binary(max_size=200))
    status = draw(st.sampled_from([200, 201, 204, 304, 404, 500]))
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    lines = [f"HTTP/1.1 {status} X"]
    if framing == "length":
        lines.append(f"Content-Length: {len(body)}")
        payload = body
    elif framing == "chunked":
        lines.append("Transfer-Encoding: chunked")
        payload = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
    else:
        payload = body
    if status in (204, 304):
        payload = b""
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + payload
    mutation = draw(st.sampled_from(["none", "truncate", "flip", "junk-after"]))
    if mutation == "truncate" and raw:
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    elif mutation == "flip" and raw:
        i = draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + bytes([raw[i] ^ draw(st.integers(1, 255))]) + raw[i + 1 :]
    elif mutation == "junk-after":
        raw += draw(st.binary(min_size=1, max_size=50))
    return raw


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(response=upstream_response())
def test_any_upstream_response_gives_a_well_formed_answer_or_a_cut(
    env: Env, response: bytes
) -> None:
    env.responses[:] = [response]
    with RawClient(env.port, timeout=5) as client:
        client.send(b"GET /raw/x HTTP/1.1\r\nHost: fuzz.test\r\n\r\n")
        try:
            status, _, _ = client.read_response()
        except (ConnectionError, TimeoutError, OSError, ValueError, IndexError):
            status = 0  # cut (or a garbled head from a flipped byte the gateway forwarded)
        assert status == 0 or 100 <= status <= 599
    assert not env.errors, env.errors
    _still_serves(env)


def _busy(env: Env) -> list[str]:
    """What is still going on: client connections left, clients waiting for an
    upstream connection. Empty when the gateway is idle (an upstream connection
    is only in use for a client: one whose client is gone is closed or pooled)."""

    def read() -> list[str]:
        gateway = env.gateway.gateway
        out = [f"client connection {vars_of(c)}" for c in gateway._ctx.connections]
        out += [
            f"pool {pool.name}: {pool.waiting_count} waiting"
            for pool in gateway.pools.all()
            if pool.waiting_count
        ]
        return out

    return env.gateway.loop_thread.call(read)


def vars_of(conn: Any) -> str:
    names = ("closed", "closing", "paused", "deadline_kind", "deadline", "waiting", "tunnel")
    return ", ".join(f"{n}={getattr(conn, n, '?')}" for n in names)


def test_the_loop_reports_no_errors_at_the_end(env: Env) -> None:
    # Once every connection the examples opened is done with, and two more passes
    # of the loop (close callbacks run on the pass after the close), check once more.
    assert wait_until(lambda: not _busy(env), 10.0), _busy(env)
    for _ in range(2):
        env.harness.gateway_loop.run(asyncio.sleep(0))
    assert not env.errors, env.errors
