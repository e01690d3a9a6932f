# -- bytes on the wire: header kinds, header lines, framing helpers ---------------------
#
# Used by every stage after this one; none makes a Python object it can avoid.


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


cdef extern from "_pathscan.h":
    # the router's word compares (rmf_same, for rmf_piece_is below) and:
    bint rmf_same_ci(const unsigned char* a, const unsigned char* lower, Py_ssize_t n) nogil


cdef inline bint _name_is(const char* p, const char* lower, Py_ssize_t n) noexcept nogil:
    """`strncasecmp(p, lower, n) == 0` for a lower-case `lower` (no NUL), inline."""
    return rmf_same_ci(<const unsigned char*>p, <const unsigned char*>lower, n)


cdef inline int _header_kind(const char* name, Py_ssize_t n):
    """Classify a header name, case-insensitively, without making objects."""
    cdef char first
    if n < 2:
        return HDR_OTHER
    first = name[0] | 0x20
    if first == 99:  # c
        if n == 10 and _name_is(name, b"connection", 10):
            return HDR_CONNECTION
        if n == 14 and _name_is(name, b"content-length", 14):
            return HDR_CONTENT_LENGTH
    elif first == 104:  # h
        if n == 4 and _name_is(name, b"host", 4):
            return HDR_HOST
    elif first == 116:  # t
        if n == 2 and (name[1] | 0x20) == 101:
            return HDR_HOP  # TE
        if n == 7 and _name_is(name, b"trailer", 7):
            return HDR_HOP
        if n == 17 and _name_is(name, b"transfer-encoding", 17):
            return HDR_TRANSFER_ENCODING
    elif first == 107:  # k
        if n == 10 and _name_is(name, b"keep-alive", 10):
            return HDR_HOP
    elif first == 112:  # p
        if n > 6 and _name_is(name, b"proxy-", 6):
            if (
                (n == 16 and _name_is(name + 6, b"connection", 10))
                or (n == 18 and _name_is(name + 6, b"authenticate", 12))
                or (n == 19 and _name_is(name + 6, b"authorization", 13))
            ):
                return HDR_HOP
            return HDR_PROXY
    elif first == 117:  # u
        if n == 7 and _name_is(name, b"upgrade", 7):
            return HDR_UPGRADE
    elif first == 101:  # e
        if n == 6 and _name_is(name, b"expect", 6):
            return HDR_EXPECT
    elif first == 120:  # x
        if n == 15 and _name_is(name, b"x-forwarded-for", 15):
            return HDR_FORWARDED_FOR
        if (n == 16 and _name_is(name, b"x-forwarded-host", 16)) or (
            n == 17 and _name_is(name, b"x-forwarded-proto", 17)
        ):
            return HDR_FORWARDED_OURS
    elif first == 118:  # v
        if n == 3 and _name_is(name, b"via", 3):
            return HDR_VIA
    return HDR_OTHER


# -- a request's kept header lines: (name, b": ", value, b"\r\n") per header ------------

# PERF: a client on a kept-alive connection sends most of its header lines again with
# every request (User-Agent, Accept, Content-Type, its MCP session id...), and many
# clients send the same ones. Two bytes objects per line, made and freed per request,
# were ~250 instructions a line (callgrind, MCP tools/call: 6 kept lines); a line seen
# before is now its two objects again, from a small table that every connection of the
# worker shares: a hash of a few words, two compares. Bytes are immutable and a hit is
# an exact match, so sharing one changes nothing for whoever holds it. Bounded: 256
# slots (a collision replaces the older line), lines of at most 128 bytes a side
# (longer ones, tokens and cookies, are per client and go by as before). The GIL is
# held from the lookup to the read of the slot; a build without one shares nothing.


