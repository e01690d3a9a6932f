"""Where the access log's lines go: stdout, a file, syslog over UDP or over TCP.

An access-log step (plugins/steps/access_log.pxi) writes its lines, already
framed, into its own LogBuffer on the event loop. When a buffer gets its first
line since it was last taken, it tells its sink (`schedule`); the sink takes
the batch of every such buffer at the next tick of the gateway's clock, or at
once when one holds 64 KiB (`full`), and hands it on:

- stdout, a file: to a writer thread, through a bounded queue; the thread
  writes (a slow disk or a full pipe holds it, never the event loop). A file
  is opened for appending, and reopened on SIGUSR1 (after logrotate moved it).
  On a pipe, writes are cut at line ends into pieces of at most PIPE_BUF
  bytes, which the kernel never interleaves: worker processes sharing one
  stdout never mix their lines.
- syslog over UDP: one datagram per line (RFC 5424 framing, made by the step),
  sent by the loop's datagram transport.
- syslog over TCP: octet-counted frames (RFC 6587), written to a connection
  the loop makes, and makes again with back-off when it fails; meanwhile
  batches wait in a bounded queue.

A batch that does not fit its queue is dropped whole and its lines are counted
in the buffer (`dropped`); lines whose write failed, in `failed`: both are in
the step's stats(), so in the metrics (runmcp_plugin_events_total). What is in
flight when a TCP connection breaks (the kernel's buffer, the transport's) is
lost unseen, as with any syslog over plain TCP.

A sink is a gateway's resource (`Resources`): one per destination, shared by
every step that writes there, kept across reloads, closed (what it holds
written) when the gateway stops.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import stat
import sys
import threading
import time
from typing import Any

from runmcp_fast._dataplane import Clock
from runmcp_fast.plugins._steps import LogBuffer
from runmcp_fast.plugins.contract import Resource

log = logging.getLogger("runmcp_fast.access_log")

PIPE_BUF = 4096  # POSIX: a write of at most this many bytes to a pipe is never interleaved
CLOSE_WAIT = 5.0  # seconds a stopping gateway waits for a sink to write what it holds
RETRY_FIRST = 0.1  # seconds before the first new attempt to reach a syslog server
RETRY_MAX = 10.0  # ... doubling up to this
WARN_EVERY = 10.0  # seconds between two warnings of one sink about lost lines


class Sink(Resource):
    """Takes the batches of the buffers that write to one destination (see the module)."""

    def __init__(self, name: str, queue_bytes: int) -> None:
        self.name = name  # for messages: "stdout", the file's path, the syslog address
        self.queue_bytes = queue_bytes
        self._waiting: list[LogBuffer] = []  # buffers with lines since they were last taken
        self._clock: Clock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._warned = 0.0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    # -- called by the steps, on the event loop ------------------------------------------

    def schedule(self, buffer: LogBuffer, clock: Clock) -> None:
        """`buffer` has lines: taken at the next tick of `clock` (the gateway's)."""
        self._waiting.append(buffer)
        if clock is not self._clock:
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
                self._loop_thread = threading.get_ident()
            clock.add_sweeper(self.tick)
            self._clock = clock

    def full(self, buffer: LogBuffer) -> None:
        """`buffer` holds a large batch: taken now, not at the tick."""
        self._take(buffer)

    def tick(self, now: float) -> None:
        self.flush()

    def flush(self) -> None:
        """Take every waiting batch (on the event loop)."""
        waiting, self._waiting = self._waiting, []
        for buffer in waiting:
            self._take(buffer)

    def _take(self, buffer: LogBuffer) -> None:
        data, lines = buffer.take()
        if lines:
            self.submit(data, lines, buffer)

    def submit(self, data: bytes, lines: int, buffer: LogBuffer) -> None:
        raise NotImplementedError

    # -- losses ----------------------------------------------------------------------------

    def dropped(self, lines: int, buffer: LogBuffer | None, why: str) -> None:
        """`lines` lines did not fit the queue: counted, and said at most every WARN_EVERY s."""
        if buffer is not None:
            buffer.dropped += lines
        self._warn(f"access log to {self.name}: {lines} line(s) dropped: {why}")

    def failed(self, lines: int, buffer: LogBuffer | None, why: str) -> None:
        if buffer is not None:
            buffer.failed += lines
        self._warn(f"access log to {self.name}: {lines} line(s) lost: {why}")

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._warned >= WARN_EVERY:
            self._warned = now
            log.warning("%s", message)

    # -- the end -----------------------------------------------------------------------------

    def close(self) -> None:
        """Take what the steps hold and write it (waits up to CLOSE_WAIT), then let go.

        Called off the event loop when the gateway stops (every connection
        closed, so every log step has run); what is on the loop runs there.
        """
        loop = self._loop
        if loop is None or loop.is_closed() or not loop.is_running():
            self.flush()
            self._close_now()
            return
        if threading.get_ident() == self._loop_thread:
            self.flush()  # on the loop itself: nothing can be waited for
            self._close_now()
            return
        finished = asyncio.run_coroutine_threadsafe(self._finish_on_loop(), loop)
        try:
            finished.result(CLOSE_WAIT)
        except TimeoutError:
            log.warning("access log to %s: not all written after %.0f s", self.name, CLOSE_WAIT)
        self._close_after()

    async def _finish_on_loop(self) -> None:
        self.flush()

    def _close_now(self) -> None:
        """Let go without waiting (the loop is gone, or this is it)."""
        self._close_after()

    def _close_after(self) -> None:
        """What is left once the loop's part is done (off the loop)."""


# -- stdout and files: a writer thread ---------------------------------------------------


_REOPEN: Any = object()


class _Writer:
    """A thread writing batches to a file descriptor, in order, from a bounded queue."""

    def __init__(self, sink: ThreadedSink) -> None:
        self.sink = sink
        self._cond = threading.Condition()
        self._queue: collections.deque[tuple[Any, int, LogBuffer | None]] = collections.deque()
        self._bytes = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._pid = 0

    def put(self, data: bytes, lines: int, buffer: LogBuffer) -> bool:
        with self._cond:
            if self._bytes >= self.sink.queue_bytes:
                return False  # (so a queue holds at most queue_bytes and one batch)
            self._queue.append((data, lines, buffer))
            self._bytes += len(data)
            self._start()
            self._cond.notify()
        return True

    def pending(self) -> int:
        """Bytes queued, not yet taken by the thread."""
        with self._cond:
            return self._bytes

    def reopen(self) -> None:
        with self._cond:
            self._queue.append((_REOPEN, 0, None))
            self._start()
            self._cond.notify()

    def stop(self, timeout: float) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread.is_alive() and self._pid == os.getpid():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("access log to %s: its writer did not finish", self.sink.name)

    def _start(self) -> None:
        # (a forked worker has the parent's object but not its thread: it starts its own)
        if self._thread is None or self._pid != os.getpid():
            self._pid = os.getpid()
            self._stopping = False
            self._thread = threading.Thread(
                target=self._run, name=f"access-log {self.sink.name}", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        sink = self.sink
        fd: int | None = None
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue:
                    break
                batch = list(self._queue)
                self._queue.clear()
                self._bytes = 0
            # PERF: every batch queued meanwhile goes in one write.
            pieces: list[bytes] = []
            owners: list[tuple[int, LogBuffer | None]] = []
            for data, lines, buffer in batch:
                if data is _REOPEN:
                    fd = self._flush(fd, pieces, owners)  # what came before: to the old file
                    pieces, owners = [], []
                    fd = sink.reopened(fd)
                else:
                    pieces.append(data)
                    owners.append((lines, buffer))
            fd = self._flush(fd, pieces, owners)
        if fd is not None:
            sink.discard(fd)

    def _flush(
        self, fd: int | None, pieces: list[bytes], owners: list[tuple[int, LogBuffer | None]]
    ) -> int | None:
        """Write `pieces`; the descriptor to go on with (None: opened again next time)."""
        if not pieces:
            return fd
        if fd is None:
            fd = self._open(owners)
            if fd is None:
                return None
        if not self._write(fd, pieces[0] if len(pieces) == 1 else b"".join(pieces), owners):
            self.sink.discard(fd)
            return None
        return fd

    def _open(self, owners: list[tuple[int, LogBuffer | None]]) -> int | None:
        try:
            return self.sink.open()
        except OSError as exc:
            for lines, buffer in owners:
                self.sink.failed(lines, buffer, f"can not open it: {exc.strerror or exc}")
            return None

    def _write(self, fd: int, data: bytes, owners: list[tuple[int, LogBuffer | None]]) -> bool:
        try:
            _write_all(fd, data, self.sink.atomic_pieces(fd))
        except OSError as exc:
            for lines, buffer in owners:
                self.sink.failed(lines, buffer, f"write failed: {exc.strerror or exc}")
            return False
        return True


def _write_all(fd: int, data: bytes, piece: int) -> None:
    """Write all of `data`; with `piece`, in writes of at most that many bytes that end at
    a line's end (a line longer than that goes alone)."""
    view = memoryview(data)
    start, end = 0, len(data)
    while start < end:
        stop = end
        if piece and end - start > piece:
            cut = data.rfind(b"\n", start, start + piece)
            stop = cut + 1 if cut >= start else (data.find(b"\n", start) + 1 or end)
        while start < stop:
            start += os.write(fd, view[start:stop])


class ThreadedSink(Sink):
    """stdout or a file: batches go to a writer thread through a bounded queue."""

    def __init__(self, name: str, queue_bytes: int) -> None:
        super().__init__(name, queue_bytes)
        self.writer = _Writer(self)

    def submit(self, data: bytes, lines: int, buffer: LogBuffer) -> None:
        if not self.writer.put(data, lines, buffer):
            self.dropped(lines, buffer, f"{self.queue_bytes} bytes or more wait to be written")

    def open(self) -> int:
        """The descriptor to write to (on the writer thread)."""
        raise NotImplementedError

    def discard(self, fd: int) -> None:
        """Done with `fd` (closed, unless it is not ours to close)."""

    def reopened(self, fd: int | None) -> int | None:
        return fd

    def atomic_pieces(self, fd: int) -> int:
        """Write at most this many bytes at a time, at line ends (0: any size)."""
        return 0

    def _close_after(self) -> None:
        self.writer.stop(CLOSE_WAIT)


class StdoutSink(ThreadedSink):
    """The process's stdout (file descriptor 1)."""

    def __init__(self, queue_bytes: int) -> None:
        super().__init__("stdout", queue_bytes)
        self._fifo: bool | None = None

    def open(self) -> int:
        with contextlib.suppress(AttributeError, ValueError, OSError):
            sys.stdout.flush()  # what Python printed first comes first
        return 1

    def atomic_pieces(self, fd: int) -> int:
        if self._fifo is None:
            try:
                self._fifo = stat.S_ISFIFO(os.fstat(fd).st_mode)
            except OSError:
                self._fifo = False
        return PIPE_BUF if self._fifo else 0


class FileSink(ThreadedSink):
    """A file, appended to; reopened on SIGUSR1 (logrotate's `postrotate`)."""

    reopens = True

    def __init__(self, path: str, queue_bytes: int) -> None:
        super().__init__(path, queue_bytes)
        self.path = path

    def open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def discard(self, fd: int) -> None:
        with contextlib.suppress(OSError):
            os.close(fd)

    def reopen(self) -> None:
        # What the steps hold was written before the signal: to the old file.
        self.flush()
        self.writer.reopen()

    def reopened(self, fd: int | None) -> int | None:
        if fd is not None:
            self.discard(fd)
        try:
            fd = self.open()
        except OSError as exc:
            log.warning("access log: can not reopen %s: %s", self.path, exc.strerror or exc)
            return None  # tried again with the next batch
        log.info("access log: reopened %s", self.path)
        return fd


# -- syslog: RFC 5424 messages over UDP (RFC 5426) or TCP (RFC 6587, octet counting) ------


class _NetworkSink(Sink):
    """A syslog server: batches wait in a bounded queue until the loop's transport can take
    them; a transport is made on the first batch, and made again with back-off."""

    def __init__(self, name: str, host: str, port: int, queue_bytes: int) -> None:
        super().__init__(name, queue_bytes)
        self.host = host
        self.port = port
        self._queue: collections.deque[tuple[bytes, int, LogBuffer]] = collections.deque()
        self._queued = 0
        self._transport: Any = None
        self._paused = False  # the transport's buffer is over its high-water mark
        self._connecting = False
        self._retry: asyncio.TimerHandle | None = None
        self._delay = RETRY_FIRST
        self._closing = False
        self._lost: asyncio.Future[None] | None = None  # when closing: the transport is gone
        self.connects = 0  # transports made (a TCP reconnection is one more)

    def submit(self, data: bytes, lines: int, buffer: LogBuffer) -> None:
        transport = self._transport
        if transport is not None and not self._paused and not self._queue:
            # (the transport buffers what the socket does not take at once, up to its
            # high-water mark: then it pauses us, and batches wait in the queue)
            self._send(transport, data)
            return
        if transport is None:
            self._connect_soon()
        if self._queued >= self.queue_bytes:
            why = "not connected" if transport is None else "the server does not keep up"
            self.dropped(lines, buffer, f"{self._queued} bytes wait already ({why})")
            return
        self._queue.append((data, lines, buffer))
        self._queued += len(data)

    def _send(self, transport: Any, data: bytes) -> None:
        raise NotImplementedError

    def _drain(self) -> None:
        """Hand the queue to the transport, while it takes more."""
        transport = self._transport
        while self._queue and transport is not None and not self._paused:
            data, _, _ = self._queue.popleft()
            self._queued -= len(data)
            self._send(transport, data)
            transport = self._transport

    # -- the transport ----------------------------------------------------------------------

    def _connect_soon(self) -> None:
        if self._connecting or self._retry is not None or self._closing or self._loop is None:
            return
        self._connecting = True
        self._loop.create_task(self._connect())

    async def _connect(self) -> None:
        try:
            self._transport = await self._open()
        except OSError as exc:
            self._connecting = False
            self._failed_to_connect(exc)
            return
        self._connecting = False
        self.connects += 1
        self._delay = RETRY_FIRST
        if self._closing:
            self._transport.close()
            return
        self._drain()

    async def _open(self) -> Any:
        raise NotImplementedError

    def _failed_to_connect(self, exc: BaseException) -> None:
        self._warn(f"access log to {self.name}: can not connect: {exc}; trying again")
        self._retry_later()

    def _retry_later(self) -> None:
        if self._closing or self._loop is None or self._loop.is_closed():
            return
        delay, self._delay = self._delay, min(self._delay * 2, RETRY_MAX)
        self._retry = self._loop.call_later(delay, self._retry_now)

    def _retry_now(self) -> None:
        self._retry = None
        self._connect_soon()

    # -- the transport's protocol calls these ------------------------------------------

    def paused(self, paused: bool) -> None:
        self._paused = paused
        if not paused:
            self._drain()

    def lost(self, transport: Any, exc: BaseException | None) -> None:
        if transport is not self._transport:
            return
        self._transport = None
        self._paused = False
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)
        if not self._closing:
            self._warn(f"access log to {self.name}: connection lost ({exc or 'closed'})")
            self._retry_later()

    # -- the end ----------------------------------------------------------------------------

    async def _finish_on_loop(self) -> None:
        self.flush()
        if self._transport is None and self._queue:
            # Not connected: one last try, bounded by the close's wait.
            if self._retry is not None:
                self._retry.cancel()
                self._retry = None
            with contextlib.suppress(OSError):
                if not self._connecting:
                    self._transport = await self._open()
        self._drain()
        self._closing = True
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        for _, lines, buffer in self._queue:
            self.failed(lines, buffer, "the gateway stopped before they could be sent")
        self._queue.clear()
        self._queued = 0
        transport = self._transport
        if transport is not None:
            self._lost = asyncio.get_running_loop().create_future()
            transport.close()  # (after what it holds is written)
            await self._lost

    def _close_now(self) -> None:
        self._closing = True
        if self._retry is not None:
            self._retry.cancel()
        if self._transport is not None:
            self._transport.close()


class _SinkFlow:
    """What a syslog sink's transport tells it: flow control, and that it is gone."""

    sink: _NetworkSink
    transport: Any

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def pause_writing(self) -> None:
        self.sink.paused(True)

    def resume_writing(self) -> None:
        self.sink.paused(False)

    def connection_lost(self, exc: Exception | None) -> None:
        self.sink.lost(self.transport, exc)


class _TcpProtocol(_SinkFlow, asyncio.Protocol):
    def __init__(self, sink: SyslogTcpSink) -> None:
        self.sink = sink
        self.transport = None

    def data_received(self, data: bytes) -> None:
        pass  # a syslog server says nothing


class SyslogTcpSink(_NetworkSink):
    """Syslog over TCP, octet-counted frames (the step frames them): RFC 6587 §3.4.1."""

    def __init__(self, host: str, port: int, queue_bytes: int) -> None:
        super().__init__(f"tcp://{_authority(host, port)}", host, port, queue_bytes)

    async def _open(self) -> Any:
        assert self._loop is not None
        transport, _ = await self._loop.create_connection(
            lambda: _TcpProtocol(self), self.host, self.port
        )
        return transport

    def _send(self, transport: Any, data: bytes) -> None:
        transport.write(data)


class _UdpProtocol(_SinkFlow, asyncio.DatagramProtocol):
    def __init__(self, sink: SyslogUdpSink) -> None:
        self.sink = sink
        self.transport = None

    def error_received(self, exc: Exception) -> None:
        # (an ICMP error for an earlier datagram: which lines it was is not known)
        self.sink._warn(f"access log to {self.sink.name}: {exc}")


class SyslogUdpSink(_NetworkSink):
    """Syslog over UDP: a datagram per message (RFC 5426); the step ends each with "\\n"."""

    def __init__(self, host: str, port: int, queue_bytes: int) -> None:
        super().__init__(f"udp://{_authority(host, port)}", host, port, queue_bytes)

    async def _open(self) -> Any:
        assert self._loop is not None
        transport, _ = await self._loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), remote_addr=(self.host, self.port)
        )
        return transport

    def _send(self, transport: Any, data: bytes) -> None:
        for message in data[:-1].split(b"\n"):
            transport.sendto(message)


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
