"""Conformance table: each JSON Schema keyword the validation compiler handles, row by row.

A row is (schema, instance, valid?, pointer of the error). Every row is
checked four ways:

- `decision`: `SchemaValidator.check_json` accepts exactly the valid rows;
- `pointer`: for an invalid row, the issues name the expected pointer;
- `reference`: `jsonschema.Draft202012Validator`, with an independent
  format checker written here (RFC 3339 / RFC 4122 / RFC 4648 by regex and
  calendar arithmetic, not msgspec), agrees on validity;
- `fallback`: msgspec-native keywords compile with no fallback node, the
  fallback keywords (`not`, `if`, `uniqueItems`, ...) with one.

Where the gateway differs from JSON Schema on purpose (msgspec's RFC 3339
reading, JSON `1.0` is not an integer, the OpenAPI discriminator picks one
variant where `oneOf` would try them all), the row says so with
`reference=<what jsonschema decides>` and a comment: the difference is
asserted, not skipped. Bugs found in the code under test are rows marked
`xfail(strict=True)` naming the bug.

OpenAPI 3.0 rows (`nullable`, boolean `exclusiveMinimum`, `$ref` siblings,
`readOnly` in `required`) go through an in-memory spec, `Bundler` and
`compile_operation`, as the gateway compiles them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator, FormatChecker

from runmcp_fast.openapi import load_spec_data
from runmcp_fast.validation import Bundler, SchemaValidator, compile_operation, compile_schema

# -- the independent reference format checker ---------------------------------------------
#
# Written from the RFCs, deliberately not from msgspec (the gateway's own
# FORMAT_CHECKER defines the formats *by* msgspec, so it can not judge it).

_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_TIME = re.compile(
    r"([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]+)?(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def rfc3339_full_date(text: str) -> bool:
    """RFC 3339 section 5.6 `full-date`, with the section 5.7 day-of-month limits."""
    m = _DATE.fullmatch(text)
    if m is None:
        return False
    year, month, day = (int(g) for g in m.groups())
    if not 1 <= month <= 12:
        return False
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return 1 <= day <= _DAYS[month - 1] + (month == 2 and leap)


def rfc3339_full_time(text: str) -> bool:
    """RFC 3339 `full-time`: the offset is required; a leap second only at 23:59 UTC."""
    m = _TIME.fullmatch(text)
    if m is None:
        return False
    hour, minute, second = int(m[1]), int(m[2]), int(m[3])
    if m[4]:
        sign, off_h, off_m = 1, 0, 0
    else:
        sign, off_h, off_m = (1 if m[5] == "+" else -1), int(m[6]), int(m[7])
        if off_h > 23 or off_m > 59:
            return False
    if hour > 23 or minute > 59 or second > 60:
        return False
    if second == 60:
        utc = (hour * 60 + minute - sign * (off_h * 60 + off_m)) % (24 * 60)
        return utc == 23 * 60 + 59
    return True


def rfc3339_date_time(text: str) -> bool:
    """`full-date "T" full-time`; the section 5.6 note allows a lower-case `t` (and `z`)."""
    return (
        len(text) > 11
        and text[10] in "Tt"
        and rfc3339_full_date(text[:10])
        and rfc3339_full_time(text[11:])
    )


def rfc4122_uuid(text: str) -> bool:
    """The RFC 4122 string form: 8-4-4-4-12 hex digits, any case, nothing around them."""
    return _UUID.fullmatch(text) is not None


def rfc4648_base64(text: str) -> bool:
    """OpenAPI `byte`: RFC 4648 base64, standard alphabet, padded, no whitespace."""
    return _BASE64.fullmatch(text) is not None


REFERENCE_FORMATS = FormatChecker(formats=())
"""The formats the gateway asserts, checked independently of msgspec."""


def _string_format(check: Any) -> Any:
    def checker(value: object) -> bool:
        return not isinstance(value, str) or bool(check(value))

    return checker


for _name, _check in (
    ("date-time", rfc3339_date_time),
    ("date", rfc3339_full_date),
    ("time", rfc3339_full_time),
    ("uuid", rfc4122_uuid),
    ("byte", rfc4648_base64),
):
    REFERENCE_FORMATS.checks(_name)(_string_format(_check))


def reference_validator(schema: Any) -> Draft202012Validator:
    """The reference: jsonschema's 2020-12 validator with the independent formats."""
    return Draft202012Validator(schema, format_checker=REFERENCE_FORMATS)


def encode(instance: Any) -> bytes:
    """JSON text of `instance`; orjson refuses integers beyond 64 bits, the json module does not."""
    try:
        return orjson.dumps(instance)
    except orjson.JSONEncodeError:
        return json.dumps(instance, ensure_ascii=False, allow_nan=False).encode()


# -- OpenAPI 3.0 schemas, compiled the way the gateway compiles them ----------------------


def compile_oas30(schema: Any, components: dict[str, Any]) -> SchemaValidator:
    """`schema` as the JSON request body of the one operation of an OpenAPI 3.0.3 spec."""
    spec = load_spec_data(
        {
            "openapi": "3.0.3",
            "info": {"title": "conformance", "version": "1"},
            "paths": {
                "/t": {
                    "post": {
                        "operationId": "t",
                        "requestBody": {
                            "required": True,
                            "content": {"application/json": {"schema": schema}},
                        },
                        "responses": {"200": {"description": "ok"}},
                    }
                }
            },
            "components": {"schemas": components},
        }
    )
    assert spec.warnings == ()
    (op,) = spec.operations
    validator = compile_operation(spec, op, Bundler(spec)).bodies["application/json"]
    assert validator is not None
    return validator


# -- the table ------------------------------------------------------------------------------

CONST_IGNORES_ENUM = None  # fixed
ENUM_MERGE_BOOL_IS_INT = None  # fixed
DISCRIMINATOR_SIBLING = None  # fixed
EXPLAIN_BEST_MATCH = None  # fixed
EXPLAIN_IGNORES_DISCRIMINATOR = None  # fixed
MSGSPEC_REQUIRED_POINTER = None  # fixed
REQUIRED_BUT_CLOSED = None  # fixed
IMPLICIT_TAG_SANITISED = None  # fixed
DATETIME_RANGE = None  # the byte checker follows RFC 3339 here
DATETIME_BASIC_OFFSET = (
    "Known difference (docs/validation.md): msgspec accepts the ISO 8601 basic offset `+0530`; RFC 3339 "
    "`time-numoffset` is `+05:30` only; formats.py documents only the space and :60"
)
UUID_TRAILING_NEWLINE = None  # fixed


@dataclass(frozen=True)
class Row:
    id: str
    keyword: str
    """The keyword the row is about (the table's coverage is checked per keyword)."""
    schema: Any
    instance: Any
    valid: bool
    pointer: str | tuple[str, ...] | None = None
    """For an invalid row: the pointer our issues must include (or one of them)."""
    fallback: str | None = None
    """None: compiled natively. Else a substring of the expected Fallback.keyword."""
    oas30: dict[str, Any] | None = None
    """Components of an OpenAPI 3.0 spec: the schema goes through Bundler."""
    reference: bool | None = None
    """What the reference validator decides, when it differs from us by design."""
    bugs: tuple[tuple[str, str | None], ...] = ()
    """(check, reason) pairs: that check of this row is a known bug, xfail(strict)."""


ROWS: list[Row] = []


def row(
    id: str,
    keyword: str,
    schema: Any,
    instance: Any,
    valid: bool,
    pointer: str | tuple[str, ...] | None = None,
    *,
    fallback: str | None = None,
    oas30: dict[str, Any] | None = None,
    reference: bool | None = None,
    bugs: tuple[tuple[str, str | None], ...] = (),
) -> None:
    assert valid or pointer is not None, id
    ROWS.append(
        Row(id, keyword, schema, instance, valid, pointer, fallback, oas30, reference, bugs)
    )


