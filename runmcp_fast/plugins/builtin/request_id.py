"""request-id: an id per request, kept from the client or made, sent upstream, echoed, and in
the access log. Its compiled step is in plugins/steps/request_id.pxi."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from msgspec import Meta

from runmcp_fast._dataplane import Step
from runmcp_fast.plugins._steps import RequestIdStep
from runmcp_fast.plugins.builtin.fields import TOKEN, doc, header_name_problems
from runmcp_fast.plugins.contract import BuildContext, Plugin, PluginError, Settings


class RequestIdSettings(Settings, frozen=True):
    header: Annotated[
        str, Meta(pattern=TOKEN), doc("The header carrying the id, upstream and back.")
    ] = "X-Request-Id"
    keep_incoming: Annotated[
        bool,
        doc(
            "Keep an id the client sent when it is valid (one field, 1 to max_length of"
            " letters, digits and -_.:+/=@); false: always make a new one."
        ),
    ] = True
    max_length: Annotated[int, Meta(ge=1, le=1024), doc("The longest incoming id kept.")] = 128
    echo: Annotated[bool, doc("Send the id back in the response (proxied or the gateway's).")] = (
        True
    )


class RequestId(Plugin):
    """An id for every request, in a header upstream and back, and in the access log."""

    name = "request-id"
    phase = "rewrite"
    priority = 9000  # after real-ip (10000): both before anything answers
    Config = RequestIdSettings
    scopes = frozenset({"global", "service", "operation"})
    summary = "X-Request-Id kept or made (per-process prefix + counter, in C), echoed and logged"

    def check(self, settings: Any) -> Iterator[PluginError]:
        yield from header_name_problems(settings.header, "/header", request=True)

    def step(self, settings: Any, context: BuildContext, *, fail_open: bool) -> Step:
        return RequestIdStep(
            settings.header,
            settings.keep_incoming,
            settings.echo,
            settings.max_length,
            priority=self.priority,
            fail_open=fail_open,
        )
