"""The opentelemetry plugin on a real gateway: W3C trace context upstream, sampling, the
spans it exports over OTLP/HTTP, and its config problems.

Real parts only: an OTLP/HTTP receiver (an aiohttp app taking POST /v1/traces, its
protobuf bodies decoded with opentelemetry-proto), the echo upstream (it answers with the
headers it received: the traceparent it got), the SDK's BatchSpanProcessor and OTLP
exporter inside the gateway, the official MCP SDK for the MCP cases.

Each gateway exports under its own service.name, and `Traced.finish()` stops it: a stop
exports what is queued, so after it the receiver holds every span that gateway will ever
send, and "no span" is decided without waiting for anything.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from isolation import run_isolated
from mcp_fixtures import ReplicaSet, mcp_client, mcp_replicas
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk.trace.sampling import Decision, TraceIdRatioBased
from servers import GatewayThread, Harness, RawRequest, echo_app, refused_port

from runmcp_fast.config import config_from_data
from runmcp_fast.plugins._steps import (
    TracingStep,
    format_traceparent,
    parse_traceparent,
    time_steps,
)
from runmcp_fast.problems import SnapshotError
from runmcp_fast.snapshot import build_snapshot

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
KEY = "tracing-key-0123456789"

SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "t", "version": "1"},
    "paths": {
        "/items/{id}": {
            "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
            ],
            "get": {"operationId": "getItem", "responses": {"200": {"description": "ok"}}},
        },
    },
    "servers": [{"url": "/api"}],
}


# -- the OTLP/HTTP receiver ---------------------------------------------------------------


@dataclass
class Span:
    service: str  # the resource's service.name
    resource: dict[str, Any]
    scope: str
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root
    trace_state: str
    name: str
    kind: int
    start: int
    end: int
    attributes: dict[str, Any]
    status: int  # 0 unset, 1 ok, 2 error
    message: str


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def decode(body: bytes) -> list[Span]:
    """An ExportTraceServiceRequest's spans."""
    message = ExportTraceServiceRequest()
    message.ParseFromString(body)
    found: list[Span] = []
    for resource_spans in message.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            found.extend(_span(resource, scope_spans.scope.name, s) for s in scope_spans.spans)
    return found


def _span(resource: dict[str, Any], scope: str, span: Any) -> Span:
    return Span(
        service=resource.get("service.name", ""),
        resource=resource,
        scope=scope,
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_id=span.parent_span_id.hex(),
        trace_state=span.trace_state,
        name=span.name,
        kind=span.kind,
        start=span.start_time_unix_nano,
        end=span.end_time_unix_nano,
        attributes={a.key: _value(a.value) for a in span.attributes},
        status=span.status.code,
        message=span.status.message,
    )


