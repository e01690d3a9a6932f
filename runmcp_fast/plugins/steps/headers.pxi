# -- headers: add, set, remove request and response headers per route ----------------------
#
# Names and values are checked when the config is (builtin/headers.py): tokens,
# one line each, never a framing or hop-by-hop field. What is left here is
# dropping lines by name and appending the lines made once.


cdef class HeadersRequestStep(Step):
    """The request sent upstream: headers removed (and those set, first), then set and
    added ones appended. In the rewrite phase: the steps after it see the result."""

    cdef tuple drop  # lower-case names: removed, and set (replaced)
    cdef tuple add  # (name, b": ", value, b"\r\n") * n, appended

    def __init__(self, drop, add, *, str name="headers:request", int priority=8000,
                 bint fail_open=False):
        Step.__init__(self, name, PHASE_REWRITE, priority=priority, fail_open=fail_open,
                      reads_envelope=False)
        self.drop = tuple(n.lower().encode("latin-1") for n in drop)
        pieces = []
        for header, value in add:
            pieces += (header.encode("latin-1"), b": ", value.encode("latin-1"), b"\r\n")
        self.add = tuple(pieces)

    cdef object on_request(self, ClientProtocol conn, Request req):
        if self.drop:
            _drop_named(req, self.drop)
        if self.add:
            if req.lines is None:
                req.lines = list(self.add)
            else:
                req.lines.extend(self.add)
        return None


cdef class HeadersResponseStep(Step):
    """The response head, proxied or the gateway's own answer: headers removed (and those
    set), then the set and added ones appended."""

    cdef tuple drop
    cdef bytes block  # the lines appended, joined once

    def __init__(self, drop, add, *, str name="headers:response", int priority=0,
                 bint fail_open=False):
        Step.__init__(self, name, PHASE_RESPONSE_HEADERS, priority=priority,
                      hooks=HOOK_RESPONSE, fail_open=fail_open, reads_envelope=False)
        self.drop = tuple(n.lower().encode("latin-1") for n in drop)
        self.block = b"".join(
            header.encode("latin-1") + b": " + value.encode("latin-1") + b"\r\n"
            for header, value in add
        )

    cdef list on_response(self, ClientProtocol conn, Request req, int status, list lines,
                          long long content_length):
        if self.drop:
            lines = _drop_response_lines(lines, self.drop, None)
        if self.block:
            lines.append(self.block)
        return lines
