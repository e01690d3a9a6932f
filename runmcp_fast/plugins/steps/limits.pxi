# -- limit-count, limit-req: rate limits, their state in a C table (builtin/limits.py) -------
#
# PERF: a limit's state is a `LimitTable`: fixed-size slots in one calloc'd
# array, found by a 64-bit hash of the request's key (CPython's keyed hashes of
# the key's parts, mixed), 8 slots per bucket, the least recently used (or one
# whose state has run out) replaced when a new key needs room. No Python object
# per key: the memory is `max_keys` slots, whatever clients send.
#
# limit-count counts units per window of the wall clock (aligned on the epoch,
# so every node agrees on the window), fixed or sliding (the previous window's
# count weighted by how much of it the sliding window still covers). limit-req
# is GCRA: one integer per key, the theoretical arrival time (TAT), in
# microseconds of the wall clock.
#
# Policy `redis`: the request never awaits Redis. Each slot keeps what this
# worker admitted since its last sync (`pending`); a sync task (builtin/
# limits_redis.py) pushes those deltas in one pipelined round every
# sync_interval and reads back the cluster's totals, which the slots adopt.
# sync_interval 0: every request awaits Redis (Wait), decided there exactly.

cdef enum:
    _WAYS = 8  # slots per bucket

    # key parts (builtin/limits.py compiles the settings' `key` into these)
    KEY_CONSUMER = 1
    KEY_CLIENT_IP = 2
    KEY_HEADER = 3
    KEY_PARAM = 4
    KEY_ROUTE = 5
    KEY_TOOL = 6

    POLICY_LOCAL = 0
    POLICY_REDIS = 1  # delayed sync
    POLICY_EXACT = 2  # redis, sync_interval 0

    DOWN_FAIL_OPEN = 0
    DOWN_FAIL_CLOSED = 1
    DOWN_LOCAL = 2


ctypedef struct _Slot:
    uint64_t hash  # the key's hash (never 0); 0: a free slot
    int64_t expires  # wall-clock µs past which the slot holds nothing worth keeping
    int64_t stamp  # limit-count: the index of the window `value` counts
    int64_t value  # limit-count: units in that window (cluster total read + ours since);
    #                limit-req: the TAT, wall-clock µs
    int64_t prev  # limit-count: units in the window before (sliding);
    #               limit-req: when the first request not yet pushed came (µs)
    int64_t pending  # admitted here and not yet pushed to Redis (units; limit-req: µs)
    int64_t pushing  # of `pending`, what the sync round under way carries
    uint32_t used  # the table's tick when last used: the LRU within a bucket
    uint32_t dirty  # its key is in the step's dirty map, for the next sync round


cdef inline int64_t _wall_us() noexcept nogil:
    """Wall-clock µs since the epoch (a vDSO call): windows and TATs agree across nodes."""
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <int64_t>ts.tv_sec * 1000000 + ts.tv_nsec // 1000


