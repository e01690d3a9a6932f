"""The config's newer parts (`runmcp_fast.config`): service names and replicas,
inline specs, tenants and tenancy, subdomains, the admin API and plugins.

Each rule gets a good case and the problems of a bad one: the pointer of the
value at fault, the message, and a hint on how to fix it.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from runmcp_fast.config import (
    AdminConfig,
    ConfigError,
    GatewayConfig,
    ListenerConfig,
    ServiceConfig,
    TenancyConfig,
    TenantConfig,
    check_config,
    config_from_data,
)

LISTEN = [{"address": "127.0.0.1:8080"}]


def svc(name: str = "api", **changes: Any) -> dict[str, Any]:
    return {"name": name, "upstream": "http://127.0.0.1:8081", "prefix": "/", **changes}


def config(**top: Any) -> dict[str, Any]:
    return {"listeners": copy.deepcopy(LISTEN), **top}


def problems(data: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(pointer, message, hint) of every problem; [] when the config loads."""
    try:
        config_from_data(data, source="gw.yaml")
    except ConfigError as exc:
        assert all(p.file == "gw.yaml" for p in exc.problems)
        return [(p.pointer, p.message, p.hint) for p in exc.problems]
    return []


def pointers(data: dict[str, Any]) -> list[str]:
    return [pointer for pointer, _, _ in problems(data)]


@pytest.fixture(autouse=True)
def _no_admin_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNMCP_ADMIN_TOKEN", raising=False)


# --- service names --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "petstore", "Pet-Store_2.v1", "9", "a" * 63])
def test_a_good_service_name(name: str) -> None:
    assert problems(config(services=[svc(name)])) == []


@pytest.mark.parametrize(
    "name", ["my service", "-api", ".api", "_api", "a/b", "caf\u00e9", "a" * 64, "a:b", "a\n"]
)
def test_a_bad_service_name(name: str) -> None:
    [(pointer, message, hint)] = problems(config(services=[svc(name)]))
    assert pointer == "/services/0/name"
    assert message == f"{name!r} is not a service name"
    assert "admin API URLs and subdomains" in hint
    assert "1 to 63 letters, digits, '.', '_' or '-'" in hint


def test_an_empty_service_name() -> None:
    [(pointer, message, hint)] = problems(config(services=[svc("")]))
    assert (pointer, message) == ("/services/0/name", "the name is empty")
    assert hint.startswith("name the service")


def test_service_names_are_unique_within_their_scope() -> None:
    data = config(
        services=[svc("a"), svc("b")],
        tenants=[
            # The same names as the top level, and as each other: fine.
            {"name": "one", "hosts": ["one.example.com"], "services": [svc("a"), svc("b")]},
            {"name": "two", "hosts": ["two.example.com"], "services": [svc("a")]},
        ],
    )
    assert problems(data) == []
    data["services"].append(svc("b"))
    data["tenants"][0]["services"] += [svc("c"), svc("a")]
    assert problems(data) == [
        (
            "/services/2/name",
            "duplicate service name 'b' (also /services/1)",
            "give each service its own name; a name is unique among the services",
        ),
        (
            "/tenants/0/services/3/name",
            "duplicate service name 'a' (also /tenants/0/services/0)",
            "give each service its own name; a name is unique within its tenant",
        ),
    ]


# --- upstream replicas --------------------------------------------------------------


def test_a_list_of_replicas() -> None:
    data = config(services=[svc(upstream=["http://10.0.0.1:8081/v1", "http://10.0.0.2:8081/v1/"])])
    [service] = config_from_data(data).services
    assert service.upstreams == ["http://10.0.0.1:8081/v1", "http://10.0.0.2:8081/v1/"]
    assert ServiceConfig(name="x", upstream="http://h").upstreams == ["http://h"]


def test_an_empty_list_of_replicas() -> None:
    [(pointer, message, hint)] = problems(config(services=[svc(upstream=[])]))
    assert (pointer, message) == ("/services/0/upstream", "no upstream URL")
    assert "a list of replicas" in hint


