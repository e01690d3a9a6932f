"""Routes shared by several operations: which ones share, in what order, and who wins.

Two cases make operations of one method share a route:

- a path written with a suffix (discriminators.py): `/#Action=DescribeInstances`
  and `/#Action=RunInstances` are both `/`;
- templates of the same shape up to parameter names, as the router sees them:
  Google's `/v1/{name}` and `/v1/{parent}`.

They become one `RouteGroup`, routed once (the first declared operation's
template). A request on it is given to one operation by `pick`:

1. only operations whose `discriminator` holds (every condition of their
   suffix) are candidates; none: the request matches no operation (404);
2. among them, the one with the most conditions wins, then the one with
   the most of its required query and header parameters present (Box's
   `#add_shared_link` needs `fields`, the plain `PUT /files/{file_id}` does
   not), then the first declared.

An operation that can never win (the same conditions and required
parameters as one declared before it) is a warning, named by `check`: its
requests are checked against the first one's contract, whose body check
also takes a body valid for it (`shadowed`). What is truly
contradictory is an error: an operation whose own parameter refuses the
value its suffix routes by (`#Action=X` with `Action: {enum: [Y]}`). The data plane runs the same
rules compiled (dataplane/dispatch.pxi); `pick` is the reference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from runmcp_fast.openapi import discriminators
from runmcp_fast.openapi.model import Condition, Operation, RouteGroup
from runmcp_fast.problems import ProblemLog
from runmcp_fast.router import RouteConflict, Router, TemplateError


def group(operations: Sequence[Operation], log: ProblemLog) -> tuple[RouteGroup, ...]:
    """The shared routes among `operations` (in declaration order), with their problems logged."""
    scratch = Router()
    # index of the first operation of a route -> indexes of all its operations
    members: dict[int, list[int]] = {}
    for i, op in enumerate(operations):
        try:
            scratch.add(op.method, op.template, i)
        except RouteConflict as exc:
            members.setdefault(exc.existing.target, [exc.existing.target]).append(i)
        except TemplateError:
            continue  # the loader reported it
    groups = []
    for first, indexes in members.items():
        ops = [operations[i] for i in indexes]
        if _contradicts(ops, log):
            continue
        ordered = sorted(range(len(ops)), key=lambda k: -len(ops[k].discriminator))
        ranked = tuple(ops[k] for k in ordered)
        preferred = tuple(discriminators.required(op.parameters) for op in ranked)
        _note(ranked, preferred, log)
        groups.append(RouteGroup(ranked[0].method, operations[first].template, ranked, preferred))
    return tuple(groups)


def _contradicts(ops: list[Operation], log: ProblemLog) -> bool:
    """An operation whose own parameter refuses its discriminator's value: no request
    could ever be valid for it, whichever way it is routed. The spec contradicts itself."""
    bad = False
    for op in ops:
        for c in op.discriminator:
            if c.value is None:
                continue
            for p in op.parameters:
                if (
                    p.location != c.location
                    or (p.name if c.location == "query" else p.name.lower()) != c.name
                ):
                    continue
                allowed = p.schema.get("enum") if isinstance(p.schema, dict) else None
                if isinstance(allowed, list) and c.value not in allowed:
                    bad = True
                    log.error(
                        p.file or op.file,
                        p.pointer,
                        f"{op.method} {op.path} is told apart by {c.location} {c.name}="
                        f"{c.value}, which its own parameter '{p.name}' refuses "
                        f"(enum {allowed[:5]})",
                        f"add {c.value!r} to the parameter's enum, or fix the path's suffix",
                    )
    return bad


def shadowed(group: RouteGroup) -> dict[int, tuple[Operation, ...]]:
    """Index in `group.operations` -> the later operations nothing in the head tells
    apart from it (the same conditions and required parameters: Box's `#add`,
    `#delete`, ... of one PUT). Requests go to the first; its body check also
    takes a body that is valid for one of these (validation/operation.py)."""
    out: dict[int, tuple[Operation, ...]] = {}
    taken: set[int] = set()
    ops, preferred = group.operations, group.preferred
    for i, op in enumerate(ops):
        if i in taken:
            continue
        same = [
            j
            for j in range(i + 1, len(ops))
            if j not in taken
            and set(ops[j].discriminator) == set(op.discriminator)
            and set(preferred[j]) == set(preferred[i])
        ]
        if same:
            taken.update(same)
            out[i] = tuple(ops[j] for j in same)
    return out


def _note(
    ranked: tuple[Operation, ...],
    preferred: tuple[tuple[Condition, ...], ...],
    log: ProblemLog,
) -> None:
    """One warning per operation that shares a route by its shape, or can never be chosen."""
    first = ranked[0]
    for k, op in enumerate(ranked):
        shadow = next(
            (
                ranked[j]
                for j in range(k)
                if set(ranked[j].discriminator) == set(op.discriminator)
                and set(preferred[j]) == set(preferred[k])
            ),
            None,
        )
        merged = k > 0 and op.template != first.template and not op.suffix
        if not merged and shadow is None:
            continue
        if merged:
            message = (
                f"{op.method} {op.template} has the same shape as {first.method} "
                f"{first.template} ({first.pointer}): they share one route"
            )
            if shadow is not None:
                message += (
                    f", and nothing tells it apart from {shadow.operation_id}, declared first"
                )
        else:
            assert shadow is not None
            message = (
                f"{op.method} {op.path} can never be chosen: {shadow.method} {shadow.path} "
                f"({shadow.pointer}) is told apart by the same conditions "
                f"({discriminators.describe(op.discriminator + preferred[k])}) and is declared first"
            )
        log.warning(
            op.file,
            op.pointer,
            message,
            "its requests are checked against the first one's contract; a body valid"
            " for this one is accepted too"
            if shadow is not None
            else "each request goes to the one whose required parameters it has",
        )


def pick(
    group: RouteGroup,
    query: Mapping[str, str],
    headers: Mapping[str, str],
) -> Operation | None:
    """The operation a request is for: `query` by name, `headers` by lower-case name."""
    best: Operation | None = None
    best_score = (-1, -1)
    for op, soft in zip(group.operations, group.preferred, strict=True):
        if not all(_holds(c, query, headers) for c in op.discriminator):
            continue
        score = (len(op.discriminator), sum(_holds(c, query, headers) for c in soft))
        if score > best_score:
            best, best_score = op, score
    return best


def _holds(c: Condition, query: Mapping[str, str], headers: Mapping[str, str]) -> bool:
    value = (query if c.location == "query" else headers).get(c.name)
    return value is not None and (c.value is None or value == c.value)


def choices(group: RouteGroup) -> str:
    """What tells the group's operations apart, for a 404 and for `routes`."""
    return "; ".join(
        f"{op.operation_id}: {discriminators.describe(op.discriminator)}" for op in group.operations
    )
