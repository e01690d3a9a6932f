"""One adapter per system: bytes in, decode + full validation, True when the body is valid.

Every system is built once per schema, outside the timing, and is given the same
contract, formats included:

| system | given | timed call |
| --- | --- | --- |
| runmcp_fast | the 2020-12 schema, `compile_schema` | `v.check_json(data)` (None: valid) |
| jsonschema-rs | the 2020-12 schema, `validate_formats=True` | `v.is_valid(orjson.loads(data))` |
| fastjsonschema | the schema as draft-07, a `uuid` format added | `f(orjson.loads(data))` |
| jsonschema | the 2020-12 schema, a format checker with `uuid` and RFC 3339 `date-time` | `v.is_valid(orjson.loads(data))` |
| pydantic v2 | hand-written models (below), strict, `extra="forbid"` | `Model.model_validate_json(data)` |

fastjsonschema and the pure-Python validator raise or return False; the adapters turn
both into a bool, but the timed loop calls the plain function (`call`), so no adapter
cost is timed.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from uuid import UUID

import fastjsonschema
import jsonschema
import jsonschema_rs
import orjson
import pydantic
from pydantic import BaseModel, ConfigDict, Field

from bench.validation.workload import UUID_PATTERN, Size, draft7
from runmcp_fast.validation import compile_schema

SYSTEMS = ("runmcp_fast", "jsonschema-rs", "fastjsonschema", "pydantic", "jsonschema")
GATEWAY = "runmcp_fast"


@dataclass
class Peer:
    name: str
    call: Callable[[bytes], Any]  # what is timed: decode + validate, the plainest call
    valid: Callable[[bytes], bool]  # the same, as a verdict (for the setup check)
    given: str


# -- runmcp_fast ----------------------------------------------------------------------------


def runmcp_fast(size: Size) -> Peer:
    v = compile_schema(size.schema)
    assert not v.fallbacks, v.fallbacks  # everything compiled to msgspec: no Python per value
    return Peer(GATEWAY, v.check_json, lambda d: v.check_json(d) is None, "compile_schema")


# -- jsonschema-rs --------------------------------------------------------------------------


def jsonschema_rs_peer(size: Size) -> Peer:
    v = jsonschema_rs.Draft202012Validator(size.schema, validate_formats=True)
    is_valid = v.is_valid
    loads = orjson.loads

    def call(data: bytes) -> bool:
        return is_valid(loads(data))

    return Peer("jsonschema-rs", call, call, f"{jsonschema_rs.__name__}, validate_formats=True")


# -- fastjsonschema -------------------------------------------------------------------------


def fastjsonschema_peer(size: Size) -> Peer:
    # fastjsonschema knows date-time (a regex) but not uuid: give it the same pattern.
    f = fastjsonschema.compile(draft7(size.schema), formats={"uuid": UUID_PATTERN})
    loads = orjson.loads

    def call(data: bytes) -> Any:
        return f(loads(data))

    def valid(data: bytes) -> bool:
        try:
            f(loads(data))
        except fastjsonschema.JsonSchemaValueException:
            return False
        return True

    return Peer("fastjsonschema", call, valid, "draft-07 form, formats={'uuid': pattern}")


# -- jsonschema (pure Python) ---------------------------------------------------------------

# What the `rfc3339-validator` package (jsonschema's own date-time check, not installed
# here) matches, plus a calendar check: RFC 3339 section 5.6.
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$", re.ASCII
)


def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _RFC3339.match(value):
        return False
    try:
        datetime.datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _format_checker() -> jsonschema.FormatChecker:
    checker = jsonschema.FormatChecker(formats=())
    base = jsonschema.Draft202012Validator.FORMAT_CHECKER
    checker.checkers["uuid"] = base.checkers["uuid"]
    checker.checks("date-time")(_date_time)
    return checker


def jsonschema_peer(size: Size) -> Peer:
    v = jsonschema.Draft202012Validator(size.schema, format_checker=_format_checker())
    is_valid = v.is_valid
    loads = orjson.loads

    def call(data: bytes) -> bool:
        return is_valid(loads(data))

    return Peer("jsonschema", call, call, "Draft202012Validator, uuid + RFC 3339 date-time")


# -- pydantic -------------------------------------------------------------------------------

_Strict = ConfigDict(strict=True, extra="forbid")
# Optional but not nullable, as in the schema: a default pydantic never validates, while
# an explicit `null` is checked against the type (and refused). `X | None` would take null.
_OPTIONAL: Any = None
Currency = Literal["USD", "EUR", "GBP", "JPY", "CHF"]
Tag = Annotated[str, Field(min_length=1, max_length=24)]


class LineItem(BaseModel):
    model_config = _Strict

    sku: Annotated[str, Field(pattern=r"^[A-Z]{3}-[0-9]{4,8}$")]
    name: Annotated[str, Field(min_length=1, max_length=120)]
    quantity: Annotated[int, Field(ge=1, le=10000)]
    unit_price: Annotated[float, Field(gt=0, le=1000000)]
    currency: Currency
    discount: Annotated[float, Field(ge=0, le=1)] | None = None
    gift: bool = _OPTIONAL
    tags: Annotated[list[Tag], Field(max_length=8)] = _OPTIONAL


class Address(BaseModel):
    model_config = _Strict

    name: Annotated[str, Field(min_length=1, max_length=100)]
    line1: Annotated[str, Field(min_length=1, max_length=200)]
    line2: Annotated[str, Field(max_length=200)] | None = None
    city: Annotated[str, Field(min_length=1, max_length=100)]
    postal_code: Annotated[str, Field(pattern=r"^[A-Za-z0-9 -]{3,10}$")]
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")]


class Order(BaseModel):
    model_config = _Strict

    id: UUID
    customer_id: UUID
    created_at: pydantic.AwareDatetime
    status: Literal["draft", "pending", "paid", "shipped"]
    priority: Annotated[int, Field(ge=0, le=5)] = _OPTIONAL
    items: Annotated[list[LineItem], Field(min_length=1, max_length=100)]
    shipping: Address
    billing: Address = _OPTIONAL
    note: Annotated[str, Field(max_length=500)] | None = None


class BulkItems(BaseModel):
    model_config = _Strict

    order_id: UUID
    submitted_at: pydantic.AwareDatetime
    items: Annotated[list[LineItem], Field(min_length=1, max_length=1000)]


MODELS: dict[str, type[BaseModel]] = {
    "LineItem": LineItem,
    "Order": Order,
    "BulkItems": BulkItems,
}


def pydantic_peer(size: Size) -> Peer:
    model = MODELS[size.definition]
    call = model.model_validate_json

    def valid(data: bytes) -> bool:
        try:
            call(data)
        except pydantic.ValidationError:
            return False
        return True

    return Peer(
        "pydantic",
        call,
        valid,
        f"hand-written BaseModel {model.__name__}, strict, extra='forbid'",
    )


BUILDERS: dict[str, Callable[[Size], Peer]] = {
    GATEWAY: runmcp_fast,
    "jsonschema-rs": jsonschema_rs_peer,
    "fastjsonschema": fastjsonschema_peer,
    "pydantic": pydantic_peer,
    "jsonschema": jsonschema_peer,
}


def build(name: str, size: Size) -> Peer:
    """The system, checked first: it must accept the valid body and refuse every invalid one."""
    peer = BUILDERS[name](size)
    problems = []
    if not peer.valid(size.body):
        problems.append("refuses the valid body")
    problems += [
        f"accepts an invalid body ({why})" for why, bad in size.invalid_bodies if peer.valid(bad)
    ]
    if problems:
        raise AssertionError(f"{name} on {size.name}: " + "; ".join(problems))
    return peer
