"""opentelemetry: W3C trace context propagated upstream, and a span per sampled request
exported over OTLP/HTTP (docs/plugins/tracing.md).

The compiled step (plugins/steps/tracing.pxi) reads and writes `traceparent`,
decides sampling in C and records what a sampled request's span needs; the
export (plugins/builtin/otlp.py: the OpenTelemetry SDK's BatchSpanProcessor and
OTLP/HTTP exporter) is made here, by the step factory, on the snapshot build
thread, and is imported only then: a gateway without the plugin never loads
the SDK.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec
import orjson
from msgspec import Meta

from runmcp_fast._dataplane import Step
from runmcp_fast.plugins._steps import TracingStep
from runmcp_fast.plugins.builtin.fields import doc, header_value_problems, pointer
from runmcp_fast.plugins.contract import (
    BuildContext,
    Plugin,
    PluginError,
    Resource,
    SecretValue,
    Settings,
)

# What OTEL_TRACES_SAMPLER may name (the SDK's built-in samplers): (ratio, parent-based);
# None: the ratio is OTEL_TRACES_SAMPLER_ARG's (1.0 without it).
SAMPLERS: dict[str, tuple[float | None, bool]] = {
    "always_on": (1.0, False),
    "always_off": (0.0, False),
    "traceidratio": (None, False),
    "parentbased_always_on": (1.0, True),
    "parentbased_always_off": (0.0, True),
    "parentbased_traceidratio": (None, True),
}
DEFAULT_SAMPLER = "parentbased_always_on"  # the SDK's default
DEFAULT_SERVICE_NAME = "runmcp-fast"
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_INSTALL_HINT = (
    "pip install 'runmcp_fast[otel]' (opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http)"
    " in the gateway's environment"
)


class TracingSettings(Settings, frozen=True):
    sample_ratio: Annotated[
        Annotated[float, Meta(ge=0.0, le=1.0)] | None,
        doc(
            "The share of traces the gateway samples where it decides (a request without a"
            " valid traceparent, or any when parent_based is false): sampled when the trace"
            " id's low 64 bits are below ratio * 2^64 (OTel's TraceIdRatioBased). Unset:"
            " from OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, else 1.0."
        ),
    ] = None
    parent_based: Annotated[
        bool | None,
        doc(
            "An incoming traceparent's sampled flag decides (OTel's ParentBased). Unset:"
            " from OTEL_TRACES_SAMPLER, else true."
        ),
    ] = None
    create_traceparent: Annotated[
        bool,
        doc(
            "A request without a valid traceparent that is not sampled still gets a new one"
            " upstream (flags 00), so the trace starts at the gateway; a sampled one always does."
        ),
    ] = True
    endpoint: Annotated[
        str | None,
        doc(
            "The OTLP/HTTP traces URL, path included (http://collector:4318/v1/traces)."
            " Unset: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or OTEL_EXPORTER_OTLP_ENDPOINT +"
            " /v1/traces, else http://localhost:4318/v1/traces."
        ),
    ] = None
    headers: Annotated[
        dict[str, SecretValue],
        doc(
            "Headers sent with every export (an API key: {env: NAME} or {file: PATH}), over"
            " OTEL_EXPORTER_OTLP_TRACES_HEADERS / OTEL_EXPORTER_OTLP_HEADERS."
        ),
    ] = msgspec.field(default_factory=dict)
    timeout: Annotated[
        Annotated[float, Meta(gt=0.0, le=300.0)] | None,
        doc("Seconds an export may take, retries included. Unset: OTEL_EXPORTER_OTLP_TIMEOUT, 10."),
    ] = None
    compression: Annotated[
        Literal["none", "gzip", "deflate"] | None,
        doc("Of the export's body. Unset: OTEL_EXPORTER_OTLP_COMPRESSION, else none."),
    ] = None
    service_name: Annotated[
        Annotated[str, Meta(min_length=1)] | None,
        doc(
            "The resource's service.name. Unset: OTEL_SERVICE_NAME, or service.name in"
            " OTEL_RESOURCE_ATTRIBUTES, else runmcp-fast."
        ),
    ] = None
    resource: Annotated[
        dict[str, str | int | float | bool],
        doc("Resource attributes of every span, over OTEL_RESOURCE_ATTRIBUTES'."),
    ] = msgspec.field(default_factory=dict)
    max_queue_size: Annotated[
        Annotated[int, Meta(ge=1, le=10_000_000)] | None,
        doc(
            "Spans waiting for export; past it, new ones are dropped (logged). Unset:"
            " OTEL_BSP_MAX_QUEUE_SIZE, 2048."
        ),
    ] = None
    max_export_batch_size: Annotated[
        Annotated[int, Meta(ge=1, le=10_000_000)] | None,
        doc("Spans per export request. Unset: OTEL_BSP_MAX_EXPORT_BATCH_SIZE, 512."),
    ] = None
    schedule_delay_ms: Annotated[
        Annotated[int, Meta(ge=1, le=3_600_000)] | None,
        doc(
            "Milliseconds between exports when fewer than a batch wait. Unset:"
            " OTEL_BSP_SCHEDULE_DELAY, 5000."
        ),
    ] = None


class ExportSettings(msgspec.Struct, frozen=True):
    """The export pipeline's settings, secrets resolved: equal settings, one pipeline."""

    endpoint: str | None
    headers: dict[str, str]
    timeout: float | None
    compression: str | None
    service_name: str | None
    resource: dict[str, str | int | float | bool]
    max_queue_size: int | None
    max_export_batch_size: int | None
    schedule_delay_ms: int | None


