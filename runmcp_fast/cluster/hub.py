"""The node's agent as a process of its own (serve --workers N with a config store).

The supervisor forks it beside the workers, like APISIX's privileged agent: it
alone holds the etcd watch and the node's lease, checks each change once, and
hands it to every worker through the hand-off directory (`channel.py`). A
change counts as applied on the node when every connected worker applied it;
one worker's refusal is the node's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time

from runmcp_fast.cluster.agent import ConfigAgent, Health
from runmcp_fast.cluster.cache import CachedState, DiskCache
from runmcp_fast.cluster.channel import MAX_LINE, problems_data, problems_from, receive, send
from runmcp_fast.cluster.compose import node_id
from runmcp_fast.config import GatewayConfig
from runmcp_fast.problems import ConfigError, Problem

log = logging.getLogger("runmcp_fast.cluster")

# How long a change waits for every worker to build it.
_APPLY_TIMEOUT = 120.0


class _Worker:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.revision = 0
        self.refused: tuple[int, list[Problem]] | None = None
        self.changed = asyncio.Event()


class Hub:
    """The agent's Sink towards the workers."""

    def __init__(self, cache: DiskCache) -> None:
        self.cache = cache
        self.workers: set[_Worker] = set()
        self.latest: CachedState | None = None
        # True while `latest` is the disk cache's (etcd not heard from since the start).
        self.from_cache = False
        self.last_health = Health()
        self._sent_connected: bool | None = None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        worker = _Worker(writer)
        self.workers.add(worker)
        send(writer, _health(self.last_health))
        if self.latest is not None:
            send(writer, self._state_message(self.latest))
        try:
            while (message := await receive(reader)) is not None:
                revision = message.get("revision")
                if not isinstance(revision, int):
                    continue
                if message.get("t") == "applied":
                    worker.revision = max(worker.revision, revision)
                elif message.get("t") == "refused":
                    worker.refused = (revision, problems_from(message.get("problems")))
                worker.changed.set()
        finally:
            self.workers.discard(worker)
            worker.changed.set()  # an offer waiting on this worker stops waiting
            writer.close()

    async def offer(self, state: CachedState, config: GatewayConfig) -> None:
        await self._hand(state)
        deadline = time.monotonic() + _APPLY_TIMEOUT
        for worker in list(self.workers):
            while worker in self.workers and worker.revision < state.revision:
                if worker.refused is not None and worker.refused[0] >= state.revision:
                    raise ConfigError(worker.refused[1])
                worker.changed.clear()
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning("a worker did not apply revision %d in time", state.revision)
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(worker.changed.wait(), left)

    async def advanced(self, state: CachedState) -> None:
        await self._hand(state)

    async def _hand(self, state: CachedState) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.cache.write, "candidate.json", state)
        self.latest = state
        self.from_cache = False
        for worker in self.workers:
            send(worker.writer, self._state_message(state))

    def _state_message(self, state: CachedState) -> dict[str, object]:
        return {"t": "state", "revision": state.revision, "from_cache": self.from_cache}

    def refused(self, revision: int, problems: list[Problem]) -> None:
        message = {"t": "refused", "revision": revision, "problems": problems_data(problems)}
        for worker in self.workers:
            send(worker.writer, message)

    def health(self, health: Health) -> None:
        self.last_health = Health(health.connected, health.in_sync_at)
        # Only a change is news: the workers count staleness from in_sync_at.
        if health.connected != self._sent_connected:
            self._sent_connected = health.connected
            for worker in self.workers:
                send(worker.writer, _health(health))


def _health(health: Health) -> dict[str, object]:
    return {"t": "health", "connected": health.connected, "in_sync_at": health.in_sync_at}


async def run_hub(
    config: GatewayConfig, source: str, socket_path: str, directory: str, persist: bool
) -> None:
    """The agent process's life: serve the workers' socket, follow etcd, until SIGTERM."""
    store = config.config_store
    assert store is not None
    cache = DiskCache(directory, store.prefix)
    hub = Hub(cache)
    agent = ConfigAgent(store, config, source, cache, hub, node_id=node_id(store), persist=persist)
    cached = agent.start_from_cache()
    if cached is not None:
        hub.latest = cached
        hub.from_cache = True
        cache.write("candidate.json", cached)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path)
    server = await asyncio.start_unix_server(hub.serve, socket_path, limit=MAX_LINE)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    agent.start()
    try:
        await stop.wait()
    finally:
        server.close()
        await agent.close()


def hub_main(
    config: GatewayConfig, source: str, socket_path: str, directory: str, persist: bool
) -> int:
    import uvloop

    logging.basicConfig(
        level=logging.INFO,
        format=f"runmcp-fast [config agent, pid {os.getpid()}]: %(message)s",
        stream=sys.stderr,
    )
    uvloop.run(run_hub(config, source, socket_path, directory, persist))
    return 0
