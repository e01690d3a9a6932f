"""Server-Sent Events: an incremental parser, an encoder, and the legacy endpoint rewriter.

The parser follows the WHATWG HTML "Interpreting an event stream" algorithm
(https://html.spec.whatwg.org/multipage/server-sent-events.html): lines end
in CRLF, LF or CR (a CRLF may be split across two feeds); one leading UTF-8
BOM is dropped; a line starting with ":" is a comment; a line without ":" is
a field with an empty value; one space after the colon is removed; `data`
lines are joined with "\\n"; an `id` containing NUL is ignored and the last
event ID persists across events; `retry` is taken only when all ASCII
digits; a block without any `data` line dispatches nothing; an unterminated
block at the end of the stream is dropped.

`EndpointRewriter` is a byte filter for the deprecated HTTP+SSE transport
(MCP 2024-11-05): the server's first event is `event: endpoint` whose data is
the URI the client must POST to, relative (`/messages/?session_id=<hex>` from
the Python SDK, `/messages?sessionId=<uuid>` from the TypeScript SDK) or
absolute. A gateway that mounts the server under another prefix or host has
to rewrite that URI; every other byte of the stream passes through unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final
from urllib.parse import parse_qs, urlsplit

import msgspec

__all__ = [
    "EndpointRewriter",
    "Event",
    "SseParser",
    "encode_event",
    "endpoint_session_id",
]

_BOM: Final = b"\xef\xbb\xbf"


class Event(msgspec.Struct, frozen=True, gc=False):
    """A dispatched event, as a browser's `MessageEvent` would see it.

    `event` is the type ("message" unless set); `id` is the last event ID in
    effect at dispatch (it persists across events, as `lastEventId` does;
    None if the stream never set one); `retry` is the reconnection time in
    milliseconds set by this event's block, if any.
    """

    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class SseParser:
    """Incremental `text/event-stream` parser: `feed(bytes) -> list[Event]`.

    `last_event_id` (what a reconnecting client sends as `Last-Event-ID`) and
    `retry` (the reconnection time, ms) are the stream's state, updated even
    by blocks that dispatch no event.
    """

    __slots__ = (
        "_data",
        "_event",
        "_pending",
        "_retry",
        "_skip_lf",
        "_started",
        "last_event_id",
        "retry",
    )

    def __init__(self) -> None:
        # Stream state.
        self.last_event_id: str | None = None
        self.retry: int | None = None
        # Per-block state: the event being built.
        self._data: list[str] = []
        self._event = ""
        self._retry: int | None = None
        # Per-feed state: an unterminated line, and a CR that may be half a CRLF.
        self._pending: list[bytes] = []
        self._skip_lf = False
        self._started = False  # past the (optional) BOM

    def feed(self, chunk: bytes) -> list[Event]:
        """Parse `chunk`; return the events it completes, in order."""
        if self._skip_lf and chunk:
            self._skip_lf = False
            if chunk[0] == 0x0A:
                chunk = chunk[1:]
        if b"\n" not in chunk and b"\r" not in chunk:
            # PERF: no line ends: keep the pieces, join once when one arrives.
            if chunk:
                self._pending.append(chunk)
            return []
        if self._pending:
            self._pending.append(chunk)
            chunk = b"".join(self._pending)
            self._pending.clear()
        lines = chunk.splitlines(keepends=True)
        last = lines[-1]
        if last[-1:] not in (b"\n", b"\r"):
            self._pending.append(lines.pop())
        elif last[-1:] == b"\r":
            self._skip_lf = True
        events: list[Event] = []
        for line in lines:
            self._line(line.rstrip(b"\r\n"), events)
        return events

    def _line(self, raw: bytes, events: list[Event]) -> None:
        if not self._started:
            self._started = True
            raw = raw.removeprefix(_BOM)
        if not raw:
            self._dispatch(events)
            return
        if raw[0] == 0x3A:  # ":" comment
            return
        line = raw.decode("utf-8", "replace")
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:  # an id with NUL is ignored
            self.last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = self.retry = int(value)

    def _dispatch(self, events: list[Event]) -> None:
        if self._data:
            events.append(
                Event(
                    "\n".join(self._data), self._event or "message", self.last_event_id, self._retry
                )
            )
            self._data = []
        self._event = ""
        self._retry = None


_LINE_BREAK: Final = re.compile(rb"\r\n|\r|\n")


def encode_event(
    data: str | bytes, *, event: str | None = None, id: str | None = None, retry: int | None = None
) -> bytes:
    """One SSE event: optional `event`/`id`/`retry` lines, one `data` line per line of `data`.

    Raises ValueError for an `event` or `id` with a line break (it would
    end the field early) or an `id` with NUL (receivers ignore such an id).
    """
    raw = data.encode() if isinstance(data, str) else data
    if b"\r" in raw or b"\n" in raw:
        body = b"".join(b"data: " + part + b"\n" for part in _LINE_BREAK.split(raw))
    else:
        body = b"data: " + raw + b"\n"
    head = b""
    if event is not None:
        head += b"event: " + _field_value("event", event) + b"\n"
    if id is not None:
        if "\0" in id:
            raise ValueError("an SSE `id` must not contain NUL")
        head += b"id: " + _field_value("id", id) + b"\n"
    if retry is not None:
        if retry < 0:
            raise ValueError("an SSE `retry` must be a non-negative integer")
        head += b"retry: %d\n" % retry
    return head + body + b"\n"


def _field_value(name: str, value: str) -> bytes:
    if "\r" in value or "\n" in value:
        raise ValueError(f"an SSE `{name}` must not contain a line break")
    return value.encode()


def endpoint_session_id(uri: str) -> str | None:
    """The session id in a legacy `endpoint` URI: `session_id` (Python SDK) or `sessionId` (TypeScript SDK)."""
    query = parse_qs(urlsplit(uri).query)
    for key in ("session_id", "sessionId"):
        values = query.get(key)
        if values:
            return values[0]
    return None


class EndpointRewriter:
    """Rewrite the `endpoint` event of a legacy HTTP+SSE stream, pass the rest through.

    Feed it the upstream's bytes as they arrive; forward what `feed` returns.
    While it looks for the endpoint event it holds back only the unterminated
    last line and the lines of the event block in progress (an event's type
    is known only when its block ends, since `event:` may follow `data:`);
    comments and complete other events are released as soon as they end.
    Once the endpoint event has been rewritten, or after `limit` bytes
    without one (it then gives up and releases what it holds, unchanged),
    `feed` returns its input as is: check `passthrough` to skip the call.

    The rewritten event keeps its other lines (`id:`, `retry:`, comments) and
    line endings; its data lines are replaced by one `data: <rewrite(uri)>`.
    """

    __slots__ = (
        "_block",
        "_data",
        "_event",
        "_pending",
        "_rewrite",
        "_scanned",
        "_skip_lf",
        "_started",
        "endpoint",
        "limit",
        "passthrough",
        "rewritten",
    )

    def __init__(self, rewrite: Callable[[str], str], *, limit: int = 8192) -> None:
        # Global state.
        self._rewrite = rewrite
        self.limit = limit
        self.passthrough = False
        self.endpoint: str | None = None  # the upstream's URI, once seen
        self.rewritten: str | None = None  # what the client was sent instead
        self._scanned = 0  # bytes fed while looking
        self._started = False  # past the first line (and its optional BOM)
        # Held bytes: an unterminated line, then the lines of the open block.
        self._pending = b""
        self._skip_lf = False  # the last line ended in CR: an LF next completes it
        self._block: list[tuple[bytes, bool]] = []  # (line with its line end, is a data line)
        self._data: list[str] = []
        self._event = ""

    def feed(self, chunk: bytes) -> bytes:
        """Return the bytes to forward now (possibly empty)."""
        if self.passthrough:
            return chunk
        self._scanned += len(chunk)
        data = self._pending + chunk if self._pending else chunk
        self._pending = b""
        base = self._scanned - len(data)  # stream offset of data[0]
        out: list[bytes] = []
        start = 0
        end = len(data)
        if self._skip_lf and end:
            self._skip_lf = False
            if data[0] == 0x0A:
                start = 1
                if self._block:  # its CR is held with the block: keep them together
                    line, is_data = self._block[-1]
                    self._block[-1] = (line + b"\n", is_data)
                else:
                    out.append(b"\n")
        limit = self.limit
        while start < end:
            cr = data.find(b"\r", start)
            lf = data.find(b"\n", start)
            if cr < 0 and lf < 0:
                break
            term = lf if cr < 0 or 0 <= lf < cr else cr
            # NOTE: a line counts as ending at its first line-end byte, which is
            # known whatever the chunking: the give-up point is deterministic.
            if base + term >= limit:
                out.append(self._give_up() + data[start:])
                return b"".join(out)
            if term == lf:
                stop = lf + 1
            elif cr + 1 == end:
                stop = end  # a CR last: a line end, and maybe half a CRLF
                self._skip_lf = True
            else:
                stop = cr + 2 if data[cr + 1] == 0x0A else cr + 1
            out.append(self._line(data[start:stop]))
            start = stop
            if self.rewritten is not None:  # the endpoint event was just rewritten
                out.append(data[start:])
                return b"".join(out)
        self._pending = data[start:]
        if base + end >= limit:  # no line that ends from here on can be looked at
            out.append(self._give_up())
        return b"".join(out)

    def flush(self) -> bytes:
        """At the end of the upstream stream: release whatever is held, unchanged."""
        return b"" if self.passthrough else self._give_up()

    def _give_up(self) -> bytes:
        held = b"".join(line for line, _ in self._block) + self._pending
        self._block.clear()
        self._pending = b""
        self.passthrough = True
        return held

    def _line(self, line: bytes) -> bytes:
        """Take one complete line (with its line end); return what may be released now."""
        text = line.rstrip(b"\r\n")
        if not self._started:
            self._started = True
            text = text.removeprefix(_BOM)
        if not text:  # a blank line ends the block
            return self._end_block(line)
        if text[0] == 0x3A:  # ":" comment: released unless it sits inside a block
            if not self._block:
                return line
            self._block.append((line, False))
            return b""
        name, colon, value = text.decode("utf-8", "replace").partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        self._block.append((line, name == "data"))
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return b""

    def _end_block(self, blank: bytes) -> bytes:
        block = self._block
        is_endpoint = self._event == "endpoint" and bool(self._data)
        uri = "\n".join(self._data)
        self._block = []
        self._data = []
        self._event = ""
        if not is_endpoint:
            return b"".join(line for line, _ in block) + blank
        new_uri = self._rewrite(uri)
        if "\r" in new_uri or "\n" in new_uri:
            raise ValueError(f"the rewritten endpoint URI contains a line break: {new_uri!r}")
        self.endpoint = uri
        self.rewritten = new_uri
        self.passthrough = True
        out: list[bytes] = []
        replaced = False
        for line, is_data in block:
            if not is_data:
                out.append(line)
            elif not replaced:
                replaced = True
                bom = _BOM if line.startswith(_BOM) else b""  # only the stream's first line
                out.append(bom + b"data: " + new_uri.encode() + line[len(line.rstrip(b"\r\n")) :])
        out.append(blank)
        return b"".join(out)
