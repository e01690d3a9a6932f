"""JSON Schema (the bundled 2020-12 form from `bundle.py`) to one msgspec type.

msgspec checks while it decodes, in C, so a valid body costs one pass and no
Python per value. Each keyword maps to what msgspec enforces natively:

| JSON Schema | msgspec |
|---|---|
| `type` (one or a list), `nullable` | `int`, `float`, `str`, `bool`, `None`, `list`, `dict`, unions |
| `properties`, `required`, `additionalProperties: false` | a `Struct` (`forbid_unknown_fields`) |
| `additionalProperties: <schema>` without `properties` | `dict[str, T]` |
| bounds, `multipleOf`, lengths, `pattern`, `min/maxItems` | `Meta(...)` |
| `enum`, `const` of strings, integers, null | `Literal[...]` |
| `allOf` | merged before, by `bundle.merge_all_of` (one that does not merge: a fallback) |
| `oneOf`/`anyOf` with a `discriminator` | a tagged union of Structs |
| `oneOf`/`anyOf` of distinct JSON kinds, `anyOf: [X, null]` | a union |
| `$ref` cycles through objects | Structs referring to themselves |
| `date-time`, `date`, `time`, `uuid`, `byte` | the matching msgspec type |

A schema node using anything else (`not`, `if`/`then`/`else`,
`uniqueItems`, `patternProperties`, `dependentRequired`, object unions
without a discriminator, `minProperties` beside `properties`, ...) becomes
a *fallback*: a marker type whose values msgspec hands to `dec_hook`, which
checks that sub-schema alone with the `jsonschema` library. Every fallback
is recorded (`SchemaCompiler.fallbacks`) so `runmcp-fast check` can list them.
"""

from __future__ import annotations

import math
import re
import sys
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
from jsonschema.exceptions import best_match

from runmcp_fast.openapi.pointers import join
from runmcp_fast.validation.bundle import ALL_OF_CONFLICT
from runmcp_fast.validation.formats import FORMAT_CHECKER, FORMAT_TYPES, StrictValidator
from runmcp_fast.validation.library import Fallback, TypeLibrary

# Keywords msgspec can not enforce: a node that uses one is checked by the fallback.
_FALLBACK_KEYWORDS = (
    "not",
    "if",
    "uniqueItems",
    "patternProperties",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
    "contains",
    "prefixItems",
    "unevaluatedProperties",
    "unevaluatedItems",
    "propertyNames",
    "$dynamicRef",
    "$recursiveRef",
)
_STRING_KEYS = ("minLength", "maxLength", "pattern", "format")
_NUMBER_KEYS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
_ARRAY_KEYS = ("items", "minItems", "maxItems")
_OBJECT_KEYS = ("properties", "required", "additionalProperties", "minProperties", "maxProperties")
# Only these change what is valid; anything else (discriminator, readOnly,
# default, ...) leaves a node as permissive as `{}`.
_ASSERTIONS = frozenset(
    (
        "type",
        "enum",
        "const",
        "allOf",
        "anyOf",
        "oneOf",
        "$ref",
        *_FALLBACK_KEYWORDS,
        *_STRING_KEYS,
        *_NUMBER_KEYS,
        *_ARRAY_KEYS,
        *_OBJECT_KEYS,
        "then",
        "else",
        "minContains",
        "maxContains",
        "additionalItems",
    )
)
_TYPES = ("null", "boolean", "integer", "number", "string", "array", "object")
_UNKNOWN = object()  # a `type` value JSON Schema does not define


class Checked:
    """Base of the marker types msgspec hands to `dec_hook`: a value its sub-schema checks."""

    __slots__ = ()
    check: typing.ClassVar[Callable[[Any], None]]


