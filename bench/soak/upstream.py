"""The soak's aiohttp upstream: finite SSE streams, a raw MCP server, and JSON for the rest.

- `GET /events/...`: `text/event-stream`, `--events` events `--event-gap` seconds
  apart, then the stream ends (so a client counts whole streams).
- `/mcp` (POST, GET, DELETE): bench/mcp's raw Streamable HTTP server (`initialize`
  with an `Mcp-Session-Id`, `tools/call` of `echo`, notifications 202).
- anything else, any method: 200 with a small JSON body and `X-Kind: <method>`
  (the GET/POST upstream when nginx is not used, and the churned services').

    .venv/bin/python bench/soak/upstream.py --port 9001 [--events 5] [--event-gap 0.02]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mcp"))
import sse_upstream

BODY = b'{"id": 42, "name": "soak", "tags": ["a", "b"], "price": 9.5, "pad": "' + b"x" * 900 + b'"}'


async def events(request: web.Request) -> web.StreamResponse:
    count: int = request.app["events"]
    gap: float = request.app["event_gap"]
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    try:
        for index in range(count):
            await response.write(f'id: {index}\ndata: {{"n": {index}}}\n\n'.encode())
            if index + 1 < count:
                await asyncio.sleep(gap)
        await response.write_eof()
    except (ConnectionResetError, ConnectionError):
        pass
    return response


async def anything(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(
        body=BODY, content_type="application/json", headers={"X-Kind": request.method}
    )


def app(event_count: int, event_gap: float) -> web.Application:
    application = web.Application(client_max_size=1 << 20)
    application["keepalive"] = 15.0  # sse_upstream's GET stream: a comment this often
    application["events"] = event_count
    application["event_gap"] = event_gap
    application.router.add_get("/events/{tail:.*}", events)
    application.router.add_post("/mcp", sse_upstream.post)
    application.router.add_get("/mcp", sse_upstream.get)
    application.router.add_delete("/mcp", sse_upstream.delete)
    application.router.add_route("*", "/{tail:.*}", anything)
    return application


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--events", type=int, default=5, help="events per SSE stream")
    parser.add_argument("--event-gap", type=float, default=0.02, help="seconds between events")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(
        app(args.events, args.event_gap),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
