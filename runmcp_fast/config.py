"""The gateway's config model (msgspec Structs) and the YAML/JSON file loader.

Every problem names the file and the JSON pointer of the key at fault, with a
hint; a bad file raises `ConfigError` listing every problem at once, and never
yields a half-read config. docs/config.md describes the model;
`config_schema()` (`runmcp-fast schema`) is its JSON Schema.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import ipaddress
import math
import os
import re
import types
from collections.abc import Hashable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, cast, get_args, get_origin
from urllib.parse import urlsplit

import msgspec
import yaml
from msgspec import Meta

from runmcp_fast.handoff import pause
from runmcp_fast.problems import ConfigError, Problem, describe


def _doc(text: str) -> Meta:
    """A field's description, for the JSON Schema (editors show it)."""
    return Meta(description=text)


class _Model(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    pass


class TlsConfig(_Model, frozen=True):
    """Serve TLS on a listener: PEM files, relative to the config file."""

    cert: Annotated[str, _doc("The PEM certificate chain file.")]
    key: Annotated[str, _doc("The PEM private key file.")]


class ListenerConfig(_Model, frozen=True):
    """Where the gateway accepts clients.

    `address` is `HOST:PORT` (`[::1]:8080` for IPv6; port 0 picks a free one)
    or `unix:/path/to.sock`.
    """

    address: Annotated[
        str, _doc("HOST:PORT, [IPv6]:PORT or unix:/path/to.sock; port 0 picks a free port.")
    ]
    tls: Annotated[TlsConfig | None, _doc("Serve TLS on this listener.")] = None


class LimitsConfig(_Model, frozen=True):
    """Client-side limits; the status each one answers is in brackets."""

    max_url_bytes: Annotated[int, _doc("Longest request target, in bytes [414].")] = 8 * 1024
    max_header_bytes: Annotated[
        int, _doc("All header lines of a request together, in bytes [431].")
    ] = 16 * 1024
    max_headers: Annotated[int, _doc("Header lines in a request [431].")] = 100
    max_body_bytes: Annotated[
        int, _doc("Largest request body [413]; a service may override it.")
    ] = 16 * 1024 * 1024
    header_timeout: Annotated[
        float, _doc("Seconds to receive the whole request head [408, then close].")
    ] = 10.0
    body_timeout: Annotated[
        float, _doc("Seconds between two reads of the request body [408, then close].")
    ] = 30.0
    keepalive_timeout: Annotated[
        float, _doc("Seconds an idle keep-alive connection stays open.")
    ] = 75.0
    max_connections: Annotated[int, _doc("Client connections at once [503, then close].")] = 10_000
    drain_timeout: Annotated[
        float, _doc("On SIGINT/SIGTERM, seconds to let requests in flight finish.")
    ] = 10.0


class PoolConfig(_Model, frozen=True):
    """The keep-alive pool kept per upstream target."""

    max_connections: Annotated[int, _doc("Open connections per upstream.")] = 1024
    # As many idle as open: an idle socket costs an fd and under 1 KB, while
    # closing one that is needed again a moment later costs a connect (the
    # pool churned at 256 clients with 128 kept: 12 % of requests reconnected).
    max_idle: Annotated[int, _doc("Idle connections kept for reuse per upstream.")] = 1024
    idle_timeout: Annotated[float, _doc("Seconds before an idle connection is closed.")] = 60.0
    max_requests: Annotated[int, _doc("A connection is retired after this many requests.")] = 10_000
    wait_timeout: Annotated[float, _doc("Seconds to wait for a free connection [503].")] = 5.0
    connect_timeout: Annotated[float, _doc("Seconds to connect [504].")] = 5.0
    read_timeout: Annotated[
        float,
        _doc("Seconds to the response head [504]; a body that stalls this long is aborted."),
    ] = 60.0
    fail_timeout: Annotated[
        float,
        _doc(
            "Seconds a replica that refused a connection (or timed out connecting)"
            " is skipped, when its service has others."
        ),
    ] = 10.0


class ValidationConfig(_Model, frozen=True):
    """How a service's OpenAPI contract is enforced on requests (see docs/validation.md)."""

    # "on" refuses invalid requests; "report" logs and counts them but
    # forwards them anyway (to try a contract on live traffic); "off" skips it.
    mode: Annotated[
        Literal["on", "off", "report"],
        _doc(
            "on: invalid requests get 400/422 and never reach the upstream; report: logged,"
            " counted and forwarded anyway; off: not checked."
        ),
    ] = "on"
    status: Annotated[
        Literal[400, 422], _doc("The status of a request that breaks the contract.")
    ] = 400
    # Checking a JSON or form body needs all of it: it is buffered up to this size.
    max_body_bytes: Annotated[
        int,
        _doc(
            "JSON and URL-encoded form bodies to validate are buffered whole, up to this"
            " size; larger ones get 413."
        ),
    ] = 8 * 1024 * 1024
    operations: Annotated[
        dict[str, Literal["on", "off", "report"]],
        _doc("A mode per operationId, overriding mode for that operation."),
    ] = {}


class OperationSelector(_Model, frozen=True):
    """Operations picked by tag, operationId or HTTP method: any one entry matching picks it.

    Entries may be globs ('repos/*', 'admin-?'); methods in any case.
    """

    tags: Annotated[list[str], _doc("Operations with any of these tags.")] = []
    operations: Annotated[list[str], _doc("Operations with these operationIds.")] = []
    methods: Annotated[list[str], _doc("Operations with these HTTP methods (GET, POST, ...).")] = []


class McpConfig(_Model, frozen=True):
    """MCP at a service: the proxy of an MCP server (kind: mcp), or an OpenAPI service's tools."""

    enabled: Annotated[
        bool,
        _doc("Serve the MCP endpoint (an OpenAPI service's operations as tools)."),
    ] = True
    path: Annotated[
        str | None,
        _doc(
            "Where clients reach the MCP endpoint. Default: /mcp for kind: mcp; the spec's"
            " base path + /mcp for an OpenAPI service."
        ),
    ] = None
    transport: Annotated[
        Literal["streamable-http", "sse"],
        _doc(
            "kind: mcp only. The upstream's transport: streamable-http (2025-03-26 and later),"
            " or sse, the 2024-11-05 HTTP+SSE transport (the upstream URL is its SSE endpoint)."
        ),
    ] = "streamable-http"
    messages_path: Annotated[
        str | None,
        _doc("transport: sse only. Where clients POST messages. Default: path + /messages."),
    ] = None
    allowed_origins: Annotated[
        list[str],
        _doc(
            "Origins allowed to call (https://app.example.com, or '*'); a request with"
            " another Origin gets 403. Default: only the Host the request names."
        ),
    ] = []
    dns_rebinding_protection: Annotated[
        bool,
        _doc(
            "On a connection to a loopback address, refuse (403) a Host or Origin that is not"
            " localhost, 127.0.0.1 or [::1] (nor in allowed_hosts). Applies when the service"
            " answers any Host (no host set)."
        ),
    ] = True
    allowed_hosts: Annotated[
        list[str],
        _doc(
            "Hosts the DNS-rebinding protection lets in besides the loopback names: name (any"
            " port) or name:port."
        ),
    ] = []
    keepalive_interval: Annotated[
        float,
        _doc("Seconds of silence on an event stream before an SSE comment is sent (0: never)."),
    ] = 15.0
    include: Annotated[
        OperationSelector | None,
        _doc("OpenAPI services: only these operations become tools. Default: all."),
    ] = None
    exclude: Annotated[
        OperationSelector | None,
        _doc("OpenAPI services: these operations do not become tools (wins over include)."),
    ] = None
    page_size: Annotated[int, _doc("Tools per tools/list page.")] = 100


class FederationMember(_Model, frozen=True):
    """A service whose tools a virtual MCP server offers."""

    service: Annotated[str, _doc("The service's name (kind: mcp, or with openapi).")]
    prefix: Annotated[
        str | None,
        _doc("Put before each of its tool names. Default: the service's name and '_'."),
    ] = None


PluginMap = Annotated[
    dict[str, dict[str, Any]],
    _doc(
        "Plugins by name, each with its settings (docs/plugins.md); every entry may also"
        " have disable: true (turn off one given at a wider level) and fail_open: true."
    ),
]


class VirtualServerConfig(_Model, frozen=True):
    """A virtual MCP server: the tools of several services behind one endpoint."""

    name: Annotated[str, _doc("Unique among the virtual servers; shown to clients.")]
    members: Annotated[list[FederationMember], _doc("The services whose tools it offers.")]
    host: Annotated[
        str | list[str] | None, _doc("Only requests with this Host. Default: any Host.")
    ] = None
    path: Annotated[str, _doc("Where clients reach it.")] = "/mcp"
    allowed_origins: Annotated[
        list[str], _doc("Origins allowed to call, or '*'. Default: the Host named.")
    ] = []
    dns_rebinding_protection: Annotated[
        bool,
        _doc(
            "On a connection to a loopback address, refuse (403) a Host or Origin that is not"
            " a loopback name (nor in allowed_hosts). Applies when host is not set."
        ),
    ] = True
    allowed_hosts: Annotated[
        list[str],
        _doc("Hosts the DNS-rebinding protection lets in: name (any port) or name:port."),
    ] = []
    keepalive_interval: Annotated[
        float, _doc("Seconds of silence on an event stream before an SSE comment.")
    ] = 15.0
    page_size: Annotated[int, _doc("Tools per tools/list page.")] = 100
    plugins: PluginMap = {}


class OperationConfig(_Model, frozen=True):
    """What one operation of a service (by operationId) has of its own."""

    plugins: PluginMap = {}
    timeouts: Annotated[
        TimeoutsConfig | None, _doc("Its own upstream timeouts, over the service's.")
    ] = None
    idempotent: Annotated[
        bool,
        _doc("Safe to send twice whatever its method: retried on 502/503/504 and timeouts."),
    ] = False


class ReplicaConfig(_Model, frozen=True):
    """One replica of a service's upstream, with its weight."""

    url: Annotated[str, _doc("http(s)://HOST[:PORT][/PATH]: where this replica is.")]
    weight: Annotated[
        int, _doc("Its share of the traffic against the other replicas' weights (1 to 1000).")
    ] = 1


class HashOnConfig(_Model, frozen=True):
    """What a request is hashed on (give exactly one)."""

    header: Annotated[str | None, _doc("A request header's value.")] = None
    cookie: Annotated[str | None, _doc("A cookie's value.")] = None
    query: Annotated[str | None, _doc("A query parameter's raw value.")] = None
    path: Annotated[str | None, _doc("A path parameter of the route (its name in the spec).")] = (
        None
    )
    session: Annotated[bool, _doc("The MCP session (the Mcp-Session-Id header).")] = False


class BalancerConfig(_Model, frozen=True):
    """How a request's replica is chosen (docs/resilience.md)."""

    # least_request: the less busy of two replicas drawn at random (power of two
    # choices), weighted; round_robin: smooth weighted round robin (nginx's);
    # hash: consistent hashing on hash_on (without the key: least_request).
    policy: Annotated[
        Literal["least_request", "round_robin", "hash"],
        _doc(
            "least_request: the less busy of two replicas drawn at random (weighted);"
            " round_robin: smooth weighted round robin; hash: consistent hashing on hash_on."
        ),
    ] = "least_request"
    hash_on: Annotated[
        HashOnConfig | None,
        _doc("policy: hash: the header, cookie, query or path parameter, or the MCP session."),
    ] = None
    algorithm: Annotated[
        Literal["maglev", "ring"],
        _doc("policy: hash: a Maglev table (65,537 entries) or a ring (160 points per weight)."),
    ] = "maglev"


class OutlierConfig(_Model, frozen=True):
    """Passive health: a replica failing again and again is ejected for a while."""

    enabled: Annotated[bool, _doc("Eject replicas that fail in a row (services with several).")] = (
        True
    )
    consecutive_failures: Annotated[int, _doc("Failures in a row that eject a replica.")] = 5
    failures: Annotated[
        tuple[Literal["5xx", "connect", "timeout", "reset"], ...],
        _doc(
            "What counts as a failure: 5xx answers, connects refused or failed, timeouts,"
            " connections reset or closed before the response."
        ),
    ] = ("5xx", "connect", "timeout", "reset")
    base_ejection_time: Annotated[
        float, _doc("Seconds ejected, times the replica's ejections so far.")
    ] = 30.0
    max_ejection_time: Annotated[float, _doc("The longest ejection, seconds.")] = 300.0
    max_ejection_percent: Annotated[
        float, _doc("At most this share of the replicas ejected at once (at least one).")
    ] = 10.0
    panic_threshold: Annotated[
        float,
        _doc("Below this share of replicas in rotation, requests go to all of them (percent)."),
    ] = 50.0


class HealthCheckConfig(_Model, frozen=True):
    """Active health checks: an HTTP GET to each replica, now and then (off by default)."""

    path: Annotated[str, _doc("The path to GET on each replica, e.g. /healthz.")]
    statuses: Annotated[
        list[int], _doc("Statuses that mean healthy. Default: any 2xx or 3xx.")
    ] = []
    interval: Annotated[float, _doc("Seconds between two checks of a replica.")] = 5.0
    timeout: Annotated[float, _doc("Seconds a check may take; longer is a failure.")] = 2.0
    rise: Annotated[int, _doc("Successes in a row that bring a replica back.")] = 2
    fall: Annotated[int, _doc("Failures in a row that take a replica out.")] = 3
    host: Annotated[
        str | None, _doc("The Host header of a check. Default: the replica's host[:port].")
    ] = None


RetryReason = Literal["connect", "reset", "timeout", 502, 503, 504]


class RetryConfig(_Model, frozen=True):
    """Retries on another replica, only when safe (docs/resilience.md)."""

    attempts: Annotated[
        int, _doc("Retries per request at most, each on a replica not tried yet; 0: none.")
    ] = 2
    on: Annotated[
        tuple[RetryReason, ...],
        _doc(
            "connect: refused or failed before the request was written (any method); reset,"
            " timeout (no response head in time), 502, 503, 504: idempotent requests only."
        ),
    ] = ("connect", "reset", "timeout", 502, 503, 504)
    budget_percent: Annotated[
        float, _doc("Retries may add this share of the requests (percent), beyond budget_min.")
    ] = 20.0
    budget_min: Annotated[int, _doc("Retries allowed whatever the traffic.")] = 3
    backoff_base: Annotated[
        float, _doc("Seconds: the first retry after a response or a timeout waits up to this.")
    ] = 0.025
    backoff_max: Annotated[float, _doc("Seconds: the longest wait before a retry.")] = 0.25


class CircuitBreakerConfig(_Model, frozen=True):
    """Limits per replica; past max_pending or max_requests: 503 with Retry-After."""

    max_connections: Annotated[
        int | None, _doc("Connections to a replica; more requests wait for one.")
    ] = None
    max_pending: Annotated[
        int | None, _doc("Requests waiting for a connection to a replica [503].")
    ] = None
    max_requests: Annotated[int | None, _doc("Requests in flight on a replica [503].")] = None


class TimeoutsConfig(_Model, frozen=True):
    """Upstream timeouts, seconds (docs/resilience.md)."""

    connect: Annotated[float | None, _doc("To connect [504]. Default: connect_timeout.")] = None
    first_byte: Annotated[
        float | None, _doc("From the request written to the response head [504].")
    ] = None
    idle: Annotated[
        float | None, _doc("Between two reads of the response; past it the response is aborted.")
    ] = None
    total: Annotated[
        float | None,
        _doc(
            "From the first try to the response's end, retries included (an event stream: to"
            " its head). Default: none."
        ),
    ] = None


class ServiceConfig(_Model, frozen=True):
    """One upstream service and how clients reach it.

    With `openapi` (a file path, or the spec document itself inline), its
    routes come from the spec (under the spec's base path, or `base_path`);
    without, `prefix` routes everything under it. It is reached on `host`
    (router host patterns: `api.example.com`, `*.example.com`,
    `{tenant}.example.com`), on `{subdomain}.{base_domain}` with `subdomain`,
    on its tenant's hosts when it belongs to a tenant, and on any Host when
    none of these is given.
    """

    name: Annotated[
        str,
        _doc(
            "Unique among the services (of its tenant); 1 to 63 letters, digits, '.', '_'"
            " or '-', starting with a letter or digit."
        ),
    ]
    # One URL, or several replicas (each a URL, or {url, weight}), balanced by
    # `balancer`; docs/resilience.md.
    upstream: Annotated[
        str | list[str | ReplicaConfig],
        _doc(
            "Where requests go: http://HOST[:PORT][/PATH] or https://..., or a list of"
            " replicas, each a URL or {url, weight}, balanced by `balancer`."
        ),
    ]
    openapi: Annotated[
        str | dict[str, Any] | None,
        _doc(
            "The OpenAPI 3.x or Swagger 2.0 spec whose operations are the routes:"
            " a file path (relative to the config file), or the document itself."
        ),
    ] = None
    base_path: Annotated[
        str | None, _doc("Mount the spec's routes here instead of its servers/basePath path.")
    ] = None
    prefix: Annotated[
        str | None, _doc("Route this path and everything under it to the service.")
    ] = None
    host: Annotated[
        str | list[str] | None,
        _doc(
            "Only requests with this Host (or one of these): api.example.com,"
            " *.example.com, {tenant}.example.com. Default: any Host."
        ),
    ] = None
    # true: `{name}.{base domain}`; a label: `{label}.{base domain}`. The base
    # domain is `base_domain`, or each of the tenant's hosts for a tenant's service.
    subdomain: Annotated[
        bool | str,
        _doc(
            "true: reached on {name}.{base}; a DNS label: on {label}.{base}. The base is"
            " base_domain, or each of the tenant's hosts for a tenant's service."
        ),
    ] = False
    # "pass": the client's Host goes upstream; "upstream": the upstream URL's host.
    host_header: Annotated[
        Literal["pass", "upstream"],
        _doc("The Host sent upstream: 'pass' the client's, or the 'upstream' URL's."),
    ] = "pass"
    # Removed from the front of the path before the upstream URL's own path is prepended.
    strip_prefix: Annotated[
        str | None,
        _doc("Removed from the front of the path before the upstream URL's path is put there."),
    ] = None
    max_body_bytes: Annotated[
        int | None, _doc("Request bodies above this get 413; default: limits.max_body_bytes.")
    ] = None
    connect_timeout: Annotated[
        float | None, _doc("Seconds to connect; default: pool.connect_timeout.")
    ] = None
    read_timeout: Annotated[
        float | None, _doc("Seconds to the response head; default: pool.read_timeout.")
    ] = None
    # Requests are checked against the spec by default; without a spec there
    # is nothing to check.
    validation: Annotated[
        ValidationConfig | None,
        _doc("Checking requests against the spec: on by default when openapi is given."),
    ] = None
    kind: Annotated[
        Literal["http", "mcp"],
        _doc(
            "http: an HTTP API (routes from openapi, or prefix); mcp: an MCP server, proxied"
            " at mcp.path with sessions pinned to their replica."
        ),
    ] = "http"
    mcp: Annotated[
        McpConfig | None,
        _doc(
            "MCP settings: the proxy's (kind: mcp), or the MCP endpoint serving an OpenAPI"
            " service's operations as tools (on by default with openapi)."
        ),
    ] = None
    plugins: PluginMap = {}
    operations: Annotated[
        dict[str, OperationConfig],
        _doc(
            "Per operation (by operationId): its own plugins, over the service's; its"
            " timeouts; idempotent."
        ),
    ] = {}
    # Resilience (docs/resilience.md): how a replica is chosen, when one is
    # taken out, retries, limits and timeouts.
    balancer: Annotated[
        BalancerConfig, _doc("How a request's replica is chosen (several replicas).")
    ] = BalancerConfig()
    outlier: Annotated[
        OutlierConfig, _doc("Passive health: replicas failing in a row are ejected.")
    ] = OutlierConfig()
    health_check: Annotated[
        HealthCheckConfig | None, _doc("Active health checks of the replicas; default: none.")
    ] = None
    retries: Annotated[RetryConfig, _doc("Retries on another replica, when safe.")] = RetryConfig()
    circuit_breaker: Annotated[
        CircuitBreakerConfig | None, _doc("Limits per replica; default: none.")
    ] = None
    timeouts: Annotated[
        TimeoutsConfig | None,
        _doc("Upstream timeouts: connect, first_byte, idle, total (seconds)."),
    ] = None

    @property
    def upstreams(self) -> list[str]:
        """The replicas' URLs, in order."""
        if isinstance(self.upstream, str):
            return [self.upstream]
        return [r if isinstance(r, str) else r.url for r in self.upstream]

    @property
    def replicas(self) -> list[tuple[str, int]]:
        """(url, weight) of each replica, in order."""
        if isinstance(self.upstream, str):
            return [(self.upstream, 1)]
        return [(r, 1) if isinstance(r, str) else (r.url, r.weight) for r in self.upstream]


class TenantConfig(_Model, frozen=True):
    """A tenant: a set of services of its own, reached on its own hosts.

    Its services' names need only be unique within the tenant. A request
    reaches them on `hosts` (default: `tenancy.host` with the tenant's name),
    or, with `tenancy.header`, when that header names the tenant.
    """

    name: Annotated[
        str,
        _doc("A DNS label: 1 to 63 lower-case letters, digits and '-'; unique among tenants."),
    ]
    hosts: Annotated[
        list[str],
        _doc("The tenant's hosts (host patterns). Default: tenancy.host with its name."),
    ] = []
    services: Annotated[list[ServiceConfig], _doc("The tenant's own services.")] = []


class TenancyConfig(_Model, frozen=True):
    """How a request names its tenant."""

    # A host template with `{tenant}`: "{tenant}.example.com" puts tenant
    # "acme" on acme.example.com (for tenants that list no hosts of their own).
    host: Annotated[
        str | None,
        _doc(
            "A host template with {tenant} once: '{tenant}.example.com' puts tenant 'acme'"
            " on acme.example.com (for tenants without hosts of their own)."
        ),
    ] = None
    # A request header whose value is a tenant's name; when present it selects
    # the tenant whatever the Host, and routing is by path within that tenant.
    header: Annotated[
        str | None,
        _doc(
            "A request header naming the tenant, e.g. X-Tenant: when present it selects"
            " the tenant whatever the Host."
        ),
    ] = None


class AdminConfig(_Model, frozen=True):
    """The admin API's own listener (REST over JSON, bearer token)."""

    address: Annotated[
        str, _doc("HOST:PORT or unix:/path of the admin API; not a listener's address.")
    ] = "127.0.0.1:9180"
    # The bearer token; or read from the environment variable `token_env`.
    # Without one, the admin listener binds loopback addresses only.
    token: Annotated[
        str | None,
        _doc(
            "The bearer token; better, set the environment variable named by token_env."
            " Without a token the admin API may only listen on a loopback address."
        ),
    ] = None
    token_env: Annotated[
        str, _doc("The environment variable holding the token when token is not set.")
    ] = "RUNMCP_ADMIN_TOKEN"
    # Where changes made through the API are kept across restarts (written
    # atomically). Default: `<config file name>.state.json` next to the config.
    state_file: Annotated[
        str | None,
        _doc(
            "Where changes made through the API are kept across restarts."
            " Default: <config file name>.state.json next to the config file."
        ),
    ] = None


class MetricsConfig(_Model, frozen=True):
    """Prometheus metrics: counted per route in C, served on a scrape (docs/observability.md)."""

    enabled: Annotated[
        bool,
        _doc(
            "Count every route (the prometheus plugin, implied on every route) and serve"
            " /metrics on the admin listener and on `address`; false: neither."
        ),
    ] = True
    address: Annotated[
        str | None,
        _doc("A listener of its own serving only the metrics, without a token (HOST:PORT)."),
    ] = None
    path: Annotated[str, _doc("Where the metrics are served.")] = "/metrics"


class ConsumerConfig(_Model, frozen=True):
    """Who calls: an authentication plugin identifies a request as a consumer by the
    credential the consumer holds for it; the consumer's own plugins then apply."""

    name: Annotated[
        str, _doc("Unique among consumers; letters, digits, '.', '_', '-', '@' (1 to 128).")
    ]
    groups: Annotated[
        list[str], _doc("Groups it belongs to (acl / consumer-restriction rules name them).")
    ] = []
    key_auth: Annotated[
        dict[str, Any] | None,
        _doc(
            "Its key-auth credential: {key: ...} (a secret: a string, {env: NAME} or {file: PATH})."
        ),
    ] = msgspec.field(default=None, name="key-auth")
    basic_auth: Annotated[
        dict[str, Any] | None,
        _doc("Its basic-auth credential: {username, password_hash} (bcrypt or argon2)."),
    ] = msgspec.field(default=None, name="basic-auth")
    jwt_auth: Annotated[
        dict[str, Any] | None,
        _doc("Its jwt-auth identity: {claim, value}: tokens whose claim has this value are it."),
    ] = msgspec.field(default=None, name="jwt-auth")
    plugins: PluginMap = {}

    def credential(self, plugin: str) -> dict[str, Any] | None:
        """Its credential for an authentication plugin, by the plugin's name."""
        found: dict[str, Any] | None = CREDENTIAL_FIELDS.get(plugin, lambda c: None)(self)
        return found


# The consumer keys that hold credentials, by plugin name.
CREDENTIAL_FIELDS: dict[str, Any] = {
    "key-auth": lambda c: c.key_auth,
    "basic-auth": lambda c: c.basic_auth,
    "jwt-auth": lambda c: c.jwt_auth,
}


class StoreTlsConfig(_Model, frozen=True):
    """TLS to etcd: file paths (the secrets stay in the files, not in the config)."""

    ca: Annotated[str | None, _doc("The CA bundle that signed etcd's certificates (PEM).")] = None
    cert: Annotated[str | None, _doc("A client certificate, when etcd asks for one (PEM).")] = None
    key: Annotated[str | None, _doc("The client certificate's private key (PEM).")] = None


class ConfigStoreConfig(_Model, frozen=True):
    """Where the cluster's config lives: etcd, shared by every node (docs/cluster.md).

    Services, tenants, consumers, global plugins and settings come from the store;
    the file keeps what is the node's own (listeners, limits, pool, admin, metrics).
    """

    type: Annotated[Literal["etcd"], _doc("The store: etcd (v3 API, 3.4 or later).")]
    endpoints: Annotated[
        list[str],
        _doc("etcd's client URLs, e.g. http://10.0.0.1:2379; tried in turn when one fails."),
    ]
    prefix: Annotated[str, _doc("Every key of this cluster starts with it: /runmcp/<cluster>.")] = (
        "/runmcp/default"
    )
    node_id: Annotated[
        str | None,
        _doc(
            "This node's name under <prefix>/nodes/; default: the environment variable"
            " RUNMCP_NODE_ID, else the host name."
        ),
    ] = None
    timeout: Annotated[
        float, _doc("Seconds for one request to etcd, all endpoints together; admin writes 503.")
    ] = 2.0
    coalesce: Annotated[
        float, _doc("Seconds a change waits for more before a rebuild (a burst is one rebuild).")
    ] = 0.05
    coalesce_max: Annotated[
        float, _doc("Seconds a change waits at most, however long the burst lasts.")
    ] = 0.25
    coalesce_burst: Annotated[
        float,
        _doc(
            "While writes keep coming past coalesce_max, each wait doubles up to this"
            " many seconds (a batch that ends quietly halves it): a long burst is a few"
            " rebuilds a second."
        ),
    ] = 1.0
    lease_ttl: Annotated[
        int, _doc("Seconds the node's report outlives the node; also how fast etcd's loss is seen.")
    ] = 10
    reconnect_max: Annotated[
        float, _doc("Longest wait between two attempts to reach etcd again (jittered).")
    ] = 2.0
    cache_dir: Annotated[
        str | None,
        _doc(
            "The last applied config, kept on disk to start from while etcd is down;"
            " default: <config file name>.etcd-cache next to the config file."
        ),
    ] = None
    cache: Annotated[bool, _doc("Keep that cache (false: without etcd, not ready).")] = True
    username_env: Annotated[
        str, _doc("The environment variable holding etcd's user name (auth is off without it).")
    ] = "RUNMCP_ETCD_USERNAME"
    password_env: Annotated[str, _doc("The environment variable holding that user's password.")] = (
        "RUNMCP_ETCD_PASSWORD"
    )
    tls: Annotated[StoreTlsConfig | None, _doc("TLS to etcd (https:// endpoints).")] = None
    spec_gc: Annotated[
        float,
        _doc(
            "Seconds between two sweeps of the specs no object names; a spec is deleted"
            " when two sweeps in a row found it unused (0: never)."
        ),
    ] = 600.0


class GatewayConfig(_Model, frozen=True):
    """The gateway's whole config (the file's top level)."""

    listeners: Annotated[list[ListenerConfig], _doc("Where the gateway accepts clients.")]
    services: Annotated[list[ServiceConfig], _doc("The services not in a tenant.")] = []
    tenants: Annotated[
        list[TenantConfig], _doc("Tenants: sets of services on hosts of their own.")
    ] = []
    tenancy: Annotated[TenancyConfig, _doc("How a request names its tenant.")] = TenancyConfig()
    # Services with `subdomain` are reached on `{label}.{base_domain}`.
    base_domain: Annotated[
        str | None,
        _doc(
            "A domain (example.com): services with subdomain are reached on {label}.{base_domain}."
        ),
    ] = None
    admin: Annotated[
        AdminConfig | None, _doc("The admin API, on a listener of its own; default: off.")
    ] = None
    plugins: PluginMap = {}
    consumers: Annotated[
        list[ConsumerConfig], _doc("Who calls, and the credentials that identify them.")
    ] = []
    custom_plugins: Annotated[
        list[str],
        _doc("Python plugin classes to load, as package.module:Class (docs/plugins.md)."),
    ] = []
    metrics: Annotated[MetricsConfig, _doc("Prometheus metrics.")] = MetricsConfig()
    config_store: Annotated[
        ConfigStoreConfig | None,
        _doc("Share the config between nodes through etcd; default: this file alone."),
    ] = None
    mcp_servers: Annotated[
        list[VirtualServerConfig],
        _doc("Virtual MCP servers: several services' tools behind one endpoint."),
    ] = []
    limits: Annotated[LimitsConfig, _doc("Client-side limits.")] = LimitsConfig()
    pool: Annotated[PoolConfig, _doc("The keep-alive pool kept per upstream.")] = PoolConfig()
    access_log: Annotated[
        bool,
        _doc(
            "A JSON line per request on stdout: the access-log plugin on every route, with"
            " its defaults (docs/plugins/access-log.md)."
        ),
    ] = False
    # Reload the config file when it changes (its mtime is checked every
    # `watch_interval` seconds); SIGHUP reloads at once.
    watch: Annotated[
        bool, _doc("Reload the config file when it changes; SIGHUP reloads at once.")
    ] = True
    watch_interval: Annotated[
        float, _doc("Seconds between two looks at the config file's modification time.")
    ] = 1.0
    # Relative spec and TLS paths resolve against this directory (the config file's).
    base_dir: str = "."


class Upstream(msgspec.Struct, frozen=True):
    """A parsed upstream URL."""

    scheme: str
    host: str
    port: int
    path: str  # no trailing slash; "" for the root

    @property
    def authority(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


@functools.lru_cache(maxsize=16_384)
def parse_upstream(url: str) -> Upstream:
    """`http://host:port/path` to an `Upstream`; ValueError says what is wrong.

    Cached (an Upstream is frozen): every build parses every service's URLs.
    """
    if not url.isascii() or any(c.isspace() or not c.isprintable() for c in url):
        raise ValueError(
            f"{url!r}: an upstream URL is ASCII without spaces or control characters"
            " (percent-encode the path; write a host name in its xn-- form)"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # a bad port, a bad [IPv6] host
        raise ValueError(f"{url!r}: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{url!r}: the scheme must be http or https")
    if not parts.hostname:
        raise ValueError(f"{url!r}: no host")
    if "@" in parts.netloc:
        raise ValueError(f"{url!r}: credentials in an upstream URL are not supported")
    if "[" in parts.netloc:
        try:
            ipaddress.IPv6Address(parts.hostname)
        except ValueError:
            raise ValueError(f"{url!r}: {parts.hostname!r} is not an IPv6 address") from None
    elif _HOST_NAME.fullmatch(parts.hostname) is None:
        raise ValueError(f"{url!r}: {parts.hostname!r} is not a host name or IP address")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise ValueError(f"{url!r}: an upstream URL has no query or fragment")
    if port == 0:
        raise ValueError(f"{url!r}: port 0 can not be connected to")
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return Upstream(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))


# Letters, digits, dots, hyphens (and underscores, which container names use).
_HOST_NAME = re.compile(r"[A-Za-z0-9._-]+")
_ADDRESS = re.compile(r"(?:\[(?P<v6>[^\]]*)\]|(?P<host>[^:\[\]]*)):(?P<port>[0-9]{1,5})")


def parse_address(address: str) -> tuple[str, int] | str:
    """`HOST:PORT` to (host, port), `unix:PATH` to PATH; ValueError otherwise.

    An empty HOST (`:8080`) is every IPv4 interface, `0.0.0.0`.
    """
    if address.startswith("unix:"):
        path = address[5:]
        if not path:
            raise ValueError(f"{address!r}: no socket path after 'unix:'")
        if "\0" in path:
            raise ValueError(f"{address!r}: a socket path has no NUL character")
        return path
    found = _ADDRESS.fullmatch(address)
    if found is None:
        raise ValueError(f"{address!r}: expected HOST:PORT, [IPv6]:PORT or unix:/path")
    port = int(found["port"])
    if port > 65535:
        raise ValueError(f"{address!r}: port {port} is out of range")
    v6 = found["v6"]
    if v6 is not None:
        try:
            ipaddress.IPv6Address(v6)
        except ValueError:
            raise ValueError(f"{address!r}: {v6!r} is not an IPv6 address") from None
        return v6, port
    host = found["host"]
    if not host:
        return "0.0.0.0", port
    if _HOST_NAME.fullmatch(host) is None:
        raise ValueError(
            f"{address!r}: {host!r} is not a host name or IPv4 address"
            " (0.0.0.0 is every IPv4 interface, [::] every IPv6 one)"
        )
    if host.replace(".", "").isdigit():
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"{address!r}: {host!r} is not an IPv4 address") from None
    return host, port


class _Loader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping.

    PyYAML keeps the last of two equal keys: a second `upstream:` in a service
    would silently win. Merge keys (`<<: *defaults`) still override as YAML says.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if first is not key_node:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"found the key {key!r} twice (first at line {first.start_mark.line + 1})",
                    key_node.start_mark,
                    "keep one of them",
                )
        return super().construct_mapping(node, deep)


