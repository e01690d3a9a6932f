"""What the soak reads from /proc about the gateway: RSS and descriptors per process.

Descriptors are sorted by what they are: a socket is looked up by its inode in
/proc/PID/net/tcp{,6} and called `listen`, `client` (its local port is one of
the gateway's own), `upstream` (its remote port is an upstream's) or `socket`
(anything else: unix sockets, UDP, the parent-worker channel); then `pipe`,
`anon` (eventpoll, eventfd, ...) and `file`.
"""

from __future__ import annotations

import os
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass

# /proc/net/tcp's "st" column: 0A is LISTEN.
_LISTEN = "0A"


@dataclass(frozen=True)
class Ports:
    own: frozenset[int]  # the gateway's listeners (clients connect to these)
    upstream: frozenset[int]


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _sockets(pid: int) -> dict[str, tuple[int, int, str]]:
    """inode -> (local port, remote port, state) for the TCP sockets of PID's namespace."""
    table: dict[str, tuple[int, int, str]] = {}
    for name in ("tcp", "tcp6"):
        with suppress(OSError), open(f"/proc/{pid}/net/{name}") as f:
            next(f)
            for line in f:
                fields = line.split()
                local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
                table[inode] = (
                    int(local.rsplit(":", 1)[1], 16),
                    int(remote.rsplit(":", 1)[1], 16),
                    state,
                )
    return table


def descriptors(pid: int, ports: Ports) -> Counter[str]:
    """PID's open descriptors by kind (see the module's doc)."""
    kinds: Counter[str] = Counter()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return kinds
    sockets: dict[str, tuple[int, int, str]] | None = None
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            if sockets is None:
                sockets = _sockets(pid)
            found = sockets.get(target[8:-1])
            if found is None:
                kinds["socket"] += 1
            elif found[2] == _LISTEN:
                kinds["listen"] += 1
            elif found[0] in ports.own:
                kinds["client"] += 1
            elif found[1] in ports.upstream:
                kinds["upstream"] += 1
            else:
                kinds["socket"] += 1
        elif target.startswith("pipe:"):
            kinds["pipe"] += 1
        elif target.startswith("anon_inode:"):
            kinds["anon"] += 1
        else:
            kinds["file"] += 1
    return kinds


@dataclass
class Sample:
    at: float  # seconds since the measured run began (negative: before it)
    rss_kb: dict[int, int]  # per process of the gateway's tree
    fds: dict[int, Counter[str]]

    @property
    def total_rss_kb(self) -> int:
        return sum(self.rss_kb.values())

    @property
    def total_fds(self) -> int:
        return sum(sum(c.values()) for c in self.fds.values())

    def fds_by_kind(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for kinds in self.fds.values():
            total.update(kinds)
        return total

    def as_dict(self) -> dict[str, object]:
        return {
            "at": round(self.at, 1),
            "rss_kb": self.total_rss_kb,
            "rss_kb_per_pid": {str(p): v for p, v in self.rss_kb.items()},
            "fds": self.total_fds,
            "fds_by_kind": dict(self.fds_by_kind()),
        }


def sample(pids: list[int], ports: Ports, at: float) -> Sample:
    return Sample(
        at, {pid: rss_kb(pid) for pid in pids}, {pid: descriptors(pid, ports) for pid in pids}
    )
