"""Edge cases of the MCP side a demanding client finds: JSON-RPC ids past 64 bits on a
generated endpoint, and the proxy's session cache after the sessions' DELETE, each
through a real gateway on loopback (an aiohttp API upstream, SDK replicas).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx2
import pytest
from aiohttp import web
from mcp_fixtures import ReplicaSet, mcp_client, mcp_replicas
from servers import AiohttpUpstream, GatewayThread, LoopThread

from runmcp_fast.mcp.loopback import MAX_RESPONSE

pytestmark = pytest.mark.anyio

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Items", "version": "1"},
    "servers": [{"url": "/v1"}],
    "paths": {
        "/items": {"get": {"operationId": "listItems"}},
        "/export": {"get": {"operationId": "exportAll"}},
    },
}
HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def replicas() -> Iterator[ReplicaSet]:
    with mcp_replicas(1) as started:
        yield started


STATELESS_METHODS: list[str] = []  # what the stateless member was asked, in order


async def stateless_member(request: web.Request) -> web.Response:
    """A stateless Streamable HTTP server (JSON answers, never an Mcp-Session-Id), as the
    SDK's `stateless_http=True` and many hosted servers are."""
    message = await request.json()
    method = message.get("method")
    STATELESS_METHODS.append(method)
    if "id" not in message:
        return web.Response(status=202)
    result: dict[str, Any] = {}
    if method == "initialize":
        result = {
            "protocolVersion": message["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "stateless", "version": "1"},
        }
    elif method == "tools/list":
        result = {"tools": [{"name": "hello", "inputSchema": {"type": "object"}}]}
    elif method == "tools/call":
        result = {"content": [{"type": "text", "text": "hello"}], "isError": False}
    return web.json_response({"jsonrpc": "2.0", "id": message["id"], "result": result})


async def long_id_server(request: web.Request) -> web.Response:
    """A server whose session ids are long (state carried in a signed token): as long as
    its `initialize` asks (`params.idLength`)."""
    message = await request.json()
    if "id" not in message:
        return web.Response(status=202)
    if message["method"] == "initialize":
        session = "s" * message["params"]["idLength"]
        result = {"protocolVersion": "2025-11-25", "capabilities": {}, "serverInfo": {}}
    else:
        session = request.headers.get("Mcp-Session-Id", "")
        if not session.startswith("s"):
            return web.json_response({"jsonrpc": "2.0", "id": None, "error": {}}, status=404)
        result = {"length": len(session)}
    answer = {"jsonrpc": "2.0", "id": message["id"], "result": result}
    return web.json_response(answer, headers={"Mcp-Session-Id": session})


async def shouting_server(request: web.Request) -> web.Response:
    """A server that writes its header names (and its media type) in capitals, answers
    in event streams, and sets X-Accel-Buffering itself when asked (`params.accel`)."""
    message = await request.json()
    if "id" not in message:
        return web.Response(status=202)
    session = "shout-1" if message["method"] == "initialize" else request.headers["Mcp-Session-Id"]
    answer = {"jsonrpc": "2.0", "id": message["id"], "result": {"session": session}}
    headers = {"MCP-SESSION-ID": session, "CONTENT-TYPE": "TEXT/EVENT-STREAM"}
    if message.get("params", {}).get("accel"):
        headers["X-ACCEL-BUFFERING"] = "yes"
    body = f"event: message\ndata: {json.dumps(answer)}\n\n"
    return web.Response(body=body.encode(), headers=headers)


@pytest.fixture(scope="module")
def gw(replicas: ReplicaSet) -> Iterator[GatewayThread]:
    async def handle(request: web.Request) -> web.Response:
        if request.path == "/v1/export":  # more than a tool result may hold
            return web.Response(body=b"x" * (MAX_RESPONSE + 1), content_type="text/plain")
        return web.json_response([{"id": 1}])

    app = web.Application()
    app.router.add_route("POST", "/stateless/mcp", stateless_member)
    app.router.add_route("POST", "/long/mcp", long_id_server)
    app.router.add_route("POST", "/shout/mcp", shouting_server)
    app.router.add_route("*", "/{tail:.*}", handle)
    with LoopThread() as loop_thread:
        upstream = AiohttpUpstream(app, loop_thread)
        gateway = GatewayThread(
            {
                "services": [
                    {"name": "items", "upstream": upstream.url, "openapi": SPEC},
                    {
                        "name": "items2",
                        "upstream": upstream.url,
                        "openapi": SPEC,
                        "host": "items2.test",
                    },
                    {"name": "remote", "kind": "mcp", "upstream": replicas.urls[0]},
                    {
                        "name": "long",
                        "kind": "mcp",
                        "upstream": upstream.url + "/long/mcp",
                        "mcp": {"path": "/long/mcp"},
                    },
                    {
                        "name": "shout",
                        "kind": "mcp",
                        "upstream": upstream.url + "/shout/mcp",
                        "mcp": {"path": "/shout/mcp"},
                    },
                    {
                        "name": "stateless",
                        "kind": "mcp",
                        "upstream": upstream.url + "/stateless/mcp",
                        "mcp": {"path": "/stateless/mcp"},
                    },
                ],
                "mcp_servers": [
                    {
                        "name": "fed",
                        "path": "/fed/mcp",
                        "members": [{"service": "stateless", "prefix": "s_"}],
                    },
                    {
                        "name": "clash",
                        "path": "/clash/mcp",
                        "members": [
                            {"service": "items", "prefix": "i_"},
                            {"service": "items2", "prefix": "i_"},
                            {"service": "stateless", "prefix": "i_"},
                        ],
                    },
                ],
            },
            loop_thread,
        )
        yield gateway
        gateway.stop()
        upstream.close()


def url(gw: GatewayThread, path: str) -> str:
    return f"http://127.0.0.1:{gw.port}{path}"


@pytest.mark.parametrize("request_id", [2**64 + 5, -(2**63) - 1, 10**40])
def test_ids_past_64_bits_are_answered_with_the_same_id(gw: GatewayThread, request_id: int) -> None:
    """JSON-RPC puts no bound on an integer id (the SDK's RequestId is a Python int), and
    the envelope check takes any size; every answer must echo it. tools/list answered
    500 (a Python TypeError from orjson, "Integer exceeds 64-bit range")."""
    for method in ("tools/list", "ping", "tools/call"):
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if method == "tools/call":
            message["params"] = {"name": "listItems", "arguments": {}}
        response = httpx2.post(
            url(gw, "/v1/mcp"), content=json.dumps(message).encode(), headers=HEADERS
        )
        assert response.status_code == 200, (method, response.text)
        answer = json.loads(response.content)  # Python's json reads any integer
        assert answer["id"] == request_id and "result" in answer, (method, answer)
    # And inside a 2025-03-26 batch, next to a small id.
    batch = [
        {"jsonrpc": "2.0", "id": request_id, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
    ]
    response = httpx2.post(
        url(gw, "/v1/mcp"),
        content=json.dumps(batch).encode(),
        headers={**HEADERS, "MCP-Protocol-Version": "2025-03-26"},
    )
    assert response.status_code == 200, response.text
    assert [a["id"] for a in json.loads(response.content)] == [request_id, 1]


async def test_the_proxy_forgets_each_session_its_client_deletes(gw: GatewayThread) -> None:
    """A session ended by DELETE leaves nothing in the service's session tables (the
    opened ids, the sealed ones). The request's fast path (a session already opened,
    done in C) never showed the DELETE to the router, which forgets it, and the
    replica's answer to DELETE (the SDK repeats Mcp-Session-Id) was sealed again: the
    tables kept one entry per session ever made, up to their 65,536 limit. Two
    sessions interleave, so the DELETE's answer is not the one the C step saw last."""
    (service,) = [s for s in gw.gateway.snapshot.services if s.label == "remote"]
    opened, sealed = service.codec.tables()
    for n in range(2):
        async with mcp_client(url(gw, "/mcp"), "2025-11-25") as first:
            async with mcp_client(url(gw, "/mcp"), "2025-11-25") as second:
                for _ in range(2):  # later calls: known sessions, on the fast path
                    assert await first.text("echo", text=f"a{n}") == f"a{n}"
                    assert await second.text("echo", text=f"b{n}") == f"b{n}"
                assert await first.text("echo", text="last") == "last"  # (before b's DELETE)
                assert first.session_id is not None and second.session_id is not None
                assert {first.session_id.encode(), second.session_id.encode()} <= set(opened)
                assert len(opened) == len(sealed) == 2
            # The SDK client sent DELETE on leaving (and read its answer).
            assert [e.status for e in second.exchanges if e.method == "DELETE"] == [200]
            assert set(opened) == {first.session_id.encode()}, n
            assert len(sealed) == 1
            assert await first.text("echo", text="still") == "still"
        assert len(opened) == 0 and len(sealed) == 0, (n, len(opened), len(sealed))


async def test_a_stateless_member_is_initialized_once(gw: GatewayThread) -> None:
    """A federation's MCP member that gives no Mcp-Session-Id (stateless) was sent
    `initialize` and `notifications/initialized` again before every request: the
    federation took "no session id" for "not initialized", tripling the member's load."""
    async with mcp_client(url(gw, "/fed/mcp"), "2025-11-25") as conn:
        names = [t.name for t in (await conn.session.list_tools()).tools]
        assert names == ["s_hello"]
        for _ in range(3):
            assert await conn.text("s_hello") == "hello"
    assert STATELESS_METHODS == [
        "initialize",
        "notifications/initialized",
        "tools/list",
        "tools/call",
        "tools/call",
        "tools/call",
    ]


def test_a_result_too_large_says_so(gw: GatewayThread) -> None:
    """A generated tool's response over the loopback's limit is an isError result that
    names the limit. httptools wraps an exception raised in its `on_body` callback, so
    the caller read "the gateway's answer did not parse: `on_body` callback error"."""
    message = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "exportAll"}}
    for _ in range(2):  # and the next call is served as well
        response = httpx2.post(url(gw, "/v1/mcp"), json=message, headers=HEADERS)
        result = response.json()["result"]
        assert result["isError"] is True
        assert result["content"] == [
            {
                "type": "text",
                "text": f"the call failed: the response is larger than {MAX_RESPONSE} bytes",
            }
        ]


