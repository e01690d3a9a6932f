"""handoff.pause: a build thread offers the CPU every EVERY seconds, other threads never."""

from __future__ import annotations

import threading

import pytest

from runmcp_fast import handoff


@pytest.fixture
def yields(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    monkeypatch.setattr(handoff, "_yield", lambda: calls.append(threading.get_ident()))
    monkeypatch.setattr(handoff, "_last", 0.0)
    return calls


def test_a_thread_outside_building_never_yields(yields: list[int]) -> None:
    for _ in range(3):
        handoff.pause()
    assert yields == []


def test_inside_building_at_most_one_offer_per_interval(
    yields: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [100.0]  # a clock the test moves: no dependence on how fast this thread runs
    monkeypatch.setattr(handoff, "_clock", lambda: now[0])
    with handoff.building():
        handoff.pause()  # the first call: the last offer was long ago
        assert len(yields) == 1
        now[0] += handoff.EVERY / 2
        handoff.pause()  # within the interval: not yet
        assert len(yields) == 1
        now[0] += handoff.EVERY
        handoff.pause()
        assert len(yields) == 2
    now[0] += handoff.EVERY * 2
    handoff.pause()  # out of building() again
    assert len(yields) == 2


def test_run_and_nesting(yields: list[int]) -> None:
    def work() -> int:
        with handoff.building():  # nested: leaving it keeps the outer one
            pass
        handoff.pause()
        return 7

    assert handoff.run(work) == 7
    assert yields == [threading.get_ident()]
    assert threading.get_ident() not in handoff._builders
