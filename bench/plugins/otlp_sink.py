"""A local OTLP/HTTP receiver for the `otel-sampled` set: POST /v1/traces (protobuf) is
decoded and its spans counted; GET /count answers {"spans": n, "posts": m}.

    python bench/plugins/otlp_sink.py PORT
"""

from __future__ import annotations

import sys

import uvloop
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

COUNTS = web.AppKey("counts", dict[str, int])
ANSWER = ExportTraceServiceResponse().SerializeToString()


async def traces(request: web.Request) -> web.Response:
    message = ExportTraceServiceRequest()
    message.ParseFromString(await request.read())
    counts = request.app[COUNTS]
    counts["posts"] += 1
    counts["spans"] += sum(
        len(scope.spans) for resource in message.resource_spans for scope in resource.scope_spans
    )
    return web.Response(body=ANSWER, content_type="application/x-protobuf")


async def count(request: web.Request) -> web.Response:
    return web.json_response(request.app[COUNTS])


def main() -> None:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[COUNTS] = {"spans": 0, "posts": 0}
    app.router.add_post("/v1/traces", traces)
    app.router.add_get("/count", count)
    web.run_app(
        app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, loop=uvloop.new_event_loop()
    )


if __name__ == "__main__":
    main()
