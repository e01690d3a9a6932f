"""Decode + validate one JSON body: runmcp_fast against jsonschema-rs, fastjsonschema,
jsonschema and pydantic, on the same bytes, at ~150 B, ~1 KB and ~100 KB.

Before a system is timed, it must accept the valid body and refuse the invalid one
(`peers.build`); the summary at the end prints the ratios and the target.
"""

from __future__ import annotations

import pytest

from bench.validation import report
from bench.validation.conftest import system
from bench.validation.peers import SYSTEMS
from bench.validation.timing import time_benchmark
from bench.validation.workload import SIZES


@pytest.mark.parametrize("name", SYSTEMS)
@pytest.mark.parametrize("size", list(SIZES))
def test_decode_validate(
    benchmark: object, rows: list[report.Row], bench_seconds: float, size: str, name: str
) -> None:
    peer = system(name, size)
    body = SIZES[size].body
    benchmark.group = f"validate {size} ({len(body):,} B)"  # type: ignore[attr-defined]
    seconds = time_benchmark(benchmark, peer.call, body, bench_seconds)
    if seconds:
        rows.append(report.Row(size, name, seconds))
