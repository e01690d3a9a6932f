"""runmcp_fast.validation.styles: parameter strings -> values, per OpenAPI style/explode.

The style rows are the OpenAPI 3.1 "Style Examples" table (color = "blue" /
["blue", "black", "brown"] / {"R": 100, "G": 200, "B": 150}); where 3.1.1
corrected 3.1.0 (non-exploded label) both spellings are rows.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from runmcp_fast.validation.styles import (
    MISSING,
    ParamReader,
    Shape,
    StyleError,
    UnsupportedStyle,
    parse_cookies,
    parse_query,
    shape_of,
)

STRING = {"type": "string"}
ARRAY = {"type": "array", "items": {"type": "string"}}
OBJECT = {
    "type": "object",
    "properties": {"R": {"type": "integer"}, "G": {"type": "integer"}, "B": {"type": "integer"}},
}
SCHEMAS = {"primitive": STRING, "array": ARRAY, "object": OBJECT}
VALUES: dict[str, Any] = {
    "primitive": "blue",
    "array": ["blue", "black", "brown"],
    "object": {"R": 100, "G": 200, "B": 150},
}
EMPTY: dict[str, Any] = {"primitive": "", "array": [], "object": {}}

COMPONENTS: dict[str, Any] = {
    "Int": {"type": "integer"},
    "IntAlias": {"$ref": "#/components/schemas/Int"},
    "Pet": {"type": "object", "properties": {"age": {"$ref": "#/components/schemas/Int"}}},
    "Tree": {"type": "object", "properties": {"child": {"$ref": "#/components/schemas/Tree"}}},
    "Loop": {"allOf": [{"$ref": "#/components/schemas/Loop"}]},
}


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = COMPONENTS[schema["$ref"].rsplit("/", 1)[1]]
    return schema


def source(location: str, raw: Any) -> Any:
    if location == "query":
        return parse_query(raw)
    if location == "cookie":
        return parse_cookies([raw])
    return raw


def read(
    location: str,
    style: str,
    explode: bool,
    schema: Any,
    raw: Any,
    *,
    name: str = "color",
    media_type: str | None = None,
    claimed: frozenset[str] = frozenset(),
) -> Any:
    reader = ParamReader(
        name, location, style, explode, schema, resolve, media_type, claimed=claimed
    )
    return reader.read(source(location, raw))


# --- the style examples table ---------------------------------------------------------

# (location, style, explode, kind, raw); the expected value is VALUES[kind].
TABLE = [
    ("path", "matrix", False, "primitive", ";color=blue"),
    ("path", "matrix", False, "array", ";color=blue,black,brown"),
    ("path", "matrix", False, "object", ";color=R,100,G,200,B,150"),
    ("path", "matrix", True, "primitive", ";color=blue"),
    ("path", "matrix", True, "array", ";color=blue;color=black;color=brown"),
    ("path", "matrix", True, "object", ";R=100;G=200;B=150"),
    ("path", "label", False, "primitive", ".blue"),
    ("path", "label", False, "array", ".blue.black.brown"),  # 3.1.0
    ("path", "label", False, "array", ".blue,black,brown"),  # 3.1.1, RFC 6570
    ("path", "label", False, "object", ".R.100.G.200.B.150"),  # 3.1.0
    ("path", "label", False, "object", ".R,100,G,200,B,150"),  # 3.1.1, RFC 6570
    ("path", "label", True, "primitive", ".blue"),
    ("path", "label", True, "array", ".blue.black.brown"),
    ("path", "label", True, "object", ".R=100.G=200.B=150"),
    ("path", "simple", False, "primitive", "blue"),
    ("path", "simple", False, "array", "blue,black,brown"),
    ("path", "simple", False, "object", "R,100,G,200,B,150"),
    ("path", "simple", True, "primitive", "blue"),
    ("path", "simple", True, "array", "blue,black,brown"),
    ("path", "simple", True, "object", "R=100,G=200,B=150"),
    ("header", "simple", False, "primitive", "blue"),
    ("header", "simple", False, "array", "blue,black,brown"),
    ("header", "simple", False, "object", "R,100,G,200,B,150"),
    ("header", "simple", True, "primitive", "blue"),
    ("header", "simple", True, "array", "blue,black,brown"),
    ("header", "simple", True, "object", "R=100,G=200,B=150"),
    ("query", "form", False, "primitive", "color=blue"),
    ("query", "form", False, "array", "color=blue,black,brown"),
    ("query", "form", False, "object", "color=R,100,G,200,B,150"),
    ("query", "form", True, "primitive", "color=blue"),
    ("query", "form", True, "array", "color=blue&color=black&color=brown"),
    ("query", "form", True, "object", "R=100&G=200&B=150"),
    ("query", "spaceDelimited", False, "array", "color=blue%20black%20brown"),
    ("query", "spaceDelimited", False, "array", "color=blue+black+brown"),
    ("query", "spaceDelimited", False, "object", "color=R%20100%20G%20200%20B%20150"),
    ("query", "pipeDelimited", False, "array", "color=blue|black|brown"),
    ("query", "pipeDelimited", False, "array", "color=blue%7Cblack%7Cbrown"),
    ("query", "pipeDelimited", False, "object", "color=R|100|G|200|B|150"),
    ("query", "pipeDelimited", False, "object", "color=R%7C100%7CG%7C200%7CB%7C150"),
    ("query", "tabDelimited", False, "array", "color=blue%09black%09brown"),
    ("query", "tabDelimited", False, "object", "color=R%09100%09G%09200%09B%09150"),
    ("query", "deepObject", True, "object", "color[R]=100&color[G]=200&color[B]=150"),
    ("query", "deepObject", True, "object", "color%5BR%5D=100&color%5BG%5D=200&color%5BB%5D=150"),
    ("cookie", "form", False, "primitive", "color=blue"),
    ("cookie", "form", False, "array", "color=blue,black,brown"),
    ("cookie", "form", False, "object", "color=R,100,G,200,B,150"),
    ("cookie", "form", True, "primitive", "color=blue"),
    ("cookie", "form", True, "object", "R=100; G=200; B=150"),
]


@pytest.mark.parametrize(("location", "style", "explode", "kind", "raw"), TABLE)
def test_style_examples_table(
    location: str, style: str, explode: bool, kind: str, raw: str
) -> None:
    assert read(location, style, explode, SCHEMAS[kind], raw) == VALUES[kind]


# The table's "empty" column (3.1.0) / "undefined" (3.1.1): the empty value of the kind.
EMPTY_ROWS = [
    ("path", "matrix", False, ";color"),
    ("path", "matrix", True, ";color"),
    ("path", "label", False, "."),
    ("path", "label", True, "."),
    ("path", "simple", False, ""),
    ("path", "simple", True, ""),
    ("header", "simple", False, ""),
    ("query", "form", False, "color="),
]


@pytest.mark.parametrize(("location", "style", "explode", "raw"), EMPTY_ROWS)
@pytest.mark.parametrize("kind", ["primitive", "array", "object"])
def test_style_examples_empty(
    location: str, style: str, explode: bool, raw: str, kind: str
) -> None:
    assert read(location, style, explode, SCHEMAS[kind], raw) == EMPTY[kind]


def test_exploded_form_empty_is_one_empty_item() -> None:
    # Exploded: each key is an item, so `color=` is the item "".
    assert read("query", "form", True, STRING, "color=") == ""
    assert read("query", "form", True, ARRAY, "color=") == [""]


def test_cookie_exploded_array_sees_only_the_first_cookie() -> None:
    assert read("cookie", "form", True, ARRAY, "color=blue; color=black") == ["blue"]


# --- coercion -------------------------------------------------------------------------

NULLABLE_STRING = {"type": "string", "nullable": True}

COERCION = [
    ({"type": "integer"}, "42", 42),
    ({"type": "integer"}, "-7", -7),
    ({"type": "integer"}, "0", 0),
    ({"type": "integer"}, "007", "007"),  # not a JSON literal
    ({"type": "integer"}, "1.0", "1.0"),
    ({"type": "integer"}, "1e3", "1e3"),
    ({"type": "integer"}, "+1", "+1"),
    ({"type": "integer"}, " 1", " 1"),
    ({"type": "integer"}, "1_000", "1_000"),
    ({"type": "integer"}, "١٢", "١٢"),  # Arabic-Indic digits: str.isdigit, not JSON
    ({"type": "integer"}, "abc", "abc"),
    ({"type": "integer"}, "", ""),
    ({"type": "integer"}, "9" * 5000, "9" * 5000),  # beyond int()'s digit limit
    ({"type": "number"}, "42", 42),
    ({"type": "number"}, "1.5", 1.5),
    ({"type": "number"}, "-1.5e3", -1500.0),
    ({"type": "number"}, "1E-2", 0.01),
    ({"type": "number"}, ".5", ".5"),
    ({"type": "number"}, "5.", "5."),
    ({"type": "number"}, "nan", "nan"),
    ({"type": "number"}, "Infinity", "Infinity"),
    ({"type": "number"}, "1e400", "1e400"),
    ({"type": "boolean"}, "true", True),
    ({"type": "boolean"}, "false", False),
    ({"type": "boolean"}, "True", "True"),
    ({"type": "boolean"}, "1", "1"),
    ({"type": "string"}, "42", "42"),
    ({}, "42", "42"),
    (NULLABLE_STRING, "", None),
    (NULLABLE_STRING, "null", None),
    (NULLABLE_STRING, "x", "x"),
    ({"type": "string"}, "", ""),
    ({"type": "string"}, "null", "null"),
    ({"type": ["integer", "null"]}, "null", None),
    ({"type": ["integer", "null"]}, "3", 3),
    ({"type": ["integer", "string"]}, "3", 3),
    ({"type": ["integer", "string"]}, "x", "x"),
    ({"type": ["boolean", "number"]}, "true", True),
    ({"enum": [1, 2, 3]}, "2", 2),
    ({"const": True}, "true", True),
    ({"enum": ["a", None]}, "", None),
    ({"$ref": "#/components/schemas/IntAlias"}, "5", 5),
    ({"anyOf": [{"type": "integer"}, {"type": "null"}]}, "5", 5),
    ({"anyOf": [{"type": "integer"}, {"type": "null"}]}, "null", None),
    ({"oneOf": [{"type": "integer"}, {"type": "boolean"}]}, "false", False),
    ({"allOf": [{"$ref": "#/components/schemas/Int"}], "nullable": True}, "", None),
    ({"type": "integer", "allOf": [{"type": "string"}]}, "5", 5),  # the first type decides
]


@pytest.mark.parametrize(("schema", "raw", "expected"), COERCION)
def test_coercion(schema: dict[str, Any], raw: str, expected: Any) -> None:
    got = read("path", "simple", False, schema, raw)
    assert got == expected
    assert type(got) is type(expected)


def test_coercion_of_items_and_properties() -> None:
    ints = {"type": "array", "items": {"type": "integer"}}
    assert read("query", "form", True, ints, "n=1&n=x&n=3", name="n") == [1, "x", 3]
    assert read("path", "simple", False, ints, "1,2") == [1, 2]
    mixed = {
        "type": "object",
        "properties": {"n": {"type": "number"}, "b": {"type": "boolean"}, "s": STRING},
        "additionalProperties": {"type": "integer"},
    }
    assert read("path", "simple", True, mixed, "n=1.5,b=true,s=7,extra=9") == {
        "n": 1.5,
        "b": True,
        "s": "7",
        "extra": 9,
    }
    refs = {"$ref": "#/components/schemas/Pet"}
    assert read("path", "simple", False, refs, "age,3") == {"age": 3}


def test_additional_properties_false_keeps_undeclared_values_as_strings() -> None:
    closed = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "additionalProperties": False,
    }
    assert read("path", "simple", False, closed, "a,1,b,2") == {"a": 1, "b": "2"}


# --- shapes ---------------------------------------------------------------------------

SHAPES = [
    ({"type": "string"}, "primitive", {"string"}),
    ({"type": ["string", "null"]}, "primitive", {"string", "null"}),
    ({"type": "array"}, "array", {"array"}),  # "array"/"object": the kind, not coerced
    ({"type": ["array", "null"]}, "array", {"array", "null"}),
    ({"type": "object", "nullable": True}, "object", {"object", "null"}),
    ({"items": {"type": "integer"}}, "array", {"array"}),
    ({"properties": {"a": {}}}, "object", {"object"}),
    ({"additionalProperties": {"type": "integer"}}, "object", {"object"}),
    ({}, "primitive", set()),
    (True, "primitive", set()),
    ({"$ref": "#/components/schemas/Pet"}, "object", {"object"}),
    ({"allOf": [{"$ref": "#/components/schemas/Pet"}, {"properties": {"x": {}}}]}, "object", {"object"}),
    ({"anyOf": [{"type": "array"}, {"type": "null"}]}, "array", {"array", "null"}),
    ({"anyOf": [{"type": "integer"}, {"type": "string"}]}, "primitive", {"integer", "string"}),
    ({"oneOf": [{"type": "array"}, {"type": "string"}]}, "primitive", {"string"}),  # ambiguous
    ({"oneOf": [{"type": "array"}, {"type": "object"}, {"type": "null"}]}, "primitive", {"string", "null"}),
    ({"type": ["array", "string"]}, "primitive", {"string"}),
    ({"type": "object", "oneOf": [{"required": ["a"]}, {"required": ["b"]}]}, "object", {"object"}),
    ({"anyOf": [{"type": "integer"}, {}]}, "primitive", {"integer"}),
    ({"type": "unknown"}, "primitive", set()),
    ({"$ref": "#/components/schemas/Loop"}, "primitive", set()),
]  # fmt: skip


@pytest.mark.parametrize(("schema", "kind", "types"), SHAPES)
def test_shape_of(schema: Any, kind: str, types: set[str]) -> None:
    shape = shape_of(schema, resolve)
    assert isinstance(shape, Shape)
    assert (shape.kind, set(shape.types)) == (kind, types)


def test_shape_of_merges_properties_and_stops_at_cycles() -> None:
    shape = shape_of(
        {"allOf": [{"$ref": "#/components/schemas/Pet"}, {"properties": {"name": STRING}}]},
        resolve,
    )
    assert set(shape.properties) == {"age", "name"}
    assert shape.properties["age"].types == {"integer"}
    tree = shape_of({"$ref": "#/components/schemas/Tree"}, resolve)
    assert tree.properties["child"].kind == "object"  # depth-limited, no RecursionError


def test_shape_free_form() -> None:
    assert shape_of({"type": "object"}, resolve).free_form
    assert shape_of({"type": "object", "additionalProperties": True}, resolve).free_form
    assert shape_of({"properties": {"a": {}}, "additionalProperties": {}}, resolve).free_form
    assert not shape_of({"properties": {"a": {}}}, resolve).free_form
    closed = shape_of({"type": "object", "additionalProperties": False}, resolve)
    assert not closed.free_form
    assert closed.additional is None


# --- MISSING --------------------------------------------------------------------------

MISSING_CASES = [
    ("query", "form", True, STRING, "other=1"),
    ("query", "form", False, ARRAY, "other=1"),
    ("query", "form", True, ARRAY, ""),
    ("query", "form", True, OBJECT, "other=1"),
    ("query", "form", False, OBJECT, "other=1"),
    ("query", "spaceDelimited", False, ARRAY, "other=1"),
    ("query", "deepObject", True, OBJECT, "other[R]=1"),
    ("cookie", "form", True, STRING, "other=1"),
    ("cookie", "form", True, OBJECT, "other=1"),
    ("cookie", "form", False, ARRAY, ""),
    ("header", "simple", False, STRING, None),
    ("header", "simple", False, ARRAY, None),
]


@pytest.mark.parametrize(("location", "style", "explode", "schema", "raw"), MISSING_CASES)
def test_missing(location: str, style: str, explode: bool, schema: Any, raw: Any) -> None:
    assert read(location, style, explode, schema, raw) is MISSING


def test_missing_repr() -> None:
    assert repr(MISSING) == "MISSING"


# --- StyleError -----------------------------------------------------------------------

ERRORS = [
    ("path", "label", False, STRING, "blue", "expected .x (label style), got 'blue'"),
    ("path", "label", True, ARRAY, "blue", "expected .x.y (label style, explode=true)"),
    ("path", "matrix", False, STRING, "color=blue", "expected ;color=x (matrix style)"),
    ("path", "matrix", False, STRING, ";colour=blue", "the name must be 'color'"),
    (
        "path",
        "matrix",
        False,
        {"type": "array", "items": {"type": "integer"}},
        ";id=1,2",
        "expected ;color=1,2 (matrix style, explode=false), got ';id=1,2'",
    ),
    ("path", "matrix", True, ARRAY, ";color=a;colour=b", "each item is written color=<value>"),
    ("path", "matrix", True, OBJECT, "R=1", "a matrix value starts with ';'"),
    ("path", "matrix", True, OBJECT, ";R=1;G", "'G' has no '='"),
    ("path", "matrix", False, OBJECT, ";color=R,1,G", "keys and values must alternate"),
    ("path", "label", False, OBJECT, ".R,1,G", "expected .R,1,G,2 (label style, explode=false)"),
    ("path", "label", True, OBJECT, ".R=1.G", "expected .R=1.G=2 (label style, explode=true)"),
    ("path", "simple", False, OBJECT, "R,100,G", "expected R,1,G,2 (simple style, explode=false)"),
    ("path", "simple", True, OBJECT, "R=100,G", "expected R=1,G=2 (simple style, explode=true)"),
    ("header", "simple", False, OBJECT, "R,1,G", "keys and values must alternate"),
    ("query", "form", False, OBJECT, "color=R,1,G", "expected color=R,1,G,2 (form style"),
    ("query", "pipeDelimited", False, OBJECT, "color=R|1|G", "expected color=R|1|G|2"),
    ("query", "spaceDelimited", False, OBJECT, "color=R+1+G", "expected color=R%201%20G%202"),
    ("query", "deepObject", True, OBJECT, "color=R,1", "expected color[R]=1&color[G]=2"),
    ("query", "deepObject", True, OBJECT, "color[R=1", "a property is written color[property]"),
    ("cookie", "form", False, OBJECT, "color=R,1,G", "keys and values must alternate"),
]


@pytest.mark.parametrize(("location", "style", "explode", "schema", "raw", "message"), ERRORS)
def test_style_errors(
    location: str, style: str, explode: bool, schema: Any, raw: str, message: str
) -> None:
    with pytest.raises(StyleError) as caught:
        read(location, style, explode, schema, raw)
    assert message in caught.value.message
    assert str(caught.value) == caught.value.message
    assert (caught.value.name, caught.value.location) == ("color", location)


def test_style_error_truncates_long_input() -> None:
    with pytest.raises(StyleError) as caught:
        read("path", "label", False, STRING, "x" * 1000)
    assert len(caught.value.message) < 200


@pytest.mark.parametrize(
    ("location", "style"),
    [
        ("query", "matrix"),
        ("query", "simple"),
        ("path", "form"),
        ("path", "deepObject"),
        ("header", "form"),
        ("cookie", "label"),
        ("query", "nonsense"),
    ],
)
def test_unsupported_style(location: str, style: str) -> None:
    with pytest.raises(UnsupportedStyle, match=f"style '{style}' is not defined"):
        ParamReader("color", location, style, False, STRING, resolve)


# --- query parameters beyond the table ------------------------------------------------


def test_repeated_key_for_a_non_array_takes_the_first() -> None:
    assert read("query", "form", True, {"type": "integer"}, "color=1&color=2") == 1
    assert read("query", "form", False, OBJECT, "color=R,1&color=G,2") == {"R": 1}


def test_repeated_key_for_a_non_exploded_array_concatenates() -> None:
    ints = {"type": "array", "items": {"type": "integer"}}
    assert read("query", "form", False, ints, "color=1,2&color=3") == [1, 2, 3]
    assert read("query", "pipeDelimited", False, ints, "color=1|2&color=3") == [1, 2, 3]


def test_exploded_form_array_does_not_split_commas() -> None:
    assert read("query", "form", True, ARRAY, "color=a,b&color=c") == ["a,b", "c"]


@pytest.mark.parametrize("style", ["spaceDelimited", "pipeDelimited", "tabDelimited"])
def test_exploded_delimited_reads_repeated_keys(style: str) -> None:
    assert read("query", style, True, ARRAY, "color=blue&color=black") == ["blue", "black"]


@pytest.mark.parametrize("style", ["spaceDelimited", "pipeDelimited", "tabDelimited"])
def test_delimited_primitive_is_not_split(style: str) -> None:
    assert read("query", style, False, STRING, "color=a%20b|c%09d") == "a b|c\td"


def test_exploded_form_object_rules() -> None:
    declared = {"type": "object", "properties": {"R": {"type": "integer"}, "tags": ARRAY}}
    raw = "R=1&tags=a&tags=b&other=x"
    assert read("query", "form", True, declared, raw) == {"R": 1, "tags": ["a", "b"]}
    free = {"type": "object", "additionalProperties": {"type": "integer"}}
    raw = "a=1&b=x&page=2&filter[x]=1&c=3&c=4"
    claimed = frozenset({"page", "filter"})
    assert read("query", "form", True, free, raw, claimed=claimed) == {"a": 1, "b": "x", "c": 3}
    untyped = {"type": "object"}
    assert read("query", "form", True, untyped, "a=1", claimed=claimed) == {"a": "1"}
    assert read("query", "form", True, untyped, "page=1", claimed=claimed) is MISSING
    # A declared property is read even when another parameter has the same name.
    both = frozenset({"R"})
    assert read("query", "form", True, declared, "R=1", claimed=both) == {"R": 1}


def test_deep_object() -> None:
    schema = {
        "type": "object",
        "properties": {"min": {"type": "integer"}, "tags": {"type": "array", "items": {}}},
        "additionalProperties": {"type": "boolean"},
    }
    raw = "f[min]=1&f[min]=2&f[tags]=a&f[tags]=b&f[on]=true&g[min]=9&f[a][b]=c&f[]=e&f=1"
    assert read("query", "deepObject", True, schema, raw, name="f") == {
        "min": 1,
        "tags": ["a", "b"],
        "on": True,
        "a][b": "c",  # nested keys stay flat
        "": "e",
    }
    closed = {"type": "object", "properties": {"a": {}}, "additionalProperties": False}
    # Undeclared properties are kept, as strings, for the validator to reject.
    assert read("query", "deepObject", True, closed, "f[z]=1", name="f") == {"z": "1"}


def test_content_parameters() -> None:
    schema = {"type": "object"}
    mt = "application/json"
    assert read("query", "form", True, schema, 'q={"a":[1,2]}', name="q", media_type=mt) == {
        "a": [1, 2]
    }
    assert read("query", "form", True, schema, "q=%7B%22a%22%3A1%7D", name="q", media_type=mt) == {
        "a": 1
    }
    assert read("query", "form", True, schema, "", name="q", media_type=mt) is MISSING
    assert read("path", "simple", False, schema, "[1, 2]", media_type=mt) == [1, 2]
    assert (
        read("header", "simple", False, schema, '"x"', media_type="application/vnd.a+json") == "x"
    )
    assert read("cookie", "form", True, schema, "c=%7B%22a%22%3A1%7D", name="c", media_type=mt) == {
        "a": 1
    }
    # Not JSON: the raw string, uncoerced.
    assert (
        read("query", "form", True, {"type": "integer"}, "q=1", name="q", media_type="text/plain")
        == "1"
    )
    with pytest.raises(StyleError, match=re.escape("application/json content, got '{nope'")):
        read("query", "form", True, schema, "q={nope", name="q", media_type=mt)
    with pytest.raises(StyleError, match="not valid JSON"):
        read("path", "simple", False, schema, "", media_type="application/json; charset=utf-8")
    # Integers past 64 bits stay integers (orjson read them as floats).
    big = 157014853427119947776
    assert read("path", "simple", False, schema, f'{{"a":{big}}}', media_type=mt) == {"a": big}
    # Nested past what can be read: refused, not a RecursionError out of the reader.
    with pytest.raises(StyleError, match="not valid JSON: nested too deeply"):
        read("path", "simple", False, schema, "[" * 100_000, media_type=mt)


def test_json_text_in_a_value_keeps_big_integers() -> None:
    ints = {"type": "array", "items": {"type": "integer"}}
    items = {"type": "array", "items": ints}  # an item a form can not write: JSON text
    got = read("query", "form", True, items, "q=[1,18446744073709551617]", name="q")
    assert got == [[1, 2**64 + 1]] and type(got[0][1]) is int
    deep = "[" * 100_000
    assert read("query", "form", True, items, f"q={deep}", name="q") == [deep]  # kept as text


# --- headers and cookies --------------------------------------------------------------


def test_header_items_are_stripped_and_lists_joined() -> None:
    ints = {"type": "array", "items": {"type": "integer"}}
    assert read("header", "simple", False, ints, "1, 2 ,3") == [1, 2, 3]
    assert read("header", "simple", False, ints, ["1, 2", "3"]) == [1, 2, 3]
    assert read("header", "simple", True, OBJECT, "R=1, G = 2") == {"R": 1, "G": 2}
    assert read("header", "simple", False, {"type": "integer"}, " 5 ") == 5


def test_header_delimited_styles_from_swagger_2() -> None:
    assert read("header", "spaceDelimited", False, ARRAY, "a b") == ["a", "b"]
    assert read("path", "pipeDelimited", False, ARRAY, "a|b") == ["a", "b"]
    # Space and tab can not be in a cookie value unencoded: decoded before the split.
    assert read("cookie", "tabDelimited", False, ARRAY, "color=a%09b") == ["a", "b"]
    assert read("cookie", "spaceDelimited", False, ARRAY, "color=a%20b") == ["a", "b"]
    assert read("cookie", "pipeDelimited", False, ARRAY, "color=a%7C|b") == ["a|", "b"]


def test_cookie_values_are_split_then_percent_decoded() -> None:
    assert read("cookie", "form", False, ARRAY, "color=a%2Cb,c") == ["a,b", "c"]
    assert read("cookie", "form", False, STRING, "color=a%20b") == "a b"
    assert read("cookie", "form", False, OBJECT, "color=R,1%30") == {"R": 10}


def test_cookie_exploded_object_rules() -> None:
    free = {"type": "object", "additionalProperties": {"type": "integer"}}
    raw = "a=1; session=abc; b=%32"
    assert read("cookie", "form", True, free, raw, claimed=frozenset({"session"})) == {
        "a": 1,
        "b": 2,
    }


COOKIES = [
    ([], {}),
    ([""], {}),
    (["a=1"], {"a": "1"}),
    (["a=1; b=2"], {"a": "1", "b": "2"}),
    (["a=1;b=2"], {"a": "1", "b": "2"}),
    (["  a = 1 ;  b=2  "], {"a": "1", "b": "2"}),
    (["a=1; a=2"], {"a": "1"}),
    (["a=1", "a=2; b=3"], {"a": "1", "b": "3"}),
    (['a="quoted value"'], {"a": "quoted value"}),
    (['a="'], {"a": '"'}),
    (["a=b=c"], {"a": "b=c"}),
    (["a="], {"a": ""}),
    (["novalue; a=1"], {"a": "1"}),
    (["=x; a=1"], {"a": "1"}),
    (["a=%41"], {"a": "%41"}),
    (["a=1;;; b=2;"], {"a": "1", "b": "2"}),
]


@pytest.mark.parametrize(("headers", "expected"), COOKIES)
def test_parse_cookies(headers: list[str], expected: dict[str, str]) -> None:
    assert parse_cookies(headers) == expected


QUERIES = [
    ("", {}),
    ("a=1", {"a": ["1"]}),
    ("a=1&b=2&a=3", {"a": ["1", "3"], "b": ["2"]}),
    ("a", {"a": [""]}),
    ("a=", {"a": [""]}),
    ("a&a=", {"a": ["", ""]}),
    ("&&a=1&&", {"a": ["1"]}),
    ("&", {}),
    ("=x", {"": ["x"]}),
    ("a=1=2", {"a": ["1=2"]}),
    ("a=x+y", {"a": ["x y"]}),
    ("a+b=1", {"a b": ["1"]}),
    ("a=%2B", {"a": ["+"]}),
    ("a=%20%26%3D", {"a": [" &="]}),
    ("a%3Db=c", {"a=b": ["c"]}),
    ("a%5B0%5D=1", {"a[0]": ["1"]}),
    ("a=%E2%82%AC", {"a": ["€"]}),
    ("a=%C3%A9t%C3%A9", {"a": ["été"]}),
    ("a=%FF", {"a": ["\ufffd"]}),  # invalid UTF-8 -> U+FFFD
    ("a=%zz%", {"a": ["%zz%"]}),  # malformed escapes stay as written
    ("a=%41%42c", {"a": ["ABc"]}),
    ("a=1;b=2", {"a": ["1;b=2"]}),  # `;` is not a separator (WHATWG)
    ("a=é%C3%A9", {"a": ["éé"]}),  # non-ASCII as received, next to escapes
    ("a=\udcff%41", {"a": ["\udcffA"]}),  # a lone surrogate from the caller's decoding
]


@pytest.mark.parametrize(("raw", "expected"), QUERIES)
def test_parse_query(raw: str, expected: dict[str, list[str]]) -> None:
    assert parse_query(raw) == expected


def test_parse_query_keeps_order() -> None:
    assert list(parse_query("z=1&a=2&m=3")) == ["z", "a", "m"]


def test_reader_attributes() -> None:
    reader = ParamReader("color", "path", "matrix", True, ARRAY, resolve)
    assert reader.shape.kind == "array"
    assert "matrix" in repr(reader)


# --- deepObject as real APIs write it (Stripe, `qs`) -----------------------------------

EXPAND = {"type": "array", "items": {"type": "string", "maxLength": 5000}}
# Stripe's `created`: `anyOf: [range_query_specs, integer]`.
CREATED = {
    "anyOf": [
        {
            "type": "object",
            "title": "range_query_specs",
            "properties": {k: {"type": "integer"} for k in ("gt", "gte", "lt", "lte")},
        },
        {"type": "integer"},
    ]
}


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("expand[]=customer", ["customer"]),
        ("expand[]=customer&expand[]=invoice", ["customer", "invoice"]),
        ("expand[0]=customer", ["customer"]),
        ("expand[1]=invoice&expand[0]=customer", ["customer", "invoice"]),
        ("expand[10]=k&expand[2]=c", ["c", "k"]),  # by number, not by text
        ("expand%5B0%5D=customer", ["customer"]),
        ("expand=customer&expand=invoice", ["customer", "invoice"]),  # repeated bare keys
        ("other[0]=x", MISSING),
    ],
)
def test_deep_object_arrays(raw: str, value: Any) -> None:
    assert read("query", "deepObject", True, EXPAND, raw, name="expand") == value


def test_deep_object_array_items_are_coerced() -> None:
    ints = {"type": "array", "items": {"type": "integer"}}
    assert read("query", "deepObject", True, ints, "n[]=1&n[]=x", name="n") == [1, "x"]


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("created[gt]=5", {"gt": 5}),
        ("created[gt]=5&created[lte]=9", {"gt": 5, "lte": 9}),
        ("created=5", 5),
        ("created=soon", "soon"),  # kept a string, for the validator to refuse
        ("created[gt]=soon", {"gt": "soon"}),
    ],
)
def test_deep_object_any_of_object_and_integer(raw: str, value: Any) -> None:
    assert read("query", "deepObject", True, CREATED, raw, name="created") == value


def test_shape_of_an_ambiguous_schema_keeps_its_branches() -> None:
    shape = shape_of(CREATED, resolve)
    assert (shape.kind, shape.types) == ("primitive", {"string", "integer"})
    assert shape.as_object is not None
    assert shape.as_object.properties["gt"].types == {"integer"}
    assert shape.as_array is None
    either = shape_of({"anyOf": [EXPAND, {"type": "string"}]}, resolve)
    assert either.as_array is not None and either.as_object is None
    assert either.types == {"string"}
    listed = shape_of({"type": ["array", "string"], "items": {"type": "integer"}}, resolve)
    assert listed.as_array is not None
    assert listed.as_array.items is not None and listed.as_array.items.types == {"integer"}


def test_deep_object_any_of_array_and_string() -> None:
    schema = {"anyOf": [EXPAND, {"type": "string", "enum": [""]}]}  # Stripe's `ids`-style
    assert read("query", "deepObject", True, schema, "f[]=a&f[]=b", name="f") == ["a", "b"]
    assert read("query", "deepObject", True, schema, "f=", name="f") == ""
    # A repeated bare key is a list: no scalar is written twice.
    assert read("query", "deepObject", True, schema, "f=a&f=b", name="f") == ["a", "b"]
    assert read("query", "deepObject", True, schema, "f=a", name="f") == "a"


# Stripe's GET /v1/credit_notes/preview: `lines` items' `tax_rates` is a list or "".
TAX_RATES = {"anyOf": [EXPAND, {"type": "string", "enum": [""]}]}
LINES = {
    "type": "array",
    "items": {"type": "object", "properties": {"type": {"type": "string"}, "tax_rates": TAX_RATES}},
}


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        # repeated keys (how MCP tools wrote it before: the one false reject left in
        # the whole-directory differential run)
        (
            "lines[0][tax_rates]=a&lines[0][tax_rates]=b",
            [{"tax_rates": ["a", "b"]}],
        ),
        ("lines[0][tax_rates][0]=a&lines[0][tax_rates][1]=b", [{"tax_rates": ["a", "b"]}]),
        ("lines[0][tax_rates][0]=a", [{"tax_rates": ["a"]}]),
        ("lines[0][tax_rates]=", [{"tax_rates": ""}]),
        ("lines[0][tax_rates]=a", [{"tax_rates": "a"}]),  # one key: the scalar, as Rack reads it
        # a property that is only a scalar keeps the first of repeated keys
        ("lines[0][type]=x&lines[0][type]=y", [{"type": "x"}]),
    ],
)
def test_deep_object_repeated_keys_are_a_list_where_the_schema_allows_one(
    raw: str, value: Any
) -> None:
    assert read("query", "deepObject", True, LINES, raw, name="lines") == value


def test_exploded_form_repeated_key_is_a_list_where_the_schema_allows_one() -> None:
    assert read("query", "form", True, TAX_RATES, "color=a&color=b") == ["a", "b"]
    assert read("query", "form", True, TAX_RATES, "color=a") == "a"
    assert read("query", "form", True, TAX_RATES, "color=") == ""
    objects = {"type": "object", "properties": {"t": TAX_RATES}}
    assert read("query", "form", True, objects, "t=a&t=b") == {"t": ["a", "b"]}


@pytest.mark.parametrize(
    ("schema", "raw", "message"),
    [
        (OBJECT, "color=R,1", "expected color[R]=1&color[G]=2"),  # no scalar branch
        (
            {"anyOf": [*CREATED["anyOf"], EXPAND]},
            "color[gt]=1&color[]=2",
            "both array items and object properties",
        ),
    ],
)
def test_deep_object_still_refuses(schema: Any, raw: str, message: str) -> None:
    with pytest.raises(StyleError) as caught:
        read("query", "deepObject", True, schema, raw)
    assert message in caught.value.message


def test_deep_object_odd_indexes_are_properties_or_ordered() -> None:
    # `²` is a digit to str.isdigit but no index; 19+ digits keep the order given.
    assert read("query", "deepObject", True, EXPAND, "e[²]=a", name="e") == {"²": "a"}
    big = "9" * 5000
    assert read("query", "deepObject", True, EXPAND, f"e[{big}]=a&e[1]=b", name="e") == [
        "a",
        "b",
    ]


# Stripe's `lines` (GET /v1/credit_notes/preview/lines) and `customer_details`
# (GET /v1/invoices/upcoming), cut down: arrays of objects inside deepObject.
LINES = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "type": {"type": "string"},
            "quantity": {"type": "integer"},
            "tax_rates": {"anyOf": [{"type": "array", "items": {}}, {"enum": [""]}]},
        },
    },
}
DETAILS = {
    "type": "object",
    "properties": {
        "tax_ids": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"type": {"type": "string"}, "n": {"type": "integer"}},
            },
        },
        "address": {
            "anyOf": [
                {"type": "object", "properties": {"line1": {"type": "string"}}},
                {"enum": [""]},
            ]
        },
    },
}


@pytest.mark.parametrize(
    ("schema", "raw", "value"),
    [
        (
            LINES,
            "l[0][type]=a&l[0][quantity]=2&l[1][type]=b&l[1][tax_rates][0]=t",
            [{"type": "a", "quantity": 2}, {"type": "b", "tax_rates": ["t"]}],
        ),
        (LINES, "l[1][type]=b&l[0][type]=a", [{"type": "a"}, {"type": "b"}]),
        (LINES, "l[0][tax_rates]=", [{"tax_rates": ""}]),
        (
            DETAILS,
            "l[tax_ids][0][type]=eu_vat&l[tax_ids][0][n]=7&l[address][line1]=x",
            {"tax_ids": [{"type": "eu_vat", "n": 7}], "address": {"line1": "x"}},
        ),
        (DETAILS, "l[address]=", {"address": ""}),
        # An array item written as JSON text (what an MCP tool sends this deep).
        (DETAILS, 'l[tax_ids]={"type":"x","n":1}', {"tax_ids": [{"type": "x", "n": 1}]}),
        (DETAILS, "l[tax_ids]={oops", {"tax_ids": ["{oops"]}),  # kept, for the validator
    ],
)
def test_deep_object_nests_where_the_schema_does(schema: Any, raw: str, value: Any) -> None:
    assert read("query", "deepObject", True, schema, raw, name="l") == value


def test_deep_object_refuses_a_value_beside_its_items() -> None:
    with pytest.raises(StyleError, match="both a value and items"):
        read("query", "deepObject", True, DETAILS, "l[tax_ids]=x&l[tax_ids][0][n]=1", name="l")


def test_structured_items_take_json_text() -> None:
    # Box's `mdfilters`: an array of objects in form style, each item JSON.
    filters = {"type": "array", "items": {"type": "object", "properties": {"scope": {}}}}
    raw = 'm={"scope":"enterprise"}&m=[1]'
    assert read("query", "form", True, filters, raw, name="m") == [{"scope": "enterprise"}, "[1]"]
    nested = {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}}
    assert read("query", "form", True, nested, "m=[1,2]&m=3", name="m") == [[1, 2], "3"]
