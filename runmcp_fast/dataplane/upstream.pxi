# -- the upstream side: one keep-alive connection, its response parsed (upstream.pxd) ----


cdef enum:
    # The largest response head (interim ones included) read before it is refused
    # with 502, as nginx refuses one past proxy_buffer_size ("upstream sent too big
    # header"): without it, a head that never ended was gathered without bound
    # (and copied whole on every read).
    RESPONSE_HEAD_LIMIT = 65536


cdef class UpstreamConnection:
    """One keep-alive connection to an upstream: writes a request, parses the response.

    Hop-by-hop headers are dropped here; the framing (Content-Length or
    chunked) is reported and the client side decides how to frame it onward.
    """

    def __cinit__(self):
        self.out_fd = -1  # (until connection_made: through the transport)
        # In __cinit__: an UpstreamConnection however made has its parser ready.
        self.parser = malloc(sizeof(llhttp_t))
        if self.parser == NULL:
            raise MemoryError()
        llhttp_init(<llhttp_t*>self.parser, HTTP_RESPONSE, &_RESPONSE_SETTINGS)
        (<llhttp_t*>self.parser).data = <void*>self  # borrowed: `self` owns the parser

    def __dealloc__(self):
        free(self.parser)

    def __init__(self, Pool pool):
        self.pool = pool
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
        self._discard = False
        self._conn_close = False
        self._conn_keep_alive = False
        self._http11 = False

    # -- used by the client side ------------------------------------------------

    cdef bind(self, ClientProtocol client, bint head_request, double read_timeout,
              double idle_timeout, double now):
        self.client = client
        self.head_request = head_request
        self.got_response = False
        self.read_timeout = read_timeout
        self.idle_timeout = idle_timeout
        self.deadline = now + read_timeout
        self.streaming = False
        self.bound_at_requests = self.requests
        self._raw = None
        self._raw_pos = 0
        self._head_base = NULL

    cdef write(self, list parts):
        if self.transport is not None:
            self.out_queued = send_out(self.transport, self.out_fd, self.out_queued, parts)

    cdef stream_mode(self):
        """The response is a long-lived event stream: the read timeout no longer applies."""
        self.streaming = True
        self.deadline = 0.0

    cdef pause_reading(self):
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            if self.reads is not None:
                self.reads.pause()
            else:
                self.transport.pause_reading()

    cdef resume_reading(self):
        if self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = False
            if self.reads is not None:
                self.reads.resume()
            else:
                self.transport.resume_reading()

    @cython.binding(False)
    @cython.always_allow_keywords(False)
    def _readable(self):
        # The loop found our duplicate of the socket readable (reads.pxi). PERF: a
        # builtin method taking no arguments (METH_NOARGS, no binding): the loop calls
        # it once a wake-up, and a cyfunction's call through its keyword-taking entry
        # cost ~80 instructions more (callgrind).
        self._read_once()

    cdef bint reads_alive(self, bint look) except -1:
        """False when a reset the loop did not report (reads.pxi: poll_lost) ended the
        connection. Asked when the pool hands it out, and by the pool's sweep, which
        also `look`s (socket_ready): an idle connection has nothing to read, so an end,
        a reset or stray bytes there are read now and close it."""
        cdef OwnReads reads = self.reads
        if reads is None or not reads.look_again(look):
            return True
        return self.reads is not None and not self.closed

    cdef _read_once(self):
        # Read into the loop's buffer, as the buffered protocol's reads did.
        cdef Pool pool = self.pool
        cdef bytearray buf = pool._read_buffer
        cdef Py_ssize_t n
        if self.reads is None:
            return
        n = read_some(self.reads.fd, PyByteArray_AS_STRING(buf), <size_t>len(buf))
        try:
            if n > 0:
                self._feed(buf, PyByteArray_AS_STRING(buf), n, True)
            elif n == 0:
                self._release_reads()
                if not self.eof_received() and self.transport is not None:
                    self.close()
            elif n == -2:
                self._release_reads()
                self._abort()  # (a reset: connection_lost follows, as from the transport's read)
        except BaseException:
            # As the transport does when a read's callback raises: the connection goes.
            self._release_reads()
            self._abort()
            raise

    cdef _release_reads(self):
        """Our reads end: the connection closes."""
        if self.reads is not None:
            self.reads.release()
            self.reads = None

    cdef _abort(self):
        self._release_reads()
        if self.transport is not None:
            self.out_fd = -1
            self.transport.abort()

    cdef abandon(self):
        """The client went away mid-exchange: this socket is out of sync, drop it."""
        self.client = None
        self.close()

    cpdef close(self):
        if self.transport is not None and not self.closed:
            self._release_reads()  # (as transport.close() stops its own reads)
            self.out_fd = -1  # closing: anything later goes to the transport (which drops it)
            self.transport.close()

    cdef timed_out(self):
        cdef ClientProtocol client = self.client
        self.client = None
        self.pool.timeouts += 1
        if client is not None:
            if self._head_done:
                client.response_failed(504, "the upstream stopped sending the response", 0, False)
            elif self.got_response:
                client.response_failed(
                    504, f"{self.pool.name} stopped sending the response head", WHY_TIMEOUT, False
                )
            else:
                client.response_failed(
                    504, f"no response from {self.pool.name} within {self.read_timeout:g} s",
                    WHY_TIMEOUT, False,
                )
            client._flush()
        self._abort()

    # -- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        self.out_fd = out_fd(transport)

    def data_received(self, bytes data):
        # TLS upstreams (a plain one reads into a buffer: BufferedUpstreamConnection).
        self._feed(data, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), False)

    cdef _feed(self, object owner, const char* data, Py_ssize_t n, bint reused):
        """Parse the `n` bytes read at `data`, held by `owner`: a bytes of their own, or
        (`reused`) the loop's read buffer, which the next read overwrites: nothing may
        point into it once this returns (the client's _flush writes or copies the
        Spans of it; an unfinished head is copied)."""
        cdef ClientProtocol client = self.client
        if client is None:
            # Bytes on an idle connection: the upstream is out of sync (or says
            # goodbye with a 408); never hand this socket out again.
            self.close()
            return
        if self.tunnel:
            try:
                client.tunnel_data(span(owner, data, n) if reused else owner)
            finally:
                if reused and client.pending:
                    _own_spans(client.pending)
            return
        if not self.streaming:
            # The first-byte timeout runs to the first byte; then the idle one between reads.
            self.deadline = monotonic() + self.idle_timeout
        self.got_response = True
        if not self._head_done:
            # The head is parsed where it lies (almost always one read: no copy);
            # one that spans reads is gathered in _raw.
            if self._raw is not None:
                if PyBytes_GET_SIZE(self._raw) + n > RESPONSE_HEAD_LIMIT:
                    self._invalid(
                        f"{self.pool.name} sent a response head larger than"
                        f" {RESPONSE_HEAD_LIMIT} bytes"
                    )
                    client._flush()
                    return
                self._raw = self._raw + data[:n]
                self._head_base = PyBytes_AS_STRING(self._raw)
                self._head_len = PyBytes_GET_SIZE(self._raw)
            else:
                self._head_base = data
                self._head_len = n
        self._read = owner  # (for _body: pieces of it go on as Spans, not copies)
        cdef llhttp_errno_t err
        try:
            err = llhttp_execute(<llhttp_t*>self.parser, data, n)
            self._read = None
            if err != HPE_OK:
                self._parse_failed(err, data, n)
            if self.client is not None:
                if self._discard and not (self._complete_pending or self._head_pending):
                    # A 5xx given up on for a retry whose body did not come whole in this
                    # read: not worth waiting for, the socket goes.
                    self.client = None
                    self._abort()
                elif self._complete_pending:
                    self._finish(self._keep_alive and not self._junk)
                elif self._head_pending:
                    keep_alive = self._response_keeps_alive() and not self._junk
                    # llhttp still expects the body a HEAD response never has: a new parser.
                    llhttp_init(<llhttp_t*>self.parser, HTTP_RESPONSE, &_RESPONSE_SETTINGS)
                    (<llhttp_t*>self.parser).data = <void*>self
                    self._finish(keep_alive)
            if self._head_base == data and not self._head_done and self.client is not None:
                # A head that goes on in the next read: its start is kept (bind and
                # _finish clear _head_base, so a new exchange's head never gets these);
                # none of it yet (a 1xx ended the read): the next read starts it.
                self._raw = data[self._raw_pos:n] if self._raw_pos < n else None
                self._raw_pos = 0
            client._flush()
        finally:
            self._read = None
            self._head_base = NULL
            if reused and client.pending:
                # Not flushed (a callback raised): never left pointing into the buffer.
                _own_spans(client.pending)

    def eof_received(self):
        if self.tunnel and self.client is not None:
            self.tunnel_eof = True
            if self.client.tunnel_eof:
                # The client finished sending first: both ends are done, the tunnel
                # ends (our close takes the client's along, see ClientProtocol).
                return None
            if self.client.transport is not None:
                if not self.client.transport.can_write_eof():
                    # A TLS client connection can not be half-closed (both loops'
                    # SSL transports raise): the tunnel ends, what was sent to the
                    # client is flushed first (tunnel_closed).
                    return None
                self.client.out_fd = -1  # (a write after write_eof is the transport's error)
                self.client.transport.write_eof()  # pass the half-close on
            return True
        return None  # close our side too

    def connection_lost(self, exc):
        self._release_reads()
        self.closed = True
        self.out_fd = -1
        self.pool.connection_closed()
        self.parse_error = None
        self.transport = None
        cdef ClientProtocol client = self.client
        if client is None or self._discard:
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
                WHY_RESET, self.bound_at_requests > 0,
            )
        else:
            client.response_failed(
                502, f"{self.pool.name} closed the connection mid-response",
                0 if self._head_done else WHY_RESET, False,
            )
        client._flush()

    def pause_writing(self):
        if self.client is not None:
            self.client.upstream_write_paused(True)

    def resume_writing(self):
        if self.client is not None:
            self.client.upstream_write_paused(False)

    cdef _parse_failed(self, int err, const char* data, Py_ssize_t n):
        """llhttp_execute stopped before the end of the `n` bytes at `data`: a 101's
        switch, a callback that gave up on the response (_Stop), or bytes that are not HTTP."""
        cdef Py_ssize_t at
        if err == HPE_PAUSED_UPGRADE and (<llhttp_t*>self.parser).upgrade:
            at = llhttp_get_error_pos(<llhttp_t*>self.parser) - data
            llhttp_resume_after_upgrade(<llhttp_t*>self.parser)
            self._switch_to_tunnel(data[at:n])
            return
        exc = self.parse_error
        if exc is not None:
            self.parse_error = None
            if isinstance(exc, _Stop):
                return
            raise exc  # a bug in a callback: the loop's exception handler logs it
        self._invalid(
            f"invalid response from {self.pool.name}: "
            + _parse_error_detail(<llhttp_t*>self.parser, <llhttp_errno_t>err)
        )

    # -- parser callbacks (parse.pxi's C functions call these) ------------------------

    cdef int _headers_complete(self) except -1:
        # PERF: no on_header callback: the head is read here, once, from the raw
        # bytes llhttp has just validated (strict: CRLF lines, no folding), and
        # forwarded as a few slices of them; the status code too.
        cdef const char* buf = self._head_base
        if buf == NULL:
            # (a head where none was expected: llhttp stops a second message first)
            self._invalid(f"{self.pool.name} sent a response out of turn")
            raise _Stop()
        cdef Py_ssize_t n = self._head_len, end
        # (llhttp has checked the status line: three digits after the version's space)
        cdef int status = _status_code(buf, self._raw_pos, n)
        cdef bint interim = status < 200 and status != 101  # a 1xx before the answer
        cdef ClientProtocol client = self.client
        cdef list lines = None
        if client is not None and not interim:
            # PERF: the head's end is where the scan of its lines stops: no pass of its
            # own over the head (~300 instructions a tools/call's response, callgrind).
            lines = self._scan_head(buf, self._raw_pos, n, None)
            end = self._head_stop
        else:
            end = _head_end(buf, self._raw_pos, n)
        if end > RESPONSE_HEAD_LIMIT:  # (one read of a head that came whole: see _feed)
            self._invalid(
                f"{self.pool.name} sent a response head larger than {RESPONSE_HEAD_LIMIT} bytes"
            )
            raise _Stop()
        if status < 100:
            # (llhttp takes any three digits) Not a status at all: taken for a 1xx,
            # it was skipped and its body went to the client before any head.
            self._invalid(f"{self.pool.name} sent an invalid status code {status:03d}")
            raise _Stop()
        if interim:
            # 1xx interim responses (100 Continue, 103 Early Hints) end here; the
            # final response follows on the same parser.
            self._reset_response()
            self._raw_pos = end + 4
            return 0
        self._head_done = True
        if client is None:
            return 0
        if self._bad_coding:
            self._invalid(f"{self.pool.name} sent a transfer coding other than chunked")
            raise _Stop()
        if self._connection_tokens:
            drop = {t for t in self._connection_tokens if t and t not in (b"close", b"keep-alive", b"upgrade")}
            if drop:
                lines = self._scan_head(buf, self._raw_pos, n, drop)
        if status == 101:
            if client.active is None or client.active.upgrade is None:
                # RFC 9110 §15.2.2: no switch the request did not ask for. Passed on,
                # it turned the client's connection into a tunnel: its next requests
                # went to this upstream as raw bytes, past routing and steps.
                self._invalid(f"{self.pool.name} switched protocols unasked")
                raise _Stop()
            self._switching = True
            lines.append(b"Upgrade: " + self._upgrade_value + b"\r\nConnection: upgrade\r\n")
        cdef bint no_body = self.head_request or status == 204 or status == 304 or status == 101
        if status == 204 and self._content_length >= 0:
            # RFC 9110 §8.6: never in a 204 (nginx drops it too); a client that
            # believed it would wait for a body that never comes.
            lines = _drop_content_length(lines)
        self._no_body = no_body
        if status >= 500 and client.retry_response(status, buf[self._raw_pos:end]):
            self._discard = True  # the request went to another replica: this answer is dropped
        else:
            client.response_head(status, self._status_line, self._reason, lines,
                                 self._content_length, self._chunked, no_body)
        if self.head_request:
            # llhttp would wait for a HEAD response's Content-Length bytes: end the
            # exchange once this buffer is parsed (see data_received).
            self._head_pending = True
        return 0

    cdef int _message_begin(self) except -1:
        if self._complete_pending or self._head_pending:
            # A second response to one request: the upstream is out of sync.
            # Stop here; these bytes are never served to anyone.
            self._junk = True
            raise _Stop()
        return 0

    cdef int _body(self, const char* at, size_t n) except -1:
        if self._head_pending:
            self._junk = True  # a body after a HEAD response: out of sync
            raise _Stop()
        cdef object read = self._read
        if self.client is not None and not self._discard:
            if n >= SPAN_MIN and read is not None:
                self.client.response_span(read, at, n)
            else:
                self.client.response_body(at[:n])
        return 0

    cdef int _message_complete(self) except -1:
        if not self._head_done or self._head_pending or self._switching:
            return 0  # the end of a 1xx, of a HEAD response finished after parsing, or a 101
        # Finished once this read is parsed (see data_received): whatever else
        # the read holds must be checked before the socket is reused.
        self._complete_pending = True
        self._keep_alive = self._response_keeps_alive()
        return 0

    # -- internals -----------------------------------------------------------------

    cdef bint _response_keeps_alive(self):
        """RFC 9112 §9.3: HTTP/1.1 unless `close`; HTTP/1.0 only with `keep-alive`."""
        cdef list tokens = self._connection_tokens
        if self._http11:
            return not (self._conn_close or (tokens is not None and b"close" in tokens))
        return self._conn_keep_alive or (tokens is not None and b"keep-alive" in tokens)

    cdef list _scan_head(self, const char* buf, Py_ssize_t start, Py_ssize_t n, object drop):
        """The head's header lines to forward, as copies of `buf`'s, hop-by-hop ones left out.

        Notes the framing (Content-Length, chunked), the Connection tokens and
        the Upgrade value. The head starts at `start`; it ends at the empty line
        llhttp has seen before `n`: where its CRLFCRLF starts goes in `_head_stop`.
        PERF: C scanning only; a Python object is made per slice kept and per
        header read (usually three slices and one Content-Length).
        """
        cdef Py_ssize_t eol = _crlf(buf, start, n)
        cdef Py_ssize_t line, colon, seg, a, b
        cdef const char* found
        cdef int kind
        cdef list out = []
        if eol - start >= 9 and memcmp(buf + start, b"HTTP/1.1 ", 9) == 0:
            self._status_line = buf[start:eol + 2]
            self._http11 = True
        else:
            self._status_line = None
            self._http11 = eol - start >= 8 and memcmp(buf + start, b"HTTP/1.1", 8) == 0
        # The reason phrase follows the second space of the status line: needed
        # only to write another status line (the HTTP/1.1 one goes on as it came).
        self._reason = b""
        if self._status_line is None:
            found = <const char*>memchr(buf + start, 32, eol - start)
            if found != NULL:
                found = <const char*>memchr(found + 1, 32, eol - (found + 1 - buf))
            if found != NULL:
                self._reason = buf[found + 1 - buf:eol]
        self._content_length = -1
        self._chunked = False
        self._connection_tokens = None
        line = seg = eol + 2
        # Up to the empty line (a header line never starts with a CR: llhttp, strict).
        while line + 1 < n and buf[line] != 13:
            eol = _crlf(buf, line, n)
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
                    # PERF: the usual values are compared where they are, no bytes made.
                    if kind == HDR_TRANSFER_ENCODING:
                        # Only plain chunked is forwarded (re-chunked); another coding
                        # would have to reach the client intact: refused, as nginx does.
                        self._chunked = True
                        if b - a != 7 or not _name_is(buf + a, b"chunked", 7):
                            self._bad_coding = True
                    elif kind == HDR_CONNECTION:
                        # `keep-alive` / `close` alone name no other header: the usual case.
                        if b - a == 10 and _name_is(buf + a, b"keep-alive", 10):
                            self._conn_keep_alive = True
                        elif b - a == 5 and _name_is(buf + a, b"close", 5):
                            self._conn_close = True
                        else:
                            if self._connection_tokens is None:
                                self._connection_tokens = []
                            for token in buf[a:b].split(b","):
                                self._connection_tokens.append(token.strip().lower())
                    elif kind == HDR_UPGRADE:
                        self._upgrade_value = buf[a:b]
                if kind != HDR_CONTENT_LENGTH:
                    if line > seg:
                        out.append(buf[seg:line])
                    seg = eol + 2
            line = eol + 2
        self._head_stop = line - 2
        if line > seg:
            out.append(buf[seg:line])  # (to the last header line's CRLF)
        return out

    cdef _finish(self, bint keep_alive):
        cdef ClientProtocol client = self.client if not self._discard else None
        self.client = None
        self.requests += 1
        self.deadline = 0.0
        self._reset_response()
        self._raw = None
        self._raw_pos = 0
        self._head_base = NULL
        self.resume_reading()
        # Back to the pool first: the client's next pipelined request may want it.
        if keep_alive and self.requests < self.pool.max_requests and not self.closed:
            self.pool.release(self)
        else:
            self.close()
        if client is not None:
            client.response_complete()

    cdef _invalid(self, str detail):
        cdef ClientProtocol client = self.client if not self._discard else None
        self.client = None
        if client is not None:
            client.response_failed(502, detail, 0 if self._head_done else WHY_502, False)
        self._abort()

    cdef _switch_to_tunnel(self, bytes rest):
        cdef ClientProtocol client = self.client
        if client is None or not self._head_done:
            self._invalid(f"{self.pool.name} switched protocols unasked")
            return
        self.tunnel = True
        self.deadline = 0.0
        if rest:
            client.tunnel_data(rest)