def load_config(path: str | os.PathLike[str]) -> GatewayConfig:
    """Read a YAML or JSON config file and check it; ConfigError lists every problem."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem(source, "", f"can not read: {exc.strerror}", "")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [Problem(source, "", f"not UTF-8 text (byte {exc.start})", "save the file as UTF-8")]
        ) from None
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(source, exc)]) from None
    problems: list[Problem] = []
    if isinstance(data, dict) and "base_dir" in data:
        problems.append(
            Problem(
                source,
                "/base_dir",
                "unknown key 'base_dir'",
                "relative paths already resolve against the config file's directory",
            )
        )
        data = {key: value for key, value in data.items() if key != "base_dir"}
    base_dir = str(Path(path).resolve().parent)
    config, more = _read(data, source, base_dir)
    problems += more
    if problems or config is None:
        raise ConfigError(problems)
    return config


def _yaml_problem(source: str, exc: yaml.YAMLError) -> Problem:
    hint = "fix the syntax"
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        what = exc.problem or "syntax error"
        if exc.context:
            what = f"{what} ({exc.context})"
        message = f"not valid YAML at line {mark.line + 1}, column {mark.column + 1}: {what}"
        hint = exc.note or hint
    else:
        message = f"not valid YAML: {exc}"
    return Problem(source, "", message, hint)


def config_from_data(data: Any, *, source: str = "<config>", base_dir: str = ".") -> GatewayConfig:
    """Check already-parsed config data (a dict) and build the model.

    Every problem is collected, the type errors of each key and list item
    with its own pointer and the checks of `check_config` on everything that
    could be read, and raised together as one ConfigError.
    """
    config, problems = _read(data, source, base_dir)
    if problems or config is None:
        raise ConfigError(problems)
    return config


def read_services(values: list[Any], source: str) -> list[ServiceConfig]:
    """Top-level services read as `config_from_data` reads them (the same models),
    without the whole config's checks: for one that runs them apart (`check_config`
    on the config they are put in), or trusts a process that did.
    ConfigError names every problem of reading them."""
    reader = _Reader(source)
    services = [
        reader.value(ServiceConfig, value, f"/services/{i}", _TYPE_HINT)
        for i, value in enumerate(values)
    ]
    if reader.problems:
        raise ConfigError(reader.problems)
    return services


def _read(data: Any, source: str, base_dir: str) -> tuple[GatewayConfig | None, list[Problem]]:
    """The model and every problem of `data`; None when it is not even a mapping."""
    if not isinstance(data, dict):
        return None, [
            Problem(
                source,
                "",
                f"the config must be a mapping, not {describe(data)}",
                "start with listeners:",
            )
        ]
    reader = _Reader(source)
    data = {key: value for key, value in data.items() if key != "base_dir"}
    config = reader.struct(GatewayConfig, data, "", fixed={"base_dir": base_dir})
    checked = [p for p in check_config(config, source) if not reader.unread(p.pointer)]
    # In the order of the file, as a compiler reports.
    problems = sorted(reader.problems + checked, key=lambda p: _document_order(data, p.pointer))
    return config, problems


def _document_order(data: Any, pointer: str) -> tuple[int, ...]:
    """Where `pointer` is in the data: key and item positions (a key not there: last)."""
    order: list[int] = []
    node = data
    for part in pointer.split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict):
            keys = list(node)
            order.append(keys.index(part) if part in node else len(keys))
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            order.append(int(part))
            node = node[int(part)]
        else:
            break
    return tuple(order)


# --- reading the data: every type error, each with its own pointer -----------------

_TYPE_HINT = "see docs/config.md, or `runmcp-fast schema` for the JSON Schema"
# What to write for a required key that is missing.
_REQUIRED_HINTS = {
    "listeners": "e.g. listeners: [{address: 127.0.0.1:8080}]",
    "address": "e.g. address: 127.0.0.1:8080",
    "cert": "the PEM certificate chain file",
    "key": "the PEM private key file",
    "name": "add name:",
    "upstream": "e.g. upstream: http://127.0.0.1:8081",
}
_M = TypeVar("_M", bound=_Model)


class _Reader:
    """Builds the model from the data piece by piece, collecting every problem.

    A value that can not be read is replaced by its default (or an empty
    value) so that the rest can still be built and checked; its pointer is
    kept in `failed`, and the checks' problems about it are dropped (they
    would only repeat the type error in other words).
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []
        self.failed: set[str] = set()

    def unread(self, pointer: str) -> bool:
        """Whether a check's problem at `pointer` is about a value that could not be read.

        That is the value or anything in it, or the mapping holding it
        (e.g. "neither openapi nor prefix" when openapi had the wrong type).
        """
        for failed in self.failed:
            if pointer == failed or pointer.startswith(f"{failed}/"):
                return True
            if failed.rpartition("/")[0] == pointer and pointer:
                return True
        return False

    def _fail(self, pointer: str, message: str, hint: str, at: str | None = None) -> None:
        self.problems.append(Problem(self.source, pointer if at is None else at, message, hint))
        self.failed.add(pointer)

    def struct(
        self,
        model: type[_M],
        value: dict[Any, Any],
        pointer: str,
        fixed: dict[str, Any] | None = None,
    ) -> _M:
        if model is ServiceConfig and not fixed:
            pause()  # on a build thread: let a waiting event loop run (see handoff.py)
            # PERF: a config of 1,000 services changed by one (an etcd event, an
            # admin PUT) reads 999 it read before: a service read without a
            # problem is kept by its content and given back as is (models are frozen).
            key = _memo_key(value)
            if key is not None:
                known = _READ_MEMO.get(key)
                if known is not None:
                    return cast(_M, known)
                fast = _read_whole(model, value)
                if fast is not None:
                    _remember(_READ_MEMO, key, fast)
                    return fast
                before = len(self.problems), len(self.failed)
                read = self._struct(model, value, pointer, fixed)
                if (len(self.problems), len(self.failed)) == before:
                    _remember(_READ_MEMO, key, read)
                return read
        return self._struct(model, value, pointer, fixed)

    def _struct(
        self,
        model: type[_M],
        value: dict[Any, Any],
        pointer: str,
        fixed: dict[str, Any] | None = None,
    ) -> _M:
        fields = {f.encode_name: f for f in _fields(model)}
        fixed = fixed or {}
        known = [name for name in fields if name not in fixed]
        guessed: set[str] = set()
        for key in value:
            if not isinstance(key, str):
                self.problems.append(
                    Problem(
                        self.source,
                        pointer,
                        f"the key {key!r} is not a string",
                        "quote it, or fix the key",
                    )
                )
                continue
            if key in known:
                continue
            close = difflib.get_close_matches(key, known, n=1)
            if close:
                hint = f"did you mean {close[0]!r}?"
                if close[0] not in value:
                    # The key meant: a missing key or a check of it would repeat the typo.
                    guessed.add(close[0])
                    self.failed.add(f"{pointer}/{_escape(close[0])}")
            else:
                hint = f"the keys here: {', '.join(known)}"
            self.problems.append(
                Problem(self.source, f"{pointer}/{_escape(key)}", f"unknown key {key!r}", hint)
            )
        kwargs: dict[str, Any] = dict(fixed)
        for name, field, escaped, required, hint in _field_reading(model):
            if name in fixed:
                continue
            at = f"{pointer}/{escaped}"
            if name in value:
                read = self.value(field.type, value[name], at, hint)
                if read is _UNREAD:
                    read = _fallback(field)
                kwargs[field.name] = read
            elif required:
                if name not in guessed:
                    self._fail(
                        at,
                        f"missing required key {name!r}",
                        _REQUIRED_HINTS.get(name, hint),
                        at=pointer,
                    )
                kwargs[field.name] = _fallback(field)
        return model(**kwargs)

    def value(self, kind: Any, value: Any, pointer: str, hint: str) -> Any:
        """`value` read as `kind`, or _UNREAD after reporting why it can not be (with `hint`)."""
        kind = _unannotated(kind)
        model = _model_in(kind)
        if model is not None:
            if isinstance(value, dict):
                return self.struct(model, value, pointer)
            keys = [f.encode_name for f in _fields(model) if f.name != "base_dir"]
            hint = f"a mapping with the keys {', '.join(keys)}"
            if str in get_args(kind):
                hint = f"a string, or {hint}"
        value_kind = _value_kind(kind) if isinstance(value, dict) else None
        if value_kind is not None and all(isinstance(k, str) for k in value):
            # Entry by entry, as a list's items: each bad one points at its key.
            entries = {}
            for key, entry in value.items():
                read = self.value(value_kind, entry, f"{pointer}/{_escape(key)}", hint)
                entries[key] = _empty(value_kind) if read is _UNREAD else read
            return entries
        item_kind = _item_kind(kind) if isinstance(value, list) else None
        if item_kind is not None:
            # Item by item: each bad item is reported, the others still checked.
            items = []
            for i, item in enumerate(value):
                read = self.value(item_kind, item, f"{pointer}/{i}", hint)
                items.append(_empty(item_kind) if read is _UNREAD else read)
            return items
        # A mapping's own keys only: what is inside an inline spec is the spec
        # loader's to judge (YAML reads `200:` under responses as a number).
        bad_keys = [k for k in value if not isinstance(k, str)] if isinstance(value, dict) else []
        for key in bad_keys:
            self.problems.append(
                Problem(
                    self.source,
                    pointer,
                    f"the key {key!r} is not a string",
                    "quote it, or fix the key",
                )
            )
        if bad_keys:
            self.failed.add(pointer)
            return _UNREAD
        try:
            return msgspec.convert(value, kind, strict=True)
        except msgspec.ValidationError as exc:
            message, within = split_validation_error(str(exc))
            self._fail(pointer, message, hint, at=pointer + within)
            return _UNREAD


