"""The one-pass byte validator (runmcp_fast._fastcheck, compiled by validation.fastpath).

`compile_fast(schema).check(data)` must decide as the existing path does,
`SchemaValidator(schema).check_json(data) is None` (msgspec, then the
duplicate-key scan):

1. A keyword table: each supported keyword valid and invalid, with the cases a
   byte-level reader gets wrong (1.0 and 1e2 are not integers, integers past 64
   bits, -0, numbers beyond the double range, code points against UTF-16 units
   and bytes, escaped keys that are declared properties, repeated keys at every
   level and past the 32-key table switch, trailing bytes, invalid UTF-8, raw
   control characters, deep nesting, recursive schemas, discriminators with and
   without a mapping, nullable references); then every row of
   test_validation_keywords.py.
2. Generated documents: hypothesis-jsonschema instances of the table's schemas,
   spelled with random whitespace and escapes, their mutants (a repeated key
   among them), damaged texts and arbitrary bytes; inputs flush against an
   unreadable page (no read outside the buffer).
3. The public specs (marker `specs`): how many JSON body schemas compile to the
   fast path, and generated instances and mutants of those.

Where the msgspec path is wrong by JSON Schema, the fast path is not: a table
row then names the divergence (DIVERGENCES), and on generated documents a
disagreement between the two paths must be decided by the fast path as the
reference (jsonschema 2020-12 with the independent formats of
test_validation_keywords.py, reading integers as msgspec does) decides it.
Every such disagreement is printed in the run's summary.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import random
import re
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import hypothesis_compat
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from isolation import flush, guard_pages, needs_mprotect, run_isolated
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError
from public_specs import spec_path
from test_validation_keywords import REFERENCE_FORMATS, ROWS, compiled

from runmcp_fast._fastcheck import (
    ANY,
    DEPTH_LIMIT,
    KIND_INTEGER,
    KIND_OBJECT,
    KIND_STRING,
    MODE_ALL,
    NEVER,
    Node,
    Program,
)
from runmcp_fast._jsonscan import duplicate_key
from runmcp_fast.openapi import load_spec
from runmcp_fast.openapi.pointers import join
from runmcp_fast.validation import Bundler, SchemaValidator, compile_operation
from runmcp_fast.validation.bundle import merge_all_of
from runmcp_fast.validation.fastpath import (
    Unsupported,
    compile_fast,
    compile_fast_or_raise,
    simple_pattern,
)
from runmcp_fast.validation.operation import is_json

_NOTES: list[str] = []


# -- the oracles -------------------------------------------------------------------------


def slow_path(schema: Any) -> Callable[[bytes], bool] | None:
    """The msgspec path's decision (the typed decode, then the duplicate-key scan), or
    None when it can not compile the schema safely (see _msgspec_crashes). A schema
    it fails to compile raises: only the table's "uncompilable" rows expect that."""
    if _msgspec_crashes(schema):
        return None
    decoder = SchemaValidator(schema).decoder

    def decide(data: bytes) -> bool:
        # check_json's msgspec part, called directly: check_json itself may ask the
        # fast path first, which would make this comparison circular.
        try:
            decoder.decode(data)
        except Exception:  # ValidationError, DecodeError; UnicodeDecodeError, RecursionError
            return False  # escape check_json: see DIVERGENCES "raises"
        return duplicate_key(data) is None

    return decide


_CONTAINERS = {"array", "object"}
_ALL_TYPES = {"null", "boolean", "integer", "number", "string", "array", "object"}


def _types(node: Any, defs: dict[str, Any], depth: int = 0) -> set[str]:
    """The JSON types a schema node may take (over-approximated)."""
    if node is False:
        return set()
    if not isinstance(node, dict) or depth > 16:
        return set(_ALL_TYPES)
    out = set(_ALL_TYPES)
    kinds = node.get("type")
    if isinstance(kinds, str):
        out = {kinds}
    elif isinstance(kinds, list):
        out = set(kinds)
    if "integer" in out or "number" in out:
        out |= {"integer", "number"}
    ref = node.get("$ref")
    if isinstance(ref, str):
        out &= _types(defs.get(ref.rsplit("/", 1)[-1]), defs, depth + 1)
    for branch in node.get("allOf", ()):
        out &= _types(branch, defs, depth + 1)
    for keyword in ("anyOf", "oneOf"):
        if isinstance(node.get(keyword), list):
            union: set[str] = set()
            for branch in node[keyword]:
                union |= _types(branch, defs, depth + 1)
            out &= union
    return out


def _has_pattern(node: Any, defs: dict[str, Any], depth: int = 0) -> bool:
    if not isinstance(node, dict) or depth > 16:
        return False
    if "pattern" in node or node.get("format") == "uuid":
        return True
    ref = node.get("$ref")
    if isinstance(ref, str) and _has_pattern(defs.get(ref.rsplit("/", 1)[-1]), defs, depth + 1):
        return True
    return any(_has_pattern(b, defs, depth + 1) for b in node.get("allOf", ()))


def _pattern_beside_containers(node: dict[str, Any], defs: dict[str, Any]) -> bool:
    """Whether a node may compile to a msgspec union of a pattern string (a `pattern` or
    `format: uuid`) and an array or object member. Over-approximated."""
    own = _types(node, defs)
    if _has_pattern(node, defs) and "string" in own and own & _CONTAINERS:
        return True
    for keyword in ("anyOf", "oneOf"):
        branches = node.get(keyword)
        if not isinstance(branches, list):
            continue
        kinds = [_types(b, defs) & own for b in branches]
        patterned = [
            i for i, b in enumerate(branches) if _has_pattern(b, defs) and "string" in kinds[i]
        ]
        for i in patterned:
            if any(k & _CONTAINERS for j, k in enumerate(kinds) if j != i):
                return True
    return False


def _msgspec_crashes(schema: Any) -> bool:
    """msgspec 0.22 corrupts the compiled pattern when it frees a Decoder of a union of
    `Annotated[str, Meta(pattern=...)]` with a list or dict member (the pattern's refcount
    drops to 1: a later use crashes the interpreter), and compiler._union_of frees such
    a probe Decoder per union it builds. Those schemas are left to the reference here
    (DIVERGENCES "crash")."""
    if not isinstance(schema, dict):
        return False
    defs = schema.get("$defs", {}) if isinstance(schema.get("$defs"), dict) else {}
    # (a schema, the types its parent allows: the compiler folds a union's siblings in)
    stack: list[tuple[Any, set[str]]] = [(schema, set(_ALL_TYPES))]
    while stack:
        node, context = stack.pop()
        if not isinstance(node, dict):
            continue
        kinds = _types(node, defs) & context
        if "string" in kinds and kinds & _CONTAINERS and _pattern_beside_containers(node, defs):
            return True
        for key, value in node.items():
            if key in ("anyOf", "oneOf", "allOf") and isinstance(value, list):
                stack.extend((branch, kinds) for branch in value)
            elif key in _SCHEMA_LISTS and isinstance(value, list):
                stack.extend((branch, set(_ALL_TYPES)) for branch in value)
            elif key in _SCHEMA_MAPS and isinstance(value, dict):
                stack.extend((sub, set(_ALL_TYPES)) for sub in value.values())
            elif key in _SCHEMA_ONE:
                stack.append((value, set(_ALL_TYPES)))
    return False


_SCHEMA_LISTS = ("prefixItems", "items")
_SCHEMA_MAPS = ("properties", "$defs", "patternProperties", "dependentSchemas")
_SCHEMA_ONE = (
    "items",
    "additionalProperties",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "propertyNames",
    "unevaluatedProperties",
    "unevaluatedItems",
)


def _strict_integer(checker: Any, instance: Any) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


def _same_json(a: Any, b: Any) -> bool:
    """Equality as the gateway reads it: true is not 1, and 1.0 is not the integer 1."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    return bool(a == b)


def _enum(validator: Any, enums: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if not any(_same_json(instance, e) for e in enums):
        yield ValidationError(f"{instance!r} is not one of {enums!r}")


def _const(validator: Any, const: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if not _same_json(instance, const):
        yield ValidationError(f"{const!r} was expected")


_ROOT_DEFS: list[dict[str, Any]] = [{}]


def _tagged(keyword: str) -> Callable[..., Iterator[ValidationError]]:
    """oneOf/anyOf, unless a discriminator beside bare $refs picks the one branch."""
    plain = Draft202012Validator.VALIDATORS[keyword]

    def check(
        validator: Any, branches: Any, instance: Any, schema: Any
    ) -> Iterator[ValidationError]:
        disc = schema.get("discriminator")
        refs = [
            b.get("$ref") if isinstance(b, dict) and set(b) == {"$ref"} else None for b in branches
        ]
        if not (isinstance(disc, dict) and isinstance(disc.get("propertyName"), str) and all(refs)):
            yield from plain(validator, branches, instance, schema)
            return
        if not isinstance(instance, dict):
            yield ValidationError("not an object")
            return
        given = disc.get("mapping")
        mapping: dict[str, Any] = given if isinstance(given, dict) else {}
        by_tag = {tag: ref for tag, ref in mapping.items() if ref in refs}
        defs = _ROOT_DEFS[-1]  # the root's: validator.schema is the subschema here
        for ref in refs:
            if isinstance(ref, str) and ref not in by_tag.values():
                name = ref.rsplit("/", 1)[-1]
                target = defs.get(name)
                by_tag[target.get("x-component", name) if isinstance(target, dict) else name] = ref
        tag = instance.get(disc["propertyName"])
        if not isinstance(tag, str) or tag not in by_tag:
            yield ValidationError("no variant for the tag")
            return
        # The variant, with its tag member taken as the tag (msgspec's tagged union).
        name = by_tag[tag].rsplit("/", 1)[-1]
        rest = {k: v for k, v in instance.items() if k != disc["propertyName"]}
        variant = defs.get(name, {})
        if isinstance(variant, dict):
            props = {
                k: v for k, v in variant.get("properties", {}).items() if k != disc["propertyName"]
            }
            required = [r for r in variant.get("required", []) if r != disc["propertyName"]]
            variant = {**variant, "properties": props, "required": required}
        yield from validator.descend(rest, variant)

    return check


# The gateway's documented readings: the JSON number 1.0 is not an integer (nor equal
# to one in an enum), and a discriminator picks the one variant to check.
_Reference = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator,
    validators={
        "enum": _enum,
        "const": _const,
        "oneOf": _tagged("oneOf"),
        "anyOf": _tagged("anyOf"),
    },
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _strict_integer),
)


class _Refused(Exception):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len({k for k, _ in pairs}) != len(pairs):
        raise _Refused("a repeated key")
    return dict(pairs)


def _constant(name: str) -> Any:
    raise _Refused(name)  # NaN, Infinity: not JSON


def _by_design(value: Any) -> bool:
    """What the gateway refuses by design though json.loads reads it: a lone surrogate
    escape, a number beyond the double range."""
    if isinstance(value, str):
        return any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, list):
        return any(_by_design(v) for v in value)
    if isinstance(value, dict):
        return any(_by_design(k) or _by_design(v) for k, v in value.items())
    return False


def reference(schema: Any, data: bytes) -> bool | None:
    """jsonschema's decision on data, read by json.loads (strict UTF-8, no repeated key)."""
    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=_pairs, parse_constant=_constant)
    except (UnicodeDecodeError, ValueError, RecursionError, _Refused):
        return False
    validator = _Reference(schema, format_checker=REFERENCE_FORMATS)
    defs = schema.get("$defs") if isinstance(schema, dict) else None
    _ROOT_DEFS.append(defs if isinstance(defs, dict) else {})
    try:
        if _by_design(value):
            return False
        return bool(validator.is_valid(value))
    except RecursionError:
        return None  # too deep for the reference: it can not say
    finally:
        _ROOT_DEFS.pop()


