"""ControlPlane: the overlay on the base config, and reloads that must be refused whole."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvloop

from runmcp_fast.config import config_from_data, load_config
from runmcp_fast.control import BUILD_NICENESS, Overlay, _yield_to_serving, merge
from runmcp_fast.gateway import Gateway
from runmcp_fast.problems import ConfigError, SnapshotError

BASE: dict[str, Any] = {
    "listeners": [{"address": "127.0.0.1:0"}],
    "services": [
        {"name": "one", "upstream": "http://127.0.0.1:1", "prefix": "/one"},
        {"name": "two", "upstream": "http://127.0.0.1:2", "prefix": "/two"},
    ],
    "tenants": [
        {
            "name": "acme",
            "hosts": ["acme.test"],
            "services": [{"name": "one", "upstream": "http://127.0.0.1:3", "prefix": "/"}],
        }
    ],
    "watch": False,
}


def test_the_overlay_replaces_adds_and_deletes_in_place() -> None:
    base = config_from_data(BASE)
    overlay = Overlay(
        services={
            "two": {"upstream": "http://127.0.0.1:9", "prefix": "/2"},
            "three": {"upstream": "http://127.0.0.1:4", "prefix": "/three"},
            "one": None,
            "acme/extra": {"upstream": "http://127.0.0.1:5", "prefix": "/x"},
            "gone/x": {"upstream": "http://127.0.0.1:6", "prefix": "/x"},  # no such tenant
        },
        tenants={"globex": {"hosts": ["globex.test"], "services": []}},
    )
    data = merge(base, overlay)
    assert [(s["name"], s["prefix"]) for s in data["services"]] == [
        ("two", "/2"),
        ("three", "/three"),
    ]
    assert [t["name"] for t in data["tenants"]] == ["acme", "globex"]
    assert [s["name"] for s in data["tenants"][0]["services"]] == ["one", "extra"]
    # Deleting a tenant takes its services along.
    data = merge(base, Overlay(tenants={"acme": None}))
    assert data["tenants"] == []


def run(coro: Any) -> Any:
    return uvloop.run(coro)


def write(path: Path, data: dict[str, Any] | str) -> None:
    path.write_text(data if isinstance(data, str) else json.dumps(data))


@contextlib.asynccontextmanager
async def file_gateway(path: Path) -> AsyncIterator[Gateway]:
    """A started gateway on the config file `path` (reloadable), stopped at the end."""
    gateway = Gateway(load_config(path), source=str(path), config_path=str(path))
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()


@pytest.mark.parametrize(
    ("change", "pointer"),
    [
        # a duplicate service name
        (
            lambda d: d["services"].append(
                {"name": "one", "upstream": "http://127.0.0.1:7", "prefix": "/dup"}
            ),
            "/services/2/name",
        ),
        # a route another service has
        (
            lambda d: d["services"].append(
                {"name": "three", "upstream": "http://127.0.0.1:7", "prefix": "/one"}
            ),
            "/services/2",
        ),
        # a spec with a dangling $ref
        (
            lambda d: d["services"].append(
                {"name": "spec", "upstream": "http://127.0.0.1:7", "openapi": "bad.yaml"}
            ),
            "/services/2/openapi",
        ),
        # an unknown key
        (lambda d: d.update(servics=[]), "/servics"),
    ],
)
def test_a_reload_with_a_problem_is_refused_and_nothing_changes(
    tmp_path: Path, change: Any, pointer: str
) -> None:
    (tmp_path / "bad.yaml").write_text(
        "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths:\n  /s:\n    get:\n"
        "      parameters: [{$ref: '#/components/parameters/nope'}]\n"
        "      responses: {'200': {description: ok}}\n"
    )
    path = tmp_path / "gateway.yaml"
    write(path, BASE)

    async def scenario() -> None:
        async with file_gateway(path) as gateway:
            before = gateway.snapshot
            data = json.loads(json.dumps(BASE))
            change(data)
            write(path, data)
            with pytest.raises((ConfigError, SnapshotError)) as caught:
                await gateway.reload()
            assert any(p.pointer == pointer for p in caught.value.problems), caught.value
            assert gateway.snapshot is before
            assert gateway.control.last_error
            # Fixed: applied, and the error is cleared.
            write(path, {**BASE, "services": BASE["services"][:1]})
            snapshot = await gateway.reload()
            assert snapshot is not None and snapshot.generation == before.generation + 1
            assert [s.name for s in snapshot.services if not s.tenant] == ["one"]
            assert not gateway.control.last_error

    run(scenario())


def test_a_reload_keeps_what_the_api_changed_on_top(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    write(path, BASE)

    async def scenario() -> None:
        async with file_gateway(path) as gateway:
            await gateway.update_service("two", url="http://127.0.0.1:22")
            await gateway.register_service("api", url="http://127.0.0.1:8", prefix="/api")
            await gateway.unregister_service("one", tenant="acme")
            # The file changes something else: the API's changes stay on top.
            write(
                path,
                {
                    **BASE,
                    "services": [
                        *BASE["services"],
                        {"name": "four", "upstream": "http://127.0.0.1:4", "prefix": "/four"},
                    ],
                },
            )
            snapshot = await gateway.reload()
            assert snapshot is not None
            by_name = {s.label: s.config.upstreams for s in snapshot.services}
            assert by_name == {
                "one": ["http://127.0.0.1:1"],
                "two": ["http://127.0.0.1:22"],
                "four": ["http://127.0.0.1:4"],
                "api": ["http://127.0.0.1:8"],
            }
            with pytest.raises(KeyError):
                await gateway.unregister_service("nothing")
            with pytest.raises(KeyError):
                await gateway.update_service("one", tenant="acme", url="http://127.0.0.1:1")

    run(scenario())


def test_a_listener_change_waits_for_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    write(path, BASE)

    async def scenario() -> None:
        async with file_gateway(path) as gateway:
            addresses = list(gateway.addresses)
            write(
                path,
                {
                    **BASE,
                    "listeners": [{"address": "127.0.0.1:0"}, {"address": "127.0.0.1:0"}],
                    "limits": {"max_headers": 5},
                },
            )
            snapshot = await gateway.reload()
            assert snapshot is not None
            assert len(snapshot.config.listeners) == 1 and snapshot.config.limits.max_headers == 100
            assert gateway.addresses == addresses

    run(scenario())


def test_swaps_leave_nothing_behind_for_the_frozen_gc(tmp_path: Path) -> None:
    """Builds run with the cycle GC off and each swap freezes what is alive: a
    build that made cyclic garbage would leak it for good, once per swap."""
    import asyncio
    import gc

    spec = {
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/items/{id}": {
                "get": {"operationId": "get", "responses": {"200": {"description": "ok"}}}
            }
        },
    }
    data = {
        **BASE,
        "services": [
            *BASE["services"],
            {"name": "spec", "upstream": "http://127.0.0.1:5", "openapi": spec},
        ],
    }

    async def scenario() -> list[int]:
        gateway = Gateway(config_from_data(data))
        await gateway.start()
        counts = []
        try:
            loop = asyncio.get_running_loop()
            for i in range(12):
                await gateway.update_service("two", url=f"http://127.0.0.1:{20 + i % 3}")
                await gateway.update_service("spec", base_path=f"/v{i % 2}")
                # The replaced snapshot is taken apart on the build thread (one
                # worker): a no-op behind it there is the barrier, so the count
                # does not depend on whether that thread got to it yet.
                await loop.run_in_executor(gateway.control._executor, lambda: None)
                counts.append(gc.get_freeze_count())
        finally:
            await gateway.stop()
        return counts

    counts = run(scenario())
    # After a few swaps to warm caches, the frozen set stays the same size: one
    # object left over per swap shows (the barrier above makes it exact).
    assert counts[3:] == [counts[3]] * (len(counts) - 3), counts


def test_closed_connections_are_freed_without_the_cycle_gc() -> None:
    """Client and upstream connections break their cycles when they close: garbage
    left for the cycle GC would be frozen for good by the next reload.

    With the cycle GC off, a closed connection is freed by reference counting or
    never: the test waits (bounded) until none is alive, then says which were left
    in cycles if some were."""
    import asyncio
    import gc

    from aiohttp import web
    from servers import wait_until_async

    from runmcp_fast._dataplane import ClientProtocol, UpstreamConnection

    kinds = (ClientProtocol, UpstreamConnection)
    # Connections of other tests still alive in this process are not this test's:
    # held here (so their ids stay theirs) and left out of the count. (isinstance:
    # a plain upstream's connection is a subclass, the buffered one.)
    gc.collect()
    others = [o for o in gc.get_objects() if isinstance(o, kinds)]
    other_ids = {id(o) for o in others}

    def alive(kind: type) -> int:
        return sum(isinstance(o, kind) and id(o) not in other_ids for o in gc.get_objects())

    async def scenario() -> dict[str, Any]:
        async def ok(request: web.Request) -> web.Response:
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_get("/{tail:.*}", ok)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        config = {
            **BASE,
            "services": [{"name": "up", "upstream": f"http://127.0.0.1:{port}", "prefix": "/"}],
        }
        gateway = Gateway(config_from_data(config), source="<test>")
        await gateway.start()
        gw_port = int(gateway.addresses[0].rsplit(":", 1)[1])
        out: dict[str, Any] = {}
        gc.collect()
        gc.disable()
        try:
            # One connection held open: the count sees live connections (it could fail).
            reader, writer = await asyncio.open_connection("127.0.0.1", gw_port)
            writer.write(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
            await reader.readuntil(b"ok")
            out["while open"] = [alive(kind) for kind in kinds]
            writer.close()
            for _ in range(5):
                reader, writer = await asyncio.open_connection("127.0.0.1", gw_port)
                writer.write(b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                await reader.read()
                writer.close()
            out["clients freed"] = await wait_until_async(lambda: alive(ClientProtocol) == 0)
            gateway.pools.close()  # the upstream connections close too
            out["upstreams freed"] = await wait_until_async(lambda: alive(UpstreamConnection) == 0)
            out["pools open"] = [pool.open_count for pool in gateway.pools.all()]
            gc.set_debug(gc.DEBUG_SAVEALL)
            gc.collect()
            out["in cycles"] = sorted(
                {type(o).__name__ for o in gc.garbage if isinstance(o, kinds)}
            )
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
            await gateway.stop()
            await runner.cleanup()
        return out

    out = run(scenario())
    assert out["while open"][0] == 1 and out["while open"][1] >= 1, out
    assert out["in cycles"] == [], out
    assert out["clients freed"] and out["upstreams freed"], out
    assert out["pools open"] == [0] * len(out["pools open"]), out


def test_the_build_thread_yields_the_cpu_to_serving_threads_and_only_it() -> None:
    """control._yield_to_serving (the build thread's initializer) lowers the priority of
    the thread it runs on (nice +BUILD_NICENESS, Linux: per thread), not the process's:
    the event loop's thread keeps serving at full priority."""
    if not hasattr(os, "getpriority") or not os.path.isdir("/proc/self/task"):
        pytest.skip("per-thread priorities are Linux's")
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen: list[int] = []

    def build_thread() -> None:
        _yield_to_serving()
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    thread = threading.Thread(target=build_thread)
    thread.start()
    thread.join(10)
    assert seen == [min(before + BUILD_NICENESS, 19)]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before
