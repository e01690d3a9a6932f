"""Spec garbage collection in etcd (real etcd on loopback): a spec no object names is
deleted after two sweeps in a row, a named one never is; a sweep that raced a write
naming the spec deletes nothing, and a write naming a deleted spec fails."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from etcd_server import EtcdCluster, etcd_cluster

from runmcp_fast.cluster.etcd_client import Compare, EtcdClient, TxnOp
from runmcp_fast.cluster.layout import SPEC_REF, Layout, StoreState, spec_bytes, spec_writes
from runmcp_fast.cluster.specgc import SpecCollector, spec_guards, spec_refs
from runmcp_fast.config import config_from_data


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdCluster]:
    with etcd_cluster() as cluster:
        yield cluster


def spec(title: str) -> bytes:
    return spec_bytes({"openapi": "3.0.3", "info": {"title": title, "version": "1"}, "paths": {}})


async def store(client: EtcdClient, layout: Layout, data: bytes, *, manifest: bool = True) -> str:
    digest, txns = spec_writes(layout, data)
    for ops in txns if manifest else txns[:-1]:
        assert (await client.txn([], ops))[0]
    return digest


async def state_of(client: EtcdClient, layout: Layout) -> StoreState:
    return StoreState(*await client.range_prefix(layout.root))


async def keys(client: EtcdClient, layout: Layout, digest: str) -> int:
    _, kvs = await client.range_prefix(layout.spec(digest))
    return len(kvs)


def service(digest: str) -> bytes:
    return json.dumps({"upstream": "http://127.0.0.1:1", "openapi": SPEC_REF + digest}).encode()


def test_unused_specs_are_deleted_after_two_sweeps(etcd: EtcdCluster) -> None:
    layout = Layout("/gc1")

    async def main() -> None:
        client = EtcdClient([etcd.url])
        try:
            named = await store(client, layout, spec("named"))
            await client.put(layout.service("", "s"), service(named))
            tenant_named = await store(client, layout, spec("tenant's"))
            await client.put(layout.service("t", "s"), service(tenant_named))
            unused = await store(client, layout, spec("unused"))
            # A writer that died between the parts and the manifest.
            orphan = await store(client, layout, spec("orphan"), manifest=False)
            collector = SpecCollector(layout)
            assert await collector.sweep(client, await state_of(client, layout)) == 0
            assert set(collector.candidates) == {unused, orphan}
            assert await collector.sweep(client, await state_of(client, layout)) == 2
            assert await keys(client, layout, unused) == 0
            assert await keys(client, layout, orphan) == 0
            assert await keys(client, layout, named) == 2  # manifest and one part
            assert await keys(client, layout, tenant_named) == 2
            # Unnamed once its service is deleted: two sweeps later, gone.
            await client.delete_prefix(layout.service("", "s"))
            assert await collector.sweep(client, await state_of(client, layout)) == 0
            assert await collector.sweep(client, await state_of(client, layout)) == 1
            assert await keys(client, layout, named) == 0
            assert collector.deleted == 3
        finally:
            await client.close()

    asyncio.run(main())


def test_a_spec_stored_again_between_sweeps_is_a_new_candidate(etcd: EtcdCluster) -> None:
    layout = Layout("/gc2")

    async def main() -> None:
        client = EtcdClient([etcd.url])
        try:
            digest = await store(client, layout, spec("again"))
            collector = SpecCollector(layout)
            await collector.sweep(client, await state_of(client, layout))
            await store(client, layout, spec("again"))  # a writer about to name it
            assert await collector.sweep(client, await state_of(client, layout)) == 0
            assert await keys(client, layout, digest) == 2
        finally:
            await client.close()

    asyncio.run(main())


def test_a_sweep_racing_a_write_that_names_the_spec_deletes_nothing(etcd: EtcdCluster) -> None:
    layout = Layout("/gc3")

    async def main() -> None:
        client = EtcdClient([etcd.url])
        try:
            digest = await store(client, layout, spec("raced"))
            collector = SpecCollector(layout)
            await collector.sweep(client, await state_of(client, layout))
            # The sweep reads the store, then a service naming the spec is written
            # before the delete: the delete's compare fails, the spec stays.
            seen = await state_of(client, layout)
            ok, _ = await client.txn(
                spec_guards(layout, [service(digest)]),
                [TxnOp(layout.service("", "late"), service(digest))],
            )
            assert ok
            assert await collector.sweep(client, seen) == 0
            assert await keys(client, layout, digest) == 2
            # ... and the next sweep sees it named.
            assert await collector.sweep(client, await state_of(client, layout)) == 0
            assert collector.candidates == {}
        finally:
            await client.close()

    asyncio.run(main())


def test_a_write_naming_a_deleted_spec_fails(etcd: EtcdCluster) -> None:
    layout = Layout("/gc4")

    async def main() -> None:
        client = EtcdClient([etcd.url])
        try:
            digest = await store(client, layout, spec("gone"))
            collector = SpecCollector(layout)
            await collector.sweep(client, await state_of(client, layout))
            assert await collector.sweep(client, await state_of(client, layout)) == 1
            ok, _ = await client.txn(
                spec_guards(layout, [service(digest)]),
                [TxnOp(layout.service("", "late"), service(digest))],
            )
            assert not ok
            assert await client.get(layout.service("", "late")) is None
        finally:
            await client.close()

    asyncio.run(main())


def test_compares_on_ranges_and_creation(etcd: EtcdCluster) -> None:
    async def main() -> None:
        client = EtcdClient([etcd.url])
        try:
            revision = await client.put(b"/gc5/a/x", b"1")
            ok, _ = await client.txn([Compare.unchanged_since(b"/gc5/a/", revision)], [])
            assert ok
            await client.put(b"/gc5/a/y", b"2")
            ok, _ = await client.txn([Compare.unchanged_since(b"/gc5/a/", revision)], [])
            assert not ok
            ok, _ = await client.txn([Compare.unchanged_since(b"/gc5/empty/", revision)], [])
            assert ok
            assert (await client.txn([Compare.exists(b"/gc5/a/x")], []))[0]
            assert not (await client.txn([Compare.exists(b"/gc5/nothing")], []))[0]
        finally:
            await client.close()

    asyncio.run(main())


def test_spec_refs_and_the_setting() -> None:
    digest = "ab" * 32
    assert spec_refs(service(digest)) == {digest}
    assert spec_refs(b'{"upstream": "http://x"}') == set()
    base = {"listeners": [{"address": "127.0.0.1:0"}]}
    store = {"type": "etcd", "endpoints": ["http://127.0.0.1:2379"]}
    config = config_from_data({**base, "config_store": store})
    assert config.config_store is not None and config.config_store.spec_gc == 600
    with pytest.raises(Exception, match="spec_gc"):
        config_from_data({**base, "config_store": {**store, "spec_gc": -1}})
