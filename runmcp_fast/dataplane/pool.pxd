cdef class Pool:
    # The keep-alive connections to one upstream (scheme, host, port).
    cdef object _loop
    cdef readonly object upstream
    cdef readonly object config
    cdef readonly Clock clock
    cdef readonly bytes upstream_authority
    cdef readonly str name
    cdef list _idle  # LIFO: the warmest on top, the coldest ages out at the bottom
    # The stack is _idle[:_idle_n]; the slots above hold None. PERF: a list popped
    # empty frees its array and regrows it on the next append: two reallocs a request.
    cdef Py_ssize_t _idle_n
    cdef object _waiters  # FIFO deque of (client, request, deadline, connect_timeout, limit)
    cdef readonly long long open_count  # open or opening connections, idle ones included
    cdef long long max_connections
    cdef long long max_idle
    cdef readonly long long max_requests
    cdef double idle_timeout
    cdef double wait_timeout
    cdef set _tasks
    cdef bint _closed
    cdef bint _retired
    cdef object _ssl
    cdef readonly object _own_tls  # a runmcp_fast._tls.TlsClientContext, or None
    cdef bytearray _read_buffer  # its loop's, its plain connections read into (upstream.pxi)
    cdef readonly double down_until  # skipped by its service's round robin until then
    cdef public long long connect_failures  # connections refused or failed (metrics)
    cdef public long long timeouts  # connects and reads that timed out (metrics)
    cdef double fail_timeout

    cpdef UpstreamConnection acquire(self, ClientProtocol client, double connect_timeout,
                                     long long limit=*)
    cpdef release(self, UpstreamConnection conn)
    cpdef connection_closed(self)
    cpdef mark_down(self)
    cpdef open_fresh(self, ClientProtocol client, double connect_timeout, long long limit=*)
    cdef _open(self, ClientProtocol client, Request req, double connect_timeout)
