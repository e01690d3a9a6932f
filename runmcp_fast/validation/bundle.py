"""A spec's schemas as standalone JSON Schema 2020-12 documents, one dialect for everything after.

OpenAPI 3.0 and Swagger 2.0 schemas are a dialect of draft 4 (`nullable`,
boolean `exclusiveMaximum`, `$ref` siblings ignored); OpenAPI 3.1 schemas are
2020-12 already. The compiler, the fallback checks and the reference
validator in the tests all read the normalised form, so they can not disagree
on what a keyword means.

`Bundler.bundle(schema, file, pointer)` gives a document whose `$ref`s all
point into its own `$defs` (one entry per distinct definition reached,
named after it), so a recursive schema stays finite and a schema from
another file needs nothing but itself. Normalised definitions are shared by
every operation of the spec: GitHub's 845 operations reach the same few
hundred components.

Requests are validated, so `readOnly` properties are dropped from `required`
(OpenAPI: "required ... take effect on the response only").
"""

from __future__ import annotations

import re
from typing import Any

from runmcp_fast.openapi.model import Spec
from runmcp_fast.openapi.pointers import join
from runmcp_fast.problems import DocumentError
from runmcp_fast.validation.compiler import TypeLibrary

# Keywords whose value is one schema / a list of schemas / a map of schemas.
_ONE = (
    "items",
    "additionalProperties",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "propertyNames",
    "additionalItems",
    "unevaluatedProperties",
    "unevaluatedItems",
)
_MANY = ("allOf", "anyOf", "oneOf", "prefixItems")
_MAP = ("properties", "patternProperties", "dependentSchemas", "$defs", "definitions")
# Only annotations: they never change a decision, and dropping them keeps
# bundles small (GitHub's descriptions are most of its bytes).
_ANNOTATIONS = frozenset(
    (
        "description",
        "title",
        "example",
        "examples",
        "externalDocs",
        "xml",
        "deprecated",
        "$comment",
        "x-github",
    )
)
_NAME = re.compile(r"[^A-Za-z0-9_.-]")


