"""What the coverage-guided fuzzers (tests/fuzz/) found, kept in the default suite."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import Harness, RawRequest

from runmcp_fast.validation import SchemaValidator


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    try:
        yield h
    finally:
        h.close()


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


@pytest.mark.parametrize(
    "endpoint",
    [
        b"http://evil.example/messages?session_id=1",  # on another server: refused
        b"http://[::1/messages",  # not a URI urlsplit can read
    ],
)
def test_legacy_endpoint_the_gateway_refuses_cuts_the_stream(
    harness: Harness, endpoint: bytes
) -> None:
    """fuzz_sse: the endpoint rewriter raises ValueError for an endpoint it must not pass
    on; that exception escaped the upstream's data_received (a callback that raised, the
    upstream socket closed by the loop). Now the client's stream is cut, and nothing of
    the event reaches the client."""
    errors: list[dict[str, Any]] = []

    async def handler(req: RawRequest) -> None:
        req.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        event = b": hello\n\nevent: endpoint\ndata: " + endpoint + b"\n\n"
        req.write(b"%x\r\n%s\r\n" % (len(event), event))

    raw = harness.raw(handler)
    gateway = harness.gateway(
        {
            "services": [
                {
                    "name": "legacy",
                    "kind": "mcp",
                    "upstream": raw.url + "/sse",
                    "mcp": {"transport": "sse", "path": "/legacy/sse"},
                }
            ]
        }
    )
    harness.gateway_loop.loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(
            b"GET /legacy/sse HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
        )
        out = _read_all(sock)  # the gateway closes the connection
    assert b"evil" not in out and b"[::1" not in out
    assert not errors, errors


_BODIES = json.loads(
    (Path(__file__).parent / "fuzz" / "schemas" / "github_bodies.json").read_bytes()
)


@pytest.mark.parametrize(
    ("schema", "body"),
    [
        # The typed decode refuses at labels[0]; explaining it decoded the whole body.
        ("issues/create", b'{"title":"t","labels":' + b"[" * 3000 + b"]" * 3000 + b"}"),
        # `inputs` takes any value: the typed decode itself goes all the way down.
        ("actions/create-workflow-dispatch", b'{"ref":"m","inputs":{"a":' + b"[" * 3000 + b"}}"),
        (
            "actions/create-workflow-dispatch",
            b'{"ref":"m","inputs":{"a":' + b'{"a":' * 3000 + b"}}",
        ),
    ],
)
def test_a_body_nested_too_deeply_is_refused_not_an_error(schema: str, body: bytes) -> None:
    """fuzz_bodycheck: msgspec raises RecursionError past the interpreter's recursion
    limit, which check_json let through: the contract step failed and the client got a
    500. Now it is a 400 like any other body that breaks the contract."""
    validator = SchemaValidator(_BODIES[schema])
    issues = validator.check_json(body)
    assert issues, issues
    assert all(issue.pointer.startswith("/body") for issue in issues)
