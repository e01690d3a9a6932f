"""Methods and hosts: the "Methods" and "Hosts" sections of docs/routing.md, and
`allowed()`, as tables of (routes, request, expected).

Routes are `(method, template, target)` or `(method, template, target, host)`;
requests are `(host, method, path)`; `expected` is `None` for a miss, else
`(target, params, host_params)`.
"""

from __future__ import annotations

from typing import Any

import pytest

from runmcp_fast.router import Router

RouteSpec = tuple[str, str, Any] | tuple[str, str, Any, str | None]
Request = tuple[str | bytes | None, str, str]
Expected = tuple[Any, dict[str, str], dict[str, str]] | None
Case = tuple[list[RouteSpec], list[tuple[Request, Expected]]]


def build(routes: list[RouteSpec]) -> Router:
    router = Router()
    for route in routes:
        router.add(*route)
    router.compile()
    return router


def outcome(router: Router, request: Request) -> Expected:
    m = router.match(*request)
    return None if m is None else (m.target, m.params, m.host_params)


def run_table(case: Case) -> None:
    routes, requests = case
    router = build(routes)
    got = [(request, outcome(router, request)) for request, _ in requests]
    assert got == requests


def cases(table: dict[str, Case]) -> Any:
    return pytest.mark.parametrize("case", list(table.values()), ids=list(table))


# --- methods at one route position ---------------------------------------------------

METHODS: dict[str, Case] = {
    "methods are case-sensitive": (
        [("GET", "/a", "GET"), ("get", "/a", "get")],
        [
            ((None, "GET", "/a"), ("GET", {}, {})),
            ((None, "get", "/a"), ("get", {}, {})),
            ((None, "Get", "/a"), None),
            ((None, "HEAD", "/a"), ("GET", {}, {})),
            ((None, "head", "/a"), None),
        ],
    ),
    "star serves every method": (
        [("*", "/a", "any")],
        [
            ((None, "GET", "/a"), ("any", {}, {})),
            ((None, "HEAD", "/a"), ("any", {}, {})),
            ((None, "DELETE", "/a"), ("any", {}, {})),
            ((None, "PURGE", "/a"), ("any", {}, {})),
            ((None, "get", "/a"), ("any", {}, {})),
            ((None, "GET", "/b"), None),
        ],
    ),
    "method itself, then GET for HEAD, then star": (
        [("GET", "/a", "get"), ("*", "/a", "any")],
        [
            ((None, "GET", "/a"), ("get", {}, {})),
            ((None, "HEAD", "/a"), ("get", {}, {})),
            ((None, "POST", "/a"), ("any", {}, {})),
            ((None, "get", "/a"), ("any", {}, {})),
        ],
    ),
    "explicit HEAD beats GET": (
        [("GET", "/a", "get"), ("HEAD", "/a", "head"), ("*", "/a", "any")],
        [
            ((None, "HEAD", "/a"), ("head", {}, {})),
            ((None, "GET", "/a"), ("get", {}, {})),
            ((None, "OPTIONS", "/a"), ("any", {}, {})),
        ],
    ),
    "HEAD without GET falls to star": (
        [("POST", "/a", "post"), ("*", "/a", "any")],
        [((None, "HEAD", "/a"), ("any", {}, {})), ((None, "POST", "/a"), ("post", {}, {}))],
    ),
    "HEAD alone": (
        [("HEAD", "/a", "head")],
        [((None, "HEAD", "/a"), ("head", {}, {})), ((None, "GET", "/a"), None)],
    ),
    "only HEAD falls back to GET": (
        [("GET", "/a", "get")],
        [
            ((None, "HEAD", "/a"), ("get", {}, {})),
            ((None, "OPTIONS", "/a"), None),
            ((None, "POST", "/a"), None),
        ],
    ),
    "prefix routes at one position, different methods": (
        [("GET", "/a/*", "get"), ("POST", "/a/{rest*}", "post")],
        [
            ((None, "GET", "/a/b/c"), ("get", {}, {})),
            ((None, "HEAD", "/a/b/c"), ("get", {}, {})),
            ((None, "POST", "/a/b/c"), ("post", {"rest": "b/c"}, {})),
            ((None, "PUT", "/a/b/c"), None),
        ],
    ),
    "same position, different methods, own names": (
        [("GET", "/a/{x}", "get"), ("*", "/a/{y}", "any"), ("DELETE", "/a/{z}", "del")],
        [
            ((None, "GET", "/a/1"), ("get", {"x": "1"}, {})),
            ((None, "HEAD", "/a/1"), ("get", {"x": "1"}, {})),
            ((None, "POST", "/a/1"), ("any", {"y": "1"}, {})),
            ((None, "DELETE", "/a/1"), ("del", {"z": "1"}, {})),
        ],
    ),
}


