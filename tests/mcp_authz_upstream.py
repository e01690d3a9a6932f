"""An MCP server (the official SDK's `MCPServer`) with annotated tools, for mcp-authz tests.

    python tests/mcp_authz_upstream.py --port 0 [--json-response] [--stateless]

Tools: `read_notes` (readOnlyHint), `add_note` (not read-only, not destructive),
`delete_note` (destructiveHint), `admin_reset` (no annotations: destructive by
the spec's defaults), `ping_tool`. `GET /calls` (plain HTTP, not MCP) answers how many
times each tool was called, so a test counts what reached the upstream. Prints
`READY <port>` once it serves.
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections import Counter

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import ToolAnnotations
from starlette.requests import Request
from starlette.responses import JSONResponse

CALLS: Counter[str] = Counter()


def build() -> MCPServer:
    mcp = MCPServer("authz-upstream", log_level="WARNING")

    def called(name: str) -> None:
        CALLS[name] += 1

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=True))
    def read_notes() -> str:
        """Read the notes."""
        called("read_notes")
        return "notes"

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False))
    def add_note(text: str) -> str:
        """Add a note."""
        called("add_note")
        return f"added {text}"

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True))
    def delete_note(index: int) -> str:
        """Delete a note."""
        called("delete_note")
        return f"deleted {index}"

    @mcp.tool()
    def admin_reset() -> str:
        """Reset everything."""
        called("admin_reset")
        return "reset"

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=True))
    def ping_tool() -> str:
        """Answer pong."""
        called("ping_tool")
        return "pong"

    return mcp


class _Server(uvicorn.Server):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and sockets:
            print(f"READY {sockets[0].getsockname()[1]}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--json-response", action="store_true")
    args = parser.parse_args()
    app = build().streamable_http_app(
        streamable_http_path="/mcp",
        json_response=args.json_response,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )

    async def calls(request: Request) -> JSONResponse:
        return JSONResponse(dict(CALLS))

    app.add_route("/calls", calls, methods=["GET"])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=0.5
    )
    _Server(config).run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
