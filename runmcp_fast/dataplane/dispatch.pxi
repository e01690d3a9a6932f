# -- one route, several operations: which one a request is for (dispatch.pxd) ------------

from urllib.parse import unquote_to_bytes as _unquote_to_bytes


cdef class Dispatch:
    """Picks a route's operation from the request's query and headers.

    The rules are openapi/dispatch.py's `pick`: only targets whose conditions all
    hold; the most conditions, then the most required parameters present, then the
    first. Only a route with several operations has one: `Target.dispatch` is None
    on every other, and the data plane checks that one pointer (`_route`).
    """

    def __init__(self, targets, conditions, preferred, param_names, str detail):
        """`conditions[i]` and `preferred[i]`: (location, name, value or None) for
        `targets[i]`; `param_names[i]`: a tuple when its names are not the route's."""
        self.targets = tuple(targets)
        self.param_names = tuple(param_names)
        self.detail = detail
        if not (len(self.targets) == len(conditions) == len(preferred) == len(self.param_names)):
            raise ValueError("one entry per target in conditions, preferred and param_names")
        keys = {}

        def key(location, name):
            k = (location == "header", name.lower().encode() if location == "header" else name.encode())
            return keys.setdefault(k, len(keys))

        self._hard = tuple(
            tuple((key(loc, name), None if value is None else value.encode()) for loc, name, value in conds)
            for conds in conditions
        )
        self._soft = tuple(tuple(key(loc, name) for loc, name, _value in conds) for conds in preferred)
        self._keys = tuple(keys)
        self._by_value = {}
        rest = []
        for i, hard in enumerate(self._hard):
            values = [value for k, value in hard if k == 0 and value is not None]
            if values:
                self._by_value.setdefault(values[0], []).append(i)
            else:
                rest.append(i)
        self._by_value = {value: tuple(found) for value, found in self._by_value.items()}
        self._rest = tuple(rest)

    def choose(self, bytes url, list lines=None):
        """`pick` from Python (tests, tools): the index into `targets`, or -1.
        `lines`: header lines as the data plane keeps them (name, b": ", value, b"\\r\\n")."""
        return self.pick(url, lines)

    cdef Py_ssize_t pick(self, bytes url, list lines) except -2:
        """The index of the request's target, or -1 when no target's conditions hold."""
        cdef list values = self._read(url, lines)
        cdef tuple first = ()
        cdef Py_ssize_t best = -1, i, k
        cdef long best_score = -1, score
        if self._by_value and values[0] is not None:
            first = self._by_value.get(values[0], ())
        for group in (first, self._rest):
            for i in group:
                score = self._score(i, values)
                # Ties go to the earlier target (the order openapi/dispatch.py ranked).
                if score > best_score or (score == best_score and score >= 0 and i < best):
                    best = i
                    best_score = score
        return best

    cdef long _score(self, Py_ssize_t i, list values):
        """-1 when a condition fails; else (conditions, required present) as one number."""
        cdef tuple hard = <tuple>self._hard[i]
        cdef long present = 0
        for k, value in hard:
            got = values[k]
            if got is None or (value is not None and got != value):
                return -1
        for k in <tuple>self._soft[i]:
            if values[k] is not None:
                present += 1
        return len(hard) * 65536 + present

    cdef list _read(self, bytes url, list lines):
        """Per key, the request's value (the first one given), or None."""
        cdef tuple keys = self._keys
        cdef list values = [None] * len(keys)
        cdef Py_ssize_t q = url.find(b"?")
        cdef Py_ssize_t k
        cdef bint any_query = False
        for k in range(len(keys)):
            is_header, name = keys[k]
            if is_header:
                value = _header_value(lines, name)
                if value is not None:
                    values[k] = (<bytes>value).strip(b" \t")
            else:
                any_query = True
        if not any_query or q < 0:
            return values
        for part in url[q + 1:].split(b"&"):
            name, _eq, value = (<bytes>part).partition(b"=")
            if b"%" in name or b"+" in name:
                name = _unquote_to_bytes(name.replace(b"+", b" "))
            for k in range(len(keys)):
                if values[k] is None and not keys[k][0] and keys[k][1] == name:
                    if b"%" in value or b"+" in value:
                        value = _unquote_to_bytes(value.replace(b"+", b" "))
                    values[k] = value
        return values
