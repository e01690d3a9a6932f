"""mcp-authz: which MCP tools a caller may see and call (docs/plugins/mcp-authz.md).

Rules are tried in order; the first that matches decides (allow or deny),
and `default` decides when none does. A rule matches when every condition it
gives holds: the tool's name (globs), its annotations (hints, with the
spec's defaults), who calls (consumers or groups, from an authentication
step), and what the caller's token grants (`scopes` all held, `claims`
equal). The same decision filters `tools/list` and refuses `tools/call`.

The compiled step (plugins/steps/mcp_authz.pxi) does the per-request work on
a proxied server: reading the method and tool name (from the envelope the
envelope check left, or the checked 2026-07-28 headers), a cached decision,
and setting up the list filter. This module compiles the settings into a
`Policy` (the decision itself, with its cache, and the ToolGate generated
endpoints and federations ask) once per snapshot.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
import orjson
from msgspec import Meta

from runmcp_fast._dataplane import Consumer, Step
from runmcp_fast.mcp import jsonrpc, versions
from runmcp_fast.mcp.authz import Hints, ToolsListFilter, effective_hints
from runmcp_fast.mcp.proxy import header_text
from runmcp_fast.plugins._steps import McpAuthzStep
from runmcp_fast.plugins.contract import BuildContext, Plugin, PluginError, Settings

if TYPE_CHECKING:
    from runmcp_fast._dataplane import LocalRequest

FORBIDDEN = -32003
"""The JSON-RPC error code of a refused tools/call (implementation-defined server error
range, -32000 to -32099; not one MCP gives a meaning to)."""

_CACHE_LIMIT = 8192  # decisions remembered per policy (then it starts over)
_CATALOG_LIMIT = 65536  # tools' annotations remembered per proxied service
_NAME = re.compile(r"[A-Za-z0-9_\-.*?/]{1,128}")  # a tool name, or a glob of one


def _doc(text: str) -> Meta:
    return Meta(description=text)


class HintsSettings(Settings, frozen=True, rename="camel"):
    """Annotation values a rule requires (each given one must equal the tool's)."""

    read_only_hint: Annotated[bool | None, _doc("readOnlyHint (default false).")] = None
    destructive_hint: Annotated[
        bool | None, _doc("destructiveHint (default true; false for a read-only tool).")
    ] = None
    idempotent_hint: Annotated[bool | None, _doc("idempotentHint (default false).")] = None
    open_world_hint: Annotated[bool | None, _doc("openWorldHint (default true).")] = None


ClaimValue = str | int | bool | list[str | int | bool]


class RuleSettings(Settings, frozen=True):
    effect: Annotated[Literal["allow", "deny"], _doc("What a match decides.")]
    tools: Annotated[
        list[str],
        _doc("Tool names or globs (* any run, ? one character); any one matching. Default: all."),
    ] = msgspec.field(default_factory=list)
    annotations: Annotated[
        HintsSettings | None, _doc("Annotation values the tool must have (all of them).")
    ] = None
    consumers: Annotated[list[str], _doc("Callers identified as one of these consumers.")] = (
        msgspec.field(default_factory=list)
    )
    groups: Annotated[list[str], _doc("Callers whose consumer is in one of these groups.")] = (
        msgspec.field(default_factory=list)
    )
    scopes: Annotated[
        list[str], _doc("Token scopes the caller must hold, all of them (vars['scopes']).")
    ] = msgspec.field(default_factory=list)
    claims: Annotated[
        dict[str, ClaimValue],
        _doc(
            "Token claims (vars['claims']) the caller's must equal; a list: any of its values."
            " A claim that is a list matches when it holds the value."
        ),
    ] = msgspec.field(default_factory=dict)


class McpAuthzSettings(Settings, frozen=True):
    rules: Annotated[list[RuleSettings], _doc("Tried in order: the first that matches decides.")]
    default: Annotated[Literal["allow", "deny"], _doc("What decides when no rule matches.")] = (
        "deny"
    )
    error_code: Annotated[
        int, Meta(ge=-32099, le=-32000), _doc("The JSON-RPC code of a refused tools/call.")
    ] = FORBIDDEN


# -- the compiled rules ----------------------------------------------------------------


_UNKNOWN: Any = object()  # a condition on annotations the gateway has not seen


class Rule:
    """One rule, its conditions compiled: a set of exact names and one regex of globs."""

    __slots__ = ("allow", "claims", "consumers", "globs", "groups", "hints", "names", "scopes")

    def __init__(self, settings: RuleSettings) -> None:
        self.allow = settings.effect == "allow"
        exact = [t for t in settings.tools if "*" not in t and "?" not in t]
        patterns = [t for t in settings.tools if "*" in t or "?" in t]
        self.names: frozenset[str] | None = frozenset(exact) if settings.tools else None
        self.globs: re.Pattern[str] | None = (
            re.compile("|".join(_glob(p) for p in patterns)) if patterns else None
        )
        hints = settings.annotations
        self.hints: tuple[bool | None, ...] | None = (
            (
                hints.read_only_hint,
                hints.destructive_hint,
                hints.idempotent_hint,
                hints.open_world_hint,
            )
            if hints is not None
            else None
        )
        self.consumers = frozenset(settings.consumers)
        self.groups = frozenset(settings.groups)
        self.scopes = frozenset(settings.scopes)
        self.claims = {k: (v if isinstance(v, list) else [v]) for k, v in settings.claims.items()}

    def names_match(self, name: str) -> bool:
        if self.names is None:
            return True
        return name in self.names or (
            self.globs is not None and self.globs.fullmatch(name) is not None
        )

    def caller_matches(
        self, consumer: Consumer | None, scopes: frozenset[str], claims: Mapping[str, Any]
    ) -> bool:
        if self.consumers or self.groups:
            if consumer is None:
                return False
            if consumer.name not in self.consumers and self.groups.isdisjoint(consumer.groups):
                return False
        if self.scopes and not self.scopes <= scopes:
            return False
        for claim, wanted in self.claims.items():
            if claim not in claims:
                return False
            held = claims[claim]
            values = held if isinstance(held, list) else [held]
            if not any(_same(v, w) for v in values for w in wanted):
                return False
        return True

    def hints_match(self, hints: Hints | None) -> Any:
        """True, False, or _UNKNOWN when the tool's annotations are not known."""
        if self.hints is None:
            return True
        if hints is None:
            return _UNKNOWN
        return all(want is None or want == got for want, got in zip(self.hints, hints, strict=True))


def _same(held: object, wanted: object) -> bool:
    # True == 1 in Python; a claim `true` must not match the number 1.
    return type(held) is type(wanted) and held == wanted


def _glob(pattern: str) -> str:
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)


