"""The Redis side of limit-count and limit-req (`policy: redis`), one per limit per worker.

The request path never awaits Redis (unless `sync_interval: 0`). A limit step
admits against its local view (plugins/steps/limits.pxi) and marks the keys it
counted; a task of this module, every `sync_interval`, takes those deltas and
pushes them in one pipelined round, reading back the cluster's totals, which
the step's slots adopt:

- limit-count: `INCRBY <key>:<window> delta` (+ `PEXPIRE`, and a `GET` of the
  window before for a sliding window);
- limit-req: a script adds the emission the worker admitted to the key's TAT
  (`max(TAT, since) + delta`, `since` when the first of those requests came).

`sync_interval: 0` decides each request with one script call (`exact`): the
step answers `Wait` and the request waits for Redis.

When a round (or an exact call) fails, the step is "down" until one succeeds:
its `on_redis_down` decides meanwhile (builtin/limits.py); an exact limit
does not call Redis for a second after a failure (the first request after it
probes). Connections are made lazily, on the event loop of the first request.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import weakref
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisError

if TYPE_CHECKING:
    from runmcp_fast.plugins._steps import LimitStep

# Errors that mean "Redis can not be reached or did not answer": the fallback decides.
UNAVAILABLE = (RedisError, OSError, asyncio.TimeoutError, ssl.SSLError)

# limit-count, exact: admit `cost` if the (sliding) window's count leaves room, atomically.
# KEYS: this window's key, the previous window's. ARGV: cost, limit, window ms, ms elapsed
# in the window, 1 for sliding. Returns {admitted, the count with it (or without), this
# window's count, the previous window's} (the last two: for a refusal's Retry-After).
_COUNT_EXACT = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local w = tonumber(ARGV[3])
local est = cur
local prev = 0
if ARGV[5] == '1' then
  prev = tonumber(redis.call('GET', KEYS[2]) or '0')
  est = cur + math.floor((prev * (w - tonumber(ARGV[4])) + w - 1) / w)
end
local cost = tonumber(ARGV[1])
if est + cost > tonumber(ARGV[2]) then
  return {0, est, cur, prev}
end
redis.call('INCRBY', KEYS[1], cost)
redis.call('PEXPIRE', KEYS[1], w * 2)
return {1, est + cost}
"""

# limit-req, delayed sync: the worker's emission added to the TAT. ARGV: since (µs), the
# emission (µs), expiry slack (ms). Returns the new TAT (µs, as a string: exact past 2^53).
_REQ_PUSH = """
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local since = tonumber(ARGV[1])
if tat < since then tat = since end
tat = tat + tonumber(ARGV[2])
local ttl = math.ceil((tat - since) / 1000) + tonumber(ARGV[3])
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', ttl)
return string.format('%.0f', tat)
"""

# limit-req, exact: GCRA in one call. ARGV: now (µs), the request's emission (µs),
# tolerance tau + T (µs). Returns {admitted, TAT after it (or as it stands)}.
_REQ_EXACT = """
local now = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local after = tat + tonumber(ARGV[2])
if after - now > tonumber(ARGV[3]) then
  return {0, string.format('%.0f', tat)}
end
redis.call('SET', KEYS[1], string.format('%.0f', after), 'PX', math.ceil((after - now) / 1000) + 1000)
return {1, string.format('%.0f', after)}
"""

_PROBE_EVERY = 1.0  # seconds: an exact limit's pause after a failure; a down sync's probe


