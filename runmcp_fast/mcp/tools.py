"""A loaded OpenAPI spec as MCP tools, and a tool call back as the HTTP request it stands for.

`build_tools(spec)` makes one `Tool` per operation of a `Spec` (the loader's
model, as `Service.spec` holds it); `ToolSet` serves `tools/list` (stable
order, opaque cursors, JSON encoded per page); `Tool.build_request(arguments)` turns a
`tools/call` into an `HttpCall` for the gateway, which validates and routes
it like any other request; `tool_result(status, headers, body)` turns the
response into a `CallToolResult`.

The rules, decided once per spec:

Names. The operationId (the loader derives `get_pets_petId` from method and
path when the spec gives none), with every run of characters outside
`[A-Za-z0-9_.-]` replaced by `_` and leading/trailing `-._` dropped, after
`prefix`. At most `MAX_NAME` (64) characters in all. An id that is already
a valid name and fits keeps it verbatim, whatever else the spec holds; an
id that had to change takes its sanitised form when free, and otherwise (or
when too long) is cut and suffixed with `_` + 8 hex digits of the SHA-256
of its operationId. So a name depends on its own operation only (not on
the filter, nor, for valid ids, on other operations), and the same spec
always gives the same names.

Input schema. One JSON Schema 2020-12 object, `additionalProperties: false`.
Properties are the path, query, header and cookie parameters in that order
(each in spec order), then `body`. A parameter's property is its name with
characters outside `[A-Za-z0-9_.-]` replaced by `_` (LLM APIs refuse other
property names); when that name is taken (by an earlier parameter, e.g. `id`
in path and in query, or by `body`), it is `<location>_<name>`, then
`<location>_<name>_2`, ... The request body is always the one property
`body`, whatever its schema: merging an object body's properties into the
top level would clash with parameters and change meaning when the schema
is not a plain object. Header parameters named Accept, Content-Type or
Authorization are left out (OpenAPI: they "SHALL be ignored"; credentials
are not the model's to give). Schemas go through the repo's `Bundler`
(2020-12 spelling, `$ref`s into one top-level `$defs`), here keeping each
schema's `title`/`description` (trimmed), since a model reads them. Past
`max_schema_bytes` of JSON (64 KiB), the definitions farthest from the
arguments become stubs: Microsoft Graph's reach megabytes per tool. No
`outputSchema`: real APIs stray from their response schemas, and a client
must reject a result that breaks a declared one.

Requests. The path is the operation's route template at the gateway (base
path included), expanded with percent-encoding. Values are serialised per
parameter `style`/`explode` as `validation/styles.py` reads them. The body's
media type is JSON when the operation takes one (application/json, then
`+json`, then wildcards), else a URL-encoded or multipart form (`body` an
object), else text (`body` a string, sent as UTF-8). A `null` argument
counts as absent. Values are not checked against their schemas here: the
gateway's validator does that next.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import codecs
import difflib
import fnmatch
import functools
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Annotated, Any, Final, Literal, NamedTuple, Protocol
from urllib.parse import quote

import msgspec
import orjson
from msgspec import Meta

from runmcp_fast import jsontext
from runmcp_fast.openapi.model import Location, Operation, Parameter, Spec
from runmcp_fast.openapi.operation_ids import derive
from runmcp_fast.openapi.pointers import join
from runmcp_fast.problems import DocumentError, Problem
from runmcp_fast.validation.bundle import Bundler
from runmcp_fast.validation.styles import defs_resolver, shape_of, spreads_members

__all__ = [
    "MAX_DESCRIPTION",
    "MAX_NAME",
    "MAX_SCHEMA_BYTES",
    "HttpCall",
    "InvalidCursor",
    "Tool",
    "ToolArgumentError",
    "ToolFilter",
    "ToolSelector",
    "ToolSet",
    "build_tools",
    "tool_names",
    "tool_result",
]

MAX_NAME: Final = 64
"""Tool names, prefix included. The SDK allows 128; 64 is what common LLM APIs accept."""
MAX_DESCRIPTION: Final = 1024
"""A tool's description, in characters; the method and path line is always kept."""
MAX_SCHEMA_BYTES: Final = 64 * 1024
"""Each tool's input schema, as JSON; the definitions farthest from the arguments go first."""
MAX_PREFIX: Final = 40
"""Leaves room for a cut name plus its hash suffix."""
_SCHEMA_TEXT: Final = 512
"""`title`/`description` inside schemas, in characters."""
_TITLE: Final = 128

_NAME_OK: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_NAME_BAD: Final = re.compile(r"[^A-Za-z0-9_.-]+")
_PREFIX_OK: Final = re.compile(rf"[A-Za-z0-9_.-]{{0,{MAX_PREFIX}}}")
_GLOB: Final = re.compile(r"[*?\[]")
_HEADER_BAD: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# OpenAPI: header parameters by these names "SHALL be ignored". Beside them, the
# headers that frame the message or name the hop (S3 declares `Content-Length`):
# the request's own, written by the gateway; not arguments a caller could set
# to something else than the body it sends (a second Content-Length: 400).
_IGNORED_HEADERS: Final = frozenset(
    (
        "accept",
        "content-type",
        "authorization",
        "content-length",
        "transfer-encoding",
        "host",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "expect",
    )
)
_READ_ONLY: Final = frozenset(("GET", "HEAD", "OPTIONS"))
_IDEMPOTENT: Final = frozenset(("GET", "HEAD", "OPTIONS", "PUT", "DELETE"))
_LOCATIONS: Final[tuple[Location, ...]] = ("path", "query", "header", "cookie")
_DEFAULT_STYLE: Final = {"path": "simple", "query": "form", "header": "simple", "cookie": "form"}
_DELIMITED: Final = ("spaceDelimited", "pipeDelimited", "tabDelimited")
# Per location, the styles validation/styles.py reads; any other is written as the default.
_STYLES: Final = {
    "path": frozenset(("simple", "label", "matrix", *_DELIMITED)),
    "query": frozenset(("form", "deepObject", *_DELIMITED)),
    "header": frozenset(("simple", *_DELIMITED)),
    "cookie": frozenset(("form", *_DELIMITED)),
}
_SEPARATORS: Final = {
    "form": ",",
    "simple": ",",
    "spaceDelimited": " ",
    "pipeDelimited": "|",
    "tabDelimited": "\t",
}
_FORM: Final = "application/x-www-form-urlencoded"
_MULTIPART: Final = "multipart/form-data"
_CURSOR_VERSION: Final = "1:"


# --- errors ---------------------------------------------------------------------------


class ToolArgumentError(ValueError):
    """Arguments a tool can not turn into a request: unknown, missing, or not expressible.

    The MCP server answers with it as a tool error (or JSON-RPC -32602);
    `str()` names the tool and the argument.
    """

    def __init__(self, tool: str, argument: str | None, message: str) -> None:
        self.tool = tool
        self.argument = argument
        """The argument at fault (a property of the input schema), None for the whole call."""
        self.message = message
        super().__init__(f"tool {tool!r}: {message}")


