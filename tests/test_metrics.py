"""Prometheus metrics: counted per route in C by the prometheus step, served on the admin
listener (token) and an optional listener of their own, summed across workers, and valid
for prometheus_client's parser and Prometheus's own `promtool check metrics`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.servers import (
    ECHO_COUNT,
    GatewayProcess,
    Harness,
    RawClient,
    echo_app,
    free_port,
    refused_port,
    wait_until,
)

TOKEN = "metrics-test-token"

SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "t", "version": "1"},
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
                                "properties": {"name": {"type": "string", "maxLength": 5}},
                            }
                        }
                    },
                },
                "responses": {"201": {"description": "created"}},
            }
        },
    },
}


def _send(port: int, raw: bytes) -> int:
    with RawClient(port) as client:
        client.send(raw)
        return client.read_response()[0]


def _get(port: int, path: str, headers: str = "") -> int:
    return _send(port, f"GET {path} HTTP/1.1\r\nHost: h\r\n{headers}\r\n".encode())


def _scrape(port: int, path: str = "/metrics", token: str | None = TOKEN) -> tuple[int, str]:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    with RawClient(port) as client:
        client.send(f"GET {path} HTTP/1.1\r\nHost: a\r\n{auth}\r\n".encode())
        status, headers, body = client.read_response()
    if status == 200:
        assert headers["content-type"].startswith("text/plain; version=0.0.4")
    return status, body.decode()


def _values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample: (name, sorted labels) -> value, as Prometheus's own parser reads it."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _requests(values: dict[Any, float], route: str, klass: str, method: str = "GET") -> float:
    key = (
        "runmcp_requests_total",
        (("method", method), ("route", route), ("service", "items"), ("status_class", klass)),
    )
    return values.get(key, 0.0)


def _admin_port(harness: Harness) -> int:
    return int(harness._gateways[-1].gateway.admin_addresses[0].rsplit(":", 1)[1])


def _gateway(harness: Harness, **extra: Any) -> tuple[int, int]:
    app = echo_app()
    upstream = harness.aiohttp(app)
    dead = f"http://127.0.0.1:{refused_port()}"
    gateway = harness.gateway(
        {
            "admin": {"address": "127.0.0.1:0", "token": TOKEN},
            "services": [
                {"name": "items", "upstream": upstream.url, "openapi": SPEC},
                {"name": "gone", "upstream": dead, "prefix": "/gone"},
            ],
            **extra,
        }
    )
    return gateway.port, _admin_port(harness)


def test_requests_latency_bytes_and_rejections_per_route(harness: Harness) -> None:
    port, admin = _gateway(harness)
    for i in range(3):
        assert _get(port, f"/items/{i}") == 200
    assert _get(port, "/items/seven") == 400  # refused by its contract
    body = b'{"name": "far too long"}'
    post = (
        b"POST /items HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
    )
    assert _send(port, post) == 400
    assert _get(port, "/gone/x") == 502
    assert _get(port, "/nowhere") == 404
    status, text = _scrape(admin)
    assert status == 200
    values = _values(text)
    assert _requests(values, "getItem", "2xx") == 3
    assert _requests(values, "getItem", "4xx") == 1
    assert _requests(values, "createItem", "4xx", "POST") == 1
    unrouted = (
        "runmcp_requests_total",
        (("method", "(none)"), ("route", "(none)"), ("service", "(none)"), ("status_class", "4xx")),
    )
    assert values[unrouted] == 1
    gone = (
        "runmcp_requests_total",
        (("method", "*"), ("route", "gone"), ("service", "gone"), ("status_class", "5xx")),
    )
    assert values[gone] == 1
    labels = (("route", "getItem"), ("service", "items"))
    assert values[("runmcp_request_duration_seconds_count", labels)] == 4
    assert values[("runmcp_upstream_response_seconds_count", labels)] == 3  # the 400 never left
    assert values[("runmcp_response_bytes_total", labels)] > 0
    created = (("route", "createItem"), ("service", "items"))
    assert values[("runmcp_request_body_bytes_total", created)] == len(body)
    rejections = "runmcp_validation_rejections_total"
    assert values[(rejections, tuple(sorted((*created, ("keyword", "maxLength")))))] == 1
    assert values[(rejections, tuple(sorted((*labels, ("keyword", "type")))))] == 1
    failures = {
        dict(k[1])["upstream"]: v
        for k, v in values.items()
        if k[0] == "runmcp_upstream_connect_failures_total"
    }
    assert sorted(failures.values()) == [0, 1]  # the live upstream, and the dead one
    assert values[("runmcp_config_generation", ())] == 1
    assert values[("runmcp_workers", ())] == 1
    # Cumulative buckets, ending at +Inf with the count.
    buckets = [
        (dict(k[1])["le"], v)
        for k, v in values.items()
        if k[0] == "runmcp_request_duration_seconds_bucket" and ("route", "getItem") in k[1]
    ]
    assert ("+Inf", 4.0) in buckets
    assert [v for _, v in sorted(buckets, key=lambda b: float(b[0]))] == sorted(
        v for _, v in buckets
    )


def test_the_admin_listener_wants_its_token_the_metrics_listener_none(harness: Harness) -> None:
    address = f"127.0.0.1:{free_port()}"
    port, admin = _gateway(harness, metrics={"address": address, "path": "/prom"})
    assert _get(port, "/items/1") == 200
    assert _scrape(admin, "/prom", token=None)[0] == 401
    assert _scrape(admin, "/prom", token="wrong")[0] == 401
    assert _scrape(admin, "/prom")[0] == 200
    status, text = _scrape(int(address.rsplit(":", 1)[1]), "/prom", token=None)
    assert status == 200 and _requests(_values(text), "getItem", "2xx") == 1
    assert _scrape(int(address.rsplit(":", 1)[1]), "/admin/config", token=None)[0] == 404


def test_counters_go_on_across_a_reload_and_routes_gone_stop(harness: Harness) -> None:
    port, admin = _gateway(harness)
    for i in range(2):
        assert _get(port, f"/items/{i}") == 200
    gateway = harness._gateways[-1].gateway
    # The service is rebuilt (another timeout): its routes are new targets, same counters.
    harness.gateway_loop.run(gateway.update_service("items", read_timeout=30))
    assert _get(port, "/items/9") == 200
    values = _values(_scrape(admin)[1])
    assert _requests(values, "getItem", "2xx") == 3
    assert values[("runmcp_config_generation", ())] == 2
    harness.gateway_loop.run(gateway.unregister_service("items"))
    values = _values(_scrape(admin)[1])
    assert _requests(values, "getItem", "2xx") == 0  # the route is gone: not reported


def test_metrics_off_means_no_step_and_no_endpoint(harness: Harness) -> None:
    _, admin = _gateway(harness, metrics={"enabled": False})
    chains = [
        r.target.chain.names() for r in harness._gateways[-1].gateway.snapshot.router.routes()
    ]
    assert all("prometheus" not in names for names in chains)
    assert _scrape(admin)[0] == 404


def test_a_service_can_leave_itself_out(harness: Harness) -> None:
    _gateway(harness)
    gateway = harness._gateways[-1].gateway
    harness.gateway_loop.run(
        gateway.update_service("gone", plugins={"prometheus": {"disable": True}})
    )
    steps = {
        r.target.service_name: r.target.chain.names() for r in gateway.snapshot.router.routes()
    }
    assert "prometheus" in steps["items"] and "prometheus" not in steps["gone"]


def test_the_exposition_passes_promtool(harness: Harness, promtool: str) -> None:
    port, admin = _gateway(harness)
    assert _get(port, "/items/1") == 200
    assert _get(port, "/gone/x") == 502
    _, text = _scrape(admin)
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_rate_limit_decisions_and_table_state(harness: Harness) -> None:
    limit = {"limit-count": {"count": 2, "window": 60, "key": "client_ip"}}
    port, admin = _gateway(harness, plugins=limit)
    statuses = [_get(port, "/items/1") for _ in range(3)]
    assert statuses == [200, 200, 429]
    values = _values(_scrape(admin)[1])
    decisions = {
        labels: value
        for (name, labels), value in values.items()
        if name == "runmcp_rate_limit_decisions_total"
    }
    assert decisions == {
        (("decision", "allowed"), ("plugin", "limit-count")): 2.0,
        (("decision", "rejected"), ("plugin", "limit-count")): 1.0,
    }
    assert values[("runmcp_plugin_state", (("plugin", "limit-count"), ("state", "keys")))] == 1.0
    assert ("runmcp_plugin_events_total", (("event", "keys"), ("plugin", "limit-count"))) not in (
        values
    )


def test_workers_answer_a_scrape_with_every_workers_counts(tmp_path: Path) -> None:
    """Two worker processes share the listeners: whichever is scraped sums both."""
    from tests.servers import AiohttpUpstream, LoopThread

    loop = LoopThread()
    app = echo_app()
    upstream = AiohttpUpstream(app, loop)
    admin_port = free_port()
    config = {
        "admin": {"address": f"127.0.0.1:{admin_port}", "token": TOKEN},
        "services": [{"name": "items", "upstream": upstream.url, "openapi": SPEC}],
    }
    try:
        with GatewayProcess.from_config(config, tmp_path, extra=("--workers", "2")) as gateway:
            assert wait_until(lambda: _scrape_ok(admin_port), 20)
            # Many connections: the kernel spreads them over both workers.
            sent = 60
            for i in range(sent):
                assert _get(gateway.port, f"/items/{i}") == 200
            assert app[ECHO_COUNT][0] == sent
            for _ in range(6):  # each scrape may land on either worker: all say the same
                values = _values(_scrape(admin_port)[1])
                assert values[("runmcp_workers", ())] == 2
                assert _requests(values, "getItem", "2xx") == sent
    finally:
        upstream.close()
        loop.close()


def _scrape_ok(port: int) -> bool:
    try:
        status, text = _scrape(port)
    except OSError:
        return False
    return status == 200 and _values(text).get(("runmcp_workers", ())) == 2


@pytest.fixture(scope="session")
def promtool() -> str:
    """Prometheus's promtool (Debian's `prometheus` package), installed when missing."""
    found = shutil.which("promtool")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "prometheus"],
            capture_output=True,
            timeout=600,
            check=False,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed and can not be (apt-get install prometheus)")
    return found


def _tool_call(port: int, name: str, arguments: dict[str, Any]) -> int:
    body = (
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"%b","arguments":%b}}'
        % (name.encode(), json.dumps(arguments).encode())
    )
    return _send(
        port,
        b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Accept: application/json, text/event-stream\r\nContent-Length: %d\r\n\r\n%b"
        % (len(body), body),
    )


def test_mcp_tool_calls_by_tool_and_outcome(harness: Harness) -> None:
    port, admin = _gateway(harness)
    assert _tool_call(port, "getItem", {"id": 7}) == 200
    assert _tool_call(port, "getItem", {"id": 8}) == 200
    assert _tool_call(port, "getItem", {"id": "x"}) == 200  # a tool error (the API said 400)
    assert _tool_call(port, "noSuchTool", {}) == 200  # a JSON-RPC error
    values = _values(_scrape(admin)[1])
    calls = {
        (dict(k[1])["tool"], dict(k[1])["outcome"]): v
        for k, v in values.items()
        if k[0] == "runmcp_mcp_tool_calls_total"
    }
    assert calls == {("getItem", "ok"): 2, ("getItem", "error"): 1, ("noSuchTool", "error"): 1}
    # The calls went through the data plane as requests to the operation's route too.
    assert _requests(values, "getItem", "2xx") == 2
