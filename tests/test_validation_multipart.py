"""multipart/form-data bodies split on their boundary and checked against the body schema;
malformed ones refused with a 400 that says what is wrong; the upstream gets the bytes sent."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web
from servers import Harness, RawClient

from runmcp_fast.openapi import load_spec_data
from runmcp_fast.validation import Bundler, compile_operation
from runmcp_fast.validation.multipart import MAX_PARTS, MultipartError, split

MP = "multipart/form-data"
BOUNDARY = "----form7MA4YWxkTrZu0gW"
CONTENT_TYPE = f"{MP}; boundary={BOUNDARY}"

UPLOAD = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "count": {"type": "integer"},
        "ok": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "ids": {"type": "array", "items": {"type": "integer"}},
        "meta": {"$ref": "#/components/schemas/Meta"},
        "file": {"type": "string", "format": "binary", "maxLength": 8},
        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
    },
}
COMPONENTS = {
    "schemas": {
        "Meta": {"type": "object", "required": ["a"], "properties": {"a": {"type": "integer"}}}
    }
}


def spec_data(schema: dict[str, Any] = UPLOAD) -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/upload": {
                "post": {
                    "operationId": "upload",
                    "requestBody": {"required": True, "content": {MP: {"schema": schema}}},
                    "responses": {"200": {"description": "ok"}},
                }
            }
        },
        "components": COMPONENTS,
    }


Part = tuple[str, bytes] | tuple[str, bytes, str]


def form(*parts: Part, boundary: str = BOUNDARY) -> bytes:
    """A multipart body as browsers and curl write it; a third item adds header lines."""
    out = b""
    for part in parts:
        name, value = part[0], part[1]
        extra = part[2] if len(part) == 3 else ""  # type: ignore[misc]
        out += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"{extra}\r\n\r\n'.encode()
        )
        out += value + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


FILE = '; filename="a.bin"\r\nContent-Type: application/octet-stream'
JSON_PART = "\r\nContent-Type: application/json"


def issues(body: bytes, content_type: str = CONTENT_TYPE) -> Any:
    spec = load_spec_data(spec_data(), source="inline")
    v = compile_operation(spec, spec.operations[0], Bundler(spec))
    verdict = v.head(b"/upload", None, None, content_type.encode(), has_body=True)
    assert verdict is not None and verdict.body is not None  # buffered, then checked
    assert verdict.program is None
    done = verdict.finish(body)
    return None if done is None else [(i.pointer, i.keyword) for i in done.issues]


@pytest.mark.parametrize(
    "body",
    [
        form(("name", b"x")),
        form(
            ("name", "Zoë".encode()),
            ("count", b"-3"),
            ("ok", b"true"),
            ("tags", b"a"),
            ("tags", b"b"),
            ("ids", b"1"),
            ("ids", b"2"),
            ("meta", b'{"a": 1}', JSON_PART),
            ("file", b"\xff\x00\r\n\x01", FILE),  # bytes, never decoded
            ("files", b"\x89PNG", FILE),
            ("files", b"GIF8", FILE),
        ),
        form(("name", b"x"), ("meta", b'{"a": 2}')),  # an object part without a Content-Type
        form(("name", b"x"), ("ids", b"[1, 2]", JSON_PART)),  # an array as one JSON part
        # integers past 64 bits stay integers (a JSON part, a JSON object part without a
        # Content-Type, a text part): read as floats, `type: integer` refused them
        form(("name", b"x"), ("meta", b'{"a": 157014853427119947776}', JSON_PART)),
        form(("name", b"x"), ("meta", b'{"a": -1564822089216028573696}')),
        form(("name", b"x"), ("ids", b"[1, 18446744073709551616]", JSON_PART)),
        form(("name", b"x"), ("count", b"157014853427119947776")),
        b"a preamble\r\n" + form(("name", b"x")) + b"an epilogue",
    ],
)
def test_valid_multipart_bodies(body: bytes) -> None:
    assert issues(body) is None


def test_a_quoted_boundary_with_a_space() -> None:
    body = form(("name", b"x"), boundary="quoted boundary")
    assert issues(body, f'{MP}; charset=utf-8; boundary="quoted boundary"') is None


@pytest.mark.parametrize(
    ("body", "found"),
    [
        (form(("count", b"1")), [("/body/name", "required")]),
        (form(("name", b"")), [("/body/name", "minLength")]),
        (form(("name", b"x"), ("count", b"one")), [("/body/count", "type")]),
        (form(("name", b"x"), ("ids", b"1"), ("ids", b"x")), [("/body/ids/1", "type")]),
        (form(("name", b"x"), ("other", b"1")), [("/body/other", "additionalProperties")]),
        (form(("name", b"x"), ("meta", b'{"b": 1}', JSON_PART)), [("/body/meta/a", "required")]),
        (form(("name", b"x"), ("meta", b"{no", JSON_PART)), [("/body/meta", "json")]),
        (form(("name", b"x"), ("file", b"123456789", FILE)), [("/body/file", "maxLength")]),
        (form(("name", b"x"), ("name", b"y")), [("/body/name", "type")]),  # not an array
    ],
)
def test_invalid_multipart_bodies(body: bytes, found: list[tuple[str, str]]) -> None:
    got = issues(body)
    assert got is not None
    assert [(p, k) for p, k in got if (p, k) in found] == found, got


GOOD = form(("name", b"x"))


@pytest.mark.parametrize(
    ("body", "content_type", "says"),
    [
        (GOOD, MP, "the Content-Type has no boundary parameter"),
        (GOOD, f"{MP}; boundary=", "the Content-Type has no boundary parameter"),
        (GOOD, f"{MP}; boundary={'x' * 71}", "boundary is not 1 to 70"),
        (GOOD, f"{MP}; boundary=other", "the body does not contain the boundary 'other'"),
        (GOOD[: -len(f"--{BOUNDARY}--\r\n")], CONTENT_TYPE, "the closing delimiter"),
        (GOOD[: -len("--\r\n")], CONTENT_TYPE, "the closing delimiter (--boundary--) is missing"),
        (GOOD.replace(b"\r\n\r\n", b"\r\n", 1), CONTENT_TYPE, "headers do not end"),
        (GOOD.replace(b'name="name"', b'x="y"'), CONTENT_TYPE, "Content-Disposition has no name"),
        (GOOD.replace(b"form-data;", b"attachment;"), CONTENT_TYPE, "no 'Content-Disposition"),
        (
            GOOD.replace(f"--{BOUNDARY}\r\n".encode(), f"--{BOUNDARY}junk\r\n".encode()),
            CONTENT_TYPE,
            "followed by more text",
        ),
    ],
)
def test_malformed_multipart_is_a_400_that_says_why(
    body: bytes, content_type: str, says: str
) -> None:
    spec = load_spec_data(spec_data(), source="inline")
    v = compile_operation(spec, spec.operations[0], Bundler(spec))
    verdict = v.head(b"/upload", None, None, content_type.encode(), has_body=True)
    assert verdict is not None
    done = verdict.finish(body)
    assert done is not None
    assert [(i.pointer, i.keyword) for i in done.issues] == [("/body", "body")]
    assert says in done.issues[0].message
    status, _ = v.response(done.issues, True, False)
    assert status == 400


def test_parts_are_bounded() -> None:
    body = form(*[("name", b"x")] * (MAX_PARTS + 1))
    with pytest.raises(MultipartError, match=f"more than {MAX_PARTS} parts"):
        split(body, BOUNDARY.encode())


def test_a_multipart_body_without_a_schema_streams_unchecked() -> None:
    data = spec_data()
    data["paths"]["/upload"]["post"]["requestBody"]["content"][MP] = {}
    spec = load_spec_data(data, source="inline")
    v = compile_operation(spec, spec.operations[0], Bundler(spec))
    assert v.head(b"/upload", None, None, CONTENT_TYPE.encode(), has_body=True) is None


# -- through the gateway, real sockets ----------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, bytes]] = []

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            self.seen.append((request.headers.get("Content-Type", ""), await request.read()))
            return web.json_response({"ok": True})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        return app


def post(port: int, body: bytes, content_type: str = CONTENT_TYPE) -> tuple[int, Any]:
    head = (
        f"POST /upload HTTP/1.1\r\nHost: api.test\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    with RawClient(port) as client:
        client.send(head.encode() + body)
        status, _, content = client.read_response()
    return status, json.loads(content)


def test_through_the_gateway(harness: Harness) -> None:
    recorder = Recorder()
    upstream = harness.aiohttp(recorder.app())
    gw = harness.gateway(
        {"services": [{"name": "up", "upstream": upstream.url, "openapi": spec_data()}]}
    )
    body = form(
        ("name", b"x"),
        ("meta", b'{"a": 1}', JSON_PART),
        ("file", b"\x00\xff\r\n--", FILE),
    )
    assert post(gw.port, body) == (200, {"ok": True})
    # Byte for byte, with the Content-Type (and its boundary) as sent.
    assert recorder.seen == [(CONTENT_TYPE, body)]

    status, problem = post(gw.port, form(("count", b"x")))
    assert status == 400
    assert problem["operation"] == "up upload"
    assert {e["pointer"] for e in problem["errors"]} == {"/body/name", "/body/count"}

    status, problem = post(gw.port, body[:-4])
    assert status == 400
    assert problem["detail"].startswith("malformed multipart body: ")
    assert "closing delimiter" in problem["detail"]

    status, problem = post(gw.port, body, MP)
    assert status == 400 and "no boundary" in problem["detail"]
    assert len(recorder.seen) == 1  # nothing refused reached it


def test_a_styled_encoding_reads_parts_as_a_form_does() -> None:
    # Stripe's PostFiles: `file_link_data[create]` and `expand[]` are parts of their own.
    schema = {
        "type": "object",
        "required": ["file"],
        "additionalProperties": False,
        "properties": {
            "file": {"type": "string"},
            "expand": {"type": "array", "items": {"type": "string"}},
            "file_link_data": {
                "type": "object",
                "required": ["create"],
                "properties": {"create": {"type": "boolean"}, "expires_at": {"type": "integer"}},
            },
        },
    }
    data = spec_data(schema)
    media = data["paths"]["/upload"]["post"]["requestBody"]["content"][MP]
    media["encoding"] = {
        "expand": {"style": "deepObject", "explode": True},
        "file_link_data": {"style": "deepObject", "explode": True},
    }
    spec = load_spec_data(data, source="inline")
    v = compile_operation(spec, spec.operations[0], Bundler(spec))

    def check(body: bytes) -> Any:
        verdict = v.head(b"/upload", None, None, CONTENT_TYPE.encode(), has_body=True)
        assert verdict is not None
        done = verdict.finish(body)
        return None if done is None else [(i.pointer, i.keyword) for i in done.issues]

    file = ("file", b"\x00\x01", FILE)
    assert check(form(file, ("file_link_data[create]", b"true"), ("expand[]", b"a"))) is None
    # The same property as one JSON part, as an MCP tool sends it.
    assert check(form(file, ("file_link_data", b'{"create": true}', JSON_PART))) is None
    assert check(form(file, ("file_link_data[create]", b"maybe"))) == [
        ("/body/file_link_data/create", "type")
    ]
    assert check(form(file, ("file_link_data[expires_at]", b"1"))) == [
        ("/body/file_link_data/create", "required")
    ]
