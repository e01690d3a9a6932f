"""The admin API: REST over JSON on its own listener, served by the gateway's own
server and router (its routes are local-handler targets in a compiled trie).

    GET  /healthz  /readyz                        (no token needed)
    GET  /admin/config                            the running config, its version
    POST /admin/reload                            read the config file again
    GET  /admin/routes                            the compiled route table
    GET  /admin/validation                        contract checks per operation: counts, fallbacks
    GET  /admin/upstreams                         each service's replicas: state, load, failures
    GET  /admin/services                          top-level services
    GET|PUT|PATCH|DELETE /admin/services/{name}
    GET  /admin/tenants
    GET|PUT|PATCH|DELETE /admin/tenants/{tenant}
    GET  /admin/tenants/{tenant}/services
    GET|PUT|PATCH|DELETE /admin/tenants/{tenant}/services/{name}
    GET  /admin/consumers
    GET|PUT|PATCH|DELETE /admin/consumers/{name}   (secrets write-only: never returned)

PUT takes the whole object (a service as in the config file, its `openapi` a
path or the spec document inline); PATCH a JSON merge patch (RFC 7396).
Every change goes through `ControlPlane`: validated, built off the event loop,
swapped atomically, written to the state file. A refused change answers 400
(malformed) or 422 (a config or spec problem) as problem+json, listing every
problem with its file and JSON pointer; the running config is untouched.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec
import orjson

from runmcp_fast._dataplane import LocalRequest, Target
from runmcp_fast.cluster.errors import (
    EtcdError,
    EtcdUnavailable,
    PreconditionFailed,
    parse_if_match,
)
from runmcp_fast.config import (
    CREDENTIAL_FIELDS,
    BalancerConfig,
    ConsumerConfig,
    GatewayConfig,
    OutlierConfig,
    RetryConfig,
    ServiceConfig,
    TenantConfig,
)
from runmcp_fast.control import (
    ADMIN_SOURCE,
    ControlPlane,
    Overlay,
    check_change,
    service_key,
    validate_consumer,
    validate_service,
    validate_tenant,
)
from runmcp_fast.problems import ConfigError, Problem, SnapshotError
from runmcp_fast.router import Router
from runmcp_fast.snapshot import Service, Snapshot, tenant_hosts
from runmcp_fast.wire import reason_phrase

if TYPE_CHECKING:
    from runmcp_fast.cluster.runtime import ClusterRuntime

Response = tuple[int, list[tuple[str, str]], bytes]
Handler = Callable[[LocalRequest], Awaitable[Response]]

# An inline spec as large as GitHub's or Stripe's (some MB of JSON) must fit.
MAX_BODY = 64 * 1024 * 1024
_JSON = ("Content-Type", "application/json")
_PROBLEM = ("Content-Type", "application/problem+json")


class AdminSnapshot:
    """What the admin listener's ServerContext routes with (it never changes)."""

    __slots__ = ("route_count", "router", "tenant_header", "tenant_routers")

    def __init__(self, router: Router) -> None:
        self.router = router
        self.tenant_routers: dict[bytes, Router] = {}
        self.tenant_header = None
        self.route_count = len(router)


class _AdminOwner:
    """Who serves the admin API's routes (a RouteOwner)."""

    name = label = "admin"
    tenant = ""


