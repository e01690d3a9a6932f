# -- what a route leads to: its replicas, its settings, its chain (target.pxd) ----------


cdef class Replicas:
    """A service's upstream replicas: round robin, skipping one that failed lately."""

    def __init__(self, tuple pools):
        if not pools:
            raise ValueError("a service needs at least one upstream")
        self.pools = pools
        self._next = 0

    cdef Pool pick(self, Pool avoid):
        """The next replica not marked down (and not `avoid`); None when none is left."""
        cdef tuple pools = self.pools
        cdef Py_ssize_t n = len(pools)
        cdef Py_ssize_t k, i
        cdef Pool pool
        cdef double now
        if n == 1:
            pool = <Pool>pools[0]
            return pool if pool is not avoid else None
        now = monotonic()
        for k in range(n):
            i = self._next
            self._next = i + 1 if i + 1 < n else 0
            pool = <Pool>pools[i]
            if pool is not avoid and pool.down_until <= now:
                return pool
        if avoid is None:
            # Every replica failed lately: try the next one anyway rather than refuse.
            i = self._next
            self._next = i + 1 if i + 1 < n else 0
            return <Pool>pools[i]
        return None


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
              RouteStats stats=None):
        """A target proxied to `replicas` (a Replicas, or a tuple of Pools)."""
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
        return target

    @staticmethod
    def local(*, owner, str name, handler, long long max_body, steps=(),
              double stream_keepalive=0.0, RouteStats stats=None):
        """A target the gateway answers itself with `handler`."""
        if handler is None:
            raise ValueError("a local target needs a handler")
        cdef Target target = _new_target(owner, name, None, steps, max_body, stream_keepalive, stats)
        target.handler = handler
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
        cdef bytes strip = self.strip_prefix
        cdef bytes rest
        if strip and path.startswith(strip):
            rest = path[len(strip):]
            if not rest or rest[:1] == b"?":
                path = b"/" + rest
            elif rest[:1] == b"/":
                path = rest
            # else /apiary does not start with the prefix /api: unchanged
        if self.upstream_path:
            return self.upstream_path + path
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