@cython.final
cdef class LimitTable:
    """A limit's state: `capacity` fixed-size slots, 8 to a bucket, found by key hash.

    A new key takes a free slot of its bucket, else one whose state has expired
    (its window is over, its TAT passed), else the bucket's least recently used
    (counted in `evictions`): memory stays `nbytes` whatever the keys. An
    evicted key starts again with a full quota.
    """

    cdef _Slot* slots
    cdef uint64_t mask  # buckets - 1 (a power of two)
    cdef uint32_t tick
    cdef readonly Py_ssize_t capacity
    cdef readonly long long evictions  # live slots given to another key
    cdef readonly long long taken  # slots ever taken from the free ones (= slots in use)

    def __cinit__(self, Py_ssize_t max_keys):
        cdef uint64_t buckets = 1
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        while buckets * _WAYS < <uint64_t>max_keys:
            buckets <<= 1
        self.slots = <_Slot*>calloc(buckets * _WAYS, sizeof(_Slot))
        if self.slots == NULL:
            raise MemoryError()
        self.mask = buckets - 1
        self.capacity = buckets * _WAYS

    def __dealloc__(self):
        free(self.slots)

    cdef _Slot* find(self, uint64_t h) noexcept:
        """The slot of `h`, or NULL."""
        cdef _Slot* base = self.slots + (h & self.mask) * _WAYS
        cdef int i
        for i in range(_WAYS):
            if base[i].hash == h:
                return base + i
        return NULL

    cdef _Slot* get(self, uint64_t h, int64_t now) noexcept:
        """The slot of `h`, made (zeroed) if it has none: a free one, an expired one, or
        the bucket's least recently used."""
        cdef _Slot* base = self.slots + (h & self.mask) * _WAYS
        cdef _Slot* victim = NULL
        cdef _Slot* s
        cdef uint32_t age, oldest = 0
        cdef int i
        self.tick += 1
        for i in range(_WAYS):
            s = base + i
            if s.hash == h:
                s.used = self.tick
                return s
        for i in range(_WAYS):
            s = base + i
            if s.hash == 0:
                victim = s
                self.taken += 1
                break
            if s.expires <= now:
                victim = s  # its state ran out: as good as free
                break
            age = self.tick - s.used  # (unsigned: right across the counter's wrap)
            if victim == NULL or age > oldest:
                victim = s
                oldest = age
        else:
            self.evictions += 1
        memset(victim, 0, sizeof(_Slot))
        victim.hash = h
        victim.used = self.tick
        return victim

    @property
    def nbytes(self):
        """The slots' memory, fixed when the table is made."""
        return self.capacity * sizeof(_Slot)

    def __len__(self):
        """Slots holding a key (live or expired)."""
        return self.taken

    def hit(self, key, long long cost, long long limit):
        """For tests: count `cost` units for `key` (any hashable) in one endless window
        against `limit`; (admitted, the key's count)."""
        cdef _Slot* s = self.get(_test_hash(key), 0)
        s.expires = 0x7FFFFFFFFFFFFFFF
        if s.value + cost > limit:
            return False, s.value
        s.value += cost
        return True, s.value

    def peek(self, key):
        """For tests: the count `hit` keeps for `key`, or None when the table has no slot."""
        cdef _Slot* s = self.find(_test_hash(key))
        return None if s == NULL else s.value


cdef uint64_t _test_hash(key):
    cdef uint64_t h = _mix64(<uint64_t>hash(key))
    return h if h != 0 else 1


cdef object _log_limits = logging.getLogger("runmcp_fast.limits")
cdef bytes _QUOTA_TYPE = b"https://iana.org/assignments/http-problem-types#quota-exceeded"
cdef object _MISSING = object()  # a key part the request has not (no consumer, no such header)


cdef enum:
    # Where a limit's events are in its Counters (LimitStep.EVENTS' order).
    R_ALLOWED = 0
    R_REJECTED = 1
    R_REDIS_ERRORS = 2
    R_FALLBACKS = 3
    R_SYNCS = 4


