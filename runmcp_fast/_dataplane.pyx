# cython: language_level=3
"""The compiled data plane: client protocol, upstream connection, pool, clock.

One module so the hot calls between these classes are C calls on typed
attributes (perf on the pure-Python version: a third of the CPU went to
attribute lookups on `__slots__`). Behaviour is documented where each piece
used to live: server/ (client side), upstream/ (pools and responses).

Client side, per connection (`ClientProtocol`):
- Driven by httptools callbacks only: no task or future per request.
- Requests are answered strictly in order; a pipelined request waits in
  `queue` until the one before it is done.
- Writes made while handling one read are corked into `pending` (client) and
  `up_pending` (upstream) and written once at the end of the read.
- Flow control is linked across the two sockets: a full upstream write buffer
  pauses reading from the client and a full client write buffer pauses
  reading from the upstream, so memory per connection stays bounded.
- Deadlines are floats against `Clock.now`, checked by one periodic sweep.

Upstream side (`UpstreamConnection`, `Pool`): one keep-alive socket parsing
responses with llhttp (strict) and handing them on piece by piece; a pool per
upstream with a LIFO idle stack and FIFO waiters. Only opening a connection
awaits, on its own task.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from libc.string cimport memchr, memcmp, memcpy


cdef extern from "time.h" nogil:
    ctypedef long time_t
    cdef struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clk_id, timespec* tp)
    int CLOCK_MONOTONIC


cpdef inline double monotonic():
    """Seconds on the monotonic clock (a vDSO call, no Python object).

    Deadlines are set and checked against this one clock, so a deadline can
    fire late (by up to one sweep interval) but never early.
    """
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef extern from "strings.h" nogil:
    int strncasecmp(const char* s1, const char* s2, size_t n)

import asyncio
import ssl
import sys
import time
from collections import deque

import orjson
from httptools import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserUpgrade,
    HttpRequestParser,
    HttpResponseParser,
    parse_url,
)

from runmcp_fast.server.requests import IDEMPOTENT, host_is_valid, path_problem
from runmcp_fast.server.responses import CONTINUE, problem, response, status_line


cdef class Pool
cdef class UpstreamConnection
cdef class ClientProtocol
cdef class LocalStream


# -- the clock ----------------------------------------------------------------------


cdef class Clock:
    """One periodic sweep in place of a timer per request.

    PERF: `loop.call_later` per request costs a heap push, a handle and a
    cancel; instead every connection keeps plain deadlines (`monotonic()`
    plus a timeout), and one tick every `interval` seconds calls the sweepers
    with the time. Deadlines fire late by at most one interval, never early.
    """

    cdef public double now
    cdef public double interval
    cdef object _loop
    cdef list _sweepers
    cdef object _handle

    def __init__(self, loop, double interval):
        self._loop = loop
        self.interval = interval
        self.now = monotonic()
        self._sweepers = []
        self._handle = None

    def add_sweeper(self, sweep):
        self._sweepers.append(sweep)

    def start(self):
        if self._handle is None:
            self._handle = self._loop.call_later(self.interval, self._tick)

    def stop(self):
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self):
        self.now = now = monotonic()
        for sweep in tuple(self._sweepers):
            try:
                sweep(now)
            except Exception as exc:  # one broken sweeper must not stop every timeout
                self._loop.call_exception_handler(
                    {"message": "timeout sweep failed", "exception": exc}
                )
        self._handle = self._loop.call_later(self.interval, self._tick)


# -- what a route leads to ------------------------------------------------------------


cdef class Replicas:
    """A service's upstream replicas: round robin, skipping one that failed lately."""

    cdef readonly tuple pools
    cdef Py_ssize_t _next

    def __init__(self, tuple pools):
        if not pools:
            raise ValueError("a service needs at least one upstream")
        self.pools = pools
        self._next = 0

    cdef Pool pick(self, Pool avoid):
        """The next replica not marked down (and not `avoid`); None when none is left."""
        cdef tuple pools = self.pools
        cdef Py_ssize_t n = len(pools)
        cdef Py_ssize_t k, i
        cdef Pool pool
        cdef double now
        if n == 1:
            pool = <Pool>pools[0]
            return pool if pool is not avoid else None
        now = monotonic()
        for k in range(n):
            i = self._next
            self._next = i + 1 if i + 1 < n else 0
            pool = <Pool>pools[i]
            if pool is not avoid and pool.down_until <= now:
                return pool
        if avoid is None:
            # Every replica failed lately: try the next one anyway rather than refuse.
            i = self._next
            self._next = i + 1 if i + 1 < n else 0
            return <Pool>pools[i]
        return None


cdef class Target:
    """A route's target, flattened for the hot path: the service's pools and settings.

    `operation` is the spec's Operation (None for a prefix route). With a
    `handler`, the gateway answers the request itself (the admin API, MCP):
    `handler(LocalRequest)` returns (status, headers, body) or an awaitable of it;
    the body may be a `LocalStream`, written to as long as the client listens.
    With `mcp` (an MCP service's session router, runmcp_fast.mcp.proxy), each
    request is shown to it before it goes upstream (it may pin a replica,
    rewrite the session header and the target, or answer itself), and each
    response head after (session ids wrapped, event streams marked).
    """

    cdef public str service_name
    cdef public str name
    cdef public object operation
    cdef public object service
    cdef public Pool pool  # the first replica's
    cdef public Replicas replicas
    cdef public object handler
    cdef public object validator  # the operation's OperationValidator, or None
    cdef public object host_header  # bytes, or None to pass the client's Host on
    cdef public bytes upstream_path
    cdef public bytes strip_prefix
    cdef public long long max_body
    cdef public double read_timeout
    cdef public double connect_timeout
    cdef public object mcp  # an MCP service's session router, or None
    # Seconds between SSE comments on an idle event stream (0: none).
    cdef public double stream_keepalive

    def __init__(self, service, operation, pools, host_header, bytes upstream_path,
                 bytes strip_prefix, long long max_body, double read_timeout,
                 double connect_timeout, handler=None, validator=None, mcp=None,
                 double stream_keepalive=0.0):
        self.service = service
        self.service_name = service.name
        self.operation = operation
        self.name = operation.operation_id if operation is not None else service.name
        if isinstance(pools, Replicas):
            self.replicas = pools
        else:
            self.replicas = Replicas(tuple(pools) if isinstance(pools, (tuple, list)) else (pools,))
        self.pool = self.replicas.pools[0]
        self.handler = handler
        self.validator = validator
        self.host_header = host_header
        self.upstream_path = upstream_path
        self.strip_prefix = strip_prefix
        self.max_body = max_body
        self.read_timeout = read_timeout
        self.connect_timeout = connect_timeout
        self.mcp = mcp
        self.stream_keepalive = stream_keepalive

    def __repr__(self):
        return f"<Target {self.service_name!r} {self.name!r}>"

    cpdef bytes upstream_target(self, bytes path):
        """The request-target sent upstream for the client's `path` (query included)."""
        cdef bytes strip = self.strip_prefix
        cdef bytes rest
        if strip and path.startswith(strip):
            rest = path[len(strip):]
            if not rest or rest[:1] == b"?":
                path = b"/" + rest
            elif rest[:1] == b"/":
                path = rest
            # else /apiary does not start with the prefix /api: unchanged
        if self.upstream_path:
            return self.upstream_path + path
        return path


cdef class ServerContext:
    """What every client connection of one gateway shares."""

    cdef public Clock clock
    cdef public object limits
    # Swapped whole by a reload (`swap`); a request reads it once, when it is routed.
    cdef public object snapshot
    # The snapshot's `tenancy.header`, lower-case bytes, or None.
    cdef public object tenant_header
    cdef public bint access_log
    cdef list _log_lines
    cdef public set connections
    cdef public bint closing
    cdef public dict state  # what local handlers keep per server (MCP event streams)
    # The limits, unpacked once.
    cdef readonly long long max_url_bytes
    cdef readonly long long max_header_bytes
    cdef readonly long long max_headers
    cdef readonly long long max_body_bytes
    cdef readonly long long max_connections
    cdef readonly double header_timeout
    cdef readonly double body_timeout
    cdef readonly double keepalive_timeout

    def __init__(self, Clock clock, limits, snapshot, bint access_log):
        self.clock = clock
        self.limits = limits
        self.snapshot = snapshot
        self.tenant_header = getattr(snapshot, "tenant_header", None)
        self.access_log = access_log
        self._log_lines = []
        self.connections = set()
        self.closing = False
        self.max_url_bytes = limits.max_url_bytes
        self.max_header_bytes = limits.max_header_bytes
        self.max_headers = limits.max_headers
        self.max_body_bytes = limits.max_body_bytes
        self.max_connections = limits.max_connections
        self.header_timeout = limits.header_timeout
        self.body_timeout = limits.body_timeout
        self.keepalive_timeout = limits.keepalive_timeout

    def swap(self, snapshot):
        """Route every request from now on with `snapshot` (in-flight ones keep theirs)."""
        self.tenant_header = getattr(snapshot, "tenant_header", None)
        self.snapshot = snapshot

    def __cinit__(self):
        self.state = {}

    def sweep(self, double now):
        cdef ClientProtocol conn
        for conn in tuple(self.connections):
            conn.check_deadlines(now)
        self.flush_log()

    cdef log(self, bytes line):
        # PERF: access-log lines are written in batches (at each clock tick, or
        # every 256 lines), not with a write and a flush per request.
        self._log_lines.append(line)
        if len(self._log_lines) >= 256:
            self.flush_log()

    cpdef flush_log(self):
        """Write the access-log lines held so far (stdout, one JSON object a line)."""
        if self._log_lines:
            self._log_lines.append(b"")
            sys.stdout.buffer.write(b"\n".join(self._log_lines))
            sys.stdout.flush()
            self._log_lines = []


# -- per-request state ----------------------------------------------------------------


