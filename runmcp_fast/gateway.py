"""`Gateway`: builds the snapshot from a config, binds the listeners, runs, drains.

    gateway = Gateway(load_config("gateway.yaml"))
    await gateway.start()          # binds; gateway.addresses tells where
    ...
    await gateway.stop()           # stop accepting, finish in-flight, close

Everything here runs on the event loop's thread; the data plane itself is the
callbacks in `server/protocol.py` and `upstream/connection.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
import ssl
import sys
from pathlib import Path

from runmcp_fast._dataplane import Clock, ServerContext
from runmcp_fast.config import ConfigError, GatewayConfig, ListenerConfig
from runmcp_fast.openapi.errors import Problem
from runmcp_fast.server.listeners import bound_addresses, start_listener
from runmcp_fast.services import Pools, Snapshot, build_snapshot


def sweep_interval(*timeouts: float) -> float:
    """A clock tick fine enough for the shortest timeout: a quarter of it, within 10 ms..1 s."""
    shortest = min((t for t in timeouts if t > 0), default=1.0)
    return min(1.0, max(0.01, shortest / 4))


class Gateway:
    def __init__(
        self,
        config: GatewayConfig,
        *,
        source: str = "<config>",
        sockets: list[socket.socket] | None = None,
        label: str = "",
    ) -> None:
        self.config = config
        self.source = source
        # Listening sockets bound beforehand (one per listener, in order), shared
        # by worker processes; None: each listener binds its own.
        self._sockets = sockets
        self._label = label
        self._servers: list[asyncio.Server] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ctx: ServerContext | None = None
        self._pools: Pools | None = None
        self._clock: Clock | None = None
        self._stopped: asyncio.Event | None = None
        self.addresses: list[str] = []

    @property
    def snapshot(self) -> Snapshot:
        assert self._ctx is not None, "start() first"
        snapshot: Snapshot = self._ctx.snapshot
        return snapshot

    @property
    def pools(self) -> Pools:
        assert self._pools is not None, "start() first"
        return self._pools

    async def start(self) -> None:
        """Compile the config (SnapshotError if it can not be) and bind every listener."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        config = self.config
        limits = config.limits
        pool = config.pool
        self._clock = clock = Clock(
            loop,
            sweep_interval(
                limits.header_timeout,
                limits.body_timeout,
                limits.keepalive_timeout,
                pool.wait_timeout,
                pool.read_timeout,
                pool.idle_timeout,
                *(s.read_timeout or 0 for s in config.services),
            ),
        )
        self._pools = pools = Pools(loop, clock, pool)
        snapshot = build_snapshot(config, pools, self.source)
        # The snapshot's objects live as long as the config: keep the GC from
        # scanning them again and again (big specs hold millions of objects).
        gc.collect()
        gc.freeze()
        self._ctx = ctx = ServerContext(clock, limits, snapshot, config.access_log)
        clock.add_sweeper(ctx.sweep)
        clock.add_sweeper(pools.sweep)
        clock.start()
        self._stopped = asyncio.Event()
        try:
            for index, listener in enumerate(config.listeners):
                sock = self._sockets[index] if self._sockets is not None else None
                try:
                    server = await start_listener(loop, listener, ctx, config.base_dir, sock)
                except (OSError, ssl.SSLError) as exc:
                    raise ConfigError(
                        [_bind_problem(self.source, index, listener, config.base_dir, exc)]
                    ) from None
                self._servers.append(server)
                self.addresses.extend(bound_addresses(server))
        except BaseException:
            await self._close_servers()
            clock.stop()
            raise

    def startup_line(self) -> str:
        snapshot = self.snapshot
        services = ", ".join(
            f"{s.name} -> {s.pool.name}{s.upstream.path}" for s in snapshot.services
        )
        return (
            f"runmcp-fast{self._label}: listening on {', '.join(self.addresses)}; "
            f"{len(snapshot.services)} service(s) [{services}]; {snapshot.route_count} routes"
        )

    async def stop(self, drain_timeout: float | None = None) -> None:
        """Stop accepting, let in-flight requests finish (up to the drain timeout), close."""
        ctx = self._ctx
        if ctx is None:
            return
        if drain_timeout is None:
            drain_timeout = self.config.limits.drain_timeout
        ctx.closing = True
        for server in self._servers:
            server.close()
        for conn in tuple(ctx.connections):
            conn.shutdown()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_timeout
        while ctx.connections and loop.time() < deadline:
            await asyncio.sleep(0.01)
        for conn in tuple(ctx.connections):
            conn.abort()
        ctx.connections.clear()
        ctx.flush_log()
        await self._close_servers()
        if self._pools is not None:
            self._pools.close()
        if self._clock is not None:
            self._clock.stop()
        if self._stopped is not None:
            self._stopped.set()
        gc.unfreeze()

    async def _close_servers(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        self._servers.clear()

    async def serve_forever(self) -> None:
        """Start, print the startup line, run until SIGTERM/SIGINT, then drain and stop."""
        await self.start()
        _say(self.startup_line())
        loop = asyncio.get_running_loop()
        stop_requested = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop_requested.set)
        try:
            await stop_requested.wait()
            _say(f"runmcp-fast{self._label}: draining")
            await self.stop()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)


def _bind_problem(
    source: str, index: int, listener: ListenerConfig, base_dir: str, exc: OSError | ssl.SSLError
) -> Problem:
    """Why listener `index` could not start, pointing at the key to fix."""
    where = f"/listeners/{index}"
    tls = listener.tls
    if tls is not None:
        for key in ("cert", "key"):
            path = Path(base_dir, getattr(tls, key))
            if not path.is_file():
                return Problem(source, f"{where}/tls/{key}", f"no such file: {path}", "a PEM file")
        if isinstance(exc, ssl.SSLError):
            reason = exc.reason or str(exc)
            return Problem(source, f"{where}/tls", f"the certificate or key is unusable: {reason}")
    detail = exc.strerror or str(exc)
    return Problem(source, f"{where}/address", f"can not listen on {listener.address}: {detail}")


def _say(line: str) -> None:
    # One write per line: worker processes share stderr.
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
