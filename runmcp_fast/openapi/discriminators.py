"""Operations told apart after the path: `/?Action=X`, `/#X-Amz-Target=Y`, `/files/{id}#copy`.

Real specs key several operations of one method on one path by writing what
tells them apart after the path: AWS's `#Action=DescribeInstances` (the
query parameter `Action`), `#X-Amz-Target=DynamoDB_20120810.GetItem` (a
header), S3's `/{Bucket}#cors` (the query parameter `cors`, any value),
weatherbit's `/alerts?lat={lat}&lon={lon}` (both present), Box's
`/files/{file_id}#add_shared_link` (just a name). `split(key)` cuts such a
key into the routed path and its suffix; `conditions(suffix, params)` reads
the suffix into the conditions a request must meet, each term `name=value`
(equal), `name={x}` or a bare `name` that the operation declares as a query or
header parameter (present). A bare name the operation does not declare is a
label: it adds no condition, and the operations it labels are told apart by
their required parameters, or the first declared wins (dispatch.py).

The location of a term is the one the operation declares for that name; a
name it does not declare is read from the query (AWS's Query protocol),
unless it is spelled like a header (`X-…`).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import unquote_plus

from runmcp_fast.openapi.model import Condition, Parameter


def split(key: str) -> tuple[str, str]:
    """`("/files/{id}", "#copy")` from `/files/{id}#copy`; `(key, "")` without a suffix.

    The suffix starts at the first `?` or `#` outside a `{...}` parameter.
    """
    depth = 0
    for i, ch in enumerate(key):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth = max(0, depth - 1)
        elif depth == 0 and ch in "?#":
            return key[:i], key[i:]
    return key, ""


def conditions(suffix: str, params: Iterable[Parameter]) -> tuple[Condition, ...]:
    """The conditions the suffix puts on a request, in the order written (labels give none)."""
    declared: dict[str, Parameter] = {}
    for p in params:
        if p.location in ("query", "header"):
            declared.setdefault(p.name if p.location == "query" else p.name.lower(), p)
    found: list[Condition] = []
    for term in suffix[1:].split("&"):
        if not term:
            continue
        name, eq, value = term.partition("=")
        name = unquote_plus(name)
        param = declared.get(name) or declared.get(name.lower())
        if not eq and param is None:
            continue  # a label: Box's `#add_shared_link`
        if param is not None:
            location = param.location
        else:
            location = "header" if name[:2].lower() == "x-" else "query"
        exact: str | None = unquote_plus(value) if eq else None
        if exact is not None and exact.startswith("{") and exact.endswith("}"):
            exact = None  # `lat={lat}`: present, any value
        if location == "header":
            name = name.lower()
        found.append(Condition(location, name, exact))  # type: ignore[arg-type]
    return tuple(found)


def required(params: Iterable[Parameter]) -> tuple[Condition, ...]:
    """The required query and header parameters, as presence conditions.

    What tells apart operations the suffix does not (Box's
    `PUT /files/{file_id}#add_shared_link` needs `fields`, the plain
    `PUT /files/{file_id}` does not): a request is given to the operation
    whose required parameters it has, the most of them first.
    """
    return tuple(
        Condition(p.location, p.name if p.location == "query" else p.name.lower(), None)
        for p in params
        if p.required and p.location in ("query", "header")
    )


def describe(conds: Iterable[Condition]) -> str:
    """`query Action=DescribeInstances, header x-amz-target present`: for people."""
    parts = [
        f"{c.location} {c.name}" + (f"={c.value}" if c.value is not None else " present")
        for c in conds
    ]
    return ", ".join(parts) if parts else "nothing (the default)"
