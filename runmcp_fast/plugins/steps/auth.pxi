# -- authentication: key-auth, basic-auth; consumer-restriction after them ---------------
#
# An authentication step leaves a request alone when an earlier one identified
# its consumer; with no credential it answers 401, or, with `anonymous`,
# identifies the request as that consumer (a later authentication step may
# still identify it properly: Kong's "anonymous" semantics, an OR of methods).


cdef class KeyAuthStep(Step):
    """An API key from a header (or a query parameter) names its consumer.

    The key is looked up in a dict (its hash is CPython's keyed SipHash, so
    where two keys differ is never timed), then compared in constant time.
    """

    cdef bytes header  # lower case
    cdef bytes query  # the query parameter, or None
    cdef bint hide  # the key does not go upstream
    cdef dict keys  # key -> (key, Consumer)
    cdef Consumer anonymous
    cdef tuple missing
    cdef tuple invalid
    cdef tuple twice

    def __init__(self, str header, query, bint hide, dict keys, Consumer anonymous=None, *,
                 str name="key-auth", int priority=2500, bint fail_open=False):
        Step.__init__(self, name, PHASE_ACCESS, priority=priority, fail_open=fail_open,
                      reads_envelope=False)
        self.header = header.lower().encode("latin-1")
        self.query = query.encode("latin-1") if query else None
        self.hide = hide
        self.keys = {key: (key, consumer) for key, consumer in keys.items()}
        self.anonymous = anonymous
        challenge = (("WWW-Authenticate", 'Key realm="runmcp-fast"'),)
        where = f"the {header} header" + (f" or the {query} query parameter" if query else "")
        self.missing = problem_answer(401, f"no API key: send it in {where}", headers=challenge)
        self.invalid = problem_answer(401, "the API key is not valid", headers=challenge)
        self.twice = problem_answer(401, f"more than one API key in {where}", headers=challenge)

    cdef object on_request(self, ClientProtocol conn, Request req):
        if _identified(req):
            return None
        cdef Py_ssize_t count = 0
        cdef Py_ssize_t at = _find_header(req.lines, self.header, &count)
        cdef bint in_query = False
        key = None
        if count > 1:
            return self.twice
        if at >= 0:
            key = (<bytes>req.lines[at + 2]).strip(b" \t")
        if self.query is not None:
            value, n = _query_param(req.url, self.query)
            if n > 1 or (n and key is not None):
                return self.twice
            if value is not None:
                key = value
                in_query = True
        if key is None:
            if self.anonymous is not None:
                conn.identify(req, self.anonymous, self, True)
                return None
            return self.missing
        found = self.keys.get(key)
        if found is None or not _same_secret(<bytes>key, <bytes>(<tuple>found)[0]):
            return self.invalid
        if self.hide:
            if in_query:
                req.url = _without_query_param(req.url, self.query)
            else:
                _drop_line(req, at)
        conn.identify(req, <Consumer>(<tuple>found)[1], self, False)
        return None


