"""JSON-RPC envelope checks (runmcp_fast.mcp.jsonrpc) and protocol revisions (runmcp_fast.mcp.versions).

Tables of bodies with the expected Envelope or error; every case also runs
through the slow path alone, which must agree with `check_envelope`.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp_types import JSONRPCError, JSONRPCNotification, JSONRPCRequest, JSONRPCResponse
from mcp_types import jsonrpc_message_adapter as sdk_adapter
from mcp_types.version import KNOWN_PROTOCOL_VERSIONS as SDK_VERSIONS

from runmcp_fast.mcp import versions
from runmcp_fast.mcp.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    Envelope,
    EnvelopeError,
    ErrorObject,
    Message,
    _slow,
    check_envelope,
    decode_message,
    encode_error,
    encode_result,
    error_body,
)

TOOLS_CALL = (
    b'{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"get_weather",'
    b'"arguments":{"location":"Seattle, WA"},"_meta":{"progressToken":"abc-123"}}}'
)


def check(body: bytes, allow_batch: bool = False) -> Envelope | EnvelopeError:
    """check_envelope, asserting the slow path alone gives the same answer."""
    result = check_envelope(body, allow_batch=allow_batch)
    assert _slow(body, allow_batch) == result
    return result


# ----------------------------------------------------------------- valid

VALID: list[tuple[str, bytes, Envelope]] = [
    ("tools/call", TOOLS_CALL, Envelope("request", "tools/call", 42, "get_weather")),
    (
        "initialize",
        b'{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}',
        Envelope("request", "initialize", 0, is_initialize=True),
    ),
    (
        "string id",
        b'{"jsonrpc":"2.0","id":"a-1","method":"ping"}',
        Envelope("request", "ping", "a-1"),
    ),
    (
        "empty string id",
        b'{"jsonrpc":"2.0","id":"","method":"ping"}',
        Envelope("request", "ping", ""),
    ),
    ("negative id", b'{"jsonrpc":"2.0","id":-7,"method":"ping"}', Envelope("request", "ping", -7)),
    (
        "id beyond 64 bits",
        b'{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"ping"}',
        Envelope("request", "ping", 123456789012345678901234567890),
    ),
    (
        "array params",
        b'{"jsonrpc":"2.0","id":1,"method":"m","params":[1,2]}',
        Envelope("request", "m", 1),
    ),
    (
        "empty params",
        b'{"jsonrpc":"2.0","id":1,"method":"m","params":{}}',
        Envelope("request", "m", 1),
    ),
    (
        "prompts/get name",
        b'{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"greet"}}',
        Envelope("request", "prompts/get", 1, "greet"),
    ),
    (
        "resources/read uri",
        b'{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a b"}}',
        Envelope("request", "resources/read", 1, "file:///a b"),
    ),
    (
        "tools/call name not a string",
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5}}',
        Envelope("request", "tools/call", 1),
    ),
    (
        "name of a method that mirrors none",
        b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"name":"x"}}',
        Envelope("request", "tools/list", 1),
    ),
    (
        "notification",
        b'{"jsonrpc":"2.0","method":"notifications/initialized"}',
        Envelope("notification", "notifications/initialized"),
    ),
    (
        "notification with params",
        b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":3}}',
        Envelope("notification", "notifications/cancelled"),
    ),
    ("response", b'{"jsonrpc":"2.0","id":5,"result":{}}', Envelope("response", id=5)),
    (
        "response, null result",
        b'{"jsonrpc":"2.0","id":5,"result":null}',
        Envelope("response", id=5),
    ),
    (
        "response, scalar result",
        b'{"jsonrpc":"2.0","id":"x","result":3}',
        Envelope("response", id="x"),
    ),
    (
        "error response",
        b'{"jsonrpc":"2.0","id":5,"error":{"code":-32601,"message":"Method not found"}}',
        Envelope("error", id=5),
    ),
    (
        "error response, null id",
        b'{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}',
        Envelope("error"),
    ),
    (
        "error response, no id (2026-07-28 schema)",
        b'{"jsonrpc":"2.0","error":{"code":-32020,"message":"Header mismatch","data":[1]}}',
        Envelope("error"),
    ),
    (
        "unknown members are ignored",
        b'{"jsonrpc":"2.0","id":1,"method":"ping","x-trace":{"a":[1,2]},"extra":null}',
        Envelope("request", "ping", 1),
    ),
    (
        "members in any order",
        b'{"method":"ping","id":1,"jsonrpc":"2.0"}',
        Envelope("request", "ping", 1),
    ),
    (
        "whitespace around",
        b' \r\n\t{ "jsonrpc" : "2.0" , "id" : 1 , "method" : "ping" } \n',
        Envelope("request", "ping", 1),
    ),
    (
        "escaped jsonrpc",
        b'{"jsonrpc":"\\u0032.0","id":1,"method":"ping"}',
        Envelope("request", "ping", 1),
    ),
    (
        "duplicate key: the last one wins",
        b'{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call"}',
        Envelope("request", "tools/call", 1),
    ),
    (
        "duplicate jsonrpc: the last one wins",
        b'{"jsonrpc":"1.0","jsonrpc":"2.0","id":1,"method":"ping"}',
        Envelope("request", "ping", 1),
    ),
    (
        "non-ASCII method",
        '{"jsonrpc":"2.0","method":"é/ü"}'.encode(),
        Envelope("notification", "é/ü"),
    ),
]


@pytest.mark.parametrize(("body", "expected"), [c[1:] for c in VALID], ids=[c[0] for c in VALID])
@pytest.mark.parametrize("allow_batch", [False, True])
def test_valid(body: bytes, expected: Envelope, allow_batch: bool) -> None:
    assert check(body, allow_batch) == expected


# ----------------------------------------------------------------- invalid

INVALID: list[tuple[str, bytes, int, str, int | str | None]] = [
    ("empty body", b"", PARSE_ERROR, "invalid JSON", None),
    ("truncated", b'{"jsonrpc":"2.0","id":1', PARSE_ERROR, "invalid JSON", None),
    ("trailing comma", b'{"jsonrpc":"2.0","id":1,}', PARSE_ERROR, "trailing comma", None),
    ("trailing data", b'{"jsonrpc":"2.0","method":"a"} {}', PARSE_ERROR, "trailing characters", None),
    ("not UTF-8", b'{"jsonrpc":"2.0","method":"\xff"}', PARSE_ERROR, "not UTF-8", None),
    ("garbage", b"\x00\x01", PARSE_ERROR, "invalid JSON", None),
    ("BOM", b'\xef\xbb\xbf{"jsonrpc":"2.0","method":"a"}', PARSE_ERROR, "invalid JSON", None),
    ("NaN", b'{"jsonrpc":"2.0","id":NaN,"method":"a"}', PARSE_ERROR, "invalid JSON", None),
    ("too deep", b'{"jsonrpc":"2.0","method":"a","params":' + b"[" * 5000 + b"]" * 5000 + b"}",
     PARSE_ERROR, "nested too deeply", None),
    ("a string", b'"hello"', INVALID_REQUEST, "must be an object", None),
    ("null", b"null", INVALID_REQUEST, "must be an object", None),
    ("no jsonrpc", b'{"id":1,"method":"a"}', INVALID_REQUEST, "missing `jsonrpc`", 1),
    ("jsonrpc 1.0", b'{"jsonrpc":"1.0","id":1,"method":"a"}', INVALID_REQUEST, '`jsonrpc` must be "2.0"', 1),
    ("jsonrpc number", b'{"jsonrpc":2.0,"id":"k","method":"a"}', INVALID_REQUEST, '`jsonrpc` must be "2.0"', "k"),
    ("jsonrpc object", b'{"jsonrpc":{},"method":"a"}', INVALID_REQUEST, '`jsonrpc` must be "2.0"', None),
    ("method number", b'{"jsonrpc":"2.0","id":1,"method":1}', INVALID_REQUEST, "`method` must be a string", 1),
    ("method null", b'{"jsonrpc":"2.0","id":1,"method":null}', INVALID_REQUEST, "`method` must be a string", 1),
    ("id null", b'{"jsonrpc":"2.0","id":null,"method":"a"}', INVALID_REQUEST, "`id` must be a string or an integer", None),
    ("id float", b'{"jsonrpc":"2.0","id":1.0,"method":"a"}', INVALID_REQUEST, "`id` must be a string or an integer", None),
    ("id exponent", b'{"jsonrpc":"2.0","id":1e3,"method":"a"}', INVALID_REQUEST, "`id` must be a string or an integer", None),
    ("id bool", b'{"jsonrpc":"2.0","id":true,"method":"a"}', INVALID_REQUEST, "`id` must be a string or an integer", None),
    ("id object", b'{"jsonrpc":"2.0","id":{"a":1},"method":"a"}', INVALID_REQUEST, "`id` must be a string or an integer", None),
    ("id array", b'{"jsonrpc":"2.0","id":[1],"method":"a"}', INVALID_REQUEST, "`id` must be a string or an integer", None),
    ("id too big to read", b'{"jsonrpc":"2.0","id":' + b"9" * 5000 + b',"method":"a"}',
     INVALID_REQUEST, "`id` must be a string or an integer", None),
    ("params string", b'{"jsonrpc":"2.0","id":1,"method":"a","params":"x"}', INVALID_REQUEST, "`params` must be an object or an array", 1),
    ("params null", b'{"jsonrpc":"2.0","id":1,"method":"a","params":null}', INVALID_REQUEST, "`params` must be an object or an array", 1),
    ("request with result", b'{"jsonrpc":"2.0","id":1,"method":"a","result":{}}', INVALID_REQUEST, "must not have `result` or `error`", 1),
    ("request with null error", b'{"jsonrpc":"2.0","id":1,"method":"a","error":null}', INVALID_REQUEST, "must not have `result` or `error`", 1),
    ("result and error", b'{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"m"}}', INVALID_REQUEST, "both `result` and `error`", 1),
    ("response without id", b'{"jsonrpc":"2.0","result":{}}', INVALID_REQUEST, "`id` of a response", None),
    ("response with null id", b'{"jsonrpc":"2.0","id":null,"result":{}}', INVALID_REQUEST, "`id` of a response", None),
    ("error not an object", b'{"jsonrpc":"2.0","id":1,"error":"boom"}', INVALID_REQUEST, "`error` must be an object", 1),
    ("error without code", b'{"jsonrpc":"2.0","id":1,"error":{"message":"m"}}', INVALID_REQUEST, "`error.code` must be an integer", 1),
    ("error code float", b'{"jsonrpc":"2.0","id":1,"error":{"code":1.5,"message":"m"}}', INVALID_REQUEST, "`error.code` must be an integer", 1),
    ("error code string", b'{"jsonrpc":"2.0","id":1,"error":{"code":"1","message":"m"}}', INVALID_REQUEST, "`error.code` must be an integer", 1),
    ("error code bool", b'{"jsonrpc":"2.0","id":1,"error":{"code":false,"message":"m"}}', INVALID_REQUEST, "`error.code` must be an integer", 1),
    ("error without message", b'{"jsonrpc":"2.0","id":1,"error":{"code":1}}', INVALID_REQUEST, "`error.message` must be a string", 1),
    ("error id float", b'{"jsonrpc":"2.0","id":2.5,"error":{"code":1,"message":"m"}}', INVALID_REQUEST, "`id` must be a string, an integer or null", None),
    ("nothing to do", b'{"jsonrpc":"2.0","id":1}', INVALID_REQUEST, "no `method`, `result` or `error`", 1),
    ("empty object", b"{}", INVALID_REQUEST, "missing `jsonrpc`", None),
    ("duplicate id: the last one wins", b'{"jsonrpc":"2.0","id":1,"id":1.5,"method":"a"}', INVALID_REQUEST, "`id` must be", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "code", "text", "err_id"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
@pytest.mark.parametrize("allow_batch", [False, True])
def test_invalid(
    body: bytes, code: int, text: str, err_id: int | str | None, allow_batch: bool
) -> None:
    err = check(body, allow_batch)
    assert isinstance(err, EnvelopeError)
    assert (err.code, err.id) == (code, err_id)
    assert text in err.message


# ----------------------------------------------------------------- batches

BATCHES: list[tuple[str, bytes, Envelope | tuple[int, str, int | str | None]]] = [
    (
        "requests and a notification",
        b'[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","method":"n"},' + TOOLS_CALL + b"]",
        Envelope(
            "batch",
            members=(
                Envelope("request", "tools/list", 1),
                Envelope("notification", "n"),
                Envelope("request", "tools/call", 42, "get_weather"),
            ),
        ),
    ),
    (
        "responses and errors",
        b'[{"jsonrpc":"2.0","id":1,"result":{}},{"jsonrpc":"2.0","id":2,"error":{"code":1,"message":"m"}}]',
        Envelope("batch", members=(Envelope("response", id=1), Envelope("error", id=2))),
    ),
    ("a single member", b'[{"jsonrpc":"2.0","method":"n"}]', Envelope("batch", members=(Envelope("notification", "n"),))),
    ("empty", b"[]", (INVALID_REQUEST, "an empty batch `[]` is invalid", None)),
    ("empty with spaces", b" [ ] ", (INVALID_REQUEST, "an empty batch `[]` is invalid", None)),
    ("member not an object", b'[{"jsonrpc":"2.0","method":"n"},1]', (INVALID_REQUEST, "batch member 1: must be a JSON object", None)),
    ("nested batch", b'[[{"jsonrpc":"2.0","method":"n"}]]', (INVALID_REQUEST, "batch member 0: must be a JSON object", None)),
    (
        "invalid member",
        b'[{"jsonrpc":"2.0","method":"n"},{"jsonrpc":"2.0","id":3,"method":7}]',
        (INVALID_REQUEST, "batch member 1: `method` must be a string", 3),
    ),
    (
        "initialize in a batch",
        b'[{"jsonrpc":"2.0","id":9,"method":"initialize","params":{}}]',
        (INVALID_REQUEST, "batch member 0: `initialize` must not be part of a batch", 9),
    ),
    (
        "requests mixed with responses",
        b'[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","id":1,"result":{}}]',
        (INVALID_REQUEST, "must not mix requests or notifications with responses", None),
    ),
    ("not JSON", b'[{"jsonrpc":"2.0","method":"n"},', (PARSE_ERROR, "invalid JSON", None)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "expected"), [c[1:] for c in BATCHES], ids=[c[0] for c in BATCHES]
)
def test_batch_allowed(body: bytes, expected: Envelope | tuple[int, str, int | str | None]) -> None:
    result = check(body, allow_batch=True)
    if isinstance(expected, Envelope):
        assert result == expected
    else:
        assert isinstance(result, EnvelopeError)
        code, text, err_id = expected
        assert (result.code, result.id) == (code, err_id)
        assert text in result.message


@pytest.mark.parametrize(
    "body",
    [c[1] for c in BATCHES if c[0] != "not JSON"],
    ids=[c[0] for c in BATCHES if c[0] != "not JSON"],
)
def test_batch_refused(body: bytes) -> None:
    err = check(body, allow_batch=False)
    assert isinstance(err, EnvelopeError)
    assert (err.code, err.id) == (INVALID_REQUEST, None)
    assert "batch (JSON array) is not allowed" in err.message


@pytest.mark.parametrize("version", [*versions.KNOWN_VERSIONS, "2099-01-01", "", "zzz"])
def test_batches_per_version(version: str) -> None:
    # 2025-03-26 basic/index.mdx "Batching" MUST; 2024-11-05 never had it;
    # 2025-06-18 changelog: "Remove support for JSON-RPC batching".
    body = (
        b'[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"ping"}]'
    )
    result = check(body, allow_batch=versions.allows_batch(version))
    assert isinstance(result, Envelope) is (version == "2025-03-26")


# ----------------------------------------------------------------- bodies


@pytest.mark.parametrize(
    ("err", "expected"),
    [
        (
            EnvelopeError(PARSE_ERROR, "invalid JSON: x"),
            {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "invalid JSON: x"}},
        ),
        (
            EnvelopeError(INVALID_REQUEST, '`jsonrpc` must be "2.0"', 7),
            {
                "jsonrpc": "2.0",
                "id": 7,
                "error": {"code": -32600, "message": '`jsonrpc` must be "2.0"'},
            },
        ),
        (
            EnvelopeError(INVALID_REQUEST, "m", "abc"),
            {"jsonrpc": "2.0", "id": "abc", "error": {"code": -32600, "message": "m"}},
        ),
    ],
)
def test_error_body(err: EnvelopeError, expected: dict[str, Any]) -> None:
    body = error_body(err)
    assert json.loads(body) == expected
    assert body.startswith(b'{"jsonrpc":"2.0","id":')  # wire order, compact
    assert check(body) == Envelope("error", id=err.id)


def test_error_body_of_a_check() -> None:
    err = check(b'{"jsonrpc":"2.0","id":"q","method":"a","params":5}')
    assert isinstance(err, EnvelopeError)
    assert error_body(err) == (
        b'{"jsonrpc":"2.0","id":"q","error":{"code":-32600,'
        b'"message":"`params` must be an object or an array"}}'
    )


def test_codes() -> None:
    assert (PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL_ERROR) == (
        -32700,
        -32600,
        -32601,
        -32602,
        -32603,
    )


def test_encoders() -> None:
    assert encode_result(1, {"tools": []}) == b'{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}'
    assert (
        encode_result("a", msgspec.Raw(b'{"x":1}'))
        == b'{"jsonrpc":"2.0","id":"a","result":{"x":1}}'
    )
    assert encode_error(3, METHOD_NOT_FOUND, "Method not found") == (
        b'{"jsonrpc":"2.0","id":3,"error":{"code":-32601,"message":"Method not found"}}'
    )
    assert encode_error(None, INVALID_PARAMS, "bad", {"field": "x"}) == (
        b'{"jsonrpc":"2.0","id":null,"error":{"code":-32602,"message":"bad","data":{"field":"x"}}}'
    )
    assert check(encode_result(1, None)) == Envelope("response", id=1)
    assert check(encode_error("z", 1, "m", [1])) == Envelope("error", id="z")


def test_big_params_are_not_decoded() -> None:
    # A 5,000-digit integer can not be decoded by msgspec: if check_envelope
    # decoded params, result or error.data it would have to fail.
    huge = b"9" * 5000
    bodies = {
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"n":'
        + huge
        + b"}}}": Envelope("request", "tools/call", 1, "x"),
        b'{"jsonrpc":"2.0","id":1,"method":"m","params":[' + huge + b"]}": Envelope(
            "request", "m", 1
        ),
        b'{"jsonrpc":"2.0","id":1,"result":{"n":' + huge + b"}}": Envelope("response", id=1),
        b'{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"m","data":' + huge + b"}}": Envelope(
            "error", id=1
        ),
    }
    for body, expected in bodies.items():
        with pytest.raises(msgspec.ValidationError):
            msgspec.json.decode(body)
        assert check(body) == expected


# ----------------------------------------------------------------- decode_message


def test_decode_message() -> None:
    assert decode_message(TOOLS_CALL, allow_batch=False) == Message(
        "request",
        "tools/call",
        42,
        {
            "name": "get_weather",
            "arguments": {"location": "Seattle, WA"},
            "_meta": {"progressToken": "abc-123"},
        },
    )
    assert decode_message(b'{"jsonrpc":"2.0","method":"n"}', allow_batch=False) == Message(
        "notification", "n"
    )
    assert decode_message(b'{"jsonrpc":"2.0","id":1,"result":[1]}', allow_batch=False) == Message(
        "response", id=1, result=[1]
    )
    assert decode_message(
        b'{"jsonrpc":"2.0","id":null,"error":{"code":-1,"message":"m","data":{"a":1}}}',
        allow_batch=False,
    ) == Message("error", error=ErrorObject(-1, "m", {"a": 1}))
    batch = b'[{"jsonrpc":"2.0","id":1,"method":"a","params":[1]},{"jsonrpc":"2.0","method":"b"}]'
    assert decode_message(batch, allow_batch=True) == [
        Message("request", "a", 1, [1]),
        Message("notification", "b"),
    ]
    assert decode_message(b'[{"jsonrpc":"2.0","method":"b"}]', allow_batch=False) == EnvelopeError(
        INVALID_REQUEST, "a JSON-RPC batch (JSON array) is not allowed at this protocol version"
    )
    err = decode_message(b'{"jsonrpc":"2.0","id":1,"method":"a","params":"x"}', allow_batch=False)
    assert isinstance(err, EnvelopeError)
    assert err.id == 1
    # Valid for the check (params are not decoded), not decodable in full.
    huge = b'{"jsonrpc":"2.0","id":4,"method":"a","params":{"n":' + b"9" * 5000 + b"}}"
    assert check(huge) == Envelope("request", "a", 4)
    err = decode_message(huge, allow_batch=False)
    assert isinstance(err, EnvelopeError)
    assert (err.code, err.id) == (PARSE_ERROR, 4)


# ----------------------------------------------------------------- the SDK agrees

_SDK_CLASS = {
    "request": JSONRPCRequest,
    "notification": JSONRPCNotification,
    "response": JSONRPCResponse,
    "error": JSONRPCError,
}


def _in_mcp_schema(body: bytes) -> bool:
    # The official SDK's models are stricter than JSON-RPC: object params and
    # results only, and an error response's id is required (nullable) where
    # 2026-07-28's schema makes it optional.
    value = json.loads(body)
    return (
        isinstance(value.get("params", {}), dict)
        and isinstance(value.get("result", {}), dict)
        and ("error" not in value or "id" in value)
    )


_SDK_CASES = [c for c in VALID if _in_mcp_schema(c[1])]


@pytest.mark.parametrize(
    ("body", "expected"), [c[1:] for c in _SDK_CASES], ids=[c[0] for c in _SDK_CASES]
)
def test_sdk_agrees_on_valid(body: bytes, expected: Envelope) -> None:
    message = sdk_adapter.validate_json(body)
    assert type(message) is _SDK_CLASS[expected.kind]


# Bodies we refuse that the SDK's pydantic union accepts, and as what: its
# models ignore extra members (a request whose id is not a valid id becomes a
# notification: the 2025-era transport would answer 202 and never reply),
# coerce in lax mode ("1" -> 1), and its parser allows NaN.
_SDK_LENIENT = {
    "NaN": JSONRPCNotification,
    "id null": JSONRPCNotification,
    "id float": JSONRPCNotification,
    "id exponent": JSONRPCNotification,
    "id bool": JSONRPCNotification,
    "id object": JSONRPCNotification,
    "id array": JSONRPCNotification,
    "duplicate id: the last one wins": JSONRPCNotification,
    "params null": JSONRPCRequest,
    "request with result": JSONRPCRequest,
    "request with null error": JSONRPCRequest,
    "result and error": JSONRPCError,
    "error code string": JSONRPCError,
    "error code bool": JSONRPCError,
}


@pytest.mark.parametrize("body", [c[1] for c in INVALID], ids=[c[0] for c in INVALID])
def test_sdk_on_invalid(request: pytest.FixtureRequest, body: bytes) -> None:
    name = request.node.callspec.id
    if name in _SDK_LENIENT:
        assert type(sdk_adapter.validate_json(body)) is _SDK_LENIENT[name]
    else:
        with pytest.raises(ValueError):
            sdk_adapter.validate_json(body)


def test_known_versions_match_sdk() -> None:
    assert versions.KNOWN_VERSIONS == SDK_VERSIONS


# ----------------------------------------------------------------- properties

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
_member_values: st.SearchStrategy[Any] = (
    st.sampled_from(
        [
            "2.0",
            "1.0",
            2.0,
            None,
            1,
            -1,
            1.5,
            True,
            "",
            "a",
            "initialize",
            "tools/call",
            {},
            [],
            {"name": "t"},
        ]
    )
    | _json_values
)
_messages = st.dictionaries(
    st.sampled_from(["jsonrpc", "id", "method", "params", "result", "error", "x"]),
    _member_values
    | st.fixed_dictionaries(
        {"code": st.sampled_from([1, -32600, 1.0, "1", True])},
        optional={"message": st.sampled_from(["m", 1, None]), "data": _json_values},
    ),
    max_size=6,
)
_bodies = (_messages | st.lists(_messages, max_size=3) | _json_values).map(
    lambda v: json.dumps(v).encode()
)


@settings(max_examples=300, deadline=None)
@given(
    body=st.binary(max_size=64) | _bodies.map(lambda b: b[: len(b) // 2]), allow_batch=st.booleans()
)
def test_never_raises_on_bytes(body: bytes, allow_batch: bool) -> None:
    result = check(body, allow_batch)
    assert isinstance(result, Envelope | EnvelopeError)
    if isinstance(result, EnvelopeError):
        assert result.code in (PARSE_ERROR, INVALID_REQUEST)
        assert json.loads(error_body(result))["error"]["code"] == result.code


@settings(max_examples=300, deadline=None)
@given(body=_bodies, allow_batch=st.booleans())
def test_json_messages(body: bytes, allow_batch: bool) -> None:
    # Fast and slow paths agree (inside `check`), and an accepted single
    # message is one the JSON-RPC rules accept, checked here independently.
    result = check(body, allow_batch)
    value = json.loads(body)
    if isinstance(result, EnvelopeError):
        assert result.code == INVALID_REQUEST
        return
    if result.kind == "batch":
        assert allow_batch and isinstance(value, list) and value
        return
    assert value["jsonrpc"] == "2.0"
    has_id = "id" in value
    rid = value.get("id")
    valid_id = isinstance(rid, int | str) and not isinstance(rid, bool)
    if result.kind in ("request", "notification"):
        assert isinstance(value["method"], str)
        assert "result" not in value and "error" not in value
        assert "params" not in value or isinstance(value["params"], dict | list)
        assert valid_id if result.kind == "request" else not has_id
    elif result.kind == "response":
        assert valid_id and "error" not in value and "method" not in value
    else:
        assert "result" not in value and "method" not in value
        assert rid is None or valid_id
        error = value["error"]
        assert isinstance(error["code"], int) and not isinstance(error["code"], bool)
        assert isinstance(error["message"], str)


# ----------------------------------------------------------------- versions


def test_versions() -> None:
    assert versions.DEFAULT_VERSION_WITHOUT_HEADER == "2025-03-26"
    assert versions.effective_version(None) == "2025-03-26"
    assert versions.effective_version("") == "2025-03-26"
    assert versions.effective_version("2025-11-25") == "2025-11-25"
    assert versions.LATEST_VERSION == "2026-07-28"
    table = {
        # version: (allows_batch, is_stateless, validates_routing_headers)
        "2024-11-05": (False, False, False),
        "2025-03-26": (True, False, False),
        "2025-06-18": (False, False, False),
        "2025-11-25": (False, False, False),
        "2026-07-28": (False, True, True),
        "2099-01-01": (False, False, False),
        "zzz": (False, False, False),
    }
    for version, expected in table.items():
        got = (
            versions.allows_batch(version),
            versions.is_stateless(version),
            versions.validates_routing_headers(version),
        )
        assert got == expected, version


def test_is_at_least() -> None:
    known = versions.KNOWN_VERSIONS
    for i, version in enumerate(known):
        for j, minimum in enumerate(known):
            assert versions.is_at_least(version, minimum) is (i >= j)
    # Unknown versions never compare as new, though "zzz" > "2025" as strings.
    assert not versions.is_at_least("zzz", "2024-11-05")
    assert not versions.is_at_least("2099-01-01", "2024-11-05")
    assert not versions.is_known("2099-01-01")
    with pytest.raises(ValueError, match="minimum must be one of"):
        versions.is_at_least("2025-06-18", "2025-01-01")


@pytest.mark.parametrize(
    ("method", "params", "name"),
    [
        ("tools/call", {"name": "echo"}, "echo"),
        ("prompts/get", {"name": "p", "uri": "u"}, "p"),
        ("resources/read", {"name": "n", "uri": "file:///a"}, "file:///a"),
        # The same length as a name-bearing method, one letter off: no name.
        ("tools/calm", {"name": "echo"}, None),
        ("resources/reed", {"uri": "file:///a"}, None),
        # Not ASCII (another string kind), the same number of characters: no name.
        ("tools/cal\u0142", {"name": "echo"}, None),
        ("prompts/get", {"name": 5}, None),  # not a string
    ],
)
def test_the_mirrored_name_is_read_for_exactly_the_name_bearing_methods(
    method: str, params: dict[str, Any], name: str | None
) -> None:
    # The compiled reader (mcp/_envelope.pyx) compares the method with the three
    # name-bearing ones itself and reads the fields from their slots.
    body = json.dumps({"jsonrpc": "2.0", "id": 3, "method": method, "params": params}).encode()
    for raw in (body, json.dumps(json.loads(body), ensure_ascii=False).encode()):
        env = check_envelope(raw, allow_batch=False)
        assert isinstance(env, Envelope)
        assert (env.kind, env.method, env.id, env.name) == ("request", method, 3, name)
