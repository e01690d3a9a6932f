# -- writing: the socket itself when the transport holds nothing, else the transport ----
#
# PERF (bench/load/instructions.py, callgrind): transport.write costs ~1,000 instructions
# a call in uvloop (a Python method call, a list for its buffer, a try-write, the
# bookkeeping after it), and a response given to it in pieces must first be joined
# into one bytes (a malloc and a copy of the body). Two writes a proxied request.
# When the transport has nothing buffered, writing the pieces with one writev() on
# its socket is what uvloop would do itself (its _try_write is a write() on the
# descriptor), minus those layers. Whatever the socket does not take (EAGAIN, a short
# write, an error) goes to transport.write as before: from then on the transport
# owns the order of the bytes (and the flow control: pause_writing), so this path
# is taken again only once the transport's buffer is empty.
#
# Only for the plain TCP transports whose write is exactly that (uvloop's and
# asyncio's selector one): never under TLS, never a transport we do not know.

cdef extern from "sys/uio.h" nogil:
    cdef struct iovec:
        void* iov_base
        size_t iov_len
    ssize_t writev(int fd, const iovec* iov, int iovcnt)

cdef extern from "errno.h" nogil:
    int errno
    int EINTR

cdef enum:
    _SEND_PIECES = 32  # iovecs on the stack; more pieces are joined first (rare)


def _plain_transport_types():
    types = []
    try:
        from uvloop.loop import TCPTransport
        types.append(TCPTransport)
    except ImportError:  # uvloop is optional for the data plane (tests run on asyncio's loop)
        pass
    from asyncio.selector_events import _SelectorSocketTransport
    types.append(_SelectorSocketTransport)
    return tuple(types)


cdef tuple _PLAIN_TRANSPORTS = _plain_transport_types()


cdef int out_fd(transport):
    """The socket descriptor `send_out()` may write to for `transport`, else -1.

    Asked once per connection (connection_made). The descriptor stays the
    transport's until connection_lost: both loops close the socket after it.
    """
    if type(transport) not in _PLAIN_TRANSPORTS:
        return -1
    sock = transport.get_extra_info("socket")
    if sock is None:
        return -1
    try:
        return sock.fileno()
    except (OSError, ValueError):
        return -1


cdef bint send_out(object transport, int fd, bint queued, list parts) except -1:
    """Write `parts` (exact bytes, in order): on the socket `fd` if the transport holds
    nothing (`queued` False: nothing was given to it since it last was empty), else,
    or for what the socket does not take, through the transport.

    Returns the new `queued`: True once the transport was given bytes.
    """
    cdef Py_ssize_t n = PyList_GET_SIZE(parts), i, total = 0, sent
    cdef iovec iov[_SEND_PIECES]
    cdef object piece
    if n == 0:
        return queued
    if fd < 0 or n > _SEND_PIECES:
        transport.write(<object>PyList_GET_ITEM(parts, 0) if n == 1 else _concat(parts))
        return True
    if queued:
        if transport.get_write_buffer_size():
            transport.write(<object>PyList_GET_ITEM(parts, 0) if n == 1 else _concat(parts))
            return True
        # (drained: writing on the socket keeps the order again)
    for i in range(n):
        piece = <object>PyList_GET_ITEM(parts, i)
        if not PyBytes_CheckExact(piece):
            transport.write(piece if n == 1 else b"".join(parts))
            return True
        iov[i].iov_base = PyBytes_AS_STRING(piece)
        iov[i].iov_len = <size_t>PyBytes_GET_SIZE(piece)
        total += PyBytes_GET_SIZE(piece)
    while True:
        sent = writev(fd, iov, <int>n)
        if sent >= 0 or errno != EINTR:
            break
    if sent == total:
        return False
    if sent < 0:
        sent = 0  # EAGAIN, or an error the transport meets again and reports (connection_lost)
    transport.write(_unsent(parts, sent))
    return True


cdef bytes _unsent(list parts, Py_ssize_t skip):
    """The bytes of `parts` after the first `skip`."""
    cdef Py_ssize_t i, n = PyList_GET_SIZE(parts), size
    cdef list rest = []
    cdef bytes piece
    for i in range(n):
        piece = <bytes>PyList_GET_ITEM(parts, i)
        size = PyBytes_GET_SIZE(piece)
        if skip >= size:
            skip -= size
            continue
        rest.append(piece[skip:] if skip else piece)
        skip = 0
    return _concat(rest)
