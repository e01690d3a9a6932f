"""The built-in plugins (their steps are compiled: plugins/_steps.pyx)."""

from runmcp_fast.plugins.builtin.auth import Acl, BasicAuth, ConsumerRestriction, KeyAuth
from runmcp_fast.plugins.contract import Plugin

BUILTINS: tuple[type[Plugin], ...] = (KeyAuth, BasicAuth, ConsumerRestriction, Acl)
