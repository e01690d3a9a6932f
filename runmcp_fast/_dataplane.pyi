"""Type stub for the compiled data plane (runmcp_fast/_dataplane.pyx and dataplane/*).

Only what Python code sees; the C-level fields and methods are declared in
_dataplane.pxd and dataplane/*.pxd, for extensions that cimport them.
"""

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Final

from runmcp_fast.config import (
    CircuitBreakerConfig,
    HashOnConfig,
    LimitsConfig,
    OutlierConfig,
    PoolConfig,
    RetryConfig,
    Upstream,
)
from runmcp_fast.hooks import Handler, PythonStep, RouteOwner, SessionHook, Validator

PHASES: Final[dict[str, int]]
PHASE_NAMES: Final[dict[int, str]]
HOOKS: Final[dict[str, int]]

LATENCY_BUCKETS_SECONDS: Final[tuple[float, ...]]
"""The finite latency buckets of every route's histograms (RouteStats)."""

class RouteStats:
    """One route's counters, bumped in C by the prometheus step."""

    service: str
    route: str
    method: str
    streams: int
    def __init__(self, service: str, route: str, method: str) -> None: ...
    def snapshot(self) -> dict[str, Any]: ...

class Clock:
    now: float
    interval: float
    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None: ...
    def add_sweeper(self, sweep: Callable[[float], None]) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...

RETRY_REASON_NAMES: Final[tuple[str, ...]]
MAGLEV_TABLE_SIZE: Final[int]
RING_POINTS_PER_WEIGHT: Final[int]

def key_hash(key: bytes) -> int:
    """The 64-bit hash a request key is placed by (the same on every process)."""

def loopback_host(host: bytes) -> bool:
    """Whether `host[:port]` names the loopback (the MCP host guard's check; for tests)."""

def _chunk_size_line(n: int) -> bytes:
    """The size line of a chunk of `n` bytes (`b"%x\\r\\n" % n`; for tests)."""

def scan_response_head(
    data: bytes,
) -> tuple[int, bool, list[tuple[bytes, bytes]], int] | None:
    """The checks an upstream's response head gets, on the head at the start of `data`:
    (status, HTTP/1.1, [(name, raw value)...], where it ends past its empty line); None
    when it does not end in `data`. Raises ValueError naming what is refused (for tests)."""

def read_chunked(data: bytes, cuts: Iterable[int] = ()) -> tuple[bytes, int] | None:
    """A chunked body framed as the upstream side frames it, `data` given in pieces cut
    at `cuts`: (the body, where it ends in `data`); None when it does not end there.
    Raises ValueError naming what is refused (for tests)."""

def _same_name(name: bytes, lower: bytes) -> bool:
    """Whether `name`, A-Z as lower case, is `lower` (the inline compare of header
    names and tokens; for tests). Raises ValueError for two lengths."""

class Replica:
    """One replica of a service: its pool, weight, load and health."""

    pool: Pool | None
    url: str
    index: int
    weight: int
    path: bytes
    authority: bytes
    own_head: bool
    active: int
    pending: int
    up: bool
    ejected: bool
    ejected_until: float
    ejections: int
    consecutive: int
    check_up: bool
    ejected_total: int
    last_error: str | None
    last_error_at: float
    @property
    def state(self) -> str: ...
    @property
    def ejected_for(self) -> float: ...
    @property
    def rejected_pending(self) -> int: ...
    @property
    def rejected_requests(self) -> int: ...

