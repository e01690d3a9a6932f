"""A config compiled for traffic: services with their pools, and the route tables.

A `Snapshot` is immutable once built; a config change builds a new one and
the gateway swaps one reference (requests in flight keep the one they began
with). Pools outlive snapshots: they are keyed by upstream and shared.
Loaded specs outlive snapshots too (`SpecCache`): a change to one service
re-reads one spec, not a thousand.
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import msgspec
import orjson

from runmcp_fast._dataplane import (
    Chain,
    Clock,
    Consumer,
    ContractStep,
    Dispatch,
    Pool,
    Replicas,
    RouteStats,
    Step,
    Target,
)
from runmcp_fast.config import (
    GatewayConfig,
    McpConfig,
    PoolConfig,
    ServiceConfig,
    TenantConfig,
    TimeoutsConfig,
    Upstream,
    ValidationConfig,
    VirtualServerConfig,
    parse_upstream,
)
from runmcp_fast.handoff import pause
from runmcp_fast.mcp import mount
from runmcp_fast.mcp.affinity import SessionCodec, session_key
from runmcp_fast.mcp.server import McpEndpoint, Member, RemoteTools, ServiceEndpoint
from runmcp_fast.mcp.tools import ToolSet
from runmcp_fast.metrics.registry import StatsRegistry
from runmcp_fast.openapi import Operation, Spec, SpecError, load_spec
from runmcp_fast.openapi.dispatch import choices, shadowed
from runmcp_fast.openapi.loader import load_spec_data
from runmcp_fast.openapi.model import RouteGroup
from runmcp_fast.openapi.parameters import path_names
from runmcp_fast.openapi.pointers import join
from runmcp_fast.openapi.routes import RoutePlan, add_planned, route_plan
from runmcp_fast.openapi.whole import with_whole_check
from runmcp_fast.plugins.build import PluginBuild, metrics_on
from runmcp_fast.plugins.contract import Resources
from runmcp_fast.problems import DocumentError, Problem, SnapshotError
from runmcp_fast.router import RouteConflict, Router, TemplateError
from runmcp_fast.validation import Bundler, OperationValidator, compile_operation
from runmcp_fast.validation.report import contract_summary

_VALIDATION_DEFAULTS = ValidationConfig()
_MCP_DEFAULTS = McpConfig()
_TIMEOUTS = TimeoutsConfig()

# A service's identity: (tenant or "" for the top level, service name).
ServiceKey = tuple[str, str]


class ServiceOwner:
    """Who a service's targets name as their owner (a RouteOwner).

    Not the Service itself: a target pointing back at the Service that
    keeps it would be a reference cycle, left to the cycle collector.
    """

    __slots__ = ("label", "name", "tenant")

    def __init__(self, name: str, tenant: str) -> None:
        self.name = name
        self.tenant = tenant
        self.label = f"{tenant}/{name}" if tenant else name


class RouteInfo(NamedTuple):
    """What a step source is told of a route, to choose its steps."""

    service: str  # the service's (or virtual MCP server's) name
    tenant: str  # "" at the top level
    kind: str  # "operation", "prefix", "mcp" (a service's MCP routes), "virtual"
    operation: Operation | None  # for kind "operation"
    path: str | None = None  # for kinds "mcp" and "virtual": the MCP endpoint's path
    hosts: tuple[str | None, ...] = ()  # and the hosts it is on (None: any Host)

    @property
    def label(self) -> str:
        return f"{self.tenant}/{self.service}" if self.tenant else self.service


StepSource = Callable[[RouteInfo], Sequence[Step]]
"""Gives the steps a route has beyond the built-in ones (docs/architecture.md)."""


class Service:
    """One upstream service: its config, its pools, its settings with defaults applied."""

    __slots__ = (
        "_mcp_routes",
        "_plan",
        "_stats",
        "_steps",
        "_steps_key",
        "_targets",
        "codec",
        "config",
        "connect_timeout",
        "host_header",
        "hosts",
        "idle_timeout",
        "key",
        "max_body",
        "mcp",
        "mcp_endpoint",
        "mcp_tools",
        "name",
        "notes",
        "owner",
        "pools",
        "read_timeout",
        "replicas",
        "spec",
        "strip_prefix",
        "tenant",
        "total_timeout",
        "upstream",
        "upstream_path",
        "validators",
        "where",
    )

    def __init__(
        self,
        config: ServiceConfig,
        pools: tuple[Pool | None, ...],
        defaults: GatewayConfig,
        *,
        tenant: str = "",
        where: str = "",
        hosts: tuple[str | None, ...] = (None,),
    ) -> None:
        # The first replica's path and Host are the targets' own; a replica with
        # others gets a request head of its own (Replica.own_head).
        upstreams = [parse_upstream(url) for url in config.upstreams]
        upstream = upstreams[0]
        self._targets: dict[object, Target] = {}
        # Its spec's routes and its MCP routes with their targets: an unchanged
        # service adds them again at each build without working them out again.
        # Made again with the targets (see `use_steps`).
        self._plan: RoutePlan | None = None
        self._mcp_routes: list[tuple[str, str, Target]] | None = None
        self._steps: StepSource | None = None
        self._steps_key: str | None = None
        self._stats: StatsRegistry | None = None
        self.validators: dict[int, OperationValidator] = {}
        """id(operation) -> its compiled contract (see `compile_contract`)."""
        self.config = config
        self.name = config.name
        self.tenant = tenant
        self.key: ServiceKey = (tenant, config.name)
        self.owner = ServiceOwner(config.name, tenant)
        self.where = where
        self.hosts = hosts
        self.pools = pools
        self.spec: Spec | None = None
        self.upstream: Upstream = upstream
        # None: pass the client's Host on; otherwise the upstream's own authority.
        self.host_header: bytes | None = (
            upstream.authority.encode("ascii") if config.host_header == "upstream" else None
        )
        self.upstream_path = upstream.path.encode("ascii")
        self.strip_prefix = (config.strip_prefix or "").rstrip("/").encode("ascii")
        self.max_body = (
            config.max_body_bytes
            if config.max_body_bytes is not None
            else defaults.limits.max_body_bytes
        )
        timeouts = config.timeouts or _TIMEOUTS
        self.connect_timeout: float = (
            timeouts.connect or config.connect_timeout or defaults.pool.connect_timeout
        )
        self.read_timeout: float = (
            timeouts.first_byte or config.read_timeout or defaults.pool.read_timeout
        )
        self.idle_timeout: float = (
            timeouts.idle or config.read_timeout or defaults.pool.read_timeout
        )
        self.total_timeout: float = timeouts.total or 0.0
        balancer = config.balancer
        self.replicas = Replicas(
            pools,
            weights=[weight for _, weight in config.replicas],
            urls=config.upstreams,
            paths=[u.path.encode("ascii") for u in upstreams],
            authorities=(
                [u.authority.encode("ascii") for u in upstreams]
                if config.host_header == "upstream"
                else None
            ),
            policy=balancer.policy,
            hash_on=balancer.hash_on,
            algorithm=balancer.algorithm,
            outlier=config.outlier,
            retries=config.retries,
            breaker=config.circuit_breaker,
        )
        """The replicas, balanced; shared by every route of the service (retry budget too)."""
        self.mcp: McpConfig = config.mcp or _MCP_DEFAULTS
        # kind: mcp: seals the session ids of this service's replicas.
        self.codec: SessionCodec | None = (
            SessionCodec(session_key(), self.label, tuple(config.upstreams))
            if config.kind == "mcp"
            else None
        )
        self.mcp_tools: ToolSet | None = None
        self.mcp_endpoint: ServiceEndpoint | None = None
        self.notes: list[Problem] = []  # warnings found while building it

    @property
    def label(self) -> str:
        return self.owner.label

    def extra_steps(self, kind: str, operation: Operation | None = None) -> Sequence[Step]:
        """The steps the gateway's step source gives this route, beyond the built-ins."""
        if self._steps is None:
            return ()
        if kind == "mcp":
            return self._steps(
                RouteInfo(self.name, self.tenant, kind, None, self.mcp_path, self.hosts)
            )
        return self._steps(RouteInfo(self.name, self.tenant, kind, operation))

    def use_steps(
        self, steps: StepSource | None, key: str, stats: StatsRegistry | None = None
    ) -> None:
        """This build's step source (and counters); the targets are made again when `key`
        (what decides the steps) changed since they were made. Requests in flight keep theirs."""
        self._steps = steps
        if key != self._steps_key or stats is not self._stats:
            self._steps_key = key
            self._stats = stats
            self._targets = {}
            self._plan = None
            self._mcp_routes = None

    def compile(self, source: str) -> list[Problem]:
        """Its contract and MCP tools (`compile_contract`, `compile_tools`); the problems."""
        return self.compile_contract(source) + self.compile_tools(source)

    def take_compiled(self, other: Service) -> None:
        """Adopt what `other` compiled from the same spec and config (see SpecCache.compiled)."""
        self.validators = other.validators
        self.mcp_tools = other.mcp_tools
        self.mcp_endpoint = other.mcp_endpoint
        self.notes = list(other.notes)

    def route_stats(self, name: str, method: str) -> RouteStats | None:
        """A route's counters (the same across rebuilds), or None when nobody counts."""
        return self._stats.get(self.label, name, method) if self._stats is not None else None

    def target(self, operation: Operation | None) -> Target:
        """The router target for one of its operations (None: its prefix route).

        One per operation, kept: a snapshot rebuilt for another service's
        change reuses this service's targets instead of making (and, at the
        swap, freeing) them again.
        """
        key = id(operation)
        target = self._targets.get(key)
        if target is None:
            target = self._targets[key] = self._make_target(operation)
        return target

    def route_plan(self) -> RoutePlan:
        """Its spec's routes with their targets (`openapi.routes.route_plan`), kept."""
        plan = self._plan
        if plan is None:
            assert self.spec is not None
            plan = self._plan = route_plan(self.spec, target=self.target, group=self.group_target)
        return plan

    def group_target(self, group: RouteGroup) -> Target:
        """The router target of operations sharing one route: each its own target
        (contract, steps, counters), and a `Dispatch` picking one per request."""
        key = id(group)
        target = self._targets.get(key)
        if target is None:
            route_names = path_names(group.template)
            names = [path_names(op.template) for op in group.operations]
            dispatch = Dispatch(
                [self.target(op) for op in group.operations],
                [
                    [(c.location, c.name, c.value) for c in op.discriminator]
                    for op in group.operations
                ],
                [[(c.location, c.name, c.value) for c in soft] for soft in group.preferred],
                [tuple(n) if n != route_names else None for n in names],
                f"{group.method} {group.template} serves several operations and this "
                f"request meets the conditions of none: {choices(group)}",
            )
            target = self._targets[key] = Target.dispatching(
                owner=self.owner, name=group.operations[0].operation_id, dispatch=dispatch
            )
        return target

    def compile_contract(self, source: str) -> list[Problem]:
        """Compile each operation's request validator, per `validation`; the problems found.

        Runs on the build thread, once per new Service: an unchanged service
        keeps its validators (and their counters) across snapshots.
        """
        settings = self.config.validation or _VALIDATION_DEFAULTS
        spec = self.spec
        self.validators = {}
        if spec is None:
            return []
        problems: list[Problem] = []
        known = {op.operation_id for op in spec.operations}
        for op_id in settings.operations:
            if op_id not in known:
                close = difflib.get_close_matches(op_id, known, n=1)
                problems.append(
                    Problem(
                        source,
                        join(self.where, "validation", "operations", op_id),
                        f"the spec has no operation {op_id!r}",
                        f"did you mean {close[0]!r}?"
                        if close
                        else "use an operationId of the spec",
                    )
                )
        if settings.mode == "off" and all(m == "off" for m in settings.operations.values()):
            return problems
        bundler = spec.__dict__.get("_bundler")
        if bundler is None:
            # Shared by every service serving this spec: its schemas compile once.
            bundler = spec.__dict__["_bundler"] = Bundler(spec)
        for op in spec.operations:
            mode = settings.operations.get(op.operation_id, settings.mode)
            if mode == "off":
                continue
            try:
                validator = compile_operation(
                    spec,
                    op,
                    bundler,
                    mode=mode,
                    status=settings.status,
                    max_body=settings.max_body_bytes,
                    name=f"{self.label} {op.operation_id}",
                )
            except DocumentError as exc:
                problems.append(exc.problem)
                continue
            if validator.needed:
                self.validators[id(op)] = validator
        for group in spec.groups:
            for i, others in shadowed(group).items():
                first = self.validators.get(id(group.operations[i]))
                alternates = [self.validators.get(id(op)) for op in others]
                if first is not None:
                    # Those without a contract (nothing declared) are left out: the
                    # first's body check would otherwise take any body at all.
                    first.alternates = tuple(v for v in alternates if v is not None)
        return problems

    @property
    def mcp_path(self) -> str:
        """Where clients reach its MCP endpoint (the proxy's, or its tools')."""
        return mount.default_path(self.mcp, self.config.kind, self.spec)

    def compile_tools(self, source: str, *, force: bool = False) -> list[Problem]:
        """An OpenAPI service's operations as MCP tools (on the build thread, once per Service)."""
        settings = self.mcp
        spec = self.spec
        # PERF: a huge spec's tools take seconds (Microsoft Graph: 4.5 s); a
        # service with its endpoint off pays only if a virtual server needs them.
        if spec is None or self.config.kind == "mcp" or not (settings.enabled or force):
            return []
        tools = mount.compile_tools(spec, settings, source, self.where)
        if isinstance(tools, Problem):
            return [tools]
        self.mcp_tools = tools
        self.notes.extend(tools.problems)
        if settings.enabled:
            self._mcp_routes = None
            self.mcp_endpoint = mount.tools_endpoint(
                self.label, tools, settings, hosts=self.hosts, title=spec.title
            )
        return []

    def mcp_targets(self) -> list[tuple[str, str, Target]]:
        """(method, path, target) of each MCP route: the proxy's, or the tools endpoint's."""
        routes = self._mcp_routes
        if routes is None:
            routes = self._mcp_routes = self._make_mcp_targets()
        return routes

    def _make_mcp_targets(self) -> list[tuple[str, str, Target]]:
        path = self.mcp_path
        if self.config.kind == "mcp":
            messages, routes = mount.proxy_routes(self.mcp, path)
            target = self._targets.get("mcp")
            if target is None:
                assert self.codec is not None
                target = self._targets["mcp"] = mount.proxy_target(
                    self.owner,
                    self.mcp,
                    codec=self.codec,
                    replicas=self.replicas,
                    upstreams=self.config.upstreams,
                    upstream=self.upstream,
                    path=path,
                    messages_path=messages,
                    host_header=self.host_header,
                    max_body=self.max_body,
                    read_timeout=self.read_timeout,
                    connect_timeout=self.connect_timeout,
                    idle_timeout=self.idle_timeout,
                    total_timeout=self.total_timeout,
                    any_host=None in self.hosts,
                    steps=self.extra_steps("mcp"),
                    stats=self.route_stats("mcp", "*"),
                )
            return [(method, route, target) for method, route in routes]
        if self.mcp_endpoint is None:
            return []
        target = self._targets.get("mcp")
        if target is None:
            target = self._targets["mcp"] = mount.endpoint_target(
                self.owner,
                self.mcp_endpoint,
                self.mcp,
                max_body=self.max_body,
                any_host=None in self.hosts,
                steps=self.extra_steps("mcp"),
                stats=self.route_stats("mcp", "*"),
            )
        return [(m, path, target) for m in mount.ENDPOINT_METHODS]

    def metadata_target(self) -> Target | None:
        """The local target serving its MCP endpoint's Protected Resource Metadata, when the
        endpoint has a bound mcp-auth step (see mount.resource_metadata_target)."""
        mcp = self._targets.get("mcp")
        if mcp is None:
            return None
        found = self._targets.get("metadata")
        if found is None:
            found = mount.resource_metadata_target(self.owner, mcp.chain)
            if found is not None:
                self._targets["metadata"] = found
        return found

    def _make_target(self, operation: Operation | None) -> Target:
        validator = self.validators.get(id(operation)) if operation is not None else None
        steps: list[Step] = [ContractStep(validator)] if validator is not None else []
        steps += self.extra_steps("operation" if operation is not None else "prefix", operation)
        name = operation.operation_id if operation is not None else self.name
        own = self.config.operations.get(name) if operation is not None else None
        timeouts = own.timeouts if own is not None and own.timeouts is not None else _TIMEOUTS
        return Target.proxy(
            owner=self.owner,
            name=name,
            operation=operation,
            stats=self.route_stats(name, operation.method if operation is not None else "*"),
            replicas=self.replicas,
            steps=steps,
            host_header=self.host_header,
            upstream_path=self.upstream_path,
            strip_prefix=self.strip_prefix,
            max_body=self.max_body,
            read_timeout=timeouts.first_byte or self.read_timeout,
            connect_timeout=timeouts.connect or self.connect_timeout,
            idle_timeout=timeouts.idle or self.idle_timeout,
            total_timeout=timeouts.total or self.total_timeout,
            idempotent=own is not None and own.idempotent,
        )


