"""A lean MCP Streamable HTTP client: raw asyncio + httptools, keep-alive, no SDK.

The client shares a CPU with the upstream, and every microsecond it spends is one the
upstream does not get, so it does the least the protocol allows: one HTTP/1.1
connection per session, requests pre-encoded but for the id, the answer read either
as JSON or as SSE (the first `data:` JSON-RPC response with the request's id wins; the
connection is reused once the server has finished the stream).

    session = Session(target)
    await session.open()          # initialize (keeps Mcp-Session-Id), notifications/initialized
    await session.call()          # one tools/call, returns its latency in ns
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httptools
import orjson

PROTOCOL_VERSION = "2025-06-18"
# Every request waits at most this long for its answer; a peer that hangs fails the
# measurement instead of hanging the benchmark.
CALL_TIMEOUT = 30.0
# After the matching response was read from an SSE answer, how long the next request
# waits for the server to end that stream before the connection is dropped for a new one.
STREAM_END_WAIT = 2.0


class McpError(Exception):
    pass


@dataclass
class Target:
    """Where a session goes: one MCP endpoint and the echo tool's name there."""

    name: str
    port: int
    path: str = "/mcp"
    host: str = "127.0.0.1"
    headers: dict[str, str] = field(default_factory=dict)  # e.g. Authorization
    tool: str = "echo"  # replaced by discover_tool() with the name the endpoint lists


@dataclass
class Answer:
    status: int
    content_type: str
    session_id: str | None
    message: dict[str, Any] | None  # the JSON-RPC response with our id, if any
    raw: bytes  # the body read (up to the match, for SSE)


class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self) -> None:
        # Per-connection state
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.lost = False
        self.reusable = True  # False after `Connection: close`
        self.done = asyncio.Event()  # the last answer's message is complete
        self.done.set()
        # Per-request state
        self.want_id: int | None = None
        self.waiter: asyncio.Future[Answer] | None = None
        self.status = 0
        self.content_type = ""
        self.session_id: str | None = None
        self.sse = False
        self.body: list[bytes] = []
        self.sse_buf = b""
        self.got_bytes = False
        # Stream mode (idle GET streams): what arrived after the headers
        self.stream_bytes = 0
        self.stream_last = 0.0

    # Protocol interface

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(McpError(f"bad HTTP answer: {exc}: {data[:200]!r}"))
            self.lost = True
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.done.set()
        self._fail(ConnectionResetError("connection closed before the answer"))

    # Parser callbacks

    def on_message_begin(self) -> None:
        self.status = 0
        self.content_type = ""
        self.session_id = None
        self.sse = False
        self.body = []
        self.sse_buf = b""

    def on_header(self, name: bytes, value: bytes) -> None:
        lname = name.lower()
        if lname == b"content-type":
            self.content_type = value.decode("latin-1")
            self.sse = value.startswith(b"text/event-stream")
        elif lname == b"mcp-session-id":
            self.session_id = value.decode("latin-1")
        elif lname == b"connection" and value.lower() == b"close":
            self.reusable = False

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if self.want_id is None and self.waiter is not None and not self.waiter.done():
            # Stream mode: the GET is answered as soon as its headers are.
            self.waiter.set_result(self._answer(None))

    def on_body(self, chunk: bytes) -> None:
        if self.want_id is None:
            self.stream_bytes += len(chunk)
            self.stream_last = time.monotonic()
            return
        if self.sse:
            self._scan_sse(chunk)
        else:
            self.body.append(chunk)

    def on_message_complete(self) -> None:
        if not self.parser.should_keep_alive():
            self.reusable = False
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            message = None if self.sse else self._find(b"".join(self.body))
            waiter.set_result(self._answer(message))
        self.done.set()

    # Helpers

    def _scan_sse(self, chunk: bytes) -> None:
        # Events end with a blank line; servers write \n, a few \r\n.
        buf = (self.sse_buf + chunk).replace(b"\r\n", b"\n")
        *events, self.sse_buf = buf.split(b"\n\n")
        for event in events:
            data = b"\n".join(
                line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")
            )
            if not data:
                continue  # a comment (keep-alive) or an event without data
            message = self._find(data)
            if message is not None and self.waiter is not None and not self.waiter.done():
                self.body.append(data)
                self.waiter.set_result(self._answer(message))
                return

    def _find(self, data: bytes) -> dict[str, Any] | None:
        """The JSON-RPC response with our id in `data` (an object or a batch), or None."""
        if not data:
            return None
        try:
            decoded = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        for message in decoded if isinstance(decoded, list) else (decoded,):
            if (
                isinstance(message, dict)
                and message.get("id") == self.want_id
                and ("result" in message or "error" in message)
            ):
                return message
        return None

    def _answer(self, message: dict[str, Any] | None) -> Answer:
        return Answer(self.status, self.content_type, self.session_id, message, b"".join(self.body))

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)


