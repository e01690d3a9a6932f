"""Type stub for the built-in plugins' compiled steps (runmcp_fast/plugins/_steps.pyx)."""

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from typing import Any, Protocol

from runmcp_fast._dataplane import (
    ClientProtocol,
    Clock,
    Consumer,
    Counters,
    Pool,
    Request,
    Step,
    Target,
)
from runmcp_fast.config import ListenerConfig
from runmcp_fast.plugins.jose import Verifier

class KeyAuthStep(Step):
    def __init__(
        self,
        header: str,
        query: str | None,
        hide: bool,
        keys: Mapping[bytes, Consumer],
        anonymous: Consumer | None = None,
        *,
        name: str = "key-auth",
        priority: int = 2500,
        fail_open: bool = False,
    ) -> None: ...

class BasicAuthStep(Step):
    pending: int
    @property
    def cached(self) -> int: ...
    def __init__(
        self,
        realm: str,
        hide: bool,
        users: Mapping[bytes, tuple[bytes, Consumer]],
        verify: Callable[[bytes, bytes], bool],
        executor: Executor,
        cache_ttl: float,
        max_pending: int,
        anonymous: Consumer | None = None,
        *,
        name: str = "basic-auth",
        priority: int = 2520,
        fail_open: bool = False,
    ) -> None: ...

class ConsumerRestrictionStep(Step):
    def __init__(
        self,
        allow_consumers: Collection[str],
        allow_groups: Collection[str],
        deny_consumers: Collection[str],
        deny_groups: Collection[str],
        status: int,
        *,
        name: str = "consumer-restriction",
        priority: int = 2400,
        fail_open: bool = False,
    ) -> None: ...

# -- what they share (steps/common.pxi) ----------------------------------------------------------

def drop_response_lines(
    chunks: list[bytes], names: Iterable[str] = (), prefix: str | None = None
) -> list[bytes]: ...

# -- real-ip, ip-restriction (steps/ip.pxi) ---------------------------------------------------

class CidrSet:
    size: int
    def __init__(self, networks: Iterable[tuple[bytes, int]]) -> None: ...
    def __contains__(self, address: object) -> bool: ...
    def __len__(self) -> int: ...

def parse_hop(hop: str | bytes) -> tuple[str, bytes] | None: ...
def forwarded_for(value: str) -> list[str | None]: ...

class RealIpStep(Step):
    def __init__(
        self,
        trusted: CidrSet,
        header: str,
        recursive: bool,
        *,
        name: str = "real-ip",
        priority: int = 10000,
        fail_open: bool = False,
    ) -> None: ...

class IpRestrictionStep(Step):
    def __init__(
        self,
        allow: CidrSet | None,
        deny: CidrSet | None,
        status: int,
        message: str,
        *,
        name: str = "ip-restriction",
        priority: int = 3500,
        fail_open: bool = False,
    ) -> None: ...

# -- request-id (steps/request_id.pxi) ---------------------------------------------------------

def new_request_id() -> bytes: ...

class RequestIdStep(Step):
    def __init__(
        self,
        header: str,
        keep: bool,
        echo: bool,
        max_length: int = 128,
        *,
        name: str = "request-id",
        priority: int = 9000,
        fail_open: bool = False,
    ) -> None: ...

# -- cors (steps/cors.pxi) ---------------------------------------------------------------------

class CorsStep(Step):
    def __init__(
        self,
        origins: Collection[str],
        credentials: bool,
        allow_headers: Collection[str] | None,
        expose_headers: Collection[str],
        max_age: int | None,
        *,
        name: str = "cors",
        priority: int = 3000,
        fail_open: bool = False,
    ) -> None: ...
    def allows(self, origin: str) -> str | None: ...

# -- headers (steps/headers.pxi) -----------------------------------------------------------------

class HeadersRequestStep(Step):
    def __init__(
        self,
        drop: Iterable[str],
        add: Iterable[tuple[str, str]],
        *,
        name: str = "headers:request",
        priority: int = 8000,
        fail_open: bool = False,
    ) -> None: ...