class Replicas:
    """A service's replicas: balancing, passive health, the retry budget (docs/resilience.md)."""

    pools: tuple[Pool | None, ...]
    replicas: tuple[Replica, ...]
    count: int
    simple: bool
    policy: int
    key_kind: int
    ejected_count: int
    up_count: int
    panic: bool
    retry_on: int
    attempts: int
    budget_min: float
    budget: float
    active: int
    budget_exhausted: int
    max_connections: int
    max_pending: int
    max_requests: int
    def __init__(
        self,
        pools: Iterable[Pool | None],
        *,
        weights: Sequence[int] | None = None,
        urls: Sequence[str] | None = None,
        paths: Sequence[bytes] | None = None,
        authorities: Sequence[bytes] | None = None,
        policy: str = "least_request",
        hash_on: HashOnConfig | None = None,
        algorithm: str = "maglev",
        outlier: OutlierConfig | None = None,
        retries: RetryConfig | None = None,
        breaker: CircuitBreakerConfig | None = None,
    ) -> None: ...
    @property
    def policy_name(self) -> str: ...
    def owner_of(self, key: bytes) -> int: ...
    def time_choices(self, n: int, key: bytes = b"user-42") -> float: ...
    def sweep(self, now: float) -> None: ...
    def set_checked(self, index: int, healthy: bool) -> None: ...
    def adopt(self, old: Replicas, checked: bool = True) -> None: ...
    def retried_counts(self) -> dict[str, int]: ...

# -- the chain -------------------------------------------------------------------------

class Counters:
    """What the steps of one plugin counted, kept by the gateway across snapshots."""

    events: tuple[str, ...]
    failures: int
    def __init__(self, events: Iterable[str] = ()) -> None: ...
    def values(self) -> dict[str, int]: ...
    def __getitem__(self, event: str) -> int: ...

class Step:
    """One step of a route's chain; an instance of Step itself does nothing."""

    EVENTS: ClassVar[tuple[str, ...]]
    name: str
    phase: int
    priority: int
    hooks: int
    needs_params: bool
    reads_envelope: bool  # it may read req.vars["mcp.envelope"]
    fail_open: bool
    counts: Counters
    @property
    def failures(self) -> int: ...
    def adopt_counts(self, counts: Counters) -> None: ...
    def __init__(
        self,
        name: str,
        phase: str | int,
        *,
        priority: int = 0,
        hooks: int = 1,
        fail_open: bool = False,
        needs_params: bool = False,
        reads_envelope: bool = True,
    ) -> None: ...

class Chain:
    steps: tuple[Step, ...]
    needs_params: bool
    reads_envelope: bool  # some step may read req.vars["mcp.envelope"]
    origin_steps: tuple[Step, ...] | None
    def __init__(self, steps: Iterable[Step] = ()) -> None: ...
    def names(self) -> list[str]: ...
    def describe(self) -> list[tuple[str, str, int]]: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[Step]: ...

class Consumer:
    """Who a request comes from, once an authentication step has identified it."""

    name: str
    groups: frozenset[str]
    steps: tuple[Step, ...]
    def __init__(
        self, name: str, groups: Iterable[str] = (), steps: Iterable[Step] = ()
    ) -> None: ...

class Wait:
    awaitable: Awaitable[Any]
    def __init__(self, awaitable: Awaitable[Any]) -> None: ...

class PyStep(Step):
    plugin: PythonStep
    def __init__(
        self,
        plugin: PythonStep,
        *,
        name: str | None = None,
        priority: int | None = None,
        fail_open: bool | None = None,
    ) -> None: ...

class ContractStep(Step):
    validator: Validator
    def __init__(
        self,
        validator: Validator,
        *,
        name: str = "contract",
        phase: str | int = ...,
        priority: int = 0,
    ) -> None: ...

class PlainParam:
    """A path or query parameter the ContractStep checks in C (validation/operation.py
    PlainCheck)."""

    def __init__(
        self,
        name: str,
        program: object,
        numeric: bool,
        boolean: bool,
        string: bool,
        in_query: bool = False,
        required: bool = False,
    ) -> None: ...

class McpEnvelopeStep(ContractStep):
    """ContractStep over an EnvelopeGuard; leaves the checked envelope in
    `vars["mcp.envelope"]` for the steps after it, where the chain has a step that may
    read it (`Chain.reads_envelope`)."""

    def __init__(
        self, validator: Validator, *, name: str = "mcp-envelope", priority: int = 0
    ) -> None: ...

