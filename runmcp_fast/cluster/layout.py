"""The key layout in etcd, and the cluster config it describes.

Under the prefix (`/runmcp/<cluster>`), one JSON value per object:

    services/<name>                        a top-level service (as in the config file)
    tenants/<tenant>                       a tenant: {hosts: [...]} (its services apart)
    tenants/<tenant>/services/<name>       one service of a tenant
    consumers/<name>                       a consumer, credentials included
    plugins/<name>                         a global plugin's settings (top-level `plugins:`)
    settings                               {base_domain, tenancy, mcp_servers}
    specs/<sha256>                         an OpenAPI document's manifest (see below)
    specs/<sha256>/<n>                     its zlib-compressed bytes, in parts
    nodes/<node-id>                        a node's report, under its lease (not config)

A service's `openapi` in etcd is `sha256:<hex>`, the digest of the document's
JSON; the document is content-addressed, written before any service names it
and never changed. It is compressed and cut in parts of at most `SPEC_PART`
bytes, because etcd refuses a request over 1.5 MiB by default and GitHub's
spec is ~10 MB of JSON; the manifest is written last, so a reader that sees it
finds every part at a lower revision.

Everything node-local (listeners, limits, pool, admin, metrics, the store's
own settings) stays in the node's file.
"""

from __future__ import annotations

import hashlib
import logging
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from runmcp_fast.cluster.etcd_client import Event, KeyValue, TxnOp
from runmcp_fast.problems import Problem

log = logging.getLogger("runmcp_fast.cluster")

# etcd's default --max-request-bytes is 1.5 MiB; base64 in the JSON gateway adds
# a third: 512 KiB parts make requests of ~700 KB, well under it.
SPEC_PART = 512 * 1024
SPEC_REF = "sha256:"
# The config's keys that come from the store; the rest are the node's own.
CLUSTER_KEYS = (
    "services",
    "tenants",
    "consumers",
    "plugins",
    "base_domain",
    "tenancy",
    "mcp_servers",
)
SETTINGS_KEYS = ("base_domain", "tenancy", "mcp_servers")
# How many parsed keys a Layout keeps (emptied when full: a store of more keys
# than this only parses some of them again).
_REFS_KEPT = 200_000


@dataclass(frozen=True, slots=True)
class Ref:
    """What a key names: `kind` is services, tenants, consumers, plugins, settings,
    specs, spec-part or nodes."""

    kind: str
    name: str = ""
    tenant: str = ""


class Layout:
    """Keys under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.rstrip("/") + "/"
        self.root = self.prefix.encode()
        # PERF: every change parses every key of the store (its config items, their
        # mod_revisions, the config they make): ~2 us a key, ~7 ms of a 1,000-service
        # write in the agent. Keys are few and long-lived: each is parsed once.
        self._refs: dict[bytes, Ref | None] = {}

    def key(self, *parts: str) -> bytes:
        return (self.prefix + "/".join(parts)).encode()

    def service(self, tenant: str, name: str) -> bytes:
        return (
            self.key("tenants", tenant, "services", name) if tenant else self.key("services", name)
        )

    def tenant(self, name: str) -> bytes:
        return self.key("tenants", name)

    def consumer(self, name: str) -> bytes:
        return self.key("consumers", name)

    def plugin(self, name: str) -> bytes:
        return self.key("plugins", name)

    def settings(self) -> bytes:
        return self.key("settings")

    def spec(self, digest: str) -> bytes:
        return self.key("specs", digest)

    def spec_part(self, digest: str, index: int) -> bytes:
        return self.key("specs", digest, str(index))

    def node(self, node_id: str) -> bytes:
        return self.key("nodes", node_id)

    def nodes(self) -> bytes:
        return self.key("nodes", "")

    def parse(self, key: bytes) -> Ref | None:
        """What `key` names, or None for a key this version does not know."""
        try:
            return self._refs[key]
        except KeyError:
            pass
        if len(self._refs) >= _REFS_KEPT:
            self._refs.clear()
        ref = self._refs[key] = self._parse(key)
        return ref

    def _parse(self, key: bytes) -> Ref | None:
        if not key.startswith(self.root):
            return None
        try:
            text = key.decode()
        except UnicodeDecodeError:
            # Garbage under the prefix (written by another tool): it names no object
            # of ours. Parsed as one (its bad bytes replaced), its key reached the
            # strict decodes that index the node's objects and ETags, which raised
            # on every flush: the node applied no change again while it was there.
            log.warning("etcd key %r under %s is not UTF-8: ignored", key, self.prefix)
            return None
        parts = text[len(self.prefix) :].split("/")
        match parts:
            case ["services", name] if name:
                return Ref("services", name)
            case ["tenants", tenant] if tenant:
                return Ref("tenants", tenant)
            case ["tenants", tenant, "services", name] if tenant and name:
                return Ref("services", name, tenant)
            case ["consumers", name] if name:
                return Ref("consumers", name)
            case ["plugins", name] if name:
                return Ref("plugins", name)
            case ["settings"]:
                return Ref("settings")
            case ["specs", digest] if digest:
                return Ref("specs", digest)
            case ["specs", digest, _]:
                return Ref("spec-part", digest)
            case ["nodes", node] if node:
                return Ref("nodes", node)
        return None

    def label(self, key: bytes) -> str:
        """How a problem names the key: `etcd:/runmcp/prod/services/petstore`."""
        return "etcd:" + key.decode("utf-8", "replace")


class StoreState:
    """The keys under the prefix as of `revision` (what one node has read)."""

    def __init__(self, revision: int = 0, kvs: Iterable[KeyValue] = ()) -> None:
        self.revision = revision
        self.kvs: dict[bytes, KeyValue] = {kv.key: kv for kv in kvs}

    def apply(self, events: Iterable[Event]) -> None:
        for event in events:
            if event.deleted:
                self.kvs.pop(event.kv.key, None)
            else:
                self.kvs[event.kv.key] = event.kv
            self.revision = max(self.revision, event.kv.mod_revision)

    def config_items(self, layout: Layout) -> dict[bytes, bytes]:
        """The values that make the config (node reports, specs and unknown keys left
        out).

        Specs are content-addressed and reach the config through the disk cache's
        files (`_materialise`), never through these items. Kept in, their
        compressed parts (binary, mangled to text) went into every state the agent
        compares, writes (state.json, candidate.json: an 800 KB spec made a 1 MB
        state.json, rewritten on each change and read by every worker), and a spec
        stored or collected meanwhile made a compaction's resync rebuild.
        """
        out = {}
        for key, kv in self.kvs.items():
            ref = layout.parse(key)
            if ref is not None and ref.kind not in ("nodes", "specs", "spec-part"):
                out[key] = kv.value
        return out

    def mod_revisions(self, layout: Layout) -> dict[str, int]:
        """Each config object's mod_revision, by key (ETags and If-Match)."""
        return {
            key.decode(): kv.mod_revision
            for key, kv in self.kvs.items()
            if (ref := layout.parse(key)) is not None and ref.kind not in ("nodes", "spec-part")
        }


