"""Options, session fixtures and the summary hook of the router benchmarks."""

from __future__ import annotations

from typing import Any

import pytest

from bench.harness import Env
from bench.report import Report

REPORT = pytest.StashKey[Report]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--bench-seconds",
        type=float,
        default=0.5,
        help="router benchmarks: aim for about this much timed work per benchmark (default 0.5)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[REPORT] = Report()


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's own table
def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    lines = config.stash[REPORT].lines()
    if lines:
        terminalreporter.section("router benchmark summary")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def report(request: pytest.FixtureRequest) -> Report:
    return request.config.stash[REPORT]


@pytest.fixture(scope="session")
def env(report: Report) -> Env:
    return Env(report)


@pytest.fixture(scope="session")
def bench_seconds(request: pytest.FixtureRequest) -> float:
    return float(request.config.getoption("--bench-seconds"))
