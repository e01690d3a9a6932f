"""Real MCP servers and the official SDK client, for the gateway's MCP integration tests.

Upstreams (`tests/mcp_upstream_server.py`, one process per replica, free ports)::

    with mcp_replicas(2) as replicas:          # or the `mcp_upstreams` fixture
        replicas.urls                          # ["http://127.0.0.1:<port>/mcp", ...]
        replicas[1].kill()                     # SIGKILL mid-test; .restart() brings it back

The SDK client, with the protocol revision pinned and the traffic recorded::

    async with mcp_client(url, "2025-06-18") as conn:
        await conn.text("echo", text="hi")     # "hi"
        conn.session_id, conn.notifications, conn.exchanges

The npm reference server (`@modelcontextprotocol/server-everything`, Streamable
HTTP), installed once into `<repo>/.cache/npm`: `everything_server()` or the
`server_everything` fixture, which skips when node/npm or the install is
missing.

Fixtures: a root conftest.py can load them all (`pytest_plugins =
["mcp_fixtures"]`); a test module that imports this one must not name it in
its own `pytest_plugins` (pytest then refuses the already imported module), so
it binds the fixtures it uses instead: `mcp_upstreams = mcp_fixtures.mcp_upstreams`.
Async tests run on anyio (`@pytest.mark.anyio`, with an `anyio_backend`
fixture returning "asyncio").
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp.client._probe import negotiate_auto
from mcp.client.session import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

__all__ = [
    "EVERYTHING_PACKAGE",
    "PROTOCOL_VERSIONS",
    "EverythingServer",
    "EverythingUnavailable",
    "Exchange",
    "McpConn",
    "Replica",
    "ReplicaSet",
    "big_text",
    "ensure_everything",
    "everything_server",
    "mcp_client",
    "mcp_replicas",
    "mcp_sse_client",
    "mcp_upstreams",
    "server_everything",
    "text_of",
]

TESTS_DIR = Path(__file__).resolve().parent
SERVER_SCRIPT = TESTS_DIR / "mcp_upstream_server.py"
NPM_DIR = TESTS_DIR.parent / ".cache" / "npm"

# Every revision the SDK client can be pinned to, oldest first: the four the
# initialize handshake negotiates, then the per-request (stateless) 2026 one.
PROTOCOL_VERSIONS: tuple[str, ...] = (*HANDSHAKE_PROTOCOL_VERSIONS, *MODERN_PROTOCOL_VERSIONS)

STARTUP_TIMEOUT = 20.0
CLIENT_INFO = types.Implementation(name="runmcp-fast-tests", version="0")

# Mirrors `mcp_upstream_server.big_text` (that file is a script: not imported,
# so importing this module stays free of the server's imports).
_PATTERN = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\n"


def big_text(n: int) -> str:
    """What the upstream's `big` tool answers for `n`."""
    reps, rest = divmod(n, len(_PATTERN))
    return (_PATTERN * reps + _PATTERN[:rest]).decode("ascii")


def text_of(result: types.CallToolResult) -> str:
    """A tool result's text content, joined."""
    return "".join(c.text for c in result.content if isinstance(c, types.TextContent))


# -- processes ------------------------------------------------------------------------


@dataclass
class _Startup:
    done: threading.Event = field(default_factory=threading.Event)
    port: int = 0


class _Process:
    """A child process whose stdout/stderr lines are collected; `READY <port>` marks it up."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self.port = 0
        self._startup = _Startup()

    def spawn(self) -> None:
        # Fresh startup state per process: after a restart the previous one's
        # reader may still be draining (and signalling its EOF).
        self._startup = startup = _Startup()
        self.stdout_lines, self.stderr_lines = [], []
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
        )
        for pipe, lines in (
            (self.proc.stdout, self.stdout_lines),
            (self.proc.stderr, self.stderr_lines),
        ):
            threading.Thread(target=self._read, args=(pipe, lines, startup), daemon=True).start()

    def _read(self, pipe: IO[bytes], lines: list[str], startup: _Startup) -> None:
        for raw in iter(pipe.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            lines.append(line)
            if not startup.port and line.startswith("READY "):
                self.port = startup.port = int(line.split()[1])
                startup.done.set()
        pipe.close()
        startup.done.set()  # EOF: wait_ready tells a death before READY by the port

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        assert self.proc is not None
        if not self._startup.done.wait(timeout) or not self._startup.port:
            self.signal(signal.SIGKILL)
            raise RuntimeError(
                f"{self.argv[1:]} did not start (exit {self.proc.poll()}): "
                + "\n".join(self.stderr_lines[-20:])
            )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def send_signal(self, sig: int) -> None:
        """Send `sig` if the process runs; do not wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def signal(self, sig: int, timeout: float = 10.0) -> int | None:
        """Send `sig` and `reap`."""
        self.send_signal(sig)
        return self.reap(timeout)

    def reap(self, timeout: float = 10.0) -> int | None:
        """Wait for the exit (SIGKILL past `timeout`); the exit code, None if never started."""
        proc = self.proc
        if proc is None:
            return None
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
        return proc.wait()


