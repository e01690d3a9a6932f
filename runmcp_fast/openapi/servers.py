"""The path prefix every route of a spec gets: OpenAPI 3 `servers` or Swagger 2.0 `basePath`.

The gateway serves a spec's operations under the same paths the upstream
has, so only the path part of a server URL matters here; scheme and host
belong to the upstream's configuration.
"""

from __future__ import annotations

import re
from typing import Any

from runmcp_fast.openapi.pointers import join
from runmcp_fast.problems import ProblemLog, describe

_VARIABLE = re.compile(r"\{([^{}]*)\}")


def normalise(base_path: str) -> str:
    """`/v1/` and `v1` become `/v1`; `/` and `` become `` (no prefix)."""
    base_path = base_path.strip().rstrip("/")
    while base_path.startswith("./"):
        base_path = base_path[2:]
    if base_path in ("", "."):
        return ""
    return base_path if base_path.startswith("/") else "/" + base_path


def url_path(url: str) -> str:
    """The path part of an absolute (`https://h/v1`), network (`//h/v1`) or relative URL."""
    url = url.split("#", 1)[0].split("?", 1)[0]
    scheme_end = url.find("://")
    if scheme_end >= 0:
        rest = url[scheme_end + 3 :]
    elif url.startswith("//"):
        rest = url[2:]
    else:
        return normalise(url)
    slash = rest.find("/")
    return normalise(rest[slash:]) if slash >= 0 else ""


def servers_base_path(servers: Any, file: str, pointer: str, log: ProblemLog) -> str | None:
    """The base path from a `servers` list at `pointer`, or None when it gives none.

    None means "inherit": path-level and operation-level `servers` override the
    root's only when present and non-empty; at the root None means no prefix.
    Only the first server counts: it is the one clients use by default.
    """
    if servers is None:
        return None
    if not isinstance(servers, list):
        log.error(
            file,
            pointer,
            f"servers is {describe(servers)}, not a list",
            "write servers: [{url: https://api.example.com/v1}]",
        )
        return None
    if not servers:
        return None
    first = servers[0]
    at = join(pointer, 0)
    if not isinstance(first, dict) or not isinstance(first.get("url"), str):
        log.error(file, at, "server has no url", "give each server a url: https://host/base/path")
        return None
    url: str = first["url"]
    variables = first.get("variables")
    if not isinstance(variables, dict):
        variables = {}

    def default(match: re.Match[str]) -> str:
        var = variables.get(match.group(1))
        value = var.get("default") if isinstance(var, dict) else None
        # An unknown variable is left in place: harmless in the host, an error in the path.
        return match.group(0) if value is None else str(value)

    path = url_path(_VARIABLE.sub(default, url))
    missing = _VARIABLE.search(path)
    if missing:
        log.error(
            file,
            join(at, "url"),
            f"server variable '{missing.group(1)}' in the URL's path has no default",
            f"add variables: {{{missing.group(1)}: {{default: ...}}}} to this server",
        )
        return None
    return path


def swagger_base_path(spec: dict[str, Any], file: str, log: ProblemLog) -> str:
    """Swagger 2.0's `basePath`; it must start with `/`, but a missing slash is forgiven."""
    base = spec.get("basePath")
    if base is None:
        return ""
    if not isinstance(base, str):
        log.error(
            file, "/basePath", f"basePath is {describe(base)}, not a string", "write basePath: /api"
        )
        return ""
    if base and not base.startswith("/"):
        log.warning(file, "/basePath", f"basePath '{base}' does not start with '/'; one is added")
    return normalise(base)
