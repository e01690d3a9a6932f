"""Parameters: read, check, merge path-level with operation-level, normalise to `Parameter`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from runmcp_fast.openapi.documents import Documents
from runmcp_fast.openapi.model import Location, Parameter
from runmcp_fast.openapi.pointers import join
from runmcp_fast.problems import DocumentError, ProblemLog, describe

LOCATIONS_3 = ("query", "path", "header", "cookie")
LOCATIONS_2 = ("query", "path", "header", "body", "formData")

# OpenAPI 3's defaults: `form` for query and cookie, `simple` for path and header.
_DEFAULT_STYLE = {"query": "form", "cookie": "form", "path": "simple", "header": "simple"}

# Swagger 2.0 collectionFormat -> OpenAPI 3 (style, explode). `csv` depends on
# the location, so it is not in here; `tsv` has no OpenAPI 3 equivalent.
_COLLECTION_FORMATS = {
    "multi": ("form", True),
    "ssv": ("spaceDelimited", False),
    "pipes": ("pipeDelimited", False),
    "tsv": ("tabDelimited", False),
}

# The JSON Schema keywords a Swagger 2.0 non-body parameter carries inline.
_SWAGGER_SCHEMA_KEYS = (
    "type",
    "format",
    "items",
    "default",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "enum",
    "multipleOf",
)


class RawParameter:
    """A checked parameter object (its `$ref` followed) and where it is defined."""

    __slots__ = ("file", "key", "location", "name", "normalised", "pointer", "raw")

    def __init__(self, name: str, location: str, raw: dict[str, Any], file: str, pointer: str):
        self.name = name
        self.location = location
        """As written: Swagger 2.0 also has `body` and `formData`."""
        self.raw = raw
        self.file = file
        self.pointer = pointer
        # Header names are case-insensitive (RFC 9110), so `X-Id` overrides `x-id`.
        self.key = (name.lower() if location == "header" else name, location)
        """What merging and duplicate checks compare."""
        self.normalised: Parameter | None = None
        """The `Parameter`, made on first use and shared by every operation using this one."""


class Reader:
    """Reads `parameters` lists for one spec.

    PERF: real specs share parameters: Graph's 22k operations use ~90k
    parameters, mostly the same few dozen `$ref`'d ones and path-level ones
    repeated for every method. Each distinct definition is checked and
    normalised once, and every operation gets the same frozen `Parameter`.
    """

    __slots__ = ("_checked", "_docs", "_locations", "_log", "_normalised", "_swagger")

    def __init__(self, docs: Documents, log: ProblemLog, *, swagger: bool) -> None:
        self._docs = docs
        self._log = log
        self._swagger = swagger
        self._locations = LOCATIONS_2 if swagger else LOCATIONS_3
        # (file, pointer) of a `$ref`'d definition -> its check's outcome.
        self._checked: dict[tuple[str, str], RawParameter | None] = {}

    def read(self, value: Any, file: str, pointer: str) -> list[RawParameter]:
        """The `parameters` list at `pointer`; broken entries are logged and left out."""
        log = self._log
        if value is None:
            return []
        if not isinstance(value, list):
            log.error(
                file,
                pointer,
                f"parameters is {describe(value)}, not a list",
                "write parameters: [{name: ..., in: ...}]",
            )
            return []
        found: list[RawParameter] = []
        seen: set[tuple[str, str]] = set()
        for i, item in enumerate(value):
            param: RawParameter | None
            if isinstance(item, dict) and "$ref" not in item:
                param = _check(item, file, f"{pointer}/{i}", self._locations, log)
            else:
                try:
                    raw, pfile, ppointer = self._docs.deref(item, file, f"{pointer}/{i}")
                except DocumentError as exc:
                    log.add(exc.problem)
                    continue
                where = (pfile, ppointer)
                if where in self._checked:
                    param = self._checked[where]
                else:
                    param = _check(raw, pfile, ppointer, self._locations, log)
                    self._checked[where] = param
            if param is None:
                continue
            if param.key in seen:
                log.warning(
                    param.file,
                    param.pointer,
                    f"parameter '{param.name}' in {param.location} is listed twice; "
                    "the first is used",
                    "remove one of them",
                )
                continue
            seen.add(param.key)
            found.append(param)
        return found

    def normalise(self, p: RawParameter) -> Parameter:
        """The `Parameter` for a checked path/query/header/cookie parameter."""
        param = p.normalised
        if param is None:
            param = p.normalised = to_parameter(p, self._log, swagger=self._swagger)
        return param


def _check(
    raw: Any, file: str, pointer: str, locations: tuple[str, ...], log: ProblemLog
) -> RawParameter | None:
    if not isinstance(raw, dict):
        log.error(
            file,
            pointer,
            f"parameter is {describe(raw)}, not a mapping",
            "write {name: ..., in: ..., schema: ...} or {$ref: '#/components/parameters/...'}",
        )
        return None
    name = raw.get("name")
    where = raw.get("in")
    choices = "|".join(locations)
    ok = True
    if name == "" and where in ("query", "header", "cookie"):
        # Valid OpenAPI (name is only required to be a string), seen in real specs, and
        # no request can send it: ignored rather than the whole spec refused.
        log.warning(
            file,
            join(pointer, "name"),
            "parameter has an empty name; ignored",
            "give it its name, or remove it",
        )
        return None
    if not isinstance(name, str) or not name:
        log.error(file, pointer, "parameter has no 'name'", "add name: <the parameter's name>")
        ok = False
    if where is None:
        log.error(file, pointer, "parameter has no 'in'", f"add in: {choices}")
        ok = False
    elif where not in locations:
        hint = f"use one of {choices}"
        if where in ("body", "formData"):
            hint = "OpenAPI 3 describes the body under the operation's requestBody"
        log.error(file, join(pointer, "in"), f"parameter 'in' is {where!r}", hint)
        ok = False
    if not ok:
        return None
    assert isinstance(name, str) and isinstance(where, str)
    if where == "path" and raw.get("required") is False:
        # Reported, but kept: dropping it would add a misleading "not declared".
        log.error(
            file,
            join(pointer, "required"),
            f"path parameter '{name}' has required: false",
            "a path parameter is always required: set required: true",
        )
    return RawParameter(name, where, raw, file, pointer)


def merge(path_level: list[RawParameter], op_level: list[RawParameter]) -> list[RawParameter]:
    """Path-level parameters, each replaced in place by an operation-level one of the same
    name and location, then the operation's own. (OpenAPI: the operation's win.)"""
    if not path_level:
        return op_level
    if not op_level:
        return path_level
    own = {p.key: p for p in op_level}
    merged = [own.pop(p.key, p) for p in path_level]
    merged.extend(p for p in op_level if p.key in own)
    return merged


def to_parameter(p: RawParameter, log: ProblemLog, *, swagger: bool) -> Parameter:
    """Normalise a checked path/query/header/cookie parameter."""
    raw = p.raw
    location = cast(Location, p.location)  # checked by _check()
    media_type: str | None = None
    style: str
    explode: bool
    if swagger:
        schema = swagger_schema(raw)
        fmt = raw.get("collectionFormat")
        # csv, the default, is OpenAPI 3's default style without explode.
        style, explode = _COLLECTION_FORMATS.get(str(fmt), (_DEFAULT_STYLE[location], False))
    else:
        schema, media_type = _schema_3(raw, p, log)
        given_style = raw.get("style")
        style = given_style if isinstance(given_style, str) else _DEFAULT_STYLE[location]
        given_explode = raw.get("explode")
        explode = given_explode if isinstance(given_explode, bool) else style == "form"
    description = raw.get("description")
    return Parameter(
        name=p.name,
        location=location,
        required=True if location == "path" else raw.get("required") is True,
        schema=schema,
        style=style,
        explode=explode,
        pointer=p.pointer,
        file=p.file,
        description=description if isinstance(description, str) else "",
        deprecated=raw.get("deprecated") is True,
        media_type=media_type,
    )


def _schema_3(
    raw: dict[str, Any], p: RawParameter, log: ProblemLog
) -> tuple[dict[str, Any], str | None]:
    schema = raw.get("schema")
    if isinstance(schema, dict):
        return schema, None
    if "schema" in raw:
        return as_schema(schema, p.file, p.pointer + "/schema", log), None
    content = raw.get("content")
    if isinstance(content, dict) and content:
        media_type, media = next(iter(content.items()))
        schema = media.get("schema") if isinstance(media, dict) else None
        pointer = join(p.pointer, "content", media_type, "schema")
        return as_schema(schema, p.file, pointer, log), str(media_type)
    return {}, None


def as_schema(value: Any, file: str, pointer: str, log: ProblemLog) -> dict[str, Any]:
    """A schema as a dict: JSON Schema's `true`/`false` become `{}`/`{"not": {}}`."""
    if isinstance(value, dict):
        return value
    if value is None or value is True:
        return {}
    if value is False:
        return {"not": {}}
    log.warning(file, pointer, f"schema is {describe(value)}, not a mapping; ignored")
    return {}


