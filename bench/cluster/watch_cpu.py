"""The agent's CPU per watch event, with and without the settle between reads.

A real etcd on loopback (Debian's `etcd-server`), a writer process putting
`--events` service objects at `--rate` per second, and in this process the
agent's watch (`EtcdClient.watch`, as `ConfigAgent._follow` reads it: each batch
applied to a StoreState, each key parsed): its process CPU time from the first
write to the last event, per event. Each `--settle` value is run `--rounds`
times, alternating, on a prefix of its own.

    PYTHONPATH=. .venv/bin/python bench/cluster/watch_cpu.py [--settle 0,0.025]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "tests"))

from etcd_server import etcd_cluster  # noqa: E402

from runmcp_fast.cluster.etcd_client import EtcdClient  # noqa: E402
from runmcp_fast.cluster.layout import Layout, StoreState  # noqa: E402

WRITER = """
import asyncio, json, sys, time
from runmcp_fast.cluster.etcd_client import EtcdClient

async def main(endpoints, prefix, events, rate):
    client = EtcdClient(endpoints)
    try:
        began = time.monotonic()
        for i in range(events):
            await asyncio.sleep(max(0.0, began + i / rate - time.monotonic()))
            value = json.dumps({"upstream": "http://127.0.0.1:9", "prefix": f"/b{i}"})
            await client.put(f"{prefix}/services/b{i % 50}".encode(), value.encode())
    finally:
        await client.close()

asyncio.run(main(json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
"""


async def one_run(
    endpoints: list[str], prefix: str, events: int, rate: float, settle: float
) -> float:
    """CPU seconds of this process per event while `events` writes are watched."""
    client = EtcdClient(endpoints)
    state = StoreState()
    layout = Layout(prefix)
    start = await client.revision() + 1
    seen = 0
    first = asyncio.Event()

    async def follow() -> None:
        nonlocal seen
        async for batch in client.watch(prefix.encode() + b"/", start, settle=settle):
            state.apply(batch.events)
            for event in batch.events:
                layout.parse(event.kv.key)
            seen += len(batch.events)
            first.set()
            if seen >= events:
                return

    task = asyncio.create_task(follow())
    writer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITER, json.dumps(endpoints), prefix, str(events), str(rate)
    )
    await first.wait()
    began = time.process_time()
    await task
    used = time.process_time() - began
    await writer.wait()
    await client.close()
    return used / (events - 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--settle", default="0,0.025", help="seconds, comma-separated")
    ap.add_argument("--events", type=int, default=500)
    ap.add_argument("--rate", type=float, default=200.0, help="writes per second")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    settles = [float(x) for x in args.settle.split(",")]
    import uvloop

    results: dict[float, list[float]] = {s: [] for s in settles}
    with etcd_cluster() as etcd:
        run = 0
        for _ in range(args.rounds):
            for settle in settles:
                run += 1
                per = uvloop.run(
                    one_run(etcd.endpoints, f"/w{run}", args.events, args.rate, settle)
                )
                results[settle].append(per)
    for settle, values in results.items():
        runs = ", ".join(f"{v * 1e6:.0f}" for v in values)
        print(
            f"settle {settle * 1000:g} ms: agent CPU per event {statistics.median(values) * 1e6:.0f}"
            f" us (median; runs {runs}), {args.events} events at {args.rate:g}/s"
        )


if __name__ == "__main__":
    main()
