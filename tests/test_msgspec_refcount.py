"""msgspec before 0.23 frees a compiled pattern still in use: freeing the type of a union
of `Annotated[str, Meta(pattern=...)]` with a list or dict (a `Decoder`, or the type
`msgspec.convert` builds per call) decrements the pattern's refcount once too often, and
the process crashes later. docs/upstream/msgspec-refcount.md has the write-up.

Two checks: the reproducer, run in a child process, shows the bug on an affected msgspec
and its absence on a fixed one; and the compiler never builds such a union where msgspec
is affected (the guard), whichever msgspec is installed here.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
import typing
from typing import Any

import msgspec
import pytest

from runmcp_fast.validation import compiler
from runmcp_fast.validation.compiler import SchemaCompiler, pattern_beside_container

# The minimal reproducer, as written up for upstream: prints the pattern's refcount
# before, after creating and after freeing a Decoder (three rounds).
REPRODUCER = textwrap.dedent(
    """
    import re, sys
    from typing import Annotated, Union
    import msgspec

    P = "^[a-z]+$"
    T = Union[Annotated[str, msgspec.Meta(pattern=P)], {member}]
    rx = re.compile(P)  # the same object msgspec compiled (re's cache)
    counts = [sys.getrefcount(rx)]
    for _ in range(3):
        decoder = msgspec.json.Decoder(T)
        counts.append(sys.getrefcount(rx))
        del decoder
        counts.append(sys.getrefcount(rx))
    print(counts)
    """
)


def _run(member: str) -> list[int] | None:
    """The refcounts the reproducer printed, or None when the child crashed."""
    done = subprocess.run(
        [sys.executable, "-c", REPRODUCER.format(member=member)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        return None
    counts: list[int] = ast.literal_eval(done.stdout.strip())
    return counts


@pytest.mark.parametrize("member", ["list", "dict", "list[int]"])
def test_reproducer_shows_the_bug_exactly_where_msgspec_is_affected(member: str) -> None:
    counts = _run(member)
    balanced = counts is not None and counts[0::2] == [counts[0]] * 4
    if compiler.PATTERN_UNION_UNSAFE:
        # The freed pattern's memory is reused: garbage counts, or a crash.
        assert not balanced, f"msgspec {msgspec.__version__} no longer shows the bug: {counts}"
    else:
        assert balanced, f"msgspec {msgspec.__version__}: {counts}"


def test_reproducer_control_member_is_balanced_on_fixed_versions() -> None:
    counts = _run("int")
    assert counts is not None
    if not compiler.PATTERN_UNION_UNSAFE:
        assert counts[0::2] == [counts[0]] * 4, counts


@pytest.mark.parametrize(
    ("version", "affected"),
    [("0.19.0", True), ("0.21.1", True), ("0.22.0", True), ("0.23.0", False), ("1.0", False)],
)
def test_affected_versions(version: str, affected: bool) -> None:
    assert compiler._affected(version) is affected


PATTERN = {"type": "string", "pattern": "^[a-z]+$"}
SCHEMAS: dict[str, Any] = {
    "type list": {"type": ["string", "array"], "pattern": "^[a-z]+$"},
    "anyOf array": {"anyOf": [PATTERN, {"type": "array", "items": {"type": "integer"}}]},
    "oneOf object": {
        "oneOf": [PATTERN, {"type": "object", "additionalProperties": {"type": "integer"}}]
    },
    "nullable": {"anyOf": [PATTERN, {"type": "array"}, {"type": "null"}]},
    "in a property": {
        "type": "object",
        "properties": {"tags": {"anyOf": [PATTERN, {"type": "array"}]}},
    },
    "through $ref": {
        "anyOf": [{"$ref": "#/$defs/Name"}, {"type": "array"}],
        "$defs": {"Name": PATTERN},
    },
}


def _unions(info: msgspec.inspect.Type) -> typing.Iterator[msgspec.inspect.UnionType]:
    """Every union in a type tree (msgspec.inspect: pure Python, builds no decoder)."""
    stack: list[Any] = [info]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, msgspec.inspect.UnionType):
            yield node
            stack.extend(node.types)
        elif isinstance(node, msgspec.inspect.StructType):
            stack.extend(field.type for field in node.fields)
        elif isinstance(node, msgspec.inspect.ListType | msgspec.inspect.DictType):
            stack.extend(
                [node.item_type]
                if isinstance(node, msgspec.inspect.ListType)
                else [node.key_type, node.value_type]
            )


def _bad(union: msgspec.inspect.UnionType) -> bool:
    patterned = any(
        isinstance(t, msgspec.inspect.StrType) and t.pattern is not None for t in union.types
    )
    container = any(
        isinstance(t, msgspec.inspect.ListType | msgspec.inspect.DictType) for t in union.types
    )
    return patterned and container


@pytest.mark.parametrize("name", SCHEMAS)
def test_compiler_never_builds_the_union_where_msgspec_is_affected(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fails if the guard goes: the type is inspected, never turned into a decoder here."""
    monkeypatch.setattr(compiler, "PATTERN_UNION_UNSAFE", True)
    monkeypatch.setattr(msgspec.json, "Decoder", _no_bad_decoder(msgspec.json.Decoder))
    built = SchemaCompiler(SCHEMAS[name])
    kind = built.compile()
    assert not any(_bad(u) for u in _unions(msgspec.inspect.type_info(kind)))
    assert any(f.keyword == "pattern string beside array/object" for f in built.fallbacks)
    # Still correct: the fallback checks the node (jsonschema).
    assert built.decoder is not None
    good, bad = (
        (b'{"tags": "abc"}', b'{"tags": "ABC"}') if "property" in name else (b'"abc"', b'"ABC"')
    )
    built.decoder.decode(good)
    with pytest.raises(msgspec.ValidationError):
        built.decoder.decode(bad)


def _no_bad_decoder(real: Any) -> Any:
    """msgspec.json.Decoder, refusing (before msgspec sees it) the union the bug needs."""

    def decoder(kind: Any, **kwargs: Any) -> Any:
        assert not any(_bad(u) for u in _unions(msgspec.inspect.type_info(kind))), kind
        return real(kind, **kwargs)

    return decoder


@pytest.mark.parametrize("name", SCHEMAS)
def test_without_the_bug_the_union_stays_native(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard costs nothing where msgspec is fixed: no fallback for these schemas."""
    monkeypatch.setattr(compiler, "PATTERN_UNION_UNSAFE", False)
    built = SchemaCompiler(SCHEMAS[name])
    built.compile()
    assert built.fallbacks == []


def test_pattern_beside_container() -> None:
    s = typing.Annotated[str, msgspec.Meta(pattern="a")]
    assert pattern_beside_container([s, list[int]])
    assert pattern_beside_container([typing.Optional[s], dict[str, int]])  # noqa: UP045
    assert pattern_beside_container([s, typing.Annotated[list[int], msgspec.Meta(min_length=1)]])
    assert not pattern_beside_container([s, int, None])
    assert not pattern_beside_container([str, list[int]])
    assert not pattern_beside_container([typing.Annotated[str, msgspec.Meta(min_length=1)], list])
