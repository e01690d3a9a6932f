# -- mcp-authz: which tools a caller may list and call (builtin/mcp_authz.py) ------------
#
# On a proxied MCP server it runs after the envelope check, whose parsed
# envelope it reads (the body is parsed once): a tools/call it refuses is
# answered here and never goes upstream; a tools/list answer is rewritten on
# its way back (a body filter; the data plane then frames it chunked). On a
# generated endpoint or a federation it leaves its policy in the request's
# vars, and the handler asks it for each tool it lists or calls.

cdef bytes _TOOLS_CALL = b"tools/call"
cdef bytes _TOOLS_LIST = b"tools/list"
_LIST_VAR = "mcp.authz.list"  # the ids of the tools/list requests a body holds


cdef class McpAuthzStep(Step):
    """The mcp-authz plugin's step: a `Policy` (builtin/mcp_authz.py) on an MCP route."""

    cdef readonly object policy
    cdef frozenset modern  # revisions whose Mcp-Method / Mcp-Name headers are checked
    cdef dict catalogs  # service label -> {tool name: hints} seen in its tools/list answers

    def __init__(self, policy, frozenset modern, *, str name="mcp-authz", int priority=-100,
                 bint fail_open=False):
        Step.__init__(self, name, PHASE_MCP, priority=priority, hooks=HOOK_REQUEST | HOOK_RESPONSE,
                      fail_open=fail_open)
        self.policy = policy
        self.modern = modern
        self.catalogs = {}

    cdef object on_request(self, ClientProtocol conn, Request req):
        cdef Target target = req.target
        if target.handler is not None:
            # A generated endpoint or a federation: the handler decides, tool by tool.
            if req.vars is None:
                req.vars = {}
            req.vars[GATE_VAR] = self.policy
            return None
        if req.has_body and req.method == b"POST":
            conn.want_body(req, self, None)  # after the envelope check's own
        return None

    cdef object on_body(self, ClientProtocol conn, Request req, bytes body, object state):
        envelope = req.vars.get("mcp.envelope") if req.vars is not None else None
        if envelope is None:
            return None  # a route without the envelope check: not an MCP POST it knows
        cdef Py_ssize_t count = 0
        cdef Py_ssize_t at = _find_header(req.lines, b"mcp-protocol-version", &count)
        # A header sent twice is read from the body: the envelope check compares the
        # first one with it and this finds the last (a 2025 version first, then
        # 2026-07-28 and `Mcp-Method: ping`, walked around the rules unchecked).
        cdef bint modern = (
            at >= 0 and count == 1 and (<bytes>req.lines[at + 2]).strip() in self.modern
        )
        if modern:
            at = _find_header(req.lines, b"mcp-method", &count)
            if at >= 0 and count == 1:
                # 2026-07-28: the envelope check has made sure the headers say what the
                # body says; decided from them.
                return self._decide_headers(req, envelope, (<bytes>req.lines[at + 2]).strip())
        if envelope.kind == "batch":
            return self._decide_members(req, envelope, envelope.members, False)
        return self._decide_members(req, envelope, (envelope,), modern)

    cdef object _decide_headers(self, Request req, envelope, bytes method):
        cdef Py_ssize_t count = 0
        cdef Py_ssize_t at
        if method == _TOOLS_LIST:
            self._mark_list(req, (envelope.id,))
            return None
        if method != _TOOLS_CALL:
            return None
        at = _find_header(req.lines, b"mcp-name", &count)
        name = (
            self.policy.header_name(<bytes>req.lines[at + 2])
            if at >= 0 and count == 1
            else envelope.name
        )
        if name is None:
            return None  # no tool named: the upstream answers that
        return self._refusal(req, envelope, {envelope.id: name}, True)

    cdef object _decide_members(self, Request req, envelope, members, bint modern):
        refused = None
        lists = None
        for member in members:
            method = member.method
            if method == "tools/call":
                if member.name is None:
                    continue
                if refused is None:
                    refused = {}
                refused[member.id] = member.name
            elif method == "tools/list" and member.id is not None:
                if lists is None:
                    lists = []
                lists.append(member.id)
        if refused is not None:
            answer = self._refusal(req, envelope, refused, modern)
            if answer is not None:
                req.vars[OUTCOME_VAR] = "refused"  # for the metrics' tool calls
                return answer
        if lists is not None:
            self._mark_list(req, tuple(lists))
        return None

    cdef object _refusal(self, Request req, envelope, dict calls, bint modern):
        """The answer refusing the calls among `calls` (id -> tool) not allowed, or None."""
        policy = self.policy
        catalog = self.catalogs.get(req.target.service_name) if policy.by_hints else None
        refused = {}
        cdef bint unknown = False
        for call_id, name in calls.items():
            hints = catalog.get(name) if catalog is not None else None
            allowed = policy.decide(name, hints, req.consumer, req.vars)
            if allowed is True:
                continue
            refused[call_id] = name
            if allowed is None:
                unknown = True
        if not refused:
            return None
        return policy.refuse(envelope, refused, unknown, modern)

    cdef _mark_list(self, Request req, tuple ids):
        req.vars[_LIST_VAR] = ids
        # Its answer is read and rewritten here: it must come uncompressed.
        cdef Py_ssize_t count = 0
        cdef Py_ssize_t at = _find_header(req.lines, b"accept-encoding", &count)
        while at >= 0:
            _drop_line(req, at)
            at = _find_header(req.lines, b"accept-encoding", &count)

    cdef list on_response(self, ClientProtocol conn, Request req, int status, list lines,
                          long long content_length):
        if req.pool is None or status != 200:
            return lines  # the gateway's own answer, or no tool list in it
        ids = req.vars.get(_LIST_VAR) if req.vars is not None else None
        head = b"".join(lines).lower()
        cdef bint stream = b"text/event-stream" in head
        if ids is None and not (stream and req.method == b"GET"):
            return lines
        # A GET stream may carry answers too (replayed after a reconnection, or the legacy
        # transport's): any answer with a tool list in it is filtered (ids None).
        label = req.target.service_name
        catalog = self.catalogs.get(label)
        if catalog is None:
            catalog = self.catalogs[label] = {}
        found = self.policy.list_filter(catalog, req.consumer, req.vars, ids, stream)
        if req.body_filter is not None:
            found = ChainedFilter(req.body_filter, found)
        req.body_filter = found
        return lines
