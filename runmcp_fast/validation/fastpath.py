"""A bundled JSON Schema compiled for `_fastcheck`, the one-pass validator over raw bytes.

`compile_fast(schema)` gives a `Program` whose `check(data)` is True iff `data`
is one JSON document valid against `schema` with no repeated object key, or
None when the schema uses something the fast path does not do (the caller
keeps the msgspec path for it). The input is what `bundle.py` makes: a
standalone 2020-12 schema whose `$ref`s all point to `#/$defs/<name>`, its
`allOf`s merged by `bundle.merge_all_of` (SchemaValidator does that first; an
`allOf` still there is checked branch by branch, exactly but with re-reads).

Supported, with the gateway's documented readings (docs/validation.md):

| JSON Schema | in the node |
|---|---|
| `type` (one or a list), none (each keyword constrains its own kind) | a bit per JSON kind |
| `properties`, `required`, `additionalProperties` (true, false, a schema), `min/maxProperties` | a table of declared keys, a required bitset |
| `items` (one schema), `min/maxItems` | per item |
| `minLength`/`maxLength` (code points), `pattern` (Python's `re`, a C matcher for simple anchored ones) | per string |
| `format` `date-time`, `date`, `time`, `uuid`, `byte` (others are annotations) | C checks |
| bounds, `multipleOf` | `integer`: exact integers; `number`: doubles, `fmod` as msgspec |
| `enum`, `const` of strings, integers, booleans, null | bytes / int64 compared in C |
| `allOf` that did not merge | each branch in turn, on the same bytes (as a union's re-reads) |
| `anyOf`/`oneOf` | by the value's JSON kind; several branches of one kind are tried in turn |
| `oneOf`/`anyOf` of `$ref`s with a `discriminator` | the tag member picks the variant (msgspec's tagged union) |
| recursive `$ref`s | a node graph with cycles |

Not supported (None): `not`, `if`/`then`/`else`, `patternProperties`,
`dependent*`, `propertyNames`, `prefixItems`, `contains`, `uniqueItems`,
`unevaluated*`, enums of floats, arrays or objects, `$ref`s that leave the
bundle, an `allOf` that reaches itself without reading anything, and unions (or
allOfs left unmerged) trying several array or object branches that recurse or
nest so that one value could be read more than MAX_REREADS times.

Where msgspec's reading differs from JSON Schema by design, the fast path
follows msgspec: `integer` is a JSON integer literal (`1.0` is not one, nor
does it equal an enum's 1), a number beyond the double range is refused,
date-times take a space or `t` for the `T` and no leap second, `pattern` is
Python's `re`, the discriminator decides the variant. Where the msgspec path
is wrong by JSON Schema, the fast path is not, so these documents may get a
different answer from `SchemaValidator.check_json` (tests/test_fastcheck.py
lists them): RFC 3339 year 0000 and fractions rounding past 9999-12-31, the
`+0530` offset, invalid UTF-8 or out-of-range numbers in members msgspec skips,
`anyOf` of an integer and a number branch (msgspec tries only the int), a
discriminator inside `anyOf: [..., {type: null}]`, nesting deep enough for
msgspec's RecursionError.
"""

from __future__ import annotations

import math
import re
from typing import Any

import orjson

from runmcp_fast._fastcheck import (
    ANY,
    FORMATS,
    KIND_ALL,
    KIND_ARRAY,
    KIND_FALSE,
    KIND_FLOAT,
    KIND_INTEGER,
    KIND_NULL,
    KIND_OBJECT,
    KIND_STRING,
    KIND_TRUE,
    NEVER,
    Node,
    Program,
)

__all__ = ["Unsupported", "compile_fast", "compile_fast_or_raise", "simple_pattern"]

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

_TYPE_KINDS = {
    "null": KIND_NULL,
    "boolean": KIND_TRUE | KIND_FALSE,
    "integer": KIND_INTEGER,
    "number": KIND_INTEGER | KIND_FLOAT,
    "string": KIND_STRING,
    "array": KIND_ARRAY,
    "object": KIND_OBJECT,
}

