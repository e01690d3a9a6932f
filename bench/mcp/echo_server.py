"""The fast upstream: an `mcp` SDK server with one trivial `echo` tool.

Stateful Streamable HTTP (sessions with Mcp-Session-Id) at /mcp; answers are SSE
streams by default, one JSON body each with --json (the SDK's `json_response`).
uvicorn with uvloop + httptools when installed, no access log.

    .venv/bin/python bench/mcp/echo_server.py --port 9001 [--json]
"""

from __future__ import annotations

import argparse

import uvicorn
from mcp.server.mcpserver import MCPServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--json", action="store_true", help="JSON answers instead of SSE")
    args = parser.parse_args()

    server = MCPServer("bench-echo")

    @server.tool()
    def echo(message: str) -> str:
        """Return the message."""
        return message

    app = server.streamable_http_app(
        streamable_http_path="/mcp",
        json_response=args.json,
        host=args.host,
        # Enough sessions for the concurrent runs and the peers that open a new
        # upstream session per call (FastMCP's default proxy).
        max_sessions=100_000,
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