@cases(METHODS)
def test_methods(case: Case) -> None:
    run_table(case)


# --- backtracking when the method is missing at the preferred position ------------------

METHOD_BACKTRACK: dict[str, Case] = {
    "static without the method falls to param": (
        [("GET", "/users/me", "me"), ("DELETE", "/users/{id}", "delete-user")],
        [
            ((None, "GET", "/users/me"), ("me", {}, {})),
            ((None, "DELETE", "/users/me"), ("delete-user", {"id": "me"}, {})),
            ((None, "POST", "/users/me"), None),
            ((None, "GET", "/users/42"), None),
        ],
    ),
    "static without the method falls to prefix": (
        [("GET", "/a/b", "static"), ("POST", "/a/{rest*}", "rest")],
        [
            ((None, "POST", "/a/b"), ("rest", {"rest": "b"}, {})),
            ((None, "GET", "/a/b"), ("static", {}, {})),
            ((None, "GET", "/a/c"), None),
        ],
    ),
    "deep static without the method falls to a shallower param": (
        [("GET", "/a/b/c", "static"), ("PUT", "/a/{x}/c", "param")],
        [
            ((None, "PUT", "/a/b/c"), ("param", {"x": "b"}, {})),
            ((None, "GET", "/a/b/c"), ("static", {}, {})),
        ],
    ),
    "HEAD takes GET at the static position before HEAD at the param": (
        # all routes accepting HEAD compete on their trace; the static one is smaller
        [("GET", "/a/b", "static-get"), ("HEAD", "/a/{x}", "param-head")],
        [
            ((None, "HEAD", "/a/b"), ("static-get", {}, {})),
            ((None, "HEAD", "/a/c"), ("param-head", {"x": "c"}, {})),
            ((None, "GET", "/a/c"), None),
        ],
    ),
    "star at the static position beats GET at the param": (
        [("*", "/a/b", "static-any"), ("GET", "/a/{x}", "param-get")],
        [
            ((None, "GET", "/a/b"), ("static-any", {}, {})),
            ((None, "GET", "/a/c"), ("param-get", {"x": "c"}, {})),
            ((None, "POST", "/a/c"), None),
        ],
    ),
    "HEAD falls to a GET further away when the static has neither": (
        [("POST", "/a/b", "static-post"), ("GET", "/a/{x}", "param-get")],
        [((None, "HEAD", "/a/b"), ("param-get", {"x": "b"}, {}))],
    ),
    "method miss inside a segment backtracks to a longer param": (
        [("GET", "/f/{name}.json", "json"), ("POST", "/f/{file}", "file")],
        [
            ((None, "POST", "/f/a.json"), ("file", {"file": "a.json"}, {})),
            ((None, "GET", "/f/a.json"), ("json", {"name": "a"}, {})),
        ],
    ),
}


@cases(METHOD_BACKTRACK)
def test_method_backtracking(case: Case) -> None:
    run_table(case)


def test_head_fallback_returns_the_get_route() -> None:
    router = build([("GET", "/a/{x}", "get")])
    m = router.match(None, "HEAD", "/a/1")
    assert m is not None
    assert m.route.method == "GET"
    assert m.template == "/a/{x}"
    m = build([("*", "/a", "any")]).match(None, "PATCH", "/a")
    assert m is not None
    assert m.route.method == "*"


# --- allowed() -------------------------------------------------------------------------

