cdef class Dispatch:
    # Operations sharing one route (`/#Action=X`, `/v1/{name}` and `/v1/{parent}`), told
    # apart per request; openapi/dispatch.py decides their order and has the reference rules.
    cdef readonly tuple targets  # a Target per operation, in the order they are tried
    cdef readonly tuple param_names  # per target: its own path parameter names, or None when
                                     # they are the route's (a merged template renames them)
    cdef readonly str detail  # the 404's detail when no operation's conditions hold
    cdef tuple _keys  # what each request is read for: (is_header, name), query names as sent,
                      # header names in lower case
    cdef tuple _hard  # per target: its conditions, (key index, value bytes or None: present)
    cdef tuple _soft  # per target: key indexes of its required parameters (the more present, the better)
    cdef dict _by_value  # value of key 0 -> indexes of the targets that require it (AWS: 594 values)
    cdef tuple _rest  # indexes of the targets that put no value on key 0

    cdef Py_ssize_t pick(self, bytes url, list lines) except -2
    cdef long _score(self, Py_ssize_t i, list values)
    cdef list _read(self, bytes url, list lines)
