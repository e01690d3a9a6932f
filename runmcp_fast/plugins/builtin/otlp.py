"""The opentelemetry plugin's export: span records through the OpenTelemetry SDK's
BatchSpanProcessor to its OTLP/HTTP (protobuf) exporter.

Imported only by the plugin's step factory (builtin/tracing.py), on the snapshot
build thread: a gateway without the plugin never loads the SDK.

The event loop's part is one call per sampled request: the log step hands its
`SpanRecord` (plugins/steps/tracing.pxi) to `BatchSpanProcessor.on_end`, which
reads only `record.context.trace_flags.sampled` and queues it. The processor's
thread gives batches to `RecordExporter`, which turns the records into the SDK's
`ReadableSpan`s there, and passes them to the OTLP exporter. So the loop builds no
span, attribute dict or SpanContext (bench/test_tracing.py measures both ways).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME
from opentelemetry.sdk.resources import Resource as OtelResource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from runmcp_fast import __version__
from runmcp_fast.plugins.contract import Resource

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NO_STATE = TraceState()
_UNSET = Status(StatusCode.UNSET)
_SCOPE = InstrumentationScope("runmcp_fast", __version__)
# The MCP semantic conventions' attribute for what `params.name` (`uri`) names, by method.
_NAMED = {
    "tools/call": "gen_ai.tool.name",
    "prompts/get": "gen_ai.prompt.name",
    "resources/read": "mcp.resource.uri",
}
_COMPRESSION = {
    "none": Compression.NoCompression,
    "gzip": Compression.Gzip,
    "deflate": Compression.Deflate,
}


def otel_resource(
    service_name: str | None, attributes: dict[str, Any], default_name: str
) -> OtelResource:
    """The spans' resource: `attributes` over OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME;
    service.name from the settings, else the environment, else `default_name`."""
    given = dict(attributes)
    if service_name is not None:
        given[SERVICE_NAME] = service_name
    resource = OtelResource.create(given)
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(OtelResource({SERVICE_NAME: default_name}))
    return resource


def span_of(record: Any, resource: OtelResource) -> ReadableSpan:
    """A SpanRecord as the SDK's span: HTTP server conventions, MCP's when it carried one
    JSON-RPC message, the gateway's own errors."""
    trace_id = record.trace_id
    state = (
        TraceState.from_header([record.tracestate.decode("latin-1")])
        if record.tracestate
        else _NO_STATE
    )
    context = SpanContext(trace_id, record.span_id, False, _SAMPLED, state)
    parent = (
        SpanContext(trace_id, record.parent_id, True, _SAMPLED, state) if record.parent_id else None
    )
    method = record.method.decode("latin-1") if record.method else "_OTHER"
    status = record.status
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "url.path": record.url.partition(b"?")[0].decode("latin-1") if record.url else "",
    }
    if status:
        attributes["http.response.status_code"] = status
    name = method
    target = record.target
    if target is not None:
        attributes["runmcp.service"] = target.service_name
        attributes["runmcp.route"] = target.name
        operation = target.operation
        if operation is not None:
            attributes["http.route"] = operation.template
            name = f"{method} {operation.template}"
    if record.pool is not None:
        attributes["runmcp.upstream"] = record.pool.name
    if record.client is not None:
        attributes["client.address"] = record.client.decode("ascii", "replace")
    if record.peer is not None:
        attributes["network.peer.address"] = record.peer.decode("ascii", "replace")
    if record.consumer is not None:
        attributes["runmcp.consumer"] = record.consumer.name
    envelope = record.envelope
    if envelope is not None:
        name = _mcp(envelope, attributes) or name
    if record.answered_by is not None:
        attributes["runmcp.answered_by"] = record.answered_by
    span_status = _UNSET
    if record.error is not None:
        attributes["runmcp.error"] = record.error
    if status >= 500 or (record.error is not None and (status < 400 or status == 499)):
        # HTTP server spans: a 5xx is an error, a 4xx is the client's (semantic conventions);
        # and so is a response the gateway cut short (the client saw a 2xx head, or a 499 is
        # logged since the connection ended before the response did).
        attributes["error.type"] = str(status) if status >= 500 else "response_cut_short"
        span_status = Status(StatusCode.ERROR, record.error or f"HTTP {status}")
    return ReadableSpan(
        name,
        context=context,
        parent=parent,
        resource=resource,
        attributes=attributes,
        kind=SpanKind.SERVER,
        status=span_status,
        start_time=record.start_ns,
        end_time=record.end_ns,
        instrumentation_scope=_SCOPE,
    )


def _mcp(envelope: Any, attributes: dict[str, Any]) -> str | None:
    """The MCP conventions' attributes of one JSON-RPC message; the span's name for it."""
    if envelope.kind == "batch":
        attributes["runmcp.mcp.batch_size"] = len(envelope.members)
        return None
    method = envelope.method
    if method is None:
        return None  # a response or an error the client sent back
    attributes["mcp.method.name"] = method
    if envelope.id is not None:
        attributes["jsonrpc.request.id"] = str(envelope.id)
    key = _NAMED.get(method)
    if key is not None and envelope.name is not None:
        attributes[key] = envelope.name
        if key != "mcp.resource.uri":  # (a URI is no span name: too many of them)
            return f"{method} {envelope.name}"
    return str(method)


class RecordExporter(SpanExporter):
    """Turns the span records of a batch into spans (on the processor's thread) for `inner`."""

    def __init__(self, inner: SpanExporter, resource: OtelResource) -> None:
        self.inner = inner
        self.resource = resource

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        resource = self.resource
        return self.inner.export([span_of(record, resource) for record in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class Pipeline(Resource):
    """One export pipeline (a thread): shared by every step with the same export settings,
    across snapshots; closed (the queue exported) when the gateway stops. The settings are
    the plugin's (builtin/tracing.py ExportSettings); None: the SDK's environment variable,
    else its default."""

    def __init__(
        self,
        *,
        endpoint: str | None,
        headers: dict[str, str],
        timeout: float | None,
        compression: str | None,
        service_name: str | None,
        resource: dict[str, Any],
        max_queue_size: int | None,
        max_export_batch_size: int | None,
        schedule_delay_ms: int | None,
        default_service_name: str,
    ) -> None:
        self.resource = otel_resource(service_name, resource, default_service_name)
        self.exporter = OTLPSpanExporter(
            endpoint=endpoint,
            headers=headers or None,
            timeout=timeout,
            compression=_COMPRESSION[compression] if compression else None,
        )
        self.processor = BatchSpanProcessor(
            RecordExporter(self.exporter, self.resource),
            max_queue_size=max_queue_size,
            schedule_delay_millis=schedule_delay_ms,
            max_export_batch_size=max_export_batch_size,
        )
        self.endpoint = endpoint
        self.emit = self.processor.on_end  # what the log step calls with each record

    def close(self) -> None:
        # Exports what is queued (bounded by the exporter's timeout), then stops the thread.
        self.processor.shutdown()  # type: ignore[no-untyped-call]

    def __repr__(self) -> str:
        return f"<opentelemetry export to {self.endpoint or '(the OTLP environment)'}>"