cdef extern from *:
    """
    #define RMF_PIECE_SLOTS 256  /* a power of two: the hash's top 8 bits pick one */
    #ifdef Py_GIL_DISABLED
    #define RMF_PIECE_MAX -1  /* the table relies on the GIL: no line is shared */
    #else
    #define RMF_PIECE_MAX 128
    #endif
    static PyObject *rmf_piece_name[RMF_PIECE_SLOTS];
    static PyObject *rmf_piece_value[RMF_PIECE_SLOTS];

    /* Up to 16 of the n bytes at p folded into a word: the first and last 8. */
    static inline uint64_t rmf_piece_word(const char *p, Py_ssize_t n)
    {
        uint64_t a = 0, b = 0;
        Py_ssize_t i;
        if (n >= 8) {
            memcpy(&a, p, 8);
            memcpy(&b, p + n - 8, 8);
            return a ^ (b * 0x9E3779B97F4A7C15ULL);
        }
        for (i = 0; i < n; i++)
            a = (a << 8) | (unsigned char)p[i];
        return a;
    }

    /* o is a bytes holding exactly the n bytes at p (_pathscan.h's word compare: a
       call to memcmp costs more than these short lines). */
    static inline int rmf_piece_is(PyObject *o, const char *p, Py_ssize_t n)
    {
        return o != NULL && PyBytes_GET_SIZE(o) == n
            && rmf_same((const unsigned char *)PyBytes_AS_STRING(o), (const unsigned char *)p, n);
    }

    /* The slot holding the line (name, value) as two bytes objects, made now unless
       the slot already held them; -1 with MemoryError set. */
    static Py_ssize_t rmf_piece(const char *name, Py_ssize_t nn, const char *value, Py_ssize_t nv)
    {
        uint64_t h = rmf_piece_word(name, nn) * 0xff51afd7ed558ccdULL;
        PyObject *a, *b;
        Py_ssize_t s;
        h ^= rmf_piece_word(value, nv) ^ ((uint64_t)nn << 40) ^ (uint64_t)nv;
        h *= 0xc4ceb9fe1a85ec53ULL;
        s = (Py_ssize_t)(h >> 56);
        if (rmf_piece_is(rmf_piece_value[s], value, nv) && rmf_piece_is(rmf_piece_name[s], name, nn))
            return s;
        a = PyBytes_FromStringAndSize(name, nn);
        if (a == NULL)
            return -1;
        b = PyBytes_FromStringAndSize(value, nv);
        if (b == NULL) {
            Py_DECREF(a);
            return -1;
        }
        Py_XSETREF(rmf_piece_name[s], a);
        Py_XSETREF(rmf_piece_value[s], b);
        return s;
    }

    /* Slot s's objects (borrowed). */
    static inline PyObject *rmf_piece_name_at(Py_ssize_t s) { return rmf_piece_name[s]; }
    static inline PyObject *rmf_piece_value_at(Py_ssize_t s) { return rmf_piece_value[s]; }
    """
    enum: RMF_PIECE_MAX
    PyObject* rmf_piece_name_at(Py_ssize_t s)
    PyObject* rmf_piece_value_at(Py_ssize_t s)
    Py_ssize_t rmf_piece(const char* name, Py_ssize_t nn, const char* value, Py_ssize_t nv) except -1


cdef inline bytes _shared_value(const char* name, Py_ssize_t name_len, const char* value,
                                Py_ssize_t value_len):
    """value[:value_len], shared with the requests that sent the same line before."""
    if name_len > RMF_PIECE_MAX or value_len > RMF_PIECE_MAX:
        return value[:value_len]
    return <bytes>rmf_piece_value_at(rmf_piece(name, name_len, value, value_len))


cdef inline _keep_header(ClientProtocol conn, const char* name, Py_ssize_t name_len,
                         const char* value, Py_ssize_t value_len):
    """Keep a line of the head being read for the upstream, its objects shared with the
    requests that sent it before (see rmf_piece)."""
    cdef Py_ssize_t s
    cdef bytes shared_name, shared_value
    if name_len > RMF_PIECE_MAX or value_len > RMF_PIECE_MAX:
        _keep_pair(conn, name[:name_len], value[:value_len])
        return
    s = rmf_piece(name, name_len, value, value_len)
    # Our own references before anything else runs: _keep_pair may allocate (a list,
    # past 16 lines), a collection may run Python code, and another thread's line could
    # then take this slot and free the slot's objects.
    shared_name = <bytes>rmf_piece_name_at(s)
    shared_value = <bytes>rmf_piece_value_at(s)
    _keep_pair(conn, shared_name, shared_value)


# PERF: a request's `lines` grew four items at a time, and the list was reallocated
# five or six times for a head of six kept lines (~120 instructions each, an MCP
# call). The pairs wait in the connection's array while the head is read; at its end
# (_headers_complete) the list is made at its final size, once.
cdef extern from *:
    """
    #define RMF_KEPT_MAX 32  /* ClientProtocol.kept's size: 16 lines */
    """
    enum: RMF_KEPT_MAX


cdef inline _keep_pair(ClientProtocol conn, bytes name, bytes value):
    if conn.nkept == RMF_KEPT_MAX:
        # A 17th line: those so far go to the list, this one after them, and the next
        # 16 wait in the array again (then join the list at the head's end).
        _take_kept(conn, conn.current)
        _keep_line(conn.current, name, value)
        return
    Py_INCREF(name)
    Py_INCREF(value)
    conn.kept[conn.nkept] = <PyObject*>name
    conn.kept[conn.nkept + 1] = <PyObject*>value
    conn.nkept += 2


