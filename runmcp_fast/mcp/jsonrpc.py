"""JSON-RPC 2.0 envelopes for MCP: a fast check for a proxy, codecs for a server.

`check_envelope` runs on every MCP POST body a proxy forwards. It answers
"is this one well-formed JSON-RPC message (or an allowed batch), and which
kind" without decoding `params` or `result` (only `params.name`/`params.uri`,
the value 2026-07-28 mirrors in `Mcp-Name`), and never raises: the body is
forwarded unchanged or answered with `error_body(err)`.

Two implementations agree by construction (tests compare them):

* the fast path decodes with one msgspec `Decoder` whose types are the happy
  path (`jsonrpc` the literal "2.0", `id` an int or a string, ...); any
  `ValidationError` and any shape it does not accept falls through to
* the slow path, which decodes every member as `msgspec.Raw`, checks them one
  by one and names the first problem. It is the single source of truth for
  error messages and only runs on bodies that are about to be refused.

Decisions (JSON-RPC 2.0 https://www.jsonrpc.org/specification and MCP
basic/index.mdx of each revision):

* `id` of a request is a string or an integer, never null, a float or a
  boolean (MCP: "Requests MUST include a string or integer ID", "MUST NOT be
  null"). Integers are not range-checked (msgspec decodes any size).
* an error response may have `"id": null` (the id could not be read) and, as
  2026-07-28's schema makes `id` optional there, may omit it.
* `params` is an object or an array (JSON-RPC; MCP only uses objects).
  `result` may be any JSON value (JSON-RPC; MCP sends objects).
* a message with both `result` and `error`, or with `method` and either, is
  invalid. Unknown top-level members are ignored (JSON-RPC does not forbid
  them and MCP defines none): they are parsed, so the body is still valid JSON
  end to end, but never allocated.
* duplicate keys: msgspec keeps the last occurrence, like Python's `json`,
  `JSON.parse` and pydantic-core (the SDK's parser), so the proxy checks the
  same `method` the upstream will act on.
* a batch is a non-empty array of messages, only when `allow_batch` (MCP
  2025-03-26 only, see `versions.allows_batch`); it may not mix requests or
  notifications with responses (2025-03-26 transports.mdx, POST body rule 3)
  nor contain `initialize` (2025-03-26 lifecycle.mdx). An invalid member
  refuses the whole batch with one error naming the member.
* bytes that are not UTF-8 or not JSON are a parse error (-32700); anything
  else wrong is an invalid request (-32600). Both are HTTP 400 on every
  revision.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec
from msgspec import UNSET, Raw, UnsetType

from runmcp_fast.mcp import _envelope

__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "NAME_BEARING_METHODS",
    "PARSE_ERROR",
    "Envelope",
    "EnvelopeError",
    "ErrorObject",
    "Kind",
    "Message",
    "check_envelope",
    "decode_message",
    "encode_error",
    "encode_result",
    "error_body",
]

# Standard JSON-RPC 2.0 error codes.
PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603

Kind = Literal["request", "notification", "response", "error", "batch"]
RequestId = int | str

NAME_BEARING_METHODS: Final[dict[str, str]] = {
    "tools/call": "name",
    "prompts/get": "name",
    "resources/read": "uri",
}
"""Method -> the `params` member that 2026-07-28 mirrors in the `Mcp-Name` header."""


class Envelope(msgspec.Struct, frozen=True, gc=False):
    """A well-formed JSON-RPC message, or a batch of them.

    `method` is set for requests and notifications; `id` for requests,
    responses and (when readable) error responses; `name` is the value an
    `Mcp-Name` header mirrors (`params.name` of tools/call and prompts/get,
    `params.uri` of resources/read) when it is a string. A batch has
    `members`, each a non-batch Envelope, in order.
    """

    kind: Kind
    method: str | None = None
    id: RequestId | None = None
    name: str | None = None
    is_initialize: bool = False
    members: tuple[Envelope, ...] = ()


class EnvelopeError(msgspec.Struct, frozen=True, gc=False):
    """Why a body is not an acceptable JSON-RPC message.

    `code` is PARSE_ERROR or INVALID_REQUEST; `message` names the problem;
    `id` is the request's id when it could be read (else None).
    """

    code: int
    message: str
    id: RequestId | None = None


# ---------------------------------------------------------------- fast path
# Types of the happy path only: anything else raises ValidationError and goes
# to the slow path. gc=False: these are never part of a reference cycle.


class _FastErrorObj(msgspec.Struct, gc=False):
    code: int
    message: str
    data: Raw = Raw()  # PERF: present or not, never decoded


class _FastParams(msgspec.Struct, gc=False):
    # PERF: every other member of params (arguments, _meta, ...) is skipped by
    # the parser without being allocated.
    name: Any = None
    uri: Any = None


class _Fast(msgspec.Struct, gc=False):
    jsonrpc: Literal["2.0"]
    method: str | UnsetType = UNSET
    id: int | str | UnsetType | None = UNSET
    params: _FastParams | UnsetType = UNSET  # array params (not MCP) take the slow path
    result: Raw = Raw()  # empty Raw == absent; `null` is b"null"
    error: _FastErrorObj | UnsetType = UNSET


_fast_single: Final = msgspec.json.Decoder(_Fast)
_fast_any: Final = msgspec.json.Decoder(_Fast | list[_Fast])


# The reading of a decoded message is compiled (mcp/_envelope.pyx): it runs on every
# proxied POST, and in Python it cost as much as the decode.
_envelope.bind(Envelope, UNSET, _Fast, _FastParams, NAME_BEARING_METHODS, _fast_single.decode)
_fast_envelope = _envelope.fast_envelope


# ---------------------------------------------------------------- slow path


class _Loose(msgspec.Struct, gc=False):
    jsonrpc: Raw = Raw()
    method: Raw = Raw()
    id: Raw = Raw()
    params: Raw = Raw()
    result: Raw = Raw()
    error: Raw = Raw()


class _LooseErrorObj(msgspec.Struct, gc=False):
    code: Raw = Raw()
    message: Raw = Raw()


_loose_top: Final = msgspec.json.Decoder(_Loose | list[Raw])
_loose_member: Final = msgspec.json.Decoder(_Loose)
_loose_error: Final = msgspec.json.Decoder(_LooseErrorObj)
_any: Final = msgspec.json.Decoder()
_fast_params: Final = msgspec.json.Decoder(_FastParams)

_TOO_DEEP: Final = EnvelopeError(PARSE_ERROR, "invalid JSON: nested too deeply")
_NOT_UTF8: Final = EnvelopeError(PARSE_ERROR, "invalid JSON: the body is not UTF-8")
_MISSING: Final = object()
_UNREADABLE: Final = object()  # a number msgspec can not represent (e.g. 10_000 digits)


def _value(raw: Raw) -> object:
    """The decoded value of a present scalar member; containers are not decoded."""
    if not len(raw):
        return _MISSING
    first = memoryview(raw)[0]
    if first in b"{[":  # an object or array: only its kind matters here
        return {} if first == 0x7B else []
    try:
        return _any.decode(raw)
    except msgspec.ValidationError:
        return _UNREADABLE


def _as_id(value: object) -> RequestId | None:
    """`value` when it is a valid request id (a string or an integer, not a bool), else None."""
    if isinstance(value, str | int) and not isinstance(value, bool):
        return value
    return None


def _slow_member(msg: _Loose, where: str) -> Envelope | EnvelopeError:
    """Check one decoded message; `where` prefixes messages ("batch member 2: ")."""
    raw_id = _value(msg.id)
    msg_id = _as_id(raw_id)

    def bad(text: str) -> EnvelopeError:
        return EnvelopeError(INVALID_REQUEST, where + text, msg_id)

    jsonrpc = _value(msg.jsonrpc)
    if jsonrpc is _MISSING:
        return bad('missing `jsonrpc` member (must be "2.0")')
    if jsonrpc != "2.0":
        return bad('`jsonrpc` must be "2.0"')

    method = _value(msg.method)
    has_result = len(msg.result) > 0
    has_error = len(msg.error) > 0
    if method is not _MISSING:
        if not isinstance(method, str):
            return bad("`method` must be a string")
        if has_result or has_error:
            return bad("a request or notification must not have `result` or `error`")
        name = None
        if len(msg.params):
            first = memoryview(msg.params)[0]
            if first not in b"{[":
                return bad("`params` must be an object or an array")
            key = NAME_BEARING_METHODS.get(method)
            if key is not None and first == 0x7B:
                params = _fast_params.decode(msg.params)
                value = params.name if key == "name" else params.uri
                name = value if isinstance(value, str) else None
        if raw_id is _MISSING:
            return Envelope("notification", method, None, name)
        if msg_id is None:
            return bad("`id` must be a string or an integer")
        return Envelope("request", method, msg_id, name, method == "initialize")

    if has_result and has_error:
        return bad("a response must not have both `result` and `error`")
    if has_result:
        if msg_id is None:
            return bad("`id` of a response must be a string or an integer")
        return Envelope("response", None, msg_id)
    if has_error:
        if raw_id is not _MISSING and raw_id is not None and msg_id is None:
            return bad("`id` must be a string, an integer or null")
        if memoryview(msg.error)[0] != 0x7B:
            return bad("`error` must be an object")
        err = _loose_error.decode(msg.error)
        code = _value(err.code)
        if not isinstance(code, int) or isinstance(code, bool):
            return bad("`error.code` must be an integer")
        if not isinstance(_value(err.message), str):
            return bad("`error.message` must be a string")
        return Envelope("error", None, msg_id)
    return bad("not a request, notification or response: no `method`, `result` or `error`")


def _slow(body: bytes, allow_batch: bool) -> Envelope | EnvelopeError:
    try:
        return _slow_body(body, allow_batch)
    except RecursionError:  # msgspec's depth guard is the interpreter's recursion limit
        return _TOO_DEEP


def _slow_body(body: bytes, allow_batch: bool) -> Envelope | EnvelopeError:
    if not _is_utf8(body):
        return _NOT_UTF8
    try:
        top = _loose_top.decode(body)
    except msgspec.ValidationError:
        what = "an object or a batch (array)" if allow_batch else "an object"
        return EnvelopeError(INVALID_REQUEST, f"a JSON-RPC message must be {what}")
    except msgspec.DecodeError as exc:
        return EnvelopeError(PARSE_ERROR, f"invalid JSON: {_strip(str(exc))}")
    if isinstance(top, _Loose):
        return _slow_member(top, "")
    if not allow_batch:
        return EnvelopeError(
            INVALID_REQUEST,
            "a JSON-RPC batch (JSON array) is not allowed at this protocol version",
        )
    if not top:
        return EnvelopeError(INVALID_REQUEST, "an empty batch `[]` is invalid")
    members: list[Envelope] = []
    for index, raw in enumerate(top):
        where = f"batch member {index}: "
        try:
            member = _slow_member(_loose_member.decode(raw), where)
        except msgspec.ValidationError:
            return EnvelopeError(INVALID_REQUEST, where + "must be a JSON object")
        if isinstance(member, EnvelopeError):
            return member
        members.append(member)
    return _batch(members)


def _batch(members: list[Envelope]) -> Envelope | EnvelopeError:
    # One rule for both paths: no initialize, no requests mixed with responses.
    calls = 0
    for index, member in enumerate(members):
        if member.is_initialize:
            return EnvelopeError(
                INVALID_REQUEST,
                f"batch member {index}: `initialize` must not be part of a batch",
                member.id,
            )
        if member.method is not None:
            calls += 1
    if calls and calls != len(members):
        return EnvelopeError(
            INVALID_REQUEST,
            "a batch must not mix requests or notifications with responses",
        )
    return Envelope("batch", members=tuple(members))


def _is_utf8(body: bytes) -> bool:
    # msgspec checks UTF-8 only in the strings it decodes, not in those it
    # skips or keeps as Raw (params, result, unknown members).
    # PERF: isascii is a vectorised scan; only non-ASCII bodies pay for a decode.
    if body.isascii():
        return True
    try:
        body.decode()
    except UnicodeDecodeError:
        return False
    return True


def _strip(text: str) -> str:
    return text.removeprefix("JSON is malformed: ")


# ---------------------------------------------------------------- public API


def check_envelope(body: bytes, *, allow_batch: bool) -> Envelope | EnvelopeError:
    """Classify `body` as one JSON-RPC message (or a batch), or say why it is not one.

    Never raises. `params`, `result` and `error.data` are parsed (the whole
    body must be valid JSON) but not decoded into Python objects.
    """
    if not _is_utf8(body):
        return _NOT_UTF8
    try:
        msg = _fast_any.decode(body) if allow_batch else _fast_single.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return _slow(body, allow_batch)
    except RecursionError:
        return _TOO_DEEP
    # PERF: single messages first; `type() is` beats isinstance here.
    if type(msg) is _Fast:
        env = _fast_envelope(msg)
        return env if env is not None else _slow(body, allow_batch)
    assert isinstance(msg, list)
    members: list[Envelope] = []
    for member in msg:
        env = _fast_envelope(member)
        if env is None:
            return _slow(body, allow_batch)
        members.append(env)
    if not members:
        return EnvelopeError(INVALID_REQUEST, "an empty batch `[]` is invalid")
    return _batch(members)


class _ErrorBody(msgspec.Struct, gc=False):
    code: int
    message: str
    data: Any = UNSET


class _ErrorResponse(msgspec.Struct, gc=False):
    # Field order is the wire order: {"jsonrpc":"2.0","id":...,"error":{...}}.
    jsonrpc: str
    id: RequestId | None
    error: _ErrorBody


class _ResultResponse(msgspec.Struct, gc=False):
    jsonrpc: str
    id: RequestId
    result: Any


_encoder: Final = msgspec.json.Encoder()


def error_body(err: EnvelopeError) -> bytes:
    """The JSON-RPC error response answering a refused body (`"id": null` when unknown)."""
    return _encoder.encode(_ErrorResponse("2.0", err.id, _ErrorBody(err.code, err.message)))


def encode_error(id: RequestId | None, code: int, message: str, data: Any = None) -> bytes:
    """A JSON-RPC error response; `data` is omitted when None."""
    body = _ErrorBody(code, message, UNSET if data is None else data)
    return _encoder.encode(_ErrorResponse("2.0", id, body))


def encode_result(id: RequestId, result: Any) -> bytes:
    """A JSON-RPC result response; `result` may be any msgspec-encodable value or a `msgspec.Raw`."""
    return _encoder.encode(_ResultResponse("2.0", id, result))


# ---------------------------------------------------------------- full decode


class ErrorObject(msgspec.Struct, frozen=True, gc=False):
    code: int
    message: str
    data: Any = None


class Message(msgspec.Struct, frozen=True, gc=False):
    """One decoded message, for a server that acts on it.

    `params` is the decoded params (None when absent), `result` the decoded
    result of a response (None otherwise), `error` the error object of an
    error response.
    """

    kind: Kind
    method: str | None = None
    id: RequestId | None = None
    params: dict[str, Any] | list[Any] | None = None
    result: Any = None
    error: ErrorObject | None = None


class _Full(msgspec.Struct, gc=False):
    method: str | None = None
    id: int | str | None = None
    params: dict[str, Any] | list[Any] | None = None
    result: Any = None
    error: ErrorObject | None = None


_full_single: Final = msgspec.json.Decoder(_Full)
_full_any: Final = msgspec.json.Decoder(_Full | list[_Full])


def _message(env: Envelope, full: _Full) -> Message:
    if env.kind == "response":
        return Message("response", None, env.id, None, full.result)
    if env.kind == "error":
        return Message("error", None, env.id, error=full.error)
    return Message(env.kind, env.method, env.id, full.params)


def decode_message(body: bytes, *, allow_batch: bool) -> Message | list[Message] | EnvelopeError:
    """Check `body` like `check_envelope`, then decode it fully.

    A single message gives a `Message`, a batch a list of them (in order), so
    a server knows to answer a batch with an array.
    """
    env = check_envelope(body, allow_batch=allow_batch)
    if type(env) is EnvelopeError:
        return env
    assert type(env) is Envelope
    return decode_checked(body, env, allow_batch=allow_batch)


def decode_checked(
    body: bytes, env: Envelope, *, allow_batch: bool
) -> Message | list[Message] | EnvelopeError:
    """`decode_message` of a body `check_envelope` found to be `env`."""
    try:
        full = _full_any.decode(body) if allow_batch else _full_single.decode(body)
    except msgspec.ValidationError as exc:  # a number Python can not hold (10_000 digits)
        return EnvelopeError(PARSE_ERROR, f"invalid JSON: {exc}", env.id)
    except RecursionError:
        return _TOO_DEEP
    if type(full) is _Full:
        return _message(env, full)
    assert type(full) is list
    return [_message(m, f) for m, f in zip(env.members, full, strict=True)]
