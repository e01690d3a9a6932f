"""A minimal raw MCP upstream for the idle-stream measurement (aiohttp, no SDK).

The SDK server keeps a task group, streams and a session object per session, and
sends a GET stream's headers only with its first ping (15 s later): at 10,000 streams
the upstream would be the thing measured. This one does just enough of Streamable HTTP
for a gateway to set a session up and hold its standalone stream:

- POST /mcp `initialize`: a JSON answer with a new Mcp-Session-Id;
  notifications: 202; `tools/list` and `tools/call` of `echo`: JSON answers.
- GET /mcp: `text/event-stream`, headers and `: open` at once, then a `: keepalive`
  comment every --keepalive seconds until the client goes away.
- DELETE /mcp: 200.

    .venv/bin/python bench/mcp/sse_upstream.py --port 9003 [--keepalive 5]
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from typing import Any

import orjson
from aiohttp import web

TOOL = {
    "name": "echo",
    "description": "Return the message.",
    "inputSchema": {
        "type": "object",
        "properties": {"message": {"type": "string"}},
        "required": ["message"],
    },
}


def _json(payload: Any, **headers: str) -> web.Response:
    return web.Response(
        body=orjson.dumps(payload), content_type="application/json", headers=headers
    )


async def post(request: web.Request) -> web.StreamResponse:
    message = orjson.loads(await request.read())
    if "id" not in message:
        return web.Response(status=202)  # a notification
    rid, method = message["id"], message.get("method")
    params = message.get("params") or {}
    if method == "initialize":
        result = {
            "protocolVersion": params.get("protocolVersion", "2025-06-18"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "bench-raw-sse", "version": "1"},
        }
        return _json(
            {"jsonrpc": "2.0", "id": rid, "result": result}, **{"Mcp-Session-Id": uuid.uuid4().hex}
        )
    if method == "tools/list":
        return _json({"jsonrpc": "2.0", "id": rid, "result": {"tools": [TOOL]}})
    if method == "tools/call":
        text = str((params.get("arguments") or {}).get("message", ""))
        result = {"content": [{"type": "text", "text": text}], "isError": False}
        return _json({"jsonrpc": "2.0", "id": rid, "result": result})
    if method == "ping":
        return _json({"jsonrpc": "2.0", "id": rid, "result": {}})
    error = {"code": -32601, "message": f"method not found: {method}"}
    return _json({"jsonrpc": "2.0", "id": rid, "error": error})


async def get(request: web.Request) -> web.StreamResponse:
    interval: float = request.app["keepalive"]
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    await response.write(b": open\n\n")
    try:
        while True:
            await asyncio.sleep(interval)
            await response.write(b": keepalive\n\n")
    except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
        pass
    return response


async def delete(_request: web.Request) -> web.Response:
    return web.Response(status=200)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--keepalive", type=float, default=5.0, help="seconds between comments")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    app = web.Application()
    app["keepalive"] = args.keepalive
    app.router.add_post("/mcp", post)
    app.router.add_get("/mcp", get)
    app.router.add_delete("/mcp", delete)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None, backlog=4096)


if __name__ == "__main__":
    main()
