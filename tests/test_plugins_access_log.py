"""The access-log plugin on real gateways: a JSON line per exchange, its fields and their
values (proxied requests, the gateway's own answers, MCP calls proxied and generated),
escaping, field selection, its sinks (a file reopened after logrotate's rename +
SIGUSR1, with workers too; syslog over UDP and over TCP against receivers on loopback,
the TCP one down then up), what `access_log: true` still means, and every config
problem with its pointer and hint.

Lines are read as the sinks write them: a file (the sink's writer thread appends each
batch taken at a clock tick), the datagrams or octet-counted frames a syslog receiver
got, the gateway process's stdout. A test waits for the lines it expects, never a
fixed time.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from servers import (
    GatewayProcess,
    Harness,
    LoopThread,
    RawClient,
    echo_app,
    free_port,
    refused_port,
    wait_until,
)

from runmcp_fast._dataplane import (
    ClientProtocol,
    Clock,
    Consumer,
    Request,
    ServerContext,
)
from runmcp_fast.config import LimitsConfig, config_from_data
from runmcp_fast.plugins._steps import (
    ACCESS_LOG_DEFAULT,
    ACCESS_LOG_FIELDS,
    AccessLogStep,
    LogBuffer,
)
from runmcp_fast.problems import SnapshotError
from runmcp_fast.snapshot import build_snapshot

KEY = "alice-key-0123456789"
TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "items", "version": "1"},
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
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "responses": {"201": {"description": "created"}},
            }
        },
    },
}


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    try:
        yield h
    finally:
        h.close()


def request(
    port: int, method: str, path: str, headers: str = "", body: bytes = b"", host: str = "h.test"
) -> tuple[int, dict[str, str], bytes]:
    with RawClient(port) as client:
        length = f"Content-Length: {len(body)}\r\n" if body else ""
        head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{headers}{length}\r\n"
        client.send(head.encode("latin-1") + body)
        return client.read_response()


def lines_of(path: Path, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    """The file's first `count` lines, once it has them (each a JSON object)."""

    def enough() -> bool:
        return path.exists() and path.read_bytes().count(b"\n") >= count

    assert wait_until(enough, timeout), path.read_text() if path.exists() else "(no file)"
    raw = path.read_bytes()
    raw.decode("utf-8")  # every line is valid UTF-8, whatever the request held
    return [json.loads(line) for line in raw.splitlines()[:count]]


def by_path(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r.get("path", ""): r for r in records}


def dead_url() -> str:
    return f"http://127.0.0.1:{refused_port()}"


# -- fields and their values ------------------------------------------------------------------