# The rows are a table: one per line, however long.
# fmt: off
# type ------------------------------------------------------------------------------------
INT = {"type": "integer"}
row("integer", "type", INT, 5, True)
row("integer-negative", "type", INT, -5, True)
row("integer-beyond-64-bits", "type", INT, 10**30, True)
row("integer-string", "type", INT, "5", False, "/body")
row("integer-fraction", "type", INT, 5.5, False, "/body")
row("integer-bool", "type", INT, True, False, "/body")
# Documented: msgspec decodes the JSON number 1.0 as a float and refuses it as an
# integer; JSON Schema counts any number with a zero fraction as an integer.
row("integer-1.0-by-design", "type", INT, 1.0, False, "/body", reference=True)
row("number-int", "type", {"type": "number"}, 5, True)
row("number-float", "type", {"type": "number"}, 5.5, True)
row("number-big-int", "type", {"type": "number"}, 10**30, True)
row("number-string", "type", {"type": "number"}, "5", False, "/body")
row("number-bool", "type", {"type": "number"}, False, False, "/body")
row("string", "type", {"type": "string"}, "a", True)
row("string-int", "type", {"type": "string"}, 1, False, "/body")
row("boolean", "type", {"type": "boolean"}, True, True)
row("boolean-int", "type", {"type": "boolean"}, 0, False, "/body")
row("null", "type", {"type": "null"}, None, True)
row("null-zero", "type", {"type": "null"}, 0, False, "/body")
row("array", "type", {"type": "array"}, [1, "a"], True)
row("array-object", "type", {"type": "array"}, {}, False, "/body")
row("object", "type", {"type": "object"}, {"a": [1]}, True)
row("object-array", "type", {"type": "object"}, [], False, "/body")
TYPES = {"type": ["integer", "string", "null"]}
row("list-int", "type", TYPES, 1, True)
row("list-string", "type", TYPES, "1", True)
row("list-null", "type", TYPES, None, True)
row("list-float", "type", TYPES, 1.5, False, "/body")
row("list-number-integer", "type", {"type": ["number", "integer"]}, 1.5, True)
row("no-type-anything", "type", {}, {"a": [None, 1.5]}, True)
# Without a `type`, each keyword constrains only its own kind.
row("no-type-minLength-int", "type", {"minLength": 2}, 5, True)
row("no-type-minLength-string", "type", {"minLength": 2}, "a", False, "/body")
NESTED = {
    "type": "object",
    "properties": {"a": {"type": "array", "items": {"type": "integer"}}},
}
row("nested-item", "type", NESTED, {"a": [1, "x"]}, False, "/body/a/1")

# nullable (OpenAPI 3.0) ------------------------------------------------------------------
NULLABLE = {"type": "string", "nullable": True}
row("nullable-null", "nullable", NULLABLE, None, True, oas30={})
row("nullable-string", "nullable", NULLABLE, "a", True, oas30={})
row("nullable-int", "nullable", NULLABLE, 1, False, "/body", oas30={})
row("not-nullable-null", "nullable", {"type": "string"}, None, False, "/body", oas30={})
NULLABLE_ENUM = {"type": "string", "enum": ["a", "b"], "nullable": True}
row("nullable-enum-null", "nullable", NULLABLE_ENUM, None, True, oas30={})
row("nullable-enum-other", "nullable", NULLABLE_ENUM, "c", False, "/body", oas30={})
NULLABLE_PROP = {
    "type": "object",
    "properties": {"note": {"type": "string", "nullable": True, "maxLength": 2}},
}
row("nullable-property-null", "nullable", NULLABLE_PROP, {"note": None}, True, oas30={})
row("nullable-property-long", "nullable", NULLABLE_PROP, {"note": "abc"}, False, "/body/note", oas30={})
# OpenAPI 3.0: the siblings of a $ref are ignored, `nullable` included.
REF_SIBLING = {"$ref": "#/components/schemas/S", "nullable": True}
row("nullable-beside-ref-ignored", "nullable", REF_SIBLING, None, False, "/body", oas30={"S": {"type": "string"}})
# Requests: a readOnly property is not required (OpenAPI: required applies to responses only).
READ_ONLY = {
    "type": "object",
    "required": ["id", "name"],
    "properties": {"id": {"type": "integer", "readOnly": True}, "name": {"type": "string"}},
}
row("readOnly-not-required", "required", READ_ONLY, {"name": "x"}, True, oas30={})
row("readOnly-other-required", "required", READ_ONLY, {"id": 1}, False, "/body/name", oas30={})

# required / properties ------------------------------------------------------------------
REQ = {"type": "object", "required": ["a"], "properties": {"a": {"type": "string"}}}
row("required-present", "required", REQ, {"a": "x"}, True)
row("required-missing", "required", REQ, {}, False, "/body/a")
row("required-missing-nested", "required", {"type": "object", "properties": {"o": REQ}}, {"o": {"b": 1}}, False, "/body/o/a")
row("required-without-properties", "required", {"type": "object", "required": ["a"]}, {"a": None}, True)
row("required-without-properties-missing", "required", {"type": "object", "required": ["a"]}, {"b": 1}, False, "/body/a")
row("properties-type", "properties", REQ, {"a": 1}, False, "/body/a")
row("properties-unknown-allowed", "properties", REQ, {"a": "x", "b": 1}, True)
ESCAPED = {"type": "object", "properties": {"a/b": {"type": "integer"}, "c~d": INT}}
row("properties-slash-escaped", "properties", ESCAPED, {"a/b": "x"}, False, "/body/a~1b")
row("properties-tilde-escaped", "properties", ESCAPED, {"c~d": "x"}, False, "/body/c~0d")
row("properties-escaped-valid", "properties", ESCAPED, {"a/b": 1, "c~d": 2}, True)

