"""The built-in plugins (their steps are compiled: plugins/_steps.pyx).

Authentication and the restriction that follows it: key-auth, basic-auth,
jwt-auth, mcp-auth (MCP endpoints: docs/plugins/auth-tokens.md),
consumer-restriction (also named acl); the edge (docs/plugins/edge.md):
real-ip, ip-restriction, cors, request-id, headers; mcp-authz, which MCP
tools a caller may list and call (docs/plugins/mcp-authz.md); limit-count and limit-req,
rate limits per worker or across a cluster through Redis (docs/plugins/limits.md);
prometheus (the metrics' counts); opentelemetry, trace context and spans
(docs/plugins/tracing.md); access-log (a JSON line per request: docs/plugins/access-log.md).
"""

from runmcp_fast.plugins.builtin.access_log import AccessLog
from runmcp_fast.plugins.builtin.auth import Acl, BasicAuth, ConsumerRestriction, KeyAuth
from runmcp_fast.plugins.builtin.cors import Cors
from runmcp_fast.plugins.builtin.headers import Headers
from runmcp_fast.plugins.builtin.ip import IpRestriction, RealIp
from runmcp_fast.plugins.builtin.jwt import JwtAuth
from runmcp_fast.plugins.builtin.limits import LimitCount, LimitReq
from runmcp_fast.plugins.builtin.mcp_auth import McpAuth
from runmcp_fast.plugins.builtin.mcp_authz import McpAuthz
from runmcp_fast.plugins.builtin.metrics import Prometheus
from runmcp_fast.plugins.builtin.request_id import RequestId
from runmcp_fast.plugins.builtin.tracing import OpenTelemetry
from runmcp_fast.plugins.contract import Plugin

BUILTINS: tuple[type[Plugin], ...] = (
    KeyAuth,
    BasicAuth,
    JwtAuth,
    McpAuth,
    ConsumerRestriction,
    Acl,
    RealIp,
    IpRestriction,
    Cors,
    RequestId,
    Headers,
    McpAuthz,
    Prometheus,
    AccessLog,
    LimitCount,
    LimitReq,
    OpenTelemetry,
)
