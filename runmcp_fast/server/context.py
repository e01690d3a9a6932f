"""What every client connection of one gateway shares."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runmcp_fast.config import LimitsConfig
from runmcp_fast.server.clock import Clock

if TYPE_CHECKING:
    from runmcp_fast.server.protocol import ClientProtocol
    from runmcp_fast.services import Snapshot


class ServerContext:
    __slots__ = ("access_log", "clock", "closing", "connections", "limits", "snapshot")

    def __init__(
        self, clock: Clock, limits: LimitsConfig, snapshot: Snapshot, access_log: bool
    ) -> None:
        self.clock = clock
        self.limits = limits
        # Swapped whole by a reload; a request reads it once, when it is routed.
        self.snapshot = snapshot
        self.access_log = access_log
        self.connections: set[ClientProtocol] = set()
        self.closing = False

    def sweep(self, now: float) -> None:
        for conn in tuple(self.connections):
            conn.check_deadlines(now)
