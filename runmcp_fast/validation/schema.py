"""One compiled schema: a JSON body or a parameter's value, checked fast, explained slowly."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
import orjson

from runmcp_fast._fastcheck import Program
from runmcp_fast._jsonscan import duplicate_key
from runmcp_fast.validation.bundle import merge_all_of
from runmcp_fast.validation.compiler import SchemaCompiler, dec_hook
from runmcp_fast.validation.fastpath import compile_fast
from runmcp_fast.validation.issues import Issue, explain, from_msgspec, reference_validator
from runmcp_fast.validation.library import Fallback, TypeLibrary


class SchemaValidator:
    """A bundled JSON Schema compiled once: a byte checker, a msgspec type and decoder.

    The hot path is `program`, the byte checker (`_fastcheck`), which the data
    plane calls itself on a body: True means valid, in one pass. Everything
    else is the slow path: `check_json(data)` lets msgspec (then the
    duplicate-key scan) decide what the checker did not, and lists every issue.
    """

    __slots__ = ("_reference", "decoder", "fallbacks", "merged", "program", "schema", "type")

    def __init__(
        self, schema: Any, library: TypeLibrary | None = None, key: bytes | None = None
    ) -> None:
        self.schema = schema
        """The bundled 2020-12 schema, standalone (its `$defs` inside), as given."""
        key = key if key is not None else _content_key(schema, library)
        known = _COMPILED.get(key) if key is not None else None
        if known is None:
            # Both compilers read one merged schema: neither merges allOf itself.
            merged = (
                merge_all_of(schema, library.merged, library.merged_defs)
                if library is not None
                else merge_all_of(schema)
            )
            compiler = SchemaCompiler(merged, library)
            kind = compiler.compile()
            assert compiler.decoder is not None
            fallbacks = tuple(dict.fromkeys(compiler.fallbacks))
            # The one-pass byte checker, when it covers the whole schema (and no
            # node needs the fallback, whose Python check it can not run).
            program = compile_fast(merged) if not fallbacks else None
            known = (merged, kind, compiler.decoder, fallbacks, program)
            if key is not None:
                _COMPILED[key] = known
        self.merged: Any = known[0]
        """`schema` with its allOfs merged (`bundle.merge_all_of`): what both compilers read."""
        self.type: Any = known[1]
        self.decoder: msgspec.json.Decoder[Any] = known[2]
        self.fallbacks: tuple[Fallback, ...] = known[3]
        self.program: Program | None = known[4]
        """The compiled byte checker (`_fastcheck`), or None: msgspec decides alone."""
        self._reference: Any = None

    def check_json(self, data: bytes, prefix: str = "/body") -> list[Issue] | None:
        program = self.program
        if program is not None and program.check(data):
            return None  # one pass over the bytes: schema, syntax and duplicate keys
        # Refused by the byte checker (or not covered by it): msgspec decides, and
        # the reasons are listed below. A checker that refused a body msgspec
        # takes would cost time here, never a wrong answer.
        try:
            self.decoder.decode(data)
        except msgspec.ValidationError as exc:
            return self._explain_json(data, prefix, exc)
        except msgspec.DecodeError as exc:
            return [Issue(prefix, "json", f"the body is not valid JSON: {exc}")]
        except RecursionError:
            # msgspec's depth bound is the interpreter's recursion limit (found by
            # tests/fuzz/fuzz_bodycheck.py: a 3 kB body of "[" was a 500).
            return [Issue(prefix, "json", _TOO_DEEP)]
        dup = _duplicate(data, prefix)
        return None if dup is None else [dup]

    def check_value(self, value: Any, prefix: str) -> list[Issue] | None:
        """For a value already deserialised (a parameter)."""
        try:
            msgspec.convert(value, self.type, dec_hook=dec_hook)
        except msgspec.ValidationError as exc:
            return explain(self.reference, value, prefix, exc)
        return None

    @property
    def reference(self) -> Any:
        """The `jsonschema` validator for the error list, built on the first invalid request."""
        if self._reference is None:
            self._reference = reference_validator(self.schema)
        return self._reference

    def _explain_json(
        self, data: bytes, prefix: str, first: msgspec.ValidationError
    ) -> list[Issue]:
        try:
            value = msgspec.json.decode(data)
            issues = explain(self.reference, value, prefix, first)
        except msgspec.DecodeError:  # pragma: no cover - the typed decode parsed it
            return [from_msgspec(first, prefix)]
        except RecursionError:
            # Nested too deeply to explain (jsonschema recurses in Python, several
            # frames a level): msgspec's own message then.
            return [from_msgspec(first, prefix)]
        dup = _duplicate(data, prefix)
        return issues if dup is None else [dup, *issues]


# Compiled types by schema content (its digest, see `_content_key`), for the life of the process. Struct
# classes are cyclic objects; builds run with the cycle GC off and the gateway
# freezes what is alive at each swap (see control.py), so a class made per
# build would be kept forever. Made once per distinct schema instead: reloading
# or re-mounting an unchanged spec compiles nothing. What stays is bounded by
# the distinct schemas the process ever served.
_COMPILED: dict[
    bytes, tuple[Any, Any, msgspec.json.Decoder[Any], tuple[Fallback, ...], Program | None]
] = {}


_TOO_DEEP = "the body nests arrays and objects too deeply to be checked"


_SORTED = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def _content_key(schema: Any, library: TypeLibrary | None) -> bytes | None:
    """SHA-256 of the schema's canonical JSON: equal digests, equal schemas.

    MEMORY and TIME: not the JSON itself. A bundled schema carries every
    definition it reaches (Microsoft Graph's: ~1,000, ~270 kB of JSON), and
    the keys were 480 MiB; serialising them was 12 s of a 29 s build. With a
    library (one spec's bundles), the `$defs` part is the library's digest of
    that dict, made once per distinct dict (the bundler shares them).
    """
    try:
        if library is not None and isinstance(schema, dict):
            defs = schema.get("$defs")
            if isinstance(defs, dict):
                root = {k: v for k, v in schema.items() if k != "$defs"}
                h = hashlib.sha256(b"bundle\0")
                h.update(orjson.dumps(root, option=_SORTED))
                h.update(b"\0" + library.defs_digest(defs, _digest))
                return h.digest()
        return hashlib.sha256(b"schema\0" + orjson.dumps(schema, option=_SORTED)).digest()
    except (TypeError, orjson.JSONEncodeError):
        return None  # not cached: compiled afresh


def _digest(value: Any) -> bytes:
    return hashlib.sha256(orjson.dumps(value, option=_SORTED)).digest()


def _duplicate(data: bytes, prefix: str) -> Issue | None:
    where = duplicate_key(data)
    if where is None:
        return None
    # Two parsers may keep different copies: refuse rather than pick one.
    return Issue(prefix + where, "duplicateKey", "this key appears twice in its object")


def shared_validator(schema: Any, library: TypeLibrary) -> SchemaValidator:
    """The validator of `schema`, one per distinct content in `library` (one spec's):
    operations whose parameters or bodies have equal schemas share it (Microsoft
    Graph's 11,422 operations have ~50,000, mostly the same `$top`, `$filter`, ...)."""
    key = _content_key(schema, library)
    if key is None:
        return SchemaValidator(schema, library)
    found: SchemaValidator | None = library.validators.get(key)
    if found is None:
        found = library.validators[key] = SchemaValidator(schema, library, key)
    return found


def compile_schema(schema: Any) -> SchemaValidator:
    """A validator for a standalone JSON Schema 2020-12 document (refs into its own `$defs`)."""
    return SchemaValidator(schema)
