"""One gateway on a real etcd (`config_store: {type: etcd}`), in this process: admin
writes as transactions, ETag = mod_revision, ?wait=applied, a refused object
recorded under nodes/<id>, compaction resyncs, etcd down, cold starts."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_helpers import admin_call, node_config, status_of
from etcd_server import EtcdCluster, etcd_cluster
from isolation import package_env
from servers import Harness, wait_until
from test_admin_api import PETS_SPEC, named_app

from runmcp_fast.cluster.agent import ConfigAgent


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdCluster]:
    with etcd_cluster() as cluster:
        yield cluster


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def etcd_get(etcd: EtcdCluster, key: str) -> Any:
    data = etcd.call("/v3/kv/range", {"key": b64(key)})
    kvs = data.get("kvs") or []
    assert isinstance(kvs, list)
    return json.loads(base64.b64decode(kvs[0]["value"])) if kvs else None


def etcd_put(etcd: EtcdCluster, key: str, value: Any) -> int:
    raw = value if isinstance(value, str) else json.dumps(value)
    data = etcd.call("/v3/kv/put", {"key": b64(key), "value": b64(raw)})
    header = data["header"]
    assert isinstance(header, dict)
    return int(header["revision"])


def admin_port(gw: Any) -> int:
    return int(gw.gateway.admin_addresses[0].rsplit(":", 1)[1])


def agent_of(gw: Any) -> ConfigAgent:
    agent = gw.gateway.cluster.agent
    assert agent is not None
    return agent


def test_admin_writes_are_transactions_served_once_applied(
    harness: Harness, etcd: EtcdCluster, tmp_path: Path
) -> None:
    a, b = harness.aiohttp(named_app("A")), harness.aiohttp(named_app("B"))
    gw = harness.gateway(node_config([etcd.url], "/t1", "n1"), base_dir=str(tmp_path))
    port = admin_port(gw)
    assert wait_until(lambda: admin_call(port, "GET", "/readyz")[0] == 200, 10)
    status, head, body = admin_call(
        port,
        "PUT",
        "/admin/services/pets?wait=applied",
        {"upstream": a.url, "openapi": PETS_SPEC},
    )
    assert status == 201, body
    assert body["applied"] is True and body["key"] == "/t1/services/pets"
    assert body["warnings"] == []  # applied here: its spec's warnings (none)
    revision = body["revision"]
    assert head["etag"] == f'"{revision}"'
    assert status_of(gw.port, "/pets") == "A"
    # Stored as one JSON value per object, the spec by its digest.
    stored = etcd_get(etcd, "/t1/services/pets")
    assert stored["openapi"].startswith("sha256:") and stored["upstream"] == a.url
    # GET: the ETag is the object's mod_revision.
    status, head, _ = admin_call(port, "GET", "/admin/services/pets")
    assert status == 200 and head["etag"] == f'"{revision}"'
    # Two writers with the same If-Match: exactly one wins, the other gets 412.
    results: list[int] = []

    def write(upstream: str) -> None:
        results.append(
            admin_call(
                port,
                "PUT",
                "/admin/services/pets",
                {"upstream": upstream, "openapi": PETS_SPEC},
                {"If-Match": f'"{revision}"'},
            )[0]
        )

    threads = [threading.Thread(target=write, args=(u,)) for u in (a.url, b.url)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert sorted(results) == [200, 412]
    # A stale If-Match alone: 412, nothing written.
    assert admin_call(port, "DELETE", "/admin/services/pets", headers={"If-Match": '"1"'})[0] == 412
    # Delete with wait: gone from the data plane when the answer comes.
    status, _, body = admin_call(port, "DELETE", "/admin/services/pets?wait=applied")
    assert status == 200 and body["applied"] is True
    assert status_of(gw.port, "/pets") == 404
    assert etcd_get(etcd, "/t1/services/pets") is None


def test_a_spec_larger_than_a_watch_line_reaches_another_node_and_its_watch_goes_on(
    harness: Harness, etcd: EtcdCluster, tmp_path: Path
) -> None:
    # A spec that compresses to ~450 KB: its part is one watch message of ~600 KB.
    # The watch read etcd's stream a line at a time with aiohttp's readline, which
    # refuses a line over 512 KiB (LineTooLong, which the agent did not expect): a
    # node that learns of writes from its watch (not the one written through)
    # stopped seeing changes for good.
    a, b = harness.aiohttp(named_app("A")), harness.aiohttp(named_app("B"))
    one = harness.gateway(node_config([etcd.url], "/t9", "n9a"), base_dir=str(tmp_path / "a"))
    other = harness.gateway(node_config([etcd.url], "/t9", "n9b"), base_dir=str(tmp_path / "b"))
    port = admin_port(one)
    for gw in (one, other):
        assert wait_until(lambda gw=gw: admin_call(admin_port(gw), "GET", "/readyz")[0] == 200, 10)
    noise = base64.b64encode(random.Random(9).randbytes(450_000)).decode()
    spec = {**PETS_SPEC, "info": {"title": "Pets", "version": "1", "description": noise}}
    status, _, body = admin_call(
        port, "PUT", "/admin/services/pets?wait=applied", {"upstream": a.url, "openapi": spec}
    )
    assert status == 201 and body["applied"] is True, body
    assert wait_until(lambda: status_of(other.port, "/pets") == "A", 10)
    status, _, body = admin_call(
        port, "PUT", "/admin/services/more?wait=applied", {"upstream": b.url, "prefix": "/more"}
    )
    assert status == 201 and body["applied"] is True, body
    assert wait_until(lambda: status_of(other.port, "/more/x") == "B", 10)


def test_a_refused_object_is_recorded_and_the_node_keeps_serving(
    harness: Harness, etcd: EtcdCluster, tmp_path: Path
) -> None:
    a = harness.aiohttp(named_app("A"))
    etcd_put(etcd, "/t2/services/one", {"upstream": a.url, "prefix": "/one"})
    gw = harness.gateway(node_config([etcd.url], "/t2", "n2"), base_dir=str(tmp_path))
    assert wait_until(lambda: status_of(gw.port, "/one/x") == "A", 10)

    def report() -> Any:
        return etcd_get(etcd, "/t2/nodes/n2")

    # The node's own report of what it applied is written first: written after the
    # bad object, in the same coalescing window, it would be the refused revision.
    assert wait_until(lambda: (report() or {}).get("applied", 0) > 0, 10)
    # Written behind the gateway's back: a bad upstream URL.
    bad = etcd_put(etcd, "/t2/services/two", {"upstream": "ftp://nowhere", "prefix": "/two"})
    assert wait_until(lambda: (report() or {}).get("rejected") is not None, 10)
    rejected = report()["rejected"]
    assert rejected["revision"] == bad
    problem = rejected["problems"][0]
    assert problem["file"] == "etcd:/t2/services/two" and problem["pointer"] == "/upstream"
    assert problem["hint"]
    assert status_of(gw.port, "/one/x") == "A" and status_of(gw.port, "/two/x") == 404
    assert report()["applied"] < bad
    # readyz names the refused revision; the fix is applied.
    ready = admin_call(admin_port(gw), "GET", "/readyz")[2]
    assert ready["config_store"]["rejected_revision"] == bad
    etcd_put(etcd, "/t2/services/two", {"upstream": a.url, "prefix": "/two"})
    assert wait_until(lambda: status_of(gw.port, "/two/x") == "A", 10)
    assert wait_until(lambda: report()["rejected"] is None, 10)


def test_a_put_answers_as_the_store_held_the_object_not_as_this_node_serves_it(
    harness: Harness, etcd: EtcdCluster, tmp_path: Path
) -> None:
    """A put over an object the store holds is a 200 though this node does not serve it
    (refused here, or, with workers, not applied yet by the one the request reached
    while the client read its ETag from another): the status is the store's, from the
    write's own transaction. It was this node's view, and such a put answered 201."""
    a = harness.aiohttp(named_app("A"))
    gw = harness.gateway(node_config([etcd.url], "/t9", "n9"), base_dir=str(tmp_path))
    port = admin_port(gw)
    assert wait_until(lambda: admin_call(port, "GET", "/readyz")[0] == 200, 10)

    def report() -> Any:
        return etcd_get(etcd, "/t9/nodes/n9") or {}

    assert wait_until(lambda: report().get("applied", 0) > 0, 10)
    etcd_put(etcd, "/t9/services/two", {"upstream": "ftp://nowhere", "prefix": "/two"})
    assert wait_until(lambda: report().get("rejected") is not None, 10)
    assert admin_call(port, "GET", "/admin/services/two")[0] == 404  # not served here
    fixed = {"upstream": a.url, "prefix": "/two"}
    status, _, body = admin_call(port, "PUT", "/admin/services/two?wait=applied", fixed)
    assert status == 200, body
    assert body["applied"] is True and status_of(gw.port, "/two/x") == "A"
    new = {"upstream": a.url, "prefix": "/three"}
    assert admin_call(port, "PUT", "/admin/services/three?wait=applied", new)[0] == 201
    # A tenant: its own key, then one per service; the answer is the tenant's.
    tenant = {
        "hosts": ["acme.test"],
        "services": [{"name": "api", "upstream": a.url, "prefix": "/"}],
    }
    status, _, body = admin_call(port, "PUT", "/admin/tenants/acme?wait=applied", tenant)
    assert status == 201, body
    tenant["services"].append({"name": "more", "upstream": a.url, "prefix": "/more"})
    assert admin_call(port, "PUT", "/admin/tenants/acme?wait=applied", tenant)[0] == 200


def test_compaction_past_an_idle_node_resyncs_without_a_rebuild(
    harness: Harness, etcd: EtcdCluster, tmp_path: Path
) -> None:
    a = harness.aiohttp(named_app("A"))
    etcd_put(etcd, "/t3/services/one", {"upstream": a.url, "prefix": "/one"})
    etcd_put(etcd, "/t3/services/two", {"upstream": a.url, "prefix": "/two"})
    gw = harness.gateway(node_config([etcd.url], "/t3", "n3"), base_dir=str(tmp_path))
    agent = agent_of(gw)
    assert wait_until(lambda: status_of(gw.port, "/two/x") == "A", 10)
    assert wait_until(lambda: agent.applied is not None, 10)

    def gap(action: Any) -> None:
        """Drop the node's watch, do `action` and compact while it is away, let it back."""
        gate = asyncio.Event()
        real = agent.client.watch

        async def held(prefix: bytes, start: int, **kw: Any) -> Any:
            await gate.wait()
            async for batch in real(prefix, start, **kw):
                yield batch

        agent.client.watch = held  # type: ignore[method-assign]
        gw.loop_thread.call(lambda: agent._watch.cancel() if agent._watch else None)
        action()
        # Other keys move the revision on; then everything up to now is compacted.
        for i in range(3):
            revision = etcd_put(etcd, f"/elsewhere/{i}", "x")
        etcd.call("/v3/kv/compaction", {"revision": revision, "physical": True})
        agent.client.watch = real  # type: ignore[method-assign]
        gw.loop_thread.call(gate.set)

    rebuilds, resyncs = agent.rebuilds, agent.resyncs
    gap(lambda: None)
    assert wait_until(lambda: agent.resyncs > resyncs, 15)
    assert wait_until(lambda: agent.applied is not None and agent.applied.revision >= 0, 5)
    time.sleep(0.5)  # (a rebuild would have started within coalesce_max)
    assert agent.rebuilds == rebuilds, "nothing changed: no rebuild"
    assert status_of(gw.port, "/two/x") == "A"
    # A delete made while the node was away is applied after the resync.
    resyncs = agent.resyncs
    gap(lambda: etcd.call("/v3/kv/deleterange", {"key": b64("/t3/services/two")}))
    assert wait_until(lambda: status_of(gw.port, "/two/x") == 404, 15)
    assert agent.resyncs > resyncs and agent.rebuilds == rebuilds + 1
    assert status_of(gw.port, "/one/x") == "A"


