"""Which plugins a gateway has: the built-ins, those installed through the entry-point
group `runmcp_fast.plugins`, and those a config names in `custom_plugins`."""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import os
import sys
from collections.abc import Iterable, Iterator, Sequence

from runmcp_fast.plugins.builtin import BUILTINS
from runmcp_fast.plugins.contract import CustomPlugin, Plugin, PluginError

ENTRY_POINT_GROUP = "runmcp_fast.plugins"


class Registry:
    """Plugins by name."""

    def __init__(self, plugins: Iterable[Plugin]) -> None:
        self._plugins: dict[str, Plugin] = {}
        for plugin in plugins:
            if plugin.name in self._plugins:
                raise PluginError(f"two plugins named {plugin.name!r}")
            self._plugins[plugin.name] = plugin

    def get(self, name: str) -> Plugin | None:
        return self._plugins.get(name)

    def names(self) -> list[str]:
        return sorted(self._plugins)

    def __iter__(self) -> Iterator[Plugin]:
        return iter(self._plugins.values())

    def unknown(self, name: str) -> str:
        """The hint for a name no plugin has."""
        close = difflib.get_close_matches(name, self._plugins, n=1)
        if close:
            return f"did you mean {close[0]!r}?"
        return "installed: " + ", ".join(self.names())


def load_class(reference: str) -> type:
    """`package.module:Class` imported; PluginError when it can not be."""
    module_name, sep, attr = reference.partition(":")
    if not sep or not module_name or not attr:
        raise PluginError(
            f"{reference!r} is not a plugin reference", hint="write it as package.module:Class"
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # an import runs arbitrary code: report whatever it raises
        raise PluginError(
            f"can not import {module_name!r}: {type(exc).__name__}: {exc}",
            hint="is the package installed in the gateway's environment?",
        ) from None
    found = getattr(module, attr, None)
    if not isinstance(found, type):
        raise PluginError(f"{module_name!r} has no class {attr!r}")
    return found


PathStamp = tuple[tuple[str, int], ...]
# The last scan: sys.path's directories with their mtimes then, and what was found.
_scanned: tuple[PathStamp, list[tuple[str, str]]] | None = None


def _entry_points() -> list[tuple[str, str]]:
    """The installed plugins' entry points, scanned again only when a directory on
    sys.path changed (a package installed or removed since). Not on every build: each
    scan leaves importlib.metadata's lookups of paths that do not exist in reference
    cycles that die at the next scan, after a swap's gc.freeze() kept them for good
    (~4 KB per config change, found by bench/soak)."""
    global _scanned
    stamp = _path_stamp()
    if _scanned is None or _scanned[0] != stamp:
        found = [
            (entry.name, entry.value)
            for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        ]
        _scanned = (stamp, found)
    return _scanned[1]


def _path_stamp() -> PathStamp:
    stamp = []
    for entry in sys.path:
        try:
            stamp.append((entry, os.stat(entry or ".").st_mtime_ns))
        except OSError:
            stamp.append((entry, -1))
    return tuple(stamp)


def registry_for(custom: Sequence[str] = ()) -> tuple[Registry, list[tuple[int, PluginError]]]:
    """The registry of a config with `custom_plugins: custom`, and what could not be loaded
    (index in `custom`, or -1 for an installed entry point)."""
    plugins: list[Plugin] = [plugin() for plugin in BUILTINS]
    errors: list[tuple[int, PluginError]] = []
    taken = {p.name for p in plugins}
    for name, reference in _entry_points():
        try:
            plugin = CustomPlugin(load_class(reference), f"entry point {name!r} ({reference})")
        except PluginError as exc:
            errors.append((-1, exc))
            continue
        if plugin.name in taken:
            errors.append((-1, PluginError(f"entry point {name!r}: {plugin.name!r} is taken")))
            continue
        taken.add(plugin.name)
        plugins.append(plugin)
    for index, reference in enumerate(custom):
        try:
            plugin = CustomPlugin(load_class(reference), reference)
        except PluginError as exc:
            errors.append((index, exc))
            continue
        if plugin.name in taken:
            errors.append(
                (
                    index,
                    PluginError(
                        f"a plugin named {plugin.name!r} is already installed",
                        hint="give the class another name",
                    ),
                )
            )
            continue
        taken.add(plugin.name)
        plugins.append(plugin)
    return Registry(plugins), errors