ALLOWED: dict[str, tuple[list[RouteSpec], list[tuple[tuple[str | None, str], set[str]]]]] = {
    "GET brings HEAD": (
        [("GET", "/a", 1), ("POST", "/a", 2)],
        [((None, "/a"), {"GET", "HEAD", "POST"}), ((None, "/b"), set())],
    ),
    "HEAD alone": ([("HEAD", "/a", 1)], [((None, "/a"), {"HEAD"})]),
    "GET and HEAD": ([("GET", "/a", 1), ("HEAD", "/a", 2)], [((None, "/a"), {"GET", "HEAD"})]),
    "star": (
        [("*", "/a", 1), ("GET", "/a", 2)],
        [((None, "/a"), {"*", "GET", "HEAD"}), ((None, "/a/"), set())],
    ),
    "star only": ([("*", "/a", 1)], [((None, "/a"), {"*"})]),
    "case kept": ([("get", "/a", 1)], [((None, "/a"), {"get"})]),
    "every route position that accepts the path": (
        [
            ("GET", "/users/me", 1),
            ("DELETE", "/users/{id}", 2),
            ("PATCH", "/users/{rest*}", 3),
        ],
        [
            ((None, "/users/me"), {"GET", "HEAD", "DELETE", "PATCH"}),
            ((None, "/users/42"), {"DELETE", "PATCH"}),
            ((None, "/users/42/x"), {"PATCH"}),
            ((None, "/users/me?x=1"), {"GET", "HEAD", "DELETE", "PATCH"}),
        ],
    ),
    "paths that match nothing": (
        [("*", "/{rest*}", 1)],
        [
            ((None, "/a/../b"), set()),
            ((None, "/a%zz"), set()),
            ((None, "*"), set()),
            ((None, "http://x/a"), set()),
            ((None, "/a"), {"*"}),
        ],
    ),
    "union over the tables of the host": (
        [
            ("GET", "/a", 1, "api.example.com"),
            ("PUT", "/a", 2, "*.example.com"),
            ("POST", "/a", 3),
            ("DELETE", "/a", 4, "other.example.org"),
        ],
        [
            (("api.example.com", "/a"), {"GET", "HEAD", "PUT", "POST"}),
            (("API.example.com:443", "/a"), {"GET", "HEAD", "PUT", "POST"}),
            (("www.example.com", "/a"), {"PUT", "POST"}),
            (("example.com", "/a"), {"POST"}),
            ((None, "/a"), {"POST"}),
            (("other.example.org", "/a"), {"DELETE", "POST"}),
        ],
    ),
}


@pytest.mark.parametrize("case", list(ALLOWED.values()), ids=list(ALLOWED))
def test_allowed(
    case: tuple[list[RouteSpec], list[tuple[tuple[str | None, str], set[str]]]],
) -> None:
    routes, requests = case
    router = build(routes)
    for (host, path), expected in requests:
        got = router.allowed(host, path)
        assert isinstance(got, tuple)
        assert len(got) == len(set(got)), got
        assert set(got) == expected, (host, path)


def test_allowed_for_405() -> None:
    router = build([("GET", "/repos/{owner}/{repo}", "get-repo"), ("PUT", "/repos/x/y", "put")])
    assert router.match(None, "DELETE", "/repos/a/b") is None
    assert router.allowed(None, "/repos/a/b") == ("GET", "HEAD")
    assert set(router.allowed(None, b"/repos/x/y")) == {"GET", "HEAD", "PUT"}


# --- hosts -----------------------------------------------------------------------------

