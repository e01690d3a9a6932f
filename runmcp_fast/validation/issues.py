"""What a client is told about an invalid request: every error, each with a pointer into it.

msgspec stops at the first error, which is right for the fast path (a valid
request is decided in one pass). Once a request is known to be invalid, the
slow path here walks the same bundled schema with `jsonschema` to list every
error, up to `MAX_ISSUES`, each with the JSON pointer into the request
(`/body/items/3/price`, `/query/limit`), the keyword it breaks and the value
that keyword expects.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, NamedTuple

import msgspec
from jsonschema import ValidationError
from jsonschema.exceptions import best_match

from runmcp_fast.openapi.pointers import join
from runmcp_fast.validation.compiler import json_type as _json_type
from runmcp_fast.validation.formats import FORMAT_CHECKER, StrictValidator

MAX_ISSUES = 50
"""A body with 10,000 bad items gets the first 50: enough to fix, cheap to produce."""


class Issue(NamedTuple):
    """One thing wrong with a request."""

    pointer: str
    """RFC 6901 pointer into the request: `/body/items/3/price`, `/query/limit`, `/header/X-Id`."""
    keyword: str
    """The rule broken: a JSON Schema keyword (`type`, `maximum`, ...), or `required`,
    `duplicateKey`, `json`, `style`, `contentType`."""
    message: str
    expected: Any = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"pointer": self.pointer, "keyword": self.keyword}
        if self.expected is not None:
            out["expected"] = self.expected
        out["message"] = self.message
        return out


def reference_validator(schema: Any) -> Any:
    return StrictValidator(schema, format_checker=FORMAT_CHECKER)


def explain(
    validator: Any, value: Any, prefix: str, first: msgspec.ValidationError | None
) -> list[Issue]:
    """Every error `validator` finds in `value`, as issues under `prefix`.

    `first` is msgspec's own error: when jsonschema finds nothing (the two
    disagree, which the conformance tests hunt for), it is reported as is,
    so a rejected request always says why.
    """
    issues: list[Issue] = []
    try:
        for error in validator.iter_errors(value):
            issues.extend(_issues(error, prefix))
            if len(issues) >= MAX_ISSUES:
                break
    except re.error:
        issues = []  # a pattern Python can not run (set aside by the compiler): msgspec's word
    if not issues and first is not None:
        issues.append(from_msgspec(first, prefix))
    issues.sort(key=_order)
    return issues[:MAX_ISSUES]


def _order(issue: Issue) -> tuple[tuple[int, int | str], ...]:
    """Document order, near enough: `/items/2` before `/items/10`."""
    # isascii: "¹".isdigit() is true, and int() refuses it.
    return tuple(
        (0, int(t)) if t.isascii() and t.isdigit() else (1, t) for t in issue.pointer.split("/")
    )


def _issues(error: ValidationError, prefix: str) -> Iterable[Issue]:
    where = join(prefix, *error.absolute_path)
    keyword = str(error.validator)
    expected = error.validator_value
    if keyword == "required" and isinstance(expected, list) and isinstance(error.instance, dict):
        for name in expected:
            if name not in error.instance:
                yield Issue(join(where, name), "required", f"'{name}' is required")
        return
    if keyword == "additionalProperties" and isinstance(error.instance, dict):
        schema = error.schema if isinstance(error.schema, dict) else {}
        known = schema.get("properties", {})
        patterns = [p for p in schema.get("patternProperties", {}) if isinstance(p, str)]
        for name in error.instance:
            if name not in known and not any(_searches(p, name) for p in patterns):
                yield Issue(
                    join(where, name), "additionalProperties", f"'{name}' is not allowed here"
                )
        return
    if keyword in ("anyOf", "oneOf") and error.context:
        chosen = _discriminated(error)
        if chosen is not None:
            # The discriminator names the variant: its errors are the ones that matter.
            yield from chosen(prefix)
            return
        # The branch closest to the value says more than "not valid under any".
        best = best_match([error])
        if best is not None and best is not error:
            inner = next(iter(_issues(best, prefix)), None)
            if inner is not None:
                detail = "no" if keyword == "anyOf" or not _matches_many(error) else "more than one"
                yield Issue(
                    inner.pointer,
                    keyword,
                    f"matches {detail} alternative of {keyword}; closest: {inner.message}",
                    None,
                )
                return
    if keyword in (
        "type",
        "enum",
        "const",
        "format",
        "$ref",
        "anyOf",
        "oneOf",
        "allOf",
        "not",
        "if",
    ):
        compact = expected if keyword in ("type", "enum", "const", "format") else None
    else:
        compact = expected
    yield Issue(where, keyword, _message(error), compact)


def _discriminated(error: ValidationError) -> Any:
    """For a union with a discriminator: a function listing the named variant's issues."""
    schema = error.schema if isinstance(error.schema, dict) else {}
    disc = schema.get("discriminator")
    if not isinstance(disc, dict) or not isinstance(error.instance, dict):
        return None
    field = disc.get("propertyName")
    branches = schema.get(str(error.validator))
    if not isinstance(field, str) or not isinstance(branches, list):
        return None
    where_tag = join("", *error.absolute_path, field)
    tag = error.instance.get(field)
    refs = [b.get("$ref") if isinstance(b, dict) else None for b in branches]
    given = disc.get("mapping")
    mapping: dict[str, Any] = given if isinstance(given, dict) else {}
    target = mapping.get(tag) if isinstance(tag, str) else None
    index = None
    for i, ref in enumerate(refs):
        if isinstance(ref, str) and (ref == target or (target is None and ref.endswith(f"/{tag}"))):
            index = i
            break
    if index is None:
        tags = sorted(mapping) or [r.rsplit("/", 1)[-1] for r in refs if isinstance(r, str)]

        def unknown(prefix: str) -> Iterable[Issue]:
            yield Issue(
                prefix + where_tag,
                "discriminator",
                f"'{field}' must name a variant: one of {', '.join(map(repr, tags))}",
                tags,
            )

        return unknown
    own = [
        e
        for e in error.context or ()
        if e.relative_schema_path and e.relative_schema_path[0] == index
    ]

    def variant(prefix: str) -> Iterable[Issue]:
        for e in own:
            yield from _issues(e, prefix)

    return variant if own else None