def test_etcd_down_serves_on_and_admin_writes_answer_503(harness: Harness, tmp_path: Path) -> None:
    a, b = harness.aiohttp(named_app("A")), harness.aiohttp(named_app("B"))
    with etcd_cluster() as etcd:
        etcd_put(etcd, "/t4/services/one", {"upstream": a.url, "prefix": "/one"})
        gw = harness.gateway(node_config([etcd.url], "/t4", "n4"), base_dir=str(tmp_path))
        port = admin_port(gw)
        assert wait_until(lambda: status_of(gw.port, "/one/x") == "A", 10)
        etcd.stop()
        assert wait_until(
            lambda: admin_call(port, "GET", "/readyz")[2]["config_store"]["stale"], 10
        )
        assert status_of(gw.port, "/one/x") == "A"
        started = time.monotonic()
        status, head, body = admin_call(
            port, "PUT", "/admin/services/two", {"upstream": b.url, "prefix": "/two"}
        )
        elapsed = time.monotonic() - started
        assert status == 503, body
        assert head.get("retry-after") == "2"
        print(f"admin write with etcd down: 503 after {elapsed:.2f} s")
        ready = admin_call(port, "GET", "/readyz")[2]
        assert ready["status"].startswith("ready (stale")
        assert ready["config_store"]["config_stale_seconds"] > 0
        metrics = admin_call(port, "GET", "/metrics")[2].decode()
        stale = next(x for x in metrics.splitlines() if x.startswith("runmcp_config_stale_seconds"))
        assert float(stale.split()[1]) > 0
        assert status_of(gw.port, "/one/x") == "A"
        etcd.start()
        assert wait_until(
            lambda: not admin_call(port, "GET", "/readyz")[2]["config_store"]["stale"], 15
        )
        status, _, body = admin_call(
            port, "PUT", "/admin/services/two?wait=applied", {"upstream": b.url, "prefix": "/two"}
        )
        assert status == 201 and body["applied"], body
        assert status_of(gw.port, "/two/x") == "B"