HOSTS: dict[str, Case] = {
    "default table serves every host": (
        [("GET", "/a", "default")],
        [
            ((None, "GET", "/a"), ("default", {}, {})),
            (("api.example.com", "GET", "/a"), ("default", {}, {})),
            (("anything:1", "GET", "/a"), ("default", {}, {})),
        ],
    ),
    "exact host": (
        [("GET", "/a", "api", "api.example.com")],
        [
            (("api.example.com", "GET", "/a"), ("api", {}, {})),
            (("API.EXAMPLE.COM", "GET", "/a"), ("api", {}, {})),
            (("Api.Example.Com:8443", "GET", "/a"), ("api", {}, {})),
            (("api.example.com.", "GET", "/a"), ("api", {}, {})),
            (("api.example.com.:80", "GET", "/a"), ("api", {}, {})),
            ((b"api.example.com:80", "GET", "/a"), ("api", {}, {})),
            ((None, "GET", "/a"), None),
            (("example.com", "GET", "/a"), None),
            (("x.api.example.com", "GET", "/a"), None),
            (("api.example.co", "GET", "/a"), None),
            (("api.example.com", "GET", "/b"), None),
        ],
    ),
    "exact host registered in upper case": (
        [("GET", "/a", "api", "API.Example.com")],
        [
            (("api.example.com", "GET", "/a"), ("api", {}, {})),
            (("API.EXAMPLE.COM:1", "GET", "/a"), ("api", {}, {})),
        ],
    ),
    "IPv6 literal": (
        [("GET", "/a", "v6", "[::1]"), ("GET", "/a", "v4", "127.0.0.1")],
        [
            (("[::1]", "GET", "/a"), ("v6", {}, {})),
            (("[::1]:8080", "GET", "/a"), ("v6", {}, {})),
            (("127.0.0.1:8080", "GET", "/a"), ("v4", {}, {})),
            (("127.0.0.1", "GET", "/a"), ("v4", {}, {})),
            (("[::2]:8080", "GET", "/a"), None),
            (("localhost", "GET", "/a"), None),
        ],
    ),
    "star label matches exactly one non-empty label": (
        [("GET", "/a", "wild", "*.example.com")],
        [
            (("a.example.com", "GET", "/a"), ("wild", {}, {})),
            (("A.EXAMPLE.com:8443", "GET", "/a"), ("wild", {}, {})),
            (("a.example.com.", "GET", "/a"), ("wild", {}, {})),
            (("example.com", "GET", "/a"), None),
            ((".example.com", "GET", "/a"), None),
            (("a.b.example.com", "GET", "/a"), None),
            (("a.example.org", "GET", "/a"), None),
            (("aexample.com", "GET", "/a"), None),
            ((None, "GET", "/a"), None),
        ],
    ),
    "named label returns host_params": (
        [("GET", "/users/{id}", "user", "{tenant}.example.com")],
        [
            (("acme.example.com", "GET", "/users/1"), ("user", {"id": "1"}, {"tenant": "acme"})),
            (
                ("acme.example.com:8443", "GET", "/users/1"),
                ("user", {"id": "1"}, {"tenant": "acme"}),
            ),
            (("acme.example.com.", "GET", "/users/1"), ("user", {"id": "1"}, {"tenant": "acme"})),
            ((b"acme.example.com", "GET", "/users/1"), ("user", {"id": "1"}, {"tenant": "acme"})),
            # the host is case-insensitive, so the label is returned in one case
            (("ACME.Example.COM", "GET", "/users/1"), ("user", {"id": "1"}, {"tenant": "acme"})),
            (("a.b.example.com", "GET", "/users/1"), None),
            (("example.com", "GET", "/users/1"), None),
        ],
    ),
    "inner and several labels": (
        [
            ("GET", "/a", "region", "api.{region}.example.com"),
            ("GET", "/b", "two", "{svc}.{region}.example.com"),
        ],
        [
            (("api.eu.example.com", "GET", "/a"), ("region", {}, {"region": "eu"})),
            (("web.eu.example.com", "GET", "/a"), None),
            (("api.eu.example.com", "GET", "/b"), ("two", {}, {"svc": "api", "region": "eu"})),
            (("api..example.com", "GET", "/a"), None),
        ],
    ),
    "star and named patterns are one table, each route keeps its names": (
        [
            ("GET", "/a", "star", "*.example.com"),
            ("GET", "/b", "named", "{tenant}.example.com"),
            ("GET", "/c", "other-name", "{org}.example.com"),
        ],
        [
            (("x.example.com", "GET", "/a"), ("star", {}, {})),
            (("x.example.com", "GET", "/b"), ("named", {}, {"tenant": "x"})),
            (("x.example.com", "GET", "/c"), ("other-name", {}, {"org": "x"})),
        ],
    ),
    "missing host uses the default table only": (
        [
            ("GET", "/a", "api", "api.example.com"),
            ("GET", "/a", "wild", "*.example.com"),
            ("GET", "/a", "default"),
        ],
        [
            ((None, "GET", "/a"), ("default", {}, {})),
            (("api.example.com", "GET", "/a"), ("api", {}, {})),
            (("b.example.com", "GET", "/a"), ("wild", {}, {})),
            (("example.org", "GET", "/a"), ("default", {}, {})),
        ],
    ),
}


@cases(HOSTS)
def test_hosts(case: Case) -> None:
    run_table(case)


# --- table order: exact, then wildcards by specificity, then default ------------------------