# PERF: no_gc: a Request holds no reference back to anything that holds it, so it
# needs no cycle collection; one tracked allocation fewer per request.
@cython.no_gc
@cython.freelist(64)
cdef class Request:
    """One request on a client connection, from its first byte to its response's last."""

    cdef public bytes method
    cdef public bytes url
    cdef public object host  # bytes or None
    cdef list lines  # (name, b": ", value, b"\r\n") per kept header; None for none
    cdef long long header_count
    cdef long long header_bytes
    cdef public long long content_length
    cdef bint chunked
    cdef list connection_tokens
    cdef object forwarded_for
    cdef object via
    cdef bint expect_continue
    cdef object upgrade
    cdef public bint keep_alive
    cdef bint http11
    cdef bint is_head
    cdef bint has_body
    cdef public Target target
    cdef public Pool pool  # the replica chosen for it
    cdef int tries  # replicas tried after a failed connect
    cdef bint local_body  # buffered whole, unframed, for a local handler or a validator
    cdef object check  # the validator's Verdict, when the body is to be checked
    cdef object params  # route params, kept for local handlers and validators only
    cdef bytes local  # a response the gateway answers itself
    cdef bint close_after
    cdef bytes head  # the request head as sent upstream
    cdef list body  # framed body pieces not yet sent upstream
    cdef long long buffered
    cdef long long body_bytes
    cdef long long body_sent
    cdef list replay  # framed pieces sent, kept while small so a retry can resend them
    cdef bint replay_lost  # more was sent than `replay` keeps: no retry
    cdef bint retried
    cdef bint complete
    cdef bint discard
    cdef long long limit
    cdef public int status
    cdef double started
    cdef int pin  # the replica an MCP session lives on (index); -1: any

    def __cinit__(self):
        self.url = b""
        self.pin = -1
        self.content_length = -1
        self.keep_alive = True
        self.http11 = True


cdef enum:
    # Why reading from the client is paused (a bit each; reading resumes at zero).
    P_UPSTREAM = 1  # the upstream's write buffer is full
    P_BUFFER = 2  # too much body or too many pipelined requests are waiting
    P_DONE = 4  # nothing more will be read (rejected, upgrading, closing)
    # What the connection's deadline means when it passes.
    D_NONE = 0
    D_IDLE = 1  # keep-alive idle: close quietly
    D_HEAD = 2  # request head too slow: 408
    D_BODY = 3  # request body too slow: 408 (or abort once the response began)
    BUFFER_LIMIT = 262144  # body or pipelined bytes held while waiting; then pause
    STREAM_BUFFER_LIMIT = 1048576  # unread bytes a local stream's listener may fall behind
    REPLAY_LIMIT = 65536  # body kept for a retry on a fresh connection

cdef bytes _FINAL_CHUNK = b"0\r\n\r\n"
cdef bytes _SSE_KEEPALIVE = b": keep-alive\n\n"
cdef bytes _CHUNKED_KEEPALIVE = b"e\r\n: keep-alive\n\n\r\n"
cdef bytes _CONNECTION_CLOSE = b"Connection: close\r\n"
cdef bytes _CONNECTION_KEEP_ALIVE = b"Connection: keep-alive\r\n"
cdef bytes _TE_CHUNKED = b"Transfer-Encoding: chunked\r\n"
cdef bytes _VIA = b"1.1 runmcp-fast"
cdef bytes _VIA_LINE = b"Via: 1.1 runmcp-fast\r\n"
cdef bytes _OPTIONS_STAR = (
    b"HTTP/1.1 200 OK\r\nAllow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n"
    b"Content-Length: 0\r\n\r\n"
)


class _Stop(Exception):
    """Raised in an upstream parser callback to stop parsing a response given up on."""


class _Reject(Exception):
    """Raised in a parser callback to stop parsing and answer `status`."""

    def __init__(self, status, detail, headers=()):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers


# -- the client side ------------------------------------------------------------------


