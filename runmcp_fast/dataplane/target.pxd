cdef class Replicas:
    # A service's upstream replicas, in config order.
    cdef readonly tuple pools  # of Pool
    cdef Py_ssize_t _next  # round robin: the next one to try

    cdef Pool pick(self, Pool avoid)


cdef class Target:
    # What a route leads to, flattened for the hot path (built per snapshot).
    cdef readonly object owner  # who serves it: a RouteOwner (name, label, tenant)
    cdef readonly str service_name  # owner.label, for logs
    cdef readonly str name  # the operation id, or the local route's name
    cdef readonly object operation  # the spec's Operation, or None
    cdef readonly Chain chain  # its steps by phase (never None: empty when none)
    # A local target: the gateway answers itself (admin API, MCP endpoints).
    cdef readonly object handler  # handler(LocalRequest) -> answer or awaitable; None: proxied
    # A proxied target:
    cdef readonly Replicas replicas  # None for a local target
    cdef readonly Pool pool  # the first replica's (the only one, usually)
    cdef readonly object host_header  # bytes to send as Host, or None to pass the client's on
    cdef readonly bytes upstream_path  # prepended to the path sent upstream
    cdef readonly bytes strip_prefix  # removed from the client's path first
    cdef readonly double read_timeout
    cdef readonly double connect_timeout
    # Both:
    cdef readonly long long max_body  # request bodies above this get 413
    cdef readonly double stream_keepalive  # seconds between SSE comments on an idle stream (0: none)
    cdef readonly RouteStats stats  # its counters (metrics); None when nobody counts
    cdef readonly Dispatch dispatch  # several operations on this route: picks the request's
                                     # target before anything else (None on every other route)

    cpdef bytes upstream_target(self, bytes path)
