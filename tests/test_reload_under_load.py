"""Live config changes under load: register, update and remove services through
each door (the Python API, the admin REST API, the config file) while clients
keep sending requests over keep-alive and pipelined connections.

Every upstream answers with its own name, and every request carries a unique
path that the upstream echoes, so a response can be checked against the config
that was running when it was routed. The test thread marks each change as
*begun* before it asks for it and *applied* once the gateway says it is done; a
client reads "applied" before it sends and "begun" after it has its answer, so
the response must come from one of the configs in between: from the upstream
one of them names, or a 404 only when one of them lacks the service. After each
change the test waits until every connection has been answered under the new
config alone (no timing thresholds: a bounded wait for progress), so each
connection is seen to pick the new config up on its next request.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from servers import GatewayThread, Harness, LoopThread, RawClient, wait_event, wait_until

from runmcp_fast.config import load_config
from runmcp_fast.gateway import Gateway
from runmcp_fast.problems import ConfigError, SnapshotError
from runmcp_fast.snapshot import Snapshot

SWAPS = 100
TOKEN = "t"
# The upstreams a changing service is moved between; "S" serves the stable service only.
MOVING = ("A", "B", "C")
STABLE = "S"
# A spec whose one operation is GET /items/{id}; mounted with base_path /<service>.
SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "items", "version": "1"},
    "paths": {"/items/{id}": {"get": {"responses": {"200": {"description": "an item"}}}}},
}


# -- upstreams that say who they are -------------------------------------------------


class Holds:
    """Requests an upstream keeps waiting (`?hold=TOKEN`) until the test releases them."""

    def __init__(self) -> None:
        self.arrived: dict[str, threading.Event] = {}
        self.release: dict[str, threading.Event] = {}

    def add(self, token: str) -> tuple[threading.Event, threading.Event]:
        self.arrived[token] = threading.Event()
        self.release[token] = threading.Event()
        return self.arrived[token], self.release[token]


def identity_app(name: str, holds: Holds) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        token = request.query.get("hold")
        if token is not None:
            holds.arrived[token].set()
            await wait_event(holds.release[token], 20)
        return web.json_response(
            {"upstream": name, "path": request.raw_path}, headers={"X-Upstream": name}
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


# -- gateways --------------------------------------------------------------------------


class FileGateway:
    """A `Gateway` made from a config file (so it reloads it), on `loop_thread`."""

    def __init__(self, path: Path, loop_thread: LoopThread) -> None:
        self.path = path
        self.loop_thread = loop_thread
        self.gateway = Gateway(load_config(path), source=str(path), config_path=str(path))
        loop_thread.run(self.gateway.start())
        self.port = int(self.gateway.addresses[0].rsplit(":", 1)[1])

    def stop(self) -> None:
        self.loop_thread.run(self.gateway.stop(2.0), timeout=60)


def write_atomically(path: Path, data: dict[str, Any]) -> None:
    """Write the config as a whole: a reader sees the old file or the new one."""
    fd, tmp = tempfile.mkstemp(prefix=".gateway-", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        json.dump(data, file)  # JSON is YAML
    os.replace(tmp, path)


class Env:
    """Upstreams S, A, B, C and the gateways of one test."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.h = Harness()
        self.holds = Holds()
        self._file_gateways: list[FileGateway] = []
        self._loads: list[Load] = []
        try:
            self.upstreams = {
                name: self.h.aiohttp(identity_app(name, self.holds)) for name in (STABLE, *MOVING)
            }
        except BaseException:
            self.h.close()
            raise

    def url(self, upstream: str) -> str:
        return self.upstreams[upstream].url

    def service(self, name: str, upstream: str, variant: str = "prefix") -> dict[str, Any]:
        """Service `name` at /<name> on `upstream`: a prefix route, or the spec's operation."""
        if variant == "prefix":
            return {"name": name, "upstream": self.url(upstream), "prefix": f"/{name}"}
        return {
            "name": name,
            "upstream": self.url(upstream),
            "openapi": SPEC,
            "base_path": f"/{name}",
        }

    def config(
        self, moving: dict[str, str], *, admin: bool = False, **extra: Any
    ) -> dict[str, Any]:
        """`stable` on S plus one prefix service per `moving` entry (name -> upstream)."""
        services = [self.service("stable", STABLE)]
        services += [self.service(name, upstream) for name, upstream in moving.items()]
        data: dict[str, Any] = {"services": services, **extra}
        if admin:
            data["admin"] = {"address": "127.0.0.1:0", "token": TOKEN}
        return data

    def gateway(self, data: dict[str, Any]) -> GatewayThread:
        return self.h.gateway(data)

    def file_gateway(self, data: dict[str, Any]) -> FileGateway:
        data = {"listeners": [{"address": "127.0.0.1:0"}], **data}
        path = self.tmp_path / "gateway.yaml"
        write_atomically(path, data)
        gateway = FileGateway(path, self.h.gateway_loop)
        self._file_gateways.append(gateway)
        return gateway

    def load(self, port: int, moving: dict[str, str | None]) -> Load:
        load = Load(port, moving)
        self._loads.append(load)
        return load

    def close(self) -> None:
        try:
            for load in self._loads:
                load.stop(check=False)
            for gateway in self._file_gateways:
                gateway.stop()
        finally:
            self.h.close()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    environment = Env(tmp_path)
    yield environment
    environment.close()