# additionalProperties ---------------------------------------------------------------------
OPEN = {"type": "object", "properties": {"a": INT}, "additionalProperties": True}
CLOSED = {"type": "object", "properties": {"a": INT}, "additionalProperties": False}
MAP = {"type": "object", "additionalProperties": INT}
row("additional-true", "additionalProperties", OPEN, {"a": 1, "b": "x"}, True)
row("additional-false-known", "additionalProperties", CLOSED, {"a": 1}, True)
row("additional-false-unknown", "additionalProperties", CLOSED, {"a": 1, "b": 2}, False, "/body/b")
row("required-not-in-closed-properties", "additionalProperties", {"type": "object", "properties": {"a": {}}, "required": ["b"], "additionalProperties": False}, {"b": 1}, False, "/body/b", fallback="required names a property it forbids")
row("additional-false-empty", "additionalProperties", {"type": "object", "additionalProperties": False}, {"x": 1}, False, "/body/x")
row("additional-schema-map", "additionalProperties", MAP, {"x": 1, "y": 2}, True)
row("additional-schema-map-bad", "additionalProperties", MAP, {"x": 1, "y": "2"}, False, "/body/y")
# Beside `properties`, an additionalProperties schema is a fallback (a Struct has no
# "other fields" type).
MIXED = {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": INT}
row("additional-schema-beside-properties", "additionalProperties", MIXED, {"a": "s", "b": 1}, True, fallback="additionalProperties")
row("additional-schema-beside-properties-bad", "additionalProperties", MIXED, {"a": "s", "b": "t"}, False, "/body/b", fallback="additionalProperties")

# enum / const -------------------------------------------------------------------------
row("enum-string", "enum", {"enum": ["a", "b"]}, "a", True)
row("enum-string-other", "enum", {"enum": ["a", "b"]}, "c", False, "/body")
row("enum-int", "enum", {"enum": [1, 2]}, 2, True)
row("enum-int-other", "enum", {"enum": [1, 2]}, 3, False, "/body")
row("enum-int-string", "enum", {"enum": [1, 2]}, "1", False, "/body")
row("enum-int-bool", "enum", {"enum": [1, 2]}, True, False, "/body")
# Documented: JSON 1.0 is not the integer 1 for msgspec (Literal[1]).
row("enum-int-1.0-by-design", "enum", {"enum": [1, 2]}, 1.0, False, "/body", reference=True)
row("enum-null", "enum", {"enum": ["a", None]}, None, True)
row("enum-typed-filters", "enum", {"type": "string", "enum": ["a", 1]}, 1, False, "/body")
row("enum-typed-keeps", "enum", {"type": "string", "enum": ["a", 1]}, "a", True)
row("enum-in-property", "enum", {"type": "object", "properties": {"s": {"enum": ["x"]}}}, {"s": "y"}, False, "/body/s")
FLOAT_ENUM = {"enum": [1.5, "a"]}
row("enum-float", "enum", FLOAT_ENUM, 1.5, True, fallback="enum of other")
row("enum-float-other", "enum", FLOAT_ENUM, 2.5, False, "/body", fallback="enum of other")
row("const-string", "const", {"const": "x"}, "x", True)
row("const-string-other", "const", {"const": "x"}, "y", False, "/body")
row("const-zero", "const", {"const": 0}, 0, True)
row("const-zero-false", "const", {"const": 0}, False, False, "/body")
row("const-null", "const", {"const": None}, None, True)
row("const-null-other", "const", {"const": None}, 0, False, "/body")
row("const-object", "const", {"const": {"a": 1}}, {"a": 1}, True, fallback="enum of other")
row("const-object-other", "const", {"const": {"a": 1}}, {"a": 2}, False, "/body", fallback="enum of other")
CONST_ENUM = {"const": "a", "enum": ["b", "c"]}
# A const outside its enum: nothing is valid, which msgspec can not say; the fallback does.
row("const-beside-enum", "const", CONST_ENUM, "a", False, "/body", fallback="const outside its enum")
row("const-beside-enum-in-enum", "const", CONST_ENUM, "b", False, "/body", fallback="const outside its enum")

# numeric bounds -----------------------------------------------------------------------------
RANGE = {"type": "integer", "minimum": 1, "maximum": 10}
row("minimum-equal", "minimum", RANGE, 1, True)
row("minimum-below", "minimum", RANGE, 0, False, "/body")
row("maximum-equal", "maximum", RANGE, 10, True)
row("maximum-above", "maximum", RANGE, 11, False, "/body")
row("maximum-above-64-bits", "maximum", RANGE, 10**30, False, "/body")
row("minimum-big-valid", "minimum", {"type": "integer", "minimum": 0}, 10**30, True)
OPEN_RANGE = {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}
row("exclusive-inside", "exclusiveMinimum", OPEN_RANGE, 0.5, True)
row("exclusiveMinimum-equal", "exclusiveMinimum", OPEN_RANGE, 0, False, "/body")
row("exclusiveMaximum-equal", "exclusiveMaximum", OPEN_RANGE, 1, False, "/body")
# Integer bounds that are fractions: 0.5 <= n is 1 <= n.
row("integer-minimum-fraction", "minimum", {"type": "integer", "minimum": 0.5}, 1, True)
row("integer-minimum-fraction-below", "minimum", {"type": "integer", "minimum": 0.5}, 0, False, "/body")
row("integer-exclusiveMaximum-fraction", "exclusiveMaximum", {"type": "integer", "exclusiveMaximum": 2.5}, 2, True)
row("integer-exclusiveMaximum-fraction-above", "exclusiveMaximum", {"type": "integer", "exclusiveMaximum": 2.5}, 3, False, "/body")
row("number-maximum-big-int", "maximum", {"type": "number", "maximum": 10}, 10**30, False, "/body")
# OpenAPI 3.0 boolean style.
EXCL_MIN_30 = {"type": "number", "minimum": 0, "exclusiveMinimum": True}
EXCL_MAX_30 = {"type": "integer", "maximum": 10, "exclusiveMaximum": True}
row("oas30-exclusiveMinimum-true-equal", "exclusiveMinimum", EXCL_MIN_30, 0, False, "/body", oas30={})
row("oas30-exclusiveMinimum-true-above", "exclusiveMinimum", EXCL_MIN_30, 0.1, True, oas30={})
row("oas30-exclusiveMaximum-true-equal", "exclusiveMaximum", EXCL_MAX_30, 10, False, "/body", oas30={})
row("oas30-exclusiveMaximum-true-below", "exclusiveMaximum", EXCL_MAX_30, 9, True, oas30={})
EXCL_FALSE_30 = {"type": "number", "minimum": 0, "exclusiveMinimum": False}
row("oas30-exclusiveMinimum-false-equal", "exclusiveMinimum", EXCL_FALSE_30, 0, True, oas30={})
row("oas30-exclusiveMinimum-false-below", "exclusiveMinimum", EXCL_FALSE_30, -1, False, "/body", oas30={})
# RFC 8259 lets a parser limit the range of numbers: msgspec refuses 1e400 rather
# than read it as infinity; Python's json (and so jsonschema) reads inf, a number.
row("number-beyond-double", "type", {"type": "number"}, float("inf"), False, "/body", reference=True)

# multipleOf --------------------------------------------------------------------------------
row("multipleOf-int", "multipleOf", {"type": "integer", "multipleOf": 3}, 9, True)
row("multipleOf-int-not", "multipleOf", {"type": "integer", "multipleOf": 3}, 10, False, "/body")
row("multipleOf-int-big", "multipleOf", {"type": "integer", "multipleOf": 3}, 3 * 10**30, True)
row("multipleOf-float", "multipleOf", {"type": "number", "multipleOf": 2.5}, 7.5, True)
row("multipleOf-float-not", "multipleOf", {"type": "number", "multipleOf": 2.5}, 7.6, False, "/body")
row("multipleOf-float-int-instance", "multipleOf", {"type": "number", "multipleOf": 0.5}, 3, True)
# An integer that must be a multiple of a fraction: msgspec's Meta takes none, fallback.
INT_FRACTION = {"type": "integer", "multipleOf": 1.5}
row("multipleOf-integer-fraction", "multipleOf", INT_FRACTION, 3, True, fallback="fractional multipleOf")
row("multipleOf-integer-fraction-not", "multipleOf", INT_FRACTION, 4, False, "/body", fallback="fractional multipleOf")

# strings -----------------------------------------------------------------------------------
LENGTHS = {"type": "string", "minLength": 2, "maxLength": 3}
row("minLength-ok", "minLength", LENGTHS, "ab", True)
row("minLength-short", "minLength", LENGTHS, "a", False, "/body")
row("maxLength-long", "maxLength", LENGTHS, "abcd", False, "/body")
# Lengths count code points, not UTF-16 units or bytes.
row("minLength-astral", "minLength", LENGTHS, "\U0001f600\U0001f600", True)
row("maxLength-astral", "maxLength", LENGTHS, "\U0001f600" * 4, False, "/body")
row("maxLength-accents", "maxLength", LENGTHS, "\u00e9\u00e9\u00e9", True)
PATTERN = {"type": "string", "pattern": "^[a-z]+$"}
row("pattern-ok", "pattern", PATTERN, "abc", True)
row("pattern-bad", "pattern", PATTERN, "ab1", False, "/body")
row("pattern-unanchored", "pattern", {"type": "string", "pattern": "b"}, "abc", True)
row("pattern-unanchored-miss", "pattern", {"type": "string", "pattern": "b"}, "acd", False, "/body")

# arrays ------------------------------------------------------------------------------------
ITEMS = {"type": "array", "minItems": 1, "maxItems": 2, "items": INT}
row("minItems-ok", "minItems", ITEMS, [1], True)
row("minItems-empty", "minItems", ITEMS, [], False, "/body")
row("maxItems-equal", "maxItems", ITEMS, [1, 2], True)
row("maxItems-over", "maxItems", ITEMS, [1, 2, 3], False, "/body")
row("items-ok", "items", ITEMS, [1, 2], True)
row("items-bad", "items", ITEMS, [1, "a"], False, "/body/1")
row("items-nested", "items", {"type": "array", "items": NESTED}, [{"a": [1]}, {"a": [2, None]}], False, "/body/1/a/1")
row("items-false-empty", "items", {"type": "array", "items": False}, [], True, fallback="false")
row("items-false-one", "items", {"type": "array", "items": False}, [1], False, "/body", fallback="false")

# allOf -------------------------------------------------------------------------------------
ALL_OF = {
    "allOf": [
        {"type": "object", "properties": {"a": INT}, "required": ["a"]},
        {"properties": {"b": {"type": "string"}}, "required": ["b"]},
    ]
}
row("allOf-merged", "allOf", ALL_OF, {"a": 1, "b": "x"}, True)
row("allOf-merged-missing", "allOf", ALL_OF, {"a": 1}, False, "/body/b")
row("allOf-merged-type", "allOf", ALL_OF, {"a": "1", "b": "x"}, False, "/body/a")
SAME_PROP = {
    "allOf": [
        {"properties": {"a": {"type": "integer", "minimum": 0}}},
        {"properties": {"a": {"maximum": 5}}},
    ]
}
row("allOf-same-property", "allOf", SAME_PROP, {"a": 3}, True)
row("allOf-same-property-above", "allOf", SAME_PROP, {"a": 6}, False, "/body/a")
row("allOf-same-property-below", "allOf", SAME_PROP, {"a": -1}, False, "/body/a")
ALL_OF_REF = {
    "allOf": [{"$ref": "#/$defs/Base"}, {"required": ["extra"]}],
    "$defs": {"Base": {"type": "object", "properties": {"id": INT}, "required": ["id"]}},
}
row("allOf-ref", "allOf", ALL_OF_REF, {"id": 1, "extra": 0}, True)
row("allOf-ref-missing", "allOf", ALL_OF_REF, {"extra": 0}, False, "/body/id")
ENUMS = {"allOf": [{"enum": ["a", "b"]}, {"enum": ["b", "c"]}]}
row("allOf-enum-intersection", "allOf", ENUMS, "b", True)
row("allOf-enum-intersection-outside", "allOf", ENUMS, "a", False, "/body")
BOOL_INT = {"allOf": [{"enum": [1, "a"]}, {"enum": [True, "a"]}]}
row("allOf-enum-bool-vs-int", "allOf", BOOL_INT, 1, False, "/body", bugs=(("decision", ENUM_MERGE_BOOL_IS_INT), ("pointer", ENUM_MERGE_BOOL_IS_INT)))
row("allOf-enum-bool-vs-int-common", "allOf", BOOL_INT, "a", True)
row("allOf-const-enum", "allOf", {"allOf": [{"const": "a"}, {"enum": ["b", "c"]}]}, "a", False, "/body", fallback="const outside its enum")
# Conflicting branches do not merge into one schema: fallback.
row("allOf-conflict-types", "allOf", {"allOf": [{"type": "string"}, INT]}, "a", False, "/body", fallback="no type in common")
row("allOf-conflict-types-int", "allOf", {"allOf": [{"type": "string"}, INT]}, 1, False, "/body", fallback="no type in common")
PATTERNS = {"allOf": [{"pattern": "^a"}, {"pattern": "b$"}]}
row("allOf-two-patterns", "allOf", PATTERNS, "ab", True, fallback="two values for pattern")
row("allOf-two-patterns-bad", "allOf", PATTERNS, "ac", False, "/body", fallback="two values for pattern")
CLOSED_MERGE = {
    "allOf": [
        {"type": "object", "properties": {"a": {}}, "additionalProperties": False},
        {"properties": {"b": {}}},
    ]
}
row("allOf-closed-branch", "allOf", CLOSED_MERGE, {"a": 1}, True, fallback="additionalProperties: false")
row("allOf-closed-branch-other", "allOf", CLOSED_MERGE, {"b": 1}, False, "/body/b", fallback="additionalProperties: false")

# oneOf / anyOf with a discriminator ---------------------------------------------------------
PETS = {
    "Cat": {
        "type": "object",
        "required": ["kind", "meow"],
        "properties": {"kind": {"type": "string"}, "meow": {"type": "boolean"}},
    },
    "Dog": {
        "type": "object",
        "required": ["kind", "bark"],
        "properties": {"kind": {"type": "string"}, "bark": INT},
    },
}
PET_REFS = [{"$ref": "#/$defs/Cat"}, {"$ref": "#/$defs/Dog"}]
PET = {"oneOf": PET_REFS, "discriminator": {"propertyName": "kind"}, "$defs": PETS}
row("discriminator-cat", "discriminator", PET, {"kind": "Cat", "meow": True}, True)
row("discriminator-dog-bad", "discriminator", PET, {"kind": "Dog", "bark": "loud"}, False, "/body/bark", bugs=(("pointer", EXPLAIN_IGNORES_DISCRIMINATOR),))
row("discriminator-missing-tag", "discriminator", PET, {"meow": True}, False, "/body/kind")
# By design: an unknown tag is refused, though plain oneOf finds a valid Cat.
row("discriminator-unknown-tag", "discriminator", PET, {"kind": "Bird", "meow": True}, False, "/body/kind", reference=True)
# By design: the tag picks the variant. {"kind": "Cat", "bark": 1} is a valid Dog for
# plain oneOf, but the discriminator says Cat, and a Cat needs `meow`.
row("discriminator-tag-decides", "discriminator", PET, {"kind": "Cat", "bark": 1}, False, "/body/meow", reference=True, bugs=(("pointer", MSGSPEC_REQUIRED_POINTER),))
ANY_PET = {"anyOf": PET_REFS, "discriminator": {"propertyName": "kind"}, "$defs": PETS}
row("discriminator-anyOf", "discriminator", ANY_PET, {"kind": "Dog", "bark": 2}, True)
# By design: the Dog tag needs a bark; plain anyOf takes it as a Cat.
row("discriminator-anyOf-bad", "discriminator", ANY_PET, {"kind": "Dog", "meow": True}, False, "/body/bark", reference=True, bugs=(("pointer", MSGSPEC_REQUIRED_POINTER),))
TWINS = {
    "oneOf": [{"$ref": "#/$defs/A"}, {"$ref": "#/$defs/B"}],
    "discriminator": {"propertyName": "kind"},
    "$defs": {
        "A": {"type": "object", "required": ["kind"], "properties": {"kind": {"type": "string"}, "n": INT}},
        "B": {"type": "object", "required": ["kind"], "properties": {"kind": {"type": "string"}, "n": INT}},
    },
}
# By design: both variants match, which plain oneOf refuses; the discriminator picks A.
row("discriminator-both-match", "discriminator", TWINS, {"kind": "A", "n": 1}, True, reference=False)
MAPPED = {
    "oneOf": PET_REFS,
    "discriminator": {
        "propertyName": "kind",
        "mapping": {"cat": "#/$defs/Cat", "dog": "#/$defs/Dog"},
    },
    "$defs": PETS,
}
row("discriminator-mapping", "discriminator", MAPPED, {"kind": "cat", "meow": False}, True)
row("discriminator-mapping-bad", "discriminator", MAPPED, {"kind": "dog", "bark": 1.5}, False, "/body/bark", bugs=(("pointer", EXPLAIN_IGNORES_DISCRIMINATOR),))
# By design: with a mapping, the schema's own name is not a tag (OpenAPI: the mapping
# replaces the implicit value); plain oneOf finds the Cat valid.
row("discriminator-mapping-implicit-name", "discriminator", MAPPED, {"kind": "Cat", "meow": True}, False, "/body/kind", reference=True)
MAPPED_30 = {
    "oneOf": [{"$ref": "#/components/schemas/Cat"}, {"$ref": "#/components/schemas/Dog"}],
    "discriminator": {"propertyName": "kind", "mapping": {"c": "Cat", "d": "#/components/schemas/Dog"}},
}
row("oas30-discriminator-short-mapping", "discriminator", MAPPED_30, {"kind": "c", "meow": True}, True, oas30=PETS)
row("oas30-discriminator-short-mapping-bad", "discriminator", MAPPED_30, {"kind": "d", "meow": True}, False, "/body/bark", oas30=PETS, reference=True, bugs=(("pointer", MSGSPEC_REQUIRED_POINTER),))
row("oas30-discriminator-short-mapping-bad-member", "discriminator", MAPPED_30, {"kind": "d", "bark": "x"}, False, "/body/bark", oas30=PETS, bugs=(("pointer", EXPLAIN_IGNORES_DISCRIMINATOR),))
# OpenAPI: without a mapping, the tag is the component's name, whatever its characters.
SPACED = {
    "Cat Type": {"type": "object", "required": ["kind", "m"], "properties": {"kind": {"type": "string"}, "m": INT}},
    "Dog": PETS["Dog"],
}
SPACED_30 = {
    "oneOf": [{"$ref": "#/components/schemas/Cat%20Type"}, {"$ref": "#/components/schemas/Dog"}],
    "discriminator": {"propertyName": "kind"},
}
row("oas30-discriminator-implicit-name-with-space", "discriminator", SPACED_30, {"kind": "Cat Type", "m": 1}, True, oas30=SPACED, bugs=(("decision", IMPLICIT_TAG_SANITISED),))
row("oas30-discriminator-implicit-dog", "discriminator", SPACED_30, {"kind": "Dog", "bark": 1}, True, oas30=SPACED)
# The same discriminated oneOf with `type: object` beside it: still a discriminator,
# so A is picked as above (plain oneOf refuses: both match).
TYPED_TWINS = {**TWINS, "type": "object"}
row("discriminator-beside-type", "discriminator", TYPED_TWINS, {"kind": "A", "n": 1}, True, reference=False, bugs=(("decision", DISCRIMINATOR_SIBLING), ("fallback", DISCRIMINATOR_SIBLING)))

# oneOf / anyOf of distinct kinds ------------------------------------------------------------
KINDS = {"oneOf": [{"type": "string", "maxLength": 2}, {"type": "integer", "minimum": 0}, {"type": "array", "items": INT}]}
row("oneOf-kinds-string", "oneOf", KINDS, "ab", True)
row("oneOf-kinds-int", "oneOf", KINDS, 3, True)
row("oneOf-kinds-array", "oneOf", KINDS, [1], True)
row("oneOf-kinds-string-long", "oneOf", KINDS, "abc", False, "/body")
row("oneOf-kinds-int-negative", "oneOf", KINDS, -1, False, "/body")
row("oneOf-kinds-array-item", "oneOf", KINDS, [1, "x"], False, "/body/1", bugs=(("pointer", EXPLAIN_BEST_MATCH),))
row("oneOf-kinds-other", "oneOf", KINDS, None, False, "/body")
OBJ_OR_STRING = {"oneOf": [{"type": "object", "required": ["a"], "properties": {"a": INT}}, {"type": "string"}]}
row("oneOf-kinds-object", "oneOf", OBJ_OR_STRING, {"a": 1}, True)
row("oneOf-kinds-object-string", "oneOf", OBJ_OR_STRING, "x", True)
row("oneOf-kinds-object-bad", "oneOf", OBJ_OR_STRING, {"a": "x"}, False, "/body/a", bugs=(("pointer", EXPLAIN_BEST_MATCH),))
row("oneOf-kinds-object-missing", "oneOf", OBJ_OR_STRING, {}, False, "/body/a", bugs=(("pointer", EXPLAIN_BEST_MATCH),))
ANY_NUM = {"anyOf": [INT, {"type": "number"}]}
row("anyOf-int-number", "anyOf", ANY_NUM, 5, True)
row("anyOf-int-number-float", "anyOf", ANY_NUM, 5.5, True)
row("anyOf-int-number-string", "anyOf", ANY_NUM, "5", False, "/body")
# 5 is an integer *and* a number: oneOf must refuse it, which a union can not say.
ONE_NUM = {"oneOf": [INT, {"type": "number"}]}
row("oneOf-int-number-both", "oneOf", ONE_NUM, 5, False, "/body", fallback="oneOf of integer and number")
row("oneOf-int-number-float", "oneOf", ONE_NUM, 5.5, True, fallback="oneOf of integer and number")
TWO_STRINGS = {"anyOf": [{"type": "string", "maxLength": 2}, {"type": "string", "pattern": "^a"}]}
row("anyOf-same-kind", "anyOf", TWO_STRINGS, "abc", True, fallback="anyOf without discriminator")
row("anyOf-same-kind-bad", "anyOf", TWO_STRINGS, "bcd", False, "/body", fallback="anyOf without discriminator")

# anyOf [X, null] -------------------------------------------------------------------------
OR_NULL = {"anyOf": [{"type": "string", "minLength": 1}, {"type": "null"}]}
row("anyOf-null-null", "anyOf-null", OR_NULL, None, True)
row("anyOf-null-string", "anyOf-null", OR_NULL, "a", True)
row("anyOf-null-empty", "anyOf-null", OR_NULL, "", False, "/body")
row("anyOf-null-int", "anyOf-null", OR_NULL, 1, False, "/body")
OR_NULL_REF = {"anyOf": [{"$ref": "#/$defs/S"}, {"type": "null"}], "$defs": {"S": {"type": "integer", "maximum": 3}}}
row("anyOf-null-ref", "anyOf-null", OR_NULL_REF, 3, True)
row("anyOf-null-ref-above", "anyOf-null", OR_NULL_REF, 4, False, "/body")
OBJ_OR_NULL = {"anyOf": [{"type": "object", "properties": {"a": INT}}, {"type": "null"}]}
row("anyOf-null-object-null", "anyOf-null", OBJ_OR_NULL, None, True)
row("anyOf-null-object", "anyOf-null", OBJ_OR_NULL, {"a": 1}, True)
row("anyOf-null-object-bad", "anyOf-null", OBJ_OR_NULL, {"a": "x"}, False, "/body/a", bugs=(("pointer", EXPLAIN_BEST_MATCH),))

# recursive $ref --------------------------------------------------------------------------
TREE = {
    "$ref": "#/$defs/Node",
    "$defs": {
        "Node": {
            "type": "object",
            "required": ["value"],
            "properties": {
                "value": INT,
                "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
            },
        }
    },
}
row("recursive-ok", "$ref", TREE, {"value": 1, "children": [{"value": 2, "children": [{"value": 3}]}]}, True)
row("recursive-deep-bad", "$ref", TREE, {"value": 1, "children": [{"value": 2, "children": [{"value": "x"}]}]}, False, "/body/children/0/children/0/value")
row("recursive-deep-missing", "$ref", TREE, {"value": 1, "children": [{}]}, False, "/body/children/0/value")
TREE_30 = {"$ref": "#/components/schemas/Node"}
NODE_30 = {
    "Node": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string"},
            "parent": {"$ref": "#/components/schemas/Node"},
        },
    }
}
row("oas30-recursive-ok", "$ref", TREE_30, {"name": "a", "parent": {"name": "b"}}, True, oas30=NODE_30)
row("oas30-recursive-bad", "$ref", TREE_30, {"name": "a", "parent": {"parent": {"name": 1}}}, False, "/body/parent/parent/name", oas30=NODE_30)

