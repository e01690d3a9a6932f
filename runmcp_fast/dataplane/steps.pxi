# -- the built-in steps: the contract check, MCP envelopes, session routing, Host guard ----


cdef inline bint _same_bytes(bytes known, const char* p, Py_ssize_t n):
    """`known` holds exactly the n bytes at p."""
    return PyBytes_GET_SIZE(known) == n and memcmp(PyBytes_AS_STRING(known), p, n) == 0


@cython.final
cdef class _LastHit:
    """A one-entry memo in front of a dict whose answers never change for a key (a
    verdict per raw Content-Type or MCP-Protocol-Version): a client sends the same
    value every time, and comparing its bytes costs less than hashing a new bytes
    object (~230 instructions)."""

    cdef bytes key
    cdef object value

    cdef inline object get(self, dict table, object key):
        """`table.get(key)`, remembered when found."""
        if key is not None and self.key is not None and _same_bytes(
            self.key, PyBytes_AS_STRING(<bytes>key), PyBytes_GET_SIZE(<bytes>key)
        ):
            return self.value
        value = table.get(key)
        if value is not None and key is not None:
            self.key = key
            self.value = value
        return value


cdef class ContractStep(Step):
    """Check requests against a `Validator` (hooks.py): an operation's contract, an MCP
    service's JSON-RPC envelopes.

    At the head, the validator gives None (forward), a refusal (answered at
    once) or a verdict whose body is to be read whole and checked; the byte
    checker (`verdict.program`) decides a valid body with no Python frame.
    """

    cdef readonly object validator
    cdef dict fast_heads  # the validator's: raw Content-Type -> shared clean verdict
    cdef _LastHit last_head  # in front of it
    # PERF: the last shared verdict `last_head` gave and its program, so `on_body`
    # reads no Python attribute (~100 instructions) for it (shared verdicts are never
    # modified: operation.py, Verdict).
    cdef object clean_verdict, clean_program
    cdef tuple plain      # PlainParam of each parameter, or None: `head` reads them
    cdef bint declares_body, body_required
    cdef bint no_query    # plain decides only for a URL with no query (plain_needs_no_query)
    cdef bint plain_query  # some of plain are query parameters
    cdef long long max_body
    cdef bint enforce
    cdef object tally         # the validator's array('q', [n]): requests C let through
    cdef long long* passed    # its item, counted without a Python attribute write

    def __init__(self, validator, *, str name="contract", phase=PHASE_CONTRACT, int priority=0):
        # Validators other than an operation's (MCP envelopes) have no parameters.
        plain = getattr(validator, "plain_params", None)
        if plain is not None:
            plain = tuple([PlainParam(name, *check) for name, check in plain])
        # PERF: parameters any text satisfies need no values (`head` skips them too),
        # so the route's params are not decoded for this step.
        needs_params = plain is None or any(
            (<PlainParam>check).program is not None and not (<PlainParam>check).in_query
            for check in plain
        )
        Step.__init__(
            self, name, phase, priority=priority, hooks=HOOK_REQUEST, needs_params=needs_params,
            reads_envelope=False,
        )
        self.validator = validator
        if plain is not None:
            # PERF: a path parameter any text satisfies is skipped by `_plain_params_ok`
            # anyway: not looked at per request (GitHub's owner and repo).
            plain = tuple([
                check for check in plain
                if (<PlainParam>check).in_query or (<PlainParam>check).program is not None
            ])
            self.plain_query = any((<PlainParam>check).in_query for check in plain)
        self.plain = plain
        self.fast_heads = validator.fast_heads
        self.last_head = _LastHit()
        self.max_body = validator.max_body
        self.enforce = validator.enforce
        tally = getattr(validator, "tally", None)
        if tally is not None:
            self.tally = tally
            self.passed = (<array.array>tally).data.as_longlongs
        self.declares_body = getattr(validator, "declares_body", True)
        self.no_query = getattr(validator, "plain_needs_no_query", False)
        self.body_required = getattr(validator, "body_required", True)

    cdef object on_request(self, ClientProtocol conn, Request req):
        validator = self.validator
        cdef dict fast = self.fast_heads
        content_type = _header_in(req.lines, b"content-type", 12) if req.has_body else None
        if self.plain is not None and _plain_params_ok(
            self.plain, req, self.no_query, self.plain_query
        ):
            # PERF: the parameters are valid as far as C can tell (the common case),
            # so only the body is left: no Python call (validator.head) when the
            # operation takes none, or its Content-Type was seen before.
            if not self.declares_body or not (req.has_body or self.body_required):
                self._count(validator)
                return None
            if fast is not None and content_type is not None:
                verdict = self.last_head.get(fast, content_type)
                if verdict is not None:
                    if verdict is not self.clean_verdict:
                        self.clean_program = verdict.program
                        self.clean_verdict = verdict
                    self._count(validator)
                    self._read_body(conn, req, verdict)
                    return None
        verdict = validator.head(req.url, req.get_params(), req.lines, content_type, req.has_body)
        if verdict is None:
            return None
        if verdict.body is None:
            return verdict  # refused by its head
        self._read_body(conn, req, verdict)
        return None

    cdef inline void _count(self, validator):
        if self.passed != NULL:
            self.passed[0] += 1
        else:
            validator.checked += 1

    cdef _read_body(self, ClientProtocol conn, Request req, verdict):
        conn.want_body(req, self, verdict)
        if self.max_body < req.limit:
            req.limit = self.max_body

    cdef object on_body(self, ClientProtocol conn, Request req, bytes body, object verdict):
        # The common case, a valid body, decided by the byte checker.
        program = self.clean_program if verdict is self.clean_verdict else verdict.program
        if program is not None and body and _program_ok(program, body):
            return None
        return verdict.finish(body)

    cdef int body_passes(self, ClientProtocol conn, Request req, bytes body,
                         object verdict) except -1:
        # Only the byte checker's C entry: a Python `check` runs in on_body, where
        # what it raises is the step's failure.
        program = self.clean_program if verdict is self.clean_verdict else verdict.program
        if program is None or not body:
            return 0
        return program_check(
            program, <const unsigned char*>PyBytes_AS_STRING(body), PyBytes_GET_SIZE(body)
        ) == 1

    cdef object failed(self, object exc):
        # A request that could not be checked is refused, not forwarded: a crafted
        # one must not get through by breaking the checker (report-only forwards).
        _count_failure(self)
        return _UNCHECKED if self.enforce else None


