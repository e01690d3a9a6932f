"""`application/x-www-form-urlencoded` bodies checked against their schema.

A form body is a query string: each top-level property of the body's schema
is read like a query parameter, with the style and explode its media type's
`encoding` gives it (OpenAPI's defaults otherwise: `form`, exploded), so
Stripe's `metadata[k]=v` and `expand[0]=x` (encoding `deepObject`) read as
its query parameters do. Keys that belong to no declared property are kept
as strings, for `additionalProperties` to judge. The object built is checked
by the body's compiled schema, with pointers under `/body`.

The body is buffered whole like a JSON body (`validation.max_body_bytes`);
the request is forwarded as it came.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runmcp_fast.validation.issues import Issue
from runmcp_fast.validation.schema import SchemaValidator
from runmcp_fast.validation.styles import (
    MISSING,
    ParamReader,
    Resolve,
    StyleError,
    UnsupportedStyle,
    parse_query,
)

__all__ = ["FormBody", "properties", "style_of"]


class FormBody:
    """The compiled check of one form media type; `check_json` is the name `Verdict` calls."""

    __slots__ = ("fallbacks", "program", "readers", "validator")

    def __init__(
        self, validator: SchemaValidator, schema: Any, encoding: Any, resolve: Resolve
    ) -> None:
        self.validator = validator
        self.fallbacks = validator.fallbacks
        self.program = None
        """No byte checker: the data plane always calls `check_json`."""
        raw = properties(schema, resolve)
        claimed = frozenset(raw)
        readers: list[tuple[str, Any]] = []
        for name in raw:
            enc = encoding.get(name) if isinstance(encoding, Mapping) else None
            style, explode = style_of(enc)
            try:
                reader = ParamReader(
                    name, "query", style, explode, raw[name], resolve, claimed=claimed
                )
            except UnsupportedStyle:
                reader = ParamReader(name, "query", "form", True, raw[name], resolve)
            readers.append((name, reader.read))
        self.readers = tuple(readers)

    def check_json(self, data: bytes, prefix: str = "/body") -> list[Issue] | None:
        """The body's issues, or None when it is valid."""
        query = parse_query(data.decode("utf-8", "replace"))
        value: dict[str, Any] = {}
        for name, read in self.readers:
            try:
                got = read(query)
            except StyleError as exc:
                return [Issue(f"{prefix}/{_escape(name)}", "style", exc.message)]
            if got is not MISSING:
                value[name] = got
        for key, values in query.items():
            if key not in value and key.partition("[")[0] not in value:
                value.setdefault(key, values[0])
        return self.validator.check_value(value, prefix)


def style_of(enc: Any) -> tuple[str, bool]:
    style = "form"
    explode: bool | None = None
    if isinstance(enc, Mapping):
        if isinstance(enc.get("style"), str):
            style = enc["style"]
        if isinstance(enc.get("explode"), bool):
            explode = enc["explode"]
    return style, explode if explode is not None else style == "form"


def properties(schema: Any, resolve: Resolve) -> dict[str, Any]:
    """The top-level property schemas, through `$ref` and `allOf` (as `shape_of` merges)."""
    out: dict[str, Any] = {}
    pending = [schema]
    for _ in range(16):
        if not pending:
            break
        node = pending.pop()
        if isinstance(node, dict) and "$ref" in node:
            node = resolve(node)
        if not isinstance(node, dict):
            continue
        if isinstance(node.get("properties"), dict):
            for name, sub in node["properties"].items():
                out.setdefault(name, sub)
        for key in ("allOf", "anyOf", "oneOf"):
            if isinstance(node.get(key), list):
                pending.extend(node[key])
    return out


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")
