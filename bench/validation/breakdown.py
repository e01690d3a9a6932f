"""Where runmcp_fast's time goes: its hot path taken apart, each part timed on the same bytes.

`check_json(data)` is one msgspec typed decode (parse, build Structs, check every
constraint) followed by the duplicate-key scan, in a small Python method. Each row
here times one part, or the same decode with some constraints taken out of the
schema, so the differences say what each costs. The peers' split (orjson.loads, then
jsonschema-rs on the parsed value) is printed beside it.

No `from __future__ import annotations` here: msgspec resolves the hand-written
Structs' annotations, which must be real types, not strings.
"""

import datetime
import gc
from collections.abc import Callable
from typing import Annotated, Any, Literal

import jsonschema_rs
import msgspec
import orjson
from msgspec import UNSET, Meta, UnsetType

from bench.validation.workload import UUID_PATTERN, Size
from runmcp_fast._jsonscan import duplicate_key
from runmcp_fast.validation import compile_schema

Currency = Literal["USD", "EUR", "GBP", "JPY", "CHF"]
Tag = Annotated[str, Meta(min_length=1, max_length=24)]
Uuid = Annotated[str, Meta(pattern=UUID_PATTERN)]
DateTime = Annotated[datetime.datetime, Meta(tz=True)]


def hand_written(gc_tracked: bool) -> dict[str, Any]:
    """The schema's definitions as msgspec Structs written by hand (what the compiler
    should produce): the same constraints, `forbid_unknown_fields`, optional = UNSET."""

    class LineItem(msgspec.Struct, forbid_unknown_fields=True, gc=gc_tracked):
        sku: Annotated[str, Meta(pattern=r"^[A-Z]{3}-[0-9]{4,8}$")]
        name: Annotated[str, Meta(min_length=1, max_length=120)]
        quantity: Annotated[int, Meta(ge=1, le=10000)]
        unit_price: Annotated[float, Meta(gt=0, le=1000000)]
        currency: Currency
        discount: Annotated[float, Meta(ge=0, le=1)] | UnsetType | None = UNSET
        gift: bool | UnsetType = UNSET
        tags: Annotated[list[Tag], Meta(max_length=8)] | UnsetType = UNSET

    class Address(msgspec.Struct, forbid_unknown_fields=True, gc=gc_tracked):
        name: Annotated[str, Meta(min_length=1, max_length=100)]
        line1: Annotated[str, Meta(min_length=1, max_length=200)]
        city: Annotated[str, Meta(min_length=1, max_length=100)]
        postal_code: Annotated[str, Meta(pattern=r"^[A-Za-z0-9 -]{3,10}$")]
        country: Annotated[str, Meta(pattern=r"^[A-Z]{2}$")]
        line2: Annotated[str, Meta(max_length=200)] | UnsetType | None = UNSET

    class Order(msgspec.Struct, forbid_unknown_fields=True, gc=gc_tracked):
        id: Uuid
        customer_id: Uuid
        created_at: DateTime
        status: Literal["draft", "pending", "paid", "shipped"]
        items: Annotated[list[LineItem], Meta(min_length=1, max_length=100)]
        shipping: Address
        priority: Annotated[int, Meta(ge=0, le=5)] | UnsetType = UNSET
        billing: Address | UnsetType = UNSET
        note: Annotated[str, Meta(max_length=500)] | UnsetType | None = UNSET

    class BulkItems(msgspec.Struct, forbid_unknown_fields=True, gc=gc_tracked):
        order_id: Uuid
        submitted_at: DateTime
        items: Annotated[list[LineItem], Meta(min_length=1, max_length=1000)]

    return {"LineItem": LineItem, "Order": Order, "BulkItems": BulkItems}


def _strip(schema: Any, keys: frozenset[str]) -> Any:
    if isinstance(schema, dict):
        return {k: _strip(v, keys) for k, v in schema.items() if k not in keys}
    if isinstance(schema, list):
        return [_strip(v, keys) for v in schema]
    return schema


_PATTERNS = frozenset(("pattern", "format"))  # format: uuid is a pattern, date-time a parse
_ALL = frozenset(
    (
        *_PATTERNS,
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "minItems",
        "maxItems",
    )
)


def _without_gc(call: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def run(data: bytes) -> Any:
        gc.disable()
        try:
            return call(data)
        finally:
            gc.enable()

    return run


def components(size: Size) -> dict[str, Callable[[bytes], Any]]:
    """Label -> a call on the size's body. The first is the whole hot path."""
    v = compile_schema(size.schema)
    loose = compile_schema(_strip(size.schema, _PATTERNS))
    bare = compile_schema(_strip(size.schema, _ALL))
    decoder = v.decoder
    rs = jsonschema_rs.Draft202012Validator(size.schema, validate_formats=True)
    parsed = orjson.loads(size.body)
    out: dict[str, Callable[[bytes], Any]] = {
        "check_json (the whole hot path)": v.check_json,
        "check_json, gc disabled around it": _without_gc(v.check_json),
        "decoder.decode: msgspec typed decode + checks": decoder.decode,
        "duplicate_key scan alone": duplicate_key,
        "typed decode, no pattern / format": loose.decoder.decode,
        "typed decode, no constraints at all (Structs + enums)": bare.decoder.decode,
        "msgspec.json.decode, untyped": msgspec.json.decode,
        "orjson.loads (the peers' parse)": orjson.loads,
        "jsonschema-rs is_valid on the parsed value (its check alone)": lambda _d: rs.is_valid(
            parsed
        ),
    }
    for label, gc_tracked in (("gc=False", False), ("gc=True", True)):
        structs = hand_written(gc_tracked)
        if size.definition in structs:
            decode = msgspec.json.Decoder(structs[size.definition]).decode
            out[f"hand-written msgspec Structs, {label}"] = decode
    for call in out.values():  # every part must accept the body it is timed on
        call(size.body)
    return out


def pattern_checks(size: Size) -> int:
    """How many strings of the body a `pattern` (or `format: uuid`, also a pattern) checks."""
    schema = size.schema
    defs = schema["$defs"]

    def walk(node: Any, value: Any) -> int:
        while isinstance(node, dict) and "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[-1]]
        if not isinstance(node, dict):
            return 0
        if isinstance(value, str):
            return int("pattern" in node or node.get("format") == "uuid")
        if isinstance(value, dict):
            props = node.get("properties", {})
            return sum(walk(props.get(k), v) for k, v in value.items())
        if isinstance(value, list):
            return sum(walk(node.get("items"), v) for v in value)
        return 0

    return walk(schema, orjson.loads(size.body))
