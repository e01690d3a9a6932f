# -- the client's address: real-ip (behind trusted proxies), ip-restriction ---------------
#
# Addresses are 16 bytes, IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d), so one
# table matches both and an IPv4 rule matches a mapped address. Text is
# parsed by inet_pton, in C, at most once per hop and request: real-ip leaves
# the client's parsed form in `req.client_addr` for ip-restriction.


cdef extern from "arpa/inet.h" nogil:
    int inet_pton(int af, const char* src, void* dst)

cdef extern from "sys/socket.h" nogil:
    int AF_INET
    int AF_INET6


cdef bint _parse_ip(const char* p, Py_ssize_t n, unsigned char* out) noexcept nogil:
    """A bare IPv4 or IPv6 address (n bytes of text) into `out` (16 bytes). An IPv6
    zone (`%eth0`) is left out: a rule can not name one."""
    cdef char buf[64]
    cdef const char* zone
    if n <= 0 or n >= 64:
        return False
    memcpy(buf, p, n)
    buf[n] = 0
    if memchr(buf, 58, n) != NULL:  # ':'
        zone = <const char*>memchr(buf, 37, n)  # '%'
        if zone != NULL:
            buf[zone - buf] = 0
        return inet_pton(AF_INET6, buf, out) == 1
    memset(out, 0, 10)
    out[10] = 0xFF
    out[11] = 0xFF
    return inet_pton(AF_INET, buf, out + 12) == 1


cdef inline bint _is_port(const char* p, Py_ssize_t n) noexcept nogil:
    """`:` and 1 to 5 digits."""
    cdef Py_ssize_t i
    if n < 2 or n > 6 or p[0] != 58:
        return False
    for i in range(1, n):
        if p[i] < 48 or p[i] > 57:
            return False
    return True


cdef bint _parse_hop(const char* p, Py_ssize_t n, unsigned char* out, Py_ssize_t* at,
                     Py_ssize_t* size) noexcept nogil:
    """One hop as proxies write it: `192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`,
    `[2001:db8::1]`, `[2001:db8::1]:80`, maybe quoted (Forwarded), OWS around.
    `at`, `size`: where the address itself is in `p`."""
    cdef Py_ssize_t a = 0, b = n
    cdef const char* mark
    while a < b and (p[a] == 32 or p[a] == 9):
        a += 1
    while b > a and (p[b - 1] == 32 or p[b - 1] == 9):
        b -= 1
    if b - a >= 2 and p[a] == 34 and p[b - 1] == 34:  # a quoted-string
        a += 1
        b -= 1
    if a < b and p[a] == 91:  # '[': IPv6, maybe a port after
        mark = <const char*>memchr(p + a, 93, b - a)
        if mark == NULL:
            return False
        if (mark - p) + 1 < b and not _is_port(mark + 1, b - (mark - p) - 1):
            return False
        a += 1
        b = mark - p
        if memchr(p + a, 58, b - a) == NULL:
            return False  # brackets hold IPv6 only
    else:
        mark = <const char*>memchr(p + a, 58, b - a)
        if mark != NULL and memchr(mark + 1, 58, b - (mark - p) - 1) == NULL:
            # One colon: IPv4 and a port (IPv6 has two or more).
            if not _is_port(mark, b - (mark - p)):
                return False
            b = mark - p
    at[0] = a
    size[0] = b - a
    return _parse_ip(p + a, b - a, out)


cdef bint _client_parsed(Request req):
    """`req.client_addr` holds the client's address (parsed now if it was not yet)."""
    cdef bytes client
    if req.client_parsed == 0:
        client = req.client_ip
        if client is not None and _parse_ip(PyBytes_AS_STRING(client), len(client), req.client_addr):
            req.client_parsed = 1
        else:
            req.client_parsed = -1  # a Unix socket's peer: no address
    return req.client_parsed > 0


