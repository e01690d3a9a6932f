"""limit-count and limit-req on real gateways: windows (fixed and sliding) across their
boundaries, GCRA's burst, every key kind, costs (per MCP method too), the 429 and the
RateLimit headers, the C table's memory bound, and the config problems; then Redis
(a real redis-server on loopback, tests/redis_server.py): two gateway processes of two
workers each sharing one limit (admitted within the documented overshoot), exact
decisions (sync_interval 0), and Redis killed and restarted mid-run (no 5xx, the chosen
fallback, recovery).

Windows are driven by the wall clock, never mocked: a test waits (polling the clock,
bounded) for a window to begin, and checks it did not end while it was sending.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis_server import RedisServer, redis_binary

from runmcp_fast.config import config_from_data
from runmcp_fast.plugins._steps import LimitTable
from runmcp_fast.problems import SnapshotError
from runmcp_fast.snapshot import build_snapshot
from tests.servers import (
    ECHO_COUNT,
    AiohttpUpstream,
    GatewayProcess,
    GatewayThread,
    Harness,
    LoopThread,
    RawClient,
    echo_app,
    wait_until,
)

ALICE = "alice-key-0123456789"
BOB = "bob-key-9876543210"
CONSUMERS: list[dict[str, Any]] = [
    {"name": "alice", "key-auth": {"key": ALICE}},
    {"name": "bob", "key-auth": {"key": BOB}},
]
QUOTA_TYPE = "https://iana.org/assignments/http-problem-types#quota-exceeded"

SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "t", "version": "1"},
    "paths": {
        "/items": {
            "get": {"operationId": "listItems", "responses": {"200": {"description": "ok"}}}
        },
        "/items/{id}": {
            "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "get": {"operationId": "getItem", "responses": {"200": {"description": "ok"}}},
        },
    },
}

Response = tuple[int, dict[str, str], Any]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server on a free loopback port, stopped after the test."""
    binary, why = redis_binary()
    if binary is None:
        print(f"skipping: {why}")
        pytest.skip(why)
    server = RedisServer(tmp_path, binary)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Limited:
    """A gateway over the echo app: `/api` (a prefix route) and the spec's operations."""

    def __init__(self, harness: Harness, plugins: dict[str, Any], **data: Any) -> None:
        self.app = echo_app()
        upstream = harness.aiohttp(self.app)
        services = data.pop("services", None) or [
            {"name": "api", "prefix": "/api", **data.pop("service", {})},
            {"name": "items", "openapi": SPEC, **data.pop("items", {})},
        ]
        for service in services:
            service.setdefault("upstream", upstream.url)
        self.gateway = harness.gateway(
            {"consumers": CONSUMERS, "plugins": plugins, "services": services, **data}
        )
        self.harness = harness
        self.client = harness.client(self.gateway.port)

    def request(
        self, path: str = "/api/x", headers: str = "", method: str = "GET", body: bytes = b""
    ) -> Response:
        if body:
            headers += f"Content-Length: {len(body)}\r\n"
        # (localhost: MCP endpoints refuse other names on loopback, DNS-rebinding protection)
        request = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n"
        self.client.send(request.encode() + body)
        status, response_headers, raw = self.client.read_response()
        try:
            return status, response_headers, json.loads(raw)
        except ValueError:
            return status, response_headers, raw

    def statuses(self, n: int, path: str = "/api/x", headers: str = "") -> list[int]:
        return [self.request(path, headers)[0] for _ in range(n)]

    @property
    def forwarded(self) -> int:
        return self.app[ECHO_COUNT][0]

    def step(self, name: str) -> Any:
        return find_step(self.gateway, name)


def find_step(gateway: GatewayThread, name: str) -> Any:
    for route in gateway.gateway.snapshot.router.routes():
        for step in route.target.chain.steps:
            if step.name == name:
                return step
    raise AssertionError(f"no step {name}")


