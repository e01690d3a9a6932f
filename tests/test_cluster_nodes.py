"""Three gateway nodes (`serve --workers 2` processes, node ids of their own) on one
real etcd: a write through one node's admin API is served by every node; each
node reports under nodes/<id>; concurrent If-Match writers through two nodes get
one 200 and one 412; a refused change is recorded by every node, which serve on;
etcd killed: the nodes serve on, admin writes answer 503, /readyz says stale, and
all catch up when etcd is back. (The long runs: test_cluster_scale.py, -m cluster.)"""

from __future__ import annotations

import base64
import json
import re
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cluster_helpers import admin_call, node_config, status_of
from etcd_server import EtcdCluster, etcd_cluster
from servers import AiohttpUpstream, GatewayProcess, LoopThread, free_port, wait_until
from test_admin_api import named_app

import runmcp_fast

PREFIX = "/c1"


@dataclass
class Node:
    name: str
    process: GatewayProcess
    admin: int

    @property
    def port(self) -> int:
        return self.process.port

    def agent_pid(self) -> int:
        """The node's config agent (a child of the supervisor), from its log lines."""
        for line in self.process.stderr_lines:
            found = re.search(r"\[config agent, pid (\d+)\]", line)
            if found:
                return int(found.group(1))
        raise AssertionError(f"no config agent in {self.process.stderr_lines}")

    def ready(self) -> tuple[int, dict[str, Any]]:
        status, _, body = admin_call(self.admin, "GET", "/readyz")
        return status, body


@dataclass
class Cluster:
    etcd: EtcdCluster
    nodes: list[Node]
    a: AiohttpUpstream
    b: AiohttpUpstream

    def served_everywhere(self, path: str, expected: int | str) -> bool:
        # A few fresh connections per node: the kernel may put each on either worker.
        return all(status_of(n.port, path) == expected for n in self.nodes for _ in range(4))

    def report(self, node: str) -> tuple[dict[str, Any] | None, int]:
        """A node's report under nodes/<id>, and the lease it lives under."""
        data = self.etcd.call("/v3/kv/range", {"key": b64(f"{PREFIX}/nodes/{node}")})
        kvs = data.get("kvs") or []
        assert isinstance(kvs, list)
        if not kvs:
            return None, 0
        return json.loads(base64.b64decode(kvs[0]["value"])), int(kvs[0].get("lease", 0))

    def put(self, key: str, value: Any) -> int:
        data = self.etcd.call(
            "/v3/kv/put", {"key": b64(PREFIX + key), "value": b64(json.dumps(value))}
        )
        header = data["header"]
        assert isinstance(header, dict)
        return int(header["revision"])


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("nodes")
    with ExitStack() as stack:
        loop_thread = stack.enter_context(LoopThread())
        a = AiohttpUpstream(named_app("A"), loop_thread)
        b = AiohttpUpstream(named_app("B"), loop_thread)
        stack.callback(a.close)
        stack.callback(b.close)
        etcd = stack.enter_context(etcd_cluster())
        nodes = []
        for i in range(3):
            admin = free_port()
            path = tmp / f"node{i}.yaml"
            config = node_config([etcd.url], PREFIX, f"node{i}", admin_port=admin)
            config["config_store"]["cache_dir"] = f"cache{i}"
            path.write_text(json.dumps(config))
            process = stack.enter_context(GatewayProcess(["-c", str(path), "--workers", "2"]))
            nodes.append(Node(f"node{i}", process, admin))
        for node in nodes:
            assert wait_until(lambda n=node: n.ready()[0] == 200, 20), node.process.stderr_lines
        yield Cluster(etcd, nodes, a, b)


def test_a_write_on_one_node_is_served_by_every_node(cluster: Cluster) -> None:
    first, second, _ = cluster.nodes
    status, _, body = admin_call(
        first.admin,
        "PUT",
        "/admin/services/one?wait=applied",
        {"upstream": cluster.a.url, "prefix": "/one"},
    )
    assert status == 201 and body["applied"] and body["node"] == "node0", body
    assert wait_until(lambda: cluster.served_everywhere("/one/x", "A"), 15)
    # Changed through another node, then deleted through a third.
    status, _, body = admin_call(
        second.admin, "PUT", "/admin/services/one", {"upstream": cluster.b.url, "prefix": "/one"}
    )
    assert status == 200, body
    assert wait_until(lambda: cluster.served_everywhere("/one/x", "B"), 15)
    assert admin_call(cluster.nodes[2].admin, "DELETE", "/admin/services/one")[0] == 200
    assert wait_until(lambda: cluster.served_everywhere("/one/x", 404), 15)