def dec_hook(kind: type, value: Any) -> Any:
    """msgspec's hook for the fallback markers: check the value.

    msgspec wants an instance of `kind` back; the value itself is of no use
    afterwards (the gateway forwards the original bytes), so an empty marker
    instance does.
    """
    check = getattr(kind, "check", None)
    if check is None:
        raise NotImplementedError
    check(value)
    return kind()


def _affected(version: str) -> bool:
    """Whether this msgspec over-releases a compiled pattern (0.19 to 0.22; fixed in 0.23)."""
    found = re.match(r"(\d+)\.(\d+)", version)
    return found is None or (int(found[1]), int(found[2])) < (0, 23)


PATTERN_UNION_UNSAFE = _affected(msgspec.__version__)
"""msgspec before 0.23 decrements a compiled pattern's refcount once too often when it
frees the type of a union of `Annotated[str, Meta(pattern=...)]` with a list or dict:
the pattern is freed while `re`'s cache and the `Meta` still use it, and the process
crashes later. The compiler never builds such a union there (a fallback instead)."""


def pattern_beside_container(members: list[Any]) -> bool:
    """Whether a union of `members` puts a patterned string beside a list or dict."""
    flat: list[Any] = []
    for member in members:
        origin = typing.get_origin(member)
        flat.extend(
            typing.get_args(member) if origin in (typing.Union, types.UnionType) else [member]
        )
    return any(_patterned_str(m) for m in flat) and any(_container(m) for m in flat)


def _patterned_str(kind: Any) -> bool:
    if typing.get_origin(kind) is not Annotated:
        return False
    base, *metas = typing.get_args(kind)
    return base is str and any(
        isinstance(meta, msgspec.Meta) and meta.pattern is not None for meta in metas
    )


def _container(kind: Any) -> bool:
    if typing.get_origin(kind) is Annotated:
        kind = typing.get_args(kind)[0]
    return (typing.get_origin(kind) or kind) in (list, dict, tuple, set, frozenset)


class _Refused(Exception):
    """A schema node the msgspec type can not take as it is (the message says why)."""