class Session:
    """One MCP session over one keep-alive connection (reopened when the server closes it)."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.conn: _Conn | None = None
        self.session_id: str | None = None
        self.protocol_version = PROTOCOL_VERSION
        self.next_id = 1
        self.reconnects = 0  # connections opened after the first
        self.abandoned = 0  # SSE answers the server did not end in time
        self._head_base = b""
        self._rebuild_head()

    def _rebuild_head(self) -> None:
        t = self.target
        lines = [
            f"Host: {t.host}:{t.port}",
            "Content-Type: application/json",
            "Accept: application/json, text/event-stream",
            *(f"{k}: {v}" for k, v in t.headers.items()),
        ]
        if self.session_id is not None:
            lines.append(f"Mcp-Session-Id: {self.session_id}")
            lines.append(f"MCP-Protocol-Version: {self.protocol_version}")
        self._head_base = ("\r\n".join(lines) + "\r\n").encode("latin-1")
        self._post = f"POST {t.path} HTTP/1.1\r\n".encode("latin-1") + self._head_base

    async def _connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        if self.conn is not None:
            self.reconnects += 1
        _, conn = await loop.create_connection(_Conn, self.target.host, self.target.port)
        self.conn = conn
        return conn

    async def _ready_conn(self) -> _Conn:
        conn = self.conn
        if conn is not None and not conn.lost and conn.reusable and not conn.done.is_set():
            # The last SSE answer gave us our response but the stream is still open.
            try:
                await asyncio.wait_for(conn.done.wait(), STREAM_END_WAIT)
            except TimeoutError:
                self.abandoned += 1
                conn.reusable = False
        if conn is None or conn.lost or not conn.reusable:
            if conn is not None and conn.transport is not None:
                conn.transport.close()
            conn = await self._connect()
        return conn

    async def request(
        self, body: bytes, want_id: int | None, *, head: bytes | None = None
    ) -> Answer:
        """Send one request, wait for its answer (retried once if the connection was stale)."""
        data = (head or self._post) + b"Content-Length: %d\r\n\r\n" % len(body) + body
        for attempt in (0, 1):
            conn = await self._ready_conn()
            loop = asyncio.get_running_loop()
            conn.want_id = want_id
            conn.waiter = loop.create_future()
            conn.got_bytes = False
            conn.done.clear()
            assert conn.transport is not None
            conn.transport.write(data)
            try:
                return await asyncio.wait_for(conn.waiter, CALL_TIMEOUT)
            except ConnectionResetError:
                # A keep-alive connection the server closed as we wrote: nothing was
                # answered, so the request can be sent again on a new one.
                if attempt or conn.got_bytes:
                    raise
            except TimeoutError:
                conn.reusable = False
                raise McpError(f"{self.target.name}: no answer in {CALL_TIMEOUT:.0f} s") from None
        raise AssertionError("unreachable")

    async def rpc(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """A JSON-RPC request; its result, or McpError."""
        rid = self.next_id
        self.next_id += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            message["params"] = params
        answer = await self.request(orjson.dumps(message), rid)
        if answer.message is None:
            raise McpError(
                f"{self.target.name}: {method}: HTTP {answer.status} "
                f"{answer.content_type or '(no content type)'}, no response with id {rid}: "
                f"{answer.raw[:300]!r}"
            )
        if "error" in answer.message:
            raise McpError(f"{self.target.name}: {method}: {answer.message['error']}")
        result: dict[str, Any] = answer.message["result"]
        return result

    async def open(self) -> None:
        """initialize (keeping Mcp-Session-Id), then notifications/initialized."""
        rid = self.next_id
        self.next_id += 1
        init = {
            "jsonrpc": "2.0",
            "id": rid,
            "method": "initialize",
            "params": {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "runmcp-fast-bench", "version": "1"},
            },
        }
        answer = await self.request(orjson.dumps(init), rid)
        if answer.message is None or "result" not in answer.message:
            raise McpError(
                f"{self.target.name}: initialize: HTTP {answer.status}: "
                f"{(answer.message or answer.raw)!r:.300}"
            )
        self.session_id = answer.session_id  # None for a stateless server: fine
        self.protocol_version = answer.message["result"].get("protocolVersion", PROTOCOL_VERSION)
        self._rebuild_head()
        note = await self.request(b'{"jsonrpc":"2.0","method":"notifications/initialized"}', None)
        # want_id=None answers at the headers; wait for the (empty) body too.
        await self._finish()
        if note.status not in (200, 202, 204):
            raise McpError(f"{self.target.name}: notifications/initialized: HTTP {note.status}")
        self._call_head = self._post
        self._call_tail = (
            b',"method":"tools/call","params":{"name":'
            + orjson.dumps(self.target.tool)
            + b',"arguments":{"message":"bench"}}}'
        )

    async def _finish(self) -> None:
        if self.conn is not None and not self.conn.lost:
            try:
                await asyncio.wait_for(self.conn.done.wait(), STREAM_END_WAIT)
            except TimeoutError:
                self.conn.reusable = False

    def set_tool(self, tool: str) -> None:
        self.target.tool = tool
        self._call_tail = (
            b',"method":"tools/call","params":{"name":'
            + orjson.dumps(tool)
            + b',"arguments":{"message":"bench"}}}'
        )

    async def call(self) -> int:
        """One tools/call of the echo tool; its latency in ns. McpError if it failed."""
        rid = self.next_id
        self.next_id += 1
        body = b'{"jsonrpc":"2.0","id":%d' % rid + self._call_tail
        start = time.perf_counter_ns()
        answer = await self.request(body, rid)
        elapsed = time.perf_counter_ns() - start
        message = answer.message
        if message is None or "error" in message or message["result"].get("isError"):
            raise McpError(
                f"{self.target.name}: tools/call: HTTP {answer.status}: "
                f"{(message or answer.raw)!r:.300}"
            )
        return elapsed

    async def echo_text(self, text: str) -> str:
        """tools/call with `text`; the text content of the result."""
        result = await self.rpc(
            "tools/call", {"name": self.target.tool, "arguments": {"message": text}}
        )
        if result.get("isError"):
            raise McpError(f"{self.target.name}: tools/call says isError: {result!r:.300}")
        return " ".join(c.get("text", "") for c in result.get("content", []))

    async def open_stream(self) -> int:
        """The standalone GET stream of this session; returns its HTTP status at the headers.

        The connection then belongs to the stream: `stream_bytes` counts what arrives.
        """
        t = self.target
        head = (
            f"GET {t.path} HTTP/1.1\r\nHost: {t.host}:{t.port}\r\n"
            "Accept: text/event-stream\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in t.headers.items())
            + (f"Mcp-Session-Id: {self.session_id}\r\n" if self.session_id else "")
            + f"MCP-Protocol-Version: {self.protocol_version}\r\n\r\n"
        ).encode("latin-1")
        conn = await self._ready_conn()
        conn.want_id = None
        conn.waiter = asyncio.get_running_loop().create_future()
        conn.done.clear()
        assert conn.transport is not None
        conn.transport.write(head)
        answer = await conn.waiter
        return answer.status

    def close(self) -> None:
        if self.conn is not None and self.conn.transport is not None:
            self.conn.transport.close()


async def discover_tool(session: Session, wanted: str = "echo") -> str:
    """The name under which the endpoint lists the upstream's `wanted` tool.

    Gateways prefix tool names (ContextForge: `<gateway-slug>-echo`), so the name is
    looked up in tools/list: the exact name, else one ending in -echo, _echo or .echo.
    """
    result = await session.rpc("tools/list", {})
    names = [t["name"] for t in result.get("tools", [])]
    if wanted in names:
        return wanted
    for sep in ("-", "_", ".", "__"):
        found = [n for n in names if n.endswith(sep + wanted)]
        if len(found) == 1:
            return found[0]
    raise McpError(f"{session.target.name}: no `{wanted}` tool in tools/list: {names[:20]}")
