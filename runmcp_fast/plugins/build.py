"""A config's plugins compiled for one snapshot: checked settings, consumers, each
route's steps.

The levels merge by plugin name, later over earlier: global `plugins` →
the service's (or virtual server's) → the operation's (`operations:
{<operationId>: {plugins}}`); `{<name>: {disable: true}}` turns one off. A
consumer's own plugins are applied once an authentication step has
identified it (`Chain.for_consumer`). Settings are checked once, where they
are written; a step is made once per distinct settings and shared by every
route that has them.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

from runmcp_fast._dataplane import Consumer, Step
from runmcp_fast.config import (
    ConsumerConfig,
    GatewayConfig,
    ServiceConfig,
    split_validation_error,
)
from runmcp_fast.openapi.pointers import join
from runmcp_fast.plugins._steps import McpAuthStep
from runmcp_fast.plugins.contract import (
    COMMON_KEYS,
    BuildContext,
    Credential,
    Plugin,
    PluginError,
    Resources,
    Secret,
)
from runmcp_fast.plugins.registry import Registry, registry_for
from runmcp_fast.problems import Problem


@dataclass(frozen=True)
class Entry:
    """One plugin's checked settings at one level of the config."""

    plugin: Plugin
    settings: Any  # an instance of plugin.Config
    disable: bool
    fail_open: bool
    pointer: str  # where it is written (…/plugins/<name>)
    key: str  # the canonical settings: equal keys, one shared step


Level = dict[str, Entry]
StepKey = tuple[str, str, bool, str]
"""What makes a plugin's steps: (plugin name, its settings, fail_open, the level of a
per-scope plugin or "")."""


