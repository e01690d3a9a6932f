# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Repeated object keys, found on the bytes: the machinery both scanners cimport.

`_jsonscan` (after msgspec) and `_fastcheck` (the byte checker) record the
keys of each open object the same way, so they agree on what a repeat is and
neither can be steered into quadratic time by a crafted body:

- a key is a Span of the input, or of the side arena when it had escapes
  (decoded to UTF-8 first: only such a key can equal one spelled otherwise);
- each object's keys are contiguous on one span stack (a KeyFrame marks
  where they start, and the arena length to pop its decoded keys);
- a new key is compared with its object's keys by length and an 8-byte
  summary (memcmp only on a likely repeat) while the object has up to SMALL
  of them, and through an open-addressing table keyed by SipHash-1-3 under
  the one process key past that.

What runs per key of a small object is inline here: a call into another
extension module would cost more than most keys take. The table, its hash
and the process key are in _jsonkeys.pyx, called through the function
pointers Cython imports: that path runs only past SMALL keys, where it costs
little beside a SipHash, and kept out of line it leaves the scanners' loops
small (inlined, it cost the common path ~2% more instructions).
"""

from libc.stdint cimport uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcmp, memcpy


cdef extern from *:
    """
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    #define JK_LITTLE_ENDIAN 0
    #else
    #define JK_LITTLE_ENDIAN 1
    #endif
    /* 1 + the value of a hex digit; 0: not one. */
    static const unsigned char jk_hex[256] = {
        ['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5,
        ['5'] = 6, ['6'] = 7, ['7'] = 8, ['8'] = 9, ['9'] = 10,
        ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
        ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
    };
    """
    # The word-at-a-time paths read bytes in memory order as the low bytes
    # first; a big-endian build takes the byte loops instead.
    const bint JK_LITTLE_ENDIAN
    # A table, not branches: \u escapes are read twice (checked, then decoded).
    const unsigned char jk_hex[256]


ctypedef unsigned char uchar


cdef enum:
    # Up to this many keys an object is searched linearly: a key costs one
    # 8-byte compare per earlier key, less than hashing it until about here
    # (measured: 16 was ~20% slower on objects of 17-32 keys), and most
    # request objects are this small.
    SMALL = 32
    # Sizes of the buffers inside Keys: typical bodies never touch malloc.
    LOCAL_SPANS = 128
    LOCAL_ARENA = 512


cdef enum:
    CLEAN = 0
    FOUND = 1
    NO_MEMORY = -2


cdef struct Span:
    Py_ssize_t off       # into the input, or into the arena when `decoded`
    Py_ssize_t len
    # See key_tag: keys of up to 8 bytes compare without memcmp, longer ones
    # reach it only on a likely repeat.
    uint64_t tag
    bint decoded


cdef struct Entry:
    uint64_t hash
    Py_ssize_t key       # index into Keys.spans; -1 marks an empty slot


cdef struct KeyFrame:
    # One open object's keys: spans[first:nspans]. A scanner may open one for
    # an array too (_jsonscan does, so that the enclosing object's current key
    # is always spans[inner.first - 1]).
    Py_ssize_t first
    Py_ssize_t mark      # arena length when it opened
    Entry* table         # NULL until it has more than SMALL keys
    Py_ssize_t mask
    Py_ssize_t used


cdef struct Keys:
    # One call's keys: the input, the span stack and the arena of decoded keys.
    const uchar* data
    const uchar* end
    Span* spans
    Py_ssize_t nspans
    Py_ssize_t spans_cap
    uchar* arena
    Py_ssize_t arena_len
    Py_ssize_t arena_cap
    Span local_spans[LOCAL_SPANS]
    uchar local_arena[LOCAL_ARENA]


# -- buffers ------------------------------------------------------------------------------

cdef inline int grow(void** buf, Py_ssize_t* cap, Py_ssize_t need, size_t item, void* local) noexcept nogil:
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


cdef inline void keys_init(Keys* k, const uchar* data, Py_ssize_t size) noexcept nogil:
    k.data = data
    k.end = data + size
    k.spans = k.local_spans
    k.nspans = 0
    k.spans_cap = LOCAL_SPANS
    k.arena = k.local_arena
    k.arena_len = 0
    k.arena_cap = LOCAL_ARENA


cdef inline void keys_free(Keys* k) noexcept nogil:
    """The span stack and the arena; the open frames' tables are their owners' to free."""
    if k.spans != k.local_spans:
        free(k.spans)
    if k.arena != k.local_arena:
        free(k.arena)


cdef inline int keys_arena(Keys* k, Py_ssize_t n) noexcept nogil:
    """Room for n more arena bytes at arena + arena_len: 0, or -1 out of memory."""
    if k.arena_len + n > k.arena_cap:
        return grow(<void**>&k.arena, &k.arena_cap, k.arena_len + n, 1, k.local_arena)
    return 0


# -- one key ------------------------------------------------------------------------------

cdef uint64_t key_hash(const uchar* p, Py_ssize_t n) noexcept nogil
cdef int keys_add_big(Keys* k, KeyFrame* f, const uchar* kp, Py_ssize_t n) noexcept nogil


cdef inline uint64_t key_tag(const uchar* p, Py_ssize_t n, const uchar* end) noexcept nogil:
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
    if JK_LITTLE_ENDIAN and end - p >= 8:
        memcpy(&t, p, 8)
        return t & ((1ULL << (8 * n)) - 1) if n < 8 else t
    for i in range(n):
        t |= (<uint64_t>p[i]) << (8 * i)
    return t


cdef inline int hex_digit(uchar c) noexcept nogil:
    """The value of a hex digit, or -1."""
    return jk_hex[c] - 1


cdef inline int hex4(const uchar* p) noexcept nogil:
    """The 4 hex digits at p as a number, or -1."""
    cdef int a = jk_hex[p[0]], b = jk_hex[p[1]], c = jk_hex[p[2]], d = jk_hex[p[3]]
    if a == 0 or b == 0 or c == 0 or d == 0:
        return -1
    return ((a - 1) << 12) | ((b - 1) << 8) | ((c - 1) << 4) | (d - 1)


cdef inline Py_ssize_t unescape(const uchar* p, const uchar* end, uchar* out) noexcept nogil:
    """The string content [p, end) unescaped into `out` as UTF-8; returns the length.

    Never writes more bytes than it reads, so `out` needs end - p bytes. An
    unpaired surrogate becomes its 3-byte form (as Python's "surrogatepass"),
    which equals no other key's bytes: keys then compare as json.loads' strings.
    Malformed escapes are copied, not rejected: they only occur in input that
    is not JSON (_fastcheck refuses it before, _jsonscan runs after msgspec).
    """
    cdef uchar* o = out
    cdef uchar c
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
            cp = hex4(p + 2) if p + 6 <= end else -1
            if cp < 0:
                o[0] = 92
                o += 1
                p += 1
                continue
            p += 6
            if 0xD800 <= cp < 0xDC00 and p + 6 <= end and p[0] == 92 and p[1] == 117:
                lo = hex4(p + 2)
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


# -- the keys of open objects -------------------------------------------------------------

cdef inline const uchar* span_ptr(Keys* k, Span* s) noexcept nogil:
    if s.decoded:
        return k.arena + s.off
    return k.data + s.off


cdef inline void keys_open(Keys* k, KeyFrame* f) noexcept nogil:
    f.first = k.nspans
    f.mark = k.arena_len
    f.table = NULL  # mask and used are set with the table


cdef inline void keys_close(Keys* k, KeyFrame* f) noexcept nogil:
    """Pop the object's keys (and its decoded ones from the arena)."""
    if f.table != NULL:
        free(f.table)
    k.nspans = f.first
    k.arena_len = f.mark


cdef inline int keys_add(Keys* k, KeyFrame* f, const uchar* kp, Py_ssize_t n, bint decoded) noexcept nogil:
    """Record the n key bytes at kp (in the input, or in the arena when decoded) in the
    object f.

    FOUND if the object has it already (the span is then left at spans[nspans],
    for the caller to name), CLEAN once recorded, or NO_MEMORY.
    """
    cdef Span* span
    cdef Span* o
    cdef Py_ssize_t i
    cdef uint64_t tag
    if k.nspans == k.spans_cap and grow(<void**>&k.spans, &k.spans_cap, k.nspans + 1, sizeof(Span), k.local_spans) < 0:
        return NO_MEMORY
    span = &k.spans[k.nspans]
    span.len = n
    span.decoded = decoded
    if decoded:
        span.off = kp - k.arena
        tag = key_tag(kp, n, kp + n)
    else:
        span.off = kp - k.data
        tag = key_tag(kp, n, k.end)
    span.tag = tag
    if f.table != NULL or k.nspans - f.first >= SMALL:
        return keys_add_big(k, f, kp, n)
    for i in range(f.first, k.nspans):
        o = &k.spans[i]
        if o.tag == tag and o.len == n and (n <= 8 or memcmp(span_ptr(k, o), kp, n) == 0):
            return FOUND
    k.nspans += 1
    return CLEAN


cdef inline int keys_add_escaped(Keys* k, KeyFrame* f, const uchar* s, const uchar* q) noexcept nogil:
    """keys_add for the key content [s, q) that has a backslash: decoded into the arena first."""
    cdef uchar* out
    cdef Py_ssize_t n
    if keys_arena(k, q - s) < 0:
        return NO_MEMORY
    out = k.arena + k.arena_len
    n = unescape(s, q, out)
    k.arena_len += n
    return keys_add(k, f, out, n, True)
