# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""A JSON Schema validator over the raw bytes: one pass, no Python object on the valid path.

`validation/fastpath.py` compiles a bundled schema into a graph of `Node`s
(C structs inside small Python objects); `Program.check(data)` walks the JSON
text once, in C, and answers one question: is this a single JSON document
that satisfies the schema and repeats no object key anywhere? True is final;
False sends the request down the slow path (msgspec, jsonschema), which lists
the errors, so nothing here ever explains anything.

What one pass checks, per value, on the bytes:

- syntax, everywhere (also where the schema allows anything): RFC 8259
  numbers, literals, strings with valid escapes (paired surrogates only), no
  raw control character, valid UTF-8; whitespace around the document and
  nothing after it; at most MAX_DEPTH nested containers;
- duplicate keys in every object: a declared property sets its slot's bit (a
  second one is a repeat), other keys go through _jsonkeys.pxd, as in
  `_jsonscan` (spans of the input, an 8-byte summary, a keyed SipHash table
  past SMALL keys, keys with escapes decoded first);
- the node's kinds (one bit per JSON kind, integer literals apart from
  other numbers), then the constraints of the kind found: numbers parsed in
  place (int64 or double, Python ints beyond), string lengths in code points,
  formats by hand-written checks, enums by memcmp, patterns by a greedy
  matcher for simple anchored ones and Python's `re` otherwise, objects by a
  table of declared keys (required members as a bitset), arrays item by item;
- unions by the JSON kind of the value; a value of a kind several branches
  take is checked against each in turn (`oneOf`: exactly one must pass; the
  compiler bounds how often an array or object can be re-read this way);
  discriminated unions find the tag member first (a skip-scan), then check
  the object against that variant.

Only strings a pattern must judge with `re` become Python objects; the
module keeps the GIL (those calls need it).
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_GET_SIZE
from cpython.object cimport PyObject
from cpython.tuple cimport PyTuple_GET_ITEM
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.float cimport DBL_MAX
from libc.math cimport fmod
from libc.stdint cimport INT64_MIN, int32_t, int64_t, uint8_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcmp, memcpy, memset

from runmcp_fast._jsonkeys cimport (
    NO_MEMORY,
    KeyFrame,
    Keys,
    grow,
    hex4,
    hex_digit,
    key_hash,
    key_tag,
    keys_add,
    keys_arena,
    keys_close,
    keys_free,
    keys_init,
    keys_open,
    uchar,
    unescape,
)


cdef extern from "Python.h":
    double PyOS_string_to_double(const char* s, char** endptr, PyObject* overflow_exception) except? -1.0
    object PyLong_FromString(const char* s, char** pend, int base)


cdef extern from "_jsonstr.h":
    int fc_ctz64(uint64_t x) noexcept nogil
    const unsigned char* fc_special(const unsigned char* p, const unsigned char* end) noexcept nogil
    const unsigned char* fc_quick_quote(const unsigned char* p, const unsigned char* end) noexcept nogil
    const bint FC_LITTLE_ENDIAN



# -- kinds, modes, formats ---------------------------------------------------------------

cdef enum:
    K_NULL = 1
    K_TRUE = 2
    K_FALSE = 4
    K_INT = 8        # a number literal without fraction or exponent
    K_FLOAT = 16     # any other number literal; set with K_INT for `number`
    K_STR = 32
    K_ARR = 64
    K_OBJ = 128
    K_ALL = 255

cdef enum:
    M_SIMPLE = 0     # kinds + per-kind constraints
    M_ANY = 1        # anything (syntax and duplicate keys still checked)
    M_UNION = 2      # candidates by the value's JSON kind
    M_TAGGED = 3     # objects only: the variant named by the tag member
    M_ALL = 4        # every branch in turn: an allOf that bundle.merge_all_of left

cdef enum:
    F_NONE = 0
    F_DATETIME = 1
    F_DATE = 2
    F_TIME = 3
    F_UUID = 4
    F_BYTE = 5

cdef enum:
    # Deeper documents are refused (the slow path decides them: msgspec stops
    # at the Python recursion limit, 1000 by default).
    MAX_DEPTH = 1000
    # Sizes of the buffers inside Ctx (beside those of its Keys).
    LOCAL_WORDS = 64
    LOCAL_SCRATCH = 256
    # Union classes: null, boolean, number, string, array, object.
    NCLASS = 6

cdef enum:
    ERR_NONE = 0
    ERR_MEMORY = 1

cdef enum:
    S_ESC = 1        # the string has a backslash escape
    S_UTF8 = 2       # the string has non-ASCII bytes


# -- compiled structures ---------------------------------------------------------------

cdef struct NodeC


cdef struct SItem:
    uint64_t lo          # the class: bit c of lo (c < 64) or hi (c - 64)
    uint64_t hi
    Py_ssize_t min
    Py_ssize_t max       # -1: unbounded


cdef struct SPat:
    SItem* items         # NULL: not simple, Python's re decides
    Py_ssize_t n
    bint anchored        # ends in `$`: the items must consume the whole string


cdef struct KEntry:
    const uchar* key
    Py_ssize_t len
    uint64_t tag
    Py_ssize_t slot
    NodeC* child


cdef struct KTable:
    KEntry* entries
    Py_ssize_t n
    int32_t* index       # open addressing, -1 empty; NULL when n == 0
    uint64_t mask
    int shift


cdef struct NodeC:
    int mode
    int kinds
    # strings
    bint str_checks
    Py_ssize_t min_len
    Py_ssize_t max_len
    int fmt
    Py_ssize_t npats
    SPat* pats
    PyObject* searches   # tuple of bound Pattern.search methods (owned by the Node)
    bint has_str_enum
    KTable enum_strs
    # numbers
    bint num_checks
    bint has_min
    bint has_xmin
    bint has_max
    bint has_xmax
    double dmin
    double dxmin
    double dmax
    double dxmax
    double dmult         # 0: none
    int ilo_state        # 0 none, 1 ilo, 2 no int64 is high enough, 3 every int64 is
    int ihi_state        # (the same for the upper bound); Python ints compare big values
    int64_t ilo
    int64_t ihi
    int64_t imult        # 0: none
    PyObject* py_ilo     # the exact bounds, for integers beyond int64 (owned by the Node)
    PyObject* py_ihi
    bint has_int_enum
    int64_t* enum_ints
    Py_ssize_t n_enum_ints
    # arrays
    Py_ssize_t min_items
    Py_ssize_t max_items
    NodeC* items
    # objects
    KTable props
    uint64_t* req        # required slots, nwords words
    Py_ssize_t nwords
    Py_ssize_t nreq
    NodeC* additional
    Py_ssize_t min_props
    Py_ssize_t max_props
    bint obj_plain       # no declared key, anything else allowed, no counts
    # unions
    bint configured
    NodeC** cands[NCLASS]
    Py_ssize_t ncands[NCLASS]
    bint one_of
    # allOf
    NodeC** all_of
    Py_ssize_t n_all_of
    # tagged unions
    const uchar* tag_key
    Py_ssize_t tag_len
    KTable tags


# -- per-call state ----------------------------------------------------------------------

cdef struct Ctx:
    Keys keys            # the input, and the unknown keys of the open objects
    int err
    uint64_t* words
    Py_ssize_t nwords
    Py_ssize_t words_cap
    uchar* scratch
    Py_ssize_t scratch_cap
    uint64_t local_words[LOCAL_WORDS]
    uchar local_scratch[LOCAL_SCRATCH]


# -- tables ------------------------------------------------------------------------------

