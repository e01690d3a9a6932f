"""The reference server `@modelcontextprotocol/server-everything` behind the gateway.

Every tool it offers is called once directly and once through the gateway,
with arguments made from its input schema; the answers must agree (up to
the values the server makes up per call: timestamps, random ids).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import mcp_fixtures
import mcp_types as types
import pytest
from mcp_fixtures import EverythingServer, mcp_client
from servers import GatewayThread, LoopThread

pytestmark = pytest.mark.anyio

server_everything = mcp_fixtures.server_everything

# Tools that ask the client for something it did not offer (roots, sampling,
# elicitation) are not listed for this client; these change state or run long.
SKIP = {"toggle-simulated-logging", "toggle-subscriber-updates"}
ARGUMENTS: dict[str, dict[str, Any]] = {
    "trigger-long-running-operation": {"duration": 1, "steps": 2},
    "gzip-file-as-resource": {"name": "x.gz", "data": "data:text/plain;base64,aGVsbG8="},
}
# What differs between two calls a moment apart: ISO times, epoch numbers, UUIDs, and
# the locale times some resources print ("at 8:30:44 AM").
_VOLATILE = re.compile(
    r"\d{4}-\d\d-\d\dT[\d:.]+Z?|\b\d{10,}\b|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    r"|\b\d{1,2}:\d\d:\d\d(?:\s?[AP]M)?"
)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def gateway(server_everything: EverythingServer) -> Iterator[GatewayThread]:
    with LoopThread() as loop_thread:
        gw = GatewayThread(
            {
                "services": [
                    {"name": "everything", "kind": "mcp", "upstream": server_everything.url}
                ]
            },
            loop_thread,
        )
        yield gw
        gw.stop()


def example(schema: dict[str, Any]) -> Any:
    """A value the schema accepts: its default, first enum member or example, else a plain one."""
    for key in ("default", "const"):
        if key in schema:
            return schema[key]
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        required = schema.get("required", [])
        props = schema.get("properties", {})
        return {name: example(props[name]) for name in required if name in props}
    if kind == "array":
        return []
    if kind == "integer":
        return max(1, int(schema.get("minimum", 1)))
    if kind == "number":
        return max(1, schema.get("minimum", 1))
    if kind == "boolean":
        return False
    return "test"


def comparable(result: types.CallToolResult) -> Any:
    dumped = result.model_dump(mode="json", exclude_none=True, by_alias=True)
    return _VOLATILE.sub("<volatile>", repr(dumped))


async def test_every_tool_answers_through_the_gateway_as_it_does_directly(
    server_everything: EverythingServer, gateway: GatewayThread
) -> None:
    direct_url = server_everything.url
    gateway_url = f"http://127.0.0.1:{gateway.port}/mcp"
    async with (
        mcp_client(direct_url, "2025-11-25") as direct,
        mcp_client(gateway_url, "2025-11-25") as through,
    ):
        direct_tools = {t.name: t for t in (await direct.session.list_tools()).tools}
        gateway_tools = {t.name: t for t in (await through.session.list_tools()).tools}
        assert gateway_tools.keys() == direct_tools.keys()
        assert len(direct_tools) >= 8
        called = []
        for name, tool in sorted(direct_tools.items()):
            assert gateway_tools[name].input_schema == tool.input_schema
            if name in SKIP:
                continue
            arguments = ARGUMENTS.get(name, example(tool.input_schema))
            expected = await direct.call(name, arguments, timeout=30)
            got = await through.call(name, arguments, timeout=30)
            assert got.is_error == expected.is_error, name
            assert comparable(got) == comparable(expected), name
            called.append(name)
        assert len(called) == len(direct_tools.keys() - SKIP) and "echo" in called
