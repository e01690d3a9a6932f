"""Path and query parameters decided in C (`ContractStep`, `PlainParam`) agree with the
Python check.

The data plane checks a plain ASCII path segment or query value itself, as the JSON text of the value
the slow path would coerce it to, and leaves anything else to `OperationValidator.head`.
Every value below goes through a real gateway to a real upstream, and the answer must be
what `head` alone decides for the same segment: forwarded (200 from the upstream) when it
finds nothing wrong, refused (400) otherwise, whichever path decided.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import pytest
from aiohttp import web
from servers import Harness, RawClient

from runmcp_fast.openapi import load_spec_data
from runmcp_fast.validation import Bundler, compile_operation

SCHEMAS: dict[str, dict[str, Any]] = {
    "int": {"type": "integer", "minimum": 1, "maximum": 1000},
    "num": {"type": "number", "exclusiveMaximum": 10},
    "bool": {"type": "boolean"},
    "enum": {"type": "string", "enum": ["open", "closed", "a b", "1"]},
    "pattern": {"type": "string", "pattern": "^[a-z]+-[0-9]+$"},
    "uuid": {"type": "string", "format": "uuid"},
    "nullable": {"type": "integer", "nullable": True},
    "short": {"type": "string", "maxLength": 3},
    "intorstr": {"oneOf": [{"type": "integer"}, {"type": "string", "minLength": 4}]},
    "any": {"type": "string"},
}

VALUES = [
    "1",
    "0",
    "1000",
    "1001",
    "-1",
    "-0",
    "042",
    "1.5",
    "9.99",
    "1e3",
    "true",
    "false",
    "null",
    "abc",
    "abcd",
    "open",
    "closed",
    "a%20b",
    "open%22",
    "%E2%82%AC",
    "%31",
    "ab-12",
    "AB-12",
    "ab-",
    "123e4567-e89b-12d3-a456-426614174000",
    "123e4567-e89b-12d3-a456-42661417400",
    "9" * 18,
    "9" * 19,
    "-" + "9" * 18,
    "x" * 300,
    "%5C",
    "a'b",
    "~tilde",
]


def spec_data() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for name, schema in SCHEMAS.items():
        paths[f"/{name}/{{v}}"] = {
            "get": {
                "operationId": f"get_{name}",
                "parameters": [{"name": "v", "in": "path", "required": True, "schema": schema}],
                "responses": {"200": {"description": "ok"}},
            },
            # The same parameter with a JSON body: the body's verdict is then looked up
            # by the data plane too (no `head` call) once the parameter passed in C.
            "post": {
                "operationId": f"post_{name}",
                "parameters": [{"name": "v", "in": "path", "required": True, "schema": schema}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"type": "object", "required": ["n"]},
                        }
                    },
                },
                "responses": {"200": {"description": "ok"}},
            },
        }
    limit = {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 9}}
    paths["/query/{v}"] = {
        "get": {
            "operationId": "get_query",
            "parameters": [
                {"name": "v", "in": "path", "required": True, "schema": SCHEMAS["int"]},
                limit,
            ],
            "responses": {"200": {"description": "ok"}},
        }
    }
    paths["/search"] = {
        "get": {
            "operationId": "get_search",
            "parameters": [
                {"name": name, "in": "query", "schema": schema}
                for name, schema in SCHEMAS.items()
                if name != "any"
            ]
            + [{"name": "any", "in": "query", "required": True, "schema": SCHEMAS["any"]}],
            "responses": {"200": {"description": "ok"}},
        }
    }
    paths["/arrays/{v}"] = {
        "get": {
            "operationId": "get_arrays",
            "parameters": [
                {"name": "v", "in": "path", "required": True, "schema": SCHEMAS["int"]},
                {
                    "name": "ids",
                    "in": "query",
                    "explode": False,
                    "schema": {"type": "array", "items": {"type": "integer"}},
                },
            ],
            "responses": {"200": {"description": "ok"}},
        }
    }
    # A path parameter's name is any text: the data plane must take it too.
    paths["/unicode/{número}"] = {
        "get": {
            "operationId": "get_unicode",
            "parameters": [
                {"name": "número", "in": "path", "required": True, "schema": SCHEMAS["int"]}
            ],
            "responses": {"200": {"description": "ok"}},
        }
    }
    paths["/required/{v}"] = {
        "get": {
            "operationId": "get_required",
            "parameters": [{**limit, "required": True}],
            "responses": {"200": {"description": "ok"}},
        }
    }
    return {"openapi": "3.0.3", "info": {"title": "params", "version": "1"}, "paths": paths}


def expected(name: str, value: str, method: str, query: str = "") -> int:
    """What `OperationValidator.head` alone says of this request: 200 or 400."""
    spec = load_spec_data(spec_data(), source="inline")
    op = next(o for o in spec.operations if o.operation_id == f"{method}_{name}")
    validator = compile_operation(spec, op, Bundler(spec))
    decoded = unquote(value, errors="replace")
    if method == "get":
        url = f"/{name}/{value}{query}".encode()
        verdict = validator.head(url, {"v": decoded}, None, None, False)
    else:
        verdict = validator.head(b"/", {"v": decoded}, None, b"application/json", True)
        if verdict is not None and verdict.body is not None:
            verdict = verdict.finish(b'{"n":1}')
    return 200 if verdict is None else 400


@pytest.fixture(scope="module")
def gateway_port() -> Any:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    harness = Harness()
    try:
        upstream = harness.aiohttp(app)
        service = {"name": "params", "upstream": upstream.url, "openapi": spec_data()}
        yield harness.gateway({"services": [service]}).port
    finally:
        harness.close()


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_the_data_plane_and_head_agree_on_every_value(
    gateway_port: int, name: str, method: str
) -> None:
    got: dict[str, int] = {}
    with RawClient(gateway_port) as client:
        for value in VALUES:
            head = f"{method.upper()} /{name}/{value} HTTP/1.1\r\nHost: api.test\r\n"
            if method == "post":
                head += "Content-Type: application/json\r\nContent-Length: 7\r\n\r\n"
                client.send(head.encode() + b'{"n":1}')
            else:
                client.send(head.encode() + b"\r\n")
            got[value] = client.read_response()[0]
    want = {value: expected(name, value, method) for value in VALUES}
    assert got == want
    # Both answers occur for every schema: the cases are not all on one side.
    assert set(want.values()) == {200, 400} or name == "any"


@pytest.mark.parametrize("name", ["query", "required"])
def test_optional_query_parameters_are_decided_in_c_only_when_the_url_has_no_query(
    gateway_port: int, name: str
) -> None:
    cases = [(v, q) for v in ("5", "abc") for q in ("", "?limit=3", "?limit=10", "?limit=x", "?")]
    got: dict[tuple[str, str], int] = {}
    with RawClient(gateway_port) as client:
        for value, query in cases:
            client.send(f"GET /{name}/{value}{query} HTTP/1.1\r\nHost: api.test\r\n\r\n".encode())
            got[value, query] = client.read_response()[0]
    assert got == {(v, q): expected(name, v, "get", q) for v, q in cases}
    assert got["5", ""] == (200 if name == "query" else 400)
    assert got["5", "?limit=10"] == 400


QUERIES = [
    "?any=x",
    "?any=",
    "?any",
    "",
    "?",
    "?int=5",
    "?any=x&int=5",
    "?any=x&int=5000",
    "?any=x&int=05",
    "?any=x&int=5&int=5000",
    "?any=x&int=5000&int=5",
    "?any=x&enum=open&bool=true",
    "?any=x&enum=opened",
    "?any=x&enum=a+b",
    "?any=x&enum=a%20b",
    "?any=x&bool=yes",
    "?any=x&pattern=ab-1&uuid=123e4567-e89b-12d3-a456-426614174000",
    "?any=x&pattern=AB-1",
    "?any=x&nullable=null",
    "?any=x&nullable=",
    "?any=x&short=abcd",
    "?any=x&short=%C3%A9",
    "?any=x&intorstr=12&num=9",
    "?any=x&intorstr=abc",
    "?any=x&num=10",
    "?any=x&unknown=%ZZ",
    "?any=x&&int=3&",
    "?int=3&any=%41",
    "?any=x&int==3",
    "?any=x&int=3#frag",
]


def test_query_parameters_decided_in_c_agree_with_head(gateway_port: int) -> None:
    spec = load_spec_data(spec_data(), source="inline")
    op = next(o for o in spec.operations if o.operation_id == "get_search")
    validator = compile_operation(spec, op, Bundler(spec))
    assert validator.plain_params is not None  # the data plane decides these itself
    got: dict[str, int] = {}
    with RawClient(gateway_port) as client:
        for query in QUERIES:
            client.send(f"GET /search{query} HTTP/1.1\r\nHost: api.test\r\n\r\n".encode())
            got[query] = client.read_response()[0]
    # (the data plane cuts a fragment off the target before anything reads it)
    want = {
        q: 200
        if validator.head(f"/search{q}".partition("#")[0].encode(), {}, None, None, False) is None
        else 400
        for q in QUERIES
    }
    assert got == want
    assert set(want.values()) == {200, 400}


def test_an_optional_array_query_parameter_leaves_c_only_urls_with_no_query(
    gateway_port: int,
) -> None:
    spec = load_spec_data(spec_data(), source="inline")
    op = next(o for o in spec.operations if o.operation_id == "get_arrays")
    validator = compile_operation(spec, op, Bundler(spec))
    assert validator.plain_params is not None and validator.plain_needs_no_query
    cases = [(v, q) for v in ("5", "0", "x") for q in ("", "?", "?ids=1,2", "?ids=1,x", "?x=1")]
    got: dict[tuple[str, str], int] = {}
    with RawClient(gateway_port) as client:
        for value, query in cases:
            client.send(f"GET /arrays/{value}{query} HTTP/1.1\r\nHost: api.test\r\n\r\n".encode())
            got[value, query] = client.read_response()[0]
    assert got == {(v, q): expected("arrays", v, "get", q) for v, q in cases}
    assert got["5", ""] == 200 and got["5", "?ids=1,x"] == 400 and got["0", ""] == 400


def test_a_path_parameter_named_in_any_script_is_checked(gateway_port: int) -> None:
    got = {}
    with RawClient(gateway_port) as client:
        for value in ("5", "0", "x"):
            client.send(f"GET /unicode/{value} HTTP/1.1\r\nHost: api.test\r\n\r\n".encode())
            got[value] = client.read_response()[0]
    assert got == {"5": 200, "0": 400, "x": 400}
