# -- prometheus: times each request of its routes and counts it in the route's RouteStats --


cdef class PrometheusStep(Step):
    """First of the chain (to start the clock), and a log step (to count): two C calls.

    The counters are the target's RouteStats (dataplane/stats.pxd), C integers
    kept across reloads; metrics/exposition.py reads and renders them.
    """

    def __init__(self, *, str name="prometheus", int priority=100000, bint fail_open=False):
        Step.__init__(self, name, PHASE_REWRITE, priority=priority, hooks=HOOK_REQUEST | HOOK_LOG,
                      fail_open=fail_open)

    cdef object on_request(self, ClientProtocol conn, Request req):
        if not req.t0:  # (shared with the access log's clock, whichever starts it)
            req.t0 = monotonic()
        return None

    cdef int on_log(self, ClientProtocol conn, Request req) except -1:
        cdef Target target = req.target
        if target is None or target.stats is None or not req.t0:
            return 0
        cdef double upstream = req.t_head - req.t_upstream if req.t_head and req.t_upstream else -1.0
        target.stats.record(req.status, monotonic() - req.t0, upstream, req.body_bytes, req.bytes_out)
        if req.vars is not None:
            self._tool_call(target, req)
        return 0

    cdef _tool_call(self, Target target, Request req):
        """MCP tools/call: by tool and outcome. A generated endpoint lists its calls in
        vars; a proxied one's is the message the envelope check left there."""
        calls = req.vars.get(CALLS_VAR)
        if calls is not None:
            for tool, outcome in calls:
                target.stats.record_tool(tool, outcome)
            return
        envelope = req.vars.get(ENVELOPE_VAR)
        if envelope is None or envelope.method != "tools/call" or envelope.name is None:
            return
        outcome = req.vars.get(OUTCOME_VAR)
        if outcome is None:
            outcome = "ok" if 200 <= req.status < 300 else "error"
        target.stats.record_tool(envelope.name, outcome)


ENVELOPE_VAR = "mcp.envelope"  # (set by the mcp-envelope step: dataplane/steps.pxi)
OUTCOME_VAR = "mcp.outcome"  # "refused" when mcp-authz refused the call
CALLS_VAR = "mcp.calls"  # [(tool, outcome)] a generated endpoint answered (mcp/server.py)
