"""The built-in plugins (their steps are compiled: plugins/_steps.pyx).

Authentication and the restriction that follows it: key-auth, basic-auth,
consumer-restriction (also named acl); mcp-authz, which MCP tools a caller
may list and call.
"""

from runmcp_fast.plugins.builtin.auth import Acl, BasicAuth, ConsumerRestriction, KeyAuth
from runmcp_fast.plugins.builtin.mcp_authz import McpAuthz
from runmcp_fast.plugins.contract import Plugin

BUILTINS: tuple[type[Plugin], ...] = (KeyAuth, BasicAuth, ConsumerRestriction, Acl, McpAuthz)
