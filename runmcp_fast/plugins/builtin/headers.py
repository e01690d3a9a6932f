"""headers: add, set and remove request headers (sent upstream) and response headers per
route. Its two compiled steps are in plugins/steps/headers.pxi."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import msgspec

from runmcp_fast._dataplane import Step
from runmcp_fast.plugins._steps import HeadersRequestStep, HeadersResponseStep
from runmcp_fast.plugins.builtin.fields import (
    doc,
    header_name_problems,
    header_value_problems,
    pointer,
)
from runmcp_fast.plugins.contract import BuildContext, Plugin, PluginError, Settings


class HeaderChanges(Settings, frozen=True):
    remove: Annotated[list[str], doc("Headers removed (every field of each name).")] = (
        msgspec.field(default_factory=list)
    )
    set: Annotated[
        dict[str, str], doc("Headers set: any field of that name is replaced by this one.")
    ] = msgspec.field(default_factory=dict)
    add: Annotated[
        dict[str, str | list[str]],
        doc("Headers added beside any of the same name (a list: one field per value)."),
    ] = msgspec.field(default_factory=dict)


class HeadersSettings(Settings, frozen=True):
    request: Annotated[
        HeaderChanges | None,
        doc(
            "The request sent upstream, changed in the rewrite phase: every later step"
            " (authentication, the contract) sees the changed headers."
        ),
    ] = None
    response: Annotated[
        HeaderChanges | None,
        doc("The response head (the response_headers phase), proxied or the gateway's own."),
    ] = None


class Headers(Plugin):
    """Add, set and remove headers on the way upstream and on the way back."""

    name = "headers"
    phase = "rewrite"  # the request side; the response side is in response_headers
    priority = 8000  # after real-ip and request-id
    Config = HeadersSettings
    scopes = frozenset({"global", "service", "operation"})
    summary = "add / set / remove request and response headers, checked at config time"

    def check(self, settings: Any) -> Iterator[PluginError]:
        if settings.request is None and settings.response is None:
            yield PluginError(
                "give request, response or both",
                hint="e.g. response: {set: {Cache-Control: no-store}, remove: [Server]}",
            )
        for side in ("request", "response"):
            changes = getattr(settings, side)
            if changes is not None:
                yield from _problems(changes, side)

    def steps(self, settings: Any, context: BuildContext, *, fail_open: bool) -> tuple[Step, ...]:
        made: list[Step] = []
        if settings.request is not None:
            drop, add = _compiled(settings.request)
            made.append(HeadersRequestStep(drop, add, priority=self.priority, fail_open=fail_open))
        if settings.response is not None:
            drop, add = _compiled(settings.response)
            made.append(HeadersResponseStep(drop, add, fail_open=fail_open))
        return tuple(made)


def _compiled(changes: HeaderChanges) -> tuple[list[str], list[tuple[str, str]]]:
    """(names whose fields are dropped: removed and set; (name, value) appended: set, added)."""
    add = list(changes.set.items())
    for name, values in changes.add.items():
        add += [(name, v) for v in ([values] if isinstance(values, str) else values)]
    return [*changes.remove, *changes.set], add


def _problems(changes: HeaderChanges, side: str) -> Iterator[PluginError]:
    request = side == "request"
    seen: dict[str, str] = {}
    names: list[tuple[str, str]] = [
        (n, pointer(side, "remove", i)) for i, n in enumerate(changes.remove)
    ]
    names += [(n, pointer(side, "set", n)) for n in changes.set]
    names += [(n, pointer(side, "add", n)) for n in changes.add]
    for name, at in names:
        yield from header_name_problems(name, at, request=request)
        before = seen.get(name.lower())
        if before is not None:
            yield PluginError(
                f"{name} is named twice ({before} too)",
                at=at,
                hint="name each header once: remove, set (replace) or add",
            )
        seen[name.lower()] = at
    for name, value in changes.set.items():
        yield from header_value_problems(value, pointer(side, "set", name))
    for name, values in changes.add.items():
        if isinstance(values, str):
            yield from header_value_problems(values, pointer(side, "add", name))
        else:
            if not values:
                yield PluginError(
                    "no values", at=pointer(side, "add", name), hint="give one or more"
                )
            for index, value in enumerate(values):
                yield from header_value_problems(value, pointer(side, "add", name, index))