class Snapshot:
    """Everything a request needs, fixed for the life of one config version."""

    __slots__ = (
        "balanced",
        "config",
        "consumers",
        "generation",
        "mcp_endpoints",
        "route_count",
        "router",
        "services",
        "tenant_header",
        "tenant_routers",
        "unrouted_chain",
        "version",
    )

    def __init__(
        self,
        config: GatewayConfig,
        router: Router,
        services: tuple[Service, ...],
        tenant_routers: dict[bytes, Router] | None = None,
    ) -> None:
        self.config = config
        self.router = router
        self.services = services
        # The services whose replicas need the clock (ejections ending): more than one.
        self.balanced: tuple[Replicas, ...] = tuple(
            s.replicas for s in services if s.replicas.count > 1
        )
        self.route_count = len(router)
        # With `tenancy.header`: lower-case tenant name -> that tenant's routes.
        self.tenant_routers = tenant_routers or {}
        header = config.tenancy.header
        self.tenant_header: bytes | None = header.lower().encode("ascii") if header else None
        self.version = config_version(config)
        self.generation = 0  # set by the gateway when it is swapped in
        self.consumers: dict[str, Consumer] = {}  # by name (plugins/build.py)
        # The log steps of requests no route took (a global access-log), or None.
        self.unrouted_chain: Chain | None = None
        # The MCP servers the gateway answers itself: told of tool changes at a swap.
        self.mcp_endpoints: tuple[McpEndpoint, ...] = tuple(
            s.mcp_endpoint for s in services if s.mcp_endpoint is not None
        )

    def service(self, name: str, tenant: str = "") -> Service | None:
        for service in self.services:
            if service.key == (tenant, name):
                return service
        return None


