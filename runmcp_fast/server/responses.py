"""Responses the gateway writes itself: status lines and problem+json errors (RFC 9457).

Built once per status where possible; these are the slow paths (errors), but a
404 storm must not cost more than the request that caused it.
"""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus

import orjson

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
    body_fields: dict[str, object] = {
        "type": "about:blank",
        "title": title or reason_phrase(status),
        "status": status,
        "detail": detail,
    }
    if extra:
        body_fields.update(extra)
    body = orjson.dumps(body_fields)
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