class RedisConnection:
    """How to reach Redis: a URL (redis://, rediss://, unix://), a cluster, or Sentinel."""

    def __init__(
        self,
        *,
        url: str,
        cluster: bool,
        sentinels: list[tuple[str, int]],
        sentinel_master: str,
        username: str | None,
        password: str | None,
        ssl_options: dict[str, Any],
        timeout: float,
    ) -> None:
        self.url = url
        self.cluster = cluster
        self.sentinels = sentinels
        self.sentinel_master = sentinel_master
        self.username = username
        self.password = password
        self.ssl_options = ssl_options
        self.timeout = timeout

    def client(self) -> Any:
        """A new client (its own connection pool), for the running event loop."""
        common: dict[str, Any] = {
            "username": self.username,
            "password": self.password,
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.timeout,
        }
        if self.sentinels:
            sentinel = Sentinel(
                self.sentinels,
                sentinel_kwargs={
                    "socket_timeout": self.timeout,
                    "socket_connect_timeout": self.timeout,
                },
                **common,
                **self.ssl_options,
            )
            return sentinel.master_for(self.sentinel_master)
        if self.cluster:
            return RedisCluster.from_url(self.url, **common, **self.ssl_options)
        return aioredis.Redis.from_url(self.url, **common, **self.ssl_options)