def test_a_dropped_watch_resumes_from_the_last_delivered_revision(
    harness: Harness, tmp_path: Path
) -> None:
    a, b = harness.aiohttp(named_app("A")), harness.aiohttp(named_app("B"))
    with etcd_cluster() as etcd:
        etcd_put(etcd, "/t8/services/one", {"upstream": a.url, "prefix": "/one"})
        gw = harness.gateway(node_config([etcd.url], "/t8", "n8"), base_dir=str(tmp_path))
        agent = agent_of(gw)
        port = admin_port(gw)
        assert wait_until(lambda: status_of(gw.port, "/one/x") == "A", 10)
        # Keys outside the prefix move etcd's revision past the last one delivered
        # here: a resume from a revision sampled apart from the stream would skip.
        for i in range(5):
            outside = etcd_put(etcd, f"/elsewhere/{i}", "x")
        etcd.stop()
        assert wait_until(
            lambda: admin_call(port, "GET", "/readyz")[2]["config_store"]["stale"], 10
        )
        state = agent.state
        assert state is not None
        delivered = state.revision
        assert delivered < outside
        # Hold the next watch until a change has been made behind the node's back.
        starts: list[int] = []
        gate = asyncio.Event()
        real = agent.client.watch

        async def held(prefix: bytes, start: int, **kw: Any) -> Any:
            starts.append(start)
            await gate.wait()
            async for batch in real(prefix, start, **kw):
                yield batch

        agent.client.watch = held  # type: ignore[method-assign]
        resyncs, rebuilds = agent.resyncs, agent.rebuilds
        etcd.start()
        assert wait_until(lambda: bool(starts), 15)
        missed = etcd_put(etcd, "/t8/services/two", {"upstream": b.url, "prefix": "/two"})
        gw.loop_thread.call(gate.set)
        assert wait_until(lambda: status_of(gw.port, "/two/x") == "B", 10)
        assert starts[0] == delivered + 1 and missed > starts[0]
        # Caught up from the stream: no full re-read, one rebuild for the one change.
        assert agent.resyncs == resyncs and agent.rebuilds == rebuilds + 1
        assert not admin_call(port, "GET", "/readyz")[2]["config_store"]["stale"]
        agent.client.watch = real  # type: ignore[method-assign]


