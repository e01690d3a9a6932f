"""One worker's numbers as plain data, and the sum of several workers'.

`Samples` is JSON-able (a worker sends its own to the one answering a
scrape: peers.py); every family is declared once in FAMILIES, with its type,
help and labels, so the exposition and the dashboard agree on the names.
Labels are bounded: services, operation ids, upstreams, plugins, status
classes, keywords, tool names (capped per route); never a raw path.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from runmcp_fast._dataplane import RouteStats, Step, Target
from runmcp_fast.snapshot import Pools, Service, Snapshot

Kind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True)
class Family:
    kind: Kind
    help: str
    labels: tuple[str, ...]


FAMILIES: dict[str, Family] = {
    "runmcp_requests_total": Family(
        "counter",
        "Requests answered, by route and status class (none: the client left first); those"
        " no route took have service and route (none).",
        ("service", "route", "method", "status_class"),
    ),
    "runmcp_request_duration_seconds": Family(
        "histogram",
        "From the request's head to the end of its response, seconds.",
        ("service", "route"),
    ),
    "runmcp_upstream_response_seconds": Family(
        "histogram",
        "From the request written upstream to the response head received, seconds.",
        ("service", "route"),
    ),
    "runmcp_request_body_bytes_total": Family(
        "counter", "Request body bytes received.", ("service", "route")
    ),
    "runmcp_response_bytes_total": Family(
        "counter",
        "Response body bytes sent (a gateway's own answer: all of it).",
        ("service", "route"),
    ),
    "runmcp_event_streams_open": Family(
        "gauge", "Event streams (SSE) open now, MCP's among them.", ("service", "route")
    ),
    "runmcp_mcp_tool_calls_total": Family(
        "counter",
        "MCP tools/call answered, by tool and outcome (ok, error, refused).",
        ("service", "tool", "outcome"),
    ),
    "runmcp_upstream_connections": Family(
        "gauge",
        "Connections to an upstream: open (idle ones included), idle, and clients waiting.",
        ("upstream", "state"),
    ),
    "runmcp_upstream_connect_failures_total": Family(
        "counter", "Connections to an upstream refused or failed.", ("upstream",)
    ),
    "runmcp_upstream_timeouts_total": Family(
        "counter", "Connects and reads to an upstream that timed out.", ("upstream",)
    ),
    "runmcp_upstream_health": Family(
        "gauge",
        "1 when a replica is in rotation (not ejected, its active check passing), else 0; with"
        " several workers, the lowest of theirs.",
        ("service", "upstream"),
    ),
    "runmcp_upstream_ejections_total": Family(
        "counter", "Times a replica was ejected for failing in a row.", ("service", "upstream")
    ),
    "runmcp_upstream_requests_in_flight": Family(
        "gauge",
        "Requests on a replica now (services with several replicas or a circuit breaker).",
        ("service", "upstream"),
    ),
    "runmcp_upstream_retries_total": Family(
        "counter",
        "Requests sent again to another replica, by reason (connect, reset, timeout, 502, 503,"
        " 504).",
        ("service", "reason"),
    ),
    "runmcp_upstream_retry_budget_exhausted_total": Family(
        "counter", "Retries not made because the retry budget was spent.", ("service",)
    ),
    "runmcp_upstream_circuit_breaker_rejections_total": Family(
        "counter",
        "Requests refused (503) because a replica was at a circuit-breaker limit (requests,"
        " pending).",
        ("service", "upstream", "limit"),
    ),
    "runmcp_upstream_health_checks_total": Family(
        "counter",
        "Active health checks by result (ok, failed); counted by the worker that runs them.",
        ("service", "upstream", "result"),
    ),
    "runmcp_validation_checked_total": Family(
        "counter", "Requests checked against their operation's contract.", ("service", "route")
    ),
    "runmcp_validation_rejections_total": Family(
        "counter",
        "Invalid requests, by the JSON Schema keyword of their issues.",
        ("service", "route", "keyword"),
    ),
    "runmcp_rate_limit_decisions_total": Family(
        "counter", "Rate-limit decisions (allowed, rejected, ...).", ("plugin", "decision")
    ),
    "runmcp_plugin_events_total": Family(
        "counter", "What plugins counted (cache hits, refetches, ...).", ("plugin", "event")
    ),
    "runmcp_plugin_state": Family(
        "gauge",
        "What plugins hold now (keys in a limit's table, its capacity, Redis down: 1).",
        ("plugin", "state"),
    ),
    "runmcp_plugin_errors_total": Family(
        "counter", "Exceptions raised by a plugin's step (answered 500, or fail_open).", ("plugin",)
    ),
    "runmcp_config_info": Family(
        "gauge", "1 for the config version a worker serves.", ("version",)
    ),
    "runmcp_config_generation": Family(
        "gauge", "How many configs a worker has swapped in (the highest).", ()
    ),
    "runmcp_config_reloads_total": Family(
        "counter", "Reloads of the config file, by result (ok, refused).", ("result",)
    ),
    "runmcp_config_last_reload_success_timestamp_seconds": Family(
        "gauge", "When the config was last (re)loaded successfully, Unix time.", ()
    ),
    "runmcp_workers": Family("gauge", "Worker processes whose numbers are in this scrape.", ()),
    "runmcp_config_stale_seconds": Family(
        "gauge",
        "Seconds since the node last knew it had the config store's latest (0: in sync).",
        (),
    ),
    "runmcp_config_store_revision": Family(
        "gauge", "The config store (etcd) revision this node serves.", ()
    ),
}

# Gauges whose workers' values are not summed but the highest taken.
MAX_GAUGES = frozenset(
    {
        "runmcp_config_generation",
        "runmcp_config_last_reload_success_timestamp_seconds",
        "runmcp_config_stale_seconds",
        "runmcp_config_store_revision",
    }
)
# ... or the lowest: a replica out of rotation in any worker shows as out.
MIN_GAUGES = frozenset({"runmcp_upstream_health"})
_CLASSES = ("none", "1xx", "2xx", "3xx", "4xx", "5xx")
NO_ROUTE = "(none)"  # the labels of requests no route took (404, 405, a bad head)
_RATE_LIMITS = frozenset({"limit-count", "limit-req"})
_DECISIONS = frozenset({"allowed", "rejected"})
# What a step's stats() reports that is a level now, not a count since start.
_STATE = frozenset({"keys", "capacity", "redis_down", "cache_entries"})

# name -> {labels (a tuple of values, in the family's order): value}; a histogram's
# value is [per-bucket counts..., +Inf count, sum].
Samples = dict[str, dict[tuple[str, ...], Any]]


@dataclass
class ConfigState:
    """What the control plane tells the metrics (control.py keeps it up to date)."""

    reloads_ok: int = 0
    reloads_refused: int = 0
    last_success: float = 0.0
    store: StoreStatus | None = None
    """With a config store: what the node knows of it."""


class StoreStatus(Protocol):
    revision: int

    def stale_seconds(self) -> float: ...


def collect(
    snapshot: Snapshot,
    pools: Pools,
    routes: Iterable[RouteStats],
    config: ConfigState,
    unrouted: list[int],
    checks: dict[tuple[str, str, str], int] | None = None,
) -> Samples:
    """This worker's numbers now (`unrouted`: requests no route took, by status class;
    `checks`: the active health checks this worker ran, by (service, upstream, result))."""
    out: Samples = {name: {} for name in FAMILIES}
    for stats in routes:
        _route(out, stats)
    for klass, count in zip(_CLASSES, unrouted, strict=True):
        if count:
            out["runmcp_requests_total"][(NO_ROUTE, NO_ROUTE, NO_ROUTE, klass)] = count
    for pool in pools.all():
        name = pool.name
        gauges = out["runmcp_upstream_connections"]
        gauges[(name, "open")] = pool.open_count
        gauges[(name, "idle")] = pool.idle_count
        gauges[(name, "waiting")] = pool.waiting_count
        out["runmcp_upstream_connect_failures_total"][(name,)] = pool.connect_failures
        out["runmcp_upstream_timeouts_total"][(name,)] = pool.timeouts
    for service in snapshot.services:
        _replicas(out, service)
    if checks:
        for key, count in checks.items():
            out["runmcp_upstream_health_checks_total"][key] = count
    for service in snapshot.services:
        for validator in service.validators.values():
            route = validator.name.rsplit(" ", 1)[-1]
            out["runmcp_validation_checked_total"][(service.label, route)] = validator.checked
            for keyword, count in validator.rejected.items():
                out["runmcp_validation_rejections_total"][(service.label, route, keyword)] = count
    counted: set[int] = set()
    for step in _steps(snapshot):
        _step(out, step, counted)
    out["runmcp_config_info"][(snapshot.version,)] = 1
    out["runmcp_config_generation"][()] = snapshot.generation
    out["runmcp_config_reloads_total"][("ok",)] = config.reloads_ok
    out["runmcp_config_reloads_total"][("refused",)] = config.reloads_refused
    out["runmcp_config_last_reload_success_timestamp_seconds"][()] = config.last_success
    out["runmcp_workers"][()] = 1
    if config.store is not None:
        stale = config.store.stale_seconds()
        # Never reached the store nor a cache: as stale as can be (a finite number).
        out["runmcp_config_stale_seconds"][()] = stale if stale != float("inf") else 1e9
        out["runmcp_config_store_revision"][()] = config.store.revision
    return out


def _replicas(out: Samples, service: Service) -> None:
    label = service.label
    replicas = service.replicas
    for replica in replicas.replicas:
        key = (label, replica.url)
        out["runmcp_upstream_health"][key] = 1 if replica.up else 0
        out["runmcp_upstream_ejections_total"][key] = replica.ejected_total
        if not replicas.simple:
            out["runmcp_upstream_requests_in_flight"][key] = replica.active
        rejections = out["runmcp_upstream_circuit_breaker_rejections_total"]
        rejections[(label, replica.url, "requests")] = replica.rejected_requests
        rejections[(label, replica.url, "pending")] = replica.rejected_pending
    if replicas.count > 1:
        for reason, count in replicas.retried_counts().items():
            out["runmcp_upstream_retries_total"][(label, reason)] = count
        out["runmcp_upstream_retry_budget_exhausted_total"][(label,)] = replicas.budget_exhausted


def _route(out: Samples, stats: RouteStats) -> None:
    data = stats.snapshot()
    service, route = stats.service, stats.route
    for klass, count in zip(_CLASSES, data["requests"], strict=True):
        if count:
            out["runmcp_requests_total"][(service, route, stats.method, klass)] = count
    key = (service, route)
    if sum(data["latency"]):
        out["runmcp_request_duration_seconds"][key] = [*data["latency"], data["latency_sum"]]
    if sum(data["upstream"]):
        out["runmcp_upstream_response_seconds"][key] = [*data["upstream"], data["upstream_sum"]]
    out["runmcp_request_body_bytes_total"][key] = data["bytes_in"]
    out["runmcp_response_bytes_total"][key] = data["bytes_out"]
    out["runmcp_event_streams_open"][key] = data["streams"]
    calls = out["runmcp_mcp_tool_calls_total"]
    for (tool, outcome), count in data["tools"].items():
        calls[(service, tool, outcome)] = calls.get((service, tool, outcome), 0) + count


def _steps(snapshot: Snapshot) -> Iterator[Step]:
    """Every step of the snapshot's routes and consumers, once."""
    seen: set[int] = set()
    routers = [snapshot.router, *snapshot.tenant_routers.values()]
    chains = [route.target.chain for router in routers for route in router.routes()]
    for chain in chains:
        for step in chain.steps:
            if id(step) not in seen:
                seen.add(id(step))
                yield step
    unrouted = snapshot.unrouted_chain
    for step in [
        *(unrouted.steps if unrouted is not None else ()),
        *(s for consumer in snapshot.consumers.values() for s in consumer.steps),
    ]:
        if id(step) not in seen:
            seen.add(id(step))
            yield step


