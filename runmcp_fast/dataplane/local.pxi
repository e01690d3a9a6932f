# -- answers the gateway makes itself: local handlers' requests and streams (local.pxd) ---


class LocalRequest:
    """A request a local handler answers: its head, whole body and route params."""

    __slots__ = (
        "body",
        "consumer",
        "ctx",
        "headers",
        "host",
        "loopback",
        "method",
        "params",
        "path",
        "peer",
        "query",
        "repeated",
        "vars",
    )

    def __init__(self, bytes method, bytes url, host, list lines, bytes body, params, bytes peer):
        self.method = method.decode("ascii")
        path, _, query = url.partition(b"?")
        self.path = path.decode("latin-1")
        self.query = query.decode("latin-1")
        self.host = host.decode("latin-1") if host is not None else ""
        headers = {}
        repeated = None
        if lines is not None:
            for i in range(0, len(lines), 4):
                key = lines[i].decode("latin-1").lower()
                if key in headers:
                    # (`headers` keeps the last: a handler for which one value is
                    # the rule, 2026-07-28's Mcp-Name say, must see there were more)
                    if repeated is None:
                        repeated = set()
                    repeated.add(key)
                headers[key] = lines[i + 2].decode("latin-1")
        self.headers = headers
        self.repeated = repeated
        self.body = body
        self.params = params or {}
        self.peer = peer.decode("ascii")
        self.ctx = None  # the ServerContext it came through (for requests of its own)
        self.loopback = False  # it came in on a loopback address
        self.consumer = None  # the Consumer an authentication step identified, or None
        self.vars = {}  # what the route's steps left for the handler (claims, scopes, ...)


_HANDLER_FAILED_DETAIL = "the request handler failed"
_HANDLER_FAILED = (
    500,
    (("Content-Type", "application/problem+json"),),
    b'{"type":"about:blank","title":"Internal Server Error","status":500,'
    b'"detail":"the request handler failed; the gateway logged why"}',
)


@cython.final
cdef class LocalStream:
    """A local handler's response body, written over time: an event stream.

    The handler returns (status, headers, stream); the gateway sends the head
    at once, then each `write` as a chunk, until `close()` or the client goes
    away. `on_close`, when set, is called once when the stream ends for any
    reason (the handler's close, the client leaving, the gateway stopping).
    """

    def __init__(self, on_close=None):
        self._early = []
        self.on_close = on_close

    def write(self, bytes data):
        """Send `data` (a whole event, preferably); False when nobody listens any more."""
        if self.closed:
            return False
        if self._client is None:
            self._early.append(data)
            return True
        return self._client._stream_write(self, data)

    def close(self):
        """End the response (the connection stays for the client's next request)."""
        if self.closed:
            return
        if self._client is None:
            self.closed = True  # ended as soon as the head goes out
            return
        self._client._stream_end(self)

    @property
    def open(self):
        return not self.closed

    cdef _ended(self):
        self.closed = True
        self._early = None
        callback = self.on_close
        self.on_close = None
        if callback is not None:
            try:
                callback(self)
            except Exception as exc:
                asyncio.get_event_loop().call_exception_handler(
                    {"message": "a stream's on_close failed", "exception": exc}
                )