# Keywords the nodes enforce.
_SUPPORTED = frozenset(
    (
        "type",
        "enum",
        "const",
        "allOf",
        "anyOf",
        "oneOf",
        "$ref",
        "properties",
        "required",
        "additionalProperties",
        "minProperties",
        "maxProperties",
        "items",
        "minItems",
        "maxItems",
        "uniqueItems",
        "minLength",
        "maxLength",
        "pattern",
        "format",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
    )
)
# Assertions the fast path does not do: present (and applicable), the schema is refused.
_UNSUPPORTED_ANY_KIND = frozenset(
    ("not", "if", "then", "else", "$dynamicRef", "$recursiveRef", "$dynamicAnchor")
)
_UNSUPPORTED_OBJECT = frozenset(
    (
        "patternProperties",
        "dependentRequired",
        "dependentSchemas",
        "dependencies",
        "propertyNames",
        "unevaluatedProperties",
    )
)
_UNSUPPORTED_ARRAY = frozenset(
    ("prefixItems", "contains", "minContains", "maxContains", "unevaluatedItems", "additionalItems")
)
_ACTIVE = _SUPPORTED | _UNSUPPORTED_ANY_KIND | _UNSUPPORTED_OBJECT | _UNSUPPORTED_ARRAY
# Carried with the assertions (a union reads it), never an assertion itself.
_CARRIED = frozenset(("discriminator",))

# Nesting of the schema itself (not of documents): deeper is refused, far below
# Python's recursion limit.
_MAX_SCHEMA_DEPTH = 200
MAX_REREADS = 16
"""At most this many reads of one array or object by unions trying several branches."""


class Unsupported(Exception):
    """The schema uses something the fast path does not do (the message says what)."""


def compile_fast(schema: Any) -> Program | None:
    """The fast validator for a bundled schema, or None when it is not supported."""
    try:
        return compile_fast_or_raise(schema)
    except (Unsupported, RecursionError):
        return None


def compile_fast_or_raise(schema: Any) -> Program:
    """`compile_fast`, raising `Unsupported` (saying why) instead of returning None."""
    try:
        return _Compiler(schema).program()
    except (ValueError, TypeError, OverflowError, re.error) as exc:
        raise Unsupported(f"{type(exc).__name__}: {exc}") from exc


# -- the compiler ----------------------------------------------------------------------


