"""Throughput of `duplicate_key` on request-like JSON bodies, beside msgspec and orjson.

The scanner runs on every JSON body after msgspec has decoded it, so the peers are
the decoders on the very same bytes: the scan should cost a fraction of the decode.
Three bodies: ~200 B (one object of ~10 members), ~1 KB (a few objects in an array),
~100 KB (an array of such objects, some with long strings). MB/s (10^6 bytes per
second, from the median) is printed in the summary under "jsonscan".
"""

from __future__ import annotations

import json
import math
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import msgspec
import orjson
import pytest

from bench.report import Report
from runmcp_fast._jsonscan import duplicate_key


def _item(rnd: random.Random, i: int, long_text: bool) -> dict[str, Any]:
    words = ["alpha", "beta", "gamma", "delta", "tool", "call", "résumé", "数据", "path/to"]
    text = " ".join(rnd.choice(words) for _ in range(rnd.randrange(100, 200) if long_text else 4))
    return {
        "id": i,
        "name": f"item-{i}",
        "kind": rnd.choice(["file", "dir", "link"]),
        "size": rnd.randrange(1 << 32),
        "ratio": round(rnd.random(), 6),
        "enabled": rnd.random() < 0.5,
        "owner": None,
        "tags": rnd.sample(words, 3),
        "meta": {"created": "2024-05-01T12:00:00Z", "rev": rnd.randrange(100)},
        "description": text + ' with "quotes" and \\ backslashes',
    }


def _bodies() -> dict[str, bytes]:
    rnd = random.Random(7)
    small = {
        "jsonrpc": "2.0",
        "id": 17,
        "method": "tools/call",
        "params": {"name": "search", "arguments": {"query": "gateway json", "limit": 10}},
        "trace": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    }
    kb = {"jsonrpc": "2.0", "id": 18, "items": [_item(rnd, i, False) for i in range(3)]}
    big = {"items": [_item(rnd, i, i % 8 == 0) for i in range(250)], "next": None}
    return {
        name: json.dumps(body, ensure_ascii=False).encode()
        for name, body in (("200B", small), ("1KB", kb), ("100KB", big))
    }


BODIES = _bodies()
SYSTEMS: dict[str, Callable[[bytes], object]] = {
    "duplicate_key": duplicate_key,
    "msgspec.json.decode": msgspec.json.decode,
    "orjson.loads": orjson.loads,
}


@pytest.mark.parametrize("system", list(SYSTEMS))
@pytest.mark.parametrize("body", list(BODIES))
def test_jsonscan(
    benchmark: Any, report: Report, bench_seconds: float, body: str, system: str
) -> None:
    benchmark.group = f"jsonscan {body}"
    data = BODIES[body]
    fn = SYSTEMS[system]
    # Guard: the bodies are clean, and the scanner would have caught a repeat in them.
    assert duplicate_key(data) is None
    assert duplicate_key(data[:-1] + b',"' + next(iter(json.loads(data))).encode() + b'":0}')
    assert msgspec.json.decode(data) == orjson.loads(data) == json.loads(data)

    fn(data)
    t0 = time.perf_counter()
    fn(data)
    once = max(time.perf_counter() - t0, 1e-7)
    # Sub-microsecond calls: time batches of calls, not single ones (timer overhead).
    iterations = max(1, math.ceil(2e-4 / once))
    rounds = min(max(math.ceil(bench_seconds / (once * iterations)), 5), 10_000)
    benchmark.extra_info.update(bytes=len(data))
    benchmark.pedantic(fn, args=(data,), rounds=rounds, iterations=iterations, warmup_rounds=1)
    if benchmark.stats:
        median = statistics.median(benchmark.stats.stats.data)
        benchmark.extra_info.update(mb_per_s=len(data) / median / 1e6)
        report.note(
            "jsonscan",
            f"{body} ({len(data):,} B) {system}: {len(data) / median / 1e6:,.0f} MB/s"
            f" ({median * 1e9:,.0f} ns per call)",
        )
