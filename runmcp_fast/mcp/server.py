"""MCP servers the gateway answers itself: an OpenAPI service's tools, and federations.

`McpEndpoint` is a local target's handler (`hooks.Handler`, `Target.local`) speaking
Streamable HTTP:

- POST: one JSON-RPC message (a batch on 2025-03-26), answered as JSON:
  `initialize`, `ping`, `tools/list` (paginated), `tools/call`, and on
  2026-07-28 `server/discover` and `subscriptions/listen` (an event stream).
  Notifications and responses get 202.
- GET: an event stream on which `notifications/tools/list_changed` arrives
  when a live config change alters the tools; DELETE ends a session.

Sessions are stateless: the `Mcp-Session-Id` issued by `initialize` is the
negotiated revision sealed with the gateway's session key, so any worker
or node understands it, and a request without one is served as well (the
revision then comes from `MCP-Protocol-Version`). A forged id gets 404.

A tool's call is sent through the same data plane as any client's request
(`loopback.fetch`): routed, checked against the contract, and sent over
the upstream pool; its response becomes the tool's result. A federation's
MCP members are called as an MCP client would, through the gateway's own
proxy of that member.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Sequence
from typing import Any

import msgspec
import orjson

from runmcp_fast import __version__, jsontext
from runmcp_fast._dataplane import LocalRequest, LocalStream, ServerContext
from runmcp_fast.mcp import jsonrpc, loopback, sse, versions
from runmcp_fast.mcp.affinity import SessionCodec, session_key
from runmcp_fast.mcp.authz import GATE_VAR, ToolGate
from runmcp_fast.mcp.proxy import (
    HEADER_MISMATCH,
    OriginPolicy,
    repeated_routing_header,
    routing_mismatch,
)
from runmcp_fast.mcp.tools import (
    MAX_NAME,
    InvalidCursor,
    Tool,
    ToolArgumentError,
    ToolSet,
    tool_result,
)

log = logging.getLogger("runmcp_fast.mcp")

Headers = tuple[tuple[str, str], ...]
Answer = tuple[int, Headers, bytes | LocalStream]

HANDSHAKE_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
LATEST_HANDSHAKE = HANDSHAKE_VERSIONS[-1]
MODERN_VERSIONS = ("2026-07-28",)
SUPPORTED_VERSIONS = (*HANDSHAKE_VERSIONS, *MODERN_VERSIONS)

_JSON: Headers = (("Content-Type", "application/json"),)
_SSE: Headers = (
    ("Content-Type", "text/event-stream"),
    ("Cache-Control", "no-cache, no-transform"),
    ("X-Accel-Buffering", "no"),
)
_ACCEPTED: Answer = (202, (), b"")
_TOOLS_CHANGED = sse.encode_event(
    orjson.dumps({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
)
_MODERN_STATUS = {  # 2026-07-28: the HTTP status of an error answer, by JSON-RPC code
    jsonrpc.PARSE_ERROR: 400,
    jsonrpc.INVALID_REQUEST: 400,
    jsonrpc.INVALID_PARAMS: 400,
    jsonrpc.METHOD_NOT_FOUND: 404,
}
# 2026-07-28 list results carry caching directives: the SDK's safe default
# (private, stale at once), since a live config change may alter the list.
_CACHE_DIRECTIVES = {"ttlMs": 0, "cacheScope": "private"}
_MODERN_LIST_TAIL = b',"resultType":"complete","ttlMs":0,"cacheScope":"private"}'
_encode_id = msgspec.json.Encoder().encode  # a JSON-RPC id, of any size
_ENDED_LIMIT = 65536  # ended session ids remembered per endpoint
# Passed on to the API a tool calls: the caller's credential, and its trace context (the
# opentelemetry plugin has made the endpoint's own span the parent by then).
_FORWARDED_HEADERS = ("authorization", "traceparent", "tracestate")
ENVELOPE_VAR = "mcp.envelope"  # the checked envelope, for the route's log steps


class RpcError(Exception):
    """A JSON-RPC error answer to one request (`status`: its HTTP status at 2026-07-28)."""

    def __init__(
        self, code: int, message: str, data: Any = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data
        self.status = status


def gate_of(request: LocalRequest) -> ToolGate | None:
    """The ToolGate the route's mcp-authz step left for this request, if it has one."""
    gate: ToolGate | None = request.vars.get(GATE_VAR)
    return gate


