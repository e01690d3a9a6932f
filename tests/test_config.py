"""The gateway's config (`runmcp_fast.config`): the model, the loader, and the
problems a bad file gets, each naming the file and the JSON pointer at fault."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from runmcp_fast.config import (
    ConfigError,
    GatewayConfig,
    LimitsConfig,
    ListenerConfig,
    PoolConfig,
    ServiceConfig,
    TlsConfig,
    Upstream,
    check_config,
    config_from_data,
    load_config,
    parse_address,
    parse_upstream,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "gateway.yaml"

VALID: dict[str, Any] = {
    "listeners": [{"address": "127.0.0.1:8080"}],
    "services": [
        {"name": "petstore", "upstream": "http://127.0.0.1:8081", "openapi": "petstore.yaml"}
    ],
}


def changed(**top: Any) -> dict[str, Any]:
    """VALID with top-level keys replaced; a value of `...` removes the key."""
    data = copy.deepcopy(VALID)
    for key, value in top.items():
        if value is ...:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def service(**changes: Any) -> dict[str, Any]:
    """VALID with its one service changed; a value of `...` removes the key."""
    svc = dict(VALID["services"][0])
    for key, value in changes.items():
        if value is ...:
            svc.pop(key, None)
        else:
            svc[key] = value
    return changed(services=[svc])


def listen(*addresses: str) -> dict[str, Any]:
    return changed(listeners=[{"address": a} for a in addresses])


def write(tmp_path: Path, content: dict[str, Any] | str | bytes) -> Path:
    path = tmp_path / "gateway.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    else:
        path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def problems_of(path: Path) -> list[tuple[str, str, str, str]]:
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    return [(p.file, p.pointer, p.message, p.hint) for p in raised.value.problems]


# --- a good config --------------------------------------------------------------

FULL = """\
listeners:
  - address: 127.0.0.1:8080
  - address: "[::1]:8443"
    tls: {cert: certs/gw.pem, key: certs/gw-key.pem}
  - address: unix:/tmp/gw.sock
services:
  - name: petstore
    upstream: http://127.0.0.1:8081
    openapi: specs/petstore.yaml
    base_path: /pets/v1
    host: "{tenant}.example.com"
    host_header: upstream
    strip_prefix: /pets
    max_body_bytes: 0
    connect_timeout: 1
    read_timeout: 2.5
  - name: legacy
    upstream: https://legacy.internal:8443/api/
    prefix: /legacy
limits:
  max_headers: 50
  header_timeout: 5
  keepalive_timeout: 0
pool:
  max_idle: 0
  wait_timeout: 0
