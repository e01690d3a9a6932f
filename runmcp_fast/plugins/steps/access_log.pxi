# -- access-log: one JSON line per exchange, written in C into a batch its sink takes -------
#
# PERF: the line is built here, in C, straight into the step's LogBuffer: no
# dict, no Python string, no encoder. The values are read from the request's
# fields (bytes and C numbers; the few str of the config are UTF-8 cached by
# CPython), their total size is known before a byte is written (so the buffer
# grows at most once per line), strings are escaped per RFC 8259 with runs of
# plain bytes copied by memcpy, numbers formatted by hand, and the time's
# "YYYY-MM-DDTHH:MM:SS" is formatted once a second. The buffer is handed to
# the sink (builtin/log_sinks.py) at each tick of the gateway's clock, or at
# once when it holds FLUSH_AT bytes: never a write per request.
# bench/test_access_log.py measures it against the orjson record of old.


# The fields a line may have, in the order they are written (docs/plugins/access-log.md).
ACCESS_LOG_FIELDS = (
    "time",  # when the request began (its head read), RFC 3339 UTC with milliseconds
    "request_id",  # req.request_id (request-id)
    "client",  # req.client_ip: the peer, or the client behind trusted proxies (real-ip)
    "peer",  # the connection's peer, when it differs from client
    "method",
    "host",  # the Host header (or the absolute-form authority)
    "path",  # the path, without the query unless `query: true`
    "status",  # 499: the client left before its answer
    "duration_ms",  # from its head read to the exchange's end, 3 decimals
    "service",  # the service's label (tenant/name)
    "route",  # the operation id, or the route's name
    "consumer",  # who authentication found it to be
    "upstream",  # the replica's pool (scheme://host:port)
    "upstream_ms",  # request written upstream to the response head read
    "bytes_in",  # request body bytes read
    "bytes_out",  # response bytes sent (the body; the whole answer when the gateway made it)
    "mcp_method",  # the JSON-RPC method(s) of an MCP POST
    "mcp_tool",  # the tool(s) of an MCP tools/call
    "user_agent",
    "referer",
)
ACCESS_LOG_DEFAULT = (
    "time", "request_id", "client", "peer", "method", "path", "status", "duration_ms",
    "service", "route", "consumer", "upstream", "upstream_ms", "bytes_in", "bytes_out",
    "mcp_method", "mcp_tool",
)  # fmt: skip

cdef enum:
    F_TIME, F_REQUEST_ID, F_CLIENT, F_PEER, F_METHOD, F_HOST, F_PATH, F_STATUS, F_DURATION,
    F_SERVICE, F_ROUTE, F_CONSUMER, F_UPSTREAM, F_UPSTREAM_MS, F_BYTES_IN, F_BYTES_OUT,
    F_MCP_METHOD, F_MCP_TOOL, F_USER_AGENT, F_REFERER, F_COUNT

    FRAME_LINE = 0  # the line and "\n" (stdout, a file; syslog over UDP: one datagram each)
    FRAME_OCTETS = 1  # RFC 6587 octet counting: "<length> <message>" (syslog over TCP)

    FLUSH_AT = 64 * 1024  # a batch this large goes to its sink at once, not at the tick
    OCTET_ROOM = 12  # room for "<length> " before a message, moved back once it is known


# For each byte: 0 copied as it is; 1 escaped (", \, control characters, DEL);
# 2 the start of a UTF-8 sequence, checked.
cdef unsigned char _JSON_CLASS[256]
for _c in range(256):
    _JSON_CLASS[_c] = 1 if _c < 0x20 or _c in (0x22, 0x5C, 0x7F) else (2 if _c >= 0x80 else 0)
assert len(ACCESS_LOG_FIELDS) == F_COUNT


