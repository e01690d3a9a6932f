"""MCP settings in the config: every mistake named by its pointer, with a fix; session ids."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from runmcp_fast.config import config_from_data
from runmcp_fast.mcp.affinity import SessionCodec, derive_key
from runmcp_fast.mcp.proxy import SessionRouter
from runmcp_fast.mcp.server import McpEndpoint
from runmcp_fast.problems import ConfigError, SnapshotError
from runmcp_fast.snapshot import build_snapshot, check_routes

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "T", "version": "1"},
    "paths": {"/items": {"get": {"operationId": "listItems"}}},
}


def config(*services: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"listeners": [{"address": "127.0.0.1:0"}], "services": list(services), **top}


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config_from_data(data, source="gw.yaml")
    return [f"{p.pointer}: {p.message} ({p.hint})" for p in caught.value.problems]


MCP = {"name": "m", "kind": "mcp", "upstream": "http://127.0.0.1:9/mcp"}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            config({**MCP, "openapi": SPEC}),
            "/services/0/openapi: openapi does not apply to an MCP server (kind: mcp)",
        ),
        (config({**MCP, "prefix": "/x"}), "/services/0/prefix: prefix does not apply"),
        (config({**MCP, "mcp": {"path": "mcp"}}), "/services/0/mcp/path: 'mcp' is not a path"),
        (
            config({**MCP, "mcp": {"allowed_origins": ["app.example.com"]}}),
            "/services/0/mcp/allowed_origins/0: 'app.example.com' is not an origin",
        ),
        (
            config({**MCP, "mcp": {"messages_path": "/m"}}),
            "/services/0/mcp/messages_path: messages_path applies to transport: sse",
        ),
        (
            config(
                {"name": "a", "upstream": "http://h", "openapi": SPEC, "mcp": {"transport": "sse"}}
            ),
            "/services/0/mcp/transport: transport applies to kind: mcp only",
        ),
        (
            config({**MCP, "mcp": {"keepalive_interval": -1}}),
            "/services/0/mcp/keepalive_interval: a negative interval",
        ),
        (config({**MCP, "mcp": {"page_size": 0}}), "/services/0/mcp/page_size: a page holds"),
        (
            config(MCP, mcp_servers=[{"name": "v", "members": [{"service": "mm"}]}]),
            "/mcp_servers/0/members/0/service: no top-level service named 'mm' (did you mean 'm'?)",
        ),
        (
            config(
                {"name": "plain", "upstream": "http://h", "prefix": "/"},
                mcp_servers=[{"name": "v", "members": [{"service": "plain"}]}],
            ),
            "/mcp_servers/0/members/0/service: service 'plain' has neither tools nor an MCP server",
        ),
        (
            config(MCP, mcp_servers=[{"name": "v", "members": [], "path": "x"}]),
            "/mcp_servers/0/path: 'x' is not a path",
        ),
        (
            config({**MCP, "mcp": {"pagesize": 3}}),
            "/services/0/mcp/pagesize",
        ),
        (
            # Went into every tool name: "my tools/echo", which LLM APIs and the SDK's
            # tool-name rules refuse.
            config(
                MCP,
                mcp_servers=[{"name": "v", "members": [{"service": "m", "prefix": "my tools/"}]}],
            ),
            "/mcp_servers/0/members/0/prefix: 'my tools/' can not start a tool name",
        ),
    ],
)
def test_mcp_config_mistakes_are_named(data: dict[str, Any], expected: str) -> None:
    found = problems(data)
    assert any(p.startswith(expected) for p in found), found


def test_a_taken_default_mcp_path_is_a_warning_an_explicit_one_an_error() -> None:
    two = config(
        {"name": "a", "upstream": "http://127.0.0.1:9", "openapi": SPEC},
        {"name": "b", "upstream": "http://127.0.0.1:9", "openapi": SPEC, "base_path": "/b"},
        {"name": "c", "upstream": "http://127.0.0.1:9", "prefix": "/c"},
    )
    # a at /mcp, b at /b/mcp: no clash.
    snapshot = build_snapshot(config_from_data(two), lambda _u: None)
    assert len(snapshot.mcp_endpoints) == 2
    clash = config(
        {"name": "a", "upstream": "http://127.0.0.1:9", "openapi": SPEC},
        {"name": "b", "upstream": "http://127.0.0.1:9", "openapi": SPEC, "host": "b.test"},
        {
            "name": "c",
            "upstream": "http://127.0.0.1:9",
            "openapi": SPEC,
            "base_path": "/x",
            "mcp": {"path": "/mcp"},
        },
    )
    with pytest.raises(SnapshotError) as caught:
        build_snapshot(config_from_data(clash), lambda _u: None)
    assert "service 'c' has a route that service 'a'" in str(caught.value)
    quiet = config(
        {"name": "a", "upstream": "http://127.0.0.1:9", "openapi": SPEC},
        {
            "name": "b",
            "upstream": "http://127.0.0.1:9",
            "openapi": SPEC,
            "base_path": "/y",
            "mcp": {"path": "/mcp"},
            "host": "b.test",
        },
        {
            "name": "c",
            "upstream": "http://127.0.0.1:9",
            "openapi": {**SPEC, "paths": {"/mcp": {"get": {"operationId": "own"}}}},
            "host": "c.test",
        },
    )
    warnings = check_routes(config_from_data(quiet))
    assert [w.message for w in warnings if "MCP" in w.message] == [
        "service 'c': no MCP endpoint at /mcp, the path is taken"
    ]


# -- sealed session ids --------------------------------------------------------------


KEY = derive_key(b"test secret")
REPLICAS = ("http://10.0.0.1:9/mcp", "http://10.0.0.2:9/mcp")


def test_a_sealed_id_opens_to_its_replica_and_upstream_id() -> None:
    codec = SessionCodec(KEY, "svc", REPLICAS)
    token = codec.seal(1, b"abc-123")
    assert b"abc" not in token and all(33 <= c < 127 for c in token)
    # Another worker or node: a codec of its own, the same secret.
    other = SessionCodec(derive_key(b"test secret"), "svc", REPLICAS)
    assert other.open(token) == (1, b"abc-123")
    # Replicas listed in another order still route by identity.
    assert SessionCodec(KEY, "svc", REPLICAS[::-1]).open(token) == (0, b"abc-123")
    assert codec.seal(1, b"abc-123") != token  # a fresh nonce each time
    # seal_once: the same session seals to the same id (upstreams repeat it on every
    # response)...
    once = codec.seal_once(1, b"abc-123")
    assert codec.seal_once(1, b"abc-123") == once and once != token
    # ...and another codec (worker, node) spells it with a fresh nonce, which opens alike.
    again = other.seal_once(1, b"abc-123")
    assert again != once and codec.open(again) == (1, b"abc-123")


@pytest.mark.parametrize(
    "codec",
    [
        SessionCodec(KEY, "other-service", REPLICAS),
        SessionCodec(derive_key(b"another secret"), "svc", REPLICAS),
        SessionCodec(KEY, "svc", ("http://10.0.0.1:9/mcp",)),  # its replica was removed
    ],
    ids=["other-service", "other-key", "replica-gone"],
)
def test_ids_do_not_open_elsewhere(codec: SessionCodec) -> None:
    token = SessionCodec(KEY, "svc", REPLICAS).seal(1, b"abc")
    assert codec.open(token) is None


def test_every_single_byte_change_is_refused() -> None:
    codec = SessionCodec(KEY, "svc", REPLICAS)
    token = codec.seal(0, b"session")
    fresh = SessionCodec(KEY, "svc", REPLICAS)  # no cache of the genuine one
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i in range(len(token)):
        for c in (alphabet[(alphabet.index(token[i]) + 1) % 64], ord("!")):
            forged = token[:i] + bytes([c]) + token[i + 1 :]
            assert fresh.open(forged) is None, (i, forged)
    assert (
        fresh.open(b"") is None
        and fresh.open(b"=" * 40) is None
        and fresh.open(b"x" * 5000) is None
    )


def test_a_member_with_its_endpoint_off_still_lends_its_tools() -> None:
    data = config(
        {"name": "a", "upstream": "http://127.0.0.1:9", "openapi": SPEC, "mcp": {"enabled": False}},
        mcp_servers=[
            {"name": "v", "path": "/v/mcp", "members": [{"service": "a", "prefix": "x_"}]}
        ],
    )
    snapshot = build_snapshot(config_from_data(data), lambda _u: None)
    (virtual,) = snapshot.mcp_endpoints  # no endpoint of its own
    assert virtual.key == "virtual v"
    assert [m.names for m in virtual.members] == [{"x_listItems": "listItems"}]  # type: ignore[attr-defined]


def test_an_ended_session_is_forgotten_but_still_opens() -> None:
    codec = SessionCodec(KEY, "svc", REPLICAS)
    token = codec.seal(1, b"abc")
    assert len(codec) == 1
    codec.forget(token)
    assert len(codec) == 0
    assert codec.open(token) == (1, b"abc")  # by decryption; remembered again
    assert len(codec) == 1


def test_the_proxy_forgets_a_session_at_its_delete() -> None:
    """The opened-id cache holds live sessions: a DELETE ends one (bench/soak saw the
    cache grow by one entry per session, ~250 bytes each, up to its limit)."""
    codec = SessionCodec(KEY, "svc", REPLICAS)
    router = SessionRouter("svc", codec, (), REPLICAS, ())
    token = codec.seal(0, b"upstream-id")
    for method in (b"POST", b"GET"):
        lines = [b"Mcp-Session-Id", b"", token, b""]
        assert router.request(method, b"/mcp", b"127.0.0.1", lines) == 0
        assert lines[2] == b"upstream-id" and len(codec) == 1
    lines = [b"Mcp-Session-Id", b"", token, b""]
    assert router.request(b"DELETE", b"/mcp", b"127.0.0.1", lines) == 0
    assert lines[2] == b"upstream-id"  # still sent to the replica, with its own id
    assert len(codec) == 0


def test_an_endpoint_forgets_the_opened_id_of_a_session_it_ends() -> None:
    endpoint = McpEndpoint("svc", "svc", page_size=10)
    token = endpoint._codec.seal(0, b"2025-06-18")
    request = SimpleNamespace(headers={"mcp-session-id": token.decode()})
    assert endpoint._session(request) == ("2025-06-18", None)  # type: ignore[arg-type]
    assert endpoint._end_session(request)[0] == 200  # type: ignore[arg-type]
    assert len(endpoint._codec) == 0
    _, refusal = endpoint._session(request)  # type: ignore[arg-type]
    assert refusal is not None and refusal[0] == 404  # ended: refused from now on