cdef class ClientProtocol:
    """The client-side HTTP/1.1 protocol: parse, route, proxy, stream back."""

    # Global state (shared by every connection of the gateway)
    cdef readonly ServerContext ctx
    cdef Clock clock
    cdef bytes forwarded_proto
    cdef bytes forwarded_host
    # Per-connection state
    cdef public object transport
    cdef object parser
    cdef bytes peer
    cdef public bint closed
    cdef public bint closing
    cdef bint close_when_flushed
    cdef double deadline
    cdef int deadline_kind
    cdef long long head_bytes
    cdef bint head_continued
    cdef bint in_feed
    cdef bint out_chunked
    cdef int paused
    cdef bint write_paused
    cdef list pending
    cdef list up_pending
    cdef object queue
    cdef long long queued_bytes
    cdef bint tunnel
    cdef UpstreamConnection upstream
    cdef bint waiting
    # Per-request state
    cdef Request current
    cdef Request active
    cdef bint response_started
    cdef bint response_done
    cdef Py_ssize_t head_mark  # where the response head starts in `pending`; -1 once written
    # An event stream being answered (SSE): a comment after `keepalive_every`
    # seconds without a byte, so idle streams survive middleboxes' idle timeouts.
    cdef double keepalive_every  # 0: not an event stream
    cdef double last_out
    cdef unsigned int tail  # the stream's last 4 bytes: does it end an event? (_event_ends)
    cdef object body_filter  # rewrites an upstream body as it streams (legacy MCP endpoint)
    cdef LocalStream stream  # a local handler's open stream

    def __init__(self, ServerContext ctx, bytes scheme):
        self.ctx = ctx
        self.clock = ctx.clock
        self.forwarded_proto = b"X-Forwarded-Proto: " + scheme + b"\r\n"
        self.forwarded_host = self.forwarded_proto + b"X-Forwarded-Host: "
        self.parser = HttpRequestParser(self)
        self.peer = b""
        self.pending = []
        self.up_pending = []
        self.queue = None  # a deque once a request is pipelined (most connections never)

    # -- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        ctx = self.ctx
        if len(ctx.connections) >= ctx.max_connections or ctx.closing:
            transport.write(problem(503, "the gateway is at its connection limit", keep_alive=False))
            transport.close()
            self.closed = True
            return
        ctx.connections.add(self)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self.peer = str(peer[0]).encode("ascii")
        self._set_deadline(D_IDLE, ctx.header_timeout)

    def data_received(self, bytes data):
        if self.tunnel:
            if self.upstream is not None:
                self.upstream.write(data)
            return
        if self.paused & P_DONE:
            return  # rejected or closing: the rest of the stream is not read
        if self.deadline_kind == D_HEAD:
            # A header value dripping in is held by httptools until complete;
            # count what arrives after the message began to bound it.
            if self.head_continued:
                self.head_bytes += len(data)
                if self.head_bytes > self.ctx.max_header_bytes + self.ctx.max_url_bytes:
                    self._reject_current(431, "the request head is too large", ())
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
            self._upgrade_requested(data[exc.args[0]:])
        except HttpParserError as exc:
            self._reject_current(400, "malformed request: " + (str(exc) or type(exc).__name__), ())
        finally:
            self.in_feed = False
        self._flush()

    def eof_received(self):
        if self.tunnel:
            # Pass the half-close on; the other direction may still flow.
            if self.upstream is not None and self.upstream.transport is not None:
                self.upstream.transport.write_eof()
            return True
        # The client finished sending; answers still in flight may be written.
        if self.active is None and self.current is None and not self.queue:
            return None
        self.closing = True
        return True

    def connection_lost(self, exc):
        cdef UpstreamConnection upstream = self.upstream
        self.closed = True
        self.ctx.connections.discard(self)
        self.upstream = None
        if upstream is not None:
            if self.tunnel:
                upstream.client = None
                upstream.close()
            else:
                upstream.abandon()
        self.waiting = False
        self.queue = None
        cdef LocalStream stream = self.stream
        if stream is not None:
            self.stream = None
            stream._client = None
            stream._ended()
        # The parser holds bound methods of this protocol, and the transport
        # holds the protocol: cycles. Broken here, a closed connection is freed
        # by reference counting, not left for the cycle GC (which a reload's
        # gc.freeze() would otherwise turn into a leak).
        self.parser = None
        self.transport = None

    def pause_writing(self):
        self.write_paused = True
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_writing(self):
        self.write_paused = False
        if self.upstream is not None:
            self.upstream.resume_reading()

    # -- parser callbacks ------------------------------------------------------------

    def on_message_begin(self):
        cdef Request req = Request.__new__(Request)
        self.current = req
        self.head_bytes = 0
        self.head_continued = False
        self.deadline = monotonic() + self.ctx.header_timeout
        self.deadline_kind = D_HEAD
        if self.ctx.access_log:
            req.started = time.time()

    def on_url(self, bytes url):
        cdef Request req = self.current
        req.url = url if not req.url else req.url + url
        if len(req.url) > self.ctx.max_url_bytes:
            raise _Reject(414, f"the request target is longer than {self.ctx.max_url_bytes} bytes")

    def on_header(self, bytes name, bytes value):
        cdef Request req = self.current
        cdef ServerContext ctx = self.ctx
        req.header_count += 1
        req.header_bytes += len(name) + len(value) + 4
        if req.header_count > ctx.max_headers:
            raise _Reject(431, f"more than {ctx.max_headers} header fields")
        if req.header_bytes > ctx.max_header_bytes:
            raise _Reject(431, f"the header fields exceed {ctx.max_header_bytes} bytes")
        if req.has_body:
            return  # trailers after a chunked body: counted, not forwarded
        cdef int kind = _header_kind(PyBytes_AS_STRING(name), len(name))
        if kind == HDR_OTHER:
            _keep_line(req, name, value)
        elif kind == HDR_HOST:
            if req.host is not None:
                raise _Reject(400, "more than one Host header field")
            req.host = value.rstrip(b" \t")  # trailing OWS is not part of the value
        elif kind == HDR_CONTENT_LENGTH:
            if req.content_length >= 0:
                raise _Reject(400, "more than one Content-Length header field")
            value = value.rstrip(b" \t")
            if not value.isdigit() or len(value) > 18:
                raise _Reject(400, "Content-Length is not a decimal number")
            req.content_length = int(value)
            _keep_line(req, name, value)
        elif kind == HDR_TRANSFER_ENCODING:
            # Only exactly `chunked`: anything else (a list, another coding, a
            # repeated field) could be read two ways by two parsers.
            if req.chunked or value.strip().lower() != b"chunked":
                raise _Reject(400, "the only Transfer-Encoding accepted is a single 'chunked'")
            req.chunked = True
        elif kind == HDR_CONNECTION:
            if req.connection_tokens is None:
                req.connection_tokens = []
            for token in value.split(b","):
                req.connection_tokens.append(token.strip().lower())
        elif kind == HDR_UPGRADE:
            req.upgrade = value
        elif kind == HDR_EXPECT:
            if value.lower() != b"100-continue":
                raise _Reject(417, "the only expectation supported is 100-continue")
            req.expect_continue = True
        elif kind == HDR_FORWARDED_FOR:
            req.forwarded_for = value if req.forwarded_for is None else req.forwarded_for + b", " + value
        elif kind == HDR_VIA:
            req.via = value if req.via is None else req.via + b", " + value
        # else hop-by-hop, any other Proxy-*, or ours to set (X-Forwarded-Proto/-Host)

    def on_headers_complete(self):
        cdef Request req = self.current
        cdef ServerContext ctx = self.ctx
        parser = self.parser
        req.method = method = parser.get_method()
        req.keep_alive = parser.should_keep_alive()
        # PERF: get_http_version() formats a str; keep-alive without an explicit
        # `Connection: keep-alive` can only be HTTP/1.1, the common case.
        if req.keep_alive and not (req.connection_tokens and b"keep-alive" in req.connection_tokens):
            req.http11 = True
        else:
            req.http11 = parser.get_http_version() == "1.1"
        req.is_head = method == b"HEAD"
        self.deadline_kind = D_NONE
        self.deadline = 0.0
        if req.content_length >= 0 and req.chunked:
            raise _Reject(400, "both Content-Length and Transfer-Encoding")
        if req.chunked and not req.http11:
            raise _Reject(400, "Transfer-Encoding in an HTTP/1.0 request")
        req.has_body = req.chunked or req.content_length > 0
        req.limit = ctx.max_body_bytes
        if method == b"CONNECT":
            raise _Reject(501, "CONNECT is not supported: this is a reverse proxy")
        if req.upgrade is not None:
            if parser.should_upgrade():
                req.keep_alive = False  # unless it becomes a tunnel, close after the answer
            else:
                req.upgrade = None  # Upgrade without `Connection: upgrade` asks for nothing
        self._route(req)
        if req.local is None and req.target.mcp is not None:
            self._mcp_request(req)
        if req.local is None and req.target.validator is not None:
            self._check_head(req)
        if req.content_length > req.limit:
            raise _Reject(413, f"the body is larger than {req.limit} bytes")
        if req.has_body:
            self._set_deadline(D_BODY, ctx.body_timeout)
        if req.local is not None:
            req.discard = True
        elif req.target.handler is not None or req.check is not None:
            req.local_body = True
        else:
            req.head = self._upstream_head(req)
        self._enqueue(req)

    def on_body(self, bytes body):
        cdef Request req = self.current
        req.body_bytes += len(body)
        if req.body_bytes > req.limit:
            raise _Reject(413, f"the body is larger than {req.limit} bytes")
        self.deadline = monotonic() + self.ctx.body_timeout
        if req.discard:
            return
        if req.chunked and not req.local_body:
            body = b"%x\r\n%b\r\n" % (len(body), body)
        self._body_piece(req, body)

    def on_message_complete(self):
        cdef Request req = self.current
        self.current = None
        req.complete = True
        if self.deadline_kind == D_BODY:
            self._clear_deadline()
        if req.chunked and not req.discard and not req.local_body:
            self._body_piece(req, _FINAL_CHUNK)
        if req is self.active:
            if self.response_done:
                self._request_done()
            elif req.local_body and not self.waiting:
                self._body_complete(req)

    # -- routing and the upstream request head ---------------------------------------

    cdef _route(self, Request req):
        cdef bytes url = req.url
        host = req.host
        if url[:1] != b"/":
            if host is None and req.http11:
                req.local = problem(400, "an HTTP/1.1 request needs a Host header", keep_alive=False)
                req.keep_alive = False
                return
            url, host = self._non_origin_target(req, url, host)
            if req.local is not None:
                return
            req.host = host  # the authority is the Host upstream too
        if host is None:
            if req.http11:
                req.local = problem(400, "an HTTP/1.1 request needs a Host header", keep_alive=False)
                req.keep_alive = False
                return
        elif not _host_is_valid(host):
            req.local = problem(400, "the Host header is not a valid host", keep_alive=False)
            req.keep_alive = False
            return
        cdef ServerContext ctx = self.ctx
        snapshot = ctx.snapshot
        router = snapshot.router
        if ctx.tenant_header is not None:
            tenant = _header_value(req.lines, ctx.tenant_header)
            if tenant is not None:
                router = snapshot.tenant_routers.get(tenant.strip().lower())
                if router is None:
                    req.local = problem(
                        404, "no tenant by the name the tenant header gives",
                        keep_alive=req.keep_alive, head_only=req.is_head,
                    )
                    return
        found = router.match(host, req.method, url)
        if found is None:
            self._route_miss(req, router, host, url)
            return
        cdef Target target = found.target
        req.target = target
        req.limit = target.max_body
        req.url = url
        if target.handler is not None or target.validator is not None:
            req.params = found.params

    cdef tuple _non_origin_target(self, Request req, bytes url, host):
        if url == b"*" and req.method == b"OPTIONS":
            req.local = _OPTIONS_STAR
            return url, host
        try:
            parts = parse_url(url)
        except HttpParserError:
            parts = None
        if parts is None or parts.schema not in (b"http", b"https") or not parts.host:
            req.local = problem(400, "the request target is neither a path nor an absolute URL",
                                keep_alive=False)
            req.keep_alive = False
            return url, host
        # Absolute form: its authority replaces Host (RFC 9112 §3.2.2).
        authority = parts.host if parts.port is None else b"%s:%d" % (parts.host, parts.port)
        path = parts.path or b"/"
        if parts.query:
            path += b"?" + parts.query
        return path, authority

    cdef _route_miss(self, Request req, router, host, bytes url):
        if req.has_body and (req.expect_continue or req.content_length > BUFFER_LIMIT):
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
                404, "no service routes this host and path",
                keep_alive=req.keep_alive, head_only=req.is_head,
            )

    cdef bytes _upstream_head(self, Request req):
        cdef Target target = req.target
        cdef bytes host = req.host or b""
        cdef list lines = req.lines
        if lines is not None and req.connection_tokens:
            lines = _drop_named(lines, req.connection_tokens)
        cdef bytes forwarded_for = self.peer
        if req.forwarded_for is not None:
            forwarded_for = req.forwarded_for + b", " + forwarded_for if forwarded_for else req.forwarded_for
        cdef list parts = [
            req.method,
            b" ",
            target.upstream_target(req.url),
            b" HTTP/1.1\r\nHost: ",
            target.host_header or host or target.pool.upstream_authority,
            b"\r\n",
        ]
        if lines is not None:
            parts += lines
        if forwarded_for:
            parts.append(b"X-Forwarded-For: ")
            parts.append(forwarded_for)
            parts.append(b"\r\n")
        if host:
            parts.append(self.forwarded_host)  # X-Forwarded-Proto line, X-Forwarded-Host name
            parts.append(host)
            parts.append(b"\r\n")
        else:
            parts.append(self.forwarded_proto)
        if req.via is None:
            parts.append(_VIA_LINE)
        else:
            parts.append(b"Via: " + req.via + b", " + _VIA + b"\r\n")
        if req.chunked:
            if req.check is not None:
                # A checked body was read whole: it goes on with its length.
                parts.append(b"Content-Length: %d\r\n" % req.body_bytes)
            else:
                parts.append(_TE_CHUNKED)
        # (a Content-Length is among the kept lines, as the client sent it)
        if req.upgrade is not None:
            parts.append(b"Upgrade: " + req.upgrade + b"\r\nConnection: upgrade\r\n")
        parts.append(b"\r\n")
        return _concat(parts)

    # -- request order ------------------------------------------------------------------

    cdef _enqueue(self, Request req):
        if self.active is None:
            self._start(req)
        else:
            if self.queue is None:
                self.queue = deque()
            self.queue.append(req)
            self.queued_bytes += len(req.url) + req.header_bytes
            if self.queued_bytes > BUFFER_LIMIT:
                self._pause(P_BUFFER)

    cdef _start(self, Request req):
        self.active = req
        self.response_started = False
        self.response_done = False
        self.out_chunked = False
        self.keepalive_every = 0.0
        self.body_filter = None
        if req.local is not None:
            self.response_started = True
            self.response_done = True
            self.pending.append(req.local)
            if req.close_after or not req.keep_alive:
                self._close_after_flush()
            elif req.complete:
                self._request_done()
            return
        if req.expect_continue and req.http11 and not req.complete:
            # (an HTTP/1.0 client's expectation is ignored: RFC 9110 §10.1.1)
            self.pending.append(CONTINUE)
        if req.local_body:
            if req.complete:
                self._body_complete(req)
            return  # called when the body is complete
        self._acquire(req)

    cdef _acquire(self, Request req):
        """Ask the target's pool (a replica) for a connection to send `req` on."""
        cdef Target target = req.target
        cdef Pool pool
        if req.pin >= 0:
            pool = <Pool>target.replicas.pools[req.pin]  # an MCP session's replica
        elif len(target.replicas.pools) == 1:
            pool = target.pool
        else:
            pool = target.replicas.pick(None)
        req.pool = pool
        self.waiting = True
        conn = pool.acquire(self, target.connect_timeout)
        if conn is not None:
            self.upstream_attached(conn)

    cdef inline bint _last_call(self):
        """Closing, and nothing read waits to be answered after the active request."""
        return self.closing and not self.queue

    cdef _request_done(self):
        """The active request is answered and fully read: log it, go on to the next."""
        cdef Request req = self.active
        cdef Request following
        self.active = None
        if self.ctx.access_log:
            self._log(req)
        if not req.keep_alive:
            self._close_after_flush()
            return
        # Closing (the client sent EOF, or the gateway drains): requests already
        # read in full are still answered, then the connection closes.
        if self.queue:
            following = self.queue.popleft()
            self.queued_bytes -= len(following.url) + following.header_bytes
            if self.paused & P_BUFFER and self.queued_bytes <= BUFFER_LIMIT:
                self._resume(P_BUFFER)
            self._start(following)
        elif self.closing:
            self._close_after_flush()
        elif self.current is None:
            self._set_deadline(D_IDLE, self.ctx.keepalive_timeout)

    # -- the request body ----------------------------------------------------------------

    cdef _body_piece(self, Request req, bytes piece):
        if req is self.active:
            if self.upstream is not None:
                self._send_upstream(req, piece)
                return
            if self.response_done:
                return  # answered already (the upstream did not wait for the body)
        if req.body is None:
            req.body = []
        req.body.append(piece)
        req.buffered += len(piece)
        # A local handler takes the whole body (bounded by the target's limit).
        if req.buffered > BUFFER_LIMIT and not req.local_body:
            self._pause(P_BUFFER)

    cdef _send_upstream(self, Request req, bytes piece):
        req.body_sent += len(piece)
        if not req.replay_lost:
            _keep_for_replay(req, piece)
        if self.in_feed:
            self.up_pending.append(piece)
        else:
            self.upstream.write(piece)

    # -- upstream events (called by the pool and the upstream connection) ---------------

    cpdef upstream_attached(self, UpstreamConnection conn):
        cdef Request req = self.active
        if not self.waiting or self.closed or req is None or req.target is None:
            conn.pool.release(conn)
            return
        self.waiting = False
        conn.bind(self, req.is_head, req.target.read_timeout, monotonic())
        self.upstream = conn
        if self.write_paused:
            conn.pause_reading()
        cdef list parts = [req.head]
        if req.replay:
            parts += req.replay  # a retry: what the failed connection was sent
        cdef list body = req.body
        cdef bytes piece
        if body:
            req.body = None
            req.buffered = 0
            for piece in body:
                req.body_sent += len(piece)
                if not req.replay_lost:
                    _keep_for_replay(req, piece)
            parts += body
            if self.paused & P_BUFFER and self.queued_bytes <= BUFFER_LIMIT:
                self._resume(P_BUFFER)
        if self.in_feed:
            self.up_pending += parts
        else:
            conn.write(_concat(parts))

    cpdef connect_failed(self, Pool pool, int status, str detail):
        """`pool` could not connect: try another replica of the service, if it has one."""
        if not self.waiting or self.closed:
            return
        pool.mark_down()
        cdef Request req = self.active
        cdef Pool other
        if req is not None and req.pin >= 0:
            # The replica holding this MCP session is gone: the session with it.
            self._local_answer(req, req.target.mcp.replica_gone(detail))
            self._flush()
            return
        if req is not None and req.target is not None and len(req.target.replicas.pools) > 1:
            if req.tries + 1 < len(req.target.replicas.pools):
                other = req.target.replicas.pick(pool)
                if other is not None:
                    req.tries += 1
                    req.pool = other
                    conn = other.acquire(self, req.target.connect_timeout)
                    if conn is not None:
                        self.upstream_attached(conn)
                    return
        self.upstream_unavailable(status, detail)

    # -- MCP sessions ---------------------------------------------------------------------

    cdef _mcp_request(self, Request req):
        """Show the request to its MCP service's session router (see Target).

        It answers None (any replica), a replica index (the session's), an
        (index, new request-target) pair, or a whole answer (status, headers, body).
        """
        try:
            decision = req.target.mcp.request(req.method, req.url, req.host, req.lines)
        except Exception as exc:
            self._handler_failed(exc)
            decision = _HANDLER_FAILED
        if decision is None:
            return
        if type(decision) is int:
            req.pin = <int>decision
            return
        if len(<tuple>decision) == 2:
            req.pin = <int>decision[0]
            req.url = <bytes>decision[1]
            return
        if req.has_body and (req.expect_continue or req.content_length > BUFFER_LIMIT):
            req.keep_alive = False  # not worth reading a body that is refused already
        req.status = decision[0]
        req.local = _local_response(req, <tuple>decision, req.keep_alive)

    cdef list _mcp_response(self, Request req, int status, list lines, long long content_length):
        """Let the session router rewrite an MCP response's head; mark event streams."""
        try:
            out = req.target.mcp.response(req.method, status, lines, req.pool, req.pin)
        except Exception as exc:
            # Forwarded as it came: a session id left unwrapped only fails the
            # client's next request with 404, and the client starts again.
            self._handler_failed(exc)
            return lines
        if out is None:
            return lines
        new_lines, stream, body_filter = out
        if stream:
            self._stream_mode(req.target.stream_keepalive)
            if self.upstream is not None:
                self.upstream.stream_mode()
        if body_filter is not None and content_length < 0:
            self.body_filter = body_filter
        return new_lines if new_lines is not None else lines

    cdef _stream_mode(self, double keepalive_every):
        self.keepalive_every = keepalive_every
        self.last_out = monotonic()
        self.tail = 0x0A0A  # nothing written yet: as good as after an event

    cdef _keepalive(self, double now):
        """An SSE comment on an idle event stream (only between two events)."""
        self.last_out = now
        self.pending.append(_CHUNKED_KEEPALIVE if self.out_chunked else _SSE_KEEPALIVE)
        self._flush()

    # -- local streams ------------------------------------------------------------------

    cdef _stream_start(self, Request req, int status, headers, LocalStream stream, bint keep_alive):
        cdef list parts = [status_line(status)]
        for name, value in headers:
            parts.append(f"{name}: {value}\r\n".encode("latin-1"))
        if req.http11:
            parts.append(_TE_CHUNKED)
            self.out_chunked = True
        else:
            keep_alive = False  # an HTTP/1.0 client reads to the end of the connection
        parts.append(_CONNECTION_KEEP_ALIVE if keep_alive else _CONNECTION_CLOSE)
        parts.append(b"\r\n")
        req.keep_alive = keep_alive
        self.pending.append(_concat(parts))
        self.response_started = True
        self.stream = stream
        stream._client = self
        self._stream_mode(req.target.stream_keepalive)
        cdef list early = stream._early
        stream._early = None
        if early:
            for piece in early:
                self.response_body(piece)
        if stream.closed:
            self._stream_end(stream)

    cdef bint _stream_write(self, LocalStream stream, bytes data):
        if self.closed or self.stream is not stream:
            return False
        if self.write_paused and self.transport is not None and (
            self.transport.get_write_buffer_size() > STREAM_BUFFER_LIMIT
        ):
            # A listener that does not read: let it go rather than buffer without end.
            self._abort()
            return False
        self.response_body(data)
        if not self.in_feed:
            self._flush()
        return True

    cdef _stream_end(self, LocalStream stream):
        if self.stream is not stream:
            return
        self.stream = None
        stream._client = None
        stream._ended()
        if not self.closed:
            self.response_complete()
            if not self.in_feed:
                self._flush()

    # -- contract validation -------------------------------------------------------------

    cdef _check_head(self, Request req):
        """The operation's parameters and Content-Type, as soon as the head is read."""
        validator = req.target.validator
        fast = validator.fast_heads
        if fast is not None and req.has_body:
            # PERF: a body-only contract and a Content-Type seen before: the
            # shared verdict, with no Python call (validator.head) in between.
            content_type = _header_value(req.lines, b"content-type")
            verdict = (<dict>fast).get(content_type) if content_type is not None else None
            if verdict is not None:
                validator.checked += 1
                req.check = verdict
                limit = validator.max_body
                if limit < req.limit:
                    req.limit = limit
                return
        try:
            verdict = req.target.validator.head(
                req.url, req.params, req.lines,
                _header_value(req.lines, b"content-type") if req.has_body else None,
                req.has_body,
            )
        except Exception as exc:
            self._handler_failed(exc)
            verdict = None
        if verdict is None:
            return
        if verdict.body is None:
            if req.has_body and (req.expect_continue or req.content_length > BUFFER_LIMIT):
                req.keep_alive = False  # not worth reading a body that is refused already
            req.local = verdict.response(req.keep_alive, req.is_head)
            return
        req.check = verdict
        limit = verdict.op.max_body
        if limit < req.limit:
            req.limit = limit

    cdef _body_complete(self, Request req):
        if req.check is not None:
            self._check_body(req)
        else:
            self._call_handler(req)

    cdef _check_body(self, Request req):
        """The whole body is here: check it, then send it on, or answer with every problem."""
        cdef list body = req.body
        cdef bytes data = b"".join(body) if body else b""
        req.body = None
        req.buffered = 0
        check = req.check
        refusal = None
        program = check.program
        # The common case, a valid body, decided by the byte checker with no
        # Python frame in between; anything else goes through `finish`.
        if program is None or not data or not program.check(data):
            try:
                refusal = check.finish(data)
            except Exception as exc:
                self._handler_failed(exc)
                # Forwarding a body that could not be checked would let a crafted
                # one through: refuse it (report-only mode forwards any body).
                if check.op.enforce:
                    keep_alive = req.keep_alive and req.complete and not self._last_call()
                    req.status = 500
                    self._answered(
                        req,
                        problem(500, "the request body could not be validated",
                                keep_alive=keep_alive, head_only=req.is_head),
                        keep_alive,
                    )
                    return
        if refusal is not None:
            keep_alive = req.keep_alive and req.complete and not self._last_call()
            response = refusal.response(keep_alive, req.is_head)
            req.status = refusal.status
            self._answered(req, response, keep_alive)
            return
        req.local_body = False
        req.head = self._upstream_head(req)
        if data:
            req.body = [data]
            req.buffered = len(data)
        self._acquire(req)

    # -- local handlers ------------------------------------------------------------------

    cdef _call_handler(self, Request req):
        """Call the target's handler with the whole request; answer with what it returns."""
        cdef list body = req.body
        req.body = None
        req.buffered = 0
        self.waiting = True
        request = LocalRequest(
            req.method, req.url, req.host, req.lines,
            b"".join(body) if body else b"", req.params, self.peer,
        )
        request.ctx = self.ctx
        try:
            result = req.target.handler(request)
        except Exception as exc:
            self._handler_failed(exc)
            self._local_answer(req, _HANDLER_FAILED)
            return
        if isinstance(result, tuple):
            self._local_answer(req, result)
            return
        future = asyncio.ensure_future(result)
        future.add_done_callback(lambda f: self._handler_done(req, f))

    def _handler_done(self, Request req, future):
        if future.cancelled():
            result = _HANDLER_FAILED
        elif future.exception() is not None:
            self._handler_failed(future.exception())
            result = _HANDLER_FAILED
        else:
            result = future.result()
        self._local_answer(req, result)
        if not self.in_feed:
            self._flush()

    cdef _handler_failed(self, exc):
        asyncio.get_event_loop().call_exception_handler(
            {"message": "a local handler failed", "exception": exc}
        )

    cdef _local_answer(self, Request req, tuple result):
        if self.closed or self.active is not req or not self.waiting:
            if type(result[2]) is LocalStream:
                (<LocalStream>result[2])._ended()  # nobody to stream to
            return
        self.waiting = False
        cdef bint keep_alive = req.keep_alive and req.complete and not self._last_call()
        req.status = result[0]
        if type(result[2]) is LocalStream:
            self._stream_start(req, result[0], result[1], <LocalStream>result[2], keep_alive)
            return
        self._answered(req, _local_response(req, result, keep_alive), keep_alive)

    cpdef upstream_unavailable(self, int status, str detail):
        if not self.waiting or self.closed:
            return
        self.waiting = False
        self._answer_error(status, detail)
        self._flush()

    cdef upstream_write_paused(self, bint paused):
        if paused:
            self._pause(P_UPSTREAM)
        else:
            self._resume(P_UPSTREAM)

    cdef response_head(self, int status, bytes line, bytes reason, list lines,
                       long long content_length, bint chunked, bint no_body):
        cdef Request req = self.active
        self.response_started = True
        req.status = status
        # Keep the client connection only when the request was read to its end.
        cdef bint keep_alive = req.keep_alive and req.complete and not self._last_call()
        self.head_mark = len(self.pending)
        if req.target is not None and req.target.mcp is not None:
            lines = self._mcp_response(req, status, lines, content_length)
        cdef list parts = [line if line is not None else status_line(status, reason)]
        parts += lines
        if status == 101:
            keep_alive = True  # the connection becomes a tunnel
        elif no_body or content_length >= 0:
            pass  # the upstream's Content-Length, if any, is among the lines
        elif req.http11:
            parts.append(_TE_CHUNKED)
            self.out_chunked = True
        else:
            keep_alive = False  # an HTTP/1.0 client reads to the end of the connection
        if status != 101:
            if not keep_alive:
                parts.append(_CONNECTION_CLOSE)
            elif not req.http11:
                parts.append(_CONNECTION_KEEP_ALIVE)
        parts.append(b"\r\n")
        req.keep_alive = keep_alive
        self.pending.extend(parts)  # joined with the body by _flush, one write
        if status == 101:
            self._become_tunnel()

    cdef response_body(self, bytes data):
        if self.body_filter is not None:
            data = self.body_filter.feed(data)
            if not data:
                return
        if self.keepalive_every:
            self.last_out = monotonic()
            self.tail = _tail(data, self.tail)
        if self.out_chunked:
            self.pending.append(b"%x\r\n" % len(data))
            self.pending.append(data)
            self.pending.append(b"\r\n")
        else:
            self.pending.append(data)

    cdef response_complete(self):
        cdef UpstreamConnection upstream = self.upstream
        self.upstream = None
        if upstream is not None:
            upstream.resume_reading()
        self._resume(P_UPSTREAM)
        if self.out_chunked:
            self.pending.append(_FINAL_CHUNK)
        self.response_done = True
        cdef Request req = self.active
        if req is None:
            return
        if req.complete:
            self._request_done()
        else:
            # The upstream answered before the body ended: the head said close.
            req.discard = True
            self._close_after_flush()

    cdef response_failed(self, int status, str detail, bint retryable):
        self.upstream = None
        self._resume(P_UPSTREAM)
        cdef Request req = self.active
        if req is None or self.closed:
            return
        if self.response_started:
            if self.head_mark < 0:
                # A truncated body must never look complete: cut the connection.
                self._abort()
                return
            # Nothing of this response was written yet: answer 502 instead.
            del self.pending[self.head_mark:]
            self.out_chunked = False
            self.response_started = False
        if retryable and not req.retried and _replayable(req):
            req.retried = True
            self.waiting = True
            req.pool.open_fresh(self, req.target.connect_timeout)
            return
        self._answer_error(status, detail)

    cdef tunnel_data(self, bytes data):
        self.pending.append(data)  # after the 101 head if it is still pending
        self._flush()

    cdef tunnel_closed(self):
        self.upstream = None
        self._close_after_flush()
        self._flush()

    # -- upgrades --------------------------------------------------------------------

    cdef _upgrade_requested(self, bytes rest):
        """httptools stopped at the end of an Upgrade request's head."""
        cdef Request req = self.active
        self._pause(P_DONE)  # nothing is parsed after an upgrade request
        if req is None or req.upgrade is None:
            self._reject_current(400, "an Upgrade request must come alone", ())
            return
        if req.local is not None:
            return  # answered locally, then closed
        if rest:
            self._body_piece(req, rest)  # early tunnel bytes, right after the head
        req.complete = True
        self.current = None

    cdef _become_tunnel(self):
        if self.upstream is None or self.active is None:
            return
        self.tunnel = True
        self._clear_deadline()
        self.paused = 0
        if self.transport is not None:
            self.transport.resume_reading()

    # -- errors -----------------------------------------------------------------------

    cdef _answer_error(self, int status, str detail):
        cdef Request req = self.active
        if req is None:
            return
        cdef bint keep_alive = req.keep_alive and req.complete and not self._last_call()
        req.status = status
        self._answered(
            req, problem(status, detail, keep_alive=keep_alive, head_only=req.is_head), keep_alive
        )

    cdef _answered(self, Request req, bytes response, bint keep_alive):
        """The gateway wrote the whole response itself: go on to the next request, or close."""
        self.pending.append(response)
        self.response_started = True
        self.response_done = True
        req.keep_alive = keep_alive
        if keep_alive:
            self._request_done()
        else:
            req.discard = True
            self._close_after_flush()

    cdef _reject_current(self, int status, str detail, tuple headers):
        """A request that can not be read on: answer it in turn, then close."""
        self._pause(P_DONE)
        self._clear_deadline()
        cdef Request req = self.current
        cdef UpstreamConnection upstream
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
            self.response_started = True
            self.response_done = True
            self._close_after_flush()
            return
        cdef Request reply = req if req is not None else Request.__new__(Request)
        reply.local = problem(status, detail, keep_alive=False, headers=headers)
        reply.close_after = True
        reply.complete = True
        reply.keep_alive = False
        reply.status = status
        reply.target = None
        if self.queue is None or reply not in self.queue:
            self._enqueue(reply)  # else it is answered where it waits, in turn

    cdef _abort(self):
        self.closed = True
        self.pending.clear()
        self.ctx.connections.discard(self)
        if self.transport is not None:
            self.transport.abort()

    # -- timeouts ------------------------------------------------------------------------

    cdef _set_deadline(self, int kind, double seconds):
        self.deadline_kind = kind
        self.deadline = monotonic() + seconds

    cdef _clear_deadline(self):
        self.deadline_kind = D_NONE
        self.deadline = 0.0

    cdef check_deadlines(self, double now):
        """Called by the clock sweep for every connection."""
        cdef double deadline = self.deadline
        cdef int kind
        if deadline and deadline <= now and not self.paused & (P_UPSTREAM | P_BUFFER):
            kind = self.deadline_kind
            self._clear_deadline()
            if kind == D_IDLE:
                self._close()
            elif kind == D_HEAD:
                self._reject_current(408, "the request head did not arrive in time", ())
                self._flush()
            elif kind == D_BODY:
                self._reject_current(408, "the request body stopped arriving", ())
                self._flush()
        cdef UpstreamConnection upstream = self.upstream
        if upstream is not None and upstream.deadline and upstream.deadline <= now:
            upstream.timed_out()
        if (
            self.keepalive_every
            and _event_ends(self.tail)
            and self.response_started
            and not self.response_done
            and not self.write_paused
            and now - self.last_out >= self.keepalive_every
        ):
            self._keepalive(now)

    def shutdown(self):
        """Graceful stop: idle connections close now, busy ones after their response."""
        self.closing = True
        if self.stream is not None:
            self._stream_end(self.stream)  # a local stream ends when the gateway stops
        if self.active is None and self.current is None and not self.queue:
            self._close()

    def abort(self):
        self._abort()

    # -- writing ----------------------------------------------------------------------

    cdef _flush(self):
        cdef list up_pending = self.up_pending
        if up_pending:
            if self.upstream is not None:
                self.upstream.write(up_pending[0] if len(up_pending) == 1 else _concat(up_pending))
            up_pending.clear()
        cdef list pending = self.pending
        self.head_mark = -1  # what is pending now is written: no taking it back
        if pending:
            if self.transport is not None and not self.closed:
                self.transport.write(pending[0] if len(pending) == 1 else _concat(pending))
            pending.clear()
        if self.close_when_flushed:
            self._close()

    cdef _close_after_flush(self):
        self.close_when_flushed = True
        self._pause(P_DONE)
        if not self.in_feed and not self.pending:
            self._close()

    cdef _close(self):
        if self.closed:
            return
        self.closed = True
        self.ctx.connections.discard(self)
        if self.transport is not None:
            self.transport.close()

    cdef _pause(self, int reason):
        if not self.paused and self.transport is not None and not self.closed:
            self.transport.pause_reading()
            if self.deadline_kind == D_BODY:
                self.deadline = 0.0  # waiting on us is not the client being slow
        self.paused |= reason

    cdef _resume(self, int reason):
        if not self.paused & reason:
            return
        self.paused &= ~reason
        if not self.paused and self.transport is not None and not self.closed:
            self.transport.resume_reading()
            if self.deadline_kind == D_BODY:
                self.deadline = monotonic() + self.ctx.body_timeout

    cdef _log(self, Request req):
        cdef Target target = req.target
        record = {
            "time": round(req.started, 3),
            "client": self.peer.decode("ascii", "replace"),
            "method": req.method.decode("latin-1"),
            "path": req.url.decode("latin-1"),
            "status": req.status,
            "service": target.service_name if target is not None else None,
            "operation": target.name if target is not None else None,
            "duration_ms": round((time.time() - req.started) * 1000, 3),
        }
        self.ctx.log(orjson.dumps(record))


