"""Path matching: the "Paths" and "Priority" sections of docs/routing.md as tables of
(routes, request path, expected), in the style of matchit's tests.

`expected` is `None` for a miss, else `(target, params)`.
"""

from __future__ import annotations

from typing import Any

import pytest

from runmcp_fast.router import Router

Expected = tuple[Any, dict[str, str]] | None
Case = tuple[list[tuple[str, str, Any]], list[tuple[str, Expected]]]


def build(routes: list[tuple[str, str, Any]]) -> Router:
    router = Router()
    for route in routes:
        router.add(*route)
    router.compile()
    return router


def outcome(router: Router, path: str | bytes, method: str = "GET") -> Expected:
    m = router.match(None, method, path)
    return None if m is None else (m.target, m.params)


def run_table(case: Case) -> None:
    routes, requests = case
    router = build(routes)
    got = [(path, outcome(router, path)) for path, _ in requests]
    assert got == requests


def cases(table: dict[str, Case]) -> Any:
    return pytest.mark.parametrize("case", list(table.values()), ids=list(table))


def test_doc_example() -> None:
    r = Router()
    r.add("GET", "/repos/{owner}/{repo}", "get-repo")
    r.add("GET", "/repos/{org}/{repo}/hooks", "list-hooks")
    r.add("GET", "/files/{name}.{ext}", "file")
    r.add("*", "/legacy/*", "legacy")
    r.add("GET", "/users/{id}", "tenant-user", host="{tenant}.example.com")
    r.compile()
    m = r.match("acme.example.com:8443", "GET", "/users/42?x=1")
    assert m is not None
    assert (m.target, m.template, m.params, m.host_params) == (
        "tenant-user",
        "/users/{id}",
        {"id": "42"},
        {"tenant": "acme"},
    )
    assert r.match(None, "DELETE", "/repos/a/b") is None
    assert r.allowed(None, "/repos/a/b") == ("GET", "HEAD")
    assert outcome(r, "/repos/a/b/hooks") == ("list-hooks", {"org": "a", "repo": "b"})
    assert outcome(r, "/files/a.tar.gz") == ("file", {"name": "a", "ext": "tar.gz"})
    assert outcome(r, "/legacy/x", "PURGE") == ("legacy", {})


# --- priority: static > parameter > prefix rest, with backtracking --------------------

