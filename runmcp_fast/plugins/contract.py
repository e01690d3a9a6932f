"""The plugin contract: what a kind of plugin declares, and what it is given to build steps.

A built-in plugin subclasses `Plugin`: its `Config` (a msgspec Struct) is
what the config file's entry for it must be (and its JSON Schema), `check`
adds the checks a type can not express, and `step` makes the route's step
from checked settings. A custom plugin is a plain Python class (see
`CustomPlugin`), adapted here.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgspec

from runmcp_fast._dataplane import PHASES, Consumer, Counters, PyStep, Step

log = logging.getLogger("runmcp_fast.plugins")

# Where settings may be given: the config's top level, a service (or virtual
# server), an operation of a service, a consumer.
SCOPES = frozenset({"global", "service", "operation", "consumer"})
# Keys every plugin entry may have besides its own settings.
COMMON_KEYS = ("disable", "fail_open")


class PluginError(Exception):
    """Settings a plugin can not use: `at` is a JSON pointer below the plugin's entry (or
    `pointer` one from the config's root, for a consumer's credential), `hint` the fix."""

    def __init__(self, message: str, *, at: str = "", hint: str = "", pointer: str = "") -> None:
        super().__init__(message)
        self.at = at
        self.hint = hint
        self.pointer = pointer


class Secret(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """A secret kept out of the config: from an environment variable or a file."""

    env: str | None = None
    file: str | None = None

    def __post_init__(self) -> None:
        if (self.env is None) == (self.file is None):
            raise ValueError("give one of env or file")


SecretValue = str | Secret
"""How a plugin's settings type a secret (a key, a password hash, an HMAC key)."""


class Settings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """The base of plugins' settings types: unknown keys are refused."""


class NoSettings(Settings, frozen=True):
    """A plugin without settings of its own."""


@dataclass(frozen=True)
class Credential:
    """What a consumer holds for an authentication plugin, checked."""

    consumer: Consumer
    value: Any  # an instance of the plugin's Credential type
    pointer: str  # where the config gives it: /consumers/<i>/<plugin>


class Resource:
    """What `Resources` keeps: anything with `close()` (flush what it holds, stop its threads).

    One that writes to files it reopens on SIGUSR1 (after logrotate moved them) says
    so with `reopens` and has `reopen()`."""

    reopens: ClassVar[bool] = False

    def close(self) -> None:
        raise NotImplementedError

    def reopen(self) -> None:
        """Reopen its files (on the event loop's thread): what was written before goes
        to the old ones, what comes after to the new."""


class Resources:
    """What plugins keep running across the snapshots of one gateway: an access log's
    sink and its thread, say. A build asks for one by key (`get`); the first build that
    asks makes it, later builds that ask with the same key share it, so a reload neither
    restarts it nor loses what it holds. The gateway closes them all when it stops (off
    the event loop: a close may wait on the disk or the network)."""

    def __init__(self) -> None:
        self._items: dict[str, Resource] = {}
        self._counters: dict[tuple[str, tuple[str, ...]], Counters] = {}
        self._lock = threading.Lock()  # builds run on the build thread, the close elsewhere
        self.closed = False

    def counters(self, plugin: str, events: tuple[str, ...]) -> Counters:
        """The counters of `plugin`'s steps (see Counters): the same for every build, so
        they go on across config changes, however often a change makes its steps again.
        One per plugin: runmcp_plugin_events_total and runmcp_plugin_errors_total are
        labelled by plugin alone (and so bounded by the plugins installed)."""
        with self._lock:
            found = self._counters.get((plugin, events))
            if found is None:
                found = self._counters[(plugin, events)] = Counters(events)
            return found

    def get(self, key: str, make: Callable[[], Resource]) -> Resource:
        with self._lock:
            if self.closed:
                raise RuntimeError("the gateway has stopped")
            found = self._items.get(key)
            if found is None:
                found = self._items[key] = make()
            return found

    def __len__(self) -> int:
        return len(self._items)

    @property
    def reopens(self) -> bool:
        """Some resource writes to files that SIGUSR1 reopens."""
        with self._lock:
            return any(item.reopens for item in self._items.values())

    def reopen(self) -> int:
        """Reopen every resource's files (SIGUSR1); how many resources did."""
        with self._lock:
            items = [item for item in self._items.values() if item.reopens]
        for item in items:
            try:
                item.reopen()
            except Exception:
                log.exception("reopening %r failed", item)
        return len(items)

    def close(self) -> None:
        """Close every resource, the last made first; one that fails is logged."""
        with self._lock:
            self.closed = True
            items = list(self._items.values())
            self._items.clear()
        for item in reversed(items):
            try:
                item.close()
            except Exception:
                log.exception("closing %r failed", item)


