"""The embeddable compiled router: host + method + path template -> target.

The implementation is the Cython module `runmcp_fast._router`; its contract is
docs/routing.md.
"""

from runmcp_fast._router import MAX_PARAMS, Match, Route, RouteConflict, Router, TemplateError

__all__ = ["MAX_PARAMS", "Match", "Route", "RouteConflict", "Router", "TemplateError"]
