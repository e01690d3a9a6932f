# -- opentelemetry: W3C trace context, sampling decided in C, a span per sampled request ---
#
# The rewrite step (first of the chain) reads `traceparent`, decides whether the
# request is sampled, and leaves upstream a traceparent: the caller's, as it came,
# when the request is not sampled (a malformed one is dropped, and a new one made
# when configured); the gateway's own span's when it is. Only a sampled request
# gets a SpanRecord (in `req.trace`, with its start time); the log step fills in
# how the exchange ended and hands the record to the exporter's queue
# (BatchSpanProcessor.on_end). The batch thread turns records into the SDK's
# spans (builtin/tracing.py): the event loop builds no span object.
#
# PERF: an unsampled request costs a scan of the header names (length first,
# then strncasecmp), and, when a traceparent came, 55 bytes parsed through a
# table; no Python object is made. Ids come from a per-process splitmix64
# stream (seeded from os.urandom, again after a fork).
# bench/test_tracing.py measures both paths.


cdef uint64_t _trace_rng = 0


def _reseed_trace_ids():
    """A new random stream: at import, and in a forked child (workers.py)."""
    global _trace_rng
    _trace_rng = int.from_bytes(os.urandom(8), "little")


_reseed_trace_ids()
os.register_at_fork(after_in_child=_reseed_trace_ids)


cdef inline uint64_t _random64() noexcept nogil:
    """splitmix64: a Weyl sequence through the finalizer request-id uses (_mix64)."""
    global _trace_rng
    _trace_rng += 0x9E3779B97F4A7C15ULL
    return _mix64(_trace_rng)


cdef inline uint64_t _nonzero64() noexcept nogil:
    cdef uint64_t value = _random64()
    while value == 0:  # an all-zero id is invalid (W3C); one draw in 2^64
        value = _random64()
    return value


cdef inline long long _wall_ns() noexcept nogil:
    """Nanoseconds since the epoch, what OTLP spans carry (a vDSO call)."""
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <long long>ts.tv_sec * 1000000000LL + ts.tv_nsec


# A lower-case hex digit's value; -1 for anything else (W3C: HEXDIGLC only).
cdef signed char _HEX_VALUE[256]
memset(_HEX_VALUE, -1, 256)
for _digit in range(16):
    _HEX_VALUE[<unsigned char>_HEX_DIGITS[_digit]] = _digit


cdef inline bint _hex64(const unsigned char* p, Py_ssize_t digits, uint64_t* out) noexcept nogil:
    """`digits` (<= 16) lower-case hex digits at `p` into `out`; False if one is not."""
    cdef uint64_t value = 0
    cdef signed char d
    cdef Py_ssize_t i
    for i in range(digits):
        d = _HEX_VALUE[p[i]]
        if d < 0:
            return False
        value = (value << 4) | <uint64_t>d
    out[0] = value
    return True


