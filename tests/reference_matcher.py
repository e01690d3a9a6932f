"""A slow, obviously-correct reference for docs/routing.md.

The compiled router is a trie walked depth-first with backtracking. This file
is built the other way round on purpose, so that the two can not share a bug:

* every route is parsed into a flat list of static and parameter parts;
* a request is answered by enumerating *every* way *every* candidate route can
  consume the prepared path, writing down the doc's formal trace for each
  (`0` static, `1` parameter, `2` prefix rest per path character, then a final
  `0` or `2`), and taking the minimum over the routes that accept the method.

Nothing here is shared with `runmcp_fast`: the errors are its own classes and
the tests map them onto the router's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MAX_PARAMS",
    "RefMatch",
    "RefRoute",
    "RefRouteConflict",
    "RefRouter",
    "RefTemplateError",
    "decode_param",
    "normalise_host",
    "prepare_path",
]

MAX_PARAMS = 16

_HEX = frozenset(b"0123456789abcdefABCDEF")
# RFC 3986 unreserved: an escape of one of these is decoded by normalisation.
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# The doc's list of bytes that "may not appear raw": everything else (pchars,
# `/`, and also `[`, `]` which the doc does not list) is kept as it is.
_MUST_ESCAPE = frozenset([*range(0x20), 0x7F, *range(0x80, 0x100), *b' "<>\\^`{|}'])


class RefTemplateError(ValueError):
    """The reference refuses this template or host pattern."""


class RefRouteConflict(ValueError):
    """Same host table, method and template up to parameter names."""

    def __init__(self, existing: RefRoute, new: RefRoute) -> None:
        super().__init__(
            f"{new!r} and {existing!r}: same host, method and template up to parameter names"
        )
        self.existing = existing
        self.new = new


# --------------------------------------------------------------------------
# Path preparation (docs/routing.md, "Paths")


def _normalise(raw: bytes) -> str | None:
    """RFC 3986 section 6.2.2 with the doc's exact rules; None for a bad `%`."""
    out: list[str] = []
    i, n = 0, len(raw)
    while i < n:
        b = raw[i]
        if b == 0x25:  # "%"
            hx = raw[i + 1 : i + 3]
            if len(hx) != 2 or hx[0] not in _HEX or hx[1] not in _HEX:
                return None
            value = int(hx, 16)
            out.append(chr(value) if value in _UNRESERVED else "%" + hx.decode().upper())
            i += 3
        elif b in _MUST_ESCAPE:
            out.append(f"%{b:02X}")
            i += 1
        else:
            out.append(chr(b))
            i += 1
    return "".join(out)


def _to_bytes(value: str | bytes, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        # The doc does not say what a lone surrogate is; like the router, take
        # the bytes UTF-8 would give it (they decode back to U+FFFD).
        return value.encode("utf-8", "surrogatepass")
    raise TypeError(f"{what} must be str or bytes, not {type(value).__name__}")


def prepare_path(path: str | bytes) -> str | None:
    """The canonical path the routes are matched against, or None (no match)."""
    raw = _to_bytes(path, "path")
    for stop in (b"?", b"#"):
        # Cutting at each delimiter in turn cuts at the first of the two.
        raw = raw.split(stop, 1)[0]
    if not raw.startswith(b"/"):
        return None
    canonical = _normalise(raw)
    if canonical is None:
        return None
    if any(seg in (".", "..") for seg in canonical.split("/")):
        return None
    return canonical


def decode_param(canonical: str) -> str:
    """Percent-decode a slice of a canonical path as UTF-8 (bad bytes: U+FFFD)."""
    raw = bytearray()
    i = 0
    while i < len(canonical):
        ch = canonical[i]
        hx = canonical[i + 1 : i + 3]
        if ch == "%" and len(hx) == 2 and all(c in "0123456789ABCDEFabcdef" for c in hx):
            raw.append(int(hx, 16))
            i += 3
        else:
            # A parameter may end inside an escape (`/{x}2F` on `/a%2F`): the
            # stray `%` is then just a character.
            raw += ch.encode("utf-8")
            i += 1
    return raw.decode("utf-8", errors="replace")


# --------------------------------------------------------------------------
# Hosts (docs/routing.md, "Hosts")


def _ascii_lower(text: str) -> str:
    # Host names are ASCII on the wire; str.lower() would also fold e.g. the
    # Kelvin sign into "k", which no HTTP stack does.
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)


