"""One adapter per router: build it from (method, template) pairs, resolve, time a loop.

Each adapter gives its router what it accepts and records what it refused and why.
`resolve` answers the original template (or None) for the correctness guard; `loop`
returns the function that is timed: one pass over a fixed request list, calling the
router the way its own framework does, with nothing else in the loop body.
"""

from __future__ import annotations

import keyword
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from falcon.routing import CompiledRouter
from starlette.routing import Match, Route
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule

from bench.workload import Op, Request, priority_key
from runmcp_fast.router import RouteConflict, Router, TemplateError

_PARAM = re.compile(r"\{([^{}]*)\}")


def _identifier(name: str) -> str:
    """falcon, Starlette and werkzeug only take Python identifiers: `{user-id}` -> `user_id`."""
    name = re.sub(r"\W", "_", name)
    if not name or name[0].isdigit() or keyword.iskeyword(name):
        name = "_" + name
    return name


def _by_template(ops: Sequence[Op]) -> dict[str, list[str]]:
    """template -> its methods, in spec order (frameworks register one route per path)."""
    methods: dict[str, list[str]] = defaultdict(list)
    for method, template in ops:
        methods[template].append(method)
    return methods


class Peer:
    name = ""
    given = ""  # what the router was given, for the report
    leaves_out = ""  # requests it is not timed on, beyond those of refused templates

    def __init__(self, ops: Sequence[Op]) -> None:
        self.templates = len(_by_template(ops))
        self.rejected: dict[str, list[str]] = defaultdict(list)  # reason -> templates
        self._original: dict[str, str] = {}  # the template as the router got it -> the spec's

    def accepts(self, request: Request, expected: str | None) -> bool:
        """Whether `request` is a fair question for this router: its route was accepted."""
        return expected is None or all(expected not in ts for ts in self.rejected.values())

    def resolve(self, host: str | None, method: str, path: str) -> str | None:
        raise NotImplementedError

    def loop(self, requests: Sequence[Request]) -> Callable[[], None]:
        raise NotImplementedError

    def _rename(self, template: str, opening: str = "{", closing: str = "}") -> str:
        renamed = _PARAM.sub(lambda m: opening + _identifier(m.group(1)) + closing, template)
        self._original[renamed] = template
        return renamed


class RunmcpFast(Peer):
    name = "runmcp_fast"
    given = "every operation; Router.match(host, method, path)"

    def __init__(self, ops: Sequence[Op]) -> None:
        super().__init__(ops)
        self.router = router = Router()
        for method, template in ops:
            try:
                router.add(method, template, template)
            except (RouteConflict, TemplateError) as exc:
                self.rejected[type(exc).__name__].append(template)
        router.compile()

    def resolve(self, host: str | None, method: str, path: str) -> str | None:
        m = self.router.match(host, method, path)
        return None if m is None else m.template

    def loop(self, requests: Sequence[Request]) -> Callable[[], None]:
        match = self.router.match

        def run() -> None:
            for host, method, path in requests:
                match(host, method, path)

        return run


class _FalconResource:
    def __init__(self, methods: list[str]) -> None:
        self.methods = frozenset(methods)
        for method in methods:
            setattr(self, "on_" + method.lower(), self._respond)

    def _respond(self, req: Any, resp: Any) -> None:  # pragma: no cover - never called
        pass


