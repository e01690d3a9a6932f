"""Edge cases of the plugin layer found by hunting for bugs: each test failed before the
fix its commit made (real gateways, upstreams and clients on loopback)."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from aiohttp import web
from redis_server import RedisServer, redis_binary

from tests.servers import Harness, echo_app, wait_until
from tests.test_plugins_jwt import RSA_KEY, bearer, public_jwk, token
from tests.test_plugins_limits import Limited


def _get(
    harness: Harness, port: int, path: str = "/api/x", headers: str = ""
) -> tuple[int, dict[str, str], Any]:
    client = harness.client(port)
    client.send(f"GET {path} HTTP/1.1\r\nHost: h\r\n{headers}\r\n".encode())
    status, response_headers, body = client.read_response()
    try:
        return status, response_headers, json.loads(body)
    except ValueError:
        return status, response_headers, body


def _step(harness: Harness, name: str) -> Any:
    snapshot = harness._gateways[-1].gateway.snapshot
    for route in snapshot.router.routes():
        for step in route.target.chain.steps:
            if step.name == name:
                return step
    raise AssertionError(f"no step {name}")


# -- jwt-auth: a JWKS URL that fails --------------------------------------------------------


class FailingJwks:
    """A JWKS endpoint answering 500 until `keys` is set; `requests` counts fetches."""

    def __init__(self, harness: Harness) -> None:
        self.requests = 0
        self.keys: list[dict[str, Any]] | None = None
        app = web.Application()
        app.router.add_get("/jwks.json", self.serve)
        self.url = harness.aiohttp(app).url + "/jwks.json"

    async def serve(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.keys is None:
            return web.Response(status=500, text="down")
        return web.json_response({"keys": self.keys})


def test_a_failing_jwks_is_not_fetched_again_by_every_request(harness: Harness) -> None:
    # Before: with no key set held, each request with a token started a fetch of its own
    # (and waited for it): the IdP was hit at the rate requests came.
    jwks = FailingJwks(harness)
    upstream = harness.aiohttp(echo_app())
    gateway = harness.gateway(
        {
            "plugins": {"jwt-auth": {"jwks_url": jwks.url, "jwks_min_refetch": 3600}},
            "services": [{"name": "api", "upstream": upstream.url, "prefix": "/api"}],
        }
    )
    source = _step(harness, "jwt-auth").verifier.jwks
    good = token(RSA_KEY, "RS256", "k1")
    for _ in range(5):
        status, headers, _ = _get(harness, gateway.port, headers=bearer(good))
        assert status == 503 and headers["retry-after"] == "5"
    assert jwks.requests == 1
    # The IdP comes back: once the pause after the failure is over (1 s after a first
    # failure), the next request fetches again and gets in.
    jwks.keys = [public_jwk(RSA_KEY, "k1")]
    assert wait_until(lambda: not source.backing_off(time.monotonic()), timeout=5)
    assert _get(harness, gateway.port, headers=bearer(good))[0] == 200
    assert jwks.requests == 2


# -- consumers: an anonymous stand-in, then the real consumer --------------------------------

ALICE_KEY = "alice-key-0123456789"


def test_the_consumer_found_after_an_anonymous_stand_in_gets_none_of_its_plugins(
    harness: Harness,
) -> None:
    # basic-auth (2520) runs first and, without credentials of its kind, identifies the
    # request as `guest`, whose own limit-count (1 an hour) replaces the route's (5);
    # key-auth (2500) then finds alice. Before: alice's requests stayed on the guest's
    # chain, so the guest's limit refused her second request.
    upstream = harness.aiohttp(echo_app())
    limit = {"window": 3600, "key": "consumer", "headers": True}
    gateway = harness.gateway(
        {
            "consumers": [
                {"name": "alice", "key-auth": {"key": ALICE_KEY}},
                {"name": "guest", "plugins": {"limit-count": {**limit, "count": 1}}},
            ],
            "plugins": {
                "basic-auth": {"anonymous": "guest"},
                "key-auth": {"anonymous": "guest"},
                "limit-count": {**limit, "count": 5},
            },
            "services": [{"name": "api", "upstream": upstream.url, "prefix": "/api"}],
        }
    )
    for remaining in (4, 3, 2):
        status, headers, body = _get(harness, gateway.port, headers=f"apikey: {ALICE_KEY}\r\n")
        assert status == 200, body
        assert headers["ratelimit-policy"] == '"limit-count";q=5;w=3600'
        assert headers["ratelimit"].startswith(f'"limit-count";r={remaining};')
    # The guest (no credential at all) is still held to its own limit.
    status, headers, _ = _get(harness, gateway.port)
    assert status == 200 and headers["ratelimit-policy"] == '"limit-count";q=1;w=3600'
    assert _get(harness, gateway.port)[0] == 429


def _basic(user: str, password: str) -> str:
    return f"Authorization: Basic {base64.b64encode(f'{user}:{password}'.encode()).decode()}\r\n"


def test_either_credential_needs_anonymous_on_each_authentication_step(
    harness: Harness,
) -> None:
    # docs/plugins.md said `key-auth {anonymous: guest}` + `basic-auth` lets a request in
    # with either; basic-auth runs first (2520 > 2500) and refuses a request without Basic
    # credentials. The docs now say what does: anonymous on each of them.
    carol_hash = bcrypt.hashpw(b"carol's secret", bcrypt.gensalt(4)).decode()
    consumers = [
        {"name": "alice", "key-auth": {"key": ALICE_KEY}},
        {"name": "carol", "basic-auth": {"username": "carol", "password_hash": carol_hash}},
        {"name": "guest"},
    ]
    upstream = harness.aiohttp(echo_app())
    service = {"name": "api", "upstream": upstream.url, "prefix": "/api"}
    only_key = harness.gateway(
        {
            "consumers": consumers,
            "plugins": {"key-auth": {"anonymous": "guest"}, "basic-auth": {}},
            "services": [service],
        }
    ).port
    assert _get(harness, only_key, headers=f"apikey: {ALICE_KEY}\r\n")[0] == 401
    both = harness.gateway(
        {
            "consumers": consumers,
            "plugins": {
                "key-auth": {"anonymous": "guest"},
                "basic-auth": {"anonymous": "guest"},
                "consumer-restriction": {"deny": {"consumers": ["guest"]}},
            },
            "services": [service],
        }
    ).port
    assert _get(harness, both, headers=f"apikey: {ALICE_KEY}\r\n")[0] == 200
    assert _get(harness, both, headers=_basic("carol", "carol's secret"))[0] == 200
    assert _get(harness, both)[0] == 403  # guest: what consumer-restriction says


# -- limit-count on Redis, exact (sync_interval 0) --------------------------------------------


def _port_in_range(first: int = 26300, last: int = 26999) -> int:
    """A free loopback port in this suite's range (redis-server can not bind port 0)."""
    for port in range(first, last + 1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in the range")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    binary, why = redis_binary()
    if binary is None:
        pytest.skip(why)
    server = RedisServer(tmp_path, binary)
    server.port = _port_in_range()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("sync_interval", [None, 0])
def test_a_sliding_windows_retry_after_is_when_a_retry_can_pass(
    harness: Harness, redis_server: RedisServer, sync_interval: float | None
) -> None:
    # 1 an hour, sliding: once it is spent, the next window starts with it as `prev`,
    # weighing (almost) 1, so a retry passes only at the end of the next window. The
    # local table said so; the exact Redis decision said the end of this window
    # (Retry-After <= 3600): a client obeying it was refused again.
    policy = (
        {}
        if sync_interval is None
        else {
            "policy": "redis",
            "redis": {"url": redis_server.url},
            "sync_interval": sync_interval,
        }
    )
    limited = Limited(
        harness,
        {"limit-count": {"count": 1, "window": 3600, "algorithm": "sliding", **policy}},
    )
    assert limited.request()[0] == 200
    status, headers, body = limited.request()
    assert status == 429 and body["violated-policies"] == ["limit-count"]
    retry = int(headers["retry-after"])
    assert 3600 < retry <= 7200
    assert headers["ratelimit"] == f'"limit-count";r=0;t={retry}'


# -- limits: numbers past what the steps' 64-bit clocks and counts hold ----------------------


@pytest.mark.parametrize(
    ("plugin", "pointer", "message"),
    [
        # Before: an OverflowError out of the build (the admin API's 500).
        (
            {"limit-count": {"count": 10**19, "window": 60}},
            "/services/1/plugins/limit-count/count",
            "Expected `int` <= 1000000000000000",
        ),
        (
            {"limit-count": {"count": 5, "window": 60, "nodes": 10**19}},
            "/services/1/plugins/limit-count/nodes",
            "Expected `int` <= 100000",
        ),
        # Before: accepted, and the (burst + 1) x interval tolerance wrapped around in
        # int64: every request after the first was refused.
        (
            {"limit-req": {"rate": 1, "burst": 2**62}},
            "/services/1/plugins/limit-req/burst",
            "Expected `int` <= 1000000000000000",
        ),
        (
            {"limit-req": {"rate": 0.001, "burst": 10**7}},
            "/services/1/plugins/limit-req/burst",
            "burst + 1 units at this rate take 317 years to refill",
        ),
    ],
)
def test_limits_too_large_for_the_steps_are_refused_with_their_pointer(
    harness: Harness, plugin: dict[str, Any], pointer: str, message: str
) -> None:
    from tests.test_admin_api import Admin

    admin = Admin(harness)
    service = {"upstream": admin.a.url, "prefix": "/x", "plugins": plugin}
    status, _, body = admin.call("PUT", "/admin/services/x", service)
    assert status == 422, body
    problem = body["problems"][0]
    assert (problem["pointer"], problem["message"][: len(message)]) == (pointer, message)
    assert admin.call("GET", "/admin/services/x")[0] == 404  # the running config stays
    assert admin.get("/stable/a")[0] == 200


def test_a_large_burst_within_the_bounds_admits_it(harness: Harness) -> None:
    limited = Limited(harness, {"limit-req": {"rate": 1, "burst": 10**6, "headers": True}})
    for remaining in (10**6, 10**6 - 1, 10**6 - 2):
        status, headers, _ = limited.request()
        assert status == 200 and headers["ratelimit"].startswith(f'"limit-req";r={remaining};')


class Broken:
    """A custom plugin whose constructor fails (a bug of its own)."""

    name = "broken"
    phase = "access"

    def __init__(self) -> None:  # (no Config: made without settings)
        raise RuntimeError("the plugin's own bug")

    def request(self, view: Any) -> None:
        return None


@pytest.mark.parametrize(
    ("plugin", "pointer", "message"),
    [
        # Before: OverflowError out of the build, the admin API's 500.
        (
            {"jwt-auth": {"keys": [{"alg": "HS256", "secret": "s" * 40}], "cache_size": 10**19}},
            "/services/1/plugins/jwt-auth/cache_size",
            "Expected `int` <= 100000000",
        ),
        (
            {"basic-auth": {"max_pending": 10**19}},
            "/services/1/plugins/basic-auth/max_pending",
            "Expected `int` <= 1000000",
        ),
        # Before: the RuntimeError out of the build, a 500 too.
        (
            {"broken": {}},
            "/services/1/plugins/broken",
            "broken can not be made with these settings: RuntimeError: the plugin's own bug",
        ),
    ],
)
def test_a_plugin_that_can_not_be_made_is_a_problem_not_a_500(
    harness: Harness, plugin: dict[str, Any], pointer: str, message: str
) -> None:
    from tests.test_admin_api import Admin

    admin = Admin(harness, {"custom_plugins": ["tests.test_plugins_edge_hunt:Broken"]})
    service = {"upstream": admin.a.url, "prefix": "/x", "plugins": plugin}
    status, _, body = admin.call("PUT", "/admin/services/x", service)
    assert status == 422, body
    problem = body["problems"][0]
    assert (problem["pointer"], problem["message"]) == (pointer, message)
    assert admin.call("GET", "/admin/services/x")[0] == 404
    assert admin.get("/stable/a")[0] == 200


# -- logging: what a client sends is bounded and escaped in the gateway's own log -----------


def test_an_invalid_query_key_is_logged_bounded_and_escaped(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    # Report-only validation logs why a request is invalid. A deepObject property the
    # schema does not allow is named by the client's key, which went into the log line
    # whole and raw: a newline forged a log line, kilobytes of junk went in twice.
    spec = {
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/items": {
                "get": {
                    "operationId": "list",
                    "parameters": [
                        {
                            "name": "d",
                            "in": "query",
                            "style": "deepObject",
                            "explode": True,
                            "schema": {
                                "type": "object",
                                "properties": {"a": {"type": "integer"}},
                                "additionalProperties": False,
                            },
                        }
                    ],
                    "responses": {"200": {"description": "ok"}},
                }
            }
        },
    }
    upstream = harness.aiohttp(echo_app())
    gw = harness.gateway(
        {
            "services": [
                {
                    "name": "api",
                    "openapi": spec,
                    "upstream": upstream.url,
                    "validation": {"mode": "report"},
                }
            ]
        }
    )
    junk = "%0AWARNING%20forged%1B[31m%7F" + "y" * 5000
    with caplog.at_level("WARNING", logger="runmcp_fast.validation"):
        status, _, _ = _get(harness, gw.port, f"/items?d[{junk}]=1")
        assert status == 200  # report-only: forwarded
        assert wait_until(lambda: any("report-only" in r.getMessage() for r in caplog.records))
    (message,) = [r.getMessage() for r in caplog.records if "report-only" in r.getMessage()]
    assert "\n" not in message and "\x1b" not in message and "\x7f" not in message
    assert "/query/d/\\nWARNING forged\\u001b[31m\\u007fyyy" in message
    assert len(message) < 600  # the key was 5 KB, twice


