"""A fixed-rate (open-loop) HTTP/1.1 load generator that records every request's latency.

wrk sends the next request on a connection only when the previous answer is in:
when the server stalls for 20 ms, wrk waits too, sends nothing meanwhile, and
reports one slow request per connection instead of the hundreds that a steady
stream of clients would have seen (coordinated omission). Here the requests are
due at fixed times (`rate` per second) whatever the server does; a request due
while every connection is busy waits for one, and that wait counts.

Each millisecond tick issues the requests that fell due since the previous tick;
a request's latency runs from the tick that issued it to the last byte of its
answer. The generator's own lateness (the tick after the due time, from timer
granularity and its CPU) is kept apart (`late`), not charged to the server.
"""

from __future__ import annotations

import asyncio
import math
import time
from array import array
from collections import deque
from dataclasses import dataclass, field
from typing import cast


@dataclass
class Result:
    rate: float
    seconds: float
    connections: int
    issued: array[float] = field(default_factory=lambda: array("d"))  # tick that issued it
    sent: array[float] = field(default_factory=lambda: array("d"))  # written to a socket
    done: array[float] = field(default_factory=lambda: array("d"))  # answer complete
    late: array[float] = field(default_factory=lambda: array("d"))  # issued - due
    failed: int = 0  # not 200, connection lost or refused
    unanswered: int = 0  # still waiting at the end
    lost_connections: int = 0
    statuses: dict[int, int] = field(default_factory=dict)

    def latencies(self) -> list[float]:
        return [d - i for i, d in zip(self.issued, self.done, strict=True)]


class _Conn(asyncio.Protocol):
    def __init__(self, gen: Generator) -> None:
        self.gen = gen
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.busy: tuple[float, float, float] | None = None  # (issued, sent, late)
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.busy is not None:
            self.gen.result.failed += 1
            self.busy = None

    def send(self, issued: float, late: float) -> None:
        assert self.transport is not None
        self.busy = (issued, time.perf_counter(), late)
        self.transport.write(self.gen.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.busy is not None:
            size = _response_size(self.buffer)
            if size is None:
                return
            status = int(self.buffer[9:12])
            del self.buffer[:size]
            issued, sent, late = self.busy
            self.busy = None
            self.gen.answered(self, status, issued, sent, late)


def _response_size(buffer: bytearray) -> int | None:
    """Bytes of the first complete response in `buffer` (Content-Length or chunked)."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).lower()
    body_start = end + 4
    marker = head.find(b"\r\ncontent-length:")
    if marker >= 0:
        value_end = head.find(b"\r\n", marker + 2)
        length = int(head[marker + 17 : value_end if value_end >= 0 else len(head)])
        total = body_start + length
        return total if len(buffer) >= total else None
    if b"\r\ntransfer-encoding: chunked" in head:
        tail = buffer.find(b"\r\n0\r\n\r\n", body_start - 2)
        return tail + 7 if tail >= 0 else None
    return body_start


class Generator:
    def __init__(self, host: str, port: int, path: str, connections: int) -> None:
        self.host = host
        self.port = port
        self.request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
        self.connections = connections
        self.conns: list[_Conn] = []
        self.idle: deque[_Conn] = deque()
        self.waiting: deque[tuple[float, float]] = deque()  # (issued, late)
        self.result = Result(0.0, 0.0, connections)
        self.recording = False

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(self.connections):
            _, conn = await loop.create_connection(lambda: _Conn(self), self.host, self.port)
            self.conns.append(conn)
            self.idle.append(conn)

    def answered(self, conn: _Conn, status: int, issued: float, sent: float, late: float) -> None:
        now = time.perf_counter()
        if self.recording:
            result = self.result
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if status != 200:
                result.failed += 1
            else:
                result.issued.append(issued)
                result.sent.append(sent)
                result.done.append(now)
                result.late.append(late)
        self._next(conn)

    def _next(self, conn: _Conn) -> None:
        if conn.lost:
            return
        if self.waiting:
            issued, late = self.waiting.popleft()
            conn.send(issued, late)
        else:
            self.idle.append(conn)

    def issue(self, issued: float, late: float) -> None:
        while self.idle:
            conn = self.idle.popleft()
            if not conn.lost:
                conn.send(issued, late)
                return
        self.waiting.append((issued, late))

    async def run(self, rate: float, seconds: float, *, record: bool = True) -> Result:
        """Send `rate` requests a second for `seconds`; then wait (up to 5 s) for answers."""
        self.result = Result(rate, seconds, self.connections)
        self.recording = record
        interval = 1.0 / rate
        total = int(rate * seconds)
        start = time.perf_counter()
        due_index = 0
        while due_index < total:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            while due_index < total and start + due_index * interval <= now:
                self.issue(now, now - (start + due_index * interval))
                due_index += 1
        deadline = time.perf_counter() + 5.0
        while time.perf_counter() < deadline and (
            self.waiting or any(c.busy is not None for c in self.conns)
        ):
            await asyncio.sleep(0.005)
        result = self.result
        result.unanswered = len(self.waiting) + sum(1 for c in self.conns if c.busy is not None)
        result.lost_connections = sum(1 for c in self.conns if c.lost)
        self.recording = False
        return result

    def close(self) -> None:
        for conn in self.conns:
            if conn.transport is not None:
                conn.transport.close()


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list (p in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = min(len(sorted_values), max(1, math.ceil(p / 100 * len(sorted_values))))
    return sorted_values[rank - 1]
