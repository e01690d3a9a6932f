# -- the upstream side: one keep-alive connection, its response parsed (upstream.pxd) ----


cdef extern from "_respscan.h":
    # The response's checks and its body's framing, in C (see there).
    int RMF_MORE
    int RMF_BODY_END
    int RMF_E_LF
    int RMF_E_CONTENT_LENGTH
    int RMF_CK_SIZE0
    ctypedef struct rmf_chunk_t:
        int state
        unsigned long long left
    const char* rmf_resp_error(int code)
    int rmf_status_line(const char* buf, Py_ssize_t pos, Py_ssize_t n, int* status,
                        int* http11, Py_ssize_t* eol)
    int rmf_header_line(const char* buf, Py_ssize_t pos, Py_ssize_t n, Py_ssize_t* colon,
                        Py_ssize_t* eol)
    int rmf_chunked(rmf_chunk_t* ck, const char* buf, Py_ssize_t* pos, Py_ssize_t n,
                    Py_ssize_t* at, Py_ssize_t* length)
    int rmf_head_check(const char* buf, Py_ssize_t* start, Py_ssize_t n, int first)


cdef enum:
    # The largest response head (with the interim ones gathered with it) read before
    # it is refused with 502, as nginx refuses one past proxy_buffer_size ("upstream
    # sent too big header"): without it, a head that never ended was gathered without
    # bound (and copied whole on every read).
    RESPONSE_HEAD_LIMIT = 65536


cdef inline _keep_slice(_Pieces* kept, list out, const char* at, Py_ssize_t size):
    """Note a slice of a response head to forward (joined by _kept_joined); when the
    pieces are full, the ones noted go into `out` as one bytes first."""
    if kept.count == _MAX_PIECES:
        out.append(_kept_joined(kept))
    kept.data[kept.count] = at
    kept.size[kept.count] = size
    kept.total += size
    kept.count += 1


cdef bytes _kept_joined(_Pieces* kept):
    """The slices noted so far as one bytes; `kept` is emptied."""
    cdef _Pieces none
    cdef bytes joined
    if kept.count == 1:
        joined = PyBytes_FromStringAndSize(kept.data[0], kept.size[0])  # (most heads)
    else:
        none.count = 0
        none.total = 0
        joined = _join_pieces(kept, None, &none)
    kept.count = 0
    kept.total = 0
    return joined