class AdminAPI:
    """The admin API over one gateway's ControlPlane; `ready()` says if it serves yet."""

    def __init__(
        self,
        control: ControlPlane,
        token: str | None,
        ready: Callable[[], bool],
        *,
        metrics: Callable[[], Awaitable[Response]] | None = None,
        metrics_path: str = "/metrics",
        cluster: ClusterRuntime | None = None,
    ) -> None:
        self.control = control
        # With a config store, writes go to etcd (docs/cluster.md), not to the state file.
        self.cluster = cluster
        self._token = token.encode() if token else None
        self._ready = ready
        self._metrics = metrics
        self._metrics_path = metrics_path

    def snapshot(self) -> AdminSnapshot:
        router = Router()
        routes: list[tuple[str, str, Handler, bool]] = [
            ("GET", "/healthz", self.healthz, False),
            ("GET", "/readyz", self.readyz, False),
            ("GET", "/admin/config", self.get_config, True),
            ("POST", "/admin/reload", self.post_reload, True),
            ("GET", "/admin/routes", self.get_routes, True),
            ("GET", "/admin/validation", self.get_validation, True),
            ("GET", "/admin/upstreams", self.get_upstreams, True),
            ("GET", "/admin/services", self.list_services, True),
            ("GET", "/admin/services/{name}", self.get_service, True),
            ("PUT", "/admin/services/{name}", self.put_service, True),
            ("PATCH", "/admin/services/{name}", self.patch_service, True),
            ("DELETE", "/admin/services/{name}", self.delete_service, True),
            ("GET", "/admin/tenants", self.list_tenants, True),
            ("GET", "/admin/tenants/{tenant}", self.get_tenant, True),
            ("PUT", "/admin/tenants/{tenant}", self.put_tenant, True),
            ("PATCH", "/admin/tenants/{tenant}", self.patch_tenant, True),
            ("DELETE", "/admin/tenants/{tenant}", self.delete_tenant, True),
            ("GET", "/admin/tenants/{tenant}/services", self.list_services, True),
            ("GET", "/admin/tenants/{tenant}/services/{name}", self.get_service, True),
            ("PUT", "/admin/tenants/{tenant}/services/{name}", self.put_service, True),
            ("PATCH", "/admin/tenants/{tenant}/services/{name}", self.patch_service, True),
            ("DELETE", "/admin/tenants/{tenant}/services/{name}", self.delete_service, True),
            ("GET", "/admin/consumers", self.list_consumers, True),
            ("GET", "/admin/consumers/{name}", self.get_consumer, True),
            ("PUT", "/admin/consumers/{name}", self.put_consumer, True),
            ("PATCH", "/admin/consumers/{name}", self.patch_consumer, True),
            ("DELETE", "/admin/consumers/{name}", self.delete_consumer, True),
        ]
        if self._metrics is not None:
            routes.append(("GET", self._metrics_path, self.get_metrics, True))
        owner = _AdminOwner()
        for method, template, handler, private in routes:
            wrapped = self._guarded(handler) if private else self._plain(handler)
            target = Target.local(
                owner=owner, name=handler.__name__, handler=wrapped, max_body=MAX_BODY
            )
            router.add(method, template, target)
        router.compile()
        return AdminSnapshot(router)

    # -- plumbing -----------------------------------------------------------------------

    def _plain(self, handler: Handler) -> Handler:
        async def call(request: LocalRequest) -> Response:
            try:
                return await handler(request)
            except _Answer as answer:
                return answer.response

        return call

    def _guarded(self, handler: Handler) -> Handler:
        async def call(request: LocalRequest) -> Response:
            if not self._authorized(request):
                return _problem(
                    401,
                    "a bearer token is required: Authorization: Bearer <token>",
                    headers=[("WWW-Authenticate", 'Bearer realm="runmcp-fast admin"')],
                )
            try:
                return await handler(request)
            except _Answer as answer:
                return answer.response

        return call

    def _authorized(self, request: LocalRequest) -> bool:
        if self._token is None:
            return True  # no token configured: the listener is loopback only
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(token.strip().encode(), self._token)

    def _meta(self, snapshot: Snapshot | None = None) -> dict[str, Any]:
        snapshot = snapshot or self.control.snapshot
        return {"version": snapshot.version, "generation": snapshot.generation}

    def _headers(
        self, snapshot: Snapshot | None = None, key: bytes | None = None
    ) -> list[tuple[str, str]]:
        """ETag: the config's version; with a config store, the object's mod_revision
        (`key`) or the revision served."""
        cluster = self.cluster
        if cluster is not None:
            node = cluster.node
            tag = node.mod_revisions.get(key.decode(), 0) if key is not None else node.revision
            return [_JSON, ("ETag", f'"{tag}"')]
        snapshot = snapshot or self.control.snapshot
        return [_JSON, ("ETag", f'"{snapshot.version}"')]

    def _check_precondition(self, request: LocalRequest) -> None:
        """If-Match: the change applies only to the config version the client read."""
        if self.cluster is not None:
            return  # compared by etcd, on the object's mod_revision (_store_write)
        expected = request.headers.get("if-match")
        if expected is None or expected.strip() == "*":
            return
        current = f'"{self.control.snapshot.version}"'
        if current not in [tag.strip() for tag in expected.split(",")]:
            raise _Answer(
                _problem(412, f"the config changed: it is now version {current}, not {expected}")
            )

    # -- health ---------------------------------------------------------------------------

    async def healthz(self, request: LocalRequest) -> Response:
        return 200, [_JSON], b'{"status":"ok"}'

    async def readyz(self, request: LocalRequest) -> Response:
        if not self._ready():
            return 503, [_JSON], b'{"status":"starting"}'
        body = {"status": "ready", **self._meta(), "services": len(self.control.snapshot.services)}
        if self.cluster is not None:
            status = self.cluster.node.status()
            body["config_store"] = status
            if not self.cluster.node.has_config:
                # Neither etcd nor a disk cache gave a config yet: nothing to serve.
                body["status"] = "waiting for the config store"
                return 503, [_JSON], orjson.dumps(body)
            if status["stale"]:
                body["status"] = "ready (stale: the config store is unreachable)"
        return 200, [_JSON], orjson.dumps(body)

    async def get_metrics(self, request: LocalRequest) -> Response:
        """Prometheus's text format: every worker's numbers summed (docs/observability.md)."""
        assert self._metrics is not None
        return await self._metrics()

    # -- config ---------------------------------------------------------------------------

    async def get_config(self, request: LocalRequest) -> Response:
        control = self.control
        data = msgspec.to_builtins(control.config)
        data.pop("base_dir", None)
        data["consumers"] = [_redacted(c) for c in data.get("consumers", [])]
        body = {
            **self._meta(),
            "config_file": control.config_path,
            "state_file": control.state_path,
            "last_reload_error": [_problem_data(p) for p in control.last_error],
            "config": data,
        }
        return 200, self._headers(), orjson.dumps(body)

    async def post_reload(self, request: LocalRequest) -> Response:
        try:
            snapshot = await self.control.reload("reload through the admin API")
        except (ConfigError, SnapshotError) as exc:
            return _refused(exc)
        if snapshot is None:
            return _problem(409, "the gateway runs without a config file: nothing to reload")
        return 200, self._headers(snapshot), orjson.dumps(self._meta(snapshot))

    async def get_routes(self, request: LocalRequest) -> Response:
        snapshot = self.control.snapshot
        rows = []
        for route in snapshot.router.routes():
            target: Target = route.target
            owner = target.owner
            rows.append(
                {
                    "method": route.method,
                    "template": route.template,
                    "host": route.host,
                    "tenant": owner.tenant or None,
                    "service": owner.name,
                    "operation": target.name if target.operation is not None else None,
                    "steps": target.chain.names(),
                }
            )
        body = {**self._meta(snapshot), "routes": rows}
        return 200, self._headers(snapshot), orjson.dumps(body)

    async def get_validation(self, request: LocalRequest) -> Response:
        """Per validated operation: its mode, requests checked and found invalid since the
        service was (re)built, and where the fallback validator is used."""
        snapshot = self.control.snapshot
        rows = [
            {
                "tenant": service.tenant or None,
                "service": service.name,
                "operation": validator.name.rsplit(" ", 1)[-1],
                "mode": validator.mode,
                "checked": validator.checked,
                "invalid": validator.invalid,
                "fallbacks": [f"{f.keyword} at {f.pointer}" for f in validator.fallbacks],
            }
            for service in snapshot.services
            for validator in service.validators.values()
        ]
        body = {**self._meta(snapshot), "operations": rows}
        return 200, self._headers(snapshot), orjson.dumps(body)

    async def get_upstreams(self, request: LocalRequest) -> Response:
        """Each service's replicas as this worker sees them (docs/resilience.md): state,
        ejections, requests in flight, the last error; the balancer and the retry budget."""
        snapshot = self.control.snapshot
        body = {
            **self._meta(snapshot),
            "worker": os.getpid(),
            "services": [upstreams_summary(s) for s in snapshot.services],
        }
        return 200, self._headers(snapshot), orjson.dumps(body)

    # -- services -----------------------------------------------------------------------

    def _tenant_of(self, request: LocalRequest) -> str:
        tenant: str = request.params.get("tenant", "")
        if tenant and self.control.find_tenant(tenant) is None:
            raise _Answer(_problem(404, f"no tenant named {tenant!r}"))
        return tenant

    def _service_or_404(self, tenant: str, name: str) -> Service:
        service = self.control.snapshot.service(name, tenant)
        if service is None:
            where = f" of tenant {tenant!r}" if tenant else ""
            raise _Answer(_problem(404, f"no service named {name!r}{where}"))
        return service

    async def list_services(self, request: LocalRequest) -> Response:
        tenant = self._tenant_of(request)
        snapshot = self.control.snapshot
        rows = [_summary(s) for s in snapshot.services if s.tenant == tenant]
        return (
            200,
            self._headers(snapshot),
            orjson.dumps({**self._meta(snapshot), "services": rows}),
        )

    async def get_service(self, request: LocalRequest) -> Response:
        tenant = self._tenant_of(request)
        service = self._service_or_404(tenant, request.params["name"])
        body = {**self._meta(), **_summary(service), "config": _service_data(service.config)}
        return (
            200,
            self._headers(key=self._key("services", tenant, service.name)),
            orjson.dumps(body),
        )

    async def put_service(self, request: LocalRequest) -> Response:
        tenant = self._tenant_of(request)
        name = request.params["name"]
        body = _json_object(request)
        return await self._put_service(request, tenant, name, body)

    async def patch_service(self, request: LocalRequest) -> Response:
        tenant = self._tenant_of(request)
        name = request.params["name"]
        patch = _json_object(request)

        async def put(based_on: int | None) -> Response:
            service = self._service_or_404(tenant, name)
            body = merge_patch(_service_data(service.config), patch)
            return await self._put_service(request, tenant, name, body, based_on=based_on)

        return await self._patched(self._key("services", tenant, name), put)

    async def _patched(
        self, key: bytes, put: Callable[[int | None], Awaitable[Response]]
    ) -> Response:
        """A PATCH with a config store: the patch is merged onto this node's copy of the
        object, which can be behind the store (a change through another node, or this
        node's own previous write, not served yet: the coalescing window). Written
        unconditionally, that merge silently undid the newer change (two PATCHes of a
        script in a row lost the first). So the write compares on the mod_revision of
        the copy merged onto (`put(based_on)`), and when the store moved on, waits
        until this node serves something newer and merges again."""
        cluster = self.cluster
        if cluster is None:
            return await put(None)
        node = cluster.node
        deadline = time.monotonic() + _WAIT_APPLIED
        stale = _problem(
            409,
            f"{key.decode()} changed in the store and this node does not serve the change"
            " yet: read it again (GET) and send the patch again",
        )
        while True:
            try:
                return await put(node.mod_revisions.get(key.decode(), 0))
            except _Stale:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                return stale
            try:
                # A second at a time, then merge again anyway: the copy's mod_revision
                # can also be refreshed without a newer revision served (a resync).
                await node.wait_applied(node.revision + 1, min(left, 1.0))
            except TimeoutError:
                continue
            except ConfigError:  # the node refused the newer revision
                return stale

    async def _put_service(
        self,
        request: LocalRequest,
        tenant: str,
        name: str,
        body: dict[str, Any],
        based_on: int | None = None,
    ) -> Response:
        self._check_precondition(request)
        mismatch = _name_mismatch("service", body, name)
        if mismatch is not None:
            return mismatch
        control = self.control
        existed = control.snapshot.service(name, tenant) is not None
        if self.cluster is not None:
            try:
                service = validate_service(body, control.config)
                data = msgspec.to_builtins(service)
                self._check_whole(Overlay(services={service_key(tenant, name): data}))
                assert self.cluster.writer is not None
                value = await self.cluster.writer.service_value(data)
            except (ConfigError, SnapshotError) as exc:
                return _refused(exc)
            except EtcdError as exc:
                return _store_problem(exc)
            key = self._key("services", tenant, name)
            return await self._store_write(
                request, key, value, service=(tenant, name), based_on=based_on
            )
        try:
            service = validate_service(body, control.config)
            snapshot = await control.put_service(tenant, service)
        except (ConfigError, SnapshotError) as exc:
            return _refused(exc)
        created = snapshot.service(name, tenant)
        assert created is not None
        # Accepted, but what `runmcp-fast check` would warn about is said here too.
        out = {**self._meta(snapshot), **_summary(created), "warnings": _warnings(created)}
        return (200 if existed else 201), self._headers(snapshot), orjson.dumps(out)

    async def delete_service(self, request: LocalRequest) -> Response:
        tenant = self._tenant_of(request)
        name = request.params["name"]
        self._service_or_404(tenant, name)
        self._check_precondition(request)
        if self.cluster is not None:
            key = self._key("services", tenant, name)
            return await self._store_write(request, key, None)
        try:
            snapshot = await self.control.delete_service(tenant, name)
        except (ConfigError, SnapshotError) as exc:
            return _refused(exc)
        return 200, self._headers(snapshot), orjson.dumps(self._meta(snapshot))

    # -- tenants --------------------------------------------------------------------------

    async def list_tenants(self, request: LocalRequest) -> Response:
        config = self.control.config
        rows = [_tenant_summary(config, t) for t in config.tenants]
        return 200, self._headers(), orjson.dumps({**self._meta(), "tenants": rows})

    def _tenant_or_404(self, name: str) -> TenantConfig:
        tenant = self.control.find_tenant(name)
        if tenant is None:
            raise _Answer(_problem(404, f"no tenant named {name!r}"))
        return tenant

    async def get_tenant(self, request: LocalRequest) -> Response:
        tenant = self._tenant_or_404(request.params["tenant"])
        config = self.control.config
        body = {
            **self._meta(),
            **_tenant_summary(config, tenant),
            "config": _tenant_data(tenant),
        }
        return 200, self._headers(key=self._key("tenants", "", tenant.name)), orjson.dumps(body)

    async def put_tenant(self, request: LocalRequest) -> Response:
        return await self._put_tenant(request, request.params["tenant"], _json_object(request))

    async def patch_tenant(self, request: LocalRequest) -> Response:
        name = request.params["tenant"]
        patch = _json_object(request)

        async def put(based_on: int | None) -> Response:
            body = merge_patch(_tenant_data(self._tenant_or_404(name)), patch)
            return await self._put_tenant(request, name, body, based_on=based_on)

        return await self._patched(self._key("tenants", "", name), put)

    async def _put_tenant(
        self, request: LocalRequest, name: str, body: dict[str, Any], based_on: int | None = None
    ) -> Response:
        self._check_precondition(request)
        mismatch = _name_mismatch("tenant", body, name)
        if mismatch is not None:
            return mismatch
        control = self.control
        existed = control.find_tenant(name) is not None
        if self.cluster is not None:
            return await self._store_tenant(request, name, body, based_on)
        try:
            tenant = validate_tenant(body, control.config)
            snapshot = await control.put_tenant(tenant)
        except (ConfigError, SnapshotError) as exc:
            return _refused(exc)
        config = snapshot.config
        found = next(t for t in config.tenants if t.name == name)
        out = {**self._meta(snapshot), **_tenant_summary(config, found)}
        return (200 if existed else 201), self._headers(snapshot), orjson.dumps(out)

    async def delete_tenant(self, request: LocalRequest) -> Response:
        name = request.params["tenant"]
        self._tenant_or_404(name)
        self._check_precondition(request)
        if self.cluster is not None:
            key = self._key("tenants", "", name)
            return await self._store_write(request, key, None, with_prefix=True)
        try:
            snapshot = await self.control.delete_tenant(name)
        except (ConfigError, SnapshotError) as exc:
            return _refused(exc)
        return 200, self._headers(snapshot), orjson.dumps(self._meta(snapshot))

    # -- consumers ------------------------------------------------------------------------

    def _consumer_or_404(self, name: str) -> ConsumerConfig:
        consumer = self.control.find_consumer(name)
        if consumer is None:
            raise _Answer(_problem(404, f"no consumer named {name!r}"))
        return consumer

    async def list_consumers(self, request: LocalRequest) -> Response:
        rows = [_consumer_summary(c) for c in self.control.config.consumers]
        return 200, self._headers(), orjson.dumps({**self._meta(), "consumers": rows})

    async def get_consumer(self, request: LocalRequest) -> Response:
        consumer = self._consumer_or_404(request.params["name"])
        body = {
            **self._meta(),
            **_consumer_summary(consumer),
            "config": _redacted(_consumer_data(consumer)),
        }
        return (
            200,
            self._headers(key=self._key("consumers", "", consumer.name)),
            orjson.dumps(body),
        )

    async def put_consumer(self, request: LocalRequest) -> Response:
        return await self._put_consumer(request, request.params["name"], _json_object(request))

    async def patch_consumer(self, request: LocalRequest) -> Response:
        name = request.params["name"]
        patch = _json_object(request)

        async def put(based_on: int | None) -> Response:
            # The patch applies to what is stored, secrets included: they stay unless
            # replaced.
            body = merge_patch(_consumer_data(self._consumer_or_404(name)), patch)
            return await self._put_consumer(request, name, body, based_on=based_on)

        return await self._patched(self._key("consumers", "", name), put)

    async def _put_consumer(
        self, request: LocalRequest, name: str, body: dict[str, Any], based_on: int | None = None
    ) -> Response:
        self._check_precondition(request)
        mismatch = _name_mismatch("consumer", body, name)
        if mismatch is not None:
            return mismatch
        control = self.control
        existed = control.find_consumer(name) is not None
        if self.cluster is not None:
            try:
                consumer = validate_consumer(body, control.config)
                data = msgspec.to_builtins(consumer)
                self._check_whole(Overlay(consumers={name: data}))
            except (ConfigError, SnapshotError) as exc:
                return _refused(exc)
            key = self._key("consumers", "", name)
            return await self._store_write(request, key, data, based_on=based_on)
        try:
            consumer = validate_consumer(body, control.config)
            snapshot = await control.put_consumer(consumer)
        except (ConfigError, SnapshotError) as exc:
            return _refused(exc)
        out = {**self._meta(snapshot), **_consumer_summary(consumer)}
        return (200 if existed else 201), self._headers(snapshot), orjson.dumps(out)

    async def delete_consumer(self, request: LocalRequest) -> Response:
        name = request.params["name"]
        self._consumer_or_404(name)
        self._check_precondition(request)
        if self.cluster is not None:
            key = self._key("consumers", "", name)
            return await self._store_write(request, key, None)
        try:
            snapshot = await self.control.delete_consumer(name)
        except (ConfigError, SnapshotError) as exc:
            return _refused(exc)
        return 200, self._headers(snapshot), orjson.dumps(self._meta(snapshot))

    # -- writes to the config store ---------------------------------------------------------

    def _key(self, kind: str, tenant: str, name: str) -> bytes:
        assert self.cluster is not None or kind
        layout = self.cluster.layout if self.cluster is not None else None
        if layout is None:
            return b""
        if kind == "services":
            return layout.service(tenant, name)
        return layout.key(kind, name)

    def _check_whole(self, overlay: Overlay) -> None:
        """The running config with this change, checked whole before it is written
        (each node checks it again, with the specs, when it applies it)."""
        control = self.control
        check_change(control.base, overlay, ADMIN_SOURCE, running=control.started_with)

    async def _store_tenant(
        self,
        request: LocalRequest,
        name: str,
        body: dict[str, Any],
        based_on: int | None = None,
    ) -> Response:
        """A tenant is two kinds of keys: its own (hosts) and one per service."""
        cluster = self.cluster
        assert cluster is not None and cluster.writer is not None
        try:
            tenant = validate_tenant(body, self.control.config)
            data = msgspec.to_builtins(tenant)
            self._check_whole(Overlay(tenants={name: data}))
        except (ConfigError, SnapshotError) as exc:
            return _refused(exc)
        services = data.pop("services", [])
        response = await self._store_write(
            request,
            cluster.layout.tenant(name),
            data,
            wait=not services,
            based_on=based_on,
        )
        if response[0] >= 300 or not services:
            return response
        existed = response[0] == 200  # the tenant's key, as the store said
        for service in services:
            try:
                value = await cluster.writer.service_value(service)
            except (ConfigError, SnapshotError) as exc:
                return _refused(exc)
            except EtcdError as exc:
                return _store_problem(exc)
            key = cluster.layout.service(name, service["name"])
            last = await self._store_write(request, key, value, existed=existed, if_match=False)
            if last[0] >= 300:
                return last
        return last

    async def _store_write(
        self,
        request: LocalRequest,
        key: bytes,
        value: dict[str, Any] | None,
        *,
        existed: bool | None = None,
        with_prefix: bool = False,
        wait: bool = True,
        if_match: bool = True,
        service: tuple[str, str] | None = None,
        based_on: int | None = None,
    ) -> Response:
        """Put (or delete, `value` None) one object in etcd; with `?wait=applied`,
        answer once this node serves it. A put answers 200 or 201 as `existed` says,
        else as the store said (the key held before the write or not)."""
        cluster = self.cluster
        assert cluster is not None and cluster.writer is not None
        header = request.headers.get("if-match") if if_match else None
        expected = parse_if_match(header)
        if expected == -1:
            # Not an ETag this API gives (a revision): compared as -1 it answered 412
            # "no longer at revision -1", as if the object had changed.
            return _problem(
                400,
                f"If-Match: {header} is not an ETag of this API: send the ETag a GET"
                ' answered ("<revision>"), or * for any',
            )
        # A PATCH without If-Match: compared on the copy it was merged onto (_patched).
        merged = expected is None and based_on is not None
        if merged:
            expected = based_on
        try:
            if value is None:
                revision = await cluster.writer.delete(key, expected, with_prefix=with_prefix)
            else:
                # Not this worker's view: it may not serve the object yet though the
                # client's ETag came from another worker's, which does (a 201 then).
                revision, held = await cluster.writer.put(key, value, expected)
                if existed is None:
                    existed = held
        except PreconditionFailed as exc:
            if merged:
                raise _Stale from None
            current = cluster.node.mod_revisions.get(key.decode(), 0)
            return _problem(
                412,
                f"{exc}; this node last saw it at revision {current}: read it again",
            )
        except EtcdError as exc:
            return _store_problem(exc)
        body: dict[str, Any] = {
            "key": key.decode(),
            "revision": revision,
            "node": cluster.node.node_id,
            "applied": False,
        }
        headers = [_JSON, ("ETag", f'"{revision}"')]
        query = request.query or ""
        if wait and "wait=applied" in query.split("&"):
            try:
                await cluster.node.wait_applied(revision, _WAIT_APPLIED)
            except ConfigError as exc:
                problems = exc.problems
                return _problem(
                    422,
                    f"stored at revision {revision}, but this node refused it and serves"
                    f" revision {cluster.node.revision}: {problems[0] if problems else ''}",
                    problems=problems,
                )
            except TimeoutError:
                body["detail"] = f"stored; not served here within {_WAIT_APPLIED:g} s"
                return 202, headers, orjson.dumps(body)
            body["applied"] = True
            applied = self.control.snapshot.service(service[1], service[0]) if service else None
            if applied is not None:
                # Served here now, so its spec was loaded: what `check` would warn about.
                body["warnings"] = _warnings(applied)
        status = 200 if existed or value is None else 201
        return status, headers, orjson.dumps(body)


