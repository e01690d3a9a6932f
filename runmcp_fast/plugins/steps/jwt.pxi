# -- bearer tokens: jwt-auth, and mcp-auth (the MCP authorization spec's resource server) --
#
# The token is looked up in a dict (by its tail, compared whole); a hit whose deadline
# (the token's exp + leeway, at most cache_ttl after it was checked) is still
# ahead of the wall clock costs no signature check. A miss asks the step's
# Verifier (plugins/jose.py), which answers the verified token, a Refused, or
# an awaitable when keys must be fetched first (the request then waits).


cdef inline double _wall() noexcept nogil:
    """Seconds since the epoch (CLOCK_REALTIME: a vDSO call, as monotonic())."""
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef enum:
    # PERF: the cache is looked up by the token's last bytes (its signature's), then the
    # whole token is compared: SipHash over a whole RS256 token (~600 bytes) costs ~0.5 µs,
    # over 32 bytes ~20 ns. Two tokens sharing a tail only share a slot: the second is a
    # miss (verified, then cached in the first one's place), never the first one's claims.
    CACHE_KEY = 32


cdef object _cached(dict cache, bytes buf, Py_ssize_t start, Py_ssize_t end):
    """The cached verification of the token `buf[start:end]` (None: not there, or past its
    deadline), found without copying the token out of its header."""
    cdef Py_ssize_t n = end - start
    key = buf[end - CACHE_KEY if n > CACHE_KEY else start:end]
    entry = cache.get(key)
    if entry is None:
        return None
    cdef bytes stored = <bytes>(<tuple>entry)[4]
    if len(stored) != n or memcmp(PyBytes_AS_STRING(buf) + start, PyBytes_AS_STRING(stored), n):
        return None
    if (<tuple>entry)[0] > _wall():
        return entry
    del cache[key]
    return None


cdef inline bint _bearer_span(bytes value, Py_ssize_t* start, Py_ssize_t* end):
    """Where the token is in an `Authorization: Bearer <token>` value; False for another
    scheme or an empty token."""
    cdef const char* p = PyBytes_AS_STRING(value)
    cdef Py_ssize_t i = 0, j = len(value)
    while i < j and (p[i] == 32 or p[i] == 9):
        i += 1
    while j > i and (p[j - 1] == 32 or p[j - 1] == 9):
        j -= 1
    if j - i <= 7 or strncasecmp(p + i, b"bearer ", 7) != 0:
        return False
    i += 7
    while i < j and (p[i] == 32 or p[i] == 9):
        i += 1
    start[0] = i
    end[0] = j
    return i < j


cdef enum:
    # Where the token was found.
    FROM_NONE = 0
    FROM_HEADER = 1
    FROM_COOKIE = 2
    FROM_QUERY = 3


cdef bytes _bearer(bytes value):
    """The token of an `Authorization: Bearer <token>` value; None for another scheme."""
    cdef Py_ssize_t start = 0, end = 0
    if _bearer_span(value, &start, &end):
        return value[start:end]
    return None


cdef tuple _cookie(list lines, bytes name):
    """(the value of cookie `name`, how many there are, the index of its Cookie line)."""
    cdef Py_ssize_t i
    value = None
    count = 0
    at = -1
    if lines is None:
        return None, 0, -1
    prefix = name + b"="
    for i in range(0, len(lines), 4):
        if not _name_is(<bytes>lines[i], b"cookie"):
            continue
        for part in (<bytes>lines[i + 2]).split(b";"):
            part = part.strip(b" \t")
            if part.startswith(prefix):
                count += 1
                value = part[len(prefix):].strip(b'"')
                at = i
    return value, count, at


cdef _drop_cookie(Request req, Py_ssize_t at, bytes name):
    prefix = name + b"="
    kept = [p for p in (<bytes>req.lines[at + 2]).split(b";")
            if not p.strip(b" \t").startswith(prefix)]
    if any(p.strip(b" \t") for p in kept):
        req.lines[at + 2] = b";".join(kept).strip(b" \t;")
    else:
        _drop_line(req, at)


