"""Real servers on loopback for integration tests, each on its own event-loop thread.

    with LoopThread() as loop_thread:
        upstream = AiohttpUpstream(app, loop_thread)      # an aiohttp app on 127.0.0.1:<free>
        gateway = GatewayProcess... / GatewayThread(config_dict, loop_thread)

Tests talk to them with plain blocking sockets (see `RawClient`), so every
byte on the wire is the test's choice: that is what smuggling and framing
tests need.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httptools
import uvloop
from aiohttp import web
from isolation import package_env

from runmcp_fast.config import config_from_data
from runmcp_fast.gateway import Gateway
from runmcp_fast.snapshot import StepSource

T = TypeVar("T")


class LoopThread:
    """A uvloop event loop running in a daemon thread; `run(coro)` waits for a result."""

    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Awaitable[T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        async def wrapper() -> T:
            return fn()

        return self.run(wrapper(), timeout)

    def close(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self.run(cancel_all(), 10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()

    def __enter__(self) -> LoopThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncioLoopThread(LoopThread):
    """asyncio's own (selector) event loop in a thread, where LoopThread runs uvloop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()


class AiohttpUpstream:
    """An aiohttp app served on 127.0.0.1 (free port) in `loop_thread`."""

    def __init__(self, app: web.Application, loop_thread: LoopThread, port: int = 0) -> None:
        self.loop_thread = loop_thread
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)

        async def start() -> int:
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", port)
            await site.start()
            server = site._server
            assert server is not None
            return int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]

        self.port = loop_thread.run(start())
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.loop_thread.run(self.runner.cleanup())


class GatewayThread:
    """A `Gateway` on `loop_thread`, from config data (a dict as the YAML would give).

    Listeners default to one on 127.0.0.1 with a free port; `port` is it.
    """

    def __init__(
        self,
        data: dict[str, Any],
        loop_thread: LoopThread,
        base_dir: str = ".",
        steps: StepSource | None = None,
    ) -> None:
        data = dict(data)
        data.setdefault("listeners", [{"address": "127.0.0.1:0"}])
        self.loop_thread = loop_thread
        self.config = config_from_data(data, source="<test>", base_dir=base_dir)
        self.gateway = Gateway(self.config, source="<test>", steps=steps)
        loop_thread.run(self.gateway.start())
        self.addresses = self.gateway.addresses
        first = self.addresses[0]
        self.port = int(first.rsplit(":", 1)[1]) if not first.startswith("unix:") else 0

    def stop(self, drain_timeout: float | None = None) -> None:
        self.loop_thread.run(self.gateway.stop(drain_timeout), timeout=60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Bound, never listening: held until the process ends (one descriptor a call).
_REFUSING: list[socket.socket] = []


def refused_port() -> int:
    """A loopback port that refuses connections for the rest of the run: an upstream
    that is down. A socket is bound to it and never listens, so a connect gets a reset
    and nothing else can take the port. (free_port()'s port is free again at once: a
    gateway's own listener, bound to port 0 next, could get it, and a request "to the
    dead upstream" went round the gateway itself until its head outgrew 16 KB: a 431.)"""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    _REFUSING.append(s)
    return int(s.getsockname()[1])


class RawClient:
    """A blocking socket speaking bytes, with helpers to read whole responses."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""

    @classmethod
    def from_socket(cls, sock: socket.socket) -> RawClient:
        """A client on an already connected socket (Unix, TLS, IPv6)."""
        client = cls.__new__(cls)
        client.sock = sock
        client.buffer = b""
        return client

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_some(self) -> bytes:
        data = self.sock.recv(65536)
        self.buffer += data
        return data

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            if not self.recv_some():
                raise ConnectionError(f"closed before {marker!r}; got {self.buffer[:500]!r}")
        head, _, self.buffer = self.buffer.partition(marker)
        return head + marker

    def read_exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            if not self.recv_some():
                raise ConnectionError(f"closed after {len(self.buffer)} of {n} bytes")
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def read_response(self, head_request: bool = False) -> tuple[int, dict[str, str], bytes]:
        """One response: status, headers (lower-case names; repeated ones joined), body."""
        head = self.read_until(b"\r\n\r\n").decode("latin-1")
        lines = head.split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                key = name.strip().lower()
                headers[key] = (
                    f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
                )
        if head_request or status in (204, 304) or 100 <= status < 200:
            return status, headers, b""
        if "content-length" in headers:
            return status, headers, self.read_exactly(int(headers["content-length"]))
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size_line = self.read_until(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    self.read_until(b"\r\n")
                    return status, headers, body
                body += self.read_exactly(size)
                self.read_exactly(2)
        return status, headers, self.read_to_close()

    def read_to_close(self) -> bytes:
        while self.recv_some():
            pass
        data, self.buffer = self.buffer, b""
        return data

    def is_closed(self, wait: float = 2.0) -> bool:
        """True when the peer closed (EOF or reset) within `wait` seconds."""
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
        finally:
            self.sock.settimeout(10.0)
        if data:
            self.buffer += data
            return False
        return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll `predicate` until it is true (True) or `timeout` seconds pass (its last value)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


async def wait_until_async(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """`wait_until` for a coroutine on the loop whose callbacks make `predicate` true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.005)
    return predicate()


