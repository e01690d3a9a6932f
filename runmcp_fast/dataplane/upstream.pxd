cdef class UpstreamConnection:
    # One keep-alive connection to an upstream: writes a request, parses its response.
    # Per-connection state
    cdef readonly Pool pool
    cdef public object transport
    cdef int out_fd  # its socket, to write on directly (send.pxi); -1: through the transport
    cdef bint out_queued  # the transport was given bytes since it last was empty
    cdef OwnReads reads  # its reads once ours (reads.pxi); None: the transport's
    cdef int stream_reads  # reads the transport made (ours are taken at the second)
    cdef public ClientProtocol client  # the connection it answers now; None when idle
    cdef public bint closed
    cdef public long long requests  # responses completed on this connection
    cdef public double idle_since
    cdef public double deadline  # read deadline while bound; 0 when idle
    cdef double read_timeout  # to the response's first byte
    cdef double idle_timeout  # between two reads after it
    cdef bint streaming  # an event stream: no read timeout while it lasts
    cdef public bint reading_paused
    cdef bint tunnel
    cdef bint tunnel_eof  # a tunnel whose upstream sent its end of stream
    # Per-exchange state
    cdef bint head_request
    cdef bint got_response
    cdef long long bound_at_requests
    cdef bytes _reason
    cdef long long _content_length
    cdef bint _chunked
    cdef bint _no_body
    cdef bint _head_done
    cdef list _connection_tokens
    cdef bytes _upgrade_value
    cdef bint _switching
    cdef bint _junk
    cdef bint _bad_coding
    cdef bint _complete_pending  # the response ended in this read; finish after parsing it
    cdef bint _discard  # a 5xx dropped for a retry elsewhere: read to its end, then released
    cdef bint _keep_alive
    cdef bint _conn_close  # `Connection: close` alone
    cdef bint _conn_keep_alive  # `Connection: keep-alive` alone
    cdef bint _http11  # the response's version is HTTP/1.1
    cdef int _status  # the status code of the head read last (_scan_head)
    cdef long long _body_left  # a Content-Length body: its bytes still to come
    cdef int _ck_state  # a chunked body: where its framing is (an rmf_chunk_t's, _respscan.h)
    cdef unsigned long long _ck_left
    cdef object _read  # what holds the read being parsed now (a bytes, the loop's buffer), else None
    cdef bytes _raw  # the head's bytes from earlier reads, while a head spans reads; else None
    cdef Py_ssize_t _raw_pos  # where the current head starts at _head_base (after any 1xx)
    cdef const char* _head_base  # the head being parsed: _raw's bytes, or the read's (in a read only)
    cdef Py_ssize_t _head_len
    cdef Py_ssize_t _head_stop  # where the head's CRLFCRLF starts (_scan_head's answer)
    cdef Py_ssize_t _head_read  # how many of this read's bytes end _head_base (all but a big body's)
    cdef Py_ssize_t _head_checked  # the head's bytes from _raw_pos checked as whole lines so far
    cdef bytes _status_line  # the upstream's status line when it is HTTP/1.1, else None

    cdef Py_ssize_t _headers_complete(self) except -2
    cdef int _body(self, const char* at, size_t n) except -1
    cdef _feed(self, object owner, const char* data, Py_ssize_t n, bint reused)
    cdef int _parse(self, const char* data, Py_ssize_t n) except -1
    cdef int _read_body(self, const char* data, Py_ssize_t pos, Py_ssize_t n) except -1
    cdef int _head_goes_on(self) except -1
    cdef _complete(self, Py_ssize_t pos, Py_ssize_t n)
    cdef _refuse(self, int code)
    cdef _reset_response(self)
    cdef bind(self, ClientProtocol client, bint head_request, double read_timeout,
              double idle_timeout, double now)
    cdef write(self, list parts)
    cdef stream_mode(self)
    cdef pause_reading(self)
    cdef resume_reading(self)
    cdef abandon(self)
    cpdef close(self)
    cdef timed_out(self)
    cdef _release_reads(self)
    cdef _read_once(self)
    cdef bint reads_alive(self, bint look) except -1
    cdef _abort(self)
    cdef bint _response_keeps_alive(self)
    cdef list _scan_head(self, const char* buf, Py_ssize_t start, Py_ssize_t n, object drop)
    cdef _finish(self, bint keep_alive)
    cdef _invalid(self, str detail)
    cdef _switch_to_tunnel(self, bytes rest)


cdef class BufferedUpstreamConnection(UpstreamConnection):
    # Reads into its loop's buffer (asyncio.BufferedProtocol), not a new bytes per read.
    pass
