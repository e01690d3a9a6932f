# -- the chain: a route's steps, by phase (chain.pxd) -------------------------------------
#
# A step's hooks answer None to let the request go on, or an *answer* to stop
# it: a tuple (status, headers, body), as a local handler returns, or an
# object with `status` and `response(keep_alive, head_only) -> bytes` (a
# contract's verdict). A step that needs the whole body calls
# `conn.want_body(req, step, state)` and gets `on_body(..., state)` once it
# is read. A step that must wait (I/O) answers `Wait(awaitable)`; the chain
# goes on when the awaitable is done (only such a route ever awaits).

import logging

_log = logging.getLogger("runmcp_fast.chain")

PHASES = {
    "rewrite": PHASE_REWRITE,
    "access": PHASE_ACCESS,
    "contract": PHASE_CONTRACT,
    "mcp": PHASE_MCP,
    "response_headers": PHASE_RESPONSE_HEADERS,
    "log": PHASE_LOG,
}
PHASE_NAMES = {value: name for name, value in PHASES.items()}
HOOKS = {"request": HOOK_REQUEST, "response": HOOK_RESPONSE, "log": HOOK_LOG}

_STEP_FAILED = (
    500,
    (("Content-Type", "application/problem+json"),),
    b'{"type":"about:blank","title":"Internal Server Error","status":500,'
    b'"detail":"a step of this route failed; the gateway logged why"}',
)


cdef int _phase_value(phase) except -1:
    if isinstance(phase, str):
        try:
            return PHASES[phase]
        except KeyError:
            raise ValueError(f"unknown phase {phase!r}; one of: {', '.join(PHASES)}") from None
    if phase not in PHASE_NAMES:
        raise ValueError(f"unknown phase {phase!r}")
    return phase


@cython.final
cdef class Counters:
    """What the steps of one plugin counted: `failures` (exceptions) and the plugin's own
    events (a jwt-auth step's verified/cached/refused, ...), by the index of the name
    in `events`.

    Prometheus counters must only go up while the process lives, but a step lives only
    as long as its settings: one is made again at every config change that touches
    them (for jwt-auth: any consumer's). So a step counts into its plugin's Counters,
    which the gateway keeps across snapshots (plugins.contract.Resources.counters) and
    gives to each step it makes (`Step.adopt_counts`), as it keeps a route's RouteStats
    (metrics.registry.StatsRegistry): the new step goes on from where the old one was,
    and a request still on the old one counts in the same place.
    """

    def __init__(self, events=()):
        events = tuple(events)
        if len(events) > COUNTED_EVENTS:
            raise ValueError(f"at most {COUNTED_EVENTS} events")
        self.events = events

    def values(self):
        """{event: count} (failures not among them)."""
        cdef Py_ssize_t i
        return {self.events[i]: self.n[i] for i in range(len(self.events))}

    def __getitem__(self, str event):
        return self.n[self.events.index(event)]

    def __repr__(self):
        return f"<Counters {self.values()} failures={self.failures}>"