def config_version(config: GatewayConfig) -> str:
    """A short digest of the config's content: equal configs, equal versions (any process).

    Each service is digested on its own and its digest kept while the service is
    (configs checked again keep the services that did not change, see config.py):
    PERF: a change to one service of 1,000 encodes one, not all (~10 ms -> ~1 ms).
    """
    tenants = [
        (msgspec.structs.replace(t, services=[]), [_service_digest(s) for s in t.services])
        for t in config.tenants
    ]
    rest = msgspec.structs.replace(config, services=[], tenants=[])
    data = msgspec.to_builtins(rest)
    data.pop("base_dir", None)
    data["services"] = [_service_digest(s) for s in config.services]
    data["tenants"] = [{**msgspec.to_builtins(t), "services": digests} for t, digests in tenants]
    digest = hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return digest[:16]


# id(service config) -> (it, its digest); it is held so that its id is not reused.
# Bounded: emptied when full, like config.py's memo of services read.
_DIGESTS: dict[int, tuple[ServiceConfig, str]] = {}
_DIGESTS_SIZE = 20_000


def _service_digest(service: ServiceConfig) -> str:
    known = _DIGESTS.get(id(service))
    if known is not None and known[0] is service:
        return known[1]
    encoded = orjson.dumps(msgspec.to_builtins(service), option=orjson.OPT_SORT_KEYS)
    digest = hashlib.sha256(encoded).hexdigest()
    if len(_DIGESTS) >= _DIGESTS_SIZE:
        _DIGESTS.clear()
    _DIGESTS[id(service)] = (service, digest)
    return digest


