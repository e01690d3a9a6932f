"""Fuzz target: the MCP proxy's JSON-RPC envelope scanner (runmcp_fast.mcp._envelope).

Oracle: where the scanner decides (`scan_single` not None) it gives exactly the
Envelope msgspec's decode and `fast_envelope` give (`decode_single`), with the same
types for the id and the name; `check_single`, the data plane's entry, answers as
msgspec does for an ASCII body and leaves any other to jsonrpc (None): msgspec checks
UTF-8 only in the strings it decodes; and `jsonrpc.check_envelope`, the whole check,
gives the same Envelope. The scanner reads strings 16 bytes a step (`_jsonstr.h`).
"""

from __future__ import annotations

from harness import instrumented, main

with instrumented():
    # (jsonrpc also binds the scanner to its types when imported: _envelope.bind)
    from runmcp_fast.mcp import _envelope, jsonrpc


def one_input(data: bytes) -> None:
    scanned = _envelope.scan_single(data)
    decoded = _envelope.decode_single(data)
    if scanned is not None:
        assert data.isascii(), data
        assert scanned == decoded, (data, scanned, decoded)
        assert type(scanned.id) is type(decoded.id), data
        assert type(scanned.name) is type(decoded.name), data
    expected = decoded if data.isascii() else None
    checked = _envelope.check_single(data)
    assert checked == expected, data
    # The whole check (Python: also what gives the fuzzer its coverage) agrees with
    # every Envelope the C entry gives.
    whole = jsonrpc.check_envelope(data, allow_batch=False)
    if checked is not None:
        assert whole == checked, (data, whole, checked)


if __name__ == "__main__":
    main("envelope", one_input)
