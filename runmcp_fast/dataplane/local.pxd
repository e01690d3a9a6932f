cdef class LocalStream:
    # A local handler's response body, written over time (an event stream).
    cdef ClientProtocol _client  # the connection it goes to, once the head is out
    cdef list _early  # written before the head went out
    cdef public bint closed
    cdef public object on_close

    cdef _ended(self)
