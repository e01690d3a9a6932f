"""Generated requests for real specs: the gateway decides as jsonschema does, and says where.

For every operation of GitHub and Kubernetes with a JSON request body (Kubernetes
declares most as `*/*`, which the gateway validates as JSON when the request says
JSON), the bundled body schema generates instances with `hypothesis_jsonschema`.
Stripe takes form-encoded bodies only (no JSON bodies: its count is 0); its form
schemas, the most `anyOf`-heavy of the three, are compiled as JSON Schemas
the same way and checked as JSON documents, to exercise the compiler.

- Each generated instance must be accepted by `check_json` *and* by the
  reference (`jsonschema` 2020-12 with the independent format checker of
  test_validation_keywords.py, and integers that are JSON integers: msgspec
  refuses `1.0` as an integer by design, so the reference is told the same).
- Each valid instance is mutated (a leaf changes type, a property is dropped or
  added, a string or number is pushed out of its bounds, a container changes
  kind); the gateway's decision must equal the reference's, and when both
  reject, our issues must include the pointer of each of the reference's
  errors (`required`: the missing member; `additionalProperties`: the extra one;
  `anyOf`/`oneOf`: there or below, where our closest branch points).

Identical bundled schemas (GitHub's and Kubernetes' operations share many) are
checked once. CI runs a deterministic subset in about 30 s on 2 cores:
`RUNMCP_CONFORMANCE_EXAMPLES=<n>` runs every schema with n examples each (and
more mutants), for a bug hunt (n=40: about 5 minutes);
`RUNMCP_CONFORMANCE_SEED=<int>` draws other instances than the fixed ones.

A parameter round does the same for GitHub's integer, enum and boolean query
parameters through `OperationValidator.head()`, serialised with their style
(form, explode).
"""

from __future__ import annotations

import base64
import copy
import inspect
import math
import os
import random
import re
import time
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import hypothesis_compat
import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError
from public_specs import spec_path
from test_validation_keywords import REFERENCE_FORMATS, encode

from runmcp_fast.openapi import Spec, load_spec
from runmcp_fast.openapi.pointers import join
from runmcp_fast.validation import Bundler, OperationValidator, SchemaValidator, compile_operation
from runmcp_fast.validation.issues import MAX_ISSUES
from runmcp_fast.validation.operation import is_json

pytestmark = pytest.mark.specs

hypothesis_jsonschema = pytest.importorskip("hypothesis_jsonschema")
from_schema = hypothesis_jsonschema.from_schema

EXAMPLES = int(os.environ.get("RUNMCP_CONFORMANCE_EXAMPLES") or 0)
LONG = EXAMPLES > 0
"""A bug hunt: every schema, EXAMPLES instances each."""
SEED = os.environ.get("RUNMCP_CONFORMANCE_SEED")
"""Set (an integer) for other instances than CI's fixed ones."""
PER_SCHEMA = EXAMPLES or 4
# Kubernetes' schemas are the big ones: generating is most of the default run's time,
# and half of it is hypothesis-jsonschema's set-up per schema, not per instance.
CI_PER_SCHEMA = {"kubernetes": 2}
MUTANTS = 12 if LONG else 5
"""Mutants per valid instance."""
PARAM_EXAMPLES = max(EXAMPLES * 20, 300) if LONG else 300
# CI subset: at most this many distinct body schemas per source, spread evenly over
# the spec, and none larger than SIZE_CAP bytes of bundled JSON: hypothesis-jsonschema
# inlines every $ref before generating, and Kubernetes' PodSpec-bearing schemas
# (~35 KB bundled, 100+ definitions) cost it 5-16 s each.
CI_SCHEMAS = {"github": 200, "kubernetes": 80, "stripe-form": 200}
SIZE_CAP = 20_000
MIN_USED = 0.8
"""At least this share of the distinct body schemas must be tried, and of those tried
yield instances (hypothesis-jsonschema gives up on recursive $refs, ...)."""


@pytest.fixture(scope="module", autouse=True)
def _hypothesis_jsonschema_compat() -> Iterator[None]:
    with hypothesis_compat.from_schema():
        yield


# -- the reference ------------------------------------------------------------------------


def _strict_integer(checker: Any, instance: Any) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


