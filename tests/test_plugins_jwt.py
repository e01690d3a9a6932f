"""jwt-auth on a real gateway: real keys made here (RSA, EC P-256, Ed25519, HS256), a JWKS
served by an aiohttp app on loopback (its requests counted), the attacks refused, the
cache, the claim -> consumer mapping, and the config problems with their pointers."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import jwt as pyjwt
import orjson
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from runmcp_fast.config import config_from_data
from runmcp_fast.problems import SnapshotError
from runmcp_fast.snapshot import build_snapshot
from tests.servers import ECHO_COUNT, Harness, echo_app, wait_event, wait_until

ISS = "https://issuer.example"
AUD = "api://gateway"
SECRET = "s3cret-" + "x" * 40

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()
OTHER_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(private: Any) -> str:
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _public_jwk(private: Any) -> dict[str, Any]:
    if isinstance(private, rsa.RSAPrivateKey):
        data: dict[str, Any] = json.loads(
            pyjwt.algorithms.RSAAlgorithm.to_jwk(private.public_key())
        )
        data["alg"] = "RS256"
    elif isinstance(private, ec.EllipticCurvePrivateKey):
        data = json.loads(pyjwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
        data["alg"] = "ES256"
    else:
        data = json.loads(pyjwt.algorithms.OKPAlgorithm.to_jwk(private.public_key()))
        data["alg"] = "EdDSA"
    return data


def public_jwk(private: Any, kid: str) -> dict[str, Any]:
    data = _public_jwk(private)
    data["kid"] = kid
    return data


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    out = {"iss": ISS, "aud": AUD, "sub": "alice", "exp": now + 600, "iat": now}
    out.update(extra)
    return {k: v for k, v in out.items() if v is not None}


def token(key: Any, alg: str, kid: str | None = "rsa", **extra: Any) -> str:
    headers = {"kid": kid} if kid is not None else {}
    return pyjwt.encode(claims(**extra), key, algorithm=alg, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def forged(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    """A token made by hand: any header, any signature."""
    return ".".join([b64(orjson.dumps(header)), b64(orjson.dumps(payload)), b64(signature)])


def hs256_with(secret: bytes, header: dict[str, Any]) -> str:
    """HS256 signed with `secret`, by hand (PyJWT refuses a PEM as an HMAC secret)."""
    import hashlib
    import hmac

    signing = b64(orjson.dumps(header)) + "." + b64(orjson.dumps(claims()))
    signature = hmac.new(secret, signing.encode(), hashlib.sha256).digest()
    return signing + "." + b64(signature)


KEYS: list[dict[str, Any]] = [
    {"kid": "rsa", "alg": "RS256", "public_key": pem(RSA_KEY)},
    {"kid": "ec", "jwk": public_jwk(EC_KEY, "ec")},
    {"kid": "ed", "alg": "EdDSA", "public_key": pem(ED_KEY)},
    {"kid": "hs", "alg": "HS256", "secret": SECRET},
]
CONSUMERS: list[dict[str, Any]] = [
    {"name": "alice", "groups": ["staff"], "jwt-auth": {"value": "alice"}},
    {"name": "bob", "jwt-auth": {"claim": "client_id", "value": "bob-app"}},
    {"name": "guest"},
]


def _gateway(harness: Harness, settings: dict[str, Any], **data: Any) -> tuple[int, Any]:
    app = echo_app()
    upstream = harness.aiohttp(app)
    service = {"name": "api", "upstream": upstream.url, "prefix": "/api", **data.pop("service", {})}
    gateway = harness.gateway(
        {
            "consumers": CONSUMERS,
            "plugins": {"jwt-auth": settings},
            "services": [service],
            **data,
        }
    )
    return gateway.port, app


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


def bearer(value: str) -> str:
    return f"Authorization: Bearer {value}\r\n"


def _step(harness: Harness, name: str = "jwt-auth") -> Any:
    snapshot = harness._gateways[-1].gateway.snapshot
    for route in snapshot.router.routes():
        for step in route.target.chain.steps:
            if step.name == name:
                return step
    raise AssertionError(f"no step {name}")


BASE = {"keys": KEYS, "issuer": ISS, "audience": AUD, "leeway": 30}
RSA_PEM_SECRET = pem(RSA_KEY).encode()


@pytest.mark.parametrize(
    ("name", "make", "status", "detail"),
    [
        ("RS256", lambda: token(RSA_KEY, "RS256", "rsa"), 200, None),
        ("ES256 (a JWK key)", lambda: token(EC_KEY, "ES256", "ec"), 200, None),
        ("EdDSA", lambda: token(ED_KEY, "EdDSA", "ed"), 200, None),
        ("HS256", lambda: token(SECRET.encode(), "HS256", "hs"), 200, None),
        ("signed by another RSA key", lambda: token(OTHER_RSA, "RS256", "rsa"), 401, "signature"),
        (
            "alg none",
            lambda: forged({"alg": "none", "kid": "rsa"}, claims()),
            401,
            "'none' is not accepted",
        ),
        ("alg None", lambda: forged({"alg": "None"}, claims()), 401, "is not accepted"),
        # The classic: the RSA public key's PEM as an HMAC secret, with the RSA key's kid.
        (
            "HS256 with the RSA public key as secret",
            lambda: hs256_with(RSA_PEM_SECRET, {"alg": "HS256", "kid": "rsa", "typ": "JWT"}),
            401,
            "no key of this gateway verifies HS256",
        ),
        # The EC key's kid with RS256: the key verifies ES256 only.
        (
            "a key used with another algorithm",
            lambda: token(RSA_KEY, "RS256", "ec"),
            401,
            "verifies RS256",
        ),
        # kid injection: a path, a URL, SQL: only ever a dict key, and it names no key.
        (
            "kid a path",
            lambda: token(RSA_KEY, "RS256", "../../../../dev/null"),
            401,
            "kid names no key",
        ),
        (
            "kid a URL",
            lambda: token(RSA_KEY, "RS256", "https://evil.example/k.pem"),
            401,
            "kid names no key",
        ),
        ("kid SQL", lambda: token(RSA_KEY, "RS256", "x' OR '1'='1"), 401, "kid names no key"),
        (
            "kid not a string",
            lambda: forged({"alg": "RS256", "kid": 5}, claims()),
            401,
            "kid is not a string",
        ),
        ("expired", lambda: token(RSA_KEY, "RS256", exp=int(time.time()) - 120), 401, "expired"),
        (
            "expired within leeway",
            lambda: token(RSA_KEY, "RS256", exp=int(time.time()) - 5),
            200,
            None,
        ),
        (
            "nbf ahead within leeway",
            lambda: token(RSA_KEY, "RS256", nbf=int(time.time()) + 10),
            200,
            None,
        ),
        (
            "nbf ahead past leeway",
            lambda: token(RSA_KEY, "RS256", nbf=int(time.time()) + 300),
            401,
            "not valid yet",
        ),
        ("wrong aud", lambda: token(RSA_KEY, "RS256", aud="api://other"), 401, "audience"),
        ("aud in a list", lambda: token(RSA_KEY, "RS256", aud=["x", AUD]), 200, None),
        ("wrong iss", lambda: token(RSA_KEY, "RS256", iss="https://evil.example"), 401, "issuer"),
        (
            "no exp (required by default)",
            lambda: token(RSA_KEY, "RS256", exp=None),
            401,
            "no exp claim",
        ),
        ("not a JWT", lambda: "abc.def", 401, "three dot-separated parts"),
        ("padded base64", lambda: token(RSA_KEY, "RS256") + "=", 401, "not base64url"),
        (
            "crit header",
            lambda: forged({"alg": "RS256", "kid": "rsa", "crit": ["x"]}, claims()),
            401,
            "critical",
        ),
    ],
)
def test_jwt_allow_deny(
    harness: Harness, name: str, make: Callable[[], str], status: int, detail: str | None
) -> None:
    # Tokens are made when the test runs: their exp and nbf are relative to now.
    port, app = _gateway(harness, BASE)
    got, headers, body = _get(harness, port, headers=bearer(make()))
    assert got == status, (name, body)
    if status == 401:
        assert detail is not None and detail in body["detail"], (name, body["detail"])
        assert headers["www-authenticate"].startswith('Bearer realm="runmcp-fast", error=')
        assert app[ECHO_COUNT][0] == 0
    else:
        sent = [n.lower() for n, _ in body["headers"]]
        assert "authorization" not in sent  # hide_credentials (default)


def test_no_token_query_and_cookie(harness: Harness) -> None:
    good = token(RSA_KEY, "RS256")
    port, _ = _gateway(harness, BASE)
    status, headers, body = _get(harness, port)
    assert status == 401 and headers["www-authenticate"] == 'Bearer realm="runmcp-fast"'
    # The query string only when enabled: not here.
    assert _get(harness, port, f"/api/x?access_token={good}")[0] == 401
    assert _get(harness, port, f"/api/x?jwt={good}")[0] == 401
    assert _get(harness, port, headers=f"Authorization: Basic {b64(b'a:b')}\r\n")[0] == 401
    assert _get(harness, port, headers=bearer(good) + bearer(good))[0] == 401  # twice

    port, _ = _gateway(harness, {**BASE, "query": "jwt", "cookie": "session"})
    status, _, body = _get(harness, port, f"/api/x?a=1&jwt={good}")
    assert status == 200 and body["path"] == "/api/x?a=1"  # taken off
    status, _, body = _get(harness, port, headers=f"Cookie: theme=dark; session={good}\r\n")
    assert status == 200
    assert [v for n, v in body["headers"] if n.lower() == "cookie"] == ["theme=dark"]
    # In two places at once: ambiguous.
    assert _get(harness, port, f"/api/x?jwt={good}", bearer(good))[0] == 401


def test_cache_hit_after_the_first_request(harness: Harness) -> None:
    port, _ = _gateway(harness, BASE)
    step = _step(harness)
    good = token(EC_KEY, "ES256", "ec")
    for _ in range(4):
        assert _get(harness, port, headers=bearer(good))[0] == 200
    assert (step.verified, step.cached, step.cache_entries) == (1, 3, 1)
    # A token that differs from a cached one only in its first byte is verified, not served.
    other = token(EC_KEY, "ES256", "ec", jti="2")
    assert _get(harness, port, headers=bearer(other))[0] == 200
    assert (step.verified, step.cached) == (2, 3)
    # A refused token is not cached.
    bad = token(EC_KEY, "ES256", "ec", aud="nope")
    for _ in range(2):
        assert _get(harness, port, headers=bearer(bad))[0] == 401
    assert step.verified == 2 and step.refused == 2 and step.cache_entries == 2


def test_a_cached_token_expires_on_its_own_time(harness: Harness) -> None:
    # exp 2 s ahead with no leeway: verified, then refused once its exp passed, whatever
    # the cache holds (the hit path compares the wall clock with exp on every request).
    port, _ = _gateway(harness, {**BASE, "leeway": 0})
    step = _step(harness)
    soon = token(RSA_KEY, "RS256", exp=int(time.time()) + 2)
    assert _get(harness, port, headers=bearer(soon))[0] == 200
    assert _get(harness, port, headers=bearer(soon))[0] == 200
    assert step.cached == 1
    deadline = time.time() + 10
    claims_exp = pyjwt.decode(soon, options={"verify_signature": False})["exp"]
    while time.time() < claims_exp and time.time() < deadline:
        time.sleep(0.05)  # waiting for the clock itself, not for the gateway
    status, _, body = _get(harness, port, headers=bearer(soon))
    assert status == 401 and "expired" in body["detail"]


def test_claims_scopes_and_consumers(harness: Harness) -> None:
    seen: list[dict[str, Any]] = []

    class Peek:
        name = "peek"
        phase = "access"
        priority = 0

        def request(self, view: Any) -> None:
            seen.append(
                {
                    "claims": view.vars.get("claims"),
                    "scopes": view.vars.get("scopes"),
                    "consumer": view.consumer,
                }
            )

    from runmcp_fast._dataplane import PyStep

    peek = PyStep(Peek())
    app = echo_app()
    upstream = harness.aiohttp(app)
    gateway = harness.gateway(
        {
            "consumers": CONSUMERS,
            "plugins": {"jwt-auth": {**BASE, "anonymous": "guest"}},
            "services": [
                {
                    "name": "api",
                    "upstream": upstream.url,
                    "prefix": "/api",
                    "plugins": {"consumer-restriction": {"allow": {"groups": ["staff"]}}},
                },
                {"name": "open", "upstream": upstream.url, "prefix": "/open"},
            ],
        },
        steps=lambda route: [peek],
    )
    port = gateway.port
    alice = token(RSA_KEY, "RS256", scope="tools:read tools:call")
    assert _get(harness, port, "/open/x", bearer(alice))[0] == 200
    assert seen[-1]["consumer"] == "alice"
    assert seen[-1]["scopes"] == frozenset({"tools:read", "tools:call"})
    assert seen[-1]["claims"]["sub"] == "alice"
    bob = token(RSA_KEY, "RS256", sub="someone", client_id="bob-app", scp=["a", "b"])
    assert _get(harness, port, "/open/x", bearer(bob))[0] == 200
    assert seen[-1]["consumer"] == "bob" and seen[-1]["scopes"] == frozenset({"a", "b"})
    nobody = token(RSA_KEY, "RS256", sub="carol")
    assert _get(harness, port, "/open/x", bearer(nobody))[0] == 200
    assert seen[-1]["consumer"] is None and seen[-1]["claims"]["sub"] == "carol"
    assert _get(harness, port, "/open/x")[0] == 200
    assert seen[-1]["consumer"] == "guest"  # anonymous: no token
    # consumer-restriction after the mapping: alice (staff) in, bob and guest out.
    assert _get(harness, port, "/api/x", bearer(alice))[0] == 200
    assert _get(harness, port, "/api/x", bearer(bob))[0] == 403
    assert _get(harness, port, "/api/x")[0] == 403
    assert _get(harness, port, "/api/x", bearer(nobody))[0] == 401  # no consumer
    # A refused token is refused, anonymous or not.
    assert _get(harness, port, "/open/x", bearer(alice[:-2] + "xx"))[0] == 401


# -- JWKS -------------------------------------------------------------------------------------


class Jwks:
    """A JWKS endpoint on loopback whose keys a test changes; `requests` counts fetches."""

    def __init__(self, harness: Harness, keys: list[dict[str, Any]]) -> None:
        self.keys = keys
        self.requests = 0
        self.served = 0
        self.gate = threading.Event()  # cleared: a fetch waits until the test sets it
        self.gate.set()
        app = web.Application()
        app.router.add_get("/jwks.json", self.serve)
        self.url = harness.aiohttp(app).url + "/jwks.json"

    async def serve(self, request: web.Request) -> web.Response:
        self.requests += 1
        assert await wait_event(self.gate)
        self.served += 1
        return web.json_response({"keys": self.keys})


def test_jwks_unknown_kid_refetches_once_then_rotation(harness: Harness) -> None:
    jwks = Jwks(harness, [public_jwk(RSA_KEY, "k1"), {"kty": "oct", "k": "x", "kid": "junk"}])
    port, _ = _gateway(
        harness,
        {"jwks_url": jwks.url, "issuer": ISS, "audience": AUD, "jwks_min_refetch": 3600},
    )
    step = _step(harness)
    assert jwks.requests == 0  # fetched when first needed, not at build
    k1 = token(RSA_KEY, "RS256", "k1")
    assert _get(harness, port, headers=bearer(k1))[0] == 200  # waited for the first fetch
    assert jwks.requests == 1
    assert _get(harness, port, headers=bearer(k1))[0] == 200
    assert jwks.requests == 1 and step.cached == 1
    # Rotation: the IdP now signs with k2, and k1 is gone.
    jwks.keys = [public_jwk(EC_KEY, "k2")]
    k2 = token(EC_KEY, "ES256", "k2")
    assert _get(harness, port, headers=bearer(k2))[0] == 200  # unknown kid: one refetch
    assert jwks.requests == 2
    # k1 was removed: its cached verification went with it, and its kid is unknown now;
    # a refetch was made a moment ago, so none is made for it (rate limit).
    status, _, body = _get(harness, port, headers=bearer(k1))
    assert status == 401 and "kid names no key" in body["detail"]
    status, _, body = _get(harness, port, headers=bearer(token(EC_KEY, "ES256", "k9")))
    assert status == 401 and jwks.requests == 2
    # HS256 never comes from a JWKS: not accepted even with a kid it knows.
    assert (
        _get(harness, port, headers=bearer(hs256_with(b"x" * 32, {"alg": "HS256", "kid": "k2"})))[0]
        == 401
    )
    assert jwks.requests == 2


def test_a_stale_jwks_is_refreshed_in_the_background(harness: Harness) -> None:
    jwks = Jwks(harness, [public_jwk(RSA_KEY, "k1")])
    port, _ = _gateway(harness, {"jwks_url": jwks.url, "jwks_refresh": 1})
    source = _step(harness).verifier.jwks
    assert _get(harness, port, headers=bearer(token(RSA_KEY, "RS256", "k1")))[0] == 200
    assert jwks.requests == 1
    # Once the set is stale, the next miss starts a fetch and does not wait for it: the
    # JWKS server holds that fetch until this request has been answered.
    assert wait_until(lambda: source.stale(time.monotonic()), timeout=5)
    jwks.gate.clear()
    jwks.keys = [public_jwk(RSA_KEY, "k1"), public_jwk(EC_KEY, "k2")]
    fresh = token(RSA_KEY, "RS256", "k1", jti="another")
    assert _get(harness, port, headers=bearer(fresh))[0] == 200
    assert wait_until(lambda: jwks.requests == 2) and jwks.served == 1
    jwks.gate.set()
    assert wait_until(lambda: source.keys is not None and len(source.keys) == 2)
    assert _get(harness, port, headers=bearer(token(EC_KEY, "ES256", "k2")))[0] == 200
    assert jwks.requests == 2


def test_jwks_unknown_kid_rate_limit(harness: Harness) -> None:
    jwks = Jwks(harness, [public_jwk(RSA_KEY, "k1")])
    port, _ = _gateway(harness, {"jwks_url": jwks.url, "jwks_min_refetch": 3600})
    assert _get(harness, port, headers=bearer(token(RSA_KEY, "RS256", "k1")))[0] == 200
    assert jwks.requests == 1
    # The first unknown kid refetches once; the second, right after, does not.
    assert _get(harness, port, headers=bearer(token(RSA_KEY, "RS256", "k8")))[0] == 401
    assert jwks.requests == 2
    assert _get(harness, port, headers=bearer(token(RSA_KEY, "RS256", "k9")))[0] == 401
    assert jwks.requests == 2


def test_jwks_unreachable_answers_503(harness: Harness) -> None:
    port, _ = _gateway(harness, {"jwks_url": "http://127.0.0.1:1/jwks.json", "jwks_timeout": 2})
    status, headers, body = _get(harness, port, headers=bearer(token(RSA_KEY, "RS256", "k1")))
    assert status == 503 and headers["retry-after"] == "5", body


# -- problems, with their pointers -----------------------------------------------------------


def _problems(data: dict[str, Any]) -> list[tuple[str, str, str]]:
    data = {"listeners": [{"address": "127.0.0.1:0"}], **data}
    config = config_from_data(data, source="<t>", base_dir=".")
    with pytest.raises(SnapshotError) as caught:
        build_snapshot(config, lambda _u: None, "<t>")
    return [(p.pointer, p.message, p.hint) for p in caught.value.problems]


SERVICE = {"name": "api", "upstream": "http://127.0.0.1:1", "prefix": "/"}
PRIVATE_PEM = RSA_KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()


@pytest.mark.parametrize(
    ("settings", "consumers", "pointer", "message", "hint"),
    [
        ({}, [], "/plugins/jwt-auth", "no key to verify tokens with", "give keys"),
        (
            {"jwks_url": "file:///etc/passwd"},
            [],
            "/plugins/jwt-auth/jwks_url",
            "the JWKS URL must be http:// or https://",
            "e.g. https://",
        ),
        (
            {"keys": [{"secret": "short", "alg": "HS256"}]},
            [],
            "/plugins/jwt-auth/keys/0",
            "HS256 needs a secret of at least 32 bytes",
            "a long random secret",
        ),
        (
            {"keys": [{"secret": SECRET}]},
            [],
            "/plugins/jwt-auth/keys/0/alg",
            "a secret needs alg: HS256, HS384 or HS512",
            "",
        ),
        (
            {"keys": [{"public_key": PRIVATE_PEM, "alg": "RS256"}]},
            [],
            "/plugins/jwt-auth/keys/0",
            "this is a private key",
            "a PEM public key",
        ),
        (
            {"keys": [{"public_key": pem(RSA_KEY), "alg": "ES256"}]},
            [],
            "/plugins/jwt-auth/keys/0",
            "this key can not verify ES256",
            "",
        ),
        (
            {"keys": [{"secret": RSA_PEM_SECRET.decode(), "alg": "HS256"}]},
            [],
            "/plugins/jwt-auth/keys/0",
            "this secret is a PEM or SSH key",
            "",
        ),
        (
            {"keys": [{"public_key": pem(RSA_KEY), "secret": SECRET, "alg": "HS256"}]},
            [],
            "/plugins/jwt-auth/keys/0",
            "a key is one of public_key, jwk or secret",
            "give exactly one",
        ),
        (
            {"keys": [{"public_key": pem(RSA_KEY), "alg": "none"}]},
            [],
            "/plugins/jwt-auth/keys/0/alg",
            "Expected `str` matching regex",
            "",
        ),
        (
            {"keys": [{"secret": {"env": "RUNMCP_TEST_UNSET_VARIABLE"}, "alg": "HS256"}]},
            [],
            "/plugins/jwt-auth/keys/0/secret/env",
            "the environment variable RUNMCP_TEST_UNSET_VARIABLE is not set",
            "",
        ),
        (
            {"keys": KEYS},
            [
                {"name": "a", "jwt-auth": {"value": "x"}},
                {"name": "b", "jwt-auth": {"value": "x"}},
            ],
            "/consumers/1/jwt-auth/value",
            "consumer 'a' already has sub = 'x'",
            "one claim value names one consumer",
        ),
        (
            {"keys": KEYS},
            [{"name": "a", "jwt-auth": {"valeu": "x"}}],
            "/consumers/0/jwt-auth/valeu",
            "unknown key 'valeu'",
            "did you mean 'value'?",
        ),
    ],
)
def test_jwt_problems_name_the_pointer_and_the_fix(
    settings: dict[str, Any],
    consumers: list[dict[str, Any]],
    pointer: str,
    message: str,
    hint: str,
) -> None:
    found = _problems(
        {"services": [SERVICE], "consumers": consumers, "plugins": {"jwt-auth": settings}}
    )
    matching = [p for p in found if p[0] == pointer]
    assert matching, found
    _, got_message, got_hint = matching[0]
    assert got_message.startswith(message), got_message
    assert got_hint.startswith(hint), got_hint


def test_a_key_without_kid_serves_tokens_without_one(harness: Harness) -> None:
    # As bench/plugins configures it: one HS256 key, tokens without a kid.
    port, _ = _gateway(harness, {"keys": [{"alg": "HS256", "secret": SECRET}]})
    assert _get(harness, port, headers=bearer(token(SECRET.encode(), "HS256", None)))[0] == 200
    status, _, body = _get(harness, port, headers=bearer(token(SECRET.encode(), "HS256", "k")))
    assert status == 401 and "kid names no key" in body["detail"]
