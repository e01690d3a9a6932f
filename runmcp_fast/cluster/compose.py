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
    cluster_config,
    relocate,
)
from runmcp_fast.config import ConfigStoreConfig, GatewayConfig, config_from_data
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
