"""MCP servers behind the gateway (service kind `mcp`): the official SDK, real replicas.

Two `mcp` SDK server processes are one service's replicas; the SDK client
talks to the gateway. Sessions must stick to the replica that made them,
for every revision the SDK speaks.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from mcp_fixtures import PROTOCOL_VERSIONS, ReplicaSet, mcp_client, mcp_replicas, mcp_sse_client
from servers import GatewayThread, LoopThread, RawClient

pytestmark = pytest.mark.anyio

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"},
    },
}
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def replicas() -> Iterator[ReplicaSet]:
    with mcp_replicas(2) as started:
        yield started


@pytest.fixture(scope="module")
def gateway(replicas: ReplicaSet) -> Iterator[GatewayThread]:
    with LoopThread() as loop_thread:
        gw = GatewayThread(
            {
                "services": [
                    {
                        "name": "tools",
                        "kind": "mcp",
                        "upstream": replicas.urls,
                        "mcp": {"allowed_origins": ["https://app.example.com"]},
                    },
                    {
                        "name": "other",
                        "kind": "mcp",
                        "upstream": replicas.urls[0],
                        "mcp": {"path": "/other/mcp"},
                    },
                ]
            },
            loop_thread,
        )
        yield gw
        gw.stop()


def url(gw: GatewayThread, path: str = "/mcp") -> str:
    return f"http://127.0.0.1:{gw.port}{path}"


async def open_session(gw: GatewayThread, path: str = "/mcp") -> str:
    async with httpx2.AsyncClient() as client:
        response = await client.post(url(gw, path), json=INIT, headers=ACCEPT)
        assert response.status_code == 200, response.text
        return response.headers["mcp-session-id"]


# -- the SDK, end to end ------------------------------------------------------------


@pytest.mark.parametrize("version", PROTOCOL_VERSIONS)
async def test_sdk_session_through_the_gateway(gateway: GatewayThread, version: str) -> None:
    async with mcp_client(url(gateway), version) as conn:
        assert conn.protocol_version == version
        tools = await conn.session.list_tools()
        assert {"echo", "add", "whoami", "slow"} <= {t.name for t in tools.tools}
        assert await conn.text("echo", text="héllo") == "héllo"
        result = await conn.call("slow", {"steps": 3, "delay_ms": 10}, progress=True)
        assert not result.is_error
        first = await conn.whoami()
        if version == "2026-07-28":
            # Stateless: no session to keep, each request goes to any replica.
            assert conn.session_id is None
            # (least request draws at random between idle replicas: up to 20 calls)
            replicas: set[str] = set()
            for _ in range(20):
                replicas.add((await conn.whoami())["replica"])
                if replicas == {"r0", "r1"}:
                    break
            assert replicas == {"r0", "r1"}
            return
        for _ in range(5):
            assert await conn.whoami() == first  # the same replica, the same session
        assert conn.session_id is not None
        assert conn.session_id != first.get("session_id")  # the client never sees the upstream's
        await conn.call("notify_tools_changed")
        await conn.wait_for("notifications/tools/list_changed")


async def test_sessions_spread_over_replicas_and_stick(gateway: GatewayThread) -> None:
    # Least request draws at random between idle replicas: new sessions until both
    # replicas have had one (bounded; all 20 on one replica: 2 in a million).
    seen: set[str] = set()
    for _ in range(20):
        if seen == {"r0", "r1"}:
            break
        async with mcp_client(url(gateway), "2025-11-25") as conn:
            who = await conn.whoami()
            seen.add(who["replica"])
            for _ in range(3):
                assert (await conn.whoami())["replica"] == who["replica"]
    assert seen == {"r0", "r1"}


async def test_legacy_revisions_keep_their_headers(gateway: GatewayThread) -> None:
    async with mcp_client(url(gateway), "2025-06-18") as conn:
        await conn.text("echo", text="x")
        posts = [e for e in conn.exchanges if e.method == "POST"]
        assert posts[-1].request_headers.get("mcp-protocol-version") == "2025-06-18"
        assert posts[-1].response_headers.get("x-accel-buffering") == "no"


# -- session ids -------------------------------------------------------------------


def tampered(token: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[-1] ^= 1
    return base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")


@pytest.mark.parametrize(
    "make",
    [
        tampered,
        lambda token: token[:-4],
        lambda token: "not-a-session",
        lambda token: base64.urlsafe_b64encode(b"\0" * 60).decode(),
    ],
    ids=["flipped-bit", "cut", "garbage", "zeros"],
)
async def test_forged_or_tampered_session_ids_get_404(gateway: GatewayThread, make: Any) -> None:
    token = await open_session(gateway)
    async with httpx2.AsyncClient() as client:
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        headers = {**ACCEPT, "Mcp-Session-Id": make(token), "MCP-Protocol-Version": "2025-06-18"}
        response = await client.post(url(gateway), json=ping, headers=headers)
        assert response.status_code == 404
        assert response.json()["error"]["message"] == "session not found"
        # The genuine id still works.
        headers["Mcp-Session-Id"] = token
        response = await client.post(url(gateway), json=ping, headers=headers)
        assert response.status_code == 200


async def test_a_session_keeps_its_id_and_its_replica(gateway: GatewayThread) -> None:
    # Its requests after the first are decided in the data plane (McpSessionStep's fast
    # path): every answer names the id the client was given, an event stream or not,
    # and reaches the replica that made the session.
    token = await open_session(gateway)
    headers = {**ACCEPT, "Mcp-Session-Id": token, "MCP-Protocol-Version": "2025-06-18"}
    whoami = {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "whoami"}}
    seen = set()
    async with httpx2.AsyncClient() as client:
        for i in range(3):
            response = await client.post(url(gateway), json={**whoami, "id": i}, headers=headers)
            assert response.status_code == 200, response.text
            assert response.headers["mcp-session-id"] == token
            assert response.headers["x-accel-buffering"] == "no"
            data = [line for line in response.text.splitlines() if line.startswith("data:")]
            result = json.loads(data[-1][5:])["result"]["structuredContent"]
            seen.add((result["replica"], result["session_id"]))
    assert len(seen) == 1  # one replica, one upstream session


async def test_a_session_id_of_another_service_is_refused(gateway: GatewayThread) -> None:
    token = await open_session(gateway, "/other/mcp")
    async with httpx2.AsyncClient() as client:
        headers = {**ACCEPT, "Mcp-Session-Id": token, "MCP-Protocol-Version": "2025-06-18"}
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        response = await client.post(url(gateway), json=ping, headers=headers)
        assert response.status_code == 404


async def test_delete_ends_the_session_upstream(gateway: GatewayThread) -> None:
    token = await open_session(gateway)
    headers = {**ACCEPT, "Mcp-Session-Id": token, "MCP-Protocol-Version": "2025-06-18"}
    async with httpx2.AsyncClient() as client:
        response = await client.delete(url(gateway), headers=headers)
        assert response.status_code == 200
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        response = await client.post(url(gateway), json=ping, headers=headers)
        assert response.status_code == 404  # the replica forgot it


# -- Origin, Accept, envelopes -----------------------------------------------------


def refused_by_gateway(response: httpx2.Response) -> bool:
    return (
        response.status_code == 403
        and response.headers.get("content-type") == ("application/json")
        and response.json()["error"] == {"code": -32600, "message": "this Origin is not allowed"}
    )


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://app.example.com", True),
        ("https://APP.example.com/", True),
        ("https://evil.example.com", False),
        ("null", False),
        ("http://127.0.0.1:1", False),
    ],
)
async def test_origin_allow_list(gateway: GatewayThread, origin: str, allowed: bool) -> None:
    async with httpx2.AsyncClient() as client:
        response = await client.post(url(gateway), json=INIT, headers={**ACCEPT, "Origin": origin})
        # An allowed Origin goes on, intact: the SDK server applies its own
        # DNS-rebinding check to it too (and refuses it in plain text).
        assert refused_by_gateway(response) is not allowed
        if allowed:
            assert response.status_code == 200 or response.text == "Invalid Origin header"


async def test_same_origin_passes_without_a_list(gateway: GatewayThread) -> None:
    async with httpx2.AsyncClient() as client:
        origin = f"http://127.0.0.1:{gateway.port}"
        response = await client.post(
            url(gateway, "/other/mcp"), json=INIT, headers={**ACCEPT, "Origin": origin}
        )
        assert not refused_by_gateway(response)
        response = await client.post(
            url(gateway, "/other/mcp"), json=INIT, headers={**ACCEPT, "Origin": "http://x.test"}
        )
        assert refused_by_gateway(response)


async def test_missing_accept_reaches_the_upstream_which_refuses(gateway: GatewayThread) -> None:
    async with httpx2.AsyncClient() as client:
        response = await client.post(
            url(gateway), json=INIT, headers={"Content-Type": "application/json", "Accept": ""}
        )
        assert response.status_code == 406  # the SDK server's answer, passed on


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{", -32700),
        (b"\xff\xfe", -32700),
        (b'{"jsonrpc":"1.0","id":1,"method":"ping"}', -32600),
        (b'{"jsonrpc":"2.0","id":1.5,"method":"ping"}', -32600),
        (b'{"jsonrpc":"2.0","id":null,"method":"ping"}', -32600),
        (b'{"jsonrpc":"2.0","id":1,"method":7}', -32600),
        (b'{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"x"}}', -32600),
        (b"[]", -32600),
        (b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', -32600),  # no batches at 2025-06-18
        (b"42", -32600),
    ],
)
async def test_malformed_json_rpc_is_400(gateway: GatewayThread, body: bytes, code: int) -> None:
    token = await open_session(gateway)
    headers = {**ACCEPT, "Mcp-Session-Id": token, "MCP-Protocol-Version": "2025-06-18"}
    async with httpx2.AsyncClient() as client:
        response = await client.post(url(gateway), content=body, headers=headers)
        assert response.status_code == 400
        answer = response.json()
        assert answer["jsonrpc"] == "2.0"
        assert answer["error"]["code"] == code
        # The connection and the session are still good.
        ping = {"jsonrpc": "2.0", "id": 9, "method": "ping"}
        response = await client.post(url(gateway), json=ping, headers=headers)
        assert response.status_code == 200


async def test_routing_headers_must_match_the_body_at_2026(gateway: GatewayThread) -> None:
    body = {"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {}}
    headers = {**ACCEPT, "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call"}
    async with httpx2.AsyncClient() as client:
        response = await client.post(url(gateway), json=body, headers=headers)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == -32020
        assert response.json()["id"] == 3


# -- replicas going away, and the legacy transport ---------------------------------


async def test_a_session_whose_replica_died_gets_404() -> None:
    with mcp_replicas(2, names=["a", "b"]) as reps, LoopThread() as loop_thread:
        gw = GatewayThread(
            {
                "services": [{"name": "t", "kind": "mcp", "upstream": reps.urls}],
                "pool": {"connect_timeout": 2},
            },
            loop_thread,
        )
        try:
            async with mcp_client(url(gw), "2025-11-25") as conn:
                who = await conn.whoami()
                reps.by_name(who["replica"]).kill()
                headers = {
                    **ACCEPT,
                    "Mcp-Session-Id": conn.session_id or "",
                    "MCP-Protocol-Version": "2025-11-25",
                }
                async with httpx2.AsyncClient() as client:
                    ping = {"jsonrpc": "2.0", "id": 5, "method": "ping"}
                    response = await client.post(url(gw), json=ping, headers=headers)
                    assert response.status_code == 404
            # A new session lands on the replica still alive.
            async with mcp_client(url(gw), "2025-11-25") as conn:
                assert (await conn.whoami())["replica"] != who["replica"]
        finally:
            gw.stop()


async def test_legacy_http_sse_transport() -> None:
    with mcp_replicas(2, legacy_sse=True) as reps, LoopThread() as loop_thread:
        sse_urls = [u.rsplit("/", 1)[0] + "/sse" for u in reps.urls]
        gw = GatewayThread(
            {
                "services": [
                    {
                        "name": "legacy",
                        "kind": "mcp",
                        "upstream": sse_urls,
                        "mcp": {"transport": "sse", "path": "/legacy/sse"},
                    }
                ]
            },
            loop_thread,
        )
        try:
            for _ in range(2):
                async with mcp_sse_client(url(gw, "/legacy/sse")) as conn:
                    assert await conn.text("echo", text="old") == "old"
                    who = await conn.whoami()
                    assert (await conn.whoami()) == who
        finally:
            gw.stop()


def test_a_client_leaving_an_event_stream_ends_it_at_once() -> None:
    """A client that closes its side of an open event stream ends the stream then, not
    at the next event the upstream sends (a stop would otherwise wait out its drain)."""
    with mcp_replicas(1, legacy_sse=True) as reps, LoopThread() as loop_thread:
        sse_url = reps.urls[0].rsplit("/", 1)[0] + "/sse"
        gw = GatewayThread(
            {
                "services": [
                    {
                        "name": "legacy",
                        "kind": "mcp",
                        "upstream": [sse_url],
                        "mcp": {"transport": "sse", "path": "/legacy/sse"},
                    }
                ]
            },
            loop_thread,
        )
        try:
            client = RawClient(gw.port)
            client.send(
                b"GET /legacy/sse HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                b"Accept: text/event-stream\r\n\r\n" % gw.port
            )
            assert b"event: endpoint" in client.read_until(b"event: endpoint")
            connections = gw.gateway._ctx.connections
            assert len(connections) == 1
            client.sock.shutdown(socket.SHUT_WR)  # what a client's close sends first
            gone = threading.Event()

            async def wait_gone() -> None:
                for _ in range(500):  # bounded: 5 s; the keep-alive comment comes later
                    if not connections:
                        gone.set()
                        return
                    await asyncio.sleep(0.01)

            loop_thread.run(wait_gone())
            assert gone.is_set(), "the stream outlived its client"
            client.sock.close()
        finally:
            gw.stop()
