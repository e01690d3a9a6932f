"""Edge cases of the plugin layer found by hunting for bugs: each test failed before the
fix its commit made (real gateways, upstreams and clients on loopback)."""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from tests.servers import Harness, echo_app, wait_until
from tests.test_plugins_jwt import RSA_KEY, bearer, public_jwk, token


def _get(
    harness: Harness, port: int, path: str = "/api/x", headers: str = ""
) -> tuple[int, dict[str, str], Any]:
    client = harness.client(port)
    client.send(f"GET {path} HTTP/1.1\r\nHost: h\r\n{headers}\r\n".encode())
    status, response_headers, body = client.read_response()
    try:
        return status, response_headers, json.loads(body)
    except ValueError:
        return status, response_headers, body


def _step(harness: Harness, name: str) -> Any:
    snapshot = harness._gateways[-1].gateway.snapshot
    for route in snapshot.router.routes():
        for step in route.target.chain.steps:
            if step.name == name:
                return step
    raise AssertionError(f"no step {name}")


# -- jwt-auth: a JWKS URL that fails --------------------------------------------------------


class FailingJwks:
    """A JWKS endpoint answering 500 until `keys` is set; `requests` counts fetches."""

    def __init__(self, harness: Harness) -> None:
        self.requests = 0
        self.keys: list[dict[str, Any]] | None = None
        app = web.Application()
        app.router.add_get("/jwks.json", self.serve)
        self.url = harness.aiohttp(app).url + "/jwks.json"

    async def serve(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.keys is None:
            return web.Response(status=500, text="down")
        return web.json_response({"keys": self.keys})


def test_a_failing_jwks_is_not_fetched_again_by_every_request(harness: Harness) -> None:
    # Before: with no key set held, each request with a token started a fetch of its own
    # (and waited for it): the IdP was hit at the rate requests came.
    jwks = FailingJwks(harness)
    upstream = harness.aiohttp(echo_app())
    gateway = harness.gateway(
        {
            "plugins": {"jwt-auth": {"jwks_url": jwks.url, "jwks_min_refetch": 3600}},
            "services": [{"name": "api", "upstream": upstream.url, "prefix": "/api"}],
        }
    )
    source = _step(harness, "jwt-auth").verifier.jwks
    good = token(RSA_KEY, "RS256", "k1")
    for _ in range(5):
        status, headers, _ = _get(harness, gateway.port, headers=bearer(good))
        assert status == 503 and headers["retry-after"] == "5"
    assert jwks.requests == 1
    # The IdP comes back: once the pause after the failure is over (1 s after a first
    # failure), the next request fetches again and gets in.
    jwks.keys = [public_jwk(RSA_KEY, "k1")]
    assert wait_until(lambda: not source.backing_off(time.monotonic()), timeout=5)
    assert _get(harness, gateway.port, headers=bearer(good))[0] == 200
    assert jwks.requests == 2
