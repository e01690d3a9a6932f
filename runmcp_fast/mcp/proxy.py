"""Proxying MCP servers (service kind `mcp`): sessions pinned to replicas, envelopes checked.

The data plane does the moving (requests and responses stream through it,
event streams unbuffered and exempt from the read timeout); this module
decides, through two steps of each of the service's routes (see hooks.py):

- `SessionRouter` (a `SessionHook`, run by the chain's `McpSessionStep`)
  sees each request head: it checks `Origin`,
  opens the sealed `Mcp-Session-Id` (or the legacy transport's `session_id`
  query parameter) to pin the request to its replica with that replica's own
  id, and sees each response head: it seals a new session id, marks event
  streams, and for the legacy HTTP+SSE transport rewrites the `endpoint`
  event to the gateway's own URL.
- `EnvelopeGuard` (a `Validator`, run by a `ContractStep` in the mcp phase)
  checks each POST body's JSON-RPC
  envelope before it goes upstream (see jsonrpc.check_envelope); the body is
  forwarded byte for byte.
"""

from __future__ import annotations

import base64
import binascii
from array import array
from collections.abc import Sequence
from urllib.parse import parse_qsl, urlsplit

from runmcp_fast.mcp import _envelope, jsonrpc, sse, versions
from runmcp_fast.mcp.affinity import MAX_ID, SessionCodec
from runmcp_fast.wire import response

LocalAnswer = tuple[int, tuple[tuple[str, str], ...], bytes]

_JSON = (("Content-Type", "application/json"),)
HEADER_MISMATCH = -32020  # 2026-07-28: a routing header disagrees with the body


def rpc_error(status: int, code: int, message: str) -> LocalAnswer:
    """A whole answer: HTTP `status` with a JSON-RPC error body that has no id."""
    return status, _JSON, jsonrpc.encode_error(None, code, message)


_POST_METHOD = b"POST"
_GET_METHOD = b"GET"
_DELETE_METHOD = b"DELETE"
_SESSION_HEADER = b"mcp-session-id"
_ORIGIN_HEADER = b"origin"


def header_value(lines: list[bytes] | None, name: bytes) -> bytes | None:
    """A request header's value among the data plane's kept lines (4 items per header)."""
    if lines is None:
        return None
    for i in range(0, len(lines), 4):
        if lines[i].lower() == name:
            return lines[i + 2]
    return None


class OriginPolicy:
    """Which `Origin`s may call: listed ones, any with `*`, or with no list the Host named.

    The spec asks servers to check Origin against DNS rebinding; a request
    without one (not a browser) is not affected.
    """

    __slots__ = ("_origins", "any_origin")

    def __init__(self, allowed: Sequence[str]) -> None:
        self.any_origin = "*" in allowed
        self._origins = frozenset(o.rstrip("/").lower().encode("latin-1") for o in allowed)

    def allows(self, origin: bytes, host: bytes | None) -> bool:
        if self.any_origin:
            return True
        value = origin.strip().rstrip(b"/").lower()
        if value in self._origins:
            return True
        if self._origins or host is None:
            return False
        _, sep, authority = value.partition(b"://")
        return bool(sep) and authority == host.lower()


