"""The config store's errors, apart from the client: the admin API catches them
without importing aiohttp (a gateway without a store never loads it)."""

from __future__ import annotations


class EtcdError(Exception):
    """etcd answered with an error (not a transport failure)."""


class EtcdUnavailable(EtcdError):
    """No endpoint answered within the deadline.

    `maybe_applied`: a request reached a member and got no answer (a timeout, a
    dropped connection), so a write may have been committed all the same; False
    when no member could be reached at all, or every one said it can not serve.
    """

    def __init__(self, message: str, *, maybe_applied: bool = False) -> None:
        super().__init__(message)
        self.maybe_applied = maybe_applied


class CompactedError(EtcdError):
    """The revision asked for is compacted; `compact_revision` is the oldest kept."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"revision compacted (oldest kept: {compact_revision})")
        self.compact_revision = compact_revision


class PreconditionFailed(Exception):
    """If-Match named another revision than the object's."""

    def __init__(self, key: str, expected: int) -> None:
        super().__init__(f"{key} changed: it is no longer at revision {expected}")
        self.key = key
        self.expected = expected


def parse_if_match(header: str | None) -> int | None:
    """`"123"` -> 123; None when absent or `*`; -1 (never matches) when malformed."""
    if header is None or header.strip() == "*":
        return None
    tag = header.split(",")[0].strip().removeprefix("W/").strip('"')
    return int(tag) if tag.isdigit() else -1
