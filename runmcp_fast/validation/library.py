"""What the schema compiler keeps per spec: compiled types by definition, and why a node
falls back. Its own module so the bundler (which owns one per spec) and the compiler
(which fills it) both import it, and neither imports the other."""

from __future__ import annotations

import itertools
import types
from typing import Any, NamedTuple

_modules = itertools.count()


class Fallback(NamedTuple):
    """A schema node the fallback validator checks, and why."""

    pointer: str
    """Where the node is in the bundled schema (`/properties/items/items`, `/$defs/Pet`)."""
    keyword: str
    """What msgspec can not express there, e.g. `uniqueItems` or `oneOf without discriminator`."""


class TypeLibrary:
    """The types compiled for one spec's `$defs`, shared by all its operations' compilers.

    The bundler names a definition the same for every operation, so a
    component reached by 300 operations is compiled once (Kubernetes: 845
    operations over the same few hundred definitions).
    """

    __slots__ = ("def_fallbacks", "def_types", "defs", "merged", "module", "names")

    def __init__(self) -> None:
        self.defs: dict[str, Any] = {}
        self.merged: dict[str, Any] = {}
        """The definitions as `bundle.merge_all_of` merged them, by name."""
        self.module = types.ModuleType(f"runmcp_fast.validation._types{next(_modules)}")
        self.def_types: dict[tuple[str, str | None, str | None], Any] = {}
        self.def_fallbacks: dict[tuple[str, str | None, str | None], list[Fallback]] = {}
        self.names = itertools.count()
