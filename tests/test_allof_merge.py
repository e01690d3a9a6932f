"""bundle.merge_all_of, the one allOf merge both compilers read.

1. A table: each row an allOf (or `$ref` beside keywords, or a union beside
   keywords) that merges, or that must stay an allOf (and why); on the row's
   instances and a common pool, jsonschema decides the merged schema as it
   decides the original.
2. Generated allOfs of generated branches, on generated instances: the same
   cross-check, so a rule that changes meaning shows up where the table has no
   row for it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from runmcp_fast.validation.bundle import ALL_OF_CONFLICT, merge_all_of

INT = {"type": "integer"}
STR = {"type": "string"}
_FORMATS = Draft202012Validator.FORMAT_CHECKER

# Instances every row is also checked on.
POOL: list[Any] = [
    None,
    True,
    0,
    1,
    5,
    6,
    12,
    -3,
    2.5,
    "",
    "a",
    "ab",
    "ba",
    "abc",
    "2024-01-31",
    [],
    [1],
    [1, 1],
    ["a", 2],
    {},
    {"a": 1},
    {"a": "x"},
    {"b": 1},
    {"b": "x"},
    {"a": 1, "b": "x"},
    {"a": 1, "b": 1},
    {"a": 1, "c": "x"},
    {"a": 1, "c": 1},
    {"x1": 1},
    {"id": 1, "extra": 0},
    {"extra": 0},
]


def _valid(schema: Any, instance: Any) -> bool:
    return bool(Draft202012Validator(schema, format_checker=_FORMATS).is_valid(instance))


def _has_all_of(node: Any) -> bool:
    if isinstance(node, dict):
        return "allOf" in node or any(_has_all_of(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_all_of(v) for v in node)
    return False


# (id, schema, None: merged (no allOf left anywhere) / the conflict's reason, instances)
ROWS: list[tuple[str, Any, str | None, list[Any]]] = [
    (
        "properties-required",
        {
            "allOf": [
                {"type": "object", "properties": {"a": INT}, "required": ["a"]},
                {"properties": {"b": STR}, "required": ["b"]},
            ]
        },
        None,
        [],
    ),
    (
        "same-property",
        {
            "allOf": [
                {"properties": {"a": {"type": "integer", "minimum": 0}}},
                {"properties": {"a": {"maximum": 5}}},
            ]
        },
        None,
        [{"a": 3}, {"a": 6}, {"a": -1}],
    ),
    (
        "number-and-integer",
        {"allOf": [{"type": "number", "minimum": 0}, {"type": "integer", "maximum": 10}]},
        None,
        [5, 5.5, 11],
    ),
    ("enum-intersection", {"allOf": [{"enum": ["a", "b"]}, {"enum": ["b", "c"]}]}, None, ["b"]),
    (
        "enum-true-is-not-1",
        {"allOf": [{"enum": [1, "a"]}, {"enum": [True, "a"]}]},
        None,
        [1, True, "a"],
    ),
    ("const-and-enum", {"allOf": [{"const": "a"}, {"enum": ["b", "c"]}]}, None, ["a", "b"]),
    (
        "bounds",
        {"allOf": [{"minLength": 1, "maxLength": 3}, {"minLength": 2, "maxLength": 5}]},
        None,
        ["abcd"],
    ),
    (
        "uniqueItems-either",
        {"allOf": [{"uniqueItems": True}, {"uniqueItems": False}]},
        None,
        [[1, 1], [1, 2]],
    ),
    ("items", {"allOf": [{"items": INT}, {"items": {"minimum": 2}}]}, None, [[1], [2, 3], ["x"]]),
    ("true-branch", {"allOf": [True, {"type": "string"}]}, None, []),
    ("false-branch", {"allOf": [{"type": "string"}, False]}, None, []),
    (
        "ref-branch",
        {
            "allOf": [{"$ref": "#/$defs/Base"}, {"required": ["extra"]}],
            "$defs": {"Base": {"type": "object", "properties": {"id": INT}, "required": ["id"]}},
        },
        None,
        [],
    ),
    (
        "ref-beside-keywords",
        {"$ref": "#/$defs/S", "maxLength": 2, "$defs": {"S": {"type": "string", "minLength": 1}}},
        None,
        [],
    ),
    (
        "closed-knows-the-other",
        {
            "allOf": [
                {"type": "object", "properties": {"a": {}, "b": {}}, "additionalProperties": False},
                {"properties": {"b": STR}, "required": ["b"]},
            ]
        },
        None,
        [],
    ),
    (
        "union-siblings-folded",
        {"type": "string", "anyOf": [{"maxLength": 1}, {"pattern": "^a"}]},
        None,
        [],
    ),
    (
        "union-sibling-ref",
        {
            "type": "object",
            "oneOf": [{"$ref": "#/$defs/A"}, {"required": ["b"]}],
            "$defs": {"A": {"required": ["a"]}},
        },
        None,
        [],
    ),
    # Must stay an allOf: merging would change meaning, or no schema says both.
    (
        "two-patterns",
        {"type": "string", "allOf": [{"pattern": "^a"}, {"pattern": "b$"}]},
        "two values for pattern",
        [],
    ),
    ("no-type-in-common", {"allOf": [STR, INT]}, "no type in common", []),
    ("two-formats", {"allOf": [{"format": "date"}, {"format": "uuid"}]}, "two formats", []),
    (
        "two-multiples",
        {"allOf": [{"multipleOf": 2}, {"multipleOf": 3}]},
        "two values for multipleOf",
        [],
    ),
    (
        "closed-branch",
        {
            "allOf": [
                {"type": "object", "properties": {"a": {}}, "additionalProperties": False},
                {"properties": {"b": {}}},
            ]
        },
        "additionalProperties: false",
        [],
    ),
    (
        "additional-schema-meets-other",
        {
            "allOf": [
                {"properties": {"a": INT}, "additionalProperties": STR},
                {"properties": {"b": INT}},
            ]
        },
        "additionalProperties schema",
        [],
    ),
    (
        "additional-beside-patterns",
        {"allOf": [{"additionalProperties": STR}, {"patternProperties": {"^x": INT}}]},
        "patternProperties",
        [],
    ),
    (
        "items-beside-prefixItems",
        {"allOf": [{"items": INT}, {"prefixItems": [STR]}]},
        "prefixItems",
        [["a"], [1], ["a", 1]],
    ),
    (
        "if-then-apart",
        {"allOf": [{"if": {"minimum": 5}, "then": {"multipleOf": 2}}, {"else": {"maximum": 0}}]},
        "if",
        [],
    ),
    (
        "unevaluated",
        {"allOf": [{"properties": {"a": {}}}, {"unevaluatedProperties": False}]},
        "unevaluatedProperties",
        [],
    ),
]


@pytest.mark.parametrize(("id_", "schema", "conflict", "instances"), ROWS, ids=[r[0] for r in ROWS])
def test_merge(id_: str, schema: Any, conflict: str | None, instances: list[Any]) -> None:
    merged = merge_all_of(schema)
    text = json.dumps(merged)
    if conflict is None:
        assert not _has_all_of(merged), text
        assert ALL_OF_CONFLICT not in text
    else:
        assert conflict in text, text
    for instance in [*instances, *POOL]:
        assert _valid(merged, instance) is _valid(schema, instance), (instance, text)


def test_an_allof_through_itself_stays() -> None:
    """(jsonschema itself recurses forever on it: no instances.)"""
    schema = {
        "$ref": "#/$defs/A",
        "$defs": {"A": {"allOf": [{"$ref": "#/$defs/A"}, {"minimum": 1}]}},
    }
    merged = merge_all_of(schema)
    assert merged["$defs"]["A"][ALL_OF_CONFLICT] == "allOf nested through itself"


def test_merged_documents_merge_to_themselves() -> None:
    for _, schema, _, _ in ROWS:
        once = merge_all_of(schema)
        assert merge_all_of(once) == once


def test_a_discriminator_keeps_its_variants() -> None:
    """The tag names `$ref` variants: merging siblings into them would unname them."""
    schema = {
        "type": "object",
        "required": ["kind"],
        "oneOf": [{"$ref": "#/$defs/Cat"}, {"$ref": "#/$defs/Dog"}],
        "discriminator": {"propertyName": "kind"},
        "$defs": {"Cat": {"type": "object"}, "Dog": {"type": "object"}},
    }
    assert merge_all_of(schema) == schema


def test_definitions_keep_their_own_name() -> None:
    """A branch's annotations stay out: x-component names the definition it is on."""
    schema = {
        "$ref": "#/$defs/Cat",
        "$defs": {
            "Cat": {"allOf": [{"$ref": "#/$defs/Pet_2"}, {"required": ["meow"]}]},
            "Pet_2": {"type": "object", "x-component": "Pet", "description": "a pet"},
        },
    }
    assert merge_all_of(schema)["$defs"]["Cat"] == {"type": "object", "required": ["meow"]}