def test_each_replica_is_checked_at_its_own_pointer() -> None:
    data = config(services=[svc(upstream=["http://h:1", "ftp://h", "http://h:0", "http://h:2"])])
    assert problems(data) == [
        (
            "/services/0/upstream/1",
            "'ftp://h': the scheme must be http or https",
            "e.g. http://127.0.0.1:8081",
        ),
        (
            "/services/0/upstream/2",
            "'http://h:0': port 0 can not be connected to",
            "e.g. http://127.0.0.1:8081",
        ),
    ]


def test_replicas_may_have_their_own_paths_but_not_an_mcp_servers() -> None:
    data = config(services=[svc(upstream=["http://a/v1", "http://b/v1/", "http://c/v2"])])
    assert problems(data) == []
    mcp = {"name": "m", "kind": "mcp", "upstream": ["http://a/mcp", "http://b/other"]}
    assert problems(config(services=[mcp])) == [
        (
            "/services/0/upstream/1",
            "the replicas of an MCP server have different paths: '/other' here, '/mcp' at"
            " /services/0/upstream/0",
            "serve the MCP endpoint at one path on every replica",
        )
    ]


# --- openapi inline, hosts ---------------------------------------------------------


def test_an_inline_spec_is_a_spec_document() -> None:
    spec = {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {}}
    assert problems(config(services=[svc(openapi=spec)])) == []
    assert problems(config(services=[svc(openapi={"swagger": "2.0", "paths": {}})])) == []
    [(pointer, message, hint)] = problems(config(services=[svc(openapi={"paths": {}})]))
    assert pointer == "/services/0/openapi"
    assert message == "the inline spec has neither an 'openapi' nor a 'swagger' key"
    assert "or a file path" in hint


def test_an_inline_spec_in_yaml_may_have_number_keys() -> None:
    # YAML reads `200:` as a number: inside a spec that is the spec loader's business.
    spec = {
        "openapi": "3.0.3",
        "paths": {"/a": {"get": {"responses": {200: {"description": "ok"}}}}},
    }
    assert problems(config(services=[svc(openapi=spec)])) == []
    # The config's own mappings still want string keys.
    assert problems(config(plugins={1: {}})) == [
        ("/plugins", "the key 1 is not a string", "quote it, or fix the key"),
    ]


def test_an_empty_spec_path() -> None:
    [(pointer, message, _)] = problems(config(services=[svc(openapi=" ")]))
    assert (pointer, message) == ("/services/0/openapi", "the spec path is empty")


@pytest.mark.parametrize(
    "host", ["api.example.com", "*.example.com", "{tenant}.example.com", ["a.example", "b.example"]]
)
def test_good_service_hosts(host: str | list[str]) -> None:
    assert problems(config(services=[svc(host=host)])) == []


@pytest.mark.parametrize(
    ("host", "pointer", "fragment"),
    [
        ("api.example.com:8080", "/services/0/host", "has a port"),
        ("http://api.example.com", "/services/0/host", "is a URL, not a host"),
        ("a b", "/services/0/host", "label 'a b' must be a name"),
        ("", "/services/0/host", "host pattern is empty"),
        ("caf\u00e9.example", "/services/0/host", "xn-- form"),
        (["ok.example", "a..b"], "/services/0/host/1", "label ''"),
        ([], "/services/0/host", "an empty list of hosts"),
    ],
)
def test_bad_service_hosts(host: str | list[str], pointer: str, fragment: str) -> None:
    [(at, message, hint)] = problems(config(services=[svc(host=host)]))
    assert at == pointer
    assert fragment in message
    assert hint


# --- tenants --------------------------------------------------------------------------


