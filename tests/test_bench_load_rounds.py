"""bench/load/run.py --rounds: the row each peer's tables show (its median round by req/s)
and the validation table's on / off ratio, taken round by round (the two gateways
measured in turn within one round, so a drift of the machine falls on both)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# (appended: its modules' plain names must not shadow anything the suite imports)
sys.path.append(str(Path(__file__).resolve().parent.parent / "bench" / "load"))

from tables import GATEWAY, GATEWAY_NOVALIDATION, Row, Target, median_row, paired_ratios
from wrkrun import WrkResult


def _row(peer: str, rps: float | None) -> Row:
    wrk = None
    if rps is not None:
        wrk = WrkResult(
            requests=int(rps * 10), seconds=10.0, bytes_read=0.0, bytes_slack=0.0,
            p50_ms=1.0, p99_ms=2.0, errors={}, non_2xx=0, cpu_seconds=0.0, output="",
        )  # fmt: skip
    return Row(peer, "post-1k", 64, wrk, 1.0)


@pytest.mark.parametrize(
    ("rates", "median"),
    [
        ([300.0], 300.0),
        ([500.0, 100.0, 300.0], 300.0),
        ([400.0, 100.0, 300.0, 200.0], 200.0),  # even: the lower middle one
        ([None, 500.0, 100.0], 100.0),  # an unmeasured round is left out
    ],
)
def test_the_median_round_by_requests_per_second(rates: list[float | None], median: float) -> None:
    assert median_row([_row(GATEWAY, r) for r in rates]).rps == pytest.approx(median)


def test_no_measured_round_gives_the_first() -> None:
    rows = [_row(GATEWAY, None), _row(GATEWAY, None)]
    assert median_row(rows) is rows[0]


def test_on_off_ratios_are_paired_round_by_round() -> None:
    on = [_row(GATEWAY, r) for r in (90.0, 50.0, None, 100.0)]
    off = [_row(GATEWAY_NOVALIDATION, r) for r in (100.0, 50.0, 80.0, None)]
    group = Target("post-1k", 64, {}, 1, {GATEWAY: on, GATEWAY_NOVALIDATION: off})
    # (rounds 3 and 4 lack one of the two: no ratio for them)
    assert paired_ratios(group, GATEWAY, GATEWAY_NOVALIDATION) == pytest.approx([0.9, 1.0])
