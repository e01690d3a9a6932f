"""`Gateway`: builds the snapshot from a config, binds the listeners, runs, drains.

    gateway = Gateway(load_config("gateway.yaml"), config_path="gateway.yaml")
    await gateway.start()          # binds; gateway.addresses tells where
    await gateway.register_service(name="petstore", openapi="petstore.yaml",
                                   url="http://127.0.0.1:8081")
    ...
    await gateway.stop()           # stop accepting, finish in-flight, close

Everything here runs on the event loop's thread; the data plane itself is the
callbacks in `_dataplane.pyx`, and config changes go through `ControlPlane`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import os
import signal
import socket
import ssl
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from runmcp_fast._dataplane import Clock, ServerContext
from runmcp_fast.admin import MAX_BODY as ADMIN_MAX_BODY
from runmcp_fast.admin import AdminAPI, metrics_snapshot
from runmcp_fast.config import (
    GatewayConfig,
    LimitsConfig,
    ListenerConfig,
    ServiceConfig,
    TenantConfig,
    parse_address,
)
from runmcp_fast.control import (
    ControlPlane,
    Overlay,
    compile_config,
    default_state_path,
    load_state,
    validate_consumer,
    validate_service,
    validate_tenant,
)
from runmcp_fast.health import (
    HealthChecker,
    Verdicts,
    apply_verdicts,
    verdicts_from_wire,
    verdicts_to_wire,
)
from runmcp_fast.listeners import accept_queue, bound_addresses, start_listener
from runmcp_fast.mcp.affinity import session_key
from runmcp_fast.mcp.server import tools_changed
from runmcp_fast.metrics.collect import Samples, collect, merge
from runmcp_fast.metrics.exposition import CONTENT_TYPE, render
from runmcp_fast.metrics.peers import Peers
from runmcp_fast.metrics.registry import StatsRegistry
from runmcp_fast.plugins.build import metrics_on
from runmcp_fast.plugins.contract import Resources
from runmcp_fast.preload import take_specs
from runmcp_fast.problems import ConfigError, Problem, SnapshotError
from runmcp_fast.snapshot import (
    Pools,
    Snapshot,
    StepSource,
    build_snapshot,
    iter_services,
)

if TYPE_CHECKING:
    from runmcp_fast.cluster.runtime import ClusterRuntime


def sweep_interval(*timeouts: float) -> float:
    """A clock tick fine enough for the shortest timeout: a quarter of it, within 10 ms..1 s."""
    shortest = min((t for t in timeouts if t > 0), default=1.0)
    return min(1.0, max(0.01, shortest / 4))


class Gateway:
    def __init__(
        self,
        config: GatewayConfig,
        *,
        source: str = "<config>",
        sockets: list[socket.socket] | None = None,
        label: str = "",
        config_path: str | None = None,
        steps: StepSource | None = None,
        peers: Peers | None = None,
        hub: tuple[str, str] | None = None,
    ) -> None:
        self.config = config
        # serve --workers N with a config store: the node's agent (socket, hand-off dir).
        self._hub = hub
        self.cluster: ClusterRuntime | None = None
        # The sibling workers whose numbers a scrape sums (serve --workers N).
        self._peers = peers
        # Each route's counters, kept across reloads; None when metrics are off.
        self.stats: StatsRegistry | None = StatsRegistry() if metrics_on(config) else None
        # Steps for each route beyond the built-in ones (docs/architecture.md).
        self.steps = steps
        self.source = source
        # The file to watch and reload (None: a config made in Python).
        self.config_path = config_path
        # Listening sockets bound beforehand (one per listener, in order), shared
        # by worker processes; None: each listener binds its own.
        self._sockets = sockets
        self._label = label
        self._servers: list[asyncio.Server] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ctx: ServerContext | None = None
        self._pools: Pools | None = None
        self._clock: Clock | None = None
        self._stopped: asyncio.Event | None = None
        self._control: ControlPlane | None = None
        self._admin_ctx: ServerContext | None = None
        self.addresses: list[str] = []
        self.admin_addresses: list[str] = []
        self.metrics_addresses: list[str] = []
        self._admin_servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._checker: HealthChecker | None = None
        # What plugins keep running across snapshots (access logs' sinks, exporters): closed by stop().
        self._resources = Resources()
        self._serving = False  # serve_forever(): the process's signals are ours
        self.ready = False

    @property
    def snapshot(self) -> Snapshot:
        assert self._ctx is not None, "start() first"
        snapshot: Snapshot = self._ctx.snapshot
        return snapshot

    @property
    def control(self) -> ControlPlane:
        assert self._control is not None, "start() first"
        return self._control

    @property
    def pools(self) -> Pools:
        assert self._pools is not None, "start() first"
        return self._pools

    async def start(self) -> None:
        """Compile the config (SnapshotError if it can not be) and bind every listener."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        config = self.config
        limits = config.limits
        pool = config.pool
        self._clock = clock = Clock(
            loop,
            sweep_interval(
                limits.header_timeout,
                limits.body_timeout,
                limits.keepalive_timeout,
                pool.wait_timeout,
                pool.read_timeout,
                pool.idle_timeout,
                *(s.read_timeout or 0 for s in config.services),
                *_service_timeouts(config),
                # Event streams' keep-alive comments are sent on this clock too.
                *(s.mcp.keepalive_interval for s in config.services if s.mcp is not None),
            ),
        )
        self._pools = pools = Pools(loop, clock, pool)
        # (`serve --workers N`: the specs the parent parsed before it forked.)
        specs = take_specs()
        if config.config_store is not None:
            # The cluster's objects come from etcd (or the disk cache until it answers).
            # (Imported here: a gateway without a store never loads the etcd client.)
            from runmcp_fast.cluster.runtime import ClusterRuntime

            self.cluster = ClusterRuntime(config, self.source, self.config_path, hub=self._hub)
            state_path = None
            overlay = Overlay()
            effective = self.cluster.initial_config()
        else:
            # Changes made through the API on an earlier run come back on top.
            state_path = default_state_path(self.config_path, config)
            overlay = load_state(state_path)
            effective = compile_config(config, overlay, self.source, running=config)
        session_key()  # drawn now, before the first MCP session id is sealed
        if self._resources.closed:
            self._resources = Resources()  # started again after a stop
        try:
            snapshot = build_snapshot(
                effective,
                pools,
                self.source,
                specs,
                self.steps,
                self.stats,
                resources=self._resources,
            )
        except BaseException:
            await loop.run_in_executor(None, self._resources.close)
            raise
        snapshot.generation = 1
        # The snapshot's objects live as long as the config: keep the GC from
        # scanning them again and again (big specs hold millions of objects).
        gc.collect()
        gc.freeze()
        self._ctx = ctx = ServerContext(clock, limits, snapshot)
        self._control = control = ControlPlane(
            config,
            pools,
            ctx,
            source=self.source,
            config_path=self.config_path,
            state_path=state_path,
            specs=specs,
            on_swap=self._swapped,
            steps=self.steps,
            stats=self.stats,
            resources=self._resources,
        )
        control.overlay = overlay
        if self.cluster is not None:
            control.reloads.store = self.cluster.node
        self.config = effective
        clock.add_sweeper(ctx.sweep)
        clock.add_sweeper(pools.sweep)
        clock.add_sweeper(self._sweep_replicas)
        clock.start()
        self._stopped = asyncio.Event()
        try:
            for index, listener in enumerate(config.listeners):
                sock = self._sockets[index] if self._sockets is not None else None
                try:
                    server = await start_listener(loop, listener, ctx, config.base_dir, sock)
                except (OSError, ssl.SSLError) as exc:
                    raise ConfigError(
                        [_bind_problem(self.source, index, listener, config.base_dir, exc)]
                    ) from None
                self._servers.append(server)
                self.addresses.extend(bound_addresses(server))
            if config.admin is not None:
                await self._start_admin(loop, clock, config)
            if config.metrics.address is not None and self.stats is not None:
                await self._start_metrics_listener(loop, clock, config)
            if self._peers is not None:
                await self._peers.start(
                    self.local_samples if self.stats is not None else None,
                    self._verdicts_told,
                )
            if self._peers is None or self._peers.number == 1:
                # Active health checks: once per node (this process, or worker 1).
                self._checker = HealthChecker(
                    lambda: self.control.snapshot,
                    self._tell_verdicts if self._peers is not None else None,
                )
                self._checker.start()
        except BaseException:
            await self._close_servers()
            clock.stop()
            await loop.run_in_executor(None, self._resources.close)
            raise
        if self.cluster is not None:
            self.cluster.start(control)
        else:
            control.start_watching(config.watch_interval)
        self.ready = True

    async def _start_admin(
        self, loop: asyncio.AbstractEventLoop, clock: Clock, config: GatewayConfig
    ) -> None:
        admin = config.admin
        assert admin is not None
        token = admin.token or os.environ.get(admin.token_env) or None
        if token is None and not _loopback_only(admin.address):
            raise ConfigError(
                [
                    Problem(
                        self.source,
                        "/admin/token",
                        f"no admin token, and {admin.address} is not a loopback address",
                        f"set admin.token or the {admin.token_env} environment variable,"
                        " or listen on 127.0.0.1",
                    )
                ]
            )
        api = AdminAPI(
            self.control,
            token,
            lambda: self.ready,
            cluster=self.cluster,
            metrics=self.metrics if self.stats is not None else None,
            metrics_path=config.metrics.path,
        )
        limits = LimitsConfig(max_body_bytes=ADMIN_MAX_BODY, max_connections=256)
        self._admin_ctx = ctx = ServerContext(clock, limits, api.snapshot())
        clock.add_sweeper(ctx.sweep)
        listener = ListenerConfig(address=admin.address)
        # With worker processes, the admin socket comes after the listeners'.
        sockets = self._sockets or []
        sock = sockets[len(config.listeners)] if len(sockets) > len(config.listeners) else None
        try:
            server = await start_listener(loop, listener, ctx, config.base_dir, sock)
        except OSError as exc:
            detail = exc.strerror or str(exc)
            raise ConfigError(
                [
                    Problem(
                        self.source,
                        "/admin/address",
                        f"can not listen on {admin.address}: {detail}",
                    )
                ]
            ) from None
        self._admin_servers.append(server)
        self.admin_addresses.extend(bound_addresses(server))

    async def _start_metrics_listener(
        self, loop: asyncio.AbstractEventLoop, clock: Clock, config: GatewayConfig
    ) -> None:
        """`metrics.address`: a listener serving only the metrics, without a token."""
        address = config.metrics.address
        assert address is not None
        limits = LimitsConfig(max_body_bytes=0, max_connections=64)
        ctx = ServerContext(clock, limits, metrics_snapshot(self.metrics, config.metrics.path))
        clock.add_sweeper(ctx.sweep)
        try:
            server = await start_listener(
                loop, ListenerConfig(address=address), ctx, config.base_dir, None
            )
        except OSError as exc:
            detail = exc.strerror or str(exc)
            raise ConfigError(
                [Problem(self.source, "/metrics/address", f"can not listen on {address}: {detail}")]
            ) from None
        self._admin_servers.append(server)
        self.metrics_addresses = bound_addresses(server)

    async def _tell_verdicts(self, verdicts: Verdicts) -> None:
        assert self._peers is not None
        await self._peers.tell_health(verdicts_to_wire(verdicts))

    def _verdicts_told(self, data: object) -> None:
        """A sibling's health verdicts (worker 1 runs the checks)."""
        if self._control is not None:
            apply_verdicts(self._control.snapshot, verdicts_from_wire(data))

    def _sweep_replicas(self, now: float) -> None:
        """Ejections that are over end (services with several replicas)."""
        assert self._ctx is not None
        for replicas in self._ctx.snapshot.balanced:
            replicas.sweep(now)

    def local_samples(self) -> Samples:
        """This worker's numbers now (what a sibling worker asks for)."""
        assert self.stats is not None
        control = self.control
        assert self._ctx is not None
        return collect(
            control.snapshot,
            self.pools,
            self.stats.all(),
            control.reloads,
            self._ctx.unrouted_counts(),
            self._checker.counts if self._checker is not None else None,
        )

    async def metrics(self) -> tuple[int, list[tuple[str, str]], bytes]:
        """The metrics answer: this worker's numbers and its siblings', summed, as text."""
        await self.control.settled()  # the counters of routes gone are dropped
        parts = [self.local_samples()]
        if self._peers is not None:
            parts += await self._peers.gather()
        return 200, [("Content-Type", CONTENT_TYPE)], render(merge(parts))

    def _swapped(self, snapshot: Snapshot) -> None:
        self.config = snapshot.config
        if self._ctx is not None and snapshot.mcp_endpoints:
            # Clients listening on an MCP endpoint hear that its tools changed.
            tools_changed(self._ctx, snapshot.mcp_endpoints)
        if self._serving:
            self._handle_sigusr1()  # a reload may have added a log file

    def reopen_logs(self) -> int:
        """Reopen the files access logs append to (what SIGUSR1 does, after logrotate moved
        them): lines taken before go to the old files, later ones to the new. How many
        sinks reopened."""
        return self._resources.reopen()

    # -- the Python API: the same code path as the admin API and the file ---------------

    async def register_service(
        self,
        name: str,
        *,
        url: str | list[str],
        openapi: str | os.PathLike[str] | dict[str, Any] | None = None,
        tenant: str = "",
        **options: Any,
    ) -> Snapshot:
        """Add (or replace) a service and route it at once; the new snapshot.

        `openapi` is a spec file or the spec document itself; without one, give
        `prefix=`. Other keyword arguments are the service's config keys
        (`host`, `subdomain`, `base_path`, `strip_prefix`, timeouts...).
        Raises ConfigError or SnapshotError, naming every problem; the running
        config is then untouched.
        """
        if isinstance(openapi, (str, os.PathLike)):
            openapi = str(Path(openapi).resolve())
        data = {"name": name, "upstream": url, "openapi": openapi, **options}
        return await self._put_service(tenant, {k: v for k, v in data.items() if v is not None})

    async def update_service(self, name: str, *, tenant: str = "", **changes: Any) -> Snapshot:
        """Change some keys of a service (`url=` for its upstream); None resets a key."""
        current = self.control.find_service(tenant, name)
        if current is None:
            raise KeyError(_no_service(name, tenant))
        if "url" in changes:
            changes["upstream"] = changes.pop("url")
        if isinstance(changes.get("openapi"), (str, os.PathLike)):
            changes["openapi"] = str(Path(changes["openapi"]).resolve())
        data: dict[str, Any] = msgspec.to_builtins(current)
        for key, value in changes.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        return await self._put_service(tenant, {k: v for k, v in data.items() if v is not None})

    async def unregister_service(self, name: str, *, tenant: str = "") -> Snapshot:
        """Stop routing a service; requests in flight to it finish."""
        if self.control.find_service(tenant, name) is None:
            raise KeyError(_no_service(name, tenant))
        if self.cluster is not None:
            return await self._store(self.cluster.layout.service(tenant, name), None)
        return await self.control.delete_service(tenant, name)

    async def register_tenant(
        self,
        name: str,
        *,
        hosts: list[str] | None = None,
        services: list[dict[str, Any]] | None = None,
    ) -> Snapshot:
        """Add (or replace) a tenant with its hosts and services."""
        tenant: TenantConfig = validate_tenant(
            {"name": name, "hosts": hosts or [], "services": services or []}, self.control.config
        )
        if self.cluster is not None:
            layout = self.cluster.layout
            for service in tenant.services:
                await self._store(
                    layout.service(name, service.name),
                    msgspec.to_builtins(service),
                    wait=False,
                )
            return await self._store(layout.tenant(name), {"hosts": list(tenant.hosts)})
        return await self.control.put_tenant(tenant)

    async def unregister_tenant(self, name: str) -> Snapshot:
        if self.control.find_tenant(name) is None:
            raise KeyError(f"no tenant named {name!r}")
        if self.cluster is not None:
            return await self._store(self.cluster.layout.tenant(name), None, with_prefix=True)
        return await self.control.delete_tenant(name)

    async def register_consumer(
        self, name: str, *, groups: list[str] | None = None, **credentials: Any
    ) -> Snapshot:
        """Add (or replace) a consumer: `groups`, and its credentials and plugins by key
        (`key_auth={"key": ...}` or `**{"key-auth": {...}}`, `plugins={...}`)."""
        data: dict[str, Any] = {"name": name, "groups": groups or []}
        for key, value in credentials.items():
            data[key.replace("_", "-") if key != "plugins" else key] = value
        consumer = validate_consumer(data, self.control.config)
        if self.cluster is not None:
            return await self._store(
                self.cluster.layout.consumer(name), msgspec.to_builtins(consumer)
            )
        return await self.control.put_consumer(consumer)

    async def unregister_consumer(self, name: str) -> Snapshot:
        if self.control.find_consumer(name) is None:
            raise KeyError(f"no consumer named {name!r}")
        if self.cluster is not None:
            return await self._store(self.cluster.layout.consumer(name), None)
        return await self.control.delete_consumer(name)

    async def reload(self) -> Snapshot | None:
        """Read the config file again (as SIGHUP does); None without a file."""
        return await self.control.reload("reload")

    async def _put_service(self, tenant: str, data: dict[str, Any]) -> Snapshot:
        service: ServiceConfig = validate_service(data, self.control.config)
        if self.cluster is not None:
            return await self._store(
                self.cluster.layout.service(tenant, service.name), msgspec.to_builtins(service)
            )
        return await self.control.put_service(tenant, service)

    async def _store(
        self,
        key: bytes,
        value: dict[str, Any] | None,
        *,
        wait: bool = True,
        with_prefix: bool = False,
    ) -> Snapshot:
        """With a config store: write to etcd, then wait until this process serves it.

        Raises EtcdUnavailable when etcd does not answer, ConfigError when this
        node refuses what was written, TimeoutError when it is not served in 30 s.
        """
        cluster = self.cluster
        assert cluster is not None and cluster.writer is not None
        writer = cluster.writer
        if value is None:
            revision = await writer.delete(key, None, with_prefix=with_prefix)
        else:
            if "openapi" in value or "upstream" in value:
                value = await writer.service_value(value)
            revision, _ = await writer.put(key, value, None)
        if wait:
            await cluster.node.wait_applied(revision, 30.0)
        return self.snapshot

    def startup_line(self) -> str:
        snapshot = self.snapshot
        services = ", ".join(
            f"{s.label} -> {' '.join(s.config.upstreams)}" for s in snapshot.services
        )
        return (
            f"runmcp-fast{self._label}: listening on {', '.join(self.addresses)}; "
            f"{len(snapshot.services)} service(s) [{services}]; {snapshot.route_count} routes"
        )

    async def stop(self, drain_timeout: float | None = None) -> None:
        """Stop accepting, let in-flight requests finish (up to the drain timeout), close."""
        ctx = self._ctx
        if ctx is None:
            return
        if drain_timeout is None:
            drain_timeout = self.config.limits.drain_timeout
        self.ready = False
        # Connections the kernel already queued on our listening sockets are
        # accepted and served (a socket closed with a queue resets them).
        await self._drain_accept_queues()
        ctx.closing = True
        if self._peers is not None:
            await self._peers.close()
        if self._checker is not None:
            await self._checker.close()
        if self.cluster is not None:
            await self.cluster.close()
        if self._control is not None:
            await self._control.close()
        for server in self._servers + self._admin_servers:
            server.close()
        for conn in tuple(ctx.connections):
            conn.shutdown()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_timeout
        while ctx.connections and loop.time() < deadline:
            await asyncio.sleep(0.01)
        for conn in tuple(ctx.connections):
            conn.abort()
        ctx.connections.clear()
        # Every exchange has ended (its log steps ran): what plugins hold is written now
        # (access-log lines, spans), off the event loop: it may wait on the disk or the network.
        await loop.run_in_executor(None, self._resources.close)
        await self._close_servers()
        if self._pools is not None:
            self._pools.close()
        if self._clock is not None:
            self._clock.stop()
        if self._stopped is not None:
            self._stopped.set()
        gc.unfreeze()

    async def _drain_accept_queues(self, timeout: float = 1.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        sockets = [s for server in self._servers for s in server.sockets]
        tcp = [s for s in sockets if s.family in (socket.AF_INET, socket.AF_INET6)]
        while any(accept_queue(s) for s in tcp) and loop.time() < deadline:
            await asyncio.sleep(0.005)

    async def _close_servers(self) -> None:
        servers = self._servers + self._admin_servers
        for server in servers:
            server.close()
        if self._admin_ctx is not None:
            for conn in tuple(self._admin_ctx.connections):
                conn.abort()
        for server in servers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        self._servers.clear()
        self._admin_servers.clear()

    async def serve_forever(self) -> None:
        """Start, print the startup line, run until SIGTERM/SIGINT, then drain and stop."""
        await self.start()
        loop = asyncio.get_running_loop()
        stop_requested = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop_requested.set)
        loop.add_signal_handler(signal.SIGHUP, self._sighup)
        self._serving = True
        self._handle_sigusr1()
        # (after the handlers: whoever waits for this line may signal at once)
        _say(self.startup_line())
        try:
            await stop_requested.wait()
            _say(f"runmcp-fast{self._label}: draining")
            await self.stop()
        finally:
            self._serving = False
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
                loop.remove_signal_handler(sig)

    def _handle_sigusr1(self) -> None:
        """SIGUSR1 reopens the access logs' files: handled once some access log writes to a
        file; until then it is ignored (a stray one, from a logrotate script of an older
        config, never ends the gateway)."""
        loop = asyncio.get_running_loop()
        if self._resources.reopens:
            loop.add_signal_handler(signal.SIGUSR1, self.reopen_logs)
        else:
            loop.remove_signal_handler(signal.SIGUSR1)
            signal.signal(signal.SIGUSR1, signal.SIG_IGN)

    def _sighup(self) -> None:
        async def reload() -> None:
            with contextlib.suppress(ConfigError, SnapshotError):
                await self.control.reload("SIGHUP")

        task = asyncio.get_running_loop().create_task(reload())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _bind_problem(
    source: str, index: int, listener: ListenerConfig, base_dir: str, exc: OSError | ssl.SSLError
) -> Problem:
    """Why listener `index` could not start, pointing at the key to fix."""
    where = f"/listeners/{index}"
    tls = listener.tls
    if tls is not None:
        for key in ("cert", "key"):
            path = Path(base_dir, getattr(tls, key))
            if not path.is_file():
                return Problem(source, f"{where}/tls/{key}", f"no such file: {path}", "a PEM file")
        if isinstance(exc, ssl.SSLError):
            reason = exc.reason or str(exc)
            return Problem(source, f"{where}/tls", f"the certificate or key is unusable: {reason}")
    detail = exc.strerror or str(exc)
    return Problem(source, f"{where}/address", f"can not listen on {listener.address}: {detail}")


def _service_timeouts(config: GatewayConfig) -> list[float]:
    """Every upstream timeout the services and their operations give (for the clock)."""
    found: list[float] = []
    for _, _, service in iter_services(config):
        settings = [service.timeouts, *(op.timeouts for op in service.operations.values())]
        for timeouts in settings:
            if timeouts is not None:
                found += [t for t in (timeouts.first_byte, timeouts.idle, timeouts.total) if t]
    return found


def _no_service(name: str, tenant: str) -> str:
    return f"no service named {name!r}" + (f" of tenant {tenant!r}" if tenant else "")


def _loopback_only(address: str) -> bool:
    try:
        parsed = parse_address(address)
    except ValueError:
        return False
    if isinstance(parsed, str):
        return True  # a unix socket: reachable through the file system only
    host = parsed[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _say(line: str) -> None:
    # One write per line: worker processes share stderr.
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
