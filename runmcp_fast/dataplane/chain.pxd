cdef enum:
    # The phases of a route's chain, in the order they run (docs/architecture.md).
    PHASE_REWRITE = 10  # request id, real IP: before anything looks at the request
    PHASE_ACCESS = 20  # authentication, IP rules, limits
    PHASE_CONTRACT = 30  # the operation's parameters and body (validation/)
    PHASE_MCP = 40  # JSON-RPC envelope, session routing (mcp/)
    PHASE_RESPONSE_HEADERS = 60  # the response head, before it is written
    PHASE_LOG = 70  # after the response: access log, metrics

    # What a step does: the chain calls a step only for the hooks it has.
    HOOK_REQUEST = 1  # on_request, when the request head is read
    HOOK_RESPONSE = 2  # on_response, when the response head is ready
    HOOK_LOG = 4  # on_log, when the exchange is over


cdef enum:
    COUNTED_EVENTS = 8  # events a plugin's Counters holds besides failures


cdef class Counters:
    # What a plugin's steps counted (plugin events by index, exceptions), kept by the
    # gateway across snapshots (chain.pxi).
    cdef readonly tuple events  # the names of n[0], n[1], ...
    cdef long long n[COUNTED_EVENTS]
    cdef public long long failures  # exceptions raised by the plugin's steps


cdef class Step:
    # One step of a route's chain: a built-in (Cython, a C call through the
    # vtable) or a Python object adapted by PyStep. A hook answers None to
    # let the request go on, or an answer (see chain.pxi) to stop it.
    cdef readonly str name
    cdef readonly int phase  # PHASE_*
    cdef readonly int priority  # within a phase, higher runs first
    cdef readonly int hooks  # HOOK_* bits
    cdef readonly bint needs_params  # on_request reads req.params (the route's path params)
    # it (may) read req.vars["mcp.envelope"]; True unless its class says it never does
    cdef readonly bint reads_envelope
    cdef readonly bint fail_open  # a failure lets the request go on (else 500)
    cdef readonly Counters counts  # its plugin's counters: failures, events (adopt_counts)
    cdef double logged_at  # when a failure was last logged (at most one a second)

    cdef object on_request(self, ClientProtocol conn, Request req)
    cdef object on_body(self, ClientProtocol conn, Request req, bytes body, object state)
    cdef list on_response(self, ClientProtocol conn, Request req, int status, list lines,
                          long long content_length)
    cdef int on_log(self, ClientProtocol conn, Request req) except -1
    cdef object on_pin_failed(self, ClientProtocol conn, Request req, str detail)
    cdef object failed(self, object exc)
    # (last: a step compiled against the table before it keeps its slots)
    cdef int body_passes(self, ClientProtocol conn, Request req, bytes body,
                         object state) except -1


cdef class Chain:
    # A route's steps, sorted once (phase, then priority, then name), split by hook.
    cdef readonly tuple steps  # every step, in order
    cdef tuple request_steps  # those with HOOK_REQUEST; None when none
    cdef tuple response_steps  # HOOK_RESPONSE; None when none
    cdef tuple log_steps  # HOOK_LOG; None when none
    cdef readonly bint needs_params  # some step reads the route's params
    cdef readonly bint reads_envelope  # some step may read req.vars["mcp.envelope"]
    cdef dict _variants  # (consumer, identifying step) -> this chain with the consumer's steps
    cdef readonly tuple origin_steps  # a consumer's variant: the route's own steps (else None)

    cdef _adopt(self, tuple ordered)
    cdef Chain for_consumer(self, Consumer consumer, Step identified_by)


cdef class Consumer:
    # Who a request comes from, once an authentication step has said so (snapshot-built).
    cdef readonly str name
    cdef readonly frozenset groups
    cdef readonly tuple steps  # its own plugins' steps: they replace the route's by name
