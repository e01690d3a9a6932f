"""How long the agent lets a change wait for more before it rebuilds.

A change waits `quiet` for another one, and at most `longest` since the first
of its batch. A burst that outlasts that window is a sustained stream of writes
(a deploy script, a controller resyncing): every node would rebuild four times
a second for as long as it lasts, each rebuild costing every worker of every
node some milliseconds of CPU that its requests wait behind. So each window cut
short by its deadline doubles the next one, up to `burst`, the way Kong rebuilds
its router at most every `worker_state_update_frequency`. A batch that ends
quietly halves it again: one stall of the writer (a 50 ms gap in a stream of
writes) does not start the burst over, and a lone write never waits for the
window anyway, only for `quiet`.
"""

from __future__ import annotations


class Window:
    def __init__(self, quiet: float, longest: float, burst: float) -> None:
        self.quiet = quiet
        self.base = longest
        self.burst = max(burst, longest)
        self.longest = longest

    def flushed(self, *, cut_short: bool) -> None:
        """A batch was applied; `cut_short`: changes were still coming at its deadline."""
        if cut_short:
            self.longest = min(self.longest * 2, self.burst)
        else:
            self.longest = max(self.longest / 2, self.base)