# How long `?wait=applied` waits for this node to serve a write.
_WAIT_APPLIED = 10.0


def _store_problem(exc: EtcdError) -> Response:
    if isinstance(exc, EtcdUnavailable):
        outcome = (
            "the change may have been made: read it (GET, its ETag) before you retry"
            if exc.maybe_applied
            else "the change was not made"
        )
        return _problem(
            503,
            f"the config store is unreachable, {outcome}: {exc}",
            headers=[("Retry-After", "2")],
        )
    return _problem(502, f"the config store refused the change: {exc}")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: objects merge, null removes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# -- representations -------------------------------------------------------------------


def _service_data(config: ServiceConfig) -> dict[str, Any]:
    """A service as PUT takes it: only the keys that differ from the defaults."""
    data: dict[str, Any] = msgspec.to_builtins(config)
    defaults = {"subdomain": False, "host_header": "pass", "kind": "http", "plugins": {}}
    defaults["operations"] = {}
    # The resilience settings that default to a value rather than to none.
    defaults["balancer"] = msgspec.to_builtins(BalancerConfig())
    defaults["outlier"] = msgspec.to_builtins(OutlierConfig())
    defaults["retries"] = msgspec.to_builtins(RetryConfig())
    return {k: v for k, v in data.items() if v is not None and defaults.get(k, object()) != v}


