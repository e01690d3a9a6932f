"""What the edge plugins check alike: header names and values, networks, JSON pointers."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

from msgspec import Meta

from runmcp_fast.plugins.contract import PluginError

TOKEN = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$"
"""An RFC 9110 token: what a header name is."""
_TOKEN = re.compile(TOKEN)
# A field value on one line: visible ASCII, obs-text, spaces and tabs inside; no CR, LF, NUL.
_VALUE = re.compile(r"[\x21-\x7e\x80-\xff](?:[\x20-\x7e\x80-\xff\t]*[\x21-\x7e\x80-\xff])?")

# The headers the data plane writes itself, with why: no plugin setting may name them.
_FRAMING = "the gateway frames every message itself (Content-Length or chunked)"
_HOP = "hop-by-hop: the gateway decides it for each connection"
GATEWAY_HEADERS: dict[str, str] = {
    "content-length": _FRAMING,
    "transfer-encoding": _FRAMING,
    "connection": _HOP,
    "keep-alive": _HOP,
    "te": _HOP,
    "trailer": _HOP,
    "upgrade": _HOP,
    "proxy-connection": _HOP,
    "host": "the upstream gets the client's Host, or the service's `host` setting",
}
# ...and, on the request side, the ones it adds to what goes upstream.
GATEWAY_REQUEST_HEADERS: dict[str, str] = {
    **GATEWAY_HEADERS,
    "expect": "the gateway answers 100-continue itself",
    "x-forwarded-for": "the gateway appends the peer to it; real-ip reads the client from it",
    "x-forwarded-proto": "the gateway writes it from the listener",
    "x-forwarded-host": "the gateway writes it from Host",
    "via": "the gateway appends itself to it",
}


def doc(text: str) -> Meta:
    return Meta(description=text)


def pointer(*tokens: str | int) -> str:
    """A JSON pointer below the plugin's entry, each token escaped (RFC 6901)."""
    return "".join("/" + str(t).replace("~", "~0").replace("/", "~1") for t in tokens)


def header_name_problems(name: str, at: str, *, request: bool) -> Iterator[PluginError]:
    """What is wrong with `name` as a header a plugin writes or removes (one error at most)."""
    if not _TOKEN.match(name):
        yield PluginError(
            f"{name!r} is not a header name",
            at=at,
            hint="a header name is an RFC 9110 token: letters, digits and !#$%&'*+-.^_`|~",
        )
        return
    reserved = (GATEWAY_REQUEST_HEADERS if request else GATEWAY_HEADERS).get(name.lower())
    if reserved is not None:
        yield PluginError(
            f"{name} is the gateway's to write", at=at, hint=f"leave it out: {reserved}"
        )


def header_value_problems(value: str, at: str) -> Iterator[PluginError]:
    if "\r" in value or "\n" in value:
        yield PluginError(
            "a header value can not hold CR or LF",
            at=at,
            hint="one line: a CR/LF would end the header and start another (header injection)",
        )
    elif not _VALUE.fullmatch(value) or not _latin1(value):
        yield PluginError(
            "not a header value",
            at=at,
            hint="printable characters (Latin-1), no control characters, no space at either end",
        )


def _latin1(value: str) -> bool:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def network(text: str, at: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An address or CIDR network of a setting; PluginError with the likely fix."""
    if "%" in text:
        raise PluginError(
            f"{text!r} names an IPv6 zone",
            at=at,
            hint=f"leave the zone out ({text.split('%', 1)[0]}): rules match addresses only",
        )
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise PluginError(
            f"{text!r} is not an IP address or network",
            at=at,
            hint="an address or CIDR network, IPv4 or IPv6: 192.0.2.7, 10.0.0.0/8, 2001:db8::/32",
        ) from None
    raise PluginError(
        f"{text!r} has host bits set past its prefix",
        at=at,
        hint=f"did you mean {loose}?",
    )


def packed(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> tuple[bytes, int]:
    """A network as the compiled CidrSet takes it: 16 bytes, IPv4 mapped (::ffff:a.b.c.d)."""
    if net.version == 4:
        return b"\0" * 10 + b"\xff\xff" + net.network_address.packed, net.prefixlen + 96
    return net.network_address.packed, net.prefixlen
