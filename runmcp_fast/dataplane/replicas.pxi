# -- a service's replicas: which one a request goes to, which are in rotation (replicas.pxd) --

cdef extern from *:
    """
    /* splitmix64's finalizer: spreads FNV's bits over the whole word. */
    static inline unsigned long long rmf_mix64(unsigned long long x) {
        x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ULL;
        x ^= x >> 27; x *= 0x94d049bb133111ebULL;
        return x ^ (x >> 31);
    }
    /* FNV-1a over the bytes, then mixed: the same on every process and node
       (Python's hash() of bytes is salted per process). */
    static inline unsigned long long rmf_hash64(const char* p, Py_ssize_t n) {
        unsigned long long h = 1469598103934665603ULL;
        for (Py_ssize_t i = 0; i < n; i++) { h ^= (unsigned char)p[i]; h *= 1099511628211ULL; }
        return rmf_mix64(h);
    }
    /* xorshift64*: least request's two draws cost a few instructions. */
    static inline unsigned long long rmf_next(unsigned long long* s) {
        unsigned long long x = *s;
        x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
        *s = x;
        return x * 2685821657736338717ULL;
    }
    """
    unsigned long long rmf_mix64(unsigned long long x) nogil
    unsigned long long rmf_hash64(const char* p, Py_ssize_t n) nogil
    unsigned long long rmf_next(unsigned long long* s) nogil


MAGLEV_TABLE_SIZE = 65537  # a prime, as Envoy's default: ~100x the replicas it is meant for
RING_POINTS_PER_WEIGHT = 160  # ketama's
# Retry reasons, in WHY_* bit order (Replicas.retried, the metrics' `reason` label).
RETRY_REASON_NAMES = ("connect", "reset", "timeout", "502", "503", "504")
_WHY_BITS = {"connect": WHY_CONNECT, "reset": WHY_RESET, "timeout": WHY_TIMEOUT,
             502: WHY_502, 503: WHY_503, 504: WHY_504, "5xx": WHY_5XX}


cpdef unsigned long long key_hash(bytes key):
    """The 64-bit hash a request key is placed by (the same on every process and node)."""
    return rmf_hash64(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))


@cython.final
cdef class Replica:
    """One replica of a service: its pool, its weight, its load and its health."""

    def __init__(self, Pool pool, str url, Py_ssize_t index, int weight=1, bytes path=b"",
                 bytes authority=b"", bint own_head=False):
        self.pool = pool
        self.url = url
        self.index = index
        self.weight = weight if weight > 0 else 1
        self.path = path
        self.authority = authority
        self.own_head = own_head
        self.up = True
        self.check_up = True

    @property
    def state(self):
        """up; ejected (passive); unhealthy (its active check fails); down (connects fail)."""
        if self.ejected:
            return "ejected"
        if not self.check_up:
            return "unhealthy"
        if self.pool is not None and self.pool.down_until > monotonic():
            return "down"
        return "up"

    @property
    def ejected_for(self):
        """Seconds until an ejected replica comes back (0 when it is not ejected)."""
        return max(0.0, self.ejected_until - monotonic()) if self.ejected else 0.0

    @property
    def rejected_pending(self):
        return self.rejected[BREAKER_PENDING]

    @property
    def rejected_requests(self):
        return self.rejected[BREAKER_REQUESTS]

    def __repr__(self):
        return f"<Replica {self.url} {self.state}>"


