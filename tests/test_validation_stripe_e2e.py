"""Stripe's query parameters and form bodies as Stripe's clients write them, through a gateway.

Stripe lists take `expand` (deepObject, an array) as `expand[]=customer` or
`expand[0]=customer` (stripe-python, `qs`), and `created` (deepObject,
`anyOf: [range_query_specs, integer]`) as `created[gt]=5` or `created=5`. Each
valid request must reach the recording upstream unchanged; invalid ones must be
refused with the parameter's pointer and never reach it. Form bodies
(`application/x-www-form-urlencoded`, Stripe's only request bodies) are read
with the spec's `encoding` (deepObject for objects and arrays) and checked
against the body schema the same way.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web
from public_specs import spec_path
from servers import Harness, RawClient

pytestmark = pytest.mark.specs


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, bytes]] = []

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            self.seen.append((request.method, request.raw_path, body))
            return web.json_response({"object": "list", "data": []})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        return app


def get(port: int, target: str) -> tuple[int, Any]:
    with RawClient(port) as client:
        client.send(f"GET {target} HTTP/1.1\r\nHost: api.test\r\n\r\n".encode())
        status, _, data = client.read_response()
    return status, json.loads(data) if data else None


def post_form(port: int, target: str, body: bytes) -> tuple[int, Any]:
    head = (
        f"POST {target} HTTP/1.1\r\nHost: api.test\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    with RawClient(port) as client:
        client.send(head.encode() + body)
        status, _, data = client.read_response()
    return status, json.loads(data) if data else None


@pytest.fixture
def stripe(harness: Harness) -> tuple[int, Recorder]:
    recorder = Recorder()
    upstream = harness.aiohttp(recorder.app())
    service = {"name": "stripe", "upstream": upstream.url, "openapi": str(spec_path("stripe"))}
    return harness.gateway({"services": [service]}).port, recorder


PREVIEW = "/v1/credit_notes/preview?invoice=in_1&lines[0][type]=custom_line_item"
VALID = [
    "/v1/charges?expand[]=customer",
    "/v1/charges?expand[]=customer&expand[]=invoice",
    "/v1/charges?expand[0]=customer&expand[1]=invoice",
    "/v1/charges?expand%5B0%5D=customer",
    "/v1/charges?created[gt]=5",
    "/v1/charges?created[gte]=1700000000&created[lt]=1800000000&limit=3",
    "/v1/charges?created=1700000000",
    "/v1/charges?created[gt]=5&expand[]=data.customer&customer=cus_123",
    "/v1/customers/cus_123?expand[]=default_source",
    # `lines[0][tax_rates]` is `anyOf: [array, enum [""]]`: a list by index, by repeated
    # keys, or "" to clear it
    PREVIEW + "&lines[0][tax_rates][0]=txr_1&lines[0][tax_rates][1]=txr_2",
    PREVIEW + "&lines[0][tax_rates]=txr_1&lines[0][tax_rates]=txr_2",
    PREVIEW + "&lines[0][tax_rates]=",
]
INVALID = [
    # (target, pointer): the value is wrong, not the way it is written.
    ("/v1/charges?created[gt]=soon", "/query/created"),
    ("/v1/charges?created=soon", "/query/created"),
    ("/v1/charges?limit=ten&expand[]=customer", "/query/limit"),
    ("/v1/charges?expand[]=" + "x" * 5001, "/query/expand/0"),
    (
        PREVIEW + "&lines[0][tax_rates]=a&lines[0][tax_rates]=" + "x" * 5001,
        "/query/lines/0/tax_rates",
    ),
    (PREVIEW + "&lines[0][tax_rates]=txr_1", "/query/lines/0/tax_rates"),  # one key: a string
]


def test_stripe_clients_requests(stripe: tuple[int, Recorder]) -> None:
    port, recorder = stripe
    # Valid: reaches the upstream unchanged.
    for target in VALID:
        status, body = get(port, target)
        assert status == 200, (target, body)
        assert recorder.seen[-1] == ("GET", target, b"")
    # Invalid: refused at the parameter, never forwarded.
    seen = len(recorder.seen)
    for target, pointer in INVALID:
        status, problem = get(port, target)
        assert status == 400, (target, problem)
        assert any(e["pointer"].startswith(pointer) for e in problem["errors"]), problem
    assert len(recorder.seen) == seen


FORMS_VALID = [
    b"",
    b"description=Ann&balance=-100&email=ann%40example.com",
    b"metadata[order_id]=6735&metadata[note]=x&expand[0]=default_source&expand[1]=tax",
    b"address[city]=Paris&address[line1]=1+rue&tax_id_data[0][type]=eu_vat"
    b"&tax_id_data[0][value]=FR123&preferred_locales[]=fr",
    b"metadata=&address=",  # Stripe's "unset" spelling: anyOf [object, enum [""]]
]
FORMS_INVALID = [
    (b"balance=lots", "/body/balance"),
    (b"nickname=ann", "/body/nickname"),  # additionalProperties: false
    (b"tax_id_data[0][type]=no_such_id&tax_id_data[0][value]=1", "/body/tax_id_data/0/type"),
    (b"metadata=x", "/body/metadata"),  # neither an object nor ""
]


def test_stripe_form_bodies(stripe: tuple[int, Recorder]) -> None:
    port, recorder = stripe
    for body in FORMS_VALID:
        status, answer = post_form(port, "/v1/customers", body)
        assert status == 200, (body, answer)
        assert recorder.seen[-1] == ("POST", "/v1/customers", body)
    seen = len(recorder.seen)
    for body, pointer in FORMS_INVALID:
        status, problem = post_form(port, "/v1/customers", body)
        assert status == 400, (body, problem)
        assert any(e["pointer"].startswith(pointer) for e in problem["errors"]), problem
    assert len(recorder.seen) == seen


# Stripe's deepest form keys: seven levels below the body's property.
SCHEDULE = (
    b"customer=cus_1&phases[0][items][0][price_data][currency]=usd"
    b"&phases[0][items][0][price_data][product]=prod_1"
    b"&phases[0][items][0][price_data][recurring][interval]=week"
    b"&phases[0][items][0][price_data][recurring][interval_count]="
)


def test_stripe_form_values_seven_levels_deep_are_read_by_their_schema(
    stripe: tuple[int, Recorder],
) -> None:
    """The integer at phases/0/items/0/price_data/recurring/interval_count was left a
    string (shapes were built six levels deep), so every valid value was refused."""
    port, recorder = stripe
    status, answer = post_form(port, "/v1/subscription_schedules", SCHEDULE + b"2")
    assert status == 200, answer
    assert recorder.seen[-1] == ("POST", "/v1/subscription_schedules", SCHEDULE + b"2")
    status, problem = post_form(port, "/v1/subscription_schedules", SCHEDULE + b"often")
    assert status == 400, problem
    pointers = [e["pointer"] for e in problem["errors"]]
    assert pointers == ["/body/phases/0/items/0/price_data/recurring/interval_count"], problem
