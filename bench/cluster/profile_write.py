"""Where one write's CPU goes in a node's agent and in each worker, in one process.

No etcd and no sockets: a store of `--services` services (as the cluster test's,
one prefix route each) is changed one service at a time, and each write runs the
steps the agent process (`agent.py`, `hub.py`) and a worker (`follower.py`, then
the ControlPlane's build) run for it, timed one by one (thread CPU time, ms,
median over `--writes`). `--profile agent|worker` adds a cProfile of that side.

    PYTHONPATH=. .venv/bin/python bench/cluster/profile_write.py [--services 1000]
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import json
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "tests"))

from cluster_helpers import node_config  # noqa: E402

from runmcp_fast.cluster.agent import ConfigAgent  # noqa: E402
from runmcp_fast.cluster.cache import CachedState, DiskCache, encode_objects  # noqa: E402
from runmcp_fast.cluster.etcd_client import Event, KeyValue  # noqa: E402
from runmcp_fast.cluster.follower import Follower  # noqa: E402
from runmcp_fast.cluster.hub import Hub  # noqa: E402
from runmcp_fast.cluster.layout import StoreState  # noqa: E402
from runmcp_fast.cluster.node import ClusterNode  # noqa: E402
from runmcp_fast.config import _READ_MEMO, config_from_data  # noqa: E402

PREFIX = "/bench"


class _Timer:
    def __init__(self, profiler: cProfile.Profile | None) -> None:
        self.times: dict[str, list[float]] = {}
        self.profiler = profiler

    def step(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        begin = time.process_time()
        if self.profiler is not None:
            self.profiler.enable()
        try:
            return fn(*args)
        finally:
            if self.profiler is not None:
                self.profiler.disable()
            self.times.setdefault(name, []).append(time.process_time() - begin)


async def run(args: argparse.Namespace, tmp: str) -> None:
    from runmcp_fast.gateway import Gateway

    node = config_from_data(
        node_config(["http://127.0.0.1:1"], PREFIX, "bench", cache_dir="cache"),
        source="node.yaml",
        base_dir=tmp,
    )
    store = node.config_store
    assert store is not None

    def kv(i: int, revision: int, name: str) -> KeyValue:
        value = {"upstream": "http://127.0.0.1:9", "prefix": f"/{name}"}
        return KeyValue(f"{PREFIX}/services/{name}".encode(), json.dumps(value).encode(), revision)

    state = StoreState(args.services, [kv(i, i + 1, f"s{i}") for i in range(args.services)])
    agent_cache = DiskCache(str(Path(tmp) / "agent"), store.prefix)
    hub = Hub(agent_cache)
    agent = ConfigAgent(store, node, "node.yaml", agent_cache, hub, node_id="bench")
    agent.state = state
    gateway = Gateway(node, source="node.yaml")
    await gateway.start()
    follower = Follower(
        "/nonexistent", ClusterNode("bench"), gateway.control, node, "node.yaml", agent_cache
    )
    profile = {
        side: cProfile.Profile(time.thread_time) if args.profile == side else None
        for side in ("agent", "worker")
    }
    agent_t, worker_t = _Timer(profile["agent"]), _Timer(profile["worker"])
    control = gateway.control
    # The build runs on the control plane's own thread: profiled there.
    control._build = functools.partial(worker_t.step, "(build thread)", control._build)  # type: ignore[method-assign]

    async def one_write(revision: int, name: str) -> None:
        if args.changed:
            # As the cluster test's burst: `--changed` services b0.. each get a new prefix.
            for j in range(args.changed):
                key = f"{PREFIX}/services/b{j}".encode()
                value = {"upstream": "http://127.0.0.1:9", "prefix": f"/b{j}-{name}"}
                state.apply([Event(KeyValue(key, json.dumps(value).encode(), revision), False)])
        else:
            state.apply([Event(kv(0, revision, name), False)])
        objects = agent_t.step(
            "agent: config objects", lambda: encode_objects(state.config_items(agent.layout))
        )
        agent_t.step("agent: compare", lambda: agent.applied and objects == agent.applied.objects)
        candidate = agent_t.step(
            "agent: candidate",
            lambda: CachedState(revision, objects, state.mod_revisions(agent.layout), time.time()),
        )
        checked, specs = agent_t.step("agent: check", agent._check, state, candidate)
        agent_t.step("agent: hand-off write", agent_cache.write, "candidate.json", candidate)
        follower_state = worker_t.step("worker: read hand-off", agent_cache.read, "candidate.json")
        worker_t.step("worker: compare", lambda: follower_state.objects != follower.objects)
        # A worker is a process of its own: the services the agent just read are not
        # in its memo of services read (config.py).
        _READ_MEMO.clear()
        config = worker_t.step("worker: compose", follower._compose, follower_state)
        begin = time.process_time()
        await gateway.control.replace_config(config, f"etcd revision {revision}")
        await gateway.control.settled()
        worker_t.times.setdefault("worker: build + swap", []).append(time.process_time() - begin)
        follower.objects = follower_state.objects
        follower._served = (config, follower_state.objects)
        agent_t.step("agent: persist", agent._persist, candidate, specs)
        agent.applied = candidate
        agent._checked = (checked, candidate.objects)

    # The first build (all services) is left out of the numbers.
    await one_write(args.services + 1, "w-first")
    for timer in (agent_t, worker_t):
        timer.times.clear()
    for i in range(args.writes):
        await one_write(args.services + 2 + i, f"w{i}")
    await gateway.stop()
    for timer in (agent_t, worker_t):
        for name, values in timer.times.items():
            print(f"{name:>24}: median {statistics.median(values) * 1000:6.2f} ms CPU")
        total = sum(statistics.median(v) for v in timer.times.values())
        print(f"{'sum':>24}: {total * 1000:6.2f} ms")
    for side, profiler in profile.items():
        if profiler is not None:
            print(f"--- {side}")
            pstats.Stats(profiler).sort_stats("tottime").print_stats(args.top)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--writes", type=int, default=20)
    parser.add_argument(
        "--changed", type=int, default=0, help="services changed per write (0: one added)"
    )
    parser.add_argument("--profile", choices=["agent", "worker"])
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    import uvloop

    with tempfile.TemporaryDirectory() as tmp:
        uvloop.run(run(args, tmp))


if __name__ == "__main__":
    main()