class Policy:
    """A settings' rules, compiled; the decision, cached; the ToolGate of local endpoints.

    `refused` counts refused calls (a proxied server's, a generated endpoint's,
    a federation's); `hidden` the tools taken out of tools/list answers.
    """

    def __init__(self, settings: McpAuthzSettings) -> None:
        self.rules = tuple(Rule(r) for r in settings.rules)
        self.default = settings.default == "allow"
        self.error_code = settings.error_code
        self.by_caller = any(r.consumers or r.groups for r in self.rules)
        self.by_scopes = any(r.scopes for r in self.rules)
        self.claim_names = tuple(sorted({c for r in self.rules for c in r.claims}))
        self.by_hints = any(r.hints is not None for r in self.rules)
        self.refused = 0
        self.hidden = 0
        self._cache: dict[tuple[Any, ...], bool | None] = {}

    # -- the decision --------------------------------------------------------------------

    def key(
        self,
        name: str,
        hints: Hints | None,
        consumer: Consumer | None,
        vars: Mapping[str, Any] | None,
    ) -> tuple[Any, ...]:
        """What a decision depends on, as a dict key (only what some rule reads)."""
        scopes = claims = None
        if vars is not None:
            if self.by_scopes:
                scopes = _scopes(vars)
            if self.claim_names:
                claims = self.claims_key(vars.get("claims"))
        return (
            name,
            hints if self.by_hints else None,
            consumer if self.by_caller else None,
            scopes,
            claims,
        )

    def claims_key(self, claims: object) -> bytes | None:
        if not isinstance(claims, Mapping):
            return None
        try:
            return orjson.dumps([claims.get(n) for n in self.claim_names])
        except TypeError:
            return repr([claims.get(n) for n in self.claim_names]).encode()

    def decide(
        self,
        name: str,
        hints: Hints | None,
        consumer: Consumer | None,
        vars: Mapping[str, Any] | None,
    ) -> bool | None:
        """Allowed, refused, or None: it depends on annotations not known (`hints` None)."""
        key = self.key(name, hints, consumer, vars)
        found = self._cache.get(key, _UNKNOWN)
        if found is _UNKNOWN:
            found = self._decide(name, hints, consumer, vars or {})
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()  # bounded, whatever the callers
            self._cache[key] = found
        return found  # type: ignore[no-any-return]

    def _decide(
        self, name: str, hints: Hints | None, consumer: Consumer | None, vars: Mapping[str, Any]
    ) -> bool | None:
        scopes = _scopes(vars) or frozenset()
        claims = vars.get("claims")
        claims = claims if isinstance(claims, Mapping) else {}
        # A rule on annotations not known may or may not match: collect the outcomes
        # still possible; one only is a decision.
        possible: set[bool] = set()
        for rule in self.rules:
            if not rule.names_match(name) or not rule.caller_matches(consumer, scopes, claims):
                continue
            matched = rule.hints_match(hints)
            if matched is False:
                continue
            possible.add(rule.allow)
            if matched is True:
                break
        else:
            possible.add(self.default)
        return possible.pop() if len(possible) == 1 else None

    # -- a generated endpoint's or a federation's gate (mcp.authz.ToolGate) --------------

    def allows(self, request: LocalRequest, name: str, annotations: object) -> bool:
        return (
            self.decide(name, effective_hints(annotations), request.consumer, request.vars) is True
        )

    def refusal(self, name: str) -> tuple[int, str, dict[str, Any]]:
        self.refused += 1
        return self.error_code, f"the tool {name!r} is not allowed for this caller", {"tool": name}

    # -- a proxied server (called by the compiled step) ----------------------------------

    def refuse(
        self, envelope: Any, names: dict[object, str], unknown: bool, modern: bool
    ) -> tuple[int, tuple[tuple[str, str], ...], bytes]:
        """The answer to a proxied request with refused tool calls (`names`: id -> tool);
        the whole batch is refused when one member is, and nothing goes upstream."""
        self.refused += len(names)
        members = envelope.members if envelope.kind == "batch" else (envelope,)
        bodies = []
        for member in members:
            if member.id is None or member.method is None:
                continue  # a notification: nothing to answer
            if member.id in names:
                tool = names[member.id]
                message = f"the tool {tool!r} is not allowed for this caller"
                if unknown:
                    message += (
                        "; the gateway has not seen its annotations yet: list the tools"
                        " (tools/list) first"
                    )
                bodies.append(
                    jsonrpc.encode_error(member.id, self.error_code, message, {"tool": tool})
                )
            else:
                bodies.append(
                    jsonrpc.encode_error(
                        member.id,
                        self.error_code,
                        "not sent: another call of this batch is not allowed",
                    )
                )
        status = 403 if modern else 200
        headers = (("Content-Type", "application/json"),)
        if envelope.kind == "batch":
            return status, headers, b"[" + b",".join(bodies) + b"]"
        return status, headers, bodies[0]

    def list_filter(
        self,
        catalog: dict[str, Hints],
        consumer: Consumer | None,
        vars: Mapping[str, Any] | None,
        ids: tuple[object, ...] | None,
        stream: bool,
    ) -> ToolsListFilter:
        """The body filter of a proxied tools/list answer: refused tools out, each listed
        tool's annotations learned (`catalog`) for deciding its calls later."""

        def keep(tool: dict[str, Any]) -> bool:
            name = tool.get("name")
            if not isinstance(name, str):
                return False
            hints = effective_hints(tool.get("annotations"))
            if self.by_hints:
                if len(catalog) >= _CATALOG_LIMIT and name not in catalog:
                    catalog.clear()
                catalog[name] = hints
            if self.decide(name, hints, consumer, vars) is True:
                return True
            self.hidden += 1
            return False

        return ToolsListFilter(ids, keep, stream)

    def header_name(self, value: bytes) -> str | None:
        """A checked 2026-07-28 `Mcp-Name` header's tool name."""
        text = header_text(value)
        try:
            return text.decode("utf-8") if text is not None else None
        except UnicodeDecodeError:
            return None


