"""Type stub for the built-in plugins' compiled steps (runmcp_fast/plugins/_steps.pyx)."""

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from typing import Any, Protocol

from runmcp_fast._dataplane import ClientProtocol, Clock, Consumer, Request, Step

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