async def test_a_federation_lists_each_name_once(gw: GatewayThread) -> None:
    """Members whose prefixed names meet (here the same prefix on two services with the
    same operations) listed the name twice:
    LLM APIs refuse a request whose tools repeat a name, so the whole list was unusable.
    The first member's tool keeps the name, as calls of it go to the first member."""
    headers = {"Host": "127.0.0.1"}
    async with mcp_client(url(gw, "/clash/mcp"), "2025-11-25", headers=headers) as conn:
        names = [t.name for t in (await conn.session.list_tools()).tools]
        assert names == ["i_exportAll", "i_hello", "i_listItems"]
        assert await conn.text("i_hello") == "hello"


def _federation(upstream: str, **service: Any) -> dict[str, Any]:
    """A gateway config: federation `fed` at /fed/mcp of one MCP member, service `m`
    (the upstream's /m/mcp), with `service`'s settings."""
    member = {
        "name": "m",
        "kind": "mcp",
        "upstream": upstream + "/m/mcp",
        "mcp": {"path": "/m/mcp"},
    }
    return {
        "services": [{**member, **service}],
        "mcp_servers": [{"name": "fed", "path": "/fed/mcp", "members": [{"service": "m"}]}],
    }


def test_long_upstream_session_ids_are_sealed_or_withheld(gw: GatewayThread) -> None:
    """An upstream session id over 1,024 bytes could not be sealed: the step failed, the
    replica's own id went to the client as it was, and the session's next request was
    404 (the id did not open). Ids up to 4 KiB are sealed (a header of ~5.5 KiB, within
    the request limits); a longer one is withheld, never passed on raw."""
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    for length in (1025, 4096):
        init["params"] = {"idLength": length}
        response = httpx2.post(url(gw, "/long/mcp"), json=init, headers=HEADERS)
        assert response.status_code == 200
        token = response.headers["mcp-session-id"]
        assert not token.startswith("sss"), length  # sealed
        session = {**HEADERS, "Mcp-Session-Id": token}
        response = httpx2.post(url(gw, "/long/mcp"), json=ping, headers=session)
        assert response.status_code == 200, (length, response.text)
        assert response.json()["result"] == {"length": length}
    init["params"] = {"idLength": 4097}
    response = httpx2.post(url(gw, "/long/mcp"), json=init, headers=HEADERS)
    assert response.status_code == 200
    assert "mcp-session-id" not in response.headers