class Replica(_Process):
    """One `mcp_upstream_server.py --replica NAME` process.

    `kill()` is a crash (SIGKILL, open streams cut), `stop()` a graceful
    SIGTERM; `restart()` serves again on the same port (new process: every
    session it held is gone, so those ids now answer 404).
    """

    def __init__(self, name: str, options: Sequence[str], path: str, legacy_sse: bool) -> None:
        self.name = name
        self.options = list(options)
        self.path = "/sse" if legacy_sse else path
        super().__init__([])

    @property
    def url(self) -> str:
        """The MCP endpoint: `.../mcp` (Streamable HTTP) or `.../sse` (legacy SSE)."""
        return f"http://127.0.0.1:{self.port}{self.path}"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self) -> None:
        self.argv = [sys.executable, str(SERVER_SCRIPT), "--port", str(self.port)]
        self.argv += ["--replica", self.name, *self.options]
        super().spawn()

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    def stop(self, timeout: float = 10.0) -> int | None:
        return self.signal(signal.SIGTERM, timeout)

    def restart(self, timeout: float = STARTUP_TIMEOUT) -> None:
        self.stop()
        self.spawn()
        self.wait_ready(timeout)

    def __repr__(self) -> str:
        return f"Replica({self.name!r}, {self.url}, alive={self.alive})"


class ReplicaSet(Sequence[Replica]):
    """The replicas of one `mcp_replicas` call, in start order."""

    def __init__(self, replicas: list[Replica]) -> None:
        self._replicas = replicas

    def __getitem__(self, index: int) -> Replica:  # type: ignore[override]
        return self._replicas[index]

    def __len__(self) -> int:
        return len(self._replicas)

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self._replicas]

    def by_name(self, name: str) -> Replica:
        for replica in self._replicas:
            if replica.name == name:
                return replica
        raise KeyError(f"no replica {name!r}; have {[r.name for r in self._replicas]}")

    def close(self) -> None:
        """SIGTERM to all at once (each may wait out uvicorn's graceful period), then reap."""
        for replica in self._replicas:
            replica.send_signal(signal.SIGTERM)
        for replica in self._replicas:
            replica.reap()


@contextmanager
def mcp_replicas(
    n: int = 1,
    *,
    names: Sequence[str] | None = None,
    path: str = "/mcp",
    stateless: bool = False,
    json_response: bool = False,
    legacy_sse: bool = False,
    retry_ms: int | None = None,
    any_host: bool = False,
) -> Iterator[ReplicaSet]:
    """Start `n` upstream replicas (named r0, r1, ... unless `names`) on free ports; stop them after.

    Options map to `mcp_upstream_server.py` flags: `stateless`, `json_response`,
    `legacy_sse` (endpoint `/sse`), `retry_ms` (SSE `retry:` in priming events),
    `any_host` (accept any Host/Origin; by default the SDK answers 421 to a Host
    that is not 127.0.0.1/localhost). The processes start in parallel (each
    ~0.6 s, nearly all of it importing the SDK).
    """
    names = list(names) if names is not None else [f"r{i}" for i in range(n)]
    if len(names) != n:
        raise ValueError(f"{n} replicas but {len(names)} names")
    options = ["--path", path]
    options += ["--stateless"] * stateless + ["--json-response"] * json_response
    options += ["--legacy-sse"] * legacy_sse + ["--any-host"] * any_host
    if retry_ms is not None:
        options += ["--retry-ms", str(retry_ms)]
    replicas = ReplicaSet([Replica(name, options, path, legacy_sse) for name in names])
    try:
        for replica in replicas:
            replica.spawn()
        for replica in replicas:
            replica.wait_ready()
        yield replicas
    finally:
        replicas.close()