def normalise_host(host: str | bytes | None) -> str | None:
    """Lower-case, without `:port` and without a trailing dot."""
    if host is None:
        return None
    if isinstance(host, bytes):
        host = host.decode("latin-1")
    elif not isinstance(host, str):
        raise TypeError(f"host must be str, bytes or None, not {type(host).__name__}")
    host = _ascii_lower(host.strip(" \t"))  # HTTP's optional white space only
    if host.startswith("["):
        end = host.find("]")
        if end >= 0:
            host = host[: end + 1]
    else:
        # RFC 3986: port = *DIGIT. Anything else after a `:` is not a port
        # (and such a host then matches no table).
        name, colon, port = host.partition(":")
        if colon and ":" not in port and ((port.isascii() and port.isdigit()) or not port):
            host = name
    return host.removesuffix(".")


@dataclass(frozen=True)
class _HostPattern:
    labels: tuple[str | None, ...]  # None: a wildcard label
    names: tuple[str | None, ...]  # the `{name}` of each wildcard label, if any

    @property
    def is_exact(self) -> bool:
        return None not in self.labels

    @property
    def text(self) -> str:
        """The table's key: wildcards written `*` whatever their name."""
        return ".".join("*" if label is None else label for label in self.labels)

    def match(self, host: str) -> dict[str, str] | None:
        parts = host.split(".")
        if len(parts) != len(self.labels):
            return None
        params: dict[str, str] = {}
        for part, label, name in zip(parts, self.labels, self.names, strict=True):
            if label is None:
                if not part:
                    return None
                if name is not None:
                    params[name] = part
            elif part != label:
                return None
        return params


def _parse_host(pattern: str) -> _HostPattern:
    if not isinstance(pattern, str):
        raise TypeError("host must be str or None")
    labels: list[str | None] = []
    names: list[str | None] = []
    for label in pattern.removesuffix(".").split("."):
        if label == "*":
            labels.append(None)
            names.append(None)
        elif label.startswith("{") and label.endswith("}"):
            name = label[1:-1]
            if not name or "{" in name or "}" in name or name in names:
                raise RefTemplateError(f"host pattern {pattern!r}: bad label {label!r}")
            labels.append(None)
            names.append(name)
        elif not label or any(c in label for c in "{}*"):
            raise RefTemplateError(f"host pattern {pattern!r}: bad label {label!r}")
        else:
            labels.append(_ascii_lower(label))
            names.append(None)
    return _HostPattern(tuple(labels), tuple(names))


# --------------------------------------------------------------------------
# Templates (docs/routing.md, "Templates")

_Part = tuple[str, str]  # ("s", canonical static text) or ("p", parameter name)


@dataclass(eq=False)
class RefRoute:
    method: str
    template: str
    host: str | None
    target: Any
    parts: tuple[_Part, ...]
    is_prefix: bool
    rest_name: str | None  # the `name` of a `/{name*}` prefix route
    host_pattern: _HostPattern | None
    # Two routes with equal keys are the same position of the same table.
    key: tuple[str | None, str, str, bool] = field(init=False)
    # Number of `/` in the template's body: a non-prefix route only ever
    # matches a path with exactly as many (a parameter never holds one).
    slashes: int = field(init=False)

    def __post_init__(self) -> None:
        skeleton = "".join(text if kind == "s" else "{}" for kind, text in self.parts)
        table = None if self.host_pattern is None else self.host_pattern.text
        self.key = (table, self.method, skeleton, self.is_prefix)
        self.slashes = skeleton.count("/")

    @property
    def param_names(self) -> tuple[str, ...]:
        names = [text for kind, text in self.parts if kind == "p"]
        if self.rest_name is not None:
            names.append(self.rest_name)
        return tuple(names)

    def __repr__(self) -> str:
        return f"<route {self.method} {self.template!r} host={self.host!r} -> {self.target!r}>"

    def traces(self, path: str) -> Iterator[tuple[str, dict[str, str]]]:
        """Every way this route matches `path`: (trace, raw canonical params)."""
        yield from self._walk(path, 0, 0)

    def _walk(self, path: str, i: int, pos: int) -> Iterator[tuple[str, dict[str, str]]]:
        n = len(path)
        if i == len(self.parts):
            if not self.is_prefix:
                if pos == n:
                    yield "0", {}
            elif pos == n or path[pos] == "/":
                # The `/` before the rest counts as rest: with `0` there,
                # `/a/*` and `/a//*` would tie on `/a/`, and the doc says
                # equal traces mean the same route position.
                rest = {} if self.rest_name is None else {self.rest_name: path[pos + 1 :]}
                yield "2" * (n - pos) + "2", rest
            return
        kind, text = self.parts[i]
        if kind == "s":
            if path.startswith(text, pos):
                for trace, params in self._walk(path, i + 1, pos + len(text)):
                    yield "0" * len(text) + trace, params
            return
        # A parameter: every non-empty run of characters without `/`.
        end = pos
        while end < n and path[end] != "/":
            end += 1
            for trace, params in self._walk(path, i + 1, end):
                yield "1" * (end - pos) + trace, {text: path[pos:end], **params}