cdef class Step:
    """One step of a route's chain. Subclasses override the hooks they declare.

    An instance of Step itself does nothing in each hook it declares: the
    cost of the mechanism, measured in bench/load.
    """

    def __cinit__(self):
        # (a subclass that never calls Step.__init__ may read the envelope too)
        self.reads_envelope = True

    def __init__(self, str name, phase, *, int priority=0, int hooks=HOOK_REQUEST,
                 bint fail_open=False, bint needs_params=False, bint reads_envelope=True):
        self.name = name
        self.phase = _phase_value(phase)
        self.priority = priority
        self.hooks = hooks
        self.fail_open = fail_open
        self.needs_params = needs_params
        # False only where the step's class never reads req.vars["mcp.envelope"]: on a
        # chain of such steps the envelope step checks the body and makes nothing of it
        # (McpEnvelopeStep). True by default: a step that says nothing may read it.
        self.reads_envelope = reads_envelope
        self.counts = Counters(type(self).EVENTS)

    # The names of the events the step counts in `counts` (a subclass's own).
    EVENTS = ()

    @property
    def failures(self):
        """Exceptions raised by the steps of its plugin (see Counters)."""
        return self.counts.failures if self.counts is not None else 0

    def adopt_counts(self, Counters counts not None):
        """Count into `counts` from now on: the ones the gateway keeps for this plugin
        across snapshots (a step made again goes on from its predecessor's numbers)."""
        if counts.events != type(self).EVENTS:
            raise ValueError(f"{self.name}: counters of other events {counts.events}")
        self.counts = counts

    def __repr__(self):
        return f"<{type(self).__name__} {self.name!r} {PHASE_NAMES.get(self.phase, self.phase)}>"

    cdef object on_request(self, ClientProtocol conn, Request req):
        return None

    cdef object on_body(self, ClientProtocol conn, Request req, bytes body, object state):
        return None

    cdef int body_passes(self, ClientProtocol conn, Request req, bytes body,
                         object state) except -1:
        """1 if `on_body` would let `body` through, decided at once and with what a pass
        does (and nothing else) done; 0 if the step can not tell so cheaply: `on_body`
        runs at the message's end, as for any body. What it raises counts as 0 (on_body
        then meets the failure, handled as any step's).

        PERF: a body that comes in one piece and that its only body step passes here
        is not gathered in a list and handed to the steps at the message's end: it
        goes on then as a body no step reads goes (ClientProtocol._whole_body,
        _send_passed): ~400 instructions less a 1 KB POST checked against its
        contract, ~300 an MCP call (callgrind).
        """
        return 0

    cdef list on_response(self, ClientProtocol conn, Request req, int status, list lines,
                          long long content_length):
        """The response head's header lines (CRLF-terminated chunks), as they are to be sent.

        `req.pool` is None for an answer the gateway made itself. Return the
        lines (the same list changed, or a new one); framing headers
        (Content-Length, Transfer-Encoding, Connection) are the data plane's.
        """
        return lines

    cdef int on_log(self, ClientProtocol conn, Request req) except -1:
        return 0

    cdef object on_pin_failed(self, ClientProtocol conn, Request req, str detail):
        """The replica this step pinned the request to is gone: the answer (None: 502)."""
        return None

    cdef object failed(self, object exc):
        """Count `exc`; None to go on (fail_open), else the answer (500)."""
        _count_failure(self)
        return None if self.fail_open else _STEP_FAILED


cdef inline void _count_failure(Step step):
    if step.counts is None:
        step.counts = Counters(type(step).EVENTS)  # (a subclass that skipped Step.__init__)
    step.counts.failures += 1


@cython.final
cdef class Wait:
    """What a step answers to make the request wait for `awaitable` (its answer or None)."""

    cdef readonly object awaitable

    def __init__(self, awaitable):
        self.awaitable = awaitable


cdef class Chain:
    """A route's steps in the order they run: phase, then priority (higher first), then name."""

    def __init__(self, steps=()):
        cdef Step step
        ordered = []
        seen = set()
        for step in steps:  # (a TypeError for anything that is not a Step)
            if step.name in seen:
                raise ValueError(f"two steps named {step.name!r} in one chain")
            seen.add(step.name)
            ordered.append(step)
        ordered.sort(key=_step_order)
        self._adopt(tuple(ordered))

    cdef _adopt(self, tuple ordered):
        self.steps = ordered
        self.request_steps = tuple(s for s in ordered if s.hooks & HOOK_REQUEST) or None
        self.response_steps = tuple(s for s in ordered if s.hooks & HOOK_RESPONSE) or None
        self.log_steps = tuple(s for s in ordered if s.hooks & HOOK_LOG) or None
        self.needs_params = any(s.needs_params for s in ordered)
        self.reads_envelope = any(s.reads_envelope for s in ordered)

    cdef Chain for_consumer(self, Consumer consumer, Step identified_by):
        """This chain once `identified_by` has found `consumer`: the steps up to it as they
        are, then the rest with the consumer's steps in place of those of the same name
        (a consumer's step that would have run before it is left out: too late)."""
        key = (consumer, identified_by)
        if self._variants is None:
            self._variants = {}
        found = self._variants.get(key)
        if found is not None:
            return <Chain>found
        cdef Py_ssize_t at = self.steps.index(identified_by)
        after = _step_order(identified_by)
        theirs = [s for s in consumer.steps if _step_order(s) > after]
        names = {s.name for s in theirs}
        # The rest comes from the route's own steps, not from this chain's: when this
        # chain is already a variant (an `anonymous` stand-in's, whose steps replaced the
        # route's), the consumer found now must not inherit the stand-in's steps (its
        # stricter limit-count, say). A tuple of steps, not the route's Chain: no cycle
        # through `_variants` (a snapshot's chains are freed by reference counting).
        cdef tuple origin = self.origin_steps if self.origin_steps is not None else self.steps
        rest = [s for s in origin if _step_order(s) > after and s.name not in names]
        cdef Chain variant = Chain(())
        variant._adopt(self.steps[:at + 1] + tuple(sorted(rest + theirs, key=_step_order)))
        variant.origin_steps = origin
        if len(self._variants) < 4096:  # bounded whatever the consumers
            self._variants[key] = variant
        return variant

    def names(self):
        """The steps' names, in order."""
        return [s.name for s in self.steps]

    def describe(self):
        """[(phase name, step name, priority)] in order: what `routes --plugins` shows."""
        return [(PHASE_NAMES[s.phase], s.name, s.priority) for s in self.steps]

    def __len__(self):
        return len(self.steps)

    def __iter__(self):
        return iter(self.steps)

    def __repr__(self):
        return f"<Chain {' -> '.join(self.names()) or '(empty)'}>"