@cython.final
cdef class PlainParam:
    """A path or query parameter checked in C (`validation/operation.py`, `PlainCheck`):
    its text, when plain ASCII, is the JSON text of the value the slow path would coerce
    it to (`42`, `true`, or `"text"` quoted), so the schema's byte checker decides it."""

    cdef str name
    cdef object seen_names  # the route names tuple it was last found in (_raw_param)
    cdef Py_ssize_t seen_at  # and where
    cdef bytes key       # a query parameter's name as the URL spells it
    cdef object program  # _fastcheck.Program, or None: any text is valid
    cdef bint numeric, boolean, string, in_query, required

    def __init__(self, str name, program, bint numeric, bint boolean, bint string,
                 bint in_query=False, bint required=False):
        self.name = name
        # UTF-8: a path parameter's name may be any text (a query one, plain ASCII).
        self.key = name.encode("utf-8")
        self.program = program
        self.numeric = numeric
        self.boolean = boolean
        self.string = string
        self.in_query = in_query
        self.required = required


cdef bint _plain_params_ok(tuple checks, Request req, bint no_query, bint in_query) except -1:
    """True when every parameter is surely valid; False: let `validator.head` decide.
    `no_query`: other query parameters C can not read may be there unless the URL has
    no query at all. `in_query`: some of `checks` are query parameters."""
    cdef PlainParam check
    cdef bytes url = req.url
    cdef const char* u = PyBytes_AS_STRING(url)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(url)
    cdef const char* mark = NULL
    cdef Py_ssize_t start = size
    cdef Py_ssize_t at, n
    cdef bint plain_query = True
    # PERF: the URL is searched only when a check reads its query (a route with only
    # path parameters, or none, scans nothing).
    if no_query or in_query:
        mark = <const char*>memchr(u, 0x3f, size)  # "?"
        if no_query and mark != NULL:
            return False
        if mark != NULL:
            start = mark + 1 - u
            # A query with escapes or "+" is read by Python (parse_query decodes names too).
            plain_query = (
                memchr(u + start, 0x25, size - start) == NULL
                and memchr(u + start, 0x2b, size - start) == NULL
            )
    for check in checks:
        if check.in_query:
            if not plain_query:
                return False
            at = _query_value(u, start, size, check.key, &n)
            if at < 0:
                if check.required:
                    return False  # `head` says what is missing
                continue
            if check.program is None:
                continue
            if not _plain_ok(check, u + at, n):
                return False
        else:
            if check.program is None:
                continue  # any text: not even decoded when no other check needs it
            if req.route_buf is not None:
                # Not decoded yet: the raw value in the matched buffer, when it has no
                # escape (it is then its own text).
                at = _raw_param(req, check, &n)
                if at == -2:
                    continue  # not in the template: `head` skips it too
                if at < 0 or not _plain_ok(check, PyBytes_AS_STRING(req.route_buf) + at, n):
                    return False
            else:
                params = req._params
                if params is None:
                    return False
                value = params.get(check.name)
                if value is None:
                    continue  # not in the template: `head` skips it too
                if type(value) is not str or not PyUnicode_IS_ASCII(value):
                    return False
                if not _plain_ok(
                    check, <const char*>PyUnicode_DATA(value), PyUnicode_GET_LENGTH(value)
                ):
                    return False
    return True


