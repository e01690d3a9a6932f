"""The node's agent process and its workers talk in JSON lines over a Unix socket.

agent -> worker:
    {"t": "state", "revision": R, "from_cache": bool}
                                         candidate.json holds revision R: serve it
                                         (from_cache: the disk cache's, not etcd's yet)
    {"t": "refused", "revision": R, "problems": [...]}
    {"t": "health", "connected": bool, "in_sync_at": float}
worker -> agent:
    {"t": "applied", "revision": R}
    {"t": "refused", "revision": R, "problems": [...]}

The state itself travels through the hand-off directory (the disk cache):
workers read candidate.json and the spec files beside it, so a 10 MB spec is
written once per node, not sent once per worker.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from runmcp_fast.problems import Problem

# A line is small (no config in it); a peer that sends more is broken.
MAX_LINE = 1024 * 1024


def problems_data(problems: list[Problem]) -> list[dict[str, str]]:
    return [
        {"file": p.file, "pointer": p.pointer, "message": p.message, "hint": p.hint}
        for p in problems[:50]
    ]


def problems_from(data: Any) -> list[Problem]:
    return [
        Problem(
            str(item.get("file", "")),
            str(item.get("pointer", "")),
            str(item.get("message", "")),
            str(item.get("hint", "")),
        )
        for item in data or []
        if isinstance(item, dict)
    ]


def send(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    if not writer.is_closing():
        writer.write(orjson.dumps(message) + b"\n")


async def receive(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next message, or None when the peer is gone."""
    try:
        line = await reader.readline()
    except (ConnectionError, ValueError):
        return None
    if not line:
        return None
    try:
        message = orjson.loads(line)
    except orjson.JSONDecodeError:
        return {}
    return message if isinstance(message, dict) else {}
