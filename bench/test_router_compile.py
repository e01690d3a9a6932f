"""Spec load and router build time, measured separately, on the three specs.

Router build = Router() + add() for every operation + compile(): what a config reload
costs once the spec is in memory. Spec load is timed twice when the loader exists:
the bare JSON parse, and runmcp_fast.openapi.load_spec (what the gateway runs).
"""

from __future__ import annotations

import gc
import importlib
from collections.abc import Callable
from typing import Any

import pytest

from bench.report import Report
from bench.workload import SPECS, Op, load_raw, operations, spec_file
from runmcp_fast.router import Router

ROUNDS = {"github": 5, "graph": 3, "graph-beta": 3}


def _openapi(name: str) -> Callable[..., Any]:
    """A function of runmcp_fast.openapi, or a skip while that package lacks it."""
    try:
        module = importlib.import_module("runmcp_fast.openapi")
    except ImportError as exc:
        pytest.skip(f"runmcp_fast.openapi does not import: {exc}")
    fn = getattr(module, name, None)
    if fn is None:
        pytest.skip(f"runmcp_fast.openapi has no {name}() yet")
    return fn  # type: ignore[no-any-return]


def collect() -> None:
    # Each round starts from a clean collector: otherwise whether a full collection (over
    # the millions of objects of a loaded Graph spec) lands inside a round is luck.
    gc.collect()


def build(ops: list[Op]) -> Router:
    router = Router()
    for method, template in ops:
        router.add(method, template, template)
    router.compile()
    return router


@pytest.mark.parametrize("spec", list(SPECS))
def test_spec_load_json(benchmark: Any, report: Report, spec: str) -> None:
    benchmark.group = "compile: spec load"
    spec_file(spec)  # fetch outside the timing
    benchmark.pedantic(load_raw, args=(spec,), rounds=ROUNDS[spec], setup=collect)
    if benchmark.stats:
        report.add_compile(spec, "spec load: JSON parse", benchmark.stats.stats.data)


@pytest.mark.parametrize("spec", list(SPECS))
def test_spec_load_openapi(benchmark: Any, report: Report, spec: str) -> None:
    benchmark.group = "compile: spec load"
    load_spec = _openapi("load_spec")
    path = spec_file(spec)
    benchmark.pedantic(load_spec, args=(path,), rounds=ROUNDS[spec], setup=collect)
    if benchmark.stats:
        report.add_compile(spec, "spec load: openapi.load_spec", benchmark.stats.stats.data)


@pytest.mark.parametrize("spec", list(SPECS))
def test_router_build(benchmark: Any, report: Report, spec: str) -> None:
    benchmark.group = "compile: router build"
    ops = operations(load_raw(spec))
    router = benchmark.pedantic(build, args=(ops,), rounds=ROUNDS[spec], setup=collect)
    assert len(router) == len(ops)  # a sanity check of the work done, not of its time
    if benchmark.stats:
        report.add_compile(spec, "router build", benchmark.stats.stats.data)


@pytest.mark.parametrize("spec", list(SPECS))
def test_router_build_openapi(benchmark: Any, report: Report, spec: str) -> None:
    """The same through the OpenAPI layer: add_spec_routes() on a loaded spec."""
    benchmark.group = "compile: router build"
    load_spec, add_spec_routes = _openapi("load_spec"), _openapi("add_spec_routes")
    loaded = load_spec(spec_file(spec))

    def run() -> Router:
        router = Router()
        add_spec_routes(router, loaded)
        router.compile()
        return router

    benchmark.pedantic(run, rounds=ROUNDS[spec], setup=collect)
    if benchmark.stats:
        report.add_compile(spec, "router build: add_spec_routes", benchmark.stats.stats.data)