# -- specs -----------------------------------------------------------------------------


def spec_bytes(document: Any) -> bytes:
    """A spec document's canonical JSON (keys sorted): what is hashed and stored."""
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


def spec_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def spec_writes(layout: Layout, data: bytes) -> tuple[str, list[list[TxnOp]]]:
    """The digest of `data` (a spec's canonical JSON) and the transactions that store it.

    Each inner list is one transaction under the request limit: the parts first,
    the manifest alone at the end.
    """
    digest = spec_digest(data)
    packed = zlib.compress(data, 6)
    parts = [packed[i : i + SPEC_PART] for i in range(0, len(packed), SPEC_PART)] or [b""]
    manifest = orjson.dumps({"encoding": "zlib", "size": len(data), "parts": len(parts)})
    txns = [[TxnOp(layout.spec_part(digest, i), part)] for i, part in enumerate(parts)]
    txns.append([TxnOp(layout.spec(digest), manifest)])
    return digest, txns


class SpecProblem(Exception):
    pass


def read_spec(layout: Layout, items: dict[bytes, bytes], digest: str) -> bytes:
    """A spec's JSON from its manifest and parts in `items`; SpecProblem if incomplete."""
    manifest_raw = items.get(layout.spec(digest))
    if manifest_raw is None:
        raise SpecProblem(f"no spec {SPEC_REF}{digest} in the store")
    try:
        manifest = orjson.loads(manifest_raw)
        count = int(manifest["parts"])
        size = int(manifest["size"])
        if manifest.get("encoding") != "zlib":
            raise ValueError(f"unknown encoding {manifest.get('encoding')!r}")
        packed = b"".join(items[layout.spec_part(digest, i)] for i in range(count))
        data = zlib.decompress(packed)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, zlib.error) as exc:
        raise SpecProblem(f"spec {SPEC_REF}{digest} is damaged: {exc!r}") from None
    if len(data) != size or spec_digest(data) != digest:
        raise SpecProblem(f"spec {SPEC_REF}{digest} does not match its digest")
    return data


# -- the cluster's part of the config --------------------------------------------------


@dataclass
class ClusterConfig:
    """The store's objects as config data (the keys of CLUSTER_KEYS), with where each
    came from: `origins` maps a JSON pointer into `data` to the etcd key."""

    data: dict[str, Any]
    origins: dict[str, bytes]
    problems: list[Problem]
    specs: set[str]


