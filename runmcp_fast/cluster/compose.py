"""A node's whole config: its own file's settings plus the cluster's objects from etcd.

One function for the agent (which checks a change before handing it on) and
for the workers (which build it), so both see the same config and the same
problems, each pointing at the etcd key its value came from.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

import msgspec

from runmcp_fast.cluster.layout import (
    CLUSTER_KEYS,
    ClusterConfig,
    Layout,
    Ref,
    cluster_config,
    relocate,
)
from runmcp_fast.config import ConfigStoreConfig, GatewayConfig, config_from_data, read_services
from runmcp_fast.problems import ConfigError, Problem


def node_data(node: GatewayConfig) -> dict[str, Any]:
    """The node's file without the keys that come from the store."""
    data: dict[str, Any] = msgspec.to_builtins(node)
    data.pop("base_dir", None)
    for key in CLUSTER_KEYS:
        data.pop(key, None)
    return data


def compose(
    node: GatewayConfig,
    source: str,
    layout: Layout,
    items: dict[bytes, bytes],
    spec_path: Callable[[str], str],
) -> GatewayConfig:
    """The node's config with the store's objects; ConfigError names every problem
    (with the etcd key, the pointer into its value and a hint)."""
    return compose_cluster(node, source, layout, cluster_config(layout, items, spec_path))


def compose_cluster(
    node: GatewayConfig, source: str, layout: Layout, cluster: ClusterConfig
) -> GatewayConfig:
    """`compose` of the store's objects already read (`cluster_config`)."""
    problems = list(cluster.problems)
    data = {**node_data(node), **cluster.data}
    try:
        config = config_from_data(data, source=source, base_dir=node.base_dir)
    except ConfigError as exc:
        problems += [relocate(p, cluster.origins, layout, source) for p in exc.problems]
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    return config


def empty(node: GatewayConfig, source: str) -> GatewayConfig:
    """The node's config before the store answered: no services."""
    return config_from_data(node_data(node), source=source, base_dir=node.base_dir)


def node_problems(node: GatewayConfig, source: str) -> list[Problem]:
    """A node's file that also holds cluster objects: they would be ignored, so refuse."""
    defaults = GatewayConfig(listeners=[])
    return [
        Problem(
            source,
            f"/{key}",
            f"with config_store, {key} comes from etcd, not from the node's file",
            f"put it in the store (runmcp-fast apply {source}) and remove it here",
        )
        for key in CLUSTER_KEYS
        if getattr(node, key) != getattr(defaults, key)
    ]


def node_id(store: ConfigStoreConfig) -> str:
    return store.node_id or os.environ.get("RUNMCP_NODE_ID") or socket.gethostname()


def cache_dir(store: ConfigStoreConfig, config_path: str | None, base_dir: str) -> str | None:
    """Where the node keeps its disk cache (None: no cache)."""
    if not store.cache:
        return None
    if store.cache_dir:
        return os.path.join(base_dir, store.cache_dir)
    if config_path is None:
        return None
    return config_path + ".etcd-cache"


def compose_changed(
    source: str,
    layout: Layout,
    served: tuple[GatewayConfig, dict[str, str]],
    objects: dict[str, str],
    spec_path: Callable[[str], str],
) -> GatewayConfig | None:
    """The config of `objects`, made from `served` (a config and the objects it was
    composed from) when only top-level services differ; None when something else
    changed, or a changed service can not be read (then `compose` it whole).

    Only the services that changed are read (the same models `compose` makes); the
    others' models are kept. The whole config's checks are not run: the agent runs
    `check_config` on the result, a worker trusts the agent, which checked the same
    objects whole. PERF: a change of one service of 1,000 read in ~0.5 ms instead
    of ~5 ms, in the agent and in every worker of every node.
    """
    config, before = served
    changed = [key for key, value in objects.items() if before.get(key) != value]
    changed += [key for key in before if key not in objects]
    for key in changed:
        ref = layout.parse(key.encode())
        if ref is None or ref.kind in ("specs", "spec-part", "nodes"):
            continue  # not a part of the config (cluster_config skips them too)
        if ref.kind != "services" or ref.tenant:
            return None
    refs = {key: layout.parse(key.encode()) for key in objects}
    names = sorted(key for key, ref in refs.items() if ref is not None and _top_service(ref))
    items = {key.encode(): objects[key].encode() for key in changed if key in objects}
    cluster = cluster_config(layout, items, spec_path)
    if cluster.problems:
        return None
    try:
        fresh = {s.name: s for s in read_services(cluster.data["services"], source)}
    except ConfigError:
        return None
    kept = {service.name: service for service in config.services}
    services = []
    for key in names:
        ref = refs[key]
        assert ref is not None
        service = fresh.get(ref.name) or kept.get(ref.name)
        if service is None:
            return None
        services.append(service)
    return msgspec.structs.replace(config, services=services)


def _top_service(ref: Ref) -> bool:
    return ref.kind == "services" and not ref.tenant
