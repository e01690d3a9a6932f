"""Edge cases of the config store an operator of APISIX-on-etcd meets, on a real
etcd: auth tokens etcd no longer takes (its restart, a JWT older than a user
change), credentials given before auth is on, garbage under the prefix, PATCHes
in a row, `apply` in several transactions, If-Match forms, client certificates,
a hung member and one cut off from its leader, spec parts kept out of the node's
state."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from base64 import b64encode
from pathlib import Path
from typing import Any

import pytest
from cluster_helpers import admin_call, node_config, status_of
from etcd_server import EtcdCluster, etcd_cluster
from servers import Harness, free_port, wait_until
from test_admin_api import PETS_SPEC, named_app
from test_cluster_node import admin_port, agent_of, etcd_get, etcd_put
from test_cluster_restore import enable_auth, refused
from test_etcd_client import all_threads_stopped

from runmcp_fast.cluster.agent import make_client
from runmcp_fast.cluster.apply import apply_command
from runmcp_fast.cluster.errors import EtcdUnavailable
from runmcp_fast.cluster.etcd_client import EtcdClient
from runmcp_fast.cluster.layout import SPEC_REF, Layout, spec_bytes, spec_writes
from runmcp_fast.config import config_from_data


def test_a_watch_authenticates_again_when_etcd_forgot_the_token() -> None:
    """etcd keeps simple tokens in memory: after a restart (or the token's TTL) the
    watch is created cancelled ("invalid auth token"), where a unary call gets a 401.
    The watch must get a new token, not fail the same way on every reconnect."""

    async def main(etcd: EtcdCluster) -> None:
        client = EtcdClient([etcd.url], username="root", password="s3cret")
        try:
            await client.put(b"/w1/a", b"1")  # authenticates
            etcd.stop()
            etcd.start()
            # (New connections: the pooled ones died with etcd.)
            await client.close()
            revision = await client.revision()  # not auth-checked: the token is kept
            watch = client.watch(b"/w1/", revision + 1)
            first = asyncio.ensure_future(anext(watch))
            await client.put(b"/w1/b", b"2")
            batch = await asyncio.wait_for(first, 10)
            assert [e.kv.key for e in batch.events] == [b"/w1/b"]
            await watch.aclose()
        finally:
            await client.close()

    with etcd_cluster() as etcd:
        enable_auth(etcd, "s3cret")
        asyncio.run(main(etcd))


def test_a_node_with_auth_follows_etcd_after_etcd_restarts(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Node level: nothing but the watch uses the token while the node is idle (the
    lease keep-alive and the revision check are not auth-checked by etcd 3.4), so a
    watch that kept the forgotten token never followed etcd again."""
    a = harness.aiohttp(named_app("A"))
    with etcd_cluster() as etcd:
        enable_auth(etcd, "s3cret")
        monkeypatch.setenv("ETCD_USER_FOR_TEST", "root")
        monkeypatch.setenv("ETCD_PASSWORD_FOR_TEST", "s3cret")
        etcd_put(etcd, "/r2/services/one", {"upstream": a.url, "prefix": "/one"})
        config = node_config(
            [etcd.url], "/r2", "r2", cache_dir=None,
            username_env="ETCD_USER_FOR_TEST", password_env="ETCD_PASSWORD_FOR_TEST",
            # A keep-alive far apart: recovery may not wait for it.
            lease_ttl=300,
        )  # fmt: skip
        gw = harness.gateway(config, base_dir=str(tmp_path))
        assert wait_until(lambda: status_of(gw.port, "/one/x") == "A", 10)
        etcd.stop()
        etcd.start()
        etcd.headers = {}
        token = etcd.call("/v3/auth/authenticate", {"name": "root", "password": "s3cret"})
        etcd.headers = {"Authorization": str(token["token"])}
        etcd_put(etcd, "/r2/services/two", {"upstream": a.url, "prefix": "/two"})
        assert wait_until(lambda: status_of(gw.port, "/two/x") == "A", 15)


def test_credentials_given_before_etcd_enables_auth() -> None:
    """The usual rollout: the nodes get a user and password first, then etcd turns auth
    on. Before that, etcd refuses to authenticate anyone ("authentication is not
    enabled"): the client goes on without a token (as etcd's own client does), and
    authenticates once auth is on."""

    async def main(etcd: EtcdCluster) -> None:
        client = EtcdClient([etcd.url], username="root", password="s3cret")
        try:
            await client.put(b"/a1/k", b"1")
            assert (await client.get(b"/a1/k")) is not None
            revision = await client.revision()
            enable_auth(etcd, "s3cret")
            # The watch first: it is what a node does next, with no token yet.
            watch = client.watch(b"/a1/", revision + 1)
            first = asyncio.ensure_future(anext(watch))
            await client.put(b"/a1/k", b"2")
            batch = await asyncio.wait_for(first, 10)
            assert [e.kv.value for e in batch.events] == [b"2"]
            await watch.aclose()
            kv = await client.get(b"/a1/k")
            assert kv is not None and kv.value == b"2"
        finally:
            await client.close()

    with etcd_cluster() as etcd:
        asyncio.run(main(etcd))


def test_a_key_that_is_not_utf8_under_the_prefix_stops_nothing(
    harness: Harness, tmp_path: Path
) -> None:
    """Garbage under the prefix (a key written by another tool, not UTF-8): a key
    this version does not know, ignored; the changes around it still apply."""
    a = harness.aiohttp(named_app("A"))
    with etcd_cluster() as etcd:
        etcd_put(etcd, "/g1/services/one", {"upstream": a.url, "prefix": "/one"})
        gw = harness.gateway(node_config([etcd.url], "/g1", "g1"), base_dir=str(tmp_path))
        assert wait_until(lambda: status_of(gw.port, "/one/x") == "A", 10)
        value = json.dumps({"upstream": a.url, "prefix": "/bad"}).encode()
        etcd.call(
            "/v3/kv/put",
            {
                "key": b64encode(b"/g1/services/\xff\xfe").decode(),
                "value": b64encode(value).decode(),
            },
        )
        etcd_put(etcd, "/g1/services/two", {"upstream": a.url, "prefix": "/two"})
        assert wait_until(lambda: status_of(gw.port, "/two/x") == "A", 10)
        # A node started with it in the store starts as well.
        gw2 = harness.gateway(
            node_config([etcd.url], "/g1", "g2", cache_dir="cache2"), base_dir=str(tmp_path)
        )
        assert wait_until(lambda: status_of(gw2.port, "/two/x") == "A", 10)


def test_two_patches_in_a_row_both_hold(harness: Harness, tmp_path: Path) -> None:
    """A script PATCHes one field, then another, without `?wait=applied`: the second
    must be merged onto the first, not onto what this node serves (a coalescing
    window behind the store), which silently undid the first."""
    a = harness.aiohttp(named_app("A"))
    with etcd_cluster() as etcd:
        etcd_put(etcd, "/p1/services/one", {"upstream": a.url, "prefix": "/one"})
        # A long coalescing window: the second PATCH always comes before the node
        # serves the first.
        config = node_config([etcd.url], "/p1", "p1", coalesce=2, coalesce_max=2, coalesce_burst=2)
        gw = harness.gateway(config, base_dir=str(tmp_path))
        assert wait_until(lambda: status_of(gw.port, "/one/x") == "A", 10)
        port = admin_port(gw)
        status, _, body = admin_call(port, "PATCH", "/admin/services/one", {"read_timeout": 7})
        assert status == 200, body
        status, _, body = admin_call(port, "PATCH", "/admin/services/one", {"max_body_bytes": 1000})
        assert status == 200, body
        stored = etcd_get(etcd, "/p1/services/one")
        assert stored.get("read_timeout") == 7 and stored.get("max_body_bytes") == 1000, stored


def test_apply_in_several_transactions_says_what_a_conflict_left_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """More changes than --max-txn-ops go in several transactions, each compared: when
    a later one meets a change made meanwhile, the earlier ones are in the store. The
    error said "nothing of it was applied"."""
    with etcd_cluster() as etcd:
        etcd_put(etcd, "/ap/services/s3", {"upstream": "http://127.0.0.1:9", "prefix": "/old"})
        cluster = {
            "listeners": [{"address": "127.0.0.1:0"}],
            "config_store": {"type": "etcd", "endpoints": [etcd.url], "prefix": "/ap"},
            "services": [
                {"name": f"s{i}", "upstream": "http://127.0.0.1:9", "prefix": f"/s{i}"}
                for i in (1, 2, 3)
            ],
        }
        path = tmp_path / "cluster.yaml"
        path.write_text(json.dumps(cluster))
        real = EtcdClient.txn
        calls = 0

        async def txn(self: EtcdClient, *args: Any, **kwargs: Any) -> tuple[bool, int]:
            nonlocal calls
            result = await real(self, *args, **kwargs)
            calls += 1
            if calls == 1:  # another writer, between the two transactions
                etcd_put(etcd, "/ap/services/s3", {"upstream": "http://127.0.0.1:9"})
            return result

        monkeypatch.setattr(EtcdClient, "txn", txn)
        assert apply_command(str(path), None, None, dry_run=False, max_ops=2) == 1
        err = capsys.readouterr().err
        assert etcd_get(etcd, "/ap/services/s1") is not None  # the first transaction's
        assert "nothing of it was applied" not in err, err
        assert "1 of 2" in err, err


def test_client_certificates_and_a_first_endpoint_down_or_plain(
    harness: Harness, tmp_path: Path
) -> None:
    """etcd asking for client certificates (--client-cert-auth); the node's list
    starts with a member that is down and one named with the wrong scheme."""
    a = harness.aiohttp(named_app("A"))
    args = ("--client-cert-auth", "--trusted-ca-file", "{root}/ca.pem")
    with etcd_cluster(tls=True, args=args) as etcd:
        assert etcd.tls is not None
        etcd_put(etcd, "/c1/services/one", {"upstream": a.url, "prefix": "/one"})
        port = etcd.members[0].client_port
        endpoints = [f"https://127.0.0.1:{free_port()}", f"http://127.0.0.1:{port}", etcd.url]
        tls = {"ca": etcd.tls.ca, "cert": etcd.tls.cert, "key": etcd.tls.key}
        gw = harness.gateway(node_config(endpoints, "/c1", "c1", tls=tls), base_dir=str(tmp_path))
        assert wait_until(lambda: status_of(gw.port, "/one/x") == "A", 15)
        status, _, body = admin_call(
            admin_port(gw), "PUT", "/admin/services/two?wait=applied",
            {"upstream": a.url, "prefix": "/two"},
        )  # fmt: skip
        assert status == 201 and body["applied"] is True, body
        # Without the client certificate etcd refuses the node.
        store = config_from_data(
            node_config([etcd.url], "/c1", "c2", tls={"ca": etcd.tls.ca})
        ).config_store
        assert store is not None
        assert refused(make_client(store, str(tmp_path)))


def test_if_match_forms(harness: Harness, tmp_path: Path) -> None:
    """The ETag as given, weak, or unquoted is compared; one that is no revision at
    all is a bad request (it answered 412 "no longer at revision -1")."""
    a = harness.aiohttp(named_app("A"))
    with etcd_cluster() as etcd:
        revision = etcd_put(etcd, "/im/services/one", {"upstream": a.url, "prefix": "/one"})
        gw = harness.gateway(node_config([etcd.url], "/im", "im"), base_dir=str(tmp_path))
        assert wait_until(lambda: status_of(gw.port, "/one/x") == "A", 10)
        port = admin_port(gw)
        body = {"upstream": a.url, "prefix": "/one"}
        for tag in ('"abc"', "", '"12x"'):
            status, _, answer = admin_call(
                port, "PUT", "/admin/services/one", body, headers={"If-Match": tag}
            )
            assert status == 400 and "If-Match" in answer["detail"], (tag, answer)
        stale = f'"{revision - 1}"'
        status, _, _ = admin_call(port, "PUT", "/admin/services/one", body, {"If-Match": stale})
        assert status == 412
        for form in ('W/"{}"', "{}"):
            tag = form.format(revision)
            status, _, answer = admin_call(
                port, "PUT", "/admin/services/one", body, headers={"If-Match": tag}
            )
            assert status == 200, (tag, answer)
            revision = answer["revision"]


def jwt_keys(directory: Path) -> str:
    """etcd's --auth-token for JWT tokens signed with a new RSA key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private, public = directory / "jwt.key", directory / "jwt.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return f"jwt,pub-key={public},priv-key={private},sign-method=RS256,ttl=10m"


def test_jwt_tokens_outlived_by_an_auth_change(tmp_path: Path) -> None:
    """With JWT tokens, any change to etcd's users or roles (an operator adds a user)
    makes every token issued before it "revision of auth store is old" until it
    expires (minutes): the client must authenticate again, as etcd's own client
    does, not fail every write and every watch until then."""

    def add_user(etcd: EtcdCluster, name: str) -> None:
        etcd.call("/v3/auth/user/add", {"name": name, "password": "x"})
        # The test's own token is old now too.
        etcd.headers = {}
        token = etcd.call("/v3/auth/authenticate", {"name": "root", "password": "s3cret"})
        etcd.headers = {"Authorization": str(token["token"])}

    async def main(etcd: EtcdCluster) -> None:
        client = EtcdClient([etcd.url], username="root", password="s3cret")
        try:
            await client.put(b"/j1/a", b"1")  # authenticates
            add_user(etcd, "another")
            revision = await client.put(b"/j1/a", b"2")
            add_user(etcd, "a-third")
            watch = client.watch(b"/j1/", revision + 1)
            first = asyncio.ensure_future(anext(watch))
            etcd_put(etcd, "/j1/b", "3")
            batch = await asyncio.wait_for(first, 10)
            assert [e.kv.key for e in batch.events] == [b"/j1/b"]
            await watch.aclose()
        finally:
            await client.close()

    with etcd_cluster(args=("--auth-token", jwt_keys(tmp_path))) as etcd:
        enable_auth(etcd, "s3cret")
        asyncio.run(main(etcd))


def test_a_hung_member_first_in_the_list_is_passed_over() -> None:
    """A member that takes connections and never answers (SIGSTOP, a frozen VM): the
    requests after the one that found it hung, and the watch, go to the others. The
    client kept starting with it (the last that had answered), so each call spent
    its whole budget there and the node was cut off from a healthy cluster."""

    async def main(etcd: EtcdCluster) -> None:
        client = EtcdClient(etcd.endpoints, timeout=1.0)
        hung = etcd.members[0].proc
        assert hung is not None
        try:
            await client.put(b"/h1/a", b"1")  # the first member answers: preferred
            hung.send_signal(signal.SIGSTOP)
            assert wait_until(lambda: all_threads_stopped(hung.pid), 5.0)
            with contextlib.suppress(EtcdUnavailable):
                await client.put(b"/h1/a", b"2")  # may find it hung, and say so
            revision = await client.put(b"/h1/a", b"3")
            watch = client.watch(b"/h1/", revision + 1)
            first = asyncio.ensure_future(anext(watch))
            await client.put(b"/h1/b", b"4")
            batch = await asyncio.wait_for(first, 10)
            assert [e.kv.key for e in batch.events] == [b"/h1/b"]
            await watch.aclose()
        finally:
            hung.send_signal(signal.SIGCONT)
            await client.close()

    with etcd_cluster(3) as etcd:
        etcd.make_leader(1)  # no election while the first member is stopped
        asyncio.run(main(etcd))


def test_a_watch_on_a_member_that_lost_its_leader_ends() -> None:
    """A member cut off from the others keeps a watch open and sends nothing, while
    the writes go on through the rest of the cluster (and the node's keep-alive
    goes there too): the watch must end, as etcd's own client asks (require
    leader), so the node reconnects through a member that has one."""

    async def main(etcd: EtcdCluster) -> None:
        client = EtcdClient(etcd.endpoints, timeout=1.0)
        others = [m.proc for m in etcd.members[1:]]
        try:
            revision = await client.put(b"/l1/a", b"1")  # the first member answers
            watch = client.watch(b"/l1/", revision + 1)
            first = asyncio.ensure_future(anext(watch))
            # (A partition, on loopback: the member's peers stop answering it.)
            for proc in others:
                assert proc is not None
                proc.send_signal(signal.SIGSTOP)
            with pytest.raises(ConnectionError):
                await asyncio.wait_for(first, 30)
            await watch.aclose()
            # Opened again there, it is refused at once (and the next member tried).
            alone = EtcdClient(etcd.endpoints[:1], timeout=1.0)
            try:
                again = alone.watch(b"/l1/", revision + 1)
                with pytest.raises(EtcdUnavailable, match="no leader"):
                    await asyncio.wait_for(anext(again), 30)
            finally:
                await alone.close()
        finally:
            for proc in others:
                assert proc is not None
                proc.send_signal(signal.SIGCONT)
            await client.close()

    with etcd_cluster(3) as etcd:
        etcd.make_leader(1)
        asyncio.run(main(etcd))


def test_the_applied_state_holds_no_spec_parts(harness: Harness, tmp_path: Path) -> None:
    """A spec reaches the config through the cache's spec file: its compressed parts
    are no part of the state the node compares, keeps and hands to its workers."""
    a = harness.aiohttp(named_app("A"))
    spec = {**PETS_SPEC, "x-filler": os.urandom(200_000).hex()}
    data = spec_bytes(spec)
    digest, txns = spec_writes(Layout("/sp"), data)
    with etcd_cluster() as etcd:
        for ops in txns:
            for op in ops:
                etcd.call(
                    "/v3/kv/put",
                    {
                        "key": b64encode(op.key).decode(),
                        "value": b64encode(op.value or b"").decode(),
                    },
                )
        etcd_put(etcd, "/sp/services/pets", {"upstream": a.url, "openapi": SPEC_REF + digest})
        gw = harness.gateway(node_config([etcd.url], "/sp", "sp"), base_dir=str(tmp_path))
        agent = agent_of(gw)
        assert wait_until(lambda: agent.applied is not None, 10)
        assert agent.applied is not None
        assert list(agent.applied.objects) == ["/sp/services/pets"]
        state = tmp_path / "cache" / "state.json"
        assert wait_until(state.exists, 10)  # (written after the change is served)
        assert state.stat().st_size < len(data) // 10
        assert status_of(gw.port, "/pets") == "A"