class Receiver:
    """POST /v1/traces: protobuf ExportTraceServiceRequest bodies (gzip too), decoded and
    kept; `wait(service, n)` blocks until that many spans of that service came (bounded)."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.headers: list[dict[str, str]] = []
        self._changed = threading.Condition()

    def app(self) -> web.Application:
        async def traces(request: web.Request) -> web.Response:
            body = await request.read()  # (aiohttp inflates a gzip body itself)
            found = decode(body)
            with self._changed:
                self.headers.append({k.lower(): v for k, v in request.headers.items()})
                self.spans += found
                self._changed.notify_all()
            return web.Response(
                body=ExportTraceServiceResponse().SerializeToString(),
                content_type="application/x-protobuf",
            )

        app = web.Application()
        app.router.add_post("/v1/traces", traces)
        return app

    def of(self, service: str) -> list[Span]:
        with self._changed:
            return [s for s in self.spans if s.service == service]

    def wait(self, service: str, count: int, timeout: float = 15.0) -> list[Span]:
        with self._changed:
            self._changed.wait_for(lambda: len(self.of_locked(service)) >= count, timeout)
            return self.of_locked(service)

    def of_locked(self, service: str) -> list[Span]:
        return [s for s in self.spans if s.service == service]


# -- gateways -------------------------------------------------------------------------------

_names = itertools.count(1)


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    h = Harness()
    try:
        yield h
    finally:
        h.close()


@pytest.fixture(scope="module")
def receiver(harness: Harness) -> tuple[Receiver, str]:
    found = Receiver()
    return found, harness.aiohttp(found.app()).url


@pytest.fixture(scope="module")
def upstream(harness: Harness) -> Any:
    return harness.aiohttp(echo_app())


class Traced:
    """A gateway with the opentelemetry plugin, exporting to the receiver as `service`."""

    def __init__(
        self,
        harness: Harness,
        receiver: tuple[Receiver, str],
        upstream_url: str,
        settings: dict[str, Any] | None = None,
        **data: Any,
    ) -> None:
        self.receiver, receiver_url = receiver
        self.service = f"gw-{next(_names)}"
        otel = {
            "endpoint": f"{receiver_url}/v1/traces",
            "service_name": self.service,
            "schedule_delay_ms": 10,
            **(settings or {}),
        }
        services = data.pop("services", None) or [
            {"name": "api", "upstream": upstream_url, "openapi": SPEC},
            {"name": "raw", "upstream": upstream_url, "prefix": "/raw"},
        ]
        self.gateway: GatewayThread = harness.gateway(
            {
                "plugins": {"opentelemetry": otel, **data.pop("plugins", {})},
                "services": services,
                **data,
            }
        )
        self.harness = harness
        self.port = self.gateway.port

    def get(self, path: str = "/api/items/7", headers: str = "") -> tuple[int, dict[str, Any]]:
        """One GET; (status, the echo's JSON or {}): what the upstream received."""
        client = self.harness.client(self.port)
        client.send(f"GET {path} HTTP/1.1\r\nHost: h\r\n{headers}\r\n".encode())
        status, _, body = client.read_response()
        client.close()
        try:
            return status, json.loads(body)
        except ValueError:
            return status, {}

    @property
    def step(self) -> TracingStep:
        target = self.gateway.gateway.snapshot.router.match(None, "GET", "/api/items/7").target
        return next(s for s in target.chain if isinstance(s, TracingStep))

    def finish(self) -> list[Span]:
        """Stop the gateway (its queue is exported then): every span it sent."""
        self.gateway.stop()
        return self.receiver.of(self.service)


@pytest.fixture
def traced(harness: Harness, receiver: tuple[Receiver, str], upstream: Any) -> Any:
    """`traced(settings, **config)`: a Traced gateway (the harness stops any left running)."""

    def make(settings: dict[str, Any] | None = None, **data: Any) -> Traced:
        return Traced(harness, receiver, upstream.url, settings, **data)

    return make


def sent(echo: dict[str, Any], name: str) -> list[str]:
    """The values of header `name` the upstream received, in order."""
    return [v for n, v in echo.get("headers", []) if n.lower() == name.lower()]


def one_traceparent(echo: dict[str, Any]) -> tuple[str, str, str, str]:
    (value,) = sent(echo, "traceparent")
    version, trace_id, parent_id, flags = value.split("-")
    assert version == "00" and len(trace_id) == 32 and len(parent_id) == 16, value
    return version, trace_id, parent_id, flags


def new_ids() -> tuple[str, str]:
    return f"{random.getrandbits(128):032x}", f"{random.getrandbits(64) | 1:016x}"


# -- propagation and sampling ---------------------------------------------------------------


def test_a_sampled_caller_gets_the_gateways_span_as_the_upstreams_parent(traced: Any) -> None:
    gw = traced({"sample_ratio": 0.0})  # parent-based: the caller's flag decides, not the ratio
    status, echo = gw.get(headers=f"traceparent: 00-{TRACE}-{PARENT}-01\r\n")
    assert status == 200
    _, trace_id, parent_id, flags = one_traceparent(echo)
    assert (trace_id, flags) == (TRACE, "01")
    (span,) = gw.receiver.wait(gw.service, 1)  # exported while the gateway runs
    assert (span.trace_id, span.parent_id) == (TRACE, PARENT)
    assert span.span_id == parent_id != PARENT  # the upstream's parent is the gateway's span
    assert span.kind == 2  # SERVER
    assert span.scope == "runmcp_fast"
    assert 0 < span.start <= span.end
    assert gw.finish() == [span]


def test_an_unsampled_caller_is_passed_on_as_it_came_and_gets_no_span(traced: Any) -> None:
    gw = traced({"sample_ratio": 1.0})
    incoming = f"00-{TRACE}-{PARENT}-00"
    _, echo = gw.get(headers=f"traceparent: {incoming}\r\ntracestate: a=1\r\n")
    assert sent(echo, "traceparent") == [incoming]
    assert sent(echo, "tracestate") == ["a=1"]
    assert gw.step.sampled == 0
    assert gw.finish() == []


def test_without_a_traceparent_ratio_one_starts_an_exported_trace(traced: Any) -> None:
    gw = traced({"sample_ratio": 1.0})
    _, echo = gw.get()
    _, trace_id, parent_id, flags = one_traceparent(echo)
    assert flags == "01"
    (span,) = gw.finish()
    assert (span.trace_id, span.span_id, span.parent_id) == (trace_id, parent_id, "")


@pytest.mark.parametrize("create", [True, False])
def test_ratio_zero_exports_nothing(traced: Any, create: bool) -> None:
    gw = traced({"sample_ratio": 0.0, "create_traceparent": create})
    traceparents = [sent(gw.get()[1], "traceparent") for _ in range(20)]
    if create:
        # A new (unsampled) trace upstream each time; the gateway records no span.
        assert all(len(t) == 1 and t[0].endswith("-00") for t in traceparents)
        assert len({t[0].split("-")[1] for t in traceparents}) == 20
    else:
        assert traceparents == [[]] * 20
    assert gw.step.sampled == 0
    assert gw.finish() == []


def test_not_parent_based_the_ratio_decides_on_the_callers_trace_id(traced: Any) -> None:
    gw = traced({"sample_ratio": 0.0, "parent_based": False})
    incoming = f"00-{TRACE}-{PARENT}-01"
    _, echo = gw.get(headers=f"traceparent: {incoming}\r\n")
    assert sent(echo, "traceparent") == [incoming]  # not sampled here: passed on as it came
    assert gw.finish() == []


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(f"traceparent: 00-{TRACE.upper()}-{PARENT}-01\r\n", id="upper-case"),
        pytest.param(f"traceparent: 00-{'0' * 32}-{PARENT}-01\r\n", id="zero-trace-id"),
        pytest.param(f"traceparent: 00-{TRACE}-{'0' * 16}-01\r\n", id="zero-parent-id"),
        pytest.param(f"traceparent: 00-{TRACE}-{PARENT}-01-extra\r\n", id="00-too-long"),
        pytest.param(f"traceparent: 00-{TRACE}-{PARENT[:-1]}-01\r\n", id="short"),
        pytest.param(f"traceparent: ff-{TRACE}-{PARENT}-01\r\n", id="version-ff"),
        pytest.param(f"traceparent: 00_{TRACE}_{PARENT}_01\r\n", id="no-dashes"),
        pytest.param(f"traceparent: 00-{TRACE}-{PARENT}-0g\r\n", id="bad-flags"),
        pytest.param(
            f"traceparent: 00-{TRACE}-{PARENT}-01\r\ntraceparent: 00-{TRACE}-{PARENT}-01\r\n",
            id="two-fields",
        ),
    ],
)
def test_a_malformed_traceparent_is_replaced_and_its_tracestate_dropped(
    traced: Any, headers: str
) -> None:
    gw = traced({"sample_ratio": 0.0})
    _, echo = gw.get(headers=headers + "tracestate: vendor=x\r\n")
    _, trace_id, _, flags = one_traceparent(echo)  # exactly one, valid
    assert trace_id != TRACE and flags == "00"
    assert sent(echo, "tracestate") == []  # W3C: no tracestate without a valid traceparent
    assert gw.step.replaced == 1
    assert gw.finish() == []