class Listeners:
    """The event streams waiting for one endpoint's notifications, across config versions.

    Kept in the server context's `state` by the endpoint's key, so the
    streams opened on an endpoint survive its replacement by a live change;
    `digest` is the tool list they last saw.
    """

    __slots__ = ("digest", "streams")

    def __init__(self, digest: str) -> None:
        self.digest = digest
        self.streams: set[LocalStream] = set()

    def broadcast(self, event: bytes) -> int:
        sent = 0
        for stream in tuple(self.streams):
            if stream.write(event):
                sent += 1
        return sent


def listeners(ctx: ServerContext, key: str, digest: str) -> Listeners:
    registry: dict[str, Listeners] = ctx.state.setdefault("mcp_listeners", {})
    found = registry.get(key)
    if found is None:
        found = registry[key] = Listeners(digest)
    return found


def tools_changed(ctx: ServerContext, endpoints: Sequence[McpEndpoint]) -> int:
    """After a swap: tell each endpoint's listeners if its tools changed; how many were told."""
    registry: dict[str, Listeners] | None = ctx.state.get("mcp_listeners")
    if not registry:
        return 0
    told = 0
    for endpoint in endpoints:
        group = registry.get(endpoint.key)
        if group is None or not group.streams or not endpoint.digest_known:
            continue  # nobody listens: no digest to compare (and none computed)
        if group.digest != endpoint.digest:
            group.digest = endpoint.digest
            told += group.broadcast(_TOOLS_CHANGED)
    return told