cdef class UpstreamConnection:
    """One keep-alive connection to an upstream: writes a request, parses the response.

    Hop-by-hop headers are dropped here; the framing (Content-Length or
    chunked) is reported and the client side decides how to frame it onward.
    """

    def __cinit__(self):
        self.out_fd = -1  # (until connection_made: through the transport)

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
        self._switching = False
        self._junk = False
        self._bad_coding = False
        self._complete_pending = False
        self._discard = False
        self._conn_close = False
        self._conn_keep_alive = False
        self._http11 = False
        self._status = 0
        self._body_left = 0
        self._ck_state = RMF_CK_SIZE0
        self._ck_left = 0
        self._head_checked = 0

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
                # Only what a head within the limit may still take: the rest of a big
                # read is the body (read from `data` once the head ends, see _parse).
                keep = RESPONSE_HEAD_LIMIT + 4 - PyBytes_GET_SIZE(self._raw)
                if keep <= 0:
                    self._invalid(
                        f"{self.pool.name} sent a response head larger than"
                        f" {RESPONSE_HEAD_LIMIT} bytes"
                    )
                    client._flush()
                    return
                self._head_read = n if keep > n else keep
                self._raw = self._raw + data[:self._head_read]
                self._head_base = PyBytes_AS_STRING(self._raw)
                self._head_len = PyBytes_GET_SIZE(self._raw)
            else:
                self._head_base = data
                self._head_len = self._head_read = n
        self._read = owner  # (for _body: pieces of it go on as Spans, not copies)
        try:
            try:
                self._parse(data, n)
            except _Stop:
                pass  # (the response was given up on: _invalid has answered the client)
            self._read = None
            if self.client is not None:
                if self._discard and not self._complete_pending:
                    # A 5xx given up on for a retry whose body did not come whole in this
                    # read: not worth waiting for, the socket goes.
                    self.client = None
                    self._abort()
                elif self._complete_pending:
                    self._finish(self._keep_alive and not self._junk)
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

    # -- reading the response (_respscan.h checks and frames it) -------------------------

    cdef int _parse(self, const char* data, Py_ssize_t n) except -1:
        """Reads the `n` bytes at `data`: the rest of the head (gathered at _head_base,
        which ends with these bytes), then the body. Raises _Stop once the response is
        refused (_refuse)."""
        cdef Py_ssize_t end, pos = 0, checked
        cdef int rc
        if not self._head_done:
            if self._head_base != data:
                # A head gathered across reads: its new lines are checked (from where
                # the last read's check stopped) before it is walked whole, once ended.
                checked = self._raw_pos + self._head_checked
                rc = rmf_head_check(
                    self._head_base, &checked, self._head_len, self._head_checked == 0
                )
                self._head_checked = checked - self._raw_pos
                if rc == RMF_MORE:
                    return self._head_goes_on()
                if rc:
                    self._refuse(rc)
            while True:
                end = self._headers_complete()
                if end < 0:
                    return self._head_goes_on()
                if self._head_done:
                    break
                # An interim 1xx ended: the answer's head follows it.
            # Where the body starts in these bytes: _head_base ends with the first
            # _head_read of them.
            pos = end - (self._head_len - self._head_read)
            if self._switching:
                self._switch_to_tunnel(data[pos:n])
                return 0
        return self._read_body(data, pos, n)

    cdef int _head_goes_on(self) except -1:
        """The head does not end in this read: refused when it is already too large."""
        if self._head_len - self._raw_pos > RESPONSE_HEAD_LIMIT:
            self._invalid(
                f"{self.pool.name} sent a response head larger than {RESPONSE_HEAD_LIMIT} bytes"
            )
            raise _Stop()
        return 0

    cdef int _read_body(self, const char* data, Py_ssize_t pos, Py_ssize_t n) except -1:
        """The body's bytes in data[pos:n], as its framing says."""
        cdef Py_ssize_t at = 0, length = 0, take
        cdef rmf_chunk_t chunk
        cdef int rc
        if self._no_body:
            self._complete(pos, n)
        elif self._chunked:
            chunk.state = self._ck_state
            chunk.left = self._ck_left
            while True:
                rc = rmf_chunked(&chunk, data, &pos, n, &at, &length)
                self._ck_state = chunk.state
                self._ck_left = chunk.left
                if rc == 0:
                    self._body(data + at, length)
                elif rc == RMF_MORE:
                    break
                elif rc == RMF_BODY_END:
                    self._complete(pos, n)
                    break
                else:
                    self._refuse(rc)
        elif self._content_length >= 0:
            take = n - pos
            if take >= self._body_left:
                take = <Py_ssize_t>self._body_left
            if take:
                self._body_left -= take
                self._body(data + pos, take)
            if self._body_left == 0:
                self._complete(pos + take, n)
        elif n > pos:
            self._body(data + pos, n - pos)  # to the connection's end (connection_lost)
        return 0

    cdef _complete(self, Py_ssize_t pos, Py_ssize_t n):
        # Finished once this read is parsed (see _feed). Bytes after the response's end
        # are a second answer to one request: the upstream is out of sync, the socket
        # is never reused and these bytes are never served to anyone.
        self._complete_pending = True
        self._keep_alive = self._response_keeps_alive()
        if pos < n:
            self._junk = True

    cdef _refuse(self, int code):
        self._invalid(
            f"invalid response from {self.pool.name}: "
            + (<bytes>rmf_resp_error(code)).decode("latin-1")
        )
        raise _Stop()

    cdef Py_ssize_t _headers_complete(self) except -2:
        """Reads the head at _head_base from _raw_pos: where it ends (past its empty
        line), or -1 when it goes on in the next read. An interim 1xx is read and
        skipped (_head_done stays false: the next head follows)."""
        # PERF: the head is checked as its lines are walked, once, and forwarded as a
        # few slices of the raw bytes (_scan_head).
        cdef const char* buf = self._head_base
        cdef Py_ssize_t n = self._head_len, end
        cdef ClientProtocol client = self.client
        cdef list lines = self._scan_head(buf, self._raw_pos, n, None)
        if lines is None:
            return -1
        cdef int status = self._status
        end = self._head_stop
        if end > RESPONSE_HEAD_LIMIT:  # (one read of a head that came whole: see _feed)
            self._invalid(
                f"{self.pool.name} sent a response head larger than {RESPONSE_HEAD_LIMIT} bytes"
            )
            raise _Stop()
        if status < 100:
            # Not a status at all: taken for a 1xx, it was skipped and its body went to
            # the client before any head.
            self._invalid(f"{self.pool.name} sent an invalid status code {status:03d}")
            raise _Stop()
        if status < 200 and status != 101:
            # 1xx interim responses (100 Continue, 103 Early Hints) end here, and never
            # have a body (RFC 9110 §15.2); the final response follows.
            self._reset_response()
            self._raw_pos = end + 4
            return end + 4
        self._head_done = True
        cdef bint no_body = self.head_request or status == 204 or status == 304 or status == 101
        self._no_body = no_body
        self._body_left = self._content_length
        if client is None:
            return end + 4
        if self._bad_coding:
            self._invalid(
                f"{self.pool.name} sent a response whose transfer coding is not one chunked"
            )
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
        if status == 204 and self._content_length >= 0:
            # RFC 9110 §8.6: never in a 204 (nginx drops it too); a client that
            # believed it would wait for a body that never comes.
            lines = _drop_content_length(lines)
        if status >= 500 and client.retry_response(status, buf[self._raw_pos:end]):
            self._discard = True  # the request went to another replica: this answer is dropped
        else:
            client.response_head(status, self._status_line, self._reason, lines,
                                 self._content_length, self._chunked, no_body)
        return end + 4

    cdef int _body(self, const char* at, size_t n) except -1:
        cdef object read = self._read
        if self.client is not None and not self._discard:
            if n >= SPAN_MIN and read is not None:
                self.client.response_span(read, at, n)
            else:
                self.client.response_body(at[:n])
        return 0

    # -- internals -----------------------------------------------------------------

    cdef bint _response_keeps_alive(self):
        """RFC 9112 §9.3: HTTP/1.1 unless `close`; HTTP/1.0 only with `keep-alive`."""
        cdef list tokens = self._connection_tokens
        if self._http11:
            return not (self._conn_close or (tokens is not None and b"close" in tokens))
        return self._conn_keep_alive or (tokens is not None and b"keep-alive" in tokens)

    cdef list _scan_head(self, const char* buf, Py_ssize_t start, Py_ssize_t n, object drop):
        """The head's header lines to forward, as copies of `buf`'s, hop-by-hop ones left
        out; None when the head does not end before `n` (refused with _Stop if invalid).

        Checks each line as it walks it (_respscan.h), and notes the status, the
        framing (Content-Length, chunked), the Connection tokens and the Upgrade
        value. The head starts at `start`; where its CRLFCRLF starts goes in
        `_head_stop`. PERF: C scanning only; a Python object is made per slice kept
        and per header read (usually three slices and one Content-Length).
        """
        cdef Py_ssize_t eol = 0, line, colon = 0, seg, a, b
        cdef int kind, status = 0, http11 = 0
        cdef int rc = rmf_status_line(buf, start, n, &status, &http11, &eol)
        if rc:
            if rc == RMF_MORE:
                self._head_checked = 0
                return None
            self._refuse(rc)
        self._status = status
        self._http11 = http11
        # The reason phrase is needed only to write another status line (the
        # HTTP/1.1 one goes on as it came): after "HTTP/1.0 200 ".
        self._status_line = buf[start:eol + 2] if http11 else None
        self._reason = buf[start + 13:eol] if not http11 and eol > start + 13 else b""
        self._content_length = -1
        self._chunked = False
        self._connection_tokens = None
        # The slices to forward, joined into one bytes at the end (PERF: a hop-by-hop
        # header amid the head, `Connection: keep-alive` from most servers, cut it in
        # two: two bytes made, then joined again by the session step's scan).
        cdef _Pieces kept
        kept.count = 0
        kept.total = 0
        cdef list out = []
        line = seg = eol + 2
        while True:
            if line + 1 >= n:
                self._head_checked = line - start  # (the next read's check starts there)
                return None
            if buf[line] == 13:
                if buf[line + 1] != 10:
                    self._refuse(RMF_E_LF)
                break  # the empty line
            rc = rmf_header_line(buf, line, n, &colon, &eol)
            if rc:
                if rc == RMF_MORE:
                    self._head_checked = line - start
                    return None
                self._refuse(rc)
            kind = _header_kind(buf + line, colon - line)
            if kind == HDR_PROXY or kind == HDR_HOST or kind >= HDR_EXPECT:
                kind = HDR_OTHER  # end to end in a response
            if kind == HDR_OTHER and drop is not None and buf[line:colon].lower() in drop:
                kind = HDR_HOP
            if kind != HDR_OTHER:
                a = colon + 1
                b = eol
                if kind != HDR_HOP:
                    # The value without its optional whitespace.
                    while a < b and (buf[a] == 32 or buf[a] == 9):
                        a += 1
                    while b > a and (buf[b - 1] == 32 or buf[b - 1] == 9):
                        b -= 1
                if kind == HDR_CONTENT_LENGTH:
                    # Read, and forwarded as it came. One, of digits only (a list, a
                    # sign, a second one: two framings an agent could read two ways).
                    if self._content_length >= 0 or b == a or b - a > 18:
                        self._refuse(RMF_E_CONTENT_LENGTH)
                    self._content_length = 0
                    while a < b:
                        if not 48 <= buf[a] <= 57:
                            self._refuse(RMF_E_CONTENT_LENGTH)
                        self._content_length = self._content_length * 10 + (buf[a] - 48)
                        a += 1
                elif kind == HDR_TRANSFER_ENCODING:
                    # Only plain chunked is forwarded (re-chunked); another coding
                    # would have to reach the client intact: refused, as nginx does.
                    # (So is a second Transfer-Encoding: chunked twice.)
                    if self._chunked or b - a != 7 or not _name_is(buf + a, b"chunked", 7):
                        self._bad_coding = True
                    self._chunked = True
                elif kind == HDR_CONNECTION:
                    # PERF: the usual values are compared where they are, no bytes made:
                    # `keep-alive` / `close` alone name no other header.
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
                        _keep_slice(&kept, out, buf + seg, line - seg)
                    seg = eol + 2
            line = eol + 2
        if self._chunked and self._content_length >= 0:
            # RFC 9112 §6.1: a sender must not send both; which one the client would
            # believe is the smuggling question. Refused, as llhttp did.
            self._refuse(RMF_E_CONTENT_LENGTH)
        self._head_stop = line - 2
        if line > seg:
            _keep_slice(&kept, out, buf + seg, line - seg)  # (to the last line's CRLF)
        if kept.count:
            out.append(_kept_joined(&kept))
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