def _step_order(Step step):
    return (step.phase, -step.priority, step.name)


cdef class Consumer:
    """Who a request comes from, once an authentication step has identified it.

    Built with each snapshot from the config's `consumers`; `steps` are the
    steps of its own plugins, which replace the route's of the same name for
    its requests (see Chain.for_consumer).
    """

    def __init__(self, str name, groups=(), steps=()):
        self.name = name
        self.groups = frozenset(groups)
        self.steps = tuple(steps)

    def __repr__(self):
        return f"<Consumer {self.name!r}>"


cdef Chain _NO_STEPS = Chain(())  # every route without steps shares it


# -- Python steps -----------------------------------------------------------------------------


cdef class PyStep(Step):
    """A Python object as a step: called only on the routes that have it.

    The object has `name` and `phase` (a phase name), optionally `priority`
    and `fail_open`, and any of:

    - `request(view)` -> None, an answer (status, headers, body), or an
      awaitable of either (the chain waits for it);
    - `response(view, status, headers)`: `headers` is a list of (name,
      value) to change in place (framing headers are not in it);
    - `log(view, status)`, once the exchange is over.

    `view` is a RequestView.
    """

    cdef readonly object plugin
    cdef object _request
    cdef object _response
    cdef object _log

    def __init__(self, plugin, *, name=None, priority=None, fail_open=None):
        self.plugin = plugin
        self._request = getattr(plugin, "request", None)
        self._response = getattr(plugin, "response", None)
        self._log = getattr(plugin, "log", None)
        cdef int hooks = 0
        if self._request is not None:
            hooks |= HOOK_REQUEST
        if self._response is not None:
            hooks |= HOOK_RESPONSE
        if self._log is not None:
            hooks |= HOOK_LOG
        Step.__init__(
            self,
            plugin.name if name is None else name,
            plugin.phase,
            priority=getattr(plugin, "priority", 0) if priority is None else priority,
            hooks=hooks,
            fail_open=getattr(plugin, "fail_open", False) if fail_open is None else fail_open,
            needs_params=True,
        )

    cdef object on_request(self, ClientProtocol conn, Request req):
        result = self._request(RequestView._of(conn, req))
        if result is None or type(result) is tuple:
            return result
        if hasattr(result, "__await__"):
            return Wait(result)
        raise TypeError(
            f"step {self.name!r}: request() returned {type(result).__name__};"
            " None, (status, headers, body) or an awaitable of either"
        )

    cdef list on_response(self, ClientProtocol conn, Request req, int status, list lines,
                          long long content_length):
        cdef list framing = []
        cdef list headers = _parse_lines(lines, framing)
        self._response(RequestView._of(conn, req), status, headers)
        for name, value in headers:
            _check_field(name, value)
        cdef list out = [f"{name}: {value}\r\n".encode("latin-1") for name, value in headers]
        out += framing
        return out

    cdef int on_log(self, ClientProtocol conn, Request req) except -1:
        self._log(RequestView._of(conn, req), req.status)
        return 0


