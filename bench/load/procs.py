"""Start, pin, watch and stop the servers; read their CPU time and memory from /proc."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")

# Debian packages that provide the binaries the benchmark runs.
PACKAGES = {
    "nginx": "nginx",
    "haproxy": "haproxy",
    "wrk": "wrk",
    "taskset": "util-linux",
    "redis-server": "redis-server",
    "tcpdump": "tcpdump",
}


def ensure_installed(binaries: Sequence[str]) -> None:
    """apt-get install what is missing; the benchmark is not run in CI, so this is allowed."""
    missing = sorted({PACKAGES[b] for b in binaries if shutil.which(b) is None})
    if not missing:
        return
    print(f"installing {' '.join(missing)} with apt-get", file=sys.stderr)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", *missing],
        check=True,
        timeout=600,
        stdout=sys.stderr,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    still = [b for b in binaries if shutil.which(b) is None]
    if still:
        raise SystemExit(f"still missing after apt-get: {', '.join(still)}")


def raise_nofile_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard one, for us and every child we start."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def first_free_port(start: int) -> int:
    """The first port from `start` that binds (a killed server's leaves TIME-WAIT behind)."""
    for port in range(start, start + 200):
        if port_is_free(port):
            return port
    raise SystemExit(f"no free port in {start}..{start + 199}")


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def start(
    name: str,
    argv: Sequence[str],
    port: int,
    *,
    cpu: int | str | None,
    log_dir: Path,
    ready_timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
) -> Server:
    """Run `argv` pinned to `cpu` (a CPU, or a taskset list such as "0,1"), in its own
    process group, with `env` (default: ours); return once `port` accepts."""
    # taskset execs the program, so the pid we hold is the server's own (nginx's master).
    command = ["taskset", "-c", str(cpu), *argv] if cpu is not None else list(argv)
    log = log_dir / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            # Its own group: stop() kills every process it forked, and a Ctrl-C
            # on the terminal reaches only us, so we stop it in order.
            start_new_session=True,
        )
    server = Server(name, port, proc, log)
    try:
        _wait_ready(server, ready_timeout)
        _check_pinned(server, cpu)
    except BaseException:
        stop(server)
        raise
    return server


def _wait_ready(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        code = server.proc.poll()
        if code is not None:
            raise RuntimeError(f"{server.name} exited with {code}:\n{server.log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{server.name} not accepting on port {server.port} after {timeout:.0f} s:\n"
                f"{server.log_tail()}"
            )
        time.sleep(0.05)


def _check_pinned(server: Server, cpu: int | str | None) -> None:
    """Every process of the server must run on `cpu` only, or the CPU split is a lie."""
    if cpu is None:
        return
    wanted = {int(c) for c in str(cpu).split(",")}
    for pid in tree_pids(server.pid):
        try:
            allowed = os.sched_getaffinity(pid)
        except OSError:
            continue  # exited meanwhile
        if allowed != wanted:
            raise RuntimeError(f"{server.name}: pid {pid} may run on CPUs {sorted(allowed)}")


def stop(server: Server, timeout: float = 15.0) -> None:
    """SIGTERM the server's process group; SIGKILL whatever is left after `timeout`."""
    _signal_group(server.pid, signal.SIGTERM)
    try:
        server.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"{server.name} ignored SIGTERM for {timeout:.0f} s: killed", file=sys.stderr)
    # Also sweeps children that outlived their parent (an orphaned nginx worker).
    _signal_group(server.pid, signal.SIGKILL)
    try:
        server.proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        print(f"{server.name} (pid {server.pid}) did not die", file=sys.stderr)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@contextmanager
def running() -> Iterator[list[Server]]:
    """A list to append started servers to; all of them are stopped on the way out."""
    servers: list[Server] = []
    try:
        yield servers
    finally:
        for server in reversed(servers):
            stop(server)


# --- /proc -------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (which may hold spaces)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def tree_pids(root: int) -> list[int]:
    """`root` and all its descendants, from the parent pids in /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def cpu_split(pid: int) -> tuple[float, float]:
    """(utime, stime) of one process (all its threads), in seconds: its own code, and
    the kernel's work for it (system calls, and the TCP stack that runs in them)."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0, 0.0
    # Fields 14 and 15 of stat(5); the list starts at field 3 (state).
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads), in seconds."""
    return sum(cpu_split(pid))


def tree_cpu_split(root: int) -> tuple[float, float]:
    """cpu_split summed over the process tree."""
    splits = [cpu_split(pid) for pid in tree_pids(root)]
    return sum(u for u, _ in splits), sum(s for _, s in splits)


def tree_cpu_seconds(root: int) -> float:
    return sum(tree_cpu_split(root))


def rss_kb(pid: int) -> int:
    """VmRSS of one process, in KB (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_kb(root: int) -> int:
    return sum(rss_kb(pid) for pid in tree_pids(root))


def open_fds(root: int) -> int:
    """File descriptors held by the process tree (sockets included)."""
    total = 0
    for pid in tree_pids(root):
        with suppress(OSError):
            total += len(os.listdir(f"/proc/{pid}/fd"))
    return total


def worker_pids(root: int) -> list[int]:
    """The processes of a server that serve: its children (nginx's workers, runmcp_fast's
    with --workers), or the server itself when it has none (one worker, in-process)."""
    children = [pid for pid in tree_pids(root) if pid != root]
    return children or [root]


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    with suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(int(link[8:-1]))
    return inodes


def established_on(port: int) -> set[int]:
    """Socket inodes of the established TCP connections whose local port is `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with suppress(OSError), open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                # local address "0100007F:6E5F", state 01 = ESTABLISHED, inode is field 9
                if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    found.add(int(fields[9]))
    return found


def connections_per_worker(root: int, port: int) -> dict[int, int]:
    """Client connections each worker holds now (pid -> count): the spread of accepts."""
    clients = established_on(port)
    return {pid: len(_socket_inodes(pid) & clients) for pid in worker_pids(root)}


def cpu_busy_seconds(cpus: Sequence[int]) -> dict[int, float]:
    """Time each CPU spent not idle (all processes, interrupts included), from /proc/stat."""
    wanted = {f"cpu{c}": c for c in cpus}
    busy: dict[int, float] = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *ticks = line.split()
            if name in wanted:
                user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, ticks[:8])
                busy[wanted[name]] = (user + nice + system + irq + softirq + steal) / CLK_TCK
    return busy


def wait_quiet(cpus: Sequence[int], *, limit: float, timeout: float) -> float:
    """Wait (up to `timeout` s) until each CPU is busy less than `limit` of a 0.5 s window.

    On a shared machine a neighbour's load spoils a run; waiting for a lull costs
    seconds. Returns the busiest share seen last (above `limit` if we gave up).
    """
    deadline = time.monotonic() + timeout
    while True:
        before = cpu_busy_seconds(cpus)
        time.sleep(0.5)
        after = cpu_busy_seconds(cpus)
        share = max((after[c] - before[c]) / 0.5 for c in cpus)
        if share < limit or time.monotonic() >= deadline:
            return share