cdef bint _parse_traceparent(bytes header, uint64_t* hi, uint64_t* lo, uint64_t* parent,
                             uint64_t* flags) noexcept:
    """A traceparent value (W3C Trace Context, version 00, or a later one as far as 00 goes):
    its trace id, parent id and flags; False when it is not valid."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(header)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(header)
    cdef uint64_t version
    while n and (p[n - 1] == 32 or p[n - 1] == 9):  # trailing OWS
        n -= 1
    while n and (p[0] == 32 or p[0] == 9):
        p += 1
        n -= 1
    if n < 55 or p[2] != 45 or p[35] != 45 or p[52] != 45:  # '-'
        return False
    if not _hex64(p, 2, &version) or version == 0xFF:
        return False
    if n > 55 and (version == 0 or p[55] != 45):
        return False  # 00 is exactly 55 characters; a later version may go on after a '-'
    if not (_hex64(p + 3, 16, hi) and _hex64(p + 19, 16, lo) and _hex64(p + 36, 16, parent)
            and _hex64(p + 53, 2, flags)):
        return False
    return (hi[0] != 0 or lo[0] != 0) and parent[0] != 0  # all-zero ids are invalid


# Each byte's two lower-case hex digits: ids are formatted a byte at a time.
cdef char _HEX_PAIRS[512]
for _byte in range(256):
    _HEX_PAIRS[2 * _byte] = _HEX_DIGITS[_byte >> 4]
    _HEX_PAIRS[2 * _byte + 1] = _HEX_DIGITS[_byte & 15]


cdef inline void _hex_bytes(char* out, uint64_t value) noexcept nogil:
    """`value` as 16 hex digits at `out`."""
    cdef int i
    for i in range(14, -2, -2):
        memcpy(out + i, &_HEX_PAIRS[2 * (value & 0xFF)], 2)
        value >>= 8


cdef bytes _traceparent(uint64_t hi, uint64_t lo, uint64_t span, bint sampled):
    """`00-<trace id>-<span id>-0x`, formatted in C into the new bytes object itself."""
    cdef bytes value = PyBytes_FromStringAndSize(NULL, 55)
    cdef char* out = PyBytes_AS_STRING(value)
    memcpy(out, b"00-", 3)
    _hex_bytes(out + 3, hi)
    _hex_bytes(out + 19, lo)
    out[35] = 45
    _hex_bytes(out + 36, span)
    memcpy(out + 52, b"-01" if sampled else b"-00", 3)
    return value


cdef inline _traceparent_line(Request req, bytes value):
    """Send `traceparent: value` upstream (appended piece by piece: no tuple made)."""
    cdef list lines = req.lines
    if lines is None:
        lines = req.lines = []
    lines.append(_TRACEPARENT)
    lines.append(b": ")
    lines.append(value)
    lines.append(b"\r\n")


cdef bytes _TRACEPARENT = b"traceparent"


def format_traceparent(trace_id, span_id, bint sampled):
    """`_traceparent` for tests: a 128-bit trace id and a 64-bit span id as ints."""
    return _traceparent(trace_id >> 64, trace_id & 0xFFFFFFFFFFFFFFFF, span_id, sampled)


def parse_traceparent(bytes header):
    """`_parse_traceparent` for tests: (trace id, parent id, flags) as ints, or None."""
    cdef uint64_t hi = 0, lo = 0, parent = 0, flags = 0
    if not _parse_traceparent(header, &hi, &lo, &parent, &flags):
        return None
    return (int(hi) << 64) | lo, parent, flags


cdef class _Queued:
    """What a SpanRecord answers for `context.trace_flags.sampled`: the one thing the SDK's
    BatchSpanProcessor.on_end reads of what it queues. Every record is sampled."""

    @property
    def trace_flags(self):
        return self

    @property
    def sampled(self):
        return True


cdef _Queued _QUEUED = _Queued()


@cython.final
@cython.freelist(64)
cdef class SpanRecord:
    """A sampled request's span as the data plane saw it: ids and times set by the rewrite
    step, how it ended by the log step; turned into the SDK's span on the batch thread
    (builtin/tracing.py). Holds the request's objects, not copies of their fields."""

    cdef readonly uint64_t trace_hi  # the trace id's high 64 bits
    cdef readonly uint64_t trace_lo  # ...and low 64 bits (what the ratio is decided on)
    cdef readonly uint64_t span_id  # the gateway's span
    cdef readonly uint64_t parent_id  # the caller's span (a valid incoming traceparent); 0: none
    cdef readonly long long start_ns  # wall clock, ns since the epoch: its head was read
    cdef readonly long long end_ns  # ...the exchange was over
    cdef readonly object tracestate  # the incoming tracestate (bytes, fields joined), or None
    cdef readonly bytes method
    cdef readonly bytes url  # the request target as routed (path and query)
    cdef readonly object target  # the route's Target
    cdef readonly object pool  # the replica it went to (Pool), or None
    cdef readonly object consumer  # the Consumer an authentication step found, or None
    cdef readonly bytes client  # the client's address (real-ip's, else the peer's)
    cdef readonly bytes peer  # the connection's peer
    cdef readonly int status
    cdef readonly str error  # the gateway's own error (Request.error), or None
    cdef readonly str answered_by  # the step that answered (Request.answered_by), or None
    cdef readonly object envelope  # the MCP JSON-RPC envelope (vars["mcp.envelope"]), or None

    @property
    def context(self):
        return _QUEUED

    @property
    def trace_id(self):
        return (int(self.trace_hi) << 64) | self.trace_lo


