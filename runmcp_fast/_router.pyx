# cython: language_level=3
"""The compiled router: host + method + path template -> target and params.

A radix trie over the canonical bytes of path templates, one trie per host
table. The contract (syntax, normalisation, priority) is docs/routing.md;
tests/reference_matcher.py implements it the slow way and the tests compare.

Hot-path shape (measured by bench/test_router_match.py, instructions by
bench/router_instructions.py): one pass over the path bytes, a walk that
compares raw bytes a word at a time and records parameters
as offsets, and a Match object from a free list, returned by a METH_FASTCALL
C function; parameter strings are only built when asked for.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport Py_TPFLAGS_HEAPTYPE, PyObject, PyTypeObject, destructor
from cpython.ref cimport Py_DECREF, Py_INCREF, Py_XDECREF
from cpython.set cimport PySet_Clear
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeASCII
from libc.stdint cimport int32_t
from libc.string cimport memchr, memcmp, memcpy, memset

from urllib.parse import unquote_to_bytes


cdef extern from "_pathscan.h":
    unsigned char rmf_scan_bits(
        const unsigned char* p, Py_ssize_t n, const unsigned char* table, unsigned char s_dot
    ) noexcept nogil
    enum: RMF_PAD
    Py_ssize_t rmf_find_byte(const unsigned char* s, unsigned char c, Py_ssize_t n) noexcept nogil
    Py_ssize_t rmf_segment_end(const unsigned char* p, Py_ssize_t n) noexcept nogil
    bint rmf_same(const unsigned char* a, const unsigned char* b, Py_ssize_t n) noexcept nogil


cdef extern from "Python.h":
    bint PyUnicode_IS_COMPACT_ASCII(object o)
    void* PyUnicode_DATA(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)


cdef enum:
    _MAX_PARAMS = ROUTE_MAX_PARAMS  # _router.pxd
    # Bound on in-segment backtracking per match (docs/routing.md, "Priority").
    _SPLIT_BUDGET = 1 << 22
    # Segments longer than this memoise the (param node, position) pairs they
    # have explored, so backtracking stays polynomial.
    _MEMO_MIN = 32
    # Bound on the raw Host -> tables cache, so random Host headers can't grow it.
    _HOST_CACHE_MAX = 4096

MAX_PARAMS = _MAX_PARAMS


class TemplateError(ValueError):
    """A path template or host pattern that can not be routed."""


class RouteConflict(ValueError):
    """Two routes with the same host, method and template (up to param names)."""

    def __init__(self, existing, new):
        self.existing = existing
        self.new = new
        super().__init__(
            f"route {new.method} {_show_host(new.host)}{new.template} -> {new.target!r} "
            f"conflicts with {existing.method} {_show_host(existing.host)}{existing.template} "
            f"-> {existing.target!r}: same host, method and template up to parameter names"
        )


def _show_host(host):
    return "" if host is None else f"//{host}"


# ---------------------------------------------------------------------------
# Byte classes and path preparation
# ---------------------------------------------------------------------------

cdef enum:
    # Bits of _CLASS[byte], used by _canonicalize:
    C_PLAIN = 1        # may stand raw in a canonical path (pchar or "/"), not "%"
    C_UNRESERVED = 2   # RFC 3986 unreserved: an escape of it is decoded
    # Values of _SCAN[byte], used by the one pass in _prepare:
    S_DOT = 1          # "." (a dot segment is possible)
    S_END = 2          # "?" or "#": the path ends here
    S_CANON = 4        # "%", non-ASCII or a byte that may not stand raw

cdef unsigned char _CLASS[256]
cdef unsigned char _SCAN[256]
cdef char* _HEX = b"0123456789ABCDEF"


cdef void _init_classes():
    cdef int i
    for i in range(256):
        _CLASS[i] = 0
    for ch in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~":
        _CLASS[ch] = C_PLAIN | C_UNRESERVED
    for ch in b"!$&'()*+,;=:@/":
        _CLASS[ch] = C_PLAIN
    for i in range(256):
        _SCAN[i] = 0 if _CLASS[i] & C_PLAIN else S_CANON
    _SCAN[ord(".")] = S_DOT
    _SCAN[ord("?")] = S_END
    _SCAN[ord("#")] = S_END


_init_classes()


cdef inline int _hexval(unsigned char c) noexcept nogil:
    if 48 <= c <= 57:
        return c - 48
    if 65 <= c <= 70:
        return c - 55
    if 97 <= c <= 102:
        return c - 87
    return -1


cdef object _canonicalize(const unsigned char* p, Py_ssize_t n):
    """The RFC 3986 6.2.2 normal form of p[:n] as bytes, or None if a "%" is
    not followed by two hex digits. Slow path: only paths holding "%",
    non-ASCII or bytes that may not stand raw come here."""
    cdef char* out = <char*>PyMem_Malloc(3 * n + 1)
    cdef Py_ssize_t i = 0, o = 0
    cdef int hi, lo, v
    cdef unsigned char c
    if out == NULL:
        raise MemoryError()
    try:
        while i < n:
            c = p[i]
            if c == 37:  # "%"
                if i + 2 >= n:
                    return None
                hi = _hexval(p[i + 1])
                lo = _hexval(p[i + 2])
                if hi < 0 or lo < 0:
                    return None
                v = hi * 16 + lo
                if _CLASS[v] & C_UNRESERVED:
                    out[o] = <char>v
                    o += 1
                else:
                    out[o] = 37
                    out[o + 1] = _HEX[hi]
                    out[o + 2] = _HEX[lo]
                    o += 3
                i += 3
            elif _CLASS[c] & C_PLAIN:
                out[o] = <char>c
                o += 1
                i += 1
            else:
                out[o] = 37
                out[o + 1] = _HEX[c >> 4]
                out[o + 2] = _HEX[c & 15]
                o += 3
                i += 1
        return PyBytes_FromStringAndSize(out, o)
    finally:
        PyMem_Free(out)


cdef bint _has_dot_segment(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    """True when p[:n] (a path starting with "/") has a "." or ".." segment."""
    # PERF: jump from dot to dot with memchr instead of walking every segment:
    # Graph's paths hold dots in nearly every request ("microsoft.graph.x"),
    # and a byte loop over 130 characters cost more than the trie walk.
    cdef const unsigned char* stop = p + n
    cdef const unsigned char* d = p
    while True:
        d = <const unsigned char*>memchr(d, 46, stop - d)
        if d == NULL:
            return False
        # p[0] is "/", so a dot always has a byte before it.
        if d[-1] == 47:
            if d + 1 == stop or d[1] == 47:
                return True
            if d[1] == 46 and (d + 2 == stop or d[2] == 47):
                return True
        d += 1


cdef object _prepare(object path, const unsigned char** out_p, Py_ssize_t* out_n):
    """Point out_p/out_n at the bytes to match and return the object owning
    them (kept by the Match for lazy params), or None when nothing can match."""
    cdef const unsigned char* p
    cdef Py_ssize_t n, i, end
    cdef unsigned char bits = 0
    cdef object buf = path
    if type(path) is str:
        if PyUnicode_IS_COMPACT_ASCII(path):
            p = <const unsigned char*>PyUnicode_DATA(path)
            n = PyUnicode_GET_LENGTH(path)
        else:
            # Non-ASCII text: match its UTF-8 escaped form, like a client would
            # send it. surrogatepass so that no str can make this raise.
            buf = (<str>path).encode("utf-8", "surrogatepass")
            p = <const unsigned char*>PyBytes_AS_STRING(buf)
            n = PyBytes_GET_SIZE(buf)
    elif type(path) is bytes:
        p = <const unsigned char*>PyBytes_AS_STRING(path)
        n = PyBytes_GET_SIZE(path)
    elif isinstance(path, str):
        return _prepare(str(path), out_p, out_n)
    elif isinstance(path, (bytes, bytearray, memoryview)):
        return _prepare(bytes(path), out_p, out_n)
    else:
        raise TypeError(f"path must be str or bytes, not {type(path).__name__}")
    if n == 0 or p[0] != 47:  # not origin-form: "*", absolute-form, empty
        return None
    # PERF: one pass (16 bytes a round where SSE2 is there: _pathscan.h) tells
    # whether the slow paths (query to cut, normalisation, dot segments) are
    # needed at all.
    end = n
    bits = rmf_scan_bits(p, n, _SCAN, S_DOT)
    if bits & S_END:
        end = 0
        while _SCAN[p[end]] != S_END:
            end += 1
        bits = rmf_scan_bits(p, end, _SCAN, S_DOT)
    if bits & S_CANON:
        buf = _canonicalize(p, end)
        if buf is None:
            return None
        p = <const unsigned char*>PyBytes_AS_STRING(buf)
        end = PyBytes_GET_SIZE(buf)
        bits |= S_DOT  # escapes may have decoded to "."
    if bits & S_DOT and _has_dot_segment(p, end):
        return None
    out_p[0] = p
    out_n[0] = end
    return buf


# ---------------------------------------------------------------------------
# Methods
# ---------------------------------------------------------------------------

cdef enum:
    M_OTHER = -1
    M_GET = 0
    M_HEAD = 1
    M_POST = 2
    M_PUT = 3
    M_DELETE = 4
    M_PATCH = 5
    M_OPTIONS = 6
    M_TRACE = 7
    M_CONNECT = 8
    N_METHODS = 9

_METHOD_NAMES = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT")


cdef inline int _method_index(const char* m, Py_ssize_t n) noexcept nogil:
    # PERF: a switch on length and bytes instead of hashing the method.
    if n == 3:
        if memcmp(m, b"GET", 3) == 0:
            return M_GET
        if memcmp(m, b"PUT", 3) == 0:
            return M_PUT
    elif n == 4:
        if memcmp(m, b"POST", 4) == 0:
            return M_POST
        if memcmp(m, b"HEAD", 4) == 0:
            return M_HEAD
    elif n == 6:
        if memcmp(m, b"DELETE", 6) == 0:
            return M_DELETE
    elif n == 5:
        if memcmp(m, b"PATCH", 5) == 0:
            return M_PATCH
        if memcmp(m, b"TRACE", 5) == 0:
            return M_TRACE
    elif n == 7:
        if memcmp(m, b"OPTIONS", 7) == 0:
            return M_OPTIONS
        if memcmp(m, b"CONNECT", 7) == 0:
            return M_CONNECT
    return M_OTHER


cdef inline int _method_of(object method) except -2:
    if type(method) is str and PyUnicode_IS_COMPACT_ASCII(method):
        return _method_index(<const char*>PyUnicode_DATA(method), PyUnicode_GET_LENGTH(method))
    if type(method) is bytes:
        return _method_index(PyBytes_AS_STRING(method), PyBytes_GET_SIZE(method))
    if not isinstance(method, (str, bytes)):
        raise TypeError(f"method must be str or bytes, not {type(method).__name__}")
    return M_OTHER


# ---------------------------------------------------------------------------
# Routes, leaves and nodes
# ---------------------------------------------------------------------------

@cython.final
cdef class Route:
    """One registered route, as given to Router.add."""

    cdef readonly str method
    cdef readonly str template
    cdef readonly object host
    cdef readonly object target
    # Names of the path params in the order the walk records them; a named
    # prefix rest ("{rest*}") is last.
    cdef readonly tuple param_names
    cdef readonly tuple host_param_names
    # One entry per wildcard label of the host table: its name, or None for
    # a "*" label. Match.host_params zips it with the request's labels.
    cdef tuple host_slots
    cdef readonly bint is_prefix
    cdef Py_ssize_t order  # insertion order, for routes() and dump()

    def __repr__(self):
        return f"<Route {self.method} {_show_host(self.host)}{self.template} -> {self.target!r}>"


@cython.final
cdef class Leaf:
    """The routes that end at one trie position, by method."""

    cdef list by_method   # N_METHODS slots, Route or None
    cdef dict others      # extension methods (str) -> Route, or None
    cdef Route any_route  # the "*" route

    def __cinit__(self):
        self.by_method = [None] * N_METHODS
        self.others = None
        self.any_route = None

    cdef Route existing(self, int mi, str method):
        if method == "*":
            return self.any_route
        if mi >= 0:
            return <Route>self.by_method[mi]
        return None if self.others is None else self.others.get(method)

    cdef void put(self, int mi, Route route):
        if route.method == "*":
            self.any_route = route
        elif mi >= 0:
            self.by_method[mi] = route
        else:
            if self.others is None:
                self.others = {}
            self.others[route.method] = route

    cdef list all_routes(self):
        out = [r for r in self.by_method if r is not None]
        if self.others:
            out.extend(self.others.values())
        if self.any_route is not None:
            out.append(self.any_route)
        return out


# PERF: the compiled form of a Leaf: borrowed pointers to its routes (the
# Router's route list owns them), so a hit costs one cache line, not a chase
# through Leaf -> list -> items -> Route.
cdef struct CLeaf:
    PyObject* by_method[N_METHODS]   # NULL where no route
    PyObject* any_route
    PyObject* others                 # dict of extension methods, or NULL


cdef CLeaf _compile_leaf(Leaf leaf):
    cdef CLeaf c
    cdef int i
    for i in range(N_METHODS):
        r = leaf.by_method[i]
        c.by_method[i] = NULL if r is None else <PyObject*>r
    c.any_route = NULL if leaf.any_route is None else <PyObject*>leaf.any_route
    c.others = NULL if not leaf.others else <PyObject*>leaf.others
    return c


cdef inline PyObject* _pick(const CLeaf* leaf, int mi, PyObject* method):
    """The route for this method at this position (borrowed), or NULL:
    the method itself, HEAD falling back to GET, then "*"."""
    cdef PyObject* r
    if mi >= 0:
        r = leaf.by_method[mi]
        if r != NULL:
            return r
        if mi == M_HEAD and leaf.by_method[M_GET] != NULL:
            return leaf.by_method[M_GET]
    elif leaf.others != NULL:
        found = (<dict>leaf.others).get(<object>method)
        if found is not None:
            return <PyObject*>found  # owned by the dict, which outlives the call
    return leaf.any_route


@cython.final
cdef class Node:
    """A trie position while routes are added. Static nodes carry text; a
    param node matches one non-empty value that stops at "/" or where a static
    child's text starts. compile() flattens these into CNode arrays."""

    cdef bytes text          # canonical static text; b"" for the root and params
    cdef bint is_param
    cdef list statics        # static children; no two share a first byte
    cdef Node param          # the param child, shared by every param name
    cdef Leaf leaf           # routes ending here
    cdef Leaf tail           # prefix routes whose subtree starts here
    # compile()'s: this node's index in the flat array, its children's block, its param
    cdef int32_t at, child0, param_at

    def __cinit__(self, bytes text=b"", bint is_param=False):
        self.text = text
        self.is_param = is_param
        self.statics = []
        self.param = None
        self.leaf = None
        self.tail = None

    cdef Node child_for(self, unsigned char c):
        # PERF: by index and pointer: no type test or bytes indexing per child (a
        # node of Graph's has hundreds of children; every add walks them).
        cdef list statics = self.statics
        cdef Node child
        cdef Py_ssize_t i
        for i in range(PyList_GET_SIZE(statics)):
            child = <Node>PyList_GET_ITEM(statics, i)
            if <unsigned char>PyBytes_AS_STRING(child.text)[0] == c:
                return child
        return None


