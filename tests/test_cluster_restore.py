"""A store restored from a backup (its revision behind the one the node applied): the
node reads everything again and rebuilds only when the config objects differ; etcd
with TLS (a self-signed CA made by the fixture) and with auth (user and password from
the environment)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from cluster_helpers import admin_call, node_config, status_of
from etcd_server import etcd_cluster
from servers import Harness, wait_until
from test_admin_api import named_app
from test_cluster_node import admin_port, agent_of, etcd_get, etcd_put

from runmcp_fast.cluster.agent import make_client
from runmcp_fast.cluster.errors import EtcdError
from runmcp_fast.cluster.etcd_client import EtcdClient
from runmcp_fast.config import config_from_data


def restore(gw: Any, etcd: Any, objects: dict[str, Any]) -> None:
    """Replace the store by a new etcd on the same address holding `objects` (a backup
    restored): the node's reconnect waits until they are all written."""
    agent = agent_of(gw)
    gate = asyncio.Event()
    real = agent.client.revision

    async def held() -> int:
        await gate.wait()
        return await real()

    agent.client.revision = held  # type: ignore[method-assign]
    etcd.restore_empty()
    for key, value in objects.items():
        etcd_put(etcd, key, value)
    agent.client.revision = real  # type: ignore[method-assign]
    gw.loop_thread.call(gate.set)


def test_a_restored_etcd_behind_the_node_is_read_again(harness: Harness, tmp_path: Path) -> None:
    a = harness.aiohttp(named_app("A"))

    def service(name: str) -> tuple[str, dict[str, str]]:
        return f"/r1/services/{name}", {"upstream": a.url, "prefix": f"/{name}"}

    with etcd_cluster() as etcd:
        etcd_put(etcd, *service("one"))
        etcd_put(etcd, *service("two"))
        for i in range(20):  # the revision moves on, far past what the backup has
            etcd_put(etcd, f"/elsewhere/{i}", "x")
        gw = harness.gateway(node_config([etcd.url], "/r1", "r1"), base_dir=str(tmp_path))
        agent = agent_of(gw)
        assert wait_until(lambda: status_of(gw.port, "/two/x") == "A", 10)
        assert wait_until(lambda: agent.applied is not None and agent.applied.revision > 20, 10)
        before = agent.applied.revision if agent.applied is not None else 0
        rebuilds, resyncs = agent.rebuilds, agent.resyncs

        # Restored from a backup that has `one` and `three`, not `two`.
        restore(gw, etcd, dict([service("one"), service("three")]))
        assert wait_until(lambda: status_of(gw.port, "/three/x") == "A", 20)
        assert status_of(gw.port, "/two/x") == 404 and status_of(gw.port, "/one/x") == "A"
        assert agent.resyncs == resyncs + 1 and agent.rebuilds == rebuilds + 1
        assert agent.applied is not None and agent.applied.revision < before
        # The node reports the restored store's revision, and follows it from there.
        assert wait_until(
            lambda: 0 < (etcd_get(etcd, "/r1/nodes/r1") or {}).get("applied", 0) < before, 10
        )
        etcd_put(etcd, *service("four"))
        assert wait_until(lambda: status_of(gw.port, "/four/x") == "A", 10)

        # Restored again with exactly what the node serves: a re-read, no rebuild.
        rebuilds, resyncs = agent.rebuilds, agent.resyncs
        before = agent.applied.revision
        restore(gw, etcd, dict(service(n) for n in ("one", "three", "four")))
        assert wait_until(lambda: agent.resyncs > resyncs, 20)
        assert wait_until(lambda: agent.applied is not None and agent.applied.revision < before, 10)
        time.sleep(0.5)  # (a rebuild would have started within coalesce_max)
        assert agent.rebuilds == rebuilds, "the same objects: no rebuild"
        assert status_of(gw.port, "/four/x") == "A"
        etcd_put(etcd, *service("five"))
        assert wait_until(lambda: status_of(gw.port, "/five/x") == "A", 10)


