# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Duplicate object keys in a JSON document, found without decoding it.

A body whose objects repeat a key means different things to different parsers
(msgspec and most Python code keep the last value, others the first or
reject), so the gateway refuses it. msgspec decodes first and accepts it
silently; this scanner runs on the bytes msgspec accepted.

Shape of the hot path: one forward pass with no Python object per byte or per
key. Strings are skipped 8 bytes at a time (memchr past SHORT_STRING bytes);
numbers and literals are skipped as runs of their characters, not validated
(msgspec did that). Keys are recorded as (offset, length) spans of the input on
an explicit stack (no recursion, so no depth limit to get wrong), each
object's keys contiguous on it; a new key is compared against its object's
keys (length and an 8-byte summary, then memcmp) while the object is small, and
through a keyed hash table once it has more than SMALL keys, so a
100,000-key object stays linear. Only keys containing a backslash are decoded
(to UTF-8, in a side buffer), because only they can equal a key spelled
differently.

Input that is not valid JSON never reads outside the buffer and never loops;
what it returns for such input is unspecified (usually None).
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport uint8_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memchr, memcmp, memcpy

import os


cdef extern from *:
    """
    #if defined(_MSC_VER)
    #include <intrin.h>
    static __inline int js_ctz64(unsigned __int64 x) { unsigned long i; _BitScanForward64(&i, x); return (int)i; }
    #else
    #define js_ctz64(x) __builtin_ctzll(x)
    #endif
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    #define JS_LITTLE_ENDIAN 0
    #else
    #define JS_LITTLE_ENDIAN 1
    #endif
    """
    int js_ctz64(uint64_t x) noexcept nogil
    # The word-at-a-time paths read bytes in memory order as the low bytes
    # first; a big-endian build takes the byte loops instead.
    const bint JS_LITTLE_ENDIAN


cdef enum:
    # Up to this many keys an object is searched linearly: a key costs one
    # 8-byte compare per earlier key, less than hashing it until about here
    # (measured: 16 was ~20% slower on objects of 17-32 keys), and most
    # request objects are this small.
    SMALL = 32
    # Inputs at least this long are scanned with the GIL released; below it
    # the release costs more than it lets other threads do.
    NOGIL_BYTES = 65536
    # A string longer than this is finished with memchr: its SIMD loop wins
    # once the call is paid for, the 8-byte loop wins on the short ones.
    SHORT_STRING = 32
    # Sizes of the buffers inside Scan: typical bodies never touch malloc.
    LOCAL_FRAMES = 32
    LOCAL_SPANS = 128
    LOCAL_ARENA = 512


cdef enum:
    CLEAN = 0
    FOUND = 1
    INVALID = -1
    NO_MEMORY = -2


cdef struct Span:
    Py_ssize_t off       # into the input, or into the arena when `decoded`
    Py_ssize_t len
    # See _tag: keys of up to 8 bytes compare without memcmp, longer ones
    # reach it only on a likely repeat.
    uint64_t tag
    bint decoded


cdef struct Entry:
    uint64_t hash
    Py_ssize_t key       # index into Scan.spans; -1 marks an empty slot


cdef struct Frame:
    # Index of this container's first key in Scan.spans. Arrays record it too:
    # the enclosing object's current key is then always spans[child.first - 1].
    Py_ssize_t first
    Py_ssize_t index     # arrays: index of the current element
    Py_ssize_t mark      # arena length when the object opened, to pop its decoded keys
    Entry* table         # NULL until the object outgrows SMALL
    Py_ssize_t mask
    Py_ssize_t used
    bint is_object


cdef struct Scan:
    const unsigned char* data
    Py_ssize_t size
    Frame* frames
    Py_ssize_t depth
    Py_ssize_t frames_cap
    Span* spans
    Py_ssize_t nspans
    Py_ssize_t spans_cap
    unsigned char* arena
    Py_ssize_t arena_len
    Py_ssize_t arena_cap
    Span dup
    Frame local_frames[LOCAL_FRAMES]
    Span local_spans[LOCAL_SPANS]
    unsigned char local_arena[LOCAL_ARENA]


# Keyed hash for the big-object tables: the keys come from the client, and a
# fixed hash would let one craft a body whose keys all collide (quadratic time).
cdef uint64_t _k0, _k1
_k = os.urandom(16)
_k0 = int.from_bytes(_k[:8], "little")
_k1 = int.from_bytes(_k[8:], "little")
del _k

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