def _first_byte(Node node):
    return node.text[0]


cdef enum:
    _INLINE = 20   # bytes of text + first bytes that fit in the node itself


# PERF: the compiled trie is an array of 64-byte, cache-line aligned structs,
# laid out depth-first with each node's children in one block. A node's text
# and its children's first bytes sit inside it when they fit (most segments
# do), so each step of a walk costs one cache line instead of a chase through
# Python objects: on Graph's 11k routes that is what keeps a match cheap.
cdef struct CNode:
    const unsigned char* text    # into inline_ or the pool
    const unsigned char* first   # the first byte of each static child
    int32_t text_len
    int32_t nchild      # static children, stored contiguously from child0
    int32_t child0
    int32_t param       # index of the param child, or -1
    int32_t leaf        # index into Flat.leaves, or -1
    int32_t tail        # same, for prefix routes rooted here
    int32_t splits      # 1 when a static child starts with a byte other than "/"
    unsigned char inline_[_INLINE]


@cython.final
cdef class Flat:
    """One host table's trie, compiled for the walk."""

    cdef void* block       # the allocation nodes is aligned within
    cdef CNode* nodes
    cdef Py_ssize_t nnodes
    cdef bytes pool        # text that does not fit inline
    cdef list leaves       # Leaf objects, for allowed(); they own `others`
    cdef CLeaf* cleaves    # the same, compiled for match()

    def __dealloc__(self):
        PyMem_Free(self.block)
        PyMem_Free(self.cleaves)


