"""mcp-auth: the gateway as the OAuth 2.1 resource server of its MCP endpoints, as the MCP
authorization spec (2025-06-18, 2025-11-25) asks (docs/plugins/auth-tokens.md).

Tokens are checked as jwt-auth checks them (the same settings and Verifier), with
the audience this endpoint's resource URL (RFC 8707). Each MCP endpoint gets its
own step (`bind`: its resource URL is in its answers and its audience), and the
snapshot build adds the endpoint's Protected Resource Metadata route (RFC 9728)
for each bound step it finds on an MCP route (snapshot.py).

The resource URL is never taken from a request's Host: it is `public_url` + the
endpoint's path, or, without `public_url`, built from the config alone (the one
listener's scheme and port, the service's one literal host); a config that does
not say enough is refused.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec
import orjson
from msgspec import Meta

from runmcp_fast._dataplane import Step
from runmcp_fast.config import ListenerConfig
from runmcp_fast.plugins._steps import McpAuthStep
from runmcp_fast.plugins.builtin.jwt import (
    TokenSettings,
    check_token_settings,
    consumer_claims,
    secret_setting,
    verifier,
)
from runmcp_fast.plugins.contract import BuildContext, Plugin, PluginError, SecretValue, Settings

WELL_KNOWN = "/.well-known/oauth-protected-resource"
_HEADER = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$"


def _doc(text: str) -> Meta:
    return Meta(description=text)


class UpstreamCredential(Settings, frozen=True):
    """What the gateway sends upstream in place of the client's token."""

    header: Annotated[str, Meta(pattern=_HEADER), _doc("The header, e.g. Authorization.")]
    value: Annotated[
        SecretValue, _doc("Its value, e.g. 'Bearer <key>': a string, {env: NAME} or {file: PATH}.")
    ]


class McpAuthSettings(TokenSettings, frozen=True, kw_only=True):
    authorization_servers: Annotated[
        list[str],
        Meta(min_length=1),
        _doc("The authorization servers' issuer URLs, for the resource metadata (RFC 9728)."),
    ]
    public_url: Annotated[
        str | None,
        _doc(
            "scheme://host[:port] clients reach the gateway at (behind a TLS proxy: the"
            " proxy's); the resource URL is this + the endpoint's path. Default: the"
            " listener's scheme and port and the service's host, when the config names them."
        ),
    ] = None
    audience: Annotated[
        list[str], _doc("Audiences accepted besides the resource URL (e.g. an API identifier).")
    ] = msgspec.field(default_factory=list)
    required_scopes: Annotated[
        list[str], _doc("Scopes every request needs; without them 403 insufficient_scope.")
    ] = msgspec.field(default_factory=list)
    scopes_supported: Annotated[
        list[str] | None, _doc("scopes_supported in the metadata. Default: required_scopes.")
    ] = None
    resource_name: Annotated[str | None, _doc("resource_name in the metadata.")] = None
    upstream_credential: Annotated[
        UpstreamCredential | None,
        _doc("Sent upstream in place of the client's token (which never goes upstream)."),
    ] = None


