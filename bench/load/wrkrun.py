"""Run wrk (1 thread, keep-alive, --latency) and read its report."""

from __future__ import annotations

import re
import resource
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cases import Case

# wrk's own per-request timeout; a request slower than this counts as a
# "timeout" socket error and is left out of the latency distribution.
WRK_TIMEOUT = "10s"

_TIME = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_SIZE = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}

_TOTALS = re.compile(r"(\d+) requests in ([\d.]+)(\w+), ([\d.]+)(\w+) read")
_PERCENTILE = re.compile(r"^\s+(\d+)%\s+([\d.]+)(\w+)\s*$", re.MULTILINE)
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


@dataclass
class WrkResult:
    requests: int
    seconds: float
    bytes_read: float
    # wrk prints "2.17GB": two decimals, so the true count may be this much higher.
    bytes_slack: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int]  # connect, read, write, timeout
    non_2xx: int
    cpu_seconds: float  # wrk's own utime + stime
    output: str

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def max_bytes_per_request(self) -> float:
        """The most bytes per answer that wrk's rounded total allows."""
        return (self.bytes_read + self.bytes_slack) / self.requests if self.requests else 0.0


def post_script(case: Case, scratch: Path) -> Path:
    """A wrk Lua script that sends `case`'s body; wrk builds the request once, at start."""
    body = case.body.decode()
    # A level-2 long bracket: no escaping needed for a body that lacks "]==]".
    assert "]==]" not in body
    script = scratch / f"{case.name}.lua"
    script.write_text(
        f'wrk.method = "{case.method}"\n'
        f"wrk.body = [==[{body}]==]\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    return script


def run(
    url: str, *, connections: int, seconds: int, script: Path | None, cpu: int | None
) -> WrkResult:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    command += ["--timeout", WRK_TIMEOUT]
    if script is not None:
        command += ["-s", str(script)]
    command.append(url)
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]
    before = _children_cpu()
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    cpu_seconds = _children_cpu() - before
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse(done.stdout, cpu_seconds)


def _children_cpu() -> float:
    """utime + stime of our waited-for children: the wrk just run, when taken around it."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def parse(output: str, cpu_seconds: float = 0.0) -> WrkResult:
    totals = _TOTALS.search(output)
    if totals is None:
        raise RuntimeError(f"no totals in wrk's output:\n{output}")
    requests, duration, time_unit, size, size_unit = totals.groups()
    percentiles = {
        int(p): float(value) * _TIME[unit] for p, value, unit in _PERCENTILE.findall(output)
    }
    errors = _SOCKET_ERRORS.search(output)
    non_2xx = _NON_2XX.search(output)
    return WrkResult(
        requests=int(requests),
        seconds=float(duration) * _TIME[time_unit] / 1e3,
        bytes_read=float(size) * _SIZE[size_unit],
        bytes_slack=0.005 * _SIZE[size_unit],
        p50_ms=percentiles.get(50, float("nan")),
        p99_ms=percentiles.get(99, float("nan")),
        errors=dict(
            zip(("connect", "read", "write", "timeout"), map(int, errors.groups()), strict=True)
        )
        if errors
        else {},
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        cpu_seconds=cpu_seconds,
        output=output,
    )
