"""Hypothesis properties of the compiled Router.

1. It never raises on a request, whatever the host, method and path (any
   Unicode including lone surrogates, any bytes), except the TypeError the
   .pyi implies for an argument of the wrong type; a Match's lazily decoded
   params never raise either.
2. It agrees with tests/reference_matcher.py on generated route tables
   (templates built from a small alphabet so that routes overlap, prefix
   routes, methods, hosts) and generated requests.

Runs are deterministic by default (`derandomize`); set HYPOTHESIS_EXPLORE=1
for a longer random search.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import DrawFn, composite
from reference_matcher import RefMatch, RefRouteConflict, RefRouter, RefTemplateError

from runmcp_fast.router import Match, RouteConflict, Router, TemplateError

_EXPLORE = bool(os.environ.get("HYPOTHESIS_EXPLORE"))
# Per test, not a loaded profile: loading one would change every other
# Hypothesis test of the session too.
_BASE = settings(
    deadline=None, derandomize=not _EXPLORE, suppress_health_check=[HealthCheck.too_slow]
)


def examples(n: int) -> int:
    """n for the default run (a few seconds), 20 x n when exploring."""
    return n * 20 if _EXPLORE else n


def answer(m: Match | RefMatch | None) -> tuple[Any, str, dict[str, str], dict[str, str]] | None:
    return None if m is None else (m.target, m.template, m.params, m.host_params)


# --------------------------------------------------------------------------
# 1. Never raises

# Every code point, lone surrogates included (Hypothesis leaves them out by
# default): a str path is user input in an embedding application.
any_text = st.text(st.characters(exclude_categories=()), max_size=40)
# Text made of the characters routing cares about, so that paths get deep.
path_text = st.lists(
    st.sampled_from(["/", "a", "b", ".", "%", "2", "F", "e", "?", "#", "é", "\ud800", " ", "{"]),
    max_size=30,
).map("".join)
any_request_part = st.one_of(any_text, path_text, st.binary(max_size=40))


ROUTES: list[tuple[str, str, str | None]] = [
    ("GET", "/a/{x}", None),
    ("GET", "/a/b", None),
    ("DELETE", "/a/{y}.{z}", None),
    ("*", "/p/*", None),
    ("GET", "/p/{x}/q", None),
    ("GET", "/f/{name}.{ext}", None),
    ("GET", "/%C3%A9/{x}%2F{y}", None),
    ("POST", "/{rest*}", None),
    ("GET", "/", None),
    ("GET", "/h/{x}", "{t}.example.com"),
    ("GET", "/h/{x}", "api.example.com"),
    ("PUT", "/h/{x}", "*.*.com"),
    ("*", "/*", "x.example.com"),
]


def _build(router: Router | RefRouter) -> Any:
    for i, (method, template, host) in enumerate(ROUTES):
        router.add(method, template, f"r{i}", host)
    router.compile()
    return router


TABLE: Router = _build(Router())
REFERENCE: RefRouter = _build(RefRouter())

# ASCII hosts without white space: the doc says nothing of surrounding white
# space (the router strips it) or of non-ASCII case folding.
hosts = st.one_of(
    st.none(),
    st.sampled_from([b"", b".", b":80", b":", b"X", b"\x00", b".:1"]).map(
        lambda b: b"api.EXAMPLE.com" + b
    ),
    st.tuples(
        st.lists(
            st.sampled_from(["api", "API", "x", "X", "example", "com", "", "*", "[::1]", "a-b"]),
            min_size=1,
            max_size=4,
        ).map(".".join),
        st.sampled_from(["", ".", ":80", ".:8443", ":", ":x"]),
    ).map("".join),
)
methods = st.sampled_from(["GET", "HEAD", "POST", "DELETE", "PUT", "get", "*", b"GET", ""])


@settings(_BASE, max_examples=examples(1000))
@given(st.none() | any_request_part, any_request_part, any_request_part)
def test_never_raises(host: str | bytes | None, method: str | bytes, path: str | bytes) -> None:
    m = TABLE.match(host, method, path)
    if m is not None:
        assert (m.route.template, m.route.target) == (m.template, m.target)
        values = [*m.params.values(), *m.host_params.values()]
        assert all(isinstance(v, str) for v in values)
    allowed = TABLE.allowed(host, path)
    assert isinstance(allowed, tuple)
    assert all(isinstance(x, str) for x in allowed)


@settings(_BASE, max_examples=examples(1000))
@given(hosts, methods, any_request_part)
def test_agrees_on_any_request(
    host: str | bytes | None, method: str | bytes, path: str | bytes
) -> None:
    want = answer(REFERENCE.match(host, method, path))
    assert answer(TABLE.match(host, method, path)) == want
    assert TABLE.allowed(host, path) == REFERENCE.allowed(host, path)


@pytest.mark.parametrize(
    ("host", "method", "path"),
    [
        (1, "GET", "/"),
        (None, 1, "/"),
        (None, "GET", 1),
        (None, "GET", ["/"]),
        (None, None, "/"),
        (None, "GET", None),
        (1.5, "GET", "/"),
    ],
)
def test_wrong_types_raise_type_error(host: Any, method: Any, path: Any) -> None:
    with pytest.raises(TypeError):
        TABLE.match(host, method, path)
    if method == "GET":
        with pytest.raises(TypeError):
            TABLE.allowed(host, path)


# Template text where the syntax is: braces, `*`, `/`, dots, escapes.
template_text = st.one_of(
    st.lists(
        st.sampled_from(["/", "{", "}", "*", "x", "y", ".", "%2e", "%", "2", "é", "?", " ", "{a}"]),
        max_size=12,
    ).map("".join),
    any_text,
)


@settings(_BASE, max_examples=examples(1000))
@given(template_text, st.sampled_from([None, "api.example.com", "{h}.example.com"]))
def test_template_acceptance_agrees(template: str, host: str | None) -> None:
    """add() accepts exactly what the reference accepts, and refuses with
    TemplateError only."""
    try:
        RefRouter().add("GET", template, "t", host)
        want = "ok"
    except RefTemplateError:
        want = "TemplateError"
    try:
        Router().add("GET", template, "t", host)
        got = "ok"
    except TemplateError:
        got = "TemplateError"
    assert got == want


# --------------------------------------------------------------------------
# 2. Generated tables

# Static pieces that collide with each other and with parameter values: an
# escape of an unreserved char next to the char itself, an encoded slash in
# both cases, dots, sub-delims, non-ASCII raw and escaped, a hex digit after
# a parameter (`{x}2F` splits `%2F`), `*` that is not a prefix.
STATIC = ["a", "b", "ab", "A", "%41", ".", "x.y", "-", "~", "%7e", ":", "%2F", "%2f", "2F", "é",
          "%C3%A9", " ", "*", "(", "'"]  # fmt: skip
# Rarely: pieces a template may not hold (both must refuse the same ones).
BAD_STATIC = ["%", "%zz", "?", "}", "{"]
VALUES = ["a", "b", "A", "%41", "x", ".", "x.y", "-", "%2F", "%2f", "é", "%c3%a9", ":", "~",
          "ab", "%FF", "2F", "*"]  # fmt: skip
PATH_NOISE = ["/", "//", "a", "b", ".", "..", "%2e", "%", "?q", "#f", "é", "%41", "x.y", "-"]


@composite
def segments(draw: DrawFn) -> list[str | None]:
    """One segment's pieces: static text, or None for a parameter."""
    static = st.integers(0, 30).flatmap(lambda n: st.sampled_from(BAD_STATIC if n == 0 else STATIC))
    piece = st.one_of(static, st.none())
    # An empty segment now and then: `/a//b`, `/a//*`.
    return draw(st.lists(piece, min_size=draw(st.sampled_from([1, 1, 1, 0])), max_size=3))