class _Compiler:
    def __init__(self, root: Any) -> None:
        self.root = root
        defs = root.get("$defs") if isinstance(root, dict) else None
        self.defs: dict[str, Any] = defs if isinstance(defs, dict) else {}
        self.nodes: list[Node] = []
        self.memo: dict[Any, Node] = {}
        self.depth = 0

    def program(self) -> Program:
        root = self.node(self.root)
        self.check_backtracking()
        return Program(root, self.nodes)

    def check_backtracking(self) -> None:
        """Bound the re-reads of unions that try several array or object branches: none
        may be recursive, and the branch counts multiplied along any chain of such unions
        nested in each other must stay within MAX_REREADS (a document is then read at
        most that many times, whatever its shape)."""
        by_address = {node.address(): node for node in self.nodes}
        cost: dict[int, int] = {}
        active: set[int] = set()

        def inner(node: Node) -> list[Node]:
            """The backtracking unions reachable from node's children, not through one."""
            found: list[Node] = []
            seen: set[int] = set()
            todo = list(node.children())
            while todo:
                address = todo.pop()
                if address in seen:
                    continue
                seen.add(address)
                child = by_address.get(address)
                if child is None:
                    continue  # ANY, NEVER
                if child.backtracks:
                    found.append(child)
                else:
                    todo.extend(child.children())
            return found

        def rereads(node: Node) -> int:
            address = node.address()
            if address in active:
                raise Unsupported("a recursive union of objects or arrays")
            known = cost.get(address)
            if known is not None:
                return known
            active.add(address)
            total = node.tries * max((rereads(n) for n in inner(node)), default=1)
            active.discard(address)
            if total > MAX_REREADS:
                raise Unsupported("unions of objects or arrays nested too deeply")
            cost[address] = total
            return total

        for node in self.nodes:
            if node.backtracks:
                rereads(node)

    def new(self) -> Node:
        node = Node()
        self.nodes.append(node)
        return node

    # -- one schema --------------------------------------------------------------------

    def node(self, schema: Any) -> Node:
        if schema is True:
            return ANY
        if schema is False:
            return NEVER
        if not isinstance(schema, dict):
            return ANY  # the loader warned already; an unusable schema accepts anything
        active = _active(schema)
        if not any(k in _ACTIVE for k in active):
            return ANY
        if set(active) == {"$ref"}:
            return self.ref(active["$ref"])
        key = _canonical(active)
        if key is not None:
            known = self.memo.get(key)
            if known is not None:
                return known
        node = self.new()
        if key is not None:
            self.memo[key] = node
        self.fill(node, active)
        return node

    def ref(self, ref: Any) -> Node:
        name, target = self.resolve(ref)
        key = ("$defs", name)
        known = self.memo.get(key)
        if known is not None:
            return known
        if target is True:
            return ANY
        if target is False:
            return NEVER
        if not isinstance(target, dict):
            return ANY
        active = _active(target)
        if not any(k in _ACTIVE for k in active):
            return ANY
        node = self.new()
        self.memo[key] = node
        self.fill(node, active)
        return node

    def resolve(self, ref: Any) -> tuple[str, Any]:
        """The definition a `$ref` names, through chains of bare `$ref`s."""
        seen: set[str] = set()
        while True:
            if not isinstance(ref, str) or not ref.startswith("#/$defs/"):
                raise Unsupported(f"$ref {ref!r} outside the bundle")
            name = ref[len("#/$defs/") :]
            if name not in self.defs:
                raise Unsupported(f"$ref {ref!r} names no definition")
            if name in seen:
                raise Unsupported(f"$ref {ref!r} refers to itself")
            seen.add(name)
            target = self.defs[name]
            if isinstance(target, dict):
                active = _active(target)
                if set(active) == {"$ref"}:
                    ref = active["$ref"]
                    continue
            return name, target

    def fill(self, node: Node, schema: dict[str, Any]) -> None:
        self.depth += 1
        try:
            if self.depth > _MAX_SCHEMA_DEPTH:
                raise Unsupported("a schema nested too deeply")
            if "$ref" in schema:  # beside other keywords: both apply
                rest = {k: v for k, v in schema.items() if k not in ("$ref", "allOf")}
                extra = schema.get("allOf", [])
                if not isinstance(extra, list):
                    raise Unsupported("allOf that is not a list")
                schema = {**rest, "allOf": [{"$ref": schema["$ref"]}, *extra]}
            if "allOf" in schema:
                self.all_of(node, schema)
            elif "anyOf" in schema or "oneOf" in schema:
                self.union(node, schema)
            else:
                self.simple(node, schema)
        finally:
            self.depth -= 1

    def simple(self, node: Node, schema: dict[str, Any]) -> None:
        for keyword in _UNSUPPORTED_ANY_KIND:
            if keyword in schema:
                raise Unsupported(keyword)
        kinds = _type_kinds(schema.get("type"))
        strings: list[bytes] | None = None
        integers: list[int] | None = None
        values = _enum_values(schema)
        if values is not None:
            allowed = 0
            strings, integers = [], []
            for value in values:
                if value is None:
                    allowed |= KIND_NULL
                elif value is True:
                    allowed |= KIND_TRUE
                elif value is False:
                    allowed |= KIND_FALSE
                elif isinstance(value, int):
                    if not _INT64_MIN <= value <= _INT64_MAX:
                        raise Unsupported("an enum integer beyond 64 bits")
                    allowed |= KIND_INTEGER
                    integers.append(value)
                elif isinstance(value, str):
                    allowed |= KIND_STRING
                    strings.append(value.encode("utf-8", "surrogatepass"))
                else:
                    raise Unsupported("an enum of other than strings, integers, booleans, null")
            kinds &= allowed
        # The kinds first: a recursive reference back to this node (through a
        # union) needs them before the children exist.
        node.set_kinds(kinds)
        if kinds & KIND_STRING:
            self.string(node, schema)
        if kinds & KIND_FLOAT:
            _number(node, schema)
        elif kinds & KIND_INTEGER:
            _integer(node, schema)
        if values is not None:
            node.set_enum(
                strings if kinds & KIND_STRING else None,
                integers if kinds & KIND_INTEGER else None,
            )
        if kinds & KIND_ARRAY:
            self.array(node, schema)
        if kinds & KIND_OBJECT:
            self.object(node, schema)

    def string(self, node: Node, schema: dict[str, Any]) -> None:
        fmt = schema.get("format")
        code = FORMATS.get(fmt, 0) if isinstance(fmt, str) else 0
        patterns: list[Any] = []
        if "pattern" in schema:
            patterns.append(schema["pattern"])
        compiled = []
        for pattern in dict.fromkeys(patterns):
            if not isinstance(pattern, str):
                raise Unsupported("a pattern that is not a string")
            compiled.append((re.compile(pattern), simple_pattern(pattern)))
        low = _size(schema, "minLength")
        high = _size(schema, "maxLength")
        if code or compiled or low is not None or high is not None:
            node.set_string(low, high, code, compiled)

    def array(self, node: Node, schema: dict[str, Any]) -> None:
        for keyword in _UNSUPPORTED_ARRAY:
            if keyword in schema:
                raise Unsupported(keyword)
        if schema.get("uniqueItems") not in (None, False):
            raise Unsupported("uniqueItems")
        items = schema.get("items", True)
        if isinstance(items, list):
            raise Unsupported("items as a list")
        node.set_array(self.node(items), _size(schema, "minItems"), _size(schema, "maxItems"))

    def object(self, node: Node, schema: dict[str, Any]) -> None:
        for keyword in _UNSUPPORTED_OBJECT:
            if keyword in schema:
                raise Unsupported(keyword)
        props = schema.get("properties", {})
        if not isinstance(props, dict):
            raise Unsupported("properties that is not an object")
        required = schema.get("required", [])
        if not isinstance(required, list):
            raise Unsupported("required that is not a list")
        names = [r for r in required if isinstance(r, str)]
        additional = self.node(schema.get("additionalProperties", True))
        entries = [(_key(name), self.node(sub)) for name, sub in props.items()]
        # A required name without a property schema: its value meets additionalProperties.
        entries += [(_key(name), additional) for name in dict.fromkeys(names) if name not in props]
        node.set_object(
            entries,
            [_key(name) for name in names],
            additional,
            _size(schema, "minProperties"),
            _size(schema, "maxProperties"),
        )

    # -- unions ------------------------------------------------------------------------

    def union(self, node: Node, schema: dict[str, Any]) -> None:
        if "anyOf" in schema and "oneOf" in schema:
            raise Unsupported("anyOf beside oneOf")
        keyword = "oneOf" if "oneOf" in schema else "anyOf"
        branches = schema[keyword]
        if not isinstance(branches, list) or not branches:
            raise Unsupported(f"{keyword} that is not a non-empty list")
        rest = {k: v for k, v in schema.items() if k != keyword and k not in _CARRIED}
        disc = schema.get("discriminator")
        if (
            isinstance(disc, dict)
            and isinstance(disc.get("propertyName"), str)
            and all(isinstance(b, dict) and set(b) == {"$ref"} for b in branches)
        ):
            if rest.get("type") == "object":
                del rest["type"]  # the tag reads objects only: it says nothing more
            if not rest:
                self.tagged(node, branches, disc)
                return
            # merge_all_of keeps the variants $refs (the tag names them): the siblings
            # check the value beside the variant the tag picks.
            node.set_kinds(KIND_OBJECT)  # known before the variants, which may refer back
            inner = self.new()
            self.tagged(inner, branches, disc)
            node.set_all([self.node(rest), inner])
            return
        if rest:  # the siblings apply to every branch (merge_all_of folds them in)
            branches = [{"allOf": [rest, b]} for b in branches]
        nodes = [self.node(b) for b in branches]
        node.set_union(nodes, keyword == "oneOf", True)

    def tagged(self, node: Node, branches: list[Any], disc: dict[str, Any]) -> None:
        """msgspec's tagged union: the tag member's value names the one variant to check."""
        field = disc["propertyName"]
        mapping = disc.get("mapping")
        by_ref: dict[str, list[str]] = {}
        if isinstance(mapping, dict):
            for tag, ref in mapping.items():
                by_ref.setdefault(ref, []).append(str(tag))
        node.set_kinds(KIND_OBJECT)  # known before the variants, which may refer back
        variants = []
        for branch in branches:
            ref = branch["$ref"]
            variant = self.variant(ref, field)
            tags = by_ref.get(ref)
            if not tags:
                # Implicit: the component's own name (the bundler's `$defs` name may be
                # sanitised or numbered; it keeps the original as x-component).
                name = str(ref).rsplit("/", 1)[-1]
                target = self.defs.get(name)
                own = target.get("x-component", name) if isinstance(target, dict) else name
                tags = [str(own)]
            variants += [(tag.encode("utf-8", "surrogatepass"), variant) for tag in tags]
        node.set_tagged(_key(field), variants)

    def variant(self, ref: Any, field: str) -> Node:
        """The object node of one variant: the tag member allowed, not checked (msgspec
        reads it as the tag)."""
        name, target = self.resolve(ref)
        key = ("variant", name, field)
        known = self.memo.get(key)
        if known is not None:
            return known
        if not isinstance(target, dict):
            raise Unsupported("a discriminated variant that is not an object schema")
        schema = _active(target)
        if "allOf" in schema or "$ref" in schema:
            raise Unsupported("a discriminated variant that is an allOf merge_all_of left")
        if any(k in schema for k in ("anyOf", "oneOf", "enum", "const")):
            raise Unsupported("a discriminated variant with its own union or enum")
        kind = schema.get("type", "object")
        if kind != "object" and not (isinstance(kind, list) and "object" in kind):
            raise Unsupported("a discriminated variant that is not an object")
        props = schema.get("properties", {})
        if not isinstance(props, dict):
            raise Unsupported("properties that is not an object")
        props = {k: v for k, v in props.items() if k != field}
        props[field] = True
        required = [r for r in schema.get("required", []) if r != field]
        node = self.new()
        self.memo[key] = node
        self.fill(node, {**schema, "type": "object", "properties": props, "required": required})
        return node

    # -- allOf -------------------------------------------------------------------------

    def all_of(self, node: Node, schema: dict[str, Any]) -> None:
        """An allOf: merge_all_of merged the ones that merge, so each branch (and the
        keywords beside them) checks the value in turn."""
        branches = schema["allOf"]
        if not isinstance(branches, list):
            raise Unsupported("allOf that is not a list")
        rest = {k: v for k, v in schema.items() if k != "allOf"}
        parts = [rest, *branches] if any(k in _ACTIVE for k in rest) else branches
        if not parts:
            node.set_any()
            return
        node.set_all([self.node(part) for part in parts])