class Pools:
    """Every upstream's pool, shared by all snapshots."""

    def __init__(self, loop: asyncio.AbstractEventLoop, clock: Clock, config: PoolConfig) -> None:
        self._loop = loop
        self._clock = clock
        self._config = config
        self._pools: dict[tuple[str, str, int], Pool] = {}
        # Retired pools still serving requests routed before their service went: swept
        # (a waiter's wait_timeout, a 503) and closed with the rest until they are empty.
        self._retired: list[Pool] = []

    def get(self, upstream: Upstream) -> Pool:
        key = (upstream.scheme, upstream.host, upstream.port)
        pool = self._pools.get(key)
        if pool is None:
            pool = Pool(self._loop, upstream, self._config, self._clock)
            self._pools[key] = pool
        return pool

    def all(self) -> tuple[Pool, ...]:
        return tuple(self._pools.values())

    def sweep(self, now: float) -> None:
        # A copy: a snapshot build on another thread may be adding a pool.
        for pool in tuple(self._pools.values()):
            pool.sweep(now)
        if self._retired:
            for pool in self._retired:
                pool.sweep(now)
            self._retired = [p for p in self._retired if p.open_count or p.waiting_count]

    def retire_unused(self, snapshot: Snapshot) -> list[str]:
        """Retire the pools no service of `snapshot` uses; their names.

        Requests routed before the swap may still be on their way to one: a
        retired pool goes on working for them, it only keeps no idle socket.
        """
        used = {id(pool) for service in snapshot.services for pool in service.pools}
        retired = []
        for key, pool in list(self._pools.items()):
            if id(pool) not in used:
                del self._pools[key]
                pool.retire()
                retired.append(pool.name)
                if pool.open_count or pool.waiting_count:
                    self._retired.append(pool)
        return retired

    def close(self) -> None:
        for pool in (*self._pools.values(), *self._retired):
            pool.close()
        self._retired = []