def fast(schema: Any) -> Program:
    return compile_fast_or_raise(schema)


# -- spelling documents ------------------------------------------------------------------


class Repeat(list[tuple[str, Any]]):
    """An object spelled member by member, repeats allowed (a Python dict can not)."""


def spell(value: Any, rnd: random.Random | None = None) -> bytes:
    """JSON text of value; with rnd: random whitespace and random escapes in strings."""
    out: list[str] = []

    def ws() -> None:
        if rnd is not None and rnd.random() < 0.25:
            out.append(rnd.choice([" ", "\n", "\t", "\r\n  ", "  "]))

    def string(s: str) -> None:
        out.append('"')
        for ch in s:
            code = ord(ch)
            if ch in '"\\':
                out.append("\\" + ch)
            elif code < 0x20:
                out.append(f"\\u{code:04x}")
            elif 0xD800 <= code <= 0xDFFF:
                out.append(f"\\u{code:04x}")  # a lone surrogate: refused by both
            elif rnd is not None and rnd.random() < 0.12:
                if code > 0xFFFF:
                    hi = 0xD800 + ((code - 0x10000) >> 10)
                    lo = 0xDC00 + ((code - 0x10000) & 0x3FF)
                    text = f"\\u{hi:04x}\\u{lo:04x}"
                else:
                    text = f"\\u{code:04x}"
                out.append(text.upper().replace("\\U", "\\u") if rnd.random() < 0.5 else text)
            elif rnd is not None and ch == "/" and rnd.random() < 0.5:
                out.append("\\/")
            else:
                out.append(ch)
        out.append('"')

    def emit(v: Any) -> None:
        ws()
        if v is None:
            out.append("null")
        elif v is True:
            out.append("true")
        elif v is False:
            out.append("false")
        elif isinstance(v, int):
            out.append(str(v))
        elif isinstance(v, float):
            out.append(json.dumps(v))
        elif isinstance(v, str):
            string(v)
        elif isinstance(v, list) and not isinstance(v, Repeat):
            out.append("[")
            for i, item in enumerate(v):
                if i:
                    out.append(",")
                emit(item)
            ws()
            out.append("]")
        else:
            members = list(v) if isinstance(v, Repeat) else list(v.items())
            out.append("{")
            for i, (key, item) in enumerate(members):
                if i:
                    out.append(",")
                ws()
                string(key)
                ws()
                out.append(":")
                emit(item)
            ws()
            out.append("}")
        ws()

    emit(value)
    return "".join(out).encode("utf-8")


def as_bytes(doc: Any) -> bytes:
    return doc if isinstance(doc, bytes) else spell(doc)


# -- the keyword table ---------------------------------------------------------------------

DIVERGENCES = {
    "datetime-range": "msgspec refuses RFC 3339 year 0000 and fractions rounding past 9999 (DATETIME_RANGE)",
    "datetime-basic-offset": "msgspec accepts the ISO 8601 offset +0530 (DATETIME_BASIC_OFFSET)",
    "skipped-utf8": (
        "msgspec does not check UTF-8 (nor the double range) in a member it skips (an "
        "unknown member of a Struct): invalid UTF-8 is not JSON (RFC 8259 section 8.1)"
    ),
    "int-number-union": (
        "msgspec picks the int member of an int | float union for an integer literal and "
        "never tries the float one: anyOf [integer >= 10, number <= 3] refuses 2"
    ),
    "crash": (
        "msgspec 0.22 corrupts memory (a later use crashes the interpreter) for a union of a "
        "pattern string and an array or object: not run here (see _msgspec_crashes)"
    ),
    "enum-float-int": (
        "the msgspec path sends an enum with a boolean to jsonschema, whose enum takes 1.0 "
        "as 1; the Literal it uses otherwise (and the fast path) do not, by design"
    ),
    "allof-additional": (
        "compiler._merge merges one branch's additionalProperties schema with the other "
        "branch's properties as if they were declared by both: allOf [{properties: {a}, "
        "additionalProperties: string}, {properties: {b: integer}}] takes {b: 1}"
    ),
    "nested-discriminator": (
        "a discriminated oneOf inside `anyOf: [..., {type: null}]` falls back to jsonschema "
        "without its discriminator on the msgspec path: an unknown tag is accepted there"
    ),
    "recursion": (
        "msgspec raises RecursionError (check_json lets it out) on nesting the fast path "
        "still checks: each nested Struct or union costs msgspec Python stack"
    ),
    "uncompilable": (
        "the msgspec path can not compile the schema at all: msgspec.Meta refuses integer "
        "bounds beyond int64; a recursive discriminated union raises NameError (a forward "
        "reference to a Struct not defined yet)"
    ),
    "raises": (
        "check_json raises instead of deciding: UnicodeDecodeError for invalid UTF-8 in a "
        "string msgspec decodes, RecursionError past the recursion limit"
    ),
}


@dataclass(frozen=True)
class Case:
    id: str
    schema: Any
    doc: Any
    """A value (spelled as compact JSON) or the raw bytes."""
    valid: bool
    """The fast path's answer: JSON Schema, with the gateway's by-design readings."""
    slow: str | None = None
    """A DIVERGENCES key when the msgspec path answers otherwise (or raises)."""


CASES: list[Case] = []


def case(id: str, schema: Any, doc: Any, valid: bool, slow: str | None = None) -> None:
    assert slow is None or slow in DIVERGENCES, slow
    CASES.append(Case(id, schema, doc, valid, slow))


INT = {"type": "integer"}
NUM = {"type": "number"}
STR = {"type": "string"}
BIG = "1" + "0" * 400

