"""MCP protocol revisions and what each one means to an HTTP intermediary.

Revisions are an enumerated set, not an ordered scalar: they happen to be
dates, but a future identifier need not be, and a string a peer made up
("zzz", "2099-01-01") must not compare as newer than everything. Every
ordering question goes through `KNOWN_VERSIONS`, and an unknown version
answers every capability question with False (the conservative answer: no
batches, no trusted routing headers). This mirrors `mcp_types.version` of
the official SDK; the spec page behind each rule is cited where it is used.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "DEFAULT_VERSION_WITHOUT_HEADER",
    "FIRST_STATELESS_VERSION",
    "KNOWN_VERSIONS",
    "LATEST_VERSION",
    "allows_batch",
    "effective_version",
    "is_at_least",
    "is_known",
    "is_stateless",
    "validates_routing_headers",
]

KNOWN_VERSIONS: Final[tuple[str, ...]] = (
    "2024-11-05",  # HTTP+SSE transport (GET stream + `endpoint` event + POST endpoint)
    "2025-03-26",  # Streamable HTTP; JSON-RPC batches MUST be accepted
    "2025-06-18",  # batching removed; MCP-Protocol-Version header required
    "2025-11-25",  # SSE priming events, `retry`, 403 on a bad Origin
    "2026-07-28",  # stateless per-request envelope, Mcp-Method / Mcp-Name headers
)
"""Every released revision, oldest to newest."""

LATEST_VERSION: Final[str] = KNOWN_VERSIONS[-1]

DEFAULT_VERSION_WITHOUT_HEADER: Final[str] = "2025-03-26"
"""The revision a server assumes for a request without `MCP-Protocol-Version`.

2025-06-18 and 2025-11-25 transports.mdx, "Protocol Version Header": with no
header "and no other way to identify the version" (e.g. the version the
session negotiated in `initialize`), the server SHOULD assume 2025-03-26.
2026-07-28 keeps this as a MAY for servers that still serve pre-2025-06-18
clients; a modern-only server MUST reject the request instead.
"""

FIRST_STATELESS_VERSION: Final[str] = "2026-07-28"

_INDEX: Final[dict[str, int]] = {v: i for i, v in enumerate(KNOWN_VERSIONS)}

# 2025-03-26 basic/index.mdx "Batching": implementations MUST support
# receiving batches. 2024-11-05 never mentioned batches (its schema has no
# batch type, and the 2025-03-26 lifecycle page keeps `initialize` out of
# batches for "prior protocol versions that do not explicitly support JSON-RPC
# batches"); 2025-06-18 removed them ("Remove support for JSON-RPC batching",
# PR #416), and every later POST body "MUST be a single JSON-RPC" message.
_BATCH_VERSIONS: Final[frozenset[str]] = frozenset({"2025-03-26"})


def is_known(version: str) -> bool:
    """Whether `version` is one of `KNOWN_VERSIONS`."""
    return version in _INDEX


def is_at_least(version: str, minimum: str) -> bool:
    """Whether `version` is a known revision at least as new as `minimum`.

    An unknown `version` is never "at least" anything. `minimum` must be a
    known revision; anything else is a programming error (ValueError).
    """
    floor = _INDEX.get(minimum)
    if floor is None:
        raise ValueError(f"minimum must be one of {KNOWN_VERSIONS}, got {minimum!r}")
    index = _INDEX.get(version)
    return index is not None and index >= floor


def effective_version(header: str | None) -> str:
    """The revision to assume for a request whose `MCP-Protocol-Version` is `header`.

    An absent (or empty) header means `DEFAULT_VERSION_WITHOUT_HEADER`; any
    other value is returned as sent, known or not, for the caller to judge
    with `is_known` (servers answer an unsupported value with 400).
    """
    return header or DEFAULT_VERSION_WITHOUT_HEADER


def allows_batch(version: str) -> bool:
    """Whether a POST body may be a JSON-RPC batch (a JSON array) at `version`.

    Only 2025-03-26. Note that a request without `MCP-Protocol-Version` is
    2025-03-26 by default (`effective_version`), so batches are allowed there.
    """
    return version in _BATCH_VERSIONS


def is_stateless(version: str) -> bool:
    """Whether `version` uses the 2026-07-28 per-request envelope.

    Stateless revisions have no `initialize` handshake (`server/discover`
    instead), no `Mcp-Session-Id`, no GET stream (GET/DELETE answer 405), no
    resumption by `Last-Event-ID`, and no client-sent JSON-RPC responses.
    """
    return is_at_least(version, FIRST_STATELESS_VERSION)


def validates_routing_headers(version: str) -> bool:
    """Whether a server at `version` MUST check `Mcp-Method`/`Mcp-Name`/`Mcp-Param-*` against the body.

    From 2026-07-28 (streamable-http.mdx "Server Validation": a mismatch is
    400 with JSON-RPC error -32020 HeaderMismatch). Before that the headers do
    not exist, so an intermediary must not route or enforce policy on them:
    the spec says to reject rather than trust unvalidated mirrored headers.
    """
    return is_at_least(version, FIRST_STATELESS_VERSION)