cdef class LimitStep(Step):
    """What limit-count and limit-req share: the key, the cost, the answers, Redis's side.

    Decided in the access phase (after authentication and consumer rules), or,
    when its key or cost reads the MCP request (`tool`, costs by method), in the
    mcp phase after the envelope check and mcp-authz: from the body they parsed
    (the 2026-07-28 `Mcp-Method`/`Mcp-Name` headers are checked equal to it there).
    """

    cdef object __weakref__
    cdef readonly LimitTable table
    cdef tuple parts  # ((KEY_*, argument), ...)
    cdef readonly str policy_name
    cdef long long base_cost
    cdef dict method_costs  # MCP method -> cost; None: one cost for all
    cdef bint needs_mcp  # the key or the cost reads the MCP request
    cdef bint show  # RateLimit headers on allowed responses too
    cdef str var  # where an allowed request's (remaining, reset) waits for on_response
    cdef bytes policy_line  # "RateLimit-Policy: ...\r\n"
    cdef str policy_value
    cdef str item  # the policy's name as a structured-field string: "limit-count"
    cdef bytes body  # the 429's problem+json
    cdef tuple closed_answer  # fail_closed while Redis is down
    cdef int policy  # POLICY_*
    cdef int down_mode  # DOWN_*
    cdef long long share  # the local fallback's part: 1 / (nodes x workers)
    cdef readonly object sync  # the Redis side (builtin/limits_redis.py), None: local
    cdef readonly bint down  # the last sync round (or exact call) failed
    cdef dict dirty  # hash -> key bytes: keys with deltas for the next sync round
    cdef dict mcp_targets  # Target -> is an MCP endpoint (memo)
    cdef readonly bytes scope  # where the limit is written (Redis keys), by name
    cdef double logged_at

    # Its counters are its plugin's (self.counts, Counters: kept by the gateway across
    # snapshots): a limit whose settings change is made again, with an empty table,
    # but its decisions go on being counted from where they were. redis_errors: sync
    # rounds / exact calls that failed; fallbacks: requests decided while Redis was
    # down; syncs: sync rounds that succeeded.
    EVENTS = ("allowed", "rejected", "redis_errors", "fallbacks", "syncs")

    def __init__(self, str name, int priority, *, tuple parts, long long cost, dict method_costs,
                 bint needs_mcp, bint headers, str policy_name, str policy_value,
                 Py_ssize_t max_keys, int policy, int down_mode, long long share, sync,
                 bytes scope, bint fail_open=False):
        Step.__init__(
            self, name, PHASE_MCP if needs_mcp else PHASE_ACCESS, priority=priority,
            hooks=HOOK_REQUEST | (HOOK_RESPONSE if headers else 0), fail_open=fail_open,
            needs_params=any(kind == KEY_PARAM for kind, _ in parts),
            reads_envelope=needs_mcp,  # (an MCP method's cost, or its key)
        )
        self.table = LimitTable(max_keys)
        self.parts = parts
        self.base_cost = cost
        self.method_costs = method_costs or None
        self.needs_mcp = needs_mcp
        self.show = headers
        self.var = "limit:" + name
        self.policy_name = policy_name
        self.item = '"' + policy_name + '"'
        self.policy_value = policy_value
        self.policy_line = f"RateLimit-Policy: {policy_value}\r\n".encode("latin-1")
        body = {
            "type": _QUOTA_TYPE.decode(),
            "title": "Too Many Requests",
            "status": 429,
            "detail": f"the rate limit {policy_name!r} is exceeded: retry after the time"
                      " Retry-After gives",
            "violated-policies": [policy_name],
        }
        self.body = orjson.dumps(body)
        self.closed_answer = problem_answer(
            429, f"the rate limit {policy_name!r} can not be checked now (its store is down)",
            headers=(("Retry-After", "1"),),
            extra={"type": _QUOTA_TYPE.decode(), "violated-policies": [policy_name]},
        )
        self.policy = policy
        self.down_mode = down_mode
        self.share = share if share > 0 else 1
        self.sync = sync
        self.dirty = {}
        self.mcp_targets = {}
        self.scope = scope

    @property
    def allowed(self):
        return self.counts.n[R_ALLOWED]

    @property
    def rejected(self):
        return self.counts.n[R_REJECTED]

    @property
    def redis_errors(self):
        return self.counts.n[R_REDIS_ERRORS]

    @property
    def fallbacks(self):
        return self.counts.n[R_FALLBACKS]

    @property
    def syncs(self):
        return self.counts.n[R_SYNCS]

    def stats(self):
        """The step's counters (the metrics exposition reads every step's)."""
        return {
            "allowed": self.allowed,
            "rejected": self.rejected,
            "redis_errors": self.redis_errors,
            "fallbacks": self.fallbacks,
            "syncs": self.syncs,
            "keys": len(self.table),
            "evictions": self.table.evictions,
            "capacity": self.table.capacity,
            "redis_down": self.down,
        }

    # -- the request ---------------------------------------------------------------------

    cdef object on_request(self, ClientProtocol conn, Request req):
        if self.needs_mcp and self._is_mcp(req.target):
            if req.has_body and req.method == b"POST":
                conn.want_body(req, self, None)  # after the envelope check's and mcp-authz's
                return None
        return self._decide(conn, req, None)

    cdef object on_body(self, ClientProtocol conn, Request req, bytes body, object state):
        envelope = req.vars.get("mcp.envelope") if req.vars is not None else None
        if envelope is None and req.target.handler is not None:
            # A generated endpoint or a federation has no envelope step: read it here.
            found = check_envelope(body, allow_batch=True)
            if isinstance(found, Envelope):
                envelope = found
        return self._decide(conn, req, envelope)

    cdef bint _is_mcp(self, Target target):
        found = self.mcp_targets.get(target)
        if found is None:
            found = target.name == "mcp" and (
                isinstance(target.handler, (ServiceEndpoint, FederatedEndpoint))
                or any(isinstance(s, McpEnvelopeStep) for s in target.chain.steps)
            )
            if len(self.mcp_targets) >= 4096:
                self.mcp_targets.clear()  # bounded across reloads
            self.mcp_targets[target] = found
        return found

    cdef object _decide(self, ClientProtocol conn, Request req, envelope):
        cdef long long cost = self.base_cost
        tool = None
        if envelope is not None:
            cost, tool = self._of_envelope(envelope)
        if cost <= 0:
            return None  # free: neither counted nor refused
        cdef uint64_t h = self._hash(conn, req, tool)
        if self.policy == POLICY_EXACT:
            if self.sync.usable():
                self._start()
                return Wait(self.sync.exact(self, conn, req, self._key(conn, req, tool), cost))
            self.counts.n[R_FALLBACKS] += 1
            if self.down_mode == DOWN_FAIL_OPEN:
                self.counts.n[R_ALLOWED] += 1
                return None
            if self.down_mode == DOWN_FAIL_CLOSED:
                self.counts.n[R_REJECTED] += 1
                return self.closed_answer
            return self._admit(conn, req, h, tool, cost, True)
        if self.policy == POLICY_REDIS:
            self._start()
            if self.down:
                self.counts.n[R_FALLBACKS] += 1
                if self.down_mode == DOWN_FAIL_OPEN:
                    self.counts.n[R_ALLOWED] += 1
                    return None
                if self.down_mode == DOWN_FAIL_CLOSED:
                    self.counts.n[R_REJECTED] += 1
                    return self.closed_answer
                return self._admit(conn, req, h, tool, cost, True)
        return self._admit(conn, req, h, tool, cost, False)

    cdef tuple _of_envelope(self, envelope):
        """(cost, tool) of an MCP request: a batch costs its members' sum; its tool is the
        one all its tools/call members name, else none (counted under "-")."""
        cdef dict costs = self.method_costs
        if envelope.kind != "batch":
            cost = costs.get(envelope.method, self.base_cost) if costs is not None else self.base_cost
            return cost, envelope.name if envelope.method == "tools/call" else None
        total = 0
        tool = None
        mixed = False
        for member in envelope.members:
            if member.method is None:
                continue  # a response in the batch: free
            total += costs.get(member.method, self.base_cost) if costs is not None else self.base_cost
            if member.method == "tools/call" and member.name is not None:
                if tool is not None and tool != member.name:
                    mixed = True
                tool = member.name
        return total, None if mixed else tool

    cdef uint64_t _hash(self, ClientProtocol conn, Request req, tool):
        """The request's key as 64 bits: each part's CPython hash (keyed SipHash for str
        and bytes, cached on the object) mixed in order."""
        cdef uint64_t h = 0x9E3779B97F4A7C15ULL
        cdef int kind
        cdef Py_hash_t part
        cdef Target target
        for kind, arg in self.parts:
            value = self._part(conn, req, kind, arg, tool)
            if kind == KEY_ROUTE:
                target = req.target
                part = hash(target.service_name) ^ (hash(target.name) * 31)
            elif value is _MISSING:
                part = <Py_hash_t>0x5BD1E9955BD1E995  # not any value's (keyed) hash, but by chance
            else:
                part = hash(value)
            h = _mix64(h ^ (<uint64_t>part + <uint64_t>kind * 0x100000001B3ULL))
        return h if h != 0 else 1

    cdef object _part(self, ClientProtocol conn, Request req, int kind, arg, tool):
        if kind == KEY_CONSUMER:
            return req.consumer.name if req.consumer is not None else _MISSING
        if kind == KEY_CLIENT_IP:
            return req.client_ip if req.client_ip is not None else conn.peer
        if kind == KEY_HEADER:
            found = _joined(req.lines, arg)
            return found if found is not None else _MISSING
        if kind == KEY_PARAM:
            params = req.params
            found = params.get(arg) if params else None
            return found if found is not None else _MISSING
        if kind == KEY_ROUTE:
            return None  # hashed from the target's names (see _hash, _key)
        return tool if tool is not None else _MISSING

    cdef bytes _key(self, ClientProtocol conn, Request req, tool):
        """The request's key as bytes, for Redis: each part length-prefixed ("-" alone: the
        request has not that part), so no two keys read the same."""
        out = []
        cdef int kind
        cdef Target target
        for kind, arg in self.parts:
            if kind == KEY_ROUTE:
                target = req.target
                value = f"{target.service_name} {target.name}".encode()
            else:
                value = self._part(conn, req, kind, arg, tool)
                if value is _MISSING:
                    out.append(b"-")
                    continue
                if isinstance(value, str):
                    value = (<str>value).encode("utf-8", "surrogateescape")
            out.append(b"%d:%b" % (len(value), value))
        return b"|".join(out)

    cdef object _admit(self, ClientProtocol conn, Request req, uint64_t h, tool, long long cost,
                       bint fallback):
        cdef int64_t now = _wall_us()
        cdef _Slot* s = self.table.get(h, now)
        cdef int64_t remaining = 0, reset = 0
        if not self._check(s, cost, now, self.share if fallback else 1, &remaining, &reset):
            self.counts.n[R_REJECTED] += 1
            return self._refusal(reset)
        self.counts.n[R_ALLOWED] += 1
        if self.policy != POLICY_LOCAL and not s.dirty:
            # First delta of this key since the last round: the sync needs its bytes.
            s.dirty = 1
            self.dirty[s.hash] = self._key(conn, req, tool)
        if self.show:
            if req.vars is None:
                req.vars = {}
            req.vars[self.var] = (remaining, reset)
        return None

    cdef bint _check(self, _Slot* s, long long cost, int64_t now, long long share,
                     int64_t* remaining, int64_t* reset):
        """Admit `cost` units on `s` (counted) or not; `remaining` units after it, `reset`
        the seconds until the quota is whole again (refused: until it may be retried)."""
        return False

    cdef tuple _refusal(self, int64_t retry):
        if retry < 1:
            retry = 1
        return (
            429,
            (
                ("Content-Type", "application/problem+json"),
                ("Retry-After", str(retry)),
                ("RateLimit-Policy", self.policy_value),
                ("RateLimit", f"{self.item};r=0;t={retry}"),
            ),
            self.body,
        )

    cdef list on_response(self, ClientProtocol conn, Request req, int status, list lines,
                          long long content_length):
        if req.vars is None:
            return lines
        found = req.vars.get(self.var)
        if found is None:
            return lines  # not decided here (refused before, or by this step: it said so)
        lines.append(self.policy_line)
        lines.append(b"RateLimit: %s;r=%d;t=%d\r\n" % (
            self.item.encode("latin-1"), (<tuple>found)[0], (<tuple>found)[1]))
        return lines

    # -- Redis's side (builtin/limits_redis.py calls these on the event loop) -----------

    cdef _start(self):
        if not self.sync.started:
            self.sync.start(self)

    def exact_done(self, Request req, bint admitted, long long remaining, long long reset):
        """An exact (sync_interval 0) decision came back: the request's answer."""
        if self.down:
            self._recovered()
        if not admitted:
            self.counts.n[R_REJECTED] += 1
            return self._refusal(reset)
        self.counts.n[R_ALLOWED] += 1
        if self.show:
            if req.vars is None:
                req.vars = {}
            req.vars[self.var] = (remaining, reset)
        return None

    def exact_failed(self, ClientProtocol conn, Request req, exc, long long cost):
        """Redis failed an exact decision: the fallback decides."""
        self.failed_sync(exc)
        self.counts.n[R_FALLBACKS] += 1
        if self.down_mode == DOWN_FAIL_OPEN:
            self.counts.n[R_ALLOWED] += 1
            return None
        if self.down_mode == DOWN_FAIL_CLOSED:
            self.counts.n[R_REJECTED] += 1
            return self.closed_answer
        # (exact limits never read the body: their key has no tool)
        return self._admit(conn, req, self._hash(conn, req, None), None, cost, True)

    def take_dirty(self):
        """The deltas for a sync round: [(hash, key bytes, window index, units, since)];
        what each carries is marked in flight (`pushing`) until `pushed` or `failed_sync`."""
        cdef dict dirty = self.dirty
        cdef _Slot* s
        cdef uint64_t h
        out = []
        if not dirty:
            return out
        self.dirty = {}
        for h, key in dirty.items():
            s = self.table.find(h)
            if s == NULL or not s.dirty:
                continue  # evicted meanwhile: its deltas are lost with it
            s.dirty = 0
            if s.pending == 0:
                continue
            s.pushing = s.pending
            out.append((h, key, s.stamp, s.pending, s.prev))
        return out

    def pushed(self, list batch, list totals):
        """A sync round came back: `totals[i]` is the cluster's value for `batch[i]`
        (limit-count: (this window's, the previous window's or None); limit-req: the TAT)."""
        cdef _Slot* s
        cdef Py_ssize_t i
        self.counts.n[R_SYNCS] += 1
        if self.down:
            self._recovered()
        for i in range(len(batch)):
            item = batch[i]
            s = self.table.find(<uint64_t>item[0])
            if s == NULL or s.stamp != <int64_t>item[2]:
                continue  # evicted, or its window is over
            s.pending -= s.pushing
            s.pushing = 0
            self._adopt(s, totals[i])
            if s.pending and not s.dirty:
                s.dirty = 1
                self.dirty[s.hash] = item[1]

    cdef _adopt(self, _Slot* s, total):
        pass

    def failed_sync(self, exc, list batch=None):
        """A sync round (or an exact call) failed: Redis is down until one succeeds. The
        round's deltas wait for the next one."""
        cdef _Slot* s
        self.counts.n[R_REDIS_ERRORS] += 1
        for item in batch or ():
            s = self.table.find(<uint64_t>item[0])
            if s == NULL or s.stamp != <int64_t>item[2]:
                continue  # evicted, or its window is over: its deltas are moot
            s.pushing = 0
            if not s.dirty:
                s.dirty = 1
                self.dirty[s.hash] = item[1]
        self.down = True
        cdef double now = monotonic()
        if now - self.logged_at >= 1.0:
            self.logged_at = now
            _log_limits.warning(
                "%s: Redis is unavailable (%s: %s); %d failures so far; deciding %s until it"
                " answers", self.name, type(exc).__name__, exc, self.counts.n[R_REDIS_ERRORS],
                ("fail_open", "fail_closed", "locally")[self.down_mode],
            )

    def sync_ok(self):
        """A round with nothing to push reached Redis (a probe while it was down)."""
        self.counts.n[R_SYNCS] += 1
        if self.down:
            self._recovered()

    cdef _recovered(self):
        self.down = False
        _log_limits.warning("%s: Redis answers again; the cluster's counts decide", self.name)