# RFC 3986 reg-name characters, plus ':' for the port and '[' ']' for IP literals.
cdef bytes _HOST_CHARS = (
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=%:[]"
)
cdef bint _HOST_OK[256]
for _c in _HOST_CHARS:
    _HOST_OK[_c] = True


cdef bint _host_is_valid(bytes host):
    """A Host value a router and an upstream read the same way (ASCII, no separators)."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(host)
    cdef Py_ssize_t i, n = len(host), colon = -1
    for i in range(n):
        if not _HOST_OK[p[i]]:
            return False
        if p[i] == 58:  # ':'
            if colon >= 0:
                return host_is_valid(host)  # an IPv6 literal: the full check
            colon = i
        elif p[i] == 91 or p[i] == 93:  # '[' ']'
            return host_is_valid(host)
    if colon >= 0:
        for i in range(colon + 1, n):
            if p[i] < 48 or p[i] > 57:
                return False  # the port is digits
    return True


cdef bytes _concat(list parts):
    """b"".join for a list of bytes objects, without the buffer protocol per item.

    PERF: join asks every item for a buffer (fill + release); our pieces are
    all exact bytes, so their sizes and data are read directly.
    """
    cdef Py_ssize_t i, n = PyList_GET_SIZE(parts), total = 0, size
    cdef object piece
    for i in range(n):
        total += PyBytes_GET_SIZE(<object>PyList_GET_ITEM(parts, i))
    cdef bytes out = PyBytes_FromStringAndSize(NULL, total)
    cdef char* dest = PyBytes_AS_STRING(out)
    for i in range(n):
        piece = <object>PyList_GET_ITEM(parts, i)
        size = PyBytes_GET_SIZE(piece)
        memcpy(dest, PyBytes_AS_STRING(piece), size)
        dest += size
    return out


cdef inline unsigned int _tail(bytes data, unsigned int tail):
    """`tail` (the last 4 bytes written) after `data` is written too."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t i = n - 4 if n > 4 else 0
    while i < n:
        tail = (tail << 8) | p[i]
        i += 1
    return tail


