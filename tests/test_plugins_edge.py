"""The edge plugins on a real gateway: real-ip and ip-restriction (spoofed and trusted
X-Forwarded-For / Forwarded chains, IPv6, IPv4-mapped), cors (preflights routed by the data
plane, origins exact / pattern / null, credentials), request-id (kept, replaced, unique,
logged), headers (both directions); and every config problem with its pointer and hint.

Upstreams are real aiohttp apps on loopback; clients are raw sockets. The client's address
as the gateway saw it is read back through the `show-client` custom plugin
(tests/plugin_samples.py), which echoes `client_ip` on every response.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import re
import socket
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from runmcp_fast.config import config_from_data
from runmcp_fast.gateway import Gateway
from runmcp_fast.plugins._steps import (
    CidrSet,
    CorsStep,
    drop_response_lines,
    forwarded_for,
    new_request_id,
    parse_hop,
)
from runmcp_fast.plugins.builtin.fields import packed
from runmcp_fast.problems import SnapshotError
from runmcp_fast.snapshot import build_snapshot
from tests.servers import ECHO_COUNT, GatewayProcess, Harness, RawClient, echo_app, wait_until

KEY = "edge-key-0123456789"
CONSUMERS: list[dict[str, Any]] = [{"name": "app", "key-auth": {"key": KEY}}]
SHOW = ["tests.plugin_samples:ShowClient"]

SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "t", "version": "1"},
    "paths": {
        "/items": {
            "get": {"operationId": "listItems", "responses": {"200": {"description": "ok"}}},
            "post": {
                "operationId": "createItem",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "responses": {"200": {"description": "ok"}},
            },
        },
        "/items/{id}": {
            "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
            ],
            "get": {"operationId": "getItem", "responses": {"200": {"description": "ok"}}},
            "delete": {"operationId": "deleteItem", "responses": {"200": {"description": "ok"}}},
        },
        "/own-options": {
            "get": {"operationId": "ownGet", "responses": {"200": {"description": "ok"}}},
            "options": {"operationId": "ownOptions", "responses": {"200": {"description": "ok"}}},
        },
    },
}


Response = tuple[int, dict[str, str], Any]


def _request(
    client: RawClient, method: str, path: str, headers: str = "", body: bytes = b""
) -> Response:
    if body:
        headers += f"Content-Length: {len(body)}\r\n"
    client.send(f"{method} {path} HTTP/1.1\r\nHost: h\r\n{headers}\r\n".encode() + body)
    status, response_headers, raw = client.read_response(head_request=method == "HEAD")
    try:
        return status, response_headers, json.loads(raw)
    except ValueError:
        return status, response_headers, raw


def _lines(client: RawClient, method: str, path: str, headers: str = "") -> tuple[int, list[str]]:
    """The status and raw header lines of one response (repeated fields stay apart)."""
    client.send(f"{method} {path} HTTP/1.1\r\nHost: h\r\n{headers}\r\n".encode())
    head = client.read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
    lines = head[1:-2]
    length = next(
        (int(x.split(":")[1]) for x in lines if x.lower().startswith("content-length")), 0
    )
    client.read_exactly(length)
    return int(head[0].split(" ")[1]), lines


def _sent(body: Any, name: str) -> list[str]:
    """The values of header `name` the echo upstream received, in order."""
    return [v for n, v in body["headers"] if n.lower() == name.lower()]


class Edge:
    """A gateway over the echo app (prefix /api), with `show-client` on every route."""

    def __init__(self, harness: Harness, plugins: dict[str, Any], **data: Any) -> None:
        self.app = echo_app()
        upstream = harness.aiohttp(self.app)
        services = data.pop("services", None) or [
            {"name": "api", "prefix": "/api", **data.pop("service", {})}
        ]
        for service in services:
            service.setdefault("upstream", upstream.url)
        config = {
            "consumers": CONSUMERS,
            "custom_plugins": SHOW,
            "plugins": {"show-client": {}, **plugins},
            "services": services,
            **data,
        }
        self.gateway = harness.gateway(config)
        self.harness = harness

    def get(self, path: str = "/api/x", headers: str = "") -> Response:
        return _request(self.harness.client(self.gateway.port), "GET", path, headers)

    @property
    def forwarded(self) -> int:
        return self.app[ECHO_COUNT][0]


# -- real-ip: which address is the client ------------------------------------------------------

# Every client connects from 127.0.0.1; `trusted` decides whether its word is taken.
LOCAL = ["127.0.0.1"]
PROXIES = ["127.0.0.0/8", "10.0.0.0/8"]


@pytest.mark.parametrize(
    ("settings", "headers", "client"),
    [
        pytest.param(
            {"trusted": ["10.0.0.0/8"]},
            "X-Forwarded-For: 203.0.113.9\r\n",
            "127.0.0.1",
            id="spoofed-xff-from-untrusted-peer",
        ),
        pytest.param(
            {"trusted": LOCAL}, "X-Forwarded-For: 203.0.113.9\r\n", "203.0.113.9", id="one-hop"
        ),
        pytest.param(
            {"trusted": PROXIES},
            "X-Forwarded-For: 198.51.100.7, 203.0.113.9, 10.0.0.2, 10.0.0.1\r\n",
            "203.0.113.9",
            id="trusted-chain-stops-at-first-untrusted",
        ),
        pytest.param(
            {"trusted": PROXIES, "recursive": False},
            "X-Forwarded-For: 198.51.100.7, 203.0.113.9, 10.0.0.2, 10.0.0.1\r\n",
            "10.0.0.1",
            id="not-recursive-takes-the-rightmost",
        ),
        pytest.param(
            {"trusted": PROXIES},
            "X-Forwarded-For: 10.0.0.3, 10.0.0.2\r\n",
            "10.0.0.3",
            id="all-trusted-leftmost",
        ),
        pytest.param(
            {"trusted": PROXIES},
            "X-Forwarded-For: 203.0.113.9, garbage, 10.0.0.1\r\n",
            "10.0.0.1",
            id="garbage-ends-the-walk",
        ),
        pytest.param(
            {"trusted": PROXIES},
            "X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-For: 10.0.0.1\r\n",
            "203.0.113.9",
            id="two-fields-are-one-list",
        ),
        pytest.param(
            {"trusted": LOCAL},
            "X-Forwarded-For: 203.0.113.9:4711\r\n",
            "203.0.113.9",
            id="ipv4-with-port",
        ),
        pytest.param(
            {"trusted": LOCAL},
            "X-Forwarded-For: [2001:db8::7]:443\r\n",
            "2001:db8::7",
            id="ipv6-bracketed-with-port",
        ),
        pytest.param(
            {"trusted": LOCAL}, "X-Forwarded-For: 2001:db8::7\r\n", "2001:db8::7", id="ipv6-bare"
        ),
        pytest.param(
            {"trusted": LOCAL},
            "X-Forwarded-For: 203.0.113.9,, \r\n",
            "203.0.113.9",
            id="empty-elements-skipped",
        ),
        pytest.param({"trusted": LOCAL}, "", "127.0.0.1", id="no-header"),
        pytest.param(
            {"trusted": LOCAL, "header": "Forwarded"},
            'Forwarded: for=203.0.113.9;proto=https, for="[2001:db8::1]:80";by=x\r\n',
            "2001:db8::1",
            id="forwarded-rightmost-untrusted",
        ),
        pytest.param(
            {"trusted": PROXIES, "header": "Forwarded"},
            "Forwarded: for=203.0.113.9\r\nForwarded: For=10.0.0.1;proto=http\r\n",
            "203.0.113.9",
            id="forwarded-two-fields-walked",
        ),
        pytest.param(
            {"trusted": PROXIES, "header": "Forwarded"},
            'Forwarded: for=203.0.113.9, for="_hidden", for=10.0.0.1\r\n',
            "10.0.0.1",
            id="forwarded-obfuscated-ends-the-walk",
        ),
        pytest.param(
            {"trusted": LOCAL, "header": "Forwarded"},
            "Forwarded: for=unknown\r\n",
            "127.0.0.1",
            id="forwarded-unknown",
        ),
        pytest.param(
            {"trusted": LOCAL, "header": "Forwarded"},
            "X-Forwarded-For: 203.0.113.9\r\n",
            "127.0.0.1",
            id="forwarded-configured-xff-ignored",
        ),
        pytest.param(
            {"trusted": LOCAL, "header": "X-Real-IP"},
            "X-Real-IP: 203.0.113.9\r\nX-Forwarded-For: 198.51.100.1\r\n",
            "203.0.113.9",
            id="x-real-ip",
        ),
    ],
)
def test_real_ip_table(
    harness: Harness, settings: dict[str, Any], headers: str, client: str
) -> None:
    edge = Edge(harness, {"real-ip": settings})
    status, response_headers, body = edge.get("/api/x", headers)
    assert status == 200, body
    assert response_headers["x-seen-client"] == client
    # The upstream's X-Forwarded-For is what came, then the peer the gateway saw: a
    # proxy appends the address it got the connection from, whatever real-ip concluded.
    sent = _sent(body, "X-Forwarded-For")
    assert len(sent) == 1 and sent[0].endswith("127.0.0.1")


@pytest.mark.parametrize(
    ("trusted", "rules", "headers", "status"),
    [
        # The attack ip-restriction needs real-ip for: a spoofed X-Forwarded-For.
        (["10.0.0.0/8"], {"allow": ["203.0.113.0/24"]}, "X-Forwarded-For: 203.0.113.9\r\n", 403),
        (LOCAL, {"allow": ["203.0.113.0/24"]}, "X-Forwarded-For: 203.0.113.9\r\n", 200),
        (LOCAL, {"deny": ["203.0.113.0/24"]}, "X-Forwarded-For: 203.0.113.9\r\n", 403),
        (LOCAL, {"deny": ["203.0.113.0/24"]}, "X-Forwarded-For: 203.0.114.9\r\n", 200),
        # An attacker prepending an allowed address behind one real hop: not believed.
        (
            PROXIES,
            {"allow": ["192.0.2.0/24"]},
            "X-Forwarded-For: 192.0.2.1, 203.0.113.9, 10.0.0.1\r\n",
            403,
        ),
        # IPv4-mapped IPv6 from a proxy matches IPv4 rules, both ways.
        (LOCAL, {"deny": ["10.0.0.0/8"]}, "X-Forwarded-For: ::ffff:10.1.2.3\r\n", 403),
        (LOCAL, {"allow": ["10.0.0.0/8"]}, "X-Forwarded-For: ::ffff:10.1.2.3\r\n", 200),
        (LOCAL, {"allow": ["::ffff:10.0.0.0/104"]}, "X-Forwarded-For: 10.1.2.3\r\n", 200),
        # Deny wins over allow.
        (
            LOCAL,
            {"allow": ["10.0.0.0/8"], "deny": ["10.1.0.0/16"]},
            "X-Forwarded-For: 10.1.2.3\r\n",
            403,
        ),
        (
            LOCAL,
            {"allow": ["10.0.0.0/8"], "deny": ["10.1.0.0/16"]},
            "X-Forwarded-For: 10.2.2.3\r\n",
            200,
        ),
        (LOCAL, {"allow": ["2001:db8::/32"]}, "X-Forwarded-For: [2001:db8:1::1]:80\r\n", 200),
        (LOCAL, {"allow": ["2001:db8::/32"]}, "X-Forwarded-For: 2001:db9::1\r\n", 403),
    ],
)
def test_ip_restriction_behind_real_ip(
    harness: Harness, trusted: list[str], rules: dict[str, Any], headers: str, status: int
) -> None:
    edge = Edge(harness, {"real-ip": {"trusted": trusted}, "ip-restriction": rules})
    got, response_headers, body = edge.get("/api/x", headers)
    assert got == status, body
    if status == 403:
        assert response_headers["content-type"] == "application/problem+json"
        assert body["detail"] == "your IP address may not use this route"
        assert edge.forwarded == 0


def test_ip_restriction_without_real_ip_reads_the_peer_and_its_refusal_is_configurable(
    harness: Harness,
) -> None:
    edge = Edge(
        harness,
        {
            "ip-restriction": {
                "deny": ["127.0.0.0/8"],
                "rejected_code": 451,
                "rejected_message": "not from here",
            }
        },
    )
    # X-Forwarded-For is nobody's word without real-ip.
    status, _, body = edge.get("/api/x", "X-Forwarded-For: 203.0.113.9\r\n")
    assert (status, body["detail"], body["status"]) == (451, "not from here", 451)
    assert edge.forwarded == 0


@pytest.mark.parametrize(
    ("rules", "status"),
    [({"allow": ["::1"]}, 200), ({"deny": ["::1/128"]}, 403), ({"allow": ["127.0.0.1"]}, 403)],
)
def test_ip_restriction_on_an_ipv6_listener(
    harness: Harness, rules: dict[str, Any], status: int
) -> None:
    edge = Edge(harness, {"ip-restriction": rules}, listeners=[{"address": "[::1]:0"}])
    sock = socket.create_connection(("::1", edge.gateway.port), timeout=10)
    client = harness.adopt(RawClient.from_socket(sock))
    got, headers, _ = _request(client, "GET", "/api/x")
    assert got == status
    if status == 200:
        assert headers["x-seen-client"] == "::1"


@pytest.mark.parametrize(
    ("rules", "status"),
    [({"allow": ["127.0.0.1"]}, 200), ({"deny": ["127.0.0.0/8"]}, 403), ({"allow": ["::1"]}, 403)],
)
def test_ip_restriction_matches_a_mapped_peer_with_ipv4_rules(
    harness: Harness, rules: dict[str, Any], status: int
) -> None:
    """A dual-stack listener sees an IPv4 client as ::ffff:127.0.0.1."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("::ffff:127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    upstream = harness.aiohttp(echo_app())
    data = {
        "listeners": [{"address": "[::]:0"}],  # its socket is `sock`, bound above
        "custom_plugins": SHOW,
        "plugins": {"show-client": {}, "ip-restriction": rules},
        "services": [{"name": "api", "prefix": "/api", "upstream": upstream.url}],
    }
    gateway = Gateway(config_from_data(data, source="<test>", base_dir="."), sockets=[sock])
    harness.gateway_loop.run(gateway.start())
    try:
        client = harness.client(sock.getsockname()[1])
        got, headers, _ = _request(client, "GET", "/api/x")
        assert got == status
        if status == 200:
            assert headers["x-seen-client"] == "::ffff:127.0.0.1"
    finally:
        harness.gateway_loop.run(gateway.stop(2.0))


