"""Instructions per proxied request, counted by callgrind: the measure that noise can not move.

CPU time per request on a shared machine moves by several µs from run to run; the
number of instructions the gateway executes per request does not. This runs the upstream
(nginx), then `runmcp-fast serve` on GitHub's routes under `valgrind --tool=callgrind`
with collection off, warms it up, switches collection on, sends `--requests` keep-alive
requests of one case from a plain socket client (not under valgrind), switches it off
and prints Ir (instructions) per request; nginx as a proxy is counted the same way
(one process: `master_process off`), as the peer. `--out` keeps the callgrind profile for
`callgrind_annotate`. `--footprint` also counts the cache lines each request fetches
into a 16-line cache (its footprint: what it pays when woken with cold caches;
callgrind.py says more).

    .venv/bin/python bench/load/instructions.py --cases get-1k,post-1k
    .venv/bin/python bench/load/instructions.py --cases get-1k --peers runmcp_fast --out /tmp/cg
    .venv/bin/python bench/load/instructions.py --cases get-1k --tls

`--tls-upstream`: the upstream serves TLS 1.3 and both proxies check its certificate.
`--tls`: both proxies serve TLS 1.3 with the same certificate and suite (tls.py, as
`run.py --tls`); the client's keep-alive connection is set up before counting starts,
so the count is the records' cost per request, not the handshake's.

User-space instructions only: system calls count once per call, not what the kernel does.
Needs valgrind (apt-get install valgrind) and nginx.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import ssl
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import callgrind  # noqa: E402
import cases as load_cases  # noqa: E402
import configs  # noqa: E402
import procs  # noqa: E402
import tls  # noqa: E402


def _request(case: load_cases.Case, port: int) -> bytes:
    head = f"{case.method} {case.path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    if case.body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(case.body)}\r\n"
    return head.encode() + b"\r\n" + (case.body or b"")


def _send(sock: socket.socket | ssl.SSLSocket, request: bytes, count: int) -> None:
    """`count` requests one after the other on one connection, each answer read whole."""
    buf = b""
    for _ in range(count):
        sock.sendall(request)
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                match = re.search(rb"(?i)\r\ncontent-length: *(\d+)", buf[:end])
                if match is None:
                    raise SystemExit(f"no content-length in {buf[:end]!r}")
                total = end + 4 + int(match.group(1))
                if len(buf) >= total:
                    if not buf.startswith(b"HTTP/1.1 200"):
                        raise SystemExit(f"not 200: {buf[:200]!r}")
                    buf = buf[total:]
                    break
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise SystemExit("connection closed")
            buf += chunk


def gateway_argv(
    peer: str, case: load_cases.Case, port: int, args: argparse.Namespace, scratch: Path
) -> list[str]:
    if peer == "nginx":
        argv = configs.nginx_proxy(
            scratch / f"nginx-{case.name}",
            port,
            args.base_port,
            tls=args.tls_files,
            upstream_tls=args.upstream_tls_files,
        )
        # One process (no master forking a worker), so that valgrind sees the work.
        return [*argv[:-1], "daemon off; master_process off;"]
    argv = configs.runmcp_fast(
        scratch / peer / case.name,
        port,
        args.base_port,
        configs.github_spec(),
        tls=args.tls_files,
        upstream_tls=args.upstream_tls_files is not None,
        validation=peer != "runmcp_fast-novalidation",
    )
    return argv


def measure(
    peer: str, case: load_cases.Case, args: argparse.Namespace, scratch: Path
) -> tuple[int, int]:
    """Instructions per request, and lines fetched per request with --footprint (else 0)."""
    port = args.base_port + (1 if peer == "nginx" else 9)
    argv = gateway_argv(peer, case, port, args, scratch)
    keep = f"{args.out}.{peer}.{case.name}" if args.out else None
    out = scratch / f"callgrind.{peer}.{case.name}"
    with callgrind.counted(peer, argv, port, out, keep, footprint=args.footprint) as run:
        request = _request(case, port)
        with socket.create_connection(("127.0.0.1", port)) as raw:
            sock = tls.client_context().wrap_socket(raw) if args.tls_files else raw
            _send(sock, request, args.warmup)
            run.on()
            _send(sock, request, args.requests)
            run.off()
    return run.ir // args.requests, run.lines // args.requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="get-1k,post-1k")
    parser.add_argument(
        "--peers",
        default="nginx,runmcp_fast",
        help="nginx, runmcp_fast, runmcp_fast-novalidation (contract validation off)",
    )
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--base-port", type=int, default=28181)
    parser.add_argument("--out", help="keep the callgrind profiles as OUT.<case>")
    parser.add_argument(
        "--footprint",
        action="store_true",
        help="also count the cache lines a request fetches (callgrind.py; ~2x slower)",
    )
    parser.add_argument(
        "--tls", action="store_true", help=f"the proxies serve TLS 1.3 ({tls.SUITE})"
    )
    parser.add_argument(
        "--tls-upstream",
        action="store_true",
        help=f"the upstream serves TLS 1.3 ({tls.SUITE}); the proxies check its certificate",
    )
    args = parser.parse_args()
    procs.ensure_installed(["nginx"])
    if shutil.which("valgrind") is None:
        raise SystemExit("needs valgrind: apt-get install valgrind")
    wanted = args.cases.split(",")
    chosen = [load_cases.CASES[name] for name in wanted]
    with (
        tempfile.TemporaryDirectory(prefix="runmcp-ir-", ignore_cleanup_errors=True) as tmp,
        procs.running() as servers,
    ):
        scratch = Path(tmp)
        args.tls_files = None
        if args.tls:
            cert, key = tls.make_cert(scratch / "tls")
            args.tls_files = configs.Tls(cert, key, tls.SUITE)
            # The gateway (and this client) read the suite from here: tls.py.
            os.environ["OPENSSL_CONF"] = str(tls.openssl_conf(scratch))
        args.upstream_tls_files = None
        if args.tls_upstream:
            cert, key = tls.make_cert(scratch / "upstream-tls")
            args.upstream_tls_files = configs.Tls(cert, key, tls.SUITE)
            # The gateway trusts the system's CAs: this file stands for them.
            os.environ["SSL_CERT_FILE"] = str(cert)
        servers.append(
            procs.start(
                "upstream",
                configs.upstream_nginx(scratch, args.base_port, args.upstream_tls_files),
                args.base_port,
                cpu=None,
                log_dir=scratch,
            )
        )
        for case in chosen:
            counts = {peer: measure(peer, case, args, scratch) for peer in args.peers.split(",")}
            line = callgrind.versus_nginx({peer: ir for peer, (ir, _) in counts.items()})
            said = f" (TLS 1.3 {tls.SUITE})" if args.tls else ""
            said += " (to a TLS upstream)" if args.tls_upstream else ""
            print(f"{case.name}{said}: Ir per request: {line}", flush=True)
            if args.footprint:
                lines = callgrind.versus_nginx({p: n for p, (_, n) in counts.items()})
                print(f"{case.name}{said}: {callgrind.FOOTPRINT} per request: {lines}", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