def test_every_node_reports_under_nodes_its_id(cluster: Cluster) -> None:
    revision = cluster.put("/services/reported", {"upstream": cluster.a.url, "prefix": "/rep"})
    assert wait_until(lambda: cluster.served_everywhere("/rep/x", "A"), 15)
    for node in cluster.nodes:
        assert wait_until(
            lambda n=node: ((cluster.report(n.name)[0] or {}).get("applied") or 0) >= revision, 15
        )
        report, lease = cluster.report(node.name)
        assert report is not None
        assert report["node"] == node.name and report["version"] == runmcp_fast.__version__
        assert 0 < report["started"] <= time.time() and report["rejected"] is None
        # The agent writes it (the one process of the node that talks to etcd).
        assert report["pid"] == node.agent_pid()
        # Under a lease: it goes when the node goes.
        assert lease
        ttl = cluster.etcd.call("/v3/lease/timetolive", {"ID": str(lease)})
        assert 0 < int(ttl["TTL"]) <= 3  # type: ignore[call-overload]
    # Nothing else under nodes/: one key per node.
    listed = cluster.etcd.call(
        "/v3/kv/range",
        {"key": b64(f"{PREFIX}/nodes/"), "range_end": b64(f"{PREFIX}/nodes0"), "keys_only": True},
    )
    keys = sorted(base64.b64decode(kv["key"]).decode() for kv in listed["kvs"])  # type: ignore[union-attr]
    assert keys == [f"{PREFIX}/nodes/node{i}" for i in range(3)]