def test_a_later_version_is_read_as_far_as_00_goes(traced: Any) -> None:
    gw = traced({"sample_ratio": 0.0})
    _, echo = gw.get(headers=f"traceparent: cc-{TRACE}-{PARENT}-01-what-comes-later\r\n")
    _, trace_id, span_id, flags = one_traceparent(echo)  # rewritten as the 00 the gateway writes
    assert (trace_id, flags) == (TRACE, "01")
    (span,) = gw.finish()
    assert (span.parent_id, span.span_id) == (PARENT, span_id)


def test_tracestate_is_kept_and_recorded(traced: Any) -> None:
    gw = traced()
    _, echo = gw.get(
        headers=f"traceparent: 00-{TRACE}-{PARENT}-01\r\ntracestate: rojo=00f067aa0ba902b7\r\n"
        "tracestate: congo=t61rcWkgMzE\r\n"
    )
    assert sent(echo, "tracestate") == ["rojo=00f067aa0ba902b7", "congo=t61rcWkgMzE"]
    (span,) = gw.finish()
    assert span.trace_state == "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"


# -- what a span carries ----------------------------------------------------------------------


def test_a_span_carries_the_route_status_upstream_client_and_consumer(
    traced: Any, upstream: Any
) -> None:
    gw = traced(
        {"sample_ratio": 1.0},
        plugins={"key-auth": {}},
        consumers=[{"name": "alice", "key-auth": {"key": KEY}}],
    )
    assert gw.get(headers=f"apikey: {KEY}\r\n")[0] == 200
    assert gw.get()[0] == 401  # no key: key-auth answers
    ok, refused = sorted(gw.finish(), key=lambda s: s.attributes["http.response.status_code"])
    assert ok.name == "GET /api/items/{id}"
    assert ok.attributes == {
        "http.request.method": "GET",
        "url.path": "/api/items/7",
        "http.response.status_code": 200,
        "http.route": "/api/items/{id}",
        "runmcp.service": "api",
        "runmcp.route": "getItem",
        "runmcp.upstream": upstream.url,
        "client.address": "127.0.0.1",
        "network.peer.address": "127.0.0.1",
        "runmcp.consumer": "alice",
    }
    assert ok.status == 0  # unset
    assert ok.resource["service.name"] == gw.service
    assert ok.resource["telemetry.sdk.name"] == "opentelemetry"
    assert refused.attributes["http.response.status_code"] == 401
    assert refused.attributes["runmcp.answered_by"] == "key-auth"
    assert "runmcp.upstream" not in refused.attributes  # it never went upstream
    assert refused.status == 0  # a 4xx is the client's, not an error of the gateway's


