"""bench/mcp/hops.py's reading of a capture: packets cut into calls, each call's hops
(the proxy's turnarounds and the upstream's time) from the right packets."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# (appended: its modules' plain names must not shadow anything the suite imports)
sys.path.append(str(Path(__file__).resolve().parent.parent / "bench" / "mcp"))

from hops import call_hops, split_calls


def packets(*timed: tuple[float, str]) -> list[tuple[float, str]]:
    """(µs, direction) -> (seconds, direction), as read from a capture."""
    return [(t / 1e6, d) for t, d in timed]


def test_a_call_in_two_request_packets_and_three_answer_packets() -> None:
    # The request's head and body in two packets; the answer's head, an event, the end.
    call = packets(
        (0, "cp"), (10, "cp"), (50, "pu"), (60, "pu"), (400, "up"), (440, "pc"),
        (500, "up"), (520, "up"), (560, "pc"),
    )  # fmt: skip
    hops = call_hops(call)
    assert hops == pytest.approx(
        {"request": 40, "upstream": 340, "head": 40, "end": 40, "total": 560, "pieces": 3}
    )


def test_calls_are_cut_where_the_client_speaks_after_an_answer() -> None:
    first = [(0, "cp"), (40, "pu"), (300, "up"), (330, "pc")]
    second = [(1000, "cp"), (1050, "pu"), (1300, "up"), (1340, "pc"), (1345, "pc")]
    calls = split_calls(packets(*first, *second))
    assert [len(c) for c in calls] == [4, 5]
    assert call_hops(calls[1]) == pytest.approx(
        {"request": 50, "upstream": 250, "head": 40, "end": 45, "total": 345, "pieces": 1}
    )


@pytest.mark.parametrize(
    "call",
    [
        [(0, "pu"), (300, "up"), (330, "pc")],  # the capture began mid-call
        [(0, "cp"), (40, "pu")],  # it ended before the answer
        [(0, "cp"), (40, "pc")],  # answered by the proxy itself, nothing forwarded
        [(0, "cp"), (40, "pu"), (300, "up"), (330, "pc"), (360, "up")],  # answer cut short
    ],
)
def test_a_partial_call_is_left_out(call: list[tuple[float, str]]) -> None:
    assert call_hops(packets(*call)) is None
