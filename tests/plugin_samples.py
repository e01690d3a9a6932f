"""Custom plugins for the plugin tests, loaded by name (`custom_plugins`)."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import msgspec


class TagConfig(msgspec.Struct, forbid_unknown_fields=True):
    value: str


class Tag:
    """Sends `X-Tag: <value>` upstream and echoes it on the response: which level won."""

    name = "tag"
    phase = "access"
    priority = 10  # after authentication (2500s), so a consumer's own can take its place
    Config = TagConfig

    def __init__(self, config: TagConfig) -> None:
        self.value = config.value

    def request(self, view: Any) -> None:
        view.set_header("X-Tag", self.value)
        view.vars["tag"] = self.value

    def response(self, view: Any, status: int, headers: list[tuple[str, str]]) -> None:
        headers.append(("X-Tag", view.vars.get("tag", "-")))


class Pause:
    """Holds every request until `Pause.release` is set (an asyncio.Event per loop)."""

    name = "pause"
    phase = "rewrite"
    entered: ClassVar[list[str]] = []
    release: ClassVar[asyncio.Event | None] = None

    async def request(self, view: Any) -> None:
        if Pause.release is None:
            Pause.release = asyncio.Event()
        Pause.entered.append(view.path)
        await Pause.release.wait()


class NotAPlugin:
    """No name, no phase: refused with a reason."""


class ShowClient:
    """Echoes what the data plane says of the request: `X-Seen-Client` (its client_ip) and
    `X-Seen-Preflight`, on every response of the route (the edge plugins' tests)."""

    name = "show-client"
    phase = "response_headers"
    priority = -100  # after every other response step

    def response(self, view: Any, status: int, headers: list[tuple[str, str]]) -> None:
        headers.append(("X-Seen-Client", view.client_ip))
        headers.append(("X-Seen-Request-Id", view.request_id or "-"))
        headers.append(("X-Seen-Preflight", "yes" if view.preflight else "no"))


class Later:
    """Lets the request go on after one turn of the event loop: a step that makes the
    chain wait (Wait), with nothing to wait for."""

    name = "later"
    phase = "rewrite"

    async def request(self, view: Any) -> None:
        await asyncio.sleep(0)
