"""The load benchmark's results as Markdown tables (readable in a terminal, pasteable)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from wrkrun import WrkResult

DIRECT = "direct"
BASELINE = "nginx"
PYTHON_PEER = "aiohttp"
GATEWAY = "runmcp_fast"
GATEWAY_STEP = "runmcp_fast+step"
GATEWAY_NOVALIDATION = "runmcp_fast-novalidation"

# What each peer is, as the table shows it.
TITLES = {
    DIRECT: "direct to upstream (no proxy)",
    "nginx": "nginx proxy, 1 worker",
    "haproxy": "haproxy, 1 thread",
    "aiohttp": "aiohttp server + ClientSession",
    GATEWAY: "runmcp_fast, 1 worker, GitHub routes",
    GATEWAY_STEP: "runmcp_fast + one no-op step per route",
    GATEWAY_NOVALIDATION: "runmcp_fast, contract validation off",
}


# Above this share of a CPU busy outside the measured processes, the row says so.
NOISY = 0.10


@dataclass
class Row:
    peer: str
    case: str
    connections: int
    wrk: WrkResult | None  # None: not measured (see flags)
    proxy_cpu: float | None  # CPU seconds of the proxy's processes; None for direct
    upstream_cpu: float = 0.0
    proxy_user: float | None = None  # the user-space part of proxy_cpu (utime)
    flags: list[str] = field(default_factory=list)
    # Share of each CPU's wall time busy outside the measured processes.
    others: dict[int, float] = field(default_factory=dict)
    workers: int = 1
    # Per worker process: (client connections it held mid-run, its CPU seconds in the run).
    spread: list[tuple[int, float]] = field(default_factory=list)

    @property
    def cpu_us(self) -> float:
        """The proxy's CPU time per request wrk counted, in µs."""
        if self.wrk is None or self.proxy_cpu is None or not self.wrk.requests:
            return math.nan
        return self.proxy_cpu / self.wrk.requests * 1e6

    @property
    def user_us(self) -> float:
        """The user-space part of cpu_us: the proxy's own code, the kernel's work left out."""
        if self.wrk is None or self.proxy_user is None or not self.wrk.requests:
            return math.nan
        return self.proxy_user / self.wrk.requests * 1e6

    @property
    def noise(self) -> float:
        """The largest share of a CPU that went to others during the run."""
        return max(self.others.values(), default=0.0)

    @property
    def rps(self) -> float:
        return self.wrk.rps if self.wrk else math.nan

    @property
    def p99(self) -> float:
        return self.wrk.p99_ms if self.wrk else math.nan

    def as_dict(self) -> dict[str, object]:
        w = self.wrk
        return {
            "peer": self.peer,
            "case": self.case,
            "connections": self.connections,
            "requests": w.requests if w else None,
            "seconds": w.seconds if w else None,
            "rps": self.rps,
            "p50_ms": w.p50_ms if w else None,
            "p99_ms": self.p99,
            "cpu_us_per_request": self.cpu_us,
            "user_cpu_us_per_request": self.user_us,
            "proxy_cpu_s": self.proxy_cpu,
            "upstream_cpu_s": self.upstream_cpu,
            "wrk_cpu_s": w.cpu_seconds if w else None,
            "non_2xx": w.non_2xx if w else None,
            "socket_errors": w.errors if w else None,
            "flags": self.flags,
            "others_share_by_cpu": self.others,
            "workers": self.workers,
            "per_worker_connections_cpu_s": self.spread,
        }


def _num(value: float, fmt: str) -> str:
    return "—" if value is None or math.isnan(value) else format(value, fmt)


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


_HEADER = (
    "system",
    "req/s",
    "p50",
    "p99",
    "CPU µs/req",
    "of it user",
    "proxy CPU",
    "CPU 0",
    "req/s x nginx",
    "CPU eff x nginx",
    "notes",
)


def case_table(rows: Sequence[Row]) -> str:
    """One table: every peer on one case at one connection count."""
    base = next((r for r in rows if r.peer == BASELINE and r.wrk), None)
    lines = [_line(_HEADER), _line(["---"] * len(_HEADER))]
    lines += [_line(_cells(row, base)) for row in rows]
    return "\n".join(lines)


