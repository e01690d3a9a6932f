"""limit-count and limit-req: rate limits per key (docs/plugins/limits.md).

- `limit-count`: at most `count` units per `window` seconds per key, in fixed windows
  (aligned on the epoch) or a sliding one (the previous window weighted by its overlap);
- `limit-req`: `rate` units a second with bursts of `burst` more (GCRA: one integer per
  key, the theoretical arrival time).

The key is a combination of the consumer, the client's address, a header, a path
parameter, the route and the MCP tool called; a request costs `cost` units, or a cost
per MCP method. A request over the limit gets 429 problem+json with `Retry-After` and the
IETF draft's `RateLimit` / `RateLimit-Policy` headers (on allowed responses too with
`headers: true`) and never reaches the upstream.

Policies: `local` (per worker, state in a C table of fixed-size slots) and `redis`
(cluster-wide: a local view synced every `sync_interval`, builtin/limits_redis.py; 0:
exact, each request awaits Redis). The compiled steps are in plugins/steps/limits.pxi;
this module checks the settings and makes them.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta

from runmcp_fast._dataplane import Step
from runmcp_fast.plugins._steps import LimitCountStep, LimitReqStep
from runmcp_fast.plugins.builtin.fields import TOKEN, doc
from runmcp_fast.plugins.contract import BuildContext, Plugin, PluginError, Settings

WORKERS_ENV = "RUNMCP_FAST_WORKERS"  # set by workers.py for its workers: how many there are

# Key parts (their numbers are the compiled step's KEY_*).
KEY_KINDS = {"consumer": 1, "client_ip": 2, "header": 3, "param": 4, "route": 5, "tool": 6}
_KEY_HINT = (
    "a key part is consumer, client_ip, route, tool, header:<Name> or param:<name>;"
    " e.g. key: [consumer, route]"
)
_TOKEN = re.compile(TOKEN)
_POLICY_NAME = re.compile(r"[!#-\[\]-~ ]{1,64}")  # a structured-field string: no " or \
_HOST_PORT = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+):\d{1,5}$")

# Where the steps run: after authentication (2500s) and consumer rules (2400); in the mcp
# phase after the envelope check (0) and mcp-authz (-100), when they read the MCP request.
ACCESS_PRIORITY = {"limit-count": 1002, "limit-req": 1001}
MCP_PRIORITY = {"limit-count": -200, "limit-req": -201}

# The largest count, cost or burst, and the longest burst refill (µs): the steps keep
# counts and times in 64-bit integers (and Redis's scripts in doubles, exact to 2^53);
# past these they would overflow (a 500 at config time, or every request refused).
MAX_UNITS = 10**15
MAX_TOLERANCE_US = 10**15  # ~31.7 years

_POLICIES = {"local": 0, "redis": 1}
_EXACT = 2
_DOWN = {"fail_open": 0, "fail_closed": 1, "local": 2}


class CostSettings(Settings, frozen=True):
    default: Annotated[
        int, Meta(ge=0, le=MAX_UNITS), doc("The cost of a request whose method is not listed.")
    ] = 1
    methods: Annotated[
        dict[str, Annotated[int, Meta(ge=0, le=MAX_UNITS)]],
        doc(
            "The cost of an MCP request by its JSON-RPC method (tools/call, ping...); 0: free"
            " (neither counted nor refused). A batch costs its members' sum."
        ),
    ] = msgspec.field(default_factory=dict)


class RedisSettings(Settings, frozen=True):
    url: Annotated[
        str,
        doc(
            "redis://host:port/db, rediss:// (TLS) or unix:///path; a cluster's seed node"
            " with cluster: true. No password in it: password_env."
        ),
    ] = "redis://127.0.0.1:6379/0"
    cluster: Annotated[bool, doc("A Redis Cluster: url names one of its nodes.")] = False
    sentinels: Annotated[
        list[str], doc("Sentinels (host:port) to ask for the master (url is then unused).")
    ] = msgspec.field(default_factory=list)
    sentinel_master: Annotated[str, doc("The master's name the sentinels know.")] = "mymaster"
    username_env: Annotated[
        str | None, doc("The environment variable holding the ACL user name.")
    ] = None
    password_env: Annotated[
        str | None,
        doc("The environment variable holding the password (never in the config file)."),
    ] = None
    ca_file: Annotated[
        str | None, doc("rediss://: the CA bundle to verify the server with (else the system's).")
    ] = None
    cert_file: Annotated[str | None, doc("rediss://: a client certificate (PEM).")] = None
    key_file: Annotated[str | None, doc("rediss://: the client certificate's key (PEM).")] = None
    timeout: Annotated[float, Meta(gt=0, le=30), doc("Seconds to connect or to get an answer.")] = (
        0.5
    )
    prefix: Annotated[str, doc("Before every key the limits write.")] = "runmcp:limit:"


class LimitSettings(Settings, frozen=True):
    key: Annotated[
        list[str] | str,
        doc(
            "What a count is kept per: consumer, client_ip, route, tool (the MCP tool of a"
            " tools/call), header:<Name>, param:<name> (a path parameter), or a list of"
            " them (their combination)."
        ),
    ] = "client_ip"
    cost: Annotated[
        Annotated[int, Meta(ge=0, le=MAX_UNITS)] | CostSettings,
        doc("Units a request costs: a number, or {default, methods}."),
    ] = 1
    headers: Annotated[
        bool, doc("RateLimit and RateLimit-Policy on allowed responses too (429s always).")
    ] = False
    policy_name: Annotated[
        str | None, doc("The policy's name in the RateLimit headers (default: the plugin's).")
    ] = None
    policy: Annotated[
        Literal["local", "redis"],
        doc("local: counted per worker; redis: across the cluster, synced through Redis."),
    ] = "local"
    redis: Annotated[RedisSettings | None, doc("Where Redis is (policy: redis).")] = None
    sync_interval: Annotated[
        float,
        Meta(ge=0, le=60),
        doc(
            "Seconds between two pushes of a worker's counts to Redis; 0: every request"
            " waits for Redis (exact)."
        ),
    ] = 0.1
    on_redis_down: Annotated[
        Literal["fail_open", "fail_closed", "local"],
        doc(
            "While Redis does not answer: admit all (fail_open), refuse all with 429"
            " (fail_closed), or count locally with the quota split across nodes and"
            " workers (local)."
        ),
    ] = "local"
    nodes: Annotated[
        int,
        Meta(ge=1, le=100_000),
        doc("Gateway nodes sharing the limit (the local fallback's split)."),
    ] = 1
    max_keys: Annotated[
        int,
        Meta(ge=1, le=100_000_000),
        doc("Keys a worker keeps state for; beyond, the least recently used are forgotten."),
    ] = 100_000


class LimitCountSettings(LimitSettings, frozen=True, kw_only=True):
    count: Annotated[int, Meta(ge=1, le=MAX_UNITS), doc("Units allowed per window and key.")]
    window: Annotated[int, Meta(ge=1, le=31_536_000), doc("The window, in seconds.")]
    algorithm: Annotated[
        Literal["fixed", "sliding"],
        doc("fixed windows (aligned on the epoch), or a sliding window over two of them."),
    ] = "fixed"


class LimitReqSettings(LimitSettings, frozen=True, kw_only=True):
    rate: Annotated[float, Meta(gt=0, le=1_000_000), doc("Units a second, steadily.")]
    burst: Annotated[
        int,
        Meta(ge=0, le=MAX_UNITS),
        doc("Units admitted at once beyond the steady rate (GCRA's tolerance)."),
    ] = 0


# -- checks ------------------------------------------------------------------------------


def key_parts(key: list[str] | str) -> tuple[tuple[int, Any], ...]:
    """The compiled key: ((KEY_*, argument), ...); PluginError names the bad part."""
    parts = [key] if isinstance(key, str) else key
    at_list = not isinstance(key, str)
    if not parts:
        raise PluginError("the key names no part", at="/key", hint=_KEY_HINT)
    out: list[tuple[int, Any]] = []
    for index, part in enumerate(parts):
        at = f"/key/{index}" if at_list else "/key"
        kind, sep, arg = part.partition(":")
        number = KEY_KINDS.get(kind)
        if number is None or (bool(sep) != (kind in ("header", "param"))):
            raise PluginError(f"{part!r} is not a key part", at=at, hint=_KEY_HINT)
        if kind == "header":
            if not _TOKEN.match(arg):
                raise PluginError(f"{arg!r} is not a header name", at=at, hint=_KEY_HINT)
            out.append((number, arg.lower().encode("latin-1")))
        elif kind == "param":
            if not arg:
                raise PluginError("param: names no parameter", at=at, hint=_KEY_HINT)
            out.append((number, arg))
        else:
            out.append((number, None))
        if out[-1] in out[:-1]:
            raise PluginError(f"{part!r} is named twice", at=at, hint="name each part once")
    return tuple(out)


def _common_problems(settings: LimitSettings, name: str) -> Iterator[PluginError]:
    try:
        key_parts(settings.key)
    except PluginError as exc:
        yield exc
    if settings.policy_name is not None and not _POLICY_NAME.fullmatch(settings.policy_name):
        yield PluginError(
            "not a policy name",
            at="/policy_name",
            hint='1 to 64 printable ASCII characters, without " or \\',
        )
    if settings.policy == "local":
        if settings.redis is not None:
            yield PluginError(
                "redis is read only with policy: redis",
                at="/redis",
                hint="set policy: redis, or leave redis out",
            )
        return
    if settings.redis is None:
        yield PluginError(
            "policy redis needs redis",
            at="/redis",
            hint="give redis: {url: redis://host:6379/0, password_env: REDIS_PASSWORD}",
        )
        return
    yield from _redis_problems(settings.redis)


def _redis_problems(redis: RedisSettings) -> Iterator[PluginError]:
    parts = urlsplit(redis.url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        yield PluginError(
            f"{redis.url!r} is not a Redis URL",
            at="/redis/url",
            hint="redis://host:6379/0, rediss://host:6380/0 (TLS) or unix:///run/redis.sock",
        )
    elif parts.password is not None:
        yield PluginError(
            "the URL holds a password",
            at="/redis/url",
            hint="keep secrets out of the config: password_env names the variable holding it",
        )
    if redis.cluster and redis.sentinels:
        yield PluginError(
            "give cluster or sentinels, not both", at="/redis/sentinels", hint="one topology"
        )
    for index, sentinel in enumerate(redis.sentinels):
        if not _HOST_PORT.match(sentinel):
            yield PluginError(
                f"{sentinel!r} is not host:port",
                at=f"/redis/sentinels/{index}",
                hint="e.g. 10.0.0.5:26379",
            )
    tls_files = (redis.ca_file, redis.cert_file, redis.key_file)
    if any(tls_files) and parts.scheme != "rediss":
        yield PluginError(
            "TLS files are given but the URL is not rediss://",
            at="/redis/url",
            hint="use rediss://host:port/db",
        )
    if (redis.cert_file is None) != (redis.key_file is None):
        yield PluginError(
            "a client certificate needs its key, and the key its certificate",
            at="/redis/cert_file",
            hint="give both cert_file and key_file",
        )


# -- making the steps ------------------------------------------------------------------


def _costs(settings: LimitSettings) -> tuple[int, dict[str, int]]:
    if isinstance(settings.cost, CostSettings):
        return settings.cost.default, dict(settings.cost.methods)
    return settings.cost, {}


def _workers() -> int:
    try:
        return max(int(os.environ.get(WORKERS_ENV, "1")), 1)
    except ValueError:
        return 1


def _connection(redis: RedisSettings, context: BuildContext) -> Any:
    from runmcp_fast.plugins.builtin.limits_redis import RedisConnection

    secrets: dict[str, str | None] = {}
    for field in ("username_env", "password_env"):
        variable = getattr(redis, field)
        if variable is None:
            secrets[field] = None
            continue
        value = os.environ.get(variable)
        if value is None:
            raise PluginError(
                f"the environment variable {variable} is not set",
                at=f"/redis/{field}",
                hint="set it for the gateway's process",
            )
        secrets[field] = value
    options: dict[str, Any] = {}
    if urlsplit(redis.url).scheme == "rediss":
        options["ssl_cert_reqs"] = "required"
        for field, option in (
            ("ca_file", "ssl_ca_certs"),
            ("cert_file", "ssl_certfile"),
            ("key_file", "ssl_keyfile"),
        ):
            path = getattr(redis, field)
            if path is not None:
                path = os.path.join(context.base_dir, path)
                if not os.path.isfile(path):
                    raise PluginError(f"no file {path}", at=f"/redis/{field}")
                options[option] = path
    sentinels = []
    for sentinel in redis.sentinels:
        host, _, port = sentinel.rpartition(":")
        sentinels.append((host.strip("[]"), int(port)))
    return RedisConnection(
        url=redis.url,
        cluster=redis.cluster,
        sentinels=sentinels,
        sentinel_master=redis.sentinel_master,
        username=secrets["username_env"],
        password=secrets["password_env"],
        ssl_options=options,
        timeout=redis.timeout,
    )


def _common(
    plugin: Plugin, settings: LimitSettings, context: BuildContext, policy_value: str
) -> dict[str, Any]:
    parts = key_parts(settings.key)
    cost, methods = _costs(settings)
    needs_mcp = bool(methods) or any(kind == KEY_KINDS["tool"] for kind, _ in parts)
    policy = _POLICIES[settings.policy]
    if policy and settings.sync_interval == 0:
        policy = _EXACT
    name = settings.policy_name or plugin.name
    return {
        "name": plugin.name,
        "priority": (MCP_PRIORITY if needs_mcp else ACCESS_PRIORITY)[plugin.name],
        "parts": parts,
        "cost": cost,
        "method_costs": methods,
        "needs_mcp": needs_mcp,
        "headers": settings.headers,
        "policy_name": name,
        "policy_value": policy_value.replace("{name}", name),
        "max_keys": settings.max_keys,
        "policy": policy,
        "down_mode": _DOWN[settings.on_redis_down],
        "share": settings.nodes * _workers(),
        "scope": (context.scope or "global").encode("utf-8"),
    }


def _prefix(settings: LimitSettings, plugin: Plugin, context: BuildContext) -> bytes:
    assert settings.redis is not None
    scope = context.scope or "global"
    return f"{settings.redis.prefix}{plugin.name}:{scope}:".encode()


class LimitCount(Plugin):
    """At most `count` units per window per key: fixed or sliding windows."""

    name = "limit-count"
    phase = "access"  # the mcp phase when it reads the MCP request (a tool key, costs by method)
    priority = ACCESS_PRIORITY["limit-count"]
    Config = LimitCountSettings
    per_scope = True  # counters belong to the level the limit is written at
    summary = "N units per window per key (fixed or sliding), per worker or cluster-wide (Redis)"

    def check(self, settings: Any) -> Iterator[PluginError]:
        yield from _common_problems(settings, self.name)

    def step(self, settings: Any, context: BuildContext, *, fail_open: bool) -> Step:
        common = _common(
            self, settings, context, f'"{{name}}";q={settings.count};w={settings.window}'
        )
        sync = None
        if settings.policy == "redis":
            from runmcp_fast.plugins.builtin.limits_redis import RedisSync

            sync = RedisSync(
                _connection(settings.redis, context),
                kind="count",
                prefix=_prefix(settings, self, context),
                interval=settings.sync_interval,
                window=settings.window,
                sliding=settings.algorithm == "sliding",
                limit=settings.count,
            )
        return LimitCountStep(
            settings.count,
            settings.window,
            settings.algorithm == "sliding",
            sync=sync,
            fail_open=fail_open,
            **common,
        )


class LimitReq(Plugin):
    """`rate` units a second per key, with bursts of `burst` more (GCRA)."""

    name = "limit-req"
    phase = "access"
    priority = ACCESS_PRIORITY["limit-req"]
    Config = LimitReqSettings
    per_scope = True
    summary = "a rate per key with a burst (GCRA: one integer per key), per worker or with Redis"

    def check(self, settings: Any) -> Iterator[PluginError]:
        yield from _common_problems(settings, self.name)
        refill_us = (settings.burst + 1) * emission_us(settings.rate)
        if refill_us > MAX_TOLERANCE_US:
            yield PluginError(
                f"burst + 1 units at this rate take {refill_us / 31_557_600e6:.0f} years to"
                " refill: past what the limit's clock can count",
                at="/burst",
                hint="raise rate or lower burst (a burst refills in at most ~31 years)",
            )
        cost, methods = _costs(settings)
        biggest = max([cost, *methods.values()])
        if biggest > settings.burst + 1:
            yield PluginError(
                f"a request costing {biggest} could never be admitted: at most burst + 1"
                f" = {settings.burst + 1} units pass at once",
                at="/cost",
                hint=f"raise burst to {biggest - 1} or more, or lower the cost",
            )

    def step(self, settings: Any, context: BuildContext, *, fail_open: bool) -> Step:
        quota = settings.burst + 1
        window = max(math.ceil(quota / settings.rate), 1)
        common = _common(self, settings, context, f'"{{name}}";q={quota};w={window}')
        sync = None
        if settings.policy == "redis":
            from runmcp_fast.plugins.builtin.limits_redis import RedisSync

            emission = emission_us(settings.rate)  # as the step computes it
            sync = RedisSync(
                _connection(settings.redis, context),
                kind="req",
                prefix=_prefix(settings, self, context),
                interval=settings.sync_interval,
                emission_us=emission,
                tolerance_us=(settings.burst + 1) * emission,
            )
        return LimitReqStep(settings.rate, settings.burst, sync=sync, fail_open=fail_open, **common)


def emission_us(rate: float) -> int:
    """GCRA's emission interval T in µs (the step's `interval_us`)."""
    return max(int(1_000_000.0 / rate + 0.5), 1)