access_log: true
"""


def test_a_full_config_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL))
    assert config.listeners == [
        ListenerConfig(address="127.0.0.1:8080"),
        ListenerConfig(
            address="[::1]:8443", tls=TlsConfig(cert="certs/gw.pem", key="certs/gw-key.pem")
        ),
        ListenerConfig(address="unix:/tmp/gw.sock"),
    ]
    petstore, legacy = config.services
    assert petstore == ServiceConfig(
        name="petstore",
        upstream="http://127.0.0.1:8081",
        openapi="specs/petstore.yaml",
        base_path="/pets/v1",
        host="{tenant}.example.com",
        host_header="upstream",
        strip_prefix="/pets",
        max_body_bytes=0,
        connect_timeout=1.0,
        read_timeout=2.5,
    )
    assert isinstance(petstore.connect_timeout, float)  # an int in YAML, a float in the model
    assert legacy.openapi is None
    assert legacy.host_header == "pass"
    assert parse_upstream(legacy.upstream) == Upstream("https", "legacy.internal", 8443, "/api")
    assert config.limits == LimitsConfig(max_headers=50, header_timeout=5.0, keepalive_timeout=0.0)
    assert config.pool == PoolConfig(max_idle=0, wait_timeout=0.0)
    assert config.access_log is True
    # Relative paths resolve against the config file's directory.
    assert config.base_dir == str(tmp_path.resolve())


def test_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "listeners: [{address: ':8080'}]\n"))
    assert config.services == []
    assert config.limits == LimitsConfig()
    assert config.pool == PoolConfig()
    assert config.access_log is False
    assert parse_address(config.listeners[0].address) == ("0.0.0.0", 8080)


def test_json_is_yaml_too(tmp_path: Path) -> None:
    path = tmp_path / "gateway.json"
    path.write_text(msgspec.json.encode(VALID).decode())
    assert load_config(path).services[0].name == "petstore"


def test_the_model_is_frozen() -> None:
    config = config_from_data(VALID)
    with pytest.raises(AttributeError):
        config.access_log = True  # type: ignore[misc]
    with pytest.raises(AttributeError):
        config.limits.max_headers = 1  # type: ignore[misc]


def test_config_from_data_takes_base_dir_from_the_caller() -> None:
    config = config_from_data({**VALID, "base_dir": "/elsewhere"}, base_dir="/here")
    assert config.base_dir == "/here"


# --- bad configs: (content, pointer, a fragment of the message) ------------------

BAD: list[Any] = [
    # YAML itself
    pytest.param(
        "listeners:\n  - address: 127.0.0.1:8080\n services: []\n",
        "",
        "not valid YAML at line 3, column 2",
        id="yaml-indentation",
    ),
    pytest.param("listeners: [\n", "", "not valid YAML at line 2", id="yaml-unclosed"),
    pytest.param(
        "listeners: []\nservices: []\nlisteners:\n  - address: 127.0.0.1:8080\n",
        "",
        "not valid YAML at line 3, column 1: found the key 'listeners' twice (first at line 1)",
        id="yaml-duplicate-key",
    ),
    pytest.param(
        "listeners: [{address: ':1'}]\nservices:\n  - name: a\n    upstream: http://h\n"
        "    prefix: /\n    upstream: http://evil\n",
        "",
        "line 6, column 5: found the key 'upstream' twice (first at line 4)",
        id="yaml-duplicate-nested-key",
    ),
    pytest.param(b"listeners: []\n# caf\xe9\n", "", "not UTF-8 text (byte 19)", id="not-utf8"),
    pytest.param("", "", "the config must be a mapping, not null", id="empty-file"),
    pytest.param("- a\n- b\n", "", "the config must be a mapping, not a list", id="a-list"),
    pytest.param(
        "listeners: [{address: ':1'}]\n1: one\n", "", "the key 1 is not a string", id="int-key"
    ),
    pytest.param(
        "listeners: [{address: ':1'}]\nservices:\n  - {name: a, upstream: http://h, yes: 1}\n",
        "/services/0",
        "the key True is not a string",
        id="bool-key",
    ),
    # Unknown keys point at themselves.
    pytest.param(changed(listners=[]), "/listners", "unknown key 'listners'", id="unknown-top"),
    pytest.param(service(upstrem="x"), "/services/0/upstrem", "unknown key", id="unknown-nested"),
    pytest.param(
        changed(listeners=[{"address": ":1", "tls": {"cert": "c", "key": "k", "ca": "x"}}]),
        "/listeners/0/tls/ca",
        "unknown key 'ca'",
        id="unknown-in-tls",
    ),
    pytest.param(
        changed(limits={"max_body": 1}), "/limits/max_body", "unknown key", id="unknown-limit"
    ),
    pytest.param(
        changed(**{"a/b~c": 1}), "/a~1b~0c", "unknown key 'a/b~c'", id="unknown-key-escaped"
    ),
    pytest.param(changed(base_dir="/etc"), "/base_dir", "unknown key 'base_dir'", id="base-dir"),
    # Wrong types.
    pytest.param(
        service(upstream=8081),
        "/services/0/upstream",
        "Expected `str | array`, got `int`",
        id="type-upstream",
    ),
    pytest.param(
        service(upstream=["http://a:1", 8081]),
        "/services/0/upstream/1",
        "Expected `str | object`, got `int`",
        id="type-upstream-item",
    ),
    pytest.param(
        service(openapi=["a.yaml"]),
        "/services/0/openapi",
        "Expected `str | object | null`, got `array`",
        id="type-openapi",
    ),
    pytest.param(
        service(host=["a.example.com", 1]), "/services/0/host/1", "got `int`", id="type-host-item"
    ),
    pytest.param(service(subdomain=1), "/services/0/subdomain", "got `int`", id="type-subdomain"),
    pytest.param(
        changed(services=["petstore"]), "/services/0", "Expected `object`", id="type-item"
    ),
    pytest.param(changed(limits=5), "/limits", "Expected `object`, got `int`", id="type-limits"),
    pytest.param(changed(watch="yes"), "/watch", "Expected `bool`", id="type-watch"),
    pytest.param(
        changed(limits={"max_headers": "100"}),
        "/limits/max_headers",
        "Expected `int`, got `str`",
        id="type-int",
    ),
    pytest.param(
        changed(limits={"max_connections": True}),
        "/limits/max_connections",
        "got `bool`",
        id="type-bool-for-int",
    ),
    pytest.param(
        changed(pool={"max_idle": 1.5}), "/pool/max_idle", "got `float`", id="type-float-for-int"
    ),
    pytest.param(changed(access_log="sometimes"), "/access_log", "Expected `bool`", id="type-bool"),
    pytest.param(
        changed(listeners="127.0.0.1:8080"), "/listeners", "Expected `array`", id="type-listeners"
    ),
    pytest.param(
        changed(services={"name": "a"}), "/services", "Expected `array`", id="type-services"
    ),
    pytest.param(
        service(host_header="client"),
        "/services/0/host_header",
        "Invalid enum value 'client'",
        id="enum",
    ),
    pytest.param(
        changed(listeners=[{"address": ":1", "tls": "cert.pem"}]),
        "/listeners/0/tls",
        "Expected `object | null`",
        id="type-tls",
    ),
    # Missing keys.
    pytest.param(
        changed(listeners=...), "", "missing required key 'listeners'", id="no-listeners-key"
    ),
    pytest.param(service(name=...), "/services/0", "missing required key 'name'", id="no-name"),
    pytest.param(
        service(upstream=...), "/services/0", "missing required key 'upstream'", id="no-upstream"
    ),
    # The checks past the types.
    pytest.param(changed(listeners=[]), "/listeners", "no listener", id="empty-listeners"),
    pytest.param(
        changed(services=[*VALID["services"], *VALID["services"]]),
        "/services/1/name",
        "duplicate service name 'petstore' (also /services/0)",
        id="duplicate-names",
    ),
    pytest.param(service(name=" "), "/services/0/name", "the name is empty", id="empty-name"),
    pytest.param(service(openapi=...), "/services/0", "neither openapi nor prefix", id="no-routes"),
    pytest.param(
        service(openapi=..., prefix="/", base_path="/v1"),
        "/services/0/base_path",
        "base_path applies to a spec's routes",
        id="base-path-without-openapi",
    ),
    pytest.param(
        service(prefix="api"), "/services/0/prefix", "'api' must start with '/'", id="prefix-slash"
    ),
    pytest.param(
        service(base_path="v1"),
        "/services/0/base_path",
        "must start with '/'",
        id="base-path-slash",
    ),
    pytest.param(
        service(strip_prefix="/caf\u00e9"),
        "/services/0/strip_prefix",
        "is not a path as clients send it",
        id="strip-prefix-ascii",
    ),
    pytest.param(service(prefix="/a b"), "/services/0/prefix", "not a path", id="prefix-space"),
    pytest.param(
        listen("127.0.0.1:8080", "127.0.0.1:8080"),
        "/listeners/1/address",
        "'127.0.0.1:8080' is also /listeners/0",
        id="duplicate-listener",
    ),
    # Numbers out of range.
    pytest.param(
        changed(limits={"header_timeout": 0}),
        "/limits/header_timeout",
        "0.0 must be > 0",
        id="zero-timeout",
    ),
    pytest.param(
        changed(limits={"max_headers": 0}),
        "/limits/max_headers",
        "0 must be >= 1",
        id="zero-headers",
    ),
    pytest.param(
        changed(limits={"max_body_bytes": -1}),
        "/limits/max_body_bytes",
        "-1 must be >= 0",
        id="negative-body",
    ),
    pytest.param(
        changed(pool={"max_connections": 0}),
        "/pool/max_connections",
        "must be >= 1",
        id="zero-pool",
    ),
    pytest.param(
        changed(pool={"read_timeout": float("inf")}),
        "/pool/read_timeout",
        "inf is not a finite number",
        id="inf",
    ),
    pytest.param(
        changed(pool={"idle_timeout": float("nan")}),
        "/pool/idle_timeout",
        "nan is not a finite number",
        id="nan",
    ),
    pytest.param(
        service(read_timeout=-1),
        "/services/0/read_timeout",
        "-1.0 must be > 0",
        id="service-timeout",
    ),
    pytest.param(
        service(max_body_bytes=-5), "/services/0/max_body_bytes", "must be >= 0", id="service-body"
    ),
]

BAD_UPSTREAMS = [
    ("ftp://127.0.0.1", "the scheme must be http or https"),
    ("127.0.0.1:8081", "the scheme must be http or https"),
    ("http://", "no host"),
    ("http://:8081", "no host"),
    ("http://h/?q=1", "no query or fragment"),
    ("http://h/#top", "no query or fragment"),
    ("http://h:0", "port 0"),
    ("http://h:70000", "Port out of range"),
    ("http://h:http", "Port could not be cast"),
    ("http://h:\uff18\uff10", "ASCII"),
    ("http://user:secret@h", "credentials"),
    ("http://exa mple.com", "without spaces"),
    ("http://h/caf\u00e9", "ASCII"),
    ("http://h\t/", "control characters"),
    ("http://[::1", "Invalid IPv6 URL"),
    ("http://[nope]:80", "nope"),
    ("http://h$x.com", "is not a host name"),
]

BAD_ADDRESSES = [
    ("127.0.0.1", "expected HOST:PORT"),
    ("127.0.0.1:", "expected HOST:PORT"),
    ("127.0.0.1:65536", "port 65536 is out of range"),
    ("127.0.0.1:123456", "expected HOST:PORT"),
    ("127.0.0.1:-1", "expected HOST:PORT"),
    ("127.0.0.1:\uff18\uff10", "expected HOST:PORT"),
    ("127.0.0.1:8080\n", "expected HOST:PORT"),
    ("::1:8080", "expected HOST:PORT"),
    ("[::1:8080", "expected HOST:PORT"),
    ("[::1]", "expected HOST:PORT"),
    ("[::1]:99999", "out of range"),
    ("[1:2:3]:80", "'1:2:3' is not an IPv6 address"),
    ("[example.com]:80", "is not an IPv6 address"),
    ("*:80", "0.0.0.0 is every IPv4 interface"),
    ("exa mple:80", "is not a host name"),
    ("256.0.0.1:80", "'256.0.0.1' is not an IPv4 address"),
    ("unix:", "no socket path"),
    ("tcp://127.0.0.1:80", "expected HOST:PORT"),
]

BAD += [
    pytest.param(service(upstream=url), "/services/0/upstream", fragment, id=f"upstream-{url!r}")
    for url, fragment in BAD_UPSTREAMS
]
BAD += [
    pytest.param(listen(address), "/listeners/0/address", fragment, id=f"address-{address!r}")
    for address, fragment in BAD_ADDRESSES
]


@pytest.mark.parametrize(("content", "pointer", "fragment"), BAD)
def test_a_bad_config_names_the_file_and_pointer(
    tmp_path: Path, content: dict[str, Any] | str | bytes, pointer: str, fragment: str
) -> None:
    path = write(tmp_path, content)
    found = problems_of(path)
    assert any(
        file == str(path) and at == pointer and fragment in message
        for file, at, message, _ in found
    ), found


@pytest.mark.parametrize(
    ("content", "hint"),
    [
        (changed(listners=[]), "did you mean 'listeners'?"),
        (service(upstrem="x"), "did you mean 'upstream'?"),
        (changed(limits={"zzz": 1}), "the keys here: max_url_bytes, max_header_bytes,"),
        (
            changed(listeners=[{"address": ":1", "tls": {"cert": "c", "key": "k", "ca": "x"}}]),
            "the keys here: cert, key",
        ),
        # base_dir is the loader's, not a key to suggest.
        (
            changed(zzz="x"),
            "the keys here: listeners, services, tenants, tenancy, base_domain, admin, plugins,"
            " consumers, custom_plugins, metrics, config_store, mcp_servers, limits, pool, access_log,"
            " watch, watch_interval",
        ),
        (changed(base_dir="/etc"), "relative paths already resolve against the config file's"),
    ],
)
def test_an_unknown_key_gets_a_hint(tmp_path: Path, content: dict[str, Any], hint: str) -> None:
    [(_, _, _, got)] = problems_of(write(tmp_path, content))
    assert got.startswith(hint), got
    assert "base_dir" not in got


def test_a_duplicate_key_says_where_both_are(tmp_path: Path) -> None:
    path = write(tmp_path, "listeners: []\naccess_log: true\nlisteners: [{address: ':1'}]\n")
    assert problems_of(path) == [
        (
            str(path),
            "",
            "not valid YAML at line 3, column 1: found the key 'listeners' twice (first at line 1)",
            "keep one of them",
        )
    ]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    data = {
        "listeners": [{"address": "nowhere"}, {"address": "127.0.0.1:8080"}],
        "services": [
            {"name": "a", "upstream": "ftp://x", "prefix": "/"},
            {"name": "a", "upstream": "http://x"},
        ],
        "limits": {"header_timeout": -1},
    }
    path = write(tmp_path, data)
    # In the order of the file, as a compiler reports.
    assert [(pointer, message.split(":")[0]) for _, pointer, message, _ in problems_of(path)] == [
        ("/listeners/0/address", "'nowhere'"),
        ("/services/0/upstream", "'ftp"),
        ("/services/1", "neither openapi nor prefix"),
        ("/services/1/name", "duplicate service name 'a' (also /services/0)"),
        ("/limits/header_timeout", "-1.0 must be > 0"),
    ]


def test_three_independent_mistakes_are_three_problems(tmp_path: Path) -> None:
    # A typo, a wrong type and a bad URL, in three places: one run shows all three.
    text = """\
