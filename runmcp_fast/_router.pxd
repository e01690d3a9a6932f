# cython: language_level=3
"""The router's C entry point, for another extension (the data plane) to cimport.

`Router.match` makes a Match object and is called through Python's call
protocol; a gateway request needs neither: it wants the target and, only for
routes that use them, the params as a dict. `match_hit` walks the same tables
(same rules, same answers: docs/routing.md) and fills a RouteHit instead.
"""

from cpython.object cimport PyObject
from libc.stdint cimport int32_t


cdef enum:
    ROUTE_MAX_PARAMS = 16


cdef struct RouteHit:
    # Borrowed from the matched Route: valid while the caller holds the Router.
    PyObject* target
    PyObject* param_names     # tuple of str
    int npairs                # offset pairs in offs (a prefix rest is the last)
    int32_t offs[2 * ROUTE_MAX_PARAMS + 2]


# The matched path's buffer (str or bytes, what hit_params slices), or None
# for no match. `router` must be a compiled runmcp_fast._router.Router.
cdef object match_hit(object router, object host, object method, object path, RouteHit* hit)

# The names of the hit's values (`names`, or the route's own when None) and, in
# `count`, how many values have one: the values hit_params makes, in order.
cdef tuple hit_names(const RouteHit* hit, object names, Py_ssize_t* count)

# {name: value} for the hit's params, names zipped with the recorded values in
# order; `names` None means the route's own names.
cdef dict hit_params(object buf, const RouteHit* hit, object names)