cdef uint8_t _WS[256]
cdef uint8_t _ESC[256]      # the byte after a backslash, \u apart
cdef uint8_t _B64[256]
cdef uint8_t _CLASS[256]    # 1 + the union class of a value's first byte; 0: none
cdef uint8_t _DELIM[256]    # bytes that end a number or literal in the skip-scan
cdef unsigned char _c
for _c in b" \t\r\n":
    _WS[_c] = 1
    _DELIM[_c] = 1
for _c in b",]}:":
    _DELIM[_c] = 1
for _c in b'"\\/bfnrt':
    _ESC[_c] = 1
for _c in b"0123456789":
    _CLASS[_c] = 3
for _c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/":
    _B64[_c] = 1
_CLASS[ord("n")] = 1
_CLASS[ord("t")] = 2
_CLASS[ord("f")] = 2
_CLASS[ord("-")] = 3
_CLASS[ord('"')] = 4
_CLASS[ord("[")] = 5
_CLASS[ord("{")] = 6

cdef int _CLASS_KINDS[NCLASS]
_CLASS_KINDS[0] = K_NULL
_CLASS_KINDS[1] = K_TRUE | K_FALSE
_CLASS_KINDS[2] = K_INT | K_FLOAT
_CLASS_KINDS[3] = K_STR
_CLASS_KINDS[4] = K_ARR
_CLASS_KINDS[5] = K_OBJ

cdef double _POW10[23]
_POW10[0] = 1.0
for _i in range(1, 23):
    _POW10[_i] = _POW10[_i - 1] * 10.0  # exact up to 1e22


# -- small helpers -------------------------------------------------------------------------

cdef inline uint64_t _kt_hash(uint64_t tag, Py_ssize_t n) noexcept nogil:
    return (tag ^ ((<uint64_t>n) << 58) ^ (<uint64_t>n)) * 0x9E3779B97F4A7C15ULL


cdef inline KEntry* _kt_find(KTable* t, const uchar* p, Py_ssize_t n, const uchar* end) noexcept nogil:
    """The entry for the key bytes [p, p + n), or NULL; reads nothing at or past end."""
    cdef uint64_t tag
    cdef uint64_t i
    cdef int32_t k
    cdef KEntry* e
    if t.n == 0:
        return NULL
    tag = key_tag(p, n, end)
    i = _kt_hash(tag, n) >> t.shift
    while True:
        k = t.index[i]
        if k < 0:
            return NULL
        e = &t.entries[k]
        if e.tag == tag and e.len == n and (n <= 8 or memcmp(e.key, p, n) == 0):
            return e
        i = (i + 1) & t.mask


cdef inline const uchar* _ws(const uchar* p, const uchar* end) noexcept nogil:
    while p < end and _WS[p[0]]:
        p += 1
    return p


cdef inline Py_ssize_t _utf8_seq(const uchar* q, const uchar* end) noexcept nogil:
    """Length of the valid UTF-8 sequence of a non-ASCII lead byte at q, 0 if invalid.

    No overlong forms, no surrogates (ED A0-BF), nothing above U+10FFFF.
    """
    cdef uchar b0 = q[0], b1
    if b0 < 0xC2:
        return 0
    if b0 < 0xE0:
        if end - q < 2 or (q[1] & 0xC0) != 0x80:
            return 0
        return 2
    if b0 < 0xF0:
        if end - q < 3:
            return 0
        b1 = q[1]
        if b0 == 0xE0:
            if b1 < 0xA0 or b1 > 0xBF:
                return 0
        elif b0 == 0xED:
            if b1 < 0x80 or b1 > 0x9F:
                return 0
        elif (b1 & 0xC0) != 0x80:
            return 0
        if (q[2] & 0xC0) != 0x80:
            return 0
        return 3
    if b0 < 0xF5:
        if end - q < 4:
            return 0
        b1 = q[1]
        if b0 == 0xF0:
            if b1 < 0x90 or b1 > 0xBF:
                return 0
        elif b0 == 0xF4:
            if b1 < 0x80 or b1 > 0x8F:
                return 0
        elif (b1 & 0xC0) != 0x80:
            return 0
        if (q[2] & 0xC0) != 0x80 or (q[3] & 0xC0) != 0x80:
            return 0
        return 4
    return 0


cdef inline const uchar* _str_end(const uchar* q, const uchar* end, int* flags) noexcept nogil:
    """The closing quote of the string whose content starts at q, or NULL if it is not JSON
    (`_str_read`). PERF: a plain string of under 16 bytes is found inline: no call (its
    entry and exit cost ~25 instructions, ~40% of a key's whole read, callgrind)."""
    cdef const uchar* r = fc_quick_quote(q, end)
    if r != NULL:
        flags[0] = 0
        return r
    return _str_read(q, end, flags)


cdef const uchar* _str_read(const uchar* q, const uchar* end, int* flags) noexcept nogil:
    """The closing quote of the string whose content starts at q, or NULL if it is not JSON.

    Checks the content: escapes (a \\u high surrogate must be followed by a
    \\u low one, a lone low one is refused, as msgspec does), no raw control
    character, valid UTF-8. Sets S_ESC / S_UTF8 in *flags.
    """
    cdef int f = 0, cp, lo
    cdef uchar ch
    cdef Py_ssize_t n
    while True:
        q = fc_special(q, end)
        if q >= end:
            return NULL
        ch = q[0]
        if ch == 34:
            flags[0] = f
            return q
        if ch == 92:
            f |= S_ESC
            if end - q < 2:
                return NULL
            ch = q[1]
            if ch == 117:  # \uXXXX
                if end - q < 6:
                    return NULL
                cp = hex4(q + 2)
                if cp < 0:
                    return NULL
                if 0xD800 <= cp <= 0xDBFF:
                    if end - q < 12 or q[6] != 92 or q[7] != 117:
                        return NULL
                    lo = hex4(q + 8)
                    if lo < 0xDC00 or lo > 0xDFFF:
                        return NULL
                    q += 12
                elif 0xDC00 <= cp <= 0xDFFF:
                    return NULL
                else:
                    q += 6
            elif _ESC[ch]:
                q += 2
            else:
                return NULL
        elif ch < 0x20:
            return NULL
        else:
            f |= S_UTF8
            n = _utf8_seq(q, end)
            if n == 0:
                return NULL
            q += n


cdef inline Py_ssize_t _code_points(const uchar* s, Py_ssize_t n) noexcept nogil:
    """Code points in the valid UTF-8 bytes [s, s + n): the bytes that start one."""
    cdef Py_ssize_t i, count = 0
    for i in range(n):
        count += (s[i] & 0xC0) != 0x80
    return count


# -- buffers ---------------------------------------------------------------------------

cdef inline int _need_scratch(Ctx* c, Py_ssize_t n) noexcept nogil:
    if n > c.scratch_cap:
        # The old content is not needed: free and allocate, not realloc.
        if c.scratch != c.local_scratch:
            free(c.scratch)
        c.scratch = <uchar*>malloc(n)
        if c.scratch == NULL:
            c.scratch = c.local_scratch
            c.scratch_cap = LOCAL_SCRATCH
            c.err = ERR_MEMORY
            return -1
        c.scratch_cap = n
    return 0


cdef void _ctx_init(Ctx* c, const uchar* data, Py_ssize_t size) noexcept nogil:
    keys_init(&c.keys, data, size)
    c.err = ERR_NONE
    c.words = c.local_words
    c.nwords = 0
    c.words_cap = LOCAL_WORDS
    c.scratch = c.local_scratch
    c.scratch_cap = LOCAL_SCRATCH


cdef void _ctx_free(Ctx* c) noexcept nogil:
    keys_free(&c.keys)
    if c.words != c.local_words:
        free(c.words)
    if c.scratch != c.local_scratch:
        free(c.scratch)