class HeadersResponseStep(Step):
    def __init__(
        self,
        drop: Iterable[str],
        add: Iterable[tuple[str, str]],
        *,
        name: str = "headers:response",
        priority: int = 0,
        fail_open: bool = False,
    ) -> None: ...

class McpAuthzStep(Step):
    """mcp-authz on an MCP route: `policy` is the plugin's Policy (builtin/mcp_authz.py)."""

    policy: Any
    def __init__(
        self,
        policy: Any,
        modern: frozenset[bytes],
        *,
        name: str = "mcp-authz",
        priority: int = -100,
        fail_open: bool = False,
    ) -> None: ...

# -- prometheus (steps/metrics.pxi) ----------------------------------------------------------

class PrometheusStep(Step):
    def __init__(
        self, *, name: str = "prometheus", priority: int = 100000, fail_open: bool = False
    ) -> None: ...

# -- jwt-auth, mcp-auth (steps/jwt.pxi) -----------------------------------------------------

class JwtAuthStep(Step):
    verified: int
    cached: int
    refused: int
    @property
    def verifier(self) -> Verifier: ...
    @property
    def cache_entries(self) -> int: ...
    def stats(self) -> dict[str, int]: ...
    def __init__(
        self,
        verifier: Verifier,
        header: str,
        cookie: str | None,
        query: str | None,
        hide: bool,
        anonymous: Consumer | None = None,
        *,
        realm: str = "runmcp-fast",
        cache_size: int = 65536,
        name: str = "jwt-auth",
        priority: int = 2510,
        fail_open: bool = False,
    ) -> None: ...
    def time_hits(self, token: bytes, seconds: float) -> float: ...

class McpAuthStep(JwtAuthStep):
    binder: Callable[[str, Sequence[str | None], Sequence[ListenerConfig]], McpAuthStep] | None
    @property
    def resource(self) -> str | None: ...
    @property
    def metadata_url(self) -> str | None: ...
    @property
    def metadata(self) -> bytes | None: ...
    @property
    def protected_resource(self) -> tuple[str, bytes] | None: ...
    def __init__(
        self,
        verifier: Verifier,
        *,
        resource: str | None = None,
        metadata_url: str | None = None,
        metadata: bytes | None = None,
        required_scopes: Collection[str] = (),
        credential: tuple[str, str] | None = None,
        cache_size: int = 65536,
        name: str = "mcp-auth",
        priority: int = 2590,
        fail_open: bool = False,
    ) -> None: ...
    def bind(
        self, path: str, hosts: Sequence[str | None], listeners: Sequence[ListenerConfig]
    ) -> McpAuthStep: ...

# -- limit-count, limit-req (steps/limits.pxi) ---------------------------------------------------

class LimitTable:
    """A limit's state: fixed-size slots, 8 to a bucket, the least recently used replaced."""

    capacity: int
    evictions: int
    taken: int
    def __init__(self, max_keys: int) -> None: ...
    @property
    def nbytes(self) -> int: ...
    def __len__(self) -> int: ...
    def hit(self, key: object, cost: int, limit: int) -> tuple[bool, int]: ...
    def peek(self, key: object) -> int | None: ...

class LimitStep(Step):
    table: LimitTable
    policy_name: str
    sync: Any
    down: bool
    scope: bytes
    allowed: int
    rejected: int
    redis_errors: int
    fallbacks: int
    syncs: int
    def __init__(
        self,
        name: str,
        priority: int,
        *,
        parts: tuple[tuple[int, Any], ...],
        cost: int,
        method_costs: dict[str, int],
        needs_mcp: bool,
        headers: bool,
        policy_name: str,
        policy_value: str,
        max_keys: int,
        policy: int,
        down_mode: int,
        share: int,
        sync: Any,
        scope: bytes,
        fail_open: bool = False,
    ) -> None: ...
    def stats(self) -> dict[str, int | bool]: ...
    def exact_done(
        self, req: Any, admitted: bool, remaining: int, reset: int
    ) -> tuple[int, tuple[tuple[str, str], ...], bytes] | None: ...
    def exact_failed(
        self, conn: Any, req: Any, exc: BaseException, cost: int
    ) -> tuple[int, tuple[tuple[str, str], ...], bytes] | None: ...
    def take_dirty(self) -> list[tuple[int, bytes, int, int, int]]: ...
    def pushed(self, batch: list[tuple[int, bytes, int, int, int]], totals: list[Any]) -> None: ...
    def failed_sync(
        self, exc: BaseException, batch: list[tuple[int, bytes, int, int, int]] | None = None
    ) -> None: ...
    def sync_ok(self) -> None: ...