cdef class TracingStep(Step):
    """The opentelemetry plugin's step: W3C trace context propagated upstream, a span for
    each sampled request (builtin/tracing.py makes it; docs/plugins/tracing.md).

    Sampling follows OTel's samplers: parent-based (an incoming sampled flag decides),
    and for a trace the gateway starts, or every trace when not parent-based,
    TraceIdRatioBased: sampled when the trace id's low 64 bits are below
    ratio * 2^64.
    """

    cdef bint parent_based
    cdef bint always  # ratio 1: every trace the ratio decides is sampled
    cdef uint64_t bound  # ratio * 2^64 (when not `always`): sampled below it
    cdef bint create  # a request without a valid traceparent gets a new one upstream
    cdef object emit  # called with each finished SpanRecord (BatchSpanProcessor.on_end); None: none
    cdef readonly long long sampled  # spans recorded
    cdef readonly long long replaced  # malformed traceparents dropped (and replaced when `create`)

    def __init__(self, double ratio, bint parent_based, bint create, emit=None, *,
                 str name="opentelemetry", int priority=20000, bint fail_open=False):
        if not 0.0 <= ratio <= 1.0:
            raise ValueError("the ratio is between 0 and 1")
        Step.__init__(self, name, PHASE_REWRITE, priority=priority,
                      hooks=HOOK_REQUEST | HOOK_LOG, fail_open=fail_open)
        self.parent_based = parent_based
        self.always = ratio >= 1.0
        # As TraceIdRatioBased.get_bound_for_rate: round(ratio * 2^64).
        self.bound = 0 if self.always else <uint64_t>int(round(ratio * 18446744073709551616.0))
        self.create = create
        self.emit = emit

    cdef object on_request(self, ClientProtocol conn, Request req):
        cdef list lines = req.lines
        cdef Py_ssize_t i, n, size, at = -1, parents = 0, states = 0
        cdef const char* name
        cdef uint64_t hi = 0, lo = 0, parent = 0, flags = 0
        cdef bint sampled
        if lines is not None:
            n = len(lines)
            for i in range(0, n, 4):
                name = PyBytes_AS_STRING(<bytes>lines[i])
                size = PyBytes_GET_SIZE(<bytes>lines[i])
                if size == 11 and strncasecmp(name, b"traceparent", 11) == 0:
                    parents += 1
                    at = i
                elif size == 10 and strncasecmp(name, b"tracestate", 10) == 0:
                    states += 1
            if parents == 1 and _parse_traceparent(<bytes>lines[at + 2], &hi, &lo, &parent,
                                                   &flags):
                if self.parent_based:
                    sampled = flags & 1
                else:
                    sampled = self.always or lo < self.bound
                if not sampled:
                    return None  # the common case: the caller's traceparent goes on as it came
                self._record(req, hi, lo, parent, _joined(lines, b"tracestate") if states else None)
                lines[at + 2] = _traceparent(hi, lo, (<SpanRecord>req.trace).span_id, True)
                return None
        # No valid traceparent: a malformed one (or several) is never forwarded, nor a
        # tracestate without one (W3C: discarded).
        if parents or states:
            if parents:
                self.replaced += 1
            _drop_named(req, (b"traceparent", b"tracestate"))
        if not (self.always or self.bound or self.create):
            return None
        hi = _random64()
        lo = _nonzero64()
        if self.always or lo < self.bound:
            self._record(req, hi, lo, 0, None)
            _traceparent_line(req, _traceparent(hi, lo, (<SpanRecord>req.trace).span_id, True))
        elif self.create:
            # Not recorded: the upstream still sees the trace start here (its parent id
            # names a span nobody records, as W3C allows).
            _traceparent_line(req, _traceparent(hi, lo, _nonzero64(), False))
        return None

    cdef _record(self, Request req, uint64_t hi, uint64_t lo, uint64_t parent, tracestate):
        cdef SpanRecord record = SpanRecord.__new__(SpanRecord)
        record.start_ns = _wall_ns()
        record.trace_hi = hi
        record.trace_lo = lo
        record.parent_id = parent
        record.span_id = _nonzero64()
        record.tracestate = tracestate
        req.trace = record
        if req.vars is None and req.target is not None and req.target.handler is not None:
            # A local handler (a generated MCP endpoint) shares vars only when they exist:
            # it leaves the envelope it decodes there for the log step.
            req.vars = {}

    cdef int on_log(self, ClientProtocol conn, Request req) except -1:
        if type(req.trace) is not SpanRecord:
            return 0  # not sampled (or not this step's)
        cdef SpanRecord record = <SpanRecord>req.trace
        req.trace = None  # one span per exchange
        record.end_ns = _wall_ns()
        record.method = req.method
        record.url = req.url
        record.target = req.target
        record.pool = req.pool
        record.consumer = req.consumer
        record.client = req.client_ip
        record.peer = conn.peer if conn is not None else None
        record.status = req.status
        record.error = req.error
        record.answered_by = req.answered_by
        if req.vars is not None:
            record.envelope = req.vars.get("mcp.envelope")
        self.sampled += 1
        if self.emit is not None:
            self.emit(record)
        return 0


cdef inline double _thread_cpu() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


def time_steps(steps, headers, Py_ssize_t count, bint log=True, Target target=None,
               Pool pool=None, Consumer consumer=None, int status=200):
    """For bench/test_tracing.py (and a test): CPU seconds (this thread's: time the machine
    gives other processes is not counted) to run `steps`' request and log hooks on `count`
    requests, as the data plane calls them (C calls; no connection). Each is a new Request
    whose header lines are `headers` ((name, value) bytes pairs) kept as the data plane keeps
    them, routed to `target`, sent to `pool`, from `consumer`, answered `status`. Run it with
    no steps for the loop's own cost."""
    cdef tuple ordered = tuple(steps)
    cdef tuple pairs = tuple(headers)
    cdef Step step
    cdef Request req
    cdef list lines
    cdef Py_ssize_t i
    cdef double started = _thread_cpu()
    for i in range(count):
        req = Request.__new__(Request)
        req.method = b"GET"
        req.url = b"/bench/items/7"
        req.client_ip = b"127.0.0.1"
        req.target = target
        if pairs:
            lines = req.lines = []
            for name, value in pairs:
                lines.append(name)
                lines.append(b": ")
                lines.append(value)
                lines.append(b"\r\n")
        for step in ordered:
            step.on_request(None, req)
        req.pool = pool
        req.consumer = consumer
        req.status = status
        if log:
            for step in ordered:
                step.on_log(None, req)
    return _thread_cpu() - started