cdef class Replicas:
    """A service's replicas and the choices across them (docs/resilience.md).

    - Balancing: least request over two random draws (weighted), smooth weighted
      round robin, or consistent hashing (Maglev or a ring) on a request key.
    - Passive health: failures in a row eject a replica for a while, never more
      than `max_ejected` at once; with fewer than `panic_below` replicas up, every
      replica takes traffic again (panic).
    - The retry budget: a first try adds `budget_ratio`, a retry takes one.

    PERF: a service with one replica and no circuit breaker is `simple`: the
    data plane takes its pool as it is and counts nothing.
    """

    def __init__(self, pools, *, weights=None, urls=None, paths=None, authorities=None,
                 str policy="least_request", hash_on=None, str algorithm="maglev",
                 outlier=None, retries=None, breaker=None):
        pools = tuple(pools)
        if not pools:
            raise ValueError("a service needs at least one upstream")
        cdef Py_ssize_t n = len(pools)
        cdef Py_ssize_t i
        if n > 65535:
            raise ValueError("a service has at most 65,535 replicas")
        self.pools = pools
        self.count = n
        weights = list(weights) if weights is not None else [1] * n
        urls = list(urls) if urls is not None else [
            (p.name if p is not None else f"replica-{i}") for i, p in enumerate(pools)
        ]
        paths = list(paths) if paths is not None else [b""] * n
        # Only with host_header: upstream does each replica send its own Host.
        authorities = list(authorities) if authorities is not None else [b""] * n
        self.replicas = tuple(
            Replica(pools[i], urls[i], i, weights[i], paths[i], authorities[i],
                    paths[i] != paths[0] or authorities[i] != authorities[0])
            for i in range(n)
        )
        for p in pools:
            if p is not None:
                self.clock = (<Pool>p).clock
                break
        self.rng = ((id(self) * 11400714819323198485) & 0xFFFFFFFFFFFFFFFF) | 1
        self.policy = {"least_request": LB_LEAST_REQUEST, "round_robin": LB_ROUND_ROBIN,
                       "hash": LB_HASH}[policy]
        self.up_count = n
        if len(set(weights)) > 1:
            self._make_schedule()
        if self.policy == LB_HASH and hash_on is not None:
            self._key_from(hash_on)
            if algorithm == "ring":
                self._make_ring()
            else:
                self._make_maglev()
        if outlier is not None and outlier.enabled and n > 1:
            self.outlier = True
            self.consecutive_limit = outlier.consecutive_failures
            self.fail_mask = 0
            for name in outlier.failures:
                self.fail_mask |= _WHY_BITS[name]
            self.base_ejection = outlier.base_ejection_time
            self.max_ejection = outlier.max_ejection_time
            self.max_ejected = max(1, int(n * outlier.max_ejection_percent / 100.0))
            self.panic_below = n * outlier.panic_threshold / 100.0
        if retries is not None and retries.attempts > 0 and n > 1:
            for reason in retries.on:
                self.retry_on |= _WHY_BITS[reason]
            self.attempts = retries.attempts
            self.budget_ratio = retries.budget_percent / 100.0
            self.budget_min = retries.budget_min
            self.budget = self.budget_min
            self.backoff_base = retries.backoff_base
            self.backoff_max = retries.backoff_max
        if breaker is not None:
            self.max_connections = breaker.max_connections or 0
            self.max_pending = breaker.max_pending or 0
            self.max_requests = breaker.max_requests or 0
        self.simple = n == 1 and breaker is None

    def __dealloc__(self):
        free(self.schedule)
        free(self.table)
        free(self.points)
        free(self.owners)

    # -- built once, with the snapshot ----------------------------------------------

    def _make_schedule(self):
        """Smooth weighted round robin run once over a whole cycle (nginx's algorithm):
        each replica appears `weight` times, spread out. Round robin walks it; least
        request draws from it (weighted draws)."""
        cdef Py_ssize_t n = self.count
        cdef list weights = [(<Replica>r).weight for r in self.replicas]
        cdef long long total = sum(weights)
        cdef Py_ssize_t k, i, best
        cdef list current = [0] * n
        self.schedule = <unsigned short*>malloc(total * sizeof(unsigned short))
        if self.schedule == NULL:
            raise MemoryError()
        for k in range(total):
            best = 0
            for i in range(n):
                current[i] += weights[i]
                if current[i] > current[best]:
                    best = i
            current[best] -= total
            self.schedule[k] = <unsigned short>best
        self.schedule_len = total

    def _key_from(self, hash_on):
        if hash_on.header is not None:
            self.key_kind = KEY_HEADER
            self.key_name = hash_on.header.lower().encode("latin-1")
        elif hash_on.cookie is not None:
            self.key_kind = KEY_COOKIE
            self.key_name = hash_on.cookie.encode("latin-1")
        elif hash_on.query is not None:
            self.key_kind = KEY_QUERY
            self.key_name = hash_on.query.encode("latin-1")
        elif hash_on.path is not None:
            self.key_kind = KEY_PATH
            self.key_param = hash_on.path
        elif hash_on.session:
            self.key_kind = KEY_HEADER
            self.key_name = b"mcp-session-id"

    def _make_maglev(self):
        """Maglev's table (Eisenbud et al., 2016): each replica fills the slots of its own
        permutation in turn (weighted: as often as its weight allows), so a replica added
        or removed moves about its share of the slots."""
        cdef Py_ssize_t m = MAGLEV_TABLE_SIZE
        cdef Py_ssize_t n = self.count
        cdef Py_ssize_t i, filled = 0
        cdef unsigned long long c
        cdef int max_weight = max((<Replica>r).weight for r in self.replicas)
        cdef Replica r
        cdef bytes name
        self.table = <unsigned short*>malloc(m * sizeof(unsigned short))
        cdef unsigned long long* offset = <unsigned long long*>malloc(n * sizeof(unsigned long long))
        cdef unsigned long long* skip = <unsigned long long*>malloc(n * sizeof(unsigned long long))
        cdef unsigned long long* nxt = <unsigned long long*>malloc(n * sizeof(unsigned long long))
        cdef double* credit = <double*>malloc(n * sizeof(double))
        cdef char* taken = <char*>malloc(m)
        if not (self.table and offset and skip and nxt and credit and taken):
            free(offset); free(skip); free(nxt); free(credit); free(taken)
            raise MemoryError()
        memset(taken, 0, m)
        for i in range(n):
            r = self.replicas[i]
            name = r.url.encode("utf-8")
            offset[i] = rmf_hash64(name, len(name)) % m
            name = name + b"#skip"
            skip[i] = rmf_hash64(name, len(name)) % (m - 1) + 1
            nxt[i] = 0
            credit[i] = 0.0
        while True:
            for i in range(n):
                credit[i] += (<Replica>self.replicas[i]).weight / <double>max_weight
                if credit[i] < 1.0:
                    continue
                credit[i] -= 1.0
                c = (offset[i] + nxt[i] * skip[i]) % m
                while taken[c]:
                    nxt[i] += 1
                    c = (offset[i] + nxt[i] * skip[i]) % m
                taken[c] = 1
                self.table[c] = <unsigned short>i
                nxt[i] += 1
                filled += 1
                if filled == m:
                    break
            if filled == m:
                break
        free(offset); free(skip); free(nxt); free(credit); free(taken)
        self.table_size = m

    def _make_ring(self):
        """A hash ring: RING_POINTS_PER_WEIGHT points per unit of weight per replica, each
        at the hash of its URL and number; a key goes to the first point at or after it."""
        cdef list pairs = []
        cdef Replica r
        cdef bytes name
        cdef Py_ssize_t i, k
        for r in self.replicas:
            for k in range(RING_POINTS_PER_WEIGHT * r.weight):
                name = f"{r.url}-{k}".encode("utf-8")
                pairs.append((rmf_hash64(name, len(name)), r.index))
        pairs.sort()
        self.ring_size = len(pairs)
        self.points = <unsigned long long*>malloc(self.ring_size * sizeof(unsigned long long))
        self.owners = <unsigned short*>malloc(self.ring_size * sizeof(unsigned short))
        if self.points == NULL or self.owners == NULL:
            raise MemoryError()
        for i in range(self.ring_size):
            self.points[i] = pairs[i][0]
            self.owners[i] = pairs[i][1]

    def owner_of(self, bytes key):
        """The replica index a key hashes to (every replica in rotation): for tests."""
        if self.table_size == 0 and self.ring_size == 0:
            raise ValueError("not a hash policy")
        cdef Replica r = self._by_hash(rmf_hash64(key, len(key)), 0, -1.0)
        return r.index

    def time_choices(self, Py_ssize_t n, bytes key=b"user-42"):
        """Seconds `n` choices take, called from C (a hash policy hashes `key`; no request,
        nothing tried): the balancer's own cost, for bench/test_balancers.py."""
        cdef Py_ssize_t i
        cdef double now = self.clock.now if self.clock is not None else 0.0
        cdef double started = monotonic()
        if self.policy == LB_HASH:
            for i in range(n):
                self._by_hash(rmf_hash64(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key)), 0, now)
        elif self.policy == LB_ROUND_ROBIN:
            for i in range(n):
                self._round_robin(0, now)
        else:
            for i in range(n):
                self._least_request(0, now)
        return monotonic() - started

    # -- the hot path: choosing -----------------------------------------------------------

    cdef Replica choose(self, Request req, unsigned long long tried):
        """A replica for `req`, none of `tried` (bits by index % 64).

        For a first try (nothing tried) there is always one: with none usable, the
        next in turn anyway rather than refuse. For a retry: None when no other
        usable replica is left.
        """
        cdef double now = self.clock.now if self.clock is not None else 0.0
        cdef Replica found
        if self.policy == LB_HASH:
            key = self._key(req)
            if key is not None:
                found = self._by_hash(rmf_hash64(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key)),
                                      tried, now)
            else:
                found = self._least_request(tried, now)  # no key: any replica will do
        elif self.policy == LB_ROUND_ROBIN:
            found = self._round_robin(tried, now)
        else:
            found = self._least_request(tried, now)
        if found is None and not tried:
            found = self._fallback(tried)
        return found

    cdef Replica _round_robin(self, unsigned long long tried, double now):
        cdef tuple replicas = self.replicas
        cdef Py_ssize_t n = self.count
        cdef Py_ssize_t length = self.schedule_len if self.schedule_len else n
        cdef Py_ssize_t probes = length if length < 2 * n else 2 * n
        cdef Py_ssize_t k, i
        cdef Replica r
        for k in range(probes):
            i = self._next
            self._next = i + 1 if i + 1 < length else 0
            r = <Replica>replicas[self.schedule[i] if self.schedule_len else i]
            if self._usable(r, tried, now):
                return r
        for r in replicas:  # the schedule's next 2n places were all out: any usable one
            if self._usable(r, tried, now):
                return r
        return None

    cdef Replica _least_request(self, unsigned long long tried, double now):
        """Power of two choices (Mitzenmacher): the less loaded of two random replicas.
        With weights, the draws are weighted and the two compared by requests in flight
        (weighing the load too would count the weight twice: idle, a 3:1 pair would
        share 15:1); with equal weights, by requests in flight as well."""
        cdef tuple replicas = self.replicas
        cdef Py_ssize_t n = self.count
        cdef unsigned long long x
        cdef Py_ssize_t i, j
        cdef Replica a, b, r
        cdef Replica found = None
        if n == 1:
            a = <Replica>replicas[0]
            return a if self._usable(a, tried, now) else None
        x = rmf_next(&self.rng)
        if self.schedule_len:
            a = <Replica>replicas[self.schedule[(x & 0xFFFFFFFF) % self.schedule_len]]
            b = <Replica>replicas[self.schedule[(x >> 32) % self.schedule_len]]
        else:
            i = (x & 0xFFFFFFFF) % n
            j = (x >> 32) % (n - 1)
            if j >= i:
                j += 1
            a = <Replica>replicas[i]
            b = <Replica>replicas[j]
        if self._usable(a, tried, now):
            if b is a or not self._usable(b, tried, now):
                return a
            return b if b.active < a.active else a
        if self._usable(b, tried, now):
            return b
        # Both drawn are out: the least loaded of those usable (rare, O(n)).
        for r in replicas:
            if self._usable(r, tried, now) and (
                found is None or (r.active + 1) * found.weight < (found.active + 1) * r.weight
            ):
                found = r
        return found

    cdef Replica _by_hash(self, unsigned long long h, unsigned long long tried, double now):
        """The key's replica; when it is out, the key is hashed again (a different
        replica each time, spread like the key's first choice)."""
        cdef tuple replicas = self.replicas
        cdef Py_ssize_t lo, hi, mid, k
        cdef Replica r
        for k in range(self.count + 1):
            if self.table_size:
                r = <Replica>replicas[self.table[h % self.table_size]]
            else:
                lo = 0
                hi = self.ring_size
                while lo < hi:
                    mid = (lo + hi) >> 1
                    if self.points[mid] < h:
                        lo = mid + 1
                    else:
                        hi = mid
                r = <Replica>replicas[self.owners[lo if lo < self.ring_size else 0]]
            if now < 0 or self._usable(r, tried, now):
                return r
            h = rmf_mix64(h + <unsigned long long>k + 1)
        return self._least_request(tried, now)

    cdef Replica _fallback(self, unsigned long long tried):
        """The next replica in turn that was not tried, whatever its health."""
        cdef Py_ssize_t k, i
        cdef Replica r
        for k in range(self.count):
            i = self._next % self.count
            self._next = i + 1
            r = <Replica>self.replicas[i]
            if not (tried >> (r.index & 63)) & 1:
                return r
        return None

    cdef object _key(self, Request req):
        """The request's hash key (bytes), or None when it has none."""
        cdef int kind = self.key_kind
        cdef bytes value
        if kind == KEY_HEADER:
            return _header_value(req.lines, self.key_name)
        if kind == KEY_COOKIE:
            found = _header_value(req.lines, b"cookie")
            if found is None:
                return None
            for part in (<bytes>found).split(b";"):
                name, sep, value = part.strip().partition(b"=")
                if sep and name == self.key_name:
                    return value
            return None
        if kind == KEY_QUERY:
            _, sep, query = req.url.partition(b"?")
            if not sep:
                return None
            for part in query.split(b"&"):
                name, sep, value = part.partition(b"=")
                if name == self.key_name:
                    return value
            return None
        params = req.get_params() if kind == KEY_PATH else None
        if params is not None:
            found = params.get(self.key_param)
            return found.encode("utf-8") if found is not None else None
        return None

    # -- the retry budget -------------------------------------------------------------

    cdef void first_try(self) noexcept:
        """A request's first try: it adds to the budget, which never holds more than
        budget_ratio of the requests in flight (or budget_min)."""
        cdef double cap = self.budget_ratio * self.active
        if cap < self.budget_min:
            cap = self.budget_min
        self.budget += self.budget_ratio
        if self.budget > cap:
            self.budget = cap

    cdef bint withdraw(self, int why) noexcept:
        """A retry for `why`: allowed while the budget has one (then counted). A connect
        that failed sent nothing, so its retry adds no load to any replica's application
        and takes nothing from the budget (as nginx and HAProxy redispatch); the request's
        `attempts` still bound it. Without this, a burst of instant refusals (a replica
        that refuses shows no requests in flight: least request prefers it) emptied the
        budget and clients got 502s that another replica would have answered."""
        cdef int i
        if why != WHY_CONNECT:
            if self.budget < 1.0:
                self.budget_exhausted += 1
                return False
            self.budget -= 1.0
        for i in range(RETRY_REASONS):
            if why == (1 << i):
                self.retried[i] += 1
        return True

    cdef double backoff(self, int retries) noexcept:
        """Seconds before retry number `retries` (1, 2, ...): full jitter over an
        exponential ceiling (base * 2^(n-1), at most backoff_max)."""
        cdef double ceiling = self.backoff_base * (1 << (retries - 1 if retries < 20 else 19))
        if ceiling > self.backoff_max:
            ceiling = self.backoff_max
        return ceiling * ((rmf_next(&self.rng) >> 11) * (1.0 / 9007199254740992.0))

    # -- passive health ----------------------------------------------------------------

    cdef void success(self, Replica r) noexcept:
        r.consecutive = 0

    cdef void failure(self, Replica r, int why, str detail):
        """A try on `r` failed for `why` (a WHY_* bit); ejected after enough in a row."""
        cdef double now
        r.last_error = detail
        r.last_error_at = time.time()
        if not self.outlier or not (self.fail_mask & why):
            return
        r.consecutive += 1
        if r.consecutive < self.consecutive_limit or r.ejected:
            return
        if self.ejected_count >= self.max_ejected:
            return  # as many out as allowed: it stays, its failures keep counting
        now = monotonic()
        r.ejections += 1
        r.ejected = True
        r.ejected_until = now + min(self.base_ejection * r.ejections, self.max_ejection)
        r.consecutive = 0
        r.ejected_total += 1
        self.ejected_count += 1
        self._refresh()

    cdef void _refresh(self) noexcept:
        cdef Replica r
        cdef Py_ssize_t up = 0
        for r in self.replicas:
            r.up = not r.ejected and r.check_up
            if r.up:
                up += 1
        self.up_count = up
        self.panic = up < self.panic_below or up == 0

    def sweep(self, double now):
        """Bring back replicas whose ejection is over; let the multiplier of those that
        stayed in for a base_ejection_time go down by one."""
        cdef Replica r
        cdef bint changed = False
        for r in self.replicas:
            if r.ejected:
                if r.ejected_until <= now:
                    r.ejected = False
                    self.ejected_count -= 1
                    r.decay_at = now + self.base_ejection
                    changed = True
            elif r.ejections and r.decay_at <= now:
                r.ejections -= 1
                r.decay_at = now + self.base_ejection
        if changed:
            self._refresh()

    def set_checked(self, Py_ssize_t index, bint healthy):
        """The active check's verdict on replica `index`; passing also ends an ejection
        (as Envoy does: a replica that answers its check is back)."""
        cdef Replica r = self.replicas[index]
        if healthy and r.ejected:
            r.ejected = False
            self.ejected_count -= 1
            r.decay_at = monotonic() + self.base_ejection
        r.check_up = healthy
        self._refresh()

    def adopt(self, Replicas old, bint checked=True):
        """Carry the health of `old`'s replicas (a build before) over to those of the same URL
        (their check verdicts too while the service is still `checked`)."""
        cdef Replica r, before
        by_url = {(<Replica>x).url: x for x in old.replicas}
        for r in self.replicas:
            before = by_url.get(r.url)
            if before is None:
                continue
            if checked:
                r.check_up = before.check_up
            r.ejections = before.ejections
            r.decay_at = before.decay_at
            r.ejected_total = before.ejected_total
            r.last_error = before.last_error
            r.last_error_at = before.last_error_at
            if before.ejected and self.outlier and self.ejected_count < self.max_ejected:
                r.ejected = True
                r.ejected_until = before.ejected_until
                self.ejected_count += 1
        self._refresh()

    # -- read by /admin/upstreams and the metrics ------------------------------------------

    @property
    def policy_name(self):
        return ("least_request", "round_robin", "hash")[self.policy]

    def retried_counts(self):
        """Retries so far by reason: {reason: count}."""
        return {RETRY_REASON_NAMES[i]: self.retried[i] for i in range(RETRY_REASONS)}

    def __repr__(self):
        return f"<Replicas {self.policy_name} {[r.url for r in self.replicas]}>"
