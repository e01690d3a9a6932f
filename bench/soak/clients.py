"""The soak's Python clients: SSE streams, MCP sessions, and (without wrk) GET/POST.

Each client is a loop on one keep-alive connection of a shared `aiohttp` session
that runs until `stop` is set; it checks every answer and counts, per kind, what
was done and what failed and why (`Tally`). An MCP session or an SSE stream in
progress when `stop` is set is finished first, so nothing is cut by the end of
the run. Every request is bounded by `TIMEOUT`.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

TIMEOUT = aiohttp.ClientTimeout(total=60)
ACCEPT = "application/json, text/event-stream"
PROTOCOL = "2025-06-18"
ITEM = {"name": "soak item", "tags": ["a", "b"], "price": 3.5}


@dataclass
class Tally:
    done: Counter[str] = field(default_factory=Counter)  # kind -> requests that passed
    failed: Counter[str] = field(default_factory=Counter)  # "kind: why" -> count
    examples: dict[str, str] = field(default_factory=dict)  # "kind: why" -> first detail

    def ok(self, kind: str) -> None:
        self.done[kind] += 1

    def fail(self, kind: str, why: str, detail: str = "") -> None:
        key = f"{kind}: {why}"
        self.failed[key] += 1
        self.examples.setdefault(key, detail[:300])


class Failed(Exception):
    """An answer that is not what the request should get (counted, loop goes on)."""

    def __init__(self, why: str, detail: str = "") -> None:
        super().__init__(why)
        self.why = why
        self.detail = detail


async def _guard(tally: Tally, kind: str, call: Any) -> bool:
    """Run one request; count its failure by type. True if it passed."""
    try:
        await call
    except Failed as exc:
        tally.fail(kind, exc.why, exc.detail)
        return False
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        tally.fail(kind, type(exc).__name__, str(exc))
        return False
    tally.ok(kind)
    return True


def _expect(status: int, wanted: tuple[int, ...], body: bytes) -> None:
    if status not in wanted:
        raise Failed(f"status {status}", body[:200].decode(errors="replace"))


async def http_client(
    session: aiohttp.ClientSession, base: str, tally: Tally, stop: asyncio.Event
) -> None:
    """GET /api/items/{n} and POST /api/items in turn (what wrk's mix.lua sends)."""
    body = orjson.dumps({**ITEM, "note": "n" * 800})
    for n in itertools.count():
        if stop.is_set():
            return
        if n % 2:
            await _guard(tally, "POST", _request(session, "POST", f"{base}/api/items", body))
        else:
            await _guard(tally, "GET", _request(session, "GET", f"{base}/api/items/{n % 1000}"))


async def _request(
    session: aiohttp.ClientSession, method: str, url: str, body: bytes | None = None
) -> None:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    async with session.request(method, url, data=body, headers=headers) as answer:
        data = await answer.read()
        _expect(answer.status, (200,), data)


async def sse_client(
    session: aiohttp.ClientSession, base: str, events: int, tally: Tally, stop: asyncio.Event
) -> None:
    """Whole SSE streams through the gateway: each must carry `events` events and end."""
    for n in itertools.count():
        if stop.is_set():
            return
        await _guard(tally, "SSE", _stream(session, f"{base}/events/stream/{n}", events))


async def _stream(session: aiohttp.ClientSession, url: str, events: int) -> None:
    async with session.get(url, headers={"Accept": "text/event-stream"}) as answer:
        if answer.status != 200:
            _expect(answer.status, (200,), await answer.read())
        if not answer.headers.get("Content-Type", "").startswith("text/event-stream"):
            raise Failed("not an event stream", answer.headers.get("Content-Type", ""))
        seen = 0
        async for line in answer.content:
            if line.startswith(b"data:"):
                seen += 1
        if seen != events:
            raise Failed("events lost", f"{seen} of {events}")


async def mcp_client(
    session: aiohttp.ClientSession,
    base: str,
    target: str,
    calls: int,
    tally: Tally,
    stop: asyncio.Event,
) -> None:
    """MCP sessions, one after the other: initialize, initialized, `calls` x tools/call,
    DELETE. `target` "proxy": the `kind: mcp` service at /mcp (its `echo` tool);
    "endpoint": the api service's generated MCP server at /api/mcp (getItem, createItem)."""
    url = f"{base}/mcp" if target == "proxy" else f"{base}/api/mcp"
    kind = f"MCP {target}"
    for n in itertools.count():
        if stop.is_set():
            return
        sid: list[str] = []
        if not await _guard(tally, f"{kind} initialize", _initialize(session, url, sid)):
            continue
        await _guard(tally, f"{kind} initialized", _notify(session, url, sid[0]))
        for call in range(calls):
            if target == "proxy":
                name, arguments, check = "echo", {"message": f"m{n}.{call}"}, f"m{n}.{call}"
            elif call % 2:
                name, arguments, check = "createItem", {"body": ITEM}, None
            else:
                name, arguments, check = "getItem", {"id": n % 1000}, None
            await _guard(
                tally,
                f"{kind} tools/call",
                _call(session, url, sid[0], n * 100 + call + 2, name, arguments, check),
            )
        await _guard(tally, f"{kind} DELETE", _delete(session, url, sid[0]))


def _headers(sid: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": ACCEPT}
    if sid is not None:
        headers["Mcp-Session-Id"] = sid
        headers["MCP-Protocol-Version"] = PROTOCOL
    return headers


async def _rpc(
    session: aiohttp.ClientSession, url: str, sid: str | None, message: dict[str, Any]
) -> tuple[aiohttp.ClientResponse, Any]:
    async with session.post(url, data=orjson.dumps(message), headers=_headers(sid)) as answer:
        data = await answer.read()
        _expect(answer.status, (200,), data)
        if answer.headers.get("Content-Type", "").startswith("text/event-stream"):
            # One JSON-RPC answer as an SSE event: its data line(s).
            data = b"".join(
                line[5:].strip() for line in data.splitlines() if line.startswith(b"data:")
            )
        try:
            reply = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise Failed("not JSON", data[:200].decode(errors="replace")) from exc
        if not isinstance(reply, dict) or "result" not in reply:
            raise Failed("JSON-RPC error", data[:200].decode(errors="replace"))
        return answer, reply["result"]


async def _initialize(session: aiohttp.ClientSession, url: str, sid: list[str]) -> None:
    params = {
        "protocolVersion": PROTOCOL,
        "capabilities": {},
        "clientInfo": {"name": "soak", "version": "1"},
    }
    message = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}
    answer, _ = await _rpc(session, url, None, message)
    token = answer.headers.get("Mcp-Session-Id")
    if not token:
        raise Failed("no Mcp-Session-Id")
    sid.append(token)


async def _notify(session: aiohttp.ClientSession, url: str, sid: str) -> None:
    message = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    async with session.post(url, data=orjson.dumps(message), headers=_headers(sid)) as answer:
        _expect(answer.status, (202,), await answer.read())


async def _call(
    session: aiohttp.ClientSession,
    url: str,
    sid: str,
    rid: int,
    name: str,
    arguments: dict[str, Any],
    check: str | None,
) -> None:
    params = {"name": name, "arguments": arguments}
    message = {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params}
    _, result = await _rpc(session, url, sid, message)
    if result.get("isError"):
        raise Failed("tool error", orjson.dumps(result)[:200].decode())
    if check is not None:
        content = result.get("content") or [{}]
        if content[0].get("text") != check:
            raise Failed("wrong answer", orjson.dumps(result)[:200].decode())


async def _delete(session: aiohttp.ClientSession, url: str, sid: str) -> None:
    async with session.delete(url, headers=_headers(sid)) as answer:
        _expect(answer.status, (200, 202, 204), await answer.read())
