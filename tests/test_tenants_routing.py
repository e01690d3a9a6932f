"""Hosts, subdomains, tenants and replicas, with real Host headers on real sockets."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from servers import Harness, RawClient, refused_port
from test_admin_api import named_app

from runmcp_fast.config import config_from_data
from runmcp_fast.snapshot import check_routes


def get(port: int, path: str, host: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    with RawClient(port) as client:
        client.send(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode())
        status, _, body = client.read_response()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


def who(port: int, path: str, host: str, headers: dict[str, str] | None = None) -> str | int:
    status, body = get(port, path, host, headers)
    return body["upstream"] if status == 200 else status


def test_services_on_subdomains_of_the_base_domain(harness: Harness) -> None:
    a, b = harness.aiohttp(named_app("A")), harness.aiohttp(named_app("B"))
    gw = harness.gateway(
        {
            "base_domain": "run.example.com",
            "services": [
                {"name": "petstore", "upstream": a.url, "prefix": "/", "subdomain": True},
                {"name": "billing", "upstream": b.url, "prefix": "/", "subdomain": "pay"},
                {"name": "own", "upstream": b.url, "prefix": "/own", "host": ["own.example.org"]},
            ],
        }
    )
    assert who(gw.port, "/x", "petstore.run.example.com") == "A"
    assert who(gw.port, "/x", "PetStore.Run.Example.com:8080") == "A"
    assert who(gw.port, "/x", "pay.run.example.com") == "B"
    assert who(gw.port, "/x", "billing.run.example.com") == 404
    assert who(gw.port, "/x", "run.example.com") == 404
    assert who(gw.port, "/own/1", "own.example.org") == "B"
    assert who(gw.port, "/own/1", "other.example.org") == 404


def tenant_config(a: str, b: str, **extra: Any) -> dict[str, Any]:
    return {
        "tenancy": {"host": "{tenant}.example.com"},
        "tenants": [
            # The same service names in both tenants: no collision.
            {
                "name": "acme",
                "services": [
                    {"name": "api", "upstream": a, "prefix": "/api"},
                    {"name": "docs", "upstream": a, "prefix": "/docs", "subdomain": True},
                ],
            },
            {
                "name": "globex",
                "hosts": ["globex.example.com", "api.globex.test"],
                "services": [{"name": "api", "upstream": b, "prefix": "/api"}],
            },
        ],
        **extra,
    }


def test_a_tenants_host_never_reaches_another_tenants_service(harness: Harness) -> None:
    a, b = harness.aiohttp(named_app("A")), harness.aiohttp(named_app("B"))
    gw = harness.gateway(tenant_config(a.url, b.url))
    assert who(gw.port, "/api/1", "acme.example.com") == "A"
    assert who(gw.port, "/api/1", "globex.example.com") == "B"
    assert who(gw.port, "/api/1", "api.globex.test") == "B"
    # acme's docs are on its own subdomain only.
    assert who(gw.port, "/docs/x", "docs.acme.example.com") == "A"
    assert who(gw.port, "/docs/x", "acme.example.com") == 404
    assert who(gw.port, "/docs/x", "globex.example.com") == 404
    assert who(gw.port, "/docs/x", "docs.globex.example.com") == 404
    # Hosts that are no tenant's, or lookalikes, reach nothing.
    for host in (
        "example.com",
        "initech.example.com",
        "acme.example.com.evil",
        "xacme.example.com",
    ):
        assert who(gw.port, "/api/1", host) == 404, host


def test_a_tenant_header_selects_the_tenant_whatever_the_host(harness: Harness) -> None:
    a, b = harness.aiohttp(named_app("A")), harness.aiohttp(named_app("B"))
    gw = harness.gateway(
        tenant_config(a.url, b.url, tenancy={"host": "{tenant}.example.com", "header": "X-Tenant"})
    )
    assert who(gw.port, "/api/1", "gw.local", {"X-Tenant": "acme"}) == "A"
    assert who(gw.port, "/api/1", "gw.local", {"x-tenant": "GLOBEX"}) == "B"
    # The header wins over the host: acme's host with globex's header is globex.
    assert who(gw.port, "/api/1", "acme.example.com", {"X-Tenant": "globex"}) == "B"
    assert who(gw.port, "/api/1", "gw.local", {"X-Tenant": "initech"}) == 404
    # Without the header, the host decides.
    assert who(gw.port, "/api/1", "globex.example.com") == "B"


def test_replicas_share_the_load_and_a_dead_one_is_skipped(harness: Harness) -> None:
    a, b = harness.aiohttp(named_app("A")), harness.aiohttp(named_app("B"))
    dead = f"http://127.0.0.1:{refused_port()}"
    # Round robin (the default is least request, random among idle replicas).
    service = {"name": "api", "upstream": [a.url, dead, b.url], "prefix": "/"}
    gw = harness.gateway({"services": [{**service, "balancer": {"policy": "round_robin"}}]})
    seen = [who(gw.port, f"/{i}", "gw.local") for i in range(30)]
    # A refused connection moves the request on to another replica: no 502.
    assert set(seen) == {"A", "B"}, seen
    assert abs(seen.count("A") - seen.count("B")) <= 4, seen
    snapshot = gw.gateway.snapshot
    pools = {p.name: p for p in snapshot.services[0].pools}
    assert pools[dead].down_until > 0


def test_all_replicas_down_is_a_502(harness: Harness) -> None:
    dead = [f"http://127.0.0.1:{refused_port()}" for _ in range(2)]
    gw = harness.gateway({"services": [{"name": "api", "upstream": dead, "prefix": "/"}]})
    status, body = get(gw.port, "/x", "gw.local")
    assert status == 502, body


def test_conflicting_routes_between_services_name_both() -> None:
    config = config_from_data(
        {
            "listeners": [{"address": "127.0.0.1:0"}],
            "services": [
                {"name": "one", "upstream": "http://127.0.0.1:1", "prefix": "/api"},
                {"name": "two", "upstream": "http://127.0.0.1:2", "prefix": "/api/"},
            ],
        }
    )
    problems = check_routes(config)
    assert len(problems) == 1
    problem = problems[0]
    assert (
        problem.pointer == "/services/1"
        and "'one'" in problem.message
        and "/services/0" in problem.message
    )


def test_the_same_prefix_on_two_tenants_hosts_is_no_conflict() -> None:
    config = config_from_data(
        {
            "listeners": [{"address": "127.0.0.1:0"}],
            **tenant_config("http://127.0.0.1:1", "http://127.0.0.1:2"),
        }
    )
    assert check_routes(config) == []


def host_app(name: str) -> web.Application:
    """Says who it is, the path and the Host it was asked with."""

    async def handle(request: web.Request) -> web.Response:
        return web.json_response(
            {"upstream": name, "path": request.path_qs, "host": request.headers["Host"]}
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def test_replicas_with_paths_of_their_own(harness: Harness) -> None:
    # Each replica gets the request under its own path, and (host_header: upstream)
    # its own Host; an MCP server's replicas must still share one (test_config_tenants).
    a, b = harness.aiohttp(host_app("A")), harness.aiohttp(host_app("B"))
    service = {
        "name": "x",
        "upstream": [f"{a.url}/v1", f"{b.url}/v2"],
        "prefix": "/api",
        "strip_prefix": "/api",
        "host_header": "upstream",
        "balancer": {"policy": "round_robin"},
    }
    gw = harness.gateway({"services": [service]})
    seen = {}
    for i in range(4):
        status, body = get(gw.port, f"/api/items/{i}?q=1", "gw.local")
        assert status == 200, body
        seen.setdefault(body["upstream"], []).append((body["path"], body["host"]))
    host_a, host_b = a.url.split("//")[1], b.url.split("//")[1]
    assert seen == {
        "A": [("/v1/items/0?q=1", host_a), ("/v1/items/2?q=1", host_a)],
        "B": [("/v2/items/1?q=1", host_b), ("/v2/items/3?q=1", host_b)],
    }