cdef class LimitCountStep(LimitStep):
    """limit-count: at most `limit` units per window of `window` seconds, per key."""

    cdef readonly long long limit
    cdef int64_t window_us
    cdef readonly long long window
    cdef readonly bint sliding

    def __init__(self, long long limit, long long window, bint sliding, **kw):
        self.limit = limit
        self.window = window
        self.window_us = window * 1000000
        self.sliding = sliding
        LimitStep.__init__(self, **kw)

    cdef bint _check(self, _Slot* s, long long cost, int64_t now, long long share,
                     int64_t* remaining, int64_t* reset):
        cdef int64_t win = now // self.window_us
        cdef int64_t elapsed = now - win * self.window_us
        cdef int64_t left_us = self.window_us - elapsed
        cdef int64_t estimate, weighted = 0, limit = self.limit, after
        if s.stamp != win or s.expires == 0:
            # A new window: the one before becomes `prev` (sliding), pending deltas of an
            # ended window are dropped (their window is over).
            s.prev = s.value if s.stamp == win - 1 and s.expires != 0 else 0
            s.value = 0
            s.pending = 0
            s.pushing = 0
            s.stamp = win
            s.expires = (win + (2 if self.sliding else 1)) * self.window_us
        if self.sliding and s.prev:
            # ceil(prev * (window - elapsed) / window): rounded against the client
            weighted = (s.prev * left_us + self.window_us - 1) // self.window_us
        estimate = s.value + weighted
        reset[0] = (left_us + 999999) // 1000000
        if share > 1:
            # Redis is down: this worker's part of the quota, on what it admitted alone.
            limit = self.limit // share if self.limit >= share else 1
            estimate = s.pending
        if estimate + cost > limit:
            reset[0] = self._retry(s, cost, elapsed, left_us)
            return False
        s.value += cost
        if self.policy != POLICY_LOCAL:
            s.pending += cost
        remaining[0] = limit - estimate - cost
        return True

    cdef int64_t _retry(self, _Slot* s, long long cost, int64_t elapsed, int64_t left_us):
        """Seconds until `cost` more units could be admitted."""
        cdef int64_t wait_us = left_us, need
        if self.sliding:
            if s.value + cost <= self.limit and s.prev:
                # This window's weight of `prev` must shrink to `limit - value - cost`.
                need = self.window_us - (self.limit - s.value - cost) * self.window_us // s.prev
                wait_us = need - elapsed
            elif s.value:
                # Next window, with this one's count as its `prev`.
                need = self.window_us - max(self.limit - cost, 0) * self.window_us // s.value
                wait_us = left_us + max(need, 0)
        return max((wait_us + 999999) // 1000000, 1)

    cdef _adopt(self, _Slot* s, total):
        current, before = total
        s.value = <int64_t>current + s.pending
        if before is not None and self.sliding:
            s.prev = <int64_t>before


cdef class LimitReqStep(LimitStep):
    """limit-req: `rate` units a second with bursts of `burst` more, per key (GCRA)."""

    cdef readonly double rate
    cdef readonly long long burst
    cdef readonly int64_t interval_us  # T: µs per unit at the rate
    cdef int64_t tolerance_us  # tau + T: how far ahead of now the TAT may run

    def __init__(self, double rate, long long burst, **kw):
        self.rate = rate
        self.burst = burst
        self.interval_us = max(<int64_t>(1000000.0 / rate + 0.5), 1)
        self.tolerance_us = (burst + 1) * self.interval_us
        LimitStep.__init__(self, **kw)

    cdef bint _check(self, _Slot* s, long long cost, int64_t now, long long share,
                     int64_t* remaining, int64_t* reset):
        # Redis down: each worker gets its share of the rate: its units weigh `share` times.
        cdef int64_t step = cost * self.interval_us * share
        cdef int64_t tat = s.value if s.value > now else now
        cdef int64_t after = tat + step
        if after - now > self.tolerance_us:
            reset[0] = (after - now - self.tolerance_us + 999999) // 1000000
            return False
        s.value = after
        s.expires = after
        if self.policy != POLICY_LOCAL:
            if s.pending == 0:
                s.prev = now  # the pushed units count from here (not from the push)
            s.pending += cost * self.interval_us
        remaining[0] = (self.tolerance_us - (after - now)) // self.interval_us
        reset[0] = (after - now + 999999) // 1000000
        return True

    cdef _adopt(self, _Slot* s, total):
        # The cluster's TAT, with what was admitted here while the round was out on top.
        cdef int64_t tat = <int64_t>total + s.pending
        if tat > s.value:
            s.value = tat
            s.expires = tat
        if s.pending:
            s.prev = _wall_us()
