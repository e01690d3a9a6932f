"""Fuzz target: the gateway's request path from the first byte a client sends.

In process, not over sockets (a socket round trip per input would make this a
thousand times slower): a real `Gateway` is started on a uvloop loop in this
thread, and each input is one connection: a `ClientProtocol` from the
gateway's own context, a fake transport, the bytes through `data_received` in
reads of a size byte 0 picks, the loop run until it is idle, then
`connection_lost`. Everything past the transport is the gateway's real code:
httptools, the router, the plugin chain, parameter and body validation, the
generated MCP endpoint, the upstream connection (to a closed port: 502).

Oracle: no callback raises (the loop's exception handler stays silent),
everything written to the client is HTTP/1.1 responses, and none is a 500 (bad
input is the client's fault: a 4xx; the upstream's absence: a 502).
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import uvloop
from harness import instrumented, main

with instrumented():
    from runmcp_fast._dataplane import ClientProtocol
    from runmcp_fast.config import config_from_data
    from runmcp_fast.gateway import Gateway

_BODIES = json.loads((Path(__file__).parent / "schemas" / "github_bodies.json").read_bytes())


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed when this returns: connects are refused


UPSTREAM = f"http://127.0.0.1:{_closed_port()}"
SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "fuzz", "version": "1"},
    "paths": {
        "/repos/{owner}/{repo}/issues": {
            "parameters": [
                {"name": "owner", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "repo", "in": "path", "required": True, "schema": {"type": "string"}},
            ],
            "post": {
                "operationId": "createIssue",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _BODIES["issues/create"]}},
                },
            },
            "get": {
                "operationId": "listIssues",
                "parameters": [
                    {
                        "name": "per_page",
                        "in": "query",
                        "schema": {"type": "integer", "maximum": 100},
                    },
                    {
                        "name": "state",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["open", "closed", "all"]},
                    },
                    {
                        "name": "labels",
                        "in": "query",
                        "style": "form",
                        "explode": False,
                        "schema": {"type": "array", "items": {"type": "string"}},
                    },
                    {
                        "name": "X-Trace",
                        "in": "header",
                        "schema": {"type": "string", "pattern": "^[0-9a-f]{4,}$"},
                    },
                ],
            },
        },
        "/gists": {
            "post": {
                "operationId": "createGist",
                "requestBody": {
                    "content": {
                        "application/json": {"schema": _BODIES["gists/create"]},
                        "application/x-www-form-urlencoded": {
                            "schema": {
                                "type": "object",
                                "properties": {"n": {"type": "integer"}, "q": {"type": "string"}},
                            }
                        },
                    }
                },
            }
        },
    },
}
CONFIG: dict[str, Any] = {
    "listeners": [{"address": "127.0.0.1:0"}],
    "services": [
        {"name": "plain", "upstream": UPSTREAM, "prefix": "/e"},
        {
            "name": "api",
            "upstream": UPSTREAM,
            "openapi": SPEC,
            "mcp": {"path": "/api/mcp"},
        },
        {"name": "proxied", "kind": "mcp", "upstream": UPSTREAM + "/mcp"},
    ],
    "limits": {
        "max_body_bytes": 4096,
        "max_url_bytes": 512,
        "max_header_bytes": 2048,
        "max_headers": 20,
    },
}


class Transport(asyncio.Transport):
    """What ClientProtocol calls on its transport, writing into a list."""

    def __init__(self) -> None:
        super().__init__()
        self.out: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def write_eof(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return ("127.0.0.1", 40000)
        if name == "sockname":
            return ("127.0.0.1", 8080)
        return default


loop = uvloop.new_event_loop()
asyncio.set_event_loop(loop)
errors: list[dict[str, Any]] = []
loop.set_exception_handler(lambda _loop, context: errors.append(context))
gateway = Gateway(config_from_data(CONFIG, source="<fuzz>"), source="<fuzz>")
loop.run_until_complete(gateway.start())
ctx = gateway._ctx


async def _idle() -> None:
    # A few turns: refused upstream connects and their 502s complete in these.
    for _ in range(4):
        await asyncio.sleep(0)


def one_input(data: bytes) -> None:
    if not data:
        return
    step = data[0] % 97 + 1 if data[0] >= 64 else len(data)
    stream = data[1:]
    transport = Transport()
    protocol = ClientProtocol(ctx, b"http")
    protocol.connection_made(transport)
    for start in range(0, len(stream), step):
        if transport.closed:
            break
        protocol.data_received(stream[start : start + step])
    if not transport.closed:
        protocol.eof_received()
    loop.run_until_complete(_idle())
    protocol.connection_lost(None)
    loop.run_until_complete(_idle())
    if errors:
        context = errors[0]
        errors.clear()
        raise AssertionError(f"a callback raised: {context.get('message')}") from context.get(
            "exception"
        )
    out = b"".join(transport.out)
    assert not out or out.startswith(b"HTTP/1.1 "), out[:200]
    assert b"HTTP/1.1 500 " not in out, out[:2000]


if __name__ == "__main__":
    main("http", one_input)
