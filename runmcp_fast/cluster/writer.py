"""Writes to the store: the admin API's and the Python API's, as etcd transactions.

An object's ETag is its key's `mod_revision`; `If-Match` becomes a compare on
it, so of two writers holding the same ETag exactly one succeeds and the other
gets PreconditionFailed (412). A spec given inline, or as a file on this node,
is stored once under `specs/<sha256>` (parts first, manifest last) and the
service names it by digest. Each call has the store's `timeout` (2 s by
default): etcd down answers EtcdUnavailable (503) within it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import yaml

from runmcp_fast.cluster.errors import PreconditionFailed
from runmcp_fast.cluster.etcd_client import Compare, EtcdClient, TxnOp, prefix_end
from runmcp_fast.cluster.layout import SPEC_REF, Layout, spec_bytes, spec_writes
from runmcp_fast.cluster.node import ClusterNode
from runmcp_fast.cluster.specgc import spec_guards
from runmcp_fast.problems import ConfigError, Problem


class ClusterWriter:
    def __init__(self, client: EtcdClient, layout: Layout, node: ClusterNode, base_dir: str):
        self.client = client
        self.layout = layout
        self.node = node
        self.base_dir = base_dir
        self._stored_specs: set[str] = set()

    async def put(
        self, key: bytes, value: dict[str, Any], if_match: int | None
    ) -> tuple[int, bool]:
        """Put one object (compared on its mod_revision with If-Match): the write's
        revision, and whether the store held the key before it (200, not 201). Asked
        of the store in the same transaction: this node's view, or this worker's,
        may not serve the object yet though another worker's does."""
        value = {k: v for k, v in value.items() if k != "name"}
        data = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        compare: list[tuple[bytes, int] | Compare] = (
            [(key, if_match)] if if_match is not None else []
        )
        # The specs it names must still exist (a spec no object named may be collected).
        guards = spec_guards(self.layout, [data])
        answers: list[dict[str, Any]] = []
        ok, revision = await self.client.txn(
            [*compare, *guards], [TxnOp(key, data, prev_kv=True)], responses=answers
        )
        if not ok:
            for guard in guards:
                if await self.client.get(guard.key) is None:
                    self._stored_specs.clear()
                    raise ConfigError([_collected(guard.key.decode())])
            raise PreconditionFailed(key.decode(), if_match or 0)
        put = answers[0].get("response_put", {}) if answers else {}
        return revision, "prev_kv" in put

    async def delete(self, key: bytes, if_match: int | None, *, with_prefix: bool = False) -> int:
        """Delete one object (and with `with_prefix` every key under `key/`)."""
        ops = [TxnOp(key)]
        if with_prefix:
            ops.append(TxnOp(key + b"/", range_end=prefix_end(key + b"/")))
        compare = [(key, if_match)] if if_match is not None else []
        ok, revision = await self.client.txn(compare, ops)
        if not ok:
            raise PreconditionFailed(key.decode(), if_match or 0)
        return revision

    async def service_value(self, body: dict[str, Any]) -> dict[str, Any]:
        """A service as stored: its spec put in the store and named by digest."""
        openapi = body.get("openapi")
        if openapi is None or (isinstance(openapi, str) and openapi.startswith(SPEC_REF)):
            return body
        document = openapi if isinstance(openapi, dict) else self._read_spec(openapi)
        return {**body, "openapi": await self.store_spec(spec_bytes(document))}

    async def store_spec(self, data: bytes) -> str:
        """Store a spec's canonical JSON unless the store has it; its `sha256:` name."""
        digest, txns = spec_writes(self.layout, data)
        known = self.layout.spec(digest).decode() in self.node.mod_revisions
        if not known and digest not in self._stored_specs:
            for ops in txns:
                await self.client.txn([], ops, timeout=max(self.client.timeout, 10.0))
            self._stored_specs.add(digest)
        return SPEC_REF + digest

    def _read_spec(self, path: str) -> Any:
        full = os.path.join(self.base_dir, path)
        try:
            text = Path(full).read_bytes()
            return orjson.loads(text) if text.lstrip()[:1] in (b"{", b"[") else yaml.safe_load(text)
        except (OSError, orjson.JSONDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(
                [
                    Problem(
                        "<admin API>",
                        "/openapi",
                        f"can not read the spec {full}: {exc}",
                        "give the document inline, or a file this node can read",
                    )
                ]
            ) from None


def _collected(key: str) -> Problem:
    return Problem(
        "<admin API>",
        "/openapi",
        f"the spec {key} is no longer in the store (no object named it: it was collected)",
        "send the request again (with the spec itself if you named it by its digest)",
    )
