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
  the one process key (`key0`, `key1`, set by _jsonkeys.pyx) past that.

Everything is inline: the scanners call it per key, and a call into another
extension module would cost more than most keys take. Only the key itself is
shared, through a pointer Cython imports from _jsonkeys at import time.
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
    """
    # The word-at-a-time paths read bytes in memory order as the low bytes
    # first; a big-endian build takes the byte loops instead.
    const bint JK_LITTLE_ENDIAN


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


# The process key of the tables' hash: the keys come from the client, and a
# fixed hash would let one craft a body whose keys all collide (quadratic
# time). One key for both scanners, so they hash a key alike (tests check).
cdef uint64_t key0, key1


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

cdef inline uint64_t _rotl(uint64_t x, int b) noexcept nogil:
    return (x << b) | (x >> (64 - b))


cdef inline void _sipround(uint64_t* v) noexcept nogil:
    v[0] += v[1]; v[1] = _rotl(v[1], 13); v[1] ^= v[0]; v[0] = _rotl(v[0], 32)
    v[2] += v[3]; v[3] = _rotl(v[3], 16); v[3] ^= v[2]
    v[0] += v[3]; v[3] = _rotl(v[3], 21); v[3] ^= v[0]
    v[2] += v[1]; v[1] = _rotl(v[1], 17); v[1] ^= v[2]; v[2] = _rotl(v[2], 32)


cdef inline uint64_t key_hash(const uchar* p, Py_ssize_t n) noexcept nogil:
    """SipHash-1-3 (what CPython hashes str and bytes with) under the process key."""
    cdef uint64_t v[4]
    cdef uint64_t m, b = (<uint64_t>n) << 56
    cdef Py_ssize_t i, tail = n & 7
    v[0] = key0 ^ 0x736f6d6570736575ULL
    v[1] = key1 ^ 0x646f72616e646f6dULL
    v[2] = key0 ^ 0x6c7967656e657261ULL
    v[3] = key1 ^ 0x7465646279746573ULL
    for i in range(0, n - tail, 8):
        memcpy(&m, p + i, 8)  # host order: the value only has to be stable in one process
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
    if <uchar>(c - 48) < 10:
        return c - 48
    c |= 0x20  # A-F as a-f; no other byte becomes a hex letter
    if <uchar>(c - 97) < 6:
        return c - 87
    return -1


cdef inline int hex4(const uchar* p) noexcept nogil:
    """The 4 hex digits at p as a number, or -1."""
    cdef int a = hex_digit(p[0]), b = hex_digit(p[1]), c = hex_digit(p[2]), d = hex_digit(p[3])
    if (a | b | c | d) < 0:
        return -1
    return (a << 12) | (b << 8) | (c << 4) | d


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
    f.table = NULL
    f.mask = 0
    f.used = 0


cdef inline void keys_close(Keys* k, KeyFrame* f) noexcept nogil:
    """Pop the object's keys (and its decoded ones from the arena)."""
    if f.table != NULL:
        free(f.table)
    k.nspans = f.first
    k.arena_len = f.mark


cdef inline int _table_put(Keys* k, KeyFrame* f, Py_ssize_t key, uint64_t h) noexcept nogil:
    """Insert spans[key] unless an equal key is there: 1 if it was, 0 if inserted."""
    cdef Span* s = &k.spans[key]
    cdef const uchar* sp = span_ptr(k, s)
    cdef Span* o
    cdef Py_ssize_t i = <Py_ssize_t>(h & <uint64_t>f.mask)
    while f.table[i].key >= 0:
        if f.table[i].hash == h:
            o = &k.spans[f.table[i].key]
            if o.len == s.len and o.tag == s.tag and memcmp(span_ptr(k, o), sp, s.len) == 0:
                return 1
        i = (i + 1) & f.mask
    f.table[i].hash = h
    f.table[i].key = key
    f.used += 1
    return 0


cdef inline int _table_resize(Keys* k, KeyFrame* f, Py_ssize_t size) noexcept nogil:
    cdef Entry* old = f.table
    cdef Py_ssize_t old_size = f.mask + 1 if old != NULL else 0
    cdef Py_ssize_t i
    cdef Span* s
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
                _table_put(k, f, old[i].key, old[i].hash)
        free(old)
    else:  # the first table: every key so far (known distinct) goes in
        for i in range(f.first, k.nspans):
            s = &k.spans[i]
            _table_put(k, f, i, key_hash(span_ptr(k, s), s.len))
    return 0


cdef inline int _add_big(Keys* k, KeyFrame* f, const uchar* kp, Py_ssize_t n) noexcept nogil:
    """keys_add for an object past SMALL keys: through its hash table."""
    if f.table == NULL:
        if _table_resize(k, f, 4 * SMALL) < 0:
            return NO_MEMORY
    elif 2 * (f.used + 1) > f.mask + 1:  # keep the load under 1/2: probes stay short
        if _table_resize(k, f, 2 * (f.mask + 1)) < 0:
            return NO_MEMORY
    if _table_put(k, f, k.nspans, key_hash(kp, n)):
        return FOUND
    k.nspans += 1
    return CLEAN


cdef inline int keys_add(Keys* k, KeyFrame* f, Py_ssize_t off, Py_ssize_t n, bint decoded) noexcept nogil:
    """Record the key at off (in the input, or the arena when decoded) in the object f.

    FOUND if the object has it already (the span is then left at spans[nspans],
    for the caller to name), CLEAN once recorded, or NO_MEMORY.
    """
    cdef Span* span
    cdef Span* o
    cdef const uchar* kp
    cdef Py_ssize_t i
    cdef uint64_t tag
    if k.nspans == k.spans_cap and grow(<void**>&k.spans, &k.spans_cap, k.nspans + 1, sizeof(Span), k.local_spans) < 0:
        return NO_MEMORY
    span = &k.spans[k.nspans]
    span.off = off
    span.len = n
    span.decoded = decoded
    if decoded:
        kp = k.arena + off
        tag = key_tag(kp, n, kp + n)
    else:
        kp = k.data + off
        tag = key_tag(kp, n, k.end)
    span.tag = tag
    if f.table != NULL or k.nspans - f.first >= SMALL:
        return _add_big(k, f, kp, n)
    for i in range(f.first, k.nspans):
        o = &k.spans[i]
        if o.tag == tag and o.len == n and (n <= 8 or memcmp(span_ptr(k, o), kp, n) == 0):
            return FOUND
    k.nspans += 1
    return CLEAN


cdef inline int keys_add_escaped(Keys* k, KeyFrame* f, const uchar* s, const uchar* q) noexcept nogil:
    """keys_add for the key content [s, q) that has a backslash: decoded into the arena first."""
    cdef Py_ssize_t off = k.arena_len, n
    if keys_arena(k, q - s) < 0:
        return NO_MEMORY
    n = unescape(s, q, k.arena + off)
    k.arena_len += n
    return keys_add(k, f, off, n, True)