cdef class BufferedUpstreamConnection(UpstreamConnection):
    """A plain-TCP upstream connection that reads into its loop's reused buffer.

    PERF (bench/load/instructions.py get-64k, callgrind): with data_received the
    loop copies every read into a new bytes: a malloc and a memcpy of the whole
    body, about as many instructions as bytes proxied (uvloop's read goes to its
    own buffer first). As an asyncio.BufferedProtocol (get_buffer/buffer_updated,
    which both loops support for TCP) the socket is read straight into one buffer
    and the body goes out of it by writev, as nginx does with its buffers.

    One buffer per event loop, shared by every such connection on it (as uvloop's
    own): a loop parses one read at a time, and nothing points into the buffer
    after buffer_updated returns (see _feed): what the client's socket did not
    take was copied into its transport's buffer (send_out), an unfinished head
    into _raw. TLS upstreams keep data_received (the SSL transports' buffered
    paths differ by loop), see Pool._connect.
    """

    def get_buffer(self, Py_ssize_t sizehint):
        cdef Pool pool = self.pool
        if pool._read_buffer is None:
            pool._read_buffer = _read_buffer_of(pool._loop)
        return pool._read_buffer

    def buffer_updated(self, Py_ssize_t nbytes):
        cdef bytearray buf = self.pool._read_buffer
        self._feed(buf, PyByteArray_AS_STRING(buf), nbytes, True)
        self.stream_reads += 1
        if (
            self.stream_reads == 2 and self.reads is None and not self.reading_paused
            and not self.closed and self.transport is not None
        ):
            # A pooled connection's reads from now on are ours (reads.pxi).
            self.reads = take_reads(self.transport, self.out_fd, self.pool._loop, self._readable)


_READ_BUFFERS = weakref.WeakKeyDictionary()  # event loop -> its read buffer


cdef bytearray _read_buffer_of(loop):
    buf = _READ_BUFFERS.get(loop)
    if buf is None:
        buf = _READ_BUFFERS[loop] = bytearray(READ_BUFFER)
    return buf


class _BufferedProtocol(BufferedUpstreamConnection, asyncio.BufferedProtocol):
    # What Pool opens: asyncio's selector loop reads into get_buffer only for an
    # instance of asyncio.BufferedProtocol (uvloop checks for get_buffer itself).
    __slots__ = ()
