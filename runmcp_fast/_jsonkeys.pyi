"""Type stub for runmcp_fast/_jsonkeys.pyx (the duplicate-key tables, their hash and key)."""

def key_summary(data: bytes) -> tuple[int, int]:
    """(SipHash-1-3 under the process key, 8-byte summary) of the key bytes `data`."""