def test_the_client_behind_a_trusted_proxy_is_the_client_address(traced: Any) -> None:
    gw = traced(plugins={"real-ip": {"trusted": ["127.0.0.1"]}})
    gw.get(headers="X-Forwarded-For: 203.0.113.9\r\n")
    (span,) = gw.finish()
    assert span.attributes["client.address"] == "203.0.113.9"
    assert span.attributes["network.peer.address"] == "127.0.0.1"


def test_a_dead_upstream_is_an_error_span(traced: Any) -> None:
    dead = f"http://127.0.0.1:{refused_port()}"
    gw = traced(services=[{"name": "gone", "upstream": dead, "prefix": "/gone"}])
    assert gw.get("/gone/x")[0] == 502
    (span,) = gw.finish()
    assert span.attributes["http.response.status_code"] == 502
    assert span.attributes["error.type"] == "502"
    assert span.attributes["runmcp.upstream"] == dead
    assert span.status == 2  # error
    assert span.message == span.attributes["runmcp.error"]
    assert "connect" in span.message.lower() or "refused" in span.message.lower(), span.message


def test_a_response_cut_short_by_the_upstream_is_an_error_span(
    traced: Any, harness: Harness
) -> None:
    async def half(request: RawRequest) -> None:
        request.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        request.close()  # 90 bytes short

    raw = harness.raw(half)
    gw = traced(services=[{"name": "half", "upstream": raw.url, "prefix": "/half"}])
    client = harness.client(gw.port)
    client.send(b"GET /half/x HTTP/1.1\r\nHost: h\r\n\r\n")
    assert client.read_until(b"\r\n\r\n").startswith(b"HTTP/1.1 200")
    with contextlib.suppress(OSError):  # (reset, or closed: never a complete body)
        assert len(client.read_to_close()) < 100
    (span,) = gw.finish()
    assert span.status == 2  # error, whatever status the access log gives it
    assert span.attributes["error.type"] == "response_cut_short"
    assert span.message.startswith("the upstream failed in the middle of its response")


