"""A worker's config from the agent's hand-off: `compose_changed` (only the services
that changed read again) gives what `compose` of the whole store gives, and
declines (None) whatever it does not handle. Pure logic: no etcd, no sockets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cluster_helpers import node_config

from runmcp_fast.cluster import agent as agent_module
from runmcp_fast.cluster.agent import ConfigAgent
from runmcp_fast.cluster.cache import CachedState, DiskCache
from runmcp_fast.cluster.compose import compose, compose_changed
from runmcp_fast.cluster.etcd_client import KeyValue
from runmcp_fast.cluster.layout import Layout, StoreState, cluster_config
from runmcp_fast.config import GatewayConfig, check_config, config_from_data
from runmcp_fast.problems import ConfigError

PREFIX = "/c"
LAYOUT = Layout(PREFIX)


def spec_path(digest: str) -> str:
    return f"/specs/{digest}.json"


@pytest.fixture(scope="module")
def node() -> GatewayConfig:
    data = node_config(["http://127.0.0.1:1"], PREFIX, "n", cache_dir="c")
    return config_from_data(data, source="node.yaml", base_dir="/tmp")


def service(name: str, **extra: Any) -> tuple[str, str]:
    value = {"upstream": "http://127.0.0.1:9", "prefix": f"/{name}", **extra}
    return f"{PREFIX}/services/{name}", json.dumps(value)


def whole(node: GatewayConfig, objects: dict[str, str]) -> GatewayConfig:
    items = {k.encode(): v.encode() for k, v in objects.items()}
    return compose(node, "node.yaml", LAYOUT, items, spec_path)


BASE = dict(
    [service(f"s{i}") for i in range(20)]
    + [
        (f"{PREFIX}/settings", json.dumps({"base_domain": "example.com"})),
        (f"{PREFIX}/tenants/t", json.dumps({"hosts": ["t.example.com"]})),
        service("x", subdomain=True),
        (
            f"{PREFIX}/tenants/t/services/ts",
            json.dumps({"upstream": "http://h:1", "prefix": "/ts"}),
        ),
        (f"{PREFIX}/nodes/n", "{}"),
    ]
)


@pytest.mark.parametrize(
    "change",
    [
        {"add": [service("new")]},
        {"add": [service("a0"), service("zz", subdomain=True)]},
        {"add": [service("s3", upstream="http://127.0.0.1:10")]},
        {"remove": [f"{PREFIX}/services/s7"]},
        {"add": [service("s1", prefix="/other")], "remove": [f"{PREFIX}/services/s2"]},
        {"add": [(f"{PREFIX}/nodes/n", '{"applied": 3}')]},
        {},
    ],
)
def test_only_the_services_that_changed_are_read(
    node: GatewayConfig, change: dict[str, Any]
) -> None:
    objects = dict(BASE)
    objects.update(change.get("add", []))
    for key in change.get("remove", []):
        objects.pop(key)
    served = whole(node, BASE)
    made = compose_changed("node.yaml", LAYOUT, (served, BASE), objects, spec_path)
    assert made is not None
    assert made == whole(node, objects)
    # The services that did not change are the models already served.
    kept = {s.name: s for s in served.services}
    for made_service in made.services:
        if made_service.name in kept and made_service == kept[made_service.name]:
            assert made_service is kept[made_service.name]


@pytest.mark.parametrize(
    "key, value",
    [
        (f"{PREFIX}/settings", json.dumps({"base_domain": "example.org"})),
        (f"{PREFIX}/tenants/t", json.dumps({"hosts": ["u.example.com"]})),
        (
            f"{PREFIX}/tenants/t/services/ts",
            json.dumps({"upstream": "http://h:2", "prefix": "/ts"}),
        ),
        (f"{PREFIX}/plugins/cors", "{}"),
        (f"{PREFIX}/consumers/c", json.dumps({"credentials": {}})),
    ],
)
def test_anything_but_a_top_level_service_is_composed_whole(
    node: GatewayConfig, key: str, value: str
) -> None:
    served = whole(node, BASE)
    objects = {**BASE, key: value}
    assert compose_changed("node.yaml", LAYOUT, (served, BASE), objects, spec_path) is None


def test_a_service_that_can_not_be_read_is_left_to_the_whole_compose(
    node: GatewayConfig,
) -> None:
    served = whole(node, BASE)
    for bad in (service("bad", prefix=5), (f"{PREFIX}/services/bad", "[1]")):
        objects = dict([*BASE.items(), bad])
        assert compose_changed("node.yaml", LAYOUT, (served, BASE), objects, spec_path) is None
        with pytest.raises(ConfigError):
            whole(node, objects)


def test_the_whole_config_checks_are_not_run(node: GatewayConfig) -> None:
    """A worker trusts its agent's check; the agent runs check_config on the result."""
    served = whole(node, BASE)
    objects = dict([*BASE.items(), service("bad", upstream="not a url")])
    made = compose_changed("node.yaml", LAYOUT, (served, BASE), objects, spec_path)
    assert made is not None
    assert check_config(made, "node.yaml") != []
    with pytest.raises(ConfigError):
        whole(node, objects)


def test_the_agent_checks_a_change_of_services_whole(
    node: GatewayConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent reads only the services that changed, but checks the config whole:
    deleting a service a virtual MCP server names is refused, naming the setting."""
    store = node.config_store
    assert store is not None
    cache = DiskCache(str(tmp_path), PREFIX)
    agent = ConfigAgent(store, node, "node.yaml", cache, _NoSink(), node_id="n")  # type: ignore[arg-type]
    settings = {
        "base_domain": "example.com",
        "mcp_servers": [{"name": "v", "members": [{"service": "m"}], "path": "/v"}],
    }
    objects = dict(BASE)
    objects[f"{PREFIX}/settings"] = json.dumps(settings)
    objects.update([service("m", kind="mcp", prefix=None)])

    def check(objects: dict[str, str]) -> GatewayConfig:
        kvs = [KeyValue(k.encode(), v.encode(), 1) for k, v in objects.items()]
        candidate = CachedState(1, objects)
        config, _ = agent._check(StoreState(1, kvs), candidate)
        agent._checked = (config, objects)
        return config

    first = check(objects)
    whole_reads = []

    def counted(*args: Any) -> Any:
        whole_reads.append(1)
        return cluster_config(*args)

    monkeypatch.setattr(agent_module, "cluster_config", counted)
    changed = {**objects, **dict([service("s5", prefix="/five")])}
    assert check(changed) == whole(node, changed) != first
    assert whole_reads == []  # only the changed service was read
    gone = dict(changed)
    gone.pop(f"{PREFIX}/services/m")
    with pytest.raises(ConfigError) as refused:
        check(gone)
    assert whole_reads == [1]  # the problem found, the whole way names its key
    assert any(
        p.file == f"etcd:{PREFIX}/settings" and "no top-level service named 'm'" in p.message
        for p in refused.value.problems
    ), refused.value.problems


class _NoSink:
    pass
