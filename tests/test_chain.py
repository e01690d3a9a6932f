"""The per-route chain: steps by phase, built once per snapshot, run by the data plane.

Unit tests of the chain's order and the targets' constructors, then a real
gateway (on its own loop thread) in front of real upstreams, with Python
steps given through `Gateway(steps=...)`: answering, changing the request,
stamping responses (proxied and the gateway's own), counting in the log
phase, failing (500, or on with fail_open), and waiting (async) with bodies,
pipelining and Expect: 100-continue.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
from collections.abc import Sequence
from typing import Any

import pytest

from runmcp_fast._dataplane import PHASES, Chain, ContractStep, PyStep, Step, Target
from runmcp_fast.config import config_from_data
from runmcp_fast.snapshot import RouteInfo, build_snapshot
from tests.servers import ECHO_COUNT, Harness, RecordingUpstream, echo_app, wait_until

SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "Items", "version": "1"},
    "paths": {
        "/items/{id}": {
            "get": {
                "operationId": "getItem",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
                ],
                "responses": {"200": {"description": "ok"}},
            }
        },
        "/items": {
            "post": {
                "operationId": "createItem",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {"name": {"type": "string"}},
                            }
                        }
                    },
                },
                "responses": {"201": {"description": "created"}},
            }
        },
        "/free": {"get": {"operationId": "free", "responses": {"200": {"description": "ok"}}}},
    },
}


# -- the chain's shape ---------------------------------------------------------------------


def test_steps_run_by_phase_then_priority_then_name() -> None:
    steps = [
        Step("log-b", "log", hooks=4),
        Step("auth", "access", priority=10),
        Step("limit", "access", priority=20),
        Step("real-ip", "rewrite"),
        Step("audit", "access", priority=10),
        Step("stamp", "response_headers", hooks=2),
    ]
    chain = Chain(steps)
    assert chain.names() == ["real-ip", "limit", "audit", "auth", "stamp", "log-b"]
    assert chain.describe()[:2] == [("rewrite", "real-ip", 0), ("access", "limit", 20)]
    assert len(chain) == 6
    assert Chain(reversed(steps)).names() == chain.names()  # deterministic whatever the order


def test_a_chain_refuses_two_steps_of_one_name_and_what_is_not_a_step() -> None:
    with pytest.raises(ValueError, match="two steps named 'auth'"):
        Chain([Step("auth", "access"), Step("auth", "rewrite")])
    with pytest.raises(TypeError):
        Chain(["auth"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="unknown phase 'upstream'"):
        Step("x", "upstream")


def test_targets_are_made_by_named_constructors_only() -> None:
    class Owner:
        name = label = "svc"
        tenant = ""

    with pytest.raises(TypeError, match=r"Target\.proxy\(\.\.\.\) or Target\.local"):
        Target()  # type: ignore[call-arg]

    async def handler(request: object) -> tuple[int, tuple[()], bytes]:
        return 200, (), b""

    local = Target.local(owner=Owner(), name="hello", handler=handler, max_body=10)
    assert local.handler is handler and local.replicas is None and len(local.chain) == 0
    assert (local.service_name, local.name) == ("svc", "hello")
    with pytest.raises(TypeError):
        Target.local(Owner(), "hello", handler, 10)  # type: ignore[misc]


def _services(data: dict[str, Any], steps: Any = None) -> dict[str, list[str]]:
    """(template, method) -> chain names, for every route of a snapshot."""
    config = config_from_data(data, source="<test>", base_dir=".")
    snapshot = build_snapshot(config, lambda _u: None, "<test>", steps=steps)
    return {
        f"{route.method} {route.template}": route.target.chain.names()
        for route in snapshot.router.routes()
    }


def test_built_in_steps_are_in_the_chains_of_the_routes_that_need_them() -> None:
    routes = _services(
        {
            "listeners": [{"address": "127.0.0.1:0"}],
            "services": [
                {"name": "items", "upstream": "http://127.0.0.1:1", "openapi": SPEC},
                {"name": "bare", "upstream": "http://127.0.0.1:1", "prefix": "/bare"},
                {
                    "name": "tools",
                    "upstream": "http://127.0.0.1:2/mcp",
                    "kind": "mcp",
                    "mcp": {"path": "/tools/mcp"},
                },
            ],
        }
    )
    assert routes["GET /items/{id}"] == ["contract"]
    assert routes["POST /items"] == ["contract"]
    assert routes["GET /free"] == []  # nothing to check: no step at all
    assert routes["* /bare/*"] == []
    for method in ("POST", "GET", "DELETE"):
        # (both MCP endpoints answer any Host: DNS-rebinding protection first)
        assert routes[f"{method} /tools/mcp"] == ["mcp-host-guard", "mcp-session", "mcp-envelope"]
        assert routes[f"{method} /mcp"] == ["mcp-host-guard"]  # the items': a local target


def test_a_step_source_is_asked_once_per_route_and_adds_to_the_built_ins() -> None:
    asked: list[RouteInfo] = []

    def steps(info: RouteInfo) -> Sequence[Step]:
        asked.append(info)
        return [Step("noop", "access")]

    routes = _services(
        {
            "listeners": [{"address": "127.0.0.1:0"}],
            "services": [{"name": "items", "upstream": "http://127.0.0.1:1", "openapi": SPEC}],
        },
        steps,
    )
    assert routes["GET /items/{id}"] == ["noop", "contract"]  # access runs before contract
    assert routes["GET /free"] == ["noop"]
    assert routes["POST /mcp"] == ["mcp-host-guard", "noop"]  # the MCP endpoint's route too
    kinds = sorted(
        (info.kind, info.operation.operation_id if info.operation else None) for info in asked
    )
    assert kinds == [
        ("mcp", None),
        ("operation", "createItem"),
        ("operation", "free"),
        ("operation", "getItem"),
    ]
    assert {info.service for info in asked} == {"items"}


def test_contract_step_wraps_the_validator_typed_by_hooks() -> None:
    class Guard:
        enforce = True
        max_body = 100
        checked = 0
        fast_heads = None

        def head(self, *args: object) -> None:
            return None

    step = ContractStep(Guard(), name="guard", phase=PHASES["mcp"])
    assert (step.name, step.phase, step.needs_params) == ("guard", PHASES["mcp"], True)


# -- Python steps on a real gateway ----------------------------------------------------------


class Keyed:
    """Refuses requests without `X-Key: open-sesame`; passes the caller on upstream."""

    name = "keyed"
    phase = "access"

    def request(self, view: Any) -> tuple[int, tuple[tuple[str, str], ...], bytes] | None:
        if view.header("x-key") != "open-sesame":
            return 401, (("WWW-Authenticate", 'Key realm="test"'),), b"no key"
        view.remove_header("x-key")
        view.set_header("X-Caller", f"{view.method} {view.path} {view.params}")
        view.vars["caller"] = "alice"
        return None


class Stamp:
    name = "stamp"
    phase = "response_headers"

    def response(self, view: Any, status: int, headers: list[tuple[str, str]]) -> None:
        headers.append(("X-Stamp", f"{status} {view.route} {view.vars.get('caller')}"))
        headers[:] = [(n, v) for n, v in headers if n.lower() != "x-drop-me"]


class Counter:
    name = "counter"
    phase = "log"

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def log(self, view: Any, status: int) -> None:
        self.seen.append((view.path, status))


def _gateway(harness: Harness, upstream_url: str, *plugins: Any, validation: str = "on") -> int:
    def steps(info: RouteInfo) -> Sequence[Step]:
        return [PyStep(p) for p in plugins] if info.kind == "operation" else []

    gateway = harness.gateway(
        {
            "services": [
                {
                    "name": "items",
                    "upstream": upstream_url,
                    "openapi": SPEC,
                    "validation": {"mode": validation},
                }
            ]
        },
        steps=steps,
    )
    return gateway.port


def _request(
    harness: Harness, port: int, method: str, path: str, headers: str = "", body: bytes = b""
) -> tuple[int, dict[str, str], bytes]:
    client = harness.client(port)
    length = f"Content-Length: {len(body)}\r\n" if body else ""
    client.send(f"{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}{length}\r\n".encode() + body)
    return client.read_response()


def test_a_step_answers_and_the_upstream_never_sees_the_request(harness: Harness) -> None:
    app = echo_app()
    upstream = harness.aiohttp(app)
    port = _gateway(harness, upstream.url, Keyed())
    status, headers, body = _request(harness, port, "GET", "/items/7")
    assert (status, body) == (401, b"no key")
    assert headers["www-authenticate"] == 'Key realm="test"'
    # A request that passes afterwards is the upstream's first and only one.
    status, _, body = _request(harness, port, "GET", "/items/7", "X-Key: open-sesame\r\n")
    assert status == 200
    assert app[ECHO_COUNT][0] == 1


def test_a_step_changes_the_request_headers_sent_upstream(harness: Harness) -> None:
    upstream = harness.aiohttp(echo_app())
    port = _gateway(harness, upstream.url, Keyed())
    status, _, body = _request(harness, port, "GET", "/items/7?x=1", "X-Key: open-sesame\r\n")
    assert status == 200
    sent = dict(json.loads(body)["headers"])
    assert "X-Key" not in sent and "x-key" not in sent
    assert sent["X-Caller"] == "GET /items/7 {'id': '7'}"


def test_a_response_step_stamps_proxied_and_gateway_made_answers(harness: Harness) -> None:
    upstream = harness.aiohttp(echo_app())
    port = _gateway(harness, upstream.url, Keyed(), Stamp())
    status, headers, _ = _request(harness, port, "GET", "/items/7", "X-Key: open-sesame\r\n")
    assert status == 200 and headers["x-stamp"] == "200 getItem alice"
    # The step's own refusal, and a contract refusal (id is an integer), stamped too.
    status, headers, _ = _request(harness, port, "GET", "/items/7")
    assert status == 401 and headers["x-stamp"] == "401 getItem None"
    status, headers, body = _request(harness, port, "GET", "/items/seven", "X-Key: open-sesame\r\n")
    assert status == 400 and headers["x-stamp"] == "400 getItem alice"
    assert headers["content-length"] == str(len(body))  # framing left to the data plane


def test_a_response_step_removes_an_upstream_header(harness: Harness) -> None:
    async def handler(req: Any) -> None:
        req.write(
            b"HTTP/1.1 200 OK\r\nX-Drop-Me: yes\r\nX-Keep: yes\r\nContent-Length: 2\r\n\r\nok"
        )

    upstream = harness.raw(handler)
    port = _gateway(harness, upstream.url, Stamp())
    status, headers, body = _request(harness, port, "GET", "/free")
    assert (status, body) == (200, b"ok")
    assert "x-drop-me" not in headers and headers["x-keep"] == "yes"


def test_log_steps_see_every_exchange_once_with_its_status(harness: Harness) -> None:
    counter = Counter()
    upstream = harness.aiohttp(echo_app())
    port = _gateway(harness, upstream.url, Keyed(), counter)
    _request(harness, port, "GET", "/items/1", "X-Key: open-sesame\r\n")
    _request(harness, port, "GET", "/items/2")
    _request(
        harness,
        port,
        "POST",
        "/items",
        "X-Key: open-sesame\r\nContent-Type: application/json\r\n",
        b"{}",
    )
    assert wait_until(lambda: len(counter.seen) == 3)
    assert sorted(counter.seen) == [("/items", 400), ("/items/1", 200), ("/items/2", 401)]


class Broken:
    name = "broken"
    phase = "access"

    def __init__(self, fail_open: bool = False) -> None:
        self.fail_open = fail_open

    def request(self, view: Any) -> None:
        raise RuntimeError("a bug in a plugin")


@pytest.mark.parametrize("fail_open", [False, True])
def test_a_failing_step_answers_500_or_goes_on_and_the_worker_lives(
    harness: Harness, fail_open: bool, caplog: pytest.LogCaptureFixture
) -> None:
    app = echo_app()
    upstream = harness.aiohttp(app)
    plugin = Broken(fail_open)
    port = _gateway(harness, upstream.url, plugin)
    for _ in range(3):
        status, headers, body = _request(harness, port, "GET", "/free")
        if fail_open:
            assert status == 200
        else:
            assert status == 500
            assert headers["content-type"] == "application/problem+json"
            assert (
                json.loads(body)["detail"] == "a step of this route failed; the gateway logged why"
            )
    assert app[ECHO_COUNT][0] == (3 if fail_open else 0)
    # Logged at most once a second: one line for the three failures.
    failures = [r for r in caplog.records if "step 'broken' failed" in r.getMessage()]
    assert len(failures) == 1


# -- steps that make the request wait ----------------------------------------------------------


class Gate:
    """An async step: each request waits until the test opens the gate, then is let
    through, or answered with `answer`."""

    name = "gate"
    phase = "access"

    def __init__(self, answer: Any = None, raises: bool = False) -> None:
        self.entered = threading.Event()
        self.opened: asyncio.Event | None = None
        self.answer = answer
        self.raises = raises
        self.calls = 0

    async def request(self, view: Any) -> Any:
        self.calls += 1
        if self.opened is None:
            self.opened = asyncio.Event()
        self.entered.set()
        await self.opened.wait()
        if self.raises:
            raise LookupError("the identity provider is down")
        return self.answer

    def open(self, harness: Harness) -> None:
        assert self.entered.wait(10)

        def set_it() -> None:
            assert self.opened is not None
            self.opened.set()

        harness.gateway_loop.call(set_it)


def test_a_waiting_step_holds_a_body_then_sends_it_whole(harness: Harness) -> None:
    upstream = RecordingUpstream(harness.upstream_loop)
    try:
        gate = Gate()
        port = _gateway(harness, upstream.url, gate, validation="off")
        client = harness.client(port)
        body = b'{"name": "' + b"x" * 300_000 + b'"}'  # more than the buffer: reading pauses
        client.send(
            b"POST /items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body[:1000]
        )
        assert gate.entered.wait(10)
        assert upstream.begun == 0
        sender = threading.Thread(target=client.send, args=(body[1000:],))
        sender.start()
        gate.open(harness)
        sender.join(10)
        status, _, answer = client.read_response()
        assert status == 200
        assert json.loads(answer)["body"] == body.decode()
        assert [r["body"] for r in upstream.requests] == [body]
    finally:
        upstream.close()


def test_a_waiting_step_holds_a_chunked_body_and_frames_it_again(harness: Harness) -> None:
    upstream = RecordingUpstream(harness.upstream_loop)
    try:
        gate = Gate()
        port = _gateway(harness, upstream.url, gate, validation="off")
        client = harness.client(port)
        client.send(
            b"POST /items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Transfer-Encoding: chunked\r\n\r\n5\r\n{"a":\r\n'
        )
        assert gate.entered.wait(10)
        gate.open(harness)
        client.send(b"2\r\n1}\r\n0\r\n\r\n")
        status, _, answer = client.read_response()
        assert status == 200 and json.loads(answer)["body"] == '{"a":1}'
        headers = dict(upstream.requests[0]["headers"])
        assert headers.get("Transfer-Encoding") == "chunked"
    finally:
        upstream.close()


def test_a_waiting_step_that_answers_keeps_the_connection_when_the_body_was_read(
    harness: Harness,
) -> None:
    app = echo_app()
    upstream = harness.aiohttp(app)
    gate = Gate(answer=(403, (("X-Why", "closed"),), b"not today"))
    port = _gateway(harness, upstream.url, gate, validation="off")
    client = harness.client(port)
    client.send(
        b"POST /items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\n\r\n{}"
    )
    gate.open(harness)
    status, headers, body = client.read_response()
    assert (status, body, headers["x-why"]) == (403, b"not today", "closed")
    assert headers.get("connection") == "keep-alive"
    client.send(b"GET /free HTTP/1.1\r\nHost: x\r\n\r\n")  # the same connection goes on
    status, _, _ = client.read_response()
    assert status == 403  # the gate answers every request the same way
    assert app[ECHO_COUNT][0] == 0


def test_a_waiting_step_refusing_an_expect_100_request_sends_no_100_continue(
    harness: Harness,
) -> None:
    gate = Gate(answer=(401, (), b"who are you"))
    upstream = harness.aiohttp(echo_app())
    port = _gateway(harness, upstream.url, gate, validation="off")
    client = harness.client(port)
    client.send(
        b"POST /items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Expect: 100-continue\r\nContent-Length: 100000\r\n\r\n"
    )
    gate.open(harness)
    status, _, body = client.read_response()
    assert (status, body) == (401, b"who are you")  # the first bytes: no 100 before it
    assert client.is_closed()  # the body was never invited: the connection closes


def test_a_waiting_step_accepting_an_expect_100_request_then_invites_the_body(
    harness: Harness,
) -> None:
    gate = Gate()
    upstream = harness.aiohttp(echo_app())
    port = _gateway(harness, upstream.url, gate, validation="off")
    client = harness.client(port)
    client.send(
        b"POST /items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n"
    )
    gate.open(harness)
    status, _, _ = client.read_response()
    assert status == 100
    client.send(b"{}")
    status, _, body = client.read_response()
    assert status == 200 and json.loads(body)["body"] == "{}"


def test_pipelined_requests_behind_a_waiting_one_are_answered_in_order(harness: Harness) -> None:
    gate = Gate()
    upstream = harness.aiohttp(echo_app())
    port = _gateway(harness, upstream.url, gate, validation="off")
    client = harness.client(port)
    client.send(
        b"GET /items/1 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /items/2 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /items/3 HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    gate.open(harness)  # (one Event for every request: all are let through)
    paths = [json.loads(client.read_response()[2])["path"] for _ in range(3)]
    assert paths == ["/items/1", "/items/2", "/items/3"]


def test_a_waiting_step_that_raises_answers_500(harness: Harness) -> None:
    gate = Gate(raises=True)
    upstream = harness.aiohttp(echo_app())
    port = _gateway(harness, upstream.url, gate, validation="off")
    client = harness.client(port)
    client.send(b"GET /free HTTP/1.1\r\nHost: x\r\n\r\n")
    gate.open(harness)
    status, headers, _ = client.read_response()
    assert status == 500 and headers["content-type"] == "application/problem+json"


def test_a_client_leaving_while_a_step_waits_harms_nothing(harness: Harness) -> None:
    app = echo_app()
    upstream = harness.aiohttp(app)
    gate = Gate()
    counter = Counter()
    port = _gateway(harness, upstream.url, gate, counter, validation="off")
    client = harness.client(port)
    client.send(b"GET /items/1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert gate.entered.wait(10)
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # a reset: the client is gone, not just done sending
    assert wait_until(lambda: counter.seen == [("/items/1", 499)])
    gate.open(harness)
    status, _, _ = _request(harness, port, "GET", "/free")
    assert status == 200
    assert app[ECHO_COUNT][0] == 1  # the one that left never went upstream


def test_a_body_over_the_limit_while_a_step_waits_gets_413_and_the_step_is_dropped(
    harness: Harness,
) -> None:
    app = echo_app()
    upstream = harness.aiohttp(app)
    gate = Gate()

    def steps(info: RouteInfo) -> Sequence[Step]:
        return [PyStep(gate)]

    gateway = harness.gateway(
        {
            "services": [
                {"name": "e", "upstream": upstream.url, "prefix": "/", "max_body_bytes": 10}
            ]
        },
        steps=steps,
    )
    client = harness.client(gateway.port)
    client.send(b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n")
    assert gate.entered.wait(10)
    client.send(b"10\r\n0123456789abcdef\r\n0\r\n\r\n")  # 20 bytes in all: over 10
    status, _, _ = client.read_response()
    assert status == 413
    assert client.is_closed()
    gate.open(harness)  # too late: the request was answered
    status, _, _ = _request(harness, gateway.port, "GET", "/y")
    assert status == 200
    assert app[ECHO_COUNT][0] == 1


# -- the MCP envelope: made only for a chain one of whose steps may read it -----------------


def _mcp_chain(tmp_path: Any, plugins: dict[str, Any] | None = None, steps: Any = None) -> Chain:
    data: dict[str, Any] = {
        "listeners": [{"address": "127.0.0.1:0"}],
        "services": [
            {
                "name": "tools",
                "upstream": "http://127.0.0.1:2/mcp",
                "kind": "mcp",
                "mcp": {"path": "/tools/mcp"},
            }
        ],
    }
    if plugins is not None:
        data["plugins"] = plugins
    config = config_from_data(data, source="<test>", base_dir=str(tmp_path))
    snapshot = build_snapshot(config, lambda _u: None, "<test>", steps=steps)
    found = snapshot.router.match(None, "POST", "/tools/mcp")
    assert found is not None
    return found.target.chain


def test_a_chain_reads_the_envelope_when_one_of_its_steps_may(tmp_path: Any) -> None:
    plain = _mcp_chain(tmp_path)
    assert plain.names() == ["mcp-host-guard", "mcp-session", "mcp-envelope"]
    assert not plain.reads_envelope  # a plain MCP proxy: the body checked, nothing made
    log = str(tmp_path / "access.log")
    # The access log's default fields include the MCP method and tool: it reads it.
    assert _mcp_chain(tmp_path, {"access-log": {"file": log}}).reads_envelope
    assert not _mcp_chain(
        tmp_path, {"access-log": {"file": log, "fields": ["path", "status"]}}
    ).reads_envelope
    assert _mcp_chain(
        tmp_path, {"access-log": {"file": log, "fields": ["mcp_tool"]}}
    ).reads_envelope
    # A Python step, or a step that says nothing of it, may read it.
    assert _mcp_chain(tmp_path, steps=lambda _info: [PyStep(Counter())]).reads_envelope
    assert _mcp_chain(tmp_path, steps=lambda _info: [Step("noop", "access")]).reads_envelope
    assert not Chain(()).reads_envelope
    assert not Step("quiet", "access", reads_envelope=False).reads_envelope
    # (a step made without Step.__init__, as a subclass may, says nothing either)
    assert Step.__new__(Step).reads_envelope


def _mcp_json_app(bodies: list[bytes]) -> Any:
    """A JSON-answering MCP server that keeps every body it is sent."""
    from aiohttp import web

    async def rpc(request: web.Request) -> web.Response:
        body = await request.read()
        bodies.append(body)
        message = json.loads(body)
        result = {"content": [{"type": "text", "text": "done"}]}
        return web.json_response({"jsonrpc": "2.0", "id": message.get("id"), "result": result})

    app = web.Application()
    app.router.add_post("/mcp", rpc)
    return app


def test_an_envelope_is_checked_on_every_chain_and_given_to_the_steps_that_read_it(
    harness: Harness,
) -> None:
    bodies: list[bytes] = []
    upstream = harness.aiohttp(_mcp_json_app(bodies))
    seen: list[Any] = []

    class Reader:
        name = "reader"
        phase = "log"

        def log(self, view: Any, status: int) -> None:
            seen.append((status, view.vars.get("mcp.envelope")))

    def steps(info: RouteInfo) -> Sequence[Step]:
        return [PyStep(Reader())] if info.service == "read" else []

    services = [
        {"name": name, "kind": "mcp", "upstream": f"{upstream.url}/mcp", "mcp": {"path": path}}
        for name, path in (("plain", "/plain/mcp"), ("read", "/read/mcp"))
    ]
    gateway = harness.gateway({"services": services}, steps=steps)
    for path, reads in (("/plain/mcp", False), ("/read/mcp", True)):
        found = gateway.gateway.snapshot.router.match(None, "POST", path)
        assert found is not None and found.target.chain.reads_envelope is reads

    def post(path: str, body: bytes, chunked: bool) -> tuple[int, bytes]:
        """POST `body` whole (Content-Length: the step's body_passes) or in two chunks
        (gathered, then the step's on_body)."""
        client = harness.client(gateway.port)
        half = len(body) // 2
        framed = (
            b"Transfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n"
            % (half, body[:half], len(body) - half, body[half:])
            if chunked
            else b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        client.send(
            f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            "Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-06-18\r\n".encode()
            + framed
        )
        status, _, answer = client.read_response()
        return status, answer

    call = b'{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{}}}'
    refused = [
        b'{"jsonrpc":"1.0","id":5,"method":"tools/call"}',  # not JSON-RPC 2.0
        b'{"jsonrpc":"2.0","id":5,"method":"tools/call",}',  # not JSON
        b'{"jsonrpc":"2.0","id":{"a":1},"method":"tools/call"}',  # an id may not be an object
        b'{"jsonrpc":"2.0","id":5,"method":7}',  # nor a method a number
    ]
    for path in ("/plain/mcp", "/read/mcp"):
        for chunked in (False, True):
            status, answer = post(path, call, chunked)
            assert status == 200, answer
            for body in refused:
                status, answer = post(path, body, chunked)
                assert status == 400, (path, chunked, body, answer)
                assert json.loads(answer)["error"]["code"] in (-32700, -32600), answer
    # The upstream got the valid call, byte for byte, from both, whole and chunked.
    assert bodies == [call] * 4
    for path in ("/plain/mcp", "/read/mcp"):
        # Every POST counted by its guard (the admin API's and the metrics' `checked`).
        found = gateway.gateway.snapshot.router.match(None, "POST", path)
        assert found is not None
        (guard,) = [s for s in found.target.chain.steps if s.name == "mcp-envelope"]
        assert guard.validator.checked == 2 * (1 + len(refused))
    wait_until(lambda: len(seen) == 2 * (1 + len(refused)))
    assert [status for status, _ in seen] == ([200] + [400] * len(refused)) * 2
    for envelope in (seen[0][1], seen[1 + len(refused)][1]):
        assert (envelope.kind, envelope.method, envelope.id, envelope.name) == (
            "request",
            "tools/call",
            5,
            "echo",
        )
    assert all(envelope is None for status, envelope in seen if status == 400)
