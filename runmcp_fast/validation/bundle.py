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

`merge_all_of(document)` is the one `allOf` merge: the validators apply it to
a bundled document before either compiler (msgspec's, the byte checker's)
sees it, so both read the same merged schema. See its docstring for the rules.
"""

from __future__ import annotations

import re
from typing import Any

from runmcp_fast.openapi.model import Spec
from runmcp_fast.openapi.pointers import join
from runmcp_fast.problems import DocumentError
from runmcp_fast.validation.library import TypeLibrary

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

    __slots__ = (
        "_closures",
        "_defs",
        "_documents",
        "_names",
        "_reached",
        "_refs",
        "_source",
        "draft4",
        "library",
    )

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
        # MEMORY: the `$defs` of a bundle, one dict per distinct set of definitions
        # reached, shared by every bundle reaching that set (Microsoft Graph: 52,000
        # bundles, most reaching the same ~1,000 definitions, were 130 MiB of copies).
        # By the names used directly (a bundle's own refs), then by their closure.
        self._closures: dict[frozenset[str], dict[str, Any]] = {}
        self._reached: dict[frozenset[str], dict[str, Any]] = {}
        self.library = TypeLibrary()
        """The msgspec types compiled for these definitions, shared by the spec's operations."""

    def bundle(self, schema: Any, file: str, pointer: str) -> Any:
        """`schema` (found at `pointer` in `file`) normalised, with the `$defs` it reaches.

        Raises `DocumentError` for a `$ref` that leads nowhere. The `$defs` dict is
        shared by the bundles that reach the same definitions: do not modify it.
        """
        used: set[str] = set()
        root = self._normalise(schema, file, pointer, used)
        if not used:
            return root
        # (A definition's refs are fixed once it is normalised, so its closure is too.)
        direct = frozenset(used)
        defs = self._closures.get(direct)
        if defs is None:
            reached = frozenset(self._closure(used))
            defs = self._reached.get(reached)
            if defs is None:
                defs = self._reached[reached] = {name: self._defs[name] for name in sorted(reached)}
            self._closures[direct] = defs
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
            out[_UNENFORCED] = out.pop("pattern")
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


# -- allOf -------------------------------------------------------------------------------

ALL_OF_CONFLICT = "x-allOf-conflict"
"""Set beside an `allOf` that `merge_all_of` left as it was: why its branches do not merge."""

# Keywords that only annotate: a branch's are not carried into the merged schema
# (a definition's x-component names that definition, not the one it is merged into).
_NOTES = _ANNOTATIONS | {"readOnly", "writeOnly", "default", "$schema", ALL_OF_CONFLICT}
# Keywords that change how other keywords of their own schema object apply, or
# what a $ref inside it means: moved into another object, they would change meaning.
_SCOPED = frozenset(
    (
        "$id",
        "$anchor",
        "$dynamicAnchor",
        "$dynamicRef",
        "$recursiveAnchor",
        "$recursiveRef",
        "unevaluatedProperties",
        "unevaluatedItems",
    )
)
# Keywords read together: if/then/else, contains with its counts, items after
# prefixItems (or draft 2019's additionalItems after an items list).
_GROUPS = (
    frozenset(("if", "then", "else")),
    frozenset(("contains", "minContains", "maxContains")),
)
_TUPLE = frozenset(("prefixItems", "additionalItems"))
_LOWER = frozenset(("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties"))
_UPPER = frozenset(("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties"))
_TYPES = ("null", "boolean", "integer", "number", "string", "array", "object")
# A pattern Python can not run, set aside by the bundler: still listed where merged.
_UNENFORCED = "x-unenforced-pattern"


class _Conflict(Exception):
    """Two schemas that do not merge into one exactly (the message says why)."""


