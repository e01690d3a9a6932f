"""Specs parsed once by the parent of `serve --workers N`, before it forks.

Each worker builds its own snapshot, and parsing a big spec (GitHub's is ~10 MB
of JSON, Microsoft Graph's much more) in every worker multiplies its memory by
N. The parent parses the specs of the config file once; each forked worker
finds them in the SpecCache it starts with, and their pages stay shared with
the parent (copy-on-write, frozen out of the cycle collector's reach) for as
long as nothing writes to them. A spec that fails to parse is left for the
worker to report, as without a preload.
"""

from __future__ import annotations

import gc

from runmcp_fast.config import GatewayConfig
from runmcp_fast.openapi import SpecError
from runmcp_fast.snapshot import SpecCache, iter_services

_preloaded: SpecCache | None = None


def preload_specs(config: GatewayConfig) -> int:
    """Parse the specs `config` names (files and inline); how many were parsed."""
    global _preloaded
    cache = SpecCache()
    for _, _, service in iter_services(config):
        if service.openapi is None:
            continue
        try:
            cache.load(service, config.base_dir)
        except (SpecError, OSError, ValueError):
            continue
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