# -- helpers -------------------------------------------------------------------------------


def _active(schema: dict[str, Any]) -> dict[str, Any]:
    """The keywords that matter: assertions and the discriminator."""
    return {k: v for k, v in schema.items() if k in _ACTIVE or k in _CARRIED}


def _canonical(value: Any) -> bytes | None:
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return None


def _same(a: Any, b: Any) -> bool:
    ka, kb = _canonical(a), _canonical(b)
    if ka is None or kb is None:
        return a is b
    return ka == kb


def _key(name: Any) -> bytes:
    if not isinstance(name, str):
        raise Unsupported("a property name that is not a string")
    return name.encode("utf-8", "surrogatepass")


def _type_kinds(kinds: Any) -> int:
    if kinds is None:
        return KIND_ALL
    if isinstance(kinds, str):
        kinds = [kinds]
    if not isinstance(kinds, list):
        raise Unsupported("type that is not a string or a list")
    out = 0
    for kind in kinds:
        bits = _TYPE_KINDS.get(kind) if isinstance(kind, str) else None
        if bits is None:
            raise Unsupported(f"type {kind!r}")
        out |= bits
    return out


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality: booleans are not numbers, 1 equals 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return _same(a, b)


def _enum_values(schema: dict[str, Any]) -> list[Any] | None:
    values: list[Any] | None = None
    if "enum" in schema:
        enum = schema["enum"]
        if not isinstance(enum, list):
            raise Unsupported("enum that is not a list")
        values = list(enum)
    if "const" in schema:
        const = schema["const"]
        # both: a value must be in the enum and equal the const
        values = [const] if values is None else [v for v in values if _json_equal(v, const)]
    return values


