"""Tool authorization, the MCP side: what a gate decides, and how a tool list is filtered.

A `ToolGate` (the `mcp-authz` plugin's policy, plugins/builtin/mcp_authz.py)
decides whether the caller of a request may use a tool, from the tool's
name and annotations and from who the caller is. The gateway asks it in
three places, so that the tools a client is shown are exactly those it may
call:

- a generated endpoint or a federation (server.py) asks it for each tool it
  lists and before each call it makes: the route's step leaves the gate in
  the request's `vars` (`GATE_VAR`), which the handler reads from its
  `LocalRequest`;
- a proxied server's `tools/call` is decided by the step itself, before
  anything goes upstream;
- a proxied server's `tools/list` answer is rewritten on its way back by a
  `ToolsListFilter`: a JSON body read whole (it is one message), or an
  event stream whose answering event is rewritten as it passes (the other
  events are not held).

Annotations are hints (MCP tools.mdx): a missing one takes the spec's
default, `effective_hints`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol

from runmcp_fast import jsontext
from runmcp_fast.mcp import jsonrpc, sse

if TYPE_CHECKING:
    from runmcp_fast._dataplane import LocalRequest

__all__ = [
    "GATE_VAR",
    "HINT_NAMES",
    "MAX_LIST_BYTES",
    "ChainedFilter",
    "Hints",
    "ToolGate",
    "ToolsListFilter",
    "effective_hints",
]

GATE_VAR: Final = "mcp.authz"
"""The key of `vars` (the request's, the LocalRequest's) that holds the route's ToolGate."""

MAX_LIST_BYTES: Final = 8 * 1024 * 1024
"""A tools/list answer (or one event of a stream) larger than this is not filtered but
replaced by a JSON-RPC error: refused tools are never passed on unfiltered."""

HINT_NAMES: Final = ("readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint")

Hints = tuple[bool, bool, bool, bool]
"""A tool's annotations as they count: (readOnly, destructive, idempotent, openWorld)."""


def effective_hints(annotations: object) -> Hints:
    """A tool's `annotations` with the spec's defaults: readOnlyHint false, destructiveHint
    true, idempotentHint false, openWorldHint true. destructiveHint and idempotentHint
    mean something only when readOnlyHint is false: a read-only tool is neither
    destructive nor (as far as rules go) idempotent unless it says so."""
    given: Mapping[str, Any] = annotations if isinstance(annotations, Mapping) else {}

    def flag(name: str, default: bool) -> bool:
        value = given.get(name)
        return value if isinstance(value, bool) else default

    read_only = flag("readOnlyHint", False)
    destructive = False if read_only else flag("destructiveHint", True)
    return read_only, destructive, flag("idempotentHint", False), flag("openWorldHint", True)


class ToolGate(Protocol):
    """What a generated endpoint or a federation asks before it lists or calls a tool."""

    def allows(self, request: LocalRequest, name: str, annotations: object) -> bool:
        """Whether the caller of `request` may see and call tool `name` (with `annotations`,
        its `annotations` member: a dict, or None)."""

    def refusal(self, name: str) -> tuple[int, str, dict[str, Any]]:
        """(JSON-RPC code, message, data) of the error a refused call gets; counts it."""


