"""Plugins on a real gateway: authentication (key-auth, basic-auth), consumer-restriction,
the levels settings merge over, consumers' own plugins, custom plugins, and the config
problems each can have (file + pointer + hint, the running config untouched)."""

from __future__ import annotations

import base64
import json
from typing import Any

import bcrypt
import pytest
from argon2 import PasswordHasher

from runmcp_fast.config import config_from_data
from runmcp_fast.problems import SnapshotError
from runmcp_fast.snapshot import build_snapshot
from tests.plugin_samples import Pause
from tests.servers import ECHO_COUNT, Harness, echo_app, wait_until

ALICE_KEY = "alice-key-0123456789"
BOB_KEY = "bob-key-9876543210"
CAROL_HASH = bcrypt.hashpw(b"carol's secret", bcrypt.gensalt(4)).decode()
DAVE_HASH = PasswordHasher(time_cost=1, memory_cost=8192).hash("dave's secret")

CONSUMERS: list[dict[str, Any]] = [
    {"name": "alice", "groups": ["staff"], "key-auth": {"key": ALICE_KEY}},
    {"name": "bob", "groups": ["guests"], "key-auth": {"key": BOB_KEY}},
    {
        "name": "carol",
        "groups": ["staff"],
        "basic-auth": {"username": "carol", "password_hash": CAROL_HASH},
    },
    {"name": "dave", "basic-auth": {"username": "dave", "password_hash": DAVE_HASH}},
    {"name": "guest"},
]

SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "t", "version": "1"},
    "paths": {
        "/open": {"get": {"operationId": "open", "responses": {"200": {"description": "ok"}}}},
        "/closed": {"get": {"operationId": "closed", "responses": {"200": {"description": "ok"}}}},
        "/tagged": {"get": {"operationId": "tagged", "responses": {"200": {"description": "ok"}}}},
    },
}


def _get(
    harness: Harness, port: int, path: str, headers: str = ""
) -> tuple[int, dict[str, str], Any]:
    client = harness.client(port)
    client.send(f"GET {path} HTTP/1.1\r\nHost: h\r\n{headers}\r\n".encode())
    status, response_headers, body = client.read_response()
    try:
        return status, response_headers, json.loads(body)
    except ValueError:
        return status, response_headers, body


def _sent(body: Any, name: str) -> list[str]:
    """The values of header `name` the echo upstream received."""
    return [v for n, v in body["headers"] if n.lower() == name.lower()]


def _gateway(harness: Harness, **data: Any) -> tuple[int, Any]:
    app = echo_app()
    upstream = harness.aiohttp(app)
    services = data.pop("services", None) or [
        {"name": "api", "upstream": upstream.url, "prefix": "/api", **data.pop("service", {})}
    ]
    for service in services:
        service.setdefault("upstream", upstream.url)
    gateway = harness.gateway({"consumers": CONSUMERS, "services": services, **data})
    return gateway.port, app


# -- key-auth ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "path", "status", "detail"),
    [
        ("", "/api/x", 401, "no API key: send it in the apikey header"),
        (f"apikey: {ALICE_KEY}\r\n", "/api/x", 200, None),
        (f"APIKEY:  {ALICE_KEY} \r\n", "/api/x", 200, None),  # names are case-insensitive
        ("apikey: alice-key-0123456788\r\n", "/api/x", 401, "the API key is not valid"),
        (f"apikey: {ALICE_KEY[:-1]}\r\n", "/api/x", 401, "the API key is not valid"),
        ("apikey: \r\n", "/api/x", 401, "the API key is not valid"),
        # A key sent twice could be read two ways downstream: refused, whatever the keys.
        (f"apikey: {ALICE_KEY}\r\napikey: {ALICE_KEY}\r\n", "/api/x", 401, "more than one"),
        (f"apikey: {ALICE_KEY}\r\napikey: {BOB_KEY}\r\n", "/api/x", 401, "more than one"),
        # No query parameter unless configured.
        ("", f"/api/x?apikey={ALICE_KEY}", 401, "no API key"),
    ],
)
def test_key_auth_table(
    harness: Harness, headers: str, path: str, status: int, detail: str | None
) -> None:
    port, app = _gateway(harness, plugins={"key-auth": {}})
    got, response_headers, body = _get(harness, port, path, headers)
    assert got == status, body
    if status == 401:
        assert response_headers["www-authenticate"] == 'Key realm="runmcp-fast"'
        assert response_headers["content-type"] == "application/problem+json"
        assert body["detail"].startswith(detail)
        assert app[ECHO_COUNT][0] == 0
    else:
        assert _sent(body, "apikey") == []  # never passed upstream


