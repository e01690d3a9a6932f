"""Real etcd on loopback for the tests: Debian's `etcd-server` (3.4), one member or
three, data in a tmpfs directory, stopped and started again by the tests that
need an outage. `.ci/run` installs the package when it is missing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
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
        tls: Tls | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.tls = tls
        self.args = args
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
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.client_port}"

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
                *(
                    ["--cert-file", self.tls.cert, "--key-file", self.tls.key]
                    if self.tls is not None
                    else []
                ),
                *self.args,
            ],
            stdout=log,
            stderr=log,
            env={
                **os.environ,
                "ETCD_UNSUPPORTED_ARCH": os.environ.get("ETCD_UNSUPPORTED_ARCH", ""),
            },
        )
        log.close()

    def ports_free(self) -> bool:
        """Both of its ports can be bound (as etcd binds them: SO_REUSEADDR)."""
        for port in (self.client_port, self.peer_port):
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    return False
        return True

    def healthy(self) -> bool:
        context = self.tls.context() if self.tls is not None else None
        try:
            with urllib.request.urlopen(
                self.url + "/health", timeout=1, context=context
            ) as response:
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


@dataclass(frozen=True)
class Tls:
    """A member's certificate and key, and the CA that signed it (PEM files)."""

    cert: str
    key: str
    ca: str

    def context(self) -> ssl.SSLContext:
        """Trusting the CA, showing the certificate (for etcd's --client-cert-auth)."""
        context = ssl.create_default_context(cafile=self.ca)
        context.load_cert_chain(self.cert, self.key)
        return context


def make_tls(directory: str) -> Tls:
    """A self-signed CA and a certificate for 127.0.0.1 and localhost, signed by it."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    day = datetime.timedelta(days=1)

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("runmcp test CA"))
        .issuer_name(name("runmcp test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - day)
        .not_valid_after(now + day)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - day)
        .not_valid_after(now + day)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = {
        "ca.pem": ca.public_bytes(serialization.Encoding.PEM),
        "cert.pem": cert.public_bytes(serialization.Encoding.PEM),
        "key.pem": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    }
    for file, data in files.items():
        with open(os.path.join(directory, file), "wb") as out:
            out.write(data)
    return Tls(*(os.path.join(directory, f) for f in ("cert.pem", "key.pem", "ca.pem")))


class EtcdCluster:
    def __init__(self, size: int = 1, *, tls: bool = False, args: tuple[str, ...] = ()) -> None:
        """`args`: more flags for every member (`{root}` in one stands for its
        directory, which holds the TLS files)."""
        need_etcd()
        self.root = tempfile.mkdtemp(prefix="runmcp-etcd-", dir=_tmpfs())
        self.tls = make_tls(self.root) if tls else None
        args = tuple(a.replace("{root}", self.root) for a in args)
        # Sent with every `call` (an auth token, once auth is on).
        self.headers: dict[str, str] = {}
        self.restores = 0
        ports = [(free_port(), free_port()) for _ in range(size)]
        names = [f"m{i}" for i in range(size)]
        cluster = ",".join(
            f"{n}=http://127.0.0.1:{p}" for n, (_, p) in zip(names, ports, strict=True)
        )
        self.members = [
            EtcdMember(n, os.path.join(self.root, n), cluster, c, p, tls=self.tls, args=args)
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
        self._wait_healthy()

    def _wait_healthy(self, attempts: int = 5) -> None:
        """Every member answers /health; one whose process ended is started again,
        once its ports are free.

        A restarted member binds its old ports, and a loaded machine may hand one
        of them out in the meantime for a moment (a client's outgoing connection,
        a test's `free_port`): etcd then exits at once, and waiting for it would
        only spend the whole timeout. Each restart is said on stdout (pytest shows
        it with a failure); a failure says what the members logged."""

        def ended() -> list[EtcdMember]:
            return [m for m in self.members if m.proc is not None and m.proc.poll() is not None]

        for _ in range(attempts):
            healthy = wait_until(
                lambda: bool(ended()) or all(m.healthy() for m in self.members), 30
            )
            gone = ended()
            if not gone:
                if healthy:
                    return
                break
            for member in gone:
                code = member.proc.returncode if member.proc is not None else None
                print(f"etcd {member.name} exited ({code}); starting it again")
                wait_until(member.ports_free, 10)
                member.start()
        logs = [Path(m.log_path).read_text(errors="replace")[-2000:] for m in self.members]
        raise AssertionError(f"etcd did not become healthy again: {logs}")

    def restore_empty(self) -> None:
        """A one-member cluster replaced by a new, empty etcd on the same address (a
        store restored from an old backup: its revision is behind the nodes')."""
        assert len(self.members) == 1
        old = self.members[0]
        old.stop(signal.SIGKILL)
        self.restores += 1
        member = EtcdMember(
            old.name,
            os.path.join(self.root, f"{old.name}-restored-{self.restores}"),
            old.cluster,
            old.client_port,
            old.peer_port,
            tls=self.tls,
            args=old.args,
        )
        self.members = [member]
        member.start()
        self._wait_healthy()

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
        for name, value in self.headers.items():
            request.add_header(name, value)
        context = self.tls.context() if self.tls is not None else None
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            data: dict[str, object] = json.loads(response.read())
        return data

    def close(self) -> None:
        for member in self.members:
            member.stop(signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def etcd_cluster(
    size: int = 1, *, tls: bool = False, args: tuple[str, ...] = ()
) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(size, tls=tls, args=args)
    try:
        yield cluster
    finally:
        cluster.close()