def test_cache_is_shared_by_name() -> None:
    defs = {"Base": {"allOf": [{"type": "object"}, {"required": ["id"]}]}}
    cache: dict[str, Any] = {}
    first = merge_all_of({"$ref": "#/$defs/Base", "$defs": defs}, cache)
    second = merge_all_of({"items": {"$ref": "#/$defs/Base"}, "$defs": defs}, cache)
    assert first["$defs"]["Base"] is second["$defs"]["Base"] is cache["Base"]


# -- generated -------------------------------------------------------------------------------

_NAMES = ("a", "b", "c")
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 12),
    st.sampled_from([2.5, -0.5]),
    st.sampled_from(["", "a", "ab", "ba", "x1"]),
)
_instances = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from([*_NAMES, "x1"]), inner, max_size=3)
    ),
    max_leaves=6,
)


def _leaf(draw: st.DrawFn, depth: int) -> dict[str, Any]:
    """One branch: a few keywords of every kind, nested schemas now and then."""
    out: dict[str, Any] = {}
    keywords = draw(
        st.lists(
            st.sampled_from(
                [
                    "type",
                    "minimum",
                    "maximum",
                    "multipleOf",
                    "minLength",
                    "pattern",
                    "enum",
                    "const",
                    "required",
                    "properties",
                    "additionalProperties",
                    "patternProperties",
                    "items",
                    "prefixItems",
                    "minItems",
                    "uniqueItems",
                    "if",
                    "allOf",
                ]
            ),
            max_size=3,
            unique=True,
        )
    )
    sub = st.deferred(lambda: _schemas(depth + 1)) if depth < 2 else st.just({})
    for key in keywords:
        if key == "type":
            out[key] = draw(
                st.sampled_from(
                    [
                        "integer",
                        "number",
                        "string",
                        "object",
                        "array",
                        ["string", "integer"],
                        ["object", "null"],
                    ]
                )
            )
        elif key in ("minimum", "maximum"):
            out[key] = draw(st.integers(-2, 8))
        elif key == "multipleOf":
            out[key] = draw(st.sampled_from([2, 3]))
        elif key == "minLength":
            out[key] = draw(st.integers(0, 2))
        elif key == "pattern":
            out[key] = draw(st.sampled_from(["^a", "b$"]))
        elif key == "enum":
            out[key] = draw(st.lists(_scalars, min_size=1, max_size=4))
        elif key == "const":
            out[key] = draw(_scalars)
        elif key == "required":
            out[key] = draw(st.lists(st.sampled_from(_NAMES), min_size=1, max_size=2, unique=True))
        elif key == "properties":
            out[key] = draw(st.dictionaries(st.sampled_from(_NAMES), sub, min_size=1, max_size=2))
        elif key == "additionalProperties":
            out[key] = draw(st.booleans() | sub)
        elif key == "patternProperties":
            out[key] = {"^x": draw(sub)}
        elif key == "items":
            out[key] = draw(sub)
        elif key == "prefixItems":
            out[key] = [draw(sub)]
        elif key == "minItems":
            out[key] = draw(st.integers(0, 2))
        elif key == "uniqueItems":
            out[key] = draw(st.booleans())
        elif key == "if":
            out[key] = draw(sub)
            out[draw(st.sampled_from(["then", "else"]))] = draw(sub)
        elif key == "allOf":
            out[key] = draw(st.lists(sub, min_size=1, max_size=2))
    return out


@st.composite
def _schemas(draw: st.DrawFn, depth: int = 0) -> Any:
    if depth and draw(st.integers(0, 9)) == 0:
        return draw(st.booleans())
    node = _leaf(draw, depth)
    if draw(st.booleans()):
        node["allOf"] = [_leaf(draw, depth + 1) for _ in range(draw(st.integers(1, 3)))]
    return node


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(_schemas(), st.lists(_instances, min_size=1, max_size=8))
def test_generated_merges_keep_meaning(schema: Any, instances: list[Any]) -> None:
    merged = merge_all_of(schema)
    for instance in [*instances, *POOL]:
        assert _valid(merged, instance) is _valid(schema, instance), (instance, json.dumps(merged))