cdef inline Py_ssize_t _utf8_length(const unsigned char* p, Py_ssize_t left) noexcept nogil:
    """The length of the valid UTF-8 sequence at `p` (RFC 3629: no overlong forms, no
    surrogates, nothing past U+10FFFF); 0 when the byte there starts none."""
    cdef unsigned char c = p[0]
    cdef unsigned char lo = 0x80, hi = 0xBF
    cdef Py_ssize_t n, i
    if 0xC2 <= c <= 0xDF:
        n = 2
    elif 0xE0 <= c <= 0xEF:
        n = 3
        if c == 0xE0:
            lo = 0xA0
        elif c == 0xED:
            hi = 0x9F
    elif 0xF0 <= c <= 0xF4:
        n = 4
        if c == 0xF0:
            lo = 0x90
        elif c == 0xF4:
            hi = 0x8F
    else:
        return 0
    if left < n or not (lo <= p[1] <= hi):
        return 0
    for i in range(2, n):
        if not (0x80 <= p[i] <= 0xBF):
            return 0
    return n


cdef Py_ssize_t _escape(char* out, const char* src, Py_ssize_t n) noexcept nogil:
    """`src` as the inside of a JSON string (RFC 8259), into `out` (room for 6 * n bytes).

    ", \\ and control characters are escaped (\\n, \\r, \\t, \\b, \\f, else \\u00XX;
    DEL too); valid UTF-8 is copied as it is; a byte that is no part of valid
    UTF-8 is written \\u00XX (its value, as Latin-1 reads it): the line stays
    valid UTF-8 and the byte can be told.
    """
    cdef const unsigned char* p = <const unsigned char*>src
    cdef Py_ssize_t i = 0, run = 0, w = 0, k
    cdef unsigned char c, kind
    while i < n:
        c = p[i]
        kind = _JSON_CLASS[c]
        if kind == 0:
            i += 1
            continue
        if kind == 2:
            k = _utf8_length(p + i, n - i)
            if k:
                i += k
                continue
        if i > run:
            memcpy(out + w, src + run, i - run)
            w += i - run
        out[w] = 92  # backslash
        if c == 0x22 or c == 0x5C:
            out[w + 1] = c
            w += 2
        elif c == 10:
            out[w + 1] = 110  # n
            w += 2
        elif c == 13:
            out[w + 1] = 114  # r
            w += 2
        elif c == 9:
            out[w + 1] = 116  # t
            w += 2
        elif c == 8:
            out[w + 1] = 98  # b
            w += 2
        elif c == 12:
            out[w + 1] = 102  # f
            w += 2
        else:
            out[w + 1] = 117  # u
            out[w + 2] = 48
            out[w + 3] = 48
            out[w + 4] = _HEX_DIGITS[c >> 4]
            out[w + 5] = _HEX_DIGITS[c & 15]
            w += 6
        i += 1
        run = i
    if n > run:
        memcpy(out + w, src + run, n - run)
        w += n - run
    return w


cdef inline Py_ssize_t _digits(char* out, unsigned long long v) noexcept nogil:
    """`v` in decimal at `out`; how many digits."""
    cdef char tmp[24]
    cdef Py_ssize_t n = 0, i
    while True:
        tmp[n] = <char>(48 + v % 10)
        n += 1
        v //= 10
        if v == 0:
            break
    for i in range(n):
        out[i] = tmp[n - 1 - i]
    return n


