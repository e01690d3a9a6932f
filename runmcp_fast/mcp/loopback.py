"""Requests the gateway makes of itself: a tool call sent through the same data plane.

A tool call becomes an HTTP request fed to a `ClientProtocol` of the
gateway's own server context over an in-memory transport: the request is
routed, checked against the contract, limited, and sent over the upstream
pool exactly as a client's would be, with no socket in between. The
response is read back with httptools and returned whole.

Returned whole, so it must end. The data plane lifts a route's deadlines for an
event stream (a client reads it as it comes, as long as it lasts), but a stream
that never ends would hold the call forever: here an event stream gets the
route's total timeout (from the request), or else its read timeout (from the
response head), and is cut with a LoopbackError past it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httptools

from runmcp_fast import jsontext
from runmcp_fast._dataplane import ClientProtocol, ServerContext
from runmcp_fast.mcp.sse import SseParser

MAX_RESPONSE = 16 * 1024 * 1024  # a tool result larger than this is cut off with an error
STREAM_TIMEOUT = 60.0  # an event stream's time when its route is not known (pool.read_timeout)

Response = tuple[int, list[tuple[str, str]], bytes]


class LoopbackError(Exception):
    """The gateway could not answer its own request (closed, or an oversized response)."""


class _Transport(asyncio.Transport):
    """What the data plane writes to: parsed as an HTTP response as it comes."""

    def __init__(
        self, future: asyncio.Future[Response], peer: str, response_id: object = None
    ) -> None:
        super().__init__()
        self._future = future
        self._peer = peer
        # The JSON-RPC id whose response ends an event stream (see fetch), and the
        # stream's events so far.
        self._response_id = response_id
        self._events: SseParser | None = None
        self.lingering = False  # answered before the stream ended (see on_body)
        self._parser = httptools.HttpResponseParser(self)
        self._headers: list[tuple[str, str]] = []
        self._body: list[bytes] = []
        self._size = 0
        self._closing = False
        self._started = asyncio.get_running_loop().time()
        self._timer: asyncio.TimerHandle | None = None  # an event stream's deadline
        self.protocol: ClientProtocol | None = None

    # -- asyncio.Transport, as much as the data plane uses ------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._future.done():
            return
        try:
            self._parser.feed_data(bytes(data))
        except httptools.HttpParserError as exc:
            self._fail(LoopbackError(f"the gateway's answer did not parse: {exc}"))

    def close(self) -> None:
        self._finish_connection()

    def abort(self) -> None:
        self._finish_connection()

    def is_closing(self) -> bool:
        return self._closing

    def pause_reading(self) -> None:
        pass  # the whole request is fed at once

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return (self._peer, 0)
        return default

    # -- httptools callbacks -----------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        content_type = next((v for k, v in self._headers if k.lower() == "content-type"), "")
        if "text/event-stream" not in content_type.lower() or self._future.done():
            return
        if self._response_id is not None:
            self._events = SseParser()
        # Called from the data plane's write of the head: its request is the active one.
        target = self.protocol.active_target if self.protocol is not None else None
        loop = asyncio.get_running_loop()
        if target is not None and target.total_timeout > 0:
            limit, which = target.total_timeout, "total timeout"
            delay = max(0.0, self._started + limit - loop.time())
        else:
            limit = target.read_timeout if target is not None else STREAM_TIMEOUT
            which, delay = "read timeout", limit
        error = LoopbackError(
            f"the response is an event stream that did not end within {limit:g} s"
            f" (the route's {which})"
        )
        self._timer = loop.call_later(delay, self._fail, error)

    def on_body(self, body: bytes) -> None:
        if self._future.done():
            return
        self._size += len(body)
        if self._size > MAX_RESPONSE:
            # Failed here, not raised: httptools wraps a callback's exception in its own
            # ("`on_body` callback error"), which `write` took for a parse error.
            self._body.clear()
            self._fail(LoopbackError(f"the response is larger than {MAX_RESPONSE} bytes"))
            return
        self._body.append(body)
        if self._events is not None and self._answers(body):
            # The response came: the call need not wait for the stream to end (an MCP
            # server SHOULD end it then; one that does not is not waited on). The
            # exchange lingers until it does, or until the stream's deadline, so that
            # a stream ended a moment later leaves its upstream connection pooled.
            status = self._parser.get_status_code()
            self._future.set_result((status, self._headers, b"".join(self._body)))
            self.lingering = True

    def _answers(self, body: bytes) -> bool:
        """Whether `body`, the stream's next bytes, completes the event that carries the
        JSON-RPC response to `response_id`."""
        assert self._events is not None
        for event in self._events.feed(body):
            if not event.data:
                continue
            try:
                message = jsontext.loads(event.data)
            except ValueError:
                continue
            if (
                isinstance(message, dict)
                and message.get("id") == self._response_id
                and ("result" in message or "error" in message)
            ):
                return True
        return False

    def on_message_complete(self) -> None:
        if not self._future.done():
            status = self._parser.get_status_code()
            self._future.set_result((status, self._headers, b"".join(self._body)))
        # One exchange per connection: let it go (it is not counted as idle).
        asyncio.get_running_loop().call_soon(self._finish_connection)

    # -- internals ---------------------------------------------------------------

    def _fail(self, exc: Exception) -> None:
        if not self._future.done():
            self._future.set_exception(exc)
        # Not from inside the data plane's own write: once it has returned.
        asyncio.get_running_loop().call_soon(self._finish_connection)

    def _finish_connection(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._future.done():
            self._future.set_exception(LoopbackError("the gateway closed the connection"))
        protocol, self.protocol = self.protocol, None
        if protocol is not None:
            protocol.connection_lost(None)


async def fetch(
    ctx: ServerContext,
    method: str,
    target: str,
    host: str,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes | None = None,
    peer: str = "127.0.0.1",
    response_id: object = None,
) -> Response:
    """Send one request through the data plane of `ctx`; (status, headers, body).

    `response_id`: the id of the JSON-RPC request in `body`. An event stream then
    ends the call with the event that carries its response (the body up to it),
    without waiting for the stream to end."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Response] = loop.create_future()
    transport = _Transport(future, peer, response_id)
    protocol = ClientProtocol(ctx, b"http")
    transport.protocol = protocol
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    protocol.connection_made(transport)
    if protocol.closed:
        raise LoopbackError("the gateway is at its connection limit")
    protocol.data_received(head + body if body else head)
    try:
        return await future
    finally:
        if not transport.lingering:
            transport._finish_connection()
