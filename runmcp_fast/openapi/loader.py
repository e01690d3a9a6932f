"""Loading a spec: from a file or parsed data to a checked, version-neutral `Spec`.

Every problem of the spec is collected before `SpecError` is raised. The
document is walked once, path item by path item; only path items, parameters
and request bodies are dereferenced, never whole schemas.
"""

from __future__ import annotations

import gc
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from runmcp_fast.openapi import (
    discriminators,
    dispatch,
    operation_ids,
    parameters,
    request_bodies,
    servers,
)
from runmcp_fast.openapi.documents import Document, Documents, parse
from runmcp_fast.openapi.model import Operation, Parameter, Spec, attach_documents
from runmcp_fast.openapi.pointers import join
from runmcp_fast.openapi.templates import TemplateCheck, rename_repeats
from runmcp_fast.problems import DocumentError, ProblemLog, SpecError, describe

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_PATH_ITEM_KEYS = frozenset(("$ref", "summary", "description", "servers", "parameters", *METHODS))
_PATH_ITEM_HINT = "write the path item as a mapping of methods: {get: {...}, post: {...}}"
_TEMPLATE_HINT = "change the path so that the router can route it"
_OPENAPI_VERSION = re.compile(r"3\.[0-2](\.\d+)?(-[0-9A-Za-z.-]+)?$")


def load_spec(path: str | os.PathLike[str], *, base_path: str | None = None) -> Spec:
    """Read an OpenAPI 3.0/3.1 or Swagger 2.0 spec (JSON or YAML) from a file.

    `base_path` replaces the prefix the spec's `servers`/`basePath` give
    (`""` for none). Raises `SpecError` listing every problem found.
    """
    name = os.fspath(path)
    with _gc_paused():
        try:
            docs = Documents.open(name)
        except DocumentError as exc:
            raise SpecError([exc.problem]) from None
        return _load(docs, base_path)


def load_spec_data(
    data: Any,
    *,
    source: str = "<inline>",
    base_dir: str | os.PathLike[str] | None = None,
    base_path: str | None = None,
) -> Spec:
    """Load a spec that is already parsed (e.g. from the admin API), or its JSON/YAML text.

    `source` names it in problems; relative-file `$ref`s resolve against
    `base_dir` and are an error without it. The data is not modified.
    """
    with _gc_paused():
        if isinstance(data, (bytes, str)):
            try:
                data = parse(data, source)
            except DocumentError as exc:
                raise SpecError([exc.problem]) from None
        directory = os.fspath(base_dir) if base_dir is not None else None
        return _load(Documents(Document(source, data, directory)), base_path)


@contextmanager
def _gc_paused() -> Iterator[None]:
    # PERF: parsing and walking Graph's 47 MB spec allocates millions of
    # containers, none of them garbage. With the GC on, every threshold the
    # growing heap crosses rescans them (0.5 s instead of 0.2 s for the parse
    # alone); paused, they are scanned a few times after the load instead.
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class _Draft(NamedTuple):
    """An operation before ids are made unique across the spec."""

    explicit_id: str | None
    method: str
    path: str
    template: str
    file: str
    pointer: str
    parameters: tuple[Parameter, ...]
    body: request_bodies.Body | None
    raw: dict[str, Any]
    item: dict[str, Any]
    suffix: str


class _PathItem:
    """A path item with its `$ref` followed, and where each of its keys is written."""

    __slots__ = ("_here", "_local", "_target", "value")

    def __init__(
        self,
        value: dict[str, Any],
        target: tuple[str, str],
        here: tuple[str, str] | None = None,
        local: frozenset[Any] = frozenset(),
    ) -> None:
        self.value = value
        self._target = target
        """(file, pointer) of the path item object the keys come from."""
        self._here = here
        """(file, pointer) of the `$ref`'ing item, for the `local` keys written beside the `$ref`."""
        self._local = local

    def where(self, key: Any) -> tuple[str, str]:
        file, pointer = self._here if self._here and key in self._local else self._target
        return file, join(pointer, key)