cdef int _steps = 0
# A function of real bytecode (a `def` here would be compiled to C): running
# it passes the interpreter's eval-breaker check, where a thread that was asked
# to give up the GIL does so and waits until the waiting thread has it.
_checkpoint = eval("lambda: None")


cdef inline void _let_others_run() except *:
    """Every 256 steps of a long compile or release, let a waiting thread in.

    PERF: a gateway rebuilds its table on a worker thread while its event
    loop serves; a C loop that never reaches the eval breaker would stall the
    loop for the whole compile (~10 ms at 20,000 routes). Merely releasing
    and retaking the GIL (`with nogil: pass`) does not hand it over: it
    retakes it before the waiter wakes, and starves it (measured: worse).
    """
    global _steps
    _steps += 1
    if _steps >= 256:
        _steps = 0
        _checkpoint()


cdef Flat _flatten(Node root):
    cdef Flat flat = Flat.__new__(Flat)
    cdef list order = [root]      # Node objects by index
    cdef list stack = [root]
    cdef list statics
    cdef Node node, child
    cdef Py_ssize_t i, j, nst, text_len, pool_len = 0
    cdef CNode* c
    cdef unsigned char* dst
    cdef unsigned char* pool
    flat.leaves = []
    # Give a node's children one contiguous block, then lay out each child's subtree
    # in turn (depth first, the param child last): blocks land right after their
    # parent's, so a walk moves forward in memory. PERF: an explicit stack and C
    # fields on the nodes, not a recursive closure and lists of Python ints (with
    # the bytes and pool below: compile() of Graph's 11k routes ~2x faster).
    root.at = 0
    while stack:
        _let_others_run()
        node = <Node>stack.pop()
        statics = node.statics
        nst = PyList_GET_SIZE(statics)
        if nst > 1:
            statics.sort(key=_first_byte)
        node.child0 = <int32_t>PyList_GET_SIZE(order)
        for j in range(nst):
            child = <Node>PyList_GET_ITEM(statics, j)
            child.at = node.child0 + <int32_t>j
            order.append(child)
        node.param_at = -1
        if node.param is not None:
            node.param_at = <int32_t>PyList_GET_SIZE(order)
            node.param.at = node.param_at
            order.append(node.param)
            stack.append(node.param)
        for j in range(nst - 1, -1, -1):
            stack.append(<Node>PyList_GET_ITEM(statics, j))
        # Each node's bytes: its text, then its children's first bytes; inline when
        # they fit, else in the pool.
        text_len = PyBytes_GET_SIZE(node.text) + nst
        if text_len > _INLINE:
            pool_len += text_len
    flat.nnodes = PyList_GET_SIZE(order)
    # + RMF_PAD: a child lookup may read a little past the last node (_pathscan.h).
    flat.block = PyMem_Malloc(flat.nnodes * sizeof(CNode) + 64 + RMF_PAD)
    if flat.block == NULL:
        raise MemoryError()
    flat.nodes = <CNode*>((<size_t>flat.block + 63) & ~(<size_t>63))
    flat.pool = PyBytes_FromStringAndSize(NULL, pool_len + RMF_PAD)  # filled here, once
    pool = <unsigned char*>PyBytes_AS_STRING(flat.pool)
    memset(pool + pool_len, 0, RMF_PAD)  # see flat.block
    pool_len = 0
    for i in range(flat.nnodes):
        _let_others_run()
        node = <Node>PyList_GET_ITEM(order, i)
        statics = node.statics
        nst = PyList_GET_SIZE(statics)
        c = &flat.nodes[i]
        text_len = PyBytes_GET_SIZE(node.text)
        if text_len + nst > _INLINE:
            dst = pool + pool_len
            pool_len += text_len + nst
        else:
            dst = c.inline_
        memcpy(dst, PyBytes_AS_STRING(node.text), text_len)
        c.splits = 0
        for j in range(nst):
            dst[text_len + j] = <unsigned char>PyBytes_AS_STRING((<Node>PyList_GET_ITEM(statics, j)).text)[0]
            if dst[text_len + j] != 47:  # "/"
                c.splits = 1
        c.text = dst
        c.text_len = <int32_t>text_len
        c.first = c.text + c.text_len
        c.nchild = <int32_t>nst
        c.child0 = node.child0
        c.param = node.param_at
        c.leaf = c.tail = -1
        if node.leaf is not None:
            c.leaf = len(flat.leaves)
            flat.leaves.append(node.leaf)
        if node.tail is not None:
            c.tail = len(flat.leaves)
            flat.leaves.append(node.tail)
    flat.cleaves = <CLeaf*>PyMem_Malloc(max(1, len(flat.leaves)) * sizeof(CLeaf))
    if flat.cleaves == NULL:
        raise MemoryError()
    for i in range(len(flat.leaves)):
        _let_others_run()
        flat.cleaves[i] = _compile_leaf(<Leaf>flat.leaves[i])
    return flat


# ---------------------------------------------------------------------------
# The walk
# ---------------------------------------------------------------------------

cdef struct Walk:
    const unsigned char* p   # the prepared path
    Py_ssize_t end
    const CNode* nodes       # the table being walked
    const CLeaf* cleaves     # its leaves, for match()
    PyObject* leaves         # its list of Leaf, for allowed()
    int npairs               # offset pairs recorded for the hit
    int mi                   # method index, or M_OTHER
    PyObject* method         # the method object, for extension methods
    PyObject* acc            # a set collecting methods (allowed()), or NULL
    int budget               # in-segment split attempts left
    PyObject* memo           # owned set of explored (param node, pos), or NULL
    PyObject* hit            # the matched Route (borrowed), or NULL
    PyObject* level          # the (table, host labels) pair it was found in (borrowed)
    int32_t offs[2 * _MAX_PARAMS + 2]


