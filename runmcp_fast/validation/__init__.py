"""Contract validation: each operation's OpenAPI parameters and JSON bodies, compiled to msgspec.

`compile_operation(spec, op, Bundler(spec))` gives the `OperationValidator`
the data plane calls per request; `compile_schema(schema)` compiles one
standalone JSON Schema. See docs/validation.md.
"""

from runmcp_fast.validation.bundle import Bundler
from runmcp_fast.validation.issues import Issue
from runmcp_fast.validation.library import Fallback
from runmcp_fast.validation.operation import OperationValidator, Verdict, compile_operation
from runmcp_fast.validation.schema import SchemaValidator, compile_schema

__all__ = [
    "Bundler",
    "Fallback",
    "Issue",
    "OperationValidator",
    "SchemaValidator",
    "Verdict",
    "compile_operation",
    "compile_schema",
]