cdef inline bint _event_ends(unsigned int tail):
    """The stream ends with an empty line (any of CRLF, LF, CR): between two events."""
    cdef unsigned int two = tail & 0xFFFF
    cdef unsigned int three = tail & 0xFFFFFF
    return (
        two == 0x0A0A or two == 0x0D0D or tail == 0x0D0A0D0A
        or three == 0x0A0D0A or three == 0x0D0D0A
    )


cdef bytes _local_response(Request req, tuple result, bint keep_alive):
    """A local handler's (status, headers, body) as one response."""
    return response(result[0], result[1], result[2], keep_alive, req.is_head)


@cython.final
cdef class LocalStream:
    """A local handler's response body, written over time: an event stream.

    The handler returns (status, headers, stream); the gateway sends the head
    at once, then each `write` as a chunk, until `close()` or the client goes
    away. `on_close`, when set, is called once when the stream ends for any
    reason (the handler's close, the client leaving, the gateway stopping).
    """

    cdef ClientProtocol _client
    cdef list _early  # written before the head went out
    cdef public bint closed
    cdef public object on_close

    def __init__(self, on_close=None):
        self._early = []
        self.on_close = on_close

    def write(self, bytes data):
        """Send `data` (a whole event, preferably); False when nobody listens any more."""
        if self.closed:
            return False
        if self._client is None:
            self._early.append(data)
            return True
        return self._client._stream_write(self, data)

    def close(self):
        """End the response (the connection stays for the client's next request)."""
        if self.closed:
            return
        if self._client is None:
            self.closed = True  # ended as soon as the head goes out
            return
        self._client._stream_end(self)

    @property
    def open(self):
        return not self.closed

    cdef _ended(self):
        self.closed = True
        self._early = None
        callback = self.on_close
        self.on_close = None
        if callback is not None:
            try:
                callback(self)
            except Exception as exc:
                asyncio.get_event_loop().call_exception_handler(
                    {"message": "a stream's on_close failed", "exception": exc}
                )


