"""An upstream's response read without llhttp (_respscan.h): its head's checks and its
chunked body's framing, from Python, against what they must accept and refuse, and
against llhttp (httptools, the parser they replace) on the same bytes.

The gateway-level behaviour (502 for an invalid response, the client's connection
aborted mid-body, no reuse after junk) is in test_proxy_failures.py and its neighbours.
"""

from __future__ import annotations

import string

import httptools
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runmcp_fast._dataplane import read_chunked, scan_response_head

TCHAR = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
# Value bytes: HTAB, SP, VCHAR, obs-text.
VALUE_BYTES = [9, *range(0x20, 0x7F), *range(0x80, 0x100)]


def llhttp_reads(raw: bytes, cuts: list[int] | None = None) -> tuple[bytes, bool] | None:
    """What llhttp makes of a response: (its body, complete); None when it refuses it."""
    body = bytearray()
    done: list[bool] = []

    class Protocol:
        def on_body(self, data: bytes) -> None:
            body.extend(data)

        def on_message_complete(self) -> None:
            done.append(True)

    parser = httptools.HttpResponseParser(Protocol())
    start = 0
    try:
        for stop in [*sorted(cuts or []), len(raw)]:
            parser.feed_data(raw[start:stop])
            start = stop
            if done:
                break
    except httptools.HttpParserError as exc:
        if "CONNECT/Upgrade" not in str(exc):  # (a 101 is read, and paused there)
            return None
    return bytes(body), bool(done)


names = st.text(TCHAR, min_size=1, max_size=24).map(str.encode)
values = st.lists(st.sampled_from(VALUE_BYTES), max_size=40).map(bytes)


@st.composite
def heads(draw: st.DrawFn) -> tuple[bytes, int, list[tuple[bytes, bytes]]]:
    status = draw(st.integers(200, 599))
    version = draw(st.sampled_from([b"1.1", b"1.0"]))
    reason = draw(st.sampled_from([b" OK", b" Not Found", b"", b" ", b" w\xe9ird\treason"]))
    fields = draw(
        st.lists(
            st.tuples(names, values).filter(
                lambda f: f[0].lower() not in (b"content-length", b"transfer-encoding")
            ),
            max_size=8,
        )
    )
    lines = b"".join(name + b":" + value + b"\r\n" for name, value in fields)
    head = b"HTTP/" + version + b" %d" % status + reason + b"\r\n" + lines + b"\r\n"
    return head, status, fields


