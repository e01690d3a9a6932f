"""The config's JSON Schema with every installed plugin's settings in it, so an editor
completes `plugins:` entries and consumers' credentials (`runmcp-fast schema`)."""

from __future__ import annotations

import copy
import inspect
from typing import Any

import msgspec

from runmcp_fast.plugins.contract import COMMON_KEYS, Plugin
from runmcp_fast.plugins.registry import Registry

_COMMON = {
    "disable": {"type": "boolean", "description": "Turn off the plugin given at a wider level."},
    "fail_open": {
        "type": "boolean",
        "description": "When the plugin fails (raises), let the request go on instead of 500.",
    },
}
assert tuple(_COMMON) == COMMON_KEYS


def with_plugins(schema: dict[str, Any], registry: Registry) -> dict[str, Any]:
    """`schema` (config.config_schema()) where every `plugins` map names its plugins."""
    schema = copy.deepcopy(schema)
    defs: dict[str, Any] = schema["$defs"]
    plugins = sorted(registry, key=lambda p: p.name)
    settings_types = [p.Config for p in plugins]
    credential_types = [p.Credential for p in plugins if p.Credential is not None]
    _, components = msgspec.json.schema_components(
        [*settings_types, *credential_types], ref_template="#/$defs/{name}"
    )
    # As JSON has it (a tuple default, e.g. access-log's fields, is an array).
    components = msgspec.json.decode(msgspec.json.encode(components))
    for name, component in components.items():
        defs.setdefault(name, component)
    properties: dict[str, Any] = {}
    for plugin in plugins:
        entry = copy.deepcopy(defs[plugin.Config.__name__])
        entry.setdefault("properties", {}).update(_COMMON)
        entry["description"] = _describe(plugin)
        properties[plugin.name] = entry
    defs["Plugins"] = {
        "type": "object",
        "description": "Plugins by name (docs/plugins.md); later levels override earlier ones.",
        "properties": properties,
        "additionalProperties": False,
    }
    ref = {"$ref": "#/$defs/Plugins"}
    schema["properties"]["plugins"] = {**ref, "default": {}}
    for definition in defs.values():
        props = definition.get("properties", {})
        if "plugins" in props and definition is not defs["Plugins"]:
            props["plugins"] = {**ref, "default": {}}
    consumer = defs["ConsumerConfig"]["properties"]
    for plugin in plugins:
        if plugin.Credential is not None and plugin.name in consumer:
            description = consumer[plugin.name].get("description", "")
            consumer[plugin.name] = {
                "anyOf": [{"$ref": f"#/$defs/{plugin.Credential.__name__}"}, {"type": "null"}],
                "description": description,
                "default": None,
            }
    return schema


def _describe(plugin: Plugin) -> str:
    doc = plugin.summary or inspect.getdoc(type(plugin)) or ""
    return f"{plugin.name} ({plugin.phase} phase, priority {plugin.priority}): {doc}"
