cdef class Target:
    # What a route leads to, flattened for the hot path (built per snapshot).
    cdef readonly object owner  # who serves it: a RouteOwner (name, label, tenant)
    cdef readonly str service_name  # owner.label, for logs
    cdef readonly str name  # the operation id, or the local route's name
    cdef readonly object operation  # the spec's Operation, or None
    cdef readonly Chain chain  # its steps by phase (never None: empty when none)
    cdef readonly bint wants_params  # the router's path params go in req.params (handler, steps, hash)
    # A local target: the gateway answers itself (admin API, MCP endpoints).
    cdef readonly object handler  # handler(LocalRequest) -> answer or awaitable; None: proxied
    # A proxied target:
    cdef readonly Replicas replicas  # the service's (shared by its routes); None for a local target
    cdef readonly Pool pool  # the first replica's (the only one, usually)
    cdef readonly object host_header  # bytes to send as Host, or None to pass the client's on
    cdef readonly bytes upstream_path  # prepended to the path sent upstream (the first replica's)
    cdef readonly bytes strip_prefix  # removed from the client's path first
    cdef readonly double connect_timeout
    cdef readonly double read_timeout  # to the response head (first byte)
    cdef readonly double idle_timeout  # between two reads of the response
    cdef readonly double total_timeout  # from the first try to the response's end; 0: none
    cdef readonly bint idempotent  # retried on 502/503/504 and timeouts whatever its method
    cdef readonly bint jsonrpc  # an MCP server's routes: a POST is only retried when unsent
    # Both:
    cdef readonly long long max_body  # request bodies above this get 413
    cdef readonly double stream_keepalive  # seconds between SSE comments on an idle stream (0: none)
    cdef readonly RouteStats stats  # its counters (metrics); None when nobody counts
    cdef readonly Dispatch dispatch  # several operations on this route: picks the request's
                                     # target before anything else (None on every other route)

    cpdef bytes upstream_target(self, bytes path)
    cdef bytes _target_for(self, bytes path, bytes prefix)
