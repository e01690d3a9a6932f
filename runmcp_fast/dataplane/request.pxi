# -- per-request state (its fields are declared and documented in request.pxd) ----------


# PERF: no_gc: a Request holds no reference back to anything that holds it, so it
# needs no cycle collection; one tracked allocation fewer per request.
@cython.no_gc
@cython.freelist(64)
cdef class Request:
    """One request on a client connection, from its first byte to its response's last."""

    def __cinit__(self):
        self.url = b""
        self.pin = -1
        self.content_length = -1
        self.keep_alive = True
        self.http11 = True
        self.head_mark = -1

    cdef object get_params(self):
        if self.route_buf is not None:
            self._params = hit_params(self.route_buf, &self.route_hit, self.route_names)
            self.route_buf = None
        return self._params

    @property
    def params(self):
        """The route's path params (dict), or None."""
        return self.get_params()

    @params.setter
    def params(self, value):
        self._params = value
        self.route_buf = None


cdef enum:
    # Why reading from the client is paused (a bit each; reading resumes at zero).
    P_UPSTREAM = 1  # the upstream's write buffer is full
    P_BUFFER = 2  # too much body or too many pipelined requests are waiting
    P_DONE = 4  # nothing more will be read (rejected, upgrading, closing)
    # What the connection's deadline means when it passes.
    D_NONE = 0
    D_IDLE = 1  # keep-alive idle: close quietly
    D_HEAD = 2  # request head too slow: 408
    D_BODY = 3  # request body too slow: 408 (or abort once the response began)
    BUFFER_LIMIT = 262144  # body or pipelined bytes held while waiting; then pause
    STREAM_BUFFER_LIMIT = 1048576  # unread bytes a local stream's listener may fall behind
    REPLAY_LIMIT = 65536  # body kept for a retry on a fresh connection

cdef bytes _FINAL_CHUNK = b"0\r\n\r\n"
cdef bytes _SSE_KEEPALIVE = b": keep-alive\n\n"
cdef bytes _CHUNKED_KEEPALIVE = b"e\r\n: keep-alive\n\n\r\n"
cdef bytes _CONNECTION_CLOSE = b"Connection: close\r\n"
cdef bytes _CONNECTION_KEEP_ALIVE = b"Connection: keep-alive\r\n"
cdef bytes _TE_CHUNKED = b"Transfer-Encoding: chunked\r\n"
cdef bytes _VIA = b"1.1 runmcp-fast"
cdef bytes _VIA_NAME = b"runmcp-fast"
# A request whose Via names us this many times is going round in a loop (an upstream
# URL that leads back to a gateway): answered 508 there, not passed round again until
# its head outgrows the header limit (~100 hops, a connection each, then a 431 that
# says nothing of why). No real chain of gateways is this long.
cdef int LOOP_HOPS = 10
cdef bytes _VIA_LINE = b"Via: 1.1 runmcp-fast\r\n"
cdef bytes _OPTIONS_STAR = (
    b"HTTP/1.1 200 OK\r\nAllow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n"
    b"Content-Length: 0\r\n\r\n"
)


cdef bint _replayable(Request req):
    """Safe to resend on a fresh connection: idempotent, or nothing of the body went out."""
    if req.has_body and req.body_sent == 0:
        return True
    return req.method in IDEMPOTENT and not req.replay_lost


cdef inline _keep_for_replay(Request req, bytes piece):
    if req.body_sent <= REPLAY_LIMIT:
        if req.replay is None:
            req.replay = []
        req.replay.append(piece)
    else:
        req.replay_lost = True
        req.replay = None


cdef inline bint _not_worth_reading(Request req):
    """A body refused before it is read: reading it all is not worth it when the client
    waits for 100 Continue or sends a lot; the connection closes after the answer."""
    return req.has_body and (req.expect_continue or req.content_length > BUFFER_LIMIT)


class _Stop(Exception):
    """Raised in an upstream parser callback to stop parsing a response given up on."""


class _Reject(Exception):
    """Raised in a parser callback to stop parsing and answer `status`."""

    def __init__(self, status, detail, headers=()):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers
