"""The whole document checked, not only what routing and validation use.

The loader follows only the `$ref`s of path items, parameters and request
bodies, so a response whose `$ref` points nowhere loads without a word. This
module walks every node of every document the spec reached and follows each
`$ref`, then checks the root document against the OpenAPI 3.0/3.1/3.2 or
Swagger 2.0 JSON Schema (the one `openapi-spec-validator` ships, compiled by
jsonschema-rs: GitHub's 10 MB spec takes ~0.05 s, against ~20 s for the pure-Python
validator). Whatever it finds is a warning: a spec that loaded routes and
validates as it is. It runs once per spec load (the snapshot caches specs),
never per request.

The slow, semantic half of openapi-spec-validator (defaults against their
schemas, ...) is `deep.py`, for `runmcp-fast check` only.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path
from typing import Any

import msgspec
import orjson

from runmcp_fast.openapi.documents import Documents
from runmcp_fast.openapi.model import Spec, attach_documents
from runmcp_fast.openapi.pointers import join
from runmcp_fast.problems import DocumentError, Problem

# Mappings whose keys are names the author chose (a property called `default`
# or `example` is a schema, not a value): every entry is walked.
_NAMED = frozenset(
    (
        "paths",
        "properties",
        "patternProperties",
        "definitions",
        "$defs",
        "dependentSchemas",
        "schemas",
        "responses",
        "parameters",
        "requestBodies",
        "headers",
        "securitySchemes",
        "securityDefinitions",
        "links",
        "callbacks",
        "pathItems",
        "webhooks",
        "content",
        "encoding",
        "variables",
    )
)
# Keys whose values are data (instances), where a `$ref` key is just data.
_DATA = frozenset(("example", "default", "enum", "const"))
# An Example Object's value is data too.
_EXAMPLE_DATA = frozenset(("value", "externalValue"))
# Beyond this many schema problems the rest are summed up in one line: a spec
# converted from another format can repeat one mistake thousands of times.
MAX_SCHEMA_PROBLEMS = 50

# A `"$ref":"...` member in orjson's compact JSON, up to the string's text.
_REF_KEY = b'"$ref":"'

_STRUCT, _NAMES, _EXAMPLES, _EXAMPLE = 0, 1, 2, 3


def check_whole(spec: Spec) -> tuple[Problem, ...]:
    """The warnings the loader did not give: dangling `$ref`s and schema violations."""
    docs = spec.documents
    problems = broken_refs(docs)
    problems += schema_problems(docs.root.root, spec.version, docs.root.name)
    return tuple(problems)


def with_whole_check(spec: Spec) -> Spec:
    """`spec` with `check_whole`'s warnings after its own (same documents)."""
    try:
        extra = check_whole(spec)
    except Exception as exc:  # a spec the loader took must never be refused by this
        extra = (
            Problem(
                spec.source,
                "",
                f"the whole document could not be checked: {type(exc).__name__}: {exc}",
                "run `runmcp-fast check` on it and report this",
                "warning",
            ),
        )
    if not extra:
        return spec
    seen = {(p.file, p.pointer, p.message) for p in spec.warnings}
    fresh = tuple(p for p in extra if (p.file, p.pointer, p.message) not in seen)
    checked = msgspec.structs.replace(spec, warnings=spec.warnings + fresh)
    return attach_documents(checked, spec.documents)


def broken_refs(docs: Documents) -> list[Problem]:
    """A warning at every `$ref` (written as a string) that leads nowhere or loops."""
    problems: list[Problem] = []
    done: set[str] = set()
    # Following a ref can read another file: walk until no new document appears.
    while True:
        pending = [d for d in docs.loaded() if d.name not in done]
        if not pending:
            return problems
        for doc in pending:
            done.add(doc.name)
            if _all_refs_resolve(docs, doc.name, doc.root):
                continue
            _walk(docs, doc.name, doc.root, problems)


def _all_refs_resolve(docs: Documents, file: str, root: Any) -> bool:
    """Whether every `$ref` string anywhere in the document resolves (False when unsure).

    PERF: walking GitHub's 10 MB spec node by node costs what loading it does
    (~0.5 s); its JSON text holds the same refs, found by one scan of its text (~0.05 s),
    and a few thousand distinct ones resolve from the documents' caches. Only a
    document with a bad one is walked, to say where.
    """
    try:
        text = orjson.dumps(root)
    except TypeError:
        try:  # YAML reads `200:` as an int key
            text = orjson.dumps(root, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:
            return False  # YAML's !!binary or !!set: walk it
    # PERF: split() is a memchr/memcmp scan, twice as fast as a regex here.
    refs: set[bytes] = set()
    for piece in text.split(_REF_KEY)[1:]:
        end = piece.find(b'"')
        while end > 0 and piece[end - 1 : end] == b"\\" and _escaped(piece, end):
            end = piece.find(b'"', end + 1)
        refs.add(piece[:end])
    for raw in refs:
        if raw[:1] != b"#":
            # A file that can not be read is reported once, at the site that read
            # it first: let the walk be that site.
            return False
        found = _plain_target(root, raw)
        if found is True:
            continue
        if found is False:
            return False
        try:
            ref = orjson.loads(b'"' + raw + b'"')
            docs.deref({"$ref": ref}, file, "")
        except (DocumentError, orjson.JSONDecodeError):
            return False
    return True


def _plain_target(root: Any, raw: bytes) -> bool | None:
    """Whether a plain `#/a/b` ref names a node that is not itself a `$ref`; None
    when unsure (escapes, YAML's int keys, a chain): `Documents.deref` decides.

    PERF: most refs are `#/components/schemas/Name`; dict lookups answer them in
    a few microseconds, where a first `deref` costs ~50 (it caches for the loader).
    """
    if raw[:2] != b"#/" or b"\\" in raw or b"%" in raw or b"~" in raw:
        return None
    node = root
    for token in raw[2:].decode("utf-8", "replace").split("/"):
        if isinstance(node, dict):
            node = node.get(token, _ABSENT)
            if node is _ABSENT:
                return None  # maybe YAML's `200:` as an int: deref knows
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return False
    return not (isinstance(node, dict) and "$ref" in node) or None


_ABSENT = object()


def _escaped(text: bytes, at: int) -> bool:
    """Whether the quote at `at` is escaped: an odd number of backslashes before it."""
    n = 0
    while at - n - 1 >= 0 and text[at - n - 1] == 0x5C:
        n += 1
    return n % 2 == 1


def _walk(docs: Documents, file: str, root: Any, problems: list[Problem]) -> None:
    # Iterative: deep schemas must not hit the recursion limit. `seen` keeps a
    # YAML alias that contains itself from looping.
    seen: set[int] = set()
    stack: list[tuple[Any, str, int]] = [(root, "", _STRUCT)]
    while stack:
        node, pointer, mode = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, list):
            # Pushed last first: problems come out in the document's order.
            for i in range(len(node) - 1, -1, -1):
                item = node[i]
                if isinstance(item, (dict, list)):
                    stack.append((item, f"{pointer}/{i}", _STRUCT))
            continue
        if not isinstance(node, dict):
            continue
        if mode != _STRUCT and mode != _EXAMPLE:
            child = _EXAMPLE if mode == _EXAMPLES else _STRUCT
            for key, value in reversed(node.items()):
                if isinstance(value, (dict, list)):
                    stack.append((value, join(pointer, key), child))
            continue
        ref = node.get("$ref")
        if isinstance(ref, str):
            try:
                docs.deref(node, file, pointer)
            except DocumentError as exc:
                p = exc.problem
                problems.append(Problem(p.file, p.pointer, p.message, p.hint, "warning"))
        for key, value in reversed(node.items()):
            if not isinstance(value, (dict, list)):
                continue
            if isinstance(key, str):
                if key[:2] == "x-" or key in _DATA:
                    continue
                if mode == _EXAMPLE and key in _EXAMPLE_DATA:
                    continue
                if key == "examples":
                    # A JSON Schema's `examples` is a list of values; OpenAPI's a
                    # mapping of Example Objects (each maybe a `$ref`).
                    if isinstance(value, dict):
                        stack.append((value, join(pointer, key), _EXAMPLES))
                    continue
                if key in _NAMED and isinstance(value, dict):
                    stack.append((value, join(pointer, key), _NAMES))
                    continue
            stack.append((value, join(pointer, key), _STRUCT))


