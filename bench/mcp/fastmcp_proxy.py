"""The FastMCP peer: `FastMCP.as_proxy` in front of one Streamable HTTP upstream.

Runs in its own venv (.cache/bench-venvs/fastmcp: fastmcp>=3,<4 pins its own `mcp`).

- default: `FastMCP.as_proxy(url)`, as FastMCP's docs show it: the proxy opens a fresh
  upstream session (initialize, call, close) for every request it forwards;
- --shared: `FastMCP.as_proxy(client)` with a `Client` connected once at start: every
  request reuses that one upstream session (FastMCP warns that request contexts may mix
  under concurrency); its best case.

    .cache/bench-venvs/fastmcp/bin/python bench/mcp/fastmcp_proxy.py \
        --port 9010 --upstream http://127.0.0.1:9001/mcp [--shared]
"""

from __future__ import annotations

import argparse
import asyncio
import warnings

from fastmcp import Client, FastMCP


async def serve(args: argparse.Namespace) -> None:
    run = {
        "transport": "http",
        "host": args.host,
        "port": args.port,
        "path": "/mcp",
        "show_banner": False,
        "log_level": "warning",
        "uvicorn_config": {"access_log": False, "backlog": 4096},
    }
    # as_proxy is the API the issue names; 3.x calls it a deprecated alias of create_proxy.
    warnings.simplefilter("ignore")
    if args.shared:
        client = Client(args.upstream)
        async with client:
            proxy = FastMCP.as_proxy(client, name="bench-proxy")
            await proxy.run_http_async(**run)
    else:
        proxy = FastMCP.as_proxy(args.upstream, name="bench-proxy")
        await proxy.run_http_async(**run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the upstream's MCP URL")
    parser.add_argument("--shared", action="store_true", help="one upstream session for all")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