class ToolsListFilter:
    """A proxied `tools/list` answer with the tools `keep` refuses taken out.

    `ids` are the ids of the tools/list requests the body answers (a batch
    may hold several); None means any answer that carries a tool list (an
    event stream opened by GET, where answers may be replayed). As a JSON
    body (`stream` false) it is read whole and rewritten at `flush`; as an
    event stream, each event is looked at when it is complete and the
    answering one rewritten; once every id is answered the rest passes as
    it comes. Whatever can not be read (not JSON, too large) is replaced by
    a JSON-RPC error for those ids: a refused tool is never let through.
    """

    __slots__ = ("_held", "_ids", "_keep", "_size", "_skipping", "_stream", "passthrough")

    def __init__(
        self, ids: Collection[object] | None, keep: Callable[[dict[str, Any]], bool], stream: bool
    ) -> None:
        self._ids: set[object] | None = set(ids) if ids is not None else None
        self._keep = keep
        self._stream = stream
        self._held: list[bytes] = []
        self._size = 0
        self._skipping = False  # the rest of an oversized event is dropped
        self.passthrough = False

    def feed(self, data: bytes) -> bytes:
        if self.passthrough:
            return data
        if not self._stream:
            if self._skipping:
                return b""  # the rest of a body replaced by an error
            self._held.append(data)
            self._size += len(data)
            if self._size > MAX_LIST_BYTES:
                self._held = []
                self._skipping = True
                return self._errors(drop_rest=True)
            return b""
        self._held.append(data)
        self._size += len(data)
        return self._events()

    def flush(self) -> bytes:
        if self._stream:
            rest = b"".join(self._held)
            self._held = []
            return b"" if self._skipping else rest  # an unterminated last event, as it came
        if self.passthrough or self._skipping:
            return b""
        body = b"".join(self._held)
        self._held = []
        self.passthrough = True
        try:
            message = jsontext.loads(body)
        except ValueError:
            return self._errors()
        if not self._filter(message):
            return body  # nothing to take out: the upstream's bytes
        return jsontext.dumps(message)

    # -- internals -----------------------------------------------------------------------

    def _events(self) -> bytes:
        data = b"".join(self._held) if len(self._held) > 1 else self._held[0]
        self._held = []
        out: list[bytes] = []
        start = 0
        for match in _EVENT_END.finditer(data):
            end = match.end()
            block = data[start:end]
            start = end
            if self._skipping:
                # The end of the event replaced by an error: it answered every id.
                self._skipping = False
                if self._ids is not None:
                    self.passthrough = True
                    out.append(data[start:])
                    return b"".join(out)
                continue
            out.append(self._event(block))
            if self.passthrough:
                out.append(data[start:])
                return b"".join(out)
        rest = data[start:]
        if len(rest) > MAX_LIST_BYTES:
            if not self._skipping:
                out.append(self._errors(drop_rest=True))
            self._skipping = True
            rest = b""
        if rest:
            self._held.append(rest)
            self._size = len(rest)
        else:
            self._size = 0
        return b"".join(out)

    def _event(self, block: bytes) -> bytes:
        if b'"tools"' not in block:
            return block  # PERF: not an answer with a tool list: no parsing
        lines = _LINE.split(block)
        data = [ln[5:].removeprefix(b" ") for ln in lines if ln.startswith(b"data:")]
        if not data:
            return block
        try:
            message = jsontext.loads(b"\n".join(data))
        except ValueError:
            return block
        if not self._filter(message):
            return block
        kept = [ln for ln in lines if ln and not ln.startswith(b"data:")]
        head = b"".join(ln + b"\n" for ln in kept if not ln.startswith(b":"))
        return head + sse.encode_event(jsontext.dumps(message))

    def _filter(self, message: object) -> bool:
        """Take refused tools out of the answers in `message`; whether it changed."""
        changed = False
        for answer in message if isinstance(message, list) else (message,):
            if not isinstance(answer, dict):
                continue
            result = answer.get("result")
            if not isinstance(result, dict) or not isinstance(result.get("tools"), list):
                continue
            if self._ids is not None:
                answer_id = answer.get("id")
                if answer_id not in self._ids:
                    continue
                self._ids.discard(answer_id)
                if not self._ids:
                    self.passthrough = True
            tools = result["tools"]
            kept = [t for t in tools if isinstance(t, dict) and self._keep(t)]
            if len(kept) != len(tools):
                result["tools"] = kept
                changed = True
        return changed

    def _errors(self, drop_rest: bool = False) -> bytes:
        """The answer when the tool list can not be filtered: an error per id."""
        error = (jsonrpc.INTERNAL_ERROR, "the tool list is too large or unreadable to filter")
        ids = sorted(self._ids or (None,), key=repr)
        if not drop_rest:
            self.passthrough = self._ids is not None
        bodies = [jsonrpc.encode_error(i, *error) for i in ids]  # type: ignore[arg-type]
        if self._stream:
            return b"".join(sse.encode_event(b) for b in bodies)
        return bodies[0] if len(bodies) == 1 else b"[" + b",".join(bodies) + b"]"


# An event ends at a blank line: a line end right after a line end. Atomic groups, so
# that the two bytes of one CRLF never count as two line ends.
_EVENT_END: Final = re.compile(rb"(?>\r\n|\r|\n)(?>\r\n|\r|\n)")
_LINE: Final = re.compile(rb"\r\n|\r|\n")


class ChainedFilter:
    """Two body filters, one after the other (the legacy endpoint's, then the list's)."""

    __slots__ = ("_first", "_second")

    def __init__(self, first: Any, second: Any) -> None:
        self._first = first
        self._second = second

    def feed(self, data: bytes) -> bytes:
        return self._second.feed(self._first.feed(data))  # type: ignore[no-any-return]

    def flush(self) -> bytes:
        return self._second.feed(self._first.flush()) + self._second.flush()  # type: ignore[no-any-return]
