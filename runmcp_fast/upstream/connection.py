"""One keep-alive connection to an upstream: writes a request, parses the response.

The response is parsed with httptools' llhttp in strict mode and handed to the
bound client piece by piece (head, body chunks, end), so nothing is buffered
whole. Hop-by-hop headers are dropped here; framing (Content-Length or
chunked) is reported, and the client side decides how to frame it onward.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Protocol

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

if TYPE_CHECKING:
    from runmcp_fast.upstream.pool import Pool


class ResponseSink(Protocol):
    """The client side of an exchange, as the upstream connection sees it."""

    def response_head(
        self,
        status: int,
        reason: bytes,
        lines: list[bytes],
        content_length: int,
        chunked: bool,
        no_body: bool,
    ) -> None: ...
    def response_body(self, data: bytes) -> None: ...
    def response_complete(self) -> None: ...
    def response_failed(self, status: int, detail: str, retryable: bool) -> None: ...
    def response_flush(self) -> None: ...
    def upstream_write_paused(self, paused: bool) -> None: ...
    def tunnel_data(self, data: bytes) -> None: ...
    def tunnel_closed(self) -> None: ...


# Response headers that describe this hop only (RFC 9110 §7.6.1), by lower-case name.
_HOP_BY_HOP = frozenset(
    (
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    )
)
_CONNECTION = b"connection"
_CONTENT_LENGTH = b"content-length"
_TRANSFER_ENCODING = b"transfer-encoding"
_UPGRADE = b"upgrade"


class UpstreamConnection(asyncio.Protocol):
    # Per-connection state first, then per-exchange state (reset by `bind`).
    __slots__ = (
        "_chunked",
        "_connection_tokens",
        "_content_length",
        "_head_done",
        "_head_pending",
        "_junk",
        "_lines",
        "_no_body",
        "_reason",
        "_switching",
        "_upgrade_value",
        "bound_at_requests",
        "client",
        "closed",
        "deadline",
        "got_response",
        "head_request",
        "idle_since",
        "parser",
        "pool",
        "read_timeout",
        "reading_paused",
        "requests",
        "transport",
        "tunnel",
    )

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = HttpResponseParser(self)
        self.client: ResponseSink | None = None
        self.closed = False
        self.requests = 0  # responses completed on this connection
        self.idle_since = 0.0
        self.deadline = 0.0  # read deadline while bound; 0 when idle
        self.read_timeout = 0.0
        self.reading_paused = False
        self.tunnel = False
        self.head_request = False
        self.got_response = False
        self.bound_at_requests = 0
        self._reset_response()

    def _reset_response(self) -> None:
        self._lines: list[bytes] = []
        self._reason = b""
        self._content_length = -1
        self._chunked = False
        self._no_body = False
        self._head_done = False
        self._connection_tokens: list[bytes] | None = None
        self._upgrade_value = b""
        self._head_pending = False
        self._switching = False
        self._junk = False

    # -- used by the client side ------------------------------------------------

    def bind(
        self, client: ResponseSink, head_request: bool, read_timeout: float, now: float
    ) -> None:
        self.client = client
        self.head_request = head_request
        self.got_response = False
        self.read_timeout = read_timeout
        self.deadline = now + read_timeout
        self.bound_at_requests = self.requests

    @property
    def reused(self) -> bool:
        return self.bound_at_requests > 0

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None:
            transport.write(data)

    def pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()

    def abandon(self) -> None:
        """The client went away mid-exchange: this socket is out of sync, drop it."""
        self.client = None
        self.close()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()

    def timed_out(self) -> None:
        client = self.client
        self.client = None
        if client is not None:
            if self.got_response:
                client.response_failed(504, "the upstream stopped sending the response", False)
            else:
                client.response_failed(
                    504, f"no response from {self.pool.name} within {self.read_timeout:g} s", False
                )
            client.response_flush()
        if self.transport is not None:
            self.transport.abort()

    # -- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        client = self.client
        if client is None:
            # Bytes on an idle connection: the upstream is out of sync (or says
            # goodbye with a 408); never hand this socket out again.
            self.close()
            return
        if self.tunnel:
            client.tunnel_data(data)
            return
        self.got_response = True
        self.deadline = self.pool.clock.now + self.read_timeout
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade as exc:
            self._switch_to_tunnel(data[exc.args[0] :])
        except HttpParserError as exc:
            self._invalid(f"invalid response from {self.pool.name}: {_reason(exc)}")
        if self._head_pending and self.client is not None:
            keep_alive = self.parser.should_keep_alive() and not self._junk
            # The parser still expects the body a HEAD response never has.
            self.parser = HttpResponseParser(self)
            self._finish(keep_alive)
        client.response_flush()

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.connection_closed()
        client = self.client
        if client is None:
            return
        self.client = None
        if self.tunnel:
            client.tunnel_closed()
            return
        if self._head_done and self._content_length < 0 and not self._chunked and not self._no_body:
            # A body delimited by the end of the connection (HTTP/1.0 style) ends here.
            client.response_complete()
        elif not self.got_response:
            # Nothing came back: on a reused keep-alive socket this is the
            # classic race with the upstream's idle close, safe to retry.
            client.response_failed(
                502, f"{self.pool.name} closed the connection before responding", self.reused
            )
        else:
            client.response_failed(
                502, f"{self.pool.name} closed the connection mid-response", False
            )
        client.response_flush()

    def pause_writing(self) -> None:
        if self.client is not None:
            self.client.upstream_write_paused(True)

    def resume_writing(self) -> None:
        if self.client is not None:
            self.client.upstream_write_paused(False)

    # -- parser callbacks -----------------------------------------------------------

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        lname = name.lower()
        if lname in _HOP_BY_HOP:
            if lname == _TRANSFER_ENCODING:
                self._chunked = True  # llhttp accepts only chunked as the final coding
            elif lname == _CONNECTION:
                tokens = self._connection_tokens
                if tokens is None:
                    self._connection_tokens = tokens = []
                tokens.extend(t.strip().lower() for t in value.split(b","))
            elif lname == _UPGRADE:
                self._upgrade_value = value
            return
        if lname == _CONTENT_LENGTH:
            # llhttp has checked the digits and refused duplicates.
            self._content_length = int(value)
            return
        self._lines += (name, b": ", value, b"\r\n")

    def on_headers_complete(self) -> None:
        parser = self.parser
        status = parser.get_status_code()
        if status < 200 and status != 101:
            # 1xx interim responses (100 Continue, 103 Early Hints) end here; the
            # final response follows on the same parser.
            self._reset_response()
            return
        self._head_done = True
        client = self.client
        if client is None:
            return
        lines = self._lines
        tokens = self._connection_tokens
        if tokens:
            lines = _drop_named(lines, tokens)
        if status == 101:
            self._switching = True
            lines += (b"Upgrade: ", self._upgrade_value, b"\r\n", b"Connection: upgrade\r\n")
        no_body = self.head_request or status in (204, 304) or status == 101
        self._no_body = no_body
        client.response_head(
            status, self._reason, lines, self._content_length, self._chunked, no_body
        )
        if self.head_request:
            # llhttp would wait for a HEAD response's Content-Length bytes: end the
            # exchange once this buffer is parsed (see data_received).
            self._head_pending = True

    def on_body(self, data: bytes) -> None:
        if self._head_pending:
            self._junk = True  # a body after a HEAD response: out of sync
            return
        client = self.client
        if client is not None:
            client.response_body(data)

    def on_message_complete(self) -> None:
        if not self._head_done or self._head_pending or self._switching:
            return  # the end of a 1xx, or of a HEAD response finished after parsing
        self._finish(keep_alive=self.parser.should_keep_alive())

    # -- internals -----------------------------------------------------------------

    def _finish(self, keep_alive: bool) -> None:
        client = self.client
        self.client = None
        self.requests += 1
        self.deadline = 0.0
        self._reset_response()
        self.resume_reading()
        reusable = keep_alive and self.requests < self.pool.config.max_requests and not self.closed
        # Back to the pool first: the client's next pipelined request may want it.
        if reusable:
            self.pool.release(self)
        else:
            self.close()
        if client is not None:
            client.response_complete()

    def _invalid(self, detail: str) -> None:
        client = self.client
        self.client = None
        if client is not None:
            client.response_failed(502, detail, False)
        if self.transport is not None:
            self.transport.abort()

    def _switch_to_tunnel(self, rest: bytes) -> None:
        client = self.client
        if client is None or not self._head_done:
            self._invalid(f"{self.pool.name} switched protocols unasked")
            return
        self.tunnel = True
        self.deadline = 0.0
        if rest:
            client.tunnel_data(rest)


def _drop_named(lines: list[bytes], tokens: list[bytes]) -> list[bytes]:
    """Drop the headers named in `Connection` (they are hop-by-hop too)."""
    names = {t for t in tokens if t and t not in (b"close", b"keep-alive", b"upgrade")}
    if not names:
        return lines
    kept: list[bytes] = []
    for i in range(0, len(lines), 4):
        if lines[i].lower() not in names:
            kept += lines[i : i + 4]
    return kept


def _reason(exc: Any) -> str:
    text = str(exc)
    return text or type(exc).__name__