cdef inline bint _same(const unsigned char* a, const unsigned char* b, Py_ssize_t n) noexcept nogil:
    return rmf_same(a, b, n)  # _pathscan.h


cdef PyObject* _walk_node(int32_t ni, Py_ssize_t pos, int n, Walk* w):
    """Match the rest of the path from pos, where node ni's own text has just
    been consumed. Returns the Route (borrowed) or NULL. Order per
    docs/routing.md: end of path, static child, param child, prefix rest."""
    cdef const CNode* node
    cdef const CNode* child
    cdef const CNode* pn
    cdef const unsigned char* p = w.p
    cdef Py_ssize_t end = w.end
    cdef Py_ssize_t k, se
    cdef int32_t ci
    cdef PyObject* r
    while True:
        node = &w.nodes[ni]
        if pos == end:
            if node.leaf >= 0:
                if w.acc != NULL:
                    _collect(<Leaf>PyList_GET_ITEM(<object>w.leaves, node.leaf), w)
                else:
                    r = _pick(&w.cleaves[node.leaf], w.mi, w.method)
                    if r != NULL:
                        w.npairs = n
                        return r
            break
        if node.nchild:
            k = rmf_find_byte(node.first, p[pos], node.nchild)
            if k >= 0:
                ci = node.child0 + <int32_t>k
                child = &w.nodes[ci]
                # The lookup matched the text's first byte: compare the rest.
                if end - pos >= child.text_len and _same(
                    p + pos + 1, child.text + 1, child.text_len - 1
                ):
                    if node.param < 0 and node.tail < 0:
                        # PERF: nothing to fall back to here, so descend in
                        # this loop instead of recursing (static runs).
                        ni = ci
                        pos += child.text_len
                        continue
                    r = _walk_node(ci, pos + child.text_len, n, w)
                    if r != NULL:
                        return r
        if node.param >= 0:
            pn = &w.nodes[node.param]
            if node.tail < 0 and not pn.splits:
                # PERF: a param whose value runs to the next "/", with nothing
                # to fall back to here: descend in this loop, as for a static
                # run, instead of two calls (most params of an API are these).
                se = pos + rmf_segment_end(p + pos, end - pos)
                if se == pos:
                    return NULL  # a param is never empty
                w.offs[2 * n] = <int32_t>pos
                w.offs[2 * n + 1] = <int32_t>se
                n += 1
                ni = node.param
                pos = se
                continue
            r = _walk_param(node.param, pos, n, w)
            if r != NULL:
                return r
        break
    if node.tail >= 0 and (pos == end or p[pos] == 47):
        # The rest after the "/" is the prefix route's named param, if any.
        w.offs[2 * n] = <int32_t>(pos + 1 if pos < end else end)
        w.offs[2 * n + 1] = <int32_t>end
        if w.acc != NULL:
            _collect(<Leaf>PyList_GET_ITEM(<object>w.leaves, node.tail), w)
        else:
            w.npairs = n + 1
            return _pick(&w.cleaves[node.tail], w.mi, w.method)
    return NULL


cdef PyObject* _walk_param(int32_t pi, Py_ssize_t pos, int n, Walk* w):
    cdef const CNode* pn = &w.nodes[pi]
    cdef const CNode* child
    cdef const unsigned char* p = w.p
    cdef Py_ssize_t se, e, k
    cdef int32_t ci
    cdef PyObject* r
    se = pos + rmf_segment_end(p + pos, w.end - pos)
    if se == pos:
        return NULL  # a param is never empty
    w.offs[2 * n] = <int32_t>pos
    if pn.splits:
        if se - pos > _MEMO_MIN:
            # What a (param node, position) pair leads to does not depend on
            # how the walk got there: a second visit can only fail again (or,
            # for allowed(), collect nothing new).
            if w.memo == NULL:
                memo = set()
                Py_INCREF(memo)
                w.memo = <PyObject*>memo
            key = (<long long>pi << 32) | <long long>pos
            if key in <set>w.memo:
                return NULL
            (<set>w.memo).add(key)
        # Static text inside the segment: shortest value first.
        for e in range(pos + 1, se):
            k = rmf_find_byte(pn.first, p[e], pn.nchild)
            if k < 0:
                continue
            w.budget -= 1
            if w.budget < 0:
                return NULL
            ci = pn.child0 + <int32_t>k
            child = &w.nodes[ci]
            # As in _walk_node: the first byte matched in the lookup.
            if w.end - e >= child.text_len and _same(
                p + e + 1, child.text + 1, child.text_len - 1
            ):
                w.offs[2 * n + 1] = <int32_t>e
                r = _walk_node(ci, e + child.text_len, n + 1, w)
                if r != NULL:
                    return r
    w.offs[2 * n + 1] = <int32_t>se
    return _walk_node(pi, se, n + 1, w)


cdef inline void _enter(Walk* w, Flat flat) noexcept:
    if w.memo != NULL:
        PySet_Clear(<object>w.memo)  # node indexes are per table
    w.nodes = flat.nodes
    w.leaves = <PyObject*>flat.leaves
    w.cleaves = flat.cleaves


cdef void _collect(Leaf leaf, Walk* w):
    cdef set acc = <set>w.acc
    cdef Route r
    for r in leaf.all_routes():
        acc.add(r.method)


# ---------------------------------------------------------------------------
# Host tables
# ---------------------------------------------------------------------------

@cython.final
cdef class HostTable:
    """The routes of one host pattern (or of every host: pattern None)."""

    cdef readonly object pattern   # normalised, wildcards as "*"; None = default
    cdef tuple labels              # static label or None per label (wildcards)
    cdef tuple wild                # indexes of the wildcard labels
    cdef Node root                 # the trie while routes are added
    cdef Flat flat                 # the same, compiled for the walk
    cdef Py_ssize_t size

    def __cinit__(self, pattern, tuple labels=()):
        self.pattern = pattern
        self.labels = labels
        self.wild = tuple(i for i, lab in enumerate(labels) if lab is None)
        self.root = Node()
        self.size = 0

    cdef tuple specificity(self):
        # Sort key: more static labels, then pattern text. (Tables that match
        # one host all have its number of labels.)
        return (-(len(self.labels) - len(self.wild)), self.pattern)


# Host names are ASCII on the wire: fold A-Z only. str.lower() would also
# fold e.g. the Kelvin sign into "k" and let a crafted Host reach a tenant.
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _normalize_host(host):
    """Lower-case (ASCII), without ":port" and trailing dot; None when absent."""
    if host is None:
        return None
    if isinstance(host, (bytes, bytearray)):
        host = bytes(host).decode("latin-1")
    elif not isinstance(host, str):
        raise TypeError(f"host must be str, bytes or None, not {type(host).__name__}")
    h = host.strip(" \t").translate(_ASCII_LOWER)  # only HTTP's optional white space
    if h.startswith("["):
        close = h.find("]")
        return h[: close + 1] if close > 0 else h
    colon = h.rfind(":")
    # One colon only: an IPv6 address without brackets keeps its colons.
    port = h[colon + 1 :]
    if colon >= 0 and h.find(":") == colon and ((port.isascii() and port.isdigit()) or not port):
        h = h[:colon]
    if h.endswith("."):
        h = h[:-1]
    return h or None


# Bounded memos (see _parsed_templates): host patterns and checked methods by text.
cdef dict _parsed_hosts = {}
cdef set _good_methods = set()
cdef Py_ssize_t _PARSED_HOSTS_MAX = 4096