@st.composite
def chunked_bodies(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """(a chunked encoding, the body it frames)."""
    pieces = draw(st.lists(st.binary(min_size=1, max_size=300), max_size=6))
    out = bytearray()
    for piece in pieces:
        size = b"%x" % len(piece)
        size = draw(st.sampled_from([size, size.upper(), b"0" + size]))
        ext = draw(st.sampled_from([b"", b";a", b";name=value", b';q="x y"']))
        out += size + ext + b"\r\n" + piece + b"\r\n"
    out += draw(st.sampled_from([b"0", b"000"])) + b"\r\n"
    for name, value in draw(st.lists(st.tuples(names, values), max_size=3)):
        out += name + b":" + value + b"\r\n"
    out += b"\r\n"
    return bytes(out), b"".join(pieces)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(heads(), st.binary(max_size=40))
def test_a_valid_head_reads_as_written_and_as_llhttp_reads_it(head, after) -> None:
    raw, status, fields = head
    read = scan_response_head(raw + after)
    assert read is not None
    assert read[0] == status
    assert read[1] is raw.startswith(b"HTTP/1.1")
    assert read[2] == fields
    assert read[3] == len(raw)
    # Every shorter piece of it is not a head yet (never refused, never ended early).
    for cut in range(len(raw)):
        assert scan_response_head(raw[:cut]) is None
    assert llhttp_reads(raw) is not None


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(chunked_bodies(), st.lists(st.integers(0, 2000), max_size=6), st.binary(max_size=20))
def test_a_chunked_body_reads_whole_however_it_is_cut(encoded, cuts, after) -> None:
    raw, body = encoded
    assert read_chunked(raw + after, cuts) == (body, len(raw))
    # Cut short anywhere, it is not over yet.
    assert read_chunked(raw[: len(raw) - 1], cuts) is None
    # llhttp reads the same body from it.
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert llhttp_reads(head + raw) == (body, True)


def test_every_cut_of_a_body_reads_the_same() -> None:
    raw = b"5;x=y\r\nhello\r\n1A\r\n" + b"z" * 26 + b"\r\n0\r\nX-T: 1\r\n\r\n"
    body = b"hello" + b"z" * 26
    for cut in range(len(raw) + 1):
        for second in (cut, cut + 1, cut + 7):
            assert read_chunked(raw + b"NEXT", [cut, second]) == (body, len(raw))


INVALID_HEADS = {
    "not-http": b"HTTX/1.1 200 OK\r\n\r\n",
    "version-1.2": b"HTTP/1.2 200 OK\r\n\r\n",
    "status-letters": b"HTTP/1.1 abc OK\r\n\r\n",
    "status-four-digits": b"HTTP/1.1 2000 OK\r\n\r\n",
    "status-two-digits": b"HTTP/1.1 20 OK\r\n\r\n",
    "two-spaces": b"HTTP/1.1  200 OK\r\n\r\n",
    "status-line-bare-lf": b"HTTP/1.1 200 OK\nX-A: b\r\n\r\n",
    "status-line-bare-cr": b"HTTP/1.1 200 OK\rX-A: b\r\n\r\n",
    "header-bare-lf": b"HTTP/1.1 200 OK\r\nX-A: b\nX-C: d\r\n\r\n",
    "header-bare-cr": b"HTTP/1.1 200 OK\r\nX-A: b\rX-C: d\r\n\r\n",
    "end-bare-lf": b"HTTP/1.1 200 OK\r\nX-A: b\r\n\n",
    "end-bare-cr": b"HTTP/1.1 200 OK\r\nX-A: b\r\n\rX",
    "no-colon": b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n",
    "space-before-colon": b"HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n",
    "tab-before-colon": b"HTTP/1.1 200 OK\r\nX-A\t: 0\r\n\r\n",
    "empty-name": b"HTTP/1.1 200 OK\r\n: value\r\n\r\n",
    "separator-in-name": b"HTTP/1.1 200 OK\r\nX(A): b\r\n\r\n",
    "nul-in-name": b"HTTP/1.1 200 OK\r\nX\x00A: b\r\n\r\n",
    "obs-fold": b"HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\n\r\n",
    "nul-in-value": b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\n\r\n",
    "del-in-value": b"HTTP/1.1 200 OK\r\nX-A: a\x7fb\r\n\r\n",
    "esc-in-value": b"HTTP/1.1 200 OK\r\nX-A: a\x1bb\r\n\r\n",
    "long-value-ctl": b"HTTP/1.1 200 OK\r\nX-A: " + b"a" * 40 + b"\x0b" + b"a" * 40 + b"\r\n\r\n",
}


@pytest.mark.parametrize("raw", INVALID_HEADS.values(), ids=INVALID_HEADS.keys())
def test_an_invalid_head_is_refused_as_llhttp_refuses_it(raw: bytes) -> None:
    with pytest.raises(ValueError):
        scan_response_head(raw + b"\r\n" * 4)
    assert llhttp_reads(raw + b"\r\n" * 4) is None


# Refused here, read by httptools' llhttp (lenient there; the RFC's grammar here): an
# HTTP/2.0 status line on an HTTP/1 connection, a control character in the reason
# phrase (an HTTP/1.1 status line is forwarded as it came).
STRICTER_HEADS = {
    "version-2": b"HTTP/2.0 200 OK\r\n\r\n",
    "reason-ctl": b"HTTP/1.1 200 O\x01K\r\n\r\n",
}


@pytest.mark.parametrize("raw", STRICTER_HEADS.values(), ids=STRICTER_HEADS.keys())
def test_a_head_llhttp_would_read_is_refused_by_the_grammar(raw: bytes) -> None:
    with pytest.raises(ValueError):
        scan_response_head(raw)


INVALID_CHUNKED = {
    "no-size": b"\r\nhello\r\n0\r\n\r\n",
    "size-not-hex": b"5g\r\nhello\r\n0\r\n\r\n",
    "size-sign": b"+5\r\nhello\r\n0\r\n\r\n",
    "size-huge": b"1" + b"0" * 16 + b"\r\nhello\r\n0\r\n\r\n",
    "size-bare-lf": b"5\nhello\r\n0\r\n\r\n",
    "size-bare-cr": b"5\rhello\r\n0\r\n\r\n",
    "space-then-no-ext": b"5 x\r\nhello\r\n0\r\n\r\n",
    "space-before-ext": b"5 ;a\r\nhello\r\n0\r\n\r\n",
    "space-after-size": b"5 \r\nhello\r\n0\r\n\r\n",
    "ext-ctl": b"5;a\x01b\r\nhello\r\n0\r\n\r\n",
    "ext-bare-lf": b"5;a\nhello\r\n0\r\n\r\n",
    "data-too-long": b"5\r\nhelloX\r\n0\r\n\r\n",
    "data-no-crlf": b"5\r\nhello0\r\n\r\n",
    "data-bare-lf": b"5\r\nhello\n0\r\n\r\n",
    "last-bare-lf": b"5\r\nhello\r\n0\n\r\n",
    "trailer-no-colon": b"0\r\nX-T\r\n\r\n",
    "trailer-ctl": b"0\r\nX-T: a\x00b\r\n\r\n",
    "trailer-fold": b"0\r\nX-T: a\r\n b\r\n\r\n",
    "trailer-bare-lf": b"0\r\nX-T: a\n\r\n",
    "end-bare-lf": b"0\r\n\n",
    "end-bare-cr": b"0\r\n\rX",
}


@pytest.mark.parametrize("raw", INVALID_CHUNKED.values(), ids=INVALID_CHUNKED.keys())
def test_an_invalid_chunked_body_is_refused_as_llhttp_refuses_it(raw: bytes) -> None:
    with pytest.raises(ValueError):
        read_chunked(raw + b"\r\n" * 4)
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert llhttp_reads(head + raw + b"\r\n" * 4) is None


def test_an_extension_is_read_loosely_up_to_its_crlf() -> None:
    # Extensions are dropped (the body is re-chunked): read as value characters up to
    # the CRLF, where llhttp wants tokens and quoted strings. The size and the framing
    # are read the same.
    assert read_chunked(b'5;\xfb="x\r\nhello\r\n0;;\r\n\r\n') == (b"hello", 22)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(heads(), st.data())
def test_a_byte_changed_in_a_head_is_refused_where_llhttp_refuses_it(head, data) -> None:
    """One byte of a valid head made a control character, a bare CR or LF, or a
    separator: wherever llhttp refuses the head, so does the scan (it may refuse more:
    never less)."""
    raw = head[0]
    at = data.draw(st.integers(0, len(raw) - 3), label="at")  # (not the final CRLF)
    byte = data.draw(st.sampled_from([0, 1, 9, 10, 13, 27, 32, 34, 40, 58, 127]), label="byte")
    changed = raw[:at] + bytes([byte]) + raw[at + 1 :]
    try:
        ours = scan_response_head(changed + b"X" * 4)
    except ValueError:
        return
    # (Not the X's to llhttp: after a 204's or 304's head they start a next message.)
    if llhttp_reads(changed) is None:
        # llhttp refused it: ours must too, unless it waits for more (the change made
        # a longer head that does not end here).
        assert ours is None