# -- duplicate keys (the unknown ones; declared ones have a bit each) ----------------------

cdef int _add_key(Ctx* c, KeyFrame* f, const uchar* kp, Py_ssize_t n, bint decoded) noexcept nogil:
    """An unknown key of the innermost object: 0 once recorded, -1 if it repeats or no memory.

    Not inline: two call sites, and both are hot loops that stay smaller without it.
    """
    cdef int rc = keys_add(&c.keys, f, kp, n, decoded)
    if rc == NO_MEMORY:
        c.err = ERR_MEMORY
    return -1 if rc else 0


cdef inline int _need_arena(Ctx* c, Py_ssize_t n) noexcept nogil:
    if keys_arena(&c.keys, n) < 0:
        c.err = ERR_MEMORY
        return -1
    return 0


cdef inline const uchar* _key(Ctx* c, KeyFrame* f, const uchar* p) noexcept nogil:
    """An unknown key at p (its opening quote) recorded; returns the closing quote or NULL."""
    cdef int flags = 0
    cdef const uchar* q = _str_end(p + 1, c.keys.end, &flags)
    cdef uchar* out
    cdef Py_ssize_t n
    if q == NULL:
        return NULL
    if flags & S_ESC:
        if _need_arena(c, q - p) < 0:
            return NULL
        out = c.keys.arena + c.keys.arena_len
        n = unescape(p + 1, q, out)
        c.keys.arena_len += n
        if _add_key(c, f, out, n, True) < 0:
            return NULL
    elif _add_key(c, f, p + 1, q - p - 1, False) < 0:
        return NULL
    return q


# -- anything: syntax and duplicate keys only ----------------------------------------------

cdef inline const uchar* _literal(const uchar* p, const uchar* end, const char* word, Py_ssize_t n) noexcept nogil:
    if end - p < n or memcmp(p, word, n) != 0:
        return NULL
    return p + n


cdef double _parse_double(Ctx* c, const uchar* s, const uchar* p) noexcept:
    """The number [s, p) (valid JSON) as the nearest double; inf beyond the range."""
    cdef char local[64]
    cdef char* buf = local
    cdef Py_ssize_t n = p - s
    cdef double x
    if n >= 64:
        buf = <char*>malloc(n + 1)
        if buf == NULL:
            c.err = ERR_MEMORY
            return 0.0
    memcpy(buf, s, n)
    buf[n] = 0
    try:
        x = PyOS_string_to_double(buf, NULL, NULL)
    except Exception:  # only MemoryError is possible on a valid literal
        c.err = ERR_MEMORY
        x = 0.0
    if buf != local:
        free(buf)
    return x


cdef struct Num:
    # A number literal's parts, as _scan_number read them.
    const uchar* digits  # the integer part
    Py_ssize_t nint
    const uchar* frac    # the fraction's digits (nfrac == 0: none)
    Py_ssize_t nfrac
    int64_t exp          # the exponent, its magnitude cut off past 100000 (no double is that far)
    bint neg
    bint is_int          # neither fraction nor exponent: an `integer` to msgspec


cdef inline const uchar* _scan_number(const uchar* p, const uchar* end, Num* num) noexcept nogil:
    """The end of the RFC 8259 number at p (p < end), its parts in *num; NULL if none is there.

    The one reading of the grammar: values checked against a node (_number) and
    values only skipped (_skip_number) must not disagree on what a number is.
    """
    cdef const uchar* d
    cdef int64_t e = 0
    cdef bint eneg = False
    num.neg = p[0] == 45
    if num.neg:
        p += 1
        if p >= end:
            return NULL
    num.digits = p
    if p[0] == 48:
        p += 1
    elif 49 <= p[0] <= 57:
        p += 1
        while p < end and 48 <= p[0] <= 57:
            p += 1
    else:
        return NULL
    num.nint = p - num.digits
    num.frac = p
    num.nfrac = 0
    num.is_int = True
    if p < end and p[0] == 46:
        p += 1
        num.frac = p
        while p < end and 48 <= p[0] <= 57:
            p += 1
        num.nfrac = p - num.frac
        if num.nfrac == 0:
            return NULL
        num.is_int = False
    if p < end and (p[0] | 0x20) == 101:
        p += 1
        num.is_int = False
        if p < end and (p[0] == 43 or p[0] == 45):
            eneg = p[0] == 45
            p += 1
        d = p
        while p < end and 48 <= p[0] <= 57:
            if e < 100000:
                e = e * 10 + (p[0] - 48)
            p += 1
        if p == d:
            return NULL
        if eneg:
            e = -e
    num.exp = e
    return p


cdef const uchar* _skip_number(Ctx* c, const uchar* p) noexcept:
    """A number, grammar only; a float literal beyond the double range is refused (msgspec)."""
    cdef Num num
    cdef const uchar* q = _scan_number(p, c.keys.end, &num)
    cdef double x
    if q != NULL and not num.is_int and num.nint + num.exp > 308:
        x = _parse_double(c, p, q)
        if c.err or x > DBL_MAX or x < -DBL_MAX:
            return NULL
    return q


cdef const uchar* _skip(Ctx* c, const uchar* p, int depth) noexcept:
    cdef const uchar* end = c.keys.end
    cdef const uchar* q
    cdef int flags
    cdef uchar ch
    if p >= end:
        return NULL
    ch = p[0]
    if ch == 34:
        q = _str_end(p + 1, end, &flags)
        if q == NULL:
            return NULL
        return q + 1
    if ch == 123:
        return _skip_object(c, p, depth)
    if ch == 91:
        return _skip_array(c, p, depth)
    if ch == 116:
        return _literal(p, end, b"true", 4)
    if ch == 102:
        return _literal(p, end, b"false", 5)
    if ch == 110:
        return _literal(p, end, b"null", 4)
    if ch == 45 or 48 <= ch <= 57:
        return _skip_number(c, p)
    return NULL


cdef const uchar* _skip_array(Ctx* c, const uchar* p, int depth) noexcept:
    cdef const uchar* end = c.keys.end
    if depth >= MAX_DEPTH:
        return NULL
    p = _ws(p + 1, end)
    if p < end and p[0] == 93:
        return p + 1
    while True:
        p = _skip(c, p, depth + 1)
        if p == NULL:
            return NULL
        p = _ws(p, end)
        if p >= end:
            return NULL
        if p[0] == 44:
            p = _ws(p + 1, end)
            continue
        if p[0] == 93:
            return p + 1
        return NULL


cdef const uchar* _skip_members(Ctx* c, KeyFrame* f, const uchar* p, int depth) noexcept:
    cdef const uchar* end = c.keys.end
    p = _ws(p + 1, end)
    if p < end and p[0] == 125:
        return p + 1
    while True:
        if p >= end or p[0] != 34:
            return NULL
        p = _key(c, f, p)
        if p == NULL:
            return NULL
        p = _ws(p + 1, end)
        if p >= end or p[0] != 58:
            return NULL
        p = _skip(c, _ws(p + 1, end), depth + 1)
        if p == NULL:
            return NULL
        p = _ws(p, end)
        if p >= end:
            return NULL
        if p[0] == 44:
            p = _ws(p + 1, end)
            continue
        if p[0] == 125:
            return p + 1
        return NULL


cdef const uchar* _skip_object(Ctx* c, const uchar* p, int depth) noexcept:
    cdef KeyFrame f
    if depth >= MAX_DEPTH:
        return NULL
    keys_open(&c.keys, &f)
    p = _skip_members(c, &f, p, depth)
    keys_close(&c.keys, &f)
    return p