_UNREAD: Any = object()

# Services read (and checked) without a problem, kept by content: a config of
# many services changed by one reads and checks only that one again. Bounded:
# emptied when full (a config bigger than this reads everything every time).
_MEMO_SIZE = 20_000
_READ_MEMO: dict[bytes, Any] = {}
_MEMO_ENCODE = msgspec.msgpack.Encoder(order="sorted").encode
_CHECK_MEMO: dict[tuple[int, str, bool], ServiceConfig] = {}


def _read_whole(model: type[_M], value: dict[Any, Any]) -> _M | None:
    """`value` read as `model` by msgspec at once, when that succeeds; None: read it
    piece by piece (`_Reader._struct`), which names each problem.

    The same model either way when there is no problem: each field is converted by
    the same `msgspec.convert(..., strict=True)`. Only the reader refuses a key that
    is not a string deep inside a value typed Any (an inline spec's `200:`): call
    this only for a value that has a memo key (`_memo_key` refuses such keys).
    PERF: a service changed in etcd read in ~3 us instead of ~15 (each changed
    service of each change, in the agent and in every worker).
    """
    try:
        return msgspec.convert(value, model, strict=True)
    except msgspec.ValidationError:
        return None


def _memo_key(value: dict[Any, Any]) -> bytes | None:
    """A service's content in a canonical encoding; None when it has none (not plain data).

    MessagePack, keys sorted: unlike JSON it keeps null and NaN apart (orjson writes
    NaN as null), without a repr() of the whole value on top.
    PERF: ~1.3 us a service instead of ~8 (every service of a config holds a null).
    """
    try:
        return _MEMO_ENCODE(value)
    except (TypeError, msgspec.EncodeError):
        return None


