"""A spec's operations as routes (runmcp_fast.openapi.routes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runmcp_fast.openapi import Operation, SpecError, add_spec_routes, load_spec, load_spec_data
from runmcp_fast.openapi.model import RouteGroup
from runmcp_fast.router import Router, TemplateError

SPECS = Path(__file__).parent / "specs"
EXAMPLE = Path(__file__).parents[1] / "examples" / "petstore.yaml"


def test_one_route_per_operation_with_the_operation_as_target() -> None:
    spec = load_spec(EXAMPLE)
    router = Router()
    routes = add_spec_routes(router, spec)
    router.compile()
    assert [(r.method, r.template, r.target) for r in routes] == [
        (op.method, op.template, op) for op in spec.operations
    ]
    assert len(router) == len(spec.operations) == 9


@pytest.mark.parametrize(
    ("method", "path", "operation_id", "params"),
    [
        ("GET", "/v1/pets", "listPets", {}),
        ("POST", "/v1/pets", "createPet", {}),
        ("GET", "/v1/pets/42?x=1", "showPetById", {"petId": "42"}),
        ("HEAD", "/v1/pets/42", "showPetById", {"petId": "42"}),
        ("DELETE", "/v1/pets/42", "deletePet", {"petId": "42"}),
        ("GET", "/v1/owners/7/pets", "listOwnerPets", {"ownerId": "7"}),
        ("POST", "/v1/owners/7/pets", "adoptPet", {"ownerId": "7"}),
    ],
)
def test_routes_match_their_operation(
    method: str, path: str, operation_id: str, params: dict[str, str]
) -> None:
    router = Router()
    add_spec_routes(router, load_spec(EXAMPLE))
    router.compile()
    match = router.match(None, method, path)
    assert match is not None
    assert isinstance(match.target, Operation)
    assert (match.target.operation_id, match.params) == (operation_id, params)


def test_misses() -> None:
    router = Router()
    add_spec_routes(router, load_spec(EXAMPLE))
    router.compile()
    assert router.match(None, "GET", "/pets") is None  # the base path is part of the route
    assert router.match(None, "PATCH", "/v1/pets/1") is None
    assert router.allowed(None, "/v1/pets/1") == ("DELETE", "GET", "HEAD", "PUT")


def test_target_callable_and_constant() -> None:
    spec = load_spec(EXAMPLE)
    by_call = add_spec_routes(Router(), spec, target=lambda op: op.operation_id)
    assert [r.target for r in by_call] == [op.operation_id for op in spec.operations]
    fixed = add_spec_routes(Router(), spec, target="upstream-1")
    assert {r.target for r in fixed} == {"upstream-1"}


def test_host() -> None:
    router = Router()
    routes = add_spec_routes(router, load_spec(EXAMPLE), host="{tenant}.pets.example")
    router.compile()
    assert {r.host for r in routes} == {"{tenant}.pets.example"}
    match = router.match("acme.pets.example", "GET", "/v1/pets")
    assert match is not None and match.host_params == {"tenant": "acme"}
    assert router.match("other.example", "GET", "/v1/pets") is None


def test_a_bad_host_is_the_callers_error() -> None:
    router = Router()
    with pytest.raises(TemplateError):
        add_spec_routes(router, load_spec(EXAMPLE), host="a..b")
    assert len(router) == 0


def test_templates_of_one_shape_share_a_route_with_a_warning_naming_both() -> None:
    path = str(SPECS / "conflicts.yaml")
    spec = load_spec(path)
    assert [(p.severity, p.pointer) for p in spec.warnings] == [
        ("warning", "/paths/~1pets~1{name}/get"),
        ("warning", "/paths/~1pets~1{p}~1toys~1{t}/get"),
    ]
    assert spec.warnings[0].message == (
        "GET /pets/{name} has the same shape as GET /pets/{id} (/paths/~1pets~1{id}/get): "
        "they share one route, and nothing tells it apart from getPetById, declared first"
    )
    router = Router()
    routes = add_spec_routes(router, spec)
    assert sorted((r.method, r.template) for r in routes) == [
        ("DELETE", "/pets/{id}"),
        ("GET", "/pets/{id}"),
        ("GET", "/pets/{petId}/toys/{toyId}"),
        ("PUT", "/pets/{name}"),
    ]
    router.compile()
    match = router.match(None, "GET", "/pets/7")
    assert match is not None and isinstance(match.target, RouteGroup)
    assert [op.operation_id for op in match.target.operations] == ["getPetById", "getPetByName"]


def test_conflict_with_a_route_already_there() -> None:
    router = Router()
    router.add("GET", "/v1/pets/{x}", "hand-made")
    with pytest.raises(SpecError) as info:
        add_spec_routes(router, load_spec(EXAMPLE))
    (problem,) = info.value.problems
    assert problem.pointer == "/paths/~1pets~1{petId}/get"
    assert problem.message.startswith(
        "GET /v1/pets/{petId} conflicts with the route GET /v1/pets/{x} already in the router"
    )


def test_every_conflict_is_reported_and_the_other_routes_are_added() -> None:
    """Routes are added in one call until one is refused (Router.add_plan); the rest of
    the plan goes on after it, so every conflict is named, in the spec's order, and
    every route that could be added is there."""
    router = Router()
    router.add("POST", "/v1/pets", "hand-made")
    router.add("GET", "/v1/owners/{id}", "hand-made")
    router.add("POST", "/v1/owners/{o}/pets", "hand-made")
    with pytest.raises(SpecError) as info:
        add_spec_routes(router, load_spec(EXAMPLE))
    assert [p.pointer for p in info.value.problems] == [
        "/paths/~1pets/post",
        "/paths/~1owners~1{ownerId}/get",
        "/paths/~1owners~1{ownerId}~1pets/post",
    ]
    assert len(router) == 3 + 9 - 3
    assert sorted((r.method, r.template) for r in router.routes() if r.target != "hand-made") == [
        ("DELETE", "/v1/pets/{petId}"),
        ("GET", "/v1/owners"),
        ("GET", "/v1/owners/{ownerId}/pets"),
        ("GET", "/v1/pets"),
        ("GET", "/v1/pets/{petId}"),
        ("PUT", "/v1/pets/{petId}"),
    ]


def test_add_plan_stops_at_a_refused_route_and_says_where() -> None:
    router = Router()
    router.add("GET", "/b", "there")
    plan = [("GET", "/a", 1, None), ("GET", "/b", 2, None), ("GET", "/c", 3, None)]
    paused: list[None] = []
    added, stop, exc = router.add_plan(plan, None, 0, lambda: paused.append(None))
    assert ([r.target for r in added], stop, type(exc).__name__) == ([1], 1, "RouteConflict")
    added, stop, exc = router.add_plan(plan, None, stop + 1)
    assert ([r.target for r in added], stop, exc) == ([3], 3, None)
    assert paused == [None]  # every 32 routes, from index 0
    _, stop, exc = Router().add_plan([("GET", "no-slash", 1)], None)
    assert (stop, type(exc).__name__) == (0, "TemplateError")


def test_conflict_between_two_specs_names_the_other_file() -> None:
    first = load_spec(EXAMPLE)
    second = load_spec_data(
        {"openapi": "3.0.3", "servers": [{"url": "/v1"}], "paths": {"/pets": {"get": {}}}},
        source="second.yaml",
    )
    router = Router()
    add_spec_routes(router, first)
    with pytest.raises(SpecError) as info:
        add_spec_routes(router, second)
    (problem,) = info.value.problems
    assert (problem.file, problem.pointer) == ("second.yaml", "/paths/~1pets/get")
    assert f"conflicts with {EXAMPLE}#/paths/~1pets/get (GET /v1/pets)" in problem.message


def test_same_spec_under_two_hosts_does_not_conflict() -> None:
    spec = load_spec(EXAMPLE)
    router = Router()
    add_spec_routes(router, spec, host="a.example")
    add_spec_routes(router, spec, host="b.example")
    assert len(router) == 2 * len(spec.operations)
