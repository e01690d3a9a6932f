# -- the built-in steps: the contract check, and MCP session routing ----------------------


cdef class ContractStep(Step):
    """Check requests against a `Validator` (hooks.py): an operation's contract, an MCP
    service's JSON-RPC envelopes.

    At the head, the validator gives None (forward), a refusal (answered at
    once) or a verdict whose body is to be read whole and checked; the byte
    checker (`verdict.program`) decides a valid body with no Python frame.
    """

    cdef readonly object validator
    cdef dict fast_heads  # the validator's: raw Content-Type -> shared clean verdict
    cdef long long max_body
    cdef bint enforce

    def __init__(self, validator, *, str name="contract", phase=PHASE_CONTRACT, int priority=0):
        Step.__init__(self, name, phase, priority=priority, hooks=HOOK_REQUEST, needs_params=True)
        self.validator = validator
        self.fast_heads = validator.fast_heads
        self.max_body = validator.max_body
        self.enforce = validator.enforce

    cdef object on_request(self, ClientProtocol conn, Request req):
        validator = self.validator
        cdef dict fast = self.fast_heads
        content_type = _header_value(req.lines, b"content-type") if req.has_body else None
        if fast is not None and content_type is not None:
            # PERF: a body-only contract and a Content-Type seen before: the
            # shared verdict, with no Python call (validator.head) in between.
            verdict = fast.get(content_type)
            if verdict is not None:
                validator.checked += 1
                self._read_body(conn, req, verdict)
                return None
        verdict = validator.head(req.url, req.params, req.lines, content_type, req.has_body)
        if verdict is None:
            return None
        if verdict.body is None:
            return verdict  # refused by its head
        self._read_body(conn, req, verdict)
        return None

    cdef _read_body(self, ClientProtocol conn, Request req, verdict):
        conn.want_body(req, self, verdict)
        if self.max_body < req.limit:
            req.limit = self.max_body

    cdef object on_body(self, ClientProtocol conn, Request req, bytes body, object verdict):
        # The common case, a valid body, decided by the byte checker.
        program = verdict.program
        if program is not None and body and program.check(body):
            return None
        return verdict.finish(body)

    cdef object failed(self, object exc):
        # A request that could not be checked is refused, not forwarded: a crafted
        # one must not get through by breaking the checker (report-only forwards).
        self.failures += 1
        return _UNCHECKED if self.enforce else None


_UNCHECKED = (
    500,
    (("Content-Type", "application/problem+json"),),
    b'{"type":"about:blank","title":"Internal Server Error","status":500,'
    b'"detail":"the request could not be validated"}',
)


cdef class McpSessionStep(Step):
    """An MCP service's `SessionHook` (hooks.py) in the chain: each request head is shown
    to it (it may pin a replica, rewrite the target, or answer), and each upstream
    response head (session ids sealed, event streams marked)."""

    cdef readonly object hook

    def __init__(self, hook, *, str name="mcp-session", int priority=100):
        Step.__init__(self, name, PHASE_MCP, priority=priority, hooks=HOOK_REQUEST | HOOK_RESPONSE)
        self.hook = hook

    cdef object on_request(self, ClientProtocol conn, Request req):
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

    cdef list on_response(self, ClientProtocol conn, Request req, int status, list lines,
                          long long content_length):
        if req.pool is None:
            return lines  # the gateway's own answer: no session in it
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