# formats -----------------------------------------------------------------------------------
DT = {"type": "string", "format": "date-time"}
row("date-time", "format", DT, "2024-02-29T12:30:45Z", True)
row("date-time-offset-fraction", "format", DT, "2024-01-01T12:30:45.123+05:30", True)
row("date-time-lower-case", "format", DT, "2024-01-01t12:30:45z", True)
row("date-time-negative-zero-offset", "format", DT, "2024-01-01T12:30:45-00:00", True)
row("date-time-long-fraction", "format", DT, "2024-01-01T12:30:45.1234567890123Z", True)
row("date-time-not-leap-year", "format", DT, "2023-02-29T12:30:45Z", False, "/body")
row("date-time-1900-not-leap", "format", DT, "1900-02-29T00:00:00Z", False, "/body")
row("date-time-no-offset", "format", DT, "2024-01-01T12:30:45", False, "/body")
row("date-time-hour-24", "format", DT, "2024-01-01T24:00:00Z", False, "/body")
row("date-time-month-13", "format", DT, "2024-13-01T00:00:00Z", False, "/body")
row("date-time-april-31", "format", DT, "2024-04-31T00:00:00Z", False, "/body")
row("date-time-no-seconds", "format", DT, "2024-01-01T12:30Z", False, "/body")
row("date-time-offset-24", "format", DT, "2024-01-01T12:30:45+24:00", False, "/body")
row("date-time-offset-hours-only", "format", DT, "2024-01-01T12:30:45+05", False, "/body")
row("date-time-comma-fraction", "format", DT, "2024-01-01T12:30:45,5Z", False, "/body")
row("date-time-empty-fraction", "format", DT, "2024-01-01T12:30:45.Z", False, "/body")
row("date-time-non-ascii-digits", "format", DT, "\uff12\uff10\uff12\uff14-01-01T00:00:00Z", False, "/body")
row("date-time-trailing-newline", "format", DT, "2024-01-01T12:30:45Z\n", False, "/body")
row("date-time-leading-space", "format", DT, " 2024-01-01T12:30:45Z", False, "/body")
row("date-time-in-property", "format", {"type": "object", "properties": {"at": DT}}, {"at": "yesterday"}, False, "/body/at")
# Documented (formats.py): msgspec reads a space for the `T` ...
row("date-time-space-by-design", "format", DT, "2024-01-01 12:30:45Z", True, reference=False)
# ... and refuses the leap second :60 that RFC 3339 allows at 23:59 UTC.
row("date-time-leap-second-by-design", "format", DT, "2016-12-31T23:59:60Z", False, "/body", reference=True)
row("date-time-leap-second-offset-by-design", "format", DT, "2016-12-31T22:59:60-01:00", False, "/body", reference=True)
row("date-time-leap-second-wrong-hour", "format", DT, "2016-12-31T12:59:60Z", False, "/body")
row("date-time-year-0000", "format", DT, "0000-01-01T00:00:00Z", True, bugs=(("decision", DATETIME_RANGE),))
row("date-time-rounds-past-9999", "format", DT, "9999-12-31T23:59:59.9999999Z", True, bugs=(("decision", DATETIME_RANGE),))
row("date-time-basic-offset", "format", DT, "2024-01-01T12:30:45+0530", False, "/body", bugs=(("decision", DATETIME_BASIC_OFFSET), ("pointer", DATETIME_BASIC_OFFSET)))
DATE = {"type": "string", "format": "date"}
row("date", "format", DATE, "2024-02-29", True)
row("date-2000-leap", "format", DATE, "2000-02-29", True)
row("date-feb-30", "format", DATE, "2024-02-30", False, "/body")
row("date-short-month", "format", DATE, "2024-1-01", False, "/body")
row("date-basic", "format", DATE, "20240101", False, "/body")
row("date-month-0", "format", DATE, "2024-00-10", False, "/body")
row("date-day-0", "format", DATE, "2024-01-00", False, "/body")
row("date-with-time", "format", DATE, "2024-01-01T00:00:00Z", False, "/body")
row("date-year-0000", "format", DATE, "0000-01-01", True, bugs=(("decision", DATETIME_RANGE),))
TIME = {"type": "string", "format": "time"}
row("time-z", "format", TIME, "12:30:45Z", True)
row("time-offset", "format", TIME, "12:30:45+01:00", True)
row("time-fraction-lower-z", "format", TIME, "12:30:45.5z", True)
row("time-no-offset", "format", TIME, "12:30:45", False, "/body")
row("time-hour-25", "format", TIME, "25:00:00Z", False, "/body")
row("time-no-seconds", "format", TIME, "12:30Z", False, "/body")
row("time-offset-24", "format", TIME, "12:30:45-24:00", False, "/body")
# Documented: no leap second in a time either.
row("time-leap-second-by-design", "format", TIME, "23:59:60Z", False, "/body", reference=True)
UUID = {"type": "string", "format": "uuid"}
row("uuid", "format", UUID, "123e4567-e89b-12d3-a456-426614174000", True)
row("uuid-upper", "format", UUID, "123E4567-E89B-12D3-A456-426614174000", True)
row("uuid-nil", "format", UUID, "00000000-0000-0000-0000-000000000000", True)
# The 32-digit form msgspec's own UUID type takes is not RFC 4122's string form.
row("uuid-no-hyphens", "format", UUID, "123e4567e89b12d3a456426614174000", False, "/body")
row("uuid-braces", "format", UUID, "{123e4567-e89b-12d3-a456-426614174000}", False, "/body")
row("uuid-urn", "format", UUID, "urn:uuid:123e4567-e89b-12d3-a456-426614174000", False, "/body")
row("uuid-not-hex", "format", UUID, "123e4567-e89b-12d3-a456-42661417400g", False, "/body")
row("uuid-trailing-newline", "format", UUID, "123e4567-e89b-12d3-a456-426614174000\n", False, "/body", bugs=(("decision", UUID_TRAILING_NEWLINE), ("pointer", UUID_TRAILING_NEWLINE)))
BYTE = {"type": "string", "format": "byte"}
row("byte", "format", BYTE, "aGVsbG8=", True)
row("byte-empty", "format", BYTE, "", True)
row("byte-two-pads", "format", BYTE, "YQ==", True)
row("byte-unpadded", "format", BYTE, "aGVsbG8", False, "/body")
row("byte-space", "format", BYTE, "aGV sbG8=", False, "/body")
row("byte-url-safe", "format", BYTE, "-_8=", False, "/body")
row("byte-newline", "format", BYTE, "aGVsbG8=\n", False, "/body")
row("byte-too-much-padding", "format", BYTE, "aGVsbG8==", False, "/body")
# `format` constrains strings only; unknown formats are annotations.
row("format-non-string", "format", {"format": "date-time"}, 5, True)
row("format-unknown", "format", {"type": "string", "format": "email"}, "not an email", True)
row("format-with-bounds", "format", {"type": "string", "format": "date", "maxLength": 10}, "2024-01-01", True, fallback="with string bounds")
row("format-with-bounds-bad", "format", {"type": "string", "format": "date", "maxLength": 10}, "2024-01-32", False, "/body", fallback="with string bounds")