def window_begun(window: int) -> int:
    """Wait (polling the wall clock, bounded) until a window of `window` seconds has just
    begun; its index."""
    index = int(time.time() // window)
    assert wait_until(lambda: int(time.time() // window) != index, window + 5)
    return int(time.time() // window)


def in_one_window(window: int, attempt: Callable[[], Any], tries: int = 3) -> Any:
    """`attempt()`, run from the start of a window; again (up to `tries`) if the window
    ended while it ran (a very slow machine): its result."""
    for _ in range(tries):
        index = window_begun(window)
        result = attempt()
        if int(time.time() // window) == index:
            return result
    pytest.fail(f"{tries} windows of {window} s ended before {attempt} was done")


# -- the C table ------------------------------------------------------------------------------


def test_limit_table_memory_is_bounded_and_the_least_recently_used_go_first() -> None:
    table = LimitTable(1000)
    assert table.capacity == 1024  # 128 buckets of 8
    size = table.nbytes
    # A hot key used between every new key stays; 100 times the capacity goes through.
    for i in range(100 * table.capacity):
        assert table.hit(("key", i), 1, 10) == (True, 1)
        table.hit("hot", 0, 10)
    assert len(table) <= table.capacity
    assert table.nbytes == size  # fixed when made
    assert table.evictions >= 99 * table.capacity - 10
    assert table.peek("hot") == 0
    assert table.hit("hot", 1, 10) == (True, 1)
    # The most recent keys are still there, the oldest are gone (a new key starts anew).
    assert table.peek(("key", 100 * table.capacity - 1)) == 1
    assert table.peek(("key", 0)) is None
    assert table.hit(("key", 0), 1, 10) == (True, 1)


def test_limit_table_counts_against_its_limit() -> None:
    table = LimitTable(8)
    assert [table.hit("k", 2, 5)[0] for _ in range(4)] == [True, True, False, False]
    assert table.peek("k") == 4
    assert table.hit("k", 1, 5) == (True, 5)


# -- limit-count: windows ---------------------------------------------------------------------


def test_fixed_window_boundary(harness: Harness) -> None:
    limited = Limited(harness, {"limit-count": {"count": 3, "window": 2}})

    def attempt() -> list[int]:
        return limited.statuses(5)

    assert in_one_window(2, attempt) == [200, 200, 200, 429, 429]
    # The next window starts whole.
    assert in_one_window(2, lambda: limited.statuses(4)) == [200, 200, 200, 429]
    assert limited.forwarded == 6  # a refused request never reaches the upstream
    stats = limited.step("limit-count").stats()
    assert (stats["allowed"], stats["rejected"]) == (6, 3)


def test_sliding_window_remembers_the_window_before(harness: Harness) -> None:
    # 4 per 4 s, sliding: right after a full window, the previous one still weighs
    # (1 - elapsed/4) x 4 > 3 for the first second: nothing passes; fixed would allow 4.
    limited = Limited(harness, {"limit-count": {"count": 4, "window": 4, "algorithm": "sliding"}})
    sliding = True
    for _ in range(3):
        index = window_begun(4)
        assert limited.statuses(5) == [200, 200, 200, 200, 429]
        assert wait_until(lambda i=index: int(time.time() // 4) != i, 8)
        status, headers, _ = limited.request()
        elapsed = time.time() % 4  # (after the answer: the request came earlier still)
        if elapsed < 0.9:
            assert status == 429, headers
            assert int(headers["retry-after"]) >= 1
            break
    else:
        sliding = False
    assert sliding, "the machine was too slow to ask within a second of the window's start"


# -- limit-req: a rate and a burst (GCRA) -------------------------------------------------------


def test_limit_req_admits_the_burst_then_the_rate(harness: Harness) -> None:
    # One request per 10 s, bursts of 2 more: 3 at once, then none for 10 s.
    limited = Limited(harness, {"limit-req": {"rate": 0.1, "burst": 2, "headers": True}})
    answers = [limited.request() for _ in range(4)]
    assert [a[0] for a in answers] == [200, 200, 200, 429]
    assert [a[1]["ratelimit"] for a in answers[:3]] == [
        '"limit-req";r=2;t=10',
        '"limit-req";r=1;t=20',
        '"limit-req";r=0;t=30',
    ]
    assert answers[0][1]["ratelimit-policy"] == '"limit-req";q=3;w=30'
    refused = answers[3]
    assert 9 <= int(refused[1]["retry-after"]) <= 10
    assert refused[2]["violated-policies"] == ["limit-req"]


def test_limit_req_with_a_fast_rate_lets_a_steady_client_through(harness: Harness) -> None:
    # 1000/s with a burst of 50: 20 requests fit in the burst however fast they come.
    limited = Limited(harness, {"limit-req": {"rate": 1000, "burst": 50}})
    assert limited.statuses(20) == [200] * 20


# -- keys -------------------------------------------------------------------------------------


def _header(name: str, value: str) -> str:
    return f"{name}: {value}\r\n"


# (plugins, [(path, headers)] of requests counted apart, 2 per window each)
KEY_CASES: dict[str, tuple[dict[str, Any], list[tuple[str, str]], list[tuple[str, str]]]] = {
    # key: (extra plugins, requests counted apart, requests counted together)
    "consumer": (
        {"key-auth": {}},
        [("/api/x", _header("apikey", ALICE)), ("/api/x", _header("apikey", BOB))],
        [("/api/x", _header("apikey", ALICE)), ("/items", _header("apikey", ALICE))],
    ),
    "client_ip": (
        {"real-ip": {"trusted": ["127.0.0.1"]}},
        [
            ("/api/x", _header("X-Forwarded-For", "192.0.2.1")),
            ("/api/x", _header("X-Forwarded-For", "192.0.2.2")),
        ],
        [
            ("/api/x", _header("X-Forwarded-For", "192.0.2.1")),
            ("/items/7", _header("X-Forwarded-For", "198.51.100.9, 192.0.2.1")),
        ],
    ),
    "header:X-Tenant": (
        {},
        [("/api/x", _header("X-Tenant", "a")), ("/api/x", _header("X-Tenant", "b"))],
        [("/api/x", _header("x-tenant", "a")), ("/items", _header("X-TENANT", "a"))],
    ),
    "param:id": (
        {},
        [("/items/1", ""), ("/items/2", "")],
        [("/items/1", ""), ("/items/1?x=2", "")],
    ),
    "route": (
        {},
        [("/items", ""), ("/items/1", "")],
        [("/items/1", ""), ("/items/2", "")],
    ),
}


@pytest.mark.parametrize("key", list(KEY_CASES))
def test_each_key_kind(harness: Harness, key: str) -> None:
    extra, apart, together = KEY_CASES[key]
    limited = Limited(harness, {**extra, "limit-count": {"count": 2, "window": 3600, "key": key}})
    first, second = apart
    assert [limited.request(*first)[0] for _ in range(3)] == [200, 200, 429]
    assert [limited.request(*second)[0] for _ in range(3)] == [200, 200, 429]
    limited = Limited(harness, {**extra, "limit-count": {"count": 2, "window": 3600, "key": key}})
    one, other = together
    assert [limited.request(*one)[0] for _ in range(2)] == [200, 200]
    assert limited.request(*other)[0] == 429


def test_a_missing_key_part_is_one_shared_count(harness: Harness) -> None:
    limited = Limited(harness, {"limit-count": {"count": 2, "window": 3600, "key": "header:X-T"}})
    assert limited.statuses(3) == [200, 200, 429]  # no X-T: all under "-"
    assert limited.statuses(1, headers=_header("X-T", "-"))[0] == 200  # a real "-" is not it


def test_a_combined_key(harness: Harness) -> None:
    limited = Limited(
        harness,
        {"key-auth": {}, "limit-count": {"count": 1, "window": 3600, "key": ["consumer", "route"]}},
    )
    a, b = _header("apikey", ALICE), _header("apikey", BOB)
    assert [limited.request("/items", h)[0] for h in (a, a, b)] == [200, 429, 200]
    assert [limited.request("/items/1", h)[0] for h in (a, b, b)] == [200, 200, 429]


def test_a_service_level_limit_counts_per_service_and_a_consumer_one_per_consumer(
    harness: Harness,
) -> None:
    limited = Limited(
        harness,
        {"key-auth": {}},
        service={"plugins": {"limit-count": {"count": 1, "window": 3600}}},
        items={"plugins": {"limit-count": {"count": 1, "window": 3600}}},
        consumers=[
            {"name": "alice", "key-auth": {"key": ALICE}},
            {
                "name": "bob",
                "key-auth": {"key": BOB},
                "plugins": {"limit-count": {"count": 3, "window": 3600, "key": "consumer"}},
            },
        ],
    )
    a = _header("apikey", ALICE)
    # The same settings on two services: two counts (the level, not the settings, owns it).
    assert [limited.request(p, a)[0] for p in ("/api/x", "/items", "/api/x")] == [200, 200, 429]
    b = _header("apikey", BOB)
    assert [limited.request(p, b)[0] for p in ("/api/x", "/items", "/items/1", "/api/x")] == [
        200,
        200,
        200,
        429,
    ]


# -- cost, MCP --------------------------------------------------------------------------------


def test_cost(harness: Harness) -> None:
    limited = Limited(harness, {"limit-count": {"count": 5, "window": 3600, "cost": 2}})
    assert limited.statuses(3) == [200, 200, 429]


def _rpc(method: str, name: str | None = None, rid: int = 1) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
    if name is not None:
        message["params"] = {"name": name, "arguments": {}}
    return json.dumps(message).encode()


MCP_HEADERS = "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"


@pytest.mark.parametrize("kind", ["proxied", "generated"])
def test_mcp_tool_key_and_costs_by_method(harness: Harness, kind: str) -> None:
    limit = {
        "count": 4,
        "window": 3600,
        "key": "tool",
        "cost": {"default": 1, "methods": {"tools/call": 2, "ping": 0}},
    }
    if kind == "proxied":
        services = [{"name": "notes", "kind": "mcp"}]
        path = "/mcp"
    else:
        services = [{"name": "items", "openapi": SPEC, "mcp": {"path": "/items-mcp"}}]
        path = "/items-mcp"
    limited = Limited(harness, {"limit-count": limit}, services=services)
    step = limited.step("limit-count")
    assert step.phase == 40  # the mcp phase: after the envelope check (and mcp-authz)

    def call(method: str, name: str | None = None) -> int:
        return limited.request(path, MCP_HEADERS, "POST", _rpc(method, name))[0]

    # tools/call costs 2 per tool: 2 calls of each tool, the third refused.
    assert [call("tools/call", "read_notes") for _ in range(3)] == [200, 200, 429]
    assert [call("tools/call", "add_note") for _ in range(3)] == [200, 200, 429]
    # ping is free: never counted, never refused.
    assert [call("ping") for _ in range(6)] == [200] * 6
    # Other methods cost 1, counted under no tool ("-").
    assert [call("tools/list") for _ in range(5)] == [200] * 4 + [429]
    assert step.stats()["rejected"] == 3


def test_a_consumers_own_mcp_limit_on_a_route_that_reads_no_envelope(harness: Harness) -> None:
    """The route's own chain (key-auth, the MCP steps) reads no envelope, so a body is
    checked and nothing made of it (Chain.reads_envelope); bob's own limit-count keyed
    on the tool does read it: once key-auth finds bob, his chain's envelope is made."""
    limited = Limited(
        harness,
        {"key-auth": {}},
        services=[{"name": "notes", "kind": "mcp"}],
        consumers=[
            {"name": "alice", "key-auth": {"key": ALICE}},
            {
                "name": "bob",
                "key-auth": {"key": BOB},
                "plugins": {"limit-count": {"count": 2, "window": 3600, "key": "tool"}},
            },
        ],
    )
    route = limited.gateway.gateway.snapshot.router.match(None, "POST", "/mcp")
    assert route is not None and not route.target.chain.reads_envelope

    def call(key: str, name: str) -> int:
        headers = MCP_HEADERS + _header("apikey", key)
        return limited.request("/mcp", headers, "POST", _rpc("tools/call", name))[0]

    # Per tool for bob: two calls of each, the third refused; alice has no limit.
    assert [call(BOB, "read_notes") for _ in range(3)] == [200, 200, 429]
    assert [call(BOB, "add_note") for _ in range(3)] == [200, 200, 429]
    assert [call(ALICE, "read_notes") for _ in range(4)] == [200] * 4


def test_mcp_refusal_never_reaches_the_proxied_upstream(harness: Harness) -> None:
    limited = Limited(
        harness,
        {"limit-count": {"count": 1, "window": 3600, "key": ["client_ip", "tool"]}},
        services=[{"name": "notes", "kind": "mcp"}],
    )
    body = _rpc("tools/call", "add_note")
    assert limited.request("/mcp", MCP_HEADERS, "POST", body)[0] == 200
    before = limited.forwarded
    status, _headers, problem = limited.request("/mcp", MCP_HEADERS, "POST", body)
    assert status == 429 and problem["type"] == QUOTA_TYPE
    assert limited.forwarded == before


# -- answers ----------------------------------------------------------------------------------


def test_the_429_and_the_headers_on_allowed_responses(harness: Harness) -> None:
    limited = Limited(
        harness,
        {"limit-count": {"count": 2, "window": 3600, "headers": True, "policy_name": "hourly"}},
    )
    answers = [limited.request() for _ in range(3)]
    assert [a[0] for a in answers] == [200, 200, 429]
    for _status, headers, _ in answers:
        assert headers["ratelimit-policy"] == '"hourly";q=2;w=3600'
    left = 3600 - int(time.time() % 3600)
    remaining = [a[1]["ratelimit"] for a in answers]
    assert remaining[0].startswith('"hourly";r=1;t=') and remaining[1].startswith('"hourly";r=0;t=')
    reset = int(remaining[0].rsplit("=", 1)[1])
    assert abs(reset - left) <= 2
    _status, headers, problem = answers[2]
    assert headers["content-type"] == "application/problem+json"
    assert headers["ratelimit"] == f'"hourly";r=0;t={headers["retry-after"]}'
    assert abs(int(headers["retry-after"]) - left) <= 2
    assert problem == {
        "type": QUOTA_TYPE,
        "title": "Too Many Requests",
        "status": 429,
        "detail": "the rate limit 'hourly' is exceeded: retry after the time Retry-After gives",
        "violated-policies": ["hourly"],
    }


def test_no_headers_on_allowed_responses_by_default(harness: Harness) -> None:
    limited = Limited(harness, {"limit-count": {"count": 1, "window": 60}})
    status, headers, _ = limited.request()
    assert status == 200 and "ratelimit" not in headers and "ratelimit-policy" not in headers
    status, headers, _ = limited.request()
    assert status == 429 and "ratelimit" in headers


def test_counts_outlive_a_reload_that_leaves_the_limit_alone(harness: Harness) -> None:
    limited = Limited(harness, {"limit-count": {"count": 2, "window": 3600}})
    step = limited.step("limit-count")
    assert limited.statuses(1) == [200]
    gateway = limited.gateway.gateway
    harness.gateway_loop.run(
        gateway.register_service("more", url="http://127.0.0.1:9", prefix="/m")
    )
    assert limited.step("limit-count") is step
    assert limited.statuses(2) == [200, 429]


# -- config problems --------------------------------------------------------------------------


def _problems(plugins: dict[str, Any]) -> list[tuple[str, str, str]]:
    config = config_from_data(
        {
            "listeners": [{"address": "127.0.0.1:0"}],
            "plugins": plugins,
            "services": [{"name": "api", "upstream": "http://127.0.0.1:9", "prefix": "/api"}],
        },
        source="g.yaml",
    )
    with pytest.raises(SnapshotError) as raised:
        build_snapshot(config, lambda _u: None, "g.yaml")
    return [(p.pointer, p.message, p.hint) for p in raised.value.problems]


BASE = {"count": 1, "window": 1}
REDIS = {"policy": "redis", "redis": {"url": "redis://127.0.0.1:6379/0"}}


@pytest.mark.parametrize(
    ("plugins", "pointer", "message", "hint"),
    [
        ({"limit-count": {"window": 1}}, "/plugins/limit-count", "required field `count`", ""),
        ({"limit-count": {**BASE, "key": "ip"}}, "/plugins/limit-count/key", "'ip' is not", "client_ip"),
        ({"limit-count": {**BASE, "key": ["consumer", "header:"]}}, "/plugins/limit-count/key/1", "'' is not a header", ""),
        ({"limit-count": {**BASE, "key": ["route", "route"]}}, "/plugins/limit-count/key/1", "named twice", ""),
        ({"limit-count": {**BASE, "key": []}}, "/plugins/limit-count/key", "names no part", ""),
        ({"limit-count": {**BASE, "algorithm": "leaky"}}, "/plugins/limit-count/algorithm", "", ""),
        ({"limit-count": {**BASE, "policy_name": 'a"b'}}, "/plugins/limit-count/policy_name", "not a policy name", ""),
        ({"limit-count": {**BASE, "policy": "redis"}}, "/plugins/limit-count/redis", "needs redis", "url"),
        ({"limit-count": {**BASE, "redis": {}}}, "/plugins/limit-count/redis", "only with policy: redis", ""),
        ({"limit-count": {**BASE, **REDIS, "redis": {"url": "redis://:pw@h:1/0"}}}, "/plugins/limit-count/redis/url", "holds a password", "password_env"),
        ({"limit-count": {**BASE, **REDIS, "redis": {"url": "http://h"}}}, "/plugins/limit-count/redis/url", "not a Redis URL", ""),
        ({"limit-count": {**BASE, **REDIS, "redis": {"sentinels": ["nope"]}}}, "/plugins/limit-count/redis/sentinels/0", "not host:port", ""),
        ({"limit-count": {**BASE, **REDIS, "redis": {"ca_file": "ca.pem"}}}, "/plugins/limit-count/redis/url", "not rediss://", ""),
        ({"limit-count": {**BASE, **REDIS, "redis": {"password_env": "RUNMCP_TEST_UNSET_VAR"}}}, "/plugins/limit-count/redis/password_env", "RUNMCP_TEST_UNSET_VAR is not set", "set it"),
        ({"limit-req": {"rate": 1, "cost": 3}}, "/plugins/limit-req/cost", "could never be admitted", "raise burst to 2"),
        ({"limit-req": {"rate": 0}}, "/plugins/limit-req/rate", "", ""),
        ({"limit-count": {**BASE, "nodes": 0}}, "/plugins/limit-count/nodes", "", ""),
    ],
)  # fmt: skip
def test_config_problems_name_the_pointer_and_the_fix(
    plugins: dict[str, Any], pointer: str, message: str, hint: str
) -> None:
    problems = _problems(plugins)
    assert any(p == pointer and message in m and hint in h for p, m, h in problems), problems


# -- Redis ------------------------------------------------------------------------------------


def _redis_limit(server: RedisServer, **more: Any) -> dict[str, Any]:
    return {"policy": "redis", "redis": {"url": server.url, "timeout": 0.5}, **more}


def _admitted(counts: dict[int, int]) -> int:
    return counts.get(200, 0)


def test_exact_limit_across_two_gateways(harness: Harness, redis_server: RedisServer) -> None:
    limit = {
        "limit-count": {"count": 7, "window": 3600, **_redis_limit(redis_server, sync_interval=0)}
    }
    one = Limited(harness, limit)
    two = Limited(harness, limit)
    statuses = []
    for _ in range(8):
        statuses += [one.request()[0], two.request()[0]]
    assert statuses.count(200) == 7 and statuses.count(429) == 9, statuses
    stats = one.step("limit-count").stats()
    assert stats["redis_errors"] == 0 and stats["fallbacks"] == 0


def test_exact_limit_req_across_two_gateways(harness: Harness, redis_server: RedisServer) -> None:
    limit = {"limit-req": {"rate": 0.01, "burst": 4, **_redis_limit(redis_server, sync_interval=0)}}
    one = Limited(harness, limit)
    two = Limited(harness, limit)
    statuses = []
    for _ in range(4):
        statuses += [one.request()[0], two.request()[0]]
    assert statuses == [200] * 5 + [429] * 3, statuses


def test_exact_limit_on_mcp_tools_across_two_gateways(
    harness: Harness, redis_server: RedisServer
) -> None:
    """The tool is read from the body: the body step waits for Redis, then goes on."""
    limit = {
        "limit-count": {
            "count": 4,
            "window": 3600,
            "key": "tool",
            "cost": {"default": 1, "methods": {"tools/call": 2, "ping": 0}},
            **_redis_limit(redis_server, sync_interval=0),
        }
    }
    services = [{"name": "notes", "kind": "mcp"}]
    one = Limited(harness, limit, services=services)
    two = Limited(harness, limit, services=services)

    def call(gateway: Limited, method: str, name: str | None = None) -> int:
        return gateway.request("/mcp", MCP_HEADERS, "POST", _rpc(method, name))[0]

    before = one.forwarded + two.forwarded
    assert [call(g, "tools/call", "add_note") for g in (one, two, one)] == [200, 200, 429]
    assert [call(g, "tools/call", "read_notes") for g in (two, one, two)] == [200, 200, 429]
    assert [call(g, "ping") for g in (one, two)] == [200, 200]
    assert one.forwarded + two.forwarded == before + 6  # the refused two never went upstream
    stats = one.step("limit-count").stats()
    assert stats["redis_errors"] == 0 and stats["fallbacks"] == 0


def test_delayed_sync_shares_the_count_between_gateways(
    harness: Harness, redis_server: RedisServer
) -> None:
    limit = {
        "limit-count": {
            "count": 6,
            "window": 3600,
            **_redis_limit(redis_server, sync_interval=0.05),
        }
    }
    one = Limited(harness, limit)
    two = Limited(harness, limit)
    store = redis_server.client()
    assert one.statuses(4) == [200] * 4
    # Once one's round has pushed its 4, two sees them at its first push.
    assert wait_until(lambda: _store_total(store, "limit-count") == 4, 10)
    assert two.statuses(1) == [200]
    assert wait_until(lambda: find_step(two.gateway, "limit-count").stats()["syncs"] > 0, 10)
    assert two.statuses(3) == [200, 429, 429]
    assert wait_until(lambda: _store_total(store, "limit-count") == 6, 10)
    # one's view is still what its push read back (4): it admits what two admitted since
    # (2, the overshoot the docs bound), and its push tells it the truth.
    assert one.statuses(3) == [200, 200, 429]
    assert wait_until(lambda: _store_total(store, "limit-count") == 8, 10)
    assert wait_until(lambda: one.step("limit-count").stats()["syncs"] >= 2, 10)
    assert one.statuses(1) == [429] and two.statuses(1) == [429]


def _store_total(store: Any, plugin: str) -> int:
    """What the limits pushed to Redis, over every key of `plugin` (this window's)."""
    total = 0
    for key in store.scan_iter(match=f"runmcp:limit:{plugin}:*"):
        value = store.get(key)
        total += int(value or 0)
    return total


def test_limit_req_delayed_sync(harness: Harness, redis_server: RedisServer) -> None:
    limit = {
        "limit-req": {"rate": 0.01, "burst": 3, **_redis_limit(redis_server, sync_interval=0.05)}
    }
    one = Limited(harness, limit)
    two = Limited(harness, limit)
    assert one.statuses(3) == [200] * 3
    step_one = one.step("limit-req")
    assert wait_until(lambda: step_one.stats()["syncs"] > 0, 10)
    assert two.statuses(1) == [200]  # its own view was empty: it learns at its push
    assert wait_until(lambda: find_step(two.gateway, "limit-req").stats()["syncs"] > 0, 10)
    assert two.statuses(1) == [429]  # 4 = burst + 1 in the cluster: the 5th waits


@pytest.mark.parametrize(
    ("mode", "while_down"),
    [("local", {200, 429}), ("fail_open", {200}), ("fail_closed", {429})],
)
def test_redis_killed_and_restarted(
    harness: Harness, redis_server: RedisServer, mode: str, while_down: set[int]
) -> None:
    limit = {
        "limit-count": {
            "count": 20,
            "window": 3600,
            "nodes": 2,
            "on_redis_down": mode,
            **_redis_limit(redis_server, sync_interval=0.05),
        }
    }
    limited = Limited(harness, limit)
    step = limited.step("limit-count")
    assert limited.statuses(3) == [200] * 3
    store = redis_server.client()
    assert wait_until(lambda: _store_total(store, "limit-count") == 3, 10)
    redis_server.kill()
    # Requests go on; the first round after the kill finds Redis gone.
    down: list[int] = []
    assert wait_until(lambda: down.extend(limited.statuses(1)) or step.down, 15)
    seen = limited.statuses(15)
    assert 500 not in down + seen and set(seen) <= while_down, (down, seen)
    stats = step.stats()
    assert stats["redis_errors"] >= 1 and stats["fallbacks"] >= len(seen)
    if mode == "local":
        # Half the quota per worker while Redis is down (nodes: 2, one worker here).
        assert seen.count(200) <= 10 and 429 in seen
    redis_server.start()  # the same port, empty
    assert wait_until(lambda: not step.down, 15)
    # What was counted and not pushed reaches Redis once it is back: the requests admitted
    # before the worker knew (their round failed), and those the local fallback counted.
    stats = step.stats()
    counted = stats["allowed"] - 3 - (stats["fallbacks"] if mode == "fail_open" else 0)
    assert counted >= (seen.count(200) if mode == "local" else 0)
    store = redis_server.client()
    assert wait_until(lambda: _store_total(store, "limit-count") == counted, 10), counted
    assert limited.statuses(1) == [200]
    assert step.stats()["redis_down"] is False


def test_exact_limit_with_redis_down_falls_back(
    harness: Harness, redis_server: RedisServer
) -> None:
    limit = {"limit-count": {"count": 4, "window": 3600, "on_redis_down": "local",
                             **_redis_limit(redis_server, sync_interval=0)}}  # fmt: skip
    limited = Limited(harness, limit)
    assert limited.statuses(2) == [200, 200]
    redis_server.kill()
    statuses = limited.statuses(6)
    assert 500 not in statuses and statuses.count(200) <= 4 and 429 in statuses, statuses
    step = limited.step("limit-count")
    assert step.stats()["redis_errors"] >= 1 and step.down
    admitted_while_down = statuses.count(200)
    redis_server.start()  # the same port, empty
    # The probe (every second) finds it, and pushes what the fallback admitted: the
    # cluster counts those requests too, and Redis decides again.
    assert wait_until(lambda: not step.down, 15)
    store = redis_server.client()
    assert wait_until(lambda: _store_total(store, "limit-count") == admitted_while_down, 10)
    fallbacks = step.stats()["fallbacks"]
    expected = [200] * (4 - admitted_while_down) + [429]
    assert limited.statuses(len(expected)) == expected
    assert step.stats()["fallbacks"] == fallbacks


# -- the cluster: 2 gateway processes x 2 workers, one Redis limit -------------------------------

LIMIT = 30
BURST = 5  # requests sent between two points where every worker has pushed what it counted
WORKERS = 4  # 2 processes x 2 workers


def test_two_processes_of_two_workers_share_one_limit(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """LIMIT <= admitted <= LIMIT + WORKERS x BURST (docs/plugins/limits.md, "Overshoot").

    A worker admits on its own view: the cluster's total as its last push read it back,
    plus what it admitted since. Once the cluster has reached the limit, a worker admits
    past it only until its next push reads the total back: what reaches it in one sync
    round. The test makes the round explicit: it sends BURST requests, then waits until
    Redis holds every admitted request (each worker that admitted has pushed), then the
    next BURST. A worker's admissions past the limit all fall in one burst (the one
    before its first push after the limit was reached), so the cluster's overshoot is at
    most WORKERS x BURST: the bound's "nodes x workers x (what one worker admits in a
    round)". Without the sync each worker would admit LIMIT: 4 x 30.
    """
    binary, _ = redis_binary()
    assert binary is not None
    loop_thread = LoopThread()
    upstream = AiohttpUpstream(echo_app(), loop_thread)
    config = {
        "plugins": {
            "limit-count": {
                "count": LIMIT,
                "window": 86400,
                **_redis_limit(redis_server, sync_interval=0.05),
            }
        },
        "services": [{"name": "api", "upstream": upstream.url, "prefix": "/api"}],
    }
    gateways = []
    try:
        for index in range(2):
            directory = tmp_path / f"gw{index}"
            directory.mkdir()
            gateways.append(GatewayProcess.from_config(config, directory, extra=("--workers", "2")))
        store = redis_server.client()
        for _attempt in range(2):
            day = int(time.time() // 86400)
            store.flushall()
            admitted = sent = 0
            statuses: list[int] = []
            while sent < 8 * LIMIT:
                for _ in range(BURST):
                    port = gateways[sent % 2].port
                    with RawClient(port) as client:
                        client.send(b"GET /api/x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
                        status = client.read_response()[0]
                    statuses.append(status)
                    admitted += status == 200
                    sent += 1
                assert wait_until(lambda a=admitted: _store_total(store, "limit-count") == a, 20), (
                    admitted,
                    _store_total(store, "limit-count"),
                )
            if int(time.time() // 86400) == day:
                break
            for gateway in gateways:  # the day ended mid-run: again, on fresh workers
                gateway.stop()
            gateways = [
                GatewayProcess.from_config(config, tmp_path / f"gw{i}", extra=("--workers", "2"))
                for i in range(2)
            ]
        print(f"admitted {admitted} of {sent}; limit {LIMIT}, bound {LIMIT + WORKERS * BURST}")
        assert set(statuses) == {200, 429}, statuses
        assert LIMIT <= admitted <= LIMIT + WORKERS * BURST, statuses
        assert statuses[:LIMIT] == [200] * LIMIT  # (nothing refused before the limit)
    finally:
        for gateway in gateways:
            gateway.stop()
        upstream.close()
        loop_thread.close()
