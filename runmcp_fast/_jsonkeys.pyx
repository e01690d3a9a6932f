# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The big-object path of the duplicate-key machinery (the rest is inline in _jsonkeys.pxd).

Both scanners cimport _jsonkeys.pxd and call these through the pointers Cython
imports from here, so there is one process key and a key hashes alike in both.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcmp, memcpy

import os

# Keyed: the keys come from the client, and a fixed hash would let one craft a
# body whose keys all collide in a table (quadratic time).
cdef uint64_t _k0, _k1
_k = os.urandom(16)
_k0 = int.from_bytes(_k[:8], "little")
_k1 = int.from_bytes(_k[8:], "little")
del _k


cdef inline uint64_t _rotl(uint64_t x, int b) noexcept nogil:
    return (x << b) | (x >> (64 - b))


cdef inline void _sipround(uint64_t* v) noexcept nogil:
    v[0] += v[1]; v[1] = _rotl(v[1], 13); v[1] ^= v[0]; v[0] = _rotl(v[0], 32)
    v[2] += v[3]; v[3] = _rotl(v[3], 16); v[3] ^= v[2]
    v[0] += v[3]; v[3] = _rotl(v[3], 21); v[3] ^= v[0]
    v[2] += v[1]; v[1] = _rotl(v[1], 17); v[1] ^= v[2]; v[2] = _rotl(v[2], 32)


cdef inline uint64_t _siphash13(const uchar* p, Py_ssize_t n) noexcept nogil:
    """SipHash-1-3 (what CPython hashes str and bytes with) under the process key."""
    cdef uint64_t v[4]
    cdef uint64_t m, b = (<uint64_t>n) << 56
    cdef Py_ssize_t i, tail = n & 7
    v[0] = _k0 ^ 0x736f6d6570736575ULL
    v[1] = _k1 ^ 0x646f72616e646f6dULL
    v[2] = _k0 ^ 0x6c7967656e657261ULL
    v[3] = _k1 ^ 0x7465646279746573ULL
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


cdef uint64_t key_hash(const uchar* p, Py_ssize_t n) noexcept nogil:
    return _siphash13(p, n)


# Inline, as _siphash13: keys_add_big, the one call per key past SMALL, makes no other.
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


cdef int _table_resize(Keys* k, KeyFrame* f, Py_ssize_t size) noexcept nogil:
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
            _table_put(k, f, i, _siphash13(span_ptr(k, s), s.len))
    return 0


cdef int keys_add_big(Keys* k, KeyFrame* f, const uchar* kp, Py_ssize_t n) noexcept nogil:
    """keys_add for an object past SMALL keys (spans[nspans] filled in): through its table."""
    if f.table == NULL:
        if _table_resize(k, f, 4 * SMALL) < 0:
            return NO_MEMORY
    elif 2 * (f.used + 1) > f.mask + 1:  # keep the load under 1/2: probes stay short
        if _table_resize(k, f, 2 * (f.mask + 1)) < 0:
            return NO_MEMORY
    if _table_put(k, f, k.nspans, _siphash13(kp, n)):
        return FOUND
    k.nspans += 1
    return CLEAN


def key_summary(bytes data not None):
    """(SipHash-1-3 under the process key, 8-byte summary) of the key bytes `data`.

    For tests: each scanner has the same function, through its cimports.
    """
    cdef const uchar* p = <const uchar*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    return key_hash(p, n), key_tag(p, n, p + n)
