"""Unique, stable operation ids: route names, log fields and MCP tool names hang on them."""

from __future__ import annotations

import re
from collections.abc import Sequence

from runmcp_fast.openapi.pointers import join
from runmcp_fast.problems import ProblemLog

_NOT_WORD = re.compile(r"[^A-Za-z0-9_]+")


def derive(method: str, path: str) -> str:
    """`derive("GET", "/pets/{petId}")` is `get_pets_petId`: the same path gives the same id."""
    words = _NOT_WORD.sub("_", path).strip("_")
    return f"{method.lower()}_{words}" if words else method.lower()


def assign(
    explicit: Sequence[str | None],
    routes: Sequence[tuple[str, str]],
    pointers: Sequence[tuple[str, str]],
    log: ProblemLog,
) -> list[str]:
    """One id per operation, in order, none repeated.

    The spec's own ids are kept first, whatever their order, because clients
    already use them; a repeated one keeps its first use and later ones become
    `id_2`, `id_3` with a warning. Ids derived from the (method, path) in
    `routes` take what is left, suffixed the same way if they clash.
    `pointers` are the (file, pointer) of each operation.
    """
    first_use: dict[str, tuple[str, str]] = {}
    ids: list[str | None] = [None] * len(explicit)
    for i, oid in enumerate(explicit):
        if oid is not None and oid not in first_use:
            first_use[oid] = pointers[i]
            ids[i] = oid
    taken = set(first_use)
    result: list[str] = []
    for i, oid in enumerate(ids):
        if oid is None:
            base = explicit[i]
            oid = _free(base if base is not None else derive(*routes[i]), taken)
            if base is not None:
                file, pointer = pointers[i]
                first_file, first_pointer = first_use[base]
                first = first_pointer if first_file == file else f"{first_file}#{first_pointer}"
                log.warning(
                    file,
                    join(pointer, "operationId"),
                    f"operationId '{base}' is already used by {first}; this one is renamed '{oid}'",
                    "give every operation its own operationId",
                )
        taken.add(oid)
        result.append(oid)
    return result


def _free(base: str, taken: set[str]) -> str:
    if base not in taken:
        return base
    n = 2
    while f"{base}_{n}" in taken:
        n += 1
    return f"{base}_{n}"
