# -- reading: the socket itself, polled by the loop, instead of uvloop's stream reads ----
#
# PERF (bench/load/instructions.py, callgrind, issue #18): uvloop runs libuv without
# the GIL and takes it back for each callback. A stream read is two callbacks, its
# buffer's allocation and then the read (`__loop_alloc_buffer` and
# `__uv_stream_on_read`, or the buffered protocol's pair), so two
# PyGILState_Ensure/Release pairs (~500 instructions each: a mutex, a condition
# signal, a thread-state lookup), two a side, four a proxied request; nginx pays
# none. A descriptor polled with `loop.add_reader` wakes one callback a read, in
# which we recv() ourselves, with the GIL held: one hand-off a read, not two, and
# none of the stream's bookkeeping.
#
# uvloop refuses add_reader on a descriptor its transport owns, so the poll is on a
# duplicate of it (the same socket). The transport keeps the socket otherwise:
# writes (send.pxi writes on the original descriptor when it holds nothing), the
# write buffer and its flow control, close and connection_lost. Its own reading is
# paused (pause_reading), so the socket is read by one side only. What its reads
# did besides is done here: the end of stream calls `eof_received` (and closes the
# transport unless it says to keep it open), an error aborts the transport, and
# every close of the transport stops our reads first (as transport.close() stops
# its own), so no byte is read after it.
#
# Taken at a connection's second read, not its first: a connection that is read
# once (one request, then closed) would pay the duplicate's system calls (dup,
# epoll_ctl, close) for nothing. Only on uvloop's plain TCP transports: asyncio's
# loop has no hand-off to spare, and TLS reads through its own layer.
# RUNMCP_READS=transport in the environment leaves every read to the transport.

from cpython.ref cimport Py_REFCNT

cdef extern from "sys/socket.h" nogil:
    ssize_t recv(int fd, void* buf, size_t n, int flags)

cdef extern from "fcntl.h" nogil:
    int fcntl(int fd, int cmd, ...)
    int F_DUPFD_CLOEXEC

cdef extern from "unistd.h" nogil:
    int close(int fd)

cdef extern from "errno.h" nogil:
    int EAGAIN
    int EWOULDBLOCK


def _uvloop_tcp_transport():
    try:
        from uvloop.loop import TCPTransport
    except ImportError:  # uvloop is optional for the data plane (tests run on asyncio's loop)
        return None
    return TCPTransport


cdef object _UVLOOP_TCP = _uvloop_tcp_transport()

# The client side's reads land here and are copied into a bytes at once (as uvloop
# copies its own buffer's): one per process, used with the GIL held from recv() to
# the copy, so threads each running a loop never share it mid-read.
cdef char _client_read[READ_BUFFER]


cdef OwnReads take_reads(object transport, int fd, object loop, object on_readable):
    """Poll a duplicate of `transport`'s socket `fd` with `on_readable` and pause the
    transport's own reads. None: not taken (any other transport than uvloop's plain
    TCP one, RUNMCP_READS=transport, or a descriptor the system refused)."""
    if fd < 0 or _UVLOOP_TCP is None or type(transport) is not _UVLOOP_TCP:
        return None
    if os.environ.get("RUNMCP_READS") == "transport":
        return None  # (the operator's way back to the transport's reads; docs/config.md)
    cdef int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0)
    if copy < 0:
        return None  # (EMFILE: the transport goes on reading as before)
    try:
        loop.add_reader(copy, on_readable)
    except BaseException:
        close(copy)
        raise
    transport.pause_reading()
    cdef OwnReads reads = OwnReads.__new__(OwnReads)
    reads.fd = copy
    reads.loop = loop
    reads.on_readable = on_readable
    return reads


