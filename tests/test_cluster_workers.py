"""`runmcp-fast serve --workers 2` on a real etcd: one config agent process per node
hands each change to the workers; each worker accepts on its own SO_REUSEPORT
socket, and the kernel spreads connections over them."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_helpers import (
    admin_call,
    children,
    established_per_process,
    node_config,
    status_of,
)
from etcd_server import EtcdCluster, etcd_cluster
from servers import GatewayProcess, Harness, wait_until
from test_admin_api import named_app


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdCluster]:
    with etcd_cluster() as cluster:
        yield cluster


def test_workers_follow_one_agent_and_spread_connections(
    harness: Harness, etcd: EtcdCluster, tmp_path: Path
) -> None:
    a, b = harness.aiohttp(named_app("A")), harness.aiohttp(named_app("B"))
    config = node_config([etcd.url], "/w1", "w1")
    admin = int(config["admin"]["address"].rsplit(":", 1)[1])
    path = tmp_path / "node.yaml"
    path.write_text(json.dumps(config))
    with GatewayProcess(["-c", str(path), "--workers", "2"]) as gw:
        assert wait_until(lambda: sum("listening on" in x for x in gw.stderr_lines) == 2, 15)
        assert wait_until(lambda: admin_call(admin, "GET", "/readyz")[0] == 200, 15)
        procs = children(gw.pid)
        assert len(procs) == 3  # two workers and the config agent
        assert any("config agent" in line for line in gw.stderr_lines)
        status, _, body = admin_call(
            admin, "PUT", "/admin/services/one?wait=applied", {"upstream": a.url, "prefix": "/one"}
        )
        assert status == 201 and body["applied"], body
        # Every new connection may land on either worker: both serve it, soon.
        assert wait_until(lambda: all(status_of(gw.port, "/one/x") == "A" for _ in range(10)), 10)
        status, _, body = admin_call(
            admin, "PUT", "/admin/services/one?wait=applied", {"upstream": b.url, "prefix": "/one"}
        )
        assert status == 200 and body["applied"], body
        assert wait_until(lambda: all(status_of(gw.port, "/one/x") == "B" for _ in range(10)), 10)
        # 64 connections held open: the kernel put some on each worker's socket.
        held = [socket.create_connection(("127.0.0.1", gw.port)) for _ in range(64)]
        try:
            assert wait_until(
                lambda: sum(established_per_process(procs, gw.port).values()) == 64, 10
            )
            counts = established_per_process(procs, gw.port)
            print(f"64 connections over the workers: {sorted(counts.values())}")
            assert sum(1 for n in counts.values() if n > 0) == 2
        finally:
            for sock in held:
                sock.close()
        assert gw.stop() == 0
    report = etcd.call("/v3/kv/range", {"key": "L3cxL25vZGVzL3cx"})  # /w1/nodes/w1
    assert not report.get("kvs"), "the lease is revoked on a clean stop"
