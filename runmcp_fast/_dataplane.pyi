"""Type stub for the compiled data plane (runmcp_fast/_dataplane.pyx)."""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from runmcp_fast.config import LimitsConfig, PoolConfig, Upstream

def monotonic() -> float: ...

class Clock:
    now: float
    interval: float
    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None: ...
    def add_sweeper(self, sweep: Callable[[float], None]) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...

class Replicas:
    pools: tuple[Pool, ...]
    def __init__(self, pools: tuple[Pool, ...]) -> None: ...

class LocalRequest:
    """What a local handler gets: the request head, its whole body, the route params."""

    method: str
    path: str
    query: str
    host: str
    headers: dict[str, str]  # lower-case names; hop-by-hop fields and Host left out
    body: bytes
    params: dict[str, str]
    peer: str
    ctx: ServerContext | None  # the server it came through (for requests of its own)

class LocalStream:
    """A local handler's response body written over time (an event stream)."""

    closed: bool
    on_close: Callable[[LocalStream], None] | None
    def __init__(self, on_close: Callable[[LocalStream], None] | None = None) -> None: ...
    def write(self, data: bytes) -> bool: ...
    def close(self) -> None: ...
    @property
    def open(self) -> bool: ...

# (status, headers, body): Content-Length and Connection are added by the server.
# A LocalStream body is sent chunked, as it is written.
LocalResponse = tuple[int, Sequence[tuple[str, str]], bytes | LocalStream]
Handler = Callable[[LocalRequest], LocalResponse | Awaitable[LocalResponse]]

class Target:
    service_name: str
    name: str
    operation: Any
    service: Any
    pool: Pool
    replicas: Replicas
    handler: Handler | None
    mcp: Any
    """An MCP service's session router (runmcp_fast.mcp.proxy.SessionRouter), or None."""
    stream_keepalive: float
    validator: Any
    """The operation's `OperationValidator`, or None: nothing to check."""
    host_header: bytes | None
    upstream_path: bytes
    strip_prefix: bytes
    max_body: int
    read_timeout: float
    connect_timeout: float
    def __init__(
        self,
        service: Any,
        operation: Any,
        pools: Pool | Replicas | tuple[Pool | None, ...] | None,
        host_header: bytes | None,
        upstream_path: bytes,
        strip_prefix: bytes,
        max_body: int,
        read_timeout: float,
        connect_timeout: float,
        handler: Handler | None = None,
        validator: Any = None,
        mcp: Any = None,
        stream_keepalive: float = 0.0,
    ) -> None: ...
    def upstream_target(self, path: bytes) -> bytes: ...

class ServerContext:
    clock: Clock
    limits: LimitsConfig
    snapshot: Any
    tenant_header: bytes | None
    access_log: bool
    connections: set[ClientProtocol]
    closing: bool
    state: dict[str, Any]
    def __init__(
        self, clock: Clock, limits: LimitsConfig, snapshot: Any, access_log: bool
    ) -> None: ...
    def swap(self, snapshot: Any) -> None: ...
    def sweep(self, now: float) -> None: ...
    def flush_log(self) -> None: ...

class ClientProtocol(asyncio.Protocol):
    ctx: ServerContext
    transport: asyncio.Transport | None
    closed: bool
    closing: bool
    def __init__(self, ctx: ServerContext, scheme: bytes) -> None: ...
    def shutdown(self) -> None: ...
    def abort(self) -> None: ...

class UpstreamConnection(asyncio.Protocol):
    pool: Pool
    closed: bool
    requests: int
    def close(self) -> None: ...

class Pool:
    upstream: Upstream
    config: PoolConfig
    clock: Clock
    name: str
    open_count: int
    max_requests: int
    down_until: float
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        upstream: Upstream,
        config: PoolConfig,
        clock: Clock,
    ) -> None: ...
    @property
    def idle_count(self) -> int: ...
    @property
    def waiting_count(self) -> int: ...
    def sweep(self, now: float) -> None: ...
    def retire(self) -> None: ...
    def close(self) -> None: ...
