"""The built-in plugins (their steps are compiled: plugins/_steps.pyx)."""

from runmcp_fast.plugins.builtin.auth import Acl, BasicAuth, ConsumerRestriction, KeyAuth
from runmcp_fast.plugins.builtin.cors import Cors
from runmcp_fast.plugins.builtin.headers import Headers
from runmcp_fast.plugins.builtin.ip import IpRestriction, RealIp
from runmcp_fast.plugins.builtin.request_id import RequestId
from runmcp_fast.plugins.contract import Plugin

BUILTINS: tuple[type[Plugin], ...] = (
    KeyAuth,
    BasicAuth,
    ConsumerRestriction,
    Acl,
    RealIp,
    IpRestriction,
    Cors,
    RequestId,
    Headers,
)
"""Authentication plugins and the restriction that follows them: key-auth, basic-auth,
consumer-restriction (also named acl); the edge plugins (docs/plugins/edge.md): real-ip,
ip-restriction, cors, request-id, headers."""
