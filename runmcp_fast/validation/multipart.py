"""`multipart/form-data` bodies checked against their schema.

The body is buffered whole (`validation.max_body_bytes` bounds it, like a
JSON body) and split here on the boundary of the request's Content-Type,
by RFC 2046's rules: a missing or malformed boundary, a body that does not
start with it, a part without a name, or a missing closing delimiter is a
400 that says which. Each part's name is a property of the body's schema
(RFC 7578); its value is read as OpenAPI says a multipart property is sent:

- a part with a JSON Content-Type, or for an object property, is decoded JSON;
- an array property takes each part of its name as an item (or one part
  holding a JSON array);
- a binary string (`format: binary`/`byte`, `contentMediaType`,
  `contentEncoding`, or a part with a filename) is left as its bytes, seen by
  the validator as one character per byte (so `maxLength` counts octets) and
  never decoded as text;
- other primitives are text (the part's charset, else UTF-8), coerced by
  their schema's types like a query parameter;
- a property whose `encoding` gives a `style` (OpenAPI 3.1.1 allows it for
  multipart) is read from the text parts as a URL-encoded form reads it:
  Stripe sends `file_link_data[create]` and `expand[]` as parts of their own.

The object built is checked by the body's compiled schema (`required`,
`additionalProperties`, ...), with pointers under `/body`. The request is
forwarded byte for byte as it came.

Why not the stdlib `email` parser: it accepts malformed input (a missing
closing delimiter is a "defect", not an error), and decodes and rewrites
parts. python-multipart streams through callbacks, which buys nothing for a
body that is already buffered, and would be a new runtime dependency. The
split below is a few `bytes.find` scans over the buffer, and the only copies
are of the parts' text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from runmcp_fast import jsontext
from runmcp_fast.validation.forms import properties as top_properties
from runmcp_fast.validation.forms import style_of
from runmcp_fast.validation.issues import Issue
from runmcp_fast.validation.schema import SchemaValidator
from runmcp_fast.validation.styles import (
    MISSING,
    ParamReader,
    Resolve,
    Shape,
    StyleError,
    UnsupportedStyle,
    shape_of,
)

__all__ = ["MULTIPART", "MultipartBody"]

MULTIPART = "multipart/form-data"
MAX_PARTS = 1000
"""More parts than this is refused (Starlette's default too): each costs Python objects."""

# RFC 2046 5.1.1: 1 to 70 of these, not ending in a space.
_BOUNDARY = re.compile(rb"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
# One `; name=value` parameter of a header value (the value a token or a quoted string).
_PARAM = re.compile(rb';\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)')
_BINARY_FORMATS = frozenset(("binary", "byte"))


class MultipartError(ValueError):
    """A body that is not well-formed multipart; the message says where."""


class MultipartBody:
    """The compiled check of one multipart media type; `check_json` is what `Verdict` calls.

    One per operation and media type, built with the snapshot; `bound(content_type)`
    gives the per-request copy that knows the request's boundary.
    """

    __slots__ = ("boundary", "fallbacks", "program", "properties", "styled", "validator")

    def __init__(
        self,
        validator: SchemaValidator,
        schema: Any,
        resolve: Resolve,
        encoding: Any = None,
        boundary: bytes | None = None,
        compiled: MultipartBody | None = None,
    ) -> None:
        self.validator = validator
        self.fallbacks = validator.fallbacks
        self.program = None
        """No byte checker: the data plane always calls `check_json`."""
        self.boundary = boundary
        self.properties: Mapping[str, tuple[Shape, bool, bool]]
        """name -> (shape, binary, binary items)."""
        self.styled: tuple[tuple[str, Any], ...]
        """(name, read) of the properties sent in a form's style, read from the text parts."""
        if compiled is not None:
            self.properties = compiled.properties
            self.styled = compiled.styled
            return
        raw = top_properties(schema, resolve)
        self.properties = {
            name: (shape_of(sub, resolve), _binary(sub, resolve), _binary_items(sub, resolve))
            for name, sub in raw.items()
        }
        # OpenAPI 3.1.1: an `encoding` with a style serialises the property as a
        # form would, one part per key (Stripe's `file_link_data[create]`, `expand[]`).
        styled: list[tuple[str, Any]] = []
        claimed = frozenset(raw)
        for name in raw:
            enc = encoding.get(name) if isinstance(encoding, Mapping) else None
            if isinstance(enc, Mapping) and ("style" in enc or "explode" in enc):
                style, explode = style_of(enc)
                try:
                    reader = ParamReader(
                        name, "query", style, explode, raw[name], resolve, claimed=claimed
                    )
                except UnsupportedStyle:
                    continue
                styled.append((name, reader.read))
        self.styled = tuple(styled)

    def bound(self, content_type: bytes | None) -> MultipartBody:
        """This check for one request: the boundary its Content-Type gives (b"" for none)."""
        return MultipartBody(
            self.validator, None, _no_resolve, None, _boundary(content_type), compiled=self
        )

    def check_json(self, data: bytes, prefix: str = "/body") -> list[Issue] | None:
        """The body's issues, or None when it is valid."""
        boundary = self.boundary
        if boundary is None:
            # Not bound to a request (an alternate operation's check): the body's
            # first line names it.
            boundary = _sniffed(data)
        try:
            parts = split(data, boundary)
        except MultipartError as exc:
            return [Issue(prefix, "body", f"malformed multipart body: {exc}")]
        grouped: dict[str, list[tuple[bytes, bytes | None, memoryview]]] = {}
        for name, content_type, filename, content in parts:
            grouped.setdefault(name, []).append((content_type, filename, content))
        value: dict[str, Any] = {}
        if self.styled:
            # A styled property sent as one JSON part (as MCP tools send it) is read
            # as JSON below; otherwise its parts are a query's keys and values.
            taken = {
                n
                for n, _ in self.styled
                if not any(_is_json(ct) for ct, _f, _c in grouped.get(n, ()))
            }
            query = {
                name: [_text(ct, content) for ct, _f, content in found]
                for name, found in grouped.items()
                if name.partition("[")[0] in taken
            }
            for name, read in self.styled:
                if name not in taken:
                    continue
                try:
                    got = read(query)
                except StyleError as exc:
                    return [Issue(f"{prefix}/{_escape(name)}", "style", exc.message)]
                if got is not MISSING:
                    value[name] = got
            grouped = {n: f for n, f in grouped.items() if n.partition("[")[0] not in taken}
        for name, found in grouped.items():
            try:
                value[name] = self._value(name, found)
            except ValueError as exc:
                return [Issue(f"{prefix}/{_escape(name)}", "json", str(exc))]
        return self.validator.check_value(value, prefix)

    def _value(self, name: str, found: list[tuple[bytes, bytes | None, memoryview]]) -> Any:
        known = self.properties.get(name)
        if known is None:
            values = [_plain(*part) for part in found]
            return values[0] if len(values) == 1 else values
        shape, binary, binary_items = known
        if shape.kind == "array":
            items = shape.items
            if len(found) == 1 and not binary_items:
                whole = _read(found[0], shape, False)
                if isinstance(whole, list):
                    return whole
            return [_read(part, items, binary_items) for part in found]
        values = [_read(part, shape, binary) for part in found]
        # The same name twice for a property that is not an array: the validator says so.
        return values[0] if len(values) == 1 else values


def split(data: bytes, boundary: bytes) -> list[tuple[str, bytes, bytes | None, memoryview]]:
    """The parts of a multipart body: (name, Content-Type, filename, content).

    Raises MultipartError for a body that breaks RFC 2046/7578. `content` is a
    view into `data` (no copy).
    """
    if not boundary:
        raise MultipartError("the Content-Type has no boundary parameter")
    if _BOUNDARY.fullmatch(boundary) is None:
        raise MultipartError(
            "the Content-Type's boundary is not 1 to 70 letters, digits or '()+_,-./:=? '"
        )
    dash = b"--" + boundary
    delimiter = b"\r\n" + dash
    if data.startswith(dash):
        at = len(dash)
    else:
        found = data.find(delimiter)  # after a preamble
        if found < 0:
            raise MultipartError(f"the body does not contain the boundary {boundary.decode()!r}")
        at = found + len(delimiter)
    view = memoryview(data)
    parts: list[tuple[str, bytes, bytes | None, memoryview]] = []
    while True:
        if data.startswith(b"--", at):
            return parts  # the closing delimiter; what follows is the epilogue
        # Transport padding, then the line's end.
        while data[at : at + 1] in (b" ", b"\t"):
            at += 1
        if not data.startswith(b"\r\n", at):
            if at >= len(data):
                raise MultipartError("the closing delimiter (--boundary--) is missing")
            raise MultipartError(
                f"a boundary line at byte {at} is followed by more text, not a line end"
            )
        start = at + 2
        end = data.find(delimiter, start)
        if end < 0:
            raise MultipartError(
                f"part {len(parts) + 1} has no end: the closing delimiter (--boundary--) is missing"
            )
        if len(parts) >= MAX_PARTS:
            raise MultipartError(f"more than {MAX_PARTS} parts")
        parts.append(_part(data, view, start, end, len(parts) + 1))
        at = end + len(delimiter)


def _part(
    data: bytes, view: memoryview, start: int, end: int, number: int
) -> tuple[str, bytes, bytes | None, memoryview]:
    if data.startswith(b"\r\n", start):
        head_end, body_start = start, start + 2  # no headers
    else:
        head_end = data.find(b"\r\n\r\n", start, end)
        if head_end < 0:
            raise MultipartError(f"part {number}'s headers do not end with an empty line")
        body_start = head_end + 4
    disposition = b""
    content_type = b""
    for line in data[start:head_end].split(b"\r\n"):
        field, colon, rest = line.partition(b":")
        if not colon:
            raise MultipartError(f"part {number} has a header line without a colon")
        key = field.strip().lower()
        if key == b"content-disposition":
            disposition = rest.strip()
        elif key == b"content-type":
            content_type = rest.strip()
    if not disposition.lower().startswith(b"form-data"):
        raise MultipartError(f"part {number} has no 'Content-Disposition: form-data' header")
    params = _params(disposition)
    name = params.get(b"name")
    if name is None:
        raise MultipartError(f"part {number}'s Content-Disposition has no name")
    return (
        name.decode("utf-8", "replace"),
        content_type,
        params.get(b"filename"),
        view[body_start:end],
    )


def _params(value: bytes) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    for key, raw in _PARAM.findall(value):
        if raw.startswith(b'"'):
            raw = re.sub(rb"\\(.)", rb"\1", raw[1:-1])
        out.setdefault(key.lower(), raw)
    return out


def _boundary(content_type: bytes | None) -> bytes:
    if not content_type:
        return b""
    return _params(content_type).get(b"boundary", b"")


def _sniffed(data: bytes) -> bytes:
    if not data.startswith(b"--"):
        return b""
    end = data.find(b"\r\n")
    return data[2:end].rstrip(b" \t") if end > 0 else b""


def _read(part: tuple[bytes, bytes | None, memoryview], shape: Shape | None, binary: bool) -> Any:
    content_type, filename, content = part
    if _is_json(content_type):
        return _json(content)
    if binary or (filename is not None and not _is_text(content_type)):
        return str(content, "latin-1")  # the bytes, one character each
    text = _text(content_type, content)
    return shape.coerce(text) if shape is not None else text


def _plain(content_type: bytes, filename: bytes | None, content: memoryview) -> Any:
    """A part no property declares: text, or its bytes when it is a file; JSON decoded."""
    if _is_json(content_type):
        return _json(content)
    if filename is not None and not _is_text(content_type):
        return str(content, "latin-1")
    return _text(content_type, content)


def _json(content: memoryview) -> Any:
    try:
        return jsontext.loads(content)
    except ValueError as exc:
        raise ValueError(f"the part is not valid JSON: {exc}") from None


def _text(content_type: bytes, content: memoryview) -> str:
    charset = _params(content_type).get(b"charset", b"utf-8").decode("latin-1")
    try:
        return str(content, charset)
    except (LookupError, UnicodeDecodeError):
        # Not the text it claims: its bytes, for the schema to judge (no false refusal).
        return str(content, "latin-1")


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or media.endswith(b"+json")


def _is_text(content_type: bytes) -> bool:
    return content_type.lower().startswith(b"text/")


def _binary(schema: Any, resolve: Resolve) -> bool:
    """Whether a property's schema is a binary string (sent as raw bytes)."""
    for _ in range(16):
        if isinstance(schema, dict) and "$ref" in schema:
            schema = resolve(schema)
        else:
            break
    if not isinstance(schema, dict):
        return False
    return (
        schema.get("format") in _BINARY_FORMATS
        or "contentMediaType" in schema
        or "contentEncoding" in schema
    )


def _binary_items(schema: Any, resolve: Resolve) -> bool:
    for _ in range(16):
        if isinstance(schema, dict) and "$ref" in schema:
            schema = resolve(schema)
        else:
            break
    return isinstance(schema, dict) and _binary(schema.get("items"), resolve)


def _no_resolve(schema: dict[str, Any]) -> dict[str, Any]:
    return schema


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")
