"""Several worker processes on shared listening sockets (`runmcp-fast serve --workers N`).

The parent binds every listener once, forks the workers (each a whole
gateway on its own event loop, accepting on the shared sockets), and then only
supervises: SIGTERM/SIGINT are passed on to every worker (each drains), SIGHUP
too (each reloads its config), and SIGUSR1 (each reopens its access logs' files), and a
worker that dies unexpectedly is replaced, unless workers keep dying right
after they start, which means the config can not run and respawning would
only spin.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable

from runmcp_fast.config import GatewayConfig, ListenerConfig
from runmcp_fast.listeners import bind_listener
from runmcp_fast.metrics.peers import Peers

WORKERS_ENV = "RUNMCP_FAST_WORKERS"
"""The number of workers of this gateway process, set for them before they are forked."""

# A worker that exits this soon after starting, this many times in a row, stops the respawning.
_EARLY_EXIT = 2.0
_EARLY_EXITS_ALLOWED = 3


def run_workers(
    config: GatewayConfig,
    source: str,
    count: int,
    serve: Callable[[GatewayConfig, str, list[socket.socket], str, Peers], int],
) -> int:
    """Run `count` workers until a signal stops them; the exit status to return.

    `serve(config, source, sockets, label, peers)` runs one worker's gateway to
    the end; `peers` is where the workers answer each other's metrics scrapes.
    """
    sockets = [bind_listener(listener) for listener in config.listeners]
    if config.admin is not None:
        # One admin socket for all: any worker may answer an admin request;
        # the others pick the change up from the state file they watch.
        sockets.append(bind_listener(ListenerConfig(address=config.admin.address)))
    # What a worker's plugins may read: a limit's local fallback splits its quota by it.
    os.environ[WORKERS_ENV] = str(count)
    workers: dict[int, tuple[int, float]] = {}  # pid -> (worker number, start time)
    # One Unix socket per worker, for scrapes to sum every worker's counters.
    peers_dir = tempfile.mkdtemp(prefix="runmcp-workers-")
    stopping = False

    def start(number: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the gateway handles it
                signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # likewise
                label = f" [worker {number}/{count}, pid {os.getpid()}]"
                code = serve(config, source, sockets, label, Peers(peers_dir, number))
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        workers[pid] = (number, time.monotonic())

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def pass_on(signum: int, _frame: object) -> None:
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in (signal.SIGHUP, signal.SIGUSR1):  # reload; reopen the access logs' files
        previous[sig] = signal.signal(sig, pass_on)
    print(f"runmcp-fast: {count} workers", file=sys.stderr, flush=True)
    early_exits = 0
    status = 0
    try:
        for number in range(1, count + 1):
            start(number)
        while workers:
            try:
                pid, wait_status = os.wait()
            except ChildProcessError:
                break
            number, started = workers.pop(pid, (0, 0.0))
            code = os.waitstatus_to_exitcode(wait_status)
            if stopping or number == 0:
                status = max(status, code if code > 0 else 0)
                continue
            # An unexpected exit: replace the worker, unless workers can not even start.
            early_exits = early_exits + 1 if time.monotonic() - started < _EARLY_EXIT else 0
            print(
                f"runmcp-fast: worker {number} (pid {pid}) exited with {code}",
                file=sys.stderr,
                flush=True,
            )
            if early_exits >= _EARLY_EXITS_ALLOWED:
                print("runmcp-fast: workers keep failing at start; stopping", file=sys.stderr)
                stop(signal.SIGTERM, None)
                status = code if code > 0 else 1
                continue
            start(number)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sock in sockets:
            sock.close()
        shutil.rmtree(peers_dir, ignore_errors=True)
    return status
