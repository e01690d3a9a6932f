"""Raw request parameter strings -> JSON-like values, following OpenAPI `style`/`explode`.

The validator checks parameters against their JSON Schema, so first the
strings of the request have to become the values the schema talks about:
`;color=R,100,G,200` (matrix, an object) becomes `{"R": 100, "G": 200}`.
Everything that depends on the parameter alone (which style function, how to
coerce each item, what an error message shows) is decided once, when the
operation is compiled; `ParamReader.read` does only the per-request work.

Coercion is best effort: a string that is not a valid literal of the schema's
type stays a string, so the validator reports a type error at that value rather
than this module reporting a less precise one.

Styles follow the OpenAPI 3.1 Parameter Object tables ("Style Values",
"Style Examples"). Where 3.1.0 and 3.1.1 disagree (non-exploded `label`:
3.1.0 shows `.blue.black.brown`, 3.1.1 and RFC 6570 `.blue,black,brown`),
both are read; see `_either`.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import unquote, unquote_to_bytes

from runmcp_fast import jsontext

__all__ = [
    "MISSING",
    "Kind",
    "ParamReader",
    "Resolve",
    "Shape",
    "StyleError",
    "UnsupportedStyle",
    "defs_resolver",
    "parse_cookies",
    "parse_query",
    "shape_of",
    "spreads_members",
]

Kind = Literal["primitive", "array", "object"]
Resolve = Callable[[dict[str, Any]], dict[str, Any]]
"""Follows a schema's top-level `$ref` chain; called only on dicts that have a `$ref`."""


def spreads_members(location: str, style: str, explode: bool) -> bool:
    """Whether an object parameter so serialised writes its members as keys of their own
    (`?R=100&G=200`): exploded in the query (deepObject apart), exploded form in a cookie.
    MCP tools write them so, and check them against what `ParamReader` reads back."""
    return explode and (
        (location == "query" and style != "deepObject")
        or (location == "cookie" and style == "form")
    )


def defs_resolver(defs: dict[str, Any]) -> Resolve:
    """The Resolve of a bundled schema: its `#/$defs/...` refs, into `defs`."""

    def resolve(schema: dict[str, Any]) -> dict[str, Any]:
        for _ in range(32):
            ref = schema.get("$ref") if isinstance(schema, dict) else None
            if not isinstance(ref, str) or not ref.startswith("#/$defs/"):
                break
            target = defs.get(ref[len("#/$defs/") :])
            if not isinstance(target, dict):
                break
            schema = target
        return schema

    return resolve


_Coerce = Callable[[str], Any]
_Parse = Callable[[str], Any]
_Clean = Callable[[str], str] | None


class _Missing(enum.Enum):
    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing.MISSING
"""What `ParamReader.read` returns when the parameter is absent (an enum, for `is` and typing)."""


