"""Per-request state, and the checks a request head must pass before routing."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runmcp_fast.services import RouteTarget

# Methods a proxy may resend after a failure on a reused connection (RFC 9110 §9.2.2).
IDEMPOTENT = frozenset((b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"))


class Request:
    """One request on a client connection, from its first byte to its response's last."""

    __slots__ = (
        "body",
        "body_bytes",
        "body_sent",
        "buffered",
        "chunked",
        "close_after",
        "complete",
        "connection_tokens",
        "content_length",
        "discard",
        "expect_continue",
        "forwarded_for",
        "has_body",
        "head",
        "header_bytes",
        "header_count",
        "host",
        "http11",
        "is_head",
        "keep_alive",
        "limit",
        "lines",
        "local",
        "method",
        "replay",
        "retried",
        "started",
        "status",
        "target",
        "upgrade",
        "url",
        "via",
    )

    def __init__(self) -> None:
        self.method = b""
        self.url = b""
        self.host: bytes | None = None
        self.lines: list[bytes] = []  # (name, b": ", value, b"\r\n") per kept header
        self.header_count = 0
        self.header_bytes = 0
        self.content_length = -1
        self.chunked = False
        self.connection_tokens: list[bytes] | None = None
        self.forwarded_for: bytes | None = None
        self.via: bytes | None = None
        self.expect_continue = False
        self.upgrade: bytes | None = None
        self.keep_alive = True
        self.http11 = True
        self.is_head = False
        self.has_body = False
        self.target: RouteTarget | None = None
        self.local: bytes | None = None  # a response the gateway answers itself
        self.close_after = False
        self.head = b""  # the request head as sent upstream
        self.body: list[bytes] = []  # framed body pieces not yet sent upstream
        self.buffered = 0
        self.body_bytes = 0  # body bytes received from the client (unframed)
        self.body_sent = 0
        # Framed pieces already sent, kept while small so a retry can resend them.
        self.replay: list[bytes] | None = []
        self.retried = False
        self.complete = False
        self.discard = False
        self.limit = 0
        self.status = 0
        self.started = 0.0


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