def test_cold_start_with_etcd_down(harness: Harness, tmp_path: Path) -> None:
    a = harness.aiohttp(named_app("A"))
    with etcd_cluster() as etcd:
        etcd_put(etcd, "/t5/services/one", {"upstream": a.url, "prefix": "/one"})
        config = node_config([etcd.url], "/t5", "n5")
        gw = harness.gateway(config, base_dir=str(tmp_path))
        assert wait_until(lambda: status_of(gw.port, "/one/x") == "A", 10)
        assert wait_until(lambda: (tmp_path / "cache" / "state.json").exists(), 10)
        gw.stop()
        etcd.stop()
        # With the cache: serves the last applied config, marked stale.
        again = harness.gateway(config, base_dir=str(tmp_path))
        assert status_of(again.port, "/one/x") == "A"
        status, _, ready = admin_call(admin_port(again), "GET", "/readyz")
        assert status == 200 and ready["config_store"]["from_cache"] is True
        assert ready["config_store"]["stale"] is True
        again.stop()
        # Without a cache: not ready until etcd answers.
        bare = harness.gateway(
            node_config([etcd.url], "/t5", "n5b", cache_dir=None), base_dir=str(tmp_path)
        )
        port = admin_port(bare)
        status, _, ready = admin_call(port, "GET", "/readyz")
        assert status == 503 and ready["status"] == "waiting for the config store"
        assert status_of(bare.port, "/one/x") == 404
        etcd.start()
        assert wait_until(lambda: admin_call(port, "GET", "/readyz")[0] == 200, 15)
        assert status_of(bare.port, "/one/x") == "A"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("runmcp-fast")), *args]
    return subprocess.run(
        command, capture_output=True, text=True, env=package_env(), timeout=60, check=False
    )