class LimitCountStep(LimitStep):
    limit: int
    window: int
    sliding: bool
    def __init__(self, limit: int, window: int, sliding: bool, **kw: Any) -> None: ...

class LimitReqStep(LimitStep):
    rate: float
    burst: int
    interval_us: int
    def __init__(self, rate: float, burst: int, **kw: Any) -> None: ...

# -- opentelemetry (steps/tracing.pxi) ---------------------------------------------------------

def format_traceparent(trace_id: int, span_id: int, sampled: bool) -> bytes: ...
def parse_traceparent(header: bytes) -> tuple[int, int, int] | None: ...
def time_steps(
    steps: Iterable[Step],
    headers: Iterable[tuple[bytes, bytes]],
    count: int,
    log: bool = True,
    target: Target | None = None,
    pool: Pool | None = None,
    consumer: Consumer | None = None,
    status: int = 200,
) -> float: ...

class SpanRecord:
    """A sampled request's span as the data plane saw it (handed to the exporter's queue)."""

    trace_hi: int
    trace_lo: int
    span_id: int
    parent_id: int
    start_ns: int
    end_ns: int
    tracestate: bytes | None
    method: bytes | None
    url: bytes | None
    target: Any
    pool: Any
    consumer: Consumer | None
    client: bytes | None
    peer: bytes | None
    status: int
    error: str | None
    answered_by: str | None
    envelope: Any
    @property
    def context(self) -> Any: ...
    @property
    def trace_id(self) -> int: ...

class TracingStep(Step):
    sampled: int
    replaced: int
    def __init__(
        self,
        ratio: float,
        parent_based: bool,
        create: bool,
        emit: Callable[[SpanRecord], object] | None = None,
        *,
        name: str = "opentelemetry",
        priority: int = 20000,
        fail_open: bool = False,
    ) -> None: ...

# -- access-log (steps/access_log.pxi) -------------------------------------------------------

ACCESS_LOG_FIELDS: tuple[str, ...]
ACCESS_LOG_DEFAULT: tuple[str, ...]
MCP_METHOD_VAR: str

class LogSink(Protocol):
    """What a LogBuffer's sink is called with (plugins/builtin/log_sinks.py)."""

    def schedule(self, buffer: LogBuffer, clock: Clock) -> None: ...
    def full(self, buffer: LogBuffer) -> None: ...

class LogBuffer:
    """An access-log step's lines not yet taken by its sink, and its counts."""

    lines: int
    batch_lines: int
    dropped: int
    failed: int
    counts: Counters
    sink: LogSink | None
    def __init__(self, sink: LogSink | None = None) -> None: ...
    def take(self) -> tuple[bytes, int]: ...
    def __len__(self) -> int: ...

class AccessLogStep(Step):
    buffer: LogBuffer
    def __init__(
        self,
        fields: Sequence[str],
        buffer: LogBuffer,
        *,
        query: bool = False,
        octet_counting: bool = False,
        syslog_head: bytes | None = None,
        syslog_tail: bytes | None = None,
        name: str = "access-log",
        priority: int = 99000,
        fail_open: bool = False,
    ) -> None: ...
    def stats(self) -> dict[str, int]: ...
    def render(self, conn: ClientProtocol, req: Request, repeat: int = 1) -> bytes: ...
