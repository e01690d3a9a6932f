"""The one-pass byte validator (`_fastcheck`) against the msgspec path and jsonschema-rs.

The bodies and the schema are the validation benchmark's (bench/validation/workload.py):
one `LineItem` (~150 B), an `Order` (~1.1 KB, 7 line items), a `BulkItems` upload
(~100 KB, 820 line items). Systems, each built once, outside the timing:

| system | timed call |
| --- | --- |
| fastcheck | `compile_fast(schema).check(data)` (True: valid) |
| msgspec | the msgspec path: `decoder.decode(data)`, then `duplicate_key(data)` |
| check_json | `SchemaValidator(schema).check_json(data)`: the gateway's hot path as it is |
| jsonschema-rs | `validator.is_valid(orjson.loads(data))`, `validate_formats=True` |
| duplicate_key | `_jsonscan.duplicate_key(data)`: a structural pass alone, the floor |

Before timing, fastcheck must accept the valid body and refuse every invalid one of
its size. The summary ("fastcheck" under "router benchmark summary") prints µs per
body, MB/s, and fastcheck's speed-up over each peer.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import pytest

from bench.report import Report
from bench.validation.peers import jsonschema_rs_peer
from bench.validation.timing import time_benchmark
from bench.validation.workload import SIZES
from runmcp_fast._jsonscan import duplicate_key
from runmcp_fast.validation import compile_schema
from runmcp_fast.validation.fastpath import compile_fast_or_raise

SYSTEMS = ("fastcheck", "msgspec", "check_json", "jsonschema-rs", "duplicate_key")
_MEDIANS: dict[tuple[str, str], float] = {}


def _system(name: str, size: str) -> Callable[[bytes], Any]:
    workload = SIZES[size]
    if name == "fastcheck":
        program = compile_fast_or_raise(workload.schema)
        assert program.check(workload.body), "fastcheck refuses the valid body"
        for why, bad in [("the invalid body", workload.invalid), *workload.invalid_bodies]:
            assert not program.check(bad), f"fastcheck accepts an invalid body ({why})"
        return program.check
    if name in ("msgspec", "check_json"):
        validator = compile_schema(workload.schema)
        assert validator.check_json(workload.body) is None
        if name == "check_json":
            return validator.check_json
        decode = validator.decoder.decode

        def msgspec_path(data: bytes) -> Any:
            decode(data)
            return duplicate_key(data)

        return msgspec_path
    if name == "jsonschema-rs":
        return jsonschema_rs_peer(workload).call
    return duplicate_key


@pytest.mark.parametrize("name", SYSTEMS)
@pytest.mark.parametrize("size", list(SIZES))
def test_fastcheck(
    benchmark: Any, report: Report, bench_seconds: float, size: str, name: str
) -> None:
    body = SIZES[size].body
    benchmark.group = f"fastcheck {size} ({len(body):,} B)"
    call = _system(name, size)
    seconds = time_benchmark(benchmark, call, body, bench_seconds)
    if not seconds:
        return
    median = statistics.median(seconds)
    _MEDIANS[size, name] = median
    line = (
        f"{size} ({len(body):,} B) {name}: {median * 1e6:,.2f} µs per body, "
        f"{len(body) / median / 1e6:,.0f} MB/s"
    )
    mine = _MEDIANS.get((size, "fastcheck"))
    if name == "duplicate_key" and mine:
        line += f"; fastcheck takes {mine / median:.2f}x this structural floor"
    elif name != "fastcheck" and mine:
        line += f"; fastcheck is {median / mine:.2f}x faster"
    report.note("fastcheck", line)