class Falcon(Peer):
    name = "falcon"
    given = "one resource per template (on_<method>); find(path) + method_map[method]"
    leaves_out = "misses with an empty segment (falcon lets a parameter match one)"

    def __init__(self, ops: Sequence[Op]) -> None:
        super().__init__(ops)
        self.router = router = CompiledRouter()
        for template, methods in _by_template(ops).items():
            # NOTE: falcon pastes static segments into the Python source it generates
            # between single quotes without escaping them; one `'` (Graph's
            # `getByPath(path='x')`-style segments) is a SyntaxError for the whole router.
            if any("'" in seg or "\\" in seg for seg in template.split("/") if "{" not in seg):
                self.rejected["quote in a static segment (breaks falcon's codegen)"].append(
                    template
                )
                continue
            try:
                router.add_route(self._rename(template), _FalconResource(methods))
            except ValueError as exc:  # falcon.routing.util.UnacceptableRouteError
                reason = (
                    "sibling params with different names"
                    if "conflicts with another route" in str(exc)
                    else str(exc)
                )
                self.rejected[reason].append(template)
        router.find("/")  # falcon compiles on first use: keep that out of the timing

    def accepts(self, request: Request, expected: str | None) -> bool:
        # NOTE: falcon lets a parameter match an empty segment (`/teams/1/discussions/`
        # is `{discussion_number}=""`): by its rules those misses are hits. Left out.
        path = request[2]
        if expected is None and ("//" in path or path.endswith("/")):
            return False
        return super().accepts(request, expected)

    def resolve(self, host: str | None, method: str, path: str) -> str | None:
        found = self.router.find(path)
        if found is None:
            return None
        resource, _, _, template = found
        if not isinstance(resource, _FalconResource) or method not in resource.methods:
            return None
        return self._original[str(template)]

    def loop(self, requests: Sequence[Request]) -> Callable[[], None]:
        find = self.router.find

        def run() -> None:
            for _host, method, path in requests:
                found = find(path)
                if found is not None:
                    found[1][method]  # what falcon.App does; unknown methods get a 405 responder

        return run


class Starlette(Peer):
    name = "starlette"
    given = "one Route per template, static-first order; scan route.matches(scope)"

    def __init__(self, ops: Sequence[Op]) -> None:
        super().__init__(ops)
        self._full, self._partial = Match.FULL, Match.PARTIAL

        def endpoint(request: Any) -> None:  # pragma: no cover - never called
            pass

        by_template = _by_template(ops)
        # NOTE: Starlette takes the first route that matches, in the order given; an app
        # author lists `/users/delta()` before `/users/{id}`. priority_key does that.
        self.routes = [
            Route(self._rename(t), endpoint, methods=by_template[t])
            for t in sorted(by_template, key=priority_key)
        ]

    @staticmethod
    def scope(host: str | None, method: str, path: str) -> dict[str, Any]:
        headers = [(b"host", host.encode())] if host else []
        return {"type": "http", "method": method, "path": path, "root_path": "", "headers": headers}

    def resolve(self, host: str | None, method: str, path: str) -> str | None:
        scope = self.scope(host, method, path)
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is self._full:
                return self._original[route.path]
        return None

    def loop(self, requests: Sequence[Request]) -> Callable[[], None]:
        scopes = [self.scope(*r) for r in requests]  # the server builds these, not the router
        routes, full, partial_ = self.routes, self._full, self._partial

        # The loop of starlette.routing.Router.app, without the dispatch.
        def run() -> None:
            for scope in scopes:
                partial = None
                for route in routes:
                    match, _child_scope = route.matches(scope)
                    if match is full:
                        break
                    if match is partial_ and partial is None:
                        partial = route

        return run


class Werkzeug(Peer):
    name = "werkzeug"
    given = "one Rule per template ({x} -> <x>), merge_slashes=False; MapAdapter.match"

    def __init__(self, ops: Sequence[Op]) -> None:
        super().__init__(ops)
        self._http_exception = HTTPException
        rules = [
            Rule(self._rename(t, "<", ">"), endpoint=t, methods=methods)
            for t, methods in _by_template(ops).items()
        ]
        self.map = Map(rules, merge_slashes=False)
        self._adapters: dict[str | None, Any] = {}

    def adapter(self, host: str | None) -> Any:
        # A werkzeug app binds once per request (bind_to_environ); bound once here.
        if host not in self._adapters:
            self._adapters[host] = self.map.bind(host or "localhost")
        return self._adapters[host]

    def resolve(self, host: str | None, method: str, path: str) -> str | None:
        try:
            endpoint, _ = self.adapter(host).match(path, method)
        except self._http_exception:  # NotFound, MethodNotAllowed, RequestRedirect
            return None
        return str(endpoint)

    def loop(self, requests: Sequence[Request]) -> Callable[[], None]:
        calls = [(self.adapter(host).match, path, method) for host, method, path in requests]
        http_exception = self._http_exception

        def run() -> None:
            for match, path, method in calls:
                # PERF: contextlib.suppress would add a call per request; apps use try.
                try:  # noqa: SIM105
                    match(path, method)
                except http_exception:
                    pass

        return run


SYSTEMS: dict[str, type[Peer]] = {
    cls.name: cls for cls in (RunmcpFast, Falcon, Starlette, Werkzeug)
}
PEERS = ("falcon", "starlette", "werkzeug")
