# cython: language_level=3
"""The built-in plugins' steps, compiled: each a `Step` of the data plane (cimported from
_dataplane.pxd), so a route's chain calls them as C functions with their settings
compiled into their fields. The plugins that make them (settings, checks) are in
builtin/; this file only includes the steps, by family:

    steps/common      header lines, secrets compared in constant time, query parameters
    steps/auth        key-auth, basic-auth, consumer-restriction
    steps/ip          real-ip, ip-restriction (CIDR sets matched in C)
    steps/request_id  request-id (ids formatted in C)
    steps/cors        cors
    steps/headers     headers (its request and its response steps)
    steps/mcp_authz   mcp-authz: which MCP tools a caller may list and call
    steps/metrics     prometheus: times and counts each request in its route's RouteStats
    steps/jwt         jwt-auth, mcp-auth (bearer tokens: cached, verified by plugins/jose.py)
    steps/limits      limit-count, limit-req (their state in a C table of fixed-size slots)
    steps/tracing     opentelemetry: W3C trace context, sampling in C, span records
    steps/access_log  access-log: one JSON line per exchange, built in C, written in batches
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memchr, memcmp, memcpy, memmove, memset
from libc.time cimport gmtime_r, time_t, tm
from posix.time cimport CLOCK_REALTIME, CLOCK_THREAD_CPUTIME_ID

from runmcp_fast._dataplane cimport (
    Counters,
    HOOK_LOG,
    HOOK_REQUEST,
    HOOK_RESPONSE,
    PHASE_ACCESS,
    PHASE_MCP,
    PHASE_RESPONSE_HEADERS,
    PHASE_REWRITE,
    ClientProtocol,
    Consumer,
    Pool,
    Request,
    Step,
    Target,
    clock_gettime,
    monotonic,
    timespec,
)


cdef extern from "strings.h" nogil:
    int strncasecmp(const char* s1, const char* s2, size_t n)

import asyncio
import base64
import binascii
import hashlib
import logging
import os
from urllib.parse import unquote_to_bytes

import orjson

from runmcp_fast._dataplane import McpEnvelopeStep, Wait
from runmcp_fast.mcp.authz import GATE_VAR, ChainedFilter
from runmcp_fast.mcp.jsonrpc import Envelope, check_envelope
from runmcp_fast.mcp.server import FederatedEndpoint, ServiceEndpoint
from runmcp_fast.plugins.jose import Refused as _Refused
from runmcp_fast.wire import problem_answer

include "steps/common.pxi"
include "steps/auth.pxi"
include "steps/ip.pxi"
include "steps/request_id.pxi"
include "steps/cors.pxi"
include "steps/headers.pxi"
include "steps/mcp_authz.pxi"
include "steps/metrics.pxi"
include "steps/jwt.pxi"
include "steps/limits.pxi"
include "steps/tracing.pxi"
include "steps/access_log.pxi"
