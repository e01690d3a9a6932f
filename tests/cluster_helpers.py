"""Helpers for the config store's tests: admin calls, node configs, waiting for a node."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from servers import RawClient, free_port


def admin_call(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 15.0,
) -> tuple[int, dict[str, str], Any]:
    """One admin API request (token `t`); (status, headers, JSON body or None)."""
    data = b"" if body is None else json.dumps(body).encode()
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: admin",
        "Authorization: Bearer t",
        "Connection: close",
        f"Content-Length: {len(data)}",
    ]
    if body is not None:
        lines.append("Content-Type: application/json")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    with RawClient(port, timeout=timeout) as client:
        client.send(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
        status, head, raw = client.read_response()
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw
    return status, head, parsed


def node_config(
    endpoints: list[str],
    prefix: str,
    node: str,
    *,
    admin_port: int | None = None,
    cache_dir: str | None = "cache",
    listen: str = "127.0.0.1:0",
    **store: Any,
) -> dict[str, Any]:
    """A node's own file: a listener, the admin API, the store."""
    config_store: dict[str, Any] = {
        "type": "etcd",
        "endpoints": endpoints,
        "prefix": prefix,
        "node_id": node,
        "lease_ttl": 3,
        "reconnect_max": 0.5,
        **store,
    }
    if cache_dir is None:
        config_store["cache"] = False
    else:
        config_store["cache_dir"] = cache_dir
    return {
        "listeners": [{"address": listen}],
        "admin": {"address": f"127.0.0.1:{admin_port or free_port()}", "token": "t"},
        "config_store": config_store,
    }


def status_of(port: int, path: str, host: str = "gw") -> int | str:
    """A data-plane GET: the upstream's name on 200, else the status (-1: no answer)."""
    try:
        with RawClient(port, timeout=5) as client:
            client.send(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            status, _, body = client.read_response()
    except OSError:
        return -1
    if status == 200:
        try:
            return str(json.loads(body)["upstream"])
        except (ValueError, KeyError):
            return 200
    return status


def children(pid: int) -> list[int]:
    """The child processes of `pid` (a supervisor's workers and agent)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def established_per_process(
    pids: list[int], port: int, peers: set[int] | None = None
) -> dict[int, int]:
    """How many established TCP connections to local `port` each process holds
    (only those from the local ports `peers`, when given)."""
    inodes: dict[str, int] = {}
    for pid in pids:
        try:
            names = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for name in names:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{name}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes[target[8:-1]] = pid
    # By inode: the kernel's table is read in pieces while other connections come
    # and go, and a line can be read twice.
    seen: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if state != "01" or int(local.rsplit(":", 1)[1], 16) != port or inode not in inodes:
                continue
            if peers is None or int(remote.rsplit(":", 1)[1], 16) in peers:
                seen.add(inode)
    counts = dict.fromkeys(pids, 0)
    for inode in seen:
        counts[inodes[inode]] += 1
    return counts


class Load:
    """Requests in a loop on keep-alive connections (one per target port), in a thread:
    latencies in ms, and every failure (a status other than `expect`, or an error)."""

    def __init__(self, ports: list[int], path: str, expect: int = 200) -> None:
        self.ports = ports
        self.path = path
        self.expect = expect
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        clients: dict[int, RawClient] = {}
        request = f"GET {self.path} HTTP/1.1\r\nHost: gw\r\n\r\n".encode()
        while not self._stop.is_set():
            for port in self.ports:
                started = time.perf_counter()
                try:
                    client = clients.get(port) or clients.setdefault(port, RawClient(port))
                    client.send(request)
                    status = client.read_response()[0]
                except OSError as exc:
                    self.failures.append(f"{port}: {exc!r}")
                    clients.pop(port, None)
                    continue
                self.latencies.append((time.perf_counter() - started) * 1000)
                if status != self.expect:
                    self.failures.append(f"{port}: {status}")
        for client in clients.values():
            client.close()

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def mark(self) -> int:
        return len(self.latencies)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
