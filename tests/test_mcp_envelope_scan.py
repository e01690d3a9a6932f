"""The MCP envelope scanner (mcp/_envelope.pyx: _scan_single, valid_single) against msgspec.

The proxy checks every POST body's JSON-RPC envelope. The common message is read off
the bytes by a scanner; where it decides, it must give exactly the Envelope that
msgspec's decode and fast_envelope give (`decode_single`), and where it is not sure it
must leave the body to them. These tests hold it to that on the messages MCP clients
send, on generated ones (any JSON-RPC-like shape, any spacing, repeated keys) and on
those bytes cut and changed, and check that it does decide the common ones (else it
would be a scanner that never answers: correct, and useless).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runmcp_fast.mcp import _envelope, jsonrpc


def agree(body: bytes) -> Any:
    """The scanner's answer for `body`, checked against msgspec's where it decides."""
    scanned = _envelope.scan_single(body)
    decoded = _envelope.decode_single(body)
    if scanned is not None:
        assert scanned == decoded, body
        assert type(scanned.id) is type(decoded.id), body
        assert type(scanned.name) is type(decoded.name), body
    # check_single (the data plane's entry) answers as msgspec would, either way.
    assert _envelope.check_single(body) == decoded, body
    # valid_single (the data plane's entry where no step reads the Envelope) accepts
    # exactly what the scanner decides: never a body msgspec would refuse.
    assert _envelope.valid_single(body) is (scanned is not None), body
    return scanned


COMMON = [
    b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18",'
    b'"capabilities":{},"clientInfo":{"name":"mcp","version":"1.0"}}}',
    b'{"jsonrpc":"2.0","method":"notifications/initialized"}',
    b'{"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello"}},'
    b'"jsonrpc":"2.0","id":2}',
    b'{"jsonrpc": "2.0", "id": "req-7", "method": "tools/list", "params": {}}',
    b'{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"file:///a.txt"}}',
    b'{"jsonrpc":"2.0","id":4,"method":"prompts/get","params":{"name":"p","arguments":{"a":"1"}}}',
    b'{"jsonrpc":"2.0","id":-12,"method":"ping"}',
    b'{"jsonrpc":"2.0","id":9,"result":{"content":[{"type":"text","text":"x"}]}}',
    b'  {"jsonrpc":"2.0","id":0,"method":"tools/call","params":{"name":"t",'
    b'"arguments":{"n":[1,2.5,-3e4,true,false,null,{"deep":[[["x"]]]}]},"_meta":{}}}\r\n',
]


@pytest.mark.parametrize("body", COMMON)
def test_the_common_messages_are_decided_by_the_scanner(body: bytes) -> None:
    assert agree(body) is not None


@pytest.mark.parametrize(
    "body",
    [
        b'{"jsonrpc":"2.0","id":1,"method":"tools\\/call","params":{"name":"echo"}}',  # escape
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\\u00e9"}}',
        b'{"jsonrpc":"2.0","id":1.0,"method":"ping"}',  # not an int for msgspec
        b'{"jsonrpc":"2.0","id":1e2,"method":"ping"}',
        b'{"jsonrpc":"2.0","id":12345678901234567890123,"method":"ping"}',
        b'{"jsonrpc":"2.0","id":null,"method":"ping"}',
        b'{"jsonrpc":"2.0","id":true,"method":"ping"}',
        b'{"jsonrpc":"1.0","id":1,"method":"ping"}',
        b'{"id":1,"method":"ping"}',
        b'{"jsonrpc":"2.0","id":1,"method":"ping"} x',
        b'{"jsonrpc":"2.0","id":1,"method":"ping",}',
        b'{"jsonrpc":"2.0","id":01,"method":"ping"}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[1]}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":1e999}}',
        b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":"\\ud800"}}',  # lone surrogate
        b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":"\x01"}}',  # control character
        b'{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"m"}}',
        b'{"jsonrpc":"2.0","id":1,"method":"m","result":1}',
        b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]',
        b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":' + b"[" * 100 + b"]" * 100 + b"}}",
        b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":tru}}',
        b"",
        b"{",
    ],
)
def test_what_the_scanner_is_not_sure_of_goes_to_msgspec(body: bytes) -> None:
    assert agree(body) is None


@pytest.mark.parametrize(
    "body",
    [
        b'{"jsonrpc":"2.0","id":1,"method":"a","method":"tools/call","params":{"name":"x"}}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","name":"y"}}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"},"params":{}}',
        b'{"jsonrpc":"1.0","jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"uri":"u"}}',
        b'{"jsonrpc":"2.0","id":1,"id":"2","method":"ping"}',
    ],
)
def test_a_repeated_member_goes_to_msgspec(body: bytes) -> None:
    """msgspec checks each occurrence and keeps the last: its rules, not copied."""
    assert agree(body) is None


@pytest.mark.parametrize(
    "body",
    [
        '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"café"}}'.encode(),
        '{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":"€ and more than 16 bytes"}}'.encode(),
        '{"jsonrpc":"2.0","id":"é","method":"ping"}'.encode(),
        b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":"\xff"}}',  # not UTF-8
        b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":1}}\xc2\xa0',
    ],
)
def test_a_body_that_is_not_ascii_is_never_decided_in_c(body: bytes) -> None:
    """The scanner accepts ASCII alone: the data plane's entry (check_single) checks
    nothing else before it, and msgspec checks UTF-8 only in the strings it decodes,
    so such a body must reach jsonrpc's own check (None here), which checks it."""
    assert _envelope.scan_single(body) is None
    assert _envelope.check_single(body) is None
    if body.startswith(b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":"\xff'):
        assert isinstance(jsonrpc.check_envelope(body, allow_batch=False), jsonrpc.EnvelopeError)


json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
methods = st.sampled_from(
    ["tools/call", "prompts/get", "resources/read", "initialize", "ping", "tools/list", "é/x"]
)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    members: list[tuple[str, Any]] = []
    if draw(st.booleans()) or True:
        members.append(("jsonrpc", draw(st.sampled_from(["2.0", "2.0", "1.0", 2.0, None]))))
    if draw(st.booleans()):
        members.append(("method", draw(st.one_of(methods, json_value))))
    if draw(st.booleans()):
        members.append(
            ("id", draw(st.one_of(st.integers(-(2**65), 2**65), st.text(max_size=5), json_leaf)))
        )
    if draw(st.booleans()):
        params = draw(
            st.dictionaries(
                st.sampled_from(["name", "uri", "arguments", "_meta"]), json_value, max_size=4
            )
        )
        members.append(("params", params if draw(st.integers(0, 9)) else draw(json_value)))
    if draw(st.integers(0, 4)) == 0:
        members.append(("result", draw(json_value)))
    if draw(st.integers(0, 6)) == 0:
        members.append(("error", draw(json_value)))
    if draw(st.integers(0, 3)) == 0:
        members.append((draw(st.text(max_size=6)), draw(json_value)))
    if members and draw(st.integers(0, 4)) == 0:
        members.append(draw(st.sampled_from(members)))  # a repeated key
    order = draw(st.permutations(members))
    space = draw(st.sampled_from(["", " ", "\n  ", "\t"]))
    text = (
        "{"
        + ("," + space).join(
            json.dumps(key) + ":" + space + json.dumps(value) for key, value in order
        )
        + "}"
    )
    return (space + text + space).encode("ascii")


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_generated_messages_agree_with_msgspec(body: bytes) -> None:
    agree(body)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages(), st.data())
def test_generated_messages_cut_or_changed_agree_with_msgspec(
    body: bytes, data: st.DataObject
) -> None:
    at = data.draw(st.integers(0, max(0, len(body) - 1)))
    change = data.draw(st.sampled_from(["cut", "byte", "insert"]))
    if change == "cut":
        body = body[:at]
    elif change == "byte":
        body = body[:at] + bytes([data.draw(st.integers(0, 127))]) + body[at + 1 :]
    else:
        body = (
            body[:at]
            + data.draw(st.sampled_from([b",", b"}", b"]", b'"', b"\\", b" 1", b"{"]))
            + body[at:]
        )
    agree(body)


def test_the_proxy_takes_the_scanners_envelope() -> None:
    """check_envelope (the slow path's entry) and the scanner agree on the common ones."""
    for body in COMMON:
        found = jsonrpc.check_envelope(body, allow_batch=False)
        assert found == _envelope.scan_single(body)