class StyleError(ValueError):
    """A parameter value that does not follow its declared style; `message` is for the client."""

    def __init__(self, message: str, *, name: str = "", location: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.name = name
        self.location = location


class UnsupportedStyle(ValueError):
    """Raised by `ParamReader(...)` for a style that is not defined for the location."""


# --- query string and cookies ---------------------------------------------------------


def _unquote(raw: str) -> str:
    """`unquote(raw, errors="replace")`, in half the time for the usual string."""
    try:
        return unquote_to_bytes(raw).decode("utf-8", "replace")
    except UnicodeEncodeError:  # lone surrogates in `raw`: unquote keeps them as they are
        return unquote(raw, errors="replace")


def parse_query(raw: str) -> dict[str, list[str]]:
    """Split a query string (without `?`) into name -> values, in order.

    Invalid UTF-8 in a percent-escape becomes U+FFFD (`errors="replace"`)
    rather than a lone surrogate (`surrogateescape`): the decoded values only
    feed validation and error messages (the request is forwarded as received),
    and orjson/msgspec refuse to encode lone surrogates, so an error body that
    quotes the value would fail. A pattern or enum will not match U+FFFD any
    more than it would have matched the raw bytes.
    """
    out: dict[str, list[str]] = {}
    if not raw:
        return out
    for part in raw.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        # Both checks skip the common case (plain ASCII) at the cost of a scan.
        if "+" in name:
            name = name.replace("+", " ")
        if "%" in name:
            name = _unquote(name)
        if "+" in value:
            value = value.replace("+", " ")
        if "%" in value:
            value = _unquote(value)
        values = out.get(name)
        if values is None:
            out[name] = [value]
        else:
            values.append(value)
    return out


def parse_cookies(header_values: list[str]) -> dict[str, str]:
    """Parse `Cookie` header values (RFC 6265 section 4.2.1) into name -> value.

    The first occurrence of a name wins: RFC 6265 section 5.4 has the user agent
    send the cookie with the longest path first, the most specific one. Values
    stay as sent (a cookie value is opaque; `ParamReader` percent-decodes for
    `form` style); only a surrounding DQUOTE pair is removed, as the grammar
    makes it part of the syntax, not the value. Pairs without `=` or with an
    empty name are skipped: the grammar has no such cookie.
    """
    out: dict[str, str] = {}
    for header in header_values:
        for pair in header.split(";"):
            name, eq, value = pair.partition("=")
            if not eq:
                continue
            name = name.strip()
            if not name or name in out:
                continue
            value = value.strip()
            if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
                value = value[1:-1]
            out[name] = value
    return out


# --- coercion -------------------------------------------------------------------------

_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def _keep(raw: str) -> str:
    return raw


def _coercer(types: frozenset[str]) -> _Coerce:
    """A function str -> the value of the first of `types` the string is a JSON literal of."""
    want_int = "integer" in types
    want_num = "number" in types
    want_bool = "boolean" in types
    want_null = "null" in types
    if not (want_int or want_num or want_bool or want_null):
        return _keep
    want_numeric = want_int or want_num
    integer = _INTEGER.fullmatch
    number = _NUMBER.fullmatch

    def coerce(raw: str) -> Any:
        # Non-string types first: with `type: [integer, string]`, 5 satisfies
        # every branch "5" would, and also e.g. `anyOf: [{type: integer, minimum: 1}, ...]`.
        if want_numeric and raw:
            if integer(raw) is not None:
                try:
                    return int(raw)
                except ValueError:  # longer than sys.get_int_max_str_digits()
                    return raw
            if want_num and number(raw) is not None:
                value = float(raw)
                if math.isfinite(value):  # 1e400 is valid JSON but not a float
                    return value
        if want_bool:
            if raw == "true":
                return True
            if raw == "false":
                return False
        if want_null and (raw == "" or raw == "null"):
            return None
        return raw

    return coerce


def _json_of(kind: type) -> _Coerce:
    """str -> the JSON value it holds when that is a `kind` (dict or list), else the str."""
    opener = "{" if kind is dict else "["

    def coerce(raw: str) -> Any:
        if not raw.startswith(opener):
            return raw
        try:
            value = jsontext.loads(raw)
        except ValueError:
            return raw
        return value if isinstance(value, kind) else raw

    return coerce


# --- shapes ---------------------------------------------------------------------------

_SCALAR_TYPES: Final = frozenset({"string", "number", "integer", "boolean", "null"})
_JSON_TYPES: Final = _SCALAR_TYPES | {"array", "object"}
_STRUCTURED: Final = frozenset({"array", "object"})


@dataclass(frozen=True, slots=True, eq=False)
class Shape:
    """What a parameter's schema says about how to read its value, decided at compile time.

    `types` are the JSON types of the value: for a primitive, those a raw
    string may be coerced to (empty: untyped, keep strings); `array`/`object`
    (plus `null`) otherwise. Sub-shapes are only as deep as a style can
    express (`items`, property values, a property's items); deeper values are
    never parsed from a string, so they need no shape.
    """

    kind: Kind
    types: frozenset[str]
    items: Shape | None = None
    """For arrays: the items' shape."""
    properties: Mapping[str, Shape] = field(default_factory=dict)
    """For objects: the declared properties (merged across `allOf`, `anyOf`, `oneOf`)."""
    additional: Shape | None = None
    """For objects: the shape of undeclared properties; None for `additionalProperties: false`."""
    free_form: bool = False
    """For objects: whether an exploded `form` object takes undeclared query keys (see
    `ParamReader`): `additionalProperties` given and not false, or no `properties` at all."""
    as_object: Shape | None = None
    """For a primitive whose schema also allows an object (`anyOf: [{type: object, ...},
    {type: integer}]`, Stripe's `created`): that object's shape, for deepObject keys."""
    as_array: Shape | None = None
    """Likewise when the schema also allows an array (`anyOf: [array, string]`)."""
    coerce: _Coerce = field(init=False, repr=False)
    """str -> value by `types`; for arrays and objects, JSON text of that kind is
    decoded (a value nested deeper than the style can write, as MCP tools and Box's
    `mdfilters` send it), anything else stays the string."""

    def __post_init__(self) -> None:
        if self.kind == "primitive":
            coerce = _coercer(self.types)
        else:
            coerce = _json_of(dict if self.kind == "object" else list)
        object.__setattr__(self, "coerce", coerce)


_UNTYPED: Final = Shape("primitive", frozenset())
_ABSENT: Final = object()
_DEPTH: Final = 3  # top level -> property -> property's items
_DEEP: Final = 8  # deepObject's `a[b][0][c]` keys nest further (Stripe's form bodies: 7 levels)
_BUDGET: Final = 16  # nested allOf/anyOf/oneOf/$ref hops, against reference cycles


class _Draft:
    """Facts gathered from a schema and its combinators, before a Shape is decided."""

    __slots__ = ("additional", "ambiguous", "items", "nullable", "properties", "types")

    def __init__(self) -> None:
        self.types: set[str] | None = None
        self.nullable = False
        self.ambiguous = False
        self.items: Any = None
        self.properties: dict[str, Any] = {}
        self.additional: Any = _ABSENT

    def kind(self) -> Kind | None:
        """None when nothing says what the value is (so the draft does not vote in `anyOf`)."""
        if self.ambiguous:
            return "primitive"
        types = (self.types or set()) - {"null"}
        structured = types & _STRUCTURED
        if structured:
            if len(structured) == 1 and types == structured:
                return "array" if "array" in structured else "object"
            self.ambiguous = True  # e.g. type: [array, string]
            return "primitive"
        if types:
            return "primitive"
        if self.items is not None:
            return "array"
        if self.properties or self.additional is not _ABSENT:
            return "object"
        return None


def _value_types(schema: dict[str, Any]) -> set[str] | None:
    """Types implied by `const`/`enum` when `type` is absent."""
    if "const" in schema:
        values: Any = [schema["const"]]
    elif isinstance(schema.get("enum"), list):
        values = schema["enum"]
    else:
        return None
    types: set[str] = set()
    for value in values:
        if value is None:
            types.add("null")
        elif isinstance(value, bool):
            types.add("boolean")
        elif isinstance(value, int):
            types.add("integer")
        elif isinstance(value, float):
            types.add("number")
        elif isinstance(value, str):
            types.add("string")
        elif isinstance(value, list):
            types.add("array")
        elif isinstance(value, dict):
            types.add("object")
    return types or None


def _collect(schema: Any, resolve: Resolve, draft: _Draft, budget: int) -> None:
    if budget <= 0:
        return
    if isinstance(schema, dict) and "$ref" in schema:
        schema = resolve(schema)
    if not isinstance(schema, dict):
        return  # boolean schemas say nothing about the shape
    declared = schema.get("type")
    types: set[str] | None
    if isinstance(declared, str):
        types = {declared} & _JSON_TYPES or None
    elif isinstance(declared, list):
        types = {t for t in declared if isinstance(t, str) and t in _JSON_TYPES} or None
    else:
        types = _value_types(schema)
    # allOf narrows, so the first typed member is as good as any and cheaper than
    # intersecting (which would also have to know that integer is within number).
    if types is not None and draft.types is None:
        draft.types = types
    if schema.get("nullable") is True:
        draft.nullable = True
    items = schema.get("items")
    if draft.items is None and isinstance(items, dict):
        draft.items = items
    properties = schema.get("properties")
    if isinstance(properties, dict):
        for name, sub in properties.items():
            draft.properties.setdefault(name, sub)
    if draft.additional is _ABSENT and "additionalProperties" in schema:
        draft.additional = schema["additionalProperties"]
    all_of = schema.get("allOf")
    if isinstance(all_of, list):
        for branch in all_of:
            _collect(branch, resolve, draft, budget - 1)
    for keyword in ("anyOf", "oneOf"):
        branches = schema.get(keyword)
        if isinstance(branches, list):
            _alternatives(branches, resolve, draft, budget - 1)


def _alternatives(branches: list[Any], resolve: Resolve, draft: _Draft, budget: int) -> None:
    kinds: set[Kind] = set()
    types: set[str] = set()
    for branch in branches:
        sub = _Draft()
        _collect(branch, resolve, sub, budget)
        if sub.nullable or (sub.types is not None and "null" in sub.types):
            draft.nullable = True
        # `{type: "null"}` and `{}` branches accept the value whatever it is, so
        # they must not make `anyOf: [{$ref: Pet}, {type: "null"}]` ambiguous.
        kind = sub.kind()
        if kind is None or (sub.types is not None and sub.types <= {"null"}):
            continue
        kinds.add(kind)
        types |= sub.types or set()
        if draft.items is None:
            draft.items = sub.items
        for name, schema in sub.properties.items():
            draft.properties.setdefault(name, schema)
        if draft.additional is _ABSENT:
            draft.additional = sub.additional
    if len(kinds) > 1:
        draft.ambiguous = True
    elif draft.types is None and types:
        draft.types = types


def shape_of(schema: Any, resolve: Resolve, depth: int = _DEPTH) -> Shape:
    """The Shape of `schema` (a raw dict, `$ref`s followed through `resolve`).

    The kind comes from `type` (string or list; 3.0's `nullable`), else from
    `const`/`enum` values, else from `items` (array) or `properties` /
    `additionalProperties` (object). `allOf` members add to it (the first
    typed member decides the type); `anyOf`/`oneOf` branches are merged when
    they agree on the kind, and make it a primitive string when they do not
    (`type: [array, string]` likewise): no split is then safe, and a string is
    what the validator can best explain. Null-only and untyped branches never
    count as disagreeing.
    """
    draft = _Draft()
    _collect(schema, resolve, draft, _BUDGET)
    kind = draft.kind() or "primitive"
    types = set(draft.types or ())
    if draft.nullable:
        types.add("null")

    def sub(schema: Any) -> Shape:
        return shape_of(schema, resolve, depth - 1) if depth > 1 else _UNTYPED

    if draft.ambiguous:
        # No split is safe for the value as a whole: read it as a scalar (its scalar
        # types tried first, then kept as a string), and keep the structured shapes
        # for the forms only they can have (deepObject's `created[gt]=5`, `expand[]=`).
        as_object, as_array, scalars = _alternative_shapes(schema, resolve, sub)
        if as_array is None and draft.items is not None and "array" in types:
            as_array = Shape("array", frozenset({"array"}), items=sub(draft.items))
        return Shape(
            "primitive",
            frozenset({"string"} | ((types | scalars) & _SCALAR_TYPES)),
            as_object=as_object,
            as_array=as_array,
        )
    if kind == "primitive":
        return Shape("primitive", frozenset(types & _SCALAR_TYPES))

    if kind == "array":
        items = sub(draft.items) if draft.items is not None else _UNTYPED
        return Shape("array", frozenset({"array"} | (types & {"null"})), items=items)
    additional = draft.additional
    return Shape(
        "object",
        frozenset({"object"} | (types & {"null"})),
        properties={name: sub(schema) for name, schema in draft.properties.items()},
        additional=None if additional is False else sub(additional),
        free_form=(additional is not _ABSENT and additional is not False)
        or (additional is _ABSENT and not draft.properties),
    )


def _alternative_shapes(
    schema: Any, resolve: Resolve, sub: Callable[[Any], Shape]
) -> tuple[Shape | None, Shape | None, set[str]]:
    """An ambiguous schema's `anyOf`/`oneOf` branches: the first object branch's shape,
    the first array branch's shape, and the scalar types of the others (so that
    `anyOf: [object, integer]` reads a bare `5` as the integer 5)."""
    if isinstance(schema, dict) and "$ref" in schema:
        schema = resolve(schema)
    as_object: Shape | None = None
    as_array: Shape | None = None
    scalars: set[str] = set()
    if not isinstance(schema, dict):
        return as_object, as_array, scalars
    branches = [
        branch
        for keyword in ("anyOf", "oneOf")
        if isinstance(schema.get(keyword), list)
        for branch in schema[keyword]
    ]
    for branch in branches:
        draft = _Draft()
        _collect(branch, resolve, draft, _BUDGET)
        kind = draft.kind()
        if kind == "object":
            if as_object is None:
                additional = draft.additional
                as_object = Shape(
                    "object",
                    frozenset({"object"}),
                    properties={n: sub(v) for n, v in draft.properties.items()},
                    additional=None if additional is False else sub(additional),
                )
        elif kind == "array":
            if as_array is None:
                items = sub(draft.items) if draft.items is not None else _UNTYPED
                as_array = Shape("array", frozenset({"array"}), items=items)
        elif kind == "primitive" and not draft.ambiguous:
            scalars |= draft.types or set()
    return as_object, as_array, scalars


# --- errors ---------------------------------------------------------------------------


def _samples(shape: Shape) -> tuple[str, str]:
    types = shape.types
    if "integer" in types:
        return ("1", "2")
    if "number" in types:
        return ("1.5", "2")
    if "boolean" in types:
        return ("true", "false")
    return ("x", "y")


def _example(style: str, explode: bool, name: str, shape: Shape) -> str:
    """How the value should look, built from the schema so the client recognises its fields."""
    pairs = [("k1", "x"), ("k2", "y")]  # deepObject's, whatever the schema says
    if shape.kind == "object":
        keys = [*list(shape.properties)[:2], "k1", "k2"][:2]
        values = [
            _samples(shape.properties.get(k) or shape.additional or _UNTYPED)[i]
            for i, k in enumerate(keys)
        ]
        pairs = list(zip(keys, values, strict=True))
        flat = [part for pair in pairs for part in pair]
        assigned = [f"{k}={v}" for k, v in pairs]
    else:
        values = list(_samples((shape.items or _UNTYPED) if shape.kind == "array" else shape))
        flat = values if shape.kind == "array" else values[:1]
        assigned = [f"{name}={v}" for v in flat]
    separator = {"spaceDelimited": "%20", "pipeDelimited": "|", "tabDelimited": "%09"}
    if style == "matrix":
        if explode and shape.kind != "primitive":
            return "".join(f";{a}" for a in assigned)
        return f";{name}=" + ",".join(flat)
    if style == "label":
        if explode and shape.kind == "object":
            return "." + ".".join(assigned)
        return "." + (".".join(flat) if explode else ",".join(flat))
    if style == "deepObject":
        return "&".join(f"{name}[{k}]={v}" for k, v in pairs)
    if style in separator:
        return f"{name}=" + separator[style].join(flat)
    if style == "form":
        if explode and shape.kind != "primitive":
            return "&".join(assigned)
        return f"{name}=" + ",".join(flat)
    # simple
    if explode and shape.kind == "object":
        return ",".join(assigned)
    return ",".join(flat)


class _Fail:
    """Builds the StyleError of one parameter; the message's fixed part is made up front."""

    __slots__ = ("expected", "location", "name")

    def __init__(self, name: str, location: str, expected: str) -> None:
        self.name = name
        self.location = location
        self.expected = expected

    def __call__(self, got: str, reason: str = "") -> StyleError:
        if len(got) > 100:
            got = got[:100] + "..."
        detail = f": {reason}" if reason else ""
        return StyleError(
            f"expected {self.expected}, got {got!r}{detail}", name=self.name, location=self.location
        )


# --- value parsers: one raw string -> value -----------------------------------------


def _percent_decode(raw: str) -> str:
    return _unquote(raw) if "%" in raw else raw


def _scalar(shape: Shape, clean: _Clean) -> _Parse:
    coerce = shape.coerce
    if clean is None:
        return coerce
    return lambda raw: coerce(clean(raw))


def _items(separator: str, items: Shape, clean: _Clean) -> _Parse:
    """`a<sep>b<sep>c` -> [a, b, c]; the empty string is the empty array."""
    coerce = items.coerce

    def parse(raw: str) -> list[Any]:
        if not raw:
            return []
        parts = raw.split(separator)
        if clean is not None:
            parts = [clean(part) for part in parts]
        if coerce is _keep:
            return parts
        return [coerce(part) for part in parts]

    return parse


def _property_coercer(shape: Shape) -> Callable[[str, str], Any]:
    """(key, raw) -> the raw value coerced by the property's (or additional) schema."""
    by_name = {name: sub.coerce for name, sub in shape.properties.items()}
    other = shape.additional.coerce if shape.additional is not None else _keep
    if other is _keep and all(coerce is _keep for coerce in by_name.values()):
        return lambda key, raw: raw
    return lambda key, raw: by_name.get(key, other)(raw)


def _pairs(separator: str, shape: Shape, clean: _Clean, fail: _Fail) -> _Parse:
    """`k1<sep>v1<sep>k2<sep>v2` (non-exploded objects) -> {k1: v1, k2: v2}."""
    coerce = _property_coercer(shape)

    def parse(raw: str) -> dict[str, Any]:
        if not raw:
            return {}
        parts = raw.split(separator)
        if len(parts) % 2:
            raise fail(raw, "keys and values must alternate")
        if clean is not None:
            parts = [clean(part) for part in parts]
        it = iter(parts)
        return {key: coerce(key, value) for key, value in zip(it, it, strict=True)}

    return parse


def _entries(separator: str, shape: Shape, clean: _Clean, fail: _Fail) -> _Parse:
    """`k1=v1<sep>k2=v2` (exploded objects) -> {k1: v1, k2: v2}."""
    coerce = _property_coercer(shape)

    def parse(raw: str) -> dict[str, Any]:
        if not raw:
            return {}
        out: dict[str, Any] = {}
        for entry in raw.split(separator):
            key, eq, value = entry.partition("=")
            if not eq:
                raise fail(raw, f"{entry!r} has no '='")
            if clean is not None:
                key = clean(key)
                value = clean(value)
            out[key] = coerce(key, value)
        return out

    return parse


def _either(comma: _Parse, dot: _Parse) -> _Parse:
    """Non-exploded label: RFC 6570 and OpenAPI 3.1.1 separate with `,`, the 3.1.0 table
    with `.`. A value without a comma is read the 3.1.0 way, so a one-item array whose item
    holds a dot (`.1.5`) splits; the alternative, rejecting 3.1.0 clients' `.R.100.G.200`,
    fails more requests that are valid in the spec's own (then current) example."""
    return lambda raw: comma(raw) if "," in raw else dot(raw)


def _simple(shape: Shape, explode: bool, clean: _Clean, fail: _Fail) -> _Parse:
    if shape.kind == "array":
        return _items(",", shape.items or _UNTYPED, clean)
    if shape.kind == "object":
        return (_entries if explode else _pairs)(",", shape, clean, fail)
    return _scalar(shape, clean)


def _delimited(separator: str, shape: Shape, clean: _Clean, fail: _Fail) -> _Parse:
    if shape.kind == "array":
        return _items(separator, shape.items or _UNTYPED, clean)
    if shape.kind == "object":
        return _pairs(separator, shape, clean, fail)
    return _scalar(shape, clean)  # n/a in the table: do not split a primitive


def _label(shape: Shape, explode: bool, fail: _Fail) -> _Parse:
    inner: _Parse
    if shape.kind == "array":
        items = shape.items or _UNTYPED
        inner = (
            _items(".", items, None)
            if explode
            else _either(_items(",", items, None), _items(".", items, None))
        )
    elif shape.kind == "object":
        inner = (
            _entries(".", shape, None, fail)
            if explode
            else _either(_pairs(",", shape, None, fail), _pairs(".", shape, None, fail))
        )
    else:
        inner = shape.coerce

    def parse(raw: str) -> Any:
        if not raw.startswith("."):
            raise fail(raw, "a label value starts with '.'")
        return inner(raw[1:])

    return parse


def _matrix(name: str, shape: Shape, explode: bool, fail: _Fail) -> _Parse:
    prefix = name + "="
    if explode and shape.kind == "array":
        coerce = (shape.items or _UNTYPED).coerce
        cut = len(prefix)

        def exploded_array(raw: str) -> list[Any]:
            if not raw.startswith(";"):
                raise fail(raw, "a matrix value starts with ';'")
            out: list[Any] = []
            for entry in raw[1:].split(";"):
                if entry.startswith(prefix):
                    out.append(coerce(entry[cut:]))
                elif entry != name:  # `;color` alone is the empty array
                    raise fail(raw, f"each item is written {prefix}<value>")
            return out

        return exploded_array

    if explode and shape.kind == "object":
        entries = _entries(";", shape, None, fail)

        def exploded_object(raw: str) -> dict[str, Any]:
            if not raw.startswith(";"):
                raise fail(raw, "a matrix value starts with ';'")
            rest = raw[1:]
            return {} if rest == name else entries(rest)  # `;color` is the empty object

        return exploded_object

    inner = _simple(shape, False, None, fail)  # the value after `=` reads like simple style

    def parse(raw: str) -> Any:
        if not raw.startswith(";"):
            raise fail(raw, "a matrix value starts with ';'")
        key, _, value = raw[1:].partition("=")
        if key != name:
            raise fail(raw, f"the name must be {name!r}")
        return inner(value)  # `;color` (no `=`) is the empty value

    return parse


def _is_json(media_type: str) -> bool:
    essence = media_type.partition(";")[0].strip().lower()
    return essence == "application/json" or essence.endswith("+json")


def _content(media_type: str, fail: _Fail) -> _Parse:
    if not _is_json(media_type):
        return _keep  # no parser for other media types: validate the raw string

    def parse(raw: str) -> Any:
        try:
            return jsontext.loads(raw)
        except ValueError as exc:
            raise fail(raw, f"not valid JSON: {exc}") from None

    return parse


# --- query and cookie collectors: several keys -> one value ----------------------------


def _from_values(shape: Shape) -> Callable[[list[str]], Any]:
    """A property given by repeated keys: all of them for an array property, else the
    first; for a scalar that may also be an array (`anyOf: [array, string]`), all of them
    when the key is repeated (a scalar is never written twice), else the scalar."""
    if shape.kind == "array":
        coerce = (shape.items or _UNTYPED).coerce
        return lambda values: [coerce(v) for v in values]
    first = shape.coerce
    if shape.as_array is not None:
        item = (shape.as_array.items or _UNTYPED).coerce
        return lambda values: first(values[0]) if len(values) == 1 else [item(v) for v in values]
    return lambda values: first(values[0])


def _owner(key: str) -> str:
    """`filter` for `filter[x]`: a deepObject key belongs to the parameter named before `[`."""
    return key.partition("[")[0]


def _query_object(shape: Shape, claimed: frozenset[str]) -> Callable[[Any], Any]:
    declared = {name: _from_values(sub) for name, sub in shape.properties.items()}
    extra = _from_values(shape.additional or _UNTYPED)
    free = shape.free_form

    def read(query: dict[str, list[str]]) -> Any:
        # Loops over the request's keys, not the schema's properties: a query has a
        # handful of keys, a schema may declare dozens.
        out: dict[str, Any] = {}
        for key, values in query.items():
            take = declared.get(key)
            if take is not None:
                out[key] = take(values)
            elif free and key not in claimed and _owner(key) not in claimed:
                out[key] = extra(values)
        return out if out else MISSING

    return read


def _cookie_object(shape: Shape, claimed: frozenset[str]) -> Callable[[Any], Any]:
    def coercer(sub: Shape) -> _Coerce:
        if sub.kind == "array":  # one cookie per name reaches us: a one-item array
            coerce = (sub.items or _UNTYPED).coerce
            return lambda raw: [coerce(_percent_decode(raw))]
        return _scalar(sub, _percent_decode)

    declared = {name: coercer(sub) for name, sub in shape.properties.items()}
    extra = coercer(shape.additional or _UNTYPED)
    free = shape.free_form

    def read(cookies: dict[str, str]) -> Any:
        out: dict[str, Any] = {}
        for key, value in cookies.items():
            take = declared.get(key)
            if take is not None:
                out[key] = take(value)
            elif free and key not in claimed:
                out[key] = extra(value)
        return out if out else MISSING

    return read


def _is_index(key: str) -> bool:
    """`""` or `"3"` (ASCII digits, as `str.isdigit` also takes `"²"`): an array item."""
    return not key or (key.isascii() and key.isdigit())


def _index(key: str) -> int:
    """`3` for `expand[3]`'s "3"; `[]` (an empty index) sorts before, in the order given.
    Past 18 digits the order given counts (no int of 4,300 digits from a client)."""
    return int(key) if key and len(key) <= 18 else -1


_Entry = tuple[list[str], list[str]]
"""A deepObject key's bracketed segments below the current level, and its values."""


def _structured(shape: Shape) -> tuple[Shape | None, Shape | None]:
    """The object and the array shape a value of `shape` may take."""
    obj = shape if shape.kind == "object" else shape.as_object
    arr = shape if shape.kind == "array" else shape.as_array
    return obj, arr


def _deep_value(shape: Shape, entries: list[_Entry], fail: _Fail, where: str) -> Any:
    """The value of `where` (`name[a][0]`) from the keys below it, read by `shape`.

    Segments nest only where the shape is an object or an array: below a scalar
    (or past the shape's depth) the rest of the key is one flat property name,
    `a][b`, as before nesting was read at all.
    """
    obj, arr = _structured(shape)
    leaves = [v for segments, values in entries if not segments for v in values]
    nested = [(segments, values) for segments, values in entries if segments]
    if not nested:
        # Repeated keys are a list wherever the schema allows one: Stripe's
        # `lines[0][tax_rates]` is `anyOf: [array, enum [""]]`.
        return _from_values(shape)(leaves)
    groups: dict[str, list[_Entry]] = {}
    for segments, values in nested:
        groups.setdefault(segments[0], []).append((segments[1:], values))
    declared = obj.properties if obj is not None else {}
    if arr is not None and all(_is_index(k) and k not in declared for k in groups):
        if leaves:
            raise fail(f"{where}=...", "both a value and items")
        items = arr.items or _UNTYPED
        out: list[tuple[int, int, Any]] = []  # (index, order given, value)
        for key, group in groups.items():
            if key == "" and all(not rest for rest, _ in group):
                # `a[]=x&a[]=y`: each value is an item.
                out.extend((-1, len(out), v) for v in _deep_value(arr, group, fail, where))
            else:
                out.append((_index(key), len(out), _deep_value(items, group, fail, where)))
        out.sort(key=lambda t: t[:2])
        return [value for _i, _n, value in out]
    if arr is not None and any(_is_index(k) and k not in declared for k in groups):
        raise fail(f"{where}[...]", "both array items and object properties")
    if leaves:
        raise fail(f"{where}=...", "both a value and properties")
    result: dict[str, Any] = {}
    other = (obj.additional if obj is not None else None) or _UNTYPED
    for key, group in groups.items():
        sub = declared.get(key, other)
        sub_obj, sub_arr = _structured(sub)
        if sub_obj is None and sub_arr is None:
            # `color[a][b]` below a scalar: the flat property "a][b".
            for rest, values in group:
                flat = "][".join([key, *rest])
                result[flat] = _from_values(declared.get(flat, other))(values)
            continue
        result[key] = _deep_value(sub, group, fail, f"{where}[{key}]")
    return result


def _segments(key: str, cut: int) -> list[str] | None:
    """`name[a][0][]` -> ["a", "0", ""]; None when the key is not bracketed to its end."""
    if not key.endswith("]"):
        return None
    return key[cut:-1].split("][")


def _deep_object(name: str, shape: Shape, fail: _Fail) -> Callable[[Any], Any]:
    """deepObject: `name[prop]=v` keys, nested as `name[prop][0][sub]=v` where the
    schema nests. Real APIs (Stripe) also send arrays this way, `expand[]=a&expand[]=b`
    or `expand[0]=a&expand[1]=b`; and a schema that allows a scalar too
    (`anyOf: [object, integer]`) takes a bare `name=5`."""
    prefix = name + "["
    cut = len(prefix)
    # A bare key's values: the scalar, or a list where the schema allows one.
    bare_value = (
        _from_values(shape)
        if shape.kind == "primitive" or _structured(shape)[1] is not None
        else None
    )

    def read(query: dict[str, list[str]]) -> Any:
        entries: list[_Entry] = []
        bare: list[str] | None = None
        for key, values in query.items():
            if key.startswith(prefix):
                segments = _segments(key, cut)
                if segments is None:
                    raise fail(f"{key}={values[0]}", f"a property is written {name}[property]")
                entries.append((segments, values))
            elif key == name:
                bare = values
        if entries:
            return _deep_value(shape, entries, fail, name)
        if bare is not None:
            if bare_value is not None:  # `expand=a&expand=b`: lenient, as the APIs are
                return bare_value(bare)
            raise fail(f"{name}={bare[0]}")  # present, but not as deepObject
        return MISSING

    return read


# --- the reader -----------------------------------------------------------------------

_DELIMITED: Final = ("spaceDelimited", "pipeDelimited", "tabDelimited")
_STYLES: Final[Mapping[str, frozenset[str]]] = {
    # Swagger 2.0's ssv/pipes/tsv were allowed in path and header too; they arrive
    # here as the delimited styles, which then just split the one value.
    "path": frozenset({"simple", "label", "matrix", *_DELIMITED}),
    "header": frozenset({"simple", *_DELIMITED}),
    "query": frozenset({"form", "deepObject", *_DELIMITED}),
    "cookie": frozenset({"form", *_DELIMITED}),
}
_SEPARATORS: Final[Mapping[str, str]] = {
    "form": ",",
    "simple": ",",
    "spaceDelimited": " ",
    "pipeDelimited": "|",
    "tabDelimited": "\t",
}


class ParamReader:
    """Reads one parameter's value out of a request; built once per parameter.

    `read(source)` takes, by location:

    - path: the segment's text, already percent-decoded;
    - query: `parse_query(...)`'s dict;
    - header: the field value (a list of values is joined with ", "), or None when absent;
    - cookie: `parse_cookies(...)`'s dict.

    It returns `MISSING` when the parameter is absent, else the value with
    strings coerced by the schema's types; it raises `StyleError` when the text
    does not follow the style.

    Rules where the spec leaves room:

    - A query key repeated for a non-array parameter: the first value counts
      (as in most servers). For a non-exploded array every occurrence is split
      and the items concatenated (`?ids=1,2&ids=3` -> [1, 2, 3]).
    - Exploded `form` objects (query and cookie, e.g. `?R=100&G=200`) take
      every key that is a declared property; when the schema is free-form
      (`additionalProperties` present and not false, or no `properties` at
      all) also every other key that is not `claimed` (the names of the
      operation's other parameters in the same location) and is not
      `claimed[...]` (another parameter's deepObject key). No such key:
      MISSING, since an empty exploded object is not distinguishable from
      an absent one.
    - An empty value (`?ids=`, `.`, `;color`, an empty header) reads as [] for
      arrays and {} for objects; for exploded query arrays each key is an item,
      so `?ids=` is [""] there.
    - Query values are split after percent-decoding (`parse_query` decodes
      first), so an encoded `%2C` inside a non-exploded form item is a
      separator too; path segments come decoded as well. Cookie values are
      split first and then decoded, so there it is not (except for space- and
      tab-delimited cookies, whose separator must itself be encoded).
    - Cookies: `form` style percent-encodes, so values are percent-decoded.
      Only the first cookie of a name is seen, so an exploded array
      (`color=blue; color=black`) reads as a one-item array.
    - deepObject: `name[a][b]` nests where the schema does (an object or an
      array below `a`, to eight levels: Stripe's `lines[0][type]`), and is
      otherwise the flat property "a][b"; a property given more than once is
      an array when its schema says array or allows one, else the first value; a bare
      `name=...` is a StyleError. Beyond the spec, as Stripe and
      `qs` write them: an array parameter (or an `anyOf` with an array branch)
      takes `name[]=a&name[]=b` and `name[0]=a&name[1]=b` (items in index
      order; `[]` items first, in the order given) and repeated bare `name=a`;
      a parameter whose schema also allows a scalar (`anyOf: [object,
      integer]`) takes a bare `name=5`, coerced by the scalar branches' types.
    - A value whose schema is an object or an array where the style has no
      way to write one (an item of a `form` array, a property of a property)
      is read as JSON text when it holds JSON of that kind (what MCP tools
      send; Box's `mdfilters`), else kept as the string.
    - Header items (simple style) are stripped of surrounding whitespace,
      since the fields of a repeated header are joined by ", ".
    - The delimited styles with `explode: true` (n/a in the table) read like
      exploded `form`; in path, header and cookie (Swagger 2.0 `ssv`/`pipes`/
      `tsv`) they split the one value.
    - `content:` parameters (`media_type`): JSON media types are decoded with
      `jsontext.loads` (StyleError when invalid); other media types give the raw string.
      Style, explode and coercion do not apply.

    Raises `UnsupportedStyle` at construction for a style that the location
    does not have (e.g. `matrix` in a query).
    """

    __slots__ = (
        "explode",
        "location",
        "media_type",
        "name",
        "read",
        "shape",
        "style",
        "takes_others",
    )

    read: Callable[[Any], Any]

    def __init__(
        self,
        name: str,
        location: str,
        style: str,
        explode: bool,
        schema: Any,
        resolve: Resolve,
        media_type: str | None = None,
        *,
        claimed: frozenset[str] = frozenset(),
    ) -> None:
        self.name = name
        self.location = location
        self.style = style
        self.explode = explode
        self.media_type = media_type
        depth = _DEEP if style == "deepObject" and media_type is None else _DEPTH
        self.shape = shape = shape_of(schema, resolve, depth)
        self.takes_others = (
            media_type is None
            and shape.kind == "object"
            and shape.free_form
            and spreads_members(location, style, explode)
        )
        """An exploded free-form object: it reads the keys no declared property names,
        except those `claimed` (its operation's other parameters in its location)."""
        if media_type is not None:
            fail = _Fail(name, location, f"{media_type} content")
            content = _content(media_type, fail)
            if location == "cookie":  # cookie values can not hold `;` `,` `"` unencoded
                self.read = _adapt(name, location, lambda raw: content(_percent_decode(raw)))
            else:
                self.read = _adapt(name, location, content)
            return
        if style not in _STYLES.get(location, ()):
            raise UnsupportedStyle(f"style {style!r} is not defined for {location} parameters")
        desc = f"{style} style"
        if shape.kind != "primitive":
            desc += ", explode=true" if explode else ", explode=false"
        fail = _Fail(name, location, f"{_example(style, explode, name, shape)} ({desc})")
        self.read = self._reader(shape, claimed, fail)

    def _reader(self, shape: Shape, claimed: frozenset[str], fail: _Fail) -> Callable[[Any], Any]:
        name, location, style, explode = self.name, self.location, self.style, self.explode
        separator = _SEPARATORS.get(style, ",")
        if location == "path":
            if style == "label":
                return _label(shape, explode, fail)
            if style == "matrix":
                return _matrix(name, shape, explode, fail)
            if style == "simple":
                return _simple(shape, explode, None, fail)
            return _delimited(separator, shape, None, fail)
        if location == "header":
            if style == "simple":
                return _adapt(name, location, _simple(shape, explode, str.strip, fail))
            return _adapt(name, location, _delimited(separator, shape, str.strip, fail))
        if location == "cookie":
            if shape.kind == "object" and spreads_members(location, style, explode):
                return _cookie_object(shape, claimed)
            if explode and style == "form" and shape.kind == "array":
                coerce = (shape.items or _UNTYPED).coerce
                return _adapt(name, location, lambda raw: [coerce(_percent_decode(raw))])
            if separator in " \t":
                # A cookie value can not hold a space or tab, so the separator itself
                # arrives encoded: decode, then split.
                split = _delimited(separator, shape, None, fail)
                return _adapt(name, location, lambda raw: split(_percent_decode(raw)))
            return _adapt(name, location, _delimited(separator, shape, _percent_decode, fail))
        # query
        if style == "deepObject":
            return _deep_object(name, shape, fail)
        if shape.kind == "object" and spreads_members(location, style, explode):
            return _query_object(shape, claimed)
        if explode and (shape.kind == "array" or shape.as_array is not None):
            # (`?ids=a&ids=b` for `anyOf: [array, string]`: a repeated key is the list)
            take = _from_values(shape)

            def exploded(query: dict[str, list[str]]) -> Any:
                values = query.get(name)
                return MISSING if values is None else take(values)

            return exploded
        parse = _delimited(separator, shape, None, fail)
        if shape.kind != "array":
            return _adapt(name, location, parse)

        def concatenated(query: dict[str, list[str]]) -> Any:
            values = query.get(name)
            if values is None:
                return MISSING
            if len(values) == 1:
                return parse(values[0])
            return [item for value in values for item in parse(value)]

        return concatenated

    def __repr__(self) -> str:
        return (
            f"ParamReader({self.name!r}, {self.location!r}, {self.style!r}, "
            f"explode={self.explode}, kind={self.shape.kind!r})"
        )


def _adapt(name: str, location: str, parse: _Parse) -> Callable[[Any], Any]:
    """Wrap a parser of one raw string into a reader of the location's source."""
    if location == "path":
        return parse
    if location == "header":

        def header(value: str | list[str] | None) -> Any:
            if value is None:
                return MISSING
            return parse(value if isinstance(value, str) else ", ".join(value))

        return header
    if location == "cookie":

        def cookie(cookies: dict[str, str]) -> Any:
            value = cookies.get(name)
            return MISSING if value is None else parse(value)

        return cookie

    def query(query: dict[str, list[str]]) -> Any:
        values = query.get(name)
        return MISSING if values is None else parse(values[0])

    return query