# -- raw upstreams: every byte of the response is the test's --------------------------


class RawRequest:
    """One request a `RawUpstream` has read; its handler answers through it."""

    def __init__(self, conn: _RawConnection, number: int) -> None:
        self.conn = conn
        self.connection = conn.index  # 1-based: which connection of the upstream
        self.number = number  # 1-based: which request on that connection
        self.method = ""
        self.path = ""
        self.headers: dict[str, str] = {}
        self.body = b""

    def write(self, data: bytes) -> None:
        transport = self.conn.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def close(self) -> None:
        """Close the connection (FIN after what was written)."""
        if self.conn.transport is not None:
            self.conn.transport.close()

    def reset(self) -> None:
        """Close the connection with a TCP RST (SO_LINGER 0), dropping unsent bytes."""
        transport = self.conn.transport
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()


RawHandler = Callable[[RawRequest], Awaitable[None]]


class _RawConnection(asyncio.Protocol):
    def __init__(self, upstream: RawUpstream) -> None:
        self.upstream = upstream
        self.index = 0
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.count = 0
        self.current: RawRequest | None = None
        self.parts: list[bytes] = []
        self.queue: asyncio.Queue[RawRequest] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        upstream = self.upstream
        upstream.connections += 1
        self.index = upstream.connections
        upstream.open.add(self)
        self.task = asyncio.get_running_loop().create_task(self._serve())

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.upstream.errors.append(exc)
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.upstream.open.discard(self)
        self.upstream.closed_connections += 1
        if self.task is not None:
            self.task.cancel()

    def on_message_begin(self) -> None:
        self.count += 1
        self.current = RawRequest(self, self.count)
        self.parts = []

    def on_url(self, url: bytes) -> None:
        assert self.current is not None
        self.current.path += url.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.current is not None
        self.current.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.parts.append(body)

    def on_message_complete(self) -> None:
        req = self.current
        assert req is not None
        req.method = self.parser.get_method().decode("latin-1")
        req.body = b"".join(self.parts)
        self.upstream.requests.append(req)
        self.queue.put_nowait(req)

    async def _serve(self) -> None:
        while True:
            req = await self.queue.get()
            try:
                await self.upstream.handler(req)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a broken handler must show in the test
                self.upstream.errors.append(exc)
                if self.transport is not None:
                    self.transport.abort()
                return


