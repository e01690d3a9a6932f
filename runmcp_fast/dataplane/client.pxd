cdef class ServerContext:
    # What every client connection of one gateway shares.
    cdef public Clock clock
    cdef public object limits
    cdef readonly object snapshot  # swapped whole by a reload (swap); read once, when routed
    # snapshot.router, read without the Python attribute lookup (~140 instructions a
    # request): set with `snapshot`, in __init__ and swap
    cdef object router
    cdef public object tenant_header  # the snapshot's `tenancy.header`, lower-case bytes, or None
    cdef readonly Chain unrouted_chain  # the snapshot's log steps for requests no route took
    cdef public set connections
    cdef public bint closing
    cdef public dict state  # what local handlers keep per server (MCP event streams)
    cdef long long unrouted[6]  # requests no route took (404, 405, 400...), by status class
    # The limits, unpacked once.
    cdef readonly long long max_url_bytes
    cdef readonly long long max_header_bytes
    cdef readonly long long max_headers
    cdef readonly long long max_body_bytes
    cdef readonly long long max_connections
    cdef readonly double header_timeout
    cdef readonly double body_timeout
    cdef readonly double keepalive_timeout


cdef class ClientProtocol:
    # The client side of one connection: parse, route, run the chain, proxy, stream back.
    # Global state (shared by every connection of the gateway)
    cdef readonly ServerContext ctx
    cdef Clock clock
    cdef bytes forwarded_proto
    cdef bytes forwarded_host
    # Per-connection state
    cdef public object transport
    cdef int out_fd  # its socket, to write on directly (send.pxi); -1: through the transport
    cdef bint out_queued  # the transport was given bytes since it last was empty
    cdef OwnReads reads  # its reads once ours (reads.pxi); None: the transport's
    cdef int stream_reads  # reads the transport made (ours are taken at the second)
    # The request parser: an llhttp_t (malloc'd; parse.pxi's callbacks find us in it).
    # Opaque here, so that an extension cimporting this file needs no llhttp.h.
    cdef void* parser
    cdef object parse_error  # what a parser callback raised (a _Reject...), raised again after parsing
    cdef char* tok  # the URL, or a header's name and then its value, as llhttp gives them (malloc'd)
    cdef Py_ssize_t tok_len
    cdef Py_ssize_t tok_cap
    cdef Py_ssize_t name_len  # where in `tok` the header's name ends and its value starts
    # The head being read's kept header lines so far, name then value (owned): at its end
    # they become its `lines`, a list of the exact size (headers.pxi, _take_kept).
    cdef PyObject* kept[32]
    cdef int nkept
    cdef readonly bytes peer  # the client's address, ASCII
    cdef readonly bint loopback  # it came in on a loopback address (127/8, ::1): read once, at connect
    cdef public bint closed
    cdef public bint closing  # finish what was read, then close
    cdef bint close_when_flushed
    cdef double deadline
    cdef int deadline_kind
    cdef long long head_bytes  # bytes of the head being read, counted after each read
    cdef bint began_in_feed  # a message began in the read being parsed
    cdef long long feed_accounted  # bytes of this read that callbacks gave to other things
    cdef bint in_feed  # inside data_received: writes are corked until it ends
    cdef int paused  # why reading is paused (P_* bits)
    cdef bint write_paused
    cdef list pending  # bytes for the client, written at the end of the read
    cdef list up_pending  # bytes for the upstream, likewise
    cdef object queue  # pipelined requests waiting their turn (a deque, once needed)
    cdef long long queued_bytes
    cdef bint tunnel
    cdef bint tunnel_eof  # a tunnel whose client sent its end of stream
    cdef bytes tunnel_early  # what came after an Upgrade request: sent upstream once a 101 comes
    cdef UpstreamConnection upstream
    cdef bint waiting  # the active request waits for a connection or a handler
    cdef object retry_timer  # the TimerHandle of a retry waiting out its back-off
    # Per-request state
    cdef Request current  # the one being read
    cdef Request active  # the one being answered
    cdef LocalStream stream  # a local handler's open stream

    # -- for steps
    cdef want_body(self, Request req, Step step, object state)
    cdef identify(self, Request req, Consumer consumer, Step step, bint anonymous)
    cdef stream_events(self, Request req, double keepalive_every)
    cdef step_failed(self, Step step, object exc)
    cdef step_done(self, Request req, object result)
    cdef inline bint keeps_alive(self, Request req):
        """The connection can stay open once `req` is answered: it was read to its end,
        and the connection is not closing with nothing else read to answer."""
        return req.keep_alive and req.complete and not (self.closing and not self.queue)
    # -- for the upstream side and the pool
    cdef inline bint awaits_connection(self):
        """Still waiting for an upstream connection (or a handler), and still here."""
        return self.waiting and not self.closed
    cdef inline bint awaits_connection_for(self, Request req):
        """Still waiting for an upstream connection for `req`. A pool's waiter or a
        connect under way is made for one request: that request may have been answered
        meanwhile (its total timeout) and the next one on this connection be waiting
        for another pool, which must not get this one's connection or its failure."""
        return self.waiting and not self.closed and self.active is req
    cpdef upstream_attached(self, UpstreamConnection conn)
    cpdef connect_failed(self, Pool pool, int status, str detail)
    cpdef upstream_unavailable(self, int status, str detail)
    cdef upstream_write_paused(self, bint paused)
    cdef response_head(self, int status, bytes line, bytes reason, list lines,
                       long long content_length, bint chunked, bint no_body)
    cdef response_body(self, bytes data)
    cdef response_span(self, object owner, const char* at, Py_ssize_t n)
    cdef response_complete(self)
    cdef response_failed(self, int status, str detail, int why, bint reused)
    cdef bint retry_response(self, int status, bytes head)
    cdef tunnel_data(self, object data)
    cdef tunnel_closed(self)
    cdef check_deadlines(self, double now)
    cdef _total_timed_out(self, Request req)
    cdef _flush(self)
    cdef _write_pending(self)
    # -- for local streams
    cdef bint _stream_write(self, LocalStream stream, bytes data)
    cdef _stream_end(self, LocalStream stream)
    # -- internals (client.pxi, in its order)
    cdef bint _streaming_without_end(self)
    cdef int _message_begin(self) except -1
    cdef int _header(self) except -1
    cdef int _headers_complete(self) except -1
    cdef int _body(self, const char* at, size_t n) except -1
    cdef int _message_complete(self) except -1
    cdef _parse_failed(self, int err, bytes data)
    cdef _refuse_loop(self, Request req)
    cdef _route(self, Request req)
    cdef tuple _non_origin_target(self, Request req, bytes url, host)
    cdef object _preflight(self, Request req, router, host, bytes url, bint missed, RouteHit* hit)
    cdef _route_miss(self, Request req, router, host, bytes url)
    cdef _run_request_steps(self, Request req, Py_ssize_t start)
    cdef _head_answer(self, Request req, answer)
    cdef _hold(self, Request req, Step step, Py_ssize_t index, awaitable)
    cdef _stream_body(self, Request req)
    cdef _resume_buffering(self)
    cdef bytes _upstream_head(self, Request req)
    cdef _enqueue(self, Request req)
    cdef _start(self, Request req)
    cdef _proceed(self, Request req)
    cdef _acquire(self, Request req)
    cdef _acquire_replica(self, Request req)
    cdef Replica _within_limits(self, Request req, Replica replica)
    cdef _send_to(self, Request req, Replica replica)
    cdef _leave(self, Request req)
    cdef bint _retry(self, Request req, int why)
    cdef _request_done(self)
    cdef _end(self, Request req)
    cdef _body_piece(self, Request req, bytes piece)
    cdef _whole_body(self, Request req, bytes data)
    cdef _send_passed(self, Request req)
    cdef _send_upstream(self, Request req, bytes piece)
    cdef _body_complete(self, Request req)
    cdef _run_body_steps(self, Request req, bytes data, Py_ssize_t start)
    cdef _hold_body(self, Request req, Step step, Py_ssize_t k, bytes data, awaitable)
    cdef _body_onward(self, Request req, bytes data)
    cdef object _awaited_answer(self, Request req, Step step, future)
    cdef _call_handler(self, Request req, bytes body)
    cdef _handler_failed(self, exc)
    cdef _local_answer(self, Request req, tuple result)
    cdef _late_answer(self, Request req, answer)
    cdef list _run_response_steps(self, Request req, int status, list lines, long long content_length)
    cdef bytes _answer_steps(self, Request req, bytes response)
    cdef _keepalive(self, Request req, double now)
    cdef _stream_start(self, Request req, int status, headers, LocalStream stream, bint keep_alive)
    cdef _upgrade_requested(self, bytes rest)
    cdef _become_tunnel(self)
    cdef _answer_error(self, int status, str detail, tuple headers=*)
    cdef _answered(self, Request req, bytes response, bint keep_alive)
    cdef _reject_current(self, int status, str detail, tuple headers)
    cdef _abort(self)
    cdef _set_deadline(self, int kind, double seconds)
    cdef _clear_deadline(self)
    cdef _close_after_flush(self)
    cdef _close(self)
    cdef _received(self, bytes data)
    cdef _reading(self, bint on)
    cdef _release_reads(self)
    cdef _read_once(self)
    cdef _pause(self, int reason)
    cdef _resume(self, int reason)