# the fallback keywords ---------------------------------------------------------------------
NOT = {"not": {"type": "string"}}
row("not-ok", "not", NOT, 1, True, fallback="not")
row("not-bad", "not", NOT, "a", False, "/body", fallback="not")
IF = {
    "type": "object",
    "if": {"properties": {"a": {"const": 1}}, "required": ["a"]},
    "then": {"required": ["b"]},
    "else": {"required": ["c"]},
}
row("if-then-ok", "if", IF, {"a": 1, "b": 1}, True, fallback="if")
row("if-then-bad", "if", IF, {"a": 1}, False, "/body/b", fallback="if")
row("if-else-ok", "if", IF, {"a": 2, "c": 1}, True, fallback="if")
row("if-else-bad", "if", IF, {}, False, "/body/c", fallback="if")
UNIQUE = {"type": "array", "uniqueItems": True}
row("uniqueItems-ok", "uniqueItems", UNIQUE, [1, 2], True, fallback="uniqueItems")
row("uniqueItems-bool-vs-int", "uniqueItems", UNIQUE, [1, True], True, fallback="uniqueItems")
row("uniqueItems-dup", "uniqueItems", UNIQUE, [1, 1], False, "/body", fallback="uniqueItems")
row("uniqueItems-dup-objects", "uniqueItems", UNIQUE, [{"a": 1, "b": 2}, {"b": 2, "a": 1}], False, "/body", fallback="uniqueItems")
row("uniqueItems-nested", "uniqueItems", {"type": "object", "properties": {"t": UNIQUE}}, {"t": ["a", "a"]}, False, "/body/t", fallback="uniqueItems")
row("uniqueItems-false-native", "uniqueItems", {"type": "array", "uniqueItems": False}, [1, 1], True)
PATTERN_PROPS = {"type": "object", "patternProperties": {"^x_": INT}}
row("patternProperties-ok", "patternProperties", PATTERN_PROPS, {"x_a": 1, "other": "s"}, True, fallback="patternProperties")
row("patternProperties-bad", "patternProperties", PATTERN_PROPS, {"x_a": "s"}, False, "/body/x_a", fallback="patternProperties")
PATTERN_CLOSED = {"type": "object", "patternProperties": {"^x_": INT}, "additionalProperties": False}
row("patternProperties-closed-extra", "patternProperties", PATTERN_CLOSED, {"x_a": 1, "zz": 1}, False, "/body/zz", fallback="patternProperties")
DEPENDENT = {"type": "object", "dependentRequired": {"a": ["b"]}}
row("dependentRequired-ok", "dependentRequired", DEPENDENT, {"a": 1, "b": 2}, True, fallback="dependentRequired")
row("dependentRequired-absent", "dependentRequired", DEPENDENT, {}, True, fallback="dependentRequired")
row("dependentRequired-bad", "dependentRequired", DEPENDENT, {"a": 1}, False, "/body", fallback="dependentRequired")
NAMES = {"type": "object", "propertyNames": {"maxLength": 3}}
row("propertyNames-ok", "propertyNames", NAMES, {"abc": 1}, True, fallback="propertyNames")
row("propertyNames-bad", "propertyNames", NAMES, {"abcd": 1}, False, "/body", fallback="propertyNames")
CONTAINS = {"type": "array", "contains": INT}
row("contains-ok", "contains", CONTAINS, ["a", 1], True, fallback="contains")
row("contains-bad", "contains", CONTAINS, ["a"], False, "/body", fallback="contains")
PREFIX = {"type": "array", "prefixItems": [INT, {"type": "string"}], "items": False}
row("prefixItems-ok", "prefixItems", PREFIX, [1, "a"], True, fallback="prefixItems")
row("prefixItems-bad", "prefixItems", PREFIX, ["a"], False, "/body/0", fallback="prefixItems")
row("prefixItems-extra", "prefixItems", PREFIX, [1, "a", 2], False, "/body", fallback="prefixItems")
# Draft 4 tuple `items` (OpenAPI 3.0 / Swagger) is normalised to prefixItems.
TUPLE_30 = {"type": "array", "items": [INT, {"type": "string"}], "additionalItems": False}
row("oas30-tuple-items-bad", "prefixItems", TUPLE_30, [1, 2], False, "/body/1", fallback="prefixItems", oas30={})
MIN_PROPS = {"type": "object", "properties": {"a": {}}, "minProperties": 1}
row("minProperties-beside-properties-ok", "minProperties", MIN_PROPS, {"a": 1}, True, fallback="minProperties")
row("minProperties-beside-properties-bad", "minProperties", MIN_PROPS, {}, False, "/body", fallback="minProperties")
# Alone, minProperties is a dict length: native.
row("minProperties-alone-ok", "minProperties", {"type": "object", "minProperties": 1}, {"a": 1}, True)
row("minProperties-alone-bad", "minProperties", {"type": "object", "minProperties": 1}, {}, False, "/body")
OBJECTS = {
    "oneOf": [
        {"type": "object", "required": ["a"], "properties": {"a": INT}},
        {"type": "object", "required": ["b"], "properties": {"b": INT}},
    ]
}
row("oneOf-objects-ok", "oneOf-objects", OBJECTS, {"a": 1}, True, fallback="oneOf without discriminator")
row("oneOf-objects-both", "oneOf-objects", OBJECTS, {"a": 1, "b": 2}, False, "/body", fallback="oneOf without discriminator")
# No branch is closer than the other: either missing member (or the object) will do.
row("oneOf-objects-none", "oneOf-objects", OBJECTS, {"c": 1}, False, ("/body", "/body/a", "/body/b"), fallback="oneOf without discriminator")
row("oneOf-objects-bad-member", "oneOf-objects", OBJECTS, {"a": "x"}, False, "/body/a", fallback="oneOf without discriminator", bugs=(("pointer", EXPLAIN_BEST_MATCH),))
# Recursion through arrays and unions, not objects: no Struct to name, fallback.
NESTED_LISTS = {
    "$ref": "#/$defs/T",
    "$defs": {"T": {"anyOf": [INT, {"type": "array", "items": {"$ref": "#/$defs/T"}}]}},
}
row("recursive-union", "$ref", NESTED_LISTS, [1, [2, [3]]], True, fallback="union")
row("recursive-union-bad", "$ref", NESTED_LISTS, [1, ["x"]], False, ("/body", "/body/1/0"), fallback="union")
# fmt: on