# -- _respscan.h from Python, for its tests (tests/test_dataplane_respscan.py) --------


def scan_response_head(bytes data not None):
    """The checks _scan_head makes, on the head at the start of `data`: (status, HTTP/1.1,
    [(name, raw value)...], where the head ends past its empty line); None when it does
    not end in `data`. Raises ValueError naming what is refused."""
    cdef const char* buf = PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data), eol = 0, colon = 0, line
    cdef int status = 0, http11 = 0
    cdef int rc = rmf_status_line(buf, 0, n, &status, &http11, &eol)
    cdef list fields = []
    line = eol + 2
    while rc == 0:
        if line + 1 >= n:
            return None
        if buf[line] == 13:
            if buf[line + 1] != 10:
                rc = RMF_E_LF
                break
            return status, bool(http11), fields, line + 2
        rc = rmf_header_line(buf, line, n, &colon, &eol)
        if rc == 0:
            fields.append((data[line:colon], data[colon + 1:eol]))
            line = eol + 2
    if rc == RMF_MORE:
        return None
    raise ValueError((<bytes>rmf_resp_error(rc)).decode("latin-1"))


def read_chunked(bytes data not None, cuts=()):
    """rmf_chunked on `data` given in pieces cut at the offsets `cuts` (as reads):
    (the body, where it ends in `data`); None when it does not end there. Raises
    ValueError naming what is refused."""
    cdef rmf_chunk_t chunk
    chunk.state = RMF_CK_SIZE0
    chunk.left = 0
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data), start = 0, stop, pos, at = 0, length = 0
    cdef int rc
    cdef bytes piece
    body = bytearray()
    for stop in [*sorted(c for c in cuts if 0 < c < n), n]:
        # Each piece a bytes of its own: the scan must not read past a read's end.
        piece = data[start:stop]
        pos = 0
        while True:
            rc = rmf_chunked(&chunk, PyBytes_AS_STRING(piece), &pos, len(piece), &at, &length)
            if rc == 0:
                body += piece[at:at + length]
            elif rc == RMF_MORE:
                break
            elif rc == RMF_BODY_END:
                return bytes(body), start + pos
            else:
                raise ValueError((<bytes>rmf_resp_error(rc)).decode("latin-1"))
        start = stop
    return None
