"""`make run`: the demo petstore upstream, and the gateway in front of it.

Starts `python -m runmcp_fast.demo` where examples/gateway.yaml's petstore
service points (127.0.0.1:8081), waits until it accepts connections, then runs
`runmcp-fast serve -c examples/gateway.yaml` in the foreground and prints a few
curl commands to try. Ctrl-C (SIGINT), SIGTERM or SIGHUP stops the gateway,
then the upstream; so does the gateway exiting on its own. The exit status is
the gateway's.

    python examples/run_demo.py [-c CONFIG]
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from runmcp_fast.config import (
    ConfigError,
    GatewayConfig,
    load_config,
    parse_address,
    parse_upstream,
)

HERE = Path(__file__).resolve().parent
READY_TIMEOUT = 10.0  # seconds for a child to accept connections
STOP_TIMEOUT = 15.0  # seconds for a child to exit once asked (the gateway drains first)
POSIX = os.name == "posix"

# The signals that stop the demo, in the order received.
_received: list[int] = []


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)


def _stopping() -> bool:
    return bool(_received)


def _start(argv: list[str]) -> subprocess.Popen[bytes]:
    # Each child gets its own process group: a Ctrl-C in the terminal reaches
    # this launcher only, which then stops each child once, in order (the
    # gateway before its upstream, so requests in flight can finish).
    if sys.platform == "win32":
        return subprocess.Popen(argv, creationflags=subprocess.CREATE_NEW_PROCESS_GROUP)
    return subprocess.Popen(argv, process_group=0)


def _stop(proc: subprocess.Popen[bytes], signum: int) -> None:
    """Ask `proc` to exit with `signum`, wait (bounded), then kill it."""
    if proc.poll() is not None:
        return
    asked = len(_received)
    if POSIX:
        proc.send_signal(signum)
    else:
        proc.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT
    while proc.poll() is None:
        # A second signal while waiting means "now".
        if time.monotonic() > deadline or len(_received) > asked + 1:
            proc.kill()
            proc.wait()
            return
        time.sleep(0.05)


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait_ready(proc: subprocess.Popen[bytes], host: str, port: int) -> bool:
    """True once host:port accepts a connection; False if `proc` exits, time runs
    out or a signal arrives first."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline and not _stopping():
        if proc.poll() is not None:
            return False
        if _accepts(host, port):
            return proc.poll() is None
        time.sleep(0.05)
    return False


def _connect_host(host: str) -> str:
    """Where to connect to reach a listener bound to `host`."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def _curls(config: GatewayConfig) -> list[str]:
    """Commands to paste into a shell, against the first listener."""
    listener = config.listeners[0]
    address = parse_address(listener.address)
    scheme = "https" if listener.tls else "http"
    curl = ["curl", "-k"] if listener.tls else ["curl"]
    if isinstance(address, str):
        curl += ["--unix-socket", address]
        origin = f"{scheme}://localhost"
    else:
        host = _connect_host(address[0])
        if ":" in host:
            curl.append("-g")  # curl reads [...] as a glob otherwise
            host = f"[{host}]"
        origin = f"{scheme}://{host}:{address[1]}"
    base = origin + (config.services[0].base_path or "/v1").rstrip("/")
    new_pet = '{"name": "Bella", "tag": "dog"}'
    json = ["-H", "Content-Type: application/json", "-d", new_pet]
    invalid = ["-H", "Content-Type: application/json", "-d", '{"name": "", "ownerId": "x"}']
    return [
        shlex.join([*curl, f"{base}/pets"]),
        shlex.join([*curl, f"{base}/pets?tag=cat&limit=1"]),
        shlex.join([*curl, f"{base}/pets/1"]),
        shlex.join([*curl, f"{base}/owners/1/pets"]),
        shlex.join([*curl, *json, f"{base}/pets"]),
        shlex.join([*curl, "-i", f"{base}/pets/404"]) + "   # a problem+json 404",
        shlex.join([*curl, *invalid, f"{base}/pets"]) + "   # 400: every contract error",
        *_admin_curls(config, origin),
    ]


def _admin_curls(config: GatewayConfig, origin: str) -> list[str]:
    """Register the petstore again, live, under /v2 (when the admin API is on, on TCP)."""
    admin = config.admin
    if admin is None or admin.address.startswith("unix:") or not config.services:
        return []
    host, port = parse_address(admin.address)
    admin_url = f"http://{_connect_host(host)}:{port}/admin/services"
    service = {
        "upstream": config.services[0].upstreams[0].rstrip("/")
        + (config.services[0].base_path or "/v1"),
        "openapi": config.services[0].openapi,
        "base_path": "/v2",
        "strip_prefix": "/v2",
    }
    if not isinstance(service["openapi"], str):
        return []
    put = ["-X", "PUT", "-H", "Content-Type: application/json", "-d", json_text(service)]
    return [
        shlex.join(["curl", admin_url]) + "   # the admin API",
        shlex.join(["curl", *put, f"{admin_url}/petstore-v2"]) + "   # register, live",
        shlex.join(["curl", f"{origin}/v2/pets"]),
    ]


def json_text(data: object) -> str:
    import json

    return json.dumps(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "-c", "--config", default=str(HERE / "gateway.yaml"), help="the gateway's config file"
    )
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    services = [s for s in config.services if s.name == "petstore"] or config.services[:1]
    if not services:
        print(f"error: {args.config}: no service for the demo upstream", file=sys.stderr)
        return 2
    upstream = parse_upstream(services[0].upstream)
    if upstream.scheme != "http":
        print(f"error: the demo upstream speaks http, not {upstream.scheme}", file=sys.stderr)
        return 2
    if _accepts(upstream.host, upstream.port):
        print(
            f"error: something already listens on {upstream.authority}; stop it first",
            file=sys.stderr,
        )
        return 1

    stop_signals = [signal.SIGINT, signal.SIGTERM]
    if POSIX:
        stop_signals.append(signal.SIGHUP)
    for stop_signal in stop_signals:
        signal.signal(stop_signal, _on_signal)

    host = f"[{upstream.host}]" if ":" in upstream.host else upstream.host
    demo = _start([sys.executable, "-m", "runmcp_fast.demo", "--listen", f"{host}:{upstream.port}"])
    gateway: subprocess.Popen[bytes] | None = None
    try:
        if not _wait_ready(demo, upstream.host, upstream.port):
            if not _stopping():
                print("error: the demo upstream did not start", file=sys.stderr)
            return 1
        gateway = _start([sys.executable, "-m", "runmcp_fast.cli", "serve", "-c", args.config])
        address = parse_address(config.listeners[0].address)
        ready = (
            isinstance(address, str)
            or address[1] == 0
            or _wait_ready(gateway, _connect_host(address[0]), address[1])
        )
        if ready and gateway.poll() is None:
            print("\nThe gateway is up. Try:\n", flush=True)
            for line in _curls(config):
                print(f"  {line}", flush=True)
            print("\nCtrl-C stops both.\n", flush=True)
        elif gateway.poll() is None and not _stopping():
            print(f"warning: the gateway does not accept connections on {address}", file=sys.stderr)
        while gateway.poll() is None and not _stopping():
            time.sleep(0.1)
    finally:
        signum = _received[0] if _received else signal.SIGTERM
        if POSIX and signum == signal.SIGHUP:
            signum = signal.SIGTERM
        if gateway is not None:
            _stop(gateway, signum)
        _stop(demo, signal.SIGTERM)
    assert gateway is not None  # every early exit returned above
    # The gateway's status; a child killed by signal N reads as 128 + N, like a shell.
    code = gateway.returncode
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main())