# -- the checks ------------------------------------------------------------------------------

_COMPILED: dict[tuple[str, bytes], SchemaValidator] = {}


def compiled(r: Row) -> SchemaValidator:
    key = (
        "3.0" if r.oas30 is not None else "2020-12",
        orjson.dumps([r.schema, r.oas30], option=orjson.OPT_SORT_KEYS),
    )
    v = _COMPILED.get(key)
    if v is None:
        v = compile_oas30(r.schema, r.oas30) if r.oas30 is not None else compile_schema(r.schema)
        _COMPILED[key] = v
    return v


def rows_for(check: str, *, invalid_only: bool = False) -> list[Any]:
    out = []
    for r in ROWS:
        if invalid_only and r.valid:
            continue
        marks = [
            pytest.mark.xfail(strict=True, reason=why)
            for name, why in r.bugs
            if name == check and why is not None
        ]
        out.append(pytest.param(r, id=r.id, marks=marks))
    return out


def _show(issues: Any) -> str:
    if issues is None:
        return "accepted"
    return "; ".join(f"{i.pointer} [{i.keyword}] {i.message}" for i in issues)


@pytest.mark.parametrize("r", rows_for("decision"))
def test_decision(r: Row) -> None:
    issues = compiled(r).check_json(encode(r.instance))
    expected = "accepted" if r.valid else "rejected"
    assert (issues is None) == r.valid, (
        f"{r.id}: expected {expected}, got {_show(issues)} for {r.instance!r}"
    )


