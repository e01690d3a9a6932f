"""Does a match get slower as the table grows? GitHub's requests, two tables.

The same GitHub hits are timed against GitHub's own 845 routes and against
GitHub's plus Graph v1.0's (12,267 routes in one table). The two medians should
be equal: the walk depends on the path, not on how many routes sit beside it.
Look for the `table size` group in pytest-benchmark's table (ns per request).
"""

from __future__ import annotations

from typing import Any

import pytest

from bench.harness import Env, time_loop
from bench.peers import RunmcpFast


@pytest.mark.parametrize(
    "tables", [("github",), ("github", "graph")], ids=["github", "github+graph"]
)
def test_github_hits_by_table_size(
    benchmark: Any, env: Env, bench_seconds: float, tables: tuple[str, ...]
) -> None:
    benchmark.group = "table size: GitHub hits"
    ops = [op for spec in tables for op in env.spec(spec).ops]
    router = RunmcpFast(ops)
    workload = env.workload("github", "hits", "runmcp_fast")
    for (host, method, path), expected in zip(workload.requests, workload.expected, strict=True):
        assert router.resolve(host, method, path) == expected, (method, path)
    benchmark.extra_info["routes"] = len(ops)
    time_loop(benchmark, router.loop(workload.requests), len(workload.requests), bench_seconds)
