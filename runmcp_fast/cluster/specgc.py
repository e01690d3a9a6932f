"""Spec garbage collection: `specs/<sha256>` no object names any more is deleted.

Specs are content-addressed and written before the service that names them,
so nothing deletes one on the way. Each node's agent sweeps every `spec_gc`
seconds; a spec (its manifest and parts) is a candidate when no config object
names it, and is deleted when the next sweep still finds it unused and
unchanged: a writer between storing a spec and naming it has a whole sweep
interval. Two guards make it safe against concurrent writers at any timing:

- the delete is one transaction that holds only if no config object was
  written since the revision the sweep read (`Compare.unchanged_since` on each
  config prefix): a service that named the spec meanwhile makes it fail;
- every write that names a spec compares that the spec's manifest exists
  (`spec_guards`): a spec deleted first makes that write fail instead of
  leaving a service naming nothing.

Several nodes sweeping at once is harmless: the first delete wins, the others
find nothing or fail their compare.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from runmcp_fast.cluster.etcd_client import Compare, EtcdClient, TxnOp, prefix_end
from runmcp_fast.cluster.layout import Layout, StoreState

_DIGEST = re.compile(rb"sha256:([0-9a-f]{64})")
# The prefixes of the objects that may name a spec.
_CONFIG_PREFIXES = ("services/", "tenants/", "consumers/", "plugins/", "settings")
# etcd's default --max-txn-ops is 128: each spec costs two deletes, the compares 5.
_PER_TXN = 50


def spec_refs(value: bytes) -> set[str]:
    """The digests a stored object names (anything that looks like one counts: a
    spec mentioned anywhere is kept)."""
    return {m.decode() for m in _DIGEST.findall(value)}


def spec_guards(layout: Layout, values: list[bytes]) -> list[Compare]:
    """The compares a write of `values` needs: every spec they name still exists."""
    digests = set().union(*(spec_refs(v) for v in values)) if values else set()
    return [Compare.exists(layout.spec(d)) for d in sorted(digests)]


@dataclass
class SpecCollector:
    layout: Layout
    # Unused specs of the last sweep: digest -> the newest mod_revision of its keys.
    candidates: dict[str, int] = field(default_factory=dict)
    deleted: int = 0
    """Specs deleted by this node (tests, logs)."""

    def unused(self, state: StoreState) -> dict[str, int]:
        """The specs (manifest or parts) no config object names, as of `state`."""
        named: set[str] = set()
        specs: dict[str, int] = {}
        for key, kv in state.kvs.items():
            ref = self.layout.parse(key)
            if ref is None or ref.kind == "nodes":
                continue
            if ref.kind in ("specs", "spec-part"):
                specs[ref.name] = max(specs.get(ref.name, 0), kv.mod_revision)
            else:
                named |= spec_refs(kv.value)
        return {d: rev for d, rev in specs.items() if d not in named}

    async def sweep(self, client: EtcdClient, state: StoreState) -> int:
        """One sweep at `state` (the agent's view); the number of specs deleted."""
        unused = self.unused(state)
        # Unused twice in a row, and not rewritten in between.
        ripe = sorted(d for d, rev in unused.items() if self.candidates.get(d) == rev)
        self.candidates = {d: rev for d, rev in unused.items() if d not in ripe}
        guards = [
            Compare.unchanged_since(self.layout.key(p), state.revision)
            if p.endswith("/")
            else Compare(self.layout.key(p), state.revision + 1, "LESS")
            for p in _CONFIG_PREFIXES
        ]
        done = 0
        for i in range(0, len(ripe), _PER_TXN):
            ops = []
            for digest in ripe[i : i + _PER_TXN]:
                manifest = self.layout.spec(digest)
                ops.append(TxnOp(manifest))
                ops.append(TxnOp(manifest + b"/", range_end=prefix_end(manifest + b"/")))
            ok, _ = await client.txn(list(guards), ops)
            if not ok:
                # A config object changed since the sweep read: the next sweep decides.
                break
            done += len(ops) // 2
        self.deleted += done
        return done
