# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Duplicate object keys in a JSON document, found without decoding it.

A body whose objects repeat a key means different things to different parsers
(msgspec and most Python code keep the last value, others the first or
reject), so the gateway refuses it. msgspec decodes first and accepts it
silently; this scanner runs on the bytes msgspec accepted.

Shape of the hot path: one forward pass with no Python object per byte or per
key. Strings are skipped 8 bytes at a time (memchr past SHORT_STRING bytes);
numbers and literals are skipped as runs of their characters, not validated
(msgspec did that). Containers are tracked on an explicit stack (no recursion,
so no depth limit to get wrong); their keys are recorded and compared by
_jsonkeys.pxd, as _fastcheck compares them: spans of the input, an 8-byte
summary, a keyed hash table past SMALL keys (a 100,000-key object stays
linear), and only keys containing a backslash decoded.

Input that is not valid JSON never reads outside the buffer and never loops;
what it returns for such input is unspecified (usually None).
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport uint8_t, uint64_t
from libc.stdlib cimport free
from libc.string cimport memchr, memcpy

from runmcp_fast._jsonkeys cimport (
    CLEAN,
    FOUND,
    JK_LITTLE_ENDIAN,
    NO_MEMORY,
    KeyFrame,
    Keys,
    Span,
    grow,
    key_hash,
    key_tag,
    keys_add,
    keys_add_escaped,
    keys_close,
    keys_free,
    keys_init,
    keys_open,
    span_ptr,
)


cdef extern from *:
    """
    #if defined(_MSC_VER)
    #include <intrin.h>
    static __inline int js_ctz64(unsigned __int64 x) { unsigned long i; _BitScanForward64(&i, x); return (int)i; }
    #else
    #define js_ctz64(x) __builtin_ctzll(x)
    #endif
    """
    int js_ctz64(uint64_t x) noexcept nogil


cdef enum:
    # Inputs at least this long are scanned with the GIL released; below it
    # the release costs more than it lets other threads do.
    NOGIL_BYTES = 65536
    # A string longer than this is finished with memchr: its SIMD loop wins
    # once the call is paid for, the 8-byte loop wins on the short ones.
    SHORT_STRING = 32
    # Frames inside Scan: typical bodies never touch malloc.
    LOCAL_FRAMES = 32


cdef enum:
    INVALID = -1  # beside _jsonkeys' CLEAN, FOUND, NO_MEMORY


cdef struct Frame:
    # Arrays open one too: the enclosing object's current key is then always
    # spans[child.keys.first - 1].
    KeyFrame keys
    Py_ssize_t index     # arrays: index of the current element
    bint is_object


cdef struct Scan:
    # Before `keys`, whose local buffers take 4.6 KB: the frame fields then share
    # cache lines with the head of `keys` (measured: after them, small bodies
    # took ~4% longer, for the same instructions).
    Frame* frames
    Py_ssize_t depth
    Py_ssize_t frames_cap
    Keys keys            # the input, and the keys of the open objects
    Span dup
    Frame local_frames[LOCAL_FRAMES]

# Whitespace, the characters of numbers and literals, and the bytes that end
# a run of string content, by byte value.
cdef uint8_t _WS[256]
cdef uint8_t _SCALAR[256]
cdef uint8_t _STOP[256]
cdef unsigned char _c
for _c in b" \t\r\n":
    _WS[_c] = 1
for _c in b"0123456789+-.eEtruefalsn":
    _SCALAR[_c] = 1
for _c in b'"\\':
    _STOP[_c] = 1


cdef inline uint64_t _stops(uint64_t v) noexcept nogil:
    """High bit of each byte of v that is '"' or a backslash.

    Exact up to the first such byte (the borrow of the subtraction can only
    mark bytes above a real match), which is the only one used.
    """
    cdef uint64_t a = v ^ 0x2222222222222222ULL
    cdef uint64_t b = v ^ 0x5c5c5c5c5c5c5c5cULL
    return (((a - 0x0101010101010101ULL) & ~a) | ((b - 0x0101010101010101ULL) & ~b)) & 0x8080808080808080ULL