cdef inline uint64_t _rotl(uint64_t x, int b) noexcept nogil:
    return (x << b) | (x >> (64 - b))


cdef inline void _sipround(uint64_t* v) noexcept nogil:
    v[0] += v[1]; v[1] = _rotl(v[1], 13); v[1] ^= v[0]; v[0] = _rotl(v[0], 32)
    v[2] += v[3]; v[3] = _rotl(v[3], 16); v[3] ^= v[2]
    v[0] += v[3]; v[3] = _rotl(v[3], 21); v[3] ^= v[0]
    v[2] += v[1]; v[1] = _rotl(v[1], 17); v[1] ^= v[2]; v[2] = _rotl(v[2], 32)


cdef uint64_t _siphash13(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    """SipHash-1-3 (what CPython hashes str and bytes with) under the process key."""
    cdef uint64_t v[4]
    cdef uint64_t m, b = (<uint64_t>n) << 56
    cdef Py_ssize_t i, tail = n & 7
    v[0] = _k0 ^ 0x736f6d6570736575ULL
    v[1] = _k1 ^ 0x646f72616e646f6dULL
    v[2] = _k0 ^ 0x6c7967656e657261ULL
    v[3] = _k1 ^ 0x7465646279746573ULL
    for i in range(0, n - tail, 8):
        memcpy(&m, p + i, 8)  # little-endian hosts only; the value just has to be stable
        v[3] ^= m
        _sipround(v)
        v[0] ^= m
    p += n - tail
    for i in range(tail):
        b |= (<uint64_t>p[i]) << (8 * i)
    v[3] ^= b
    _sipround(v)
    v[0] ^= b
    v[2] ^= 0xff
    _sipround(v)
    _sipround(v)
    _sipround(v)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


cdef int _grow(void** buf, Py_ssize_t* cap, Py_ssize_t need, size_t item, void* local) noexcept nogil:
    """Make room for `need` items; the first growth copies out of the local buffer."""
    cdef Py_ssize_t new_cap = cap[0]
    cdef void* p
    while new_cap < need:
        new_cap *= 2
    if <size_t>new_cap > (<size_t>-1) / 2 / item:
        return -1
    if buf[0] == local:
        p = malloc(new_cap * item)
        if p != NULL:
            memcpy(p, local, cap[0] * item)
    else:
        p = realloc(buf[0], new_cap * item)
    if p == NULL:
        return -1
    buf[0] = p
    cap[0] = new_cap
    return 0


cdef inline const unsigned char* _key_ptr(Scan* s, Span* k) noexcept nogil:
    if k.decoded:
        return s.arena + k.off
    return s.data + k.off


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
        if JS_LITTLE_ENDIAN and end - q >= 8:
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


cdef inline uint64_t _tag(const unsigned char* p, Py_ssize_t n, const unsigned char* end) noexcept nogil:
    """A summary of the n key bytes at p; reads nothing at or past end.

    Up to 8 bytes: the bytes themselves, zero-padded, so equal tags (and
    lengths) are equal keys. Longer: first and last 8 bytes mixed, so keys
    sharing a prefix ("user_id", "user_name") still differ here and memcmp
    only runs on a likely repeat.
    """
    cdef uint64_t t = 0, last
    cdef Py_ssize_t i
    if n > 8:
        memcpy(&t, p, 8)
        memcpy(&last, p + n - 8, 8)
        return t ^ (last * 0x9E3779B97F4A7C15ULL)
    if JS_LITTLE_ENDIAN and end - p >= 8:
        memcpy(&t, p, 8)
        return t & ((1ULL << (8 * n)) - 1) if n < 8 else t
    for i in range(n):
        t |= (<uint64_t>p[i]) << (8 * i)
    return t


cdef inline int _hex4(const unsigned char* p) noexcept nogil:
    cdef int v = 0, i, c
    for i in range(4):
        c = p[i]
        if 48 <= c <= 57:
            c -= 48
        elif 97 <= c <= 102:
            c -= 87
        elif 65 <= c <= 70:
            c -= 55
        else:
            return -1
        v = (v << 4) | c
    return v


cdef Py_ssize_t _decode(const unsigned char* p, const unsigned char* end, unsigned char* out) noexcept nogil:
    """Unescape the key bytes [p, end) into `out` as UTF-8; returns the length.

    Never writes more bytes than it reads, so `out` needs end - p bytes. An
    unpaired surrogate becomes its 3-byte form (as Python's "surrogatepass"),
    which equals no other key's bytes: keys then compare as json.loads' strings.
    Malformed escapes are copied, not rejected: they only occur in input that
    is not JSON.
    """
    cdef unsigned char* o = out
    cdef unsigned char c
    cdef int cp, lo
    while p < end:
        c = p[0]
        if c != 92 or p + 1 >= end:  # not a backslash
            o[0] = c
            o += 1
            p += 1
            continue
        c = p[1]
        if c == 117:  # \uXXXX
            cp = _hex4(p + 2) if p + 6 <= end else -1
            if cp < 0:
                o[0] = 92
                o += 1
                p += 1
                continue
            p += 6
            if 0xD800 <= cp < 0xDC00 and p + 6 <= end and p[0] == 92 and p[1] == 117:
                lo = _hex4(p + 2)
                if 0xDC00 <= lo < 0xE000:
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
                    p += 6
            if cp < 0x80:
                o[0] = cp
                o += 1
            elif cp < 0x800:
                o[0] = 0xC0 | (cp >> 6)
                o[1] = 0x80 | (cp & 0x3F)
                o += 2
            elif cp < 0x10000:
                o[0] = 0xE0 | (cp >> 12)
                o[1] = 0x80 | ((cp >> 6) & 0x3F)
                o[2] = 0x80 | (cp & 0x3F)
                o += 3
            else:
                o[0] = 0xF0 | (cp >> 18)
                o[1] = 0x80 | ((cp >> 12) & 0x3F)
                o[2] = 0x80 | ((cp >> 6) & 0x3F)
                o[3] = 0x80 | (cp & 0x3F)
                o += 4
            continue
        if c == 98:
            c = 8
        elif c == 102:
            c = 12
        elif c == 110:
            c = 10
        elif c == 114:
            c = 13
        elif c == 116:
            c = 9
        # \" \\ \/ stand for themselves; so does anything else (not JSON)
        o[0] = c
        o += 1
        p += 2
    return o - out


cdef int _table_put(Scan* s, Frame* f, Py_ssize_t key, uint64_t h) noexcept nogil:
    """Insert spans[key] unless an equal key is there: 1 if it was, 0 if inserted."""
    cdef Span* k = &s.spans[key]
    cdef const unsigned char* kp = _key_ptr(s, k)
    cdef Span* o
    cdef Py_ssize_t i = <Py_ssize_t>(h & <uint64_t>f.mask)
    while f.table[i].key >= 0:
        if f.table[i].hash == h:
            o = &s.spans[f.table[i].key]
            if o.len == k.len and o.tag == k.tag and memcmp(_key_ptr(s, o), kp, k.len) == 0:
                return 1
        i = (i + 1) & f.mask
    f.table[i].hash = h
    f.table[i].key = key
    f.used += 1
    return 0


cdef int _table_resize(Scan* s, Frame* f, Py_ssize_t size) noexcept nogil:
    cdef Entry* old = f.table
    cdef Py_ssize_t old_size = f.mask + 1 if old != NULL else 0
    cdef Py_ssize_t i
    cdef Span* k
    if <size_t>size > (<size_t>-1) / 2 / sizeof(Entry):
        return -1
    f.table = <Entry*>malloc(size * sizeof(Entry))
    if f.table == NULL:
        f.table = old
        return -1
    for i in range(size):
        f.table[i].key = -1
    f.mask = size - 1
    f.used = 0
    if old != NULL:
        for i in range(old_size):
            if old[i].key >= 0:
                _table_put(s, f, old[i].key, old[i].hash)
        free(old)
    else:  # first table: every key so far (known distinct) goes in
        for i in range(f.first, s.nspans):
            k = &s.spans[i]
            _table_put(s, f, i, _siphash13(_key_ptr(s, k), k.len))
    return 0


cdef int _add_big(Scan* s, Frame* f, Span* span) noexcept nogil:
    """_add_key for an object past SMALL keys: through its hash table."""
    if f.table == NULL:
        if _table_resize(s, f, 4 * SMALL) < 0:
            return NO_MEMORY
    elif 2 * (f.used + 1) > f.mask + 1:  # keep the load under 1/2: probes stay short
        if _table_resize(s, f, 2 * (f.mask + 1)) < 0:
            return NO_MEMORY
    if _table_put(s, f, s.nspans, _siphash13(_key_ptr(s, span), span.len)):
        s.dup = span[0]
        return FOUND
    s.nspans += 1
    return CLEAN


cdef inline int _add_key(Scan* s, const unsigned char* k, const unsigned char* q, bint escaped) noexcept nogil:
    """Record the key [k, q) in the innermost object: FOUND if it repeats, else CLEAN."""
    cdef Frame* f = &s.frames[s.depth - 1]
    cdef Span* span
    cdef Span* o
    cdef const unsigned char* kp
    cdef Py_ssize_t i, n
    cdef uint64_t tag
    if s.nspans == s.spans_cap and _grow(<void**>&s.spans, &s.spans_cap, s.nspans + 1, sizeof(Span), s.local_spans) < 0:
        return NO_MEMORY
    span = &s.spans[s.nspans]
    if escaped:
        if s.arena_len + (q - k) > s.arena_cap and _grow(<void**>&s.arena, &s.arena_cap, s.arena_len + (q - k), 1, s.local_arena) < 0:
            return NO_MEMORY
        span.off = s.arena_len
        span.len = _decode(k, q, s.arena + s.arena_len)
        span.decoded = True
        s.arena_len += span.len
        kp = s.arena + span.off
        span.tag = _tag(kp, span.len, kp + span.len)
    else:
        span.off = k - s.data
        span.len = q - k
        span.decoded = False
        kp = k
        span.tag = _tag(k, span.len, s.data + s.size)
    if f.table != NULL or s.nspans - f.first >= SMALL:
        return _add_big(s, f, span)
    n = span.len
    tag = span.tag
    for i in range(f.first, s.nspans):
        o = &s.spans[i]
        if o.tag == tag and o.len == n and (n <= 8 or memcmp(_key_ptr(s, o), kp, n) == 0):
            s.dup = span[0]
            return FOUND
    s.nspans += 1
    return CLEAN


cdef inline int _push(Scan* s, bint is_object) noexcept nogil:
    cdef Frame* f
    if s.depth == s.frames_cap and _grow(<void**>&s.frames, &s.frames_cap, s.depth + 1, sizeof(Frame), s.local_frames) < 0:
        return NO_MEMORY
    f = &s.frames[s.depth]
    f.first = s.nspans
    f.index = 0
    f.mark = s.arena_len
    f.table = NULL
    f.is_object = is_object
    s.depth += 1
    return CLEAN


cdef inline const unsigned char* _ws(const unsigned char* p, const unsigned char* end) noexcept nogil:
    while p < end and _WS[p[0]]:
        p += 1
    return p


cdef inline const unsigned char* _key(Scan* s, const unsigned char* p, int* rc) noexcept nogil:
    """Read the key at p and its colon; returns where the value starts, or NULL and *rc."""
    cdef const unsigned char* end = s.data + s.size
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
    cdef const unsigned char* p = s.data
    cdef const unsigned char* end = s.data + s.size
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
            if f.table != NULL:
                free(f.table)
            s.nspans = f.first
            s.arena_len = f.mark
            s.depth -= 1
            p += 1


cdef str _token(Scan* s, Span* k):
    cdef const char* p = <const char*>_key_ptr(s, k)
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
            parts.append(_token(s, &s.spans[s.frames[i + 1].first - 1]))
    return "/" + "/".join(parts)


cdef void _release(Scan* s) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(s.depth):
        free(s.frames[i].table)
    if s.frames != s.local_frames:
        free(s.frames)
    if s.spans != s.local_spans:
        free(s.spans)
    if s.arena != s.local_arena:
        free(s.arena)


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
    if PyBytes_CheckExact(data):
        s.data = <const unsigned char*>PyBytes_AS_STRING(data)
        s.size = PyBytes_GET_SIZE(data)
    else:
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        have_view = True
        s.data = <const unsigned char*>view.buf
        s.size = view.len
    s.frames = s.local_frames
    s.frames_cap = LOCAL_FRAMES
    s.depth = 0
    s.spans = s.local_spans
    s.spans_cap = LOCAL_SPANS
    s.nspans = 0
    s.arena = s.local_arena
    s.arena_cap = LOCAL_ARENA
    s.arena_len = 0
    try:
        if s.size >= NOGIL_BYTES:
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