def _canonical_static(text: str, template: str) -> str:
    raw = text.encode("utf-8", "surrogatepass")
    if b"?" in raw or b"#" in raw:
        # Not in the doc: no path can hold them once the query is cut.
        raise RefTemplateError(f"template {template!r}: holds '?' or '#'")
    canonical = _normalise(raw)
    if canonical is None:
        raise RefTemplateError(f"template {template!r}: has a bad percent-escape")
    return canonical


def parse_template(template: str) -> tuple[tuple[_Part, ...], bool, str | None]:
    """(parts, is_prefix, rest_name); raises RefTemplateError."""
    if not isinstance(template, str):
        raise TypeError("template must be str")
    if not template.startswith("/"):
        raise RefTemplateError(f"template {template!r}: does not start with '/'")
    body, _, last = template.rpartition("/")
    is_prefix, rest_name = False, None
    if last == "*":
        is_prefix = True
    elif last.startswith("{") and last.endswith("*}") and not any(c in last[1:-2] for c in "{}"):
        is_prefix, rest_name = True, last[1:-2]
        if not rest_name:
            raise RefTemplateError(f"template {template!r}: has an empty parameter")
    else:
        body = template

    parts: list[_Part] = []
    static: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "}":
            raise RefTemplateError(f"template {template!r}: has unbalanced braces")
        if ch != "{":
            static.append(ch)
            i += 1
            continue
        close = body.find("}", i + 1)
        name = body[i + 1 : close]
        if close < 0 or "{" in name:
            raise RefTemplateError(f"template {template!r}: has unbalanced braces")
        if not name:
            raise RefTemplateError(f"template {template!r}: has an empty parameter")
        if "/" in name:
            raise RefTemplateError(f"template {template!r}: '/' in a parameter name")
        if name.endswith("*"):  # only the final /{name*} may end in '*'
            raise RefTemplateError(f"template {template!r}: '*' ends a parameter name")
        if static:
            parts.append(("s", _canonical_static("".join(static), template)))
            static = []
        elif parts and parts[-1][0] == "p":
            raise RefTemplateError(f"template {template!r}: two parameters touch")
        parts.append(("p", name))
        i = close + 1
    if static:
        parts.append(("s", _canonical_static("".join(static), template)))

    names = [text for kind, text in parts if kind == "p"]
    if rest_name is not None:
        names.append(rest_name)
    if len(set(names)) != len(names):
        raise RefTemplateError(f"template {template!r}: repeats a parameter name")
    if len(names) > MAX_PARAMS:
        raise RefTemplateError(f"template {template!r}: has more than {MAX_PARAMS} parameters")
    # A segment that is `.` or `..` once canonical (so also `%2e`); parameters
    # are replaced by a character no canonical static text can hold.
    skeleton = "".join(text if kind == "s" else "\x00" for kind, text in parts)
    if any(seg in (".", "..") for seg in skeleton.split("/")):
        raise RefTemplateError(f"template {template!r}: has a dot segment")
    return tuple(parts), is_prefix, rest_name


# --------------------------------------------------------------------------
# The router


@dataclass(frozen=True)
class RefMatch:
    route: RefRoute
    trace: str
    params: dict[str, str]
    host_params: dict[str, str]

    @property
    def target(self) -> Any:
        return self.route.target

    @property
    def template(self) -> str:
        return self.route.template


def _method_rank(route_method: str, method: str) -> int | None:
    """docs/routing.md, "Methods": the method, then GET for HEAD, then `*`."""
    if route_method == method:
        return 0
    if method == "HEAD" and route_method == "GET":
        return 1
    if route_method == "*":
        return 2
    return None


