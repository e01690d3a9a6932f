"""Fuzz target: an upstream's response as the data plane reads it (_respscan.h, through
runmcp_fast._dataplane's scan_response_head and read_chunked).

Oracle: cutting the bytes into reads changes nothing (the same body and end, or the
same refusal); a head read whole is no head at any shorter cut (never refused, never
ended early); and where llhttp (httptools) refuses a head or a chunked body, the scan
refuses it too or waits for more: it may be stricter, never laxer. (Save in chunk
extensions, which are dropped: they are read as value characters up to the CRLF, where
llhttp wants tokens and quoted strings.)
"""

from __future__ import annotations

from harness import instrumented, main

with instrumented():
    import httptools

    from runmcp_fast._dataplane import read_chunked, scan_response_head


def _llhttp_refuses(raw: bytes) -> bool:
    class Protocol:
        pass

    try:
        httptools.HttpResponseParser(Protocol()).feed_data(raw)
    except httptools.HttpParserError as exc:
        # (a 101 is read, and paused there: httptools raises that too)
        return "CONNECT/Upgrade" not in str(exc)
    return False


def _chunked(data: bytes, cuts: list[int]) -> tuple[bytes, int] | str | None:
    try:
        return read_chunked(data, cuts)
    except ValueError:
        return "refused"


def one_input(data: bytes) -> None:
    if not data:
        return
    step = data[0] % 29 + 1
    raw = data[1:]
    cuts = list(range(step, len(raw), step))

    whole = _chunked(raw, [])
    assert _chunked(raw, cuts) == whole, (whole, cuts)
    if whole != "refused" and b";" not in raw:
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        framed = raw if whole is None else raw[: whole[1]]  # (what follows is not its)
        assert not _llhttp_refuses(head + framed), raw

    try:
        read = scan_response_head(raw)
    except ValueError:
        return
    if read is None:
        return
    end = read[3]
    for cut in range(0, end, step):
        assert scan_response_head(raw[:cut]) is None, cut
    # (The framing fields' values are _scan_head's to judge, after the grammar.)
    if not any(name.lower() in (b"content-length", b"transfer-encoding") for name, _ in read[2]):
        assert not _llhttp_refuses(raw[:end]), raw[:end]


if __name__ == "__main__":
    main("response", one_input)