PRIORITY: dict[str, Case] = {
    "static beats param": (
        [("GET", "/users/me", "me"), ("GET", "/users/{id}", "user")],
        [
            ("/users/me", ("me", {})),
            ("/users/mex", ("user", {"id": "mex"})),
            ("/users/m", ("user", {"id": "m"})),
            ("/users/", None),
            ("/users", None),
        ],
    ),
    "insertion order does not matter": (
        [("GET", "/users/{id}", "user"), ("GET", "/users/me", "me")],
        [("/users/me", ("me", {})), ("/users/you", ("user", {"id": "you"}))],
    ),
    "backtrack from static when it fails deeper": (
        [("GET", "/users/me/settings", "settings"), ("GET", "/users/{id}/posts", "posts")],
        [
            ("/users/me/settings", ("settings", {})),
            ("/users/me/posts", ("posts", {"id": "me"})),
            ("/users/you/posts", ("posts", {"id": "you"})),
            ("/users/you/settings", None),
            ("/users/me/other", None),
        ],
    ),
    "backtrack over several levels": (
        [
            ("GET", "/a/b/{x}/d", "1"),
            ("GET", "/a/{y}/c/e", "2"),
            ("GET", "/{z}/b/c/f", "3"),
            ("GET", "/a/b/c/g", "4"),
        ],
        [
            ("/a/b/c/d", ("1", {"x": "c"})),
            ("/a/b/c/e", ("2", {"y": "b"})),
            ("/a/b/c/f", ("3", {"z": "a"})),
            ("/a/b/c/g", ("4", {})),
            ("/a/b/c/h", None),
            ("/q/b/c/f", ("3", {"z": "q"})),
            ("/q/b/c/e", None),
        ],
    ),
    "param beats prefix rest": (
        [("GET", "/files/{name}", "one"), ("GET", "/files/{rest*}", "rest")],
        [
            ("/files/a", ("one", {"name": "a"})),
            ("/files/a/b", ("rest", {"rest": "a/b"})),
            ("/files/", ("rest", {"rest": ""})),
            ("/files", ("rest", {"rest": ""})),
        ],
    ),
    "param route failing deeper falls back to prefix": (
        [("GET", "/a/{x}/b", "param"), ("GET", "/a/{rest*}", "rest")],
        [
            ("/a/y/b", ("param", {"x": "y"})),
            ("/a/y/c", ("rest", {"rest": "y/c"})),
            ("/a/y", ("rest", {"rest": "y"})),
            ("/a/y/b/c", ("rest", {"rest": "y/b/c"})),
        ],
    ),
    "static exact beats prefix at the same path": (
        [("GET", "/a", "exact"), ("GET", "/a/*", "prefix")],
        [("/a", ("exact", {})), ("/a/", ("prefix", {})), ("/a/b", ("prefix", {}))],
    ),
    "longer prefix wins": (
        [("GET", "/*", "root"), ("GET", "/a/*", "a"), ("GET", "/a/b/*", "ab")],
        [
            ("/", ("root", {})),
            ("/x", ("root", {})),
            ("/a", ("a", {})),
            ("/ab", ("root", {})),
            ("/a/x", ("a", {})),
            ("/a/b", ("ab", {})),
            ("/a/bc", ("a", {})),
            ("/a/b/c/d", ("ab", {})),
        ],
    ),
    "static prefix text beats an earlier param": (
        # at position 1 the prefix route consumes 'l' as static (0), the other as param (1)
        [("GET", "/legacy/*", "legacy"), ("GET", "/{a}/b", "param")],
        [
            ("/legacy/b", ("legacy", {})),
            ("/other/b", ("param", {"a": "other"})),
            ("/legacyx/b", ("param", {"a": "legacyx"})),
        ],
    ),
    "trace is compared character by character inside a segment": (
        [("GET", "/a{x}", "a-param"), ("GET", "/{y}b", "param-b")],
        [
            ("/ab", ("a-param", {"x": "b"})),
            ("/zb", ("param-b", {"y": "z"})),
            ("/az", ("a-param", {"x": "z"})),
            ("/b", None),
        ],
    ),
    "longer static head wins inside a segment": (
        [("GET", "/a{x}", "a"), ("GET", "/ab{y}", "ab")],
        [
            ("/abc", ("ab", {"y": "c"})),
            ("/ab", ("a", {"x": "b"})),
            ("/ac", ("a", {"x": "c"})),
        ],
    ),
    "static head beats param with static tail": (
        [("GET", "/{a}.json", "ext"), ("GET", "/x{b}", "x")],
        [("/x.json", ("x", {"b": ".json"})), ("/y.json", ("ext", {"a": "y"}))],
    ),
    "static tail beats whole-segment param": (
        [("GET", "/files/{name}.json", "json"), ("GET", "/files/{name}", "any")],
        [
            ("/files/a.json", ("json", {"name": "a"})),
            ("/files/a.txt", ("any", {"name": "a.txt"})),
            ("/files/.json", ("any", {"name": ".json"})),
            ("/files/a.json.json", ("json", {"name": "a.json"})),
        ],
    ),
    "in-segment params beat whole-segment param": (
        [("GET", "/files/{name}.{ext}", "split"), ("GET", "/files/{file}", "whole")],
        [
            ("/files/a.b", ("split", {"name": "a", "ext": "b"})),
            ("/files/ab", ("whole", {"file": "ab"})),
            ("/files/a.", ("whole", {"file": "a."})),
            ("/files/.b", ("whole", {"file": ".b"})),
        ],
    ),
    "prefix with static head beats a whole-path param": (
        # '/a' is consumed as static by the prefix route, as a param by the other
        [("GET", "/a/*", "prefix"), ("GET", "/{x}", "param")],
        [("/a", ("prefix", {})), ("/b", ("param", {"x": "b"})), ("/ab", ("param", {"x": "ab"}))],
    ),
    "in-segment split that fails deeper gives way to another route": (
        [
            ("GET", "/{a}.{b}/one", "one"),
            ("GET", "/{c}-{d}/two", "two"),
            ("GET", "/{a}.{b}.{c}/three", "three"),
            ("GET", "/{p}/four", "four"),
        ],
        [
            ("/x.y-z/two", ("two", {"c": "x.y", "d": "z"})),
            ("/x.y-z/one", ("one", {"a": "x", "b": "y-z"})),
            ("/x.y.z/three", ("three", {"a": "x", "b": "y", "c": "z"})),
            ("/x.y.z/one", ("one", {"a": "x", "b": "y.z"})),
            ("/x.y.z/four", ("four", {"p": "x.y.z"})),
            ("/x.y/five", None),
        ],
    ),
    "shortest value is per route: a longer value wins when the shorter fails deeper": (
        [("GET", "/{a}.{b}/one", "one"), ("GET", "/{a}.json/two", "two")],
        [
            ("/x.y.json/two", ("two", {"a": "x.y"})),
            ("/x.y.json/one", ("one", {"a": "x", "b": "y.json"})),
            ("/x.json/two", ("two", {"a": "x"})),
            ("/x.json/one", ("one", {"a": "x", "b": "json"})),
        ],
    ),
    "root and static siblings": (
        [("GET", "/", "root"), ("GET", "/{x}", "x"), ("GET", "/a", "a")],
        [("/", ("root", {})), ("/a", ("a", {})), ("/b", ("x", {"x": "b"})), ("//", None)],
    ),
}


