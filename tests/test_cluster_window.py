"""The agent's coalescing window: a sustained stream of writes stretches it, quiet
shrinks it back (pure logic), and the config checks its bounds."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_config import problems_of, write

from runmcp_fast.cluster.window import Window


def test_a_burst_that_outlasts_its_window_doubles_the_next_up_to_the_cap() -> None:
    window = Window(0.05, 0.25, 1.0)
    seen = []
    for _ in range(5):
        window.flushed(cut_short=True)
        seen.append(window.longest)
    assert seen == [0.5, 1.0, 1.0, 1.0, 1.0]
    assert window.quiet == 0.05


def test_quiet_batches_halve_it_back_to_coalesce_max() -> None:
    window = Window(0.05, 0.25, 2.0)
    for _ in range(3):
        window.flushed(cut_short=True)
    assert window.longest == 2.0
    seen = []
    for _ in range(4):
        window.flushed(cut_short=False)
        seen.append(window.longest)
    assert seen == [1.0, 0.5, 0.25, 0.25]


def test_one_stall_in_a_stream_does_not_start_it_over() -> None:
    window = Window(0.05, 0.25, 1.0)
    for cut_short in (True, True, False, True):
        window.flushed(cut_short=cut_short)
    assert window.longest == 1.0


def test_a_cap_below_coalesce_max_never_shortens_the_window() -> None:
    window = Window(0.05, 0.25, 0.1)
    window.flushed(cut_short=True)
    assert window.longest == 0.25


@pytest.mark.parametrize(
    ("store", "pointer", "hint"),
    [
        ({"coalesce_burst": 0.1}, "/config_store/coalesce_burst", "at least 0.25"),
        ({"coalesce_burst": 0}, "/config_store/coalesce_burst", "seconds, e.g. 2"),
    ],
)
def test_coalesce_burst_is_checked(
    tmp_path: Path, store: dict[str, float], pointer: str, hint: str
) -> None:
    path = write(
        tmp_path,
        {
            "listeners": [{"address": "127.0.0.1:0"}],
            "config_store": {"type": "etcd", "endpoints": ["http://127.0.0.1:2379"], **store},
        },
    )
    problems = problems_of(path)
    assert [(p[1], p[3]) for p in problems if p[1] == pointer][:1] == [(pointer, hint)], problems
