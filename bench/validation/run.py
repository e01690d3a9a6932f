"""Decode + validate a JSON body: runmcp_fast against its peers, then where its time goes.

The same systems and bodies as the pytest-benchmark suite (`test_decode_validate.py`),
timed round-robin within each size (so a neighbour's burst of load spreads over all
of them), with the ratios, the target, and a breakdown of runmcp_fast's hot path.
See bench/validation/README.md.

    .venv/bin/python bench/validation/run.py [--seconds 1] [--sizes small,1k,100k]
        [--systems runmcp_fast,jsonschema-rs,...] [--no-breakdown] [--cpu 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Collection
from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script: `bench.validation` from the repo root
    sys.path.insert(0, str(REPO))

from bench.validation import report  # noqa: E402
from bench.validation.breakdown import components, pattern_checks  # noqa: E402
from bench.validation.peers import GATEWAY, SYSTEMS, build  # noqa: E402
from bench.validation.timing import interleaved  # noqa: E402
from bench.validation.workload import SIZES  # noqa: E402

# The pure-Python validator takes ~60 ms per 100 KB body: a few rounds are plenty.
SLOW = {"jsonschema": 0.25}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=1.0, help="timed work per system and size (default 1)"
    )
    parser.add_argument("--sizes", default=",".join(SIZES), help=f"of {','.join(SIZES)}")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"of {','.join(SYSTEMS)}")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the breakdown")
    parser.add_argument("--cpu", type=int, help="pin this process to one CPU")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=10.0,
        help="before each size, wait up to this many seconds for our CPU to be idle",
    )
    parser.add_argument("--json", type=Path, help="also write every round here")
    args = parser.parse_args(argv)
    args.sizes = _choices(parser, "--sizes", args.sizes, SIZES)
    args.systems = _choices(parser, "--systems", args.systems, SYSTEMS)
    return args


def _choices(
    parser: argparse.ArgumentParser, option: str, value: str, known: Collection[str]
) -> list[str]:
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in known]
    if unknown:
        parser.error(f"{option}: unknown {', '.join(unknown)}")
    return chosen


def _busy(cpus: Collection[int]) -> dict[int, float]:
    """Seconds each CPU was not idle, from /proc/stat."""
    wanted = {f"cpu{c}": c for c in cpus}
    busy: dict[int, float] = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *ticks = line.split()
            if name in wanted:
                values = list(map(int, ticks[:8]))
                busy[wanted[name]] = (sum(values) - values[3] - values[4]) / os.sysconf(
                    "SC_CLK_TCK"
                )
    return busy


def wait_quiet(cpus: Collection[int], timeout: float, limit: float = 0.10) -> float:
    """Wait (up to `timeout` s) for `cpus` to be busy less than `limit` over 0.5 s."""
    deadline = time.monotonic() + timeout
    while True:
        before = _busy(cpus)
        time.sleep(0.5)
        after = _busy(cpus)
        share = max((after[c] - before[c]) / 0.5 for c in cpus)
        if share < limit or time.monotonic() >= deadline:
            return share


def measure(args: argparse.Namespace) -> tuple[list[report.Row], dict[str, dict[str, list[float]]]]:
    rows: list[report.Row] = []
    parts: dict[str, dict[str, list[float]]] = {}
    cpus = sorted(os.sched_getaffinity(0))
    for size in args.sizes:
        body = SIZES[size].body
        if args.quiet_wait > 0:
            share = wait_quiet(cpus, args.quiet_wait)
            if share >= 0.10:
                print(f"  CPUs still {share:.0%} busy before {size}", file=sys.stderr)
        print(f"  {size}: {len(body):,} bytes ...", file=sys.stderr)
        peers = {name: build(name, SIZES[size]).call for name in args.systems}
        fast = {n: c for n, c in peers.items() if n not in SLOW}
        for name, seconds in interleaved(fast, body, args.seconds).items():
            rows.append(report.Row(size, name, seconds))
        for name in peers.keys() & SLOW.keys():
            seconds = interleaved({name: peers[name]}, body, args.seconds * SLOW[name])[name]
            rows.append(report.Row(size, name, seconds))
        if not args.no_breakdown:
            print(f"  {size}: breakdown ...", file=sys.stderr)
            parts[size] = interleaved(components(SIZES[size]), body, args.seconds)
    return rows, parts


def breakdown_table(parts: dict[str, dict[str, list[float]]]) -> list[str]:
    out = [
        "Breakdown of runmcp_fast's hot path (same run, same bytes, round-robin): median µs per"
        " call, and its share of `check_json`.",
        "",
        "| size | part | median µs | share of check_json |",
        "| --- | --- | ---: | ---: |",
    ]
    for size, timings in parts.items():
        medians = {label: statistics.median(s) * 1e6 for label, s in timings.items()}
        whole = next(iter(medians.values()))
        for label, us in medians.items():
            out.append(f"| {size} | {label} | {report._fmt(us)} | {us / whole:.0%} |")
        checks = pattern_checks(SIZES[size])
        decode = medians["decoder.decode: msgspec typed decode + checks"]
        loose = medians["typed decode, no pattern / format"]
        dup = medians["duplicate_key scan alone"]
        glue = whole - decode - dup
        out.append(
            f"| {size} | = patterns: {checks} strings checked by `re`, "
            f"{(decode - loose) / max(checks, 1) * 1e3:,.0f} ns each (decode - no pattern)"
            f" | {report._fmt(decode - loose)} | {(decode - loose) / whole:.0%} |"
        )
        out.append(
            f"| {size} | = Python glue of check_json (whole - decode - scan)"
            f" | {report._fmt(glue)} | {glue / whole:.0%} |"
        )
    return out


def describe(args: argparse.Namespace) -> str:
    versions = ", ".join(
        f"{name} {version(dist)}"
        for name, dist in (
            ("msgspec", "msgspec"),
            ("orjson", "orjson"),
            ("jsonschema-rs", "jsonschema_rs"),
            ("fastjsonschema", "fastjsonschema"),
            ("jsonschema", "jsonschema"),
            ("pydantic", "pydantic"),
        )
    )
    return (
        f"# Validation benchmark: decode + validate one JSON body; {args.seconds:g} s of timed"
        f" work per system and size\n# Python {platform.python_version()}, {os.cpu_count()} CPUs"
        f" (this process may use {sorted(os.sched_getaffinity(0))}); {versions}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    print(describe(args))
    for size in args.sizes:
        s = SIZES[size]
        print(f"# {size}: {s.definition}, {len(s.body):,} B; invalid: {s.why_invalid}")
    rows, parts = measure(args)
    print("\n" + "\n".join(report.lines(rows)))
    if parts:
        print("\n" + "\n".join(breakdown_table(parts)))
    if args.json:
        dump = {
            "rows": [{"size": r.size, "system": r.system, "seconds": r.seconds} for r in rows],
            "breakdown": parts,
        }
        args.json.write_text(json.dumps(dump, indent=1))
    if GATEWAY not in args.systems:
        print("\n(runmcp_fast not measured: no ratios)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
