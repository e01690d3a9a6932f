"""The access log's line for one realistic proxied request, and what handing a batch on costs.

Lines (group "access-log", ns per line from the median, in the summary):

- the access-log step's line, built in C (`AccessLogStep.render`, which loops in C:
  no Python call per line), with the default fields, and with only the fields the
  data plane's old record had;
- the old record: the data plane's `_log` before the plugin replaced it (a dict of
  the request's fields and `orjson.dumps`, with its two `time.time()` calls), run as
  Python here (it was Cython code calling the same Python objects);
- the default fields as a Python dict, `json.dumps`: what a Python plugin would do.

Batches (group "access-log-batch", µs per batch of 220 default lines, ~75 KB): what
the event loop pays at a tick to hand a batch on: an inline `os.write` to a file or to
/dev/null (what a writer without a thread would cost the loop, on a fast disk), and
the file sink's hand-off to its writer thread (a queue put and a wake-up; the thread
writes to /dev/null, so it keeps up and the queue never fills).
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from bench.harness import time_loop
from bench.report import Report
from runmcp_fast._dataplane import (
    ClientProtocol,
    Clock,
    Consumer,
    Pool,
    Request,
    ServerContext,
    Target,
)
from runmcp_fast.config import LimitsConfig, PoolConfig, parse_upstream
from runmcp_fast.plugins._steps import ACCESS_LOG_DEFAULT, AccessLogStep, LogBuffer
from runmcp_fast.plugins.builtin.log_sinks import FileSink

OLD_FIELDS = (
    "time", "client", "peer", "method", "path", "status", "service", "route",
    "duration_ms", "request_id",
)  # fmt: skip
PER = 1000  # lines per timed pass


class _Owner:
    name = "github"
    label = "github"
    tenant = ""


class _Transport:
    """Just enough of a transport for connection_made: the addresses."""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 53122), "sockname": ("127.0.0.1", 8080)}.get(name)

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def exchange() -> Iterator[tuple[ClientProtocol, Request]]:
    """A connection and a GET answered 200 by an upstream, as the log step sees it."""
    loop = asyncio.new_event_loop()
    clock = Clock(loop, 1.0)
    ctx = ServerContext(clock, LimitsConfig(), None)
    conn = ClientProtocol(ctx, b"http")
    conn.connection_made(_Transport())  # type: ignore[arg-type]
    pool = Pool(loop, parse_upstream("http://10.0.3.7:8080"), PoolConfig(), clock)
    target = Target.proxy(
        owner=_Owner(),
        name="issues/get",
        replicas=[pool],
        max_body=1 << 20,
        read_timeout=30,
        connect_timeout=5,
    )
    req = Request.__new__(Request)
    req.method = b"GET"
    req.url = b"/repos/octocat/hello-world/issues/42?per_page=30"
    req.host = b"api.example.com"
    req.lines = [b"User-Agent", b": ", b"curl/8.5.0", b"\r\n", b"Accept", b": ", b"*/*", b"\r\n"]
    req.client_ip = b"127.0.0.1"
    req.request_id = b"5f0c2d9a41b7e3c8a1d2e3f405162738"
    req.target = target
    req.pool = pool
    req.consumer = Consumer("ci-bot")
    req.status = 200
    now = time.monotonic()
    req.t0 = now - 0.00124
    req.t_upstream = now - 0.0011
    req.t_head = now - 0.0002
    req.bytes_out = 1024
    yield conn, req
    ctx.connections.clear()
    loop.close()


def old_record(conn: ClientProtocol, req: Request, started: float) -> bytes:
    """The data plane's `_log` before the access-log plugin (client.pxi), as Python."""
    target = req.target
    client = req.client_ip if req.client_ip is not None else conn.peer
    record: dict[str, Any] = {
        "time": round(started, 3),
        "client": client.decode("ascii", "replace"),
        "method": req.method.decode("latin-1"),
        "path": req.url.decode("latin-1"),
        "status": req.status,
        "service": target.service_name if target is not None else None,
        "operation": target.name if target is not None else None,
        "duration_ms": round((time.time() - started) * 1000, 3),
    }
    if client != conn.peer:
        record["peer"] = conn.peer.decode("ascii", "replace")
    if req.request_id is not None:
        record["request_id"] = req.request_id.decode("latin-1")
    return orjson.dumps(record)


def python_record(conn: ClientProtocol, req: Request) -> bytes:
    """The default fields, as a Python plugin would write them: a dict, json.dumps."""
    target, pool, consumer = req.target, req.pool, req.consumer
    assert target is not None and pool is not None and consumer is not None
    now = time.monotonic()
    duration = now - req.t0
    began = time.time() - duration
    record: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(began))
        + f".{int(began * 1000) % 1000:03d}Z",
        "request_id": req.request_id.decode("latin-1") if req.request_id else None,
        "client": req.client_ip.decode("ascii"),
        "method": req.method.decode("latin-1"),
        "path": req.url.split(b"?", 1)[0].decode("utf-8", "replace"),
        "status": req.status,
        "duration_ms": round(duration * 1000, 3),
        "service": target.service_name,
        "route": target.name,
        "consumer": consumer.name,
        "upstream": pool.name,
        "upstream_ms": round((req.t_head - req.t_upstream) * 1000, 3),
        "bytes_in": 0,
        "bytes_out": req.bytes_out,
    }
    return (json.dumps(record, ensure_ascii=False) + "\n").encode()