class OpenTelemetry(Plugin):
    """W3C trace context upstream; spans of sampled requests exported over OTLP/HTTP."""

    name = "opentelemetry"
    phase = "rewrite"
    priority = 20000  # first of all: its span starts before any other step runs
    Config = TracingSettings
    scopes = frozenset({"global", "service", "operation"})
    summary = (
        "W3C traceparent/tracestate propagated upstream; sampling decided in C (ratio,"
        " parent-based); a span per sampled request, exported over OTLP/HTTP off the event loop"
    )

    def check(self, settings: Any) -> Iterator[PluginError]:
        if settings.endpoint is not None:
            yield from _endpoint_problems(settings.endpoint)
        for name, value in settings.headers.items():
            at = pointer("headers", name)
            if not _HEADER_NAME.match(name):
                yield PluginError(
                    f"{name!r} is not a header name",
                    at=at,
                    hint="a header name is an RFC 9110 token: letters, digits and !#$%&'*+-.^_`|~",
                )
            elif isinstance(value, str):
                yield from header_value_problems(value, at)
        for key in settings.resource:
            if not key:
                yield PluginError(
                    "a resource attribute needs a name",
                    at="/resource",
                    hint="e.g. deployment.environment.name",
                )
        queue, batch = settings.max_queue_size, settings.max_export_batch_size
        if queue is not None and batch is not None and batch > queue:
            yield PluginError(
                f"max_export_batch_size ({batch}) is larger than max_queue_size ({queue})",
                at="/max_export_batch_size",
                hint=f"at most {queue}: a batch is taken from the queue",
            )

    def step(self, settings: Any, context: BuildContext, *, fail_open: bool) -> Step:
        ratio, parent_based = sampler(settings.sample_ratio, settings.parent_based)
        export = export_settings(settings, context)  # (secrets read: a missing one is a problem)
        emit = None
        if _sdk_disabled():
            # As the SDK's TracerProvider: no span made; trace context still goes upstream,
            # as for a request that is not sampled.
            ratio, parent_based = 0.0, False
        elif context.resources is not None:
            found = context.resources.get(
                "opentelemetry:" + orjson.dumps(msgspec.to_builtins(export)).decode(),
                lambda: _pipeline(export),
            )
            emit = found.emit  # type: ignore[attr-defined]
        else:
            _sdk()  # a build that serves nothing still says when the SDK is missing
        return TracingStep(
            ratio,
            parent_based,
            settings.create_traceparent,
            emit,
            priority=self.priority,
            fail_open=fail_open,
        )