def test_concurrent_if_match_writes_through_two_nodes(cluster: Cluster) -> None:
    first, second, third = cluster.nodes
    status, head, body = admin_call(
        first.admin,
        "PUT",
        "/admin/services/race?wait=applied",
        {"upstream": cluster.a.url, "prefix": "/race"},
    )
    assert status == 201, body
    etag = head["etag"]
    # Every node serves it, and every node gives it the same ETag.
    for node in (second, third):
        assert wait_until(
            lambda n=node: (
                admin_call(n.admin, "GET", "/admin/services/race")[1].get("etag") == etag
            ),
            15,
        )
    results: dict[str, int] = {}

    def write(node: Node, upstream: str) -> None:
        results[upstream] = admin_call(
            node.admin,
            "PUT",
            "/admin/services/race",
            {"upstream": upstream, "prefix": "/race"},
            {"If-Match": etag},
        )[0]

    threads = [
        threading.Thread(target=write, args=(second, cluster.a.url)),
        threading.Thread(target=write, args=(third, cluster.b.url)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert sorted(results.values()) == [200, 412], results
    winner = "A" if results[cluster.a.url] == 200 else "B"
    assert wait_until(lambda: cluster.served_everywhere("/race/x", winner), 15)


def test_a_refused_change_is_recorded_by_every_node(cluster: Cluster) -> None:
    assert cluster.put("/services/good", {"upstream": cluster.a.url, "prefix": "/good"})
    assert wait_until(lambda: cluster.served_everywhere("/good/x", "A"), 15)
    # Written behind the gateway's back: every node's checks refuse it.
    bad = cluster.put("/services/bad", {"upstream": "ftp://nowhere", "prefix": "/bad"})
    # (The revision refused is the one the node checked: other nodes' reports, in the
    # same prefix, may have moved it past `bad` by then.)
    for node in cluster.nodes:
        assert wait_until(
            lambda n=node: (
                ((cluster.report(n.name)[0] or {}).get("rejected") or {}).get("revision", 0) >= bad
            ),
            15,
        )
        report = cluster.report(node.name)[0]
        assert report is not None and report["applied"] < bad
        problem = report["rejected"]["problems"][0]
        assert problem["file"] == f"etcd:{PREFIX}/services/bad"
        assert problem["pointer"] == "/upstream"
        assert node.ready()[1]["config_store"]["rejected_revision"] >= bad
    # The last good snapshot is what they serve.
    assert cluster.served_everywhere("/good/x", "A") and cluster.served_everywhere("/bad/x", 404)
    # Fixed: applied everywhere, the refusals cleared.
    fixed = cluster.put("/services/bad", {"upstream": cluster.b.url, "prefix": "/bad"})
    assert wait_until(lambda: cluster.served_everywhere("/bad/x", "B"), 15)
    for node in cluster.nodes:
        assert wait_until(
            lambda n=node: (cluster.report(n.name)[0] or {}).get("applied", 0) >= fixed, 15
        )
        assert (cluster.report(node.name)[0] or {})["rejected"] is None


def test_etcd_killed_the_nodes_serve_on_and_catch_up(cluster: Cluster) -> None:
    # (Last in this module: it takes etcd away from the others.)
    cluster.put("/services/kept", {"upstream": cluster.a.url, "prefix": "/kept"})
    assert wait_until(lambda: cluster.served_everywhere("/kept/x", "A"), 15)
    cluster.etcd.stop(signal.SIGKILL)
    for node in cluster.nodes:
        assert wait_until(lambda n=node: n.ready()[1]["config_store"]["stale"], 15)
        status, ready = node.ready()
        assert status == 200 and ready["status"].startswith("ready (stale")
    assert cluster.served_everywhere("/kept/x", "A")
    answered = []
    for node in cluster.nodes:
        started = time.monotonic()
        status, head, body = admin_call(
            node.admin,
            "PUT",
            "/admin/services/late",
            {"upstream": cluster.b.url, "prefix": "/late"},
        )
        answered.append(time.monotonic() - started)
        assert status == 503 and head.get("retry-after") == "2", body
        assert "the change was not made" in body["detail"]  # refused connections: sure
    print(f"admin writes with etcd killed: 503 after {', '.join(f'{t:.3f}' for t in answered)} s")
    assert cluster.served_everywhere("/kept/x", "A")
    cluster.etcd.start()
    for node in cluster.nodes:
        assert wait_until(lambda n=node: not n.ready()[1]["config_store"]["stale"], 20)
    status, _, body = admin_call(
        cluster.nodes[1].admin,
        "PUT",
        "/admin/services/late",
        {"upstream": cluster.b.url, "prefix": "/late"},
    )
    assert status == 201, body
    assert wait_until(lambda: cluster.served_everywhere("/late/x", "B"), 15)
    assert cluster.served_everywhere("/kept/x", "A")


def test_a_node_with_workers_restarts_from_its_disk_cache_while_etcd_is_down(
    tmp_path: Path,
) -> None:
    with LoopThread() as loop_thread, etcd_cluster() as etcd:
        a = AiohttpUpstream(named_app("A"), loop_thread)
        try:
            admin = free_port()
            config = node_config([etcd.url], "/c2", "cold", admin_port=admin)
            path = tmp_path / "node.yaml"
            path.write_text(json.dumps(config))
            args = ["-c", str(path), "--workers", "2"]
            with GatewayProcess(args) as gw:
                status, _, body = admin_call(
                    admin,
                    "PUT",
                    "/admin/services/one?wait=applied",
                    {"upstream": a.url, "prefix": "/one"},
                )
                assert status == 201 and body["applied"], body
                assert gw.stop() == 0
            # A clean stop right after the write: the cache holds it.
            cached = json.loads((tmp_path / "cache" / "state.json").read_text())
            assert cached["revision"] >= body["revision"]
            etcd.stop(signal.SIGKILL)
            with GatewayProcess(args) as gw:
                # Both workers serve the cached config at once, marked stale.
                assert all(status_of(gw.port, "/one/x") == "A" for _ in range(8))
                status, _, ready = admin_call(admin, "GET", "/readyz")
                assert status == 200, ready
                assert ready["config_store"]["from_cache"] is True
                assert ready["config_store"]["stale"] is True
                # Built once, from the cache: the agent's hand-off of it is no rebuild.
                assert ready["generation"] == 1
                etcd.start()

                def in_sync() -> bool:
                    store = admin_call(admin, "GET", "/readyz")[2]["config_store"]
                    return not store["stale"] and not store["from_cache"]

                # Every worker (either may answer): etcd's config, no longer the cache's.
                assert wait_until(lambda: all(in_sync() for _ in range(4)), 20)
                assert all(status_of(gw.port, "/one/x") == "A" for _ in range(8))
                # etcd had nothing new: no rebuild.
                assert all(
                    admin_call(admin, "GET", "/readyz")[2]["generation"] == 1 for _ in range(4)
                )
        finally:
            a.close()
