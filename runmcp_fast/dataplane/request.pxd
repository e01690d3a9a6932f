cdef class Request:
    # One request on a client connection, from its first byte to its response's last.
    # -- the head, as read
    cdef public bytes method
    cdef public bytes url  # the request target (path and query); a step may rewrite it
    cdef public object host  # bytes or None
    cdef public list lines  # (name, b": ", value, b"\r\n") per header kept for upstream; None: none
    cdef long long header_count
    cdef long long header_bytes
    cdef public long long content_length  # -1: none given
    cdef readonly bint chunked
    cdef list connection_tokens  # Connection's tokens, lower case
    cdef object forwarded_for  # X-Forwarded-For as received
    cdef object via
    cdef readonly bint expect_continue
    cdef object upgrade
    cdef public bint keep_alive
    cdef readonly bint http11
    cdef readonly bint is_head
    cdef readonly bint has_body
    # -- who it comes from, and what it is called (rewrite steps: real-ip, request-id)
    cdef public bytes client_ip  # the client's address, ASCII: the connection's peer, unless
    #                              real-ip found it behind trusted proxies (the access log's "client")
    cdef unsigned char client_addr[16]  # client_ip parsed (IPv4 as ::ffff:a.b.c.d), once a step needed it
    cdef signed char client_parsed  # 0: not parsed yet; 1: client_addr holds it; -1: not an IP (a Unix peer)
    cdef public bytes request_id  # its id (request-id), sent upstream, echoed, logged; None: none
    # -- a CORS preflight (OPTIONS with Origin and Access-Control-Request-Method)
    cdef public bint preflight
    cdef public str allowed  # a preflight's: the methods its path has (Router.allowed), ", "-joined
    cdef bint as_asked  # its path has no OPTIONS: routed as the method it asks about, for its
    #                     rewrite and access steps (cors) to answer; else 405, never forwarded
    # -- routing and the chain
    cdef public Target target
    cdef Chain chain  # the steps it runs: its target's, or those with its consumer's
    cdef public Consumer consumer  # who it comes from (an authentication step said), or None
    cdef public bint anonymous  # `consumer` is an auth step's stand-in for no credential
    # The route's path params (dict): `params` from Python, `get_params()` from C. Made
    # on first read from where the router left them (route_buf, route_hit, route_names):
    # a route whose only reader is its contract's C check never builds the dict.
    cdef object _params
    cdef object route_buf  # the matched path's buffer; None: no params left to make
    cdef object route_names  # a dispatched operation's own names; None: the route's
    cdef RouteHit route_hit
    cdef public dict vars  # what steps tell each other about this request (created on demand)
    cdef public long long limit  # the body size refused with 413
    cdef public int pin  # the replica it must go to (an MCP session's); -1: any
    cdef Step pinned_by  # the step that pinned it: asked what to answer if the replica is gone
    cdef Step body_step  # the first step that reads the whole body (see want_body)
    cdef object body_state  # what that step keeps until the body is complete
    cdef list body_more  # [(step, state)] of any further ones
    cdef Py_ssize_t step_next  # where the chain goes on after a step that was waited on
    cdef bint held  # a step is working on it (async): not sent, not answered yet
    cdef object step_waiter  # the future of that step, while held
    # -- the way upstream
    cdef public Pool pool  # the chosen replica's pool
    cdef public Replica replica  # the replica chosen; None: the service's only one, taken as it is
    cdef Replica head_for  # the replica `head` was made for (None: the target's first one)
    cdef unsigned long long tried  # replicas tried so far (bit: index % 64)
    cdef int retries  # tries on another replica so far
    cdef bint counted  # in its replica's `active` (and the service's)
    cdef bint pending  # in its replica's `pending`: waiting for a connection
    cdef double total_deadline  # the route's total timeout, from the first try (0: none)
    cdef bint local_body  # buffered whole, unframed (for a handler or a step reading the body)
    cdef bytes local  # a complete response the gateway answers itself
    cdef bint close_after
    cdef bytes head  # the request head as sent upstream
    cdef list body  # framed body pieces not yet sent upstream
    cdef bytes passed_body  # passed on arrival: goes on at the message's end (_whole_body)
    cdef long long buffered
    cdef long long body_bytes
    cdef long long body_sent
    cdef list replay  # framed pieces sent, kept while small so a retry can resend them
    cdef bint replay_lost  # more was sent than `replay` keeps: no retry
    cdef bint retried
    cdef bint complete  # its last byte was read
    cdef bint discard  # the rest of its body is read and dropped
    # -- its response
    cdef public int status
    cdef bint response_started
    cdef bint response_done
    cdef bint out_chunked  # the response is framed chunked towards the client
    cdef Py_ssize_t head_mark  # where the response head starts in `pending`; -1 once written
    cdef double keepalive_every  # an event stream: a comment after this many idle seconds (0: not one)
    cdef double last_out  # when its last byte was written (event streams)
    cdef unsigned int tail  # the stream's last 4 bytes: does it end an event? (_event_ends)
    cdef object body_filter  # rewrites the upstream body as it streams: feed(bytes), flush() at its end
    cdef bint ended  # its log steps ran: counted once, whatever way it ended
    # -- timing, for metrics, traces and the access log: 0 unless a step asked for it (set t0)
    cdef public double t0  # monotonic() when a step started timing it (the first sets it, the
    #                        others share it); for a request no route took, when it was found so
    cdef public double t_upstream  # when its head was written to a replica's connection
    cdef public double t_head  # when the replica's response head came
    cdef public long long bytes_out  # response body bytes sent (the whole answer, the gateway's own)
    cdef bint in_streams  # counted in its target's RouteStats.streams (an event stream, open)
    # -- how it ended, for log steps (set only on those paths: a proxied answer costs nothing)
    cdef public str error  # why the gateway answered it with an error of its own: a 502's or 504's
    #                        detail, a limit's (408, 413, 431), "step 'x' failed", or why it cut a
    #                        response short (the upstream failed mid-body); None: it did not
    cdef public str answered_by  # the name of the step that answered it (key-auth's 401...); None: none
    cdef public object trace  # the opentelemetry plugin's record of its span: set by its rewrite
    #                           step for sampled requests only (start time, ids), read by its log step
    cdef object get_params(self)