def sampler(ratio: float | None, parent_based: bool | None) -> tuple[float, bool]:
    """(ratio, parent-based): the settings', else OTEL_TRACES_SAMPLER's (and _ARG's)."""
    if ratio is not None and parent_based is not None:
        return ratio, parent_based
    name = os.environ.get("OTEL_TRACES_SAMPLER", "").strip().lower() or DEFAULT_SAMPLER
    known = SAMPLERS.get(name)
    if known is None:
        raise PluginError(
            f"the environment's OTEL_TRACES_SAMPLER={name!r} is not a sampler this plugin has",
            hint=f"one of {', '.join(SAMPLERS)}; or give sample_ratio and parent_based here",
        )
    env_ratio, env_parent = known
    if env_ratio is None:
        arg = os.environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
        try:
            env_ratio = float(arg) if arg else 1.0
        except ValueError:
            env_ratio = -1.0
        if not 0.0 <= env_ratio <= 1.0:
            raise PluginError(
                f"the environment's OTEL_TRACES_SAMPLER_ARG={arg!r} is not a ratio",
                hint="a number from 0 to 1; or give sample_ratio here",
            )
    return (
        ratio if ratio is not None else env_ratio,
        parent_based if parent_based is not None else env_parent,
    )


def export_settings(settings: TracingSettings, context: BuildContext) -> ExportSettings:
    headers = {}
    for name, value in settings.headers.items():
        at = pointer("headers", name)
        try:
            resolved = context.secret(value, at)
        except PluginError as exc:
            # (a secret's error points from the config's root; this one from the entry)
            raise PluginError(str(exc), at=exc.pointer or at, hint=exc.hint) from None
        problem = next(iter(header_value_problems(resolved, at)), None)
        if problem is not None:
            raise problem
        headers[name] = resolved
    return ExportSettings(
        endpoint=settings.endpoint,
        headers=headers,
        timeout=settings.timeout,
        compression=settings.compression,
        service_name=settings.service_name,
        resource=dict(settings.resource),
        max_queue_size=settings.max_queue_size,
        max_export_batch_size=settings.max_export_batch_size,
        schedule_delay_ms=settings.schedule_delay_ms,
    )


def _sdk_disabled() -> bool:
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def _endpoint_problems(endpoint: str) -> Iterator[PluginError]:
    hint = "the OTLP/HTTP traces URL, path included: http://collector:4318/v1/traces"
    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        yield PluginError(f"{endpoint!r} is not a URL", at="/endpoint", hint=hint)
        return
    if parts.scheme not in ("http", "https") or not parts.hostname:
        yield PluginError(f"{endpoint!r} is not an http(s) URL", at="/endpoint", hint=hint)
    elif parts.path in ("", "/"):
        yield PluginError(
            f"{endpoint!r} has no path: the exporter posts to this URL as it is",
            at="/endpoint",
            hint=f"did you mean {endpoint.rstrip('/')}/v1/traces?",
        )


def _sdk() -> Any:
    """The export module (it imports the SDK); PluginError with the fix when it is missing."""
    try:
        from runmcp_fast.plugins.builtin import otlp
    except ImportError as exc:
        raise PluginError(
            f"the opentelemetry plugin needs the OpenTelemetry SDK: {exc}", hint=_INSTALL_HINT
        ) from None
    return otlp


def _pipeline(export: ExportSettings) -> Resource:
    try:
        pipeline: Resource = _sdk().Pipeline(
            **msgspec.structs.asdict(export), default_service_name=DEFAULT_SERVICE_NAME
        )
    except ValueError as exc:  # the SDK refuses what the settings and OTEL_BSP_* make
        raise PluginError(
            f"the span export can not be set up: {exc}",
            hint="check max_queue_size, max_export_batch_size and the OTEL_BSP_* variables",
        ) from None
    return pipeline
