"""Every OpenAPI service is also an MCP server; virtual servers federate several.

The official SDK client against the gateway's own MCP endpoint, over a real
aiohttp upstream that records what it receives: tool calls must arrive as
the HTTP requests they stand for, through routing and validation.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import httpx2
import mcp_types as types
import pytest
from aiohttp import web
from mcp.shared.exceptions import MCPError
from mcp_fixtures import PROTOCOL_VERSIONS, ReplicaSet, mcp_client, mcp_replicas
from servers import AiohttpUpstream, GatewayThread, LoopThread

pytestmark = pytest.mark.anyio

PETS: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Pets", "version": "1"},
    "servers": [{"url": "/v1"}],
    "paths": {
        "/pets": {
            "get": {
                "operationId": "listPets",
                "summary": "List pets",
                "tags": ["pets"],
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 50},
                    }
                ],
            },
            "post": {
                "operationId": "createPet",
                "summary": "Add a pet",
                "tags": ["pets", "write"],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string", "minLength": 1},
                                    "tag": {"type": "string"},
                                },
                                "additionalProperties": False,
                            }
                        }
                    },
                },
            },
        },
        "/pets/{petId}": {
            "get": {
                "operationId": "getPet",
                "description": "One pet by id.",
                "tags": ["pets"],
                "parameters": [
                    {
                        "name": "petId",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer"},
                    },
                    {"name": "X-Trace", "in": "header", "schema": {"type": "string"}},
                ],
            },
            "delete": {
                "operationId": "deletePet",
                "tags": ["admin"],
                "parameters": [
                    {"name": "petId", "in": "path", "required": True, "schema": {"type": "integer"}}
                ],
            },
        },
    },
}


class Recorder:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            self.requests.append(
                {
                    "method": request.method,
                    "path": request.path_qs,
                    "headers": dict(request.headers),
                    "body": body,
                }
            )
            if request.method == "GET" and request.path.startswith("/v1/pets/"):
                pet_id = int(request.path.rsplit("/", 1)[1])
                if pet_id == 404:
                    return web.json_response({"error": "no such pet"}, status=404)
                return web.json_response({"id": pet_id, "name": "Rex"})
            if request.method == "POST":
                return web.json_response({"id": 1, **json.loads(body)}, status=201)
            return web.json_response([{"id": 1, "name": "Rex"}])

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        return app


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def replicas() -> Iterator[ReplicaSet]:
    with mcp_replicas(1) as started:
        yield started


@pytest.fixture(scope="module")
def setup(replicas: ReplicaSet) -> Iterator[tuple[GatewayThread, Recorder]]:
    recorder = Recorder()
    with LoopThread() as loop_thread:
        upstream = AiohttpUpstream(recorder.app(), loop_thread)
        gw = GatewayThread(
            {
                "services": [
                    {"name": "pets", "upstream": upstream.url, "openapi": PETS},
                    {
                        "name": "paged",
                        "upstream": upstream.url,
                        "openapi": PETS,
                        "host": "paged.test",
                        "mcp": {
                            "page_size": 1,
                            "exclude": {"tags": ["admin"]},
                            "allowed_origins": ["https://ok.test"],
                        },
                    },
                    {
                        "name": "readonly",
                        "upstream": upstream.url,
                        "openapi": PETS,
                        "host": "ro.test",
                        "mcp": {"include": {"methods": ["GET"]}, "path": "/tools"},
                    },
                    {"name": "remote", "kind": "mcp", "upstream": replicas.urls[0]},
                ],
                "mcp_servers": [
                    {
                        "name": "all",
                        "path": "/federated/mcp",
                        "members": [
                            {"service": "pets"},
                            {"service": "remote", "prefix": "r."},
                        ],
                    }
                ],
            },
            loop_thread,
        )
        yield gw, recorder
        gw.stop()
        upstream.close()


def url(gw: GatewayThread, path: str = "/v1/mcp") -> str:
    return f"http://127.0.0.1:{gw.port}{path}"


@pytest.mark.parametrize("version", PROTOCOL_VERSIONS)
async def test_sdk_lists_and_calls_the_specs_tools(
    setup: tuple[GatewayThread, Recorder], version: str
) -> None:
    gw, recorder = setup
    async with mcp_client(url(gw), version) as conn:
        assert conn.protocol_version == version
        listed = await conn.session.list_tools()
        tools = {t.name: t for t in listed.tools}
        assert set(tools) == {"listPets", "createPet", "getPet", "deletePet"}
        get_pet = tools["getPet"]
        assert get_pet.input_schema["required"] == ["petId"]
        assert set(get_pet.input_schema["properties"]) == {"petId", "X-Trace"}
        assert "One pet by id." in (get_pet.description or "")
        assert tools["createPet"].input_schema["properties"]["body"]["required"] == ["name"]

        before = len(recorder.requests)
        result = await conn.call("getPet", {"petId": 7, "X-Trace": "t-1"})
        assert not result.is_error
        assert result.structured_content == {"id": 7, "name": "Rex"}
        sent = recorder.requests[before]
        assert (sent["method"], sent["path"]) == ("GET", "/v1/pets/7")
        assert sent["headers"]["X-Trace"] == "t-1"

        result = await conn.call("createPet", {"body": {"name": "Tom", "tag": "cat"}})
        assert not result.is_error
        assert json.loads(recorder.requests[-1]["body"]) == {"name": "Tom", "tag": "cat"}

        result = await conn.call("listPets", {"limit": 5})
        assert recorder.requests[-1]["path"] == "/v1/pets?limit=5"

        # Refused by the contract at the gateway: the upstream never sees it.
        before = len(recorder.requests)
        result = await conn.call("createPet", {"body": {"name": "", "colour": "red"}})
        assert result.is_error
        text = result.content[0].text  # type: ignore[union-attr]
        assert text.startswith("HTTP 400") and "/body/name" in text and "colour" in text
        result = await conn.call("listPets", {"limit": 500})
        assert result.is_error and "/query/limit" in result.content[0].text  # type: ignore[union-attr]
        assert len(recorder.requests) == before

        result = await conn.call("getPet", {"petId": 404})
        assert result.is_error and result.content[0].text.startswith("HTTP 404")  # type: ignore[union-attr]
        result = await conn.call("getPet", {})
        assert result.is_error  # a required argument is missing


async def test_unknown_tool_is_a_protocol_error(setup: tuple[GatewayThread, Recorder]) -> None:
    gw, _ = setup
    async with httpx2.AsyncClient() as client:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "nope"}}
        response = await client.post(
            url(gw), json=body, headers={"MCP-Protocol-Version": "2025-06-18"}
        )
        assert response.status_code == 200
        assert response.json()["error"]["code"] == -32602


async def test_pagination_include_exclude_and_origin(
    setup: tuple[GatewayThread, Recorder],
) -> None:
    gw, _ = setup
    async with mcp_client(url(gw), "2025-11-25", headers={"Host": "paged.test"}) as conn:
        names: list[str] = []
        cursor = None
        for _ in range(10):
            params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
            page = await conn.session.list_tools(params=params)
            assert len(page.tools) <= 1
            names += [t.name for t in page.tools]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert names == ["createPet", "getPet", "listPets"]  # deletePet is tagged admin
    async with mcp_client(url(gw, "/tools"), "2025-11-25", headers={"Host": "ro.test"}) as conn:
        listed = await conn.session.list_tools()
        assert {t.name for t in listed.tools} == {"listPets", "getPet"}
        assert all(t.annotations and t.annotations.read_only_hint for t in listed.tools)
    async with httpx2.AsyncClient() as client:
        body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        for origin, status in (("https://ok.test", 200), ("https://bad.test", 403)):
            response = await client.post(
                url(gw), json=body, headers={"Host": "paged.test", "Origin": origin}
            )
            assert response.status_code == status


async def test_tools_list_changed_reaches_listeners_on_a_live_spec_update(
    setup: tuple[GatewayThread, Recorder],
) -> None:
    gw, _ = setup
    async with mcp_client(url(gw, "/tools"), "2025-11-25", headers={"Host": "ro.test"}) as conn:
        before = {t.name for t in (await conn.session.list_tools()).tools}
        spec = copy.deepcopy(PETS)
        spec["paths"]["/pets/{petId}/toys"] = {
            "get": {
                "operationId": "listToys",
                "parameters": [
                    {"name": "petId", "in": "path", "required": True, "schema": {"type": "integer"}}
                ],
            }
        }
        upstream_url = recorder_url(gw)
        gw.loop_thread.run(
            gw.gateway.register_service(
                "readonly",
                url=upstream_url,
                openapi=spec,
                host="ro.test",
                mcp={"include": {"methods": ["GET"]}, "path": "/tools"},
            )
        )
        await conn.wait_for("notifications/tools/list_changed")
        after = {t.name for t in (await conn.session.list_tools()).tools}
        assert after == before | {"listToys"}


def recorder_url(gw: GatewayThread) -> str:
    service = gw.gateway.snapshot.service("readonly")
    assert service is not None
    return str(service.config.upstream)


async def test_a_virtual_server_merges_and_routes(setup: tuple[GatewayThread, Recorder]) -> None:
    gw, recorder = setup
    async with mcp_client(url(gw, "/federated/mcp"), "2025-11-25") as conn:
        names = {t.name for t in (await conn.session.list_tools()).tools}
        assert {"pets_getPet", "pets_createPet", "r.echo", "r.whoami"} <= names
        assert all(len(n) <= 64 for n in names)
        result = await conn.call("pets_getPet", {"petId": 3})
        assert result.structured_content == {"id": 3, "name": "Rex"}
        assert recorder.requests[-1]["path"] == "/v1/pets/3"
        assert await conn.text("r.echo", text="through two hops") == "through two hops"
        with pytest.raises(MCPError, match=r"unknown tool 'r\.nope'"):
            await conn.call("r.nope", {})


async def test_gateway_mcp_session_ids_are_checked(setup: tuple[GatewayThread, Recorder]) -> None:
    gw, _ = setup
    async with httpx2.AsyncClient() as client:
        init = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {}},
        }
        response = await client.post(url(gw), json=init)
        token = response.headers["mcp-session-id"]
        assert response.json()["result"]["protocolVersion"] == "2025-06-18"
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        ok = await client.post(url(gw), json=ping, headers={"Mcp-Session-Id": token})
        assert ok.status_code == 200 and ok.json()["result"] == {}
        bad = await client.post(url(gw), json=ping, headers={"Mcp-Session-Id": token[:-2] + "xx"})
        assert bad.status_code == 404
        ended = await client.delete(url(gw), headers={"Mcp-Session-Id": token})
        assert ended.status_code == 200
        gone = await client.post(url(gw), json=ping, headers={"Mcp-Session-Id": token})
        assert gone.status_code == 404


async def _post_json(to: str, body: dict[str, Any]) -> httpx2.Response:
    """`body` as one JSON-RPC POST (Python's json: integers of any size as they are)."""
    async with httpx2.AsyncClient() as client:
        return await client.post(
            to,
            content=json.dumps(body),
            headers={
                "MCP-Protocol-Version": "2025-06-18",
                "Content-Type": "application/json",
                "Accept": "application/json, text/event-stream",
            },
        )


BIG = 2**70 + 3  # past 64 bits (JSON has no limit, orjson stops at 64), not a float exactly


@pytest.mark.parametrize("path", ["/v1/mcp", "/federated/mcp"])
async def test_integers_past_64_bits_cross_a_tool_call_exactly(
    setup: tuple[GatewayThread, Recorder], path: str
) -> None:
    """An argument past 64 bits reaches the API, and the API's answer holding one comes
    back as that integer, not a float (structuredContent), also through a virtual
    server, whose member call and member answer are JSON of their own."""
    gw, recorder = setup
    name = "getPet" if path == "/v1/mcp" else "pets_getPet"
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": name, "arguments": {"petId": BIG}},
    }
    response = await _post_json(url(gw, path), body)
    assert response.status_code == 200, response.text
    assert recorder.requests[-1]["path"] == f"/v1/pets/{BIG}"
    result = json.loads(response.text)["result"]
    assert result["isError"] is False
    assert result["structuredContent"] == {"id": BIG, "name": "Rex"}
    assert type(result["structuredContent"]["id"]) is int


async def test_integers_past_64_bits_cross_a_remote_member_exactly(
    setup: tuple[GatewayThread, Recorder],
) -> None:
    """The virtual server's call to an MCP member is JSON it writes, and the member's
    answer JSON it reads: neither may stop at 64 bits (orjson refused to write the
    arguments, and read the sum back as a float)."""
    gw, _ = setup
    body = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "r.add", "arguments": {"a": BIG, "b": 1}},
    }
    response = await _post_json(url(gw, "/federated/mcp"), body)
    assert response.status_code == 200, response.text
    result = json.loads(response.text)["result"]
    assert result["isError"] is False, result
    assert result["structuredContent"] == {"result": BIG + 1}
