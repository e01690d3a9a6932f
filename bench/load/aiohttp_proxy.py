"""A plain aiohttp reverse proxy: the typical Python peer of the load benchmark.

An aiohttp server and one `ClientSession`; request and response bodies are
streamed through, never read whole. It runs on uvloop (as the gateway does),
so the comparison is between designs, not event loops; `--asyncio` runs it on
the stock loop.

    python bench/load/aiohttp_proxy.py --listen 127.0.0.1:8084 --upstream http://127.0.0.1:8081
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import aiohttp
from aiohttp import web
from multidict import CIMultiDictProxy

# Hop-by-hop headers (RFC 9110 7.6.1) are the proxy's own business; Host is set
# by the client session from the upstream URL; Server and Date come from aiohttp.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_NOT_FORWARDED = _HOP_BY_HOP | {"host"}
_NOT_RETURNED = _HOP_BY_HOP | {"server", "date"}


def _forwarded(headers: CIMultiDictProxy[str], drop: frozenset[str]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers.items() if k.lower() not in drop]


def make_app(upstream: str) -> web.Application:
    app = web.Application()
    session_key = web.AppKey("session", aiohttp.ClientSession)

    async def open_session(app: web.Application) -> None:
        # limit=0: the default pool of 100 would queue 512 clients behind it.
        connector = aiohttp.TCPConnector(limit=0)
        app[session_key] = aiohttp.ClientSession(connector=connector, auto_decompress=False)

    async def close_session(app: web.Application) -> None:
        await app[session_key].close()

    async def proxy(request: web.Request) -> web.StreamResponse:
        session = app[session_key]
        # With the client's Content-Length forwarded, aiohttp streams the body as is.
        body = request.content if request.body_exists else None
        async with session.request(
            request.method,
            upstream + request.raw_path,
            headers=_forwarded(request.headers, _NOT_FORWARDED),
            data=body,
            allow_redirects=False,
        ) as answer:
            response = web.StreamResponse(status=answer.status, reason=answer.reason)
            response.headers.extend(_forwarded(answer.headers, _NOT_RETURNED))
            await response.prepare(request)
            async for chunk in answer.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app


async def serve(host: str, port: int, upstream: str, backlog: int) -> None:
    runner = web.AppRunner(make_app(upstream), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=backlog, reuse_address=True)
    await site.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await stopping.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:8084", help="HOST:PORT")
    parser.add_argument("--upstream", default="http://127.0.0.1:8081")
    parser.add_argument("--backlog", type=int, default=4096)
    parser.add_argument("--asyncio", action="store_true", help="the stock loop, not uvloop")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    coro = serve(host, int(port), args.upstream.rstrip("/"), args.backlog)
    if args.asyncio:
        asyncio.run(coro)
    else:
        import uvloop

        uvloop.run(coro)


if __name__ == "__main__":
    main()