@pytest.fixture
def mcp_upstreams() -> Iterator[Callable[..., ReplicaSet]]:
    """`mcp_upstreams(n=1, **mcp_replicas options)` -> a started `ReplicaSet`, stopped at teardown."""
    with ExitStack() as stack:

        def start(n: int = 1, **options: Any) -> ReplicaSet:
            return stack.enter_context(mcp_replicas(n, **options))

        yield start


# -- the SDK client -------------------------------------------------------------------


@dataclass(frozen=True)
class Exchange:
    """One HTTP request the SDK client made and the head of its response (names lower-case)."""

    method: str
    url: str
    request_headers: dict[str, str]
    status: int
    response_headers: dict[str, str]


@dataclass
class McpConn:
    """An initialized SDK `ClientSession` and what was seen on its connection.

    `exchanges` lists every HTTP request with its response head (hooks on the
    SDK's own httpx2 client, so this is exactly what it sent); `notifications`
    every server notification delivered (progress, log messages, list
    changes; also those read from the GET stream); `errors` the transport
    failures the SDK reported to its message handler.
    """

    session: ClientSession = field(init=False)
    session_id: str | None = None
    exchanges: list[Exchange] = field(default_factory=list)
    notifications: list[types.ServerNotification] = field(default_factory=list)
    progress: list[tuple[float, float | None, str | None]] = field(default_factory=list)
    errors: list[Exception] = field(default_factory=list)
    _changed: anyio.Event = field(default_factory=anyio.Event)

    @property
    def protocol_version(self) -> str | None:
        return self.session.protocol_version

    def methods(self) -> list[str]:
        """The notifications' methods, in arrival order."""
        return [n.method for n in self.notifications]

    async def call(
        self,
        name: str,
        arguments: dict[str, Any] | None = None,
        *,
        progress: bool = False,
        timeout: float | None = None,
    ) -> types.CallToolResult:
        """`tools/call`; `progress=True` sends a progress token (the SDK only asks when given a callback)."""
        callback = self._on_progress if progress else None
        result = await self.session.call_tool(name, arguments, timeout, callback)
        assert isinstance(result, types.CallToolResult)
        return result

    async def text(self, name: str, **arguments: Any) -> str:
        """Call a tool, its `text_of`; a tool error raises AssertionError."""
        result = await self.call(name, arguments)
        assert not result.is_error, text_of(result)
        return text_of(result)

    async def whoami(self) -> dict[str, Any]:
        """The upstream's `whoami`: replica, session_id, protocol_version, pid."""
        result = await self.call("whoami")
        assert result.structured_content is not None, result
        return result.structured_content

    async def wait_for(
        self, method: str, count: int = 1, timeout: float = 10.0
    ) -> list[types.ServerNotification]:
        """Wait until `count` notifications of `method` arrived; returns them."""
        with anyio.fail_after(timeout):
            while len(seen := [n for n in self.notifications if n.method == method]) < count:
                await self._changed.wait()
        return seen

    # -- SDK callbacks

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, Exception):
            self.errors.append(message)
        elif isinstance(message, types.ServerNotification):
            self.notifications.append(message)
        else:
            return
        self._changed.set()
        self._changed = anyio.Event()

    async def _on_progress(self, progress: float, total: float | None, message: str | None) -> None:
        self.progress.append((progress, total, message))

    async def _on_response(self, response: httpx2.Response) -> None:
        request = response.request
        self.exchanges.append(
            Exchange(
                method=request.method,
                url=str(request.url),
                request_headers={k.lower(): v for k, v in request.headers.items()},
                status=response.status_code,
                response_headers={k.lower(): v for k, v in response.headers.items()},
            )
        )
        if sid := response.headers.get("mcp-session-id"):
            self.session_id = sid