# fmt: off
# documents ------------------------------------------------------------------------------
case("doc-empty", {}, b"", False)
case("doc-spaces", {}, b" \t\r\n", False)
case("doc-surrounding-whitespace", {}, b" \n1\t ", True)
case("doc-trailing-garbage", {}, b"1 x", False)
case("doc-two-values", {}, b"{} {}", False)
case("doc-trailing-nul", {}, b"1\x00", False)
case("doc-bom", {}, b"\xef\xbb\xbf1", False)
case("doc-extra-closer", {}, b"[]]", False)
case("doc-literal-short", {}, b"nul", False)
case("doc-literal-long", {}, b"nulll", False)
case("doc-literal-case", {}, b"truE", False)
case("doc-form-feed", {}, b"\f1", False)
case("doc-trailing-comma-array", {}, b"[1,]", False)
case("doc-trailing-comma-object", {}, b'{"a":1,}', False)
case("doc-leading-comma", {}, b"[,1]", False)
case("doc-missing-comma", {}, b"[1 2]", False)
case("doc-missing-colon", {}, b'{"a" 1}', False)
case("doc-unquoted-key", {}, b"{a:1}", False)
case("doc-single-quotes", {}, b"{'a':1}", False)
case("doc-colon-in-array", {}, b"[1:2]", False)
case("doc-mismatched", {}, b"[1}", False)
case("doc-deep-ok", {}, b"[" * 500 + b"]" * 500, True)
case("doc-deep-objects-ok", {}, b'{"a":' * 400 + b"1" + b"}" * 400, True)
case("doc-too-deep", {}, b"[" * (DEPTH_LIMIT + 500) + b"]" * (DEPTH_LIMIT + 500), False, "raises")
case("doc-very-deep-unclosed", {}, b"[" * 100_000, False)
# numbers ---------------------------------------------------------------------------------
case("int", INT, b"5", True)
case("int-negative-zero", INT, b"-0", True)
case("int-1.0", INT, b"1.0", False)
case("int-exponent", INT, b"1e2", False)
case("int-exponent-upper", INT, b"1E+2", False)
case("int-beyond-uint64", INT, b"18446744073709551616", True)
case("int-below-int64", INT, b"-9223372036854775809", True)
case("int-400-digits", INT, BIG.encode(), True)
case("int-leading-zero", INT, b"01", False)
case("int-negative-leading-zero", INT, b"-01", False)
case("int-plus", INT, b"+1", False)
case("int-lone-minus", INT, b"-", False)
case("int-string", INT, "1", False)
case("int-bool", INT, True, False)
case("int-null", INT, None, False)
RANGE64 = {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}
case("int64-max", RANGE64, 2**63 - 1, True)
case("int64-max-plus-one", RANGE64, 2**63, False)
case("int64-min", RANGE64, -(2**63), True)
case("int64-min-minus-one", RANGE64, -(2**63) - 1, False)
case("int64-far-beyond", RANGE64, -(10**40), False)
BIG_LOW = {"type": "integer", "minimum": 10**30}
case("int-bound-beyond-64-bits-below", BIG_LOW, 10**30 - 1, False, "uncompilable")
case("int-bound-beyond-64-bits-equal", BIG_LOW, 10**30, True, "uncompilable")
case("int-bound-beyond-64-bits-small", BIG_LOW, 5, False, "uncompilable")
BIG_HIGH = {"type": "integer", "maximum": -(10**30)}
case("int-upper-bound-beyond-64-bits", BIG_HIGH, -(10**30), True, "uncompilable")
case("int-upper-bound-beyond-64-bits-zero", BIG_HIGH, 0, False, "uncompilable")
MULT7 = {"type": "integer", "multipleOf": 7}
case("multipleOf-int", MULT7, 14, True)
case("multipleOf-int-not", MULT7, 15, False)
case("multipleOf-int-negative", MULT7, -21, True)
case("multipleOf-int-big", MULT7, 7 * 10**25, True)
case("multipleOf-int-big-not", MULT7, 7 * 10**25 + 1, False)
case("multipleOf-int64-min", MULT7, -(2**63), (-(2**63)) % 7 == 0)
case("multipleOf-int-zero", MULT7, b"-0", True)
FRAC_BOUNDS = {"type": "integer", "minimum": 0.5, "exclusiveMaximum": 2.5}
case("int-fraction-bounds-0", FRAC_BOUNDS, 0, False)
case("int-fraction-bounds-1", FRAC_BOUNDS, 1, True)
case("int-fraction-bounds-2", FRAC_BOUNDS, 2, True)
case("int-fraction-bounds-3", FRAC_BOUNDS, 3, False)
case("int-exclusive-minimum", {"type": "integer", "exclusiveMinimum": 0}, 0, False)
case("num-int", NUM, 5, True)
case("num-float", NUM, 5.5, True)
case("num-exponent", NUM, b"1e5", True)
case("num-exponent-negative", NUM, b"1E-5", True)
case("num-negative-zero", NUM, b"-0.0", True)
case("num-beyond-double", NUM, b"1e400", False)
case("num-beyond-double-negative", NUM, b"-1e400", False)
case("num-underflow", NUM, b"1e-400", True)
case("num-integer-beyond-double", NUM, BIG.encode(), False)
case("num-integer-beyond-64-bits", NUM, 10**30, True)
case("num-huge-exponent-of-zero", NUM, b"0e99999999999999999999", True)
case("num-fraction-missing", NUM, b"1.", False)
case("num-no-integer-part", NUM, b".5", False)
case("num-exponent-missing", NUM, b"1e", False)
case("num-exponent-sign-only", NUM, b"1e+", False)
case("num-double-minus", NUM, b"--1", False)
case("num-hex", NUM, b"0x10", False)
case("num-nan", NUM, b"NaN", False)
case("num-infinity", NUM, b"Infinity", False)
case("num-negative-infinity", NUM, b"-Infinity", False)
case("num-long-mantissa", NUM, b"3.14159265358979323846264338327950288", True)
OPEN01 = {"type": "number", "exclusiveMinimum": 0, "maximum": 1}
case("num-exclusive-zero", OPEN01, 0, False)
case("num-exclusive-negative-zero", OPEN01, b"-0.0", False)
case("num-exclusive-denormal", OPEN01, b"5e-324", True)
case("num-maximum-equal", OPEN01, 1, True)
case("num-maximum-rounds-to-equal", OPEN01, b"1.0000000000000001", True)
case("num-maximum-next-double", OPEN01, b"1.0000000000000002", False)
case("num-maximum-exponent", OPEN01, b"0.01e2", True)
case("num-maximum-exponent-above", OPEN01, b"0.0101e2", False)
TENTH = {"type": "number", "maximum": 0.1}
case("num-maximum-tenth-exact", TENTH, b"0.1000000000000000055511151231257827", True)
case("num-maximum-tenth-rounds", TENTH, b"0.10000000000000001", True)
case("num-maximum-tenth-above", TENTH, b"0.1000000000000001", False)
case("num-maximum-big-int", {"type": "number", "maximum": 10}, 10**30, False)
HALF = {"type": "number", "multipleOf": 0.5}
case("multipleOf-float", HALF, 1.5, True)
case("multipleOf-float-not", HALF, 1.25, False)
case("multipleOf-float-int", HALF, 3, True)
case("multipleOf-float-huge", HALF, b"1e300", True)
# msgspec's check, fmod(x, m) == 0, mirrored: JSON Schema would take 0.5 as a multiple of 0.1.
case("multipleOf-tenth-fmod", {"type": "number", "multipleOf": 0.1}, 0.5, False)
NO_TYPE = {"minimum": 1, "minLength": 2, "minItems": 1, "required": ["a"]}
case("no-type-number-low", NO_TYPE, 0, False)
case("no-type-number", NO_TYPE, 1, True)
case("no-type-string-short", NO_TYPE, "a", False)
case("no-type-string", NO_TYPE, "ab", True)
case("no-type-array-empty", NO_TYPE, [], False)
case("no-type-array", NO_TYPE, [1], True)
case("no-type-object-missing", NO_TYPE, {}, False)
case("no-type-object", NO_TYPE, {"a": None}, True)
case("no-type-null", NO_TYPE, None, True)
case("no-type-bool", NO_TYPE, True, True)
# literals --------------------------------------------------------------------------------
case("null", {"type": "null"}, None, True)
case("null-false", {"type": "null"}, False, False)
case("boolean-true", {"type": "boolean"}, True, True)
case("boolean-false", {"type": "boolean"}, False, True)
case("boolean-zero", {"type": "boolean"}, 0, False)
case("types-list", {"type": ["string", "null"]}, None, True)
case("types-list-other", {"type": ["string", "null"]}, 1, False)
# strings ---------------------------------------------------------------------------------
LEN = {"type": "string", "minLength": 2, "maxLength": 3}
case("length-ascii", LEN, "ab", True)
case("length-ascii-long", LEN, "abcd", False)
case("length-ascii-short", LEN, "a", False)
case("length-astral", LEN, "\U0001f600\U0001f600", True)
case("length-astral-long", LEN, "\U0001f600" * 4, False)
case("length-astral-escaped", LEN, b'"\\ud83d\\ude00\\ud83d\\ude00"', True)
case("length-astral-escaped-one", LEN, b'"\\ud83d\\ude00"', False)
case("length-short-escapes", LEN, b'"\\n\\t"', True)
case("length-escape-is-one", LEN, b'"a\\u0062cd"', False)
case("length-two-byte", LEN, "\u00e9\u00e9", True)
case("length-three-byte", LEN, "\u65e5\u672c\u8a9e", True)
case("length-three-byte-long", LEN, "\u65e5\u672c\u8a9ex", False)
case("length-mixed-escaped", LEN, b'"\\u00e9\xc3\xa9\\/"', True)
case("string-control-char", STR, b'"a\x01"', False)
case("string-control-1f", STR, b'"\x1f"', False)
case("string-raw-tab", STR, b'"\t"', False)
case("string-raw-newline", STR, b'"\n"', False)
case("string-del", STR, b'"\x7f"', True)
case("string-nul-escaped", STR, b'"\\u0000"', True)
case("string-invalid-utf8", STR, b'"\xff"', False, "raises")
case("string-overlong", STR, b'"\xc0\x80"', False, "raises")
case("string-utf8-surrogate", STR, b'"\xed\xa0\x80"', False, "raises")
case("string-beyond-unicode", STR, b'"\xf4\x90\x80\x80"', False, "raises")
case("string-truncated-sequence", STR, b'"\xe2\x82"', False, "raises")
case("string-continuation-alone", STR, b'"\x80"', False, "raises")
case("string-four-byte", STR, b'"\xf0\x9f\x98\x80"', True)
case("string-long-mixed", STR, "x\u00e9" * 40 + "\\" + "\u65e5" * 30 + '"', True)
case("string-lone-high-surrogate", STR, b'"\\ud800"', False)
case("string-lone-low-surrogate", STR, b'"\\udc00"', False)
case("string-high-then-other", STR, b'"\\ud800\\u0041"', False)
case("string-surrogates-reversed", STR, b'"\\udc00\\ud800"', False)
case("string-high-then-text", STR, b'"\\ud800x"', False)
case("string-bad-escape", STR, b'"\\x41"', False)
case("string-upper-u-escape", STR, b'"\\U0041"', False)
case("string-short-u-escape", STR, b'"\\u12"', False)
case("string-bad-hex", STR, b'"\\u12g4"', False)
case("string-all-escapes", STR, b'"\\"\\\\\\/\\b\\f\\n\\r\\t\\u00E9\\uD83D\\uDE00"', True)
case("string-unterminated", STR, b'"abc', False)
case("string-escaped-quote-at-end", STR, b'"abc\\"', False)
case("string-many-backslashes", STR, b'"' + b"\\\\" * 40 + b'"', True)
PAT = {"type": "string", "pattern": "^[a-z]+$"}
case("pattern", PAT, "abc", True)
case("pattern-bad", PAT, "ab1", False)
case("pattern-escaped", PAT, b'"\\u0061bc"', True)
case("pattern-non-ascii", PAT, "\u00e9", False)
case("pattern-empty", PAT, "", False)
# Python's re, as the msgspec path: `$` also matches before a final newline.
case("pattern-dollar-newline", PAT, b'"abc\\n"', True)
DIGITS = {"type": "string", "pattern": "^\\d{3}$"}
case("pattern-digits", DIGITS, "123", True)
case("pattern-digits-bad", DIGITS, "12a", False)
# Python's re: \d is any Unicode decimal digit.
case("pattern-digits-unicode", DIGITS, "\u0661\u0662\u0663", True)
SKU = {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4,8}$"}
case("pattern-sku", SKU, "ABC-1234", True)
case("pattern-sku-long", SKU, "ABC-12345678", True)
case("pattern-sku-too-short", SKU, "ABC-123", False)
case("pattern-sku-too-long", SKU, "ABC-123456789", False)
case("pattern-sku-lower", SKU, "abc-1234", False)
case("pattern-sku-suffix", SKU, "ABC-1234x", False)
case("pattern-unanchored", {"type": "string", "pattern": "b"}, "abc", True)
case("pattern-unanchored-miss", {"type": "string", "pattern": "b"}, "acd", False)
case("pattern-prefix", {"type": "string", "pattern": "^ab"}, "abc", True)
case("pattern-prefix-miss", {"type": "string", "pattern": "^ab"}, "xab", False)
DOT = {"type": "string", "pattern": "^a.c$"}
case("pattern-dot", DOT, "abc", True)
case("pattern-dot-newline", DOT, b'"a\\nc"', False)
case("pattern-dot-astral", DOT, "a\U0001f600c", True)
BACKTRACK = {"type": "string", "pattern": "^[a-z]*a$"}
case("pattern-backtracking", BACKTRACK, "bba", True)
case("pattern-backtracking-miss", BACKTRACK, "bbb", False)
case("pattern-not-a-string", PAT, 5, False)
case("pattern-no-type-number", {"pattern": "^a"}, 5, True, "crash")
# formats ---------------------------------------------------------------------------------
DT = {"type": "string", "format": "date-time"}
case("date-time", DT, "2024-02-29T12:30:45Z", True)
case("date-time-escaped", DT, b'"\\u0032024-02-29T12:30:45\\u005a"', True)
case("date-time-fraction-offset", DT, "2024-01-01T12:30:45.123456789+05:30", True)
case("date-time-lower", DT, "2024-01-01t12:30:45z", True)
case("date-time-space", DT, "2024-01-01 12:30:45Z", True)
case("date-time-leap-second", DT, "2016-12-31T23:59:60Z", False)
case("date-time-feb-30", DT, "2024-02-30T00:00:00Z", False)
case("date-time-no-offset", DT, "2024-01-01T12:30:45", False)
case("date-time-offset-minutes-60", DT, "2024-01-01T12:30:45+05:60", False)
case("date-time-year-0000", DT, "0000-01-01T00:00:00Z", True, "datetime-range")
case("date-time-rounds-past-9999", DT, "9999-12-31T23:59:59.9999999Z", True, "datetime-range")
case("date-time-basic-offset", DT, "2024-01-01T12:30:45+0530", False, "datetime-basic-offset")
case("date-time-non-ascii", DT, "2024-01-01T12:30:45\u00a0Z", False)
case("date-time-not-string", DT, 5, False)
case("date-time-no-type-number", {"format": "date-time"}, 5, True)
case("date-2000", {"type": "string", "format": "date"}, "2000-02-29", True)
case("date-2100", {"type": "string", "format": "date"}, "2100-02-29", False)
case("date-year-0000-leap", {"type": "string", "format": "date"}, "0000-02-29", True, "datetime-range")
case("time", {"type": "string", "format": "time"}, "23:59:59.5-12:00", True)
case("time-no-offset", {"type": "string", "format": "time"}, "23:59:59", False)
UUID = {"type": "string", "format": "uuid"}
case("uuid", UUID, "123e4567-E89B-12d3-a456-426614174000", True)
case("uuid-escaped", UUID, b'"123e4567\\u002de89b-12d3-a456-426614174000"', True)
case("uuid-short", UUID, "123e4567-e89b-12d3-a456-42661417400", False)
case("uuid-trailing-newline", UUID, b'"123e4567-e89b-12d3-a456-426614174000\\n"', False)
BYTE = {"type": "string", "format": "byte"}
case("byte", BYTE, "aGVsbG8=", True)
case("byte-empty", BYTE, "", True)
case("byte-two-pads", BYTE, "YQ==", True)
case("byte-noncanonical-bits", BYTE, "YR==", True)
case("byte-all-padding", BYTE, "====", False)
case("byte-three-pads", BYTE, "A===", False)
case("byte-pad-inside", BYTE, "AB=C", False)
case("byte-unpadded", BYTE, "YQ", False)
case("byte-escaped-slash", BYTE, b'"ab\\/+"', True)
BOUNDED_DATE = {"type": "string", "format": "date", "maxLength": 10, "pattern": "^2"}
case("format-with-bounds", BOUNDED_DATE, "2024-01-01", True)
case("format-with-bounds-bad-date", BOUNDED_DATE, "2024-01-32", False)
case("format-with-bounds-pattern", BOUNDED_DATE, "1999-01-01", False)
case("format-unknown", {"type": "string", "format": "email"}, "x", True)
# enum / const ----------------------------------------------------------------------------
MIXED = {"enum": ["a", "\u00e9", 1, None, True]}
case("enum-string", MIXED, "a", True)
case("enum-string-escaped", MIXED, b'"\\u0061"', True)
case("enum-non-ascii", MIXED, "\u00e9", True)
case("enum-non-ascii-escaped", MIXED, b'"\\u00E9"', True)
case("enum-string-other", MIXED, "b", False)
case("enum-string-prefix", MIXED, "aa", False)
case("enum-int", MIXED, 1, True)
case("enum-int-other", MIXED, 2, False)
case("enum-1.0", MIXED, 1.0, False, "enum-float-int")
case("enum-true", MIXED, True, True)
case("enum-false", MIXED, False, False)
case("enum-null", MIXED, None, True)
case("enum-array", MIXED, ["a"], False)
ZERO = {"enum": [0]}
case("enum-zero", ZERO, 0, True)
case("enum-negative-zero", ZERO, b"-0", True)
case("enum-zero-float", ZERO, b"0.0", False)
case("enum-big-int", {"enum": [1, 2]}, 2**64 + 1, False)
case("enum-negative", {"enum": [-(2**63), 2**63 - 1]}, -(2**63), True)
LONG_ENUM = {"enum": [f"value-{i}" for i in range(300)]}
case("enum-long", LONG_ENUM, "value-299", True)
case("enum-long-other", LONG_ENUM, "value-300", False)
case("const-false", {"const": False}, False, True)
case("const-false-zero", {"const": False}, 0, False)
case("const-beside-enum", {"const": "a", "enum": ["b"]}, "a", False)
case("const-beside-enum-both", {"const": "b", "enum": ["b"]}, "b", True)
BOOL_INT = {"allOf": [{"enum": [1, "a"]}, {"enum": [True, "a"]}]}
case("allOf-enum-bool-vs-int", BOOL_INT, 1, False)
case("allOf-enum-bool-vs-int-true", BOOL_INT, True, False)
case("allOf-enum-bool-vs-int-common", BOOL_INT, "a", True)
case("enum-typed", {"type": "string", "enum": ["a", 1]}, 1, False)
case("enum-with-length", {"type": "string", "enum": ["a", "bb"], "minLength": 2}, "a", False)
# objects ---------------------------------------------------------------------------------
CLOSED = {"type": "object", "properties": {"a": INT, "b": STR}, "required": ["a"], "additionalProperties": False}
case("object", CLOSED, {"a": 1}, True)
case("object-both", CLOSED, {"a": 1, "b": "x"}, True)
case("object-missing", CLOSED, {"b": "x"}, False)
case("object-unknown", CLOSED, {"a": 1, "c": 1}, False)
case("object-member-type", CLOSED, {"a": "1"}, False)
case("object-escaped-key", CLOSED, b'{"\\u0061":1}', True)
case("object-escaped-repeat", CLOSED, b'{"a":1,"\\u0061":2}', False)
case("object-repeat", CLOSED, b'{"a":1,"a":1}', False)
case("object-escaped-unknown", CLOSED, b'{"\\u0063":1,"a":1}', False)
case("object-key-prefix", CLOSED, {"a": 1, "ab": 1}, False)
case("object-empty-key", CLOSED, {"a": 1, "": 1}, False)
case("object-not-object", CLOSED, [], False)
OPEN = {"type": "object", "properties": {"a": INT}}
case("open-unknown", OPEN, {"a": 1, "x": {"y": [1, {"z": None}]}}, True)
case("open-repeat-inside-unknown", OPEN, b'{"a":1,"x":{"y":1,"y":2}}', False)
case("open-repeat-unknown", OPEN, b'{"x":1,"x":2}', False)
case("open-repeat-unknown-escaped", OPEN, b'{"x":1,"\\u0078":2}', False)
case("open-repeat-in-array", OPEN, b'{"x":[1,{"z":1,"z":1}]}', False)
case("open-same-key-other-objects", OPEN, b'{"x":{"k":1},"y":{"k":1},"k":{"k":{"k":1}}}', True)
case("open-invalid-utf8-unknown", OPEN, b'{"a":1,"x":"\xff"}', False, "skipped-utf8")
case("open-invalid-utf8-key", OPEN, b'{"a":1,"\xff":1}', False, "skipped-utf8")
case("open-beyond-double-unknown", OPEN, b'{"a":1,"x":1e400}', False, "skipped-utf8")
case("open-lone-surrogate-unknown", OPEN, b'{"a":1,"x":"\\ud800"}', False)
case("open-control-char-unknown", OPEN, b'{"a":1,"x":"\x01"}', False)
ADDITIONAL = {"type": "object", "properties": {"a": STR}, "additionalProperties": INT}
case("additional-schema", ADDITIONAL, {"a": "s", "b": 1}, True)
case("additional-schema-bad", ADDITIONAL, {"a": "s", "b": "t"}, False)
case("additional-schema-declared", ADDITIONAL, {"a": 1}, False)
MAP = {"type": "object", "additionalProperties": INT, "maxProperties": 2}
case("map", MAP, {"x": 1, "y": 2}, True)
case("map-bad", MAP, {"x": 1, "y": "2"}, False)
case("map-too-many", MAP, {"x": 1, "y": 2, "z": 3}, False)
case("map-repeat", MAP, b'{"x":1,"x":1}', False)
REQ_ONLY = {"type": "object", "required": ["a"]}
case("required-without-properties", REQ_ONLY, {"a": None}, True)
case("required-without-properties-escaped", REQ_ONLY, b'{"\\u0061":0}', True)
case("required-without-properties-missing", REQ_ONLY, {"b": 1}, False)
case("required-without-properties-repeat", REQ_ONLY, b'{"a":0,"a":0}', False)
REQ_ADDITIONAL = {"type": "object", "required": ["a"], "additionalProperties": INT}
case("required-meets-additional", REQ_ADDITIONAL, {"a": 1}, True)
case("required-meets-additional-bad", REQ_ADDITIONAL, {"a": "x"}, False)
REQ_CLOSED = {"type": "object", "properties": {"a": {}}, "required": ["b"], "additionalProperties": False}
case("required-not-in-closed-properties", REQ_CLOSED, {"b": 1}, False)
COUNTS = {"type": "object", "properties": {"a": {}}, "minProperties": 1, "maxProperties": 2}
case("minProperties", COUNTS, {}, False)
case("minProperties-declared", COUNTS, {"a": 1}, True)
case("minProperties-unknown", COUNTS, {"b": 1}, True)
case("maxProperties", COUNTS, {"a": 1, "b": 1, "c": 1}, False)
WIDE = {
    "type": "object",
    "properties": {f"p{i}": INT for i in range(100)},
    "required": [f"p{i}" for i in range(70)],
    "additionalProperties": False,
}
FULL = {f"p{i}": i for i in range(100)}
case("wide-object", WIDE, FULL, True)
case("wide-object-required-only", WIDE, {f"p{i}": i for i in range(70)}, True)
case("wide-object-missing-last-required", WIDE, {f"p{i}": i for i in range(69)}, False)
case("wide-object-missing-first-required", WIDE, {f"p{i}": i for i in range(1, 70)}, False)
case("wide-object-repeat-high-slot", WIDE, Repeat([*FULL.items(), ("p99", 1)]), False)
case("wide-object-bad-member", WIDE, {**FULL, "p95": "x"}, False)
case("wide-object-unknown", WIDE, {**FULL, "q": 1}, False)
FORTY = {f"k{i}": i for i in range(40)}
case("forty-unknown-keys", OPEN, FORTY, True)
case("forty-unknown-keys-repeat", OPEN, Repeat([*FORTY.items(), ("k3", 0)]), False)
case("forty-unknown-keys-repeat-escaped", OPEN, spell(FORTY)[:-1] + b',"k\\u0033":0}', False)
case("forty-keys-anything", {}, Repeat([*FORTY.items(), ("k39", 0)]), False)
case("thousand-keys", {}, {f"key-{i}": i for i in range(1000)}, True)
case("thousand-keys-repeat", {}, Repeat([*((f"key-{i}", i) for i in range(1000)), ("key-500", 0)]), False)
case("repeat-at-depth", {}, b'{"a":[{"b":{"c":[[{"d":1,"d":1}]]}}]}', False)
case("escaped-keys-differ", {}, b'{"\\u0061b":1,"a\\u0062c":1,"ab\\u0063d":1}', True)
case("escaped-keys-same", {}, b'{"\\u0061b":1,"a\\u0062":1}', False)
# arrays ----------------------------------------------------------------------------------
ITEMS = {"type": "array", "items": INT, "minItems": 1, "maxItems": 3}
case("items", ITEMS, [1, 2, 3], True)
case("items-empty", ITEMS, [], False)
case("items-too-many", ITEMS, [1, 2, 3, 4], False)
case("items-bad", ITEMS, [1, "a"], False)
case("items-false", {"type": "array", "items": False}, [], True)
case("items-false-one", {"type": "array", "items": False}, [1], False)
OBJECTS = {"type": "array", "items": {"type": "object", "properties": {"a": INT}}}
case("items-objects-repeat", OBJECTS, b'[{"a":1},{"a":1,"a":2}]', False)
case("items-objects", OBJECTS, [{"a": 1}, {"a": 2, "b": [1]}], True)
# allOf -----------------------------------------------------------------------------------
ALL_OF = {"allOf": [{"type": "object", "properties": {"a": INT}, "required": ["a"]}, {"properties": {"b": STR}, "required": ["b"]}]}
case("allOf", ALL_OF, {"a": 1, "b": "x"}, True)
case("allOf-missing", ALL_OF, {"a": 1}, False)
CLOSED_BRANCH = {"allOf": [{"type": "object", "properties": {"a": {}}, "additionalProperties": False}, {"properties": {"b": {}}}]}
case("allOf-closed-branch", CLOSED_BRANCH, {"a": 1}, True)
case("allOf-closed-branch-other", CLOSED_BRANCH, {"b": 1}, False)
SCHEMA_BRANCH = {"allOf": [{"properties": {"a": INT}, "additionalProperties": STR}, {"properties": {"b": INT}}]}
case("allOf-additional-meets-other-int", SCHEMA_BRANCH, {"a": 1, "b": 1}, False, "allof-additional")
case("allOf-additional-meets-other-str", SCHEMA_BRANCH, {"a": 1, "b": "x"}, False)
case("allOf-additional-other", SCHEMA_BRANCH, {"a": 1, "c": "x"}, True)
PATTERNS = {"type": "string", "allOf": [{"pattern": "^a"}, {"pattern": "b$"}]}
case("allOf-two-patterns", PATTERNS, "ab", True)
case("allOf-two-patterns-bad", PATTERNS, "ac", False)
case("allOf-no-common-type", {"allOf": [STR, INT]}, 1, False)
INT_NUM = {"allOf": [{"type": "number", "minimum": 0}, {"type": "integer", "maximum": 10}]}
case("allOf-number-integer", INT_NUM, 5, True)
case("allOf-number-integer-fraction", INT_NUM, 5.5, False)
case("allOf-number-integer-above", INT_NUM, 11, False)
# Branches that do not merge (merge_all_of leaves them): each checks the value in turn.
TWO_FORMATS = {"type": ["string", "integer"], "allOf": [{"format": "date"}, {"format": "uuid"}]}
case("allOf-two-formats-date", TWO_FORMATS, "2024-01-31", False)
case("allOf-two-formats-uuid", TWO_FORMATS, "2eb8aa08-aa98-11ea-b4aa-73b441d16380", False)
case("allOf-two-formats-integer", TWO_FORMATS, 5, True)
TWO_MULTIPLES = {"allOf": [{"multipleOf": 2}, {"multipleOf": 3}]}
case("allOf-two-multiples", TWO_MULTIPLES, 12, True)
case("allOf-two-multiples-one", TWO_MULTIPLES, 4, False)
case("allOf-two-multiples-other", TWO_MULTIPLES, 9, False)
case("allOf-two-multiples-string", TWO_MULTIPLES, "x", True)
REF_SIBLINGS = {"$ref": "#/$defs/S", "maxLength": 2, "$defs": {"S": {"type": "string", "minLength": 1}}}
case("ref-with-siblings", REF_SIBLINGS, "ab", True)
case("ref-with-siblings-long", REF_SIBLINGS, "abc", False)
case("ref-with-siblings-empty", REF_SIBLINGS, "", False)
# unions ----------------------------------------------------------------------------------
KINDS = {"oneOf": [{"type": "string", "maxLength": 2}, {"type": "integer", "minimum": 0}, {"type": "array", "items": INT}]}
case("oneOf-kinds-string", KINDS, "ab", True)
case("oneOf-kinds-int", KINDS, 3, True)
case("oneOf-kinds-array", KINDS, [1], True)
case("oneOf-kinds-long", KINDS, "abc", False)
case("oneOf-kinds-null", KINDS, None, False)
case("oneOf-kinds-float", KINDS, 1.5, False)
ONE_NUM = {"oneOf": [INT, NUM]}
case("oneOf-int-number-both", ONE_NUM, 5, False)
case("oneOf-int-number-float", ONE_NUM, 5.5, True)
SPLIT = {"anyOf": [{"type": "integer", "minimum": 10}, {"type": "number", "maximum": 3}]}
case("anyOf-int-number-int-branch", SPLIT, 12, True)
case("anyOf-int-number-number-branch", SPLIT, 2, True, "int-number-union")
case("anyOf-int-number-neither", SPLIT, 5, False)
TWO_STRINGS = {"anyOf": [{"type": "string", "maxLength": 2}, {"type": "string", "pattern": "^a"}]}
case("anyOf-same-kind", TWO_STRINGS, "abc", True)
case("anyOf-same-kind-bad", TWO_STRINGS, "bcd", False)
ONE_STRING = {"oneOf": [{"type": "string", "maxLength": 2}, {"type": "string", "pattern": "^a"}]}
case("oneOf-same-kind-both", ONE_STRING, "ab", False)
case("oneOf-same-kind-one", ONE_STRING, "abc", True)
case("oneOf-same-kind-other", ONE_STRING, "b", True)
NULLABLE_REF = {"anyOf": [{"$ref": "#/$defs/O"}, {"type": "null"}], "$defs": {"O": {"type": "object", "properties": {"a": INT}, "required": ["a"]}}}
case("nullable-ref-null", NULLABLE_REF, None, True)
case("nullable-ref-object", NULLABLE_REF, {"a": 1}, True)
case("nullable-ref-bad", NULLABLE_REF, {"a": "x"}, False)
case("nullable-ref-other", NULLABLE_REF, 1, False)
OBJ_OR_LIST = {"anyOf": [{"type": "object", "required": ["a"]}, {"type": "array", "items": INT}]}
case("object-or-array-object", OBJ_OR_LIST, {"a": 1}, True)
case("object-or-array-array", OBJ_OR_LIST, [1], True)
case("object-or-array-bad", OBJ_OR_LIST, ["x"], False)
AT_LEAST_ONE = {"type": "object", "properties": {"a": INT, "b": STR}, "anyOf": [{"required": ["a"]}, {"required": ["b"]}]}
case("objects-anyOf-first", AT_LEAST_ONE, {"a": 1}, True)
case("objects-anyOf-second", AT_LEAST_ONE, {"b": "x"}, True)
case("objects-anyOf-both", AT_LEAST_ONE, {"a": 1, "b": "x"}, True)
case("objects-anyOf-neither", AT_LEAST_ONE, {"c": 1}, False)
case("objects-anyOf-bad-member", AT_LEAST_ONE, {"a": "x", "b": "x"}, False)
case("objects-anyOf-repeat", AT_LEAST_ONE, b'{"b":"x","b":"y"}', False)
case("objects-anyOf-repeat-unknown", AT_LEAST_ONE, b'{"b":"x","z":1,"z":2}', False)
case("objects-anyOf-escaped", AT_LEAST_ONE, b'{"\\u0062":"x"}', True)
EXACTLY_ONE = {"oneOf": [{"type": "object", "required": ["a"]}, {"type": "object", "required": ["b"]}, {"type": "array", "items": INT}, {"type": "array", "minItems": 2}]}
case("objects-oneOf-first", EXACTLY_ONE, {"a": 1}, True)
case("objects-oneOf-both", EXACTLY_ONE, {"a": 1, "b": 1}, False)
case("objects-oneOf-none", EXACTLY_ONE, {"c": 1}, False)
case("arrays-oneOf-first", EXACTLY_ONE, [1], True)
case("arrays-oneOf-both", EXACTLY_ONE, [1, 2], False)
case("arrays-oneOf-second", EXACTLY_ONE, ["a", "b"], True)
case("arrays-oneOf-none", EXACTLY_ONE, ["a"], False)
# A branch that fails deep inside leaves no trace for the next one (spans, bitsets).
DEEP_BRANCHES = {"anyOf": [
    {"type": "object", "properties": {"x": {"type": "object", "properties": {"k": INT}, "required": ["k"]}}, "required": ["x", "y"]},
    {"type": "object", "properties": {"x": {"type": "object"}}, "required": ["x"]},
]}
case("objects-anyOf-retry-clean", DEEP_BRANCHES, {"x": {"k": "s", "w": {"q": [1, {"r": 1}]}, "p": 1}}, True)
case("objects-anyOf-retry-repeat", DEEP_BRANCHES, b'{"x":{"k":"s","w":{"q":1,"q":2}}}', False)
case("objects-anyOf-retry-wide", DEEP_BRANCHES, {"x": {f"k{i}": i for i in range(80)}}, True)
NESTED_UNIONS = {"type": "object", "anyOf": [{"required": ["a"]}, {"required": ["b"]}], "properties": {"a": {"type": "object", "additionalProperties": {"anyOf": [{"required": ["c"]}, {"required": ["d"]}, {"type": "object", "maxProperties": 0}]}}}}
case("objects-nested-unions", NESTED_UNIONS, {"a": {"x": {"c": 1}, "y": {}, "z": {"d": 2}}}, True)
case("objects-nested-unions-bad", NESTED_UNIONS, {"a": {"x": {"c": 1}, "y": {"e": 1}}}, False)
UNION_SIBLING = {"type": "string", "anyOf": [{"maxLength": 1}, {"pattern": "^a"}]}
case("union-sibling", UNION_SIBLING, "abc", True)
case("union-sibling-number", UNION_SIBLING, 1, False)
# discriminators --------------------------------------------------------------------------
PETS = {
    "Cat": {"type": "object", "required": ["kind", "meow"], "properties": {"kind": {"type": "string"}, "meow": {"type": "boolean"}}},
    "Dog": {"type": "object", "required": ["kind", "bark"], "properties": {"kind": {"type": "string"}, "bark": INT}, "additionalProperties": False},
}
PET = {"oneOf": [{"$ref": "#/$defs/Cat"}, {"$ref": "#/$defs/Dog"}], "discriminator": {"propertyName": "kind"}, "$defs": PETS}
case("tag", PET, {"kind": "Cat", "meow": True}, True)
case("tag-escaped-value", PET, b'{"kind":"\\u0043at","meow":true}', True)
case("tag-escaped-key", PET, b'{"\\u006bind":"Cat","meow":true}', True)
case("tag-last", PET, {"meow": True, "kind": "Cat"}, True)
case("tag-after-nested", PET, {"x": {"kind": "Dog", "s": "}{]["}, "y": ["\\\"", {"kind": 1}], "kind": "Cat", "meow": True}, True)
case("tag-variant-bad", PET, {"kind": "Dog", "bark": "loud"}, False)
case("tag-variant-missing", PET, {"kind": "Cat"}, False)
case("tag-closed-variant", PET, {"kind": "Dog", "bark": 1}, True)
case("tag-closed-variant-extra", PET, {"kind": "Dog", "bark": 1, "x": 1}, False)
case("tag-not-string", PET, {"kind": 1, "meow": True}, False)
case("tag-null", PET, {"kind": None, "meow": True}, False)
case("tag-missing", PET, {"meow": True}, False)
case("tag-unknown", PET, {"kind": "Bird", "meow": True}, False)
case("tag-repeated", PET, b'{"kind":"Cat","kind":"Cat","meow":true}', False)
case("tag-repeated-escaped", PET, b'{"kind":"Cat","meow":true,"\\u006bind":"Dog"}', False)
case("tag-array", PET, [], False)
case("tag-invalid-after", PET, b'{"kind":"Cat","meow":true,"x":01}', False)
case("tag-truncated", PET, b'{"meow":true,"x":"\\', False)
MAPPED = {**PET, "discriminator": {"propertyName": "kind", "mapping": {"cat": "#/$defs/Cat", "dog": "#/$defs/Dog"}}}
case("mapping", MAPPED, {"kind": "cat", "meow": False}, True)
case("mapping-bad", MAPPED, {"kind": "dog", "bark": 1.5}, False)
case("mapping-implicit-name", MAPPED, {"kind": "Cat", "meow": True}, False)
NULLABLE_TAGGED = {"anyOf": [{"oneOf": PET["oneOf"], "discriminator": {"propertyName": "kind"}}, {"type": "null"}], "$defs": PETS}
case("nullable-tagged-null", NULLABLE_TAGGED, None, True)
case("nullable-tagged", NULLABLE_TAGGED, {"kind": "Dog", "bark": 2}, True)
case("nullable-tagged-bad", NULLABLE_TAGGED, {"kind": "Dog"}, False)
case("nullable-tagged-unknown-tag", NULLABLE_TAGGED, {"kind": "Bird", "meow": True}, False, "nested-discriminator")
TYPED_TAGGED = {**PET, "type": "object"}
case("tag-beside-type", {**TYPED_TAGGED, "$defs": {"A": PETS["Cat"], "B": PETS["Cat"]}, "oneOf": [{"$ref": "#/$defs/A"}, {"$ref": "#/$defs/B"}]}, {"kind": "A", "meow": True}, True)
SHAPES = {
    "$ref": "#/$defs/Shape",
    "$defs": {
        "Shape": {"oneOf": [{"$ref": "#/$defs/Leaf"}, {"$ref": "#/$defs/Group"}], "discriminator": {"propertyName": "type"}},
        "Leaf": {"type": "object", "required": ["type", "size"], "properties": {"type": {"type": "string"}, "size": INT}},
        "Group": {"type": "object", "required": ["type", "children"], "properties": {"type": {"type": "string"}, "children": {"type": "array", "items": {"$ref": "#/$defs/Shape"}}}},
    },
}
case("tagged-recursive", SHAPES, {"type": "Group", "children": [{"type": "Leaf", "size": 1}, {"type": "Group", "children": []}]}, True, "uncompilable")
case("tagged-recursive-bad", SHAPES, {"type": "Group", "children": [{"type": "Group", "children": [{"type": "Leaf"}]}]}, False, "uncompilable")
# recursion -------------------------------------------------------------------------------
TREE = {
    "$ref": "#/$defs/Node",
    "$defs": {"Node": {"type": "object", "required": ["value"], "properties": {"value": INT, "next": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]}, "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}}},
}
case("recursive", TREE, {"value": 1, "next": {"value": 2, "next": None}, "children": [{"value": 3}]}, True)
case("recursive-deep-bad", TREE, {"value": 1, "next": {"value": 2, "next": {"value": "x"}}}, False)


def _chain(depth: int, leaf: Any) -> Any:
    node: Any = {"value": 0, "next": leaf}
    for _ in range(depth):
        node = {"value": 0, "next": node}
    return node


case("recursive-100-deep", TREE, _chain(100, None), True)
case("recursive-100-deep-bad", TREE, _chain(100, {"value": None}), False)
case("recursive-450-deep", TREE, _chain(450, None), True, "recursion")
NESTED_LISTS = {"$ref": "#/$defs/T", "$defs": {"T": {"anyOf": [INT, {"type": "array", "items": {"$ref": "#/$defs/T"}}]}}}
case("recursive-union", NESTED_LISTS, [1, [2, [3, []]]], True)
case("recursive-union-bad", NESTED_LISTS, [1, ["x"]], False)
case("recursive-union-null", NESTED_LISTS, [None], False)
# fmt: on


# What the msgspec path's compiler raises for the "uncompilable" rows (DIVERGENCES):
# msgspec.Meta refusing a bound beyond int64 (ValueError, OverflowError), the
# forward reference of a recursive discriminated union (NameError).
UNCOMPILABLE = (ValueError, OverflowError, NameError)


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_case(c: Case) -> None:
    data = as_bytes(c.doc)
    got = fast(c.schema).check(data)
    assert got is c.valid, f"{c.id}: fast path says {got} for {data[:200]!r}"
    # As the gateway compiles it: allOf merged first (the raw schema checks the
    # branches of each allOf in turn instead).
    got = fast(merge_all_of(c.schema)).check(data)
    assert got is c.valid, f"{c.id}: fast path says {got} once allOf is merged"
    if c.slow == "uncompilable":
        try:
            decide = slow_path(c.schema)
        except UNCOMPILABLE:
            return
        # It compiles now (a newer msgspec, or fixed meanwhile): then it decides right.
        assert decide is not None
        assert decide(data) is c.valid, f"{c.id}: the msgspec path compiles, says {not c.valid}"
        _NOTES.append(f"{c.id}: the msgspec path compiles now and agrees ({c.slow})")
        return
    decide = slow_path(c.schema)
    if c.slow == "crash":
        if decide is not None:  # the crash check lets it through now (fixed meanwhile)
            _NOTES.append(f"{c.id}: the msgspec path compiles now ({c.slow})")
    elif c.slow is None:
        assert decide is not None
        assert decide(data) is c.valid, f"{c.id}: the msgspec path says {not c.valid}"
    elif c.slow == "raises":
        with pytest.raises(Exception):  # noqa: B017 - any exception: that is the bug
            SchemaValidator(c.schema).decoder.decode(data)
    elif decide is not None and decide(data) is c.valid:
        # A divergence the msgspec path no longer has (it is being fixed meanwhile).
        _NOTES.append(f"{c.id}: the msgspec path agrees now ({c.slow})")


def test_cases_agree_with_the_reference() -> None:
    """Where a row's answer is not a by-design reading, jsonschema agrees with it."""
    by_design = {
        # msgspec's readings the gateway documents: no leap second, a space for T,
        # fmod for float multipleOf, 1.0 is not the integer 1 (nor 0.0 the 0 of an
        # enum), no number beyond the double range, the discriminator picks the variant.
        "date-time-space",
        "date-time-leap-second",
        "multipleOf-tenth-fmod",
        "enum-1.0",
        "enum-zero-float",
        "num-integer-beyond-double",
        "mapping-implicit-name",
        "tag-unknown",
        "tag-beside-type",
    }
    wrong = []
    for c in CASES:
        if c.id in by_design:
            continue
        data = as_bytes(c.doc)
        if len(data) > 200_000:
            continue
        decided = reference(c.schema, data)
        if decided is not None and decided is not c.valid:
            wrong.append(c.id)
    assert wrong == []


def test_keyword_rows() -> None:
    """Every row of test_validation_keywords.py the fast path supports: the row's answer
    (the rows name the msgspec path's bugs in `bugs`: the fast path has none of them)."""
    supported = 0
    wrong = []
    for r in ROWS:
        validator = compiled(r)
        # As the gateway compiles it (allOf merged), and as given (each branch in turn).
        for schema in (validator.merged, validator.schema):
            program = compile_fast(schema)
            if program is None:
                continue
            supported += schema is validator.merged
            got = program.check(spell(r.instance))
            if got is not r.valid:
                wrong.append(r.id)
    assert wrong == []
    assert supported >= 0.8 * len(ROWS)


UNSUPPORTED = [
    {"not": INT},
    {"if": {"minimum": 0}, "then": {"maximum": 1}},
    {"type": "array", "uniqueItems": True},
    {"type": "object", "patternProperties": {"^x": INT}},
    {"type": "object", "dependentRequired": {"a": ["b"]}},
    {"type": "object", "propertyNames": {"maxLength": 1}},
    {"type": "array", "prefixItems": [INT]},
    {"type": "array", "contains": INT},
    # unions of objects that recurse, or nest so deep a document is re-read too often
    {
        "$ref": "#/$defs/T",
        "$defs": {
            "T": {
                "anyOf": [
                    {"type": "object", "required": ["a"]},
                    {"type": "object", "properties": {"b": {"$ref": "#/$defs/T"}}},
                ]
            }
        },
    },
    {
        "anyOf": [
            {
                "type": "object",
                "properties": {
                    "a": {
                        "anyOf": [
                            {
                                "type": "object",
                                "properties": {
                                    "b": {
                                        "anyOf": [
                                            {"type": "array"},
                                            {"type": "array", "items": INT},
                                            {"type": "array", "minItems": 1},
                                        ]
                                    }
                                },
                            },
                            {"type": "object", "required": ["c"]},
                            {"type": "object", "required": ["d"]},
                        ]
                    }
                },
            },
            {"type": "object", "required": ["e"]},
            {"type": "object", "required": ["f"]},
        ]
    },
    {"enum": [1.5]},
    {"const": {"a": 1}},
    {"type": "integer", "multipleOf": 1.5},
    # an allOf that reaches itself without reading anything
    {"$ref": "#/$defs/A", "$defs": {"A": {"allOf": [{"$ref": "#/$defs/A"}, {"minimum": 1}]}}},
    {"$ref": "#/$defs/Missing"},
    {"$ref": "https://example.com/x"},
    {"$ref": "#/$defs/A", "$defs": {"A": {"$ref": "#/$defs/B"}, "B": {"$ref": "#/$defs/A"}}},
    {"type": "string", "pattern": "\\p{L}"},
    {"type": "file-ish"},
]


@pytest.mark.parametrize("schema", UNSUPPORTED, ids=[json.dumps(s)[:60] for s in UNSUPPORTED])
def test_unsupported_schemas_give_none(schema: Any) -> None:
    assert compile_fast(schema) is None
    with pytest.raises(Unsupported):
        compile_fast_or_raise(schema)


_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
# Every place a number is read: skipped (anything), as a `number` with and without a
# bound (the double is computed only for the bound), as an `integer` with and without.
_NUMBER_READERS = {
    "any": {},
    "number": NUM,
    "number-bounded": {"type": "number", "minimum": -1e308},
    "integer": INT,
    "integer-bounded": {"type": "integer", "minimum": -(2**70)},
    "items": {"type": "array", "items": NUM},
    "member": {"type": "object", "properties": {"a": INT}, "additionalProperties": NUM},
}


def _number_decision(reader: str, text: str) -> bool:
    """RFC 8259 number grammar, then the reader's own rule (msgspec's): an integer
    literal for `integer`, a float literal within the double range for anything else,
    an integer literal too for `number` (which reads it as a float)."""
    m = _NUMBER.fullmatch(text)
    if m is None:
        return False
    is_int = m[1] is None and m[2] is None
    if reader.startswith("integer") or reader == "member":
        return is_int
    if reader == "any" and is_int:
        return True
    return math.isfinite(float(text))


# Edges of the grammar and of the double range.
# fmt: off
_NUMBER_TEXTS = [
    "-", "-0", "00", "01", "1.", ".5", "1e", "1e+", "1E-0", "-0.0e-0", "1e309", "-1e400",
    "1e-400", "1.5e308", "1.8e308", "0e99999999999999999999", "9" * 310,
]
# fmt: on


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.text("0123456789-+.eE", min_size=1, max_size=10) | st.sampled_from(_NUMBER_TEXTS))
def test_one_number_grammar(text: str) -> None:
    """A number reads the same wherever it stands (_scan_number): only what is done
    with its value differs."""
    for reader, schema in _NUMBER_READERS.items():
        if reader == "items":
            data = f"[{text}]".encode()
        elif reader == "member":
            data = f'{{"a":{text},"b":1}}'.encode()
        else:
            data = text.encode()
        assert fast(schema).check(data) is _number_decision(reader, text), (reader, text)


