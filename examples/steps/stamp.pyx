# cython: language_level=3
"""The same step as stamp.py, compiled: a C call per response, no Python frame.

It subclasses the data plane's `Step` (cimported from `_dataplane.pxd`) and
overrides the one hook it declares. Build it like any extension, with the
repository root on Cython's include path (tests/test_chain_extension.py does).
"""

from runmcp_fast._dataplane cimport (
    HOOK_RESPONSE,
    PHASE_RESPONSE_HEADERS,
    ClientProtocol,
    Request,
    Step,
)


cdef class StampStep(Step):
    """Adds `X-Served-By: <value>` to the response head, proxied or answered by the gateway."""

    cdef bytes line  # the whole header line, made once

    def __init__(self, str value, *, str name="stamp"):
        Step.__init__(self, name, PHASE_RESPONSE_HEADERS, hooks=HOOK_RESPONSE)
        self.line = b"X-Served-By: " + value.encode("latin-1") + b"\r\n"

    cdef list on_response(self, ClientProtocol conn, Request req, int status, list lines,
                          long long content_length):
        lines.append(self.line)
        return lines
