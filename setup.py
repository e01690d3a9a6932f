"""Builds the compiled parts; everything else is declared in pyproject.toml."""

from Cython.Build import cythonize
from setuptools import Extension, setup

# llhttp (third_party/llhttp, vendored source): compiled into the data plane, whose
# request and response parsers call it with C callbacks (dataplane/parse.pxi). Only
# _dataplane needs its header: _dataplane.pxd keeps the parsers opaque, so that a
# compiled step cimporting it (plugins/_steps.pyx, examples/stamp.pyx) builds as before.
LLHTTP = "third_party/llhttp"
LLHTTP_SOURCES = [f"{LLHTTP}/src/llhttp.c", f"{LLHTTP}/src/api.c", f"{LLHTTP}/src/http.c"]
LLHTTP_INCLUDE = [f"{LLHTTP}/include"]

extensions = [
    Extension("runmcp_fast._router", ["runmcp_fast/_router.pyx"]),
    Extension(
        "runmcp_fast._dataplane",
        ["runmcp_fast/_dataplane.pyx", *LLHTTP_SOURCES],
        include_dirs=LLHTTP_INCLUDE,
    ),
    # _jsonkeys.pxd's hash tables and process key (_jsonscan and _fastcheck cimport it).
    Extension("runmcp_fast._jsonkeys", ["runmcp_fast/_jsonkeys.pyx"]),
    Extension("runmcp_fast._jsonscan", ["runmcp_fast/_jsonscan.pyx"]),
    Extension("runmcp_fast._fastcheck", ["runmcp_fast/_fastcheck.pyx"]),
    # The MCP proxy's JSON-RPC envelope check, its common case (mcp/jsonrpc.py binds it).
    Extension("runmcp_fast.mcp._envelope", ["runmcp_fast/mcp/_envelope.pyx"]),
    # The built-in plugins' steps: a separate extension cimporting _dataplane.pxd.
    Extension("runmcp_fast.plugins._steps", ["runmcp_fast/plugins/_steps.pyx"]),
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={"embedsignature": True},
    ),
)