@cython.final
cdef class CidrSet:
    """Networks (IPv4 and IPv6), compiled to masks: `address & mask == network` in C.

    Made from [(16 address bytes, prefix length 0..128)] (IPv4 networks mapped:
    10.0.0.0/8 is ::ffff:10.0.0.0/104; builtin/ip.py does that). A linear scan:
    two 64-bit compares per network, so a few thousand networks cost a few
    microseconds; nginx's geo module is the tool for more.
    """

    cdef uint64_t* table  # per network: the network's two words, then the mask's
    cdef readonly Py_ssize_t size

    def __cinit__(self, networks):
        cdef unsigned char net[16]
        cdef unsigned char mask[16]
        cdef Py_ssize_t i, k, bits
        cdef bytes packed
        networks = list(networks)
        self.size = len(networks)
        self.table = <uint64_t*>malloc(max(self.size, 1) * 4 * sizeof(uint64_t))
        if self.table == NULL:
            raise MemoryError()
        for i, (packed, length) in enumerate(networks):
            if len(packed) != 16 or not 0 <= length <= 128:
                raise ValueError(f"not a network: {packed!r}/{length}")
            for k in range(16):
                bits = min(8, max(0, length - 8 * k))
                mask[k] = (0xFF << (8 - bits)) & 0xFF
                net[k] = packed[k] & mask[k]
            # The same memcpy loads the address in has(): byte order does not matter.
            memcpy(&self.table[4 * i], net, 16)
            memcpy(&self.table[4 * i + 2], mask, 16)

    def __dealloc__(self):
        free(self.table)

    cdef bint has(self, const unsigned char* address) noexcept nogil:
        cdef uint64_t hi, lo
        cdef const uint64_t* t = self.table
        cdef Py_ssize_t i
        memcpy(&hi, address, 8)
        memcpy(&lo, address + 8, 8)
        for i in range(self.size):
            if (hi & t[2]) == t[0] and (lo & t[3]) == t[1]:
                return True
            t += 4
        return False

    def __contains__(self, address):
        """For tests and tools: an address as text (str or bytes) in one of the networks."""
        cdef unsigned char parsed[16]
        cdef bytes text = address.encode("ascii") if isinstance(address, str) else address
        if not _parse_ip(PyBytes_AS_STRING(text), len(text), parsed):
            raise ValueError(f"not an IP address: {address!r}")
        return self.has(parsed)

    def __len__(self):
        return self.size


def parse_hop(hop):
    """For tests: a hop as real-ip reads it -> (the address text, its 16 bytes), or None."""
    cdef unsigned char parsed[16]
    cdef Py_ssize_t at = 0, size = 0
    cdef bytes text = hop.encode("latin-1") if isinstance(hop, str) else hop
    if not _parse_hop(PyBytes_AS_STRING(text), len(text), parsed, &at, &size):
        return None
    return text[at:at + size].decode("ascii"), bytes(parsed[:16])


cdef enum:
    # Where real-ip reads the hops.
    SRC_X_FORWARDED_FOR = 1  # the data plane keeps it apart: req.forwarded_for
    SRC_FORWARDED = 2  # RFC 7239 `for=` parameters
    SRC_OTHER = 3  # another header (X-Real-IP...): one address, or a list like X-Forwarded-For


cdef class RealIpStep(Step):
    """The client's address behind trusted proxies, into `req.client_ip` (and parsed).

    Only a peer in `trusted` is believed. The hops it reports are walked right
    to left (the rightmost was written by the nearest proxy) past every
    trusted one (nginx's real_ip_recursive); the first untrusted hop is the
    client. A hop that is not an address (`unknown`, an obfuscated Forwarded
    identifier, garbage) ends the walk: the client is the last address reached.
    Without `recursive`, the rightmost hop is the client, trusted or not.
    """

    cdef CidrSet trusted
    cdef int source
    cdef bytes header  # lower case (SRC_OTHER)
    cdef bint recursive

    def __init__(self, CidrSet trusted, str header, bint recursive, *, str name="real-ip",
                 int priority=10000, bint fail_open=False):
        Step.__init__(self, name, PHASE_REWRITE, priority=priority, fail_open=fail_open,
                      reads_envelope=False)
        self.trusted = trusted
        self.recursive = recursive
        lower = header.lower()
        self.header = lower.encode("latin-1")
        if lower == "x-forwarded-for":
            self.source = SRC_X_FORWARDED_FOR
        elif lower == "forwarded":
            self.source = SRC_FORWARDED
        else:
            self.source = SRC_OTHER

    cdef object on_request(self, ClientProtocol conn, Request req):
        if not _client_parsed(req) or not self.trusted.has(req.client_addr):
            return None  # the peer is the client: whatever it says of others is its word
        if self.source == SRC_X_FORWARDED_FOR:
            if req.forwarded_for is not None:
                self._walk_list(req, <bytes>req.forwarded_for)
        elif self.source == SRC_FORWARDED:
            value = _joined(req.lines, b"forwarded")
            if value is not None:
                self._walk_forwarded(req, <bytes>value)
        else:
            value = _joined(req.lines, self.header)
            if value is not None:
                self._walk_list(req, <bytes>value)
        return None

    cdef _walk_list(self, Request req, bytes value):
        """A comma-separated list of hops, right to left (empty elements skipped)."""
        cdef const char* p = PyBytes_AS_STRING(value)
        cdef Py_ssize_t end = len(value), start, at = 0, size = 0
        cdef unsigned char hop[16]
        while end > 0:
            start = end
            while start > 0 and p[start - 1] != 44:  # ','
                start -= 1
            if not _is_blank(p + start, end - start):
                if not _parse_hop(p + start, end - start, hop, &at, &size):
                    return
                req.client_ip = value[start + at:start + at + size]
                memcpy(req.client_addr, hop, 16)
                if not self.recursive or not self.trusted.has(hop):
                    return
            end = start - 1

    cdef _walk_forwarded(self, Request req, bytes value):
        cdef unsigned char hop[16]
        cdef Py_ssize_t at = 0, size = 0
        cdef bytes found
        for found in reversed(_forwarded_for(value)):
            if found is None or not _parse_hop(PyBytes_AS_STRING(found), len(found), hop, &at, &size):
                return
            req.client_ip = found[at:at + size]
            memcpy(req.client_addr, hop, 16)
            if not self.recursive or not self.trusted.has(hop):
                return