def _remember(memo: dict[Any, Any], key: Any, value: Any) -> None:
    if len(memo) >= _MEMO_SIZE:
        memo.clear()
    memo[key] = value


def _description(kind: Any) -> str:
    """A field's description (its `Meta`), without the final period: a type error's hint."""
    for extra in get_args(kind)[1:] if get_origin(kind) is Annotated else ():
        if isinstance(extra, Meta) and extra.description:
            return extra.description.rstrip(".")
    return ""


def _unannotated(kind: Any) -> Any:
    """`Annotated[X, ...]` to X."""
    while get_origin(kind) is Annotated:
        kind = get_args(kind)[0]
    return kind


def _is_model(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, _Model)


@functools.lru_cache(maxsize=256)
def _model_in(kind: Any) -> type[_Model] | None:
    """The model of `Model` or `Model | None`."""
    if _is_model(kind):
        return cast(type[_Model], kind)
    if get_origin(kind) in (Union, types.UnionType):
        models = [k for k in get_args(kind) if _is_model(k)]
        if len(models) == 1:
            return cast(type[_Model], models[0])
    return None


def _item_kind(kind: Any) -> Any:
    """X of `list[X]`, or of the one list in a union (`str | list[str]`); else None."""
    kinds = get_args(kind) if get_origin(kind) in (Union, types.UnionType) else (kind,)
    lists = [get_args(k)[0] for k in map(_unannotated, kinds) if get_origin(k) is list]
    return _unannotated(lists[0]) if len(lists) == 1 else None