# -- plugin counters: Prometheus counters, never reset by a config change -------------------


def _events(harness: Harness) -> dict[tuple[str, ...], int]:
    """runmcp_plugin_events_total, runmcp_rate_limit_decisions_total and
    runmcp_plugin_errors_total as this gateway's scrape would read them now."""
    gw = harness._gateways[-1]
    samples = gw.loop_thread.call(gw.gateway.local_samples)
    out: dict[tuple[str, ...], int] = {}
    for family in (
        "runmcp_plugin_events_total",
        "runmcp_rate_limit_decisions_total",
        "runmcp_plugin_errors_total",
    ):
        for labels, value in samples[family].items():
            out[(family, *labels)] = value
    return out


def test_plugin_counters_go_on_across_a_consumer_change(harness: Harness, tmp_path: Path) -> None:
    # jwt-auth's and basic-auth's steps are made again whenever any consumer changes (they
    # map credentials to consumers), the others with them (every route's steps depend on
    # the consumers), and a limit whenever its settings change. Their counters were the
    # step's own: they started again from 0, which Prometheus reads as a reset.
    from tests.test_plugins_jwt import AUD, ISS, SECRET

    upstream = harness.aiohttp(echo_app())
    log = tmp_path / "access.log"
    hs = {"keys": [{"kid": "hs", "alg": "HS256", "secret": SECRET}], "issuer": ISS, "audience": AUD}
    password_hash = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    gw = harness.gateway(
        {
            "admin": {"address": "127.0.0.1:0", "token": "t" * 32},
            "plugins": {"access-log": {"file": str(log)}},
            "consumers": [
                {"name": "alice", "jwt-auth": {"value": "alice"}},
                {"name": "bob", "basic-auth": {"username": "bob", "password_hash": password_hash}},
            ],
            "services": [
                {
                    "name": "api",
                    "upstream": upstream.url,
                    "prefix": "/api",
                    "plugins": {"jwt-auth": hs, "limit-count": {"count": 100, "window": 3600}},
                },
                {
                    "name": "basic",
                    "upstream": upstream.url,
                    "prefix": "/basic",
                    "plugins": {"basic-auth": {}},
                },
            ],
        }
    )
    alice = bearer(token(SECRET.encode(), "HS256", "hs"))
    assert _get(harness, gw.port, headers=alice)[0] == 200  # verified
    assert _get(harness, gw.port, headers=alice)[0] == 200  # from the cache
    assert _get(harness, gw.port, headers=bearer("not.a.token"))[0] == 401  # refused
    basic = "Authorization: Basic " + base64.b64encode(b"bob:pw").decode() + "\r\n"
    assert _get(harness, gw.port, "/basic/x", headers=basic)[0] == 200
    assert wait_until(
        lambda: _events(harness)[("runmcp_plugin_events_total", "access-log", "lines")] == 4
    )
    before = _events(harness)
    assert before[("runmcp_plugin_events_total", "jwt-auth", "verified")] == 1
    assert before[("runmcp_plugin_events_total", "jwt-auth", "cached")] == 1
    assert before[("runmcp_plugin_events_total", "jwt-auth", "refused")] == 1
    assert before[("runmcp_rate_limit_decisions_total", "limit-count", "allowed")] == 2

    gw.loop_thread.run(gw.gateway.register_consumer("carol", jwt_auth={"value": "carol"}))
    assert _step(harness, "jwt-auth").cache_entries == 0  # made again (see JwtAuthStep)
    after = _events(harness)
    assert {k: v for k, v in after.items() if k in before} == before, "a counter went back"

    # A limit's settings changed: a new limit (its table empty), its decisions counted on.
    gw.loop_thread.run(
        gw.gateway.update_service(
            "api", plugins={"jwt-auth": hs, "limit-count": {"count": 50, "window": 3600}}
        )
    )
    assert _get(harness, gw.port, headers=alice)[0] == 200  # checked again, then cached
    assert wait_until(
        lambda: _events(harness)[("runmcp_plugin_events_total", "access-log", "lines")] == 5
    )
    now = _events(harness)
    assert now[("runmcp_plugin_events_total", "jwt-auth", "verified")] == 2
    assert now[("runmcp_plugin_events_total", "jwt-auth", "cached")] == 1
    assert now[("runmcp_rate_limit_decisions_total", "limit-count", "allowed")] == 3
    assert all(now[k] >= v for k, v in before.items())
