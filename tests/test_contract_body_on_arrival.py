"""A body its only step passes on arrival (`Step.body_passes`, client.pxi
`_whole_body`) goes on at its message's end as any body does: an answer the gateway
gives at once there (a circuit breaker's 503) finds the request read whole, keeps
the connection, and the requests pipelined behind it are answered in turn."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from servers import GatewayThread, Harness, RawClient, wait_until
from test_dataplane_client_read_buffer import SPEC, digest_app

VALID = json.dumps({"data": "x" * 50}).encode()


def doc(path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class Rig:
    """`docs` (the contract, one request at a time: a breaker) and `other` (no contract)."""

    def __init__(self, **breaker: Any) -> None:
        self.harness = Harness()
        self.release = threading.Event()
        docs = self.harness.aiohttp(digest_app(self.release))

        async def other(request: web.Request) -> web.Response:
            return web.Response(text="other")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", other)
        other_upstream = self.harness.aiohttp(app)
        self.gw = GatewayThread(
            {
                "services": [
                    {
                        "name": "docs",
                        "upstream": [docs.url],
                        "openapi": SPEC,
                        "circuit_breaker": breaker,
                    },
                    {"name": "other", "upstream": other_upstream.url, "prefix": "/other"},
                ]
            },
            self.harness.gateway_loop,
        )
        self.clients: list[RawClient] = []

    def client(self) -> RawClient:
        client = RawClient(self.gw.port, timeout=5)
        self.clients.append(client)
        return client

    def active(self) -> int:
        def count() -> int:
            service = self.gw.gateway.snapshot.service("docs")
            return int(service.replicas.replicas[0].active)

        return self.harness.gateway_loop.call(count)

    def hold_one(self) -> RawClient:
        """A request to `docs` the upstream holds: the breaker is at its limit."""
        first = self.client()
        first.send(doc("/docs?hold=1", VALID))
        assert wait_until(lambda: self.active() == 1)
        return first

    def close(self) -> None:
        self.release.set()
        for client in self.clients:
            client.close()
        self.gw.stop(drain_timeout=1.0)
        self.harness.close()


@pytest.fixture
def rig() -> Iterator[Rig]:
    made = Rig(max_requests=1)
    yield made
    made.close()


def test_a_breakers_503_for_a_body_passed_on_arrival_keeps_the_connection(rig: Rig) -> None:
    first = rig.hold_one()
    second = rig.client()
    second.send(doc("/docs", VALID))  # valid, in the read of its head
    status, headers, body = second.read_response()
    assert status == 503, body
    assert headers.get("connection") == "keep-alive", headers
    rig.release.set()
    assert first.read_response()[0] == 200
    second.send(doc("/docs", VALID))
    assert second.read_response()[0] == 200


def test_a_request_pipelined_behind_a_breakers_503_is_answered(rig: Rig) -> None:
    warm = rig.client()  # a pooled connection to `other`: the GET goes out at once
    warm.send(b"GET /other/warm HTTP/1.1\r\nHost: t\r\n\r\n")
    assert warm.read_response()[0] == 200
    rig.hold_one()
    second = rig.client()
    second.send(doc("/docs", VALID) + b"GET /other/next HTTP/1.1\r\nHost: t\r\n\r\n")
    assert second.read_response()[0] == 503
    status, _, body = second.read_response()
    assert (status, body) == (200, b"other")
