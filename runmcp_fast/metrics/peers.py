"""The workers of one `serve --workers N` answer each other's scrapes.

Any worker may accept a scrape (they share the admin socket), but each
counts only its own requests. So each listens on a Unix socket of its own in
a directory the parent made before forking; the one scraped asks the others
for their numbers (collect.Samples, as JSON) and sums them with its own. A
worker that does not answer in time is left out of that scrape (and said so:
`runmcp_workers` counts those that answered); a worker that was replaced
starts from zero, which Prometheus's rate() reads as a counter reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import orjson

from runmcp_fast.metrics.collect import Samples, from_wire, to_wire

_ASK = b"samples\n"
_MAX_ANSWER = 64 * 1024 * 1024


class Peers:
    """This worker's place among its siblings: `directory` holds one socket per worker."""

    def __init__(self, directory: str, number: int) -> None:
        self.directory = Path(directory)
        self.number = number
        self._server: asyncio.AbstractServer | None = None

    @property
    def path(self) -> Path:
        return self.directory / f"worker-{self.number}.sock"

    async def start(self, local: Callable[[], Samples]) -> None:
        """Answer siblings with `local()`: this worker's numbers at the time they ask."""

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                if await reader.readline() == _ASK:
                    writer.write(orjson.dumps(to_wire(local())))
                    await writer.drain()
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a predecessor's (this worker number was replaced)
        self._server = await asyncio.start_unix_server(answer, str(self.path))

    async def gather(self, timeout: float = 1.0) -> list[Samples]:
        """The other workers' numbers (those that answered within `timeout`)."""
        others = [p for p in self.directory.glob("worker-*.sock") if p != self.path]
        found = await asyncio.gather(*(self._ask(p, timeout) for p in others))
        return [samples for samples in found if samples is not None]

    async def _ask(self, path: Path, timeout: float) -> Samples | None:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(str(path))
                try:
                    writer.write(_ASK)
                    data = await reader.read(_MAX_ANSWER)
                finally:
                    writer.close()
            return from_wire(orjson.loads(data))
        except (OSError, TimeoutError, orjson.JSONDecodeError, ValueError, TypeError):
            return None  # gone, or too slow: left out of this scrape

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(OSError):
            os.unlink(self.path)
