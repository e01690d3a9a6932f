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


cdef object _joined(list lines, bytes lower):
    """Every kept header `lower`, its values joined with ", " in order; None if none."""
    cdef Py_ssize_t i
    cdef bytes name
    found = None
    if lines is None:
        return None
    for i in range(0, len(lines), 4):
        name = <bytes>lines[i]
        if _name_is(name, lower):
            found = lines[i + 2] if found is None else found + b", " + lines[i + 2]
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


cdef inline _add_line(Request req, bytes name, bytes value):
    """Send `name: value` upstream too (after the kept header lines)."""
    if req.lines is None:
        req.lines = []
    req.lines += (name, b": ", value, b"\r\n")


cdef inline bint _one_of(const char* name, Py_ssize_t n, tuple lowers):
    """`name` (n bytes) is, case-insensitively, one of `lowers` (lower-case bytes)."""
    cdef bytes lower
    for lower in lowers:
        if n == len(lower) and strncasecmp(name, lower, n) == 0:
            return True
    return False


cdef _drop_named(Request req, tuple lowers):
    """Send none of the headers named in `lowers` upstream (the list is rebuilt only when
    one of them is there)."""
    cdef list lines = req.lines
    cdef Py_ssize_t i, n
    cdef bytes name
    if lines is None:
        return
    n = len(lines)
    for i in range(0, n, 4):
        name = <bytes>lines[i]
        if _one_of(name, len(name), lowers):
            break
    else:
        return
    kept = [
        piece
        for j in range(0, n, 4)
        if not _one_of(<bytes>lines[j], len(<bytes>lines[j]), lowers)
        for piece in lines[j:j + 4]
    ]
    req.lines = kept or None


cdef list _drop_response_lines(list chunks, tuple lowers, bytes prefix):
    """Response header lines (CRLF-terminated lines, in chunks) without those named in
    `lowers` (lower case) or whose name starts with `prefix` (lower case, or None).

    PERF: a C scan; the same list comes back when nothing is dropped (the usual case),
    else slices of the chunks around the dropped lines.
    """
    cdef Py_ssize_t ci, n, pos, eol, colon, keep_from
    cdef Py_ssize_t plen = len(prefix) if prefix is not None else 0
    cdef const char* buf
    cdef const char* found
    cdef bytes chunk
    cdef list out = None
    for ci in range(len(chunks)):
        chunk = <bytes>chunks[ci]
        buf = PyBytes_AS_STRING(chunk)
        n = len(chunk)
        pos = keep_from = 0
        while pos < n:
            found = <const char*>memchr(buf + pos, 10, n - pos)
            eol = (found - buf) + 1 if found != NULL else n
            found = <const char*>memchr(buf + pos, 58, eol - pos)
            colon = found - buf if found != NULL else eol
            if (
                (plen and colon - pos >= plen and strncasecmp(buf + pos, prefix, plen) == 0)
                or _one_of(buf + pos, colon - pos, lowers)
            ):
                if out is None:
                    out = chunks[:ci]
                if pos > keep_from:
                    out.append(chunk[keep_from:pos])
                keep_from = eol
            pos = eol
        if out is not None:
            if keep_from == 0:
                out.append(chunk)
            elif keep_from < n:
                out.append(chunk[keep_from:])
    return chunks if out is None else out


def drop_response_lines(list chunks, names=(), prefix=None):
    """`_drop_response_lines` for tests: names and prefix as str."""
    return _drop_response_lines(
        chunks,
        tuple(name.lower().encode("latin-1") for name in names),
        prefix.lower().encode("latin-1") if prefix else None,
    )