def test_inapplicable_keywords_are_ignored() -> None:
    """A keyword no declared type can use changes nothing (Kubernetes puts uniqueItems on
    strings), as in compiler._applicable."""
    program = fast({"type": "string", "uniqueItems": True, "patternProperties": {"x": {}}})
    assert program.check(b'"a"')
    assert not program.check(b"[1, 1]")


def test_buffers_and_types() -> None:
    program = fast({"type": "object", "properties": {"a": INT}})
    assert program.check(b'{"a":1}')
    assert program.check(bytearray(b'{"a":1}'))
    assert program.check(memoryview(b'x{"a":1}')[1:])
    assert not program.check(b'{"a":"1"}')
    with pytest.raises(TypeError):
        program.check("{}")  # type: ignore[arg-type]


def test_programs_hold_their_nodes() -> None:
    """A Program refuses a graph whose nodes it does not hold (they would dangle)."""
    child = Node()
    child.set_kinds(8)
    parent = Node()
    parent.set_kinds(64)
    parent.set_array(child, None, None)
    with pytest.raises(ValueError):
        Program(parent, [parent])
    with pytest.raises(ValueError):
        Program(parent, [parent, Node()])  # a node never built
    assert Program(parent, [parent, child]).check(b"[1]")
    assert Program(ANY, []).check(b"[1]")
    assert not Program(NEVER, []).check(b"1")


