"""Putting a spec's operations into a router, with conflicts reported as spec problems."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runmcp_fast.handoff import pause
from runmcp_fast.openapi.model import Operation, RouteGroup, Spec
from runmcp_fast.problems import Problem, SpecError
from runmcp_fast.router import Route, RouteConflict, Router


def add_spec_routes(
    router: Router,
    spec: Spec,
    *,
    target: Any = None,
    host: str | None = None,
    group: Callable[[RouteGroup], Any] | None = None,
) -> list[Route]:
    """Add one route per operation of `spec`, in the spec's order; return them.

    The route's target is the `Operation` itself, `target(operation)` when
    `target` is callable, or `target` as given otherwise. Operations that
    share a route (`spec.groups`: suffixes such as `#Action=X`, templates of
    one shape) get one route, at the first one's place, whose target is
    `group(route_group)`, or the `RouteGroup` itself. Conflicts (two
    operations with one method on the same path up to parameter names, or an
    operation clashing with a route already in the router) are collected and
    raised together as `SpecError`; the routes that could be added stay in the
    router, so build a fresh one to retry. A `host` pattern the router
    refuses raises its `TemplateError` before anything is added: it is the
    caller's setting, not the spec's.
    """
    plan = route_plan(spec, target=target, group=group)
    return add_planned(router, spec, plan, host)


RoutePlan = list[tuple[str, str, Any, Operation]]
"""(method, template, target, operation) of each route of a spec, in the spec's order;
the operation names the route in a conflict (a group's: its first)."""


def route_plan(
    spec: Spec,
    *,
    target: Any = None,
    group: Callable[[RouteGroup], Any] | None = None,
) -> RoutePlan:
    """The routes `add_spec_routes` adds for `spec`, without a router or a host: a
    service keeps its plan across builds and adds it again with `add_planned`."""
    make: Callable[[Operation], Any]
    if target is None:
        make = _itself
    elif callable(target):
        make = target
    else:
        make = lambda _operation: target  # noqa: E731 - one fixed target for every route

    # id(first operation of a group) -> its group; id(any other member) -> None: skipped.
    shared: dict[int, RouteGroup | None] = {}
    position = {id(op): i for i, op in enumerate(spec.operations)} if spec.groups else {}
    for g in spec.groups:
        first = min(g.operations, key=lambda op: position[id(op)])
        for op in g.operations:
            shared[id(op)] = g if op is first else None
    plan: RoutePlan = []
    for op in spec.operations:
        routed = shared.get(id(op), op) if shared else op
        if routed is None:
            continue
        if isinstance(routed, RouteGroup):
            made = group(routed) if group is not None else routed
            plan.append((routed.method, routed.template, made, op))
        else:
            plan.append((op.method, op.template, make(op), op))
    return plan


def add_planned(router: Router, spec: Spec, plan: RoutePlan, host: str | None) -> list[Route]:
    """Add a `route_plan` on `host`; conflicts raise SpecError as in `add_spec_routes`."""
    if host is not None:
        Router().add("GET", "/", None, host)
    added: list[Route] = []
    refused: set[int] = set()  # indexes in plan of the routes the router refused
    problems: list[Problem] = []
    start = 0
    while True:
        # (`pause` every 32 routes, ~0.3 ms of adding: let a waiting event loop run.)
        routes, stop, exc = router.add_plan(plan, host, start, pause)
        added += routes
        if exc is None:
            break
        op = plan[stop][3]
        if isinstance(exc, RouteConflict):
            # (method, template, host) -> operation, to name the other side.
            placed = [entry[3] for j, entry in enumerate(plan[:stop]) if j not in refused]
            by_route = {
                (r.method, r.template, r.host): o for r, o in zip(added, placed, strict=True)
            }
            problems.append(_conflict(spec, op, exc.existing, by_route))
        else:
            # Only for a Spec built by hand: load_spec checks every template.
            problems.append(
                Problem(
                    op.file or spec.source,
                    op.pointer,
                    f"the router refuses the path: {exc}",
                    "load the spec with load_spec, which checks every path first",
                )
            )
        refused.add(stop)
        start = stop + 1
    if problems:
        raise SpecError(problems)
    return added


def _itself(operation: Operation) -> Operation:
    return operation


def _conflict(
    spec: Spec,
    op: Operation,
    existing: Route,
    by_route: dict[tuple[str, str, str | None], Operation],
) -> Problem:
    file = op.file or spec.source
    other = by_route.get((existing.method, existing.template, existing.host))
    if other is None and isinstance(existing.target, Operation):
        other = existing.target  # from another spec added to the same router
    elif other is None and isinstance(existing.target, RouteGroup):
        other = existing.target.operations[0]
    if other is not None:
        where = (
            other.pointer
            if (other.file or spec.source) == file
            else f"{other.file}#{other.pointer}"
        )
        them = f"{where} ({other.method} {other.template})"
    else:
        them = (
            f"the route {existing.method} {existing.template} already in the router"
            f" ({existing.target!r})"
        )
    return Problem(
        file,
        op.pointer,
        f"{op.method} {op.template} conflicts with {them}: "
        "the same method and path up to parameter names",
        "merge the two paths into one, or remove one of the operations",
    )