class RedisSync:
    """One limit's link to Redis in one worker: the sync task, the exact calls."""

    def __init__(
        self,
        connection: RedisConnection,
        *,
        kind: str,
        prefix: bytes,
        interval: float,
        window: int = 0,
        sliding: bool = False,
        limit: int = 0,
        emission_us: int = 0,
        tolerance_us: int = 0,
    ) -> None:
        self.connection = connection
        self.kind = kind  # "count" or "req"
        self.prefix = prefix
        self.interval = interval
        self.window = window
        self.sliding = sliding
        self.limit = limit
        self.emission_us = emission_us
        self.tolerance_us = tolerance_us
        self.started = False
        self._client: Any = None
        self._scripts: dict[str, Any] = {}
        self._task: asyncio.Task[None] | None = None
        self._paused_until = 0.0  # exact: no call before then (monotonic), after a failure

    # -- keys ----------------------------------------------------------------------------

    def count_keys(self, key: bytes, window: int) -> tuple[bytes, bytes]:
        """(this window's key, the previous window's): one hash tag, so one cluster slot."""
        tagged = self.prefix + b"{" + key + b"}:"
        return tagged + str(window).encode(), tagged + str(window - 1).encode()

    def req_key(self, key: bytes) -> bytes:
        return self.prefix + b"{" + key + b"}"

    # -- the sync task -------------------------------------------------------------------

    def start(self, step: LimitStep) -> None:
        """Start syncing `step` (on its first request, on the running loop)."""
        self.started = True
        self._task = asyncio.get_running_loop().create_task(self._run(weakref.ref(step)))

    async def _run(self, ref: weakref.ReferenceType[LimitStep]) -> None:
        # Every round takes a strong reference only while it runs: a step no snapshot
        # holds any more is collected, and its task ends.
        every = self.interval if self.interval > 0 else _PROBE_EVERY
        try:
            while True:
                await asyncio.sleep(every)
                step = ref()
                if step is None:
                    return
                await self._round(step)
                del step
        finally:
            await self.close()

    async def _round(self, step: LimitStep) -> None:
        batch = step.take_dirty()
        try:
            if not batch:
                if step.down:
                    await self._get_client().ping()
                    self._paused_until = 0.0  # (exact: Redis is asked again at once)
                    step.sync_ok()
                return
            totals = await self._push(batch)
        except UNAVAILABLE as exc:
            step.failed_sync(exc, batch)
            await self._reset()
            return
        self._paused_until = 0.0
        step.pushed(batch, totals)

    async def _push(self, batch: list[tuple[int, bytes, int, int, int]]) -> list[Any]:
        client = self._get_client()
        if self.kind == "count":
            pipe = client.pipeline(transaction=False)
            ttl = self.window * 2000
            for _h, key, window, units, _since in batch:
                current, previous = self.count_keys(key, window)
                pipe.incrby(current, units)
                pipe.pexpire(current, ttl)
                if self.sliding:
                    pipe.get(previous)
            replies = await pipe.execute()
            width = 3 if self.sliding else 2
            return [
                (
                    int(replies[i * width]),
                    int(replies[i * width + 2] or 0) if self.sliding else None,
                )
                for i in range(len(batch))
            ]
        script = self._script(_REQ_PUSH)
        pipe = client.pipeline(transaction=False)
        for _h, key, _window, emission, since in batch:
            await script(keys=[self.req_key(key)], args=[since, emission, 1000], client=pipe)
        return [int(tat) for tat in await pipe.execute()]

    # -- exact (sync_interval 0) ---------------------------------------------------------

    def usable(self) -> bool:
        """Whether to ask Redis now (not in the pause after a failure)."""
        return time.monotonic() >= self._paused_until

    async def exact(self, step: LimitStep, conn: Any, req: Any, key: bytes, cost: int) -> Any:
        """Decide one request in Redis; the request's answer (None: admitted)."""
        now_us = time.time_ns() // 1000
        try:
            client = self._get_client()
            if self.kind == "count":
                window_us = self.window * 1_000_000
                index, elapsed_us = divmod(now_us, window_us)
                current, previous = self.count_keys(key, index)
                admitted, count, *counts = await self._script(_COUNT_EXACT)(
                    keys=[current, previous],
                    args=[cost, self.limit, self.window * 1000, elapsed_us // 1000,
                          1 if self.sliding else 0],
                    client=client,
                )  # fmt: skip
                left = -(-(window_us - elapsed_us) // 1_000_000)
                if not admitted:
                    # Not simply the window's end: sliding, the previous window's weight
                    # may refuse well past it (the local table's rule, LimitCountStep._retry).
                    current_count, previous_count = (int(c) for c in counts)
                    wait = self._count_retry(
                        current_count, previous_count, cost, elapsed_us, window_us
                    )
                    return step.exact_done(req, False, 0, wait)
                remaining = max(self.limit - int(count), 0)
                return step.exact_done(req, True, remaining, left)
            emission = cost * self.emission_us
            admitted, tat = await self._script(_REQ_EXACT)(
                keys=[self.req_key(key)],
                args=[now_us, emission, self.tolerance_us],
                client=client,
            )
            tat = int(tat)
            if admitted:
                remaining = (self.tolerance_us - (tat - now_us)) // self.emission_us
                return step.exact_done(req, True, remaining, -(-(tat - now_us) // 1_000_000))
            retry = -(-(tat + emission - now_us - self.tolerance_us) // 1_000_000)
            return step.exact_done(req, False, 0, retry)
        except UNAVAILABLE as exc:
            self._paused_until = time.monotonic() + _PROBE_EVERY
            await self._reset()
            return step.exact_failed(conn, req, exc, cost)

    def _count_retry(
        self, value: int, prev: int, cost: int, elapsed_us: int, window_us: int
    ) -> int:
        """Seconds until `cost` more units could be admitted (as LimitCountStep._retry)."""
        left_us = window_us - elapsed_us
        wait_us = left_us
        if self.sliding:
            if value + cost <= self.limit and prev:
                # This window's weight of `prev` must shrink to `limit - value - cost`.
                wait_us = window_us - (self.limit - value - cost) * window_us // prev - elapsed_us
            elif value:
                # The next window, with this one's count as its `prev`.
                need = window_us - max(self.limit - cost, 0) * window_us // value
                wait_us = left_us + max(need, 0)
        return max(-(-wait_us // 1_000_000), 1)

    # -- the client ----------------------------------------------------------------------

    def _get_client(self) -> Any:
        if self._client is None:
            self._client = self.connection.client()
            self._scripts = {}
        return self._client

    def _script(self, source: str) -> Any:
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = self._get_client().register_script(source)
        return script

    async def _reset(self) -> None:
        """After a failure: a new client next time (a cluster's or Sentinel's view anew)."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    async def close(self) -> None:
        await self._reset()