cdef inline bint _is_blank(const char* p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if p[i] != 32 and p[i] != 9:
            return False
    return True


cdef list _forwarded_for(bytes value):
    """The `for` parameter of each element of a Forwarded field (RFC 7239), in order (None
    for an element without one), quotes kept: `for="[2001:db8::1]:80"`; a comma or a
    semicolon inside a quoted-string is part of it."""
    cdef const char* p = PyBytes_AS_STRING(value)
    cdef Py_ssize_t n = len(value), i = 0, start, name_end, value_start
    cdef bint seen = False  # the element has a parameter (empty elements are skipped)
    cdef list out = []
    current = None
    while i <= n:
        while i < n and (p[i] == 32 or p[i] == 9):
            i += 1
        start = i
        while i < n and p[i] != 61 and p[i] != 59 and p[i] != 44:  # = ; ,
            i += 1
        name_end = i
        while name_end > start and (p[name_end - 1] == 32 or p[name_end - 1] == 9):
            name_end -= 1
        if name_end > start:
            seen = True
        if i < n and p[i] == 61:  # '='
            i += 1
            while i < n and (p[i] == 32 or p[i] == 9):
                i += 1
            value_start = i
            if i < n and p[i] == 34:  # a quoted-string, backslash escapes and all
                i += 1
                while i < n and p[i] != 34:
                    i += 2 if p[i] == 92 else 1
                i = min(i + 1, n)
            while i < n and p[i] != 59 and p[i] != 44:
                i += 1
            if name_end - start == 3 and strncasecmp(p + start, b"for", 3) == 0:
                current = value[value_start:i]
        if i >= n or p[i] == 44:  # the element ends
            if seen:
                out.append(current)
            current = None
            seen = False
        i += 1
    return out


def forwarded_for(value):
    """For tests: `_forwarded_for` of a str."""
    return [
        v.decode("latin-1") if v is not None else None
        for v in _forwarded_for(value.encode("latin-1"))
    ]


cdef class IpRestrictionStep(Step):
    """Allow or deny by the client's address (`req.client_ip`: after real-ip, the client
    behind trusted proxies). Deny wins; with an allow list, only those get in.

    A client without an address (a Unix socket's) matches no network: refused
    when there is an allow list, let in when there is only a deny list.
    """

    cdef CidrSet allow  # None: any
    cdef CidrSet deny  # None: none
    cdef tuple refused

    def __init__(self, CidrSet allow, CidrSet deny, int status, str message, *,
                 str name="ip-restriction", int priority=3500, bint fail_open=False):
        Step.__init__(self, name, PHASE_ACCESS, priority=priority, fail_open=fail_open,
                      reads_envelope=False)
        self.allow = allow
        self.deny = deny
        self.refused = problem_answer(status, message)

    cdef object on_request(self, ClientProtocol conn, Request req):
        if not _client_parsed(req):
            return self.refused if self.allow is not None else None
        if self.deny is not None and self.deny.has(req.client_addr):
            return self.refused
        if self.allow is not None and not self.allow.has(req.client_addr):
            return self.refused
        return None