@pytest.mark.parametrize("r", rows_for("pointer", invalid_only=True))
def test_pointer(r: Row) -> None:
    issues = compiled(r).check_json(encode(r.instance))
    assert issues, f"{r.id}: {r.instance!r} accepted"
    wanted = (r.pointer,) if isinstance(r.pointer, str) else r.pointer
    assert wanted is not None
    assert set(wanted) & {i.pointer for i in issues}, f"{r.id}: want {wanted}, {_show(issues)}"


@pytest.mark.parametrize("r", rows_for("reference"))
def test_reference(r: Row) -> None:
    # The reference reads the bundled (normalised) schema: for 3.0 rows that is the
    # 2020-12 spelling of `nullable` & co, whose meaning the hand-written `valid`
    # column pins down independently.
    validator = reference_validator(compiled(r).schema)
    expected = r.valid if r.reference is None else r.reference
    errors = [e.message for e in validator.iter_errors(r.instance)]
    assert (not errors) == expected, f"{r.id}: reference says {errors or 'valid'}"
    if r.reference is not None:
        # A by-design difference: the row says both sides, and they do differ.
        assert r.reference != r.valid


@pytest.mark.parametrize("r", rows_for("fallback"))
def test_fallback(r: Row) -> None:
    fallbacks = compiled(r).fallbacks
    if r.fallback is None:
        assert fallbacks == (), f"{r.id}: a msgspec-native keyword fell back: {fallbacks}"
    else:
        assert any(r.fallback in f.keyword for f in fallbacks), (
            f"{r.id}: expected a fallback for {r.fallback!r}, got {fallbacks}"
        )