def test_a_config_with_tenants_loads() -> None:
    data = config(
        tenants=[
            {"name": "acme", "services": [svc("api"), svc("web", subdomain=True)]},
            {"name": "beta-2", "hosts": ["beta.example.org", "*.beta.example.org"]},
        ],
        tenancy={"host": "{tenant}.example.com", "header": "X-Tenant"},
    )
    loaded = config_from_data(data)
    assert loaded.tenants[0] == TenantConfig(
        name="acme",
        services=[
            ServiceConfig(name="api", upstream="http://127.0.0.1:8081", prefix="/"),
            ServiceConfig(name="web", upstream="http://127.0.0.1:8081", prefix="/", subdomain=True),
        ],
    )
    assert loaded.tenants[1].hosts == ["beta.example.org", "*.beta.example.org"]
    assert loaded.tenancy == TenancyConfig(host="{tenant}.example.com", header="X-Tenant")


@pytest.mark.parametrize("name", ["a", "acme", "acme-2", "0", "a" * 63])
def test_a_good_tenant_name(name: str) -> None:
    assert problems(config(tenants=[{"name": name, "hosts": ["x.example"]}])) == []


@pytest.mark.parametrize("name", ["Acme", "acme_2", "-acme", "acme-", "a.b", "a" * 64, "caf\u00e9"])
def test_a_bad_tenant_name(name: str) -> None:
    [(pointer, message, hint)] = problems(config(tenants=[{"name": name, "hosts": ["x.example"]}]))
    assert (pointer, message) == ("/tenants/0/name", f"{name!r} is not a tenant name")
    assert hint.startswith("a tenant's name is a DNS label: 1 to 63 lower-case letters")


def test_tenant_names_are_unique() -> None:
    data = config(
        tenants=[
            {"name": "acme", "hosts": ["a.example"]},
            {"name": "beta", "hosts": ["b.example"]},
            {"name": "acme", "hosts": ["c.example"]},
        ]
    )
    assert problems(data) == [
        (
            "/tenants/2/name",
            "duplicate tenant name 'acme' (also /tenants/0)",
            "give each tenant its own name",
        )
    ]


def test_a_tenant_nothing_reaches() -> None:
    assert problems(config(tenants=[{"name": "acme"}])) == [
        (
            "/tenants/0",
            "tenant 'acme' can not be reached: it has no hosts, and neither tenancy.host"
            " nor tenancy.header is set",
            "give it hosts: [acme.example.com], or set tenancy.host: '{tenant}.example.com'"
            " or tenancy.header: X-Tenant",
        )
    ]
    # Any of the three reaches it.
    assert problems(config(tenants=[{"name": "acme", "hosts": ["acme.example"]}])) == []
    assert problems(config(tenants=[{"name": "acme"}], tenancy={"host": "{tenant}.x.io"})) == []
    assert problems(config(tenants=[{"name": "acme"}], tenancy={"header": "X-Tenant"})) == []


def test_a_bad_tenant_host() -> None:
    data = config(tenants=[{"name": "acme", "hosts": ["acme.example", "acme.example:443"]}])
    [(pointer, message, _)] = problems(data)
    assert pointer == "/tenants/0/hosts/1"
    assert "has a port" in message


def test_two_tenants_claiming_one_host() -> None:
    data = config(
        tenants=[
            {"name": "acme", "hosts": ["shared.example.com"]},
            {"name": "beta", "hosts": ["beta.example.com", "Shared.Example.com"]},
            {"name": "gamma", "hosts": ["gamma.example.com", "gamma.example.com"]},
        ]
    )
    assert problems(data) == [
        (
            "/tenants/1/hosts/1",
            "host 'Shared.Example.com' is also claimed by tenant 'acme' (/tenants/0/hosts/0)",
            "a host belongs to one tenant: give one of them other hosts",
        ),
        (
            "/tenants/2/hosts/1",
            "host 'gamma.example.com' is also claimed by this tenant (/tenants/2/hosts/0)",
            "a host belongs to one tenant: give one of them other hosts",
        ),
    ]


def test_a_host_from_the_template_claimed_by_another_tenant() -> None:
    data = config(
        tenants=[
            {"name": "beta", "hosts": ["acme.example.com"]},
            {"name": "acme"},  # on acme.example.com by tenancy.host
        ],
        tenancy={"host": "{tenant}.example.com"},
    )
    assert problems(data) == [
        (
            "/tenants/1",
            "host 'acme.example.com' (from tenancy.host) is also claimed by tenant 'beta'"
            " (/tenants/0/hosts/0)",
            "a host belongs to one tenant: give one of them other hosts",
        )
    ]