def test_header_names_in_any_case_are_found_on_every_response_of_a_session(
    gw: GatewayThread,
) -> None:
    """The session's id sealed, its event stream streamed, and X-Accel-Buffering added
    only when the upstream has not set it, whatever case the upstream writes the names
    in: the first response goes through the hook, the next ones through the data
    plane's own scan of the head (McpSessionStep._fast_response)."""
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
    response = httpx2.post(url(gw, "/shout/mcp"), json=init, headers=HEADERS)
    assert response.status_code == 200
    token = response.headers["mcp-session-id"]
    assert token != "shout-1"  # sealed
    session = {**HEADERS, "Mcp-Session-Id": token}
    for accel in (False, True, False):
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"accel": accel}}
        response = httpx2.post(url(gw, "/shout/mcp"), json=call, headers=session)
        assert response.status_code == 200, response.text
        assert response.headers.get_list("mcp-session-id") == [token]
        assert response.headers.get_list("x-accel-buffering") == ["yes" if accel else "no"]
        assert response.headers["content-type"] == "TEXT/EVENT-STREAM"
        assert json.loads(response.text.split("data: ", 1)[1])["result"] == {"session": "shout-1"}


async def test_a_federation_member_keeps_its_session_across_config_changes() -> None:
    """Each build made a new client of each MCP member, which opened a new session there
    at the next tools/list: every config change (an admin write, a reload) left one more
    session open on the member, never ended. The client lives on while the member's
    path, hosts and upstreams are unchanged (its tool list too, for its ttl)."""
    seen: list[tuple[str, str | None]] = []  # (method, Mcp-Session-Id)

    async def member(request: web.Request) -> web.Response:
        message = await request.json()
        seen.append((message.get("method"), request.headers.get("Mcp-Session-Id")))
        if "id" not in message:
            return web.Response(status=202)
        result: dict[str, Any] = {}
        if message["method"] == "initialize":
            result = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}}
        elif message["method"] == "tools/list":
            result = {"tools": [{"name": "hello", "inputSchema": {"type": "object"}}]}
        answer = {"jsonrpc": "2.0", "id": message["id"], "result": result}
        return web.json_response(answer, headers={"Mcp-Session-Id": "kept-session"})

    app = web.Application()
    app.router.add_route("POST", "/m/mcp", member)
    with LoopThread() as loop_thread:
        upstream = AiohttpUpstream(app, loop_thread)
        gateway = GatewayThread(_federation(upstream.url), loop_thread)
        try:
            listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
            for change in range(4):
                response = httpx2.post(url(gateway, "/fed/mcp"), json=listing, headers=HEADERS)
                assert [t["name"] for t in response.json()["result"]["tools"]] == ["m_hello"]
                # A config change: another service registered (a new snapshot).
                loop_thread.run(
                    gateway.gateway.register_service(
                        f"other{change}", url=upstream.url, prefix=f"/other{change}"
                    )
                )
        finally:
            gateway.stop()
            upstream.close()
    assert [method for method, _ in seen].count("initialize") == 1, seen


