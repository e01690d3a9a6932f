"""A service read by msgspec at once (`_read_whole`) is the model the piece-by-piece
reader makes; a problem still gets the reader's report; a changed value is read anew."""

from __future__ import annotations

from typing import Any

import pytest

from runmcp_fast import config as config_module
from runmcp_fast.config import (
    ConfigError,
    GatewayConfig,
    LimitsConfig,
    ServiceConfig,
    check_config,
    read_services,
)

SERVICES: list[dict[str, Any]] = [
    {"name": "a", "upstream": "http://127.0.0.1:9", "prefix": "/a"},
    {
        "name": "replicas",
        "upstream": ["http://10.0.0.1:80", {"url": "http://10.0.0.2:80", "weight": 3}],
        "prefix": "/r",
        "balancer": {"policy": "round_robin"},
        "health_check": {"path": "/healthz", "interval": 2.5},
        "retries": {"attempts": 2},
        "circuit_breaker": {"max_connections": 10},
        "timeouts": {"connect": 1, "first_byte": 2.5},
    },
    {
        "name": "spec",
        "upstream": "http://127.0.0.1:9",
        "openapi": {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {}},
        "base_path": "/v1",
        "host": ["a.example.com", "*.example.org"],
        "operations": {"getX": {"plugins": {"key-auth": {}}, "idempotent": True}},
        "plugins": {"cors": {"origins": ["*"]}},
        "mcp": {"enabled": True},
    },
    {
        "name": "mcp",
        "kind": "mcp",
        "upstream": "http://127.0.0.1:9/mcp",
        "subdomain": "tools",
        "host_header": "upstream",
        "strip_prefix": "/x",
        "max_body_bytes": 1024,
        "connect_timeout": 0.5,
    },
]


def _piece_by_piece(value: dict[str, Any]) -> ServiceConfig:
    reader = config_module._Reader("<test>")
    read = reader._struct(ServiceConfig, value, "/services/0")
    assert reader.problems == []
    return read


@pytest.mark.parametrize("value", SERVICES, ids=lambda v: str(v["name"]))
def test_a_service_read_whole_is_the_readers_model(value: dict[str, Any]) -> None:
    whole = config_module._read_whole(ServiceConfig, value)
    assert whole is not None
    assert whole == _piece_by_piece(value)
    assert read_services([value], "<test>") == [whole]


@pytest.mark.parametrize(
    ("value", "pointer", "fragment"),
    [
        # Not a string key deep in a value typed Any: msgspec takes it, the reader does not.
        (
            {"name": "a", "upstream": "http://x:1", "prefix": "/a", "plugins": {"p": {1: 2}}},
            "/services/0/plugins/p",
            "the key 1 is not a string",
        ),
        (
            {"name": "a", "upstream": "http://x:1", "prefx": "/a"},
            "/services/0/prefx",
            "unknown key",
        ),
        ({"name": "a", "upstream": 5, "prefix": "/a"}, "/services/0/upstream", "Expected"),
        ({"upstream": "http://x:1", "prefix": "/a"}, "/services/0", "missing required key"),
    ],
)
def test_a_service_with_a_problem_gets_the_readers_report(
    value: dict[str, Any], pointer: str, fragment: str
) -> None:
    # Not taken by the fast path: no memo key (a key that is not a string), or refused.
    assert (
        config_module._memo_key(value) is None
        or config_module._read_whole(ServiceConfig, value) is None
    )
    with pytest.raises(ConfigError) as caught:
        read_services([value], "<test>")
    assert any(p.pointer == pointer and fragment in p.message for p in caught.value.problems), (
        caught.value.problems
    )


def test_a_changed_field_is_read_again_and_an_unchanged_service_kept() -> None:
    value = {"name": "stale", "upstream": "http://127.0.0.1:9", "prefix": "/one"}
    [first] = read_services([value], "<test>")
    [again] = read_services([dict(value)], "<test>")
    assert again is first  # kept by content
    [changed] = read_services([{**value, "prefix": "/two"}], "<test>")
    assert changed.prefix == "/two"
    [timeout] = read_services([{**value, "connect_timeout": 0}], "<test>")
    assert timeout.connect_timeout == 0


def test_the_number_checks_keep_their_hints() -> None:
    value = {"name": "n", "upstream": "http://127.0.0.1:9", "prefix": "/n", "connect_timeout": 0}
    services = read_services([value], "<test>")
    config = GatewayConfig(listeners=[], services=services)
    [problem] = [p for p in check_config(config, "<test>") if p.pointer.startswith("/services")]
    assert problem.pointer == "/services/0/connect_timeout"
    assert problem.message == "0.0 must be > 0"
    assert problem.hint == "leave it out for the gateway-wide setting"
    limits = GatewayConfig(listeners=[], limits=LimitsConfig(max_headers=0))
    [problem] = [p for p in check_config(limits, "<test>") if p.pointer.startswith("/limits")]
    assert problem.hint.startswith("the default is ")