cdef inline bint _program_ok(object program, bytes data) except -1:
    """`program.check(data)`: through the byte checker's C entry when it is one of its
    Programs (no Python call), else its method."""
    cdef int ok = program_check(program, <const unsigned char*>PyBytes_AS_STRING(data),
                                PyBytes_GET_SIZE(data))
    if ok == -2:
        return bool(program.check(data))
    return ok


cdef inline bint _program_ok_at(object program, const char* p, Py_ssize_t n) except -1:
    """`program.check(p[:n])`, with no bytes object made for a Program."""
    cdef int ok = program_check(program, <const unsigned char*>p, n)
    if ok == -2:
        return bool(program.check(PyBytes_FromStringAndSize(p, n)))
    return ok


cdef Py_ssize_t _raw_param(Request req, PlainParam check, Py_ssize_t* length) except -3:
    """Where the path param `check.name` starts in `req.route_buf` (its length in
    `length`); -2: the route has no such param; -1: C can not read it (escapes, a byte
    past ASCII, a str buffer): `head` decides."""
    cdef object buf = req.route_buf
    if type(buf) is not bytes:
        return -1
    cdef const RouteHit* hit = &req.route_hit
    cdef Py_ssize_t i, count
    cdef tuple names = hit_names(hit, req.route_names, &count)  # the names hit_params uses
    cdef str name = check.name
    # PERF: a step's routes give it the same names tuple request after request: where
    # its name was in it last time is taken as it is (a tuple does not change): no
    # string compare (~100 instructions for two equal strings that are not one object).
    if check.seen_names is names and check.seen_at < count:
        return _raw_value(<bytes>buf, hit, check.seen_at, length)
    for i in range(count):
        key = <object>PyTuple_GET_ITEM(names, i)
        if key is name or key == name:
            check.seen_names = names
            check.seen_at = i
            return _raw_value(<bytes>buf, hit, i, length)
    return -2


cdef inline Py_ssize_t _raw_value(bytes buf, const RouteHit* hit, Py_ssize_t i,
                                  Py_ssize_t* length):
    """Where the i-th param of `hit` starts in `buf` (its length in `length`), or -1
    when it has an escape or a byte past ASCII."""
    cdef Py_ssize_t s = hit.offs[2 * i], e = hit.offs[2 * i + 1], k
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(buf)
    for k in range(s, e):
        if p[k] == 0x25 or p[k] >= 0x80:  # "%" or not ASCII
            return -1
    length[0] = e - s
    return s


cdef Py_ssize_t _query_value(const char* u, Py_ssize_t start, Py_ssize_t size, bytes key,
                             Py_ssize_t* length):
    """Where the first value of `key` starts in the query u[start:size] (its length in
    `length`), or -1 when no pair has that name (parse_query: the first value counts)."""
    cdef Py_ssize_t pos = start, end, eq
    cdef Py_ssize_t k = PyBytes_GET_SIZE(key)
    cdef const char* amp
    cdef const char* sign
    while pos < size:
        amp = <const char*>memchr(u + pos, 0x26, size - pos)  # "&"
        end = size if amp == NULL else amp - u
        sign = <const char*>memchr(u + pos, 0x3d, end - pos)  # "="
        eq = end if sign == NULL else sign - u
        if eq - pos == k and memcmp(u + pos, PyBytes_AS_STRING(key), k) == 0:
            length[0] = 0 if sign == NULL else end - eq - 1
            return end if sign == NULL else eq + 1
        pos = end + 1
    return -1


cdef bint _plain_ok(PlainParam check, const char* p, Py_ssize_t n) except -1:
    """Whether `check.program` takes the JSON text of the value the slow path would
    coerce the text p[:n] to; False too when C can not tell what that value is.

    PERF: checked in place (a number, a boolean) or quoted on the stack: no bytes
    object per parameter (~130 instructions a request on an `{issue_number}` route).
    """
    cdef Py_ssize_t i
    cdef unsigned char c
    cdef char quoted[258]
    if n == 0 or n > 256:
        return False
    # Coerced in the order of styles._coercer: an integer literal, then a boolean.
    if check.numeric and _is_int_literal(p, n):
        return _program_ok_at(check.program, p, n)
    if check.boolean and ((n == 4 and memcmp(p, b"true", 4) == 0)
                          or (n == 5 and memcmp(p, b"false", 5) == 0)):
        return _program_ok_at(check.program, p, n)
    if not check.string:
        return False
    for i in range(n):
        c = <unsigned char>p[i]
        # Needs escaping, or not ASCII (raw bytes in a query): let Python read it.
        if c < 0x20 or c == 0x22 or c == 0x5c or c >= 0x80:
            return False
    quoted[0] = 0x22
    memcpy(quoted + 1, p, n)
    quoted[n + 1] = 0x22
    return _program_ok_at(check.program, quoted, n + 2)


