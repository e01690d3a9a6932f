"""A service's MCP face, compiled for a snapshot: its routes, targets and chains.

- An OpenAPI service is an MCP server: its operations become tools
  (`build_tools`), answered by a `ServiceEndpoint` on a local target.
- A `kind: mcp` service is proxied: a proxied target whose chain holds the
  session routing (`McpSessionStep` over a `SessionRouter`) and the JSON-RPC
  envelope check (`ContractStep` over an `EnvelopeGuard`, in the mcp phase).
- A virtual server federates members' tools (`FederatedEndpoint`).

The snapshot build (snapshot.py) calls these with what they need; nothing
here knows the snapshot's Service.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from runmcp_fast._dataplane import (
    McpEnvelopeStep,
    McpHostGuardStep,
    McpSessionStep,
    Replicas,
    RouteStats,
    Step,
    Target,
)
from runmcp_fast.config import McpConfig, OperationSelector, Upstream, VirtualServerConfig
from runmcp_fast.hooks import RouteOwner
from runmcp_fast.mcp import jsonrpc
from runmcp_fast.mcp.affinity import SessionCodec
from runmcp_fast.mcp.proxy import EnvelopeGuard, SessionRouter, rpc_error
from runmcp_fast.mcp.server import FederatedEndpoint, Hosts, Member, RemoteTools, ServiceEndpoint
from runmcp_fast.mcp.tools import ToolFilter, ToolSelector, ToolSet, build_tools
from runmcp_fast.openapi import Spec
from runmcp_fast.openapi.pointers import join
from runmcp_fast.problems import DocumentError, Problem

MAX_MCP_BODY = 4 * 1024 * 1024  # a virtual MCP server's request bodies
WELL_KNOWN_RESOURCE = "/.well-known/oauth-protected-resource"  # RFC 9728 §3
ENDPOINT_METHODS = ("POST", "GET", "DELETE")  # Streamable HTTP


def _selector(selector: OperationSelector | None) -> ToolSelector:
    if selector is None:
        return ToolSelector()
    return ToolSelector(
        tags=tuple(selector.tags),
        operations=tuple(selector.operations),
        methods=tuple(selector.methods),
    )


def tool_filter(settings: McpConfig) -> ToolFilter | None:
    if settings.include is None and settings.exclude is None:
        return None
    return ToolFilter(include=_selector(settings.include), exclude=_selector(settings.exclude))


def default_path(settings: McpConfig, kind: str, spec: Spec | None) -> str:
    """Where clients reach a service's MCP endpoint (the proxy's, or its tools')."""
    if settings.path is not None:
        return settings.path
    if kind == "mcp":
        return "/sse" if settings.transport == "sse" else "/mcp"
    base = spec.base_path.rstrip("/") if spec is not None else ""
    return f"{base}/mcp"


def compile_tools(spec: Spec, settings: McpConfig, source: str, where: str) -> ToolSet | Problem:
    """An OpenAPI spec's operations as MCP tools (on the build thread), or why not."""
    try:
        tools = build_tools(spec, filter=tool_filter(settings))
    except (DocumentError, ValueError) as exc:
        problem = exc.problem if isinstance(exc, DocumentError) else None
        return problem or Problem(source, join(where, "mcp"), f"no MCP tools: {exc}", "")
    tools.digest  # noqa: B018 - computed here, on the build thread, not at the swap
    return tools


def tools_endpoint(
    label: str, tools: ToolSet, settings: McpConfig, *, hosts: Hosts, title: str
) -> ServiceEndpoint:
    """The MCP server an OpenAPI service's tools are served by."""
    return ServiceEndpoint(
        label,
        tools,
        hosts=hosts,
        title=title,
        page_size=settings.page_size,
        allowed_origins=settings.allowed_origins,
    )


_BAD_HOST = rpc_error(403, jsonrpc.INVALID_REQUEST, "this Host is not allowed")
_BAD_ORIGIN = rpc_error(403, jsonrpc.INVALID_REQUEST, "this Origin is not allowed")


def host_guard(
    *, enabled: bool, any_host: bool, allowed_hosts: Sequence[str], allowed_origins: Sequence[str]
) -> tuple[Step, ...]:
    """The DNS-rebinding protection of an MCP endpoint (none when it is off, or when the
    endpoint is routed on named hosts only: then a rebound name never reaches it)."""
    if not enabled or not any_host:
        return ()
    return (McpHostGuardStep(allowed_hosts, allowed_origins, _BAD_HOST, _BAD_ORIGIN),)


def endpoint_target(
    owner: RouteOwner,
    endpoint: ServiceEndpoint,
    settings: McpConfig,
    *,
    max_body: int,
    any_host: bool = True,
    steps: Sequence[Step] = (),
    stats: RouteStats | None = None,
) -> Target:
    """The local target a tools endpoint answers on."""
    guard = host_guard(
        enabled=settings.dns_rebinding_protection,
        any_host=any_host,
        allowed_hosts=settings.allowed_hosts,
        allowed_origins=settings.allowed_origins,
    )
    return Target.local(
        owner=owner,
        name="mcp",
        handler=endpoint,
        max_body=max_body,
        steps=(*guard, *steps),
        stream_keepalive=settings.keepalive_interval,
        stats=stats,
    )