def _number_value(schema: dict[str, Any], key: str) -> int | float | None:
    value = schema.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Unsupported(f"{key} that is not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise Unsupported(f"{key} that is not finite")
    return value


def _size(schema: dict[str, Any], key: str) -> int | None:
    value = schema.get(key)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Unsupported(f"{key} that is not a non-negative integer")
    return value


def _number(node: Node, schema: dict[str, Any]) -> None:
    """`number` (or no type): bounds as doubles, as msgspec's float compares them."""
    bounds = [
        _number_value(schema, k)
        for k in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum", "multipleOf")
    ]
    if all(b is None for b in bounds):
        return
    low, xlow, high, xhigh, multiple = (None if b is None else float(b) for b in bounds)
    if multiple is not None and not multiple > 0:
        raise Unsupported("multipleOf that is not positive")
    node.set_number(low, xlow, high, xhigh, multiple)


def _integer(node: Node, schema: dict[str, Any]) -> None:
    """`integer`: bounds as exact integers (0.5 <= n is 1 <= n), as compiler._integer_meta."""
    minimum = _number_value(schema, "minimum")
    xmin = _number_value(schema, "exclusiveMinimum")
    maximum = _number_value(schema, "maximum")
    xmax = _number_value(schema, "exclusiveMaximum")
    multiple = _number_value(schema, "multipleOf")
    low: int | None = None if minimum is None else math.ceil(minimum)
    if xmin is not None:
        bound = math.floor(xmin) + 1
        low = bound if low is None else max(low, bound)
    high: int | None = None if maximum is None else math.floor(maximum)
    if xmax is not None:
        bound = math.ceil(xmax) - 1
        high = bound if high is None else min(high, bound)
    whole: int | None = None
    if multiple is not None:
        if not multiple > 0:
            raise Unsupported("multipleOf that is not positive")
        if isinstance(multiple, float) and not multiple.is_integer():
            raise Unsupported("an integer with a fractional multipleOf")
        whole = int(multiple)
        if whole > _INT64_MAX:
            raise Unsupported("multipleOf beyond 64 bits")
    if low is not None or high is not None or whole is not None:
        node.set_integer(low, high, whole)


# -- simple patterns -------------------------------------------------------------------------

_ASCII = (1 << 128) - 1
_DIGITS = sum(1 << c for c in range(48, 58))
_WORD = _DIGITS | sum(1 << c for c in (*range(65, 91), *range(97, 123), 95))
_SPACE = sum(1 << ord(c) for c in " \t\n\r\f\v\x1c\x1d\x1e\x1f")
_CLASSES: dict[str, int] = {
    "d": _DIGITS,
    "D": _ASCII & ~_DIGITS,
    "w": _WORD,
    "W": _ASCII & ~_WORD,
    "s": _SPACE,
    "S": _ASCII & ~_SPACE,
}
_QUANTIFIER = re.compile(r"\{(\d+)(?:(,)(\d*))?\}")
_MASK64 = (1 << 64) - 1

SimpleItem = tuple[int, int, int, int | None]


def simple_pattern(pattern: str) -> tuple[bool, list[SimpleItem]] | None:
    """A pattern `_fastcheck` can match without `re`, on ASCII strings, or None.

    Simple: `^`, then atoms (an ASCII literal, `.`, a class `[...]` of ASCII
    literals and ranges, `\\d \\w \\s` and their complements, an escaped
    punctuation character) each with an optional greedy quantifier (`* + ?
    {n} {n,} {n,m}`), then optionally `$` (or `\\Z`). Matched greedily, which
    is exact only when a variable atom's class shares no character with what
    may follow it: otherwise None. Returns (anchored at the end, [(low 64
    bits of the class, high 64 bits, min, max or None)]).

    The C matcher runs only on strings without escapes and non-ASCII bytes,
    so newlines (for `$` and `.`) and Unicode classes never arise there.
    """
    if not pattern.startswith("^"):
        return None
    items: list[tuple[int, int, int | None]] = []
    anchored = False
    i, n = 1, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "$":
            if i != n - 1:
                return None
            anchored = True
            break
        if pattern.startswith("\\Z", i):
            if i + 2 != n:
                return None
            anchored = True
            break
        bits: int | None
        if c == "[":
            parsed = _class(pattern, i)
            if parsed is None:
                return None
            bits, i = parsed
        elif c == "\\":
            bits = _escape(pattern[i + 1]) if i + 1 < n else None
            i += 2
        elif c == ".":
            bits = _ASCII & ~(1 << 10)
            i += 1
        elif c in "()|*+?{}^]" or ord(c) >= 128:
            return None
        else:
            bits = 1 << ord(c)
            i += 1
        if bits is None:
            return None
        low, high = 1, 1
        quantified: int | None = 1
        if i < n:
            q = pattern[i]
            if q == "*":
                low, quantified = 0, None
                i += 1
            elif q == "+":
                low, quantified = 1, None
                i += 1
            elif q == "?":
                low, quantified = 0, 1
                i += 1
            elif q == "{":
                m = _QUANTIFIER.match(pattern, i)
                if m is None:
                    return None
                low = int(m[1])
                quantified = low if not m[2] else (int(m[3]) if m[3] else None)
                if quantified is not None and quantified < low:
                    return None
                i = m.end()
            else:
                quantified = high
            if i < n and pattern[i] in "?+*{" and (i > 0 and pattern[i - 1] in "*+?}"):
                return None  # lazy, possessive or a repeated repeat
        items.append((bits, low, quantified))
    # Greedy is exact when no variable atom can give up a character to what follows.
    for k, (bits, low, most) in enumerate(items):
        if low == most:
            continue
        follow = 0
        for later, later_low, _ in items[k + 1 :]:
            follow |= later
            if later_low >= 1:
                break
        if bits & follow:
            return None
    return anchored, [(b & _MASK64, b >> 64, lo, hi) for b, lo, hi in items]


def _escape(c: str) -> int | None:
    if c in _CLASSES:
        return _CLASSES[c]
    if ord(c) < 128 and not c.isalnum() and c != "_":
        return 1 << ord(c)
    return None


def _class(pattern: str, i: int) -> tuple[int, int] | None:
    """The class `[...]` at i: (its ASCII bits, the index after it), or None."""
    n = len(pattern)
    i += 1
    negate = i < n and pattern[i] == "^"
    if negate:
        i += 1
    bits = 0
    first = True
    while i < n:
        c = pattern[i]
        if c == "]" and not first:
            return ((_ASCII & ~bits) if negate else bits), i + 1
        first = False
        if c in "[]" or pattern.startswith(("&&", "||", "--", "~~"), i):
            return None
        # one member: a character, or an escape standing for a set
        single: int | None
        if c == "\\":
            if i + 1 >= n:
                return None
            e = pattern[i + 1]
            if e in _CLASSES:
                bits |= _CLASSES[e]
                i += 2
                continue
            if ord(e) >= 128 or e.isalnum() or e == "_":
                return None
            single = ord(e)
            i += 2
        else:
            if ord(c) >= 128:
                return None
            single = ord(c)
            i += 1
        if i + 1 < n and pattern[i] == "-" and pattern[i + 1] != "]":
            e = pattern[i + 1]
            if e == "\\":
                if i + 2 >= n:
                    return None
                e = pattern[i + 2]
                if e in _CLASSES or ord(e) >= 128 or e.isalnum() or e == "_":
                    return None
                i += 3
            else:
                if e in "[" or ord(e) >= 128:
                    return None
                i += 2
            top = ord(e)
            if top < single:
                return None
            bits |= sum(1 << x for x in range(single, top + 1))
        else:
            bits |= 1 << single
    return None