def _tool_call(request_id: int, name: str) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": {}},
    }


def _assert_refused_as_mismatch(
    gw: GatewayThread, message: dict[str, Any], headers: Any, detail: str = ""
) -> None:
    """400 with -32020 (HeaderMismatch) for `message` on the proxy, a generated
    endpoint and a federation alike; `detail` in the error's message."""
    body = json.dumps(message).encode()
    for path in ("/mcp", "/v1/mcp", "/fed/mcp"):
        response = httpx2.post(url(gw, path), content=body, headers=headers)
        assert response.status_code == 400, (path, response.text)
        answer = response.json()
        assert answer["id"] == message["id"], (path, answer)
        assert answer["error"]["code"] == -32020, (path, answer)
        assert detail in answer["error"]["message"], (path, answer)


@pytest.mark.parametrize(
    ("routing", "body_name"),
    [
        ({"Mcp-Method": "tools/list"}, "listItems"),  # the method says another
        ({"Mcp-Method": "tools/call", "Mcp-Name": "exportAll"}, "listItems"),  # the name
        ({"Mcp-Name": "=?base64?ZXhwb3J0QWxs?="}, "listItems"),  # encoded: "exportAll"
    ],
)
def test_routing_headers_that_disagree_with_the_body_are_refused(
    gw: GatewayThread, routing: dict[str, str], body_name: str
) -> None:
    """2026-07-28: a server MUST check `Mcp-Method` / `Mcp-Name` against the body and
    answer a mismatch 400 with -32020 (HeaderMismatch), as the proxy's envelope check
    does. The generated and federated endpoints never read the headers: a call whose
    headers named another tool than its body ran the body's (an intermediary that
    decided on the headers saw a tool other than the one called)."""
    message = _tool_call(7, body_name)
    headers = {**HEADERS, "MCP-Protocol-Version": "2026-07-28", **routing}
    _assert_refused_as_mismatch(gw, message, headers)
    # Headers that agree with the body are served.
    agree = {**HEADERS, "MCP-Protocol-Version": "2026-07-28"}
    agree.update({"Mcp-Method": "tools/call", "Mcp-Name": "listItems"})
    response = httpx2.post(url(gw, "/v1/mcp"), json=message, headers=agree)
    assert response.status_code == 200, response.text
    assert response.json()["result"]["isError"] is False
    # Before 2026-07-28 the headers do not exist: not read.
    earlier = {**headers, "MCP-Protocol-Version": "2025-11-25"}
    response = httpx2.post(url(gw, "/v1/mcp"), json=message, headers=earlier)
    assert response.status_code == 200 and "result" in response.json(), response.text


