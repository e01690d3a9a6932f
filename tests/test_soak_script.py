"""bench/soak/run.py does not rot: a few seconds of it, all in Python, with few connections.

The real soak (10 minutes at 512 connections, wrk and nginx) is run by hand; this runs
the same script with `--load python` (the aiohttp upstream serves GET/POST too, so no
nginx or wrk is needed), checks that it reports no failure, applied config changes of
every kind, and that its `SOAK-RESULT` line parses. No timing is checked.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from isolation import package_env

ROOT = Path(__file__).resolve().parents[1]


def test_a_short_soak_reports_no_failure() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "soak" / "run.py"),
            *("--duration", "2", "--warmup", "0.5", "--connections", "8", "--pool-idle", "0.5"),
            *("--sse", "2", "--mcp", "2", "--mcp-calls", "2", "--load", "python"),
            *("--change-interval", "0.2", "--sample-interval", "1", "--settle", "15"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=package_env(),
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("SOAK-RESULT ")]
    assert len(lines) == 1, done.stdout[-3000:]
    result = json.loads(lines[0].removeprefix("SOAK-RESULT "))
    assert result["gateway_alive"]
    assert result["failed_total"] == 0, result["failed"]
    assert result["failed"] == {}
    for kind in ("GET", "POST", "SSE", "MCP proxy tools/call", "MCP endpoint tools/call"):
        assert result["done"].get(kind, 0) > 0, (kind, result["done"])
    assert set(result["changes_applied"]) == {"add", "replace", "plugin", "delete"}
    assert result["rss"]["first_kb"] > 0 and len(result["samples"]) >= 2
    assert result["fds"]["after_by_kind"].get("client", 0) == 0
    assert set(result["targets"]) == {
        "rss_growth_lt_5pct",
        "zero_failures",
        "fds_back_to_baseline",
    }
