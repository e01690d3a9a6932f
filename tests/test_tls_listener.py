"""TLS listeners on OpenSSL directly (runmcp_fast._tls), on uvloop and on asyncio's loop:
what a client sees of the TLS layer itself. Request and tunnel bytes through it are
tests/test_dataplane_client_read_buffer.py's ("tls" and "tls-loop" rigs)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from servers import RawClient, wait_until
from test_dataplane_client_read_buffer import Rig, digest_app, post, service
from test_serve_process import make_certificate, package_env, serve_command

from runmcp_fast.listeners import own_tls

pytestmark = pytest.mark.skipif(not own_tls(), reason="runmcp_fast._tls is not built")


@pytest.fixture(params=["uvloop", "asyncio"])
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    made = Rig(str(request.param), "tls", tmp_path)
    yield made
    made.close()


@pytest.fixture
def loop_errors(rig: Rig) -> Iterator[list[dict[str, Any]]]:
    """What reaches the gateway loop's exception handler (nothing should)."""
    errors: list[dict[str, Any]] = []

    def record() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))

    rig.loop_thread.call(record)
    yield errors
    rig.loop_thread.call(lambda: asyncio.get_running_loop().set_exception_handler(None))


def big_app() -> web.Application:
    """GET /big?size=N: N bytes of a known pattern (a streamed, chunked answer)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        size = int(request.query["size"])
        response = web.StreamResponse()
        await response.prepare(request)
        block = bytes(range(256)) * 256
        sent = 0
        while sent < size:
            piece = block[: min(len(block), size - sent)]
            await response.write(piece)
            sent += len(piece)
        await response.write_eof()
        return response

    application = web.Application()
    application.router.add_get("/big", handle)
    return application


def expected_big(size: int) -> bytes:
    block = bytes(range(256)) * 256
    return (block * (size // len(block) + 1))[:size]


def tls_client(rig: Rig, port: int, **kwargs: Any) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(rig.cert))
    for key, value in kwargs.items():
        getattr(context, key)(*value)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return context.wrap_socket(raw, server_hostname="localhost")


def test_the_session_is_tls_13_with_alpn_and_serves_keep_alive_requests(
    rig: Rig, loop_errors: list[dict[str, Any]]
) -> None:
    up = rig.harness.aiohttp(digest_app())
    gw = rig.gateway(service(up.url))
    sock = tls_client(rig, gw.port, set_alpn_protocols=(["h2", "http/1.1"],))
    assert sock.version() == "TLSv1.3"
    assert sock.selected_alpn_protocol() == "http/1.1"
    client = RawClient.from_socket(sock)
    rig.clients.append(client)
    for i in range(20):
        body = bytes([i]) * (i * 997)
        client.send(post(f"/p{i}", body))
        status, _, raw = client.read_response()
        assert status == 200
        assert json.loads(raw)["sha256"] == hashlib.sha256(body).hexdigest()
    assert loop_errors == []


def test_tls_12_and_a_client_offering_no_alpn_are_served(rig: Rig) -> None:
    up = rig.harness.aiohttp(digest_app())
    gw = rig.gateway(service(up.url))
    context = ssl.create_default_context(cafile=str(rig.cert))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    raw = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    sock = context.wrap_socket(raw, server_hostname="localhost")
    assert sock.version() == "TLSv1.2"
    assert sock.selected_alpn_protocol() is None
    client = RawClient.from_socket(sock)
    rig.clients.append(client)
    client.send(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
    assert client.read_response()[0] == 200


def test_megabytes_both_ways_come_out_whole(rig: Rig) -> None:
    # Many records each way, a response larger than the socket buffers (the TCP
    # transport queues ciphertext, pauses the app's writing, resumes it), an upload
    # of 3 MB read by an upstream that reads slowly.
    up = rig.harness.aiohttp(big_app())
    digest_up = rig.harness.aiohttp(digest_app())
    gw = rig.gateway(
        {
            "services": [
                {"name": "big", "upstream": up.url, "prefix": "/big"},
                {"name": "digest", "upstream": digest_up.url, "prefix": "/up"},
            ]
        }
    )
    sock = tls_client(rig, gw.port)
    client = RawClient.from_socket(sock)
    rig.clients.append(client)
    size = 9 * 1024 * 1024 + 3
    client.send(f"GET /big?size={size} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    status, _, body = client.read_response()
    assert status == 200
    assert body == expected_big(size)
    upload = bytes(range(251)) * 12_000
    client.send(post("/up?slow=1", upload))
    status, _, raw = client.read_response()
    assert status == 200
    assert json.loads(raw)["sha256"] == hashlib.sha256(upload).hexdigest()


def test_pipelined_requests_in_one_record_are_answered_in_order(rig: Rig) -> None:
    up = rig.harness.aiohttp(digest_app())
    gw = rig.gateway(service(up.url))
    client = RawClient.from_socket(tls_client(rig, gw.port))
    rig.clients.append(client)
    client.send(b"".join(post(f"/q{i}", bytes([i]) * 100) for i in range(8)))
    for i in range(8):
        status, _, raw = client.read_response()
        assert status == 200
        assert json.loads(raw)["path"] == f"/q{i}"


def test_bytes_that_are_not_tls_close_that_connection_and_no_other(
    rig: Rig, loop_errors: list[dict[str, Any]]
) -> None:
    up = rig.harness.aiohttp(digest_app())
    gw = rig.gateway(service(up.url))
    keep = RawClient.from_socket(tls_client(rig, gw.port))
    rig.clients.append(keep)
    for garbage in (
        b"GET / HTTP/1.1\r\nHost: t\r\n\r\n",
        b"\x16\x03\x01\x00\x05hello",
        b"\x00" * 64,
    ):
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as raw:
            raw.sendall(garbage)
            # An alert (or nothing), then the end: never an answer in plain text.
            got = b""
            with contextlib.suppress(ConnectionResetError):
                while chunk := raw.recv(65536):
                    got += chunk
            assert b"HTTP/1.1" not in got
    keep.send(b"GET /still HTTP/1.1\r\nHost: t\r\n\r\n")
    assert keep.read_response()[0] == 200
    assert wait_until(lambda: rig.open_connections(gw) == 1)
    assert loop_errors == []


def test_a_client_that_never_finishes_the_handshake_is_closed_after_header_timeout(
    rig: Rig,
) -> None:
    up = rig.harness.aiohttp(digest_app())
    gw = rig.gateway({**service(up.url), "limits": {"header_timeout": 0.3}})
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as silent:
        assert silent.recv(100) == b""  # closed by the gateway, not by the 10 s timeout
    # And one that stops halfway (a ClientHello, nothing after the server's flight).
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    context = ssl.create_default_context(cafile=str(rig.cert))
    half = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        half.do_handshake()
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as slow:
        slow.sendall(outgoing.read())
        got = b""
        while chunk := slow.recv(65536):
            got += chunk
        assert got  # the server's flight came, then the close


class BioClient:
    """A TLS client over memory BIOs on a raw socket: it can send a close_notify, or a
    TCP FIN, and still read what comes after (an SSLSocket can do neither)."""

    def __init__(self, rig: Rig, port: int) -> None:
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        context = ssl.create_default_context(cafile=str(rig.cert))
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")
        self.raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        for _ in range(10):  # bounded: TLS 1.3 takes one round trip
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.raw.sendall(self.outgoing.read())
                self.incoming.write(self.raw.recv(65536))
        self.raw.sendall(self.outgoing.read())

    def send(self, data: bytes) -> None:
        self.tls.write(data)
        self.raw.sendall(self.outgoing.read())

    def close_notify(self) -> None:
        with contextlib.suppress(ssl.SSLWantReadError):
            self.tls.unwrap()
        self.raw.sendall(self.outgoing.read())

    def read_to_close(self) -> bytes:
        """Plaintext until the server closes the TCP connection."""
        answer = b""
        while chunk := self.raw.recv(65536):
            self.incoming.write(chunk)
            with contextlib.suppress(ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                while piece := self.tls.read(65536):
                    answer += piece
        return answer

    def close(self) -> None:
        self.raw.close()


def test_a_close_notify_after_a_request_still_gets_the_answer_then_the_end(rig: Rig) -> None:
    release = threading.Event()
    up = rig.harness.aiohttp(digest_app(release))
    gw = rig.gateway(service(up.url))
    client = BioClient(rig, gw.port)
    try:
        client.send(b"GET /held?hold=1 HTTP/1.1\r\nHost: t\r\n\r\n")
        client.close_notify()  # while the answer is held upstream
        release.set()
        answer = client.read_to_close()
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert b'"path": "/held?hold=1"' in answer
    finally:
        client.close()
    assert wait_until(lambda: rig.open_connections(gw) == 0)


def test_a_tcp_half_close_after_a_request_still_gets_the_answer(rig: Rig) -> None:
    # The client sends its request, then FIN without a close_notify. The answer comes
    # anyway (uvloop's TLS transport closed the connection at once instead).
    up = rig.harness.aiohttp(digest_app())
    gw = rig.gateway(service(up.url))
    client = BioClient(rig, gw.port)
    try:
        client.send(b"GET /after-fin HTTP/1.1\r\nHost: t\r\n\r\n")
        client.raw.shutdown(socket.SHUT_WR)
        answer = client.read_to_close()
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert b'"path": "/after-fin"' in answer
    finally:
        client.close()
    assert wait_until(lambda: rig.open_connections(gw) == 0)


@pytest.mark.parametrize("tls", ["own", "python"])
def test_a_key_that_is_not_the_certificates_exits_2_naming_the_listener(
    tmp_path: Path, tls: str
) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        make_certificate(tmp_path / name)
    path = tmp_path / "gw.yaml"
    path.write_text(
        json.dumps(
            {
                "listeners": [
                    {"address": "127.0.0.1:0", "tls": {"cert": "a/cert.pem", "key": "b/key.pem"}}
                ],
                "services": [{"name": "api", "upstream": "http://127.0.0.1:9", "prefix": "/"}],
            }
        ),
        encoding="utf-8",
    )
    env = {**package_env(), "RUNMCP_TLS": tls}
    result = subprocess.run(
        [*serve_command(), "-c", str(path)], capture_output=True, text=True, timeout=30, env=env
    )
    assert result.returncode == 2, result.stderr
    assert f"{path}#/listeners/0/tls" in result.stderr
    assert "unusable" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unusable_certificate_or_key_raises_an_ssl_error_naming_it(
    rig: Rig, tmp_path: Path
) -> None:
    from runmcp_fast._tls import TlsContext

    other = tmp_path / "other"
    other.mkdir()
    _, other_key = make_certificate(other)
    with pytest.raises(ssl.SSLError, match="mismatch") as caught:
        TlsContext(str(rig.cert), str(other_key))
    assert str(other_key) in caught.value.reason
    with pytest.raises(ssl.SSLError, match=r"missing\.pem"):
        TlsContext(str(tmp_path / "missing.pem"), str(rig.key))
