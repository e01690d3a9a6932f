"""mcp-authz through a real gateway: the official SDK client lists and calls tools of a
proxied SDK server (JSON answers and SSE answers), of an OpenAPI service's generated
endpoint and of a virtual server federating both; the same rules decide what is listed
and what may be called, and a refused call never reaches the upstream.

Callers are told apart by key-auth (the Authorization header holds the key, so a
generated endpoint and a federation pass it on), and a small Python step of the test
plays the token-verifying plugin: it sets `vars["scopes"]` and `vars["claims"]` from
test headers, exactly where jwt-auth / mcp-auth put them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from aiohttp import web
from mcp.shared.exceptions import MCPError
from mcp_fixtures import TESTS_DIR, McpConn, _Process, mcp_client
from servers import AiohttpUpstream, GatewayThread, LoopThread

from runmcp_fast._dataplane import PyStep
from runmcp_fast.config import config_from_data
from runmcp_fast.mcp.authz import MAX_LIST_BYTES, ToolsListFilter
from runmcp_fast.plugins.builtin.mcp_authz import FORBIDDEN
from runmcp_fast.problems import SnapshotError
from runmcp_fast.snapshot import RouteInfo, build_snapshot

pytestmark = pytest.mark.anyio

ALICE = "alice-key-0123456789"  # group staff
BOB = "bob-key-9876543210"  # group guests

RULES: dict[str, Any] = {
    "default": "allow",
    "rules": [
        {"effect": "allow", "groups": ["staff"]},
        {"effect": "deny", "tools": ["*admin*", "*deletePet"]},
        {"effect": "allow", "tools": ["*add_note", "*createPet"], "scopes": ["notes:write"]},
        {"effect": "allow", "tools": ["*add_note", "*createPet"], "claims": {"tier": "gold"}},
        {"effect": "deny", "tools": ["*add_note", "*createPet"]},
        {"effect": "deny", "annotations": {"destructiveHint": True}},
    ],
}

PETS: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Pets", "version": "1"},
    "servers": [{"url": "/v1"}],
    "paths": {
        "/pets": {
            "get": {"operationId": "listPets"},
            "post": {
                "operationId": "createPet",
                "requestBody": {
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
            },
        },
        "/pets/{petId}": {
            "get": {
                "operationId": "getPet",
                "parameters": [
                    {"name": "petId", "in": "path", "required": True, "schema": {"type": "integer"}}
                ],
            },
            "delete": {
                "operationId": "deletePet",
                "parameters": [
                    {"name": "petId", "in": "path", "required": True, "schema": {"type": "integer"}}
                ],
            },
        },
    },
}

NOTES = {"read_notes", "add_note", "delete_note", "admin_reset", "ping_tool"}
PET_TOOLS = {"listPets", "createPet", "getPet", "deletePet"}

# Who calls (headers), and what each may see and call of the notes and of the pets.
CALLERS: dict[str, tuple[dict[str, str], set[str], set[str]]] = {
    "anonymous": ({}, {"read_notes", "ping_tool"}, {"listPets", "getPet"}),
    "scope": (
        {"X-Scopes": "notes:read notes:write"},
        {"read_notes", "ping_tool", "add_note"},
        {"listPets", "getPet", "createPet"},
    ),
    "claim": (
        {"Authorization": BOB, "X-Claims": json.dumps({"tier": "gold"})},
        {"read_notes", "ping_tool", "add_note"},
        {"listPets", "getPet", "createPet"},
    ),
    "other-claim": (
        {"Authorization": BOB, "X-Claims": json.dumps({"tier": "silver"})},
        {"read_notes", "ping_tool"},
        {"listPets", "getPet"},
    ),
    "group": ({"Authorization": ALICE}, NOTES, PET_TOOLS),
}
ARGS: dict[str, dict[str, Any]] = {
    "add_note": {"text": "x"},
    "delete_note": {"index": 1},
    "createPet": {"body": {"name": "Rex"}},
    "getPet": {"petId": 1},
    "deletePet": {"petId": 1},
}


class TokenVars:
    """Stands in for jwt-auth / mcp-auth: what a verified token grants, in vars."""

    name = "test-token"
    phase = "access"

    def request(self, view: Any) -> None:
        scopes = view.header("x-scopes")
        if scopes is not None:
            view.vars["scopes"] = frozenset(scopes.split())
        claims = view.header("x-claims")
        if claims is not None:
            view.vars["claims"] = json.loads(claims)


class NotesServer(_Process):
    """tests/mcp_authz_upstream.py; `calls(tool)` counts what reached it."""

    def __init__(self, json_response: bool) -> None:
        argv = [sys.executable, str(TESTS_DIR / "mcp_authz_upstream.py"), "--port", "0"]
        super().__init__(argv + ["--json-response"] * json_response)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def calls(self, tool: str | None = None) -> int:
        """Calls of `tool` (None: of any) the upstream has answered so far."""
        counts = httpx2.get(f"http://127.0.0.1:{self.port}/calls").json()
        return sum(counts.values()) if tool is None else int(counts.get(tool, 0))


class PetsRecorder:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            await request.read()
            self.requests.append((request.method, request.path))
            return web.json_response({"ok": True})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        return app


class Setup:
    def __init__(self, gw: GatewayThread, sse: NotesServer, js: NotesServer, pets: PetsRecorder):
        self.gw = gw
        self.notes = {"sse": sse, "json": js}
        self.pets = pets

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.gw.port}{path}"

    def step(self, path: str) -> Any:
        found = self.gw.gateway.snapshot.router.match(None, "POST", path)
        (step,) = [s for s in found.target.chain.steps if s.name == "mcp-authz"]
        return step


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    sse, js = NotesServer(False), NotesServer(True)
    for server in (sse, js):
        server.spawn()
    for server in (sse, js):
        server.wait_ready()
    recorder = PetsRecorder()
    token = PyStep(TokenVars())
    try:
        with LoopThread() as loop:
            upstream = AiohttpUpstream(recorder.app(), loop)
            authz = {"mcp-authz": RULES}
            gw = GatewayThread(
                {
                    "consumers": [
                        {"name": "alice", "groups": ["staff"], "key-auth": {"key": ALICE}},
                        {"name": "bob", "groups": ["guests"], "key-auth": {"key": BOB}},
                        {"name": "guest"},
                    ],
                    "plugins": {
                        "key-auth": {
                            "header": "Authorization",
                            "hide_credentials": False,
                            "anonymous": "guest",
                        }
                    },
                    "services": [
                        {
                            "name": "notes",
                            "kind": "mcp",
                            "upstream": sse.url,
                            "mcp": {"path": "/notes/mcp"},
                            "plugins": authz,
                        },
                        {
                            "name": "notes-json",
                            "kind": "mcp",
                            "upstream": js.url,
                            "mcp": {"path": "/notes-json/mcp"},
                            "plugins": authz,
                        },
                        {
                            "name": "fresh",
                            "kind": "mcp",
                            "upstream": sse.url,
                            "mcp": {"path": "/fresh/mcp"},
                            "plugins": authz,
                        },
                        # The federation's member: no rules of its own (the virtual
                        # server's decide).
                        {
                            "name": "member",
                            "kind": "mcp",
                            "upstream": sse.url,
                            "mcp": {"path": "/member/mcp"},
                        },
                        {
                            "name": "pets",
                            "upstream": upstream.url,
                            "openapi": PETS,
                            "plugins": authz,
                        },
                    ],
                    "mcp_servers": [
                        {
                            "name": "all",
                            "path": "/all/mcp",
                            "members": [
                                {"service": "pets", "prefix": "pets_"},
                                {"service": "member", "prefix": "notes_"},
                            ],
                            "plugins": authz,
                        }
                    ],
                },
                loop,
                steps=lambda route: [token],
            )
            yield Setup(gw, sse, js, recorder)
            gw.stop()
            upstream.close()
    finally:
        for server in (sse, js):
            server.signal(15)


async def _listed(conn: McpConn) -> set[str]:
    return {t.name for t in (await conn.session.list_tools()).tools}


async def _refused(conn: McpConn, name: str) -> MCPError:
    with pytest.raises(MCPError) as caught:
        await conn.call(name, ARGS.get(name.split("_", 1)[-1] if "pets_" in name else name, {}))
    assert caught.value.error.code == FORBIDDEN, caught.value
    assert caught.value.error.data == {"tool": name}
    return caught.value


# -- a proxied SDK server, both transports ----------------------------------------------


@pytest.mark.parametrize("transport", ["sse", "json"])
@pytest.mark.parametrize("caller", list(CALLERS))
async def test_proxied_server_lists_and_calls_by_the_same_rules(
    setup: Setup, transport: str, caller: str
) -> None:
    headers, visible, _ = CALLERS[caller]
    notes = setup.notes[transport]
    path = "/notes/mcp" if transport == "sse" else "/notes-json/mcp"
    policy = setup.step(path).policy
    async with mcp_client(setup.url(path), "2025-11-25", headers=headers) as conn:
        assert await _listed(conn) == visible
        for name in sorted(visible):
            before = notes.calls(name)
            result = await conn.call(name, ARGS.get(name, {}))
            assert not result.is_error, result
            assert notes.calls(name) == before + 1
        for name in sorted(NOTES - visible):
            before, refused = notes.calls(), policy.refused
            await _refused(conn, name)
            assert notes.calls() == before  # never reached the upstream
            assert policy.refused == refused + 1  # counted


async def test_a_call_before_any_list_waits_for_the_annotations(setup: Setup) -> None:
    # The gateway knows a proxied tool's annotations from the tools/list answers it
    # filtered; before one, an annotation rule can not be decided: refused, and said why.
    notes = setup.notes["sse"]
    async with mcp_client(setup.url("/fresh/mcp"), "2025-11-25") as conn:
        before = notes.calls()
        error = await _refused(conn, "read_notes")
        assert "list the tools" in error.error.message
        assert notes.calls() == before
        assert "read_notes" in await _listed(conn)
        assert not (await conn.call("read_notes")).is_error
        await _refused(conn, "delete_note")  # known destructive now: refused for good
    # A decision no annotation rule takes part in needs no list first.
    async with mcp_client(setup.url("/fresh/mcp"), "2025-11-25", headers=CALLERS["group"][0]) as c:
        assert not (await c.call("delete_note", {"index": 2})).is_error


# -- an OpenAPI service's generated endpoint ---------------------------------------------


@pytest.mark.parametrize("caller", list(CALLERS))
async def test_generated_endpoint_lists_and_calls_by_the_same_rules(
    setup: Setup, caller: str
) -> None:
    headers, _, visible = CALLERS[caller]
    policy = setup.step("/v1/mcp").policy
    async with mcp_client(setup.url("/v1/mcp"), "2025-11-25", headers=headers) as conn:
        assert await _listed(conn) == visible
        for name in sorted(visible):
            before = len(setup.pets.requests)
            assert not (await conn.call(name, ARGS.get(name, {}))).is_error
            assert len(setup.pets.requests) == before + 1
        for name in sorted(PET_TOOLS - visible):
            before, refused = len(setup.pets.requests), policy.refused
            await _refused(conn, name)
            assert len(setup.pets.requests) == before
            assert policy.refused == refused + 1


async def test_generated_endpoint_pages_the_callers_own_list(setup: Setup) -> None:
    async with mcp_client(setup.url("/v1/mcp"), "2025-11-25") as conn:
        assert await _listed(conn) == {"listPets", "getPet"}


# -- a virtual server federating both -------------------------------------------------


@pytest.mark.parametrize("caller", list(CALLERS))
async def test_federation_lists_and_calls_by_the_same_rules(setup: Setup, caller: str) -> None:
    headers, notes_visible, pets_visible = CALLERS[caller]
    visible = {f"notes_{n}" for n in notes_visible} | {f"pets_{n}" for n in pets_visible}
    everything = {f"notes_{n}" for n in NOTES} | {f"pets_{n}" for n in PET_TOOLS}
    notes = setup.notes["sse"]
    async with mcp_client(setup.url("/all/mcp"), "2025-11-25", headers=headers) as conn:
        assert await _listed(conn) == visible
        for name in sorted(visible):
            tool = name.split("_", 1)[1]
            assert not (await conn.call(name, ARGS.get(tool, {}))).is_error, name
        for name in sorted(everything - visible):
            before = (notes.calls(), len(setup.pets.requests))
            with pytest.raises(MCPError) as caught:
                await conn.call(name, ARGS.get(name.split("_", 1)[1], {}))
            assert caught.value.error.code == FORBIDDEN
            assert (notes.calls(), len(setup.pets.requests)) == before


# -- 2026-07-28: decided from the checked headers -------------------------------------


async def test_2026_requests_are_decided_from_their_checked_headers(setup: Setup) -> None:
    notes = setup.notes["sse"]
    async with mcp_client(setup.url("/notes/mcp"), "2026-07-28") as conn:
        assert await _listed(conn) == CALLERS["anonymous"][1]
        assert not (await conn.call("read_notes")).is_error
        before = notes.calls()
        await _refused(conn, "delete_note")
        assert notes.calls() == before
        posts = [e for e in conn.exchanges if e.method == "POST"]
        assert posts[-1].request_headers.get("mcp-name") == "delete_note"
        assert posts[-1].status == 403
    # A header that says another tool than the body is refused by the envelope check,
    # before any decision: a policy on the header could otherwise be walked around.
    body = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "delete_note", "arguments": {"index": 1}},
    }
    headers = {
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call",
        "Mcp-Name": "read_notes",
    }
    before = notes.calls()
    async with httpx2.AsyncClient() as client:
        response = await client.post(setup.url("/notes/mcp"), json=body, headers=headers)
        assert response.status_code == 400 and response.json()["error"]["code"] == -32020
        headers["Mcp-Name"] = "=?base64?ZGVsZXRlX25vdGU=?="  # "delete_note", as the spec encodes it
        response = await client.post(setup.url("/notes/mcp"), json=body, headers=headers)
        assert response.status_code == 403 and response.json()["error"]["code"] == FORBIDDEN
    assert notes.calls() == before


async def test_a_header_sent_twice_does_not_walk_around_the_rules(setup: Setup) -> None:
    """Two `MCP-Protocol-Version` (or `Mcp-Method`, `Mcp-Name`) headers: the envelope
    check reads the first, the step read the last. A 2025-11-25 version first (nothing
    for the check to compare) and 2026-07-28 last made the step trust an unchecked
    `Mcp-Method: ping` and let a refused tool reach the upstream, which ran it (it reads
    the first version). A call is decided from its body whenever a header is doubled."""
    notes = setup.notes["sse"]
    url = setup.url("/notes/mcp")
    headers = [("Accept", "application/json, text/event-stream")]
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {}},
    }
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    call = {
        "jsonrpc": "2.0",
        "id": 9,
        "method": "tools/call",
        "params": {"name": "admin_reset", "arguments": {}, "_meta": meta},
    }
    async with httpx2.AsyncClient() as client:
        response = await client.post(url, json=init, headers=headers)
        assert response.status_code == 200
        session = [("Mcp-Session-Id", response.headers["mcp-session-id"])]
        old = [("MCP-Protocol-Version", "2025-11-25")]
        modern = [("MCP-Protocol-Version", "2026-07-28")]
        names = [("Mcp-Name", "admin_reset"), ("Mcp-Name", "read_notes")]
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        await client.post(url, json=initialized, headers=headers + session + old)
        before = notes.calls()
        # The version doubled: the first counts (2025-11-25: no header to check), the
        # call is decided from its body.
        doubled = session + old + modern + [("Mcp-Method", "ping")]
        response = await client.post(url, json=call, headers=headers + doubled)
        assert response.status_code in (200, 403), (doubled, response.text)
        text = response.text.partition("data: ")[2] or response.text
        error = json.loads(text)["error"]
        assert error["code"] == FORBIDDEN and error["data"] == {"tool": "admin_reset"}, error
        assert notes.calls() == before
        # A 2026-07-28 routing header doubled: refused before any rule, as a mismatch
        # (one value must say what the body says: test_mcp_edge_hunt.py).
        for doubled, header in (
            ([*modern, ("Mcp-Method", "tools/call"), ("Mcp-Method", "ping")], "Mcp-Method"),
            ([*modern, ("Mcp-Method", "tools/call"), *names], "Mcp-Name"),
        ):
            response = await client.post(url, json=call, headers=headers + doubled)
            assert response.status_code == 400, (doubled, response.text)
            error = response.json()["error"]
            assert error["code"] == -32020, (doubled, error)
            assert f"the {header} header is given more than once" in error["message"]
            assert notes.calls() == before, doubled


# -- 2025-03-26 batches: each member decided ------------------------------------------


async def test_a_batch_with_one_refused_member_is_refused_whole(setup: Setup) -> None:
    notes = setup.notes["json"]
    headers = {"Accept": "application/json, text/event-stream"}
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {}},
    }
    async with httpx2.AsyncClient(headers=headers) as client:
        url = setup.url("/notes-json/mcp")
        response = await client.post(url, json=init)
        assert response.status_code == 200
        headers["Mcp-Session-Id"] = response.headers["mcp-session-id"]
        headers["MCP-Protocol-Version"] = "2025-03-26"
        await client.post(
            url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers
        )
        listed = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        response = await client.post(url, json=listed, headers=headers)
        tools = response.json()["result"]["tools"]
        assert {t["name"] for t in tools} == CALLERS["anonymous"][1]
        batch = [
            {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "read_notes"}},
            {
                "jsonrpc": "2.0",
                "id": 4,
                "method": "tools/call",
                "params": {"name": "delete_note", "arguments": {"index": 1}},
            },
            {"jsonrpc": "2.0", "method": "notifications/progress", "params": {}},
        ]
        before = notes.calls()
        response = await client.post(url, json=batch, headers=headers)
        assert response.status_code == 200
        answers = {a["id"]: a["error"] for a in response.json()}
        assert answers[4]["code"] == FORBIDDEN and answers[4]["data"] == {"tool": "delete_note"}
        assert answers[3]["code"] == FORBIDDEN and "another call" in answers[3]["message"]
        assert notes.calls() == before
        # (the SDK server takes no batches: the allowed member alone, to show it is allowed)
        response = await client.post(url, json=batch[0], headers=headers)
        assert "result" in response.json()
        assert notes.calls() == before + 1


# -- config problems -------------------------------------------------------------------


def _problems(**plugin: Any) -> list[tuple[str, str, str]]:
    data = {
        "listeners": [{"address": "127.0.0.1:0"}],
        "consumers": [{"name": "alice"}],
        "services": [
            {
                "name": "m",
                "kind": "mcp",
                "upstream": "http://127.0.0.1:9/mcp",
                "plugins": {"mcp-authz": plugin},
            }
        ],
    }
    with pytest.raises(SnapshotError) as caught:
        build_snapshot(config_from_data(data, source="gw.yaml"), lambda _u: None, "gw.yaml")
    return [(p.pointer, p.message, p.hint) for p in caught.value.problems]


AT = "/services/0/plugins/mcp-authz"


@pytest.mark.parametrize(
    ("settings", "pointer", "message", "hint"),
    [
        ({"rules": []}, f"{AT}/rules", "no rules", "e.g. rules"),
        ({"rules": [{"tools": ["x"]}]}, f"{AT}/rules/0", "effect", ""),
        ({"rules": [{"effect": "maybe"}]}, f"{AT}/rules/0/effect", "", ""),
        ({"rules": [{"effect": "deny", "tool": ["x"]}]}, f"{AT}/rules/0/tool", "unknown key", ""),
        (
            {"rules": [{"effect": "deny", "tools": ["a b"]}]},
            f"{AT}/rules/0/tools/0",
            "not a tool name",
            "wildcards",
        ),
        (
            {"rules": [{"effect": "deny", "annotations": {"destructive": True}}]},
            f"{AT}/rules/0/annotations/destructive",
            "unknown key",
            "",
        ),
        (
            {"rules": [{"effect": "allow", "consumers": ["alice", "zed"]}]},
            f"{AT}/rules/0/consumers/1",
            "no consumer named 'zed'",
            "consumers",
        ),
        (
            {"rules": [{"effect": "allow", "claims": {"tier": []}}]},
            f"{AT}/rules/0/claims/tier",
            "empty list",
            "values",
        ),
        ({"rules": [{"effect": "allow"}], "default": "no"}, f"{AT}/default", "", ""),
        ({"rules": [{"effect": "allow"}], "error_code": 1}, f"{AT}/error_code", "", ""),
    ],
)
def test_settings_problems_name_the_pointer_and_the_fix(
    settings: dict[str, Any], pointer: str, message: str, hint: str
) -> None:
    found = _problems(**settings)
    assert any(p == pointer and message in m and hint in h for p, m, h in found), found


def test_it_is_not_given_per_operation_and_goes_on_mcp_routes_only() -> None:
    data: dict[str, Any] = {
        "listeners": [{"address": "127.0.0.1:0"}],
        "services": [
            {
                "name": "pets",
                "upstream": "http://127.0.0.1:9",
                "openapi": PETS,
                "plugins": {"mcp-authz": {"rules": [{"effect": "deny"}]}},
                "operations": {"listPets": {"plugins": {"mcp-authz": {"rules": []}}}},
            }
        ],
    }
    with pytest.raises(SnapshotError) as caught:
        build_snapshot(config_from_data(data, source="gw.yaml"), lambda _u: None, "gw.yaml")
    (problem,) = caught.value.problems
    assert problem.pointer == "/services/0/operations/listPets/plugins/mcp-authz"
    assert "can not be given per operation" in problem.message
    del data["services"][0]["operations"]
    seen: dict[str, list[str]] = {}

    def record(route: RouteInfo) -> list[Any]:
        return []

    snapshot = build_snapshot(config_from_data(data), lambda _u: None, steps=record)
    for path, method in (("/v1/pets", "GET"), ("/v1/mcp", "POST")):
        found = snapshot.router.match(None, method, path)
        seen[path] = found.target.chain.names()
    assert seen == {"/v1/pets": [], "/v1/mcp": ["mcp-host-guard", "mcp-authz"]}


# -- the list filter, byte by byte ------------------------------------------------------


def _tools(*names: str) -> dict[str, Any]:
    return {"tools": [{"name": n, "inputSchema": {"type": "object"}} for n in names]}


def _run(filter_: ToolsListFilter, body: bytes, size: int) -> bytes:
    out = [filter_.feed(body[i : i + size]) for i in range(0, len(body), size)]
    return b"".join(out) + filter_.flush()


@pytest.mark.parametrize("size", [1, 3, 7, 64, 100_000])
def test_the_filter_rewrites_only_the_answer_whatever_the_chunks(size: int) -> None:
    keep = lambda tool: tool["name"] != "no"  # noqa: E731
    answer = {"jsonrpc": "2.0", "id": 5, "result": _tools("yes", "no")}
    other = {"jsonrpc": "2.0", "id": 9, "result": _tools("no")}  # not the one asked for
    note = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"tools": 1}}
    stream = (
        b": comment\r\n\r\nid: e1\r\nevent: message\r\ndata: "
        + json.dumps(note).encode()
        + b"\r\n\r\nid: e2\ndata: "
        + json.dumps(other).encode()
        + b"\n\nid: e3\ndata: "
        + json.dumps(answer).encode()
        + b"\n\nid: e4\ndata: after\n\n"
    )
    out = _run(ToolsListFilter((5,), keep, True), stream, size)
    events = out.split(b"\n\n")
    assert out.startswith(stream[: stream.index(b"id: e3")])  # untouched before the answer
    (rewritten,) = [e for e in events if e.startswith(b"id: e3")]
    data = json.loads(rewritten.split(b"data: ", 1)[1])
    assert [t["name"] for t in data["result"]["tools"]] == ["yes"]
    assert out.endswith(b"id: e4\ndata: after\n\n")  # passed on as it came, after
    # A JSON body: read whole, rewritten at its end; a batch's answers too.
    body = json.dumps([answer, other]).encode()
    found = json.loads(_run(ToolsListFilter((5,), keep, False), body, size))
    assert [t["name"] for t in found[0]["result"]["tools"]] == ["yes"]
    assert [t["name"] for t in found[1]["result"]["tools"]] == ["no"]


def test_a_body_the_filter_can_not_read_becomes_an_error() -> None:
    keep = lambda tool: True  # noqa: E731
    out = _run(ToolsListFilter((5,), keep, False), b'{"jsonrpc":"2.0","id":5,"res', 4)
    assert json.loads(out)["error"]["code"] == -32603 and json.loads(out)["id"] == 5
    big = (
        b'{"jsonrpc":"2.0","id":5,"result":{"tools":['
        + b" " * (MAX_LIST_BYTES + (2 << 20))
        + b"]}}"
    )
    out = _run(ToolsListFilter((5,), keep, False), big, 1 << 20)
    assert json.loads(out)["error"]["code"] == -32603
    stream = b"data: " + big + b"\n\nid: next\ndata: {}\n\n"
    out = _run(ToolsListFilter((5,), keep, True), stream, 1 << 20)
    first, rest = out.split(b"\n\n", 1)
    assert json.loads(first.removeprefix(b"data: "))["error"]["code"] == -32603
    assert rest == b"id: next\ndata: {}\n\n"


@pytest.mark.parametrize("stream", [False, True])
def test_the_filter_keeps_integers_past_64_bits_as_they_came(stream: bool) -> None:
    """A rewritten answer is the upstream's JSON less the refused tools: a schema's
    integer past 64 bits stays that integer, not a float (orjson read it as one)."""
    keep = lambda tool: tool["name"] != "no"  # noqa: E731
    big = 2**70 + 3
    answer = {"jsonrpc": "2.0", "id": 5, "result": _tools("yes", "no")}
    answer["result"]["tools"][0]["inputSchema"]["maximum"] = big
    body = json.dumps(answer).encode()
    if stream:
        out = _run(ToolsListFilter((5,), keep, True), b"data: " + body + b"\n\n", 7)
        out = out.split(b"data: ", 1)[1]
    else:
        out = _run(ToolsListFilter((5,), keep, False), body, 7)
    (tool,) = json.loads(out)["result"]["tools"]
    assert tool["inputSchema"]["maximum"] == big
    assert str(big).encode() in out
