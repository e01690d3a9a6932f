"""Snapshot apply time from an etcd event, for 10, 100 and 1,000 services.

One gateway process (the agent on its event loop, no workers) on a real etcd on
loopback (Debian's etcd-server, started here in a tmpfs directory). For each
size, the services are written to etcd first; then `--rounds` times one more
service is put straight into etcd (an event, not an admin write), and the time
until the data plane serves it is measured, with where it went: the agent's
coalescing wait, its whole-config check, the build and swap. Then the same
through the admin API (which checks the whole config before it writes).

    .venv/bin/python bench/cluster/apply.py [--sizes 10,100,1000] [--rounds 20]

Numbers on a shared 2-core machine are noisy: compare the rows with each other.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "tests"))

from cluster_helpers import admin_call, node_config, status_of  # noqa: E402
from etcd_server import etcd_cluster  # noqa: E402
from servers import AiohttpUpstream, GatewayThread, LoopThread, wait_until  # noqa: E402
from test_admin_api import named_app  # noqa: E402

from runmcp_fast.cluster.etcd_client import EtcdClient, TxnOp  # noqa: E402


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} / {max(values) * 1000:.0f}"


def preload(endpoints: list[str], prefix: str, upstream: str, count: int) -> None:
    async def main() -> None:
        client = EtcdClient(endpoints, timeout=10)
        try:
            ops = [
                TxnOp(
                    f"{prefix}/services/s{i}".encode(),
                    json.dumps({"upstream": upstream, "prefix": f"/s{i}"}).encode(),
                )
                for i in range(count)
            ]
            for i in range(0, len(ops), 100):
                await client.txn([], ops[i : i + 100])
        finally:
            await client.close()

    asyncio.run(main())


def one_size(
    etcd: Any, loop_thread: LoopThread, upstream: str, size: int, rounds: int
) -> dict[str, Any]:
    prefix = f"/bench{size}"
    preload(etcd.endpoints, prefix, upstream, size)
    with tempfile.TemporaryDirectory() as tmp:
        gw = GatewayThread(node_config([etcd.url], prefix, f"b{size}"), loop_thread, base_dir=tmp)
        try:
            assert wait_until(lambda: status_of(gw.port, f"/s{size - 1}/x") == "A", 60)
            agent = gw.gateway.cluster.agent
            checks: list[float] = []
            offers: list[float] = []
            check, offer = agent._check, agent.sink.offer

            def timed_check(*args: Any) -> Any:
                started = time.perf_counter()
                try:
                    return check(*args)
                finally:
                    checks.append(time.perf_counter() - started)

            async def timed_offer(*args: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await offer(*args)
                finally:
                    offers.append(time.perf_counter() - started)

            agent._check = timed_check
            agent.sink.offer = timed_offer
            client = EtcdClient([etcd.url])
            events: list[float] = []
            for i in range(rounds):
                value = json.dumps({"upstream": upstream, "prefix": f"/e{i}"}).encode()
                started = time.perf_counter()
                loop_thread.run(client.put(f"{prefix}/services/e{i}".encode(), value))
                assert wait_until(lambda i=i: status_of(gw.port, f"/e{i}/x") == "A", 30)
                events.append(time.perf_counter() - started)
            loop_thread.run(client.close())
            admin = int(gw.gateway.admin_addresses[0].rsplit(":", 1)[1])
            writes: list[float] = []
            served: list[float] = []
            for i in range(rounds):
                started = time.perf_counter()
                status = admin_call(
                    admin,
                    "PUT",
                    f"/admin/services/w{i}",
                    {"upstream": upstream, "prefix": f"/w{i}"},
                )[0]
                assert status == 201, status
                writes.append(time.perf_counter() - started)
                assert wait_until(lambda i=i: status_of(gw.port, f"/w{i}/x") == "A", 30)
                served.append(time.perf_counter() - started)
        finally:
            gw.stop()
    return {
        "size": size,
        "event": events,
        "check": checks[:rounds],
        "build": offers[:rounds],
        "admin_write": writes,
        "admin_served": served,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    rows = []
    with LoopThread() as loop_thread, etcd_cluster() as etcd:
        upstream = AiohttpUpstream(named_app("A"), loop_thread)
        try:
            for size in sizes:
                print(f"  {size} services ...", file=sys.stderr, flush=True)
                rows.append(one_size(etcd, loop_thread, upstream.url, size, args.rounds))
        finally:
            upstream.close()
    print("\nms, median / max; coalesce 50 ms (flushed within 250 ms) is in the first column\n")
    print(
        "| services | etcd event → served | agent check | build + swap | admin PUT answered | admin PUT → served |"
    )
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['size']:,} | {ms(row['event'])} | {ms(row['check'])} | {ms(row['build'])}"
            f" | {ms(row['admin_write'])} | {ms(row['admin_served'])} |"
        )


if __name__ == "__main__":
    main()