@pytest.mark.parametrize("header", ["Mcp-Name", "Mcp-Method"])
@pytest.mark.parametrize("agreeing_first", [True, False])
def test_a_routing_header_given_twice_is_refused(
    gw: GatewayThread, header: str, agreeing_first: bool
) -> None:
    """2026-07-28: `Mcp-Name` (or `Mcp-Method`) twice, one value the body's and one
    another. The proxy checked the first and forwarded both (an upstream or policy
    reading the last saw another tool than the one checked); the generated and
    federated endpoints checked the last. Either order passed one of them. Now each
    refuses it as a mismatch: 400, -32020, saying which header came twice."""
    body_value = "listItems" if header == "Mcp-Name" else "tools/call"
    other = "exportAll" if header == "Mcp-Name" else "tools/list"
    values = [body_value, other] if agreeing_first else [other, body_value]
    headers = [
        *HEADERS.items(),
        ("MCP-Protocol-Version", "2026-07-28"),
        *((header, value) for value in values),
    ]
    detail = f"the {header} header is given more than once"
    _assert_refused_as_mismatch(gw, _tool_call(9, "listItems"), headers, detail)


async def test_a_federation_member_that_lost_its_session_gets_one_handshake() -> None:
    """Calls that all meet the member's 404 (it lost the session: a restart) each
    re-initialized it: N calls made N handshakes, leaving N - 1 sessions open on the
    member. One handshake is made; the others wait for it and use its session. When it
    fails, each waiting call answers its error, and the next call tries again."""
    calls = 4
    initialized: list[str] = []  # the session each handshake opened
    lost: set[str] = set()  # the sessions the member forgot
    held: list[str] = []  # tools/call requests on a lost session, answered together
    release = asyncio.Event()
    failing = [False]  # the member refuses the next handshake

    async def member(request: web.Request) -> web.Response:
        message = await request.json()
        method, session = message.get("method"), request.headers.get("Mcp-Session-Id", "")
        if "id" not in message:
            return web.Response(status=202)
        if method == "initialize":
            if failing[0]:
                failing[0] = False
                error = {"code": -32603, "message": "not now"}
                return web.json_response({"jsonrpc": "2.0", "id": message["id"], "error": error})
            initialized.append(f"s{len(initialized) + 1}")
            result = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}}
            answer = {"jsonrpc": "2.0", "id": message["id"], "result": result}
            return web.json_response(answer, headers={"Mcp-Session-Id": initialized[-1]})
        if session in lost:
            if method == "tools/call":
                # Every call is out on the lost session before any learns it is lost.
                held.append(session)
                if len(held) % calls == 0:
                    release.set()
                await release.wait()
            return web.json_response({"jsonrpc": "2.0", "id": None, "error": {}}, status=404)
        if method == "tools/list":
            result = {"tools": [{"name": "hello", "inputSchema": {"type": "object"}}]}
        else:
            result = {"content": [{"type": "text", "text": session}], "isError": False}
        return web.json_response({"jsonrpc": "2.0", "id": message["id"], "result": result})

    app = web.Application()
    app.router.add_route("POST", "/m/mcp", member)
    with LoopThread() as loop_thread:
        upstream = AiohttpUpstream(app, loop_thread)
        gateway = GatewayThread(_federation(upstream.url), loop_thread)
        try:
            call = {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "m_hello"}}

            async def calls_at_once(client: httpx2.AsyncClient) -> list[dict[str, Any]]:
                async def one(n: int) -> dict[str, Any]:
                    response = await client.post(
                        url(gateway, "/fed/mcp"), json={**call, "id": n}, headers=HEADERS
                    )
                    return dict(response.json())

                return list(await asyncio.gather(*(one(n) for n in range(calls))))

            async with httpx2.AsyncClient(timeout=60) as client:
                listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
                response = await client.post(
                    url(gateway, "/fed/mcp"), json=listing, headers=HEADERS
                )
                assert [t["name"] for t in response.json()["result"]["tools"]] == ["m_hello"]
                assert initialized == ["s1"]

                async def lose_sessions(fail: bool = False) -> None:  # (in the member's loop)
                    lost.update(initialized)
                    release.clear()
                    failing[0] = fail

                loop_thread.run(lose_sessions())
                answers = await calls_at_once(client)
                assert initialized == ["s1", "s2"], initialized
                texts = [a["result"]["content"][0]["text"] for a in answers]
                assert texts == ["s2"] * calls, answers

                # The handshake fails: every call that waited for it says so.
                loop_thread.run(lose_sessions(fail=True))
                answers = await calls_at_once(client)
                assert [a["error"]["message"] for a in answers] == ["not now"] * calls, answers
                assert initialized == ["s1", "s2"], initialized
                # And the next call opens a session again.
                answers = await calls_at_once(client)
                assert initialized == ["s1", "s2", "s3"], initialized
                assert [a["result"]["content"][0]["text"] for a in answers] == ["s3"] * calls
        finally:
            gateway.stop()
            upstream.close()


