"""bench/mcp's balanced call orders (measure.balanced_orders): every system of the
interleaved latency run comes right after every other one, and after the direct call,
equally often (a rotated order put the first system listed after the direct call in 3
rounds of 4, and that system's added latency came out highest, whichever it was)."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

# (appended: its modules' plain names must not shadow anything the suite imports)
sys.path.append(str(Path(__file__).resolve().parent.parent / "bench" / "mcp"))

from measure import balanced_orders


@pytest.mark.parametrize("n", range(2, 10))
def test_each_item_follows_each_other_item_equally_often(n: int) -> None:
    rows = balanced_orders(n)
    assert len(rows) == (n if n % 2 == 0 else 2 * n)
    assert all(sorted(row) == list(range(n)) for row in rows)
    follows = Counter((row[i], row[i + 1]) for row in rows for i in range(n - 1))
    assert set(follows) == {(a, b) for a in range(n) for b in range(n) if a != b}
    assert len(set(follows.values())) == 1