def test_ip_restriction_on_a_unix_socket(harness: Harness, tmp_path: Path) -> None:
    """A Unix peer has no address: an allow list refuses it, a deny list lets it in."""
    path = tmp_path / "gw.sock"
    for rules, status in (({"allow": ["127.0.0.1"]}, 403), ({"deny": ["0.0.0.0/0", "::/0"]}, 200)):
        edge = Edge(harness, {"ip-restriction": rules}, listeners=[{"address": f"unix:{path}"}])
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(str(path))
        client = harness.adopt(RawClient.from_socket(sock))
        assert _request(client, "GET", "/api/x")[0] == status
        client.close()
        edge.gateway.stop(2.0)
        harness._gateways.remove(edge.gateway)


# -- the compiled parts against references ------------------------------------------------


def _mapped(address: str) -> ipaddress.IPv6Address:
    parsed = ipaddress.ip_address(address)
    if parsed.version == 4:
        return ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + parsed.packed)
    return parsed  # type: ignore[return-value]


def _as_v6(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> ipaddress.IPv6Network:
    address, length = packed(net)
    return ipaddress.IPv6Network((address, length))


def test_cidr_set_against_the_ipaddress_module() -> None:
    """Random networks and addresses (IPv4, IPv6, mapped), near the networks' edges."""
    rng = random.Random(7239)
    for _ in range(40):
        nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for _ in range(rng.randrange(1, 12)):
            if rng.random() < 0.5:
                length = rng.randrange(0, 33)
                nets.append(ipaddress.ip_network((rng.getrandbits(32), length), strict=False))
            else:
                length = rng.randrange(0, 129)
                nets.append(ipaddress.ip_network((rng.getrandbits(128), length), strict=False))
        cidrs = CidrSet(packed(n) for n in nets)
        reference = [_as_v6(n) for n in nets]
        for _ in range(150):
            base = rng.choice(nets)
            offset = rng.choice((0, 1, -1, base.num_addresses - 1, base.num_addresses))
            value = (int(base.network_address) + offset) % (2**base.max_prefixlen)
            address = str(
                ipaddress.ip_address(value) if base.version == 6 else ipaddress.IPv4Address(value)
            )
            if base.version == 4 and rng.random() < 0.3:
                address = f"::ffff:{address}"
            expected = any(_mapped(address) in net for net in reference)
            assert (address in cidrs) is expected, (address, nets)


@pytest.mark.parametrize(
    ("hop", "address"),
    [
        ("192.0.2.1", "192.0.2.1"),
        (" 192.0.2.1\t", "192.0.2.1"),
        ("192.0.2.1:8080", "192.0.2.1"),
        ('"192.0.2.1:8080"', "192.0.2.1"),
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ('"[2001:db8::1]:4711"', "2001:db8::1"),
        ("::ffff:10.1.2.3", "::ffff:10.1.2.3"),
        ("fe80::1%eth0", "fe80::1%eth0"),
        ("unknown", None),
        ("_hidden", None),
        ("192.0.2", None),
        ("192.0.2.256", None),
        ("0192.0.2.1", None),
        ("192.0.2.1:", None),
        ("192.0.2.1:123456", None),
        ("[192.0.2.1]", None),
        ("[2001:db8::1", None),
        ("[2001:db8::1]x", None),
        ("", None),
        ("1.2.3.4.example.com", None),
    ],
)
def test_parse_hop(hop: str, address: str | None) -> None:
    found = parse_hop(hop)
    assert (found[0] if found else None) == address
    if found:
        assert found[1] == _mapped(address.split("%")[0]).packed  # type: ignore[union-attr]


def test_forwarded_for_elements() -> None:
    value = (
        'for=192.0.2.60;proto=http;by=203.0.113.43, FOR="[2001:db8:cafe::17]:4711",'
        ' by=x, for=unknown,, for="a,b;c";host=h'
    )
    assert forwarded_for(value) == [
        "192.0.2.60",
        '"[2001:db8:cafe::17]:4711"',
        None,
        "unknown",
        '"a,b;c"',
    ]


def test_drop_response_lines_keeps_the_rest_and_returns_the_same_list_when_nothing_goes() -> None:
    chunks = [
        b"A: 1\r\nX-Request-Id: q\r\nB: 2\r\n",
        b"access-control-allow-origin: *\r\n",
        b"C: 3\r\n",
    ]
    assert drop_response_lines(chunks, ["x-request-id"], "access-control-") == [
        b"A: 1\r\n",
        b"B: 2\r\n",
        b"C: 3\r\n",
    ]
    assert drop_response_lines(chunks, ["x-request"], "access-control-x") is chunks
    assert drop_response_lines([b"X-A: 1\r\nx-a: 2\r\n"], ["X-A"]) == []


# -- cors -------------------------------------------------------------------------------------


def cors_app() -> web.Application:
    """An upstream with CORS ideas of its own (Allow-Origin: *), which the gateway drops."""
    count = [0]

    async def handle(request: web.Request) -> web.Response:
        count[0] += 1
        return web.json_response(
            {"method": request.method, "path": request.path},
            headers={"Access-Control-Allow-Origin": "*", "X-Total": "3"},
        )

    app = web.Application()
    app[ECHO_COUNT] = count
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


APP = "https://app.example.com"
CORS = {
    "allow_origins": [APP, "https://*.example.org", "null"],
    "allow_credentials": True,
    "expose_headers": ["X-Total"],
    "max_age": 600,
}


class Cors:
    def __init__(self, harness: Harness, cors: dict[str, Any] | None, **service: Any) -> None:
        self.app = cors_app()
        upstream = harness.aiohttp(self.app)
        plugins: dict[str, Any] = {"show-client": {}, "key-auth": {}}
        if cors is not None:
            plugins["cors"] = cors
        self.gateway = harness.gateway(
            {
                "consumers": CONSUMERS,
                "custom_plugins": SHOW,
                "plugins": plugins,
                "services": [{"name": "api", "openapi": SPEC, "upstream": upstream.url, **service}],
            }
        )
        self.harness = harness

    def send(self, method: str, path: str, headers: str = "") -> Response:
        return _request(self.harness.client(self.gateway.port), method, path, headers)

    @property
    def forwarded(self) -> int:
        return self.app[ECHO_COUNT][0]


def _preflight(origin: str, method: str, extra: str = "") -> str:
    return f"Origin: {origin}\r\nAccess-Control-Request-Method: {method}\r\n{extra}"


@pytest.mark.parametrize(
    ("origin", "method", "path", "status", "methods"),
    [
        (APP, "POST", "/items", 204, {"GET", "HEAD", "POST"}),
        (APP, "DELETE", "/items/7", 204, {"GET", "HEAD", "DELETE"}),
        ("https://api.example.org", "GET", "/items", 204, {"GET", "HEAD", "POST"}),
        ("https://a.b.example.org", "GET", "/items", 204, {"GET", "HEAD", "POST"}),
        ("null", "GET", "/items", 204, {"GET", "HEAD", "POST"}),  # listed literally
        # Patterns that must not match.
        ("https://evil-example.org", "GET", "/items", 403, None),
        ("https://example.org", "GET", "/items", 403, None),
        ("https://x.example.org.evil.com", "GET", "/items", 403, None),
        ("http://api.example.org", "GET", "/items", 403, None),
        ("https://app.example.com.evil.com", "GET", "/items", 403, None),
        ("https://APP.example.com", "GET", "/items", 403, None),
        # A method the path does not have: no route to run steps of, the 405 of old.
        (APP, "DELETE", "/items", 405, None),
        (APP, "PATCH", "/items/7", 405, None),
        (APP, "GET", "/nowhere", 404, None),
    ],
)
def test_cors_preflight_table(
    harness: Harness, origin: str, method: str, path: str, status: int, methods: set[str] | None
) -> None:
    cors = Cors(harness, CORS)
    got, headers, body = cors.send("OPTIONS", path, _preflight(origin, method))
    assert got == status, body
    assert cors.forwarded == 0  # a preflight is answered at the edge, whatever the answer
    if status == 204:
        assert headers["access-control-allow-origin"] == origin
        assert set(headers["access-control-allow-methods"].split(", ")) == methods
        assert headers["access-control-allow-credentials"] == "true"
        assert headers["access-control-max-age"] == "600"
        assert "Origin" in headers["vary"]
        assert headers["x-seen-preflight"] == "yes"
    else:
        assert "access-control-allow-origin" not in headers
    if status == 405:
        assert set(headers["allow"].split(", ")) >= {"GET"}
        assert body["detail"].startswith("OPTIONS is not allowed here")


def test_cors_preflight_headers_echoed_or_listed(harness: Harness) -> None:
    cors = Cors(harness, CORS)
    asked = _preflight(APP, "POST", "Access-Control-Request-Headers: content-type, x-trace\r\n")
    _, headers, _ = cors.send("OPTIONS", "/items", asked)
    assert headers["access-control-allow-headers"] == "content-type, x-trace"
    assert "Access-Control-Request-Headers" in headers["vary"]
    # Something that is not a token list is not echoed.
    bad = _preflight(APP, "POST", "Access-Control-Request-Headers: a\x01b\r\n")
    assert "access-control-allow-headers" not in cors.send("OPTIONS", "/items", bad)[1]
    listed = Cors(harness, {**CORS, "allow_headers": ["Content-Type"], "max_age": None})
    _, headers, _ = listed.send("OPTIONS", "/items", asked)
    assert headers["access-control-allow-headers"] == "Content-Type"
    assert "access-control-max-age" not in headers


def test_cors_preflight_passes_authentication_and_never_reaches_the_upstream(
    harness: Harness,
) -> None:
    """cors runs before key-auth: a preflight carries no key, and still gets its 204; the
    route's OPTIONS operation (its own) is answered at the edge too."""
    cors = Cors(harness, CORS)
    assert cors.send("OPTIONS", "/items", _preflight(APP, "GET"))[0] == 204
    assert cors.send("OPTIONS", "/own-options", _preflight(APP, "GET"))[0] == 204
    got, headers, _ = cors.send("OPTIONS", "/own-options", _preflight("https://evil.com", "GET"))
    assert got == 403 and "access-control-allow-origin" not in headers
    assert cors.forwarded == 0
    # An OPTIONS that is not a preflight is an ordinary request of that route.
    got, _, body = cors.send("OPTIONS", "/own-options", f"apikey: {KEY}\r\n")
    assert got == 200 and body["method"] == "OPTIONS"


def test_preflight_without_cors_gets_the_405_it_always_got(harness: Harness) -> None:
    """No cors on the route: nothing answers the preflight, the data plane's 405 does; it is
    never forwarded as the method it asks about (key-auth still refuses it first)."""
    plain = Cors(harness, None, plugins={"key-auth": {"disable": True}})
    got, headers, body = plain.send("OPTIONS", "/items", _preflight(APP, "POST"))
    assert got == 405 and set(headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}
    assert body["detail"].startswith("OPTIONS is not allowed here")
    assert "access-control-allow-origin" not in headers
    # Not a preflight (no Access-Control-Request-Method): the router's 405, as before.
    got, headers, _ = plain.send("OPTIONS", "/items", f"Origin: {APP}\r\n")
    assert got == 405 and "x-seen-preflight" not in headers
    assert plain.forwarded == 0
    keyed = Cors(harness, None)
    assert keyed.send("OPTIONS", "/items", _preflight(APP, "POST"))[0] == 401
    assert keyed.forwarded == 0


@pytest.mark.parametrize("cors", [None, CORS])
def test_a_preflight_that_waits_on_a_step_is_still_answered_at_the_edge(
    harness: Harness, cors: dict[str, Any] | None
) -> None:
    """A rewrite step that waits (async): the chain goes on later, and the preflight still
    ends in cors's 204, or the 405 when nothing answers it."""
    app = cors_app()
    upstream = harness.aiohttp(app)
    plugins: dict[str, Any] = {"later": {}, **({"cors": cors} if cors else {})}
    gateway = harness.gateway(
        {
            "custom_plugins": ["tests.plugin_samples:Later"],
            "plugins": plugins,
            "services": [{"name": "api", "openapi": SPEC, "upstream": upstream.url}],
        }
    )
    client = harness.client(gateway.port)
    got, headers, _ = _request(client, "OPTIONS", "/items/3", _preflight(APP, "DELETE"))
    assert got == (204 if cors else 405)
    if cors:
        assert set(headers["access-control-allow-methods"].split(", ")) == {"GET", "HEAD", "DELETE"}
    assert _request(client, "GET", "/items/3")[0] == 200  # the connection goes on
    assert app[ECHO_COUNT][0] == 1


@pytest.mark.parametrize(
    ("origin", "key", "status", "allow_origin"),
    [
        (APP, KEY, 200, APP),
        ("https://api.example.org", KEY, 200, "https://api.example.org"),
        ("https://evil-example.org", KEY, 200, None),  # proceeds, without CORS headers
        (APP, "wrong-key-000000000", 401, APP),  # the gateway's own answer gets them too
        (None, KEY, 200, None),
        (f"{APP}\r\nOrigin: https://api.example.org", KEY, 200, None),  # two: ambiguous
    ],
)
def test_cors_headers_on_the_routes_responses(
    harness: Harness, origin: str | None, key: str, status: int, allow_origin: str | None
) -> None:
    cors = Cors(harness, CORS)
    client = harness.client(cors.gateway.port)
    extra = f"apikey: {key}\r\n" + (f"Origin: {origin}\r\n" if origin else "")
    got, lines = _lines(client, "GET", "/items", extra)
    assert got == status
    named = [line.split(":", 1) for line in lines]
    acao = [v.strip() for n, v in named if n.lower() == "access-control-allow-origin"]
    # The upstream's `*` is gone: the route's policy is the gateway's.
    assert acao == ([allow_origin] if allow_origin else [])
    vary = [v.strip() for n, v in named if n.lower() == "vary"]
    assert "Origin" in vary
    credentials = [v.strip() for n, v in named if n.lower() == "access-control-allow-credentials"]
    expose = [v.strip() for n, v in named if n.lower() == "access-control-expose-headers"]
    assert credentials == (["true"] if allow_origin else [])
    assert expose == (["X-Total"] if allow_origin else [])


def test_cors_any_origin_never_covers_null(harness: Harness) -> None:
    cors = Cors(harness, {})  # allow_origins defaults to ["*"], without credentials
    _, headers, _ = cors.send("GET", "/items", f"apikey: {KEY}\r\nOrigin: https://x.test\r\n")
    assert headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in headers
    _, headers, _ = cors.send("GET", "/items", f"apikey: {KEY}\r\nOrigin: null\r\n")
    assert "access-control-allow-origin" not in headers
    got, headers, _ = cors.send("OPTIONS", "/items", _preflight("null", "GET"))
    assert got == 403 and "access-control-allow-origin" not in headers
    got, headers, _ = cors.send("OPTIONS", "/items", _preflight("https://x.test", "GET"))
    assert got == 204 and headers["access-control-allow-origin"] == "*"


def test_cors_on_a_prefix_route_of_every_method_echoes_the_method_asked(harness: Harness) -> None:
    edge = Edge(harness, {"cors": {"allow_origins": [APP]}})
    client = harness.client(edge.gateway.port)
    got, headers, _ = _request(client, "OPTIONS", "/api/x", _preflight(APP, "PUT"))
    assert got == 204 and headers["access-control-allow-methods"] == "PUT"
    got, _, _ = _request(client, "OPTIONS", "/api/x", _preflight(APP, "PUT, DELETE"))
    assert got == 403
    assert edge.forwarded == 0


def test_cors_step_origin_matching() -> None:
    wild = CorsStep(["https://*.example.com"], False, None, (), None)
    assert wild.allows("https://api.example.com") == "https://api.example.com"
    assert wild.allows("https://evil-example.com") is None
    assert wild.allows("https://example.com") is None
    step = CorsStep(["https://a.test", "https://*.example.com:8443"], True, None, (), None)
    assert step.allows("https://a.test") == "https://a.test"
    assert step.allows("https://b.example.com:8443") == "https://b.example.com:8443"
    for origin in (
        "https://b.example.com",
        "https://example.com:8443",
        "https://.example.com:8443",
        "https://b..example.com:8443",
        "https://b_x.example.com:8443",
        "https://evil-example.com:8443",
        "https://b/.example.com:8443",
        "null",
        "https://a.test.",
    ):
        assert step.allows(origin) is None, origin
    with pytest.raises(ValueError, match="credentials"):
        CorsStep(["*"], True, None, (), None)


# -- request-id ---------------------------------------------------------------------------------

_HEX32 = re.compile(r"[0-9a-f]{32}")


@pytest.mark.parametrize(
    ("settings", "sent", "kept"),
    [
        ({}, "", False),
        ({}, "X-Request-Id: abc-123\r\n", True),
        ({}, "x-request-id:  abc-123 \r\n", True),
        ({}, "X-Request-Id: has space\r\n", False),
        ({}, "X-Request-Id: " + "a" * 129 + "\r\n", False),
        ({"max_length": 200}, "X-Request-Id: " + "a" * 129 + "\r\n", True),
        ({}, "X-Request-Id: \r\n", False),
        ({}, "X-Request-Id: a\r\nX-Request-Id: b\r\n", False),  # which one? neither
        ({}, 'X-Request-Id: a"}{\r\n', False),
        ({"keep_incoming": False}, "X-Request-Id: abc-123\r\n", False),
        ({"header": "X-Trace"}, "X-Trace: t-1\r\n", True),
    ],
)
def test_request_id_kept_or_replaced(
    harness: Harness, settings: dict[str, Any], sent: str, kept: bool
) -> None:
    edge = Edge(harness, {"request-id": settings})
    header = settings.get("header", "X-Request-Id")
    status, headers, body = edge.get("/api/x", sent)
    assert status == 200
    upstream = _sent(body, header)
    assert len(upstream) == 1  # exactly one, whatever came
    echoed = headers[header.lower()]
    assert echoed == upstream[0] == headers["x-seen-request-id"]
    if kept:
        assert echoed == sent.split(":", 1)[1].strip()
    else:
        assert _HEX32.fullmatch(echoed)


def test_request_ids_are_unique_across_many_requests_and_on_the_gateways_answers(
    harness: Harness,
) -> None:
    edge = Edge(harness, {"request-id": {}}, service={"plugins": {"key-auth": {}}})
    client = harness.client(edge.gateway.port)
    seen = set()
    for i in range(1500):
        # Every third is refused by key-auth: the gateway's own answer has an id too.
        headers = "" if i % 3 == 0 else f"apikey: {KEY}\r\n"
        status, response_headers, _ = _request(client, "GET", f"/api/{i}", headers)
        assert status == (401 if i % 3 == 0 else 200)
        seen.add(response_headers["x-request-id"])
    assert len(seen) == 1500
    assert all(_HEX32.fullmatch(found) for found in seen)


def test_request_id_echo_off_and_the_upstreams_own_id_replaced(harness: Harness) -> None:
    quiet = Edge(harness, {"request-id": {"echo": False}})
    status, headers, body = quiet.get("/api/x")
    assert status == 200 and "x-request-id" not in headers and len(_sent(body, "X-Request-Id")) == 1

    async def own_id(request: web.Request) -> web.Response:
        return web.Response(text="ok", headers={"X-Request-Id": "upstream-made"})

    app = web.Application()
    app.router.add_get("/{tail:.*}", own_id)
    upstream = harness.aiohttp(app)
    gateway = harness.gateway(
        {
            "plugins": {"request-id": {}},
            "services": [{"name": "api", "prefix": "/", "upstream": upstream.url}],
        }
    )
    _, lines = _lines(harness.client(gateway.port), "GET", "/x", "X-Request-Id: mine\r\n")
    assert [x for x in lines if x.lower().startswith("x-request-id")] == ["X-Request-Id: mine"]


def test_request_ids_differ_in_a_forked_child() -> None:
    """The per-process prefix is drawn again after a fork (worker processes)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one id, then gone
        try:
            os.write(write, new_request_id())
        finally:
            os._exit(0)
    os.close(write)
    child = os.read(read, 64)
    os.close(read)
    os.waitpid(pid, 0)
    ours = new_request_id()
    assert len(child) == 32 and child[:16] != ours[:16]


def test_access_log_has_the_request_id_and_the_real_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The served process imports this checkout (not whichever one is installed).
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    harness = Harness()
    try:
        upstream = harness.aiohttp(echo_app())
        config = {
            "access_log": True,
            "plugins": {"request-id": {}, "real-ip": {"trusted": ["127.0.0.1"]}},
            "services": [{"name": "api", "prefix": "/", "upstream": upstream.url}],
        }
        with GatewayProcess.from_config(config, tmp_path) as gw:
            client = RawClient(gw.port)
            try:
                ids = []
                for xff in ("203.0.113.9", None):
                    extra = f"X-Forwarded-For: {xff}\r\n" if xff else ""
                    status, headers, _ = _request(client, "GET", "/x", extra)
                    assert status == 200
                    ids.append(headers["x-request-id"])
                _request(client, "GET", "/kept", "X-Request-Id: from-client-1\r\n")
            finally:
                client.close()
            assert wait_until(lambda: len(gw.stdout_lines) >= 3)
            records = [json.loads(line) for line in gw.stdout_lines]
            assert [r["request_id"] for r in records] == [*ids, "from-client-1"]
            assert records[0]["client"] == "203.0.113.9" and records[0]["peer"] == "127.0.0.1"
            assert records[1]["client"] == "127.0.0.1" and "peer" not in records[1]
            assert gw.stop() == 0
    finally:
        harness.close()


# -- headers ------------------------------------------------------------------------------------


def test_headers_request_side_changes_what_goes_upstream(harness: Harness) -> None:
    edge = Edge(
        harness,
        {
            "headers": {
                "request": {
                    "remove": ["x-secret"],
                    "set": {"X-Env": "prod"},
                    "add": {"X-Tag": ["a", "b"], "X-One": "1"},
                }
            }
        },
    )
    status, _, body = edge.get(
        "/api/x", "X-Secret: s\r\nX-SECRET: t\r\nx-env: dev\r\nX-Env: qa\r\nX-Tag: client\r\n"
    )
    assert status == 200
    assert _sent(body, "X-Secret") == []
    assert _sent(body, "X-Env") == ["prod"]
    assert _sent(body, "X-Tag") == ["client", "a", "b"]
    assert _sent(body, "X-One") == ["1"]


def test_headers_request_side_runs_before_authentication(harness: Harness) -> None:
    """The rewrite phase: the steps after it (key-auth here) see the changed request."""
    edge = Edge(
        harness,
        {"headers": {"request": {"set": {"apikey": KEY}}}},
        service={"plugins": {"key-auth": {}}},
    )
    assert edge.get("/api/x")[0] == 200


def test_headers_response_side_on_proxied_and_gateway_answers(harness: Harness) -> None:
    edge = Edge(
        harness,
        {
            "headers": {
                "response": {
                    "remove": ["server"],
                    "set": {"Cache-Control": "no-store"},
                    "add": {"X-Frame-Options": "DENY"},
                }
            }
        },
        service={"plugins": {"key-auth": {}}},
    )
    client = harness.client(edge.gateway.port)
    for extra, status in ((f"apikey: {KEY}\r\n", "200"), ("", "401")):
        client.send(f"GET /api/x?respond=fixed HTTP/1.1\r\nHost: h\r\n{extra}\r\n".encode())
        head = client.read_until(b"\r\n\r\n").decode("latin-1")
        lines = head.split("\r\n")
        assert lines[0].split(" ")[1] == status
        names = [x.split(":", 1)[0].lower() for x in lines[1:] if x]
        assert "server" not in names
        assert names.count("cache-control") == 1 and "Cache-Control: no-store" in lines
        assert "X-Frame-Options: DENY" in lines
        length = next(int(x.split(":")[1]) for x in lines if x.lower().startswith("content-length"))
        client.read_exactly(length)


def test_the_edge_plugins_order_in_a_chain(harness: Harness) -> None:
    edge = Edge(
        harness,
        {
            "real-ip": {"trusted": LOCAL},
            "ip-restriction": {"allow": ["0.0.0.0/0"]},
            "cors": {"allow_origins": [APP]},
            "request-id": {},
            "headers": {"request": {"set": {"X-A": "1"}}, "response": {"set": {"X-B": "2"}}},
            "key-auth": {},
        },
    )
    routes = edge.gateway.gateway.snapshot.router.routes()
    chain = next(iter(routes)).target.chain.describe()
    assert chain == [
        ("rewrite", "real-ip", 10000),
        ("rewrite", "request-id", 9000),
        ("rewrite", "headers:request", 8000),
        ("access", "ip-restriction", 3500),
        ("access", "cors", 3000),
        ("access", "key-auth", 2500),
        ("response_headers", "headers:response", 0),
        ("response_headers", "show-client", -100),
    ]
    # All of them at once, on one request.
    status, headers, body = edge.get(
        "/api/x", f"apikey: {KEY}\r\nOrigin: {APP}\r\nX-Forwarded-For: 203.0.113.9\r\n"
    )
    assert status == 200 and headers["x-seen-client"] == "203.0.113.9"
    assert headers["access-control-allow-origin"] == APP and headers["x-b"] == "2"
    assert _sent(body, "X-A") == ["1"] and _HEX32.fullmatch(headers["x-request-id"])


# -- config problems, with their pointers and hints --------------------------------------------


def _problems(plugins: dict[str, Any]) -> list[tuple[str, str, str]]:
    data = {
        "listeners": [{"address": "127.0.0.1:0"}],
        "plugins": plugins,
        "services": [{"name": "api", "upstream": "http://127.0.0.1:1", "prefix": "/"}],
    }
    config = config_from_data(data, source="<t>", base_dir=".")
    with pytest.raises(SnapshotError) as caught:
        build_snapshot(config, lambda _u: None, "<t>")
    return [(p.pointer, p.message, p.hint) for p in caught.value.problems]


@pytest.mark.parametrize(
    ("plugins", "pointer", "message", "hint"),
    [
        # real-ip
        (
            {"real-ip": {}},
            "/plugins/real-ip",
            "Object missing required field `trusted`",
            "its keys: trusted, header, recursive",
        ),
        (
            {"real-ip": {"trusted": []}},
            "/plugins/real-ip/trusted",
            "no trusted proxies",
            "list the proxies",
        ),
        (
            {"real-ip": {"trusted": ["10.0.0.1/8"]}},
            "/plugins/real-ip/trusted/0",
            "'10.0.0.1/8' has host bits set past its prefix",
            "did you mean 10.0.0.0/8?",
        ),
        (
            {"real-ip": {"trusted": ["10.0.0.0/8", "proxy.internal"]}},
            "/plugins/real-ip/trusted/1",
            "'proxy.internal' is not an IP address or network",
            "an address or CIDR network",
        ),
        (
            {"real-ip": {"trusted": ["fe80::1%eth0"]}},
            "/plugins/real-ip/trusted/0",
            "'fe80::1%eth0' names an IPv6 zone",
            "leave the zone out (fe80::1)",
        ),
        (
            {"real-ip": {"trusted": ["10.0.0.0/8"], "header": "Via"}},
            "/plugins/real-ip/header",
            "Via does not carry client addresses",
            "X-Forwarded-For, Forwarded",
        ),
        (
            {"real-ip": {"trusted": ["10.0.0.0/8"], "header": "X Real"}},
            "/plugins/real-ip/header",
            "Expected `str` matching regex",
            "",
        ),
        # ip-restriction
        (
            {"ip-restriction": {}},
            "/plugins/ip-restriction",
            "give allow, deny or both",
            "e.g. allow",
        ),
        (
            {"ip-restriction": {"deny": ["2001:db8::1/32"]}},
            "/plugins/ip-restriction/deny/0",
            "'2001:db8::1/32' has host bits set",
            "did you mean 2001:db8::/32?",
        ),
        (
            {"ip-restriction": {"allow": ["10.0.0.0/8"], "rejected_code": 200}},
            "/plugins/ip-restriction/rejected_code",
            "Expected `int` >= 400",
            "",
        ),
        (
            {"ip-restriction": {"allow": ["10.0.0.0/8"]}, "real-ip": {"trusted": ["x"]}},
            "/plugins/real-ip/trusted/0",
            "'x' is not an IP address or network",
            "",
        ),
        # cors
        (
            {"cors": {"allow_origins": ["*"], "allow_credentials": True}},
            "/plugins/cors/allow_origins/0",
            "`*` with allow_credentials",
            "list the origins",
        ),
        (
            {"cors": {"allow_origins": ["https://App.Example.com/"]}},
            "/plugins/cors/allow_origins/0",
            "'https://App.Example.com/' is not an origin as browsers send it",
            "did you mean 'https://app.example.com'?",
        ),
        (
            {"cors": {"allow_origins": ["https://a.test", "https://*example.com"]}},
            "/plugins/cors/allow_origins/1",
            "'https://*example.com' is not an origin pattern",
            "a `*` stands for whole labels",
        ),
        (
            {"cors": {"allow_origins": ["https://*.com"]}},
            "/plugins/cors/allow_origins/0",
            "'https://*.com' is not an origin pattern",
            "",
        ),
        (
            {"cors": {"allow_origins": ["app.example.com"]}},
            "/plugins/cors/allow_origins/0",
            "'app.example.com' is not an origin",
            "scheme://host[:port]",
        ),
        (
            {"cors": {"allow_origins": []}},
            "/plugins/cors/allow_origins",
            "no origins allowed",
            "list them",
        ),
        (
            {"cors": {"allow_origins": [APP], "allow_credentials": True, "allow_headers": ["*"]}},
            "/plugins/cors/allow_headers/0",
            "`*` with allow_credentials is the literal header name `*`",
            "list the headers, or leave allow_headers out",
        ),
        (
            {"cors": {"expose_headers": ["X Total"]}},
            "/plugins/cors/expose_headers/0",
            "'X Total' is not a header name",
            "an RFC 9110 token",
        ),
        ({"cors": {"max_age": -1}}, "/plugins/cors/max_age", "Expected `int` >= 0", ""),
        # request-id
        (
            {"request-id": {"header": "Content-Length"}},
            "/plugins/request-id/header",
            "Content-Length is the gateway's to write",
            "leave it out: the gateway frames every message itself",
        ),
        (
            {"request-id": {"headr": "X-Id"}},
            "/plugins/request-id/headr",
            "unknown key 'headr'",
            "did you mean 'header'?",
        ),
        # headers
        (
            {"headers": {"response": {"set": {"X-A": "one\r\nSet-Cookie: evil=1"}}}},
            "/plugins/headers/response/set/X-A",
            "a header value can not hold CR or LF",
            "one line",
        ),
        (
            {"headers": {"request": {"add": {"X-A": ["ok", "bad\nvalue"]}}}},
            "/plugins/headers/request/add/X-A/1",
            "a header value can not hold CR or LF",
            "one line",
        ),
        (
            {"headers": {"request": {"set": {"X-A": " padded"}}}},
            "/plugins/headers/request/set/X-A",
            "not a header value",
            "printable characters",
        ),
        (
            {"headers": {"request": {"set": {"X-A": "caf\u00e9 \u2615"}}}},
            "/plugins/headers/request/set/X-A",
            "not a header value",
            "",
        ),
        (
            {"headers": {"request": {"set": {"X A": "1"}}}},
            "/plugins/headers/request/set/X A",
            "'X A' is not a header name",
            "a header name is an RFC 9110 token",
        ),
        (
            {"headers": {"response": {"set": {"Content-Length": "0"}}}},
            "/plugins/headers/response/set/Content-Length",
            "Content-Length is the gateway's to write",
            "leave it out: the gateway frames every message itself",
        ),
        (
            {"headers": {"response": {"remove": ["ok", "Transfer-Encoding"]}}},
            "/plugins/headers/response/remove/1",
            "Transfer-Encoding is the gateway's to write",
            "leave it out: the gateway frames",
        ),
        (
            {"headers": {"request": {"add": {"connection": "close"}}}},
            "/plugins/headers/request/add/connection",
            "connection is the gateway's to write",
            "leave it out: hop-by-hop",
        ),
        (
            {"headers": {"request": {"set": {"Host": "other"}}}},
            "/plugins/headers/request/set/Host",
            "Host is the gateway's to write",
            "leave it out: the upstream gets the client's Host",
        ),
        (
            {"headers": {"request": {"remove": ["X-Forwarded-For"]}}},
            "/plugins/headers/request/remove/0",
            "X-Forwarded-For is the gateway's to write",
            "leave it out: the gateway appends the peer",
        ),
        (
            {"headers": {"request": {"remove": ["x-a"], "set": {"X-A": "1"}}}},
            "/plugins/headers/request/set/X-A",
            "X-A is named twice (/request/remove/0 too)",
            "name each header once",
        ),
        (
            {"headers": {"request": {"add": {"X-A": []}}}},
            "/plugins/headers/request/add/X-A",
            "no values",
            "give one or more",
        ),
        ({"headers": {}}, "/plugins/headers", "give request, response or both", "e.g. response"),
        (
            {"headers": {"response": {"set": {"X~/y": "1"}}}},
            "/plugins/headers/response/set/X~0~1y",
            "'X~/y' is not a header name",
            "",
        ),
    ],
)
def test_edge_plugin_problems_name_the_pointer_and_the_fix(
    plugins: dict[str, Any], pointer: str, message: str, hint: str
) -> None:
    found = _problems(plugins)
    matching = [p for p in found if p[0] == pointer]
    assert matching, found
    _, got_message, got_hint = matching[0]
    assert got_message.startswith(message), got_message
    assert got_hint.startswith(hint), got_hint


def test_the_edge_plugins_are_not_given_per_consumer() -> None:
    """They run before authentication: a consumer's own settings would come too late."""
    data = {
        "listeners": [{"address": "127.0.0.1:0"}],
        "consumers": [{"name": "c", "plugins": {"cors": {}, "headers": {"request": {}}}}],
        "services": [{"name": "api", "upstream": "http://127.0.0.1:1", "prefix": "/"}],
    }
    config = config_from_data(data, source="<t>", base_dir=".")
    with pytest.raises(SnapshotError) as caught:
        build_snapshot(config, lambda _u: None, "<t>")
    assert {(p.pointer, p.message) for p in caught.value.problems} == {
        ("/consumers/0/plugins/cors", "cors can not be given per consumer"),
        ("/consumers/0/plugins/headers", "headers can not be given per consumer"),
    }
