"""A one-service change rebuilds what that service needs: the others keep their route
plans and digests; the config version still follows the content."""

from __future__ import annotations

from typing import Any

import pytest

from runmcp_fast.config import config_from_data
from runmcp_fast.problems import SnapshotError
from runmcp_fast.snapshot import SpecCache, build_snapshot, config_version

SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "t", "version": "1"},
    "paths": {
        "/things": {"get": {"operationId": "list", "responses": {"200": {"description": "ok"}}}},
        "/things/{id}": {
            "parameters": [{"name": "id", "in": "path", "required": True}],
            "get": {"operationId": "one", "responses": {"200": {"description": "ok"}}},
        },
    },
}


def config(services: list[dict[str, Any]], tenants: list[dict[str, Any]] | None = None) -> Any:
    data: dict[str, Any] = {"listeners": [{"address": "127.0.0.1:0"}], "services": services}
    if tenants is not None:
        data["tenants"] = tenants
        data["tenancy"] = {"host": "{tenant}.example.com"}
    return config_from_data(data, source="<test>", base_dir=".")


def service(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "upstream": "http://127.0.0.1:9", "base_path": f"/{name}", **extra}


def no_pool(_upstream: object) -> None:
    return None


def test_an_unchanged_service_adds_its_kept_route_plan() -> None:
    cache = SpecCache()
    one = build_snapshot(
        config([service("a", openapi=SPEC), service("b", openapi=SPEC)]), no_pool, specs=cache
    )
    two = build_snapshot(
        config([service("a", openapi=SPEC), service("b", openapi=SPEC, strip_prefix="/b")]),
        no_pool,
        specs=cache,
    )
    a1, b1 = one.services
    a2, b2 = two.services
    assert a2 is a1 and a2.route_plan() is a1.route_plan()
    assert b2 is not b1
    routes = {(r.method, r.template): r.target for r in two.router.routes()}
    assert routes[("GET", "/a/things/{id}")] is a1.target(a1.spec.operations[1])  # type: ignore[union-attr]
    assert routes[("GET", "/b/things")] is b2.target(b2.spec.operations[0])  # type: ignore[union-attr]
    match = two.router.match(None, "GET", "/b/things/7")
    assert match is not None and match.params == {"id": "7"}


def test_a_conflict_found_while_adding_a_kept_plan_still_names_both_sides() -> None:
    cache = SpecCache()
    kept = service("b", openapi=SPEC, base_path="/a")
    build_snapshot(config([kept]), no_pool, specs=cache)
    # "a", new, takes the paths first; "b" adds its kept plan on top.
    with pytest.raises(SnapshotError) as caught:
        build_snapshot(config([service("a", openapi=SPEC), kept]), no_pool, specs=cache)
    text = "\n".join(str(p) for p in caught.value.problems)
    assert "GET /a/things conflicts with" in text, text
    assert "service 'b'" in text, text


def routed(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "upstream": "http://127.0.0.1:9", "prefix": f"/{name}", **extra}


def test_the_version_follows_every_service_and_tenant() -> None:
    base = [routed("a"), routed("b")]
    tenants = [{"name": "t1", "services": [routed("c")]}]
    version = config_version(config(base, tenants))
    assert config_version(config(base, tenants)) == version  # equal content, new objects
    assert config_version(config([routed("a"), routed("b", strip_prefix="/b")], tenants)) != (
        version
    )
    changed = [{"name": "t1", "services": [routed("c", strip_prefix="/c")]}]
    assert config_version(config(base, changed)) != version
    assert config_version(config(base, [{"name": "t2", "services": [routed("c")]}])) != version
    assert config_version(config(base, [{**tenants[0], "hosts": ["x.example.com"]}])) != version


def prefixed(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "upstream": "http://127.0.0.1:9", "prefix": f"/{name}", **extra}


def hosts_of(snapshot: Any) -> dict[str, tuple[str | None, ...]]:
    return {s.name: s.hosts for s in snapshot.services}


def test_a_kept_service_without_a_spec_follows_what_its_hosts_come_from() -> None:
    """A service whose config did not change is kept as it was, unless its hosts come
    out otherwise: base_domain (subdomain), its tenant's hosts, the tenancy template."""
    cache = SpecCache()

    def build(base_domain: str | None, tenant_hosts: list[str]) -> Any:
        data: dict[str, Any] = {
            "listeners": [{"address": "127.0.0.1:0"}],
            "services": [prefixed("a", subdomain=True), prefixed("b")],
            "tenants": [{"name": "t", "hosts": tenant_hosts, "services": [prefixed("c")]}],
        }
        if base_domain is not None:
            data["base_domain"] = base_domain
        return build_snapshot(config_from_data(data, source="<t>"), no_pool, specs=cache)

    one = build("example.com", ["t.example.com"])
    assert hosts_of(one) == {"a": ("a.example.com",), "b": (None,), "c": ("t.example.com",)}
    same = build("example.com", ["t.example.com"])
    assert hosts_of(same) == hosts_of(one)
    other = build("example.org", ["t2.example.org"])
    assert hosts_of(other) == {"a": ("a.example.org",), "b": (None,), "c": ("t2.example.org",)}
    assert other.router.match(b"a.example.org", "GET", "/a/x") is not None
    assert other.router.match(b"a.example.com", "GET", "/a/x") is None


def test_a_service_kept_by_a_failed_build_is_not_reused_unchecked() -> None:
    """Only a build that succeeded is reused from: a refused one leaves the last good."""
    cache = SpecCache()
    good = config([prefixed("a"), prefixed("b")])
    first = build_snapshot(good, no_pool, specs=cache)
    with pytest.raises(SnapshotError):
        build_snapshot(config([prefixed("a"), prefixed("b", prefix="/a")]), no_pool, specs=cache)
    again = build_snapshot(good, no_pool, specs=cache)
    assert [s for s in again.services] == [s for s in first.services]
    assert again.services[0] is first.services[0]
