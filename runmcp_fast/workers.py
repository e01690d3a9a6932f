"""Several worker processes (`runmcp-fast serve --workers N`).

The parent binds the listeners, forks the workers (each a whole gateway on its
own event loop), and then only supervises: SIGTERM/SIGINT are passed on to
every worker (each drains), SIGHUP too (each reloads its config), and SIGUSR1
(each reopens its access logs' files); a worker that dies unexpectedly is replaced, unless workers keep dying right after they
start, which means the config can not run and respawning would only spin.

Each worker accepts on a TCP listening socket of its own (`SO_REUSEPORT`): the
kernel spreads new connections across them by a hash, where one socket shared
by all wakes the workers unevenly (the busiest one keeps winning the accept).
The parent keeps every worker's socket, so a worker's replacement takes over
its queue; a stopping worker accepts what is queued before it closes
(gateway.py). Unix sockets are shared as before (no SO_REUSEPORT for them).

With `config_store`, the parent also forks the node's config agent
(cluster/hub.py): it alone follows etcd and hands each change to the workers.
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

from runmcp_fast.config import GatewayConfig, ListenerConfig, parse_address
from runmcp_fast.listeners import bind_listener, bind_reuseport
from runmcp_fast.metrics.peers import Peers

# serve(config, source, sockets, label, peers, hub) runs one worker's gateway.
Serve = Callable[[GatewayConfig, str, list[socket.socket], str, Peers, tuple[str, str] | None], int]
WORKERS_ENV = "RUNMCP_FAST_WORKERS"
"""The number of workers of this gateway process, set for them before they are forked."""

# A worker that exits this soon after starting, this many times in a row, stops the respawning.
_EARLY_EXIT = 2.0
_EARLY_EXITS_ALLOWED = 3


def listener_sockets(
    config: GatewayConfig, count: int, shared: bool = False
) -> list[list[socket.socket]]:
    """Each worker's listening sockets, in listener order (then the admin's).

    TCP listeners: one SO_REUSEPORT socket per worker (the first bound picks the
    port when it is 0, the others join it); `shared`, or a unix socket: one
    socket for all.
    """
    per_worker: list[list[socket.socket]] = [[] for _ in range(count)]
    for listener in config.listeners:
        if shared or isinstance(parse_address(listener.address), str):
            sock = bind_listener(listener)
            for own in per_worker:
                own.append(sock)
            continue
        first = bind_reuseport(listener)
        per_worker[0].append(first)
        port = first.getsockname()[1]
        for own in per_worker[1:]:
            own.append(bind_reuseport(listener, port))
    if config.admin is not None:
        # One admin socket for all: any worker may answer an admin request.
        admin = bind_listener(ListenerConfig(address=config.admin.address))
        for own in per_worker:
            own.append(admin)
    return per_worker


def run_workers(
    config: GatewayConfig,
    source: str,
    count: int,
    serve: Serve,
    *,
    shared_socket: bool = False,
) -> int:
    """Run `count` workers until a signal stops them; the exit status to return.

    `serve(config, source, sockets, label, peers, hub)` runs one worker's gateway
    to the end; `peers` is where the workers answer each other's metrics scrapes,
    `hub` the node's config agent (its socket and hand-off directory) or None.
    """
    per_worker = listener_sockets(config, count, shared_socket)
    sockets = list({id(s): s for own in per_worker for s in own}.values())
    # What a worker's plugins may read: a limit's local fallback splits its quota by it.
    os.environ[WORKERS_ENV] = str(count)
    workers: dict[int, tuple[int, float]] = {}  # pid -> (worker number, start time)
    # One Unix socket per worker, for scrapes to sum every worker's counters.
    peers_dir = tempfile.mkdtemp(prefix="runmcp-workers-")
    stopping = False
    hub = _hub_paths(config, source, peers_dir)
    # Parsed once here, shared by every worker (copy-on-write) instead of once each:
    # the file's specs, or those of the config store's disk cache (a restart).
    from runmcp_fast.preload import preload_specs

    if config.config_store is None:
        preload_specs(config, source)
    elif hub is not None and hub[2]:
        from runmcp_fast.cluster.runtime import cached_config

        cached = cached_config(config, source, hub[1])
        if cached is not None:
            preload_specs(cached, source)

    def start(number: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker (number 0: the config agent)
            code = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the gateway handles it
                signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # likewise
                if number == 0:
                    assert hub is not None
                    for sock in sockets:
                        sock.close()  # the agent serves no client
                    code = _run_hub(config, source, hub)
                else:
                    own = per_worker[number - 1]
                    for sock in sockets:
                        if all(sock is not mine for mine in own):
                            sock.close()  # another worker's: its queue is not ours
                    label = f" [worker {number}/{count}, pid {os.getpid()}]"
                    peers = Peers(peers_dir, number)
                    code = serve(config, source, own, label, peers, hub[:2] if hub else None)
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
        if hub is not None:
            start(0)
        for number in range(1, count + 1):
            start(number)
        while workers:
            try:
                pid, wait_status = os.wait()
            except ChildProcessError:
                break
            number, started = workers.pop(pid, (-1, 0.0))
            code = os.waitstatus_to_exitcode(wait_status)
            if stopping or number < 0:
                status = max(status, code if code > 0 else 0)
                continue
            if number == 0:
                print(f"runmcp-fast: the config agent exited with {code}", file=sys.stderr)
                time.sleep(0.5)  # (not in a tight loop if it can not start)
                start(0)
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


def _hub_paths(config: GatewayConfig, source: str, peers_dir: str) -> tuple[str, str, bool] | None:
    """(the agent's socket, the hand-off directory, whether it is a kept cache)."""
    store = config.config_store
    if store is None:
        return None
    from runmcp_fast.cluster.compose import cache_dir

    config_path = None if source.startswith("<") else source
    directory = cache_dir(store, config_path, config.base_dir)
    if directory is None:
        return os.path.join(peers_dir, "agent.sock"), os.path.join(peers_dir, "handoff"), False
    return os.path.join(peers_dir, "agent.sock"), directory, True


def _run_hub(config: GatewayConfig, source: str, hub: tuple[str, str, bool]) -> int:
    from runmcp_fast.cluster.hub import hub_main

    return hub_main(config, source, hub[0], hub[1], hub[2])
