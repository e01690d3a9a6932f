"""The contract step's fast paths (`ContractStep`, dataplane/steps.pxi) decide as the slow
path does, request after request on one connection.

The step remembers things between requests: where a path parameter is in the route's
names, the last shared verdict and its byte checker, a Content-Type's verdict; and a body
that came in one piece keeps its list to the upstream. Each case below follows a request
that filled those memos with one that differs from it by a byte and must be refused.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web
from servers import Harness, RawClient

# GitHub's issues/create and issues/get in small: two parameters any text satisfies
# before the one C checks, a body with a union and an array of unions.
SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "issues", "version": "1"},
    "paths": {
        "/repos/{owner}/{repo}/issues/{issue_number}": {
            "get": {
                "operationId": "get_issue",
                "parameters": [
                    {"name": "owner", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "repo", "in": "path", "required": True, "schema": {"type": "string"}},
                    {
                        "name": "issue_number",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer"},
                    },
                ],
                "responses": {"200": {"description": "ok"}},
            }
        },
        "/repos/{owner}/{repo}/issues": {
            "post": {
                "operationId": "create_issue",
                "parameters": [
                    {"name": "owner", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "repo", "in": "path", "required": True, "schema": {"type": "string"}},
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["title"],
                                "properties": {
                                    "title": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                                    "body": {"type": "string"},
                                    "labels": {
                                        "type": "array",
                                        "items": {
                                            "oneOf": [{"type": "string"}, {"type": "object"}]
                                        },
                                    },
                                },
                            }
                        }
                    },
                },
                "responses": {"200": {"description": "ok"}},
            }
        },
    },
}

BODY = json.dumps(
    {"title": "Found a bug", "body": "I'm having a problem.", "labels": ["bug"], "pad": "x" * 900},
    separators=(",", ":"),
).encode()
# Off by a byte ("title", required, is missing) or a few (a label is a number: neither
# variant), the same length.
NO_TITLE = BODY.replace(b'"title"', b'"titlf"')
BAD_LABEL = BODY.replace(b'["bug"]', b"[75362]")
assert len(NO_TITLE) == len(BODY) == len(BAD_LABEL)


@pytest.fixture(scope="module")
def gateway_port() -> Any:
    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        # The upstream gets the body as sent: it says so.
        return web.json_response({"size": len(body), "same": body == BODY})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    harness = Harness()
    try:
        upstream = harness.aiohttp(app)
        service = {"name": "issues", "upstream": upstream.url, "openapi": SPEC}
        yield harness.gateway({"services": [service]}).port
    finally:
        harness.close()


def post(
    client: RawClient,
    body: bytes,
    content_type: str = "Content-Type: application/json",
    extra: str = "",
    split: bool = False,
) -> tuple[int, bytes]:
    head = (
        f"POST /repos/octocat/hello/issues HTTP/1.1\r\nHost: api.test\r\n{extra}"
        f"{content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    if split:
        client.send(head + body[:300])
        client.send(body[300:])
    else:
        client.send(head + body)
    status, _, answer = client.read_response()
    return status, answer


def test_a_path_parameter_remembered_in_place_is_still_checked(gateway_port: int) -> None:
    # The owner and repo are integer literals: had the remembered place been theirs,
    # "4x" would pass as an integer.
    cases = ["42", "4x", "42", "-1", "1.5", "%34%32", "42", "true", "7", "4%78"]
    want = {
        "42": 200,
        "4x": 400,
        "-1": 200,
        "1.5": 400,
        "%34%32": 200,
        "true": 400,
        "7": 200,
        "4%78": 400,
    }
    got = []
    with RawClient(gateway_port) as client:
        for value in cases:
            for owner in ("123", "o%20c"):
                client.send(
                    f"GET /repos/{owner}/456/issues/{value} HTTP/1.1\r\nHost: api.test\r\n\r\n".encode()
                )
                got.append((owner, value, client.read_response()[0]))
    assert got == [(owner, value, want[value]) for owner, value, _ in got]


def test_a_body_one_byte_off_the_remembered_verdict_is_refused(gateway_port: int) -> None:
    with RawClient(gateway_port) as client:
        statuses = []
        for body in (BODY, NO_TITLE, BODY, BAD_LABEL, BODY, BODY[:-1], BODY):
            status, answer = post(client, body)
            statuses.append(status)
            if status == 200:
                assert json.loads(answer) == {"size": len(BODY), "same": True}
    assert statuses == [200, 400, 200, 400, 200, 400, 200]


@pytest.mark.parametrize(
    ("content_type", "extra"),
    [
        ("content-TYPE: application/json", ""),
        ("Content-Type: application/json; charset=utf-8", "X-Request-Id: abc\r\n"),
        ("CONTENT-TYPE: application/json", "X-Request-Id: abc\r\n"),
    ],
)
def test_content_type_in_any_spelling_gets_its_body_checked(
    gateway_port: int, content_type: str, extra: str
) -> None:
    with RawClient(gateway_port) as client:
        got = [post(client, body, content_type, extra)[0] for body in (BODY, NO_TITLE, BODY)]
    assert got == [200, 400, 200]


def test_a_body_in_two_pieces_is_checked_and_sent_whole(gateway_port: int) -> None:
    with RawClient(gateway_port) as client:
        status, answer = post(client, BODY, split=True)
        assert (status, json.loads(answer)) == (200, {"size": len(BODY), "same": True})
        assert post(client, BAD_LABEL, split=True)[0] == 400
        assert post(client, BODY)[0] == 200