TABLE_ORDER: dict[str, Case] = {
    "most specific table with a route for the method and path wins": (
        [
            ("GET", "/x", "exact", "api.eu.example.com"),
            ("GET", "/x", "w3", "*.eu.example.com"),
            ("GET", "/y", "w3", "*.eu.example.com"),
            ("GET", "/x", "w2", "*.*.example.com"),
            ("GET", "/y", "w2", "*.*.example.com"),
            ("GET", "/z", "w2", "*.*.example.com"),
            ("GET", "/x", "w1", "{a}.{b}.{c}.com"),
            ("GET", "/y", "w1", "{a}.{b}.{c}.com"),
            ("GET", "/z", "w1", "{a}.{b}.{c}.com"),
            ("GET", "/w", "w1", "{a}.{b}.{c}.com"),
            ("GET", "/x", "default"),
            ("GET", "/y", "default"),
            ("GET", "/z", "default"),
            ("GET", "/w", "default"),
            ("GET", "/v", "default"),
        ],
        [
            (("api.eu.example.com", "GET", "/x"), ("exact", {}, {})),
            (("api.eu.example.com", "GET", "/y"), ("w3", {}, {})),
            (("api.eu.example.com", "GET", "/z"), ("w2", {}, {})),
            (
                ("api.eu.example.com", "GET", "/w"),
                ("w1", {}, {"a": "api", "b": "eu", "c": "example"}),
            ),
            (("api.eu.example.com", "GET", "/v"), ("default", {}, {})),
            (("api.eu.example.com", "GET", "/u"), None),
            (("web.eu.example.com", "GET", "/x"), ("w3", {}, {})),
            (("api.us.example.com", "GET", "/x"), ("w2", {}, {})),
            (("api.us.other.com", "GET", "/x"), ("w1", {}, {"a": "api", "b": "us", "c": "other"})),
            (("api.eu.example.org", "GET", "/x"), ("default", {}, {})),
            ((None, "GET", "/x"), ("default", {}, {})),
        ],
    ),
    "table order beats path priority": (
        # the exact table's param route wins over the default table's static route
        [("GET", "/{x}", "exact-param", "api.example.com"), ("GET", "/static", "default")],
        [
            (("api.example.com", "GET", "/static"), ("exact-param", {"x": "static"}, {})),
            (("www.example.com", "GET", "/static"), ("default", {}, {})),
        ],
    ),
    "fall through when the specific table lacks the method": (
        [
            ("GET", "/a", "exact-get", "api.example.com"),
            ("POST", "/a", "default-post"),
            ("GET", "/b", "default-b"),
        ],
        [
            (("api.example.com", "GET", "/a"), ("exact-get", {}, {})),
            (("api.example.com", "POST", "/a"), ("default-post", {}, {})),
            (("api.example.com", "GET", "/b"), ("default-b", {}, {})),
            (("api.example.com", "DELETE", "/a"), None),
        ],
    ),
    "HEAD is served by GET in the first table": (
        [("GET", "/a", "exact-get", "api.example.com"), ("HEAD", "/a", "default-head")],
        [
            (("api.example.com", "HEAD", "/a"), ("exact-get", {}, {})),
            (("www.example.com", "HEAD", "/a"), ("default-head", {}, {})),
        ],
    ),
    "star route in the specific table serves every method": (
        [("*", "/a", "exact-any", "api.example.com"), ("DELETE", "/a", "default-delete")],
        [(("api.example.com", "DELETE", "/a"), ("exact-any", {}, {}))],
    ),
    "wildcards with equal specificity are ordered by pattern text": (
        [
            ("GET", "/a", "star-first", "*.eu.example.com"),
            ("GET", "/a", "api", "api.*.example.com"),
        ],
        [
            (("api.eu.example.com", "GET", "/a"), ("star-first", {}, {})),
            (("api.us.example.com", "GET", "/a"), ("api", {}, {})),
            (("web.eu.example.com", "GET", "/a"), ("star-first", {}, {})),
        ],
    ),
}


@cases(TABLE_ORDER)
def test_table_order(case: Case) -> None:
    run_table(case)


# --- host folding is ASCII only ------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "target"),
    [
        ("kelvin.example.com", "tenant-k"),
        ("KELVIN.example.com", "tenant-k"),
        ("\u212aelvin.example.com", "default"),  # KELVIN SIGN: str.lower() makes it "k"
        ("kelvin.example.com:\u0668\u0660", "default"),  # Arabic-Indic digits are no port
        (" kelvin.example.com\t", "tenant-k"),  # HTTP's optional white space
        ("kelvin.example.com\u00a0", "default"),  # NBSP is not white space in HTTP
    ],
)
def test_host_folding_is_ascii_only(host: str, target: str) -> None:
    router = Router()
    router.add("GET", "/a", "tenant-k", host="kelvin.example.com")
    router.add("GET", "/a", "default")
    router.compile()
    m = router.match(host, "GET", "/a")
    assert m is not None
    assert m.target == target