class InvalidCursor(ValueError):
    """A `tools/list` cursor this server did not make (JSON-RPC -32602)."""


class _BadValue(ValueError):
    """A value a style can not carry; re-raised as ToolArgumentError naming the argument."""


# --- which operations become tools ------------------------------------------------------


class _SelectorLike(Protocol):
    """What `ToolFilter.of` takes: the config's `OperationSelector`, a `ToolSelector`, ..."""

    @property
    def tags(self) -> Sequence[str]: ...
    @property
    def operations(self) -> Sequence[str]: ...
    @property
    def methods(self) -> Sequence[str]: ...


class ToolSelector(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """Operations picked by tag, operationId or HTTP method: any one entry matching picks it.

    Entries may be globs (`repos/*`, `admin-?`, `[A-Z]*`), matched case-sensitively;
    methods are compared in upper case.
    """

    tags: Annotated[
        tuple[str, ...], Meta(description="Operations with any of these tags, e.g. [pets].")
    ] = ()
    operations: Annotated[
        tuple[str, ...],
        Meta(
            description="Operations with these operationIds (as the spec gives them, or as"
            " the loader derives them: get_pets_petId), e.g. ['repos/*']."
        ),
    ] = ()
    methods: Annotated[
        tuple[str, ...], Meta(description="Operations with these HTTP methods, e.g. [GET, HEAD].")
    ] = ()

    def __bool__(self) -> bool:
        return bool(self.tags or self.operations or self.methods)

    def picks(self, op: Operation) -> bool:
        """Whether any entry matches `op` (an empty selector picks nothing)."""
        # tuple(): a selector made in code may hold lists, which the caches can not key on.
        if self.operations and _matcher(tuple(self.operations))(op.operation_id):
            return True
        if self.methods and _matcher(_upper(tuple(self.methods)))(op.method):
            return True
        return bool(self.tags) and any(map(_matcher(tuple(self.tags)), op.tags))


class ToolFilter(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """Which operations become tools: those `include` picks (all when it is empty) that
    `exclude` does not pick. Exclude wins."""

    include: Annotated[
        ToolSelector,
        Meta(description="Only operations this picks become tools. Empty: all of them."),
    ] = msgspec.field(default_factory=ToolSelector)
    exclude: Annotated[
        ToolSelector,
        Meta(description="Operations this picks do not become tools (wins over include)."),
    ] = msgspec.field(default_factory=ToolSelector)

    @classmethod
    def of(
        cls, include: _SelectorLike | None = None, exclude: _SelectorLike | None = None
    ) -> ToolFilter:
        """From any objects with `tags`, `operations` and `methods` (the config's selectors)."""

        def convert(s: _SelectorLike | None) -> ToolSelector:
            if s is None:
                return ToolSelector()
            return ToolSelector(
                tags=tuple(s.tags), operations=tuple(s.operations), methods=tuple(s.methods)
            )

        return cls(include=convert(include), exclude=convert(exclude))

    def keeps(self, op: Operation) -> bool:
        if self.exclude and self.exclude.picks(op):
            return False
        return not self.include or self.include.picks(op)

    def unmatched(self, operations: Iterable[Operation]) -> list[str]:
        """Entries that match no operation, as `include.tags: 'petz'` (likely typos)."""
        ops = list(operations)
        ids = {op.operation_id for op in ops}
        tags = {t for op in ops for t in op.tags}
        methods = {op.method for op in ops}
        found: list[str] = []
        for side, selector in (("include", self.include), ("exclude", self.exclude)):
            for field, entries, values in (
                ("tags", selector.tags, tags),
                ("operations", selector.operations, ids),
                ("methods", _upper(tuple(selector.methods)), methods),
            ):
                found.extend(
                    f"{side}.{field}: {entry!r}"
                    for entry in entries
                    if not any(map(_matcher((entry,)), values))
                )
        return found


@functools.lru_cache(maxsize=512)
def _matcher(patterns: tuple[str, ...]) -> Callable[[str], bool]:
    exact = frozenset(p for p in patterns if not _GLOB.search(p))
    globs = [p for p in patterns if _GLOB.search(p)]
    if not globs:
        return exact.__contains__
    regex = re.compile("|".join(fnmatch.translate(p) for p in globs))
    return lambda value: value in exact or regex.match(value) is not None


@functools.lru_cache(maxsize=128)
def _upper(methods: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(m.upper() for m in methods)


# --- the request a call stands for ------------------------------------------------------


class HttpCall(msgspec.Struct, frozen=True):
    """The HTTP request of one tool call, for the gateway to validate, route and send."""

    method: str
    path_and_query: str
    """The gateway-side path (the operation's route template expanded), percent-encoded."""
    headers: list[tuple[str, str]]
    """Header parameters and one `Cookie`, never `Content-Type` (see `content_type`).
    Values are ISO-8859-1 text: encode them with latin-1."""
    body: bytes | None
    content_type: str | None
    """The body's media type (with a multipart boundary); None without a body."""


# --- values as text ---------------------------------------------------------------------


def _text(value: Any) -> str:
    """One JSON value as a parameter's text: `true`, `5`, `1.5`; nested values as JSON."""
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _BadValue(f"{value} is not a JSON number")
        # `5.0` for an integer parameter is 5 (JSON Schema agrees); the gateway
        # reads "5.0" as a string for `type: integer`.
        if value.is_integer() and abs(value) < 2**53:
            return str(int(value))
        return repr(value)
    return _json(value).decode()


def _json(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        reason = str(exc)
    try:
        # orjson stops at 64-bit integers; JSON (and Python's json) has no limit.
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return text.encode("utf-8")
    except (TypeError, ValueError):  # UnicodeEncodeError: a lone surrogate
        raise _BadValue(f"can not be encoded as JSON: {reason}") from None


def _items(value: list[Any]) -> list[str]:
    # RFC 6570: undefined (null) members are skipped.
    return [_text(v) for v in value if v is not None]


def _entries(value: dict[str, Any]) -> list[tuple[str, str]]:
    return [(str(k), _text(v)) for k, v in value.items() if v is not None]


def _pct(text: str) -> str:
    return quote(text, safe="")


def _as_is(text: str) -> str:
    return text


# --- styles: one value -> its text in the request -----------------------------------------
# The inverse of validation/styles.py, row for row of the OpenAPI "Style Examples"
# table. Items are encoded one by one and the separators written literally, so a
# separator inside an item can not be told from a real one after decoding: such
# values do not round-trip (the table has the same limit).


def _joined(value: Any, sep: str, assign: bool, enc: Callable[[str], str]) -> str:
    """simple (and the delimited styles outside query): `a,b`; objects `k,v,k2,v2` / `k=v,k2=v2`."""
    if isinstance(value, list):
        return sep.join(enc(i) for i in _items(value))
    if isinstance(value, dict):
        if assign:
            return sep.join(f"{enc(k)}={enc(v)}" for k, v in _entries(value))
        return sep.join(f"{enc(k)}{sep}{enc(v)}" for k, v in _entries(value))
    return enc(_text(value))


def _label(value: Any, explode: bool) -> str:
    if isinstance(value, list):
        return "." + ("." if explode else ",").join(_pct(i) for i in _items(value))
    if isinstance(value, dict):
        if explode:
            return "." + ".".join(f"{_pct(k)}={_pct(v)}" for k, v in _entries(value))
        return "." + ",".join(f"{_pct(k)},{_pct(v)}" for k, v in _entries(value))
    return "." + _pct(_text(value))


def _matrix(name: str, value: Any, explode: bool) -> str:
    n = _pct(name)
    if isinstance(value, list):
        items = _items(value)
        if explode:
            return "".join(f";{n}={_pct(i)}" for i in items) or f";{n}"
        return f";{n}=" + ",".join(_pct(i) for i in items)
    if isinstance(value, dict):
        entries = _entries(value)
        if explode:
            return "".join(f";{_pct(k)}={_pct(v)}" for k, v in entries) or f";{n}"
        return f";{n}=" + ",".join(f"{_pct(k)},{_pct(v)}" for k, v in entries)
    return f";{n}={_pct(_text(value))}"


def _query(name: str, style: str, explode: bool, value: Any) -> list[str]:
    """`k=v` pairs, percent-encoded: form, the delimited styles, deepObject.

    Arrays in deepObject, at any depth, become `a[0]=x&a[1][k]=y`, as Stripe's own
    clients write them and `qs`, Rack and PHP read them. Repeated keys
    (`a[k]=1&a[k]=2`) would reach a Rack server as the last value alone, and a
    one-item list would be a scalar to every reader (the gateway's too).
    """
    n = _pct(name)
    if style == "deepObject" and isinstance(value, dict | list):
        out: list[str] = []
        _deep(n, value, out)
        return out
    if isinstance(value, list):
        items = _items(value)
        if explode:
            return [f"{n}={_pct(i)}" for i in items]
        sep = _pct(_SEPARATORS.get(style, ","))
        if sep == "%2C":
            sep = ","  # conventional, and the same after decoding
        return [f"{n}=" + sep.join(_pct(i) for i in items)]
    if isinstance(value, dict):
        if explode:
            out = []
            for k, v in value.items():
                if isinstance(v, list):  # a property given by repeated keys
                    out.extend(f"{_pct(str(k))}={_pct(i)}" for i in _items(v))
                elif v is not None:
                    out.append(f"{_pct(str(k))}={_pct(_text(v))}")
            return out
        sep = _pct(_SEPARATORS.get(style, ","))
        if sep == "%2C":
            sep = ","
        return [f"{n}=" + sep.join(f"{_pct(k)}{sep}{_pct(v)}" for k, v in _entries(value))]
    return [f"{n}={_pct(_text(value))}"]


def _deep(key: str, value: Any, out: list[str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if v is not None:
                _deep(f"{key}[{_pct(str(k))}]", v, out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if v is not None:
                _deep(f"{key}[{i}]", v, out)
    else:
        out.append(f"{key}={_pct(_text(value))}")


def _cookie(name: str, style: str, explode: bool, value: Any) -> list[str]:
    """`n=v` cookie pairs. Items are percent-encoded and split before decoding by the
    gateway, except for space and tab, which a cookie can not hold raw."""
    sep = _SEPARATORS.get(style, ",")
    if sep in " \t":
        sep = _pct(sep)
    form = style == "form" and explode
    if isinstance(value, list):
        items = _items(value)
        if form:
            return [f"{name}={_pct(i)}" for i in items]
        return [f"{name}=" + sep.join(_pct(i) for i in items)]
    if isinstance(value, dict):
        entries = _entries(value)
        if form:
            return [f"{k}={_pct(v)}" for k, v in entries]
        return [f"{name}=" + sep.join(f"{_pct(k)}{sep}{_pct(v)}" for k, v in entries)]
    return [f"{name}={_pct(_text(value))}"]


def _header_value(text: str) -> str:
    if _HEADER_BAD.search(text):
        raise _BadValue("holds a control character, which a header can not carry")
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        raise _BadValue(
            "holds characters outside ISO-8859-1, which a header can not carry"
        ) from None
    return text


def _is_json(media_type: str) -> bool:
    essence = media_type.partition(";")[0].strip().lower()
    return essence == "application/json" or essence.endswith("+json")


_Emit = Callable[[Any], Any]


def _emitter(p: Parameter) -> _Emit:
    """The function value -> its request text: str for path and header, `k=v` list otherwise."""
    location, name = p.location, p.name
    if p.media_type is not None:
        # `content:` parameters carry one serialised value; style does not apply.
        serialise: Callable[[Any], str] = (
            (lambda v: _json(v).decode()) if _is_json(p.media_type) else _text
        )
        if location == "path":
            return lambda v: _pct(serialise(v))
        if location == "header":
            return lambda v: _header_value(serialise(v))
        return lambda v: [f"{_pct(name) if location == 'query' else name}={_pct(serialise(v))}"]
    style = p.style if p.style in _STYLES[location] else _DEFAULT_STYLE[location]
    explode = p.explode
    if location == "path":
        if style == "label":
            return lambda v: _label(v, explode)
        if style == "matrix":
            return lambda v: _matrix(name, v, explode)
        sep = _pct(_SEPARATORS[style]) if style != "simple" else ","
        assign = explode and style == "simple"
        return lambda v: _joined(v, sep, assign, _pct)
    if location == "header":
        sep = _SEPARATORS[style]
        assign = explode and style == "simple"
        return lambda v: _header_value(_joined(v, sep, assign, _as_is))
    if location == "cookie":
        return lambda v: _cookie(name, style, explode, v)
    return lambda v: _query(name, style, explode, v)


# --- bodies -----------------------------------------------------------------------------

BodyKind = Literal["json", "form", "multipart", "text"]


class _Body:
    """How the `body` argument becomes bytes: the media type chosen and its encoding."""

    __slots__ = ("content_type", "encoding", "kind", "required")

    def __init__(
        self, kind: BodyKind, content_type: str, required: bool, encoding: dict[str, Any]
    ) -> None:
        self.kind: BodyKind = kind
        self.content_type = content_type
        self.required = required
        self.encoding = encoding
        """Form bodies: the media type's `encoding` map (property -> style, explode)."""

    def encode(self, value: Any) -> tuple[bytes, str]:
        kind = self.kind
        if kind == "json":
            return _json(value), self.content_type
        if kind == "text":
            if not isinstance(value, str):
                raise _BadValue(f"must be a string: it is sent as {self.content_type}")
            return value.encode("utf-8"), self.content_type
        if not isinstance(value, dict):
            raise _BadValue(f"must be an object: it is sent as {self.content_type}")
        if kind == "form":
            parts: list[str] = []
            for key, item in value.items():
                if item is None:
                    continue
                enc = self.encoding.get(key)
                style = "form"
                explode = True
                if isinstance(enc, dict):
                    if isinstance(enc.get("style"), str):
                        style = enc["style"]
                    explode = (
                        enc["explode"] if isinstance(enc.get("explode"), bool) else style == "form"
                    )
                parts.extend(_query(str(key), style, explode, item))
            return "&".join(parts).encode("ascii"), self.content_type
        return _multipart(value)


def _multipart(value: dict[str, Any]) -> tuple[bytes, str]:
    chunks: list[bytes] = []
    for key, item in value.items():
        for one in item if isinstance(item, list) else [item]:
            if one is None:
                continue
            name = str(key).replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
            head = f'Content-Disposition: form-data; name="{name}"\r\n'
            if isinstance(one, dict | list):
                head += "Content-Type: application/json\r\n"
                data = _json(one)
            else:
                data = _text(one).encode("utf-8")
            chunks.append(head.encode("utf-8") + b"\r\n" + data + b"\r\n")
    # Derived from the content, so the same call gives the same bytes, and a
    # boundary the parts contain is as likely as a SHA-256 collision.
    boundary = "runmcp-" + hashlib.sha256(b"".join(chunks)).hexdigest()[:32]
    delimiter = f"--{boundary}\r\n".encode()
    body = b"".join(delimiter + c for c in chunks) + f"--{boundary}--\r\n".encode()
    return body, f"{_MULTIPART}; boundary={boundary}"


def _choose_media(content: dict[str, Any]) -> tuple[str, BodyKind] | None:
    """JSON first (application/json, +json, wildcards), then forms, then text/anything."""
    keys = [str(k) for k in content]
    essences = [k.partition(";")[0].strip().lower() for k in keys]
    for want in (
        lambda e: e == "application/json",
        _is_json,
        lambda e: e in ("*/*", "application/*"),
    ):
        for key, essence in zip(keys, essences, strict=True):
            if want(essence):
                return key, "json"
    for form, kind in ((_FORM, "form"), (_MULTIPART, "multipart")):
        for key, essence in zip(keys, essences, strict=True):
            if essence == form:
                return key, kind  # type: ignore[return-value]
    for key, essence in zip(keys, essences, strict=True):
        if essence.startswith("text/"):
            return key, "text"
    return (keys[0], "text") if keys else None


# --- schemas ----------------------------------------------------------------------------


class _DescribedBundler(Bundler):
    """The repo's Bundler, keeping `title` and `description` (trimmed): a model reads them,
    where the validator does not. Its own instance: the validator's drops them."""

    __slots__ = ()

    def _normalise(self, schema: Any, file: str, pointer: str, used: set[str]) -> Any:
        out = super()._normalise(schema, file, pointer, used)
        if isinstance(out, dict) and isinstance(schema, dict) and "$ref" not in out:
            for key in ("title", "description"):
                text = schema.get(key)
                if isinstance(text, str) and text.strip():
                    out[key] = _trim(text, _SCHEMA_TEXT)
        return out


def _trim(text: str, limit: int) -> str:
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit * 0.8:
        cut = cut[:space]
    return cut.rstrip() + "…"


class _Defs:
    """The `$defs` one tool's schemas reach, gathered while its properties are made."""

    __slots__ = ("defs", "upper")

    def __init__(self) -> None:
        self.defs: dict[str, Any] = {}
        self.upper = 0
        """The sum of each schema's own closure size: at least the JSON size of `defs`."""


class _Schemas:
    """Bundles the schemas of one build's tools: each tool gets its own `$defs`, the closure
    of what its properties reach, cut to `budget` bytes of JSON (see `standalone`)."""

    __slots__ = (
        "_bundled",
        "_described",
        "_pruned",
        "_refs",
        "_sizes",
        "_stubs",
        "args",
        "budget",
        "bundler",
        "keys",
        "problems",
        "source",
    )

    def __init__(self, spec: Spec, budget: int | None) -> None:
        self.bundler = _DescribedBundler(spec)
        self.source = spec.source
        self.budget = budget
        self.problems: list[Problem] = []
        # PERF: Graph's 11k operations use ~50k schemas, mostly the same few
        # hundred `$ref`s, each reaching thousands of definitions: a schema is
        # bundled and measured once. Keyed by (file, $ref) for a bare ref, else
        # by the raw dict's identity (kept alive in the value).
        self._bundled: dict[
            tuple[str, object], tuple[dict[str, Any], dict[str, Any], int, Any]
        ] = {}
        # Definition name -> its JSON size / the names it refers to / its stub.
        self._sizes: dict[str, int] = {}
        self._refs: dict[str, frozenset[str]] = {}
        self._stubs: dict[str, dict[str, Any]] = {}
        self._pruned: dict[tuple[str, frozenset[str]], Any] = {}
        # MEMORY: what tools of one spec can share (Microsoft Graph's 11,422 tools take
        # the same few parameters): a property's schema with its description, an
        # argument, a set of argument names.
        self._described: dict[tuple[int, str, bool], dict[str, Any]] = {}
        self.args: dict[tuple[object, ...], _Arg] = {}
        self.keys: dict[frozenset[str], frozenset[str]] = {}

    def schema(
        self,
        schema: Any,
        file: str,
        pointer: str,
        into: _Defs,
        description: str = "",
        deprecated: bool = False,
    ) -> dict[str, Any]:
        """`schema` normalised, with `description` and `deprecated` when given, its
        definitions added to `into`. Shared by the tools with the same: do not modify."""
        file = file or self.source
        ref = schema.get("$ref") if isinstance(schema, dict) and len(schema) == 1 else None
        key: tuple[str, object] = (file, ref) if isinstance(ref, str) else (file, id(schema))
        hit = self._bundled.get(key)
        if hit is None:
            out, found = self._bundle(schema, file, pointer)
            size = sum(self._size(name, d) for name, d in found.items())
            hit = self._bundled[key] = (out, found, size, schema)
        out, found, size, _ = hit
        if found:
            into.defs.update(found)
            into.upper += size
        key2 = (id(out), description, deprecated)  # `out` is kept alive in _bundled
        described = self._described.get(key2)
        if described is None:
            described = dict(out)
            if description:
                described["description"] = description
            if deprecated:
                described["deprecated"] = True
            self._described[key2] = described
        return described

    def _bundle(
        self, schema: Any, file: str, pointer: str
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            bundled = self.bundler.bundle(schema, file, pointer)
        except DocumentError as exc:
            # The tool stays usable; the gateway's validator reports the same ref.
            problem = exc.problem
            self.problems.append(
                Problem(
                    problem.file,
                    problem.pointer,
                    problem.message,
                    "the tool takes any value there",
                    severity="warning",
                )
            )
            return {}, {}
        if bundled is False:
            return {"not": {}}, {}
        if not isinstance(bundled, dict):
            return {}, {}  # `true`, or nothing usable: any value
        out = dict(bundled)  # never modify: the bundler shares its definitions
        found = out.pop("$defs", None)
        return out, found if isinstance(found, dict) else {}

    def standalone(
        self, properties: dict[str, Any], gathered: _Defs
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The properties and `$defs` of a tool, within the budget.

        Over it, definitions are kept breadth-first from the properties (the
        nearest ones say the most about the arguments) while they fit; refs to
        the others are replaced by a stub naming them. Microsoft Graph needs
        this: its entities reach most of its 4,000 schemas, megabytes per
        tool. The gateway still validates against the full schemas.
        """
        budget, defs = self.budget, gathered.defs
        if budget is None or not defs:
            return properties, defs
        left = budget - len(orjson.dumps(properties))
        if gathered.upper <= left:
            return properties, defs
        sizes, refs = self._sizes, self._refs
        kept: set[str] = set()
        seen: set[str] = set()
        roots = _refs_in(properties)
        level = sorted(roots)
        while level:
            following: set[str] = set()
            for name in level:
                if name in seen or name not in defs:
                    continue
                seen.add(name)
                if sizes[name] <= left:
                    left -= sizes[name]
                    kept.add(name)
                    following |= refs[name]
            level = sorted(following - seen)
        if len(kept) == len(defs):
            return properties, defs
        stubs = self._stubs
        for name in defs.keys() - kept:
            if name not in stubs:
                stubs[name] = _stub(name, defs[name])
        pruned = self._pruned
        out = {}
        for name in sorted(kept):
            gone = refs[name] - kept
            if not gone:
                out[name] = defs[name]  # shared: it refers to no left-out definition
                continue
            # PERF: a definition's copy depends only on which of its refs are gone,
            # and tools of one spec lose the same few.
            key = (name, frozenset(gone))
            copy = pruned.get(key)
            if copy is None:
                copy = pruned[key] = _prune(defs[name], kept, stubs)
            out[name] = copy
        if roots <= kept:
            return properties, out
        return _prune(properties, kept, stubs), out

    def _size(self, name: str, schema: Any) -> int:
        size = self._sizes.get(name)
        if size is None:
            size = self._sizes[name] = len(orjson.dumps(schema)) + len(name) + 4
            self._refs[name] = frozenset(_refs_in(schema))
        return size


_DEFS_REF: Final = "#/$defs/"
_CUT: Final = len(_DEFS_REF)


def _refs_in(node: Any) -> set[str]:
    """The `$defs` names a normalised schema refers to, discriminator mappings included."""
    found: set[str] = set()
    todo = [node]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str) and ref.startswith(_DEFS_REF):
                found.add(ref[_CUT:])
            disc = item.get("discriminator")
            if isinstance(disc, dict) and isinstance(disc.get("mapping"), dict):
                found.update(
                    v[_CUT:]
                    for v in disc["mapping"].values()
                    if isinstance(v, str) and v.startswith(_DEFS_REF)
                )
            todo.extend(v for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            todo.extend(v for v in item if isinstance(v, dict | list))
    return found


def _stub(name: str, schema: Any) -> dict[str, Any]:
    """What a left-out definition becomes: its type and name, nothing to validate against."""
    out: dict[str, Any] = {}
    label = name
    if isinstance(schema, dict):
        if isinstance(schema.get("type"), str | list):
            out["type"] = schema["type"]
        label = str(schema.get("x-component", name))
    out["description"] = f"A {label} (its schema is left out of this tool for size)."
    return out


def _prune(node: Any, kept: set[str], stubs: dict[str, dict[str, Any]]) -> Any:
    """`node` with each ref to a definition not `kept` replaced by its stub: a copy where
    something changed, the parts where nothing did shared (MEMORY: never modify them)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_DEFS_REF) and ref[_CUT:] not in kept:
            out = dict(stubs[ref[_CUT:]])
            out.update((k, _prune(v, kept, stubs)) for k, v in node.items() if k != "$ref")
            return out
        copy = {k: _prune(v, kept, stubs) for k, v in node.items()}
        same = all(copy[k] is v for k, v in node.items())
        disc = copy.get("discriminator")
        if isinstance(disc, dict) and isinstance(disc.get("mapping"), dict):
            mapping = {
                k: v
                for k, v in disc["mapping"].items()
                if not (isinstance(v, str) and v.startswith(_DEFS_REF) and v[_CUT:] not in kept)
            }
            if len(mapping) != len(disc["mapping"]):
                copy["discriminator"] = {**disc, "mapping": mapping}
                same = False
        return node if same else copy
    if isinstance(node, list):
        items = [_prune(v, kept, stubs) for v in node]
        return node if all(a is b for a, b in zip(items, node, strict=True)) else items
    return node


# --- tools ------------------------------------------------------------------------------


class _Arg:
    """One parameter as an argument: its property name, where it goes, how it is written."""

    __slots__ = ("emit", "key", "location", "name", "required", "spread", "whole_segment")

    def __init__(self, key: str, p: Parameter, whole_segment: bool) -> None:
        self.key = key
        self.name = p.name
        self.location: Location = p.location
        self.required = p.required
        self.emit = _emitter(p)
        self.whole_segment = whole_segment
        """A path parameter that is a whole segment: "", "." and ".." can not be sent."""
        style = p.style if p.style in _STYLES[p.location] else _DEFAULT_STYLE[p.location]
        self.spread = p.media_type is None and spreads_members(p.location, style, p.explode)
        """An object value's members become keys of their own (`?R=100&G=200`: `_query`)."""


class Tool:
    """One operation as an MCP tool: its definition (`as_dict()`) and `build_request`."""

    __slots__ = (
        "_args",
        "_body",
        "_keys",
        "_required",
        "_segments",
        "_spread",
        "input_schema",
        "method",
        "name",
        "operation",
        "template",
    )

    def __init__(
        self,
        name: str,
        operation: Operation,
        input_schema: dict[str, Any],
        args: list[_Arg],
        body: _Body | None,
        interned: dict[frozenset[str], frozenset[str]] | None = None,
        spread: dict[str, _Spread] | None = None,
    ) -> None:
        op = operation
        self._spread = spread
        self.name = name
        self.operation = op
        self.method = op.method
        self.template = op.template
        """The gateway-side path template: requests go through the gateway's routes."""
        self.input_schema = input_schema
        self._args = tuple(args)
        keys = frozenset([a.key for a in args] + (["body"] if body is not None else []))
        # MEMORY: tools of one spec mostly take the same few sets of arguments.
        self._keys = interned.setdefault(keys, keys) if interned is not None else keys
        self._required = tuple(
            [a.key for a in args if a.required] + (["body"] if body and body.required else [])
        )
        self._body = body
        by_name = {a.name: a for a in args if a.location == "path"}
        segments: list[str | _Arg] = []
        for i, part in enumerate(re.split(r"\{([^{}]*)\}", op.template)):
            if i % 2 == 0:
                # Literal text as written, escaped only where a request line needs it.
                segments.append(quote(part, safe="/!$&'()*+,;=:@%~"))
            elif part in by_name:
                segments.append(by_name[part])
            else:
                segments.append(quote("{" + part + "}", safe="/"))
        self._segments = tuple(segments)

    # MEMORY: the title, description and annotations are made from the operation when
    # asked (tools/list), not kept: Microsoft Graph's 11,422 tools held ~10 MiB of them.

    @property
    def title(self) -> str:
        op = self.operation
        return _trim(op.summary, _TITLE) if op.summary.strip() else op.operation_id

    @property
    def description(self) -> str:
        return _describe(self.operation)

    @property
    def annotations(self) -> dict[str, Any]:
        return _annotations(self.method, self.title)

    def as_dict(self) -> dict[str, Any]:
        """The MCP `Tool` object (camelCase, as on the wire), made on each call. Its
        `inputSchema` is shared: do not modify it."""
        title = self.title
        return {
            "name": self.name,
            "title": title,
            "description": self.description,
            "inputSchema": self.input_schema,
            "annotations": _annotations(self.method, title),
        }

    @property
    def json(self) -> bytes:
        """`as_dict()` encoded, made on each call: kept, every tool's JSON was most of
        a worker's MCP memory (Microsoft Graph: 11,422 tools, 115 MiB)."""
        return orjson.dumps(self.as_dict())

    def build_request(self, arguments: Mapping[str, Any] | None) -> HttpCall:
        """The HTTP request for these `tools/call` arguments; ToolArgumentError when they
        name an unknown argument, lack a required one, or hold a value no request can carry.
        """
        args: Mapping[str, Any] = arguments if arguments is not None else {}
        if not isinstance(args, Mapping):
            raise ToolArgumentError(self.name, None, "arguments must be an object")
        keys = self._keys
        for key in args:
            if key not in keys:
                close = difflib.get_close_matches(str(key), sorted(keys), n=1)
                hint = (
                    f"; did you mean {close[0]!r}?"
                    if close
                    else (f"; it takes {', '.join(sorted(keys))}" if keys else "; it takes none")
                )
                raise ToolArgumentError(self.name, str(key), f"unknown argument {key!r}{hint}")
        for key in self._required:
            if args.get(key) is None:
                raise ToolArgumentError(self.name, key, f"the argument {key!r} is required")
        path_values: dict[str, str] = {}
        query: list[str] = []
        headers: list[tuple[str, str]] = []
        cookies: list[str] = []
        arg: _Arg | None = None
        try:
            for arg in self._args:
                value = args.get(arg.key)
                if value is None:
                    continue
                if arg.spread and isinstance(value, dict):
                    self._check_members(arg, value)
                out = arg.emit(value)
                location = arg.location
                if location == "path":
                    if arg.whole_segment and out in ("", ".", ".."):
                        raise _BadValue(
                            "would make an empty or dot path segment, which no route matches"
                        )
                    path_values[arg.name] = out
                elif not out and arg.required and location != "header":
                    # An exploded empty array or object writes nothing: absent.
                    raise _BadValue(f"can not be empty: the {location} would not carry it")
                elif location == "query":
                    query.extend(out)
                elif location == "header":
                    headers.append((arg.name, out))
                else:
                    cookies.extend(out)
            arg = None
            body: bytes | None = None
            content_type: str | None = None
            value = args.get("body")
            if self._body is not None and value is not None:
                body, content_type = self._body.encode(value)
        except _BadValue as exc:
            key = arg.key if arg is not None else "body"
            raise ToolArgumentError(self.name, key, f"the argument {key!r} {exc}") from None
        if cookies:
            headers.append(("Cookie", "; ".join(cookies)))
        path = "".join(s if isinstance(s, str) else path_values[s.name] for s in self._segments)
        if query:
            path = f"{path}?{'&'.join(query)}"
        return HttpCall(self.method, path, headers, body, content_type)

    def _check_members(self, arg: _Arg, value: dict[Any, Any]) -> None:
        """An exploded object's members are query (or cookie) keys of their own, and the
        gateway reads them as styles.py says; a member it would read otherwise is refused:
        - one named as another parameter there is that one's (EC2's EnableFastLaunch:
          its LaunchTemplate's `Version` and the API's own `Version=2016-11-15`);
        - one another exploded object declares too is both's (EC2's
          ModifyInstanceAttribute: `SourceDestCheck.Value`, `InstanceType.Value`);
        - one an object that declares its members does not declare is nobody's."""
        spread = self._spread
        mine = spread.get(arg.key) if spread is not None else None
        for member, item in value.items():
            if not _writes(item):
                continue
            for other in self._args:
                if other is arg or other.location != arg.location or other.name != member:
                    continue
                theirs = spread.get(other.key) if spread is not None else None
                if theirs is not None and not theirs.free_form and member not in theirs.declared:
                    continue  # (an object that declares its members writes no key of its name)
                raise _BadValue(
                    f"has a member {member!r}, which the {arg.location} would carry as the"
                    f" parameter {member!r}: an exploded object's members are keys of"
                    " their own there"
                )
            if mine is None:
                continue
            if member in mine.shared:
                raise _BadValue(
                    f"has a member {member!r}, which another object of this operation"
                    f" declares too: both are written as the {arg.location} key"
                    f" {member!r}, and a reader gives it to both"
                )
            if not mine.free_form and member not in mine.declared:
                raise _BadValue(
                    f"has a member {member!r}, which it does not declare: written as a"
                    f" {arg.location} key of its own, it would be read as no part of it"
                    f" (its members: {', '.join(sorted(mine.declared))})"
                )

    def __repr__(self) -> str:
        return f"Tool({self.name!r}, {self.method} {self.template})"


def _describe(op: Operation) -> str:
    tail = f"{op.method} {op.template}"
    if op.deprecated:
        tail += " (deprecated)"
    summary, description = op.summary.strip(), op.description.strip()
    if summary and description.startswith(summary):
        summary = ""
    text = "\n\n".join(t for t in (summary, description) if t)
    if not text:
        return tail
    return _trim(text, MAX_DESCRIPTION - len(tail) - 2) + "\n\n" + tail


def _annotations(method: str, title: str) -> dict[str, Any]:
    read_only = method in _READ_ONLY
    out: dict[str, Any] = {"title": title, "readOnlyHint": read_only}
    if method == "DELETE":
        out["destructiveHint"] = True
    if method in _IDEMPOTENT:
        out["idempotentHint"] = True
    return out


def _build_tool(name: str, op: Operation, schemas: _Schemas) -> Tool:
    source = schemas.source
    gathered = _Defs()
    params = [
        p
        for p in op.parameters
        if not (p.location == "header" and p.name.lower() in _IGNORED_HEADERS)
    ]
    params.sort(key=lambda p: _LOCATIONS.index(p.location))  # stable: spec order within
    body_schema: dict[str, Any] | None = None
    body: _Body | None = None
    raw_body = op.request_body
    if isinstance(raw_body, dict) and isinstance(raw_body.get("content"), dict):
        content = raw_body["content"]
        chosen = _choose_media(content)
        if chosen is not None:
            media_type, kind = chosen
            media = content.get(media_type)
            media = media if isinstance(media, dict) else {}
            file = op.request_body_file or op.file or source
            pointer = join(op.request_body_pointer, "content", media_type, "schema")
            what = raw_body.get("description")
            note = _trim(what, MAX_DESCRIPTION) if isinstance(what, str) and what.strip() else ""
            if kind != "json":
                note = (note + "\n\n" if note else "") + f"Sent as {media_type}."
            body_required = raw_body.get("required") is True
            if kind == "text":
                # A zero-length body is none sent, to the gateway's check as to a server
                # (S3's CompleteMultipartUpload): a required one holds something.
                body_schema = (
                    {"type": "string", "minLength": 1} if body_required else {"type": "string"}
                )
            elif "schema" in media:
                body_schema = schemas.schema(media["schema"], file, pointer, gathered, note)
                note = ""  # (in it already)
            else:
                body_schema = {} if kind == "json" else {"type": "object"}
            if note:
                body_schema["description"] = note
            essence = media_type.partition(";")[0].strip().lower()
            content_type = "application/json" if "*" in essence else media_type
            if kind == "text" and "*" in essence:
                content_type = "text/plain; charset=utf-8"
            encoding = media.get("encoding")
            body = _Body(
                kind,
                content_type,
                body_required,
                encoding if isinstance(encoding, dict) else {},
            )
    properties: dict[str, Any] = {}
    taken = {"body"} if body is not None else set()
    args: list[_Arg] = []
    segments = _whole_segments(op.template)
    for p in params:
        key = _property_name(p, taken)
        taken.add(key)
        properties[key] = schemas.schema(
            p.schema,
            p.file or source,
            join(p.pointer, "schema"),
            gathered,
            _trim(p.description, MAX_DESCRIPTION) if p.description.strip() else "",
            p.deprecated,
        )
        whole = p.name in segments
        # An argument is decided by these alone (see _Arg, _emitter): shared.
        arg_key = (key, p.name, p.location, p.required, p.style, p.explode, p.media_type, whole)
        arg = schemas.args.get(arg_key)
        if arg is None:
            arg = schemas.args[arg_key] = _Arg(key, p, whole)
        args.append(arg)
    if body_schema is not None:
        properties["body"] = body_schema
    properties, defs = schemas.standalone(properties, gathered)
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    required = [a.key for a in args if a.required]
    if body is not None and body.required:
        required.append("body")
    if required:
        schema["required"] = required
    schema["additionalProperties"] = False
    if defs:
        schema["$defs"] = dict(sorted(defs.items()))
    return Tool(name, op, schema, args, body, schemas.keys, _spread_objects(args, properties, defs))


class _Spread(NamedTuple):
    """An exploded object argument's members as the gateway reads them (styles.py)."""

    declared: frozenset[str]
    free_form: bool
    """It also takes keys no declared property (and no other parameter) names."""
    shared: frozenset[str]
    """Members another exploded object in its location declares too."""


def _spread_objects(
    args: list[_Arg], properties: dict[str, Any], defs: dict[str, Any]
) -> dict[str, _Spread] | None:
    """The tool's exploded object arguments (`?R=100&G=200`), by key; None: it has none.
    Read with the gateway's own `shape_of`, so the tool writes only what it reads."""
    resolve = defs_resolver(defs)
    found: dict[str, tuple[_Arg, frozenset[str], bool]] = {}
    for arg in args:
        schema = properties.get(arg.key)
        if not arg.spread or not isinstance(schema, dict):
            continue
        kind = schema.get("type")
        if isinstance(kind, str) and kind != "object":
            continue  # PERF: most are scalars (`per_page`); no shape needed
        shape = shape_of(schema, resolve)
        if shape.kind == "object":
            found[arg.key] = (arg, frozenset(shape.properties), shape.free_form)
    if not found:
        return None
    out: dict[str, _Spread] = {}
    for key, (arg, declared, free_form) in found.items():
        others: set[str] = set()
        for other, other_declared, _ in found.values():
            if other is not arg and other.location == arg.location:
                others |= other_declared
        out[key] = _Spread(declared, free_form, declared & frozenset(others))
    return out


def _writes(value: Any) -> bool:
    """Whether a member's value writes a key: None and an empty array write nothing."""
    if isinstance(value, list):
        return any(item is not None for item in value)
    return value is not None


def _whole_segments(template: str) -> set[str]:
    return {s[1:-1] for s in template.split("/") if s.startswith("{") and s.endswith("}")}


def _property_name(p: Parameter, taken: set[str]) -> str:
    base = _NAME_BAD.sub("_", p.name)[:MAX_NAME] or p.location
    if base not in taken:
        return base
    base = f"{p.location}_{base}"[:MAX_NAME]
    key, n = base, 2
    while key in taken:
        key = f"{base[: MAX_NAME - 1 - len(str(n))]}_{n}"
        n += 1
    return key


def _hashed(clean: str, key: str, room: int) -> str:
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    head = clean[: room - 9].rstrip("-._")
    return f"{head}_{digest}" if head else digest


def tool_names(operations: Sequence[Operation], prefix: str = "") -> list[str]:
    """The tool name of each operation, in order (see the module docstring for the rules)."""
    if not _PREFIX_OK.fullmatch(prefix):
        raise ValueError(
            f"tool name prefix {prefix!r}: use at most {MAX_PREFIX} of A-Z a-z 0-9 _ . -"
        )
    room = MAX_NAME - len(prefix)
    cleaned: list[str] = []
    names: list[str | None] = []
    taken: set[str] = set()
    for op in operations:
        raw = op.operation_id
        clean = (
            _NAME_BAD.sub("_", raw).strip("-._")
            or _NAME_BAD.sub("_", derive(op.method, op.path)).strip("-._")
            or op.method.lower()
        )
        cleaned.append(clean)
        # A valid id that fits is the name, whatever else the spec holds (ids are unique).
        exact = clean == raw and len(raw) <= room
        names.append(raw if exact else None)
        if exact:
            taken.add(raw)
    for i, op in enumerate(operations):
        if names[i] is not None:
            continue
        clean = cleaned[i]
        name = clean if len(clean) <= room and clean not in taken else None
        n = 1
        while name is None or name in taken:
            key = op.operation_id if n == 1 else f"{op.operation_id}#{n}"
            name = _hashed(clean, key, room)
            n += 1
        names[i] = name
        taken.add(name)
    return [prefix + str(name) for name in names]


def build_tools(
    spec: Spec,
    *,
    filter: ToolFilter | None = None,
    prefix: str = "",
    max_schema_bytes: int | None = MAX_SCHEMA_BYTES,
) -> ToolSet:
    """One tool per operation of `spec` that `filter` keeps, named `prefix` + its name.

    `max_schema_bytes` bounds each input schema's JSON (None: no bound; see
    `_Schemas.standalone`). Raises ValueError for a prefix that can not start
    a tool name. A `$ref` that leads nowhere leaves its schema open (`{}`) and
    a warning in `ToolSet.problems`.
    """
    operations = spec.operations
    # Over every operation, so a tool's name does not depend on the filter.
    names = tool_names(operations, prefix)
    schemas = _Schemas(spec, max_schema_bytes)
    tools = [
        _build_tool(name, op, schemas)
        for name, op in zip(names, operations, strict=True)
        if filter is None or filter.keeps(op)
    ]
    return ToolSet(tools, schemas.problems)


# --- the list ---------------------------------------------------------------------------


class ToolSet:
    """A spec's tools, sorted by name, with `tools/list` pages as JSON."""

    __slots__ = ("_by_name", "_digest", "_names", "problems", "tools")

    def __init__(self, tools: Iterable[Tool], problems: Iterable[Problem] = ()) -> None:
        # By name: a cursor (the last name sent) still finds its place after the
        # list changed, and the order is the same whatever the spec's order.
        self.tools: tuple[Tool, ...] = tuple(sorted(tools, key=lambda t: t.name))
        self._names = [t.name for t in self.tools]
        self._by_name = {t.name: t for t in self.tools}
        if len(self._by_name) != len(self.tools):
            raise ValueError("two tools have the same name")
        self.problems: tuple[Problem, ...] = tuple(problems)
        """Warnings found while building: schemas left open because a `$ref` leads nowhere."""
        self._digest: str | None = None

    def __len__(self) -> int:
        return len(self.tools)

    def __iter__(self) -> Iterator[Tool]:
        return iter(self.tools)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    @property
    def names(self) -> list[str]:
        return list(self._names)

    def get(self, name: str) -> Tool | None:
        """The tool called `name`, None if there is none (JSON-RPC -32602 "Unknown tool")."""
        return self._by_name.get(name)

    def page(self, cursor: str | None, size: int) -> tuple[list[dict[str, Any]], str | None]:
        """The tools after `cursor` (None: from the start), at most `size`, and the next
        cursor (None: that was the last page). Raises InvalidCursor for a cursor this
        class did not make. The dicts are shared: do not modify them."""
        start, stop = self._window(cursor, size)
        tools = self.tools[start:stop]
        return [t.as_dict() for t in tools], self._next(stop)

    def page_json(self, cursor: str | None, size: int) -> bytes:
        """`page()` as the JSON of a `tools/list` result (`{"tools": [...], "nextCursor": ...}`).

        PERF: encoded on each call (Microsoft Graph: 0.4 ms for the first page of 100, 70 KiB);
        the tools' JSON is not kept (see `Tool.json`)."""
        start, stop = self._window(cursor, size)
        result: dict[str, Any] = {"tools": [t.as_dict() for t in self.tools[start:stop]]}
        after = self._next(stop)
        if after is not None:
            result["nextCursor"] = after
        return orjson.dumps(result)

    def page_json_where(self, cursor: str | None, size: int, keep: Callable[[Tool], bool]) -> bytes:
        """`page_json()` of the tools `keep` accepts only (a caller's own view of the list):
        pages of `size` of those, with cursors that work the same way."""
        start, _ = self._window(cursor, size)
        picked: list[Tool] = []
        more = False
        for tool in self.tools[start:]:
            if not keep(tool):
                continue
            if len(picked) == size:
                more = True
                break
            picked.append(tool)
        result: dict[str, Any] = {"tools": [t.as_dict() for t in picked]}
        if more:
            result["nextCursor"] = _encode_cursor(picked[-1].name)
        return orjson.dumps(result)

    def as_json(self) -> bytes:
        """Every tool as one JSON array (made on each call: see `Tool.json`)."""
        return b"[" + b",".join(t.json for t in self.tools) + b"]"

    @property
    def digest(self) -> str:
        """16 hex digits of the SHA-256 of `as_json()`: equal lists, equal digests (any process),
        so a spec update that changes no tool sends no `list_changed`. Made once, a tool at
        a time (the whole list's JSON is never held: Microsoft Graph's is 55 MB)."""
        if self._digest is None:
            h = hashlib.sha256(b"[")
            for i, tool in enumerate(self.tools):
                h.update(b"," + tool.json if i else tool.json)
            h.update(b"]")
            self._digest = h.hexdigest()[:16]
        return self._digest

    def _window(self, cursor: str | None, size: int) -> tuple[int, int]:
        if size < 1:
            raise ValueError(f"page size must be at least 1, not {size}")
        start = 0 if cursor is None else bisect.bisect_right(self._names, _decode_cursor(cursor))
        return start, start + size

    def _next(self, stop: int) -> str | None:
        if stop >= len(self.tools):
            return None
        return _encode_cursor(self._names[stop - 1])


def _encode_cursor(last: str) -> str:
    return base64.urlsafe_b64encode((_CURSOR_VERSION + last).encode()).rstrip(b"=").decode()


def _decode_cursor(cursor: str) -> str:
    """The last name of the page before; any name works, so a cursor survives list changes."""
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        text = raw.decode("ascii")
    except (binascii.Error, ValueError):
        raise InvalidCursor(f"invalid cursor {cursor[:80]!r}") from None
    last = text[len(_CURSOR_VERSION) :]
    if not text.startswith(_CURSOR_VERSION) or not _NAME_OK.fullmatch(last):
        raise InvalidCursor(f"invalid cursor {cursor[:80]!r}")
    return last


# --- results ----------------------------------------------------------------------------


def tool_result(
    status: int,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    *,
    uri: str = "urn:runmcp:response",
) -> dict[str, Any]:
    """The MCP `CallToolResult` (camelCase dict) for an upstream's response.

    - `content`: the body as text (its declared charset, else UTF-8), `HTTP <status>: `
      before it when the status is 400 or more; an empty body says `HTTP <status>`.
      A body that is not text becomes a note plus an `image`, `audio` or embedded
      `resource` blob (base64; `uri` names the resource).
    - `structuredContent`: the parsed body when it is a JSON object (a JSON media
      type, or none given and the body parses). Arrays and scalars stay text only:
      the tools declare no `outputSchema` to wrap them under.
    - `isError`: status >= 400.
    """
    content_type = ""
    for name, value in headers:
        if name.lower() == "content-type":
            content_type = value
            break
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    error = status >= 400
    text = _decode(body, params)
    structured: Any = None
    if body and (_is_json(media) or (not media and body.lstrip()[:1] in (b"{", b"["))):
        try:
            structured = jsontext.loads(body)  # (an integer past 64 bits stays one)
        except ValueError:
            structured = None
    content: list[dict[str, Any]]
    if not body:
        content = [{"type": "text", "text": f"HTTP {status} (empty body)"}]
    elif text is not None:
        content = [{"type": "text", "text": f"HTTP {status}: {text}" if error else text}]
    else:
        data = base64.b64encode(body).decode("ascii")
        kind = media or "application/octet-stream"
        note = {"type": "text", "text": f"HTTP {status}: {len(body)} bytes of {kind}"}
        blob: dict[str, Any]
        if media.startswith(("image/", "audio/")):
            blob = {"type": media.split("/", 1)[0], "data": data, "mimeType": media}
        else:
            blob = {"type": "resource", "resource": {"uri": uri, "mimeType": kind, "blob": data}}
        content = [note, blob]
    result: dict[str, Any] = {"content": content}
    if isinstance(structured, dict):
        result["structuredContent"] = structured
    result["isError"] = error
    return result


def _decode(body: bytes, params: str) -> str | None:
    charset = "utf-8"
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"')
    try:
        codecs.lookup(charset)
    except LookupError:
        charset = "utf-8"
    try:
        return body.decode(charset)
    except (UnicodeDecodeError, ValueError):
        return None