cdef class BasicAuthStep(Step):
    """HTTP Basic credentials checked against a consumer's bcrypt or argon2 hash.

    A hash check costs tens of milliseconds by design: it runs on a thread,
    while the request waits (Wait), at most `max_pending` at once (beyond:
    503 with Retry-After). A check that succeeded is remembered for
    `cache_ttl` seconds by a digest of the header (never the password
    itself), so a client's next requests cost a dict lookup.
    """

    cdef dict users  # username (bytes) -> (hash, Consumer)
    cdef bint hide
    cdef Consumer anonymous
    cdef double cache_ttl
    cdef long long max_pending
    cdef public long long pending
    # digest of the header value -> (Consumer, until). The step's own, dropped with it
    # when a consumer changes (the step is made again): a removed consumer's password,
    # or a changed one's old password, must stop working at once, not cache_ttl later.
    # (Its counted failures are its plugin's Counters, which outlive it.)
    cdef dict verified
    cdef bytes salt  # keys the digests: they mean nothing outside this process
    cdef object verify  # (hash, password) -> bool, run on a thread
    cdef object executor
    cdef tuple missing
    cdef tuple invalid
    cdef tuple twice
    cdef tuple busy

    def __init__(self, str realm, bint hide, dict users, verify, executor, double cache_ttl,
                 long long max_pending, Consumer anonymous=None, *, str name="basic-auth",
                 int priority=2520, bint fail_open=False):
        Step.__init__(self, name, PHASE_ACCESS, priority=priority, fail_open=fail_open,
                      reads_envelope=False)
        self.users = users
        self.hide = hide
        self.anonymous = anonymous
        self.cache_ttl = cache_ttl
        self.max_pending = max_pending
        self.verified = {}
        self.salt = os.urandom(16)
        self.verify = verify
        self.executor = executor
        challenge = (("WWW-Authenticate", f'Basic realm="{realm}", charset="UTF-8"'),)
        self.missing = problem_answer(401, "no credentials: send Authorization: Basic", headers=challenge)
        self.invalid = problem_answer(401, "the username or password is not valid", headers=challenge)
        self.twice = problem_answer(401, "more than one Authorization header", headers=challenge)
        self.busy = problem_answer(
            503, "too many password checks under way; try again", headers=(("Retry-After", "1"),)
        )

    cdef object on_request(self, ClientProtocol conn, Request req):
        if _identified(req):
            return None
        cdef Py_ssize_t count = 0
        cdef Py_ssize_t at = _find_header(req.lines, b"authorization", &count)
        if count > 1:
            return self.twice
        if at < 0:
            if self.anonymous is not None:
                conn.identify(req, self.anonymous, self, True)
                return None
            return self.missing
        cdef bytes value = (<bytes>req.lines[at + 2]).strip(b" \t")
        if len(value) < 6 or value[:6].lower() != b"basic ":
            if self.anonymous is not None:
                conn.identify(req, self.anonymous, self, True)  # another scheme's credential
                return None
            return self.missing
        digest = hashlib.blake2b(value, key=self.salt, digest_size=16).digest()
        known = self.verified.get(digest)
        if known is not None and (<tuple>known)[1] > monotonic():
            self._accept(conn, req, at, (<tuple>known)[0])
            return None
        try:
            user, sep, password = base64.b64decode(value[6:].strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return self.invalid
        entry = self.users.get(user) if sep else None
        if entry is None:
            return self.invalid
        if self.pending >= self.max_pending:
            return self.busy
        self.pending += 1
        return Wait(_check_password(self, conn, req, at, digest, entry, password))

    def _checked(self, ClientProtocol conn, Request req, Py_ssize_t at, bytes digest, tuple entry,
                 bint ok):
        self.pending -= 1
        if not ok:
            return self.invalid
        if len(self.verified) >= 65536:
            self.verified.clear()  # bounded, whatever clients send
        self.verified[digest] = (entry[1], monotonic() + self.cache_ttl)
        self._accept(conn, req, at, entry[1])
        return None

    @property
    def cached(self):
        """How many checked credentials are remembered now."""
        return len(self.verified)

    cdef _accept(self, ClientProtocol conn, Request req, Py_ssize_t at, Consumer consumer):
        if self.hide:
            _drop_line(req, at)
        conn.identify(req, consumer, self, False)


async def _check_password(BasicAuthStep step, ClientProtocol conn, Request req, Py_ssize_t at,
                          bytes digest, tuple entry, bytes password):
    loop = asyncio.get_running_loop()
    try:
        ok = await loop.run_in_executor(step.executor, step.verify, entry[0], password)
    except BaseException:
        step.pending -= 1
        raise
    return step._checked(conn, req, at, digest, entry, ok)


cdef class ConsumerRestrictionStep(Step):
    """Only the consumers (or groups) allowed, none of those denied; after authentication."""

    cdef frozenset allow_consumers
    cdef frozenset allow_groups
    cdef frozenset deny_consumers
    cdef frozenset deny_groups
    cdef bint allow_any
    cdef tuple refused
    cdef tuple unknown

    def __init__(self, allow_consumers, allow_groups, deny_consumers, deny_groups,
                 int status, *, str name="consumer-restriction", int priority=2400,
                 bint fail_open=False):
        Step.__init__(self, name, PHASE_ACCESS, priority=priority, fail_open=fail_open,
                      reads_envelope=False)
        self.allow_consumers = frozenset(allow_consumers)
        self.allow_groups = frozenset(allow_groups)
        self.deny_consumers = frozenset(deny_consumers)
        self.deny_groups = frozenset(deny_groups)
        self.allow_any = not self.allow_consumers and not self.allow_groups
        self.refused = problem_answer(status, "this consumer may not use this route")
        self.unknown = problem_answer(
            401, "this route needs an authenticated consumer: no authentication step found one"
        )

    cdef object on_request(self, ClientProtocol conn, Request req):
        cdef Consumer consumer = req.consumer
        if consumer is None:
            return self.unknown
        if consumer.name in self.deny_consumers or not self.deny_groups.isdisjoint(consumer.groups):
            return self.refused
        if self.allow_any or consumer.name in self.allow_consumers:
            return None
        if not self.allow_groups.isdisjoint(consumer.groups):
            return None
        return self.refused