# Documented design difference (see test_validation_keywords.py): msgspec reads the
# JSON number `1.0` as a float, never as an integer. The reference is told so
# explicitly.
ReferenceValidator = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _strict_integer),
)


def reference(schema: Any) -> Draft202012Validator:
    return ReferenceValidator(schema, format_checker=REFERENCE_FORMATS)  # type: ignore[no-any-return]


# RFC 4122 and RFC 4648 strings: hypothesis-jsonschema knows neither format (it
# would generate arbitrary text). Its own RFC 3339 strategies are used as they are.
FORMATS = {
    "uuid": st.uuids().map(str),
    "byte": st.binary(max_size=24).map(lambda b: base64.b64encode(b).decode()),
}


# -- the body schemas of a spec ----------------------------------------------------------------


@dataclass
class Body:
    validator: SchemaValidator
    operations: list[str] = field(default_factory=list)
    size: int = 0


@dataclass
class Source:
    name: str
    operations: int = 0
    json_bodies: int = 0
    """Operation/media type pairs validated as JSON."""
    bodies: dict[bytes, Body] = field(default_factory=dict)
    """Distinct bundled schemas."""


_SPECS: dict[str, Spec] = {}
_SOURCES: dict[str, Source] = {}


def spec(name: str) -> Spec:
    if name not in _SPECS:
        _SPECS[name] = load_spec(spec_path(name))
    return _SPECS[name]


def source(name: str) -> Source:
    """`github`, `kubernetes`: JSON bodies; `stripe-form`: Stripe's form bodies as JSON."""
    if name in _SOURCES:
        return _SOURCES[name]
    loaded = spec(name.removesuffix("-form"))
    bundler = Bundler(loaded)
    out = Source(name, operations=len(loaded.operations))
    for op in loaded.operations:
        found: list[SchemaValidator] = []
        if name == "stripe-form":
            body = op.request_body
            content = body.get("content") if isinstance(body, dict) else None
            for media_type, media in (content or {}).items():
                if "form" in media_type and isinstance(media, dict) and "schema" in media:
                    where = join(op.request_body_pointer, "content", media_type, "schema")
                    file = op.request_body_file or op.file or loaded.source
                    bundled = bundler.bundle(media["schema"], file, where)
                    found.append(SchemaValidator(bundled, bundler.library))
        else:
            ov = compile_operation(loaded, op, bundler)
            found.extend(v for m, v in ov.bodies.items() if v is not None and is_json(m))
            # `*/*` (Kubernetes): checked as JSON when the request's type is JSON.
            found.extend(v for _, v in ov.wildcards if v is not None)
        for validator in found:
            out.json_bodies += 1
            key = orjson.dumps(validator.schema)
            body_entry = out.bodies.setdefault(key, Body(validator, size=len(key)))
            body_entry.operations.append(op.operation_id)
    _SOURCES[name] = out
    return out