class RefRouter:
    """The API of `runmcp_fast.router.Router`: add, compile, match, allowed."""

    def __init__(self) -> None:
        self._routes: list[RefRoute] = []
        self._keys: dict[tuple[str | None, str, str, bool], RefRoute] = {}
        # Built by compile(): table key (None: the default table) -> pattern.
        self._patterns: dict[str, _HostPattern] = {}
        # (table, slash count) -> routes; a pure speed-up, see RefRoute.slashes.
        self._by_slashes: dict[tuple[str | None, int], list[RefRoute]] = {}
        self._prefix: dict[str | None, list[RefRoute]] = {}
        self._dirty = False

    def __len__(self) -> int:
        return len(self._routes)

    def routes(self) -> list[RefRoute]:
        return list(self._routes)

    def add(self, method: str, template: str, target: Any, host: str | None = None) -> RefRoute:
        parts, is_prefix, rest_name = parse_template(template)
        pattern = None if host is None else _parse_host(host)
        route = RefRoute(method, template, host, target, parts, is_prefix, rest_name, pattern)
        existing = self._keys.get(route.key)
        if existing is not None:
            raise RefRouteConflict(existing, route)
        self._keys[route.key] = route
        self._routes.append(route)
        self._dirty = True
        return route

    def compile(self) -> None:
        self._dirty = False
        self._patterns.clear()
        self._by_slashes.clear()
        self._prefix.clear()
        for route in self._routes:
            table = route.key[0]
            if route.host_pattern is not None:
                self._patterns[route.host_pattern.text] = route.host_pattern
            if route.is_prefix:
                self._prefix.setdefault(table, []).append(route)
            else:
                self._by_slashes.setdefault((table, route.slashes), []).append(route)

    # ---- requests

    def _table_order(self, host: str | bytes | None) -> list[tuple[str | None, str]]:
        """[(table key, normalised host)] from the most specific table."""
        if self._dirty:
            self.compile()
        name = normalise_host(host)
        order: list[tuple[str | None, str]] = []
        if name is not None:
            if name in self._patterns and self._patterns[name].is_exact:
                order.append((name, name))
            wild = [
                p for p in self._patterns.values() if not p.is_exact and p.match(name) is not None
            ]
            wild.sort(
                key=lambda p: (
                    -sum(label is not None for label in p.labels),
                    -len(p.labels),
                    p.text,
                )
            )
            order.extend((p.text, name) for p in wild)
        order.append((None, name or ""))
        return order

    def _candidates(self, table: str | None, path: str) -> list[RefRoute]:
        return self._by_slashes.get((table, path.count("/")), []) + self._prefix.get(table, [])

    def match(
        self, host: str | bytes | None, method: str | bytes, path: str | bytes
    ) -> RefMatch | None:
        if isinstance(method, bytes):
            method = method.decode("latin-1")
        elif not isinstance(method, str):
            raise TypeError("method must be str or bytes")
        tables = self._table_order(host)
        canonical = prepare_path(path)
        if canonical is None:
            return None
        for table, host_name in tables:
            best: tuple[str, int, RefRoute, dict[str, str]] | None = None
            for route in self._candidates(table, canonical):
                rank = _method_rank(route.method, method)
                if rank is None:
                    continue
                for trace, params in route.traces(canonical):
                    if best is None or (trace, rank) < best[:2]:
                        best = (trace, rank, route, params)
                    elif (trace, rank) == best[:2] and route is not best[2]:
                        # The doc: equal traces are the same route position,
                        # where one method has one route (else a conflict).
                        raise AssertionError(f"{route!r} ties with {best[2]!r} on {trace}")
            if best is not None:
                trace, _, route, params = best
                pattern = route.host_pattern
                host_params = {} if pattern is None else pattern.match(host_name)
                assert host_params is not None
                decoded = {k: decode_param(v) for k, v in params.items()}
                return RefMatch(route, trace, decoded, host_params)
        return None

    def allowed(self, host: str | bytes | None, path: str | bytes) -> tuple[str, ...]:
        tables = self._table_order(host)
        canonical = prepare_path(path)
        if canonical is None:
            return ()
        methods: set[str] = set()
        for table, _ in tables:
            for route in self._candidates(table, canonical):
                if next(route.traces(canonical), None) is not None:
                    methods.add(route.method)
        if "GET" in methods:
            methods.add("HEAD")
        return tuple(sorted(methods))