class SessionRouter:
    """One MCP service's session routing, Origin check and response rewriting.

    `replicas` are the upstream URLs in the order of the Target's pools;
    `pools` the pools themselves, to know which replica answered an
    `initialize`. `legacy_messages` is the gateway path the legacy transport's
    POSTs come to (None for Streamable HTTP).
    """

    __slots__ = (
        "_codec",
        "_origins",
        "_pools",
        "_replica_hosts",
        "_upstream_path",
        "legacy_messages",
        "service",
    )

    def __init__(
        self,
        service: str,
        codec: SessionCodec,
        pools: Sequence[object],
        replicas: Sequence[str],
        allowed_origins: Sequence[str],
        legacy_messages: str | None = None,
        upstream_path: str | None = None,
    ) -> None:
        self.service = service
        self._codec = codec
        self._pools = tuple(pools)
        self._replica_hosts = tuple(urlsplit(url).netloc.lower() for url in replicas)
        self._origins = OriginPolicy(allowed_origins)
        self.legacy_messages = legacy_messages.encode("ascii") if legacy_messages else None
        # The upstream's own endpoint path, when it is not the path clients use.
        self._upstream_path = upstream_path.encode("ascii") if upstream_path is not None else None

    # -- requests --------------------------------------------------------------------

    def request(
        self, method: bytes, url: bytes, host: bytes | None, lines: list[bytes] | None
    ) -> int | tuple[int, bytes] | LocalAnswer | None:
        """None (any replica), the session's replica, (replica, new target), or an answer."""
        origin = header_value(lines, _ORIGIN_HEADER)
        if origin is not None and not self._origins.allows(origin, host):
            return rpc_error(403, jsonrpc.INVALID_REQUEST, "this Origin is not allowed")
        if self.legacy_messages is not None and method == _POST_METHOD:
            return self._legacy_post(url)
        token = header_value(lines, _SESSION_HEADER)
        replica = -1
        if token is not None:
            token = token.strip()
            opened = self._codec.open(token)
            if opened is None:
                return rpc_error(404, jsonrpc.INVALID_REQUEST, "session not found")
            if method == _DELETE_METHOD:
                self._codec.forget(token)  # the session ends: no need to remember it
            replica, upstream_id = opened
            assert lines is not None
            for i in range(0, len(lines), 4):
                if lines[i].lower() == _SESSION_HEADER:
                    lines[i + 2] = upstream_id
        if self._upstream_path is not None:
            _, sep, query = url.partition(b"?")
            return replica, self._upstream_path + sep + query
        return replica if replica >= 0 else None

    def fast_tables(
        self,
    ) -> tuple[dict[bytes, tuple[int, bytes]], dict[tuple[int, bytes], bytes]] | None:
        """The codec's opened and sealed ids, for the data plane's McpSessionStep to
        decide a known session's requests and responses itself; None where every
        request must come here (the legacy transport, an upstream path to rewrite)."""
        if self.legacy_messages is not None or self._upstream_path is not None:
            return None
        return self._codec.tables()

    def _legacy_post(self, url: bytes) -> tuple[int, bytes] | LocalAnswer:
        path, _, query = url.partition(b"?")
        if path.rstrip(b"/") != self.legacy_messages:
            return rpc_error(404, jsonrpc.INVALID_REQUEST, "POST messages to the endpoint given")
        token = None
        for name, value in parse_qsl(query.decode("latin-1")):
            if name in ("session_id", "sessionId"):
                token = value.encode("latin-1")
        if token is None:
            return rpc_error(400, jsonrpc.INVALID_REQUEST, "the session_id parameter is missing")
        opened = self._codec.open(token)
        if opened is None:
            return rpc_error(404, jsonrpc.INVALID_REQUEST, "session not found")
        replica, upstream_target = opened
        return replica, upstream_target

    def replica_gone(self, detail: str) -> LocalAnswer:
        """The answer for a session whose replica can not be reached: start again."""
        return rpc_error(404, jsonrpc.INVALID_REQUEST, "session not found: its server is gone")

    # -- responses -------------------------------------------------------------------

    def response(
        self, method: bytes, status: int, lines: list[bytes], pool: object, pin: int
    ) -> tuple[list[bytes] | None, bool, sse.EndpointRewriter | None] | None:
        """(new header lines or None, is an event stream, body filter or None)."""
        head = b"".join(lines)
        lower = head.lower()
        stream = b"text/event-stream" in lower and _has_header_value(
            lower, b"content-type:", b"text/event-stream"
        )
        new_head = head
        start = _find_header(lower, b"mcp-session-id:")
        if start >= 0:
            colon = start + len(b"mcp-session-id:")
            end = head.index(b"\r\n", colon)
            upstream_id = head[colon:end].strip()
            replica = pin if pin >= 0 else self._replica_of(pool)
            if len(upstream_id) > MAX_ID:
                # Too long to seal: withheld (the line dropped), never passed on raw (a
                # failed step sent the head as it was: the replica's own id, which then
                # opened nowhere).
                new_head = head[:start] + head[end + 2 :]
            else:
                token = self._codec.seal_once(replica, upstream_id)
                if method == _DELETE_METHOD:
                    # The session ended (replicas repeat its id on the answer): sealed
                    # again, it would stay remembered until the tables' limit.
                    self._codec.forget(token)
                new_head = head[:colon] + b" " + token + head[end:]
        body_filter = None
        if stream and self.legacy_messages is not None and method == _GET_METHOD:
            replica = pin if pin >= 0 else self._replica_of(pool)
            body_filter = sse.EndpointRewriter(self._endpoint_rewriter(replica))
        if _find_header(lower, b"x-accel-buffering:") >= 0:
            return [new_head], stream, body_filter
        return [new_head, b"X-Accel-Buffering: no\r\n"], stream, body_filter

    def _replica_of(self, pool: object) -> int:
        for i, candidate in enumerate(self._pools):
            if candidate is pool:
                return i
        return 0

    def _endpoint_rewriter(self, replica: int):  # type: ignore[no-untyped-def]
        codec = self._codec
        messages = self.legacy_messages
        hosts = self._replica_hosts

        def rewrite(uri: str) -> str:
            parts = urlsplit(uri)
            if parts.netloc and parts.netloc.lower() != hosts[replica]:
                raise ValueError(f"the endpoint {uri!r} is on another server")
            target = parts.path or "/"
            if parts.query:
                target += "?" + parts.query
            token = codec.seal(replica, target.encode("latin-1"))
            assert messages is not None
            return f"{messages.decode('ascii')}?session_id={token.decode('ascii')}"

        return rewrite


