"""The config agent: one per node, it owns the node's etcd watch.

At start, a paginated range read of the prefix at one revision; then one watch
on the prefix from that revision + 1. Changes are coalesced (`coalesce` after
the last one, `coalesce_max` after the first at the latest), checked whole
(`compose`), and offered to the node (`Sink`: this process's ControlPlane, or
the worker processes). A change the checks refuse is recorded under
`nodes/<id>`, and the node keeps serving the last good config.

Watch correctness (the bug classes APISIX's tracker documents):
- a dropped watch resumes from the last *delivered* revision + 1, never from a
  revision sampled apart from the stream;
- a compaction cancel, or a store whose revision went back (restored from a
  backup), means a full re-read, and a rebuild only when the config objects
  differ from the ones applied: a compaction alone rebuilds nothing;
- node reports (and keys this version does not know) never trigger a rebuild.

etcd down: the node serves on; the lease keep-alive notices a hung member
within a third of `lease_ttl` plus `timeout`, and reconnects with capped,
jittered back-off across the endpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import ssl
import sys
import time
from dataclasses import dataclass
from typing import Protocol

import orjson

import runmcp_fast
from runmcp_fast import handoff
from runmcp_fast.cluster.cache import CachedState, DiskCache, encode_objects
from runmcp_fast.cluster.compose import compose_changed, compose_cluster
from runmcp_fast.cluster.errors import CompactedError, EtcdError
from runmcp_fast.cluster.etcd_client import EtcdClient, Event
from runmcp_fast.cluster.layout import Layout, SpecProblem, StoreState, cluster_config, read_spec
from runmcp_fast.cluster.specgc import SpecCollector
from runmcp_fast.cluster.window import Window
from runmcp_fast.config import ConfigStoreConfig, GatewayConfig, check_config
from runmcp_fast.problems import ConfigError, Problem, SnapshotError

log = logging.getLogger("runmcp_fast.cluster")

# How long a stop waits for a change being applied to finish.
_CLOSE_WAIT = 5.0


@dataclass
class Health:
    """What the node knows of the store, for /readyz and the metrics."""

    connected: bool = False
    in_sync_at: float = 0.0
    """When (wall clock) the node last knew it had the store's latest config."""

    def stale_seconds(self, now: float | None = None) -> float:
        if self.connected:
            return 0.0
        if not self.in_sync_at:
            return float("inf")
        return max(0.0, (now or time.time()) - self.in_sync_at)


class Sink(Protocol):
    """Where the agent hands a checked config."""

    async def offer(self, state: CachedState, config: GatewayConfig) -> None:
        """Apply it (or raise ConfigError/SnapshotError: the node keeps the last good one)."""

    async def advanced(self, state: CachedState) -> None:
        """The store moved on, the config did not: serve on, at `state.revision`."""

    def refused(self, revision: int, problems: list[Problem]) -> None: ...

    def health(self, health: Health) -> None: ...


def make_client(store: ConfigStoreConfig, base_dir: str) -> EtcdClient:
    """An etcd client from the settings; the user and password from the environment."""
    context = None
    tls = store.tls
    if tls is not None or any(e.startswith("https:") for e in store.endpoints):
        context = ssl.create_default_context(
            cafile=os.path.join(base_dir, tls.ca) if tls is not None and tls.ca else None
        )
        if tls is not None and tls.cert:
            context.load_cert_chain(
                os.path.join(base_dir, tls.cert),
                os.path.join(base_dir, tls.key) if tls.key else None,
            )
    return EtcdClient(
        store.endpoints,
        timeout=store.timeout,
        username=os.environ.get(store.username_env) or None,
        password=os.environ.get(store.password_env) or None,
        ssl_context=context,
    )


class Backoff:
    """Capped exponential back-off with full jitter (many nodes must not retry in step)."""

    def __init__(self, first: float, cap: float) -> None:
        self.first = first
        self.cap = cap
        self.attempt = 0

    def reset(self) -> None:
        self.attempt = 0

    def next(self) -> float:
        ceiling = min(self.cap, self.first * (2**self.attempt))
        self.attempt += 1
        return random.uniform(ceiling / 2, ceiling)