async def _negotiate(session: ClientSession, protocol_version: str | None) -> None:
    if protocol_version in (None, "auto"):
        # What `mcp.Client(url)` does (mode="auto"): probe `server/discover`
        # at 2026-07-28, fall back to `initialize` on any JSON-RPC error.
        await negotiate_auto(session)
        return
    if protocol_version == "legacy":
        await session.initialize()  # offers LATEST_HANDSHAKE_VERSION (2025-11-25)
    elif protocol_version in MODERN_PROTOCOL_VERSIONS:
        await session.discover()
    elif protocol_version in HANDSHAKE_PROTOCOL_VERSIONS:
        # `ClientSession.initialize()` always offers the newest handshake
        # revision; this is the same exchange with an older offer.
        params = types.InitializeRequestParams(
            protocol_version=protocol_version,
            capabilities=types.ClientCapabilities(),
            client_info=CLIENT_INFO,
        )
        result = await session.send_request(
            types.InitializeRequest(params=params), types.InitializeResult
        )
        session.adopt(result)
        await session.send_notification(types.InitializedNotification())
    else:
        raise ValueError(
            f"protocol_version {protocol_version!r}: use None/'auto', 'legacy' or one of {PROTOCOL_VERSIONS}"
        )
    if session.protocol_version != protocol_version and protocol_version != "legacy":
        raise AssertionError(
            f"asked for {protocol_version}, the server negotiated {session.protocol_version}"
        )


def _http_client(
    conn: McpConn, headers: dict[str, str] | None, timeout: httpx2.Timeout
) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(
        headers=headers, timeout=timeout, event_hooks={"response": [conn._on_response]}
    )


@asynccontextmanager
async def _session(
    conn: McpConn,
    transport: Any,
    protocol_version: str | None,
    read_timeout: float,
    log_level: types.LoggingLevel | None,
) -> AsyncIterator[McpConn]:
    async with transport as (read_stream, write_stream):
        session = ClientSession(
            read_stream,
            write_stream,
            read_timeout_seconds=read_timeout,
            message_handler=conn._on_message,
            client_info=CLIENT_INFO,
            log_level=log_level,
        )
        async with session:
            conn.session = session
            await _negotiate(session, protocol_version)
            yield conn


@asynccontextmanager
async def mcp_client(
    url: str,
    protocol_version: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    log_level: types.LoggingLevel | None = None,
    read_timeout: float = 30.0,
    terminate_on_close: bool = True,
    max_sse_event_size: int | None = 1024 * 1024,
) -> AsyncIterator[McpConn]:
    """The SDK's Streamable HTTP client + `ClientSession`, negotiated at `protocol_version`.

    `protocol_version`: None or "auto" does what `mcp.Client(url)` does
    (`server/discover` probe, so 2026-07-28 against an SDK 2.x server, else
    initialize); "legacy" the SDK's plain `initialize()` (offers 2025-11-25);
    a handshake revision ("2024-11-05" ... "2025-11-25") an initialize offering
    exactly that one; "2026-07-28" the per-request era (no session id, no GET
    stream). A pinned revision the server does not agree to fails the enter.
    `log_level` opts in to log messages at 2026-07-28 (earlier revisions send
    them regardless). `headers` go on every request (Host, routing, auth...).
    On exit the SDK sends DELETE for a session unless `terminate_on_close=False`.
    An SSE event over `max_sse_event_size` (the SDK's 1 MiB default) fails its
    request with MCPError -32000 "SSE stream failed"; None lifts the limit.
    """
    conn = McpConn()
    timeout = httpx2.Timeout(30.0, read=300.0)  # the SDK's own defaults
    async with _http_client(conn, headers, timeout) as http:
        transport = streamable_http_client(
            url,
            http_client=http,
            terminate_on_close=terminate_on_close,
            max_sse_event_size=max_sse_event_size,
        )
        async with _session(conn, transport, protocol_version, read_timeout, log_level):
            yield conn


@asynccontextmanager
async def mcp_sse_client(
    url: str,
    protocol_version: str | None = "2024-11-05",
    *,
    headers: dict[str, str] | None = None,
    read_timeout: float = 30.0,
) -> AsyncIterator[McpConn]:
    """The SDK's legacy HTTP+SSE client (`GET /sse`, then POSTs to the announced endpoint).

    `session_id` is the one in the endpoint URL (`?session_id=`). The
    revision defaults to 2024-11-05, the one this transport belongs to; any
    handshake revision works (the server agrees to whatever is offered).
    """
    conn = McpConn()

    def factory(
        headers: dict[str, str] | None = None,
        timeout: httpx2.Timeout | None = None,
        auth: httpx2.Auth | None = None,
    ) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            headers=headers,
            timeout=timeout,
            auth=auth,
            event_hooks={"response": [conn._on_response]},
        )

    def on_session(session_id: str) -> None:
        conn.session_id = session_id

    transport = sse_client(
        url, headers=headers, httpx_client_factory=factory, on_session_created=on_session
    )
    async with _session(conn, transport, protocol_version, read_timeout, None):
        yield conn