@cases(PRIORITY)
def test_priority(case: Case) -> None:
    run_table(case)


# --- sibling params with different names ---------------------------------------------

SIBLINGS: dict[str, Case] = {
    "github repos": (
        [
            ("GET", "/repos/{owner}/{repo}", "get-repo"),
            ("GET", "/repos/{org}/{repo}/hooks", "list-hooks"),
            ("GET", "/repos/{owner}/{repo}/issues/{issue_number}", "get-issue"),
            ("GET", "/repos/{template_owner}/{template_repo}/generate", "generate"),
            ("GET", "/repos/{o}/{r}/git/{ref*}", "git"),
        ],
        [
            ("/repos/a/b", ("get-repo", {"owner": "a", "repo": "b"})),
            ("/repos/a/b/hooks", ("list-hooks", {"org": "a", "repo": "b"})),
            (
                "/repos/a/b/issues/3",
                ("get-issue", {"owner": "a", "repo": "b", "issue_number": "3"}),
            ),
            ("/repos/a/b/generate", ("generate", {"template_owner": "a", "template_repo": "b"})),
            (
                "/repos/a/b/git/refs/heads/main",
                ("git", {"o": "a", "r": "b", "ref": "refs/heads/main"}),
            ),
            ("/repos/a/b/other", None),
        ],
    ),
    "in-segment names": (
        [
            ("GET", "/files/{name}.{ext}", "file"),
            ("GET", "/files/{base}.{suffix}/raw", "raw"),
        ],
        [
            ("/files/a.b", ("file", {"name": "a", "ext": "b"})),
            ("/files/a.b/raw", ("raw", {"base": "a", "suffix": "b"})),
        ],
    ),
    "same position, names from the route that wins after backtracking": (
        [("GET", "/a/{x}/b", "xb"), ("GET", "/a/{y}/c", "yc"), ("GET", "/a/{z}", "z")],
        [
            ("/a/1/b", ("xb", {"x": "1"})),
            ("/a/1/c", ("yc", {"y": "1"})),
            ("/a/1", ("z", {"z": "1"})),
            ("/a/1/d", None),
        ],
    ),
}


@cases(SIBLINGS)
def test_sibling_param_names(case: Case) -> None:
    run_table(case)


# --- params inside segments and the shortest-value rule --------------------------------