def schema_problems(root: Any, version: str, file: str) -> list[Problem]:
    """The root document against its version's JSON Schema (the OpenAPI Initiative's)."""
    try:
        validator, label = _validator(version)
    except (ImportError, OSError, ValueError) as exc:
        return [
            Problem(
                file,
                "",
                f"not checked against the OpenAPI schema: {exc}",
                "pip install openapi-spec-validator jsonschema-rs",
                "warning",
            )
        ]
    if validator is None:
        return []
    try:
        errors = list(validator.iter_errors(root))
    except ValueError:
        # YAML's dates, sets and binaries are not JSON: check the JSON they would be.
        plain = orjson.loads(orjson.dumps(root, default=_jsonable, option=orjson.OPT_NON_STR_KEYS))
        errors = list(validator.iter_errors(plain))
    problems: list[Problem] = []
    more = 0
    for error in errors:
        if len(problems) >= MAX_SCHEMA_PROBLEMS:
            more += 1
            continue
        message, path = _best(error)
        problems.append(
            Problem(
                file,
                join("", *path),
                message,
                f"the {label} schema requires it; the gateway copes, other tools may not",
                "warning",
            )
        )
    if more:
        problems.append(
            Problem(
                file,
                "",
                f"{more} more {label} schema problems not listed",
                "fix the ones above and check again",
                "warning",
            )
        )
    return problems


def _jsonable(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


def _best(error: Any) -> tuple[str, list[Any]]:
    """The message and path of the most telling error under a oneOf/anyOf failure.

    OpenAPI's schemas say "a Reference or a Response" everywhere, so the bare
    error is "not valid under any of the schemas"; the branch that is not the
    Reference, with the fewest errors, says what is really wrong.
    """
    for _ in range(32):  # nested oneOfs; bounded
        context = getattr(error.kind, "context", None)
        if not context:
            break
        branches = [b for b in context if b and not _only_ref_missing(b)]
        if not branches:
            break
        error = min(branches, key=len)[0]
    message = str(error.message)
    if len(message) > _MAX_MESSAGE:
        message = message[:80] + " ... " + message[-(_MAX_MESSAGE - 85) :]
    return message, list(error.instance_path)


def _only_ref_missing(branch: list[Any]) -> bool:
    # Exactly: a message starting with an instance that holds "$ref" must not count.
    return len(branch) == 1 and str(branch[0].message) == _REF_REQUIRED


_REF_REQUIRED = '"$ref" is a required property'
# jsonschema-rs starts a message with the instance, as JSON: a whole schema at times.
_MAX_MESSAGE = 240


@cache
def _validator(version: str) -> tuple[Any, str]:
    """(compiled validator, label) for a declared version; (None, "") for an unknown one."""
    import jsonschema_rs

    if version == "2.0":
        folder, label = "v2.0", "Swagger 2.0"
    elif version.startswith("3.0"):
        folder, label = "v3.0", "OpenAPI 3.0"
    elif version.startswith("3.1"):
        folder, label = "v3.1", "OpenAPI 3.1"
    elif version.startswith("3.2"):
        folder, label = "v3.2", "OpenAPI 3.2"
    else:
        return None, ""
    # The schemas' `$ref`s are internal; nothing is fetched.
    return jsonschema_rs.validator_for(_schema(folder)), label


def _schema(folder: str) -> Any:
    """openapi-spec-validator's copy of the official schema, read without importing it.

    PERF: importing the package costs ~1 s (pydantic-settings, jsonschema-path);
    its data file is all this module needs.
    """
    found = importlib.util.find_spec("openapi_spec_validator")
    if found is None or not found.submodule_search_locations:
        raise ImportError("openapi-spec-validator is not installed")
    base = Path(next(iter(found.submodule_search_locations)))
    return orjson.loads((base / "resources" / "schemas" / folder / "schema.json").read_bytes())