cdef int _take_kept(ClientProtocol conn, Request req) except -1:
    """Move the kept pairs into `req.lines` (made at its size when there is none yet)."""
    cdef int i, n = conn.nkept
    cdef list lines
    if n == 0:
        return 0
    if req.lines is not None:
        try:
            for i in range(0, n, 2):
                _keep_line(req, <bytes>conn.kept[i], <bytes>conn.kept[i + 1])
        finally:
            _drop_kept(conn)
        return 0
    try:
        lines = PyList_New(2 * n)
    except BaseException:
        _drop_kept(conn)
        raise
    conn.nkept = 0
    for i in range(0, n, 2):
        # (PyList_SET_ITEM takes over the pair's references)
        rmf_list_set(lines, 2 * i, conn.kept[i])
        Py_INCREF(_COLON_SPACE)
        rmf_list_set(lines, 2 * i + 1, <PyObject*>_COLON_SPACE)
        rmf_list_set(lines, 2 * i + 2, conn.kept[i + 1])
        Py_INCREF(_CRLF)
        rmf_list_set(lines, 2 * i + 3, <PyObject*>_CRLF)
    req.lines = lines
    return 0


cdef inline void _drop_kept(ClientProtocol conn) noexcept:
    """Release the kept pairs (a head refused before its end, or moved one by one)."""
    cdef int i
    for i in range(conn.nkept):
        Py_XDECREF(conn.kept[i])
    conn.nkept = 0


cdef extern from *:
    """
    #define rmf_list_set(list, i, item) PyList_SET_ITEM((list), (i), (item))
    """
    void rmf_list_set(list lines, Py_ssize_t i, PyObject* item) noexcept


cdef bytes _COLON_SPACE = b": "
cdef bytes _CRLF = b"\r\n"


cdef inline _keep_line(Request req, bytes name, bytes value):
    """Keep a header line for the upstream, as four pieces joined later."""
    if req.lines is None:
        req.lines = []
    req.lines.append(name)
    req.lines.append(_COLON_SPACE)
    req.lines.append(value)
    req.lines.append(_CRLF)


cdef inline object _header_in(list lines, const char* lower, Py_ssize_t n):
    """The value of the kept header named `lower[:n]` (lower case), or None. Inline
    where the name is a literal (the contract's Content-Type: a call of its own was
    ~80 instructions more a POST, callgrind): its compares fold to constants."""
    cdef Py_ssize_t i
    cdef bytes name
    if lines is None:
        return None
    for i in range(0, len(lines), 4):
        name = <bytes>lines[i]
        # PERF: compared in place (no lowered copy of every name of that length).
        if PyBytes_GET_SIZE(name) == n and _name_is(PyBytes_AS_STRING(name), lower, n):
            return lines[i + 2]
    return None


cdef object _header_value(list lines, bytes lower_name):
    """The value of the kept header `lower_name` (lower case), or None."""
    return _header_in(lines, PyBytes_AS_STRING(lower_name), PyBytes_GET_SIZE(lower_name))


cdef list _drop_named(list lines, list tokens):
    """Drop the headers named in `Connection` (they are hop-by-hop too), except the
    Content-Length the body is sent on with: `Connection: content-length` dropped it,
    and the upstream read the body as the next request (smuggled past routing)."""
    names = {
        t for t in tokens
        if t and t not in (b"close", b"keep-alive", b"upgrade", b"content-length")
    }
    if not names:
        return lines
    cdef list kept = []
    cdef Py_ssize_t i
    for i in range(0, len(lines), 4):
        if lines[i].lower() not in names:
            kept += lines[i:i + 4]
    return kept


cdef list _drop_content_length(list lines):
    """Response header lines (CRLF-terminated chunks) without their Content-Length line."""
    cdef bytes head = b"".join(lines)
    cdef bytes lower = head.lower()
    cdef Py_ssize_t at = 0 if lower.startswith(b"content-length:") else lower.find(b"\ncontent-length:")
    if at < 0:
        return lines
    if at > 0:
        at += 1
    cdef Py_ssize_t end = head.find(b"\r\n", at)
    return [head[:at] + (head[end + 2:] if end >= 0 else b"")]


cdef bint _is_loopback(sockname):
    """A socket address (a transport's `sockname`) is on the loopback interface."""
    if not isinstance(sockname, tuple) or not sockname:
        return False  # a Unix socket's path, an in-memory transport: no address
    host = sockname[0]
    if not isinstance(host, str):
        return False
    return host.startswith("127.") or host == "::1" or host.startswith("::ffff:127.")


