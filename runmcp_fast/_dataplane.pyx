# cython: language_level=3
"""The compiled data plane: one extension, its source in the request's order.

One module so the hot calls between these classes are C calls on typed
attributes (perf on the pure-Python version: a third of the CPU went to
attribute lookups on `__slots__`). As in uvloop, each stage is its own file,
included here, with its fields declared and documented in a `.pxd` beside it
(`_dataplane.pxd` gathers them; another extension cimports from it):

    dataplane/clock      the one periodic sweep every deadline is checked by
    dataplane/stats      a route's counters for metrics, bumped in C
    dataplane/headers    header kinds, header lines, bytes helpers
    dataplane/send       writing: on the socket when the transport holds nothing
    dataplane/reads      reading: the socket polled by the loop, recv() by us
    dataplane/replicas   a service's replicas: balancing, ejection, the retry budget
    dataplane/target     what a route leads to: replicas, settings, its chain
    dataplane/dispatch   one route, several operations: which one a request is for
    dataplane/chain      steps by phase; Python steps and their request view
    dataplane/steps      the built-in steps: contract check, MCP session routing
    dataplane/request    per-request state
    dataplane/parse      llhttp's C callbacks: the request parser's, the response parser's
    dataplane/client     the client protocol: parse, route, run the chain, stream back
    dataplane/local      answers the gateway makes itself: local requests, streams
    dataplane/upstream   one keep-alive upstream connection, its response parsed
    dataplane/pool       the pool of those per upstream

docs/architecture.md walks a request through them.
"""

cimport cython
from cpython cimport array
from cpython.bytearray cimport PyByteArray_AS_STRING
from cpython.bytes cimport (
    PyBytes_AS_STRING,
    PyBytes_CheckExact,
    PyBytes_FromStringAndSize,
    PyBytes_GET_SIZE,
)
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE, PyList_New
from cpython.object cimport PyObject
from cpython.pycapsule cimport PyCapsule_CheckExact, PyCapsule_GetPointer, PyCapsule_IsValid
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.unicode cimport PyUnicode_DATA, PyUnicode_GET_LENGTH
from libc.stdint cimport uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memchr, memcmp, memcpy, memset

from runmcp_fast._fastcheck cimport program_check
from runmcp_fast._router cimport RouteHit, hit_names, hit_params, match_hit


cdef extern from "strings.h" nogil:
    int strncasecmp(const char* s1, const char* s2, size_t n)

import asyncio
import os
import ssl
import time
import weakref
from collections import deque

# httptools' URL parser, for the rare absolute-form request target (client.pxi):
# requests and responses are parsed by llhttp itself (dataplane/parse.pxi).
from httptools import HttpParserError, parse_url

from runmcp_fast.wire import (
    CONTINUE,
    IDEMPOTENT,
    host_is_valid,
    path_problem,
    problem,
    problem_answer,
    response,
    status_line,
)

cdef extern from "Python.h":
    # Not in Cython's cpython/unicode.pxd: a compact ASCII str, one byte per character.
    bint PyUnicode_IS_ASCII(object o)

include "dataplane/clock.pxi"
include "dataplane/stats.pxi"
include "dataplane/headers.pxi"
include "dataplane/send.pxi"
include "dataplane/reads.pxi"
include "dataplane/replicas.pxi"
include "dataplane/target.pxi"
include "dataplane/dispatch.pxi"
include "dataplane/chain.pxi"
include "dataplane/steps.pxi"
include "dataplane/request.pxi"
include "dataplane/llhttp.pxd"  # (here, not in _dataplane.pxd: modules cimporting it need no llhttp.h)
include "dataplane/parse.pxi"
include "dataplane/client.pxi"
include "dataplane/local.pxi"
include "dataplane/upstream.pxi"
include "dataplane/pool.pxi"
