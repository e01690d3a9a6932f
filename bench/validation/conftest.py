"""Session fixtures and the summary hook of the validation benchmarks."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from bench.validation import report
from bench.validation.peers import Peer, build
from bench.validation.workload import SIZES

ROWS = pytest.StashKey[list[report.Row]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[ROWS] = []


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's own table
def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    lines = report.lines(config.stash.get(ROWS, []))
    if lines:
        terminalreporter.section("validation benchmark summary")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def rows(request: pytest.FixtureRequest) -> list[report.Row]:
    return request.config.stash[ROWS]


@cache
def system(name: str, size: str) -> Peer:
    """Built once per session; `build` checks it accepts the valid body, refuses the invalid."""
    return build(name, SIZES[size])