cdef inline bint _is_int_literal(const char* p, Py_ssize_t n):
    """`-?(0|[1-9][0-9]*)`, at most 18 digits (an int64 whichever way it is read)."""
    cdef Py_ssize_t i = 1 if p[0] == 0x2d else 0
    cdef Py_ssize_t digits = n - i
    if digits < 1 or digits > 18:
        return False
    if p[i] == 0x30:
        return digits == 1
    for i in range(i, n):
        if p[i] < 0x30 or p[i] > 0x39:
            return False
    return True


_UNCHECKED = (
    500,
    (("Content-Type", "application/problem+json"),),
    b'{"type":"about:blank","title":"Internal Server Error","status":500,'
    b'"detail":"the request could not be validated"}',
)


# An envelope check in C (body -> Envelope, or None: ask the verdict), as the capsule
# mcp/_envelope.pyx's CHECK_SINGLE holds it, under this name.
ctypedef object (*EnvelopeCheck)(bytes)
ctypedef int (*EnvelopeValid)(const char*, Py_ssize_t) noexcept nogil
cdef const char* _ENVELOPE_CHECK = b"runmcp_fast.mcp._envelope.check_single"
cdef const char* _ENVELOPE_VALID = b"runmcp_fast.mcp._envelope.valid_single"


cdef class McpEnvelopeStep(ContractStep):
    """A ContractStep over an MCP service's `EnvelopeGuard` that leaves what it read for
    the steps after it: the checked JSON-RPC envelope goes in `req.vars["mcp.envelope"]`,
    so the body is parsed once whoever else needs its method and tool name. Only where
    a step of the request's chain may read it (`Chain.reads_envelope`): elsewhere a
    body the compiled check decides is checked and nothing is made of it.

    PERF: the guard's verdict depends on the `MCP-Protocol-Version` header alone for
    most revisions; the guard lists those it decided (`fast_versions`: raw value, or
    None for no header, -> shared verdict) and a POST naming one is read with no
    Python call at its head (the guard's head was a sixth of the MCP proxy's
    instructions per tools/call).
    """

    cdef dict by_version
    cdef _LastHit last_version  # in front of it
    # PERF: the last verdict's `fast` check and the verdict (shared verdicts are never
    # modified: operation.py, Verdict): no attribute lookup per call (~130 instructions).
    # A check given as a capsule (mcp/_envelope.pyx, CHECK_SINGLE) is called as the C
    # function it holds, `fast_c`, not through Python's call protocol.
    cdef object fast_of, fast
    cdef EnvelopeCheck fast_c
    # PERF: the verdict's `valid` (a capsule): whether the check accepts the body, with
    # nothing made of it, for a chain none of whose steps reads the Envelope
    # (Chain.reads_envelope; a plain MCP proxy): ~800 instructions a tools/call.
    cdef EnvelopeValid valid_c

    def __init__(self, validator, *, str name="mcp-envelope", int priority=0):
        ContractStep.__init__(self, validator, name=name, phase=PHASE_MCP, priority=priority)
        self.by_version = getattr(validator, "fast_versions", None)
        self.last_version = _LastHit()

    cdef object on_request(self, ClientProtocol conn, Request req):
        cdef dict versions = self.by_version
        if versions is not None and req.has_body:
            # (_header_in with the literal: its compares fold to constants)
            verdict = self.last_version.get(
                versions, _header_in(req.lines, b"mcp-protocol-version", 20)
            )
            if verdict is not None:
                self._count(self.validator)
                self._read_body(conn, req, verdict)
                return None
        return ContractStep.on_request(self, conn, req)

    cdef inline void _fast_for(self, object verdict) except *:
        """`fast` and `fast_c` are `verdict`'s check from here on."""
        if verdict is not self.fast_of:
            fast = getattr(verdict, "fast", None)
            valid = getattr(verdict, "valid", None)
            self.fast_c = NULL
            self.valid_c = NULL
            if fast is not None and PyCapsule_IsValid(fast, _ENVELOPE_CHECK):
                self.fast_c = <EnvelopeCheck>PyCapsule_GetPointer(fast, _ENVELOPE_CHECK)
                if valid is not None and PyCapsule_IsValid(valid, _ENVELOPE_VALID):
                    self.valid_c = <EnvelopeValid>PyCapsule_GetPointer(valid, _ENVELOPE_VALID)
            self.fast_of = verdict
            self.fast = fast

    cdef inline bint _valid(self, Request req, bytes body):
        """The body accepted by the check alone, where no step of the chain reads the
        Envelope (else, or when the check leaves it to msgspec: False)."""
        return (
            self.valid_c != NULL
            and req.chain is not None
            and not req.chain.reads_envelope
            and self.valid_c(PyBytes_AS_STRING(body), PyBytes_GET_SIZE(body)) == 1
        )

    cdef int body_passes(self, ClientProtocol conn, Request req, bytes body,
                         object verdict) except -1:
        # Only a compiled check that decides (one message): what it read is kept as
        # on_body keeps it; anything else is on_body's.
        self._fast_for(verdict)
        if self.fast_c == NULL or body is None:
            return 0
        if self._valid(req, body):
            return 1
        envelope = self.fast_c(body)
        if envelope is None:
            return 0
        if req.vars is None:
            req.vars = {}
        req.vars["mcp.envelope"] = envelope
        return 1

    cdef object on_body(self, ClientProtocol conn, Request req, bytes body, object verdict):
        # The verdict's compiled check first (one message, the common case), else its own.
        self._fast_for(verdict)
        if self.fast_c != NULL and body is not None:
            if self._valid(req, body):
                return None
            envelope = self.fast_c(body)
        elif self.fast is not None and not PyCapsule_CheckExact(self.fast):
            envelope = self.fast(body)
        else:
            envelope = None
        if envelope is None:
            envelope, refusal = verdict.check(body)
            if refusal is not None:
                return refusal
        if req.vars is None:
            req.vars = {}
        req.vars["mcp.envelope"] = envelope
        return None


