"""Active health checks: an HTTP GET to each replica of the services that have
`health_check`, run once per node and shared with the other workers.

One process checks: the gateway itself, or worker 1 of `serve --workers N`
(replaced with the same number if it dies, so the checks go on). A replica
is taken out after `fall` failed checks in a row and brought back after
`rise` passing ones (HAProxy's `fall`/`rise`); it starts in. Each verdict is
applied to the checking worker's replicas at once, and every round the
verdicts so far go to the other workers over their Unix sockets
(metrics/peers.py), which apply them to theirs: a worker started late, or a
config reloaded, is in step within one round.

A check is a slow-path task per replica per interval (never per request):
`GET <path>` with `Connection: close`, healthy when the status is one of
`statuses` (default: any 2xx or 3xx) within `timeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from runmcp_fast.config import HealthCheckConfig, parse_upstream
from runmcp_fast.snapshot import Snapshot

# (service label, replica URL) -> in rotation (True) or out (False).
Verdicts = dict[tuple[str, str], bool]
log = logging.getLogger("runmcp_fast.health")
# The longest sleep between two looks at what is due (a new config's checks start within it).
_IDLE = 1.0


@dataclass
class _Replica:
    """What the checker knows of one replica of one service."""

    check: HealthCheckConfig  # as configured when this began (a new one starts afresh)
    healthy: bool = True
    streak: int = 0  # checks in a row disagreeing with `healthy`
    due: float = 0.0  # when the next check starts (monotonic)
    running: bool = False


class HealthChecker:
    """Checks the replicas of `snapshot()`'s services with a health_check; `publish`
    (async) sends the verdicts to the other workers."""

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        publish: Callable[[Verdicts], Awaitable[None]] | None = None,
    ) -> None:
        self._snapshot = snapshot
        self._publish = publish
        self._replicas: dict[tuple[str, str], _Replica] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._main: asyncio.Task[None] | None = None
        self._ssl: ssl.SSLContext | None = None
        self.counts: dict[tuple[str, str, str], int] = {}
        """Checks run, by (service, upstream, result): the metrics' series."""
        self.user_agent = f"runmcp-fast-health-check (pid {os.getpid()})"

    def start(self) -> None:
        self._main = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        tasks = [t for t in (self._main, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._main = None

    def verdicts(self) -> Verdicts:
        """Every verdict so far, by (service label, replica URL)."""
        return {key: r.healthy for key, r in self._replicas.items()}

    async def _run(self) -> None:
        last_sent = 0.0
        while True:
            try:
                last_sent, wake = await self._round(last_sent)
            except Exception:
                # A round that broke must not end the checks for good: logged, tried again.
                log.exception("health checks: a round failed")
                wake = time.monotonic() + _IDLE
            await asyncio.sleep(max(0.0, wake - time.monotonic()))

    async def _round(self, last_sent: float) -> tuple[float, float]:
        """Start the checks that are due, drop those no longer configured, send the
        verdicts when it is time: (when they were last sent, when to look again)."""
        snapshot = self._snapshot()
        now = time.monotonic()
        wake = now + _IDLE
        wanted: set[tuple[str, str]] = set()
        for service in snapshot.services:
            check = service.config.health_check
            if check is None:
                continue
            for replica in service.replicas.replicas:
                key = (service.label, replica.url)
                wanted.add(key)
                state = self._replicas.get(key)
                # (a check config holds a list: compared, never hashed) A new or
                # changed check starts from the verdict the replica has now.
                if state is None or state.check != check:
                    state = _Replica(check, healthy=replica.check_up, due=now)
                    self._replicas[key] = state
                if not state.running and state.due <= now:
                    state.running = True
                    state.due = now + check.interval
                    task = asyncio.get_running_loop().create_task(self._check(key, state))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                wake = min(wake, state.due)
        for key in [k for k in self._replicas if k not in wanted]:
            del self._replicas[key]  # a replica or a check no longer configured
        if (
            self._publish is not None
            and self._replicas
            and now - last_sent >= min(_IDLE, *(r.check.interval for r in self._replicas.values()))
        ):
            last_sent = now
            with contextlib.suppress(Exception):
                await self._publish(self.verdicts())
        return last_sent, wake

    async def _check(self, key: tuple[str, str], state: _Replica) -> None:
        label, url = key
        check = state.check
        try:
            ok = await self.probe(url, check)
        finally:
            state.running = False
        result = (label, url, "ok" if ok else "failed")
        self.counts[result] = self.counts.get(result, 0) + 1
        if self._replicas.get(key) is not state:
            return  # no longer configured, or configured anew meanwhile
        if ok == state.healthy:
            state.streak = 0
            return
        state.streak += 1
        if state.streak >= (check.rise if ok else check.fall):
            state.healthy = ok
            state.streak = 0
            apply_verdicts(self._snapshot(), {(label, url): ok})
            if self._publish is not None:
                with contextlib.suppress(Exception):
                    await self._publish(self.verdicts())

    async def probe(self, url: str, check: HealthCheckConfig) -> bool:
        """One check of the replica at `url`: True when it answers a healthy status in time."""
        upstream = parse_upstream(url)
        context = None
        if upstream.scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        host = check.host or upstream.authority
        request = (
            f"GET {check.path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
            f"User-Agent: {self.user_agent}\r\nAccept: */*\r\n\r\n"
        ).encode("latin-1")
        writer = None
        try:
            async with asyncio.timeout(check.timeout):
                reader, writer = await asyncio.open_connection(
                    upstream.host,
                    upstream.port,
                    ssl=context,
                    server_hostname=upstream.host if context is not None else None,
                )
                writer.write(request)
                line = await reader.readline()
            status = int(line.split(b" ", 2)[1])
        except (OSError, TimeoutError, ValueError, IndexError, ssl.SSLError):
            return False
        finally:
            if writer is not None:
                writer.close()
        if check.statuses:
            return status in check.statuses
        return 200 <= status < 400


def apply_verdicts(snapshot: Snapshot, verdicts: Verdicts) -> None:
    """Set each replica's check verdict (a worker's own, or one a sibling sent)."""
    by_label = {s.label: s for s in snapshot.services if s.config.health_check is not None}
    for (label, url), healthy in verdicts.items():
        service = by_label.get(label)
        if service is None:
            continue
        replicas = service.replicas
        for replica in replicas.replicas:
            if replica.url == url and replica.check_up != healthy:
                replicas.set_checked(replica.index, healthy)


def verdicts_to_wire(verdicts: Verdicts) -> list[list[object]]:
    return [[label, url, healthy] for (label, url), healthy in verdicts.items()]


def verdicts_from_wire(data: object) -> Verdicts:
    found: Verdicts = {}
    if isinstance(data, list):
        for item in data:
            if (
                isinstance(item, list)
                and len(item) == 3
                and isinstance(item[0], str)
                and isinstance(item[1], str)
                and isinstance(item[2], bool)
            ):
                found[(item[0], item[1])] = item[2]
    return found
