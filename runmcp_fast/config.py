"""The gateway's config model (msgspec Structs) and the YAML/JSON file loader.

Every problem names the file and the JSON pointer of the key at fault, with a
hint; a bad file raises `ConfigError` and never yields a half-read config.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
from collections.abc import Hashable
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec
import msgspec.inspect
import yaml

from runmcp_fast.openapi.errors import Problem, describe


class ConfigError(Exception):
    """A config that can not be used; `problems` lists every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class _Model(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    pass


class TlsConfig(_Model, frozen=True):
    """Serve TLS on a listener: PEM files, relative to the config file."""

    cert: str
    key: str


class ListenerConfig(_Model, frozen=True):
    """Where the gateway accepts clients.

    `address` is `HOST:PORT` (`[::1]:8080` for IPv6; port 0 picks a free one)
    or `unix:/path/to.sock`.
    """

    address: str
    tls: TlsConfig | None = None


class LimitsConfig(_Model, frozen=True):
    """Client-side limits; the status each one answers is in the comment."""

    max_url_bytes: int = 8 * 1024  # 414
    max_header_bytes: int = 16 * 1024  # 431 (all header lines together)
    max_headers: int = 100  # 431
    max_body_bytes: int = 16 * 1024 * 1024  # 413, per service overridable
    header_timeout: float = 10.0  # 408 and close (slowloris)
    body_timeout: float = 30.0  # 408 and close; between two reads of the body
    keepalive_timeout: float = 75.0  # idle keep-alive connections are closed
    max_connections: int = 10_000  # past this, 503 and close
    drain_timeout: float = 10.0  # graceful shutdown waits this long for in-flight requests


class PoolConfig(_Model, frozen=True):
    """The keep-alive pool kept per upstream target."""

    max_connections: int = 1024
    # As many idle as open: an idle socket costs an fd and under 1 KB, while
    # closing one that is needed again a moment later costs a connect (the
    # pool churned at 256 clients with 128 kept: 12 % of requests reconnected).
    max_idle: int = 1024
    idle_timeout: float = 60.0
    max_requests: int = 10_000  # a connection is retired after this many requests
    wait_timeout: float = 5.0  # 503 when no connection frees up in time
    connect_timeout: float = 5.0  # 504
    read_timeout: float = 60.0  # 504 before the response head; abort after


class ServiceConfig(_Model, frozen=True):
    """One upstream service and how clients reach it.

    With `openapi`, its routes come from the spec (under the spec's base path,
    or `base_path`); without, `prefix` routes everything under it. `host` is
    a router host pattern (`api.example.com`, `*.example.com`,
    `{tenant}.example.com`); none means any Host.
    """

    name: str
    upstream: str
    openapi: str | None = None
    base_path: str | None = None
    prefix: str | None = None
    host: str | None = None
    # "pass": the client's Host goes upstream; "upstream": the upstream URL's host.
    host_header: Literal["pass", "upstream"] = "pass"
    # Removed from the front of the path before the upstream URL's own path is prepended.
    strip_prefix: str | None = None
    max_body_bytes: int | None = None
    connect_timeout: float | None = None
    read_timeout: float | None = None


class GatewayConfig(_Model, frozen=True):
    listeners: list[ListenerConfig]
    services: list[ServiceConfig] = []
    limits: LimitsConfig = LimitsConfig()
    pool: PoolConfig = PoolConfig()
    access_log: bool = False
    # Relative spec and TLS paths resolve against this directory (the config file's).
    base_dir: str = "."


class Upstream(msgspec.Struct, frozen=True):
    """A parsed upstream URL."""

    scheme: str
    host: str
    port: int
    path: str  # no trailing slash; "" for the root

    @property
    def authority(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def parse_upstream(url: str) -> Upstream:
    """`http://host:port/path` to an `Upstream`; ValueError says what is wrong."""
    if not url.isascii() or any(c.isspace() or not c.isprintable() for c in url):
        raise ValueError(
            f"{url!r}: an upstream URL is ASCII without spaces or control characters"
            " (percent-encode the path; write a host name in its xn-- form)"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # a bad port, a bad [IPv6] host
        raise ValueError(f"{url!r}: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{url!r}: the scheme must be http or https")
    if not parts.hostname:
        raise ValueError(f"{url!r}: no host")
    if "@" in parts.netloc:
        raise ValueError(f"{url!r}: credentials in an upstream URL are not supported")
    if "[" in parts.netloc:
        try:
            ipaddress.IPv6Address(parts.hostname)
        except ValueError:
            raise ValueError(f"{url!r}: {parts.hostname!r} is not an IPv6 address") from None
    elif _HOST_NAME.fullmatch(parts.hostname) is None:
        raise ValueError(f"{url!r}: {parts.hostname!r} is not a host name or IP address")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise ValueError(f"{url!r}: an upstream URL has no query or fragment")
    if port == 0:
        raise ValueError(f"{url!r}: port 0 can not be connected to")
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return Upstream(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))


# Letters, digits, dots, hyphens (and underscores, which container names use).
_HOST_NAME = re.compile(r"[A-Za-z0-9._-]+")
_ADDRESS = re.compile(r"(?:\[(?P<v6>[^\]]*)\]|(?P<host>[^:\[\]]*)):(?P<port>[0-9]{1,5})")


def parse_address(address: str) -> tuple[str, int] | str:
    """`HOST:PORT` to (host, port), `unix:PATH` to PATH; ValueError otherwise.

    An empty HOST (`:8080`) is every IPv4 interface, `0.0.0.0`.
    """
    if address.startswith("unix:"):
        path = address[5:]
        if not path:
            raise ValueError(f"{address!r}: no socket path after 'unix:'")
        if "\0" in path:
            raise ValueError(f"{address!r}: a socket path has no NUL character")
        return path
    found = _ADDRESS.fullmatch(address)
    if found is None:
        raise ValueError(f"{address!r}: expected HOST:PORT, [IPv6]:PORT or unix:/path")
    port = int(found["port"])
    if port > 65535:
        raise ValueError(f"{address!r}: port {port} is out of range")
    v6 = found["v6"]
    if v6 is not None:
        try:
            ipaddress.IPv6Address(v6)
        except ValueError:
            raise ValueError(f"{address!r}: {v6!r} is not an IPv6 address") from None
        return v6, port
    host = found["host"]
    if not host:
        return "0.0.0.0", port
    if _HOST_NAME.fullmatch(host) is None:
        raise ValueError(
            f"{address!r}: {host!r} is not a host name or IPv4 address"
            " (0.0.0.0 is every IPv4 interface, [::] every IPv6 one)"
        )
    if host.replace(".", "").isdigit():
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"{address!r}: {host!r} is not an IPv4 address") from None
    return host, port


class _Loader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping.

    PyYAML keeps the last of two equal keys: a second `upstream:` in a service
    would silently win. Merge keys (`<<: *defaults`) still override as YAML says.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if first is not key_node:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"found the key {key!r} twice (first at line {first.start_mark.line + 1})",
                    key_node.start_mark,
                    "keep one of them",
                )
        return super().construct_mapping(node, deep)