@composite
def templates(draw: DrawFn) -> str:
    names = iter(f"{draw(st.sampled_from(['p', 'q']))}{i}" for i in range(100))
    parts = draw(st.lists(segments(), max_size=3))
    # Mostly keep parameters apart; sometimes let them touch (refused).
    body = ""
    for pieces in parts:
        seg = ""
        for piece in pieces:
            if piece is None:
                if seg.endswith("}") and draw(st.integers(0, 9)):
                    seg += "-"
                seg += "{" + next(names) + "}"
            else:
                seg += piece
        body += "/" + seg
    tail = draw(st.sampled_from(["", "", "", "/", "/*", "/{rest*}"]))
    return (body + tail) or "/"


route_hosts = st.sampled_from(
    [None, None, None, None, "api.example.com", "*.example.com", "{t}.example.com", "x.*.com"]
)
request_hosts = st.sampled_from(
    [None, "api.example.com", "API.example.com:1", "b.example.com", "x.example.com", "x.y.com", "z"]
)
route_methods = st.sampled_from(["GET", "POST", "HEAD", "*"])
request_methods = st.sampled_from(["GET", "HEAD", "POST", "PUT"])


@composite
def concrete_paths(draw: DrawFn, template: str) -> str:
    """A path for the template with small values, maybe perturbed."""
    out = ""
    i = 0
    while i < len(template):
        if template[i] == "{":
            end = template.index("}", i)
            if template[end - 1] == "*":
                out += "/".join(draw(st.lists(st.sampled_from(VALUES), max_size=2)))
            else:
                out += "".join(draw(st.lists(st.sampled_from(VALUES), min_size=1, max_size=3)))
            i = end + 1
        elif template[i:] == "*" and template.endswith("/*"):
            out += "/".join(draw(st.lists(st.sampled_from(VALUES), max_size=2)))
            i += 1
        else:
            out += template[i]
            i += 1
    if draw(st.integers(0, 3)) == 0:
        at = draw(st.integers(0, len(out)))
        out = out[:at] + draw(st.sampled_from(PATH_NOISE)) + out[at:]
    return out


