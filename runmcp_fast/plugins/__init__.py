"""Plugins: kinds of steps a config can put on routes (docs/plugins.md).

A plugin has a name, a phase, a priority and a settings type; the snapshot
build merges its settings over the config's levels (global, service,
operation, consumer) and gives each route the steps that result. Built-in
plugins are compiled (`_steps.pyx`); custom ones are Python classes,
registered through the entry-point group `runmcp_fast.plugins` or named in
`custom_plugins`.
"""

from runmcp_fast.plugins.contract import BuildContext, CustomPlugin, Plugin, PluginError
from runmcp_fast.plugins.registry import Registry, registry_for

__all__ = ["BuildContext", "CustomPlugin", "Plugin", "PluginError", "Registry", "registry_for"]