def load_config(path: str | os.PathLike[str]) -> GatewayConfig:
    """Read a YAML or JSON config file and check it; ConfigError lists every problem."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem(source, "", f"can not read: {exc.strerror}", "")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [Problem(source, "", f"not UTF-8 text (byte {exc.start})", "save the file as UTF-8")]
        ) from None
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(source, exc)]) from None
    if isinstance(data, dict) and "base_dir" in data:
        raise ConfigError(
            [
                Problem(
                    source,
                    "/base_dir",
                    "unknown key 'base_dir'",
                    "relative paths already resolve against the config file's directory",
                )
            ]
        )
    base_dir = str(Path(path).resolve().parent)
    return config_from_data(data, source=source, base_dir=base_dir)


def _yaml_problem(source: str, exc: yaml.YAMLError) -> Problem:
    hint = "fix the syntax"
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        what = exc.problem or "syntax error"
        if exc.context:
            what = f"{what} ({exc.context})"
        message = f"not valid YAML at line {mark.line + 1}, column {mark.column + 1}: {what}"
        hint = exc.note or hint
    else:
        message = f"not valid YAML: {exc}"
    return Problem(source, "", message, hint)


def config_from_data(data: Any, *, source: str = "<config>", base_dir: str = ".") -> GatewayConfig:
    """Check already-parsed config data (a dict) and build the model."""
    if not isinstance(data, dict):
        raise ConfigError(
            [
                Problem(
                    source,
                    "",
                    f"the config must be a mapping, not {describe(data)}",
                    "start with listeners:",
                )
            ]
        )
    bad_key = _non_string_key(data, "")
    if bad_key is not None:
        pointer, key = bad_key
        raise ConfigError(
            [
                Problem(
                    source, pointer, f"the key {key!r} is not a string", "quote it, or fix the key"
                )
            ]
        )
    data = {**data, "base_dir": base_dir}
    try:
        config = msgspec.convert(data, GatewayConfig, strict=True)
    except msgspec.ValidationError as exc:
        raise ConfigError([_validation_problem(source, str(exc))]) from None
    problems = check_config(config, source)
    if problems:
        raise ConfigError(problems)
    return config


_HINT = "see `runmcp-fast serve --help` and examples/gateway.yaml"


def _non_string_key(value: Any, pointer: str) -> tuple[str, object] | None:
    """The first key that is not a string (YAML reads `1:`, `yes:`, `null:` as others)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return pointer, key
            found = _non_string_key(item, f"{pointer}/{_escape(key)}")
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _non_string_key(item, f"{pointer}/{index}")
            if found is not None:
                return found
    return None