def generation(gateway: Gateway, loop_thread: LoopThread) -> int:
    return loop_thread.call(lambda: gateway.control.generation)


# -- the load generator -----------------------------------------------------------------


@dataclass
class Record:
    client: int
    before: int  # the last change applied when the request was sent
    after: int  # the last change begun when its response was in
    service: str
    path: str
    status: int
    upstream: str | None
    echo: str | None
    problem: bool


def request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: gateway.test\r\n\r\n".encode()


class Load:
    """Keep-alive and pipelined clients sending to `stable` and to each moving service.

    Each round of a client asks `stable` and every moving service once: three
    clients one request at a time on one keep-alive connection each, one
    client pipelining two rounds at once on its connection. Bounded: a client
    stops when told, after `max_rounds` rounds or after `time_limit` seconds.
    """

    def __init__(
        self,
        port: int,
        moving: dict[str, str | None],
        *,
        keepalive: int = 3,
        pipelined: int = 1,
        max_rounds: int = 200_000,
        time_limit: float = 45.0,
    ) -> None:
        self.port = port
        self.names = sorted(moving)
        # states[k]: each moving service's upstream after change k (None: absent).
        self.states: list[dict[str, str | None]] = [dict(moving)]
        self.begun = 0
        self.applied_ = 0
        self.records: list[Record] = []
        self.errors: list[str] = []
        self.cond = threading.Condition()
        self.max_rounds = max_rounds
        self.deadline = time.monotonic() + time_limit
        self._stop = threading.Event()
        depths = [1] * keepalive + [2] * pipelined
        # progress[i]: the highest `before` of a round client i has completed.
        self.progress = [-1] * len(depths)
        self.threads = [
            threading.Thread(target=self._client, args=(i, depth), daemon=True)
            for i, depth in enumerate(depths)
        ]
        for thread in self.threads:
            thread.start()

    # -- the test thread's side

    @property
    def state(self) -> dict[str, str | None]:
        return self.states[-1]

    def begin(self, **changes: str | None) -> None:
        """Say a change is on its way: from now on its config may answer."""
        with self.cond:
            self.states.append({**self.states[-1], **changes})
            self.begun = len(self.states) - 1

    def applied(self) -> None:
        """Say the change begun last is in place: requests sent from now on see it."""
        with self.cond:
            self.applied_ = self.begun

    def change(self, apply: Callable[[], Any], **changes: str | None) -> Any:
        """begin, apply, applied, then wait until every connection was answered under it."""
        self.begin(**changes)
        result = apply()
        self.applied()
        self.wait_progress()
        return result

    def wait_progress(self, timeout: float = 20.0) -> None:
        """Wait until every client finished a round sent after the last applied change."""
        target = self.applied_
        with self.cond:
            ok = self.cond.wait_for(
                lambda: bool(self.errors) or all(p >= target for p in self.progress), timeout
            )
        assert not self.errors, self.errors
        assert ok, f"the load stalled: progress {self.progress}, waiting for {target}"

    def stop(self, check: bool = True) -> None:
        self._stop.set()
        for thread in self.threads:
            thread.join(30)
        if check:
            assert not any(t.is_alive() for t in self.threads), "a load client hangs"

    # -- the clients

    def _client(self, index: int, depth: int) -> None:
        try:
            client = RawClient(self.port, timeout=20.0)
        except OSError as exc:
            with self.cond:
                self.errors.append(f"client {index}: can not connect: {exc!r}")
                self.cond.notify_all()
            return
        n = 0
        try:
            while not self._stop.is_set() and n < self.max_rounds:
                if time.monotonic() > self.deadline:
                    break
                paths: list[tuple[str, str]] = []
                for _ in range(depth):
                    n += 1
                    paths.append(("stable", f"/stable/c{index}-{n}"))
                    paths += [(name, f"/{name}/items/c{index}-{n}") for name in self.names]
                before = self.applied_
                responses: list[tuple[int, dict[str, str], bytes]] = []
                if depth == 1:
                    for _, path in paths:
                        client.send(request(path))
                        responses.append(client.read_response())
                else:
                    client.send(b"".join(request(path) for _, path in paths))
                    responses = [client.read_response() for _ in paths]
                after = self.begun
                records = [
                    self._record(index, before, after, service, path, response)
                    for (service, path), response in zip(paths, responses, strict=True)
                ]
                with self.cond:
                    self.records.extend(records)
                    self.progress[index] = max(self.progress[index], before)
                    self.cond.notify_all()
        except Exception as exc:
            with self.cond:
                self.errors.append(f"client {index} (round {n}): {exc!r}")
                self.cond.notify_all()
        finally:
            client.close()

    @staticmethod
    def _record(
        index: int,
        before: int,
        after: int,
        service: str,
        path: str,
        response: tuple[int, dict[str, str], bytes],
    ) -> Record:
        status, headers, body = response
        upstream = echo = None
        if status == 200:
            try:
                doc = json.loads(body)
                upstream, echo = doc["upstream"], doc["path"]
            except (ValueError, KeyError):
                upstream = f"<unreadable body {body[:100]!r}>"
            if headers.get("x-upstream") != upstream:
                upstream = f"<header {headers.get('x-upstream')!r}, body {upstream!r}>"
        problem = headers.get("content-type") == "application/problem+json"
        return Record(index, before, after, service, path, status, upstream, echo, problem)

    # -- the verdict

    def failures(self) -> list[str]:
        """Every request answered other than its config allows (empty: none)."""
        out = list(self.errors)
        for r in self.records:
            if r.service == "stable":
                allowed: set[str | None] = {STABLE}
            else:
                allowed = {s[r.service] for s in self.states[r.before : r.after + 1]}
            if r.status == 200:
                ok = r.upstream in allowed and r.echo == r.path
            elif r.status == 404:
                ok = None in allowed and r.problem
            else:
                ok = False
            if not ok:
                out.append(
                    f"client {r.client} {r.path}: {r.status} from {r.upstream!r}"
                    f" (echo {r.echo!r}) under changes {r.before}..{r.after},"
                    f" allowed {sorted(allowed, key=str)}"
                )
        return out

    def finish(self) -> list[Record]:
        """Stop the clients; assert every response was right and each connection saw
        every config (a round sent and answered under that config alone)."""
        self.stop()
        failures = self.failures()
        assert not failures, (
            f"{len(failures)} of {len(self.records)} requests failed or misrouted:\n"
            + "\n".join(failures[:20])
        )
        last = len(self.states) - 1
        for client in range(len(self.progress)):
            seen = {
                r.before
                for r in self.records
                if r.client == client and r.before == r.after and r.service != "stable"
            }
            missing = sorted(set(range(last + 1)) - seen) if self.names else []
            assert not missing, f"connection {client} never ran under configs {missing[:10]}"
        return self.records


