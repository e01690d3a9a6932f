"""A real MCP server (the official SDK's `MCPServer`) for the gateway's integration tests.

    python tests/mcp_upstream_server.py --port 0 --replica a [--path /mcp]
        [--stateless] [--json-response] [--legacy-sse] [--retry-ms N] [--any-host]

Serves Streamable HTTP on 127.0.0.1 (stateful sessions with `Mcp-Session-Id`
and an in-memory event store for `Last-Event-ID` resumption, unless
`--stateless`), or with `--legacy-sse` the 2024-11-05 HTTP+SSE transport
(`GET /sse`, `POST /messages/?session_id=...`). Prints `READY <port>` on
stdout once it accepts connections; `--port 0` picks a free port and the line
says which. Like any SDK server bound to loopback, it answers 421 to a `Host`
other than 127.0.0.1:*/localhost:*/[::1]:* (403 for such an `Origin`) unless
`--any-host`.

Tools: `echo`, `add`, `whoami` (replica name, the session id the request
came with, pid, negotiated protocol version), `slow` (progress and log
notifications on the request's SSE stream between steps; can close that
stream part way to make the client resume), `notify_tools_changed` (adds a
tool, then `notifications/tools/list_changed` on the session's GET stream, or
to `subscriptions/listen` streams at 2026-07-28) and `big` (n bytes of
`big_text(n)`). One resource (`test://replica`), one resource template
(`test://echo/{value}`) and one prompt (`greet`).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import socket
import sys
import warnings
from typing import Any

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.streamable_http import (
    GET_STREAM_KEY,
    MCP_SESSION_ID_HEADER,
    EventCallback,
    EventId,
    EventMessage,
    EventStore,
    StreamId,
)
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp_types import JSONRPCMessage
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

# `ctx.info()` (the logging capability) is deprecated as of 2026-07-28 but is
# still how 2025-era servers send `notifications/message`; the tests want them.
warnings.filterwarnings(
    "ignore", message="The logging capability is deprecated", category=MCPDeprecationWarning
)

_PATTERN = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\n"


def big_text(n: int) -> str:
    """The `big` tool's answer: `n` bytes of a repeating 63-byte line, so a cut shows."""
    reps, rest = divmod(n, len(_PATTERN))
    return (_PATTERN * reps + _PATTERN[:rest]).decode("ascii")


class MemoryEventStore(EventStore):
    """Every event of every stream, in one list; ids are `<replica>.<n>`.

    The SDK ships only the `EventStore` interface. Priming events (`message`
    None) get ids too, so a client can resume from before the first message.
    """

    def __init__(self, replica: str) -> None:
        self.replica = replica
        self._counter = itertools.count(1)
        self._events: list[tuple[EventId, StreamId, JSONRPCMessage | None]] = []
        self._index: dict[EventId, int] = {}

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        event_id = f"{self.replica}.{next(self._counter)}"
        self._index[event_id] = len(self._events)
        self._events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(
        self, last_event_id: EventId, send_callback: EventCallback
    ) -> StreamId | None:
        position = self._index.get(last_event_id)
        if position is None:
            return None
        stream_id = self._events[position][1]
        for event_id, stream, message in self._events[position + 1 :]:
            if stream == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream_id


def _session_id(ctx: Context) -> str | None:
    request = ctx.request_context.request
    if request is None:
        return None
    # Streamable HTTP: the header (the manager answered 404 had it been
    # unknown); legacy SSE: the query parameter of POST /messages/.
    return request.headers.get(MCP_SESSION_ID_HEADER) or request.query_params.get("session_id")


