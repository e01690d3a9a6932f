"""Config changes at run time: one code path for the file, the admin API and Python.

Every change is checked here: a service or tenant alone against the running
config (`validate_service`, `validate_tenant`, with pointers into the object
given), then the whole config it makes.

The running config is the *base* (the config file, or the config the gateway
was made with) with an *overlay* on top: the services and tenants put,
patched or deleted through the admin or Python API. The overlay is written to
a state file after each change, so a restart (or another worker process,
which watches that file) comes back with it.

Every change builds a complete new snapshot on a worker thread, off the
event loop, and then swaps one reference (`ServerContext.swap`). Changes
that arrive while a build runs are applied together in the next build; when
that combined build fails, each change is tried alone so that one bad change
is refused without taking the good ones down with it. A change that fails
leaves the running config untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
import orjson

from runmcp_fast.config import (
    ConsumerConfig,
    GatewayConfig,
    ServiceConfig,
    TenantConfig,
    check_config,
    config_from_data,
    load_config,
    read_services,
)
from runmcp_fast.files import write_atomically
from runmcp_fast.handoff import building, pause
from runmcp_fast.metrics.collect import ConfigState, targets
from runmcp_fast.metrics.registry import StatsRegistry
from runmcp_fast.plugins.contract import Resources
from runmcp_fast.problems import ConfigError, Problem, SnapshotError
from runmcp_fast.snapshot import (
    Pools,
    Snapshot,
    SpecCache,
    StepSource,
    build_snapshot,
)

if TYPE_CHECKING:
    from runmcp_fast._dataplane import RouteStats, ServerContext

log = logging.getLogger("runmcp_fast.control")
_T = TypeVar("_T")

# Settings a running gateway can not change without a restart (sockets, the
# limits unpacked into the data plane, the pools' shape).
RESTART_KEYS = ("listeners", "limits", "pool", "access_log", "admin", "metrics", "config_store")
ADMIN_SOURCE = "<admin API>"


class Overlay(msgspec.Struct, kw_only=True):
    """What the API changed on top of the base config (the state file's content).

    `services` maps `name` (top level) or `tenant/name` to a service, or to
    None for one deleted; `tenants` maps a tenant name to its hosts and
    services, or None for one deleted; `consumers` a consumer's name to it
    (with its credentials), or None for one deleted.
    """

    services: dict[str, dict[str, Any] | None] = {}
    tenants: dict[str, dict[str, Any] | None] = {}
    consumers: dict[str, dict[str, Any] | None] = {}


def validate_service(body: dict[str, Any], running: GatewayConfig) -> ServiceConfig:
    """A service body checked alone; problems point into the body (`/upstream/1`)."""
    data = {
        "listeners": [{"address": "127.0.0.1:0"}],
        "services": [body],
        "base_domain": running.base_domain or "example.invalid",
    }
    config = _check_alone(data, running, "/services/0")
    return config.services[0]


def validate_tenant(body: dict[str, Any], running: GatewayConfig) -> TenantConfig:
    data = {
        "listeners": [{"address": "127.0.0.1:0"}],
        "tenants": [body],
        "tenancy": msgspec.to_builtins(running.tenancy),
    }
    config = _check_alone(data, running, "/tenants/0")
    return config.tenants[0]


def validate_consumer(body: dict[str, Any], running: GatewayConfig) -> ConsumerConfig:
    """A consumer body checked alone (its plugins and credentials are checked with the
    whole config, when the snapshot is built)."""
    data = {"listeners": [{"address": "127.0.0.1:0"}], "consumers": [body]}
    config = _check_alone(data, running, "/consumers/0")
    return config.consumers[0]


def _check_alone(data: dict[str, Any], running: GatewayConfig, where: str) -> GatewayConfig:
    try:
        return config_from_data(data, source=ADMIN_SOURCE, base_dir=running.base_dir)
    except ConfigError as exc:
        problems = []
        for p in exc.problems:
            pointer = p.pointer
            if p.file == ADMIN_SOURCE and (pointer == where or pointer.startswith(where + "/")):
                pointer = pointer[len(where) :]
            problems.append(Problem(p.file, pointer, p.message, p.hint, p.severity))
        raise ConfigError(problems) from None


def service_key(tenant: str, name: str) -> str:
    return f"{tenant}/{name}" if tenant else name


def merge(base: GatewayConfig, overlay: Overlay) -> dict[str, Any]:
    """The base config with the overlay applied, as plain data (not yet checked)."""
    data: dict[str, Any] = msgspec.to_builtins(base)
    data.pop("base_dir", None)
    tenants: dict[str, dict[str, Any]] = {t["name"]: t for t in data.get("tenants", [])}
    for name, tenant in overlay.tenants.items():
        if tenant is None:
            tenants.pop(name, None)
        else:
            tenants[name] = {**tenant, "name": name}
    for key, service in overlay.services.items():
        tenant_name, _, name = key.rpartition("/")
        if tenant_name:
            owner = tenants.get(tenant_name)
            if owner is None:
                continue  # its tenant was deleted
            scope: list[dict[str, Any]] = owner.setdefault("services", [])
        else:
            scope = data.setdefault("services", [])
        index = next((i for i, s in enumerate(scope) if s.get("name") == name), None)
        if service is None:
            if index is not None:
                del scope[index]
        elif index is None:
            scope.append({**service, "name": name})
        else:
            scope[index] = {**service, "name": name}
    data["tenants"] = list(tenants.values())
    if overlay.consumers:
        consumers: dict[str, dict[str, Any]] = {c["name"]: c for c in data.get("consumers", [])}
        for name, consumer in overlay.consumers.items():
            if consumer is None:
                consumers.pop(name, None)
            else:
                consumers[name] = {**consumer, "name": name}
        data["consumers"] = list(consumers.values())
    return data


def compile_config(
    base: GatewayConfig, overlay: Overlay, source: str, *, running: GatewayConfig | None = None
) -> GatewayConfig:
    """The base with the overlay applied, checked; ConfigError names every problem.

    With `running`, the settings only a restart can change are taken from it.
    """
    # Already checked (a file, or the store's objects composed with the node's
    # file): only the settings a restart changes may have to be put back.
    unchanged = running is None or all(
        getattr(base, k) == getattr(running, k) for k in RESTART_KEYS
    )
    if not overlay.services and not overlay.tenants and not overlay.consumers and unchanged:
        return base
    data = merge(base, overlay)
    config = config_from_data(data, source=source, base_dir=base.base_dir)
    if running is None:
        return config
    keep = {key: getattr(running, key) for key in RESTART_KEYS}
    return msgspec.structs.replace(config, **keep)


def check_change(
    base: GatewayConfig, overlay: Overlay, source: str, *, running: GatewayConfig | None = None
) -> None:
    """`compile_config`'s verdict on the change (ConfigError names every problem),
    without its result.

    PERF: a change of top-level services (the admin API's PUT with a config store)
    reads just those and checks the config they make, instead of writing the whole
    config out as data and reading it back (~10 ms at 1,000 services, on the event
    loop). Any problem: the whole way, which reports them as it always did.
    """
    if (
        not overlay.tenants
        and not overlay.consumers
        and overlay.services
        and _services_fine(base, overlay.services, source)
    ):
        return
    compile_config(base, overlay, source, running=running)


def _services_fine(
    base: GatewayConfig, changes: dict[str, dict[str, Any] | None], source: str
) -> bool:
    """Whether the config `merge` would make of these top-level changes has no problem."""
    if any("/" in key for key in changes):
        return False
    services: list[ServiceConfig | None] = list(base.services)
    index = {service.name: i for i, service in enumerate(base.services)}
    values = {key: {**value, "name": key} for key, value in changes.items() if value is not None}
    try:
        read = dict(zip(values, read_services(list(values.values()), source), strict=True))
    except ConfigError:
        return False
    for key, value in changes.items():
        at = index.get(key)
        if value is None:
            if at is not None:
                services[at] = None
        elif at is None:
            index[key] = len(services)
            services.append(read[key])
        else:
            services[at] = read[key]
    config = msgspec.structs.replace(base, services=[s for s in services if s is not None])
    return not check_config(config, source)


# A change: (base, overlay) -> (base, overlay); raises ConfigError for itself.
Change = Callable[[GatewayConfig, Overlay], tuple[GatewayConfig, Overlay]]


@dataclass
class _Pending:
    change: Change
    future: asyncio.Future[Snapshot]
    label: str
    attempts: int = 0


class ControlPlane:
    """Owns the running config of one gateway and every change to it."""

    def __init__(
        self,
        base: GatewayConfig,
        pools: Pools,
        ctx: ServerContext,
        *,
        source: str,
        config_path: str | None,
        state_path: str | None,
        specs: SpecCache,
        on_swap: Callable[[Snapshot], None] | None = None,
        steps: StepSource | None = None,
        stats: StatsRegistry | None = None,
        resources: Resources | None = None,
    ) -> None:
        self.base = base
        # The config the gateway started with: its listeners, limits, pool and
        # admin settings stay until a restart.
        self.started_with = base
        self.overlay = Overlay()
        self.watch_config = base.watch
        self.pools = pools
        self.ctx = ctx
        self.source = source
        self.config_path = config_path
        self.state_path = state_path
        self.specs = specs
        self.generation = 1
        self.on_swap = on_swap
        self.steps = steps
        # Each route's counters, kept across builds (None: nobody counts).
        self.stats = stats
        self.resources = resources  # what plugins keep running across builds (log sinks)
        self.reloads = ConfigState(last_success=time.time())
        """Reload counts and the last success, for the metrics."""
        self.resources = resources  # what plugins keep running across builds (exporters)
        self._pending: list[_Pending] = []
        self._runner: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        # One build at a time, off the event loop, at a lower OS priority
        # (_yield_to_serving).
        self._executor = ThreadPoolExecutor(
            1, thread_name_prefix="runmcp-build", initializer=_yield_to_serving
        )
        self._retaining: Future[None] | None = None
        self._seen_config: tuple[int, int, int] | None = _stat(config_path)
        # The state file as this process last wrote or adopted it; a write
        # finding it otherwise means another process changed it.
        self._seen_state: tuple[int, int, int] | None = _stat(state_path)
        # ... and as the watcher last looked at it.
        self._watched_state = self._seen_state
        self._written: bytes | None = None  # what this process last wrote to it
        self.last_error: list[Problem] = []

    @property
    def snapshot(self) -> Snapshot:
        snapshot: Snapshot = self.ctx.snapshot
        return snapshot

    @property
    def config(self) -> GatewayConfig:
        return self.snapshot.config

    # -- the state file ----------------------------------------------------------------

    def load_state(self) -> Overlay:
        return load_state(self.state_path)

    def _write_state(self, overlay: Overlay) -> bool:
        """Write the overlay atomically: a reader sees the old file or the new, never half.

        False, writing nothing, when another process (a worker sharing the
        file) wrote it since this one last read it: the change must be
        redone on top of theirs, or one of the two would be lost.
        """
        path = self.state_path
        if path is None:
            return True
        data = orjson.dumps(msgspec.to_builtins(overlay), option=orjson.OPT_INDENT_2)
        with open(path + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if _stat(path) != self._seen_state:
                return False
            write_atomically(path, data, prefix=".state-")
            self._seen_state = _stat(path)
            self._written = data
        return True

    # -- building and swapping -----------------------------------------------------------

    def compile(self, base: GatewayConfig, overlay: Overlay) -> GatewayConfig:
        """Merge and check; ConfigError names every problem. Runs on any thread."""
        return compile_config(base, overlay, self.source, running=self.started_with)

    def _build(self, base: GatewayConfig, overlay: Overlay) -> Snapshot:
        """Runs on the build thread (through `_handing_off`)."""
        # The swap freezes every object the collector tracks, garbage included, and
        # frozen objects are never collected: the cycles traffic had left since the
        # last swap stayed for good, ~80 KB per change under load (bench/soak). One
        # pass first, over what is not frozen: what was made since the last swap
        # (after the build it would also walk the new snapshot: 40-80 ms of GIL
        # at 1,000 services).
        gc.collect()
        # PERF: no cycle collection while the new snapshot's objects pile up: a
        # gen-2 pass over them holds the GIL for ~20 ms at 1,000 services. The
        # swap freezes them (gc.freeze) and turns the collector back on.
        gc.disable()
        config = self.compile(base, overlay)
        return build_snapshot(
            config,
            self.pools,
            self.source,
            self.specs,
            self.steps,
            self.stats,
            resources=self.resources,
        )

    def swap(self, snapshot: Snapshot) -> None:
        """Route every new request with `snapshot` (on the event loop's thread)."""
        self.generation += 1
        snapshot.generation = self.generation
        old = self.ctx.snapshot
        self.ctx.swap(snapshot)
        # PERF: freeing a 1,000-service route table at once holds the GIL for
        # ~8 ms; the build thread takes it apart in small steps instead.
        if old is not snapshot:
            self._executor.submit(_handing_off, _dispose, old)
        del old
        retired = self.pools.retire_unused(snapshot)
        if retired:
            log.info("upstreams no longer used: %s", ", ".join(retired))
        if self.stats is not None:
            # The counters of routes gone stop being reported; the rest go on.
            # PERF: a walk over every target (~24,000 at 1,000 services: ~45 ms of
            # Python) is not for the loop: the build thread does it, before any later
            # build (one worker, in order); `settled()` waits for it.
            self._retaining = self._executor.submit(
                _handing_off, _retain_stats, self.stats, snapshot
            )
        # The new snapshot lives until the next change: keep the cycle GC from
        # scanning its objects again and again (see Gateway.start).
        gc.freeze()
        gc.enable()
        if self.on_swap is not None:
            self.on_swap(snapshot)

    async def settled(self) -> None:
        """Once the counters of the routes the last swap removed are dropped (on the
        build thread, see `swap`), without waiting for a build in progress."""
        retaining = self._retaining
        if retaining is not None and not retaining.done():
            await asyncio.wrap_future(retaining)

    async def submit(self, change: Change, label: str) -> Snapshot:
        """Apply one change (coalesced with any that arrive meanwhile); its snapshot.

        Raises ConfigError or SnapshotError when the change is refused; the
        running config is then untouched.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Snapshot] = loop.create_future()
        self._pending.append(_Pending(change, future, label))
        if self._runner is None or self._runner.done():
            self._runner = loop.create_task(self._run())
        return await future

    async def _run(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._apply_batch(batch)
            except Exception as exc:  # a bug: refuse the batch, keep serving
                log.exception("applying a config change failed")
                for item in batch:
                    _fail(item.future, exc)
            # A refused build may have made pools for upstreams nothing uses.
            self.pools.retire_unused(self.snapshot)
            gc.enable()  # (disabled by the build; a swap froze its objects first)

    async def _apply_batch(self, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        base, overlay = self.base, self.overlay
        applied: list[_Pending] = []
        for item in batch:
            try:
                base, overlay = item.change(base, overlay)
            except (ConfigError, SnapshotError) as exc:
                _fail(item.future, exc)
                continue
            applied.append(item)
        if not applied:
            return
        try:
            snapshot = await loop.run_in_executor(
                self._executor, _handing_off, self._build, base, overlay
            )
        except (ConfigError, SnapshotError) as exc:
            if len(applied) == 1:
                _fail(applied[0].future, exc)
                return
            # Some change in the burst is bad: apply them one at a time.
            for item in applied:
                await self._apply_alone(item)
            return
        await self._commit(base, overlay, snapshot, applied)

    async def _apply_alone(self, item: _Pending) -> None:
        loop = asyncio.get_running_loop()
        try:
            base, overlay = item.change(self.base, self.overlay)
            snapshot = await loop.run_in_executor(
                self._executor, _handing_off, self._build, base, overlay
            )
        except (ConfigError, SnapshotError) as exc:
            _fail(item.future, exc)
            return
        await self._commit(base, overlay, snapshot, [item])

    async def _commit(
        self, base: GatewayConfig, overlay: Overlay, snapshot: Snapshot, items: list[_Pending]
    ) -> None:
        changed_state = msgspec.to_builtins(overlay) != msgspec.to_builtins(self.overlay)
        if changed_state and self.state_path is not None:
            loop = asyncio.get_running_loop()
            try:
                written = await loop.run_in_executor(
                    self._executor, _handing_off, self._write_state, overlay
                )
            except OSError as exc:
                problem = Problem(
                    self.state_path,
                    "",
                    f"the change could not be saved: {exc.strerror or exc}",
                    "make the state file's directory writable",
                )
                for item in items:
                    _fail(item.future, ConfigError([problem]))
                return
            if not written:
                self._rebase(items)
                return
        self.base, self.overlay = base, overlay
        self.swap(snapshot)
        for item in items:
            if not item.future.done():
                item.future.set_result(snapshot)
        log.info(
            "config version %s (generation %d): %s; %d service(s), %d routes",
            snapshot.version,
            snapshot.generation,
            ", ".join(item.label for item in items),
            len(snapshot.services),
            snapshot.route_count,
        )

    def _rebase(self, items: list[_Pending]) -> None:
        """Another process changed the state file: adopt it, then redo `items` on top."""
        try:
            self.overlay = load_state(self.state_path)
        except ConfigError as exc:
            for item in items:
                _fail(item.future, exc)
            return
        self._seen_state = _stat(self.state_path)
        retry = []
        for item in items:
            item.attempts += 1
            if item.attempts > 5:
                problem = Problem(
                    str(self.state_path), "", "the state file keeps changing", "try again"
                )
                _fail(item.future, ConfigError([problem]))
            else:
                retry.append(item)
        self._pending[:0] = retry

    # -- the changes -----------------------------------------------------------------------

    def find_service(self, tenant: str, name: str) -> ServiceConfig | None:
        snapshot = self.snapshot
        service = snapshot.service(name, tenant)
        return service.config if service is not None else None

    def find_tenant(self, name: str) -> TenantConfig | None:
        return next((t for t in self.config.tenants if t.name == name), None)

    async def put_service(self, tenant: str, service: ServiceConfig) -> Snapshot:
        """Create or replace a service (top level, or a tenant's)."""
        key = service_key(tenant, service.name)
        data = msgspec.to_builtins(service)

        def change(base: GatewayConfig, overlay: Overlay) -> tuple[GatewayConfig, Overlay]:
            if tenant and not _has_tenant(base, overlay, tenant):
                raise ConfigError(
                    [Problem("<admin API>", "", f"no tenant named {tenant!r}", "create it first")]
                )
            return base, _with(overlay, services={key: data})

        return await self.submit(change, f"put service {key}")

    async def delete_service(self, tenant: str, name: str) -> Snapshot:
        key = service_key(tenant, name)

        def change(base: GatewayConfig, overlay: Overlay) -> tuple[GatewayConfig, Overlay]:
            services = dict(overlay.services)
            in_base = _base_has_service(base, tenant, name)
            if in_base:
                services[key] = None
            else:
                services.pop(key, None)
            return base, msgspec.structs.replace(overlay, services=services)

        return await self.submit(change, f"delete service {key}")

    async def put_tenant(self, tenant: TenantConfig) -> Snapshot:
        data = msgspec.to_builtins(tenant)
        name = tenant.name

        def change(base: GatewayConfig, overlay: Overlay) -> tuple[GatewayConfig, Overlay]:
            # The tenant's services come with it: earlier per-service changes are replaced.
            services = {k: v for k, v in overlay.services.items() if k.rpartition("/")[0] != name}
            tenants = {**overlay.tenants, name: data}
            return base, msgspec.structs.replace(overlay, services=services, tenants=tenants)

        return await self.submit(change, f"put tenant {name}")

    async def delete_tenant(self, name: str) -> Snapshot:
        def change(base: GatewayConfig, overlay: Overlay) -> tuple[GatewayConfig, Overlay]:
            services = {k: v for k, v in overlay.services.items() if k.rpartition("/")[0] != name}
            tenants = dict(overlay.tenants)
            if any(t.name == name for t in base.tenants):
                tenants[name] = None
            else:
                tenants.pop(name, None)
            return base, msgspec.structs.replace(overlay, services=services, tenants=tenants)

        return await self.submit(change, f"delete tenant {name}")

    def find_consumer(self, name: str) -> ConsumerConfig | None:
        return next((c for c in self.config.consumers if c.name == name), None)

    async def put_consumer(self, consumer: ConsumerConfig) -> Snapshot:
        """Create or replace a consumer (its credentials and plugins with it)."""
        data = msgspec.to_builtins(consumer)
        name = consumer.name

        def change(base: GatewayConfig, overlay: Overlay) -> tuple[GatewayConfig, Overlay]:
            consumers = {**overlay.consumers, name: data}
            return base, msgspec.structs.replace(overlay, consumers=consumers)

        return await self.submit(change, f"put consumer {name}")

    async def delete_consumer(self, name: str) -> Snapshot:
        def change(base: GatewayConfig, overlay: Overlay) -> tuple[GatewayConfig, Overlay]:
            consumers = dict(overlay.consumers)
            if any(c.name == name for c in base.consumers):
                consumers[name] = None
            else:
                consumers.pop(name, None)
            return base, msgspec.structs.replace(overlay, consumers=consumers)

        return await self.submit(change, f"delete consumer {name}")

    async def replace_config(self, config: GatewayConfig, label: str) -> Snapshot:
        """Serve `config` (already checked) in place of the running one: the config
        store's path. Raises SnapshotError when it does not build."""

        def change(base: GatewayConfig, overlay: Overlay) -> tuple[GatewayConfig, Overlay]:
            return config, Overlay()

        return await self.submit(change, label)

    async def reload(self, reason: str = "reload") -> Snapshot | None:
        """Read the config file (and the state file) again; None when there is no file.

        A file that can not be used is refused and logged; the running config stays.
        """
        config_path = self.config_path
        state_path = self.state_path
        if config_path is None and state_path is None:
            return None
        loop = asyncio.get_running_loop()
        self._seen_config = _stat(config_path)
        read_stat = self._watched_state = _stat(state_path)
        try:
            base = (
                await loop.run_in_executor(self._executor, _handing_off, load_config, config_path)
                if config_path is not None
                else None
            )
            loaded = await loop.run_in_executor(self._executor, _handing_off, self.load_state)
        except ConfigError as exc:
            self._refused(reason, exc.problems)
            raise

        def change(old_base: GatewayConfig, current: Overlay) -> tuple[GatewayConfig, Overlay]:
            # The state file as this process last wrote or read it: the overlay
            # in memory is the truth (it may hold a change committed after the
            # read above). Changed by another process: take theirs; committing
            # then finds the file newer than it knows and rebases (see _rebase).
            now = _stat(state_path)
            if now == self._seen_state:
                overlay = current
            elif now == read_stat:
                overlay = loaded
            else:
                overlay = self.load_state()
            return base if base is not None else old_base, overlay

        try:
            snapshot = await self.submit(change, reason)
        except (ConfigError, SnapshotError) as exc:
            self._refused(reason, exc.problems)
            raise
        self.last_error = []
        self.reloads.reloads_ok += 1
        self.reloads.last_success = time.time()
        restart = [
            key
            for key in RESTART_KEYS
            if base is not None and getattr(base, key) != getattr(snapshot.config, key)
        ]
        if restart:
            log.warning(
                "%s: changes to %s take effect at the next restart",
                reason,
                ", ".join(restart),
            )
        return snapshot

    def _refused(self, reason: str, problems: list[Problem]) -> None:
        self.last_error = problems
        self.reloads.reloads_refused += 1
        log.error(
            "%s refused, the running config stays (version %s):\n%s",
            reason,
            self.snapshot.version,
            "\n".join(f"  error: {p}" for p in problems),
        )

    # -- watching the files ----------------------------------------------------------------

    def start_watching(self, interval: float) -> None:
        if self.config_path is None and self.state_path is None:
            return
        loop = asyncio.get_running_loop()
        self._watcher = loop.create_task(self._watch(interval))

    async def _watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            config_stat = _stat(self.config_path) if self.watch_config else None
            state_stat = _stat(self.state_path)
            if not self._config_changed(config_stat) and state_stat in (
                self._seen_state,
                self._watched_state,
            ):
                continue
            # A writer may still be at it: wait for the file to hold still.
            await asyncio.sleep(min(0.05, interval))
            if (self.watch_config and _stat(self.config_path) != config_stat) or _stat(
                self.state_path
            ) != state_stat:
                continue
            config_changed = self._config_changed(config_stat)
            if not config_changed:
                if self._own_state_write():
                    continue
                if self._holds_own_write():
                    self._watched_state = state_stat  # (not when a writer held the lock)
                    continue
            what = "the config file changed" if config_changed else "the state file changed"
            with contextlib.suppress(ConfigError, SnapshotError):
                await self.reload(what)

    def _config_changed(self, config_stat: tuple[int, int, int] | None) -> bool:
        """The config file (watched) is not as the last reload read it.

        Never when it is not watched (`watch: false`): the watcher then once kept a
        copy of `_seen_config` as if it were the file's stat, and a reload (SIGHUP,
        POST /admin/reload) during its wait for the state file to hold still moved
        `_seen_config` on: "the config file changed", a reload of a file nobody asked
        to watch that also skipped the own-write checks below (an extra generation,
        test_three_doors_interleaved on busy CPUs).
        """
        return self.watch_config and config_stat != self._seen_config

    def _own_state_write(self) -> bool:
        """The state file as it is now is this process's own write (or a write is under
        way): not a change to reload.

        `_write_state` records the stat of what it wrote under the file's lock, after
        the rename: a poll that fell between the two saw a stat not yet recorded and
        reloaded the gateway's own change (an extra generation, seen in CI). Under the
        lock the record is complete.
        """
        path = self.state_path
        if path is None:
            return False
        try:
            with open(path + ".lock", "a") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return True  # a writer holds it: the next poll looks again
                return _stat(path) in (self._seen_state, self._watched_state)
        except OSError:
            return False

    def _holds_own_write(self) -> bool:
        """The state file holds, byte for byte, what this process last wrote.

        The stat checks above can still miss the gateway's own write (CI: one more
        generation than changes in test_three_doors_interleaved, after 9797cf1); its
        content can not be mistaken. Reloading it would rebuild for nothing: the
        overlay in memory is what the file says.
        """
        if self._written is None or self.state_path is None:
            return False
        try:
            return Path(self.state_path).read_bytes() == self._written
        except OSError:
            return False

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self._runner is not None and not self._runner.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._runner), 30)
        self._executor.shutdown(wait=False, cancel_futures=True)


def load_state(path: str | None) -> Overlay:
    """The overlay kept in the state file (empty when there is none)."""
    if path is None or not os.path.exists(path):
        return Overlay()
    try:
        return msgspec.json.decode(Path(path).read_bytes(), type=Overlay)
    except (OSError, msgspec.DecodeError) as exc:
        raise ConfigError(
            [
                Problem(
                    path,
                    "",
                    f"the admin API's state file can not be read: {exc}",
                    "fix or remove it (it holds the changes made through the API)",
                )
            ]
        ) from None


BUILD_NICENESS = 10


def _yield_to_serving() -> None:
    """Lower the build thread's scheduling priority (nice +10, this thread only).

    PERF (tests/test_cluster_scale.py, the burst): a burst of config changes makes
    every worker of every node build at once, on as few cores as there are workers
    to serve. The kernel then gives the serving threads (this worker's event loop,
    and every other worker's) the CPU first; a build waits, a request does not.
    Within this process the GIL still hands over every 0.1 ms (_handing_off). Linux
    applies setpriority to the one thread its id names; elsewhere this does nothing.
    """
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + BUILD_NICENESS)
    except (AttributeError, OSError):  # (not Linux, or not allowed: builds at full priority)
        pass


def _handing_off(fn: Callable[..., _T], *args: Any) -> _T:
    """Run `fn` on the build thread with a 0.1 ms GIL switch interval.

    PERF: the event loop's thread waits for the GIL at most this long (then
    asks for it, and the build thread hands it over at its next bytecode)
    instead of the default 5 ms, for everything the build thread does: builds,
    taking old tables apart, reading and writing files.
    """
    previous = sys.getswitchinterval()
    sys.setswitchinterval(0.0001)
    try:
        with building():  # and gives the CPU away every 1 ms (handoff.py)
            return fn(*args)
    finally:
        sys.setswitchinterval(previous)


def _retain_stats(stats: StatsRegistry, snapshot: Snapshot) -> None:
    stats.retain(_counted(snapshot))


def _counted(snapshot: Snapshot) -> Iterator[RouteStats]:
    for i, target in enumerate(targets(snapshot)):
        if not i & 255:
            pause()  # ~24,000 targets at 1,000 services: let a waiting event loop run
        if target.stats is not None:
            yield target.stats


def _dispose(snapshot: Snapshot) -> None:
    """Take a replaced snapshot's route tables apart (on the build thread)."""
    snapshot.router.release()
    for router in snapshot.tenant_routers.values():
        router.release()


def _fail(future: asyncio.Future[Snapshot], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def _with(overlay: Overlay, *, services: dict[str, dict[str, Any] | None]) -> Overlay:
    return msgspec.structs.replace(overlay, services={**overlay.services, **services})


def _has_tenant(base: GatewayConfig, overlay: Overlay, name: str) -> bool:
    if name in overlay.tenants:
        return overlay.tenants[name] is not None
    return any(t.name == name for t in base.tenants)


def _base_has_service(base: GatewayConfig, tenant: str, name: str) -> bool:
    if not tenant:
        return any(s.name == name for s in base.services)
    return any(s.name == name for t in base.tenants if t.name == tenant for s in t.services)


def _stat(path: str | None) -> tuple[int, int, int] | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def default_state_path(config_path: str | None, config: GatewayConfig) -> str | None:
    """Where admin changes are kept: `admin.state_file`, or next to the config file."""
    admin = config.admin
    if admin is not None and admin.state_file:
        return os.path.join(config.base_dir, admin.state_file)
    if config_path is not None:
        path = Path(config_path)
        return str(path.with_name(path.name + ".state.json"))
    return None