cdef inline _keep_line(Request req, bytes name, bytes value):
    """Keep a header line for the upstream, as four pieces joined later."""
    if req.lines is None:
        req.lines = []
    req.lines.append(name)
    req.lines.append(b": ")
    req.lines.append(value)
    req.lines.append(b"\r\n")


cdef object _header_value(list lines, bytes lower_name):
    """The value of the kept header `lower_name`, or None."""
    cdef Py_ssize_t i
    if lines is None:
        return None
    for i in range(0, len(lines), 4):
        name = <bytes>lines[i]
        if len(name) == len(lower_name) and name.lower() == lower_name:
            return lines[i + 2]
    return None


class LocalRequest:
    """A request a local handler answers: its head, whole body and route params."""

    __slots__ = ("body", "ctx", "headers", "host", "method", "params", "path", "peer", "query")

    def __init__(self, bytes method, bytes url, host, list lines, bytes body, params, bytes peer):
        self.method = method.decode("ascii")
        path, _, query = url.partition(b"?")
        self.path = path.decode("latin-1")
        self.query = query.decode("latin-1")
        self.host = host.decode("latin-1") if host is not None else ""
        headers = {}
        if lines is not None:
            for i in range(0, len(lines), 4):
                headers[lines[i].decode("latin-1").lower()] = lines[i + 2].decode("latin-1")
        self.headers = headers
        self.body = body
        self.params = params or {}
        self.peer = peer.decode("ascii")
        self.ctx = None  # the ServerContext it came through (for requests of its own)


_HANDLER_FAILED = (
    500,
    (("Content-Type", "application/problem+json"),),
    b'{"type":"about:blank","title":"Internal Server Error","status":500,'
    b'"detail":"the request handler failed; the gateway logged why"}',
)


cdef bint _replayable(Request req):
    """Safe to resend on a fresh connection: idempotent, or nothing of the body went out."""
    if req.has_body and req.body_sent == 0:
        return True
    return req.method in IDEMPOTENT and not req.replay_lost


cdef inline _keep_for_replay(Request req, bytes piece):
    if req.body_sent <= REPLAY_LIMIT:
        if req.replay is None:
            req.replay = []
        req.replay.append(piece)
    else:
        req.replay_lost = True
        req.replay = None


cdef list _drop_named(list lines, list tokens):
    """Drop the headers named in `Connection` (they are hop-by-hop too)."""
    names = {t for t in tokens if t and t not in (b"close", b"keep-alive", b"upgrade")}
    if not names:
        return lines
    cdef list kept = []
    cdef Py_ssize_t i
    for i in range(0, len(lines), 4):
        if lines[i].lower() not in names:
            kept += lines[i:i + 4]
    return kept


# -- the upstream side ------------------------------------------------------------------