IN_SEGMENT: dict[str, Case] = {
    "name.ext": (
        [("GET", "/files/{name}.{ext}", "f")],
        [
            ("/files/a.txt", ("f", {"name": "a", "ext": "txt"})),
            ("/files/a.tar.gz", ("f", {"name": "a", "ext": "tar.gz"})),
            ("/files/a..b", ("f", {"name": "a", "ext": ".b"})),
            ("/files/a.", None),
            ("/files/.a", None),
            ("/files/ab", None),
            ("/files/a.b/c", None),
            # %2E is an unreserved escape: decoded before matching, so it is a real dot
            ("/files/a%2Eb.c", ("f", {"name": "a", "ext": "b.c"})),
        ],
    ),
    "colon verb": (
        [("GET", "/v1/{name}:cancel", "cancel")],
        [
            ("/v1/op:cancel", ("cancel", {"name": "op"})),
            ("/v1/a:b:cancel", ("cancel", {"name": "a:b"})),
            ("/v1/:cancel", None),
            ("/v1/op:cancelx", None),
            ("/v1/op:Cancel", None),
            # ':' is reserved: its escape is kept, so it is not the static ':'
            ("/v1/op%3Acancel", None),
            ("/v1/op%3acancel", None),
        ],
    ),
    "colon verb next to plain resource": (
        [("GET", "/v1/{name}:cancel", "cancel"), ("GET", "/v1/{name}", "get")],
        [
            ("/v1/op:cancel", ("cancel", {"name": "op"})),
            ("/v1/op", ("get", {"name": "op"})),
            ("/v1/op%3Acancel", ("get", {"name": "op:cancel"})),
            ("/v1/op:other", ("get", {"name": "op:other"})),
        ],
    ),
    "odata": (
        [("GET", "/reports/get(period='{period}')", "report")],
        [
            ("/reports/get(period='D7')", ("report", {"period": "D7"})),
            ("/reports/get(period='2024-01')", ("report", {"period": "2024-01"})),
            ("/reports/get(period='a')')", ("report", {"period": "a')"})),
            ("/reports/get(period='D7')?$format=json", ("report", {"period": "D7"})),
            ("/reports/get(period=D7)", None),
            ("/reports/get(period='')", None),
            # "'" is a sub-delim: an escaped quote is not the static quote
            ("/reports/get(period=%27D7%27)", None),
        ],
    ),
    "three params in one segment": (
        [("GET", "/{a}-{b}-{c}", "abc")],
        [
            ("/x-y-z", ("abc", {"a": "x", "b": "y", "c": "z"})),
            ("/x-y-z-w", ("abc", {"a": "x", "b": "y", "c": "z-w"})),
            ("/x--y-z", ("abc", {"a": "x", "b": "-y", "c": "z"})),
            ("/x-y", None),
        ],
    ),
    "prefix and suffix static": (
        [("GET", "/img/thumb-{id}.png", "thumb")],
        [
            ("/img/thumb-1.png", ("thumb", {"id": "1"})),
            ("/img/thumb-1.png.png", ("thumb", {"id": "1.png"})),
            ("/img/thumb-.png", None),
            ("/img/thumb1.png", None),
        ],
    ),
    "hostile backtracking matches nothing and returns": (
        [("GET", "/" + ".".join(f"{{p{i}}}" for i in range(12)) + ".end", "hostile")],
        [
            ("/" + "x." * 400 + "nope", None),
            ("/" + "x." * 12 + "end", ("hostile", {f"p{i}": "x" for i in range(12)})),
        ],
    ),
    # Memoised backtracking: a long segment that fails the split template
    # still reaches the whole-segment route behind it (exact, not cut short).
    "long segment falls back to the whole-segment param": (
        [("GET", "/{a}.{b}.json", "split"), ("GET", "/{z}", "whole")],
        [
            ("/" + "a." * 362 + "x", ("whole", {"z": "a." * 362 + "x"})),
            ("/" + "a." * 2000 + "x", ("whole", {"z": "a." * 2000 + "x"})),
            ("/" + "a." * 2000 + "json", ("split", {"a": "a", "b": "a." * 1998 + "a"})),
        ],
    ),
}