class SpecCache:
    """Specs loaded by earlier builds, reused while their source is unchanged.

    A file is known by (path, mtime, size, base_path), an inline spec by a
    digest of its content. Entries that the last build did not use are dropped.
    """

    def __init__(self) -> None:
        self._specs: dict[tuple[object, ...], Spec] = {}
        self._used: set[tuple[object, ...]] = set()
        # The services of the last build, by (tenant, name); reused when unchanged.
        self._services: dict[tuple[str, str], Service] = {}
        self._kept: dict[tuple[str, str], Service] = {}
        # Services compiled by the parent of `serve --workers N` before it forked
        # (preload.py), bound to no pool: a worker's first build takes what they
        # compiled instead of compiling each spec again, reading (and so copying,
        # page by page) the parent's parsed specs.
        self._compiled: dict[tuple[str, str], Service] = {}
        # What each service's hosts were worked out from, last build and this one.
        self._hosts_from: dict[tuple[str, str], tuple[object, ...]] = {}
        self._next_hosts_from: dict[tuple[str, str], tuple[object, ...]] = {}
        # Plugin steps that hold state (a limit's counters), by plugin, settings and level:
        # a build reuses the last one's when they are unchanged, so counters outlive reloads.
        self.stateful_steps: dict[tuple[str, str, bool, str], tuple[Step, ...]] = {}
        # Federation members' clients (their session with an MCP member, its tool list),
        # by what they reach: last build's and this one's. A new one per build opened a
        # new session on the member at every config change (an admin write, a reload)
        # and left the old one open: sessions piled up on members that keep them.
        self._remotes: dict[tuple[object, ...], RemoteTools] = {}
        self._next_remotes: dict[tuple[object, ...], RemoteTools] = {}

    def remote_tools(self, hosts: tuple[str | None, ...], path: str, reach: object) -> RemoteTools:
        """The last build's client of the MCP member at `path` on `hosts` (`reach`: what
        else decides where its requests go, its upstreams), else a new one."""
        key = (hosts, path, reach)
        found = self._next_remotes.get(key) or self._remotes.get(key)
        if found is None:
            found = RemoteTools(hosts, path)
        self._next_remotes[key] = found
        return found

    def service(
        self,
        config: ServiceConfig,
        spec: Spec | None,
        pools: tuple[Pool | None, ...],
        hosts: tuple[str | None, ...],
        tenant: str,
    ) -> Service | None:
        """The previous build's Service for this config, if nothing it depends on changed."""
        old = self._services.get((tenant, config.name))
        if (
            old is None
            or old.spec is not spec
            or old.hosts != hosts
            or len(old.pools) != len(pools)
            or any(a is not b for a, b in zip(old.pools, pools, strict=True))
            or (old.config is not config and old.config != config)
        ):
            return None
        self._kept[old.key] = old
        return old

    def precompile(self, service: Service, source: str) -> list[Problem]:
        """Compile `service` (bound to no pool) for a later build to adopt; its problems."""
        problems = service.compile(source)
        if not problems:
            self._compiled[service.key] = service
        return problems

    def compiled(
        self, config: ServiceConfig, spec: Spec | None, hosts: tuple[str | None, ...], tenant: str
    ) -> Service | None:
        """The precompiled Service for this config and spec, if any (taken once)."""
        old = self._compiled.pop((tenant, config.name), None)
        if (
            old is None
            or old.spec is not spec
            or old.hosts != hosts
            or (old.config is not config and old.config != config)
        ):
            return None
        return old

    def unchanged(
        self, config: ServiceConfig, tenant: str, hosts_from: tuple[object, ...], pool_for: PoolFor
    ) -> Service | None:
        """The last build's Service of a service without a spec, when nothing it is
        made of changed: the same config model, the same inputs of its hosts, the
        same pools. PERF: its upstreams, hosts and replicas are not worked out again
        (~3 us a service, every build of a config of many)."""
        old = self._services.get((tenant, config.name))
        if (
            old is None
            or old.config is not config
            or old.spec is not None
            or self._hosts_from.get(old.key) != hosts_from
        ):
            return None
        for url, pool in zip(config.upstreams, old.pools, strict=True):
            if pool_for(parse_upstream(url)) is not pool:
                return None
        self._kept[old.key] = old
        return old

    def hosts_from(self, key: ServiceKey, inputs: tuple[object, ...]) -> None:
        """What this build worked the service's hosts out from (see `unchanged`)."""
        self._next_hosts_from[key] = inputs

    def previous(self, key: ServiceKey) -> Service | None:
        """The last build's Service of that name, changed or not."""
        return self._services.get(key)

    def keep_service(self, service: Service) -> None:
        self._kept[service.key] = service

    def load(self, config: ServiceConfig, base_dir: str) -> Spec:
        openapi = config.openapi
        key: tuple[object, ...]
        if isinstance(openapi, dict):
            digest = hashlib.sha256(orjson.dumps(openapi, option=orjson.OPT_SORT_KEYS)).digest()
            key = ("inline", config.name, digest, config.base_path)
        else:
            assert openapi is not None
            path = os.path.join(base_dir, openapi)
            try:
                st = os.stat(path)
                key = ("file", path, st.st_mtime_ns, st.st_size, config.base_path)
            except OSError:
                key = ("missing", path)  # load_spec reports it
        self._used.add(key)
        spec = self._specs.get(key)
        if spec is None:
            if isinstance(openapi, dict):
                spec = load_spec_data(
                    openapi,
                    source=f"<service {config.name}>",
                    base_dir=base_dir,
                    base_path=config.base_path,
                )
            else:
                spec = load_spec(os.path.join(base_dir, str(openapi)), base_path=config.base_path)
            # Once per spec load (cached with it): what the loader did not look at,
            # as warnings that `check` and the admin API's answers show.
            spec = with_whole_check(spec)
            self._specs[key] = spec
        return spec

    def begin(self) -> None:
        self._used = set()
        self._kept = {}
        self._next_hosts_from = {}
        self._next_remotes = {}

    def commit(self) -> None:
        """Forget what the build that just succeeded did not use."""
        for key in list(self._specs):
            if key not in self._used:
                del self._specs[key]
        self._services, self._kept = self._kept, {}
        self._compiled = {}
        self._hosts_from, self._next_hosts_from = self._next_hosts_from, {}
        self._remotes, self._next_remotes = self._next_remotes, {}

    def __len__(self) -> int:
        return len(self._specs)


