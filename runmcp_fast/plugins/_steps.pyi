"""Type stub for the built-in plugins' compiled steps (runmcp_fast/plugins/_steps.pyx)."""

from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Executor
from typing import Any

from runmcp_fast._dataplane import Consumer, Step

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