def test_all_of_nodes() -> None:
    """Node.set_all: every branch reads the value; its kinds are the branches' in common."""
    low, high, text = Node(), Node(), Node()
    low.set_kinds(KIND_INTEGER)
    low.set_integer(1, None, None)
    high.set_kinds(KIND_INTEGER | KIND_STRING)
    high.set_integer(None, 5, None)
    text.set_kinds(KIND_STRING)
    both = Node()
    both.set_all([low, high])
    assert both.kinds == KIND_INTEGER and both.mode == MODE_ALL
    program = Program(both, [low, high, both])
    assert [program.check(d) for d in (b"0", b"1", b"5", b"6", b'"x"')] == [
        False,
        True,
        True,
        False,
        False,
    ]
    never = Node()
    never.set_all([low, text])
    assert never.kinds == 0 and not Program(never, [low, text, never]).check(b"1")
    with pytest.raises(ValueError):
        Node().set_all([])
    with pytest.raises(ValueError):
        Node().set_all([low, Node()])  # a branch not built yet
    nested = Node()
    nested.set_kinds(KIND_OBJECT)
    twice = Node()
    twice.set_all([nested, nested])
    assert twice.backtracks and twice.tries == 2


# -- simple patterns ---------------------------------------------------------------------

PATTERN_CASES = [
    ("^[A-Z]{3}-[0-9]{4,8}$", True),
    ("^[A-Za-z0-9 -]{3,10}$", True),
    ("^[A-Z]{2}$", True),
    ("^\\d+\\.\\d+$", True),
    ("^[^,]+$", True),
    ("^a?b*c+$", True),
    ("^[a-z]+", True),
    ("^v[0-9]+(\\.[0-9]+)*$", False),
    ("^[a-z]*a$", False),
    ("^a*a$", False),
    ("[a-z]+$", False),
    ("^(?i)abc$", False),
    ("^a|b$", False),
    ("^a*?$", False),
    ("^[\\w.-]+$", True),
    ("^\\S+$", True),
    ("^[a-", False),
]


