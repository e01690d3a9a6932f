"""Real etcd on loopback for the tests: Debian's `etcd-server` (3.4), one member or
three, data in a tmpfs directory, stopped and started again by the tests that
need an outage. `.ci/run` installs the package when it is missing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from servers import free_port, wait_until

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


def need_etcd() -> None:
    if not os.access(ETCD, os.X_OK):
        pytest.skip("etcd is not installed (apt-get install etcd-server; .ci/run does it)")


def _tmpfs() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


class EtcdMember:
    """One etcd process; `stop()` and `start()` keep its data (an outage, not a loss)."""

    def __init__(
        self,
        name: str,
        data_dir: str,
        cluster: str,
        client_port: int,
        peer_port: int,
        state: str = "new",
    ) -> None:
        self.name = name
        self.data_dir = data_dir
        self.cluster = cluster
        self.client_port = client_port
        self.peer_port = peer_port
        self.state = state
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = os.path.join(os.path.dirname(data_dir), f"{name}.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the process owns it
        self.proc = subprocess.Popen(
            [
                ETCD,
                "--name",
                self.name,
                "--data-dir",
                self.data_dir,
                "--listen-client-urls",
                self.url,
                "--advertise-client-urls",
                self.url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{self.peer_port}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{self.peer_port}",
                "--initial-cluster",
                self.cluster,
                "--initial-cluster-state",
                self.state,
                "--initial-cluster-token",
                "runmcp-test",
                # Small elections: a killed member is replaced fast on loopback.
                "--heartbeat-interval",
                "50",
                "--election-timeout",
                "500",
            ],
            stdout=log,
            stderr=log,
            env={
                **os.environ,
                "ETCD_UNSUPPORTED_ARCH": os.environ.get("ETCD_UNSUPPORTED_ARCH", ""),
            },
        )
        log.close()

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=1) as response:
                return bool(json.loads(response.read()).get("health") == "true")
        except (OSError, ValueError):
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


class EtcdCluster:
    def __init__(self, size: int = 1) -> None:
        need_etcd()
        self.root = tempfile.mkdtemp(prefix="runmcp-etcd-", dir=_tmpfs())
        ports = [(free_port(), free_port()) for _ in range(size)]
        names = [f"m{i}" for i in range(size)]
        cluster = ",".join(
            f"{n}=http://127.0.0.1:{p}" for n, (_, p) in zip(names, ports, strict=True)
        )
        self.members = [
            EtcdMember(n, os.path.join(self.root, n), cluster, c, p)
            for n, (c, p) in zip(names, ports, strict=True)
        ]
        for member in self.members:
            member.start()
        if not wait_until(lambda: all(m.healthy() for m in self.members), 30):
            logs = [open(m.log_path).read()[-2000:] for m in self.members]  # noqa: SIM115
            self.close()
            raise RuntimeError(f"etcd did not start: {logs}")

    @property
    def endpoints(self) -> list[str]:
        return [m.url for m in self.members]

    @property
    def url(self) -> str:
        return self.members[0].url

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Every member (SIGKILL: a crash, not a clean stop); the data stays."""
        for member in self.members:
            member.stop(sig)

    def start(self) -> None:
        for member in self.members:
            member.state = "existing"
            member.start()
        assert wait_until(lambda: all(m.healthy() for m in self.members), 30)

    def make_leader(self, index: int) -> None:
        """Move the raft leadership to member `index` (asked of the current leader)."""

        def status(url: str | None = None) -> Any:
            return self.call("/v3/maintenance/status", {}, url)

        ids = [str(status(m.url)["header"]["member_id"]) for m in self.members]
        leader = str(status()["leader"])
        if leader != ids[index]:
            self.call(
                "/v3/maintenance/transfer-leadership",
                {"targetID": ids[index]},
                self.members[ids.index(leader)].url,
            )
        assert wait_until(lambda: str(status()["leader"]) == ids[index], 10)

    def call(self, path: str, body: dict[str, object], url: str | None = None) -> dict[str, object]:
        """One request to etcd's JSON gateway (the first member, or `url`), as a
        test's own client."""
        request = urllib.request.Request(
            (url or self.url) + path, data=json.dumps(body).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            data: dict[str, object] = json.loads(response.read())
        return data

    def close(self) -> None:
        for member in self.members:
            member.stop(signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def etcd_cluster(size: int = 1) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(size)
    try:
        yield cluster
    finally:
        cluster.close()
