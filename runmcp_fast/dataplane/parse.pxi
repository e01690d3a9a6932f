# -- llhttp, driven with C callbacks (llhttp.pxd; the sources: third_party/llhttp) -------
#
# PERF: httptools' parser calls a Python method per callback: a bound-method call,
# a bytes object per span and an exception round trip per request, several times
# the ~3.4k instructions llhttp itself takes. Here llhttp calls C functions: the
# request line and header spans are copied into one C buffer per connection
# (`tok`) and a Python object is made only for what the request keeps (its URL,
# the header lines forwarded, a body piece). The functions below only find the
# protocol (`parser.data`, borrowed: the parser lives inside it) and turn a
# Python exception into llhttp's error return, kept in `parse_error` for
# data_received to act on once llhttp_execute returns.

from libc.stdlib cimport realloc


cdef extern from *:
    """
    /* llhttp's method numbers to names, for the numbers it knows (llhttp_method_name
       aborts on any other). */
    static const char* runmcp_method_names[256];
    static void runmcp_init_method_names(void) {
    #define RUNMCP_METHOD_NAME(NUM, NAME, STRING) runmcp_method_names[(NUM)] = #STRING;
      HTTP_ALL_METHOD_MAP(RUNMCP_METHOD_NAME)
    #undef RUNMCP_METHOD_NAME
    }
    """
    const char* runmcp_method_names[256]
    void runmcp_init_method_names()


# Every method llhttp can report, as the one bytes object a request's `method` is
# (none made per request); None for numbers it never reports.
cdef list _METHODS = []
runmcp_init_method_names()
for _i in range(256):  # (llhttp_t.method is a uint8_t)
    _METHODS.append(
        <bytes>runmcp_method_names[_i] if runmcp_method_names[_i] != NULL else None
    )


cdef enum:
    TOK_KEEP = 4096  # the token buffer a connection keeps between requests (bytes)


cdef inline int _tok_append(ClientProtocol self, const char* at, size_t n) noexcept:
    """Append a span to the connection's token buffer (a URL, or a header's name then
    its value); -1 when out of memory. The limits checked before bound its size."""
    cdef Py_ssize_t need = self.tok_len + <Py_ssize_t>n
    cdef Py_ssize_t cap
    cdef char* grown
    if need > self.tok_cap:
        cap = self.tok_cap * 2 if self.tok_cap else 512
        if cap < need:
            cap = need
        grown = <char*>realloc(self.tok, cap)
        if grown == NULL:
            return -1
        self.tok = grown
        self.tok_cap = cap
    rmf_copy(self.tok + self.tok_len, at, n)
    self.tok_len = need
    return 0


cdef int _refuse(ClientProtocol self, int status, str detail) noexcept:
    """Stop parsing: the head broke a limit; data_received answers `status`."""
    self.parse_error = _Reject(status, detail)
    return HPE_USER


# -- the request parser's callbacks (ClientProtocol's methods do the work: client.pxi) --


cdef int _on_message_begin(llhttp_t* p) noexcept:
    cdef ClientProtocol self = <ClientProtocol>p.data
    try:
        self._message_begin()
    except BaseException as exc:
        self.parse_error = exc
        return -1
    return 0


cdef int _on_url(llhttp_t* p, const char* at, size_t n) noexcept:
    cdef ClientProtocol self = <ClientProtocol>p.data
    self.feed_accounted += n
    if self.tok_len + <Py_ssize_t>n > self.ctx.max_url_bytes:
        return _refuse(
            self, 414, f"the request target is longer than {self.ctx.max_url_bytes} bytes"
        )
    return _tok_append(self, at, n)


cdef int _on_url_complete(llhttp_t* p) noexcept:
    cdef ClientProtocol self = <ClientProtocol>p.data
    # A fragment (llhttp allows one; no request target has it, RFC 9112 §3.2) is
    # cut off: the router ignores it, so forwarded, the upstream saw another path
    # than the one routed (`/api/x#/../../admin` reads as /admin to a server that
    # takes '#' literally and removes dot segments).
    cdef const char* fragment = <const char*>memchr(self.tok, 35, self.tok_len)  # '#'
    try:
        # (the same objects as the last request to that target: see rmf_piece)
        self.current.url = _shared_value(
            b"", 0, self.tok, self.tok_len if fragment == NULL else fragment - self.tok
        )
    except BaseException as exc:
        self.parse_error = exc
        return -1
    self.tok_len = 0
    return 0


