"""The built-in plugins (their steps are compiled: plugins/_steps.pyx).

Authentication and the restriction that follows it: key-auth, basic-auth,
consumer-restriction (also named acl); the edge (docs/plugins/edge.md):
real-ip, ip-restriction, cors, request-id, headers; mcp-authz, which MCP
tools a caller may list and call (docs/plugins/mcp-authz.md); opentelemetry, trace
context and spans (docs/plugins/tracing.md).
"""

from runmcp_fast.plugins.builtin.auth import Acl, BasicAuth, ConsumerRestriction, KeyAuth
from runmcp_fast.plugins.builtin.cors import Cors
from runmcp_fast.plugins.builtin.headers import Headers
from runmcp_fast.plugins.builtin.ip import IpRestriction, RealIp
from runmcp_fast.plugins.builtin.mcp_authz import McpAuthz
from runmcp_fast.plugins.builtin.request_id import RequestId
from runmcp_fast.plugins.builtin.tracing import OpenTelemetry
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
    McpAuthz,
    OpenTelemetry,
)