@cases(IN_SEGMENT)
def test_params_inside_segments(case: Case) -> None:
    run_table(case)


# --- prefix routes ------------------------------------------------------------------

PREFIX: dict[str, Case] = {
    "anonymous rest": (
        [("GET", "/legacy/*", "legacy")],
        [
            ("/legacy", ("legacy", {})),
            ("/legacy/", ("legacy", {})),
            ("/legacy/a/b", ("legacy", {})),
            ("/legacy?x=1", ("legacy", {})),
            ("/legacyx", None),
            ("/legac", None),
            ("/", None),
            ("/Legacy/a", None),
        ],
    ),
    "named rest": (
        [("GET", "/legacy/{rest*}", "legacy")],
        [
            ("/legacy", ("legacy", {"rest": ""})),
            ("/legacy/", ("legacy", {"rest": ""})),
            ("/legacy/a", ("legacy", {"rest": "a"})),
            ("/legacy/a/b", ("legacy", {"rest": "a/b"})),
            ("/legacy/a/b/", ("legacy", {"rest": "a/b/"})),
            ("/legacy//a", ("legacy", {"rest": "/a"})),
            ("/legacy/a%2Fb/c", ("legacy", {"rest": "a/b/c"})),
            ("/legacy/a%20b", ("legacy", {"rest": "a b"})),
            ("/legacy/a?b/c", ("legacy", {"rest": "a"})),
            ("/legacyx", None),
        ],
    ),
    "root rest matches every path": (
        [("GET", "/{rest*}", "all")],
        [
            ("/", ("all", {"rest": ""})),
            ("/a", ("all", {"rest": "a"})),
            ("/a/b/c", ("all", {"rest": "a/b/c"})),
            ("//", ("all", {"rest": "/"})),
            ("", None),
            ("a", None),
        ],
    ),
    "root star matches every path": (
        [("GET", "/*", "all")],
        [("/", ("all", {})), ("/a/b", ("all", {})), ("/x.y", ("all", {}))],
    ),
    "params before the rest": (
        [("GET", "/t/{tenant}/files/{path*}", "files")],
        [
            ("/t/acme/files/a/b.txt", ("files", {"tenant": "acme", "path": "a/b.txt"})),
            ("/t/acme/files", ("files", {"tenant": "acme", "path": ""})),
            ("/t/acme/filesx", None),
            ("/t//files/a", None),
        ],
    ),
}


@cases(PREFIX)
def test_prefix_routes(case: Case) -> None:
    run_table(case)


# --- preparing the path: query, fragment, start ----------------------------------------

PREPARE: dict[str, Case] = {
    "query and fragment are cut": (
        [("GET", "/a", "a"), ("GET", "/", "root"), ("GET", "/p/{x}", "p")],
        [
            ("/a?", ("a", {})),
            ("/a?x=1", ("a", {})),
            ("/a#frag", ("a", {})),
            ("/a?x=1#frag", ("a", {})),
            ("/a#frag?x=1", ("a", {})),
            ("/?x", ("root", {})),
            ("/#x", ("root", {})),
            ("/a?x=/../b", ("a", {})),
            ("/a?x=%zz", ("a", {})),
            ("/a#%zz", ("a", {})),
            ("/p/1?q", ("p", {"x": "1"})),
            ("/p/?q", None),
            ("/a/?x", None),
            # an escaped '?' or '#' is data, not a delimiter
            ("/p/a%3Fb", ("p", {"x": "a?b"})),
            ("/p/a%23b", ("p", {"x": "a#b"})),
        ],
    ),
    "paths that do not start with /": (
        [("GET", "/{rest*}", "all"), ("POST", "/*", "star")],
        [
            ("*", None),
            ("", None),
            ("a", None),
            ("a/b", None),
            ("http://example.com/a", None),
            ("https://example.com/", None),
            ("?x=/a", None),
            ("#/a", None),
        ],
    ),
}


