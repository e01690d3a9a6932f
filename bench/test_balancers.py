"""What choosing a replica costs: least request, round robin and consistent hashing
(Maglev, ring), with equal and unequal weights, over 3 and 100 replicas.

`Replicas.time_choices` runs the data plane's own choice `n` times from C (a hash
policy hashes a key each time, as a request's would be; the header lookup that
finds the key is left out), so the numbers are the balancer's alone, no Python
call per choice. ns per choice (from the median) is printed in the summary under
"balancers". A service with one replica and no circuit breaker chooses nothing
(`Replicas.simple`): it is not here.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench.harness import time_loop
from bench.report import Report
from runmcp_fast._dataplane import Replicas
from runmcp_fast.config import HashOnConfig

PER = 100_000  # choices per timed pass

CASES = [
    (policy, algorithm, count, weighted)
    for count in (3, 100)
    for weighted in (False, True)
    for policy, algorithm in (
        ("round_robin", "maglev"),
        ("least_request", "maglev"),
        ("hash", "maglev"),
        ("hash", "ring"),
    )
]


def _name(case: tuple[str, str, int, bool]) -> str:
    policy, algorithm, count, weighted = case
    kind = f"hash/{algorithm}" if policy == "hash" else policy
    return f"{kind}, {count} replicas{', weighted' if weighted else ''}"


@pytest.mark.parametrize("case", CASES, ids=_name)
def test_choose(
    benchmark: Any, report: Report, bench_seconds: float, case: tuple[str, str, int, bool]
) -> None:
    benchmark.group = "balancers"
    policy, algorithm, count, weighted = case
    urls = [f"http://10.0.{i // 250}.{i % 250 + 1}:8080" for i in range(count)]
    replicas = Replicas(
        [None] * count,
        urls=urls,
        weights=[1 + i % 3 for i in range(count)] if weighted else None,
        policy=policy,
        hash_on=HashOnConfig(header="x-user") if policy == "hash" else None,
        algorithm=algorithm,
    )

    def run() -> None:
        replicas.time_choices(PER)

    data = time_loop(benchmark, run, PER, bench_seconds)
    if data:
        median = sorted(data)[len(data) // 2]
        report.note("balancers", f"{_name(case)}: {median * 1e9:,.1f} ns per choice")