@pytest.mark.parametrize(
    ("settings", "said"),
    [
        ({"read_timeout": 1}, "within 1 s (the route's read timeout)"),
        (
            {"operations": {"watch": {"timeouts": {"total": 1}}}},
            "within 1 s (the route's total timeout)",
        ),
    ],
)
def test_a_tool_whose_operation_streams_without_end_is_cut(
    settings: dict[str, Any], said: str
) -> None:
    """A generated tool's operation answering an event stream that never ends (a watch)
    made a tools/call that never returned: the data plane lifts a route's deadlines for
    an event stream, and the tool call waits for the whole response. It is cut after
    the route's total timeout (or its read timeout, from the head): an isError result
    that says why, and the upstream connection is closed (not left open, nor pooled)."""
    ended: list[str] = []  # each stream's end, as the upstream saw it
    streams = 0

    async def watch(request: web.Request) -> web.StreamResponse:
        nonlocal streams
        streams += 1
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            while True:  # an event now and then, so no idle timeout ends it
                await response.write(b'data: {"tick": 1}\n\n')
                await asyncio.sleep(0.05)
        except (ConnectionError, asyncio.CancelledError) as exc:
            ended.append(type(exc).__name__)
            raise

    spec = {
        "openapi": "3.1.0",
        "info": {"title": "Watch", "version": "1"},
        "paths": {"/watch": {"get": {"operationId": "watch"}}},
    }
    app = web.Application()
    app.router.add_get("/watch", watch)
    with LoopThread() as loop_thread:
        upstream = AiohttpUpstream(app, loop_thread)
        service = {"name": "w", "upstream": upstream.url, "openapi": spec, **settings}
        gateway = GatewayThread({"services": [service]}, loop_thread)
        try:
            message = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
            message["params"] = {"name": "watch", "arguments": {}}
            for n in range(2):  # and the endpoint serves the next call
                response = httpx2.post(
                    url(gateway, "/mcp"), json=message, headers=HEADERS, timeout=60
                )
                assert response.status_code == 200, response.text
                result = response.json()["result"]
                assert result["isError"] is True
                text = result["content"][0]["text"]
                assert text.startswith("the call failed: the response is an event stream"), text
                assert text.endswith(said), text

                async def upstream_saw_the_end(count: int) -> None:
                    while len(ended) < count:  # its next write finds the socket closed
                        await asyncio.sleep(0.01)

                loop_thread.run(upstream_saw_the_end(n + 1))
                assert streams == n + 1
            (service,) = gateway.gateway.snapshot.services
            (pool,) = service.replicas.pools
            assert pool.open_count == 0  # closed, not kept for reuse
        finally:
            gateway.stop()
            upstream.close()


