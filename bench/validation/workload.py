"""The schema and the bodies of the validation benchmarks: one realistic contract, three sizes.

An order API's request bodies, written once as JSON Schema 2020-12 with `$defs`:

- **small** (~150 B): one `LineItem`, the body of "add an item to an order";
- **1k** (~1.1 KB): an `Order` with 7 line items, a shipping address, ids and a timestamp;
- **100k** (~100 KB): a `BulkItems` upload, 820 line items under one order id.

Every keyword the gateway's compiler maps to msgspec appears somewhere: `required`,
`additionalProperties: false`, `minLength`/`maxLength`, `pattern`, `minimum`/`maximum`,
`exclusiveMinimum`, `enum`, `format: date-time` and `uuid`, nullable through
`type: [..., "null"]`, arrays with `minItems`/`maxItems`, `$ref`s into `$defs`.

The bodies come from a fixed seed, so every run and every system sees the same bytes.
`draft7(schema)` is the same contract for fastjsonschema (`$defs` -> `definitions`);
`openapi_spec()` puts it in an OpenAPI 3.1 document for the end-to-end run.
"""

from __future__ import annotations

import copy
import datetime
import json
import random
import uuid
from dataclasses import dataclass
from typing import Any

UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"

DEFS: dict[str, Any] = {
    "Currency": {"type": "string", "enum": ["USD", "EUR", "GBP", "JPY", "CHF"]},
    "LineItem": {
        "type": "object",
        "required": ["sku", "name", "quantity", "unit_price", "currency"],
        "additionalProperties": False,
        "properties": {
            "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4,8}$"},
            "name": {"type": "string", "minLength": 1, "maxLength": 120},
            "quantity": {"type": "integer", "minimum": 1, "maximum": 10000},
            "unit_price": {"type": "number", "exclusiveMinimum": 0, "maximum": 1000000},
            "currency": {"$ref": "#/$defs/Currency"},
            "discount": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
            "gift": {"type": "boolean"},
            "tags": {
                "type": "array",
                "items": {"type": "string", "minLength": 1, "maxLength": 24},
                "maxItems": 8,
            },
        },
    },
    "Address": {
        "type": "object",
        "required": ["name", "line1", "city", "postal_code", "country"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 100},
            "line1": {"type": "string", "minLength": 1, "maxLength": 200},
            "line2": {"type": ["string", "null"], "maxLength": 200},
            "city": {"type": "string", "minLength": 1, "maxLength": 100},
            "postal_code": {"type": "string", "pattern": "^[A-Za-z0-9 -]{3,10}$"},
            "country": {"type": "string", "pattern": "^[A-Z]{2}$"},
        },
    },
    "Order": {
        "type": "object",
        "required": ["id", "customer_id", "created_at", "status", "items", "shipping"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "customer_id": {"type": "string", "format": "uuid"},
            "created_at": {"type": "string", "format": "date-time"},
            "status": {"type": "string", "enum": ["draft", "pending", "paid", "shipped"]},
            "priority": {"type": "integer", "minimum": 0, "maximum": 5},
            "items": {
                "type": "array",
                "items": {"$ref": "#/$defs/LineItem"},
                "minItems": 1,
                "maxItems": 100,
            },
            "shipping": {"$ref": "#/$defs/Address"},
            # Optional, not nullable: `anyOf: [{$ref}, {type: null}]` compiles to a
            # fallback today (see README.md), which would time jsonschema, not msgspec.
            "billing": {"$ref": "#/$defs/Address"},
            "note": {"type": ["string", "null"], "maxLength": 500},
        },
    },
    "BulkItems": {
        "type": "object",
        "required": ["order_id", "submitted_at", "items"],
        "additionalProperties": False,
        "properties": {
            "order_id": {"type": "string", "format": "uuid"},
            "submitted_at": {"type": "string", "format": "date-time"},
            "items": {
                "type": "array",
                "items": {"$ref": "#/$defs/LineItem"},
                "minItems": 1,
                "maxItems": 1000,
            },
        },
    },
}