def _scopes(vars: Mapping[str, Any]) -> frozenset[str] | None:
    scopes = vars.get("scopes")
    if scopes is None or isinstance(scopes, frozenset):
        return scopes
    return frozenset(scopes) if isinstance(scopes, set | list | tuple) else None


# -- the plugin -----------------------------------------------------------------------


class McpAuthz(Plugin):
    """Which MCP tools a caller may list and call: rules by name, annotations, consumer,
    group, token scopes and claims; the first that matches decides."""

    name = "mcp-authz"
    phase = "mcp"
    priority = -100  # after the envelope check (0), whose parsed envelope it reads
    Config = McpAuthzSettings
    scopes = frozenset({"global", "service"})
    routes = frozenset({"mcp", "virtual"})
    summary = "per-tool rules (globs, annotations, consumers, scopes, claims) on list and call"

    def check(self, settings: Any) -> Iterator[PluginError]:
        for i, rule in enumerate(settings.rules):
            for j, pattern in enumerate(rule.tools):
                if _NAME.fullmatch(pattern) is None:
                    yield PluginError(
                        f"{pattern!r} is not a tool name or a glob of one",
                        at=f"/rules/{i}/tools/{j}",
                        hint="letters, digits, _ - . / and the wildcards * and ?",
                    )
            for claim, value in rule.claims.items():
                if isinstance(value, list) and not value:
                    yield PluginError(
                        "an empty list matches no claim",
                        at=f"/rules/{i}/claims/{claim}",
                        hint="give the values the claim may have",
                    )
        if not settings.rules:
            yield PluginError(
                "no rules",
                at="/rules",
                hint="e.g. rules: [{effect: deny, annotations: {destructiveHint: true}}]",
            )

    def step(self, settings: Any, context: BuildContext, *, fail_open: bool) -> Step:
        for i, rule in enumerate(settings.rules):
            for j, name in enumerate(rule.consumers):
                if name not in context.consumers:
                    raise PluginError(
                        f"no consumer named {name!r}",
                        at=f"/rules/{i}/consumers/{j}",
                        hint="name one of `consumers`",
                    )
        policy = Policy(settings)
        return McpAuthzStep(
            policy,
            frozenset(
                v.encode("ascii")
                for v in versions.KNOWN_VERSIONS
                if versions.validates_routing_headers(v)
            ),
            name=self.name,
            priority=self.priority,
            fail_open=fail_open,
        )
