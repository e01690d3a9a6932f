"""A replaced route table is freed by reference counting, and can be taken apart in steps.

The gateway freezes the cycle collector's view after each reload, so a route
table that only a cycle collection could free would never be freed.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from runmcp_fast.router import Router


class Target:
    """A weak-referenceable route target."""


@pytest.fixture
def no_cycle_gc() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def build(targets: list[Target]) -> Router:
    router = Router()
    for i, target in enumerate(targets):
        router.add("GET", f"/s{i % 7}/items{i}/{{id}}", target)
        router.add("*", f"/p{i}/*", target, "api.example.com")
    router.compile()
    return router


def test_a_compiled_table_holds_no_reference_cycle(no_cycle_gc: None) -> None:
    targets = [Target() for _ in range(200)]
    refs = [weakref.ref(t) for t in targets]
    router = build(targets)
    assert router.match("api.example.com", "GET", "/p3/x") is not None
    del targets, router
    assert all(ref() is None for ref in refs)


def test_release_takes_the_table_apart(no_cycle_gc: None) -> None:
    targets = [Target() for _ in range(2000)]
    refs = [weakref.ref(t) for t in targets]
    router = build(targets)
    found = router.match(None, "GET", "/s1/items8/42")
    assert found is not None and found.target is targets[8]
    del found
    router.release()
    assert router.routes() == []
    with pytest.raises(RuntimeError):
        router.match(None, "GET", "/s1/items8/42")
    del targets
    # Released, the table holds nothing any more, even before the router goes.
    assert all(ref() is None for ref in refs)
    del router
