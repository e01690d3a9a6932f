"""Type stub for the built-in plugins' compiled steps (runmcp_fast/plugins/_steps.pyx)."""

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from typing import Any

from runmcp_fast._dataplane import Consumer, Step
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