cdef inline const unsigned char* _string_end(
    const unsigned char* q, const unsigned char* end, bint* escaped
) noexcept nogil:
    """The closing quote of the string whose content starts at q, or NULL.

    Sets *escaped if the content has a backslash; escaped=NULL: a value, whose
    escapes do not matter.
    """
    cdef const unsigned char* start = q
    cdef const unsigned char* b
    cdef uint64_t m
    while q - start < SHORT_STRING:
        if JK_LITTLE_ENDIAN and end - q >= 8:
            memcpy(&m, q, 8)
            m = _stops(m)
            if m == 0:
                q += 8
                continue
            q += js_ctz64(m) >> 3
        else:
            while q < end and not _STOP[q[0]]:
                q += 1
            if q >= end:
                return NULL
        if q[0] == 34:
            return q
        if escaped != NULL:
            escaped[0] = True
        if end - q <= 2:
            return NULL
        q += 2  # the escaped byte can not end the string
    # Long: memchr to each quote; it is escaped iff an odd run of backslashes
    # precedes it. The run stops at the opening quote at the latest, and the
    # parity is right from wherever the 8-byte loop left off.
    while True:
        q = <const unsigned char*>memchr(q, 34, end - q)
        if q == NULL:
            return NULL
        b = q
        while (b - 1)[0] == 92:
            b -= 1
        if (q - b) & 1 == 0:
            break
        q += 1
    if escaped != NULL and not escaped[0] and memchr(start, 92, q - start) != NULL:
        escaped[0] = True
    return q


cdef inline int _add_key(Scan* s, const unsigned char* k, const unsigned char* q, bint escaped) noexcept nogil:
    """Record the key [k, q) in the innermost object: FOUND if it repeats, else CLEAN."""
    cdef KeyFrame* f = &s.frames[s.depth - 1].keys
    cdef int rc
    if escaped:
        rc = keys_add_escaped(&s.keys, f, k, q)
    else:
        rc = keys_add(&s.keys, f, k, q - k, False)
    if rc == FOUND:
        s.dup = s.keys.spans[s.keys.nspans]
    return rc


cdef inline int _push(Scan* s, bint is_object) noexcept nogil:
    cdef Frame* f
    if s.depth == s.frames_cap and grow(<void**>&s.frames, &s.frames_cap, s.depth + 1, sizeof(Frame), s.local_frames) < 0:
        return NO_MEMORY
    f = &s.frames[s.depth]
    keys_open(&s.keys, &f.keys)
    f.index = 0
    f.is_object = is_object
    s.depth += 1
    return CLEAN


cdef inline const unsigned char* _ws(const unsigned char* p, const unsigned char* end) noexcept nogil:
    while p < end and _WS[p[0]]:
        p += 1
    return p


cdef inline const unsigned char* _key(Scan* s, const unsigned char* p, int* rc) noexcept nogil:
    """Read the key at p and its colon; returns where the value starts, or NULL and *rc."""
    cdef const unsigned char* end = s.keys.end
    cdef const unsigned char* k = p + 1
    cdef const unsigned char* q
    cdef bint escaped = False
    if p >= end or p[0] != 34:
        rc[0] = INVALID
        return NULL
    q = _string_end(k, end, &escaped)
    if q == NULL:
        rc[0] = INVALID
        return NULL
    rc[0] = _add_key(s, k, q, escaped)
    if rc[0] != CLEAN:
        return NULL
    p = _ws(q + 1, end)
    if p >= end or p[0] != 58:  # :
        rc[0] = INVALID
        return NULL
    return _ws(p + 1, end)


