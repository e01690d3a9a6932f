"""dump(), routes() and len(): the compiled table can be read by a person."""

from __future__ import annotations

from typing import Any

from runmcp_fast.router import Route, Router


class Handler:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<Handler {self.name}>"


ROUTES: list[tuple[str, str, Any, str | None]] = [
    ("GET", "/repos/{owner}/{repo}", "get-repo", None),
    ("GET", "/repos/{org}/{repo}/hooks", ("list-hooks", 7), None),
    ("POST", "/files/{name}.{ext}", Handler("upload"), None),
    ("*", "/legacy/*", Handler("legacy"), None),
    ("DELETE", "/static/{path*}", 42, None),
    ("PATCH", "/v1/{name}:cancel", "cancel-op", "api.example.com"),
    ("GET", "/users/{id}", "tenant-user", "{tenant}.example.com"),
    ("PUT", "/wild", "wild-card", "*.internal.example.org"),
]


def build() -> Router:
    router = Router()
    for method, template, target, host in ROUTES:
        router.add(method, template, target, host=host)
    router.compile()
    return router


def test_dump_contains_every_route() -> None:
    text = build().dump()
    assert isinstance(text, str)
    assert "\n" in text.strip()
    for method, template, target, host in ROUTES:
        assert method in text
        assert template in text, template
        assert repr(target) in text, repr(target)
        if host is not None:
            assert host in text, host


def test_dump_of_an_empty_router() -> None:
    router = Router()
    router.compile()
    assert isinstance(router.dump(), str)
    assert "/" not in router.dump()


def test_routes_lists_every_route_in_insertion_order() -> None:
    router = build()
    routes = router.routes()
    assert isinstance(routes, list)
    assert all(isinstance(r, Route) for r in routes)
    assert [(r.method, r.template, r.target, r.host) for r in routes] == ROUTES
    assert [r.is_prefix for r in routes] == [False, False, False, True, True, False, False, False]
    assert [r.param_names for r in routes] == [
        ("owner", "repo"),
        ("org", "repo"),
        ("name", "ext"),
        (),
        ("path",),
        ("name",),
        ("id",),
        (),
    ]
    assert routes[6].host_param_names == ("tenant",)


def test_routes_before_compile() -> None:
    router = Router()
    first = router.add("GET", "/a", "a")
    router.add("*", "/b/*", "b")
    assert [(r.method, r.template, r.target) for r in router.routes()] == [
        ("GET", "/a", "a"),
        ("*", "/b/*", "b"),
    ]
    assert router.routes()[0].template == first.template


def test_len_counts_routes() -> None:
    router = Router()
    assert len(router) == 0
    for i, (method, template, target, host) in enumerate(ROUTES, start=1):
        router.add(method, template, target, host=host)
        assert len(router) == i
    router.compile()
    assert len(router) == len(ROUTES)
    assert len(build().routes()) == len(ROUTES)