@pytest.mark.parametrize(("pattern", "simple"), PATTERN_CASES)
def test_simple_patterns_recognised(pattern: str, simple: bool) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            re.compile(pattern)
        except re.error:
            assert simple_pattern(pattern) is None
            return
    assert (simple_pattern(pattern) is not None) is simple


_PATTERN_ALPHABET = "ab-.9Z _"
_ATOMS = [
    "a",
    "b",
    "-",
    "\\.",
    ".",
    "[a-b]",
    "[^a]",
    "\\d",
    "\\w",
    "\\s",
    "[ab9]",
    "[-a]",
    "Z",
    "\\-",
    "[.]",
]


@st.composite
def simple_patterns(draw: st.DrawFn) -> str:
    atoms = draw(st.lists(st.sampled_from(_ATOMS), min_size=0, max_size=5))
    quants = ["", "", "*", "+", "?", "{2}", "{1,3}", "{0,}", "{2,2}"]
    body = "".join(a + draw(st.sampled_from(quants)) for a in atoms)
    return "^" + body + draw(st.sampled_from(["", "$", "\\Z"]))


@settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
@given(simple_patterns(), st.lists(st.text(_PATTERN_ALPHABET, max_size=8), min_size=1, max_size=8))
def test_simple_patterns_match_as_re(pattern: str, texts: list[str]) -> None:
    """The C matcher (plain ASCII strings) decides as Python's re.search, or is not used."""
    program = fast({"type": "string", "pattern": pattern})
    compiled_re = re.compile(pattern)
    for text in texts:
        assert program.check(spell(text)) is (compiled_re.search(text) is not None), (pattern, text)


