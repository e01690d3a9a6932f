cdef enum:
    # How a service's replica is chosen (Replicas.policy).
    LB_LEAST_REQUEST = 0  # the less busy of two drawn at random (power of two choices)
    LB_ROUND_ROBIN = 1  # smooth weighted round robin (nginx's)
    LB_HASH = 2  # consistent hashing on a request key (Maglev or a ring)
    # What a hash policy reads (Replicas.key_kind).
    KEY_NONE = 0
    KEY_HEADER = 1  # a header's value (the MCP session: Mcp-Session-Id)
    KEY_COOKIE = 2
    KEY_QUERY = 3  # a query parameter's raw value
    KEY_PATH = 4  # a path parameter of the route (req.params)
    # Why a try failed (bits): what retries are allowed on (Replicas.retry_on) and
    # what outlier detection counts as a failure (Replicas.fail_mask).
    WHY_CONNECT = 1  # the connect failed or was refused: nothing was written
    WHY_RESET = 2  # the connection closed or reset before any byte of the response
    WHY_TIMEOUT = 4  # no response head within the first-byte timeout
    WHY_502 = 8
    WHY_503 = 16
    WHY_504 = 32
    WHY_5XX = 64  # any 5xx answer (outlier detection only)
    RETRY_REASONS = 6  # the first six: Replicas.retried[] counts each
    # Which circuit-breaker limit refused a request.
    BREAKER_PENDING = 0
    BREAKER_REQUESTS = 1


cdef class Replica:
    # One replica of a service: its pool, its share, its load and its health.
    # Made per service (snapshot.py); its health carries over to the Replica of
    # the same URL when the service is rebuilt (Replicas.adopt).
    cdef readonly Pool pool  # its connections (shared with any service on the same host:port)
    cdef readonly str url
    cdef readonly Py_ssize_t index  # its place in the service's list (an MCP session names it)
    cdef readonly int weight
    cdef readonly bytes path  # its URL's path: put in front of the request's path
    cdef readonly bytes authority  # its host[:port]: the Host sent with `host_header: upstream`
    cdef readonly bint own_head  # its path or Host differ from the first replica's: a head of its own
    cdef long long cw  # smooth weighted round robin: its current weight
    # -- load (counted for every replica of a service that is not `simple`)
    cdef readonly long long active  # requests on it now: waiting for a connection, or sent
    cdef readonly long long pending  # of those, waiting for a connection
    # -- health
    cdef readonly bint up  # in rotation: not ejected, and its active check (if any) passes
    cdef readonly bint ejected
    cdef readonly double ejected_until  # monotonic time it comes back
    cdef readonly int ejections  # the ejection time's multiplier; goes down while it stays in
    cdef double decay_at  # when `ejections` goes down next
    cdef readonly int consecutive  # failures in a row (outlier detection)
    cdef readonly bint check_up  # the active check's verdict (True: no check, or passing)
    # -- counted, for /admin/upstreams and the metrics
    cdef readonly long long ejected_total
    cdef long long rejected[2]  # by the circuit breaker: BREAKER_PENDING, BREAKER_REQUESTS
    cdef public str last_error
    cdef public double last_error_at  # wall time


cdef class Replicas:
    # A service's replicas, and everything decided across them: which one a
    # request goes to, which are in rotation, and the retry budget.
    cdef readonly tuple pools  # of Pool, in config order (an MCP session names one by index)
    cdef readonly tuple replicas  # of Replica, in the same order
    cdef readonly Py_ssize_t count
    cdef readonly bint simple  # one replica and no circuit breaker: taken as it is, nothing counted
    cdef Clock clock  # coarse time for the connect-failure skip (pool.down_until)
    cdef readonly int policy  # LB_*
    cdef Py_ssize_t _next  # round robin: the next place
    cdef unsigned short* schedule  # unequal weights: replica indexes in smooth weighted order
    cdef Py_ssize_t schedule_len  # 0: equal weights, no schedule
    cdef unsigned long long rng  # xorshift64* state (least request's draws)
    # -- consistent hashing
    cdef readonly int key_kind  # KEY_*
    cdef bytes key_name  # the header or cookie name (lower case), the query parameter
    cdef str key_param  # the path parameter
    cdef unsigned short* table  # Maglev: hash % table_size -> replica index
    cdef Py_ssize_t table_size
    cdef unsigned long long* points  # a ring: sorted points, and the replica of each
    cdef unsigned short* owners
    cdef Py_ssize_t ring_size
    # -- outlier detection
    cdef bint outlier  # on (and more than one replica)
    cdef int fail_mask  # WHY_* bits that count as failures
    cdef int consecutive_limit
    cdef double base_ejection
    cdef double max_ejection
    cdef Py_ssize_t max_ejected  # at most this many ejected at once (at least one)
    cdef double panic_below  # fewer replicas up than this: spread over all of them
    cdef readonly Py_ssize_t ejected_count
    cdef readonly Py_ssize_t up_count
    cdef readonly bint panic
    # -- retries
    cdef readonly int retry_on  # WHY_* bits; 0: no retries on other replicas
    cdef readonly int attempts  # retries per request at most
    cdef double budget_ratio  # a first try adds this to the budget
    cdef readonly double budget_min
    cdef readonly double budget  # retries allowed now (a retry takes 1)
    cdef double backoff_base
    cdef double backoff_max
    cdef readonly long long active  # requests on any of its replicas now
    cdef long long retried[6]  # retries by reason (RETRY_REASONS, in WHY_* bit order)
    cdef readonly long long budget_exhausted  # retries refused by the budget
    # -- circuit breaker (0: no limit)
    cdef readonly long long max_connections
    cdef readonly long long max_pending
    cdef readonly long long max_requests

    cdef Replica choose(self, Request req, unsigned long long tried)
    cdef Replica _round_robin(self, unsigned long long tried, double now)
    cdef Replica _least_request(self, unsigned long long tried, double now)
    cdef Replica _by_hash(self, unsigned long long h, unsigned long long tried, double now)
    cdef Replica _fallback(self, unsigned long long tried)
    cdef object _key(self, Request req)
    cdef inline bint _usable(self, Replica r, unsigned long long tried, double now):
        """In rotation (or every replica is, in panic), not failing connects, not tried yet."""
        return (
            (r.up or self.panic)
            and (r.pool is None or r.pool.down_until <= now)
            and not (tried >> (r.index & 63)) & 1
        )
    cdef void first_try(self) noexcept
    cdef bint withdraw(self, int why) noexcept
    cdef double backoff(self, int retries) noexcept
    cdef void success(self, Replica r) noexcept
    cdef void failure(self, Replica r, int why, str detail)
    cdef void _refresh(self) noexcept
