# cython: language_level=3
"""The common case of `jsonrpc.check_envelope` in C: one message the fast decoder takes.

A proxied MCP POST is checked once per call; in Python the decoded message's reading
(`fast_envelope`) and the frames around it cost as much as msgspec's decode itself.
`jsonrpc` binds its types here when it is imported (`bind`): this module holds no
rule of its own beyond `fast_envelope`, which jsonrpc's Python path calls too, so the
two can not disagree.
"""

cimport cython

cdef object _Envelope = None  # jsonrpc.Envelope
cdef object _UNSET = None  # msgspec.UNSET
cdef object _Fast = None  # jsonrpc._Fast, the fast decoder's message type
cdef dict _NAMES = None  # jsonrpc.NAME_BEARING_METHODS: method -> "name" or "uri"
cdef object _decode_single = None  # jsonrpc._fast_single.decode


def bind(envelope, unset, fast, dict names, decode_single):
    global _Envelope, _UNSET, _Fast, _NAMES, _decode_single
    _Envelope = envelope
    _UNSET = unset
    _Fast = fast
    _NAMES = names
    _decode_single = decode_single


cpdef object fast_envelope(object msg):
    """The Envelope of a message the fast decoder accepted, or None to ask the slow path."""
    method = msg.method
    msg_id = msg.id
    if method is not _UNSET:
        if len(msg.result) or msg.error is not _UNSET:
            return None
        params = msg.params
        name = None
        if params is not _UNSET:
            key = _NAMES.get(method)
            if key is not None:
                value = params.name if key == "name" else params.uri
                if type(value) is str:
                    name = value
        if msg_id is _UNSET:
            return _Envelope("notification", method, None, name)
        if msg_id is None:
            return None
        return _Envelope("request", method, msg_id, name, method == "initialize")
    if len(msg.result):
        if msg.error is not _UNSET or msg_id is None or msg_id is _UNSET:
            return None
        return _Envelope("response", None, msg_id)
    if msg.error is not _UNSET:
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
