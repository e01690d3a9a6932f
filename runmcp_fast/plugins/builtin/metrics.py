"""prometheus: each request of its routes timed and counted in C (docs/observability.md).

Implied on every route when metrics are on (`metrics.enabled`, and the admin
listener or `metrics.address` to serve them); give `prometheus: {disable:
true}` at a level to leave a service or an operation out.
"""

from __future__ import annotations

from typing import Any

from runmcp_fast._dataplane import Step
from runmcp_fast.plugins._steps import PrometheusStep
from runmcp_fast.plugins.contract import BuildContext, Plugin


class Prometheus(Plugin):
    """Counts requests by route and status class, latency and bytes, in C, for /metrics."""

    name = "prometheus"
    phase = "rewrite"
    priority = 100000  # first: its clock starts before any other step runs
    scopes = frozenset({"global", "service", "operation"})
    summary = "requests, latency and bytes per route, counted in C, for Prometheus"

    def step(self, settings: Any, context: BuildContext, *, fail_open: bool) -> Step:
        return PrometheusStep(fail_open=fail_open)