@cases(PREPARE)
def test_prepare_path(case: Case) -> None:
    run_table(case)


# --- percent-encoding normalisation -----------------------------------------------------

ENCODING: dict[str, Case] = {
    "unreserved escapes are decoded, either hex case": (
        [("GET", "/~user/Api-x_y.z", "static")],
        [
            ("/~user/Api-x_y.z", ("static", {})),
            ("/%7Euser/Api-x_y.z", ("static", {})),
            ("/%7euser/%41pi%2Dx%5Fy%2Ez", ("static", {})),
            ("/%7euser/%61pi-x_y.z", None),  # %61 is 'a', and paths are case-sensitive
        ],
    ),
    "other escapes keep their escape with upper-case hex": (
        [("GET", "/a%2Fb", "slash"), ("GET", "/c%3Ad", "colon"), ("GET", "/e%C3%A9", "e")],
        [
            ("/a%2Fb", ("slash", {})),
            ("/a%2fb", ("slash", {})),
            ("/a/b", None),
            ("/c%3Ad", ("colon", {})),
            ("/c%3ad", ("colon", {})),
            ("/c:d", None),
            ("/e%c3%a9", ("e", {})),
            ("/e%C3%a9", ("e", {})),
            ("/eé", ("e", {})),
        ],
    ),
    "%2F never splits a segment": (
        [("GET", "/users/{id}", "user"), ("GET", "/users/{a}/{b}", "two")],
        [
            ("/users/a%2Fb", ("user", {"id": "a/b"})),
            ("/users/a%2fb", ("user", {"id": "a/b"})),
            ("/users/a/b", ("two", {"a": "a", "b": "b"})),
            ("/users/%2F", ("user", {"id": "/"})),
            ("/users/a%2F", ("user", {"id": "a/"})),
        ],
    ),
    "%2F is not a separator for static text either": (
        [("GET", "/a/b", "ab")],
        [("/a/b", ("ab", {})), ("/a%2Fb", None), ("/a%2fb", None)],
    ),
    "non-ASCII raw or escaped, template raw": (
        [("GET", "/café/{x}", "cafe")],
        [
            ("/café/1", ("cafe", {"x": "1"})),
            ("/caf%C3%A9/1", ("cafe", {"x": "1"})),
            ("/caf%c3%a9/1", ("cafe", {"x": "1"})),
            ("/cafe%CC%81/1", None),  # other Unicode form: different bytes
            ("/cafe/1", None),
        ],
    ),
    "non-ASCII raw or escaped, template escaped": (
        [("GET", "/caf%c3%a9/{x}", "cafe")],
        [
            ("/café/1", ("cafe", {"x": "1"})),
            ("/caf%C3%A9/1", ("cafe", {"x": "1"})),
            ("/caf%c3%a9/1", ("cafe", {"x": "1"})),
        ],
    ),
    "characters that may not appear raw are escaped": (
        [("GET", "/a%20b", "space"), ("GET", "/q%22%3C%3E%5C%5E%60%7B%7C%7D", "odd")],
        [
            ("/a b", ("space", {})),
            ("/a%20b", ("space", {})),
            ('/q"<>\\^`{|}', ("odd", {})),
            ("/q%22%3c%3e%5c%5e%60%7b%7c%7d", ("odd", {})),
        ],
    ),
    "invalid escapes match nothing": (
        [("GET", "/{rest*}", "all"), ("GET", "/p/{x}", "p")],
        [
            ("/%", None),
            ("/a%", None),
            ("/a%2", None),
            ("/a%zz", None),
            ("/a%g0", None),
            ("/a%0g", None),
            ("/p/%", None),
            ("/p/100%", None),
            ("/p/%%41", None),
            ("/p/100%25", ("p", {"x": "100%"})),
            ("/p/%2541", ("p", {"x": "%41"})),
        ],
    ),
}


@cases(ENCODING)
def test_percent_encoding(case: Case) -> None:
    run_table(case)


# --- params are decoded as UTF-8 ---------------------------------------------------------