def _searches(pattern: str, name: str) -> bool:
    try:
        return re.search(pattern, name) is not None
    except re.error:
        return False


def _matches_many(error: ValidationError) -> bool:
    return "is valid under each of" in error.message


def _message(error: ValidationError) -> str:
    keyword = error.validator
    value: Any = error.validator_value
    if keyword == "type":
        return f"expected {_kinds(value)}, got {_json_type(error.instance)}"
    if keyword == "enum":
        return "must be one of " + ", ".join(_show(v) for v in value)
    if keyword == "const":
        return f"must be {_show(value)}"
    if keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        op = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
        return f"must be {op[str(keyword)]} {value}, got {_show(error.instance)}"
    if keyword == "multipleOf":
        return f"must be a multiple of {value}, got {_show(error.instance)}"
    if keyword in ("minLength", "maxLength"):
        bound = "at least" if keyword == "minLength" else "at most"
        n = len(error.instance) if isinstance(error.instance, str) else "?"
        return f"must be {bound} {value} characters long, got {n}"
    if keyword in ("minItems", "maxItems"):
        bound = "at least" if keyword == "minItems" else "at most"
        n = len(error.instance) if isinstance(error.instance, list) else "?"
        return f"must have {bound} {value} items, got {n}"
    if keyword in ("minProperties", "maxProperties"):
        bound = "at least" if keyword == "minProperties" else "at most"
        return f"must have {bound} {value} properties"
    if keyword == "pattern":
        return f"must match the pattern {value!r}"
    if keyword == "format":
        return f"must be a valid {value}"
    if keyword == "uniqueItems":
        return "items must be unique"
    if keyword == "not":
        return "must not match the schema under 'not'"
    return str(error.message)


def from_msgspec(error: msgspec.ValidationError, prefix: str) -> Issue:
    """msgspec's message (`Expected int, got str - at $.items[3].price`) as an issue."""
    text = str(error)
    message, _, path = text.rpartition(" - at `")
    if not message:
        message, path = text, "$"
    where = prefix + _pointer_of(path.rstrip("`"))
    missing = _MISSING.match(message)
    if missing:  # pointed at the member, as every other `required` issue is
        return Issue(join(where, missing.group(1)), "required", f"'{missing.group(1)}' is required")
    return Issue(where, "schema", message)


_MISSING = re.compile(r"Object missing required field `(.*)`$")


_STEP = re.compile(r"\[(\d+)\]|\.([^.\[]+)|\[\.\.\.\]")


def _pointer_of(path: str) -> str:
    """msgspec's `$.items[3].price` as `/items/3/price` (best effort: keys with dots blur)."""
    pointer = ""
    for m in _STEP.finditer(path.removeprefix("$")):
        pointer = join(pointer, m.group(1) if m.group(1) is not None else m.group(2) or "")
    return pointer


def _kinds(value: Any) -> str:
    if isinstance(value, list):
        return " or ".join(str(v) for v in value)
    return str(value)


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else msgspec.json.encode(value).decode()
    return text if len(text) <= 80 else text[:77] + "..."
