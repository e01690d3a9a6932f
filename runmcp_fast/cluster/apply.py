"""`runmcp-fast apply gateway.yaml`: make the store hold what a config file says.

The file's services, tenants, consumers, global plugins and settings become
one object each (cluster/layout.py); the difference with the store is applied
in one transaction that compares every key it touches on the mod_revision it
was read at, so a change made meanwhile (by the admin API, another apply)
makes it fail whole instead of being overwritten. Specs are stored first,
under their digest, in transactions of their own (a 10 MB spec does not fit
in one request). `--dry-run` prints the difference and writes nothing.

etcd refuses a transaction of more than `--max-txn-ops` operations (128 by
default); a larger difference is applied in several, each still compared,
and the output says so.
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import msgspec
import orjson
import yaml

from runmcp_fast.cluster.agent import make_client
from runmcp_fast.cluster.errors import EtcdError
from runmcp_fast.cluster.etcd_client import Compare, TxnOp
from runmcp_fast.cluster.layout import SETTINGS_KEYS, SPEC_REF, Layout, spec_bytes, spec_writes
from runmcp_fast.cluster.specgc import spec_guards
from runmcp_fast.config import ConfigStoreConfig, GatewayConfig, TenancyConfig
from runmcp_fast.problems import ConfigError, Problem

# etcd's default --max-txn-ops.
MAX_TXN_OPS = 128


@dataclass
class Plan:
    puts: dict[bytes, bytes] = field(default_factory=dict)
    deletes: list[bytes] = field(default_factory=list)
    changed: set[bytes] = field(default_factory=set)
    specs: dict[str, bytes] = field(default_factory=dict)
    read_at: dict[bytes, int] = field(default_factory=dict)
    revision: int = 0

    @property
    def empty(self) -> bool:
        return not self.puts and not self.deletes


def _clean(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None and k != "name"}


def _spec_value(openapi: Any, base_dir: str, specs: dict[str, bytes], where: str) -> str:
    if isinstance(openapi, str) and openapi.startswith(SPEC_REF):
        return openapi
    if isinstance(openapi, str):
        path = os.path.join(base_dir, openapi)
        try:
            raw = Path(path).read_bytes()
            document = orjson.loads(raw) if raw.lstrip()[:1] == b"{" else yaml.safe_load(raw)
        except (OSError, orjson.JSONDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(
                [Problem(where, "/openapi", f"can not read {path}: {exc}", "fix the path")]
            ) from None
    else:
        document = openapi
    data = spec_bytes(document)
    digest, _ = spec_writes(Layout("/"), data)
    specs[digest] = data
    return SPEC_REF + digest


def desired(
    config: GatewayConfig, layout: Layout, source: str
) -> tuple[dict[bytes, Any], dict[str, bytes]]:
    """The objects the file describes (key -> value), and the specs they name."""
    specs: dict[str, bytes] = {}
    objects: dict[bytes, Any] = {}

    def service(tenant: str, svc: Any, where: str) -> None:
        data = _clean(msgspec.to_builtins(svc))
        if "openapi" in data:
            data["openapi"] = _spec_value(data["openapi"], config.base_dir, specs, where)
        objects[layout.service(tenant, svc.name)] = data

    for i, svc in enumerate(config.services):
        service("", svc, f"{source}#/services/{i}")
    for i, tenant in enumerate(config.tenants):
        objects[layout.tenant(tenant.name)] = {"hosts": list(tenant.hosts)}
        for j, svc in enumerate(tenant.services):
            service(tenant.name, svc, f"{source}#/tenants/{i}/services/{j}")
    for consumer in config.consumers:
        data = msgspec.to_builtins(consumer)
        objects[layout.consumer(consumer.name)] = {
            k: v for k, v in data.items() if v not in (None, [], {}) and k != "name"
        }
    for name, value in config.plugins.items():
        objects[layout.plugin(name)] = msgspec.to_builtins(value)
    settings = {}
    if config.base_domain is not None:
        settings["base_domain"] = config.base_domain
    if config.tenancy != TenancyConfig():
        settings["tenancy"] = msgspec.to_builtins(config.tenancy)
    if config.mcp_servers:
        settings["mcp_servers"] = msgspec.to_builtins(config.mcp_servers)
    assert set(settings) <= set(SETTINGS_KEYS)
    if settings:
        objects[layout.settings()] = settings
    # As the store gives them back (JSON: tuples are lists), so an unchanged file is
    # no difference.
    return {k: orjson.loads(orjson.dumps(v)) for k, v in objects.items()}, specs


async def plan(config: GatewayConfig, store: ConfigStoreConfig, source: str) -> Plan:
    layout = Layout(store.prefix)
    objects, specs = desired(config, layout, source)
    client = make_client(store, config.base_dir)
    try:
        revision, kvs = await client.range_prefix(layout.root)
    finally:
        await client.close()
    result = Plan(revision=revision)
    current: dict[bytes, Any] = {}
    for kv in kvs:
        ref = layout.parse(kv.key)
        if ref is None:
            continue
        if ref.kind == "specs":
            specs.pop(ref.name, None)  # stored already
            continue
        if ref.kind in ("spec-part", "nodes"):
            continue
        result.read_at[kv.key] = kv.mod_revision
        try:
            current[kv.key] = orjson.loads(kv.value)
        except orjson.JSONDecodeError:
            current[kv.key] = None  # damaged: replaced or deleted
    for key, value in objects.items():
        if current.get(key, ...) != value:
            result.puts[key] = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
            if key in current:
                result.changed.add(key)
    result.deletes = sorted(k for k in current if k not in objects)
    result.specs = specs
    return result


def show(result: Plan, out: TextIO) -> None:
    for digest, data in sorted(result.specs.items()):
        print(f"+ specs/{digest} ({len(data):,} bytes of JSON)", file=out)
    for key in sorted(result.puts):
        print(f"{'~' if key in result.changed else '+'} {key.decode()}", file=out)
    for key in result.deletes:
        print(f"- {key.decode()}", file=out)
    if result.empty and not result.specs:
        print(f"no difference (store at revision {result.revision})", file=out)


async def execute(
    result: Plan, config: GatewayConfig, store: ConfigStoreConfig, max_ops: int, out: TextIO
) -> tuple[int, int, int]:
    """Store the specs, then the difference; the revision written (0: a conflict),
    and how many of how many transactions of the difference were applied."""
    layout = Layout(store.prefix)
    client = make_client(store, config.base_dir)
    try:
        for data in result.specs.values():
            _, txns = spec_writes(layout, data)
            for ops in txns:
                await client.txn([], ops, timeout=max(store.timeout, 10.0))
        changes = [(k, TxnOp(k, v)) for k, v in sorted(result.puts.items())]
        changes += [(k, TxnOp(k)) for k in result.deletes]
        # Each batch also compares that the specs its objects name exist (spec GC).
        named = spec_guards(layout, list(result.puts.values()))
        size = max(1, max_ops - min(len(named), max_ops // 2))
        batches = [changes[i : i + size] for i in range(0, len(changes), size)] or [[]]
        if len(batches) > 1:
            print(
                f"{len(changes)} changes > {max_ops} per transaction: applied in"
                f" {len(batches)} transactions (raise etcd's --max-txn-ops for one)",
                file=out,
            )
        revision = result.revision
        done = 0
        for batch in batches:
            if not batch:
                continue
            compare: list[tuple[bytes, int] | Compare] = [
                (key, result.read_at.get(key, 0)) for key, _ in batch
            ]
            compare += spec_guards(layout, [op.value for _, op in batch if op.value is not None])
            ok, revision = await client.txn(compare, [op for _, op in batch])
            if not ok:
                return 0, done, len(batches)
            done += 1
        return revision, done, len(batches)
    finally:
        await client.close()


def apply_command(
    path: str, endpoints: list[str] | None, prefix: str | None, dry_run: bool, max_ops: int
) -> int:
    from runmcp_fast.config import load_config

    try:
        config = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    store = config.config_store
    if store is None and not endpoints:
        print(
            f"error: {path} has no config_store: give --endpoints (and --prefix)", file=sys.stderr
        )
        return 2
    if store is None:
        store = ConfigStoreConfig(type="etcd", endpoints=endpoints or [])
    changes: dict[str, Any] = {}
    if endpoints:
        changes["endpoints"] = endpoints
    if prefix:
        changes["prefix"] = prefix
    store = msgspec.structs.replace(store, **changes)

    async def main() -> int:
        try:
            result = await plan(config, store, path)
        except ConfigError as exc:
            for problem in exc.problems:
                print(f"error: {problem}", file=sys.stderr)
            return 2
        show(result, sys.stdout)
        if dry_run or (result.empty and not result.specs):
            return 0
        written, done, total = await execute(result, config, store, max_ops, sys.stdout)
        if not written:
            # Each transaction is compared on its own: the ones before the conflict
            # are in the store (this said "nothing of it was applied" regardless).
            applied = (
                f"{done} of {total} transactions of it were applied"
                if done
                else "nothing of it was applied"
            )
            print(
                f"error: the store changed while this ran: {applied}; run it again",
                file=sys.stderr,
            )
            return 1
        print(f"applied at revision {written} ({store.prefix})")
        return 0

    try:
        return asyncio.run(main())
    except EtcdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
