"""A worker's side of the node's agent (serve --workers N with a config store).

The worker serves what the agent hands it: it reads candidate.json from the
hand-off directory, rebuilds only when the config objects differ from the
ones it serves, and says what it applied or refused. The agent checked the
objects whole before handing them on: when only services changed, the worker
reads just those (`compose_changed`). When the agent is away
(restarting), the worker keeps serving and reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from runmcp_fast import handoff
from runmcp_fast.cluster.agent import Backoff, Health
from runmcp_fast.cluster.cache import CachedState, DiskCache
from runmcp_fast.cluster.channel import MAX_LINE, problems_data, problems_from, receive, send
from runmcp_fast.cluster.compose import compose, compose_changed
from runmcp_fast.cluster.layout import Layout
from runmcp_fast.cluster.node import ClusterNode
from runmcp_fast.config import GatewayConfig
from runmcp_fast.control import ControlPlane
from runmcp_fast.problems import ConfigError, SnapshotError

log = logging.getLogger("runmcp_fast.cluster")


class Follower:
    def __init__(
        self,
        socket_path: str,
        node: ClusterNode,
        control: ControlPlane,
        node_config: GatewayConfig,
        source: str,
        cache: DiskCache,
    ) -> None:
        self.socket_path = socket_path
        self.node = node
        self.control = control
        self.node_config = node_config
        self.source = source
        self.cache = cache
        assert node_config.config_store is not None
        self.layout = Layout(node_config.config_store.prefix)
        # The objects this worker's snapshot was built from (None: none yet).
        self.objects: dict[str, str] | None = None
        # The config this worker composed last, and the objects it was made of.
        self._served: tuple[GatewayConfig, dict[str, str]] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        backoff = Backoff(0.05, 1.0)
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(
                    self.socket_path, limit=MAX_LINE
                )
            except OSError:
                await asyncio.sleep(backoff.next())
                continue
            backoff.reset()
            try:
                while (message := await receive(reader)) is not None:
                    await self._handle(message, writer)
            finally:
                writer.close()
            await asyncio.sleep(backoff.next())

    async def _handle(self, message: dict[str, object], writer: asyncio.StreamWriter) -> None:
        kind = message.get("t")
        if kind == "health":
            self.node.health = Health(bool(message.get("connected")), _float(message, "in_sync_at"))
        elif kind == "refused":
            revision = _int(message, "revision")
            self.node.refused(revision, problems_from(message.get("problems")))
        elif kind == "state":
            await self._apply(writer, from_cache=message.get("from_cache") is True)

    async def _apply(self, writer: asyncio.StreamWriter, *, from_cache: bool = False) -> None:
        loop = asyncio.get_running_loop()
        try:
            state = await loop.run_in_executor(None, self.cache.read, "candidate.json")
        except ConfigError as exc:
            log.error("the agent's hand-off can not be read: %s", exc.problems[0])
            return
        if state is None:
            return
        if state.objects != self.objects:
            try:
                config = await loop.run_in_executor(None, handoff.run, self._compose, state)
                await self.control.replace_config(config, f"etcd revision {state.revision}")
            except (ConfigError, SnapshotError) as exc:
                self.node.refused(state.revision, exc.problems)
                send(
                    writer,
                    {
                        "t": "refused",
                        "revision": state.revision,
                        "problems": problems_data(exc.problems),
                    },
                )
                return
            self.objects = state.objects
            self._served = (config, state.objects)
        self.node.applied(state, from_cache=from_cache)
        send(writer, {"t": "applied", "revision": state.revision})

    def _compose(self, state: CachedState) -> GatewayConfig:
        """The config of `state` (a thread): the agent checked it whole already, so
        when only services changed, only they are read (`compose_changed`)."""
        if self._served is not None:
            config = compose_changed(
                self.source,
                self.layout,
                self._served,
                state.objects,
                self.cache.spec_path,
            )
            if config is not None:
                return config
        return compose(
            self.node_config, self.source, self.layout, state.items(), self.cache.spec_path
        )


def _int(message: dict[str, object], key: str) -> int:
    value = message.get(key)
    return value if isinstance(value, int) else 0


def _float(message: dict[str, object], key: str) -> float:
    value = message.get(key)
    return float(value) if isinstance(value, (int, float)) else 0.0
