"""real-ip (the client's address behind trusted proxies) and ip-restriction (allow and deny
networks by that address). Their compiled steps are in plugins/steps/ip.pxi."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from runmcp_fast._dataplane import Step
from runmcp_fast.plugins._steps import CidrSet, IpRestrictionStep, RealIpStep
from runmcp_fast.plugins.builtin.fields import (
    GATEWAY_REQUEST_HEADERS,
    TOKEN,
    doc,
    network,
    packed,
    pointer,
)
from runmcp_fast.plugins.contract import BuildContext, Plugin, PluginError, Settings

# Before authentication, so a consumer's own settings could not apply: not per consumer.
_SCOPES = frozenset({"global", "service", "operation"})


def _networks(texts: list[str], key: str) -> tuple[list[tuple[bytes, int]], list[PluginError]]:
    found, errors = [], []
    for index, text in enumerate(texts):
        try:
            found.append(packed(network(text, pointer(key, index))))
        except PluginError as exc:
            errors.append(exc)
    return found, errors


# -- real-ip ----------------------------------------------------------------------------------


class RealIpSettings(Settings, frozen=True):
    trusted: Annotated[
        list[str],
        doc(
            "The proxies whose word on the client's address is taken: addresses or CIDR"
            " networks, IPv4 or IPv6. A peer not in it is the client, whatever it sends."
        ),
    ]
    header: Annotated[
        str,
        Meta(pattern=TOKEN),
        doc(
            "Where the proxies write the hops: X-Forwarded-For, Forwarded (RFC 7239 `for=`),"
            " or another header holding an address or a list (X-Real-IP)."
        ),
    ] = "X-Forwarded-For"
    recursive: Annotated[
        bool,
        doc(
            "Walk the hops right to left past every trusted one; the first untrusted hop is"
            " the client (nginx's real_ip_recursive). false: the rightmost hop is."
        ),
    ] = True


class RealIp(Plugin):
    """The client's address behind trusted proxies, for ip-restriction and the access log."""

    name = "real-ip"
    phase = "rewrite"
    priority = 10000
    Config = RealIpSettings
    scopes = _SCOPES
    summary = "the client's address from X-Forwarded-For / Forwarded, only from trusted proxies"

    def check(self, settings: Any) -> Iterator[PluginError]:
        if not settings.trusted:
            yield PluginError(
                "no trusted proxies",
                at="/trusted",
                hint="list the proxies in front of the gateway, e.g. trusted: [10.0.0.0/8];"
                " trusting every peer would let any client choose its address",
            )
        yield from _networks(settings.trusted, "trusted")[1]
        lower = settings.header.lower()
        if lower in GATEWAY_REQUEST_HEADERS and lower != "x-forwarded-for":
            yield PluginError(
                f"{settings.header} does not carry client addresses",
                at="/header",
                hint="X-Forwarded-For, Forwarded, or a header like X-Real-IP",
            )

    def step(self, settings: Any, context: BuildContext, *, fail_open: bool) -> Step:
        trusted, _ = _networks(settings.trusted, "trusted")
        return RealIpStep(
            CidrSet(trusted),
            settings.header,
            settings.recursive,
            priority=self.priority,
            fail_open=fail_open,
        )


# -- ip-restriction ---------------------------------------------------------------------------


class IpRestrictionSettings(Settings, frozen=True):
    allow: Annotated[
        list[str],
        doc("Only clients in these networks may use the route (empty: any). IPv4 or IPv6."),
    ] = msgspec.field(default_factory=list)
    deny: Annotated[list[str], doc("Clients in these networks may not (wins over allow).")] = (
        msgspec.field(default_factory=list)
    )
    rejected_code: Annotated[
        int, Meta(ge=400, le=599), doc("The status a refused client gets (problem+json).")
    ] = 403
    rejected_message: Annotated[str, doc("The refusal's detail.")] = (
        "your IP address may not use this route"
    )


class IpRestriction(Plugin):
    """Allow or deny clients by address (the one real-ip found, else the peer's)."""

    name = "ip-restriction"
    phase = "access"
    priority = 3500
    Config = IpRestrictionSettings
    scopes = _SCOPES
    summary = "allow / deny CIDR networks (IPv4, IPv6, IPv4-mapped), matched in C"

    def check(self, settings: Any) -> Iterator[PluginError]:
        if not settings.allow and not settings.deny:
            yield PluginError("give allow, deny or both", hint="e.g. allow: [10.0.0.0/8]")
        yield from _networks(settings.allow, "allow")[1]
        yield from _networks(settings.deny, "deny")[1]

    def step(self, settings: Any, context: BuildContext, *, fail_open: bool) -> Step:
        allow, _ = _networks(settings.allow, "allow")
        deny, _ = _networks(settings.deny, "deny")
        return IpRestrictionStep(
            CidrSet(allow) if allow else None,
            CidrSet(deny) if deny else None,
            settings.rejected_code,
            settings.rejected_message,
            priority=self.priority,
            fail_open=fail_open,
        )
