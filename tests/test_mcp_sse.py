"""Server-Sent Events (runmcp_fast.mcp.sse): the parser against the WHATWG
examples, split at every byte; the encoder; the legacy endpoint rewriter on
real streams of the official SDKs, split at every byte."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

import pytest

from runmcp_fast.mcp.sse import (
    EndpointRewriter,
    Event,
    SseParser,
    encode_event,
    endpoint_session_id,
)


def parse(stream: bytes) -> list[Event]:
    return SseParser().feed(stream)


def parse_split(stream: bytes, cuts: list[int]) -> list[Event]:
    parser = SseParser()
    events: list[Event] = []
    bounds = [0, *cuts, len(stream)]
    for start, stop in itertools.pairwise(bounds):
        events += parser.feed(stream[start:stop])
    return events


def line_endings(stream: bytes) -> list[bytes]:
    """`stream` (written with LF) with LF, CRLF and CR line ends."""
    return [stream, stream.replace(b"\n", b"\r\n"), stream.replace(b"\n", b"\r")]


# ----------------------------------------------------------------- parser

# The examples of https://html.spec.whatwg.org/multipage/server-sent-events.html
# ("Parsing an event stream" / "Interpreting an event stream"), with what a
# browser dispatches for each.
SPEC_EXAMPLES: list[tuple[str, bytes, list[Event]]] = [
    (
        "stock ticker: data lines joined with LF",
        b"data: YHOO\ndata: +2\ndata: 10\n\n",
        [Event("YHOO\n+2\n10")],
    ),
    (
        "four blocks: comment, id, empty id, leading space kept",
        b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n",
        [Event("first event", id="1"), Event("second event", id=""), Event(" third event", id="")],
    ),
    (
        "data without colon; the last block is never terminated",
        b"data\n\ndata\ndata\n\ndata:",
        [Event(""), Event("\n")],
    ),
    ("one optional space", b"data:test\n\ndata: test\n\n", [Event("test"), Event("test")]),
    (
        "event type and retry",
        b"event: add\ndata: 73857293\n\nevent: remove\ndata: 2153\n\nretry: 10000\nevent: add\ndata: 113411\n\n",
        [Event("73857293", "add"), Event("2153", "remove"), Event("113411", "add", retry=10000)],
    ),
]

MORE: list[tuple[str, bytes, list[Event]]] = [
    ("no blank line at the end", b"data: a\n\ndata: b\n", [Event("a")]),
    ("block without data dispatches nothing", b"event: x\nid: 5\n\ndata: y\n\n", [Event("y", id="5")]),
    ("id persists", b"id: 1\ndata: a\n\ndata: b\n\n", [Event("a", id="1"), Event("b", id="1")]),
    ("id with NUL is ignored", b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n", [Event("a", id="1"), Event("b", id="1")]),
    ("retry: digits only", b"retry: 10a\ndata: a\n\nretry:\ndata: b\n\nretry: 7\ndata: c\n\n",
     [Event("a"), Event("b"), Event("c", retry=7)]),
    ("retry: not unicode digits", "retry: ١٢\ndata: a\n\n".encode(), [Event("a")]),
    ("unknown fields are ignored", b"foo: bar\ndata: a\nx\n\n", [Event("a")]),
    ("field names are case-sensitive", b"Data: a\nDATA: b\ndata: c\n\n", [Event("c")]),
    ("only one space is removed", b"data:   a  \n\n", [Event("  a  ")]),
    ("colon in the value", b"data: a: b:c\n\n", [Event("a: b:c")]),
    ("empty event type is message", b"event:\ndata: a\n\n", [Event("a")]),
    ("last event type wins", b"event: a\nevent: b\ndata: x\n\n", [Event("x", "b")]),
    ("comments anywhere", b": c1\ndata: a\n: c2\ndata: b\n\n:\n\n", [Event("a\nb")]),
    ("BOM at the start is dropped", b"\xef\xbb\xbfdata: a\n\n", [Event("a")]),
    ("only the first BOM", b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\ndata: b\n\n", [Event("b")]),
    ("BOM later is data", b"data: \xef\xbb\xbfa\n\n", [Event("\ufeffa")]),
    ("invalid UTF-8 is replaced", b"data: a\xffb\n\n", [Event("a\ufffdb")]),
    ("UTF-8", "data: é ✓ 🐍\n\n".encode(), [Event("é ✓ 🐍")]),
    ("VT, FF, FS are not line ends", b"data: a\x0bb\x0cc\x1cd\x85e\n\n", [Event("a\x0bb\x0cc\x1cd\ufffde")]),
    ("blank lines only", b"\n\n\n", []),
    ("empty stream", b"", []),
]  # fmt: skip

PARSER_CASES = SPEC_EXAMPLES + MORE


@pytest.mark.parametrize(
    ("stream", "expected"), [c[1:] for c in PARSER_CASES], ids=[c[0] for c in PARSER_CASES]
)
def test_parser(stream: bytes, expected: list[Event]) -> None:
    for variant in line_endings(stream):
        assert parse(variant) == expected, variant


@pytest.mark.parametrize(
    ("stream", "expected"), [c[1:] for c in PARSER_CASES], ids=[c[0] for c in PARSER_CASES]
)
def test_parser_every_split(stream: bytes, expected: list[Event]) -> None:
    for variant in line_endings(stream):
        for cut in range(len(variant) + 1):
            assert parse_split(variant, [cut]) == expected, (variant, cut)
        assert parse_split(variant, list(range(1, len(variant)))) == expected  # byte by byte


def test_parser_every_pair_of_splits() -> None:
    stream = b"\xef\xbb\xbfid: 1\r\nevent: e\r\ndata: a\r\ndata\r\rdata: b\n\n: x\r\n\r\n"
    expected = parse(stream)
    assert expected == [Event("a\n", "e", "1"), Event("b", id="1")]
    for i in range(len(stream) + 1):
        for j in range(i, len(stream) + 1):
            assert parse_split(stream, [i, j]) == expected, (i, j)


def test_crlf_split_is_one_line_end() -> None:
    # A CR ending one feed and an LF starting the next are one line end, not
    # a line end and a blank line (which would dispatch early).
    parser = SseParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\ndata: b\r") == []
    assert parser.feed(b"\n\r") == [Event("a\nb")]
    assert parser.feed(b"\n") == []  # the LF of that CRLF blank line


def test_parser_state() -> None:
    parser = SseParser()
    parser.feed(b"id: 7\nretry: 1500\n\n")  # no data: no event, but the state moves
    assert (parser.last_event_id, parser.retry) == ("7", 1500)
    assert parser.feed(b"data: x\n\n") == [Event("x", id="7")]


def test_parser_random_chunks() -> None:
    rng = random.Random(7)
    stream = b"".join(
        encode_event(f"line {i}\nsecond {'é' * (i % 3)}", event="message", id=str(i))
        + b": ping\r\n\r\n"
        for i in range(50)
    )
    expected = parse(stream)
    assert len(expected) == 50
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(stream)), 40))
        assert parse_split(stream, cuts) == expected


# ----------------------------------------------------------------- encoder


@pytest.mark.parametrize(
    ("kwargs", "wire", "event"),
    [
        ({"data": "x"}, b"data: x\n\n", Event("x")),
        ({"data": b"x"}, b"data: x\n\n", Event("x")),
        ({"data": ""}, b"data: \n\n", Event("")),
        ({"data": "a\nb\r\nc\rd"}, b"data: a\ndata: b\ndata: c\ndata: d\n\n", Event("a\nb\nc\nd")),
        ({"data": "a\n"}, b"data: a\ndata: \n\n", Event("a\n")),
        (
            {"data": '{"jsonrpc":"2.0"}', "event": "message", "id": "s1-4", "retry": 3000},
            b'event: message\nid: s1-4\nretry: 3000\ndata: {"jsonrpc":"2.0"}\n\n',
            Event('{"jsonrpc":"2.0"}', "message", "s1-4", 3000),
        ),
        ({"data": " lead", "id": ""}, b"id: \ndata:  lead\n\n", Event(" lead", id="")),
    ],
)
def test_encode_event(kwargs: dict[str, object], wire: bytes, event: Event) -> None:
    assert encode_event(**kwargs) == wire  # type: ignore[arg-type]
    assert parse(wire) == [event]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"data": "x", "event": "a\nb"},
        {"data": "x", "event": "a\r"},
        {"data": "x", "id": "1\n2"},
        {"data": "x", "id": "1\x002"},
        {"data": "x", "retry": -1},
    ],
)
def test_encode_event_refuses(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        encode_event(**kwargs)  # type: ignore[arg-type]


# ----------------------------------------------------------------- endpoint rewriter

# Recorded from the official Python SDK (mcp 2.3.0, mcp.server.sse
# SseServerTransport("/messages/") through sse-starlette): one chunk per ASGI
# body message, CRLF line ends; a keep-alive comment as sse-starlette sends.
PYTHON_SDK_STREAM = [
    b"event: endpoint\r\ndata: /messages/?session_id=5f979f63c9a24649af4eed77d9d7fb17\r\n\r\n",
    b'event: message\r\ndata: {"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2024-11-05",'
    b'"capabilities":{},"serverInfo":{"name":"demo","version":"1"}}}\r\n\r\n',
    b": ping - 2025-01-01 00:00:15.000000+00:00\r\n\r\n",
    b'event: message\r\ndata: {"jsonrpc":"2.0","method":"notifications/message",'
    b'"params":{"level":"info","data":"line1\\nline2"}}\r\n\r\n',
]
# As the TypeScript SDK's SSEServerTransport writes it (src/server/sse.ts:
# `event: endpoint\ndata: ${pathname + search}\n\n`, `sessionId` param).
TS_SDK_STREAM = [
    b"event: endpoint\ndata: /messages?sessionId=0c8e6a7e-52b1-4a3e-9d3c-6c2f7d0b1a22\n\n",
    b'event: message\ndata: {"jsonrpc":"2.0","id":1,"result":{}}\n\n',
]


def prefix(uri: str) -> str:
    return "/gw/svc" + uri


def rewrite_split(
    stream: bytes, cuts: list[int], rewrite: Callable[[str], str] = prefix, limit: int = 8192
) -> tuple[bytes, EndpointRewriter]:
    rewriter = EndpointRewriter(rewrite, limit=limit)
    out = []
    bounds = [0, *cuts, len(stream)]
    for start, stop in itertools.pairwise(bounds):
        out.append(rewriter.feed(stream[start:stop]))
    out.append(rewriter.flush())
    return b"".join(out), rewriter


@pytest.mark.parametrize(
    ("chunks", "uri", "session_id"),
    [
        (
            PYTHON_SDK_STREAM,
            "/messages/?session_id=5f979f63c9a24649af4eed77d9d7fb17",
            "5f979f63c9a24649af4eed77d9d7fb17",
        ),
        (
            TS_SDK_STREAM,
            "/messages?sessionId=0c8e6a7e-52b1-4a3e-9d3c-6c2f7d0b1a22",
            "0c8e6a7e-52b1-4a3e-9d3c-6c2f7d0b1a22",
        ),
    ],
    ids=["python-sdk", "typescript-sdk"],
)
def test_rewriter_real_streams_every_split(chunks: list[bytes], uri: str, session_id: str) -> None:
    stream = b"".join(chunks)
    expected = stream.replace(uri.encode(), prefix(uri).encode(), 1)
    assert expected != stream
    for cut in range(len(stream) + 1):
        out, rewriter = rewrite_split(stream, [cut])
        assert out == expected, cut
        assert (rewriter.endpoint, rewriter.rewritten) == (uri, prefix(uri))
        assert endpoint_session_id(uri) == session_id
    out, _ = rewrite_split(stream, list(range(1, len(stream))))  # byte by byte
    assert out == expected
    # The client's parser sees the same events, with the new endpoint.
    events = parse(expected)
    assert events[0] == Event(prefix(uri), "endpoint")
    assert events[1:] == parse(stream)[1:]


def test_rewriter_identity_every_pair_of_splits() -> None:
    # With an identity rewrite the output is the input, byte for byte.
    stream = b": hello\r\n\r\n" + b"".join(PYTHON_SDK_STREAM[:2])
    for i in range(0, len(stream) + 1, 3):
        for j in range(i, len(stream) + 1, 2):
            out, rewriter = rewrite_split(stream, [i, j], rewrite=lambda u: u)
            assert out == stream, (i, j)
            assert rewriter.passthrough


def test_rewriter_releases_early_and_passes_through() -> None:
    rewriter = EndpointRewriter(prefix)
    # A comment before the endpoint event is released at once; a partial line is held.
    assert rewriter.feed(b": connected\r\n\r\nevent: endp") == b": connected\r\n\r\n"
    assert rewriter.feed(b"oint\r\ndata: /m?session_id=1\r\n") == b""
    assert rewriter.endpoint is None
    assert rewriter.feed(b"\r\nevent: message\r\n") == (
        b"event: endpoint\r\ndata: /gw/svc/m?session_id=1\r\n\r\nevent: message\r\n"
    )
    assert rewriter.passthrough
    chunk = b'data: {"x":1}\r\n\r\n'
    assert rewriter.feed(chunk) is chunk  # zero-copy after the endpoint event
    assert rewriter.flush() == b""


def test_rewriter_other_events_first() -> None:
    stream = (
        b'event: message\ndata: {"a":1}\n\nevent: endpoint\ndata: /m?sessionId=9\n\ndata: x\n\n'
    )
    expected = stream.replace(b"/m?sessionId=9", b"/gw/svc/m?sessionId=9")
    for cut in range(len(stream) + 1):
        assert rewrite_split(stream, [cut])[0] == expected
    first = b'event: message\ndata: {"a":1}\n\n'
    rewriter = EndpointRewriter(prefix)
    assert rewriter.feed(stream[: len(first) + 6]) == first  # released at its blank line


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        (  # data before event: the type is known only at the block's end
            b"data: /m?session_id=1\nevent: endpoint\n\n",
            b"data: /gw/svc/m?session_id=1\nevent: endpoint\n\n",
        ),
        (  # other fields, comments and line ends of the block are kept
            b"id: 1\r\nevent: endpoint\r\n: note\r\nretry: 500\r\ndata:/m\r\n\r\n",
            b"id: 1\r\nevent: endpoint\r\n: note\r\nretry: 500\r\ndata: /gw/svc/m\r\n\r\n",
        ),
        (  # CR line ends
            b"event: endpoint\rdata: /m?session_id=1\r\r: ping\r\r",
            b"event: endpoint\rdata: /gw/svc/m?session_id=1\r\r: ping\r\r",
        ),
        (  # a BOM at the start of the stream is kept
            b"\xef\xbb\xbfdata: /m\nevent: endpoint\n\n",
            b"\xef\xbb\xbfdata: /gw/svc/m\nevent: endpoint\n\n",
        ),
        (  # absolute URIs are the callback's business
            b"event: endpoint\ndata: http://127.0.0.1:8000/messages/?session_id=ab\n\n",
            b"event: endpoint\ndata: /gw/svchttp://127.0.0.1:8000/messages/?session_id=ab\n\n",
        ),
        (  # an endpoint block without data dispatches nothing: not the endpoint event
            b"event: endpoint\n\nevent: endpoint\ndata: /m\n\n",
            b"event: endpoint\n\nevent: endpoint\ndata: /gw/svc/m\n\n",
        ),
        (  # only the first endpoint event
            b"event: endpoint\ndata: /a\n\nevent: endpoint\ndata: /b\n\n",
            b"event: endpoint\ndata: /gw/svc/a\n\nevent: endpoint\ndata: /b\n\n",
        ),
    ],
    ids=["data-first", "fields-kept", "cr", "bom", "absolute", "no-data", "first-only"],
)
def test_rewriter_shapes(stream: bytes, expected: bytes) -> None:
    for cut in range(len(stream) + 1):
        assert rewrite_split(stream, [cut])[0] == expected, cut


def test_rewriter_several_data_lines() -> None:
    # The URI is the data joined with LF; one rewritten data line replaces them.
    stream = b"event: endpoint\ndata: /a\ndata: b\n\n"
    out, rewriter = rewrite_split(stream, [], lambda uri: "/gw" + uri.replace("\n", "-"))
    assert out == b"event: endpoint\ndata: /gw/a-b\n\n"
    assert rewriter.endpoint == "/a\nb"


def test_rewriter_gives_up() -> None:
    comments = b"".join(b": padding %04d\r\n\r\n" % i for i in range(600))  # ~11 KiB
    stream = comments + b"event: endpoint\r\ndata: /m\r\n\r\n"
    for size in (1, 7, 100, 4096, len(stream)):
        rewriter = EndpointRewriter(prefix, limit=8192)
        out = b""
        held_max = 0
        fed = 0
        for start in range(0, len(stream), size):
            out += rewriter.feed(stream[start : start + size])
            fed += len(stream[start : start + size])
            held_max = max(held_max, fed - len(out))
        out += rewriter.flush()
        assert out == stream, size  # unchanged: the endpoint came too late
        assert rewriter.passthrough
        assert rewriter.endpoint is None
        assert held_max <= max(size, 64)  # comments are never held back


def test_rewriter_limit_is_exact() -> None:
    # Whether the endpoint event is rewritten depends on the limit, never on
    # how the stream is cut: a line counts as ending at its first line-end
    # byte (the CR of the blank line here, at len - 2).
    stream = b": x\r\n\r\nevent: endpoint\r\ndata: /m\r\n\r\n"
    rewritten = stream.replace(b"/m", b"/gw/svc/m")
    for limit in range(len(stream) - 5, len(stream) + 2):
        expected = rewritten if limit > len(stream) - 2 else stream
        for cut in range(len(stream) + 1):
            assert rewrite_split(stream, [cut], limit=limit)[0] == expected, (limit, cut)


def test_rewriter_gives_up_on_a_huge_line() -> None:
    stream = b"data: " + b"x" * 20000 + b"\nevent: endpoint\n\n"
    rewriter = EndpointRewriter(prefix, limit=8192)
    out = rewriter.feed(stream[:5000])
    assert out == b""  # holding a partial line
    out += rewriter.feed(stream[5000:9000])
    assert out == stream[:9000]  # past the limit: released unchanged
    assert rewriter.passthrough
    assert rewriter.feed(stream[9000:]) == stream[9000:]


def test_rewriter_flush_releases_what_it_holds() -> None:
    rewriter = EndpointRewriter(prefix)
    assert rewriter.feed(b"event: endpoint\ndata: /m") == b""
    assert rewriter.flush() == b"event: endpoint\ndata: /m"
    assert rewriter.endpoint is None


def test_rewriter_refuses_a_line_break() -> None:
    rewriter = EndpointRewriter(lambda u: u + "\ndata: evil")
    with pytest.raises(ValueError, match="line break"):
        rewriter.feed(b"event: endpoint\ndata: /m\n\n")


@pytest.mark.parametrize(
    ("uri", "session_id"),
    [
        ("/messages/?session_id=abc", "abc"),
        ("/messages?sessionId=0c8e-1", "0c8e-1"),
        ("http://h:1/messages/?x=1&session_id=z%20y", "z y"),
        ("/messages/", None),
        ("/messages/?session_id=", None),
        ("/messages/?sessionid=abc", None),
    ],
)
def test_endpoint_session_id(uri: str, session_id: str | None) -> None:
    assert endpoint_session_id(uri) == session_id
