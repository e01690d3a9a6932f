"""mcp-auth: the gateway as the OAuth 2.1 resource server of its MCP endpoints.

Real parts: an official-SDK MCP server process behind the gateway; a tiny
authorization server written here (aiohttp: RFC 8414 metadata, dynamic client
registration, authorize with PKCE, a token endpoint issuing RS256 JWTs, a JWKS);
the SDK's own OAuth client (`OAuthClientProvider`) discovering all of it from the
gateway's 401; a recording upstream showing what reaches the server.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import jwt as pyjwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp.client.auth import OAuthClientProvider
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)
from mcp_fixtures import ReplicaSet, mcp_client, mcp_replicas
from servers import AiohttpUpstream, GatewayThread, LoopThread, RecordingUpstream, free_port

pytestmark = pytest.mark.anyio

SIGNING_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SCOPE = "mcp:tools"
UPSTREAM_SECRET = "Bearer upstream-only-secret"
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"},
    },
}
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


class AuthServer:
    """An OAuth 2.1 authorization server in a few handlers: enough for the SDK's flow."""

    def __init__(self, loop_thread: LoopThread) -> None:
        self.codes: dict[str, dict[str, Any]] = {}
        self.registered: list[dict[str, Any]] = []
        self.token_requests: list[dict[str, str]] = []
        app = web.Application()
        app.router.add_get("/.well-known/oauth-authorization-server", self.metadata)
        app.router.add_post("/register", self.register)
        app.router.add_get("/authorize", self.authorize)
        app.router.add_post("/token", self.token)
        app.router.add_get("/jwks.json", self.jwks)
        self.server = AiohttpUpstream(app, loop_thread)
        self.issuer = self.server.url

    def issue(self, audience: str | list[str], scope: str, **extra: Any) -> str:
        now = int(time.time())
        payload = {
            "iss": self.issuer,
            "aud": audience,
            "sub": "user-1",
            "exp": now + 600,
            "iat": now,
            "scope": scope,
            **extra,
        }
        return pyjwt.encode(payload, SIGNING_KEY, algorithm="RS256", headers={"kid": "as-1"})

    async def metadata(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": self.issuer,
                "authorization_endpoint": self.issuer + "/authorize",
                "token_endpoint": self.issuer + "/token",
                "registration_endpoint": self.issuer + "/register",
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["none"],
                "scopes_supported": [SCOPE],
            }
        )

    async def register(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.registered.append(body)
        return web.json_response(
            {
                **body,
                "client_id": f"client-{len(self.registered)}",
                "token_endpoint_auth_method": "none",
            },
            status=201,
        )

    async def authorize(self, request: web.Request) -> web.Response:
        query = request.query
        code = secrets.token_urlsafe(16)
        self.codes[code] = dict(query)
        location = f"{query['redirect_uri']}?code={code}&state={query['state']}"
        return web.Response(status=302, headers={"Location": location})

    async def token(self, request: web.Request) -> web.Response:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        self.token_requests.append(form)
        asked = self.codes.pop(form.get("code", ""), None)
        if asked is None:
            return web.json_response({"error": "invalid_grant"}, status=400)
        verifier = form.get("code_verifier", "").encode()
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=")
        if challenge.decode() != asked["code_challenge"]:
            return web.json_response({"error": "invalid_grant"}, status=400)
        resource = form.get("resource") or asked.get("resource")
        scope = asked.get("scope", "")
        return web.json_response(
            {
                "access_token": self.issue(resource or "?", scope),
                "token_type": "Bearer",
                "expires_in": 600,
                "scope": scope,
            }
        )

    async def jwks(self, request: web.Request) -> web.Response:
        key = json.loads(pyjwt.algorithms.RSAAlgorithm.to_jwk(SIGNING_KEY.public_key()))
        return web.json_response({"keys": [{**key, "kid": "as-1", "alg": "RS256", "use": "sig"}]})


class Setup:
    def __init__(
        self, gateway: GatewayThread, auth: AuthServer, recorder: RecordingUpstream
    ) -> None:
        self.gateway = gateway
        self.auth = auth
        self.recorder = recorder
        self.base = f"http://127.0.0.1:{gateway.port}"

    def url(self, path: str = "/mcp") -> str:
        return self.base + path


@pytest.fixture(scope="module")
def replicas() -> Iterator[ReplicaSet]:
    with mcp_replicas(1) as started:
        yield started


SPEC = {
    "openapi": "3.0.3",
    "info": {"title": "pets", "version": "1"},
    "paths": {
        "/pets": {"get": {"operationId": "listPets", "responses": {"200": {"description": "ok"}}}}
    },
}


@pytest.fixture(scope="module")
def setup(replicas: ReplicaSet) -> Iterator[Setup]:
    with LoopThread() as servers, LoopThread() as gateway_loop:
        auth = AuthServer(servers)
        recorder = RecordingUpstream(servers)
        port = free_port()
        settings = {
            "jwks_url": auth.issuer + "/jwks.json",
            "issuer": auth.issuer,
            "authorization_servers": [auth.issuer],
            "required_scopes": [SCOPE],
            "public_url": f"http://127.0.0.1:{port}",
            "upstream_credential": {"header": "X-Upstream-Key", "value": UPSTREAM_SECRET},
        }
        gateway = GatewayThread(
            {
                "listeners": [{"address": f"127.0.0.1:{port}"}],
                "services": [
                    {
                        "name": "tools",
                        "kind": "mcp",
                        "upstream": replicas.urls[0],
                        "plugins": {"mcp-auth": settings},
                    },
                    {
                        "name": "scoped",
                        "kind": "mcp",
                        "upstream": replicas.urls[0],
                        "mcp": {"path": "/scoped/mcp"},
                        "plugins": {
                            "mcp-auth": settings,
                            # Reads the scopes mcp-auth leaves in vars.
                            "mcp-authz": {
                                "rules": [
                                    {"effect": "allow", "tools": ["echo"], "scopes": ["tools:echo"]}
                                ]
                            },
                        },
                    },
                    {
                        "name": "rec",
                        "kind": "mcp",
                        "upstream": recorder.url + "/mcp",
                        "mcp": {"path": "/rec/mcp"},
                        "plugins": {"mcp-auth": settings},
                    },
                    {
                        "name": "pets",
                        "upstream": recorder.url,
                        "openapi": SPEC,
                        "base_path": "/pets-api",
                        "plugins": {"mcp-auth": settings},
                    },
                ],
                "mcp_servers": [
                    {
                        "name": "fed",
                        "path": "/fed/mcp",
                        "members": [{"service": "pets"}],
                        "plugins": {"mcp-auth": settings},
                    }
                ],
            },
            gateway_loop,
        )
        try:
            yield Setup(gateway, auth, recorder)
        finally:
            gateway.stop()
            recorder.close()
            auth.server.close()


def challenge(response: httpx2.Response) -> dict[str, str]:
    value = response.headers["www-authenticate"]
    assert value.startswith("Bearer ")
    out = {}
    for part in value[7:].split(", "):
        name, _, quoted = part.partition("=")
        out[name] = quoted.strip('"')
    return out


# -- discovery, driven by the SDK's OAuth client ---------------------------------------


class Memory:
    """The SDK's TokenStorage, in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


@asynccontextmanager
async def oauth_session(url: str) -> AsyncIterator[tuple[ClientSession, list[httpx2.Response]]]:
    """An SDK session whose httpx client runs the SDK's OAuth flow (authorization code +
    PKCE + dynamic registration); the "browser" follows the authorize redirect here."""
    redirect = "http://127.0.0.1:9/callback"
    landed: dict[str, str] = {}

    async def open_browser(authorization_url: str) -> None:
        async with httpx2.AsyncClient() as browser:
            answer = await browser.get(authorization_url)
        assert answer.status_code == 302
        query = parse_qs(urlsplit(answer.headers["location"]).query)
        landed["code"], landed["state"] = query["code"][0], query["state"][0]

    async def callback() -> AuthorizationCodeResult:
        return AuthorizationCodeResult(code=landed["code"], state=landed["state"])

    provider = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            redirect_uris=[redirect],  # type: ignore[list-item]
            client_name="runmcp-fast tests",
            grant_types=["authorization_code"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=Memory(),
        redirect_handler=open_browser,
        callback_handler=callback,
    )
    seen: list[httpx2.Response] = []

    async def record(response: httpx2.Response) -> None:
        seen.append(response)

    async with (
        httpx2.AsyncClient(auth=provider, event_hooks={"response": [record]}) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session, seen


async def test_sdk_discovers_authorization_from_the_401(setup: Setup) -> None:
    async with oauth_session(setup.url()) as (session, seen):
        tools = await session.list_tools()
        assert "echo" in {t.name for t in tools.tools}
        result = await session.call_tool("echo", {"text": "through mcp-auth"})
        assert not result.is_error
    first = seen[0]
    assert first.status_code == 401
    found = challenge(first)
    assert found["resource_metadata"] == setup.url("/.well-known/oauth-protected-resource/mcp")
    assert found["scope"] == SCOPE
    fetched = [str(r.request.url) for r in seen]
    assert found["resource_metadata"] in fetched  # the client read the document named
    # The token was asked for this resource (RFC 8707) and with the challenged scope.
    request = setup.auth.token_requests[-1]
    assert request["resource"] == setup.url()
    assert setup.auth.registered  # dynamic client registration ran


async def test_metadata_documents_one_per_endpoint(setup: Setup) -> None:
    async with httpx2.AsyncClient() as http:
        for path in ("/mcp", "/rec/mcp", "/pets-api/mcp", "/fed/mcp"):
            response = await http.post(setup.url(path), json=INIT, headers=ACCEPT)
            assert response.status_code == 401, path
            assert response.json()["error"]["code"] == -32600  # JSON-RPC shaped
            url = challenge(response)["resource_metadata"]
            assert url == setup.url("/.well-known/oauth-protected-resource" + path)
            document = (await http.get(url)).json()
            assert document == {
                "resource": setup.url(path),
                "authorization_servers": [setup.auth.issuer],
                "scopes_supported": [SCOPE],
                "bearer_methods_supported": ["header"],
            }
        # Four endpoints share this host: no document at the bare well-known URL.
        bare = await http.get(setup.url("/.well-known/oauth-protected-resource"))
        assert bare.status_code == 404
        # The OpenAPI service's REST routes are not MCP routes: mcp-auth is not on them.
        assert (await http.get(setup.url("/pets-api/pets"))).status_code == 200


# -- tokens accepted and refused ------------------------------------------------------------


async def test_a_valid_token_in_the_sdk_clients_headers(setup: Setup) -> None:
    token = setup.auth.issue(setup.url(), SCOPE)
    async with mcp_client(
        setup.url(), "2025-11-25", headers={"Authorization": f"Bearer {token}"}
    ) as conn:
        assert await conn.text("echo", text="hi") == "hi"


@pytest.mark.parametrize(
    ("make", "status", "error"),
    [
        (lambda s: s.auth.issue("https://other.example/mcp", SCOPE), 401, "invalid_token"),
        (
            lambda s: s.auth.issue(s.url("/rec/mcp"), SCOPE),
            401,
            "invalid_token",
        ),  # another endpoint's
        (lambda s: s.auth.issue(s.url(), "mcp:read"), 403, "insufficient_scope"),
        (lambda s: s.auth.issue(s.url(), ""), 403, "insufficient_scope"),
        (lambda s: s.auth.issue(s.url(), SCOPE, iss="https://evil.example"), 401, "invalid_token"),
        (lambda s: s.auth.issue(s.url(), SCOPE, exp=int(time.time()) - 3600), 401, "invalid_token"),
    ],
)
async def test_refused_tokens(setup: Setup, make: Any, status: int, error: str) -> None:
    token = make(setup)
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            setup.url(), json=INIT, headers={**ACCEPT, "Authorization": f"Bearer {token}"}
        )
    assert response.status_code == status, response.text
    found = challenge(response)
    assert found["error"] == error
    assert found["resource_metadata"] == setup.url("/.well-known/oauth-protected-resource/mcp")
    if status == 403:
        assert found["scope"] == SCOPE
    assert response.json()["jsonrpc"] == "2.0"


@pytest.mark.parametrize("path", ["/pets-api/mcp", "/fed/mcp"])
async def test_generated_and_virtual_endpoints_take_their_own_tokens(
    setup: Setup, path: str
) -> None:
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    async with httpx2.AsyncClient() as http:
        for audience, status in ((setup.url(path), 200), (setup.url(), 401)):
            token = setup.auth.issue(audience, SCOPE)
            response = await http.post(
                setup.url(path),
                json=listing,
                headers={**ACCEPT, "Authorization": f"Bearer {token}"},
            )
            assert response.status_code == status, response.text
            if status == 200:
                names = [t["name"] for t in response.json()["result"]["tools"]]
                assert any(n.endswith("listPets") for n in names), names


async def test_mcp_authz_decides_on_the_scopes_mcp_auth_found(setup: Setup) -> None:
    url = setup.url("/scoped/mcp")
    both = setup.auth.issue(url, f"{SCOPE} tools:echo")
    async with mcp_client(url, "2025-11-25", headers={"Authorization": f"Bearer {both}"}) as conn:
        assert [t.name for t in (await conn.session.list_tools()).tools] == ["echo"]
        assert await conn.text("echo", text="scoped") == "scoped"
    only = setup.auth.issue(url, SCOPE)
    async with mcp_client(url, "2025-11-25", headers={"Authorization": f"Bearer {only}"}) as conn:
        assert (await conn.session.list_tools()).tools == []


async def test_a_token_in_the_query_string_is_refused(setup: Setup) -> None:
    token = setup.auth.issue(setup.url("/rec/mcp"), SCOPE)
    before = len(setup.recorder.requests)
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            setup.url(f"/rec/mcp?access_token={token}"), json=INIT, headers=ACCEPT
        )
    assert response.status_code == 400
    assert challenge(response)["error"] == "invalid_request"
    assert len(setup.recorder.requests) == before


async def test_the_upstream_never_sees_the_clients_token(setup: Setup) -> None:
    token = setup.auth.issue(setup.url("/rec/mcp"), SCOPE)
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            setup.url("/rec/mcp"),
            json=INIT,
            # A client naming the upstream credential's header gets it replaced.
            headers={**ACCEPT, "Authorization": f"Bearer {token}", "X-Upstream-Key": "forged"},
        )
    assert response.status_code == 200, response.text
    received = setup.recorder.requests[-1]
    names = [n.lower() for n, _ in received["headers"]]
    assert "authorization" not in names
    assert token not in json.dumps(received["headers"])
    assert [v for n, v in received["headers"] if n.lower() == "x-upstream-key"] == [UPSTREAM_SECRET]


# -- the resource URL: from the config, never from Host -------------------------------------


def _resource_of(listeners: list[dict[str, Any]], service: dict[str, Any]) -> str | list[Any]:
    from runmcp_fast.config import config_from_data
    from runmcp_fast.problems import SnapshotError
    from runmcp_fast.snapshot import build_snapshot

    settings = {
        "jwks_url": "https://auth.example/jwks.json",
        "authorization_servers": ["https://auth.example"],
        **service.pop("settings", {}),
    }
    data = {
        "listeners": listeners,
        "services": [
            {
                "name": "m",
                "kind": "mcp",
                "upstream": "http://127.0.0.1:1/mcp",
                **service,
                "plugins": {"mcp-auth": settings},
            }
        ],
    }
    config = config_from_data(data, source="<t>", base_dir=".")
    try:
        snapshot = build_snapshot(config, lambda _u: None, "<t>")
    except SnapshotError as exc:
        return [(p.pointer, p.message, p.hint) for p in exc.problems]
    for route in snapshot.router.routes():
        for step in route.target.chain.steps:
            if step.name == "mcp-auth":
                return str(step.resource)
    raise AssertionError("no mcp-auth step")


@pytest.mark.parametrize(
    ("listeners", "service", "expected"),
    [
        (
            [{"address": "0.0.0.0:8443", "tls": {"cert": "c", "key": "k"}}],
            {"host": "mcp.example.com"},
            "https://mcp.example.com:8443/mcp",
        ),
        (
            [{"address": "0.0.0.0:80"}],
            {"host": "mcp.example.com", "mcp": {"path": "/t/mcp"}},
            "http://mcp.example.com/t/mcp",
        ),
        (
            [{"address": "0.0.0.0:0"}],
            {"settings": {"public_url": "https://edge.example.com"}, "mcp": {"path": "/a"}},
            "https://edge.example.com/a",
        ),
    ],
)
def test_the_resource_url(
    listeners: list[dict[str, Any]], service: dict[str, Any], expected: str
) -> None:
    assert _resource_of(listeners, service) == expected


@pytest.mark.parametrize(
    ("listeners", "service", "message"),
    [
        # Any Host: the resource URL would have to come from the request's Host.
        (
            [{"address": "0.0.0.0:8080"}],
            {},
            "can not build the resource URL: the endpoint has no single host",
        ),
        (
            [{"address": "0.0.0.0:8080"}],
            {"host": "*.example.com"},
            "can not build the resource URL: the endpoint has no single host",
        ),
        (
            [{"address": "0.0.0.0:0"}],
            {"host": "mcp.example.com"},
            "can not build the resource URL: the listeners do not have one fixed port",
        ),
        (
            [
                {"address": "0.0.0.0:80"},
                {"address": "0.0.0.0:443", "tls": {"cert": "c", "key": "k"}},
            ],
            {"host": "mcp.example.com"},
            "can not build the resource URL: the listeners do not have one scheme",
        ),
        (
            [{"address": "0.0.0.0:80"}],
            {"settings": {"public_url": "https://x.example/base"}},
            "public_url has no path",
        ),
    ],
)
def test_a_resource_url_that_can_not_be_built(
    listeners: list[dict[str, Any]], service: dict[str, Any], message: str
) -> None:
    found = _resource_of(listeners, service)
    assert isinstance(found, list)
    pointer, got, hint = found[0]
    assert pointer == "/services/0/plugins/mcp-auth/public_url", found
    assert message in got, got
    assert "public_url" in hint or "e.g." in hint