def _systems(conn: ClientProtocol, req: Request) -> dict[str, Callable[[], object]]:
    default = AccessLogStep(ACCESS_LOG_DEFAULT, LogBuffer())
    old_fields = AccessLogStep(OLD_FIELDS, LogBuffer())
    started = time.time()

    def loop(make: Callable[[], object]) -> Callable[[], object]:
        def run() -> None:
            for _ in range(PER):
                make()

        return run

    return {
        "access-log step, default fields (C)": lambda: default.render(conn, req, PER),
        "access-log step, the old record's fields (C)": lambda: old_fields.render(conn, req, PER),
        "old _log: dict + orjson.dumps": loop(lambda: old_record(conn, req, started)),
        "default fields: dict + json.dumps": loop(lambda: python_record(conn, req)),
    }


SYSTEMS = [
    "access-log step, default fields (C)",
    "access-log step, the old record's fields (C)",
    "old _log: dict + orjson.dumps",
    "default fields: dict + json.dumps",
]


@pytest.mark.parametrize("system", SYSTEMS)
def test_access_log_line(
    benchmark: Any,
    report: Report,
    bench_seconds: float,
    exchange: tuple[ClientProtocol, Request],
    system: str,
) -> None:
    benchmark.group = "access-log"
    conn, req = exchange
    step = AccessLogStep(ACCESS_LOG_DEFAULT, LogBuffer())
    line = step.render(conn, req)
    assert json.loads(line)["path"] == "/repos/octocat/hello-world/issues/42"  # guard
    if system == SYSTEMS[0]:
        report.note("access-log", f"the default line ({len(line)} bytes): {line.decode()}")
    run = _systems(conn, req)[system]
    data = time_loop(benchmark, run, PER, bench_seconds)
    if data:
        median = sorted(data)[len(data) // 2]
        report.note("access-log", f"{system}: {median * 1e9:,.0f} ns per line")


# -- handing a batch on -----------------------------------------------------------------------


BATCH_LINES = 220  # ~75 KB of default lines: about what a tick hands on under load


@pytest.fixture(scope="module")
def batch(exchange: tuple[ClientProtocol, Request]) -> bytes:
    conn, req = exchange
    return AccessLogStep(ACCESS_LOG_DEFAULT, LogBuffer()).render(conn, req) * BATCH_LINES


@pytest.mark.parametrize("how", ["os.write to a file", "os.write to /dev/null", "writer thread"])
def test_access_log_batch(
    benchmark: Any, report: Report, bench_seconds: float, batch: bytes, how: str
) -> None:
    benchmark.group = "access-log-batch"
    per = 20
    with tempfile.TemporaryDirectory(prefix="bench-access-log-") as tmp:
        path = os.path.join(tmp, "access.log")
        if how == "writer thread":
            sink = FileSink(os.devnull, 1 << 30)
            buffer = LogBuffer(sink)

            def run() -> None:
                for _ in range(per):
                    sink.submit(batch, BATCH_LINES, buffer)

            def drained() -> None:
                # Untimed, before each round: the thread has written the last round's
                # (a tick hands on one batch; a tight loop would outrun any writer).
                while sink.writer.pending():
                    time.sleep(0.0005)

            try:
                data = _time_with_setup(benchmark, run, drained, per, bench_seconds)
            finally:
                sink.close()
            assert buffer.dropped == 0 and buffer.failed == 0
        else:
            fd = os.open(
                path if "file" in how else os.devnull,
                os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
            )

            def run() -> None:
                for _ in range(per):
                    os.write(fd, batch)

            try:
                data = time_loop(benchmark, run, per, bench_seconds)
            finally:
                os.close(fd)
    if data:
        median = sorted(data)[len(data) // 2]
        report.note(
            "access-log-batch",
            f"{how}: {median * 1e6:,.1f} µs per {len(batch) // 1000} KB batch"
            f" ({median * 1e9 / BATCH_LINES:,.0f} ns per line)",
        )


def _time_with_setup(
    benchmark: Any, run: Callable[[], None], setup: Callable[[], None], per: int, seconds: float
) -> list[float]:
    """`time_loop` with an untimed `setup` before each round."""
    setup()
    t0 = time.perf_counter()
    run()
    once = max(time.perf_counter() - t0, 1e-9)
    rounds = min(max(int(seconds / once), 5), 2_000)
    benchmark.extra_info.update(requests=per, rounds=rounds, unit="per batch")
    benchmark.pedantic(run, setup=setup, rounds=rounds, warmup_rounds=1, iterations=1)
    if not benchmark.stats:
        return []
    data = benchmark.stats.stats.data
    data[:] = [d / per for d in data]
    return list(data)
