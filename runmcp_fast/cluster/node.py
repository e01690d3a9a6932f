"""What one gateway process knows of the config store: the revision it serves,
each object's mod_revision (ETags), the last refused revision, the store's
health; and waiting until a revision is served (`?wait=applied`).

Fed by the agent in this process (`LocalSink`), or by the node's agent process
through `follower.py` (serve --workers N).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from runmcp_fast.cluster.agent import Health
from runmcp_fast.cluster.cache import CachedState
from runmcp_fast.problems import ConfigError, Problem

if TYPE_CHECKING:
    from runmcp_fast.config import GatewayConfig
    from runmcp_fast.control import ControlPlane


class ClusterNode:
    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.revision = 0
        """The store revision this process serves (0: none yet)."""
        self.mod_revisions: dict[str, int] = {}
        self.rejected: tuple[int, list[Problem]] | None = None
        self.health = Health()
        self.has_config = False
        """False until a config came from the store or the disk cache: not ready."""
        self.from_cache = False
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def applied(self, state: CachedState, *, from_cache: bool = False) -> None:
        self.revision = max(self.revision, state.revision)
        self.mod_revisions = dict(state.mod_revisions)
        self.has_config = True
        self.from_cache = from_cache
        if not from_cache and (self.rejected is None or self.rejected[0] <= state.revision):
            self.rejected = None
        self._wake()

    def refused(self, revision: int, problems: list[Problem]) -> None:
        self.rejected = (revision, problems)
        self._wake()

    def _wake(self) -> None:
        waiting = []
        for revision, future in self._waiters:
            if future.done():
                continue
            if self.revision >= revision:
                future.set_result(None)
            elif self.rejected is not None and self.rejected[0] >= revision:
                future.set_exception(ConfigError(self.rejected[1]))
            else:
                waiting.append((revision, future))
        self._waiters = waiting

    async def wait_applied(self, revision: int, timeout: float) -> None:
        """Return once this process serves `revision` (or later); ConfigError when
        the node refused it, TimeoutError after `timeout` seconds."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((revision, future))
        self._wake()
        await asyncio.wait_for(future, timeout)

    def stale_seconds(self) -> float:
        return self.health.stale_seconds()

    def status(self) -> dict[str, object]:
        """For /readyz and /admin/config."""
        stale = self.health.stale_seconds()
        return {
            "node": self.node_id,
            "revision": self.revision,
            "connected": self.health.connected,
            "stale": not self.health.connected,
            "config_stale_seconds": round(stale, 3) if stale != float("inf") else None,
            "from_cache": self.from_cache,
            "rejected_revision": self.rejected[0] if self.rejected is not None else None,
        }


class LocalSink:
    """The agent's hand-off in a single process: build and swap here."""

    def __init__(self, control: ControlPlane, node: ClusterNode) -> None:
        self.control = control
        self.node = node

    async def offer(self, state: CachedState, config: GatewayConfig) -> None:
        await self.control.replace_config(config, f"etcd revision {state.revision}")
        self.node.applied(state)

    async def advanced(self, state: CachedState) -> None:
        self.node.applied(state)

    def refused(self, revision: int, problems: list[Problem]) -> None:
        self.node.refused(revision, problems)

    def health(self, health: Health) -> None:
        self.node.health = health