cdef int _scan(Scan* s) noexcept nogil:
    cdef const unsigned char* p = s.keys.data
    cdef const unsigned char* end = s.keys.end
    cdef const unsigned char* q
    cdef unsigned char c
    cdef int rc = CLEAN
    cdef Frame* f
    p = _ws(p, end)
    while True:
        # A value starts at p.
        if p >= end:
            return INVALID
        c = p[0]
        if c == 123 or c == 91:  # { [
            p = _ws(p + 1, end)
            if p < end and p[0] == c + 2:  # } ]: empty, nothing to push
                p += 1
            else:
                rc = _push(s, c == 123)
                if rc != CLEAN:
                    return rc
                if c == 123:
                    p = _key(s, p, &rc)
                    if p == NULL:
                        return rc
                continue
        elif c == 34:  # "
            q = _string_end(p + 1, end, NULL)
            if q == NULL:
                return INVALID
            p = q + 1
        else:
            q = p
            while p < end and _SCALAR[p[0]]:
                p += 1
            if p == q:
                return INVALID

        # After a value: closers, then a comma and the next key or element.
        while True:
            p = _ws(p, end)
            if s.depth == 0:
                return CLEAN  # trailing bytes: msgspec has refused them already
            if p >= end:
                return INVALID
            f = &s.frames[s.depth - 1]
            c = p[0]
            if c == 44:  # ,
                p = _ws(p + 1, end)
                if f.is_object:
                    p = _key(s, p, &rc)
                    if p == NULL:
                        return rc
                else:
                    f.index += 1
                break
            if c != 125 and c != 93:  # } ]
                return INVALID
            if (c == 125) != f.is_object:
                return INVALID
            keys_close(&s.keys, &f.keys)
            s.depth -= 1
            p += 1


cdef str _token(Scan* s, Span* k):
    cdef const char* p = <const char*>span_ptr(&s.keys, k)
    try:
        # surrogatepass: a lone surrogate escape gives the str json.loads gives
        token = PyUnicode_DecodeUTF8(p, k.len, "surrogatepass")
    except UnicodeDecodeError:  # not UTF-8, so not something msgspec accepted
        token = PyUnicode_DecodeUTF8(p, k.len, "replace")
    return token.replace("~", "~0").replace("/", "~1")


cdef str _pointer(Scan* s):
    """The JSON pointer of s.dup, from the frames still open when it was found."""
    cdef Py_ssize_t i
    cdef Frame* f
    parts = []
    for i in range(s.depth):
        f = &s.frames[i]
        if not f.is_object:
            parts.append(str(f.index))
        elif i == s.depth - 1:
            parts.append(_token(s, &s.dup))
        else:
            parts.append(_token(s, &s.keys.spans[s.frames[i + 1].keys.first - 1]))
    return "/" + "/".join(parts)


cdef void _release(Scan* s) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(s.depth):
        free(s.frames[i].keys.table)
    if s.frames != s.local_frames:
        free(s.frames)
    keys_free(&s.keys)


def duplicate_key(data):
    """The JSON pointer of the first repeated object key in `data`, or None.

    `data` is a JSON document as bytes, bytearray or any contiguous buffer,
    already accepted by a JSON parser. "First" is in document order: the
    earliest key in the text that equals (after unescaping) a key before it in
    the same object; the pointer's last token is that key, e.g. "/items/1/a".
    """
    cdef Scan s
    cdef Py_buffer view
    cdef bint have_view = False
    cdef int rc
    cdef Py_ssize_t size
    if PyBytes_CheckExact(data):
        size = PyBytes_GET_SIZE(data)
        keys_init(&s.keys, <const unsigned char*>PyBytes_AS_STRING(data), size)
    else:
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        have_view = True
        size = view.len
        keys_init(&s.keys, <const unsigned char*>view.buf, size)
    s.frames = s.local_frames
    s.frames_cap = LOCAL_FRAMES
    s.depth = 0
    try:
        if size >= NOGIL_BYTES:
            with nogil:
                rc = _scan(&s)
        else:
            rc = _scan(&s)
        if rc == FOUND:
            return _pointer(&s)
        if rc == NO_MEMORY:
            raise MemoryError()
        return None
    finally:
        _release(&s)
        if have_view:
            PyBuffer_Release(&view)


def _key_summary(bytes data not None):
    """_jsonkeys.key_summary through this module's cimports (tests: one process key)."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    return key_hash(p, n), key_tag(p, n, p + n)
