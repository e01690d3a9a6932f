"""A real `redis-server` (Debian's) on loopback, for the cluster-wide limits' tests.

    server = RedisServer(tmp_path)     # a free port, its files in tmp_path
    server.start()                     # returns once it answers PING
    server.kill(); server.start()      # down and back, on the same port
    server.stop()

`redis_binary()` finds the binary, installing Debian's package when it is missing
and this runs as root (CI's `.ci/run` installs it first); None (and why) otherwise,
for the fixture to skip with.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis as redis_py

_INSTALL_TRIED: list[str] = []  # why the binary is missing, once looked for


def redis_binary() -> tuple[str | None, str]:
    """(the path of redis-server, "") or (None, why it is missing)."""
    found = shutil.which("redis-server")
    if found is not None:
        return found, ""
    if _INSTALL_TRIED:
        return None, _INSTALL_TRIED[0]
    if os.geteuid() != 0:
        _INSTALL_TRIED.append("redis-server is not installed (apt-get install redis-server)")
        return None, _INSTALL_TRIED[0]
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "redis-server"]):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0 and argv[1] == "install":
            why = f"apt-get install redis-server failed: {done.stderr.strip()[-300:]}"
            _INSTALL_TRIED.append(why)
            return None, why
    found = shutil.which("redis-server")
    if found is None:
        _INSTALL_TRIED.append("redis-server is still missing after apt-get install")
        return None, _INSTALL_TRIED[0]
    return found, ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process on 127.0.0.1, no persistence, its files in `directory`."""

    def __init__(self, directory: Path, binary: str = "redis-server") -> None:
        self.directory = directory
        self.binary = binary
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20.0) -> None:
        """Start it (on its port again after `kill`), and return once it answers PING."""
        # Redis can not bind port 0: a free port is picked, and picked again if it was
        # taken before redis bound it.
        for _ in range(5):
            port = self.port or _free_port()
            log = self.directory / f"redis-{port}.log"
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    "--port", str(port),
                    "--bind", "127.0.0.1",
                    "--dir", str(self.directory),
                    "--save", "",
                    "--appendonly", "no",
                    "--logfile", str(log),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            if self._wait_ping(port, timeout):
                self.port = port
                return
            self.proc.kill()
            self.proc.wait(10)
            if self.port:
                break  # its own port is gone: nothing to retry on
        raise RuntimeError(f"redis-server did not start: {self._log_tail()}")

    def _wait_ping(self, port: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False  # exited: the port was taken, most likely
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return True
            except OSError:
                pass
            time.sleep(0.02)  # polling a condition, bounded by the deadline
        return False

    def _log_tail(self) -> str:
        logs = sorted(self.directory.glob("redis-*.log"))
        return logs[-1].read_text(errors="replace")[-1000:] if logs else "(no log)"

    def client(self) -> redis_py.Redis:
        """A blocking client, for tests to read what the gateways wrote."""
        return redis_py.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def kill(self) -> None:
        """SIGKILL: it is gone at once, its counts with it (no persistence)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
