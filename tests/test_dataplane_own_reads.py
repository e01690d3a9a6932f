"""A kept-alive connection's reads, client side and upstream side, made by the data
plane itself on a duplicate of the socket that uvloop polls (dataplane/reads.pxi).

From a connection's second read on, the gateway recv()s the socket itself instead
of through uvloop's stream; the transport keeps the writes, flow control and the
close. Each test takes a connection past that point and then does what the
transport's reads used to handle: the end of stream (both sides), a reset, a
pause and resume (a slow upstream, a slow client), pipelining, the close. The
duplicate is seen in /proc: the gateway runs in this process (GatewayThread), so
its sockets are this process's descriptors.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import struct
from collections.abc import Iterator

import pytest
from servers import (
    AsyncioLoopThread,
    GatewayThread,
    Harness,
    RawClient,
    RawRequest,
    http_response,
    wait_until,
)
from test_dataplane_client_read_buffer import digest_app, post

pytestmark = pytest.mark.skipif(
    not os.path.isdir("/proc/self/fd"), reason="descriptors are counted in /proc (Linux)"
)


def _socket_inode(local_port: int, remote_port: int) -> int | None:
    """The inode of this process's TCP socket from `local_port` to `remote_port` on
    127.0.0.1 (/proc/net/tcp), or None."""
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], int(fields[9])
            if int(local.split(":")[1], 16) == local_port and (
                int(remote.split(":")[1], 16) == remote_port
            ):
                return inode
    return None


def _descriptors_of(inodes: set[int]) -> int:
    """How many of this process's descriptors are sockets with these inodes."""
    links = {f"socket:[{inode}]" for inode in inodes}
    count = 0
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # (closed since listed)
            count += os.readlink(f"/proc/self/fd/{name}") in links
    return count


def descriptors_of(local_port: int, remote_port: int) -> int:
    """How many of this process's descriptors are the socket `local_port` → `remote_port`."""
    inode = _socket_inode(local_port, remote_port)
    return 0 if inode is None else _descriptors_of({inode})


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n".encode()


@pytest.fixture
def harness() -> Iterator[Harness]:
    made = Harness()
    yield made
    made.close()


def proxy(harness: Harness, upstream_url: str) -> GatewayThread:
    """A gateway on `harness` proxying everything to `upstream_url`."""
    return harness.gateway({"services": [{"name": "svc", "upstream": upstream_url, "prefix": "/"}]})


def kept_alive(harness: Harness, requests: int) -> tuple[GatewayThread, RawClient, int]:
    """A gateway in front of digest_app, and a client connection that made `requests`
    GETs on it (from the second, the gateway reads that connection itself); its port."""
    gw = proxy(harness, harness.aiohttp(digest_app()).url)
    client = harness.client(gw.port)
    for n in range(requests):
        client.send(get(f"/{n}"))
        assert client.read_response()[0] == 200
    return gw, client, client.sock.getsockname()[1]


def test_a_kept_alive_client_connection_is_read_through_a_second_descriptor(
    harness: Harness,
) -> None:
    upstream = harness.aiohttp(digest_app())
    gw = proxy(harness, upstream.url)
    client = harness.client(gw.port)
    client_port = client.sock.getsockname()[1]

    client.send(get("/one"))
    assert client.read_response()[0] == 200
    assert descriptors_of(gw.port, client_port) == 1  # one read: the transport's
    for n in range(2, 6):
        client.send(get(f"/{n}"))
        status, _, body = client.read_response()
        assert status == 200 and f'"/{n}"'.encode() in body
    assert descriptors_of(gw.port, client_port) == 2  # the transport's, and ours

    client.close()
    # Both go with the connection: no descriptor is left behind.
    assert wait_until(lambda: descriptors_of(gw.port, client_port) == 0)


def test_a_pooled_upstream_connection_is_read_through_a_second_descriptor(
    harness: Harness,
) -> None:
    async def answer(request: RawRequest) -> None:
        request.write(http_response(request.path.encode()))

    upstream = harness.raw(answer)
    gw = proxy(harness, upstream.url)
    client = harness.client(gw.port)
    for n in range(4):
        client.send(get(f"/{n}"))
        assert client.read_response()[2] == f"/{n}".encode()
    assert upstream.connections == 1
    (conn,) = upstream.open
    assert conn.transport is not None
    upstream_side = conn.transport.get_extra_info("peername")[1]  # the gateway's port
    assert descriptors_of(upstream_side, upstream.port) == 2

    # The upstream closes the idle connection: the gateway reads the end of stream,
    # closes its side, and the pool opens a new connection for the next request.
    harness.upstream_loop.call(lambda: conn.transport.close())
    assert wait_until(lambda: descriptors_of(upstream_side, upstream.port) == 0)
    client.send(get("/after"))
    assert client.read_response()[2] == b"/after"
    assert upstream.connections == 2


