"""The client-side HTTP/1.1 protocol: parse, route, proxy, stream back.

One `ClientProtocol` per connection, driven by callbacks only (no task or
future per request). Requests are answered strictly in order; a pipelined
request waits in `queue` until the one before it is done. Writes made while
handling one read are corked into `pending` and written once.

Flow control is linked across the two sockets: a full upstream write buffer
pauses reading from the client and a full client write buffer pauses reading
from the upstream, so memory per connection stays bounded.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import deque
from typing import TYPE_CHECKING

import orjson
from httptools import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserUpgrade,
    HttpRequestParser,
    parse_url,
)

from runmcp_fast.router import Router
from runmcp_fast.server.requests import IDEMPOTENT, Request, host_is_valid, path_problem
from runmcp_fast.server.responses import CONTINUE, problem, status_line

if TYPE_CHECKING:
    from runmcp_fast.config import LimitsConfig
    from runmcp_fast.server.context import ServerContext
    from runmcp_fast.upstream.connection import UpstreamConnection


class _Reject(Exception):
    """Raised in a parser callback to stop parsing and answer `status`."""

    def __init__(self, status: int, detail: str, headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers


# Why reading from the client is paused (a bit each; reading resumes at zero).
_P_UPSTREAM = 1  # the upstream's write buffer is full
_P_BUFFER = 2  # too much body or too many pipelined requests are waiting
_P_DONE = 4  # nothing more will be read (rejected, upgrading, closing)

# What the connection's deadline means when it passes.
_D_NONE = 0
_D_IDLE = 1  # keep-alive idle: close quietly
_D_HEAD = 2  # request head too slow: 408
_D_BODY = 3  # request body too slow: 408 (or abort once the response began)

# How the response body is framed toward the client.
_OUT_RAW = 0  # Content-Length or no body: bytes as they come
_OUT_CHUNKED = 1  # re-chunked (upstream chunked or EOF-delimited, HTTP/1.1 client)

_BUFFER_LIMIT = 256 * 1024  # body or pipelined bytes held while waiting; then pause
_REPLAY_LIMIT = 64 * 1024  # body kept for a retry on a fresh connection
_HOP_BY_HOP = frozenset(
    (
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"proxy-authenticate",
        b"te",
        b"trailer",
        b"upgrade",
        b"x-forwarded-proto",
        b"x-forwarded-host",
    )
)
_FINAL_CHUNK = b"0\r\n\r\n"
_CONNECTION_CLOSE = b"Connection: close\r\n"
_CONNECTION_KEEP_ALIVE = b"Connection: keep-alive\r\n"
_TE_CHUNKED = b"Transfer-Encoding: chunked\r\n"


class ClientProtocol(asyncio.Protocol):
    __slots__ = (  # noqa: RUF023 - grouped by lifetime, not sorted
        # Global state (shared by every connection of the gateway)
        "clock",
        "ctx",
        "limits",
        # Per-connection state
        "closed",
        "closing",
        "close_when_flushed",
        "deadline",
        "deadline_kind",
        "head_bytes",
        "head_continued",
        "in_feed",
        "out_mode",
        "parser",
        "paused",
        "peer",
        "pending",
        "queue",
        "queued_bytes",
        "scheme",
        "transport",
        "tunnel",
        "up_pending",
        "upstream",
        "waiting",
        "write_paused",
        # Per-request state
        "active",
        "current",
        "response_done",
        "response_started",
    )

    def __init__(self, ctx: ServerContext, scheme: bytes) -> None:
        self.ctx = ctx
        self.clock = ctx.clock
        self.limits: LimitsConfig = ctx.limits
        self.scheme = b"X-Forwarded-Proto: " + scheme + b"\r\n"
        self.transport: asyncio.Transport | None = None
        self.parser = HttpRequestParser(self)
        self.peer = b""
        self.closed = False
        self.closing = False
        self.close_when_flushed = False
        self.deadline = 0.0
        self.deadline_kind = _D_NONE
        self.head_bytes = 0
        self.head_continued = False
        self.in_feed = False
        self.out_mode = _OUT_RAW
        self.paused = 0
        self.write_paused = False
        self.pending: list[bytes] = []
        self.up_pending: list[bytes] = []
        self.queue: deque[Request] = deque()
        self.queued_bytes = 0
        self.tunnel = False
        self.upstream: UpstreamConnection | None = None
        self.waiting = False
        self.current: Request | None = None
        self.active: Request | None = None
        self.response_started = False
        self.response_done = False

    # -- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        ctx = self.ctx
        if len(ctx.connections) >= self.limits.max_connections or ctx.closing:
            transport.write(  # type: ignore[attr-defined]
                problem(503, "the gateway is at its connection limit", keep_alive=False)
            )
            transport.close()
            self.closed = True
            return
        ctx.connections.add(self)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self.peer = str(peer[0]).encode("ascii")
        self._set_deadline(_D_IDLE, self.limits.header_timeout)

    def data_received(self, data: bytes) -> None:
        if self.tunnel:
            upstream = self.upstream
            if upstream is not None:
                upstream.write(data)
            return
        if self.paused & _P_DONE:
            return  # rejected or closing: the rest of the stream is not read
        if self.deadline_kind == _D_HEAD:
            # A header value dripping in is held by httptools until complete;
            # count what arrives between message begin and head end to bound it.
            if self.head_continued:
                self.head_bytes += len(data)
                if self.head_bytes > self.limits.max_header_bytes + self.limits.max_url_bytes:
                    self._reject_current(431, "the request head is too large")
                    self._flush()
                    return
            self.head_continued = True
        self.in_feed = True
        try:
            self.parser.feed_data(data)
        except HttpParserCallbackError as exc:
            reject = exc.__context__
            if isinstance(reject, _Reject):
                self._reject_current(reject.status, reject.detail, reject.headers)
            else:
                raise
        except HttpParserUpgrade as exc:
            self._upgrade_requested(data[exc.args[0] :])
        except HttpParserError as exc:
            self._reject_current(400, f"malformed request: {_parser_reason(exc)}")
        finally:
            self.in_feed = False
        self._flush()

    def eof_received(self) -> bool | None:
        # The client finished sending; answers still in flight may be written.
        # Keep the socket half-open only while something is being answered.
        if self.active is None and self.current is None and not self.queue:
            return None
        self.closing = True
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.ctx.connections.discard(self)
        upstream = self.upstream
        self.upstream = None
        if upstream is not None:
            if self.tunnel:
                upstream.client = None
                upstream.close()
            else:
                upstream.abandon()
        self.waiting = False
        self.queue.clear()

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.upstream is not None:
            self.upstream.resume_reading()

    @property
    def gone(self) -> bool:
        """For the pool: does this connection still wait for an upstream connection?"""
        return self.closed or not self.waiting

    # -- parser callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.current = req = Request()
        self.head_bytes = 0
        self.head_continued = False
        self.deadline = self.clock.now + self.limits.header_timeout
        self.deadline_kind = _D_HEAD
        if self.ctx.access_log:
            req.started = time.time()

    def on_url(self, url: bytes) -> None:
        req = self.current
        assert req is not None
        req.url += url
        if len(req.url) > self.limits.max_url_bytes:
            raise _Reject(
                414, f"the request target is longer than {self.limits.max_url_bytes} bytes"
            )

    def on_header(self, name: bytes, value: bytes) -> None:
        req = self.current
        assert req is not None
        req.header_count += 1
        req.header_bytes += len(name) + len(value) + 4
        limits = self.limits
        if req.header_count > limits.max_headers:
            raise _Reject(431, f"more than {limits.max_headers} header fields")
        if req.header_bytes > limits.max_header_bytes:
            raise _Reject(431, f"the header fields exceed {limits.max_header_bytes} bytes")
        if req.has_body:
            return  # trailers after a chunked body: counted, not forwarded
        lname = name.lower()
        if lname == b"host":
            if req.host is not None:
                raise _Reject(400, "more than one Host header field")
            req.host = value
        elif lname == b"content-length":
            if req.content_length >= 0:
                raise _Reject(400, "more than one Content-Length header field")
            if not value.isdigit() or len(value) > 18:
                raise _Reject(400, "Content-Length is not a decimal number")
            req.content_length = int(value)
        elif lname == b"transfer-encoding":
            # Only exactly `chunked`: anything else (a list, another coding, a
            # repeated field) could be read two ways by two parsers.
            if req.chunked or value.strip().lower() != b"chunked":
                raise _Reject(400, "the only Transfer-Encoding accepted is a single 'chunked'")
            req.chunked = True
        elif lname in _HOP_BY_HOP:
            if lname == b"connection":
                tokens = req.connection_tokens
                if tokens is None:
                    req.connection_tokens = tokens = []
                tokens.extend(t.strip().lower() for t in value.split(b","))
            elif lname == b"upgrade":
                req.upgrade = value
        elif lname == b"expect":
            if value.lower() != b"100-continue":
                raise _Reject(417, "the only expectation supported is 100-continue")
            req.expect_continue = True
        elif lname == b"x-forwarded-for":
            req.forwarded_for = (
                value if req.forwarded_for is None else req.forwarded_for + b", " + value
            )
        elif lname == b"via":
            req.via = value if req.via is None else req.via + b", " + value
        elif lname.startswith(b"proxy-"):
            pass
        else:
            req.lines += (name, b": ", value, b"\r\n")

    def on_headers_complete(self) -> None:
        req = self.current
        assert req is not None
        parser = self.parser
        req.method = method = parser.get_method()
        req.http11 = parser.get_http_version() == "1.1"
        req.keep_alive = parser.should_keep_alive()
        req.is_head = method == b"HEAD"
        self.deadline_kind = _D_NONE
        self.deadline = 0.0
        if req.content_length >= 0 and req.chunked:
            raise _Reject(400, "both Content-Length and Transfer-Encoding")
        if req.chunked and not req.http11:
            raise _Reject(400, "Transfer-Encoding in an HTTP/1.0 request")
        req.has_body = req.chunked or req.content_length > 0
        req.limit = self.limits.max_body_bytes
        if method == b"CONNECT":
            raise _Reject(501, "CONNECT is not supported: this is a reverse proxy")
        if req.upgrade is not None and not parser.should_upgrade():
            req.upgrade = None  # Upgrade without `Connection: upgrade` is not a request to switch
        self._route(req)
        if req.content_length > req.limit:
            raise _Reject(413, f"the body is larger than {req.limit} bytes")
        if req.has_body:
            self._set_deadline(_D_BODY, self.limits.body_timeout)
        if req.local is None:
            req.head = self._upstream_head(req)
        else:
            req.discard = True
        self._enqueue(req)

    def on_body(self, body: bytes) -> None:
        req = self.current
        assert req is not None
        req.body_bytes += len(body)
        if req.body_bytes > req.limit:
            raise _Reject(413, f"the body is larger than {req.limit} bytes")
        self.deadline = self.clock.now + self.limits.body_timeout
        if req.discard:
            return
        if req.chunked:
            body = b"%x\r\n%b\r\n" % (len(body), body)
        self._body_piece(req, body)

    def on_message_complete(self) -> None:
        req = self.current
        assert req is not None
        self.current = None
        req.complete = True
        if self.deadline_kind == _D_BODY:
            self._clear_deadline()
        if req.chunked and not req.discard:
            self._body_piece(req, _FINAL_CHUNK)
        if req is self.active and self.response_done:
            self._request_done()

    # -- routing and the upstream request head ---------------------------------------

    def _route(self, req: Request) -> None:
        url = req.url
        host = req.host
        if url[:1] != b"/":
            url, host = self._non_origin_target(req, url, host)
            if req.local is not None:
                return
        if host is None:
            if req.http11:
                req.local = problem(
                    400, "an HTTP/1.1 request needs a Host header", keep_alive=False
                )
                req.close_after = True
                return
        elif not host_is_valid(host):
            req.local = problem(400, "the Host header is not a valid host", keep_alive=False)
            req.close_after = True
            return
        snapshot = self.ctx.snapshot
        found = snapshot.router.match(host, req.method, url)
        if found is None:
            self._route_miss(req, snapshot.router, host, url)
            return
        req.target = target = found.target
        req.limit = target.service.max_body
        req.url = url

    def _non_origin_target(
        self, req: Request, url: bytes, host: bytes | None
    ) -> tuple[bytes, bytes | None]:
        if url == b"*" and req.method == b"OPTIONS":
            req.local = b"HTTP/1.1 200 OK\r\nAllow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\nContent-Length: 0\r\n\r\n"
            return url, host
        try:
            parts = parse_url(url)
        except HttpParserError:
            parts = None
        if parts is None or parts.schema not in (b"http", b"https") or not parts.host:
            req.local = problem(400, "the request target is neither a path nor an absolute URL")
            return url, host
        # Absolute form: its authority replaces Host (RFC 9112 §3.2.2).
        authority = parts.host if parts.port is None else b"%s:%d" % (parts.host, parts.port)
        path = parts.path or b"/"
        if parts.query:
            path += b"?" + parts.query
        return path, authority

    def _route_miss(self, req: Request, router: Router, host: bytes | None, url: bytes) -> None:
        if req.has_body and (req.expect_continue or req.content_length > _BUFFER_LIMIT):
            # The client waits for 100 or sends a lot: not worth reading; close.
            req.keep_alive = False
        reason = path_problem(url)
        if reason is not None:
            req.local = problem(400, reason, keep_alive=req.keep_alive)
            return
        allowed = router.allowed(host, url)
        if allowed:
            methods = ", ".join(allowed)
            req.local = problem(
                405,
                f"{req.method.decode('latin-1')} is not allowed here; allowed: {methods}",
                keep_alive=req.keep_alive,
                headers=(("Allow", methods),),
                head_only=req.is_head,
            )
        else:
            req.local = problem(
                404,
                "no service routes this host and path",
                keep_alive=req.keep_alive,
                head_only=req.is_head,
            )

    def _upstream_head(self, req: Request) -> bytes:
        target = req.target
        assert target is not None
        service = target.service
        host = req.host or b""
        tokens = req.connection_tokens
        lines = req.lines
        if tokens:
            lines = _drop_named(lines, tokens)
        forwarded_for = self.peer
        if req.forwarded_for is not None:
            forwarded_for = (
                req.forwarded_for + b", " + forwarded_for if forwarded_for else req.forwarded_for
            )
        parts = [
            req.method,
            b" ",
            service.upstream_target(req.url),
            b" HTTP/1.1\r\nHost: ",
            service.host_header or host or service.upstream.authority.encode("ascii"),
            b"\r\n",
        ]
        parts += lines
        if forwarded_for:
            parts += (b"X-Forwarded-For: ", forwarded_for, b"\r\n")
        parts += (
            self.scheme,
            b"X-Forwarded-Host: ",
            host,
            b"\r\nVia: ",
            req.via + b", 1.1 runmcp-fast" if req.via else b"1.1 runmcp-fast",
            b"\r\n",
        )
        if req.chunked:
            parts.append(_TE_CHUNKED)
        elif req.content_length >= 0:
            parts.append(b"Content-Length: %d\r\n" % req.content_length)
        if req.upgrade is not None:
            parts += (b"Upgrade: ", req.upgrade, b"\r\nConnection: upgrade\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    # -- request order ------------------------------------------------------------------

    def _enqueue(self, req: Request) -> None:
        if self.active is None:
            self._start(req)
        else:
            self.queue.append(req)
            self.queued_bytes += len(req.url) + req.header_bytes
            if self.queued_bytes > _BUFFER_LIMIT:
                self._pause(_P_BUFFER)

    def _start(self, req: Request) -> None:
        self.active = req
        self.response_started = False
        self.response_done = False
        self.out_mode = _OUT_RAW
        if req.local is not None:
            self.response_started = True
            self.response_done = True
            self.pending.append(req.local)
            if req.close_after or not req.keep_alive:
                self._close_after_flush()
            elif req.complete:
                self._request_done()
            return
        if req.expect_continue and not req.complete:
            self.pending.append(CONTINUE)
        target = req.target
        assert target is not None
        service = target.service
        self.waiting = True
        conn = service.pool.acquire(self, service.connect_timeout)
        if conn is not None:
            self.upstream_attached(conn)

    def _request_done(self) -> None:
        """The active request is answered and fully read: log it, go on to the next."""
        req = self.active
        assert req is not None
        self.active = None
        if self.ctx.access_log:
            self._log(req)
        if not req.keep_alive or self.closing:
            self._close_after_flush()
            return
        queue = self.queue
        if queue:
            following = queue.popleft()
            self.queued_bytes -= len(following.url) + following.header_bytes
            if self.paused & _P_BUFFER and self.queued_bytes <= _BUFFER_LIMIT:
                self._resume(_P_BUFFER)
            self._start(following)
        elif self.current is None:
            self._set_deadline(_D_IDLE, self.limits.keepalive_timeout)

    # -- the request body ----------------------------------------------------------------

    def _body_piece(self, req: Request, piece: bytes) -> None:
        upstream = self.upstream
        if req is self.active and upstream is not None:
            self._send_upstream(req, piece)
            return
        if req is self.active and self.response_done:
            return  # answered already (the upstream did not wait for the body)
        req.body.append(piece)
        req.buffered += len(piece)
        if req.buffered > _BUFFER_LIMIT:
            self._pause(_P_BUFFER)

    def _send_upstream(self, req: Request, piece: bytes) -> None:
        req.body_sent += len(piece)
        replay = req.replay
        if replay is not None:
            if req.body_sent <= _REPLAY_LIMIT:
                replay.append(piece)
            else:
                req.replay = None
        if self.in_feed:
            self.up_pending.append(piece)
        else:
            assert self.upstream is not None
            self.upstream.write(piece)

    # -- upstream events (called by the pool and the upstream connection) ---------------

    def upstream_attached(self, conn: UpstreamConnection) -> None:
        req = self.active
        if not self.waiting or self.closed or req is None or req.target is None:
            conn.pool.release(conn)
            return
        self.waiting = False
        service = req.target.service
        conn.bind(self, req.is_head, service.read_timeout, self.clock.now)
        self.upstream = conn
        if self.write_paused:
            conn.pause_reading()
        parts = [req.head]
        if req.replay:
            parts += req.replay  # a retry: what the failed connection was sent
        body = req.body
        if body:
            req.body = []
            req.buffered = 0
            for piece in body:
                req.body_sent += len(piece)
                if req.replay is not None:
                    if req.body_sent <= _REPLAY_LIMIT:
                        req.replay.append(piece)
                    else:
                        req.replay = None
            parts += body
            if self.paused & _P_BUFFER and self.queued_bytes <= _BUFFER_LIMIT:
                self._resume(_P_BUFFER)
        if self.in_feed:
            self.up_pending += parts
        else:
            conn.write(b"".join(parts))

    def upstream_unavailable(self, status: int, detail: str) -> None:
        if not self.waiting or self.closed:
            return
        self.waiting = False
        self._answer_error(status, detail)
        self._flush()

    def upstream_write_paused(self, paused: bool) -> None:
        if paused:
            self._pause(_P_UPSTREAM)
        else:
            self._resume(_P_UPSTREAM)

    def response_head(
        self,
        status: int,
        reason: bytes,
        lines: list[bytes],
        content_length: int,
        chunked: bool,
        no_body: bool,
    ) -> None:
        req = self.active
        assert req is not None
        self.response_started = True
        req.status = status
        # Keep the client connection only when the request was read to its end.
        keep_alive = req.keep_alive and req.complete and not self.closing
        parts = [status_line(status, reason)]
        parts += lines
        if status == 101:
            keep_alive = True  # the connection becomes a tunnel; no Connection: close
        elif no_body:
            if content_length >= 0:
                parts.append(b"Content-Length: %d\r\n" % content_length)
        elif content_length >= 0:
            parts.append(b"Content-Length: %d\r\n" % content_length)
        elif req.http11:
            parts.append(_TE_CHUNKED)
            self.out_mode = _OUT_CHUNKED
        else:
            keep_alive = False  # an HTTP/1.0 client reads to the end of the connection
        if status != 101:
            if not keep_alive:
                parts.append(_CONNECTION_CLOSE)
            elif not req.http11:
                parts.append(_CONNECTION_KEEP_ALIVE)
        parts.append(b"\r\n")
        req.keep_alive = keep_alive
        self.pending.append(b"".join(parts))
        if status == 101:
            self._become_tunnel()

    def response_body(self, data: bytes) -> None:
        if self.out_mode == _OUT_CHUNKED:
            self.pending += (b"%x\r\n" % len(data), data, b"\r\n")
        else:
            self.pending.append(data)

    def response_complete(self) -> None:
        upstream = self.upstream
        self.upstream = None
        if upstream is not None and upstream.reading_paused:
            upstream.resume_reading()
        self._resume(_P_UPSTREAM)
        if self.out_mode == _OUT_CHUNKED:
            self.pending.append(_FINAL_CHUNK)
        self.response_done = True
        req = self.active
        if req is None:
            return
        if req.complete:
            self._request_done()
        else:
            # The upstream answered before the body ended: the head said close.
            req.discard = True
            self._close_after_flush()

    def response_failed(self, status: int, detail: str, retryable: bool) -> None:
        self.upstream = None
        self._resume(_P_UPSTREAM)
        req = self.active
        if req is None or self.closed:
            return
        if self.response_started:
            # A truncated body must never look complete: cut the connection.
            self._abort()
            return
        if retryable and not req.retried and _replayable(req):
            req.retried = True
            target = req.target
            assert target is not None
            self.waiting = True
            target.service.pool.open_fresh(self, target.service.connect_timeout)
            return
        self._answer_error(status, detail)

    def response_flush(self) -> None:
        self._flush()

    def tunnel_data(self, data: bytes) -> None:
        self.pending.append(data)  # after the 101 head if it is still pending
        self._flush()

    def tunnel_closed(self) -> None:
        self.upstream = None
        self._close_after_flush()
        self._flush()

    # -- upgrades --------------------------------------------------------------------

    def _upgrade_requested(self, rest: bytes) -> None:
        """httptools stopped at the end of an Upgrade request's head."""
        req = self.active
        self._pause(_P_DONE)  # nothing is parsed after an upgrade request
        if req is None or req.upgrade is None or req.local is not None:
            if req is not None and req.local is not None:
                return  # answered locally, then closed
            self._reject_current(400, "an Upgrade request must come alone")
            return
        req.keep_alive = False  # unless it becomes a tunnel, close after the answer
        if rest:
            self._body_piece(req, rest)  # early tunnel bytes, right after the head
        req.complete = True
        self.current = None

    def _become_tunnel(self) -> None:
        req = self.active
        upstream = self.upstream
        if upstream is None or req is None:
            return
        self.tunnel = True
        self._clear_deadline()
        # Bytes the client sent after its head are already queued upstream.
        self.paused = 0
        if self.transport is not None:
            self.transport.resume_reading()

    # -- errors -----------------------------------------------------------------------

    def _answer_error(self, status: int, detail: str) -> None:
        req = self.active
        if req is None:
            return
        keep_alive = req.keep_alive and req.complete and not self.closing
        req.status = status
        self.pending.append(problem(status, detail, keep_alive=keep_alive, head_only=req.is_head))
        self.response_started = True
        self.response_done = True
        req.keep_alive = keep_alive
        if keep_alive:
            self._request_done()
        else:
            req.discard = True
            self._close_after_flush()

    def _reject_current(
        self, status: int, detail: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        """A request that can not be read on: answer it in turn, then close."""
        self._pause(_P_DONE)
        self._clear_deadline()
        req = self.current
        self.current = None
        if req is not None and req is self.active:
            upstream = self.upstream
            self.upstream = None
            self.waiting = False
            if upstream is not None:
                upstream.abandon()
            if self.response_started:
                self._abort()
                return
            req.keep_alive = False
            req.status = status
            self.pending.append(problem(status, detail, keep_alive=False, headers=headers))
            self.response_started = self.response_done = True
            self._close_after_flush()
            return
        reply = req or Request()
        reply.local = problem(status, detail, keep_alive=False, headers=headers)
        reply.close_after = True
        reply.complete = True
        reply.keep_alive = False
        reply.status = status
        reply.target = None
        if reply not in self.queue:
            self._enqueue(reply)  # else it is answered where it waits, in turn

    def _abort(self) -> None:
        self.closed = True
        self.pending.clear()
        if self.transport is not None:
            self.transport.abort()

    # -- timeouts ------------------------------------------------------------------------

    def _set_deadline(self, kind: int, seconds: float) -> None:
        self.deadline_kind = kind
        self.deadline = self.clock.now + seconds

    def _clear_deadline(self) -> None:
        self.deadline_kind = _D_NONE
        self.deadline = 0.0

    def check_deadlines(self, now: float) -> None:
        """Called by the clock sweep for every connection."""
        deadline = self.deadline
        if deadline and deadline <= now and not self.paused & (_P_UPSTREAM | _P_BUFFER):
            kind = self.deadline_kind
            self._clear_deadline()
            if kind == _D_IDLE:
                self._close()
            elif kind == _D_HEAD:
                self._reject_current(408, "the request head did not arrive in time")
                self._flush()
            elif kind == _D_BODY:
                self._reject_current(408, "the request body stopped arriving")
                self._flush()
        upstream = self.upstream
        if upstream is not None and upstream.deadline and upstream.deadline <= now:
            upstream.timed_out()

    def shutdown(self) -> None:
        """Graceful stop: idle connections close now, busy ones after their response."""
        self.closing = True
        if self.active is None and self.current is None and not self.queue:
            self._close()

    # -- writing ----------------------------------------------------------------------

    def _flush(self) -> None:
        up_pending = self.up_pending
        if up_pending:
            upstream = self.upstream
            if upstream is not None:
                upstream.write(up_pending[0] if len(up_pending) == 1 else b"".join(up_pending))
            up_pending.clear()
        pending = self.pending
        transport = self.transport
        if pending:
            if transport is not None and not self.closed:
                transport.write(pending[0] if len(pending) == 1 else b"".join(pending))
            pending.clear()
        if self.close_when_flushed:
            self._close()

    def _close_after_flush(self) -> None:
        self.close_when_flushed = True
        self._pause(_P_DONE)
        if not self.in_feed and not self.pending:
            self._close()

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.ctx.connections.discard(self)
        if self.transport is not None:
            self.transport.close()

    def _pause(self, reason: int) -> None:
        if not self.paused and self.transport is not None and not self.closed:
            self.transport.pause_reading()
            if self.deadline_kind == _D_BODY:
                self.deadline = 0.0  # waiting on us is not the client being slow
        self.paused |= reason

    def _resume(self, reason: int) -> None:
        if not self.paused & reason:
            return
        self.paused &= ~reason
        if not self.paused and self.transport is not None and not self.closed:
            self.transport.resume_reading()
            if self.deadline_kind == _D_BODY:
                self.deadline = self.clock.now + self.limits.body_timeout

    def _log(self, req: Request) -> None:
        target = req.target
        record = {
            "time": round(req.started, 3),
            "client": self.peer.decode("ascii", "replace"),
            "method": req.method.decode("latin-1"),
            "path": req.url.decode("latin-1"),
            "status": req.status,
            "service": target.service.name if target is not None else None,
            "operation": target.name if target is not None else None,
            "duration_ms": round((time.time() - req.started) * 1000, 3),
        }
        sys.stdout.buffer.write(orjson.dumps(record) + b"\n")
        sys.stdout.flush()


def _replayable(req: Request) -> bool:
    """Safe to resend on a fresh connection: idempotent, or nothing of the body went out."""
    if req.has_body and req.body_sent == 0:
        return True
    return req.method in IDEMPOTENT and req.replay is not None


def _drop_named(lines: list[bytes], tokens: list[bytes]) -> list[bytes]:
    names = {t for t in tokens if t and t not in (b"close", b"keep-alive", b"upgrade")}
    if not names:
        return lines
    kept: list[bytes] = []
    for i in range(0, len(lines), 4):
        if lines[i].lower() not in names:
            kept += lines[i : i + 4]
    return kept


def _parser_reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__