@settings(_BASE, max_examples=examples(150))
@given(st.data())
def test_agrees_on_generated_tables(data: st.DataObject) -> None:
    router, reference = Router(), RefRouter()
    # A few templates shared by several routes: the same position with other
    # methods and hosts (and conflicts) is where the method order matters.
    pool = data.draw(st.lists(templates(), min_size=1, max_size=5), label="templates")
    table = data.draw(
        st.lists(
            st.tuples(route_methods, st.sampled_from(pool), route_hosts), min_size=1, max_size=10
        ),
        label="routes",
    )
    accepted: list[str] = []
    for i, (method, template, host) in enumerate(table):
        outcomes = []
        for impl, errors in (
            (router, (TemplateError, RouteConflict)),
            (reference, (RefTemplateError, RefRouteConflict)),
        ):
            try:
                impl.add(method, template, i, host)
                outcomes.append("ok")
            except errors as exc:
                outcomes.append(type(exc).__name__.removeprefix("Ref"))
        assert outcomes[0] == outcomes[1], (method, template, host, outcomes)
        event(f"add: {outcomes[0]}")
        if outcomes[0] == "ok":
            accepted.append(template)
    router.compile()
    reference.compile()
    for _ in range(8):
        if accepted and data.draw(st.booleans()):
            path = data.draw(concrete_paths(data.draw(st.sampled_from(accepted))), label="path")
        else:
            path = "/" + "".join(data.draw(st.lists(st.sampled_from(PATH_NOISE), max_size=6)))
        host = data.draw(request_hosts, label="host")
        method = data.draw(request_methods, label="method")
        want = answer(reference.match(host, method, path))
        event("request: hit" if want else "request: miss")
        assert answer(router.match(host, method, path)) == want, (host, method, path)
        assert router.allowed(host, path) == reference.allowed(host, path), (host, path)
