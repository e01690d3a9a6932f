"""`check_change` (the admin API's check before a config-store write) gives the
verdict of `compile_config`: the same problems, or none. Pure logic."""

from __future__ import annotations

from typing import Any

import pytest

from runmcp_fast.config import GatewayConfig, config_from_data
from runmcp_fast.control import Overlay, check_change, compile_config
from runmcp_fast.problems import ConfigError

SOURCE = "<admin API>"


@pytest.fixture(scope="module")
def base() -> GatewayConfig:
    services = [
        {"name": f"s{i}", "upstream": "http://127.0.0.1:9", "prefix": f"/s{i}"} for i in range(5)
    ]
    services.append({"name": "m", "upstream": "http://127.0.0.1:9/mcp", "kind": "mcp"})
    data = {
        "listeners": [{"address": "127.0.0.1:0"}],
        "services": services,
        "mcp_servers": [{"name": "v", "members": [{"service": "m"}], "path": "/v"}],
        "tenants": [{"name": "t", "hosts": ["t.example.com"]}],
    }
    return config_from_data(data, source="gw.yaml", base_dir="/tmp")


def verdict(fn: Any, base: GatewayConfig, overlay: Overlay) -> list[Any]:
    try:
        fn(base, overlay, SOURCE)
    except ConfigError as exc:
        return exc.problems
    return []


def service(name: str, **extra: Any) -> dict[str, Any]:
    return {"upstream": "http://127.0.0.1:9", "prefix": f"/{name}", **extra}


@pytest.mark.parametrize(
    "services",
    [
        {"new": service("new")},
        {"s2": service("s2", upstream="http://127.0.0.1:10")},
        {"s3": None},
        {"gone": None},
        {"s1": None, "x": service("x"), "s4": service("s4", prefix="/four")},
        {"bad": service("bad", upstream="not a url")},
        {"bad": service("bad", prefix=5)},
        {"bad": service("bad", unknown_key=1)},
        {"s0": service("s0", prefix="no slash")},
        {"m": None},  # a virtual MCP server names it
        {"t/ts": service("ts")},
    ],
)
def test_the_verdict_of_compile_config(base: GatewayConfig, services: dict[str, Any]) -> None:
    overlay = Overlay(services=services)
    assert verdict(check_change, base, overlay) == verdict(compile_config, base, overlay)


def test_a_problem_is_found(base: GatewayConfig) -> None:
    problems = verdict(check_change, base, Overlay(services={"m": None}))
    assert any("no top-level service named 'm'" in p.message for p in problems), problems
