"""A config compiled for traffic: services with their pools, and the route table.

A `Snapshot` is immutable once built; a config change builds a new one and
the gateway swaps one reference (requests in flight keep the one they began
with). Pools outlive snapshots: they are keyed by upstream and shared.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from runmcp_fast._dataplane import Clock, Pool, Target
from runmcp_fast.config import GatewayConfig, PoolConfig, ServiceConfig, Upstream, parse_upstream
from runmcp_fast.openapi import Operation, SpecError, add_spec_routes, load_spec
from runmcp_fast.openapi.errors import Problem
from runmcp_fast.router import Router, TemplateError


class Service:
    """One upstream service: its config, its pool, its settings with defaults applied."""

    __slots__ = (
        "config",
        "connect_timeout",
        "host_header",
        "max_body",
        "name",
        "pool",
        "read_timeout",
        "strip_prefix",
        "upstream",
        "upstream_path",
    )

    def __init__(self, config: ServiceConfig, pool: Pool, defaults: GatewayConfig) -> None:
        # Its own URL: the pool's is that of the first service on the same host and port.
        upstream = parse_upstream(config.upstream)
        self.config = config
        self.name = config.name
        self.pool = pool
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
        self.connect_timeout = config.connect_timeout or defaults.pool.connect_timeout
        self.read_timeout = config.read_timeout or defaults.pool.read_timeout

    def target(self, operation: Operation | None) -> Target:
        """The router target for one of its operations (None: its prefix route)."""
        return Target(
            self,
            operation,
            self.pool,
            self.host_header,
            self.upstream_path,
            self.strip_prefix,
            self.max_body,
            self.read_timeout,
            self.connect_timeout,
        )


class Snapshot:
    __slots__ = ("config", "route_count", "router", "services")

    def __init__(self, config: GatewayConfig, router: Router, services: tuple[Service, ...]):
        self.config = config
        self.router = router
        self.services = services
        self.route_count = len(router)


class Pools:
    """Every upstream's pool, shared by all snapshots."""

    def __init__(self, loop: asyncio.AbstractEventLoop, clock: Clock, config: PoolConfig) -> None:
        self._loop = loop
        self._clock = clock
        self._config = config
        self._pools: dict[tuple[str, str, int], Pool] = {}

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
        for pool in self._pools.values():
            pool.sweep(now)

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()


class SnapshotError(Exception):
    """A config whose services can not be compiled; `problems` names each cause."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def build_snapshot(config: GatewayConfig, pools: Pools, source: str = "<config>") -> Snapshot:
    """Load every spec, build the route table; SnapshotError lists every problem."""
    router = Router()
    services: list[Service] = []
    problems: list[Problem] = []
    for index, service_config in enumerate(config.services):
        where = f"/services/{index}"
        upstream = parse_upstream(service_config.upstream)
        service = Service(service_config, pools.get(upstream), config)
        services.append(service)
        try:
            _add_routes(router, service, config.base_dir)
        except SpecError as exc:
            problems.extend(p for p in exc.problems if p.severity == "error")
            problems.append(
                Problem(
                    source,
                    f"{where}/openapi",
                    f"service {service_config.name!r}: its spec can not be used",
                    "see the problems above",
                )
            )
        except TemplateError as exc:
            problems.append(Problem(source, f"{where}/host", str(exc), "check the host pattern"))
    if problems:
        raise SnapshotError(problems)
    router.compile()
    return Snapshot(config, router, tuple(services))


def _add_routes(router: Router, service: Service, base_dir: str) -> None:
    config = service.config
    if config.openapi is not None:
        spec_path = Path(base_dir, config.openapi)
        spec = load_spec(spec_path, base_path=config.base_path)

        add_spec_routes(router, spec, target=service.target, host=config.host)
    if config.prefix is not None:
        prefix = config.prefix.rstrip("/")
        # A prefix route matches the prefix itself and everything under it.
        router.add("*", f"{prefix}/*", service.target(None), config.host)
