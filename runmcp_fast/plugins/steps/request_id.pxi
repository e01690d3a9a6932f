# -- request-id: an id per request, sent upstream, echoed, logged --------------------------
#
# PERF: an id is a per-process random 64-bit prefix and a 64-bit counter run
# through a bijective mixer (splitmix64's finalizer), as 32 hex digits
# formatted in C: unique within a process (the mixer never repeats before 2^64
# ids), unique across processes with the prefix's odds, and no syscall or
# Python object but the result per id. Not a secret: do not use one as a token.
# bench/test_request_id.py measures it against uuid4.


cdef uint64_t _id_prefix = 0
cdef uint64_t _id_next = 0
cdef const char* _HEX_DIGITS = b"0123456789abcdef"


def _reseed_request_ids():
    """New prefix and counter: at import, and in a forked child (workers.py)."""
    global _id_prefix, _id_next
    _id_prefix = int.from_bytes(os.urandom(8), "little")
    _id_next = int.from_bytes(os.urandom(8), "little")


_reseed_request_ids()
os.register_at_fork(after_in_child=_reseed_request_ids)


cdef inline uint64_t _mix64(uint64_t z) noexcept nogil:
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef bytes _new_request_id():
    global _id_next
    cdef char out[32]
    cdef uint64_t a = _id_prefix
    cdef uint64_t b = _mix64(_id_next)
    cdef int i
    _id_next += 1
    for i in range(15, -1, -1):
        out[i] = _HEX_DIGITS[a & 15]
        a >>= 4
    for i in range(31, 15, -1):
        out[i] = _HEX_DIGITS[b & 15]
        b >>= 4
    return PyBytes_FromStringAndSize(out, 32)


def new_request_id():
    """A new id, as the step makes them (32 lower-case hex digits, bytes)."""
    return _new_request_id()


# The characters an incoming id may have: nothing a log line or a header could trip on.
cdef bytes _ID_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:+/=@"
cdef bint _ID_OK[256]
for _c in _ID_CHARS:
    _ID_OK[_c] = True


cdef bint _valid_id(bytes value, Py_ssize_t max_length):
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(value)
    cdef Py_ssize_t i, n = len(value)
    if n == 0 or n > max_length:
        return False
    for i in range(n):
        if not _ID_OK[p[i]]:
            return False
    return True


cdef class RequestIdStep(Step):
    """Keep the client's id (one, valid) or make one; send it upstream in `header`, echo it
    in the response (proxied or answered by the gateway), and set `req.request_id` for
    the access log.

    An incoming id is kept only when it is the header's only field and is 1 to
    `max_length` characters of letters, digits and `-_.:+/=@`; otherwise it is
    replaced (every field of that name), so upstream sees exactly one.
    """

    cdef bytes header  # as configured
    cdef bytes lower
    cdef bint keep
    cdef bint echo
    cdef Py_ssize_t max_length

    def __init__(self, str header, bint keep, bint echo, Py_ssize_t max_length=128, *,
                 str name="request-id", int priority=9000, bint fail_open=False):
        Step.__init__(self, name, PHASE_REWRITE, priority=priority,
                      hooks=HOOK_REQUEST | (HOOK_RESPONSE if echo else 0), fail_open=fail_open,
                      reads_envelope=False)
        self.header = header.encode("latin-1")
        self.lower = self.header.lower()
        self.keep = keep
        self.echo = echo
        self.max_length = max_length

    cdef object on_request(self, ClientProtocol conn, Request req):
        cdef Py_ssize_t count = 0
        cdef Py_ssize_t at = _find_header(req.lines, self.lower, &count)
        cdef bytes value
        if self.keep and count == 1:
            value = (<bytes>req.lines[at + 2]).strip(b" \t")
            if _valid_id(value, self.max_length):
                req.request_id = value
                return None
        if count:
            _drop_named(req, (self.lower,))
        value = _new_request_id()
        _add_line(req, self.header, value)
        req.request_id = value
        return None

    cdef list on_response(self, ClientProtocol conn, Request req, int status, list lines,
                          long long content_length):
        cdef bytes found = req.request_id
        if found is None:
            return lines  # answered before this step ran
        lines = _drop_response_lines(lines, (self.lower,), None)  # the upstream's echo
        lines.append(self.header + b": " + found + b"\r\n")
        return lines