PARAM_DECODING = [
    ("/p/42", "42"),
    ("/p/jos%C3%A9", "josé"),
    ("/p/jos%c3%a9", "josé"),
    ("/p/josé", "josé"),
    ("/p/日本", "日本"),
    ("/p/%E6%97%A5%E6%9C%AC", "日本"),
    ("/p/a%20b", "a b"),
    ("/p/a b", "a b"),
    ("/p/a+b", "a+b"),
    ("/p/%2B", "+"),
    ("/p/a%2Fb", "a/b"),
    ("/p/%7E", "~"),
    ("/p/a{b}", "a{b}"),
    ("/p/a[0]", "a[0]"),
    ("/p/x%00y", "x\x00y"),
    ("/p/x\ty", "x\ty"),
    ("/p/%FF", "\ufffd"),
    ("/p/a%C3", "a\ufffd"),
    ("/p/a%C3b", "a\ufffdb"),
    ("/p/%C3%28", "\ufffd("),
    ("/p/%ED%A0%80", "\ufffd\ufffd\ufffd"),  # an encoded surrogate is invalid UTF-8
    ("/p/%F0%9F%98%80", "😀"),
    ("/p/😀", "😀"),
]


@pytest.mark.parametrize(("path", "value"), PARAM_DECODING, ids=[p for p, _ in PARAM_DECODING])
def test_param_decoding(path: str, value: str) -> None:
    router = build([("GET", "/p/{x}", "p")])
    assert outcome(router, path) == ("p", {"x": value})


def test_invalid_utf8_in_bytes_path() -> None:
    router = build([("GET", "/p/{x}", "p")])
    assert outcome(router, b"/p/\xff") == ("p", {"x": "\ufffd"})
    assert outcome(router, b"/p/a\xc3") == ("p", {"x": "a\ufffd"})
    assert outcome(router, b"/p/a\xc3\xa9") == ("p", {"x": "aé"})


# --- dot segments -------------------------------------------------------------------------

DOT_SEGMENTS: dict[str, Case] = {
    "dot segments match nothing, even under a catch-all": (
        [
            ("GET", "/{rest*}", "all"),
            ("GET", "/public/{x*}", "public"),
            ("GET", "/admin", "admin"),
        ],
        [
            ("/.", None),
            ("/..", None),
            ("/./a", None),
            ("/../a", None),
            ("/a/.", None),
            ("/a/..", None),
            ("/a/./b", None),
            ("/a/../b", None),
            ("/public/../admin", None),
            ("/public/./x", None),
            ("/a/%2e", None),
            ("/a/%2E", None),
            ("/a/%2e%2E", None),
            ("/a/%2E%2e/b", None),
            ("/a/.%2e", None),
            ("/a/%2e./b", None),
            ("/public/%2e%2e/admin", None),
            ("/a/../", None),
        ],
    ),
    "dots that are not dot segments": (
        [("GET", "/{rest*}", "all")],
        [
            ("/a/.b", ("all", {"rest": "a/.b"})),
            ("/a/..b", ("all", {"rest": "a/..b"})),
            ("/a/b..", ("all", {"rest": "a/b.."})),
            ("/a/...", ("all", {"rest": "a/..."})),
            ("/a/%2e%2e%2e", ("all", {"rest": "a/..."})),
            ("/a/..%2F", ("all", {"rest": "a/../"})),
            ("/a?../..", ("all", {"rest": "a"})),
            # a backslash is data (escaped as %5C), not a separator
            ("/a\\..\\b", ("all", {"rest": "a\\..\\b"})),
            ("/a/..\\b", ("all", {"rest": "a/..\\b"})),
        ],
    ),
}


@cases(DOT_SEGMENTS)
def test_dot_segments(case: Case) -> None:
    run_table(case)


# --- trailing slashes, empty segments, case -------------------------------------------------

