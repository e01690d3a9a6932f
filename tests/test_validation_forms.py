"""URL-encoded form bodies read with their `encoding` and checked against the body schema."""

from __future__ import annotations

from typing import Any

import pytest

from runmcp_fast.openapi import load_spec_data
from runmcp_fast.validation import Bundler, compile_operation

FORM = "application/x-www-form-urlencoded"


def validator(schema: dict[str, Any], encoding: dict[str, Any] | None = None) -> Any:
    media: dict[str, Any] = {"schema": schema}
    if encoding:
        media["encoding"] = encoding
    spec = load_spec_data(
        {
            "openapi": "3.1.0",
            "info": {"title": "t", "version": "1"},
            "paths": {
                "/things": {
                    "post": {
                        "operationId": "make",
                        "requestBody": {"content": {FORM: media}},
                        "responses": {"200": {"description": "ok"}},
                    }
                }
            },
        },
        source="inline",
    )
    return compile_operation(spec, spec.operations[0], Bundler(spec))


def issues(schema: dict[str, Any], body: bytes, encoding: dict[str, Any] | None = None) -> Any:
    verdict = validator(schema, encoding).head(b"/things", None, None, FORM.encode(), has_body=True)
    assert verdict is not None and verdict.body is not None  # buffered, then checked
    assert verdict.program is None  # no byte checker for forms
    done = verdict.finish(body)
    return None if done is None else [(i.pointer, i.keyword) for i in done.issues]


THING = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "count": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "ids": {"type": "array", "items": {"type": "integer"}},
        "meta": {"type": "object", "additionalProperties": {"type": "integer"}},
        "a/b": {"type": "boolean"},
    },
}
ENCODING = {"ids": {"style": "form", "explode": False}, "meta": {"style": "deepObject"}}


@pytest.mark.parametrize(
    "body",
    [
        b"name=x",
        b"name=x&count=-3&tags=a&tags=b&ids=1,2,3&meta[k]=1&a%2Fb=true",
        b"name=a+b%26c",
    ],
)
def test_valid_forms(body: bytes) -> None:
    assert issues(THING, body, ENCODING) is None


@pytest.mark.parametrize(
    ("body", "found"),
    [
        (b"count=1", [("/body/name", "required")]),
        (b"name=x&count=one", [("/body/count", "type")]),
        (b"name=x&ids=1,x", [("/body/ids/1", "type")]),
        (b"name=x&meta[k]=z", [("/body/meta/k", "type")]),
        (b"name=x&other=1", [("/body/other", "additionalProperties")]),
        (b"name=x&a%2Fb=maybe", [("/body/a~1b", "type")]),
        (b"name=x&meta=1", [("/body/meta", "style")]),  # not deepObject
    ],
)
def test_invalid_forms(body: bytes, found: list[tuple[str, str]]) -> None:
    got = issues(THING, body, ENCODING)
    assert got is not None
    assert [(p, k) for p, k in got if (p, k) in found] == found, got


def test_a_form_without_a_schema_streams_unchecked() -> None:
    spec = load_spec_data(
        {
            "openapi": "3.1.0",
            "info": {"title": "t", "version": "1"},
            "paths": {
                "/things": {
                    "post": {
                        "requestBody": {"content": {FORM: {}}},
                        "responses": {"200": {"description": "ok"}},
                    }
                }
            },
        },
        source="inline",
    )
    v = compile_operation(spec, spec.operations[0], Bundler(spec))
    assert v.head(b"/things", None, None, FORM.encode(), has_body=True) is None