cdef enum:
    # Where jwt-auth's (and mcp-auth's) events are in its Counters (EVENTS' order).
    J_VERIFIED = 0
    J_CACHED = 1
    J_REFUSED = 2


cdef class JwtAuthStep(Step):
    """A bearer JWT from Authorization (or a header, a cookie, a query parameter when
    configured), verified (plugins/jose.py), cached; its claims and scopes go in
    `req.vars`, and the consumer its claims map to is identified.

    Counters: `verified` (tokens checked with a signature), `cached` (requests
    answered from the cache), `refused`.
    """

    cdef readonly object verifier  # plugins.jose.Verifier
    cdef dict cache  # token[-CACHE_KEY:] -> (deadline, claims, scopes, consumer, token)
    cdef Py_ssize_t cache_size
    cdef bytes header  # lower-case name of the header with the token
    cdef bint bearer  # its value is `Bearer <token>` (Authorization)
    cdef bytes cookie  # a cookie with the token, or None
    cdef bytes query  # a query parameter with the token, or None
    cdef bint hide  # the token does not go upstream
    cdef bint skip_identified  # an earlier authentication step found the consumer: go on
    cdef Consumer anonymous
    cdef str realm
    cdef tuple missing
    cdef tuple twice

    # Its counters are its plugin's (self.counts, kept by the gateway across snapshots:
    # a consumer change makes this step again, the counts go on). The cache is the
    # step's own, and goes with it: a step is made again when a consumer or a key
    # changes, and a token verified before must then be checked again, at once, not
    # when its entry expires: the consumer it mapped to may be gone (or renamed, or
    # moved to other groups), the key that signed it removed (rotated out after a
    # leak). What the cache cost the first time (one signature check per token) is
    # paid once more per token after a consumer change: cheap against serving a
    # removed consumer for up to cache_ttl.
    EVENTS = ("verified", "cached", "refused")

    def __init__(self, verifier, str header, cookie, query, bint hide, Consumer anonymous=None,
                 *, str realm="runmcp-fast", Py_ssize_t cache_size=65536, str name="jwt-auth",
                 int priority=2510, bint fail_open=False):
        Step.__init__(self, name, PHASE_ACCESS, priority=priority, fail_open=fail_open,
                      reads_envelope=False)
        self.verifier = verifier
        self.cache = {}
        verifier.caches.append(self.cache)
        self.cache_size = cache_size
        self.header = header.lower().encode("latin-1")
        self.bearer = self.header == b"authorization"
        self.cookie = cookie.encode("latin-1") if cookie else None
        self.query = query.encode("latin-1") if query else None
        self.hide = hide
        self.skip_identified = True
        self.anonymous = anonymous
        self.realm = realm
        where = "Authorization: Bearer <token>" if self.bearer else f"the {header} header"
        if cookie:
            where += f", the {cookie} cookie"
        if query:
            where += f" or the {query} query parameter"
        self.missing = self._answer(401, "", f"no bearer token: send it in {where}")
        self.twice = self._answer(401, "invalid_request", f"more than one token: send one, in {where}")

    @property
    def verified(self):
        """Tokens checked with a signature (by every step of the plugin: see Counters)."""
        return self.counts.n[J_VERIFIED]

    @property
    def cached(self):
        """Requests answered from a cache."""
        return self.counts.n[J_CACHED]

    @property
    def refused(self):
        """Tokens refused."""
        return self.counts.n[J_REFUSED]

    @property
    def cache_entries(self):
        """How many verified tokens are remembered now."""
        return len(self.cache)

    def stats(self):
        """The step's counters and its cache's size (the metrics exposition reads them)."""
        return {
            "verified": self.verified,
            "cached": self.cached,
            "refused": self.refused,
            "cache_entries": len(self.cache),
        }

    # -- the answers (mcp-auth has its own) -----------------------------------------------

    cdef tuple _answer(self, int status, str error, str detail):
        challenge = f'Bearer realm="{self.realm}"'
        if error:
            challenge += f', error="{error}", error_description="{_quotable(detail)}"'
        headers = [("WWW-Authenticate", challenge)]
        if status == 503:
            headers.append(("Retry-After", "5"))
        return problem_answer(status, detail, headers=tuple(headers))

    cdef object _refuse(self, object refused):
        self.counts.n[J_REFUSED] += 1
        return self._answer(refused.status, refused.error, refused.detail)

    cdef object _no_token(self, ClientProtocol conn, Request req):
        if self.anonymous is not None:
            conn.identify(req, self.anonymous, self, True)
            return None
        return self.missing

    cdef object _granted(self, ClientProtocol conn, Request req, tuple entry):
        """The token is good: tell the later steps, identify its consumer; None to go on."""
        cdef dict found = req.vars
        if found is None:
            req.vars = found = {}
        found["claims"] = entry[1]
        found["scopes"] = entry[2]
        consumer = entry[3]
        if consumer is not None:
            conn.identify(req, <Consumer>consumer, self, False)
        return None

    # -- the request -----------------------------------------------------------------------

    cdef object on_request(self, ClientProtocol conn, Request req):
        if self.skip_identified and _identified(req):
            return None
        cdef Py_ssize_t count = 0
        cdef Py_ssize_t at = -1
        cdef Py_ssize_t start = 0, end = 0
        cdef int source = FROM_NONE
        cdef bytes buf = None  # holds the token at [start:end]
        at = _find_header(req.lines, self.header, &count)
        if count > 1:
            return self.twice
        if at >= 0:
            buf = <bytes>req.lines[at + 2]
            if self.bearer:
                if _bearer_span(buf, &start, &end):
                    source = FROM_HEADER
            else:
                token = _raw_token(buf)
                if token is not None:
                    buf, start, end, source = token, 0, len(token), FROM_HEADER
        if self.cookie is not None or self.query is not None:
            # (the slow path: tokens out of cookies and query strings are copied)
            if self.cookie is not None:
                found, n, line = _cookie(req.lines, self.cookie)
                if n > 1 or (n and source != FROM_NONE):
                    return self.twice
                if found:
                    buf, start, end, source, at = found, 0, len(found), FROM_COOKIE, line
            if self.query is not None:
                found, n = _query_param(req.url, self.query)
                if n > 1 or (n and source != FROM_NONE):
                    return self.twice
                if found:
                    buf, start, end, source = found, 0, len(found), FROM_QUERY
        if source == FROM_NONE:
            return self._no_token(conn, req)
        # PERF: the hit path: a dict lookup, a memcmp, a clock read; no copy, no signature.
        entry = _cached(self.cache, buf, start, end)
        if entry is not None:
            self.counts.n[J_CACHED] += 1
            self._take(req, source, at)
            return self._granted(conn, req, <tuple>entry)
        token = buf[start:end] if start or end != len(buf) else buf
        result = self.verifier.verify(token)
        if type(result) is tuple:
            return self._verified(conn, req, token, <tuple>result, source, at)
        if isinstance(result, _Refused):
            return self._refuse(result)
        return Wait(_verify_later(self, conn, req, token, result, source, at))

    cdef object _verified(self, ClientProtocol conn, Request req, bytes token, tuple entry,
                          int source, Py_ssize_t at):
        self.counts.n[J_VERIFIED] += 1
        cdef dict cache = self.cache
        if len(cache) >= self.cache_size:
            del cache[next(iter(cache))]  # the oldest: bounded whatever clients send
        cache[token[-CACHE_KEY:]] = entry + (token,)
        self._take(req, source, at)
        return self._granted(conn, req, entry)

    cdef _take(self, Request req, int source, Py_ssize_t at):
        """The token does not go upstream (when `hide`)."""
        if not self.hide:
            return
        if source == FROM_HEADER:
            _drop_line(req, at)
        elif source == FROM_COOKIE:
            _drop_cookie(req, at, self.cookie)
        elif source == FROM_QUERY:
            req.url = _without_query_param(req.url, self.query)

    def _after(self, ClientProtocol conn, Request req, bytes token, result, int source,
               Py_ssize_t at):
        if type(result) is tuple:
            # The request waited: the header lines may have moved; find the token again.
            if source == FROM_HEADER:
                at = _find_line_with(req.lines, self.header, token)
            elif source == FROM_COOKIE:
                _, _, at = _cookie(req.lines, self.cookie)
            return self._verified(conn, req, token, <tuple>result, source, at)
        return self._refuse(result)

    def time_hits(self, bytes token, double seconds):
        """µs per cache hit of on_request, the token in Authorization (bench/jwt/verify.py).
        The step must keep the token (hide false) and map no consumer."""
        cdef Request req = Request()
        req.lines = [b"Host", b": ", b"h", b"\r\n",
                     b"Authorization", b": ", b"Bearer " + token, b"\r\n"]
        req.url = b"/"
        self.on_request(None, req)  # the miss: verified and cached
        cdef long long n = 0
        cdef double start = monotonic()
        cdef double end = start + seconds
        cdef int i
        while monotonic() < end:
            for i in range(1000):
                req.vars = None
                self.on_request(None, req)
            n += 1000
        return (monotonic() - start) / n * 1e6