class PluginBuild:
    """Everything plugins need from one config, checked; `problems` lists what is wrong."""

    def __init__(
        self,
        config: GatewayConfig,
        source: str,
        kept: Mapping[StepKey, tuple[Step, ...]] | None = None,
        resources: Resources | None = None,
    ) -> None:
        self.config = config
        self.source = source
        self.resources = resources
        self.problems: list[Problem] = []
        self.registry: Registry = self._registry()
        self._steps: dict[StepKey, tuple[Step, ...]] = {}
        self._pointers: dict[int, str] = {}  # id(step) -> where its settings are written
        # The last build's steps of per-scope plugins (state that outlives a reload).
        self._kept = kept or {}
        self._levels: dict[str, Level] = {}
        self.global_level = self._level(config.plugins, "", "global")
        if metrics_on(config) and "prometheus" not in config.plugins:
            implied = self._entry("prometheus", {}, "/metrics", "global")
            if implied is not None:
                self.global_level = {**self.global_level, "prometheus": implied}
        if config.access_log and "access-log" not in config.plugins:
            # `access_log: true` (or --access-log): the access-log plugin on every route,
            # its defaults (stdout); an access-log given globally says more and wins.
            implied = self._entry("access-log", {}, "/access_log", "global")
            if implied is not None:
                self.global_level = {**self.global_level, "access-log": implied}
        consumers, credentials = self._consumers(config.consumers)
        self.consumers: dict[str, Consumer] = consumers
        self.context = BuildContext(
            base_dir=config.base_dir,
            consumers=consumers,
            credentials=credentials,
            # Not a bound method: the context would hold the build in a reference
            # cycle, which the swap's gc.freeze() keeps for good (bench/soak).
            secrets=functools.partial(read_secret, config.base_dir),
            resources=resources,
        )
        self._services: dict[tuple[str, str], tuple[ServiceConfig, str]] = {}
        for index, service in enumerate(config.services):
            self._services[("", service.name)] = (service, f"/services/{index}")
        for t, tenant in enumerate(config.tenants):
            for index, service in enumerate(tenant.services):
                self._services[(tenant.name, service.name)] = (
                    service,
                    f"/tenants/{t}/services/{index}",
                )
        # Checked now, once each: a problem is reported once, not once per route.
        for service, where in self._services.values():
            if service.plugins:
                self._level(service.plugins, where, "service")
            for op_id, operation in service.operations.items():
                self._level(operation.plugins, join(where, "operations", op_id), "operation")
        for index, server in enumerate(config.mcp_servers):
            self._level(server.plugins, f"/mcp_servers/{index}", "service")
        self.digest = _digest(config)
        self._bare_digest: str | None = None

    # -- what the snapshot build asks -------------------------------------------------

    def service_steps(
        self, tenant: str, name: str, operation_id: str | None = None, kind: str | None = None
    ) -> list[Step]:
        """The plugin steps of a service's route (of one of its operations, if given) of
        `kind` (a RouteInfo's: a plugin that names the kinds it goes on skips the others)."""
        service, where = self._services[(tenant, name)]
        levels = [self.global_level, self._level(service.plugins, where, "service")]
        if operation_id is not None and operation_id in service.operations:
            at = join(where, "operations", operation_id)
            levels.append(self._level(service.operations[operation_id].plugins, at, "operation"))
        return self._steps_of(levels, kind)

    def server_steps(self, index: int) -> list[Step]:
        """The plugin steps of a virtual MCP server's routes."""
        server = self.config.mcp_servers[index]
        return self._steps_of(
            [self.global_level, self._level(server.plugins, f"/mcp_servers/{index}", "service")],
            "virtual",
        )

    def unrouted_steps(self) -> list[Step]:
        """The steps of requests no route took: those of the global level's plugins that
        say so (`Plugin.unrouted`: access-log), for their log hook."""
        return [
            step
            for entry in self.global_level.values()
            if not entry.disable and entry.plugin.unrouted
            for step in self._step(entry, self.context)
        ]

    def bind_endpoint(
        self, steps: Sequence[Step], path: str, hosts: Sequence[str | None]
    ) -> list[Step]:
        """`steps` of the MCP endpoint at `path` on `hosts`: an mcp-auth step made for it
        (its resource URL). One that can not be is a problem, and stays unbound: it
        refuses every request, so the endpoint is never left open."""
        out: list[Step] = []
        for step in steps:
            if isinstance(step, McpAuthStep) and step.protected_resource is None:
                try:
                    bound = step.bind(path, tuple(hosts), tuple(self.config.listeners))
                    bound.adopt_counts(step.counts)  # its plugin's, kept across builds
                    step = bound
                except PluginError as exc:
                    where = self._pointers.get(id(step), "")
                    pointer = exc.pointer or join(where, *_tokens(exc.at))
                    self._problem(pointer, f"MCP endpoint {path}: {exc}", exc.hint)
            out.append(step)
        return out

    def service_digest(self, tenant: str, name: str) -> str:
        """Changes when anything that decides a service's plugin steps changes."""
        service, _ = self._services[(tenant, name)]
        if not service.plugins and not service.operations:
            # PERF: most services name no plugin: one digest for them all, not a
            # JSON encoding and a SHA-256 each (~5 us a service, every build).
            if self._bare_digest is None:
                self._bare_digest = _steps_digest([self.digest, {}, {}])
            return self._bare_digest
        data = [self.digest, service.plugins, {k: v.plugins for k, v in service.operations.items()}]
        return _steps_digest(data)

    def stateful_steps(self) -> dict[StepKey, tuple[Step, ...]]:
        """This build's steps of per-scope plugins, for the next build to reuse."""
        return {key: steps for key, steps in self._steps.items() if key[3]}

    # -- internals ----------------------------------------------------------------------

    def _problem(self, pointer: str, message: str, hint: str = "") -> None:
        problem = Problem(self.source, pointer, message, hint)
        if problem not in self.problems:
            self.problems.append(problem)

    def _registry(self) -> Registry:
        registry, errors = registry_for(self.config.custom_plugins)
        for index, error in errors:
            pointer = f"/custom_plugins/{index}" if index >= 0 else "/custom_plugins"
            self._problem(pointer, str(error), error.hint)
        return registry

    def _level(self, entries: Mapping[str, dict[str, Any]], where: str, scope: str) -> Level:
        if not entries:
            return {}  # PERF: most levels name no plugin (per service, every build)
        known = self._levels.get(where)
        if known is not None:
            return known
        level: Level = {}
        for name, raw in entries.items():
            pointer = join(where, "plugins", name)
            entry = self._entry(name, raw, pointer, scope)
            if entry is not None:
                level[name] = entry
        self._levels[where] = level
        return level

    def _entry(self, name: str, raw: dict[str, Any], pointer: str, scope: str) -> Entry | None:
        plugin = self.registry.get(name)
        if plugin is None:
            self._problem(
                pointer, f"no plugin named {name!r} is installed", self.registry.unknown(name)
            )
            return None
        if scope not in plugin.scopes:
            where = ", ".join(sorted(plugin.scopes))
            self._problem(pointer, f"{name} can not be given per {scope}", f"give it at: {where}")
            return None
        common = {k: raw[k] for k in COMMON_KEYS if k in raw}
        for key, value in common.items():
            if not isinstance(value, bool):
                self._problem(join(pointer, key), f"{key} must be true or false", "")
                return None
        disable = bool(common.get("disable", False))
        own = {k: v for k, v in raw.items() if k not in COMMON_KEYS}
        if disable:
            # Only turns off what a wider level gave: nothing else is read.
            return Entry(plugin, None, True, False, pointer, "")
        settings = self._convert(plugin.Config, own, pointer)
        if settings is _BAD:
            return None
        bad = False
        for error in plugin.check(settings):
            self._problem(join(pointer, *_tokens(error.at)), str(error), error.hint)
            bad = True
        if bad:
            return None
        key = orjson.dumps(msgspec.to_builtins(settings), option=orjson.OPT_SORT_KEYS).decode()
        return Entry(plugin, settings, False, bool(common.get("fail_open", False)), pointer, key)

    def _convert(self, kind: type[msgspec.Struct], data: Any, pointer: str) -> Any:
        try:
            return msgspec.convert(data, kind, strict=False)
        except msgspec.ValidationError as exc:
            message, within = split_validation_error(str(exc))
            hint = _settings_hint(kind)
            unknown = _UNKNOWN_FIELD.match(message)
            if unknown is not None:
                # As the config reader says it: at the key, with the likely one.
                key = unknown.group(1)
                within = join(within, key)
                message = f"unknown key {key!r}"
                close = difflib.get_close_matches(key, _keys(kind), n=1)
                if close and not within.count("/") > 1:
                    hint = f"did you mean {close[0]!r}?"
            self._problem(pointer + within, message, hint)
            return _BAD

    def _steps_of(self, levels: Sequence[Level], kind: str | None = None) -> list[Step]:
        merged: dict[str, Entry] = {}
        for level in levels:
            for name, entry in level.items():
                if entry.disable:
                    merged.pop(name, None)
                else:
                    merged[name] = entry
        for name, entry in list(merged.items()):
            routes = entry.plugin.routes
            if kind is not None and routes is not None and kind not in routes:
                del merged[name]
        for entry in list(merged.values()):
            for name in entry.plugin.supersedes:
                merged.pop(name, None)
        steps: list[Step] = []
        for entry in merged.values():
            steps += self._step(entry, self.context)
        return steps

    def _step(self, entry: Entry, context: BuildContext) -> tuple[Step, ...]:
        """The entry's steps (none when it has a problem), made once per distinct settings
        (and, for a plugin whose steps hold state, per level)."""
        scope = ""
        if entry.plugin.per_scope:
            scope = self._scope(entry.pointer)
            context = dataclasses.replace(context, scope=scope)
        cache_key = (entry.plugin.name, entry.key, entry.fail_open, scope)
        steps = self._steps.get(cache_key)
        if steps is not None:
            return steps
        steps = self._kept.get(cache_key) if scope else None
        if steps is None:
            try:
                steps = entry.plugin.steps(entry.settings, context, fail_open=entry.fail_open)
            except PluginError as exc:
                pointer = exc.pointer or join(entry.pointer, *_tokens(exc.at))
                self._problem(pointer, str(exc), exc.hint)
                return ()
            except Exception as exc:
                # A plugin that fails otherwise (a custom one's bug, a number past what a
                # compiled step holds: OverflowError) is a problem of its entry too: the
                # config is refused with the pointer, never a 500 with the running one
                # left to guess at.
                self._problem(
                    entry.pointer,
                    f"{entry.plugin.name} can not be made with these settings:"
                    f" {type(exc).__name__}: {exc}",
                    "check its settings against the plugin's documentation",
                )
                return ()
        self._steps[cache_key] = steps
        for step in steps:
            self._pointers[id(step)] = entry.pointer
            if self.resources is not None:
                # Its plugin's counters, kept by the gateway: a step made again at a
                # config change counts on from its predecessor's numbers.
                step.adopt_counts(self.resources.counters(step.name, type(step).EVENTS))
        return steps

    def _scope(self, pointer: str) -> str:
        """The level a plugin entry (at `pointer`) is written at, by names, not indexes: it
        stays the same when services are added or reordered, and on every node."""
        tokens = _tokens(pointer)
        config = self.config
        if tokens[0] == "plugins":
            return "global"
        if tokens[0] == "consumers":
            return f"consumer:{config.consumers[int(tokens[1])].name}"
        if tokens[0] == "mcp_servers":
            return f"mcp_server:{config.mcp_servers[int(tokens[1])].name}"
        if tokens[0] == "tenants":
            tenant = config.tenants[int(tokens[1])]
            service = tenant.services[int(tokens[3])]
            label, rest = f"service:{tenant.name}/{service.name}", tokens[4:]
        else:
            service = config.services[int(tokens[1])]
            label, rest = f"service:{service.name}", tokens[2:]
        if rest[:1] == ["operations"]:
            label += f"/operation:{rest[1]}"
        return label

    def _consumers(
        self, configs: Sequence[ConsumerConfig]
    ) -> tuple[dict[str, Consumer], dict[str, list[Credential]]]:
        consumers: dict[str, Consumer] = {}
        credentials: dict[str, list[Credential]] = {}
        # A consumer's own plugins are not authentication: they see no consumers.
        bare = BuildContext(
            base_dir=self.config.base_dir,
            consumers={},
            secrets=functools.partial(read_secret, self.config.base_dir),
            resources=self.resources,
        )
        for index, config in enumerate(configs):
            where = f"/consumers/{index}"
            level = self._level(config.plugins, where, "consumer")
            steps = [
                step
                for entry in level.values()
                if not entry.disable
                for step in self._step(entry, bare)
            ]
            consumer = Consumer(config.name, config.groups, steps)
            consumers[config.name] = consumer
            for plugin in self.registry:
                raw = config.credential(plugin.name)
                if raw is None or plugin.Credential is None:
                    continue
                at = join(where, plugin.name)
                credential = self._convert(plugin.Credential, raw, at)
                if credential is _BAD:
                    continue
                bad = False
                for error in plugin.check_credential(credential):
                    self._problem(join(at, *_tokens(error.at)), str(error), error.hint)
                    bad = True
                if not bad:
                    credentials.setdefault(plugin.name, []).append(
                        Credential(consumer, credential, at)
                    )
        return consumers, credentials


