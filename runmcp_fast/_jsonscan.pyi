"""Type stub for the compiled duplicate-key scanner (runmcp_fast/_jsonscan.pyx)."""

def duplicate_key(data: bytes | bytearray | memoryview) -> str | None:
    """The JSON pointer of the first repeated object key in `data`, or None."""

def _key_summary(data: bytes) -> tuple[int, int]:
    """_jsonkeys.key_summary through this module's cimports of _jsonkeys.pxd."""