def proxy_target(
    owner: RouteOwner,
    settings: McpConfig,
    *,
    codec: SessionCodec,
    replicas: Replicas,
    upstreams: Sequence[str],
    upstream: Upstream,
    path: str,
    messages_path: str | None,
    host_header: bytes | None,
    max_body: int,
    read_timeout: float,
    connect_timeout: float,
    idle_timeout: float = 0.0,
    total_timeout: float = 0.0,
    any_host: bool = True,
    steps: Sequence[Step] = (),
    stats: RouteStats | None = None,
) -> Target:
    """The target of an MCP server's routes (with `messages_path`: the legacy transport's)."""
    # The upstream URL's path is its MCP endpoint (or, legacy, its SSE endpoint).
    upstream_path = upstream.path or "/"
    router = SessionRouter(
        owner.label,
        codec,
        replicas.pools,
        upstreams,
        settings.allowed_origins,
        legacy_messages=messages_path,
        upstream_path=None if upstream_path == path else upstream_path,
    )
    builtin = (
        *host_guard(
            enabled=settings.dns_rebinding_protection,
            any_host=any_host,
            allowed_hosts=settings.allowed_hosts,
            allowed_origins=settings.allowed_origins,
        ),
        McpSessionStep(router),
        McpEnvelopeStep(EnvelopeGuard(max_body)),
    )
    return Target.proxy(
        owner=owner,
        name="mcp",
        replicas=replicas,
        steps=(*builtin, *steps),
        host_header=host_header,
        max_body=max_body,
        read_timeout=read_timeout,
        connect_timeout=connect_timeout,
        idle_timeout=idle_timeout,
        total_timeout=total_timeout,
        jsonrpc=True,
        stream_keepalive=settings.keepalive_interval,
        stats=stats,
    )


def proxy_routes(settings: McpConfig, path: str) -> tuple[str | None, list[tuple[str, str]]]:
    """An MCP server's (messages path or None, [(method, path)]) at `path`."""
    if settings.transport == "sse":
        messages = settings.messages_path or f"{path.rstrip('/')}/messages"
        return messages, [("GET", path), ("POST", messages)]
    return None, [(m, path) for m in ENDPOINT_METHODS]


class VirtualOwner:
    """Who serves a virtual MCP server's routes (a RouteOwner)."""

    __slots__ = ("label", "name", "tenant")

    def __init__(self, name: str) -> None:
        self.name = name
        self.label = name
        self.tenant = ""


def virtual_server(
    server: VirtualServerConfig,
    members: list[Member],
    steps: Sequence[Step] = (),
    stats: RouteStats | None = None,
) -> tuple[FederatedEndpoint, Target]:
    """A federation of `members`, and the local target it answers on."""
    endpoint = FederatedEndpoint(
        server.name,
        members,
        page_size=server.page_size,
        allowed_origins=server.allowed_origins,
    )
    guard = host_guard(
        enabled=server.dns_rebinding_protection,
        any_host=not server.host,
        allowed_hosts=server.allowed_hosts,
        allowed_origins=server.allowed_origins,
    )
    target = Target.local(
        owner=VirtualOwner(server.name),
        name="mcp",
        handler=endpoint,
        max_body=MAX_MCP_BODY,
        steps=(*guard, *steps),
        stream_keepalive=server.keepalive_interval,
        stats=stats,
    )
    return endpoint, target


def member(
    label: str,
    hosts: Hosts,
    prefix: str,
    *,
    tools: ToolSet | None = None,
    remote_path: str | None = None,
    remote: RemoteTools | None = None,
) -> Member:
    """A federation member: an OpenAPI service's `tools`, or an MCP server at `remote_path`
    (or reached by `remote`, a client kept from an earlier build)."""
    if remote is None and remote_path is not None:
        remote = RemoteTools(hosts, remote_path)
    return Member(label, hosts, prefix, tools=tools, remote=remote)


class ResourceMetadata:
    """The handler of an MCP endpoint's Protected Resource Metadata (RFC 9728): one
    document, made when the snapshot was built, public (clients read it before they
    have a token, browsers from another origin)."""

    __slots__ = ("answer",)

    def __init__(self, document: bytes) -> None:
        self.answer = (
            200,
            (
                ("Content-Type", "application/json"),
                ("Cache-Control", "public, max-age=300"),
                ("Access-Control-Allow-Origin", "*"),
            ),
            document,
        )

    def __call__(self, request: object) -> tuple[int, tuple[tuple[str, str], ...], bytes]:
        return self.answer


def resource_metadata_target(owner: RouteOwner, steps: Iterable[Step]) -> Target | None:
    """The local target serving the metadata of the endpoint whose chain is `steps`, when
    one of them (mcp-auth, bound) protects it as a resource; None otherwise."""
    for step in steps:
        found = getattr(step, "protected_resource", None)
        if found is not None:
            _, document = found
            return Target.local(
                owner=owner,
                name="oauth-protected-resource",
                handler=ResourceMetadata(document),
                max_body=0,
            )
    return None