cdef class McpHostGuardStep(Step):
    """DNS-rebinding protection for an MCP endpoint that answers any Host.

    On a connection that came in on a loopback address (`conn.loopback`, read
    once per connection) a request naming a Host, or sent by a page of an
    Origin, that is neither a loopback name (localhost, 127.x.x.x, [::1], any
    port) nor allowed gets 403: a page of evil.example whose name now resolves
    to 127.0.0.1 sends exactly `Host: evil.example` and `Origin:
    http://evil.example`. Other connections cost one field read.
    """

    cdef frozenset hosts  # allowed: `name` (any port) or `name:port`, lower case
    cdef frozenset origins  # allowed origins, lower case, no trailing slash
    cdef bint any_origin
    cdef tuple bad_host
    cdef tuple bad_origin

    def __init__(self, hosts, origins, tuple bad_host, tuple bad_origin, *,
                 str name="mcp-host-guard", int priority=100000):
        Step.__init__(self, name, PHASE_ACCESS, priority=priority, reads_envelope=False)
        self.hosts = frozenset(h.lower().encode("latin-1") for h in hosts)
        self.any_origin = "*" in origins
        self.origins = frozenset(o.rstrip("/").lower().encode("latin-1") for o in origins)
        self.bad_host = bad_host
        self.bad_origin = bad_origin

    cdef object on_request(self, ClientProtocol conn, Request req):
        if not conn.loopback:
            return None
        host = req.host
        # PERF: a loopback name (what local clients send) is decided in C, without the
        # lowered copy, the split and the int() of each part (~5k instructions a call).
        if (
            host is not None
            and not _loopback_host(PyBytes_AS_STRING(host), PyBytes_GET_SIZE(host))
            and not self._listed((<bytes>host).lower())
        ):
            return self.bad_host
        origin = _header_in(req.lines, b"origin", 6)  # (inline: the compares fold)
        if origin is not None and not self.any_origin:
            value = (<bytes>origin).strip().rstrip(b"/").lower()
            if value not in self.origins:
                _, sep, authority = value.partition(b"://")
                if not sep or not self._host_ok(authority):
                    return self.bad_origin
        return None

    cdef bint _host_ok(self, bytes host):
        return _loopback_host(PyBytes_AS_STRING(host), PyBytes_GET_SIZE(host)) or self._listed(host)

    cdef bint _listed(self, bytes host):
        """`host` (lower case) or its name without the port is an allowed one."""
        return host in self.hosts or _host_name(host) in self.hosts


def loopback_host(bytes host) -> bool:
    """Whether `host[:port]` names the loopback (the MCP host guard's check; for tests)."""
    return _loopback_host(PyBytes_AS_STRING(host), PyBytes_GET_SIZE(host))