# -- the Host header ----------------------------------------------------------------------


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
    if n == 0 or p[0] == 58:
        # `Host:` with no value, or a port with no name (":80"): no host at all, which
        # an HTTP/1.1 request must name (RFC 9112 §3.2); nginx answers 400 "client sent
        # invalid host header" too. (A request with no Host line at all never gets
        # here: HTTP/1.0 may leave it out.) PERF: one length check on every request.
        return False
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


# -- writing --------------------------------------------------------------------------------


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
        rmf_copy(dest, PyBytes_AS_STRING(piece), size)
        dest += size
    return out


cdef enum:
    _MAX_PIECES = 12


# PERF: a head is copied together from many short pieces (a header line is four: name,
# ": ", value, CRLF); libc's memcpy, a call through the PLT, costs more than these
# bytes do (~34 copies an MCP call). Up to 16 bytes are two overlapping loads and stores.
cdef extern from *:
    """
    static inline void rmf_copy(char *d, const char *s, Py_ssize_t n)
    {
        uint64_t a, b;
        uint32_t u, v;
        if (n > 16) {
            memcpy(d, s, (size_t)n);
        } else if (n >= 8) {
            memcpy(&a, s, 8);
            memcpy(&b, s + n - 8, 8);
            memcpy(d, &a, 8);
            memcpy(d + n - 8, &b, 8);
        } else if (n >= 4) {
            memcpy(&u, s, 4);
            memcpy(&v, s + n - 4, 4);
            memcpy(d, &u, 4);
            memcpy(d + n - 4, &v, 4);
        } else {
            /* 0 to 3 bytes */
            if (n > 0) d[0] = s[0];
            if (n > 1) d[1] = s[1];
            if (n > 2) d[2] = s[2];
        }
    }
    """
    void rmf_copy(char* d, const char* s, Py_ssize_t n) noexcept nogil


cdef struct _Pieces:
    # Borrowed pointers to bytes its caller holds: pieces to copy into one bytes.
    const char* data[_MAX_PIECES]
    Py_ssize_t size[_MAX_PIECES]
    int count
    Py_ssize_t total


cdef inline void _note(_Pieces* pieces, bytes piece) noexcept:
    # (callers note at most _MAX_PIECES: a fixed sequence each)
    pieces.data[pieces.count] = PyBytes_AS_STRING(piece)
    pieces.size[pieces.count] = PyBytes_GET_SIZE(piece)
    pieces.total += PyBytes_GET_SIZE(piece)
    pieces.count += 1


cdef bytes _join_pieces(_Pieces* before, list middle, _Pieces* after):
    """`before`'s pieces, then `middle`'s bytes (None: none), then `after`'s, as one bytes."""
    cdef Py_ssize_t i, n = PyList_GET_SIZE(middle) if middle is not None else 0
    cdef Py_ssize_t total = before.total + after.total, size
    cdef object piece
    for i in range(n):
        total += PyBytes_GET_SIZE(<object>PyList_GET_ITEM(middle, i))
    cdef bytes out = PyBytes_FromStringAndSize(NULL, total)
    cdef char* dest = PyBytes_AS_STRING(out)
    for i in range(before.count):
        rmf_copy(dest, before.data[i], before.size[i])
        dest += before.size[i]
    for i in range(n):
        piece = <object>PyList_GET_ITEM(middle, i)
        size = PyBytes_GET_SIZE(piece)
        rmf_copy(dest, PyBytes_AS_STRING(piece), size)
        dest += size
    for i in range(after.count):
        rmf_copy(dest, after.data[i], after.size[i])
        dest += after.size[i]
    return out


cdef const char* _HEX = b"0123456789abcdef"


cdef bytes chunk_size_line(Py_ssize_t n):
    """`b"%x\\r\\n" % n`, the size line of a chunk we frame. PERF: bytes formatting
    costs ~600 instructions a chunk (bench/mcp/instructions.py: an MCP answer's event
    stream is re-chunked piece by piece, as is any chunked response); this is ~40."""
    cdef char buf[20]
    cdef int i = 18
    buf[18] = 13
    buf[19] = 10
    while True:
        i -= 1
        buf[i] = _HEX[n & 15]
        n >>= 4
        if n == 0:
            break
    return PyBytes_FromStringAndSize(buf + i, 20 - i)


def _chunk_size_line(Py_ssize_t n) -> bytes:
    """chunk_size_line, for tests."""
    return chunk_size_line(n)


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


def _same_name(bytes name not None, bytes lower not None) -> bool:
    """`_name_is` from Python, for its test against `bytes.lower` (equal lengths)."""
    if PyBytes_GET_SIZE(name) != PyBytes_GET_SIZE(lower):
        raise ValueError("the two must be of one length")
    return _name_is(PyBytes_AS_STRING(name), PyBytes_AS_STRING(lower), PyBytes_GET_SIZE(name))