cdef tuple _parse_host(host):
    """_parse_host_pattern's answer, plus the param names without the Nones and whether
    a label is a wildcard; shared (memo, as _parse_template's)."""
    found = _parsed_hosts.get(host) if type(host) is str else None
    if found is not None:
        return <tuple>found
    key, labels, names = _parse_host_pattern(host)
    parsed = (key, labels, names, tuple([x for x in names if x is not None]), None in labels)
    if len(_parsed_hosts) >= _PARSED_HOSTS_MAX:
        _parsed_hosts.clear()
    _parsed_hosts[host] = parsed
    return parsed


def _parse_host_pattern(host):
    """-> (table key, labels tuple (None for wildcards), param names per wildcard)."""
    if not isinstance(host, str):
        raise TemplateError(f"host pattern must be a str, not {type(host).__name__}")
    h = host.strip(" \t").translate(_ASCII_LOWER)
    if h.endswith("."):
        h = h[:-1]
    if not h:
        raise TemplateError("host pattern is empty (use host=None for every host)")
    if h.startswith("["):
        if not h.endswith("]"):
            raise TemplateError(f"host pattern {host!r}: an IPv6 literal is written [addr], without a port")
        return h, (h,), ()
    if ":" in h:
        raise TemplateError(f"host pattern {host!r} has a port: ports are ignored when matching, leave it out")
    labels = []
    names = []
    for label in h.split("."):
        if label == "*":
            labels.append(None)
            names.append(None)
        elif label.startswith("{") and label.endswith("}") and len(label) > 2:
            if any(ch in label[1:-1] for ch in "{}*/"):
                raise TemplateError(f"host pattern {host!r}: bad parameter label {label!r}")
            labels.append(None)
            names.append(_original_case_name(host, label))
        elif not label or any(ch in label for ch in "{}*/ "):
            raise TemplateError(
                f"host pattern {host!r}: label {label!r} must be a name, '*' or '{{param}}' "
                "matching one whole label"
            )
        else:
            labels.append(label)
    used = [x for x in names if x is not None]
    if len(used) != len(set(used)):
        raise TemplateError(f"host pattern {host!r} repeats a parameter name")
    key = ".".join("*" if lab is None else lab for lab in labels)
    return key, tuple(labels), tuple(names)


def _original_case_name(host, lowered_label):
    # Host names are case-insensitive, param names are not: take the name
    # from the pattern as written.
    for label in host.strip(" \t").rstrip(".").split("."):
        if label.translate(_ASCII_LOWER) == lowered_label:
            return label[1:-1]
    return lowered_label[1:-1]


# ---------------------------------------------------------------------------
# Templates
# ---------------------------------------------------------------------------

# Parsed templates by their text. PERF: every config change adds every route to a
# new Router, and a template is the same text build after build (and across services
# of one spec): parsing was more than half of adding 23,833 routes (bench/reload
# profile_change.py: 227 -> 88 ms). Only templates that parsed are kept; bounded.
cdef dict _parsed_templates = {}
cdef Py_ssize_t _PARSED_TEMPLATES_MAX = 65536


cdef tuple _parse_template(template):
    """-> (tokens, param names, prefix route?), shared: never changed by the caller.
    A token is bytes (canonical static text) or None (a param)."""
    found = _parsed_templates.get(template) if type(template) is str else None
    if found is not None:
        return <tuple>found
    parsed = _parse_template_text(template)
    if len(_parsed_templates) >= _PARSED_TEMPLATES_MAX:
        _parsed_templates.clear()
    _parsed_templates[template] = parsed
    return parsed


def _parse_template_text(template):
    """_parse_template without the memo."""
    if not isinstance(template, str):
        raise TemplateError(f"template must be a str, not {type(template).__name__}")
    if not template.startswith("/"):
        raise TemplateError(f"template {template!r} must start with '/'")
    body = template
    tail_name = None
    is_prefix = False
    if body.endswith("/*"):
        body, is_prefix = body[:-2], True
    elif body.endswith("*}"):
        start = body.rfind("/{")
        if start < 0 or "{" in body[start + 2 :] or "}" in body[start + 2 : -1]:
            raise TemplateError(f"template {template!r}: a prefix rest is written /{{name*}} at the end")
        tail_name = body[start + 2 : -2]
        if not tail_name:
            raise TemplateError(f"template {template!r}: empty prefix rest name (use /* for an unnamed one)")
        body, is_prefix = body[:start], True
    tokens = []
    names = []
    i = 0
    # Template segments with params replaced by a marker, to find dot segments.
    shape = []
    while i < len(body):
        open_ = body.find("{", i)
        close = body.find("}", i)
        if close >= 0 and (open_ < 0 or close < open_):
            raise TemplateError(f"template {template!r}: '}}' at {close} without '{{'")
        static = body[i:] if open_ < 0 else body[i:open_]
        if static:
            tokens.append(_canonical_text(static, template))
            shape.append(tokens[-1].decode("ascii"))
        if open_ < 0:
            break
        close = body.find("}", open_)
        if close < 0:
            raise TemplateError(f"template {template!r}: '{{' at {open_} is never closed")
        name = body[open_ + 1 : close]
        if not name:
            raise TemplateError(f"template {template!r}: empty parameter name '{{}}'")
        if "{" in name or "/" in name:
            raise TemplateError(f"template {template!r}: bad parameter name {name!r}")
        if name.endswith("*"):
            raise TemplateError(
                f"template {template!r}: a rest parameter {{{name}}} must end the template, after a '/'"
            )
        if tokens and tokens[-1] is None:
            raise TemplateError(
                f"template {template!r}: parameters {names[-1]!r} and {name!r} touch; "
                "put static text between them"
            )
        tokens.append(None)
        names.append(name)
        shape.append("\0")
        i = close + 1
    if tail_name is not None:
        names.append(tail_name)
    if len(names) != len(set(names)):
        dup = next(x for x in names if names.count(x) > 1)
        raise TemplateError(f"template {template!r} repeats parameter {dup!r}")
    if len(names) > _MAX_PARAMS:
        raise TemplateError(f"template {template!r} has {len(names)} parameters; at most {_MAX_PARAMS}")
    for seg in "".join(shape).split("/")[1:]:
        if seg in (".", ".."):
            raise TemplateError(
                f"template {template!r} has a {seg!r} segment: such paths never match "
                "(see docs/routing.md)"
            )
    return tuple(tokens), tuple(names), is_prefix


def _canonical_text(str static, template):
    cdef bytes raw = static.encode("utf-8", "surrogatepass")
    out = _canonicalize(<const unsigned char*>PyBytes_AS_STRING(raw), len(raw))
    if out is None:
        raise TemplateError(f"template {template!r}: '%' must be followed by two hex digits")
    if b"?" in raw or b"#" in raw:
        raise TemplateError(f"template {template!r}: '?' and '#' end a path; escape them as %3F, %23")
    return out


cdef Node _insert_static(Node node, bytes text):
    """Descend from node along text, splitting radix nodes as needed."""
    cdef Node child, mid
    cdef Py_ssize_t common, limit, clen
    # PERF: read by pointer from an offset, not by slicing `text` at every step
    # (a bytes and a slice object per node passed: most of adding a route).
    cdef const char* t = PyBytes_AS_STRING(text)
    cdef const char* ct
    cdef Py_ssize_t pos = 0, n = PyBytes_GET_SIZE(text)
    while pos < n:
        child = node.child_for(<unsigned char>t[pos])
        if child is None:
            child = Node(text if pos == 0 else PyBytes_FromStringAndSize(t + pos, n - pos))
            node.statics.append(child)
            return child
        ct = PyBytes_AS_STRING(child.text)
        clen = PyBytes_GET_SIZE(child.text)
        limit = min(n - pos, clen)
        common = 0
        while common < limit and t[pos + common] == ct[common]:
            common += 1
        if common < clen:
            mid = Node(PyBytes_FromStringAndSize(ct, common))
            child.text = PyBytes_FromStringAndSize(ct + common, clen - common)
            mid.statics.append(child)
            node.statics[node.statics.index(child)] = mid
            child = mid
        pos += common
        node = child
    return node