# -- formats (RFC 3339 as msgspec reads it, RFC 4122, RFC 4648) ----------------------------

cdef inline int _d2(const uchar* s) noexcept nogil:
    if not (48 <= s[0] <= 57 and 48 <= s[1] <= 57):
        return -1
    return (s[0] - 48) * 10 + (s[1] - 48)


cdef bint _date_ok(const uchar* s, Py_ssize_t n) noexcept nogil:
    """YYYY-MM-DD, a real calendar day (years 0000-9999, as RFC 3339)."""
    cdef int hi, lo, y, m, d, dim
    if n != 10 or s[4] != 45 or s[7] != 45:
        return False
    hi = _d2(s)
    lo = _d2(s + 2)
    m = _d2(s + 5)
    d = _d2(s + 8)
    if hi < 0 or lo < 0 or m < 1 or m > 12 or d < 1:
        return False
    y = hi * 100 + lo
    if m == 2:
        dim = 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28
    elif m == 4 or m == 6 or m == 9 or m == 11:
        dim = 30
    else:
        dim = 31
    return d <= dim


cdef bint _time_ok(const uchar* s, Py_ssize_t n) noexcept nogil:
    """HH:MM:SS[.frac] then Z, z or +HH:MM / -HH:MM: the offset is required; no :60."""
    cdef Py_ssize_t i
    cdef int h, m
    if n < 9 or s[2] != 58 or s[5] != 58:
        return False
    h = _d2(s)
    m = _d2(s + 3)
    if h < 0 or h > 23 or m < 0 or m > 59:
        return False
    h = _d2(s + 6)
    if h < 0 or h > 59:
        return False
    i = 8
    if s[i] == 46:
        i += 1
        if i >= n or not (48 <= s[i] <= 57):
            return False
        while i < n and 48 <= s[i] <= 57:
            i += 1
        if i >= n:
            return False
    if s[i] == 90 or s[i] == 122:  # Z z
        return i + 1 == n
    if s[i] != 43 and s[i] != 45:
        return False
    if n - i != 6 or s[i + 3] != 58:
        return False
    h = _d2(s + i + 1)
    m = _d2(s + i + 4)
    return 0 <= h <= 23 and 0 <= m <= 59


