# -- cors: preflights answered at the edge, Allow-Origin on the route's responses ----------


cdef bytes _VARY_ORIGIN = b"Vary: Origin\r\n"
cdef str _PREFLIGHT_VARY = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"

# RFC 9110 token characters, and what a list of them may have between them.
cdef bytes _TOKEN_LIST_CHARS = (
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz, \t"
)
cdef bint _TOKEN_LIST_OK[256]
for _c in _TOKEN_LIST_CHARS:
    _TOKEN_LIST_OK[_c] = True


cdef bint _token_list(bytes value):
    """A comma-separated list of tokens (or one): safe to echo in a header."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(value)
    cdef Py_ssize_t i, n = len(value)
    if n == 0 or n > 1024:
        return False
    for i in range(n):
        if not _TOKEN_LIST_OK[p[i]]:
            return False
    return True


cdef bint _host_chars(const char* p, Py_ssize_t n) noexcept nogil:
    """What a pattern's `*` may stand for: one or more labels (a-z 0-9 -, dot-separated)."""
    cdef Py_ssize_t i
    cdef char c
    if n <= 0 or p[0] == 46 or p[n - 1] == 46:
        return False
    for i in range(n):
        c = p[i]
        if not (97 <= c <= 122 or 48 <= c <= 57 or c == 45 or (c == 46 and p[i - 1] != 46)):
            return False
    return True


cdef class CorsStep(Step):
    """CORS for a route: preflights answered here, Allow-Origin on its responses.

    Origins are exact (`https://app.example.com`), patterns with a `*` for one
    or more leading labels of the host (`https://*.example.com`: never
    `https://evil-example.com`, never `https://example.com`), `*` (any origin;
    never with credentials), or `null`, allowed only when listed literally
    (sandboxed frames and `file:` pages send it: `*` does not cover it).

    A preflight (`req.preflight`) from an allowed origin gets 204 with
    Allow-Origin, Allow-Methods (the methods its path has: `req.allowed`),
    Allow-Headers, Max-Age, Allow-Credentials; from another origin, 403. Any
    other response of the route, the gateway's own answers included, gets
    Allow-Origin (+ Credentials, Expose-Headers) when the origin is allowed,
    and `Vary: Origin` always; the upstream's own Access-Control-* headers are
    dropped (the route's policy is the gateway's).
    """

    cdef bint any_origin
    cdef bint allow_null
    cdef frozenset exact  # bytes
    cdef tuple patterns  # ((prefix, suffix), ...): the `*` is between them
    cdef bint credentials
    cdef str allow_headers  # ", "-joined; None: echo the preflight's Access-Control-Request-Headers
    cdef str max_age  # None: no Access-Control-Max-Age
    cdef bytes extra  # Allow-Credentials and Expose-Headers lines, for an allowed origin
    cdef tuple refused

    def __init__(self, origins, bint credentials, allow_headers, expose_headers, max_age, *,
                 str name="cors", int priority=3000, bint fail_open=False):
        Step.__init__(self, name, PHASE_ACCESS, priority=priority,
                      hooks=HOOK_REQUEST | HOOK_RESPONSE, fail_open=fail_open, reads_envelope=False)
        exact = set()
        patterns = []
        for origin in origins:
            if origin == "*":
                self.any_origin = True
            elif origin == "null":
                self.allow_null = True
            elif "*" in origin:
                prefix, _, suffix = origin.partition("*")
                patterns.append((prefix.encode("ascii"), suffix.encode("ascii")))
            else:
                exact.add(origin.encode("ascii"))
        if self.any_origin and credentials:
            raise ValueError("`*` with credentials: a browser refuses it")
        self.exact = frozenset(exact)
        self.patterns = tuple(patterns)
        self.credentials = credentials
        self.allow_headers = ", ".join(allow_headers) if allow_headers is not None else None
        self.max_age = str(max_age) if max_age is not None else None
        extra = b""
        if credentials:
            extra += b"Access-Control-Allow-Credentials: true\r\n"
        if expose_headers:
            extra += b"Access-Control-Expose-Headers: " + ", ".join(expose_headers).encode() + b"\r\n"
        self.extra = extra
        self.refused = problem_answer(
            403, "this origin may not use this route (CORS)", headers=(("Vary", "Origin"),)
        )

    cdef object _allowed(self, bytes origin):
        """What Allow-Origin says to `origin`: itself, `*`, or None (not allowed)."""
        cdef bytes prefix, suffix
        cdef Py_ssize_t n = len(origin)
        if origin == b"null":
            return origin if self.allow_null else None
        if self.any_origin:
            return b"*"
        if origin in self.exact:
            return origin
        for prefix, suffix in self.patterns:
            if (
                n > len(prefix) + len(suffix)
                and origin.startswith(prefix)
                and origin.endswith(suffix)
                and _host_chars(PyBytes_AS_STRING(origin) + len(prefix), n - len(prefix) - len(suffix))
            ):
                return origin
        return None

    cdef object _origin(self, Request req):
        """The request's Origin when it has exactly one, else None."""
        cdef Py_ssize_t count = 0
        cdef Py_ssize_t at = _find_header(req.lines, b"origin", &count)
        if count != 1:
            return None
        return (<bytes>req.lines[at + 2]).strip(b" \t")

    cdef object on_request(self, ClientProtocol conn, Request req):
        if not req.preflight:
            return None
        origin = self._origin(req)
        allowed = self._allowed(<bytes>origin) if origin is not None else None
        if allowed is None:
            return self.refused
        methods = req.allowed
        if not methods or "*" in methods:
            # A route of every method: the method asked about is allowed.
            asked = _joined(req.lines, b"access-control-request-method") or b""
            asked = asked.strip(b" \t")
            if not _token_list(asked) or b"," in asked:
                return self.refused
            methods = asked.decode("ascii")
        headers = [("Access-Control-Allow-Origin", (<bytes>allowed).decode("latin-1")),
                   ("Access-Control-Allow-Methods", methods)]
        if self.allow_headers is not None:
            if self.allow_headers:
                headers.append(("Access-Control-Allow-Headers", self.allow_headers))
        else:
            asked = _joined(req.lines, b"access-control-request-headers")
            if asked is not None and _token_list(asked.strip(b" \t")):
                headers.append(("Access-Control-Allow-Headers", asked.strip(b" \t").decode("ascii")))
        if self.credentials:
            headers.append(("Access-Control-Allow-Credentials", "true"))
        if self.max_age is not None:
            headers.append(("Access-Control-Max-Age", self.max_age))
        headers.append(("Vary", _PREFLIGHT_VARY))
        return (204, tuple(headers), b"")

    cdef list on_response(self, ClientProtocol conn, Request req, int status, list lines,
                          long long content_length):
        if req.preflight:
            return lines  # its answer is the request step's (or a refusal before it)
        lines = _drop_response_lines(lines, (), b"access-control-")
        origin = self._origin(req)
        if origin is not None:
            allowed = self._allowed(<bytes>origin)
            if allowed is not None:
                lines.append(b"Access-Control-Allow-Origin: " + <bytes>allowed + b"\r\n")
                if self.extra:
                    lines.append(self.extra)
        lines.append(_VARY_ORIGIN)
        return lines

    def allows(self, str origin):
        """For tests and tools: what Allow-Origin says to `origin` (None: not allowed)."""
        found = self._allowed(origin.encode("latin-1"))
        return found.decode("latin-1") if found is not None else None
