"""The inline case-insensitive compare of header names and tokens (`_pathscan.h`,
`rmf_same_ci`) against `bytes.lower`, which folds A-Z only, as libc's strncasecmp
in the C locale did where the compare is used."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runmcp_fast._dataplane import _same_name

# What the data plane compares against: lower-case names and tokens.
KNOWN = [
    b"te", b"via", b"host", b"close", b"expect", b"proxy-", b"chunked", b"trailer",
    b"upgrade", b"connection", b"keep-alive", b"content-type", b"content-length",
    b"x-forwarded-for", b"x-forwarded-host", b"transfer-encoding", b"x-forwarded-proto",
    b"mcp-protocol-version", b"authorization", b"mcp-session-id",
]  # fmt: skip


@pytest.mark.parametrize("lower", KNOWN)
def test_every_spelling_of_a_known_name_and_only_those(lower: bytes) -> None:
    assert _same_name(lower, lower)
    assert _same_name(lower.upper(), lower)
    assert _same_name(lower.title(), lower)
    # Each byte of the name in turn replaced by each of the 256: equal exactly when
    # bytes.lower says so (0x0d for "-", "^" for "~" and past 0x7f among them).
    for i in range(len(lower)):
        for b in range(256):
            name = lower[:i] + bytes([b]) + lower[i + 1 :]
            assert _same_name(name, lower) == (name.lower() == lower), (name, lower)


@settings(max_examples=3000)
@given(st.binary(min_size=0, max_size=40), st.data())
def test_any_bytes_against_any_lower_case_text(name: bytes, data: st.DataObject) -> None:
    lower = data.draw(
        st.one_of(
            st.just(name.lower()),
            st.binary(min_size=len(name), max_size=len(name)).map(bytes.lower),
        )
    )
    assert _same_name(name, lower) == (name.lower() == lower)


def test_two_lengths_are_refused() -> None:
    with pytest.raises(ValueError):
        _same_name(b"host", b"hosts")