# -- the three doors -------------------------------------------------------------------


class Door:
    """Register, update and remove one service; each call returns the new generation."""

    def __init__(self, env: Env, name: str) -> None:
        self.env = env
        self.name = name
        self.variant = "prefix"

    def register(self, upstream: str, variant: str) -> int:
        raise NotImplementedError

    def update(self, upstream: str) -> int:
        raise NotImplementedError

    def delete(self) -> int:
        raise NotImplementedError


class PythonDoor(Door):
    def __init__(self, env: Env, name: str, gateway: Gateway, loop_thread: LoopThread) -> None:
        super().__init__(env, name)
        self.gateway = gateway
        self.loop_thread = loop_thread

    def _run(self, coro: Any) -> int:
        snapshot: Snapshot = self.loop_thread.run(coro)
        return snapshot.generation

    def register(self, upstream: str, variant: str) -> int:
        self.variant = variant
        options = self.env.service(self.name, upstream, variant)
        del options["name"], options["upstream"]
        return self._run(
            self.gateway.register_service(self.name, url=self.env.url(upstream), **options)
        )

    def update(self, upstream: str) -> int:
        return self._run(self.gateway.update_service(self.name, url=self.env.url(upstream)))

    def delete(self) -> int:
        return self._run(self.gateway.unregister_service(self.name))


