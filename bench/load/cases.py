"""The requests the load benchmark sends, and the bodies the upstream answers with.

The gateway routes by GitHub's REST API spec, so every request is a path that
spec has; the upstream nginx picks its answer by path (`/readme` gets 64 KB,
everything else 1 KB), so every peer gets the same bytes for the same request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

SMALL = 1024
BIG = 64 * 1024

# nginx refuses a config token longer than its 4 KB read buffer, so the 64 KB
# answer is a 2 KB variable repeated; see configs.upstream_nginx.
CHUNK = 2048
BIG_REPEATS = BIG // CHUNK


def _padded_json(size: int, fields: dict[str, object]) -> bytes:
    """A JSON object of exactly `size` bytes: `fields` plus a `pad` string."""
    empty = json.dumps({**fields, "pad": ""}, separators=(",", ":")).encode()
    body = json.dumps({**fields, "pad": "x" * (size - len(empty))}, separators=(",", ":"))
    encoded = body.encode()
    assert len(encoded) == size, len(encoded)
    return encoded


# What the upstream answers: an issue-like object, 1 KB.
SMALL_RESPONSE = _padded_json(SMALL, {"id": 42, "number": 42, "title": "Found a bug"})
# The 64 KB answer is CHUNK bytes of "y", BIG_REPEATS times (nginx builds it from a variable).
BIG_CHUNK = b"y" * CHUNK
BIG_RESPONSE = BIG_CHUNK * BIG_REPEATS

# The POST body: valid for GitHub's issues/create schema (title required), so a
# gateway that validates request bodies passes it on.
POST_BODY = _padded_json(
    SMALL,
    {"title": "Found a bug", "body": "I'm having a problem with this.", "labels": ["bug"]},
)


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    body: bytes  # request body, b"" for none
    response_size: int  # bytes of the upstream's answer body

    @property
    def label(self) -> str:
        return f"{self.name}: {self.method} {self.path}"


CASES: dict[str, Case] = {
    case.name: case
    for case in (
        Case("get-1k", "GET", "/repos/octocat/hello/issues/42", b"", SMALL),
        Case("get-64k", "GET", "/repos/octocat/hello/readme", b"", BIG),
        Case("post-1k", "POST", "/repos/octocat/hello/issues", POST_BODY, SMALL),
    )
}