cdef int _on_header_piece(llhttp_t* p, const char* at, size_t n) noexcept:
    # A header's name or value, or a piece of one (a head split across reads).
    # Checked as it comes: a value that never ends is refused before it is whole.
    cdef ClientProtocol self = <ClientProtocol>p.data
    self.feed_accounted += n
    cdef long long total = self.current.header_bytes + self.tok_len + <Py_ssize_t>n
    if total > self.ctx.max_header_bytes:
        # The count in the detail: by how much a client went over (and, in a report,
        # whether what was counted is what was sent).
        return _refuse(
            self, 431,
            f"the header fields exceed {self.ctx.max_header_bytes} bytes ({total} so far)",
        )
    return _tok_append(self, at, n)


cdef int _on_header_field_complete(llhttp_t* p) noexcept:
    cdef ClientProtocol self = <ClientProtocol>p.data
    self.name_len = self.tok_len  # the value follows it in `tok`
    return 0


cdef int _on_header_value_complete(llhttp_t* p) noexcept:
    cdef ClientProtocol self = <ClientProtocol>p.data
    try:
        self._header()
    except BaseException as exc:
        self.parse_error = exc
        return HPE_USER
    return 0


cdef int _on_headers_complete(llhttp_t* p) noexcept:
    cdef ClientProtocol self = <ClientProtocol>p.data
    try:
        self._headers_complete()
    except BaseException as exc:
        self.parse_error = exc
        return -1
    # 0: an Upgrade request's body (rare: h2c's POST) is read as any body is; llhttp
    # pauses (HPE_PAUSED_UPGRADE) at the end of the message, and the rest of the read
    # is the other protocol's. (Skipped with a 1, the body went upstream as raw
    # bytes, with whatever followed it: see _upgrade_requested.)
    return 0


cdef int _on_body(llhttp_t* p, const char* at, size_t n) noexcept:
    cdef ClientProtocol self = <ClientProtocol>p.data
    try:
        self._body(at, n)
    except BaseException as exc:
        self.parse_error = exc
        return HPE_USER
    return 0


cdef int _on_message_complete(llhttp_t* p) noexcept:
    cdef ClientProtocol self = <ClientProtocol>p.data
    try:
        self._message_complete()
    except BaseException as exc:
        self.parse_error = exc
        return -1
    return 0


cdef llhttp_settings_t _REQUEST_SETTINGS
llhttp_settings_init(&_REQUEST_SETTINGS)
_REQUEST_SETTINGS.on_message_begin = _on_message_begin
_REQUEST_SETTINGS.on_url = _on_url
_REQUEST_SETTINGS.on_url_complete = _on_url_complete
_REQUEST_SETTINGS.on_header_field = _on_header_piece
_REQUEST_SETTINGS.on_header_field_complete = _on_header_field_complete
_REQUEST_SETTINGS.on_header_value = _on_header_piece
_REQUEST_SETTINGS.on_header_value_complete = _on_header_value_complete
_REQUEST_SETTINGS.on_headers_complete = _on_headers_complete
_REQUEST_SETTINGS.on_body = _on_body
_REQUEST_SETTINGS.on_message_complete = _on_message_complete


# (An upstream's response is read without llhttp: upstream.pxi, _respscan.h.)


cdef str _parse_error_detail(llhttp_t* p, llhttp_errno_t err):
    """What llhttp says is wrong with the bytes (its reason, else its error's name)."""
    cdef const char* reason = llhttp_get_error_reason(p)
    if reason == NULL:
        reason = llhttp_errno_name(err)
    return (<bytes>reason).decode("latin-1")


cdef bytes _chunk_frame(const char* at, size_t n):
    """A body piece framed as one chunk: its size in hex, CRLF, the piece, CRLF."""
    cdef const char* hex_digits = b"0123456789abcdef"
    cdef char digits[16]
    cdef int count = 0
    cdef size_t left = n
    while True:
        digits[count] = hex_digits[left & 15]
        count += 1
        left >>= 4
        if not left:
            break
    cdef bytes out = PyBytes_FromStringAndSize(NULL, count + 2 + n + 2)
    cdef char* dest = PyBytes_AS_STRING(out)
    cdef int i
    for i in range(count):
        dest[i] = digits[count - 1 - i]
    dest[count] = 13
    dest[count + 1] = 10
    memcpy(dest + count + 2, at, n)
    dest[count + 2 + n] = 13
    dest[count + 3 + n] = 10
    return out
