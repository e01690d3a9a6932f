"""Type stub for the one-pass byte-level JSON Schema validator (runmcp_fast/_fastcheck.pyx)."""

from collections.abc import Sequence
from re import Pattern

KIND_NULL: int
KIND_TRUE: int
KIND_FALSE: int
KIND_INTEGER: int
KIND_FLOAT: int
KIND_STRING: int
KIND_ARRAY: int
KIND_OBJECT: int
KIND_ALL: int
MODE_SIMPLE: int
MODE_ANY: int
MODE_UNION: int
MODE_TAGGED: int
MODE_ALL: int
FORMATS: dict[str, int]
DEPTH_LIMIT: int

SimplePattern = tuple[bool, Sequence[tuple[int, int, int, int | None]]]

class Node:
    """One compiled schema node; every Node of a graph goes to its Program."""

    @property
    def kinds(self) -> int: ...
    @property
    def mode(self) -> int: ...
    @property
    def configured(self) -> bool: ...
    @property
    def backtracks(self) -> bool: ...
    @property
    def tries(self) -> int: ...
    def set_any(self) -> None: ...
    def set_kinds(self, kinds: int) -> None: ...
    def set_string(
        self,
        min_length: int | None,
        max_length: int | None,
        fmt: int,
        patterns: Sequence[tuple[Pattern[str], SimplePattern | None]],
    ) -> None: ...
    def set_number(
        self,
        minimum: float | None,
        exclusive_minimum: float | None,
        maximum: float | None,
        exclusive_maximum: float | None,
        multiple_of: float | None,
    ) -> None: ...
    def set_integer(self, low: int | None, high: int | None, multiple_of: int | None) -> None: ...
    def set_enum(self, strings: Sequence[bytes] | None, integers: Sequence[int] | None) -> None: ...
    def set_array(self, items: Node, min_items: int | None, max_items: int | None) -> None: ...
    def set_object(
        self,
        properties: Sequence[tuple[bytes, Node]],
        required: Sequence[bytes],
        additional: Node,
        min_properties: int | None,
        max_properties: int | None,
    ) -> None: ...
    def set_union(
        self, branches: Sequence[Node], one_of: bool, containers: bool = False
    ) -> None: ...
    def set_all(self, branches: Sequence[Node]) -> None: ...
    def set_tagged(self, tag: bytes, variants: Sequence[tuple[bytes, Node]]) -> None: ...
    def children(self) -> list[int]: ...
    def address(self) -> int: ...

ANY: Node
NEVER: Node

class Program:
    """A compiled schema: `check(data)` is True iff data is one valid JSON document
    with no repeated object key."""

    def __init__(self, root: Node, nodes: Sequence[Node]) -> None: ...
    @property
    def size(self) -> int: ...
    def check(self, data: bytes | bytearray | memoryview, /) -> bool: ...

def _key_summary(data: bytes) -> tuple[int, int]:
    """_jsonkeys.key_summary through this module's cimports of _jsonkeys.pxd."""
