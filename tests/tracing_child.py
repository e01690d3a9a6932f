"""What the tracing tests run in a child interpreter (tests/isolation.py run_isolated): a
fresh process, to see which modules a gateway imports, and to fork."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any


def _sdk_modules() -> list[str]:
    return sorted(
        m for m in sys.modules if m.startswith(("opentelemetry.sdk", "opentelemetry.exporter"))
    )


def sdk_loaded_after_a_gateway_ran() -> dict[str, list[str]]:
    """The OpenTelemetry SDK modules loaded after importing the gateway, and after running
    one with other plugins (no opentelemetry) through a request."""
    from runmcp_fast.config import config_from_data
    from runmcp_fast.gateway import Gateway

    before = _sdk_modules()
    config = config_from_data(
        {
            "listeners": [{"address": "127.0.0.1:0"}],
            "plugins": {"request-id": {}, "key-auth": {}},
            "consumers": [{"name": "a", "key-auth": {"key": "child-key-0123456789"}}],
            "services": [{"name": "raw", "upstream": "http://127.0.0.1:9", "prefix": "/r"}],
        },
        source="<child>",
    )

    async def run() -> None:
        gateway = Gateway(config, source="<child>")
        await gateway.start()
        host, port = gateway.addresses[0].rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /r/x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        await reader.read()  # a 401 from key-auth
        writer.close()
        await gateway.stop()

    asyncio.run(run())
    return {"before": before, "after": _sdk_modules()}


def _trace_ids(count: int) -> list[str]:
    from runmcp_fast.plugins._steps import TracingStep, time_steps

    records: list[Any] = []
    step = TracingStep(1.0, True, True, records.append)
    time_steps([step], [], count)
    return [f"{r.trace_id:032x}" for r in records]


def ids_across_fork() -> list[list[str]]:
    """Trace ids made after a fork, in the parent and in the child."""
    _trace_ids(10)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read)
        os.write(write, ",".join(_trace_ids(100)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read, "rb") as pipe:
        child = pipe.read().decode().split(",")
    return [_trace_ids(100), child]