class SchemaCompiler:
    """Compiles one bundled schema. Use once: `SchemaCompiler(root).compile()`."""

    def __init__(self, root: Any, library: TypeLibrary | None = None) -> None:
        self.root = root
        lib = library if library is not None else TypeLibrary()
        if isinstance(root, dict) and isinstance(root.get("$defs"), dict):
            lib.defs.update(root["$defs"])
        self.defs = lib.defs
        self.fallbacks: list[Fallback] = []
        self._module = lib.module
        self._def_types = lib.def_types
        self._def_fallbacks = lib.def_fallbacks
        self._in_progress: dict[tuple[str, str | None, str | None], str] = {}
        self._names = lib.names
        self.decoder: msgspec.json.Decoder[Any] | None = None
        """Set by `compile()`."""

    def compile(self) -> Any:
        """The msgspec type for the whole schema. Raises TypeError only on a compiler bug."""
        # Forward references between Structs (recursive schemas) are resolved
        # by msgspec in the Struct's module, so the module exists while the
        # decoder is built; msgspec caches the resolved types on the classes.
        name = self._module.__name__
        sys.modules[name] = self._module
        try:
            kind = self.type_of(self.root, "")
            try:
                # Building the decoder resolves every forward reference now.
                self.decoder = msgspec.json.Decoder(kind, dec_hook=dec_hook)
            except Exception as exc:  # any refusal: stay correct
                # A combination the per-node checks did not foresee: stay correct.
                self.fallbacks.clear()
                kind = self._fallback(self.root, "", f"msgspec refused the type ({exc})")
                self.decoder = msgspec.json.Decoder(kind, dec_hook=dec_hook)
        finally:
            del sys.modules[name]
        return kind

    # -- one node ----------------------------------------------------------------------

    def type_of(self, schema: Any, pointer: str) -> Any:
        if schema is True:
            return Any
        if schema is False:
            return self._fallback(schema, pointer, "false")
        if not isinstance(schema, dict):
            return Any
        if "x-unenforced-pattern" in schema:
            self.fallbacks.append(
                Fallback(pointer or "/", "pattern not enforced: Python's re can not compile it")
            )
        schema = _applicable(schema)
        keys = [k for k in schema if k in _ASSERTIONS]
        if not keys:
            return Any
        if keys == ["$ref"]:
            return self._ref(schema["$ref"], pointer)
        if schema.get("uniqueItems") is True and schema.get("type") == "array":
            unique = self._unique_items(schema, pointer)
            if unique is not None:
                return unique
        for keyword in _FALLBACK_KEYWORDS:
            if keyword in schema:
                return self._fallback(schema, pointer, keyword)
        if "allOf" in schema:  # left by merge_all_of: its branches do not merge
            why = schema.get(ALL_OF_CONFLICT, "not merged")
            return self._fallback(schema, pointer, f"allOf ({why})")
        if "$ref" in schema:  # beside other keywords: merge_all_of merges them (not given it)
            return self._fallback(schema, pointer, "$ref with siblings")
        if "anyOf" in schema or "oneOf" in schema:
            return self._union(schema, pointer)
        if "enum" in schema or "const" in schema:
            return self._literal(schema, pointer)
        kinds = schema.get("type")
        if isinstance(kinds, str):
            kinds = [kinds]
        elif not isinstance(kinds, list):
            kinds = _TYPES  # no type: each keyword constrains its own kind only
        elif not kinds:
            return self._fallback(schema, pointer, "type: []")
        members: list[Any] = []
        for kind in dict.fromkeys(kinds):
            if kind == "integer" and "number" in kinds:
                continue  # number covers it
            try:
                member = self._typed(kind, schema, pointer)
            except (ValueError, TypeError, _Refused) as exc:
                # A combination msgspec refuses (its Meta checks its arguments): stay correct.
                return self._fallback(schema, pointer, f"type {kind} ({exc})")
            if member is _UNKNOWN:
                return self._fallback(schema, pointer, f"type {kind}")
            members.append(member)
        return self._union_of(members, schema, pointer)

    def _typed(self, kind: str, schema: dict[str, Any], pointer: str) -> Any:
        if kind == "null":
            return None
        if kind == "boolean":
            return bool
        if kind == "integer":
            try:
                return _annotated(int, _integer_meta(schema))
            except _Refused as exc:
                return self._fallback(schema, pointer, str(exc))
        if kind == "number":
            return _annotated(float, _number_meta(schema))
        if kind == "string":
            return self._string(schema, pointer)
        if kind == "array":
            items = schema.get("items", True)
            item_type = self.type_of(items, join(pointer, "items"))
            meta = _meta(min_length=schema.get("minItems"), max_length=schema.get("maxItems"))
            return _annotated(list[item_type], meta)  # type: ignore[valid-type]
        if kind == "object":
            return self._object(schema, pointer, None, None)
        return _UNKNOWN

    def _string(self, schema: dict[str, Any], pointer: str) -> Any:
        fmt = schema.get("format")
        special = FORMAT_TYPES.get(fmt) if isinstance(fmt, str) else None
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            try:
                re.compile(pattern)
            except re.error:
                # ECMA-262 syntax (\p{L}) neither msgspec nor jsonschema can run:
                # not enforced, and said so by `check` (the bundler sets these aside).
                self.fallbacks.append(
                    Fallback(pointer or "/", "pattern not enforced: Python's re can not compile it")
                )
                pattern = None
        meta = _meta(
            min_length=schema.get("minLength"),
            max_length=schema.get("maxLength"),
            pattern=pattern,
        )
        if special is not None:
            if meta is not None:
                return self._fallback(schema, pointer, f"format {fmt} with string bounds")
            return special
        return _annotated(str, meta)

    def _object(
        self, schema: dict[str, Any], pointer: str, tag_field: str | None, tag: str | None
    ) -> Any:
        props = schema.get("properties")
        props = props if isinstance(props, dict) else {}
        required = [r for r in schema.get("required", ()) if isinstance(r, str)]
        extra = schema.get("additionalProperties", True)
        if isinstance(extra, dict) and not [k for k in extra if k in _ASSERTIONS]:
            extra = True
        counts = "minProperties" in schema or "maxProperties" in schema
        if not props and not required and tag_field is None:
            if extra is False:
                return _annotated(dict[str, Any], _meta(max_length=0))
            value = (
                Any if extra is True else self.type_of(extra, join(pointer, "additionalProperties"))
            )
            meta = _meta(
                min_length=schema.get("minProperties"), max_length=schema.get("maxProperties")
            )
            return _annotated(dict[str, value], meta)  # type: ignore[valid-type]
        if extra is not True and extra is not False:
            return self._fallback(schema, pointer, "additionalProperties schema beside properties")
        if extra is False and any(name not in props for name in required):
            return self._fallback(schema, pointer, "required names a property it forbids")
        if counts:
            return self._fallback(schema, pointer, "minProperties/maxProperties beside properties")
        if tag_field is not None:
            if tag_field in required:
                required.remove(tag_field)
            props = {k: v for k, v in props.items() if k != tag_field}
        names = list(dict.fromkeys([*props, *required]))
        fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
        rename: dict[str, str] = {}
        here = join(pointer, "properties")
        needed = set(required)
        for i, name in enumerate(names):
            field = f"f{i}"
            rename[field] = name
            kind = self.type_of(props.get(name, True), join(here, name))
            if name in needed:
                fields.append((field, kind))
            else:
                fields.append((field, kind | msgspec.UnsetType, msgspec.UNSET))
        cls_name = f"S{next(self._names)}"
        struct: Any = msgspec.defstruct(
            cls_name,
            fields,
            module=self._module.__name__,
            rename=rename,
            forbid_unknown_fields=extra is False,
            kw_only=True,
            tag_field=tag_field,
            tag=tag,
            # Decoded values never form cycles and die young: no GC tracking.
            gc=False,
        )
        setattr(self._module, cls_name, struct)
        return struct

    # -- references --------------------------------------------------------------------

    def _def(self, ref: Any) -> tuple[str, Any]:
        if not isinstance(ref, str) or not ref.startswith("#/$defs/"):
            raise _Refused(f"$ref {ref!r} outside the bundle")
        name = ref[len("#/$defs/") :]
        if name not in self.defs:
            raise _Refused(f"$ref {ref!r} names no definition")
        return name, self.defs[name]

    def _ref(
        self, ref: Any, pointer: str, tag_field: str | None = None, tag: str | None = None
    ) -> Any:
        try:
            name, schema = self._def(ref)
        except _Refused as exc:
            return self._fallback({"$ref": ref}, pointer, str(exc))
        key = (name, tag_field, tag)
        known = self._def_types.get(key)
        if known is not None:
            self.fallbacks.extend(self._def_fallbacks.get(key, ()))
            return known
        forward = self._in_progress.get(key)
        if forward is not None:
            return typing.ForwardRef(forward)
        # Only an object compiles to a Struct a forward reference can name.
        # Reserve that name before compiling the fields that may refer back.
        cls_name = f"S{next(self._names)}"
        self._in_progress[key] = cls_name
        first = len(self.fallbacks)
        where = join("/$defs", name)
        try:
            if tag_field is not None:
                kind = self._variant(schema, where, tag_field, tag)
            else:
                kind = self.type_of(schema, where)
        finally:
            del self._in_progress[key]
        # The reserved name now stands for the type, for the forward references.
        setattr(self._module, cls_name, kind)
        self._def_types[key] = kind
        # Without repeats (MEMORY: Graph's entities reach the same nodes many times
        # over): the validator keeps each fallback's first place only anyway.
        self._def_fallbacks[key] = list(dict.fromkeys(self.fallbacks[first:]))
        return kind

    def _deref(self, schema: Any, depth: int = 0) -> Any:
        while isinstance(schema, dict) and set(schema) == {"$ref"}:
            if depth > 32:
                raise _Refused("a $ref chain that does not end")
            schema = self._def(schema["$ref"])[1]
            depth += 1
        return schema

    # -- unions ------------------------------------------------------------------------

    def _union(self, schema: dict[str, Any], pointer: str) -> Any:
        keyword = "oneOf" if "oneOf" in schema else "anyOf"
        if "oneOf" in schema and "anyOf" in schema:
            return self._fallback(schema, pointer, "oneOf beside anyOf")
        branches = schema[keyword]
        if not isinstance(branches, list) or not branches:
            return self._fallback(schema, pointer, f"{keyword} that is not a list")
        rest = {k: v for k, v in schema.items() if k != keyword and k in _ASSERTIONS}
        if rest.get("type") == "object" and isinstance(schema.get("discriminator"), dict):
            del rest["type"]  # the variants are objects: it says nothing more
        if rest:
            # merge_all_of folds siblings into the branches, but for the $ref variants
            # of a discriminator (the tag names them): jsonschema reads both.
            return self._fallback(schema, pointer, f"{keyword} beside other keywords")
        disc = schema.get("discriminator")
        if isinstance(disc, dict) and isinstance(disc.get("propertyName"), str):
            tagged = self._tagged(branches, disc, pointer)
            if tagged is not None:
                return tagged
            by_tag = self._variant_refs(branches, disc)
            if by_tag is not None:
                return self._fallback(
                    schema,
                    pointer,
                    f"{keyword} with discriminator",
                    variants=(disc["propertyName"], by_tag),
                )
        here = join(pointer, keyword)
        members: list[Any] = []
        nullable = False
        for i, branch in enumerate(branches):
            target = self._deref(branch) if not isinstance(branch, bool) else branch
            if isinstance(target, dict) and target.get("type") == "null" and len(target) == 1:
                nullable = True
                continue
            members.append(self.type_of(branch, join(here, i)))
        if nullable:
            members.append(None)
        if len(members) == 1:
            return members[0]
        kinds = [_kind_of(m) for m in members]
        # msgspec tells members apart by JSON kind: one object type at most
        # (a Struct or a dict), one string type, ... (`X | None` is the common case).
        if None in kinds or len(set(kinds)) != len(kinds):
            return self._fallback(schema, pointer, f"{keyword} without discriminator")
        if keyword == "oneOf" and "int" in kinds and "float" in kinds:
            return self._fallback(schema, pointer, "oneOf of integer and number")
        return self._union_of(members, schema, pointer)

    def _tagged(self, branches: list[Any], disc: dict[str, Any], pointer: str) -> Any:
        field = disc["propertyName"]
        given = disc.get("mapping")
        mapping: dict[str, Any] = given if isinstance(given, dict) else {}
        by_ref: dict[str, list[str]] = {}
        for tag, ref in mapping.items():
            by_ref.setdefault(ref, []).append(tag)
        variants: list[Any] = []
        for branch in branches:
            ref = branch.get("$ref") if isinstance(branch, dict) else None
            if not isinstance(ref, str) or set(branch) != {"$ref"}:
                return None
            name = ref.rsplit("/", 1)[-1]
            target = self.defs.get(name)
            own = target.get("x-component", name) if isinstance(target, dict) else name
            tags = by_ref.get(ref) or [own]
            for tag in tags:
                try:
                    variant = self._ref(ref, pointer, field, tag)
                except _Refused:
                    return None
                if not (isinstance(variant, type) and issubclass(variant, msgspec.Struct)):
                    return None
                variants.append(variant)
        try:
            kind: Any = typing.Union[tuple(variants)]  # noqa: UP007 - built at runtime
            msgspec.json.Decoder(kind)  # a trial: raises for a union msgspec refuses
        except (TypeError, NameError):
            return None
        return kind

    def _variant_refs(self, branches: list[Any], disc: dict[str, Any]) -> dict[str, str] | None:
        """tag -> the `$ref` of its variant, when every branch is a bare `$ref`."""
        given = disc.get("mapping")
        mapping: dict[str, Any] = given if isinstance(given, dict) else {}
        refs = [
            b.get("$ref") if isinstance(b, dict) and set(b) == {"$ref"} else None for b in branches
        ]
        if not all(isinstance(r, str) for r in refs):
            return None
        by_tag = {tag: ref for tag, ref in mapping.items() if ref in refs}
        for ref in refs:
            if isinstance(ref, str) and ref not in by_tag.values():
                name = ref.rsplit("/", 1)[-1]
                target = self.defs.get(name)
                by_tag[target.get("x-component", name) if isinstance(target, dict) else name] = ref
        return by_tag

    def _variant(self, schema: Any, pointer: str, field: str, tag: str | None) -> Any:
        if not isinstance(schema, dict) or any(
            k in schema for k in ("allOf", "anyOf", "oneOf", "enum")
        ):
            return None
        if schema.get("type", "object") != "object":
            return None
        if any(k in schema for k in _FALLBACK_KEYWORDS):
            return None
        return self._object(schema, pointer, field, tag)

    def _union_of(self, members: list[Any], schema: Any, pointer: str) -> Any:
        if len(members) == 1:
            return members[0]
        if PATTERN_UNION_UNSAFE and pattern_beside_container(members):
            # Never built: freeing its type (a Decoder, each msgspec.convert) frees
            # the compiled pattern under its other users (docs/upstream/msgspec-refcount.md).
            return self._fallback(schema, pointer, "pattern string beside array/object")
        try:
            kind: Any = typing.Union[tuple(members)]  # noqa: UP007 - built at runtime
            msgspec.json.Decoder(kind, dec_hook=dec_hook)  # a trial: raises if refused
        except (TypeError, NameError):
            return self._fallback(schema, pointer, "a union msgspec does not support")
        return kind

    # -- enum / const ------------------------------------------------------------------

    def _literal(self, schema: dict[str, Any], pointer: str) -> Any:
        values = [schema["const"]] if "const" in schema else schema["enum"]
        if "const" in schema and "enum" in schema:
            enum = schema["enum"]
            if not isinstance(enum, list) or not any(_json_equal(values[0], v) for v in enum):
                return self._fallback(schema, pointer, "const outside its enum")
        if not isinstance(values, list) or not values:
            return self._fallback(schema, pointer, "enum that is not a list")
        for v in values:
            if not (
                v is None or isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool))
            ):
                return self._fallback(schema, pointer, "enum of other than strings, integers, null")
        # The enum decides; a `type` beside it can only narrow it further.
        kinds = schema.get("type")
        if kinds is not None:
            allowed = {kinds} if isinstance(kinds, str) else set(kinds)
            values = [
                v
                for v in values
                if json_type(v) in allowed or (json_type(v) == "integer" and "number" in allowed)
            ]
            if not values:
                return self._fallback(schema, pointer, "enum no value of which has the type")
        checks = {k for k in schema if k in _ASSERTIONS} - {"enum", "const", "type"}
        if checks:
            return self._fallback(schema, pointer, f"enum with {sorted(checks)[0]}")
        return Literal[tuple(values)]

    def _unique_items(self, schema: dict[str, Any], pointer: str) -> Any:
        """`uniqueItems` as a post-decode check around the compiled array type, not jsonschema."""
        rest = {k: v for k, v in schema.items() if k != "uniqueItems"}
        if any(k in rest for k in _FALLBACK_KEYWORDS):
            return None
        inner = self.type_of(rest, pointer)
        self.fallbacks.append(Fallback(pointer or "/", "uniqueItems (post-decode check)"))

        def check(value: Any) -> None:
            try:
                msgspec.convert(value, inner, dec_hook=dec_hook)
            except msgspec.ValidationError as exc:
                raise ValueError(str(exc)) from None
            seen: set[Any] = set()
            for i, item in enumerate(value):
                key = _canonical(item)
                if key in seen:
                    raise ValueError(f"items must be unique (uniqueItems): item {i} repeats one")
                seen.add(key)

        return type("Unique", (Checked,), {"__slots__": (), "check": staticmethod(check)})

    # -- the fallback ------------------------------------------------------------------

    def _fallback(
        self,
        schema: Any,
        pointer: str,
        keyword: str,
        variants: tuple[str, dict[str, str]] | None = None,
    ) -> Any:
        self.fallbacks.append(Fallback(pointer or "/", keyword))
        checker = make_checker(schema, self.defs, variants)
        return type("Checked", (Checked,), {"__slots__": (), "check": staticmethod(checker)})