# -- formats against msgspec -----------------------------------------------------------------


@st.composite
def date_times(draw: st.DrawFn) -> str:
    digits = st.text("0123456789", min_size=1, max_size=1)

    def d(n: int) -> str:
        return "".join(draw(digits) for _ in range(n))

    year = draw(st.sampled_from(["2024", "2023", "1900", "2000", "0001", "9999", d(4)]))
    month = draw(st.sampled_from(["01", "02", "04", "12", "13", "00", d(2)]))
    day = draw(st.sampled_from(["01", "28", "29", "30", "31", "00", "32", d(2)]))
    sep = draw(st.sampled_from(["T", "t", " ", "_", ""]))
    hms = draw(
        st.sampled_from(
            [
                "00:00:00",
                "23:59:59",
                "23:59:60",
                "24:00:00",
                "12:60:00",
                "12:00",
                f"{d(2)}:{d(2)}:{d(2)}",
            ]
        )
    )
    frac = draw(st.sampled_from(["", ".5", ".123456", ".1234567", ".", ",5"]))
    offset = draw(
        st.sampled_from(
            ["Z", "z", "+00:00", "-23:59", "+24:00", "+05:60", "", "+05", "Y", f"+{d(2)}:{d(2)}"]
        )
    )
    kind = draw(st.sampled_from(["date-time", "date", "time"]))
    if kind == "date":
        return f"{year}-{month}-{day}" + draw(st.sampled_from(["", "", "x"]))
    if kind == "time":
        return f"{hms}{frac}{offset}"
    return f"{year}-{month}-{day}{sep}{hms}{frac}{offset}"


_DT_PROGRAMS = {
    name: fast({"type": "string", "format": name})
    for name in ("date-time", "date", "time", "uuid", "byte")
}
_DT_SLOW = {name: slow_path({"type": "string", "format": name}) for name in _DT_PROGRAMS}


def _msgspec_bug(text: str) -> bool:
    """The msgspec readings the fast path does not copy (DIVERGENCES): the +0530
    offset, year 0000, a fraction rounding past 9999-12-31T23:59:59."""
    return bool(
        re.search(r"[+-]\d{4}$", text)
        or text.startswith("0000")
        or re.match(r"9999-12-31.23:59:59\.9999995", text)
    )