def _consumer_data(consumer: ConsumerConfig) -> dict[str, Any]:
    """A consumer as PUT takes it, secrets included (never sent: see _redacted)."""
    data: dict[str, Any] = msgspec.to_builtins(consumer)
    return {k: v for k, v in data.items() if v not in (None, [], {})}


REDACTED = "(write-only)"


def _redacted(data: dict[str, Any]) -> dict[str, Any]:
    """A consumer's data with the secret values of its credentials left out.

    A reference ({env: NAME} or {file: PATH}) is shown: it names where the
    secret is, not the secret.
    """
    out = dict(data)
    for plugin in CREDENTIAL_FIELDS:
        credential = out.get(plugin)
        if isinstance(credential, dict):
            out[plugin] = {
                key: REDACTED if isinstance(value, str) and key in _SECRET_KEYS else value
                for key, value in credential.items()
            }
    return out


# The credential keys that hold secrets (key-auth's key, basic-auth's hash, a shared secret).
_SECRET_KEYS = frozenset({"key", "password_hash", "secret"})


def _consumer_summary(consumer: ConsumerConfig) -> dict[str, Any]:
    return {
        "name": consumer.name,
        "groups": list(consumer.groups),
        "credentials": sorted(p for p in CREDENTIAL_FIELDS if consumer.credential(p) is not None),
        "plugins": sorted(consumer.plugins),
    }


