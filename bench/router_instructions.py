"""Instructions per `Router.match` call from Python, counted by callgrind.

Timings of a ~100 ns call move by tens of percent on a shared machine; the number of
instructions does not. For each spec this builds the router on every operation (as
bench/test_router_match.py does), warms up one pass, then counts `--rounds` passes of
the bench's own loop (`for host, method, path in requests: match(host, method, path)`)
over one case's list (hits by default), at most GitHub's length for every spec (845
requests): Ir per match, loop included. `--peer falcon` counts falcon's
`CompiledRouter` loop the same way, on the requests it accepts; `--on falcon` counts
runmcp_fast on those same requests (falcon refuses 255 of GitHub's 551 templates). `--out OUT` keeps the
profiles (OUT.<spec>, and OUT.<spec>.base for the run without passes) for
callgrind_annotate.

    .venv/bin/python bench/router_instructions.py                  # github and graph
    .venv/bin/python bench/router_instructions.py --specs graph --case misses --out /tmp/cg
    .venv/bin/python bench/router_instructions.py --specs github --on falcon

How: the request lists are made outside valgrind (the spec parse is slow under it) and
handed over in a pickle; under `valgrind --tool=callgrind --collect-atstart=no
--toggle-collect=builtin_eval` only what runs inside `eval("run()")` is counted, and the
script calls eval once, for the timed loop. Something imported calls eval too (and
compiles there), so each spec is counted twice, with `--rounds` passes and with none: the
difference over the matches is the figure. Needs valgrind.
"""

from __future__ import annotations

import argparse
import pickle
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _prepare(specs: list[str], case: str, peer: str, path: Path) -> None:
    """The request lists `peer` is asked: the ones it accepts (see Peer.accepts)."""
    sys.path.insert(0, str(ROOT))
    from bench.harness import Env
    from bench.report import Report

    env = Env(Report())
    data = {}
    size = len(env.spec("github").workloads[case].requests)
    for spec in specs:
        full = env.spec(spec).workloads[case]
        if peer != "runmcp_fast":
            full = full.subset(env.system(spec, peer).accepts)
        data[spec] = (env.spec(spec).ops, full.requests[:size])
    path.write_bytes(pickle.dumps(data))


def _child(path: Path, spec: str, peer: str, rounds: int) -> None:
    """Under callgrind: build, warm up, count `rounds` passes inside eval."""
    sys.path.insert(0, str(ROOT))
    from bench.peers import SYSTEMS

    ops, requests = pickle.loads(path.read_bytes())[spec]
    system = SYSTEMS[peer](ops)
    one = system.loop(requests)
    one()

    def run() -> None:
        for _ in range(rounds):
            one()

    eval("run()", {"run": run})
    print(len(requests) * rounds)


def _count(path: Path, spec: str, peer: str, rounds: int, out: Path) -> tuple[int, int]:
    proc = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--collect-atstart=no",
            "--toggle-collect=builtin_eval",
            f"--callgrind-out-file={out}",
            sys.executable,
            __file__,
            "--child",
            str(path),
            "--specs",
            spec,
            "--peer",
            peer,
            "--rounds",
            str(rounds),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    calls = int(proc.stdout.split()[-1])  # requests x rounds
    found = re.search(r"Collected\s*:\s*(\d+)", proc.stderr)
    if found is None:
        raise SystemExit(f"no total in callgrind's output:\n{proc.stderr}")
    return int(found.group(1)), calls


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--specs", default="github,graph")
    ap.add_argument("--case", default="hits", choices=("hits", "param3", "misses"))
    ap.add_argument("--peer", default="runmcp_fast", help="runmcp_fast, falcon or werkzeug")
    ap.add_argument(
        "--on",
        help="count on the requests this peer accepts (e.g. falcon: the same requests as"
        " --peer falcon, as bench/test_router_match.py's 'same requests' column)",
    )
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--out", help="keep the callgrind profiles as OUT.<spec>")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    specs = args.specs.split(",")
    if args.child:
        _child(Path(args.child), specs[0], args.peer, args.rounds)
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "requests.pickle"
        _prepare(specs, args.case, args.on or args.peer, data)
        results: dict[str, Any] = {}
        for spec in specs:
            out = Path(args.out + "." + spec) if args.out else Path(tmp) / f"cg.{spec}"
            ir, calls = _count(data, spec, args.peer, args.rounds, out)
            base, _ = _count(data, spec, args.peer, 0, out.with_name(out.name + ".base"))
            results[spec] = per = (ir - base) / calls
            on = f" on {args.on}'s requests" if args.on else ""
            print(f"{args.peer}{on} {spec} {args.case}: {per:.0f} Ir per match ({calls} calls)")
        if "github" in results and "graph" in results:
            print(f"graph / github: {results['graph'] / results['github']:.3f}")


if __name__ == "__main__":
    main()
