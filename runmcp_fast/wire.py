"""HTTP bytes on the wire that the gateway writes or checks itself, in one place.

The checks a request head must pass before routing (the slow paths of a
miss), and the responses the gateway answers itself: status lines and
problem+json errors (RFC 9457). Built once per status where possible; these
are the slow paths (errors), but a 404 storm must not cost more than the
request that caused it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from http import HTTPStatus

import orjson

# -- checks on a request head ------------------------------------------------------------


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


# -- responses the gateway writes itself -----------------------------------------------


# b"HTTP/1.1 200 OK\r\n" for every status the stdlib knows; others get "Unknown".
_STATUS_LINES: dict[int, bytes] = {
    s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode("ascii") for s in HTTPStatus
}


def status_line(status: int, reason: bytes | None = None) -> bytes:
    """The status line for `status`, keeping the upstream's reason phrase when given."""
    if reason:
        return b"HTTP/1.1 %d %s\r\n" % (status, reason)
    line = _STATUS_LINES.get(status)
    if line is None:
        return b"HTTP/1.1 %d Unknown\r\n" % status
    return line


def reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def response(
    status: int,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    keep_alive: bool,
    head_only: bool = False,
) -> bytes:
    """A complete response the gateway answers itself (a local handler's, an MCP refusal).

    Content-Length and Connection are added here; a HEAD answer leaves the body out.
    """
    parts = [status_line(status)]
    parts.extend(f"{name}: {value}\r\n".encode("latin-1") for name, value in headers)
    if status >= 200 and status != 204 and status != 304:
        parts.append(b"Content-Length: %d\r\n" % len(body))
    parts.append(b"Connection: keep-alive\r\n" if keep_alive else b"Connection: close\r\n")
    parts.append(b"\r\n")
    if not head_only and body:
        parts.append(body)
    return b"".join(parts)


def problem_body(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    extra: dict[str, object] | None = None,
) -> bytes:
    """The RFC 9457 body: type, title, status, detail, then any extension members."""
    body_fields: dict[str, object] = {
        "type": "about:blank",
        "title": title or reason_phrase(status),
        "status": status,
        "detail": detail,
    }
    if extra:
        body_fields.update(extra)
    return orjson.dumps(body_fields)


def problem(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    keep_alive: bool = True,
    headers: tuple[tuple[str, str], ...] = (),
    head_only: bool = False,
    extra: dict[str, object] | None = None,
) -> bytes:
    """A complete `application/problem+json` response, ready to write."""
    body = problem_body(status, detail, title=title, extra=extra)
    lines = [
        status_line(status),
        b"Content-Type: application/problem+json\r\n",
        b"Content-Length: %d\r\n" % len(body),
        b"Connection: keep-alive\r\n" if keep_alive else b"Connection: close\r\n",
    ]
    lines.extend(f"{name}: {value}\r\n".encode("latin-1") for name, value in headers)
    lines.append(b"\r\n")
    if not head_only:
        lines.append(body)
    return b"".join(lines)


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def problem_answer(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
    extra: dict[str, object] | None = None,
) -> tuple[int, tuple[tuple[str, str], ...], bytes]:
    """A problem+json answer as a step or handler returns it: (status, headers, body).

    Made once, when a step is built; Content-Length and Connection are added
    when it is sent.
    """
    return (
        status,
        (("Content-Type", "application/problem+json"), *headers),
        problem_body(status, detail, title=title, extra=extra),
    )
