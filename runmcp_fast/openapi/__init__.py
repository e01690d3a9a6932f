"""OpenAPI 3.0/3.1 and Swagger 2.0 specs to operations and routes.

`load_spec(path)` gives a `Spec` (or raises `SpecError` listing every
problem); `add_spec_routes(router, spec)` adds one route per operation.
"""

from runmcp_fast.openapi.documents import Resolved
from runmcp_fast.openapi.loader import load_spec, load_spec_data
from runmcp_fast.openapi.model import Operation, Parameter, Spec
from runmcp_fast.openapi.routes import add_spec_routes
from runmcp_fast.problems import DocumentError, Problem, SpecError

__all__ = [
    "DocumentError",
    "Operation",
    "Parameter",
    "Problem",
    "Resolved",
    "Spec",
    "SpecError",
    "add_spec_routes",
    "load_spec",
    "load_spec_data",
]
