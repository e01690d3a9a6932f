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

# PERF: what is to be written waits in a list per direction (`pending`, `up_pending`),
# emptied after each write. list.clear() frees the list's array and the next append
# allocates it again (PyList_Append and list_clear were ~1,100 instructions a tools/call,
# callgrind): emptied here, the array is kept for the next pieces, up to
# RMF_KEEP_SLOTS slots (a list that grew past that is freed as before, so a
# connection keeps no large array).
cdef extern from *:
    """
    #define RMF_KEEP_SLOTS 32
    static int rmf_list_empty(PyObject *list)
    {
        PyListObject *l = (PyListObject *)list;
        Py_ssize_t n = Py_SIZE(l), i;
        PyObject *items[RMF_KEEP_SLOTS];
        if (n == 0)
            return 0;
        if (l->allocated > RMF_KEEP_SLOTS)
            return PyList_SetSlice(list, 0, n, NULL);
        /* The list is empty before any item goes: a deallocation that looks at it
           (or appends to it) finds it in a consistent state. */
        memcpy(items, l->ob_item, (size_t)n * sizeof(PyObject *));
        Py_SET_SIZE(l, 0);
        for (i = 0; i < n; i++)
            Py_DECREF(items[i]);
        return 0;
    }
    """
    int rmf_list_empty(list items) except -1


cdef enum:
    _SEND_PIECES = 32  # iovecs on the stack; more pieces are joined first (rare)
    SPAN_MIN = 256  # a smaller body piece is copied: as cheap as a Span object
    READ_BUFFER = 262144  # plain upstream connections read into one per loop (upstream.pxi)


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


@cython.final
@cython.freelist(16)
cdef class Span:
    """Bytes of a read written on without a copy: `size` bytes at `ptr`, inside `owner`.

    A response body piece lies in the read it came in (upstream.pxi's _body): queued
    for the client as a Span, it goes out by pointer (writev), not as a new bytes.
    `owner` keeps the memory alive; when it is the loop's reused read buffer
    (upstream.pxi: BufferedUpstreamConnection) its bytes change at the next read,
    so a Span of it must be written or copied (send_out, _joined) before then.
    """
    cdef object owner
    cdef const char* ptr
    cdef Py_ssize_t size


cdef inline Span span(object owner, const char* ptr, Py_ssize_t size):
    cdef Span out = Span.__new__(Span)
    out.owner = owner
    out.ptr = ptr
    out.size = size
    return out


cdef _own_spans(list parts):
    """Replace the Spans in `parts` by copies of their bytes (their memory is reused)."""
    cdef Py_ssize_t i
    cdef object piece
    for i in range(PyList_GET_SIZE(parts)):
        piece = <object>PyList_GET_ITEM(parts, i)
        if type(piece) is Span:
            parts[i] = PyBytes_FromStringAndSize((<Span>piece).ptr, (<Span>piece).size)


cdef bint send_out(object transport, int fd, bint queued, list parts) except -1:
    """Write `parts` (bytes or Spans, in order): on the socket `fd` if the transport
    holds nothing (`queued` False: nothing was given to it since it last was empty),
    else, or for what the socket does not take, through the transport.

    Returns the new `queued`: True once the transport was given bytes.
    """
    cdef Py_ssize_t n = PyList_GET_SIZE(parts), i, total = 0, sent
    cdef iovec iov[_SEND_PIECES]
    cdef object piece
    cdef Span part
    if n == 0:
        return queued
    if fd < 0 or (queued and transport.get_write_buffer_size()):
        transport.write(_joined(parts, 0))
        return True
    # (nothing queued, or drained: writing on the socket keeps the order)
    if n > _SEND_PIECES:
        parts = [_joined(parts, 0)]  # rare: a head of many lines, many small chunks
        n = 1
    for i in range(n):
        piece = <object>PyList_GET_ITEM(parts, i)
        if PyBytes_CheckExact(piece):
            iov[i].iov_base = PyBytes_AS_STRING(piece)
            iov[i].iov_len = <size_t>PyBytes_GET_SIZE(piece)
        elif type(piece) is Span:
            part = <Span>piece
            iov[i].iov_base = <void*>part.ptr
            iov[i].iov_len = <size_t>part.size
        else:
            transport.write(_joined(parts, 0))
            return True
        total += <Py_ssize_t>iov[i].iov_len
    while True:
        sent = writev(fd, iov, <int>n)
        if sent >= 0 or errno != EINTR:
            break
    if sent == total:
        return False
    if sent < 0:
        sent = 0  # EAGAIN, or an error the transport meets again and reports (connection_lost)
    transport.write(_joined(parts, sent))
    return True


cdef inline const char* _piece(object piece, Py_ssize_t* size):
    """The memory of a bytes or a Span."""
    if type(piece) is Span:
        size[0] = (<Span>piece).size
        return (<Span>piece).ptr
    size[0] = PyBytes_GET_SIZE(piece)
    return PyBytes_AS_STRING(piece)


cdef bytes _joined(list parts, Py_ssize_t skip):
    """The bytes of `parts` (bytes, Spans, other bytes-like) after the first `skip`, as one.

    Spans are copied here: what the transport keeps must not point into a read
    buffer that the next read overwrites. One allocation, one copy of each byte.
    """
    cdef Py_ssize_t i, n = PyList_GET_SIZE(parts), total = 0, size, first = -1, first_skip = 0
    cdef object piece
    cdef list items = parts
    cdef const char* at
    for i in range(n):
        piece = <object>PyList_GET_ITEM(parts, i)
        if type(piece) is not Span and not PyBytes_CheckExact(piece):
            items = [p if type(p) is Span or PyBytes_CheckExact(p) else bytes(p) for p in parts]
            break
    for i in range(n):
        _piece(<object>PyList_GET_ITEM(items, i), &size)
        if first >= 0:
            total += size
        elif skip >= size:
            skip -= size
        else:
            first = i
            first_skip = skip
            total = size - skip
    if first < 0:
        return b""
    piece = <object>PyList_GET_ITEM(items, first)
    if first == n - 1 and first_skip == 0 and PyBytes_CheckExact(piece):
        return <bytes>piece  # one whole bytes: itself
    cdef bytes out = PyBytes_FromStringAndSize(NULL, total)
    cdef char* dest = PyBytes_AS_STRING(out)
    for i in range(first, n):
        at = _piece(<object>PyList_GET_ITEM(items, i), &size)
        if i == first:
            at += first_skip
            size -= first_skip
        rmf_copy(dest, at, size)
        dest += size
    return out
