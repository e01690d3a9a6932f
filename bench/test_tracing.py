"""The opentelemetry plugin's cost per request, on the compiled step as the data plane calls
it (C calls through the vtable, no socket), and the two ways of getting a sampled
request's span to the exporter.

1. `test_step`: the step's request and log hooks on one request (a new Request with a
   browser-like set of header lines each time), in CPU ns of this thread (time the busy
   machine gives other processes is not counted) over the same loop with no step: the
   bare loop is timed in the same round, and the minimum of 40 rounds is reported. This
   is what an unsampled request costs the event loop; the sampled row is the record
   only (no export).
2. `test_hand_off`: a sampled request's span from the log step to the export queue, on
   the event loop: the plugin's way (its SpanRecord to BatchSpanProcessor.on_end; the
   batch thread turns records into spans) against building the SDK's ReadableSpan in
   the log step and queueing that. Thread CPU ns per span; the batch thread is kept
   asleep (an hour's delay, a batch never full) so only the loop's part is timed.
3. `test_batch_thread`: what the batch thread then spends per span, its GIL held: the
   records turned into spans, and the OTLP protobuf encoding the exporter does (the
   HTTP post is not counted).

Numbers go to the summary under "opentelemetry"; nothing is asserted but correctness.

    .venv/bin/python -m pytest bench/test_tracing.py -p no:cacheprovider -q -s
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import uvloop

from bench.report import Report
from runmcp_fast._dataplane import Clock, Consumer, Pool, Step, Target
from runmcp_fast.config import PoolConfig, parse_upstream
from runmcp_fast.openapi.model import Operation
from runmcp_fast.plugins._steps import SpanRecord, TracingStep, time_steps

ROUNDS = 40
PER = 20_000  # requests per timed pass
TRACEPARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-"
# What a browser-ish client sends besides Host (which the data plane keeps apart).
HEADERS: list[tuple[bytes, bytes]] = [
    (b"User-Agent", b"Mozilla/5.0 (X11; Linux x86_64) bench"),
    (b"Accept", b"application/json"),
    (b"Accept-Encoding", b"gzip, deflate, br"),
    (b"Accept-Language", b"en-GB,en;q=0.9"),
]

# (step, extra headers): each row of test_step.
CASES: dict[str, tuple[Callable[[], Step], list[tuple[bytes, bytes]]]] = {
    "unsampled: caller's traceparent -00, parent-based (passed on as it came)": (
        lambda: TracingStep(0.0, True, True),
        [(b"traceparent", TRACEPARENT + b"00")],
    ),
    "unsampled: caller's traceparent -01, ratio 0, not parent-based": (
        lambda: TracingStep(0.0, False, True),
        [(b"traceparent", TRACEPARENT + b"01")],
    ),
    "unsampled: no traceparent, ratio 0, create_traceparent (a new one upstream)": (
        lambda: TracingStep(0.0, True, True),
        [],
    ),
    "unsampled: no traceparent, ratio 0, create_traceparent false": (
        lambda: TracingStep(0.0, True, False),
        [],
    ),
    "unsampled: malformed traceparent and a tracestate (dropped, a new one made)": (
        lambda: TracingStep(0.0, True, True),
        [(b"traceparent", TRACEPARENT.upper() + b"01"), (b"tracestate", b"a=1")],
    ),
    "sampled: no traceparent, ratio 1 (the record made, not exported)": (
        lambda: TracingStep(1.0, True, True),
        [],
    ),
    "(a no-op compiled step with request and log hooks)": (
        lambda: Step("noop", "rewrite", hooks=5),
        [],
    ),
}


def _over_bare(steps: list[Step], headers: list[tuple[bytes, bytes]]) -> tuple[float, float]:
    """(ns per request over the bare loop, the bare loop's ns): minimum of ROUNDS rounds,
    each timing the bare loop and the step's right after one another."""
    bare = with_step = float("inf")
    for _ in range(ROUNDS):
        bare = min(bare, time_steps([], headers, PER))
        with_step = min(with_step, time_steps(steps, headers, PER))
    return (with_step - bare) / PER * 1e9, bare / PER * 1e9


@pytest.mark.parametrize("case", list(CASES))
def test_step(benchmark: Any, report: Report, case: str) -> None:
    benchmark.group = "opentelemetry step"
    make, extra = CASES[case]
    step = make()
    headers = HEADERS + extra
    benchmark.extra_info.update(requests=PER, unit="per request")
    benchmark.pedantic(lambda: time_steps([step], headers, PER), rounds=10, warmup_rounds=1)
    over, bare = _over_bare([step], headers)
    report.note(
        "opentelemetry",
        f"{case}: {over:,.1f} ns CPU per request over the bare loop ({bare:,.0f} ns)",
    )


# -- a sampled request's span on its way to the exporter -------------------------------------


def _route() -> tuple[Target, Pool, Consumer]:
    """A target, pool and consumer as a snapshot makes them (for realistic records)."""
    loop = uvloop.new_event_loop()
    upstream = parse_upstream("http://127.0.0.1:8081")
    pool = Pool(loop, upstream, PoolConfig(), Clock(loop, 1.0))
    operation = Operation(
        operation_id="getItem",
        method="GET",
        path="/items/{id}",
        template="/bench/items/{id}",
        pointer="/paths/~1items~1{id}/get",
        parameters=(),
        request_body=None,
    )

    class Owner:
        name = label = "bench"
        tenant = ""

    target = Target.proxy(
        owner=Owner(),
        name="getItem",
        operation=operation,
        replicas=(pool,),
        max_body=1 << 20,
        read_timeout=60.0,
        connect_timeout=5.0,
    )
    return target, pool, Consumer("alice", ("staff",))


def _records(count: int) -> list[SpanRecord]:
    target, pool, consumer = _route()
    records: list[SpanRecord] = []
    step = TracingStep(1.0, True, True, records.append)
    headers = [*HEADERS, (b"traceparent", TRACEPARENT + b"01"), (b"tracestate", b"rojo=1")]
    time_steps([step], headers, count, target=target, pool=pool, consumer=consumer)
    return records


class _Null:
    """An exporter that keeps nothing (the queue is never drained while timing)."""

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _thread_cpu() -> float:
    return time.clock_gettime(time.CLOCK_THREAD_CPUTIME_ID)


def test_hand_off(report: Report) -> None:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from runmcp_fast.plugins.builtin.otlp import RecordExporter, otel_resource, span_of

    count = 20_000
    records = _records(count)
    resource = otel_resource("bench", {}, "runmcp-fast")
    # Guard: the record turns into the span the exporter would send.
    span = span_of(records[0], resource)
    assert span.attributes is not None
    assert span.attributes["runmcp.consumer"] == "alice"
    assert span.attributes["http.route"] == "/bench/items/{id}"
    ways: dict[str, Callable[[Any, SpanRecord], None]] = {
        "the plugin's: SpanRecord to on_end (spans made on the batch thread)": (
            lambda processor, record: processor.on_end(record)
        ),
        "ReadableSpan built in the log step, then on_end": (
            lambda processor, record: processor.on_end(span_of(record, resource))
        ),
    }
    best = dict.fromkeys(ways, float("inf"))
    for _ in range(5):
        for name, hand in ways.items():
            processor = BatchSpanProcessor(
                RecordExporter(_Null(), resource),  # type: ignore[arg-type]
                max_queue_size=count + 1,
                max_export_batch_size=count + 1,  # never a full batch: the thread sleeps
                schedule_delay_millis=3_600_000,
            )
            started = _thread_cpu()
            for record in records:
                hand(processor, record)
            best[name] = min(best[name], (_thread_cpu() - started) / count * 1e9)
            processor.shutdown()  # type: ignore[no-untyped-call]
    for name, ns in best.items():
        report.note("opentelemetry", f"hand-off, {name}: {ns:,.0f} ns CPU per span on the loop")


def test_batch_thread(report: Report) -> None:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from runmcp_fast.plugins.builtin.otlp import otel_resource, span_of

    count = 2048
    records = _records(count)
    resource = otel_resource("bench", {}, "runmcp-fast")
    convert = encode = float("inf")
    size = 0
    for _ in range(5):
        started = _thread_cpu()
        spans = [span_of(record, resource) for record in records]
        convert = min(convert, (_thread_cpu() - started) / count * 1e9)
        started = _thread_cpu()
        body = encode_spans(spans).SerializePartialToString()
        encode = min(encode, (_thread_cpu() - started) / count * 1e9)
        size = len(body)
    report.note(
        "opentelemetry",
        f"batch thread: records to spans {convert:,.0f} ns per span, OTLP protobuf encoding"
        f" {encode:,.0f} ns per span ({size / count:,.0f} bytes per span), HTTP post not counted",
    )
