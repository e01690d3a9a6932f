# cython: language_level=3
"""The common case of `jsonrpc.check_envelope` in C: one message the fast decoder takes.

A proxied MCP POST is checked once per call; in Python the decoded message's reading
(`fast_envelope`) and the frames around it cost as much as msgspec's decode itself.
`jsonrpc` binds its types here when it is imported (`bind`): this module holds no
rule of its own beyond `fast_envelope`, which jsonrpc's Python path calls too, so the
two can not disagree.
"""

cimport cython
from cpython.object cimport PyObject, PyTypeObject
from cpython.unicode cimport PyUnicode_GET_LENGTH
from libc.string cimport memcmp


cdef extern from "Python.h":
    ctypedef struct PyMemberDef:
        const char* name
        int type
        Py_ssize_t offset
        int flags
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member
    PyTypeObject PyMemberDescr_Type
    int T_OBJECT_EX
    void* PyUnicode_DATA(object)
    int PyUnicode_KIND(object)


cdef object _Envelope = None  # jsonrpc.Envelope
cdef object _UNSET = None  # msgspec.UNSET
cdef object _Fast = None  # jsonrpc._Fast, the fast decoder's message type
cdef object _FastParams = None  # jsonrpc._FastParams, its `params`
cdef tuple _NAMES = ()  # jsonrpc.NAME_BEARING_METHODS's items: (method, "name" or "uri")
cdef object _decode_single = None  # jsonrpc._fast_single.decode

# Where each field of a decoded message lives in the object (-1: read it by name).
# PERF: msgspec keeps a Struct's fields in slots; a generic attribute read of one
# costs ~140 instructions (type MRO walk, descriptor call), six per call; the slot
# itself is a load.
cdef Py_ssize_t _AT_METHOD = -1, _AT_ID = -1, _AT_PARAMS = -1, _AT_RESULT = -1
cdef Py_ssize_t _AT_ERROR = -1, _AT_NAME = -1, _AT_URI = -1


cdef Py_ssize_t _slot(object cls, str name):
    """The offset of field `name` of the Struct type `cls` when it is a plain object
    slot (a member descriptor, as msgspec makes them), else -1."""
    d = cls.__dict__.get(name)
    cdef object kind = type(d)
    if <PyTypeObject*>kind != &PyMemberDescr_Type:
        return -1
    cdef PyMemberDef* m = (<PyMemberDescrObject*><PyObject*>d).d_member
    if m == NULL or m.type != T_OBJECT_EX:
        return -1
    return m.offset


cdef inline object _field(object obj, Py_ssize_t at, str name):
    cdef PyObject* value
    if at >= 0:
        value = (<PyObject**>((<char*><PyObject*>obj) + at))[0]
        if value != NULL:
            return <object>value
    return getattr(obj, name)


def bind(envelope, unset, fast, fast_params, dict names, decode_single):
    global _Envelope, _UNSET, _Fast, _FastParams, _NAMES, _decode_single
    global _AT_METHOD, _AT_ID, _AT_PARAMS, _AT_RESULT, _AT_ERROR, _AT_NAME, _AT_URI
    _Envelope = envelope
    _UNSET = unset
    _Fast = fast
    _FastParams = fast_params
    _NAMES = tuple(names.items())
    _decode_single = decode_single
    _AT_METHOD = _slot(fast, "method")
    _AT_ID = _slot(fast, "id")
    _AT_PARAMS = _slot(fast, "params")
    _AT_RESULT = _slot(fast, "result")
    _AT_ERROR = _slot(fast, "error")
    _AT_NAME = _slot(fast_params, "name")
    _AT_URI = _slot(fast_params, "uri")


cdef object _name_key(str method):
    """`NAME_BEARING_METHODS.get(method)`. PERF: `method` is a new string (msgspec's),
    its hash not yet computed: comparing it with three short ones is cheaper."""
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(method)
    cdef int kind = PyUnicode_KIND(method)
    for known, key in _NAMES:
        if (
            PyUnicode_GET_LENGTH(known) == n
            and PyUnicode_KIND(known) == kind
            and memcmp(PyUnicode_DATA(known), PyUnicode_DATA(method), n * kind) == 0
        ):
            return key
    return None


cpdef object fast_envelope(object msg):
    """The Envelope of a message the fast decoder accepted, or None to ask the slow path."""
    cdef bint fast = type(msg) is _Fast
    method = _field(msg, _AT_METHOD if fast else -1, "method")
    msg_id = _field(msg, _AT_ID if fast else -1, "id")
    result = _field(msg, _AT_RESULT if fast else -1, "result")
    error = _field(msg, _AT_ERROR if fast else -1, "error")
    if method is not _UNSET:
        if len(result) or error is not _UNSET:
            return None
        params = _field(msg, _AT_PARAMS if fast else -1, "params")
        name = None
        if params is not _UNSET and type(method) is str:
            key = _name_key(method)
            if key is not None:
                fast = type(params) is _FastParams
                if key == "name":
                    value = _field(params, _AT_NAME if fast else -1, "name")
                else:
                    value = _field(params, _AT_URI if fast else -1, "uri")
                if type(value) is str:
                    name = value
        if msg_id is _UNSET:
            return _Envelope("notification", method, None, name)
        if msg_id is None:
            return None
        return _Envelope("request", method, msg_id, name, method == "initialize")
    if len(result):
        if error is not _UNSET or msg_id is None or msg_id is _UNSET:
            return None
        return _Envelope("response", None, msg_id)
    if error is not _UNSET:
        return _Envelope("error", None, None if msg_id is _UNSET else msg_id)
    return None


def check_single(bytes body):
    """`check_envelope(body, allow_batch=False)` when it is an Envelope the fast path
    finds; None for anything else (not ASCII, not decoded, refused): ask jsonrpc then.
    PERF: the MCP proxy's envelope step calls this first (no Python frame)."""
    if not body.isascii():
        return None
    try:
        msg = _decode_single(body)
    except Exception:  # ValidationError, DecodeError, RecursionError: jsonrpc's to name
        return None
    if type(msg) is not _Fast:
        return None
    return fast_envelope(msg)