# --- tenancy --------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["{tenant}.example.com", "api.{tenant}.example.com", "{tenant}"])
def test_a_good_tenancy_host(host: str) -> None:
    assert problems(config(tenancy={"host": host})) == []


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("example.com", "'example.com' has no {tenant}"),
        ("{tenant}.{tenant}.com", "'{tenant}.{tenant}.com' has {tenant} 2 times; once is all"),
        ("{tenant}.{region}.example.com", "only {tenant} may be a parameter"),
        ("{tenant}.*.example.com", "only {tenant} may be a parameter"),
        ("{tenant}.example.com:8080", "has a port"),
        ("x{tenant}.example.com", "must be a name, '*' or '{param}' matching one whole label"),
        ("{tenant}..example.com", "label ''"),
        ("https://{tenant}.example.com", "is a URL, not a host"),
    ],
)
def test_a_bad_tenancy_host(host: str, message: str) -> None:
    [(pointer, got, hint)] = problems(config(tenancy={"host": host}))
    assert pointer == "/tenancy/host"
    assert message in got
    assert hint == "e.g. '{tenant}.example.com'"


@pytest.mark.parametrize("header", ["X-Tenant", "tenant", "X-Org_ID", "x~t!"])
def test_a_good_tenancy_header(header: str) -> None:
    assert problems(config(tenancy={"header": header})) == []


@pytest.mark.parametrize("header", ["X Tenant", "X-Tenant:", "", "X-T\u00e9nant", "(x)"])
def test_a_tenancy_header_that_is_no_header_name(header: str) -> None:
    [(pointer, message, hint)] = problems(config(tenancy={"header": header}))
    assert (pointer, message) == ("/tenancy/header", f"{header!r} is not a header name")
    assert "e.g. X-Tenant" in hint


@pytest.mark.parametrize(
    "header",
    [
        "Host",
        "content-length",
        "Transfer-Encoding",
        "Connection",
        "Keep-Alive",
        "TE",
        "Upgrade",
        "Proxy-Authorization",
        "Proxy-Anything",
        "X-Forwarded-For",
        "X-Forwarded-Host",
        "Via",
    ],
)
def test_a_tenancy_header_the_proxy_owns(header: str) -> None:
    [(pointer, message, hint)] = problems(config(tenancy={"header": header}))
    assert (pointer, message) == (
        "/tenancy/header",
        f"{header!r} is a header the gateway reads or rewrites itself",
    )
    assert hint == "use a header of your own, e.g. X-Tenant"


# --- subdomains and base_domain -----------------------------------------------------


def test_subdomains_of_the_base_domain() -> None:
    data = config(
        base_domain="example.com",
        services=[svc("api", subdomain=True), svc("Web_UI", subdomain="web"), svc("plain")],
    )
    assert problems(data) == []


def test_subdomain_true_needs_a_dns_label_name() -> None:
    data = config(base_domain="example.com", services=[svc("Web_UI", subdomain=True)])
    [(pointer, message, hint)] = problems(data)
    assert pointer == "/services/0/subdomain"
    assert message == (
        "subdomain: true puts the service on its name, and 'Web_UI' is not a DNS label"
    )
    assert "subdomain: my-api" in hint


@pytest.mark.parametrize("label", ["", "Web", "web_ui", "-web", "web.ui", "a" * 64])
def test_a_subdomain_label(label: str) -> None:
    data = config(base_domain="example.com", services=[svc(subdomain=label)])
    assert problems(data) == [
        (
            "/services/0/subdomain",
            f"{label!r} is not a DNS label",
            "1 to 63 lower-case letters, digits and '-', not starting or ending with '-'",
        )
    ]


def test_a_top_level_subdomain_needs_base_domain() -> None:
    assert problems(config(services=[svc(subdomain=True)])) == [
        (
            "/services/0/subdomain",
            "a subdomain needs base_domain",
            "set base_domain: example.com at the top level",
        )
    ]