_BAD: Any = object()


def _tokens(at: str) -> list[str]:
    return [t.replace("~1", "/").replace("~0", "~") for t in at.split("/")[1:]] if at else []


def _keys(kind: type[msgspec.Struct]) -> list[str]:
    return [f.encode_name for f in msgspec.structs.fields(kind)]


def _settings_hint(kind: type[msgspec.Struct]) -> str:
    keys = _keys(kind)
    return f"its keys: {', '.join(keys)}" if keys else "it takes no settings: {}"


_UNKNOWN_FIELD = re.compile(r"Object contains unknown field `([^`]*)`")


def metrics_on(config: GatewayConfig) -> bool:
    """Routes are counted: metrics are on, and served somewhere (admin or their own listener)."""
    metrics = config.metrics
    return metrics.enabled and (config.admin is not None or metrics.address is not None)


def _steps_digest(data: Any) -> str:
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def _digest(config: GatewayConfig) -> str:
    """What every route's plugin steps depend on beyond its own service."""
    data = {
        "plugins": config.plugins,
        "consumers": msgspec.to_builtins(config.consumers),
        "custom_plugins": config.custom_plugins,
        "mcp_servers": [s.plugins for s in config.mcp_servers],
        "metrics": metrics_on(config),
        "access_log": config.access_log,
    }
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def read_secret(base_dir: str, value: Any, pointer: str) -> str:
    """A secret setting's value: the string, or read from {env: NAME} / {file: PATH}."""
    if isinstance(value, str):
        return value
    if isinstance(value, Secret):
        if value.env is not None:
            found = os.environ.get(value.env)
            if found is None:
                raise PluginError(
                    f"the environment variable {value.env} is not set",
                    pointer=join(pointer, "env"),
                    hint="set it for the gateway's process",
                )
            return found
        if value.file is not None:
            path = os.path.join(base_dir, value.file)
            try:
                with open(path, encoding="utf-8") as file:
                    return file.read().strip()
            except OSError as exc:
                raise PluginError(
                    f"can not read {path}: {exc.strerror or exc}",
                    pointer=join(pointer, "file"),
                ) from None
    raise PluginError("a secret is a string, {env: NAME} or {file: PATH}", pointer=pointer)