class RawUpstream:
    """An HTTP/1.1 upstream on asyncio.Protocol + httptools, on 127.0.0.1 (free port).

    `handler(request)` is awaited for each request, one at a time per
    connection, and writes the response bytes itself (`request.write`), so a
    test can send anything: partial bodies, garbage, a close without a response.
    Counters: `connections` opened, `closed_connections`, `open` (live ones),
    `requests` (every request read, in order).
    """

    def __init__(self, handler: RawHandler, loop_thread: LoopThread) -> None:
        self.handler = handler
        self.loop_thread = loop_thread
        self.connections = 0
        self.closed_connections = 0
        self.open: set[_RawConnection] = set()
        self.requests: list[RawRequest] = []
        self.errors: list[BaseException] = []
        self._server: asyncio.AbstractServer | None = None

        async def start() -> int:
            loop = asyncio.get_running_loop()
            self._server = server = await loop.create_server(
                lambda: _RawConnection(self), "127.0.0.1", 0
            )
            return int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]

        self.port = loop_thread.run(start())
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        async def stop() -> None:
            server = self._server
            if server is None:
                return
            server.close()
            for conn in tuple(self.open):
                if conn.transport is not None:
                    conn.transport.abort()
            await asyncio.sleep(0)
            await server.wait_closed()

        self.loop_thread.run(stop())


def http_response(
    body: bytes = b"",
    status: int = 200,
    headers: tuple[tuple[str, str], ...] = (),
    reason: str = "OK",
) -> bytes:
    """A complete HTTP/1.1 response with Content-Length."""
    lines = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def wait_event(event: threading.Event, timeout: float = 10.0) -> bool:
    """Await a threading.Event set by the test thread (polled; bounded)."""
    deadline = time.monotonic() + timeout
    while not event.is_set() and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    return event.is_set()


