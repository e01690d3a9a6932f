"""Checks a request head must pass before routing (the slow paths of a miss)."""

from __future__ import annotations

import re

# Methods a proxy may resend after a failure on a reused connection (RFC 9110 §9.2.2).
IDEMPOTENT = frozenset((b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"))


# RFC 3986 host: reg-name or IP literal, optional port; ASCII only.
_HOST = re.compile(rb"(?:[A-Za-z0-9\-._~!$&'()*+,;=%]*|\[[0-9A-Fa-f:.]+\])(?::[0-9]*)?\Z")
_valid_hosts: dict[bytes, bool] = {}


def host_is_valid(host: bytes) -> bool:
    """A Host value a router and an upstream will read the same way (cached)."""
    known = _valid_hosts.get(host)
    if known is not None:
        return known
    valid = _HOST.match(host) is not None
    if len(_valid_hosts) >= 4096:
        _valid_hosts.clear()
    _valid_hosts[host] = valid
    return valid


_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_DOT_SEGMENT = re.compile(rb"(?:^|/)(?:\.|%2[eE]){1,2}(?:/|$)")


def path_problem(url: bytes) -> str | None:
    """Why the router can never match this path (answered 400, not 404), or None."""
    path = url.split(b"?", 1)[0].split(b"#", 1)[0]
    if _ESCAPE.search(path):
        return "the path has a '%' not followed by two hex digits"
    if _DOT_SEGMENT.search(path):
        return "the path has a '.' or '..' segment"
    if not path.startswith(b"/"):
        return "the request target must start with '/'"
    return None