def test_resource_headers_and_compression_of_the_export(
    traced: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACING_TEST_TOKEN", "s3cret")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=ci,team=edge")
    gw = traced(
        {
            "headers": {"X-Api-Key": {"env": "TRACING_TEST_TOKEN"}},
            "compression": "gzip",
            "resource": {"team": "gateway", "region.index": 3},
        }
    )
    gw.get()
    (span,) = gw.finish()
    assert span.resource["team"] == "gateway"  # the config's over the environment's
    assert span.resource["region.index"] == 3
    assert span.resource["deployment.environment.name"] == "ci"
    sent_with = [h for h in gw.receiver.headers if h.get("x-api-key") == "s3cret"]
    assert sent_with and all(h.get("content-encoding") == "gzip" for h in sent_with)


def test_otel_sdk_disabled_makes_no_span_and_still_propagates(
    traced: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    gw = traced({"sample_ratio": 1.0})
    incoming = f"00-{TRACE}-{PARENT}-01"
    assert sent(gw.get(headers=f"traceparent: {incoming}\r\n")[1], "traceparent") == [incoming]
    assert one_traceparent(gw.get()[1])[3] == "00"  # a new trace, not sampled
    assert len(gw.gateway.gateway._resources) == 0  # no exporter, no thread
    assert gw.finish() == []


def test_spans_are_exported_when_the_gateway_stops(traced: Any) -> None:
    # An hour between exports and a batch never full: only the stop sends them.
    gw = traced({"schedule_delay_ms": 3_600_000, "max_export_batch_size": 512})
    for _ in range(5):
        gw.get()
    assert gw.step.sampled == 5
    assert gw.receiver.of(gw.service) == []
    assert len(gw.finish()) == 5


def test_a_reload_keeps_the_export_pipeline(traced: Any) -> None:
    gw = traced({"schedule_delay_ms": 3_600_000, "max_export_batch_size": 512})
    gw.get()
    resources = gw.gateway.gateway._resources
    assert len(resources) == 1
    gateway = gw.gateway.gateway
    change = gateway.register_service(name="more", url="http://127.0.0.1:9", prefix="/more")
    gw.gateway.loop_thread.run(change)
    assert gateway.control.generation == 2
    assert len(resources) == 1  # the same settings: the same exporter, its queue kept
    gw.get()
    assert len(gw.finish()) == 2


# -- MCP ---------------------------------------------------------------------------------------

PETS: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Pets", "version": "1"},
    "servers": [{"url": "/v1"}],
    "paths": {
        "/pets/{petId}": {
            "get": {
                "operationId": "getPet",
                "parameters": [
                    {"name": "petId", "in": "path", "required": True, "schema": {"type": "integer"}}
                ],
            }
        }
    },
}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def replicas() -> Iterator[ReplicaSet]:
    with mcp_replicas(1) as started:
        yield started


@pytest.mark.anyio
async def test_mcp_spans_name_the_method_and_tool(
    traced: Any, upstream: Any, replicas: ReplicaSet
) -> None:
    gw = traced(
        services=[
            {"name": "pets", "upstream": upstream.url, "openapi": PETS},
            {"name": "remote", "kind": "mcp", "upstream": replicas.urls[0]},
        ]
    )
    base = f"http://127.0.0.1:{gw.port}"
    async with mcp_client(f"{base}/v1/mcp", "2025-06-18") as conn:
        assert not (await conn.call("getPet", {"petId": 7})).is_error
    async with mcp_client(f"{base}/mcp", "2025-06-18") as conn:
        assert await conn.text("echo", text="hi") == "hi"
    spans = await _finish(gw)
    calls = [s for s in spans if s.attributes.get("mcp.method.name") == "tools/call"]
    generated, proxied = sorted(calls, key=lambda s: s.attributes["runmcp.service"])
    # The generated endpoint: the tool's API request is a span of its own, its child.
    assert generated.name == "tools/call getPet"
    assert generated.attributes["gen_ai.tool.name"] == "getPet"
    assert generated.attributes["runmcp.service"] == "pets"
    assert generated.attributes["runmcp.route"] == "mcp"
    assert "jsonrpc.request.id" in generated.attributes
    (api,) = [s for s in spans if s.attributes.get("runmcp.route") == "getPet"]
    assert api.name == "GET /v1/pets/{petId}"
    assert (api.trace_id, api.parent_id) == (generated.trace_id, generated.span_id)
    # The proxied SDK server: the envelope check's parse, read by the log step.
    assert proxied.name == "tools/call echo"
    assert proxied.attributes["gen_ai.tool.name"] == "echo"
    assert proxied.attributes["runmcp.service"] == "remote"
    assert replicas.urls[0].startswith(proxied.attributes["runmcp.upstream"])
    methods = {s.attributes.get("mcp.method.name") for s in spans}
    assert {"initialize", "notifications/initialized", "tools/call"} <= methods