PoolFor = Callable[[Upstream], "Pool | None"]


def iter_services(config: GatewayConfig) -> Iterator[tuple[str, str, ServiceConfig]]:
    """(tenant name or "", JSON pointer, service) for every service of the config."""
    for index, service in enumerate(config.services):
        yield "", f"/services/{index}", service
    for t, tenant in enumerate(config.tenants):
        for index, service in enumerate(tenant.services):
            yield tenant.name, f"/tenants/{t}/services/{index}", service


def tenant_hosts(config: GatewayConfig, tenant: TenantConfig) -> list[str]:
    """The hosts a tenant is reached on: its own, or the `tenancy.host` template's."""
    if tenant.hosts:
        return list(tenant.hosts)
    template = config.tenancy.host
    if template:
        return [template.replace("{tenant}", tenant.name)]
    return []


def service_hosts(
    config: GatewayConfig, service: ServiceConfig, tenant: TenantConfig | None
) -> list[str | None]:
    """The host patterns a service's routes are added on; [None] is any Host."""
    hosts: list[str | None] = []
    explicit = [service.host] if isinstance(service.host, str) else list(service.host or ())
    hosts.extend(explicit)
    if tenant is not None:
        bases = tenant_hosts(config, tenant)
    else:
        bases = [config.base_domain] if config.base_domain else []
    if service.subdomain:
        label = service.name if service.subdomain is True else str(service.subdomain)
        hosts.extend(f"{label}.{base}" for base in bases)
    elif tenant is not None and not explicit:
        hosts.extend(bases)
    if not hosts and tenant is None:
        hosts.append(None)
    return list(dict.fromkeys(hosts))


def build_snapshot(
    config: GatewayConfig,
    pools: Pools | PoolFor,
    source: str = "<config>",
    specs: SpecCache | None = None,
    steps: StepSource | None = None,
    stats: StatsRegistry | None = None,
    *,
    resources: Resources | None = None,
) -> Snapshot:
    """Load every spec, build the route tables; SnapshotError lists every problem.

    `steps` gives each route the steps it has beyond the built-in ones (the
    contract check, MCP's); it must give the same steps for the same route
    every time: an unchanged service keeps its targets across builds.
    `resources` is what plugins keep running across builds (the gateway's; None
    for a build that serves nothing: plugins then start nothing).
    """
    pool_for: PoolFor = pools.get if isinstance(pools, Pools) else pools
    specs = specs if specs is not None else SpecCache()
    specs.begin()
    plugins = (
        PluginBuild(config, source, specs.stateful_steps, resources)
        if uses_plugins(config)
        else None
    )
    router = Router()
    header = config.tenancy.header
    tenant_routers: dict[bytes, Router] = (
        {t.name.lower().encode("ascii"): Router() for t in config.tenants} if header else {}
    )
    tenants = {t.name: t for t in config.tenants}
    services: list[Service] = []
    problems: list[Problem] = []
    metadata_targets: MetadataTargets = {}
    # What `service_hosts` reads beyond the service: its tenant's hosts, or base_domain.
    top_hosts_from: tuple[object, ...] = ("", config.base_domain)
    tenant_hosts_from = {
        t.name: (t.name, tuple(t.hosts), config.tenancy.host) for t in config.tenants
    }
    for tenant_name, where, service_config in iter_services(config):
        pause()  # let a waiting event loop run (on the build thread)
        hosts_from = tenant_hosts_from[tenant_name] if tenant_name else top_hosts_from
        kept = specs.unchanged(service_config, tenant_name, hosts_from, pool_for)
        if kept is not None:
            service = kept
            hosts = list(service.hosts)
        else:
            built = _build_service(
                config,
                tenants,
                tenant_name,
                where,
                service_config,
                pool_for,
                specs,
                source,
                problems,
            )
            if built is None:
                continue
            service, hosts = built
        specs.hosts_from(service.key, hosts_from)
        tenant = tenants.get(tenant_name) if tenant_name else None
        service.where = where
        service.use_steps(
            _route_steps(plugins, steps),
            plugins.service_digest(tenant_name, service.name) if plugins else "",
            stats,
        )
        services.append(service)
        try:
            _add_routes(router, service, hosts, services, metadata_targets)
            if tenant is not None and tenant_routers:
                explicit = service_config.host
                own: list[str | None] = (
                    [explicit] if isinstance(explicit, str) else [*explicit] if explicit else [None]
                )
                _add_routes(
                    tenant_routers[tenant_name.lower().encode("ascii")], service, own, services, {}
                )
        except SpecError as exc:
            problems.extend(p for p in exc.problems if p.severity == "error")
            problems.append(
                Problem(
                    source,
                    f"{where}/openapi",
                    f"service {service.label!r}: its spec can not be used",
                    "see the problems above",
                )
            )
        except TemplateError as exc:
            problems.append(Problem(source, f"{where}/host", str(exc), "check the host pattern"))
        except _Conflict as exc:
            problems.append(Problem(source, where, str(exc), exc.hint))
    virtual: list[McpEndpoint] = []
    for index, server in enumerate(config.mcp_servers):
        server_hosts: tuple[str | None, ...] = (
            (server.host,) if isinstance(server.host, str) else tuple(server.host or ()) or (None,)
        )
        server_steps: list[Step] = []
        if plugins is not None:
            server_steps = plugins.bind_endpoint(
                plugins.server_steps(index), server.path, server_hosts
            )
        if steps is not None:
            server_steps += steps(
                RouteInfo(server.name, "", "virtual", None, server.path, server_hosts)
            )
        try:
            virtual.append(
                _add_virtual_server(
                    router,
                    server,
                    services,
                    specs,
                    f"/mcp_servers/{index}",
                    server_steps,
                    stats.get(server.name, "mcp", "*") if stats is not None else None,
                    metadata_targets,
                )
            )
        except _Conflict as exc:
            problems.append(Problem(source, f"/mcp_servers/{index}", str(exc), exc.hint))
        except TemplateError as exc:
            problems.append(
                Problem(source, f"/mcp_servers/{index}/host", str(exc), "check the host pattern")
            )
    try:
        _add_root_metadata(router, metadata_targets)
    except _Conflict as exc:
        problems.append(Problem(source, "", str(exc), exc.hint))
    unrouted = plugins.unrouted_steps() if plugins is not None else []
    if plugins is not None:
        problems.extend(plugins.problems)  # (steps are made while routes are added)
    if problems:
        raise SnapshotError(problems)
    router.compile()
    for tenant_router in tenant_routers.values():
        tenant_router.compile()
    specs.commit()
    specs.stateful_steps = plugins.stateful_steps() if plugins is not None else {}
    snapshot = Snapshot(config, router, tuple(services), tenant_routers)
    snapshot.mcp_endpoints += tuple(virtual)
    snapshot.consumers = plugins.consumers if plugins is not None else {}
    snapshot.unrouted_chain = Chain(unrouted) if unrouted else None
    return snapshot


