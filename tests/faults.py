"""Faults on loopback: a TCP proxy that misbehaves on demand, and upstreams that count.

    proxy = FaultProxy(upstream.port, loop_thread)     # 127.0.0.1:<free> -> the upstream
    proxy.set("blackhole")                             # or refuse, delay, reset_after, ...

Modes (what a connection accepted from now on gets; `refuse` takes effect at once):

| mode | what the gateway sees |
| --- | --- |
| `pass` | the upstream, byte for byte |
| `delay` | the response held `seconds` before its first byte |
| `blackhole` | accepted, read, never answered, never closed |
| `refuse` | nothing listens: connect refused (RST to the SYN) |
| `reset_after` | `n` bytes of the response, then a TCP RST |
| `half_close` | `n` bytes of the response, then a FIN (write side only; it keeps reading) |
| `drip` | the response `n` bytes at a time, `seconds` apart |

No package on PyPI does these on asyncio with every byte counted (toxiproxy
needs its Go server, absent from Debian's packages), so this is ~150 lines.

`StatusUpstream` answers every request with the status it is set to (and a
health path with its own), recording each request (method, path, body) and
counting them: a retry or a duplicate shows in its counts.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from dataclasses import dataclass, field

import httptools
from servers import LoopThread


class FaultProxy:
    """A TCP proxy on 127.0.0.1 in front of `target_port`, misbehaving per `set()`."""

    def __init__(self, target_port: int, loop_thread: LoopThread) -> None:
        self.target_port = target_port
        self.loop_thread = loop_thread
        self.mode = "pass"
        self.n = 0
        self.seconds = 0.0
        self.accepted = 0  # connections accepted so far
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = loop_thread.run(self._listen(0))
        self.url = f"http://127.0.0.1:{self.port}"

    async def _listen(self, port: int) -> int:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", port, reuse_address=True
        )
        return int(self._server.sockets[0].getsockname()[1])

    def set(self, mode: str, *, n: int = 0, seconds: float = 0.0) -> None:
        """The mode for connections accepted from now on (`refuse`: at once)."""
        assert mode in ("pass", "delay", "blackhole", "refuse", "reset_after", "half_close", "drip")

        async def apply() -> None:
            listening = self._server is not None
            if mode == "refuse" and listening:
                assert self._server is not None
                self._server.close()
                await self._server.wait_closed()
                self._server = None
            elif mode != "refuse" and not listening:
                await self._listen(self.port)
            self.mode, self.n, self.seconds = mode, n, seconds

        self.loop_thread.run(apply())

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        mode, n, seconds = self.mode, self.n, self.seconds
        try:
            if mode == "blackhole":
                while await reader.read(65536):
                    pass
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            self._writers.add(up_writer)
            forward = asyncio.ensure_future(self._pump(reader, up_writer))
            try:
                await self._respond(up_reader, writer, mode, n, seconds)
            finally:
                forward.cancel()
                up_writer.close()
                self._writers.discard(up_writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            if not writer.is_closing():
                writer.close()

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except ConnectionError:
            pass

    @staticmethod
    async def _respond(
        up: asyncio.StreamReader, client: asyncio.StreamWriter, mode: str, n: int, seconds: float
    ) -> None:
        sent = 0
        first = True
        while True:
            data = await up.read(n if mode == "drip" and n else 65536)
            if not data:
                if client.can_write_eof():
                    client.write_eof()
                return
            if first and mode == "delay":
                await asyncio.sleep(seconds)
            first = False
            if mode in ("reset_after", "half_close") and sent + len(data) >= n:
                client.write(data[: n - sent])
                await client.drain()
                if mode == "reset_after":
                    sock = client.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    client.transport.abort()
                else:
                    client.write_eof()
                    await asyncio.sleep(3600)  # keeps reading what the gateway sends
                return
            client.write(data)
            sent += len(data)
            await client.drain()
            if mode == "drip":
                await asyncio.sleep(seconds)

    def close(self) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            for writer in tuple(self._writers):
                writer.transport.abort()
            for task in tuple(self._tasks):
                task.cancel()
            await asyncio.sleep(0)

        self.loop_thread.run(stop())


@dataclass
class Seen:
    """One request a StatusUpstream read."""

    method: str
    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class StatusUpstream:
    """An HTTP/1.1 upstream answering `status` to every request (with `name` in the body)
    and `health_status` to `health_path`; every request recorded in `seen`."""

    def __init__(
        self,
        name: str,
        loop_thread: LoopThread,
        status: int = 200,
        *,
        health_path: str = "/healthz",
        headers: tuple[tuple[str, str], ...] = (),
        body_size: int = 0,
    ) -> None:
        self.name = name
        self.status = status
        self.health_status = 200
        self.health_path = health_path
        self.headers = headers
        self.body_size = body_size  # a larger body: `name`, padded with "." to this size
        self.seen: list[Seen] = []
        self.health_checks: list[Seen] = []
        self.connections = 0
        self._lock = threading.Lock()
        outer = self

        class Conn(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport: asyncio.Transport = transport  # type: ignore[assignment]
                self.parser = httptools.HttpRequestParser(self)
                outer.connections += 1
                self.url = b""
                self.body = b""
                self.headers: dict[str, str] = {}

            def data_received(self, data: bytes) -> None:
                try:
                    self.parser.feed_data(data)
                except httptools.HttpParserError:
                    self.transport.close()

            def on_message_begin(self) -> None:
                self.url, self.body, self.headers = b"", b"", {}

            def on_url(self, url: bytes) -> None:
                self.url += url

            def on_header(self, name: bytes, value: bytes) -> None:
                self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

            def on_body(self, body: bytes) -> None:
                self.body += body

            def on_message_complete(self) -> None:
                seen = Seen(
                    self.parser.get_method().decode(),
                    self.url.decode("latin-1"),
                    self.body,
                    self.headers,
                )
                health = seen.path == outer.health_path
                with outer._lock:
                    (outer.health_checks if health else outer.seen).append(seen)
                status = outer.health_status if health else outer.status
                body = outer.name.encode()
                if outer.body_size > len(body):
                    body += b"." * (outer.body_size - len(body))
                extra = "".join(f"{k}: {v}\r\n" for k, v in outer.headers).encode("latin-1")
                self.transport.write(
                    b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n%b\r\n%b"
                    % (status, len(body), extra, body)
                )

        async def start() -> asyncio.Server:
            return await asyncio.get_running_loop().create_server(Conn, "127.0.0.1", 0)

        self.loop_thread = loop_thread
        self.server = loop_thread.run(start())
        self.port = int(self.server.sockets[0].getsockname()[1])  # type: ignore[index]
        self.url = f"http://127.0.0.1:{self.port}"

    def count(self, method: str | None = None) -> int:
        with self._lock:
            return sum(1 for s in self.seen if method is None or s.method == method)

    def bodies(self, method: str = "POST") -> list[bytes]:
        with self._lock:
            return [s.body for s in self.seen if s.method == method]

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            await asyncio.sleep(0)

        self.loop_thread.run(stop())
