"""The request-id plugin's id generator against the usual ways to make a request id.

`new_request_id` is the compiled step's generator (a per-process random prefix and a mixed
counter, formatted as 32 hex digits in C), called here through its Python wrapper, so its
numbers include one Python call that the step itself does not pay. The peers make the
same kind of id in Python: uuid4 (what APISIX and most Python gateways use), and 16
random bytes from the OS as hex (nginx's $request_id). ns per id (from the median) is
printed in the summary under "request-id".
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from bench.harness import time_loop
from bench.report import Report
from runmcp_fast.plugins._steps import new_request_id

SYSTEMS: dict[str, Callable[[], object]] = {
    "new_request_id (runmcp_fast)": new_request_id,
    "uuid.uuid4().hex": lambda: uuid.uuid4().hex,
    "str(uuid.uuid4())": lambda: str(uuid.uuid4()),
    "os.urandom(16).hex()": lambda: os.urandom(16).hex(),
    "secrets.token_hex(16)": lambda: secrets.token_hex(16),
    # What every row pays around the id: the loop and one call of a C function.
    "baseline: loop + int()": int,
}
PER = 1000  # ids per timed pass: a single id is below the timer's resolution


@pytest.mark.parametrize("system", list(SYSTEMS))
def test_request_id(benchmark: Any, report: Report, bench_seconds: float, system: str) -> None:
    benchmark.group = "request-id"
    make = SYSTEMS[system]
    if make is not int:  # Guard: the ids do not repeat.
        ids = {make() for _ in range(10_000)}
        assert len(ids) == 10_000

    def run() -> None:
        for _ in range(PER):
            make()

    data = time_loop(benchmark, run, PER, bench_seconds)
    if data:
        median = sorted(data)[len(data) // 2]
        report.note("request-id", f"{system}: {median * 1e9:,.0f} ns per id")
