"""The config store's part of one gateway process (`config_store:` in its file).

Single process: the agent runs here and hands changes to this ControlPlane.
A worker of `serve --workers N`: the node's agent runs in a process of its
own (`hub.py`), and this process follows it (`follower.py`).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile

from runmcp_fast.cluster.agent import ConfigAgent, make_client
from runmcp_fast.cluster.cache import CachedState, DiskCache
from runmcp_fast.cluster.compose import cache_dir, compose, empty, node_id, node_problems
from runmcp_fast.cluster.follower import Follower
from runmcp_fast.cluster.layout import Layout
from runmcp_fast.cluster.node import ClusterNode, LocalSink
from runmcp_fast.cluster.writer import ClusterWriter
from runmcp_fast.config import ConfigStoreConfig, GatewayConfig
from runmcp_fast.control import ControlPlane
from runmcp_fast.problems import ConfigError

log = logging.getLogger("runmcp_fast.cluster")


def cached_config(node_config: GatewayConfig, source: str, directory: str) -> GatewayConfig | None:
    """The config the disk cache in `directory` holds, composed with the node's file
    (None: no usable cache). The parent of `serve --workers N` parses its specs
    before it forks, so the workers share them."""
    store = node_config.config_store
    assert store is not None
    cache = DiskCache(directory, store.prefix)
    try:
        cached = cache.read()
        if cached is None:
            return None
        return compose(node_config, source, Layout(store.prefix), cached.items(), cache.spec_path)
    except ConfigError:
        return None


class ClusterRuntime:
    def __init__(
        self,
        node_config: GatewayConfig,
        source: str,
        config_path: str | None,
        *,
        hub: tuple[str, str] | None = None,
    ) -> None:
        """`hub`: (the agent's socket, its hand-off directory) for a worker process."""
        store = node_config.config_store
        assert store is not None
        problems = node_problems(node_config, source)
        if problems:
            raise ConfigError(problems)
        self.store: ConfigStoreConfig = store
        self.node_config = node_config
        self.source = source
        self.layout = Layout(store.prefix)
        self.node = ClusterNode(node_id(store))
        self.hub = hub
        self._own_dir: str | None = None
        directory = cache_dir(store, config_path, node_config.base_dir)
        self.persist = directory is not None
        if hub is not None:
            directory = hub[1]
        elif directory is None:
            # No cache: spec files still need a home while the process runs.
            directory = self._own_dir = tempfile.mkdtemp(prefix="runmcp-etcd-")
        self.cache = DiskCache(directory, store.prefix)
        self.cached: CachedState | None = None
        self.agent: ConfigAgent | None = None
        self.writer: ClusterWriter | None = None
        self._follower: Follower | None = None

    def initial_config(self) -> GatewayConfig:
        """What to serve before the store answers: the disk cache's last applied
        config (stale), or no services (and not ready)."""
        cached = None
        if self.persist:
            try:
                cached = self.cache.read()
            except ConfigError as exc:
                log.warning("ignoring the config cache: %s", exc.problems[0])
        if cached is not None:
            try:
                config = compose(
                    self.node_config,
                    self.source,
                    self.layout,
                    cached.items(),
                    self.cache.spec_path,
                )
            except ConfigError as exc:
                log.warning("the cached config can not be used: %s", exc.problems[0])
            else:
                self.cached = cached
                self.node.applied(cached, from_cache=True)
                self.node.health.in_sync_at = cached.written
                log.info("serving etcd revision %d from the disk cache", cached.revision)
                return config
        return empty(self.node_config, self.source)

    def start(self, control: ControlPlane) -> None:
        base_dir = self.node_config.base_dir
        self.writer = ClusterWriter(
            make_client(self.store, base_dir), self.layout, self.node, base_dir
        )
        if self.hub is not None:
            follower = Follower(
                self.hub[0], self.node, control, self.node_config, self.source, self.cache
            )
            if self.cached is not None:
                # Serving the cache already: the agent's first hand-off of the same
                # objects is not rebuilt.
                follower.objects = self.cached.objects
            follower.start()
            self._follower = follower
            return
        self.agent = ConfigAgent(
            self.store,
            self.node_config,
            self.source,
            self.cache,
            LocalSink(control, self.node),
            node_id=self.node.node_id,
            persist=self.persist,
        )
        self.agent.applied = self.cached
        self.agent.health = self.node.health
        self.agent.start()

    async def close(self) -> None:
        if self.agent is not None:
            await self.agent.close()
        if self._follower is not None:
            await self._follower.close()
        if self.writer is not None:
            await self.writer.client.close()
        if self._own_dir is not None:
            with contextlib.suppress(OSError):
                shutil.rmtree(self._own_dir)
