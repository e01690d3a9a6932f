"""Asking the router, before any route is added, whether it takes a spec's path templates.

The router's rules (docs/routing.md) are the only ones that count, so a
scratch `Router` judges each template instead of a copy of those rules here.
"""

from __future__ import annotations

import re

from runmcp_fast.router import RouteConflict, Router, TemplateError

_NAME = re.compile(r"\{([^{}/]*)\}")


def rename_repeats(path: str) -> str:
    """`/a/{x}/b/{x}` -> `/a/{x}/b/{x~2}`: the router takes a name once per template.

    OpenAPI does not forbid a repeated `{name}` (Azure's specs have them); the
    first occurrence is the parameter, the others route under a name of their own.
    """
    seen: dict[str, int] = {}

    def rename(m: re.Match[str]) -> str:
        name = m.group(1)
        seen[name] = seen.get(name, 0) + 1
        return m.group(0) if seen[name] == 1 else "{" + f"{name}~{seen[name]}" + "}"

    return _NAME.sub(rename, path) if path.count("{") > 1 else path


class TemplateCheck:
    """Remembers each template's verdict: many operations share a path."""

    __slots__ = ("_router", "_verdicts")

    def __init__(self) -> None:
        self._router = Router()
        self._verdicts: dict[str, str | None] = {}

    def refusal(self, template: str) -> str | None:
        """Why the router refuses `template`, or None when it takes it."""
        try:
            return self._verdicts[template]
        except KeyError:
            pass
        verdict: str | None = None
        try:
            self._router.add("GET", template, None)
        except TemplateError as exc:
            verdict = str(exc) or "refused"
        except RouteConflict:
            # `/a/{x}` after `/a/{y}`: a valid template; whether it is a real
            # conflict depends on the methods, which add_spec_routes judges.
            pass
        self._verdicts[template] = verdict
        return verdict