def swagger_schema(raw: dict[str, Any]) -> dict[str, Any]:
    """The schema a Swagger 2.0 non-body parameter (or `items`) spells out inline."""
    schema = {k: raw[k] for k in _SWAGGER_SCHEMA_KEYS if k in raw}
    if schema.get("type") == "file":
        return {"type": "string", "format": "binary"}
    items = schema.get("items")
    if isinstance(items, dict) and "$ref" not in items:
        schema["items"] = swagger_schema(items)
    return schema


def path_names(path: str) -> list[str]:
    """The `{name}`s of a path template, in order."""
    names = []
    start = path.find("{")
    while start >= 0:
        end = path.find("}", start)
        if end < 0:
            break
        names.append(path[start + 1 : end])
        start = path.find("{", end)
    return names


def match_template(
    params: Iterable[Parameter],
    path: str,
    file: str,
    pointer: str,
    log: ProblemLog,
) -> tuple[Parameter, ...]:
    """Pair the template's `{name}`s with the declared path parameters.

    Both mismatches are warnings, since real specs have them and routing still
    works: a template name without a declaration gets a string parameter (so an
    MCP tool still asks for it), a declared path parameter the template lacks is
    dropped (nothing could ever fill it).
    """
    params = tuple(params)
    names = path_names(path)
    declared = {p.name for p in params if p.location == "path"}
    result = []
    for p in params:
        if p.location == "path" and p.name not in names:
            log.warning(
                p.file,
                p.pointer,
                f"path parameter '{p.name}' is not in the path '{path}'; ignored",
                "remove it or add {" + p.name + "} to the path",
            )
            continue
        result.append(p)
    for name in names:
        if name not in declared:
            log.warning(
                file,
                pointer,
                f"path parameter '{name}' of '{path}' is not declared; it is taken as a string",
                f"add {{name: {name}, in: path, required: true, schema: {{type: string}}}}",
            )
            result.append(
                Parameter(
                    name=name,
                    location="path",
                    required=True,
                    schema={"type": "string"},
                    style="simple",
                    explode=False,
                    pointer=pointer,
                    file=file,
                )
            )
    return tuple(result)