def merge_all_of(
    document: Any,
    cache: dict[str, Any] | None = None,
    shared: dict[int, tuple[Any, dict[str, Any]]] | None = None,
) -> Any:
    """`document` (bundled: its `$ref`s point into its own `$defs`) with every `allOf`
    merged that merges exactly; the same instances are valid against the result.

    Merged, bottom-up, in the root and in every definition:

    - `allOf` with the keywords beside it: one schema, when the branches agree
      by the rules below (a branch that is a bare `$ref` is read as its
      definition, merged first);
    - `$ref` beside other assertions (2020-12 applies both): as that `allOf`;
    - `anyOf`/`oneOf` beside other assertions: each branch merged with them
      (a value meets the siblings and a branch, or it meets none), except a
      discriminated union of bare `$ref`s, whose variants the tag names.

    Rules, the stricter of the two mergers the compilers had (an `allOf` that
    would change meaning stays as it is, with ALL_OF_CONFLICT saying why):

    - a keyword in one schema only is taken as it is; in both with equal
      values, once; a branch's annotations are dropped;
    - `type`: the types in common (`integer` is a `number`), none is a conflict;
      `enum`: the values in common (JSON equality: `true` is not `1`);
      `required`: both lists; bounds: the stricter; `uniqueItems`: either;
    - `properties`: each name in both gets `allOf` of its two schemas;
      `items`, `additionalProperties`, `propertyNames`, `dependentSchemas`:
      `allOf` of the two (`false` with anything is `false`);
      `patternProperties`, `dependentRequired`: per key;
    - `additionalProperties` sees only its own schema's `properties` (and
      `patternProperties`): a branch's `additionalProperties: false` merges
      only when the other names no property (or required name) it does not
      declare, and a schema there only when the other declares no property it
      lacks; beside the other's `patternProperties`, never;
    - keywords read together (`if`/`then`/`else`; `contains` and its counts;
      `prefixItems` or `additionalItems` with `items`) merge only when one
      branch alone has any of them;
    - anything else in both with different values (`format`, `pattern`,
      `multipleOf`, `const`, `not`, unions), a `false` branch, a branch with
      `$id`, anchors, dynamic references or `unevaluated*`, and an `allOf`
      that reaches itself through `$ref`s: a conflict.

    `cache` keeps the merged definitions by name, for documents bundled from
    one spec (the bundler names a definition the same in all of them). With it,
    `shared` (id of a `$defs` dict -> it and its merged dict) gives documents
    with the same `$defs` dict (the bundler shares them) one merged `$defs` dict.
    """
    if not isinstance(document, dict):
        return document
    defs = document.get("$defs")
    merger = _Merger(defs if isinstance(defs, dict) else {}, cache)
    root = merger.schema({k: v for k, v in document.items() if k != "$defs"})
    if not isinstance(defs, dict):
        return root
    if not isinstance(root, dict):
        return root  # a boolean schema carries no $defs, and refers to none
    known = shared.get(id(defs)) if shared is not None and cache is not None else None
    if known is not None and known[0] is defs:
        return {**root, "$defs": known[1]}
    merged_defs = {name: merger.definition(name) for name in defs}
    if shared is not None and cache is not None:
        shared[id(defs)] = (defs, merged_defs)
    return {**root, "$defs": merged_defs}