def _value_kind(kind: Any) -> Any:
    """V of `dict[str, V]` when V is a model or a mapping (what a config's maps hold)."""
    if get_origin(kind) is not dict:
        return None
    value = _unannotated(get_args(kind)[1])
    if _is_model(value) or get_origin(value) is dict:
        return value
    return None


def _fallback(field: msgspec.structs.FieldInfo) -> Any:
    """A field's default, or an empty value of its type when it has none."""
    if field.default is not msgspec.NODEFAULT:
        return field.default
    if field.default_factory is not msgspec.NODEFAULT:
        return field.default_factory()
    return _empty(_unannotated(field.type))


def _empty(kind: Any) -> Any:
    kinds = get_args(kind) if get_origin(kind) in (Union, types.UnionType) else (kind,)
    kinds = tuple(_unannotated(k) for k in kinds)
    if any(get_origin(k) is list for k in kinds):
        return []
    if any(get_origin(k) is dict for k in kinds):
        return {}
    if str in kinds:
        return ""
    model = next((k for k in kinds if _is_model(k)), None)
    return None if model is None else _placeholder(model)


@functools.cache
def _field_reading(
    model: Any,
) -> tuple[tuple[str, msgspec.structs.FieldInfo, str, bool, str], ...]:
    """Per field of a model, what reading it needs: (its key, the field, the key as a
    pointer token, whether it is required, the hint of a type error).

    PERF: worked out once per model, not per value read (a config's node-level
    settings have ~1,200 fields in all: ~1 ms of every config read).
    """
    return tuple(
        (
            field.encode_name,
            field,
            _escape(field.encode_name),
            field.default is msgspec.NODEFAULT and field.default_factory is msgspec.NODEFAULT,
            _description(field.type) or _TYPE_HINT,
        )
        for field in _fields(model)
    )


@functools.cache
def _fields(model: Any) -> tuple[msgspec.structs.FieldInfo, ...]:
    """A model's fields, looked up once.

    PERF: msgspec.structs.fields evaluates the (string) annotations on every
    call: 80 % of a 1,000-service config check before it was cached.
    """
    return msgspec.structs.fields(model)


def _placeholder(model: type[_M]) -> _M:
    """A model with every required field empty (for a value that was not a mapping)."""
    fields = _fields(model)
    required = {
        f.name: _fallback(f)
        for f in fields
        if f.default is msgspec.NODEFAULT and f.default_factory is msgspec.NODEFAULT
    }
    return model(**required)


_PATH_PART = re.compile(r"\.(\w+)|\[(\d+)\]")


def split_validation_error(text: str) -> tuple[str, str]:
    """msgspec's "Expected `int`, got `str` - at `$[0].b`" to (message, "/0/b")."""
    message, sep, where = text.rpartition(" - at `")
    if not sep:
        return text, ""
    path = where.rstrip("`")
    pointer = "".join("/" + (name or index) for name, index in _PATH_PART.findall(path))
    return message, pointer


def _escape(key: str) -> str:
    """A key as one RFC 6901 pointer segment."""
    return key.replace("~", "~0").replace("/", "~1")


# --- the checks past the types ------------------------------------------------------

# Limits that make no sense past a bound: (attribute, lowest value, whether the
# bound itself is allowed). A timeout of 0 would fire at once; NaN and infinity
# are refused too.
_NUMBER_RULES: dict[type[_Model], tuple[tuple[str, float, bool], ...]] = {
    LimitsConfig: (
        ("max_url_bytes", 1, True),
        ("max_header_bytes", 1, True),
        ("max_headers", 1, True),
        ("max_body_bytes", 0, True),
        ("header_timeout", 0, False),
        ("body_timeout", 0, False),
        ("keepalive_timeout", 0, True),
        ("max_connections", 1, True),
        ("drain_timeout", 0, True),
    ),
    PoolConfig: (
        ("max_connections", 1, True),
        ("max_idle", 0, True),
        ("idle_timeout", 0, False),
        ("max_requests", 1, True),
        ("wait_timeout", 0, True),
        ("connect_timeout", 0, False),
        ("read_timeout", 0, False),
        ("fail_timeout", 0, True),
    ),
    ValidationConfig: (("max_body_bytes", 0, True),),
    ReplicaConfig: (("weight", 1, True),),
    OutlierConfig: (
        ("consecutive_failures", 1, True),
        ("base_ejection_time", 0, False),
        ("max_ejection_time", 0, False),
        ("max_ejection_percent", 0, True),
        ("panic_threshold", 0, True),
    ),
    HealthCheckConfig: (
        ("interval", 0, False),
        ("timeout", 0, False),
        ("rise", 1, True),
        ("fall", 1, True),
    ),
    RetryConfig: (
        ("attempts", 0, True),
        ("budget_percent", 0, True),
        ("budget_min", 0, True),
        ("backoff_base", 0, True),
        ("backoff_max", 0, True),
    ),
    CircuitBreakerConfig: (
        ("max_connections", 1, True),
        ("max_pending", 1, True),
        ("max_requests", 1, True),
    ),
    TimeoutsConfig: (
        ("connect", 0, False),
        ("first_byte", 0, False),
        ("idle", 0, False),
        ("total", 0, False),
    ),
    ServiceConfig: (
        ("max_body_bytes", 0, True),
        ("connect_timeout", 0, False),
        ("read_timeout", 0, False),
    ),
    GatewayConfig: (("watch_interval", 0, False),),
}