def _step(out: Samples, step: Step, counted: set[int]) -> None:
    """The step's numbers into `out`. Its Counters (failures, its plugin's events) are
    shared by the steps of its plugin (Resources.counters): each is read once."""
    limits = step.name in _RATE_LIMITS
    counts = step.counts
    own: tuple[str, ...] = counts.events
    if id(counts) not in counted:
        counted.add(id(counts))
        errors = out["runmcp_plugin_errors_total"]
        errors[(step.name,)] = errors.get((step.name,), 0) + counts.failures
        for event, value in counts.values().items():
            family = (
                "runmcp_rate_limit_decisions_total"
                if limits and event in _DECISIONS
                else "runmcp_plugin_events_total"
            )
            series = out[family]
            key = (step.name, event)
            series[key] = series.get(key, 0) + value
    stats = getattr(step, "stats", None)
    if stats is None:
        return
    for event, value in stats().items():
        if not isinstance(value, (int, float)) or event in own:
            continue  # (the Counters' events: read above, once)
        if event in _STATE:
            family = "runmcp_plugin_state"
        elif limits and event in _DECISIONS:
            family = "runmcp_rate_limit_decisions_total"
        else:
            family = "runmcp_plugin_events_total"
        series = out[family]
        key = (step.name, str(event))
        series[key] = series.get(key, 0) + int(value)