class AdminClient:
    """The admin API over one keep-alive connection."""

    def __init__(self, port: int) -> None:
        self.client = RawClient(port, timeout=30.0)

    def call(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        payload = json.dumps(body).encode() if body is not None else b""
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        self.client.send(head.encode() + payload)
        status, _, data = self.client.read_response()
        return status, json.loads(data) if data else {}

    def close(self) -> None:
        self.client.close()


def admin_port(gateway: Gateway) -> int:
    return int(gateway.admin_addresses[0].rsplit(":", 1)[1])


class AdminDoor(Door):
    def __init__(self, env: Env, name: str, gateway: Gateway) -> None:
        super().__init__(env, name)
        self.admin = AdminClient(admin_port(gateway))
        env.h.adopt(self.admin.client)  # closed with the rest, whatever happens
        self.updates = 0

    def _call(self, method: str, body: dict[str, Any] | None, expect: int) -> int:
        status, doc = self.admin.call(method, f"/admin/services/{self.name}", body)
        assert status == expect, (method, self.name, body, status, doc)
        generation: int = doc["generation"]
        return generation

    def register(self, upstream: str, variant: str) -> int:
        self.variant = variant
        body = self.env.service(self.name, upstream, variant)
        del body["name"]
        return self._call("PUT", body, 201)

    def update(self, upstream: str) -> int:
        # By turns a whole PUT and a merge-patch PATCH of the upstream alone.
        self.updates += 1
        if self.updates % 2:
            return self._call("PATCH", {"upstream": self.env.url(upstream)}, 200)
        body = self.env.service(self.name, upstream, self.variant)
        del body["name"]
        return self._call("PUT", body, 200)

    def delete(self) -> int:
        return self._call("DELETE", None, 200)


class FileDoor(Door):
    """Rewrites the config file atomically, then reloads: as SIGHUP does
    (`Gateway.reload`), or, given an admin client, by turns POST /admin/reload."""

    def __init__(
        self, env: Env, name: str, gw: FileGateway, admin: AdminClient | None = None
    ) -> None:
        super().__init__(env, name)
        self.gw = gw
        self.admin = admin
        self.reloads = 0
        self.data: dict[str, Any] = json.loads(gw.path.read_text(encoding="utf-8"))

    def _services(self) -> list[dict[str, Any]]:
        services: list[dict[str, Any]] = self.data["services"]
        return services

    def _apply(self) -> int:
        write_atomically(self.gw.path, self.data)
        self.reloads += 1
        if self.admin is not None and self.reloads % 2:
            status, doc = self.admin.call("POST", "/admin/reload")
            assert status == 200, doc
            generation: int = doc["generation"]
            return generation
        snapshot = self.gw.loop_thread.run(self.gw.gateway.reload())
        assert snapshot is not None
        return snapshot.generation

    def register(self, upstream: str, variant: str) -> int:
        self.variant = variant
        assert all(s["name"] != self.name for s in self._services())
        self._services().append(self.env.service(self.name, upstream, variant))
        return self._apply()

    def update(self, upstream: str) -> int:
        (service,) = [s for s in self._services() if s["name"] == self.name]
        service["upstream"] = self.env.url(upstream)
        return self._apply()

    def delete(self) -> int:
        self.data["services"] = [s for s in self._services() if s["name"] != self.name]
        return self._apply()


def plan(count: int, first: str = "A") -> list[tuple[str, str | None, str]]:
    """`count` changes to a service that starts as a prefix service on `first`.

    Out of every five: three moves to the next upstream (A -> B -> C -> A),
    one removal, one registration (by turns with an inline spec or a prefix).
    """
    ops: list[tuple[str, str | None, str]] = []
    at = MOVING.index(first)
    variant = "prefix"
    for i in range(count):
        if i % 5 == 3:
            ops.append(("delete", None, variant))
            continue
        at = (at + 1) % len(MOVING)
        if i % 5 == 4:
            variant = "openapi" if variant == "prefix" else "prefix"
            ops.append(("register", MOVING[at], variant))
        else:
            ops.append(("update", MOVING[at], variant))
    return ops


def swap(load: Load, door: Door, op: tuple[str, str | None, str], before: int) -> int:
    """One change through `door` under `load`; checks it made exactly one new generation."""
    kind, upstream, variant = op

    def apply() -> int:
        if kind == "delete":
            return door.delete()
        assert upstream is not None
        if kind == "register":
            return door.register(upstream, variant)
        return door.update(upstream)

    after: int = load.change(apply, **{door.name: upstream})
    assert after == before + 1, f"{kind} {door.name} -> {upstream}: generation {before} -> {after}"
    return after


# -- 100 swaps through each door ------------------------------------------------------


@pytest.mark.parametrize("door_name", ["python", "admin", "file"])
def test_100_swaps_under_load(env: Env, door_name: str) -> None:
    """100 changes (60 moves A -> B -> C, 20 removals, 20 registrations with a
    spec or a prefix) to `flip` while `stable` must keep answering: no failed or
    misrouted request, one generation per change, every connection sees every config."""
    data = env.config({"flip": "A"}, admin=door_name == "admin")
    door: Door
    if door_name == "file":
        fgw = env.file_gateway({**data, "watch": False})
        gateway, loop_thread, port = fgw.gateway, fgw.loop_thread, fgw.port
        door = FileDoor(env, "flip", fgw)
    else:
        gw = env.gateway(data)
        gateway, loop_thread, port = gw.gateway, gw.loop_thread, gw.port
        door = (
            AdminDoor(env, "flip", gateway)
            if door_name == "admin"
            else PythonDoor(env, "flip", gateway, loop_thread)
        )
    start = generation(gateway, loop_thread)
    load = env.load(port, {"flip": "A"})
    load.wait_progress()
    current = start
    for op in plan(SWAPS):
        current = swap(load, door, op, current)
    records = load.finish()
    assert generation(gateway, loop_thread) == start + SWAPS
    assert len(load.states) == SWAPS + 1
    # The service ended as the plan left it, and both kinds of answer were seen.
    final = loop_thread.call(lambda: gateway.snapshot.service("flip"))
    assert (final.config.upstream if final is not None else None) == (
        env.url(load.state["flip"]) if load.state["flip"] else None
    )
    statuses = {r.status for r in records if r.service == "flip"}
    assert statuses == {200, 404}
    if isinstance(door, AdminDoor):
        door.admin.close()


def test_three_doors_interleaved(env: Env) -> None:
    """One gateway with a config file and an admin API: the doors take turns,
    each on a service of its own, 100 changes in all (the file reloaded through
    Python and POST /admin/reload by turns); reloading the file keeps the
    changes made through the API, and the state file holds them."""
    fgw = env.file_gateway({**env.config({"byfile": "A"}, admin=True), "watch": False})
    gateway, loop_thread = fgw.gateway, fgw.loop_thread
    # The API's services start in the overlay, registered through the API itself.
    py_door = PythonDoor(env, "bypy", gateway, loop_thread)
    admin_door = AdminDoor(env, "byadmin", gateway)
    # The file is reloaded by turns with Gateway.reload and POST /admin/reload.
    file_door = FileDoor(env, "byfile", fgw, admin_door.admin)
    py_door.register("B", "prefix")
    admin_door.register("C", "prefix")
    start = generation(gateway, loop_thread)
    load = env.load(fgw.port, {"byfile": "A", "bypy": "B", "byadmin": "C"})
    load.wait_progress()
    plans = {"byfile": plan(34, "A"), "bypy": plan(33, "B"), "byadmin": plan(33, "C")}
    doors: list[Door] = [file_door, py_door, admin_door]
    current = start
    for i in range(SWAPS):
        door = doors[i % 3]
        current = swap(load, door, plans[door.name][i // 3], current)
    # A reload of the unchanged file brings nothing back and drops nothing.
    load.change(lambda: loop_thread.run(gateway.reload()))
    load.finish()
    assert generation(gateway, loop_thread) == start + SWAPS + 1
    snapshot = loop_thread.call(lambda: gateway.snapshot)
    for name in ("byfile", "bypy", "byadmin"):
        service = snapshot.service(name)
        expected = load.state[name]
        assert (service.config.upstream if service else None) == (
            env.url(expected) if expected else None
        ), name
    # What the API changed is in the state file, for the next start.
    state = json.loads(Path(f"{fgw.path}.state.json").read_text(encoding="utf-8"))
    kept = {name: service["upstream"] for name, service in state["services"].items() if service}
    expected_kept = {
        name: env.url(upstream)
        for name in ("bypy", "byadmin")
        if (upstream := load.state[name]) is not None
    }
    assert kept == expected_kept
    admin_door.admin.close()


# -- requests in flight across a change -----------------------------------------------


@pytest.mark.parametrize("door_name", ["python", "admin", "file"])
def test_in_flight_request_finishes_on_its_snapshot(env: Env, door_name: str) -> None:
    """A request held by upstream A while `flip` moves to B (and A's pool is
    retired), and one held while `flip` is removed, both finish 200 from A; the
    next request on the same connection follows the new config."""
    data = env.config({"flip": "A"}, admin=door_name == "admin")
    door: Door
    if door_name == "file":
        fgw = env.file_gateway({**data, "watch": False})
        gateway, loop_thread, port = fgw.gateway, fgw.loop_thread, fgw.port
        door = FileDoor(env, "flip", fgw)
    else:
        gw = env.gateway(data)
        gateway, loop_thread, port = gw.gateway, gw.loop_thread, gw.port
        door = (
            AdminDoor(env, "flip", gateway)
            if door_name == "admin"
            else PythonDoor(env, "flip", gateway, loop_thread)
        )
    client = env.h.client(port)

    def held(token: str, change: Callable[[], int], expect_next: tuple[int, str | None]) -> None:
        arrived, release = env.holds.add(token)
        client.send(request(f"/flip/items/{token}?hold={token}"))
        assert arrived.wait(10), "the held request never reached the upstream"
        change()
        release.set()
        status, _, body = client.read_response()
        assert status == 200, body
        assert json.loads(body)["upstream"] == "A"
        client.send(request(f"/flip/items/after-{token}"))
        status, _, body = client.read_response()
        assert status == expect_next[0], body
        if expect_next[1] is not None:
            assert json.loads(body)["upstream"] == expect_next[1]

    held("move", lambda: door.update("B"), (200, "B"))
    door.update("A")
    held("remove", door.delete, (404, None))
    door.register("C", "prefix")
    client.send(request("/flip/items/end"))
    status, _, body = client.read_response()
    assert (status, json.loads(body)["upstream"]) == (200, "C")
    if isinstance(door, AdminDoor):
        door.admin.close()


# -- the config file's watcher ----------------------------------------------------------


def test_watcher_applies_refuses_and_applies_again(env: Env) -> None:
    """With `watch_interval: 0.05` and no reload asked for: a rewritten file is
    applied; a half-written file, then a readable but invalid one, are refused
    (generation unchanged, the running config stays and serves); a fixed file is
    applied."""
    data = env.config({"flip": "A"}, watch_interval=0.05)
    fgw = env.file_gateway(data)
    gateway, loop_thread = fgw.gateway, fgw.loop_thread
    full = json.loads(fgw.path.read_text(encoding="utf-8"))
    start = generation(gateway, loop_thread)
    load = env.load(fgw.port, {"flip": "A"})
    load.wait_progress()

    def last_error() -> list[Any]:
        return list(loop_thread.call(lambda: gateway.control.last_error))

    def rewrite(upstream: str) -> None:
        full["services"][1]["upstream"] = env.url(upstream)
        write_atomically(fgw.path, full)

    def file_change(upstream: str, expected: int) -> None:
        rewrite(upstream)
        assert wait_until(lambda: generation(gateway, loop_thread) >= expected, 10), (
            f"the watcher did not apply the file: generation stayed below {expected}"
        )

    # 1. A change is picked up by the watcher alone.
    load.change(lambda: file_change("B", start + 1), flip="B")
    assert generation(gateway, loop_thread) == start + 1
    assert not last_error()

    # 2. A half-written file (a writer that stopped midway) is refused.
    text = json.dumps({**full, "services": [*full["services"], env.service("extra", "C")]})
    fgw.path.write_text(text[: len(text) // 2], encoding="utf-8")
    assert wait_until(lambda: bool(last_error()), 10), "the half-written file was not looked at"
    assert generation(gateway, loop_thread) == start + 1
    load.change(lambda: None)  # still served, by the running config (B) alone

    # 3. So is a whole file with a bad service in it (an upstream that is no URL).
    loop_thread.call(lambda: gateway.control.last_error.clear())
    bad = {
        **full,
        "services": [
            *full["services"],
            {**env.service("extra", "C"), "upstream": "ftp://127.0.0.1:1"},
        ],
    }
    write_atomically(fgw.path, bad)
    assert wait_until(lambda: bool(last_error()), 10), "the invalid file was not looked at"
    assert generation(gateway, loop_thread) == start + 1
    # Progress under the running config: the rounds below must still be answered by B.
    load.change(lambda: None)

    # 4. The fixed file is applied.
    load.change(lambda: file_change("C", start + 2), flip="C")
    assert generation(gateway, loop_thread) == start + 2
    assert not last_error()
    load.finish()
    flip = loop_thread.call(lambda: gateway.snapshot.service("flip"))
    assert flip is not None and flip.config.upstream == env.url("C")
    assert loop_thread.call(lambda: gateway.snapshot.service("extra")) is None


# -- bursts of concurrent changes ---------------------------------------------------------


def test_concurrent_registrations_coalesce(env: Env) -> None:
    """20 registrations at once (asyncio.gather) are all applied, in fewer than 20
    builds, while the load runs; each new service routes to its own upstream."""
    gw = env.gateway(env.config({"flip": "A"}))
    gateway, loop_thread = gw.gateway, gw.loop_thread
    start = generation(gateway, loop_thread)
    load = env.load(gw.port, {"flip": "A"})
    load.wait_progress()

    def upstream_of(i: int) -> str:
        return MOVING[i % len(MOVING)]

    async def burst() -> list[Snapshot]:
        return await asyncio.gather(
            *(
                gateway.register_service(f"svc{i}", url=env.url(upstream_of(i)), prefix=f"/svc{i}")
                for i in range(20)
            )
        )

    snapshots = load.change(lambda: loop_thread.run(burst()))
    end = generation(gateway, loop_thread)
    assert start < end < start + 20, f"generation {start} -> {end}: not coalesced"
    for i, snapshot in enumerate(snapshots):
        assert snapshot.service(f"svc{i}") is not None
    client = env.h.client(gw.port)
    for i in range(20):
        client.send(request(f"/svc{i}/x"))
        status, _, body = client.read_response()
        assert status == 200, body
        assert json.loads(body) == {"upstream": upstream_of(i), "path": f"/svc{i}/x"}
    load.finish()


@pytest.mark.parametrize("door_name", ["python", "admin"])
def test_concurrent_burst_refuses_only_the_bad_change(env: Env, door_name: str) -> None:
    """A burst of 8 good registrations and 2 bad ones (a route that `stable`
    already has; a tenant that does not exist / an upstream that is no URL):
    only the bad ones are refused, the others applied, `stable` untouched."""
    data = env.config({"flip": "A"}, admin=door_name == "admin")
    gw = env.gateway(data)
    gateway, loop_thread = gw.gateway, gw.loop_thread
    start = generation(gateway, loop_thread)
    load = env.load(gw.port, {"flip": "A"})
    load.wait_progress()
    good = [f"good{i}" for i in range(8)]
    bodies: dict[str, dict[str, Any]] = {name: env.service(name, "B") for name in good}
    # Valid alone, refused by the build: its route is `stable`'s.
    bodies["clash"] = {"name": "clash", "upstream": env.url("C"), "prefix": "/stable"}

    refused: dict[str, type[BaseException] | int]
    if door_name == "python":

        async def burst() -> list[Snapshot | BaseException]:
            calls = [
                gateway.register_service(name, url=body["upstream"], prefix=body["prefix"])
                for name, body in bodies.items()
            ]
            # Refused inside the batch: its tenant does not exist.
            calls.append(gateway.register_service("orphan", url=env.url("C"), tenant="nope"))
            return await asyncio.gather(*calls, return_exceptions=True)

        results = dict(
            zip([*bodies, "orphan"], load.change(lambda: loop_thread.run(burst())), strict=True)
        )
        refused = {n: type(r) for n, r in results.items() if isinstance(r, BaseException)}
        assert refused == {"clash": SnapshotError, "orphan": ConfigError}, results
        ok = {n for n, r in results.items() if isinstance(r, Snapshot)}
    else:
        bodies["badurl"] = {"name": "badurl", "upstream": "ftp://127.0.0.1:1", "prefix": "/bad"}
        port = admin_port(gateway)
        statuses: dict[str, tuple[int, dict[str, Any]]] = {}
        barrier = threading.Barrier(len(bodies))

        def put(name: str, body: dict[str, Any]) -> None:
            admin = AdminClient(port)
            try:
                barrier.wait(10)
                statuses[name] = admin.call("PUT", f"/admin/services/{name}", body)
            finally:
                admin.close()

        def burst_admin() -> None:
            threads = [
                threading.Thread(target=put, args=(name, body), daemon=True)
                for name, body in bodies.items()
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)

        load.change(burst_admin)
        assert set(statuses) == set(bodies)
        refused = {n: s for n, (s, _) in statuses.items() if s != 201}
        assert refused == {"clash": 422, "badurl": 422}, statuses
        for name in refused:
            assert statuses[name][1]["problems"], statuses[name]
        ok = {n for n, (s, _) in statuses.items() if s == 201}
    assert ok == set(good)
    end = generation(gateway, loop_thread)
    assert start < end <= start + len(good)
    snapshot = loop_thread.call(lambda: gateway.snapshot)
    assert {s.name for s in snapshot.services} == {"stable", "flip", *good}
    client = env.h.client(gw.port)
    for name in good:
        client.send(request(f"/{name}/items/1"))
        status, _, body = client.read_response()
        assert (status, json.loads(body)["upstream"]) == (200, "B"), body
    load.finish()  # `stable` kept answering from S throughout


# -- a change racing a reload -----------------------------------------------------------


def test_api_change_is_not_lost_to_a_concurrent_reload(env: Env) -> None:
    """A registration and a reload at once: the registration, reported applied,
    stays applied (and in the state file)."""
    fgw = env.file_gateway({**env.config({}), "watch": False})
    gateway, loop_thread = fgw.gateway, fgw.loop_thread

    async def race() -> tuple[Snapshot | None, Snapshot]:
        reloaded, registered = await asyncio.gather(
            gateway.reload(), gateway.register_service("late", url=env.url("A"), prefix="/late")
        )
        return reloaded, registered

    _, registered = loop_thread.run(race())
    assert registered.service("late") is not None  # reported applied...
    # ...so it must still be routed, and kept in the state file for the next start.
    assert loop_thread.call(lambda: gateway.snapshot.service("late")) is not None
    state = json.loads(Path(f"{fgw.path}.state.json").read_text(encoding="utf-8"))
    assert "late" in state["services"], state


def test_the_state_file_rewritten_with_what_the_gateway_wrote_is_not_reloaded(env: Env) -> None:
    """The watcher tells the gateway's own state-file writes by their stat, recorded at
    the write; a poll that misses the record (CI: one generation more than changes in
    test_three_doors_interleaved) reloaded the gateway's own change, a rebuild for
    nothing. Here the file is rewritten with the same bytes (a new inode: a stat the
    gateway never recorded): its content says it is the gateway's own, not reloaded.
    Another process's change (other bytes) still is."""
    fgw = env.file_gateway({**env.config({}, admin=True), "watch": False, "watch_interval": 0.05})
    gateway, loop_thread = fgw.gateway, fgw.loop_thread
    admin = AdminDoor(env, "byadmin", gateway)
    before = admin.register("C", "prefix")
    state = Path(f"{fgw.path}.state.json")
    written = state.read_bytes()
    control = gateway.control

    def looked_at(path: Path) -> bool:
        seen = os.stat(path)
        now = (seen.st_mtime_ns, seen.st_size, seen.st_ino)
        return loop_thread.call(lambda: control._watched_state) == now

    # Twice: the watcher awaits a reload it starts before it looks again, so once it
    # has looked at the second copy, a reload of the first is over.
    for _ in range(2):
        fd, tmp = tempfile.mkstemp(prefix=".copy-", dir=state.parent)
        with os.fdopen(fd, "wb") as file:
            file.write(written)
        os.replace(tmp, state)
        assert wait_until(lambda: looked_at(state), 10)
    assert generation(gateway, loop_thread) == before
    # Other bytes: another process's change, reloaded.
    other = json.loads(written)
    other["services"]["byadmin"]["prefix"] = "/elsewhere"
    write_atomically(state, other)
    assert wait_until(lambda: generation(gateway, loop_thread) == before + 1, 10)


def test_a_reload_during_the_watchers_wait_is_no_config_change(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With `watch: false` the watcher looks at the state file alone. It finds the
    gateway's own write under a stat not yet recorded (as between _write_state's
    rename and its record, on busy CPUs), and while it waits for the file to hold
    still, the config file is rewritten and reloaded (SIGHUP, POST /admin/reload):
    one generation, that reload's. The watcher took the reload's new stat of the
    config file for a change of the file it does not watch, and reloaded again
    (test_three_doors_interleaved: two generations for one change)."""
    from runmcp_fast import control as control_module

    fgw = env.file_gateway({**env.config({}), "watch": False, "watch_interval": 3600})
    gateway, loop_thread = fgw.gateway, fgw.loop_thread
    control = gateway.control
    door = PythonDoor(env, "bypy", gateway, loop_thread)
    door.register("B", "prefix")
    state = Path(f"{fgw.path}.state.json")
    # The gateway's own write under a stat it never recorded: a copy of the same bytes.
    fd, tmp = tempfile.mkstemp(prefix=".copy-", dir=state.parent)
    with os.fdopen(fd, "wb") as file:
        file.write(state.read_bytes())
    os.replace(tmp, state)
    data = json.loads(fgw.path.read_text(encoding="utf-8"))
    data["services"].append(env.service("byfile", "A"))
    before = generation(gateway, loop_thread)
    real_sleep = asyncio.sleep
    sleeps: list[float] = []
    looked_again = threading.Event()

    async def sleep(delay: float) -> None:
        """The watcher's waits: its first look at once; while it waits for the state
        file to hold still, the config file rewritten and reloaded; then no more."""
        sleeps.append(delay)
        if len(sleeps) == 1:
            return
        if len(sleeps) == 2:
            write_atomically(fgw.path, data)
            await control.reload("SIGHUP")
            return
        looked_again.set()
        await real_sleep(3600)

    class Asyncio:
        def __getattr__(self, name: str) -> Any:
            return getattr(asyncio, name)

    proxy = Asyncio()
    proxy.sleep = sleep  # type: ignore[attr-defined]
    monkeypatch.setattr(control_module, "asyncio", proxy)

    async def start() -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(control._watch(0.05))

    watcher = loop_thread.run(start())
    try:
        assert looked_again.wait(20), f"the watcher did not look again (waits: {sleeps})"
        assert generation(gateway, loop_thread) == before + 1  # the SIGHUP's reload alone
        assert control.reloads.reloads_ok == 1
        byfile = loop_thread.call(lambda: gateway.snapshot.service("byfile"))
        assert byfile is not None and byfile.config.upstream == env.url("A")
    finally:
        loop_thread.call(watcher.cancel)