cdef bytes _raw_token(bytes value):
    """A token header other than Authorization: the value, an optional `Bearer ` taken off."""
    found = _bearer(value)
    return found if found is not None else value.strip(b" \t") or None


cdef Py_ssize_t _find_line_with(list lines, bytes lower, bytes token):
    cdef Py_ssize_t i
    if lines is None:
        return -1
    for i in range(0, len(lines), 4):
        if _name_is(<bytes>lines[i], lower) and token in <bytes>lines[i + 2]:
            return i
    return -1


cdef str _quotable(str text):
    """Text for a quoted-string in WWW-Authenticate (RFC 9110 §5.6.4): no quote, no backslash."""
    return text.replace("\\", "").replace('"', "'")


async def _verify_later(JwtAuthStep step, ClientProtocol conn, Request req, bytes token,
                        awaitable, int source, Py_ssize_t at):
    result = await awaitable
    return step._after(conn, req, token, result, source, at)


cdef class McpAuthStep(JwtAuthStep):
    """The MCP authorization spec's resource server on one MCP endpoint: a bearer token in
    Authorization only (never the query), for this resource (aud), with the required
    scopes; 401 / 403 with the challenge that leads clients to the resource's metadata.
    The client's token never goes upstream: Authorization is removed, and a configured
    upstream credential may be put in its place.

    The plugin makes one per endpoint (`bind`): an unbound one (no resource URL yet)
    refuses every request with 500, so a build problem never leaves an endpoint open.
    """

    cdef readonly str resource  # this endpoint's URL (RFC 8707 audience, RFC 9728 resource)
    cdef readonly str metadata_url  # where its Protected Resource Metadata is
    cdef readonly bytes metadata  # that document (JSON), served by a local route
    cdef frozenset required  # scopes every request needs
    cdef bytes credential_name  # the upstream credential's header (lower case), or None
    cdef list credential_line  # its kept-line form (4 items)
    cdef tuple rpc_in_query
    cdef tuple unbound
    cdef public object binder  # (path, hosts, listeners) -> a bound step (the plugin's)

    def __init__(self, verifier, *, resource=None, metadata_url=None, metadata=None,
                 required_scopes=(), credential=None, Py_ssize_t cache_size=65536,
                 str name="mcp-auth", int priority=2590, bint fail_open=False):
        # Set first: the answers the base class makes name them.
        self.resource = resource
        self.metadata_url = metadata_url
        self.metadata = metadata
        self.required = frozenset(required_scopes)
        JwtAuthStep.__init__(self, verifier, "authorization", None, None, True, None,
                             cache_size=cache_size, name=name, priority=priority,
                             fail_open=fail_open)
        self.skip_identified = False  # the audience is this endpoint's, whoever came before
        if credential is not None:
            header, value = credential
            self.credential_name = header.lower().encode("latin-1")
            self.credential_line = [header.encode("latin-1"), b": ", value.encode("latin-1"),
                                    b"\r\n"]
        self.missing = self._answer(401, "", "this MCP server needs an access token: "
                                    "send Authorization: Bearer <token>")
        self.rpc_in_query = self._answer(
            400, "invalid_request",
            "an access token is never accepted in the query string: send it in Authorization")
        self.unbound = _STEP_NOT_BOUND

    @property
    def protected_resource(self):
        """(resource URL, metadata document) once bound; None before."""
        if self.resource is None:
            return None
        return self.resource, self.metadata

    cdef tuple _answer(self, int status, str error, str detail):
        cdef list parts = []
        if error:
            parts.append(f'error="{error}"')
            parts.append(f'error_description="{_quotable(detail)}"')
        if self.required and (status == 403 or not error):
            parts.append(f'scope="{" ".join(sorted(self.required))}"')
        if self.metadata_url is not None:
            parts.append(f'resource_metadata="{self.metadata_url}"')
        headers = [("Content-Type", "application/json"),
                   ("WWW-Authenticate", "Bearer " + ", ".join(parts) if parts else "Bearer")]
        if status == 503:
            headers.append(("Retry-After", "5"))
        # JSON-RPC-shaped, as the MCP proxy's own refusals (mcp/proxy.py rpc_error).
        body = orjson.dumps({"jsonrpc": "2.0", "id": None,
                             "error": {"code": -32600 if status != 503 else -32603,
                                       "message": detail}})
        return (status, tuple(headers), body)

    cdef object on_request(self, ClientProtocol conn, Request req):
        if self.resource is None:
            return self.unbound
        value, n = _query_param(req.url, b"access_token")
        if n:
            self.counts.n[J_REFUSED] += 1
            return self.rpc_in_query
        cdef Py_ssize_t count = 0
        cdef Py_ssize_t at = _find_header(req.lines, b"authorization", &count)
        if count > 1:
            return self.twice
        cdef Py_ssize_t start = 0, end = 0
        if at < 0 or not _bearer_span(<bytes>req.lines[at + 2], &start, &end):
            return self.missing
        cdef bytes buf = <bytes>req.lines[at + 2]
        entry = _cached(self.cache, buf, start, end)
        if entry is not None:
            self.counts.n[J_CACHED] += 1
            self._take(req, FROM_HEADER, at)
            return self._granted(conn, req, <tuple>entry)
        token = buf[start:end]
        result = self.verifier.verify(token)
        if type(result) is tuple:
            return self._verified(conn, req, token, <tuple>result, FROM_HEADER, at)
        if isinstance(result, _Refused):
            return self._refuse(result)
        return Wait(_verify_later(self, conn, req, token, result, FROM_HEADER, at))

    cdef _take(self, Request req, int source, Py_ssize_t at):
        if at >= 0:
            _drop_line(req, at)
        if self.credential_name is not None:
            _drop_all(req, self.credential_name)  # the client can not send it for us
            if req.lines is None:
                req.lines = []
            req.lines.extend(self.credential_line)

    cdef object _granted(self, ClientProtocol conn, Request req, tuple entry):
        if self.required and not self.required.issubset(<frozenset>entry[2]):
            self.counts.n[J_REFUSED] += 1
            missing = " ".join(sorted(self.required - <frozenset>entry[2]))
            return self._answer(403, "insufficient_scope",
                                f"the token lacks the scopes this MCP server needs: {missing}")
        return JwtAuthStep._granted(self, conn, req, entry)

    def bind(self, str path, hosts, listeners):
        """This step for the MCP endpoint at `path` on `hosts` (the snapshot build calls it;
        the plugin's binder builds the resource URL, or raises PluginError)."""
        return self.binder(path, hosts, listeners)


cdef _drop_all(Request req, bytes lower):
    cdef list lines = req.lines
    if not lines:
        return
    kept = []
    for i in range(0, len(lines), 4):
        if not _name_is(<bytes>lines[i], lower):
            kept += lines[i:i + 4]
    req.lines = kept or None


_STEP_NOT_BOUND = (
    500,
    (("Content-Type", "application/json"),),
    b'{"jsonrpc":"2.0","id":null,"error":{"code":-32603,'
    b'"message":"mcp-auth is not bound to this endpoint: the gateway logged why"}}',
)