class McpEndpoint:
    """A Streamable HTTP MCP server whose tools come from `tools()` (see subclasses)."""

    def __init__(
        self,
        key: str,
        name: str,
        *,
        page_size: int,
        instructions: str | None = None,
        allowed_origins: Sequence[str] = (),
    ) -> None:
        self.origins = OriginPolicy(allowed_origins)
        self.key = key
        self.name = name
        self.page_size = page_size
        self.instructions = instructions
        self._codec = SessionCodec(session_key(), f"mcp-endpoint {key}", ("local",))
        self._ended: set[bytes] = set()

    # -- what subclasses give -------------------------------------------------------

    @property
    def digest_known(self) -> bool:
        return True

    @property
    def digest(self) -> str:
        raise NotImplementedError

    async def list_page(self, request: LocalRequest, cursor: str | None) -> dict[str, Any] | bytes:
        """One tools/list result, or its JSON; InvalidCursor for a cursor not ours."""
        raise NotImplementedError

    async def call(
        self, request: LocalRequest, name: str, arguments: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The CallToolResult of tool `name`; RpcError for an unknown tool."""
        raise NotImplementedError

    async def annotations(self, request: LocalRequest, name: str) -> tuple[bool, object]:
        """(whether tool `name` is offered here, its annotations): what a gate decides on."""
        raise NotImplementedError

    # -- the handler ----------------------------------------------------------------

    async def __call__(self, request: LocalRequest) -> Answer:
        origin = request.headers.get("origin")
        if origin is not None and not self.origins.allows(
            origin.encode("latin-1"), request.host.encode("latin-1") or None
        ):
            return _error_answer(403, None, jsonrpc.INVALID_REQUEST, "this Origin is not allowed")
        method = request.method
        if method == "POST":
            return await self._post(request)
        if method == "GET":
            return self._listen(request)
        if method == "DELETE":
            return self._end_session(request)
        return (
            405,
            (("Allow", "GET, POST, DELETE"), *_JSON),
            jsonrpc.encode_error(None, jsonrpc.INVALID_REQUEST, f"{method} is not allowed here"),
        )

    def _session(self, request: LocalRequest) -> tuple[str | None, Answer | None]:
        """(the revision the session negotiated or None, an answer refusing the id)."""
        token = request.headers.get("mcp-session-id")
        if token is None:
            return None, None
        raw = token.strip().encode("latin-1")
        opened = self._codec.open(raw) if raw not in self._ended else None
        if opened is None:
            return None, _error_answer(404, None, jsonrpc.INVALID_REQUEST, "session not found")
        return opened[1].decode("ascii"), None

    def _version(self, request: LocalRequest, negotiated: str | None) -> str | Answer:
        header = request.headers.get("mcp-protocol-version")
        if header is None:
            return negotiated or versions.DEFAULT_VERSION_WITHOUT_HEADER
        version = header.strip()
        if version not in SUPPORTED_VERSIONS:
            return _error_answer(
                400,
                None,
                jsonrpc.INVALID_REQUEST,
                f"unsupported MCP-Protocol-Version {version!r}; supported: "
                + ", ".join(SUPPORTED_VERSIONS),
            )
        return version

    async def _post(self, request: LocalRequest) -> Answer:
        negotiated, refusal = self._session(request)
        if refusal is not None:
            return refusal
        version = self._version(request, negotiated)
        if isinstance(version, tuple):
            return version
        modern = versions.is_stateless(version)
        allow_batch = versions.allows_batch(version)
        envelope = jsonrpc.check_envelope(request.body, allow_batch=allow_batch)
        if isinstance(envelope, jsonrpc.EnvelopeError):
            return 400, _JSON, jsonrpc.error_body(envelope)
        if versions.validates_routing_headers(version):
            # 2026-07-28: the Mcp-Method / Mcp-Name headers must say what the body says
            # (a server MUST check them), answered as the proxy's envelope check does.
            mismatch = _routing_problem(request, envelope)
            if mismatch:
                return _error_answer(400, envelope.id, HEADER_MISMATCH, mismatch)
        # What was called, for the route's log steps (the proxy's envelope check leaves the
        # same): the request's vars are the route's when a step made them (tracing does).
        request.vars[ENVELOPE_VAR] = envelope
        decoded = jsonrpc.decode_checked(request.body, envelope, allow_batch=allow_batch)
        if isinstance(decoded, jsonrpc.EnvelopeError):
            return 400, _JSON, jsonrpc.error_body(decoded)
        # What was asked, for the access log (a batch's methods joined with ",").
        request.vars[METHOD_VAR] = (
            ",".join(m.method for m in decoded if m.method is not None)
            if isinstance(decoded, list)
            else decoded.method
        )
        if isinstance(decoded, list):
            answers = [await self._one(request, m, version, modern) for m in decoded]
            bodies = [a[2] for a in answers if isinstance(a[2], bytes) and a[0] != 202]
            if not bodies:
                return _ACCEPTED
            return 200, _JSON, b"[" + b",".join(bodies) + b"]"
        return await self._one(request, decoded, version, modern)

    async def _one(
        self, request: LocalRequest, message: jsonrpc.Message, version: str, modern: bool
    ) -> Answer:
        if message.method is None or message.id is None:
            return _ACCEPTED  # a notification or a response: nothing to answer
        try:
            if message.method == "initialize":
                return self._initialize(message)
            if message.method == "subscriptions/listen" and modern:
                return self._subscribe(request, message)
            result = await self._dispatch(request, message, modern)
        except RpcError as exc:
            status = (exc.status or _MODERN_STATUS.get(exc.code, 500)) if modern else 200
            return _error_answer(status, message.id, exc.code, exc.message, exc.data)
        except Exception:
            log.exception("MCP endpoint %s: %s failed", self.key, message.method)
            status = 500 if modern else 200
            return _error_answer(status, message.id, jsonrpc.INTERNAL_ERROR, "internal error")
        if isinstance(result, bytes):
            # A tools/list page, encoded once per tool list: spliced in as it is.
            if modern:
                result = result[:-1] + _MODERN_LIST_TAIL
            # msgspec, not orjson, for the id: orjson refuses integers past 64 bits, which
            # JSON-RPC allows and the envelope check accepts (an id of 2**64 answered 500).
            head = b'{"jsonrpc":"2.0","id":' + _encode_id(message.id) + b',"result":'
            return 200, _JSON, head + result + b"}"
        if modern:
            result.setdefault("resultType", "complete")
        return 200, _JSON, jsonrpc.encode_result(message.id, result)

    async def _dispatch(
        self, request: LocalRequest, message: jsonrpc.Message, modern: bool
    ) -> dict[str, Any] | bytes:
        method = message.method
        params = message.params if isinstance(message.params, dict) else {}
        if method == "ping":
            return {}
        if method == "tools/list":
            cursor = params.get("cursor")
            if cursor is not None and not isinstance(cursor, str):
                raise RpcError(jsonrpc.INVALID_PARAMS, "cursor must be a string")
            try:
                page = await self.list_page(request, cursor)
            except InvalidCursor as exc:
                raise RpcError(jsonrpc.INVALID_PARAMS, str(exc) or "invalid cursor") from None
            if modern and isinstance(page, dict):
                page.update(_CACHE_DIRECTIVES)
            return page
        if method == "tools/call":
            name = params.get("name")
            if not isinstance(name, str):
                raise RpcError(jsonrpc.INVALID_PARAMS, "tools/call needs the tool's name")
            arguments = params.get("arguments")
            if arguments is not None and not isinstance(arguments, dict):
                raise RpcError(jsonrpc.INVALID_PARAMS, "arguments must be an object")
            gate = gate_of(request)
            if gate is not None:
                # Decided as tools/list decides what it shows (an unknown tool goes on:
                # the endpoint answers that it has no such tool).
                offered, annotations = await self.annotations(request, name)
                if offered and not gate.allows(request, name, annotations):
                    code, text, data = gate.refusal(name)
                    _called(request, name, "refused")
                    raise RpcError(code, text, data, status=403)
            try:
                result = await self.call(request, name, arguments)
            except RpcError:
                _called(request, name, "error")
                raise
            _called(request, name, "error" if result.get("isError") else "ok")
            return result
        if method == "server/discover":
            return {
                "supportedVersions": list(SUPPORTED_VERSIONS),
                "capabilities": {"tools": {"listChanged": True}},
                "serverInfo": {"name": self.name, "version": __version__},
                **({"instructions": self.instructions} if self.instructions else {}),
                **_CACHE_DIRECTIVES,
            }
        raise RpcError(jsonrpc.METHOD_NOT_FOUND, f"method {method!r} is not offered here")

    def _initialize(self, message: jsonrpc.Message) -> Answer:
        params = message.params if isinstance(message.params, dict) else {}
        asked = params.get("protocolVersion")
        version = asked if asked in HANDSHAKE_VERSIONS else LATEST_HANDSHAKE
        result: dict[str, Any] = {
            "protocolVersion": version,
            "capabilities": {"tools": {"listChanged": True}},
            "serverInfo": {"name": self.name, "version": __version__},
        }
        if self.instructions:
            result["instructions"] = self.instructions
        assert message.id is not None
        token = self._codec.seal(0, version.encode("ascii")).decode("ascii")
        return (
            200,
            (*_JSON, ("Mcp-Session-Id", token)),
            jsonrpc.encode_result(message.id, result),
        )

    def _listen(self, request: LocalRequest) -> Answer:
        """GET: the stream server-to-client notifications (tools/list_changed) come on."""
        negotiated, refusal = self._session(request)
        if refusal is not None:
            return refusal
        version = self._version(request, negotiated)
        if isinstance(version, tuple):
            return version
        if versions.is_stateless(version):
            return _error_answer(
                405, None, jsonrpc.INVALID_REQUEST, "use subscriptions/listen at this revision"
            )
        if "text/event-stream" not in request.headers.get("accept", ""):
            return _error_answer(
                406, None, jsonrpc.INVALID_REQUEST, "GET needs Accept: text/event-stream"
            )
        return 200, _SSE, self._open_stream(request, None)

    def _subscribe(self, request: LocalRequest, message: jsonrpc.Message) -> Answer:
        """2026-07-28 `subscriptions/listen`: an event stream, acknowledged first."""
        params = message.params if isinstance(message.params, dict) else {}
        wanted = params.get("notifications")
        honoured: dict[str, Any] = {}
        if isinstance(wanted, dict) and wanted.get("toolsListChanged"):
            honoured["toolsListChanged"] = True
        ack = {
            "jsonrpc": "2.0",
            "method": "notifications/subscriptions/acknowledged",
            "params": {"notifications": honoured},
        }
        first = sse.encode_event(orjson.dumps(ack))
        return 200, _SSE, self._open_stream(request, first, honoured)

    def _open_stream(
        self, request: LocalRequest, first: bytes | None, honoured: dict[str, Any] | None = None
    ) -> LocalStream:
        assert request.ctx is not None
        group = listeners(request.ctx, self.key, self.digest if self.digest_known else "")
        stream = LocalStream(on_close=group.streams.discard)
        if first is not None:
            stream.write(first)
        if honoured is None or honoured:
            group.streams.add(stream)
        return stream

    def _end_session(self, request: LocalRequest) -> Answer:
        _, refusal = self._session(request)
        if refusal is not None:
            return refusal
        token = request.headers.get("mcp-session-id")
        if token is None:
            return _error_answer(400, None, jsonrpc.INVALID_REQUEST, "no Mcp-Session-Id to end")
        raw = token.strip().encode("latin-1")
        # Its opened id is not needed any more: `_ended` refuses it from now on
        # (bench/soak: the cache kept every session, up to its limit).
        self._codec.forget(raw)
        if len(self._ended) >= _ENDED_LIMIT:
            self._ended.clear()
        self._ended.add(raw)
        return 200, (), b""


def _called(request: LocalRequest, tool: str, outcome: str) -> None:
    """Leave a tools/call's outcome for the route's metrics (the prometheus step)."""
    request.vars.setdefault(CALLS_VAR, []).append((tool, outcome))


CALLS_VAR = "mcp.calls"  # [(tool, outcome)] of a request's tools/call (read by the metrics)
METHOD_VAR = "mcp.method"  # the JSON-RPC method(s) a request asked (read by the access log)


def _error_answer(
    status: int, id: jsonrpc.RequestId | None, code: int, message: str, data: Any = None
) -> tuple[int, Headers, bytes]:
    return status, _JSON, jsonrpc.encode_error(id, code, message, data)


Hosts = tuple[str | None, ...]
"""The host patterns a service is routed on (None: any Host)."""


def call_host(hosts: Hosts, request_host: str) -> str:
    """A Host that routes to a service on `hosts`: the caller's when it takes any Host."""
    if None in hosts or not hosts:
        return request_host
    for pattern in hosts:
        if pattern is not None and "*" not in pattern and "{" not in pattern:
            return pattern
    pattern = next(p for p in hosts if p is not None)
    # A wildcard or template host: any label stands in for the variable part.
    out, depth = [], 0
    for ch in pattern:
        if ch == "{":
            depth += 1
            if depth == 1:
                out.append("mcp")
        elif ch == "}":
            depth -= 1
        elif depth == 0:
            out.append("mcp" if ch == "*" else ch)
    return "".join(out)


async def call_tool(
    request: LocalRequest,
    hosts: Hosts,
    tool: Tool,
    arguments: dict[str, Any] | None,
) -> dict[str, Any]:
    """Send a tool call through the data plane as the HTTP request it stands for."""
    try:
        call = tool.build_request(arguments)
    except ToolArgumentError as exc:
        return {"content": [{"type": "text", "text": str(exc)}], "isError": True}
    headers = list(call.headers)
    if call.content_type is not None:
        headers.append(("Content-Type", call.content_type))
    headers.append(("Accept", "application/json, */*;q=0.5"))
    for name in _FORWARDED_HEADERS:
        value = request.headers.get(name)
        if value is not None:
            headers.append((name, value))
    assert request.ctx is not None
    try:
        status, response_headers, body = await loopback.fetch(
            request.ctx,
            call.method,
            call.path_and_query,
            call_host(hosts, request.host),
            headers,
            call.body,
            request.peer or "127.0.0.1",
        )
    except loopback.LoopbackError as exc:
        return {"content": [{"type": "text", "text": f"the call failed: {exc}"}], "isError": True}
    return tool_result(status, response_headers, body)


class ServiceEndpoint(McpEndpoint):
    """An OpenAPI service's operations as tools."""

    def __init__(
        self,
        label: str,
        tools: ToolSet,
        *,
        hosts: Hosts,
        title: str,
        page_size: int,
        allowed_origins: Sequence[str] = (),
    ) -> None:
        super().__init__(
            f"service {label}",
            label,
            page_size=page_size,
            instructions=f"The tools of the {title} API." if title else None,
            allowed_origins=allowed_origins,
        )
        self.hosts = hosts
        self.tools = tools

    @property
    def digest(self) -> str:
        return self.tools.digest

    async def list_page(self, request: LocalRequest, cursor: str | None) -> bytes:
        gate = gate_of(request)
        if gate is None:
            return self.tools.page_json(cursor, self.page_size)

        def keep(tool: Tool) -> bool:
            return gate.allows(request, tool.name, tool.annotations)

        return self.tools.page_json_where(cursor, self.page_size, keep)

    async def annotations(self, request: LocalRequest, name: str) -> tuple[bool, object]:
        tool = self.tools.get(name)
        return (True, tool.annotations) if tool is not None else (False, None)

    async def call(
        self, request: LocalRequest, name: str, arguments: dict[str, Any] | None
    ) -> dict[str, Any]:
        tool = self.tools.get(name)
        if tool is None:
            raise RpcError(jsonrpc.INVALID_PARAMS, f"unknown tool {name!r}")
        return await call_tool(request, self.hosts, tool, arguments)


# -- federation ---------------------------------------------------------------------


def prefixed_name(prefix: str, name: str) -> str:
    """`prefix` + `name`, cut to MAX_NAME with a stable hash suffix when too long."""
    full = prefix + name
    if len(full) <= MAX_NAME:
        return full
    suffix = "_" + hashlib.sha256(full.encode("utf-8")).hexdigest()[:8]
    return full[: MAX_NAME - len(suffix)] + suffix


class RemoteTools:
    """An MCP member's tools, read as a client would through the gateway's proxy of it.

    Holds one session with the member (re-opened when it gets 404), and its
    tool list for `ttl` seconds.
    """

    ttl = 30.0

    def __init__(self, hosts: Hosts, path: str) -> None:
        self.hosts = hosts
        self.path = path
        self._session: str | None = None
        # Initialized, with or without a session: a stateless member gives no id, and
        # taking "no id" for "not initialized" sent it initialize before every request.
        self._ready = False
        self._version = LATEST_HANDSHAKE
        self._tools: list[dict[str, Any]] | None = None
        self._fetched = 0.0
        self._ids = 0
        self._lock = asyncio.Lock()
        # The handshake under way, which every request that needs a session waits for:
        # one at a time, whoever asks (a member that lost its session was sent one
        # handshake per request that saw its 404, and kept all those sessions open).
        self._opening: asyncio.Task[None] | None = None
        self._opened = 0  # handshakes begun: the session a 404 was for may be gone already

    async def tools(self, request: LocalRequest) -> list[dict[str, Any]]:
        if self._tools is not None and time.monotonic() - self._fetched < self.ttl:
            return self._tools
        async with self._lock:
            if self._tools is not None and time.monotonic() - self._fetched < self.ttl:
                return self._tools
            tools: list[dict[str, Any]] = []
            cursor: str | None = None
            for _ in range(1000):  # bounded, whatever the member's cursors do
                params = {"cursor": cursor} if cursor else {}
                result = await self.request(request, "tools/list", params)
                page = result.get("tools")
                if isinstance(page, list):
                    tools.extend(t for t in page if isinstance(t, dict))
                cursor = result.get("nextCursor")
                if not isinstance(cursor, str) or not cursor:
                    break
            self._tools = tools
            self._fetched = time.monotonic()
            return tools

    async def request(
        self, request: LocalRequest, method: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        """One JSON-RPC request to the member; its result, or RpcError."""
        for attempt in (0, 1):
            if not self._ready:
                await self._open(request)
            opened = self._opened
            status, headers, body = await self._post(request, method, params, self._session)
            if status == 404 and attempt == 0:
                # The member lost the session: open another once. Only if no request
                # has begun that already: the others that saw the same 404 wait for it.
                if opened == self._opened:
                    self._session, self._ready = None, False
                continue
            return self._result(status, headers, body)
        raise RpcError(jsonrpc.INTERNAL_ERROR, "the member server keeps losing its session")

    async def _open(self, request: LocalRequest) -> None:
        """Join the handshake under way, or begin one: a single handshake for all who wait.
        Its failure is each waiter's; the next request after it tries again."""
        opening = self._opening
        if opening is None:
            self._opened += 1
            opening = self._opening = asyncio.ensure_future(self._initialize(request))
            opening.add_done_callback(self._opening_done)
        # Shielded: a waiter that is cancelled (its client left) does not end the
        # handshake the others wait for.
        await asyncio.shield(opening)

    def _opening_done(self, opening: asyncio.Task[None]) -> None:
        if self._opening is opening:
            self._opening = None
        if not opening.cancelled():
            opening.exception()  # read: every waiter may have left before it ended

    async def _initialize(self, request: LocalRequest) -> None:
        params = {
            "protocolVersion": LATEST_HANDSHAKE,
            "capabilities": {},
            "clientInfo": {"name": "runmcp-fast federation", "version": __version__},
        }
        status, headers, body = await self._post(request, "initialize", params, None)
        result = self._result(status, headers, body)
        version = result.get("protocolVersion")
        self._version = version if isinstance(version, str) else LATEST_HANDSHAKE
        session = _header(headers, "mcp-session-id")
        await self._post(request, "notifications/initialized", None, session)
        # Set together, once done: requests still out on the old session (whose 404 may
        # come back after this) must not take a half-made one for it.
        self._session, self._ready = session, True

    async def _post(
        self,
        request: LocalRequest,
        method: str,
        params: dict[str, Any] | None,
        session: str | None,
    ) -> loopback.Response:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if not method.startswith("notifications/"):
            self._ids += 1
            message["id"] = self._ids
        if params is not None:
            message["params"] = params
        headers = [
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ]
        if method != "initialize":
            headers.append(("MCP-Protocol-Version", self._version))
        if session is not None:
            headers.append(("Mcp-Session-Id", session))
        for name in _FORWARDED_HEADERS:
            value = request.headers.get(name)
            if value is not None:
                headers.append((name, value))
        assert request.ctx is not None
        return await loopback.fetch(
            request.ctx,
            "POST",
            self.path,
            call_host(self.hosts, request.host),
            headers,
            jsontext.dumps(message),
            request.peer or "127.0.0.1",
            message.get("id"),
        )

    def _result(self, status: int, headers: list[tuple[str, str]], body: bytes) -> dict[str, Any]:
        if status >= 400 and not body:
            raise RpcError(jsonrpc.INTERNAL_ERROR, f"the member answered HTTP {status}")
        content_type = (_header(headers, "content-type") or "").lower()
        messages: list[Any] = []
        if content_type.startswith("text/event-stream"):
            parser = sse.SseParser()
            for event in parser.feed(body) + parser.feed(b"\n\n"):
                if event.data:
                    try:
                        messages.append(jsontext.loads(event.data))
                    except ValueError:
                        continue
        else:
            try:
                messages.append(jsontext.loads(body))
            except ValueError:
                raise RpcError(
                    jsonrpc.INTERNAL_ERROR, f"the member answered HTTP {status}, not JSON"
                ) from None
        for found in messages:
            if isinstance(found, dict) and ("result" in found or "error" in found):
                if "error" in found:
                    error = found["error"] if isinstance(found["error"], dict) else {}
                    raise RpcError(
                        int(error.get("code", jsonrpc.INTERNAL_ERROR)),
                        str(error.get("message", "the member failed")),
                    )
                result = found["result"]
                return result if isinstance(result, dict) else {}
        raise RpcError(
            jsonrpc.INTERNAL_ERROR, f"the member answered HTTP {status} without a result"
        )


def _routing_problem(request: LocalRequest, envelope: jsonrpc.Envelope) -> str | None:
    """Why a 2026-07-28 request's `Mcp-Method` / `Mcp-Name` headers do not say what its
    body says, or None: as the proxy's envelope check (proxy.routing_headers)."""
    repeated = request.repeated
    if repeated is not None:
        for header in ("Mcp-Method", "Mcp-Name"):
            if header.lower() in repeated:
                return repeated_routing_header(header)
    method, name = request.headers.get("mcp-method"), request.headers.get("mcp-name")
    if method is None and name is None:
        return None
    return routing_mismatch(
        envelope,
        method.encode("latin-1") if method is not None else None,
        name.encode("latin-1") if name is not None else None,
    )


def _header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


class Member:
    """One member of a federation: its tools under a prefix, and where calls go."""

    def __init__(
        self,
        label: str,
        hosts: Hosts,
        prefix: str,
        tools: ToolSet | None = None,
        remote: RemoteTools | None = None,
    ) -> None:
        self.label = label
        self.hosts = hosts
        self.prefix = prefix
        self.tools = tools
        self.remote = remote
        self.names: dict[str, str] = {}  # the federation's name -> the member's name
        if tools is not None:
            for tool in tools:
                self.names[prefixed_name(prefix, tool.name)] = tool.name


class FederatedEndpoint(McpEndpoint):
    """A virtual MCP server: its members' tools, renamed with their prefixes, merged."""

    def __init__(
        self,
        name: str,
        members: list[Member],
        *,
        page_size: int,
        allowed_origins: Sequence[str] = (),
    ) -> None:
        super().__init__(
            f"virtual {name}", name, page_size=page_size, allowed_origins=allowed_origins
        )
        self.members = members
        self._merged: list[dict[str, Any]] | None = None
        self._clashes: set[str] = set()  # names found twice, already logged
        self._merged_at = 0.0

    @property
    def digest_known(self) -> bool:
        # MCP members' tools are only known once fetched; their changes are
        # noticed by clients through the list's TTL, not pushed.
        return all(m.remote is None for m in self.members)

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for member in self.members:
            if member.tools is not None:
                h.update(member.prefix.encode() + b"\0" + member.tools.digest.encode())
        return h.hexdigest()[:16]

    async def merged(self, request: LocalRequest) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        # A name two members make (one prefix on two services, a prefix that makes another
        # member's name) is listed once, the first member's, as `call` routes it: LLM APIs
        # refuse a list that repeats a name, so a repeat made the whole list unusable.
        listed: set[str] = set()
        for member in self.members:
            if member.tools is not None:
                for tool in member.tools:
                    name = prefixed_name(member.prefix, tool.name)
                    if name in listed:
                        self._clash(name, member)
                        continue
                    listed.add(name)
                    entry = dict(tool.as_dict())
                    entry["name"] = name
                    out.append(entry)
            elif member.remote is not None:
                try:
                    remote = await member.remote.tools(request)
                except (RpcError, loopback.LoopbackError) as exc:
                    log.warning("federation %s: member %s: %s", self.name, member.label, exc)
                    continue
                for found in remote:
                    original = found.get("name")
                    if not isinstance(original, str):
                        continue
                    name = prefixed_name(member.prefix, original)
                    if name in listed:
                        self._clash(name, member)
                        continue
                    listed.add(name)
                    member.names[name] = original
                    entry = dict(found)
                    entry["name"] = name
                    out.append(entry)
        out.sort(key=lambda t: t["name"])
        return out

    def _clash(self, name: str, member: Member) -> None:
        if name not in self._clashes and len(self._clashes) < 1024:  # said once, bounded
            self._clashes.add(name)
            log.warning(
                "federation %s: member %s also has a tool %r; the first member's is offered",
                self.name,
                member.label,
                name,
            )

    async def list_page(self, request: LocalRequest, cursor: str | None) -> dict[str, Any]:
        tools = await self.merged(request)
        gate = gate_of(request)
        if gate is not None:
            tools = [t for t in tools if gate.allows(request, t["name"], t.get("annotations"))]
        start = 0
        if cursor is not None:
            if not cursor.startswith("f:"):
                raise InvalidCursor("invalid cursor")
            after = cursor[2:]
            start = next((i for i, t in enumerate(tools) if t["name"] > after), len(tools))
        page = tools[start : start + self.page_size]
        result: dict[str, Any] = {"tools": page}
        if start + self.page_size < len(tools) and page:
            result["nextCursor"] = "f:" + page[-1]["name"]
        return result

    async def annotations(self, request: LocalRequest, name: str) -> tuple[bool, object]:
        for tool in await self.merged(request):
            if tool["name"] == name:
                return True, tool.get("annotations")
        return False, None

    async def call(
        self, request: LocalRequest, name: str, arguments: dict[str, Any] | None
    ) -> dict[str, Any]:
        for member in self.members:
            original = member.names.get(name)
            if original is None and member.remote is not None and name.startswith(member.prefix):
                await self.merged(request)  # names seen before the list was read
                original = member.names.get(name)
            if original is None:
                continue
            if member.tools is not None:
                tool = member.tools.get(original)
                if tool is not None:
                    return await call_tool(request, member.hosts, tool, arguments)
            elif member.remote is not None:
                params: dict[str, Any] = {"name": original}
                if arguments is not None:
                    params["arguments"] = arguments
                try:
                    return await member.remote.request(request, "tools/call", params)
                except loopback.LoopbackError as exc:  # (an endless stream, cut): said
                    raise RpcError(jsonrpc.INTERNAL_ERROR, f"the member's answer: {exc}") from None
        raise RpcError(jsonrpc.INVALID_PARAMS, f"unknown tool {name!r}")