class Harness:
    """Upstreams, gateways and clients for one test; `close()` ends them all.

    Upstreams run on one loop thread and gateways on another, so a slow
    handler never delays the gateway's callbacks.
    """

    def __init__(self) -> None:
        self.upstream_loop = LoopThread()
        self.gateway_loop = LoopThread()
        self._clients: list[RawClient] = []
        self._gateways: list[GatewayThread] = []
        self._upstreams: list[AiohttpUpstream | RawUpstream] = []

    def aiohttp(self, app: web.Application) -> AiohttpUpstream:
        upstream = AiohttpUpstream(app, self.upstream_loop)
        self._upstreams.append(upstream)
        return upstream

    def raw(self, handler: RawHandler) -> RawUpstream:
        upstream = RawUpstream(handler, self.upstream_loop)
        self._upstreams.append(upstream)
        return upstream

    def gateway(
        self, data: dict[str, Any], base_dir: str = ".", steps: StepSource | None = None
    ) -> GatewayThread:
        gateway = GatewayThread(data, self.gateway_loop, base_dir, steps)
        self._gateways.append(gateway)
        return gateway

    def client(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> RawClient:
        client = RawClient(port, host, timeout)
        self._clients.append(client)
        return client

    def adopt(self, client: RawClient) -> RawClient:
        """Close `client` with the rest (for clients made another way)."""
        self._clients.append(client)
        return client

    def close(self) -> None:
        try:
            for client in self._clients:
                client.close()
            for gateway in self._gateways:
                gateway.stop(drain_timeout=2.0)
            for upstream in self._upstreams:
                upstream.close()
        finally:
            self.gateway_loop.close()
            self.upstream_loop.close()


# -- the gateway as a process (`runmcp-fast serve`) -----------------------------------


def serve_command() -> list[str]:
    """The installed `runmcp-fast serve` (run it with `env=package_env()`: the script
    imports whichever runmcp_fast the environment finds first)."""
    script = Path(sys.executable).with_name("runmcp-fast")
    if script.exists():
        return [str(script), "serve"]
    return [sys.executable, "-m", "runmcp_fast.cli", "serve"]


def proc_status_kb(pid: int, field: str) -> int:
    """A `/proc/PID/status` field in kB (VmRSS, VmHWM, ...)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class GatewayProcess:
    """`runmcp-fast serve ARGS` in a subprocess, started once its startup line is out.

    stdout and stderr are collected line by line (`stdout_lines`, `stderr_lines`);
    `addresses`/`port` come from the startup line. `stop()` sends SIGTERM and waits.
    `env` (os.environ by default) gets runmcp_fast's directory first on PYTHONPATH.
    """

    def __init__(
        self,
        args: list[str],
        cwd: str | None = None,
        startup_timeout: float = 20.0,
        env: dict[str, str] | None = None,
    ):
        self.proc = subprocess.Popen(
            [*serve_command(), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=package_env(base=env),
        )
        self.pid = self.proc.pid
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout_lines)),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr_lines)),
        ]
        for reader in self._readers:
            reader.daemon = True
            reader.start()
        self.startup_line = ""
        self.addresses: list[str] = []
        self.port = 0
        if not wait_until(
            lambda: (
                self.proc.poll() is not None or any("listening on" in x for x in self.stderr_lines)
            ),
            startup_timeout,
        ):
            self.stop()
            raise RuntimeError(f"the gateway did not start: {self.stderr_lines}")
        started = [x for x in self.stderr_lines if "listening on" in x]
        if started:
            self.startup_line = started[0]
            listed = self.startup_line.split("listening on ", 1)[1].split(";", 1)[0]
            self.addresses = [a.strip() for a in listed.split(",")]
            first = self.addresses[0]
            if not first.startswith("unix:"):
                self.port = int(first.rsplit(":", 1)[1])

    @classmethod
    def from_config(
        cls,
        data: dict[str, Any],
        directory: Path,
        extra: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> GatewayProcess:
        """Write `data` as the config file (JSON is YAML) in `directory` and serve it."""
        data = dict(data)
        data.setdefault("listeners", [{"address": "127.0.0.1:0"}])
        path = directory / "gateway.yaml"
        path.write_text(json.dumps(data), encoding="utf-8")
        return cls(["-c", str(path), *extra], env=env)

    @staticmethod
    def _read(pipe: Any, lines: list[str]) -> None:
        for raw in iter(pipe.readline, b""):
            lines.append(raw.decode("utf-8", "replace").rstrip("\n"))  # noqa: PERF401 - live

    def status_kb(self, field: str) -> int:
        return proc_status_kb(self.pid, field)

    @property
    def rss(self) -> int:
        """Resident set size in bytes, now."""
        return self.status_kb("VmRSS") * 1024

    @property
    def peak_rss(self) -> int:
        """The highest resident set size so far, in bytes."""
        return self.status_kb("VmHWM") * 1024

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        self._close_pipes()
        return code

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM (SIGKILL past `timeout`); the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._close_pipes()
        return self.proc.returncode

    def _close_pipes(self) -> None:
        for reader in self._readers:
            reader.join(5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()

    def __enter__(self) -> GatewayProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- upstreams for the data-plane integration tests ------------------------------------


ECHO_COUNT = web.AppKey("echo_count", list[int])


def echo_app() -> web.Application:
    """An aiohttp app that echoes what it received as JSON; `app[ECHO_COUNT][0]` counts requests.

    The query selects other answers: `respond=chunked` (a chunked body: part0..part4),
    `respond=fixed` (1000 bytes of "x" with a Content-Length, whatever the method),
    `respond=status&code=N` (that status, no body).
    """
    count = [0]

    @web.middleware
    async def counting(request: web.Request, handler: Any) -> web.StreamResponse:
        count[0] += 1
        return await handler(request)

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        respond = request.query.get("respond", "")
        if respond == "chunked":
            response = web.StreamResponse(headers={"Content-Type": "text/plain"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            for i in range(5):
                await response.write(f"part{i},".encode())
            await response.write_eof()
            return response
        if respond == "fixed":
            return web.Response(body=b"x" * 1000, content_type="text/plain")
        if respond == "status":
            code = int(request.query["code"])
            return web.Response(status=code, headers={"ETag": '"v1"', "X-Status": str(code)})
        return web.json_response(
            {
                "method": request.method,
                "path": request.raw_path,
                "version": f"{request.version.major}.{request.version.minor}",
                "headers": [
                    [n.decode("latin-1"), v.decode("latin-1")] for n, v in request.raw_headers
                ],
                "body": body.decode("latin-1"),
                "body_len": len(body),
            }
        )

    app = web.Application(middlewares=[counting], client_max_size=64 * 1024 * 1024)
    app[ECHO_COUNT] = count
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


class RecordingUpstream:
    """A raw HTTP/1.1 upstream that records every byte and request it gets.

    Parsed with httptools; each complete request is answered 200 with a JSON echo
    (method, url, body). `received` is the byte count over all connections and
    `received_by` the same per connection (numbered from 1 as they open);
    `begun`/`requests` count request heads started and requests completed (each
    request records the `connection` it came on). `sentinel()` is a barrier.
    """

    def __init__(self, loop_thread: LoopThread) -> None:
        self.loop_thread = loop_thread
        self.received = 0
        self.received_by: dict[int, int] = {}
        self.connections = 0
        self.begun = 0
        self.requests: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self._transports: set[asyncio.Transport] = set()
        outer = self

        class Conn(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport: asyncio.Transport = transport  # type: ignore[assignment]
                outer._transports.add(self.transport)
                outer.connections += 1
                self.index = outer.connections
                self.parser = httptools.HttpRequestParser(self)
                self.current: dict[str, Any] = {}

            def data_received(self, data: bytes) -> None:
                outer.received += len(data)
                outer.received_by[self.index] = outer.received_by.get(self.index, 0) + len(data)
                try:
                    self.parser.feed_data(data)
                except httptools.HttpParserError as exc:
                    outer.errors.append(str(exc))
                    self.transport.close()

            def connection_lost(self, exc: Exception | None) -> None:
                outer._transports.discard(self.transport)

            def on_message_begin(self) -> None:
                outer.begun += 1
                self.current = {"url": b"", "headers": [], "body": b"", "connection": self.index}

            def on_url(self, url: bytes) -> None:
                self.current["url"] += url

            def on_header(self, name: bytes, value: bytes) -> None:
                self.current["headers"].append((name.decode("latin-1"), value.decode("latin-1")))

            def on_body(self, body: bytes) -> None:
                self.current["body"] += body

            def on_message_complete(self) -> None:
                req = self.current
                req["method"] = self.parser.get_method().decode()
                req["url"] = req["url"].decode("latin-1")
                outer.requests.append(req)
                body = json.dumps(
                    {
                        "method": req["method"],
                        "url": req["url"],
                        "body": req["body"].decode("latin-1"),
                    }
                ).encode()
                self.transport.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
                )

        async def start() -> asyncio.Server:
            return await asyncio.get_running_loop().create_server(Conn, "127.0.0.1", 0)

        self.server = loop_thread.run(start())
        self.port = int(self.server.sockets[0].getsockname()[1])  # type: ignore[index]
        self.url = f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        self.received = 0
        self.received_by.clear()
        self.begun = 0
        self.requests.clear()
        self.errors.clear()

    def sentinel(self, gateway_port: int, path: str) -> None:
        """A barrier: `GET path` through the gateway on a fresh connection, answered.

        The gateway runs every connection on one event loop: whatever it would
        still write upstream for an earlier request is written before it forwards
        a request read later. Once the sentinel's answer is back, this upstream
        has recorded the sentinel (it records a request before answering it), so
        anything sent earlier on the same connection came before it, and bytes on
        another connection show in `received_by`.
        """
        with RawClient(gateway_port) as client:
            client.send(f"GET {path} HTTP/1.1\r\nHost: sentinel.test\r\n\r\n".encode())
            status, _, body = client.read_response()
        assert status == 200, (status, body)
        assert json.loads(body)["url"] == path, body

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            for transport in tuple(self._transports):
                transport.close()
            await asyncio.sleep(0)

        self.loop_thread.run(stop())