class Bundler:
    """Normalises and bundles the schemas of one spec; reuse it for all its operations."""

    __slots__ = ("_defs", "_documents", "_names", "_refs", "_source", "draft4", "library")

    def __init__(self, spec: Spec) -> None:
        # The documents, not the Spec: a Bundler is kept on its Spec, and a
        # cycle between the two would outlive them (builds run with the GC off).
        self._documents = spec.documents
        self._source = spec.source
        self.draft4 = not spec.version.startswith("3.1")
        """OpenAPI 3.0 / Swagger 2.0 semantics (nullable, boolean exclusive bounds)."""
        # (file, pointer) of a definition -> its name in `$defs`.
        self._names: dict[tuple[str, str], str] = {}
        # name -> the normalised definition
        self._defs: dict[str, Any] = {}
        # name -> the names its normalised form refers to directly
        self._refs: dict[str, set[str]] = {}
        self.library = TypeLibrary()
        """The msgspec types compiled for these definitions, shared by the spec's operations."""

    def bundle(self, schema: Any, file: str, pointer: str) -> Any:
        """`schema` (found at `pointer` in `file`) normalised, with the `$defs` it reaches.

        Raises `DocumentError` for a `$ref` that leads nowhere.
        """
        used: set[str] = set()
        root = self._normalise(schema, file, pointer, used)
        if not used:
            return root
        reached = self._closure(used)
        defs = {name: self._defs[name] for name in sorted(reached)}
        if isinstance(root, dict):
            return {**root, "$defs": defs}
        # A boolean schema can not carry $defs, and refers to none.
        return root

    # -- normalisation ----------------------------------------------------------------

    def _normalise(self, schema: Any, file: str, pointer: str, used: set[str]) -> Any:
        if isinstance(schema, bool):
            return schema
        if not isinstance(schema, dict):
            return {}  # the loader warned already; an unusable schema accepts anything
        ref = schema.get("$ref")
        if isinstance(ref, str):
            name = self._define(ref, file, pointer, used)
            target = {"$ref": f"#/$defs/{name}"}
            if self.draft4:
                return target  # OpenAPI 3.0: siblings of $ref are ignored
            rest = {k: v for k, v in schema.items() if k != "$ref" and k not in _ANNOTATIONS}
            if not rest:
                return target
            return {"allOf": [target, self._normalise(rest, file, pointer, used)]}
        out: dict[str, Any] = {}
        for key, value in schema.items():
            if key in _ANNOTATIONS or key.startswith("x-"):
                continue
            if key in _ONE:
                here = join(pointer, key)
                if isinstance(value, list):  # draft 4 tuple `items`
                    out[key] = [
                        self._normalise(v, file, join(here, i), used) for i, v in enumerate(value)
                    ]
                else:
                    out[key] = self._normalise(value, file, here, used)
            elif key in _MANY and isinstance(value, list):
                here = join(pointer, key)
                out[key] = [
                    self._normalise(v, file, join(here, i), used) for i, v in enumerate(value)
                ]
            elif key in _MAP and isinstance(value, dict):
                here = join(pointer, key)
                out["$defs" if key == "definitions" else key] = {
                    k: self._normalise(v, file, join(here, k), used) for k, v in value.items()
                }
            elif key == "discriminator" and isinstance(value, dict):
                out[key] = self._discriminator(value, file, pointer, used)
            else:
                out[key] = value
        pattern = out.get("pattern")
        if isinstance(pattern, str) and not _compiles(pattern):
            # ECMA-262 syntax Python's re lacks (\p{L}, ...): neither the compiled
            # type nor jsonschema could use it. Kept aside, and listed by `check`.
            out["x-unenforced-pattern"] = out.pop("pattern")
        if self.draft4:
            _draft4_to_2020(out, schema)
        if "type" in out and out["type"] == "file":
            out["type"] = "string"
        _request_only(out)
        return out

    def _discriminator(
        self, value: dict[str, Any], file: str, pointer: str, used: set[str]
    ) -> dict[str, Any]:
        """The mapping's refs point into `$defs` too, so the compiler can pair tags with variants."""
        mapping = value.get("mapping")
        if not isinstance(mapping, dict):
            return dict(value)
        here = join(pointer, "discriminator", "mapping")
        resolved: dict[str, str] = {}
        for tag, ref in mapping.items():
            if not isinstance(ref, str):
                continue
            if "#" not in ref and "/" not in ref:
                ref = f"#/components/schemas/{ref}"  # the short form: a schema's name
            resolved[str(tag)] = "#/$defs/" + self._define(ref, file, join(here, tag), used)
        return {**value, "mapping": resolved}

    def _define(self, ref: str, file: str, pointer: str, used: set[str]) -> str:
        target = self._documents.resolve(ref, file or self._source, pointer)
        key = (target.file, target.pointer)
        name = self._names.get(key)
        if name is None:
            name = self._fresh_name(target.pointer)
            self._names[key] = name
            self._defs[name] = {}  # a placeholder while a recursive schema is walked
            inner: set[str] = set()
            normalised = self._normalise(target.value, target.file, target.pointer, inner)
            if isinstance(normalised, dict) and name != _own_name(target.pointer):
                # The name as written: an implicit discriminator tag is the component's name.
                normalised["x-component"] = _own_name(target.pointer)
            self._defs[name] = normalised
            self._refs[name] = inner
        used.add(name)
        return name

    def _fresh_name(self, pointer: str) -> str:
        base = _NAME.sub("_", _own_name(pointer))
        base = base or "schema"
        name = base
        n = 2
        while name in self._defs:
            name = f"{base}_{n}"
            n += 1
        return name

    def _closure(self, names: set[str]) -> set[str]:
        seen: set[str] = set()
        todo = list(names)
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            todo.extend(self._refs.get(name, ()))
        return seen


def _compiles(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


def _own_name(pointer: str) -> str:
    return pointer.rsplit("/", 1)[-1].replace("~1", "/").replace("~0", "~")


def _draft4_to_2020(out: dict[str, Any], raw: dict[str, Any]) -> None:
    """OpenAPI 3.0 / Swagger 2.0 keywords in their 2020-12 spelling, in place."""
    for bound, exclusive in (("maximum", "exclusiveMaximum"), ("minimum", "exclusiveMinimum")):
        flag = out.get(exclusive)
        if isinstance(flag, bool):
            if flag and bound in out:
                out[exclusive] = out.pop(bound)
            else:
                del out[exclusive]
    nullable = raw.get("nullable") is True or raw.get("x-nullable") is True
    out.pop("nullable", None)
    if nullable:
        # OpenAPI 3.0.3: nullable only widens an explicit type.
        kind = out.get("type")
        if isinstance(kind, str) and kind != "null":
            out["type"] = [kind, "null"]
        elif isinstance(kind, list) and "null" not in kind:
            out["type"] = [*kind, "null"]
        enum = out.get("enum")
        if isinstance(enum, list) and None not in enum and "type" in out:
            out["enum"] = [*enum, None]
    items = out.get("items")
    if isinstance(items, list):
        # draft 4 tuple validation: the 2020-12 spelling is prefixItems/items.
        out["prefixItems"] = items
        extra = out.pop("additionalItems", True)
        out["items"] = extra


def _request_only(out: dict[str, Any]) -> None:
    """Drop `readOnly` properties from `required`: a client never sends them."""
    required = out.get("required")
    props = out.get("properties")
    if not isinstance(required, list) or not isinstance(props, dict):
        return
    kept = [
        name
        for name in required
        if not (isinstance(props.get(name), dict) and props[name].get("readOnly") is True)
    ]
    if len(kept) != len(required):
        out["required"] = kept


__all__ = ["Bundler", "DocumentError"]