StreamCall = Callable[[web.StreamResponse, dict[str, Any]], Awaitable[None]]


def _call_a_streaming_member(tool: str, stream: StreamCall, read_timeout: float) -> dict[str, Any]:
    """tools/call of the one tool of a federation's member (service m, route read timeout
    `read_timeout`) whose answer `stream` writes on an event stream, and then notifications
    every 50 ms until the gateway cuts the stream (waited for): the call's JSON-RPC
    answer."""
    ended: list[str] = []
    note = {"jsonrpc": "2.0", "method": "notifications/message", "params": {}}

    async def member(request: web.Request) -> web.StreamResponse:
        message = await request.json()
        if "id" not in message:
            return web.Response(status=202)
        result: dict[str, Any] = {}
        if message["method"] == "initialize":
            result = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}}
        elif message["method"] == "tools/list":
            result = {"tools": [{"name": tool, "inputSchema": {"type": "object"}}]}
        else:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            await stream(response, message)
            try:
                while True:  # notifications: the stream does not end
                    await response.write(b"data: " + json.dumps(note).encode() + b"\n\n")
                    await asyncio.sleep(0.05)
            except (ConnectionError, asyncio.CancelledError) as exc:
                ended.append(type(exc).__name__)
                raise
        return web.json_response({"jsonrpc": "2.0", "id": message["id"], "result": result})

    app = web.Application()
    app.router.add_route("POST", "/m/mcp", member)
    with LoopThread() as loop_thread:
        upstream = AiohttpUpstream(app, loop_thread)
        gateway = GatewayThread(_federation(upstream.url, read_timeout=read_timeout), loop_thread)
        try:
            message = {"jsonrpc": "2.0", "id": 7, "method": "tools/call"}
            message["params"] = {"name": f"m_{tool}", "arguments": {}}
            response = httpx2.post(
                url(gateway, "/fed/mcp"), json=message, headers=HEADERS, timeout=60
            )

            async def upstream_saw_the_end() -> None:
                while not ended:
                    await asyncio.sleep(0.01)

            loop_thread.run(upstream_saw_the_end())
            answer: dict[str, Any] = response.json()
            return answer
        finally:
            gateway.stop()
            upstream.close()


def test_a_member_tool_whose_answer_streams_without_end_is_cut() -> None:
    """The same for a federation's MCP member answering tools/call with an event stream
    that never ends: the call waited forever. It is cut after the member route's read
    timeout, answered with a JSON-RPC error that says why."""

    async def nothing(response: web.StreamResponse, message: dict[str, Any]) -> None:
        pass  # notifications only, never the result

    error = _call_a_streaming_member("watch", nothing, 1)["error"]
    assert error["code"] == -32603
    assert error["message"] == (
        "the member's answer: the response is an event stream that did not end"
        " within 1 s (the route's read timeout)"
    )


def test_a_member_answer_on_a_stream_left_open_is_taken_at_once() -> None:
    """A member that answers tools/call on an event stream and then leaves the stream
    open (the spec says it SHOULD close it): the call took the whole stream, so it
    failed at the route's read timeout though the answer had come. The event that
    carries the response ends the call; the stream is still cut at its deadline."""

    async def answer(response: web.StreamResponse, message: dict[str, Any]) -> None:
        note = {"jsonrpc": "2.0", "method": "notifications/message", "params": {}}
        done = {"jsonrpc": "2.0", "id": message["id"], "result": {"content": [
            {"type": "text", "text": "done"}
        ]}}  # fmt: skip
        await response.write(b"data: " + json.dumps(note).encode() + b"\n\n")
        # The id of another request first: not this call's answer.
        other = {**done, "id": "elsewhere"}
        await response.write(b"data: " + json.dumps(other).encode() + b"\n\n")
        # The answer split over two writes; the stream stays open after it.
        event = b"data: " + json.dumps(done).encode() + b"\n\n"
        await response.write(event[:10])
        await response.write(event[10:])

    body = _call_a_streaming_member("slow", answer, 2)
    assert "error" not in body, body
    assert body["id"] == 7
    assert body["result"]["content"] == [{"type": "text", "text": "done"}]
