"""Two custom plugins, as a team would write its own (docs/plugins.md, "Writing a plugin").

- `audit` (log phase, sync): one JSON line per exchange in a file: who called
  what, and the answer's status.
- `allowlist` (access phase, async): asks an allow list, here an in-process
  table standing in for a remote service, whether the consumer may call this
  route; refuses with 403 otherwise. It awaits, so only its routes await.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec


class AuditConfig(msgspec.Struct, forbid_unknown_fields=True):
    path: str  # the file the lines are appended to
    include_headers: list[str] = []  # request headers to record (lower case)


class Audit:
    """One JSON line per exchange: route, consumer, status."""

    name = "audit"
    phase = "log"
    Config = AuditConfig

    def __init__(self, config: AuditConfig) -> None:
        self.path = config.path
        self.headers = [h.lower() for h in config.include_headers]

    def log(self, view: Any, status: int) -> None:
        record = {
            "route": view.route,
            "service": view.service,
            "method": view.method,
            "path": view.path,
            "consumer": view.consumer,
            "status": status,
            **{h: view.header(h) for h in self.headers},
        }
        with open(self.path, "a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")


class AllowlistConfig(msgspec.Struct, forbid_unknown_fields=True):
    # consumer name -> the routes (operation ids) it may call; "*" for any.
    allow: dict[str, list[str]]
    # Stands in for the remote service being down: every lookup raises.
    unavailable: bool = False


class Allowlist:
    """Refuses a consumer the allow list does not name for this route (403)."""

    name = "allowlist"
    phase = "access"
    priority = 1000  # after authentication (2500s): the consumer is known
    Config = AllowlistConfig

    def __init__(self, config: AllowlistConfig) -> None:
        self.allow = {name: set(routes) for name, routes in config.allow.items()}
        self.unavailable = config.unavailable

    async def request(self, view: Any) -> tuple[int, tuple[tuple[str, str], ...], bytes] | None:
        routes = await self._lookup(view.consumer)
        if "*" in routes or view.route in routes:
            return None
        body = json.dumps({"error": f"{view.consumer} may not call {view.route}"}).encode()
        return 403, (("Content-Type", "application/json"),), body

    async def _lookup(self, consumer: str | None) -> set[str]:
        await asyncio.sleep(0)  # a real one would ask a service here
        if self.unavailable:
            raise ConnectionError("the allow list service is down")
        return self.allow.get(consumer or "", set())
