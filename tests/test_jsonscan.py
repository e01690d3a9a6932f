"""runmcp_fast._jsonscan.duplicate_key: tables, a json.loads reference, and garbage.

1. Table tests for the cases a hand-written scanner gets wrong: escapes that
   make two spellings one key, quotes and braces inside strings, the switch
   from linear search to a hash table at 33 keys, deep nesting, pointer escaping.
2. On generated documents (small alphabets, so keys repeat; every character
   spelled raw or escaped at random; random whitespace), it agrees with a
   reference built on json.loads(object_pairs_hook=...), including which
   duplicate is reported first.
3. Any bytes, and valid documents cut or damaged anywhere, return None or a
   str; inputs placed flush against an unreadable page (in a child process, so
   a stray read fails the test instead of killing the run) show no read strays
   outside the buffer and get the same answer as in an ordinary buffer.
4. The key machinery is _jsonkeys.pxd, shared with _fastcheck: both modules
   hash and summarise a key alike under one process key, and both find the
   same repeats.

Runs are deterministic by default (`derandomize`); set HYPOTHESIS_EXPLORE=1
for a longer random search.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import DrawFn, composite
from isolation import PAGE, flush, guard_pages, needs_mprotect, run_isolated

from runmcp_fast import _fastcheck, _jsonkeys, _jsonscan
from runmcp_fast._jsonscan import duplicate_key

_EXPLORE = bool(os.environ.get("HYPOTHESIS_EXPLORE"))
_BASE = settings(
    deadline=None, derandomize=not _EXPLORE, suppress_health_check=[HealthCheck.too_slow]
)


def examples(n: int) -> int:
    return n * 20 if _EXPLORE else n


# -- the reference ---------------------------------------------------------------------------


class _Pairs(list[tuple[str, Any]]):
    """An object as json.loads saw it: every member, in order, duplicates kept."""


def _token(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _first_duplicate(node: Any, path: str) -> str | None:
    # Pre-order: a member's key comes before its value in the text, so a repeated
    # key is found before anything nested in that member's value.
    if isinstance(node, _Pairs):
        seen: set[str] = set()
        for key, value in node:
            here = f"{path}/{_token(key)}"
            if key in seen:
                return here
            seen.add(key)
            found = _first_duplicate(value, here)
            if found is not None:
                return found
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found = _first_duplicate(value, f"{path}/{i}")
            if found is not None:
                return found
    return None


def reference(data: bytes) -> str | None:
    return _first_duplicate(json.loads(data, object_pairs_hook=_Pairs), "")


# -- tables ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "want"),
    [
        # no duplicates
        (rb"{}", None),
        (rb"[]", None),
        (rb'{"a":1,"b":2}', None),
        (rb'[{"a":1},{"a":1}]', None),  # siblings do not share keys
        (rb'{"a":{"b":1},"b":2}', None),  # nor do parent and child
        (rb'{"a":{"a":{"a":1}}}', None),
        (rb'{"a":1,"A":2}', None),
        (rb'{"a":1,"a ":2}', None),
        (rb'{"\u0061":1,"\u0062":2}', None),
        (rb'{"\\":1,"\"":2,"\/":3}', None),
        (rb'{"a\u0000":1,"a":2}', None),
        (rb'{"a\\u0000":1,"a\\u0000":2}', "/a\\u0000"),
        # same length, same first and last 8 bytes: only the middle differs
        (rb'{"aaaaaaaaXbbbbbbbb":1,"aaaaaaaaYbbbbbbbb":2}', None),
        (rb'{"aaaaaaaaXbbbbbbbb":1,"aaaaaaaaXbbbbbbbb":2}', "/aaaaaaaaXbbbbbbbb"),
        (rb'{"abcdefgh":1,"abcdefgi":2,"abcdefg":3,"abcdefgh":4}', "/abcdefgh"),
        # top-level scalars
        (b"1", None),
        (b"-1.5e+300", None),
        (b"true", None),
        (b"false", None),
        (b"null", None),
        (b'"{\\"a\\":1,\\"a\\":2}"', None),
        (b'  \n{"a" : 1 ,\t"b":2 }\r\n', None),
        # plain duplicates, with and without whitespace
        (rb'{"a":1,"a":2}', "/a"),
        (rb'{ "a" : 1 , "a" : 2 }', "/a"),
        (rb'{"a":1,"b":2,"a":3}', "/a"),
        (rb'{"a":{"x":1},"a":[]}', "/a"),
        (rb'{"":1,"":2}', "/"),
        # nested, arrays of objects
        (rb'{"items":[{},{"a":1,"a":2}]}', "/items/1/a"),
        (rb'[[],[1,[{"k":[{"z":0,"z":0}]}]]]', "/1/1/0/k/0/z"),
        (rb'{"a":{"b":{"c":1,"c":1}}}', "/a/b/c"),
        (rb'{"a":{"b":1},"a":2}', "/a"),
        # the first in document order: the inner repeat comes before the outer one
        (rb'{"a":1,"o":{"x":1,"x":2},"a":3}', "/o/x"),
        (rb'{"a":1,"a":{"x":1,"x":2}}', "/a"),
        (rb'[{"p":1,"p":2},{"q":1,"q":2}]', "/0/p"),
        # escapes: one key, two spellings
        (rb'{"a":1,"\u0061":2}', "/a"),
        (rb'{"\u0061":1,"a":2}', "/a"),
        (rb'{"\u0041":1,"\u0041":2}', "/A"),
        (rb'{"\u00e9":1,"\u00E9":2}', "/\u00e9"),
        ('{"é":1,"\\u00e9":2}'.encode(), "/\u00e9"),
        ('{"€":1,"\\u20ac":2}'.encode(), "/\u20ac"),
        (rb'{"/":1,"\/":2}', "/~1"),
        (rb'{"a/b":1,"a\/b":2}', "/a~1b"),
        (rb'{"\n":1,"\u000a":2}', "/\n"),
        (rb'{"\t":1,"\u0009":2}', "/\t"),
        # a surrogate pair equals the raw character; a lone surrogate only itself
        ('{"😀":1,"\\ud83d\\ude00":2}'.encode(), "/😀"),
        (rb'{"\uD83D\uDE00":1,"\ud83d\ude00":2}', "/😀"),
        (rb'{"\ud83d":1,"\ud83d\ude00":2}', None),
        (rb'{"\ud83d":1,"\uD83D":2}', "/\ud83d"),
        (rb'{"\ude00\ud83d":1,"\ud83d\ude00":2}', None),
        # keys with quotes and backslashes
        (rb'{"\"":1,"\"":2}', '/"'),
        (rb'{"\"":1,"\u0022":2}', '/"'),
        (rb'{"\\":1,"\\":2}', "/\\"),
        (rb'{"\\":1,"\u005c":2}', "/\\"),
        (rb'{"a\\":1,"a\\\"":2,"a\\\"":3}', '/a\\"'),
        (rb'{"\\\\\"\\":1,"\\\\\"\\":2}', '/\\\\"\\'),
        # unicode keys
        ('{"ключ":1,"キー":2,"ключ":3}'.encode(), "/ключ"),
        ('{"日本":{"語":1,"語":2}}'.encode(), "/日本/語"),
        # strings with braces, colons, quotes, commas in values and keys
        (rb'{"a":"}","a":"{"}', "/a"),
        (rb'{"a":"{\"a\":1,\"a\":2}","b":"]"}', None),
        (rb'{"x":"\\","y":"\\\"","x":1}', "/x"),
        (rb'{"x":"a\"b\\\"c\\\\","x":1}', "/x"),
        (rb'{"{":1,"}":2,":":3,",":4,"[":5,"]":6,":":7}', "/:"),
        (rb'{"a:1,a":1,"a":2}', None),
        # pointer escaping
        (rb'{"~":1,"~":2}', "/~0"),
        (rb'{"~1":1,"~1":2}', "/~01"),
        (rb'{"a/b~c":{"x~/":1,"x~/":2}}', "/a~1b~0c/x~0~1"),
        (rb'{"/":{"~":[{"":0,"":0}]}}', "/~1/~0/0/"),
        # keys escaped in a parent, then popped child arena
        (rb'{"\u0061":{"\u0062":1,"c":2},"a":3}', "/a"),
        (rb'{"\u0061":[{"\u0062":1}],"\u0061":3}', "/a"),
        (rb'{"p\u0061":{"\u0062":1,"b":2}}', "/pa/b"),
    ],
)
def test_table(doc: bytes, want: str | None) -> None:
    assert reference(doc) == want  # the table is right about JSON, not just the scanner
    assert duplicate_key(doc) == want


def test_accepts_bytes_bytearray_memoryview() -> None:
    doc = b'{"a":[{"b":1,"b":2}]}'
    assert duplicate_key(doc) == "/a/0/b"
    assert duplicate_key(bytearray(doc)) == "/a/0/b"
    assert duplicate_key(memoryview(doc)) == "/a/0/b"
    assert duplicate_key(memoryview(b"xx" + doc)[2:]) == "/a/0/b"
    assert duplicate_key(memoryview(doc)[:8]) is None  # a cut document: no read past the view


def test_rejects_non_buffers() -> None:
    with pytest.raises(TypeError):
        duplicate_key('{"a":1,"a":2}')  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        duplicate_key(None)  # type: ignore[arg-type]
    with pytest.raises(BufferError):
        duplicate_key(memoryview(b'{"a":1}' * 2)[::2])


def _object(keys: list[str]) -> bytes:
    return ("{" + ",".join(f"{json.dumps(k)}:{i}" for i, k in enumerate(keys)) + "}").encode()


# Around the linear-to-table switch (32 keys) and the table's first growth (64 keys).
@pytest.mark.parametrize("n", [1, 2, 31, 32, 33, 34, 63, 64, 65, 66, 200, 10_001, 100_000])
def test_big_objects(n: int) -> None:
    keys = [f"key{i}" for i in range(n)]
    base = _object(keys)
    assert duplicate_key(base) is None

    def plus(*tail: bytes) -> bytes:
        return base[:-1] + b"".join(b"," + t + b":0" for t in tail) + b"}"

    assert duplicate_key(plus(b'"key0"')) == "/key0"
    assert duplicate_key(plus(f'"key{n - 1}"'.encode())) == f"/key{n - 1}"
    assert duplicate_key(plus(f'"key{n // 2}"'.encode())) == f"/key{n // 2}"
    # the same key escaped: the table hashes the decoded bytes
    assert duplicate_key(plus(f'"\\u006bey{n // 3}"'.encode())) == f"/key{n // 3}"
    # the first repeat in the text wins, not the first key repeated
    doc = plus(f'"key{n - 1}"'.encode(), b'"key0"')
    assert duplicate_key(doc) == f"/key{n - 1}"
    if n < 1000:
        assert reference(doc) == f"/key{n - 1}"


def test_big_objects_nested_in_big_objects() -> None:
    inner = _object([f"i{i}" for i in range(50)]).decode()
    members = [f'"o{i}":{inner}' for i in range(50)]
    doc = ("{" + ",".join(members) + "}").encode()
    assert duplicate_key(doc) is None  # each table is its own object's
    bad = inner[:-1] + ',"i49":0}'
    doc = ("{" + ",".join([*members[:20], f'"x":{bad}', *members[20:], '"o0":1']) + "}").encode()
    assert duplicate_key(doc) == "/x/i49"
    doc = ("{" + ",".join([*members, '"o7":1']) + "}").encode()
    assert duplicate_key(doc) == "/o7"


def test_many_escaped_keys() -> None:
    # Decoded keys outgrow the scanner's first buffers.
    keys = "".join(f'"\\u006b{i}":{{"\\u0069":{i}}},' for i in range(5_000))
    assert duplicate_key(f"{{{keys[:-1]}}}".encode()) is None
    assert duplicate_key(f'{{{keys}"k4999":0}}'.encode()) == "/k4999"


@pytest.mark.parametrize("depth", [1, 31, 32, 33, 1_000, 100_000])
def test_deep_nesting(depth: int) -> None:
    arrays = b"[" * depth + b'{"a":1,"a":2}' + b"]" * depth
    assert duplicate_key(arrays) == "/0" * depth + "/a"
    assert duplicate_key(b"[" * depth + b"{}" + b"]" * depth) is None
    objects = b'{"k":' * depth + b'{"a":1,"a":2}' + b"}" * depth
    assert duplicate_key(objects) == "/k" * depth + "/a"
    # a repeat after the deep part closes: the stack unwound correctly
    closed = b'{"a":' + b"[" * depth + b"]" * depth + b',"b":1,"a":2}'
    assert duplicate_key(closed) == "/a"


def test_long_strings() -> None:
    long = "x" * 100_000
    doc = json.dumps({"a": long, "b": long + '"\\', long: 1, "c": [long]}).encode()
    assert duplicate_key(doc) is None
    doc = doc[:-1] + b',"' + long.encode() + b'":2}'
    assert duplicate_key(doc) == "/" + long
    escapes = b'"' + b"\\\\" * 50_000 + b'\\"' * 50_000 + b'"'
    assert duplicate_key(b'{"s":' + escapes + b',"s":1}') == "/s"


@pytest.mark.parametrize("n", range(0, 80, 3))
def test_escapes_at_every_offset(n: int) -> None:
    # Strings are scanned 8 bytes at a time, then with memchr past 32 bytes:
    # an escape must count wherever it falls.
    pad = b"x" * n
    assert duplicate_key(b'{"' + pad + b'a":1,"' + pad + b'\\u0061":2}') == "/" + "x" * n + "a"
    assert duplicate_key(b'{"' + pad + b'\\u0061":1,"' + pad + b'a":2}') == "/" + "x" * n + "a"
    assert duplicate_key(b'{"' + pad + b'\\/":1,"' + pad + b'/":2}') == "/" + "x" * n + "~1"
    assert duplicate_key(b'{"s":"' + pad + b'\\",\\"s\\":1"}') is None
    assert duplicate_key(b'{"s":"' + pad + b'\\\\","s":1}') == "/s"
    assert duplicate_key(b'{"s":"' + pad + b'\\\\\\"","s":1}') == "/s"
    assert duplicate_key(b'{"' + pad + b'\\"":1,"' + pad + b'\\"":2}') == "/" + "x" * n + '"'


# -- generated documents against the reference -----------------------------------------------

# Few characters, so keys repeat; each one a reason for a key to be spelled
# differently, or to confuse a scanner, or to need escaping in a pointer.
_CHARS = 'ab/~"\\{}:,é€😀\n'
_LONE = "\ud83d\ude00"  # lone surrogates: json.loads keeps them, and pairs them when adjacent
_SHORT = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\n": "\\n", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def _escape(rnd: random.Random, ch: str) -> str:
    code = ord(ch)
    how = rnd.randrange(4)
    if how == 0 and ch not in '"\\' and code >= 0x20 and not 0xD800 <= code < 0xE000:
        return ch
    if how == 1 and ch in _SHORT:
        return _SHORT[ch]
    upper = how == 2
    if code >= 0x10000:
        code -= 0x10000
        units = [0xD800 + (code >> 10), 0xDC00 + (code & 0x3FF)]
    else:
        units = [code]
    return "".join(f"\\u{u:04X}" if upper else f"\\u{u:04x}" for u in units)


def _string(rnd: random.Random, text: str) -> str:
    return '"' + "".join(_escape(rnd, ch) for ch in text) + '"'


def _ws(rnd: random.Random) -> str:
    return rnd.choice(["", "", "", " ", "\n  ", "\t", " \r\n"])


# Hypothesis draws the structure (what shrinks well); one Random draws the spelling
# (escapes, whitespace), which would otherwise cost a draw per character.
@composite
def _value(draw: DrawFn, depth: int, rnd: random.Random) -> str:
    kinds = ["scalar", "string", "array", "object", "object"] if depth < 3 else ["scalar", "string"]
    kind = draw(st.sampled_from(kinds))
    if kind == "scalar":
        return draw(st.sampled_from(["0", "-1", "1.5e-3", "-0.0E+2", "true", "false", "null"]))
    if kind == "string":
        return _string(rnd, draw(st.text(_CHARS, max_size=8)))
    if kind == "array":
        items = draw(st.lists(_value(depth + 1, rnd), max_size=4))
        return "[" + ",".join(_ws(rnd) + item + _ws(rnd) for item in items) + "]"
    keys = draw(st.lists(st.text(_CHARS + _LONE, max_size=2), max_size=8 if depth == 0 else 4))
    members = []
    for key in keys:
        value = draw(_value(depth + 1, rnd))
        members.append(f"{_ws(rnd)}{_string(rnd, key)}{_ws(rnd)}:{_ws(rnd)}{value}{_ws(rnd)}")
    return "{" + ",".join(members) + _ws(rnd) + "}"


@composite
def documents(draw: DrawFn) -> bytes:
    rnd = draw(st.randoms(use_true_random=False))
    return (_ws(rnd) + draw(_value(0, rnd)) + _ws(rnd)).encode()


@settings(_BASE, max_examples=examples(200))
@given(documents())
def test_agrees_with_json_loads(doc: bytes) -> None:
    assert duplicate_key(doc) == reference(doc)


@settings(_BASE, max_examples=examples(100))
@given(st.dictionaries(st.text(max_size=4), st.integers(), min_size=33, max_size=300), st.data())
def test_big_generated_objects(members: dict[str, int], data: st.DataObject) -> None:
    # Any Unicode key, through the hash table, repeated at a random place.
    pairs = list(members.items())
    at = data.draw(st.integers(0, len(pairs)))
    key = data.draw(st.sampled_from(sorted(members)))
    pairs.insert(at, (key, 0))
    doc = ("{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in pairs) + "}").encode()
    assert duplicate_key(doc) == reference(doc) == "/" + _token(key)


# -- the machinery shared with _fastcheck -----------------------------------------------------


_SUMMARY_KEYS = [b"", b"a", b"key", b"1234567", b"12345678", b"123456789", b"user_id", b"user_name"]


@pytest.mark.parametrize("key", [*_SUMMARY_KEYS, bytes(range(256)), "\u00e9\U0001f600".encode()])
def test_one_key_machinery(key: bytes) -> None:
    """Each scanner reaches the one hash (one process key) through its cimports, and
    inlines the same summary."""
    want = _jsonkeys.key_summary(key)
    assert _jsonscan._key_summary(key) == want
    assert _fastcheck._key_summary(key) == want


def test_key_summaries_tell_prefixes_apart() -> None:
    summaries = [_jsonkeys.key_summary(k) for k in _SUMMARY_KEYS]
    assert len({h for h, _ in summaries}) == len(summaries)
    assert len({t for _, t in summaries}) == len(summaries)


def test_the_process_key_is_random() -> None:
    """Keyed per process: a body crafted to collide in one process does not in another."""
    code = "from runmcp_fast._jsonkeys import key_summary; print(key_summary(b'key')[0])"
    runs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    }
    assert len(runs) == 2


@settings(_BASE, max_examples=examples(100))
@given(st.sampled_from([1, 2, 31, 32, 33, 34, 64, 65, 150]), st.booleans(), st.data())
def test_fastcheck_finds_the_same_repeats(n: int, repeat: bool, data: st.DataObject) -> None:
    """_fastcheck (on an object it checks nothing else in) and duplicate_key agree, on
    both sides of the switch to the hash table, keys spelled raw or escaped."""
    rnd = data.draw(st.randoms(use_true_random=False))
    keys: list[str] = []
    while len(keys) < n:
        key = "".join(rnd.choice(_CHARS) for _ in range(rnd.randrange(4)))
        if key not in keys:
            keys.append(key)
    if repeat:
        keys.insert(data.draw(st.integers(0, n)), data.draw(st.sampled_from(keys)))
    doc = ("{" + ",".join(f"{_string(rnd, k)}:{i}" for i, k in enumerate(keys)) + "}").encode()
    program = _fastcheck.Program(_fastcheck.ANY, [])
    assert program.check(doc) is (duplicate_key(doc) is None) is (reference(doc) is None)
    assert program.check(doc) is not repeat


# -- anything else ---------------------------------------------------------------------------


@settings(_BASE, max_examples=examples(300))
@given(st.binary(max_size=200))
def test_any_bytes(data: bytes) -> None:
    assert duplicate_key(data) is None or isinstance(duplicate_key(data), str)


@settings(_BASE, max_examples=examples(100))
@given(documents(), st.data())
def test_damaged_documents(doc: bytes, data: st.DataObject) -> None:
    # Cut, insert and overwrite bytes that steer a scanner: structure, quotes, escapes.
    steer = st.sampled_from(list(b'{}[]",:\\u0 '))
    buf = bytearray(doc)
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(buf)))
        how = data.draw(st.integers(0, 2))
        if how == 0:
            del buf[at:]
        elif how == 1:
            buf.insert(at, data.draw(steer))
        elif at < len(buf):
            buf[at] = data.draw(steer)
    got = duplicate_key(bytes(buf))
    assert got is None or isinstance(got, str)


# Bytes placed at the very end (or start) of a readable page, next to an unreadable
# one: a read one byte outside the buffer is a segfault there, so these run in a
# child process (`isolation.run_isolated`), where a crash fails the test instead of
# ending the run. Wherever the buffer lies, the answer must be the one for the same
# bytes in an ordinary buffer, and json.loads' reference answer where it reads them.

TRUNCATED = [
    b"",
    b"{",
    b"[",
    b'"',
    b'"\\',
    b'{"',
    b'{"a',
    b'{"a\\',
    b'{"a"',
    b'{"a":',
    b'{"a":"\\"',
    b'{"a\\u',
    b'{"a\\ud83d',
    b'{"a\\ud83d\\u',
    b'{"\\ud83d\\ude0',
    b"\\",
    b'["\\\\\\"]',
    b"tru",
    b"-",
    b"{}}",
    b"]",
    b"}",
    b"[}",
    b"{]",
    b'{"a":1,}',
    b'{"a"1}',
    b",",
    b" ",
]


def _reference_or_none(data: bytes) -> tuple[bool, str | None]:
    """(True, the reference's answer) where json.loads reads data, else (False, None)."""
    try:
        return True, reference(data)
    except (ValueError, RecursionError):
        return False, None


def guarded_scans() -> int:
    """Run by test_no_read_outside_the_buffer in a child process; the number of scans."""
    scans = 0
    with guard_pages() as start:

        def scan(data: bytes, end: bool) -> None:
            nonlocal scans
            got = duplicate_key(flush(start, data, end))
            assert got == duplicate_key(bytes(data)), (data, end)
            readable, want = _reference_or_none(data)
            if readable:
                assert got == want, (data, end)
            scans += 1

        for data in TRUNCATED:
            for end in (True, False):
                scan(data, end)

        @settings(_BASE, max_examples=examples(150))
        @given(
            st.one_of(documents(), st.binary(max_size=64)).map(lambda d: d[:PAGE]),
            st.integers(0, 64),
            st.booleans(),
        )
        def generated(doc: bytes, cut: int, end: bool) -> None:
            for data in (doc, doc[: len(doc) - cut], doc[cut:]):
                scan(data, end)

        generated()
    return scans


@needs_mprotect
def test_no_read_outside_the_buffer() -> None:
    assert run_isolated("test_jsonscan", "guarded_scans") >= 2 * len(TRUNCATED) + 3 * 150
