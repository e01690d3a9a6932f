"""Specs parsed and compiled once by the parent of `serve --workers N`, before it forks.

Each worker builds its own snapshot, and parsing a big spec (GitHub's is ~10 MB
of JSON, Microsoft Graph's much more) and compiling its contracts and MCP tools
in every worker multiplies that memory by N. The parent does both once for the
services of the config file: each forked worker finds the parsed specs in the
SpecCache it starts with, and each service's compiled validators and tools
there too (SpecCache.compiled), so its first build only binds them to its own
pools and adds the routes. Those pages stay shared with the parent
(copy-on-write, frozen out of the cycle collector's reach) for as long as
nothing writes to them: a worker that compiled a spec itself would read all of
it, and every object it reads gets its reference count written, which copies
the page. A spec that fails to parse or compile is left for the worker to
report, as without a preload.
"""

from __future__ import annotations

import gc

from runmcp_fast.config import GatewayConfig
from runmcp_fast.openapi import SpecError
from runmcp_fast.problems import DocumentError
from runmcp_fast.snapshot import Service, SpecCache, iter_services, service_hosts

_preloaded: SpecCache | None = None


def preload_specs(config: GatewayConfig, source: str = "<config>") -> int:
    """Parse the specs `config` names (files and inline) and compile their services;
    how many specs were parsed."""
    global _preloaded
    cache = SpecCache()
    tenants = {t.name: t for t in config.tenants}
    for tenant_name, where, service_config in iter_services(config):
        if service_config.openapi is None:
            continue
        try:
            spec = cache.load(service_config, config.base_dir)
        except (SpecError, OSError, ValueError):
            continue
        try:
            service = Service(
                service_config,
                (None,) * len(service_config.upstreams),  # each worker binds its own pools
                config,
                tenant=tenant_name,
                where=where,
                hosts=tuple(service_hosts(config, service_config, tenants.get(tenant_name))),
            )
            service.spec = spec
            cache.precompile(service, source)
        except (DocumentError, SpecError, ValueError):
            continue  # the worker's build reports it
    # Collected and frozen now: no collection in a worker touches (and copies) them.
    gc.collect()
    gc.freeze()
    _preloaded = cache
    return len(cache)


def take_specs() -> SpecCache:
    """The preloaded SpecCache (once per process), or a new one."""
    global _preloaded
    cache, _preloaded = _preloaded, None
    return cache if cache is not None else SpecCache()