class McpHostGuardStep(Step):
    """DNS-rebinding protection of an MCP endpoint on loopback connections."""

    def __init__(
        self,
        hosts: Iterable[str],
        origins: Iterable[str],
        bad_host: tuple[int, Sequence[tuple[str, str]], bytes],
        bad_origin: tuple[int, Sequence[tuple[str, str]], bytes],
        *,
        name: str = "mcp-host-guard",
        priority: int = 100000,
    ) -> None: ...

class McpSessionStep(Step):
    hook: SessionHook
    def __init__(
        self, hook: SessionHook, *, name: str = "mcp-session", priority: int = 100
    ) -> None: ...

class RequestView:
    """A request as a Python step sees it."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def query(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def peer(self) -> str: ...
    @property
    def client_ip(self) -> str: ...
    @property
    def request_id(self) -> str | None: ...
    @property
    def preflight(self) -> bool: ...
    @property
    def params(self) -> dict[str, str]: ...
    @property
    def route(self) -> str | None: ...
    @property
    def service(self) -> str | None: ...
    @property
    def consumer(self) -> str | None: ...
    @property
    def consumer_groups(self) -> frozenset[str]: ...
    @property
    def vars(self) -> dict[str, Any]: ...
    @property
    def headers(self) -> dict[str, str]: ...
    def header(self, name: str) -> str | None: ...
    def set_header(self, name: str, value: str) -> None: ...
    def remove_header(self, name: str) -> None: ...

# -- targets ---------------------------------------------------------------------------

class Target:
    """A route's target; made by `Target.proxy()` or `Target.local()`."""

    owner: RouteOwner
    service_name: str
    name: str
    operation: Any
    chain: Chain
    handler: Handler | None
    replicas: Replicas | None
    pool: Pool | None
    host_header: bytes | None
    upstream_path: bytes
    strip_prefix: bytes
    read_timeout: float
    connect_timeout: float
    idle_timeout: float
    total_timeout: float
    idempotent: bool
    jsonrpc: bool
    wants_params: bool
    max_body: int
    stream_keepalive: float
    stats: RouteStats | None
    dispatch: Dispatch | None
    """Set on a route of several operations: it picks the request's target."""
    @staticmethod
    def proxy(
        *,
        owner: RouteOwner,
        name: str,
        replicas: Replicas | Sequence[Pool | None],
        max_body: int,
        read_timeout: float,
        connect_timeout: float,
        operation: Any = None,
        steps: Iterable[Step] | Chain = (),
        host_header: bytes | None = None,
        upstream_path: bytes = b"",
        strip_prefix: bytes = b"",
        stream_keepalive: float = 0.0,
        stats: RouteStats | None = None,
        idle_timeout: float = 0.0,
        total_timeout: float = 0.0,
        idempotent: bool = False,
        jsonrpc: bool = False,
    ) -> Target: ...
    @staticmethod
    def local(
        *,
        owner: RouteOwner,
        name: str,
        handler: Handler,
        max_body: int,
        steps: Iterable[Step] | Chain = (),
        stream_keepalive: float = 0.0,
        stats: RouteStats | None = None,
    ) -> Target: ...
    @staticmethod
    def dispatching(*, owner: RouteOwner, name: str, dispatch: Dispatch) -> Target: ...
    def upstream_target(self, path: bytes) -> bytes: ...

class Dispatch:
    """Operations sharing one route, told apart by the request's query and headers."""

    targets: tuple[Target, ...]
    param_names: tuple[tuple[str, ...] | None, ...]
    detail: str
    def __init__(
        self,
        targets: Sequence[Target],
        conditions: Sequence[Sequence[tuple[str, str, str | None]]],
        preferred: Sequence[Sequence[tuple[str, str, str | None]]],
        param_names: Sequence[tuple[str, ...] | None],
        detail: str,
    ) -> None: ...
    def choose(self, url: bytes, lines: list[bytes] | None = None) -> int:
        """The index into `targets` the request is for, or -1: no one's conditions hold."""

