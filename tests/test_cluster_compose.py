"""A worker's config from the agent's hand-off: `compose_changed` (only the services
that changed read again) gives what `compose` of the whole store gives, and
declines (None) whatever it does not handle. Pure logic: no etcd, no sockets."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cluster_helpers import node_config

from runmcp_fast.cluster.compose import compose, compose_changed
from runmcp_fast.cluster.layout import Layout
from runmcp_fast.config import GatewayConfig, config_from_data
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
    made = compose_changed(node, "node.yaml", LAYOUT, (served, BASE), objects, spec_path)
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
    assert compose_changed(node, "node.yaml", LAYOUT, (served, BASE), objects, spec_path) is None


def test_a_service_with_a_problem_is_left_to_the_whole_compose(node: GatewayConfig) -> None:
    served = whole(node, BASE)
    objects = dict([*BASE.items(), service("bad", upstream="not a url")])
    assert compose_changed(node, "node.yaml", LAYOUT, (served, BASE), objects, spec_path) is None
    with pytest.raises(ConfigError):
        whole(node, objects)