cdef bint _loopback_host(const char* s, Py_ssize_t n) noexcept:
    """Whether `host[:port]` (any case) names the loopback: localhost, an IPv4 literal in
    127/8 (four parts of 1 to 3 digits, each below 256) or [::1], with any port or none.
    The port is the digits after the last colon (none: the colon is part of the name);
    an IPv6 literal's is not read."""
    cdef Py_ssize_t end = n, i, part, digits, value
    cdef const char* word = b"localhost"
    if n > 0 and s[0] == 91:  # "[": an IPv6 literal, its port unchecked (as _host_name)
        i = 1
        while i < n and s[i] != 93:  # "]"
            i += 1
        return i < n and i == 4 and memcmp(s, b"[::1]", 5) == 0
    # A port: digits after the last ":" (bytes.isdigit: at least one).
    i = n - 1
    while i >= 0 and 48 <= s[i] <= 57:
        i -= 1
    if 0 <= i < n - 1 and s[i] == 58:
        end = i
    if end == 9 and memcmp(s, b"127.0.0.1", 9) == 0:
        return True  # PERF: what local clients send, decided without the parts' loop
    if end == 9:
        i = 0
        while i < 9 and _lower(s[i]) == word[i]:
            i += 1
        if i == 9:
            return True
    if end < 7 or memcmp(s, b"127.", 4) != 0:
        return False
    # Four dotted parts of 1 to 3 ASCII digits, each below 256.
    part = digits = value = 0
    for i in range(end):
        if s[i] == 46:  # "."
            if digits == 0 or value > 255:
                return False
            part += 1
            digits = value = 0
        elif 48 <= s[i] <= 57:
            digits += 1
            if digits > 3:
                return False
            value = value * 10 + (s[i] - 48)
        else:
            return False
    return part == 3 and digits > 0 and value <= 255


cdef bytes _host_name(bytes host):
    """`host[:port]` without its port (an IPv6 literal keeps its brackets)."""
    cdef Py_ssize_t end
    if host.startswith(b"["):
        end = host.find(b"]")
        return host[:end + 1] if end > 0 else host
    name, sep, port = host.rpartition(b":")
    return name if sep and port.isdigit() else host


cdef bytes _DELETE = b"DELETE"