def _build_service(
    config: GatewayConfig,
    tenants: dict[str, TenantConfig],
    tenant_name: str,
    where: str,
    service_config: ServiceConfig,
    pool_for: PoolFor,
    specs: SpecCache,
    source: str,
    problems: list[Problem],
) -> tuple[Service, list[str | None]] | None:
    """A service of the build (the last build's when nothing it is made of changed)
    and its hosts; None after adding to `problems` why it can not be built."""
    tenant = tenants.get(tenant_name) if tenant_name else None
    try:
        upstreams = [parse_upstream(url) for url in service_config.upstreams]
    except ValueError as exc:
        problems.append(Problem(source, f"{where}/upstream", str(exc), ""))
        return None
    if service_config.kind == "mcp" and len({u.path for u in upstreams}) > 1:
        problems.append(
            Problem(
                source,
                f"{where}/upstream",
                "the replicas of an MCP server have different paths",
                "serve the MCP endpoint at one path on every replica",
            )
        )
        return None
    hosts = service_hosts(config, service_config, tenant)
    replicas = tuple(pool_for(u) for u in upstreams)
    try:
        spec = (
            specs.load(service_config, config.base_dir)
            if service_config.openapi is not None
            else None
        )
    except SpecError as exc:
        problems.extend(p for p in exc.problems if p.severity == "error")
        label = f"{tenant_name}/{service_config.name}" if tenant_name else service_config.name
        problems.append(
            Problem(
                source,
                f"{where}/openapi",
                f"service {label!r}: its spec can not be used",
                "see the problems above",
            )
        )
        return None
    service = specs.service(service_config, spec, replicas, tuple(hosts), tenant_name)
    if service is None:
        service = Service(
            service_config,
            replicas,
            config,
            tenant=tenant_name,
            where=where,
            hosts=tuple(hosts),
        )
        service.spec = spec
        previous = specs.previous(service.key)
        if previous is not None:
            # A changed service keeps what it knew of its replicas' health.
            service.replicas.adopt(previous.replicas, service_config.health_check is not None)
        compiled = specs.compiled(service_config, spec, service.hosts, tenant_name)
        if compiled is not None:
            service.take_compiled(compiled)
        else:
            contract_problems = service.compile(source)
            if contract_problems:
                problems.extend(contract_problems)
                return None
        specs.keep_service(service)
    problems.extend(_operation_problems(service, source))
    return service, hosts


def uses_plugins(config: GatewayConfig) -> bool:
    """Whether any level of the config names a plugin or a consumer."""
    return bool(
        config.plugins
        or metrics_on(config)
        or config.access_log
        or config.consumers
        or config.custom_plugins
        or any(s.plugins or s.operations for _, _, s in iter_services(config))
        or any(v.plugins for v in config.mcp_servers)
    )


def _route_steps(plugins: PluginBuild | None, extra: StepSource | None) -> StepSource | None:
    """The steps a service's route gets: its plugins', then the embedder's source's."""
    if plugins is None:
        return extra

    def steps(route: RouteInfo) -> Sequence[Step]:
        op_id = route.operation.operation_id if route.operation is not None else None
        found = plugins.service_steps(route.tenant, route.service, op_id, route.kind)
        if route.kind == "mcp" and route.path is not None:
            found = plugins.bind_endpoint(found, route.path, route.hosts)
        return [*found, *extra(route)] if extra is not None else found

    return steps


def _operation_problems(service: Service, source: str) -> list[Problem]:
    """`operations:` entries naming no operation of the service's spec."""
    named = service.config.operations
    if not named:
        return []
    known = {op.operation_id for op in service.spec.operations} if service.spec else set()
    problems = []
    for op_id in named:
        if op_id not in known:
            close = difflib.get_close_matches(op_id, known, n=1)
            problems.append(
                Problem(
                    source,
                    join(service.where, "operations", op_id),
                    f"the spec has no operation {op_id!r}",
                    f"did you mean {close[0]!r}?" if close else "use an operationId of the spec",
                )
            )
    return problems


def check_routes(
    config: GatewayConfig, source: str = "<config>", notes: list[str] | None = None
) -> list[Problem]:
    """Every spec and route problem of a config (errors and warnings), without serving it.

    With `notes`, each service's validation summary is appended to it: how
    many operations are checked, and which use the fallback validator.
    """
    try:
        snapshot = build_snapshot(config, lambda _upstream: None, source)
    except SnapshotError as exc:
        return exc.problems
    warnings: list[Problem] = []
    for service in snapshot.services:
        warnings.extend(service.notes)
        if notes is not None and service.mcp_endpoint is not None and service.mcp_tools:
            notes.append(
                f"service {service.label!r}: {len(service.mcp_tools)} MCP tools"
                f" at {service.mcp_path}"
            )
        elif notes is not None and service.config.kind == "mcp":
            notes.append(f"service {service.label!r}: MCP server proxied at {service.mcp_path}")
        if service.spec is not None:
            warnings.extend(service.spec.warnings)
            if notes is not None:
                notes.extend(
                    contract_summary(f"service {service.label!r}", service.validators.values())
                )
    return warnings


