"""Operations told apart after the path (`/#Action=X`, `/#X-Amz-Target=Y`, `/files/{id}#name`)
and templates of one shape (`/v1/{name}`, `/v1/{parent}`): loaded, routed as one route, and
each request given to one operation, whose contract checks it.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from aiohttp import web
from servers import Harness, RawClient

from runmcp_fast._dataplane import Dispatch, Target
from runmcp_fast.openapi import SpecError, add_spec_routes, load_spec_data
from runmcp_fast.openapi.discriminators import conditions, split
from runmcp_fast.openapi.dispatch import pick
from runmcp_fast.openapi.model import Condition, Parameter, RouteGroup
from runmcp_fast.router import Router


def _param(
    name: str, location: str, *, required: bool = True, enum: list[str] | None = None
) -> Any:
    schema: dict[str, Any] = {"type": "string"}
    if enum is not None:
        schema["enum"] = enum
    return {"name": name, "in": location, "required": required, "schema": schema}


def _op(op_id: str, *params: Any, body: dict[str, Any] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": op_id,
        "parameters": list(params),
        "responses": {"200": {"description": "ok"}},
    }
    if body is not None:
        op["requestBody"] = {"content": {"application/json": {"schema": body}}}
    return op


# AWS's Query protocol (`Action` in the query), its JSON protocol (`X-Amz-Target`), S3's
# sub-resources, Box's labels, Google's templates of one shape, weatherbit's `?lat={lat}`.
SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "shared routes", "version": "1"},
    "paths": {
        "/#Action=DescribeThings": {
            "get": _op(
                "DescribeThings",
                _param("Action", "query", enum=["DescribeThings"]),
                _param("Version", "query", enum=["2016-11-15"]),
            )
        },
        "/#Action=RunThing": {
            "get": _op(
                "RunThing",
                _param("Action", "query", enum=["RunThing"]),
                _param("Version", "query", enum=["2016-11-15"]),
                _param("Count", "query"),
            )
        },
        "/db#X-Amz-Target=Db.GetItem": {
            "post": _op(
                "GetItem",
                _param("X-Amz-Target", "header", enum=["Db.GetItem"]),
                body={"type": "object", "required": ["Key"]},
            )
        },
        "/db#X-Amz-Target=Db.PutItem": {
            "post": _op(
                "PutItem",
                _param("X-Amz-Target", "header", enum=["Db.PutItem"]),
                body={"type": "object", "required": ["Item"]},
            )
        },
        "/files/{file_id}": {
            "put": _op(
                "put_file", _param("file_id", "path"), _param("fields", "query", required=False)
            )
        },
        "/files/{file_id}#add_shared_link": {
            "put": _op(
                "add_shared_link",
                _param("file_id", "path"),
                _param("fields", "query"),
                body={
                    "required": ["shared_link"],
                    "properties": {"shared_link": {"type": "object"}},
                },
            )
        },
        # Nothing in the head tells it from add_shared_link: only its body differs.
        "/files/{file_id}#update_shared_link": {
            "put": _op(
                "update_shared_link",
                _param("file_id", "path"),
                _param("fields", "query"),
                body={"required": ["shared_link"], "properties": {"shared_link": {"type": "null"}}},
            )
        },
        "/{Bucket}#cors": {
            "get": _op("GetBucketCors", _param("Bucket", "path"), _param("cors", "query"))
        },
        "/{Bucket}": {"get": _op("ListObjects", _param("Bucket", "path"))},
        "/v1/{name}": {
            "get": _op(
                "get_thing",
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
            )
        },
        "/v1/{parent}": {
            "get": _op(
                "list_things",
                {
                    "name": "parent",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^p"},
                },
                _param("pageSize", "query"),
            )
        },
        "/alerts?lat={lat}&lon={lon}": {
            "get": _op("alerts_by_point", _param("lat", "query"), _param("lon", "query"))
        },
        "/alerts?city={city}": {"get": _op("alerts_by_city", _param("city", "query"))},
    },
}


def _load(spec: dict[str, Any] = SPEC) -> Any:
    return load_spec_data(spec, source="shared.json")


# -- reading the suffix ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "path", "suffix"),
    [
        ("/#Action=X", "/", "#Action=X"),
        ("/?Action=X", "/", "?Action=X"),
        ("/files/{file_id}#add_shared_link", "/files/{file_id}", "#add_shared_link"),
        ("/alerts?lat={lat}&lon={lon}", "/alerts", "?lat={lat}&lon={lon}"),
        ("/plain/{id}", "/plain/{id}", ""),
        ("/odd/{a#b}/x", "/odd/{a#b}/x", ""),  # inside a parameter: not a suffix
    ],
)
def test_split(key: str, path: str, suffix: str) -> None:
    assert split(key) == (path, suffix)


def _p(name: str, location: str) -> Parameter:
    return Parameter(name, location, True, {}, "form", True, "")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("suffix", "params", "expected"),
    [
        ("?Action=X", [], [Condition("query", "Action", "X")]),
        ("#Action=X", [_p("Action", "query")], [Condition("query", "Action", "X")]),
        (
            "#X-Amz-Target=Db.GetItem",
            [_p("X-Amz-Target", "header")],
            [Condition("header", "x-amz-target", "Db.GetItem")],
        ),
        # Undeclared: `X-…` reads as a header, anything else as a query parameter.
        ("#X-Amz-Target=Y", [], [Condition("header", "x-amz-target", "Y")]),
        ("#cors", [_p("cors", "query")], [Condition("query", "cors")]),
        ("#add_shared_link", [_p("fields", "query")], []),
        (
            "?lat={lat}&lon={lon}",
            [],
            [Condition("query", "lat"), Condition("query", "lon")],
        ),
        (
            "#op=a%20b&q",
            [_p("q", "query")],
            [Condition("query", "op", "a b"), Condition("query", "q")],
        ),
    ],
)
def test_conditions(suffix: str, params: list[Parameter], expected: list[Condition]) -> None:
    assert list(conditions(suffix, params)) == expected


# -- loading and routing ----------------------------------------------------------------


def test_shared_routes_load_as_groups_with_warnings_for_what_can_not_be_told_apart() -> None:
    spec = _load()
    assert len(spec.operations) == 13
    by_id = {op.operation_id: op for op in spec.operations}
    assert by_id["DescribeThings"].template == "/"
    assert by_id["DescribeThings"].path == "/#Action=DescribeThings"
    assert by_id["GetItem"].discriminator == (Condition("header", "x-amz-target", "Db.GetItem"),)
    groups = {(g.method, g.template): g for g in spec.groups}
    assert {k: [op.operation_id for op in g.operations] for k, g in groups.items()} == {
        ("GET", "/"): ["DescribeThings", "RunThing"],
        ("POST", "/db"): ["GetItem", "PutItem"],
        ("PUT", "/files/{file_id}"): ["put_file", "add_shared_link", "update_shared_link"],
        ("GET", "/{Bucket}"): ["GetBucketCors", "ListObjects"],
        ("GET", "/v1/{name}"): ["get_thing", "list_things"],
        ("GET", "/alerts"): ["alerts_by_point", "alerts_by_city"],
    }
    messages = [w.message for w in spec.warnings]
    assert any(
        "update_shared_link" in m and "can never be chosen" in m and "#add_shared_link" in m
        for m in messages
    ), messages
    assert any("GET /v1/{parent} has the same shape as GET /v1/{name}" in m for m in messages), (
        messages
    )


def test_one_route_per_group() -> None:
    spec = _load()
    router = Router()
    routes = add_spec_routes(router, spec)
    router.compile()
    assert len(routes) == 6
    match = router.match(None, "GET", "/?Action=RunThing")
    assert match is not None and isinstance(match.target, RouteGroup)
    assert [op.operation_id for op in match.target.operations] == ["DescribeThings", "RunThing"]


def test_the_same_discriminator_twice_is_a_warning_and_the_first_declared_wins() -> None:
    spec = json.loads(json.dumps(SPEC))
    # S3's `#lifecycle&deprecated!` beside `#lifecycle`: a label adds no condition.
    spec["paths"]["/?Action=RunThing&deprecated!"] = spec["paths"]["/#Action=RunThing"]
    loaded = _load(spec)
    [warning] = [
        w
        for w in loaded.warnings
        if "can never be chosen" in w.message and "deprecated" in w.message
    ]
    assert warning.pointer == "/paths/~1?Action=RunThing&deprecated!/get"
    assert "/paths/~1#Action=RunThing/get" in warning.message


def test_a_discriminator_its_own_parameter_refuses_is_an_error_with_the_pointer() -> None:
    spec = json.loads(json.dumps(SPEC))
    spec["paths"]["/#Action=RunThing"]["get"]["parameters"][0]["schema"]["enum"] = ["Other"]
    with pytest.raises(SpecError) as caught:
        _load(spec)
    [error] = caught.value.errors
    assert error.pointer == "/paths/~1#Action=RunThing/get/parameters/0"
    assert "told apart by query Action=RunThing, which its own parameter 'Action' refuses" in (
        error.message
    )


@pytest.mark.parametrize(
    ("method", "template", "query", "headers", "expected"),
    [
        ("GET", "/", {"Action": "RunThing"}, {}, "RunThing"),
        ("GET", "/", {"Action": "DescribeThings", "Version": "x"}, {}, "DescribeThings"),
        ("GET", "/", {"Action": "Nope"}, {}, None),
        ("GET", "/", {}, {}, None),
        ("POST", "/db", {}, {"x-amz-target": "Db.PutItem"}, "PutItem"),
        ("PUT", "/files/{file_id}", {}, {}, "put_file"),
        ("PUT", "/files/{file_id}", {"fields": "shared_link"}, {}, "add_shared_link"),
        ("GET", "/{Bucket}", {"cors": ""}, {}, "GetBucketCors"),
        ("GET", "/{Bucket}", {}, {}, "ListObjects"),
        ("GET", "/v1/{name}", {}, {}, "get_thing"),
        ("GET", "/v1/{name}", {"pageSize": "3"}, {}, "list_things"),
        ("GET", "/alerts", {"lat": "1", "lon": "2"}, {}, "alerts_by_point"),
        ("GET", "/alerts", {"city": "x"}, {}, "alerts_by_city"),
        ("GET", "/alerts", {"lat": "1"}, {}, None),
    ],
)
def test_pick(
    method: str,
    template: str,
    query: dict[str, str],
    headers: dict[str, str],
    expected: str | None,
) -> None:
    group = next(g for g in _load().groups if (g.method, g.template) == (method, template))
    chosen = pick(group, query, headers)
    assert (chosen.operation_id if chosen is not None else None) == expected


class _Owner:
    name = label = "svc"
    tenant = ""


def _compiled(group: RouteGroup) -> Dispatch:
    targets = [
        Target.local(
            owner=_Owner(), name=op.operation_id, handler=lambda _r: (200, [], b""), max_body=0
        )
        for op in group.operations
    ]
    return Dispatch(
        targets,
        [[(c.location, c.name, c.value) for c in op.discriminator] for op in group.operations],
        [[(c.location, c.name, c.value) for c in soft] for soft in group.preferred],
        [None] * len(targets),
        "none",
    )


def test_the_compiled_dispatch_agrees_with_the_reference() -> None:
    """Random queries and headers over every group: the data plane's pick is `pick`'s."""
    rng = random.Random(19)
    names = ["Action", "Version", "Count", "fields", "cors", "pageSize", "lat", "lon", "city"]
    values = ["RunThing", "DescribeThings", "Nope", "", "1", "a b", "shared_link"]
    targets = ["Db.GetItem", "Db.PutItem", "Db.Other"]
    for group in _load().groups:
        compiled = _compiled(group)
        for _ in range(300):
            query = {n: rng.choice(values) for n in rng.sample(names, rng.randint(0, 4))}
            headers = {"x-amz-target": rng.choice(targets)} if rng.random() < 0.5 else {}
            expected = pick(group, query, headers)
            raw = "&".join(f"{k}={v.replace(' ', '+')}" for k, v in query.items())
            url = (group.template + ("?" + raw if raw else "")).encode()
            lines = [
                x for k, v in headers.items() for x in (k.encode(), b": ", v.encode(), b"\r\n")
            ]
            index = compiled.choose(url, lines or None)
            got = group.operations[index].operation_id if index >= 0 else None
            assert got == (expected.operation_id if expected else None), (url, headers)


# -- through a gateway ----------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            self.seen.append((request.method, request.path_qs, dict(request.headers), body))
            return web.json_response({"ok": True})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        return app


def _call(
    port: int, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> tuple[int, Any]:
    head = f"{method} {path} HTTP/1.1\r\nHost: api.test\r\nContent-Length: {len(body)}\r\n"
    if body:
        head += "Content-Type: application/json\r\n"
    for k, v in (headers or {}).items():
        head += f"{k}: {v}\r\n"
    with RawClient(port) as client:
        client.send(head.encode() + b"\r\n" + body)
        status, _, data = client.read_response()
    return status, json.loads(data) if data else None


def test_each_request_is_checked_against_the_operation_its_discriminator_picks(
    harness: Harness,
) -> None:
    recorder = Recorder()
    upstream = harness.aiohttp(recorder.app())
    gw = harness.gateway({"services": [{"name": "aws", "upstream": upstream.url, "openapi": SPEC}]})
    port = gw.port

    # RunThing requires Count; DescribeThings does not.
    status, _ = _call(port, "GET", "/?Action=DescribeThings&Version=2016-11-15")
    assert status == 200
    assert recorder.seen[-1][1] == "/?Action=DescribeThings&Version=2016-11-15"
    status, problem = _call(port, "GET", "/?Action=RunThing&Version=2016-11-15")
    assert status == 400
    assert problem["operation"] == "aws RunThing"
    assert [e["pointer"] for e in problem["errors"]] == ["/query/Count"]
    status, _ = _call(port, "GET", "/?Version=2016-11-15&Count=2&Action=RunThing")
    assert status == 200

    # No operation's conditions hold: 404, naming what tells them apart.
    seen = len(recorder.seen)
    status, problem = _call(port, "GET", "/?Action=Nope")
    assert status == 404
    assert "DescribeThings: query Action=DescribeThings" in problem["detail"]
    assert len(recorder.seen) == seen

    # A header picks the operation, whose body schema then applies.
    status, problem = _call(port, "POST", "/db", {"X-Amz-Target": "Db.PutItem"}, b'{"Key": 1}')
    assert status == 400 and problem["operation"] == "aws PutItem"
    status, _ = _call(port, "POST", "/db", {"X-Amz-Target": "Db.PutItem"}, b'{"Item": 1}')
    assert status == 200
    assert recorder.seen[-1][2]["X-Amz-Target"] == "Db.PutItem"
    assert recorder.seen[-1][3] == b'{"Item": 1}'

    # Operations no head tells apart: the first's contract, whose body check also
    # takes a body valid for the others (update_shared_link's null).
    for body, want in ((b'{"shared_link": {}}', 200), (b'{"shared_link": null}', 200)):
        status, _ = _call(port, "PUT", "/files/f1?fields=shared_link", body=body)
        assert status == want, body
        assert recorder.seen[-1][3] == body
    status, problem = _call(port, "PUT", "/files/f1?fields=shared_link", body=b'{"shared_link": 5}')
    assert status == 400 and problem["operation"] == "aws add_shared_link"
    assert [e["pointer"] for e in problem["errors"]] == ["/body/shared_link"]

    # Merged templates: each operation gets the path parameter under its own name, and
    # its own schema for it (list_things' parent must start with "p").
    status, problem = _call(port, "GET", "/v1/xyz?pageSize=3")
    assert status == 400 and problem["operation"] == "aws list_things"
    assert [e["pointer"] for e in problem["errors"]] == ["/path/parent"]
    status, _ = _call(port, "GET", "/v1/pxyz?pageSize=3")
    assert status == 200
    status, _ = _call(port, "GET", "/v1/xyz")
    assert status == 200
    assert recorder.seen[-1][1] == "/v1/xyz"
