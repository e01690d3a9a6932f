# -- the clock: one periodic sweep for every deadline (declared in clock.pxd) ------------


cdef class Clock:
    """One periodic sweep in place of a timer per request.

    PERF: `loop.call_later` per request costs a heap push, a handle and a
    cancel; instead every connection keeps plain deadlines (`monotonic()`
    plus a timeout), and one tick every `interval` seconds calls the sweepers
    with the time. Deadlines fire late by at most one interval, never early.
    """

    def __init__(self, loop, double interval):
        self._loop = loop
        self.interval = interval
        self.now = monotonic()
        self._sweepers = []
        self._handle = None

    def add_sweeper(self, sweep):
        self._sweepers.append(sweep)

    def start(self):
        if self._handle is None:
            self._handle = self._loop.call_later(self.interval, self._tick)

    def stop(self):
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self):
        self.now = now = monotonic()
        for sweep in tuple(self._sweepers):
            try:
                sweep(now)
            except Exception as exc:  # one broken sweeper must not stop every timeout
                self._loop.call_exception_handler(
                    {"message": "timeout sweep failed", "exception": exc}
                )
        self._handle = self._loop.call_later(self.interval, self._tick)
