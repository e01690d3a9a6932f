cdef class OwnReads:
    # A connection's reads made by the data plane (reads.pxi): a duplicate of its
    # socket that the loop polls, and what the loop calls when it is readable.
    cdef int fd  # the duplicate; -1 once released
    cdef object loop
    cdef object on_readable  # the protocol's _readable, bound once (see poll_lost)
    cdef bint paused  # the reader is off (flow control): not to be put back by look_again

    cdef pause(self)
    cdef resume(self)
    cdef release(self)
    cdef bint look_again(self, bint ready) except -1