def make_checker(
    schema: Any, defs: dict[str, Any], variants: tuple[str, dict[str, str]] | None = None
) -> Callable[[Any], None]:
    """A function raising ValueError (naming the keyword and where) when `value` breaks `schema`.

    The `jsonschema` validator is built on first use: Stripe's spec has
    thousands of fallback nodes, most never seen in a request.
    """
    validator: Any = None
    by_tag: dict[str, Any] = {}

    def check(value: Any) -> None:
        nonlocal validator
        chosen = None
        if variants is not None and isinstance(value, dict):
            # OpenAPI: the discriminator names the one variant to check against.
            field, refs = variants
            tag = value.get(field)
            if not isinstance(tag, str) or tag not in refs:
                raise ValueError(f"'{field}' must be one of {sorted(refs)} (discriminator)")
            chosen = by_tag.get(tag)
            if chosen is None:
                chosen = by_tag[tag] = StrictValidator(
                    {"$ref": refs[tag], "$defs": defs}, format_checker=FORMAT_CHECKER
                )
        if chosen is None:
            if validator is None:
                document = {**schema, "$defs": defs} if isinstance(schema, dict) else schema
                validator = StrictValidator(document, format_checker=FORMAT_CHECKER)
            chosen = validator
        try:
            error = best_match(chosen.iter_errors(value))
        except re.error:
            return  # a pattern Python can not run, set aside at compile time
        if error is not None:
            where = "".join(f"/{p}" for p in error.absolute_path)
            at = f" at {where}" if where else ""
            raise ValueError(f"{error.message} ({error.validator}){at}")

    return check


