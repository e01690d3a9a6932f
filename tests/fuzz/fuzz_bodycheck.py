"""Fuzz target: the byte checker (runmcp_fast._fastcheck) and the duplicate-key scanner
(runmcp_fast._jsonscan) on request bodies of GitHub's spec.

`schemas/github_bodies.json` holds nine JSON request bodies of api.github.com's
spec as the bundler gives them (the byte checker covers all nine). Input: byte 0
picks the schema, the rest is the body. Oracle: the byte checker accepts exactly
what msgspec (the compiled type) accepts with no duplicate key; where those two
differ (msgspec's known differences, docs/validation.md: it does not check UTF-8
in a member it skips, ...), the byte checker agrees with the reference: Python's
json on strict UTF-8, no duplicate key, and the `jsonschema` validator. The
scanner finds a duplicate key exactly when Python's json does.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
from harness import instrumented, main

with instrumented():
    from runmcp_fast._jsonscan import duplicate_key
    from runmcp_fast.validation import SchemaValidator

_SCHEMAS = json.loads((Path(__file__).parent / "schemas" / "github_bodies.json").read_bytes())
VALIDATORS = [SchemaValidator(_SCHEMAS[name]) for name in sorted(_SCHEMAS)]
assert all(v.program is not None for v in VALIDATORS)


class _Duplicate(Exception):
    pass


def _pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    if len({k for k, _ in pairs}) != len(pairs):
        raise _Duplicate
    return dict(pairs)


def _python_duplicate(body: bytes) -> bool | None:
    """Whether Python's json finds a repeated key (None: not JSON to it)."""
    try:
        json.loads(body.decode("utf-8"), object_pairs_hook=_pairs)
    except _Duplicate:
        return True
    except (ValueError, RecursionError):
        return None
    return False


def _reference(validator: SchemaValidator, body: bytes) -> bool:
    try:
        value = json.loads(body.decode("utf-8"), object_pairs_hook=_pairs)
    except (_Duplicate, ValueError, RecursionError):
        return False
    return bool(validator.reference.is_valid(value))


def one_input(data: bytes) -> None:
    if not data:
        return
    validator = VALIDATORS[data[0] % len(VALIDATORS)]
    body = data[1:]
    program = validator.program
    assert program is not None
    fast = program.check(body)
    dup = duplicate_key(body)
    try:
        validator.decoder.decode(body)
        slow = dup is None
    except msgspec.ValidationError:
        slow = False
    except (msgspec.DecodeError, RecursionError):  # too deep: refused (schema.py)
        slow = False
    if fast != slow:
        assert fast == _reference(validator, body), (fast, slow, dup)
    if fast:
        assert _python_duplicate(body) is False
    elif slow is False and dup is not None:
        assert _python_duplicate(body) in (True, None)


if __name__ == "__main__":
    main("bodycheck", one_input)
