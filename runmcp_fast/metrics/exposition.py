"""Samples (collect.py) in the Prometheus text format, rendered by prometheus_client.

prometheus_client only renders here, on a scrape: nothing of it runs per request.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from runmcp_fast._dataplane import LATENCY_BUCKETS_SECONDS
from runmcp_fast.metrics.collect import FAMILIES, Samples

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Collector:
    def __init__(self, samples: Samples) -> None:
        self.samples = samples

    def collect(self) -> Iterator[Metric]:
        for name, family in FAMILIES.items():
            series = self.samples.get(name, {})
            labels = list(family.labels)
            if family.kind == "counter":
                counter = CounterMetricFamily(
                    name.removesuffix("_total"), family.help, labels=labels
                )
                for values, value in sorted(series.items()):
                    counter.add_metric(list(values), value)
                yield counter
            elif family.kind == "gauge":
                gauge = GaugeMetricFamily(name, family.help, labels=labels)
                for values, value in sorted(series.items()):
                    gauge.add_metric(list(values), value)
                yield gauge
            else:
                histogram = HistogramMetricFamily(name, family.help, labels=labels)
                for values, counts in sorted(series.items()):
                    histogram.add_metric(list(values), _buckets(counts), sum_value=counts[-1])
                yield histogram


def _buckets(counts: list[Any]) -> list[tuple[str, float]]:
    """Per-bucket counts (then +Inf's, then the sum) as Prometheus's cumulative buckets."""
    out = []
    running = 0
    for bound, count in zip(LATENCY_BUCKETS_SECONDS, counts, strict=False):
        running += count
        out.append((_le(bound), running))
    running += counts[len(LATENCY_BUCKETS_SECONDS)]
    out.append(("+Inf", running))
    return out


def _le(bound: float) -> str:
    return repr(bound)


def render(samples: Samples) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(samples))
    return generate_latest(registry)