def _find_header(lower_head: bytes, name: bytes) -> int:
    """Where header `name` (lower case, with its colon) starts in a head, or -1."""
    if lower_head.startswith(name):
        return 0
    at = lower_head.find(b"\n" + name)
    return at + 1 if at >= 0 else -1


def _has_header_value(lower_head: bytes, name: bytes, value: bytes) -> bool:
    start = _find_header(lower_head, name)
    if start < 0:
        return False
    end = lower_head.find(b"\r\n", start)
    return value in lower_head[start + len(name) : end if end >= 0 else None]


class EnvelopeVerdict:
    """A POST body to check (shared), or the refusal of one (made per refusal)."""

    __slots__ = ("allow_batch", "answer", "body", "fast", "program", "status", "valid")

    def __init__(self, allow_batch: bool, answer: LocalAnswer | None = None) -> None:
        self.allow_batch = allow_batch
        self.answer = answer
        # The data plane's first try (body -> Envelope, or None: call `check`): what
        # `check` decides for a single message, in C (a capsule of the C function, the
        # data plane calls it directly; it also takes a Python callable here). Not for
        # a subclass's own rules.
        self.fast = (
            _envelope.CHECK_SINGLE
            if not allow_batch and answer is None and type(self) is EnvelopeVerdict
            else None
        )
        # With `fast`: whether the body is one `fast` accepts, and nothing made of it (a
        # capsule of the C function), for a route none of whose steps reads the
        # Envelope; a body it does not accept goes to `fast`, then `check`.
        self.valid = _envelope.VALID_SINGLE if self.fast is not None else None
        # `body` not None: the data plane buffers the body and calls finish().
        self.body = True if answer is None else None
        self.program = None
        self.status = answer[0] if answer is not None else 0

    def finish(self, data: bytes) -> EnvelopeVerdict | None:
        return self.check(data)[1]

    def check(self, data: bytes) -> tuple[jsonrpc.Envelope | None, EnvelopeVerdict | None]:
        """(the envelope, None) when `data` is acceptable, else (None, its refusal)."""
        found = jsonrpc.check_envelope(data, allow_batch=self.allow_batch)
        if isinstance(found, jsonrpc.Envelope):
            return found, None
        return None, EnvelopeVerdict(self.allow_batch, (400, _JSON, jsonrpc.error_body(found)))

    def response(self, keep_alive: bool, head_only: bool) -> bytes:
        assert self.answer is not None
        status, headers, body = self.answer
        return response(status, headers, body, keep_alive, head_only)


class _RoutedVerdict(EnvelopeVerdict):
    """2026-07-28: the body must also agree with the `Mcp-Method` / `Mcp-Name` headers."""

    __slots__ = ("method", "name", "repeated")

    def __init__(self, method: bytes | None, name: bytes | None, repeated: str | None) -> None:
        super().__init__(False)
        self.method = method
        self.name = name
        self.repeated = repeated  # which of them was given more than once

    def check(self, data: bytes) -> tuple[jsonrpc.Envelope | None, EnvelopeVerdict | None]:
        found = jsonrpc.check_envelope(data, allow_batch=False)
        if not isinstance(found, jsonrpc.Envelope):
            return None, EnvelopeVerdict(False, (400, _JSON, jsonrpc.error_body(found)))
        mismatch = (
            repeated_routing_header(self.repeated)
            if self.repeated is not None
            else routing_mismatch(found, self.method, self.name)
        )
        if mismatch is not None:
            body = jsonrpc.encode_error(found.id, HEADER_MISMATCH, mismatch)
            return None, EnvelopeVerdict(False, (400, _JSON, body))
        return found, None