# ---------------------------------------------------------------------------
# Match
# ---------------------------------------------------------------------------


# PERF: a Match is made per call from Python, so it is made by hand: every
# field is a raw pointer (Cython's generated constructor then sets none of
# them to None, nor its destructor clears them), a used Match is kept on a
# free list by _match_dealloc below, and a reused one gets just its refcount
# and the fields a hit sets: no zeroing of the whole object (measured with
# bench/router_instructions.py: ~190 -> ~90 instructions a match for
# making and freeing the object).
# no_gc keeps Match objects out of the cyclic GC: one is made per request,
# and tracked objects would trigger a young-generation collection
# every few hundred matches. A Match refers only to the router, its routes
# and strings; a cycle needs user code that stores it in its own params dict.
@cython.final
@cython.no_gc
cdef class Match:
    """A hit: the route, and its params decoded on first access."""

    # All owned but _route (borrowed: kept alive through _router), NULL
    # where unset; see _match_dealloc.
    cdef PyObject* _route
    cdef PyObject* _router
    cdef PyObject* _buf           # the str/bytes the offsets index
    cdef PyObject* _level         # the (HostTable, host labels) pair of a host table's hit, or NULL
    cdef PyObject* _params        # dict, once asked for
    cdef PyObject* _host_params   # dict, once asked for
    cdef int32_t _offs[2 * _MAX_PARAMS + 2]

    def __cinit__(self):
        # Only from Python (Router.match allocates without calling this): a
        # Match with no route would crash on first use.
        raise TypeError("Match objects are made by Router.match")

    @property
    def route(self):
        return <Route>self._route

    @property
    def target(self):
        return (<Route>self._route).target

    @property
    def template(self):
        return (<Route>self._route).template

    @property
    def params(self):
        cdef int i
        cdef Py_ssize_t s, e
        if self._params == NULL:
            d = {}
            # A tail hit records the rest even for an unnamed "/*": zip stops
            # at the route's own names.
            for i, name in enumerate((<Route>self._route).param_names):
                s = self._offs[2 * i]
                e = self._offs[2 * i + 1]
                d[name] = _decode(<object>self._buf, s, e)
            Py_INCREF(d)
            self._params = <PyObject*>d
        return <dict>self._params

    @property
    def host_params(self):
        cdef HostTable table
        if self._host_params == NULL:
            d = {}
            if self._level != NULL:
                table = <HostTable>(<tuple>self._level)[0]
                labels = (<tuple>self._level)[1]
                for idx, name in zip(table.wild, (<Route>self._route).host_slots):
                    if name is not None:
                        d[name] = labels[idx]
            Py_INCREF(d)
            self._host_params = <PyObject*>d
        return <dict>self._host_params

    def __repr__(self):
        return f"<Match {self.route!r} params={self.params!r} host_params={self.host_params!r}>"


cdef extern from *:
    """
    #ifdef Py_GIL_DISABLED
    #define RMF_MATCH_FREE_MAX 0  /* the list relies on the GIL */
    #else
    #define RMF_MATCH_FREE_MAX 64
    #endif
    static PyObject *rmf_match_free[RMF_MATCH_FREE_MAX + 1];
    static int rmf_match_nfree = 0;

    /* A Match from the free list (refcount 1, fields as its last owner left
       them: the caller sets every one) or a new, zeroed one. */
    static PyObject *rmf_match_alloc(PyTypeObject *t)
    {
        if (rmf_match_nfree > 0) {
            PyObject *o = rmf_match_free[--rmf_match_nfree];
    #if PY_VERSION_HEX < 0x030D0000
            _Py_NewReference(o);
    #else
            (void)PyObject_Init(o, t);
    #endif
            return o;
        }
        return t->tp_alloc(t, 0);
    }
    """
    enum: RMF_MATCH_FREE_MAX
    PyObject* rmf_match_free[]
    int rmf_match_nfree
    Match rmf_match_alloc(PyTypeObject* t)


cdef void _match_dealloc(PyObject* o) noexcept:
    """Match's tp_dealloc: drop the fields, keep the object for the next hit."""
    global rmf_match_nfree
    cdef PyTypeObject* tp
    # (<Match>o).field reads the field without taking a reference to o.
    Py_XDECREF((<Match>o)._router)
    Py_XDECREF((<Match>o)._buf)
    Py_XDECREF((<Match>o)._level)
    Py_XDECREF((<Match>o)._params)
    Py_XDECREF((<Match>o)._host_params)
    if rmf_match_nfree < RMF_MATCH_FREE_MAX:
        rmf_match_free[rmf_match_nfree] = o
        rmf_match_nfree += 1
    else:
        tp = o.ob_type
        tp.tp_free(o)
        if tp.tp_flags & Py_TPFLAGS_HEAPTYPE:
            Py_DECREF(<object>tp)


(<PyTypeObject*>Match).tp_dealloc = <destructor>_match_dealloc


cdef str _decode(object buf, Py_ssize_t s, Py_ssize_t e):
    if type(buf) is str:
        # An ASCII str path never holds "%": those went through _canonicalize.
        return (<str>buf)[s:e]
    cdef const char* p = PyBytes_AS_STRING(buf) + s
    if memchr(p, 0x25, e - s) == NULL:  # no "%": the bytes are the text
        # PERF: decoded from the buffer itself, no slice and no method call.
        return PyUnicode_DecodeASCII(p, e - s, NULL)
    return unquote_to_bytes((<bytes>buf)[s:e]).decode("utf-8", "replace")


# ---------------------------------------------------------------------------
# Router
# ---------------------------------------------------------------------------

