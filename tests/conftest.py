"""Shared fixtures: the public specs (marker `specs`), the opt-in `directory`
run, a "route table notes" section in the terminal summary, and `harness`
(real upstreams and gateways on loopback threads: servers.Harness)."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from public_specs import SpecsUnavailable, ensure_specs, load_spec
from servers import Harness

# Lines a test wants a person to see even when it passes (conflicting routes
# of a real spec, ...); printed at the end of the run.
_NOTES: list[str] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The whole-directory run and the long cluster runs take minutes: they only
    # run when asked for by name (`-m directory`, `-m cluster`, ...).
    asked = config.getoption("markexpr") or ""
    for marker in ("directory", "cluster", "conformance", "fuzz"):
        if marker in asked:
            continue
        skip = pytest.mark.skip(reason=f"opt-in: run with -m {marker}")
        for item in items:
            if item.get_closest_marker(marker) is not None:
                item.add_marker(skip)


# Tests between two full cycle collections (see _old_objects_frozen).
_FULL_COLLECT_EVERY = 200
_tests_since_collect = 0


@pytest.fixture(autouse=True)
def _old_objects_frozen() -> None:
    """Before each test, what is already on the heap is frozen (gc.freeze).

    A Gateway's start runs `gc.collect()` (then freezes its snapshot) and its stop
    unfreezes everything; a gateway is started ~2,000 times in this one process,
    whose heap holds the public specs earlier tests loaded (GitHub, Graph,
    Kubernetes, Stripe: 320k objects, 250 ms a full collection). Frozen first, that
    collection walks only what the test made: ~0.3 s a gateway test late in the
    run was this walk. Every _FULL_COLLECT_EVERY tests the heap is unfrozen and
    collected whole, so the garbage cycles frozen meanwhile do not pile up.
    """
    global _tests_since_collect
    _tests_since_collect += 1
    if _tests_since_collect >= _FULL_COLLECT_EVERY:
        _tests_since_collect = 0
        gc.unfreeze()
        gc.collect()
    gc.freeze()


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


@pytest.fixture
def harness() -> Iterator[Harness]:
    """Upstreams, gateways and clients for one test, closed at its end."""
    h = Harness()
    try:
        yield h
    finally:
        h.close()