listeners:
  - address: 127.0.0.1:8080
services:
  - name: a
    upstream: http://127.0.0.1:8081
    prefx: /
    prefix: /
  - name: b
    upstream: ftp://127.0.0.1:8082
    prefix: /b
limits:
  max_headers: lots
"""
    path = write(tmp_path, text)
    assert [(pointer, message) for _, pointer, message, _ in problems_of(path)] == [
        ("/services/0/prefx", "unknown key 'prefx'"),
        ("/services/1/upstream", "'ftp://127.0.0.1:8082': the scheme must be http or https"),
        ("/limits/max_headers", "Expected `int`, got `str`"),
    ]


def test_type_errors_are_collected_per_list_item_and_mapping(tmp_path: Path) -> None:
    data = {
        "listeners": [{"address": "127.0.0.1:8080"}, {"address": 8081}, "127.0.0.1:8082"],
        "services": [
            {"name": "a", "upstream": ["http://h", 1, "http://h2", None], "prefix": "/"},
            {"name": 2, "upstream": "http://h", "prefix": "/", "read_timeout": "1s"},
        ],
        "tenants": [
            {"name": "one", "hosts": ["one.example.com"]},
            {
                "name": "two",
                "hosts": ["two.example.com", 2],
                "services": [{"name": "x", "upstream": 5, "prefix": "/"}, 7],
            },
        ],
        "tenancy": {"header": 1},
        "admin": {"address": 9180},
        "plugins": {"p": []},
        "consumers": [{"name": "alice", "groups": "staff"}],
        "limits": {"max_headers": 1.5, "header_timeout": "soon"},
        "pool": {"fail_timeout": "never"},
        "watch_interval": "1s",
    }
    found = [(pointer, message) for _, pointer, message, _ in problems_of(write(tmp_path, data))]
    assert found == [
        ("/listeners/1/address", "Expected `str`, got `int`"),
        ("/listeners/2", "Expected `object`, got `str`"),
        ("/services/0/upstream/1", "Expected `str | object`, got `int`"),
        ("/services/0/upstream/3", "Expected `str | object`, got `null`"),
        ("/services/1/name", "Expected `str`, got `int`"),
        ("/services/1/read_timeout", "Expected `float | null`, got `str`"),
        ("/tenants/1/hosts/1", "Expected `str`, got `int`"),
        ("/tenants/1/services/0/upstream", "Expected `str | array`, got `int`"),
        ("/tenants/1/services/1", "Expected `object`, got `int`"),
        ("/tenancy/header", "Expected `str | null`, got `int`"),
        ("/admin/address", "Expected `str`, got `int`"),
        # (Plugin names and settings are checked when the snapshot is built: plugins/build.py.)
        ("/plugins/p", "Expected `object`, got `array`"),
        ("/consumers/0/groups", "Expected `array`, got `str`"),
        ("/limits/max_headers", "Expected `int`, got `float`"),
        ("/limits/header_timeout", "Expected `float`, got `str`"),
        ("/pool/fail_timeout", "Expected `float`, got `str`"),
        ("/watch_interval", "Expected `float`, got `str`"),
    ]


def test_a_value_that_can_not_be_read_is_not_also_checked(tmp_path: Path) -> None:
    # No "neither openapi nor prefix" for an openapi of the wrong type, no "no
    # upstream URL" or "missing required key" for a misspelled upstream.
    data = changed(
        services=[
            {"name": "a", "upstream": "http://h", "openapi": 5},
            {"name": "b", "upstrem": "http://h", "prefix": "/"},
            {"name": "c", "upstream": "http://h", "prefx": "/"},
        ]
    )
    assert [(p, m) for _, p, m, _ in problems_of(write(tmp_path, data))] == [
        ("/services/0/openapi", "Expected `str | object | null`, got `int`"),
        ("/services/1/upstrem", "unknown key 'upstrem'"),
        ("/services/2/prefx", "unknown key 'prefx'"),
    ]


def test_a_missing_key_and_a_bad_one_next_to_it(tmp_path: Path) -> None:
    data = changed(services=[{"upstream": "http://h", "prefix": "/", "max_body_bytes": -1}])
    assert [(p, m, h) for _, p, m, h in problems_of(write(tmp_path, data))] == [
        ("/services/0", "missing required key 'name'", "add name:"),
        (
            "/services/0/max_body_bytes",
            "-1 must be >= 0",
            "leave it out for the gateway-wide setting",
        ),
    ]


def test_every_non_string_key_is_reported(tmp_path: Path) -> None:
    text = "listeners: [{address: ':1'}]\n1: one\nservices:\n  - {name: a, upstream: http://h, prefix: /, yes: 1}\n"
    assert [(p, m) for _, p, m, _ in problems_of(write(tmp_path, text))] == [
        ("", "the key 1 is not a string"),
        ("/services/0", "the key True is not a string"),
    ]


def test_every_problem_has_a_hint(tmp_path: Path) -> None:
    data = {
        "listeners": [{"address": "nowhere"}, {"address": 1}, {"address": ":1", "tls": "x"}],
        "listners": [],
        "services": [
            {"name": "", "upstream": [], "openapi": {"paths": {}}, "host": []},
            {"name": "a b", "upstream": "http://h", "prefix": "v1", "subdomain": "A"},
            {"upstream": ["http://h/a", "http://h/b"], "prefix": "/", "read_timeout": 0},
            {"name": "c", "upstream": "http://h"},
            {"name": "c", "upstream": "http://h", "prefix": "/", "host": "a b"},
        ],
        "tenants": [
            {"name": "Bad_Name"},
            {"name": "t", "hosts": ["t.example.com"], "services": [{"name": "s", "upstream": 1}]},
            {"name": "u", "hosts": ["t.example.com"]},
        ],
        "tenancy": {"host": "example.com", "header": "Host"},
        "base_domain": "example.com:80",
        "admin": {"address": "0.0.0.0:9180", "token_env": "A-B"},
        "plugins": ["auth"],
        "consumers": [{"name": "a b"}, {"name": "x", "groups": [" "]}],
        "limits": {"header_timeout": 0},
        "pool": {"fail_timeout": -1},
        "watch_interval": float("inf"),
    }
    found = problems_of(write(tmp_path, data))
    assert len(found) > 25
    assert [(p, m) for _, p, m, hint in found if not hint] == []


def test_the_error_reads_like_a_compiler_message(tmp_path: Path) -> None:
    path = write(tmp_path, service(upstream="http://h:0"))
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(raised.value) == (
        f"{path}#/services/0/upstream: 'http://h:0': port 0 can not be connected to"
        " (e.g. http://127.0.0.1:8081)"
    )


def test_an_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert problems_of(missing) == [
        (str(missing), "", "can not read: No such file or directory", "")
    ]
    assert problems_of(tmp_path)[0][2].startswith("can not read: ")


def test_yaml_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    text = """\
listeners: [{address: ':8080'}]
services:
  - &first {name: a, upstream: http://127.0.0.1:8081, prefix: /a}
  - <<: *first
    name: b
    prefix: /b
"""
    config = load_config(write(tmp_path, text))
    assert [(s.name, s.upstream, s.prefix) for s in config.services] == [
        ("a", "http://127.0.0.1:8081", "/a"),
        ("b", "http://127.0.0.1:8081", "/b"),
    ]


def test_check_config_on_a_model_built_in_python() -> None:
    config = GatewayConfig(
        listeners=[ListenerConfig(address="localhost:8080")],
        services=[ServiceConfig(name="x", upstream="http://h", prefix="/", read_timeout=0.0)],
        limits=LimitsConfig(max_url_bytes=0),
    )
    assert [(p.pointer, p.message) for p in check_config(config, "<code>")] == [
        ("/limits/max_url_bytes", "0 must be >= 1"),
        ("/services/0/read_timeout", "0.0 must be > 0"),
    ]


# --- addresses and upstream URLs -------------------------------------------------


@pytest.mark.parametrize(
    ("address", "parsed"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
        (":8080", ("0.0.0.0", 8080)),
        ("localhost:0", ("localhost", 0)),
        ("gateway-1.internal:65535", ("gateway-1.internal", 65535)),
        ("[::1]:8080", ("::1", 8080)),
        ("[::]:443", ("::", 443)),
        ("[2001:db8::1]:8443", ("2001:db8::1", 8443)),
        ("[::ffff:127.0.0.1]:80", ("::ffff:127.0.0.1", 80)),
        ("unix:/run/gateway.sock", "/run/gateway.sock"),
        ("unix:relative.sock", "relative.sock"),
    ],
)
def test_parse_address(address: str, parsed: tuple[str, int] | str) -> None:
    assert parse_address(address) == parsed


@pytest.mark.parametrize(("address", "fragment"), BAD_ADDRESSES)
def test_parse_address_refuses(address: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        parse_address(address)


@pytest.mark.parametrize(
    ("url", "parsed", "authority"),
    [
        ("http://127.0.0.1:8081", Upstream("http", "127.0.0.1", 8081, ""), "127.0.0.1:8081"),
        ("http://127.0.0.1:8081/", Upstream("http", "127.0.0.1", 8081, ""), "127.0.0.1:8081"),
        ("http://api.internal", Upstream("http", "api.internal", 80, ""), "api.internal"),
        ("http://api.internal:80/v2/", Upstream("http", "api.internal", 80, "/v2"), "api.internal"),
        (
            "https://API.Example.com",
            Upstream("https", "api.example.com", 443, ""),
            "api.example.com",
        ),
        ("https://h:8443/a/b", Upstream("https", "h", 8443, "/a/b"), "h:8443"),
        ("HTTP://h", Upstream("http", "h", 80, ""), "h"),
        ("http://[::1]:8081/x", Upstream("http", "::1", 8081, "/x"), "[::1]:8081"),
        ("https://[2001:db8::1]", Upstream("https", "2001:db8::1", 443, ""), "[2001:db8::1]"),
        ("http://my_service:9000", Upstream("http", "my_service", 9000, ""), "my_service:9000"),
        ("http://h/caf%C3%A9", Upstream("http", "h", 80, "/caf%C3%A9"), "h"),
    ],
)
def test_parse_upstream(url: str, parsed: Upstream, authority: str) -> None:
    upstream = parse_upstream(url)
    assert upstream == parsed
    assert upstream.authority == authority


@pytest.mark.parametrize(("url", "fragment"), BAD_UPSTREAMS)
def test_parse_upstream_refuses(url: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)) as raised:
        parse_upstream(url)
    assert repr(url) in str(raised.value)  # the message names the URL


# --- the example ------------------------------------------------------------------


def test_the_example_loads() -> None:
    config = load_config(EXAMPLE)
    assert config.listeners == [ListenerConfig(address="127.0.0.1:8080")]
    [petstore] = config.services
    assert petstore.name == "petstore"
    assert parse_upstream(petstore.upstream) == Upstream("http", "127.0.0.1", 8081, "")
    assert Path(config.base_dir, petstore.openapi or "").is_file()


def test_the_examples_commented_settings_are_real_and_show_the_defaults() -> None:
    # Uncomment every `# key: value` line (keeping its indentation) and load the result.
    text = EXAMPLE.read_text()
    uncommented = re.sub(r"(?m)^( *)# ( *(?:- )?[a-z_-]+:(?: .*)?)$", r"\1\2", text)
    assert uncommented.count("\n# ") < text.count("\n# ")
    config = config_from_data(yaml.safe_load(uncommented), base_dir=str(EXAMPLE.parent))
    assert len(config.listeners) == 2
    assert config.listeners[1].tls is not None
    assert [s.name for s in config.services] == ["petstore", "legacy", "assistant-tools"]
    petstore, legacy, tools = config.services
    assert petstore.mcp is not None and petstore.mcp.include and petstore.mcp.exclude
    assert petstore.mcp.page_size == 100 and petstore.mcp.keepalive_interval == 15.0
    assert tools.kind == "mcp" and tools.mcp is not None and tools.mcp.allowed_origins
    assert [m.service for m in config.mcp_servers[0].members] == ["petstore", "assistant-tools"]
    assert petstore.base_path and petstore.host and petstore.strip_prefix
    assert petstore.subdomain is True
    assert legacy.prefix == "/legacy"
    assert legacy.openapi is None
    assert len(legacy.upstreams) == 2
    assert config.base_domain == "example.com"
    assert [t.name for t in config.tenants] == ["acme", "globex"]
    assert [s.name for s in config.tenants[0].services] == ["petstore", "docs"]
    assert config.tenancy.host == "{tenant}.example.com"
    assert config.tenancy.header
    assert config.admin is not None
    assert config.admin.address == "127.0.0.1:9180"
    assert set(config.plugins) >= {"request-id", "cors"}
    assert [c.name for c in config.consumers] == ["alice", "ci-bot"]
    # "the values shown are the defaults"
    assert config.limits == LimitsConfig()
    assert config.pool == PoolConfig()
    assert config.access_log is False
    assert config.watch is True
    assert config.watch_interval == GatewayConfig(listeners=[]).watch_interval
