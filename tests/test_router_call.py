"""How `Router.match` is called and what its Match objects hold.

`match` is a C function taking three positional arguments straight to the walk; any
other call (keywords, wrong counts) goes through the parsing method, which must accept
the keywords the stub names and word errors as before. Match objects come from a free
list: a reused one must never show its previous owner's params or host params.
"""

from __future__ import annotations

import gc
import re
import sys

import pytest

from runmcp_fast.router import Match, Router


def _router() -> Router:
    router = Router()
    router.add("GET", "/users/{id}", "user")
    router.add("GET", "/orgs/{org}/repos/{repo}", "repo", host="{tenant}.example.com")
    router.compile()
    return router


def test_keywords_and_positional_calls_agree() -> None:
    router = _router()
    for m in (
        router.match(None, "GET", "/users/7"),
        router.match(host=None, method="GET", path="/users/7"),
        router.match(None, "GET", path="/users/7"),
        Router.match(router, None, "GET", "/users/7"),
    ):
        assert m is not None
        assert (m.target, m.params) == ("user", {"id": "7"})


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((None, "GET"), {}, "exactly 3 positional arguments (2 given)"),
        ((None, "GET", "/users/7", 1), {}, "exactly 3 positional arguments (4 given)"),
        ((None, "GET"), {"nope": "/users/7"}, "unexpected keyword argument 'nope'"),
        ((None, "GET", "/users/7"), {"path": "/x"}, "multiple values for keyword argument 'path'"),
    ],
)
def test_bad_calls_raise_type_error(
    args: tuple[object, ...], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(TypeError, match=re.escape(message)):
        _router().match(*args, **kwargs)  # type: ignore[call-arg]


def test_match_is_not_made_from_python() -> None:
    with pytest.raises(TypeError, match=r"made by Router\.match"):
        Match()
    with pytest.raises(TypeError, match=r"made by Router\.match"):
        Match.__new__(Match)


def test_a_reused_match_shows_only_its_own_answer() -> None:
    router = _router()
    first = router.match("acme.example.com", "GET", "/orgs/o1/repos/r1")
    assert first is not None
    assert first.params == {"org": "o1", "repo": "r1"}
    assert first.host_params == {"tenant": "acme"}
    del first  # back to the free list, its dicts dropped
    again = router.match(None, "GET", "/users/42")
    assert again is not None
    assert (again.params, again.host_params) == ({"id": "42"}, {})


def test_many_live_matches_keep_their_values() -> None:
    # More than the free list holds, alive at once, then freed and made again.
    router = _router()
    for _ in range(2):
        held = [router.match(None, "GET", f"/users/{i}") for i in range(300)]
        assert [m.params["id"] for m in held if m is not None] == [str(i) for i in range(300)]
        del held
        gc.collect()


def test_a_match_keeps_the_path_and_router_alive_and_frees_them() -> None:
    router = _router()
    path = "".join(["/users/", "x" * 50])  # a fresh object, not an interned constant
    before = sys.getrefcount(path), sys.getrefcount(router)
    m = router.match(None, "GET", path)
    assert m is not None
    assert sys.getrefcount(path) == before[0] + 1
    assert sys.getrefcount(router) == before[1] + 1
    assert m.params == {"id": "x" * 50}
    del m
    assert (sys.getrefcount(path), sys.getrefcount(router)) == before
