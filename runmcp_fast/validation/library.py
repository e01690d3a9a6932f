"""What the schema compiler keeps per spec: compiled types by definition, and why a node
falls back. Its own module so the bundler (which owns one per spec) and the compiler
(which fills it) both import it, and neither imports the other."""

from __future__ import annotations

import hashlib
import itertools
import types
from collections.abc import Callable
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

    __slots__ = (
        "_def_digests",
        "_digests",
        "def_fallbacks",
        "def_types",
        "defs",
        "merged",
        "merged_defs",
        "module",
        "names",
        "params",
        "validators",
    )

    def __init__(self) -> None:
        self.defs: dict[str, Any] = {}
        self.merged: dict[str, Any] = {}
        """The definitions as `bundle.merge_all_of` merged them, by name."""
        self.merged_defs: dict[int, tuple[Any, dict[str, Any]]] = {}
        """id of a bundle's `$defs` dict -> it, and its merged dict (`merge_all_of`'s `shared`)."""
        self.module = types.ModuleType(f"runmcp_fast.validation._types{next(_modules)}")
        self.def_types: dict[tuple[str, str | None, str | None], Any] = {}
        self.def_fallbacks: dict[tuple[str, str | None, str | None], list[Fallback]] = {}
        self.names = itertools.count()
        self.validators: dict[bytes, Any] = {}
        """Content key -> its SchemaValidator (`schema.shared_validator`), for the spec."""
        self.params: dict[tuple[object, ...], Any] = {}
        """A parameter's read and check, by what decides them (`operation.param_check`)."""
        # id() of a `$defs` dict (of one definition) -> (it, its digest): kept alive
        # here so no id is reused while the library lives.
        self._digests: dict[int, tuple[Any, bytes]] = {}
        self._def_digests: dict[int, tuple[Any, bytes]] = {}

    def defs_digest(self, defs: dict[str, Any], digest: Callable[[Any], bytes]) -> bytes:
        """A digest of a bundle's `$defs` (name -> definition), from `digest` of each
        definition: each dict and each definition is digested once, however many bundles
        share it. The definitions must not change while the library lives (the bundler's
        do not)."""
        known = self._digests.get(id(defs))
        if known is not None and known[0] is defs:
            return known[1]
        h = hashlib.sha256()
        for name in sorted(defs):
            value = defs[name]
            one = self._def_digests.get(id(value))
            if one is None or one[0] is not value:
                one = self._def_digests[id(value)] = (value, digest(value))
            h.update(name.encode("utf-8", "surrogatepass") + b"\0" + one[1])
        found = h.digest()
        self._digests[id(defs)] = (defs, found)
        return found
