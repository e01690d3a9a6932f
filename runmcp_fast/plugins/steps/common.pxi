# -- what the built-in steps share: reading the kept header lines, comparing secrets -----


cdef inline bint _name_is(bytes name, bytes lower):
    """A kept header's name, case-insensitively, against a lower-case one."""
    return len(name) == len(lower) and strncasecmp(name, lower, len(lower)) == 0


cdef Py_ssize_t _find_header(list lines, bytes lower, Py_ssize_t* count):
    """The index (in `lines`, 4 per header) of the last header `lower`; -1 if none.

    `count` is how many there are: a credential sent twice is ambiguous (two
    parsers downstream could read different ones), so it is refused.
    """
    cdef Py_ssize_t i, found = -1
    count[0] = 0
    if lines is None:
        return -1
    for i in range(0, len(lines), 4):
        if _name_is(<bytes>lines[i], lower):
            count[0] += 1
            found = i
    return found


cdef bint _same_secret(bytes a, bytes b):
    """Equal, in time that depends on the length only (never on where they differ)."""
    cdef Py_ssize_t i, n = len(a)
    cdef unsigned char diff = 0
    cdef const unsigned char* p
    cdef const unsigned char* q
    if n != len(b):
        return False
    p = <const unsigned char*>PyBytes_AS_STRING(a)
    q = <const unsigned char*>PyBytes_AS_STRING(b)
    for i in range(n):
        diff |= p[i] ^ q[i]
    return diff == 0


cdef tuple _query_param(bytes url, bytes name):
    """(the value of query parameter `name`, percent-decoded, or None; how many there are)."""
    cdef Py_ssize_t mark = url.find(b"?")
    if mark < 0:
        return None, 0
    value = None
    count = 0
    prefix = name + b"="
    for part in url[mark + 1:].split(b"&"):
        if part == name or part.startswith(prefix):
            count += 1
            value = unquote_to_bytes(part[len(prefix):]) if len(part) > len(name) else b""
    return value, count


cdef bytes _without_query_param(bytes url, bytes name):
    """`url` with every `name` query parameter left out."""
    cdef Py_ssize_t mark = url.find(b"?")
    if mark < 0:
        return url
    prefix = name + b"="
    kept = [p for p in url[mark + 1:].split(b"&") if p != name and not p.startswith(prefix)]
    return url[:mark] + (b"?" + b"&".join(kept) if kept else b"")


cdef _drop_line(Request req, Py_ssize_t at):
    """Leave the kept header at `at` out of what goes upstream."""
    del req.lines[at:at + 4]
    if not req.lines:
        req.lines = None


cdef inline bint _identified(Request req):
    """An earlier authentication step found a consumer (not its anonymous stand-in)."""
    return req.consumer is not None and not req.anonymous
