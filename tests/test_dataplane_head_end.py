"""How the end of an upstream response's head is found where it is not scanned line by
line (`dataplane/headers.pxi`, `_head_end`: a memchr per CR, the LF CR LF after it
checked) against `bytes.find`, at every offset and on any bytes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runmcp_fast._dataplane import head_end


def expected(data: bytes, pos: int) -> int:
    found = data.find(b"\r\n\r\n", pos)
    return len(data) if found < 0 else found


HEAD = (
    b"HTTP/1.1 200 OK\r\ndate: Mon, 07 Dec 2026 20:58:10 GMT\r\nserver: uvicorn\r\n"
    b"content-type: text/event-stream\r\nmcp-session-id: 0123456789abcdef\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)


def test_a_head_then_its_body() -> None:
    assert head_end(HEAD + b"a0\r\nevent: message\r\n\r\n") == len(HEAD) - 4
    assert head_end(HEAD) == len(HEAD) - 4
    assert head_end(HEAD[:-1]) == len(HEAD) - 1  # not there yet: the length


@pytest.mark.parametrize("at", range(0, 48))
@pytest.mark.parametrize("pad", [b"x", b"\r", b"\r\n", b"\n\r"])
def test_at_every_offset(at: int, pad: bytes) -> None:
    # The terminator at each position, after CRs that do not end a head (a CR, a CRLF,
    # a LF CR), with 0 to 20 bytes after it.
    filler = (pad * 48)[:at]
    for tail in (b"", b"y", b"yy", b"yyy", b"y" * 20):
        data = filler + b"\r\n\r\n" + tail
        assert head_end(data) == expected(data, 0), data
        for pos in (0, 1, at, at + 1):
            if pos <= len(data):
                assert head_end(data, pos) == expected(data, pos), (data, pos)


@settings(max_examples=3000)
@given(
    st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"a", b": ", b"\r\n\r"]), max_size=60),
    st.data(),
)
def test_any_bytes(pieces: list[bytes], data: st.DataObject) -> None:
    raw = b"".join(pieces)
    pos = data.draw(st.integers(0, len(raw)))
    assert head_end(raw, pos) == expected(raw, pos)


def test_a_position_outside_the_data_is_refused() -> None:
    with pytest.raises(ValueError):
        head_end(b"abc", 4)