cdef class McpSessionStep(Step):
    """An MCP service's `SessionHook` (hooks.py) in the chain: each request head is shown
    to it (it may pin a replica, rewrite the target, or answer), and each upstream
    response head (session ids sealed, event streams marked).

    PERF: a hook may offer `fast_tables()`: its opened ids (client token ->
    (replica, upstream id)) and sealed ones ((replica, upstream id) -> token), the
    caches its own codec fills. Then a request with a known session and no Origin,
    and its response, are done here in C with what the hook would decide; anything
    else (a new session, an Origin to check, an id not seen yet) goes to the hook.
    The two hook calls were a third of the MCP proxy's instructions per tools/call.
    """

    cdef readonly object hook
    cdef dict opened  # None: every request goes to the hook
    cdef dict sealed
    # The last id each table gave (a session's calls repeat it): compared, not hashed
    # again. The codec's tables are pure (an id opens to the same session whatever it
    # remembers), so a remembered answer is never stale.
    cdef bytes last_raw        # the request's Mcp-Session-Id value, as sent
    cdef tuple last_opened     # what `opened` gave for it
    cdef int last_pin
    cdef bytes last_upstream   # the upstream's id on replica `last_pin`
    cdef bytes last_token      # what `sealed` gave for them

    def __init__(self, hook, *, str name="mcp-session", int priority=100):
        # (the hook sees the request's head and the response's, never req.vars)
        Step.__init__(self, name, PHASE_MCP, priority=priority, hooks=HOOK_REQUEST | HOOK_RESPONSE,
                      reads_envelope=False)
        self.hook = hook
        tables = getattr(hook, "fast_tables", None)
        found = tables() if tables is not None else None
        if found is not None:
            self.opened, self.sealed = found

    cdef object on_request(self, ClientProtocol conn, Request req):
        if self.opened is not None:
            done = self._fast_request(req)
            if done:
                return None
        decision = self.hook.request(req.method, req.url, req.host, req.lines)
        if decision is None:
            return None
        if type(decision) is int:
            req.pin = <int>decision
            req.pinned_by = self
            return None
        if len(<tuple>decision) == 2:
            req.pin = <int>decision[0]
            req.pinned_by = self
            req.url = <bytes>decision[1]
            return None
        return decision

    cdef bint _fast_request(self, Request req) except -1:
        """True when done: no Origin, and no session id or one already opened (pinned).
        A DELETE goes to the hook: it ends the session, which the hook forgets (done
        here, every session ever opened stayed in the tables)."""
        cdef list lines = req.lines
        cdef Py_ssize_t i, n, at = -1
        cdef bytes name
        if _same_bytes(_DELETE, PyBytes_AS_STRING(req.method), PyBytes_GET_SIZE(req.method)):
            return False
        if lines is not None:
            n = len(lines)
            for i in range(0, n, 4):
                name = <bytes>lines[i]
                # (compared in place: no lowered copy of each name)
                if len(name) == 6 and _starts_lower(name, 6, b"origin", 6):
                    return False  # the hook checks it
                if len(name) == 14 and _starts_lower(name, 14, b"mcp-session-id", 14):
                    if at >= 0:
                        return False  # two of them: the hook's rules
                    at = i
        if at < 0:
            return True  # no session: any replica, as the hook says
        cdef bytes raw = <bytes>lines[at + 2]
        cdef bytes last = self.last_raw
        if last is not None and _same_bytes(raw, PyBytes_AS_STRING(last), PyBytes_GET_SIZE(last)):
            known = self.last_opened
        else:
            known = self.opened.get(raw.strip())
            if known is None:
                return False  # not opened yet (or forged): the hook decides
            self.last_raw = raw
            self.last_opened = <tuple>known
        lines[at + 2] = (<tuple>known)[1]
        req.pin = <int>(<tuple>known)[0]
        req.pinned_by = self
        return True

    cdef list _fast_response(self, ClientProtocol conn, Request req, list lines):
        """The hook's answer for a known session's response, or None to ask the hook."""
        # PERF: the upstream's head usually comes as one slice (upstream._scan_head):
        # scanned where it is, not copied first.
        cdef bytes head = (
            <bytes><object>PyList_GET_ITEM(lines, 0) if PyList_GET_SIZE(lines) == 1 else _concat(lines)
        )
        cdef const char* buf = PyBytes_AS_STRING(head)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(head)
        cdef Py_ssize_t at, eol, a, b, size
        cdef Py_ssize_t found[3]
        cdef bint stream = False
        cdef bytes new_head = head
        cdef bytes last
        cdef char* out
        # One pass over the line starts: Content-Type, Mcp-Session-Id, X-Accel-Buffering.
        _find_headers(buf, n, found)
        at = found[0]
        if at >= 0:
            eol = _line_end(buf, at, n)
            stream = _contains_lower(buf + at + 13, eol - at - 13, b"text/event-stream", 17)
        at = found[1]
        if at >= 0:
            a = at + 15
            eol = _line_end(buf, a, n)
            if eol >= n:
                return None  # no CRLF after it: the hook's error
            b = eol
            while a < b and _is_space(buf[a]):
                a += 1
            while b > a and _is_space(buf[b - 1]):
                b -= 1
            last = self.last_upstream
            if last is not None and req.pin == self.last_pin and _same_bytes(last, buf + a, b - a):
                token = self.last_token
            else:
                upstream_id = head[a:b]
                token = self.sealed.get((req.pin, upstream_id))
                if token is None:
                    return None  # not sealed yet: the hook seals it (and remembers)
                self.last_pin = req.pin
                self.last_upstream = upstream_id
                self.last_token = <bytes>token
            # head[:at + 15] + b" " + token + head[eol:], in one allocation.
            size = at + 16 + PyBytes_GET_SIZE(<bytes>token) + n - eol
            new_head = PyBytes_FromStringAndSize(NULL, size)
            out = PyBytes_AS_STRING(new_head)
            memcpy(out, buf, at + 15)
            out[at + 15] = 32
            memcpy(out + at + 16, PyBytes_AS_STRING(<bytes>token), PyBytes_GET_SIZE(<bytes>token))
            memcpy(out + size - (n - eol), buf + eol, n - eol)
        if stream:
            conn.stream_events(req, req.target.stream_keepalive)
        if found[2] >= 0:
            return [new_head]
        return [new_head, b"X-Accel-Buffering: no\r\n"]

    cdef list on_response(self, ClientProtocol conn, Request req, int status, list lines,
                          long long content_length):
        if req.pool is None:
            return lines  # the gateway's own answer: no session in it
        if self.sealed is not None and req.pin >= 0:
            fast = self._fast_response(conn, req, lines)
            if fast is not None:
                return fast
        out = self.hook.response(req.method, status, lines, req.pool, req.pin)
        if out is None:
            return lines
        new_lines, stream, body_filter = out
        if stream:
            conn.stream_events(req, req.target.stream_keepalive)
        if body_filter is not None and content_length < 0:
            req.body_filter = body_filter
        return new_lines if new_lines is not None else lines

    cdef object on_pin_failed(self, ClientProtocol conn, Request req, str detail):
        return self.hook.replica_gone(detail)