def test_key_auth_from_the_query_is_removed_before_the_upstream(harness: Harness) -> None:
    port, _ = _gateway(harness, plugins={"key-auth": {"query": "key", "header": "X-Api-Key"}})
    status, _, body = _get(harness, port, f"/api/x?a=1&key={ALICE_KEY}&b=2")
    assert status == 200 and body["path"] == "/api/x?a=1&b=2"
    status, _, body = _get(harness, port, "/api/x", f"X-Api-Key: {ALICE_KEY}\r\n")
    assert status == 200
    # In the query and in the header at once: ambiguous.
    status, _, _ = _get(harness, port, f"/api/x?key={ALICE_KEY}", f"X-Api-Key: {ALICE_KEY}\r\n")
    assert status == 401
    status, _, _ = _get(harness, port, f"/api/x?key={ALICE_KEY}&key={BOB_KEY}")
    assert status == 401
    status, _, body = _get(harness, port, "/api/x?key=alice%2Dkey%2D0123456789")
    assert status == 200  # percent-decoded


def test_key_auth_can_keep_the_key_and_let_anonymous_in(harness: Harness) -> None:
    port, _ = _gateway(
        harness,
        plugins={"key-auth": {"hide_credentials": False, "anonymous": "guest"}},
        service={"plugins": {"consumer-restriction": {"deny": {"consumers": ["bob"]}}}},
    )
    status, _, body = _get(harness, port, "/api/x", f"apikey: {ALICE_KEY}\r\n")
    assert status == 200 and _sent(body, "apikey") == [ALICE_KEY]
    assert _get(harness, port, "/api/x")[0] == 200  # guest
    assert _get(harness, port, "/api/x", "apikey: nope-nope-nope\r\n")[0] == 401
    assert _get(harness, port, "/api/x", f"apikey: {BOB_KEY}\r\n")[0] == 403


# -- basic-auth -------------------------------------------------------------------------------


def _basic(user: str, password: str) -> str:
    return "Authorization: Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        (_basic("carol", "carol's secret"), 200),  # bcrypt
        (_basic("dave", "dave's secret"), 200),  # argon2
        (_basic("carol", "carol's secreT"), 401),
        (_basic("carol", ""), 401),
        (_basic("nobody", "carol's secret"), 401),
        (_basic("dave", "carol's secret"), 401),
        ("Authorization: Basic !!!not-base64!!!", 401),
        ("Authorization: Basic " + base64.b64encode(b"carol").decode(), 401),  # no colon
        ("Authorization: Bearer abc", 401),
        ("", 401),
    ],
)
def test_basic_auth_table(harness: Harness, authorization: str, status: int) -> None:
    port, app = _gateway(harness, plugins={"basic-auth": {"realm": "pets"}})
    got, headers, body = _get(
        harness, port, "/api/x", authorization + "\r\n" if authorization else ""
    )
    assert got == status, body
    if status == 401:
        assert headers["www-authenticate"] == 'Basic realm="pets", charset="UTF-8"'
        assert app[ECHO_COUNT][0] == 0
    else:
        assert _sent(body, "authorization") == []


def test_basic_auth_remembers_a_checked_password_and_not_a_wrong_one(harness: Harness) -> None:
    port, _ = _gateway(harness, plugins={"basic-auth": {}})
    step = _step(harness, "basic-auth")
    for _ in range(3):
        assert _get(harness, port, "/api/x", _basic("carol", "carol's secret") + "\r\n")[0] == 200
    assert step.cached == 1
    assert _get(harness, port, "/api/x", _basic("carol", "wrong") + "\r\n")[0] == 401
    assert step.cached == 1
    both = _basic("carol", "carol's secret") + "\r\n" + _basic("carol", "carol's secret") + "\r\n"
    assert _get(harness, port, "/api/x", both)[0] == 401  # twice: ambiguous


def _step(harness: Harness, name: str) -> Any:
    snapshot = harness._gateways[-1].gateway.snapshot
    for route in snapshot.router.routes():
        for step in route.target.chain.steps:
            if step.name == name:
                return step
    raise AssertionError(f"no step {name}")


# -- consumer-restriction ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "alice", "bob"),
    [
        ({"allow": {"groups": ["staff"]}}, 200, 403),
        ({"allow": {"consumers": ["bob"]}}, 403, 200),
        ({"allow": {"groups": ["staff"]}, "deny": {"consumers": ["alice"]}}, 403, 403),
        ({"deny": {"groups": ["guests"]}, "rejected_code": 404}, 200, 404),
    ],
)
def test_consumer_restriction(
    harness: Harness, rules: dict[str, Any], alice: int, bob: int
) -> None:
    plugin = "acl" if "rejected_code" in rules else "consumer-restriction"
    port, _ = _gateway(harness, plugins={"key-auth": {}}, service={"plugins": {plugin: rules}})
    assert _get(harness, port, "/api/x", f"apikey: {ALICE_KEY}\r\n")[0] == alice
    assert _get(harness, port, "/api/x", f"apikey: {BOB_KEY}\r\n")[0] == bob


