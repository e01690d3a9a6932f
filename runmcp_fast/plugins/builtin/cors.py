"""cors: preflights answered at the edge from the route's real methods, Allow-Origin on the
route's responses. Its compiled step is in plugins/steps/cors.pxi."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from runmcp_fast._dataplane import Step
from runmcp_fast.plugins._steps import CorsStep
from runmcp_fast.plugins.builtin.fields import TOKEN, doc, pointer
from runmcp_fast.plugins.contract import BuildContext, Plugin, PluginError, Settings

_TOKEN = re.compile(TOKEN)
_HOST = r"(?:[a-z0-9-]+(?:\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])"
_ORIGIN = re.compile(rf"[a-z][a-z0-9+.-]*://{_HOST}(?::[0-9]{{1,5}})?")
# A `*` for one or more whole labels at the start of the host, under at least two labels.
_PATTERN = re.compile(r"[a-z][a-z0-9+.-]*://\*\.[a-z0-9-]+(?:\.[a-z0-9-]+)+(?::[0-9]{1,5})?")


class CorsSettings(Settings, frozen=True):
    allow_origins: Annotated[
        list[str],
        doc(
            "Origins allowed: exact (https://app.example.com), a pattern whose `*` stands for"
            " leading labels of the host (https://*.example.com), `*` for any (never with"
            " credentials), or `null` (only ever allowed when listed)."
        ),
    ] = msgspec.field(default_factory=lambda: ["*"])
    allow_credentials: Annotated[
        bool,
        doc("Let browsers send cookies and Authorization (Access-Control-Allow-Credentials)."),
    ] = False
    allow_headers: Annotated[
        list[str] | None,
        doc(
            "Request headers a preflight allows (`*`: any, without credentials); null: those"
            " the preflight asks for (Access-Control-Request-Headers), echoed."
        ),
    ] = None
    expose_headers: Annotated[
        list[str], doc("Response headers scripts may read (Access-Control-Expose-Headers).")
    ] = msgspec.field(default_factory=list)
    max_age: Annotated[
        Annotated[int, Meta(ge=0)] | None,
        doc("Seconds a browser may cache a preflight's answer (null: no Access-Control-Max-Age)."),
    ] = 600


class Cors(Plugin):
    """Cross-origin requests from browsers: preflights answered here, Allow-Origin added."""

    name = "cors"
    phase = "access"
    priority = 3000  # after ip-restriction (3500), before authentication (2500s): a
    # preflight carries no credentials
    Config = CorsSettings
    scopes = frozenset({"global", "service", "operation"})
    summary = "CORS: preflights answered at the edge with the route's methods; origins exact, *.pattern or *"

    def check(self, settings: Any) -> Iterator[PluginError]:
        if not settings.allow_origins:
            yield PluginError(
                "no origins allowed",
                at="/allow_origins",
                hint="list them, e.g. [https://app.example.com], or leave the key out for `*`",
            )
        for index, origin in enumerate(settings.allow_origins):
            yield from _origin_problems(origin, pointer("allow_origins", index))
            if origin == "*" and settings.allow_credentials:
                yield PluginError(
                    "`*` with allow_credentials: browsers refuse a credentialed response to any origin",
                    at=pointer("allow_origins", index),
                    hint="list the origins (patterns like https://*.example.com work), or set"
                    " allow_credentials: false",
                )
        for key in ("allow_headers", "expose_headers"):
            for index, name in enumerate(getattr(settings, key) or ()):
                at = pointer(key, index)
                if name == "*":
                    if settings.allow_credentials:
                        yield PluginError(
                            "`*` with allow_credentials is the literal header name `*`",
                            at=at,
                            hint="list the headers"
                            + (
                                ", or leave allow_headers out to echo those asked for"
                                if key == "allow_headers"
                                else ""
                            ),
                        )
                elif not _TOKEN.match(name):
                    yield PluginError(
                        f"{name!r} is not a header name",
                        at=at,
                        hint="an RFC 9110 token: letters, digits and !#$%&'*+-.^_`|~",
                    )

    def step(self, settings: Any, context: BuildContext, *, fail_open: bool) -> Step:
        return CorsStep(
            settings.allow_origins,
            settings.allow_credentials,
            settings.allow_headers,
            settings.expose_headers,
            settings.max_age,
            priority=self.priority,
            fail_open=fail_open,
        )


def _origin_problems(origin: str, at: str) -> Iterator[PluginError]:
    if origin in ("*", "null") or _ORIGIN.fullmatch(origin) or _PATTERN.fullmatch(origin):
        return
    fixed = origin.strip().lower()
    scheme, sep, rest = fixed.partition("://")
    rest = rest.split("/", 1)[0] if sep else rest
    fixed = f"{scheme}://{rest}" if sep else fixed
    if fixed != origin and (_ORIGIN.fullmatch(fixed) or _PATTERN.fullmatch(fixed)):
        yield PluginError(
            f"{origin!r} is not an origin as browsers send it",
            at=at,
            hint=f"did you mean {fixed!r}? (scheme://host[:port], lower case, no path)",
        )
    elif "*" in origin:
        yield PluginError(
            f"{origin!r} is not an origin pattern",
            at=at,
            hint="a `*` stands for whole labels at the start of the host, under two or more:"
            " https://*.example.com (it never matches https://evil-example.com)",
        )
    else:
        yield PluginError(
            f"{origin!r} is not an origin",
            at=at,
            hint="scheme://host[:port] as browsers send it (https://app.example.com), `*` or `null`",
        )