cdef list _parse_lines(list lines, list framing):
    """Header lines (CRLF-terminated chunks) as [(name, value)]; framing ones into `framing`."""
    cdef list out = []
    cdef bytes line
    for line in b"".join(lines).split(b"\r\n"):
        if not line:
            continue
        name, _, value = line.partition(b":")
        kind = _header_kind(name, len(name))
        if kind == HDR_CONTENT_LENGTH or kind == HDR_TRANSFER_ENCODING or kind == HDR_CONNECTION:
            framing.append(line + b"\r\n")
            continue
        out.append((name.decode("latin-1"), value.strip().decode("latin-1")))
    return out


cdef _check_field(name, value):
    if not isinstance(name, str) or not isinstance(value, str):
        raise TypeError("a header's name and value are str")
    if not name or any(c in name for c in ":\r\n \t") or "\r" in value or "\n" in value:
        raise ValueError(f"not a valid header field: {name!r}: {value!r}")


@cython.final
@cython.freelist(8)
cdef class RequestView:
    """A request as a Python step sees it: fields made when read, not before."""

    cdef ClientProtocol _conn
    cdef Request _req
    cdef dict _headers

    @staticmethod
    cdef RequestView _of(ClientProtocol conn, Request req):
        cdef RequestView view = RequestView.__new__(RequestView)
        view._conn = conn
        view._req = req
        return view

    @property
    def method(self):
        return self._req.method.decode("ascii")

    @property
    def path(self):
        return self._req.url.partition(b"?")[0].decode("latin-1")

    @property
    def query(self):
        return self._req.url.partition(b"?")[2].decode("latin-1")

    @property
    def host(self):
        host = self._req.host
        return host.decode("latin-1") if host is not None else ""

    @property
    def peer(self):
        return self._conn.peer.decode("ascii")

    @property
    def client_ip(self):
        """The client's address: the peer's, or what real-ip found behind trusted proxies."""
        client = self._req.client_ip
        return (client if client is not None else self._conn.peer).decode("ascii", "replace")

    @property
    def request_id(self):
        """The request's id (the request-id plugin's), or None."""
        found = self._req.request_id
        return found.decode("latin-1") if found is not None else None

    @property
    def preflight(self):
        """A CORS preflight: OPTIONS with Origin and Access-Control-Request-Method."""
        return self._req.preflight

    @property
    def params(self):
        params = self._req.get_params()
        return dict(params) if params else {}

    @property
    def route(self):
        """The route's name: the operation id, or the local route's."""
        target = self._req.target
        return target.name if target is not None else None

    @property
    def service(self):
        target = self._req.target
        return target.service_name if target is not None else None

    @property
    def consumer(self):
        """The name of the consumer an authentication step identified, or None."""
        consumer = self._req.consumer
        return consumer.name if consumer is not None else None

    @property
    def consumer_groups(self):
        consumer = self._req.consumer
        return consumer.groups if consumer is not None else frozenset()

    @property
    def vars(self):
        """A dict the route's steps share for this request (a consumer found, a key)."""
        if self._req.vars is None:
            self._req.vars = {}
        return self._req.vars

    @property
    def headers(self):
        """The request's end-to-end headers, lower-case names (repeated ones joined by ", ")."""
        if self._headers is None:
            headers = {}
            lines = self._req.lines
            if lines is not None:
                for i in range(0, len(lines), 4):
                    name = lines[i].decode("latin-1").lower()
                    value = lines[i + 2].decode("latin-1")
                    headers[name] = headers[name] + ", " + value if name in headers else value
            self._headers = headers
        return self._headers

    def header(self, str name):
        """One header's value (None when absent), without building `headers`."""
        value = _header_value(self._req.lines, name.lower().encode("latin-1"))
        return value.decode("latin-1") if value is not None else None

    def set_header(self, str name, str value):
        """Send `name: value` upstream in place of any header by that name."""
        _check_field(name, value)
        self.remove_header(name)
        _keep_line(self._req, name.encode("latin-1"), value.encode("latin-1"))
        self._headers = None

    def remove_header(self, str name):
        """Send no header by that name upstream."""
        cdef list lines = self._req.lines
        if not lines:
            return
        lower = name.lower().encode("latin-1")
        kept = []
        for i in range(0, len(lines), 4):
            if lines[i].lower() != lower:
                kept += lines[i:i + 4]
        self._req.lines = kept or None
        self._headers = None
