cdef extern from "time.h" nogil:
    ctypedef long time_t
    cdef struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clk_id, timespec* tp)
    int CLOCK_MONOTONIC


cdef inline double monotonic() noexcept nogil:
    """Seconds on the monotonic clock (a vDSO call, no Python object).

    Deadlines are set and checked against this one clock, so a deadline can
    fire late (by up to one sweep interval) but never early.
    """
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef class Clock:
    # One periodic tick in place of a timer per request (see clock.pxi).
    cdef public double now  # monotonic() at the last tick
    cdef public double interval  # seconds between ticks
    cdef object _loop
    cdef list _sweepers  # callables taking the time, called at every tick
    cdef object _handle  # the pending call_later, None when stopped