class _Merger:
    __slots__ = ("_defs", "_done", "_keep", "_merged", "_pending")

    def __init__(self, defs: dict[str, Any], cache: dict[str, Any] | None) -> None:
        self._defs = defs
        self._merged: dict[str, Any] = cache if cache is not None else {}
        self._pending: set[str] = set()
        # id() of a schema already walked -> its walked form; the schemas are kept
        # alive in _keep so no id is reused while this merger runs.
        self._done: dict[int, Any] = {}
        self._keep: list[Any] = []

    def definition(self, name: str) -> Any:
        known = self._merged.get(name)
        if known is None:
            if name in self._pending:
                raise _Conflict("allOf nested through itself")
            self._pending.add(name)
            try:
                known = self._merged[name] = self.schema(self._defs[name])
            finally:
                self._pending.discard(name)
        return known

    def schema(self, node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        known = self._done.get(id(node))
        if known is not None:
            return known
        out = self._node(self._children(node))
        self._done[id(node)] = out
        self._keep.append(node)
        return out

    def _children(self, node: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] | None = None
        for key, value in node.items():
            new: Any
            if key in _ONE or key in _MANY:
                if isinstance(value, list):
                    new = [self.schema(v) for v in value]
                    same = all(n is v for n, v in zip(new, value, strict=True))
                else:
                    new = self.schema(value)
                    same = new is value
            elif key in _MAP and key not in ("$defs", "definitions") and isinstance(value, dict):
                new = {k: self.schema(v) for k, v in value.items()}
                same = all(new[k] is v for k, v in value.items())
            else:
                continue
            if not same:
                if out is None:
                    out = dict(node)
                out[key] = new
        return node if out is None else out

    def _node(self, node: dict[str, Any]) -> Any:
        """The node's own allOf, $ref siblings and union siblings, merged."""
        ref = node.get("$ref")
        if ref is not None and _asserts(node, exclude=("$ref",)):
            rest = {k: v for k, v in node.items() if k not in ("$ref", "allOf")}
            extra = node.get("allOf", [])
            node = {**rest, "allOf": [{"$ref": ref}, *(extra if isinstance(extra, list) else [])]}
        if "allOf" in node:
            return node if ALL_OF_CONFLICT in node else self._all_of(node)
        return self._union(node)

    def _all_of(self, node: dict[str, Any]) -> Any:
        branches = node["allOf"]
        if not isinstance(branches, list):
            return node  # not JSON Schema; the compilers refuse it
        merged: Any = {k: v for k, v in node.items() if k != "allOf"}
        try:
            for branch in branches:
                part = self._branch(branch)
                if part is False:
                    return False  # nothing meets it, nor the allOf
                merged = _merge(merged, part)
        except _Conflict as exc:
            return {**node, ALL_OF_CONFLICT: str(exc)}
        # Its new allOfs (a property both declare) and unions that met siblings.
        return self.schema(merged)

    def _branch(self, branch: Any) -> Any:
        """A branch to merge: a dict, or False; a bare $ref read as its definition."""
        seen = 0
        while isinstance(branch, dict) and set(branch) == {"$ref"}:
            name = _def_name(branch["$ref"])
            if name is None or name not in self._defs or seen > 32:
                raise _Conflict(f"$ref {branch['$ref']!r} outside the bundle")
            branch = self.definition(name)
            seen += 1
        if branch is False:
            return False
        if not isinstance(branch, dict):
            return {}  # true, or an unusable schema (the loader warned): anything
        if ALL_OF_CONFLICT in branch:
            raise _Conflict(branch[ALL_OF_CONFLICT])
        return branch

    def _union(self, node: dict[str, Any]) -> dict[str, Any]:
        keyword = "oneOf" if "oneOf" in node else "anyOf" if "anyOf" in node else None
        if keyword is None or ("oneOf" in node and "anyOf" in node):
            return node
        branches = node[keyword]
        rest = {k: v for k, v in node.items() if k not in (keyword, "discriminator")}
        if not isinstance(branches, list) or not _asserts(rest):
            return node
        disc = node.get("discriminator")
        if (
            isinstance(disc, dict)
            and isinstance(disc.get("propertyName"), str)
            and all(isinstance(b, dict) and set(b) == {"$ref"} for b in branches)
        ):
            return node  # the tag names the variants: they stay $refs
        folded: list[Any] = []
        for branch in branches:
            try:
                part = self._branch(branch)
                folded.append(False if part is False else self.schema(_merge(rest, part)))
            except _Conflict as exc:
                folded.append({"allOf": [rest, branch], ALL_OF_CONFLICT: str(exc)})
        notes = {k: v for k, v in node.items() if k in _NOTES or k.startswith("x-")}
        if "discriminator" in node:
            notes["discriminator"] = node["discriminator"]
        return {**notes, keyword: folded}


def _def_name(ref: Any) -> str | None:
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return ref[len("#/$defs/") :]
    return None


def _asserts(node: dict[str, Any], exclude: tuple[str, ...] = ()) -> bool:
    """Whether node has a keyword beyond annotations (and `exclude`)."""
    return any(
        k not in _NOTES and not k.startswith("x-") and k not in exclude and k != "discriminator"
        for k in node
    )


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """One schema for a value that must meet both a and b (a's annotations kept);
    raises _Conflict when none says exactly that (see merge_all_of)."""
    for side in (a, b):
        scoped = [k for k in side if k in _SCOPED]
        if scoped:
            raise _Conflict(f"{scoped[0]} in a branch")
    for group in (*_GROUPS, _TUPLE | {"items"}):
        if any(k in group for k in a) and any(k in group for k in b):
            if group == _TUPLE | {"items"} and not any(k in _TUPLE for s in (a, b) for k in s):
                continue  # items and items: merged below
            if any(not _json_equal(a.get(k), b.get(k)) for k in group):
                raise _Conflict(f"{'/'.join(sorted(group))} in two branches")
    _closed(a, b)
    _closed(b, a)
    _open(a, b)
    _open(b, a)
    out = dict(a)
    for key, value in b.items():
        if (key in _NOTES or key.startswith("x-")) and key != _UNENFORCED:
            continue
        if key not in out:
            out[key] = value
            continue
        mine = out[key]
        if _json_equal(mine, value):
            continue
        if key == "type":
            out[key] = _types(mine, value)
        elif key == "enum":
            if not isinstance(mine, list) or not isinstance(value, list):
                raise _Conflict("enum that is not a list")
            out[key] = [v for v in mine if any(_json_equal(v, w) for w in value)]
        elif key == "required":
            if not isinstance(mine, list) or not isinstance(value, list):
                raise _Conflict("required that is not a list")
            out[key] = list(dict.fromkeys([*mine, *value]))
        elif key in _LOWER or key in _UPPER:
            if not (_number(mine) and _number(value)):
                raise _Conflict(f"{key} that is not a number")
            out[key] = max(mine, value) if key in _LOWER else min(mine, value)
        elif key == "uniqueItems":
            out[key] = mine is True or value is True
        elif key in ("properties", "patternProperties", "dependentSchemas"):
            out[key] = _per_key(key, mine, value, _both)
        elif key == "dependentRequired":
            out[key] = _per_key(key, mine, value, _required_both)
        elif key in ("items", "additionalProperties", "propertyNames"):
            out[key] = _both(mine, value)
        elif key == "allOf":
            if not isinstance(mine, list) or not isinstance(value, list):
                raise _Conflict("allOf that is not a list")
            out[key] = [*mine, *value]
        elif key == "discriminator":
            pass  # OpenAPI reads one beside a union: the first stays
        else:
            raise _Conflict("two formats" if key == "format" else f"two values for {key}")
    return out


def _types(a: Any, b: Any) -> Any:
    left = {a} if isinstance(a, str) else set(a) if isinstance(a, list) else None
    right = {b} if isinstance(b, str) else set(b) if isinstance(b, list) else None
    if left is None or right is None:
        raise _Conflict("type that is not a string or a list")
    if "number" in left:
        left.add("integer")
    if "number" in right:
        right.add("integer")
    both = [t for t in _TYPES if t in left and t in right]
    if "number" in both:
        both.remove("integer")
    both += sorted(t for t in left & right if t not in _TYPES)
    if not both:
        raise _Conflict("branches with no type in common")
    return both[0] if len(both) == 1 else both


def _per_key(key: str, a: Any, b: Any, both: Any) -> dict[str, Any]:
    if not isinstance(a, dict) or not isinstance(b, dict):
        raise _Conflict(f"{key} that is not an object")
    out = dict(a)
    for name, value in b.items():
        out[name] = both(out[name], value) if name in out else value
    return out


def _both(a: Any, b: Any) -> Any:
    """The schema of a value that must meet both a and b (its allOf merged later)."""
    if a is True or a == {}:
        return b
    if b is True or b == {}:
        return a
    if a is False or b is False:
        return False
    if _json_equal(a, b):
        return a
    return {"allOf": [a, b]}


def _required_both(a: Any, b: Any) -> list[Any]:
    if not isinstance(a, list) or not isinstance(b, list):
        raise _Conflict("dependentRequired that is not a list")
    return list(dict.fromkeys([*a, *b]))


def _closed(closed: dict[str, Any], other: dict[str, Any]) -> None:
    """A branch with `additionalProperties: false` knows only its own properties: merging it
    is only exact when the other branch names no property it lacks."""
    if closed.get("additionalProperties") is not False:
        return
    known = _names(closed.get("properties", {}))
    names = _names(other.get("properties", {})) | _names(other.get("required", []))
    if not names <= known or "patternProperties" in other:
        raise _Conflict("additionalProperties: false with properties from another branch")


def _open(side: dict[str, Any], other: dict[str, Any]) -> None:
    """A branch's `additionalProperties` schema covers the other branch's properties
    too, which one merged `properties` would hide: not a merge then."""
    extra = side.get("additionalProperties")
    if not isinstance(extra, dict) or not extra:
        return
    if not _names(other.get("properties", {})) <= _names(side.get("properties", {})):
        raise _Conflict("additionalProperties schema with properties from another branch")
    if "patternProperties" in other and not _json_equal(
        other["patternProperties"], side.get("patternProperties")
    ):
        raise _Conflict("additionalProperties schema with patternProperties from another branch")


def _names(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value)
    if isinstance(value, list):
        return {v for v in value if isinstance(v, str)}
    raise _Conflict("properties or required of the wrong type")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality: Python's `True == 1` is not JSON's; 1 and 1.0 are equal."""
    return bool(_canonical(a) == _canonical(b))


def _canonical(value: Any) -> Any:
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, (int, float)):
        return ("n", value)
    if isinstance(value, list):
        return ("a", tuple(_canonical(v) for v in value))
    if isinstance(value, dict):
        return ("o", frozenset((k, _canonical(v)) for k, v in value.items()))
    return ("s", value)


__all__ = ["ALL_OF_CONFLICT", "Bundler", "DocumentError", "merge_all_of"]
