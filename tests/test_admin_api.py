"""The admin API on its own listener, served by the gateway's own server and router.

Real sockets: an aiohttp upstream per service, the gateway on a uvloop thread,
requests over HTTP/1.1 from a raw client.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from servers import AiohttpUpstream, Harness, LoopThread, RawClient

from runmcp_fast.config import config_from_data, load_config
from runmcp_fast.gateway import Gateway
from runmcp_fast.problems import ConfigError

TOKEN = "admin-secret"


def named_app(name: str) -> web.Application:
    """An upstream that says who it is and what it was asked."""

    async def handle(request: web.Request) -> web.Response:
        return web.json_response({"upstream": name, "path": request.path_qs})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


PETS_SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "Pets", "version": "1"},
    "paths": {
        "/pets": {"get": {"operationId": "listPets", "responses": {"200": {"description": "ok"}}}},
        "/pets/{id}": {
            "get": {
                "operationId": "getPet",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {"200": {"description": "ok"}},
            }
        },
    },
}


class Admin:
    """A gateway with its admin listener, and one upstream per name."""

    def __init__(self, harness: Harness, data: dict[str, Any] | None = None) -> None:
        self.harness = harness
        self.a = harness.aiohttp(named_app("A"))
        self.b = harness.aiohttp(named_app("B"))
        config = {
            "services": [{"name": "stable", "upstream": self.a.url, "prefix": "/stable"}],
            "admin": {"address": "127.0.0.1:0", "token": TOKEN},
            **(data or {}),
        }
        self.gw = harness.gateway(config)
        _host, port = self.gw.gateway.admin_addresses[0].rsplit(":", 1)
        self.admin_port = int(port)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = TOKEN,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        lines = [f"{method} {path} HTTP/1.1", "Host: admin"]
        if token is not None:
            lines.append(f"Authorization: Bearer {token}")
        if data or method in ("PUT", "PATCH", "POST"):
            lines.append(f"Content-Length: {len(data)}")
        for name, value in (headers or {"Content-Type": "application/json"}).items():
            lines.append(f"{name}: {value}")
        with RawClient(self.admin_port) as client:
            client.send(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
            status, got, content = client.read_response()
        parsed = json.loads(content) if content else None
        return status, got, parsed

    def get(self, path: str, host: str = "gw.example") -> tuple[int, Any]:
        with RawClient(self.gw.port) as client:
            client.send(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            status, _, content = client.read_response()
        try:
            return status, json.loads(content)
        except ValueError:
            return status, content


def test_health_needs_no_token_the_rest_does(harness: Harness) -> None:
    admin = Admin(harness)
    assert admin.call("GET", "/healthz", token=None)[0] == 200
    status, _, body = admin.call("GET", "/readyz", token=None)
    assert status == 200 and body["status"] == "ready" and body["generation"] == 1
    status, headers, body = admin.call("GET", "/admin/services", token=None)
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    assert headers["content-type"] == "application/problem+json"
    assert admin.call("GET", "/admin/services", token="wrong")[0] == 401
    assert admin.call("GET", "/admin/services", token=TOKEN + "x")[0] == 401
    status, _, body = admin.call("GET", "/admin/services")
    assert status == 200 and [s["name"] for s in body["services"]] == ["stable"]


def test_the_admin_router_answers_404_and_405_like_the_gateway(harness: Harness) -> None:
    admin = Admin(harness)
    assert admin.call("GET", "/admin/nothing")[0] == 404
    status, headers, _ = admin.call("POST", "/admin/services/x", {})
    assert status == 405 and "PUT" in headers["allow"]


def test_put_a_service_with_an_inline_spec_routes_it_at_once(harness: Harness) -> None:
    admin = Admin(harness)
    assert admin.get("/pets/7")[0] == 404
    status, headers, body = admin.call(
        "PUT", "/admin/services/pets", {"upstream": admin.b.url, "openapi": PETS_SPEC}
    )
    assert status == 201, body
    assert body["operations"] == 2 and body["openapi"] == "inline" and body["generation"] == 2
    assert headers["etag"] == f'"{body["version"]}"'
    assert admin.get("/pets/7") == (200, {"upstream": "B", "path": "/pets/7"})
    assert admin.get("/pets/7/x")[0] == 404  # only the spec's paths
    # Replacing it answers 200, and moves it.
    status, _, body = admin.call(
        "PUT", "/admin/services/pets", {"upstream": admin.a.url, "openapi": PETS_SPEC}
    )
    assert status == 200 and body["generation"] == 3
    assert admin.get("/pets")[1]["upstream"] == "A"
    # The route table lists the operations by service.
    _, _, routes = admin.call("GET", "/admin/routes")
    ours = {
        (r["method"], r["template"], r["operation"])
        for r in routes["routes"]
        if r["service"] == "pets"
    }
    assert ours == {
        ("GET", "/pets", "listPets"),
        ("GET", "/pets/{id}", "getPet"),
        # Its operations as MCP tools (docs/mcp.md).
        ("POST", "/mcp", None),
        ("GET", "/mcp", None),
        ("DELETE", "/mcp", None),
    }
    # Each route's chain: getPet checks its path parameter, listPets has nothing to check,
    # the MCP endpoint (any Host) has its DNS-rebinding protection.
    steps = {r["operation"]: r["steps"] for r in routes["routes"] if r["service"] == "pets"}
    # With the admin listener, metrics are on: every route is counted (prometheus) first.
    assert steps == {
        "listPets": ["prometheus"],
        "getPet": ["prometheus", "contract"],
        None: ["prometheus", "mcp-host-guard"],
    }


def test_a_service_with_a_bad_spec_is_refused_and_nothing_changes(harness: Harness) -> None:
    admin = Admin(harness)
    _, _, before = admin.call("GET", "/admin/config")
    bad = json.loads(json.dumps(PETS_SPEC))
    bad["paths"]["/pets"]["get"]["parameters"] = [{"$ref": "#/components/parameters/missing"}]
    status, headers, body = admin.call(
        "PUT", "/admin/services/pets", {"upstream": admin.b.url, "openapi": bad}
    )
    assert status == 422 and headers["content-type"] == "application/problem+json"
    pointers = [p["pointer"] for p in body["problems"]]
    assert "/paths/~1pets/get/parameters/0/$ref" in pointers, body
    _, _, after = admin.call("GET", "/admin/config")
    assert after["version"] == before["version"] and after["generation"] == before["generation"]
    assert admin.get("/pets")[0] == 404
    assert admin.get("/stable/x")[1]["upstream"] == "A"


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"upstream": "ftp://x", "prefix": "/x"}, "/upstream"),
        ({"upstream": ["http://127.0.0.1:1", "nope"], "prefix": "/x"}, "/upstream/1"),
        ({"upstream": "http://127.0.0.1:1", "prefix": "/x", "timeout": 3}, "/timeout"),
        ({"upstream": "http://127.0.0.1:1", "prefix": "x"}, "/prefix"),
        ({"upstream": "http://127.0.0.1:1"}, ""),
    ],
)
def test_an_invalid_service_body_names_the_pointer_into_the_body(
    harness: Harness, body: dict[str, Any], pointer: str
) -> None:
    admin = Admin(harness)
    status, _, answer = admin.call("PUT", "/admin/services/x", body)
    assert status == 422, answer
    assert any(p["pointer"] == pointer for p in answer["problems"]), answer["problems"]
    assert admin.call("GET", "/admin/services/x")[0] == 404


def test_a_route_conflict_with_another_service_is_refused_naming_it(harness: Harness) -> None:
    admin = Admin(harness)
    status, _, body = admin.call(
        "PUT", "/admin/services/clash", {"upstream": admin.b.url, "prefix": "/stable"}
    )
    assert status == 422
    assert "'stable'" in body["detail"] and "/services/0" in body["detail"], body
    assert admin.get("/stable/x")[1]["upstream"] == "A"


def test_malformed_requests_get_clear_4xx(harness: Harness) -> None:
    admin = Admin(harness)
    assert admin.call("PUT", "/admin/services/x", raw=b"{not json")[0] == 400
    assert admin.call("PUT", "/admin/services/x", raw=b"[1, 2]")[0] == 400
    status, _, body = admin.call(
        "PUT", "/admin/services/x", raw=b"name: x", headers={"Content-Type": "text/yaml"}
    )
    assert status == 415, body
    status, _, body = admin.call(
        "PUT", "/admin/services/x", {"name": "y", "upstream": admin.b.url, "prefix": "/y"}
    )
    assert status == 400 and body["problems"][0]["pointer"] == "/name"
    # Tenants and consumers alike: the body may not name another object than the URL.
    for path, payload in (
        ("/admin/tenants/acme", {"name": "globex", "hosts": ["acme.test"]}),
        ("/admin/consumers/bob", {"name": "alice", "key-auth": {"key": "k" * 32}}),
    ):
        status, _, body = admin.call("PUT", path, payload)
        assert status == 400 and body["problems"][0]["pointer"] == "/name", body
        assert admin.call("GET", path)[0] == 404  # nothing was made


def test_patch_merges_and_delete_removes(harness: Harness) -> None:
    admin = Admin(harness)
    status, _, body = admin.call("PATCH", "/admin/services/stable", {"upstream": admin.b.url})
    assert status == 200, body
    assert admin.get("/stable/x")[1]["upstream"] == "B"
    _, _, got = admin.call("GET", "/admin/services/stable")
    assert got["config"] == {"name": "stable", "upstream": admin.b.url, "prefix": "/stable"}
    assert admin.call("PATCH", "/admin/services/nothing", {"prefix": "/n"})[0] == 404
    status, _, body = admin.call("DELETE", "/admin/services/stable")
    assert status == 200
    assert admin.get("/stable/x")[0] == 404
    assert admin.call("DELETE", "/admin/services/stable")[0] == 404


def test_if_match_refuses_a_change_made_on_an_old_version(harness: Harness) -> None:
    admin = Admin(harness)
    _, headers, _ = admin.call("GET", "/admin/services/stable")
    etag = headers["etag"]
    ok = admin.call(
        "PATCH",
        "/admin/services/stable",
        {"upstream": admin.b.url},
        headers={"Content-Type": "application/json", "If-Match": etag},
    )
    assert ok[0] == 200
    stale = admin.call(
        "PATCH",
        "/admin/services/stable",
        {"upstream": admin.a.url},
        headers={"Content-Type": "application/json", "If-Match": etag},
    )
    assert stale[0] == 412
    assert admin.get("/stable/x")[1]["upstream"] == "B"


def test_tenants_through_the_api(harness: Harness) -> None:
    admin = Admin(harness)
    body = {
        "hosts": ["acme.example.com"],
        "services": [{"name": "api", "upstream": admin.a.url, "prefix": "/"}],
    }
    assert admin.call("PUT", "/admin/tenants/acme", body)[0] == 201
    body = {
        "hosts": ["globex.example.com"],
        "services": [{"name": "api", "upstream": admin.b.url, "prefix": "/"}],
    }
    assert admin.call("PUT", "/admin/tenants/globex", body)[0] == 201
    assert admin.get("/x", host="acme.example.com")[1]["upstream"] == "A"
    assert admin.get("/x", host="globex.example.com")[1]["upstream"] == "B"
    # A service of one tenant, changed alone.
    status, _, _ = admin.call(
        "PATCH", "/admin/tenants/globex/services/api", {"upstream": admin.a.url}
    )
    assert status == 200
    assert admin.get("/x", host="globex.example.com")[1]["upstream"] == "A"
    _, _, listed = admin.call("GET", "/admin/tenants")
    assert [t["name"] for t in listed["tenants"]] == ["acme", "globex"]
    assert admin.call("GET", "/admin/tenants/nobody/services")[0] == 404
    assert (
        admin.call(
            "PUT", "/admin/tenants/nobody/services/x", {"upstream": admin.a.url, "prefix": "/"}
        )[0]
        == 404
    )
    assert admin.call("DELETE", "/admin/tenants/acme")[0] == 200
    assert admin.get("/x", host="acme.example.com")[0] == 404
    assert admin.get("/x", host="globex.example.com")[0] == 200


def test_changes_persist_in_the_state_file_and_come_back_after_a_restart(
    harness: Harness, tmp_path: Path
) -> None:
    a = harness.aiohttp(named_app("A"))
    b = harness.aiohttp(named_app("B"))
    config_file = tmp_path / "gateway.yaml"
    config_file.write_text(
        json.dumps(
            {
                "listeners": [{"address": "127.0.0.1:0"}],
                "services": [{"name": "stable", "upstream": a.url, "prefix": "/stable"}],
                "watch": False,
            }
        )
    )

    async def session(first: bool) -> list[str]:
        from runmcp_fast.config import load_config

        gateway = Gateway(
            load_config(config_file), source=str(config_file), config_path=str(config_file)
        )
        await gateway.start()
        try:
            if first:
                await gateway.register_service("pets", url=b.url, openapi=PETS_SPEC)
                await gateway.unregister_service("stable")
            return sorted(s.name for s in gateway.snapshot.services)
        finally:
            await gateway.stop()

    assert harness.gateway_loop.run(session(True)) == ["pets"]
    state = tmp_path / "gateway.yaml.state.json"
    saved = json.loads(state.read_text())
    assert saved["services"]["stable"] is None and saved["services"]["pets"]["openapi"] == PETS_SPEC
    # A restart comes back with the API's changes on top of the file.
    assert harness.gateway_loop.run(session(False)) == ["pets"]


def test_without_a_token_the_admin_listener_stays_on_loopback() -> None:
    data = {
        "listeners": [{"address": "127.0.0.1:0"}],
        "admin": {"address": "0.0.0.0:0", "token_env": "RUNMCP_TEST_NO_SUCH_VARIABLE"},
    }
    with pytest.raises(ConfigError) as caught:
        config = config_from_data(data)
        # (the config check may accept it; the gateway must not bind it)
        import asyncio

        asyncio.run(Gateway(config).start())
    assert any(p.pointer == "/admin/token" for p in caught.value.problems)


# -- consumers -----------------------------------------------------------------------------


def _keyed(admin: Admin, key: str | None) -> int:
    extra = f"apikey: {key}\r\n" if key else ""
    with RawClient(admin.gw.port) as client:
        client.send(f"GET /stable/x HTTP/1.1\r\nHost: gw\r\n{extra}\r\n".encode())
        return client.read_response()[0]


def test_consumers_live_through_the_admin_api_with_write_only_secrets(harness: Harness) -> None:
    admin = Admin(harness, {"plugins": {"key-auth": {}}})
    assert _keyed(admin, "alice-secret-key-1") == 401
    status, _, body = admin.call(
        "PUT",
        "/admin/consumers/alice",
        {"groups": ["staff"], "key-auth": {"key": "alice-secret-key-1"}},
    )
    assert status == 201, body
    assert body["credentials"] == ["key-auth"] and body["groups"] == ["staff"]
    assert _keyed(admin, "alice-secret-key-1") == 200
    # The key is never sent back, in any answer.
    status, _, body = admin.call("GET", "/admin/consumers/alice")
    assert status == 200 and body["config"]["key-auth"] == {"key": "(write-only)"}
    status, _, listed = admin.call("GET", "/admin/consumers")
    assert "alice-secret-key-1" not in json.dumps(listed)
    assert "alice-secret-key-1" not in json.dumps(admin.call("GET", "/admin/config")[2])
    # A patch of the groups keeps the key.
    status, _, body = admin.call("PATCH", "/admin/consumers/alice", {"groups": ["staff", "ops"]})
    assert status == 200 and body["groups"] == ["staff", "ops"]
    assert _keyed(admin, "alice-secret-key-1") == 200
    # A bad credential is refused whole, with its pointer; the running config stays.
    status, _, body = admin.call("PUT", "/admin/consumers/bob", {"key-auth": {"key": "short"}})
    assert status == 422
    assert body["problems"][0]["pointer"].endswith("/key-auth/key")
    assert admin.call("GET", "/admin/consumers/bob")[0] == 404
    status, _, body = admin.call("PUT", "/admin/consumers/bob", {"key-auth": {"kye": "x"}})
    assert status == 422 and body["problems"][0]["pointer"] == "/consumers/1/key-auth/kye"
    # Deleted: the key stops working at once.
    assert admin.call("DELETE", "/admin/consumers/alice")[0] == 200
    assert _keyed(admin, "alice-secret-key-1") == 401
    assert admin.call("DELETE", "/admin/consumers/alice")[0] == 404


def test_consumers_from_the_python_api_and_the_state_file(tmp_path: Any) -> None:
    loop = LoopThread()
    try:
        upstream = AiohttpUpstream(named_app("A"), loop)
        config_file = tmp_path / "gw.yaml"
        config_file.write_text(
            json.dumps(
                {
                    "listeners": [{"address": "127.0.0.1:0"}],
                    "plugins": {"key-auth": {}},
                    "services": [{"name": "s", "upstream": upstream.url, "prefix": "/"}],
                }
            )
        )

        async def first() -> None:
            gateway = Gateway(load_config(str(config_file)), config_path=str(config_file))
            await gateway.start()
            await gateway.register_consumer("carol", key_auth={"key": "carol-key-12345"})
            assert [c.name for c in gateway.snapshot.config.consumers] == ["carol"]
            await gateway.stop()

        async def second() -> int:
            gateway = Gateway(load_config(str(config_file)), config_path=str(config_file))
            await gateway.start()
            try:
                host, port = gateway.addresses[0].rsplit(":", 1)
                reader, writer = await asyncio.open_connection(host, int(port))
                writer.write(b"GET /x HTTP/1.1\r\nHost: h\r\napikey: carol-key-12345\r\n\r\n")
                line = await reader.readline()
                writer.close()
                return int(line.split()[1])
            finally:
                await gateway.stop()

        loop.run(first())
        assert loop.run(second()) == 200  # the consumer came back from the state file
        upstream.close()
    finally:
        loop.close()