@settings(
    max_examples=400, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
@given(date_times())
def test_date_time_formats_match_msgspec(text: str) -> None:
    for name in ("date-time", "date", "time"):
        data = spell(text)
        got = _DT_PROGRAMS[name].check(data)
        slow = _DT_SLOW[name]
        assert slow is not None
        want = slow(data)
        if got != want:
            assert _msgspec_bug(text), (name, text, got, want)


@settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
@given(
    st.one_of(
        st.uuids().map(str),
        st.uuids().map(lambda u: str(u).upper()),
        st.text("0123456789abcdefABCDEFg-", max_size=40),
        st.binary(max_size=12).map(lambda b: base64.b64encode(b).decode()),
        st.text("ABCab019+/=-_ \n", max_size=12),
    )
)
def test_uuid_and_byte_formats_match_msgspec(text: str) -> None:
    for name in ("uuid", "byte"):
        data = spell(text)
        slow = _DT_SLOW[name]
        assert slow is not None
        got, want = _DT_PROGRAMS[name].check(data), slow(data)
        if got != want:
            assert name == "uuid" and text.endswith("\n"), (name, text, got, want)


# -- generated documents --------------------------------------------------------------------


FORMATS = {
    "uuid": st.uuids().map(str),
    "byte": st.binary(max_size=24).map(lambda b: base64.b64encode(b).decode()),
}


def generate(schema: Any, count: int) -> list[Any]:
    """Up to `count` instances of schema from hypothesis-jsonschema, deterministically."""
    found: list[Any] = []
    with hypothesis_compat.from_schema() as from_schema, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            # A copy: hypothesis-jsonschema rewrites the schema it is given in place.
            strategy = from_schema(json.loads(json.dumps(schema)), custom_formats=FORMATS)

            @settings(
                max_examples=count,
                derandomize=True,
                database=None,
                deadline=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(strategy)
            def collect(instance: Any) -> None:
                found.append(instance)

            collect()
        except hypothesis_compat.generator_limits():  # the generator's limits, not ours
            pass
    return found


_OTHER_KIND: dict[type, Any] = {
    str: 7,
    bool: "true",
    int: "7",
    float: True,
    type(None): 0,
    list: {},
    dict: [],
}


def _walk(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, (*path, i))


def _drop(key: str, value: dict[str, Any]) -> dict[str, Any]:
    return {n: x for n, x in value.items() if n != key}


def _repeat(key: str, value: dict[str, Any]) -> Repeat:
    return Repeat([*value.items(), (key, value[key])])


def _changes(value: Any) -> list[Callable[[Any], Any]]:
    out: list[Callable[[Any], Any]] = [lambda _: _OTHER_KIND[type(value)], lambda _: None]
    if isinstance(value, dict):
        for key in list(value)[:3]:
            out.append(partial(_drop, key))
            out.append(partial(_repeat, key))
        out.append(lambda v: {**v, "zz_unknown": 1})
    elif isinstance(value, list):
        out.append(lambda _: [])
        if value:
            out.append(lambda v: v * 30)
            out.append(lambda v: [*v, "x"])
    elif isinstance(value, str):
        out += [
            lambda _: "",
            lambda v: (v or "x") * 200,
            lambda _: "other-\u00e9\U0001f600",
            lambda v: v + "\n",
        ]
    elif isinstance(value, int) and not isinstance(value, bool):
        out += [
            lambda v: v + 1,
            lambda v: v - 1,
            lambda v: v + 10**6,
            lambda v: -v,
            lambda _: 10**20,
            lambda v: float(v),
            lambda v: v + 0.5,
        ]
    elif isinstance(value, float):
        out += [lambda v: v * 1e6 + 1, lambda v: -v - 1, lambda _: 0.0]
    return out


def _replace(root: Any, path: tuple[Any, ...], change: Callable[[Any], Any]) -> Any:
    if not path:
        return change(root)
    out = json.loads(json.dumps(root))
    parent = out
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = change(parent[path[-1]])
    return out


def mutants(instance: Any, rnd: random.Random, limit: int) -> list[Any]:
    candidates = [(path, change) for path, value in _walk(instance) for change in _changes(value)]
    rnd.shuffle(candidates)
    out = []
    for path, change in candidates[:limit]:
        with contextlib.suppress(OverflowError):  # float() of an integer past the doubles
            out.append(_replace(instance, path, change))
    return out


def damaged(data: bytes, rnd: random.Random) -> bytes:
    pieces = [
        b"",
        b"{",
        b"}",
        b"[",
        b"]",
        b'"',
        b"\\",
        b",",
        b":",
        b"0",
        b"-",
        b"e",
        b".",
        b"\xff",
        b"\xc3",
        b"\x01",
        b"\\u",
        b"null",
    ]
    for _ in range(rnd.randrange(1, 4)):
        at = rnd.randrange(len(data) + 1)
        cut = rnd.randrange(3)
        data = data[:at] + rnd.choice(pieces) + data[at + cut :]
    return data


@dataclass
class Tally:
    counts: Counter[str]
    divergences: list[str]
    problems: list[str]


def compare(
    tally: Tally, schema: Any, program: Program, slow: Callable[[bytes], bool] | None, data: bytes
) -> bool:
    got = program.check(data)
    tally.counts["documents"] += 1
    tally.counts["valid" if got else "invalid"] += 1
    want = slow(data) if slow is not None else None
    if want is None or got != want:
        ref = reference(schema, data)
        if got != ref:
            tally.problems.append(
                f"fast {got}, msgspec path {want}, reference {ref}: {data[:300]!r}"
            )
        elif want is not None:
            tally.divergences.append(f"fast {got}, msgspec path {want}: {data[:160]!r}")
    return got


# The table's schemas the generator and both paths take, one of each.
def _generated_schemas() -> dict[str, Any]:
    out: dict[str, Any] = {}
    seen: set[str] = set()
    for c in CASES:
        key = json.dumps(c.schema, sort_keys=True)
        if key in seen or c.slow == "uncompilable" or c.schema == {}:
            continue
        seen.add(key)
        out[c.id] = c.schema
    out["workload-order"] = _workload("Order")
    out["workload-bulk"] = _workload("BulkItems")
    return out


def _workload(name: str) -> Any:
    repo = str(Path(__file__).resolve().parents[1])
    if repo not in sys.path:
        sys.path.insert(0, repo)
    from bench.validation.workload import root

    return root(name)


GENERATED = _generated_schemas()
# The schemas hypothesis-jsonschema generates nothing for (generator_limits): no
# instance exists or its filters reject every draw, or recursive $refs. Named, so
# a schema that stops generating shows instead of quietly testing less.
NOT_GENERATED = {
    "const-beside-enum",
    "required-not-in-closed-properties",
    "allOf-no-common-type",
    "tag-beside-type",
    "recursive",
    "recursive-union",
}


@pytest.mark.parametrize("name", list(GENERATED))
def test_generated_documents(name: str) -> None:
    schema = GENERATED[name]
    program = fast(schema)
    slow = slow_path(schema)
    tally = Tally(Counter(), [], [])
    rnd = random.Random(name)
    # hypothesis-jsonschema searches ~20 s before it gives up on this one: its
    # hand-written cases above cover it, and bytes below still go through both.
    instances = [] if name == "tag-beside-type" else generate(schema, 6)
    assert bool(instances) is (name not in NOT_GENERATED), f"{name}: {len(instances)} instances"
    for instance in instances:
        plain = spell(instance)
        compare(tally, schema, program, slow, plain)
        compare(tally, schema, program, slow, spell(instance, rnd))
        for mutant in mutants(instance, rnd, 6):
            compare(tally, schema, program, slow, spell(mutant, rnd))
        for _ in range(3):
            compare(tally, schema, program, slow, damaged(plain, rnd))
    for _ in range(5):
        compare(tally, schema, program, slow, rnd.randbytes(rnd.randrange(12)))
    _NOTES.extend(f"{name}: {d}" for d in tally.divergences)
    assert not tally.problems, "\n".join(tally.problems[:10])


@settings(
    max_examples=400, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
@given(st.binary(max_size=48), st.sampled_from(sorted(GENERATED)))
def test_arbitrary_bytes(data: bytes, name: str) -> None:
    schema = GENERATED[name]
    tally = Tally(Counter(), [], [])
    compare(tally, schema, fast(schema), slow_path(schema), data)
    assert not tally.problems, tally.problems


# -- reads stay inside the buffer -------------------------------------------------------------


_EDGE_SCHEMAS = [
    GENERATED[k]
    for k in (
        "tag",
        "object",
        "length-ascii",
        "date-time",
        "uuid",
        "byte",
        "pattern-sku",
        "enum-string",
        "int64-max",
        "num-int",
        "recursive",
    )
]


def guarded_checks(at_end: bool) -> int:
    """Run by test_no_read_outside_the_buffer in a child process: each edge schema's
    program checks table documents and every prefix and suffix of them flush against
    an unreadable page, and must decide as on the same bytes in an ordinary buffer.
    Returns how many checks were made."""
    rnd = random.Random(5)
    docs = [as_bytes(c.doc) for c in CASES if len(as_bytes(c.doc)) < 300]
    checked = 0
    with guard_pages() as start:
        for schema in _EDGE_SCHEMAS:
            program = fast(schema)
            for data in docs:
                for cut in range(len(data) + 1):
                    if rnd.random() >= 0.7:
                        continue
                    for piece in (data[:cut], data[len(data) - cut :]):
                        got = program.check(flush(start, piece, at_end))
                        assert got is program.check(piece), (schema, piece, at_end)
                        checked += 1
    return checked


@needs_mprotect
@pytest.mark.parametrize("at_end", [True, False])
def test_no_read_outside_the_buffer(at_end: bool) -> None:
    # In a child process: a read past the buffer is a segfault there, and fails this test.
    assert run_isolated("test_fastcheck", "guarded_checks", at_end) > 10_000


# -- the public specs ---------------------------------------------------------------------------

SPEC_SOURCES = ("github", "kubernetes", "stripe-form")
# Distinct body schemas differential-tested per source (spread over the spec), at most
# this size (hypothesis-jsonschema inlines every $ref before generating).
SPEC_SAMPLE = {"github": 60, "kubernetes": 20, "stripe-form": 30}
SPEC_SIZE_CAP = 12_000


def _spec_bodies(name: str) -> list[Any]:
    """The distinct bundled JSON body schemas of a spec (Stripe: its form bodies as JSON)."""
    spec = load_spec(spec_path(name.removesuffix("-form")))
    bundler = Bundler(spec)
    out: dict[bytes, Any] = {}
    for op in spec.operations:
        if name == "stripe-form":
            body = op.request_body
            content = body.get("content") if isinstance(body, dict) else None
            for media_type, media in (content or {}).items():
                if "form" in media_type and isinstance(media, dict) and "schema" in media:
                    where = join(op.request_body_pointer, "content", media_type, "schema")
                    file = op.request_body_file or op.file or spec.source
                    schema = bundler.bundle(media["schema"], file, where)
                    out.setdefault(json.dumps(schema, sort_keys=True).encode(), schema)
            continue
        ov = compile_operation(spec, op, bundler)
        found = [v for m, v in ov.bodies.items() if v is not None and is_json(m)]
        found += [v for _, v in ov.wildcards if v is not None]
        for validator in found:
            out.setdefault(json.dumps(validator.schema, sort_keys=True).encode(), validator.schema)
    return list(out.values())


@pytest.mark.specs
@pytest.mark.parametrize("name", SPEC_SOURCES)
def test_public_spec_bodies(name: str, route_notes: Callable[[str], None]) -> None:
    start = time.perf_counter()
    bodies = _spec_bodies(name)
    programs: list[tuple[Any, Program]] = []
    why: Counter[str] = Counter()
    for schema in bodies:
        try:
            # The program the gateway compiles (allOf merged), judged by the schema as given.
            programs.append((schema, compile_fast_or_raise(merge_all_of(schema))))
        except Unsupported as exc:
            why[str(exc).split(":")[0][:60]] += 1
    share = len(programs) / len(bodies)
    line = (
        f"fastcheck {name}: {len(programs)} of {len(bodies)} distinct JSON body schemas "
        f"compile to the fast path ({share:.0%})"
    )
    if why:
        line += "; not: " + ", ".join(f"{k} ({n})" for k, n in why.most_common(6))
    tally = Tally(Counter(), [], [])
    small = [(s, p) for s, p in programs if len(json.dumps(s)) <= SPEC_SIZE_CAP]
    step = max(1, -(-len(small) // SPEC_SAMPLE[name]))
    rnd = random.Random(name)
    for schema, program in small[::step]:
        slow = slow_path(schema)
        for instance in generate(schema, 3):
            tally.counts["instances"] += 1
            got = compare(tally, schema, program, slow, spell(instance, rnd))
            if not got:
                tally.counts["instances refused"] += 1
            for mutant in mutants(instance, rnd, 4):
                compare(tally, schema, program, slow, spell(mutant, rnd))
    line += (
        f"; {tally.counts['instances']} generated instances and "
        f"{tally.counts['documents'] - tally.counts['instances']} mutants over "
        f"{len(small[::step])} schemas: {len(tally.divergences)} divergences from the "
        f"msgspec path, {time.perf_counter() - start:.1f} s"
    )
    route_notes(line)
    print(line)
    for d in tally.divergences[:10]:
        route_notes(f"  {name} divergence: {d}")
    _NOTES.extend(f"{name}: {d}" for d in tally.divergences)
    assert not tally.problems, "\n".join(tally.problems[:10])
    if name != "stripe-form":
        assert share >= 0.9
    assert tally.counts["instances"] > 0


def test_zz_divergences_seen(route_notes: Callable[[str], None]) -> None:
    """Lists (in the run's summary) the documents on which the two paths differ."""
    for line in _NOTES[:40]:
        route_notes(f"fastcheck divergence {line}")


@pytest.mark.parametrize("length", [1, 14, 15, 16, 17, 30, 63, 64, 65, 96, 127, 128, 200, 300, 520])
def test_long_strings_are_read_whole_wherever_their_special_bytes_are(length: int) -> None:
    """Strings of 64 bytes and more are scanned in wide rounds (AVX2 where the CPU has
    it), short ones first by a 16-byte probe for their closing quote: a quote, an
    escape, a control or a non-ASCII byte is found at every offset of a round and of
    the tail, and a string with none is read to its end."""
    program, slow = fast({"type": "string"}), slow_path({"type": "string"})
    objects = fast({"type": "object", "properties": {"s": {"type": "string", "maxLength": 300}}})
    assert slow is not None
    pieces = [b'\\"', b"\\\\", b"\\n", b"\\u00e9", b"\xc3\xa9", b"\x01", b'"', b"\xff"]
    for at in range(length):
        for piece in pieces:
            text = b"a" * at + piece + b"b" * (length - at)
            document = b'"' + text + b'"'
            assert program.check(document) == slow(document), (at, piece)
            wrapped = b'{"s":' + document + b',"t":1}'
            expected = slow(document) and len(json.loads(document)) <= 300
            assert objects.check(wrapped) == expected, (at, piece)
    assert program.check(b'"' + b"x" * length + b'"')
    assert not program.check(b'"' + b"x" * length)  # no closing quote
    # Every plain byte, '"' and backslash apart: none is taken for a special one (the
    # 128-byte rounds find '"' and backslash by their low 4 bits, as "2", "b", "<", "|").
    plain = bytes(c for c in range(0x20, 0x7F) if c not in b'"\\')
    text = (plain * (length // len(plain) + 1))[:length]
    assert program.check(b'"' + text + b'"')
    assert objects.check(b'{"s":"' + text[:300] + b'","t":1}')