class ConfigAgent:
    def __init__(
        self,
        store: ConfigStoreConfig,
        node: GatewayConfig,
        source: str,
        cache: DiskCache,
        sink: Sink,
        *,
        node_id: str,
        persist: bool = True,
        client: EtcdClient | None = None,
    ) -> None:
        self.store = store
        self.node = node
        self.source = source
        self.cache = cache
        # False: the cache directory is only the hand-off to workers, never a cold start.
        self.persist = persist
        self.sink = sink
        self.node_id = node_id
        self.layout = Layout(store.prefix)
        self.client = client or make_client(store, node.base_dir)
        self.state: StoreState | None = None
        self.applied: CachedState | None = None
        self.rejected: tuple[int, list[Problem]] | None = None
        self.health = Health()
        self.started = time.time()
        # Counters, for tests and benchmarks: builds offered, full re-reads done.
        self.rebuilds = 0
        self.resyncs = 0
        self.specs = SpecCollector(self.layout)
        self._changed = asyncio.Event()
        # Clear while a change is being applied (checked, handed over, cached).
        self._idle = asyncio.Event()
        self._idle.set()
        self._first_change = 0.0
        self._bumped = False
        self._lease = 0
        self._watch: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._reported: bytes = b""
        # The config last offered and the objects it was composed of.
        self._checked: tuple[GatewayConfig, dict[str, str]] | None = None

    # -- start and stop ------------------------------------------------------------------

    def start_from_cache(self) -> CachedState | None:
        """The state last applied on this node, if the cache has one (cold start)."""
        if not self.persist:
            return None
        cached = self.cache.read()
        if cached is not None:
            self.applied = cached
            self.health.in_sync_at = cached.written
        return cached

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._sync()),
            loop.create_task(self._flusher()),
            loop.create_task(self._keepalive()),
        ]
        if self.store.spec_gc > 0:
            self._tasks.append(loop.create_task(self._collect_specs()))

    async def close(self) -> None:
        # A change being applied is finished first (bounded): a clean stop right after
        # a write (?wait=applied answers once a worker serves it) must not leave the
        # disk cache a revision behind what the node served.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), _CLOSE_WAIT)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._lease:
            with contextlib.suppress(EtcdError, OSError):
                await asyncio.wait_for(self.client.revoke(self._lease), 1.0)
        await self.client.close()

    # -- reading the store ---------------------------------------------------------------

    async def _sync(self) -> None:
        backoff = Backoff(0.1, self.store.reconnect_max)
        full = True
        root = self.layout.root
        while True:
            try:
                if full or self.state is None:
                    await self._read_all()
                    full = False
                else:
                    # A reconnect: a store restored from a backup is behind what we
                    # applied, and a watch from our revision + 1 would wait forever.
                    if await self.client.revision() < self.state.revision:
                        log.warning("etcd's revision went back (restored?): reading it all")
                        full = True
                        continue
                self._contact()
                backoff.reset()
                state = self.state
                assert state is not None
                self._watch = asyncio.get_running_loop().create_task(
                    self._follow(root, state.revision + 1)
                )
                try:
                    await asyncio.shield(self._watch)
                except asyncio.CancelledError:
                    if self._watch.cancelled():
                        raise ConnectionError("etcd stopped answering") from None
                    self._watch.cancel()
                    raise
            except CompactedError as exc:
                # Not an outage: the events we missed are gone; read everything again.
                log.info("etcd watch: %s; reading everything again", exc)
                self.resyncs += 1
                full = True
            except (EtcdError, ConnectionError, OSError, TimeoutError, ValueError) as exc:
                self._lost(exc)
                await asyncio.sleep(backoff.next())

    async def _read_all(self) -> None:
        revision, kvs = await self.client.range_prefix(self.layout.root)
        if self.state is not None:
            self.resyncs += 1 if self.state.revision else 0
        self.state = StoreState(revision, kvs)
        self._mark_changed()

    async def _follow(self, root: bytes, start: int) -> None:
        state = self.state
        assert state is not None
        # Read half a `coalesce` apart: a change waits `coalesce` for the next one,
        # so events read this late still join their batch (see etcd_client._settle).
        async for batch in self.client.watch(root, start, settle=self.store.coalesce / 2):
            self._contact()
            if self._touches_config(batch.events):
                state.apply(batch.events)
                self._mark_changed()
            else:
                state.apply(batch.events)

    def _touches_config(self, events: list[Event]) -> bool:
        for event in events:
            ref = self.layout.parse(event.kv.key)
            if ref is not None and ref.kind not in ("nodes", "spec-part", "specs"):
                return True
        return False

    def _contact(self) -> None:
        if not self.health.connected:
            log.info("etcd reached (%s)", ", ".join(self.client.endpoints))
        self.health.connected = True
        self.health.in_sync_at = time.time()
        self.sink.health(self.health)

    def _lost(self, exc: BaseException) -> None:
        if self.health.connected:
            log.warning("etcd unreachable, serving the config applied last: %s", exc)
        self.health.connected = False
        self.sink.health(self.health)

    async def _keepalive(self) -> None:
        """The node's lease: its report lives as long as the node; a failure also
        tells that etcd stopped answering while the watch stream looked open."""
        ttl = self.store.lease_ttl
        while True:
            try:
                if not self._lease:
                    self._lease = await self.client.grant(ttl)
                    self._reported = b""
                    await self._report()
                elif await self.client.keepalive(self._lease) <= 0:
                    self._lease = 0  # expired while we were away: a new one at once
                    continue
            except (EtcdError, OSError, TimeoutError, ValueError) as exc:
                self._lease = 0
                if self._watch is not None and not self._watch.done():
                    self._watch.cancel()
                self._lost(exc)
            await asyncio.sleep(ttl / 3)

    async def _collect_specs(self) -> None:
        """Every `spec_gc` seconds, delete the specs no object named twice in a row."""
        while True:
            await asyncio.sleep(self.store.spec_gc)
            state = self.state
            if state is None or not self.health.connected:
                continue
            try:
                deleted = await self.specs.sweep(self.client, state)
            except (EtcdError, OSError, TimeoutError, ValueError) as exc:
                log.debug("spec collection: %s", exc)
                continue
            if deleted:
                log.info("deleted %d spec(s) no object names from etcd", deleted)

    # -- coalescing and applying ---------------------------------------------------------

    def _mark_changed(self) -> None:
        if not self._changed.is_set():
            self._first_change = time.monotonic()
            self._changed.set()
        else:
            self._bumped = True

    async def _flusher(self) -> None:
        store = self.store
        window = Window(store.coalesce, store.coalesce_max, store.coalesce_burst)
        while True:
            await self._changed.wait()
            # Wait for the burst to settle: `quiet` without a change, or
            # `longest` since its first change, whichever comes first.
            while True:
                self._bumped = False
                deadline = self._first_change + window.longest
                await asyncio.sleep(max(0.0, min(window.quiet, deadline - time.monotonic())))
                cut_short = self._bumped
                if not cut_short or time.monotonic() >= deadline:
                    break
            window.flushed(cut_short=cut_short)
            self._changed.clear()
            self._idle.clear()
            try:
                await self._flush()
            except Exception:  # a bug: keep serving, try again on the next change
                log.exception("applying the store's config failed")
            finally:
                self._idle.set()

    async def _flush(self) -> None:
        state = self.state
        assert state is not None
        revision = state.revision
        objects = encode_objects(state.config_items(self.layout))
        if self.applied is not None and objects == self.applied.objects:
            # Nothing the config is made of changed (a resync after a compaction,
            # a spec not yet used): no rebuild.
            self.applied.revision = revision
            self.applied.mod_revisions = state.mod_revisions(self.layout)
            await self.sink.advanced(self.applied)
            await self._report()
            return
        candidate = CachedState(revision, objects, state.mod_revisions(self.layout), time.time())
        loop = asyncio.get_running_loop()
        try:
            config, specs = await loop.run_in_executor(
                None, handoff.run, self._check, state, candidate
            )
        except ConfigError as exc:
            self._refuse(revision, exc.problems)
            await self._report()
            return
        try:
            await self.sink.offer(candidate, config)
        except (ConfigError, SnapshotError) as exc:
            self._refuse(revision, exc.problems)
            await self._report()
            return
        self.rebuilds += 1
        self.applied = candidate
        self._checked = (config, candidate.objects)
        self.rejected = None
        if self.persist:
            try:
                await loop.run_in_executor(None, self._persist, candidate, specs)
            except OSError as exc:
                log.warning("could not write the config cache in %s: %s", self.cache.directory, exc)
        await self._report()

    def _check(self, state: StoreState, candidate: CachedState) -> tuple[GatewayConfig, set[str]]:
        """Materialise the specs the config names, then check it whole (a thread).
        The config, and the digests of the specs it names."""
        checked = self._checked
        if checked is not None:
            # PERF: only services changed since the config last checked: read just
            # those, then run the whole config's checks on the models (the same
            # config and problems as `compose`, ~5 -> ~2.5 ms at 1,000 services).
            # A problem sends it the whole way, which names the etcd keys at fault.
            config = compose_changed(
                self.source,
                self.layout,
                checked,
                candidate.objects,
                self.cache.spec_path,
            )
            if config is not None:
                specs = self._spec_digests(config)
                if not self._materialise(state, specs) and not check_config(config, self.source):
                    return config, specs
        items = candidate.items()
        cluster = cluster_config(self.layout, items, self.cache.spec_path)
        problems = self._materialise(state, cluster.specs)
        if problems:
            raise ConfigError(problems)
        return compose_cluster(self.node, self.source, self.layout, cluster), cluster.specs

    def _materialise(self, state: StoreState, specs: set[str]) -> list[Problem]:
        """Write each spec in `specs` the disk cache does not hold yet; the problems."""
        problems = []
        raw: dict[bytes, bytes] | None = None
        for digest in specs:
            if self.cache.has_spec(digest):
                continue
            if raw is None:
                raw = {key: kv.value for key, kv in state.kvs.items()}
            try:
                self.cache.write_spec(digest, read_spec(self.layout, raw, digest))
            except SpecProblem as exc:
                problems.append(
                    Problem(
                        self.layout.label(self.layout.spec(digest)),
                        "",
                        str(exc),
                        "write the spec again (runmcp-fast apply, or a PUT with the document)",
                    )
                )
        return problems

    def _spec_digests(self, config: GatewayConfig) -> set[str]:
        """The digests of the specs the config's services read from the disk cache."""
        digests = set()
        services = [*config.services, *(s for t in config.tenants for s in t.services)]
        for service in services:
            openapi = service.openapi
            if isinstance(openapi, str):
                directory, _, name = openapi.rpartition("/")
                if directory == self.cache.specs and name.endswith(".json"):
                    digests.add(name[:-5])
        return digests

    def _persist(self, state: CachedState, specs: set[str]) -> None:
        self.cache.write("state.json", state)
        self.cache.prune_specs(specs)

    def _refuse(self, revision: int, problems: list[Problem]) -> None:
        self.rejected = (revision, problems)
        self.sink.refused(revision, problems)
        log.error(
            "etcd revision %d refused, the node keeps serving revision %s:\n%s",
            revision,
            self.applied.revision if self.applied is not None else "none",
            "\n".join(f"  error: {p}" for p in problems),
        )

    # -- the node's report ---------------------------------------------------------------

    def report(self) -> dict[str, object]:
        rejected = None
        if self.rejected is not None:
            revision, problems = self.rejected
            rejected = {
                "revision": revision,
                "problems": [
                    {"file": p.file, "pointer": p.pointer, "message": p.message, "hint": p.hint}
                    for p in problems[:20]
                ],
            }
        return {
            "node": self.node_id,
            "version": runmcp_fast.__version__,
            "python": sys.version.split()[0],
            "pid": os.getpid(),
            "started": self.started,
            "applied": self.applied.revision if self.applied is not None else 0,
            "rejected": rejected,
        }

    async def _report(self) -> None:
        if not self._lease:
            return
        data = orjson.dumps(self.report())
        if data == self._reported:
            return
        try:
            await self.client.put(self.layout.node(self.node_id), data, lease=self._lease)
            self._reported = data
        except (EtcdError, OSError, TimeoutError) as exc:
            log.debug("could not write the node's report: %s", exc)