def test_consumer_restriction_without_authentication_refuses(harness: Harness) -> None:
    port, _ = _gateway(
        harness, service={"plugins": {"consumer-restriction": {"allow": {"groups": ["staff"]}}}}
    )
    status, _, body = _get(harness, port, "/api/x")
    assert status == 401 and "needs an authenticated consumer" in body["detail"]


# -- levels, consumers' own plugins, custom plugins -------------------------------------------


def test_levels_merge_global_service_operation_then_consumer(harness: Harness) -> None:
    consumers = [
        *CONSUMERS,
        {
            "name": "vip",
            "key-auth": {"key": "vip-key-000000000"},
            "plugins": {"tag": {"value": "vip"}},
        },
    ]
    port, _ = _gateway(
        harness,
        custom_plugins=["tests.plugin_samples:Tag"],
        plugins={"key-auth": {}, "tag": {"value": "global"}},
        consumers=consumers,
        services=[
            {
                "name": "api",
                "openapi": SPEC,
                "plugins": {"tag": {"value": "service"}},
                "operations": {
                    "open": {"plugins": {"key-auth": {"disable": True}}},
                    "tagged": {"plugins": {"tag": {"value": "operation"}}},
                },
            }
        ],
    )
    alice = f"apikey: {ALICE_KEY}\r\n"
    status, headers, body = _get(harness, port, "/open")
    assert status == 200 and headers["x-tag"] == "service" and _sent(body, "x-tag") == ["service"]
    assert _get(harness, port, "/closed")[0] == 401
    status, headers, _ = _get(harness, port, "/closed", alice)
    assert status == 200 and headers["x-tag"] == "service"
    status, headers, body = _get(harness, port, "/tagged", alice)
    assert headers["x-tag"] == "operation" and _sent(body, "x-tag") == ["operation"]
    # The consumer's own settings win once key-auth has identified it.
    status, headers, body = _get(harness, port, "/tagged", "apikey: vip-key-000000000\r\n")
    assert status == 200 and headers["x-tag"] == "vip" and _sent(body, "x-tag") == ["vip"]
    # The routes list their chains in the order they run.
    steps = {
        route.target.name: route.target.chain.names()
        for route in harness._gateways[-1].gateway.snapshot.router.routes()
    }
    assert steps["open"] == ["tag"]
    assert steps["closed"] == ["key-auth", "tag"]


def test_a_live_change_leaves_requests_in_flight_on_their_chain(harness: Harness) -> None:
    Pause.entered.clear()
    Pause.release = None
    port, app = _gateway(
        harness,
        custom_plugins=["tests.plugin_samples:Pause"],
        service={"plugins": {"pause": {}, "key-auth": {}}},
    )
    held = harness.client(port)
    held.send(f"GET /api/held HTTP/1.1\r\nHost: h\r\napikey: {ALICE_KEY}\r\n\r\n".encode())
    gateway = harness._gateways[-1].gateway
    loop = harness.gateway_loop
    assert wait_until(lambda: Pause.entered == ["/api/held"])
    # Drop both plugins from the service: new requests need no key, and are not held.
    loop.run(gateway.update_service("api", plugins={}))
    assert _get(harness, port, "/api/now")[0] == 200

    def release() -> None:
        assert Pause.release is not None
        Pause.release.set()

    loop.call(release)
    status, _, body = held.read_response()
    assert status == 200  # its chain went on: key-auth ran, and the key was taken off
    assert _sent(json.loads(body), "apikey") == [] and app[ECHO_COUNT][0] == 2


# -- problems, with their pointers -----------------------------------------------------------


def _problems(data: dict[str, Any]) -> list[tuple[str, str, str]]:
    data = {"listeners": [{"address": "127.0.0.1:0"}], **data}
    config = config_from_data(data, source="<t>", base_dir=".")
    with pytest.raises(SnapshotError) as caught:
        build_snapshot(config, lambda _u: None, "<t>")
    return [(p.pointer, p.message, p.hint) for p in caught.value.problems]


SERVICE = {"name": "api", "upstream": "http://127.0.0.1:1", "prefix": "/"}