# -- local answers -----------------------------------------------------------------------

class LocalRequest:
    """What a local handler gets: the request head, its whole body, the route params."""

    method: str
    path: str
    query: str
    host: str
    headers: dict[str, str]  # lower-case names; hop-by-hop fields and Host left out
    repeated: set[str] | None  # names given more than once (`headers` holds the last)
    body: bytes
    params: Mapping[str, str]
    peer: str
    ctx: ServerContext | None  # the server it came through (for requests of its own)
    loopback: bool  # it came in on a loopback address (127/8, ::1)
    consumer: Consumer | None  # who an authentication step said it comes from
    vars: dict[str, Any]  # what the route's steps left for the handler (claims, scopes, ...)

class LocalStream:
    """A local handler's response body written over time (an event stream)."""

    closed: bool
    on_close: Callable[[LocalStream], None] | None
    def __init__(self, on_close: Callable[[LocalStream], None] | None = None) -> None: ...
    def write(self, data: bytes) -> bool: ...
    def close(self) -> None: ...
    @property
    def open(self) -> bool: ...

# -- the client side -------------------------------------------------------------------

class Request:
    """One request on a client connection (made by ClientProtocol; fields: request.pxd)."""

    method: bytes
    url: bytes
    host: bytes | None
    lines: list[bytes] | None
    content_length: int
    keep_alive: bool
    client_ip: bytes
    request_id: bytes | None
    preflight: bool
    allowed: str | None
    target: Target | None
    consumer: Consumer | None
    anonymous: bool
    params: Any
    vars: dict[str, Any] | None
    limit: int
    pin: int
    pool: Pool | None
    status: int
    t0: float
    t_upstream: float
    t_head: float
    bytes_out: int

class ServerContext:
    clock: Clock
    limits: LimitsConfig
    @property
    def snapshot(self) -> Any: ...  # (set by __init__ and swap only)
    tenant_header: bytes | None
    unrouted_chain: Chain | None  # log steps of requests no route took (a global access-log)
    connections: set[ClientProtocol]
    closing: bool
    state: dict[str, Any]
    header_timeout: float  # (the limits, unpacked once; read-only)
    def __init__(self, clock: Clock, limits: LimitsConfig, snapshot: Any) -> None: ...
    def swap(self, snapshot: Any) -> None: ...
    def unrouted_counts(self) -> list[int]: ...
    def sweep(self, now: float) -> None: ...

class ClientProtocol(asyncio.Protocol):
    ctx: ServerContext
    transport: asyncio.Transport | None
    peer: bytes
    loopback: bool  # the connection came in on a loopback address (read once, at connect)
    closed: bool
    closing: bool
    def __init__(self, ctx: ServerContext, scheme: bytes) -> None: ...
    def shutdown(self) -> None: ...
    def abort(self) -> None: ...
    @property
    def active_target(self) -> Target | None:
        """The target of the request being answered (None: none is)."""

# -- the upstream side ---------------------------------------------------------------

class UpstreamConnection(asyncio.Protocol):
    pool: Pool
    closed: bool
    requests: int
    def close(self) -> None: ...

class BufferedUpstreamConnection(UpstreamConnection):
    """A plain-TCP upstream connection: reads into its loop's shared buffer."""

    def get_buffer(self, sizehint: int) -> bytearray: ...
    def buffer_updated(self, nbytes: int) -> None: ...

class Pool:
    upstream: Upstream
    config: PoolConfig
    clock: Clock
    name: str
    open_count: int
    max_requests: int
    down_until: float
    connect_failures: int
    timeouts: int
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