cdef inline bint _is_space(char c):
    """bytes.strip()'s whitespace within a line: space, tab, VT, FF."""
    return c == 32 or c == 9 or c == 11 or c == 12


cdef inline char _lower(char c):
    return c + 32 if 65 <= c <= 90 else c


cdef inline uint64_t _folded8(const char* p) noexcept:
    """p[0..8) as a word with the 0x20 bit of each byte set: ASCII letters lowered (and
    a few other bytes changed, so a match is only a candidate)."""
    cdef uint64_t w
    memcpy(&w, p, 8)
    return w | 0x2020202020202020ULL


# The names _find_headers looks for, with their colons, as overlapping words (lower
# case: _folded8 keeps them): "content-type:" is "content-" + "nt-type:".
cdef uint64_t _CONTENT_ = _folded8(b"content-")
cdef uint64_t _NT_TYPE_ = _folded8(b"nt-type:")
cdef uint64_t _MCP_SESS = _folded8(b"mcp-sess")
cdef uint64_t _SSION_ID = _folded8(b"ssion-id")  # then the colon, compared alone
cdef uint64_t _X_ACCEL_ = _folded8(b"x-accel-")
cdef uint64_t _BUFFERIN = _folded8(b"bufferin")
cdef uint64_t _FFERING_ = _folded8(b"ffering:")


cdef void _find_headers(const char* buf, Py_ssize_t n, Py_ssize_t* found) noexcept:
    """Where the first Content-Type, Mcp-Session-Id and X-Accel-Buffering lines of `buf`
    start (found[0], [1], [2]; -1 for none): at 0 or after a LF, names in any case
    (as proxy._find_header over the lowered head), in one pass over the lines.

    PERF: a name is compared as two or three overlapping words with the 0x20 bit of
    every byte set, not byte by byte (callgrind: ~450 instructions a response). Exact
    for a head llhttp has checked: among the bytes a field name may hold, only letters
    differ by that bit alone, and the only other bytes compared are the colons."""
    cdef Py_ssize_t i = 0
    cdef const char* nl
    cdef const char* p
    cdef uint64_t w
    found[0] = found[1] = found[2] = -1
    while i < n:
        p = buf + i
        if n - i >= 18:  # the longest name sought, with its colon: every load stays in buf
            w = _folded8(p)
            if w == _CONTENT_:
                if found[0] < 0 and _folded8(p + 5) == _NT_TYPE_:
                    found[0] = i
            elif w == _MCP_SESS:
                if found[1] < 0 and _folded8(p + 6) == _SSION_ID and p[14] == 58:
                    found[1] = i
            elif w == _X_ACCEL_:
                if found[2] < 0 and _folded8(p + 8) == _BUFFERIN and _folded8(p + 10) == _FFERING_:
                    found[2] = i
        else:  # the head's last few bytes: byte by byte
            if found[0] < 0 and _starts_lower(p, n - i, b"content-type:", 13):
                found[0] = i
            elif found[1] < 0 and _starts_lower(p, n - i, b"mcp-session-id:", 15):
                found[1] = i
        nl = <const char*>memchr(p, 10, n - i)
        if nl == NULL:
            return
        i = nl - buf + 1


cdef inline bint _starts_lower(const char* buf, Py_ssize_t n, const char* name,
                               Py_ssize_t size) noexcept:
    """`buf` starts with `name` (lower case), any case."""
    cdef Py_ssize_t j = 0
    if n < size:
        return False
    while j < size and _lower(buf[j]) == name[j]:
        j += 1
    return j == size


cdef Py_ssize_t _line_end(const char* buf, Py_ssize_t start, Py_ssize_t n):
    """Where the CRLF after `start` is, or `n`."""
    # PERF: memchr for each CR (a vector scan), not a comparison per byte.
    cdef const char* p = buf + start
    cdef const char* last = buf + n - 1  # a CR here has no LF after it
    cdef const char* cr
    while p < last:
        cr = <const char*>memchr(p, 13, last - p)
        if cr == NULL:
            return n
        if cr[1] == 10:
            return cr - buf
        p = cr + 1
    return n


cdef bint _contains_lower(const char* buf, Py_ssize_t n, const char* word, Py_ssize_t size):
    """`word` (lower case) in buf[:n], any case."""
    cdef Py_ssize_t i
    for i in range(n - size + 1):
        if _lower(buf[i]) == word[0] and _name_is(buf + i, word, size):
            return True
    return False