def root(name: str) -> dict[str, Any]:
    """A standalone 2020-12 schema for the definition `name` (all `$defs` inside)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": f"#/$defs/{name}",
        "$defs": copy.deepcopy(DEFS),
    }


def draft7(schema: Any) -> Any:
    """The same schema in draft-07 terms, for fastjsonschema: `$defs` -> `definitions`."""
    if isinstance(schema, dict):
        out: dict[str, Any] = {}
        for key, value in schema.items():
            if key == "$schema":
                out[key] = "http://json-schema.org/draft-07/schema#"
            elif key == "$defs":
                out["definitions"] = draft7(value)
            elif key == "$ref" and isinstance(value, str):
                out[key] = value.replace("#/$defs/", "#/definitions/")
            else:
                out[key] = draft7(value)
        # draft-07 ignores the siblings of a `$ref`: the root's `$ref` must stand alone.
        return out
    if isinstance(schema, list):
        return [draft7(v) for v in schema]
    return schema


def openapi_spec() -> dict[str, Any]:
    """An OpenAPI 3.1 document whose `POST /orders` (createOrder) takes an `Order`."""
    text = json.dumps(DEFS).replace('"#/$defs/', '"#/components/schemas/')
    return {
        "openapi": "3.1.0",
        "info": {"title": "orders (validation benchmark)", "version": "1"},
        "paths": {
            "/orders": {
                "post": {
                    "operationId": "createOrder",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Order"}}
                        },
                    },
                    "responses": {"200": {"description": "created"}},
                }
            }
        },
        "components": {"schemas": json.loads(text)},
    }


# -- bodies ---------------------------------------------------------------------------------

_WORDS = (
    *("widget", "gadget", "bolt", "cable", "adapter", "lamp", "chair", "desk", "mug"),
    *("kettle", "sensor", "valve", "hinge", "bracket", "filter", "pump", "charger"),
    *("stand", "cover", "pouch"),
)
_COLOURS = ("red", "blue", "green", "black", "white", "steel", "oak")
_TAGS = ("sale", "new", "eco", "bulk", "fragile", "gift")


def _line_item(rng: random.Random) -> dict[str, Any]:
    item: dict[str, Any] = {
        "sku": f"{rng.choice(['ABC', 'XYZ', 'KLM', 'QRS'])}-{rng.randrange(10**4, 10**7)}",
        "name": f"{rng.choice(_WORDS).title()}, {rng.choice(_COLOURS)}",
        "quantity": rng.randint(1, 40),
        "unit_price": round(rng.uniform(0.5, 900), 2),
        "currency": rng.choice(["USD", "EUR", "GBP"]),
        "discount": rng.choice([None, 0.1, 0.25]),
    }
    if rng.random() < 0.5:
        item["tags"] = rng.sample(_TAGS, rng.randint(1, 2))
    if rng.random() < 0.2:
        item["gift"] = True
    return item


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _time(rng: random.Random) -> str:
    base = datetime.datetime(2025, 3, 1, tzinfo=datetime.UTC)
    moment = base + datetime.timedelta(seconds=rng.randrange(86400 * 60))
    return moment.isoformat().replace("+00:00", "Z")


def _address(rng: random.Random) -> dict[str, Any]:
    return {
        "name": "Ann Example",
        "line1": f"{rng.randint(1, 999)} Market Street",
        "line2": rng.choice([None, "Suite 5"]),
        "city": "Springfield",
        "postal_code": f"{rng.randint(10000, 99999)}",
        "country": "US",
    }


def small_body(rng: random.Random) -> dict[str, Any]:
    item = _line_item(rng)
    item["tags"] = ["sale", "eco"]
    item["gift"] = False
    return item


def order_body(rng: random.Random, items: int = 7) -> dict[str, Any]:
    lines = [_line_item(rng) for _ in range(items)]
    for line in lines:  # kept short: ~1 KB in all
        line.pop("tags", None)
    return {
        "id": _uuid(rng),
        "customer_id": _uuid(rng),
        "created_at": _time(rng),
        "status": "pending",
        "priority": 2,
        "items": lines,
        "shipping": _address(rng),
        "note": "Leave at the door",
    }


def bulk_body(rng: random.Random, items: int = 820) -> dict[str, Any]:
    return {
        "order_id": _uuid(rng),
        "submitted_at": _time(rng),
        "items": [_line_item(rng) for _ in range(items)],
    }


def encode(value: Any) -> bytes:
    """Compact JSON, as clients send it."""
    return json.dumps(value, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Size:
    name: str  # "small", "1k", "100k"
    definition: str  # the `$defs` entry the body is an instance of
    body: bytes  # valid
    invalid: bytes  # one deliberate error deep inside; every system must refuse it
    why_invalid: str
    # More bodies every system must refuse, one broken keyword each (formats included,
    # so a system that skips `format` fails the setup instead of being timed).
    also_invalid: tuple[tuple[str, bytes], ...] = ()

    @property
    def schema(self) -> dict[str, Any]:
        return root(self.definition)

    @property
    def invalid_bodies(self) -> list[tuple[str, bytes]]:
        return [(self.why_invalid, self.invalid), *self.also_invalid]


_DROP = object()  # as `bad`: remove the member instead


def _invalid(value: dict[str, Any], path: tuple[Any, ...], bad: Any) -> bytes:
    broken = copy.deepcopy(value)
    target: Any = broken
    for step in path[:-1]:
        target = target[step]
    if bad is _DROP:
        del target[path[-1]]
    else:
        target[path[-1]] = bad
    return encode(broken)


def sizes(seed: int = 20250301) -> dict[str, Size]:
    rng = random.Random(seed)
    small = small_body(rng)
    order = order_body(rng)
    bulk = bulk_body(rng)
    return {
        "small": Size(
            "small",
            "LineItem",
            encode(small),
            _invalid(small, ("currency",), "DOGE"),
            "currency not in the enum",
            (
                ("quantity 0 (minimum 1)", _invalid(small, ("quantity",), 0)),
                ("an unknown member", _invalid(small, ("colour",), "red")),
                ("tags/1 empty (minLength 1)", _invalid(small, ("tags", 1), "")),
                ("discount 1.5 (maximum 1)", _invalid(small, ("discount",), 1.5)),
                ("gift null (not nullable)", _invalid(small, ("gift",), None)),
            ),
        ),
        "1k": Size(
            "1k",
            "Order",
            encode(order),
            _invalid(order, ("items", 6, "unit_price"), 0),
            "items/6/unit_price = 0 (exclusiveMinimum 0)",
            (
                ("id not a uuid", _invalid(order, ("id",), "882ad462-d0ec-44ed-9e0c")),
                ("created_at month 13", _invalid(order, ("created_at",), "2025-13-04T05:17:47Z")),
                (
                    "created_at without offset",
                    _invalid(order, ("created_at",), "2025-03-04T05:17:47"),
                ),
                ("shipping without city", _invalid(order, ("shipping", "city"), _DROP)),
                ("items empty (minItems 1)", _invalid(order, ("items",), [])),
                (
                    "priority null (not nullable)",
                    _invalid(order, ("priority",), None),
                ),
                ("billing null (optional, not nullable)", _invalid(order, ("billing",), None)),
            ),
        ),
        "100k": Size(
            "100k",
            "BulkItems",
            encode(bulk),
            _invalid(bulk, ("items", 819, "sku"), "abc-12"),
            "items/819/sku breaks its pattern",
            (
                ("order_id not a uuid", _invalid(bulk, ("order_id",), "not-a-uuid")),
                ("items/500/quantity a string", _invalid(bulk, ("items", 500, "quantity"), "3")),
            ),
        ),
    }


SIZES = sizes()