cdef bint _format_ok(int fmt, const uchar* s, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef uchar ch
    if fmt == F_DATETIME:
        # msgspec also reads a space or a lower-case t for the T
        return (n >= 20 and (s[10] == 84 or s[10] == 116 or s[10] == 32)
                and _date_ok(s, 10) and _time_ok(s + 11, n - 11))
    if fmt == F_DATE:
        return _date_ok(s, n)
    if fmt == F_TIME:
        return _time_ok(s, n)
    if fmt == F_UUID:
        if n != 36:
            return False
        for i in range(36):
            if i == 8 or i == 13 or i == 18 or i == 23:
                if s[i] != 45:
                    return False
            elif hex_digit(s[i]) < 0:
                return False
        return True
    if fmt == F_BYTE:
        if n & 3:
            return False
        for i in range(n):
            ch = s[i]
            if _B64[ch]:
                continue
            # padding: the last byte, or the last two
            if ch != 61 or i < n - 2 or (i == n - 2 and s[n - 1] != 61):
                return False
        return True
    return True


# -- patterns ------------------------------------------------------------------------------

cdef bint _spat_match(SPat* sp, const uchar* s, Py_ssize_t n) noexcept nogil:
    """A simple pattern (see fastpath.py) on ASCII s: each item greedily, which is exact
    because a variable item's class is disjoint from whatever may follow it."""
    cdef Py_ssize_t pos = 0, i, count
    cdef SItem* it
    cdef uchar ch
    for i in range(sp.n):
        it = &sp.items[i]
        count = 0
        while pos < n and (it.max < 0 or count < it.max):
            ch = s[pos]
            if ch < 64:
                if not ((it.lo >> ch) & 1):
                    break
            elif ch < 128:
                if not ((it.hi >> (ch - 64)) & 1):
                    break
            else:
                break
            pos += 1
            count += 1
        if count < it.min:
            return False
    return pos == n if sp.anchored else True


cdef bint _patterns_ok(Ctx* c, NodeC* n, const uchar* s, Py_ssize_t ln, bint ascii) noexcept:
    cdef Py_ssize_t i
    cdef object text = None
    cdef object found
    for i in range(n.npats):
        if ascii and n.pats[i].items != NULL:
            if not _spat_match(&n.pats[i], s, ln):
                return False
            continue
        try:
            if text is None:
                text = PyUnicode_DecodeUTF8(<const char*>s, ln, NULL)
            found = (<object>PyTuple_GET_ITEM(<object>n.searches, i))(text)
        except MemoryError:
            c.err = ERR_MEMORY
            return False
        except Exception:
            return False  # the slow path decides (and says why)
        if found is None:
            return False
    return True


# -- values against nodes ------------------------------------------------------------------

cdef const uchar* _string(Ctx* c, NodeC* n, const uchar* p) noexcept:
    cdef int flags = 0
    cdef const uchar* q = _str_end(p + 1, c.keys.end, &flags)
    cdef const uchar* s
    cdef Py_ssize_t ln, count
    if q == NULL:
        return NULL
    if not n.str_checks:
        return q + 1
    s = p + 1
    ln = q - s
    if flags & S_ESC:
        if _need_scratch(c, ln) < 0:
            return NULL
        ln = unescape(s, q, c.scratch)
        s = c.scratch
    if n.min_len >= 0 or n.max_len >= 0:
        count = ln if flags == 0 else _code_points(s, ln)
        if count < n.min_len or (n.max_len >= 0 and count > n.max_len):
            return NULL
    if n.fmt != F_NONE and not _format_ok(n.fmt, s, ln):
        return NULL
    if n.has_str_enum and _kt_find(&n.enum_strs, s, ln, s + ln) == NULL:
        return NULL
    if n.npats and not _patterns_ok(c, n, s, ln, flags == 0):
        return NULL
    return q + 1


cdef bint _int64_ok(NodeC* n, int64_t v) noexcept nogil:
    cdef Py_ssize_t i
    if n.ilo_state == 1:
        if v < n.ilo:
            return False
    elif n.ilo_state == 2:
        return False
    if n.ihi_state == 1:
        if v > n.ihi:
            return False
    elif n.ihi_state == 2:
        return False
    if n.imult and v % n.imult != 0:
        return False
    if n.has_int_enum:
        for i in range(n.n_enum_ints):
            if n.enum_ints[i] == v:
                return True
        return False
    return True


cdef bint _bigint_ok(Ctx* c, NodeC* n, const uchar* s, const uchar* p) noexcept:
    """An integer literal beyond int64 against the integer constraints, with Python ints."""
    cdef char local[64]
    cdef char* buf = local
    cdef Py_ssize_t size = p - s
    cdef bint ok = False
    if n.has_int_enum:
        return False  # enum integers all fit in int64
    if size >= 64:
        buf = <char*>malloc(size + 1)
        if buf == NULL:
            c.err = ERR_MEMORY
            return False
    memcpy(buf, s, size)
    buf[size] = 0
    try:
        v = PyLong_FromString(buf, NULL, 10)
        ok = True
        if n.ilo_state and v < <object>n.py_ilo:
            ok = False
        elif n.ihi_state and v > <object>n.py_ihi:
            ok = False
        elif n.imult and v % n.imult != 0:
            ok = False
    except MemoryError:
        c.err = ERR_MEMORY
        ok = False
    except Exception:
        ok = False
    if buf != local:
        free(buf)
    return ok


cdef const uchar* _number(Ctx* c, NodeC* n, const uchar* p) noexcept:
    cdef const uchar* s = p
    cdef Py_ssize_t i
    cdef int64_t e10
    cdef uint64_t m = 0
    cdef double x
    cdef Num num
    p = _scan_number(p, c.keys.end, &num)
    if p == NULL:
        return NULL
    if num.is_int:
        if not (n.kinds & K_INT):
            return NULL
    elif not (n.kinds & K_FLOAT):
        return NULL
    if n.kinds & K_FLOAT:
        # `number`: the value as a double, as msgspec's float (out of range refused)
        if not n.num_checks and num.nint + num.exp <= 308:
            return p
        if num.nint + num.nfrac <= 15 and -22 <= num.exp - num.nfrac <= 22:
            # Exact digits and an exact power of ten: one rounding, the right one.
            for i in range(num.nint):
                m = m * 10 + (num.digits[i] - 48)
            for i in range(num.nfrac):
                m = m * 10 + (num.frac[i] - 48)
            e10 = num.exp - num.nfrac
            x = <double>m
            if e10 >= 0:
                x = x * _POW10[e10]
            else:
                x = x / _POW10[-e10]
            if num.neg:
                x = -x
        else:
            x = _parse_double(c, s, p)
            if c.err or x > DBL_MAX or x < -DBL_MAX:
                return NULL
        if not n.num_checks:
            return p
        if n.has_min and not (x >= n.dmin):
            return NULL
        if n.has_xmin and not (x > n.dxmin):
            return NULL
        if n.has_max and not (x <= n.dmax):
            return NULL
        if n.has_xmax and not (x < n.dxmax):
            return NULL
        if n.dmult != 0.0 and fmod(x, n.dmult) != 0.0:
            return NULL
        return p
    # `integer`
    if not n.num_checks:
        return p
    if num.nint <= 18:
        for i in range(num.nint):
            m = m * 10 + (num.digits[i] - 48)
        if not _int64_ok(n, -<int64_t>m if num.neg else <int64_t>m):
            return NULL
        return p
    if num.nint == 19:
        for i in range(num.nint):
            m = m * 10 + (num.digits[i] - 48)
        if m <= 9223372036854775807ULL:
            if not _int64_ok(n, -<int64_t>m if num.neg else <int64_t>m):
                return NULL
            return p
        if num.neg and m == 9223372036854775808ULL:
            if not _int64_ok(n, INT64_MIN):
                return NULL
            return p
    if not _bigint_ok(c, n, s, p):
        return NULL
    return p


cdef const uchar* _array(Ctx* c, NodeC* n, const uchar* p, int depth) noexcept:
    cdef const uchar* end = c.keys.end
    cdef NodeC* items = n.items
    cdef Py_ssize_t count = 0
    if depth >= MAX_DEPTH:
        return NULL
    p = _ws(p + 1, end)
    if p < end and p[0] == 93:
        p += 1
    else:
        while True:
            if n.max_items >= 0 and count >= n.max_items:
                return NULL
            p = _val(c, items, p, depth + 1)
            if p == NULL:
                return NULL
            count += 1
            p = _ws(p, end)
            if p >= end:
                return NULL
            if p[0] == 44:
                p = _ws(p + 1, end)
                continue
            if p[0] == 93:
                p += 1
                break
            return NULL
    if count < n.min_items:
        return NULL
    return p


cdef const uchar* _members(Ctx* c, NodeC* n, KeyFrame* f, uint64_t* seen0, Py_ssize_t wbase, const uchar* p, int depth) noexcept:
    cdef const uchar* end = c.keys.end
    cdef const uchar* q
    cdef const uchar* kp
    cdef KEntry* e
    cdef NodeC* child
    cdef Py_ssize_t kl, off = 0, count = 0, i
    cdef uint64_t bit
    cdef uint64_t* w
    cdef int flags
    p = _ws(p + 1, end)
    if p < end and p[0] == 125:
        p += 1
    else:
        while True:
            if p >= end or p[0] != 34:
                return NULL
            flags = 0
            q = _str_end(p + 1, end, &flags)
            if q == NULL:
                return NULL
            if flags & S_ESC:
                if _need_arena(c, q - p) < 0:
                    return NULL
                off = c.keys.arena_len
                kl = unescape(p + 1, q, c.keys.arena + off)
                kp = c.keys.arena + off
                e = _kt_find(&n.props, kp, kl, kp + kl)
            else:
                kp = p + 1
                kl = q - kp
                e = _kt_find(&n.props, kp, kl, end)
            if e != NULL:
                bit = 1ULL << (e.slot & 63)
                w = seen0 if n.nwords <= 1 else c.words + wbase + (e.slot >> 6)
                if w[0] & bit:
                    return NULL  # a repeated key
                w[0] |= bit
                child = e.child
            else:
                child = n.additional
                if child.mode == M_SIMPLE and child.kinds == 0:
                    return NULL  # additionalProperties: false
                if flags & S_ESC:
                    c.keys.arena_len += kl  # keep the decoded key: its span points there
                if _add_key(c, f, kp, kl, (flags & S_ESC) != 0) < 0:
                    return NULL
            p = _ws(q + 1, end)
            if p >= end or p[0] != 58:
                return NULL
            p = _val(c, child, _ws(p + 1, end), depth + 1)
            if p == NULL:
                return NULL
            count += 1
            p = _ws(p, end)
            if p >= end:
                return NULL
            if p[0] == 44:
                p = _ws(p + 1, end)
                continue
            if p[0] == 125:
                p += 1
                break
            return NULL
    if n.nreq:
        if n.nwords <= 1:
            if (seen0[0] & n.req[0]) != n.req[0]:
                return NULL
        else:
            w = c.words + wbase
            for i in range(n.nwords):
                if (w[i] & n.req[i]) != n.req[i]:
                    return NULL
    if count < n.min_props or (n.max_props >= 0 and count > n.max_props):
        return NULL
    return p


cdef const uchar* _object(Ctx* c, NodeC* n, const uchar* p, int depth) noexcept:
    cdef KeyFrame f
    cdef uint64_t seen0 = 0
    cdef Py_ssize_t wbase = c.nwords
    if depth >= MAX_DEPTH:
        return NULL
    if n.nwords > 1:
        if wbase + n.nwords > c.words_cap and grow(<void**>&c.words, &c.words_cap, wbase + n.nwords, sizeof(uint64_t), c.local_words) < 0:
            c.err = ERR_MEMORY
            return NULL
        memset(c.words + wbase, 0, n.nwords * sizeof(uint64_t))
        c.nwords = wbase + n.nwords
    keys_open(&c.keys, &f)
    p = _members(c, n, &f, &seen0, wbase, p, depth)
    keys_close(&c.keys, &f)
    c.nwords = wbase
    return p


cdef const uchar* _raw_string_end(const uchar* q, const uchar* end) noexcept nogil:
    """The closing quote of a string (content at q), escapes skipped, nothing checked."""
    while True:
        q = fc_special(q, end)
        if q >= end:
            return NULL
        if q[0] == 34:
            return q
        if q[0] == 92:
            if end - q < 2:
                return NULL
            q += 2
        else:
            q += 1


cdef const uchar* _raw_skip(const uchar* p, const uchar* end) noexcept nogil:
    """Past the value at p by bracket counting, nothing checked (the main pass checks)."""
    cdef Py_ssize_t depth = 0
    cdef const uchar* q = p
    cdef uchar ch
    if p >= end:
        return NULL
    ch = p[0]
    if ch == 34:
        q = _raw_string_end(p + 1, end)
        if q == NULL:
            return NULL
        return q + 1
    if ch == 123 or ch == 91:
        while p < end:
            ch = p[0]
            if ch == 34:
                q = _raw_string_end(p + 1, end)
                if q == NULL:
                    return NULL
                p = q + 1
                continue
            if ch == 123 or ch == 91:
                depth += 1
            elif ch == 125 or ch == 93:
                depth -= 1
                if depth == 0:
                    return p + 1
            p += 1
        return NULL
    while p < end and not _DELIM[p[0]]:
        p += 1
    return p if p > q else NULL


cdef NodeC* _find_variant(Ctx* c, NodeC* n, const uchar* p) noexcept:
    """The variant the object at p names in its tag member; NULL: no such member or tag."""
    cdef const uchar* end = c.keys.end
    cdef const uchar* q
    cdef const uchar* s
    cdef Py_ssize_t ln
    cdef int flags
    cdef KEntry* e
    p = _ws(p + 1, end)
    while True:
        if p >= end or p[0] != 34:
            return NULL
        flags = 0
        q = _str_end(p + 1, end, &flags)
        if q == NULL:
            return NULL
        s = p + 1
        ln = q - s
        if flags & S_ESC:
            if _need_scratch(c, ln) < 0:
                return NULL
            ln = unescape(s, q, c.scratch)
            s = c.scratch
        p = _ws(q + 1, end)
        if p >= end or p[0] != 58:
            return NULL
        p = _ws(p + 1, end)
        if ln == n.tag_len and memcmp(s, n.tag_key, ln) == 0:
            if p >= end or p[0] != 34:
                return NULL  # the tag must be a string
            flags = 0
            q = _str_end(p + 1, end, &flags)
            if q == NULL:
                return NULL
            s = p + 1
            ln = q - s
            if flags & S_ESC:
                if _need_scratch(c, ln) < 0:
                    return NULL
                ln = unescape(s, q, c.scratch)
                s = c.scratch
            e = _kt_find(&n.tags, s, ln, s + ln)
            return NULL if e == NULL else e.child
        p = _raw_skip(p, end)
        if p == NULL:
            return NULL
        p = _ws(p, end)
        if p >= end or p[0] != 44:
            return NULL
        p = _ws(p + 1, end)


cdef const uchar* _union(Ctx* c, NodeC* n, const uchar* p, int depth) noexcept:
    cdef int k = _CLASS[p[0]] - 1
    cdef Py_ssize_t count, i, hits = 0
    cdef const uchar* q
    cdef const uchar* found = NULL
    if k < 0:
        return NULL
    count = n.ncands[k]
    if count == 0:
        return NULL
    if count == 1:
        return _val(c, n.cands[k][0], p, depth)
    # Try each branch on the same bytes. A failed try leaves no trace: every object
    # resets the key spans, the arena and the bitsets it used on the way out. The
    # compiler bounds the re-reads: no such union is recursive, and the branch counts
    # multiplied along any chain of nested ones stay small (fastpath.MAX_REREADS).
    for i in range(count):
        q = _val(c, n.cands[k][i], p, depth)
        if c.err:
            return NULL
        if q != NULL:
            if not n.one_of:
                return q
            hits += 1
            found = q
    return found if hits == 1 else NULL


cdef const uchar* _all_of(Ctx* c, NodeC* n, const uchar* p, int depth) noexcept:
    # Each branch reads the same value: a read leaves no trace (see _union), and the
    # compiler bounds the re-reads as it bounds a union's.
    cdef const uchar* q = NULL
    cdef Py_ssize_t i
    for i in range(n.n_all_of):
        q = _val(c, n.all_of[i], p, depth)
        if q == NULL:
            return NULL
    return q


cdef const uchar* _val(Ctx* c, NodeC* n, const uchar* p, int depth) noexcept:
    cdef uchar ch
    cdef NodeC* v
    if p >= c.keys.end:
        return NULL
    ch = p[0]
    if n.mode != M_SIMPLE:
        if n.mode == M_ANY:
            return _skip(c, p, depth)
        if n.mode == M_UNION:
            return _union(c, n, p, depth)
        if n.mode == M_ALL:
            return _all_of(c, n, p, depth)
        if ch != 123:
            return NULL
        v = _find_variant(c, n, p)
        if v == NULL:
            return NULL
        return _object(c, v, p, depth)
    if ch == 34:
        if not (n.kinds & K_STR):
            return NULL
        return _string(c, n, p)
    if ch == 123:
        if not (n.kinds & K_OBJ):
            return NULL
        if n.obj_plain:
            return _skip_object(c, p, depth)
        return _object(c, n, p, depth)
    if ch == 91:
        if not (n.kinds & K_ARR):
            return NULL
        return _array(c, n, p, depth)
    if ch == 45 or 48 <= ch <= 57:
        return _number(c, n, p)
    if ch == 116:
        return _literal(p, c.keys.end, b"true", 4) if n.kinds & K_TRUE else NULL
    if ch == 102:
        return _literal(p, c.keys.end, b"false", 5) if n.kinds & K_FALSE else NULL
    if ch == 110:
        return _literal(p, c.keys.end, b"null", 4) if n.kinds & K_NULL else NULL
    return NULL


# -- building ------------------------------------------------------------------------------

cdef NodeC* _ANYC = NULL  # the ANY singleton's, set once it exists

cdef int _kt_build(KTable* t, list items) except -1:
    """items: (key bytes, slot, NodeC address or 0). The bytes must outlive the table."""
    cdef Py_ssize_t n = len(items), size = 4, i
    cdef int bits = 2
    cdef uint64_t j
    cdef bytes key
    cdef KEntry* e
    while size < 2 * n:
        size *= 2
        bits += 1
    t.n = 0
    if n == 0:
        return 0
    t.entries = <KEntry*>malloc(n * sizeof(KEntry))
    t.index = <int32_t*>malloc(size * sizeof(int32_t))
    if t.entries == NULL or t.index == NULL:
        raise MemoryError()
    for i in range(size):
        t.index[i] = -1
    t.mask = size - 1
    t.shift = 64 - bits
    for i in range(n):
        key, slot, child = items[i]
        e = &t.entries[i]
        e.key = <const uchar*>PyBytes_AS_STRING(key)
        e.len = PyBytes_GET_SIZE(key)
        e.tag = key_tag(e.key, e.len, e.key + e.len)
        e.slot = slot
        e.child = <NodeC*><size_t>child
        if _kt_find(t, e.key, e.len, e.key + e.len) != NULL:
            raise ValueError(f"duplicate key {key!r}")
        t.n = i + 1
        j = _kt_hash(e.tag, e.len) >> t.shift
        while t.index[j] >= 0:
            j = (j + 1) & t.mask
        t.index[j] = <int32_t>i
    return 0


cdef void _kt_free(KTable* t) noexcept:
    free(t.entries)
    free(t.index)
    t.entries = NULL
    t.index = NULL
    t.n = 0


cdef inline Py_ssize_t _opt_size(object v) except -2:
    if v is None:
        return -1
    if v < 0:
        raise ValueError("a negative bound")
    return min(<object>v, 2**62)


cdef class Node:
    """One schema node, compiled. Build with the setters (fastpath.py), then hand every
    Node to a Program: a Node refers to its children by address, not by reference."""

    cdef NodeC c
    cdef list _keep     # what c points into: bytes, tuples, ints (never a Node)

    def __cinit__(self):
        memset(&self.c, 0, sizeof(NodeC))
        self.c.mode = M_SIMPLE
        self.c.min_len = -1
        self.c.max_len = -1
        self.c.max_items = -1
        self.c.max_props = -1
        self._keep = []

    def __dealloc__(self):
        cdef Py_ssize_t i
        for i in range(self.c.npats):
            free(self.c.pats[i].items)
        free(self.c.pats)
        _kt_free(&self.c.enum_strs)
        free(self.c.enum_ints)
        _kt_free(&self.c.props)
        free(self.c.req)
        for i in range(NCLASS):
            free(self.c.cands[i])
        free(self.c.all_of)
        _kt_free(&self.c.tags)

    @property
    def kinds(self) -> int:
        return self.c.kinds

    @property
    def mode(self) -> int:
        return self.c.mode

    @property
    def configured(self) -> bool:
        return self.c.configured

    @property
    def backtracks(self) -> bool:
        """A union or an allOf that may read an array or an object more than once."""
        if self.c.mode == M_ALL:
            return self.c.n_all_of > 1 and (self.c.kinds & (K_ARR | K_OBJ)) != 0
        return self.c.mode == M_UNION and (self.c.ncands[4] > 1 or self.c.ncands[5] > 1)

    @property
    def tries(self) -> int:
        """How many times a union may read one array or object: its branches of that kind."""
        if self.c.mode == M_ALL:
            return max(1, self.c.n_all_of)
        if self.c.mode != M_UNION:
            return 1
        return max(1, self.c.ncands[4], self.c.ncands[5])

    def set_any(self):
        """Anything: only its syntax and duplicate keys are checked."""
        self.c.mode = M_ANY
        self.c.kinds = K_ALL
        self.c.configured = True

    def set_kinds(self, int kinds):
        """The JSON kinds this node accepts (K_* bits); constraints come from the other setters."""
        self.c.mode = M_SIMPLE
        self.c.kinds = kinds & K_ALL
        self.c.configured = True
        self.c.additional = _ANYC
        self.c.items = _ANYC
        self.c.obj_plain = True

    def set_string(self, min_length, max_length, int fmt, patterns):
        """patterns: [(re.Pattern, simple)], simple = None or (anchored, [(lo, hi, min, max)])."""
        cdef Py_ssize_t i, j, n = len(patterns)
        cdef SPat* sp
        self.c.min_len = _opt_size(min_length)
        self.c.max_len = _opt_size(max_length)
        self.c.fmt = fmt
        if n:
            self.c.pats = <SPat*>malloc(n * sizeof(SPat))
            if self.c.pats == NULL:
                raise MemoryError()
            memset(self.c.pats, 0, n * sizeof(SPat))
            self.c.npats = n
            searches = tuple(pattern.search for pattern, _ in patterns)
            self._keep.append(searches)
            self.c.searches = <PyObject*>searches
            for i in range(n):
                simple = patterns[i][1]
                if simple is None:
                    continue
                anchored, items = simple
                sp = &self.c.pats[i]
                sp.anchored = bool(anchored)
                sp.items = <SItem*>malloc(max(1, len(items)) * sizeof(SItem))
                if sp.items == NULL:
                    raise MemoryError()
                sp.n = len(items)
                for j in range(sp.n):
                    lo, hi, low, high = items[j]
                    sp.items[j].lo = lo
                    sp.items[j].hi = hi
                    sp.items[j].min = low
                    sp.items[j].max = -1 if high is None else high
        self._update_str()

    def set_number(self, minimum, exclusive_minimum, maximum, exclusive_maximum, multiple_of):
        """`number` bounds as floats (None: absent); multiple_of checked as msgspec does,
        fmod(x, m) == 0."""
        if minimum is not None:
            self.c.has_min = True
            self.c.dmin = minimum
        if exclusive_minimum is not None:
            self.c.has_xmin = True
            self.c.dxmin = exclusive_minimum
        if maximum is not None:
            self.c.has_max = True
            self.c.dmax = maximum
        if exclusive_maximum is not None:
            self.c.has_xmax = True
            self.c.dxmax = exclusive_maximum
        if multiple_of is not None:
            if not multiple_of > 0:
                raise ValueError("multipleOf must be positive")
            self.c.dmult = multiple_of
        self._update_num()

    def set_integer(self, low, high, multiple_of):
        """`integer` bounds, inclusive, as Python ints (None: absent); multiple_of an int > 0
        that fits in int64."""
        if low is not None:
            low = int(low)
            self._keep.append(low)
            self.c.py_ilo = <PyObject*>low
            if low > 9223372036854775807:
                self.c.ilo_state = 2
            elif low >= -9223372036854775808:
                self.c.ilo_state = 1
                self.c.ilo = low
            else:
                self.c.ilo_state = 3
        if high is not None:
            high = int(high)
            self._keep.append(high)
            self.c.py_ihi = <PyObject*>high
            if high < -9223372036854775808:
                self.c.ihi_state = 2
            elif high <= 9223372036854775807:
                self.c.ihi_state = 1
                self.c.ihi = high
            else:
                self.c.ihi_state = 3
        if multiple_of is not None:
            multiple_of = int(multiple_of)
            if not 0 < multiple_of <= 9223372036854775807:
                raise ValueError("multipleOf out of range")
            if multiple_of > 1:
                self.c.imult = multiple_of
        self._update_num()

    def set_enum(self, strings, integers):
        """The allowed strings (UTF-8 bytes) and integers (int64), or None for no such
        restriction of that kind; null and booleans are restricted by the kinds."""
        cdef Py_ssize_t i
        if strings is not None:
            strings = [bytes(s) for s in strings]
            self._keep.append(strings)
            _kt_build(&self.c.enum_strs, [(s, i, 0) for i, s in enumerate(dict.fromkeys(strings))])
            self.c.has_str_enum = True
        if integers is not None:
            values = list(dict.fromkeys(int(v) for v in integers))
            self.c.enum_ints = <int64_t*>malloc(max(1, len(values)) * sizeof(int64_t))
            if self.c.enum_ints == NULL:
                raise MemoryError()
            for i in range(len(values)):
                self.c.enum_ints[i] = values[i]
            self.c.n_enum_ints = len(values)
            self.c.has_int_enum = True
        self._update_str()
        self._update_num()

    def set_array(self, Node items not None, min_items, max_items):
        self.c.items = &items.c
        self.c.min_items = max(0, _opt_size(min_items))
        self.c.max_items = _opt_size(max_items)

    def set_object(self, properties, required, Node additional not None, min_properties, max_properties):
        """properties: [(key bytes, Node)]; required: keys among them; additional: the node
        of every other member (NEVER: none allowed)."""
        cdef Py_ssize_t i, slot, n = len(properties)
        cdef Node child
        keys = [bytes(k) for k, _ in properties]
        self._keep.append(keys)
        items = []
        for i in range(n):
            child = properties[i][1]
            items.append((keys[i], i, <size_t>&child.c))
        _kt_build(&self.c.props, items)
        self.c.nwords = (n + 63) >> 6
        if self.c.nwords:
            self.c.req = <uint64_t*>malloc(self.c.nwords * sizeof(uint64_t))
            if self.c.req == NULL:
                raise MemoryError()
            memset(self.c.req, 0, self.c.nwords * sizeof(uint64_t))
        index = {k: i for i, k in enumerate(keys)}
        for key in dict.fromkeys(bytes(k) for k in required):
            slot = index[key]
            self.c.req[slot >> 6] |= 1ULL << (slot & 63)
            self.c.nreq += 1
        self.c.additional = &additional.c
        self.c.min_props = max(0, _opt_size(min_properties))
        self.c.max_props = _opt_size(max_properties)
        self.c.obj_plain = (
            n == 0 and additional.c.mode == M_ANY and self.c.min_props == 0 and self.c.max_props < 0
        )

    def set_union(self, branches, bint one_of, bint containers=False):
        """anyOf / oneOf: each value goes to the branches accepting its JSON kind, tried in
        turn when several do. Raises ValueError when two branches accept arrays, or
        objects, unless `containers` (the caller then keeps such unions from nesting:
        see `backtracks`)."""
        cdef Py_ssize_t k, i, count
        cdef Node b
        cdef int kinds = 0
        nodes = list(branches)
        by_class = []
        for k in range(NCLASS):
            chosen = []
            for b in nodes:
                if not b.c.configured:
                    raise ValueError("a branch is not built yet")
                if b.c.kinds & _CLASS_KINDS[k]:
                    chosen.append(b)
            if len(chosen) > 1 and k >= 4 and not containers:
                raise ValueError("two branches accept the same container kind")
            by_class.append(chosen)
        for b in nodes:
            kinds |= b.c.kinds
        self.c.mode = M_UNION
        self.c.configured = True
        self.c.one_of = one_of
        self.c.kinds = kinds
        for k in range(NCLASS):
            chosen = by_class[k]
            self.c.ncands[k] = len(chosen)
            if chosen:
                self.c.cands[k] = <NodeC**>malloc(len(chosen) * sizeof(NodeC*))
                if self.c.cands[k] == NULL:
                    raise MemoryError()
                for i in range(len(chosen)):
                    b = chosen[i]
                    self.c.cands[k][i] = &b.c

    def set_all(self, branches):
        """allOf: a value must pass every branch, each reading it in turn (for an allOf
        whose branches do not merge into one node). Raises ValueError on an empty list
        or a branch not built yet (an allOf that reaches itself reads nothing)."""
        cdef Py_ssize_t i
        cdef Node b
        cdef int kinds = K_ALL
        nodes = list(branches)
        if not nodes:
            raise ValueError("an allOf without branches")
        for b in nodes:
            if not b.c.configured:
                raise ValueError("a branch is not built yet")
            kinds &= b.c.kinds
        self.c.all_of = <NodeC**>malloc(len(nodes) * sizeof(NodeC*))
        if self.c.all_of == NULL:
            raise MemoryError()
        for i in range(len(nodes)):
            b = nodes[i]
            self.c.all_of[i] = &b.c
        self.c.n_all_of = len(nodes)
        self.c.mode = M_ALL
        self.c.kinds = kinds
        self.c.configured = True

    def set_tagged(self, bytes tag not None, variants):
        """A discriminated union: objects only, checked against the variant their `tag`
        member (a string) names. variants: [(tag value bytes, Node)]."""
        cdef Node v
        self._keep.append(tag)
        self.c.mode = M_TAGGED
        self.c.kinds = K_OBJ
        self.c.configured = True
        self.c.tag_key = <const uchar*>PyBytes_AS_STRING(tag)
        self.c.tag_len = PyBytes_GET_SIZE(tag)
        values = [bytes(t) for t, _ in variants]
        self._keep.append(values)
        items = []
        for i in range(len(values)):
            v = variants[i][1]
            if v.c.mode != M_SIMPLE or not (v.c.kinds & K_OBJ):
                raise ValueError("a variant that is not an object node")
            items.append((values[i], i, <size_t>&v.c))
        _kt_build(&self.c.tags, items)

    def _update_str(self):
        self.c.str_checks = (
            self.c.min_len >= 0 or self.c.max_len >= 0 or self.c.fmt != F_NONE
            or self.c.npats > 0 or self.c.has_str_enum
        )

    def _update_num(self):
        self.c.num_checks = (
            self.c.has_min or self.c.has_xmin or self.c.has_max or self.c.has_xmax
            or self.c.dmult != 0.0 or self.c.ilo_state != 0 or self.c.ihi_state != 0
            or self.c.imult != 0 or self.c.has_int_enum
        )

    def children(self):
        """The addresses of the nodes this one refers to (for Program's check)."""
        cdef Py_ssize_t i, k
        out = []
        if self.c.items != NULL:
            out.append(<size_t>self.c.items)
        if self.c.additional != NULL:
            out.append(<size_t>self.c.additional)
        for i in range(self.c.props.n):
            out.append(<size_t>self.c.props.entries[i].child)
        for i in range(self.c.tags.n):
            out.append(<size_t>self.c.tags.entries[i].child)
        for k in range(NCLASS):
            for i in range(self.c.ncands[k]):
                out.append(<size_t>self.c.cands[k][i])
        for i in range(self.c.n_all_of):
            out.append(<size_t>self.c.all_of[i])
        return out

    def address(self):
        return <size_t>&self.c


ANY = Node()
ANY.set_any()
_ANYC = &(<Node>ANY).c
NEVER = Node()
NEVER.set_kinds(0)

KIND_NULL = K_NULL
KIND_TRUE = K_TRUE
KIND_FALSE = K_FALSE
KIND_INTEGER = K_INT
KIND_FLOAT = K_FLOAT
KIND_STRING = K_STR
KIND_ARRAY = K_ARR
KIND_OBJECT = K_OBJ
KIND_ALL = K_ALL
MODE_SIMPLE = M_SIMPLE
MODE_ANY = M_ANY
MODE_UNION = M_UNION
MODE_TAGGED = M_TAGGED
MODE_ALL = M_ALL
FORMATS = {"date-time": F_DATETIME, "date": F_DATE, "time": F_TIME, "uuid": F_UUID, "byte": F_BYTE}
DEPTH_LIMIT = MAX_DEPTH


cdef class Program:
    """A compiled schema: `check(data)` is True iff data is one JSON document, valid
    against the schema, with no repeated object key."""

    cdef Node root
    cdef tuple nodes

    def __init__(self, Node root not None, nodes):
        """nodes: every Node reachable from root (they stay alive as long as the Program)."""
        self.root = root
        self.nodes = tuple(nodes)
        known = {(<Node>n).address() for n in self.nodes}
        known.add((<Node>ANY).address())
        known.add((<Node>NEVER).address())
        if root.address() not in known:
            raise ValueError("the root is not among the nodes")
        for n in self.nodes:
            if not (<Node>n).c.configured:
                raise ValueError("a node was never built")
            for child in (<Node>n).children():
                if child not in known:
                    raise ValueError("a node refers to a node the Program does not hold")

    @property
    def size(self) -> int:
        """How many nodes the program holds."""
        return len(self.nodes)

    @cython.always_allow_keywords(False)
    def check(self, data):
        """True iff `data` (bytes or a contiguous buffer) is one valid JSON document for
        the schema, with no repeated object key anywhere."""
        cdef Py_buffer view
        if PyBytes_CheckExact(data):
            return self._check(<const uchar*>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            return self._check(<const uchar*>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)

    cdef bint _check(self, const uchar* buf, Py_ssize_t size) except -1:
        cdef Ctx c
        cdef const uchar* p
        cdef bint ok
        _ctx_init(&c, buf, size)
        try:
            p = _val(&c, &self.root.c, _ws(c.keys.data, c.keys.end), 0)
            ok = p != NULL and _ws(p, c.keys.end) == c.keys.end
            if c.err == ERR_MEMORY:
                raise MemoryError()
            return ok
        finally:
            _ctx_free(&c)


cdef int program_check(object program, const unsigned char* buf, Py_ssize_t size) except -1:
    """`program.check(buf[:size])` from C: 1 valid, 0 not; -2 when `program` is not a
    Program (the caller calls its `check`)."""
    if type(program) is not Program:
        return -2
    return (<Program>program)._check(buf, size)


def _key_summary(bytes data not None):
    """_jsonkeys.key_summary through this module's cimports (tests: one process key)."""
    cdef const uchar* p = <const uchar*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    return key_hash(p, n), key_tag(p, n, p + n)
