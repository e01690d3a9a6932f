# cython: language_level=3
"""The common case of `jsonrpc.check_envelope` in C: one message the fast decoder takes.

A proxied MCP POST is checked once per call; in Python the decoded message's reading
(`fast_envelope`) and the frames around it cost as much as msgspec's decode itself.
`jsonrpc` binds its types here when it is imported (`bind`): this module holds no
rule of its own beyond `fast_envelope`, which jsonrpc's Python path calls too, so the
two can not disagree.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.long cimport PyLong_FromLongLong
from cpython.object cimport PyObject, PyTypeObject
from cpython.pycapsule cimport PyCapsule_New
from cpython.unicode cimport PyUnicode_GET_LENGTH
from libc.string cimport memcmp, memcpy


cdef extern from "Python.h":
    ctypedef struct PyMemberDef:
        const char* name
        int type
        Py_ssize_t offset
        int flags
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member
    PyTypeObject PyMemberDescr_Type
    int T_OBJECT_EX
    void* PyUnicode_DATA(object)
    int PyUnicode_KIND(object)
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)


cdef extern from "../_jsonstr.h":
    # The first byte in [p, end) that is not plain ASCII string content (shared with
    # _fastcheck: 16 bytes a step, wider where the CPU has AVX2).
    const unsigned char* fc_special(const unsigned char* p, const unsigned char* end) noexcept nogil


# The names CHECK_SINGLE's and VALID_SINGLE's capsules carry (the data plane asks for
# them by these names: dataplane/steps.pxi, McpEnvelopeStep).
cdef const char* CAPSULE_NAME = b"runmcp_fast.mcp._envelope.check_single"
cdef const char* VALID_NAME = b"runmcp_fast.mcp._envelope.valid_single"

cdef object _Envelope = None  # jsonrpc.Envelope
cdef object _UNSET = None  # msgspec.UNSET
cdef object _Fast = None  # jsonrpc._Fast, the fast decoder's message type
cdef object _FastParams = None  # jsonrpc._FastParams, its `params`
cdef tuple _NAMES = ()  # jsonrpc.NAME_BEARING_METHODS's items: (method, "name" or "uri")
# (method as bytes, the str, its NAME_BEARING_METHODS key or None), the scanner's for the
# methods clients send most. PERF: no new str, and no _name_key, for them (~250
# instructions a tools/call).
cdef tuple _KNOWN = ()
_COMMON = (
    "tools/call", "tools/list", "initialize", "notifications/initialized", "ping",
    "resources/read", "resources/list", "prompts/get", "prompts/list",
)
cdef object _decode_single = None  # jsonrpc._fast_single.decode

# Where each field of a decoded message lives in the object (-1: read it by name).
# PERF: msgspec keeps a Struct's fields in slots; a generic attribute read of one
# costs ~140 instructions (type MRO walk, descriptor call), six per call; the slot
# itself is a load.
cdef Py_ssize_t _AT_METHOD = -1, _AT_ID = -1, _AT_PARAMS = -1, _AT_RESULT = -1
cdef Py_ssize_t _AT_ERROR = -1, _AT_NAME = -1, _AT_URI = -1


cdef Py_ssize_t _slot(object cls, str name):
    """The offset of field `name` of the Struct type `cls` when it is a plain object
    slot (a member descriptor, as msgspec makes them), else -1."""
    d = cls.__dict__.get(name)
    cdef object kind = type(d)
    if <PyTypeObject*>kind != &PyMemberDescr_Type:
        return -1
    cdef PyMemberDef* m = (<PyMemberDescrObject*><PyObject*>d).d_member
    if m == NULL or m.type != T_OBJECT_EX:
        return -1
    return m.offset


cdef inline object _field(object obj, Py_ssize_t at, str name):
    cdef PyObject* value
    if at >= 0:
        value = (<PyObject**>((<char*><PyObject*>obj) + at))[0]
        if value != NULL:
            return <object>value
    return getattr(obj, name)


def bind(envelope, unset, fast, fast_params, dict names, decode_single):
    global _Envelope, _UNSET, _Fast, _FastParams, _NAMES, _KNOWN, _decode_single
    global _AT_METHOD, _AT_ID, _AT_PARAMS, _AT_RESULT, _AT_ERROR, _AT_NAME, _AT_URI
    _Envelope = envelope
    _UNSET = unset
    _Fast = fast
    _FastParams = fast_params
    _NAMES = tuple(names.items())
    _KNOWN = tuple(
        [(m.encode("ascii"), m, names.get(m)) for m in dict.fromkeys([*_COMMON, *names])]
    )
    _decode_single = decode_single
    _AT_METHOD = _slot(fast, "method")
    _AT_ID = _slot(fast, "id")
    _AT_PARAMS = _slot(fast, "params")
    _AT_RESULT = _slot(fast, "result")
    _AT_ERROR = _slot(fast, "error")
    _AT_NAME = _slot(fast_params, "name")
    _AT_URI = _slot(fast_params, "uri")


cdef object _name_key(str method):
    """`NAME_BEARING_METHODS.get(method)`. PERF: `method` is a new string (msgspec's),
    its hash not yet computed: comparing it with three short ones is cheaper."""
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(method)
    cdef int kind = PyUnicode_KIND(method)
    for known, key in _NAMES:
        if (
            PyUnicode_GET_LENGTH(known) == n
            and PyUnicode_KIND(known) == kind
            and memcmp(PyUnicode_DATA(known), PyUnicode_DATA(method), n * kind) == 0
        ):
            return key
    return None


cpdef object fast_envelope(object msg):
    """The Envelope of a message the fast decoder accepted, or None to ask the slow path."""
    cdef bint fast = type(msg) is _Fast
    method = _field(msg, _AT_METHOD if fast else -1, "method")
    msg_id = _field(msg, _AT_ID if fast else -1, "id")
    result = _field(msg, _AT_RESULT if fast else -1, "result")
    error = _field(msg, _AT_ERROR if fast else -1, "error")
    if method is not _UNSET:
        if len(result) or error is not _UNSET:
            return None
        params = _field(msg, _AT_PARAMS if fast else -1, "params")
        name = None
        if params is not _UNSET and type(method) is str:
            key = _name_key(method)
            if key is not None:
                fast = type(params) is _FastParams
                if key == "name":
                    value = _field(params, _AT_NAME if fast else -1, "name")
                else:
                    value = _field(params, _AT_URI if fast else -1, "uri")
                if type(value) is str:
                    name = value
        if msg_id is _UNSET:
            return _Envelope("notification", method, None, name)
        if msg_id is None:
            return None
        return _Envelope("request", method, msg_id, name, method == "initialize")
    if len(result):
        if error is not _UNSET or msg_id is None or msg_id is _UNSET:
            return None
        return _Envelope("response", None, msg_id)
    if error is not _UNSET:
        return _Envelope("error", None, None if msg_id is _UNSET else msg_id)
    return None


cdef object _check_single(bytes body):
    # The scanner accepts ASCII bodies alone (a byte past 0x7f is never string
    # content to it, nor valid anywhere else), so only what it leaves is checked:
    # msgspec checks UTF-8 only in the strings it decodes (jsonrpc._is_utf8).
    env = _scan_single(PyBytes_AS_STRING(body), PyBytes_GET_SIZE(body))
    if env is not _UNDECIDED:
        return env
    if not body.isascii():
        return None
    return decode_single(body)


def check_single(bytes body not None):
    """`check_envelope(body, allow_batch=False)` when it is an Envelope the fast path
    finds; None for anything else (not ASCII, not decoded, refused): ask jsonrpc then."""
    return _check_single(body)


cdef int _valid_single(const char* buf, Py_ssize_t n) noexcept nogil:
    cdef _Read r
    return _scan(buf, n, &r)


def valid_single(bytes body not None):
    """Whether the scanner accepts `body`: check_single would give its Envelope (False:
    it leaves it to msgspec, which may accept it or not)."""
    return _valid_single(PyBytes_AS_STRING(body), PyBytes_GET_SIZE(body)) == 1


# check_single as a C function, `object (*)(bytes)`, for the MCP proxy's envelope step
# (the data plane: EnvelopeVerdict.fast). PERF: a call through Python's protocol, its
# argument parsing and the `isascii` method looked up before the scan cost ~250
# instructions a tools/call (bench/mcp/instructions.py, callgrind).
CHECK_SINGLE = PyCapsule_New(<void*>_check_single, CAPSULE_NAME, NULL)


# valid_single as a C function, `int (*)(const char*, Py_ssize_t) noexcept nogil`, for a
# route none of whose steps reads the Envelope (a plain MCP proxy): the message is
# checked as check_single checks it, and no Python object is made of it (the Envelope,
# its strings and their frees, the request's vars: ~800 instructions a tools/call).
VALID_SINGLE = PyCapsule_New(<void*>_valid_single, VALID_NAME, NULL)


def decode_single(bytes body not None):
    """check_single through msgspec: what the scanner must agree with where it decides."""
    try:
        msg = _decode_single(body)
    except Exception:  # ValidationError, DecodeError, RecursionError: jsonrpc's to name
        return None
    if type(msg) is not _Fast:
        return None
    return fast_envelope(msg)


def scan_single(bytes body not None):
    """The scanner's Envelope for `body`, or None where it leaves it to msgspec (a body
    that is not ASCII among them)."""
    env = _scan_single(PyBytes_AS_STRING(body), PyBytes_GET_SIZE(body))
    return None if env is _UNDECIDED else env


# -- the scanner: a proxied call's envelope read off the bytes ---------------------------
#
# PERF (bench/mcp/instructions.py, callgrind, issue #18): msgspec's decode of a
# tools/call body into _Fast cost ~3,000 instructions a call, the Envelope read off it
# ~1,000 more: a tenth of the proxy's CPU per call. The common message (one object:
# jsonrpc "2.0", a method, an integer or string id, params an object) is read here in
# one pass over the bytes, every value validated as JSON and skipped, only the method,
# the id and params' name or uri made into Python objects.
#
# It decides only where it is sure to agree with decode_single (msgspec and
# fast_envelope): an accepted message gives the same Envelope. Anything else is left
# to msgspec (_UNDECIDED), never refused here: a backslash in a string it keeps, a
# number that is not a plain integer where an id is read, an `error` member, a
# surrogate escape, nesting past _MAX_DEPTH, bytes after the object, invalid JSON,
# a member it reads given twice (msgspec checks each and keeps the last).
# tests/test_mcp_envelope_scan.py holds it against decode_single.

cdef object _UNDECIDED = object()

cdef enum:
    _MAX_DEPTH = 64  # deeper documents go to msgspec
    _ID_DIGITS = 18  # longer integers go to msgspec (always an int64)


cdef struct _Span:
    const char* at
    Py_ssize_t size
    int kind  # what the value is: _V_* below


cdef _Span _ABSENT
_ABSENT.at = NULL
_ABSENT.size = 0
_ABSENT.kind = 0  # _V_NONE


cdef enum:
    _V_NONE = 0  # absent
    _V_STRING = 1  # a string without a backslash: `at`/`size` its content
    _V_INT = 2  # a plain integer: `at`/`size` its text
    _V_NULL = 3
    _V_OTHER = 4  # any other valid value


cdef inline const char* _ws(const char* p, const char* end) noexcept nogil:
    # PERF: the byte past 0x20 first: a compact body (what clients send) has no
    # whitespace, and this runs ~60 times a tools/call.
    while p < end and <unsigned char>p[0] <= 32 and (
        p[0] == 32 or p[0] == 10 or p[0] == 13 or p[0] == 9
    ):
        p += 1
    return p


cdef inline int _hex(char c) noexcept nogil:
    if 48 <= c <= 57:
        return c - 48
    if 97 <= c <= 102:
        return c - 87
    if 65 <= c <= 70:
        return c - 55
    return -1


cdef const char* _string(const char* p, const char* end, bint* escaped) noexcept nogil:
    """`p` after the opening quote: where the closing quote is, or NULL (undecided).
    A byte past 0x7f is undecided too: what the scanner accepts is ASCII throughout."""
    cdef char c
    cdef int a, b, c3, d, code
    while True:
        # PERF: 16 bytes a step to the next quote, backslash, control character or
        # non-ASCII byte; a byte at a time was ~13 instructions a byte of the
        # strings of a tools/call.
        p = <const char*>fc_special(<const unsigned char*>p, <const unsigned char*>end)
        if p >= end:
            return NULL
        c = p[0]
        if c == 34:
            return p
        if c != 92:
            return NULL  # a control character (invalid), or not ASCII
        escaped[0] = True
        if p + 1 >= end:
            return NULL
        c = p[1]
        if c == 117:  # \uXXXX
            if p + 6 > end:
                return NULL
            a = _hex(p[2])
            b = _hex(p[3])
            c3 = _hex(p[4])
            d = _hex(p[5])
            if a < 0 or b < 0 or c3 < 0 or d < 0:
                return NULL
            code = (a << 12) | (b << 8) | (c3 << 4) | d
            if 0xD800 <= code <= 0xDFFF:
                return NULL  # surrogates: msgspec's rules, not ours to copy
            p += 6
            continue
        if not (c == 34 or c == 92 or c == 47 or c == 98 or c == 102 or c == 110
                or c == 114 or c == 116):
            return NULL
        p += 2


cdef inline const char* _digits(const char* p, const char* end) noexcept nogil:
    """Past the run of digits at `p`."""
    while p < end and 48 <= p[0] <= 57:
        p += 1
    return p


cdef const char* _number(const char* p, const char* end, bint* integral) noexcept nogil:
    """A JSON number at `p`: where it ends, or NULL. `integral`: no fraction, no exponent."""
    cdef const char* start
    integral[0] = True
    if p < end and p[0] == 45:
        p += 1
    if p >= end:
        return NULL
    if p[0] == 48:
        p += 1
    elif 49 <= p[0] <= 57:
        p = _digits(p, end)
    else:
        return NULL
    if p < end and p[0] == 46:
        integral[0] = False
        start = p + 1
        p = _digits(start, end)
        if p == start:
            return NULL
    if p < end and (p[0] == 101 or p[0] == 69):
        integral[0] = False
        p += 1
        if p < end and (p[0] == 43 or p[0] == 45):
            p += 1
        start = p
        p = _digits(start, end)
        if p == start:
            return NULL
    return p


cdef inline const char* _literal(const char* p, const char* end, const char* word,
                                 Py_ssize_t n) noexcept nogil:
    if end - p >= n and memcmp(p, word, n) == 0:
        return p + n
    return NULL


cdef const char* _value(const char* p, const char* end, int depth, _Span* out) noexcept nogil:
    """Validate the JSON value at `p` (after whitespace): where it ends, or NULL.
    `out` (if not NULL) says what it was (_V_*) and where a string's or an integer's
    text is."""
    cdef bint escaped = False, integral
    cdef const char* q
    cdef char c
    if p >= end:
        return NULL
    c = p[0]
    if out != NULL:
        out.kind = _V_OTHER
    if c == 34:
        q = _string(p + 1, end, &escaped)
        if q == NULL:
            return NULL
        if out != NULL and not escaped:
            out.kind = _V_STRING
            out.at = p + 1
            out.size = q - p - 1
        return q + 1
    if c == 123 or c == 91:
        if depth >= _MAX_DEPTH:
            return NULL
        return _container(p, end, depth + 1)
    if c == 116:
        return _literal(p, end, b"true", 4)
    if c == 102:
        return _literal(p, end, b"false", 5)
    if c == 110:
        q = _literal(p, end, b"null", 4)
        if q != NULL and out != NULL:
            out.kind = _V_NULL
        return q
    q = _number(p, end, &integral)
    if q != NULL and out != NULL and integral:
        out.kind = _V_INT
        out.at = p
        out.size = q - p
    return q


cdef inline const char* _member_key(const char* p, const char* end, const char** key,
                                    Py_ssize_t* key_len, bint* escaped) noexcept nogil:
    """At an object member's opening quote: its key (where, how long, whether it holds
    a backslash) and where its value starts, past the colon; NULL if no member is there."""
    cdef const char* q
    if p >= end or p[0] != 34:
        return NULL
    escaped[0] = False
    q = _string(p + 1, end, escaped)
    if q == NULL:
        return NULL
    key[0] = p + 1
    key_len[0] = q - (p + 1)
    p = _ws(q + 1, end)
    if p >= end or p[0] != 58:
        return NULL
    return _ws(p + 1, end)


cdef inline const char* _next_item(const char* p, const char* end, char close,
                                   bint* closed) noexcept nogil:
    """After a member or element: past the comma to the next one, or past `close`
    (`closed` set); NULL when neither comes."""
    p = _ws(p, end)
    if p >= end:
        return NULL
    if p[0] == close:
        closed[0] = True
        return p + 1
    if p[0] != 44:
        return NULL
    return _ws(p + 1, end)


cdef const char* _container(const char* p, const char* end, int depth) noexcept nogil:
    """An object or an array at `p` (its bracket), validated: where it ends, or NULL."""
    cdef bint obj = p[0] == 123, escaped, closed = False
    cdef char close = 125 if obj else 93
    cdef const char* key
    cdef Py_ssize_t key_len
    p = _ws(p + 1, end)
    if p < end and p[0] == close:
        return p + 1
    while not closed:
        if obj:
            p = _member_key(p, end, &key, &key_len, &escaped)
            if p == NULL:
                return NULL
        p = _value(p, end, depth, NULL)
        if p == NULL:
            return NULL
        p = _next_item(p, end, close, &closed)
        if p == NULL:
            return NULL
    return p


cdef inline bint _key_is(const char* key, Py_ssize_t n, const char* word, Py_ssize_t size) noexcept nogil:
    return n == size and memcmp(key, word, size) == 0


cdef const char* _params(const char* p, const char* end, _Span* name, _Span* uri) noexcept nogil:
    """`params`, an object (else NULL: msgspec's array or error): its `name` and `uri`
    values (the last of each), every member validated."""
    cdef bint escaped, closed = False
    cdef const char* key
    cdef Py_ssize_t key_len
    cdef _Span value = _ABSENT
    if p >= end or p[0] != 123:
        return NULL
    p = _ws(p + 1, end)
    if p < end and p[0] == 125:
        return p + 1
    while not closed:
        p = _member_key(p, end, &key, &key_len, &escaped)
        if p == NULL or escaped:
            return NULL  # (an escaped key might spell name or uri)
        p = _value(p, end, 2, &value)
        if p == NULL:
            return NULL
        if _key_is(key, key_len, b"name", 4):
            if name.kind != _V_NONE:
                return NULL  # (repeated: msgspec checks each one)
            name[0] = value
        elif _key_is(key, key_len, b"uri", 3):
            if uri.kind != _V_NONE:
                return NULL
            uri[0] = value
        p = _next_item(p, end, 125, &closed)
        if p == NULL:
            return NULL
    return p


cdef inline str _ascii(const char* at, Py_ssize_t n):
    """A str of `n` ASCII bytes (the body was checked ASCII). PERF: PyUnicode_DecodeASCII
    checks every byte again, and costs twice this."""
    cdef str out = PyUnicode_New(n, 127)
    memcpy(PyUnicode_DATA(out), at, n)
    return out


cdef inline bint _plain(_Span* value) noexcept nogil:
    """params' name or uri is one whose decoding (msgspec's `Any`) can not fail or
    differ: absent, null, a string without a backslash, a short integer."""
    return (
        value.kind == _V_NONE or value.kind == _V_NULL or value.kind == _V_STRING
        or (value.kind == _V_INT and value.size <= _ID_DIGITS)
    )


cdef long long _integer(const char* at, Py_ssize_t n) noexcept nogil:
    """The value of a plain JSON integer of at most _ID_DIGITS digits."""
    cdef long long value = 0
    cdef bint negative = n > 0 and at[0] == 45
    cdef Py_ssize_t i = 1 if negative else 0
    while i < n:
        value = value * 10 + (at[i] - 48)
        i += 1
    return -value if negative else value


cdef struct _Read:
    # What the scanner read off a message it decided (see _scan).
    _Span method
    _Span msg_id
    _Span name
    _Span uri
    _Span result
    bint has_params


cdef bint _scan(const char* buf, Py_ssize_t n, _Read* r) noexcept nogil:
    """Whether the scanner decides the message in `buf[:n]` (an Envelope follows from
    what it leaves in `r`: `_envelope_of`); False for _UNDECIDED (see above). Makes no
    Python object: `_valid_single` asks only this."""
    cdef const char* end = buf + n
    cdef const char* p = _ws(buf, end)
    cdef const char* key
    cdef Py_ssize_t key_len
    cdef bint escaped, closed = False, version_ok = False, seen_version = False
    cdef _Span value = _ABSENT
    r.method = r.msg_id = r.name = r.uri = r.result = _ABSENT
    r.has_params = False
    if p >= end or p[0] != 123:
        return False
    p = _ws(p + 1, end)
    if p < end and p[0] == 125:
        return False  # {}: no jsonrpc
    while not closed:
        p = _member_key(p, end, &key, &key_len, &escaped)
        if p == NULL or escaped:
            return False
        if _key_is(key, key_len, b"params", 6):
            if r.has_params:
                return False  # (repeated: msgspec checks each one)
            p = _params(p, end, &r.name, &r.uri)
            r.has_params = True
            if p != NULL and not (_plain(&r.name) and _plain(&r.uri)):
                return False  # (msgspec decodes these: its rules for what it makes)
        else:
            p = _value(p, end, 1, &value)
            if p == NULL:
                return False
            if _key_is(key, key_len, b"jsonrpc", 7):
                if seen_version:
                    return False  # (repeated: msgspec checks each one, then the last counts)
                seen_version = True
                version_ok = (
                    value.kind == _V_STRING and value.size == 3 and memcmp(value.at, b"2.0", 3) == 0
                )
            elif _key_is(key, key_len, b"method", 6):
                if r.method.kind != _V_NONE:
                    return False
                r.method = value
            elif _key_is(key, key_len, b"id", 2):
                if r.msg_id.kind != _V_NONE:
                    return False
                r.msg_id = value
            elif _key_is(key, key_len, b"result", 6):
                if r.result.kind != _V_NONE:
                    return False
                r.result = value
            elif _key_is(key, key_len, b"error", 5):
                return False  # (an error response: msgspec's)
        if p == NULL:
            return False
        p = _next_item(p, end, 125, &closed)
        if p == NULL:
            return False
    if _ws(p, end) != end or not version_ok:
        return False
    # What fast_envelope accepts of those fields.
    if r.msg_id.kind == _V_INT:
        if r.msg_id.size > _ID_DIGITS:
            return False
    elif r.msg_id.kind != _V_STRING and r.msg_id.kind != _V_NONE and r.msg_id.kind != _V_NULL:
        return False  # (msgspec refuses it: its error to name)
    if r.method.kind != _V_NONE:
        return not (
            r.method.kind != _V_STRING or r.result.kind != _V_NONE or r.msg_id.kind == _V_NULL
        )
    return r.result.kind != _V_NONE and r.msg_id.kind != _V_NONE and r.msg_id.kind != _V_NULL


cdef object _envelope_of(_Read* r):
    """The Envelope of a message `_scan` decided: what fast_envelope makes of it."""
    cdef _Span value
    if r.msg_id.kind == _V_INT:
        ident = PyLong_FromLongLong(_integer(r.msg_id.at, r.msg_id.size))
    elif r.msg_id.kind == _V_STRING:
        ident = _ascii(r.msg_id.at, r.msg_id.size)
    else:
        ident = None
    if r.method.kind == _V_NONE:
        return _Envelope("response", None, ident)
    method_str = None
    for known in _KNOWN:
        raw = (<tuple>known)[0]
        if PyBytes_GET_SIZE(raw) == r.method.size and memcmp(
            PyBytes_AS_STRING(raw), r.method.at, r.method.size
        ) == 0:
            method_str = (<tuple>known)[1]
            key_name = (<tuple>known)[2]
            break
    if method_str is None:
        method_str = _ascii(r.method.at, r.method.size)
        key_name = _name_key(method_str) if r.has_params else None
    named = None
    if r.has_params:
        if key_name is not None:
            value = r.name if key_name == "name" else r.uri
            if value.kind == _V_STRING:
                named = _ascii(value.at, value.size)
    if r.msg_id.kind == _V_NONE:
        return _Envelope("notification", method_str, None, named)
    return _Envelope(
        "request", method_str, ident, named,
        r.method.size == 10 and memcmp(r.method.at, b"initialize", 10) == 0,
    )


cdef object _scan_single(const char* buf, Py_ssize_t n):
    """The Envelope of the message in `buf[:n]`, or _UNDECIDED (see above)."""
    cdef _Read r
    if not _scan(buf, n, &r):
        return _UNDECIDED
    return _envelope_of(&r)
