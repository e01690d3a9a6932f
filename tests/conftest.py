"""Shared fixtures: the public specs (marker `specs`), the opt-in `directory`
run, and a "route table notes" section in the terminal summary."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from public_specs import SpecsUnavailable, ensure_specs, load_spec

# Lines a test wants a person to see even when it passes (conflicting routes
# of a real spec, ...); printed at the end of the run.
_NOTES: list[str] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The whole-directory run takes minutes: it only runs when asked for by
    # name (`-m directory`, `-m "specs or directory"`, ...).
    if "directory" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="opt-in: run with -m directory")
    for item in items:
        if item.get_closest_marker("directory") is not None:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _NOTES:
        terminalreporter.section("route table notes")
        for line in _NOTES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def route_notes() -> Callable[[str], None]:
    """Call with a line to show it in the run's summary."""
    return _NOTES.append


@pytest.fixture(scope="session")
def specs_dir() -> Path:
    """The cache of public specs; skips the test when they can not be fetched."""
    try:
        return ensure_specs()
    except SpecsUnavailable as exc:
        pytest.skip(f"public specs unavailable: {exc}")


@pytest.fixture(autouse=True)
def _needs_specs(request: pytest.FixtureRequest) -> None:
    # Tests marked `specs` or `directory` get the skip-when-absent behaviour
    # without asking for the fixture themselves.
    node = request.node
    if node.get_closest_marker("specs") or node.get_closest_marker("directory"):
        request.getfixturevalue("specs_dir")


_LOADED: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="session")
def public_spec(specs_dir: Path) -> Callable[[str], dict[str, Any]]:
    """`public_spec("github")` -> the parsed spec, parsed once per session."""

    def get(name: str) -> dict[str, Any]:
        if name not in _LOADED:
            _LOADED[name] = load_spec(name)
        return _LOADED[name]

    return get