async def _finish(gw: Traced) -> list[Span]:
    import anyio.to_thread

    return await anyio.to_thread.run_sync(gw.finish)


# -- config problems ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "env", "pointer", "message", "hint"),
    [
        pytest.param(
            {"endpoint": "http://collector:4318"},
            {},
            "/plugins/opentelemetry/endpoint",
            "has no path",
            "did you mean http://collector:4318/v1/traces?",
            id="endpoint-without-path",
        ),
        pytest.param(
            {"endpoint": "collector:4318/v1/traces"},
            {},
            "/plugins/opentelemetry/endpoint",
            "not an http(s) URL",
            "http://collector:4318/v1/traces",
            id="endpoint-not-http",
        ),
        pytest.param(
            {"headers": {"bad name": "x"}},
            {},
            "/plugins/opentelemetry/headers/bad name",
            "not a header name",
            "RFC 9110 token",
            id="header-name",
        ),
        pytest.param(
            {"headers": {"X-Key": "a\r\nX-Evil: 1"}},
            {},
            "/plugins/opentelemetry/headers/X-Key",
            "CR or LF",
            "header injection",
            id="header-value",
        ),
        pytest.param(
            {"headers": {"X-Key": {"env": "TRACING_TEST_UNSET"}}},
            {},
            "/plugins/opentelemetry/headers/X-Key/env",
            "TRACING_TEST_UNSET is not set",
            "set it for the gateway's process",
            id="header-secret-unset",
        ),
        pytest.param(
            {"max_queue_size": 10, "max_export_batch_size": 20},
            {},
            "/plugins/opentelemetry/max_export_batch_size",
            "larger than max_queue_size",
            "at most 10",
            id="batch-over-queue",
        ),
        pytest.param(
            {"sample_ratio": 1.5},
            {},
            "/plugins/opentelemetry/sample_ratio",
            "<= 1.0",
            "",
            id="ratio-over-one",
        ),
        pytest.param(
            {},
            {"OTEL_TRACES_SAMPLER": "jaeger_remote"},
            "/plugins/opentelemetry",
            "OTEL_TRACES_SAMPLER='jaeger_remote'",
            "give sample_ratio and parent_based here",
            id="env-sampler",
        ),
        pytest.param(
            {"parent_based": True},
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"},
            "/plugins/opentelemetry",
            "OTEL_TRACES_SAMPLER_ARG='half' is not a ratio",
            "a number from 0 to 1",
            id="env-sampler-arg",
        ),
        pytest.param(
            {"sampel_ratio": 0.5},
            {},
            "/plugins/opentelemetry/sampel_ratio",
            "unknown key",
            "did you mean 'sample_ratio'?",
            id="typo",
        ),
    ],
)
def test_config_problems_name_the_pointer_and_the_fix(
    monkeypatch: pytest.MonkeyPatch,
    settings: dict[str, Any],
    env: dict[str, str],
    pointer: str,
    message: str,
    hint: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TRACING_TEST_UNSET", raising=False)
    config = config_from_data(
        {
            "listeners": [{"address": "127.0.0.1:0"}],
            "plugins": {"opentelemetry": settings},
            "services": [{"name": "raw", "upstream": "http://127.0.0.1:9", "prefix": "/r"}],
        },
        source="<t>",
    )
    with pytest.raises(SnapshotError) as caught:
        build_snapshot(config, lambda _u: None, "<t>")
    (problem,) = caught.value.problems
    assert problem.pointer == pointer
    assert message in problem.message
    assert hint in problem.hint


def test_the_environment_chooses_the_sampler_when_the_config_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from runmcp_fast.plugins.builtin.tracing import sampler

    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    assert sampler(None, None) == (1.0, True)  # the SDK's default: parentbased_always_on
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    assert sampler(None, None) == (0.25, False)
    assert sampler(None, True) == (0.25, True)
    assert sampler(0.5, None) == (0.5, False)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_always_off")
    assert sampler(None, None) == (0.0, True)


# -- the compiled parts, against the specification and the SDK ------------------------------


@pytest.mark.parametrize(
    ("header", "parsed"),
    [
        (f"00-{TRACE}-{PARENT}-01", (int(TRACE, 16), int(PARENT, 16), 1)),
        (f"00-{TRACE}-{PARENT}-00", (int(TRACE, 16), int(PARENT, 16), 0)),
        (f"00-{TRACE}-{PARENT}-09", (int(TRACE, 16), int(PARENT, 16), 9)),
        (f" 00-{TRACE}-{PARENT}-01\t", (int(TRACE, 16), int(PARENT, 16), 1)),
        (f"01-{TRACE}-{PARENT}-01", (int(TRACE, 16), int(PARENT, 16), 1)),
        (f"cc-{TRACE}-{PARENT}-01-later", (int(TRACE, 16), int(PARENT, 16), 1)),
        (f"cc-{TRACE}-{PARENT}-01later", None),
        (f"00-{TRACE}-{PARENT}-01-", None),
        (f"ff-{TRACE}-{PARENT}-01", None),
        (f"0g-{TRACE}-{PARENT}-01", None),
        (f"00-{TRACE[:-1]}A-{PARENT}-01", None),
        (f"00-{'0' * 32}-{PARENT}-01", None),
        (f"00-{TRACE}-{'0' * 16}-01", None),
        (f"00-{TRACE}-{PARENT}-1", None),
        ("", None),
    ],
)
def test_parse_traceparent(header: str, parsed: tuple[int, int, int] | None) -> None:
    assert parse_traceparent(header.encode()) == parsed


def test_format_traceparent_round_trips() -> None:
    rng = random.Random(7)
    for _ in range(1000):
        trace_id, span_id = rng.getrandbits(128) or 1, rng.getrandbits(64) or 1
        sampled = rng.random() < 0.5
        text = format_traceparent(trace_id, span_id, sampled)
        assert text == f"00-{trace_id:032x}-{span_id:016x}-0{int(sampled)}".encode()
        assert parse_traceparent(text) == (trace_id, span_id, int(sampled))


@pytest.mark.parametrize("ratio", [0.0, 1e-9, 0.001, 0.25, 0.5, 0.999, 1.0])
def test_the_ratio_decides_as_the_sdks_trace_id_ratio_sampler(ratio: float) -> None:
    """Differential: the step's decision on a caller's trace id (not parent-based) equals
    TraceIdRatioBased's, on random ids and on the ids right around its bound."""
    sdk = TraceIdRatioBased(ratio)
    step = TracingStep(ratio, False, False, None)
    bound = sdk.bound
    rng = random.Random(ratio)
    lows = [rng.getrandbits(64) for _ in range(400)]
    lows += [b for b in (bound - 1, bound, bound + 1, 0, 2**64 - 1) if 0 <= b < 2**64]
    for low in lows:
        trace_id = (rng.getrandbits(64) << 64) | low or 1
        expected = sdk.should_sample(None, trace_id, "span").decision is Decision.RECORD_AND_SAMPLE
        before = step.sampled
        header = format_traceparent(trace_id, 1, False)
        time_steps([step], [(b"traceparent", header)], 1)
        assert (step.sampled - before == 1) == expected, (hex(low), bound)


def test_ids_differ_across_a_fork() -> None:
    """The id stream is reseeded in a forked child (workers.py forks after import)."""
    parent, child = run_isolated("tracing_child", "ids_across_fork")
    assert set(parent).isdisjoint(child)


def test_a_gateway_without_the_plugin_never_imports_the_sdk() -> None:
    loaded = run_isolated("tracing_child", "sdk_loaded_after_a_gateway_ran")
    assert loaded == {"before": [], "after": []}