@dataclass
class BuildContext:
    """What a plugin may read when it makes a step (once per snapshot, off the event loop)."""

    base_dir: str
    consumers: Mapping[str, Consumer]
    """Every consumer by name."""
    credentials: Mapping[str, list[Credential]] = field(default_factory=dict)
    """plugin name -> the consumers' credentials for it, for authentication plugins."""
    secrets: Callable[[Any, str], str] | None = None
    """Resolves a secret setting (a string, {env: NAME} or {file: PATH}); raises PluginError."""
    scope: str = ""
    """For a plugin with `per_scope`: where the entry the step is made for is written, by
    name (`global`, `service:pets`, `service:acme/pets/operation:getPet`, `mcp_server:all`,
    `consumer:alice`): what a limit's counters belong to."""
    resources: Resources | None = None
    """The gateway's long-lived resources (see Resources); None for a build that serves no
    traffic (`runmcp-fast check`, `routes`): a plugin then starts nothing."""

    def consumer(self, name: str) -> Consumer:
        found = self.consumers.get(name)
        if found is None:
            raise PluginError(f"no consumer named {name!r}", hint="name one of `consumers`")
        return found

    def secret(self, value: Any, pointer: str) -> str:
        """A secret setting's value (`pointer`: where it is written, for the error)."""
        assert self.secrets is not None
        return self.secrets(value, pointer)


class Plugin:
    """A kind of plugin. Subclasses set the class attributes and `step`."""

    name: ClassVar[str]
    phase: ClassVar[str]
    priority: ClassVar[int] = 0
    Config: ClassVar[type[msgspec.Struct]] = NoSettings
    """Its settings. Every entry may also have `disable` and `fail_open`."""
    Credential: ClassVar[type[msgspec.Struct] | None] = None
    """For an authentication plugin: what a consumer gives under the plugin's name."""
    scopes: ClassVar[frozenset[str]] = SCOPES
    """The config levels it may be given at."""
    routes: ClassVar[frozenset[str] | None] = None
    """The kinds of route it goes on (`RouteInfo.kind`: operation, prefix, mcp, virtual);
    None: all. A plugin given to a service reaches only its routes of these kinds."""
    unrouted: ClassVar[bool] = False
    """Given globally, its log hook also runs for requests no route took (404, 405, a bad
    Host): the snapshot's `unrouted_chain`. For logging plugins (access-log)."""
    supersedes: ClassVar[frozenset[str]] = frozenset()
    """Plugins left off a route that has this one (mcp-auth: jwt-auth)."""
    summary: ClassVar[str] = ""
    per_scope: ClassVar[bool] = False
    """Its steps hold state that belongs to where the entry is written (a limit's counters):
    one step per level with settings, never shared with another level's equal settings;
    `context.scope` names the level."""

    def check(self, settings: Any) -> Iterator[PluginError]:
        """What the settings' type could not say is wrong (one error each)."""
        return iter(())

    def check_credential(self, credential: Any) -> Iterator[PluginError]:
        return iter(())

    def step(self, settings: Any, context: BuildContext, *, fail_open: bool) -> Step:
        raise NotImplementedError

    def steps(self, settings: Any, context: BuildContext, *, fail_open: bool) -> tuple[Step, ...]:
        """The route's steps: `step`'s one, unless the plugin works in two phases (headers:
        the request's early, the response's in response_headers); each its own name."""
        return (self.step(settings, context, fail_open=fail_open),)


class CustomPlugin(Plugin):
    """A custom plugin class, adapted: its instances are the route's Python steps.

    The class has `name`, `phase` (a phase's name), optionally `priority`,
    `Config` (a msgspec Struct; without one it takes no settings) and
    `summary`, and any of `request(view)`, `response(view, status, headers)`,
    `log(view, status)`; each may be `async` (request: the route then awaits
    it). It is made with its settings: `cls(settings)` (or `cls()` without
    `Config`), once per distinct settings of a snapshot.
    """

    def __init__(self, cls: type, origin: str) -> None:
        name, phase = getattr(cls, "name", None), getattr(cls, "phase", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"{origin}: the class has no str `name`")
        if not isinstance(phase, str) or phase not in PHASES:
            raise PluginError(f"{origin}: its phase {phase!r} is not one of {', '.join(PHASES)}")
        if not any(callable(getattr(cls, hook, None)) for hook in ("request", "response", "log")):
            raise PluginError(f"{origin}: the class has none of request, response, log")
        config = getattr(cls, "Config", None)
        if config is not None and not (
            isinstance(config, type) and issubclass(config, msgspec.Struct)
        ):
            raise PluginError(f"{origin}: Config is not a msgspec Struct")
        self.cls = cls
        self.origin = origin
        self.name = name  # type: ignore[misc]
        self.phase = phase  # type: ignore[misc]
        self.priority = int(getattr(cls, "priority", 0))  # type: ignore[misc]
        self.Config = config or NoSettings  # type: ignore[misc]
        self.summary = getattr(cls, "summary", "") or inspect.getdoc(cls) or ""  # type: ignore[misc]
        self._takes_settings = config is not None

    def step(self, settings: Any, context: BuildContext, *, fail_open: bool) -> Step:
        instance = self.cls(settings) if self._takes_settings else self.cls()
        return PyStep(instance, name=self.name, priority=self.priority, fail_open=fail_open)
