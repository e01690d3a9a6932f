"""hypothesis-jsonschema 0.23 on current hypothesis, for the tests that generate instances.

hypothesis-jsonschema 0.23 calls `cu.many(...).more()`; hypothesis >= 6.14x
replaced that with a context manager (`with many(...) as e: for _ in e:`), so
every object schema raises AttributeError. `from_schema()` gives its
`from_schema` with the old interface put back on the new one while in use.
(Tests that caught every exception of the generator as "its limits" passed
with no instance generated at all meanwhile: `generator_limits()` names the
exceptions that are.)
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis.errors import Unsatisfiable
from hypothesis.internal.conjecture import utils as conjecture_utils


class _OldMany:
    def __init__(self, data: Any, **kwargs: Any) -> None:
        self._many = conjecture_utils.many(data, **kwargs)
        self._many.__enter__()
        self._steps = iter(self._many)
        self._open = True

    def more(self) -> bool:
        if not self._open:
            return False
        try:
            next(self._steps)
        except StopIteration:
            self._open = False
            self._many.__exit__(None, None, None)
            return False
        return True

    def reject(self, why: str | None = None) -> None:
        self._many.reject(why)


@contextlib.contextmanager
def from_schema() -> Iterator[Any]:
    """hypothesis_jsonschema.from_schema, working (skips the test when it is not installed)."""
    module = pytest.importorskip("hypothesis_jsonschema")
    inner = module._from_schema
    if hasattr(conjecture_utils.many, "more"):
        yield module.from_schema
        return
    saved = inner.cu
    inner.cu = types.SimpleNamespace(many=_OldMany)
    try:
        yield module.from_schema
    finally:
        inner.cu = saved


def generator_limits() -> tuple[type[Exception], ...]:
    """What hypothesis-jsonschema raises when it can not generate for a schema: no
    instance found (`Unsatisfiable`: none exists, or its filters reject all it
    draws) and recursive `$ref`s it can not inline. Its limits, not a bug under
    test: anything else it raises (an AttributeError of a broken interface, ...)
    must fail the test."""
    canonicalise = pytest.importorskip("hypothesis_jsonschema._canonicalise")
    return (Unsatisfiable, canonicalise.HypothesisRefResolutionError)
