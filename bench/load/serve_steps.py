"""`runmcp-fast serve -c CONFIG` with extra steps on every operation's route.

The load benchmark's `runmcp_fast+step` peer: the same gateway as the
`runmcp_fast` peer, plus N steps that do nothing (instances of `Step`
itself, called through the chain like any compiled step), to measure what
the chain mechanism costs a route.

    .venv/bin/python bench/load/serve_steps.py -c gateway.yaml [--noop-steps 1]
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import uvloop

from runmcp_fast._dataplane import Step
from runmcp_fast.config import load_config
from runmcp_fast.gateway import Gateway
from runmcp_fast.snapshot import RouteInfo


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("--noop-steps", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="runmcp-fast: %(message)s", stream=sys.stderr)

    def steps(route: RouteInfo) -> Sequence[Step]:
        return [Step(f"noop-{i}", "access") for i in range(args.noop_steps)]

    gateway = Gateway(load_config(args.config), source=args.config, steps=steps)
    uvloop.run(gateway.serve_forever())
    return 0


if __name__ == "__main__":
    sys.exit(main())