# A service name goes into admin API URLs and subdomains.
_SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_SERVICE_NAME_HINT = (
    "1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit:"
    " the name goes into admin API URLs and subdomains"
)
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# A federation member's tool name prefix: mcp/tools.py's rule for a ToolSet's (MAX_PREFIX).
_TOOL_PREFIX = re.compile(r"[A-Za-z0-9_.-]{0,40}")
# A Host header's value: a reg-name or IPv4 literal, or a bracketed IPv6 literal; a port.
_ALLOWED_HOST = re.compile(r"(?:[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_DNS_LABEL_HINT = "1 to 63 lower-case letters, digits and '-', not starting or ending with '-'"
_DNS_NAME = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
# RFC 9110 token characters.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Headers the gateway reads, drops or writes itself: a tenant header must be another.
_PROXY_HEADERS = frozenset(
    {
        "host",
        "connection",
        "content-length",
        "transfer-encoding",
        "te",
        "trailer",
        "keep-alive",
        "upgrade",
        "expect",
        "via",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
    }
)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A consumer's name: in admin API URLs and logs.
_CONSUMER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")


@functools.cache
def _number_rules(model: type[_Model]) -> tuple[tuple[str, float, bool, str], ...]:
    """`_NUMBER_RULES` of a model with each field's hint (its default's, fixed per model).

    PERF: worked out once per model, not per service checked (a dict of every
    field's default was made for each: ~1/8 of the agent's check of a change).
    """
    defaults = {f.name: f.default for f in _fields(model)}
    rules = []
    for name, low, inclusive in _NUMBER_RULES[model]:
        default = defaults[name]
        if default is not None:
            hint = f"the default is {default!r}"
        elif issubclass(model, ServiceConfig):
            hint = "leave it out for the gateway-wide setting"
        else:
            hint = "leave it out for the default (docs/resilience.md)"
        rules.append((name, low, inclusive, hint))
    return tuple(rules)


def check_config(config: GatewayConfig, source: str) -> list[Problem]:
    """The checks a type can not express: addresses, URLs, names, hosts, ranges.

    Every problem, not just the first, each naming `source`, the JSON pointer
    of the value at fault and a hint on how to fix it.
    """
    return _Checker(config, source).run()


def _plain_path(value: str) -> bool:
    """A path as clients send it: printable ASCII, no space, no query."""
    return value.isascii() and value.isprintable() and " " not in value and "?" not in value


class _Checker:
    def __init__(self, config: GatewayConfig, source: str) -> None:
        self.config = config
        self.source = source
        self.problems: list[Problem] = []
        # (index, address) of the listeners whose address parses.
        self.bound: list[tuple[int, tuple[str, int] | str]] = []

    def add(self, pointer: str, message: str, hint: str) -> None:
        self.problems.append(Problem(self.source, pointer, message, hint))

    def run(self) -> list[Problem]:
        config = self.config
        self.listeners()
        self.numbers(config.limits, "/limits")
        self.numbers(config.pool, "/pool")
        self.numbers(config, "")
        if config.base_domain is not None:
            problem = _domain_problem(config.base_domain)
            if problem is not None:
                self.add("/base_domain", problem, "a domain like example.com: no port, no wildcard")
        self.tenancy()
        self.admin()
        self.services(config.services, "/services", None)
        self.tenants()
        self.virtual_servers()
        self.consumers()
        self.metrics()
        self.config_store()
        return self.problems

    def config_store(self) -> None:
        store = self.config.config_store
        if store is None:
            return
        if not store.endpoints:
            self.add("/config_store/endpoints", "no endpoint", "e.g. [http://127.0.0.1:2379]")
        for i, endpoint in enumerate(store.endpoints):
            parts = urlsplit(endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/"):
                self.add(
                    f"/config_store/endpoints/{i}",
                    f"{endpoint!r} is not an etcd client URL",
                    "http://HOST:PORT or https://HOST:PORT, without a path",
                )
        if not store.prefix.startswith("/") or store.prefix.rstrip("/") == "":
            self.add(
                "/config_store/prefix",
                f"{store.prefix!r} is not a key prefix",
                "a path of its own, e.g. /runmcp/prod",
            )
        if store.spec_gc < 0:
            self.add("/config_store/spec_gc", "must be 0 or more", "seconds, e.g. 600 (0: never)")
        for name in ("timeout", "coalesce", "coalesce_max", "coalesce_burst", "reconnect_max"):
            if not getattr(store, name) > 0:
                self.add(f"/config_store/{name}", "must be more than 0", "seconds, e.g. 2")
        if store.coalesce_max < store.coalesce:
            self.add(
                "/config_store/coalesce_max",
                "shorter than coalesce",
                f"at least {store.coalesce:g}",
            )
        if store.coalesce_burst < store.coalesce_max:
            self.add(
                "/config_store/coalesce_burst",
                "shorter than coalesce_max",
                f"at least {store.coalesce_max:g}",
            )
        if store.lease_ttl < 2:
            self.add("/config_store/lease_ttl", "must be 2 seconds or more", "e.g. 10")
        for name in ("username_env", "password_env"):
            if _ENV_NAME.fullmatch(getattr(store, name)) is None:
                self.add(
                    f"/config_store/{name}",
                    f"{getattr(store, name)!r} is not an environment variable name",
                    "letters, digits and '_'",
                )

    def metrics(self) -> None:
        metrics = self.config.metrics
        if not metrics.path.startswith("/") or not _plain_path(metrics.path):
            self.add("/metrics/path", f"{metrics.path!r} is not a path", "e.g. /metrics")
        if metrics.address is None:
            return
        try:
            address = parse_address(metrics.address)
        except ValueError as exc:
            self.add("/metrics/address", str(exc), "e.g. 127.0.0.1:9091")
            return
        for i, bound in self.bound:
            if _same_socket(address, bound):
                self.add(
                    "/metrics/address",
                    f"{metrics.address!r} is also /listeners/{i}",
                    "give the metrics an address of their own",
                )
        admin = self.config.admin
        if admin is not None:
            try:
                if _same_socket(address, parse_address(admin.address)):
                    self.add(
                        "/metrics/address",
                        f"{metrics.address!r} is also /admin/address",
                        "leave it out: /metrics is on the admin listener already",
                    )
            except ValueError:
                pass  # reported under /admin/address

    def consumers(self) -> None:
        """Names and groups; the credentials are the plugins' to check (plugins/build.py)."""
        seen: dict[str, int] = {}
        for i, consumer in enumerate(self.config.consumers):
            at = f"/consumers/{i}"
            if _CONSUMER_NAME.fullmatch(consumer.name) is None:
                self.add(
                    f"{at}/name",
                    f"{consumer.name!r} is not a consumer name",
                    "1 to 128 letters, digits, '.', '_', '-' or '@', starting with a letter"
                    " or digit",
                )
            elif consumer.name in seen:
                self.add(
                    f"{at}/name",
                    f"duplicate consumer name {consumer.name!r} (also /consumers/{seen[consumer.name]})",
                    "give each consumer its own name",
                )
            seen.setdefault(consumer.name, i)
            for j, group in enumerate(consumer.groups):
                if not group.strip():
                    self.add(f"{at}/groups/{j}", "the group is empty", "name the group")
        for i, reference in enumerate(self.config.custom_plugins):
            if ":" not in reference:
                self.add(
                    f"/custom_plugins/{i}",
                    f"{reference!r} is not a plugin reference",
                    "write it as package.module:Class",
                )

    def listeners(self) -> None:
        if not self.config.listeners:
            self.add("/listeners", "no listener", "add one: address: 127.0.0.1:8080")
        seen: dict[tuple[str, int] | str, int] = {}
        for i, listener in enumerate(self.config.listeners):
            try:
                address = parse_address(listener.address)
            except ValueError as exc:
                self.add(f"/listeners/{i}/address", str(exc), _ADDRESS_HINT)
                continue
            self.bound.append((i, address))
            if isinstance(address, tuple) and address[1] == 0:
                continue  # each port 0 is a different free port
            if address in seen:
                self.add(
                    f"/listeners/{i}/address",
                    f"{listener.address!r} is also /listeners/{seen[address]}",
                    "listen on each address once",
                )
            seen.setdefault(address, i)

    def numbers(self, model: _Model, where: str) -> None:
        for name, low, inclusive, hint in _number_rules(type(model)):
            value = getattr(model, name)
            if value is None:
                continue
            if isinstance(value, float) and not math.isfinite(value):
                self.add(f"{where}/{name}", f"{value!r} is not a finite number", hint)
            elif not (value >= low if inclusive else value > low):
                bound = f">= {low}" if inclusive else f"> {low}"
                self.add(f"{where}/{name}", f"{value!r} must be {bound}", hint)

    def tenancy(self) -> None:
        template, header = self.config.tenancy.host, self.config.tenancy.header
        if template is not None:
            problem = _template_problem(template)
            if problem is not None:
                self.add("/tenancy/host", problem, "e.g. '{tenant}.example.com'")
        if header is not None:
            if _HEADER_NAME.fullmatch(header) is None:
                self.add(
                    "/tenancy/header",
                    f"{header!r} is not a header name",
                    "letters, digits and !#$%&'*+-.^_`|~, e.g. X-Tenant",
                )
            elif header.lower() in _PROXY_HEADERS or header.lower().startswith("proxy-"):
                self.add(
                    "/tenancy/header",
                    f"{header!r} is a header the gateway reads or rewrites itself",
                    "use a header of your own, e.g. X-Tenant",
                )

    def admin(self) -> None:
        admin = self.config.admin
        if admin is None:
            return
        if _ENV_NAME.fullmatch(admin.token_env) is None:
            self.add(
                "/admin/token_env",
                f"{admin.token_env!r} is not an environment variable name",
                "letters, digits and '_', e.g. RUNMCP_ADMIN_TOKEN",
            )
        if admin.token is not None and not admin.token.strip():
            self.add(
                "/admin/token",
                "the token is empty",
                f"give a long random string, or leave it out and set {admin.token_env}",
            )
        if admin.state_file is not None and not admin.state_file.strip():
            self.add(
                "/admin/state_file",
                "the path is empty",
                "leave it out for <config file name>.state.json",
            )
        try:
            address = parse_address(admin.address)
        except ValueError as exc:
            self.add(
                "/admin/address", str(exc), "e.g. 127.0.0.1:9180 or unix:/run/runmcp-admin.sock"
            )
            return
        token = (admin.token or "").strip() or os.environ.get(admin.token_env, "").strip()
        if not token and not _is_loopback(address):
            self.add(
                "/admin/token",
                f"the admin API on {admin.address!r} has no token; without one it may only"
                " listen on a loopback address (127.0.0.1, ::1, localhost) or a unix: socket",
                f"set admin.token, or the environment variable {admin.token_env};"
                " or listen on 127.0.0.1",
            )
        for i, bound in self.bound:
            if _same_socket(address, bound):
                self.add(
                    "/admin/address",
                    f"{admin.address!r} is also /listeners/{i}",
                    "give the admin API an address of its own",
                )

    def services(
        self, services: list[ServiceConfig], where: str, tenant: tuple[str, bool] | None
    ) -> None:
        """One scope's services; `tenant` is (its name, whether it has hosts) for a tenant's."""
        names: dict[str, int] = {}
        for i, service in enumerate(services):
            at = f"{where}/{i}"
            name = service.name
            if not name.strip():
                self.add(
                    f"{at}/name", "the name is empty", f"name the service: {_SERVICE_NAME_HINT}"
                )
            elif _SERVICE_NAME.fullmatch(name) is None:
                self.add(f"{at}/name", f"{name!r} is not a service name", _SERVICE_NAME_HINT)
            elif name in names:
                scope = "within its tenant" if tenant is not None else "among the services"
                self.add(
                    f"{at}/name",
                    f"duplicate service name {name!r} (also {where}/{names[name]})",
                    f"give each service its own name; a name is unique {scope}",
                )
            names.setdefault(name, i)
            pause()
            # What the checks below read beyond the service: its tenant, base_domain.
            memo = (id(service), repr(tenant), self.config.base_domain is None)
            if _CHECK_MEMO.get(memo) is service:
                continue
            before = len(self.problems)
            self.service(service, at, tenant)
            if len(self.problems) == before:
                _remember(_CHECK_MEMO, memo, service)

    def service(self, service: ServiceConfig, at: str, tenant: tuple[str, bool] | None) -> None:
        """One service's own checks (a pure function of it, its tenant and base_domain)."""
        self.upstreams(service, at)
        self.resilience(service, at)
        self.routes(service, at)
        self.hosts(service, at)
        self.subdomain(service, at, tenant)
        self.numbers(service, at)
        if service.validation is not None:
            self.numbers(service.validation, f"{at}/validation")
        if service.mcp is not None:
            self.mcp_settings(service.mcp, f"{at}/mcp", service.kind)

    def upstreams(self, service: ServiceConfig, at: str) -> None:
        urls = service.upstreams
        if not urls:
            self.add(
                f"{at}/upstream",
                "no upstream URL",
                "give one, or a list of replicas: [http://10.0.0.1:8081, http://10.0.0.2:8081]",
            )
        first: tuple[int, str] | None = None  # the first replica's index and path
        seen: dict[Upstream, int] = {}
        for j, url in enumerate(urls):
            pointer = (
                f"{at}/upstream" if isinstance(service.upstream, str) else f"{at}/upstream/{j}"
            )
            entry = service.upstream[j] if isinstance(service.upstream, list) else None
            if isinstance(entry, ReplicaConfig):
                self.numbers(entry, pointer)
                if entry.weight > 1000:
                    self.add(f"{pointer}/weight", f"{entry.weight} is over 1000", "1 to 1000")
                pointer = f"{pointer}/url"
            try:
                upstream = parse_upstream(url)
            except ValueError as exc:
                self.add(pointer, str(exc), "e.g. http://127.0.0.1:8081")
                continue
            if upstream in seen:
                self.add(
                    pointer,
                    f"the same replica as {at}/upstream/{seen[upstream]}",
                    "list each replica once; give it a weight for a larger share",
                )
            seen.setdefault(upstream, j)
            if first is None:
                first = (j, upstream.path)
            elif upstream.path != first[1] and service.kind == "mcp":
                # An MCP session's requests are rewritten to the replica's endpoint
                # path by the session router, which knows one path.
                self.add(
                    pointer,
                    f"the replicas of an MCP server have different paths: {upstream.path or '/'!r}"
                    f" here, {first[1] or '/'!r} at {at}/upstream/{first[0]}",
                    "serve the MCP endpoint at one path on every replica",
                )

    def resilience(self, service: ServiceConfig, at: str) -> None:
        """Balancer, outlier ejection, health checks, retries, limits, timeouts."""
        balancer = service.balancer
        hash_on = balancer.hash_on
        if balancer.policy == "hash":
            keys = (
                [k for k in ("header", "cookie", "query", "path") if getattr(hash_on, k)]
                + (["session"] if hash_on.session else [])
                if hash_on is not None
                else []
            )
            if len(keys) != 1:
                self.add(
                    f"{at}/balancer/hash_on",
                    "policy: hash needs one key to hash on"
                    + (f", not {len(keys)}" if keys else ""),
                    "give one of header, cookie, query, path or session: true,"
                    " e.g. hash_on: {header: X-User}",
                )
            header = hash_on.header if hash_on is not None else None
            if header is not None and _HEADER_NAME.fullmatch(header) is None:
                self.add(
                    f"{at}/balancer/hash_on/header",
                    f"{header!r} is not a header name",
                    "letters, digits and !#$%&'*+-.^_`|~, e.g. X-User",
                )
            if hash_on is not None and hash_on.path is not None and service.openapi is None:
                self.add(
                    f"{at}/balancer/hash_on/path",
                    "a service without a spec has no path parameters",
                    "hash on a header, cookie or query parameter; or give the service openapi",
                )
        elif hash_on is not None:
            self.add(
                f"{at}/balancer/hash_on",
                f"hash_on applies to policy: hash, and the policy is {balancer.policy}",
                "set policy: hash, or remove hash_on",
            )
        outlier = service.outlier
        self.numbers(outlier, f"{at}/outlier")
        for key in ("max_ejection_percent", "panic_threshold"):
            if getattr(outlier, key) > 100:
                self.add(f"{at}/outlier/{key}", f"{getattr(outlier, key)!r} is over 100", "percent")
        if outlier.max_ejection_time < outlier.base_ejection_time:
            self.add(
                f"{at}/outlier/max_ejection_time",
                f"{outlier.max_ejection_time!r} is shorter than base_ejection_time"
                f" ({outlier.base_ejection_time!r})",
                "at least base_ejection_time",
            )
        check = service.health_check
        if check is not None:
            where = f"{at}/health_check"
            self.numbers(check, where)
            if not check.path.startswith("/") or not _plain_path(check.path.split("?")[0]):
                self.add(f"{where}/path", f"{check.path!r} is not a path", "e.g. /healthz")
            for j, status in enumerate(check.statuses):
                if not 100 <= status <= 599:
                    self.add(f"{where}/statuses/{j}", f"{status} is not a status", "e.g. 200")
            if check.timeout > check.interval:
                self.add(
                    f"{where}/timeout",
                    f"the timeout ({check.timeout!r} s) is longer than the interval"
                    f" ({check.interval!r} s)",
                    "at most the interval: one check of a replica at a time",
                )
            if check.host is not None and _ALLOWED_HOST.fullmatch(check.host) is None:
                self.add(
                    f"{where}/host",
                    f"{check.host!r} is not a host as a Host header names it",
                    "name or name:port, e.g. api.internal",
                )
        retries = service.retries
        self.numbers(retries, f"{at}/retries")
        if retries.budget_percent > 100:
            self.add(
                f"{at}/retries/budget_percent",
                f"{retries.budget_percent!r} is over 100",
                "percent of the requests, e.g. 20",
            )
        if retries.backoff_max < retries.backoff_base:
            self.add(
                f"{at}/retries/backoff_max",
                f"{retries.backoff_max!r} is shorter than backoff_base ({retries.backoff_base!r})",
                "at least backoff_base",
            )
        if service.circuit_breaker is not None:
            self.numbers(service.circuit_breaker, f"{at}/circuit_breaker")
        if service.timeouts is not None:
            self.numbers(service.timeouts, f"{at}/timeouts")
            for key, old in (("connect", "connect_timeout"), ("first_byte", "read_timeout")):
                if getattr(service.timeouts, key) is not None and getattr(service, old) is not None:
                    self.add(
                        f"{at}/timeouts/{key}",
                        f"both {old} and timeouts.{key} are given",
                        f"keep timeouts.{key}, and remove {old}",
                    )
        for op_id, operation in service.operations.items():
            if operation.timeouts is not None:
                self.numbers(operation.timeouts, f"{at}/operations/{_escape(op_id)}/timeouts")

    def routes(self, service: ServiceConfig, at: str) -> None:
        spec = service.openapi
        if isinstance(spec, dict):
            if "openapi" not in spec and "swagger" not in spec:
                self.add(
                    f"{at}/openapi",
                    "the inline spec has neither an 'openapi' nor a 'swagger' key",
                    "give the spec document itself, with openapi: 3.1.0, info: and paths:, or a file path",
                )
        elif isinstance(spec, str) and not spec.strip():
            self.add(f"{at}/openapi", "the spec path is empty", "give the spec file, or prefix: /")
        if service.kind == "mcp":
            self.mcp_service(service, at)
            return
        if spec is None and service.prefix is None:
            self.add(at, "neither openapi nor prefix", "give a spec, or prefix: /")
        if spec is None and service.base_path is not None:
            self.add(
                f"{at}/base_path",
                "base_path applies to a spec's routes, and the service has no openapi",
                "route a service without a spec with prefix:",
            )
        for key in ("prefix", "base_path", "strip_prefix"):
            value = getattr(service, key)
            if value is None:
                continue
            if not value.startswith("/"):
                self.add(f"{at}/{key}", f"{value!r} must start with '/'", f"e.g. '/{value}'")
            elif not value.isascii() or not value.isprintable() or " " in value:
                self.add(
                    f"{at}/{key}",
                    f"{value!r} is not a path as clients send it",
                    "percent-encode spaces and non-ASCII characters",
                )

    def mcp_service(self, service: ServiceConfig, at: str) -> None:
        for key in ("openapi", "prefix", "base_path", "strip_prefix", "validation"):
            if getattr(service, key) is not None:
                self.add(
                    f"{at}/{key}",
                    f"{key} does not apply to an MCP server (kind: mcp)",
                    "remove it; the MCP endpoint is mcp.path",
                )

    def mcp_settings(self, mcp: McpConfig, at: str, kind: str) -> None:
        paths = [("path", mcp.path), ("messages_path", mcp.messages_path)]
        for key, value in paths:
            if value is not None and (not value.startswith("/") or not _plain_path(value)):
                self.add(f"{at}/{key}", f"{value!r} is not a path", "e.g. /mcp")
        if kind != "mcp":
            for key in ("transport", "messages_path"):
                if key == "transport" and mcp.transport == "streamable-http":
                    continue
                if getattr(mcp, key) is not None:
                    self.add(
                        f"{at}/{key}",
                        f"{key} applies to kind: mcp only",
                        "remove it, or set kind: mcp",
                    )
        elif mcp.transport != "sse" and mcp.messages_path is not None:
            self.add(f"{at}/messages_path", "messages_path applies to transport: sse", "remove it")
        if mcp.keepalive_interval < 0:
            self.add(f"{at}/keepalive_interval", "a negative interval", "seconds, or 0 for none")
        if mcp.page_size < 1:
            self.add(f"{at}/page_size", "a page holds at least one tool", "e.g. 100")
        for j, origin in enumerate(mcp.allowed_origins):
            if origin != "*" and "://" not in origin:
                self.add(
                    f"{at}/allowed_origins/{j}",
                    f"{origin!r} is not an origin",
                    "scheme://host[:port], e.g. https://app.example.com, or '*'",
                )
        self.allowed_hosts(mcp.allowed_hosts, at)

    def allowed_hosts(self, hosts: list[str], at: str) -> None:
        for j, host in enumerate(hosts):
            if _ALLOWED_HOST.fullmatch(host) is None:
                self.add(
                    f"{at}/allowed_hosts/{j}",
                    f"{host!r} is not a host as a Host header names it",
                    "name or name:port, e.g. mcp.example.com or 10.0.0.5:8080 (no scheme, no path)",
                )

    def virtual_servers(self) -> None:
        names: set[str] = set()
        known = {s.name: s for s in self.config.services}
        for n, server in enumerate(self.config.mcp_servers):
            at = f"/mcp_servers/{n}"
            if server.name in names:
                self.add(
                    f"{at}/name", f"a second virtual server named {server.name!r}", "rename it"
                )
            names.add(server.name)
            if not server.path.startswith("/") or not _plain_path(server.path):
                self.add(f"{at}/path", f"{server.path!r} is not a path", "e.g. /mcp")
            if not server.members:
                self.add(f"{at}/members", "no members", "list the services whose tools it offers")
            for j, member in enumerate(server.members):
                service = known.get(member.service)
                if service is None:
                    close = difflib.get_close_matches(member.service, list(known), n=1)
                    self.add(
                        f"{at}/members/{j}/service",
                        f"no top-level service named {member.service!r}",
                        f"did you mean {close[0]!r}?" if close else "name one of the services",
                    )
                elif service.kind != "mcp" and service.openapi is None:
                    self.add(
                        f"{at}/members/{j}/service",
                        f"service {member.service!r} has neither tools nor an MCP server",
                        "a member is kind: mcp, or has an openapi spec",
                    )
                if member.prefix is not None and _TOOL_PREFIX.fullmatch(member.prefix) is None:
                    # It goes into every tool name, which LLM APIs and the SDK's rules
                    # (SEP-986) refuse with other characters.
                    self.add(
                        f"{at}/members/{j}/prefix",
                        f"{member.prefix!r} can not start a tool name",
                        "use at most 40 of A-Z a-z 0-9 _ . -",
                    )
            self.allowed_hosts(server.allowed_hosts, at)
            hosts = [server.host] if isinstance(server.host, str) else server.host or []
            for j, pattern in enumerate(hosts):
                pointer = f"{at}/host" if isinstance(server.host, str) else f"{at}/host/{j}"
                problem = _host_pattern_problem(pattern)
                if problem is not None:
                    self.add(pointer, problem, _HOST_PATTERN_HINT)

    def hosts(self, service: ServiceConfig, at: str) -> None:
        if isinstance(service.host, list) and not service.host:
            self.add(
                f"{at}/host",
                "an empty list of hosts",
                "list host patterns, or leave host out for any Host",
            )
        patterns = [service.host] if isinstance(service.host, str) else service.host or []
        for j, pattern in enumerate(patterns):
            pointer = f"{at}/host" if isinstance(service.host, str) else f"{at}/host/{j}"
            problem = _host_pattern_problem(pattern)
            if problem is not None:
                self.add(pointer, problem, _HOST_PATTERN_HINT)

    def subdomain(self, service: ServiceConfig, at: str, tenant: tuple[str, bool] | None) -> None:
        subdomain = service.subdomain
        if subdomain is False:
            return
        if subdomain is True:
            if service.name.strip() and _DNS_LABEL.fullmatch(service.name) is None:
                self.add(
                    f"{at}/subdomain",
                    f"subdomain: true puts the service on its name, and {service.name!r}"
                    " is not a DNS label",
                    f"rename it ({_DNS_LABEL_HINT}), or give the label: subdomain: my-api",
                )
        elif _DNS_LABEL.fullmatch(subdomain) is None:
            self.add(f"{at}/subdomain", f"{subdomain!r} is not a DNS label", _DNS_LABEL_HINT)
        if tenant is None:
            if self.config.base_domain is None:
                self.add(
                    f"{at}/subdomain",
                    "a subdomain needs base_domain",
                    "set base_domain: example.com at the top level",
                )
        elif not tenant[1]:
            self.add(
                f"{at}/subdomain",
                f"tenant {tenant[0]!r} has no hosts to put the subdomain under",
                "give the tenant hosts:, or set tenancy.host: '{tenant}.example.com'",
            )

    def tenants(self) -> None:
        config = self.config
        template = config.tenancy.host
        template_ok = template is not None and _template_problem(template) is None
        names: dict[str, int] = {}
        # host (lower case) -> (pointer, tenant name) of its first claim
        claimed: dict[str, tuple[str, str]] = {}
        for n, tenant in enumerate(config.tenants):
            at = f"/tenants/{n}"
            name = tenant.name
            name_ok = False
            if not name.strip():
                self.add(f"{at}/name", "the name is empty", f"name the tenant: {_DNS_LABEL_HINT}")
            elif _DNS_LABEL.fullmatch(name) is None:
                self.add(
                    f"{at}/name",
                    f"{name!r} is not a tenant name",
                    f"a tenant's name is a DNS label: {_DNS_LABEL_HINT}",
                )
            elif name in names:
                self.add(
                    f"{at}/name",
                    f"duplicate tenant name {name!r} (also /tenants/{names[name]})",
                    "give each tenant its own name",
                )
            else:
                name_ok = True
            names.setdefault(name, n)
            if not tenant.hosts and template is None and config.tenancy.header is None:
                self.add(
                    at,
                    f"tenant {name!r} can not be reached: it has no hosts, and neither"
                    " tenancy.host nor tenancy.header is set",
                    f"give it hosts: [{name or 'acme'}.example.com], or set tenancy.host:"
                    " '{tenant}.example.com' or tenancy.header: X-Tenant",
                )
            hosts: list[tuple[str, str, str]] = []  # (host, pointer, where it comes from)
            for k, host in enumerate(tenant.hosts):
                problem = _host_pattern_problem(host)
                if problem is not None:
                    self.add(f"{at}/hosts/{k}", problem, _HOST_PATTERN_HINT)
                else:
                    hosts.append((host, f"{at}/hosts/{k}", ""))
            if not tenant.hosts and template is not None and template_ok and name_ok:
                hosts.append((template.replace("{tenant}", name), at, " (from tenancy.host)"))
            for host, pointer, how in hosts:
                first = claimed.setdefault(host.lower().rstrip("."), (pointer, name))
                if first[0] == pointer:
                    continue
                whose = "this tenant" if first[1] == name else f"tenant {first[1]!r}"
                self.add(
                    pointer,
                    f"host {host!r}{how} is also claimed by {whose} ({first[0]})",
                    "a host belongs to one tenant: give one of them other hosts",
                )
            has_hosts = bool(tenant.hosts) or template is not None
            self.services(tenant.services, f"{at}/services", (name, has_hosts))


_ADDRESS_HINT = "e.g. 127.0.0.1:8080, [::1]:8080 or unix:/run/gateway.sock"
_HOST_PATTERN_HINT = (
    "a host name without port or scheme, where a label may be * or {param}:"
    " api.example.com, *.example.com"
)


def _host_pattern_problem(pattern: str) -> str | None:
    """What is wrong with a router host pattern, or None."""
    # Imported here: the model and the schema need no compiled extension.
    from runmcp_fast.router import Router, TemplateError

    if not pattern.isascii():
        return f"{pattern!r} is not ASCII (write a host name in its xn-- form)"
    if "://" in pattern:
        return f"{pattern!r} is a URL, not a host"
    try:
        Router().add("*", "/", None, pattern)
    except TemplateError as exc:
        return str(exc)
    return None


def _template_problem(template: str) -> str | None:
    """What is wrong with `tenancy.host`, or None."""
    count = template.count("{tenant}")
    if count == 0:
        return f"{template!r} has no {{tenant}}"
    if count > 1:
        return f"{template!r} has {{tenant}} {count} times; once is all"
    rest = template.replace("{tenant}", "")
    if any(c in rest for c in "{}*"):
        return f"{template!r}: only {{tenant}} may be a parameter, and no label a wildcard"
    return _host_pattern_problem(template)


def _domain_problem(domain: str) -> str | None:
    """What is wrong with `base_domain`, or None."""
    if "://" in domain:
        return f"{domain!r} is a URL, not a domain"
    if any(c in domain for c in "*{}"):
        return f"{domain!r} has a wildcard; give the domain itself"
    if ":" in domain.strip("[]") and not domain.startswith("["):
        return f"{domain!r} has a port; ports are ignored when matching hosts"
    try:
        ipaddress.ip_address(domain.strip("[]"))
    except ValueError:
        pass
    else:
        return f"{domain!r} is an IP address, which has no subdomains"
    if _DNS_NAME.fullmatch(domain) is None:
        return f"{domain!r} is not a host name"
    return None


def _is_loopback(address: tuple[str, int] | str) -> bool:
    if isinstance(address, str):
        return True  # a unix socket: the file's permissions guard it
    host = address[0]
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _same_socket(a: tuple[str, int] | str, b: tuple[str, int] | str) -> bool:
    """Whether two listen addresses would collide (equal, or a port also bound on every address)."""
    if isinstance(a, str) or isinstance(b, str):
        return (
            isinstance(a, str) and isinstance(b, str) and os.path.normpath(a) == os.path.normpath(b)
        )
    if a[1] != b[1] or a[1] == 0:
        return False
    wildcard = ("0.0.0.0", "::")
    return a[0].lower() == b[0].lower() or a[0] in wildcard or b[0] in wildcard


# --- the JSON Schema ------------------------------------------------------------------

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def config_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a config file, for editors and other tools.

    It describes the types, the keys and the defaults; the checks past them
    (addresses, URLs, unique names...) are `check_config`'s, and are only
    hinted at (minimums, name patterns).
    """
    # Through JSON and back: a tuple default (outlier.failures, retries.on) comes out a
    # list, as in the file the schema is written to.
    generated = msgspec.json.decode(msgspec.json.encode(msgspec.json.schema(GatewayConfig)))
    defs: dict[str, Any] = generated["$defs"]
    top = defs.pop("GatewayConfig")
    del top["properties"]["base_dir"]  # set by the loader, not written in the file
    for model, rules in _NUMBER_RULES.items():
        properties = (
            top["properties"] if model is GatewayConfig else defs[model.__name__]["properties"]
        )
        for name, low, inclusive in rules:
            properties[name]["minimum" if inclusive else "exclusiveMinimum"] = low
    defs["ServiceConfig"]["properties"]["name"]["pattern"] = f"^{_SERVICE_NAME.pattern}$"
    defs["TenantConfig"]["properties"]["name"]["pattern"] = f"^{_DNS_LABEL.pattern}$"
    for definition in defs.values():
        if "description" in definition:
            definition["description"] = inspect.cleandoc(definition["description"])
    del top["title"], top["description"]
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "runmcp-fast gateway config",
        "description": (
            "The config file of the runmcp-fast gateway (YAML or JSON): listeners, services,"
            " tenants and the gateway's settings. See docs/config.md."
        ),
        **top,
        "$defs": defs,
    }
