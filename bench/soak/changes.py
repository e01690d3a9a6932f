"""Live config changes through the admin API, one every `interval` seconds.

The changes go round a cycle, on a service `churn-K` (K counts up, so every round
adds a service the gateway has never seen):

1. add: `PUT /admin/services/churn-K`, a prefix service (201); then a request
   through the gateway to `/churn-K/ping` must get 200;
2. replace: `PUT` again with an inline OpenAPI spec under `base_path: /churn-K`
   (its routes replace the prefix route; 200); `/churn-K/things/1` must get 200;
3. plugin: `PATCH /admin/services/api`, the `headers` plugin's response header
   `X-Soak-Gen` set to a new value (a new step config every time);
4. delete: `DELETE /admin/services/churn-K`; `/churn-K/things/1` must get 404.

A check polls (every 50 ms, at most `CHECK_SECONDS`): with several workers another
worker applies the change from the state file within its `watch_interval`.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import aiohttp
import orjson
from clients import Tally

CHECK_SECONDS = 10.0
SPEC = {
    "openapi": "3.0.3",
    "info": {"title": "churn", "version": "1"},
    "paths": {
        "/things/{id}": {
            "get": {
                "operationId": "getThing",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
                ],
                "responses": {"200": {"description": "ok"}},
            }
        }
    },
}


class Changer:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        admin: str,
        token: str,
        gateway: str,
        upstream: str,
        tally: Tally,
    ) -> None:
        self.session = session
        self.admin = admin
        self.gateway = gateway
        self.upstream = upstream
        self.tally = tally
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.generation = 0

    async def run(self, interval: float, stop: asyncio.Event, first: int = 0) -> None:
        steps = (self.add, self.replace, self.plugin, self.delete)
        tick = time.monotonic()
        for index in itertools.count():
            tick += interval
            try:
                await asyncio.wait_for(stop.wait(), max(0.0, tick - time.monotonic()))
                return
            except TimeoutError:
                pass
            number = first + index // len(steps)
            step = steps[index % len(steps)]
            try:
                await step(f"churn-{number}")
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                self.tally.fail(f"change {step.__name__}", type(exc).__name__, str(exc))

    async def _admin(self, method: str, path: str, body: dict[str, Any] | None) -> int:
        data = orjson.dumps(body) if body is not None else None
        async with self.session.request(
            method, f"{self.admin}{path}", data=data, headers=self.headers
        ) as answer:
            text = await answer.read()
            if answer.status >= 300:
                self.tally.fail(
                    f"change {method}", f"status {answer.status}", text.decode(errors="replace")
                )
            return answer.status

    async def _served(self, kind: str, path: str, status: int) -> None:
        """Poll `path` through the gateway until it answers `status` (bounded)."""
        deadline = time.monotonic() + CHECK_SECONDS
        last = 0
        while time.monotonic() < deadline:
            async with self.session.get(f"{self.gateway}{path}") as answer:
                await answer.read()
                last = answer.status
            if last == status:
                self.tally.ok(f"check {kind}")
                return
            await asyncio.sleep(0.05)
        self.tally.fail(f"check {kind}", f"still {last}", f"{path}: wanted {status}")

    async def add(self, name: str) -> None:
        body = {"upstream": self.upstream, "prefix": f"/{name}"}
        if await self._admin("PUT", f"/admin/services/{name}", body) == 201:
            self.tally.ok("change add")
            await self._served("add", f"/{name}/ping", 200)

    async def replace(self, name: str) -> None:
        body = {"upstream": self.upstream, "openapi": SPEC, "base_path": f"/{name}"}
        if await self._admin("PUT", f"/admin/services/{name}", body) == 200:
            self.tally.ok("change replace")
            await self._served("replace", f"/{name}/things/1", 200)

    async def plugin(self, _name: str) -> None:
        self.generation += 1
        plugins = {"headers": {"response": {"set": {"X-Soak-Gen": str(self.generation)}}}}
        if await self._admin("PATCH", "/admin/services/api", {"plugins": plugins}) == 200:
            self.tally.ok("change plugin")

    async def delete(self, name: str) -> None:
        if await self._admin("DELETE", f"/admin/services/{name}", None) in (200, 204):
            self.tally.ok("change delete")
            await self._served("delete", f"/{name}/things/1", 404)
