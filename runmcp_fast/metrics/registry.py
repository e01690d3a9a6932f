"""Each route's counters (RouteStats), kept by the gateway across config reloads.

A snapshot build asks for the counters of every route it makes; the same
route (service, name, method) gets the same RouteStats, so its counts go on
when its service is rebuilt. At a swap the counters of routes gone are let go.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from runmcp_fast._dataplane import RouteStats

StatsKey = tuple[str, str, str]  # (service label, route name, method)


class StatsRegistry:
    """RouteStats by route; used by the build thread and read by scrapes."""

    def __init__(self) -> None:
        self._stats: dict[StatsKey, RouteStats] = {}
        self._lock = threading.Lock()

    def get(self, service: str, route: str, method: str) -> RouteStats:
        key = (service, route, method)
        with self._lock:
            found = self._stats.get(key)
            if found is None:
                found = self._stats[key] = RouteStats(service, route, method)
            return found

    def retain(self, used: Iterable[RouteStats]) -> None:
        """Keep only `used` (a new snapshot's): the routes gone stop being reported."""
        keep = {id(stats) for stats in used}
        with self._lock:
            self._stats = {k: v for k, v in self._stats.items() if id(v) in keep}

    def all(self) -> list[RouteStats]:
        with self._lock:
            return list(self._stats.values())