def _tenant_data(tenant: TenantConfig) -> dict[str, Any]:
    return {
        "name": tenant.name,
        "hosts": list(tenant.hosts),
        "services": [_service_data(s) for s in tenant.services],
    }


def _summary(service: Service) -> dict[str, Any]:
    config = service.config
    spec = service.spec
    return {
        "name": service.name,
        "tenant": service.tenant or None,
        "upstream": config.upstreams,
        "openapi": (
            None
            if config.openapi is None
            else "inline"
            if isinstance(config.openapi, dict)
            else config.openapi
        ),
        "title": spec.title if spec is not None else None,
        "operations": len(spec.operations) if spec is not None else 0,
        "hosts": [h or "*" for h in service.hosts],
        "prefix": config.prefix,
    }


def upstreams_summary(service: Service) -> dict[str, Any]:
    """A service's replicas and the choices across them, as /admin/upstreams shows them."""
    replicas = service.replicas
    config = service.config
    counted = not replicas.simple
    rows = []
    for replica in replicas.replicas:
        pool = replica.pool
        rows.append(
            {
                "url": replica.url,
                "weight": replica.weight,
                "state": replica.state,
                "ejected_for": round(replica.ejected_for, 3),
                "ejections": replica.ejected_total,
                "consecutive_failures": replica.consecutive,
                "check": (
                    None
                    if config.health_check is None
                    else "passing"
                    if replica.check_up
                    else "failing"
                ),
                # Counted only for a service that balances or limits (one replica, no
                # circuit breaker: nothing is counted per request).
                "in_flight": replica.active if counted else None,
                "pending": replica.pending if counted else None,
                "rejected": {
                    "requests": replica.rejected_requests,
                    "pending": replica.rejected_pending,
                },
                "connections": (
                    {"open": pool.open_count, "idle": pool.idle_count} if pool is not None else None
                ),
                "last_error": replica.last_error,
                "last_error_at": replica.last_error_at or None,
            }
        )
    return {
        "service": service.name,
        "tenant": service.tenant or None,
        "balancer": replicas.policy_name,
        "panic": replicas.panic,
        "in_rotation": replicas.up_count,
        "retries": replicas.retried_counts(),
        "retry_budget": {
            "available": round(replicas.budget, 3),
            "min": replicas.budget_min,
            "percent": config.retries.budget_percent if replicas.retry_on else 0,
            "exhausted": replicas.budget_exhausted,
        },
        "health_check": (
            msgspec.to_builtins(config.health_check) if config.health_check is not None else None
        ),
        "replicas": rows,
    }


