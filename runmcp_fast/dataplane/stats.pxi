# -- counters per route, for metrics (stats.pxd) --------------------------------------------


# Request and upstream latency buckets, seconds (log scale, fixed: every route and
# every worker has the same, so they sum). Prometheus's le labels.
cdef double LATENCY_BOUNDS[16]
LATENCY_BOUNDS[:] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
]
LATENCY_BUCKETS_SECONDS = tuple(LATENCY_BOUNDS[i] for i in range(LATENCY_BUCKETS))
MAX_TOOL_SERIES = 1000  # (tool, outcome) pairs counted per route


cdef inline int _bucket(double seconds) noexcept:
    cdef int i
    for i in range(LATENCY_BUCKETS):
        if seconds <= LATENCY_BOUNDS[i]:
            return i
    return LATENCY_BUCKETS


@cython.final
cdef class RouteStats:
    """One route's counters; `snapshot()` reads them (a scrape, not the hot path)."""

    def __init__(self, str service, str route, str method):
        self.service = service
        self.route = route
        self.method = method

    cdef void record(self, int status, double seconds, double upstream_seconds,
                     long long bytes_in, long long bytes_out) noexcept:
        cdef int klass = status // 100 if 100 <= status < 600 else 0
        self.requests[klass] += 1
        self.latency[_bucket(seconds)] += 1
        self.latency_sum += seconds
        if upstream_seconds >= 0:
            self.upstream[_bucket(upstream_seconds)] += 1
            self.upstream_sum += upstream_seconds
            self.upstream_count += 1
        self.bytes_in += bytes_in
        self.bytes_out += bytes_out

    cdef record_tool(self, str tool, str outcome):
        """A tools/call answered: counted by tool name, bounded (a client naming tools at
        random must not grow the series without end: past the bound, "(other)")."""
        if self.tools is None:
            self.tools = {}
        key = (tool, outcome)
        if key not in self.tools and len(self.tools) >= MAX_TOOL_SERIES:
            key = ("(other)", outcome)
        self.tools[key] = self.tools.get(key, 0) + 1

    def snapshot(self):
        """The counters as plain data: requests by class, histograms, bytes."""
        return {
            "requests": [self.requests[i] for i in range(6)],
            "latency": [self.latency[i] for i in range(LATENCY_BUCKETS + 1)],
            "latency_sum": self.latency_sum,
            "upstream": [self.upstream[i] for i in range(LATENCY_BUCKETS + 1)],
            "upstream_sum": self.upstream_sum,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "streams": self.streams,
            "tools": dict(self.tools) if self.tools else {},
        }

    def __repr__(self):
        return f"<RouteStats {self.service!r} {self.method} {self.route!r}>"