def test_apply_makes_the_store_hold_a_file(
    harness: Harness, etcd: EtcdCluster, tmp_path: Path
) -> None:
    a, b = harness.aiohttp(named_app("A")), harness.aiohttp(named_app("B"))
    (tmp_path / "pets.json").write_text(json.dumps(PETS_SPEC))
    cluster: dict[str, Any] = {
        "listeners": [{"address": "127.0.0.1:0"}],
        "config_store": {"type": "etcd", "endpoints": [etcd.url], "prefix": "/t6"},
        "services": [
            {"name": "pets", "upstream": a.url, "openapi": "pets.json"},
            {"name": "raw", "upstream": a.url, "prefix": "/raw"},
        ],
        "consumers": [{"name": "alice", "key-auth": {"key": "k1"}}],
    }
    path = tmp_path / "cluster.yaml"
    path.write_text(json.dumps(cluster))
    dry = run_cli("apply", str(path), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "+ /t6/services/pets" in dry.stdout and "+ /t6/consumers/alice" in dry.stdout
    assert "+ specs/" in dry.stdout
    assert etcd_get(etcd, "/t6/services/pets") is None  # a dry run writes nothing
    done = run_cli("apply", str(path))
    assert done.returncode == 0 and "applied at revision" in done.stdout, done.stderr
    gw = harness.gateway(node_config([etcd.url], "/t6", "n6"), base_dir=str(tmp_path))
    assert wait_until(lambda: status_of(gw.port, "/pets") == "A", 10)
    assert status_of(gw.port, "/raw/x") == "A"
    # Changed and removed: "~" and "-", applied in one transaction.
    cluster["services"] = [{"name": "pets", "upstream": b.url, "openapi": "pets.json"}]
    path.write_text(json.dumps(cluster))
    dry = run_cli("apply", str(path), "--dry-run")
    assert "~ /t6/services/pets" in dry.stdout and "- /t6/services/raw" in dry.stdout
    assert "specs/" not in dry.stdout  # stored already
    assert run_cli("apply", str(path)).returncode == 0
    assert wait_until(lambda: status_of(gw.port, "/pets") == "B", 10)
    assert wait_until(lambda: status_of(gw.port, "/raw/x") == 404, 10)
    assert "no difference" in run_cli("apply", str(path)).stdout
    # The cluster file is not a node's file: serve refuses it, naming the keys.
    serve = run_cli("serve", "-c", str(path))
    assert serve.returncode == 2
    assert "/services" in serve.stderr and "runmcp-fast apply" in serve.stderr


def test_the_python_api_writes_to_the_store(
    harness: Harness, etcd: EtcdCluster, tmp_path: Path
) -> None:
    a = harness.aiohttp(named_app("A"))
    gw = harness.gateway(node_config([etcd.url], "/t7", "n7"), base_dir=str(tmp_path))
    assert wait_until(lambda: admin_call(admin_port(gw), "GET", "/readyz")[0] == 200, 10)
    snapshot = gw.loop_thread.run(
        gw.gateway.register_service(name="pets", openapi=PETS_SPEC, url=a.url)
    )
    assert snapshot.service("pets") is not None
    assert status_of(gw.port, "/pets") == "A"
    assert etcd_get(etcd, "/t7/services/pets")["openapi"].startswith("sha256:")
    gw.loop_thread.run(gw.gateway.unregister_service("pets"))
    assert status_of(gw.port, "/pets") == 404
