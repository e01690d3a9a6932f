"""An operation's contract, compiled once per snapshot, checked per request by the data plane.

The data plane calls `OperationValidator.head()` when a request's head is
read. It returns None (nothing more to check: forward), or a `Verdict`:
either a rejection to answer at once (a bad parameter, a Content-Type the
operation does not take, a missing body), or a JSON, URL-encoded or multipart
form body to buffer and hand to `Verdict.finish()` when it is complete. Other
bodies (binaries, text, forms without a schema) are never buffered: they
stream on as before.
"""

from __future__ import annotations

import logging
import time
from array import array
from collections.abc import Mapping, Sequence
from typing import Any

from runmcp_fast.openapi.model import Operation, Parameter, Spec
from runmcp_fast.openapi.pointers import join
from runmcp_fast.validation.bundle import Bundler
from runmcp_fast.validation.forms import FormBody
from runmcp_fast.validation.issues import Issue
from runmcp_fast.validation.library import Fallback, TypeLibrary
from runmcp_fast.validation.multipart import MULTIPART, MultipartBody
from runmcp_fast.validation.schema import SchemaValidator, shared_validator
from runmcp_fast.validation.styles import (
    MISSING,
    ParamReader,
    StyleError,
    UnsupportedStyle,
    defs_resolver,
    parse_cookies,
    parse_query,
)
from runmcp_fast.wire import problem

log = logging.getLogger("runmcp_fast.validation")

MODES = ("on", "off", "report")
DEFAULT_MAX_BODY = 8 * 1024 * 1024
"""Validated bodies are buffered whole; beyond this they get 413 (configurable)."""

# OpenAPI: header parameters by these names "SHALL be ignored".
_IGNORED_HEADERS = frozenset(("accept", "content-type", "authorization"))
# Issues that mean "malformed", always 400 whatever status schema errors get.
_MALFORMED = frozenset(("json", "duplicateKey", "style", "body"))
_LOCATION_PREFIX = {"path": "/path", "query": "/query", "header": "/header", "cookie": "/cookie"}


_FORM = "application/x-www-form-urlencoded"

