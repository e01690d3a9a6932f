cdef enum:
    LATENCY_BUCKETS = 16  # finite histogram buckets (LATENCY_BOUNDS); +Inf is one more


cdef class RouteStats:
    # One route's counters: C integers a log step (prometheus) bumps with no Python
    # call; kept across config reloads while the route exists (metrics/registry.py).
    cdef readonly str service  # the service's label
    cdef readonly str route  # the operation id, or the route's name
    cdef readonly str method  # the route's method ("*" for a prefix route)
    cdef long long requests[6]  # by status class: [0] none (the client left), [1..5] 1xx..5xx
    cdef long long latency[17]  # request duration, per bucket (not cumulative); [16] +Inf
    cdef double latency_sum
    cdef long long upstream[17]  # upstream response time (request written to head received)
    cdef double upstream_sum
    cdef long long upstream_count
    cdef long long bytes_in  # request bodies
    cdef long long bytes_out  # response bodies (proxied), whole answers (the gateway's own)
    cdef public long long streams  # event streams open now (SSE: MCP, local streams)
    cdef public dict tools  # an MCP route's tools/call by (tool, outcome); bounded (record_tool)

    cdef void record(self, int status, double seconds, double upstream_seconds,
                     long long bytes_in, long long bytes_out) noexcept
    cdef record_tool(self, str tool, str outcome)
