"""A keep-alive connection pool per upstream target (scheme, host, port).

Idle connections are a LIFO stack (the warmest socket first, the coldest ages
out); waiters are FIFO. Acquiring an idle connection is a plain method call;
only opening a new one awaits (`loop.create_connection`), on its own task.
Timeouts are deadlines checked by the gateway's clock sweep, not timers.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import TYPE_CHECKING, Protocol

from runmcp_fast.config import PoolConfig, Upstream
from runmcp_fast.upstream.connection import UpstreamConnection

if TYPE_CHECKING:
    from runmcp_fast.server.clock import Clock


class PoolClient(Protocol):
    """What the pool calls back: the client protocol whose request needs a connection."""

    def upstream_attached(self, conn: UpstreamConnection) -> None: ...
    def upstream_unavailable(self, status: int, detail: str) -> None: ...
    @property
    def gone(self) -> bool: ...


class Pool:
    __slots__ = (
        "_closed",
        "_connecting",
        "_idle",
        "_loop",
        "_ssl",
        "_tasks",
        "_waiters",
        "clock",
        "config",
        "open_count",
        "upstream",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        upstream: Upstream,
        config: PoolConfig,
        clock: Clock,
    ) -> None:
        self._loop = loop
        self.upstream = upstream
        self.config = config
        self.clock = clock
        self._idle: list[UpstreamConnection] = []
        # (client, deadline, connect_timeout): FIFO, the deadline answers 503.
        self._waiters: deque[tuple[PoolClient, float, float]] = deque()
        self.open_count = 0  # open or opening connections, idle ones included
        self._connecting = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._ssl: ssl.SSLContext | None = (
            ssl.create_default_context() if upstream.scheme == "https" else None
        )

    # -- the hot path ---------------------------------------------------------

    def acquire(self, client: PoolClient, connect_timeout: float) -> UpstreamConnection | None:
        """An idle connection now, or None: `client.upstream_attached` comes later."""
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
            # Closed while idle: connection_lost already took it off the count.
        if self.open_count < self.config.max_connections:
            self._open(client, connect_timeout)
        else:
            self._waiters.append(
                (client, self.clock.now + self.config.wait_timeout, connect_timeout)
            )
        return None

    def release(self, conn: UpstreamConnection) -> None:
        """Take back a connection whose exchange ended cleanly at a message boundary."""
        if self._closed or conn.closed:
            conn.close()
            return
        waiters = self._waiters
        while waiters:
            client, _deadline, _timeout = waiters.popleft()
            if not client.gone:
                client.upstream_attached(conn)
                return
        if len(self._idle) < self.config.max_idle:
            conn.idle_since = self.clock.now
            self._idle.append(conn)
        else:
            conn.close()

    def connection_closed(self) -> None:
        """Called once for every connection opened, when its socket is gone (or never came)."""
        self.open_count -= 1
        # A slot freed: the first live waiter gets a fresh connection.
        waiters = self._waiters
        while waiters and self.open_count < self.config.max_connections and not self._closed:
            client, _deadline, timeout = waiters.popleft()
            if not client.gone:
                self._open(client, timeout)
                break

    def open_fresh(self, client: PoolClient, connect_timeout: float) -> None:
        """A new connection for a retry, never a reused one (the pool's limit still holds)."""
        if self.open_count < self.config.max_connections:
            self._open(client, connect_timeout)
        else:
            self._waiters.append(
                (client, self.clock.now + self.config.wait_timeout, connect_timeout)
            )

    # -- slow paths -------------------------------------------------------------

    def _open(self, client: PoolClient, connect_timeout: float) -> None:
        self.open_count += 1
        task = self._loop.create_task(self._connect(client, connect_timeout))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, client: PoolClient, timeout: float) -> None:
        upstream = self.upstream
        try:
            _transport, conn = await asyncio.wait_for(
                self._loop.create_connection(
                    lambda: UpstreamConnection(self),
                    upstream.host,
                    upstream.port,
                    ssl=self._ssl,
                    server_hostname=upstream.host if self._ssl else None,
                ),
                timeout,
            )
        except TimeoutError:
            self.connection_closed()
            if not client.gone:
                client.upstream_unavailable(504, f"connecting to {self.name} timed out")
            return
        except OSError as exc:
            self.connection_closed()
            if not client.gone:
                reason = exc.strerror or str(exc) or type(exc).__name__
                client.upstream_unavailable(502, f"can not connect to {self.name}: {reason}")
            return
        except asyncio.CancelledError:
            self.connection_closed()
            raise
        if client.gone or self._closed:
            self.release(conn)
        else:
            client.upstream_attached(conn)

    @property
    def name(self) -> str:
        return f"{self.upstream.scheme}://{self.upstream.authority}"

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    @property
    def waiting_count(self) -> int:
        return len(self._waiters)

    def sweep(self, now: float) -> None:
        """Close idle connections past their idle timeout; 503 waiters past theirs."""
        idle = self._idle
        if idle:
            limit = now - self.config.idle_timeout
            # The stack's bottom is the coldest: expired ones are a prefix.
            expired = 0
            while expired < len(idle) and idle[expired].idle_since <= limit:
                expired += 1
            if expired:
                for conn in idle[:expired]:
                    conn.close()
                del idle[:expired]
        waiters = self._waiters
        while waiters and (waiters[0][0].gone or waiters[0][1] <= now):
            client, _deadline, _timeout = waiters.popleft()
            if not client.gone:
                client.upstream_unavailable(
                    503, f"no connection to {self.name} came free in time (pool full)"
                )

    def close(self) -> None:
        """Close idle connections and refuse new work; busy ones close when released."""
        self._closed = True
        for conn in self._idle:
            conn.close()
        self._idle.clear()
        for task in self._tasks:
            task.cancel()
        waiters = self._waiters
        while waiters:
            client, _deadline, _timeout = waiters.popleft()
            if not client.gone:
                client.upstream_unavailable(503, "the gateway is shutting down")