# Limits that make no sense past a bound: (attribute, lowest value, whether the
# bound itself is allowed). A timeout of 0 would fire at once; NaN and infinity
# are refused too.
_NUMBER_RULES: dict[type[_Model], tuple[tuple[str, float, bool], ...]] = {
    LimitsConfig: (
        ("max_url_bytes", 1, True),
        ("max_header_bytes", 1, True),
        ("max_headers", 1, True),
        ("max_body_bytes", 0, True),
        ("header_timeout", 0, False),
        ("body_timeout", 0, False),
        ("keepalive_timeout", 0, True),
        ("max_connections", 1, True),
        ("drain_timeout", 0, True),
    ),
    PoolConfig: (
        ("max_connections", 1, True),
        ("max_idle", 0, True),
        ("idle_timeout", 0, False),
        ("max_requests", 1, True),
        ("wait_timeout", 0, True),
        ("connect_timeout", 0, False),
        ("read_timeout", 0, False),
    ),
    ServiceConfig: (
        ("max_body_bytes", 0, True),
        ("connect_timeout", 0, False),
        ("read_timeout", 0, False),
    ),
}


def _check_numbers(model: _Model, source: str, where: str, problems: list[Problem]) -> None:
    for name, low, inclusive in _NUMBER_RULES[type(model)]:
        value = getattr(model, name)
        if value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(Problem(source, f"{where}/{name}", f"{value!r} is not a finite number"))
        elif not (value >= low if inclusive else value > low):
            bound = f">= {low}" if inclusive else f"> {low}"
            problems.append(Problem(source, f"{where}/{name}", f"{value!r} must be {bound}"))