@pytest.mark.parametrize(
    ("data", "pointer", "message", "hint"),
    [
        (
            {"plugins": {"key-auht": {}}},
            "/plugins/key-auht",
            "no plugin named 'key-auht' is installed",
            "did you mean 'key-auth'?",
        ),
        (
            {"plugins": {"key-auth": {"header": 5}}},
            "/plugins/key-auth/header",
            "Expected `str`, got `int`",
            "its keys: header, query, hide_credentials, anonymous",
        ),
        (
            {"plugins": {"key-auth": {"heder": "x"}}},
            "/plugins/key-auth/heder",
            "unknown key 'heder'",
            "did you mean 'header'?",
        ),
        (
            {"plugins": {"key-auth": {"header": "bad header"}}},
            "/plugins/key-auth/header",
            "Expected `str` matching regex",
            "",
        ),
        (
            {"plugins": {"key-auth": {"disable": "yes"}}},
            "/plugins/key-auth/disable",
            "disable must be true or false",
            "",
        ),
        (
            {"plugins": {"key-auth": {"anonymous": "nobody"}}},
            "/plugins/key-auth",
            "no consumer named 'nobody'",
            "name one of `consumers`",
        ),
        (
            {"consumers": [{"name": "a", "plugins": {"key-auth": {}}}]},
            "/consumers/0/plugins/key-auth",
            "key-auth can not be given per consumer",
            "give it at: global, operation, service",
        ),
        (
            {
                "plugins": {"key-auth": {}},
                "consumers": [{"name": "a", "key-auth": {"key": "short"}}],
            },
            "/consumers/0/key-auth/key",
            "the key is shorter than 8 bytes",
            "use a long random key",
        ),
        (
            {
                "plugins": {"key-auth": {}},
                "consumers": [
                    {"name": "a", "key-auth": {"key": "same-key-123"}},
                    {"name": "b", "key-auth": {"key": "same-key-123"}},
                ],
            },
            "/consumers/1/key-auth/key",
            "consumer 'a' has the same key",
            "each consumer needs its own key",
        ),
        (
            {
                "plugins": {"key-auth": {}},
                "consumers": [
                    {"name": "a", "key-auth": {"key": {"env": "RUNMCP_TEST_UNSET_VARIABLE"}}}
                ],
            },
            "/consumers/0/key-auth/key/env",
            "the environment variable RUNMCP_TEST_UNSET_VARIABLE is not set",
            "set it for the gateway's process",
        ),
        (
            {"consumers": [{"name": "a", "key-auth": {"kee": "x"}}]},
            "/consumers/0/key-auth/kee",
            "unknown key 'kee'",
            "did you mean 'key'?",
        ),
        (
            {
                "consumers": [
                    {"name": "a", "basic-auth": {"username": "a", "password_hash": "hunter2"}}
                ]
            },
            "/consumers/0/basic-auth/password_hash",
            "not a bcrypt or argon2 hash",
            "",
        ),
        (
            {"plugins": {"consumer-restriction": {}}},
            "/plugins/consumer-restriction",
            "give allow, deny or both",
            "e.g. allow: {groups: [staff]}",
        ),
        (
            {"plugins": {"consumer-restriction": {"allow": {"consumers": ["zed"]}}}},
            "/plugins/consumer-restriction/allow/consumers/0",
            "no consumer named 'zed'",
            "",
        ),
        (
            {"custom_plugins": ["tests.plugin_samples:NotAPlugin"]},
            "/custom_plugins/0",
            "tests.plugin_samples:NotAPlugin: the class has no str `name`",
            "",
        ),
        (
            {"custom_plugins": ["no_such_module_here:X"]},
            "/custom_plugins/0",
            "can not import 'no_such_module_here': ModuleNotFoundError: No module named 'no_such_module_here'",
            "is the package installed in the gateway's environment?",
        ),
    ],
)
def test_plugin_problems_name_the_pointer_and_the_fix(
    data: dict[str, Any], pointer: str, message: str, hint: str
) -> None:
    found = _problems({"services": [SERVICE], **data})
    matching = [p for p in found if p[0] == pointer]
    assert matching, found
    _, got_message, got_hint = matching[0]
    assert got_message.startswith(message), got_message
    assert got_hint.startswith(hint), got_hint


def test_an_operation_that_the_spec_does_not_have() -> None:
    found = _problems(
        {
            "services": [
                {
                    "name": "api",
                    "upstream": "http://127.0.0.1:1",
                    "openapi": SPEC,
                    "operations": {"opne": {"plugins": {}}},
                }
            ]
        }
    )
    assert found == [
        ("/services/0/operations/opne", "the spec has no operation 'opne'", "did you mean 'open'?")
    ]


def test_a_refused_plugin_change_leaves_the_running_config(harness: Harness) -> None:
    port, _ = _gateway(harness, plugins={"key-auth": {}})
    gateway = harness._gateways[-1].gateway
    with pytest.raises(SnapshotError) as caught:
        harness.gateway_loop.run(gateway.update_service("api", plugins={"key-auth": {"header": 1}}))
    assert caught.value.problems[0].pointer.endswith("/plugins/key-auth/header")
    assert _get(harness, port, "/api/x")[0] == 401
    assert _get(harness, port, "/api/x", f"apikey: {ALICE_KEY}\r\n")[0] == 200