def build_server(replica: str) -> MCPServer:
    mcp = MCPServer(
        f"upstream-{replica}",
        instructions=f"test upstream replica {replica}",
        log_level="WARNING",
    )
    added = itertools.count(1)

    @mcp.tool()
    def echo(text: str) -> str:
        """Return `text` unchanged."""
        return text

    @mcp.tool()
    def add(a: int, b: int) -> int:
        """Return a + b."""
        return a + b

    @mcp.tool()
    def whoami(ctx: Context) -> dict[str, Any]:
        """Which replica answered, for which session, at which protocol version."""
        return {
            "replica": replica,
            "session_id": _session_id(ctx),
            "protocol_version": ctx.protocol_version,
            "pid": os.getpid(),
        }

    @mcp.tool()
    async def slow(steps: int, delay_ms: int, ctx: Context, close_stream_after: int = 0) -> str:
        """`steps` progress + log notifications, `delay_ms` apart, then "done <steps>".

        With `close_stream_after` = k > 0 the server closes this request's SSE
        stream after step k (2025-11-25+, stateful, with the event store): the
        client has to come back with `GET` + `Last-Event-ID` for the rest.
        """
        for step in range(1, steps + 1):
            await ctx.report_progress(step, steps, f"step {step}")
            await ctx.info(f"{replica} step {step}/{steps}")
            if step == close_stream_after and ctx.request_context.close_sse_stream is not None:
                await ctx.close_sse_stream()
                await _wait_for_stream(mcp, ctx, ctx.request_id)
            await asyncio.sleep(delay_ms / 1000)
        return f"done {steps}"

    @mcp.tool()
    async def notify_tools_changed(ctx: Context) -> str:
        """Add a tool `added_<n>` and announce the change; returns its name."""
        name = f"added_{next(added)}"

        def added_tool() -> str:
            return name

        mcp.add_tool(added_tool, name=name, description="added by notify_tools_changed")
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            # 2026-07-28 has no session stream: the change goes to listeners.
            await ctx.notify_tools_changed()
        else:
            await _wait_for_stream(mcp, ctx, GET_STREAM_KEY)
            await ctx.session.send_tool_list_changed()
        return name

    @mcp.tool()
    def big(n: int) -> str:
        """`n` bytes of text (see `big_text`)."""
        return big_text(n)

    @mcp.resource("test://replica", mime_type="text/plain")
    def replica_resource() -> str:
        return replica

    @mcp.resource("test://echo/{value}", mime_type="text/plain")
    def echo_resource(value: str) -> str:
        return f"{replica}:{value}"

    @mcp.prompt()
    def greet(name: str) -> str:
        """A one-message prompt."""
        return f"Hello {name}, from replica {replica}."

    return mcp


async def _wait_for_stream(mcp: MCPServer, ctx: Context, stream: str, timeout: float = 5.0) -> None:
    """Wait (5 s at most) until the client has `stream` of its session open.

    NOTE: a message for a stream the client is not connected to is stored but
    only replayed to a GET with `Last-Event-ID`; without the wait, tests race
    the client. `stream` is `GET_STREAM_KEY` for the standalone stream (opened
    right after `notifications/initialized`, without Last-Event-ID, so an early
    message is lost), or a request id whose stream was closed (the SDK sends
    nothing live between its replay and re-registering the stream). Private
    SDK state: fine for a test server.
    """
    request = ctx.request_context.request
    session_id = request.headers.get(MCP_SESSION_ID_HEADER) if request is not None else None
    if session_id is None:  # stateless or legacy SSE: nothing to wait for
        return
    transports = mcp.session_manager._server_instances
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        transport = transports.get(session_id)
        if transport is None or stream in transport._request_streams:
            return
        await asyncio.sleep(0.005)


class _Server(uvicorn.Server):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and sockets:
            print(f"READY {sockets[0].getsockname()[1]}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=0, help="0: a free port (see READY)")
    parser.add_argument("--replica", default="r0", help="name reported by whoami")
    parser.add_argument("--path", default="/mcp", help="Streamable HTTP endpoint path")
    parser.add_argument("--stateless", action="store_true", help="no sessions, no event store")
    parser.add_argument("--json-response", action="store_true", help="JSON bodies, not SSE")
    parser.add_argument("--legacy-sse", action="store_true", help="2024-11-05 HTTP+SSE transport")
    parser.add_argument("--retry-ms", type=int, default=None, help="SSE retry: in priming events")
    parser.add_argument("--any-host", action="store_true", help="no Host/Origin allow-list")
    args = parser.parse_args(argv)

    mcp = build_server(args.replica)
    # None: the SDK's default for a loopback bind (DNS rebinding protection on).
    security = (
        TransportSecuritySettings(enable_dns_rebinding_protection=False) if args.any_host else None
    )
    if args.legacy_sse:
        app = mcp.sse_app(transport_security=security)
    else:
        app = mcp.streamable_http_app(
            streamable_http_path=args.path,
            json_response=args.json_response,
            stateless_http=args.stateless,
            event_store=None if args.stateless else MemoryEventStore(args.replica),
            retry_interval=args.retry_ms,
            transport_security=security,
        )

    # Bound here, not by uvicorn, so `--port 0` can report the port it got.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        # Open SSE streams would otherwise hold a SIGTERM forever.
        timeout_graceful_shutdown=0.5,
    )
    _Server(config).run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