def _tenant_summary(config: GatewayConfig, tenant: TenantConfig) -> dict[str, Any]:
    return {
        "name": tenant.name,
        "hosts": tenant_hosts(config, tenant),
        "services": [s.name for s in tenant.services],
    }


def _warnings(service: Service) -> list[dict[str, str]]:
    """A service's spec warnings (dangling refs, schema problems, ...) and its own."""
    found = [*service.spec.warnings] if service.spec is not None else []
    found += service.notes
    return [_problem_data(p) for p in found]


def _problem_data(p: Problem) -> dict[str, str]:
    return {
        "file": p.file,
        "pointer": p.pointer,
        "message": p.message,
        "hint": p.hint,
        "severity": p.severity,
    }


def _name_mismatch(kind: str, body: dict[str, Any], name: str) -> Response | None:
    """A PUT's body names the object of its URL (or no object: it gets the URL's name);
    another name is a 400."""
    if body.setdefault("name", name) == name:
        return None
    return _problem(
        400,
        f"the body names the {kind} {body['name']!r}, the URL {name!r}",
        problems=[Problem(ADMIN_SOURCE, "/name", "not the name in the URL", "")],
    )


def _problem(
    status: int,
    detail: str,
    *,
    problems: list[Problem] | None = None,
    headers: list[tuple[str, str]] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": reason_phrase(status),
        "status": status,
        "detail": detail,
    }
    if problems:
        body["problems"] = [_problem_data(p) for p in problems]
    return status, [_PROBLEM, *(headers or [])], orjson.dumps(body)


