"""Contract validation through a real gateway: invalid requests never reach the real upstream.

The upstream (aiohttp) counts and records every request it receives; each
invalid request must leave the count unchanged, each valid one must arrive
with its body byte for byte as the client sent it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web
from servers import Harness, RawClient

SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "orders", "version": "1"},
    "paths": {
        "/orders": {
            "post": {
                "operationId": "createOrder",
                "parameters": [
                    {
                        "name": "dry_run",
                        "in": "query",
                        "schema": {"type": "boolean"},
                    },
                    {
                        "name": "X-Request-Id",
                        "in": "header",
                        "schema": {"type": "string", "format": "uuid"},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Order"}}
                    },
                },
                "responses": {"201": {"description": "created"}},
            },
            "get": {
                "operationId": "listOrders",
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 100},
                    },
                    {
                        "name": "status",
                        "in": "query",
                        "style": "form",
                        "explode": False,
                        "schema": {
                            "type": "array",
                            "items": {"type": "string", "enum": ["open", "paid"]},
                        },
                    },
                ],
                "responses": {"200": {"description": "ok"}},
            },
        },
        "/orders/{id}": {
            "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
            ],
            "get": {"operationId": "getOrder", "responses": {"200": {"description": "ok"}}},
            "put": {
                "operationId": "replaceOrder",
                "requestBody": {
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Order"}},
                        "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
                    }
                },
                "responses": {"200": {"description": "ok"}},
            },
        },
    },
    "components": {
        "schemas": {
            "Order": {
                "type": "object",
                "required": ["customer", "items"],
                "additionalProperties": False,
                "properties": {
                    "id": {"type": "integer", "readOnly": True},
                    "customer": {"type": "string", "minLength": 1},
                    "note": {"type": "string", "nullable": True, "maxLength": 20},
                    "items": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"$ref": "#/components/schemas/Item"},
                    },
                },
            },
            "Item": {
                "type": "object",
                "required": ["sku", "price"],
                "properties": {
                    "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]+$"},
                    "price": {"type": "number", "exclusiveMinimum": True, "minimum": 0},
                    "tags": {"type": "array", "uniqueItems": True, "items": {"type": "string"}},
                },
            },
        }
    },
}


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, bytes]] = []

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            self.seen.append((request.method, request.path_qs, body))
            return web.json_response({"ok": True})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        return app


def start(harness: Harness, **validation: Any) -> tuple[int, Recorder]:
    recorder = Recorder()
    upstream = harness.aiohttp(recorder.app())
    service: dict[str, Any] = {"name": "orders", "upstream": upstream.url, "openapi": SPEC}
    if validation:
        service["validation"] = validation
    gw = harness.gateway({"services": [service]})
    return gw.port, recorder


def call(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    chunked: bool = False,
) -> tuple[int, dict[str, str], Any]:
    head = f"{method} {path} HTTP/1.1\r\nHost: api.test\r\n"
    sent = dict(headers or {})
    if body is not None:
        sent.setdefault("Content-Type", "application/json")
    for k, v in sent.items():
        head += f"{k}: {v}\r\n"
    data = b""
    if body is not None:
        if chunked:
            head += "Transfer-Encoding: chunked\r\n"
            half = len(body) // 2
            for piece in (body[:half], body[half:]):
                if piece:
                    data += b"%x\r\n%b\r\n" % (len(piece), piece)
            data += b"0\r\n\r\n"
        else:
            head += f"Content-Length: {len(body)}\r\n"
            data = body
    with RawClient(port) as client:
        client.send(head.encode() + b"\r\n" + data)
        status, resp_headers, resp = client.read_response()
    try:
        return status, resp_headers, json.loads(resp)
    except ValueError:
        return status, resp_headers, resp


GOOD = b'{"customer":"ann","items":[{"sku":"ABC-1","price":2.5},{"sku":"XYZ-22","price":1}]}'


def pointers(problem: dict[str, Any]) -> list[str]:
    return [e["pointer"] for e in problem["errors"]]


def test_a_valid_body_reaches_the_upstream_byte_for_byte(harness: Harness) -> None:
    port, rec = start(harness)
    odd = b'{ "items" : [ {"price": 2.50, "sku":"ABC-1"} ],\n "customer":"\\u0061nn" }'
    # `tags` has uniqueItems: a node checked after the decode, valid values pass it.
    tagged = b'{"customer":"c","items":[{"sku":"ABC-1","price":1,"tags":["a","b"]}]}'
    for body in (GOOD, odd, tagged):
        status, _, _ = call(port, "POST", "/orders?dry_run=true", body)
        assert status == 200
        assert rec.seen[-1] == ("POST", "/orders?dry_run=true", body)
    # Chunked in, the same bytes out (with a Content-Length: the body was read whole).
    status, _, _ = call(port, "POST", "/orders", GOOD, chunked=True)
    assert status == 200
    assert rec.seen[-1][2] == GOOD


def test_every_error_is_listed_with_its_pointer_and_nothing_reaches_the_upstream(
    harness: Harness,
) -> None:
    port, rec = start(harness)
    body = json.dumps(
        {
            "customer": "",
            "note": "x" * 21,
            "items": [
                {"sku": "ABC-1", "price": 1},
                {"sku": "bad", "price": 0},
                {"sku": "ABC-2", "price": 1, "tags": ["a", "a"]},
                {"price": "3"},
            ],
            "extra": 1,
        }
    ).encode()
    status, headers, problem = call(port, "POST", "/orders?dry_run=maybe", body)
    assert status == 400
    assert headers["content-type"] == "application/problem+json"
    assert problem["operation"] == "orders createOrder"
    found = {(e["pointer"], e["keyword"]) for e in problem["errors"]}
    assert found == {
        ("/query/dry_run", "type"),
        ("/body/customer", "minLength"),
        ("/body/note", "maxLength"),
        ("/body/items/1/sku", "pattern"),
        ("/body/items/1/price", "exclusiveMinimum"),
        ("/body/items/2/tags", "uniqueItems"),
        ("/body/items/3/sku", "required"),
        ("/body/items/3/price", "type"),
        ("/body/extra", "additionalProperties"),
    }
    price = next(e for e in problem["errors"] if e["pointer"] == "/body/items/1/price")
    assert price["expected"] == 0 and "> 0" in price["message"]
    assert rec.seen == []


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "pointer"),
    [
        ("GET", "/orders", None, {}, 400, "/query/limit"),
        ("GET", "/orders?limit=0", None, {}, 400, "/query/limit"),
        ("GET", "/orders?limit=abc", None, {}, 400, "/query/limit"),
        ("GET", "/orders?limit=5&status=open,shipped", None, {}, 400, "/query/status/1"),
        ("GET", "/orders/abc", None, {}, 400, "/path/id"),
        ("POST", "/orders", None, {}, 400, "/body"),
        ("POST", "/orders", b'{"customer":"a","items":[', {}, 400, "/body"),
        (
            "POST",
            "/orders",
            b'{"customer":"a","customer":"b","items":[]}',
            {},
            400,
            "/body/customer",
        ),
        ("POST", "/orders", GOOD, {"Content-Type": "text/plain"}, 415, "/header/Content-Type"),
        ("POST", "/orders", GOOD, {"X-Request-Id": "not-a-uuid"}, 400, "/header/X-Request-Id"),
    ],
)
def test_invalid_requests_are_refused(
    harness: Harness,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
    status: int,
    pointer: str,
) -> None:
    port, rec = start(harness)
    got, _, problem = call(port, method, path, body, headers)
    assert got == status, problem
    assert pointer in pointers(problem)
    assert rec.seen == []


def test_valid_parameters_pass(harness: Harness) -> None:
    port, rec = start(harness)
    assert call(port, "GET", "/orders?limit=5&status=open,paid")[0] == 200
    assert call(port, "GET", "/orders/17")[0] == 200
    rid = "123e4567-e89b-12d3-a456-426614174000"
    assert call(port, "POST", "/orders", GOOD, {"X-Request-Id": rid})[0] == 200
    # A form body is taken as is; the JSON one is checked.
    form = b"customer=ann"
    ctype = {"Content-Type": "application/x-www-form-urlencoded"}
    assert call(port, "PUT", "/orders/1", form, ctype)[0] == 200
    assert call(port, "PUT", "/orders/1", b"{}")[0] == 400
    # Not required: no body at all is fine.
    assert call(port, "PUT", "/orders/1")[0] == 200
    assert len(rec.seen) == 5  # all but the refused {}


def test_the_status_is_configurable_and_malformed_stays_400(harness: Harness) -> None:
    port, rec = start(harness, status=422)
    assert call(port, "POST", "/orders", b'{"items":[]}')[0] == 422
    assert call(port, "POST", "/orders", b"{")[0] == 400
    assert call(port, "POST", "/orders", b"{}", {"Content-Type": "text/csv"})[0] == 415
    assert rec.seen == []


def test_report_only_forwards_and_counts(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    port, rec = start(harness, mode="report")
    with caplog.at_level("WARNING", logger="runmcp_fast.validation"):
        assert call(port, "POST", "/orders", b'{"items":[]}')[0] == 200
    assert rec.seen[-1][2] == b'{"items":[]}'
    assert any("report-only" in r.getMessage() for r in caplog.records)


def test_per_operation_modes(harness: Harness) -> None:
    port, rec = start(harness, operations={"listOrders": "off", "createOrder": "on"})
    assert call(port, "GET", "/orders?limit=0")[0] == 200
    assert call(port, "POST", "/orders", b"{}")[0] == 400
    assert [s[1] for s in rec.seen] == ["/orders?limit=0"]
    port2, rec2 = start(harness, mode="off")
    assert call(port2, "POST", "/orders", b"{}")[0] == 200
    assert len(rec2.seen) == 1


def test_keep_alive_survives_a_refusal(harness: Harness) -> None:
    port, rec = start(harness)
    bad = b'{"customer":""}'
    with RawClient(port) as client:
        for body in (bad, GOOD, bad, GOOD):
            client.send(
                b"POST /orders HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
            )
            status, _, _ = client.read_response()
            assert status == (200 if body is GOOD else 400)
    assert [s[2] for s in rec.seen] == [GOOD, GOOD]


def test_each_content_type_gets_its_own_verdict_one_after_another(harness: Harness) -> None:
    """The step remembers the last Content-Type it passed: a different one of the same
    length, or an unknown one, is never taken for it."""
    port, rec = start(harness)
    sequence = [
        ("application/json", 200),
        ("application/jsoo", 415),  # same length, one byte off
        ("APPLICATION/JSON", 200),
        ("text/plain", 415),
        ("application/json", 200),
    ]
    with RawClient(port) as client:
        for content_type, expected in sequence:
            client.send(
                b"POST /orders HTTP/1.1\r\nHost: a\r\nContent-Type: %b\r\n"
                b"Content-Length: %d\r\n\r\n%b" % (content_type.encode(), len(GOOD), GOOD)
            )
            status, _, _ = client.read_response()
            assert (content_type, status) == (content_type, expected)
    assert len(rec.seen) == 3


def test_a_body_over_the_validation_limit_gets_413(harness: Harness) -> None:
    port, rec = start(harness, max_body_bytes=100)
    big = b'{"customer":"' + b"a" * 200 + b'","items":[{"sku":"ABC-1","price":1}]}'
    assert call(port, "POST", "/orders", big)[0] == 413
    assert rec.seen == []


def test_validation_is_set_live_through_the_admin_api_and_counted(harness: Harness) -> None:
    from test_admin_api import TOKEN

    recorder = Recorder()
    upstream = harness.aiohttp(recorder.app())
    gw = harness.gateway({"services": [], "admin": {"address": "127.0.0.1:0", "token": TOKEN}})
    admin_port = int(gw.gateway.admin_addresses[0].rsplit(":", 1)[1])

    def admin(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else b""
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        )
        with RawClient(admin_port) as client:
            client.send(head.encode() + data)
            status, _, resp = client.read_response()
        return status, json.loads(resp)

    service = {"name": "orders", "upstream": upstream.url, "openapi": SPEC}
    assert admin("PUT", "/admin/services/orders", service)[0] in (200, 201)
    assert call(gw.port, "POST", "/orders", b"{}")[0] == 400
    assert call(gw.port, "POST", "/orders", GOOD)[0] == 200
    status, body = admin("GET", "/admin/validation")
    assert status == 200
    create = next(r for r in body["operations"] if r["operation"] == "createOrder")
    assert (create["mode"], create["checked"], create["invalid"]) == ("on", 2, 1)
    assert create["fallbacks"] == [
        "uniqueItems (post-decode check) at /body (application/json)"
        " (schema /$defs/Item/properties/tags)"
    ]
    # Report-only, live: the same bad body now reaches the upstream.
    patch = {"validation": {"mode": "report"}}
    assert admin("PATCH", "/admin/services/orders", patch)[0] == 200
    assert call(gw.port, "POST", "/orders", b"{}")[0] == 200
    assert [s[2] for s in recorder.seen] == [GOOD, b"{}"]
    # A mode for an operation the spec does not have is refused, naming it.
    bad = {"validation": {"operations": {"createOrdr": "off"}}}
    status, problem = admin("PATCH", "/admin/services/orders", bad)
    assert status == 422
    assert any("createOrder" in p.get("hint", "") for p in problem["problems"]), problem


def test_a_repeated_query_key_is_checked_as_the_list_it_is(harness: Harness) -> None:
    """`ids` is `anyOf: [array of short strings, string]`. The data plane's C check of
    plain query values read the first `ids` alone, so `ids=a&ids=toolong` passed as the
    string "a"; a repeated key is now read as the list by the parameter reader."""
    spec = {
        "openapi": "3.1.0",
        "info": {"title": "things", "version": "1"},
        "paths": {
            "/things": {
                "get": {
                    "operationId": "listThings",
                    "parameters": [
                        {
                            "name": "ids",
                            "in": "query",
                            "schema": {
                                "anyOf": [
                                    {"type": "array", "items": {"type": "string", "maxLength": 3}},
                                    {"type": "string"},
                                ]
                            },
                        }
                    ],
                    "responses": {"200": {"description": "ok"}},
                }
            }
        },
    }
    recorder = Recorder()
    upstream = harness.aiohttp(recorder.app())
    port = harness.gateway(
        {"services": [{"name": "things", "upstream": upstream.url, "openapi": spec}]}
    ).port
    for target in ("/things?ids=a&ids=b", "/things?ids=toolong", "/things"):
        assert call(port, "GET", target)[0] == 200, target
    status, _, problem = call(port, "GET", "/things?ids=a&ids=toolong")
    assert status == 400, problem
    assert pointers(problem) == ["/query/ids/1"], problem
    assert len(recorder.seen) == 3
