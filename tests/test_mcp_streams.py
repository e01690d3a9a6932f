"""The MCP proxy's transport duties, against raw aiohttp upstreams that record everything.

Headers passed intact, event streams unbuffered and kept alive with SSE
comments, long streams exempt from the read timeout, `Last-Event-ID` on the
replica that owns the session, and a client leaving mid-stream closing the
upstream's stream.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from servers import AiohttpUpstream, GatewayThread, LoopThread, RawClient, wait_until

INIT = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {}},
    }
).encode()


class Replica:
    """An MCP-shaped upstream: sessions on initialize, an event stream on GET."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.requests: list[dict[str, Any]] = []
        self.sessions = 0
        self.streams_closed = 0
        self.release = threading.Event()  # lets a held stream send its second event

    def app(self) -> web.Application:
        async def post(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            self.requests.append({"method": "POST", "headers": dict(request.headers), "body": body})
            message = json.loads(body)
            if isinstance(message, list):  # a batch (2025-03-26)
                answers = [
                    {"jsonrpc": "2.0", "id": m["id"], "result": {}} for m in message if "id" in m
                ]
                return web.json_response(answers)
            if message.get("method") == "initialize":
                self.sessions += 1
                return web.json_response(
                    {"jsonrpc": "2.0", "id": message["id"], "result": {}},
                    headers={"Mcp-Session-Id": f"{self.name}-{self.sessions}"},
                )
            # As real servers do: the session's id on every answer (sealed again by the
            # gateway each time).
            session = request.headers.get("Mcp-Session-Id")
            return web.json_response(
                {"jsonrpc": "2.0", "id": message.get("id"), "result": {}},
                headers={"Mcp-Session-Id": session} if session else None,
            )

        async def get(request: web.Request) -> web.StreamResponse:
            self.requests.append({"method": "GET", "headers": dict(request.headers)})
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            await response.write(b"id: 1\ndata: one\n\n")
            try:
                for _ in range(600):  # bounded: 60 s at most
                    if self.release.is_set():
                        self.release.clear()
                        await response.write(b"id: 2\ndata: two\n\n")
                    await asyncio.sleep(0.1)
                    if request.transport is None or request.transport.is_closing():
                        raise ConnectionResetError
            except (ConnectionResetError, asyncio.CancelledError):
                self.streams_closed += 1
                raise
            return response

        app = web.Application()
        app.router.add_post("/up/mcp", post)
        app.router.add_get("/up/mcp", get)
        return app


@pytest.fixture(scope="module")
def setup() -> Iterator[tuple[GatewayThread, list[Replica]]]:
    replicas = [Replica("a"), Replica("b")]
    with LoopThread() as upstream_loop, LoopThread() as gateway_loop:
        upstreams = [AiohttpUpstream(r.app(), upstream_loop) for r in replicas]
        gw = GatewayThread(
            {
                "services": [
                    {
                        "name": "raw",
                        "kind": "mcp",
                        "upstream": [f"{u.url}/up/mcp" for u in upstreams],
                        "read_timeout": 0.3,
                        # (its clients name gw.test on a loopback connection: allowed
                        # past the DNS-rebinding protection)
                        "mcp": {"keepalive_interval": 0.2, "allowed_hosts": ["gw.test"]},
                    },
                    {
                        # Clients use the upstream's own path: no target to rewrite, so
                        # a known session is routed by the data plane's session step.
                        "name": "same-path",
                        "kind": "mcp",
                        "upstream": [f"{u.url}/up/mcp" for u in upstreams],
                        "mcp": {"path": "/up/mcp", "allowed_hosts": ["gw.test"]},
                    },
                ]
            },
            gateway_loop,
        )
        yield gw, replicas
        for replica in replicas:
            replica.release.set()
        gw.stop(drain_timeout=0.5)
        for upstream in upstreams:
            upstream.close()


def post(
    client: RawClient, body: bytes, headers: str = "", path: bytes = b"/mcp"
) -> tuple[int, dict[str, str], bytes]:
    client.send(
        b"POST %b HTTP/1.1\r\nHost: gw.test\r\nContent-Type: application/json\r\n" % path
        + b"Accept: application/json, text/event-stream\r\n"
        + headers.encode()
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )
    return client.read_response()


def initialize(
    gw: GatewayThread, replicas: list[Replica], path: bytes = b"/mcp"
) -> tuple[str, Replica, str]:
    """A new session: (the gateway's id, the replica holding it, that replica's own id)."""
    counts = [r.sessions for r in replicas]
    with RawClient(gw.port) as client:
        status, headers, _ = post(client, INIT, path=path)
        assert status == 200
    (owner,) = [r for r, n in zip(replicas, counts, strict=True) if r.sessions > n]
    return headers["mcp-session-id"], owner, f"{owner.name}-{owner.sessions}"


def test_headers_reach_the_upstream_intact(setup: tuple[GatewayThread, list[Replica]]) -> None:
    gw, replicas = setup
    with RawClient(gw.port) as client:
        status, headers, _ = post(
            client,
            INIT,
            "MCP-Protocol-Version: 2026-07-28\r\nMcp-Method: initialize\r\nMcp-Param-Region: eu\r\n",
        )
        assert status == 200
        token = headers["mcp-session-id"]
    seen = [r for replica in replicas for r in replica.requests][-1]["headers"]
    assert seen["Accept"] == "application/json, text/event-stream"
    assert seen["MCP-Protocol-Version"] == "2026-07-28"
    assert seen["Mcp-Method"] == "initialize"
    assert seen["Mcp-Param-Region"] == "eu"
    assert not token.startswith(("a-", "b-"))  # sealed: the replica's own id never leaks


def test_each_session_reaches_its_replica_with_its_own_id(
    setup: tuple[GatewayThread, list[Replica]],
) -> None:
    gw, replicas = setup
    owners = set()
    # New sessions go by least request over two random draws: six sessions all on one
    # of two idle replicas happen one run in 32, so it takes up to 24 (one in 8 million).
    for made in range(24):
        if made >= 6 and owners == {"a", "b"}:
            break
        token, owner, upstream_id = initialize(gw, replicas)
        owners.add(owner.name)
        ping = b'{"jsonrpc":"2.0","id":2,"method":"ping"}'
        counts = [len(r.requests) for r in replicas]
        with RawClient(gw.port) as client:
            for _ in range(3):
                status, _, _ = post(client, ping, f"Mcp-Session-Id: {token}\r\n")
                assert status == 200
        assert [len(r.requests) - n for r, n in zip(replicas, counts, strict=True)] == [
            3 if r is owner else 0 for r in replicas
        ]
        assert owner.requests[-1]["headers"]["Mcp-Session-Id"] == upstream_id
    assert owners == {"a", "b"}  # new sessions are spread over the replicas


def test_interleaved_sessions_keep_their_replicas_and_ids(
    setup: tuple[GatewayThread, list[Replica]],
) -> None:
    """One connection, three sessions' calls in turn: each reaches its replica with its
    own upstream id and answers with its own gateway id (the session step remembers
    the last id it translated each way: a different one is never taken for it)."""
    gw, replicas = setup
    sessions = [initialize(gw, replicas, b"/up/mcp") for _ in range(3)]
    ping = b'{"jsonrpc":"2.0","id":2,"method":"ping"}'
    with RawClient(gw.port) as client:
        for token, owner, upstream_id in sessions * 3 + sessions[::-1]:
            status, headers, _ = post(client, ping, f"Mcp-Session-Id: {token}\r\n", path=b"/up/mcp")
            assert status == 200
            assert owner.requests[-1]["headers"]["Mcp-Session-Id"] == upstream_id
            assert headers["mcp-session-id"] == token


def test_last_event_id_reaches_the_streams_replica(
    setup: tuple[GatewayThread, list[Replica]],
) -> None:
    gw, replicas = setup
    token, owner, upstream_id = initialize(gw, replicas)
    with RawClient(gw.port) as client:
        client.send(
            b"GET /mcp HTTP/1.1\r\nHost: gw.test\r\nAccept: text/event-stream\r\n"
            + f"Mcp-Session-Id: {token}\r\nLast-Event-ID: 41\r\n\r\n".encode()
        )
        head = client.read_until(b"data: one\n\n")
        assert b"X-Accel-Buffering: no" in head
    got = owner.requests[-1]
    assert got["method"] == "GET"
    assert got["headers"]["Last-Event-ID"] == "41"
    assert got["headers"]["Mcp-Session-Id"] == upstream_id


def test_event_stream_is_unbuffered_kept_alive_and_outlives_the_read_timeout(
    setup: tuple[GatewayThread, list[Replica]],
) -> None:
    gw, replicas = setup
    token, owner, _ = initialize(gw, replicas)
    with RawClient(gw.port, timeout=10) as client:
        client.send(
            b"GET /mcp HTTP/1.1\r\nHost: gw.test\r\nAccept: text/event-stream\r\n"
            + f"Mcp-Session-Id: {token}\r\n\r\n".encode()
        )
        # The first event arrives while the upstream still holds the stream open.
        client.read_until(b"data: one\n\n")
        # Idle for longer than the 0.3 s read timeout: comments, then the next event.
        seen = client.read_until(b": keep-alive\n\n")
        seen += client.read_until(b": keep-alive\n\n")
        owner.release.set()
        seen += client.read_until(b"data: two\n\n")
        assert b"504" not in seen


def test_a_client_leaving_mid_stream_closes_the_upstream_stream(
    setup: tuple[GatewayThread, list[Replica]],
) -> None:
    gw, replicas = setup
    token, _, _ = initialize(gw, replicas)
    before = sum(r.streams_closed for r in replicas)
    client = RawClient(gw.port)
    client.send(
        b"GET /mcp HTTP/1.1\r\nHost: gw.test\r\nAccept: text/event-stream\r\n"
        + f"Mcp-Session-Id: {token}\r\n\r\n".encode()
    )
    client.read_until(b"data: one\n\n")
    client.close()
    assert wait_until(lambda: sum(r.streams_closed for r in replicas) > before, timeout=10)


def test_batches_only_where_the_revision_has_them(
    setup: tuple[GatewayThread, list[Replica]],
) -> None:
    gw, _ = setup
    batch = b'[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"x"}]'
    with RawClient(gw.port) as client:
        # No MCP-Protocol-Version: 2025-03-26, which has batches.
        assert post(client, batch)[0] == 200
        # Back and forth: the step remembers the last version it passed, and a
        # version of the same length is never taken for it.
        for _ in range(2):
            assert post(client, batch, "MCP-Protocol-Version: 2025-03-26\r\n")[0] == 200
            status, _, body = post(client, batch, "MCP-Protocol-Version: 2025-06-18\r\n")
            assert status == 400 and json.loads(body)["error"]["code"] == -32600