def test_every_field_of_a_proxied_request(harness: Harness, tmp_path: Path) -> None:
    upstream = harness.aiohttp(echo_app())
    log = tmp_path / "access.log"
    gw = harness.gateway(
        {
            "plugins": {
                "request-id": {},
                "key-auth": {},
                "access-log": {"file": str(log), "fields": list(ACCESS_LOG_FIELDS)},
            },
            "consumers": [{"name": "alice", "key-auth": {"key": KEY}}],
            "services": [
                {"name": "items", "upstream": upstream.url, "openapi": SPEC},
            ],
        }
    )
    before = time.time()
    status, headers, answer = request(
        gw.port,
        "POST",
        "/items?token=secret",
        f"apikey: {KEY}\r\nContent-Type: application/json\r\nUser-Agent: probe/1.0\r\n"
        "Referer: https://app.example/page\r\n",
        b'{"name": "x"}',
    )
    after = time.time()
    assert status == 200
    (line,) = lines_of(log, 1)
    assert list(line) == [  # in the order of `fields`, peer left out (it is the client)
        "time", "request_id", "client", "method", "host", "path", "status", "duration_ms",
        "service", "route", "consumer", "upstream", "upstream_ms", "bytes_in", "bytes_out",
        "user_agent", "referer",
    ]  # fmt: skip
    assert TIME.match(line["time"])
    began = time.mktime(time.strptime(line["time"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    began += int(line["time"][20:23]) / 1000
    assert before - 0.001 <= began <= after
    assert line["request_id"] == headers["x-request-id"]
    assert line["client"] == "127.0.0.1"
    assert (line["method"], line["host"], line["path"]) == ("POST", "h.test", "/items")
    assert line["status"] == 200
    assert (line["service"], line["route"], line["consumer"]) == ("items", "createItem", "alice")
    assert line["upstream"] == upstream.url
    assert 0 < line["upstream_ms"] <= line["duration_ms"] <= (after - before) * 1000 + 1
    assert line["bytes_in"] == len(b'{"name": "x"}')
    assert line["bytes_out"] == len(answer)
    assert (line["user_agent"], line["referer"]) == ("probe/1.0", "https://app.example/page")


def test_the_default_fields_and_the_query_setting(harness: Harness, tmp_path: Path) -> None:
    upstream = harness.aiohttp(echo_app())
    plain, with_query = tmp_path / "plain.log", tmp_path / "query.log"
    gw = harness.gateway(
        {
            "services": [
                {
                    "name": "a",
                    "prefix": "/a",
                    "upstream": upstream.url,
                    "plugins": {"access-log": {"file": str(plain)}},
                },
                {
                    "name": "b",
                    "prefix": "/b",
                    "upstream": upstream.url,
                    "plugins": {"access-log": {"file": str(with_query), "query": True}},
                },
            ]
        }
    )
    assert request(gw.port, "GET", "/a/x?key=secret")[0] == 200
    assert request(gw.port, "GET", "/b/y?key=secret&z=1")[0] == 200
    (a,) = lines_of(plain, 1)
    (b,) = lines_of(with_query, 1)
    assert a["path"] == "/a/x"  # a query may carry a secret: left out unless asked for
    assert b["path"] == "/b/y?key=secret&z=1"
    # The default set, in its order; what has no value is left out (no request id,
    # no consumer, no MCP), and peer is the client.
    assert list(a) == [f for f in ACCESS_LOG_DEFAULT if f in a]
    assert set(a) == {
        "time", "client", "method", "path", "status", "duration_ms", "service", "route",
        "upstream", "upstream_ms", "bytes_in", "bytes_out",
    }  # fmt: skip
    assert (a["service"], a["route"], a["bytes_in"]) == ("a", "a", 0)


def test_the_gateways_own_answers(harness: Harness, tmp_path: Path) -> None:
    """401 from key-auth, 404 (no route), 405, 502 (dead upstream), a malformed head:
    logged with what the gateway knew when it answered."""
    upstream = harness.aiohttp(echo_app())
    log = tmp_path / "access.log"
    gw = harness.gateway(
        {
            "plugins": {"access-log": {"file": str(log)}, "request-id": {}},
            "services": [
                {
                    "name": "locked",
                    "prefix": "/locked",
                    "upstream": upstream.url,
                    "plugins": {"key-auth": {}},
                },
                {"name": "dead", "prefix": "/dead", "upstream": dead_url()},
                {"name": "items", "upstream": upstream.url, "openapi": SPEC},
            ],
        }
    )
    assert request(gw.port, "GET", "/locked/x")[0] == 401
    assert request(gw.port, "GET", "/nowhere")[0] == 404
    assert request(gw.port, "DELETE", "/items/1")[0] == 405
    assert request(gw.port, "GET", "/dead/x")[0] == 502
    with RawClient(gw.port) as client:  # not HTTP: refused before a method was read
        client.send(b"GET /x\x01 HTTP/1.1\r\nHost: h\r\n\r\n")
        assert client.read_response()[0] == 400
    records = lines_of(log, 5)
    locked, nowhere, bad_method, dead = (
        by_path(records)[p] for p in ("/locked/x", "/nowhere", "/items/1", "/dead/x")
    )
    assert (locked["status"], locked["service"], locked["route"]) == (401, "locked", "locked")
    assert "consumer" not in locked and "upstream" not in locked  # refused before either
    assert locked["request_id"]  # request-id ran first (rewrite), so even a 401 has one
    for unrouted, status in ((nowhere, 404), (bad_method, 405)):
        assert unrouted["status"] == status and unrouted["method"] in ("GET", "DELETE")
        assert "service" not in unrouted and "route" not in unrouted
        assert "request_id" not in unrouted  # no route: none of its steps ran
        assert unrouted["bytes_out"] > 0  # the problem+json answer
    assert (dead["status"], dead["service"]) == (502, "dead")
    assert dead["upstream"].startswith("http://127.0.0.1:")  # the replica it tried
    assert "upstream_ms" not in dead  # no response head ever came
    (malformed,) = [r for r in records if r["status"] == 400]
    assert "method" not in malformed and "path" not in malformed
    assert malformed["client"] == "127.0.0.1"


def test_a_head_refused_midway_is_logged_with_the_lines_read_before(
    harness: Harness, tmp_path: Path
) -> None:
    """A second Host (400) or one line too many (431) ends the head before its end: the
    lines read until then are still the request's, for the log (they wait in the
    connection while the head is read: headers.pxi, _keep_pair)."""
    log = tmp_path / "access.log"
    gw = harness.gateway(
        {
            "plugins": {"access-log": {"file": str(log), "fields": ["status", "user_agent"]}},
            "limits": {"max_headers": 20},
            "services": [{"name": "a", "prefix": "/a", "upstream": dead_url()}],
        }
    )
    for extra, status in (("Host: again\r\n", 400), ("X-Filler: 1\r\n" * 25, 431)):
        with RawClient(gw.port) as client:
            client.send(
                f"GET /a/x HTTP/1.1\r\nHost: h\r\nUser-Agent: refused/{status}\r\n{extra}\r\n"
                .encode("latin-1")
            )  # fmt: skip
            assert client.read_response()[0] == status
    records = lines_of(log, 2)
    assert sorted((r["status"], r.get("user_agent")) for r in records) == [
        (400, "refused/400"),
        (431, "refused/431"),
    ]


# -- MCP: proxied and generated endpoints ----------------------------------------------------------


def mcp_app() -> web.Application:
    """A JSON-answering MCP server: every request gets an empty result, any tool a text."""

    async def rpc(request: web.Request) -> web.Response:
        message = await request.json()
        if isinstance(message, list):
            return web.json_response(
                [{"jsonrpc": "2.0", "id": m["id"], "result": {}} for m in message if "id" in m]
            )
        result: dict[str, Any] = {}
        if message.get("method") == "tools/call":
            result = {"content": [{"type": "text", "text": "done"}]}
        return web.json_response({"jsonrpc": "2.0", "id": message.get("id"), "result": result})

    app = web.Application()
    app.router.add_post("/mcp", rpc)
    return app


MCP_HEADERS = (
    "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
    "MCP-Protocol-Version: 2025-06-18\r\n"
)


def rpc(method: str, params: dict[str, Any] | None = None, id: int = 1) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        message["params"] = params
    return json.dumps(message).encode()


def test_mcp_method_and_tool_proxied_and_generated(harness: Harness, tmp_path: Path) -> None:
    mcp_upstream = harness.aiohttp(mcp_app())
    items = harness.aiohttp(echo_app())
    log = tmp_path / "access.log"
    gw = harness.gateway(
        {
            "plugins": {"access-log": {"file": str(log)}},
            "services": [
                {"name": "notes", "kind": "mcp", "upstream": f"{mcp_upstream.url}/mcp"},
                {
                    "name": "items",
                    "upstream": items.url,
                    "openapi": SPEC,
                    "mcp": {"path": "/items-mcp"},
                },
            ],
        }
    )
    calls = [
        ("/mcp", rpc("tools/call", {"name": "add_note", "arguments": {"text": "x"}})),
        ("/mcp", rpc("tools/list", {})),
        ("/items-mcp", rpc("tools/call", {"name": "getItem", "arguments": {"id": 7}})),
        ("/items-mcp", rpc("tools/list", {})),
    ]
    for path, body in calls:
        status, _, answer = request(gw.port, "POST", path, MCP_HEADERS, body, host="localhost")
        assert status == 200, answer
    records = lines_of(log, 5)
    got = [(r["path"], r["route"], r.get("mcp_method"), r.get("mcp_tool")) for r in records]
    assert got == [
        ("/mcp", "mcp", "tools/call", "add_note"),
        ("/mcp", "mcp", "tools/list", None),
        # The generated endpoint calls the operation through the gateway: its own line,
        # ended before the tools/call that made it.
        ("/items/7", "getItem", None, None),
        ("/items-mcp", "mcp", "tools/call", "getItem"),
        ("/items-mcp", "mcp", "tools/list", None),
    ]
    assert [r["service"] for r in records] == ["notes", "notes", "items", "items", "items"]
    assert records[0]["upstream"] == mcp_upstream.url  # proxied
    assert "upstream" not in records[3]  # the gateway answered it


# -- escaping -----------------------------------------------------------------------------------


def test_escaping_through_the_gateway(harness: Harness, tmp_path: Path) -> None:
    """Quotes and backslashes in the path, obs-text (not UTF-8) and tabs in headers, and
    control characters in a tool name (JSON-escaped in the request, raw once decoded)."""
    mcp_upstream = harness.aiohttp(mcp_app())
    upstream = harness.aiohttp(echo_app())
    log = tmp_path / "access.log"
    gw = harness.gateway(
        {
            "plugins": {
                "access-log": {
                    "file": str(log),
                    "fields": ["path", "user_agent", "referer", "mcp_tool"],
                }
            },
            "services": [
                {"name": "api", "prefix": "/api", "upstream": upstream.url},
                {"name": "notes", "kind": "mcp", "upstream": f"{mcp_upstream.url}/mcp"},
            ],
        }
    )
    with RawClient(gw.port) as client:
        client.send(
            b'GET /api/say-"hi"\\there HTTP/1.1\r\nHost: h\r\n'
            b"User-Agent: a\tb \xff\xfe caf\xc3\xa9\r\nReferer: x\xc3\r\n\r\n"
        )
        assert client.read_response()[0] == 200
    tool = 'q"\\\x01\n\x7fé\u2028'
    body = rpc("tools/call", {"name": tool, "arguments": {}})
    assert request(gw.port, "POST", "/mcp", MCP_HEADERS, body, host="localhost")[0] == 200
    records = lines_of(log, 2)
    raw = log.read_bytes().splitlines()
    assert records[0] == {
        "path": '/api/say-"hi"\\there',
        "user_agent": "a\tb \u00ff\u00fe café",  # bytes not UTF-8: \u00XX, the rest as it is
        "referer": "x\u00c3",
    }
    assert raw[0] == (
        b'{"path":"/api/say-\\"hi\\"\\\\there","user_agent":"a\\tb \\u00ff\\u00fe caf\xc3\xa9",'
        b'"referer":"x\\u00c3"}'
    )
    assert records[1]["mcp_tool"] == tool
    assert b'"mcp_tool":"q\\"\\\\\\u0001\\n\\u007f\xc3\xa9\xe2\x80\xa8"' in raw[1]


def _fallback(error: UnicodeError) -> tuple[str, int]:
    assert isinstance(error, UnicodeDecodeError)
    return error.object[error.start : error.end].decode("latin-1"), error.end


codecs.register_error("access-log-test-latin1", _fallback)


@pytest.fixture(scope="module")
def bare_conn() -> Iterator[ClientProtocol]:
    """A client connection that never saw a socket: enough to render a line."""
    ctx = ServerContext(Clock(None, 1.0), LimitsConfig(), None)
    yield ClientProtocol(ctx, b"http")


def _render(conn: ClientProtocol, url: bytes) -> bytes:
    req = Request.__new__(Request)
    req.method = b"GET"
    req.url = url
    req.client_ip = b"127.0.0.1"
    return AccessLogStep(["path"], LogBuffer(), query=True).render(conn, req)


@pytest.mark.parametrize("byte", range(256))
def test_every_byte_escaped_as_json_reads_it_back(bare_conn: ClientProtocol, byte: int) -> None:
    raw = bytes([byte])
    line = _render(bare_conn, b"/" + raw)
    assert line.endswith(b"}\n") and b"\n" not in line[:-1]
    assert all(c >= 0x20 and c != 0x7F for c in line[:-1])  # no raw control character
    assert json.loads(line)["path"] == "/" + raw.decode("utf-8", "access-log-test-latin1")


@given(st.binary(max_size=64))
@settings(max_examples=500, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_escaping_against_pythons_decoder(bare_conn: ClientProtocol, raw: bytes) -> None:
    """Differential: valid UTF-8 as it is, every other byte as \\u00XX (its Latin-1 reading),
    exactly as Python's UTF-8 decoder with a byte-wise fallback reads the same bytes."""
    line = _render(bare_conn, raw)
    line.decode("utf-8")
    assert json.loads(line) == {"path": raw.decode("utf-8", "access-log-test-latin1")}


def test_a_line_with_every_field_absent_is_an_empty_object(bare_conn: ClientProtocol) -> None:
    req = Request.__new__(Request)
    assert AccessLogStep(["consumer", "mcp_tool"], LogBuffer()).render(bare_conn, req) == b"{}\n"
    req.consumer = Consumer("x\x00y")
    line = AccessLogStep(["consumer"], LogBuffer()).render(bare_conn, req)
    assert line == b'{"consumer":"x\\u0000y"}\n'


# -- field selection -----------------------------------------------------------------------------


def test_the_fields_chosen_in_the_order_given(harness: Harness, tmp_path: Path) -> None:
    upstream = harness.aiohttp(echo_app())
    log = tmp_path / "access.log"
    gw = harness.gateway(
        {
            "plugins": {"access-log": {"file": str(log), "fields": ["status", "method", "path"]}},
            "services": [{"name": "api", "prefix": "/", "upstream": upstream.url}],
        }
    )
    assert request(gw.port, "GET", "/x")[0] == 200
    assert request(gw.port, "GET", "/nothing-here")[0] == 200  # a prefix route: proxied
    lines_of(log, 2)
    assert log.read_bytes().splitlines() == [
        b'{"status":200,"method":"GET","path":"/x"}',
        b'{"status":200,"method":"GET","path":"/nothing-here"}',
    ]


# -- the file sink and SIGUSR1 ---------------------------------------------------------------------


def _stderr_count(gw: GatewayProcess, text: str) -> int:
    return sum(text in line for line in gw.stderr_lines)


@pytest.mark.parametrize("workers", [1, 2])
def test_the_file_is_reopened_on_sigusr1(tmp_path: Path, workers: int) -> None:
    """logrotate's way: rename the file, SIGUSR1; lines after go to a new file of the name.
    With workers, the parent passes SIGUSR1 on and each worker reopens."""
    harness = Harness()
    try:
        upstream = harness.aiohttp(echo_app())
        log = tmp_path / "access.log"
        config = {
            "plugins": {"access-log": {"file": "access.log", "fields": ["path", "status"]}},
            "services": [{"name": "api", "prefix": "/", "upstream": upstream.url}],
        }
        extra = ("--workers", str(workers)) if workers > 1 else ()
        with GatewayProcess.from_config(config, tmp_path, extra) as gw:
            # Every worker up (its handler is in place before its startup line).
            assert wait_until(lambda: _stderr_count(gw, "listening on") == workers, 20)
            for i in range(6):  # (with workers: spread over them by the kernel)
                assert request(gw.port, "GET", f"/before/{i}")[0] == 200
            lines_of(log, 6)
            log.rename(tmp_path / "access.log.1")
            gw.proc.send_signal(signal.SIGUSR1)
            assert wait_until(lambda: _stderr_count(gw, "access log: reopened") == workers, 15)
            for i in range(6):
                assert request(gw.port, "GET", f"/after/{i}")[0] == 200
            after = lines_of(log, 6)
            assert gw.stop() == 0
        rotated = [json.loads(x) for x in (tmp_path / "access.log.1").read_text().splitlines()]
        assert sorted(r["path"] for r in rotated) == [f"/before/{i}" for i in range(6)]
        assert sorted(r["path"] for r in after) == [f"/after/{i}" for i in range(6)]
        assert len(log.read_text().splitlines()) == 6  # nothing more came at the stop
    finally:
        harness.close()


def test_sigusr1_without_a_file_is_ignored(tmp_path: Path) -> None:
    harness = Harness()
    try:
        upstream = harness.aiohttp(echo_app())
        config = {
            "plugins": {"access-log": {}},  # stdout
            "services": [{"name": "api", "prefix": "/", "upstream": upstream.url}],
        }
        with GatewayProcess.from_config(config, tmp_path) as gw:
            gw.proc.send_signal(signal.SIGUSR1)
            gw.proc.send_signal(signal.SIGUSR1)
            # Still serving after both: a request after them is answered and logged.
            assert request(gw.port, "GET", "/after-usr1")[0] == 200
            assert wait_until(lambda: any("/after-usr1" in x for x in gw.stdout_lines), 15)
            assert gw.proc.poll() is None
            assert gw.stop() == 0
    finally:
        harness.close()


# -- syslog -------------------------------------------------------------------------------------


SYSLOG = re.compile(
    rb"^<(?P<pri>\d{1,3})>1 (?P<time>\S+) (?P<host>\S+) (?P<app>\S+) (?P<pid>\d+) access - "
    rb"(?P<msg>\{.*\})$"
)


def parse_syslog(message: bytes) -> tuple[int, dict[str, Any], re.Match[bytes]]:
    match = SYSLOG.match(message)
    assert match is not None, message
    record = json.loads(match["msg"])
    assert match["time"].decode() == record["time"]
    return int(match["pri"]), record, match


class UdpReceiver:
    def __init__(self, loop_thread: LoopThread) -> None:
        self.messages: list[bytes] = []
        receiver = self

        class Protocol(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                receiver.messages.append(data)

        async def start() -> tuple[asyncio.DatagramTransport, int]:
            transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                Protocol, local_addr=("127.0.0.1", 0)
            )
            return transport, transport.get_extra_info("sockname")[1]

        self.loop_thread = loop_thread
        self.transport, self.port = loop_thread.run(start())

    def close(self) -> None:
        self.loop_thread.call(self.transport.close)


def test_syslog_over_udp(harness: Harness) -> None:
    upstream = harness.aiohttp(echo_app())
    receiver = UdpReceiver(harness.upstream_loop)
    try:
        gw = harness.gateway(
            {
                "plugins": {
                    "access-log": {
                        "syslog": {
                            "address": f"udp://127.0.0.1:{receiver.port}",
                            "facility": "local3",
                            "severity": "notice",
                            "app_name": "edge",
                            "hostname": "gw-1",
                        }
                    }
                },
                "services": [{"name": "api", "prefix": "/", "upstream": upstream.url}],
            }
        )
        for i in range(3):
            assert request(gw.port, "GET", f"/udp/{i}")[0] == 200
        assert wait_until(lambda: len(receiver.messages) >= 3, 15)
        parsed = [parse_syslog(m) for m in receiver.messages]
        assert [r["path"] for _, r, _ in parsed] == [f"/udp/{i}" for i in range(3)]
        for pri, record, match in parsed:
            assert pri == 19 * 8 + 5  # local3.notice
            assert (match["host"], match["app"]) == (b"gw-1", b"edge")
            assert int(match["pid"]) == os.getpid()  # (an in-process gateway)
            assert record["status"] == 200
    finally:
        receiver.close()


class TcpReceiver:
    """A syslog receiver over TCP on a fixed port, started and stopped at will; parses
    octet-counted frames (RFC 6587 §3.4.1) strictly."""

    def __init__(self, loop_thread: LoopThread, port: int) -> None:
        self.loop_thread = loop_thread
        self.port = port
        self.messages: list[bytes] = []
        self.bad: list[bytes] = []  # what did not parse as a frame
        self.connections = 0
        self.server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        try:
            while True:
                length = await reader.readuntil(b" ")
                if length[:1] == b"0" or not length[:-1].isdigit():
                    self.bad.append(length)
                    return
                self.messages.append(await reader.readexactly(int(length[:-1])))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    def start(self) -> None:
        async def start() -> asyncio.Server:
            return await asyncio.start_server(self._serve, "127.0.0.1", self.port)

        self.server = self.loop_thread.run(start())

    def stop(self) -> None:
        async def stop() -> None:
            assert self.server is not None
            self.server.close()
            for writer in self._writers:
                writer.close()
            self._writers.clear()
            await self.server.wait_closed()

        self.loop_thread.run(stop())

    def paths(self) -> list[str]:
        return [parse_syslog(m)[1]["path"] for m in self.messages]


def _events(gw: Any) -> dict[str, int]:
    """The access-log step's stats() (what the metrics report as plugin events)."""
    chain = gw.gateway.snapshot.unrouted_chain
    (step,) = [s for s in chain.steps if s.name == "access-log"]
    return dict(step.stats())


def test_syslog_over_tcp_down_then_up(harness: Harness) -> None:
    upstream = harness.aiohttp(echo_app())
    port = free_port()
    receiver = TcpReceiver(harness.upstream_loop, port)
    gw = harness.gateway(
        {
            "plugins": {
                "access-log": {
                    "syslog": {"address": f"tcp://127.0.0.1:{port}"},
                    "queue_bytes": 1024,  # a batch waits; those after it are dropped
                }
            },
            "services": [{"name": "api", "prefix": "/", "upstream": upstream.url}],
        }
    )
    # Nobody listens: requests are answered all the same, lines queue, then drop.
    sent = 0

    def dropping() -> bool:
        nonlocal sent
        assert request(gw.port, "GET", f"/down/{sent}")[0] == 200
        sent += 1
        return _events(gw)["dropped"] > 0

    assert wait_until(dropping, 30)
    receiver.start()
    try:
        # Back: the next attempt connects; what is sent from then on arrives.
        def arrived() -> bool:
            request(gw.port, "GET", "/up/probe")
            return "/up/probe" in receiver.paths()

        assert wait_until(arrived, 30)
        for i in range(5):
            assert request(gw.port, "GET", f"/up/{i}")[0] == 200
        assert wait_until(lambda: all(f"/up/{i}" in receiver.paths() for i in range(5)), 15)
        # Every line is accounted for: received, or dropped (counted), none lost unseen.
        events = _events(gw)
        assert events["lines"] == len(receiver.messages) + events["dropped"] + events["failed"]
        assert events["dropped"] > 0 and not receiver.bad
        for message in receiver.messages:
            pri, record, _ = parse_syslog(message)
            assert pri == 23 * 8 + 6 and record["status"] == 200  # local7.info
        # The receiver goes away and comes back: a new connection, lines again.
        seen = receiver.connections
        receiver.stop()
        receiver.start()

        def arrived_again() -> bool:
            request(gw.port, "GET", "/again/probe")
            return receiver.connections > seen and "/again/probe" in receiver.paths()

        assert wait_until(arrived_again, 30)
        assert not receiver.bad
    finally:
        receiver.stop()


# -- access_log: true, and the plugin's own settings ------------------------------------------------


def test_access_log_true_is_the_plugin_on_every_route(tmp_path: Path) -> None:
    """`access_log: true`: stdout, every route (a service may turn it off), the 404s; a
    global `access-log` entry says more and wins."""
    harness = Harness()
    try:
        upstream = harness.aiohttp(echo_app())
        config: dict[str, Any] = {
            "access_log": True,
            "services": [
                {"name": "api", "prefix": "/api", "upstream": upstream.url},
                {
                    "name": "quiet",
                    "prefix": "/quiet",
                    "upstream": upstream.url,
                    "plugins": {"access-log": {"disable": True}},
                },
            ],
        }
        with GatewayProcess.from_config(config, tmp_path) as gw:
            for path in ("/api/1", "/quiet/1", "/none", "/api/last"):
                request(gw.port, "GET", path)
            assert wait_until(lambda: any("/api/last" in x for x in gw.stdout_lines), 15)
            records = [json.loads(x) for x in gw.stdout_lines]
            assert [(r["path"], r["status"]) for r in records] == [
                ("/api/1", 200),
                ("/none", 404),
                ("/api/last", 200),
            ]
            assert records[0]["service"] == "api" and records[0]["route"] == "api"
            assert gw.stop() == 0
        config["plugins"] = {"access-log": {"fields": ["path"]}}
        with GatewayProcess.from_config(config, tmp_path) as gw:
            request(gw.port, "GET", "/api/2")
            assert wait_until(lambda: bool(gw.stdout_lines), 15)
            assert gw.stdout_lines == ['{"path":"/api/2"}']
            assert gw.stop() == 0
    finally:
        harness.close()


def test_the_counts_are_in_the_metrics(harness: Harness, tmp_path: Path) -> None:
    """stats() of the step: lines, dropped, failed, as runmcp_plugin_events_total."""
    upstream = harness.aiohttp(echo_app())
    log = tmp_path / "access.log"
    gw = harness.gateway(
        {
            "admin": {"address": "127.0.0.1:0", "token": "t" * 16},
            "plugins": {"access-log": {"file": str(log)}},
            "services": [{"name": "api", "prefix": "/api", "upstream": upstream.url}],
        }
    )
    assert request(gw.port, "GET", "/api/x")[0] == 200
    assert request(gw.port, "GET", "/elsewhere")[0] == 404
    lines_of(log, 2)
    admin = int(gw.gateway.admin_addresses[0].rsplit(":", 1)[1])
    status, _, body = request(admin, "GET", "/metrics", f"Authorization: Bearer {'t' * 16}\r\n")
    assert status == 200
    samples = {
        (s.labels["plugin"], s.labels["event"]): s.value
        for family in text_string_to_metric_families(body.decode())
        if family.name == "runmcp_plugin_events"
        for s in family.samples
        if s.name == "runmcp_plugin_events_total"
    }
    assert samples[("access-log", "lines")] == 2  # (the admin listener logs nothing)
    assert samples[("access-log", "dropped")] == samples[("access-log", "failed")] == 0


def test_lines_held_at_the_stop_are_written(harness: Harness, tmp_path: Path) -> None:
    upstream = harness.aiohttp(echo_app())
    log = tmp_path / "access.log"
    gw = harness.gateway(
        {
            "plugins": {"access-log": {"file": str(log), "fields": ["path"]}},
            "services": [{"name": "api", "prefix": "/", "upstream": upstream.url}],
        }
    )
    for i in range(50):
        assert request(gw.port, "GET", f"/n/{i}")[0] == 200
    gw.stop()
    assert [json.loads(x)["path"] for x in log.read_text().splitlines()] == [
        f"/n/{i}" for i in range(50)
    ]


# -- config problems ------------------------------------------------------------------------------


def _problems(plugins: dict[str, Any], base_dir: str = ".") -> list[tuple[str, str, str]]:
    data = {
        "listeners": [{"address": "127.0.0.1:0"}],
        "plugins": plugins,
        "services": [{"name": "api", "upstream": "http://127.0.0.1:1", "prefix": "/"}],
    }
    config = config_from_data(data, source="<t>", base_dir=base_dir)
    with pytest.raises(SnapshotError) as caught:
        build_snapshot(config, lambda _u: None, "<t>")
    return [(p.pointer, p.message, p.hint) for p in caught.value.problems]


AL = "/plugins/access-log"


@pytest.mark.parametrize(
    ("settings", "pointer", "message", "hint"),
    [
        ({"fields": ["time", "latency"]}, f"{AL}/fields/1", "no field 'latency'", "the fields: "),
        ({"fields": ["stauts"]}, f"{AL}/fields/0", "no field 'stauts'", "did you mean 'status'?"),
        ({"fields": ["path", "path"]}, f"{AL}/fields/1", "'path' is given twice", "name it once"),
        ({"fields": []}, f"{AL}/fields", "no fields", "name some of: time, request_id"),
        ({"fields": "path"}, f"{AL}/fields", "Expected `array`", ""),
        ({"fomat": "json"}, f"{AL}/fomat", "unknown key 'fomat'", "its keys: fields"),
        ({"query": "yes"}, f"{AL}/query", "Expected `bool`", ""),
        (
            {"file": "a.log", "syslog": {"address": "udp://127.0.0.1"}},
            f"{AL}/syslog",
            "both file and syslog are given",
            "one access-log writes to one place",
        ),
        (
            {"syslog": {"address": "http://127.0.0.1:514"}},
            f"{AL}/syslog/address",
            "'http://127.0.0.1:514' is neither udp:// nor tcp://",
            "udp://HOST[:PORT] or tcp://HOST[:PORT]",
        ),
        (
            {"syslog": {"address": "udp://:514"}},
            f"{AL}/syslog/address",
            "'udp://:514' names no host",
            "udp://HOST",
        ),
        (
            {"syslog": {"address": "tcp://h:99999"}},
            f"{AL}/syslog/address",
            "'tcp://h:99999' is not an address",
            "udp://HOST",
        ),
        (
            {"syslog": {"address": "udp://h", "facility": "local9"}},
            f"{AL}/syslog/facility",
            "no facility 'local9'",
            "one of: kern, user",
        ),
        (
            {"syslog": {"address": "udp://h", "severity": "warn"}},
            f"{AL}/syslog/severity",
            "no severity 'warn'",
            "one of: emerg",
        ),
        (
            {"syslog": {"address": "udp://h", "app_name": "my app"}},
            f"{AL}/syslog/app_name",
            "app_name 'my app' has a character RFC 5424 does not allow there",
            "printable ASCII, no spaces",
        ),
        ({"syslog": {}}, f"{AL}/syslog", "Object missing required field `address`", ""),
        ({"queue_bytes": 10}, f"{AL}/queue_bytes", "Expected `int` >= 1024", ""),
        (
            {"file": "no/such/dir/access.log"},
            f"{AL}/file",
            "",  # (the directory's absolute path)
            "create it, or give another path",
        ),
        ({"file": "."}, f"{AL}/file", "", "give a file's path"),
    ],
)
def test_config_problems_name_the_pointer_and_the_fix(
    settings: dict[str, Any], pointer: str, message: str, hint: str
) -> None:
    found = _problems({"access-log": settings})
    matching = [p for p in found if p[0] == pointer]
    assert matching, found
    _, got_message, got_hint = matching[0]
    assert got_message.startswith(message), got_message
    assert got_hint.startswith(hint), got_hint


def test_a_file_in_a_directory_that_is_not_writable(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.access(locked, os.W_OK):
        pytest.skip("running as a user who may write anywhere (root)")
    ((pointer, message, hint),) = _problems({"access-log": {"file": "locked/a.log"}}, str(tmp_path))
    assert (pointer, message) == (f"{AL}/file", f"can not write {locked / 'a.log'}")
    assert hint.startswith("give the gateway's user write access")


def test_access_log_is_not_given_per_consumer() -> None:
    data = {
        "listeners": [{"address": "127.0.0.1:0"}],
        "consumers": [{"name": "c", "plugins": {"access-log": {}}}],
        "services": [{"name": "api", "upstream": "http://127.0.0.1:1", "prefix": "/"}],
    }
    config = config_from_data(data, source="<t>", base_dir=".")
    with pytest.raises(SnapshotError) as caught:
        build_snapshot(config, lambda _u: None, "<t>")
    assert [(p.pointer, p.message, p.hint) for p in caught.value.problems] == [
        (
            "/consumers/0/plugins/access-log",
            "access-log can not be given per consumer",
            "give it at: global, operation, service",
        )
    ]