def _cells(row: Row, base: Row | None) -> list[str]:
    w = row.wrk
    name = TITLES.get(row.peer, row.peer)
    if row.workers > 1:  # --workers: the titles say "1 worker"
        name = name.replace("1 worker", f"{row.workers} workers")
    name += " (!)" if row.flags else ""
    if w is None:
        return [name, *["—"] * (len(_HEADER) - 2), "; ".join(row.flags)]
    notes = list(row.flags)
    if row.peer == DIRECT and w.requests:
        notes.append(f"upstream {row.upstream_cpu / w.requests * 1e6:.1f} µs/req")
    busy = [f"CPU {cpu} {share:.0%}" for cpu, share in row.others.items() if share > NOISY]
    if busy:
        notes.append("busy elsewhere: " + ", ".join(busy))
    proxy_share = row.proxy_cpu / w.seconds * 100 if row.proxy_cpu is not None else math.nan
    # CPU 0 holds wrk and the upstream: near 100 % there, req/s measures the
    # client side, not the proxy, and CPU per request is the number to compare.
    client_share = (row.upstream_cpu + w.cpu_seconds) / w.seconds * 100
    return [
        name,
        _num(w.rps, ",.0f"),
        _num(w.p50_ms, ".2f") + " ms",
        _num(w.p99_ms, ".2f") + " ms",
        _num(row.cpu_us, ".1f"),
        _num(row.user_us, ".1f"),
        _num(proxy_share, ".0f") + (" %" if not math.isnan(proxy_share) else ""),
        _num(client_share, ".0f") + " %",
        _num(_ratio(w.rps, base.rps), ".2f") if base and row.peer != DIRECT else "—",
        _num(_ratio(base.cpu_us, row.cpu_us), ".2f") if base else "—",
        "; ".join(notes),
    ]


def _line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


LEGEND = """\
req/s, p50, p99: wrk (1 thread, keep-alive, --latency). CPU µs/req: utime+stime of the
proxy's processes (its whole process tree, from /proc/PID/stat) over the run, divided by
the requests wrk counted. of it user: the utime part, the proxy's own code; the rest is the
kernel's work for it (system calls and the loopback TCP stack, most of a proxied request's
CPU). proxy CPU: that CPU time over the run's wall time (100 % = CPU 1
busy all the time). CPU 0: upstream nginx + wrk, same measure; near 100 % the client side is
the bottleneck and req/s says little about the proxy. req/s x nginx: this req/s over nginx's.
CPU eff x nginx: nginx's CPU per request over this one's (above 1: cheaper than nginx).
busy elsewhere: a CPU spent that share of the run on other processes or on interrupt work
charged to none (a noisy neighbour): compare with the same run's other rows, or run again.
(!): flagged, see notes (non-2xx answers, socket errors, short answers)."""


@dataclass(frozen=True)
class Target:
    case: str
    connections: int
    rows: dict[str, Row]  # per peer: its median round's (by req/s) with --rounds
    workers: int = 1
    # --rounds: every round's row per peer, in round order (the peers took turns)
    rounds: dict[str, list[Row]] = field(default_factory=dict)