def _add_virtual_server(
    router: Router,
    server: VirtualServerConfig,
    services: list[Service],
    specs: SpecCache,
    where: str,
    steps: Sequence[Step],
    stats: RouteStats | None,
    metadata_targets: MetadataTargets,
) -> McpEndpoint:
    by_name = {s.name: s for s in services if not s.tenant}
    members: list[Member] = []
    for member in server.members:
        service = by_name[member.service]  # the config check made sure it exists
        prefix = member.prefix if member.prefix is not None else f"{service.name}_"
        if service.config.kind == "mcp":
            path = service.mcp_path
            assert path is not None  # (an MCP service has its endpoint's path)
            remote = specs.remote_tools(service.hosts, path, tuple(service.config.upstreams))
            members.append(mount.member(service.label, service.hosts, prefix, remote=remote))
            continue
        if service.mcp_tools is None:
            service.compile_tools(where, force=True)
        if service.mcp_tools is not None:
            members.append(
                mount.member(service.label, service.hosts, prefix, tools=service.mcp_tools)
            )
    endpoint, target = mount.virtual_server(server, members, steps, stats)
    hosts: list[str | None] = (
        [server.host] if isinstance(server.host, str) else list(server.host or ()) or [None]
    )
    metadata = mount.resource_metadata_target(target.owner, target.chain)
    for host in hosts:
        for method in mount.ENDPOINT_METHODS:
            try:
                router.add(method, server.path, target, host)
            except RouteConflict as exc:
                raise _Conflict(
                    f"virtual MCP server {server.name!r}: {exc}",
                    "give it another path or host",
                ) from None
        if metadata is not None:
            _add_metadata(router, server.path, metadata, host, metadata_targets)
    return endpoint


MetadataTargets = dict[str | None, list[Target]]
"""host -> the Protected Resource Metadata targets of the MCP endpoints on it (mcp-auth)."""


def _add_metadata(
    router: Router, path: str, metadata: Target, host: str | None, metadata_targets: MetadataTargets
) -> None:
    """An MCP endpoint's metadata at its path-suffixed well-known URL (RFC 9728 §3.1)."""
    route = mount.WELL_KNOWN_RESOURCE + path.rstrip("/")
    try:
        router.add("GET", route, metadata, host)
    except RouteConflict as exc:
        raise _Conflict(
            f"the resource metadata of the MCP endpoint {path}: {exc}",
            "give the endpoint another path or host",
        ) from None
    metadata_targets.setdefault(host, []).append(metadata)


def _add_root_metadata(router: Router, metadata_targets: MetadataTargets) -> None:
    """The well-known URL without a path: on a host with one protected MCP endpoint only
    (with several, clients follow each endpoint's WWW-Authenticate, or its own path)."""
    for host, targets in metadata_targets.items():
        if len({id(t) for t in targets}) == 1:
            try:
                router.add("GET", mount.WELL_KNOWN_RESOURCE, targets[0], host)
            except RouteConflict as exc:
                raise _Conflict(
                    f"the resource metadata at {mount.WELL_KNOWN_RESOURCE}: {exc}",
                    "remove the other route at this path",
                ) from None


class _Conflict(Exception):
    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def _add_routes(
    router: Router,
    service: Service,
    hosts: list[str | None],
    built: list[Service],
    metadata_targets: MetadataTargets | None = None,
) -> None:
    config = service.config
    mcp_routes = service.mcp_targets()
    metadata = service.metadata_target() if metadata_targets is not None else None
    for host in hosts:
        try:
            if service.spec is not None:
                add_planned(router, service.spec, service.route_plan(), host)
            if config.prefix is not None:
                prefix = config.prefix.rstrip("/")
                # A prefix route matches the prefix itself and everything under it.
                router.add("*", f"{prefix}/*", service.target(None), host)
        except RouteConflict as exc:
            raise _conflict(service, exc.existing.target, str(exc), built) from None
        for method, path, target in mcp_routes:
            try:
                router.add(method, path, target, host)
            except RouteConflict as exc:
                if config.kind == "mcp" or service.mcp.path is not None:
                    raise _conflict(service, exc.existing.target, str(exc), built) from None
                # The tools endpoint's default path is taken (by the spec, or a
                # service on the same host and base path): go without it.
                note = Problem(
                    "<config>",
                    join(service.where, "mcp", "path"),
                    f"service {service.label!r}: no MCP endpoint at {path}, the path is taken",
                    "give mcp.path, or set mcp.enabled: false",
                    severity="warning",
                )
                if note not in service.notes:  # the Service lives on across rebuilds
                    service.notes.append(note)
                metadata = None
                break
        if metadata is not None and metadata_targets is not None:
            _add_metadata(router, service.mcp_path, metadata, host, metadata_targets)


def _conflict(service: Service, other: object, detail: str, built: list[Service]) -> _Conflict:
    if isinstance(other, Target) and other.owner is not service.owner:
        theirs = next((s for s in built if s.owner is other.owner), None)
        named = (
            f"service {theirs.label!r} ({theirs.where})"
            if theirs is not None
            else f"MCP server {other.owner.label!r}"
        )
        return _Conflict(
            f"service {service.label!r} has a route that {named} already has: {detail}",
            "give one of them another host, prefix or base_path",
        )
    return _Conflict(f"service {service.label!r}: {detail}", "remove one of the two routes")
