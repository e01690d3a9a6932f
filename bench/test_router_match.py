"""Per-call time of `match` on real specs, beside falcon, Starlette and werkzeug.

One benchmark per (spec, case, system). A peer is timed on the requests it can route;
`runmcp_fast@<peer>` reruns runmcp_fast on exactly that list, for the ratio.
"""

from __future__ import annotations

import statistics
from typing import Any

import pytest

from bench.harness import Env, time_loop
from bench.peers import PEERS
from bench.report import MatchRow, Report
from bench.workload import CASES, MATCH_SPECS

RUNS = [pytest.param("runmcp_fast", "runmcp_fast", id="runmcp_fast")]
for _peer in PEERS:
    RUNS += [
        pytest.param(_peer, _peer, id=_peer),
        pytest.param("runmcp_fast", _peer, id=f"runmcp_fast@{_peer}"),
    ]


# A guard failure ends the test before the fixture runs; pytest-benchmark warns about that.
@pytest.mark.filterwarnings("ignore:Benchmark fixture was not used")
@pytest.mark.parametrize(("system", "on"), RUNS)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("spec", MATCH_SPECS)
def test_match(
    benchmark: Any,
    env: Env,
    report: Report,
    bench_seconds: float,
    spec: str,
    case: str,
    system: str,
    on: str,
) -> None:
    _time_match(benchmark, env, report, bench_seconds, spec, case, system, on)


@pytest.mark.filterwarnings("ignore:Benchmark fixture was not used")
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("spec", [s for s in MATCH_SPECS if s != "github"])
def test_match_github_size(
    benchmark: Any, env: Env, report: Report, bench_seconds: float, spec: str, case: str
) -> None:
    """runmcp_fast on as many requests as GitHub's list: the fair Graph-vs-GitHub ratio."""
    _time_match(benchmark, env, report, bench_seconds, spec, case, "runmcp_fast", "github-size")


def _time_match(
    benchmark: Any,
    env: Env,
    report: Report,
    bench_seconds: float,
    spec: str,
    case: str,
    system: str,
    on: str,
) -> None:
    benchmark.group = f"match {spec} {case}"
    workload = env.workload(spec, case, on)
    peer = env.system(spec, system)
    # Correctness guard: a broken adapter (or router) is reported, not timed.
    wrong = env.guard(spec, case, system, on)
    if wrong:
        pytest.fail(
            f"{system} disagrees with the reference on {len(wrong)}/{len(workload.requests)}"
            " requests:\n  " + "\n  ".join(wrong[:10]),
            pytrace=False,
        )
    run = peer.loop(workload.requests)
    data = time_loop(benchmark, run, len(workload.requests), bench_seconds)
    if data:
        report.add_match(
            MatchRow(
                spec,
                case,
                system,
                on,
                len(workload.requests),
                len(data),
                statistics.median(data) * 1e9,
                min(data) * 1e9,
                max(data) * 1e9,
            )
        )


def test_loop_overhead(benchmark: Any, env: Env, report: Report, bench_seconds: float) -> None:
    """The part of every number above that is the Python loop, not the router."""
    benchmark.group = "match github hits"
    requests = env.workload("github", "hits", "runmcp_fast").requests

    def run() -> None:
        for _host, _method, _path in requests:
            pass

    data = time_loop(benchmark, run, len(requests), bench_seconds)
    if data:
        report.loop_overhead_ns = statistics.median(data) * 1e9