# PERF: binding=False: the methods are plain builtin methods, called by
# CPython's own fast path instead of through a Cython function object and a
# bound-method wrapper (measured: ~6% of a match from Python). `match` itself
# is replaced by a C function when the module loads: see _match_fastcall.
@cython.final
@cython.binding(False)
cdef class Router:
    """Host + method + path template -> target. add(), compile(), match()."""

    cdef HostTable _default
    cdef dict _exact          # host -> HostTable
    cdef dict _wild           # wildcard key -> HostTable
    cdef list _wild_sorted    # wildcard tables, most specific first
    cdef list _routes
    cdef bint _frozen
    cdef tuple _default_levels
    cdef bint _has_hosts
    cdef dict _host_cache     # raw Host value -> levels

    def __cinit__(self):
        self._default = HostTable(None)
        self._exact = {}
        self._wild = {}
        self._wild_sorted = []
        self._routes = []
        self._frozen = False
        self._host_cache = {}

    @property
    def frozen(self):
        return self._frozen

    def __len__(self):
        return len(self._routes)

    def add(self, method, template, target, host=None):
        """Register a route; see docs/routing.md for the template syntax.
        Raises TemplateError for a bad template or host, RouteConflict when
        the same host, method and template (up to names) is already there."""
        return self._add(method, template, target, host)

    def add_plan(self, list plan not None, host=None, Py_ssize_t start=0, pause=None):
        """`add(method, template, target, host)` for each (method, template, target, ...)
        tuple of `plan` from `start` on, until one is refused: -> (the routes added, the
        index of the refused one or len(plan), its TemplateError or RouteConflict or None).
        `pause` (a callable) is called every 32 routes: a long build's offer of the CPU.

        PERF: a spec's routes are added again at every config change (every route of
        every service); one call for all of them, not a Python loop calling `add`.
        """
        cdef list added = []
        cdef Py_ssize_t i
        cdef tuple entry
        for i in range(start, PyList_GET_SIZE(plan)):
            if pause is not None and not (i & 31):
                pause()
            entry = <tuple?>plan[i]
            try:
                added.append(self._add(entry[0], entry[1], entry[2], host))
            except (TemplateError, RouteConflict) as exc:
                return added, i, exc
        return added, PyList_GET_SIZE(plan), None

    cdef Route _add(self, method, template, target, host):
        cdef Node node
        cdef Leaf leaf
        cdef Route route, existing
        cdef HostTable table
        cdef int mi
        if self._frozen:
            raise RuntimeError("the router is compiled (frozen): build a new Router to change routes")
        # PERF: a method, a host pattern, a template are each the same few texts
        # route after route (a spec's thousand routes on one host): checked or
        # parsed once, then looked up (every config change adds every route again).
        if type(method) is not str or method not in _good_methods:
            if not isinstance(method, str) or not method or any(c in method for c in " \t\r\n/{}"):
                raise TemplateError(f"method must be a token such as 'GET' or '*', not {method!r}")
            if len(_good_methods) >= _PARSED_HOSTS_MAX:
                _good_methods.clear()
            _good_methods.add(method)
        tokens, names, is_prefix = _parse_template(template)
        if host is None:
            table = self._default
            host_names = host_param_names = ()
        else:
            key, labels, host_names, host_param_names, wild = _parse_host(host)
            store = self._wild if wild else self._exact
            table = store.get(key)
            if table is None:
                table = store[key] = HostTable(key, labels)
        route = Route.__new__(Route)
        route.method = method
        route.template = template
        route.host = host
        route.target = target
        route.param_names = names
        route.host_slots = host_names
        route.host_param_names = host_param_names
        route.is_prefix = is_prefix
        route.order = len(self._routes)
        node = table.root
        for tok in tokens:
            if tok is None:
                if node.param is None:
                    node.param = Node(b"", True)
                node = node.param
            else:
                node = _insert_static(node, tok)
        if is_prefix:
            if node.tail is None:
                node.tail = Leaf()
            leaf = node.tail
        else:
            if node.leaf is None:
                node.leaf = Leaf()
            leaf = node.leaf
        mi = _method_of(method)
        existing = leaf.existing(mi, method)
        if existing is not None:
            raise RouteConflict(existing, route)
        leaf.put(mi, route)
        table.size += 1
        self._routes.append(route)
        return route

    def compile(self):
        """Freeze the table and prepare it for matching (idempotent)."""
        if self._frozen:
            return
        for table in self._tables():
            (<HostTable>table).flat = _flatten((<HostTable>table).root)
        self._wild_sorted = sorted(self._wild.values(), key=lambda t: (<HostTable>t).specificity())
        self._has_hosts = bool(self._exact or self._wild)
        self._default_levels = ((self._default, None),) if self._default.size else ()
        self._frozen = True

    cdef list _tables(self):
        return [self._default, *self._exact.values(), *self._wild.values()]

    def release(self):
        """Take the table apart a piece at a time, letting other threads run between.

        For a table no longer used (a reload replaced it): freeing 20,000
        routes at once holds the GIL for milliseconds; taken apart on a worker
        thread, the event loop keeps its turn. The router routes nothing
        afterwards (match() raises), and Match objects made by it are invalid.
        """
        cdef HostTable table
        cdef Node node
        cdef list stack
        cdef list items
        self._frozen = False
        self._host_cache.clear()
        for table in self._tables():
            stack = [table.root]
            table.root = Node()
            while stack:
                _let_others_run()
                node = <Node>stack.pop()
                stack.extend(node.statics)
                node.statics = []
                if node.param is not None:
                    stack.append(node.param)
                    node.param = None
                node.leaf = None
                node.tail = None
            if table.flat is not None:
                items = table.flat.leaves
                while items:
                    _let_others_run()
                    del items[-64:]
                table.flat = None
        items = self._routes
        while items:
            _let_others_run()
            del items[-64:]

    cdef tuple _levels(self, object host):
        """The (table, host labels) pairs to try, most specific first."""
        cdef HostTable table
        if not self._has_hosts:
            return self._default_levels
        levels = self._host_cache.get(host)
        if levels is not None:
            return levels
        norm = _normalize_host(host)
        out = []
        if norm is not None:
            exact = self._exact.get(norm)
            if exact is not None:
                out.append((exact, None))
            if self._wild_sorted and not norm.startswith("["):
                labels = tuple(norm.split("."))
                for table in self._wild_sorted:
                    if len(table.labels) == len(labels) and all(
                        (want is None and got) or want == got
                        for want, got in zip(table.labels, labels)
                    ):
                        out.append((table, labels))
        levels = tuple(out) + self._default_levels
        if len(self._host_cache) >= _HOST_CACHE_MAX:
            self._host_cache.clear()
        self._host_cache[host] = levels
        return levels

    cdef object _find(self, host, method, path, Walk* w):
        """Walk the tables for (host, method, path). Returns the buffer the
        offsets index, with w.hit the Route and w.level the level it was found
        in (both borrowed: the router keeps them); or None, with w.hit NULL."""
        cdef const unsigned char* p
        cdef Py_ssize_t n
        cdef PyObject* r
        cdef PyObject* level
        cdef Py_ssize_t i, nlev
        cdef tuple levels
        w.hit = NULL
        if not self._frozen:
            raise RuntimeError("call Router.compile() before match()")
        buf = _prepare(path, &p, &n)
        if buf is None:
            return None
        w.p = p
        w.end = n
        w.mi = _method_of(method)
        if w.mi == M_OTHER and type(method) is bytes:
            method = (<bytes>method).decode("latin-1")
        w.method = <PyObject*>method
        w.acc = NULL
        w.budget = _SPLIT_BUDGET
        w.memo = NULL
        # PERF: no call for the common table without hosts (~15 instructions a match).
        levels = self._levels(host) if self._has_hosts else self._default_levels
        nlev = PyTuple_GET_SIZE(levels)
        try:
            for i in range(nlev):
                level = PyTuple_GET_ITEM(levels, i)
                _enter(w, (<HostTable>PyTuple_GET_ITEM(<tuple>level, 0)).flat)
                r = _walk_node(0, 0, 0, w)
                if r != NULL:
                    w.hit = r
                    w.level = level
                    return buf
            return None
        finally:
            Py_XDECREF(w.memo)

    def match(self, host, method, path):
        """The Match for (host, method, path), or None. After a None,
        allowed() tells whether other methods would match (405)."""
        # Only calls with keywords or a wrong count come here: the type's
        # "match" is _match_fastcall (below), made when the module loads.
        return self._match(host, method, path)

    cdef object _match(self, host, method, path):
        cdef Walk w
        cdef Match m
        buf = self._find(host, method, path, &w)
        if w.hit == NULL:
            return None
        m = rmf_match_alloc(<PyTypeObject*>Match)
        m._route = w.hit
        Py_INCREF(self)
        m._router = <PyObject*>self
        Py_INCREF(buf)
        m._buf = <PyObject*>buf
        m._params = NULL
        m._host_params = NULL
        m._level = NULL
        if PyTuple_GET_ITEM(<tuple>w.level, 1) != <PyObject*>None:
            Py_INCREF(<object>w.level)
            m._level = w.level
        # PERF: a copy of a constant size is a few moves, not a loop or a call;
        # the bytes past the recorded pairs are never read.
        if w.npairs <= 4:
            memcpy(m._offs, w.offs, 8 * sizeof(int32_t))
        else:
            memcpy(m._offs, w.offs, 2 * w.npairs * sizeof(int32_t))
        return m

    def allowed(self, host, path):
        """The methods that would match (host, path) in some table, sorted:
        HEAD whenever GET is there, "*" for a route of every method."""
        cdef Walk w
        cdef const unsigned char* p
        cdef Py_ssize_t n
        if not self._frozen:
            raise RuntimeError("call Router.compile() before allowed()")
        buf = _prepare(path, &p, &n)
        if buf is None:
            return ()
        acc = set()
        w.p = p
        w.end = n
        w.mi = M_OTHER
        w.method = <PyObject*>None
        w.acc = <PyObject*>acc
        w.budget = _SPLIT_BUDGET
        w.memo = NULL
        try:
            for level in self._levels(host):
                _enter(&w, (<HostTable>level[0]).flat)
                _walk_node(0, 0, 0, &w)
        finally:
            Py_XDECREF(w.memo)
        if "GET" in acc:
            acc.add("HEAD")
        return tuple(sorted(acc))

    def routes(self):
        """Every route, in the order they were added."""
        return list(self._routes)

    def dump(self):
        """The compiled tables as an indented tree a person can read."""
        lines = []
        tables = [self._default, *sorted(self._exact.values(), key=lambda t: t.pattern),
                  *self._wild_sorted]
        for table in tables:
            if not (<HostTable>table).size:
                continue
            label = "every host" if table.pattern is None else f"host {table.pattern}"
            lines.append(f"{label} ({(<HostTable>table).size} routes)")
            _dump_node((<HostTable>table).root, 1, lines)
        return "\n".join(lines) + ("\n" if lines else "")


