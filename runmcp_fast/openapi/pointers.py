"""JSON pointers (RFC 6901): the addresses every problem and model points with."""

from __future__ import annotations

from urllib.parse import unquote


def escape(token: object) -> str:
    """One reference token: `~` becomes `~0`, `/` becomes `~1` (in that order)."""
    text = str(token)
    if "~" in text:
        text = text.replace("~", "~0")
    if "/" in text:
        text = text.replace("/", "~1")
    return text


def join(pointer: str, *tokens: object) -> str:
    """`join("/paths", "/pets", "get")` is `/paths/~1pets/get`."""
    # PERF: called for every parameter of every operation (250k times for Graph).
    for token in tokens:
        text = token if isinstance(token, str) else str(token)
        if "~" in text or "/" in text:
            text = escape(text)
        pointer = f"{pointer}/{text}"
    return pointer


def split(fragment: str) -> list[str]:
    """The tokens of a `$ref` fragment such as `/paths/~1pets%7Bid%7D/get`.

    Fragments are URI fragments, so percent-escapes are decoded before the
    `~1`/`~0` unescaping (RFC 6901 section 6). Raises ValueError for a fragment
    that is not a pointer (a plain-name anchor like `#Pet`).
    """
    return tokens(unquote(fragment))


def tokens(pointer: str) -> list[str]:
    """The tokens of a pointer as written in a JSON string (no percent-decoding)."""
    if not pointer:
        return []
    if not pointer.startswith("/"):
        raise ValueError(f"'#{pointer}' is not a JSON pointer")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]