# What of one issue goes into the report-only warning: its pointer and message name the
# request's own keys (an unknown query key, a deepObject property), as long and as odd as
# a client makes them. Bounded and escaped as the access log writes a path or a header
# (steps/access_log.pxi): a control character is \n, \r, \t or \u00XX, a backslash
# doubled, so one request is one line of at most this many characters, whatever it held.
_LOGGED_ISSUE = 200
_LOG_ESCAPES = {c: f"\\u{c:04x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029)}
_LOG_ESCAPES.update({0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x5C: "\\\\"})

BodyCheck = SchemaValidator | FormBody | MultipartBody
"""A media type's compiled body check: a JSON schema, or a form read into one."""


def is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


class ParamCheck:
    """One parameter: how to read it from the request, and its compiled schema."""

    __slots__ = (
        "anything",
        "key",
        "location",
        "name",
        "plain",
        "pointer",
        "read",
        "required",
        "takes_others",
        "validator",
    )

    def __init__(
        self,
        param: Parameter,
        bundled: Any,
        validator: SchemaValidator,
        claimed: frozenset[str] = frozenset(),
    ) -> None:
        self.name = param.name
        self.location = param.location
        self.required = param.required
        self.pointer = join(_LOCATION_PREFIX[param.location], param.name)
        self.validator = validator
        self.key = param.name.lower().encode("latin-1", "replace")
        """The header's name as the data plane's lines spell it, lower-cased."""
        # PERF: a parameter any string satisfies needs reading (for `required`
        # and its style), not checking.
        self.anything = validator.type is Any or validator.type is str
        defs = bundled.get("$defs", {}) if isinstance(bundled, dict) else {}
        reader = ParamReader(
            param.name,
            param.location,
            param.style,
            param.explode,
            bundled if isinstance(bundled, dict) else {},
            defs_resolver(defs),
            media_type=param.media_type,
            claimed=claimed,
        )
        self.read = reader.read
        self.takes_others = reader.takes_others
        self.plain = _plain(param, reader, validator, self.anything)
        """How the data plane decides this parameter in C (`PlainCheck`), or None."""


def param_check(
    param: Parameter,
    bundled: Any,
    validator: SchemaValidator,
    library: TypeLibrary,
    siblings: Sequence[Parameter] = (),
) -> ParamCheck:
    """`ParamCheck(param, bundled, validator)`, one per distinct parameter in `library`
    (one spec's): a ParamCheck holds no state of its own, and is decided by the
    parameter's name, location, serialisation and schema alone (the validator, shared
    per schema content). MEMORY: Microsoft Graph's 11,422 operations repeat the same
    few parameters (`$top`, `$filter`, an entity's id, ...).

    `siblings`: the operation's parameters. The names of the others in its location
    are `claimed`: not an exploded free-form object's members (`?x=1&q=abc` gives `q` to
    the parameter `q`), so only such an object is kept per those names."""
    key = (
        param.name,
        param.location,
        param.required,
        param.style,
        param.explode,
        param.media_type,
        id(validator),  # alive as long as the entry: the ParamCheck holds it
    )
    found: ParamCheck | None = library.params.get(key)
    if found is None:
        found = library.params[key] = ParamCheck(param, bundled, validator)
    if not found.takes_others:
        return found
    claimed = frozenset(
        [o.name for o in siblings if o.location == param.location and o.name != param.name]
    )
    if claimed:
        own_key = (*key, claimed)
        own: ParamCheck | None = library.params.get(own_key)
        if own is None:
            own = library.params[own_key] = ParamCheck(param, bundled, validator, claimed)
        return own
    return found


PlainCheck = tuple[Any, bool, bool, bool, bool, bool]
"""A parameter the data plane checks itself: (the schema's byte checker, or None when
any text is valid; whether the text may be read as a number, as a boolean, as a string;
whether it is a query parameter; whether it is required). Text it can not decide so
(escapes, non-ASCII, `null`, a number with a fraction, a quote) goes to
`OperationValidator.head`, which has the last word."""

# A query parameter whose name holds one of these is never spelled plainly in a URL.
_NOT_PLAIN_IN_QUERY = frozenset("&=+%#?[] ")


def _plain(
    param: Parameter, reader: ParamReader, validator: SchemaValidator, anything: bool
) -> PlainCheck | None:
    # Only `simple` path segments and `form` query values of a scalar are read as the
    # text itself (coerced by the schema's types): other styles carry prefixes, arrays
    # and objects separators.
    if param.media_type is not None or reader.shape.kind != "primitive":
        return None
    in_query = param.location == "query"
    if in_query:
        if (
            reader.shape.as_array is not None  # a repeated key is a list: C reads one value
            or param.style != "form"
            or not param.name.isascii()
            or not param.name
            or _NOT_PLAIN_IN_QUERY.intersection(param.name)
        ):
            return None
    elif param.location != "path" or param.style != "simple":
        return None
    if anything:
        return (None, False, False, True, in_query, param.required)
    if validator.program is None or validator.fallbacks:
        return None
    types = reader.shape.types
    numeric = "integer" in types or "number" in types
    string = not types or "string" in types
    return (validator.program, numeric, "boolean" in types, string, in_query, param.required)


class Verdict:
    """What the head check decided; `finish(body)` completes it for a buffered JSON body.

    A verdict with no issues is shared by every request to its operation and
    media type (none is made per valid request), so it is never modified:
    `finish` returns a new one to answer with.
    """

    __slots__ = ("body", "issues", "media_type", "op", "program", "status")

    def __init__(
        self,
        op: OperationValidator,
        issues: list[Issue],
        body: BodyCheck | None,
        media_type: str | None = None,
    ):
        self.op = op
        self.issues = issues
        self.body = body
        self.media_type = media_type
        """The body's media type (lower case, no parameters), for `op.alternates`."""
        """The compiled body check when the body is to be buffered and checked."""
        self.program = body.program if body is not None and not issues else None
        """The byte checker the data plane may call itself: True means forward."""
        self.status = 0
        """The status of `response()`, once made."""

    def finish(self, body: bytes) -> Verdict | None:
        """Check the complete body: None to forward it, else the verdict to answer with."""
        op = self.op
        issues = self.issues
        if not body:
            if op.body_required:
                issues = [*issues, Issue("/body", "body", "this operation needs a request body")]
        else:
            assert self.body is not None
            found = self.body.check_json(body)
            if found and not issues and op.alternates and self._alternate_takes(body):
                return None
            if found:
                issues = [*issues, *found]
        if not issues or not op.judge(issues):
            return None
        return Verdict(op, issues, None)

    def _alternate_takes(self, body: bytes) -> bool:
        """Whether an operation sharing the route unseen by the head (`alternates`)
        takes this body: then the request is valid, only not for the first of them."""
        for alternate in self.op.alternates:
            known, check = alternate._media(self.media_type)
            if known and (check is None or not check.check_json(body)):
                return True
        return False

    def response(self, keep_alive: bool, head_only: bool) -> bytes:
        self.status, data = self.op.response(self.issues, keep_alive, head_only)
        return data


class OperationValidator:
    """The compiled contract of one operation."""

    __slots__ = (
        "_all_bodies",
        "_checked",
        "_clean",
        "_last_log",
        "_params",
        "_suppressed",
        "alternates",
        "bodies",
        "body_required",
        "declares_body",
        "enforce",
        "fast_heads",
        "header_names",
        "header_params",
        "invalid",
        "max_body",
        "mode",
        "name",
        "needed",
        "path_params",
        "plain_needs_no_query",
        "plain_params",
        "query_params",
        "rejected",
        "status",
        "tally",
        "unchecked",
        "wildcards",
    )

    def __init__(
        self,
        name: str,
        *,
        params: list[ParamCheck],
        bodies: Mapping[str, BodyCheck | None],
        body_required: bool,
        mode: str = "on",
        status: int = 400,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        self.name = name
        self.mode = mode
        self.enforce = mode == "on"
        self.status = status
        self.max_body = max_body
        self.path_params = tuple(p for p in params if p.location == "path")
        self.query_params = tuple(p for p in params if p.location == "query")
        self.header_params = tuple(
            p
            for p in params
            if p.location == "cookie"
            or (p.location == "header" and p.name.lower() not in _IGNORED_HEADERS)
        )
        self.header_names = frozenset(
            [p.key for p in self.header_params if p.location == "header"]
            + ([b"cookie"] if any(p.location == "cookie" for p in self.header_params) else [])
        )
        self.bodies = {k: v for k, v in bodies.items() if "*" not in k}
        """Media type (lower case, no parameters) -> its compiled JSON schema or form
        check, or None for a media type taken as is."""
        self.wildcards = tuple(
            (k.split("/", 1)[0] + "/" if not k.startswith("*") else "", v)
            for k, v in bodies.items()
            if "*" in k
        )
        self.declares_body = bool(bodies)
        self.needed = bool(params) or self.declares_body
        """False for an operation with nothing to check: the data plane skips it."""
        self.body_required = body_required
        self.alternates: tuple[OperationValidator, ...] = ()
        """Operations sharing this one's route that no head tells apart from it (Box's
        `#add`/`#delete`, openapi/dispatch.py `shadowed`): a body one of them takes is
        valid. Set when the snapshot is built."""
        self._params = tuple(params)
        # The media types in the spec's order (the wildcards' apart in `wildcards`).
        self._all_bodies = bodies if self.wildcards else self.bodies
        self.unchecked: tuple[Fallback, ...] = ()
        """Parameters not checked at all (a style OpenAPI does not define)."""
        self._checked = 0
        self.tally = array("q", [0])
        """Requests the data plane let through without calling `head` (it counts them
        in this array's one item, from C)."""
        self.invalid = 0
        self.rejected: dict[str, int] = {}
        """Issues found in invalid requests, by JSON Schema keyword (for the metrics)."""
        self._last_log = 0.0
        self._suppressed = 0
        self._clean: dict[str, Verdict] = {}
        """Media type -> the shared verdict of a head with nothing wrong."""
        plain = [(p.name, p.plain) for p in params if p.plain is not None]
        # Optional query parameters C can not read (arrays, objects, deepObject) are
        # surely absent from a URL with no query: C may decide that one.
        unread = [p for p in params if p.plain is None]
        self.plain_needs_no_query = bool(unread)
        """The data plane decides the parameters itself only for a URL with no query."""
        self.plain_params: tuple[tuple[str, PlainCheck], ...] | None = (
            tuple(plain) if all(p.location == "query" and not p.required for p in unread) else None
        )
        """When the data plane can check the parameters itself (`ParamCheck.plain`:
        path and query parameters of scalars; no header or cookie parameter, and any
        other query parameter optional, see `plain_needs_no_query`): (name, check) of
        each. None: `head` reads them."""
        self.fast_heads: dict[bytes, Verdict] | None = (
            {} if self.plain_params is not None and self.declares_body else None
        )
        """For an operation whose parameters the data plane checks (`plain_params`): the
        raw Content-Type values seen -> their clean verdict, which the data plane looks
        up itself (no Python call per request). None when `head` must be called."""

    @property
    def fallbacks(self) -> tuple[Fallback, ...]:
        """The schema nodes checked by the fallback validator, and the parameters not
        checked; where in the request, then where in its schema: `/query/created (schema /)`.
        Made on each call (for `check` and the admin API): MEMORY, Microsoft Graph's were
        82,000 strings."""
        found: list[Fallback] = []
        for media_type, v in self._all_bodies.items():
            if v is not None:
                found.extend(_at(f"/body ({media_type})", f) for f in v.fallbacks)
        for p in self._params:
            found.extend(_at(p.pointer, f) for f in p.validator.fallbacks)
        return (*found, *self.unchecked)

    @property
    def checked(self) -> int:
        """Requests seen: by `head`, and by the data plane on its own (`tally`)."""
        return self._checked + self.tally[0]

    # -- the request head ----------------------------------------------------------------

    def head(
        self,
        url: bytes,
        path_params: Mapping[str, str] | None,
        lines: list[bytes] | None,
        content_type: bytes | None,
        has_body: bool,
    ) -> Verdict | None:
        """Check what the head carries; see the module docstring for what comes back.

        `lines` are the kept header lines (name, ": ", value, CRLF, ...);
        `content_type` is the raw Content-Type value, found by the data plane.
        """
        self._checked += 1
        issues: list[Issue] = []
        if self.path_params and path_params is not None:
            for p in self.path_params:
                raw = path_params.get(p.name)
                if raw is not None:
                    self._check_param(p, raw, issues)
        if self.query_params:
            mark = url.find(b"?")
            query = (
                parse_query(url[mark + 1 :].decode("utf-8", "surrogateescape")) if mark >= 0 else {}
            )
            for p in self.query_params:
                self._check_param(p, query, issues)
        if self.header_params:
            self._check_headers(lines, issues)
        body: BodyCheck | None = None
        media_type: str | None = None
        if self.declares_body:
            if has_body:
                media_type = _media_type(content_type)
                known, body = self._media(media_type)
                if not known:
                    return self._unsupported(media_type, issues)
            elif self.body_required:
                issues.append(Issue("/body", "body", "this operation needs a request body"))
        if body is None and not issues:
            return None
        if not issues:
            assert media_type is not None
            try:
                clean = self._clean[media_type]
            except KeyError:
                # A multipart body is split on the boundary of its own Content-Type:
                # a verdict of its own (only routes that take multipart get here).
                assert isinstance(body, MultipartBody)
                return Verdict(self, [], body.bound(content_type), media_type)
            if self.fast_heads is not None and content_type is not None:
                if len(self.fast_heads) > 64:
                    self.fast_heads.clear()  # bounded whatever clients send
                self.fast_heads[content_type] = clean
            return clean
        if isinstance(body, MultipartBody):
            body = body.bound(content_type)
        verdict = Verdict(self, issues, body, media_type)
        if body is None and not self.judge(issues):
            return None
        return verdict

    def _check_headers(self, lines: list[bytes] | None, issues: list[Issue]) -> None:
        wanted = self.header_names
        found: dict[bytes, list[bytes]] = {}
        if lines:
            for i in range(0, len(lines), 4):
                name = lines[i].lower()
                if name in wanted:
                    found.setdefault(name, []).append(lines[i + 2].strip())
        cookies: dict[str, str] | None = None
        for p in self.header_params:
            if p.location == "header":
                values = found.get(p.key)
                value = None if values is None else b", ".join(values).decode("latin-1")
                self._check_param(p, value, issues)
            else:
                if cookies is None:
                    raw = found.get(b"cookie", [])
                    cookies = parse_cookies([v.decode("latin-1") for v in raw])
                self._check_param(p, cookies, issues)

    def _check_param(self, p: ParamCheck, source: Any, issues: list[Issue]) -> None:
        try:
            value = p.read(source)
        except StyleError as exc:
            issues.append(Issue(p.pointer, "style", str(exc)))
            return
        if value is MISSING:
            if p.required:
                where = {"query": "query parameter", "header": "header", "cookie": "cookie"}
                issues.append(
                    Issue(
                        p.pointer,
                        "required",
                        f"the {where.get(p.location, 'parameter')} '{p.name}' is required",
                    )
                )
            return
        if p.anything:
            return
        found = p.validator.check_value(value, p.pointer)
        if found:
            issues.extend(found)

    def _media(self, content_type: str | None) -> tuple[bool, BodyCheck | None]:
        if content_type is None:
            return False, None
        if content_type in self.bodies:
            found = self.bodies[content_type]
        else:
            for prefix, validator in self.wildcards:
                if content_type.startswith(prefix):
                    found = validator if is_json(content_type) else None
                    break
            else:
                return False, None
        if (
            found is not None
            and content_type not in self._clean
            and not isinstance(found, MultipartBody)  # no shared verdict: see head()
        ):
            if len(self._clean) > 64:
                self._clean.clear()  # wildcards: a client making up types must not grow it
            self._clean[content_type] = Verdict(self, [], found, content_type)
        return True, found

    def _unsupported(self, content_type: str | None, issues: list[Issue]) -> Verdict | None:
        accepted = ", ".join([*self.bodies, *(p + "*" if p else "*/*" for p, _ in self.wildcards)])
        given = f"'{content_type}'" if content_type else "no Content-Type"
        issue = Issue(
            "/header/Content-Type",
            "contentType",
            f"{given} is not accepted here; send one of: {accepted}",
            accepted,
        )
        verdict = Verdict(self, [issue, *issues], None)
        if not self.judge(verdict.issues):
            return None
        return verdict

    # -- deciding and answering ------------------------------------------------------------

    def judge(self, issues: list[Issue]) -> bool:
        """Count and (report mode) log an invalid request; True when it is to be refused."""
        self.invalid += 1
        for keyword in {issue.keyword for issue in issues}:
            self.rejected[keyword] = self.rejected.get(keyword, 0) + 1
        if self.enforce:
            return True
        now = time.monotonic()
        if now - self._last_log >= 1.0:
            shown = "; ".join(_loggable(f"{i.pointer}: {i.message}") for i in issues[:5])
            more = f" (+{self._suppressed} more requests)" if self._suppressed else ""
            log.warning(
                "invalid request to %s forwarded (report-only): %s%s", self.name, shown, more
            )
            self._last_log = now
            self._suppressed = 0
        else:
            self._suppressed += 1
        return False

    def response(self, issues: list[Issue], keep_alive: bool, head_only: bool) -> tuple[int, bytes]:
        if issues and issues[0].keyword == "contentType":
            status = 415
        elif all(i.keyword in _MALFORMED for i in issues):
            status = 400
        else:
            status = self.status
        count = len(issues)
        detail = (
            issues[0].message
            if count == 1
            else f"{count} problems with the request, the first: {issues[0].pointer}: {issues[0].message}"
        )
        headers: tuple[tuple[str, str], ...] = ()
        if status == 415:
            headers = (("Accept-Post", str(issues[0].expected)),)
        return status, problem(
            status,
            detail,
            title="Unsupported Media Type"
            if status == 415
            else "Request does not match the API contract",
            keep_alive=keep_alive,
            head_only=head_only,
            headers=headers,
            extra={"operation": self.name, "errors": [i.as_json() for i in issues]},
        )


def _at(where: str, fallback: Fallback) -> Fallback:
    return Fallback(f"{where} (schema {fallback.pointer})", fallback.keyword)


_MEDIA_TYPES: dict[bytes, str] = {}


def _media_type(content_type: bytes | None) -> str | None:
    """`application/json; charset=utf-8` as `application/json` (clients send few distinct ones)."""
    if content_type is None:
        return None
    known = _MEDIA_TYPES.get(content_type)
    if known is None:
        known = content_type.split(b";", 1)[0].strip().lower().decode("latin-1")
        if len(_MEDIA_TYPES) > 256:
            _MEDIA_TYPES.clear()  # a client making up new ones must not grow this
        _MEDIA_TYPES[content_type] = known
    return known


def compile_operation(
    spec: Spec,
    op: Operation,
    bundler: Bundler,
    *,
    mode: str = "on",
    status: int = 400,
    max_body: int = DEFAULT_MAX_BODY,
    name: str = "",
) -> OperationValidator:
    """Compile `op`'s parameters, JSON, URL-encoded and multipart form request bodies.
    Raises `DocumentError` for a bad `$ref`."""
    params: list[ParamCheck] = []
    unchecked: list[Fallback] = []
    library = bundler.library
    for p in op.parameters:
        bundled = bundler.bundle(p.schema, p.file or spec.source, join(p.pointer, "schema"))
        try:
            params.append(
                param_check(p, bundled, shared_validator(bundled, library), library, op.parameters)
            )
        except UnsupportedStyle as exc:
            # OpenAPI defines no such serialisation: said by `check`, not guessed at.
            unchecked.append(Fallback(p.pointer, f"not checked: {exc}"))
    bodies: dict[str, BodyCheck | None] = {}
    required = False
    body = op.request_body
    if isinstance(body, dict) and isinstance(body.get("content"), dict):
        required = body.get("required") is True
        file = op.request_body_file or op.file or spec.source
        here = join(op.request_body_pointer, "content")
        for media_type, media in body["content"].items():
            key = str(media_type).split(";", 1)[0].strip().lower()
            schema = media.get("schema") if isinstance(media, dict) else None
            if key == _FORM and schema is not None:
                bundled = bundler.bundle(schema, file, join(here, media_type, "schema"))
                defs = bundled.get("$defs", {}) if isinstance(bundled, dict) else {}
                encoding = media.get("encoding") if isinstance(media, dict) else None
                bodies[key] = FormBody(
                    shared_validator(bundled, library), bundled, encoding, defs_resolver(defs)
                )
                continue
            if key == MULTIPART and schema is not None:
                bundled = bundler.bundle(schema, file, join(here, media_type, "schema"))
                defs = bundled.get("$defs", {}) if isinstance(bundled, dict) else {}
                encoding = media.get("encoding") if isinstance(media, dict) else None
                bodies[key] = MultipartBody(
                    shared_validator(bundled, library), bundled, defs_resolver(defs), encoding
                )
                continue
            if not is_json(key) and not (key.endswith("/*") or key == "*/*"):
                bodies[key] = None  # taken as is: binaries, text
                continue
            if schema is None:
                bodies[key] = None
                continue
            bundled = bundler.bundle(schema, file, join(here, media_type, "schema"))
            bodies[key] = shared_validator(bundled, library)
    validator = OperationValidator(
        name or op.operation_id,
        params=params,
        bodies=bodies,
        body_required=required,
        mode=mode,
        status=status,
        max_body=max_body,
    )
    if unchecked:
        validator.unchecked = tuple(unchecked)
    return validator


def _loggable(text: str) -> str:
    """`text` for a log line: at most _LOGGED_ISSUE characters (cut with "..."), no
    control character, lone surrogates (undecodable bytes) as \\udcXX."""
    if len(text) > _LOGGED_ISSUE:
        text = text[: _LOGGED_ISSUE - 3] + "..."
    text = text.translate(_LOG_ESCAPES)
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text