def test_a_tenants_subdomain_needs_the_tenants_hosts() -> None:
    tenant = {"name": "acme", "services": [svc(subdomain=True)]}
    # Reached by the header only: no host to put the subdomain under.
    assert problems(config(tenants=[tenant], tenancy={"header": "X-Tenant"})) == [
        (
            "/tenants/0/services/0/subdomain",
            "tenant 'acme' has no hosts to put the subdomain under",
            "give the tenant hosts:, or set tenancy.host: '{tenant}.example.com'",
        )
    ]
    # Its own hosts, or the template's; base_domain is not needed.
    assert problems(config(tenants=[{**tenant, "hosts": ["acme.example"]}])) == []
    assert problems(config(tenants=[tenant], tenancy={"host": "{tenant}.example.com"})) == []


@pytest.mark.parametrize(
    "domain", ["example.com", "apps.example.co.uk", "localhost", "EXAMPLE.com"]
)
def test_a_good_base_domain(domain: str) -> None:
    assert problems(config(base_domain=domain)) == []


@pytest.mark.parametrize(
    ("domain", "fragment"),
    [
        ("example.com:8080", "has a port"),
        ("*.example.com", "has a wildcard"),
        ("{tenant}.example.com", "has a wildcard"),
        ("https://example.com", "is a URL"),
        ("127.0.0.1", "is an IP address"),
        ("[::1]", "is an IP address"),
        ("", "is not a host name"),
        ("exa mple.com", "is not a host name"),
        ("example..com", "is not a host name"),
        ("-example.com", "is not a host name"),
        ("example.com.", "is not a host name"),
        ("my_host.com", "is not a host name"),
    ],
)
def test_a_bad_base_domain(domain: str, fragment: str) -> None:
    [(pointer, message, hint)] = problems(config(base_domain=domain))
    assert pointer == "/base_domain"
    assert fragment in message
    assert hint == "a domain like example.com: no port, no wildcard"


# --- the admin API ----------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1:9180", "127.8.9.1:9180", "[::1]:9180", "localhost:9180", "unix:/run/admin.sock"],
)
def test_the_admin_api_without_a_token_on_loopback(address: str) -> None:
    assert problems(config(admin={"address": address})) == []


def test_the_admin_api_defaults() -> None:
    loaded = config_from_data(config(admin={}))
    assert loaded.admin == AdminConfig()
    assert loaded.admin.address == "127.0.0.1:9180"
    assert config_from_data(config()).admin is None


@pytest.mark.parametrize("address", ["0.0.0.0:9180", "[::]:9180", "10.0.0.5:9180", "admin:9180"])
def test_the_admin_api_without_a_token_elsewhere(address: str) -> None:
    [(pointer, message, hint)] = problems(config(admin={"address": address}))
    assert pointer == "/admin/token"
    assert message.startswith(f"the admin API on {address!r} has no token")
    assert hint.startswith("set admin.token, or the environment variable RUNMCP_ADMIN_TOKEN")


def test_an_admin_token_from_the_file_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert problems(config(admin={"address": "0.0.0.0:9180", "token": "s3cret"})) == []
    exposed = config(admin={"address": "0.0.0.0:9180"})
    monkeypatch.setenv("RUNMCP_ADMIN_TOKEN", "s3cret")
    assert problems(exposed) == []
    # Another variable, named by token_env.
    named = config(admin={"address": "0.0.0.0:9180", "token_env": "GW_TOKEN"})
    [(pointer, _, hint)] = problems(named)
    assert pointer == "/admin/token"
    assert "GW_TOKEN" in hint
    monkeypatch.setenv("GW_TOKEN", "s3cret")
    assert problems(named) == []
    monkeypatch.setenv("GW_TOKEN", "  ")  # blank is none
    assert pointers(named) == ["/admin/token"]


def test_an_empty_admin_token() -> None:
    assert pointers(config(admin={"token": ""})) == ["/admin/token"]