def merge(parts: Iterable[Samples]) -> Samples:
    """Several workers' numbers as one: counters, histograms and most gauges summed."""
    total: Samples = {name: {} for name in FAMILIES}
    for part in parts:
        for name, series in part.items():
            if name not in total:
                continue  # a family this version does not know (a worker of another build)
            into = total[name]
            for labels, value in series.items():
                key = tuple(labels)
                if key not in into:
                    into[key] = list(value) if isinstance(value, list) else value
                elif name in MAX_GAUGES:
                    into[key] = max(into[key], value)
                elif name in MIN_GAUGES:
                    into[key] = min(into[key], value)
                elif isinstance(value, list):
                    into[key] = [a + b for a, b in zip(into[key], value, strict=True)]
                else:
                    into[key] += value
    return total


def to_wire(samples: Samples) -> dict[str, list[list[Any]]]:
    """Samples as JSON (tuples as lists): what a worker sends a sibling."""
    return {name: [[list(k), v] for k, v in series.items()] for name, series in samples.items()}


def from_wire(data: dict[str, list[list[Any]]]) -> Samples:
    return {name: {tuple(k): v for k, v in series} for name, series in data.items()}


def targets(snapshot: Snapshot) -> Iterator[Target]:
    """Every target of a snapshot's routers (tenants' included)."""
    for router in (snapshot.router, *snapshot.tenant_routers.values()):
        for route in router.routes():
            yield route.target