class McpAuth(Plugin):
    """OAuth 2.1 resource server on MCP endpoints: tokens for this resource, scopes,
    the 401/403 challenges and metadata MCP clients discover authorization with."""

    name = "mcp-auth"
    phase = "access"
    priority = 2590  # before the other authentication steps: it owns Authorization on its routes
    Config = McpAuthSettings
    scopes = frozenset({"global", "service"})
    routes = frozenset({"mcp", "virtual"})
    supersedes = frozenset({"jwt-auth"})
    summary = "MCP authorization: bearer tokens for this resource, scopes, RFC 9728 metadata"

    def check(self, settings: Any) -> Iterator[PluginError]:
        yield from check_token_settings(settings)
        for index, server in enumerate(settings.authorization_servers):
            parts = urlsplit(server)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                yield PluginError(
                    "an authorization server is its issuer URL",
                    at=f"/authorization_servers/{index}",
                    hint="e.g. https://auth.example.com",
                )
        if settings.public_url is not None:
            problem = _public_url_problem(settings.public_url)
            if problem:
                yield PluginError(
                    problem, at="/public_url", hint="e.g. https://mcp.example.com (no path)"
                )
        for index, scope in enumerate(settings.required_scopes):
            if not scope or any(c in scope for c in ' "\\'):
                yield PluginError(
                    "not a scope",
                    at=f"/required_scopes/{index}",
                    hint="a scope is one token without spaces or quotes, e.g. mcp:tools",
                )

    def step(self, settings: Any, context: BuildContext, *, fail_open: bool) -> Step:
        # The template: bound to each endpoint by the snapshot build (bind).
        checks = verifier(settings, context, audiences=[], consumers=consumer_claims(context))
        credential = None
        if settings.upstream_credential is not None:
            value = secret_setting(
                context, settings.upstream_credential.value, "/upstream_credential/value"
            )
            credential = (settings.upstream_credential.header, value)
        template = McpAuthStep(checks, credential=credential, fail_open=fail_open)
        bound: dict[str, McpAuthStep] = {}

        def bind(
            path: str, hosts: Sequence[str | None], listeners: Sequence[ListenerConfig]
        ) -> McpAuthStep:
            resource = resource_url(settings, path, hosts, listeners)
            found = bound.get(resource)
            if found is None:
                found = bound[resource] = McpAuthStep(
                    checks.with_audiences([resource, *settings.audience]),
                    resource=resource,
                    metadata_url=metadata_url(resource),
                    metadata=metadata_document(settings, resource),
                    required_scopes=settings.required_scopes,
                    credential=credential,
                    cache_size=settings.cache_size,
                    fail_open=fail_open,
                )
            return found

        template.binder = bind
        return template


def _public_url_problem(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "public_url is scheme://host[:port]"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return "public_url has no path, query or fragment: the endpoint's path is added to it"
    return ""


def metadata_url(resource: str) -> str:
    """Where a resource's metadata is (RFC 9728 §3.1: the well-known path, then the
    resource's own path)."""
    parts = urlsplit(resource)
    path = parts.path.rstrip("/")
    return f"{parts.scheme}://{parts.netloc}{WELL_KNOWN}{path}"


def metadata_document(settings: McpAuthSettings, resource: str) -> bytes:
    document: dict[str, Any] = {
        "resource": resource,
        "authorization_servers": list(settings.authorization_servers),
        "scopes_supported": list(
            settings.scopes_supported
            if settings.scopes_supported is not None
            else settings.required_scopes
        ),
        "bearer_methods_supported": ["header"],
    }
    if settings.resource_name:
        document["resource_name"] = settings.resource_name
    return orjson.dumps(document)


def resource_url(
    settings: McpAuthSettings,
    path: str,
    hosts: Sequence[str | None],
    listeners: Sequence[ListenerConfig],
) -> str:
    """The resource URL of the MCP endpoint at `path` on `hosts`; PluginError when the
    config does not say enough to build it (never guessed from a request's Host)."""
    if settings.public_url is not None:
        return settings.public_url.rstrip("/") + path
    tcp = [listener for listener in listeners if not listener.address.startswith("unix:")]
    schemes = {"https" if listener.tls is not None else "http" for listener in tcp}
    if len(schemes) != 1:
        raise PluginError(
            "can not build the resource URL: the listeners do not have one scheme",
            at="/public_url",
            hint="set public_url: https://<the host clients use>",
        )
    literal = [h for h in hosts if h is not None and "*" not in h and "{" not in h]
    if len(literal) != 1 or len(hosts) != 1:
        raise PluginError(
            "can not build the resource URL: the endpoint has no single host of its own"
            " (a resource URL is never taken from a request's Host header)",
            at="/public_url",
            hint="set public_url: https://<the host clients use>, or give the service one host",
        )
    ports = {listener.address.rsplit(":", 1)[1] for listener in tcp}
    scheme = schemes.pop()
    port = ports.pop() if len(ports) == 1 else None
    if port is None or port == "0":
        raise PluginError(
            "can not build the resource URL: the listeners do not have one fixed port",
            at="/public_url",
            hint="set public_url: https://<the host clients use>",
        )
    default = "443" if scheme == "https" else "80"
    authority = literal[0] if port == default else f"{literal[0]}:{port}"
    return f"{scheme}://{authority}{path}"