def test_a_bad_admin_address() -> None:
    [(pointer, message, hint)] = problems(config(admin={"address": "9180"}))
    assert pointer == "/admin/address"
    assert "expected HOST:PORT" in message
    assert hint.startswith("e.g. 127.0.0.1:9180")


@pytest.mark.parametrize(
    ("listener", "admin"),
    [
        ("127.0.0.1:8080", "127.0.0.1:8080"),
        ("localhost:8080", "LOCALHOST:8080"),
        ("0.0.0.0:8080", "127.0.0.1:8080"),  # the listener already has every address
        ("[::]:8080", "[::1]:8080"),
        ("unix:/run/gw.sock", "unix:/run/./gw.sock"),
    ],
)
def test_the_admin_api_on_a_listeners_address(listener: str, admin: str) -> None:
    data = {"listeners": [{"address": listener}], "admin": {"address": admin, "token": "t"}}
    assert problems(data) == [
        (
            "/admin/address",
            f"{admin!r} is also /listeners/0",
            "give the admin API an address of its own",
        )
    ]


@pytest.mark.parametrize(
    ("listener", "admin"),
    [("127.0.0.1:8080", "127.0.0.1:8081"), ("127.0.0.1:0", "127.0.0.1:0"), ("unix:/a", "unix:/b")],
)
def test_the_admin_api_on_its_own_address(listener: str, admin: str) -> None:
    assert problems({"listeners": [{"address": listener}], "admin": {"address": admin}}) == []


def test_admin_token_env_and_state_file() -> None:
    data = config(admin={"token_env": "1TOKEN", "state_file": ""})
    assert pointers(data) == ["/admin/token_env", "/admin/state_file"]


# --- plugins, watch -------------------------------------------------------------------


def test_consumers_need_unique_names_and_real_groups() -> None:
    data = config(
        consumers=[
            {"name": "alice", "groups": ["staff", ""]},
            {"name": "alice"},
            {"name": "-x"},
        ],
        custom_plugins=["audit"],
    )
    assert pointers(data) == [
        "/consumers/0/groups/1",
        "/consumers/1/name",
        "/consumers/2/name",
        "/custom_plugins/0",
    ]
    assert problems(config(consumers=[], plugins={})) == []


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("watch_interval", 0, "0.0 must be > 0"),
        ("watch_interval", -1, "-1.0 must be > 0"),
        ("watch_interval", float("inf"), "inf is not a finite number"),
        ("watch_interval", float("nan"), "nan is not a finite number"),
    ],
)
def test_watch_interval(key: str, value: float, message: str) -> None:
    assert problems(config(**{key: value})) == [(f"/{key}", message, "the default is 1.0")]
    assert problems(config(watch=False, watch_interval=0.25)) == []


def test_pool_fail_timeout() -> None:
    assert problems(config(pool={"fail_timeout": 0})) == []
    assert problems(config(pool={"fail_timeout": -0.5})) == [
        ("/pool/fail_timeout", "-0.5 must be >= 0", "the default is 10.0")
    ]


# --- check_config on a model built in Python ------------------------------------------


def test_check_config_covers_a_model_built_in_python(monkeypatch: pytest.MonkeyPatch) -> None:
    built = GatewayConfig(
        listeners=[ListenerConfig(address="127.0.0.1:8080")],
        tenants=[
            TenantConfig(name="acme", services=[ServiceConfig(name="a b", upstream=[])]),
        ],
        admin=AdminConfig(address="0.0.0.0:9180"),
        watch_interval=0.0,
    )
    found = check_config(built, "<code>")
    assert [p.pointer for p in found] == [
        "/watch_interval",
        "/admin/token",
        "/tenants/0",
        "/tenants/0/services/0/name",
        "/tenants/0/services/0/upstream",
        "/tenants/0/services/0",
    ]
    assert found[2].message.startswith("tenant 'acme' can not be reached")
    assert found[3].message == "'a b' is not a service name"
    assert all(p.file == "<code>" and p.hint for p in found)