cdef class UpstreamConnection:
    """One keep-alive connection to an upstream: writes a request, parses the response.

    Hop-by-hop headers are dropped here; the framing (Content-Length or
    chunked) is reported and the client side decides how to frame it onward.
    """

    # Per-connection state
    cdef readonly Pool pool
    cdef public object transport
    cdef object parser
    cdef public ClientProtocol client
    cdef public bint closed
    cdef public long long requests  # responses completed on this connection
    cdef public double idle_since
    cdef public double deadline  # read deadline while bound; 0 when idle
    cdef double read_timeout
    cdef bint streaming  # an event stream: no read timeout while it lasts
    cdef public bint reading_paused
    cdef bint tunnel
    # Per-exchange state
    cdef bint head_request
    cdef bint got_response
    cdef long long bound_at_requests
    cdef bytes _reason
    cdef long long _content_length
    cdef bint _chunked
    cdef bint _no_body
    cdef bint _head_done
    cdef list _connection_tokens
    cdef bytes _upgrade_value
    cdef bint _head_pending
    cdef bint _switching
    cdef bint _junk
    cdef bint _bad_coding
    cdef bint _complete_pending  # the response ended in this read; finish after parsing it
    cdef bint _keep_alive
    cdef bint _conn_close  # `Connection: close` alone
    cdef bint _conn_keep_alive  # `Connection: keep-alive` alone
    cdef bint _http11  # the response's version is HTTP/1.1
    cdef bytes _raw  # the bytes read since this response began, until its head is done
    cdef Py_ssize_t _raw_pos  # where the current head starts in _raw (after any 1xx)
    cdef bytes _status_line  # the upstream's status line when it is HTTP/1.1, else None

    def __init__(self, Pool pool):
        self.pool = pool
        self.parser = HttpResponseParser(self)
        self._reset_response()

    cdef _reset_response(self):
        self._status_line = None
        self._reason = b""
        self._content_length = -1
        self._chunked = False
        self._no_body = False
        self._head_done = False
        self._connection_tokens = None
        self._upgrade_value = b""
        self._head_pending = False
        self._switching = False
        self._junk = False
        self._bad_coding = False
        self._complete_pending = False
        self._conn_close = False
        self._conn_keep_alive = False
        self._http11 = False

    # -- used by the client side ------------------------------------------------

    cdef bind(self, ClientProtocol client, bint head_request, double read_timeout, double now):
        self.client = client
        self.head_request = head_request
        self.got_response = False
        self.read_timeout = read_timeout
        self.deadline = now + read_timeout
        self.streaming = False
        self.bound_at_requests = self.requests
        self._raw = None
        self._raw_pos = 0

    cdef write(self, bytes data):
        if self.transport is not None:
            self.transport.write(data)

    cdef stream_mode(self):
        """The response is a long-lived event stream: the read timeout no longer applies."""
        self.streaming = True
        self.deadline = 0.0

    cdef pause_reading(self):
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    cdef resume_reading(self):
        if self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()

    cdef abandon(self):
        """The client went away mid-exchange: this socket is out of sync, drop it."""
        self.client = None
        self.close()

    cpdef close(self):
        if self.transport is not None and not self.closed:
            self.transport.close()

    cdef timed_out(self):
        cdef ClientProtocol client = self.client
        self.client = None
        if client is not None:
            if self.got_response:
                client.response_failed(504, "the upstream stopped sending the response", False)
            else:
                client.response_failed(
                    504, f"no response from {self.pool.name} within {self.read_timeout:g} s", False
                )
            client._flush()
        if self.transport is not None:
            self.transport.abort()

    # -- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, bytes data):
        cdef ClientProtocol client = self.client
        if client is None:
            # Bytes on an idle connection: the upstream is out of sync (or says
            # goodbye with a 408); never hand this socket out again.
            self.close()
            return
        if self.tunnel:
            client.tunnel_data(data)
            return
        self.got_response = True
        if not self.streaming:
            self.deadline = monotonic() + self.read_timeout
        if not self._head_done:
            # Keep the head's bytes until llhttp says it is complete (almost
            # always one read: no copy).
            self._raw = data if self._raw is None else self._raw + data
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade as exc:
            self._switch_to_tunnel(data[exc.args[0]:])
        except HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, _Stop):
                raise
        except HttpParserError as exc:
            self._invalid(f"invalid response from {self.pool.name}: {str(exc) or type(exc).__name__}")
        if self.client is not None:
            if self._complete_pending:
                self._finish(self._keep_alive and not self._junk)
            elif self._head_pending:
                keep_alive = self._response_keeps_alive() and not self._junk
                # llhttp still expects the body a HEAD response never has: a new parser.
                self.parser = HttpResponseParser(self)
                self._finish(keep_alive)
        client._flush()

    def eof_received(self):
        if self.tunnel and self.client is not None:
            if self.client.transport is not None:
                self.client.transport.write_eof()  # pass the half-close on
            return True
        return None  # close our side too

    def connection_lost(self, exc):
        self.closed = True
        self.pool.connection_closed()
        self.parser = None  # a cycle through its callbacks (see ClientProtocol)
        self.transport = None
        cdef ClientProtocol client = self.client
        if client is None:
            return
        self.client = None
        if self.tunnel:
            client.tunnel_closed()
            return
        if self._head_done and self._content_length < 0 and not self._chunked and not self._no_body:
            # A body delimited by the end of the connection (HTTP/1.0 style) ends here.
            client.response_complete()
        elif not self.got_response:
            # Nothing came back: on a reused keep-alive socket this is the
            # classic race with the upstream's idle close, safe to retry.
            client.response_failed(
                502, f"{self.pool.name} closed the connection before responding",
                self.bound_at_requests > 0,
            )
        else:
            client.response_failed(502, f"{self.pool.name} closed the connection mid-response", False)
        client._flush()

    def pause_writing(self):
        if self.client is not None:
            self.client.upstream_write_paused(True)

    def resume_writing(self):
        if self.client is not None:
            self.client.upstream_write_paused(False)

    # -- parser callbacks -----------------------------------------------------------

    def on_headers_complete(self):
        # PERF: no on_header callback: the head is read here, once, from the raw
        # bytes llhttp has just validated (strict: CRLF lines, no folding), and
        # forwarded as a few slices of them; the status code too.
        cdef bytes raw = self._raw
        cdef const char* buf = PyBytes_AS_STRING(raw)
        cdef Py_ssize_t end = _head_end(buf, self._raw_pos, len(raw))
        cdef int status = _status_code(buf, self._raw_pos, end)
        if status < 200 and status != 101:
            # 1xx interim responses (100 Continue, 103 Early Hints) end here; the
            # final response follows on the same parser.
            self._reset_response()
            self._raw_pos = end + 4
            return
        self._head_done = True
        cdef ClientProtocol client = self.client
        if client is None:
            return
        cdef list lines = self._scan_head(raw, self._raw_pos, end, None)
        if self._bad_coding:
            self._invalid(f"{self.pool.name} sent a transfer coding other than chunked")
            raise _Stop()
        if self._connection_tokens:
            drop = {t for t in self._connection_tokens if t and t not in (b"close", b"keep-alive", b"upgrade")}
            if drop:
                lines = self._scan_head(raw, self._raw_pos, end, drop)
        if status == 101:
            self._switching = True
            lines.append(b"Upgrade: " + self._upgrade_value + b"\r\nConnection: upgrade\r\n")
        cdef bint no_body = self.head_request or status == 204 or status == 304 or status == 101
        self._no_body = no_body
        client.response_head(status, self._status_line, self._reason, lines,
                             self._content_length, self._chunked, no_body)
        if self.head_request:
            # llhttp would wait for a HEAD response's Content-Length bytes: end the
            # exchange once this buffer is parsed (see data_received).
            self._head_pending = True

    def on_message_begin(self):
        if self._complete_pending or self._head_pending:
            # A second response to one request: the upstream is out of sync.
            # Stop here; these bytes are never served to anyone.
            self._junk = True
            raise _Stop()

    def on_body(self, bytes data):
        if self._head_pending:
            self._junk = True  # a body after a HEAD response: out of sync
            raise _Stop()
        if self.client is not None:
            self.client.response_body(data)

    def on_message_complete(self):
        if not self._head_done or self._head_pending or self._switching:
            return  # the end of a 1xx, of a HEAD response finished after parsing, or a 101
        # Finished once this read is parsed (see data_received): whatever else
        # the read holds must be checked before the socket is reused.
        self._complete_pending = True
        self._keep_alive = self._response_keeps_alive()

    # -- internals -----------------------------------------------------------------

    cdef bint _response_keeps_alive(self):
        """RFC 9112 §9.3: HTTP/1.1 unless `close`; HTTP/1.0 only with `keep-alive`."""
        cdef list tokens = self._connection_tokens
        if self._http11:
            return not (self._conn_close or (tokens is not None and b"close" in tokens))
        return self._conn_keep_alive or (tokens is not None and b"keep-alive" in tokens)

    cdef list _scan_head(self, bytes raw, Py_ssize_t start, Py_ssize_t end, object drop):
        """The head's header lines to forward, as slices of `raw`, hop-by-hop ones left out.

        Notes the framing (Content-Length, chunked), the Connection tokens and
        the Upgrade value. `end` is where the head's final CRLFCRLF starts.
        PERF: C scanning only; a Python object is made per slice kept and per
        header read (usually three slices and one Content-Length).
        """
        cdef const char* buf = PyBytes_AS_STRING(raw)
        cdef Py_ssize_t stop = end + 2  # one past the last header line's CRLF
        cdef Py_ssize_t eol = _crlf(buf, start, stop)
        cdef Py_ssize_t line, colon, seg, a, b
        cdef const char* found
        cdef int kind
        cdef list out = []
        cdef bytes value
        if eol - start >= 9 and memcmp(buf + start, b"HTTP/1.1 ", 9) == 0:
            self._status_line = buf[start:eol + 2]
            self._http11 = True
        else:
            self._status_line = None
            self._http11 = eol - start >= 8 and memcmp(buf + start, b"HTTP/1.1", 8) == 0
        # The reason phrase follows the second space of the status line.
        found = <const char*>memchr(buf + start, 32, eol - start)
        if found != NULL:
            found = <const char*>memchr(found + 1, 32, eol - (found + 1 - buf))
        self._reason = buf[found + 1 - buf:eol] if found != NULL else b""
        self._content_length = -1
        self._chunked = False
        self._connection_tokens = None
        line = seg = eol + 2
        while line < stop:
            eol = _crlf(buf, line, stop)
            found = <const char*>memchr(buf + line, 58, eol - line)  # ':'
            colon = eol if found == NULL else found - buf
            kind = _header_kind(buf + line, colon - line)
            if kind == HDR_PROXY or kind == HDR_HOST or kind >= HDR_EXPECT:
                kind = HDR_OTHER  # end to end in a response
            if kind == HDR_OTHER and drop is not None and buf[line:colon].lower() in drop:
                kind = HDR_HOP
            if kind != HDR_OTHER:
                # A Content-Length is read and then forwarded as it came.
                if kind == HDR_CONTENT_LENGTH:
                    # llhttp has checked the digits and refused duplicates.
                    self._content_length = 0
                    for a in range(colon + 1, eol):
                        if 48 <= buf[a] <= 57:
                            self._content_length = self._content_length * 10 + (buf[a] - 48)
                elif kind != HDR_HOP:
                    # The value without its optional whitespace (llhttp checked the rest).
                    a = colon + 1
                    b = eol
                    while a < b and (buf[a] == 32 or buf[a] == 9):
                        a += 1
                    while b > a and (buf[b - 1] == 32 or buf[b - 1] == 9):
                        b -= 1
                    value = buf[a:b]
                    if kind == HDR_TRANSFER_ENCODING:
                        # Only plain chunked is forwarded (re-chunked); another coding
                        # would have to reach the client intact: refused, as nginx does.
                        self._chunked = True
                        if value.lower() != b"chunked":
                            self._bad_coding = True
                    elif kind == HDR_CONNECTION:
                        # `keep-alive` / `close` alone name no other header: the usual case.
                        if len(value) == 10 and strncasecmp(value, b"keep-alive", 10) == 0:
                            self._conn_keep_alive = True
                        elif len(value) == 5 and strncasecmp(value, b"close", 5) == 0:
                            self._conn_close = True
                        else:
                            if self._connection_tokens is None:
                                self._connection_tokens = []
                            for token in value.split(b","):
                                self._connection_tokens.append(token.strip().lower())
                    elif kind == HDR_UPGRADE:
                        self._upgrade_value = value
                if kind != HDR_CONTENT_LENGTH:
                    if line > seg:
                        out.append(buf[seg:line])
                    seg = eol + 2
            line = eol + 2
        if stop > seg:
            out.append(buf[seg:stop])
        return out

    cdef _finish(self, bint keep_alive):
        cdef ClientProtocol client = self.client
        self.client = None
        self.requests += 1
        self.deadline = 0.0
        self._reset_response()
        self._raw = None
        self._raw_pos = 0
        self.resume_reading()
        # Back to the pool first: the client's next pipelined request may want it.
        if keep_alive and self.requests < self.pool.max_requests and not self.closed:
            self.pool.release(self)
        else:
            self.close()
        if client is not None:
            client.response_complete()

    cdef _invalid(self, str detail):
        cdef ClientProtocol client = self.client
        self.client = None
        if client is not None:
            client.response_failed(502, detail, False)
        if self.transport is not None:
            self.transport.abort()

    cdef _switch_to_tunnel(self, bytes rest):
        cdef ClientProtocol client = self.client
        if client is None or not self._head_done:
            self._invalid(f"{self.pool.name} switched protocols unasked")
            return
        self.tunnel = True
        self.deadline = 0.0
        if rest:
            client.tunnel_data(rest)


cdef enum:
    # What a header is to the proxy (see _header_kind); each direction decides
    # what to do with each kind.
    HDR_OTHER = 0  # end to end: forwarded as is
    HDR_HOP = 1  # hop-by-hop: Keep-Alive, TE, Trailer, Proxy-Connection/-Authenticate/-Authorization
    HDR_PROXY = 2  # another Proxy-* field
    HDR_HOST = 3
    HDR_CONNECTION = 4
    HDR_CONTENT_LENGTH = 5
    HDR_TRANSFER_ENCODING = 6
    HDR_UPGRADE = 7
    HDR_EXPECT = 8
    HDR_FORWARDED_FOR = 9
    HDR_FORWARDED_OURS = 10  # X-Forwarded-Proto, X-Forwarded-Host: set by the gateway
    HDR_VIA = 11


