"""The node's disk cache: the last config it applied, to start from while etcd is down.

    <cache_dir>/state.json       the last applied state: revision, the config objects
    <cache_dir>/candidate.json   the state the agent hands to its workers (serve --workers)
    <cache_dir>/specs/<sha256>.json   each spec a state names, as a file of its own

Kong's model: a node that restarts while the store is unreachable serves the
config it last applied, marked stale, rather than nothing. Every file is
written atomically (temporary file, fsync, rename); spec files are
content-addressed, so a worker's spec cache (path, mtime, size) reuses the
parsed spec across changes.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from runmcp_fast.files import write_atomically
from runmcp_fast.problems import ConfigError, Problem


@dataclass
class CachedState:
    """A state as written: the config objects (key -> JSON text) at `revision`."""

    revision: int
    objects: dict[str, str]
    mod_revisions: dict[str, int] = field(default_factory=dict)
    written: float = 0.0
    """When it was written (wall clock): how stale a cold start from it may be."""

    def items(self) -> dict[bytes, bytes]:
        return {k.encode(): v.encode() for k, v in self.objects.items()}


class _File(msgspec.Struct):
    revision: int
    objects: dict[str, str]
    mod_revisions: dict[str, int] = {}
    written: float = 0.0
    prefix: str = ""


class DiskCache:
    def __init__(self, directory: str, prefix: str) -> None:
        self.directory = directory
        self.prefix = prefix
        self.specs = os.path.join(directory, "specs")

    def spec_path(self, digest: str) -> str:
        return os.path.join(self.specs, digest + ".json")

    def has_spec(self, digest: str) -> bool:
        return os.path.exists(self.spec_path(digest))

    def write_spec(self, digest: str, data: bytes) -> None:
        os.makedirs(self.specs, exist_ok=True)
        write_atomically(self.spec_path(digest), data)

    def write(self, name: str, state: CachedState) -> str:
        """Write `state` as `name` (state.json, candidate.json); its path."""
        os.makedirs(self.directory, exist_ok=True)
        path = os.path.join(self.directory, name)
        data = _File(
            revision=state.revision,
            objects=state.objects,
            mod_revisions=state.mod_revisions,
            written=state.written or time.time(),
            prefix=self.prefix,
        )
        write_atomically(path, msgspec.json.encode(data))
        return path

    def read(self, name: str = "state.json") -> CachedState | None:
        """The state kept as `name`, or None when there is none (or it is another
        cluster's). ConfigError for a damaged file: the node must not guess."""
        path = os.path.join(self.directory, name)
        try:
            raw = Path(path).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError([Problem(path, "", f"can not read the cache: {exc}", _FIX)]) from None
        try:
            data = msgspec.json.decode(raw, type=_File)
        except msgspec.DecodeError as exc:
            raise ConfigError([Problem(path, "", f"the cache is damaged: {exc}", _FIX)]) from None
        if data.prefix and data.prefix != self.prefix:
            return None
        return CachedState(data.revision, data.objects, data.mod_revisions, data.written)

    def prune_specs(self, keep: set[str]) -> None:
        """Remove the spec files no kept state names."""
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(self.specs):
                if name.endswith(".json") and name[:-5] not in keep:
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(self.specs, name))


_FIX = "remove it: the node then waits for etcd at start"


def encode_objects(items: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode("utf-8", "replace") for k, v in items.items()}
