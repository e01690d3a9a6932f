# -- the client side: one protocol object per connection (client.pxd) --------------------


cdef class ServerContext:
    """What every client connection of one gateway shares."""

    def __init__(self, Clock clock, limits, snapshot):
        self.clock = clock
        self.limits = limits
        self.snapshot = snapshot
        self.router = getattr(snapshot, "router", None)
        self.tenant_header = getattr(snapshot, "tenant_header", None)
        self.unrouted_chain = getattr(snapshot, "unrouted_chain", None)
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

    def __cinit__(self):
        self.state = {}

    def unrouted_counts(self):
        """Requests no route took, by status class (none, 1xx..5xx): for the metrics."""
        return [self.unrouted[i] for i in range(6)]

    def swap(self, snapshot):
        """Route every request from now on with `snapshot` (in-flight ones keep theirs)."""
        self.tenant_header = getattr(snapshot, "tenant_header", None)
        self.unrouted_chain = getattr(snapshot, "unrouted_chain", None)
        self.router = getattr(snapshot, "router", None)
        self.snapshot = snapshot

    def sweep(self, double now):
        cdef ClientProtocol conn
        for conn in tuple(self.connections):
            conn.check_deadlines(now)


cdef class ClientProtocol:
    """The client-side HTTP/1.1 protocol: parse, route, run the chain, proxy, stream back.

    - Driven by llhttp's callbacks only (C functions: parse.pxi): no task or future
      per request, no Python call per header.
    - Requests are answered strictly in order; a pipelined request waits in
      `queue` until the one before it is done.
    - Writes made while handling one read are corked into `pending` (client)
      and `up_pending` (upstream) and written once at the end of the read.
    - Flow control is linked across the two sockets: a full upstream write
      buffer pauses reading from the client and a full client write buffer
      pauses reading from the upstream, so memory per connection stays bounded.
    - Deadlines are floats against `monotonic()`, checked by one periodic sweep.
    """

    def __init__(self, ServerContext ctx, bytes scheme):
        self.ctx = ctx
        self.clock = ctx.clock
        self.forwarded_proto = b"X-Forwarded-Proto: " + scheme + b"\r\n"
        self.forwarded_host = self.forwarded_proto + b"X-Forwarded-Host: "
        self.peer = b""
        self.pending = []
        self.up_pending = []
        self.queue = None  # a deque once a request is pipelined (most connections never)

    def __cinit__(self):
        self.out_fd = -1  # (until connection_made: through the transport)
        # In __cinit__: a ClientProtocol however made has its parser ready.
        self.parser = malloc(sizeof(llhttp_t))
        if self.parser == NULL:
            raise MemoryError()
        llhttp_init(<llhttp_t*>self.parser, HTTP_REQUEST, &_REQUEST_SETTINGS)
        (<llhttp_t*>self.parser).data = <void*>self  # borrowed: `self` owns the parser

    def __dealloc__(self):
        _drop_kept(self)
        free(self.parser)
        free(self.tok)

    # -- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        self.out_fd = out_fd(transport)
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
        # Once per connection, never per request: the address it came in on
        # (MCP endpoints guard loopback ones against DNS rebinding).
        self.loopback = _is_loopback(transport.get_extra_info("sockname"))
        self._set_deadline(D_IDLE, ctx.header_timeout)

    def data_received(self, bytes data):
        self._received(data)
        self.stream_reads += 1
        if (
            self.stream_reads == 2 and self.reads is None and not self.paused
            and not self.closed and self.transport is not None and self.out_fd >= 0
        ):
            # (out_fd < 0: no socket of its own to read, e.g. an MCP tool's loopback
            # request, fed by hand; then no running loop is asked for either)
            self.reads = take_reads(
                self.transport, self.out_fd, asyncio.get_running_loop(), self._readable
            )

    @cython.binding(False)
    @cython.always_allow_keywords(False)
    def _readable(self):
        # The loop found our duplicate of the socket readable (reads.pxi). PERF: a
        # builtin method taking no arguments (METH_NOARGS, no binding): the loop calls
        # it once a wake-up, and a cyfunction's call through its keyword-taking entry
        # cost ~80 instructions more (callgrind).
        self._read_once()

    cdef _read_once(self):
        cdef Py_ssize_t n
        if self.reads is None:
            return
        n = read_some(self.reads.fd, _client_read, READ_BUFFER)
        try:
            if n > 0:
                self._received(PyBytes_FromStringAndSize(_client_read, n))
            elif n == 0:
                self._release_reads()
                if not self.eof_received() and self.transport is not None:
                    self._close()
            elif n == -2:
                self._release_reads()
                self._abort()  # (a reset: connection_lost follows, as from the transport's read)
        except BaseException:
            # As the transport does when data_received raises: the connection goes.
            self._release_reads()
            self._abort()
            raise

    cdef _reading(self, bint on):
        """Resume or pause reading: ours (reads.pxi) once taken, else the transport's."""
        if self.reads is not None:
            if on:
                self.reads.resume()
            else:
                self.reads.pause()
        elif on:
            self.transport.resume_reading()
        else:
            self.transport.pause_reading()

    cdef _release_reads(self):
        """Our reads end: the connection closes."""
        if self.reads is not None:
            self.reads.release()
            self.reads = None

    cdef _received(self, bytes data):
        # PERF: a bytes per read, on purpose. Read into the loop's reused buffer instead
        # (an asyncio.BufferedProtocol, as plain upstream connections are), a request
        # costs more, not less (bench/load/instructions.py, callgrind, issue #18):
        # uvloop's get_buffer/buffer_updated calls outweigh the small bytes they spare
        # (plain get-1k +450 instructions); under TLS they spare the SSL transport's
        # 256 KiB bytes per read but add as much (get-1k -180, post-1k +200). Should it
        # be tried again: get_buffer must return a memoryview (asyncio's SSL transport
        # reads a second record into `buf[offset:]`), and what must outlive the read
        # is copied (tests/test_dataplane_client_read_buffer.py has the cases).
        if self.tunnel:
            if self.upstream is not None:
                self.upstream.write([data])
            return
        if self.paused & P_DONE:
            return  # rejected or closing: the rest of the stream is not read
        cdef bint ongoing = self.deadline_kind == D_HEAD  # a head began in an earlier read
        cdef llhttp_errno_t err
        self.began_in_feed = False
        self.feed_accounted = 0
        self.in_feed = True
        try:
            err = llhttp_execute(<llhttp_t*>self.parser, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
            if err != HPE_OK:
                self._parse_failed(err, data)
        finally:
            self.in_feed = False
        if self.deadline_kind == D_HEAD and not self.paused & P_DONE:
            # A head still incomplete after this read: count what of this read is
            # the head's (all of it, or what the callbacks did not give to earlier
            # messages). The callbacks check the URL and header fields as they
            # come; this catches the rest (whitespace llhttp skips without a span).
            if ongoing and not self.began_in_feed:
                self.head_bytes += len(data)
            elif len(data) > self.feed_accounted:
                self.head_bytes += len(data) - self.feed_accounted
            if self.head_bytes > self.ctx.max_header_bytes + self.ctx.max_url_bytes:
                self._reject_current(431, "the request head is too large", ())
        self._flush()

    cdef _parse_failed(self, int err, bytes data):
        """llhttp_execute stopped before the end of `data`: an upgrade, a callback's
        refusal (a limit, a bad header: `parse_error`), or bytes that are not HTTP."""
        cdef Py_ssize_t at
        if err == HPE_PAUSED_UPGRADE and (<llhttp_t*>self.parser).upgrade:
            # The head of an Upgrade request ended; what follows is not HTTP/1.1.
            at = llhttp_get_error_pos(<llhttp_t*>self.parser) - PyBytes_AS_STRING(data)
            llhttp_resume_after_upgrade(<llhttp_t*>self.parser)
            self._upgrade_requested(data[at:])
            return
        exc = self.parse_error
        if exc is not None:
            self.parse_error = None
            if isinstance(exc, _Reject):
                self._reject_current(exc.status, exc.detail, exc.headers)
                return
            raise exc  # a bug in a callback: the loop's exception handler logs it
        self._reject_current(
            400, "malformed request: " + _parse_error_detail(<llhttp_t*>self.parser, <llhttp_errno_t>err), ()
        )

    def eof_received(self):
        cdef UpstreamConnection up = self.upstream
        if self.tunnel:
            self.tunnel_eof = True
            if up is not None and up.transport is not None:
                if up.tunnel_eof:
                    # Both ends have finished sending: nothing can flow either way, so
                    # the tunnel ends (our close takes the upstream's along), as
                    # nginx ends an upgraded connection. Left half-open on both
                    # sides, it would hold two sockets until the gateway stops.
                    return None
                if not up.transport.can_write_eof():
                    # A TLS upstream can not be half-closed: the tunnel ends (our
                    # close takes the upstream's along, after its writes).
                    return None
                # Pass the half-close on; the other direction may still flow.
                up.out_fd = -1  # (a write after write_eof is the transport's error)
                up.transport.write_eof()
            return True
        # The client finished sending; answers still in flight may be written.
        cdef Request current = self.current
        if current is not None:
            # A request cut short by the client's end of stream can never end: it
            # waited out header_timeout or body_timeout (holding the upstream
            # connection its partial body went to), then got a 408 it did not cause.
            if current.method is None:
                # (its head unfinished) Nothing to answer, as nginx answers nothing.
                self.current = None
                self._clear_deadline()
                self._pause(P_DONE)
            elif not current.response_started:
                # Its body unfinished: 400 and close (nginx: "client prematurely
                # closed connection"); what is answered before it still is.
                self._reject_current(
                    400, "the client ended its stream before the request body", ()
                )
                self._flush()
                return True  # (closed by us once what is pending is written)
            elif current.response_done:
                # Answered already (a 404 whose body was being read to be dropped).
                self._close_after_flush()
                return True
        if self.active is None and self.current is None and not self.queue:
            return None
        if self._streaming_without_end():
            # An event stream being written would run until its next event found the
            # socket gone, keeping the upstream stream and a drain waiting: the client
            # left, so it ends now (nginx: "client prematurely closed connection").
            # Other answers in flight are still written to a half-closed client.
            self.out_fd = -1
            self.transport.abort()
            return None
        self.closing = True
        return True

    cdef bint _streaming_without_end(self):
        """The active response is an event stream being written (`stream_events` ran):
        it ends when a side ends it, not at a length."""
        cdef Request req = self.active
        return (
            req is not None and req.response_started and not req.response_done
            and req.last_out != 0.0
        )

    def connection_lost(self, exc):
        cdef UpstreamConnection upstream = self.upstream
        cdef Request active = self.active
        cdef Request waiting
        self._release_reads()
        for waiting in (active, self.current, *(self.queue or ())):
            if waiting is not None and waiting.step_waiter is not None:
                waiting.step_waiter.cancel()  # nobody is left to answer
                waiting.step_waiter = None
        self.closed = True
        self.out_fd = -1
        self.ctx.connections.discard(self)
        self.upstream = None
        if self.retry_timer is not None:
            self.retry_timer.cancel()  # a retry waiting out its back-off: nobody to answer
            self.retry_timer = None
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
        if active is not None and not active.ended:
            if not active.response_done and not self.tunnel:
                active.status = 499  # the client left before its answer (nginx's code)
            self._end(active)
        # The transport holds the protocol: a cycle. Broken here, a closed
        # connection is freed by reference counting, not left for the cycle GC
        # (which a reload's gc.freeze() would otherwise turn into a leak). The
        # parser is a C struct inside the protocol: it holds nothing.
        self.parse_error = None
        self.transport = None

    def pause_writing(self):
        self.write_paused = True
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_writing(self):
        self.write_paused = False
        if self.upstream is not None:
            self.upstream.resume_reading()

    # -- parser callbacks (parse.pxi's C functions call these) -------------------------

    cdef int _message_begin(self) except -1:
        cdef Request req = Request.__new__(Request)
        self.current = req
        if self.nkept:
            _drop_kept(self)  # (the last head was refused before its end)
        self.tok_len = 0
        self.head_bytes = 0
        self.began_in_feed = True
        self.deadline = monotonic() + self.ctx.header_timeout
        self.deadline_kind = D_HEAD
        req.client_ip = self.peer  # until a rewrite step (real-ip) finds the client behind it
        return 0

    cdef int _header(self) except -1:
        """A header field is whole: its name is tok[:name_len], its value the rest
        (llhttp has dropped the OWS before it, not after it)."""
        cdef Request req = self.current
        cdef ServerContext ctx = self.ctx
        cdef const char* name = self.tok
        cdef Py_ssize_t name_len = self.name_len
        cdef const char* value = self.tok + name_len
        cdef Py_ssize_t value_len = self.tok_len - name_len
        cdef Py_ssize_t i
        cdef long long number
        self.tok_len = 0
        req.header_count += 1
        req.header_bytes += name_len + value_len + 4
        self.feed_accounted += 4  # the colon, a space, CRLF (the spans were counted as they came)
        if req.header_count > ctx.max_headers:
            raise _Reject(431, f"more than {ctx.max_headers} header fields")
        if req.header_bytes > ctx.max_header_bytes:
            raise _Reject(
                431,
                f"the header fields exceed {ctx.max_header_bytes} bytes"
                f" ({req.header_bytes} so far)",
            )
        if req.has_body:
            return 0  # trailers after a chunked body: counted, not forwarded
        cdef int kind = _header_kind(name, name_len)
        if kind == HDR_OTHER:
            _keep_header(self, name, name_len, value, value_len)
            return 0
        if kind == HDR_HOST or kind == HDR_CONTENT_LENGTH or kind == HDR_EXPECT:
            while value_len and (value[value_len - 1] == 32 or value[value_len - 1] == 9):
                value_len -= 1  # trailing OWS is not part of the value
        if kind == HDR_HOST:
            if req.host is not None:
                raise _Reject(400, "more than one Host header field")
            req.host = _shared_value(name, name_len, value, value_len)
            return 0
        if kind == HDR_CONTENT_LENGTH:
            if req.content_length >= 0:
                raise _Reject(400, "more than one Content-Length header field")
            if value_len == 0 or value_len > 18:
                raise _Reject(400, "Content-Length is not a decimal number")
            number = 0
            for i in range(value_len):
                if value[i] < 48 or value[i] > 57:
                    raise _Reject(400, "Content-Length is not a decimal number")
                number = number * 10 + (value[i] - 48)
            req.content_length = number
            _keep_header(self, name, name_len, value, value_len)
            return 0
        cdef bytes text = value[:value_len]
        if kind == HDR_TRANSFER_ENCODING:
            # Only exactly `chunked`: anything else (a list, another coding, a
            # repeated field) could be read two ways by two parsers.
            if req.chunked or text.strip().lower() != b"chunked":
                raise _Reject(400, "the only Transfer-Encoding accepted is a single 'chunked'")
            req.chunked = True
        elif kind == HDR_CONNECTION:
            if req.connection_tokens is None:
                req.connection_tokens = []
            for token in text.split(b","):
                req.connection_tokens.append(token.strip().lower())
        elif kind == HDR_UPGRADE:
            req.upgrade = text
        elif kind == HDR_EXPECT:
            if text.lower() != b"100-continue":
                raise _Reject(417, "the only expectation supported is 100-continue")
            req.expect_continue = True
        elif kind == HDR_FORWARDED_FOR:
            req.forwarded_for = text if req.forwarded_for is None else req.forwarded_for + b", " + text
        elif kind == HDR_VIA:
            req.via = text if req.via is None else req.via + b", " + text
        # else hop-by-hop, any other Proxy-*, or ours to set (X-Forwarded-Proto/-Host)
        return 0

    cdef int _headers_complete(self) except -1:
        cdef Request req = self.current
        cdef ServerContext ctx = self.ctx
        _take_kept(self, req)
        cdef llhttp_t* parser = <llhttp_t*>self.parser
        cdef object name = <object>PyList_GET_ITEM(_METHODS, parser.method)
        if name is None:
            raise _Reject(400, "malformed request: a method llhttp has no name for")
        cdef bytes method = <bytes>name
        req.method = method
        self.feed_accounted += len(method) + 13  # the request line's rest and the final CRLF
        req.keep_alive = llhttp_should_keep_alive(parser)
        req.http11 = parser.http_major == 1 and parser.http_minor == 1
        if parser.http_major != 1:
            # llhttp reads "HTTP/2.0" (or 0.9, 3.0) in a request line; served, it got
            # HTTP/1.0's rules. nginx answers 505 (an h2 client speaks its preface).
            raise _Reject(
                505, f"HTTP/{parser.http_major}.{parser.http_minor} is not served here: HTTP/1.1 or 1.0"
            )
        req.is_head = parser.method == HTTP_HEAD
        self.deadline_kind = D_NONE
        self.deadline = 0.0
        if req.content_length >= 0 and req.chunked:
            raise _Reject(400, "both Content-Length and Transfer-Encoding")
        if req.chunked and not req.http11:
            raise _Reject(400, "Transfer-Encoding in an HTTP/1.0 request")
        req.has_body = req.chunked or req.content_length > 0
        req.limit = ctx.max_body_bytes
        if parser.method == HTTP_CONNECT:
            raise _Reject(501, "CONNECT is not supported: this is a reverse proxy")
        if req.upgrade is not None:
            if parser.upgrade:
                req.keep_alive = False  # unless it becomes a tunnel, close after the answer
            else:
                req.upgrade = None  # Upgrade without `Connection: upgrade` asks for nothing
        self._route(req)
        if req.via is not None and req.local is None:
            self._refuse_loop(req)
        if req.chain is None:
            if ctx.unrouted_chain is not None:
                req.t0 = monotonic()  # no route took it: the clock of the gateway's log steps
        elif req.local is None and req.chain.request_steps is not None:
            self._run_request_steps(req, 0)
        if req.content_length > req.limit:
            raise _Reject(413, f"the body is larger than {req.limit} bytes")
        if req.has_body:
            self._set_deadline(D_BODY, ctx.body_timeout)
        if req.local is not None:
            req.discard = True
        elif req.held or req.target.handler is not None or req.body_step is not None:
            req.local_body = True
        else:
            req.head = self._upstream_head(req)
        self._enqueue(req)
        return 0

    cdef int _body(self, const char* at, size_t n) except -1:
        cdef Request req = self.current
        self.feed_accounted += n
        req.body_bytes += n
        if req.body_bytes > req.limit:
            raise _Reject(413, f"the body is larger than {req.limit} bytes")
        self.deadline = monotonic() + self.ctx.body_timeout
        if req.discard:
            return 0  # no bytes object made for a body that is dropped
        if req.chunked and not req.local_body:
            self._body_piece(req, _chunk_frame(at, n))
        elif req.local_body and req.body_bytes == <long long>n and req.content_length == <long long>n:
            self._whole_body(req, at[:n])
        else:
            self._body_piece(req, at[:n])
        return 0

    cdef _whole_body(self, Request req, bytes data):
        """The body of a request read whole came in one piece (most small bodies do).
        When its only body step passes it at once (a valid body: `Step.body_passes`),
        it is kept as it is for the message's end (llhttp's next callback), which
        sends it on as a body no step reads goes (`_send_passed`); else it is
        gathered for the steps as any."""
        cdef int passed = 0
        if (req is self.active and not self.waiting and not req.held
                and req.body_step is not None and req.body_more is None
                and req.target.handler is None):
            try:
                passed = req.body_step.body_passes(self, req, data, req.body_state)
            except Exception:
                passed = 0  # on_body meets it at the message's end: the step's failure
        if passed:
            req.body_step = None
            req.body_state = None
            req.local_body = False
            req.passed_body = data
        else:
            self._body_piece(req, data)

    cdef _send_passed(self, Request req):
        """A body passed on arrival, at its message's end: the head to the connection
        the pool gives, the body after it. Not at its arrival: an answer `_acquire`
        gives at once (a circuit breaker's 503) must find the request read whole, or
        it closes the connection (`keeps_alive`)."""
        cdef bytes data = req.passed_body
        req.passed_body = None
        req.head = self._upstream_head(req)
        self._acquire(req)
        self._body_piece(req, data)

    cdef int _message_complete(self) except -1:
        cdef Request req = self.current
        self.current = None
        req.complete = True
        if self.tok_cap > TOK_KEEP:
            # A head with a long URL or header grew the buffer: not kept while idle.
            free(self.tok)
            self.tok = NULL
            self.tok_cap = 0
        if self.deadline_kind == D_BODY:
            self._clear_deadline()
        if req.chunked and not req.discard and not req.local_body:
            self._body_piece(req, _FINAL_CHUNK)
        if req is self.active:
            if req.response_done:
                self._request_done()
            elif req.passed_body is not None:
                self._send_passed(req)
            elif req.local_body and not self.waiting and not req.held:
                self._body_complete(req)
        return 0

    # -- routing -------------------------------------------------------------------------

    cdef _refuse_loop(self, Request req):
        """508 for a request that came round through us LOOP_HOPS times (its Via)."""
        cdef Py_ssize_t hops = req.via.count(_VIA_NAME)
        if hops >= LOOP_HOPS:
            req.local = problem(
                508,
                f"this request came through runmcp-fast {hops} times (its Via header): an"
                " upstream URL leads back to a gateway; check that none names a gateway's"
                " own listener",
            )

    cdef _route(self, Request req):
        cdef bytes url = req.url
        host = req.host
        if PyBytes_GET_SIZE(url) == 0 or PyBytes_AS_STRING(url)[0] != 47:  # "/"; PERF: no slice
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
        router = ctx.router
        if ctx.tenant_header is not None:
            tenant = _header_value(req.lines, ctx.tenant_header)
            if tenant is not None:
                router = ctx.snapshot.tenant_routers.get(tenant.strip().lower())
                if router is None:
                    req.local = problem(
                        404, "no tenant by the name the tenant header gives",
                        keep_alive=req.keep_alive, head_only=req.is_head,
                    )
                    return
        # PERF: the router's C entry point: no Python call, no Match object; the
        # params dict is built below only for a route that uses it.
        cdef RouteHit hit
        found = match_hit(router, host, req.method, url, &hit)
        if found is None:
            if req.method == b"OPTIONS":
                found = self._preflight(req, router, host, url, True, &hit)
            if found is None:
                self._route_miss(req, router, host, url)
                return
        elif req.method == b"OPTIONS":
            self._preflight(req, router, host, url, False, NULL)
        cdef Target target = <object>hit.target
        cdef Dispatch dispatch = target.dispatch
        cdef Py_ssize_t chosen = 0
        if dispatch is not None:
            # A route of several operations (`/#Action=X`): the request's query and
            # headers pick one. Every other route pays this one pointer check.
            chosen = dispatch.pick(url, req.lines)
            if chosen < 0:
                req.local = problem(
                    404, dispatch.detail, keep_alive=req.keep_alive, head_only=req.is_head
                )
                return
            target = <Target>dispatch.targets[chosen]
        req.target = target
        req.chain = target.chain
        req.limit = target.max_body
        req.url = url
        if target.wants_params:
            # PERF: kept for `get_params()`; the contract's C check reads the values
            # from the buffer, so a valid request of a route no step reads the params
            # of never makes the dict (~1.6k instructions).
            req.route_buf = found
            req.route_hit = hit
            req.route_names = (
                dispatch.param_names[chosen] if dispatch is not None else None
            )

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

    cdef object _preflight(self, Request req, router, host, bytes url, bint missed, RouteHit* hit):
        """An OPTIONS request with Origin and Access-Control-Request-Method is a CORS
        preflight: `req.preflight`, and the methods its path has in `req.allowed`.

        When its path has no OPTIONS (`missed`), it is routed as the method it asks
        about, so that route's rewrite and access steps (cors) can answer it; if
        none does, it gets the 405 it always got (see _run_request_steps). It is
        never forwarded as that method. The match (its buffer, `hit` filled), or None:
        a 405 (or 404) now.
        Preflights only: other requests pay the method comparison.
        """
        cdef list lines = req.lines
        if _header_value(lines, b"origin") is None:
            return None
        asked = _header_value(lines, b"access-control-request-method")
        if asked is None:
            return None
        found = None
        if missed:
            asked = (<bytes>asked).strip(b" \t")
            if not asked or asked == b"OPTIONS":
                return None
            found = match_hit(router, host, asked, url, hit)
            if found is None or (<Target>hit.target).chain.request_steps is None:
                return None  # nothing on that route could answer it
            req.as_asked = True
        req.preflight = True
        req.allowed = ", ".join(router.allowed(host, url))
        return found

    cdef _route_miss(self, Request req, router, host, bytes url):
        if _not_worth_reading(req):
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

    # -- the chain: request steps --------------------------------------------------------

    cdef _run_request_steps(self, Request req, Py_ssize_t start):
        """Run the route's request steps from `start`, until one answers or waits."""
        cdef Chain chain = req.chain
        cdef tuple steps = chain.request_steps
        cdef Py_ssize_t i = start
        cdef Step step
        while i < len(steps):
            step = <Step>steps[i]
            if req.as_asked and step.phase > PHASE_ACCESS:
                break  # a preflight's contract is not the method's it asks about
            try:
                result = step.on_request(self, req)
            except Exception as exc:
                result = _failed(req, step, self.step_failed(step, exc))
            if result is not None:
                if type(result) is Wait:
                    self._hold(req, step, i, (<Wait>result).awaitable)
                else:
                    req.answered_by = step.name
                    self._head_answer(req, result)
                return
            if req.chain is not chain:
                # A consumer was identified: its chain has the same steps up to here.
                chain = req.chain
                steps = chain.request_steps
            i += 1
        if req.as_asked:
            # A preflight no step answered: the 405 its path gives OPTIONS.
            self._head_answer(req, problem_answer(
                405, f"OPTIONS is not allowed here; allowed: {req.allowed}",
                headers=(("Allow", req.allowed),),
            ))

    cdef _head_answer(self, Request req, answer):
        """A step answered before the body was read: `req.local` is the response."""
        if _not_worth_reading(req) and not req.complete:
            req.keep_alive = False
        cdef bytes out = _render(req, answer, req.keep_alive)
        if req.chain.response_steps is not None:
            out = self._answer_steps(req, out)
        req.local = out

    cdef want_body(self, Request req, Step step, object state):
        """`step` reads the whole body: its `on_body(..., state)` is called once it is here."""
        if req.body_step is None:
            req.body_step = step
            req.body_state = state
        else:
            if req.body_more is None:
                req.body_more = []
            req.body_more.append((step, state))

    cdef identify(self, Request req, Consumer consumer, Step step, bint anonymous):
        """`step` (authentication) says who the request comes from; the consumer's own
        steps take the place of the route's by name from here on."""
        req.consumer = consumer
        req.anonymous = anonymous
        if consumer.steps or req.chain.origin_steps is not None:
            # (a chain an anonymous stand-in's steps changed goes back to the route's)
            req.chain = req.chain.for_consumer(consumer, step)

    cdef step_failed(self, Step step, object exc):
        """A step raised: logged (at most once a second per step); its answer, or None."""
        answer = step.failed(exc)
        cdef double now = monotonic()
        if now - step.logged_at >= 1.0:
            step.logged_at = now
            _log.error(
                "step %r failed (%d failures so far)%s", step.name, step.counts.failures,
                "; the request went on (fail_open)" if answer is None else "",
                exc_info=exc,
            )
        return answer

    # -- the chain: a step that waits ----------------------------------------------------

    cdef _hold(self, Request req, Step step, Py_ssize_t index, awaitable):
        """`step` made the request wait: read (and hold) its body meanwhile, send nothing."""
        req.held = True
        req.step_next = index + 1
        try:
            future = asyncio.ensure_future(awaitable)
        except Exception as exc:
            req.held = False
            answer = _failed(req, step, self.step_failed(step, exc))
            if answer is not None:
                self._head_answer(req, answer)
            else:
                self._run_request_steps(req, index + 1)
            return
        req.step_waiter = future
        future.add_done_callback(lambda f: self._waited(req, step, f))

    def _waited(self, Request req, Step step, future):
        if req.step_waiter is not future or self.closed:
            return
        req.step_waiter = None
        self.step_done(req, self._awaited_answer(req, step, future))
        if not self.in_feed:
            self._flush()

    cdef object _awaited_answer(self, Request req, Step step, future):
        """What a step that waited decided: None (go on), or its answer; its failure's.
        An answer is noted for the log steps (req.answered_by, and req.error if it failed)."""
        if future.cancelled():
            result = _failed(req, step, self.step_failed(step, asyncio.CancelledError()))
        elif future.exception() is not None:
            result = _failed(req, step, self.step_failed(step, future.exception()))
        else:
            result = future.result()
            if result is not None and type(result) is not tuple:
                result = _failed(req, step, self.step_failed(step, TypeError(
                    f"step {step.name!r} answered {type(result).__name__}; None or"
                    " (status, headers, body)"
                )))
        if result is not None:
            req.answered_by = step.name
        return result

    cdef step_done(self, Request req, object result):
        """The step the request waited on is done: None goes on with the chain, else answers."""
        if not req.held or self.closed:
            return
        req.held = False
        if result is None:
            self._run_request_steps(req, req.step_next)
            if req.held:
                return
        else:
            self._head_answer(req, result)
        if req.local is None and req.content_length > req.limit:
            req.keep_alive = False
            req.error = f"the body is larger than {req.limit} bytes"
            req.local = problem(413, req.error, keep_alive=False)
        if req.local is not None:
            req.discard = True
            req.body = None
            req.buffered = 0
            self._resume_buffering()
            if req is self.active:
                self._start(req)
            return
        if req.target.handler is None and req.body_step is None:
            self._stream_body(req)
        self._resume_buffering()
        if req is self.active:
            self._proceed(req)

    cdef _stream_body(self, Request req):
        """The body held while a step waited goes upstream as it comes after all."""
        cdef list held = req.body
        cdef bytes piece
        req.local_body = False
        req.head = self._upstream_head(req)
        if held and req.chunked:
            req.body = [b"%x\r\n%b\r\n" % (len(piece), piece) for piece in held]
        if req.chunked and req.complete:
            if req.body is None:
                req.body = []
            req.body.append(_FINAL_CHUNK)

    cdef _resume_buffering(self):
        if self.paused & P_BUFFER and self.queued_bytes <= BUFFER_LIMIT:
            self._resume(P_BUFFER)

    # -- the upstream request head -------------------------------------------------------

    cdef bytes _upstream_head(self, Request req):
        cdef Target target = req.target
        cdef bytes host = req.host or b""
        cdef list lines = req.lines
        cdef Replica replica = req.replica
        cdef bytes path
        host_header = target.host_header
        if replica is not None and replica.own_head:
            # A replica with a path (or, host_header: upstream, a Host) of its own.
            path = target._target_for(req.url, replica.path)
            if host_header is not None:
                host_header = replica.authority
        else:
            path = target.upstream_target(req.url)
        if lines is not None and req.connection_tokens:
            lines = _drop_named(lines, req.connection_tokens)
        cdef bytes forwarded_for = self.peer
        if req.forwarded_for is not None:
            forwarded_for = req.forwarded_for + b", " + forwarded_for if forwarded_for else req.forwarded_for
        # PERF: the pieces are noted by pointer and copied once into the head's
        # bytes: no list to build, grow and join (~900 Ir a request, callgrind).
        # Every bytes noted is held by a local (or `req`, `self`) until the copy.
        cdef bytes authority = host_header or host or target.pool.upstream_authority
        cdef bytes via = _VIA_LINE if req.via is None else b"Via: " + req.via + b", " + _VIA + b"\r\n"
        cdef bytes framing = None
        cdef bytes upgrade = None
        cdef _Pieces before, after
        before.count = after.count = 0
        before.total = after.total = 0
        _note(&before, req.method)
        _note(&before, b" ")
        _note(&before, path)
        _note(&before, b" HTTP/1.1\r\nHost: ")
        _note(&before, authority)
        _note(&before, b"\r\n")
        # (then the kept header lines)
        if forwarded_for:
            _note(&after, b"X-Forwarded-For: ")
            _note(&after, forwarded_for)
            _note(&after, b"\r\n")
        if host:
            _note(&after, self.forwarded_host)  # X-Forwarded-Proto line, X-Forwarded-Host name
            _note(&after, host)
            _note(&after, b"\r\n")
        else:
            _note(&after, self.forwarded_proto)
        _note(&after, via)
        if req.chunked:
            # A body read whole (to be checked) goes on with its length.
            framing = b"Content-Length: %d\r\n" % req.body_bytes if req.local_body else _TE_CHUNKED
            _note(&after, framing)
        # (a Content-Length is among the kept lines, as the client sent it)
        if req.upgrade is not None:
            upgrade = b"Upgrade: " + req.upgrade + b"\r\nConnection: upgrade\r\n"
            _note(&after, upgrade)
        _note(&after, b"\r\n")
        return _join_pieces(&before, lines, &after)

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
        if req.local is not None:
            req.response_started = True
            req.response_done = True
            if not req.status:
                req.status = _status_of(req.local)  # a route miss, a bad head: "HTTP/1.1 NNN"
            self.pending.append(req.local)
            req.bytes_out += len(req.local)
            if req.close_after or not req.keep_alive:
                self._end(req)
                self._close_after_flush()
            elif req.complete:
                self._request_done()
            return
        if req.held:
            return  # a step is working on it: step_done() goes on
        self._proceed(req)

    cdef _proceed(self, Request req):
        """The active request passed its head steps: invite its body, and send it on."""
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
        if target.total_timeout and not req.total_deadline:
            req.total_deadline = monotonic() + target.total_timeout
        if not target.replicas.simple:
            self._acquire_replica(req)
            return
        # PERF: one replica and no limits: nothing to choose, nothing to count.
        pool = target.pool
        req.pool = pool
        self.waiting = True
        conn = pool.acquire(self, target.connect_timeout)
        if conn is not None:
            self.upstream_attached(conn)

    cdef _acquire_replica(self, Request req):
        """Choose a replica (an MCP session's own, when pinned) within its limits; send."""
        cdef Replicas replicas = req.target.replicas
        cdef Replica replica
        if req.pin >= 0:
            replica = <Replica>replicas.replicas[req.pin]
        else:
            replica = replicas.choose(req, req.tried)
        if replicas.max_requests or replicas.max_pending:
            replica = self._within_limits(req, replica)
            if replica is None:
                return  # answered 503
        self._send_to(req, replica)

    cdef Replica _within_limits(self, Request req, Replica replica):
        """`replica`, or another under its circuit-breaker limits; None (answered 503 with
        Retry-After, counted on the first one chosen) when none is."""
        cdef Replicas replicas = req.target.replicas
        cdef Replica other = replica
        cdef unsigned long long tried = req.tried
        cdef int limit
        cdef Py_ssize_t k
        for k in range(replicas.count):
            limit = _over_limit(replicas, other)
            if limit < 0:
                return other
            if k == 0:
                replica.rejected[limit] += 1
            if req.pin >= 0:
                break  # an MCP session's replica, or none
            tried |= (<unsigned long long>1) << (other.index & 63)
            other = replicas.choose(req, tried)
            if other is None:
                break
        limit = _over_limit(replicas, replica)
        self.waiting = False
        self._answer_error(
            503,
            f"{replica.url} is at its limit of "
            + ("requests in flight" if limit == BREAKER_REQUESTS else "requests waiting")
            + " (circuit breaker)",
            _RETRY_AFTER,
        )
        return None

    cdef _send_to(self, Request req, Replica replica):
        """Send `req` to `replica`: counted on it, its head made for it when it has its own."""
        cdef Replicas replicas = req.target.replicas
        cdef Target target = req.target
        req.replica = replica
        req.pool = replica.pool
        replica.active += 1
        replicas.active += 1
        req.counted = True
        if not req.tried and replicas.retry_on:
            replicas.first_try()
        req.tried |= (<unsigned long long>1) << (replica.index & 63)
        if (replica.own_head or req.head_for is not None) and req.head_for is not replica:
            req.head = self._upstream_head(req)
            req.head_for = replica if replica.own_head else None
        self.waiting = True
        conn = replica.pool.acquire(self, target.connect_timeout, replicas.max_connections)
        if conn is not None:
            self.upstream_attached(conn)
        else:
            replica.pending += 1
            req.pending = True

    cdef _leave(self, Request req):
        """`req` is no longer on its replica (done, or about to try another)."""
        cdef Replica replica = req.replica
        if req.pending:
            req.pending = False
            replica.pending -= 1
        if req.counted:
            req.counted = False
            replica.active -= 1
            req.target.replicas.active -= 1

    cdef bint _retry(self, Request req, int why):
        """Send `req` to another replica, when it is safe (docs/resilience.md): a try that
        failed before anything was written, or (`why` another reason) an idempotent
        request whose body is still at hand and of whose response nothing was sent yet;
        never for a pinned MCP session; within `attempts` and the budget. True if so."""
        cdef Replicas replicas = req.target.replicas
        cdef Replica other
        if req.replica is None or req.pin >= 0 or not (replicas.retry_on & why):
            return False
        if req.retries >= replicas.attempts or req.replay_lost or req.response_started:
            return False
        if why != WHY_CONNECT and not _idempotent(req):
            return False
        other = replicas.choose(req, req.tried)
        if other is not None and (replicas.max_requests or replicas.max_pending):
            other = _under_limits(replicas, req, other)
        if other is None or not replicas.withdraw(why):
            return False
        req.retries += 1
        self._leave(req)
        self.upstream = None
        self._resume(P_UPSTREAM)
        self.waiting = True
        if why == WHY_CONNECT:
            # Nothing reached the replica: the next one at once (as nginx and HAProxy
            # redispatch); a retry after an answer or a timeout waits a jittered back-off.
            self._send_to(req, other)
        else:
            self.retry_timer = req.pool._loop.call_later(
                replicas.backoff(req.retries), self._retry_now, req, other
            )
        return True

    def _retry_now(self, Request req, Replica other):
        self.retry_timer = None
        if self.closed or self.active is not req or not self.waiting:
            return
        self._send_to(req, other)
        if not self.in_feed:
            self._flush()

    cdef _request_done(self):
        """The active request is answered and fully read: log it, go on to the next."""
        cdef Request req = self.active
        cdef Request following
        self.active = None
        self._end(req)
        if not req.keep_alive:
            self._close_after_flush()
            return
        # Closing (the client sent EOF, or the gateway drains): requests already
        # read in full are still answered, then the connection closes.
        if self.queue:
            following = self.queue.popleft()
            self.queued_bytes -= len(following.url) + following.header_bytes
            self._resume_buffering()
            self._start(following)
        elif self.closing:
            self._close_after_flush()
        elif self.current is None:
            self._set_deadline(D_IDLE, self.ctx.keepalive_timeout)

    cdef _end(self, Request req):
        """The exchange is over, however it ended: its log steps run, once.

        A request no route took (404, 405, a bad Host, a head refused before
        routing or not even read whole: 400, 414, 431, 408) has no chain of its
        own: the snapshot's `unrouted_chain` runs for it (its log steps: a
        global access-log). Those whose head never ended have no method (and
        are not counted in `unrouted`, the metrics' requests no route took).
        """
        if req.ended:
            return
        req.ended = True
        if req.counted:
            self._leave(req)
        if req.in_streams:
            req.target.stats.streams -= 1
        cdef Chain chain = req.chain
        if req.target is None:
            if req.method is not None:
                self.ctx.unrouted[req.status // 100 if 100 <= req.status < 600 else 0] += 1
            if chain is None:
                chain = self.ctx.unrouted_chain
        if chain is None or chain.log_steps is None:
            return
        cdef Step step
        for step in chain.log_steps:
            try:
                step.on_log(self, req)
            except Exception as exc:
                self.step_failed(step, exc)

    # -- the request body ----------------------------------------------------------------

    cdef _body_piece(self, Request req, bytes piece):
        if req is self.active:
            if self.upstream is not None:
                self._send_upstream(req, piece)
                return
            if req.response_done:
                return  # answered already (the upstream did not wait for the body)
        if req.body is None:
            req.body = []
        req.body.append(piece)
        req.buffered += len(piece)
        # A body read whole is bounded by the target's limit; one held while a
        # step waits, or waiting for a connection, by the buffer.
        if req.buffered > BUFFER_LIMIT and (req.held or not req.local_body):
            self._pause(P_BUFFER)

    cdef _send_upstream(self, Request req, bytes piece):
        cdef UpstreamConnection up = self.upstream
        req.body_sent += len(piece)
        if not req.replay_lost:
            _keep_for_replay(req, piece)
        if not up.got_response:
            # The first-byte timeout runs from the request written (docs/resilience.md):
            # the last piece starts it (see check_deadlines for the pieces before).
            up.deadline = monotonic() + up.read_timeout
        if self.in_feed:
            self.up_pending.append(piece)
        else:
            up.write([piece])

    cdef _body_complete(self, Request req):
        """The whole body of a request read whole is here: its steps, then on it goes."""
        cdef list body = req.body
        cdef bytes data
        if body and len(body) == 1:
            # PERF: one piece (a small body): its list stays as `req.body` for
            # `_body_onward` to send on, not a new one (~120 instructions).
            data = body[0]
        else:
            data = b"".join(body) if body else b""
            req.body = None
        req.buffered = 0
        if req.body_step is not None:
            self._run_body_steps(req, data, 0)
        else:
            self._body_onward(req, data)

    cdef _run_body_steps(self, Request req, bytes data, Py_ssize_t start):
        """Run the body steps from the `start`-th, until one answers or waits; then onward."""
        cdef Py_ssize_t k = start
        cdef Py_ssize_t last = len(req.body_more) if req.body_more is not None else 0
        cdef Step step
        while k <= last:
            if k == 0:
                step, state = req.body_step, req.body_state
            else:
                step, state = req.body_more[k - 1]
            try:
                answer = step.on_body(self, req, data, state)
            except Exception as exc:
                answer = _failed(req, step, self.step_failed(step, exc))
            if answer is not None:
                if type(answer) is Wait:
                    self._hold_body(req, step, k, data, (<Wait>answer).awaitable)
                else:
                    req.answered_by = step.name
                    self._late_answer(req, answer)
                return
            k += 1
        self._body_onward(req, data)

    cdef _hold_body(self, Request req, Step step, Py_ssize_t k, bytes data, awaitable):
        """Body step `k` made the request wait (a lookup in a shared store, a token
        introspection): nothing goes on until it is done."""
        try:
            future = asyncio.ensure_future(awaitable)
        except Exception as exc:
            answer = _failed(req, step, self.step_failed(step, exc))
            if answer is not None:
                req.answered_by = step.name
                self._late_answer(req, answer)
            else:
                self._run_body_steps(req, data, k + 1)
            return
        req.held = True
        req.step_waiter = future
        future.add_done_callback(lambda f: self._body_waited(req, step, k, data, f))

    def _body_waited(self, Request req, Step step, Py_ssize_t k, bytes data, future):
        if req.step_waiter is not future or self.closed or not req.held:
            return
        req.step_waiter = None
        req.held = False
        result = self._awaited_answer(req, step, future)
        if result is not None:
            self._late_answer(req, result)
        else:
            self._run_body_steps(req, data, k + 1)
        if not self.in_feed:
            self._flush()

    cdef _body_onward(self, Request req, bytes data):
        """Every body step let the request through: to its handler or its upstream.
        `req.body` may still be the one-piece list `data` came in (`_body_complete`)."""
        cdef list body = req.body
        if req.target.handler is not None:
            req.body = None
            self._call_handler(req, data)
            return
        req.head = self._upstream_head(req)
        req.local_body = False
        if data:
            if body is None or len(body) != 1 or body[0] is not data:
                req.body = [data]
            req.buffered = len(data)
        else:
            req.body = None
        self._acquire(req)

    # -- local handlers ------------------------------------------------------------------

    cdef _call_handler(self, Request req, bytes body):
        """Call the target's handler with the whole request; answer with what it returns."""
        self.waiting = True
        request = LocalRequest(req.method, req.url, req.host, req.lines, body, req.get_params(),
                               self.peer)
        request.ctx = self.ctx
        request.loopback = self.loopback
        request.consumer = req.consumer
        if req.vars is None:
            req.vars = {}
        request.vars = req.vars  # shared, not copied: the steps' to the handler, and back
        try:
            result = req.target.handler(request)
        except Exception as exc:
            self._handler_failed(exc)
            req.error = _HANDLER_FAILED_DETAIL
            self._local_answer(req, _HANDLER_FAILED)
            return
        if isinstance(result, tuple):
            self._local_answer(req, result)
            return
        future = asyncio.ensure_future(result)
        future.add_done_callback(lambda f: self._handler_done(req, f))

    def _handler_done(self, Request req, future):
        if future.cancelled():
            req.error = _HANDLER_FAILED_DETAIL
            result = _HANDLER_FAILED
        elif future.exception() is not None:
            self._handler_failed(future.exception())
            req.error = _HANDLER_FAILED_DETAIL
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
        cdef bint keep_alive = self.keeps_alive(req)
        if type(result[2]) is LocalStream:
            self._stream_start(req, result[0], result[1], <LocalStream>result[2], keep_alive)
            return
        self._answered(req, _render(req, result, keep_alive), keep_alive)

    cdef _late_answer(self, Request req, answer):
        """A step (or the replica's loss) answers the active request after its head."""
        cdef bint keep_alive = self.keeps_alive(req)
        self._answered(req, _render(req, answer, keep_alive), keep_alive)

    # -- upstream events (called by the pool and the upstream connection) ---------------

    cpdef upstream_attached(self, UpstreamConnection conn):
        cdef Request req = self.active
        if not self.waiting or self.closed or req is None or req.target is None:
            conn.pool.release(conn)
            return
        self.waiting = False
        if req.pending:
            req.pending = False
            req.replica.pending -= 1
        cdef double now = monotonic()
        if req.t0:
            req.t_upstream = now
        conn.bind(self, req.is_head, req.target.read_timeout, req.target.idle_timeout, now)
        self.upstream = conn
        if self.write_paused:
            conn.pause_reading()
        # In a read: queued with the rest for the upstream (written once, by _flush).
        cdef list parts = self.up_pending if self.in_feed else []
        parts.append(req.head)
        if req.replay:
            parts.extend(req.replay)  # a retry: what the failed connection was sent
        cdef list body = req.body
        cdef bytes piece
        if body:
            req.body = None
            req.buffered = 0
            for piece in body:
                req.body_sent += len(piece)
                if not req.replay_lost:
                    _keep_for_replay(req, piece)
            if len(body) == 1:
                parts.append(body[0])  # PERF: a body read whole is one piece: no extend
            else:
                parts.extend(body)
            self._resume_buffering()
        if not self.in_feed:
            conn.write(parts)

    cpdef connect_failed(self, Pool pool, int status, str detail):
        """`pool` could not connect: try another replica of the service, if it has one."""
        if not self.awaits_connection():
            return
        pool.mark_down()
        cdef Request req = self.active
        cdef Replicas replicas
        if req is not None and req.target is not None:
            replicas = req.target.replicas
            replicas.failure(
                req.replica if req.replica is not None else <Replica>replicas.replicas[0],
                WHY_CONNECT if status == 502 else WHY_TIMEOUT, detail,
            )
            if req.pending:
                req.pending = False
                req.replica.pending -= 1
        if req is not None and req.pin >= 0:
            # The replica holding this request's session is gone: the session with it.
            self.waiting = False
            req.error = detail
            answer = req.pinned_by.on_pin_failed(self, req, detail) if req.pinned_by else None
            if answer is None:
                self._answer_error(status, detail)
            else:
                self._late_answer(req, answer)
            self._flush()
            return
        # A connect refused, failed or timed out: nothing was written, any method may go on.
        if req is not None and self._retry(req, WHY_CONNECT):
            self._flush()
            return
        self.upstream_unavailable(status, detail)

    cpdef upstream_unavailable(self, int status, str detail):
        if not self.awaits_connection():
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
        req.response_started = True
        req.status = status
        if req.t0:
            req.t_head = monotonic()
        if req.replica is not None and status < 500:
            req.replica.consecutive = 0  # (a 5xx was counted by retry_response)
        if req.total_deadline and _is_event_stream(lines):
            req.total_deadline = 0.0  # an event stream lasts as long as it lasts
        # Keep the client connection only when the request was read to its end.
        cdef bint keep_alive = self.keeps_alive(req)
        req.head_mark = len(self.pending)
        if req.chain.response_steps is not None:
            lines = self._run_response_steps(req, status, lines, content_length)
            if req.body_filter is not None and content_length >= 0 and not no_body:
                # A step rewrites the body: its length is not the upstream's any more.
                lines = _drop_content_length(lines)
                content_length = -1
        # Queued as pieces, written with the body by _flush: one writev.
        cdef list pending = self.pending
        pending.append(line if line is not None else status_line(status, reason))
        for piece in lines:
            pending.append(piece)
        if status == 101:
            keep_alive = True  # the connection becomes a tunnel
        elif no_body or content_length >= 0:
            pass  # the upstream's Content-Length, if any, is among the lines
        elif req.http11:
            pending.append(_TE_CHUNKED)
            req.out_chunked = True
        else:
            keep_alive = False  # an HTTP/1.0 client reads to the end of the connection
        if status != 101:
            if not keep_alive:
                pending.append(_CONNECTION_CLOSE)
            elif not req.http11:
                pending.append(_CONNECTION_KEEP_ALIVE)
        pending.append(b"\r\n")
        req.keep_alive = keep_alive
        if status == 101:
            self._become_tunnel()

    cdef response_body(self, bytes data):
        cdef Request req = self.active
        if self.closed:
            return  # cut below: the rest of the upstream's body goes nowhere
        if req.body_filter is not None:
            try:
                data = req.body_filter.feed(data)
            except ValueError as exc:
                # The filter refuses what it must not pass on (a legacy endpoint on
                # another server, found by tests/fuzz/fuzz_sse.py): the stream began,
                # so a truncated body must not look complete: cut the connection.
                req.body_filter = None
                req.error = "the upstream's event stream was refused: " + str(exc)
                self._abort()
                return
            if not data:
                return
        req.bytes_out += len(data)
        if req.keepalive_every:
            req.last_out = monotonic()
            req.tail = _tail(data, req.tail)
        if req.out_chunked:
            self.pending.append(chunk_size_line(len(data)))
            self.pending.append(data)
            self.pending.append(b"\r\n")
        else:
            self.pending.append(data)

    cdef response_span(self, object owner, const char* at, Py_ssize_t n):
        """response_body for the `n` bytes at `at`, inside `owner` (the upstream's read),
        queued without a copy: written, or copied, by the _flush that ends that read."""
        cdef Request req = self.active
        if req.body_filter is not None or req.keepalive_every:
            self.response_body(at[:n])  # (these read the bytes)
            return
        if self.closed:
            return
        req.bytes_out += n
        if req.out_chunked:
            self.pending.append(chunk_size_line(n))
            self.pending.append(span(owner, at, n))
            self.pending.append(b"\r\n")
        else:
            self.pending.append(span(owner, at, n))

    cdef response_complete(self):
        cdef UpstreamConnection upstream = self.upstream
        self.upstream = None
        if upstream is not None:
            upstream.resume_reading()
        self._resume(P_UPSTREAM)
        cdef Request req = self.active
        if req is None:
            return
        cdef object body_filter = req.body_filter
        cdef bytes rest
        if body_filter is not None:
            # What the filter still holds (a body it rewrites whole, a line cut short).
            req.body_filter = None
            rest = body_filter.flush()
            if rest:
                self.response_body(rest)
        if req.out_chunked:
            self.pending.append(_FINAL_CHUNK)
        req.response_done = True
        if not self.in_feed:
            # The response's last bytes go out now, before the exchange's bookkeeping
            # (log steps, stats, the Request's teardown): the client waits for these
            # bytes, not for that. (Within our own parse, _flush at its end writes.)
            self._write_pending()
        if req.complete:
            self._request_done()
        else:
            # The upstream answered before the body ended: the head said close.
            req.discard = True
            self._end(req)
            self._close_after_flush()

    cdef response_failed(self, int status, str detail, int why, bint reused):
        """The upstream connection failed (`why`: a WHY_* bit, 0 once the response began);
        `reused`: a kept-alive connection closed before any byte of the response."""
        self.upstream = None
        self._resume(P_UPSTREAM)
        cdef Request req = self.active
        cdef Replicas replicas
        if req is None or self.closed:
            return
        if req.response_started:
            if req.head_mark < 0:
                # A truncated body must never look complete: cut the connection.
                req.error = "the upstream failed in the middle of its response: " + detail
                self._abort()
                return
            # Nothing of this response was written yet: answer 502 instead.
            del self.pending[req.head_mark:]
            req.out_chunked = False
            req.response_started = False
            req.keepalive_every = 0.0
            req.body_filter = None
        if reused and not req.retried and _replayable(req):
            # The keep-alive race (the upstream closed an idle connection as it was
            # reused): not the replica's fault; once more on a fresh connection.
            req.retried = True
            self.waiting = True
            # Under the circuit breaker's max_connections, as any connection opened for
            # this service (_send_to): the pool's own limit alone let this one past it.
            req.pool.open_fresh(
                self, req.target.connect_timeout, req.target.replicas.max_connections
            )
            return
        if req.target is not None:
            replicas = req.target.replicas
            replicas.failure(
                req.replica if req.replica is not None else <Replica>replicas.replicas[0],
                why if why else WHY_RESET, detail,
            )
            if why and self._retry(req, why):
                return
        self._answer_error(status, detail)

    cdef bint retry_response(self, int status, bytes head):
        """A 5xx head came (not yet forwarded): counted against the replica; True when
        `req` goes to another replica instead (then the upstream drops this response)."""
        cdef Request req = self.active
        cdef Replicas replicas
        cdef int why
        if req is None or req.replica is None:
            return False
        replicas = req.target.replicas
        replicas.failure(req.replica, WHY_5XX, f"{status} from {req.replica.url}")
        why = WHY_502 if status == 502 else WHY_503 if status == 503 else WHY_504 if status == 504 else 0
        if not (replicas.retry_on & why) or not req.complete:
            return False
        if status == 503 and head.lower().find(b"\nretry-after:") >= 0:
            return False  # the replica says when to come back: its answer goes to the client
        return self._retry(req, why)

    cdef tunnel_data(self, object data):
        # `data`: bytes, or a Span of the upstream's read (written or copied right here).
        self.pending.append(data)  # after the 101 head if it is still pending
        self._flush()

    cdef tunnel_closed(self):
        self.upstream = None
        if self.active is not None:
            self._end(self.active)
        self._close_after_flush()
        self._flush()

    # -- the chain: response steps, event streams ----------------------------------------

    cdef list _run_response_steps(self, Request req, int status, list lines,
                                  long long content_length):
        cdef Step step
        for step in req.chain.response_steps:
            try:
                lines = step.on_response(self, req, status, lines, content_length)
            except Exception as exc:
                self.step_failed(step, exc)  # the head goes out as the step found it
        return lines

    cdef bytes _answer_steps(self, Request req, bytes response):
        """Response steps over an answer the gateway made: its header lines in, out again."""
        cdef Py_ssize_t first = response.find(b"\r\n") + 2
        cdef Py_ssize_t end = response.find(b"\r\n\r\n") + 2
        cdef list lines = [response[first:end]] if end > first else []
        lines = self._run_response_steps(req, req.status, lines, -1)
        return response[:first] + _concat(lines) + response[end:]

    cdef stream_events(self, Request req, double keepalive_every):
        """The response is an event stream: no read timeout; comments keep it alive."""
        req.keepalive_every = keepalive_every
        req.total_deadline = 0.0  # an event stream lasts as long as it lasts
        req.last_out = monotonic()
        req.tail = 0x0A0A  # nothing written yet: as good as after an event
        if not req.in_streams and req.t0 and req.target.stats is not None:
            req.in_streams = True
            req.target.stats.streams += 1
        if self.upstream is not None:
            self.upstream.stream_mode()

    cdef _keepalive(self, Request req, double now):
        """An SSE comment on an idle event stream (only between two events)."""
        req.last_out = now
        self.pending.append(_CHUNKED_KEEPALIVE if req.out_chunked else _SSE_KEEPALIVE)
        self._flush()

    # -- local streams ------------------------------------------------------------------

    cdef _stream_start(self, Request req, int status, headers, LocalStream stream, bint keep_alive):
        cdef list lines = [f"{name}: {value}\r\n".encode("latin-1") for name, value in headers]
        if req.chain.response_steps is not None:
            lines = self._run_response_steps(req, status, lines, -1)
        cdef list parts = [status_line(status)]
        parts += lines
        if req.http11:
            parts.append(_TE_CHUNKED)
            req.out_chunked = True
        else:
            keep_alive = False  # an HTTP/1.0 client reads to the end of the connection
        parts.append(_CONNECTION_KEEP_ALIVE if keep_alive else _CONNECTION_CLOSE)
        parts.append(b"\r\n")
        req.keep_alive = keep_alive
        self.pending.append(_concat(parts))
        req.response_started = True
        self.stream = stream
        stream._client = self
        self.stream_events(req, req.target.stream_keepalive)
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

    # -- upgrades --------------------------------------------------------------------

    cdef _upgrade_requested(self, bytes rest):
        """llhttp stopped at the end of an Upgrade request (its head, and its body if it
        has one: read as any body is, see _on_headers_complete)."""
        # The Upgrade request is the last one read: queued behind the active one when
        # pipelined. (Taken for the active one, it was refused with a 400 that was
        # queued behind it and never sent, while it went on to its 101 anyway, and
        # the bytes after it were lost.)
        cdef Request req = self.queue[-1] if self.queue else self.active
        self._pause(P_DONE)  # nothing is parsed after an upgrade request
        if req is None:
            return  # answered (a non-101) before its body ended: the connection closes
        if req.upgrade is None:
            self._reject_current(400, "an Upgrade request must come alone", ())
            return
        if req.local is not None:
            return  # answered locally, then closed
        if rest:
            # Bytes after the request are the new protocol's only once the upstream
            # answers 101 (_become_tunnel sends them then). Sent at once, a server
            # that ignores Upgrade (RFC 9110 §7.8: it may) read them as its next
            # request: one smuggled past routing and steps, whose answer could then
            # reach whoever used that pooled connection next.
            self.tunnel_early = rest
        req.complete = True
        self.current = None

    cdef _become_tunnel(self):
        if self.upstream is None or self.active is None:
            return
        self.tunnel = True
        self._clear_deadline()
        self.paused = 0
        if self.tunnel_early is not None:
            self.upstream.write([self.tunnel_early])  # (see _upgrade_requested)
            self.tunnel_early = None
        if self.transport is not None:
            self._reading(True)

    # -- answers and errors ---------------------------------------------------------------

    cdef _answer_error(self, int status, str detail, tuple headers=()):
        cdef Request req = self.active
        if req is None:
            return
        cdef bint keep_alive = self.keeps_alive(req)
        req.status = status
        req.error = detail
        self._answered(
            req,
            problem(status, detail, keep_alive=keep_alive, head_only=req.is_head, headers=headers),
            keep_alive,
        )

    cdef _answered(self, Request req, bytes response, bint keep_alive):
        """The gateway wrote the whole response itself: go on to the next request, or close."""
        if req.chain is not None and req.chain.response_steps is not None:
            response = self._answer_steps(req, response)
        req.bytes_out += len(response)
        self.pending.append(response)
        req.response_started = True
        req.response_done = True
        req.keep_alive = keep_alive
        if keep_alive:
            self._request_done()
        else:
            req.discard = True
            self._end(req)
            self._close_after_flush()

    cdef _reject_current(self, int status, str detail, tuple headers):
        """A request that can not be read on: answer it in turn, then close."""
        self._pause(P_DONE)
        self._clear_deadline()
        cdef Request req = self.current
        cdef UpstreamConnection upstream
        self.current = None
        if req is not None and self.nkept:
            # A head refused before its end: its lines so far, for the log steps
            # (the access log's User-Agent and Referer).
            _take_kept(self, req)
        if req is not None and req.held:
            req.held = False  # answered here: what the step decides comes too late
            if req.step_waiter is not None:
                req.step_waiter.cancel()
                req.step_waiter = None
        if req is not None and req is self.active:
            upstream = self.upstream
            self.upstream = None
            self.waiting = False
            if upstream is not None:
                upstream.abandon()
            if req.response_started:
                self._abort()
                return
            req.keep_alive = False
            req.status = status
            req.error = detail
            self.pending.append(problem(status, detail, keep_alive=False, headers=headers))
            req.response_started = True
            req.response_done = True
            self._end(req)
            self._close_after_flush()
            return
        cdef Request reply = req
        if reply is None:
            reply = Request.__new__(Request)
            reply.client_ip = self.peer
        reply.local = problem(status, detail, keep_alive=False, headers=headers)
        reply.close_after = True
        reply.complete = True
        reply.keep_alive = False
        reply.status = status
        reply.error = detail
        reply.target = None
        if self.queue is None or reply not in self.queue:
            self._enqueue(reply)  # else it is answered where it waits, in turn

    cdef _abort(self):
        self._release_reads()
        self.closed = True
        self.out_fd = -1
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
        if self.reads is not None:
            # (a reset the loop did not report: reads.pxi, poll_lost and socket_ready,
            # looked for in the middle of a request, when bytes are awaited)
            self.reads.look_again(self.deadline_kind == D_HEAD or self.deadline_kind == D_BODY)
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
        cdef Request req = self.active
        if upstream is not None and upstream.deadline and upstream.deadline <= now:
            if (
                not upstream.got_response and req is not None and not req.complete
                and not self.paused & P_UPSTREAM
            ):
                # The client is still sending its body, slower than the first-byte
                # timeout: that is no silent upstream (nginx's proxy_read_timeout starts
                # once the request is sent too). The listener's body timeout bounds the
                # client; an upstream that stops reading pauses us (P_UPSTREAM) and then
                # this timeout does apply.
                upstream.deadline = now + upstream.read_timeout
            else:
                upstream.timed_out()
        if req is not None and req.total_deadline and req.total_deadline <= now:
            self._total_timed_out(req)
        if (
            req is not None
            and req.keepalive_every
            and _event_ends(req.tail)
            and req.response_started
            and not req.response_done
            and not self.write_paused
            and now - req.last_out >= req.keepalive_every
        ):
            self._keepalive(req, now)

    cdef _total_timed_out(self, Request req):
        """The route's total timeout passed: 504 while nothing of the response went out,
        else the connection is cut (a truncated body must never look complete)."""
        cdef UpstreamConnection upstream = self.upstream
        req.total_deadline = 0.0
        if req.response_done or req.target is None:
            return
        if req.pool is not None:
            req.pool.timeouts += 1
        if self.retry_timer is not None:
            self.retry_timer.cancel()
            self.retry_timer = None
        self.upstream = None
        if upstream is not None:
            upstream.abandon()
        self.waiting = False
        if req.response_started and req.head_mark < 0:
            self._abort()
            return
        if req.response_started:
            del self.pending[req.head_mark:]
            req.out_chunked = False
            req.response_started = False
            req.body_filter = None
        self._resume(P_UPSTREAM)
        self._answer_error(
            504, f"no complete response within {req.target.total_timeout:g} s (total timeout)"
        )
        self._flush()

    def shutdown(self):
        """Graceful stop: idle connections close now, busy ones after their response."""
        self.closing = True
        if self.stream is not None:
            self._stream_end(self.stream)  # a local stream ends when the gateway stops
        if self.active is None and self.current is None and not self.queue:
            self._close()

    def abort(self):
        self._abort()

    @property
    def active_target(self):
        """The target of the request being answered (None: none is). The gateway's own
        requests (mcp/loopback.py) read its timeouts when its response head arrives."""
        cdef Request req = self.active
        return req.target if req is not None else None

    # -- writing ----------------------------------------------------------------------

    cdef _flush(self):
        cdef list up_pending = self.up_pending
        if up_pending:
            if self.upstream is not None:
                self.upstream.write(up_pending)
            rmf_list_empty(up_pending)  # (its array kept: send.pxi)
        self._write_pending()
        if self.close_when_flushed:
            self._close()

    cdef _write_pending(self):
        """What is pending for the client, written (or queued on the transport)."""
        cdef list pending = self.pending
        if self.active is not None:
            self.active.head_mark = -1  # what is pending now is written: no taking it back
        if pending:
            if self.transport is not None and not self.closed:
                self.out_queued = send_out(self.transport, self.out_fd, self.out_queued, pending)
            rmf_list_empty(pending)  # (its array kept: send.pxi)

    cdef _close_after_flush(self):
        self.close_when_flushed = True
        self._pause(P_DONE)
        if not self.in_feed and not self.pending:
            self._close()

    cdef _close(self):
        if self.closed:
            return
        self._release_reads()  # (as transport.close() stops its own reads)
        self.closed = True
        self.out_fd = -1
        self.ctx.connections.discard(self)
        if self.transport is not None:
            self.transport.close()

    cdef _pause(self, int reason):
        if not self.paused and self.transport is not None and not self.closed:
            self._reading(False)
            if self.deadline_kind == D_BODY:
                self.deadline = 0.0  # waiting on us is not the client being slow
        self.paused |= reason

    cdef _resume(self, int reason):
        if not self.paused & reason:
            return
        self.paused &= ~reason
        if not self.paused and self.transport is not None and not self.closed:
            self._reading(True)
            if self.deadline_kind == D_BODY:
                self.deadline = monotonic() + self.ctx.body_timeout


cdef inline int _status_of(bytes response):
    """The status of a response the gateway made ("HTTP/1.1 NNN ...")."""
    cdef const char* p = PyBytes_AS_STRING(response)
    if PyBytes_GET_SIZE(response) < 12:
        return 0
    return (p[9] - 48) * 100 + (p[10] - 48) * 10 + (p[11] - 48)


cdef inline object _failed(Request req, Step step, answer):
    """A step raised and `answer` (its failure's, or None: fail_open) stands: noted for the
    log steps when it answers the request."""
    if answer is not None:
        req.error = f"step {step.name!r} failed"
    return answer


cdef bytes _render(Request req, answer, bint keep_alive):
    """A step's or handler's answer as one complete response; sets `req.status`."""
    cdef bytes out
    if type(answer) is tuple:
        req.status = answer[0]
        return response(answer[0], answer[1], answer[2], keep_alive, req.is_head)
    out = answer.response(keep_alive, req.is_head)
    req.status = answer.status
    return out


cdef tuple _RETRY_AFTER = (("Retry-After", "1"),)


cdef inline int _over_limit(Replicas replicas, Replica replica):
    """The circuit-breaker limit `replica` is at (BREAKER_*), or -1 when it is under them."""
    if replicas.max_requests and replica.active >= replicas.max_requests:
        return BREAKER_REQUESTS
    if replicas.max_pending and replica.pending >= replicas.max_pending:
        return BREAKER_PENDING
    return -1


cdef Replica _under_limits(Replicas replicas, Request req, Replica other):
    """`other`, or another replica not tried yet, under its circuit-breaker limits; None
    when none is. A retry is load like any request: the breaker that refuses a first try
    on a replica at its limit must hold a retry off it too (as Envoy's does), else the
    replica it protects gets more than its limit (each refusal counted on it)."""
    cdef unsigned long long tried = req.tried
    cdef int limit
    while other is not None:
        limit = _over_limit(replicas, other)
        if limit < 0:
            return other
        other.rejected[limit] += 1
        tried |= (<unsigned long long>1) << (other.index & 63)
        other = replicas.choose(req, tried)
    return None


cdef bint _idempotent(Request req):
    """Safe to send twice: an idempotent method (RFC 9110 §9.2.2), a route marked
    idempotent, or a request carrying an Idempotency-Key; never an MCP POST."""
    cdef Target target = req.target
    if target.jsonrpc:
        return req.method != b"POST" and req.method in IDEMPOTENT
    return (
        req.method in IDEMPOTENT
        or target.idempotent
        or _header_value(req.lines, b"idempotency-key") is not None
    )


cdef bint _is_event_stream(list lines):
    """The response head's lines say Content-Type: text/event-stream."""
    cdef bytes head = b"\r\n" + _concat(lines).lower()
    cdef Py_ssize_t at = head.find(b"\r\ncontent-type:")
    cdef Py_ssize_t end
    if at < 0:
        return False
    end = head.find(b"\r\n", at + 2)
    return head.find(b"text/event-stream", at, end if end >= 0 else len(head)) >= 0
