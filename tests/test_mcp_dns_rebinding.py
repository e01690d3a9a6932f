"""DNS-rebinding protection of MCP endpoints (docs/mcp.md): on a loopback connection, an
endpoint that answers any Host refuses a non-loopback Host or Origin with 403.

A page of evil.example whose name now resolves to 127.0.0.1 sends `Host:
evil.example:<port>` and `Origin: http://evil.example:<port>`; "Origin equals
Host" holds for it, so only the loopback check stops it. The same table runs
against a proxied SDK server, a generated endpoint and a virtual server, over
IPv4 and IPv6 loopback listeners; a Unix socket listener (a connection with no
IP address, which no browser can open) is not affected. A listener on a
non-loopback address of this machine is not used: the only one here is the
test network's, where no traffic of the tests may go.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp_fixtures import ReplicaSet, mcp_replicas
from servers import AiohttpUpstream, GatewayThread, LoopThread, RawClient

from runmcp_fast._dataplane import loopback_host
from runmcp_fast.config import config_from_data
from runmcp_fast.problems import ConfigError

PETS: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Pets", "version": "1"},
    "servers": [{"url": "/v1"}],
    "paths": {"/pets": {"get": {"operationId": "listPets"}}},
}
INIT = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "rebinding-test", "version": "0"},
        },
    }
).encode()

# Each MCP endpoint of the gateway below: the proxy, a generated one, a virtual server.
ENDPOINTS = ["/mcp", "/v1/mcp", "/all/mcp"]


@pytest.fixture(scope="module")
def replicas() -> Iterator[ReplicaSet]:
    with mcp_replicas(1, any_host=True) as started:  # the upstream's own check off
        yield started


@pytest.fixture(scope="module")
def gw(replicas: ReplicaSet) -> Iterator[GatewayThread]:
    async def pets(request: web.Request) -> web.Response:
        return web.json_response([])

    app = web.Application()
    app.router.add_get("/v1/pets", pets)
    with LoopThread() as loop, tempfile.TemporaryDirectory() as tmp:
        upstream = AiohttpUpstream(app, loop)
        unix = os.path.join(tmp, "gw.sock")
        gateway = GatewayThread(
            {
                "listeners": [
                    {"address": "127.0.0.1:0"},
                    {"address": "[::1]:0"},
                    {"address": f"unix:{unix}"},
                ],
                "services": [
                    {
                        "name": "proxied",
                        "kind": "mcp",
                        "upstream": replicas.urls[0],
                        "host_header": "upstream",
                        "mcp": {"allowed_hosts": ["mcp.example.com", "other.example:8443"]},
                    },
                    {
                        "name": "pets",
                        "upstream": upstream.url,
                        "openapi": PETS,
                        "mcp": {"allowed_hosts": ["mcp.example.com"]},
                    },
                    {
                        "name": "open",
                        "kind": "mcp",
                        "upstream": replicas.urls[0],
                        "host_header": "upstream",
                        "mcp": {"path": "/open/mcp", "dns_rebinding_protection": False},
                    },
                    {
                        "name": "named",
                        "kind": "mcp",
                        "upstream": replicas.urls[0],
                        "host_header": "upstream",
                        "host": "tools.example",
                        "mcp": {"path": "/named/mcp"},
                    },
                ],
                "mcp_servers": [
                    {
                        "name": "all",
                        "path": "/all/mcp",
                        "members": [{"service": "pets"}, {"service": "proxied"}],
                        "allowed_hosts": ["mcp.example.com"],
                    }
                ],
            },
            loop,
        )
        gateway.unix = unix  # type: ignore[attr-defined]
        yield gateway
        gateway.stop()
        upstream.close()


def port_of(gw: GatewayThread, family: str) -> int:
    for address in gw.addresses:
        if family == "v6" and address.startswith("[::1]:"):
            return int(address.rsplit(":", 1)[1])
        if family == "v4" and address.startswith("127.0.0.1:"):
            return int(address.rsplit(":", 1)[1])
    raise AssertionError(f"no {family} listener in {gw.addresses}")


def post(client: RawClient, path: str, host: str, origin: str | None) -> tuple[int, Any]:
    extra = f"Origin: {origin}\r\n" if origin is not None else ""
    client.send(
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Accept: application/json, text/event-stream\r\n{extra}"
        f"Content-Length: {len(INIT)}\r\n\r\n".encode()
        + INIT
    )
    status, headers, body = client.read_response()
    if headers.get("content-type", "").startswith("application/json"):
        return status, json.loads(body)
    return status, body


def refused(answer: Any, what: str) -> bool:
    return isinstance(answer, dict) and answer.get("error") == {
        "code": -32600,
        "message": f"this {what} is not allowed",
    }


# (Host, Origin, refused for what, or None) on a loopback connection to `port`.
CASES = [
    ("evil.example:{port}", None, "Host"),
    ("evil.example:{port}", "http://evil.example:{port}", "Host"),  # what the attacker sends
    ("evil.example", None, "Host"),
    ("localhost:{port}", None, None),
    ("localhost", None, None),
    ("LOCALHOST:{port}", None, None),
    ("127.0.0.1", None, None),
    ("127.0.0.1:{port}", None, None),
    ("127.1.2.3:{port}", None, None),
    ("[::1]:{port}", None, None),
    ("[::1]", None, None),
    ("localhost:{port}", "http://localhost:{port}", None),
    ("127.0.0.1:{port}", "http://evil.example", "Origin"),
    ("127.0.0.1:{port}", "null", "Origin"),
    ("127.0.0.1.evil.example:{port}", None, "Host"),
    ("localhost.evil.example:{port}", None, "Host"),
    ("127.00.0.1:{port}", None, None),
    ("LocalHost", None, None),
    ("127.0.0.256:{port}", None, "Host"),
    ("127.0.0.1000:{port}", None, "Host"),
    ("127.0.0:{port}", None, "Host"),
    ("127.0.0.:{port}", None, "Host"),
    ("127..0.1:{port}", None, "Host"),
    ("127.0.0.1.:{port}", None, "Host"),
    ("127.0.0.1:", None, "Host"),  # no port after the colon: the name is all of it
    ("localhosts", None, "Host"),
    ("[::2]:{port}", None, "Host"),
    ("mcp.example.com", None, None),  # allowed_hosts: a name, any port
    ("mcp.example.com:9000", "http://mcp.example.com:9000", None),
]


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(("host", "origin", "refusal"), CASES)
def test_loopback_connections_refuse_other_hosts_and_origins(
    gw: GatewayThread, path: str, host: str, origin: str | None, refusal: str | None
) -> None:
    port = port_of(gw, "v4")
    with RawClient(port) as client:
        status, answer = post(
            client, path, host.format(port=port), origin.format(port=port) if origin else None
        )
    if refusal is None:
        assert status == 200, answer
    else:
        assert status == 403 and refused(answer, refusal), answer


def test_allowed_hosts_with_a_port_allow_that_port_only(gw: GatewayThread) -> None:
    with RawClient(port_of(gw, "v4")) as client:
        assert post(client, "/mcp", "other.example:8443", None)[0] == 200
        status, answer = post(client, "/mcp", "other.example:9999", None)
        assert status == 403 and refused(answer, "Host")
        # The virtual server has its own list.
        status, answer = post(client, "/all/mcp", "other.example:8443", None)
        assert status == 403 and refused(answer, "Host")


def test_ipv6_loopback_is_guarded_too(gw: GatewayThread) -> None:
    port = port_of(gw, "v6")
    with RawClient(port, host="::1") as client:
        status, answer = post(client, "/v1/mcp", f"evil.example:{port}", None)
        assert status == 403 and refused(answer, "Host")
        assert post(client, "/v1/mcp", f"[::1]:{port}", f"http://[::1]:{port}")[0] == 200


def test_turned_off_it_lets_any_host_in(gw: GatewayThread) -> None:
    port = port_of(gw, "v4")
    with RawClient(port) as client:
        origin = f"http://evil.example:{port}"
        assert post(client, "/open/mcp", f"evil.example:{port}", origin)[0] == 200


def test_an_endpoint_on_named_hosts_only_has_no_guard(gw: GatewayThread) -> None:
    # Routed on tools.example alone: a rebound name never reaches it.
    with RawClient(port_of(gw, "v4")) as client:
        assert post(client, "/named/mcp", "tools.example", None)[0] == 200


def test_a_connection_without_an_ip_address_is_not_affected(gw: GatewayThread) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(gw.unix)  # type: ignore[attr-defined]
    with RawClient.from_socket(sock) as client:
        for path in ENDPOINTS:
            status, answer = post(client, path, "evil.example", None)
            assert status == 200, (path, answer)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"kind": "mcp", "mcp": {"allowed_hosts": ["http://mcp.example.com"]}},
            "/services/0/mcp/allowed_hosts/0: 'http://mcp.example.com' is not a host",
        ),
        (
            {"kind": "mcp", "mcp": {"allowed_hosts": ["mcp.example.com/mcp"]}},
            "/services/0/mcp/allowed_hosts/0: 'mcp.example.com/mcp' is not a host",
        ),
        (
            {"kind": "mcp", "mcp": {"dns_rebinding_protection": "no"}},
            "/services/0/mcp/dns_rebinding_protection",
        ),
    ],
)
def test_setting_mistakes_are_named(data: dict[str, Any], expected: str) -> None:
    service = {"name": "m", "upstream": "http://127.0.0.1:9/mcp", **data}
    with pytest.raises(ConfigError) as caught:
        config_from_data({"services": [service]}, source="gw.yaml")
    found = [f"{p.pointer}: {p.message}" for p in caught.value.problems]
    assert any(p.startswith(expected) for p in found), found
    hints = [p.hint for p in caught.value.problems]
    assert all(hints), hints


def test_a_virtual_servers_allowed_hosts_are_checked() -> None:
    data = {
        "services": [{"name": "m", "kind": "mcp", "upstream": "http://127.0.0.1:9/mcp"}],
        "mcp_servers": [{"name": "v", "members": [{"service": "m"}], "allowed_hosts": ["a b"]}],
    }
    with pytest.raises(ConfigError) as caught:
        config_from_data(data, source="gw.yaml")
    assert "/mcp_servers/0/allowed_hosts/0" in [p.pointer for p in caught.value.problems]


def _reference_loopback(host: bytes) -> bool:
    """The rule as it reads in Python (what the C check was written from)."""
    host = host.lower()
    if host.startswith(b"["):
        end = host.find(b"]")
        name = host[: end + 1] if end > 0 else host
    else:
        head, sep, port = host.rpartition(b":")
        name = head if sep and port.isdigit() else host
    if name in (b"localhost", b"[::1]"):
        return True
    if not name.startswith(b"127."):
        return False
    parts = name.split(b".")
    return len(parts) == 4 and all(p.isdigit() and len(p) <= 3 and int(p) < 256 for p in parts)


HOST_TEXTS = [
    b"localhost", b"LOCALHOST:80", b"localhost:", b"localhost:8a", b"localhosts", b"localhos",
    b"127.0.0.1", b"127.0.0.1:8080", b"127.255.255.255", b"127.256.0.1", b"127.0.0.01",
    b"127.0.0.0001", b"127.0.0", b"127.0.0.1.1", b"127..0.1", b"127.0.0.", b".127.0.0.1",
    b"127.0.0.1:", b"127.0.0.1::80", b"127.0.0.1:80:80", b"127.0.0.1a", b"1270.0.0.1",
    b"128.0.0.1", b"[::1]", b"[::1]:80", b"[::1]x", b"[::2]", b"[::1", b"[", b"", b":",
    b":80", b"80", b"127.\xff.0.1", b"127.0.0.1\x00", b"evil.example:80",
]  # fmt: skip


@pytest.mark.parametrize("host", HOST_TEXTS)
def test_the_c_loopback_check_is_the_rule(host: bytes) -> None:
    assert loopback_host(host) == _reference_loopback(host)


_PARTS = st.sampled_from([b"127", b"0", b"1", b"255", b"256", b"01", b"999", b"0001", b"", b"x"])
_DOTTED = st.tuples(
    st.lists(_PARTS, min_size=1, max_size=6).map(b".".join),
    st.sampled_from([b"", b":", b":80", b":8a", b"::80", b":80:80"]),
).map(b"".join)


@given(_DOTTED | st.from_regex(rb"\A[0-9a-zA-Z.:\[\]]{0,24}\Z") | st.binary(max_size=24))
@settings(max_examples=400, deadline=None)
def test_the_c_loopback_check_agrees_on_any_text(host: bytes) -> None:
    assert loopback_host(host) == _reference_loopback(host)