def selected(src: Source) -> tuple[list[Body], int]:
    """The bodies this run checks (all of them in a long run), and how many were left out."""
    bodies = list(src.bodies.values())
    if LONG:
        return bodies, 0
    small = [b for b in bodies if b.size <= SIZE_CAP]
    cap = CI_SCHEMAS[src.name]
    step = max(1, -(-len(small) // cap))
    chosen = small[::step]
    return chosen, len(bodies) - len(chosen)


# -- generating ----------------------------------------------------------------------------


class Unsupported(Exception):
    """hypothesis-jsonschema can not generate for this schema."""


def generate(schema: Any, count: int) -> list[Any]:
    """Up to `count` instances of `schema`, deterministically."""
    found: list[Any] = []
    with warnings.catch_warnings():
        # hypothesis-jsonschema warns about patterns Python's re can not compile.
        warnings.simplefilter("ignore")
        try:
            strategy = from_schema(schema, custom_formats=FORMATS)

            @settings(
                max_examples=count,
                derandomize=SEED is None,
                database=None,
                deadline=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(strategy)
            def collect(instance: Any) -> None:
                found.append(instance)

            if SEED is not None:
                collect = seed(int(SEED))(collect)

            collect()
        except hypothesis_compat.generator_limits() as exc:  # the generator's, not ours
            if not found:
                raise Unsupported(f"{type(exc).__name__}: {str(exc)[:80]}") from exc
    return found


# -- mutating ------------------------------------------------------------------------------

Path = tuple[Any, ...]


def _walk(value: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, (*path, i))


_OTHER_KIND: dict[type, Any] = {
    str: 7,
    bool: "true",
    int: "7",
    float: True,
    type(None): 0,
    list: {},
    dict: [],
}


def _mutations(value: Any, path: Path) -> Iterator[tuple[str, Path, Callable[[Any], Any]]]:
    yield "retype", path, lambda _: _OTHER_KIND[type(value)]
    if isinstance(value, dict):
        for key in value:
            yield f"drop {key!r}", path, lambda v, k=key: {n: x for n, x in v.items() if n != k}
        yield "add unknown", path, lambda v: {**v, "zz_unknown_property": 1}
    elif isinstance(value, list):
        yield "empty list", path, lambda _: []
        if value:
            yield "repeat items", path, lambda v: v * 40
    elif isinstance(value, str):
        yield "empty string", path, lambda _: ""
        yield "long string", path, lambda v: (v or "x") * 300
        yield "other string", path, lambda _: "not-a-member-\u00e9"
    elif isinstance(value, int) and not isinstance(value, bool):
        yield "way up", path, lambda v: v + 10**6
        yield "way down", path, lambda v: v - 10**6
        yield "beyond 64 bits", path, lambda _: 10**20
        # Beyond 2**52 a float has no fraction left: 10**30 + 0.5 is the integral
        # 1e30, which jsonschema counts as an integer and msgspec never does.
        yield "fraction", path, lambda v: v + 0.5 if abs(v) < 2**52 else 0.5
    elif isinstance(value, float):
        yield "way up", path, lambda v: _finite(v * 1e6 + 1e6)
        yield "way down", path, lambda v: _finite(-abs(v) * 1e6 - 1e6)


def _finite(x: float) -> float:
    return x if math.isfinite(x) else math.copysign(1e308, x)


def _replace(root: Any, path: Path, change: Callable[[Any], Any]) -> Any:
    if not path:
        return change(copy.deepcopy(root))
    out = copy.deepcopy(root)
    parent = out
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = change(parent[path[-1]])
    return out


def mutants(instance: Any, seed: str, limit: int) -> list[tuple[str, Any]]:
    """Up to `limit` mutants of `instance`, the same ones on every run."""
    candidates = [m for path, value in _walk(instance) for m in _mutations(value, path)]
    random.Random(zlib.crc32(seed.encode())).shuffle(candidates)
    out = []
    for what, path, change in candidates[:limit]:
        where = "".join(f"/{p}" for p in path) or "/"
        out.append((f"{what} at {where}", _replace(instance, path, change)))
    return out


# -- comparing -------------------------------------------------------------------------------


def expected_pointers(error: ValidationError) -> tuple[list[str], bool]:
    """Where our issues must point for one reference error; True: or anywhere below."""
    base = join("/body", *error.absolute_path)
    instance = error.instance
    if error.validator == "required" and isinstance(instance, dict):
        return [join(base, n) for n in error.validator_value if n not in instance], False
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        schema = error.schema if isinstance(error.schema, dict) else {}
        known = schema.get("properties", {})
        patterns = list(schema.get("patternProperties", {}))
        extra = [
            n for n in instance if n not in known and not any(re.search(p, n) for p in patterns)
        ]
        return [join(base, n) for n in extra], False
    return [base], error.validator in ("anyOf", "oneOf")


def _issues_text(issues: Any) -> str:
    return "; ".join(f"{i.pointer} [{i.keyword}] {i.message}" for i in issues[:3])


def _errors_text(errors: list[ValidationError]) -> str:
    return "; ".join(
        f"{join('/body', *e.absolute_path)} [{e.validator}] {e.message[:120]}" for e in errors[:3]
    )


def _show(data: bytes) -> str:
    return data[:240].decode("utf-8", "replace") + ("..." if len(data) > 240 else "")


@dataclass
class Tally:
    counts: Counter[str] = field(default_factory=Counter)
    unsupported: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        self.counts["problems"] += 1
        if len(self.problems) < 25:
            self.problems.append(text)


def compare(
    tally: Tally,
    body: Body,
    ref: Draft202012Validator,
    instance: Any,
    what: str,
    generated: bool,
) -> bool:
    """Check one instance; True when both sides accept it."""
    data = encode(instance)
    where = f"{body.operations[0]} ({what})"
    try:
        ours = body.validator.check_json(data)
    except Exception as exc:  # a crash is a finding too; keep hunting
        tally.problem(f"{where}: check_json RAISED {exc!r} for {_show(data)}")
        return False
    errors = list(ref.iter_errors(instance))
    if generated and (ours is not None or errors):
        if ours is not None and not errors:
            tally.problem(
                f"{where}: the GATEWAY rejected a valid generated instance {_show(data)}: {_issues_text(ours)}"
            )
            return False
        if ours is None:
            tally.problem(
                f"{where}: the gateway ACCEPTED a generated instance the reference rejects {_show(data)}: {_errors_text(errors)}"
            )
            return False
        # Both reject: hypothesis-jsonschema does not know every 2020-12 keyword
        # (prefixItems, dependentRequired, ...). Agreement is all we can ask.
        tally.counts["generated but invalid (both reject)"] += 1
    if (ours is None) != (not errors):
        side = "gateway" if ours is not None else "reference"
        reason = _issues_text(ours) if ours is not None else _errors_text(errors)
        tally.problem(f"{where}: only the {side} rejects {_show(data)}: {reason}")
        return False
    if ours is None:
        return True
    if len(errors) >= MAX_ISSUES:
        return False
    tally.counts["pointer checks"] += 1
    pointers = {i.pointer for i in ours}
    for error in errors:
        wanted, below = expected_pointers(error)
        hit = any(p in pointers for p in wanted) or (
            below and any(p.startswith(wanted[0] + "/") for p in pointers)
        )
        if wanted and not hit:
            tally.problem(
                f"{where}: both reject {_show(data)}, but the reference's error at "
                f"{wanted} [{error.validator}] ({error.message[:100]}) is not among our "
                f"issues: {_issues_text(ours)}"
            )
            return False
    return False


def run_bodies(name: str, fallbacks: bool) -> Tally:
    """Generate and mutate for the bodies of `name` with (or without) fallback nodes."""
    src = source(name)
    chosen, left_out = selected(src)
    tally = Tally()
    start = time.perf_counter()
    for body in chosen:
        if bool(body.validator.fallbacks) != fallbacks:
            continue
        tally.counts["schemas tried"] += 1
        tally.counts["operations covered"] += len(body.operations)
        try:
            instances = generate(
                body.validator.schema, PER_SCHEMA if LONG else CI_PER_SCHEMA.get(name, PER_SCHEMA)
            )
        except Unsupported as exc:
            tally.unsupported[str(exc)] += 1
            continue
        tally.counts["schemas generated"] += 1
        ref = reference(body.validator.schema)
        for n, instance in enumerate(instances):
            tally.counts["instances"] += 1
            if not compare(tally, body, ref, instance, f"generated #{n}", generated=True):
                continue
            key = f"{body.operations[0]}#{n}"
            for what, mutant in mutants(instance, key, MUTANTS):
                tally.counts["mutants"] += 1
                if not compare(tally, body, ref, mutant, what, generated=False):
                    tally.counts["mutants rejected"] += 1
    tally.counts["seconds"] = round(time.perf_counter() - start)
    tally.counts["distinct schemas"] = len(src.bodies)
    tally.counts["left out (CI subset)"] = left_out
    tally.counts["JSON bodies"] = src.json_bodies
    return tally


def report(name: str, tally: Tally, notes: Callable[[str], None]) -> None:
    line = f"validation conformance {name}: " + ", ".join(
        f"{k} {v}" for k, v in sorted(tally.counts.items())
    )
    notes(line)
    print(line)
    for reason, n in tally.unsupported.most_common():
        print(f"  not generated ({n}): {reason}")
    for text in tally.problems:
        print(f"  PROBLEM {text}")


@pytest.mark.parametrize("name", ["github", "kubernetes", "stripe-form"])
def test_generated_bodies_agree(name: str, route_notes: Callable[[str], None]) -> None:
    """Bodies compiled wholly to msgspec: generated instances pass, mutants agree."""
    tally = run_bodies(name, fallbacks=False)
    report(f"{name} (native)", tally, route_notes)
    if name == "stripe-form":
        assert source("stripe").json_bodies == 0  # Stripe takes forms only
    tried = tally.counts["schemas tried"]
    assert tried > 0
    assert tally.counts["schemas generated"] >= MIN_USED * tried, tally.unsupported
    assert tally.counts["mutants rejected"] > 0
    assert not tally.problems, "\n".join(tally.problems)


@pytest.mark.parametrize("name", ["github", "stripe-form"])
def test_generated_bodies_agree_through_fallbacks(
    name: str, route_notes: Callable[[str], None]
) -> None:
    """Bodies with fallback nodes (oneOf/anyOf of objects, minProperties, ...)."""
    tally = run_bodies(name, fallbacks=True)
    report(f"{name} (with fallbacks)", tally, route_notes)
    assert tally.counts["schemas tried"] > 0
    assert not tally.problems, "\n".join(tally.problems)


def test_kubernetes_has_no_fallbacks() -> None:
    """Kubernetes' bodies (int-or-string, quantities, ...) compile wholly to msgspec."""
    src = source("kubernetes")
    assert src.json_bodies > 500
    assert [b.operations[0] for b in src.bodies.values() if b.validator.fallbacks] == []


def test_coverage_of_every_source() -> None:
    """Even the CI subset tries most distinct body schemas of each source."""
    for name in ("github", "kubernetes", "stripe-form"):
        src = source(name)
        chosen, left_out = selected(src)
        assert len(chosen) + left_out == len(src.bodies)
        assert len(chosen) >= MIN_USED * len(src.bodies), (name, len(chosen), len(src.bodies))
        covered = sum(len(b.operations) for b in chosen)
        assert covered >= MIN_USED * src.json_bodies, (name, covered, src.json_bodies)
    assert source("github").json_bodies >= 200


# -- query parameters ------------------------------------------------------------------------


@dataclass(frozen=True)
class ParamCase:
    operation: str
    name: str
    schema: dict[str, Any]
    """The resolved (no top-level $ref) bundled schema."""
    explode: bool
    required: tuple[tuple[str, dict[str, Any]], ...]
    """The operation's other required query parameters."""


def _resolved(bundled: Any) -> dict[str, Any]:
    schema = bundled
    for _ in range(8):
        ref = schema.get("$ref") if isinstance(schema, dict) else None
        if not isinstance(ref, str):
            break
        schema = bundled["$defs"][ref.removeprefix("#/$defs/")]
    return schema if isinstance(schema, dict) else {}


def _simple(schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    if kind in ("integer", "boolean") or (kind == "string" and "enum" in schema):
        return "format" not in schema
    if kind == "array":
        return _simple(schema.get("items", {})) and schema["items"].get("type") != "array"
    return False


_PARAM_OPS: dict[str, OperationValidator] = {}


def param_cases() -> list[ParamCase]:
    loaded = spec("github")
    bundler = Bundler(loaded)
    cases = []
    for op in loaded.operations:
        ov = compile_operation(loaded, op, bundler)
        if ov.body_required:
            continue  # head() would (rightly) ask for the body
        if any(p.required and p.location in ("header", "cookie") for p in op.parameters):
            continue
        query = {p.name: p for p in op.parameters if p.location == "query"}
        checks = {p.name: p for p in ov.query_params}
        schemas = {n: _resolved(checks[n].validator.schema) for n in query}
        required = tuple((n, schemas[n]) for n, p in query.items() if p.required)
        if not all(_simple(s) for _, s in required):
            continue
        for n, p in query.items():
            if p.style == "form" and _simple(schemas[n]):
                _PARAM_OPS[op.operation_id] = ov
                others = tuple((m, s) for m, s in required if m != n)
                cases.append(ParamCase(op.operation_id, n, schemas[n], p.explode, others))
    return cases


def serialise(name: str, value: Any, explode: bool) -> str:
    """OpenAPI `form` style: `n=v`; arrays `n=a&n=b` (explode) or `n=a,b`."""

    def text(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        return quote(str(v), safe="")

    if isinstance(value, list):
        if explode:
            return "&".join(f"{quote(name)}={text(v)}" for v in value) or ""
        return f"{quote(name)}=" + ",".join(text(v) for v in value)
    return f"{quote(name)}={text(value)}"


def _url(case: ParamCase, parts: list[str]) -> bytes:
    return ("/x?" + "&".join(p for p in parts if p)).encode()


def head(ov: OperationValidator, url: bytes) -> Any:
    """`ov.head()` for a request without headers or body, whatever its exact signature."""
    args: dict[str, Any] = {"path_params": None, "lines": None, "has_body": False}
    if "content_type" in inspect.signature(ov.head).parameters:
        args["content_type"] = None
    return ov.head(url, **args)


_STRATEGIES: dict[bytes, Any] = {}


def _values(schema: dict[str, Any]) -> Any:
    key = orjson.dumps(schema)
    if key not in _STRATEGIES:
        _STRATEGIES[key] = from_schema(schema)
    return _STRATEGIES[key]


def _bad_values(schema: dict[str, Any]) -> list[str]:
    """Raw query strings the schema refuses."""
    kind = schema.get("type")
    if kind == "integer":
        bad = ["abc", "1.5", "1e3", "0x10", "", "true"]
        if isinstance(schema.get("maximum"), int):
            bad.append(str(schema["maximum"] + 1))
        if isinstance(schema.get("minimum"), int):
            bad.append(str(schema["minimum"] - 1))
        return bad
    if kind == "boolean":
        return ["yes", "1", "TRUE", "", "null"]
    if kind == "string":
        return ["not-a-member-\u00e9", ""] if "" not in schema["enum"] else ["not-a-member"]
    return []


@pytest.fixture(scope="module")
def github_params() -> list[ParamCase]:
    cases = param_cases()
    assert len(cases) > 300
    return cases


def test_query_parameters_valid(github_params: list[ParamCase]) -> None:
    seen: Counter[str] = Counter()

    @settings(
        max_examples=PARAM_EXAMPLES,
        derandomize=SEED is None,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def check(data: st.DataObject) -> None:
        case = data.draw(st.sampled_from(github_params), label="case")
        value = data.draw(_values(case.schema), label=case.name)
        parts = [serialise(case.name, value, case.explode)]
        for other, schema in case.required:
            parts.append(serialise(other, data.draw(_values(schema), label=other), True))
        url = _url(case, parts)
        seen[str(case.schema.get("type"))] += 1
        verdict = head(_PARAM_OPS[case.operation], url)
        assert verdict is None, (
            f"{case.operation}: {url!r} refused: {[tuple(i)[:3] for i in verdict.issues]}"
        )

    if SEED is not None:
        check = seed(int(SEED))(check)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check()
    print(f"query parameters checked (valid): {dict(seen)}")
    assert {"integer", "boolean", "string"} <= set(seen)


def test_query_parameters_invalid(github_params: list[ParamCase]) -> None:
    """Every refusable raw value of every simple parameter (deduplicated by schema)."""
    checked = 0
    problems = []
    seen: set[tuple[str, bytes]] = set()
    for case in github_params:
        key = (case.name, orjson.dumps([case.schema, case.required]))
        if key in seen and not LONG:
            continue
        seen.add(key)
        item = case.schema.get("items", {}) if case.schema.get("type") == "array" else None
        bads = _bad_values(item if item is not None else case.schema)
        for bad in bads:
            if item is not None:
                if bad == "":
                    continue  # the empty string is the empty array
                raw = f"{quote(case.name)}={quote(bad, safe='')}"
            else:
                raw = f"{quote(case.name)}={quote(bad, safe='')}"
            parts = [raw]
            for other, schema in case.required:
                parts.append(serialise(other, _first_valid(schema), True))
            url = _url(case, parts)
            verdict = head(_PARAM_OPS[case.operation], url)
            checked += 1
            pointer = f"/query/{case.name}"
            if verdict is None:
                problems.append(f"{case.operation}: {url!r} accepted")
                continue
            pointers = [i.pointer for i in verdict.issues]
            if not any(p == pointer or p.startswith(pointer + "/") for p in pointers):
                problems.append(f"{case.operation}: {url!r}: issues at {pointers}, not {pointer}")
    print(f"query parameters checked (invalid): {checked}")
    assert checked > 50
    assert not problems, "\n".join(problems[:20])


def _first_valid(schema: dict[str, Any]) -> Any:
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "integer":
        low = schema.get("minimum", 1)
        return low if isinstance(low, int) else 1
    if kind == "boolean":
        return True
    if kind == "array":
        return [_first_valid(schema.get("items", {}))]
    return "x"
