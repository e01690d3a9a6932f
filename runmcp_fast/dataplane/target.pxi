# -- what a route leads to: its replicas, its settings, its chain (target.pxd) ----------


cdef class Target:
    """A route's target, flattened for the hot path; made by `proxy()` or `local()`.

    A proxied target sends requests to its service's replicas; a local one
    answers them itself: `handler(LocalRequest)` returns (status, headers,
    body) or an awaitable of it, and the body may be a `LocalStream`, written
    to as long as the client listens. Either way the route's `chain` runs
    first (docs/architecture.md).
    """

    def __init__(self, *args, **kwargs):
        raise TypeError("make a Target with Target.proxy(...) or Target.local(...)")

    @staticmethod
    def proxy(*, owner, str name, replicas, long long max_body, double read_timeout,
              double connect_timeout, operation=None, steps=(), host_header=None,
              bytes upstream_path=b"", bytes strip_prefix=b"", double stream_keepalive=0.0,
              RouteStats stats=None, double idle_timeout=0.0, double total_timeout=0.0,
              bint idempotent=False, bint jsonrpc=False):
        """A target proxied to `replicas` (the service's Replicas, or a tuple of Pools).

        `read_timeout` runs to the response head, `idle_timeout` (default: the
        same) between reads after it, `total_timeout` (0: none) from the first
        try to the response's end.
        """
        cdef Target target = _new_target(
            owner, name, operation, steps, max_body, stream_keepalive, stats
        )
        if isinstance(replicas, Replicas):
            target.replicas = replicas
        else:
            target.replicas = Replicas(tuple(replicas))
        target.pool = target.replicas.pools[0]
        target.host_header = host_header
        target.upstream_path = upstream_path
        target.strip_prefix = strip_prefix
        target.read_timeout = read_timeout
        target.connect_timeout = connect_timeout
        target.idle_timeout = idle_timeout if idle_timeout > 0 else read_timeout
        target.total_timeout = total_timeout
        target.idempotent = idempotent
        target.jsonrpc = jsonrpc
        target.wants_params = target.chain.needs_params or (
            target.replicas.key_kind == KEY_PATH
        )
        return target

    @staticmethod
    def local(*, owner, str name, handler, long long max_body, steps=(),
              double stream_keepalive=0.0, RouteStats stats=None):
        """A target the gateway answers itself with `handler`."""
        if handler is None:
            raise ValueError("a local target needs a handler")
        cdef Target target = _new_target(owner, name, None, steps, max_body, stream_keepalive, stats)
        target.handler = handler
        target.wants_params = True
        target.upstream_path = b""
        target.strip_prefix = b""
        return target

    @staticmethod
    def dispatching(*, owner, str name, Dispatch dispatch):
        """A route of several operations: `dispatch` picks one of its targets per request.

        Its own chain is its first target's, for a CORS preflight routed before
        any operation is picked; everything else is the picked target's.
        """
        if not dispatch.targets:
            raise ValueError("a dispatching target needs targets")
        cdef Target first = <Target>dispatch.targets[0]
        cdef Target target = _new_target(owner, name, None, first.chain, first.max_body,
                                         first.stream_keepalive, None)
        target.dispatch = dispatch
        target.replicas = first.replicas
        target.pool = first.pool
        target.handler = first.handler
        target.upstream_path = first.upstream_path
        target.strip_prefix = first.strip_prefix
        return target

    def __repr__(self):
        return f"<Target {self.service_name!r} {self.name!r}>"

    cpdef bytes upstream_target(self, bytes path):
        """The request-target sent upstream for the client's `path` (query included)."""
        return self._target_for(path, self.upstream_path)

    cdef bytes _target_for(self, bytes path, bytes prefix):
        """`path` without strip_prefix, with `prefix` (a replica's URL path) in front."""
        cdef bytes strip = self.strip_prefix
        cdef bytes rest
        if strip and path.startswith(strip):
            rest = path[len(strip):]
            if not rest or rest[:1] == b"?":
                path = b"/" + rest
            elif rest[:1] == b"/":
                path = rest
            # else /apiary does not start with the prefix /api: unchanged
        if prefix:
            return prefix + path
        return path


cdef Target _new_target(owner, str name, operation, steps, long long max_body,
                        double stream_keepalive, RouteStats stats):
    cdef Target target = Target.__new__(Target)
    target.stats = stats
    target.owner = owner
    target.service_name = owner.label
    target.name = name
    target.operation = operation
    if isinstance(steps, Chain):
        target.chain = steps
    else:
        target.chain = Chain(steps) if steps else _NO_STEPS
    target.max_body = max_body
    target.stream_keepalive = stream_keepalive
    return target
