"""Client-side limits: sizes (414, 431, 413), timeouts (408, idle close) and the
connection cap (503), against a real gateway with small limits so each test is fast.

Timeouts are asserted on their outcome (the 408 arrived, the connection closed)
after a bounded wait for it, never after a pause of a chosen length. The gateway
checks deadlines on a periodic sweep, so a deadline fires late by up to one sweep
interval but never early (`_dataplane.Clock`): a test checks from below only,
from a start taken before whatever starts the gateway's clock. How late it may be
depends on the machine, so no test bounds it from above; `WAIT` only ends a hang.
"""

from __future__ import annotations

import contextlib
import json
import select
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from servers import ECHO_COUNT, GatewayThread, Harness, RawClient, echo_app, wait_until

MAX_URL = 256
MAX_HEADER_BYTES = 1024
MAX_HEADERS = 20
MAX_BODY = 1000
HEADER_TIMEOUT = 0.5
BODY_TIMEOUT = 0.5
KEEPALIVE_TIMEOUT = 1.0
WAIT = 10.0
"""The most a test waits for an answer or a close it expects: a guard against a hang."""


def assert_not_early(started: float, timeout: float) -> None:
    """A timeout that fired (now, or just before) did not fire before `timeout` had passed."""
    elapsed = time.monotonic() - started
    assert elapsed >= timeout, f"fired after {elapsed:.3f} s: before its {timeout} s"


@dataclass
class Env:
    harness: Harness
    port: int
    echo_url: str
    count: list[int]

    def echoed(self) -> int:
        return self.count[0]


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    harness = Harness()
    try:
        app = echo_app()
        echo = harness.aiohttp(app)
        gateway = harness.gateway(
            {
                "services": [
                    {"name": "l", "upstream": echo.url, "prefix": "/l"},
                    {
                        "name": "small",
                        "upstream": echo.url,
                        "prefix": "/small",
                        "max_body_bytes": 16,
                    },
                    {
                        "name": "big",
                        "upstream": echo.url,
                        "prefix": "/big",
                        "max_body_bytes": 100_000,
                    },
                ],
                "limits": {
                    "max_url_bytes": MAX_URL,
                    "max_header_bytes": MAX_HEADER_BYTES,
                    "max_headers": MAX_HEADERS,
                    "max_body_bytes": MAX_BODY,
                    "header_timeout": HEADER_TIMEOUT,
                    "body_timeout": BODY_TIMEOUT,
                    "keepalive_timeout": KEEPALIVE_TIMEOUT,
                },
            }
        )
        yield Env(harness, gateway.port, echo.url, app[ECHO_COUNT])
    finally:
        harness.close()


def request(target: str, *headers: str, method: str = "GET", body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: gw.test", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def readable(client: RawClient, wait: float = 0.0) -> bool:
    return bool(client.buffer) or bool(select.select([client.sock], [], [], wait)[0])


def assert_refused(client: RawClient, expected: int) -> None:
    status, headers, body = client.read_response()
    assert status == expected, body
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body)["status"] == expected
    assert headers["connection"].lower() == "close"
    assert client.is_closed()


def send_quietly(client: RawClient, data: bytes) -> bool:
    """Send; False when the gateway has closed already (that is allowed after an answer)."""
    try:
        client.send(data)
    except OSError:
        return False
    return True


@contextlib.contextmanager
def own_gateway(env: Env, limits: dict[str, Any]) -> Iterator[GatewayThread]:
    """A second gateway (service `l` only) with other limits, on the same loop."""
    gateway = GatewayThread(
        {"services": [{"name": "l", "upstream": env.echo_url, "prefix": "/l"}], "limits": limits},
        env.harness.gateway_loop,
    )
    try:
        yield gateway
    finally:
        gateway.stop(1.0)


# -- sizes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "status"),
    [(MAX_URL, 200), (MAX_URL + 1, 414), (MAX_URL * 8, 414)],
    ids=["at-limit", "one-over", "far-over"],
)
def test_url_length(env: Env, length: int, status: int) -> None:
    target = "/l/" + "a" * (length - 3)
    assert len(target) == length
    before = env.echoed()
    with RawClient(env.port) as client:
        client.send(request(target))
        if status == 200:
            got, _, body = client.read_response()
            assert got == 200
            assert json.loads(body)["path"] == target
        else:
            assert_refused(client, status)
            assert env.echoed() == before


@pytest.mark.parametrize(
    ("count", "status"),
    [(MAX_HEADERS, 200), (MAX_HEADERS + 1, 431), (MAX_HEADERS * 10, 431)],
    ids=["at-limit", "one-over", "far-over"],
)
def test_header_count(env: Env, count: int, status: int) -> None:
    headers = [f"X-H{i}: {i}" for i in range(count - 1)]  # plus Host
    before = env.echoed()
    with RawClient(env.port) as client:
        client.send(request("/l/headers", *headers))
        if status == 200:
            assert client.read_response()[0] == 200
        else:
            assert_refused(client, status)
            assert env.echoed() == before


