# cython: language_level=3
"""Declarations of the compiled data plane, one `.pxd` per stage (see _dataplane.pyx).

A cdef class's fields are declared (and documented) here, so another
extension can `cimport` a class to call its C methods or subclass it: a
compiled step lives in its own module and still runs as a C call.
"""

# The router's C entry point: ClientProtocol._route matches without a Match object.
from runmcp_fast._router cimport RouteHit
from cpython.object cimport PyObject

cdef class Clock
cdef class RouteStats
cdef class Replica
cdef class Replicas
cdef class Target
cdef class Dispatch
cdef class Step
cdef class Chain
cdef class Consumer
cdef class Request
cdef class ServerContext
cdef class ClientProtocol
cdef class LocalStream
cdef class UpstreamConnection
cdef class Pool
cdef class OwnReads

include "dataplane/clock.pxd"
include "dataplane/stats.pxd"
include "dataplane/target.pxd"
include "dataplane/dispatch.pxd"
include "dataplane/chain.pxd"
include "dataplane/request.pxd"
include "dataplane/reads.pxd"
include "dataplane/client.pxd"
include "dataplane/local.pxd"
include "dataplane/upstream.pxd"
include "dataplane/pool.pxd"
include "dataplane/replicas.pxd"