SEGMENTS: dict[str, Case] = {
    "trailing slash is significant": (
        [("GET", "/pets", "pets"), ("GET", "/pets/{id}", "pet")],
        [
            ("/pets", ("pets", {})),
            ("/pets/", None),
            ("/pets/1", ("pet", {"id": "1"})),
            ("/pets/1/", None),
            ("/pets//1", None),
            ("//pets", None),
        ],
    ),
    "trailing slash route": (
        [("GET", "/pets/", "pets-slash")],
        [("/pets/", ("pets-slash", {})), ("/pets", None), ("/pets//", None)],
    ),
    "empty segments only match an empty-segment template": (
        [("GET", "/a//b", "double"), ("GET", "/a/{x}/b", "param")],
        [
            ("/a//b", ("double", {})),
            ("/a/x/b", ("param", {"x": "x"})),
            ("/a///b", None),
        ],
    ),
    "a parameter is never empty": (
        [("GET", "/{a}/{b}", "ab")],
        [("/x/y", ("ab", {"a": "x", "b": "y"})), ("//y", None), ("/x/", None), ("//", None)],
    ),
    "no matrix parameters or other special segments": (
        [("GET", "/a", "a"), ("GET", "/a;v=1", "matrix")],
        [("/a;v=1", ("matrix", {})), ("/a;v=2", None), ("/a;", None), ("/A", None)],
    ),
    "case sensitive": (
        [("GET", "/Pets/{Id}", "pets")],
        [
            ("/Pets/A", ("pets", {"Id": "A"})),
            ("/pets/A", None),
            ("/PETS/A", None),
            ("/%50ets/A", ("pets", {"Id": "A"})),
        ],
    ),
}


@cases(SEGMENTS)
def test_segments(case: Case) -> None:
    run_table(case)


# --- bytes and str inputs give the same result ---------------------------------------------

BYTES_VS_STR = [
    (None, "GET", "/users/42?x=1"),
    ("acme.example.com:8443", "GET", "/users/42"),
    ("API.example.com", "GET", "/users/42"),
    (None, "GET", "/users/jos%C3%A9"),
    (None, "GET", "/users/josé"),
    (None, "GET", "/café"),
    (None, "GET", "/caf%c3%a9"),
    (None, "GET", "/users/a%2Fb"),
    (None, "HEAD", "/users/1"),
    (None, "POST", "/users/1"),
    (None, "GET", "/a/../users/1"),
    (None, "GET", "/users/%zz"),
    (None, "GET", "/files/a.tar.gz"),
    (None, "DELETE", "/anything/at/all"),
    (None, "GET", "*"),
]


@pytest.mark.parametrize(("host", "method", "path"), BYTES_VS_STR)
def test_bytes_and_str_agree(host: str | None, method: str, path: str) -> None:
    router = Router()
    router.add("GET", "/users/{id}", "user")
    router.add("GET", "/users/{id}", "tenant-user", host="{tenant}.example.com")
    router.add("GET", "/users/{id}", "api-user", host="api.example.com")
    router.add("GET", "/café", "cafe")
    router.add("GET", "/files/{name}.{ext}", "file")
    router.add("DELETE", "/{rest*}", "delete-all")
    router.compile()

    def view(m: Any) -> Any:
        if m is None:
            return None
        return m.target, m.template, m.params, m.host_params

    as_str = view(router.match(host, method, path))
    as_bytes = view(
        router.match(None if host is None else host.encode(), method.encode(), path.encode("utf-8"))
    )
    assert as_bytes == as_str
    assert router.allowed(None if host is None else host.encode(), path.encode()) == (
        router.allowed(host, path)
    )


def test_bytes_and_str_concrete() -> None:
    router = build([("GET", "/users/{id}", "user"), ("GET", "/café", "cafe")])
    for path in ("/users/josé", b"/users/jos\xc3\xa9", b"/users/jos%C3%A9"):
        assert outcome(router, path) == ("user", {"id": "josé"})
    for path in ("/café", b"/caf\xc3\xa9", b"/caf%c3%a9"):
        assert outcome(router, path) == ("cafe", {})
    m = router.match(None, b"GET", b"/users/1")
    assert m is not None
    assert m.target == "user"
    assert router.match(None, b"get", b"/users/1") is None