def test_the_client_half_closes_after_kept_alive_requests(harness: Harness) -> None:
    gw, client, client_port = kept_alive(harness, 3)
    assert descriptors_of(gw.port, client_port) == 2
    # Two more requests, then the client's end of stream: both are answered, then
    # the gateway closes (as nginx does).
    client.send(get("/a") + get("/b"))
    client.sock.shutdown(socket.SHUT_WR)
    assert b'"/a"' in client.read_response()[2]
    assert b'"/b"' in client.read_response()[2]
    assert client.read_to_close() == b""
    assert wait_until(lambda: descriptors_of(gw.port, client_port) == 0)


def test_the_client_resets_mid_body_after_kept_alive_requests(harness: Harness) -> None:
    gw, client, client_port = kept_alive(harness, 3)
    client.send(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n" + b"x" * 5000)
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    assert wait_until(lambda: descriptors_of(gw.port, client_port) == 0)
    # The reset may come behind the body in the same wake-up: uvloop closes the
    # poll after one read (of the body). The clock's sweep sees it (reads.pxi:
    # poll_lost, socket_ready) and the connection ends, as the transport's reads
    # ended it, not at the body's deadline (30 s by default).
    assert wait_until(lambda: not gw.loop_thread.call(lambda: len(gw.gateway._ctx.connections)))
    # The gateway goes on serving.
    other = harness.client(gw.port)
    other.send(get("/still"))
    assert other.read_response()[0] == 200


def test_pipelined_requests_after_the_reads_are_taken(harness: Harness) -> None:
    _, client, _ = kept_alive(harness, 2)
    client.send(b"".join(get(f"/p{n}") for n in range(20)))
    for n in range(20):
        status, _, body = client.read_response()
        assert status == 200 and f'"/p{n}"'.encode() in body


def test_a_large_upload_to_a_slow_upstream_pauses_and_resumes_our_reads(
    harness: Harness,
) -> None:
    """The upstream's socket fills: the client's reads pause (remove_reader) and
    resume (add_reader) many times; every byte arrives, in order."""
    gw, client, client_port = kept_alive(harness, 2)
    assert descriptors_of(gw.port, client_port) == 2
    body = os.urandom(8 * 1024 * 1024)
    for chunked in (False, True):
        client.send(post("/up?slow=1", body, chunked=chunked))
        status, _, answer = client.read_response()
        assert status == 200
        assert hashlib.sha256(body).hexdigest().encode() in answer
        assert f'"len": {len(body)}'.encode() in answer


def test_a_large_download_to_a_slow_client_pauses_and_resumes_the_upstream_reads(
    harness: Harness,
) -> None:
    """The client's socket fills: the pooled upstream connection's reads pause and
    resume; every byte arrives, in order, and the connection is reused after."""
    payload = os.urandom(16 * 1024 * 1024)

    async def answer(request: RawRequest) -> None:
        request.write(http_response(payload if request.path == "/big" else b"small"))

    upstream = harness.raw(answer)
    gw = proxy(harness, upstream.url)
    client = harness.client(gw.port)
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    for n in range(2):
        client.send(get(f"/{n}"))
        assert client.read_response()[2] == b"small"
    client.send(get("/big"))
    head = client.read_until(b"\r\n\r\n")
    assert b" 200 " in head
    received = bytearray(client.buffer)  # (what came with the head)
    client.buffer = b""
    while len(received) < len(payload):
        piece = client.sock.recv(16 * 1024)
        assert piece
        received += piece
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()
    client.send(get("/after"))
    assert client.read_response()[2] == b"small"
    assert upstream.connections == 1


def test_connections_on_asyncio_loop_keep_the_transport_reads() -> None:
    """Not uvloop: nothing to spare, the transport reads as before (one descriptor)."""
    harness = Harness()
    loop_thread = AsyncioLoopThread()
    try:
        upstream = harness.aiohttp(digest_app())
        gw = GatewayThread(
            {"services": [{"name": "svc", "upstream": upstream.url, "prefix": "/"}]}, loop_thread
        )
        client = RawClient(gw.port)
        client_port = client.sock.getsockname()[1]
        for n in range(4):
            client.send(get(f"/{n}"))
            assert client.read_response()[0] == 200
        assert descriptors_of(gw.port, client_port) == 1
        client.close()
        gw.stop(drain_timeout=2.0)
    finally:
        loop_thread.close()
        harness.close()


def _connection_inodes(local_port: int) -> set[int]:
    """Inodes of this process's TCP sockets on `local_port` that are not listening."""
    found = set()
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == local_port and fields[3] != "0A":
                found.add(int(fields[9]))
    return found


def client_side_descriptors(port: int) -> int:
    """This process's descriptors of connections accepted on `port` (the gateway's)."""
    return _descriptors_of(_connection_inodes(port))


def test_many_kept_alive_connections_leave_no_descriptor(harness: Harness) -> None:
    upstream = harness.aiohttp(digest_app())
    gw = proxy(harness, upstream.url)
    gathered: list[int] = []

    async def one(n: int, opened: asyncio.Event, go: asyncio.Event) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        for k in range(3):
            writer.write(get(f"/{n}/{k}"))
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
        gathered.append(n)
        if len(gathered) == 50:
            opened.set()
        await go.wait()
        writer.close()
        await writer.wait_closed()

    async def many() -> None:
        opened, go = asyncio.Event(), asyncio.Event()
        tasks = [asyncio.ensure_future(one(n, opened, go)) for n in range(50)]
        await asyncio.wait_for(opened.wait(), 30)
        # All 50 open, each read three times: the transport's descriptor and ours.
        counted = client_side_descriptors(gw.port)
        go.set()
        await asyncio.gather(*tasks)
        assert counted == 2 * 50

    harness.upstream_loop.run(many(), timeout=60)
    assert wait_until(lambda: not gw.loop_thread.call(lambda: len(gw.gateway._ctx.connections)))
    assert wait_until(lambda: client_side_descriptors(gw.port) == 0)


def test_runmcp_reads_transport_leaves_the_reads_to_the_transport(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator's way back: RUNMCP_READS=transport, one descriptor per connection."""
    monkeypatch.setenv("RUNMCP_READS", "transport")
    upstream = harness.aiohttp(digest_app())
    gw = proxy(harness, upstream.url)
    client = harness.client(gw.port)
    client_port = client.sock.getsockname()[1]
    for n in range(4):
        client.send(get(f"/{n}"))
        assert client.read_response()[0] == 200
    assert descriptors_of(gw.port, client_port) == 1


def test_an_upstream_reset_right_behind_its_response_is_seen_while_the_connection_idles(
    harness: Harness,
) -> None:
    """A keep-alive response with a reset right behind it, in one wake-up: uvloop reads
    the response and closes the poll (the reset unseen), and the connection goes back
    to the pool. The pool's sweep finds it (reads.pxi: poll_lost, socket_ready) and
    closes it, rather than handing out a dead connection to the next request."""

    gateway_ports: list[int] = []  # the gateway's end of each upstream connection

    async def answer(request: RawRequest) -> None:
        transport = request.conn.transport
        assert transport is not None
        gateway_ports.append(transport.get_extra_info("peername")[1])
        request.write(http_response(request.path.encode()))
        if request.path == "/last":
            request.reset()

    upstream = harness.raw(answer)
    gw = proxy(harness, upstream.url)
    client = harness.client(gw.port)
    for path in ("/1", "/2"):
        client.send(get(path))
        assert client.read_response()[2] == path.encode()
    # The gateway's socket of the pooled connection, known while it is open.
    inode = _socket_inode(gateway_ports[-1], upstream.port)
    assert inode is not None and _descriptors_of({inode}) == 2  # the transport's, ours
    client.send(get("/last"))
    assert client.read_response()[2] == b"/last"
    assert upstream.connections == 1
    assert wait_until(lambda: _descriptors_of({inode}) == 0, timeout=5)
    # A POST (not retried on a reused connection's failure) goes out on a new one.
    client.send(b"POST /after HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}")
    assert client.read_response()[2] == b"/after"
    assert upstream.connections == 2