def routing_mismatch(
    found: jsonrpc.Envelope, method: bytes | None, name: bytes | None
) -> str | None:
    """Why the 2026-07-28 `Mcp-Method` / `Mcp-Name` header values (None: absent) do not
    say what the body `found` says, or None when they agree. The proxy's envelope check
    and the gateway's own MCP endpoints answer a mismatch alike: 400, HEADER_MISMATCH."""
    body_method = found.method.encode("utf-8") if found.method is not None else None
    if method is not None and method.strip() != body_method:
        return "the Mcp-Method header does not match the body's method"
    if name is not None and header_text(name) != (
        found.name.encode("utf-8") if found.name is not None else None
    ):
        # (also a name header where the body has no name: a policy deciding on the
        # header must never see a name the upstream will not act on)
        return "the Mcp-Name header does not match the body"
    return None


def routing_headers(lines: list[bytes] | None) -> tuple[bytes | None, bytes | None, str | None]:
    """The 2026-07-28 `Mcp-Method` and `Mcp-Name` values among the data plane's kept
    lines (None: absent), and the name of the first of them given more than once."""
    method = name = repeated = None
    if lines is not None:
        for i in range(0, len(lines), 4):
            key = lines[i].lower()
            if key == b"mcp-method":
                if method is not None and repeated is None:
                    repeated = "Mcp-Method"
                method = lines[i + 2]
            elif key == b"mcp-name":
                if name is not None and repeated is None:
                    repeated = "Mcp-Name"
                name = lines[i + 2]
    return method, name, repeated


def repeated_routing_header(header: str) -> str:
    """Why a request whose `header` (Mcp-Method or Mcp-Name) came more than once is
    refused: one value must say what the body says, and parties that read the first
    and the last would each see another (the proxy read the first, the gateway's own
    endpoints the last, an upstream either). Answered as a mismatch."""
    return f"the {header} header is given more than once"


def header_text(value: bytes) -> bytes | None:
    """A 2026-07-28 mirrored header's text: `=?base64?...?=` carries non-ASCII values."""
    value = value.strip()
    if value.startswith(b"=?base64?") and value.endswith(b"?="):
        try:
            return base64.b64decode(value[9:-2], validate=True)
        except (binascii.Error, ValueError):
            return None
    return value


class EnvelopeGuard:
    """The `Validator` of an MCP service's Streamable HTTP routes: POST envelopes checked.

    The revision comes from `MCP-Protocol-Version` (2025-03-26 without it, as
    the spec says): batches only where the revision has them, and from
    2026-07-28 the `Mcp-Method` / `Mcp-Name` headers must agree with the body
    (so routing and limits may trust them). Counters feed /admin.
    """

    __slots__ = ("_batch", "_checked", "_single", "enforce", "fast_versions", "max_body", "tally")

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self.enforce = True  # a body that could not be checked is never forwarded
        self._batch = EnvelopeVerdict(True)
        self._single = EnvelopeVerdict(False)
        self._checked = 0  # requests seen by `head`
        # The requests the data plane let through without calling `head` (a revision in
        # fast_versions), counted in C: McpEnvelopeStep writes the item through a pointer
        # (a Python attribute's read and write cost ~200 instructions a tools/call).
        self.tally = array("q", [0])
        # The MCP-Protocol-Version values (None: no header) whose POSTs always get the
        # same verdict, once seen: McpEnvelopeStep reads them with no call to head().
        self.fast_versions: dict[bytes | None, EnvelopeVerdict] = {}

    @property
    def checked(self) -> int:
        """Requests seen: by `head`, and by the data plane on its own (`tally`)."""
        return self._checked + self.tally[0]

    @property
    def fast_heads(self) -> None:
        return None  # every POST goes through head(): the revision matters

    def head(
        self,
        url: bytes,
        params: object,
        lines: list[bytes] | None,
        content_type: bytes | None,
        has_body: bool,
    ) -> EnvelopeVerdict | None:
        self._checked += 1
        version_header = header_value(lines, b"mcp-protocol-version")
        if not has_body:
            return None  # GET, DELETE; a POST with no body is the upstream's to refuse
        version = versions.effective_version(
            version_header.decode("latin-1").strip() if version_header else None
        )
        if versions.validates_routing_headers(version):
            method, name, repeated = routing_headers(lines)
            if method is not None or name is not None:
                return _RoutedVerdict(method, name, repeated)
        verdict = self._batch if versions.allows_batch(version) else self._single
        if not versions.validates_routing_headers(version) and len(self.fast_versions) < 64:
            self.fast_versions[version_header] = verdict  # bounded: any client may send any
        return verdict


__all__ = [
    "HEADER_MISMATCH",
    "EnvelopeGuard",
    "OriginPolicy",
    "SessionRouter",
    "header_text",
    "header_value",
    "repeated_routing_header",
    "routing_headers",
    "routing_mismatch",
    "rpc_error",
]