class _Loader:
    """State of one load: the documents, the problems and the settings of the spec."""

    def __init__(self, docs: Documents, base_path: str | None) -> None:
        self.docs = docs
        self.log = ProblemLog()
        self.file = docs.root.name
        self.override = None if base_path is None else servers.normalise(base_path)
        self.swagger = False
        self.templates = TemplateCheck()
        # Replaced once the version says whether Swagger 2.0 rules apply.
        self.params = parameters.Reader(docs, self.log, swagger=False)
        self.drafts: list[_Draft] = []

    def load(self) -> Spec:
        root = self.docs.root.root
        file, log = self.file, self.log
        if not isinstance(root, dict):
            what = "empty" if root is None else f"{describe(root)}, not a mapping"
            log.error(
                file,
                "",
                f"the document is {what}",
                "an OpenAPI document is a mapping with openapi:, info: and paths:",
            )
            log.raise_if_errors()
        assert isinstance(root, dict)
        version = self.version(root)
        self.params = parameters.Reader(self.docs, log, swagger=self.swagger)
        info = root.get("info")
        title = info.get("title") if isinstance(info, dict) else None
        if self.swagger:
            base = servers.swagger_base_path(root, file, log)
        else:
            base = servers.servers_base_path(root.get("servers"), file, "/servers", log) or ""
        if self.override is not None:
            base = self.override

        paths = root.get("paths")
        missing = "paths" not in root
        if missing and version.startswith("3.") and not version.startswith("3.0"):
            paths = {}  # 3.1 made paths optional (a document of webhooks or components)
        if not isinstance(paths, dict):
            log.error(
                file,
                "" if missing else "/paths",
                "paths is missing" if missing else f"paths is {describe(paths)}, not a mapping",
                "write paths: {/pets: {get: ...}}",
            )
        else:
            for key, item in paths.items():
                self.path_item(key, item, base)

        ids = operation_ids.assign(
            [d.explicit_id for d in self.drafts],
            [(d.method, d.path) for d in self.drafts],
            [(d.file, d.pointer) for d in self.drafts],
            log,
        )
        log.raise_if_errors()
        operations = tuple(_operation(d, oid) for d, oid in zip(self.drafts, ids, strict=True))
        groups = dispatch.group(operations, log)
        log.raise_if_errors()
        spec = Spec(
            source=file,
            version=version,
            title=title if isinstance(title, str) else "",
            base_path=base,
            operations=operations,
            warnings=tuple(log.warnings),
            groups=groups,
        )
        return attach_documents(spec, self.docs)

    def version(self, root: dict[str, Any]) -> str:
        """The declared version; sets `self.swagger`. Unknown ones are errors, read as 3.0."""
        file, log = self.file, self.log
        key = "openapi" if "openapi" in root else "swagger" if "swagger" in root else None
        if key is None:
            log.error(
                file,
                "",
                "no 'openapi' (or 'swagger') version",
                'add openapi: "3.1.0" at the top, or swagger: "2.0" for a Swagger spec',
            )
            return ""
        value = root[key]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            # YAML reads `openapi: 3.0` as a float; the intent is plain.
            log.warning(file, "/" + key, f"{key} is the number {value}; quote it")
            value = str(value)
        if not isinstance(value, str):
            log.error(
                file,
                "/" + key,
                f"{key} is {describe(value)}, not a string",
                'write openapi: "3.1.0", or swagger: "2.0"',
            )
            return ""
        if key == "swagger":
            if value != "2.0":
                log.error(
                    file,
                    "/swagger",
                    f"unsupported Swagger version '{value}'",
                    'the only Swagger version is swagger: "2.0"',
                )
            self.swagger = True
        elif not _OPENAPI_VERSION.match(value):
            hint = "supported: openapi 3.0.x and 3.1.x, and swagger: 2.0"
            if value.startswith("2"):
                hint = 'Swagger 2.0 documents say swagger: "2.0", not openapi:'
            log.error(file, "/openapi", f"unsupported OpenAPI version '{value}'", hint)
        return value

    def path_item(self, key: Any, item: Any, root_base: str) -> None:
        file, log = self.file, self.log
        pointer = join("/paths", key)
        if not isinstance(key, str):
            log.error(file, pointer, f"path {key!r} is not a string", f"write '/{key}'")
            return
        if key.startswith("x-"):
            return  # an extension, not a path
        if not key.startswith("/"):
            log.error(file, pointer, f"path '{key}' does not start with '/'", f"write '/{key}'")
            return
        if item is None:
            return  # `/pets:` with nothing under it: no operations yet
        located = self.resolve_path_item(item, file, pointer)
        if located is None:
            return
        item = located.value
        for name in item:
            if name not in _PATH_ITEM_KEYS and not (isinstance(name, str) and name[:2] == "x-"):
                log.warning(
                    *located.where(name),
                    f"unknown key {name!r} in a path item; ignored",
                    f"operations are {'|'.join(METHODS)}",
                )

        path_base = root_base
        if self.override is None and not self.swagger and "servers" in item:
            found = servers.servers_base_path(item["servers"], *located.where("servers"), log)
            path_base = root_base if found is None else found
        shared = self.params.read(item.get("parameters"), *located.where("parameters"))
        for method in METHODS:
            if method in item:
                ofile, opointer = located.where(method)
                self.operation(method, key, item[method], ofile, opointer, item, shared, path_base)

    def resolve_path_item(self, item: Any, file: str, pointer: str) -> _PathItem | None:
        log = self.log
        if not isinstance(item, dict):
            log.error(
                file, pointer, f"path item is {describe(item)}, not a mapping", _PATH_ITEM_HINT
            )
            return None
        if "$ref" not in item:
            return _PathItem(item, (file, pointer))
        try:
            target, tfile, tpointer = self.docs.deref(item, file, pointer)
        except DocumentError as exc:
            log.add(exc.problem)
            return None
        if not isinstance(target, dict):
            log.error(
                tfile, tpointer, f"path item is {describe(target)}, not a mapping", _PATH_ITEM_HINT
            )
            return None
        local = frozenset(k for k in item if k != "$ref")
        if not local:
            return _PathItem(target, (tfile, tpointer))
        # Keys written next to the $ref win over the referenced ones (OpenAPI
        # leaves it undefined; this is what the major tools do).
        merged = {**target, **{k: item[k] for k in local}}
        return _PathItem(merged, (tfile, tpointer), (file, pointer), local)

    def operation(
        self,
        method: str,
        path: str,
        raw: Any,
        file: str,
        pointer: str,
        item: dict[str, Any],
        shared: list[parameters.RawParameter],
        path_base: str,
    ) -> None:
        log, docs, swagger = self.log, self.docs, self.swagger
        if not isinstance(raw, dict):
            log.error(
                file,
                pointer,
                f"operation is {describe(raw)}, not a mapping",
                "write the operation as a mapping: {operationId: ..., responses: ...}",
            )
            return
        base = path_base
        if self.override is None and not swagger and "servers" in raw:
            found = servers.servers_base_path(raw["servers"], file, pointer + "/servers", log)
            base = path_base if found is None else found
        # `/#Action=X`, `/files/{id}#copy`: the suffix tells operations apart (dispatch.py).
        routed, suffix = discriminators.split(path)
        renamed = rename_repeats(routed)
        if renamed != routed:
            log.warning(
                file,
                pointer,
                f"the path '{routed}' names a parameter twice; the repeat is routed as "
                f"'{renamed}' and checked as a string",
                "give each parameter of the path its own name",
            )
            routed = renamed
        template = base + routed
        refusal = self.templates.refusal(template)
        own = self.params.read(raw.get("parameters"), file, pointer + "/parameters")
        merged = parameters.merge(shared, own)
        if refusal is not None and "touch" in refusal:
            fixed = self.untouch(routed, merged)
            if fixed is not None:
                log.warning(
                    file,
                    pointer,
                    f"the path '{routed}' has parameters that touch; it is routed as '{fixed}'",
                    "put static text between parameters",
                )
                routed, template = fixed, base + fixed
                refusal = self.templates.refusal(template)
        if refusal is not None:
            log.error(
                self.file,
                join("/paths", path),
                f"the router refuses this path: {refusal}",
                _TEMPLATE_HINT,
            )
            return

        if swagger:
            consumes = request_bodies.consumes_of(raw, self.docs.root.root)
            body, merged = request_bodies.from_swagger(merged, consumes, file, pointer, log)
        else:
            body = request_bodies.read_3(
                raw.get("requestBody"), file, pointer + "/requestBody", docs, log
            )
        params = parameters.match_template(
            [self.params.normalise(p) for p in merged],
            routed,
            file,
            pointer,
            log,
        )

        explicit = raw.get("operationId")
        if explicit is not None and not isinstance(explicit, str):
            log.warning(
                file,
                pointer + "/operationId",
                f"operationId is {describe(explicit)}, not a string; one is derived",
            )
            explicit = None
        self.drafts.append(
            _Draft(
                explicit or None,
                method.upper(),
                path,
                template,
                file,
                pointer,
                params,
                body,
                raw,
                item,
                suffix,
            )
        )

    def untouch(self, routed: str, merged: list[parameters.RawParameter]) -> str | None:
        """Touching parameters made routable, or None: one with a single allowed value
        (`{id}{ext}`, ext: `enum: [".json"]`) becomes that text; an RFC 6570 label
        (`{id}{.format}`) gets its dot as static text."""
        pinned: dict[str, str] = {}
        for p in merged:
            if p.location != "path":
                continue
            schema = self.params.normalise(p).schema
            values = [schema["const"]] if "const" in schema else schema.get("enum")
            if isinstance(values, list) and len(values) == 1 and isinstance(values[0], str):
                pinned[p.name] = values[0]

        def fix(m: re.Match[str]) -> str:
            name = m.group(1)
            touches = routed[m.start() - 1 : m.start()] == "}" or (
                routed[m.end() : m.end() + 1] == "{"
            )
            if not touches:
                return m.group(0)
            if name in pinned:
                return pinned[name]
            if name.startswith(".") and routed[m.start() - 1 : m.start()] == "}":
                return "." + m.group(0)
            return m.group(0)

        fixed = _PARAM.sub(fix, routed)
        return fixed if fixed != routed else None


_PARAM = re.compile(r"\{([^{}/]*)\}")


def _load(docs: Documents, base_path: str | None) -> Spec:
    return _Loader(docs, base_path).load()


def _text(*candidates: Any) -> str:
    for value in candidates:
        if isinstance(value, str):
            return value
    return ""


def _operation(d: _Draft, operation_id: str) -> Operation:
    raw = d.raw
    tags = raw.get("tags")
    return Operation(
        operation_id=operation_id,
        method=d.method,
        path=d.path,
        template=d.template,
        pointer=d.pointer,
        parameters=d.parameters,
        request_body=d.body.value if d.body else None,
        # A path item's summary and description apply to all its operations.
        summary=_text(raw.get("summary"), d.item.get("summary")),
        description=_text(raw.get("description"), d.item.get("description")),
        tags=tuple(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else (),
        deprecated=raw.get("deprecated") is True,
        file=d.file,
        request_body_file=d.body.file if d.body else "",
        request_body_pointer=d.body.pointer if d.body else "",
        suffix=d.suffix,
        discriminator=discriminators.conditions(d.suffix, d.parameters) if d.suffix else (),
    )