@pytest.mark.parametrize(
    ("size", "status"),
    [(MAX_HEADER_BYTES // 2, 200), (MAX_HEADER_BYTES * 2, 431), (MAX_HEADER_BYTES * 16, 431)],
    ids=["under", "over", "far-over"],
)
def test_header_block_size(env: Env, size: int, status: int) -> None:
    before = env.echoed()
    with RawClient(env.port) as client:
        client.send(request("/l/big-header", "X-Big: " + "v" * size))
        if status == 200:
            assert client.read_response()[0] == 200
        else:
            assert_refused(client, status)
            assert env.echoed() == before


def test_many_small_headers_over_the_byte_limit(env: Env) -> None:
    headers = [f"X-{i}: " + "v" * 100 for i in range(15)]  # under the count, over the bytes
    with RawClient(env.port) as client:
        client.send(request("/l/many", *headers))
        assert_refused(client, 431)


def test_header_value_dripping_in_is_refused_without_unbounded_buffering(env: Env) -> None:
    # One value that never ends, in small sends: the gateway must answer 431 once
    # the head passes its limits, not hold the bytes until the end of the line.
    # The line never ends here and the head timeout is far away, so the only
    # answer a gateway that buffers without bound could give is none at all.
    before = env.echoed()
    limits = {
        "max_url_bytes": MAX_URL,
        "max_header_bytes": MAX_HEADER_BYTES,
        "header_timeout": 60.0,
    }
    with own_gateway(env, limits) as gateway, RawClient(gateway.port) as client:
        client.send(b"GET /l/drip HTTP/1.1\r\nHost: gw.test\r\nX-Drip: ")
        for _ in range(300):  # up to 19 KiB, 15 times the limits
            if readable(client) or not send_quietly(client, b"d" * 64):
                break
            time.sleep(0.002)  # the drip: pieces arrive in separate reads
        assert readable(client, WAIT)
        assert_refused(client, 431)
    assert env.echoed() == before


def test_header_value_past_the_limits_in_one_send_gets_431(env: Env) -> None:
    # 4 KiB of a value that never ends, in one send (one read on loopback).
    before = env.echoed()
    with RawClient(env.port) as client:
        client.send(b"GET /l/big HTTP/1.1\r\nHost: gw.test\r\nX-Big: " + b"v" * 4096)
        assert_refused(client, 431)
    assert env.echoed() == before


# -- bodies -----------------------------------------------------------------------------------


def test_body_at_the_limit_is_accepted(env: Env) -> None:
    with RawClient(env.port) as client:
        client.send(request("/l/body", method="POST", body=b"b" * MAX_BODY))
        status, _, body = client.read_response()
        assert status == 200
        assert json.loads(body)["body_len"] == MAX_BODY


def test_content_length_over_the_limit_is_refused_before_the_body(env: Env) -> None:
    before = env.echoed()
    with RawClient(env.port) as client:
        # Only the head: the answer must not wait for a body it will refuse (that
        # would end in a 408 when the body timeout passes).
        client.send(
            f"POST /l/body HTTP/1.1\r\nHost: gw.test\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n".encode()
        )
        assert_refused(client, 413)
    assert env.echoed() == before


def test_chunked_body_over_the_limit_is_refused_mid_stream(env: Env) -> None:
    # 1200 bytes of chunks, past the 1000-byte limit, and never the last chunk:
    # a 413 can only come from counting the body as it streams (waiting for its
    # end would give a 408 when the body timeout passes).
    with RawClient(env.port) as client:
        client.send(b"POST /l/body HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n")
        piece = b"%x\r\n%b\r\n" % (300, b"c" * 300)
        for _ in range(4):
            if not send_quietly(client, piece):
                break
            time.sleep(0.01)  # the stream: chunks arrive in separate reads
        assert_refused(client, 413)


@pytest.mark.parametrize(
    ("target", "size", "status"),
    [
        ("/small/x", 16, 200),
        ("/small/x", 17, 413),
        ("/big/x", MAX_BODY + 1, 200),
        ("/big/x", 50_000, 200),
        ("/big/x", 100_001, 413),
    ],
    ids=["small-at", "small-over", "big-over-global", "big-large", "big-over"],
)
@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_per_service_body_limit(
    env: Env, target: str, size: int, status: int, framing: str
) -> None:
    payload = b"p" * size
    with RawClient(env.port) as client:
        if framing == "length":
            client.send(request(target, method="POST", body=payload))
        else:
            head = request(target, "Transfer-Encoding: chunked", method="POST")
            client.send(head + b"%x\r\n%b\r\n0\r\n\r\n" % (size, payload))
        if status == 200:
            got, _, body = client.read_response()
            assert got == 200
            assert json.loads(body)["body_len"] == size
        else:
            assert_refused(client, status)


# -- timeouts ----------------------------------------------------------------------------------


def test_slowloris_head_gets_408_and_close(env: Env) -> None:
    # header_timeout bounds the whole head, not the pause between two reads: a
    # byte every 50 ms keeps coming (200 of them at most, far under the size
    # limits, for 20 times the timeout) and the 408 must still come meanwhile.
    before = env.echoed()
    started = time.monotonic()  # before the first byte: the head's clock starts there
    with RawClient(env.port) as client:
        client.send(b"GET /l/slow HTTP/1.1\r\nHost: gw.test\r\nX-Slow: ")
        dripping = True
        for _ in range(200):
            if readable(client) or not send_quietly(client, b"s"):
                break
            time.sleep(0.05)
        else:
            dripping = False
        assert dripping, "no answer while the head kept coming"
        assert_refused(client, 408)
        assert_not_early(started, HEADER_TIMEOUT)
    assert env.echoed() == before


def test_request_line_alone_times_out(env: Env) -> None:
    started = time.monotonic()
    with RawClient(env.port) as client:
        client.send(b"GET /l/half")
        assert readable(client, WAIT)
        assert_refused(client, 408)
        assert_not_early(started, HEADER_TIMEOUT)


def test_idle_connection_that_never_sends_is_closed(env: Env) -> None:
    started = time.monotonic()  # before the connection: its clock starts at the accept
    with RawClient(env.port) as client:
        assert client.is_closed(WAIT)
        assert_not_early(started, HEADER_TIMEOUT)
        # Closed quietly, or with a 408: both are fine on a connection with no request.
        assert client.buffer == b"" or client.buffer.startswith(b"HTTP/1.1 408 ")


def test_idle_keep_alive_connection_is_closed_after_keepalive_timeout(env: Env) -> None:
    with RawClient(env.port) as client:
        started = time.monotonic()  # before the request: its clock starts after the answer
        client.send(request("/l/ka"))
        assert client.read_response()[0] == 200
        assert client.is_closed(WAIT)
        # Not the header timeout (half as long) of a connection waiting for a request.
        assert_not_early(started, KEEPALIVE_TIMEOUT)
        assert client.buffer == b"" or client.buffer.startswith(b"HTTP/1.1 408 ")


def test_keep_alive_connection_in_use_is_not_closed(env: Env) -> None:
    # Requests every 0.3 s for longer than the keep-alive timeout: each one restarts it.
    started = time.monotonic()
    with RawClient(env.port) as client:
        for i in range(5):
            client.send(request(f"/l/busy/{i}"))
            assert client.read_response()[0] == 200
            time.sleep(KEEPALIVE_TIMEOUT * 0.3)  # the client's pause: the behaviour under test
        client.send(request("/l/busy/last"))
        assert client.read_response()[0] == 200
    assert time.monotonic() - started > KEEPALIVE_TIMEOUT  # it did outlive one timeout


def test_body_that_stops_arriving_gets_408_and_close(env: Env) -> None:
    started = time.monotonic()  # before the last body byte: the body's clock restarts there
    with RawClient(env.port) as client:
        client.send(
            b"POST /l/stalled HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 100\r\n\r\n" + b"s" * 10
        )
        assert readable(client, WAIT)
        assert_refused(client, 408)
        assert_not_early(started, BODY_TIMEOUT)


def test_slow_but_steady_body_is_not_timed_out(env: Env) -> None:
    # body_timeout is between two reads: a body trickling in with pauses of a tenth
    # of it is fine, though the whole body takes longer than one timeout.
    started = time.monotonic()
    with RawClient(env.port) as client:
        client.send(b"POST /l/steady HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 16\r\n\r\n")
        for _ in range(16):
            time.sleep(BODY_TIMEOUT / 10)  # the client's pause: the behaviour under test
            client.send(b"z")
        status, _, body = client.read_response()
        assert status == 200
        assert json.loads(body)["body"] == "z" * 16
    assert time.monotonic() - started > BODY_TIMEOUT  # it did outlive one timeout


# -- the connection cap ---------------------------------------------------------------------


def test_connection_past_max_connections_gets_503_and_close(env: Env) -> None:
    with own_gateway(env, {"max_connections": 2, "header_timeout": 5.0}) as gateway:
        first, second = RawClient(gateway.port), RawClient(gateway.port)
        with first, second:
            for i, client in enumerate((first, second)):
                client.send(request(f"/l/conn/{i}"))
                assert client.read_response()[0] == 200
            with RawClient(gateway.port) as extra:
                status, headers, _ = extra.read_response()
                assert status == 503
                assert headers["content-type"] == "application/problem+json"
                assert headers["connection"].lower() == "close"
                assert extra.is_closed()
            # The first two still work; closing one frees its place.
            second.send(request("/l/conn/again"))
            assert second.read_response()[0] == 200
            first.close()

            def served() -> bool:
                with RawClient(gateway.port) as client:
                    with contextlib.suppress(OSError):
                        client.send(request("/l/conn/new"))
                    try:
                        return client.read_response()[0] == 200
                    except (ConnectionError, OSError):
                        return False

            # Until the gateway has seen the close: a refused attempt costs nothing.
            assert wait_until(served, WAIT)
