# cython: language_level=3
"""The process key of the duplicate-key tables (the machinery is in _jsonkeys.pxd).

Both scanners cimport _jsonkeys.pxd and read `key0`/`key1` from here, so there
is one key per process and a key hashes alike in both.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE

import os

_k = os.urandom(16)
key0 = int.from_bytes(_k[:8], "little")
key1 = int.from_bytes(_k[8:], "little")
del _k


def key_summary(bytes data not None):
    """(SipHash-1-3 under the process key, 8-byte summary) of the key bytes `data`.

    For tests: each scanner has the same function over its own inlined copy.
    """
    cdef const uchar* p = <const uchar*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    return key_hash(p, n), key_tag(p, n, p + n)
