"""CPU time each process of a node spends per write, with 1,000 routes in etcd.

`--nodes` gateway nodes (`serve --workers 2`: a supervisor, a config agent, two
workers) on a real etcd on loopback (Debian's etcd-server). `--writes` services
are put one at a time through node 0's admin API; each is waited for until every
node serves it (two fresh connections per node, as the cluster test does). Each
process's CPU time (utime + stime from /proc/<pid>/stat) is read before and after:
the difference per write, by kind of process, is what a change costs a node.

    PYTHONPATH=. .venv/bin/python bench/cluster/cpu_per_write.py [--nodes 1] [--writes 30]

CPU time is steadier than wall time on a shared machine, but still includes what
other jobs make this process wait for (cache misses): compare runs made together.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "tests"))
sys.path.insert(0, str(HERE))

from apply import preload  # noqa: E402
from cluster_helpers import admin_call, children, node_config, percentile, status_of  # noqa: E402
from etcd_server import etcd_cluster  # noqa: E402
from servers import AiohttpUpstream, GatewayProcess, LoopThread, wait_until  # noqa: E402
from test_admin_api import named_app  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_ms(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 (1-based); [0] here is field 3.
    return (int(fields[11]) + int(fields[12])) * 1000 / TICK


def kinds(process: GatewayProcess) -> dict[int, str]:
    """pid -> supervisor / agent / worker."""
    out = {process.pid: "supervisor"}
    agent = {
        int(m.group(1))
        for line in process.stderr_lines
        if (m := re.search(r"config agent, pid (\d+)", line))
    }
    for pid in children(process.pid):
        out[pid] = "agent" if pid in agent else "worker"
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--routes", type=int, default=1000)
    parser.add_argument("--writes", type=int, default=30)
    parser.add_argument(
        "--py-spy", default="", help="py-spy's path: record the last node's agent and workers"
    )
    args = parser.parse_args()
    with ExitStack() as stack:
        loop = stack.enter_context(LoopThread())
        a = AiohttpUpstream(named_app("A"), loop)
        b = AiohttpUpstream(named_app("B"), loop)
        etcd = stack.enter_context(etcd_cluster())
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        preload(etcd.endpoints, "/cpu", a.url, args.routes)
        nodes = []
        for i in range(args.nodes):
            config = node_config(etcd.endpoints, "/cpu", f"node{i}", cache_dir=f"cache{i}")
            path = Path(tmp) / f"node{i}.yaml"
            path.write_text(json.dumps(config))
            process = stack.enter_context(
                GatewayProcess(
                    ["-c", str(path), "--workers", str(args.workers)], startup_timeout=120
                )
            )
            nodes.append((process, int(config["admin"]["address"].rsplit(":", 1)[1])))
        last = f"/s{args.routes - 1}/x"

        def served(path: str, name: str) -> bool:
            return all(status_of(p.port, path) == name for p, _ in nodes for _ in range(2))

        assert wait_until(lambda: served(last, "A"), 120)
        time.sleep(2)  # the first build's after-work (disposal, counters) done
        pids: dict[int, str] = {}
        for process, _ in nodes:
            pids.update(kinds(process))
        spies = []
        if args.py_spy:
            for pid, kind in kinds(nodes[-1][0]).items():
                if kind != "supervisor":
                    out = f"/tmp/spy-{kind}-{pid}.txt"
                    command = [args.py_spy, "record", "-p", str(pid), "-r", "250"]
                    command += ["--format", "raw", "-o", out, "--nonblocking"]
                    spies.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
            time.sleep(1)
        before = {pid: cpu_ms(pid) for pid in pids}
        times = []
        for i in range(args.writes):
            started = time.perf_counter()
            status, _, body = admin_call(
                nodes[0][1], "PUT", f"/admin/services/w{i}", {"upstream": b.url, "prefix": f"/w{i}"}
            )
            assert status == 201, body
            assert wait_until(lambda i=i: served(f"/w{i}/x", "B"), 30)
            times.append(time.perf_counter() - started)
        time.sleep(1.5)  # the last write's after-work
        after = {pid: cpu_ms(pid) for pid in pids}
        for spy in spies:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
    by_kind: dict[str, list[float]] = {}
    for pid, kind in pids.items():
        by_kind.setdefault(kind, []).append((after[pid] - before[pid]) / args.writes)
    print(
        f"{args.nodes} node(s) x {args.workers} workers, {args.routes} routes,"
        f" {args.writes} writes (load average {os.getloadavg()[0]:.1f}):"
    )
    for kind, values in sorted(by_kind.items()):
        print(
            f"  {kind:<10} CPU ms per write: median {statistics.median(values):6.1f}"
            f"  each {', '.join(f'{v:.1f}' for v in values)}"
        )
    total = sum(sum(v) for v in by_kind.values())
    print(f"  all processes: {total:.0f} ms per write ({total / args.nodes:.0f} per node)")
    print(
        f"  write -> served everywhere: p50 {percentile(times, 0.5) * 1000:.0f} ms,"
        f" max {max(times) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