def _refused(exc: ConfigError | SnapshotError) -> Response:
    problems = exc.problems
    first = problems[0] if problems else None
    detail = (
        f"the change is refused, the running config is untouched: {first}"
        if first is not None
        else "the change is refused"
    )
    return _problem(422, detail, problems=problems)


class _Stale(Exception):
    """A merged write found its base changed in the store (see `_patched`)."""


class _Answer(Exception):
    """Stop a handler and answer `response`."""

    def __init__(self, response: Response) -> None:
        super().__init__(response[0])
        self.response = response


def _json_object(request: LocalRequest) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "application/json")
    media = content_type.split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise _Answer(_problem(415, f"send JSON (Content-Type: application/json), not {media}"))
    try:
        body = orjson.loads(request.body)
    except orjson.JSONDecodeError as exc:
        raise _Answer(_problem(400, f"the body is not JSON: {exc}")) from None
    if not isinstance(body, dict):
        raise _Answer(_problem(400, "the body must be a JSON object"))
    return body


def metrics_snapshot(metrics: Callable[[], Awaitable[Response]], path: str) -> AdminSnapshot:
    """What a metrics listener routes with: the metrics alone, without a token."""

    async def handler(request: LocalRequest) -> Response:
        return await metrics()

    router = Router()
    router.add(
        "GET", path, Target.local(owner=_AdminOwner(), name="metrics", handler=handler, max_body=0)
    )
    router.compile()
    return AdminSnapshot(router)
