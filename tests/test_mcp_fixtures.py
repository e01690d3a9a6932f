"""The MCP test upstreams and SDK client helpers, straight to the servers (no gateway).

Beyond checking the fixtures, these pin down what the SDK client (mcp 2.3.0)
puts on the wire, which a gateway in between has to carry:

- handshake revisions (2024-11-05 ... 2025-11-25): `initialize` POST without
  `Mcp-Session-Id`/`MCP-Protocol-Version`; every later request (POST, the GET
  stream, DELETE) carries both; `Accept: application/json, text/event-stream`
  on all of them, the GET stream included;
- 2026-07-28: POSTs only, each with `MCP-Protocol-Version`, `Mcp-Method`
  (and `Mcp-Name` for tools/call), never a session id;
- resumption: `GET` with `Last-Event-ID` after a response stream ends early;
- 404 for a session: the call fails with the body's JSON-RPC error, no re-initialize;
- a refused connection: the transport's task group fails (ExceptionGroup
  with httpx2.ConnectError out of the `async with`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import anyio
import httpx2
import mcp_fixtures
import pytest
from mcp.client.subscriptions import listen
from mcp.shared.exceptions import MCPError
from mcp_fixtures import (
    PROTOCOL_VERSIONS,
    EverythingServer,
    Exchange,
    McpConn,
    ReplicaSet,
    big_text,
    mcp_client,
    mcp_replicas,
    mcp_sse_client,
    text_of,
)
from mcp_types import INVALID_REQUEST
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

# The fixtures, by assignment (pytest finds them in the module); a root
# conftest.py could load them all with `pytest_plugins = ["mcp_fixtures"]`.
mcp_upstreams = mcp_fixtures.mcp_upstreams
server_everything = mcp_fixtures.server_everything

pytestmark = pytest.mark.anyio

TOOLS = {"echo", "add", "whoami", "slow", "notify_tools_changed", "big"}
ACCEPT = "application/json, text/event-stream"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def replicas() -> Iterator[ReplicaSet]:
    """Two replicas shared by the tests that leave them running."""
    with mcp_replicas(2, retry_ms=20) as started:
        yield started


def posts(conn: McpConn) -> list[Exchange]:
    return [e for e in conn.exchanges if e.method == "POST"]


async def post_with_session(url: str, session_id: str) -> int:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"mcp-session-id": session_id, "accept": ACCEPT}
    async with httpx2.AsyncClient() as client:
        return (await client.post(url, json=body, headers=headers)).status_code


@pytest.mark.parametrize("version", PROTOCOL_VERSIONS)
async def test_a_session_at_each_revision(replicas: ReplicaSet, version: str) -> None:
    modern = version in MODERN_PROTOCOL_VERSIONS
    url = replicas[0].url
    async with mcp_client(url, version, log_level="info") as conn:
        assert conn.protocol_version == version
        assert (conn.session_id is None) is modern

        listed = await conn.session.list_tools()
        assert {t.name for t in listed.tools} >= TOOLS
        assert await conn.text("echo", text="hi") == "hi"
        assert (await conn.call("add", {"a": 2, "b": 3})).structured_content == {"result": 5}
        me = await conn.whoami()
        assert me["replica"] == "r0"
        assert me["session_id"] == conn.session_id
        assert me["protocol_version"] == version

        result = await conn.call("slow", {"steps": 3, "delay_ms": 5}, progress=True)
        assert text_of(result) == "done 3"
        assert conn.progress == [(float(i), 3.0, f"step {i}") for i in (1, 2, 3)]
        assert conn.methods() == ["notifications/progress", "notifications/message"] * 3

        if modern:
            # No session stream at 2026-07-28: list changes go to listeners.
            async with listen(conn.session, tools_list_changed=True):
                added = await conn.text("notify_tools_changed")
                await conn.wait_for("notifications/tools/list_changed")
        else:
            added = await conn.text("notify_tools_changed")  # ... on the GET stream
            await conn.wait_for("notifications/tools/list_changed")
        assert added in {t.name for t in (await conn.session.list_tools()).tools}

        resource = await conn.session.read_resource("test://echo/x")
        assert resource.contents[0].text == "r0:x"  # type: ignore[union-attr]
        prompt = await conn.session.get_prompt("greet", {"name": "ann"})
        assert prompt.messages[0].content.text == "Hello ann, from replica r0."  # type: ignore[union-attr]

    for exchange in conn.exchanges:
        assert exchange.request_headers["accept"] == ACCEPT
    if modern:
        assert {e.method for e in conn.exchanges} == {"POST"}
        for exchange in conn.exchanges:
            assert exchange.request_headers["mcp-protocol-version"] == version
            assert "mcp-session-id" not in exchange.request_headers
            assert "mcp-method" in exchange.request_headers
        assert conn.exchanges[0].request_headers["mcp-method"] == "server/discover"
        return

    opening, *later = conn.exchanges
    assert "mcp-session-id" not in opening.request_headers
    assert "mcp-protocol-version" not in opening.request_headers
    assert opening.response_headers["mcp-session-id"] == conn.session_id
    for exchange in later:
        assert exchange.request_headers["mcp-session-id"] == conn.session_id
        assert exchange.request_headers["mcp-protocol-version"] == version
    get = next(e for e in later if e.method == "GET")
    assert get.response_headers["content-type"] == "text/event-stream"
    assert (later[-1].method, later[-1].status) == ("DELETE", 200)
    assert conn.session_id is not None
    assert await post_with_session(url, conn.session_id) == 404


async def test_the_sdk_default_picks_2026_against_an_sdk_server(replicas: ReplicaSet) -> None:
    async with mcp_client(replicas[1].url, headers={"x-test": "1"}) as conn:
        assert conn.protocol_version == "2026-07-28"
        assert (await conn.whoami())["replica"] == "r1"
    assert conn.exchanges[0].request_headers["mcp-method"] == "server/discover"
    assert {e.request_headers["x-test"] for e in conn.exchanges} == {"1"}


async def test_an_sdk_server_on_loopback_refuses_other_hosts(replicas: ReplicaSet) -> None:
    # DNS rebinding protection: on by default for a 127.0.0.1 bind (see any_host).
    # The initialize fails; the MCPError leaves the SDK's task groups wrapped.
    with pytest.RaisesGroup(
        pytest.RaisesExc(MCPError, match="Server returned an error response"),
        flatten_subgroups=True,
    ):
        async with mcp_client(replicas[1].url, "2025-11-25", headers={"host": "api.test"}):
            pass
    async with httpx2.AsyncClient() as client:
        answer = await client.post(replicas[1].url, headers={"host": "api.test"}, json={})
    assert (answer.status_code, answer.text) == (421, "Invalid Host header")


async def test_a_closed_response_stream_resumes_with_last_event_id(replicas: ReplicaSet) -> None:
    async with mcp_client(replicas[0].url, "2025-11-25") as conn:
        arguments = {"steps": 4, "delay_ms": 10, "close_stream_after": 2}
        result = await conn.call("slow", arguments, progress=True)
        assert text_of(result) == "done 4"
        assert [p[0] for p in conn.progress] == [1.0, 2.0, 3.0, 4.0]
    resumed = [e for e in conn.exchanges if "last-event-id" in e.request_headers]
    assert len(resumed) == 1
    assert resumed[0].method == "GET"
    assert resumed[0].request_headers["last-event-id"].startswith("r0.")
    assert resumed[0].status == 200


async def test_big_answers_and_the_sdk_sse_event_limit(replicas: ReplicaSet) -> None:
    async with mcp_client(replicas[0].url, "2025-11-25") as conn:
        assert await conn.text("big", n=300_000) == big_text(300_000)
        # One SSE event over 1 MiB: the SDK gives up on the request.
        with pytest.raises(MCPError, match="exceeded the 1048576 byte limit"):
            await conn.call("big", {"n": 1_100_000})
    async with mcp_client(replicas[0].url, "2025-11-25", max_sse_event_size=None) as conn:
        assert await conn.text("big", n=1_100_000) == big_text(1_100_000)


async def test_replicas_keep_their_sessions_and_can_be_lost(
    mcp_upstreams: Callable[..., ReplicaSet],
) -> None:
    pair = mcp_upstreams(2, names=["a", "b"])
    a, b = pair.by_name("a"), pair.by_name("b")
    async with mcp_client(a.url, "2025-11-25") as on_a, mcp_client(b.url, "2025-11-25") as on_b:
        first = await on_a.whoami()
        assert first["replica"] == "a"
        assert (await on_b.whoami())["replica"] == "b"
        assert await on_a.whoami() == first

        # A restart forgets the sessions: 404, surfaced as the body's error.
        a.restart()
        with pytest.raises(MCPError) as lost:
            await on_a.call("echo", {"text": "x"})
        assert (lost.value.error.code, lost.value.error.message) == (
            INVALID_REQUEST,
            "Session not found",
        )
        assert on_a.exchanges[-1].status == 404
        assert (await on_b.whoami())["replica"] == "b"

    async with mcp_client(a.url, "2025-11-25") as again:
        assert (await again.whoami())["session_id"] != first["session_id"]

    # A crash: the refused connection fails the SDK transport's task group.
    # The call in flight is cancelled (or fails "Connection closed") and the
    # `async with` ends in an ExceptionGroup holding httpx2.ConnectError.
    with pytest.raises(ExceptionGroup) as crashed:
        async with mcp_client(b.url, "2025-11-25") as on_b:
            await on_b.whoami()
            b.kill()
            with anyio.fail_after(10):
                await on_b.call("echo", {"text": "x"})
    # Not RaisesGroup: a call that failed "Connection closed" (not cancelled) joins the group.
    assert crashed.value.subgroup(httpx2.ConnectError) is not None


@pytest.mark.parametrize(
    "mode",
    [
        {"stateless": True},
        {"json_response": True, "any_host": True},
        {"stateless": True, "json_response": True},
    ],
    ids=["stateless", "json-any-host", "stateless-json"],
)
async def test_stateless_and_json_modes(
    mcp_upstreams: Callable[..., ReplicaSet], mode: dict[str, bool]
) -> None:
    url = mcp_upstreams(1, **mode)[0].url
    headers = {"host": "api.test"} if mode.get("any_host") else None
    async with mcp_client(url, "2025-06-18", headers=headers) as conn:
        me = await conn.whoami()
        result = await conn.call("slow", {"steps": 2, "delay_ms": 5}, progress=True)
        assert text_of(result) == "done 2"
    if mode.get("stateless"):
        assert conn.session_id is None
        assert me["session_id"] is None
        assert {e.method for e in conn.exchanges} == {"POST"}
    if mode.get("json_response"):
        # A JSON body carries only the response: the server drops the rest.
        assert conn.progress == []
        answered = [e for e in posts(conn) if e.status == 200]
        assert {e.response_headers["content-type"] for e in answered} == {"application/json"}
    else:
        assert len(conn.progress) == 2


async def test_the_legacy_sse_transport(mcp_upstreams: Callable[..., ReplicaSet]) -> None:
    url = mcp_upstreams(1, legacy_sse=True)[0].url
    async with mcp_sse_client(url) as conn:
        assert conn.protocol_version == "2024-11-05"
        me = await conn.whoami()
        assert me["session_id"] == conn.session_id is not None
        result = await conn.call("slow", {"steps": 2, "delay_ms": 5}, progress=True)
        assert text_of(result) == "done 2"
        assert len(conn.progress) == 2
        await conn.text("notify_tools_changed")
        await conn.wait_for("notifications/tools/list_changed")
    stream, *messages = conn.exchanges
    assert (stream.method, stream.url, stream.status) == ("GET", url, 200)
    for exchange in messages:
        assert exchange.method == "POST"
        assert exchange.url.endswith(f"/messages/?session_id={conn.session_id}")
        assert exchange.status == 202  # answers come on the GET stream


async def test_server_everything(server_everything: EverythingServer) -> None:
    async with mcp_client(server_everything.url, "2025-11-25") as conn:
        listed = await conn.session.list_tools()
        assert {"echo", "get-sum"} <= {t.name for t in listed.tools}
        assert await conn.text("echo", message="hi") == "Echo: hi"
        assert await conn.text("get-sum", a=2, b=3) == "The sum of 2 and 3 is 5."
    # The SDK default probes server/discover first: a TypeScript SDK 1.x
    # server answers 400 and the client falls back to initialize.
    async with mcp_client(server_everything.url) as conn:
        assert conn.protocol_version == "2025-11-25"
        assert conn.session_id is not None
    assert [e.status for e in conn.exchanges[:2]] == [400, 200]