cdef inline int _header_kind(const char* name, Py_ssize_t n):
    """Classify a header name, case-insensitively, without making objects."""
    cdef char first
    if n < 2:
        return HDR_OTHER
    first = name[0] | 0x20
    if first == 99:  # c
        if n == 10 and strncasecmp(name, b"connection", 10) == 0:
            return HDR_CONNECTION
        if n == 14 and strncasecmp(name, b"content-length", 14) == 0:
            return HDR_CONTENT_LENGTH
    elif first == 104:  # h
        if n == 4 and strncasecmp(name, b"host", 4) == 0:
            return HDR_HOST
    elif first == 116:  # t
        if n == 2 and (name[1] | 0x20) == 101:
            return HDR_HOP  # TE
        if n == 7 and strncasecmp(name, b"trailer", 7) == 0:
            return HDR_HOP
        if n == 17 and strncasecmp(name, b"transfer-encoding", 17) == 0:
            return HDR_TRANSFER_ENCODING
    elif first == 107:  # k
        if n == 10 and strncasecmp(name, b"keep-alive", 10) == 0:
            return HDR_HOP
    elif first == 112:  # p
        if n > 6 and strncasecmp(name, b"proxy-", 6) == 0:
            if (
                (n == 16 and strncasecmp(name + 6, b"connection", 10) == 0)
                or (n == 18 and strncasecmp(name + 6, b"authenticate", 12) == 0)
                or (n == 19 and strncasecmp(name + 6, b"authorization", 13) == 0)
            ):
                return HDR_HOP
            return HDR_PROXY
    elif first == 117:  # u
        if n == 7 and strncasecmp(name, b"upgrade", 7) == 0:
            return HDR_UPGRADE
    elif first == 101:  # e
        if n == 6 and strncasecmp(name, b"expect", 6) == 0:
            return HDR_EXPECT
    elif first == 120:  # x
        if n == 15 and strncasecmp(name, b"x-forwarded-for", 15) == 0:
            return HDR_FORWARDED_FOR
        if (n == 16 and strncasecmp(name, b"x-forwarded-host", 16) == 0) or (
            n == 17 and strncasecmp(name, b"x-forwarded-proto", 17) == 0
        ):
            return HDR_FORWARDED_OURS
    elif first == 118:  # v
        if n == 3 and strncasecmp(name, b"via", 3) == 0:
            return HDR_VIA
    return HDR_OTHER


cdef inline int _status_code(const char* buf, Py_ssize_t pos, Py_ssize_t end):
    """The three digits after the version of a status line llhttp has validated."""
    cdef const char* space = <const char*>memchr(buf + pos, 32, end - pos)
    if space == NULL:
        return 0
    while space[0] == 32:
        space += 1
    return (space[0] - 48) * 100 + (space[1] - 48) * 10 + (space[2] - 48)


cdef inline Py_ssize_t _head_end(const char* buf, Py_ssize_t pos, Py_ssize_t n):
    """Where the first CRLFCRLF at or after `pos` starts (llhttp has seen it: it is there)."""
    cdef const char* found
    while pos + 3 < n:
        found = <const char*>memchr(buf + pos, 13, n - pos - 3)
        if found == NULL:
            break
        pos = found - buf
        if buf[pos + 1] == 10 and buf[pos + 2] == 13 and buf[pos + 3] == 10:
            return pos
        pos += 1
    return n


cdef inline Py_ssize_t _crlf(const char* buf, Py_ssize_t pos, Py_ssize_t stop):
    """The index of the next CR (of a CRLF: llhttp allows no bare CR) in buf[pos:stop]."""
    cdef const char* found = <const char*>memchr(buf + pos, 13, stop - pos)
    return stop if found == NULL else found - buf


# -- the pool -----------------------------------------------------------------------------


cdef class Pool:
    """A keep-alive connection pool per upstream target (scheme, host, port).

    Idle connections are a LIFO stack (the warmest socket first, the coldest
    ages out); waiters are FIFO. Acquiring an idle connection is a C call;
    only opening a new one awaits (`loop.create_connection`), on its own task.
    """

    cdef object _loop
    cdef readonly object upstream
    cdef readonly object config
    cdef readonly Clock clock
    cdef readonly bytes upstream_authority
    cdef readonly str name
    cdef list _idle
    cdef object _waiters  # deque of (client, deadline, connect_timeout)
    cdef readonly long long open_count  # open or opening connections, idle ones included
    cdef long long max_connections
    cdef long long max_idle
    cdef readonly long long max_requests
    cdef double idle_timeout
    cdef double wait_timeout
    cdef set _tasks
    cdef bint _closed
    cdef bint _retired
    cdef object _ssl
    cdef readonly double down_until  # skipped by its service's round robin until then
    cdef double fail_timeout

    def __init__(self, loop, upstream, config, Clock clock):
        self._loop = loop
        self.upstream = upstream
        self.config = config
        self.clock = clock
        self.upstream_authority = upstream.authority.encode("ascii")
        self.name = f"{upstream.scheme}://{upstream.authority}"
        self._idle = []
        self._waiters = deque()
        self.max_connections = config.max_connections
        self.max_idle = config.max_idle
        self.max_requests = config.max_requests
        self.idle_timeout = config.idle_timeout
        self.wait_timeout = config.wait_timeout
        self.fail_timeout = getattr(config, "fail_timeout", 10.0)
        self.down_until = 0.0
        self._tasks = set()
        self._ssl = ssl.create_default_context() if upstream.scheme == "https" else None

    # -- the hot path ---------------------------------------------------------

    cpdef UpstreamConnection acquire(self, ClientProtocol client, double connect_timeout):
        """An idle connection now, or None: `client.upstream_attached` comes later."""
        cdef UpstreamConnection conn
        cdef list idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
            # Closed while idle: connection_lost already took it off the count.
        if self.open_count < self.max_connections:
            self._open(client, connect_timeout)
        else:
            self._waiters.append((client, monotonic() + self.wait_timeout, connect_timeout))
        return None

    cpdef release(self, UpstreamConnection conn):
        """Take back a connection whose exchange ended cleanly at a message boundary."""
        cdef ClientProtocol client
        if self._closed or conn.closed:
            conn.close()
            return
        waiters = self._waiters
        while waiters:
            client, _deadline, _timeout = waiters.popleft()
            if not (client.closed or not client.waiting):
                client.upstream_attached(conn)
                return
        if len(self._idle) < self.max_idle and not self._retired:
            conn.idle_since = monotonic()
            self._idle.append(conn)
        else:
            conn.close()

    cpdef connection_closed(self):
        """Called once for every connection opened, when its socket is gone (or never came)."""
        cdef ClientProtocol client
        self.open_count -= 1
        # A slot freed: the first live waiter gets a fresh connection.
        waiters = self._waiters
        while waiters and self.open_count < self.max_connections and not self._closed:
            client, _deadline, timeout = waiters.popleft()
            if not (client.closed or not client.waiting):
                self._open(client, timeout)
                break

    cpdef mark_down(self):
        """A connect failed: let other replicas take the traffic for a while."""
        if self.fail_timeout > 0:
            self.down_until = monotonic() + self.fail_timeout

    cpdef open_fresh(self, ClientProtocol client, double connect_timeout):
        """A new connection for a retry, never a reused one (the pool's limit still holds)."""
        if self.open_count < self.max_connections:
            self._open(client, connect_timeout)
        else:
            self._waiters.append((client, monotonic() + self.wait_timeout, connect_timeout))

    # -- slow paths -------------------------------------------------------------

    cdef _open(self, ClientProtocol client, double connect_timeout):
        self.open_count += 1
        task = self._loop.create_task(self._connect(client, connect_timeout))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, ClientProtocol client, double timeout):
        upstream = self.upstream
        try:
            _transport, conn = await asyncio.wait_for(
                self._loop.create_connection(
                    lambda: UpstreamConnection(self),
                    upstream.host,
                    upstream.port,
                    ssl=self._ssl,
                    server_hostname=upstream.host if self._ssl else None,
                ),
                timeout,
            )
        except (TimeoutError, asyncio.TimeoutError):
            self.connection_closed()
            if not (client.closed or not client.waiting):
                client.connect_failed(self, 504, f"connecting to {self.name} timed out")
            return
        except OSError as exc:
            self.connection_closed()
            if not (client.closed or not client.waiting):
                reason = exc.strerror or str(exc) or type(exc).__name__
                client.connect_failed(self, 502, f"can not connect to {self.name}: {reason}")
            return
        except asyncio.CancelledError:
            self.connection_closed()
            raise
        self.down_until = 0.0
        if client.closed or not client.waiting or self._closed:
            self.release(conn)
        else:
            client.upstream_attached(conn)

    @property
    def idle_count(self):
        return len(self._idle)

    @property
    def waiting_count(self):
        return len(self._waiters)

    def sweep(self, double now):
        """Close idle connections past their idle timeout; 503 waiters past theirs."""
        cdef list idle = self._idle
        cdef Py_ssize_t expired = 0
        cdef double limit
        cdef UpstreamConnection conn
        cdef ClientProtocol client
        if idle:
            limit = now - self.idle_timeout
            # The stack's bottom is the coldest: expired ones are a prefix.
            while expired < len(idle) and (<UpstreamConnection>idle[expired]).idle_since <= limit:
                expired += 1
            if expired:
                for conn in idle[:expired]:
                    conn.close()
                del idle[:expired]
        waiters = self._waiters
        while waiters:
            client, deadline, _timeout = waiters[0]
            if not (client.closed or not client.waiting) and deadline > now:
                break
            waiters.popleft()
            if not (client.closed or not client.waiting):
                client.upstream_unavailable(
                    503, f"no connection to {self.name} came free in time (pool full)"
                )

    def retire(self):
        """No service uses this upstream any more: keep no idle connection.

        Requests routed before the change still get connections (a retired
        pool keeps working); each one closes when released.
        """
        cdef UpstreamConnection conn
        self._retired = True
        for conn in self._idle:
            conn.close()
        self._idle.clear()

    def close(self):
        """Close idle connections and refuse new work; busy ones close when released."""
        cdef UpstreamConnection conn
        cdef ClientProtocol client
        self._closed = True
        for conn in self._idle:
            conn.close()
        self._idle.clear()
        for task in self._tasks:
            task.cancel()
        waiters = self._waiters
        while waiters:
            client, _deadline, _timeout = waiters.popleft()
            if not (client.closed or not client.waiting):
                client.upstream_unavailable(503, "the gateway is shutting down")
