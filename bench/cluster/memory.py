"""Memory per node with big specs loaded, with N workers: is spec memory multiplied by N?

`serve --workers N` with the GitHub, Stripe, Kubernetes and Microsoft Graph specs
(tests/public_specs.py fetches them into .cache/specs), from a config file and
from etcd (`config_store`, the specs stored by `runmcp-fast apply`). Once every
process is idle (no CPU for 2 s), each process's memory is read from
/proc/<pid>/smaps_rollup:

- RSS: resident pages, shared ones counted in full in every process;
- PSS: each shared page divided among the processes sharing it (their sum is
  the node's real footprint);
- USS: private pages only (Private_Clean + Private_Dirty): what the process
  alone costs, what stopping it would free.

The parent of `serve --workers N` parses and compiles the file's specs (or those of the
config store's disk cache) before it forks, so the workers share those pages;
with etcd and no cache yet, each worker parses what the agent hands it.

    .venv/bin/python bench/cluster/memory.py [--workers 1,2,4] [--modes file,etcd]
        [--specs github,stripe,kubernetes,graph]

Needs `etcd` on the PATH for the etcd mode.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "tests"))

from cluster_helpers import children, node_config  # noqa: E402
from etcd_server import etcd_cluster  # noqa: E402
from isolation import package_env  # noqa: E402
from public_specs import spec_path  # noqa: E402
from servers import GatewayProcess, serve_command, wait_until  # noqa: E402

MiB = 1024 * 1024


def rollup(pid: int) -> dict[str, int]:
    """RSS, PSS and USS of one process, in bytes."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[-1] == "kB":
            fields[name] = int(parts[0]) * 1024
    return {
        "rss": fields.get("Rss", 0),
        "pss": fields.get("Pss", 0),
        "uss": fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0),
    }


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(stat[11]) + int(stat[12])
    return total


def settle(pids: list[int], quiet: float = 2.0, timeout: float = 900.0) -> float:
    """Wait until `pids` used no CPU for `quiet` seconds; the seconds it took."""
    started = time.monotonic()
    last, since = cpu_ticks(pids), time.monotonic()
    while time.monotonic() - started < timeout:
        time.sleep(0.25)
        now = cpu_ticks(pids)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return time.monotonic() - started


def services(names: list[str]) -> list[dict[str, Any]]:
    return [
        {"name": name, "upstream": "http://127.0.0.1:9", "openapi": str(spec_path(name))}
        for name in names
    ]


def measure(args: list[str], workers: int, extra_pids: int) -> dict[str, Any]:
    """Start `serve ARGS --workers N`, wait until its processes are idle, read them."""
    gw = GatewayProcess([*args, "--workers", str(workers)], startup_timeout=600)
    try:
        # (--workers 1 is one process: the gateway, and the agent on its loop.)
        expected = workers + extra_pids if workers > 1 else 0
        assert wait_until(lambda: len(children(gw.pid)) >= expected, 60)
        pids = children(gw.pid)
        took = settle([gw.pid, *pids])
        rows = {"supervisor" if pids else "the process": rollup(gw.pid)}
        for pid in pids:
            rows[f"pid {pid}"] = rollup(pid)
        return {"rows": rows, "settled": took, "stderr": gw.stderr_lines[-3:]}
    finally:
        gw.stop(60)


def report(mode: str, workers: int, result: dict[str, Any]) -> None:
    rows = result["rows"]
    total_pss = sum(r["pss"] for r in rows.values())
    print(
        f"\n{mode}, {workers} worker(s): settled in {result['settled']:.0f} s;"
        f" node PSS total {total_pss / MiB:.0f} MiB"
    )
    print(f"  {'process':<14} {'RSS MiB':>8} {'PSS MiB':>8} {'USS MiB':>8}")
    for name, r in rows.items():
        print(f"  {name:<14} {r['rss'] / MiB:8.0f} {r['pss'] / MiB:8.0f} {r['uss'] / MiB:8.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--modes", default="file,etcd")
    parser.add_argument("--specs", default="github,stripe,kubernetes,graph")
    options = parser.parse_args()
    counts = [int(x) for x in options.workers.split(",")]
    modes = options.modes.split(",")
    names = options.specs.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        print(f"specs: {', '.join(names)}")
        if "file" in modes:
            path = directory / "gateway.yaml"
            config = {"listeners": [{"address": "127.0.0.1:0"}], "services": services(names)}
            path.write_text(json.dumps(config))
            for n in counts:
                report("config file", n, measure(["-c", str(path)], n, 0))
        if "etcd" in modes:
            with etcd_cluster() as etcd:
                cluster = directory / "cluster.yaml"
                cluster.write_text(
                    json.dumps(
                        {
                            "listeners": [{"address": "127.0.0.1:0"}],
                            "services": services(names),
                            "config_store": {
                                "type": "etcd",
                                "endpoints": etcd.endpoints,
                                "prefix": "/mem",
                            },
                        }
                    )
                )
                subprocess.run(
                    [*serve_command()[:-1], "apply", str(cluster)],
                    check=True,
                    env=package_env(),
                    stdout=subprocess.DEVNULL,
                )
                for n in counts:
                    node = directory / f"node{n}.yaml"
                    data = node_config(etcd.endpoints, "/mem", f"mem{n}", cache_dir=f"cache{n}")
                    node.write_text(json.dumps(data))
                    # (+1: the node's config agent, a process of its own.) Started
                    # twice: cold (specs from etcd, parsed by each worker), then again
                    # from its disk cache (the parent parses them before it forks).
                    report("etcd, cold start", n, measure(["-c", str(node)], n, 1))
                    report("etcd, restart (disk cache)", n, measure(["-c", str(node)], n, 1))


if __name__ == "__main__":
    main()