REQUIRED_KEYWORDS = {
    # native
    "type",
    "nullable",
    "required",
    "properties",
    "additionalProperties",
    "enum",
    "const",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "items",
    "allOf",
    "discriminator",
    "oneOf",
    "anyOf",
    "anyOf-null",
    "$ref",
    "format",
    # fallbacks
    "not",
    "if",
    "uniqueItems",
    "patternProperties",
    "dependentRequired",
    "propertyNames",
    "contains",
    "prefixItems",
    "minProperties",
    "oneOf-objects",
}


def test_table_covers_every_keyword() -> None:
    """Each keyword has at least one valid and one invalid row; ids are unique."""
    assert len({r.id for r in ROWS}) == len(ROWS)
    seen = {(r.keyword, r.valid) for r in ROWS}
    missing = sorted(k for k in REQUIRED_KEYWORDS for v in (True, False) if (k, v) not in seen)
    assert not missing, f"no row for {missing}"
    # Both dialects of the exclusive bounds and of discriminators, and every format.
    assert {r.id for r in ROWS} >= {
        "exclusiveMinimum-equal",
        "oas30-exclusiveMinimum-true-equal",
        "discriminator-mapping",
        "discriminator-cat",
    }
    formats = {r.schema.get("format") for r in ROWS if r.keyword == "format"}
    assert formats >= {"date-time", "date", "time", "uuid", "byte"}


# -- the reference format checker itself ------------------------------------------------------


@pytest.mark.parametrize(
    ("check", "text", "ok"),
    [
        (rfc3339_date_time, "1985-04-12T23:20:50.52Z", True),  # RFC 3339 section 5.8
        (rfc3339_date_time, "1996-12-19T16:39:57-08:00", True),
        (rfc3339_date_time, "1990-12-31T23:59:60Z", True),
        (rfc3339_date_time, "1990-12-31T15:59:60-08:00", True),
        (rfc3339_date_time, "1937-01-01T12:00:27.87+00:20", True),
        (rfc3339_date_time, "1990-12-31T15:59:60Z", False),
        (rfc3339_date_time, "1985-04-12 23:20:50Z", False),
        (rfc3339_full_date, "2020-02-29", True),
        (rfc3339_full_date, "2100-02-29", False),
        (rfc3339_full_time, "08:30:06.283185Z", True),
        (rfc3339_full_time, "08:30:06", False),
        (rfc4122_uuid, "2EB8AA08-AA98-11EA-B4AA-73B441D16380", True),
        (rfc4122_uuid, "2eb8aa08-aa98-11ea-b4aa-73b441d16380\n", False),
        (rfc4648_base64, "Zm9vYmFy", True),  # RFC 4648 section 10
        (rfc4648_base64, "Zm9vYg==", True),
        (rfc4648_base64, "Zm9vYg", False),
    ],
)
def test_reference_formats(check: Any, text: str, ok: bool) -> None:
    assert check(text) is ok


# -- bugs outside the decision: what the issues say, and a request that raises ---------------


def test_additional_properties_issue_skips_pattern_properties() -> None:
    issues = compile_schema(PATTERN_CLOSED).check_json(b'{"x_a": 1, "zz": 1}')
    assert issues is not None
    assert [i.pointer for i in issues] == ["/body/zz"]


def test_uncompilable_pattern_does_not_raise() -> None:
    """ECMA-262 syntax Python's re lacks: the pattern is not enforced, and says so (a
    fallback entry); the rest of the schema still is."""
    v = compile_schema({"type": "string", "pattern": "\\p{L}"})
    assert [(f.pointer, f.keyword) for f in v.fallbacks] == [
        ("/", "pattern not enforced: Python's re can not compile it")
    ]
    for text in (b'"a"', b'"1"', b'""'):  # \p{L} would refuse the last two
        assert v.check_json(text) is None, text
    issues = v.check_json(b"1")
    assert issues is not None
    assert [(i.pointer, i.keyword) for i in issues] == [("/body", "type")]


MUST_COMPILE = [
    pytest.param(
        {"type": "number", "minimum": 0, "exclusiveMinimum": 0},
        None,
        [(0, False), (0.5, True)],
        id="minimum-and-exclusiveMinimum",
    ),
    pytest.param(
        {"type": "integer", "maximum": 10, "exclusiveMaximum": 10},
        None,
        [(10, False), (9, True)],
        id="maximum-and-exclusiveMaximum-integer",
    ),
    # OpenAPI 3.0: one branch's boolean exclusiveMinimum, the other's minimum.
    pytest.param(
        {"allOf": [{"type": "number", "minimum": 0}, {"minimum": 1, "exclusiveMinimum": True}]},
        {},
        [(1, False), (1.5, True)],
        id="oas30-allOf-minimum-and-exclusiveMinimum",
    ),
    # A discriminated variant that is an allOf the compiler can not merge.
    pytest.param(
        {
            "oneOf": [{"$ref": "#/$defs/Cat"}, {"$ref": "#/$defs/Dog"}],
            "discriminator": {"propertyName": "kind"},
            "$defs": {
                "Base": {
                    "type": "object",
                    "properties": {"kind": {"type": "string"}, "id": INT},
                    "additionalProperties": False,
                },
                "Cat": {"allOf": [{"$ref": "#/$defs/Base"}, {"properties": {"meow": {}}}]},
                "Dog": {"type": "object", "required": ["bark"], "properties": {"bark": INT}},
            },
        },
        None,
        [({"kind": "Dog", "bark": 1}, True), ({"kind": "Dog"}, False)],
        id="discriminator-variant-unmergeable-allOf",
    ),
]


@pytest.mark.parametrize(("schema", "oas30", "cases"), MUST_COMPILE)
def test_compiles_without_raising(
    schema: Any, oas30: dict[str, Any] | None, cases: list[tuple[Any, bool]]
) -> None:
    v = compile_oas30(schema, oas30) if oas30 is not None else compile_schema(schema)
    for instance, valid in cases:
        assert (v.check_json(encode(instance)) is None) == valid, instance


def test_integral_float_is_not_an_integer_in_a_fallback_either() -> None:
    v = compile_schema({"type": "object", "properties": {"n": INT}, "minProperties": 1})
    assert v.fallbacks
    issues = v.check_json(b'{"n": 5.0}')
    assert issues is not None
    assert ("/body/n", "type") in [(i.pointer, i.keyword) for i in issues], issues


@pytest.mark.parametrize("key", ["\u00b9", "\u2460"])
def test_issues_for_keys_that_look_like_digits(key: str) -> None:
    """str.isdigit() is true for these, int() refuses them: sorting issues must not raise.

    (Found by test_validation_public_specs on Stripe's form schemas: check_json raised
    ValueError from issues._order; fixed since.)
    """
    v = compile_schema({"type": "object", "additionalProperties": INT})
    issues = v.check_json(orjson.dumps({key: "x", "a": 1}))
    assert issues is not None
    assert [i.pointer for i in issues] == ["/body/" + key]


def test_check_value_agrees_with_check_json() -> None:
    """Parameters go through `check_value` (msgspec.convert): same decision for JSON values."""
    disagree = []
    for r in ROWS:
        if r.bugs or r.reference is not None:
            continue
        v = compiled(r)
        by_json = v.check_json(encode(r.instance)) is None
        by_value = v.check_value(r.instance, "/query/q") is None
        if by_json != by_value:
            disagree.append(f"{r.id}: check_json {by_json}, check_value {by_value}")
    assert not disagree, "\n".join(disagree)