# -- helpers ---------------------------------------------------------------------------


_KIND_KEYWORDS = {
    "array": frozenset(
        (
            "items",
            "prefixItems",
            "contains",
            "minContains",
            "maxContains",
            "uniqueItems",
            "minItems",
            "maxItems",
            "unevaluatedItems",
            "additionalItems",
        )
    ),
    "object": frozenset(
        (
            "properties",
            "patternProperties",
            "additionalProperties",
            "required",
            "propertyNames",
            "minProperties",
            "maxProperties",
            "dependentRequired",
            "dependentSchemas",
            "dependencies",
            "unevaluatedProperties",
        )
    ),
    "string": frozenset(_STRING_KEYS),
    "number": frozenset(_NUMBER_KEYS),
}
_KIND_KEYWORDS["integer"] = _KIND_KEYWORDS["number"]


def _applicable(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` without the keywords no declared type can use (Kubernetes puts
    `uniqueItems` on strings) and without no-op values, so they force no fallback."""
    kinds = schema.get("type")
    if isinstance(kinds, str):
        kinds = [kinds]
    drop = [k for k in ("uniqueItems",) if schema.get(k) is False]
    if isinstance(kinds, list) and all(isinstance(k, str) for k in kinds):
        allowed: set[str] = set()
        for kind in kinds:
            allowed |= _KIND_KEYWORDS.get(kind, frozenset())
        for words in _KIND_KEYWORDS.values():
            drop.extend(k for k in words if k in schema and k not in allowed)
    if not drop:
        return schema
    return {k: v for k, v in schema.items() if k not in drop}


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality: Python's `True == 1` is not JSON's."""
    return bool(_canonical(a) == _canonical(b))


def _canonical(value: Any) -> Any:
    """A hashable key equal for JSON-equal values: 1 and 1.0 alike, true and 1 not,
    objects regardless of key order."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, (int, float)):
        return ("n", value)
    if isinstance(value, list):
        return ("a", tuple(_canonical(v) for v in value))
    if isinstance(value, dict):
        return ("o", frozenset((k, _canonical(v)) for k, v in value.items()))
    return ("s", value)


def _meta(**given: Any) -> msgspec.Meta | None:
    kept = {k: v for k, v in given.items() if v is not None}
    return msgspec.Meta(**kept) if kept else None


def _annotated(kind: Any, meta: msgspec.Meta | None) -> Any:
    return kind if meta is None else Annotated[kind, meta]


def _number_meta(schema: dict[str, Any]) -> msgspec.Meta | None:
    def num(key: str) -> Any:
        v = schema.get(key)
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    multiple = num("multipleOf")
    ge, gt = num("minimum"), num("exclusiveMinimum")
    le, lt = num("maximum"), num("exclusiveMaximum")
    # msgspec takes one lower and one upper bound: keep the stricter of each pair.
    if ge is not None and gt is not None:
        ge, gt = (None, gt) if gt >= ge else (ge, None)
    if le is not None and lt is not None:
        le, lt = (None, lt) if lt <= le else (le, None)
    return _meta(ge=ge, le=le, gt=gt, lt=lt, multiple_of=multiple if multiple else None)


def _integer_meta(schema: dict[str, Any]) -> msgspec.Meta | None:
    """Integer bounds for msgspec, which takes only integers: 0.5 <= n is 1 <= n."""
    meta = _number_meta(schema)
    if meta is None:
        return None
    ge, le = meta.ge, meta.le
    if meta.gt is not None:
        low = math.floor(meta.gt) + 1
        ge = low if ge is None else max(math.ceil(ge), low)
    if meta.lt is not None:
        high = math.ceil(meta.lt) - 1
        le = high if le is None else min(math.floor(le), high)
    multiple = meta.multiple_of
    if multiple is not None and not float(multiple).is_integer():
        raise _Refused("an integer with a fractional multipleOf")
    return _meta(
        ge=None if ge is None else math.ceil(ge),
        le=None if le is None else math.floor(le),
        multiple_of=None if multiple is None else int(multiple),
    )


def json_type(value: Any) -> str:
    """The JSON Schema type name of a decoded JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _kind_of(kind: Any) -> str | None:
    """The JSON kind a compiled type takes, to tell which unions msgspec can tell apart."""
    if kind is None:
        return "null"
    origin = typing.get_origin(kind)
    if origin is Annotated:
        return _kind_of(typing.get_args(kind)[0])
    if origin is list:
        return "array"
    if origin is dict:
        return "object"
    if origin is Literal:
        values = typing.get_args(kind)
        if all(isinstance(v, str) for v in values):
            return "string"
        if all(isinstance(v, int) for v in values):
            return "int"
        return None
    if kind is Any or isinstance(kind, typing.ForwardRef):
        return None
    if isinstance(kind, type):
        if issubclass(kind, msgspec.Struct):
            return "object"
        if issubclass(kind, Checked):
            return None
        if kind is bool:
            return "boolean"
        if kind is int:
            return "int"
        if kind is float:
            return "float"
        if kind in (str, bytes) or kind.__module__ == "datetime":
            return "string"
    if origin in (typing.Union, types.UnionType):
        return None
    return None