cdef inline Py_ssize_t _millis(char* out, double seconds) noexcept nogil:
    """`seconds` as milliseconds with 3 decimals (microseconds): "12.345"."""
    cdef long long us
    if seconds < 0:
        seconds = 0
    us = <long long>(seconds * 1e6 + 0.5)
    cdef Py_ssize_t w = _digits(out, <unsigned long long>(us // 1000))
    us = us % 1000
    out[w] = 46  # .
    out[w + 1] = <char>(48 + us // 100)
    out[w + 2] = <char>(48 + (us // 10) % 10)
    out[w + 3] = <char>(48 + us % 10)
    return w + 4


cdef inline void _two(char* out, int v) noexcept nogil:
    out[0] = <char>(48 + v // 10)
    out[1] = <char>(48 + v % 10)


# A value of a line: its bytes (not owned: they live in the objects read), or none.
cdef struct _Span:
    const char* p
    Py_ssize_t n


cdef inline void _span_bytes(_Span* s, object value):
    if value is None:
        s.p = NULL
        s.n = 0
    else:
        s.p = PyBytes_AS_STRING(value)
        s.n = PyBytes_GET_SIZE(value)


cdef inline int _span_str(_Span* s, object value) except -1:
    cdef Py_ssize_t n = 0
    if value is None:
        s.p = NULL
        s.n = 0
    else:
        s.p = PyUnicode_AsUTF8AndSize(value, &n)  # (cached in the str after the first call)
        s.n = n
    return 0


cdef enum:
    # Where access-log's events are in its Counters (AccessLogStep.EVENTS' order).
    L_LINES = 0
    L_DROPPED = 1
    L_FAILED = 2


@cython.final
cdef class LogBuffer:
    """The lines an access-log step wrote and its sink has not taken yet, and its counts.

    The step writes on the event loop; the sink takes the batch there too
    (`take`), at each tick of the gateway's clock, or at once when it is full.
    """

    cdef char* data
    cdef Py_ssize_t length
    cdef Py_ssize_t capacity
    cdef readonly long long batch_lines  # lines in the batch now
    # lines written, dropped (its sink's queue was full), failed (a disk or socket error):
    # its step's plugin counters (AccessLogStep.EVENTS), which outlive the step.
    cdef public Counters counts
    cdef public object sink  # takes the batches: schedule(buffer, clock), full(buffer)
    cdef bint scheduled  # the sink knows it has lines

    def __cinit__(self):
        self.capacity = 16 * 1024
        self.data = <char*>malloc(self.capacity)
        if self.data == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.data)

    def __init__(self, sink=None):
        self.sink = sink
        self.counts = Counters(AccessLogStep.EVENTS)

    @property
    def lines(self):
        return self.counts.n[L_LINES]

    @property
    def dropped(self):
        return self.counts.n[L_DROPPED]

    @dropped.setter
    def dropped(self, long long value):
        self.counts.n[L_DROPPED] = value

    @property
    def failed(self):
        return self.counts.n[L_FAILED]

    @failed.setter
    def failed(self, long long value):
        self.counts.n[L_FAILED] = value

    cdef char* room(self, Py_ssize_t n) except NULL:
        """Where `n` more bytes go (the buffer grown if it must be)."""
        cdef Py_ssize_t want = self.length + n
        cdef Py_ssize_t capacity = self.capacity
        cdef char* grown
        if want > capacity:
            while capacity < want:
                capacity *= 2
            grown = <char*>realloc(self.data, capacity)
            if grown == NULL:
                raise MemoryError()
            self.data = grown
            self.capacity = capacity
        return self.data + self.length

    def take(self):
        """(the batch's bytes, how many lines); the buffer is empty after."""
        out = PyBytes_FromStringAndSize(self.data, self.length)
        lines = self.batch_lines
        self.length = 0
        self.batch_lines = 0
        self.scheduled = False
        cdef char* smaller
        if self.capacity > 4 * FLUSH_AT:  # a burst of long lines grew it: give the memory back
            smaller = <char*>realloc(self.data, 16 * 1024)
            if smaller != NULL:
                self.data = smaller
                self.capacity = 16 * 1024
        return out, lines

    def __len__(self):
        return self.length


cdef class AccessLogStep(Step):
    """One JSON line per exchange, the fields chosen, into `buffer` (see LogBuffer).

    Its request hook starts the clock (`req.t0`, shared with the prometheus
    step: whichever runs first sets it); its log hook writes the line.
    """

    cdef int fields[<int>F_COUNT]
    cdef int field_count
    cdef bint query  # the path with its query string
    cdef int framing  # FRAME_*
    cdef bytes syslog_head  # "<PRI>1 " (syslog), or None
    cdef bytes syslog_tail  # " HOSTNAME APP-NAME PROCID MSGID - " after the timestamp
    cdef bint wants_mcp
    cdef readonly LogBuffer buffer
    cdef long long second  # the second `stamp` holds
    cdef char stamp[19]  # "YYYY-MM-DDTHH:MM:SS" of that second

    EVENTS = ("lines", "dropped", "failed")

    def __init__(self, fields, LogBuffer buffer, *, bint query=False, bint octet_counting=False,
                 syslog_head=None, syslog_tail=None, str name="access-log",
                 int priority=99000, bint fail_open=False):
        cdef bint wants_mcp = "mcp_method" in fields or "mcp_tool" in fields
        # (it reads the envelope for the MCP fields alone)
        Step.__init__(self, name, PHASE_REWRITE, priority=priority,
                      hooks=HOOK_REQUEST | HOOK_LOG, fail_open=fail_open,
                      reads_envelope=wants_mcp)
        self.field_count = 0
        for field in fields:
            if self.field_count >= F_COUNT:
                raise ValueError("a field is given twice")
            self.fields[self.field_count] = ACCESS_LOG_FIELDS.index(field)  # ValueError if unknown
            self.field_count += 1
        if len(set(fields)) != self.field_count:
            raise ValueError("a field is given twice")
        self.wants_mcp = wants_mcp
        self.buffer = buffer
        buffer.counts = self.counts  # one set, whoever counts: the step or its sink
        self.query = query
        self.framing = FRAME_OCTETS if octet_counting else FRAME_LINE
        self.syslog_head = syslog_head
        self.syslog_tail = syslog_tail
        self.second = -1

    def adopt_counts(self, Counters counts not None):
        Step.adopt_counts(self, counts)
        self.buffer.counts = counts

    def stats(self):
        """Counters for the metrics (runmcp_plugin_events_total)."""
        cdef LogBuffer buffer = self.buffer
        return {"lines": buffer.lines, "dropped": buffer.dropped, "failed": buffer.failed}

    cdef object on_request(self, ClientProtocol conn, Request req):
        if not req.t0:
            req.t0 = monotonic()
        return None

    cdef int on_log(self, ClientProtocol conn, Request req) except -1:
        cdef LogBuffer buffer = self.buffer
        self._write(conn, req, buffer)
        buffer.counts.n[L_LINES] += 1
        buffer.batch_lines += 1
        if not buffer.scheduled and buffer.sink is not None:
            buffer.scheduled = True
            buffer.sink.schedule(buffer, conn.clock)
        if buffer.length >= FLUSH_AT and buffer.sink is not None:
            buffer.sink.full(buffer)
        return 0

    def render(self, ClientProtocol conn, Request req, Py_ssize_t repeat=1):
        """The line `on_log` writes for `req` (made `repeat` times: for benchmarks), as
        bytes, framing included; the step's buffer and counts are left alone."""
        cdef LogBuffer scratch = LogBuffer()
        cdef Py_ssize_t i
        for i in range(repeat):
            scratch.length = 0
            self._write(conn, req, scratch)
        return scratch.take()[0]

    cdef int _write(self, ClientProtocol conn, Request req, LogBuffer buffer) except -1:
        cdef Target target = req.target
        cdef Pool pool = req.pool
        cdef Consumer consumer = req.consumer
        cdef _Span client, peer, method, host, path, request_id
        cdef _Span service, route, consumer_name, upstream, mcp_method, mcp_tool, agent, referer
        cdef double now = monotonic()
        cdef double t0 = req.t0 if req.t0 else now
        cdef double duration = now - t0
        cdef timespec wall
        cdef Py_ssize_t i, size, count = 0, start, at
        cdef Py_ssize_t mark
        cdef const char* query_at
        cdef int field
        cdef list lines = req.lines
        cdef bint some = False
        cdef char* out
        cdef char* base
        # Phase 1: every value's bytes (and so the line's largest size).
        _span_bytes(&client, req.client_ip)
        _span_bytes(&peer, conn.peer)
        _span_bytes(&method, req.method)
        _span_bytes(&host, req.host)
        _span_bytes(&path, req.url if req.method is not None else None)  # (a head never read)
        if not self.query and path.p != NULL:
            query_at = <const char*>memchr(path.p, 63, path.n)  # ?
            if query_at != NULL:
                path.n = query_at - path.p
        _span_bytes(&request_id, req.request_id)
        _span_str(&service, target.service_name if target is not None else None)
        _span_str(&route, target.name if target is not None else None)
        _span_str(&consumer_name, consumer.name if consumer is not None else None)
        _span_str(&upstream, pool.name if pool is not None else None)
        mcp_method.p = NULL
        mcp_tool.p = NULL
        mcp_method.n = mcp_tool.n = 0
        methods = tools = None
        if self.wants_mcp and req.vars is not None:
            methods, tools = _mcp_of(req.vars)
            _span_bytes(&mcp_method, methods)
            _span_bytes(&mcp_tool, tools)
        agent.p = referer.p = NULL
        agent.n = referer.n = 0
        for i in range(self.field_count):
            field = self.fields[i]
            if field == F_USER_AGENT:
                _span_bytes(&agent, _header_of(lines, b"user-agent"))
            elif field == F_REFERER:
                _span_bytes(&referer, _header_of(lines, b"referer"))
        size = (
            640 + (len(self.syslog_head) + len(self.syslog_tail) if self.syslog_head is not None else 0)
            + 6 * (client.n + peer.n + method.n + host.n + path.n + request_id.n + service.n
                   + route.n + consumer_name.n + upstream.n + mcp_method.n + mcp_tool.n
                   + agent.n + referer.n)
        )
        # Phase 2: written without another check.
        base = buffer.room(size + OCTET_ROOM)
        start = buffer.length
        at = 0
        if self.framing == FRAME_OCTETS:
            at = OCTET_ROOM
        clock_gettime(CLOCK_REALTIME, &wall)
        cdef double began = wall.tv_sec + wall.tv_nsec * 1e-9 - duration
        cdef long long second = <long long>began
        cdef int millis = <int>((began - second) * 1000)
        if millis > 999:
            millis = 999
        if second != self.second:
            self._stamp(second)
        if self.syslog_head is not None:
            memcpy(base + at, PyBytes_AS_STRING(self.syslog_head), len(self.syslog_head))
            at += len(self.syslog_head)
            at += self._time(base + at, millis)
            memcpy(base + at, PyBytes_AS_STRING(self.syslog_tail), len(self.syslog_tail))
            at += len(self.syslog_tail)
        mark = at  # where "{" goes: each field is written with a leading ","
        for i in range(self.field_count):
            field = self.fields[i]
            out = base + at
            if field == F_TIME:
                at += _key(out, b',"time":"', 9)
                at += self._time(base + at, millis)
                base[at] = 34
                at += 1
            elif field == F_REQUEST_ID:
                at += _string(out, b',"request_id":"', 15, &request_id)
            elif field == F_CLIENT:
                at += _string(out, b',"client":"', 11, &client) if client.p != NULL else 0
            elif field == F_PEER:
                if peer.p != NULL and (client.p == NULL or peer.n != client.n
                                       or memcmp(peer.p, client.p, peer.n) != 0):
                    at += _string(out, b',"peer":"', 9, &peer)
            elif field == F_METHOD:
                at += _string(out, b',"method":"', 11, &method)
            elif field == F_HOST:
                at += _string(out, b',"host":"', 9, &host)
            elif field == F_PATH:
                at += _string(out, b',"path":"', 9, &path)
            elif field == F_STATUS:
                at += _key(out, b',"status":', 10)
                at += _digits(base + at, <unsigned long long>(req.status if req.status > 0 else 0))
            elif field == F_DURATION:
                at += _key(out, b',"duration_ms":', 15)
                at += _millis(base + at, duration)
            elif field == F_SERVICE:
                at += _string(out, b',"service":"', 12, &service)
            elif field == F_ROUTE:
                at += _string(out, b',"route":"', 10, &route)
            elif field == F_CONSUMER:
                at += _string(out, b',"consumer":"', 13, &consumer_name)
            elif field == F_UPSTREAM:
                at += _string(out, b',"upstream":"', 13, &upstream)
            elif field == F_UPSTREAM_MS:
                if req.t_head and req.t_upstream:
                    at += _key(out, b',"upstream_ms":', 15)
                    at += _millis(base + at, req.t_head - req.t_upstream)
            elif field == F_BYTES_IN:
                at += _key(out, b',"bytes_in":', 12)
                at += _digits(base + at, <unsigned long long>req.body_bytes)
            elif field == F_BYTES_OUT:
                at += _key(out, b',"bytes_out":', 13)
                at += _digits(base + at, <unsigned long long>req.bytes_out)
            elif field == F_MCP_METHOD:
                at += _string(out, b',"mcp_method":"', 15, &mcp_method)
            elif field == F_MCP_TOOL:
                at += _string(out, b',"mcp_tool":"', 13, &mcp_tool)
            elif field == F_USER_AGENT:
                at += _string(out, b',"user_agent":"', 15, &agent)
            elif field == F_REFERER:
                at += _string(out, b',"referer":"', 12, &referer)
        if at == mark:
            base[at] = 123  # {: no field had a value
            at += 1
        else:
            base[mark] = 123  # the first field's "," becomes the "{"
        base[at] = 125  # }
        at += 1
        if self.framing == FRAME_OCTETS:
            count = _digits(base, <unsigned long long>(at - OCTET_ROOM))
            base[count] = 32
            memmove(base + count + 1, base + OCTET_ROOM, at - OCTET_ROOM)
            at = at - OCTET_ROOM + count + 1
        else:
            base[at] = 10  # \n
            at += 1
        buffer.length = start + at
        return 0

    cdef void _stamp(self, long long second) noexcept:
        """"YYYY-MM-DDTHH:MM:SS" of `second` (UTC), kept until the second changes."""
        cdef time_t t = <time_t>second
        cdef tm parts
        gmtime_r(&t, &parts)
        cdef int year = parts.tm_year + 1900
        cdef char* s = self.stamp
        _two(s, year // 100)
        _two(s + 2, year % 100)
        s[4] = 45
        _two(s + 5, parts.tm_mon + 1)
        s[7] = 45
        _two(s + 8, parts.tm_mday)
        s[10] = 84  # T
        _two(s + 11, parts.tm_hour)
        s[13] = 58
        _two(s + 14, parts.tm_min)
        s[16] = 58
        _two(s + 17, parts.tm_sec)
        self.second = second

    cdef Py_ssize_t _time(self, char* out, int millis) noexcept:
        """The time at `out`: RFC 3339, UTC, milliseconds: 2025-01-31T12:34:56.789Z."""
        memcpy(out, self.stamp, 19)
        out[19] = 46  # .
        out[20] = <char>(48 + millis // 100)
        out[21] = <char>(48 + (millis // 10) % 10)
        out[22] = <char>(48 + millis % 10)
        out[23] = 90  # Z
        return 24


cdef inline Py_ssize_t _key(char* out, const char* key, Py_ssize_t n) noexcept nogil:
    memcpy(out, key, n)
    return n


cdef inline Py_ssize_t _string(char* out, const char* key, Py_ssize_t n, _Span* value) noexcept nogil:
    """`,"key":"value"` (`key` is given with its opening quote); nothing when no value."""
    if value.p == NULL:
        return 0
    memcpy(out, key, n)
    cdef Py_ssize_t w = n + _escape(out + n, value.p, value.n)
    out[w] = 34  # "
    return w + 1


cdef object _header_of(list lines, bytes lower):
    """The last kept header `lower`'s value, or None."""
    cdef Py_ssize_t count = 0
    cdef Py_ssize_t at = _find_header(lines, lower, &count)
    return None if at < 0 else lines[at + 2]


cdef tuple _mcp_of(dict vars):
    """(method(s), tool(s)) of an MCP request, as UTF-8 bytes or None: from the envelope
    the MCP check left (a proxied server), or what a generated endpoint noted; a batch's
    joined with ","."""
    envelope = vars.get(ENVELOPE_VAR)
    if envelope is not None:
        if envelope.kind == "batch":
            methods = ",".join([m.method for m in envelope.members if m.method is not None])
            tools = ",".join([m.name for m in envelope.members
                              if m.method == "tools/call" and m.name is not None])
        else:
            methods = envelope.method
            tools = envelope.name if methods == "tools/call" else None
    else:
        methods = vars.get(MCP_METHOD_VAR)
        calls = vars.get(CALLS_VAR)
        tools = ",".join([tool for tool, _ in calls]) if calls else None
    return _utf8(methods), _utf8(tools)


cdef object _utf8(value):
    """A client's str as UTF-8 (a lone surrogate escaped, never an error); None if none."""
    if not value:
        return None
    return (<str>value).encode("utf-8", "backslashreplace")


MCP_METHOD_VAR = "mcp.method"  # what a generated endpoint was asked: a method, a batch's joined
