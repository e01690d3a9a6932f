"""The contracts the data plane calls, as types: what a handler, a validator, a verdict
and an MCP session hook must be for the compiled core (`_dataplane.pyx`) to use them.

The data plane reads these attributes and calls these methods and nothing
else; `_dataplane.pyi` types its constructors with them, so mypy checks every
implementation (validation/, mcp/, admin.py) against what the Cython reads.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, TypeAlias

if TYPE_CHECKING:
    from runmcp_fast._dataplane import LocalRequest, LocalStream

Headers: TypeAlias = Sequence[tuple[str, str]]
LocalAnswer: TypeAlias = tuple[int, Headers, bytes]
"""(status, headers, body): Content-Length and Connection are added by the data plane."""
LocalResponse: TypeAlias = "tuple[int, Headers, bytes | LocalStream]"
"""What a local handler answers; a LocalStream body is sent chunked, as it is written."""
Handler: TypeAlias = "Callable[[LocalRequest], LocalResponse | Awaitable[LocalResponse]]"
"""A local target's handler (`Target.local(handler=...)`)."""


class RouteOwner(Protocol):
    """Who serves a route: named in logs, the admin API and route conflicts."""

    @property
    def name(self) -> str: ...
    @property
    def label(self) -> str:
        """`tenant/name`, or `name` at the top level."""

    @property
    def tenant(self) -> str:
        """ "" at the top level."""


class Refusal(Protocol):
    """An answer made late, once `keep_alive` is known: a contract's or an envelope's."""

    @property
    def status(self) -> int:
        """The status of `response()`, once it is made."""

    def response(self, keep_alive: bool, head_only: bool) -> bytes:
        """The complete response (status line, headers, body)."""


class ByteChecker(Protocol):
    """A compiled schema run on raw bytes (`_fastcheck.Program`)."""

    def check(self, data: bytes) -> bool:
        """True: valid, forward it. False: not sure; the verdict's `finish` decides."""


class Verdict(Refusal, Protocol):
    """What a validator decided from a request head.

    With `body` None it is a refusal, answered at once (`response`). Otherwise
    the body is read whole and checked: by `program` (True: forward) and, when
    that does not settle it, by `finish` (None: forward, else the refusal).
    """

    @property
    def body(self) -> object | None: ...
    @property
    def program(self) -> ByteChecker | None: ...
    def finish(self, body: bytes) -> Refusal | None: ...


class Validator(Protocol):
    """A route's request check, run by the `ContractStep` of its chain."""

    enforce: bool
    """A request that could not be checked (the checker raised) is refused (500)."""
    max_body: int
    """Bodies checked are read whole: larger ones get 413."""

    @property
    def checked(self) -> int:
        """Requests seen: counted by the data plane on the fast path (an operation's
        `tally`), by `head` otherwise."""

    @property
    def fast_heads(self) -> Mapping[bytes, Verdict] | None:
        """Raw Content-Type -> its shared clean verdict, filled by `head`, read by the
        data plane with no Python call once the parameters passed (an operation's
        `plain_params`, checked in C, or none at all). None: always call `head`."""

    def head(
        self,
        url: bytes,
        path_params: Mapping[str, str] | None,
        lines: list[bytes] | None,
        content_type: bytes | None,
        has_body: bool,
    ) -> Verdict | None:
        """None: nothing to check, forward. `lines` are the kept header lines, four
        items per header (name, b": ", value, b"\\r\\n")."""


class BodyFilter(Protocol):
    """Rewrites an upstream body as it streams (the legacy MCP transport's endpoint, a
    tools/list answer). It may change the body's length: the data plane then drops the
    upstream's Content-Length and frames the body chunked (HTTP/1.0: to the close)."""

    def feed(self, data: bytes) -> bytes:
        """What to send now of `data` (possibly nothing: held)."""

    def flush(self) -> bytes:
        """At the body's end: whatever is still held."""


SessionDecision: TypeAlias = "int | tuple[int, bytes] | LocalAnswer | None"
"""None (any replica), the replica to pin to, (replica or -1, new request-target), or an
answer."""


class SessionHook(Protocol):
    """An MCP service's session routing, run by the `McpSessionStep` of its chain."""

    def request(
        self, method: bytes, url: bytes, host: bytes | None, lines: list[bytes] | None
    ) -> SessionDecision:
        """A request head: where it goes. It may rewrite a header value in `lines`."""

    def response(
        self, method: bytes, status: int, lines: list[bytes], pool: object, pin: int
    ) -> tuple[list[bytes] | None, bool, BodyFilter | None] | None:
        """An upstream response head: (new header lines or None, is an event stream,
        body filter or None), or None to leave it as it is."""

    def replica_gone(self, detail: str) -> LocalAnswer:
        """The answer for a request pinned to a replica that can not be reached."""


class PythonStep(Protocol):
    """A step written in Python (`PyStep(obj)`): any of `request`, `response`, `log`.

    See PyStep's docstring and docs/architecture.md for what each is given.
    """

    @property
    def name(self) -> str: ...
    @property
    def phase(self) -> str:
        """One of rewrite, access, contract, mcp, response_headers, log."""