def check_config(config: GatewayConfig, source: str) -> list[Problem]:
    """The checks a type can not express: addresses, URLs, unique names, ranges."""
    problems: list[Problem] = []
    if not config.listeners:
        problems.append(
            Problem(source, "/listeners", "no listener", "add one: address: 127.0.0.1:8080")
        )
    bound: dict[tuple[str, int] | str, int] = {}
    for i, listener in enumerate(config.listeners):
        try:
            address = parse_address(listener.address)
        except ValueError as exc:
            problems.append(Problem(source, f"/listeners/{i}/address", str(exc), ""))
            continue
        if isinstance(address, tuple) and address[1] == 0:
            continue  # each port 0 is a different free port
        if address in bound:
            problems.append(
                Problem(
                    source,
                    f"/listeners/{i}/address",
                    f"{listener.address!r} is also /listeners/{bound[address]}",
                    "listen on each address once",
                )
            )
        bound.setdefault(address, i)
    _check_numbers(config.limits, source, "/limits", problems)
    _check_numbers(config.pool, source, "/pool", problems)
    names: dict[str, int] = {}
    for i, service in enumerate(config.services):
        where = f"/services/{i}"
        if not service.name.strip():
            problems.append(
                Problem(source, f"{where}/name", "the name is empty", "name the service")
            )
        elif service.name in names:
            problems.append(
                Problem(
                    source,
                    f"{where}/name",
                    f"duplicate service name {service.name!r} (also /services/{names[service.name]})",
                    "give each service its own name",
                )
            )
        names.setdefault(service.name, i)
        try:
            parse_upstream(service.upstream)
        except ValueError as exc:
            problems.append(
                Problem(source, f"{where}/upstream", str(exc), "e.g. http://127.0.0.1:8081")
            )
        if service.openapi is None and service.prefix is None:
            problems.append(
                Problem(source, where, "neither openapi nor prefix", "give a spec, or prefix: /")
            )
        if service.openapi is None and service.base_path is not None:
            problems.append(
                Problem(
                    source,
                    f"{where}/base_path",
                    "base_path applies to a spec's routes, and the service has no openapi",
                    "route a service without a spec with prefix:",
                )
            )
        for key in ("prefix", "base_path", "strip_prefix"):
            value = getattr(service, key)
            if value is None:
                continue
            if not value.startswith("/"):
                problems.append(
                    Problem(source, f"{where}/{key}", f"{value!r} must start with '/'", "")
                )
            elif not value.isascii() or not value.isprintable() or " " in value:
                problems.append(
                    Problem(
                        source,
                        f"{where}/{key}",
                        f"{value!r} is not a path as clients send it",
                        "percent-encode spaces and non-ASCII characters",
                    )
                )
        _check_numbers(service, source, where, problems)
    return problems


_PATH_PART = re.compile(r"\.(\w+)|\[(\d+)\]")
_UNKNOWN_FIELD = re.compile(r"Object contains unknown field `(?P<name>.*)`", re.DOTALL)
_MISSING_FIELD = re.compile(r"Object missing required field `(?P<name>.*)`", re.DOTALL)


def _split_validation_error(text: str) -> tuple[str, str]:
    """msgspec's "Expected `int`, got `str` - at `$.a[0].b`" to (message, "/a/0/b")."""
    message, sep, where = text.rpartition(" - at `")
    if not sep:
        return text, ""
    path = where.rstrip("`")
    pointer = "".join("/" + (name or index) for name, index in _PATH_PART.findall(path))
    return message, pointer


def _validation_problem(source: str, text: str) -> Problem:
    """A msgspec error in the words of the config: an unknown key is pointed at itself."""
    message, pointer = _split_validation_error(text)
    hint = _HINT
    unknown = _UNKNOWN_FIELD.fullmatch(message)
    missing = _MISSING_FIELD.fullmatch(message)
    if unknown is not None:
        name = unknown["name"]
        known = _keys_at(pointer)
        pointer = f"{pointer}/{_escape(name)}"
        message = f"unknown key {name!r}"
        close = difflib.get_close_matches(name, known, n=1)
        if close:
            hint = f"did you mean {close[0]!r}?"
        elif known:
            hint = f"the keys here: {', '.join(known)}"
    elif missing is not None:
        message = f"missing required key {missing['name']!r}"
        hint = ""
    return Problem(source, pointer, message, hint)


def _keys_at(pointer: str) -> list[str]:
    """The keys the model allows at `pointer` (a mapping of the config)."""
    node: msgspec.inspect.Type | None = msgspec.inspect.type_info(GatewayConfig)
    for part in pointer.split("/")[1:]:
        node = _struct_or_list(node)
        if isinstance(node, msgspec.inspect.StructType):
            node = next((f.type for f in node.fields if f.encode_name == part), None)
        elif isinstance(node, msgspec.inspect.ListType):
            node = node.item_type
        else:
            return []
    node = _struct_or_list(node)
    if not isinstance(node, msgspec.inspect.StructType):
        return []
    # base_dir is set by the loader, not written in the file.
    return [f.encode_name for f in node.fields if f.encode_name != "base_dir"]


def _struct_or_list(node: msgspec.inspect.Type | None) -> msgspec.inspect.Type | None:
    """`X | None` to `X`."""
    if isinstance(node, msgspec.inspect.UnionType):
        kinds = [t for t in node.types if not isinstance(t, msgspec.inspect.NoneType)]
        return kinds[0] if len(kinds) == 1 else node
    return node


def _escape(key: str) -> str:
    """A key as one RFC 6901 pointer segment."""
    return key.replace("~", "~0").replace("/", "~1")
