"""Builds the compiled parts; everything else is declared in pyproject.toml."""

import os
import platform
import sysconfig

from Cython.Build import cythonize
from setuptools import Extension, setup


def _sse42() -> list[str]:
    """-msse4.2 when this build is for an x86-64 CPU that has it (every one since 2008;
    the x86-64-v2 baseline of current distributions): llhttp then scans header names and
    values 16 bytes a step (its `__SSE4_2__` paths) instead of one (get-1k: -400
    instructions per request; more with real browsers' longer heads).
    RUNMCP_PORTABLE=1 builds for any x86-64, e.g. a wheel for other machines."""
    if os.environ.get("RUNMCP_PORTABLE") or platform.machine() not in ("x86_64", "AMD64"):
        return []
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next((line for line in cpuinfo if line.startswith("flags")), "")
    except OSError:
        return []
    return ["-msse4.2"] if " sse4_2" in flags else []


# llhttp (third_party/llhttp, vendored source): compiled into the data plane, whose
# request parser calls it with C callbacks (dataplane/parse.pxi; an upstream's
# response is read by runmcp_fast/_respscan.h). Only
# _dataplane needs its header: _dataplane.pxd keeps the parsers opaque, so that a
# compiled step cimporting it (plugins/_steps.pyx, examples/stamp.pyx) builds as before.
LLHTTP = "third_party/llhttp"
LLHTTP_SOURCES = [f"{LLHTTP}/src/llhttp.c", f"{LLHTTP}/src/api.c", f"{LLHTTP}/src/http.c"]
LLHTTP_INCLUDE = [f"{LLHTTP}/include"]


def _openssl_headers() -> bool:
    """Whether OpenSSL's headers are here (Debian: libssl-dev): runmcp_fast._tls, the
    listeners' TLS on OpenSSL directly, is built then; without it the listeners use
    the event loop's TLS (listeners.py). RUNMCP_NO_OWN_TLS=1 skips it."""
    if os.environ.get("RUNMCP_NO_OWN_TLS"):
        return False
    include = sysconfig.get_config_var("INCLUDEDIR") or "/usr/include"
    return any(
        os.path.exists(os.path.join(d, "openssl", "ssl.h"))
        for d in (include, "/usr/include", "/usr/local/include")
    )


extensions = [
    Extension("runmcp_fast._router", ["runmcp_fast/_router.pyx"]),
    Extension(
        "runmcp_fast._dataplane",
        ["runmcp_fast/_dataplane.pyx", *LLHTTP_SOURCES],
        include_dirs=LLHTTP_INCLUDE,
        extra_compile_args=_sse42(),
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
if _openssl_headers():
    extensions.append(
        Extension("runmcp_fast._tls", ["runmcp_fast/_tls.pyx"], libraries=["ssl", "crypto"])
    )

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={"embedsignature": True},
    ),
)