# -- @modelcontextprotocol/server-everything ------------------------------------------

EVERYTHING_PACKAGE = "@modelcontextprotocol/server-everything"
EVERYTHING_VERSION = "2026.8.31"
_EVERYTHING_DIR = NPM_DIR / "node_modules" / "@modelcontextprotocol" / "server-everything"
_NPM_TIMEOUT = 300

# Loaded with `node --import`: the server calls `app.listen(PORT)`, which binds
# every interface and logs the port it was given. This binds 127.0.0.1 and
# prints the port it got, so PORT=0 works without a free-port race.
_LOOPBACK_JS = """\
import net from "node:net";
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === "number" || (typeof args[0] === "string" && /^\\d+$/.test(args[0]))) {
    if (typeof args[1] !== "string") args.splice(1, 0, "127.0.0.1");
    this.once("listening", () => process.stdout.write(`READY ${this.address().port}\\n`));
  }
  return listen.apply(this, args);
};
"""


class EverythingUnavailable(RuntimeError):
    """server-everything can not be installed or run here (no node/npm, no registry)."""


_everything_failure: str | None = None


def _installed_version() -> str | None:
    try:
        return str(json.loads((_EVERYTHING_DIR / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def ensure_everything() -> Path:
    """Install server-everything (pinned) into `.cache/npm` once; its `dist/index.js`.

    Raises EverythingUnavailable (remembered for the rest of the process).
    """
    global _everything_failure
    if _everything_failure is not None:
        raise EverythingUnavailable(_everything_failure)
    try:
        if shutil.which("node") is None or shutil.which("npm") is None:
            raise EverythingUnavailable("node or npm is not on PATH")
        NPM_DIR.mkdir(parents=True, exist_ok=True)
        with open(NPM_DIR / ".lock", "w") as lock:
            # Concurrent test processes wait for one install, not race it.
            fcntl.flock(lock, fcntl.LOCK_EX)
            if _installed_version() != EVERYTHING_VERSION:
                _npm_install()
            loader = NPM_DIR / "loopback.mjs"
            if not loader.exists() or loader.read_text() != _LOOPBACK_JS:
                loader.write_text(_LOOPBACK_JS)
        return _EVERYTHING_DIR / "dist" / "index.js"
    except EverythingUnavailable as exc:
        _everything_failure = str(exc)
        raise


def _npm_install() -> None:
    spec = f"{EVERYTHING_PACKAGE}@{EVERYTHING_VERSION}"
    argv = ["npm", "install", "--prefix", str(NPM_DIR), "--no-audit", "--no-fund", "--save-exact"]
    try:
        done = subprocess.run(
            [*argv, spec], capture_output=True, text=True, timeout=_NPM_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EverythingUnavailable(f"npm install {spec}: {exc}") from exc
    if done.returncode != 0 or _installed_version() != EVERYTHING_VERSION:
        raise EverythingUnavailable(f"npm install {spec} failed: {done.stderr.strip()[-2000:]}")


class EverythingServer(_Process):
    """`node dist/index.js streamableHttp` on 127.0.0.1; endpoint `url` (path /mcp)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def stop(self, timeout: float = 10.0) -> int | None:
        return self.signal(signal.SIGTERM, timeout)


@contextmanager
def everything_server(timeout: float = STARTUP_TIMEOUT) -> Iterator[EverythingServer]:
    """Run server-everything in Streamable HTTP mode (stateful, with resumability) until exit."""
    index = ensure_everything()
    env = {**os.environ, "PORT": "0"}
    argv = ["node", "--import", (NPM_DIR / "loopback.mjs").as_uri(), str(index), "streamableHttp"]
    server = EverythingServer(argv, env)
    server.spawn()
    try:
        server.wait_ready(timeout)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def server_everything() -> Iterator[EverythingServer]:
    """One server-everything for the session; skips the test when it can not run here."""
    try:
        ensure_everything()
    except EverythingUnavailable as exc:
        pytest.skip(f"server-everything unavailable: {exc}")
    with everything_server() as server:
        yield server