def median_row(rows: Sequence[Row]) -> Row:
    """The round whose req/s is the median of the measured ones (the lower of the two
    middle ones for an even count); the first row when none was measured."""
    measured = sorted((r for r in rows if r.wrk is not None), key=lambda r: r.rps)
    if not measured:
        return rows[0]
    return measured[(len(measured) - 1) // 2]


def paired_ratios(group: Target, first: str, second: str) -> list[float]:
    """first's req/s over second's, round by round (both measured in that round)."""
    return [
        a.rps / b.rps
        for a, b in zip(group.rounds.get(first, ()), group.rounds.get(second, ()), strict=False)
        if a.wrk is not None and b.wrk is not None and b.rps
    ]


def targets_table(groups: Sequence[Target]) -> str:
    """The issue's targets for runmcp_fast, printed as met / NOT met, never asserted."""
    header = (
        "case",
        "conns",
        "req/s x nginx (target ≥ 1.0)",
        "CPU µs/req: runmcp_fast / nginx",
        "p99: runmcp_fast / nginx",
        "req/s x aiohttp (target ≥ 5)",
    )
    lines = [_line(header), _line(["---"] * len(header))]
    for group in groups:
        if group.workers != 1:
            continue
        gw, ng, py = (group.rows.get(p) for p in (GATEWAY, BASELINE, PYTHON_PEER))
        if gw is None or gw.wrk is None:
            continue
        lines.append(
            _line(
                [
                    group.case,
                    str(group.connections),
                    _verdict(_ratio(gw.rps, ng.rps) if ng else math.nan, 1.0, gw),
                    f"{_num(gw.cpu_us, '.1f')} / {_num(ng.cpu_us, '.1f') if ng else '—'}"
                    f" (eff {_num(_ratio(ng.cpu_us, gw.cpu_us), '.2f') if ng else '—'})",
                    f"{_num(gw.p99, '.2f')} / {_num(ng.p99, '.2f') if ng else '—'} ms",
                    _verdict(_ratio(gw.rps, py.rps) if py else math.nan, 5.0, gw),
                ]
            )
        )
    return "\n".join(lines)


def _measured_pairs(
    groups: Sequence[Target], first: str, second: str
) -> Iterator[tuple[Target, Row, Row]]:
    """(group, first's row, second's row) for each group where wrk measured both."""
    for group in groups:
        a, b = group.rows.get(first), group.rows.get(second)
        if a is not None and b is not None and a.wrk is not None and b.wrk is not None:
            yield group, a, b


def validation_table(groups: Sequence[Target]) -> str:
    """What the contract costs: runmcp_fast with validation on (the default) against the
    same gateway with it off, per case and connection count (target: req/s on / off
    >= 0.95). With the client on its own CPU, req/s can be bound by the client rather
    than the proxy: the CPU per request says what the proxy paid."""
    rounds = any(len(g.rounds.get(GATEWAY, ())) > 1 for g in groups)
    header = (
        "case",
        "conns",
        "req/s: on / off (target ≥ 0.95)",
        "CPU µs/req: on / off",
        "p99: on / off",
    )
    if rounds:
        header = (
            *header[:2],
            "req/s: on / off, the rounds' median (target ≥ 0.95)",
            *header[3:],
            "on / off, round by round: median (lowest, highest)",
        )
    lines = [_line(header), _line(["---"] * len(header))]
    for group, on, off in _measured_pairs(groups, GATEWAY, GATEWAY_NOVALIDATION):
        paired = sorted(paired_ratios(group, GATEWAY, GATEWAY_NOVALIDATION))
        # With rounds, the verdict is the paired one: the median rows may come from
        # different rounds.
        ratio = paired[(len(paired) - 1) // 2] if rounds and paired else _ratio(on.rps, off.rps)
        cells = [
            group.case,
            str(group.connections),
            _verdict(ratio, 0.95, on),
            f"{_num(on.cpu_us, '.1f')} / {_num(off.cpu_us, '.1f')}"
            f" ({_num(_ratio(off.cpu_us, on.cpu_us), '.2f')})",
            f"{_num(on.p99, '.2f')} / {_num(off.p99, '.2f')} ms",
        ]
        if rounds:
            cells.append(
                f"{_num(paired[(len(paired) - 1) // 2], '.2f')}x"
                f" ({_num(paired[0], '.2f')}, {_num(paired[-1], '.2f')}; {len(paired)} rounds)"
                if paired
                else "—"
            )
        lines.append(_line(cells))
    return "\n".join(lines)


def _verdict(ratio: float, target: float, row: Row) -> str:
    if math.isnan(ratio):
        return "—"
    verdict = "met" if ratio >= target and not row.flags else "NOT met"
    if row.flags:
        verdict += " (flagged)"
    # Rounded down, so that 0.997 never prints as "1.00x NOT met".
    return f"{math.floor(ratio * 100) / 100:.2f}x {verdict}"


def _spread(row: Row) -> str:
    """`31 / 33 conns, 48 / 52 % CPU`: how the workers shared the connections and the work."""
    if not row.spread:
        return "—"
    conns = " / ".join(str(c) for c, _ in row.spread)
    total = sum(cpu for _, cpu in row.spread)
    shares = " / ".join(f"{cpu / total:.0%}" if total else "—" for _, cpu in row.spread)
    return f"{conns} conns; CPU {shares}"


def scaling_table(groups: Sequence[Target]) -> str:
    """Each peer with N workers against itself with one, per case and connection count.

    scaling = req/s(N) / (N x req/s(1)) (the issue's target is >= 0.85 where the client
    is not the bottleneck); CPU µs/req flat from 1 to N means the work per request did
    not grow: what is missing from req/s is CPU the machine did not have to give.
    """
    header = (
        "case",
        "conns",
        "system",
        "workers",
        "req/s",
        "scaling: req/s / (N x 1 worker's)",
        "CPU µs/req",
        "CPU µs/req: N / 1",
        "proxy CPU",
        "CPU 0 (wrk + upstream)",
        "per worker: connections; CPU share",
    )
    lines = [_line(header), _line(["---"] * len(header))]
    one = {
        (g.case, g.connections, peer): row
        for g in groups
        if g.workers == 1
        for peer, row in g.rows.items()
    }
    for group in sorted(groups, key=lambda g: (g.case, g.connections, g.workers)):
        for peer, row in group.rows.items():
            if peer == DIRECT or row.wrk is None:
                continue
            base = one.get((group.case, group.connections, peer))
            w = row.wrk
            scaling = (
                _ratio(row.rps, group.workers * base.rps)
                if base and group.workers > 1
                else math.nan
            )
            cpu_ratio = _ratio(row.cpu_us, base.cpu_us) if base and group.workers > 1 else math.nan
            proxy_share = row.proxy_cpu / w.seconds * 100 if row.proxy_cpu is not None else math.nan
            client_share = (row.upstream_cpu + w.cpu_seconds) / w.seconds * 100
            lines.append(
                _line(
                    [
                        group.case,
                        str(group.connections),
                        peer + (" (!)" if row.flags else ""),
                        str(group.workers),
                        _num(row.rps, ",.0f"),
                        _num(scaling, ".2f"),
                        _num(row.cpu_us, ".1f"),
                        _num(cpu_ratio, ".2f"),
                        _num(proxy_share, ".0f") + " %",
                        _num(client_share, ".0f") + " %",
                        _spread(row),
                    ]
                )
            )
    return "\n".join(lines)


def tls_table(groups: Sequence[Target], negotiated: dict[str, str]) -> str:
    """runmcp_fast's CPU per request over TLS against nginx's, same certificate and suite."""
    header = (
        "case",
        "conns",
        "workers",
        "CPU µs/req: runmcp_fast / nginx",
        "CPU eff x nginx (target ≥ 0.9)",
        "req/s: runmcp_fast / nginx",
        "p99: runmcp_fast / nginx",
        "negotiated: runmcp_fast · nginx",
    )
    lines = [_line(header), _line(["---"] * len(header))]
    for group, gw, ng in _measured_pairs(groups, GATEWAY, BASELINE):
        eff = _ratio(ng.cpu_us, gw.cpu_us)
        lines.append(
            _line(
                [
                    group.case,
                    str(group.connections),
                    str(group.workers),
                    f"{_num(gw.cpu_us, '.1f')} / {_num(ng.cpu_us, '.1f')}",
                    _verdict(eff, 0.9, gw),
                    _num(_ratio(gw.rps, ng.rps), ".2f"),
                    f"{_num(gw.p99, '.2f')} / {_num(ng.p99, '.2f')} ms",
                    f"{negotiated.get(GATEWAY, '?')} · {negotiated.get(BASELINE, '?')}",
                ]
            )
        )
    return "\n".join(lines)
