# -- the pool: keep-alive connections per upstream (pool.pxd) -----------------------------


cdef object _own_tls_client():
    """A new runmcp_fast._tls.TlsClientContext (one per pool: it reads the trusted CAs
    as they are now, as ssl.create_default_context() did), or None: RUNMCP_TLS=python,
    or the module was not built."""
    if os.environ.get("RUNMCP_TLS", "").lower() == "python":
        return None
    try:
        from runmcp_fast._tls import TlsClientContext
    except ImportError:
        return None
    return TlsClientContext()


cdef class Pool:
    """A keep-alive connection pool per upstream target (scheme, host, port).

    Idle connections are a LIFO stack (the warmest socket first, the coldest
    ages out); waiters are FIFO. Acquiring an idle connection is a C call;
    only opening a new one awaits (`loop.create_connection`), on its own task.
    """

    def __init__(self, loop, upstream, config, Clock clock):
        self._loop = loop
        self.upstream = upstream
        self.config = config
        self.clock = clock
        self.upstream_authority = upstream.authority.encode("ascii")
        self.name = f"{upstream.scheme}://{upstream.authority}"
        self._idle = []
        self._waiters = deque()
        self.max_connections = config.max_connections
        self.max_idle = config.max_idle
        self.max_requests = config.max_requests
        self.idle_timeout = config.idle_timeout
        self.wait_timeout = config.wait_timeout
        self.fail_timeout = getattr(config, "fail_timeout", 10.0)
        self.down_until = 0.0
        self._tasks = set()
        self._ssl = None
        self._own_tls = None
        if upstream.scheme == "https":
            # OpenSSL directly (runmcp_fast._tls) when built, as the listeners do;
            # else the event loop's TLS. Both trust the system's CAs.
            self._own_tls = _own_tls_client()
            if self._own_tls is None:
                self._ssl = ssl.create_default_context()

    # -- the hot path ---------------------------------------------------------

    cpdef UpstreamConnection acquire(self, ClientProtocol client, double connect_timeout,
                                     long long limit=0):
        """An idle connection now, or None: `client.upstream_attached` comes later.

        `limit` (a service's circuit breaker), when lower than the pool's own,
        caps the connections opened for this request's sake.
        """
        cdef UpstreamConnection conn
        cdef list idle = self._idle
        while self._idle_n:
            self._idle_n -= 1
            conn = <UpstreamConnection>idle[self._idle_n]
            idle[self._idle_n] = None
            if not conn.closed and conn.reads_alive(False):
                return conn
            # Closed while idle: connection_lost already took it off the count.
        if limit <= 0 or limit > self.max_connections:
            limit = self.max_connections
        # Owed to this request, not to the connection: see awaits_connection_for.
        if self.open_count < limit:
            self._open(client, client.active, connect_timeout)
        else:
            self._waiters.append(
                (client, client.active, monotonic() + self.wait_timeout, connect_timeout, limit)
            )
        return None

    cpdef release(self, UpstreamConnection conn):
        """Take back a connection whose exchange ended cleanly at a message boundary."""
        cdef ClientProtocol client
        cdef Request req
        if self._closed or conn.closed:
            conn.close()
            return
        waiters = self._waiters
        while waiters:
            client, req, _deadline, _timeout, _limit = waiters.popleft()
            if client.awaits_connection_for(req):
                client.upstream_attached(conn)
                return
        if self._idle_n < self.max_idle and not self._retired:
            conn.idle_since = monotonic()
            if self._idle_n < len(self._idle):
                self._idle[self._idle_n] = conn
            else:
                self._idle.append(conn)
            self._idle_n += 1
        else:
            conn.close()

    cpdef connection_closed(self):
        """Called once for every connection opened, when its socket is gone (or never came)."""
        cdef ClientProtocol client
        cdef Request req
        self.open_count -= 1
        # A slot freed: the first live waiter gets a fresh connection.
        waiters = self._waiters
        while waiters and not self._closed:
            client, req, _deadline, timeout, limit = waiters[0]
            if not client.awaits_connection_for(req):
                waiters.popleft()
                continue
            if self.open_count >= limit:
                break
            waiters.popleft()
            self._open(client, req, timeout)
            break

    cpdef mark_down(self):
        """A connect failed: let other replicas take the traffic for a while."""
        if self.fail_timeout > 0:
            self.down_until = monotonic() + self.fail_timeout

    cpdef open_fresh(self, ClientProtocol client, double connect_timeout, long long limit=0):
        """A new connection for a retry, never a reused one; under `limit` (the service's
        circuit breaker) and the pool's own, as `acquire` opens one: else it waits."""
        if limit <= 0 or limit > self.max_connections:
            limit = self.max_connections
        if self.open_count < limit:
            self._open(client, client.active, connect_timeout)
        else:
            self._waiters.append(
                (client, client.active, monotonic() + self.wait_timeout, connect_timeout, limit)
            )

    # -- slow paths -------------------------------------------------------------

    cdef _open(self, ClientProtocol client, Request req, double connect_timeout):
        self.open_count += 1
        task = self._loop.create_task(self._connect(client, req, connect_timeout))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, ClientProtocol client, Request req, double timeout):
        upstream = self.upstream
        # A plain connection reads into the loop's buffer; a TLS one gets bytes (upstream.pxi).
        kind = UpstreamConnection if self._ssl or self._own_tls else _BufferedProtocol
        try:
            if self._own_tls is not None:
                conn = await asyncio.wait_for(self._connect_own_tls(), timeout)
            else:
                _transport, conn = await asyncio.wait_for(
                    self._loop.create_connection(
                        lambda: kind(self),
                        upstream.host,
                        upstream.port,
                        ssl=self._ssl,
                        server_hostname=upstream.host if self._ssl else None,
                    ),
                    timeout,
                )
        except (TimeoutError, asyncio.TimeoutError):
            self.timeouts += 1
            self.connection_closed()
            if client.awaits_connection_for(req):
                client.connect_failed(self, 504, f"connecting to {self.name} timed out")
            return
        except OSError as exc:
            self.connect_failures += 1
            self.connection_closed()
            if client.awaits_connection_for(req):
                reason = exc.strerror or str(exc) or type(exc).__name__
                client.connect_failed(self, 502, f"can not connect to {self.name}: {reason}")
            return
        except asyncio.CancelledError:
            self.connection_closed()
            raise
        self.down_until = 0.0
        if not client.awaits_connection_for(req) or self._closed:
            self.release(conn)
        else:
            client.upstream_attached(conn)

    async def _connect_own_tls(self):
        """TCP, then the TLS handshake (its certificate checked): the connection."""
        from runmcp_fast._tls import connect_to

        upstream = self.upstream
        conn = UpstreamConnection(self)
        _transport, tls = await self._loop.create_connection(
            lambda: connect_to(self._own_tls, conn, upstream.host), upstream.host, upstream.port
        )
        await tls.handshake()
        return conn

    @property
    def idle_count(self):
        return self._idle_n

    @property
    def waiting_count(self):
        return len(self._waiters)

    def sweep(self, double now):
        """Close idle connections past their idle timeout; 503 waiters past theirs."""
        cdef list idle = self._idle
        cdef Py_ssize_t expired = 0
        cdef double limit
        cdef UpstreamConnection conn
        cdef ClientProtocol client
        cdef Request req
        if idle:
            limit = now - self.idle_timeout
            # The stack's bottom is the coldest: expired ones are a prefix.
            while expired < self._idle_n and (<UpstreamConnection>idle[expired]).idle_since <= limit:
                expired += 1
            if expired:
                for conn in idle[:expired]:
                    conn.close()
                del idle[:expired]
                self._idle_n -= expired
            for conn in idle[:self._idle_n]:
                conn.reads_alive(True)  # (a reset unseen: reads.pxi, poll_lost, socket_ready)
        waiters = self._waiters
        while waiters:
            client, req, deadline, _timeout, _limit = waiters[0]
            if client.awaits_connection_for(req) and deadline > now:
                break
            waiters.popleft()
            if client.awaits_connection_for(req):
                client.upstream_unavailable(
                    503, f"no connection to {self.name} came free in time (pool full)"
                )

    def retire(self):
        """No service uses this upstream any more: keep no idle connection.

        Requests routed before the change still get connections (a retired
        pool keeps working); each one closes when released.
        """
        cdef UpstreamConnection conn
        self._retired = True
        for conn in self._idle[:self._idle_n]:
            conn.close()
        self._idle.clear()
        self._idle_n = 0

    def close(self):
        """Close idle connections and refuse new work; busy ones close when released."""
        cdef UpstreamConnection conn
        cdef ClientProtocol client
        cdef Request req
        self._closed = True
        for conn in self._idle[:self._idle_n]:
            conn.close()
        self._idle.clear()
        self._idle_n = 0
        for task in self._tasks:
            task.cancel()
        waiters = self._waiters
        while waiters:
            client, req, _deadline, _timeout, _limit = waiters.popleft()
            if client.awaits_connection_for(req):
                client.upstream_unavailable(503, "the gateway is shutting down")
