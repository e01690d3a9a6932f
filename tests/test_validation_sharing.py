"""What a spec's compiled contracts share (issue #16: memory per worker with big specs).

Operations with equal schemas share one validator, equal parameters one ParamCheck,
and bundles reaching the same definitions one `$defs` dict; different content is
never shared. Pure logic: the decisions themselves are tested elsewhere.
"""

from __future__ import annotations

from typing import Any

from runmcp_fast.openapi import load_spec_data
from runmcp_fast.validation import Bundler, compile_operation
from runmcp_fast.validation.schema import _content_key


def _spec() -> Any:
    limit = {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 10}}
    pet = {"$ref": "#/components/schemas/Pet"}
    ok = {"200": {"description": "ok"}}

    def op(op_id: str, *params: dict[str, Any], body: Any = None) -> dict[str, Any]:
        out: dict[str, Any] = {"operationId": op_id, "parameters": list(params), "responses": ok}
        if body is not None:
            out["requestBody"] = {"content": {"application/json": {"schema": body}}}
        return out

    return load_spec_data(
        {
            "openapi": "3.1.0",
            "info": {"title": "t", "version": "1"},
            "paths": {
                "/a": {"post": op("a", limit, body=pet)},
                "/b": {"post": op("b", limit, body=pet)},
                "/c": {
                    "post": op(
                        "c",
                        {**limit, "schema": {"type": "integer", "maximum": 11}},
                        body={"type": "array", "items": pet},
                    )
                },
            },
            "components": {
                "schemas": {
                    "Pet": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string"},
                            "tag": {"$ref": "#/components/schemas/Tag"},
                        },
                    },
                    "Tag": {"type": "string", "maxLength": 5},
                }
            },
        },
        source="inline",
    )


def test_equal_schemas_and_parameters_share_their_compiled_forms() -> None:
    spec = _spec()
    bundler = Bundler(spec)
    a, b, c = (compile_operation(spec, op, bundler) for op in spec.operations)
    # The same parameter, the same body schema: one of each.
    assert a.query_params[0] is b.query_params[0]
    assert a.bodies["application/json"] is b.bodies["application/json"]
    # A different bound, a different body: their own, and checked as such.
    assert c.query_params[0] is not a.query_params[0]
    assert c.query_params[0].validator is not a.query_params[0].validator
    assert c.bodies["application/json"] is not a.bodies["application/json"]
    body = c.bodies["application/json"]
    assert body is not None and a.bodies["application/json"] is not None
    assert body.check_json(b'[{"name": "x", "tag": "short"}]') is None
    assert body.check_json(b'[{"name": "x", "tag": "too long"}]')
    assert a.bodies["application/json"].check_json(b'{"name": "x"}') is None


def test_bundles_reaching_the_same_definitions_share_one_defs_dict() -> None:
    spec = _spec()
    bundler = Bundler(spec)
    pet = {"$ref": "#/components/schemas/Pet"}
    first = bundler.bundle(pet, "inline", "/x")
    second = bundler.bundle({"type": "array", "items": pet}, "inline", "/y")
    assert sorted(first["$defs"]) == ["Pet", "Tag"]
    assert first["$defs"] is second["$defs"]
    tag_only = bundler.bundle({"$ref": "#/components/schemas/Tag"}, "inline", "/z")
    assert list(tag_only["$defs"]) == ["Tag"]
    assert tag_only["$defs"]["Tag"] is first["$defs"]["Tag"]


def test_the_content_key_tells_content_apart_not_identity() -> None:
    spec = _spec()
    bundler = Bundler(spec)
    library = bundler.library
    pet = {"$ref": "#/components/schemas/Pet"}
    bundled = bundler.bundle(pet, "inline", "/x")
    # Equal content, other dicts (the library's digests or none): the same key.
    copy = {**bundled, "$defs": {k: dict(v) for k, v in bundled["$defs"].items()}}
    assert _content_key(bundled, library) == _content_key(copy, library)
    assert _content_key(copy, library) == _content_key(copy, Bundler(spec).library)
    # One definition changed: another key.
    other = {**copy, "$defs": {**copy["$defs"], "Tag": {"type": "string", "maxLength": 6}}}
    assert _content_key(other, library) != _content_key(copy, library)
    assert _content_key({"type": "string"}, None) != _content_key({"type": "integer"}, None)


def test_a_free_form_exploded_object_leaves_the_other_parameters_their_keys() -> None:
    """`A` (form, exploded, free-form: any integer member) beside `q`: `?x=1&q=abc` is
    A = {x: 1} and q = "abc", not A.q = "abc" (refused: not an integer). The object is
    compiled per operation then, since which keys are others' differs; a parameter that
    takes no undeclared keys is still shared."""
    free = {"type": "object", "additionalProperties": {"type": "integer"}}

    def op(op_id: str, other: str) -> dict[str, Any]:
        return {
            "operationId": op_id,
            "parameters": [
                {"name": "A", "in": "query", "schema": free},
                {"name": other, "in": "query", "schema": {"type": "string"}},
                {"name": "limit", "in": "query", "schema": {"type": "integer"}},
            ],
            "responses": {"200": {"description": "ok"}},
        }

    spec = load_spec_data(
        {
            "openapi": "3.1.0",
            "info": {"title": "t", "version": "1"},
            "paths": {"/a": {"get": op("a", "q")}, "/b": {"get": op("b", "r")}},
        },
        source="inline",
    )
    bundler = Bundler(spec)
    a, b = (compile_operation(spec, o, bundler) for o in spec.operations)
    assert a.head(b"/a?x=1&q=abc", {}, None, None, False) is None
    assert a.head(b"/a?x=1&q=abc&limit=5", {}, None, None, False) is None
    refused = a.head(b"/a?x=one&q=abc", {}, None, None, False)
    assert refused is not None and [i.pointer for i in refused.issues] == ["/query/A/x"]
    # `r` is not `a`'s: there it is A's member, and not an integer.
    refused = a.head(b"/a?r=abc", {}, None, None, False)
    assert refused is not None and [i.pointer for i in refused.issues] == ["/query/A/r"]
    assert b.head(b"/b?x=1&r=abc", {}, None, None, False) is None
    (a_obj, _, a_limit), (b_obj, _, b_limit) = a.query_params, b.query_params
    assert a_obj is not b_obj and a_limit is b_limit