cdef void _dump_node(Node node, int depth, list lines):
    cdef Node child
    pad = "  " * depth
    text = "{param}" if node.is_param else node.text.decode("ascii")
    if node.text or node.is_param or depth == 1:
        lines.append(f"{pad}{text or '(root)'}")
    for leaf, kind in ((node.leaf, ""), (node.tail, "prefix ")):
        if leaf is not None:
            for r in sorted((<Leaf>leaf).all_routes(), key=lambda r: (<Route>r).order):
                lines.append(
                    f"{pad}  => {kind}{r.method} {_show_host(r.host)}{r.template} -> {r.target!r}"
                )
    for child in node.statics:
        _dump_node(child, depth + 1, lines)
    if node.param is not None:
        _dump_node(node.param, depth + 1, lines)


# PERF: `router.match(host, method, path)` is the call an embedder makes per
# request. Cython's wrapper for a def (or cpdef) method takes a reference to
# each argument, checks for keywords and releases the references after: ~70
# instructions a call, as much as building the Match. The type's "match" is
# replaced by this C function (METH_FASTCALL | METH_KEYWORDS, which CPython
# calls directly): three positional arguments go straight to _match; anything
# else goes to the def above, which parses keywords and words the errors.
cdef extern from *:
    """
    typedef PyObject *(*rmf_match_fn)(PyObject *, PyObject *, PyObject *, PyObject *);
    static rmf_match_fn rmf_match_impl;
    static PyObject *rmf_match_parsed;  /* the def's own descriptor */

    /* Out of line, so that the common call does not pay for its frame. */
    static Py_NO_INLINE PyObject *rmf_match_parse(PyObject *self, PyObject *const *args,
                                                  Py_ssize_t nargs, PyObject *kwnames)
    {
        Py_ssize_t total;
        PyObject **stack, *r;
        total = nargs + (kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames));
        stack = (PyObject **)PyMem_Malloc((size_t)(total + 1) * sizeof(PyObject *));
        if (stack == NULL)
            return PyErr_NoMemory();
        stack[0] = self;
        memcpy(stack + 1, args, (size_t)total * sizeof(PyObject *));
        r = PyObject_Vectorcall(rmf_match_parsed, stack, (size_t)(nargs + 1), kwnames);
        PyMem_Free(stack);
        return r;
    }

    static PyObject *rmf_match_fastcall(PyObject *self, PyObject *const *args,
                                        Py_ssize_t nargs, PyObject *kwnames)
    {
        if (nargs == 3 && kwnames == NULL)
            return rmf_match_impl(self, args[0], args[1], args[2]);
        return rmf_match_parse(self, args, nargs, kwnames);
    }

    static PyMethodDef rmf_match_def = {
        "match", (PyCFunction)(void (*)(void))rmf_match_fastcall, METH_FASTCALL | METH_KEYWORDS, NULL};

    /* t's "match" (a method descriptor made by Cython) becomes rmf_match_fastcall,
       with the same docstring. */
    static int rmf_install_match(PyTypeObject *t, rmf_match_fn impl)
    {
        PyObject *orig = PyDict_GetItemString(t->tp_dict, "match"), *descr;
        int rc;
        if (orig == NULL || !Py_IS_TYPE(orig, &PyMethodDescr_Type)) {
            PyErr_SetString(PyExc_ImportError, "runmcp_fast._router: Router.match is not a method descriptor");
            return -1;
        }
        Py_INCREF(orig);
        rmf_match_parsed = orig;
        rmf_match_impl = impl;
        rmf_match_def.ml_doc = ((PyMethodDescrObject *)orig)->d_method->ml_doc;
        descr = PyDescr_NewMethod(t, &rmf_match_def);
        if (descr == NULL)
            return -1;
        rc = PyDict_SetItemString(t->tp_dict, "match", descr);
        Py_DECREF(descr);
        PyType_Modified(t);
        return rc;
    }
    """
    ctypedef object (*rmf_match_fn)(object, object, object, object)
    int rmf_install_match(PyTypeObject* t, rmf_match_fn impl) except -1


cdef object _match_fastcall(object router, object host, object method, object path):
    return (<Router>router)._match(host, method, path)


rmf_install_match(<PyTypeObject*>Router, _match_fastcall)


# ---------------------------------------------------------------------------
# The C entry point (_router.pxd)
# ---------------------------------------------------------------------------

cdef object match_hit(object router, object host, object method, object path, RouteHit* hit):
    """Router.match without the Match object or the Python call: for the data plane."""
    cdef Walk w
    cdef Route route
    if type(router) is not Router:
        raise TypeError(f"router must be a runmcp_fast Router, not {type(router).__name__}")
    buf = (<Router>router)._find(host, method, path, &w)
    if w.hit == NULL:
        return None
    route = <Route>w.hit
    hit.target = <PyObject*>route.target
    hit.param_names = <PyObject*>route.param_names
    hit.npairs = w.npairs
    memcpy(hit.offs, w.offs, 2 * w.npairs * sizeof(int32_t))
    return buf


cdef tuple hit_names(const RouteHit* hit, object names, Py_ssize_t* count):
    # A tail hit records the rest even for an unnamed "/*": the route's names
    # bound the values (as Match.params), then the given names.
    cdef tuple keys = (
        <tuple>hit.param_names if names is None
        else <tuple>names if type(names) is tuple else tuple(names)
    )
    count[0] = min(
        min(PyTuple_GET_SIZE(<tuple>hit.param_names), hit.npairs), PyTuple_GET_SIZE(keys)
    )
    return keys


cdef dict hit_params(object buf, const RouteHit* hit, object names):
    cdef dict d = {}
    cdef Py_ssize_t i, count
    cdef tuple keys = hit_names(hit, names, &count)
    for i in range(count):
        d[<object>PyTuple_GET_ITEM(keys, i)] = _decode(buf, hit.offs[2 * i], hit.offs[2 * i + 1])
    return d