def test_etcd_with_tls(harness: Harness, tmp_path: Path) -> None:
    a = harness.aiohttp(named_app("A"))
    with etcd_cluster(tls=True) as etcd:
        assert etcd.tls is not None and etcd.url.startswith("https://")
        etcd_put(etcd, "/s1/services/one", {"upstream": a.url, "prefix": "/one"})
        config = node_config([etcd.url], "/s1", "s1", tls={"ca": etcd.tls.ca})
        gw = harness.gateway(config, base_dir=str(tmp_path))
        assert wait_until(lambda: status_of(gw.port, "/one/x") == "A", 10)
        status, _, body = admin_call(
            admin_port(gw), "PUT", "/admin/services/two?wait=applied",
            {"upstream": a.url, "prefix": "/two"},
        )  # fmt: skip
        assert status == 201 and body["applied"] is True, body
        assert etcd_get(etcd, "/s1/services/two")["prefix"] == "/two"
        ready = admin_call(admin_port(gw), "GET", "/readyz")[2]
        assert ready["config_store"]["connected"] is True


def refused(client: EtcdClient) -> EtcdError:
    """What the store answers `client`'s read (which must fail)."""

    async def main() -> EtcdError:
        try:
            await client.range_prefix(b"/")
        except EtcdError as exc:
            return exc
        finally:
            await client.close()
        raise AssertionError("etcd answered")

    return asyncio.run(main())


def test_a_node_without_the_ca_does_not_trust_etcd(harness: Harness, tmp_path: Path) -> None:
    with etcd_cluster(tls=True) as etcd:
        config = node_config([etcd.url], "/s2", "s2", cache_dir=None, timeout=1)
        # The node's client, made from the same settings: the certificate is not trusted.
        store = config_from_data(config).config_store
        assert store is not None
        assert "certificate" in str(refused(make_client(store, str(tmp_path)))).lower()
        gw = harness.gateway(config, base_dir=str(tmp_path))
        # Not ready: the store never answered.
        status, _, body = admin_call(admin_port(gw), "GET", "/readyz")
        assert status == 503, body


def enable_auth(etcd: Any, password: str) -> None:
    etcd.call("/v3/auth/user/add", {"name": "root", "password": password})
    etcd.call("/v3/auth/user/grant", {"user": "root", "role": "root"})
    etcd.call("/v3/auth/enable", {})
    token = etcd.call("/v3/auth/authenticate", {"name": "root", "password": password})["token"]
    assert isinstance(token, str)
    etcd.headers = {"Authorization": token}


def test_etcd_with_auth(harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = harness.aiohttp(named_app("A"))
    with etcd_cluster() as etcd:
        enable_auth(etcd, "s3cret")
        etcd_put(etcd, "/u1/services/one", {"upstream": a.url, "prefix": "/one"})
        # Without credentials etcd refuses the node: not ready, nothing served.
        config = node_config([etcd.url], "/u1", "nobody", cache_dir=None)
        store = config_from_data(config).config_store
        assert store is not None
        assert "user name is empty" in str(refused(make_client(store, str(tmp_path))))
        gw = harness.gateway(config, base_dir=str(tmp_path))
        assert admin_call(admin_port(gw), "GET", "/readyz")[0] == 503
        assert status_of(gw.port, "/one/x") == 404
        # With the user and password from the environment (the names are settings).
        monkeypatch.setenv("ETCD_USER_FOR_TEST", "root")
        monkeypatch.setenv("ETCD_PASSWORD_FOR_TEST", "s3cret")
        config = node_config(
            [etcd.url], "/u1", "u1",
            username_env="ETCD_USER_FOR_TEST", password_env="ETCD_PASSWORD_FOR_TEST",
        )  # fmt: skip
        gw = harness.gateway(config, base_dir=str(tmp_path / "u1"))
        assert wait_until(lambda: status_of(gw.port, "/one/x") == "A", 10)
        status, _, body = admin_call(
            admin_port(gw), "PUT", "/admin/services/two?wait=applied",
            {"upstream": a.url, "prefix": "/two"},
        )  # fmt: skip
        assert status == 201 and body["applied"] is True, body
        assert etcd_get(etcd, "/u1/services/two")["prefix"] == "/two"
        assert wait_until(lambda: (etcd_get(etcd, "/u1/nodes/u1") or {}).get("applied", 0) > 0, 10)
