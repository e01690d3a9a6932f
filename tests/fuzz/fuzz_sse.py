"""Fuzz target: the SSE parser and the legacy `endpoint` rewriter (runmcp_fast.mcp.sse).

Oracle: cutting a stream into reads changes nothing (the same events and state
from the parser, the same bytes out of the rewriter, or the same refusal), and a
stream whose endpoint was not rewritten comes out byte for byte as it went in.
The rewrite is the proxy's in shape: it refuses (ValueError) an endpoint on
another server or one `urlsplit` can not read, and the rewriter then raises
(the gateway cuts the stream: tests/test_fuzz_regressions.py).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from harness import instrumented, main

with instrumented():
    from runmcp_fast.mcp.sse import EndpointRewriter, SseParser, endpoint_session_id


def _rewrite(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.netloc and parts.netloc.lower() != "127.0.0.1:8000":
        raise ValueError(f"the endpoint {uri!r} is on another server")
    return "/gw" + (parts.path or "/") + ("?" + parts.query if parts.query else "")


def _run(rewriter: EndpointRewriter, chunks: list[bytes]) -> bytes | str:
    """What the rewriter lets out, or the refusal it raised."""
    try:
        out = [rewriter.feed(chunk) for chunk in chunks]
    except ValueError:
        return "refused"
    return b"".join(out) + rewriter.flush()


def one_input(data: bytes) -> None:
    if not data:
        return
    step = data[0] % 23 + 1
    stream = data[1:]
    chunks = [stream[i : i + step] for i in range(0, len(stream), step)]

    whole = SseParser()
    events = whole.feed(stream)
    cut = SseParser()
    events_cut = [event for chunk in chunks for event in cut.feed(chunk)]
    assert events == events_cut, (events, events_cut)
    assert (whole.last_event_id, whole.retry) == (cut.last_event_id, cut.retry)

    limit = 16 + data[0] * 8
    one = EndpointRewriter(_rewrite, limit=limit)
    out = _run(one, [stream])
    many = EndpointRewriter(_rewrite, limit=limit)
    out_cut = _run(many, chunks)
    assert out == out_cut, (out, out_cut)
    assert one.rewritten == many.rewritten
    if out == "refused":
        assert one.rewritten is None
    elif one.rewritten is None:
        assert out == stream
    else:
        assert one.endpoint is not None
        endpoint_session_id(one.endpoint)


if __name__ == "__main__":
    main("sse", one_input)