cdef inline bint poll_lost(object on_readable):
    """The loop no longer polls for `on_readable` though we did not stop it.

    libuv stops a poll whose descriptor reports an error (POLLERR: a reset) and
    uvloop then calls its reader one last time and closes it. That last read may
    return data that came before the reset, not the reset itself, and then nothing
    calls us again: the end of the connection would go unseen until a write to it
    failed or a deadline passed. Registered, `on_readable` (one bound method per
    connection, kept by OwnReads) is held by the poll's Handle and by us; lost, by
    us alone. Asked where a connection is checked anyway (the clock's sweep, the
    pool's sweep and hand-out), never per read.
    """
    return Py_REFCNT(on_readable) == 1


cdef extern from "poll.h" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd* fds, unsigned long nfds, int timeout)
    short POLLIN
    short POLLERR
    short POLLHUP


cdef inline bint socket_ready(int fd) noexcept nogil:
    """The socket has bytes, an end of stream or an error to read now (poll(2), no wait).

    The sweeps ask it of the connections whose reads the loop polls and that wait for
    bytes: a client's in the middle of a request (its head or body being read), an
    idle pooled upstream connection. A reset behind the last bytes read, in the same
    wake-up, can leave the poll stopped though its Handle lives on, so poll_lost does
    not see it (about once in three runs of
    test_an_upstream_reset_right_behind_its_response_is_seen_while_the_connection_idles
    without this; the cause in uvloop or libuv is not pinned down). Read then, the
    connection ends within a sweep, not at a deadline or at the next request's
    failed write. One system call a connection a sweep, for those only.
    """
    cdef pollfd one
    one.fd = fd
    one.events = POLLIN
    one.revents = 0
    return poll(&one, 1, 0) > 0 and (one.revents & (POLLIN | POLLERR | POLLHUP)) != 0


cdef class OwnReads:
    """A connection's reads made by us (see above): the client's and the upstream's
    protocols hold one once taken, and call their own `_read_once` from `_readable`."""

    def __cinit__(self):
        self.fd = -1

    def __dealloc__(self):
        if self.fd >= 0:
            close(self.fd)  # (its loop closed with the connection open: the poll is gone)

    cdef pause(self):
        self.paused = True
        self.loop.remove_reader(self.fd)

    cdef resume(self):
        # A poll uvloop closed (poll_lost) is still in its table, where add_reader
        # would raise: removed first.
        self.paused = False
        self.loop.remove_reader(self.fd)
        self.loop.add_reader(self.fd, self.on_readable)

    cdef release(self):
        """Stop polling the duplicate and close it (the socket stays the transport's)."""
        cdef int fd = self.fd
        if fd < 0:
            return
        self.fd = -1
        self.on_readable = None  # (a bound method of the protocol, which holds us: a cycle)
        try:
            self.loop.remove_reader(fd)
        finally:
            close(fd)

    cdef bint look_again(self, bint ready) except -1:
        """Asked by the sweeps: when the loop no longer polls us (poll_lost) or, if
        `ready` (a connection waiting for bytes), the socket has something to read
        (socket_ready), read once now, as the loop should have had us read. That read
        meets the end or the reset and ends the connection (release), or the reader
        is put back. True when it read."""
        if self.fd < 0 or self.paused:
            return False
        if not poll_lost(self.on_readable) and not (ready and socket_ready(self.fd)):
            return False
        on_readable = self.on_readable
        self.loop.remove_reader(self.fd)
        try:
            on_readable()
        except BaseException:
            pass  # (the protocol aborted the connection; what raised is not the sweep's)
        if self.fd >= 0 and not self.paused:
            self.loop.add_reader(self.fd, self.on_readable)
        return True


cdef inline Py_ssize_t read_some(int fd, char* into, size_t size) noexcept nogil:
    """recv() once: the bytes read, 0 at the end of stream, -1 when there is nothing
    to read now (a spurious wake-up), -2 on an error (in errno)."""
    cdef ssize_t n
    while True:
        n = recv(fd, into, size, 0)
        if n >= 0:
            return n
        if errno == EINTR:
            continue
        if errno == EAGAIN or errno == EWOULDBLOCK:
            return -1
        return -2
