"""A config change leaves nothing for the cycle collector: what it frees, refcounting frees.

Each swap calls `gc.freeze()` (ControlPlane.swap): every object the collector tracks
then stays until the process ends, unless reference counting frees it. A snapshot's
part that sits in a reference cycle is never freed once the snapshot is replaced:
bench/soak found the plugin build (its config, registry and every plugin) kept
for each change, ~25 KB a change, because its BuildContext held a bound method of
it; and cyclic garbage that traffic left just before a swap was frozen with the
new snapshot (~80 KB per change under load). Checked in a child interpreter: `gc.unfreeze()` there sees only this test's
changes, not what earlier tests froze.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.metadata
import os
import sys
import tempfile
import time
import weakref
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from isolation import run_isolated

from runmcp_fast.config import config_from_data
from runmcp_fast.plugins import registry
from runmcp_fast.plugins.build import PluginBuild
from runmcp_fast.plugins.registry import registry_for

SPEC = {
    "openapi": "3.0.3",
    "info": {"title": "t", "version": "1"},
    "paths": {
        "/items/{id}": {
            "get": {
                "operationId": "getItem",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
                ],
                "responses": {"200": {"description": "ok"}},
            }
        }
    },
}
PLUGINS = {
    "headers": {"response": {"set": {"X-Gen": "0"}}},
    "key-auth": {"header": "apikey"},
}
CONSUMERS = [{"name": "alice", "key-auth": {"key": "secret-key"}}]


def _data(base_dir: str) -> dict[str, object]:
    return {
        "listeners": [{"address": "127.0.0.1:0"}],
        "plugins": {"request-id": {}},
        "consumers": CONSUMERS,
        "services": [
            {"name": "api", "upstream": "http://127.0.0.1:9", "openapi": SPEC, "plugins": PLUGINS}
        ],
    }


def test_a_plugin_build_is_freed_by_reference_counting() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = config_from_data(_data(tmp), source="<test>", base_dir=tmp)
        enabled = gc.isenabled()
        gc.disable()
        try:
            build = PluginBuild(config, "<test>")
            assert not build.problems
            gone = weakref.ref(build)
            del build
            assert gone() is None, gc.get_referrers(gone())
        finally:
            if enabled:
                gc.enable()


def changes_then_garbage(count: int) -> dict[str, int]:
    """In a child: a Gateway, `count` plugin and service changes, then what the
    cycle collector finds once everything frozen since the start is unfrozen (our
    objects only: the standard library's importlib.metadata leaves a few of its own)."""
    from runmcp_fast.gateway import Gateway

    async def run() -> dict[str, int]:
        with tempfile.TemporaryDirectory() as tmp:
            config = config_from_data(_data(tmp), source=str(Path(tmp) / "g.json"), base_dir=tmp)
            gateway = Gateway(config)
            await gateway.start()
            try:
                for n in range(count):
                    plugins = {**PLUGINS, "headers": {"response": {"set": {"X-Gen": str(n)}}}}
                    await gateway.update_service("api", plugins=plugins)
                    await gateway.register_service(
                        f"churn-{n}", url="http://127.0.0.1:9", prefix=f"/churn-{n}"
                    )
                    await gateway.unregister_service(f"churn-{n}")
                await asyncio.sleep(0.1)  # the build thread takes the old tables apart
                gc.unfreeze()
                gc.set_debug(gc.DEBUG_SAVEALL)
                gc.collect()
                found = Counter(
                    f"{type(o).__module__}.{type(o).__qualname__}"
                    for o in gc.garbage
                    if type(o).__module__.startswith("runmcp_fast")
                )
                gc.set_debug(0)
                gc.garbage.clear()
                return dict(found)
            finally:
                await gateway.stop()

    return asyncio.run(run())


def test_config_changes_leave_no_cyclic_garbage() -> None:
    assert run_isolated("test_reload_frozen_garbage", "changes_then_garbage", 5) == {}


class Node:
    """Garbage in a reference cycle, as traffic leaves some at any time."""

    def __init__(self) -> None:
        self.me = self


def garbage_at_a_change() -> bool:
    """In a child: is cyclic garbage that exists when a change starts still there after
    it? (The swap's freeze would keep it for good: bench/soak saw the gateway grow by
    ~80 KB per change under load.)"""
    from runmcp_fast.gateway import Gateway

    async def run() -> bool:
        with tempfile.TemporaryDirectory() as tmp:
            config = config_from_data(_data(tmp), source=str(Path(tmp) / "g.json"), base_dir=tmp)
            gateway = Gateway(config)
            await gateway.start()
            try:
                # No collection of its own may find it before the change does: the
                # build turns the collector off too, and the swap back on.
                gc.disable()
                node = Node()
                alive = weakref.ref(node)
                del node
                await gateway.register_service("more", url="http://127.0.0.1:9", prefix="/more")
                return alive() is not None
            finally:
                gc.enable()
                await gateway.stop()

    return asyncio.run(run())


def test_garbage_is_collected_before_a_swap_freezes_it() -> None:
    assert run_isolated("test_reload_frozen_garbage", "garbage_at_a_change") is False


def test_entry_points_are_scanned_again_only_when_sys_path_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each importlib.metadata scan leaves cyclic garbage that a later swap would keep:
    a build reuses the last scan while no directory on sys.path changed."""
    scans: list[str] = []
    real = importlib.metadata.entry_points

    def counting(**kwargs: Any) -> Any:
        scans.append(kwargs["group"])
        return real(**kwargs)

    monkeypatch.setattr(importlib.metadata, "entry_points", counting)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    monkeypatch.setattr(registry, "_scanned", None)
    first = registry._entry_points()
    assert registry._entry_points() == first
    registry_for(())
    assert len(scans) == 1
    # A package installed: its directory changes, so the next build looks again.
    (tmp_path / "newpkg-1.0.dist-info").mkdir()
    os.utime(tmp_path, ns=(1, time.time_ns() + 10**9))
    registry._entry_points()
    assert len(scans) == 2