def cluster_config(
    layout: Layout, items: dict[bytes, bytes], spec_path: Callable[[str], str]
) -> ClusterConfig:
    """The config data the store holds. A value that is not a JSON object is a
    problem naming its key; `spec_path(digest)` gives the file a service's spec
    is read from (the node's cache)."""
    services: dict[str, Any] = {}
    tenants: dict[str, dict[str, Any]] = {}
    tenant_services: dict[str, dict[str, Any]] = {}
    consumers: dict[str, Any] = {}
    plugins: dict[str, Any] = {}
    settings: dict[str, Any] = {}
    keys: dict[tuple[str, str, str], bytes] = {}
    problems: list[Problem] = []
    specs: set[str] = set()
    for key in sorted(items):
        ref = layout.parse(key)
        if ref is None or ref.kind in ("specs", "spec-part", "nodes"):
            continue
        try:
            value = orjson.loads(items[key])
        except orjson.JSONDecodeError as exc:
            problems.append(
                Problem(layout.label(key), "", f"not JSON: {exc}", "put a JSON object there")
            )
            continue
        if not isinstance(value, dict) and ref.kind != "plugins":
            problems.append(
                Problem(layout.label(key), "", "not a JSON object", "put a JSON object there")
            )
            continue
        keys[(ref.kind, ref.tenant, ref.name)] = key
        if ref.kind == "services":
            value = _with_spec(value, spec_path, specs)
            value["name"] = ref.name
            if ref.tenant:
                tenant_services.setdefault(ref.tenant, {})[ref.name] = value
            else:
                services[ref.name] = value
        elif ref.kind == "tenants":
            value.pop("services", None)
            tenants[ref.name] = {**value, "name": ref.name}
        elif ref.kind == "consumers":
            consumers[ref.name] = {**value, "name": ref.name}
        elif ref.kind == "plugins":
            plugins[ref.name] = value
        elif ref.kind == "settings":
            settings = value
    origins: dict[str, bytes] = {}
    data: dict[str, Any] = {}
    data["services"] = list(services.values())
    for i, name in enumerate(services):
        origins[f"/services/{i}"] = keys[("services", "", name)]
    data["tenants"] = []
    for i, (name, tenant) in enumerate(tenants.items()):
        origins[f"/tenants/{i}"] = keys[("tenants", "", name)]
        own = tenant_services.pop(name, {})
        tenant["services"] = list(own.values())
        for j, service in enumerate(own):
            origins[f"/tenants/{i}/services/{j}"] = keys[("services", name, service)]
        data["tenants"].append(tenant)
    problems.extend(
        Problem(
            layout.label(keys[("services", tenant_name, service)]),
            "",
            f"the tenant {tenant_name!r} does not exist",
            f"put {layout.tenant(tenant_name).decode()} first, or delete this key",
        )
        for tenant_name, orphans in tenant_services.items()
        for service in orphans
    )
    data["consumers"] = list(consumers.values())
    for i, name in enumerate(consumers):
        origins[f"/consumers/{i}"] = keys[("consumers", "", name)]
    data["plugins"] = plugins
    for name in plugins:
        origins[f"/plugins/{name}"] = keys[("plugins", "", name)]
    for name in SETTINGS_KEYS:
        if name in settings:
            data[name] = settings[name]
            origins[f"/{name}"] = keys[("settings", "", "")]
    unknown = set(settings) - set(SETTINGS_KEYS)
    if unknown:
        problems.append(
            Problem(
                layout.label(layout.settings()),
                f"/{sorted(unknown)[0]}",
                f"not a cluster setting: {', '.join(sorted(unknown))}",
                f"settings holds {', '.join(SETTINGS_KEYS)}; the rest is each node's file",
            )
        )
    return ClusterConfig(data, origins, problems, specs)


def _with_spec(
    value: dict[str, Any], spec_path: Callable[[str], str], specs: set[str]
) -> dict[str, Any]:
    openapi = value.get("openapi")
    if isinstance(openapi, str) and openapi.startswith(SPEC_REF):
        digest = openapi[len(SPEC_REF) :]
        specs.add(digest)
        return {**value, "openapi": spec_path(digest)}
    return dict(value)


def relocate(problem: Problem, origins: dict[str, bytes], layout: Layout, source: str) -> Problem:
    """A problem of the merged config, pointed at the etcd key its value came from."""
    if problem.file != source:
        return problem
    pointer = problem.pointer
    best = ""
    for prefix in origins:
        if (pointer == prefix or pointer.startswith(prefix + "/")) and len(prefix) > len(best):
            best = prefix
    if not best:
        return problem
    key = origins[best]
    rest = pointer[len(best) :]
    if layout.parse(key) == Ref("settings"):
        rest = pointer  # settings hold several top-level keys: keep the name
    return Problem(layout.label(key), rest, problem.message, problem.hint, problem.severity)
